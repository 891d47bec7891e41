//! `init`: the one-call setup installs the pipeline and the global `tracing`
//! subscriber. One test per process (the global subscriber is set once), so
//! this file holds a single test that walks through what `init` promises.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry_sdk::trace::SimpleSpanProcessor;
use otel_core::testing::InMemoryExporter;
use otel_core::{LogFormat, Telemetry};
use std::collections::HashMap;
use std::time::Duration;
use tracing::Instrument;

#[tracing::instrument(fields(user = %name))]
async fn greet(name: String) -> String {
    tokio::task::yield_now().await;
    helper().await
}

#[tracing::instrument]
async fn helper() -> String {
    tokio::time::sleep(Duration::from_millis(2)).await;
    "hi".to_owned()
}

#[test]
fn init_installs_pipeline_and_subscriber_and_spans_cross_await_and_tasks() {
    let exporter = InMemoryExporter::default();
    let env: HashMap<&str, &str> = [("RUST_LOG", "not a [valid filter")].into_iter().collect();
    let handle = Telemetry::from_env()
        .with_env_lookup(move |k| env.get(k).map(|v| v.to_string()))
        .with_service_name("init-test")
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .with_log_format(LogFormat::Off)
        .init()
        .unwrap();
    // A bad RUST_LOG is a warning (the default filter, `info`, is used).
    assert!(
        handle.warnings().iter().any(|w| w.variable() == "RUST_LOG"),
        "{:?}",
        handle.warnings()
    );
    // A second init finds the global subscriber set.
    let again = Telemetry::builder().without_exporter().with_globals(false).init();
    assert!(again.unwrap_err().is_subscriber_already_set());

    // `debug` spans are below the default `info` filter: not traced.
    drop(tracing::debug_span!("filtered out").entered());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let root = tracing::info_span!("request");
        async {
            let mut tasks = Vec::new();
            for i in 0..4 {
                let span = tracing::info_span!("task", i);
                tasks.push(tokio::spawn(greet(format!("user{i}")).instrument(span)));
            }
            for t in tasks {
                assert_eq!(t.await.unwrap(), "hi");
            }
        }
        .instrument(root)
        .await;
    });
    drop(runtime);
    handle.force_flush().unwrap();
    let spans = exporter.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(spans.len(), 1 + 4 * 3, "{names:?}");
    assert!(!names.contains(&"filtered out"));
    let root = spans.iter().find(|s| s.name == "request").unwrap();
    let trace = root.span_context.trace_id();
    assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));
    for task in spans.iter().filter(|s| s.name == "task") {
        assert_eq!(task.parent_span_id, root.span_context.span_id());
        let greet = spans
            .iter()
            .find(|s| s.name == "greet" && s.parent_span_id == task.span_context.span_id())
            .unwrap();
        let helper = spans
            .iter()
            .find(|s| s.name == "helper" && s.parent_span_id == greet.span_context.span_id())
            .unwrap();
        assert!(helper.end_time.duration_since(helper.start_time).unwrap() >= Duration::from_millis(2));
        assert!(greet.attributes.iter().any(|kv| kv.key.as_str() == "user"));
    }
    handle.shutdown(Duration::from_secs(5)).unwrap();
}
