//! End to end with the Python SDK as the client, a second instance and rotel
//! as receivers; SIGTERM with traces buffered; processors over OTLP/HTTP JSON
//! with two pipelines.

use crate::proc::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

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
        // grpc-python's gzip, read by our receiver.
        "--compression".into(),
        "gzip".into(),
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
        let received = metric(&m, "otelcol_processor_tail_sampling_spans_received_total", &[]);
        let buffered = metric(&m, "otelcol_processor_tail_sampling_spans_buffered", &[]);
        let kept = metric(&m, "otelcol_processor_tail_sampling_spans_sampled_total", &[]);
        let sent_b = metric(&m, "otelcol_exporter_sent_spans_total", &[("exporter", "otlp/b")]);
        let sent_r = metric(&m, "otelcol_exporter_sent_spans_total", &[("exporter", "otlp/rotel")]);
        received as usize == total_spans && buffered == 0.0 && sent_b == kept && sent_r == kept
    });
    let m = scrape(metrics);
    let accepted = metric(&m, "otelcol_receiver_accepted_spans_total", &[]);
    let kept = metric(&m, "otelcol_processor_tail_sampling_spans_sampled_total", &[]);
    let dropped = metric(&m, "otelcol_processor_tail_sampling_spans_not_sampled_total", &[]);
    assert_eq!(accepted as usize, total_spans);
    assert_eq!(
        (kept + dropped) as usize,
        total_spans,
        "received = kept + dropped by policy"
    );
    assert_eq!(metric(&m, "otelcol_exporter_send_failed_spans_total", &[]), 0.0);
    assert_eq!(metric(&m, "otelcol_receiver_refused_spans_total", &[]), 0.0);

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
    assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total", &[]), 1.0);
    a.signal("TERM");
    assert!(a.wait_exit(Duration::from_secs(30)).success());
    b.signal("TERM");
    assert!(b.wait_exit(Duration::from_secs(30)).success());
}

// --- TLS and bearer tokens with the Python SDK ---------------------------------------

#[test]
fn the_python_sdk_exports_over_tls_with_a_bearer_token() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let dir = scratch("tls-token");
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a leaf whose subject is its issuer for self-signed.
    p.distinguished_name.push(DnType::CommonName, "test CA");
    // What strict verifiers (Python 3.13's ssl) require of a CA and a leaf.
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "collector");
    leaf.use_authority_key_identifier_extension = true;
    let cert = leaf.signed_by(&key, &ca).unwrap();
    for (name, text) in [
        ("ca.pem", ca.pem()),
        ("server.pem", cert.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let (grpc, http, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1"));
    let file = dir.join("received.jsonl");
    let tls = format!(
        "{{cert_file: {:?}, key_file: {:?}}}",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    let yaml = format!(
        r#"
extensions:
  bearertokenauth:
    token: s3cret
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        tls: {tls}
        auth: {{authenticator: bearertokenauth}}
      http:
        endpoint: 127.0.0.1:{http}
        tls: {tls}
        auth: {{authenticator: bearertokenauth}}
exporters:
  file:
    path: {}
service:
  extensions: [bearertokenauth]
  telemetry:
    metrics: {{address: 127.0.0.1:{metrics}}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#,
        file.display()
    );
    let mut c = collector("tls-token", &dir, &yaml, "127.0.0.1", &[grpc, http, metrics]);
    let ca_file = dir.join("ca.pem").display().to_string();
    let args = |transport: &str, header: Option<&str>| {
        let mut a = match transport {
            "grpc" => vec!["--grpc".to_owned(), format!("127.0.0.1:{grpc}")],
            _ => vec!["--http".to_owned(), format!("https://127.0.0.1:{http}/v1/traces")],
        };
        a.extend([
            "--ca".to_owned(),
            ca_file.clone(),
            "--traces".to_owned(),
            "20".to_owned(),
        ]);
        if let Some(h) = header {
            a.extend(["--header".to_owned(), h.to_owned()]);
        }
        a
    };
    let mut sent = send_with_python(&args("grpc", Some("authorization=Bearer s3cret")));
    sent.extend(send_with_python(&args("http", Some("authorization=Bearer s3cret"))));
    eventually("every span in the file", Duration::from_secs(10), || {
        read_file_export(&file).values().map(Vec::len).sum::<usize>() == 160
    });
    let got = read_file_export(&file);
    for (trace, _, spans) in &sent {
        assert_eq!(got.get(trace).map_or(0, Vec::len), *spans, "trace {trace}");
    }
    // Without the token the SDK's exports are refused, and counted.
    for transport in ["grpc", "http"] {
        let out = std::process::Command::new(python())
            .arg(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_traces.py"))
            .args(args(transport, None))
            .output()
            .unwrap();
        assert!(!out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let m = scrape(metrics);
    assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total", &[]), 160.0, "{m}");
    for transport in ["grpc", "http"] {
        assert!(
            metric(
                &m,
                "otelcol_receiver_unauthenticated_requests_total",
                &[("transport", transport)]
            ) >= 1.0,
            "{m}"
        );
    }
    assert_eq!(read_file_export(&file).values().map(Vec::len).sum::<usize>(), 160);
    c.signal("TERM");
    assert!(c.wait_exit(Duration::from_secs(30)).success(), "{}", c.log_text());
}
