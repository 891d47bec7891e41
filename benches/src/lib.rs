//! Shared helpers for the benches: reading criterion's results back and
//! printing how our implementation compares with the peer measured in the same run.
//!
//! Run everything with `cargo bench -p benches`, or one file with
//! `cargo bench -p benches --bench propagation`.

use std::path::{Path, PathBuf};

/// One comparison: our benchmark id and the peer's, within a criterion group.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    /// What is compared, for the printed table.
    pub label: &'a str,
    /// Criterion benchmark id of our implementation (`group/function`).
    pub ours: &'a str,
    /// Criterion benchmark id of the peer (`group/function`).
    pub theirs: &'a str,
    /// The ratio (ours / theirs) the issue sets as the goal, if any.
    pub target: Option<f64>,
}

/// Where criterion stores its results: `$CRITERION_HOME`, else `<target>/criterion`
/// found from the bench executable's own path (`<target>/<profile>/deps/<exe>`).
pub fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?;
    Some(target.join("criterion"))
}

/// The median time in nanoseconds criterion recorded for `id` in its latest run.
pub fn median_ns(dir: &Path, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(id).join("new").join("estimates.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("median")?.get("point_estimate")?.as_f64()
}

/// Prints a table of `ours / theirs` ratios for the pairs measured in this run.
pub fn print_ratios(title: &str, pairs: &[Pair<'_>]) {
    let Some(dir) = criterion_dir() else {
        eprintln!("{title}: criterion output directory not found; no ratios");
        return;
    };
    println!();
    println!("== {title}: ours vs peer (criterion medians, same run) ==");
    println!(
        "{:<44} {:>12} {:>12} {:>8} {:>8}",
        "", "ours", "peer", "ratio", "target"
    );
    for p in pairs {
        match (median_ns(&dir, p.ours), median_ns(&dir, p.theirs)) {
            (Some(ours), Some(theirs)) => {
                let ratio = ours / theirs;
                let target = p.target.map_or_else(String::new, |t| format!("<= {t:.2}"));
                let verdict = match p.target {
                    Some(t) if ratio <= t => " met",
                    Some(_) => " MISSED",
                    None => "",
                };
                println!(
                    "{:<44} {:>12} {:>12} {:>8.3} {:>8}{verdict}",
                    p.label,
                    fmt_ns(ours),
                    fmt_ns(theirs),
                    ratio,
                    target
                );
            }
            _ => println!("{:<44} (not measured in this run)", p.label),
        }
    }
}

/// Formats nanoseconds with a readable unit.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

/// The peer pipeline the benches compare with: opentelemetry_sdk's
/// `BatchSpanProcessor` (queue of `max_queue_size`) and opentelemetry-otlp's
/// gRPC exporter to `addr`, built on `runtime` (which it needs).
///
/// # Panics
///
/// When the endpoint is invalid (benches only).
pub fn sdk_otlp_provider(
    runtime: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    max_queue_size: usize,
) -> opentelemetry_sdk::trace::SdkTracerProvider {
    sdk_otlp_provider_for(
        runtime,
        addr,
        max_queue_size,
        opentelemetry_sdk::Resource::builder().build(),
    )
}

/// [`sdk_otlp_provider`] with a resource.
///
/// # Panics
///
/// When the endpoint is invalid (benches only).
pub fn sdk_otlp_provider_for(
    runtime: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    max_queue_size: usize,
    resource: opentelemetry_sdk::Resource,
) -> opentelemetry_sdk::trace::SdkTracerProvider {
    use opentelemetry_otlp::WithExportConfig;
    let _guard = runtime.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{addr}"))
        .build()
        .expect("valid endpoint");
    let config = opentelemetry_sdk::trace::BatchConfigBuilder::default()
        .with_max_queue_size(max_queue_size)
        .build();
    let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build();
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(processor)
        .build()
}

pub mod loadgen;
pub mod paired;
pub mod sink;
pub mod spans;
