//! A hyper client traced by `HttpClientLayer`: a CLIENT span per request,
//! and the trace context sent in `traceparent` (and `baggage`).
//!
//! ```text
//! cargo run -p examples --bin http-client
//! ```
//!
//! A small loopback server echoes the `traceparent` it receives, so the
//! output shows the client span's id crossing the hop.

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TraceContextExt;
use otel_integrations::http::HttpClientLayer;
use std::time::Duration;
use tower::ServiceExt;
use tower_layer::Layer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = otel_core::Telemetry::from_env()
        .with_service_name("storefront")
        .with_console_exporter()
        .install()?;

    let echo = Router::new().route(
        "/",
        get(|headers: HeaderMap| async move {
            headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(none)")
                .to_owned()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, echo).await });

    let client =
        HttpClientLayer::new().layer(Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>());
    // The request is made inside a span: the client span is its child.
    let parent = otel_core::span("checkout").start();
    let request = http::Request::get(format!("http://{addr}/")).body(Empty::new())?;
    let response = {
        let _guard = parent.clone().attach();
        client.oneshot(request).await?
    };
    let echoed = response.into_body().collect().await?.to_bytes();
    println!("the server received traceparent {}", String::from_utf8_lossy(&echoed));
    parent.span().end();
    telemetry.shutdown(Duration::from_secs(5))?;
    Ok(())
}
