//! `memory_limiter`: refuse data with a retryable status while the process
//! is above its soft limit (the hard limit minus the spike headroom).

use super::config::MemoryLimiterConfig;
use super::metrics::{Metrics, add};
use super::wire::live_bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// The resident set size of this process, bytes (Linux `/proc/self/status`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Decides whether new data may enter.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    soft: u64,
    hard: u64,
    /// RSS at the last check.
    rss: AtomicU64,
    /// Live span bytes at the last check (growth since then is added to the RSS).
    live_at_check: AtomicI64,
    refusing: AtomicBool,
    refused: Arc<AtomicU64>,
}

impl MemoryLimiter {
    /// A limiter measuring every `check_interval` (spawns the task).
    pub(crate) fn start(cfg: MemoryLimiterConfig, metrics: &Metrics, id: &str) -> Arc<Self> {
        let limiter = Arc::new(MemoryLimiter {
            soft: cfg.limit_bytes - cfg.spike_bytes,
            hard: cfg.limit_bytes,
            rss: AtomicU64::new(resident_bytes().unwrap_or(0)),
            live_at_check: AtomicI64::new(live_bytes()),
            refusing: AtomicBool::new(false),
            refused: metrics.counter(
                "otelcol_processor_refused_spans",
                "Spans refused by the memory limiter (clients retry them).",
                &[("processor", id)],
            ),
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
        self.live_at_check.store(live_bytes(), Ordering::Relaxed);
        let over = rss > self.soft;
        if over != self.refusing.swap(over, Ordering::Relaxed) {
            if over {
                tracing::warn!(processor = %id, "memory usage {} MiB is above the soft limit {} MiB (hard {} MiB): refusing data", rss >> 20, self.soft >> 20, self.hard >> 20);
            } else {
                tracing::info!(processor = %id, "memory usage {} MiB is back below the soft limit: accepting data", rss >> 20);
            }
        }
    }

    /// Memory in use now, estimated: the last measured RSS plus the growth
    /// of live span data since.
    pub(crate) fn usage(&self) -> u64 {
        let grown = (live_bytes() - self.live_at_check.load(Ordering::Relaxed)).max(0) as u64;
        self.rss.load(Ordering::Relaxed) + grown
    }

    /// Whether `incoming` more bytes (about to be decoded into spans) may enter;
    /// counts `spans` as refused when not.
    pub(crate) fn admit(&self, incoming: usize, spans: u64) -> bool {
        let ok = self.usage() + incoming as u64 <= self.soft;
        if !ok {
            add(&self.refused, spans);
        }
        ok
    }
}
