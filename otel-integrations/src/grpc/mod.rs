//! tonic gRPC middleware: a SERVER span per call (`package.Service/Method`,
//! `rpc.system=grpc`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`) and a
//! CLIENT span per call, with the context carried in the call metadata.
//!
//! Server spans are errors for UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
//! INTERNAL, UNAVAILABLE and DATA_LOSS; client spans for any non-OK status. The
//! status is read from the response headers (trailers-only replies) or trailers.
//!
//! ```no_run
//! use otel_integrations::grpc::{GrpcClientLayer, GrpcServerLayer};
//! use tower_layer::Layer;
//!
//! // Server: tonic::transport::Server::builder().layer(GrpcServerLayer::new())
//! let _server_layer = GrpcServerLayer::new();
//! // Client: wrap the channel, then build the generated client on it.
//! # fn wrap(channel: tonic::transport::Channel) {
//! let traced = GrpcClientLayer::new().layer(channel);
//! # let _ = traced; }
//! ```

use crate::http::{HttpClient, HttpClientLayer, HttpServer, HttpServerLayer};
use crate::propagation::Propagation;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Tracer, TracerProvider};
use tower_layer::Layer;

/// The gRPC server layer (wraps services in [`GrpcServer`]).
#[derive(Debug, Clone)]
pub struct GrpcServerLayer(HttpServerLayer);

/// A traced gRPC server service.
pub type GrpcServer<S> = HttpServer<S>;

/// A traced gRPC client service.
pub type GrpcClient<S> = HttpClient<S>;

impl Default for GrpcServerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServerLayer {
    /// Reads the caller's context with the global propagator.
    pub fn new() -> Self {
        GrpcServerLayer(HttpServerLayer::grpc(Propagation::Global))
    }

    /// Reads the caller's context with `propagator`.
    pub fn with_propagator(propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        GrpcServerLayer(HttpServerLayer::grpc(Propagation::custom(propagator)))
    }

    /// Records spans with `provider` (its resource names the service).
    /// Defaults to the global tracer provider.
    pub fn with_tracer_provider<P, T, Sp>(self, provider: &P) -> Self
    where
        P: TracerProvider<Tracer = T>,
        T: Tracer<Span = Sp> + Send + Sync + 'static,
        Sp: opentelemetry::trace::Span + Send + Sync + 'static,
    {
        GrpcServerLayer(self.0.with_tracer_provider(provider))
    }
}

impl<S> Layer<S> for GrpcServerLayer {
    type Service = GrpcServer<S>;

    fn layer(&self, inner: S) -> GrpcServer<S> {
        self.0.layer(inner)
    }
}

/// The gRPC client layer (wraps channels in [`GrpcClient`]).
#[derive(Debug, Clone)]
pub struct GrpcClientLayer(HttpClientLayer);

impl Default for GrpcClientLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcClientLayer {
    /// Writes the context with the global propagator.
    pub fn new() -> Self {
        GrpcClientLayer(HttpClientLayer::grpc(Propagation::Global))
    }

    /// Writes the context with `propagator`.
    pub fn with_propagator(propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        GrpcClientLayer(HttpClientLayer::grpc(Propagation::custom(propagator)))
    }

    /// Records spans with `provider` (its resource names the service).
    /// Defaults to the global tracer provider.
    pub fn with_tracer_provider<P, T, Sp>(self, provider: &P) -> Self
    where
        P: TracerProvider<Tracer = T>,
        T: Tracer<Span = Sp> + Send + Sync + 'static,
        Sp: opentelemetry::trace::Span + Send + Sync + 'static,
    {
        GrpcClientLayer(self.0.with_tracer_provider(provider))
    }
}

impl<S> Layer<S> for GrpcClientLayer {
    type Service = GrpcClient<S>;

    fn layer(&self, inner: S) -> GrpcClient<S> {
        self.0.layer(inner)
    }
}
