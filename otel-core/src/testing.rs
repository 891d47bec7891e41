//! Test support: an in-memory exporter and a span-tree renderer.
//!
//! ```
//! use otel_core::testing::{InMemoryExporter, render_trace};
//! use opentelemetry::trace::{Tracer, TracerProvider};
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//!
//! let exporter = InMemoryExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
//! let tracer = provider.tracer("t");
//! tracer.in_span("GET /api/products", |_| {
//!     tracer.in_span("auth.verify", |_| {});
//! });
//! let spans = exporter.spans();
//! let tree = render_trace(&spans, spans[0].span_context.trace_id());
//! assert!(tree.starts_with("GET /api/products"));
//! assert!(tree.contains("└── auth.verify"));
//! ```

use opentelemetry::trace::TraceId;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use otel_export::analysis::SpanNode;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Keeps every exported span in memory; clones share the spans.
///
/// Unlike opentelemetry_sdk's `InMemorySpanExporter` (feature `testing`), it
/// keeps the spans when the provider shuts down (the SDK's clears them then,
/// and only its own tests can ask it not to), so a test can shut the
/// pipeline down, which flushes every processor, and then read what arrived.
#[derive(Debug, Clone, Default)]
pub struct InMemoryExporter {
    spans: Arc<Mutex<Vec<SpanData>>>,
}

impl InMemoryExporter {
    /// Every span exported so far, in export order.
    pub fn spans(&self) -> Vec<SpanData> {
        match self.spans.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The distinct trace ids, in first-seen order.
    pub fn trace_ids(&self) -> Vec<TraceId> {
        let mut seen = HashSet::new();
        self.spans()
            .iter()
            .map(|s| s.span_context.trace_id())
            .filter(|t| seen.insert(*t))
            .collect()
    }

    /// Forgets every span.
    pub fn clear(&self) {
        if let Ok(mut s) = self.spans.lock() {
            s.clear();
        }
    }
}

impl SpanExporter for InMemoryExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        match self.spans.lock() {
            Ok(mut s) => s.extend(batch),
            Err(poisoned) => poisoned.into_inner().extend(batch),
        }
        Ok(())
    }
}

/// A duration as the tree shows it: `150ms`, `2.5ms`, `850µs`, `1.25s` (the
/// format every tree of the crate family uses).
pub fn format_duration(d: Duration) -> String {
    otel_export::analysis::format_duration(d)
}

/// Renders the spans of one trace as an indented tree, children ordered by
/// start time. Each line has the span's duration and self time (the time no
/// child covers), `*` marks the spans on the critical path (the chain of work
/// that determined the trace's latency, see [`otel_export::analysis`]), and a
/// last line names the culprit:
///
/// ```text
/// GET /api/products  150ms (self 30ms) *
/// ├── auth.verify  20ms (self 20ms) *
/// └── product.list  100ms (self 60ms) *
///     ├── SELECT products  40ms (self 40ms) *
///     └── cache.get  5.0ms (self 5.0ms)
/// culprit: product.list 40% of 150ms on the critical path
/// ```
///
/// Spans whose parent is not among `spans` (a remote parent, or one not kept)
/// are shown as roots.
pub fn render_trace(spans: &[SpanData], trace_id: TraceId) -> String {
    render_trace_with(spans, trace_id, |s| s.name.to_string())
}

/// The lines of a rendered tree without durations, self times and the culprit
/// line: its shape, for tests (`["GET /api", "└── SELECT"]`).
pub fn tree_shape(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter(|l| !l.starts_with("culprit: "))
        .map(|l| l.rsplit_once("  ").map_or(l, |(label, _)| label))
        .collect()
}

/// [`render_trace`] with a custom label per span.
pub fn render_trace_with(spans: &[SpanData], trace_id: TraceId, label: impl Fn(&SpanData) -> String) -> String {
    render_trace_with_services(spans, trace_id, |_| "", label)
}

/// [`render_trace`] for spans of several services: each line is labelled
/// `[service] name`, and the culprit line names the service.
pub fn render_trace_by_service<'a>(
    spans: &'a [SpanData],
    trace_id: TraceId,
    service: impl Fn(&SpanData) -> &'a str,
) -> String {
    render_trace_with_services(spans, trace_id, &service, |s| format!("[{}] {}", service(s), s.name))
}

/// [`render_trace_by_service`] with a custom label per span.
pub fn render_trace_with_services<'a>(
    spans: &'a [SpanData],
    trace_id: TraceId,
    service: impl Fn(&SpanData) -> &'a str,
    label: impl Fn(&SpanData) -> String,
) -> String {
    let trace: Vec<&SpanData> = spans.iter().filter(|s| s.span_context.trace_id() == trace_id).collect();
    let nodes: Vec<SpanNode<'_>> = trace.iter().map(|s| SpanNode::from_span_data(s, service(s))).collect();
    otel_export::analysis::render_tree(&nodes, |i| label(trace[i]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn span(id: u64, parent: u64, name: &str, start_ms: u64, dur_ms: u64) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_millis(start_ms);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.to_owned().into(),
            start_time: start,
            end_time: start + Duration::from_millis(dur_ms),
            attributes: vec![],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("t").build(),
        }
    }

    #[test]
    fn renders_the_seed_tree() {
        let spans = vec![
            span(5, 3, "cache.get", 60, 5),
            span(1, 0, "GET /api/products", 0, 150),
            span(3, 1, "product.list", 30, 100),
            span(2, 1, "auth.verify", 5, 20),
            span(4, 3, "SELECT products", 35, 40),
        ];
        let expected = "\
GET /api/products  150ms (self 30ms) *
├── auth.verify  20ms (self 20ms) *
└── product.list  100ms (self 60ms) *
    ├── SELECT products  40ms (self 40ms) *
    └── cache.get  5.0ms (self 5.0ms)
culprit: product.list 40% of 150ms on the critical path
";
        assert_eq!(render_trace(&spans, TraceId::from(1)), expected);
        let _ = SystemTime::now();
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(Duration::from_micros(850)), "850µs");
        assert_eq!(format_duration(Duration::from_micros(2500)), "2.5ms");
        assert_eq!(format_duration(Duration::from_millis(150)), "150ms");
        assert_eq!(format_duration(Duration::from_millis(1250)), "1.25s");
    }
}
