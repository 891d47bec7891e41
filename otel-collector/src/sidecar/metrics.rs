//! The collector's own counters, served in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

type GaugeFn = Box<dyn Fn() -> f64 + Send + Sync>;

enum Value {
    Counter(Arc<AtomicU64>),
    Gauge(GaugeFn),
}

struct Entry {
    name: String,
    help: String,
    labels: String,
    value: Value,
}

/// Named counters and gauges with labels.
#[derive(Default)]
pub struct Metrics {
    entries: Mutex<Vec<Entry>>,
    live: Arc<super::wire::LiveBytes>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn label_text(labels: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s
}

impl Metrics {
    /// The collector's account of live span bytes (for the memory limiter).
    pub fn live(&self) -> Arc<super::wire::LiveBytes> {
        self.live.clone()
    }

    /// A counter (registered once per name and labels; the same one is returned again).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<AtomicU64> {
        let labels = label_text(labels);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Entry {
            value: Value::Counter(c),
            ..
        }) = entries.iter().find(|e| e.name == name && e.labels == labels)
        {
            return c.clone();
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

    /// A gauge read when scraped.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let labels = label_text(labels);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.push(Entry {
            name: name.into(),
            help: help.into(),
            labels,
            value: Value::Gauge(Box::new(read)),
        });
    }

    /// The value of a counter, for tests and logs (0 when absent).
    pub fn read(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let labels = label_text(labels);
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .filter(|e| e.name == name && e.labels == labels)
            .map(|e| match &e.value {
                Value::Counter(c) => c.load(Ordering::Relaxed),
                Value::Gauge(g) => g() as u64,
            })
            .sum()
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<&str> = Vec::new();
        for e in entries.iter() {
            if !names.contains(&e.name.as_str()) {
                names.push(&e.name);
            }
        }
        let mut out = String::new();
        for name in names {
            let mut first = true;
            for e in entries.iter().filter(|e| e.name == name) {
                if first {
                    let kind = if matches!(e.value, Value::Counter(_)) {
                        "counter"
                    } else {
                        "gauge"
                    };
                    let _ = writeln!(out, "# HELP {name} {}", e.help);
                    let _ = writeln!(out, "# TYPE {name} {kind}");
                    first = false;
                }
                let v = match &e.value {
                    Value::Counter(c) => c.load(Ordering::Relaxed) as f64,
                    Value::Gauge(g) => g(),
                };
                if e.labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{}}} {v}", e.labels);
                }
            }
        }
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
        let a = m.counter(
            "otelcol_receiver_accepted_spans",
            "Spans accepted.",
            &[("receiver", "otlp"), ("transport", "grpc")],
        );
        add(&a, 3);
        let again = m.counter(
            "otelcol_receiver_accepted_spans",
            "Spans accepted.",
            &[("receiver", "otlp"), ("transport", "grpc")],
        );
        add(&again, 2);
        m.gauge("otelcol_process_memory_rss", "RSS.", &[], || 42.0);
        let text = m.render();
        assert!(
            text.contains("# TYPE otelcol_receiver_accepted_spans counter"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"} 5"),
            "{text}"
        );
        assert!(text.contains("otelcol_process_memory_rss 42"), "{text}");
        assert_eq!(
            m.read(
                "otelcol_receiver_accepted_spans",
                &[("receiver", "otlp"), ("transport", "grpc")]
            ),
            5
        );
    }
}
