//! The collector's own metrics, served in the Prometheus text format through
//! `prometheus-client`: counters (exposed with the `_total` suffix, as the Go
//! Collector's are), gauges, and histograms.
//!
//! Counters on the data path are plain `AtomicU64`s (one relaxed add per
//! batch); the registry reads them at scrape time through a collector and
//! encodes them with `prometheus-client`'s types, so the wire format is the
//! library's, not ours.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The `Content-Type` of what [`Metrics::render`] returns.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type ReadFn = Box<dyn Fn() -> f64 + Send + Sync>;

/// A histogram as another component keeps it: (sum, count, per-bucket
/// counts by upper bound).
pub(crate) type HistogramData = (f64, u64, Vec<(f64, u64)>);
type ReadHistogram = Box<dyn Fn() -> HistogramData + Send + Sync>;

enum Value {
    /// A counter the data path adds to.
    Counter(Arc<AtomicU64>),
    /// A monotonic total read when scraped (kept by another component).
    CounterFn(Box<dyn Fn() -> u64 + Send + Sync>),
    /// A monotonic total in fractions (seconds), read when scraped.
    CounterF64(ReadFn),
    /// A gauge read when scraped.
    Gauge(ReadFn),
    /// A histogram the data path observes.
    Histogram(Histogram),
    /// A histogram another component keeps, read when scraped: (sum,
    /// count, per-bucket counts by upper bound, the last `+Inf`).
    HistogramFn(ReadHistogram),
}

impl Value {
    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) | Value::CounterFn(_) | Value::CounterF64(_) => MetricType::Counter,
            Value::Gauge(_) => MetricType::Gauge,
            Value::Histogram(_) | Value::HistogramFn(_) => MetricType::Histogram,
        }
    }
}

struct Entry {
    name: String,
    help: String,
    labels: Vec<(String, String)>,
    value: Value,
}

/// Every metric, in registration order; encoded at scrape time.
#[derive(Default)]
struct Entries(Mutex<Vec<Entry>>);

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries").finish_non_exhaustive()
    }
}

impl Collector for Entries {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let entries = crate::lock(&self.0);
        let mut names: Vec<&str> = Vec::new();
        for e in entries.iter() {
            if !names.contains(&e.name.as_str()) {
                names.push(&e.name);
            }
        }
        for name in names {
            let mut family = entries.iter().filter(|e| e.name == name).peekable();
            let Some(first) = family.peek() else { continue };
            let mut metric = encoder.encode_descriptor(name, &first.help, None, first.value.metric_type())?;
            for e in family {
                let labelled = metric.encode_family(&e.labels)?;
                match &e.value {
                    Value::Counter(c) => ConstCounter::new(c.load(Ordering::Relaxed)).encode(labelled)?,
                    Value::CounterFn(read) => ConstCounter::new(read()).encode(labelled)?,
                    Value::CounterF64(read) => ConstCounter::new(read()).encode(labelled)?,
                    Value::Gauge(read) => ConstGauge::new(read()).encode(labelled)?,
                    Value::Histogram(h) => h.encode(labelled)?,
                    Value::HistogramFn(read) => {
                        let (sum, count, buckets) = read();
                        let mut labelled = labelled;
                        labelled
                            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Named counters, gauges and histograms with labels, for one collector.
pub struct Metrics {
    entries: Arc<Entries>,
    registry: Registry,
    live: Arc<super::wire::LiveBytes>,
}

impl Default for Metrics {
    fn default() -> Self {
        let entries = Arc::new(Entries::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(entries.clone()));
        Metrics {
            entries,
            registry,
            live: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl Metrics {
    /// The collector's account of live span bytes (for the memory limiter).
    pub fn live(&self) -> Arc<super::wire::LiveBytes> {
        self.live.clone()
    }

    fn push(&self, name: &str, help: &str, labels: Vec<(String, String)>, value: Value) {
        crate::lock(&self.entries.0).push(Entry {
            name: name.into(),
            help: help.into(),
            labels,
            value,
        });
    }

    /// A counter, exposed as `{name}_total` (registered once per name and
    /// labels; the same one is returned again).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<AtomicU64> {
        let labels = owned(labels);
        let mut entries = crate::lock(&self.entries.0);
        let existing = entries.iter().find_map(|e| match &e.value {
            Value::Counter(c) if e.name == name && e.labels == labels => Some(c.clone()),
            _ => None,
        });
        if let Some(c) = existing {
            return c;
        }
        let c = Arc::new(AtomicU64::new(0));
        entries.push(Entry {
            name: name.into(),
            help: help.into(),
            labels,
            value: Value::Counter(c.clone()),
        });
        c
    }

    /// A monotonic total another component keeps, read when scraped and
    /// exposed as the counter `{name}_total`.
    pub fn counter_fn(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.push(name, help, owned(labels), Value::CounterFn(Box::new(read)));
    }

    /// A monotonic total in fractions (seconds), read when scraped and
    /// exposed as the counter `{name}_total`.
    pub fn counter_f64(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.push(name, help, owned(labels), Value::CounterF64(Box::new(read)));
    }

    /// A gauge read when scraped.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.push(name, help, owned(labels), Value::Gauge(Box::new(read)));
    }

    /// A histogram with `buckets` (upper bounds).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: impl IntoIterator<Item = f64>,
    ) -> Histogram {
        let h = Histogram::new(buckets);
        self.push(name, help, owned(labels), Value::Histogram(h.clone()));
        h
    }

    /// A histogram another component keeps, read when scraped: `read`
    /// gives (sum, count, per-bucket counts by upper bound, ending with
    /// `f64::INFINITY`).
    pub fn histogram_fn(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> HistogramData + Send + Sync + 'static,
    ) {
        self.push(name, help, owned(labels), Value::HistogramFn(Box::new(read)));
    }

    /// The value of a counter or gauge, for tests and logs (0 when absent).
    pub fn read(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let labels = owned(labels);
        crate::lock(&self.entries.0)
            .iter()
            .filter(|e| e.name == name && e.labels == labels)
            .map(|e| match &e.value {
                Value::Counter(c) => c.load(Ordering::Relaxed),
                Value::CounterFn(read) => read(),
                Value::CounterF64(read) | Value::Gauge(read) => read() as u64,
                Value::Histogram(_) | Value::HistogramFn(_) => 0,
            })
            .sum()
    }

    /// Everything, in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        let labels = [("receiver", "otlp"), ("transport", "grpc")];
        let a = m.counter("otelcol_receiver_accepted_spans", "Spans accepted.", &labels);
        add(&a, 3);
        let again = m.counter("otelcol_receiver_accepted_spans", "Spans accepted.", &labels);
        add(&again, 2);
        m.counter_fn("otelcol_things", "Things seen.", &[("k", "v\"q")], || 7);
        m.gauge("otelcol_process_memory_rss", "RSS.", &[], || 42.0);
        let h = m.histogram("otelcol_sizes", "Sizes.", &[("processor", "batch")], [10.0, 100.0]);
        h.observe(5.0);
        h.observe(50.0);
        let text = m.render();
        for line in [
            "# TYPE otelcol_receiver_accepted_spans_total counter",
            "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 5",
            "otelcol_things_total{k=\"v\\\"q\"} 7",
            "# TYPE otelcol_process_memory_rss gauge",
            "otelcol_process_memory_rss 42.0",
            "# TYPE otelcol_sizes histogram",
            "otelcol_sizes_bucket{processor=\"batch\",le=\"10\"} 1",
            "otelcol_sizes_bucket{processor=\"batch\",le=\"+Inf\"} 2",
            "otelcol_sizes_count{processor=\"batch\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
        assert_eq!(m.read("otelcol_receiver_accepted_spans", &labels), 5);
    }
}
