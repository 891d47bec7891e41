//! `batch`: sends when `send_batch_size` spans wait or every `timeout`,
//! splitting batches above `send_batch_max_size`.

use crate::lock;
use crate::sidecar::component::{BuildContext, Built, Component, Factory, ProcessorSettings, StagePlace};
use crate::sidecar::config::{At, ConfigError, child, get, get_duration, get_u64};
use crate::sidecar::metrics::add;
use crate::sidecar::pipeline::{Consumer, Flush};
use crate::sidecar::wire::SpanRec;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ProcessorSettings> = Factory {
    component: Component {
        section: "processors",
        name: "batch",
        settings: &["timeout", "send_batch_size", "send_batch_max_size", "metadata_keys"],
        ignored: &["metadata_cardinality_limit"],
    },
    parse: |at, _| Ok(Box::new(BatchConfig::parse(at)?)),
};

/// `batch` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchConfig {
    /// Send after this long even when the batch is small.
    pub timeout: Duration,
    /// Send when this many spans are waiting.
    pub send_batch_size: usize,
    /// Split larger batches (0: no limit).
    pub send_batch_max_size: usize,
}

impl BatchConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        if get(at, "metadata_keys").is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
            return Err(ConfigError::new(
                child(at.path, "metadata_keys"),
                "batching by metadata is not supported",
            ));
        }
        let timeout = get_duration(at, "timeout")?.unwrap_or(Duration::from_millis(200));
        let send_batch_size = get_u64(at, "send_batch_size")?.unwrap_or(8192) as usize;
        let send_batch_max_size = get_u64(at, "send_batch_max_size")?.unwrap_or(0) as usize;
        if send_batch_max_size != 0 && send_batch_max_size < send_batch_size {
            return Err(ConfigError::new(
                child(at.path, "send_batch_max_size"),
                format!("must be 0 or at least send_batch_size ({send_batch_size})"),
            ));
        }
        Ok(BatchConfig {
            timeout,
            send_batch_size,
            send_batch_max_size,
        })
    }
}

impl ProcessorSettings for BatchConfig {
    fn build(&self, ctx: &BuildContext, at: StagePlace<'_>, next: Arc<dyn Consumer>) -> Result<Built, String> {
        Ok(Built::buffering(BatchStage::new(ctx, at, *self, next)))
    }
}

/// The `batch` processor: sends when `send_batch_size` spans wait or every `timeout`.
pub(crate) struct BatchStage {
    cfg: BatchConfig,
    buf: Mutex<Vec<SpanRec>>,
    next: Arc<dyn Consumer>,
    /// Spans per batch sent (the Go metric's buckets).
    sizes: Histogram,
    /// Batches sent because `send_batch_size` was reached.
    by_size: Arc<AtomicU64>,
    /// Batches sent because `timeout` passed.
    by_timeout: Arc<AtomicU64>,
}

/// The bucket bounds of Go's `otelcol_processor_batch_batch_send_size`.
const SEND_SIZE_BUCKETS: [f64; 22] = [
    10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0, 8000.0,
    9000.0, 10000.0, 20000.0, 30000.0, 50000.0, 100000.0,
];

impl BatchStage {
    pub(crate) fn new(ctx: &BuildContext, at: StagePlace<'_>, cfg: BatchConfig, next: Arc<dyn Consumer>) -> Arc<Self> {
        let metrics = ctx.metrics();
        let labels = [("processor", at.id)];
        let stage = Arc::new(BatchStage {
            cfg,
            buf: Mutex::new(Vec::new()),
            next,
            sizes: metrics.histogram(
                "otelcol_processor_batch_batch_send_size",
                "Number of spans in each batch sent.",
                &labels,
                SEND_SIZE_BUCKETS,
            ),
            by_size: metrics.counter(
                "otelcol_processor_batch_batch_size_trigger_send",
                "Batches sent because send_batch_size was reached.",
                &labels,
            ),
            by_timeout: metrics.counter(
                "otelcol_processor_batch_timeout_trigger_send",
                "Batches sent because the timeout passed.",
                &labels,
            ),
        });
        let weak = Arc::downgrade(&stage);
        let period = cfg.timeout.max(Duration::from_millis(1));
        ctx.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(stage) => stage.send_buffered(Some(&stage.by_timeout)),
                    None => return,
                }
            }
        });
        stage
    }

    /// Sends what is buffered, counting the send in `trigger` when there was anything.
    fn send_buffered(&self, trigger: Option<&AtomicU64>) {
        let batch = std::mem::take(&mut *lock(&self.buf));
        if let (false, Some(t)) = (batch.is_empty(), trigger) {
            add(t, 1);
        }
        self.send(batch);
    }

    fn send(&self, spans: Vec<SpanRec>) {
        if spans.is_empty() {
            return;
        }
        let max = self.cfg.send_batch_max_size;
        if max == 0 || spans.len() <= max {
            self.sizes.observe(spans.len() as f64);
            self.next.consume(spans);
            return;
        }
        let mut spans = spans;
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(max));
            self.sizes.observe(spans.len() as f64);
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
                if buf.capacity() == 0 {
                    // A batch's worth at once, not grown by doubling.
                    buf.reserve(self.cfg.send_batch_size.max(spans.len()));
                }
                buf.extend(spans);
                (buf.len() >= self.cfg.send_batch_size).then(|| std::mem::take(&mut *buf))
            }
        };
        if let Some(batch) = ready {
            add(&self.by_size, 1);
            self.send(batch);
        }
    }
}

impl Flush for BatchStage {
    fn flush(&self) {
        self.send_buffered(None);
    }
}

#[cfg(test)]
mod tests {
    use crate::sidecar::testing::{Recorder, build, context, metric, processor, spans, trace};
    use std::time::Duration;

    #[tokio::test]
    async fn sends_full_batches_at_once_splits_large_ones_and_flushes_the_rest() {
        let (ctx, metrics, _stop) = context();
        let settings = processor("{batch: {send_batch_size: 4, send_batch_max_size: 6, timeout: 1h}}");
        let out = Recorder::new();
        let built = build(&ctx, &settings, "batch", out.clone());
        let flush = built.flush.expect("batch buffers, so it flushes");
        let live = metrics.live();

        built.head.consume(spans("a", &trace(1, 3), &live));
        assert!(out.sizes().is_empty(), "3 < send_batch_size waits");
        built.head.consume(spans("a", &trace(2, 1), &live));
        assert_eq!(out.sizes(), vec![4]);
        // A request larger than the maximum goes at once, in pieces of at most 6.
        built.head.consume(spans("a", &trace(3, 14), &live));
        assert_eq!(out.sizes(), vec![4, 6, 6, 2]);
        built.head.consume(spans("a", &trace(4, 2), &live));
        flush.flush();
        assert_eq!(out.sizes(), vec![4, 6, 6, 2, 2]);
        // In arrival order, nothing lost or repeated.
        let ids = out.ids();
        assert_eq!(ids.len(), 20);
        assert_eq!(ids.first(), Some(&(1, 1)));
        assert_eq!(ids.last(), Some(&(4, 2)));
        // Two sends triggered by size (4, then 14 split in three); five batches sent.
        let l = "{processor=\"batch\"}";
        assert_eq!(
            metric(
                &metrics,
                &format!("otelcol_processor_batch_batch_size_trigger_send_total{l}")
            ),
            2.0
        );
        assert_eq!(
            metric(&metrics, &format!("otelcol_processor_batch_batch_send_size_count{l}")),
            5.0
        );
        assert_eq!(
            metric(&metrics, &format!("otelcol_processor_batch_batch_send_size_sum{l}")),
            20.0
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_batch_goes_after_the_timeout() {
        let (ctx, metrics, _stop) = context();
        let settings = processor("{batch: {send_batch_size: 1000, timeout: 50ms}}");
        let out = Recorder::new();
        let built = build(&ctx, &settings, "batch", out.clone());
        built.head.consume(spans("a", &trace(1, 3), &metrics.live()));
        assert_eq!(out.wait_for(3, Duration::from_secs(5)), 3);
        assert_eq!(out.sizes(), vec![3]);
        assert_eq!(
            metric(
                &metrics,
                "otelcol_processor_batch_timeout_trigger_send_total{processor=\"batch\"}"
            ),
            1.0
        );
    }
}
