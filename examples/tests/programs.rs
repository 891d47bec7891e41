#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! Runs the demo and every example as a user would, checking what they print.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(exe: &str, args: &[&str]) -> (String, Output) {
    run_with_env(exe, args, &[])
}

fn run_with_env(exe: &str, args: &[&str], env: &[(&str, &str)]) -> (String, Output) {
    let started = Instant::now();
    let mut command = Command::new(exe);
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ] {
        command.env_remove(var);
    }
    let out = command.args(args).envs(env.iter().copied()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{exe} failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{exe} took {:?}",
        started.elapsed()
    );
    (stdout, out)
}

#[test]
fn the_demo_keeps_error_and_slow_traces_and_shows_them() {
    let (out, _) = run(env!("CARGO_BIN_EXE_demo"), &["--requests", "300"]);
    for expected in [
        "gateway",
        "auth",
        "product",
        "sent 300 requests",
        "errors          voted to keep",
        "slow-traces     voted to keep",
        "(an error):",
        "(slow):",
        "[auth] shop.auth.Auth/Verify",
        "[product] SELECT products  ERROR: no such table",
        "[product] cache.get",
        "\"trace_id\":",
        // Which service and operation made it slow, or failed.
        "culprit: product: product 9",
        "; error in product: SELECT products: no such table: archived_products",
        "bottlenecks, kept traces",
        "bottlenecks, all traces seen (",
        "summary",
    ] {
        assert!(
            out.contains(expected),
            "{expected:?} missing from the demo's output:\n{out}"
        );
    }
    // The broker hop is there when RabbitMQ is (scripts/test.sh starts it).
    // Declined payments make some order traces errors, so one is always kept.
    if !out.contains("RabbitMQ not reachable") {
        assert!(out.contains("(an order, across RabbitMQ):"), "{out}");
        assert!(out.contains("[order-worker] shop-orders process"), "{out}");
    }
    // Every error trace and every slow trace is kept: the kept count is at
    // least the failed and slow requests.
    let line = out.lines().find(|l| l.starts_with("kept ")).unwrap();
    let kept: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let sent = out.lines().find(|l| l.starts_with("sent ")).unwrap();
    let failed: usize = sent
        .split([':', ',', ';'])
        .filter_map(|part| {
            let part = part.trim();
            let (n, status) = part.split_once(" x ")?;
            (status.parse::<u16>().ok()? >= 400).then(|| n.parse::<usize>().ok())?
        })
        .sum();
    assert!(kept >= failed, "kept {kept} traces, {failed} requests failed:\n{out}");
}

#[test]
fn the_examples_run() {
    let cases: [(&str, &[&str]); 6] = [
        (
            env!("CARGO_BIN_EXE_axum-server"),
            &[
                "GET /api/products/{id} Server",
                "trace=4bf92f3577b34da6a3ce929d0e0e4736",
                "load product",
            ],
        ),
        (
            env!("CARGO_BIN_EXE_http-client"),
            &["the server received traceparent 00-", "GET Client", "checkout Internal"],
        ),
        (
            env!("CARGO_BIN_EXE_grpc"),
            &[
                "user-ada: verified as ada",
                "expired-1: Unauthenticated token expired",
                "rpc.grpc.status_code=16",
            ],
        ),
        (
            env!("CARGO_BIN_EXE_log-correlation"),
            &["\"trace_id\":", "\"message\":\"charging\"", "outside any span"],
        ),
        (
            env!("CARGO_BIN_EXE_axum-server"),
            // The handler's log line carries the continued trace's id.
            &[
                "INFO load product{id=7}",
                "loading trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
            ],
        ),
        (
            env!("CARGO_BIN_EXE_tail-sampling"),
            &["ERROR(out of stock)", "order 7 Internal 15"],
        ),
    ];
    for (exe, expected) in cases {
        let (out, _) = run(exe, &[]);
        for e in expected {
            assert!(out.contains(e), "{e:?} missing from {exe}:\n{out}");
        }
    }
}

#[test]
fn the_amqp_example_runs_against_the_broker() {
    let (out, _) = run(env!("CARGO_BIN_EXE_amqp"), &[]);
    assert!(
        out.contains("publish Producer") && out.contains("process Consumer") && out.contains("settled: Ack"),
        "{out}"
    );
}

/// The total of the demo's "kept spans    gateway N, auth N, ..." line.
fn kept_spans(out: &str) -> u64 {
    let line = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("kept spans"))
        .unwrap_or_else(|| panic!("no kept spans line:\n{out}"));
    line.split(',')
        .map(|part| part.split_whitespace().last().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The endpoint variables reach a real OTLP receiver (our collector, in this
/// process) by the spec's rules: `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL
/// that gets `/v1/traces`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it
/// is; every kept span arrives.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_exports_kept_spans_to_the_endpoint_the_variables_name() {
    let config = otel_collector::sidecar::CollectorConfig::parse(
        r"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:0}
      http: {endpoint: 127.0.0.1:0}
exporters:
  debug: {verbosity: basic}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
",
    )
    .unwrap();
    let collector = otel_collector::sidecar::Collector::start(config).await.unwrap();
    let address = |id: &str| {
        collector
            .addresses()
            .iter()
            .find(|(name, _)| name == id)
            .map(|(_, addr)| *addr)
            .unwrap()
    };
    let (http, grpc) = (address("otlp/http"), address("otlp/grpc"));
    let metrics = collector.metrics();
    let accepted = |transport: &str| {
        metrics.read(
            "otelcol_receiver_accepted_spans",
            &[("receiver", "otlp"), ("transport", transport)],
        )
    };

    let base = format!("http://{http}");
    let (out, _) = tokio::task::spawn_blocking(move || {
        run_with_env(
            env!("CARGO_BIN_EXE_demo"),
            &["--requests", "60"],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", &base)],
        )
    })
    .await
    .unwrap();
    assert!(
        out.contains(&format!(
            "kept spans also go to http://{http} (OTEL_EXPORTER_OTLP_ENDPOINT)"
        )),
        "{out}"
    );
    let kept = kept_spans(&out);
    assert!(kept > 0, "{out}");
    assert_eq!(accepted("http"), kept, "every kept span arrived over HTTP:\n{out}");
    assert!(
        out.contains(&format!("  export        {kept} kept spans delivered to http://{http}"))
            && out.contains(", 0 not delivered"),
        "{out}"
    );

    let full = format!("http://{grpc}");
    let (out, _) = tokio::task::spawn_blocking(move || {
        run_with_env(
            env!("CARGO_BIN_EXE_demo"),
            &["--requests", "60"],
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &full),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
    })
    .await
    .unwrap();
    let kept = kept_spans(&out);
    assert!(kept > 0, "{out}");
    assert_eq!(accepted("grpc"), kept, "every kept span arrived over gRPC:\n{out}");

    // The gRPC port with the default protocol (HTTP): nothing arrives, and
    // the summary says so, with what to change.
    let wrong = format!("http://{grpc}");
    let (out, _) = tokio::task::spawn_blocking(move || {
        run_with_env(
            env!("CARGO_BIN_EXE_demo"),
            &["--requests", "30"],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", &wrong)],
        )
    })
    .await
    .unwrap();
    let kept = kept_spans(&out);
    assert!(
        out.contains(&format!("  export        0 kept spans delivered to http://{grpc}"))
            && out.contains(&format!(", {kept} not delivered (last error: "))
            && out.contains("set OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
        "{out}"
    );
    collector.shutdown(std::time::Duration::from_secs(5)).await;
}

/// A bad variable does not stop the demo, and the user is told which one was
/// replaced by its default (the demo's log goes to its captured buffer).
#[test]
fn the_demo_names_bad_variables_on_stderr() {
    let (_, out) = run_with_env(
        env!("CARGO_BIN_EXE_demo"),
        &["--requests", "20"],
        &[("OTEL_TRACES_SAMPLER", "sometimes"), ("OTEL_BSP_MAX_QUEUE_SIZE", "-1")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "OTEL_TRACES_SAMPLER=\"sometimes\" is not valid",
        "OTEL_BSP_MAX_QUEUE_SIZE=\"-1\" is not valid",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing from stderr:\n{stderr}");
    }
}

/// A service with no tracing subscriber of its own still hears about a bad
/// variable: otel-core writes the warning to stderr.
#[test]
fn a_bad_variable_is_reported_without_a_subscriber() {
    let (_, out) = run_with_env(
        env!("CARGO_BIN_EXE_tail-sampling"),
        &[],
        &[("OTEL_TRACES_SAMPLER", "sometimes")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("otel-core: OTEL_TRACES_SAMPLER=\"sometimes\" is not valid"),
        "{stderr}"
    );
}

/// A service set up with `init` hears about a bad variable in its own log.
#[test]
fn a_bad_variable_is_logged_by_the_subscriber_init_installs() {
    let (out, _) = run_with_env(
        env!("CARGO_BIN_EXE_axum-server"),
        &[],
        &[("OTEL_TRACES_SAMPLER", "sometimes")],
    );
    assert!(
        out.contains("WARN") && out.contains("OTEL_TRACES_SAMPLER=\"sometimes\" is not valid"),
        "{out}"
    );
}

/// The README's quick start is `examples/src/bin/quickstart.rs`, word for word;
/// run as a user would, one request makes one trace across the server, the
/// handler, the database span, the reqwest call and the service it called.
#[test]
fn the_readme_quick_start_runs_and_makes_one_trace() {
    use std::io::{BufRead, BufReader, Read, Write};
    let source = include_str!("../src/bin/quickstart.rs");
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(source),
        "README.md's quick start differs from examples/src/bin/quickstart.rs"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .env("ADDR", "127.0.0.1:0")
        .env("OTEL_TRACES_EXPORTER", "console")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /api/orders/7 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("order 7: tea, 3 in stock\n"), "{response}");

    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(out.status.success(), "{:?}: {rest}", out.status);
    assert!(!rest.contains("undelivered"), "{rest}");

    let stdout = String::from_utf8_lossy(&out.stdout);
    // Console lines: `name kind duration status trace=… span=… parent=… attrs`.
    let find = |prefix: &str| -> (String, String, String, String) {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no span {prefix:?} in:\n{stdout}"));
        let field = |key: &str| {
            line.split(' ')
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_default()
                .to_owned()
        };
        (field("trace="), field("span="), field("parent="), line.to_owned())
    };
    let server = find("GET /api/orders/{id} Server");
    let handler = find("order Internal");
    let query = find("SELECT orders Client");
    let call = find("GET Client");
    let inventory = find("GET /stock/{item} Server");
    let stock = find("stock Internal");
    for span in [&handler, &query, &call, &inventory, &stock] {
        assert_eq!(span.0, server.0, "one trace: {}", span.3);
    }
    assert_eq!(handler.2, server.1);
    assert_eq!(query.2, handler.1);
    assert_eq!(call.2, handler.1);
    assert_eq!(inventory.2, call.1, "the context crossed the reqwest hop");
    assert_eq!(stock.2, inventory.1);
    assert!(
        query.3.contains("db.query.text=SELECT item FROM orders WHERE id = ?1"),
        "{}",
        query.3
    );
}
