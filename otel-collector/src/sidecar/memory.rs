//! `memory_limiter`: refuse data with a retryable status while the process
//! is above its soft limit (the hard limit minus the spike headroom).

use super::config::MemoryLimiterConfig;
use super::metrics::{Metrics, add};
use super::wire::LiveBytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The resident set size of this process, bytes (Linux `/proc/self/status`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Allocator and bookkeeping overhead assumed on top of the span bytes held.
const OVERHEAD_FACTOR: f64 = 1.5;

/// Decides whether new data may enter.
///
/// Like the Go limiter, which reads the Go heap rather than the resident
/// size, usage is what the collector holds: the resident size at start plus
/// 1.5 times the bytes of span data buffered, batched, queued or in flight.
/// (The resident size itself stays high after a burst, because the
/// allocator keeps freed memory for reuse; refusing on it would refuse for
/// good.) As a safety net, data is also refused while the resident size,
/// measured every `check_interval`, is above the hard limit.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    soft: u64,
    hard: u64,
    baseline: u64,
    /// Resident size at the last check.
    rss: AtomicU64,
    refusing: AtomicBool,
    refused: Arc<AtomicU64>,
    live: Arc<LiveBytes>,
}

impl MemoryLimiter {
    /// A limiter measuring every `check_interval` (spawns the task).
    pub(crate) fn start(cfg: MemoryLimiterConfig, metrics: &Metrics, id: &str) -> Arc<Self> {
        let rss = resident_bytes().unwrap_or(0);
        let limiter = Arc::new(MemoryLimiter {
            soft: cfg.limit_bytes - cfg.spike_bytes,
            hard: cfg.limit_bytes,
            baseline: rss,
            rss: AtomicU64::new(rss),
            refusing: AtomicBool::new(false),
            refused: metrics.counter(
                "otelcol_processor_refused_spans",
                "Spans refused by the memory limiter (clients retry them).",
                &[("processor", id)],
            ),
            live: metrics.live(),
        });
        let weak = Arc::downgrade(&limiter);
        let id = id.to_owned();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cfg.check_interval);
            loop {
                tick.tick().await;
                let Some(l) = weak.upgrade() else { return };
                l.check(&id);
            }
        });
        limiter
    }

    fn check(&self, id: &str) {
        let rss = resident_bytes().unwrap_or(0);
        self.rss.store(rss, Ordering::Relaxed);
        let usage = self.usage();
        let over = usage > self.soft;
        if over != self.refusing.swap(over, Ordering::Relaxed) {
            if over {
                tracing::warn!(processor = %id, "memory usage {} MiB (resident {} MiB) is above the soft limit {} MiB (hard {} MiB): refusing data", usage >> 20, rss >> 20, self.soft >> 20, self.hard >> 20);
            } else {
                tracing::info!(processor = %id, "memory usage {} MiB is back below the soft limit: accepting data", usage >> 20);
            }
        }
    }

    /// Memory in use now, as the limiter counts it.
    pub(crate) fn usage(&self) -> u64 {
        let held = self.live.get().max(0) as f64 * OVERHEAD_FACTOR;
        let estimate = self.baseline + held as u64;
        let rss = self.rss.load(Ordering::Relaxed);
        if rss > self.hard { rss } else { estimate }
    }

    /// Whether `incoming` more bytes may enter; counts `spans` as refused when not.
    pub(crate) fn admit(&self, incoming: usize, spans: u64) -> bool {
        let ok = self.usage() + (incoming as f64 * OVERHEAD_FACTOR) as u64 <= self.soft;
        if !ok {
            add(&self.refused, spans);
        }
        ok
    }
}
