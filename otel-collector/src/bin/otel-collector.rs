//! `otel-collector --config FILE [--validate] [--shutdown-timeout 20s]`
//!
//! Runs the tail-sampling collector with an OpenTelemetry Collector YAML
//! configuration; `--validate` checks the configuration and exits (0 when
//! valid). SIGTERM or SIGINT stop the receivers, decide every buffered trace
//! and drain the exporters before exiting.

use otel_collector::sidecar::{Collector, CollectorConfig};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: otel-collector --config FILE [--validate] [--shutdown-timeout DURATION]

  --config FILE            OpenTelemetry Collector YAML (receivers, processors,
                           exporters, service.pipelines.traces); ${env:VAR} expands
  --validate               check the configuration, print the result and exit
  --shutdown-timeout D     time allowed to drain on SIGTERM/SIGINT (default 20s)";

struct Args {
    config: String,
    validate: bool,
    shutdown_timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut config = None;
    let mut validate = false;
    let mut shutdown_timeout = otel_collector::sidecar::config::DEFAULT_SHUTDOWN_TIMEOUT;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--config" | "-c" => config = Some(value("--config")?),
            "--validate" => validate = true,
            "--shutdown-timeout" => {
                let v = value("--shutdown-timeout")?;
                shutdown_timeout =
                    otel_collector::parse_duration(&v).map_err(|e| format!("--shutdown-timeout: {e}"))?;
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let config = config.ok_or("--config FILE is required")?;
    Ok(Args {
        config,
        validate,
        shutdown_timeout,
    })
}

fn init_logs(level: &str, json: bool) {
    let level = match level {
        "debug" => tracing::Level::DEBUG,
        "warn" => tracing::Level::WARN,
        "error" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("otel-collector: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("otel-collector: cannot read {}: {e}", args.config);
            return ExitCode::from(1);
        }
    };
    let config = match CollectorConfig::parse(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("otel-collector: invalid configuration {}: {e}", args.config);
            return ExitCode::from(1);
        }
    };
    if args.validate {
        for w in &config.warnings {
            eprintln!("otel-collector: warning: {w}");
        }
        println!("{}: valid ({} traces pipeline(s))", args.config, config.pipelines.len());
        return ExitCode::SUCCESS;
    }
    init_logs(&config.telemetry.log_level, config.telemetry.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("otel-collector")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otel-collector: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let collector = match Collector::start(config).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::from(1);
            }
        };
        tracing::info!("otel-collector ready");
        let signal = wait_for_signal().await;
        tracing::info!("{signal}: shutting down (up to {:?})", args.shutdown_timeout);
        collector.shutdown(args.shutdown_timeout).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
