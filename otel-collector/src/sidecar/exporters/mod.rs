//! Exporters, one module each, and their table; what every exporter shares
//! (the shutdown contract, the counters, the request encoding).

use super::component::{ExporterSettings, Factory};
use super::metrics::Metrics;
use super::pipeline::Consumer;
use super::wire::{SpanRec, encode_request, encode_request_into};
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
pub(crate) mod persistent;

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
    /// is still unsent then is counted as failed (or, in a persistent
    /// queue, left on disk for the next start).
    fn shutdown(self: Arc<Self>, deadline: Instant) -> BoxFuture;

    /// What receivers ask before taking data for it (a persistent queue's bound).
    fn gate(&self) -> Option<Arc<dyn super::component::Admission>> {
        None
    }

    /// The journal that takes its spans, when it keeps them on disk.
    fn journal(&self) -> Option<Arc<super::journal::Journal>> {
        None
    }
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

thread_local! {
    /// This thread's buffer for encoding requests, used again for each: a
    /// batch's request is megabytes, and a fresh buffer per request cost
    /// page faults (the kernel zeroing each page) under load.
    static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An encode buffer larger than this is not kept after use.
const ENCODED_KEPT: usize = 32 << 20;

/// Gives `use_body` the request body of `spans` (protobuf, or OTLP JSON when
/// `json`); protobuf is encoded into a buffer this thread keeps.
pub(crate) fn with_request_body<R>(
    spans: &[SpanRec],
    json: bool,
    use_body: impl FnOnce(&[u8]) -> R,
) -> Result<R, String> {
    if json {
        return request_body(spans, true).map(|body| use_body(&body));
    }
    Ok(ENCODED.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.clear();
        encode_request_into(spans, &mut buf);
        let used = use_body(&buf);
        if buf.capacity() > ENCODED_KEPT {
            *buf = Vec::new();
        }
        used
    }))
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

/// A thread of an exporter's own that writes batches, behind a bounded
/// queue: `consume` never waits for the write (the concurrency contract).
/// Receivers refuse new data (retryable) while the queue is three quarters
/// full, so a burst is pushed back to the clients; a batch that still finds
/// it full is dropped and counted in `enqueue_failed`.
pub(crate) struct WriterThread {
    tx: std::sync::Mutex<Option<std::sync::mpsc::SyncSender<Vec<SpanRec>>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    counters: ExportCounters,
    room: Arc<WriterRoom>,
}

/// How full a writer thread's queue is, as receivers see it.
pub(crate) struct WriterRoom {
    queued: AtomicU64,
    capacity: u64,
}

impl super::component::Admission for WriterRoom {
    fn admit(&self, _incoming: usize, _spans: u64) -> bool {
        self.queued.load(std::sync::atomic::Ordering::Relaxed) * 4 < self.capacity * 3
    }

    fn reason(&self) -> &'static str {
        "data refused: the exporter's writer is behind"
    }
}

impl WriterThread {
    /// Starts thread `name`, which calls `write` for each batch, in order,
    /// and counts its spans as sent (`Ok`) or failed (`Err`, logged once
    /// per failure with `what`).
    pub(crate) fn start(
        name: &str,
        queue: usize,
        counters: ExportCounters,
        mut write: impl FnMut(&[SpanRec]) -> Result<(), String> + Send + 'static,
    ) -> Result<Self, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<SpanRec>>(queue);
        let c = counters.clone();
        let room = Arc::new(WriterRoom {
            queued: AtomicU64::new(0),
            capacity: queue as u64,
        });
        let r = room.clone();
        let thread_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for batch in rx {
                    let n = batch.len() as u64;
                    let written = write(&batch);
                    drop(batch);
                    r.queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    match written {
                        Ok(()) => super::metrics::add(&c.sent, n),
                        Err(e) => {
                            super::metrics::add(&c.failed, n);
                            tracing::warn!("{thread_name}: {e}");
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the {name} thread: {e}"))?;
        Ok(WriterThread {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
            counters,
            room,
        })
    }

    /// The queue's fill, for receivers ([`Exporter::gate`]).
    pub(crate) fn room(&self) -> Arc<dyn super::component::Admission> {
        self.room.clone()
    }

    /// Queues a batch for the thread, or counts it as refused.
    pub(crate) fn send(&self, spans: Vec<SpanRec>) {
        let n = spans.len() as u64;
        self.room.queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sent = match &*crate::lock(&self.tx) {
            Some(tx) => tx.try_send(spans).is_ok(),
            None => false,
        };
        if !sent {
            self.room.queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            super::metrics::add(&self.counters.enqueue_failed, n);
        }
    }

    /// Lets the thread write what is queued, then waits for it to end (on
    /// `runtime`'s blocking pool).
    pub(crate) async fn finish(&self, runtime: &tokio::runtime::Handle) {
        drop(crate::lock(&self.tx).take());
        let thread = crate::lock(&self.thread).take();
        if let Some(t) = thread {
            let _ = runtime.spawn_blocking(move || t.join()).await;
        }
    }
}

/// An exporter as a trait object: consume, and shut down.
pub(crate) trait ExporterDyn: Consumer {
    fn shutdown_dyn(self: Arc<Self>, deadline: Instant) -> BoxFuture;
    fn gate_dyn(&self) -> Option<Arc<dyn super::component::Admission>>;
    fn journal_dyn(&self) -> Option<Arc<super::journal::Journal>>;
}

impl<E: Exporter + 'static> ExporterDyn for E {
    fn shutdown_dyn(self: Arc<Self>, deadline: Instant) -> BoxFuture {
        self.shutdown(deadline)
    }
    fn gate_dyn(&self) -> Option<Arc<dyn super::component::Admission>> {
        self.gate()
    }
    fn journal_dyn(&self) -> Option<Arc<super::journal::Journal>> {
        self.journal()
    }
}
