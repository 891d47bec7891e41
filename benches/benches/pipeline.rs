//! Per-span cost of the installed pipeline (otel-core: our sampler, batch
//! processor and OTLP exporter) beside a hand-built opentelemetry_sdk +
//! BatchSpanProcessor + opentelemetry-otlp pipeline, each also under tracing +
//! tracing-opentelemetry, in the same run.
//!
//! Only span start and end are timed; after each chunk of spans the pipeline
//! is flushed outside the timing, so queues never overflow and every span is
//! delivered (the share delivered is printed at the end).
//!
//! `cargo bench -p benches --bench pipeline`

use benches::{Pair, print_ratios};
use criterion::{Criterion, criterion_group};
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;

/// Spans per timed chunk; the queues hold at least this many.
const CHUNK: u64 = 2048;

struct Pipeline {
    name: &'static str,
    tracer: SdkTracer,
    flush: Box<dyn Fn()>,
    sink: Arc<benches::sink::SinkCounts>,
    created: std::cell::Cell<u64>,
}

fn attributes() -> [KeyValue; 5] {
    [
        KeyValue::new("http.request.method", "GET"),
        KeyValue::new("http.route", "/api/products/{id}"),
        KeyValue::new("http.response.status_code", 200),
        KeyValue::new("server.address", "shop.example.com"),
        KeyValue::new("server.port", 443),
    ]
}

/// Runs `iters` spans through `one`, flushing after each chunk outside the timing.
fn timed(p: &Pipeline, iters: u64, mut one: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        for _ in 0..n {
            one();
        }
        total += start.elapsed();
        p.created.set(p.created.get() + n);
        (p.flush)();
        left -= n;
    }
    total
}

fn bench_pipeline(c: &mut Criterion, p: &Pipeline) {
    let tracer = &p.tracer;
    let mut g = c.benchmark_group("span_0_attributes");
    g.bench_function(p.name, |b| {
        b.iter_custom(|iters| timed(p, iters, || tracer.start(black_box("op")).end()))
    });
    g.finish();

    let mut g = c.benchmark_group("span_5_attributes");
    g.bench_function(p.name, |b| {
        b.iter_custom(|iters| {
            timed(p, iters, || {
                tracer
                    .span_builder(black_box("op"))
                    .with_attributes(attributes())
                    .start(tracer)
                    .end()
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("child_in_parent");
    let parent = Context::new().with_span(tracer.start("parent"));
    g.bench_function(p.name, |b| {
        b.iter_custom(|iters| {
            timed(p, iters, || {
                tracer.start_with_context(black_box("child"), &parent).end()
            })
        })
    });
    g.finish();
    parent.span().end();

    // The same through tracing + tracing-opentelemetry.
    let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let mut g = c.benchmark_group("tracing_span_0_attributes");
        g.bench_function(p.name, |b| {
            b.iter_custom(|iters| timed(p, iters, || drop(tracing::info_span!("op").entered())))
        });
        g.finish();
        let mut g = c.benchmark_group("tracing_span_5_attributes");
        g.bench_function(p.name, |b| {
            b.iter_custom(|iters| {
                timed(p, iters, || {
                    drop(
                        tracing::info_span!(
                            "op",
                            http.request.method = "GET",
                            http.route = "/api/products/{id}",
                            http.response.status_code = 200,
                            server.address = "shop.example.com",
                            server.port = 443
                        )
                        .entered(),
                    )
                })
            })
        });
        g.finish();
        let mut g = c.benchmark_group("tracing_child_in_parent");
        let parent = tracing::info_span!("parent").entered();
        g.bench_function(p.name, |b| {
            b.iter_custom(|iters| timed(p, iters, || drop(tracing::info_span!("child").entered())))
        });
        g.finish();
        drop(parent);
    });
}

fn pipelines(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");

    let (addr, sink) = runtime.block_on(benches::sink::start());
    let handle = otel_core::Telemetry::builder()
        .with_service_name("bench")
        .with_otlp(
            otel_core::otel_export::OtlpExporter::builder()
                .with_protocol(otel_core::otel_export::Protocol::Grpc)
                .with_endpoint(format!("http://{addr}")),
        )
        .with_batch_config(otel_core::otel_export::BatchConfig {
            max_queue_size: 2 * CHUNK as usize,
            ..Default::default()
        })
        .with_globals(false)
        .install()
        .expect("valid settings");
    let ours_counters = handle.counters();
    let handle = Arc::new(handle);
    let h = handle.clone();
    let ours = Pipeline {
        name: "ours",
        tracer: handle.tracer("bench"),
        flush: Box::new(move || {
            let _ = h.force_flush();
        }),
        sink,
        created: 0.into(),
    };

    let (addr, sink) = runtime.block_on(benches::sink::start());
    let provider = benches::sdk_otlp_provider(&runtime, addr, 2 * CHUNK as usize);
    let p = provider.clone();
    let sdk = Pipeline {
        name: "sdk",
        tracer: provider.tracer("bench"),
        flush: Box::new(move || {
            let _ = p.force_flush();
        }),
        sink,
        created: 0.into(),
    };

    bench_pipeline(c, &ours);
    bench_pipeline(c, &sdk);

    for p in [&ours, &sdk] {
        (p.flush)();
        let delivered = p.sink.spans();
        // Parent spans of the child benchmarks are counted too.
        let created = p.created.get() + 2;
        println!(
            "{}: created {created}, delivered {delivered} ({:.2}%), dropped {}",
            p.name,
            100.0 * delivered as f64 / created as f64,
            created.saturating_sub(delivered)
        );
    }
    println!("ours counters: {:?}", ours_counters.snapshot());
    let _ = handle.shutdown(Duration::from_secs(5));
    let _ = provider.shutdown();
}

criterion_group!(benches, pipelines);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let pair = |label, group: &'static str| Pair {
        label,
        ours: Box::leak(format!("{group}/ours").into_boxed_str()),
        theirs: Box::leak(format!("{group}/sdk").into_boxed_str()),
        target: Some(1.0),
    };
    print_ratios(
        "per-span cost, installed pipeline vs SDK + BatchSpanProcessor + opentelemetry-otlp",
        &[
            pair("start+end, 0 attributes", "span_0_attributes"),
            pair("start+end, 5 attributes", "span_5_attributes"),
            pair("child in parent", "child_in_parent"),
            pair("tracing: 0 attributes", "tracing_span_0_attributes"),
            pair("tracing: 5 attributes", "tracing_span_5_attributes"),
            pair("tracing: child in parent", "tracing_child_in_parent"),
        ],
    );
}
