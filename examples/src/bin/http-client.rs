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
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use otel_integrations::http::{HttpClient, HttpClientLayer};
use std::time::Duration;
use tower::ServiceExt;
use tower_layer::Layer;

type Traced = HttpClient<Client<HttpConnector, Empty<bytes::Bytes>>>;

#[tracing::instrument(skip(client))]
async fn checkout(client: Traced, url: String) -> Result<String, Box<dyn std::error::Error>> {
    let request = http::Request::get(url).body(Empty::new())?;
    let response = client.oneshot(request).await?;
    let echoed = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&echoed).into_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = otel_core::Telemetry::from_env()
        .with_service_name("storefront")
        // Print the spans (and export nothing else) for this example.
        .without_exporter()
        .with_console_exporter()
        .init()?;

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
    // The request is made inside a `tracing` span: the client span is its child.
    let echoed = checkout(client, format!("http://{addr}/")).await?;
    println!("the server received traceparent {echoed}");
    telemetry.shutdown(Duration::from_secs(5))?;
    Ok(())
}
