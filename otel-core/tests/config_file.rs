//! Declarative configuration (`OTEL_CONFIG_FILE`): each example file in
//! `examples/config/` loads and the pipeline it builds behaves as the file
//! says, against real OTLP receivers; the other `OTEL_*` variables are
//! ignored while a file is set; bad files fail with the path of the problem.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

#[path = "../../otel-export/tests/common/mod.rs"]
mod common;

use opentelemetry::trace::{
    SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_sdk::trace::SimpleSpanProcessor;
use otel_core::Telemetry;
use otel_core::testing::InMemoryExporter;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn example(name: &str) -> String {
    format!("{}/../examples/config/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A receiver on its own runtime: (base URL, what it got).
fn receiver(grpc: bool) -> (String, Arc<common::Received>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let (addr, received) = if grpc {
                common::grpc_sink().await
            } else {
                common::http_sink().await
            };
            tx.send((format!("http://{addr}"), received)).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'static {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| map.get(k).cloned()
}

fn resource_attribute(received: &common::Received, key: &str) -> Option<String> {
    let requests = received.requests.lock().unwrap();
    let resource = requests.first()?.resource_spans.first()?.resource.clone()?;
    resource
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            other => Some(format!("{other:?}")),
        })
}

#[test]
fn otlp_http_example_exports_gzip_protobuf_with_the_files_resource() {
    let (endpoint, received) = receiver(false);
    let handle = Telemetry::from_env()
        .with_env_lookup(vars(&[
            ("OTEL_CONFIG_FILE", &example("otlp-http.yaml")),
            ("OTLP_ENDPOINT", &endpoint),
            ("SERVICE_NAME", "payments"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=billing,service.name=ignored"),
            // Ignored while a file is set.
            ("OTEL_TRACES_SAMPLER", "always_off"),
            ("OTEL_SERVICE_NAME", "not-this"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
        ]))
        .with_globals(false)
        .install()
        .unwrap();
    assert!(handle.warnings().is_empty(), "{:?}", handle.warnings());
    let tracer = handle.tracer("config-test");
    for _ in 0..5 {
        tracer.in_span("charge", |_| {});
    }
    let report = handle.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(report.exported, 5, "{report}");
    assert_eq!(received.span_count(), 5);
    assert_eq!(
        resource_attribute(&received, "service.name").as_deref(),
        Some("payments")
    );
    assert_eq!(resource_attribute(&received, "team").as_deref(), Some("billing"));
    assert_eq!(
        resource_attribute(&received, "deployment.environment.name").as_deref(),
        Some("production")
    );
    assert_eq!(
        received.encodings.lock().unwrap().first().map(String::as_str),
        Some("gzip")
    );
    assert_eq!(
        received.content_types.lock().unwrap().first().map(String::as_str),
        Some("application/x-protobuf")
    );
}

#[test]
fn otlp_grpc_ratio_example_samples_roots_and_follows_parents() {
    let (endpoint, received) = receiver(true);
    let handle = Telemetry::builder()
        .with_config_file(example("otlp-grpc-ratio.yaml"))
        .with_env_lookup(vars(&[("OTLP_GRPC_ENDPOINT", &endpoint), ("SAMPLE_RATIO", "0")]))
        .with_globals(false)
        .install()
        .unwrap();
    let tracer = handle.tracer("config-test");
    // Ratio 0: new traces are dropped...
    for _ in 0..20 {
        tracer.in_span("search", |_| {});
    }
    // ...a caller's sampled decision is followed.
    let remote = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let parent = Context::new().with_remote_span_context(remote);
    let span = tracer.start_with_context("search", &parent);
    // The file's limits: 64 attributes at most, values cut at 2048 characters.
    let cx = parent.with_span(span);
    let span = cx.span();
    for i in 0..100 {
        span.set_attribute(KeyValue::new(format!("k{i}"), "x".repeat(3000)));
    }
    span.end();
    let report = handle.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(report.exported, 1, "{report}");
    assert_eq!(resource_attribute(&received, "service.name").as_deref(), Some("search"));
    let requests = received.requests.lock().unwrap();
    let exported = &requests[0].resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(exported.attributes.len(), 64);
    assert_eq!(exported.dropped_attributes_count, 36);
    let value = match exported.attributes[0].value.as_ref().unwrap().value.as_ref().unwrap() {
        any_value::Value::StringValue(s) => s.len(),
        _ => 0,
    };
    assert_eq!(value, 2048);
}

#[test]
fn composite_rules_example_keeps_checkout_never_health_and_writes_thresholds() {
    let (endpoint, _received) = receiver(false);
    let memory = InMemoryExporter::default();
    let handle = Telemetry::builder()
        .with_config_file(example("composite-rules.yaml"))
        .with_env_lookup(vars(&[("OTLP_ENDPOINT", &endpoint)]))
        .with_span_processor(SimpleSpanProcessor::new(memory.clone()))
        .with_globals(false)
        .install()
        .unwrap();
    let tracer = handle.tracer("config-test");
    let server = |name: &'static str, attributes: Vec<KeyValue>| {
        tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start(&tracer)
    };
    for _ in 0..20 {
        drop(server("GET /healthz", vec![KeyValue::new("url.path", "/healthz")]));
        drop(server(
            "POST /api/checkout",
            vec![KeyValue::new("http.route", "/api/checkout")],
        ));
    }
    for _ in 0..400 {
        drop(server(
            "GET /api/items",
            vec![KeyValue::new("http.route", "/api/items")],
        ));
    }
    handle.force_flush().unwrap();
    let spans = memory.spans();
    let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
    assert_eq!(count("GET /healthz"), 0);
    assert_eq!(count("POST /api/checkout"), 20);
    let items = count("GET /api/items");
    assert!((60..=140).contains(&items), "about a quarter of 400: {items}");
    for s in &spans {
        let th = s.span_context.trace_state().get("ot").unwrap_or_default().to_owned();
        let expected = if s.name == "GET /api/items" { "th:c" } else { "th:0" };
        assert_eq!(th, expected, "{}", s.name);
    }
    handle.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn console_example_installs_and_disabled_installs_nothing() {
    let handle = Telemetry::builder()
        .with_config_file(example("console.yaml"))
        .with_globals(false)
        .install()
        .unwrap();
    assert!(handle.is_enabled());
    assert_eq!(
        handle
            .resource()
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .map(|v| v.to_string())
            .as_deref(),
        Some("dev")
    );
    drop(handle);

    let handle = Telemetry::from_env()
        .with_env_lookup(vars(&[
            ("OTEL_CONFIG_FILE", &example("otlp-http.yaml")),
            ("OTEL_SDK_DISABLED", "true"),
        ]))
        .with_globals(false)
        .install()
        .unwrap();
    assert!(
        !handle.is_enabled(),
        "the file's disabled: ${{OTEL_SDK_DISABLED:-false}}"
    );
}

#[test]
fn code_settings_win_over_the_file() {
    let memory = InMemoryExporter::default();
    let handle = Telemetry::builder()
        .with_config_yaml(
            "file_format: \"1.0\"\nresource:\n  attributes: [{name: service.name, value: from-file}]\ntracer_provider:\n  processors: [{simple: {exporter: {console: }}}]\n  sampler: {always_off: }\n",
        )
        .with_service_name("from-code")
        .with_sampler(otel_sampling::AlwaysOn)
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(memory.clone()))
        .with_globals(false)
        .install()
        .unwrap();
    handle.tracer("t").in_span("work", |_| {});
    handle.force_flush().unwrap();
    assert_eq!(memory.spans().len(), 1, "the sampler from code");
    assert_eq!(
        handle
            .resource()
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .map(|v| v.to_string())
            .as_deref(),
        Some("from-code")
    );
    let _ = handle.provider().map(|p| p.tracer("unused"));
}

#[test]
fn bad_files_fail_install_with_the_path_of_the_problem() {
    let missing = Telemetry::from_env()
        .with_env_lookup(vars(&[("OTEL_CONFIG_FILE", "/nonexistent/otel.yaml")]))
        .with_globals(false)
        .install()
        .unwrap_err();
    assert_eq!(missing.variable(), "OTEL_CONFIG_FILE", "{missing}");

    let dir = std::env::temp_dir().join(format!("otel-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(
        &path,
        "file_format: \"1.0\"\ntracer_provider:\n  processors:\n    - batch:\n        exporter:\n          otlp_http: {compression: brotli}\n",
    )
    .unwrap();
    let bad = Telemetry::builder()
        .with_config_file(path.display().to_string())
        .with_globals(false)
        .install()
        .unwrap_err();
    assert!(
        bad.variable()
            .ends_with("tracer_provider.processors[0].batch.exporter.otlp_http.compression"),
        "{bad}"
    );
    assert_eq!(bad.value(), "brotli");
    assert!(bad.to_string().contains("gzip"), "{bad}");

    // Unknown keys: a warning in lenient mode, an error in strict mode.
    let yaml = "file_format: \"1.0\"\nlogger_provider: {}\ntracer_provider:\n  processors: [{simple: {exporter: {console: }}}]\n";
    let lenient = Telemetry::from_env()
        .with_config_yaml(yaml)
        .with_env_lookup(vars(&[]))
        .with_globals(false)
        .install()
        .unwrap();
    assert_eq!(lenient.warnings().len(), 1);
    assert_eq!(lenient.warnings()[0].variable(), "logger_provider");
    let strict = Telemetry::from_env()
        .strict()
        .with_config_yaml(yaml)
        .with_env_lookup(vars(&[]))
        .with_globals(false)
        .install()
        .unwrap_err();
    assert_eq!(strict.variable(), "logger_provider");
    let _ = std::fs::remove_dir_all(dir);
}
