//! The batch span processor: never blocks, exports only sampled spans, runs
//! exports concurrently, counts every drop, and shuts down within deadlines
//! from a current-thread runtime, a multi-thread runtime, or no runtime.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample, SpanData, SpanExporter,
};
use otel_export::{BatchSpanProcessor, OtlpExporter, Protocol};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Samples "keep*" spans, records "record*" spans without sampling them.
#[derive(Debug, Clone)]
struct KeepOrRecord;

impl ShouldSample for KeepOrRecord {
    fn should_sample(
        &self,
        _: Option<&Context>,
        _: opentelemetry::trace::TraceId,
        name: &str,
        _: &opentelemetry::trace::SpanKind,
        _: &[KeyValue],
        _: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let decision = if name.starts_with("keep") {
            SamplingDecision::RecordAndSample
        } else {
            SamplingDecision::RecordOnly
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: Default::default(),
        }
    }
}

#[test]
fn record_only_spans_are_not_exported() {
    let exporter = InMemorySpanExporter::default();
    let processor = BatchSpanProcessor::builder(exporter.clone()).build();
    let counters = processor.counters();
    let provider = SdkTracerProvider::builder()
        .with_sampler(KeepOrRecord)
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("t");
    for name in ["keep-1", "record-1", "keep-2", "record-2"] {
        tracer.start(name).end();
    }
    provider.force_flush().unwrap();
    let names: Vec<String> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .map(|s| s.name.into_owned())
        .collect();
    assert_eq!(names, ["keep-1", "keep-2"]);
    assert_eq!(counters.snapshot().exported, 2);
    provider.shutdown().unwrap();
}

/// An exporter that takes `delay` per export and tracks how many run at once.
#[derive(Debug, Clone, Default)]
struct SlowExporter {
    delay: Duration,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
    exported: Arc<AtomicUsize>,
}

impl SpanExporter for SlowExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.exported.fetch_add(batch.len(), Ordering::SeqCst);
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn exports_run_concurrently() {
    let exporter = SlowExporter {
        delay: Duration::from_millis(200),
        ..Default::default()
    };
    let processor = BatchSpanProcessor::builder(exporter.clone())
        .with_max_export_batch_size(10)
        .with_max_queue_size(1000)
        .with_max_concurrent_exports(4)
        .build();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    let tracer = provider.tracer("t");
    let started = Instant::now();
    for _ in 0..80 {
        tracer.start("s").end();
    }
    provider.shutdown().unwrap();
    assert_eq!(exporter.exported.load(Ordering::SeqCst), 80);
    assert_eq!(exporter.max_running.load(Ordering::SeqCst), 4);
    // 8 batches, 4 at a time, 200 ms each: about 400 ms, not 1.6 s.
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    // An exporter that never finishes holds the only slot; the queue fills.
    let exporter = SlowExporter {
        delay: Duration::from_secs(3600),
        ..Default::default()
    };
    let processor = BatchSpanProcessor::builder(exporter)
        .with_max_queue_size(100)
        .with_max_export_batch_size(10)
        .with_max_concurrent_exports(1)
        .with_export_timeout(Duration::from_millis(300))
        .build();
    let counters = processor.counters();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    let tracer = provider.tracer("t");
    let started = Instant::now();
    for _ in 0..5000 {
        tracer.start("s").end();
    }
    assert!(started.elapsed() < Duration::from_secs(2), "on_end never waits");
    let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
    let c = counters.snapshot();
    assert!(c.dropped > 4000, "{c:?}");
    // Every span is accounted for: exported, failed (timed out) or dropped.
    assert_eq!(c.exported + c.failed + c.dropped, 5000, "{c:?}");
}

#[test]
fn shutdown_times_out_on_a_hung_exporter_and_spans_after_it_are_counted() {
    let exporter = SlowExporter {
        delay: Duration::from_secs(3600),
        ..Default::default()
    };
    let processor = BatchSpanProcessor::builder(exporter)
        .with_export_timeout(Duration::from_secs(3600))
        .build();
    let counters = processor.counters();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    let tracer = provider.tracer("t");
    tracer.start("before").end();
    let started = Instant::now();
    let result = provider.shutdown_with_timeout(Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(result.is_err(), "{result:?}");
    tracer.start("after").end();
    // The provider no longer records spans after shutdown; nothing is lost silently either way.
    let c = counters.snapshot();
    assert_eq!(c.exported, 0);
}

#[test]
fn force_flush_exports_what_is_queued() {
    let exporter = InMemorySpanExporter::default();
    let processor = BatchSpanProcessor::builder(exporter.clone())
        .with_scheduled_delay(Duration::from_secs(3600))
        .build();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    let tracer = provider.tracer("t");
    for _ in 0..37 {
        tracer.start("s").end();
    }
    provider.force_flush().unwrap();
    assert_eq!(exporter.get_finished_spans().unwrap().len(), 37);
    provider.shutdown().unwrap();
    assert!(matches!(provider.shutdown(), Err(OTelSdkError::AlreadyShutdown)));
}

// --- shutdown flush with a real receiver, three runtime settings -----------

const N: usize = 3000;

fn otlp_provider(endpoint: String) -> (SdkTracerProvider, Arc<otel_export::Counters>) {
    let exporter = OtlpExporter::builder()
        .with_protocol(Protocol::Grpc)
        .with_endpoint(endpoint)
        .build()
        .unwrap();
    let processor = BatchSpanProcessor::builder(exporter).with_max_queue_size(N).build();
    let counters = processor.counters();
    (
        SdkTracerProvider::builder().with_span_processor(processor).build(),
        counters,
    )
}

fn end_spans(provider: &SdkTracerProvider) {
    let tracer = provider.tracer("shutdown-test");
    for i in 0..N {
        let mut s = tracer.start("work");
        s.set_attribute(KeyValue::new("i", i as i64));
        s.end();
    }
}

/// A receiver on its own thread and runtime, so the code under test can use any runtime or none.
fn sink_elsewhere() -> (String, Arc<common::Received>, std::sync::mpsc::Sender<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (addr, received) = common::grpc_sink().await;
            tx.send((format!("http://{addr}"), received)).unwrap();
            tokio::task::spawn_blocking(move || stop_rx.recv()).await.ok();
        });
    });
    let (endpoint, received) = rx.recv().unwrap();
    (endpoint, received, stop_tx)
}

#[test]
fn shutdown_flushes_with_no_runtime() {
    let (endpoint, received, _stop) = sink_elsewhere();
    let (provider, counters) = otlp_provider(endpoint);
    end_spans(&provider);
    provider.shutdown_with_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(received.span_count(), N);
    assert_eq!(counters.snapshot().exported, N as u64);
}

#[test]
fn shutdown_flushes_on_a_current_thread_runtime() {
    let (endpoint, received, _stop) = sink_elsewhere();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (provider, counters) = otlp_provider(endpoint);
        end_spans(&provider);
        // Called from inside the only runtime thread: must neither deadlock nor time out.
        let started = Instant::now();
        provider.shutdown_with_timeout(Duration::from_secs(20)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(counters.snapshot().exported, N as u64);
    });
    assert_eq!(received.span_count(), N);
}

#[test]
fn shutdown_flushes_on_a_multi_thread_runtime() {
    let (endpoint, received, _stop) = sink_elsewhere();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (provider, counters) = otlp_provider(endpoint);
        end_spans(&provider);
        provider.shutdown_with_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(counters.snapshot().exported, N as u64);
    });
    assert_eq!(received.span_count(), N);
}

#[test]
fn shutdown_never_hangs_past_its_deadline_when_the_receiver_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (provider, counters) = otlp_provider(format!("http://127.0.0.1:{port}"));
        end_spans(&provider);
        let started = Instant::now();
        let result = provider.shutdown_with_timeout(Duration::from_millis(1500));
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(result.is_err());
        assert_eq!(counters.snapshot().exported, 0);
    });
}

/// The worker takes spans as fast as producers hand them over (one-span
/// batches): the queue count must never run below what the channel holds, so
/// no producer sees it wrap, and every span is exported.
#[test]
fn producers_racing_the_worker_lose_nothing() {
    let exporter = SlowExporter::default();
    let processor = BatchSpanProcessor::builder(exporter.clone())
        .with_max_export_batch_size(1)
        .with_max_queue_size(100_000)
        .with_max_concurrent_exports(256)
        .build();
    let counters = processor.counters();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    std::thread::scope(|s| {
        for t in 0..8 {
            let tracer = provider.tracer("race");
            s.spawn(move || {
                for i in 0..5_000 {
                    let mut span = tracer.start("s");
                    span.set_attribute(KeyValue::new("i", i64::from(t * 10_000 + i)));
                    span.end();
                }
            });
        }
    });
    provider.shutdown().unwrap();
    let snapshot = counters.snapshot();
    assert_eq!(snapshot.dropped, 0, "{snapshot:?}");
    assert_eq!(exporter.exported.load(Ordering::SeqCst), 40_000, "{snapshot:?}");
}
