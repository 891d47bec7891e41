//! The HTTP client middleware.

use super::body::{GrpcRole, TracedBody, grpc_status, record_grpc_status};
use super::server::grpc_names;
use super::{method_name, protocol_version};
use crate::propagation::Propagation;
use crate::tracer::TracerSource;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use otel_propagation::carrier::http::HeaderInjector;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tower_layer::Layer;
use tower_service::Service;

/// Writes `cx` into `request`'s headers with the global propagator: for
/// clients that are not tower services.
pub fn inject_context<B>(cx: &Context, request: &mut http::Request<B>) {
    Propagation::Global.inject(cx, &mut HeaderInjector(request.headers_mut()));
}

/// A [`Layer`] that wraps HTTP clients in [`HttpClient`].
#[derive(Debug, Clone, Default)]
pub struct HttpClientLayer {
    propagation: Propagation,
    grpc: bool,
    tracer: TracerSource,
}

impl HttpClientLayer {
    /// Client spans; context written with the global propagator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the context with `propagator`. Defaults to the global propagator.
    pub fn with_propagator(mut self, propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        self.propagation = Propagation::custom(propagator);
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
        self.tracer = TracerSource::from_provider(provider);
        self
    }

    #[cfg(feature = "grpc")]
    pub(crate) fn grpc(propagation: Propagation) -> Self {
        HttpClientLayer {
            propagation,
            grpc: true,
            tracer: TracerSource::Global,
        }
    }
}

impl<S> Layer<S> for HttpClientLayer {
    type Service = HttpClient<S>;

    fn layer(&self, inner: S) -> HttpClient<S> {
        HttpClient {
            inner,
            propagation: self.propagation.clone(),
            grpc: self.grpc,
            tracer: self.tracer.clone(),
        }
    }
}

/// Traces each outgoing request with a CLIENT span (child of the current
/// context) and sends that span's context in the request headers. ERROR on
/// 4xx, 5xx and transport errors; ended when the response body is read.
#[derive(Debug, Clone)]
pub struct HttpClient<S> {
    inner: S,
    propagation: Propagation,
    grpc: bool,
    tracer: TracerSource,
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

    fn call(&mut self, mut req: http::Request<ReqB>) -> Self::Future {
        let parent = Context::current();
        let mut attributes = Vec::with_capacity(8);
        let name: Cow<'static, str> = if self.grpc {
            attributes.push(KeyValue::new("rpc.system", "grpc"));
            match grpc_names(req.uri().path()) {
                Some((full, service, method)) => {
                    attributes.push(KeyValue::new("rpc.service", service));
                    attributes.push(KeyValue::new("rpc.method", method));
                    Cow::Owned(full)
                }
                None => Cow::Borrowed("grpc"),
            }
        } else {
            let (method, known) = method_name(req.method());
            attributes.push(KeyValue::new("http.request.method", method));
            if !known {
                attributes.push(KeyValue::new(
                    "http.request.method_original",
                    req.method().as_str().to_owned(),
                ));
            }
            attributes.push(KeyValue::new("url.full", req.uri().to_string()));
            Cow::Borrowed(method)
        };
        if let Some(host) = req.uri().host() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = req.uri().port_u16().or_else(|| match req.uri().scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        }) {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let span = self.tracer.with(|tracer| {
            tracer
                .span_builder(name)
                .with_kind(SpanKind::Client)
                .with_attributes(attributes)
                .start_with_context(tracer, &parent)
        });
        let cx = parent.with_span(span);
        self.propagation.inject(&cx, &mut HeaderInjector(req.headers_mut()));
        let future = {
            let _guard = cx.clone().attach();
            self.inner.call(req)
        };
        ClientFuture {
            inner: future,
            cx: Some(cx),
            grpc: self.grpc,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`HttpClient`].
    #[derive(Debug)]
    pub struct ClientFuture<F> {
        #[pin]
        inner: F,
        cx: Option<Context>,
        grpc: bool,
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
        let cx = this.cx.take().unwrap_or_default();
        Poll::Ready(match result {
            Ok(response) => {
                let mut grpc_seen = false;
                if *this.grpc {
                    if let Some((code, message)) = grpc_status(response.headers()) {
                        record_grpc_status(&cx, GrpcRole::Client, code, message.as_deref());
                        grpc_seen = true;
                    }
                } else {
                    let span = cx.span();
                    let status = response.status().as_u16();
                    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
                    span.set_attribute(KeyValue::new(
                        "network.protocol.version",
                        protocol_version(response.version()),
                    ));
                    if status >= 400 {
                        span.set_status(Status::error(format!("HTTP {status}")));
                        span.set_attribute(KeyValue::new("error.type", status.to_string()));
                    }
                }
                let role = this.grpc.then_some(GrpcRole::Client);
                Ok(response.map(|body| TracedBody::new(body, cx, role, grpc_seen)))
            }
            Err(e) => {
                let span = cx.span();
                span.set_status(Status::error(e.to_string()));
                span.set_attribute(KeyValue::new("error.type", "transport"));
                span.end();
                Err(e)
            }
        })
    }
}
