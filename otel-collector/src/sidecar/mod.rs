//! The `otel-collector` sidecar: OTLP receivers -> memory limiter ->
//! tail sampling / attributes / resource / batch -> exporters, configured
//! with OpenTelemetry Collector YAML.
//!
//! Spans travel as their OTLP wire bytes: the receivers split requests into
//! per-span byte ranges (checking them), the tail sampler reads only the
//! fields its policies need, and the exporters put requests back together by
//! copying bytes; only the `attributes` and `resource` actions re-encode the
//! attributes they change.
//!
//! Each component is one module under `receivers/`, `processors/`,
//! `exporters/` or `extensions/`, listed in its section's table; see
//! `component.rs` for what a module provides and the concurrency contract
//! every stage keeps.

mod actions;
mod bottlenecks;
pub(crate) mod component;
pub mod config;
pub mod decompress;
pub(crate) mod exporters;
pub(crate) mod extensions;
pub(crate) mod journal;
mod metrics;
mod pipeline;
pub(crate) mod processors;
mod receiver;
pub(crate) mod receivers;
#[cfg(test)]
mod testing;
mod tls;
pub mod wire;

pub use config::CollectorConfig;
pub use metrics::Metrics;
pub use processors::memory_limiter::resident_bytes;

use component::{BuildContext, Listening};
use exporters::ExporterDyn;
use pipeline::{Consumer, Fanout, Flush};
use receiver::{Intake, PipelineEntry};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why the collector could not start: which component or setting, and what
/// went wrong.
#[derive(Debug)]
pub struct CollectorError {
    kind: ErrorKind,
    /// The YAML path of the component or setting (`exporters.otlp`,
    /// `receivers.otlp.protocols.grpc.endpoint`).
    place: String,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

#[derive(Debug)]
enum ErrorKind {
    /// Not started outside a tokio runtime.
    Runtime,
    /// A component could not be built or started.
    Component,
    /// The telemetry server could not start.
    Telemetry,
}

impl CollectorError {
    fn new(kind: ErrorKind, place: impl Into<String>, message: impl Into<String>) -> Self {
        CollectorError {
            kind,
            place: place.into(),
            message: message.into(),
            source: None,
        }
    }

    fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The YAML path of the component or setting that failed.
    pub fn place(&self) -> &str {
        &self.place
    }
}

impl std::fmt::Display for CollectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            // Messages from listeners already start with the setting's path.
            ErrorKind::Component | ErrorKind::Telemetry if self.message.starts_with(&self.place) => {
                f.write_str(&self.message)
            }
            _ => write!(f, "{}: {}", self.place, self.message),
        }
    }
}

impl std::error::Error for CollectorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A running collector.
pub struct Collector {
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    aux_stop: watch::Sender<bool>,
    aux_servers: Vec<tokio::task::JoinHandle<()>>,
    flushers: Vec<Arc<dyn Flush>>,
    exporters: Vec<(String, Arc<dyn ExporterDyn>)>,
    addresses: Vec<(String, SocketAddr)>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

/// Ids in first-use order across the pipelines' `pick` lists.
fn used<'a>(config: &'a CollectorConfig, pick: impl Fn(&'a config::PipelineConfig) -> &'a [String]) -> Vec<&'a str> {
    let mut ids: Vec<&str> = Vec::new();
    for p in &config.pipelines {
        for id in pick(p) {
            if !ids.contains(&id.as_str()) {
                ids.push(id);
            }
        }
    }
    ids
}

fn find<'a, T: ?Sized>(list: &'a [(String, Arc<T>)], id: &str) -> Option<&'a Arc<T>> {
    list.iter().find(|(k, _)| k == id).map(|(_, v)| v)
}

impl Collector {
    /// Starts every pipeline, receiver and extension of `config` on the
    /// current tokio runtime (multi-threaded), which the collector keeps
    /// using for its background work.
    ///
    /// # Errors
    ///
    /// When called outside a tokio runtime, or when a listener cannot bind,
    /// a file cannot be opened or an exporter cannot be built; the error
    /// names the component or setting.
    pub async fn start(config: CollectorConfig) -> Result<Collector, CollectorError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            CollectorError::new(
                ErrorKind::Runtime,
                "(runtime)",
                "Collector::start must run inside a tokio runtime",
            )
            .caused_by(e)
        })?;
        let metrics = Arc::new(Metrics::default());
        register_process_gauges(&metrics);
        // Which services and operations make traces slow: fed by the tail samplers.
        let decides = used(&config, |p| &p.processors)
            .into_iter()
            .any(|id| find(&config.processors, id).is_some_and(|p| p.decides_traces()));
        let report = if decides {
            Some(
                bottlenecks::BottleneckReport::start()
                    .map_err(|e| CollectorError::new(ErrorKind::Component, "processors", e))?,
            )
        } else {
            None
        };
        let (stop, stopping) = watch::channel(false);
        let (aux_stop, ended) = watch::channel(false);
        let mut authenticators = std::collections::HashMap::new();
        for (id, e) in &config.extensions {
            if let Some(a) = e
                .authenticator()
                .map_err(|m| CollectorError::new(ErrorKind::Component, format!("extensions.{id}"), m))?
            {
                authenticators.insert(id.clone(), a);
            }
        }
        let mut storages = std::collections::HashMap::new();
        for (id, e) in &config.extensions {
            if let Some(s) = e
                .storage()
                .map_err(|m| CollectorError::new(ErrorKind::Component, format!("extensions.{id}"), m))?
            {
                storages.insert(id.clone(), s);
            }
        }
        let ctx = BuildContext::new(
            runtime.clone(),
            metrics.clone(),
            report.clone(),
            stopping,
            ended,
            authenticators,
        )
        .with_storages(storages);
        let failed = |place: String| move |e: String| CollectorError::new(ErrorKind::Component, place, e);

        // Exporters, shared by the pipelines that use them.
        let mut exporters: Vec<(String, Arc<dyn ExporterDyn>)> = Vec::new();
        for id in used(&config, |p| &p.exporters) {
            if let Some(settings) = find(&config.exporters, id) {
                let e = settings.build(&ctx, id).map_err(failed(format!("exporters.{id}")))?;
                exporters.push((id.to_owned(), e));
            }
        }

        // Pipelines, built from the exporters back to the head.
        let mut heads: Vec<(&str, PipelineEntry)> = Vec::new();
        let mut flushers: Vec<Arc<dyn Flush>> = Vec::new();
        for p in &config.pipelines {
            let mut outs: Vec<Arc<dyn Consumer>> = p
                .exporters
                .iter()
                .filter_map(|id| find(&exporters, id).map(|e| e.clone() as Arc<dyn Consumer>))
                .collect();
            // Persistent queues bound what receivers take, and when no
            // processor buffers in front of them, hold it durably before the
            // receiver answers.
            let mut exporter_gates: Vec<Arc<dyn component::Admission>> = Vec::new();
            let mut journals = Vec::new();
            for id in &p.exporters {
                if let Some(e) = find(&exporters, id) {
                    exporter_gates.extend(e.gate_dyn());
                    journals.extend(e.journal_dyn());
                }
            }
            let mut next: Arc<dyn Consumer> = match outs.len() {
                1 => outs.remove(0),
                _ => Arc::new(Fanout(outs)),
            };
            let mut pipeline_flushers = Vec::new();
            let mut gates = Vec::new();
            for id in p.processors.iter().rev() {
                let Some(settings) = find(&config.processors, id) else {
                    continue;
                };
                let place = component::StagePlace { id, pipeline: &p.name };
                let built = settings
                    .build(&ctx, place, next)
                    .map_err(failed(format!("processors.{id}")))?;
                next = built.head;
                // A stage that buffers takes spans before the stages after
                // it: their journals no longer cover what the receiver
                // answers; its own journal (if any) does.
                if built.flush.is_some() {
                    journals.clear();
                }
                journals.extend(built.journal);
                pipeline_flushers.extend(built.flush);
                gates.extend(built.gate);
            }
            // Flush from the head of the pipeline towards the exporters.
            pipeline_flushers.reverse();
            flushers.extend(pipeline_flushers);
            gates.reverse();
            gates.extend(exporter_gates);
            heads.push((
                &p.name,
                PipelineEntry {
                    gates,
                    head: next,
                    journals,
                },
            ));
        }

        // Receivers, each feeding the heads of the pipelines that name it.
        let mut servers = Vec::new();
        let mut addresses = Vec::new();
        for id in used(&config, |p| &p.receivers) {
            let Some(settings) = find(&config.receivers, id) else {
                continue;
            };
            let entries: Vec<PipelineEntry> = heads
                .iter()
                .filter(|(name, _)| {
                    config
                        .pipelines
                        .iter()
                        .any(|p| p.name == *name && p.receivers.iter().any(|r| r == id))
                })
                .map(|(_, e)| e.clone())
                .collect();
            let intake = |transport: &str| Intake::new(entries.clone(), &metrics, id, transport);
            let started = settings
                .start(&ctx, id, &intake)
                .await
                .map_err(failed(format!("receivers.{id}")))?;
            for Listening { name, addr, task } in started {
                addresses.push((name, addr));
                servers.push(task);
            }
        }

        // Extensions, then the telemetry server.
        let mut aux_servers = Vec::new();
        for (id, settings) in &config.extensions {
            let started = settings
                .start(&ctx, id)
                .await
                .map_err(failed(format!("extensions.{id}")))?;
            for Listening { name, addr, task } in started {
                addresses.push((name, addr));
                aux_servers.push(task);
            }
        }
        if let Some(endpoint) = &config.telemetry.metrics_address {
            const PLACE: &str = "service.telemetry.metrics.address";
            let telemetry_failed = |e: String| CollectorError::new(ErrorKind::Telemetry, PLACE, e);
            let listener = receiver::bind(endpoint, PLACE).await.map_err(telemetry_failed)?;
            let addr = listener.local_addr().map_err(|e| telemetry_failed(e.to_string()))?;
            addresses.push(("metrics".into(), addr));
            let m = metrics.clone();
            let r = report.clone();
            aux_servers.push(ctx.spawn(receiver::serve_http(
                listener,
                move |req| {
                    let m = m.clone();
                    let r = r.clone();
                    async move { telemetry(req, &m, r.as_deref()) }
                },
                ctx.ended(),
            )));
            tracing::info!("metrics on http://{addr}/metrics, bottlenecks on http://{addr}{BOTTLENECKS_PATH}");
        }
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        Ok(Collector {
            metrics,
            stop,
            servers,
            aux_stop,
            aux_servers,
            flushers,
            exporters,
            addresses,
            runtime,
        })
    }

    /// The addresses listened on: (`otlp/grpc`, ...), (`otlp/http`, ...),
    /// (`health_check`, ...), (`metrics`, ...).
    pub fn addresses(&self) -> &[(String, SocketAddr)] {
        &self.addresses
    }

    /// The collector's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Stops the receivers (requests in flight finish), decides every
    /// buffered trace, flushes the batches and drains the exporters, all
    /// within `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let _ = self.stop.send(true);
        for s in self.servers {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, s).await;
        }
        tracing::info!("receivers stopped; deciding buffered traces and flushing");
        let flushers = self.flushers;
        let _ = self
            .runtime
            .spawn_blocking(move || {
                for f in flushers {
                    f.flush();
                }
            })
            .await;
        let drains: Vec<_> = self
            .exporters
            .iter()
            .map(|(_, e)| self.runtime.spawn(e.clone().shutdown_dyn(deadline)))
            .collect();
        for d in drains {
            let _ = d.await;
        }
        let _ = self.aux_stop.send(true);
        for s in self.aux_servers {
            let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
        }
    }
}

pub(crate) type Reply = http::Response<http_body_util::Full<bytes::Bytes>>;

pub(crate) fn text(status: http::StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

/// Where the telemetry server shows the bottleneck summary (`?format=json`
/// for JSON).
pub const BOTTLENECKS_PATH: &str = "/debug/bottlenecks";

/// The telemetry server: Prometheus metrics and the bottleneck summary.
fn telemetry(
    req: http::Request<hyper::body::Incoming>,
    metrics: &Metrics,
    report: Option<&bottlenecks::BottleneckReport>,
) -> Reply {
    match req.uri().path() {
        "/metrics" => text(http::StatusCode::OK, metrics::CONTENT_TYPE, metrics.render()),
        BOTTLENECKS_PATH => {
            let json = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"));
            match (report, json) {
                (None, _) => text(
                    http::StatusCode::NOT_FOUND,
                    "text/plain",
                    "no tail_sampling processor: the bottleneck summary covers the traces tail samplers decide\n"
                        .into(),
                ),
                (Some(r), true) => text(http::StatusCode::OK, "application/json", r.to_json().to_string()),
                (Some(r), false) => text(http::StatusCode::OK, "text/plain; charset=utf-8", r.render_text()),
            }
        }
        _ => text(
            http::StatusCode::NOT_FOUND,
            "text/plain",
            format!("metrics are at /metrics, the bottleneck summary at {BOTTLENECKS_PATH}\n"),
        ),
    }
}

/// CPU time of this process (user + system), seconds, from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ).
    Some((utime + stime) as f64 / 100.0)
}

fn register_process_gauges(metrics: &Metrics) {
    let started = Instant::now();
    metrics.counter_f64(
        "otelcol_process_uptime",
        "Uptime of the process, seconds.",
        &[],
        move || started.elapsed().as_secs_f64(),
    );
    metrics.counter_f64(
        "otelcol_process_cpu_seconds",
        "Total CPU user and system time, seconds.",
        &[],
        || cpu_seconds().unwrap_or(0.0),
    );
    metrics.gauge(
        "otelcol_process_memory_rss",
        "Resident memory of the collector, bytes.",
        &[],
        || resident_bytes().unwrap_or(0) as f64,
    );
    let live = metrics.live();
    metrics.gauge(
        "otelcol_process_span_bytes",
        "Bytes of span data held (buffered, batched, queued).",
        &[],
        move || live.get() as f64,
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code
    use super::{Collector, CollectorConfig};
    use std::error::Error as _;
    use std::future::Future as _;
    use std::task::{Context, Poll, Waker};

    fn config(grpc: &str) -> CollectorConfig {
        CollectorConfig::parse_with_env(
            &format!(
                "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: \"{grpc}\"}}}}}}}}\n\
                 exporters: {{debug: {{verbosity: basic}}}}\n\
                 service: {{pipelines: {{traces: {{receivers: [otlp], exporters: [debug]}}}}}}\n"
            ),
            &|_| None,
        )
        .unwrap()
    }

    #[test]
    fn outside_a_runtime_the_error_says_so() {
        let mut start = Box::pin(Collector::start(config("127.0.0.1:0")));
        let Poll::Ready(Err(e)) = start.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
            panic!("start outside a runtime must fail at once");
        };
        assert_eq!(e.place(), "(runtime)");
        assert!(e.to_string().contains("inside a tokio runtime"), "{e}");
        assert!(e.source().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_port_in_use_names_the_setting() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = Collector::start(config(&format!("127.0.0.1:{port}")))
            .await
            .unwrap_err();
        assert_eq!(e.place(), "receivers.otlp");
        assert!(
            e.to_string().starts_with(&format!(
                "receivers.otlp.protocols.grpc.endpoint: cannot listen on 127.0.0.1:{port}"
            )),
            "{e}"
        );

        // A free port starts, serves and shuts down.
        let c = Collector::start(config("127.0.0.1:0")).await.unwrap();
        assert!(c.addresses().iter().any(|(name, _)| name == "otlp/grpc"));
        let text = c.metrics().render();
        for name in [
            "otelcol_process_uptime_total ",
            "otelcol_process_cpu_seconds_total ",
            "otelcol_process_memory_rss ",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name} in {text}");
        }
        c.shutdown(std::time::Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod auth_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code
    use super::{Collector, CollectorConfig};
    use crate::sidecar::testing::{spans, trace};
    use crate::sidecar::wire::{LiveBytes, encode_request};
    use std::io::{Read as _, Write as _};
    use std::time::{Duration, Instant};

    fn addr(c: &Collector, name: &str) -> std::net::SocketAddr {
        c.addresses().iter().find(|(n, _)| n == name).unwrap().1
    }

    fn post(to: std::net::SocketAddr, auth: Option<&str>, body: &[u8]) -> u16 {
        let mut s = std::net::TcpStream::connect(to).unwrap();
        let mut req = format!(
            "POST /v1/traces HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(a) = auth {
            req.push_str(&format!("authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    async fn grpc(to: std::net::SocketAddr, auth: Option<&str>, body: Vec<u8>) -> Result<(), tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{to}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.unwrap();
        let mut request = tonic::Request::new(bytes::Bytes::from(body));
        if let Some(a) = auth {
            request.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        client
            .unary(
                request,
                http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
                otel_export::RawCodec,
            )
            .await
            .map(|_| ())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn receivers_refuse_and_exporters_send_bearer_tokens() {
        let dir = std::env::temp_dir().join(format!("auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("received.jsonl");
        let gateway = CollectorConfig::parse_with_env(
            &format!(
                "extensions: {{bearertokenauth: {{token: s3cret}}}}\n\
                 receivers: {{otlp: {{protocols: {{\n\
                   grpc: {{endpoint: 127.0.0.1:0, auth: {{authenticator: bearertokenauth}}}},\n\
                   http: {{endpoint: 127.0.0.1:0, auth: {{authenticator: bearertokenauth}}}}}}}}}}\n\
                 exporters: {{file: {{path: {:?}}}}}\n\
                 service: {{extensions: [bearertokenauth], pipelines: {{traces: {{receivers: [otlp], exporters: [file]}}}}}}\n",
                file.display()
            ),
            &|_| None,
        )
        .unwrap();
        let gateway = Collector::start(gateway).await.unwrap();
        let (g_grpc, g_http) = (addr(&gateway, "otlp/grpc"), addr(&gateway, "otlp/http"));
        let body = encode_request(&spans("shop", &trace(1, 3), &LiveBytes::new()));

        // Without the token, or with another: refused and counted.
        let b = body.clone();
        let codes = tokio::task::spawn_blocking(move || {
            [
                post(g_http, None, &b),
                post(g_http, Some("Bearer wrong"), &b),
                post(g_http, Some("Bearer s3cret"), &b),
            ]
        })
        .await
        .unwrap();
        assert_eq!(codes, [401, 401, 200]);
        let e = grpc(g_grpc, None, body.clone()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        grpc(g_grpc, Some("Bearer s3cret"), body.clone()).await.unwrap();
        let m = gateway.metrics();
        let refused = |t: &str| {
            m.read(
                "otelcol_receiver_unauthenticated_requests",
                &[("receiver", "otlp"), ("transport", t)],
            )
        };
        assert_eq!((refused("http"), refused("grpc")), (2, 1));

        // An agent exporting with the same extension gets in.
        let agent = CollectorConfig::parse_with_env(
            &format!(
                "extensions: {{bearertokenauth: {{token: s3cret}}}}\n\
                 receivers: {{otlp: {{protocols: {{grpc: {{endpoint: 127.0.0.1:0}}}}}}}}\n\
                 exporters: {{otlp: {{endpoint: {g_grpc}, tls: {{insecure: true}}, auth: {{authenticator: bearertokenauth}}}}}}\n\
                 service: {{extensions: [bearertokenauth], pipelines: {{traces: {{receivers: [otlp], exporters: [otlp]}}}}}}\n"
            ),
            &|_| None,
        )
        .unwrap();
        let agent = Collector::start(agent).await.unwrap();
        let body = encode_request(&spans("shop", &trace(2, 4), &LiveBytes::new()));
        grpc(addr(&agent, "otlp/grpc"), None, body).await.unwrap();
        agent.shutdown(Duration::from_secs(5)).await;
        gateway.shutdown(Duration::from_secs(5)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let spans_in_file = loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let n = text.matches("\"spanId\"").count();
            if n >= 10 || Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(spans_in_file, 10, "3 over HTTP, 3 over gRPC, 4 through the agent");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_authenticator_must_be_an_enabled_auth_extension() {
        for (extensions, service) in [
            ("", "[]"),
            ("bearertokenauth: {token: x}", "[]"),
            ("health_check: {}", "[health_check]"),
        ] {
            let yaml = format!(
                "extensions: {{{extensions}}}\n\
                 receivers: {{otlp: {{protocols: {{grpc: {{auth: {{authenticator: {}}}}}}}}}}}\n\
                 exporters: {{debug: {{}}}}\n\
                 service: {{extensions: {service}, pipelines: {{traces: {{receivers: [otlp], exporters: [debug]}}}}}}\n",
                if extensions.starts_with("health") {
                    "health_check"
                } else {
                    "bearertokenauth"
                }
            );
            let e = CollectorConfig::parse_with_env(&yaml, &|_| None).unwrap_err();
            assert_eq!(e.path(), "receivers.otlp.protocols.grpc.auth.authenticator", "{e}");
            assert!(e.message().contains("not an enabled auth extension"), "{e}");
        }
    }
}

#[cfg(test)]
mod tls_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code
    use super::{Collector, CollectorConfig};
    use crate::sidecar::testing::{spans, trace};
    use crate::sidecar::wire::{LiveBytes, encode_request};
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use std::time::Duration;

    type Ca = CertifiedIssuer<'static, KeyPair>;

    fn ca() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    /// A certificate for `names` signed by `ca`: (certificate PEM, key PEM).
    fn leaf(ca: &Ca, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A collector whose OTLP receiver serves gRPC and HTTP with these `tls` blocks.
    async fn start_tls(grpc_tls: &str, http_tls: &str) -> Collector {
        let config = CollectorConfig::parse_with_env(
            &format!(
                "receivers: {{otlp: {{protocols: {{\n\
                   grpc: {{endpoint: 127.0.0.1:0, tls: {grpc_tls}}},\n\
                   http: {{endpoint: 127.0.0.1:0, tls: {http_tls}}}}}}}}}\n\
                 exporters: {{debug: {{verbosity: basic}}}}\n\
                 service: {{pipelines: {{traces: {{receivers: [otlp], exporters: [debug]}}}}}}\n"
            ),
            &|_| None,
        )
        .unwrap();
        assert_eq!(config.warnings, Vec::<String>::new());
        Collector::start(config).await.unwrap()
    }

    async fn export(
        endpoint: String,
        protocol: otel_export::Protocol,
        trust: &Ca,
        client: Option<&(String, String)>,
    ) -> Result<(), String> {
        export_with(
            endpoint,
            protocol,
            trust,
            client,
            otel_export::tls::TlsPolicy::default(),
        )
        .await
    }

    async fn export_with(
        endpoint: String,
        protocol: otel_export::Protocol,
        trust: &Ca,
        client: Option<&(String, String)>,
        policy: otel_export::tls::TlsPolicy,
    ) -> Result<(), String> {
        let mut b = otel_export::OtlpExporter::builder()
            .with_tls_policy(policy)
            .with_protocol(protocol)
            .with_endpoint(endpoint)
            .with_ca_certificate_pem(trust.pem().into_bytes())
            .with_timeout(Duration::from_secs(5))
            .with_retry(otel_export::RetryPolicy::disabled());
        if let Some((cert, key)) = client {
            b = b.with_client_identity_pem(cert.clone().into_bytes(), key.clone().into_bytes());
        }
        let exporter = b.build().unwrap();
        let body = encode_request(&spans("shop", &trace(1, 2), &LiveBytes::new()));
        exporter.export_encoded(body, 2).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn receivers_serve_tls_with_client_certificates_and_renewed_certificates() {
        let dir = std::env::temp_dir().join(format!("tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (server_ca, client_ca) = (ca(), ca());
        let (cert, key) = leaf(&server_ca, &["127.0.0.1", "localhost"]);
        let client = leaf(&client_ca, &["agent"]);
        let file = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let (cert_file, key_file) = (file("server.pem", &cert), file("server.key", &key));
        let client_ca_file = file("client-ca.pem", &client_ca.pem());
        let c = start_tls(
            &format!("{{cert_file: {cert_file:?}, key_file: {key_file:?}}}"),
            &format!(
                "{{cert_file: {cert_file:?}, key_file: {key_file:?}, client_ca_file: {client_ca_file:?}, min_version: \"1.3\"}}"
            ),
        )
        .await;
        let at = |name: &str| c.addresses().iter().find(|(n, _)| n == name).unwrap().1;
        let (grpc, http) = (
            format!("https://127.0.0.1:{}", at("otlp/grpc").port()),
            format!("https://127.0.0.1:{}/v1/traces", at("otlp/http").port()),
        );
        let accepted = |t: &str| {
            c.metrics().read(
                "otelcol_receiver_accepted_spans",
                &[("receiver", "otlp"), ("transport", t)],
            )
        };
        use otel_export::Protocol::{Grpc, HttpProtobuf};

        export(grpc.clone(), Grpc, &server_ca, None).await.unwrap();
        // HTTP asks for a client certificate from client_ca_file.
        assert!(export(http.clone(), HttpProtobuf, &server_ca, None).await.is_err());
        let stranger = leaf(&ca(), &["stranger"]);
        assert!(
            export(http.clone(), HttpProtobuf, &server_ca, Some(&stranger))
                .await
                .is_err()
        );
        export(http.clone(), HttpProtobuf, &server_ca, Some(&client))
            .await
            .unwrap();
        assert_eq!((accepted("grpc"), accepted("http")), (2, 2));

        // A renewed certificate from another CA is served to new connections.
        let renewed_ca = ca();
        let (cert, key) = leaf(&renewed_ca, &["127.0.0.1"]);
        std::thread::sleep(Duration::from_millis(1100));
        file("server.key", &key);
        file("server.pem", &cert);
        let later = std::time::SystemTime::now() + Duration::from_secs(3);
        for f in ["server.key", "server.pem"] {
            std::fs::File::options()
                .write(true)
                .open(dir.join(f))
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(1100));
        export(grpc.clone(), Grpc, &renewed_ca, None).await.unwrap();
        assert!(export(grpc, Grpc, &server_ca, None).await.is_err());
        assert_eq!(accepted("grpc"), 4);
        c.shutdown(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `min_version`, `max_version` and `cipher_suites` act on both ends:
    /// what a receiver offers, and what an exporter accepts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_versions_and_cipher_suites_act_on_receivers_and_exporters() {
        use otel_export::Protocol::{Grpc, HttpProtobuf};
        use otel_export::tls::{TlsPolicy, TlsVersion};
        let dir = std::env::temp_dir().join(format!("tls-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server_ca = ca();
        let (cert, key) = leaf(&server_ca, &["127.0.0.1"]);
        let (cert_file, key_file) = (dir.join("s.pem"), dir.join("s.key"));
        std::fs::write(&cert_file, &cert).unwrap();
        std::fs::write(&key_file, &key).unwrap();
        let (cert_file, key_file) = (cert_file.display().to_string(), key_file.display().to_string());
        let c = start_tls(
            &format!(
                "{{cert_file: {cert_file:?}, key_file: {key_file:?}, max_version: \"1.2\", cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305]}}"
            ),
            &format!("{{cert_file: {cert_file:?}, key_file: {key_file:?}, min_version: \"1.3\"}}"),
        )
        .await;
        let at = |name: &str| c.addresses().iter().find(|(n, _)| n == name).unwrap().1;
        let grpc_addr = at("otlp/grpc");
        let (grpc, http) = (
            format!("https://127.0.0.1:{}", grpc_addr.port()),
            format!("https://127.0.0.1:{}/v1/traces", at("otlp/http").port()),
        );

        // What the gRPC receiver negotiates with a client offering everything.
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(server_ca.der().to_vec()))
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(TlsPolicy::default().provider())
            .with_protocol_versions(&TlsPolicy::default().versions())
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(grpc_addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
            .connect(name, tcp)
            .await
            .unwrap();
        let (_, session) = tls.get_ref();
        assert_eq!(session.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        assert_eq!(
            format!("{:?}", session.negotiated_cipher_suite().unwrap().suite()),
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        );
        drop(tls);

        let v = |s: &str| Some(TlsVersion::parse(s).unwrap());
        // An exporter that insists on TLS 1.3 cannot talk to a 1.2-only receiver.
        let only13 = TlsPolicy::new(v("1.3"), None, &[]).unwrap();
        assert!(export_with(grpc.clone(), Grpc, &server_ca, None, only13).await.is_err());
        // Nor one whose only suite the receiver does not offer.
        let aes = TlsPolicy::new(None, v("1.2"), &["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()]).unwrap();
        assert!(export_with(grpc.clone(), Grpc, &server_ca, None, aes).await.is_err());
        // The default exporter meets it on TLS 1.2 with its suite.
        export(grpc, Grpc, &server_ca, None).await.unwrap();
        // The HTTP receiver refuses TLS 1.2 (min_version 1.3).
        let only12 = TlsPolicy::new(None, v("1.2"), &[]).unwrap();
        assert!(
            export_with(http.clone(), HttpProtobuf, &server_ca, None, only12)
                .await
                .is_err()
        );
        export(http, HttpProtobuf, &server_ca, None).await.unwrap();
        let accepted = |t: &str| {
            c.metrics().read(
                "otelcol_receiver_accepted_spans",
                &[("receiver", "otlp"), ("transport", t)],
            )
        };
        assert_eq!((accepted("grpc"), accepted("http")), (2, 2));
        c.shutdown(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tls_settings_are_checked_where_they_are_written() {
        let yaml = |tls: &str| {
            format!(
                "receivers: {{otlp: {{protocols: {{grpc: {{tls: {tls}}}}}}}}}\n\
                 exporters: {{debug: {{}}}}\n\
                 service: {{pipelines: {{traces: {{receivers: [otlp], exporters: [debug]}}}}}}\n"
            )
        };
        let e = CollectorConfig::parse_with_env(&yaml("{cert_file: a.pem}"), &|_| None).unwrap_err();
        assert_eq!(e.path(), "receivers.otlp.protocols.grpc.tls.key_file");
        let e = CollectorConfig::parse_with_env(&yaml("{cert_file: a, key_file: b, min_version: \"2.0\"}"), &|_| None)
            .unwrap_err();
        assert_eq!(e.path(), "receivers.otlp.protocols.grpc.tls.min_version");
        let ok = CollectorConfig::parse_with_env(&yaml("{cert_file: a, key_file: b, reload_interval: 1h}"), &|_| None)
            .unwrap();
        assert!(ok.warnings[0].starts_with("receivers.otlp.protocols.grpc.tls.reload_interval"));
    }
}
