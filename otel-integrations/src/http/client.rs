//! The HTTP client middleware.

use super::body::{GrpcRole, TracedBody, grpc_status, record_grpc_status};
use super::server::grpc_names;
use super::server::{ErrorStatusFn, ResponseAttributesFn};
use super::url::QueryValues;
use super::{method_name, protocol_version};
use crate::propagation::Propagation;
use crate::tracer::TracerSource;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use otel_propagation::carrier::http::HeaderInjector;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tower_layer::Layer;
use tower_service::Service;

/// Writes `cx` into `request`'s headers with the global propagator: for
/// clients that are neither tower services nor reqwest.
pub fn inject_context<B>(cx: &Context, request: &mut http::Request<B>) {
    Propagation::Global.inject(cx, &mut HeaderInjector(request.headers_mut()));
}

/// What client hooks see of an outgoing request.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'a> {
    method: &'a http::Method,
    url: &'a str,
    headers: &'a http::HeaderMap,
}

impl<'a> ClientRequest<'a> {
    /// The request method.
    pub fn method(&self) -> &'a http::Method {
        self.method
    }

    /// The URL as the request has it (not redacted).
    pub fn url(&self) -> &'a str {
        self.url
    }

    /// The request headers, before the trace context is written into them.
    pub fn headers(&self) -> &'a http::HeaderMap {
        self.headers
    }
}

/// Whether an outgoing request gets a span.
pub type ClientFilterFn = Arc<dyn Fn(&ClientRequest<'_>) -> bool + Send + Sync>;
/// Attributes from an outgoing request, known when the span starts.
pub type ClientRequestAttributesFn = Arc<dyn Fn(&ClientRequest<'_>) -> Vec<KeyValue> + Send + Sync>;

/// How client spans are made: shared by the tower client and the reqwest middleware.
#[derive(Clone, Default)]
pub(crate) struct ClientConfig {
    pub(crate) propagation: Propagation,
    pub(crate) grpc: bool,
    pub(crate) tracer: TracerSource,
    pub(crate) filter: Option<ClientFilterFn>,
    pub(crate) on_request: Option<ClientRequestAttributesFn>,
    pub(crate) on_response: Option<ResponseAttributesFn>,
    pub(crate) is_error: Option<ErrorStatusFn>,
    pub(crate) query: QueryValues,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("propagation", &self.propagation)
            .field("grpc", &self.grpc)
            .field("tracer", &self.tracer)
            .field("filter", &self.filter.is_some())
            .field("on_request", &self.on_request.is_some())
            .field("on_response", &self.on_response.is_some())
            .field("is_error", &self.is_error.is_some())
            .field("query", &self.query)
            .finish()
    }
}

/// Where an HTTP request goes: for `server.address` and `server.port`.
pub(crate) struct Target<'a> {
    pub(crate) host: Option<&'a str>,
    pub(crate) port: Option<u16>,
    pub(crate) scheme: Option<&'a str>,
}

impl ClientConfig {
    /// Starts the CLIENT span of an HTTP request under the current context and
    /// writes its context into `headers`; `None` when the filter skips it.
    /// `resend` is `http.request.resend_count` (retries), absent on a first try.
    pub(crate) fn start_http(
        &self,
        method: &http::Method,
        url: &str,
        target: Target<'_>,
        headers: &mut http::HeaderMap,
        resend: Option<u32>,
    ) -> Option<Context> {
        let request = ClientRequest { method, url, headers };
        if let Some(filter) = &self.filter
            && !filter(&request)
        {
            return None;
        }
        let (name, known) = method_name(method);
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new("http.request.method", name));
        if !known {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                method.as_str().to_owned(),
            ));
        }
        attributes.push(KeyValue::new("url.full", super::url::full(url, self.query)));
        push_target(&mut attributes, &target);
        if let Some(count) = resend.filter(|&n| n > 0) {
            attributes.push(KeyValue::new("http.request.resend_count", i64::from(count)));
        }
        if let Some(on_request) = &self.on_request {
            attributes.extend(on_request(&request));
        }
        let cx = self.start(Cow::Borrowed(name), attributes);
        self.propagation.inject(&cx, &mut HeaderInjector(headers));
        Some(cx)
    }

    fn start(&self, name: Cow<'static, str>, attributes: Vec<KeyValue>) -> Context {
        let parent = Context::current();
        let span = self.tracer.with(|tracer| {
            tracer
                .span_builder(name)
                .with_kind(SpanKind::Client)
                .with_attributes(attributes)
                .start_with_context(tracer, &parent)
        });
        parent.with_span(span)
    }

    /// Records an HTTP response's status line and headers on the span.
    pub(crate) fn record_response(
        &self,
        cx: &Context,
        status: http::StatusCode,
        version: http::Version,
        headers: &http::HeaderMap,
    ) {
        let span = cx.span();
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
        span.set_attribute(KeyValue::new("network.protocol.version", protocol_version(version)));
        let failed = match &self.is_error {
            Some(is_error) => is_error(status),
            None => status.as_u16() >= 400,
        };
        if failed {
            span.set_status(Status::error(format!("HTTP {}", status.as_u16())));
            span.set_attribute(KeyValue::new("error.type", status.as_u16().to_string()));
        }
        if let Some(on_response) = &self.on_response {
            span.set_attributes(on_response(status, headers));
        }
    }
}

/// Records a request that got no response and ends its span.
pub(crate) fn record_failure(cx: &Context, error: &dyn fmt::Display, error_type: &'static str) {
    let span = cx.span();
    span.set_status(Status::error(error.to_string()));
    span.set_attribute(KeyValue::new("error.type", error_type));
    span.end();
}

fn push_target(attributes: &mut Vec<KeyValue>, target: &Target<'_>) {
    if let Some(host) = target.host {
        attributes.push(KeyValue::new("server.address", host.to_owned()));
    }
    let port = target.port.or(match target.scheme {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    if let Some(port) = port {
        attributes.push(KeyValue::new("server.port", i64::from(port)));
    }
}

/// The builder methods every client instrumentation shares.
macro_rules! client_options {
    () => {
        /// Which requests get a span: those for which `filter` returns true.
        /// The others are sent untouched (no span, no context written). Defaults to every request.
        pub fn with_filter(
            mut self,
            filter: impl Fn(&$crate::http::ClientRequest<'_>) -> bool + Send + Sync + 'static,
        ) -> Self {
            std::sync::Arc::make_mut(&mut self.config).filter = Some(std::sync::Arc::new(filter));
            self
        }

        /// Adds attributes from each request, at the span's start, after the
        /// semantic-convention ones. Defaults to none.
        pub fn with_request_attributes(
            mut self,
            attributes: impl Fn(&$crate::http::ClientRequest<'_>) -> Vec<opentelemetry::KeyValue> + Send + Sync + 'static,
        ) -> Self {
            std::sync::Arc::make_mut(&mut self.config).on_request = Some(std::sync::Arc::new(attributes));
            self
        }

        /// Adds attributes from each response's status and headers. Defaults to none.
        pub fn with_response_attributes(
            mut self,
            attributes: impl Fn(http::StatusCode, &http::HeaderMap) -> Vec<opentelemetry::KeyValue>
            + Send
            + Sync
            + 'static,
        ) -> Self {
            std::sync::Arc::make_mut(&mut self.config).on_response = Some(std::sync::Arc::new(attributes));
            self
        }

        /// Which response statuses make the span an error. Defaults to 4xx and
        /// 5xx (the semantic conventions for clients).
        pub fn with_error_statuses(
            mut self,
            is_error: impl Fn(http::StatusCode) -> bool + Send + Sync + 'static,
        ) -> Self {
            std::sync::Arc::make_mut(&mut self.config).is_error = Some(std::sync::Arc::new(is_error));
            self
        }

        /// What `url.full` keeps of query values. Defaults to
        /// [`QueryValues::Redacted`](crate::http::QueryValues::Redacted); credentials are always redacted.
        pub fn with_query_values(mut self, query: $crate::http::QueryValues) -> Self {
            std::sync::Arc::make_mut(&mut self.config).query = query;
            self
        }

        /// Writes the context with `propagator`. Defaults to the global propagator.
        pub fn with_propagator(
            mut self,
            propagator: impl opentelemetry::propagation::TextMapPropagator + Send + Sync + 'static,
        ) -> Self {
            std::sync::Arc::make_mut(&mut self.config).propagation = $crate::propagation::Propagation::custom(propagator);
            self
        }

        /// Records spans with `provider` (its resource names the service).
        /// Defaults to the global tracer provider.
        pub fn with_tracer_provider<P, T, Sp>(mut self, provider: &P) -> Self
        where
            P: opentelemetry::trace::TracerProvider<Tracer = T>,
            T: opentelemetry::trace::Tracer<Span = Sp> + Send + Sync + 'static,
            Sp: opentelemetry::trace::Span + Send + Sync + 'static,
        {
            std::sync::Arc::make_mut(&mut self.config).tracer = $crate::tracer::TracerSource::from_provider(provider);
            self
        }
    };
}
#[cfg(feature = "reqwest")]
pub(crate) use client_options;

/// A [`Layer`] that wraps HTTP clients in [`HttpClient`].
#[derive(Debug, Clone, Default)]
pub struct HttpClientLayer {
    config: Arc<ClientConfig>,
}

impl HttpClientLayer {
    /// Client spans; context written with the global propagator.
    pub fn new() -> Self {
        Self::default()
    }

    client_options!();

    #[cfg(feature = "grpc")]
    pub(crate) fn grpc(propagation: Propagation) -> Self {
        HttpClientLayer {
            config: Arc::new(ClientConfig {
                propagation,
                grpc: true,
                ..ClientConfig::default()
            }),
        }
    }
}

impl<S> Layer<S> for HttpClientLayer {
    type Service = HttpClient<S>;

    fn layer(&self, inner: S) -> HttpClient<S> {
        HttpClient {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Traces each outgoing request with a CLIENT span (child of the current
/// context) and sends that span's context in the request headers. ERROR on
/// 4xx, 5xx and transport errors; ended when the response body is read.
#[derive(Debug, Clone)]
pub struct HttpClient<S> {
    inner: S,
    config: Arc<ClientConfig>,
}

impl<S> HttpClient<S> {
    /// Wraps `inner` with default settings.
    pub fn new(inner: S) -> Self {
        HttpClientLayer::new().layer(inner)
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

impl<S, ReqB, ResB> Service<http::Request<ReqB>> for HttpClient<S>
where
    S: Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    S::Error: fmt::Display,
    ResB: http_body::Body,
    ResB::Error: fmt::Display,
{
    type Response = http::Response<TracedBody<ResB>>;
    type Error = S::Error;
    type Future = ClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let target = Target {
            host: parts.uri.host(),
            port: parts.uri.port_u16(),
            scheme: parts.uri.scheme_str(),
        };
        let cx = if self.config.grpc {
            let mut attributes = vec![KeyValue::new("rpc.system", "grpc")];
            let name = match grpc_names(parts.uri.path()) {
                Some((full, service, method)) => {
                    attributes.push(KeyValue::new("rpc.service", service));
                    attributes.push(KeyValue::new("rpc.method", method));
                    Cow::Owned(full)
                }
                None => Cow::Borrowed("grpc"),
            };
            push_target(&mut attributes, &target);
            let cx = self.config.start(name, attributes);
            self.config
                .propagation
                .inject(&cx, &mut HeaderInjector(&mut parts.headers));
            Some(cx)
        } else {
            let url = parts.uri.to_string();
            self.config
                .start_http(&parts.method, &url, target, &mut parts.headers, None)
        };
        let req = http::Request::from_parts(parts, body);
        let future = match &cx {
            Some(cx) => {
                let _guard = cx.clone().attach();
                self.inner.call(req)
            }
            None => self.inner.call(req),
        };
        ClientFuture {
            inner: future,
            cx,
            config: self.config.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`HttpClient`].
    #[derive(Debug)]
    pub struct ClientFuture<F> {
        #[pin]
        inner: F,
        // None: the request was filtered out, or the response is already out.
        cx: Option<Context>,
        config: Arc<ClientConfig>,
    }
}

impl<F, ResB, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
    E: fmt::Display,
{
    type Output = Result<http::Response<TracedBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(result) = this.inner.poll(task) else {
            return Poll::Pending;
        };
        let Some(cx) = this.cx.take() else {
            return Poll::Ready(result.map(|r| r.map(|b| TracedBody::new(b, Context::new(), None, true))));
        };
        Poll::Ready(match result {
            Ok(response) => {
                let mut grpc_seen = false;
                if this.config.grpc {
                    if let Some((code, message)) = grpc_status(response.headers()) {
                        record_grpc_status(&cx, GrpcRole::Client, code, message.as_deref());
                        grpc_seen = true;
                    }
                } else {
                    this.config
                        .record_response(&cx, response.status(), response.version(), response.headers());
                }
                let role = this.config.grpc.then_some(GrpcRole::Client);
                Ok(response.map(|body| TracedBody::new(body, cx, role, grpc_seen)))
            }
            Err(e) => {
                record_failure(&cx, &e, "transport");
                Err(e)
            }
        })
    }
}
