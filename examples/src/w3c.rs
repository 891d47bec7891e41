//! The W3C Trace Context test-harness protocol served with our propagators.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::Context;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use otel_propagation::carrier::http::{extract, inject};
use otel_propagation::{BaggagePropagator, CompositePropagator, TraceContextPropagator};
use std::sync::Arc;
use tokio::net::TcpListener;

/// What one connection handler needs.
struct State {
    tracer: SdkTracer,
    propagator: CompositePropagator,
    client: Client<HttpConnector, Full<Bytes>>,
    // Keeps the provider alive as long as the tracer is used.
    _provider: SdkTracerProvider,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

/// Serves the harness protocol on `listener` until the process ends.
pub async fn serve(listener: TcpListener) {
    let provider = SdkTracerProvider::builder().build();
    let state = Arc::new(State {
        tracer: provider.tracer("w3c-service"),
        propagator: CompositePropagator::new(vec![
            // The SDK's id generator is random, so traces started here say so.
            Box::new(TraceContextPropagator::new().with_random_flag_for_new_traces(true)),
            Box::new(BaggagePropagator::new()),
        ]),
        client: Client::builder(TokioExecutor::new()).build_http(),
        _provider: provider,
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if req.method() != Method::POST || req.uri().path() != "/test" {
        return Ok(text(StatusCode::NOT_FOUND, "POST /test only\n"));
    }
    let parent = extract(&state.propagator, req.headers());
    let server_span = state
        .tracer
        .span_builder("POST /test")
        .with_kind(SpanKind::Server)
        .start_with_context(&state.tracer, &parent);
    let server_cx = parent.with_span(server_span);

    let body = req.into_body().collect().await?.to_bytes();
    let calls: Vec<serde_json::Value> = match serde_json::from_slice(&body) {
        Ok(serde_json::Value::Array(calls)) => calls,
        Ok(_) => return Ok(text(StatusCode::BAD_REQUEST, "expected a JSON array\n")),
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}\n"))),
    };
    for call in calls {
        let Some(url) = call.get("url").and_then(|u| u.as_str()) else {
            return Ok(text(StatusCode::BAD_REQUEST, "each element needs a \"url\" string\n"));
        };
        let arguments = call
            .get("arguments")
            .cloned()
            .unwrap_or(serde_json::Value::Array(Vec::new()));
        callback(&state, &server_cx, url, &arguments).await;
    }
    server_cx.span().end();
    Ok(text(StatusCode::OK, "ok\n"))
}

/// One callback: a CLIENT child span whose context travels in the request headers.
async fn callback(state: &State, server_cx: &Context, url: &str, arguments: &serde_json::Value) {
    let span = state
        .tracer
        .span_builder(format!("POST {url}"))
        .with_kind(SpanKind::Client)
        .start_with_context(&state.tracer, server_cx);
    let cx = server_cx.with_span(span);
    let request = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(arguments.to_string())));
    match request {
        Ok(mut request) => {
            inject(&state.propagator, &cx, request.headers_mut());
            match state.client.request(request).await {
                // Drain the body so the connection can be reused.
                Ok(response) => {
                    let _ = response.into_body().collect().await;
                }
                Err(e) => eprintln!("callback to {url} failed: {e}"),
            }
        }
        Err(e) => eprintln!("callback url {url:?} is not usable: {e}"),
    }
    cx.span().end();
}
