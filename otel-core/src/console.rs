//! `OTEL_TRACES_EXPORTER=console`: one readable line per span on stdout.

use opentelemetry::trace::Status;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::io::Write;

/// Writes each span as one line to stdout:
/// `name kind duration status trace=… span=… parent=… key=value …`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConsoleExporter;

/// Formats one span as the console exporter prints it.
pub fn format_span(span: &SpanData) -> String {
    use std::fmt::Write as _;
    let micros = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default()
        .as_micros();
    let status = match &span.status {
        Status::Unset => "UNSET".to_owned(),
        Status::Ok => "OK".to_owned(),
        Status::Error { description } => format!("ERROR({description})"),
    };
    let mut line = format!(
        "{} {:?} {}µs {} trace={} span={} parent={}",
        span.name,
        span.span_kind,
        micros,
        status,
        span.span_context.trace_id(),
        span.span_context.span_id(),
        span.parent_span_id
    );
    for kv in &span.attributes {
        let _ = write!(line, " {}={}", kv.key, kv.value);
    }
    line
}

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut out = std::io::stdout().lock();
        for span in &batch {
            // A closed stdout is not worth failing the application over.
            let _ = writeln!(out, "{}", format_span(span));
        }
        Ok(())
    }
}
