//! Configurations as users deploy them: the seeds validate, bad ones fail
//! with the place and the reason, `${env:VAR}` expands.

use crate::proc::*;

// --- configurations as users deploy them ---------------------------------------

const SEED_K3S: &str = include_str!("../../../examples/collector/k3s.yaml");

const SEED_GATEWAY: &str = include_str!("../../../examples/collector/gateway.yaml");

const SEED_AGENT: &str = include_str!("../../../examples/collector/agent.yaml");

const SEED_SRE: &str = include_str!("../../../examples/collector/sre.yaml");

const PRODUCTION: &str = include_str!("../../../examples/collector/production.yaml");

const SEED_WITH_JAEGER: &str = include_str!("../../../examples/collector/with-jaeger-exporter.yaml");

#[test]
fn seed_configurations_validate() {
    let dir = scratch("validate");
    for (name, yaml) in [
        ("k3s", SEED_K3S),
        ("gateway", SEED_GATEWAY),
        ("agent", SEED_AGENT),
        ("sre", SEED_SRE),
    ] {
        let (ok, out) = validate(&dir, yaml);
        assert!(ok, "{name}: {out}");
        assert!(out.contains("valid"), "{name}: {out}");
    }
    // The jaeger exporter is gone upstream: a clear error that says what to use.
    let (ok, out) = validate(&dir, SEED_WITH_JAEGER);
    assert!(!ok);
    assert!(out.contains("exporters.jaeger"), "{out}");
    assert!(out.contains("Jaeger accepts OTLP") && out.contains("4317"), "{out}");
    // The same document with the jaeger exporter replaced as the message says validates.
    let fixed = SEED_WITH_JAEGER
        .replace(
            "  jaeger:\n    endpoint: jaeger-collector.monitoring:14250",
            "  otlp/jaeger:\n    endpoint: jaeger-collector.monitoring:4317",
        )
        .replace("[otlp/tempo, jaeger]", "[otlp/tempo, otlp/jaeger]");
    let (ok, out) = validate(&dir, &fixed);
    assert!(ok, "{out}");
}

/// A Go-style production configuration (TLS, auth, redaction,
/// probabilistic_sampler, tail sampling, queue and retry settings, telemetry)
/// validates with no warning: every key in it acts.
#[test]
fn a_go_style_production_configuration_validates_without_warnings() {
    let dir = scratch("production");
    let (ok, out) = validate(&dir, PRODUCTION);
    assert!(ok, "{out}");
    assert!(out.contains("valid"), "{out}");
    assert!(!out.to_lowercase().contains("warn"), "{out}");
}

#[test]
fn bad_configurations_fail_validation_with_the_place_and_the_reason() {
    let dir = scratch("invalid");
    let cases = [
        (
            SEED_K3S.replace("exporters: [otlp/tempo]", "exporters: [otlp/tmepo]"),
            "service.pipelines.traces.exporters[0]",
        ),
        (
            SEED_K3S.replace("threshold_ms: 1000", "threshold_ms: fast"),
            "tail_sampling.policies[1].latency.threshold_ms",
        ),
        (SEED_K3S.replace("limit_mib: 512", "limit_mib: 0"), "memory_limiter"),
        (
            SEED_K3S.replace("timeout: 5s", "timeout: 5"),
            "processors.batch.timeout",
        ),
        (
            SEED_K3S.replace(
                "otlp/tempo:\n    endpoint: tempo:4317",
                "logging:\n    endpoint: tempo:4317",
            ),
            "use `debug` instead",
        ),
        (
            SEED_K3S.replace("pipelines:\n    traces:", "pipelines:\n    metrics:"),
            "this collector handles traces",
        ),
        ("receivers: [".to_owned(), "(yaml)"),
        (
            SEED_K3S.replace("endpoint: 0.0.0.0:4317", "endpoint: 0.0.0.0:99999"),
            "receivers.otlp.protocols.grpc.endpoint: \"0.0.0.0:99999\" has port \"99999\"",
        ),
        (
            SEED_K3S.replace("endpoint: 0.0.0.0:4318", "endpoint: 0.0.0.0"),
            "receivers.otlp.protocols.http.endpoint: \"0.0.0.0\" has no port",
        ),
        (
            SEED_K3S.replace("endpoint: 0.0.0.0:4318", "endpoint: http://0.0.0.0:4318"),
            "is a URL",
        ),
    ];
    for (yaml, expected) in cases {
        let (ok, out) = validate(&dir, &yaml);
        assert!(!ok, "accepted: {yaml}");
        assert!(out.contains(expected), "{expected:?} not in: {out}");
    }
}

#[test]
fn environment_variables_expand() {
    let dir = scratch("env");
    let yaml = SEED_AGENT
        .replace(
            "otel-gateway-collector.observability.svc:4317",
            "${env:GATEWAY_ENDPOINT}",
        )
        .replace("limit_mib: 300", "limit_mib: ${env:LIMIT_MIB}")
        .replace("send_batch_size: 4096", "send_batch_size: ${env:BATCH_SIZE:-4096}");
    let config = dir.join("env.yaml");
    std::fs::write(&config, yaml).unwrap();
    let run = |limit: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_otel-collector"))
            .arg("--config")
            .arg(&config)
            .arg("--validate")
            .env("GATEWAY_ENDPOINT", "gateway:4317")
            .env("LIMIT_MIB", limit)
            .output()
            .unwrap()
    };
    assert!(run("300").status.success());
    let bad = run("lots");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("limit_mib"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
