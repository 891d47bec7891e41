//! The W3C Trace Context propagator (`traceparent` + `tracestate`).

use crate::traceparent::{FLAG_RANDOM, TraceParent};
use crate::tracestate::{format_tracestate, parse_tracestate};
use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceId, TraceState};
use std::sync::LazyLock;

/// The `traceparent` header name.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The `tracestate` header name.
pub const TRACESTATE_HEADER: &str = "tracestate";

static FIELDS: LazyLock<[String; 2]> = LazyLock::new(|| [TRACEPARENT_HEADER.to_owned(), TRACESTATE_HEADER.to_owned()]);

/// Propagates span context in W3C Trace Context Level 2 `traceparent` and
/// `tracestate` headers.
///
/// Extraction is strict: an invalid or repeated `traceparent` yields no remote
/// parent (the next span starts a new trace) and its `tracestate` is ignored; an
/// invalid `tracestate` is dropped without affecting a valid `traceparent`.
/// The sampled and random flags are kept and propagated unchanged; other flag
/// bits are zeroed. An empty `tracestate` is never sent.
///
/// ```
/// use opentelemetry::propagation::TextMapPropagator;
/// use opentelemetry::trace::TraceContextExt;
/// use otel_propagation::TraceContextPropagator;
/// use std::collections::HashMap;
///
/// let propagator = TraceContextPropagator::new();
/// let mut carrier = HashMap::new();
/// carrier.insert("traceparent".to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string());
/// let cx = propagator.extract(&carrier);
/// assert!(cx.span().span_context().is_sampled());
///
/// let mut out = HashMap::new();
/// propagator.inject_context(&cx, &mut out);
/// assert_eq!(out["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert!(!out.contains_key("tracestate"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct TraceContextPropagator {
    random_flag_for_new_traces: bool,
}

/// Marks, in the extracted context, a remote trace whose id was not declared random,
/// so the random flag is never claimed for it downstream.
#[derive(Debug)]
struct UpstreamNotRandom(TraceId);

impl TraceContextPropagator {
    /// A propagator that keeps the flags it receives and adds none.
    pub const fn new() -> Self {
        TraceContextPropagator {
            random_flag_for_new_traces: false,
        }
    }

    /// Sets the Level 2 random flag on traces started in this process.
    ///
    /// opentelemetry_sdk starts a root span with trace flags `00`/`01` and gives
    /// samplers and id generators no way to set other flags, so this propagator
    /// adds the flag when it writes the header instead. It does so only for
    /// traces that did not arrive through this propagator without the flag, so a
    /// caller's non-random trace id is never declared random. Enable it when the
    /// process generates random trace ids (the SDK's default id generator does).
    /// `otel-core` enables it.
    ///
    /// Defaults to `false`.
    pub const fn with_random_flag_for_new_traces(mut self, enabled: bool) -> Self {
        self.random_flag_for_new_traces = enabled;
        self
    }

    /// Parses the trace context from an extractor; `None` when there is no valid one.
    pub fn extract_span_context(&self, extractor: &dyn Extractor) -> Option<SpanContext> {
        let values = extractor.get_all(TRACEPARENT_HEADER)?;
        let [value] = values.as_slice() else {
            // Two traceparent headers: the caller's context is ambiguous.
            return None;
        };
        let parent = TraceParent::parse(value).ok()?;
        let trace_state = match extractor.get_all(TRACESTATE_HEADER) {
            Some(values) => parse_tracestate(values.iter().copied()).unwrap_or_default(),
            None => TraceState::NONE,
        };
        Some(parent.into_span_context(trace_state))
    }

    /// Adds an extracted span context to `cx`, with the marker the random flag needs.
    pub(crate) fn attach(&self, cx: &Context, span_context: SpanContext) -> Context {
        let not_random = self.random_flag_for_new_traces && span_context.trace_flags().to_u8() & FLAG_RANDOM == 0;
        let trace_id = span_context.trace_id();
        let cx = cx.with_remote_span_context(span_context);
        if not_random {
            cx.with_value(UpstreamNotRandom(trace_id))
        } else {
            cx
        }
    }

    /// The `traceparent` to send for `cx`, or `None` when it has no valid span.
    pub fn traceparent_for(&self, cx: &Context) -> Option<TraceParent> {
        self.traceparent_of(cx, cx.span().span_context())
    }

    /// What inject writes for `cx`: the `traceparent`, and the `tracestate`
    /// value, empty when there is none to send. `None` when `cx` has no valid span.
    pub(crate) fn outgoing(&self, cx: &Context) -> Option<(TraceParent, String)> {
        let span = cx.span();
        let span_context = span.span_context();
        let parent = self.traceparent_of(cx, span_context)?;
        Some((parent, format_tracestate(span_context.trace_state())))
    }

    /// The `traceparent` to send for `span_context`, the span of `cx`.
    fn traceparent_of(&self, cx: &Context, span_context: &SpanContext) -> Option<TraceParent> {
        if !span_context.is_valid() {
            return None;
        }
        let mut parent = TraceParent::from_span_context(span_context);
        if self.random_flag_for_new_traces
            && parent.flags & FLAG_RANDOM == 0
            && !span_context.is_remote()
            && cx
                .get::<UpstreamNotRandom>()
                .is_none_or(|m| m.0 != span_context.trace_id())
        {
            parent.flags |= FLAG_RANDOM;
        }
        Some(parent)
    }
}

impl TextMapPropagator for TraceContextPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let Some((parent, trace_state)) = self.outgoing(cx) else {
            return;
        };
        injector.set(TRACEPARENT_HEADER, parent.to_header_string());
        if !trace_state.is_empty() {
            injector.set(TRACESTATE_HEADER, trace_state);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match self.extract_span_context(extractor) {
            Some(span_context) => self.attach(cx, span_context),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(FIELDS.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags};
    use std::collections::HashMap;

    /// A carrier that can hold repeated headers, like HTTP.
    #[derive(Default)]
    struct Multi(Vec<(String, String)>);

    impl Extractor for Multi {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| k.as_str()).collect()
        }
        fn get_all(&self, key: &str) -> Option<Vec<&str>> {
            let v: Vec<&str> = self
                .0
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
                .collect();
            if v.is_empty() { None } else { Some(v) }
        }
    }

    fn multi(headers: &[(&str, &str)]) -> Multi {
        Multi(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";

    #[test]
    fn extracts_valid_context_as_remote() {
        let cx = TraceContextPropagator::new().extract(&multi(&[("TraceParent", TP), ("tracestate", "foo=1")]));
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_state().get("foo"), Some("1"));
    }

    #[test]
    fn two_traceparent_headers_are_invalid() {
        let cx = TraceContextPropagator::new().extract(&multi(&[
            ("traceparent", "00-12345678901234567890123456789011-1234567890123456-01"),
            ("traceparent", TP),
        ]));
        assert!(!cx.span().span_context().is_valid());
    }

    #[test]
    fn invalid_traceparent_drops_tracestate() {
        let cx = TraceContextPropagator::new().extract(&multi(&[("traceparent", "ff-bad"), ("tracestate", "foo=1")]));
        assert!(!cx.has_active_span());
    }

    #[test]
    fn invalid_tracestate_keeps_traceparent() {
        let cx = TraceContextPropagator::new().extract(&multi(&[("traceparent", TP), ("tracestate", "foo=1,FOO=2")]));
        let span = cx.span();
        assert!(span.span_context().is_valid());
        assert_eq!(*span.span_context().trace_state(), TraceState::NONE);
    }

    #[test]
    fn never_sends_empty_tracestate() {
        let p = TraceContextPropagator::new();
        let cx = p.extract(&multi(&[("traceparent", TP), ("tracestate", "")]));
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        assert_eq!(out.get("traceparent").map(String::as_str), Some(TP));
        assert!(!out.contains_key("tracestate"));
    }

    #[test]
    fn nothing_injected_without_valid_span() {
        let mut out = HashMap::new();
        TraceContextPropagator::new().inject_context(&Context::new(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn random_flag_passes_through_unchanged() {
        let p = TraceContextPropagator::new();
        let cx = p.extract(&multi(&[(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-03",
        )]));
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        assert!(out["traceparent"].ends_with("-03"));
    }

    fn local(trace: u128, flags: u8) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(trace),
            SpanId::from(7),
            TraceFlags::new(flags),
            false,
            TraceState::NONE,
        ))
    }

    #[test]
    fn random_flag_for_new_traces_is_opt_in_and_exact() {
        let plain = TraceContextPropagator::new();
        let marking = TraceContextPropagator::new().with_random_flag_for_new_traces(true);

        // A trace started here: flag added only when enabled.
        let mut out = HashMap::new();
        plain.inject_context(&local(5, 1), &mut out);
        assert!(out["traceparent"].ends_with("-01"));
        marking.inject_context(&local(5, 1), &mut out);
        assert!(out["traceparent"].ends_with("-03"));

        // A local child of a caller that did not declare its id random: never marked.
        let extracted = marking.extract(&multi(&[("traceparent", TP)]));
        let child = extracted.with_remote_span_context(SpanContext::new(
            TraceId::from_hex("12345678901234567890123456789012").unwrap(),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ));
        marking.inject_context(&child, &mut out);
        assert!(out["traceparent"].ends_with("-01"), "{}", out["traceparent"]);

        // A new root started under that context (a different trace id) is marked.
        let new_root = extracted.with_remote_span_context(SpanContext::new(
            TraceId::from(99),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ));
        marking.inject_context(&new_root, &mut out);
        assert!(out["traceparent"].ends_with("-03"));
    }

    #[test]
    fn fields_are_the_two_headers() {
        let p = TraceContextPropagator::new();
        assert_eq!(p.fields().collect::<Vec<_>>(), vec!["traceparent", "tracestate"]);
    }
}
