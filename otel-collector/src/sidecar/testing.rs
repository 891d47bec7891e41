//! What the stages' unit tests share: spans made from real OTLP requests, a
//! consumer that records what reaches it, settings read from YAML the way the
//! collector reads them, and a build context on the test's runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use super::CollectorConfig;
use super::component::{BuildContext, Built, ExporterSettings, ProcessorSettings, StagePlace};
use super::metrics::Metrics;
use super::pipeline::Consumer;
use super::wire::{LiveBytes, SpanRec, any_value, keyvalues, split_request};
use crate::facts::AttrValue;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use prost::Message as _;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A span to make: trace, id, parent (0: root), duration in ms, error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct S {
    pub(crate) trace: u128,
    pub(crate) id: u64,
    pub(crate) parent: u64,
    pub(crate) ms: u64,
    pub(crate) error: bool,
}

/// `n` spans of one trace: a root and `n - 1` children, none failed.
pub(crate) fn trace(trace: u128, n: u64) -> Vec<S> {
    (1..=n)
        .map(|id| S {
            trace,
            id,
            parent: if id == 1 { 0 } else { 1 },
            ms: 1,
            error: false,
        })
        .collect()
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// The spans of one OTLP request from `service`, split as a receiver splits
/// them, each span with attribute `user.email = "u@example.com"`.
pub(crate) fn spans(service: &str, list: &[S], live: &Arc<LiveBytes>) -> Vec<SpanRec> {
    let start = 1_700_000_000_000_000_000u64;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: list
                    .iter()
                    .map(|s| Span {
                        trace_id: s.trace.to_be_bytes().to_vec(),
                        span_id: s.id.to_be_bytes().to_vec(),
                        parent_span_id: if s.parent == 0 {
                            Vec::new()
                        } else {
                            s.parent.to_be_bytes().to_vec()
                        },
                        name: format!("op-{}", s.id),
                        start_time_unix_nano: start,
                        end_time_unix_nano: start + s.ms * 1_000_000,
                        attributes: vec![string_kv("user.email", "u@example.com")],
                        status: s.error.then(|| Status {
                            code: status::StatusCode::Error as i32,
                            message: "boom".to_owned(),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    split_request(&bytes::Bytes::from(request.encode_to_vec()), live).unwrap()
}

/// A string attribute of a span ("" when absent or not a string).
pub(crate) fn span_attr(rec: &SpanRec, key: &str) -> Option<String> {
    rec.view()
        .unwrap()
        .attributes()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| text(v))
}

/// A string attribute of a span's resource.
pub(crate) fn resource_attr(rec: &SpanRec, key: &str) -> Option<String> {
    keyvalues(
        &rec.scope.resource.bytes,
        otel_export::wire::field::resource::ATTRIBUTES,
    )
    .find(|(k, _)| *k == key)
    .map(|(_, v)| text(v))
}

fn text(v: &[u8]) -> String {
    match any_value(v) {
        AttrValue::Str(s) => s.to_owned(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::Double(d) => d.to_string(),
        AttrValue::Other => "(other)".to_owned(),
    }
}

/// A consumer that keeps every batch it is given.
#[derive(Default)]
pub(crate) struct Recorder {
    batches: Mutex<Vec<Vec<SpanRec>>>,
    arrived: Condvar,
}

impl Recorder {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
    }

    /// The sizes of the batches received so far.
    pub(crate) fn sizes(&self) -> Vec<usize> {
        crate::lock(&self.batches).iter().map(Vec::len).collect()
    }

    /// Every span received so far, in order, as (trace, span id).
    pub(crate) fn ids(&self) -> Vec<(u128, u64)> {
        crate::lock(&self.batches)
            .iter()
            .flatten()
            .map(|s| {
                let v = s.view().unwrap();
                (u128::from_be_bytes(v.trace_id), u64::from_be_bytes(v.span_id))
            })
            .collect()
    }

    /// The spans received so far.
    pub(crate) fn take(&self) -> Vec<SpanRec> {
        std::mem::take(&mut *crate::lock(&self.batches))
            .into_iter()
            .flatten()
            .collect()
    }

    /// Waits until `n` spans have arrived (or `timeout` passes); returns how many did.
    pub(crate) fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut batches = crate::lock(&self.batches);
        loop {
            let have: usize = batches.iter().map(Vec::len).sum();
            let left = deadline.saturating_duration_since(Instant::now());
            if have >= n || left.is_zero() {
                return have;
            }
            batches = self
                .arrived
                .wait_timeout(batches, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

impl Consumer for Recorder {
    fn consume(&self, spans: Vec<SpanRec>) {
        crate::lock(&self.batches).push(spans);
        self.arrived.notify_all();
    }
}

/// A build context on the current runtime, with its own metrics.
pub(crate) fn context() -> (BuildContext, Arc<Metrics>, watch::Sender<bool>) {
    let metrics = Arc::new(Metrics::default());
    let (stop, stopping) = watch::channel(false);
    let ended = stop.subscribe();
    let ctx = BuildContext::new(
        tokio::runtime::Handle::current(),
        metrics.clone(),
        None,
        stopping,
        ended,
        std::collections::HashMap::new(),
    );
    (ctx, metrics, stop)
}

/// A configuration with `processors` and `exporters` sections as given
/// (YAML flow mappings), read as the collector reads it.
fn config(processors: &str, exporters: &str) -> CollectorConfig {
    let yaml = format!(
        "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: 127.0.0.1:0}}}}}}}}\n\
         processors: {processors}\n\
         exporters: {exporters}\n\
         service: {{pipelines: {{traces: {{receivers: [otlp], exporters: [debug]}}}}}}\n"
    );
    CollectorConfig::parse_with_env(&yaml, &|_| None).unwrap()
}

/// The settings of the one processor in `processors` (a YAML flow mapping).
pub(crate) fn processor(processors: &str) -> Arc<dyn ProcessorSettings> {
    config(processors, "{debug: {}}").processors.remove(0).1
}

/// The settings of exporter `id` in `exporters` (a YAML flow mapping that
/// also defines `debug`).
pub(crate) fn exporter(exporters: &str, id: &str) -> Arc<dyn ExporterSettings> {
    let config = config("{}", exporters);
    config
        .exporters
        .into_iter()
        .find(|(k, _)| k == id)
        .map(|(_, e)| e)
        .unwrap()
}

/// Builds `settings` in front of `next` as processor `id` of pipeline `traces`.
pub(crate) fn build(
    ctx: &BuildContext,
    settings: &Arc<dyn ProcessorSettings>,
    id: &str,
    next: Arc<dyn Consumer>,
) -> Built {
    settings
        .build(ctx, StagePlace { id, pipeline: "traces" }, next)
        .unwrap()
}

/// The value of metric line `name{labels}` in `metrics`' text, 0 when absent.
pub(crate) fn metric(metrics: &Metrics, line_start: &str) -> f64 {
    metrics
        .render()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
