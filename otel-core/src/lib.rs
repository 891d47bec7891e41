//! The crate a service adds first: one call installs OpenTelemetry tracing,
//! configured by code and by the standard `OTEL_*` variables, with resource
//! detection, span helpers and an explicit shutdown.
//!
//! It wires the family together and stays thin: sampling is
//! [`otel_sampling`], export [`otel_export`], propagation [`otel_propagation`].
//! `opentelemetry` and `opentelemetry_sdk` are re-exported, so depending on
//! `otel-core` alone never brings a second version of them.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//!
//! // `from_env` reads the OTEL_* variables; here spans are printed instead of
//! // exported (drop both lines to export OTLP to OTEL_EXPORTER_OTLP_ENDPOINT,
//! // or keep only the second to do both).
//! let telemetry = otel_core::Telemetry::from_env()
//!     .with_service_name("checkout")
//!     .without_exporter()
//!     .with_console_exporter()
//!     .install()
//!     .expect("valid OTEL_* settings");
//!
//! otel_core::in_span("startup", |_cx| {
//!     otel_core::in_span("load config", |_| {});
//! });
//!
//! telemetry.shutdown(Duration::from_secs(5)).expect("flushed");
//! ```
//!
//! # What `install` sets up
//!
//! An `SdkTracerProvider` with our sampler (`OTEL_TRACES_SAMPLER`, default
//! `parentbased_always_on`), our batch processor (`OTEL_BSP_*`) and OTLP
//! exporter (`OTEL_EXPORTER_OTLP_*`, or `OTEL_TRACES_EXPORTER=console|none`),
//! a detected resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, host,
//! process, Kubernetes), span limits (`OTEL_*_COUNT_LIMIT`,
//! `OTEL_*_VALUE_LENGTH_LIMIT`), and the global propagator (`OTEL_PROPAGATORS`,
//! default W3C Trace Context + Baggage). `OTEL_SDK_DISABLED=true` installs
//! nothing. Bad values warn and fall back to the specification's defaults, or
//! fail with [`TelemetryBuilder::strict`]. The warnings are `tracing` events
//! (lines on stderr when no global subscriber is installed before `install`),
//! also kept in [`TelemetryHandle::warnings`].
//!
//! # One file instead of twenty variables
//!
//! `OTEL_CONFIG_FILE` (or [`TelemetryBuilder::with_config_file`]) names a
//! YAML file in the OpenTelemetry configuration data model (`file_format`
//! 1.x): resource, propagators, processors and exporters, limits and samplers,
//! with `${NAME:-default}` references to the environment. While it is set the
//! other `OTEL_*` variables are not read; settings made in code still win.
//! What is read, and how problems are reported: [`config_file`]. Examples:
//! `examples/config/`.
//!
//! # Features
//!
//! - `http`, `grpc`, `tls` (default): the OTLP transports and `https://`.
//! - `yaml` (default): `OTEL_CONFIG_FILE`, and YAML sampling-rules files.
//! - `zstd`: zstd compression of OTLP requests.
//! - `testing`: [`testing::InMemoryExporter`] and [`testing::render_trace`].
//! - `tracing-opentelemetry`: log lines also read tracing-opentelemetry's spans.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "yaml")]
pub mod config_file;
mod console;
pub mod db;
pub mod env;
pub mod layer;
mod limits;
pub mod logs;
pub mod resource;
pub mod spans;
mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use console::{ConsoleExporter, format_span};
pub use layer::{OpenTelemetrySpanExt, SetParentError, TracingLayer};
pub use limits::ValueLengthLimit;
pub use spans::{FutureSpanExt, in_span, record_error, span};
pub use telemetry::{
    DEFAULT_LOG_FILTER, DEFAULT_SHUTDOWN_TIMEOUT, InstallError, LogFormat, RUST_LOG, ShutdownError, ShutdownReport,
    Telemetry, TelemetryBuilder, TelemetryHandle,
};

/// The OpenTelemetry API this crate is built on.
pub use opentelemetry;
/// The OpenTelemetry SDK this crate is built on.
pub use opentelemetry_sdk;
/// Semantic-convention attribute names.
pub use opentelemetry_semantic_conventions as semconv;
/// The `tracing` crate our layer records (and [`db_span!`] expands to).
pub use tracing;
/// The `tracing` subscriber crate our layers plug into.
pub use tracing_subscriber;
/// The sibling crates, for their settings types.
pub use {otel_export, otel_propagation, otel_sampling};
