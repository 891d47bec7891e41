//! OTLP trace requests as wire bytes: split a request into spans that keep
//! their own bytes (plus shared resource and scope bytes), read what the
//! policies need straight from those bytes, and put requests back together
//! without re-encoding a span.

use crate::facts::{AttrValue, Attributes, SpanFacts, StatusCode};
use bytes::Bytes;
use otel_export::wire::field::{
    self, array_value, event, key_value, link, request, resource, resource_spans, scope, scope_spans, span, status,
};
use otel_export::wire::{Field, Reader, WireError, len_field_len, put_bytes, put_len_header};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Bytes of span data alive in one collector (spans buffered, batched or
/// queued for export), for its memory limiter: each collector counts its own,
/// so two collectors in one process do not share a budget.
#[derive(Debug, Default)]
pub struct LiveBytes(AtomicI64);

impl LiveBytes {
    /// A new account at zero.
    pub fn new() -> Arc<Self> {
        Arc::new(LiveBytes::default())
    }

    /// Bytes alive now.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one stored span costs besides its bytes (the record and its share of
/// buffer bookkeeping).
const SPAN_OVERHEAD: i64 = 64;

/// Counts other bytes (an encoded request in flight) as live while it exists.
#[derive(Debug)]
pub struct LiveGuard(Arc<LiveBytes>, i64);

impl LiveGuard {
    /// Counts `bytes` on `account` until dropped.
    pub fn new(account: &Arc<LiveBytes>, bytes: usize) -> Self {
        account.add(bytes as i64);
        LiveGuard(account.clone(), bytes as i64)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.add(-self.1);
    }
}

/// A `Resource` message's content, shared by its spans.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceBlock {
    /// The `Resource` message content.
    pub bytes: Box<[u8]>,
    /// `ResourceSpans.schema_url`.
    pub schema_url: Box<str>,
}

/// An `InstrumentationScope` and its resource, shared by its spans.
#[derive(Debug)]
pub struct ScopeBlock {
    /// The resource.
    pub resource: Arc<ResourceBlock>,
    /// The `InstrumentationScope` message content (empty when absent).
    pub bytes: Box<[u8]>,
    /// `ScopeSpans.schema_url`.
    pub schema_url: Box<str>,
    /// The collector whose memory its spans count against.
    pub live: Arc<LiveBytes>,
}

impl PartialEq for ScopeBlock {
    fn eq(&self, other: &Self) -> bool {
        self.resource == other.resource && self.bytes == other.bytes && self.schema_url == other.schema_url
    }
}

impl Eq for ScopeBlock {}

/// One span: its `Span` message content and where it came from. The bytes
/// are a slice of the request they arrived in (shared, not copied).
pub struct SpanRec {
    /// The span's resource and scope.
    pub scope: Arc<ScopeBlock>,
    bytes: Bytes,
    /// The journal record that holds the span until it is delivered or
    /// decided (a tail sampler's buffer on disk); retired when the last span
    /// holding it goes.
    hold: Option<Arc<super::journal::Hold>>,
}

impl SpanRec {
    /// A span from its `Span` message content.
    pub fn new(scope: Arc<ScopeBlock>, bytes: Bytes) -> Self {
        scope.live.add(bytes.len() as i64 + SPAN_OVERHEAD);
        SpanRec {
            scope,
            bytes,
            hold: None,
        }
    }

    /// The span, held by journal record `hold` until it goes.
    pub(crate) fn held_by(mut self, hold: Arc<super::journal::Hold>) -> Self {
        self.hold = Some(hold);
        self
    }

    /// The `Span` message content.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Replaces the span's bytes (after an attribute rewrite).
    pub fn set_bytes(&mut self, bytes: Bytes) {
        self.scope.live.add(bytes.len() as i64 - self.bytes.len() as i64);
        self.bytes = bytes;
    }

    /// A view for reading fields.
    pub fn view(&self) -> Result<SpanView<'_>, WireError> {
        SpanView::parse(&self.bytes)
    }
}

impl Clone for SpanRec {
    fn clone(&self) -> Self {
        let mut c = SpanRec::new(self.scope.clone(), self.bytes.clone());
        c.hold = self.hold.clone();
        c
    }
}

impl Drop for SpanRec {
    fn drop(&mut self) {
        self.scope.live.add(-(self.bytes.len() as i64 + SPAN_OVERHEAD));
    }
}

impl fmt::Debug for SpanRec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanRec")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn bad(what: &str, e: WireError) -> DecodeError {
    DecodeError(format!("{what}: {e}"))
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, DecodeError> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
}

/// Checks that `bytes` are UTF-8. Most keys and values are short ASCII,
/// which a word-at-a-time ASCII test settles faster than a full validation.
fn check_utf8(bytes: &[u8], what: &str) -> Result<(), DecodeError> {
    if bytes.is_ascii() {
        return Ok(());
    }
    utf8(bytes, what).map(|_| ())
}

/// Nesting allowed inside attribute values (arrays and maps of values).
const MAX_VALUE_DEPTH: usize = 32;

/// Checks an `AnyValue`.
fn check_any_value(bytes: &[u8], depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(DecodeError("attribute values nest too deeply".into()));
    }
    let mut r = Reader::new(bytes);
    while let Some(f) = r.next_field() {
        match f.map_err(|e| bad("attribute value", e))? {
            (field::any_value::STRING, Field::Bytes(s)) => {
                check_utf8(s, "a string attribute value")?;
            }
            (field::any_value::ARRAY, Field::Bytes(inner)) => {
                let mut a = Reader::new(inner);
                while let Some(f) = a.next_field() {
                    if let (array_value::VALUES, Field::Bytes(v)) = f.map_err(|e| bad("attribute value", e))? {
                        check_any_value(v, depth + 1)?;
                    }
                }
            }
            (field::any_value::KVLIST, Field::Bytes(inner)) => {
                let mut a = Reader::new(inner);
                while let Some(f) = a.next_field() {
                    if let (array_value::VALUES, Field::Bytes(kv)) = f.map_err(|e| bad("attribute value", e))? {
                        check_keyvalue(kv, depth + 1)?;
                    }
                }
            }
            (field::any_value::STRING | field::any_value::ARRAY | field::any_value::KVLIST, _) => {
                return Err(DecodeError("an attribute value has the wrong wire type".into()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a `KeyValue`.
fn check_keyvalue(bytes: &[u8], depth: usize) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes);
    while let Some(f) = r.next_field() {
        match f.map_err(|e| bad("attribute", e))? {
            (key_value::KEY, Field::Bytes(k)) => {
                check_utf8(k, "an attribute key")?;
            }
            (key_value::KEY, _) => return Err(DecodeError("an attribute key has the wrong wire type".into())),
            (key_value::VALUE, Field::Bytes(v)) => check_any_value(v, depth)?,
            (key_value::VALUE, _) => return Err(DecodeError("an attribute value has the wrong wire type".into())),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a message whose attributes are field `attr_field` (resource, scope, event, link).
fn check_with_attributes(bytes: &[u8], attr_field: u32, what: &str) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes);
    while let Some(f) = r.next_field() {
        match f.map_err(|e| bad(what, e))? {
            (n, Field::Bytes(kv)) if n == attr_field => check_keyvalue(kv, 0)?,
            (n, _) if n == attr_field => {
                return Err(DecodeError(format!("{what} attributes have the wrong wire type")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a `Span` and returns its trace id.
fn check_span(bytes: &[u8]) -> Result<[u8; 16], DecodeError> {
    let mut r = Reader::new(bytes);
    let mut trace_id = None;
    let mut span_id_ok = false;
    while let Some(f) = r.next_field() {
        match f.map_err(|e| bad("span", e))? {
            (span::TRACE_ID, Field::Bytes(id)) => {
                let id: [u8; 16] = id
                    .try_into()
                    .map_err(|_| DecodeError(format!("a span's trace_id has {} bytes, not 16", id.len())))?;
                if id == [0; 16] {
                    return Err(DecodeError("a span's trace_id is all zeros".into()));
                }
                trace_id = Some(id);
            }
            (span::SPAN_ID, Field::Bytes(id)) => {
                if id.len() != 8 || id == [0; 8] {
                    return Err(DecodeError("a span's span_id must be 8 bytes, not all zeros".into()));
                }
                span_id_ok = true;
            }
            (span::TRACE_STATE, Field::Bytes(s)) => {
                check_utf8(s, "a span's trace_state")?;
            }
            (span::PARENT_SPAN_ID, Field::Bytes(id)) if !(id.is_empty() || id.len() == 8) => {
                return Err(DecodeError(format!(
                    "a span's parent_span_id has {} bytes, not 8",
                    id.len()
                )));
            }
            (span::NAME, Field::Bytes(s)) => {
                check_utf8(s, "a span's name")?;
            }
            (span::ATTRIBUTES, Field::Bytes(kv)) => check_keyvalue(kv, 0)?,
            (span::EVENTS, Field::Bytes(e)) => check_with_attributes(e, event::ATTRIBUTES, "a span event")?,
            (span::LINKS, Field::Bytes(l)) => check_with_attributes(l, link::ATTRIBUTES, "a span link")?,
            (span::STATUS, Field::Bytes(st)) => {
                let mut s = Reader::new(st);
                while let Some(f) = s.next_field() {
                    if let (status::MESSAGE, Field::Bytes(m)) = f.map_err(|e| bad("span status", e))? {
                        check_utf8(m, "a span's status message")?;
                    }
                }
            }
            (
                span::TRACE_ID
                | span::SPAN_ID
                | span::TRACE_STATE
                | span::PARENT_SPAN_ID
                | span::NAME
                | span::ATTRIBUTES
                | span::EVENTS
                | span::LINKS
                | span::STATUS,
                Field::Varint(_) | Field::Fixed32(_) | Field::Fixed64(_),
            ) => {
                return Err(DecodeError("a span field has the wrong wire type".into()));
            }
            (span::START_TIME | span::END_TIME, Field::Varint(_) | Field::Fixed32(_) | Field::Bytes(_)) => {
                return Err(DecodeError("a span timestamp has the wrong wire type".into()));
            }
            _ => {}
        }
    }
    if !span_id_ok {
        return Err(DecodeError("a span has no span_id".into()));
    }
    trace_id.ok_or_else(|| DecodeError("a span has no trace_id".into()))
}

/// Splits an `ExportTraceServiceRequest` into spans, checking every span.
/// The spans share `body`'s buffer.
///
/// # Errors
///
/// When the bytes are not a well-formed request (the receiver answers 400 /
/// INVALID_ARGUMENT with the message).
pub fn split_request(body: &Bytes, live: &Arc<LiveBytes>) -> Result<Vec<SpanRec>, DecodeError> {
    let mut out = Vec::new();
    let mut req = Reader::new(body);
    while let Some(f) = req.next_field() {
        let rs = match f.map_err(|e| bad("request", e))? {
            (request::RESOURCE_SPANS, Field::Bytes(rs)) => rs,
            (request::RESOURCE_SPANS, _) => return Err(DecodeError("resource_spans has the wrong wire type".into())),
            _ => continue,
        };
        // First pass: resource and schema url (they may follow the scope spans).
        let mut resource: &[u8] = &[];
        let mut schema: &str = "";
        let mut r = Reader::new(rs);
        while let Some(f) = r.next_field() {
            match f.map_err(|e| bad("resource_spans", e))? {
                (resource_spans::RESOURCE, Field::Bytes(b)) => resource = b,
                (resource_spans::SCHEMA_URL, Field::Bytes(s)) => schema = utf8(s, "a schema_url")?,
                (
                    resource_spans::RESOURCE..=resource_spans::SCHEMA_URL,
                    Field::Varint(_) | Field::Fixed32(_) | Field::Fixed64(_),
                ) => {
                    return Err(DecodeError("resource_spans has a field of the wrong wire type".into()));
                }
                _ => {}
            }
        }
        check_with_attributes(resource, resource::ATTRIBUTES, "a resource")?;
        let resource = Arc::new(ResourceBlock {
            bytes: resource.into(),
            schema_url: schema.into(),
        });
        let mut r = Reader::new(rs);
        while let Some(f) = r.next_field() {
            let ss = match f.map_err(|e| bad("resource_spans", e))? {
                (resource_spans::SCOPE_SPANS, Field::Bytes(ss)) => ss,
                _ => continue,
            };
            let mut scope: &[u8] = &[];
            let mut scope_schema: &str = "";
            let mut s = Reader::new(ss);
            while let Some(f) = s.next_field() {
                match f.map_err(|e| bad("scope_spans", e))? {
                    (scope_spans::SCOPE, Field::Bytes(b)) => scope = b,
                    (scope_spans::SCHEMA_URL, Field::Bytes(u)) => scope_schema = utf8(u, "a schema_url")?,
                    (
                        scope_spans::SCOPE..=scope_spans::SCHEMA_URL,
                        Field::Varint(_) | Field::Fixed32(_) | Field::Fixed64(_),
                    ) => {
                        return Err(DecodeError("scope_spans has a field of the wrong wire type".into()));
                    }
                    _ => {}
                }
            }
            check_with_attributes(scope, scope::ATTRIBUTES, "an instrumentation scope")?;
            let block = Arc::new(ScopeBlock {
                resource: resource.clone(),
                bytes: scope.into(),
                schema_url: scope_schema.into(),
                live: live.clone(),
            });
            let mut s = Reader::new(ss);
            while let Some(f) = s.next_field() {
                if let (scope_spans::SPANS, Field::Bytes(span)) = f.map_err(|e| bad("scope_spans", e))? {
                    check_span(span)?;
                    out.push(SpanRec::new(block.clone(), body.slice_ref(span)));
                }
            }
        }
    }
    Ok(out)
}

/// What the engine and the exporters read from a span's bytes.
#[derive(Debug, Clone, Copy)]
pub struct SpanView<'a> {
    bytes: &'a [u8],
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// Parent span id (zeros for a root).
    pub parent_span_id: [u8; 8],
    /// Name.
    pub name: &'a str,
    /// `trace_state` header value.
    pub trace_state: &'a str,
    /// Start, Unix nanoseconds.
    pub start: u64,
    /// End, Unix nanoseconds.
    pub end: u64,
    /// Status code.
    pub status: StatusCode,
    /// Status message.
    pub status_message: &'a str,
    /// Span kind (OTLP enum value).
    pub kind: u64,
}

impl<'a> SpanView<'a> {
    /// Reads a `Span` message content.
    ///
    /// # Errors
    ///
    /// When the bytes are not a well-formed span.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let mut v = SpanView {
            bytes,
            trace_id: [0; 16],
            span_id: [0; 8],
            parent_span_id: [0; 8],
            name: "",
            trace_state: "",
            start: 0,
            end: 0,
            status: StatusCode::Unset,
            status_message: "",
            kind: 0,
        };
        let mut r = Reader::new(bytes);
        while let Some(f) = r.next_field() {
            match f? {
                (span::TRACE_ID, Field::Bytes(b)) if b.len() == 16 => v.trace_id.copy_from_slice(b),
                (span::SPAN_ID, Field::Bytes(b)) if b.len() == 8 => v.span_id.copy_from_slice(b),
                (span::TRACE_STATE, Field::Bytes(b)) => v.trace_state = simdutf8::basic::from_utf8(b).unwrap_or(""),
                (span::PARENT_SPAN_ID, Field::Bytes(b)) if b.len() == 8 => v.parent_span_id.copy_from_slice(b),
                (span::NAME, Field::Bytes(b)) => v.name = simdutf8::basic::from_utf8(b).unwrap_or(""),
                (span::KIND, Field::Varint(k)) => v.kind = k,
                (span::START_TIME, Field::Fixed64(t)) => v.start = t,
                (span::END_TIME, Field::Fixed64(t)) => v.end = t,
                (span::STATUS, Field::Bytes(st)) => {
                    let mut s = Reader::new(st);
                    while let Some(f) = s.next_field() {
                        match f? {
                            (status::CODE, Field::Varint(c)) => {
                                v.status = match c {
                                    1 => StatusCode::Ok,
                                    2 => StatusCode::Error,
                                    _ => StatusCode::Unset,
                                }
                            }
                            (status::MESSAGE, Field::Bytes(m)) => {
                                v.status_message = simdutf8::basic::from_utf8(m).unwrap_or("")
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(v)
    }

    /// Span attributes, in order, as (key, `AnyValue` bytes).
    pub fn attributes(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        keyvalues(self.bytes, span::ATTRIBUTES)
    }
}

/// The `KeyValue`s in field `field` of `message`, as (key, value bytes).
pub fn keyvalues<'a>(message: &'a [u8], field: u32) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
    let mut r = Reader::new(message);
    std::iter::from_fn(move || {
        loop {
            match r.next_field()? {
                Ok((n, Field::Bytes(kv))) if n == field => {
                    let mut key = "";
                    let mut value: &[u8] = &[];
                    let mut k = Reader::new(kv);
                    while let Some(Ok(f)) = k.next_field() {
                        match f {
                            (key_value::KEY, Field::Bytes(b)) => key = simdutf8::basic::from_utf8(b).unwrap_or(""),
                            (key_value::VALUE, Field::Bytes(b)) => value = b,
                            _ => {}
                        }
                    }
                    return Some((key, value));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    })
}

/// Reads an `AnyValue`'s scalar.
pub fn any_value(bytes: &[u8]) -> AttrValue<'_> {
    let mut r = Reader::new(bytes);
    let mut out = AttrValue::Other;
    while let Some(Ok(f)) = r.next_field() {
        out = match f {
            (field::any_value::STRING, Field::Bytes(s)) => {
                simdutf8::basic::from_utf8(s).map_or(AttrValue::Other, AttrValue::Str)
            }
            (field::any_value::BOOL, Field::Varint(b)) => AttrValue::Bool(b != 0),
            (field::any_value::INT, Field::Varint(i)) => AttrValue::Int(i as i64),
            (field::any_value::DOUBLE, Field::Fixed64(d)) => AttrValue::Double(f64::from_bits(d)),
            _ => AttrValue::Other,
        };
    }
    out
}

fn find_attribute<'a>(message: &'a [u8], field: u32, key: &str) -> Option<AttrValue<'a>> {
    keyvalues(message, field)
        .find(|(k, _)| *k == key)
        .map(|(_, v)| any_value(v))
}

impl Attributes for SpanView<'_> {
    fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
        find_attribute(self.bytes, span::ATTRIBUTES, key)
    }
}

impl SpanFacts for SpanView<'_> {
    fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }
    fn is_root(&self) -> bool {
        self.parent_span_id == [0; 8]
    }
    fn start_nanos(&self) -> u64 {
        self.start
    }
    fn end_nanos(&self) -> u64 {
        self.end
    }
    fn status(&self) -> StatusCode {
        self.status
    }
    fn trace_state_value(&self, key: &str) -> Option<Cow<'_, str>> {
        self.trace_state.split(',').find_map(|member| {
            let (k, v) = member.trim().split_once('=')?;
            (k == key).then_some(Cow::Borrowed(v))
        })
    }
    fn encoded_len(&self) -> usize {
        len_field_len(scope_spans::SPANS, self.bytes.len())
    }
}

/// Copies `message`'s fields except every occurrence of `field` to `out`
/// (in order, bytes as they were).
pub fn copy_without(message: &[u8], field: u32, out: &mut Vec<u8>) {
    let mut r = Reader::new(message);
    let mut pos = 0;
    while let Some(f) = r.next_field() {
        let end = r.position();
        match f {
            Ok((n, _)) if n == field => {}
            _ => out.extend_from_slice(&message[pos..end]),
        }
        pos = end;
    }
}

/// `message` with length-delimited `field` set to `value` (left out when empty,
/// as protobuf leaves an empty string out).
pub fn replace_field(message: &[u8], field: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + value.len() + 4);
    copy_without(message, field, &mut out);
    if !value.is_empty() {
        put_bytes(&mut out, field, value);
    }
    out
}

/// `message` with each occurrence of length-delimited `field` passed through
/// `rewrite` (`None`: kept as it is), other fields as they were; `None` when
/// nothing changed.
pub fn map_field(message: &[u8], field: u32, mut rewrite: impl FnMut(&[u8]) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut r = Reader::new(message);
    let mut pos = 0;
    while let Some(f) = r.next_field() {
        let end = r.position();
        let new = match f {
            Ok((n, Field::Bytes(inner))) if n == field => rewrite(inner),
            _ => None,
        };
        match (new, out.as_mut()) {
            (Some(new), buf) => {
                let buf = match buf {
                    Some(b) => b,
                    None => out.insert(message[..pos].to_vec()),
                };
                put_bytes(buf, field, &new);
            }
            (None, Some(buf)) => buf.extend_from_slice(&message[pos..end]),
            (None, None) => {}
        }
        pos = end;
    }
    out
}

/// A resource's attributes, read from its bytes.
#[derive(Debug, Clone, Copy)]
pub struct ResourceView<'a>(pub &'a [u8]);

impl Attributes for ResourceView<'_> {
    fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
        find_attribute(self.0, resource::ATTRIBUTES, key)
    }
}

/// Builds `ExportTraceServiceRequest` bytes from spans, grouping them by
/// resource and scope (first-seen order) and copying each span's bytes.
pub fn encode_request(spans: &[SpanRec]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request_into(spans, &mut out);
    out
}

/// As [`encode_request`], appending to `out` (a buffer used again, or a
/// record with a header before the request).
pub fn encode_request_into(spans: &[SpanRec], out: &mut Vec<u8>) {
    // Group: resources, then scopes within each, then span indices.
    struct ScopeGroup<'a> {
        block: &'a ScopeBlock,
        spans: Vec<&'a [u8]>,
    }
    struct ResourceGroup<'a> {
        block: &'a ResourceBlock,
        scopes: Vec<ScopeGroup<'a>>,
    }
    let mut groups: Vec<ResourceGroup<'_>> = Vec::new();
    // Blocks seen so far -> their group: spans of one request share one
    // block, so after the first span of each request the lookup is a
    // pointer comparison (a batch holds spans of many requests, interleaved
    // by the tail sampler; comparing block bytes per span showed in profiles).
    let mut resource_at: Vec<(*const ResourceBlock, usize)> = Vec::new();
    let mut scope_at: Vec<(*const ScopeBlock, usize, usize)> = Vec::new();
    for s in spans {
        let scope = &*s.scope;
        let scope_ptr: *const ScopeBlock = scope;
        if let Some(&(_, g, i)) = scope_at.iter().rev().find(|(p, _, _)| std::ptr::eq(*p, scope_ptr)) {
            groups[g].scopes[i].spans.push(&s.bytes);
            continue;
        }
        let resource = &*scope.resource;
        let resource_ptr: *const ResourceBlock = resource;
        let g = match resource_at.iter().rev().find(|(p, _)| std::ptr::eq(*p, resource_ptr)) {
            Some(&(_, g)) => g,
            None => {
                let g = match groups.iter().rposition(|g| *g.block == *resource) {
                    Some(g) => g,
                    None => {
                        groups.push(ResourceGroup {
                            block: resource,
                            scopes: Vec::new(),
                        });
                        groups.len() - 1
                    }
                };
                resource_at.push((resource_ptr, g));
                g
            }
        };
        let group = &mut groups[g];
        let i = match group
            .scopes
            .iter()
            .rposition(|sg| sg.block.bytes == scope.bytes && sg.block.schema_url == scope.schema_url)
        {
            Some(i) => i,
            None => {
                group.scopes.push(ScopeGroup {
                    block: scope,
                    spans: Vec::new(),
                });
                group.scopes.len() - 1
            }
        };
        group.scopes[i].spans.push(&s.bytes);
        scope_at.push((scope_ptr, g, i));
    }
    let str_len = |field: u32, s: &str| if s.is_empty() { 0 } else { len_field_len(field, s.len()) };
    let scope_len = |sg: &ScopeGroup<'_>| {
        len_field_len(scope_spans::SCOPE, sg.block.bytes.len())
            + sg.spans
                .iter()
                .map(|b| len_field_len(scope_spans::SPANS, b.len()))
                .sum::<usize>()
            + str_len(scope_spans::SCHEMA_URL, &sg.block.schema_url)
    };
    let resource_len = |g: &ResourceGroup<'_>| {
        len_field_len(resource_spans::RESOURCE, g.block.bytes.len())
            + g.scopes
                .iter()
                .map(|sg| len_field_len(resource_spans::SCOPE_SPANS, scope_len(sg)))
                .sum::<usize>()
            + str_len(resource_spans::SCHEMA_URL, &g.block.schema_url)
    };
    let total: usize = groups
        .iter()
        .map(|g| len_field_len(request::RESOURCE_SPANS, resource_len(g)))
        .sum();
    let start = out.len();
    out.reserve(total);
    for g in &groups {
        put_len_header(out, request::RESOURCE_SPANS, resource_len(g));
        put_bytes(out, resource_spans::RESOURCE, &g.block.bytes);
        for sg in &g.scopes {
            put_len_header(out, resource_spans::SCOPE_SPANS, scope_len(sg));
            put_bytes(out, scope_spans::SCOPE, &sg.block.bytes);
            for b in &sg.spans {
                put_bytes(out, scope_spans::SPANS, b);
            }
            if !sg.block.schema_url.is_empty() {
                put_bytes(out, scope_spans::SCHEMA_URL, sg.block.schema_url.as_bytes());
            }
        }
        if !g.block.schema_url.is_empty() {
            put_bytes(out, resource_spans::SCHEMA_URL, g.block.schema_url.as_bytes());
        }
    }
    debug_assert_eq!(out.len() - start, total);
}

#[cfg(test)]
mod grouping_tests {
    use super::*;
    use crate::sidecar::testing::{spans, trace};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;

    #[test]
    fn interleaved_spans_of_equal_resources_share_one_group() {
        let live = LiveBytes::new();
        let a = spans("checkout", &trace(1, 3), &live);
        let b = spans("checkout", &trace(2, 3), &live);
        let c = spans("payments", &trace(3, 2), &live);
        // As a tail sampler hands them on: requests interleaved.
        let mut mixed = Vec::new();
        let (mut a, mut b, mut c) = (a.into_iter(), b.into_iter(), c.into_iter());
        loop {
            let next: Vec<SpanRec> = [a.next(), c.next(), b.next()].into_iter().flatten().collect();
            if next.is_empty() {
                break;
            }
            mixed.extend(next);
        }
        let request = ExportTraceServiceRequest::decode(&encode_request(&mixed)[..]).unwrap();
        let services: Vec<String> = request
            .resource_spans
            .iter()
            .map(|rs| format!("{:?}", rs.resource.as_ref().unwrap().attributes[0].value))
            .collect();
        assert_eq!(request.resource_spans.len(), 2, "{services:?}");
        let ids = |i: usize| -> Vec<u64> {
            let rs = &request.resource_spans[i];
            assert_eq!(rs.scope_spans.len(), 1);
            rs.scope_spans[0]
                .spans
                .iter()
                .map(|s| u64::from_be_bytes(s.span_id[..].try_into().unwrap()) + 10 * s.trace_id[15] as u64)
                .collect()
        };
        // Order within a group is the order the spans came in.
        assert_eq!(ids(0), vec![11, 21, 12, 22, 13, 23]);
        assert_eq!(ids(1), vec![31, 32]);
    }
}
