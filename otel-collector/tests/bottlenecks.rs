#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! The collector's bottleneck summary: which service and operation took the
//! critical path, over the traces the tail sampler kept and over every trace
//! it saw, on the telemetry server (text and JSON) and in the `debug`
//! exporter's output at shutdown.

mod proc;

use proc::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One trace: a `checkout` root of 100 ms with one child of 90 ms, in
/// `service`, named `operation`, failed or not.
fn trace(n: usize, service: &str, operation: &str, failed: bool) -> serde_json::Value {
    let base = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let ms = 1_000_000u64;
    let trace_id = format!("{:032x}", 0x5b8e_0000_0000_0000_0000_0000_0000_0000u128 + n as u128);
    let root_id = format!("{:016x}", 0x1000 + n as u64);
    let child_id = format!("{:016x}", 0x9000 + n as u64);
    let status = if failed {
        serde_json::json!({"code": 2, "message": "card declined"})
    } else {
        serde_json::json!({})
    };
    let resource =
        |name: &str| serde_json::json!({"attributes": [{"key": "service.name", "value": {"stringValue": name}}]});
    serde_json::json!([
        {
            "resource": resource("checkout"),
            "scopeSpans": [{"spans": [{
                "traceId": trace_id, "spanId": root_id, "name": "GET /cart", "kind": 2,
                "startTimeUnixNano": base.to_string(), "endTimeUnixNano": (base + 100 * ms).to_string()
            }]}]
        },
        {
            "resource": resource(service),
            "scopeSpans": [{"spans": [{
                "traceId": trace_id, "spanId": child_id, "parentSpanId": root_id, "name": operation, "kind": 3,
                "startTimeUnixNano": (base + 5 * ms).to_string(), "endTimeUnixNano": (base + 95 * ms).to_string(),
                "status": status
            }]}]
        }
    ])
}

fn post_json(port: u16, body: &serde_json::Value) -> u16 {
    let body = body.to_string();
    let request = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    http("127.0.0.1", port, request.as_bytes()).0
}

#[test]
fn the_summary_names_the_bottleneck_of_kept_and_of_all_traces() {
    let dir = scratch("bottlenecks");
    let (otlp, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  tail_sampling:
    decision_wait: 200ms
    policies:
      - {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}
exporters:
  debug:
    verbosity: basic
    summary_interval: 0s
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [debug]
"#
    );
    let mut collector = collector("bottlenecks", &dir, &yaml, "127.0.0.1", &[otlp, metrics]);

    // Most traces spend their time in the database and are fine; a few spend
    // it in a payment call that fails. The tail sampler keeps only those.
    let mut spans = Vec::new();
    for n in 0..30 {
        spans.extend(trace(n, "checkout", "SELECT carts", false).as_array().unwrap().clone());
    }
    for n in 30..36 {
        spans.extend(trace(n, "payment", "charge", true).as_array().unwrap().clone());
    }
    assert_eq!(post_json(otlp, &serde_json::json!({"resourceSpans": spans})), 200);

    let summary = || -> serde_json::Value {
        let (status, body) = get("127.0.0.1", metrics, "/debug/bottlenecks?format=json");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    eventually("every trace decided and analysed", Duration::from_secs(20), || {
        summary()["all"]["traces"] == 36
    });
    let s = summary();
    assert_eq!(s["kept"]["traces"], 6, "{s}");
    assert_eq!(s["kept"]["traces_decided"], 6);
    assert_eq!(s["all"]["traces_decided"], 36);
    assert_eq!(s["skipped"], 0);
    let top = |view: &str| s[view]["rows"][0].clone();
    // Over what was kept, the failing payment call dominates...
    assert_eq!(top("kept")["service"], "payment", "{s}");
    assert_eq!(top("kept")["operation"], "charge");
    assert_eq!(top("kept")["error_rate"], 1.0);
    assert!(top("kept")["critical_path_share"].as_f64().unwrap() > 0.8);
    // ...over everything seen, the database does: the sampling bias, shown.
    assert_eq!(top("all")["service"], "checkout", "{s}");
    assert_eq!(top("all")["operation"], "SELECT carts");
    assert_eq!(top("all")["count"], 30);
    assert_eq!(top("all")["error_rate"], 0.0);
    let p50 = top("all")["p50_ns"].as_u64().unwrap();
    assert!((85_000_000..=95_000_000).contains(&p50), "p50 {p50} ns of a 90 ms span");

    let (status, text) = get("127.0.0.1", metrics, "/debug/bottlenecks");
    assert_eq!(status, 200);
    assert!(
        text.contains("bottlenecks over the traces the tail sampler kept (6 analysed of 6 kept)"),
        "{text}"
    );
    assert!(text.contains("(36 analysed of 36 seen"), "{text}");
    assert!(text.contains("payment") && text.contains("SELECT carts"), "{text}");

    collector.signal("TERM");
    assert!(collector.wait_exit(Duration::from_secs(30)).success());
    let out = std::fs::read_to_string(dir.join("bottlenecks.out")).unwrap();
    assert!(
        !out.contains("bottlenecks over"),
        "summary_interval: 0s turns the debug exporter's summary off:\n{out}"
    );
}

#[test]
fn the_debug_exporter_prints_the_summary_periodically_and_at_shutdown() {
    let dir = scratch("bottlenecks-debug");
    let otlp = free_port("127.0.0.1");
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  tail_sampling:
    decision_wait: 100ms
    policies:
      - {{name: all, type: always_sample}}
exporters:
  debug:
    verbosity: basic
    summary_interval: 300ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [debug]
"#
    );
    let mut collector = collector("debug", &dir, &yaml, "127.0.0.1", &[otlp]);
    let spans = trace(1, "checkout", "SELECT carts", false);
    assert_eq!(post_json(otlp, &serde_json::json!({"resourceSpans": spans})), 200);
    let out = dir.join("debug.out");
    eventually("a periodic summary", Duration::from_secs(20), || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("(1 analysed of 1 kept)")
    });
    collector.signal("TERM");
    assert!(collector.wait_exit(Duration::from_secs(30)).success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.matches("bottlenecks over the traces the tail sampler kept")
            .count()
            >= 2,
        "once on the interval, once at shutdown:\n{text}"
    );
    assert!(text.contains("checkout") && text.contains("SELECT carts"), "{text}");
}
