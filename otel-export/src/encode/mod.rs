//! OTLP encoding of `SpanData` batches: protobuf and JSON, written straight
//! into a reusable buffer without building intermediate message structs.

mod json;
mod proto;

use opentelemetry::InstrumentationScope;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use std::time::{SystemTime, UNIX_EPOCH};

/// The resource every span of an exporter shares, pre-encoded once.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceInfo {
    /// The resource attributes, in the resource's iteration order.
    pub(crate) attributes: Vec<KeyValue>,
    /// The protobuf `Resource` message content.
    pub(crate) encoded: Vec<u8>,
    pub(crate) schema_url: Option<String>,
}

impl ResourceInfo {
    pub(crate) fn new(resource: &Resource) -> Self {
        let attributes: Vec<KeyValue> = resource
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        ResourceInfo {
            encoded: proto::resource_bytes(&attributes),
            attributes,
            schema_url: resource.schema_url().map(str::to_owned),
        }
    }
}

/// Spans of one instrumentation scope, in arrival order.
#[derive(Debug)]
pub(crate) struct Group<'a> {
    pub(crate) scope: &'a InstrumentationScope,
    pub(crate) scope_bytes: Vec<u8>,
    pub(crate) schema_url: String,
    pub(crate) members: Vec<usize>,
}

/// A batch grouped by scope (first-seen order), borrowing the spans.
#[derive(Debug)]
pub(crate) struct Batch<'a> {
    pub(crate) spans: Vec<&'a SpanData>,
    pub(crate) groups: Vec<Group<'a>>,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(spans: impl IntoIterator<Item = &'a SpanData>) -> Self {
        let spans: Vec<&SpanData> = spans.into_iter().collect();
        let mut groups: Vec<Group<'a>> = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            let scope = &span.instrumentation_scope;
            // Batches usually hold few scopes, mostly in runs: check the last first.
            let found = match groups.last_mut() {
                Some(g) if std::ptr::eq(g.scope, scope) || g.scope == scope => Some(g),
                _ => groups.iter_mut().find(|g| g.scope == scope),
            };
            match found {
                Some(g) => g.members.push(i),
                None => groups.push(Group {
                    scope,
                    scope_bytes: proto::scope_bytes(scope),
                    schema_url: scope.schema_url().unwrap_or("").to_owned(),
                    members: vec![i],
                }),
            }
        }
        Batch { spans, groups }
    }
}

/// The size of `span` as a `Span` field of an OTLP `ScopeSpans` message
/// (tag, length prefix and content), without encoding it.
pub fn span_encoded_len(span: &SpanData) -> usize {
    crate::wire::len_field_len(2, proto::span_meta(span).len())
}

/// OTLP `SpanKind` values.
#[inline]
pub(crate) fn kind(k: &SpanKind) -> u8 {
    match k {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// OTLP `StatusCode` values.
#[inline]
pub(crate) fn status_code(s: &Status) -> u8 {
    match s {
        Status::Unset => 0,
        Status::Ok => 1,
        Status::Error { .. } => 2,
    }
}

/// OTLP span flags: W3C trace flags plus the "parent is remote" bits.
#[inline]
pub(crate) fn trace_flags(flags: u8, remote: bool) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    u32::from(flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

/// Nanoseconds since the Unix epoch, 0 for earlier times.
#[inline]
pub(crate) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Which OTLP encoding to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Protobuf (OTLP/gRPC and OTLP/HTTP `application/x-protobuf`).
    #[default]
    Protobuf,
    /// OTLP/JSON (`application/json`).
    Json,
}

/// Encodes span batches as OTLP `ExportTraceServiceRequest`s, reusing its
/// buffers from batch to batch.
///
/// ```
/// use otel_export::encode::{Encoder, Encoding};
/// use opentelemetry_sdk::Resource;
///
/// let mut encoder = Encoder::new(&Resource::builder_empty().with_service_name("checkout").build());
/// let bytes = encoder.encode(&[], Encoding::Protobuf);
/// assert!(!bytes.is_empty()); // the resource is always sent
/// ```
#[derive(Debug, Default)]
pub struct Encoder {
    resource: ResourceInfo,
    buf: Vec<u8>,
    sizes: Vec<proto::SpanMeta>,
}

impl Encoder {
    /// An encoder for spans of `resource`.
    pub fn new(resource: &Resource) -> Self {
        Encoder {
            resource: ResourceInfo::new(resource),
            buf: Vec::new(),
            sizes: Vec::new(),
        }
    }

    /// Replaces the resource.
    pub fn set_resource(&mut self, resource: &Resource) {
        self.resource = ResourceInfo::new(resource);
    }

    /// Encodes `spans` as one request; the bytes are valid until the next call.
    pub fn encode(&mut self, spans: &[SpanData], encoding: Encoding) -> &[u8] {
        let batch = Batch::new(spans);
        match encoding {
            Encoding::Protobuf => proto::encode_request(&mut self.buf, &mut self.sizes, &self.resource, &batch),
            Encoding::Json => json::encode_request(&mut self.buf, &self.resource, &batch),
        }
        &self.buf
    }

    /// Like [`encode`](Self::encode), handing the buffer over (for sending);
    /// the encoder starts a new one next time.
    pub fn encode_owned(&mut self, spans: &[SpanData], encoding: Encoding) -> Vec<u8> {
        self.encode(spans, encoding);
        let capacity = self.buf.capacity();
        std::mem::replace(&mut self.buf, Vec::with_capacity(capacity))
    }
}
