//! A sending queue on disk (`sending_queue.storage: file_storage/<name>`):
//! each batch is encoded into its OTLP request and written to the
//! exporter's journal when it enters the queue; it leaves the journal when
//! it is delivered or finally fails. A restart, even after `kill -9`, sends
//! what was queued and not delivered. Memory holds only where each request
//! is, so a long backend outage fills the disk up to the bound, not memory.
//!
//! When the queue is at `queue_size` (requests, spans with `sizer: items`,
//! bytes with `sizer: bytes`) receivers refuse new data with a retryable
//! status (or wait for room, with `blocking: true`) instead of dropping it.
//!
//! Delivery is at least once from acknowledgement to the backend: a request
//! sent and then interrupted by a crash before its `DONE` record is sent
//! again after the restart (counted in
//! `otelcol_exporter_queue_replayed_spans_total`).

use super::{ExportCounters, with_request_body};
use crate::sidecar::component::Admission;
use crate::sidecar::journal::{Journal, Location, Recovery};
use crate::sidecar::metrics::{Metrics, add};
use crate::sidecar::wire::SpanRec;
use otel_export::OtlpExporter;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// What `queue_size` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sizer {
    /// Requests (batches).
    Requests,
    /// Spans.
    Items,
    /// Bytes of encoded requests.
    Bytes,
}

struct Waiting {
    seq: u64,
    loc: Location,
    spans: u64,
}

/// The queue's state shared by the exporter, its dispatcher and the gate.
pub(crate) struct DiskQueue {
    id: String,
    pub(crate) journal: Arc<Journal>,
    waiting: Mutex<VecDeque<Waiting>>,
    wake: Notify,
    next_seq: AtomicU64,
    /// Queued or in flight, in `sizer` units.
    held: AtomicU64,
    capacity: u64,
    sizer: Sizer,
    /// Wait for room rather than refuse (`blocking: true`).
    blocking: bool,
    closed: AtomicBool,
    json: bool,
    /// Where writes from non-runtime threads run.
    runtime: tokio::runtime::Handle,
    /// Writes handed to the blocking pool and not done yet.
    writing: AtomicU64,
    /// Makes requests ready to send (compressed, framed) before they are
    /// written, and sends them.
    exporter: Arc<OtlpExporter>,
    /// The exporter's protocol and compression, recorded with each request:
    /// a request queued with other settings is not sent as they are now.
    format: u8,
    counters: ExportCounters,
    warned: AtomicBool,
    /// Spans sent again after a restart.
    replayed: Arc<AtomicU64>,
    /// Journal records that could not be read back.
    skipped: Arc<AtomicU64>,
    /// Spans queued now.
    queued_spans: AtomicU64,
}

impl DiskQueue {
    /// Opens the queue over `journal`, taking back what `recovery` found.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: &str,
        journal: Arc<Journal>,
        recovery: Recovery,
        capacity: u64,
        sizer: Sizer,
        blocking: bool,
        json: bool,
        exporter: Arc<OtlpExporter>,
        format: u8,
        counters: ExportCounters,
        metrics: &Metrics,
        runtime: tokio::runtime::Handle,
    ) -> Arc<DiskQueue> {
        let l = [("exporter", id)];
        let replayed = metrics.counter(
            "otelcol_exporter_queue_replayed_spans",
            "Spans found in the persistent queue at start, to be sent again.",
            &l,
        );
        let skipped = metrics.counter(
            "otelcol_exporter_queue_skipped_records",
            "Persistent queue records that failed their checksum or were cut short, skipped.",
            &l,
        );
        let q = Arc::new(DiskQueue {
            id: id.to_owned(),
            journal,
            waiting: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            next_seq: AtomicU64::new(0),
            held: AtomicU64::new(0),
            capacity,
            sizer,
            blocking,
            closed: AtomicBool::new(false),
            json,
            runtime,
            writing: AtomicU64::new(0),
            exporter,
            format,
            counters,
            warned: AtomicBool::new(false),
            replayed,
            skipped,
            queued_spans: AtomicU64::new(0),
        });
        add(&q.skipped, recovery.skipped_records);
        if recovery.skipped_records > 0 {
            tracing::warn!(
                exporter = %id,
                "the persistent queue had {} damaged records ({} bytes), skipped",
                recovery.skipped_records,
                recovery.skipped_bytes
            );
        }
        let last = recovery.next_seq;
        let mut replayed = 0;
        for (seq, loc) in recovery.items {
            // Only the trailer: opening the journal just checked every record,
            // and sending reads (and checks) the whole request again.
            match q.journal.read_trailer(loc, TRAILER).ok().and_then(|p| trailer(&p)) {
                Some((n, _)) => {
                    replayed += n;
                    q.enqueue(Waiting { seq, loc, spans: n });
                }
                None => {
                    add(&q.skipped, 1);
                    q.journal.done(seq);
                }
            }
        }
        q.next_seq.store(last, Ordering::Relaxed);
        add(&q.replayed, replayed);
        if replayed > 0 {
            tracing::info!(exporter = %id, "{replayed} spans from the persistent queue will be sent again");
        }
        q
    }

    fn units(&self, spans: u64, bytes: u64) -> u64 {
        match self.sizer {
            Sizer::Requests => 1,
            Sizer::Items => spans,
            Sizer::Bytes => bytes,
        }
    }

    /// Spans (or requests) queued now, in `sizer` units.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Writes a batch to the journal and queues it. A batch that arrives
    /// past the bound (in flight inside the collector when the gate closed)
    /// is still queued: the gate, not a drop, is what keeps the bound.
    ///
    /// On a runtime thread (a receiver's request, which then waits for the
    /// write) it is written at once; from a stage's own thread (a tail
    /// sampler's decisions, a batch timer) the compression and the write go
    /// to the runtime's blocking pool, so that thread is not held.
    pub(crate) fn consume(self: &Arc<Self>, spans: Vec<SpanRec>) {
        if spans.is_empty() {
            return;
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            self.write(spans);
        } else {
            let q = self.clone();
            self.writing.fetch_add(1, Ordering::Relaxed);
            drop(self.runtime.spawn_blocking(move || {
                q.write(spans);
                q.writing.fetch_sub(1, Ordering::Relaxed);
            }));
        }
    }

    fn write(&self, spans: Vec<SpanRec>) {
        let n = spans.len() as u64;
        // Also after close (a flush at shutdown): on disk, it is sent after
        // the next start if not before.
        // Stored as it will be sent: compressed and framed.
        let prepared = with_request_body(&spans, self.json, |body| self.exporter.prepare_encoded(body))
            .map_err(|e| format!("cannot encode the request: {e}"))
            .and_then(|p| p.map_err(|e| format!("cannot prepare the request: {e}")));
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                add(&self.counters.failed, n);
                tracing::warn!(exporter = %self.id, "{e}");
                return;
            }
        };
        let mut tail = [0u8; TRAILER];
        tail[..8].copy_from_slice(&n.to_le_bytes());
        tail[8] = self.format;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        match self.journal.append_parts(seq, &[&prepared, &tail]) {
            Ok((loc, _)) => {
                self.enqueue(Waiting { seq, loc, spans: n });
                self.wake.notify_one();
                // Only now may what held the spans upstream (a tail
                // sampler's journal record) let go of them.
                drop(spans);
            }
            Err(e) => {
                add(&self.counters.enqueue_failed, n);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::error!(exporter = %self.id, "cannot write to the persistent queue: {e}; spans dropped (counted in otelcol_exporter_enqueue_failed_spans)");
                }
            }
        }
    }

    /// Sends queued requests, `consumers` at a time, until closed and empty
    /// (or aborted at shutdown, leaving the rest on disk).
    pub(crate) async fn dispatch(self: Arc<Self>, consumers: usize) {
        let permits = Arc::new(Semaphore::new(consumers));
        loop {
            let next = crate::lock(&self.waiting).pop_front();
            let Some(item) = next else {
                if self.closed.load(Ordering::Relaxed) && self.writing.load(Ordering::Relaxed) == 0 {
                    break;
                }
                // Woken by a new item, or every 100 ms to see `closed`.
                let _ = tokio::time::timeout(Duration::from_millis(100), self.wake.notified()).await;
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let q = self.clone();
            tokio::spawn(async move {
                q.send(item).await;
                drop(permit);
            });
        }
        let _ = permits.acquire_many(consumers as u32).await;
    }

    async fn send(&self, item: Waiting) {
        let mut payload = match self.journal.read(item.seq, item.loc) {
            Ok(p) => p,
            Err(e) => {
                add(&self.skipped, 1);
                add(&self.counters.failed, item.spans);
                tracing::warn!(exporter = %self.id, "a queued request cannot be read back ({e}); its spans are counted as failed");
                self.retire(&item);
                return;
            }
        };
        if trailer(&payload).map(|(_, f)| f) != Some(self.format) {
            add(&self.counters.failed, item.spans);
            tracing::warn!(exporter = %self.id, "a request queued with other protocol or compression settings cannot be sent as they are now; its spans are counted as failed");
            self.retire(&item);
            return;
        }
        payload.truncate(payload.len() - TRAILER);
        let result = self.exporter.export_prepared(payload, item.spans).await;
        match result {
            Ok(()) => add(&self.counters.sent, item.spans),
            Err(e) => {
                add(&self.counters.failed, item.spans);
                tracing::warn!(exporter = %self.id, "export failed: {e}");
            }
        }
        self.retire(&item);
    }

    /// Counts a request on disk and queues it for sending; [`retire`](Self::retire) undoes it.
    fn enqueue(&self, item: Waiting) {
        self.held
            .fetch_add(self.units(item.spans, item.loc.len() as u64), Ordering::Relaxed);
        self.queued_spans.fetch_add(item.spans, Ordering::Relaxed);
        crate::lock(&self.waiting).push_back(item);
    }

    fn retire(&self, item: &Waiting) {
        self.journal.done(item.seq);
        let units = self.units(item.spans, item.loc.len() as u64);
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h.saturating_sub(units)));
        let _ = self
            .queued_spans
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some(h.saturating_sub(item.spans))
            });
    }

    /// Stops taking batches; what is queued stays on disk for the next start
    /// if the dispatcher is stopped before it is sent.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Waits for `deadline` or an empty queue.
    pub(crate) async fn drained(&self, deadline: Instant) -> bool {
        let empty = || self.queued_spans.load(Ordering::Relaxed) == 0 && self.writing.load(Ordering::Relaxed) == 0;
        while Instant::now() < deadline {
            if empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        empty()
    }

    /// Spans waiting or in flight.
    pub(crate) fn queued_spans(&self) -> u64 {
        self.queued_spans.load(Ordering::Relaxed)
    }
}

/// Bytes after a stored request: its span count (u64 LE) and format byte.
const TRAILER: usize = 9;

/// The span count and format byte at the end of a stored request.
fn trailer(payload: &[u8]) -> Option<(u64, u8)> {
    let at = payload.len().checked_sub(TRAILER)?;
    let n: [u8; 8] = payload.get(at..at + 8)?.try_into().ok()?;
    Some((u64::from_le_bytes(n), payload[at + 8]))
}

impl Admission for DiskQueue {
    fn admit(&self, _incoming: usize, _spans: u64) -> bool {
        self.held() < self.capacity && !self.journal.failing()
    }

    fn reason(&self) -> &'static str {
        if self.journal.failing() {
            "data refused: the exporter's persistent sending queue cannot be written (disk full?)"
        } else {
            "data refused: the exporter's persistent sending queue is full"
        }
    }

    fn blocking(&self) -> bool {
        self.blocking
    }
}
