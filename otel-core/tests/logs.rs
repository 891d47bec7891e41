//! Log lines carry the ids of the spans `TracingLayer` records (and of
//! tracing-opentelemetry's and OpenTelemetry API spans): parse the JSON and
//! text output and compare with the exported spans.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::trace::SimpleSpanProcessor;
use otel_core::Telemetry;
use otel_core::testing::InMemoryExporter;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;

/// Some tests install global tracer providers; one at a time.
static GLOBALS: Mutex<()> = Mutex::new(());

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap()
}

#[test]
fn json_lines_carry_the_ids_the_layer_exports() {
    let exporter = InMemoryExporter::default();
    let handle = Telemetry::builder()
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .with_globals(false)
        .install()
        .unwrap();
    let out = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(handle.tracing_layer())
        .with(otel_core::logs::json_layer().with_writer(out.clone()));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("before any span");
        let request = tracing::info_span!("GET /api/products");
        {
            let _e = request.enter();
            tracing::info!("inside");
        }
        // Not entered: the event names its span explicitly.
        tracing::info!(parent: &request, "explicit parent");
        drop(request);
    });
    handle.force_flush().unwrap();
    let spans = exporter.spans();
    assert_eq!(spans.len(), 1);
    let sc = &spans[0].span_context;
    let lines = out.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(json(&lines[0]).get("trace_id").is_none());
    for line in &lines[1..] {
        let v = json(line);
        assert_eq!(v["trace_id"], sc.trace_id().to_string(), "{line}");
        assert_eq!(v["span_id"], sc.span_id().to_string(), "{line}");
        assert_eq!(v["trace_flags"], "03", "{line}");
    }
}

#[test]
fn text_lines_of_an_unsampled_trace_carry_its_trace_id() {
    let handle = Telemetry::builder()
        .without_exporter()
        .with_sampler(otel_core::otel_sampling::ParentBased::new(
            otel_core::otel_sampling::AlwaysOff,
        ))
        .with_globals(false)
        .install()
        .unwrap();
    let out = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(handle.tracing_layer())
        .with(otel_core::logs::text_layer().with_writer(out.clone()));
    let mut trace = String::new();
    tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!("dropped");
        let _r = root.enter();
        trace = otel_core::OpenTelemetrySpanExt::context(&root)
            .span()
            .span_context()
            .trace_id()
            .to_string();
        let child = tracing::info_span!("child of dropped");
        tracing::info!(parent: &child, "explicit, in an unsampled child");
        let _c = child.enter();
        tracing::info!("entered, in an unsampled child");
    });
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in lines {
        assert!(line.contains(&format!("trace_id={trace}")), "{line}");
        assert!(line.ends_with("trace_flags=02"), "{line}");
    }
}

#[test]
fn json_lines_carry_tracing_opentelemetry_and_otel_api_ids() {
    let _g = GLOBALS.lock().unwrap_or_else(|e| e.into_inner());
    let exporter = InMemoryExporter::default();
    let handle = Telemetry::builder()
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .install()
        .unwrap();
    let out = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(handle.tracer("logs")))
        .with(otel_core::logs::json_layer().with_writer(out.clone()));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("before any span");
        let span = tracing::info_span!("GET /api/products");
        span.in_scope(|| {
            tracing::info!(count = 3, "listing products");
            tracing::info_span!("SELECT products").in_scope(|| tracing::warn!("slow query"));
        });
        // A span made with the OpenTelemetry API, no tracing span around the event.
        otel_core::in_span("otel-api-span", |_| tracing::info!("from the otel api"));
    });

    let lines: Vec<serde_json::Value> = out.lines().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines[0].get("trace_id").is_none(),
        "nothing added outside spans: {}",
        lines[0]
    );
    let spans = exporter.spans();
    for (line, span_name) in [(1, "GET /api/products"), (2, "SELECT products"), (3, "otel-api-span")] {
        let exported = spans.iter().find(|s| s.name == span_name).unwrap();
        let l = &lines[line];
        assert_eq!(l["trace_id"], exported.span_context.trace_id().to_string(), "{l}");
        assert_eq!(l["span_id"], exported.span_context.span_id().to_string(), "{l}");
        assert_eq!(l["trace_flags"], "01");
    }
    assert_eq!(lines[1]["count"], 3, "event fields stay top level: {}", lines[1]);
    assert_eq!(lines[1]["message"], "listing products");
}

#[test]
fn text_lines_get_a_suffix_with_tracing_opentelemetry() {
    let _g = GLOBALS.lock().unwrap_or_else(|e| e.into_inner());
    let exporter = InMemoryExporter::default();
    let handle = Telemetry::builder()
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .install()
        .unwrap();
    let out = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(handle.tracer("logs")))
        .with(otel_core::logs::text_layer().with_writer(out.clone()));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("outside");
        tracing::info_span!("work").in_scope(|| tracing::info!("inside"));
    });
    let lines = out.lines();
    assert!(!lines[0].contains("trace_id="), "{}", lines[0]);
    let span = exporter.spans().into_iter().find(|s| s.name == "work").unwrap();
    let expected = format!(
        " trace_id={} span_id={} trace_flags=01",
        span.span_context.trace_id(),
        span.span_context.span_id()
    );
    assert!(lines[1].ends_with(&expected), "{}", lines[1]);
    assert!(lines[1].contains("inside"));
}

#[test]
fn events_become_span_events_on_otel_api_spans() {
    let _g = GLOBALS.lock().unwrap_or_else(|e| e.into_inner());
    let exporter = InMemoryExporter::default();
    let _handle = Telemetry::builder()
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .install()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(otel_core::logs::SpanEventsLayer);
    tracing::subscriber::with_default(subscriber, || {
        otel_core::in_span("job", |_| tracing::info!(items = 2, "batch done"));
    });
    let span = exporter.spans().into_iter().find(|s| s.name == "job").unwrap();
    assert_eq!(span.events[0].name, "batch done");
    assert!(span.events[0].attributes.iter().any(|kv| kv.key.as_str() == "items"));
}
