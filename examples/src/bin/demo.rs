//! The main job: the seed scenario, traced end to end and tail-sampled.
//!
//! ```text
//! cargo run --release -p examples --bin demo
//! cargo run --release -p examples --bin demo -- --otlp-endpoint http://127.0.0.1:4317
//! ```
//!
//! Four services on loopback, each reporting under its own `service.name`:
//! a `gateway` (axum) that verifies callers with `auth` (tonic gRPC), asks
//! `product` (axum, a cache and SQLite) over HTTP, and publishes orders to
//! RabbitMQ for `order-worker` (skipped, with a note, when no broker is
//! reachable at `AMQP_ADDR` or 127.0.0.1:5672). A few hundred requests, some
//! failing and some slow, go through; every span passes the in-process tail
//! sampler with the seed policies (every error trace, every trace over
//! 500 ms, 10% of the rest), and the kept traces are printed as trees, with
//! the JSON log lines that belong to them.
//!
//! `--otlp-endpoint URL` (or `OTEL_EXPORTER_OTLP_ENDPOINT`, or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) also sends the kept spans to a
//! collector (our `otel-collector`, Jaeger, Tempo); the other `OTEL_*`
//! variables are honoured. The flag is a full URL, like the `TRACES`
//! variable; the variables keep their own rules (`/v1/traces` is appended to
//! `OTEL_EXPORTER_OTLP_ENDPOINT` for HTTP). Without a protocol variable, an
//! endpoint on port 4317 is spoken to over gRPC and any other over HTTP.

use bytes::Bytes;
use examples::shop;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::Context;
use opentelemetry::trace::{SpanId, Status, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SimpleSpanProcessor, Span, SpanData, SpanProcessor};
use otel_collector::TailSamplingGroup;
use otel_core::testing::{InMemoryExporter, format_duration, render_trace_with_services};
use otel_core::{Telemetry, TelemetryHandle};
use otel_export::analysis::{Bottlenecks, SpanNode};
use otel_export::{BatchSpanProcessor, Counters, OtlpExporterBuilder, Protocol};
use otel_propagation::{BaggagePropagator, CompositePropagator, TraceContextPropagator};
use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;

/// The seed documents' policies, with a latency threshold that suits a demo.
const POLICIES: &str = r#"
decision_wait: 2s
decision_wait_after_root_received: 300ms
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
  - name: slow-traces
    type: latency
    latency: {threshold_ms: 500}
  - name: probabilistic
    type: probabilistic
    probabilistic: {sampling_percentage: 10}
"#;

const USAGE: &str = "usage: demo [--requests N] [--otlp-endpoint URL]";

struct Args {
    requests: usize,
    otlp: Option<Otlp>,
}

/// Where kept spans also go over OTLP.
enum Otlp {
    /// `--otlp-endpoint`: a full URL, used as it is.
    Flag(String),
    /// An endpoint variable (name, value), which the exporter reads by its own rules.
    Env(&'static str, String),
}

impl Otlp {
    fn from_env() -> Option<Self> {
        ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
            .into_iter()
            .find_map(|var| {
                let value = std::env::var(var).ok()?;
                (!value.trim().is_empty()).then_some(Otlp::Env(var, value))
            })
    }

    fn url(&self) -> &str {
        match self {
            Otlp::Flag(url) | Otlp::Env(_, url) => url,
        }
    }
}

impl std::fmt::Display for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Otlp::Flag(url) => f.write_str(url),
            Otlp::Env(var, url) => write!(f, "{url} ({var})"),
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        requests: 300,
        otlp: Otlp::from_env(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (a.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--requests" => args.requests = value()?.parse().map_err(|_| "--requests needs a number".to_owned())?,
            "--otlp-endpoint" => args.otlp = Some(Otlp::Flag(value()?)),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// Kept spans go to memory (for the printout) and, when asked, to OTLP.
#[derive(Debug)]
struct Tee {
    print: SimpleSpanProcessor<InMemoryExporter>,
    otlp: Option<BatchSpanProcessor>,
}

impl SpanProcessor for Tee {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        if let Some(o) = &self.otlp {
            o.on_end(span.clone());
        }
        self.print.on_end(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        let a = self.print.force_flush();
        let b = self.otlp.as_ref().map_or(Ok(()), SpanProcessor::force_flush);
        a.and(b)
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let a = self.print.shutdown_with_timeout(timeout);
        let b = self.otlp.as_ref().map_or(Ok(()), |o| o.shutdown_with_timeout(timeout));
        a.and(b)
    }
    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.print.set_resource(resource);
        if let Some(o) = &mut self.otlp {
            o.set_resource(resource);
        }
    }
}

struct Service {
    name: &'static str,
    handle: TelemetryHandle,
    kept: InMemoryExporter,
    /// Every span, before tail sampling (for the unbiased bottleneck summary).
    all: InMemoryExporter,
    /// What the OTLP export of kept spans did.
    export: Arc<Counters>,
}

fn otlp_processor(otlp: &Otlp, counters: Arc<Counters>) -> Result<BatchSpanProcessor, String> {
    let mut builder = OtlpExporterBuilder::from_env()
        .map_err(|e| e.to_string())?
        .with_counters(counters.clone());
    if let Otlp::Flag(url) = otlp {
        builder = builder.with_endpoint(url.clone());
    }
    if std::env::var_os("OTEL_EXPORTER_OTLP_PROTOCOL").is_none()
        && std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").is_none()
    {
        let grpc = otlp.url().trim().trim_end_matches('/').ends_with(":4317");
        builder = builder.with_protocol(if grpc { Protocol::Grpc } else { Protocol::HttpProtobuf });
    }
    let exporter = builder.build().map_err(|e| e.to_string())?;
    Ok(BatchSpanProcessor::builder(exporter).with_counters(counters).build())
}

fn service(name: &'static str, group: &TailSamplingGroup, otlp: Option<&Otlp>) -> Result<Service, String> {
    let kept = InMemoryExporter::default();
    let export = Arc::new(Counters::new());
    let tee = Tee {
        print: SimpleSpanProcessor::new(kept.clone()),
        otlp: otlp.map(|o| otlp_processor(o, export.clone())).transpose()?,
    };
    let all = InMemoryExporter::default();
    let handle = Telemetry::from_env()
        .with_service_name(name)
        .with_globals(false)
        .without_exporter()
        .with_span_processor(group.processor(tee))
        .with_span_processor(SimpleSpanProcessor::new(all.clone()))
        .install()
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(Service {
        name,
        handle,
        kept,
        all,
        export,
    })
}

/// Captured log output.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What request `i` of the traffic is: (method, path, token).
fn request_plan(i: usize, orders: bool) -> (&'static str, String, String) {
    let token = match i {
        _ if i % 37 == 5 => "expired-42".to_owned(),
        _ if i % 53 == 7 => "overloaded".to_owned(),
        _ => format!("user-{}", i % 17),
    };
    if orders && i % 10 == 9 {
        return ("POST", "/api/orders".into(), token);
    }
    let id = match i {
        _ if i % 41 == 3 => 13,
        _ if i % 29 == 11 => 900 + (i % 10) as u32,
        _ => (i * 7 % 100) as u32 + 1,
    };
    ("GET", format!("/api/products/{id}"), token)
}

#[derive(Default)]
struct Outcomes {
    by_status: HashMap<u16, usize>,
    slow: usize,
    failed: usize,
}

async fn traffic(gateway: std::net::SocketAddr, n: usize, orders: bool) -> Outcomes {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (client, limit, outcomes) = (client.clone(), limit.clone(), outcomes.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(_permit) = limit.acquire().await else { return };
            let (method, path, token) = request_plan(i, orders);
            let body = if method == "POST" {
                format!("{{\"id\":{i}}}")
            } else {
                String::new()
            };
            let request = http::Request::builder()
                .method(method)
                .uri(format!("http://{gateway}{path}"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)));
            let Ok(request) = request else { return };
            let started = Instant::now();
            let status = match client.request(request).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let _ = resp.into_body().collect().await;
                    Some(status)
                }
                Err(_) => None,
            };
            let slow = started.elapsed() >= Duration::from_millis(500);
            let mut o = outcomes.lock().unwrap_or_else(PoisonError::into_inner);
            match status {
                Some(s) => {
                    *o.by_status.entry(s).or_default() += 1;
                    o.slow += usize::from(slow);
                }
                None => o.failed += 1,
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(outcomes)
        .ok()
        .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        .unwrap_or_default()
}

/// The bottleneck summary of `spans`, trace by trace.
fn bottlenecks(spans: &[SpanData], service_of: &HashMap<SpanId, &'static str>) -> Bottlenecks {
    let mut by_trace: HashMap<TraceId, Vec<&SpanData>> = HashMap::new();
    for s in spans {
        by_trace.entry(s.span_context.trace_id()).or_default().push(s);
    }
    let mut summary = Bottlenecks::default();
    for trace in by_trace.values() {
        let nodes: Vec<SpanNode<'_>> = trace
            .iter()
            .map(|s| SpanNode::from_span_data(s, service_of.get(&s.span_context.span_id()).copied().unwrap_or("?")))
            .collect();
        summary.record(&nodes);
    }
    summary
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("demo: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    // W3C Trace Context (with the Level 2 random flag) and Baggage across every hop.
    opentelemetry::global::set_text_map_propagator(CompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new().with_random_flag_for_new_traces(true)),
        Box::new(BaggagePropagator::new()),
    ]));
    // One tail sampler for the whole scenario, as a sidecar would be.
    let group = TailSamplingGroup::from_config_yaml(POLICIES).map_err(|e| e.to_string())?;
    let otlp = args.otlp.as_ref();
    let gateway = service("gateway", &group, otlp)?;
    let auth = service("auth", &group, otlp)?;
    let product = service("product", &group, otlp)?;
    let worker = service("order-worker", &group, otlp)?;
    // Every service read the same variables; the log goes to the captured
    // buffer, so say here which ones were replaced by defaults.
    for warning in gateway.handle.warnings() {
        eprintln!("demo: {warning}; using the default");
    }
    // Each service's `tracing` spans go to its own pipeline (its module is its
    // target); JSON logs with trace ids are captured to show the correlation
    // at the end.
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            otel_core::logs::json_layer()
                .with_writer(move || writer.clone())
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .with(shop::layer_for("gateway", &gateway.handle))
        .with(shop::layer_for("auth", &auth.handle))
        .with(shop::layer_for("product", &product.handle))
        .with(shop::layer_for("order-worker", &worker.handle));
    let _ = tracing::subscriber::set_global_default(subscriber);
    let provider = |s: &Service| {
        s.handle
            .provider()
            .cloned()
            .ok_or_else(|| format!("{}: no provider", s.name))
    };

    let amqp_addr = std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let broker = shop::connect_broker(&amqp_addr).await;
    let auth_addr = shop::start_auth(&provider(&auth)?).await.map_err(|e| e.to_string())?;
    let product_addr = shop::start_product(&provider(&product)?).await?;
    let (orders, settled, broker_note) = match broker {
        Ok((conn, channel)) => {
            let settled = shop::start_worker(&provider(&worker)?, channel.clone()).await?;
            let gateway_channel = conn.create_channel().await.map_err(|e| e.to_string())?;
            let amqp = otel_integrations::amqp::Amqp::new().with_tracer_provider(&provider(&gateway)?);
            (
                Some(shop::OrderQueue {
                    channel: gateway_channel,
                    amqp,
                }),
                Some((settled, conn)),
                format!("queue {} at {}", shop::ORDERS_QUEUE, redact(&amqp_addr)),
            )
        }
        Err(e) => (
            None,
            None,
            format!(
                "RabbitMQ not reachable at {} ({e}): orders are skipped",
                redact(&amqp_addr)
            ),
        ),
    };
    let has_orders = orders.is_some();
    let gateway_addr = shop::start_gateway(&provider(&gateway)?, auth_addr, product_addr, orders).await?;

    println!("otel demo: four services on loopback, tail-sampled in process");
    println!("  gateway       http://{gateway_addr}  (axum: GET /api/products/{{id}}, POST /api/orders)");
    println!("  auth          grpc://{auth_addr}  (tonic: shop.auth.Auth/Verify)");
    println!("  product       http://{product_addr}  (axum, cache, SQLite)");
    println!("  order-worker  {broker_note}");
    println!("  policies      every error trace, every trace over 500 ms, 10% of the rest");
    if let Some(o) = otlp {
        println!("  export        kept spans also go to {o}");
    }
    println!();

    let t0 = Instant::now();
    let outcomes = traffic(gateway_addr, args.requests, has_orders).await;
    let took = t0.elapsed();
    // Let the worker drain the queue.
    if let Some((settled, _)) = &settled {
        let orders_sent = outcomes.by_status.get(&202).copied().unwrap_or(0) as u64;
        let wait = Instant::now();
        while settled.load(Ordering::Relaxed) < orders_sent && wait.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut statuses: Vec<(u16, usize)> = outcomes.by_status.iter().map(|(k, v)| (*k, *v)).collect();
    statuses.sort();
    println!(
        "sent {} requests in {}: {}{}; {} took over 500 ms",
        args.requests,
        format_duration(took),
        statuses
            .iter()
            .map(|(s, n)| format!("{n} x {s}"))
            .collect::<Vec<_>>()
            .join(", "),
        if outcomes.failed > 0 {
            format!(", {} failed to connect", outcomes.failed)
        } else {
            String::new()
        },
        outcomes.slow
    );

    // Decide what is still buffered and collect what was kept.
    group.decide_all();
    let services = [&gateway, &auth, &product, &worker];
    for s in services {
        let _ = s.handle.force_flush();
    }
    let mut spans: Vec<SpanData> = Vec::new();
    let mut service_of: HashMap<SpanId, &'static str> = HashMap::new();
    for s in services {
        for span in s.kept.spans() {
            service_of.insert(span.span_context.span_id(), s.name);
            spans.push(span);
        }
    }
    let stats = group.stats();
    let kept_traces: Vec<TraceId> = {
        let mut seen = HashSet::new();
        spans
            .iter()
            .map(|s| s.span_context.trace_id())
            .filter(|t| seen.insert(*t))
            .collect()
    };
    println!();
    println!(
        "kept {} of {} traces ({} of {} spans); dropped {} traces ({} spans)",
        stats.traces_sampled,
        stats.traces_sampled + stats.traces_not_sampled,
        stats.spans_sampled + stats.late_spans_sampled,
        stats.spans_received,
        stats.traces_not_sampled,
        stats.spans_not_sampled + stats.late_spans_dropped,
    );
    for p in &stats.policies {
        println!("  {:<15} voted to keep {:>4} traces", p.name, p.sampled);
    }
    if stats.late_spans_sampled + stats.late_spans_dropped > 0 {
        println!(
            "  late spans      {} followed their trace's decision (kept {}, dropped {})",
            stats.late_spans_sampled + stats.late_spans_dropped,
            stats.late_spans_sampled,
            stats.late_spans_dropped
        );
    }

    // A few kept traces, as trees.
    let is_error = |t: TraceId| {
        spans
            .iter()
            .any(|s| s.span_context.trace_id() == t && matches!(s.status, Status::Error { .. }))
    };
    let root_ms = |t: TraceId| {
        spans
            .iter()
            .filter(|s| s.span_context.trace_id() == t && service_of.get(&s.span_context.span_id()) == Some(&"gateway"))
            .filter_map(|s| s.end_time.duration_since(s.start_time).ok())
            .max()
            .unwrap_or_default()
    };
    let span_count = |t: TraceId| spans.iter().filter(|s| s.span_context.trace_id() == t).count();
    let mut shown: Vec<(TraceId, &str)> = Vec::new();
    let pick = |f: &dyn Fn(TraceId) -> bool| {
        kept_traces
            .iter()
            .copied()
            .filter(|t| f(*t))
            .max_by_key(|t| span_count(*t))
    };
    let is_order = |t: TraceId| {
        spans.iter().any(|s| {
            s.span_context.trace_id() == t && service_of.get(&s.span_context.span_id()) == Some(&"order-worker")
        })
    };
    if let Some(t) = pick(&|t| is_error(t) && root_ms(t) < Duration::from_millis(500) && !is_order(t)) {
        shown.push((t, "an error"));
    }
    if let Some(t) = pick(&|t| root_ms(t) >= Duration::from_millis(500)) {
        shown.push((t, "slow"));
    }
    if let Some(t) = pick(&is_order) {
        shown.push((t, "an order, across RabbitMQ"));
    }
    if let Some(t) = pick(&|t| !is_error(t) && root_ms(t) < Duration::from_millis(500) && !is_order(t)) {
        shown.push((t, "routine, kept by the 10%"));
    }
    for (t, why) in &shown {
        println!();
        println!("trace {t} ({why}):");
        let service = |s: &SpanData| service_of.get(&s.span_context.span_id()).copied().unwrap_or("?");
        let tree = render_trace_with_services(&spans, *t, service, |s| {
            let status = match &s.status {
                Status::Error { description } if description.is_empty() => "  ERROR".to_owned(),
                Status::Error { description } => format!("  ERROR: {description}"),
                _ => String::new(),
            };
            format!("[{}] {}{status}", service(s), s.name)
        });
        for line in tree.lines() {
            println!("  {line}");
        }
    }
    println!();
    println!("  (* on the critical path: the chain of work that set the trace's latency)");

    // Where the time goes across traces: the kept ones, and every one seen
    // (what the tail sampler kept is biased toward errors and slow traces).
    let mut all_spans: Vec<SpanData> = Vec::new();
    let mut all_service: HashMap<SpanId, &'static str> = HashMap::new();
    for s in services {
        for span in s.all.spans() {
            all_service.insert(span.span_context.span_id(), s.name);
            all_spans.push(span);
        }
    }
    for (title, set, service_map) in [
        ("kept traces", &spans, &service_of),
        ("all traces seen", &all_spans, &all_service),
    ] {
        let summary = bottlenecks(set, service_map);
        println!();
        println!(
            "bottlenecks, {title} ({} traces; path share: of all time on critical paths):",
            summary.traces()
        );
        for line in summary.render_text(6).lines() {
            println!("  {line}");
        }
    }

    // Logs carry the trace and span ids: the lines of the error trace shown above.
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
    let error_trace = shown.iter().find(|(t, _)| is_error(*t)).map(|(t, _)| t.to_string());
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| error_trace.as_ref().is_some_and(|t| l.contains(t.as_str())))
        .take(4)
        .collect();
    if !lines.is_empty() {
        println!();
        println!("log lines of that error trace (JSON, with trace_id and span_id):");
        for l in lines {
            println!("  {l}");
        }
    }
    let log_lines = text.lines().count();
    let with_ids = text.lines().filter(|l| l.contains("\"trace_id\"")).count();

    println!();
    println!("summary");
    println!(
        "  requests      {} in {} ({} with errors or slow)",
        args.requests,
        format_duration(took),
        outcomes
            .by_status
            .iter()
            .filter(|(s, _)| **s >= 400)
            .map(|(_, n)| n)
            .sum::<usize>()
            + outcomes.slow
    );
    println!(
        "  traces        {} seen, {} kept ({:.0}%): every error and slow one, and about 10% of the rest",
        stats.traces_sampled + stats.traces_not_sampled,
        stats.traces_sampled,
        100.0 * stats.traces_sampled as f64 / (stats.traces_sampled + stats.traces_not_sampled).max(1) as f64
    );
    let mut per_service: Vec<(&str, usize)> = services
        .iter()
        .map(|s| {
            (
                s.name,
                spans
                    .iter()
                    .filter(|x| service_of.get(&x.span_context.span_id()) == Some(&s.name))
                    .count(),
            )
        })
        .collect();
    per_service.retain(|(_, n)| *n > 0);
    println!(
        "  kept spans    {}",
        per_service
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  log lines     {log_lines}, {with_ids} with trace ids");
    let delay: f64 =
        stats.decision_delay_ms_sum as f64 / (stats.traces_sampled + stats.traces_not_sampled).max(1) as f64;
    println!(
        "  decisions     {:.0} ms after a trace's first span on average (early once the root ended)",
        delay
    );
    for s in services {
        let _ = s.handle.shutdown(Duration::from_secs(5));
    }
    if let Some(o) = otlp {
        // After shutdown, every kept span has been sent or given up on.
        let (mut delivered, mut lost, mut error) = (0, 0, None);
        for s in services {
            let c = s.export.snapshot();
            delivered += c.exported.saturating_sub(c.rejected);
            // `failed` (the processor's count) includes what the exporter gave up on.
            lost += c.dropped + c.failed + c.rejected;
            error = error.or_else(|| s.export.last_error());
        }
        let error = error.map_or_else(String::new, |e| format!(" (last error: {e})"));
        println!("  export        {delivered} kept spans delivered to {o}, {lost} not delivered{error}");
    }
    println!("  done in       {}", format_duration(started.elapsed()));
    if let Some((_, conn)) = settled {
        let _ = conn.close(200, "demo done".into()).await;
    }
    Ok(())
}

/// `amqp://user:password@host` without the password.
fn redact(addr: &str) -> String {
    match (addr.find("://"), addr.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://{}", &addr[..s], &addr[at + 1..]),
        _ => addr.to_owned(),
    }
}
