//! Tail sampling inside the application: `TailSamplingProcessor` buffers
//! each trace, decides with the Collector's `tail_sampling` policies, and
//! forwards kept traces, whole, to the exporting processor.
//!
//! ```text
//! cargo run -p examples --bin tail-sampling
//! ```
//!
//! Twenty traces: two fail, one is slow. With the policies below, those
//! three are printed, plus about 10% of the rest.

use opentelemetry::trace::{Status, TraceContextExt};
use otel_collector::TailSamplingProcessor;
use otel_core::ConsoleExporter;
use otel_export::BatchSpanProcessor;
use std::time::{Duration, SystemTime};

const POLICIES: &str = r#"
decision_wait: 10s
decision_wait_after_root_received: 100ms
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
  - name: slow-traces
    type: latency
    latency: {threshold_ms: 1000}
  - name: probabilistic
    type: probabilistic
    probabilistic: {sampling_percentage: 10}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Head sampling stays always-on (the default): the tail sees every trace.
    let exporter = BatchSpanProcessor::builder(ConsoleExporter).build();
    let tail = TailSamplingProcessor::from_config_yaml(POLICIES, exporter)?;
    let telemetry = otel_core::Telemetry::from_env()
        .with_service_name("orders")
        .without_exporter()
        .with_span_processor(tail)
        .install()?;

    for i in 0..20 {
        let root = if i == 7 {
            // A trace that took 1.5 s.
            otel_core::span(format!("order {i}"))
                .start_time(SystemTime::now() - Duration::from_millis(1500))
                .start()
        } else {
            otel_core::span(format!("order {i}")).start()
        };
        {
            let _guard = root.clone().attach();
            otel_core::in_span("reserve stock", |cx| {
                if i == 3 || i == 12 {
                    cx.span().set_status(Status::error("out of stock"));
                }
            });
        }
        root.span().end();
    }
    println!("kept traces (errors, slow, ~10% of the rest):");
    // Shutdown decides what is still buffered and flushes the exporter.
    telemetry.shutdown(Duration::from_secs(5))?;
    Ok(())
}
