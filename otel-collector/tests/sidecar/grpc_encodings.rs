//! The gRPC receiver reads every encoding the Go Collector sends (gzip,
//! zstd, snappy), from our exporter and from hand-made frames, and refuses
//! what gRPC says to refuse with gRPC's status codes, counting each.

use crate::proc::*;
use http_body_util::BodyExt as _;
use otel_export::{Compression, OtlpExporter, Protocol};
use std::time::Duration;

/// One unary call with a body framed by hand: the `grpc-status` and the
/// `grpc-accept-encoding` the receiver answered with.
async fn raw_call(port: u16, encoding: Option<&str>, body: Vec<u8>) -> (String, Option<String>) {
    use tower_service::Service as _;
    let mut channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://127.0.0.1:{port}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(e) = encoding {
        request = request.header("grpc-encoding", e);
    }
    let request = request
        .body(tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(
            body,
        ))))
        .unwrap();
    std::future::poll_fn(|cx| channel.poll_ready(cx)).await.unwrap();
    let response = channel.call(request).await.unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let accept = header("grpc-accept-encoding");
    if let Some(status) = header("grpc-status") {
        return (status, accept); // trailers-only
    }
    let collected = response.into_body().collect().await.unwrap();
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, accept)
}

/// A gRPC message: the compressed flag, the length, the bytes.
fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut f = vec![flag];
    f.extend_from_slice(&(message.len() as u32).to_be_bytes());
    f.extend_from_slice(message);
    f
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_requests_in_every_encoding_are_read_and_bad_ones_refused() {
    let dir = scratch("grpc-encodings");
    let (grpc, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let out = dir.join("out.jsonl");
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        max_recv_msg_size_mib: 1
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
    let mut c = tokio::task::spawn_blocking(move || collector("c", &dir, &yaml, "127.0.0.1", &[grpc, metrics]))
        .await
        .unwrap();

    // Our exporter, in each of the encodings the Go exporters offer: 3 x 40
    // spans from owned bodies, and 3 x (40, 20) from one buffer used again.
    let next = std::sync::atomic::AtomicU64::new(0);
    let mut reused = Vec::new();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::Snappy] {
        let exporter = OtlpExporter::builder()
            .with_protocol(Protocol::Grpc)
            .with_endpoint(format!("http://127.0.0.1:{grpc}"))
            .with_compression(compression)
            .build()
            .unwrap();
        exporter
            .export_encoded(load_request(&next, 8), 40)
            .await
            .unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        for traces in [8, 4] {
            reused.clear();
            reused.extend_from_slice(&load_request(&next, traces));
            let sending = exporter.export_encoded_from(&reused, traces as u64 * 5);
            // The body is taken before the send is awaited.
            reused.clear();
            reused.extend_from_slice(&[0xff; 64]);
            sending
                .await
                .unwrap_or_else(|e| panic!("{compression:?}, borrowed: {e}"));
        }
    }

    // Hand-made frames: one span each (traces 1 to 4).
    let zstd = zstd::bulk::compress(&one_span_request(2), 3).unwrap();
    let block = snap::raw::Encoder::new().compress_vec(&one_span_request(4)).unwrap();
    for (what, encoding, body) in [
        ("gzip", Some("gzip"), frame(1, &gzip(&one_span_request(1)))),
        ("zstd", Some("zstd"), frame(1, &zstd)),
        (
            "snappy, framed",
            Some("snappy"),
            frame(1, &snappy_framed(&one_span_request(3))),
        ),
        ("snappy, block", Some("snappy"), frame(1, &block)),
        // An encoding named but the message not compressed: allowed.
        ("gzip named, flag 0", Some("gzip"), frame(0, &one_span_request(5))),
    ] {
        let (status, accept) = raw_call(grpc, encoding, body).await;
        assert_eq!(status, "0", "{what}");
        assert_eq!(accept.as_deref(), Some("gzip,zstd,snappy"), "{what}");
    }

    // A message larger than the first reservation (256 KiB): 600 traces of 5 spans.
    let large = load_request(&next, 600);
    assert!(large.len() > 256 << 10 && large.len() < 1 << 20, "{}", large.len());
    assert_eq!(raw_call(grpc, None, frame(0, &large)).await.0, "0", "a large message");

    // What gRPC refuses (codes: 3 invalid argument, 8 resource exhausted,
    // 12 unimplemented, 13 internal).
    let mut truncated = gzip(&one_span_request(9));
    truncated.truncate(truncated.len() / 2);
    let bomb = gzip(&vec![0u8; 2 << 20]);
    let mut two = frame(0, &one_span_request(9));
    two.extend(frame(0, &one_span_request(9)));
    let mut short = frame(0, &one_span_request(9));
    short.truncate(20);
    let refusals = [
        (
            "compressed, no grpc-encoding",
            None,
            frame(1, &gzip(&one_span_request(9))),
            "13",
        ),
        (
            "identity, compressed flag",
            Some("identity"),
            frame(1, &one_span_request(9)),
            "13",
        ),
        ("unknown encoding", Some("br"), frame(1, b"whatever"), "12"),
        ("truncated gzip", Some("gzip"), frame(1, &truncated), "13"),
        ("gzip over the limit once inflated", Some("gzip"), frame(1, &bomb), "8"),
        (
            "over the limit as sent",
            None,
            frame(0, &vec![0x0a; (1 << 20) + 1]),
            "8",
        ),
        (
            "garbage snappy",
            Some("snappy"),
            frame(1, b"\xff\xff\xff\xff not snappy"),
            "13",
        ),
        ("two messages", None, two, "13"),
        ("a message cut short", None, short, "13"),
        ("flag 2", None, frame(2, &one_span_request(9)), "13"),
        ("no message", None, Vec::new(), "13"),
        ("not OTLP", None, frame(0, b"\x0a\x05\x12\x03\x0a\x01"), "3"),
    ];
    let n_refused = refusals.len();
    for (what, encoding, body, want) in refusals {
        let (status, accept) = raw_call(grpc, encoding, body).await;
        assert_eq!(status, want, "{what}");
        if want == "12" {
            assert_eq!(accept.as_deref(), Some("gzip,zstd,snappy"), "{what}");
        }
    }

    let c = tokio::task::spawn_blocking(move || {
        assert!(c.alive(), "the collector died:\n{}", c.log_text());
        let m = scrape(metrics);
        assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total", &[]), 3_305.0, "{m}");
        assert_eq!(
            metric(
                &m,
                "otelcol_receiver_malformed_requests_total",
                &[("transport", "grpc")]
            ),
            n_refused as f64,
            "{m}"
        );
        c.signal("TERM");
        assert!(c.wait_exit(Duration::from_secs(30)).success());
        c
    })
    .await
    .unwrap();
    let traces = read_file_export(&out);
    let spans: usize = traces.values().map(Vec::len).sum();
    assert_eq!(spans, 3_305, "every span of every accepted request is exported");
    for n in 1..=5u8 {
        let id: String = [n; 16].iter().map(|b| format!("{b:02x}")).collect();
        assert!(traces.contains_key(&id), "trace {n} of the hand-made frames");
    }
    drop(c);
}
