//! Counters a user can read: where every span went.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Span and request counters shared by a [`BatchSpanProcessor`](crate::BatchSpanProcessor)
/// and an [`OtlpExporter`](crate::OtlpExporter). Each counter is written by one
/// component only, so sharing one `Counters` between them never double counts:
///
/// - the processor counts `enqueued`, `exported`, `dropped` and `failed`;
/// - the exporter counts `retries`, `rejected` and `send_failed`.
///
/// Spans the receiver accepted = `exported - rejected`.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) enqueued: AtomicU64,
    pub(crate) exported: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) send_failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Spans accepted into the processor's queue.
    pub enqueued: u64,
    /// Spans in batches the exporter reported as sent.
    pub exported: u64,
    /// Spans dropped because the queue was full or the processor was shut down.
    pub dropped: u64,
    /// Spans in batches whose export failed or timed out.
    pub failed: u64,
    /// Spans the receiver rejected in a partial success.
    pub rejected: u64,
    /// Requests retried after a retryable failure.
    pub retries: u64,
    /// Spans the exporter gave up on (non-retryable failure, or retries exhausted).
    pub send_failed: u64,
}

impl Counters {
    /// New, zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            enqueued: get(&self.enqueued),
            exported: get(&self.exported),
            dropped: get(&self.dropped),
            failed: get(&self.failed),
            rejected: get(&self.rejected),
            retries: get(&self.retries),
            send_failed: get(&self.send_failed),
        }
    }

    /// Why the last export that gave up failed (after its retries), if one
    /// did: an error worth showing a user ("is this the gRPC port?").
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map_or(None, |e| e.clone())
    }

    pub(crate) fn set_last_error(&self, error: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error.to_owned());
        }
    }

    /// Counts `n` spans dropped before they reached the processor's queue, by
    /// a component that feeds it (otel-core's `tracing` layer when its hand-off
    /// buffer is full or the pipeline is shut down). They show in `dropped`.
    pub fn add_dropped(&self, n: u64) {
        Self::add(&self.dropped, n);
    }

    #[inline]
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
