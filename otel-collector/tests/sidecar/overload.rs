//! Overload: the memory limiter refuses with a retryable status and memory
//! stays under the limit.

use crate::proc::*;
use std::time::Duration;

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
                && metric(&m, "otelcol_processor_tail_sampling_spans_received_total", &[]) as u64 == ok
        });
        let m = scrape(metrics);
        assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total", &[]) as u64, ok);
        assert_eq!(metric(&m, "otelcol_receiver_refused_spans_total", &[]) as u64, refused);
        let kept = metric(&m, "otelcol_processor_tail_sampling_spans_sampled_total", &[]) as u64;
        let dropped = metric(&m, "otelcol_processor_tail_sampling_spans_not_sampled_total", &[]) as u64;
        assert_eq!(kept + dropped, ok);
        eventually("exports", Duration::from_secs(10), || {
            metric(&scrape(metrics), "otelcol_exporter_sent_spans_total", &[]) as u64 == kept
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
