//! Context propagation for OpenTelemetry: W3C Trace Context Level 2, W3C Baggage
//! and B3, with carriers for HTTP headers, gRPC metadata and AMQP message headers.
//!
//! Every propagator implements opentelemetry's [`TextMapPropagator`], so it plugs
//! into `opentelemetry::global::set_text_map_propagator` and into any code that
//! takes a propagator. A direct API ([`traceparent`], [`tracestate`]) parses and
//! formats header values without allocating.
//!
//! # Quick start
//!
//! ```
//! use opentelemetry::trace::TraceContextExt;
//! use otel_propagation::carrier::http::{extract, inject};
//! use otel_propagation::{BaggagePropagator, CompositePropagator, TraceContextPropagator};
//!
//! let propagator = CompositePropagator::new(vec![
//!     Box::new(TraceContextPropagator::new()),
//!     Box::new(BaggagePropagator::new()),
//! ]);
//!
//! // Server side: read the caller's context from the request headers.
//! let mut incoming = http::HeaderMap::new();
//! incoming.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
//! incoming.insert("baggage", "tenant=acme".parse().unwrap());
//! let cx = extract(&propagator, &incoming);
//! assert!(cx.span().span_context().is_remote());
//!
//! // Client side: write it into an outgoing request.
//! let mut outgoing = http::HeaderMap::new();
//! inject(&propagator, &cx, &mut outgoing);
//! assert_eq!(outgoing["baggage"], "tenant=acme");
//! ```
//!
//! # Features
//!
//! - `http` (default): [`carrier::http`] for `http::HeaderMap`.
//! - `tonic`: [`carrier::tonic`] for tonic's `MetadataMap`.
//! - `lapin`: [`carrier::lapin`] for lapin's AMQP `FieldTable`.
//!
//! # Behaviour on bad input
//!
//! Nothing here panics on input. An invalid `traceparent` (or two of them)
//! yields no parent, so the next span starts a new trace, and its `tracestate`
//! is ignored; an invalid `tracestate` is dropped without touching a valid
//! `traceparent`; a malformed baggage member is skipped alone.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod b3;
pub mod baggage;
pub mod carrier;
mod composite;
mod config_error;
mod hex;
mod lex;
mod names;
mod trace_context;
pub mod traceparent;
pub mod tracestate;

pub use b3::{B3Encoding, B3Propagator};
pub use baggage::{BAGGAGE_HEADER, BaggagePropagator, decode_baggage, encode_baggage};
pub use composite::{BoxedPropagator, CompositePropagator};
pub use config_error::ConfigError;
pub use names::{KNOWN_PROPAGATORS, PropagatorNameError, propagator_from_names};
pub use trace_context::{TRACEPARENT_HEADER, TRACESTATE_HEADER, TraceContextPropagator};

/// Re-exported so users name one `TextMapPropagator` whatever crate they start from.
pub use opentelemetry::propagation::TextMapPropagator;
