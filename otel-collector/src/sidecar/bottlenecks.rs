//! Which services and operations make traces slow, across many traces: the
//! bottleneck summary of `otel_export::analysis`, over the traces the tail
//! samplers kept and, separately, over every trace they saw (what is kept is
//! biased towards errors and slow traces; the second view is not).
//!
//! Cost and memory are bounded: at most [`TRACES_PER_SECOND`] decided traces
//! a second are analysed (admitted by time, whatever they hold, so both views
//! stay unbiased samples), on a thread of their own; a bounded queue sits in
//! between, and the summaries keep at most [`MAX_ROWS`] rows each. Traces not
//! analysed are counted.

use super::exporters::debug::{service_of, span_node};
use super::wire::{SpanRec, SpanView};
use crate::lock;
use otel_export::analysis::{Bottlenecks, SpanNode, analyze};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Traces analysed per second, at most.
pub(crate) const TRACES_PER_SECOND: u64 = 500;
/// Rows (service, operation) kept per summary.
pub(crate) const MAX_ROWS: usize = 1000;
/// Traces waiting for the analysis thread, at most.
const QUEUE: usize = 256;
/// Rows shown in the text view.
const TEXT_ROWS: usize = 20;

struct Job {
    spans: Vec<SpanRec>,
    kept: bool,
}

#[derive(Default)]
struct Summaries {
    kept: Bottlenecks,
    all: Bottlenecks,
}

/// Admits up to `TRACES_PER_SECOND` traces per second.
struct Budget {
    second: Instant,
    used: u64,
}

/// The summary of one collector, fed by its tail samplers.
pub(crate) struct BottleneckReport {
    tx: SyncSender<Job>,
    summaries: Arc<Mutex<Summaries>>,
    /// Traces sent to the analysis thread and not analysed yet.
    pending: Arc<AtomicU64>,
    budget: Mutex<Budget>,
    seen: AtomicU64,
    kept: AtomicU64,
    skipped: AtomicU64,
}

impl BottleneckReport {
    /// Starts the analysis thread (it ends when the report is dropped).
    pub(crate) fn start() -> Result<Arc<Self>, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let summaries = Arc::new(Mutex::new(Summaries {
            kept: Bottlenecks::new(MAX_ROWS),
            all: Bottlenecks::new(MAX_ROWS),
        }));
        let shared = summaries.clone();
        let pending = Arc::new(AtomicU64::new(0));
        let done = pending.clone();
        std::thread::Builder::new()
            .name("bottlenecks".into())
            .spawn(move || analyse(&rx, &shared, &done))
            .map_err(|e| format!("cannot start the bottleneck analysis thread: {e}"))?;
        Ok(Arc::new(BottleneckReport {
            tx,
            summaries,
            pending,
            budget: Mutex::new(Budget {
                second: Instant::now(),
                used: 0,
            }),
            seen: AtomicU64::new(0),
            kept: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }))
    }

    fn admit(&self) -> bool {
        let mut b = lock(&self.budget);
        if b.second.elapsed() >= Duration::from_secs(1) {
            b.second = Instant::now();
            b.used = 0;
        }
        if b.used >= TRACES_PER_SECOND {
            return false;
        }
        b.used += 1;
        true
    }

    /// A trace the tail sampler kept; analysed from copies (the spans go on).
    /// Never blocks.
    pub(crate) fn kept(&self, spans: &[SpanRec]) {
        self.seen.fetch_add(1, Relaxed);
        self.kept.fetch_add(1, Relaxed);
        if self.admit() {
            self.send(Job {
                spans: spans.to_vec(),
                kept: true,
            });
        } else {
            self.skipped.fetch_add(1, Relaxed);
        }
    }

    /// A trace the tail sampler did not keep. Never blocks.
    pub(crate) fn not_kept(&self, spans: Vec<SpanRec>) {
        self.seen.fetch_add(1, Relaxed);
        if self.admit() {
            self.send(Job { spans, kept: false });
        } else {
            self.skipped.fetch_add(1, Relaxed);
        }
    }

    fn send(&self, job: Job) {
        self.pending.fetch_add(1, Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(job) {
            self.pending.fetch_sub(1, Relaxed);
            self.skipped.fetch_add(1, Relaxed);
        }
    }

    /// Waits, up to `timeout`, until every trace handed over is analysed.
    pub(crate) async fn settle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.pending.load(Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The plain-text view: both summaries with what they cover.
    pub(crate) fn render_text(&self) -> String {
        let s = lock(&self.summaries);
        let (seen, kept, skipped) = (
            self.seen.load(Relaxed),
            self.kept.load(Relaxed),
            self.skipped.load(Relaxed),
        );
        let mut out = format!(
            "bottlenecks over the traces the tail sampler kept ({} analysed of {kept} kept):\n",
            s.kept.traces()
        );
        out.push_str(&s.kept.render_text(TEXT_ROWS));
        out.push_str(&format!(
            "bottlenecks over every trace the tail sampler saw ({} analysed of {seen} seen; {skipped} over the {TRACES_PER_SECOND}/s analysis budget):\n",
            s.all.traces()
        ));
        out.push_str(&s.all.render_text(TEXT_ROWS));
        out
    }

    /// The JSON view: `{"kept": {...}, "all": {...}}`, each summary with the
    /// number of traces it covers and how many it could have.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let s = lock(&self.summaries);
        let mut kept = s.kept.to_json();
        kept["traces_decided"] = self.kept.load(Relaxed).into();
        let mut all = s.all.to_json();
        all["traces_decided"] = self.seen.load(Relaxed).into();
        serde_json::json!({
            "kept": kept,
            "all": all,
            "skipped": self.skipped.load(Relaxed),
            "max_traces_per_second": TRACES_PER_SECOND,
        })
    }

    /// Traces analysed so far (every trace seen, kept or not).
    pub(crate) fn analysed(&self) -> u64 {
        lock(&self.summaries).all.traces()
    }
}

fn analyse(rx: &Receiver<Job>, summaries: &Mutex<Summaries>, pending: &AtomicU64) {
    for job in rx {
        record(&job, summaries);
        drop(job);
        pending.fetch_sub(1, Relaxed);
    }
}

fn record(job: &Job, summaries: &Mutex<Summaries>) {
    let views: Vec<(SpanView<'_>, &SpanRec)> = job.spans.iter().filter_map(|s| s.view().ok().map(|v| (v, s))).collect();
    if views.is_empty() {
        return;
    }
    let services: Vec<String> = views.iter().map(|(_, rec)| service_of(rec)).collect();
    let nodes: Vec<SpanNode<'_>> = views
        .iter()
        .zip(&services)
        .map(|((v, _), service)| span_node(v, service))
        .collect();
    let analysis = analyze(&nodes);
    let mut s = lock(summaries);
    s.all.record_analyzed(&nodes, &analysis);
    if job.kept {
        s.kept.record_analyzed(&nodes, &analysis);
    }
}
