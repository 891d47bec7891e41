//! Traces without tracing code: wrap the router, wrap the gRPC server and
//! client, publish and consume through these helpers, add one subscriber layer.
//!
//! Every span follows the OpenTelemetry semantic conventions for HTTP, RPC and
//! messaging, continues the caller's trace (read with the global propagator,
//! which `otel-core` installs, or one you give), and is current while your code
//! runs, so your own spans and log lines attach to it. Spans come from the
//! global tracer provider, or from one you give (`with_tracer_provider`), so
//! one process can host several services, each with its own resource.
//!
//! # Features
//!
//! - `http` (default): [`http::HttpServerLayer`] (axum 0.8, hyper, any tower
//!   service) and [`http::HttpClientLayer`].
//! - `axum` (default): route templates from axum's `MatchedPath` and
//!   `client.address` from its `ConnectInfo`. Without it, hyper-only services
//!   build without axum and name routes with `HttpServerLayer::with_route_fn`.
//! - `reqwest`: [`reqwest::TracingMiddleware`], a CLIENT span per reqwest request.
//! - `grpc`: [`grpc::GrpcServerLayer`] and [`grpc::GrpcClientLayer`] for tonic.
//! - `amqp`: [`amqp::publish`] and [`amqp::process`] for lapin.
//! - `tracing`: [`logs`], trace ids in tracing-subscriber's `fmt` output
//!   (re-exported from `otel_core::logs`).
//!
//! # Quick start
//!
//! ```
//! use axum::{routing::get, Router};
//! use otel_integrations::http::HttpServerLayer;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app: Router = Router::new()
//!     .route("/api/products/{id}", get(|| async { "[]" }))
//!     .layer(HttpServerLayer::new()); // a SERVER span "GET /api/products/{id}" per request
//! // Served with axum::serve(listener, app); here, one request in memory:
//! let request = http::Request::get("/api/products/7")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The OpenTelemetry API our signatures use (`KeyValue`, propagators,
/// tracer providers): name it from here and no second version is pulled.
pub use opentelemetry;

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
/// Trace ids in log lines: the layers of [`otel_core::logs`], which moved
/// there beside the `tracing` layer that records the spans they read.
#[cfg(feature = "tracing")]
pub mod logs {
    pub use otel_core::logs::*;
}
#[cfg(any(feature = "http", feature = "amqp"))]
mod propagation;
#[cfg(feature = "reqwest")]
pub mod reqwest;
#[cfg(any(feature = "http", feature = "amqp"))]
mod tracer;
