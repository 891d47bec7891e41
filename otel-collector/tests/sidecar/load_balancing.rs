//! The `loadbalancing` exporter: three backends behind it, static and DNS
//! resolvers; each trace goes to one backend.

use crate::proc::*;
use std::collections::HashMap;
use std::time::Duration;

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
        let traces = metric(&m, "otelcol_processor_tail_sampling_traces_received_total", &[]);
        assert!(traces > 30.0, "backend {i} got only {traces} traces");
        decided += metric(&m, "otelcol_processor_tail_sampling_traces_sampled_total", &[])
            + metric(&m, "otelcol_processor_tail_sampling_traces_not_sampled_total", &[]);
        assert_eq!(
            metric(&m, "otelcol_processor_tail_sampling_late_spans_sampled_total", &[]),
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
