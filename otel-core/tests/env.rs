//! The environment matrix: every `OTEL_*` variable otel-core honours, read
//! through an injected lookup (no process-wide state), with the pipeline
//! kept out of the globals.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

#[path = "../../otel-export/tests/common/mod.rs"]
mod common;

use opentelemetry::trace::{Span as _, Tracer};
use opentelemetry::{Key, KeyValue};
use otel_core::testing::InMemoryExporter;
use otel_core::{Telemetry, TelemetryBuilder};
use std::collections::HashMap;
use std::time::Duration;

fn with_env(vars: &[(&str, &str)]) -> TelemetryBuilder {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Telemetry::from_env()
        .with_env_lookup(move |k| map.get(k).cloned())
        .with_globals(false)
}

fn memory(vars: &[(&str, &str)]) -> (otel_core::TelemetryHandle, InMemoryExporter) {
    let exporter = InMemoryExporter::default();
    let mut all: Vec<(&str, &str)> = vec![("OTEL_TRACES_EXPORTER", "none")];
    all.extend_from_slice(vars);
    let handle = with_env(&all)
        .with_span_processor(opentelemetry_sdk::trace::SimpleSpanProcessor::new(exporter.clone()))
        .install()
        .unwrap();
    (handle, exporter)
}

#[test]
fn sdk_disabled() {
    let handle = with_env(&[("OTEL_SDK_DISABLED", "true")]).install().unwrap();
    assert!(!handle.is_enabled());
    let handle = with_env(&[("OTEL_SDK_DISABLED", "false"), ("OTEL_TRACES_EXPORTER", "none")])
        .install()
        .unwrap();
    assert!(handle.is_enabled());
}

#[test]
fn service_name_and_resource_attributes() {
    let (handle, _) = memory(&[
        ("OTEL_SERVICE_NAME", "checkout"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=ignored,service.version=2.0,team=pay%20ments",
        ),
    ]);
    let r = handle.resource();
    assert_eq!(
        r.get(&Key::from_static_str("service.name")).unwrap().as_str(),
        "checkout"
    );
    assert_eq!(r.get(&Key::from_static_str("service.version")).unwrap().as_str(), "2.0");
    assert_eq!(r.get(&Key::from_static_str("team")).unwrap().as_str(), "pay ments");
}

#[test]
fn code_beats_env() {
    let exporter = InMemoryExporter::default();
    let handle = with_env(&[("OTEL_SERVICE_NAME", "from-env"), ("OTEL_TRACES_SAMPLER", "always_off")])
        .with_service_name("from-code")
        .with_sampler(otel_core::otel_sampling::AlwaysOn)
        .without_exporter()
        .with_span_processor(opentelemetry_sdk::trace::SimpleSpanProcessor::new(exporter.clone()))
        .install()
        .unwrap();
    assert_eq!(
        handle
            .resource()
            .get(&Key::from_static_str("service.name"))
            .unwrap()
            .as_str(),
        "from-code"
    );
    handle.tracer("t").in_span("kept", |_| {});
    assert_eq!(
        exporter.spans().len(),
        1,
        "the sampler from code wins over OTEL_TRACES_SAMPLER"
    );
}

#[test]
fn samplers_from_env() {
    for (sampler, arg, expect) in [
        ("always_off", None, 0),
        ("always_on", None, 50),
        ("traceidratio", Some("0"), 0),
        ("parentbased_traceidratio", Some("1.0"), 50),
    ] {
        let mut vars = vec![("OTEL_TRACES_SAMPLER", sampler)];
        if let Some(a) = arg {
            vars.push(("OTEL_TRACES_SAMPLER_ARG", a));
        }
        let (handle, exporter) = memory(&vars);
        let tracer = handle.tracer("t");
        for _ in 0..50 {
            tracer.in_span("s", |_| {});
        }
        assert_eq!(exporter.spans().len(), expect, "{sampler}");
    }
}

#[test]
fn span_limits_from_env() {
    let (handle, exporter) = memory(&[
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "1"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3"),
    ]);
    let tracer = handle.tracer("t");
    let mut span = tracer.start("limited");
    span.set_attributes([
        KeyValue::new("a", "abcdef"),
        KeyValue::new("b", 1),
        KeyValue::new("c", 2),
    ]);
    span.add_event("e1", vec![]);
    span.add_event("e2", vec![]);
    span.end();
    let s = &exporter.spans()[0];
    assert_eq!(s.attributes.len(), 2);
    assert_eq!(s.dropped_attributes_count, 1);
    assert_eq!(s.attributes[0].value.as_str(), "abc");
    assert_eq!((s.events.len(), s.events.dropped_count), (1, 1));

    // The general limit applies where no span-specific one is set.
    let (handle, exporter) = memory(&[("OTEL_ATTRIBUTE_COUNT_LIMIT", "1")]);
    let mut span = handle.tracer("t").start("limited");
    span.set_attributes([KeyValue::new("a", 1), KeyValue::new("b", 2)]);
    span.end();
    assert_eq!(exporter.spans()[0].attributes.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_settings_from_env_reach_a_real_receiver() {
    for (protocol, grpc) in [("grpc", true), ("http/protobuf", false), ("http/json", false)] {
        let (addr, received) = if grpc {
            common::grpc_sink().await
        } else {
            common::http_sink().await
        };
        let endpoint = format!("http://{addr}");
        let vars: Vec<(String, String)> = vec![
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), protocol.into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
            ("OTEL_EXPORTER_OTLP_COMPRESSION".into(), "gzip".into()),
            ("OTEL_EXPORTER_OTLP_HEADERS".into(), "x-api-key=secret%20value".into()),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "50".into()),
            ("OTEL_SERVICE_NAME".into(), "env-matrix".into()),
        ];
        let handle = tokio::task::spawn_blocking(move || {
            let map: HashMap<String, String> = vars.into_iter().collect();
            let handle = Telemetry::from_env()
                .strict()
                .with_env_lookup(move |k| map.get(k).cloned())
                .with_globals(false)
                .install()
                .unwrap();
            let tracer = handle.tracer("t");
            for i in 0..25 {
                tracer.in_span(format!("op-{i}"), |_| {});
            }
            handle.shutdown(Duration::from_secs(10)).unwrap();
            handle
        })
        .await
        .unwrap();
        assert_eq!(received.span_count(), 25, "{protocol}");
        assert_eq!(handle.counters().snapshot().exported, 25);
        let req = received.requests.lock().unwrap()[0].clone();
        let resource = req.resource_spans[0].resource.clone().unwrap();
        assert!(resource.attributes.iter().any(|kv| kv.key == "service.name"
            && matches!(&kv.value.as_ref().unwrap().value, Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) if s == "env-matrix")));
        if !grpc {
            assert!(received.encodings.lock().unwrap().iter().all(|e| e == "gzip"));
        }
    }
}

#[test]
fn every_bad_variable_is_a_clear_error_in_strict_mode() {
    let cases: &[(&str, &str, &str)] = &[
        ("OTEL_SDK_DISABLED", "maybe", "true or false"),
        ("OTEL_RESOURCE_ATTRIBUTES", "a=1,broken", "key=value"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "otlp, console, none"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "parentbased_traceidratio"),
        (
            "OTEL_PROPAGATORS",
            "tracecontext,xray",
            "tracecontext, baggage, b3, b3multi, none",
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "5s", "milliseconds"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "-1", "milliseconds"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", ">= 1"),
        (
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            "100000",
            "no larger than the queue size",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "thrift",
            "grpc, http/protobuf, http/json",
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "ten", "milliseconds"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "br", "gzip"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "oops", "key=value"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "yes", "true or false"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/such/ca.pem", "readable PEM file"),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "lots", ">= 1"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-5", ">= 1"),
    ];
    for (var, value, accepted) in cases {
        let err = with_env(&[(var, value)]).strict().install().unwrap_err();
        assert_eq!(err.variable(), *var, "{err}");
        assert_eq!(err.value(), *value, "{err}");
        let text = err.to_string();
        assert!(text.contains(accepted), "{var}: {text}");
        // The default (lenient) mode installs with a warning and the default instead.
        // (OTLP settings are only read when an OTLP exporter is configured.)
        let exporter = if *var == "OTEL_TRACES_EXPORTER" {
            value
        } else if var.starts_with("OTEL_EXPORTER_OTLP") {
            "otlp"
        } else {
            "none"
        };
        let handle = with_env(&[(var, value), ("OTEL_TRACES_EXPORTER", exporter)])
            .install()
            .unwrap_or_else(|e| panic!("{var} lenient: {e}"));
        assert!(handle.warnings().iter().any(|w| w.variable() == *var), "{var} warned");
    }
    let err = with_env(&[
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "2"),
    ])
    .strict()
    .install()
    .unwrap_err();
    assert_eq!(err.variable(), "OTEL_TRACES_SAMPLER_ARG");
}

/// The console exporter is added beside the configured exporter, not instead of it.
#[tokio::test(flavor = "multi_thread")]
async fn console_exporter_prints_beside_otlp() {
    let (addr, received) = common::http_sink().await;
    let endpoint = format!("http://{addr}");
    let handle = tokio::task::spawn_blocking(move || {
        let handle = Telemetry::from_env()
            .with_env_lookup(move |k| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| endpoint.clone()))
            .with_console_exporter()
            .with_globals(false)
            .install()
            .unwrap();
        handle.tracer("t").in_span("printed and exported", |_| {});
        handle.shutdown(Duration::from_secs(10)).unwrap();
        handle
    })
    .await
    .unwrap();
    assert_eq!(received.span_count(), 1);
    assert_eq!(handle.counters().snapshot().exported, 1);
}
