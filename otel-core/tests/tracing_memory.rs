//! A steady stream of `tracing` spans does not grow memory: span state is
//! pooled and closed spans are released once they reach the processors.
//! Counted with an instrumented global allocator (this file is its own
//! process, with one test).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use otel_core::Telemetry;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Counts spans and drops them (an exporter that keeps nothing).
#[derive(Debug, Default)]
struct Count(Arc<AtomicU64>);

impl SpanProcessor for Count {
    fn on_start(&self, _: &mut Span, _: &Context) {}
    fn on_end(&self, _: SpanData) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn burst(n: usize) {
    for i in 0..n {
        let root = tracing::info_span!("request", i, route = "/api/products/{id}");
        let _r = root.enter();
        let child = tracing::info_span!("query", rows = i as u64);
        let _c = child.enter();
        tracing::info!(cache = "miss", "loaded {i}");
    }
}

#[test]
fn memory_stays_flat_under_a_steady_stream_of_spans() {
    let count = Arc::new(AtomicU64::new(0));
    let handle = Telemetry::builder()
        .without_exporter()
        .with_span_processor(Count(count.clone()))
        .with_globals(false)
        .install()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(handle.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        // Warm up: pools, buffers and the registry's slab reach their size.
        for _ in 0..5 {
            burst(20_000);
            handle.force_flush().unwrap();
        }
        let region = Region::new(GLOBAL);
        let mut flat = 0;
        for _ in 0..20 {
            let window = Region::new(GLOBAL);
            burst(20_000);
            handle.force_flush().unwrap();
            let c = window.change();
            flat += usize::from(c.bytes_allocated == c.bytes_deallocated);
        }
        let change = region.change();
        let net = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
        // 400 000 spans went through (each holds more than 100 bytes while
        // open). Most windows of 20 000 end exactly where they began; when the
        // recorder thread falls behind, the pool of span states grows, up to
        // its bound (the batch queue size per thread), and stays there.
        assert!(
            net < 4 << 20,
            "memory grew by {net} bytes over 400 000 spans: {change:?}"
        );
        assert!(flat >= 10, "only {flat} of 20 windows ended flat: {change:?}");
    });
    assert_eq!(count.load(Ordering::Relaxed), 2 * 25 * 20_000);
    handle.shutdown(Duration::from_secs(5)).unwrap();
}
