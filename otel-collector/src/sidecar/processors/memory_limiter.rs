//! `memory_limiter`: refuse data with a retryable status while the process
//! is above its soft limit (the hard limit minus the spike headroom). One
//! limiter per component id, shared by the pipelines that name it.

use crate::sidecar::component::{Admission, BuildContext, Built, Component, Factory, ProcessorSettings, StagePlace};
use crate::sidecar::config::{At, ConfigError, MIB, child, get_duration, get_u64};
use crate::sidecar::metrics::add;
use crate::sidecar::pipeline::Consumer;
use crate::sidecar::wire::LiveBytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ProcessorSettings> = Factory {
    component: Component {
        section: "processors",
        name: "memory_limiter",
        settings: &[
            "check_interval",
            "limit_mib",
            "spike_limit_mib",
            "limit_percentage",
            "spike_limit_percentage",
        ],
        ignored: &[],
    },
    parse: |at, _| Ok(Box::new(MemoryLimiterConfig::parse(at)?)),
};

/// `memory_limiter` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MemoryLimiterConfig {
    /// How often memory is measured.
    pub check_interval: Duration,
    /// The hard limit, bytes.
    pub limit_bytes: u64,
    /// Headroom below the hard limit: data is refused above `limit - spike`.
    pub spike_bytes: u64,
}

/// Total memory available to the process: the cgroup limit when set, else physical memory.
fn total_memory() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    match (cgroup, meminfo) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    }
}

impl MemoryLimiterConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        let check_interval = get_duration(at, "check_interval")?.unwrap_or(Duration::from_secs(1));
        if check_interval.is_zero() {
            return Err(ConfigError::new(child(at.path, "check_interval"), "must be above 0"));
        }
        let limit_mib = get_u64(at, "limit_mib")?;
        let limit_pct = get_u64(at, "limit_percentage")?;
        let (limit, spike) = match (limit_mib, limit_pct) {
            (Some(mib), _) if mib > 0 => {
                let spike = get_u64(at, "spike_limit_mib")?.map_or(mib * MIB / 5, |s| s * MIB);
                (mib * MIB, spike)
            }
            (_, Some(pct)) if pct > 0 && pct <= 100 => {
                let total = total_memory().ok_or_else(|| {
                    ConfigError::new(
                        child(at.path, "limit_percentage"),
                        "total memory is unknown here; use limit_mib",
                    )
                })?;
                let spike_pct = get_u64(at, "spike_limit_percentage")?.unwrap_or(pct / 5);
                (total / 100 * pct, total / 100 * spike_pct)
            }
            (_, Some(pct)) if pct > 100 => {
                return Err(ConfigError::new(
                    child(at.path, "limit_percentage"),
                    format!("must be 1 to 100, got {pct}"),
                ));
            }
            _ => {
                return Err(at.err("memory_limiter needs limit_mib (or limit_percentage) above 0"));
            }
        };
        if spike >= limit {
            return Err(ConfigError::new(
                child(at.path, "spike_limit_mib"),
                format!("must be below the limit ({} MiB), got {} MiB", limit / MIB, spike / MIB),
            ));
        }
        Ok(MemoryLimiterConfig {
            check_interval,
            limit_bytes: limit,
            spike_bytes: spike,
        })
    }
}

impl ProcessorSettings for MemoryLimiterConfig {
    fn build(&self, ctx: &BuildContext, at: StagePlace<'_>, next: Arc<dyn Consumer>) -> Result<Built, String> {
        let limiter = ctx.shared(at.id, || MemoryLimiter::start(ctx, *self, at.id));
        Ok(Built {
            head: next,
            flush: None,
            gate: Some(limiter),
            journal: None,
        })
    }
}

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
    pub(crate) fn start(ctx: &BuildContext, cfg: MemoryLimiterConfig, id: &str) -> Arc<Self> {
        let metrics = ctx.metrics();
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
            live: ctx.live(),
        });
        let weak = Arc::downgrade(&limiter);
        let id = id.to_owned();
        ctx.spawn(async move {
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
}

impl Admission for MemoryLimiter {
    fn admit(&self, incoming: usize, spans: u64) -> bool {
        let ok = self.usage() + (incoming as f64 * OVERHEAD_FACTOR) as u64 <= self.soft;
        if !ok {
            add(&self.refused, spans);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use crate::sidecar::testing::{Recorder, build, context, metric, processor};
    use std::sync::Arc;

    #[tokio::test]
    async fn refuses_above_the_limit_counts_it_and_is_one_limiter_per_id() {
        let (ctx, metrics, _stop) = context();
        // 1 MiB is below any process's resident size: everything is refused.
        let tight = processor("{memory_limiter: {limit_mib: 1, spike_limit_mib: 0}}");
        let out = Recorder::new();
        let first = build(&ctx, &tight, "memory_limiter", out.clone());
        let second = build(&ctx, &tight, "memory_limiter", out.clone());
        let gate = first.gate.expect("the limiter admits at the receiver");
        let again = second.gate.expect("gate");
        assert!(Arc::ptr_eq(&gate, &again), "two pipelines, one limiter");
        // It is not a stage: spans go straight to the next one.
        assert!(first.flush.is_none());
        assert!(!gate.admit(100, 7));
        assert_eq!(
            metric(
                &metrics,
                "otelcol_processor_refused_spans_total{processor=\"memory_limiter\"}"
            ),
            7.0
        );

        // 1 TiB admits.
        let roomy = processor("{memory_limiter: {limit_mib: 1048576}}");
        let gate = build(&ctx, &roomy, "memory_limiter/roomy", out).gate.expect("gate");
        assert!(gate.admit(1 << 20, 1));
    }
}
