//! The main job: a request crossing services on loopback, traced end to end.
//!
//! `cargo run --release -p examples --bin demo`
//!
//! A gateway receives requests and calls a product service over HTTP; the trace
//! context crosses the hop in `traceparent`/`tracestate`/`baggage` written and read
//! by our propagators, and both services' spans land in one trace.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use otel_propagation::carrier::http::{extract, inject};
use otel_propagation::{BaggagePropagator, CompositePropagator, TraceContextPropagator};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

fn propagator() -> CompositePropagator {
    CompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new().with_random_flag_for_new_traces(true)),
        Box::new(BaggagePropagator::new()),
    ])
}

async fn product_service(listener: TcpListener, provider: SdkTracerProvider) {
    let tracer = Arc::new(provider.tracer("product-service"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tracer = tracer.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let tracer = tracer.clone();
                async move {
                    let parent = extract(&propagator(), req.headers());
                    let mut span = tracer
                        .span_builder("GET /api/products")
                        .with_kind(SpanKind::Server)
                        .start_with_context(tracer.as_ref(), &parent);
                    let tenant = parent
                        .baggage()
                        .get("tenant")
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    span.set_attribute(KeyValue::new("tenant", tenant));
                    let cx = parent.with_span(span);
                    let mut db = tracer.start_with_context("SELECT products", &cx);
                    tokio::time::sleep(Duration::from_millis(4)).await;
                    db.end();
                    cx.span().end();
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"[\"tea\",\"coffee\"]"))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn print_tree(spans: &[SpanData], parent: opentelemetry::trace::SpanId, depth: usize) {
    let mut children: Vec<&SpanData> = spans.iter().filter(|s| s.parent_span_id == parent).collect();
    children.sort_by_key(|s| s.start_time);
    for s in children {
        let ms = s
            .end_time
            .duration_since(s.start_time)
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3;
        println!("{}{}  {ms:.1}ms", "    ".repeat(depth), s.name);
        print_tree(spans, s.span_context.span_id(), depth + 1);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(addr) = listener.local_addr() else {
        eprintln!("cannot read the bound address");
        return ExitCode::FAILURE;
    };
    tokio::spawn(product_service(listener, provider.clone()));

    let tracer = provider.tracer("api-gateway");
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let requests = 5;
    for i in 0..requests {
        let root = tracer
            .span_builder("GET /api/products")
            .with_kind(SpanKind::Server)
            .start(&tracer);
        let cx = Context::new()
            .with_span(root)
            .with_baggage([KeyValue::new("tenant", format!("tenant-{i}"))]);
        let call = tracer
            .span_builder("GET product-service")
            .with_kind(SpanKind::Client)
            .start_with_context(&tracer, &cx);
        let call_cx = cx.with_span(call);
        let Ok(mut req) = Request::get(format!("http://{addr}/api/products")).body(Full::new(Bytes::new())) else {
            eprintln!("cannot build the request");
            return ExitCode::FAILURE;
        };
        inject(&propagator(), &call_cx, req.headers_mut());
        match client.request(req).await {
            Ok(resp) => {
                let _ = resp.into_body().collect().await;
            }
            Err(e) => eprintln!("request {i} failed: {e}"),
        }
        call_cx.span().end();
        cx.span().end();
    }

    let spans = exporter.get_finished_spans().unwrap_or_default();
    let traces: std::collections::HashSet<_> = spans.iter().map(|s| s.span_context.trace_id()).collect();
    println!(
        "{requests} requests -> {} spans in {} traces\n",
        spans.len(),
        traces.len()
    );
    if let Some(first) = spans
        .iter()
        .find(|s| s.parent_span_id == opentelemetry::trace::SpanId::INVALID)
    {
        let trace: Vec<SpanData> = spans
            .iter()
            .filter(|s| s.span_context.trace_id() == first.span_context.trace_id())
            .cloned()
            .collect();
        println!("trace {}", first.span_context.trace_id());
        print_tree(&trace, opentelemetry::trace::SpanId::INVALID, 1);
    }
    let _ = provider.shutdown();
    if traces.len() == requests {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
