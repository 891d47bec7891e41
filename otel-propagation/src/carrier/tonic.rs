//! tonic `MetadataMap` carrier (gRPC metadata). Binary (`-bin`) entries are ignored.
//!
//! ```
//! use otel_propagation::carrier::tonic::{extract, inject};
//! use otel_propagation::TraceContextPropagator;
//! use tonic::metadata::MetadataMap;
//!
//! let mut md = MetadataMap::new();
//! md.insert("traceparent", "00-12345678901234567890123456789012-1234567890123456-01".parse().unwrap());
//! let cx = extract(&TraceContextPropagator::new(), &md);
//! let mut out = MetadataMap::new();
//! inject(&TraceContextPropagator::new(), &cx, &mut out);
//! assert_eq!(out.get("traceparent"), md.get("traceparent"));
//! ```

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use tonic::metadata::{Ascii, KeyRef, MetadataKey, MetadataMap, MetadataValue};

/// Reads propagation fields from gRPC metadata. Values that are not UTF-8 are
/// skipped; any other value reaches the parsers, which refuse non-ASCII content
/// by their own grammar, as with the HTTP and AMQP carriers (a baggage member
/// with a raw non-ASCII value is dropped and the other members are kept).
#[derive(Debug, Clone, Copy)]
pub struct MetadataExtractor<'a>(pub &'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(value_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                KeyRef::Ascii(k) => Some(k.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        super::all_values(self.0.get_all(key).iter().filter_map(value_str))
    }
}

/// A metadata value as text. `MetadataValue::to_str` refuses anything but
/// visible ASCII, which would drop a whole header for one bad list member.
fn value_str(value: &MetadataValue<Ascii>) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

/// Writes propagation fields into gRPC metadata, replacing earlier values.
#[derive(Debug)]
pub struct MetadataInjector<'a>(pub &'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(key) = MetadataKey::from_bytes(key.as_bytes()) else {
            return;
        };
        if let Ok(value) = MetadataValue::try_from(value) {
            self.0.insert(key, value);
        }
    }
}

/// Extracts a context from `metadata` on top of the current context.
pub fn extract(propagator: &dyn TextMapPropagator, metadata: &MetadataMap) -> Context {
    propagator.extract(&MetadataExtractor(metadata))
}

/// Injects `cx` into `metadata`.
pub fn inject(propagator: &dyn TextMapPropagator, cx: &Context, metadata: &mut MetadataMap) {
    propagator.inject_context(cx, &mut MetadataInjector(metadata));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TraceContextPropagator;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn repeated_and_binary_entries() {
        let mut md = MetadataMap::new();
        md.append("tracestate", "a=1".parse().unwrap());
        md.append("tracestate", "b=2".parse().unwrap());
        md.insert(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-01"
                .parse()
                .unwrap(),
        );
        md.insert_bin("trace-bin", tonic::metadata::MetadataValue::from_bytes(b"\x00\x01"));
        let ex = MetadataExtractor(&md);
        assert!(!ex.keys().contains(&"trace-bin"));
        let cx = extract(&TraceContextPropagator::new(), &md);
        assert_eq!(cx.span().span_context().trace_state().get("b"), Some("2"));
    }

    #[test]
    fn non_ascii_values_are_refused_by_the_parsers_as_over_http() {
        use crate::BaggagePropagator;
        use opentelemetry::baggage::BaggageExt;
        let mut md = MetadataMap::new();
        md.insert("baggage", MetadataValue::try_from("k=\u{e9},ok=1".as_bytes()).unwrap());
        md.append("baggage", MetadataValue::try_from(&b"x=\xff\xfe"[..]).unwrap());
        md.append("baggage", "other=2".parse().unwrap());
        let cx = extract(&BaggagePropagator::new(), &md);
        assert_eq!(cx.baggage().get("ok").map(|v| v.as_str()), Some("1"));
        assert_eq!(cx.baggage().get("other").map(|v| v.as_str()), Some("2"));
        assert_eq!(cx.baggage().get("k"), None);
        assert_eq!(cx.baggage().get("x"), None);
        let tp = "00-12345678901234567890123456789012-1234567890123456-01";
        let mut md = MetadataMap::new();
        md.insert(
            "traceparent",
            MetadataValue::try_from(format!("{tp}\u{e9}").as_bytes()).unwrap(),
        );
        assert!(
            !extract(&TraceContextPropagator::new(), &md)
                .span()
                .span_context()
                .is_valid()
        );
    }
}
