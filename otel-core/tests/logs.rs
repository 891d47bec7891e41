//! Log lines carry the ids of the spans `TracingLayer` records: parse the
//! JSON and text output and compare with the exported spans.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::trace::SimpleSpanProcessor;
use otel_core::Telemetry;
use otel_core::testing::InMemoryExporter;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;

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
