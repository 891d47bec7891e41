//! Per-span cost of `tracing` spans on the calling thread: otel-core's
//! `TracingLayer` against tracing-opentelemetry 0.34 over the same installed
//! pipeline, and against tracing-opentelemetry over opentelemetry_sdk's
//! BatchSpanProcessor + opentelemetry-otlp; also the registry alone (the
//! floor every `tracing` layer stands on).
//!
//! tracing-opentelemetry runs in its cheapest setting (no location, thread,
//! target or inactivity attributes). Every pipeline exports OTLP/gRPC to a
//! loopback sink; pipelines are flushed outside the timing every 2048 spans,
//! so queues never overflow, and the share of spans delivered is printed.
//! Each comparison is paired (`benches::paired`): the two sides alternate in
//! chunks of 64 spans within the same criterion samples.
//!
//! `cargo bench -p benches --bench tracing`

use benches::paired::{PairedGroup, PairedRow, print_paired};
use criterion::Criterion;
use opentelemetry::trace::TracerProvider as _;
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

/// Spans between flushes; every queue holds at least twice this.
const FLUSH_EVERY: u64 = 2048;

/// One subscriber under test, its pipeline's flush, and what it delivered.
struct Side {
    name: &'static str,
    dispatch: Dispatch,
    flush: Box<dyn Fn()>,
    since_flush: Cell<u64>,
    created: Cell<u64>,
    delivered: Box<dyn Fn() -> u64>,
}

impl Side {
    /// Times `n` runs of `work` (which makes `spans` spans) under this side's
    /// subscriber; `parent` runs them inside an entered parent span.
    fn run(&self, n: u64, spans: u64, parent: bool, work: fn()) -> Duration {
        let guard = tracing::dispatcher::set_default(&self.dispatch);
        let outer = parent.then(|| tracing::info_span!("parent").entered());
        let start = Instant::now();
        for _ in 0..n {
            work();
        }
        let t = start.elapsed();
        drop(outer);
        drop(guard);
        let made = n * spans + u64::from(parent);
        self.created.set(self.created.get() + made);
        self.since_flush.set(self.since_flush.get() + made);
        if self.since_flush.get() >= FLUSH_EVERY {
            (self.flush)();
            self.since_flush.set(0);
        }
        t
    }
}

/// A layer that does nothing: the registry alone frees closed spans only
/// when some layer is present.
#[derive(Clone, Copy)]
struct Noop;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Noop {}

fn zero() {
    drop(tracing::info_span!("op").entered());
}

fn five() {
    drop(
        tracing::info_span!(
            "op",
            http.request.method = "GET",
            http.route = "/api/products/{id}",
            http.response.status_code = 200,
            server.address = "shop.example.com",
            server.port = 443
        )
        .entered(),
    );
}

fn event() {
    let _span = tracing::info_span!("op").entered();
    tracing::info!(order = 42, "order placed");
}

/// A workload: its name, the routine, spans per run, whether it runs inside a parent.
type Workload = (&'static str, fn(), u64, bool);

const WORK: [Workload; 4] = [
    ("0 fields", zero, 1, false),
    ("5 fields", five, 1, false),
    ("child in a parent", zero, 1, true),
    ("1 event", event, 1, false),
];

fn lean<T>(tracer: T) -> tracing_opentelemetry::OpenTelemetryLayer<tracing_subscriber::Registry, T>
where
    T: opentelemetry::trace::Tracer + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
}

fn ours_pipeline(
    runtime: &tokio::runtime::Runtime,
    sampler: Option<otel_core::otel_sampling::ParentBased<otel_core::otel_sampling::AlwaysOff>>,
) -> (Arc<otel_core::TelemetryHandle>, Arc<benches::sink::SinkCounts>) {
    let (addr, sink) = runtime.block_on(benches::sink::start());
    let mut builder = otel_core::Telemetry::builder()
        .with_service_name("bench")
        .with_otlp(
            otel_core::otel_export::OtlpExporter::builder()
                .with_protocol(otel_core::otel_export::Protocol::Grpc)
                .with_endpoint(format!("http://{addr}")),
        )
        .with_batch_config(otel_core::otel_export::BatchConfig {
            max_queue_size: 4 * FLUSH_EVERY as usize,
            ..Default::default()
        })
        .with_globals(false);
    if let Some(s) = sampler {
        builder = builder.with_sampler(s);
    }
    (Arc::new(builder.install().expect("valid settings")), sink)
}

fn side_over_ours(
    name: &'static str,
    handle: &Arc<otel_core::TelemetryHandle>,
    sink: &Arc<benches::sink::SinkCounts>,
    dispatch: Dispatch,
) -> Side {
    let h = handle.clone();
    let s = sink.clone();
    Side {
        name,
        dispatch,
        flush: Box::new(move || {
            let _ = h.force_flush();
        }),
        since_flush: Cell::new(0),
        created: Cell::new(0),
        delivered: Box::new(move || s.spans()),
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");

    // Ours and tracing-opentelemetry over otel-core's pipeline (one each, so
    // each sink counts one side).
    let (ours_handle, ours_sink) = ours_pipeline(&runtime, None);
    let ours = side_over_ours(
        "ours",
        &ours_handle,
        &ours_sink,
        Dispatch::new(tracing_subscriber::registry().with(ours_handle.tracing_layer())),
    );
    let (quiet_handle, quiet_sink) = ours_pipeline(&runtime, None);
    let ours_quiet = side_over_ours(
        "ours, no context activation",
        &quiet_handle,
        &quiet_sink,
        Dispatch::new(tracing_subscriber::registry().with(quiet_handle.tracing_layer().with_context_activation(false))),
    );
    let (to_handle, to_sink) = ours_pipeline(&runtime, None);
    let to_ours = side_over_ours(
        "tracing-opentelemetry over otel-core",
        &to_handle,
        &to_sink,
        Dispatch::new(tracing_subscriber::registry().with(lean(to_handle.tracer("bench")))),
    );

    // tracing-opentelemetry over opentelemetry_sdk + opentelemetry-otlp.
    let (addr, sdk_sink) = runtime.block_on(benches::sink::start());
    let provider = benches::sdk_otlp_provider(&runtime, addr, 4 * FLUSH_EVERY as usize);
    let p = provider.clone();
    let s = sdk_sink.clone();
    let to_sdk = Side {
        name: "tracing-opentelemetry over opentelemetry_sdk + otlp",
        dispatch: Dispatch::new(tracing_subscriber::registry().with(lean(provider.tracer("bench")))),
        flush: Box::new(move || {
            let _ = p.force_flush();
        }),
        since_flush: Cell::new(0),
        created: Cell::new(0),
        delivered: Box::new(move || s.spans()),
    };

    let floor = Side {
        name: "registry alone",
        dispatch: Dispatch::new(tracing_subscriber::registry().with(Noop)),
        flush: Box::new(|| {}),
        since_flush: Cell::new(0),
        created: Cell::new(0),
        delivered: Box::new(|| 0),
    };

    // Unsampled: the root sampler drops every trace.
    let (off_handle, _off_sink) = ours_pipeline(
        &runtime,
        Some(otel_core::otel_sampling::ParentBased::new(
            otel_core::otel_sampling::AlwaysOff,
        )),
    );
    let ours_off = side_over_ours(
        "ours, unsampled",
        &off_handle,
        &_off_sink,
        Dispatch::new(tracing_subscriber::registry().with(off_handle.tracing_layer())),
    );
    let (to_off_handle, _to_off_sink) = ours_pipeline(
        &runtime,
        Some(otel_core::otel_sampling::ParentBased::new(
            otel_core::otel_sampling::AlwaysOff,
        )),
    );
    let to_off = side_over_ours(
        "tracing-opentelemetry, unsampled",
        &to_off_handle,
        &_to_off_sink,
        Dispatch::new(tracing_subscriber::registry().with(lean(to_off_handle.tracer("bench")))),
    );

    let mut rows: Vec<(String, String, Option<f64>)> = Vec::new();
    let mut group = PairedGroup::new(&mut c, "tracing");
    for (label, work, spans, parent) in WORK {
        let id = |peer: &str| format!("{label} vs {peer}");
        group.bench_timed(
            &id("tracing-opentelemetry"),
            |n| ours.run(n, spans, parent, work),
            |n| to_ours.run(n, spans, parent, work),
        );
        rows.push((
            format!("{label}: ours / tracing-opentelemetry"),
            format!("tracing/{}", id("tracing-opentelemetry")),
            Some(0.25),
        ));
        group.bench_timed(
            &id("tracing-opentelemetry over the SDK"),
            |n| ours.run(n, spans, parent, work),
            |n| to_sdk.run(n, spans, parent, work),
        );
        rows.push((
            format!("{label}: ours / t-o over SDK + otlp"),
            format!("tracing/{}", id("tracing-opentelemetry over the SDK")),
            None,
        ));
        group.bench_timed(
            &id("registry"),
            |n| floor.run(n, spans, parent, work),
            |n| ours.run(n, spans, parent, work),
        );
        rows.push((
            format!("{label}: registry alone / ours"),
            format!("tracing/{}", id("registry")),
            None,
        ));
    }
    for (label, work, spans, parent) in [WORK[0], WORK[2]] {
        let name = format!("no context activation, {label}");
        group.bench_timed(
            &name,
            |n| ours_quiet.run(n, spans, parent, work),
            |n| to_ours.run(n, spans, parent, work),
        );
        rows.push((
            format!("{label}, no context activation: ours / t-o"),
            format!("tracing/{name}"),
            None,
        ));
    }
    for (label, work, spans, parent) in [WORK[0], WORK[2]] {
        let name = format!("unsampled {label}");
        group.bench_timed(
            &name,
            |n| ours_off.run(n, spans, parent, work),
            |n| to_off.run(n, spans, parent, work),
        );
        rows.push((
            format!("unsampled, {label}: ours / t-o"),
            format!("tracing/{name}"),
            None,
        ));
    }
    group.finish();
    c.final_summary();

    for side in [&ours, &ours_quiet, &to_ours, &to_sdk] {
        (side.flush)();
        // The sinks receive asynchronously; give the last export a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while (side.delivered)() < side.created.get() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let delivered = (side.delivered)();
        println!(
            "{}: created {}, delivered {delivered} ({:.2}%)",
            side.name,
            side.created.get(),
            100.0 * delivered as f64 / side.created.get().max(1) as f64
        );
    }
    println!("ours counters: {:?}", ours_handle.counters().snapshot());
    let table: Vec<PairedRow<'_>> = rows
        .iter()
        .map(|(label, id, target)| PairedRow {
            label,
            id,
            target: *target,
        })
        .collect();
    print_paired("tracing spans, caller-thread time per span", &table, ["met", "MISSED"]);
    let _ = ours_handle.shutdown(Duration::from_secs(5));
    let _ = to_handle.shutdown(Duration::from_secs(5));
    let _ = provider.shutdown();
}
