//! The HTTP server middleware.

use super::body::{GrpcRole, TracedBody, grpc_status, record_grpc_status};
use super::{method_name, protocol_version};
use crate::propagation::Propagation;
use crate::tracer::TracerSource;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use otel_propagation::carrier::http::HeaderExtractor;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tower_layer::Layer;
use tower_service::Service;

/// Maps a request to its route template (`/users/{id}`), for services that are
/// not axum routers. Must return a template, never the raw path.
pub type RouteFn = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;
/// Whether a request gets a span (see [`HttpServerLayer::with_filter`]).
pub type FilterFn = Arc<dyn Fn(&http::request::Parts) -> bool + Send + Sync>;
/// Attributes from a request, known when the span starts.
pub type RequestAttributesFn = Arc<dyn Fn(&http::request::Parts) -> Vec<KeyValue> + Send + Sync>;
/// Attributes from a response's status and headers.
pub type ResponseAttributesFn = Arc<dyn Fn(http::StatusCode, &http::HeaderMap) -> Vec<KeyValue> + Send + Sync>;
/// Whether a response status makes the span an error.
pub type ErrorStatusFn = Arc<dyn Fn(http::StatusCode) -> bool + Send + Sync>;

#[derive(Clone)]
pub(crate) struct ServerConfig {
    pub(crate) route: Option<RouteFn>,
    pub(crate) propagation: Propagation,
    pub(crate) grpc: bool,
    pub(crate) tracer: TracerSource,
    pub(crate) filter: Option<FilterFn>,
    pub(crate) on_request: Option<RequestAttributesFn>,
    pub(crate) on_response: Option<ResponseAttributesFn>,
    pub(crate) is_error: Option<ErrorStatusFn>,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("route_fn", &self.route.is_some())
            .field("propagation", &self.propagation)
            .field("grpc", &self.grpc)
            .field("tracer", &self.tracer)
            .field("filter", &self.filter.is_some())
            .field("on_request", &self.on_request.is_some())
            .field("on_response", &self.on_response.is_some())
            .field("is_error", &self.is_error.is_some())
            .finish()
    }
}

/// A [`Layer`] that wraps HTTP services in [`HttpServer`].
#[derive(Debug, Clone)]
pub struct HttpServerLayer {
    config: Arc<ServerConfig>,
}

impl Default for HttpServerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpServerLayer {
    /// Spans named from axum's `MatchedPath`; context read with the global propagator.
    pub fn new() -> Self {
        HttpServerLayer {
            config: Arc::new(ServerConfig {
                route: None,
                propagation: Propagation::Global,
                grpc: false,
                tracer: TracerSource::Global,
                filter: None,
                on_request: None,
                on_response: None,
                is_error: None,
            }),
        }
    }

    /// The route template when axum's `MatchedPath` is absent (plain hyper/tower
    /// services). Without either, spans are named by the method alone.
    pub fn with_route_fn(
        mut self,
        route: impl Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.config).route = Some(Arc::new(route));
        self
    }

    /// Which requests get a span: those for which `filter` returns true (for
    /// example, not health and metrics probes). The others pass through
    /// untouched, with the caller's context current. Defaults to every request.
    ///
    /// ```
    /// use otel_integrations::http::HttpServerLayer;
    ///
    /// let layer = HttpServerLayer::new()
    ///     .with_filter(|req| !matches!(req.uri.path(), "/healthz" | "/readyz" | "/metrics"));
    /// # drop(layer);
    /// ```
    pub fn with_filter(mut self, filter: impl Fn(&http::request::Parts) -> bool + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.config).filter = Some(Arc::new(filter));
        self
    }

    /// Adds attributes from each request, at the span's start (so samplers see
    /// them), after the semantic-convention ones. Defaults to none.
    pub fn with_request_attributes(
        mut self,
        attributes: impl Fn(&http::request::Parts) -> Vec<KeyValue> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.config).on_request = Some(Arc::new(attributes));
        self
    }

    /// Adds attributes from each response's status and headers. Defaults to none.
    pub fn with_response_attributes(
        mut self,
        attributes: impl Fn(http::StatusCode, &http::HeaderMap) -> Vec<KeyValue> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.config).on_response = Some(Arc::new(attributes));
        self
    }

    /// Which response statuses make the span an error. Defaults to 5xx (the
    /// semantic conventions: a 4xx is the client's error, not the server's).
    pub fn with_error_statuses(mut self, is_error: impl Fn(http::StatusCode) -> bool + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.config).is_error = Some(Arc::new(is_error));
        self
    }

    /// Reads the caller's context with `propagator`. Defaults to the global propagator.
    pub fn with_propagator(mut self, propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.config).propagation = Propagation::custom(propagator);
        self
    }

    /// Records spans with `provider` (its resource names the service).
    /// Defaults to the global tracer provider.
    pub fn with_tracer_provider<P, T, Sp>(mut self, provider: &P) -> Self
    where
        P: TracerProvider<Tracer = T>,
        T: Tracer<Span = Sp> + Send + Sync + 'static,
        Sp: opentelemetry::trace::Span + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.config).tracer = TracerSource::from_provider(provider);
        self
    }

    #[cfg(feature = "grpc")]
    pub(crate) fn grpc(propagation: Propagation) -> Self {
        HttpServerLayer {
            config: Arc::new(ServerConfig {
                route: None,
                propagation,
                grpc: true,
                tracer: TracerSource::Global,
                filter: None,
                on_request: None,
                on_response: None,
                is_error: None,
            }),
        }
    }
}

impl<S> Layer<S> for HttpServerLayer {
    type Service = HttpServer<S>;

    fn layer(&self, inner: S) -> HttpServer<S> {
        HttpServer {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Traces each request with a SERVER span: named `{method} {route}`, child of
/// the caller's propagated context, current while the inner service runs, with
/// HTTP semantic-convention attributes, ERROR on 5xx, ended when the response
/// body has been sent.
#[derive(Debug, Clone)]
pub struct HttpServer<S> {
    inner: S,
    config: Arc<ServerConfig>,
}

impl<S> HttpServer<S> {
    /// Wraps `inner` with default settings.
    pub fn new(inner: S) -> Self {
        HttpServerLayer::new().layer(inner)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// `server.address` and `server.port` from the URI authority or the Host header.
fn server_address(parts: &http::request::Parts) -> Option<(String, Option<u16>)> {
    if let Some(auth) = parts.uri.authority() {
        return Some((auth.host().to_owned(), auth.port_u16()));
    }
    let host = parts.headers.get(http::header::HOST)?.to_str().ok()?;
    let auth: http::uri::Authority = host.parse().ok()?;
    Some((auth.host().to_owned(), auth.port_u16()))
}

/// `client.address`: the first `X-Forwarded-For` hop, else the peer from
/// axum's `ConnectInfo` (feature `axum`).
fn client_address(parts: &http::request::Parts) -> Option<String> {
    if let Some(xff) = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok())
        && let Some(first) = xff.split(',').next().map(str::trim).filter(|s| !s.is_empty())
    {
        return Some(first.to_owned());
    }
    #[cfg(feature = "axum")]
    if let Some(ci) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(ci.0.ip().to_string());
    }
    None
}

/// The route template: axum's `MatchedPath` (feature `axum`), else the
/// service's route function.
fn route_template(parts: &http::request::Parts, route_fn: Option<&RouteFn>) -> Option<String> {
    #[cfg(feature = "axum")]
    if let Some(matched) = parts.extensions.get::<axum::extract::MatchedPath>() {
        return Some(matched.as_str().to_owned());
    }
    route_fn.and_then(|f| f(parts))
}

/// What a gRPC request's path says: (`package.Service/Method`, service, method).
pub(crate) fn grpc_names(path: &str) -> Option<(String, String, String)> {
    let trimmed = path.strip_prefix('/')?;
    let (service, method) = trimmed.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((trimmed.to_owned(), service.to_owned(), method.to_owned()))
}

impl<S, ReqB, ResB> Service<http::Request<ReqB>> for HttpServer<S>
where
    S: Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    S::Error: fmt::Display,
    ResB: http_body::Body,
    ResB::Error: fmt::Display,
{
    type Response = http::Response<TracedBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let parent = self.config.propagation.extract(&HeaderExtractor(&parts.headers));
        if let Some(filter) = &self.config.filter
            && !filter(&parts)
        {
            // No span; the caller's context is still current for the handler.
            let future = {
                let _guard = parent.clone().attach();
                self.inner.call(http::Request::from_parts(parts, body))
            };
            return ResponseFuture {
                inner: future,
                cx: Some(parent),
                grpc: None,
                config: None,
                traced: false,
            };
        }

        let (name, mut attributes) = if self.config.grpc {
            grpc_span(&parts)
        } else {
            http_span(&parts, self.config.route.as_ref())
        };
        if let Some(on_request) = &self.config.on_request {
            attributes.extend(on_request(&parts));
        }
        let span = self.config.tracer.with(|tracer| {
            tracer
                .span_builder(name)
                .with_kind(SpanKind::Server)
                .with_attributes(attributes)
                .start_with_context(tracer, &parent)
        });
        let cx = parent.with_span(span);
        // Handlers can reach the span through the request, e.g. to spawn work under it.
        parts.extensions.insert(cx.clone());
        let future = {
            let _guard = cx.clone().attach();
            self.inner.call(http::Request::from_parts(parts, body))
        };
        ResponseFuture {
            inner: future,
            cx: Some(cx),
            grpc: self.config.grpc.then_some(GrpcRole::Server),
            config: Some(self.config.clone()),
            traced: true,
        }
    }
}

fn http_span(parts: &http::request::Parts, route_fn: Option<&RouteFn>) -> (Cow<'static, str>, Vec<KeyValue>) {
    let (method, known) = method_name(&parts.method);
    let route = route_template(parts, route_fn);
    let mut attributes = Vec::with_capacity(10);
    attributes.push(KeyValue::new("http.request.method", method));
    if !known {
        attributes.push(KeyValue::new(
            "http.request.method_original",
            parts.method.as_str().to_owned(),
        ));
    }
    attributes.push(KeyValue::new("url.path", parts.uri.path().to_owned()));
    attributes.push(KeyValue::new(
        "url.scheme",
        parts.uri.scheme_str().unwrap_or("http").to_owned(),
    ));
    attributes.push(KeyValue::new(
        "network.protocol.version",
        protocol_version(parts.version),
    ));
    if let Some((host, port)) = server_address(parts) {
        attributes.push(KeyValue::new("server.address", host));
        if let Some(port) = port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    if let Some(client) = client_address(parts) {
        attributes.push(KeyValue::new("client.address", client));
    }
    if let Some(ua) = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", ua.to_owned()));
    }
    let name = match route {
        Some(route) => {
            let name = format!("{method} {route}");
            attributes.push(KeyValue::new("http.route", route));
            Cow::Owned(name)
        }
        // Never the raw path: it would make span names unbounded.
        None => Cow::Borrowed(method),
    };
    (name, attributes)
}

fn grpc_span(parts: &http::request::Parts) -> (Cow<'static, str>, Vec<KeyValue>) {
    let mut attributes = vec![KeyValue::new("rpc.system", "grpc")];
    let name = match grpc_names(parts.uri.path()) {
        Some((full, service, method)) => {
            attributes.push(KeyValue::new("rpc.service", service));
            attributes.push(KeyValue::new("rpc.method", method));
            Cow::Owned(full)
        }
        None => Cow::Borrowed("grpc"),
    };
    if let Some((host, port)) = server_address(parts) {
        attributes.push(KeyValue::new("server.address", host));
        if let Some(port) = port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    (name, attributes)
}

pin_project_lite::pin_project! {
    /// The response future of [`HttpServer`] (and the gRPC server middleware):
    /// keeps the span current while the inner service runs.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        pub(crate) inner: F,
        pub(crate) cx: Option<Context>,
        pub(crate) grpc: Option<GrpcRole>,
        pub(crate) config: Option<Arc<ServerConfig>>,
        // False for requests the filter passed through: `cx` is the caller's
        // context, current while the inner service runs, and nothing is recorded.
        pub(crate) traced: bool,
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
    E: fmt::Display,
{
    type Output = Result<http::Response<TracedBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = match this.cx.as_ref() {
            Some(cx) => {
                let _guard = cx.clone().attach();
                this.inner.poll(task)
            }
            None => this.inner.poll(task),
        };
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        let cx = this.cx.take().filter(|_| *this.traced);
        let Some(cx) = cx else {
            // Polled after completion: nothing left to record.
            return Poll::Ready(result.map(|r| r.map(|b| TracedBody::new(b, Context::new(), None, true))));
        };
        Poll::Ready(match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let mut grpc_seen = false;
                match *this.grpc {
                    None => {
                        let span = cx.span();
                        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
                        let config = this.config.as_deref();
                        let failed = match config.and_then(|c| c.is_error.as_ref()) {
                            Some(is_error) => is_error(response.status()),
                            None => status >= 500,
                        };
                        if failed {
                            span.set_status(Status::error(format!("HTTP {status}")));
                            span.set_attribute(KeyValue::new("error.type", status.to_string()));
                        }
                        if let Some(on_response) = config.and_then(|c| c.on_response.as_ref()) {
                            span.set_attributes(on_response(response.status(), response.headers()));
                        }
                    }
                    Some(role) => {
                        // Trailers-only responses (errors) carry grpc-status in the headers.
                        if let Some((code, message)) = grpc_status(response.headers()) {
                            record_grpc_status(&cx, role, code, message.as_deref());
                            grpc_seen = true;
                        }
                    }
                }
                Ok(response.map(|body| TracedBody::new(body, cx, *this.grpc, grpc_seen)))
            }
            Err(e) => {
                let span = cx.span();
                span.set_status(Status::error(e.to_string()));
                span.set_attribute(KeyValue::new("error.type", "_OTHER"));
                span.end();
                Err(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_path_names() {
        assert_eq!(
            grpc_names("/helloworld.Greeter/SayHello"),
            Some((
                "helloworld.Greeter/SayHello".into(),
                "helloworld.Greeter".into(),
                "SayHello".into()
            ))
        );
        for bad in ["", "/", "/svc", "/svc/", "//m", "/a/b/c"] {
            assert_eq!(grpc_names(bad), None, "{bad}");
        }
    }
}
