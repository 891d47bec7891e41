//! Trace ids in every log line: `otel_integrations::logs::json_layer` adds
//! `trace_id`, `span_id` and `trace_flags` to tracing-subscriber's JSON
//! output, for spans from `tracing` (via tracing-opentelemetry) and from the
//! OpenTelemetry API alike.
//!
//! ```text
//! cargo run -p examples --bin log-correlation
//! ```

use opentelemetry::trace::TracerProvider as _;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = otel_core::Telemetry::from_env()
        .with_service_name("billing")
        .without_exporter()
        .install()?;
    let tracer = telemetry.tracer("billing");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(otel_integrations::logs::json_layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("outside any span: no ids");
        // A `tracing` span, exported through tracing-opentelemetry.
        tracing::info_span!("charge card", amount_cents = 1299).in_scope(|| {
            tracing::info!(card = "visa", "charging");
            // An OpenTelemetry API span inside it: its ids win.
            otel_core::in_span("call payment provider", |_| tracing::warn!("provider slow, retrying"));
        });
    });
    let _ = telemetry.provider().map(|p| p.tracer("unused"));
    telemetry.shutdown(Duration::from_secs(5))?;
    Ok(())
}
