//! A CLIENT span per reqwest request, as a `reqwest-middleware` middleware
//! (reqwest 0.13, reqwest-middleware 0.5).
//!
//! ```no_run
//! # async fn run() -> Result<(), reqwest_middleware::Error> {
//! let client = otel_integrations::reqwest::client(reqwest::Client::new());
//! // A CLIENT span "GET", child of the current span (OpenTelemetry's or a
//! // `tracing` span's), with the context sent in the request headers.
//! let body = client.get("http://inventory:8080/stock/7").send().await?.text().await?;
//! # let _ = body; Ok(()) }
//! ```
//!
//! The span follows the HTTP client semantic conventions (`url.full` without
//! credentials and, by default, without query values; `server.address`,
//! `server.port`, `http.response.status_code`, `error.type`), is an error on
//! 4xx, 5xx and failed requests, and ends when the response body has been read
//! or dropped.
//!
//! **Retries**: each attempt the middleware sees is its own span; attempts after
//! the first carry `http.request.resend_count`. Add this middleware *after* a
//! retry middleware (so it is closer to the network) to see every attempt.
//! **Redirects**: reqwest follows them inside the client, below any
//! middleware, so by default one span covers the hops and `url.full` is the
//! first URL. For a span per hop, as the semantic conventions ask, build the
//! client with `reqwest::redirect::Policy::none()` and let this middleware
//! follow them: [`TracingMiddleware::with_redirects`].

use crate::http::{ClientConfig, Target, TracedBody, client_options, record_failure};
use http::Extensions;
use opentelemetry::Context;
use opentelemetry::context::FutureExt as _;
use reqwest_middleware::{ClientWithMiddleware, Middleware, Next};
use std::sync::Arc;

/// The reqwest-middleware crate our middleware plugs into (its
/// `ClientWithMiddleware` is what [`client`] returns).
pub use reqwest_middleware;

/// Wraps `client` with [`TracingMiddleware`] (default settings).
pub fn client(client: ::reqwest::Client) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(client)
        .with(TracingMiddleware::new())
        .build()
}

/// The middleware: one CLIENT span per request it sees.
#[derive(Debug, Clone, Default)]
pub struct TracingMiddleware {
    config: Arc<ClientConfig>,
    max_redirects: u32,
}

impl TracingMiddleware {
    /// Client spans from the global tracer provider; context written with the
    /// global propagator.
    pub fn new() -> Self {
        Self::default()
    }

    client_options!();

    /// Follows up to `max` redirects itself, each hop its own CLIENT span
    /// with `http.request.resend_count` (for clients built with
    /// `reqwest::redirect::Policy::none()`; otherwise reqwest has followed
    /// them before this middleware sees the response). 303, and 301/302 after
    /// a POST, continue as GET without a body; 307/308 resend the request as
    /// it was, when its body can be cloned (a streaming body stops at the
    /// redirect). Credentials and cookies are not sent to another origin.
    /// Defaults to 0: redirects are returned as they are.
    pub fn with_redirects(mut self, max: u32) -> Self {
        self.max_redirects = max;
        self
    }

    async fn send(
        &self,
        mut req: ::reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<::reqwest::Response> {
        let sends = extensions.get::<Sends>().map_or(0, |s| s.0);
        extensions.insert(Sends(sends.saturating_add(1)));
        let url = req.url().clone();
        let target = Target {
            host: url.host_str(),
            port: url.port(),
            scheme: Some(url.scheme()),
        };
        let method = req.method().clone();
        let Some(cx) = self
            .config
            .start_http(&method, url.as_str(), target, req.headers_mut(), Some(sends))
        else {
            return next.run(req, extensions).await;
        };
        match next.run(req, extensions).with_context(cx.clone()).await {
            Ok(response) => {
                self.config
                    .record_response(&cx, response.status(), response.version(), response.headers());
                Ok(traced(response, cx))
            }
            Err(e) => {
                let error_type = match &e {
                    reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => "timeout",
                    reqwest_middleware::Error::Reqwest(_) => "transport",
                    reqwest_middleware::Error::Middleware(_) => "_OTHER",
                };
                record_failure(&cx, &e, error_type);
                Err(e)
            }
        }
    }
}

/// The request for the hop after `response`, if it is a redirect to follow.
fn redirected(mut copy: ::reqwest::Request, response: &::reqwest::Response) -> Option<::reqwest::Request> {
    use http::{Method, StatusCode, header};
    let status = response.status();
    let to_get = match status {
        StatusCode::SEE_OTHER => copy.method() != Method::HEAD,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => copy.method() == Method::POST,
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => false,
        _ => return None,
    };
    let location = response.headers().get(header::LOCATION)?.to_str().ok()?;
    let next = response.url().join(location).ok()?;
    if !matches!(next.scheme(), "http" | "https") {
        return None;
    }
    if to_get {
        *copy.method_mut() = Method::GET;
        *copy.body_mut() = None;
        for h in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::CONTENT_ENCODING] {
            copy.headers_mut().remove(h);
        }
    }
    if next.origin() != copy.url().origin() {
        for h in [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::COOKIE] {
            copy.headers_mut().remove(h);
        }
    }
    *copy.url_mut() = next;
    Some(copy)
}

/// How many times this request has been sent, kept in the middleware chain's
/// extensions (which a retry middleware hands to every attempt).
#[derive(Debug, Clone, Copy)]
struct Sends(u32);

#[async_trait::async_trait]
impl Middleware for TracingMiddleware {
    async fn handle(
        &self,
        req: ::reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<::reqwest::Response> {
        let mut req = req;
        let mut hops = 0;
        loop {
            let copy = (hops < self.max_redirects).then(|| req.try_clone()).flatten();
            let response = self.send(req, extensions, next.clone()).await?;
            let Some(following) = copy.and_then(|copy| redirected(copy, &response)) else {
                return Ok(response);
            };
            // Dropping the redirect's response ends its hop's span.
            drop(response);
            req = following;
            hops += 1;
        }
    }
}

/// The response with a body that ends the span once read (or dropped).
fn traced(response: ::reqwest::Response, cx: Context) -> ::reqwest::Response {
    use ::reqwest::ResponseBuilderExt as _;
    let url = response.url().clone();
    let (mut parts, body) = http::Response::<::reqwest::Body>::from(response).into_parts();
    // Keep the final URL, which reqwest carries in an extension of its own.
    if let Ok(with_url) = http::Response::builder().url(url).body(()) {
        parts.extensions.extend(with_url.into_parts().0.extensions);
    }
    let body = ::reqwest::Body::wrap(TracedBody::new(body, cx, None, false));
    ::reqwest::Response::from(http::Response::from_parts(parts, body))
}
