//! Our exporter against rotel, an independent Rust OTLP collector shipped in a
//! PyPI wheel: rotel receives over gRPC and HTTP and forwards to a sink here,
//! which checks every span arrived.
//!
//! `scripts/test.sh` installs rotel and sets `ROTEL_AGENT`; otherwise the
//! test looks in the repository's `.venv`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use opentelemetry::trace::{Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use otel_export::{BatchSpanProcessor, Compression, OtlpExporter, Protocol};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn rotel_agent() -> PathBuf {
    if let Some(p) = std::env::var_os("ROTEL_AGENT") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    let found = std::fs::read_dir(&venv).ok().and_then(|mut d| {
        d.find_map(|e| {
            e.ok()
                .map(|e| e.path().join("site-packages/rotel/rotel-agent"))
                .filter(|p| p.exists())
        })
    });
    found.unwrap_or_else(|| {
        panic!("rotel-agent not found: run scripts/test.sh (it installs rotel from PyPI) or set ROTEL_AGENT")
    })
}

struct Rotel(Child);

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "rotel did not open 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn send(protocol: Protocol, endpoint: String, prefix: &str, n: usize) -> otel_export::CountersSnapshot {
    let exporter = OtlpExporter::builder()
        .with_protocol(protocol)
        .with_endpoint(endpoint)
        .with_compression(Compression::Gzip)
        .build()
        .unwrap();
    let processor = BatchSpanProcessor::builder(exporter).with_max_queue_size(n).build();
    let counters = processor.counters();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    let tracer = provider.tracer("rotel-test");
    for i in 0..n {
        tracer.in_span(format!("{prefix}-{i}"), |_| {});
    }
    provider.shutdown_with_timeout(Duration::from_secs(20)).unwrap();
    counters.snapshot()
}

#[tokio::test(flavor = "multi_thread")]
async fn rotel_receives_over_grpc_and_http() {
    let (sink, received) = common::grpc_sink().await;
    let (grpc, http) = (free_port(), free_port());
    let child = Command::new(rotel_agent())
        .args(["start", "--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
        .args([
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            &format!("http://{sink}"),
        ])
        .args(["--batch-timeout", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rotel-agent");
    let _rotel = Rotel(child);
    tokio::task::spawn_blocking(move || {
        wait_for_port(grpc);
        wait_for_port(http);
    })
    .await
    .unwrap();

    let n = 700;
    let sent = tokio::task::spawn_blocking(move || {
        [
            send(Protocol::Grpc, format!("http://127.0.0.1:{grpc}"), "grpc", n),
            send(Protocol::HttpProtobuf, format!("http://127.0.0.1:{http}"), "http", n),
        ]
    })
    .await
    .unwrap();
    for s in sent {
        assert_eq!((s.exported, s.failed, s.dropped), (n as u64, 0, 0), "{s:?}");
    }
    assert_eq!(received.wait_for(2 * n, Duration::from_secs(20)).await, 2 * n);
    let mut names = received.span_names();
    names.sort();
    let mut expected: Vec<String> = (0..n)
        .flat_map(|i| [format!("grpc-{i}"), format!("http-{i}")])
        .collect();
    expected.sort();
    assert_eq!(names, expected, "every span arrived once through rotel");
}
