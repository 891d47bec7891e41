//! What the policies read from a span and its resource, whatever the span's
//! storage (SDK `SpanData` in-process, OTLP wire bytes in the sidecar).

use opentelemetry::trace::{SpanId, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use std::borrow::Cow;
use std::time::UNIX_EPOCH;

/// An attribute value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrValue<'a> {
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// Anything else (arrays, maps, bytes).
    Other,
}

/// A span's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// UNSET.
    Unset,
    /// OK.
    Ok,
    /// ERROR.
    Error,
}

impl StatusCode {
    pub(crate) fn bit(self) -> u8 {
        match self {
            StatusCode::Unset => 1,
            StatusCode::Ok => 2,
            StatusCode::Error => 4,
        }
    }
}

/// Attribute lookup (a resource, or a span).
pub trait Attributes {
    /// The value of `key`, if present.
    fn attribute(&self, key: &str) -> Option<AttrValue<'_>>;
}

/// What tail-sampling policies read from a span.
pub trait SpanFacts: Attributes {
    /// The trace id.
    fn trace_id(&self) -> [u8; 16];
    /// Whether the span has no parent (the trace's root).
    fn is_root(&self) -> bool;
    /// Start, nanoseconds since the Unix epoch.
    fn start_nanos(&self) -> u64;
    /// End, nanoseconds since the Unix epoch.
    fn end_nanos(&self) -> u64;
    /// The status code.
    fn status(&self) -> StatusCode;
    /// The value of `key` in the span's W3C tracestate.
    fn trace_state_value(&self, key: &str) -> Option<Cow<'_, str>>;
    /// The span's size in OTLP protobuf, for byte budgets and memory bounds.
    fn encoded_len(&self) -> usize;
}

pub(crate) fn value_ref(v: &Value) -> AttrValue<'_> {
    match v {
        Value::String(s) => AttrValue::Str(s.as_str()),
        Value::I64(i) => AttrValue::Int(*i),
        Value::F64(f) => AttrValue::Double(*f),
        Value::Bool(b) => AttrValue::Bool(*b),
        _ => AttrValue::Other,
    }
}

fn find<'a>(kvs: &'a [KeyValue], key: &str) -> Option<AttrValue<'a>> {
    kvs.iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| value_ref(&kv.value))
}

impl Attributes for SpanData {
    fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
        find(&self.attributes, key)
    }
}

impl SpanFacts for SpanData {
    fn trace_id(&self) -> [u8; 16] {
        self.span_context.trace_id().to_bytes()
    }

    fn is_root(&self) -> bool {
        self.parent_span_id == SpanId::INVALID
    }

    fn start_nanos(&self) -> u64 {
        self.start_time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn end_nanos(&self) -> u64 {
        self.end_time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn status(&self) -> StatusCode {
        match self.status {
            Status::Unset => StatusCode::Unset,
            Status::Ok => StatusCode::Ok,
            Status::Error { .. } => StatusCode::Error,
        }
    }

    fn trace_state_value(&self, key: &str) -> Option<Cow<'_, str>> {
        // Also finds keys opentelemetry's TraceState holds only in carried form.
        otel_propagation::tracestate::get(self.span_context.trace_state(), key).map(Cow::Borrowed)
    }

    fn encoded_len(&self) -> usize {
        otel_export::encode::span_encoded_len(self)
    }
}

impl Attributes for Resource {
    fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
        self.get_ref(&opentelemetry::Key::from(key.to_owned())).map(value_ref)
    }
}

/// A resource with no attributes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAttributes;

impl Attributes for NoAttributes {
    fn attribute(&self, _key: &str) -> Option<AttrValue<'_>> {
        None
    }
}
