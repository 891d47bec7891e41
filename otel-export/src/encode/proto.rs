//! OTLP protobuf, written straight from `SpanData`.
//!
//! Two passes over the batch: the first computes each span's encoded size (so
//! every length prefix is known before its message, and the buffer is reserved
//! once), the second writes. Fields are written in field-number order with
//! proto3 defaults omitted, as prost does, so the bytes equal those of
//! opentelemetry-proto's conversion followed by `prost::Message::encode`.

use super::{Batch, ResourceInfo, nanos, status_code, trace_flags};
use crate::wire::field::{
    any_value, array_value, event, key_value, link, request, resource, resource_spans, scope, scope_spans, span, status,
};
use crate::wire::{
    FIXED32, VARINT, len_field_len, put_bytes, put_fixed32, put_fixed64, put_len_header, put_tag, put_varint, tag_len,
    varint_len,
};
use opentelemetry::trace::{SpanId, Status, TraceState};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanData;

// --- sizes -------------------------------------------------------------------

#[inline]
fn str_field_len(field: u32, s: &str) -> usize {
    if s.is_empty() { 0 } else { len_field_len(field, s.len()) }
}

#[inline]
fn uint_field_len(field: u32, v: u64) -> usize {
    if v == 0 { 0 } else { tag_len(field) + varint_len(v) }
}

fn array_content_len(array: &Array) -> usize {
    match array {
        Array::Bool(v) => v.len() * len_field_len(array_value::VALUES, 2),
        Array::I64(v) => v
            .iter()
            .map(|i| len_field_len(array_value::VALUES, 1 + varint_len(*i as u64)))
            .sum(),
        Array::F64(v) => v.len() * len_field_len(array_value::VALUES, 9),
        Array::String(v) => v
            .iter()
            .map(|s| len_field_len(array_value::VALUES, len_field_len(any_value::STRING, s.as_str().len())))
            .sum(),
        _ => 0,
    }
}

/// Content size of an `AnyValue`. Its oneof field is always written, even when
/// it holds a default value, as oneof presence requires.
#[inline]
fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Bool(_) => 2,
        Value::I64(i) => 1 + varint_len(*i as u64),
        Value::F64(_) => 9,
        Value::String(s) => len_field_len(any_value::STRING, s.as_str().len()),
        Value::Array(a) => len_field_len(any_value::ARRAY, array_content_len(a)),
        _ => 0,
    }
}

#[inline]
fn key_value_len(kv: &KeyValue) -> usize {
    str_field_len(key_value::KEY, kv.key.as_str()) + len_field_len(key_value::VALUE, any_value_len(&kv.value))
}

#[inline]
pub(crate) fn attributes_len(field: u32, attributes: &[KeyValue]) -> usize {
    attributes
        .iter()
        .map(|kv| len_field_len(field, key_value_len(kv)))
        .sum()
}

fn trace_state_len(ts: &TraceState) -> usize {
    let mut n = 0;
    let mut members = 0;
    for (k, v) in otel_propagation::tracestate::members(ts) {
        n += k.len() + v.len() + 1;
        members += 1;
    }
    n + members.max(1) - 1
}

fn event_len(e: &opentelemetry::trace::Event) -> usize {
    let t = nanos(e.timestamp);
    (if t == 0 { 0 } else { 9 })
        + str_field_len(event::NAME, &e.name)
        + attributes_len(event::ATTRIBUTES, &e.attributes)
        + uint_field_len(event::DROPPED_ATTRIBUTES_COUNT, u64::from(e.dropped_attributes_count))
}

fn link_len(l: &opentelemetry::trace::Link) -> usize {
    let ts = trace_state_len(l.span_context.trace_state());
    len_field_len(link::TRACE_ID, 16)
        + len_field_len(link::SPAN_ID, 8)
        + if ts == 0 {
            0
        } else {
            len_field_len(link::TRACE_STATE, ts)
        }
        + attributes_len(link::ATTRIBUTES, &l.attributes)
        + uint_field_len(link::DROPPED_ATTRIBUTES_COUNT, u64::from(l.dropped_attributes_count))
        + 5 // flags: one-byte tag, fixed32
}

fn status_len(status: &Status) -> usize {
    match status {
        Status::Unset => 0,
        Status::Ok => 2,
        Status::Error { description } => str_field_len(status::MESSAGE, description) + 2,
    }
}

/// A span's encoded size and timestamps, computed once in the sizing pass.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpanMeta {
    len: usize,
    start: u64,
    end: u64,
}

impl SpanMeta {
    /// The content size of the `Span` message.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// The content size of one `Span` message.
pub(crate) fn span_meta(span: &SpanData) -> SpanMeta {
    let ts = trace_state_len(span.span_context.trace_state());
    let start = nanos(span.start_time);
    let end = nanos(span.end_time);
    let len = len_field_len(span::TRACE_ID, 16)
        + len_field_len(span::SPAN_ID, 8)
        + if ts == 0 { 0 } else { len_field_len(span::TRACE_STATE, ts) }
        + if span.parent_span_id == SpanId::INVALID { 0 } else { len_field_len(span::PARENT_SPAN_ID, 8) }
        + str_field_len(span::NAME, &span.name)
        + 2 // kind: never the default (INTERNAL is 1)
        + if start == 0 { 0 } else { 9 }
        + if end == 0 { 0 } else { 9 }
        + attributes_len(span::ATTRIBUTES, &span.attributes)
        + uint_field_len(span::DROPPED_ATTRIBUTES_COUNT, u64::from(span.dropped_attributes_count))
        + span.events.iter().map(|e| len_field_len(span::EVENTS, event_len(e))).sum::<usize>()
        + uint_field_len(span::DROPPED_EVENTS_COUNT, u64::from(span.events.dropped_count))
        + span.links.iter().map(|l| len_field_len(span::LINKS, link_len(l))).sum::<usize>()
        + uint_field_len(span::DROPPED_LINKS_COUNT, u64::from(span.links.dropped_count))
        + len_field_len(span::STATUS, status_len(&span.status))
        + 2 + 4; // flags: tag 16 takes two bytes; never zero (the has-is-remote bit)
    SpanMeta { len, start, end }
}

// --- writing -----------------------------------------------------------------

#[inline]
fn put_str(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(buf, field, s.as_bytes());
    }
}

#[inline]
fn put_uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_tag(buf, field, VARINT);
        put_varint(buf, v);
    }
}

fn put_string_value(buf: &mut Vec<u8>, s: &StringValue) {
    put_bytes(buf, any_value::STRING, s.as_str().as_bytes());
}

fn put_any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => {
            put_tag(buf, any_value::BOOL, VARINT);
            buf.push(u8::from(*b));
        }
        Value::I64(i) => {
            put_tag(buf, any_value::INT, VARINT);
            put_varint(buf, *i as u64);
        }
        Value::F64(f) => put_fixed64(buf, any_value::DOUBLE, f.to_bits()),
        Value::String(s) => put_string_value(buf, s),
        Value::Array(a) => {
            put_len_header(buf, any_value::ARRAY, array_content_len(a));
            match a {
                Array::Bool(v) => {
                    for b in v {
                        put_len_header(buf, array_value::VALUES, 2);
                        put_tag(buf, any_value::BOOL, VARINT);
                        buf.push(u8::from(*b));
                    }
                }
                Array::I64(v) => {
                    for i in v {
                        put_len_header(buf, array_value::VALUES, 1 + varint_len(*i as u64));
                        put_tag(buf, any_value::INT, VARINT);
                        put_varint(buf, *i as u64);
                    }
                }
                Array::F64(v) => {
                    for f in v {
                        put_len_header(buf, array_value::VALUES, 9);
                        put_fixed64(buf, any_value::DOUBLE, f.to_bits());
                    }
                }
                Array::String(v) => {
                    for s in v {
                        put_len_header(
                            buf,
                            array_value::VALUES,
                            len_field_len(any_value::STRING, s.as_str().len()),
                        );
                        put_string_value(buf, s);
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// Writes `attributes` as repeated `KeyValue` field `field`.
pub(crate) fn put_attributes(buf: &mut Vec<u8>, field: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        let value_len = any_value_len(&kv.value);
        put_len_header(
            buf,
            field,
            str_field_len(key_value::KEY, kv.key.as_str()) + len_field_len(key_value::VALUE, value_len),
        );
        put_str(buf, key_value::KEY, kv.key.as_str());
        put_len_header(buf, key_value::VALUE, value_len);
        put_any_value(buf, &kv.value);
    }
}

fn put_trace_state(buf: &mut Vec<u8>, field: u32, ts: &TraceState) {
    let len = trace_state_len(ts);
    if len == 0 {
        return;
    }
    put_len_header(buf, field, len);
    for (i, (k, v)) in otel_propagation::tracestate::members(ts).enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(k.as_bytes());
        buf.push(b'=');
        buf.extend_from_slice(v.as_bytes());
    }
}

fn put_span(buf: &mut Vec<u8>, span: &SpanData, meta: SpanMeta) {
    put_len_header(buf, scope_spans::SPANS, meta.len);
    let sc = &span.span_context;
    put_bytes(buf, span::TRACE_ID, &sc.trace_id().to_bytes());
    put_bytes(buf, span::SPAN_ID, &sc.span_id().to_bytes());
    put_trace_state(buf, span::TRACE_STATE, sc.trace_state());
    if span.parent_span_id != SpanId::INVALID {
        put_bytes(buf, span::PARENT_SPAN_ID, &span.parent_span_id.to_bytes());
    }
    put_str(buf, span::NAME, &span.name);
    put_tag(buf, span::KIND, VARINT);
    buf.push(super::kind(&span.span_kind));
    if meta.start != 0 {
        put_fixed64(buf, span::START_TIME, meta.start);
    }
    if meta.end != 0 {
        put_fixed64(buf, span::END_TIME, meta.end);
    }
    put_attributes(buf, span::ATTRIBUTES, &span.attributes);
    put_uint(
        buf,
        span::DROPPED_ATTRIBUTES_COUNT,
        u64::from(span.dropped_attributes_count),
    );
    for e in span.events.iter() {
        put_len_header(buf, span::EVENTS, event_len(e));
        let t = nanos(e.timestamp);
        if t != 0 {
            put_fixed64(buf, event::TIME, t);
        }
        put_str(buf, event::NAME, &e.name);
        put_attributes(buf, event::ATTRIBUTES, &e.attributes);
        put_uint(
            buf,
            event::DROPPED_ATTRIBUTES_COUNT,
            u64::from(e.dropped_attributes_count),
        );
    }
    put_uint(buf, span::DROPPED_EVENTS_COUNT, u64::from(span.events.dropped_count));
    for l in span.links.iter() {
        put_len_header(buf, span::LINKS, link_len(l));
        put_bytes(buf, link::TRACE_ID, &l.span_context.trace_id().to_bytes());
        put_bytes(buf, link::SPAN_ID, &l.span_context.span_id().to_bytes());
        put_trace_state(buf, link::TRACE_STATE, l.span_context.trace_state());
        put_attributes(buf, link::ATTRIBUTES, &l.attributes);
        put_uint(
            buf,
            link::DROPPED_ATTRIBUTES_COUNT,
            u64::from(l.dropped_attributes_count),
        );
        // Links record whether the linked context was remote.
        put_fixed32(
            buf,
            link::FLAGS,
            trace_flags(l.span_context.trace_flags().to_u8(), l.span_context.is_remote()),
        );
    }
    put_uint(buf, span::DROPPED_LINKS_COUNT, u64::from(span.links.dropped_count));
    put_len_header(buf, span::STATUS, status_len(&span.status));
    match &span.status {
        Status::Unset => {}
        Status::Ok => {
            put_tag(buf, status::CODE, VARINT);
            buf.push(1);
        }
        Status::Error { description } => {
            put_str(buf, status::MESSAGE, description);
            put_tag(buf, status::CODE, VARINT);
            buf.push(status_code(&span.status));
        }
    }
    put_tag(buf, span::FLAGS, FIXED32);
    buf.extend_from_slice(&trace_flags(sc.trace_flags().to_u8(), span.parent_span_is_remote).to_le_bytes());
}

/// Encodes one `ExportTraceServiceRequest` for `batch` into `buf` (cleared first).
pub(crate) fn encode_request(buf: &mut Vec<u8>, sizes: &mut Vec<SpanMeta>, resource: &ResourceInfo, batch: &Batch<'_>) {
    buf.clear();
    sizes.clear();
    sizes.extend(batch.spans.iter().map(|s| span_meta(s)));

    // ScopeSpans content sizes, in group order.
    let mut scopes_len = 0usize;
    let mut group_lens = Vec::with_capacity(batch.groups.len());
    for g in &batch.groups {
        let spans: usize = g
            .members
            .iter()
            .map(|&i| len_field_len(scope_spans::SPANS, sizes[i].len))
            .sum();
        let content = len_field_len(scope_spans::SCOPE, g.scope_bytes.len())
            + spans
            + str_field_len(scope_spans::SCHEMA_URL, &g.schema_url);
        group_lens.push(content);
        scopes_len += len_field_len(resource_spans::SCOPE_SPANS, content);
    }
    let resource_spans_len = len_field_len(resource_spans::RESOURCE, resource.encoded.len())
        + scopes_len
        + str_field_len(resource_spans::SCHEMA_URL, resource.schema_url.as_deref().unwrap_or(""));
    buf.reserve(len_field_len(request::RESOURCE_SPANS, resource_spans_len));

    put_len_header(buf, request::RESOURCE_SPANS, resource_spans_len);
    put_bytes(buf, resource_spans::RESOURCE, &resource.encoded);
    for (g, content) in batch.groups.iter().zip(group_lens) {
        put_len_header(buf, resource_spans::SCOPE_SPANS, content);
        put_bytes(buf, scope_spans::SCOPE, &g.scope_bytes);
        for &i in &g.members {
            put_span(buf, batch.spans[i], sizes[i]);
        }
        put_str(buf, scope_spans::SCHEMA_URL, &g.schema_url);
    }
    put_str(
        buf,
        resource_spans::SCHEMA_URL,
        resource.schema_url.as_deref().unwrap_or(""),
    );
}

/// The content of an `InstrumentationScope` message.
pub(crate) fn scope_bytes(scope: &opentelemetry::InstrumentationScope) -> Vec<u8> {
    let attrs: Vec<KeyValue> = scope.attributes().cloned().collect();
    let mut buf = Vec::new();
    put_str(&mut buf, scope::NAME, scope.name());
    put_str(&mut buf, scope::VERSION, scope.version().unwrap_or(""));
    put_attributes(&mut buf, scope::ATTRIBUTES, &attrs);
    buf
}

/// The content of a `Resource` message.
pub(crate) fn resource_bytes(attributes: &[KeyValue]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(attributes_len(resource::ATTRIBUTES, attributes));
    put_attributes(&mut buf, resource::ATTRIBUTES, attributes);
    buf
}
