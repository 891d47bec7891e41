//! Trace ids in every log line: `Telemetry::init` installs a subscriber whose
//! log lines (here JSON) carry `trace_id`, `span_id` and `trace_flags`, for
//! `tracing` spans and OpenTelemetry API spans alike.
//!
//! ```text
//! cargo run -p examples --bin log-correlation
//! ```

use std::time::Duration;

#[tracing::instrument]
fn charge(card: &str, amount_cents: u64) {
    tracing::info!(amount_cents, "charging");
    // An OpenTelemetry API span inside it: its ids win while it is current.
    otel_core::in_span("call payment provider", |_| tracing::warn!("provider slow, retrying"));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = otel_core::Telemetry::from_env()
        .with_service_name("billing")
        .without_exporter()
        .with_log_format(otel_core::LogFormat::Json)
        .init()?;
    tracing::info!("outside any span: no ids");
    charge("visa", 1299);
    telemetry.shutdown(Duration::from_secs(5))?;
    Ok(())
}
