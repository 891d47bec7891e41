//! No span lost at shutdown: spans ended before `shutdown` all reach a real
//! receiver, from a current-thread runtime, a multi-thread runtime and no
//! runtime; shutdown never hangs past its deadline when the receiver is down.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

#[path = "../../otel-export/tests/common/mod.rs"]
mod common;

use opentelemetry::trace::Tracer;
use otel_core::Telemetry;
use otel_core::otel_export::{OtlpExporter, Protocol};
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: usize = 2000;

fn receiver() -> (String, Arc<common::Received>, std::sync::mpsc::Sender<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let (addr, received) = common::grpc_sink().await;
            tx.send((format!("http://{addr}"), received)).unwrap();
            tokio::task::spawn_blocking(move || stopped.recv()).await.ok();
        });
    });
    let (endpoint, received) = rx.recv().unwrap();
    (endpoint, received, stop)
}

fn install(endpoint: String) -> otel_core::TelemetryHandle {
    Telemetry::builder()
        .with_service_name("shutdown-test")
        .with_otlp(
            OtlpExporter::builder()
                .with_protocol(Protocol::Grpc)
                .with_endpoint(endpoint),
        )
        .with_batch_config(otel_core::otel_export::BatchConfig {
            max_queue_size: N,
            ..Default::default()
        })
        .with_globals(false)
        .install()
        .unwrap()
}

fn work(handle: &otel_core::TelemetryHandle) {
    let tracer = handle.tracer("t");
    for _ in 0..N {
        tracer.in_span("unit", |_| {});
    }
}

#[test]
fn no_runtime() {
    let (endpoint, received, _stop) = receiver();
    let handle = install(endpoint);
    work(&handle);
    let report = handle.shutdown(Duration::from_secs(20)).unwrap();
    assert_eq!(received.span_count(), N);
    assert_eq!(report.exported, N as u64);
    assert!(report.is_complete(), "{report}");
    assert!(
        handle
            .shutdown(Duration::from_secs(1))
            .unwrap_err()
            .is_already_shut_down()
    );
}

#[test]
fn current_thread_runtime() {
    let (endpoint, received, _stop) = receiver();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let handle = install(endpoint);
            work(&handle);
            handle.shutdown(Duration::from_secs(20)).unwrap();
        });
    assert_eq!(received.span_count(), N);
}

#[test]
fn multi_thread_runtime() {
    let (endpoint, received, _stop) = receiver();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let handle = install(endpoint);
            work(&handle);
            handle.shutdown(Duration::from_secs(20)).unwrap();
        });
    assert_eq!(received.span_count(), N);
}

#[test]
fn dropping_the_handle_flushes() {
    let (endpoint, received, _stop) = receiver();
    {
        let handle = install(endpoint);
        work(&handle);
    }
    assert_eq!(received.span_count(), N);
}

#[test]
fn shutdown_meets_its_deadline_when_the_receiver_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let handle = install(format!("http://127.0.0.1:{port}"));
            work(&handle);
            let started = Instant::now();
            // Whether the deadline or the failed export comes first, the
            // answer says that nothing arrived, and why.
            let report = match handle.shutdown(Duration::from_secs(1)) {
                Ok(report) => report,
                Err(e) => e.report().clone(),
            };
            assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
            assert_eq!(report.exported, 0);
            assert!(!report.is_complete());
            assert!(report.undelivered > 0, "{report}");
            assert_eq!(handle.report().exported, 0);
        });
}
