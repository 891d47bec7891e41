//! lapin AMQP message headers (`FieldTable`) carrier.
//!
//! Writes values as AMQP long strings; reads long strings, short strings and
//! byte arrays (what other AMQP clients use for these headers). AMQP header
//! names are case-sensitive; a lookup tries the exact name first, then any case.
//!
//! ```
//! use lapin::types::FieldTable;
//! use otel_propagation::carrier::lapin::{extract, inject};
//! use otel_propagation::TraceContextPropagator;
//! use opentelemetry::propagation::TextMapPropagator;
//! use opentelemetry::trace::TraceContextExt;
//! use std::collections::HashMap;
//!
//! let mut incoming = HashMap::new();
//! incoming.insert("traceparent".to_string(), "00-12345678901234567890123456789012-1234567890123456-01".to_string());
//! let cx = TraceContextPropagator::new().extract(&incoming);
//! let mut headers = FieldTable::default();
//! inject(&TraceContextPropagator::new(), &cx, &mut headers);
//! assert!(extract(&TraceContextPropagator::new(), &headers).span().span_context().is_valid());
//! ```

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};

/// Reads propagation fields from AMQP message headers.
#[derive(Debug, Clone, Copy)]
pub struct AmqpHeaderExtractor<'a>(pub &'a FieldTable);

fn as_text(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        AMQPValue::ByteArray(b) => std::str::from_utf8(b.as_slice()).ok(),
        _ => None,
    }
}

impl Extractor for AmqpHeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let table = self.0.inner();
        match table.get(key) {
            Some(v) => as_text(v),
            None => table
                .iter()
                .find(|(k, _)| k.as_str().eq_ignore_ascii_case(key))
                .and_then(|(_, v)| as_text(v)),
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(ShortString::as_str).collect()
    }
}

/// Writes propagation fields into AMQP message headers as long strings.
#[derive(Debug)]
pub struct AmqpHeaderInjector<'a>(pub &'a mut FieldTable);

impl Injector for AmqpHeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Header names over 255 bytes cannot be AMQP short strings.
        if let Ok(key) = ShortString::try_new(key) {
            self.0.insert(key, AMQPValue::LongString(LongString::from(value)));
        }
    }
}

/// Extracts a context from AMQP headers on top of the current context.
pub fn extract(propagator: &dyn TextMapPropagator, headers: &FieldTable) -> Context {
    propagator.extract(&AmqpHeaderExtractor(headers))
}

/// Extracts a context from AMQP headers on top of `cx`.
pub fn extract_with_context(propagator: &dyn TextMapPropagator, cx: &Context, headers: &FieldTable) -> Context {
    propagator.extract_with_context(cx, &AmqpHeaderExtractor(headers))
}

/// Injects `cx` into AMQP headers.
pub fn inject(propagator: &dyn TextMapPropagator, cx: &Context, headers: &mut FieldTable) {
    propagator.inject_context(cx, &mut AmqpHeaderInjector(headers));
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::ByteArray;

    #[test]
    fn reads_every_string_kind() {
        let mut t = FieldTable::default();
        t.insert("a".into(), AMQPValue::LongString("1".into()));
        t.insert("b".into(), AMQPValue::ShortString("2".into()));
        t.insert("c".into(), AMQPValue::ByteArray(ByteArray::from(b"3".as_slice())));
        t.insert("d".into(), AMQPValue::LongInt(4));
        t.insert("TraceParent".into(), AMQPValue::LongString("x".into()));
        let ex = AmqpHeaderExtractor(&t);
        assert_eq!(ex.get("a"), Some("1"));
        assert_eq!(ex.get("b"), Some("2"));
        assert_eq!(ex.get("c"), Some("3"));
        assert_eq!(ex.get("d"), None);
        assert_eq!(ex.get("traceparent"), Some("x"));
    }

    #[test]
    fn writes_long_strings() {
        let mut t = FieldTable::default();
        AmqpHeaderInjector(&mut t).set("traceparent", "v".into());
        assert!(matches!(t.inner().get("traceparent"), Some(AMQPValue::LongString(_))));
        AmqpHeaderInjector(&mut t).set(&"k".repeat(300), "v".into());
        assert_eq!(t.inner().len(), 1);
    }
}
