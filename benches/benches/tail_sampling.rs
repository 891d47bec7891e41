//! Tail sampling: ingest + decide throughput on realistic 8-span traces with
//! the seed policy set (errors, latency over 1 s, 10% probabilistic), and the
//! memory a buffered span retains.
//!
//! The peer is the Go Collector's `tail_sampling` processor, which cannot run
//! on this machine (no Go toolchain or module proxy); its documented figure,
//! about 460 bytes retained per buffered span, is printed beside ours.

use benches::spans::{resource, trace};
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use opentelemetry_sdk::trace::SpanData;
use otel_collector::{KeptBy, TailSampler, TailSamplerBuilder, TailSamplingConfig, TraceSink};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SEED_POLICIES: &str = r#"
decision_wait: 10s
num_traces: 200000
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
  - name: slow-traces
    type: latency
    latency: {threshold_ms: 1000}
  - name: probabilistic
    type: probabilistic
    probabilistic: {sampling_percentage: 10}
"#;

const TRACES_PER_ITER: u64 = 1000;
const SPANS_PER_TRACE: u64 = 8;

#[derive(Debug, Default)]
struct Count {
    traces: AtomicU64,
    spans: AtomicU64,
}

impl<T> TraceSink<T> for Count {
    fn keep(&self, _trace_id: [u8; 16], spans: Vec<T>, _kept_by: KeptBy<'_>) {
        self.traces.fetch_add(1, Ordering::Relaxed);
        self.spans.fetch_add(spans.len() as u64, Ordering::Relaxed);
    }
}

fn engine<T: Send + 'static>(count: &Arc<Count>) -> TailSampler<T> {
    let config = TailSamplingConfig::from_yaml(SEED_POLICIES).expect("seed policies parse");
    let sink: Arc<dyn TraceSink<T>> = count.clone();
    TailSamplerBuilder::new(config).without_timer().build(sink)
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("tail_sampling");
    g.throughput(Throughput::Elements(TRACES_PER_ITER * SPANS_PER_TRACE));
    let count = Arc::new(Count::default());
    let sampler: TailSampler<SpanData> = engine(&count);
    let res = sampler.resource_match(&resource());
    let mut next = 0u64;
    g.bench_function("ingest_decide", |b| {
        b.iter_batched(
            || {
                let batch: Vec<SpanData> = (next..next + TRACES_PER_ITER).flat_map(trace).collect();
                next += TRACES_PER_ITER;
                batch
            },
            |batch| {
                for span in batch {
                    sampler.ingest(&res, span);
                }
                sampler.decide_all();
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
    let s = sampler.stats();
    println!(
        "decided {} traces: kept {} ({:.1}%), {} spans kept; evicted {}",
        s.traces_sampled + s.traces_not_sampled,
        s.traces_sampled,
        100.0 * s.traces_sampled as f64 / (s.traces_sampled + s.traces_not_sampled).max(1) as f64,
        count.spans.load(Ordering::Relaxed),
        s.evicted
    );
}

/// Net heap bytes held after `f` runs.
fn retained(f: impl FnOnce()) -> i64 {
    let region = Region::new(GLOBAL);
    f();
    let s = region.change();
    // Reallocations are already in bytes_allocated / bytes_deallocated.
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

fn memory() {
    const TRACES: u64 = 20_000;
    let spans = (TRACES * SPANS_PER_TRACE) as f64;

    // In-process: the SDK's SpanData, as the provider hands it over.
    let count = Arc::new(Count::default());
    let sampler: TailSampler<SpanData> = engine(&count);
    let res = sampler.resource_match(&resource());
    let span_data = retained(|| {
        for n in 0..TRACES {
            for span in trace(n) {
                sampler.ingest(&res, span);
            }
        }
    });
    assert_eq!(sampler.buffered_traces() as u64, TRACES);

    // Sidecar-style: each span kept as its OTLP bytes.
    let wire: TailSampler<Box<[u8]>> = engine(&count);
    let mut payload = 0usize;
    let wire_bytes = retained(|| {
        for n in 0..TRACES {
            for span in trace(n) {
                let len = otel_export::encode::span_encoded_len(&span);
                payload += len;
                wire.ingest_with(&res, &span, vec![0u8; len].into_boxed_slice());
            }
        }
    });
    assert_eq!(wire.buffered_traces() as u64, TRACES);

    println!();
    println!("== tail sampling: retained bytes per buffered span ({TRACES} traces, {spans} spans) ==");
    println!(
        "{:<52} {:>10}",
        "stored as SpanData (in-process)",
        format!("{:.0} B", span_data as f64 / spans)
    );
    println!(
        "{:<52} {:>10}   ({:.0} B of it the span's own OTLP bytes)",
        "stored as OTLP wire bytes (sidecar)",
        format!("{:.0} B", wire_bytes as f64 / spans),
        payload as f64 / spans
    );
    println!("{:<52} {:>10}", "Go tail_sampling processor (documented)", "~460 B");
    println!(
        "wire-storage ratio ours / Go: {:.2}",
        (wire_bytes as f64 / spans) / 460.0
    );
}

criterion_group!(benches, throughput);

fn main() {
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
    memory();
}
