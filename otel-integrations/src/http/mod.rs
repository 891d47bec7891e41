//! HTTP middleware for tower services: a SERVER span per request (axum 0.8,
//! hyper, any tower HTTP service) and a CLIENT span per outgoing request.
//!
//! Server side, with axum (add the layer with `Router::layer` so the route
//! template is known):
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use otel_integrations::http::HttpServerLayer;
//!
//! let app: Router = Router::new()
//!     .route("/api/products/{id}", get(|| async { "ok" }))
//!     .layer(HttpServerLayer::new());
//! ```
//!
//! Client side, around any tower HTTP client (hyper-util's `Client` is one):
//!
//! ```no_run
//! use otel_integrations::http::HttpClientLayer;
//! use tower_layer::Layer;
//! # fn wrap<S>(client: S) -> otel_integrations::http::HttpClient<S> {
//! HttpClientLayer::new().layer(client)
//! # }
//! ```

mod body;
mod client;
mod server;
mod url;

pub use body::TracedBody;
#[cfg(feature = "reqwest")]
pub(crate) use client::{ClientConfig, Target, client_options, record_failure};
pub use client::{
    ClientFilterFn, ClientFuture, ClientRequest, ClientRequestAttributesFn, HttpClient, HttpClientLayer, inject_context,
};
pub use server::{
    ErrorStatusFn, FilterFn, HttpServer, HttpServerLayer, RequestAttributesFn, ResponseAttributesFn, ResponseFuture,
    RouteFn,
};
pub use url::QueryValues;

/// The instrumentation scope of the spans this module creates.
pub const TRACER_NAME: &str = crate::tracer::SCOPE;

/// `network.protocol.version` of an HTTP version.
pub(crate) fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "unknown",
    }
}

/// `http.request.method`: the known methods as they are, others `_OTHER`
/// (the original then goes in `http.request.method_original`).
pub(crate) fn method_name(m: &http::Method) -> (&'static str, bool) {
    match *m {
        http::Method::GET => ("GET", true),
        http::Method::POST => ("POST", true),
        http::Method::PUT => ("PUT", true),
        http::Method::DELETE => ("DELETE", true),
        http::Method::HEAD => ("HEAD", true),
        http::Method::OPTIONS => ("OPTIONS", true),
        http::Method::PATCH => ("PATCH", true),
        http::Method::CONNECT => ("CONNECT", true),
        http::Method::TRACE => ("TRACE", true),
        _ => ("_OTHER", false),
    }
}
