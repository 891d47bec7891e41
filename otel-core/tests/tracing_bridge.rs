//! The installed pipeline under tracing + tracing-opentelemetry 0.34, unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use otel_core::Telemetry;
use otel_core::testing::{InMemoryExporter, render_trace, tree_shape};
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn tracing_spans_become_one_trace() {
    let exporter = InMemoryExporter::default();
    let handle = Telemetry::builder()
        .with_service_name("bridge")
        .without_exporter()
        .with_span_processor(opentelemetry_sdk::trace::SimpleSpanProcessor::new(exporter.clone()))
        .with_globals(false)
        .install()
        .unwrap();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(handle.tracer("bridge")));
    tracing::subscriber::with_default(subscriber, || {
        let outer = tracing::info_span!("GET /api/products", http.route = "/api/products");
        let _o = outer.enter();
        {
            let inner = tracing::info_span!("SELECT products");
            let _i = inner.enter();
        }
        {
            let cache = tracing::info_span!("cache.get");
            let _c = cache.enter();
        }
    });
    let spans = exporter.spans();
    assert_eq!(spans.len(), 3);
    let trace = spans[0].span_context.trace_id();
    assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));
    let tree = render_trace(&spans, trace);
    let lines = tree_shape(&tree);
    assert_eq!(
        lines,
        ["GET /api/products", "├── SELECT products", "└── cache.get"],
        "{tree}"
    );
    let root = spans.iter().find(|s| s.name == "GET /api/products").unwrap();
    assert!(root.attributes.iter().any(|kv| kv.key.as_str() == "http.route"));
}
