//! `tail_sampling`: buffers each trace for `decision_wait`, decides it
//! whole with the Go processor's policies, and passes on kept traces. Each
//! pipeline that names it gets its own engine (and its own policy state).

use crate::engine::{KeptBy, TailSampler, TailSamplerBuilder, TraceSink};
use crate::predicate::ResourceMatch;
use crate::settings::{TOP_KEYS, TailSamplingConfig};
use crate::sidecar::bottlenecks::BottleneckReport;
use crate::sidecar::component::{BuildContext, Built, Component, Factory, ProcessorSettings, StagePlace};
use crate::sidecar::journal::{Hold, Journal, Recovery};
use crate::sidecar::metrics::{Metrics, add};
use crate::sidecar::pipeline::{Consumer, Flush};
use crate::sidecar::wire::{ResourceBlock, ResourceView, SpanRec, encode_request_into, split_request};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
        let storage = match &self.tail_storage {
            None => None,
            Some(id) => {
                let s = ctx.storage(id)?;
                let owner = format!("processor_{}_{}", at.pipeline, at.id);
                let (spans, span_recovery) = s.open(&owner)?;
                let (decisions, decision_recovery) = s.open(&format!("{owner}_decisions"))?;
                Some((spans, span_recovery, decisions, decision_recovery))
            }
        };
        let journals = storage
            .as_ref()
            .map(|(s, _, d, _)| TailJournal::new(s.clone(), d.clone(), self, ctx.metrics(), at));
        let stage = TailStage::new(
            self.clone(),
            next,
            ctx.metrics(),
            at.id,
            at.pipeline,
            ctx.report().cloned(),
            journals.clone(),
        );
        register_tail_gauges(ctx.metrics(), &stage, at.id, at.pipeline);
        if let (Some(j), Some((_, span_recovery, _, decision_recovery))) = (&journals, storage) {
            j.replay(&stage, span_recovery, decision_recovery, &ctx.live());
        }
        let mut built = Built::buffering(stage);
        built.journal = journals.map(|j| j.spans.clone());
        Ok(built)
    }

    fn decides_traces(&self) -> bool {
        true
    }

    fn storage_refs(&self) -> Vec<(&'static str, &str)> {
        self.tail_storage
            .as_deref()
            .map(|s| ("tail_storage", s))
            .into_iter()
            .collect()
    }
}

/// The tail sampler's buffer on disk (`tail_storage`): each request's spans
/// as they arrive, held until every span is decided and passed on (or
/// dropped by decision), and the decisions, kept as long as the decision
/// caches remember them.
pub(crate) struct TailJournal {
    pub(crate) spans: Arc<Journal>,
    decisions: Arc<Journal>,
    next_span: AtomicU64,
    next_decision: AtomicU64,
    /// Decision records kept: the newest this many.
    keep_decisions: u64,
    write_failed: Arc<AtomicU64>,
    replayed: Arc<AtomicU64>,
    skipped: Arc<AtomicU64>,
}

impl TailJournal {
    fn new(
        spans: Arc<Journal>,
        decisions: Arc<Journal>,
        cfg: &TailSamplingConfig,
        metrics: &Metrics,
        at: StagePlace<'_>,
    ) -> Arc<TailJournal> {
        let l = [("processor", at.id), ("pipeline", at.pipeline)];
        let j = Arc::new(TailJournal {
            spans,
            decisions,
            next_span: AtomicU64::new(0),
            next_decision: AtomicU64::new(0),
            keep_decisions: (cfg.sampled_cache_size + cfg.non_sampled_cache_size).max(1) as u64,
            write_failed: metrics.counter(
                "otelcol_processor_tail_sampling_storage_write_failed_spans",
                "Spans buffered without their journal record because writing it failed (a full disk).",
                &l,
            ),
            replayed: metrics.counter(
                "otelcol_processor_tail_sampling_replayed_spans",
                "Spans read back from the journal at start, to be decided again.",
                &l,
            ),
            skipped: metrics.counter(
                "otelcol_processor_tail_sampling_storage_skipped_records",
                "Journal records that failed their checksum or were cut short, skipped.",
                &l,
            ),
        });
        let weak = Arc::downgrade(&j);
        metrics.gauge(
            "otelcol_processor_tail_sampling_storage_bytes",
            "Bytes of the tail sampler's journals on disk.",
            &l,
            move || {
                weak.upgrade()
                    .map_or(0.0, |j| (j.spans.bytes() + j.decisions.bytes()) as f64)
            },
        );
        j
    }

    /// Writes a request's spans; they hold the record until they go.
    fn hold(&self, spans: Vec<SpanRec>) -> Vec<SpanRec> {
        let mut payload = Vec::with_capacity(spans.iter().map(|s| s.bytes().len() + 8).sum::<usize>() + 64);
        payload.extend_from_slice(&now_ms().to_le_bytes());
        encode_request_into(&spans, &mut payload);
        let seq = self.next_span.fetch_add(1, Ordering::Relaxed);
        match self.spans.append(seq, &payload) {
            Ok(_) => {
                let hold = Hold::new(self.spans.clone(), seq);
                spans.into_iter().map(|s| s.held_by(hold.clone())).collect()
            }
            Err(e) => {
                if self.write_failed.load(Ordering::Relaxed) == 0 {
                    tracing::error!(
                        "cannot write to the tail sampler's journal: {e}; spans are buffered in memory only (counted in otelcol_processor_tail_sampling_storage_write_failed_spans)"
                    );
                }
                add(&self.write_failed, spans.len() as u64);
                spans
            }
        }
    }

    /// Records a decision; the oldest beyond what the caches hold is retired.
    fn decided(&self, trace_id: [u8; 16], kept: bool) {
        let mut payload = [0u8; 17];
        payload[..16].copy_from_slice(&trace_id);
        payload[16] = u8::from(kept);
        let seq = self.next_decision.fetch_add(1, Ordering::Relaxed);
        if self.decisions.append(seq, &payload).is_ok() && seq >= self.keep_decisions {
            self.decisions.done(seq - self.keep_decisions);
        }
    }

    /// Takes back decisions (into the caches) and undecided spans (with
    /// their arrival times, so due traces are decided at once).
    fn replay(
        &self,
        stage: &TailStage,
        spans: Recovery,
        decisions: Recovery,
        live: &Arc<crate::sidecar::wire::LiveBytes>,
    ) {
        add(&self.skipped, spans.skipped_records + decisions.skipped_records);
        if spans.skipped_records + decisions.skipped_records > 0 {
            tracing::warn!(
                "the tail sampler's journal had {} damaged records, skipped",
                spans.skipped_records + decisions.skipped_records
            );
        }
        self.next_decision.store(decisions.next_seq, Ordering::Relaxed);
        let oldest_kept = decisions.next_seq.saturating_sub(self.keep_decisions);
        for (seq, loc) in decisions.items {
            if seq < oldest_kept {
                self.decisions.done(seq);
                continue;
            }
            match self.decisions.read(seq, loc) {
                Ok(p) if p.len() == 17 => {
                    let mut id = [0u8; 16];
                    id.copy_from_slice(&p[..16]);
                    stage.sampler.remember(id, p[16] == 1);
                }
                _ => {
                    add(&self.skipped, 1);
                    self.decisions.done(seq);
                }
            }
        }
        self.next_span.store(spans.next_seq, Ordering::Relaxed);
        let mut replayed = 0;
        for (seq, loc) in spans.items {
            let record = self.spans.read(seq, loc).ok().and_then(|p| {
                let arrived = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
                let body = bytes::Bytes::copy_from_slice(p.get(8..)?);
                split_request(&body, live).ok().map(|s| (arrived, s))
            });
            let Some((arrived, recs)) = record else {
                add(&self.skipped, 1);
                self.spans.done(seq);
                continue;
            };
            replayed += recs.len() as u64;
            let hold = Hold::new(self.spans.clone(), seq);
            let recs: Vec<SpanRec> = recs.into_iter().map(|s| s.held_by(hold.clone())).collect();
            drop(hold);
            // The record holds wall-clock time; the engine's clock starts anew with each process.
            let age = std::time::Duration::from_millis(now_ms().saturating_sub(arrived));
            stage.ingest(recs, Some(age));
        }
        add(&self.replayed, replayed);
        if replayed > 0 {
            tracing::info!(pipeline = %stage.name, "{replayed} undecided spans read back from the tail sampler's journal");
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Hands kept traces to the next stage, and decided ones to the bottleneck
/// summary.
struct Forward {
    next: Arc<dyn Consumer>,
    report: Option<Arc<BottleneckReport>>,
    journal: Option<Arc<TailJournal>>,
}

impl TraceSink<SpanRec> for Forward {
    fn keep(&self, trace_id: [u8; 16], spans: Vec<SpanRec>, kept_by: KeptBy<'_>) {
        // Late spans of a kept trace are fragments: not a trace to analyse.
        if let KeptBy::Policy(_) = kept_by {
            if let Some(report) = &self.report {
                report.kept(&spans);
            }
            if let Some(j) = &self.journal {
                j.decided(trace_id, true);
            }
        }
        self.next.consume(spans);
    }

    fn not_kept(&self, trace_id: [u8; 16], spans: Vec<SpanRec>) {
        if let Some(j) = &self.journal {
            j.decided(trace_id, false);
        }
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
    /// With `tail_storage`.
    journal: Option<Arc<TailJournal>>,
}

impl TailStage {
    pub(crate) fn new(
        config: TailSamplingConfig,
        next: Arc<dyn Consumer>,
        metrics: &Metrics,
        id: &str,
        pipeline: &str,
        report: Option<Arc<BottleneckReport>>,
        journal: Option<Arc<TailJournal>>,
    ) -> Arc<Self> {
        let sink: Arc<dyn TraceSink<SpanRec>> = Arc::new(Forward {
            next,
            report,
            journal: journal.clone(),
        });
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
            journal,
        })
    }
}

impl Consumer for TailStage {
    fn consume(&self, spans: Vec<SpanRec>) {
        let spans = match &self.journal {
            Some(j) => j.hold(spans),
            None => spans,
        };
        self.ingest(spans, None);
    }
}

impl TailStage {
    /// Buffers spans (that arrived `age` ago, when read back).
    fn ingest(&self, spans: Vec<SpanRec>, age: Option<std::time::Duration>) {
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
        match age {
            None => self.sampler.ingest_prepared_batch(prepared),
            Some(age) => self.sampler.ingest_prepared_batch_aged(prepared, age),
        }
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

    /// A file storage in a fresh directory (`name` and the process id) and
    /// tail-sampling settings that journal there, keep error traces and
    /// decide after `decision_wait`.
    fn journaled(
        name: &str,
        decision_wait: &str,
    ) -> (
        std::path::PathBuf,
        std::sync::Arc<crate::sidecar::extensions::file_storage::FileStorage>,
        std::sync::Arc<dyn crate::sidecar::component::ProcessorSettings>,
    ) {
        use crate::sidecar::extensions::file_storage::{FileStorage, FileStorageConfig};
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let yaml: serde_json::Value =
            serde_yaml_ng::from_str(&format!("{{directory: {}, create_directory: true}}", dir.display())).unwrap();
        let storage = std::sync::Arc::new(FileStorage::new(&FileStorageConfig::parse_for_tests(&yaml)).unwrap());
        let v: serde_json::Value = serde_yaml_ng::from_str(&format!(
            "{{decision_wait: {decision_wait}, tail_storage: file_storage, policies: [\
               {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}]}}"
        ))
        .unwrap();
        let settings = std::sync::Arc::new(
            crate::settings::TailSamplingConfig::from_value(&v, "processors.tail_sampling").unwrap(),
        );
        (dir, storage, settings)
    }

    /// With `tail_storage`, a restart reads back undecided spans (and
    /// decides them) and the decisions (late spans follow them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_journal_brings_back_undecided_spans_and_decisions() {
        let (dir, storage, settings) = journaled("tail-journal", "60s");
        let mut failing = trace(1, 2);
        failing[1].error = true;
        {
            let (ctx, metrics, _stop) = context();
            let ctx = ctx.with_storages([("file_storage".to_owned(), storage.clone())].into());
            let out = Recorder::new();
            let built = build(&ctx, &settings, "tail_sampling", out.clone());
            assert!(built.journal.is_some());
            built.head.consume(spans("a", &failing, &metrics.live()));
            built.head.consume(spans("a", &trace(2, 2), &metrics.live()));
            // Gone without a shutdown and without running a destructor, as with kill -9.
            std::mem::forget(built);
        }
        {
            let (ctx, metrics, _stop) = context();
            let ctx = ctx.with_storages([("file_storage".to_owned(), storage.clone())].into());
            let out = Recorder::new();
            let built = build(&ctx, &settings, "tail_sampling", out.clone());
            assert_eq!(
                metric(&metrics, "otelcol_processor_tail_sampling_replayed_spans_total{"),
                4.0
            );
            // Both traces are buffered again; flushing decides them: the
            // failing one is kept whole, the other not.
            built.flush.unwrap().flush();
            let kept = out.ids();
            assert_eq!(kept, vec![(1, 1), (1, 2)]);
        }
        {
            // The decision of trace 1 survives: a late span of it is kept at once.
            let (ctx, metrics, _stop) = context();
            let ctx = ctx.with_storages([("file_storage".to_owned(), storage)].into());
            let out = Recorder::new();
            let built = build(&ctx, &settings, "tail_sampling", out.clone());
            let late = [S {
                trace: 1,
                id: 9,
                parent: 1,
                ms: 1,
                error: false,
            }];
            built.head.consume(spans("a", &late, &metrics.live()));
            assert_eq!(out.wait_for(1, Duration::from_secs(2)), 1);
            assert_eq!(out.ids(), vec![(1, 9)]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A trace read back after a restart keeps the deadline it had: when
    /// its wait ran out while the collector was down, it is decided at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replayed_trace_keeps_its_original_deadline() {
        let (dir, storage, settings) = journaled("tail-deadline", "2s");
        let mut failing = trace(1, 2);
        failing[1].error = true;
        let (ctx, metrics, _stop) = context();
        {
            // The record a collector killed 3 s ago left: the spans as they arrived then.
            let (journal, _) = storage.open("processor_traces_tail_sampling").unwrap();
            let mut record = (super::now_ms() - 3000).to_le_bytes().to_vec();
            super::encode_request_into(&spans("a", &failing, &metrics.live()), &mut record);
            journal.append(0, &record).unwrap();
            journal.close();
        }
        let ctx = ctx.with_storages([("file_storage".to_owned(), storage)].into());
        let out = Recorder::new();
        let started = std::time::Instant::now();
        let _built = build(&ctx, &settings, "tail_sampling", out.clone());
        assert_eq!(out.wait_for(2, Duration::from_secs(5)), 2);
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_millis(1000),
            "decided {waited:?} after the restart, not at once (its 2 s wait ended 1 s before)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

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
