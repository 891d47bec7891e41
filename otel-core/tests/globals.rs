//! What `install` puts in the globals, and the span helpers that use them.
//! These tests share the process-wide globals, so they run one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue, global};
use otel_core::spans::{FutureSpanExt, span};
use otel_core::testing::{InMemoryExporter, render_trace, tree_shape};
use otel_core::{Telemetry, TelemetryHandle, in_span, record_error};
use std::collections::HashMap;
use std::sync::Mutex;

static GLOBALS: Mutex<()> = Mutex::new(());

fn install(vars: &[(&str, &str)]) -> (TelemetryHandle, InMemoryExporter) {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let exporter = InMemoryExporter::default();
    let handle = Telemetry::from_env()
        .with_env_lookup(move |k| map.get(k).cloned())
        .without_exporter()
        .with_span_processor(opentelemetry_sdk::trace::SimpleSpanProcessor::new(exporter.clone()))
        .install()
        .unwrap();
    (handle, exporter)
}

fn injected() -> HashMap<String, String> {
    let mut out = HashMap::new();
    global::get_text_map_propagator(|p| p.inject(&mut out));
    out
}

#[test]
fn global_propagator_follows_otel_propagators() {
    let _g = GLOBALS.lock().unwrap_or_else(|e| e.into_inner());
    let (_h, _) = install(&[]);
    in_span("root", |_| {
        let h = injected();
        assert!(h.contains_key("traceparent"), "{h:?}");
        // A trace started here carries the Level 2 random flag.
        assert!(h["traceparent"].ends_with("-03"), "{h:?}");
    });
    let (_h, _) = install(&[("OTEL_PROPAGATORS", "b3multi,baggage")]);
    in_span("root", |_| {
        let h = injected();
        assert!(
            h.contains_key("x-b3-traceid") && !h.contains_key("traceparent"),
            "{h:?}"
        );
    });
    let (_h, _) = install(&[("OTEL_PROPAGATORS", "none")]);
    in_span("root", |_| assert!(injected().is_empty()));
}

#[test]
fn helpers_build_one_trace() {
    let _g = GLOBALS.lock().unwrap_or_else(|e| e.into_inner());
    let (handle, exporter) = install(&[]);
    in_span("GET /api/products", |_| {
        span("auth.verify")
            .kind(SpanKind::Client)
            .attribute(KeyValue::new("rpc.system", "grpc"))
            .in_scope(|_| {});
        in_span("product.list", |cx| {
            let db = span("SELECT products").parent(cx).kind(SpanKind::Client).start();
            db.span().end();
            let failed = span("cache.get").start();
            record_error(&failed, &std::io::Error::other("cache unavailable"));
            failed.span().end();
        });
    });
    let spans = exporter.spans();
    let trace = spans[0].span_context.trace_id();
    let tree = render_trace(&spans, trace);
    let names = tree_shape(&tree);
    assert_eq!(
        names,
        [
            "GET /api/products",
            "├── auth.verify",
            "└── product.list",
            "    ├── SELECT products",
            "    └── cache.get"
        ],
        "{tree}"
    );
    let cache = spans.iter().find(|s| s.name == "cache.get").unwrap();
    assert_eq!(cache.status, Status::error("cache unavailable"));
    let ev = &cache.events[0];
    assert_eq!(ev.name, "exception");
    assert!(
        ev.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "exception.type" && kv.value.as_str().contains("io::error::Error"))
    );
    assert!(
        ev.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "exception.message" && kv.value.as_str() == "cache unavailable")
    );
    drop(handle);
}

#[test]
fn the_future_adapter_keeps_the_span_current_across_awaits() {
    let _g = GLOBALS.lock().unwrap_or_else(|e| e.into_inner());
    let (_handle, exporter) = install(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let outer = span("request").start();
        async {
            tokio::task::yield_now().await;
            // Still current after the await: children attach to it.
            in_span("after-await", |_| {});
            assert!(Context::current().span().span_context().is_valid());
        }
        .in_span_context(outer)
        .await;
    });
    let spans = exporter.spans();
    let request = spans
        .iter()
        .find(|s| s.name == "request")
        .expect("ended when the future completed");
    let child = spans.iter().find(|s| s.name == "after-await").unwrap();
    assert_eq!(child.parent_span_id, request.span_context.span_id());
}
