//! `tail_sampling`: buffers each trace for `decision_wait`, decides it
//! whole with the Go processor's policies, and passes on kept traces. Each
//! pipeline that names it gets its own engine (and its own policy state).

use crate::engine::{KeptBy, TailSampler, TailSamplerBuilder, TraceSink};
use crate::predicate::ResourceMatch;
use crate::settings::{TOP_KEYS, TailSamplingConfig};
use crate::sidecar::bottlenecks::BottleneckReport;
use crate::sidecar::component::{BuildContext, Built, Component, Factory, ProcessorSettings, StagePlace};
use crate::sidecar::metrics::{Metrics, add};
use crate::sidecar::pipeline::{Consumer, Flush};
use crate::sidecar::wire::{ResourceBlock, ResourceView, SpanRec};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ProcessorSettings> = Factory {
    component: Component {
        section: "processors",
        name: "tail_sampling",
        settings: TOP_KEYS,
        ignored: &[],
    },
    parse: |at, _| Ok(Box::new(TailSamplingConfig::from_value(at.value, at.path)?)),
};

impl ProcessorSettings for TailSamplingConfig {
    fn build(&self, ctx: &BuildContext, at: StagePlace<'_>, next: Arc<dyn Consumer>) -> Result<Built, String> {
        let stage = TailStage::new(
            self.clone(),
            next,
            ctx.metrics(),
            at.id,
            at.pipeline,
            ctx.report().cloned(),
        );
        register_tail_gauges(ctx.metrics(), &stage, at.id, at.pipeline);
        Ok(Built::buffering(stage))
    }

    fn decides_traces(&self) -> bool {
        true
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
    /// `pipeline/processor`, for the log line at shutdown.
    name: String,
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
        Arc::new(TailStage {
            sampler,
            malformed,
            name: format!("{pipeline}/{id}"),
        })
    }
}

impl Consumer for TailStage {
    fn consume(&self, spans: Vec<SpanRec>) {
        let mut last: Option<(*const ResourceBlock, ResourceMatch)> = None;
        let mut prepared = Vec::with_capacity(spans.len());
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
            match s.view() {
                Ok(view) => {
                    let facts = self.sampler.prepare(&res, &view);
                    prepared.push((facts, s));
                }
                Err(_) => {
                    // Receivers check spans, so this is unreachable in practice; count it anyway.
                    add(&self.malformed, 1);
                }
            }
        }
        self.sampler.ingest_prepared_batch(prepared);
    }
}

impl Flush for TailStage {
    fn flush(&self) {
        self.sampler.shutdown();
        let s = self.sampler.stats();
        tracing::info!(
            pipeline = %self.name,
            "tail sampling: {} spans received, {} kept, {} dropped by policy, {} late kept, {} late dropped",
            s.spans_received,
            s.spans_sampled,
            s.spans_not_sampled,
            s.late_spans_sampled,
            s.late_spans_dropped
        );
    }
}

fn register_tail_gauges(metrics: &Metrics, stage: &Arc<TailStage>, id: &str, pipeline: &str) {
    let l = [("processor", id), ("pipeline", pipeline)];
    type Read = fn(&crate::engine::TailSamplingStats) -> u64;
    let fields: [(&str, &str, Read); 10] = [
        (
            "otelcol_processor_tail_sampling_spans_received",
            "Spans received.",
            |s| s.spans_received,
        ),
        (
            "otelcol_processor_tail_sampling_traces_received",
            "Traces received.",
            |s| s.traces_received,
        ),
        (
            "otelcol_processor_tail_sampling_spans_sampled",
            "Spans of kept traces.",
            |s| s.spans_sampled,
        ),
        (
            "otelcol_processor_tail_sampling_spans_not_sampled",
            "Spans of traces not kept.",
            |s| s.spans_not_sampled,
        ),
        ("otelcol_processor_tail_sampling_traces_sampled", "Traces kept.", |s| {
            s.traces_sampled
        }),
        (
            "otelcol_processor_tail_sampling_traces_not_sampled",
            "Traces not kept.",
            |s| s.traces_not_sampled,
        ),
        (
            "otelcol_processor_tail_sampling_late_spans_sampled",
            "Late spans of kept traces, forwarded.",
            |s| s.late_spans_sampled,
        ),
        (
            "otelcol_processor_tail_sampling_late_spans_dropped",
            "Late spans of dropped traces.",
            |s| s.late_spans_dropped,
        ),
        (
            "otelcol_processor_tail_sampling_traces_evicted",
            "Traces decided early (num_traces reached).",
            |s| s.evicted,
        ),
        (
            "otelcol_processor_tail_sampling_spans_buffered",
            "Spans buffered now.",
            |s| s.buffered_spans,
        ),
    ];
    for (name, help, read) in fields {
        let weak = Arc::downgrade(stage);
        let value = move || weak.upgrade().map_or(0, |s| read(&s.sampler.stats()));
        // Spans buffered now goes up and down; the rest only grow.
        if name.ends_with("_buffered") {
            metrics.gauge(name, help, &l, move || value() as f64);
        } else {
            metrics.counter_fn(name, help, &l, value);
        }
    }
    // Per policy, with the Go processor's labels: sampled, and the decision.
    type Vote = fn(&crate::engine::PolicyCounts) -> u64;
    let votes: [(&str, &str, Vote); 3] = [
        ("true", "sampled", |q| q.sampled),
        ("false", "not_sampled", |q| q.not_sampled),
        ("false", "dropped", |q| q.dropped),
    ];
    for p in stage.sampler.stats().policies {
        for (sampled, decision, vote) in votes {
            let weak = Arc::downgrade(stage);
            let name = p.name.clone();
            let labels = [
                ("processor", id),
                ("pipeline", pipeline),
                ("policy", p.name.as_str()),
                ("sampled", sampled),
                ("decision", decision),
            ];
            metrics.counter_fn(
                "otelcol_processor_tail_sampling_count_traces_sampled",
                "Count of traces that were sampled or not per sampling policy.",
                &labels,
                move || {
                    weak.upgrade().map_or(0, |s| {
                        s.sampler
                            .stats()
                            .policies
                            .iter()
                            .find(|q| q.name == name)
                            .map_or(0, vote)
                    })
                },
            );
        }
    }
    // Per policy: how long its evaluation takes (Go's histogram, microseconds).
    for p in stage.sampler.stats().policies {
        let weak = Arc::downgrade(stage);
        let name = p.name.clone();
        let labels = [("processor", id), ("pipeline", pipeline), ("policy", p.name.as_str())];
        metrics.histogram_fn(
            "otelcol_processor_tail_sampling_sampling_decision_latency",
            "Latency (in microseconds) of a given sampling policy.",
            &labels,
            move || {
                let Some(s) = weak.upgrade() else {
                    return (0.0, 0, Vec::new());
                };
                let stats = s.sampler.stats();
                let Some(q) = stats.policies.iter().find(|q| q.name == name) else {
                    return (0.0, 0, Vec::new());
                };
                let bounds = crate::engine::POLICY_LATENCY_BUCKETS_US
                    .iter()
                    .map(|us| *us as f64)
                    .chain([f64::INFINITY]);
                let buckets: Vec<(f64, u64)> = bounds.zip(q.latency_buckets.iter().copied()).collect();
                let count = buckets.iter().map(|(_, n)| n).sum();
                (q.latency_nanos as f64 / 1000.0, count, buckets)
            },
        );
    }
    // The Go processor's other names, read from the same totals.
    type Read2 = fn(&crate::engine::TailSamplingStats) -> u64;
    type Labels = &'static [(&'static str, &'static str)];
    let go: [(&str, &str, Labels, Read2); 6] = [
        (
            "otelcol_processor_tail_sampling_new_trace_id_received",
            "Counts the arrival of new traces.",
            &[],
            |s| s.traces_received,
        ),
        (
            "otelcol_processor_tail_sampling_global_count_traces_sampled",
            "Global count of traces that were sampled or not by at least one policy.",
            &[("sampled", "true"), ("decision", "sampled")],
            |s| s.traces_sampled,
        ),
        (
            "otelcol_processor_tail_sampling_global_count_traces_sampled",
            "Global count of traces that were sampled or not by at least one policy.",
            &[("sampled", "false"), ("decision", "not_sampled")],
            |s| s.traces_not_sampled,
        ),
        (
            "otelcol_processor_tail_sampling_early_releases_from_cache_decision",
            "Spans released at once by a decision cache hit.",
            &[("sampled", "true")],
            |s| s.late_spans_sampled,
        ),
        (
            "otelcol_processor_tail_sampling_early_releases_from_cache_decision",
            "Spans released at once by a decision cache hit.",
            &[("sampled", "false")],
            |s| s.late_spans_dropped,
        ),
        (
            "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early",
            "Traces decided before decision_wait because num_traces was reached.",
            &[],
            |s| s.evicted,
        ),
    ];
    for (name, help, extra, read) in go {
        let weak = Arc::downgrade(stage);
        let mut labels: Vec<(&str, &str)> = l.to_vec();
        labels.extend_from_slice(extra);
        metrics.counter_fn(name, help, &labels, move || {
            weak.upgrade().map_or(0, |s| read(&s.sampler.stats()))
        });
    }
    // From a trace's first span to its decision: decision_wait, or less
    // after the root, or more when the decision thread falls behind.
    let weak = Arc::downgrade(stage);
    metrics.histogram_fn(
        "otelcol_processor_tail_sampling_decision_delay_seconds",
        "Time from a trace's first span to its decision, seconds.",
        &l,
        move || {
            let Some(s) = weak.upgrade() else {
                return (0.0, 0, Vec::new());
            };
            let stats = s.sampler.stats();
            let bounds = crate::engine::DECISION_DELAY_BUCKETS_MS
                .iter()
                .map(|ms| *ms as f64 / 1000.0)
                .chain([f64::INFINITY]);
            let buckets: Vec<(f64, u64)> = bounds.zip(stats.decision_delay_buckets.iter().copied()).collect();
            let count = buckets.iter().map(|(_, n)| n).sum();
            (stats.decision_delay_ms_sum as f64 / 1000.0, count, buckets)
        },
    );
    let weak = Arc::downgrade(stage);
    metrics.counter_f64(
        "otelcol_processor_tail_sampling_policy_evaluation_seconds",
        "CPU time spent evaluating policies, seconds.",
        &l,
        move || {
            weak.upgrade()
                .map_or(0.0, |s| s.sampler.stats().evaluation_nanos as f64 / 1e9)
        },
    );
    let weak = Arc::downgrade(stage);
    metrics.gauge(
        "otelcol_processor_tail_sampling_sampling_traces_on_memory",
        "Traces buffered now.",
        &l,
        move || weak.upgrade().map_or(0.0, |s| s.sampler.stats().buffered_traces as f64),
    );
}

#[cfg(test)]
mod tests {
    use crate::sidecar::testing::{Recorder, S, build, context, metric, processor, spans, trace};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_error_and_slow_traces_whole_and_counts_the_rest() {
        let (ctx, metrics, _stop) = context();
        let settings = processor(
            "{tail_sampling: {decision_wait: 200ms, policies: [\
               {name: errors, type: status_code, status_code: {status_codes: [ERROR]}},\
               {name: slow, type: latency, latency: {threshold_ms: 500}}]}}",
        );
        assert!(settings.decides_traces());
        let out = Recorder::new();
        let built = build(&ctx, &settings, "tail_sampling", out.clone());
        let flush = built.flush.expect("tail sampling buffers");
        let live = metrics.live();

        let mut failing = trace(1, 3);
        failing[2].error = true;
        let mut slow = trace(2, 2);
        slow[0].ms = 900;
        // The failing trace arrives in two requests, as from two services.
        built.head.consume(spans("a", &failing[..2], &live));
        built.head.consume(spans("b", &failing[2..], &live));
        built.head.consume(spans("a", &slow, &live));
        built.head.consume(spans("a", &trace(3, 4), &live));
        assert_eq!(out.wait_for(5, Duration::from_secs(10)), 5);
        let mut ids = out.ids();
        ids.sort_unstable();
        assert_eq!(ids, vec![(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]);

        // A late span of a kept trace follows it; one of a dropped trace does not.
        let late = |trace| S {
            trace,
            id: 9,
            parent: 1,
            ms: 1,
            error: false,
        };
        built.head.consume(spans("a", &[late(1), late(3)], &live));
        assert_eq!(out.wait_for(6, Duration::from_secs(10)), 6);
        flush.flush();
        assert!(out.ids().contains(&(1, 9)) && !out.ids().contains(&(3, 9)));
        let labels = "{processor=\"tail_sampling\",pipeline=\"traces\"}";
        assert_eq!(
            metric(
                &metrics,
                &format!("otelcol_processor_tail_sampling_spans_received_total{labels}")
            ),
            11.0
        );
        assert_eq!(
            metric(
                &metrics,
                &format!("otelcol_processor_tail_sampling_traces_not_sampled_total{labels}")
            ),
            1.0
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_pipeline_gets_its_own_engine() {
        let (ctx, metrics, _stop) = context();
        let settings = processor(
            "{tail_sampling: {decision_wait: 1h, policies: [{name: few, type: rate_limiting, rate_limiting: {spans_per_second: 3}}]}}",
        );
        let (a, b) = (Recorder::new(), Recorder::new());
        let first = build(&ctx, &settings, "tail_sampling", a.clone());
        let second = build(&ctx, &settings, "tail_sampling", b.clone());
        let live = metrics.live();
        first.head.consume(spans("a", &trace(1, 3), &live));
        second.head.consume(spans("a", &trace(1, 3), &live));
        // Each decides at its flush with a full budget of its own.
        first.flush.expect("buffers").flush();
        second.flush.expect("buffers").flush();
        assert_eq!((a.ids().len(), b.ids().len()), (3, 3));
    }
}
