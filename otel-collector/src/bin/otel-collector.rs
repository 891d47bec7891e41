//! `otel-collector --config FILE [--config FILE ...]`: runs the collector.
//! `otel-collector validate --config FILE`: checks a configuration.
//! `otel-collector components`: lists what this collector has.
//!
//! Configurations are OpenTelemetry Collector YAML; repeated `--config` files
//! are merged as the Go Collector merges them (mappings key by key, the later
//! file winning). SIGTERM or SIGINT stop the receivers, decide every buffered
//! trace and drain the exporters before exiting.

use clap::{Arg, ArgAction, ArgMatches, Command};
use otel_collector::sidecar::Collector;
use otel_collector::sidecar::config::{self, CollectorConfig, LogEncoding, LogLevel};
use std::process::ExitCode;
use std::time::Duration;

fn config_arg() -> Arg {
    Arg::new("config")
        .long("config")
        .short('c')
        .value_name("FILE")
        .action(ArgAction::Append)
        .required(true)
        .help("OpenTelemetry Collector YAML; repeat to merge files (later ones win); ${env:VAR} expands")
}

fn cli() -> Command {
    Command::new("otel-collector")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A tail-sampling OpenTelemetry collector that reads the Go Collector's YAML")
        .args_conflicts_with_subcommands(true)
        .arg(config_arg())
        .arg(
            Arg::new("validate")
                .long("validate")
                .action(ArgAction::SetTrue)
                .help("check the configuration, print the result and exit (as the validate subcommand)"),
        )
        .arg(
            Arg::new("shutdown-timeout")
                .long("shutdown-timeout")
                .value_name("DURATION")
                .help("time allowed to drain on SIGTERM/SIGINT, a Go duration (default 20s)"),
        )
        .subcommand(
            Command::new("validate")
                .about("Checks a configuration: prints what is wrong, or that it is valid, and the settings it ignores")
                .arg(config_arg()),
        )
        .subcommand(
            Command::new("components")
                .about("Lists the receivers, processors, exporters and extensions, with their settings"),
        )
}

/// The merged configuration of every `--config` file.
fn load(matches: &ArgMatches) -> Result<(String, CollectorConfig), String> {
    let paths: Vec<&String> = matches
        .get_many::<String>("config")
        .map(Iterator::collect)
        .unwrap_or_default();
    let mut texts = Vec::with_capacity(paths.len());
    for p in &paths {
        texts.push(std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"))?);
    }
    let names = paths.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" + ");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let config = CollectorConfig::parse_merged_with_env(&refs, &|name| std::env::var(name).ok())
        .map_err(|e| format!("invalid configuration {names}: {e}"))?;
    Ok((names, config))
}

fn validate(matches: &ArgMatches) -> ExitCode {
    match load(matches) {
        Ok((names, config)) => {
            for w in &config.warnings {
                eprintln!("otel-collector: warning: {w}");
            }
            println!("{names}: valid ({} traces pipeline(s))", config.pipelines.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("otel-collector: {e}");
            ExitCode::from(1)
        }
    }
}

fn components() -> ExitCode {
    use std::fmt::Write as _;
    let mut text = format!("otel-collector {}\n", env!("CARGO_PKG_VERSION"));
    let mut section = "";
    for c in config::components() {
        if c.section != section {
            section = c.section;
            let _ = writeln!(text, "{section}:");
        }
        let _ = writeln!(text, "  {}:", c.name);
        if !c.settings.is_empty() {
            let _ = writeln!(text, "    settings: {}", c.settings.join(", "));
        }
        if !c.ignored.is_empty() {
            let _ = writeln!(text, "    accepted, ignored with a warning: {}", c.ignored.join(", "));
        }
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    ExitCode::SUCCESS
}

fn init_logs(level: LogLevel, encoding: LogEncoding) {
    let level = match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    if encoding == LogEncoding::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let matches = match cli().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            // --help and --version print and succeed; usage errors exit 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match matches.subcommand() {
        Some(("validate", sub)) => return validate(sub),
        Some(("components", _)) => return components(),
        _ => {}
    }
    if matches.get_flag("validate") {
        return validate(&matches);
    }
    let shutdown_timeout = match matches.get_one::<String>("shutdown-timeout") {
        None => otel_collector::sidecar::config::DEFAULT_SHUTDOWN_TIMEOUT,
        Some(v) => match otel_collector::parse_duration(v) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("otel-collector: --shutdown-timeout: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let config = match load(&matches) {
        Ok((_, c)) => c,
        Err(e) => {
            eprintln!("otel-collector: {e}");
            return ExitCode::from(1);
        }
    };
    run(config, shutdown_timeout)
}

fn run(config: CollectorConfig, shutdown_timeout: Duration) -> ExitCode {
    init_logs(config.telemetry.log_level, config.telemetry.log_encoding);
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
        // A journal past a file-size limit (RLIMIT_FSIZE) must get an error
        // (EFBIG) it can count and refuse on, not SIGXFSZ's default: death.
        const SIGXFSZ: i32 = 25;
        let _file_size_signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ));
        let collector = match Collector::start(config).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::from(1);
            }
        };
        tracing::info!("otel-collector ready");
        let signal = wait_for_signal().await;
        tracing::info!("{signal}: shutting down (up to {shutdown_timeout:?})");
        collector.shutdown(shutdown_timeout).await;
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
