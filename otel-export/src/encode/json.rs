//! OTLP/JSON, written straight from `SpanData`: proto3 JSON mapping with the
//! OTLP rules (lowerCamelCase names, hex trace and span ids, enums as numbers,
//! 64-bit integers as decimal strings).

use super::{Batch, ResourceInfo, kind, nanos, status_code, trace_flags};
use opentelemetry::trace::{SpanId, Status, TraceState};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use std::io::Write as _;

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.push(b'"');
    for b in bytes {
        buf.push(HEX[usize::from(b >> 4)]);
        buf.push(HEX[usize::from(b & 0xf)]);
    }
    buf.push(b'"');
}

/// A JSON string literal with the escapes JSON requires.
pub(crate) fn put_json_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(escape);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

fn put_u64_str(buf: &mut Vec<u8>, v: u64) {
    let _ = write!(buf, "\"{v}\"");
}

fn put_f64(buf: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        buf.extend_from_slice(b"\"NaN\"");
    } else if f.is_infinite() {
        buf.extend_from_slice(if f > 0.0 { b"\"Infinity\"" } else { b"\"-Infinity\"" });
    } else {
        let _ = write!(buf, "{f:?}");
    }
}

fn put_any_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(b) => buf.extend_from_slice(if *b {
            b"{\"boolValue\":true}"
        } else {
            b"{\"boolValue\":false}"
        }),
        Value::I64(i) => {
            let _ = write!(buf, "{{\"intValue\":\"{i}\"}}");
        }
        Value::F64(f) => {
            buf.extend_from_slice(b"{\"doubleValue\":");
            put_f64(buf, *f);
            buf.push(b'}');
        }
        Value::String(s) => {
            buf.extend_from_slice(b"{\"stringValue\":");
            put_json_str(buf, s.as_str());
            buf.push(b'}');
        }
        Value::Array(a) => {
            buf.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
            match a {
                Array::Bool(v) => list(buf, v, |buf, b| put_any_value(buf, &Value::Bool(*b))),
                Array::I64(v) => list(buf, v, |buf, i| put_any_value(buf, &Value::I64(*i))),
                Array::F64(v) => list(buf, v, |buf, f| put_any_value(buf, &Value::F64(*f))),
                Array::String(v) => list(buf, v, |buf, s| {
                    buf.extend_from_slice(b"{\"stringValue\":");
                    put_json_str(buf, s.as_str());
                    buf.push(b'}');
                }),
                _ => {}
            }
            buf.extend_from_slice(b"]}}");
        }
        _ => buf.extend_from_slice(b"{}"),
    }
}

fn list<T>(buf: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        each(buf, item);
    }
}

pub(crate) fn put_attributes(buf: &mut Vec<u8>, attributes: &[KeyValue]) {
    buf.push(b'[');
    list(buf, attributes, |buf, kv| {
        buf.extend_from_slice(b"{\"key\":");
        put_json_str(buf, kv.key.as_str());
        buf.extend_from_slice(b",\"value\":");
        put_any_value(buf, &kv.value);
        buf.push(b'}');
    });
    buf.push(b']');
}

fn put_trace_state(buf: &mut Vec<u8>, ts: &TraceState) {
    let mut first = true;
    for (k, v) in otel_propagation::tracestate::members(ts) {
        if first {
            buf.extend_from_slice(b",\"traceState\":\"");
            first = false;
        } else {
            buf.push(b',');
        }
        // Keys and values are printable ASCII without '"' or '\' issues except
        // possibly '"' and '\' in values; escape them the same way.
        let mut s = String::with_capacity(k.len() + v.len() + 1);
        s.push_str(&k);
        s.push('=');
        s.push_str(v);
        let mut escaped = Vec::with_capacity(s.len() + 2);
        put_json_str(&mut escaped, &s);
        buf.extend_from_slice(&escaped[1..escaped.len() - 1]);
    }
    if !first {
        buf.push(b'"');
    }
}

fn put_span(buf: &mut Vec<u8>, span: &SpanData) {
    let sc = &span.span_context;
    buf.extend_from_slice(b"{\"traceId\":");
    put_hex(buf, &sc.trace_id().to_bytes());
    buf.extend_from_slice(b",\"spanId\":");
    put_hex(buf, &sc.span_id().to_bytes());
    put_trace_state(buf, sc.trace_state());
    if span.parent_span_id != SpanId::INVALID {
        buf.extend_from_slice(b",\"parentSpanId\":");
        put_hex(buf, &span.parent_span_id.to_bytes());
    }
    let _ = write!(
        buf,
        ",\"flags\":{}",
        trace_flags(sc.trace_flags().to_u8(), span.parent_span_is_remote)
    );
    buf.extend_from_slice(b",\"name\":");
    put_json_str(buf, &span.name);
    let _ = write!(buf, ",\"kind\":{}", kind(&span.span_kind));
    buf.extend_from_slice(b",\"startTimeUnixNano\":");
    put_u64_str(buf, nanos(span.start_time));
    buf.extend_from_slice(b",\"endTimeUnixNano\":");
    put_u64_str(buf, nanos(span.end_time));
    buf.extend_from_slice(b",\"attributes\":");
    put_attributes(buf, &span.attributes);
    if span.dropped_attributes_count > 0 {
        let _ = write!(buf, ",\"droppedAttributesCount\":{}", span.dropped_attributes_count);
    }
    buf.extend_from_slice(b",\"events\":[");
    list(buf, &span.events, |buf, e| {
        buf.extend_from_slice(b"{\"timeUnixNano\":");
        put_u64_str(buf, nanos(e.timestamp));
        buf.extend_from_slice(b",\"name\":");
        put_json_str(buf, &e.name);
        buf.extend_from_slice(b",\"attributes\":");
        put_attributes(buf, &e.attributes);
        if e.dropped_attributes_count > 0 {
            let _ = write!(buf, ",\"droppedAttributesCount\":{}", e.dropped_attributes_count);
        }
        buf.push(b'}');
    });
    buf.push(b']');
    if span.events.dropped_count > 0 {
        let _ = write!(buf, ",\"droppedEventsCount\":{}", span.events.dropped_count);
    }
    buf.extend_from_slice(b",\"links\":[");
    list(buf, &span.links, |buf, l| {
        buf.extend_from_slice(b"{\"traceId\":");
        put_hex(buf, &l.span_context.trace_id().to_bytes());
        buf.extend_from_slice(b",\"spanId\":");
        put_hex(buf, &l.span_context.span_id().to_bytes());
        put_trace_state(buf, l.span_context.trace_state());
        buf.extend_from_slice(b",\"attributes\":");
        put_attributes(buf, &l.attributes);
        if l.dropped_attributes_count > 0 {
            let _ = write!(buf, ",\"droppedAttributesCount\":{}", l.dropped_attributes_count);
        }
        let _ = write!(
            buf,
            ",\"flags\":{}}}",
            trace_flags(l.span_context.trace_flags().to_u8(), l.span_context.is_remote())
        );
    });
    buf.push(b']');
    if span.links.dropped_count > 0 {
        let _ = write!(buf, ",\"droppedLinksCount\":{}", span.links.dropped_count);
    }
    buf.extend_from_slice(b",\"status\":{");
    match &span.status {
        Status::Unset => {}
        Status::Ok => buf.extend_from_slice(b"\"code\":1"),
        Status::Error { description } => {
            if !description.is_empty() {
                buf.extend_from_slice(b"\"message\":");
                put_json_str(buf, description);
                buf.push(b',');
            }
            let _ = write!(buf, "\"code\":{}", status_code(&span.status));
        }
    }
    buf.extend_from_slice(b"}}");
}

/// Encodes one OTLP/JSON `ExportTraceServiceRequest` into `buf` (cleared first).
pub(crate) fn encode_request(buf: &mut Vec<u8>, resource: &ResourceInfo, batch: &Batch<'_>) {
    buf.clear();
    buf.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":{\"attributes\":");
    put_attributes(buf, &resource.attributes);
    buf.extend_from_slice(b"},\"scopeSpans\":[");
    list(buf, &batch.groups, |buf, g| {
        buf.extend_from_slice(b"{\"scope\":{\"name\":");
        put_json_str(buf, g.scope.name());
        if let Some(v) = g.scope.version() {
            buf.extend_from_slice(b",\"version\":");
            put_json_str(buf, v);
        }
        let attrs: Vec<KeyValue> = g.scope.attributes().cloned().collect();
        if !attrs.is_empty() {
            buf.extend_from_slice(b",\"attributes\":");
            put_attributes(buf, &attrs);
        }
        buf.extend_from_slice(b"},\"spans\":[");
        list(buf, &g.members, |buf, &i| put_span(buf, batch.spans[i]));
        buf.push(b']');
        if !g.schema_url.is_empty() {
            buf.extend_from_slice(b",\"schemaUrl\":");
            put_json_str(buf, &g.schema_url);
        }
        buf.push(b'}');
    });
    buf.push(b']');
    if let Some(url) = resource.schema_url.as_deref().filter(|u| !u.is_empty()) {
        buf.extend_from_slice(b",\"schemaUrl\":");
        put_json_str(buf, url);
    }
    buf.extend_from_slice(b"}]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut b = Vec::new();
        put_json_str(&mut b, "a\"b\\c\nd\u{1}é😊");
        assert_eq!(String::from_utf8(b).unwrap(), "\"a\\\"b\\\\c\\nd\\u0001é😊\"");
    }

    #[test]
    fn floats() {
        for (f, s) in [
            (1.5, "1.5"),
            (f64::NAN, "\"NaN\""),
            (f64::NEG_INFINITY, "\"-Infinity\""),
            (1e300, "1e300"),
        ] {
            let mut b = Vec::new();
            put_f64(&mut b, f);
            assert_eq!(String::from_utf8(b).unwrap(), s);
        }
    }
}
