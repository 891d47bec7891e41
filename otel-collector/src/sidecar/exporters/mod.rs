//! Exporters, one module each, and their table; what every exporter shares
//! (the shutdown contract, the counters, the request encoding).

use super::component::{ExporterSettings, Factory};
use super::metrics::Metrics;
use super::pipeline::Consumer;
use super::wire::{SpanRec, encode_request};
use prost::Message as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

pub(crate) mod debug;
pub(crate) mod file;
pub(crate) mod loadbalancing;
pub(crate) mod otlp;

/// Every exporter, by type name.
pub(crate) const TABLE: &[Factory<dyn ExporterSettings>] = &[
    otlp::OTLP,
    otlp::OTLPHTTP,
    file::FACTORY,
    debug::FACTORY,
    loadbalancing::FACTORY,
];

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An exporter: takes spans without blocking and drains on shutdown.
pub(crate) trait Exporter: Consumer {
    /// Stops taking spans and sends what is queued, until `deadline`; what
    /// is still unsent then is counted as failed.
    fn shutdown(self: Arc<Self>, deadline: Instant) -> BoxFuture;
}

/// Counters every exporter keeps.
#[derive(Clone)]
pub(crate) struct ExportCounters {
    /// The collector's live-bytes account (encoded requests in flight count).
    pub(crate) live: Arc<super::wire::LiveBytes>,
    pub(crate) sent: Arc<AtomicU64>,
    pub(crate) failed: Arc<AtomicU64>,
    pub(crate) enqueue_failed: Arc<AtomicU64>,
}

impl ExportCounters {
    pub(crate) fn new(metrics: &Metrics, id: &str) -> Self {
        let l = [("exporter", id)];
        ExportCounters {
            live: metrics.live(),
            sent: metrics.counter("otelcol_exporter_sent_spans", "Spans delivered.", &l),
            failed: metrics.counter(
                "otelcol_exporter_send_failed_spans",
                "Spans that could not be delivered.",
                &l,
            ),
            enqueue_failed: metrics.counter(
                "otelcol_exporter_enqueue_failed_spans",
                "Spans dropped because the sending queue was full.",
                &l,
            ),
        }
    }
}

/// An OTLP request body from spans: protobuf, or OTLP JSON.
pub(crate) fn request_body(spans: &[SpanRec], json: bool) -> Result<Vec<u8>, String> {
    let proto = encode_request(spans);
    if !json {
        return Ok(proto);
    }
    to_json(&proto)
}

/// Protobuf `ExportTraceServiceRequest` bytes as OTLP JSON.
pub(crate) fn to_json(proto: &[u8]) -> Result<Vec<u8>, String> {
    let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(proto)
        .map_err(|e| e.to_string())?;
    serde_json::to_vec(&request).map_err(|e| e.to_string())
}

/// An exporter as a trait object: consume, and shut down.
pub(crate) trait ExporterDyn: Consumer {
    fn shutdown_dyn(self: Arc<Self>, deadline: Instant) -> BoxFuture;
}

impl<E: Exporter + 'static> ExporterDyn for E {
    fn shutdown_dyn(self: Arc<Self>, deadline: Instant) -> BoxFuture {
        self.shutdown(deadline)
    }
}
