#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! The `otel-collector` binary with real components: the Python
//! OpenTelemetry SDK as the client, a second instance with a `file`
//! exporter and rotel as receivers, three backends behind a `loadbalancing`
//! instance, SIGTERM with traces buffered, malformed input.

mod proc;

use proc::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

// --- configurations as users deploy them ---------------------------------------

const SEED_K3S: &str = include_str!("../../examples/collector/k3s.yaml");

const SEED_GATEWAY: &str = include_str!("../../examples/collector/gateway.yaml");

const SEED_AGENT: &str = include_str!("../../examples/collector/agent.yaml");

const SEED_SRE: &str = include_str!("../../examples/collector/sre.yaml");

const SEED_WITH_JAEGER: &str = include_str!("../../examples/collector/with-jaeger-exporter.yaml");

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

// --- end to end with the Python SDK, a second instance and rotel ------------------

fn file_sink(dir: &std::path::Path, name: &str) -> (Proc, u16, std::path::PathBuf) {
    let port = free_port("127.0.0.1");
    let path = dir.join(format!("{name}.jsonl"));
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  file:
    path: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#,
        path.display()
    );
    (collector(name, dir, &yaml, "127.0.0.1", &[port]), port, path)
}

#[test]
fn python_traces_are_tail_sampled_and_exported_whole() {
    let dir = scratch("e2e");
    let (mut sink_b, b_port, b_file) = file_sink(&dir, "b");
    let (mut sink_c, c_port, c_file) = file_sink(&dir, "c");

    // rotel, an independent collector, forwarding to C.
    let (rotel_grpc, rotel_http) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let rotel_log = dir.join("rotel.log");
    let rotel = std::process::Command::new(rotel_agent())
        .args(["start", "--otlp-grpc-endpoint", &format!("127.0.0.1:{rotel_grpc}")])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{rotel_http}")])
        .args([
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            &format!("http://127.0.0.1:{c_port}"),
        ])
        .args(["--batch-timeout", "100ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(std::fs::File::create(&rotel_log).unwrap()))
        .spawn()
        .expect("start rotel-agent");
    let mut rotel = Proc {
        child: rotel,
        name: "rotel".into(),
        log: rotel_log,
    };
    wait_for_port("127.0.0.1", rotel_grpc, "rotel");

    let (grpc, http, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1"));
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  memory_limiter:
    check_interval: 100ms
    limit_mib: 512
  tail_sampling:
    decision_wait: 500ms
    policies:
      - name: errors
        type: status_code
        status_code: {{status_codes: [ERROR]}}
      - name: slow
        type: latency
        latency: {{threshold_ms: 1000}}
      - name: some
        type: probabilistic
        probabilistic: {{sampling_percentage: 20, hash_salt: e2e}}
  batch:
    timeout: 100ms
exporters:
  otlp/b:
    endpoint: 127.0.0.1:{b_port}
    tls: {{insecure: true}}
  otlp/rotel:
    endpoint: 127.0.0.1:{rotel_grpc}
    tls: {{insecure: true}}
    compression: none
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, tail_sampling, batch]
      exporters: [otlp/b, otlp/rotel]
"#
    );
    let mut a = collector("a", &dir, &yaml, "127.0.0.1", &[grpc, http, metrics]);

    let n = 300;
    let mut sent = send_with_python(&[
        "--grpc".into(),
        format!("127.0.0.1:{grpc}"),
        "--traces".into(),
        n.to_string(),
        "--service".into(),
        "py-grpc".into(),
        "--seed".into(),
        "1".into(),
    ]);
    sent.extend(send_with_python(&[
        "--http".into(),
        format!("http://127.0.0.1:{http}/v1/traces"),
        "--traces".into(),
        n.to_string(),
        "--service".into(),
        "py-http".into(),
        "--seed".into(),
        "2".into(),
    ]));
    let total_spans: usize = sent.iter().map(|s| s.2).sum();
    assert_eq!(sent.len(), 2 * n);

    // Every span received, every trace decided and delivered.
    eventually("decisions and exports", Duration::from_secs(30), || {
        let m = scrape(metrics);
        let received = metric(&m, "otelcol_processor_tail_sampling_spans_received", &[]);
        let buffered = metric(&m, "otelcol_processor_tail_sampling_spans_buffered", &[]);
        let kept = metric(&m, "otelcol_processor_tail_sampling_spans_sampled", &[]);
        let sent_b = metric(&m, "otelcol_exporter_sent_spans", &[("exporter", "otlp/b")]);
        let sent_r = metric(&m, "otelcol_exporter_sent_spans", &[("exporter", "otlp/rotel")]);
        received as usize == total_spans && buffered == 0.0 && sent_b == kept && sent_r == kept
    });
    let m = scrape(metrics);
    let accepted = metric(&m, "otelcol_receiver_accepted_spans", &[]);
    let kept = metric(&m, "otelcol_processor_tail_sampling_spans_sampled", &[]);
    let dropped = metric(&m, "otelcol_processor_tail_sampling_spans_not_sampled", &[]);
    assert_eq!(accepted as usize, total_spans);
    assert_eq!(
        (kept + dropped) as usize,
        total_spans,
        "received = kept + dropped by policy"
    );
    assert_eq!(metric(&m, "otelcol_exporter_send_failed_spans", &[]), 0.0);
    assert_eq!(metric(&m, "otelcol_receiver_refused_spans", &[]), 0.0);

    // What B wrote: error and slow traces whole, about 20% of the rest, nothing partial.
    let expected: HashMap<&str, (&str, usize)> = sent.iter().map(|(t, k, s)| (t.as_str(), (k.as_str(), *s))).collect();
    eventually("B's file", Duration::from_secs(10), || {
        read_file_export(&b_file).values().map(Vec::len).sum::<usize>() == kept as usize
    });
    let got = read_file_export(&b_file);
    let mut routine = (0usize, 0usize);
    for (trace, (kind, spans)) in &expected {
        let n_got = got.get(*trace).map_or(0, Vec::len);
        assert!(
            n_got == 0 || n_got == *spans,
            "trace {trace} ({kind}) arrived partially: {n_got} of {spans}"
        );
        match *kind {
            "error" | "slow" => assert_eq!(n_got, *spans, "{kind} trace {trace} must be kept whole"),
            _ => {
                routine.0 += 1;
                routine.1 += usize::from(n_got > 0);
            }
        }
    }
    assert!(
        got.keys().all(|t| expected.contains_key(t.as_str())),
        "B holds traces nobody sent"
    );
    let (all, kept_routine) = (routine.0 as f64, routine.1 as f64);
    let sd = (all * 0.2 * 0.8).sqrt();
    assert!(
        (kept_routine - all * 0.2).abs() < 5.0 * sd,
        "kept {kept_routine} of {all} routine traces at 20%"
    );

    // rotel received the same spans and passed them to C.
    eventually("C's file (through rotel)", Duration::from_secs(20), || {
        read_file_export(&c_file).values().map(Vec::len).sum::<usize>() >= kept as usize
    });
    let via_rotel = read_file_export(&c_file);
    let norm = |m: &HashMap<String, Vec<String>>| -> HashSet<(String, String)> {
        m.iter()
            .flat_map(|(t, ss)| ss.iter().map(move |s| (t.clone(), s.clone())))
            .collect()
    };
    assert_eq!(norm(&via_rotel), norm(&got));

    for p in [&mut a, &mut sink_b, &mut sink_c] {
        p.signal("TERM");
        assert!(
            p.wait_exit(Duration::from_secs(30)).success(),
            "{} log:\n{}",
            p.name,
            p.log_text()
        );
    }
    let _ = rotel.child.kill();
}

#[test]
fn sigterm_decides_and_exports_buffered_traces() {
    let dir = scratch("sigterm");
    let (mut sink, sink_port, sink_file) = file_sink(&dir, "sink");
    let grpc = free_port("127.0.0.1");
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  tail_sampling:
    decision_wait: 120s
    policies:
      - name: errors
        type: status_code
        status_code: {{status_codes: [ERROR]}}
      - name: slow
        type: latency
        latency: {{threshold_ms: 1000}}
  batch:
    timeout: 60s
    send_batch_size: 100000
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink_port}
    tls: {{insecure: true}}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling, batch]
      exporters: [otlp]
"#
    );
    let mut a = collector("a", &dir, &yaml, "127.0.0.1", &[grpc]);
    let sent = send_with_python(&[
        "--grpc".into(),
        format!("127.0.0.1:{grpc}"),
        "--traces".into(),
        "200".into(),
    ]);
    // Nothing is decided for two minutes; SIGTERM now.
    std::thread::sleep(Duration::from_millis(300));
    assert!(read_file_export(&sink_file).is_empty());
    a.signal("TERM");
    assert!(a.wait_exit(Duration::from_secs(30)).success(), "log:\n{}", a.log_text());
    assert!(a.log_text().contains("SIGTERM"), "{}", a.log_text());
    eventually("the sink's file", Duration::from_secs(10), || {
        !read_file_export(&sink_file).is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    let got = read_file_export(&sink_file);
    for (trace, kind, spans) in &sent {
        let n = got.get(trace).map_or(0, Vec::len);
        match kind.as_str() {
            "error" | "slow" => assert_eq!(n, *spans, "{kind} trace {trace}"),
            _ => assert_eq!(n, 0, "routine trace {trace} kept"),
        }
    }
    sink.signal("TERM");
    assert!(sink.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn load_balancing_sends_each_trace_to_one_backend() {
    let dir = scratch("lb");
    let hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let mut backends = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let (port, metrics) = (free_port(host), free_port("127.0.0.1"));
        let file = dir.join(format!("backend{i}.jsonl"));
        let yaml = format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{port}
processors:
  tail_sampling:
    decision_wait: 1s
    policies: [{{name: all, type: always_sample}}]
exporters:
  file:
    path: {}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [file]
"#,
            file.display()
        );
        let p = collector(&format!("backend{i}"), &dir, &yaml, host, &[port]);
        backends.push((p, format!("{host}:{port}"), file, metrics));
    }
    let grpc = free_port("127.0.0.1");
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
    timeout: 50ms
    send_batch_size: 64
exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        tls:
          insecure: true
        compression: gzip
    resolver:
      static:
        hostnames: [{}]
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [loadbalancing]
"#,
        backends.iter().map(|b| b.1.clone()).collect::<Vec<_>>().join(", ")
    );
    let mut lb = collector("lb", &dir, &yaml, "127.0.0.1", &[grpc]);
    // Requests of 7 spans cut 5-span traces across requests.
    let sent = send_with_python(&[
        "--grpc".into(),
        format!("127.0.0.1:{grpc}"),
        "--traces".into(),
        "300".into(),
        "--spans".into(),
        "5".into(),
        "--batch".into(),
        "7".into(),
    ]);
    let total: usize = sent.iter().map(|s| s.2).sum();
    eventually("every span at a backend", Duration::from_secs(30), || {
        backends
            .iter()
            .map(|b| read_file_export(&b.2).values().map(Vec::len).sum::<usize>())
            .sum::<usize>()
            == total
    });
    let files: Vec<HashMap<String, Vec<String>>> = backends.iter().map(|b| read_file_export(&b.2)).collect();
    for (trace, _, spans) in &sent {
        let holders: Vec<usize> = (0..files.len()).filter(|i| files[*i].contains_key(trace)).collect();
        assert_eq!(holders.len(), 1, "trace {trace} went to backends {holders:?}");
        assert_eq!(files[holders[0]][trace].len(), *spans, "trace {trace} incomplete");
    }
    // Each backend decided its traces once, and the ring spread them.
    let mut decided = 0.0;
    for (i, b) in backends.iter().enumerate() {
        let m = scrape(b.3);
        let traces = metric(&m, "otelcol_processor_tail_sampling_traces_received", &[]);
        assert!(traces > 30.0, "backend {i} got only {traces} traces");
        decided += metric(&m, "otelcol_processor_tail_sampling_traces_sampled", &[])
            + metric(&m, "otelcol_processor_tail_sampling_traces_not_sampled", &[]);
        assert_eq!(
            metric(&m, "otelcol_processor_tail_sampling_late_spans_sampled", &[]),
            0.0,
            "backend {i}"
        );
    }
    assert_eq!(decided as usize, sent.len(), "every trace decided exactly once");
    lb.signal("TERM");
    assert!(lb.wait_exit(Duration::from_secs(30)).success());
    for (mut p, ..) in backends {
        p.signal("TERM");
        assert!(p.wait_exit(Duration::from_secs(30)).success());
    }
}

// --- bad input -----------------------------------------------------------------------

fn post(port: u16, path: &str, content_type: &str, encoding: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(e) = encoding {
        req.push_str(&format!("content-encoding: {e}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    http("127.0.0.1", port, &bytes)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn grpc_export(port: u16, body: Vec<u8>) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(bytes::Bytes::from(body)),
        http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
        otel_export::RawCodec,
    )
    .await
    .map(|_| ())
}

/// A valid request: one span of trace `n`.
fn one_span_request(n: u8) -> Vec<u8> {
    use otel_export::wire::{put_bytes, put_fixed64};
    let mut span = Vec::new();
    put_bytes(&mut span, 1, &[n; 16]);
    put_bytes(&mut span, 2, &[n; 8]);
    put_bytes(&mut span, 5, b"op");
    put_fixed64(&mut span, 7, 1_000);
    put_fixed64(&mut span, 8, 2_000);
    let mut scope_spans = Vec::new();
    put_bytes(&mut scope_spans, 2, &span);
    let mut rs = Vec::new();
    put_bytes(&mut rs, 1, &[]);
    put_bytes(&mut rs, 2, &scope_spans);
    let mut req = Vec::new();
    put_bytes(&mut req, 1, &rs);
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_requests_are_refused_without_harm() {
    let dir = scratch("malformed");
    let (grpc, http_port, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1"));
    let out = dir.join("out.jsonl");
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        max_recv_msg_size_mib: 1
      http:
        endpoint: 127.0.0.1:{http_port}
        max_request_body_size: 100000
exporters:
  file:
    path: {}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#,
        out.display()
    );
    let mut c =
        tokio::task::spawn_blocking(move || collector("c", &dir, &yaml, "127.0.0.1", &[grpc, http_port, metrics]))
            .await
            .unwrap();

    let results = tokio::task::spawn_blocking(move || {
        let garbage = b"\x0a\xff\xff\xff\xff\x0f not protobuf".to_vec();
        let mut truncated_gzip = gzip(&one_span_request(1));
        truncated_gzip.truncate(truncated_gzip.len() / 2);
        // 50 MB of zeros, 50 kB compressed: decompression stops at the limit.
        let bomb = gzip(&vec![0u8; 50 << 20]);
        let mut bad_id = one_span_request(2);
        let pos = bad_id.windows(16).position(|w| w == [2u8; 16]).unwrap();
        bad_id[pos..pos + 16].fill(0);
        vec![
            (
                "garbage protobuf",
                post(http_port, "/v1/traces", "application/x-protobuf", None, &garbage).0,
                400,
            ),
            (
                "garbage json",
                post(
                    http_port,
                    "/v1/traces",
                    "application/json",
                    None,
                    b"{\"resourceSpans\": 7",
                )
                .0,
                400,
            ),
            (
                "all-zero trace id",
                post(http_port, "/v1/traces", "application/x-protobuf", None, &bad_id).0,
                400,
            ),
            (
                "wrong content type",
                post(http_port, "/v1/traces", "text/plain", None, b"hello").0,
                415,
            ),
            (
                "unknown encoding",
                post(http_port, "/v1/traces", "application/x-protobuf", Some("br"), b"x").0,
                400,
            ),
            (
                "truncated gzip",
                post(
                    http_port,
                    "/v1/traces",
                    "application/x-protobuf",
                    Some("gzip"),
                    &truncated_gzip,
                )
                .0,
                400,
            ),
            (
                "gzip bomb",
                post(http_port, "/v1/traces", "application/x-protobuf", Some("gzip"), &bomb).0,
                400,
            ),
            (
                "too large",
                post(
                    http_port,
                    "/v1/traces",
                    "application/x-protobuf",
                    None,
                    &vec![0u8; 200_000],
                )
                .0,
                413,
            ),
            (
                "wrong path",
                post(http_port, "/v1/logs", "application/x-protobuf", None, b"").0,
                404,
            ),
            ("GET", get("127.0.0.1", http_port, "/v1/traces").0, 405),
            (
                "valid gzip",
                post(
                    http_port,
                    "/v1/traces",
                    "application/x-protobuf",
                    Some("gzip"),
                    &gzip(&one_span_request(3)),
                )
                .0,
                200,
            ),
        ]
    })
    .await
    .unwrap();
    for (what, got, want) in results {
        assert_eq!(got, want, "{what}");
    }

    let err = grpc_export(grpc, b"\x0a\x05\x12\x03\x0a\x01".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = grpc_export(grpc, vec![0x0a; 2 << 20]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "oversized: {err:?}");
    grpc_export(grpc, one_span_request(4)).await.unwrap();

    let c = tokio::task::spawn_blocking(move || {
        assert!(c.alive(), "the collector died:\n{}", c.log_text());
        let m = scrape(metrics);
        assert_eq!(metric(&m, "otelcol_receiver_accepted_spans", &[]), 2.0, "{m}");
        // Every refused trace request over HTTP is counted: the eight above
        // (not the wrong path or the GET, which are not trace requests).
        assert_eq!(
            metric(&m, "otelcol_receiver_malformed_requests", &[("transport", "http")]),
            8.0,
            "{m}"
        );
        // And over gRPC: the bad message and the oversized one, which tonic
        // refuses before the handler sees it.
        assert_eq!(
            metric(&m, "otelcol_receiver_malformed_requests", &[("transport", "grpc")]),
            2.0,
            "{m}"
        );
        c.signal("TERM");
        assert!(c.wait_exit(Duration::from_secs(30)).success());
        c
    })
    .await
    .unwrap();
    drop(c);
}

// --- overload -------------------------------------------------------------------------

/// A request of `traces` five-span traces with fresh ids from `next`.
fn load_request(next: &std::sync::atomic::AtomicU64, traces: usize) -> Vec<u8> {
    use otel_export::wire::{put_bytes, put_fixed64, put_tag, put_varint};
    let mut scope_spans = Vec::new();
    put_bytes(&mut scope_spans, 1, b"\x0a\x04load");
    for _ in 0..traces {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        trace[8..].copy_from_slice(&n.to_be_bytes());
        for k in 0..5u64 {
            let mut s = Vec::new();
            put_bytes(&mut s, 1, &trace);
            put_bytes(&mut s, 2, &((n << 3) | (k + 1)).to_be_bytes());
            if k > 0 {
                put_bytes(&mut s, 4, &((n << 3) | 1).to_be_bytes());
            }
            put_bytes(&mut s, 5, b"GET /api/products/{id}");
            put_tag(&mut s, 6, 0);
            put_varint(&mut s, 2);
            put_fixed64(&mut s, 7, 1_700_000_000_000_000_000 + k * 1000);
            put_fixed64(&mut s, 8, 1_700_000_000_020_000_000);
            for (key, value) in [
                ("http.request.method", "GET"),
                ("url.path", "/api/products/42"),
                ("server.address", "shop.example.com"),
                ("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
            ] {
                let mut v = Vec::new();
                put_bytes(&mut v, 1, value.as_bytes());
                let mut kv = Vec::new();
                put_bytes(&mut kv, 1, key.as_bytes());
                put_bytes(&mut kv, 2, &v);
                put_bytes(&mut s, 9, &kv);
            }
            put_bytes(&mut scope_spans, 2, &s);
        }
    }
    let mut rs = Vec::new();
    put_bytes(&mut rs, 1, b"\x0a\x1a\x0a\x0cservice.name\x12\x0a\x0a\x08overload");
    put_bytes(&mut rs, 2, &scope_spans);
    let mut req = Vec::new();
    put_bytes(&mut req, 1, &rs);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_with_retryable_status_under_the_memory_limit() {
    let dir = scratch("overload");
    let (grpc, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    const LIMIT_MIB: u64 = 60;
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  memory_limiter:
    check_interval: 50ms
    limit_mib: {LIMIT_MIB}
    spike_limit_mib: 20
  tail_sampling:
    decision_wait: 6s
    policies: [{{name: few, type: probabilistic, probabilistic: {{sampling_percentage: 1}}}}]
  batch:
    timeout: 200ms
exporters:
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, tail_sampling, batch]
      exporters: [debug]
"#
    );
    let mut c = tokio::task::spawn_blocking(move || collector("c", &dir, &yaml, "127.0.0.1", &[grpc, metrics]))
        .await
        .unwrap();

    // Offered load: 16 clients sending 500-span requests as fast as they can for 4 s.
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let (mut ok, mut refused, mut other) = (0u64, 0u64, Vec::new());
            while std::time::Instant::now() < deadline {
                let body = load_request(&next, 100);
                let mut g = tonic::client::Grpc::new(channel.clone());
                g.ready().await.unwrap();
                let r = g
                    .unary(
                        tonic::Request::new(bytes::Bytes::from(body)),
                        http::uri::PathAndQuery::from_static(
                            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                        ),
                        otel_export::RawCodec,
                    )
                    .await;
                match r {
                    Ok(_) => ok += 500,
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        refused += 500;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(s) => other.push(s),
                }
            }
            (ok, refused, other)
        }));
    }
    let (mut ok, mut refused) = (0u64, 0u64);
    for t in tasks {
        let (o, r, other) = t.await.unwrap();
        assert!(other.is_empty(), "unexpected errors: {other:?}");
        ok += o;
        refused += r;
    }
    assert!(
        refused > 0,
        "no refusal: {ok} spans accepted, the load did not reach the limit"
    );
    assert!(ok > 0);

    let c = tokio::task::spawn_blocking(move || {
        assert!(c.alive(), "the collector died:\n{}", c.log_text());
        let peak = c.peak_rss();
        eprintln!(
            "overload: {ok} spans accepted, {refused} refused, peak RSS {} MiB",
            peak >> 20
        );
        assert!(
            peak < LIMIT_MIB << 20,
            "peak RSS {} MiB is over the {LIMIT_MIB} MiB limit",
            peak >> 20
        );
        // Exact accounting once every trace is decided.
        eventually("decisions", Duration::from_secs(30), || {
            let m = scrape(metrics);
            metric(&m, "otelcol_processor_tail_sampling_spans_buffered", &[]) == 0.0
                && metric(&m, "otelcol_processor_tail_sampling_spans_received", &[]) as u64 == ok
        });
        let m = scrape(metrics);
        assert_eq!(metric(&m, "otelcol_receiver_accepted_spans", &[]) as u64, ok);
        assert_eq!(metric(&m, "otelcol_receiver_refused_spans", &[]) as u64, refused);
        let kept = metric(&m, "otelcol_processor_tail_sampling_spans_sampled", &[]) as u64;
        let dropped = metric(&m, "otelcol_processor_tail_sampling_spans_not_sampled", &[]) as u64;
        assert_eq!(kept + dropped, ok);
        eventually("exports", Duration::from_secs(10), || {
            metric(&scrape(metrics), "otelcol_exporter_sent_spans", &[]) as u64 == kept
        });
        c
    })
    .await
    .unwrap();
    // With the buffer released, data is accepted again.
    let fresh = std::sync::atomic::AtomicU64::new(u64::MAX / 2);
    let started = std::time::Instant::now();
    while let Err(e) = grpc_export(grpc, load_request(&fresh, 10)).await {
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still refusing after the buffer emptied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut c = c;
    tokio::task::spawn_blocking(move || {
        c.signal("TERM");
        assert!(c.wait_exit(Duration::from_secs(30)).success());
    })
    .await
    .unwrap();
}

#[test]
fn load_balancing_with_the_dns_resolver() {
    let dir = scratch("lb-dns");
    let (mut backend, port, file) = file_sink(&dir, "backend");
    let grpc = free_port("127.0.0.1");
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  loadbalancing:
    protocol:
      otlp:
        tls: {{insecure: true}}
    resolver:
      dns:
        hostname: 127.0.0.1
        port: {port}
        interval: 200ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [loadbalancing]
"#
    );
    let mut lb = collector("lb", &dir, &yaml, "127.0.0.1", &[grpc]);
    // Let the resolver run once.
    std::thread::sleep(Duration::from_millis(500));
    let sent = send_with_python(&[
        "--grpc".into(),
        format!("127.0.0.1:{grpc}"),
        "--traces".into(),
        "50".into(),
    ]);
    let total: usize = sent.iter().map(|s| s.2).sum();
    eventually("spans at the backend", Duration::from_secs(20), || {
        read_file_export(&file).values().map(Vec::len).sum::<usize>() == total
    });
    lb.signal("TERM");
    assert!(lb.wait_exit(Duration::from_secs(30)).success());
    backend.signal("TERM");
    assert!(backend.wait_exit(Duration::from_secs(30)).success());
}

// --- processors, OTLP/HTTP and JSON, several pipelines -------------------------------

#[test]
fn attributes_and_resource_processors_redact_over_http_json_with_two_pipelines() {
    let dir = scratch("redact");
    // B receives OTLP/HTTP (JSON bodies from A) and writes a file.
    let b_http = free_port("127.0.0.1");
    let b_file = dir.join("b.jsonl");
    let b_yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{b_http}
exporters:
  file:
    path: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#,
        b_file.display()
    );
    let mut b = collector("b", &dir, &b_yaml, "127.0.0.1", &[b_http]);
    let (a_http, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let raw_file = dir.join("raw.jsonl");
    let a_yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{a_http}
processors:
  attributes/pii:
    actions:
      - {{key: user.email, action: hash}}
      - {{key: http.request.header.authorization, action: delete}}
      - {{key: redacted, action: insert, value: true}}
      - {{key: user.id, action: upsert, from_attribute: tenant}}
  resource:
    attributes:
      - {{key: deployment.environment, action: upsert, value: production}}
      - {{key: host.name, action: delete}}
  batch:
    timeout: 50ms
exporters:
  otlphttp/b:
    endpoint: http://127.0.0.1:{b_http}
    encoding: json
    compression: gzip
  file/raw:
    path: {}
  debug:
    verbosity: detailed
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces/redacted:
      receivers: [otlp]
      processors: [attributes/pii, resource, batch]
      exporters: [otlphttp/b, debug]
    traces/raw:
      receivers: [otlp]
      exporters: [file/raw]
"#,
        raw_file.display()
    );
    let mut a = collector("a", &dir, &a_yaml, "127.0.0.1", &[a_http, metrics]);

    // An OTLP JSON request, as a browser or curl would send it.
    let request = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "signup"}},
                {"key": "host.name", "value": {"stringValue": "node-7"}}
            ]},
            "scopeSpans": [{
                "scope": {"name": "manual"},
                "spans": [{
                    "traceId": "5b8efff798038103d269b633813fc60c",
                    "spanId": "eee19b7ec3c1b174",
                    "name": "POST /signup",
                    "kind": 2,
                    "startTimeUnixNano": "1700000000000000000",
                    "endTimeUnixNano": "1700000000120000000",
                    "attributes": [
                        {"key": "user.email", "value": {"stringValue": "ada@example.com"}},
                        {"key": "http.request.header.authorization", "value": {"stringValue": "Bearer secret"}},
                        {"key": "tenant", "value": {"stringValue": "t-42"}},
                        {"key": "http.response.status_code", "value": {"intValue": "201"}}
                    ],
                    "status": {"code": 1}
                }]
            }]
        }]
    });
    let body = request.to_string();
    let (status, reply) = post(a_http, "/v1/traces", "application/json", None, body.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    assert_eq!(reply, b"{}");

    eventually("B's file", Duration::from_secs(20), || {
        !read_file_export(&b_file).is_empty()
    });
    eventually("the raw file", Duration::from_secs(20), || {
        !read_file_export(&raw_file).is_empty()
    });
    let redacted: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&b_file).unwrap().lines().next().unwrap()).unwrap();
    let raw: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&raw_file).unwrap().lines().next().unwrap()).unwrap();
    let attrs = |v: &serde_json::Value, path: &str| -> HashMap<String, serde_json::Value> {
        v.pointer(path)
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
            .map(|kv| (kv["key"].as_str().unwrap().to_owned(), kv["value"].clone()))
            .collect()
    };
    let span = attrs(&redacted, "/resourceSpans/0/scopeSpans/0/spans/0/attributes");
    // SHA-256 of "ada@example.com" (as `sha256sum` computes it).
    assert_eq!(
        span["user.email"]["stringValue"],
        "b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72"
    );
    let email = span["user.email"]["stringValue"].as_str().unwrap();
    assert_eq!(email.len(), 64, "hex SHA-256: {email}");
    assert_ne!(email, "ada@example.com");
    assert!(!span.contains_key("http.request.header.authorization"));
    assert_eq!(span["redacted"]["boolValue"], true);
    assert_eq!(span["user.id"]["stringValue"], "t-42");
    assert_eq!(span["http.response.status_code"]["intValue"], "201");
    let resource = attrs(&redacted, "/resourceSpans/0/resource/attributes");
    assert_eq!(resource["deployment.environment"]["stringValue"], "production");
    assert!(!resource.contains_key("host.name"));
    assert_eq!(resource["service.name"]["stringValue"], "signup");
    // The other pipeline saw the span untouched.
    let raw_span = attrs(&raw, "/resourceSpans/0/scopeSpans/0/spans/0/attributes");
    assert_eq!(raw_span["user.email"]["stringValue"], "ada@example.com");
    assert!(attrs(&raw, "/resourceSpans/0/resource/attributes").contains_key("host.name"));

    // The debug exporter printed the trace as a tree with its duration.
    eventually("debug output", Duration::from_secs(10), || {
        std::fs::read_to_string(dir.join("a.out"))
            .unwrap_or_default()
            .contains("[signup] POST /signup  120ms")
    });
    let m = scrape(metrics);
    assert_eq!(metric(&m, "otelcol_receiver_accepted_spans", &[]), 1.0);
    a.signal("TERM");
    assert!(a.wait_exit(Duration::from_secs(30)).success());
    b.signal("TERM");
    assert!(b.wait_exit(Duration::from_secs(30)).success());
}
