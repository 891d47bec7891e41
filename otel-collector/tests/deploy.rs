#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! The Kubernetes manifests in `deploy/` and the sample configurations in
//! `examples/collector/`: every manifest parses, every embedded collector
//! configuration passes `otel-collector --validate`, and the pieces agree
//! (probes on the health port, memory limits above the limiter, the agents'
//! resolver naming the gateway's headless Service).

mod proc;

use proc::repo;
use serde_json::Value;
use std::path::Path;

fn documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn validate(config: &str, env: &[(&str, &str)]) -> (bool, String) {
    proc::validate_with_env(&proc::scratch("deploy"), config, env)
}

fn mib(quantity: &str) -> u64 {
    let (n, unit) = quantity.split_at(quantity.find(|c: char| !c.is_ascii_digit()).unwrap_or(quantity.len()));
    let n: u64 = n.parse().unwrap();
    match unit {
        "Mi" => n,
        "Gi" => n * 1024,
        other => panic!("unexpected unit {other}"),
    }
}

#[test]
fn manifests_parse_and_their_collector_configs_validate() {
    let dir = repo().join("deploy");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            for d in documents(&path) {
                docs.push((path.clone(), d));
            }
        }
    }
    assert!(docs.len() >= 7, "{} documents", docs.len());
    let mut configs = std::collections::HashMap::new();
    for (path, d) in &docs {
        for key in ["apiVersion", "kind"] {
            assert!(d[key].is_string(), "{}: a document without {key}", path.display());
        }
        assert!(
            d["metadata"]["name"].is_string(),
            "{}: a document without metadata.name",
            path.display()
        );
        if d["kind"] == "ConfigMap" {
            for (key, text) in d["data"].as_object().unwrap() {
                let text = text.as_str().unwrap();
                let (ok, out) = validate(text, &[("TEMPO_ENDPOINT", "tempo:4317"), ("K8S_NODE_NAME", "node-1")]);
                assert!(ok, "{} {key}: {out}", path.display());
                configs.insert(
                    d["metadata"]["name"].as_str().unwrap().to_owned(),
                    serde_yaml_ng::from_str::<Value>(text).unwrap(),
                );
            }
        }
    }
    let find = |kind: &str, name: &str| {
        docs.iter()
            .map(|(_, d)| d)
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
    };
    for (workload, kind, config) in [
        ("otel-gateway", "Deployment", "otel-gateway-config"),
        ("otel-agent", "DaemonSet", "otel-agent-config"),
    ] {
        let w = find(kind, workload);
        let pod = &w["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        // The config comes from its ConfigMap, mounted where --config points.
        assert_eq!(pod["volumes"][0]["configMap"]["name"], config);
        let mount = c["volumeMounts"][0]["mountPath"].as_str().unwrap();
        assert!(
            c["args"][0]
                .as_str()
                .unwrap()
                .starts_with(&format!("--config={mount}/"))
        );
        // Probes hit the health_check extension's port.
        let cfg = &configs[config];
        let health_port: u64 = cfg["extensions"]["health_check"]["endpoint"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let named = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "health")
            .unwrap();
        assert_eq!(named["containerPort"].as_u64(), Some(health_port));
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(c[probe]["httpGet"]["port"], "health", "{workload} {probe}");
        }
        // The memory limiter's hard limit sits below the container's limit.
        let limit = mib(c["resources"]["limits"]["memory"].as_str().unwrap());
        let limiter = cfg["processors"]["memory_limiter"]["limit_mib"].as_u64().unwrap();
        assert!(
            limiter < limit,
            "{workload}: limit_mib {limiter} vs container {limit} Mi"
        );
        assert!(c["resources"]["requests"].is_object());
        // Enough grace to drain on SIGTERM.
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        let drain: u64 = c["args"][1]
            .as_str()
            .unwrap()
            .trim_start_matches("--shutdown-timeout=")
            .trim_end_matches('s')
            .parse()
            .unwrap();
        assert!(grace > drain, "{workload}: grace {grace}s, drain {drain}s");
    }
    // The agents resolve the gateway's headless Service.
    let headless = find("Service", "otel-gateway-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let resolver = &configs["otel-agent-config"]["exporters"]["loadbalancing"]["resolver"]["dns"];
    let host = resolver["hostname"].as_str().unwrap();
    assert!(host.starts_with("otel-gateway-headless.observability."), "{host}");
    assert_eq!(resolver["port"], headless["spec"]["ports"][0]["port"]);
    // The application gets what otel-core's resource detection reads.
    let app = find("Deployment", "checkout");
    let env: Vec<&str> = app["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for var in [
        "K8S_POD_NAME",
        "K8S_NAMESPACE_NAME",
        "K8S_NODE_NAME",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(env.contains(&var), "checkout lacks {var}");
    }
}

#[test]
fn sample_collector_configs_validate() {
    for entry in std::fs::read_dir(repo().join("examples/collector")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let (ok, out) = validate(&text, &[]);
        if path.file_name().is_some_and(|n| n == "with-jaeger-exporter.yaml") {
            assert!(!ok && out.contains("Jaeger accepts OTLP"), "{out}");
        } else {
            assert!(ok, "{}: {out}", path.display());
        }
    }
}

/// The `otelcol_*` names in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("otelcol_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

#[test]
fn dashboards_and_alerts_read_metrics_the_collector_exposes() {
    let dir = repo().join("deploy");
    let docs = documents(&dir.join("monitoring.yaml"));
    let rules = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let mut exprs: Vec<String> = rules["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["expr"].as_str().unwrap().to_owned())
        .collect();
    // The alerts the seeds ask for are there.
    let all = exprs.join("\n");
    for needed in [
        "otelcol_exporter_send_failed_spans_total",
        "otelcol_processor_refused_spans_total",
        "otelcol_exporter_queue_size",
    ] {
        assert!(all.contains(needed), "no alert reads {needed}");
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap()).unwrap();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    // The PodMonitor scrapes a port both workloads name.
    let monitor = docs.iter().find(|d| d["kind"] == "PodMonitor").expect("a PodMonitor");
    let port = monitor["spec"]["podMetricsEndpoints"][0]["port"].as_str().unwrap();
    for file in ["gateway.yaml", "agent.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            text.contains(&format!("name: {port}, containerPort")),
            "{file} names no {port} port"
        );
    }

    // A collector with every component the rules and panels read.
    let scratch = proc::scratch("monitoring");
    let (grpc, metrics) = (proc::free_port("127.0.0.1"), proc::free_port("127.0.0.1"));
    let yaml = format!(
        r#"
extensions:
  bearertokenauth: {{token: t}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}, auth: {{authenticator: bearertokenauth}}}}
processors:
  memory_limiter: {{limit_mib: 4000}}
  tail_sampling:
    decision_wait: 1s
    policies: [{{name: all, type: always_sample}}]
  batch: {{}}
exporters:
  otlp: {{endpoint: 127.0.0.1:1, tls: {{insecure: true}}}}
service:
  extensions: [bearertokenauth]
  telemetry:
    metrics: {{address: 127.0.0.1:{metrics}}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, tail_sampling, batch]
      exporters: [otlp]
"#
    );
    let _c = proc::collector("monitoring", &scratch, &yaml, "127.0.0.1", &[grpc, metrics]);
    let sent = proc::send_with_python(&[
        "--grpc".into(),
        format!("127.0.0.1:{grpc}"),
        "--header".into(),
        "authorization=Bearer t".into(),
        "--traces".into(),
        "10".into(),
    ]);
    let spans: usize = sent.iter().map(|(_, _, n)| n).sum();
    proc::eventually("the traces decided", std::time::Duration::from_secs(10), || {
        proc::metric(
            &proc::scrape(metrics),
            "otelcol_processor_tail_sampling_global_count_traces_sampled_total",
            &[("decision", "sampled")],
        ) >= 10.0
    });
    let exposed = proc::scrape(metrics);

    // A real Prometheus text-format parser (prometheus_client's, from PyPI) reads it all.
    let parsed = {
        use std::io::Write as _;
        let mut child = std::process::Command::new(proc::python())
            .args([
                "-c",
                "import sys, json\n\
from prometheus_client.parser import text_string_to_metric_families as parse\n\
out = {f.name: {'type': f.type, 'samples': [[s.name, s.labels, s.value] for s in f.samples]} for f in parse(sys.stdin.read())}\n\
print(json.dumps(out))",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(exposed.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let family = |name: &str| &parsed[name];
    assert_eq!(family("otelcol_receiver_accepted_spans")["type"], "counter", "{parsed}");
    let accepted = &family("otelcol_receiver_accepted_spans")["samples"][0];
    assert_eq!(accepted[0], "otelcol_receiver_accepted_spans_total");
    assert_eq!(accepted[2].as_f64(), Some(spans as f64));
    for (name, kind) in [
        ("otelcol_exporter_queue_size", "gauge"),
        ("otelcol_exporter_queue_capacity", "gauge"),
        ("otelcol_exporter_send_failed_spans", "counter"),
        ("otelcol_processor_refused_spans", "counter"),
        ("otelcol_processor_batch_batch_send_size", "histogram"),
        ("otelcol_processor_tail_sampling_count_traces_sampled", "counter"),
        ("otelcol_processor_tail_sampling_global_count_traces_sampled", "counter"),
        ("otelcol_processor_tail_sampling_new_trace_id_received", "counter"),
        ("otelcol_processor_tail_sampling_sampling_traces_on_memory", "gauge"),
        ("otelcol_processor_tail_sampling_sampling_decision_latency", "histogram"),
        ("otelcol_process_cpu_seconds", "counter"),
        ("otelcol_process_memory_rss", "gauge"),
    ] {
        assert_eq!(family(name)["type"], kind, "{name} in {parsed}");
    }
    let votes = family("otelcol_processor_tail_sampling_count_traces_sampled")["samples"]
        .as_array()
        .unwrap();
    assert!(
        votes
            .iter()
            .any(|s| s[1]["policy"] == "all" && s[1]["decision"] == "sampled")
    );
    // Each policy's evaluations are timed: the histogram counts them all.
    let latency = family("otelcol_processor_tail_sampling_sampling_decision_latency")["samples"]
        .as_array()
        .unwrap();
    let evaluated = latency
        .iter()
        .find(|s| s[0] == "otelcol_processor_tail_sampling_sampling_decision_latency_count" && s[1]["policy"] == "all")
        .unwrap_or_else(|| panic!("{latency:?}"));
    assert!(evaluated[2].as_f64().unwrap() >= 1.0, "{evaluated}");
    let families: Vec<&str> = exposed
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in metric_names(&exprs.join("\n")) {
        let family = name.strip_suffix("_bucket").unwrap_or(&name);
        assert!(
            families.contains(&family),
            "{name} is read by deploy/ but not exposed; exposed: {families:?}"
        );
    }
}
