//! OTLP export: encoding 1,000 realistic spans with our encoder beside
//! opentelemetry-proto's conversion + prost, in the same run.
//!
//! `cargo bench -p benches --bench export`

use benches::{Pair, print_ratios, spans};
use criterion::{Criterion, Throughput, criterion_group};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::SpanData;
use otel_export::encode::{Encoder, Encoding};
use prost::Message;
use std::hint::black_box;

const N: usize = 1000;

fn encoding(c: &mut Criterion) {
    let resource = spans::resource();
    let batch: Vec<SpanData> = (0..N as u64).map(spans::span).collect();
    let mut g = c.benchmark_group("encode_1000_spans");
    g.throughput(Throughput::Elements(N as u64));
    let mut encoder = Encoder::new(&resource);
    g.bench_function("ours", |b| {
        b.iter(|| black_box(encoder.encode(black_box(&batch), Encoding::Protobuf).len()))
    });
    let attrs = ResourceAttributesWithSchema::from(&resource);
    let mut buf = Vec::new();
    g.bench_function("opentelemetry_proto", |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| {
                // The SDK exporters' path: convert (consuming the batch), then encode.
                let request = ExportTraceServiceRequest {
                    resource_spans: group_spans_by_resource_and_scope(batch, &attrs),
                };
                buf.clear();
                request.encode(&mut buf).expect("a Vec grows as needed");
                black_box(buf.len())
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("ours_json", |b| {
        b.iter(|| black_box(encoder.encode(black_box(&batch), Encoding::Json).len()))
    });
    g.finish();
    let bytes = Encoder::new(&resource).encode(&batch, Encoding::Protobuf).len();
    println!(
        "encoded size: {} bytes for {N} spans ({} bytes per span)",
        bytes,
        bytes / N
    );
}

/// Spans per measured iteration: created, then flushed through to the sink.
const K: usize = 4096;

fn emit(tracer: &opentelemetry_sdk::trace::SdkTracer, n: usize) {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Span as _, Tracer as _};
    for i in 0..n {
        let mut span = tracer.start("GET /api/products/{id}");
        span.set_attribute(KeyValue::new("http.request.method", "GET"));
        span.set_attribute(KeyValue::new("http.route", "/api/products/{id}"));
        span.set_attribute(KeyValue::new("http.response.status_code", 200));
        span.set_attribute(KeyValue::new("server.address", "shop.example.com"));
        span.set_attribute(KeyValue::new("app.item", i as i64));
        span.end();
    }
}

struct Pipeline {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    sink: std::sync::Arc<benches::sink::SinkCounts>,
    created: u64,
}

fn end_to_end(c: &mut Criterion) {
    use opentelemetry::trace::TracerProvider as _;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let resource = spans::resource();

    // Ours: our processor and our gRPC exporter.
    let (addr, sink) = runtime.block_on(benches::sink::start());
    let exporter = otel_export::OtlpExporter::builder()
        .with_protocol(otel_export::Protocol::Grpc)
        .with_endpoint(format!("http://{addr}"))
        .build()
        .expect("valid endpoint");
    let processor = otel_export::BatchSpanProcessor::builder(exporter)
        .with_max_queue_size(K)
        .build();
    let ours_counters = processor.counters();
    let mut ours = Pipeline {
        provider: opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_span_processor(processor)
            .build(),
        sink,
        created: 0,
    };

    // The SDK's: its BatchSpanProcessor and opentelemetry-otlp over tonic (built
    // inside a Tokio runtime, which it requires).
    let (addr, sink) = runtime.block_on(benches::sink::start());
    let sdk_provider = benches::sdk_otlp_provider_for(&runtime, addr, K, resource);
    let mut sdk = Pipeline {
        provider: sdk_provider,
        sink,
        created: 0,
    };

    let mut g = c.benchmark_group("end_to_end_grpc");
    g.throughput(Throughput::Elements(K as u64));
    g.sample_size(20);
    for (name, p) in [("ours", &mut ours), ("sdk", &mut sdk)] {
        let tracer = p.provider.tracer("bench");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    emit(&tracer, K);
                    p.created += K as u64;
                    // Each iteration ends when its spans are delivered (or dropped).
                    let _ = p.provider.force_flush();
                }
                start.elapsed()
            })
        });
    }
    g.finish();
    for (name, p) in [("ours", &ours), ("sdk (BatchSpanProcessor + opentelemetry-otlp)", &sdk)] {
        let _ = p.provider.force_flush();
        let delivered = p.sink.spans();
        println!(
            "{name}: created {}, delivered {}, dropped {}",
            p.created,
            delivered,
            p.created.saturating_sub(delivered)
        );
    }
    println!("ours counters: {:?}", ours_counters.snapshot());
    let _ = ours.provider.shutdown();
    let _ = sdk.provider.shutdown();
}

criterion_group!(benches, encoding, end_to_end);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios(
        "OTLP protobuf encoding, 1,000 spans (10 attributes, 1 event)",
        &[
            Pair {
                label: "encode (target <= 0.25: 4x spans/s)",
                ours: "encode_1000_spans/ours",
                theirs: "encode_1000_spans/opentelemetry_proto",
                target: Some(0.25),
            },
            Pair {
                label: "end to end gRPC (target <= 0.33: 3x spans/s)",
                ours: "end_to_end_grpc/ours",
                theirs: "end_to_end_grpc/sdk",
                target: Some(1.0 / 3.0),
            },
        ],
    );
}
