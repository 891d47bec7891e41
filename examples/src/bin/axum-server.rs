//! An axum server traced by `HttpServerLayer`: one SERVER span per request,
//! named from the route template, continuing the caller's trace; the
//! handler's own work is an `#[instrument]` span inside it, and its log line
//! carries the trace id.
//!
//! ```text
//! cargo run -p examples --bin axum-server
//! ```
//!
//! The program serves on a loopback port, calls itself twice (once with a
//! `traceparent`, as an upstream service would), and prints the spans with
//! the console exporter.

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use otel_integrations::http::HttpServerLayer;
use std::time::Duration;

async fn product(Path(id): Path<u32>) -> String {
    load(id).await
}

/// A `tracing` span, child of the request's span (the layer makes it current).
#[tracing::instrument(name = "load product")]
async fn load(id: u32) -> String {
    tracing::info!("loading");
    format!("product {id}")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The pipeline and the global subscriber (RUST_LOG, log lines with trace ids).
    let telemetry = otel_core::Telemetry::from_env()
        .with_service_name("catalog")
        // Print the spans (and export nothing else) for this example.
        .without_exporter()
        .with_console_exporter()
        .init()?;

    let app = Router::new()
        .route("/api/products/{id}", get(product))
        .layer(HttpServerLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    for traceparent in [None, Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")] {
        let mut request = http::Request::get(format!("http://{addr}/api/products/7"));
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        let response = client.request(request.body(Empty::new())?).await?;
        let body = response.into_body().collect().await?.to_bytes();
        println!("GET /api/products/7 -> {}", String::from_utf8_lossy(&body));
    }
    println!("spans (the second request continues trace 4bf92f35...):");
    telemetry.shutdown(Duration::from_secs(5))?;
    Ok(())
}
