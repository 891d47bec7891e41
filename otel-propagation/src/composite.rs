//! Several propagators acting as one.

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use std::fmt;

/// A boxed propagator, as held by [`CompositePropagator`].
pub type BoxedPropagator = Box<dyn TextMapPropagator + Send + Sync>;

/// Runs several propagators in order: each injects its headers; on extraction
/// each builds on the context the previous one returned, so a later propagator's
/// span context wins when two carry one (the order `OTEL_PROPAGATORS` gives).
///
/// ```
/// use otel_propagation::{BaggagePropagator, CompositePropagator, TraceContextPropagator};
/// use opentelemetry::propagation::TextMapPropagator;
///
/// let p = CompositePropagator::new(vec![
///     Box::new(TraceContextPropagator::new()),
///     Box::new(BaggagePropagator::new()),
/// ]);
/// assert_eq!(p.fields().collect::<Vec<_>>(), ["traceparent", "tracestate", "baggage"]);
/// ```
pub struct CompositePropagator {
    propagators: Vec<BoxedPropagator>,
    fields: Vec<String>,
}

impl CompositePropagator {
    /// Combines `propagators`, in order.
    pub fn new(propagators: Vec<BoxedPropagator>) -> Self {
        let mut fields: Vec<String> = Vec::new();
        for p in &propagators {
            for f in p.fields() {
                if !fields.iter().any(|e| e == f) {
                    fields.push(f.to_owned());
                }
            }
        }
        CompositePropagator { propagators, fields }
    }

    /// The number of propagators combined.
    pub fn len(&self) -> usize {
        self.propagators.len()
    }

    /// Whether no propagator is combined (the `none` propagator).
    pub fn is_empty(&self) -> bool {
        self.propagators.is_empty()
    }
}

impl fmt::Debug for CompositePropagator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompositePropagator")
            .field("propagators", &self.propagators)
            .finish()
    }
}

impl TextMapPropagator for CompositePropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        for p in &self.propagators {
            p.inject_context(cx, injector);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let mut iter = self.propagators.iter();
        let Some(first) = iter.next() else {
            return cx.clone();
        };
        let mut out = first.extract_with_context(cx, extractor);
        for p in iter {
            out = p.extract_with_context(&out, extractor);
        }
        out
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{B3Propagator, BaggagePropagator, TraceContextPropagator};
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::TraceContextExt;
    use std::collections::HashMap;

    #[test]
    fn injects_all_and_extracts_all() {
        let p = CompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
            Box::new(B3Propagator::new()),
        ]);
        let mut carrier = HashMap::new();
        carrier.insert(
            "traceparent".to_string(),
            "00-12345678901234567890123456789012-1234567890123456-01".to_string(),
        );
        carrier.insert("baggage".to_string(), "k=v".to_string());
        let cx = p.extract(&carrier);
        assert!(cx.span().span_context().is_valid());
        assert_eq!(cx.baggage().get("k").map(|v| v.as_str()), Some("v"));
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        assert!(out.contains_key("traceparent") && out.contains_key("baggage") && out.contains_key("b3"));
    }

    #[test]
    fn empty_composite_is_a_no_op() {
        let p = CompositePropagator::new(Vec::new());
        assert!(p.is_empty());
        let mut out = HashMap::<String, String>::new();
        p.inject_context(&Context::new(), &mut out);
        assert!(out.is_empty());
    }
}
