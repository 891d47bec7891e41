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

criterion_group!(benches, encoding);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios(
        "OTLP protobuf encoding, 1,000 spans (10 attributes, 1 event)",
        &[Pair {
            label: "encode (ratio < 1: faster; target <= 0.25 = 4x spans/s)",
            ours: "encode_1000_spans/ours",
            theirs: "encode_1000_spans/opentelemetry_proto",
            target: Some(0.25),
        }],
    );
}
