//! Malformed and oversized requests over gRPC and HTTP: refused with the
//! right status, counted, and the collector keeps serving.

use crate::proc::*;
use std::time::Duration;

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
                "garbage snappy",
                post(
                    http_port,
                    "/v1/traces",
                    "application/x-protobuf",
                    Some("snappy"),
                    b"\x80\x80\x80",
                )
                .0,
                400,
            ),
            (
                // A block claiming 1.5 MB (over the 100 kB limit): refused before decompressing.
                "snappy bomb",
                post(
                    http_port,
                    "/v1/traces",
                    "application/x-protobuf",
                    Some("snappy"),
                    &snap::raw::Encoder::new().compress_vec(&vec![0u8; 3 << 19]).unwrap(),
                )
                .0,
                400,
            ),
            (
                // As the Go Collector sends `snappy`: framed.
                "valid snappy, framed",
                post(
                    http_port,
                    "/v1/traces",
                    "application/x-protobuf",
                    Some("snappy"),
                    &snappy_framed(&one_span_request(5)),
                )
                .0,
                200,
            ),
            (
                "valid snappy, block",
                post(
                    http_port,
                    "/v1/traces",
                    "application/x-protobuf",
                    Some("snappy"),
                    &snap::raw::Encoder::new().compress_vec(&one_span_request(6)).unwrap(),
                )
                .0,
                200,
            ),
            (
                "valid x-snappy-framed",
                post(
                    http_port,
                    "/v1/traces",
                    "application/x-protobuf",
                    Some("x-snappy-framed"),
                    &snappy_framed(&one_span_request(7)),
                )
                .0,
                200,
            ),
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
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "oversized: {err:?}");
    grpc_export(grpc, one_span_request(4)).await.unwrap();

    let c = tokio::task::spawn_blocking(move || {
        assert!(c.alive(), "the collector died:\n{}", c.log_text());
        let m = scrape(metrics);
        assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total", &[]), 5.0, "{m}");
        // Every refused trace request over HTTP is counted: the ten above
        // (not the wrong path or the GET, which are not trace requests).
        assert_eq!(
            metric(
                &m,
                "otelcol_receiver_malformed_requests_total",
                &[("transport", "http")]
            ),
            10.0,
            "{m}"
        );
        // And over gRPC: the bad message and the oversized one, refused
        // before its spans are read.
        assert_eq!(
            metric(
                &m,
                "otelcol_receiver_malformed_requests_total",
                &[("transport", "grpc")]
            ),
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
