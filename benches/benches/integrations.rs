//! Integration overheads, ours beside the usual alternative in the same run:
//!
//! - per-request cost added by our HTTP server layer vs tower-http's
//!   `TraceLayer` + tracing-opentelemetry, both exporting through the same
//!   installed pipeline (the added cost is each minus an untraced service);
//! - a JSON log line with trace ids (ours) vs the same `fmt().json()` without.
//!
//! `cargo bench -p benches --bench integrations`

use benches::{Pair, median_ns, print_ratios};
use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tower_layer::Layer;
use tower_service::Service;
use tracing_subscriber::layer::SubscriberExt;

const CHUNK: u64 = 1024;

fn request() -> http::Request<Full<Bytes>> {
    http::Request::get("http://shop.example.com/api/products/42")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .header("user-agent", "bench/1.0")
        .body(Full::new(Bytes::new()))
        .expect("valid request")
}

async fn handler(_req: http::Request<Full<Bytes>>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    Ok(http::Response::new(Full::new(Bytes::from_static(b"[\"tea\"]"))))
}

/// Calls `svc` `iters` times (request in, body drained), flushing `flush` after
/// each chunk outside the timing.
fn run<S, B>(rt: &tokio::runtime::Runtime, svc: &mut S, iters: u64, flush: &dyn Fn()) -> Duration
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        rt.block_on(async {
            for _ in 0..n {
                std::future::poll_fn(|cx| svc.poll_ready(cx)).await.expect("ready");
                let resp = svc.call(request()).await.expect("response");
                black_box(resp.into_body().collect().await.expect("body"));
            }
        });
        total += start.elapsed();
        flush();
        left -= n;
    }
    total
}

fn http_layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sink_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (addr, _sink) = sink_rt.block_on(benches::sink::start());
    let telemetry = otel_core::Telemetry::builder()
        .with_service_name("bench")
        .with_otlp(
            otel_core::otel_export::OtlpExporter::builder()
                .with_protocol(otel_core::otel_export::Protocol::Grpc)
                .with_endpoint(format!("http://{addr}")),
        )
        .with_batch_config(otel_core::otel_export::BatchConfig {
            max_queue_size: 4 * CHUNK as usize,
            ..Default::default()
        })
        .install()
        .expect("valid settings");
    let flush = || {
        let _ = telemetry.force_flush();
    };

    let mut g = c.benchmark_group("http_request");
    let mut base = tower::service_fn(handler);
    g.bench_function("untraced", |b| {
        b.iter_custom(|iters| run(&rt, &mut base, iters, &flush))
    });

    let mut ours = otel_integrations::http::HttpServerLayer::new().layer(tower::service_fn(handler));
    g.bench_function("ours", |b| b.iter_custom(|iters| run(&rt, &mut ours, iters, &flush)));

    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(telemetry.tracer("bench")));
    tracing::subscriber::with_default(subscriber, || {
        let mut theirs = tower_http::trace::TraceLayer::new_for_http().layer(tower::service_fn(handler));
        g.bench_function("tower_http_trace", |b| {
            b.iter_custom(|iters| run(&rt, &mut theirs, iters, &flush))
        });
    });
    g.finish();
    let _ = telemetry.shutdown(Duration::from_secs(5));
}

/// A writer that discards, so only formatting is measured.
#[derive(Clone, Copy)]
struct Discard;

impl std::io::Write for Discard {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        black_box(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines(c: &mut Criterion) {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "bench");
    let mut g = c.benchmark_group("json_log_event");
    let plain = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer.clone()))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(|| Discard),
        );
    tracing::subscriber::with_default(plain, || {
        let _span = tracing::info_span!("GET /api/products").entered();
        g.bench_function("without_ids", |b| {
            b.iter(|| tracing::info!(order = 42, user = "ada", "order placed"))
        });
    });
    let ours = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(otel_integrations::logs::json_layer().with_writer(|| Discard));
    tracing::subscriber::with_default(ours, || {
        let _span = tracing::info_span!("GET /api/products").entered();
        g.bench_function("with_ids", |b| {
            b.iter(|| tracing::info!(order = 42, user = "ada", "order placed"))
        });
    });
    g.finish();
}

criterion_group!(benches, http_layers, log_lines);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios(
        "log correlation: fmt().json() per event",
        &[Pair {
            label: "with trace ids / without (target <= 1.15)",
            ours: "json_log_event/with_ids",
            theirs: "json_log_event/without_ids",
            target: Some(1.15),
        }],
    );
    // The HTTP comparison is of added cost: each traced service minus the untraced one.
    if let Some(dir) = benches::criterion_dir() {
        let get = |id: &str| median_ns(&dir, id);
        if let (Some(base), Some(ours), Some(theirs)) = (
            get("http_request/untraced"),
            get("http_request/ours"),
            get("http_request/tower_http_trace"),
        ) {
            let (ours_added, theirs_added) = (ours - base, theirs - base);
            let ratio = ours_added / theirs_added;
            println!();
            println!("== HTTP server tracing, added cost per request (criterion medians, same run) ==");
            println!(
                "untraced {}, ours {}, tower-http TraceLayer + tracing-opentelemetry {}",
                benches::fmt_ns(base),
                benches::fmt_ns(ours),
                benches::fmt_ns(theirs)
            );
            println!(
                "added: ours {} vs theirs {} -> ratio {ratio:.3} (target <= 0.50) {}",
                benches::fmt_ns(ours_added),
                benches::fmt_ns(theirs_added),
                if ratio <= 0.5 { "met" } else { "MISSED" }
            );
        }
    }
}
