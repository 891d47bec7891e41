//! OTLP export for OpenTelemetry spans: a batch span processor that never
//! blocks the application or drops a span without counting it, and OTLP
//! exporters over gRPC, HTTP/protobuf and HTTP/JSON with our own encoder.
//!
//! Both plug into opentelemetry_sdk: [`BatchSpanProcessor`] is a
//! `SpanProcessor` taking any `SpanExporter`; [`OtlpExporter`] is a
//! `SpanExporter` usable with any processor.
//!
//! # Quick start
//!
//! ```
//! use opentelemetry::trace::{Tracer, TracerProvider};
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use otel_export::BatchSpanProcessor;
//!
//! // Any SpanExporter works behind the processor; OtlpExporter is ours (below).
//! let exporter = InMemorySpanExporter::default();
//! let processor = BatchSpanProcessor::builder(exporter.clone()).build();
//! let counters = processor.counters();
//! let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
//! provider.tracer("checkout").in_span("charge card", |_| {});
//! provider.force_flush().expect("flushed");
//! assert_eq!(exporter.get_finished_spans().unwrap().len(), 1);
//! assert_eq!(counters.snapshot().exported, 1);
//! ```
//!
//! With OTLP, configured by `OTEL_EXPORTER_OTLP_*` (endpoint, protocol,
//! headers, compression, timeout, TLS):
//!
//! ```no_run
//! use otel_export::{BatchSpanProcessor, OtlpExporter};
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//!
//! let exporter = OtlpExporter::from_env().expect("valid OTEL_EXPORTER_OTLP_* settings");
//! let processor = BatchSpanProcessor::builder(exporter).build();
//! let counters = processor.counters();
//! let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
//! // ... spans ...
//! provider.shutdown().ok();
//! println!("{:?}", counters.snapshot());
//! ```
//!
//! # Features
//!
//! - `http` (default): OTLP/HTTP, protobuf and JSON.
//! - `grpc` (default): OTLP/gRPC, and [`RawCodec`] for forwarding.
//! - `tls` (default): `https://` endpoints for either transport.
//! - `zstd`: `OTEL_EXPORTER_OTLP_COMPRESSION=zstd` (gzip is always there).
//!
//! A setting that needs a feature this build lacks fails
//! [`OtlpExporterBuilder::build`] with an error naming the feature.
//! The JSON encoding is always built: it is our own code, with no dependency.
//!
//! # What is counted
//!
//! See [`Counters`]: spans enqueued, exported, dropped (queue full), failed,
//! rejected by the receiver (partial success), and retries.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod analysis;
pub mod config;
mod counters;
pub mod encode;
// Builds without a transport or TLS leave parts of the shared code unused.
#[cfg_attr(
    not(all(feature = "http", feature = "grpc", feature = "tls")),
    allow(dead_code, unused_mut, unused_imports)
)]
mod exporter;
mod processor;
// Shared with `otel-collector`, which reads and writes OTLP wire bytes with
// it; not part of this crate's supported API (docs/adr/0009).
#[doc(hidden)]
#[cfg(feature = "tls")]
pub mod tls;
pub mod wire;

pub use config::{ConfigError, EnvMode, EnvReader};
pub use counters::{Counters, CountersSnapshot};
pub use exporter::{
    Compression, DEFAULT_GRPC_ENDPOINT, DEFAULT_GZIP_LEVEL, DEFAULT_HTTP_ENDPOINT, DEFAULT_TIMEOUT, DEFAULT_ZSTD_LEVEL,
    OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_COMPRESSION, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_INSECURE, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_TRACES_INSECURE, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OtlpExporter, OtlpExporterBuilder, Protocol, RetryPolicy,
};
#[cfg(feature = "grpc")]
pub use exporter::{RawCodec, RawDecoder, RawEncoder};
pub use processor::{
    BatchConfig, BatchSpanProcessor, BatchSpanProcessorBuilder, DEFAULT_EXPORT_TIMEOUT, DEFAULT_MAX_CONCURRENT_EXPORTS,
    DEFAULT_MAX_EXPORT_BATCH_SIZE, DEFAULT_MAX_QUEUE_SIZE, DEFAULT_SCHEDULE_DELAY, OTEL_BSP_EXPORT_TIMEOUT,
    OTEL_BSP_MAX_CONCURRENT_EXPORTS, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_SCHEDULE_DELAY,
};
