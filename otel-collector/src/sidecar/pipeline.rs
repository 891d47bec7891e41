//! Pipeline stages: attribute rewrites, tail sampling, batching, and the
//! fan-out to exporters.

use super::actions;
use super::bottlenecks::BottleneckReport;
use super::config::{Action, BatchConfig};
use super::metrics::{Metrics, add};
use super::wire::{ResourceBlock, ResourceView, ScopeBlock, SpanRec};
use crate::engine::{KeptBy, TailSampler, TailSamplerBuilder, TraceSink};
use crate::lock;
use crate::predicate::ResourceMatch;
use crate::settings::TailSamplingConfig;
use otel_export::wire::field::{resource, span};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Takes spans; never blocks for long.
pub(crate) trait Consumer: Send + Sync {
    fn consume(&self, spans: Vec<SpanRec>);
}

/// A stage that buffers and can be told to pass everything on.
pub(crate) trait Flush: Send + Sync {
    /// Passes every buffered span downstream (shutdown).
    fn flush(&self);
}

/// Sends the same spans to several consumers.
pub(crate) struct Fanout(pub(crate) Vec<Arc<dyn Consumer>>);

impl Consumer for Fanout {
    fn consume(&self, spans: Vec<SpanRec>) {
        match self.0.split_last() {
            None => {}
            Some((last, rest)) => {
                for c in rest {
                    c.consume(spans.clone());
                }
                last.consume(spans);
            }
        }
    }
}

/// The `attributes` processor: span attribute actions.
pub(crate) struct AttributesStage {
    pub(crate) actions: Vec<Action>,
    pub(crate) next: Arc<dyn Consumer>,
}

impl Consumer for AttributesStage {
    fn consume(&self, mut spans: Vec<SpanRec>) {
        for s in &mut spans {
            if let Some(bytes) = actions::apply(s.bytes(), span::ATTRIBUTES, &self.actions) {
                s.set_bytes(bytes::Bytes::from(bytes));
            }
        }
        self.next.consume(spans);
    }
}

/// The `resource` processor: resource attribute actions, once per distinct resource.
pub(crate) struct ResourceStage {
    pub(crate) actions: Vec<Action>,
    pub(crate) next: Arc<dyn Consumer>,
}

impl Consumer for ResourceStage {
    fn consume(&self, mut spans: Vec<SpanRec>) {
        // Old scope block -> rewritten scope block (resource rewritten once).
        let mut scopes: Vec<(Arc<ScopeBlock>, Arc<ScopeBlock>)> = Vec::new();
        let mut resources: Vec<(Arc<ResourceBlock>, Arc<ResourceBlock>)> = Vec::new();
        for s in &mut spans {
            if let Some((_, new)) = scopes.iter().find(|(old, _)| Arc::ptr_eq(old, &s.scope)) {
                s.scope = new.clone();
                continue;
            }
            let old_resource = &s.scope.resource;
            let new_resource = match resources.iter().find(|(old, _)| Arc::ptr_eq(old, old_resource)) {
                Some((_, new)) => new.clone(),
                None => {
                    let new = match actions::apply(&old_resource.bytes, resource::ATTRIBUTES, &self.actions) {
                        Some(bytes) => Arc::new(ResourceBlock {
                            bytes: bytes.into_boxed_slice(),
                            schema_url: old_resource.schema_url.clone(),
                        }),
                        None => old_resource.clone(),
                    };
                    resources.push((old_resource.clone(), new.clone()));
                    new
                }
            };
            let new_scope = Arc::new(ScopeBlock {
                resource: new_resource,
                bytes: s.scope.bytes.clone(),
                schema_url: s.scope.schema_url.clone(),
                live: s.scope.live.clone(),
            });
            scopes.push((s.scope.clone(), new_scope.clone()));
            s.scope = new_scope;
        }
        self.next.consume(spans);
    }
}

/// Hands kept traces to the next stage, and decided ones to the bottleneck
/// summary.
struct Forward {
    next: Arc<dyn Consumer>,
    report: Option<Arc<BottleneckReport>>,
}

impl TraceSink<SpanRec> for Forward {
    fn keep(&self, _trace_id: [u8; 16], spans: Vec<SpanRec>, kept_by: KeptBy<'_>) {
        // Late spans of a kept trace are fragments: not a trace to analyse.
        if let (Some(report), KeptBy::Policy(_)) = (&self.report, kept_by) {
            report.kept(&spans);
        }
        self.next.consume(spans);
    }

    fn not_kept(&self, _trace_id: [u8; 16], spans: Vec<SpanRec>) {
        if let Some(report) = &self.report {
            report.not_kept(spans);
        }
    }
}

/// The `tail_sampling` processor.
pub(crate) struct TailStage {
    pub(crate) sampler: TailSampler<SpanRec>,
    malformed: Arc<AtomicU64>,
}

impl TailStage {
    pub(crate) fn new(
        config: TailSamplingConfig,
        next: Arc<dyn Consumer>,
        metrics: &Metrics,
        id: &str,
        pipeline: &str,
        report: Option<Arc<BottleneckReport>>,
    ) -> Arc<Self> {
        let sink: Arc<dyn TraceSink<SpanRec>> = Arc::new(Forward { next, report });
        let sampler = TailSamplerBuilder::new(config).build(sink);
        let malformed = metrics.counter(
            "otelcol_processor_tail_sampling_malformed_spans",
            "Spans the tail sampler could not read (dropped).",
            &[("processor", id), ("pipeline", pipeline)],
        );
        Arc::new(TailStage { sampler, malformed })
    }
}

impl Consumer for TailStage {
    fn consume(&self, spans: Vec<SpanRec>) {
        let mut last: Option<(*const ResourceBlock, ResourceMatch)> = None;
        for s in spans {
            let resource_ptr = Arc::as_ptr(&s.scope.resource);
            let res = match last {
                Some((p, m)) if std::ptr::eq(p, resource_ptr) => m,
                _ => {
                    let m = self.sampler.resource_match(&ResourceView(&s.scope.resource.bytes));
                    last = Some((resource_ptr, m));
                    m
                }
            };
            let prepared = match s.view() {
                Ok(view) => self.sampler.prepare(&res, &view),
                Err(_) => {
                    // Receivers check spans, so this is unreachable in practice; count it anyway.
                    add(&self.malformed, 1);
                    continue;
                }
            };
            self.sampler.ingest_prepared(prepared, s);
        }
    }
}

impl Flush for TailStage {
    fn flush(&self) {
        self.sampler.shutdown();
    }
}

/// The `batch` processor: sends when `send_batch_size` spans wait or every `timeout`.
pub(crate) struct BatchStage {
    cfg: BatchConfig,
    buf: Mutex<Vec<SpanRec>>,
    next: Arc<dyn Consumer>,
}

impl BatchStage {
    pub(crate) fn new(cfg: BatchConfig, next: Arc<dyn Consumer>) -> Arc<Self> {
        let stage = Arc::new(BatchStage {
            cfg,
            buf: Mutex::new(Vec::new()),
            next,
        });
        let weak = Arc::downgrade(&stage);
        let period = cfg.timeout.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(stage) => stage.flush(),
                    None => return,
                }
            }
        });
        stage
    }

    fn send(&self, spans: Vec<SpanRec>) {
        if spans.is_empty() {
            return;
        }
        let max = self.cfg.send_batch_max_size;
        if max == 0 || spans.len() <= max {
            self.next.consume(spans);
            return;
        }
        let mut spans = spans;
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(max));
            self.next.consume(spans);
            spans = rest;
        }
    }
}

impl Consumer for BatchStage {
    fn consume(&self, spans: Vec<SpanRec>) {
        let ready = {
            let mut buf = lock(&self.buf);
            if buf.is_empty() && spans.len() >= self.cfg.send_batch_size {
                Some(spans)
            } else {
                buf.extend(spans);
                (buf.len() >= self.cfg.send_batch_size).then(|| std::mem::take(&mut *buf))
            }
        };
        if let Some(batch) = ready {
            self.send(batch);
        }
    }
}

impl Flush for BatchStage {
    fn flush(&self) {
        let batch = std::mem::take(&mut *lock(&self.buf));
        self.send(batch);
    }
}
