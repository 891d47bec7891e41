//! Real processes for the sidecar tests: the `otel-collector` binary, the
//! Python OpenTelemetry SDK as a client, rotel as an independent receiver.
#![allow(dead_code, unreachable_pub, missing_docs)] // shared by several test files; each uses a part

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The virtualenv's Python (scripts/test.sh creates it and sets OTEL_TEST_PYTHON).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OTEL_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = std::env::var_os("OTEL_TEST_VENV").map_or_else(|| repo().join(".venv"), PathBuf::from);
    let p = venv.join("bin/python");
    assert!(
        p.exists(),
        "the Python OpenTelemetry SDK is needed: run scripts/test.sh (it creates {}) or set OTEL_TEST_PYTHON",
        venv.display()
    );
    p
}

pub fn rotel_agent() -> PathBuf {
    if let Some(p) = std::env::var_os("ROTEL_AGENT") {
        return PathBuf::from(p);
    }
    let venv = std::env::var_os("OTEL_TEST_VENV").map_or_else(|| repo().join(".venv"), PathBuf::from);
    let found = std::fs::read_dir(venv.join("lib")).ok().and_then(|mut d| {
        d.find_map(|e| {
            e.ok()
                .map(|e| e.path().join("site-packages/rotel/rotel-agent"))
                .filter(|p| p.exists())
        })
    });
    found.unwrap_or_else(|| panic!("rotel-agent not found: run scripts/test.sh (it installs rotel) or set ROTEL_AGENT"))
}

pub fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(host: &str, port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect((host, port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not open {host}:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh scratch directory.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "otel-collector-test-{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {} failed", self.name);
    }

    /// Waits for the process to exit; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not exit within {timeout:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Peak resident memory (VmHWM), bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the collector binary with `yaml`, waiting until `ports` accept connections on `host`.
pub fn collector(name: &str, dir: &Path, yaml: &str, host: &str, ports: &[u16]) -> Proc {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, yaml).unwrap();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_otel-collector"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::from(
            std::fs::File::create(dir.join(format!("{name}.out"))).unwrap(),
        ))
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("start otel-collector");
    let mut p = Proc {
        child,
        name: name.into(),
        log,
    };
    for &port in ports {
        let start = Instant::now();
        while TcpStream::connect((host, port)).is_err() {
            assert!(p.alive(), "{name} exited early; log:\n{}", p.log_text());
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} did not open {host}:{port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    p
}

/// Runs `otel-collector --validate` on `yaml`: (success, stdout + stderr).
pub fn validate(dir: &Path, yaml: &str) -> (bool, String) {
    validate_with_env(dir, yaml, &[])
}

/// `validate` with extra environment variables (for `${env:..}` in the configuration).
pub fn validate_with_env(dir: &Path, yaml: &str, env: &[(&str, &str)]) -> (bool, String) {
    let config = dir.join(format!("validate-{}.yaml", COUNTER.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_otel-collector"))
        .arg("--config")
        .arg(&config)
        .arg("--validate")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A plain HTTP/1.1 request over TCP: (status, body).
pub fn http(host: &str, port: u16, request: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect((host, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&buf[..text_end]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, buf[text_end..].to_vec())
}

pub fn get(host: &str, port: u16, path: &str) -> (u16, String) {
    let (status, body) = http(
        host,
        port,
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    );
    (status, String::from_utf8_lossy(&body).to_string())
}

/// Sums a Prometheus metric over the series whose labels contain every `filters` pair.
pub fn metric(text: &str, name: &str, filters: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (n == name && filters.iter().all(|(k, v)| labels.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

pub fn scrape(port: u16) -> String {
    get("127.0.0.1", port, "/metrics").1
}

/// Spans per trace id in a file exporter's output (OTLP JSON lines).
///
/// Tests poll the file while the collector may still be writing to it, so a
/// last line without its newline is not complete yet and is left for the next read.
pub fn read_file_export(path: &Path) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    for line in complete.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let t = s["traceId"].as_str().unwrap().to_owned();
                    out.entry(t).or_default().push(s["spanId"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    out
}

/// What the Python sender reported: (trace id, kind, spans).
pub fn send_with_python(args: &[String]) -> Vec<(String, String, usize)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_traces.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run the Python sender");
    assert!(
        out.status.success(),
        "Python sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Failed to export"),
        "the Python SDK reports export failures:\n{stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["trace_id"].as_str().unwrap().to_owned(),
                v["kind"].as_str().unwrap().to_owned(),
                v["spans"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

/// Polls `check` until true.
pub fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// --- collectors as sinks, and requests made by hand --------------------------------

/// A collector with a `file` exporter: (process, OTLP/gRPC port, file).
pub fn file_sink(dir: &std::path::Path, name: &str) -> (Proc, u16, std::path::PathBuf) {
    let port = free_port("127.0.0.1");
    let path = dir.join(format!("{name}.jsonl"));
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  file:
    path: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#,
        path.display()
    );
    (collector(name, dir, &yaml, "127.0.0.1", &[port]), port, path)
}

pub fn post(port: u16, path: &str, content_type: &str, encoding: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(e) = encoding {
        req.push_str(&format!("content-encoding: {e}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    http("127.0.0.1", port, &bytes)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// One OTLP/gRPC export to `127.0.0.1:port`: `Err` when it cannot connect,
/// else the call's outcome.
async fn unary_export(port: u16, body: Vec<u8>) -> Result<Result<(), tonic::Status>, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    Ok(grpc
        .unary(
            tonic::Request::new(bytes::Bytes::from(body)),
            http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
            otel_export::RawCodec,
        )
        .await
        .map(|_| ()))
}

/// `data` in snappy's framed format.
pub fn snappy_framed(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut w = snap::write::FrameEncoder::new(Vec::new());
    w.write_all(data).unwrap();
    w.into_inner().unwrap()
}

pub async fn grpc_export(port: u16, body: Vec<u8>) -> Result<(), tonic::Status> {
    unary_export(port, body).await.unwrap()
}

/// [`grpc_export`] to a collector that may be down: every failure as text.
pub async fn try_grpc_export(port: u16, body: Vec<u8>) -> Result<(), String> {
    unary_export(port, body).await?.map_err(|e| e.to_string())
}

/// A valid request: one span of trace `n`.
pub fn one_span_request(n: u8) -> Vec<u8> {
    use otel_export::wire::{put_bytes, put_fixed64};
    let mut span = Vec::new();
    put_bytes(&mut span, 1, &[n; 16]);
    put_bytes(&mut span, 2, &[n; 8]);
    put_bytes(&mut span, 5, b"op");
    put_fixed64(&mut span, 7, 1_000);
    put_fixed64(&mut span, 8, 2_000);
    let mut scope_spans = Vec::new();
    put_bytes(&mut scope_spans, 2, &span);
    let mut rs = Vec::new();
    put_bytes(&mut rs, 1, &[]);
    put_bytes(&mut rs, 2, &scope_spans);
    let mut req = Vec::new();
    put_bytes(&mut req, 1, &rs);
    req
}

/// A request of `traces` five-span traces with fresh ids from `next`.
pub fn load_request(next: &std::sync::atomic::AtomicU64, traces: usize) -> Vec<u8> {
    use otel_export::wire::{put_bytes, put_fixed64, put_tag, put_varint};
    let mut scope_spans = Vec::new();
    put_bytes(&mut scope_spans, 1, b"\x0a\x04load");
    for _ in 0..traces {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        trace[8..].copy_from_slice(&n.to_be_bytes());
        for k in 0..5u64 {
            let mut s = Vec::new();
            put_bytes(&mut s, 1, &trace);
            put_bytes(&mut s, 2, &((n << 3) | (k + 1)).to_be_bytes());
            if k > 0 {
                put_bytes(&mut s, 4, &((n << 3) | 1).to_be_bytes());
            }
            put_bytes(&mut s, 5, b"GET /api/products/{id}");
            put_tag(&mut s, 6, 0);
            put_varint(&mut s, 2);
            put_fixed64(&mut s, 7, 1_700_000_000_000_000_000 + k * 1000);
            put_fixed64(&mut s, 8, 1_700_000_000_020_000_000);
            for (key, value) in [
                ("http.request.method", "GET"),
                ("url.path", "/api/products/42"),
                ("server.address", "shop.example.com"),
                ("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
            ] {
                let mut v = Vec::new();
                put_bytes(&mut v, 1, value.as_bytes());
                let mut kv = Vec::new();
                put_bytes(&mut kv, 1, key.as_bytes());
                put_bytes(&mut kv, 2, &v);
                put_bytes(&mut s, 9, &kv);
            }
            put_bytes(&mut scope_spans, 2, &s);
        }
    }
    let mut rs = Vec::new();
    put_bytes(&mut rs, 1, b"\x0a\x1a\x0a\x0cservice.name\x12\x0a\x0a\x08overload");
    put_bytes(&mut rs, 2, &scope_spans);
    let mut req = Vec::new();
    put_bytes(&mut req, 1, &rs);
    req
}
