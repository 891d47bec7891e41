//! `otlp` (gRPC) and `otlphttp` (HTTP, protobuf or JSON) exporters behind
//! a bounded sending queue with `num_consumers` requests in flight.

use super::persistent::{DiskQueue, Sizer};
use super::{BoxFuture, ExportCounters, Exporter, ExporterDyn, with_request_body};
use crate::lock;
use crate::sidecar::component::{Admission, BuildContext, Component, ExporterSettings, Factory, parse_auth};
use crate::sidecar::config::{
    At, ConfigError, check_send_address, child, get, get_bool, get_duration, get_f64, get_str, get_u64, reject,
};
use crate::sidecar::metrics::add;
use crate::sidecar::pipeline::Consumer;
use crate::sidecar::wire::{LiveGuard, SpanRec};
use otel_export::{OtlpExporter, Protocol, RetryPolicy};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

const SETTINGS: &[&str] = &[
    "endpoint",
    "traces_endpoint",
    "encoding",
    "tls",
    "headers",
    "compression",
    "compression_params",
    "timeout",
    "sending_queue",
    "retry_on_failure",
    "auth",
];
const IGNORED: &[&str] = &[
    "balancer_name",
    "keepalive",
    "wait_for_ready",
    "read_buffer_size",
    "write_buffer_size",
];

/// `otlphttp`'s Go settings accepted with a warning: other signals'
/// endpoints (this collector carries traces) and HTTP client tuning.
const IGNORED_HTTP: &[&str] = &[
    "balancer_name",
    "keepalive",
    "wait_for_ready",
    "read_buffer_size",
    "write_buffer_size",
    "metrics_endpoint",
    "logs_endpoint",
    "profiles_endpoint",
    "max_idle_conns",
    "max_idle_conns_per_host",
    "max_conns_per_host",
    "idle_conn_timeout",
    "disable_keep_alives",
    "http2_read_idle_timeout",
    "http2_ping_timeout",
    "proxy_url",
    "cookies",
];

/// The table line for `otlp`.
pub(crate) const OTLP: Factory<dyn ExporterSettings> = Factory {
    component: Component {
        section: "exporters",
        name: "otlp",
        settings: SETTINGS,
        ignored: IGNORED,
    },
    parse: |at, warnings| {
        Ok(Box::new(OtlpExporterConfig::parse(
            at,
            Transport::Grpc,
            true,
            warnings,
        )?))
    },
};

/// The table line for `otlphttp`.
pub(crate) const OTLPHTTP: Factory<dyn ExporterSettings> = Factory {
    component: Component {
        section: "exporters",
        name: "otlphttp",
        settings: SETTINGS,
        ignored: IGNORED_HTTP,
    },
    parse: |at, warnings| {
        Ok(Box::new(OtlpExporterConfig::parse(
            at,
            Transport::Http,
            true,
            warnings,
        )?))
    },
};

/// How an OTLP exporter sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// OTLP/gRPC (`otlp`).
    Grpc,
    /// OTLP/HTTP (`otlphttp`).
    Http,
}

/// The body of an OTLP/HTTP request (`encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Protobuf (the default).
    Proto,
    /// OTLP JSON.
    Json,
}

/// `sending_queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueConfig {
    /// Whether requests queue; when off, at most one request is in flight.
    pub enabled: bool,
    /// Requests sent concurrently.
    pub num_consumers: usize,
    /// Requests (or spans, with `sizer: items`) waiting at most; beyond it
    /// a batch is refused and counted.
    pub queue_size: usize,
    /// `sizer: items`: `queue_size` counts spans, not requests.
    pub items: bool,
    /// `sizer: bytes` (a persistent queue): `queue_size` counts request bytes.
    pub bytes: bool,
    /// `storage`: the `file_storage` extension that keeps the queue on disk.
    pub storage: Option<String>,
    /// `blocking`: when the queue is full, receivers wait for room (up to
    /// 10 s, then refuse with a retryable status) instead of the batch being dropped.
    pub blocking: bool,
}

/// `retry_on_failure`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RetryConfig {
    /// Whether failed requests are retried.
    pub enabled: bool,
    /// First backoff.
    pub initial_interval: Duration,
    /// Largest backoff.
    pub max_interval: Duration,
    /// Give up after this long.
    pub max_elapsed_time: Duration,
    /// Backoff growth.
    pub multiplier: f64,
    /// Each backoff is drawn within this fraction of itself (Go's default 0.5).
    pub randomization_factor: f64,
}

/// An OTLP exporter (`otlp` over gRPC, `otlphttp` over HTTP).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OtlpExporterConfig {
    /// gRPC (`otlp`) or HTTP (`otlphttp`).
    pub transport: Transport,
    /// `endpoint`; for HTTP the base URL (`/v1/traces` appended) unless
    /// `traces_endpoint` is set.
    pub endpoint: String,
    /// `traces_endpoint` (HTTP only), used as it is.
    pub traces_endpoint: Option<String>,
    /// `encoding: json` (HTTP only).
    pub encoding: Encoding,
    /// `tls.insecure`: plaintext when the endpoint has no scheme.
    pub insecure: bool,
    /// `tls.ca_file`.
    pub ca_file: Option<String>,
    /// `auth.authenticator`: the auth extension whose credentials are sent.
    pub auth: Option<String>,
    /// `tls.server_name_override`: the name the server's certificate is
    /// verified against (and the SNI) instead of the endpoint's host.
    pub server_name_override: Option<String>,
    /// `tls.cert_file` and `tls.key_file`.
    pub client_cert: Option<(String, String)>,
    /// `tls.min_version`, `max_version` and `cipher_suites`.
    pub tls_policy: otel_export::tls::TlsPolicy,
    /// `headers`.
    pub headers: Vec<(String, String)>,
    /// `compression`: none, gzip or zstd (default gzip, as the Go exporters).
    pub compression: otel_export::Compression,
    /// `compression_params.level` (gzip 1-9, default 6; zstd 1-22, default 3).
    pub compression_level: Option<i32>,
    /// `timeout` per request.
    pub timeout: Duration,
    /// `sending_queue`.
    pub queue: QueueConfig,
    /// `retry_on_failure`.
    pub retry: RetryConfig,
}

impl OtlpExporterConfig {
    /// Reads the settings; `needs_endpoint` is false where another setting gives it (load balancing).
    pub(crate) fn parse(
        at: At<'_>,
        transport: Transport,
        needs_endpoint: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let http = transport == Transport::Http;
        let auth = parse_auth(at)?;
        let endpoint = get_str(at, "endpoint")?.unwrap_or("").to_owned();
        let traces_endpoint = if http {
            get_str(at, "traces_endpoint")?.map(str::to_owned)
        } else {
            None
        };
        if !http {
            reject(at, "traces_endpoint", "traces_endpoint is an otlphttp setting")?;
        }
        if needs_endpoint && endpoint.is_empty() && traces_endpoint.is_none() {
            return Err(ConfigError::new(
                child(at.path, "endpoint"),
                "an OTLP exporter needs an endpoint",
            ));
        }
        for (key, value) in [
            ("endpoint", Some(&endpoint)),
            ("traces_endpoint", traces_endpoint.as_ref()),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                check_send_address(v, http).map_err(|why| ConfigError::new(child(at.path, key), why))?;
            }
        }
        let encoding = match get_str(at, "encoding")? {
            None | Some("proto") => Encoding::Proto,
            Some("json") if http => Encoding::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    child(at.path, "encoding"),
                    if http {
                        format!("must be proto or json, got {other:?}")
                    } else {
                        "encoding is an otlphttp setting".to_owned()
                    },
                ));
            }
        };
        let mut cfg = OtlpExporterConfig {
            transport,
            endpoint,
            traces_endpoint,
            encoding,
            insecure: false,
            ca_file: None,
            server_name_override: None,
            auth,
            client_cert: None,
            tls_policy: otel_export::tls::TlsPolicy::default(),
            headers: Vec::new(),
            compression: otel_export::Compression::Gzip,
            compression_level: None,
            timeout: Duration::from_secs(if http { 30 } else { 5 }),
            queue: QueueConfig {
                enabled: true,
                num_consumers: 10,
                queue_size: 1000,
                items: false,
                bytes: false,
                storage: None,
                blocking: false,
            },
            retry: RetryConfig {
                enabled: true,
                initial_interval: Duration::from_secs(5),
                max_interval: Duration::from_secs(30),
                max_elapsed_time: Duration::from_secs(300),
                multiplier: 1.5,
                randomization_factor: 0.5,
            },
        };
        if let Some(v) = get(at, "tls") {
            let path = child(at.path, "tls");
            let t = At { value: v, path: &path };
            t.map()?;
            t.only_keys(&[
                "insecure",
                "insecure_skip_verify",
                "ca_file",
                "cert_file",
                "key_file",
                "server_name_override",
                "min_version",
                "max_version",
                "cipher_suites",
            ])?;
            if get_bool(t, "insecure_skip_verify")? == Some(true) {
                return Err(ConfigError::new(
                    child(&path, "insecure_skip_verify"),
                    "skipping certificate verification is not supported; give the server's CA in ca_file",
                ));
            }
            cfg.tls_policy = crate::sidecar::tls::parse_policy(t)?;
            cfg.server_name_override = get_str(t, "server_name_override")?
                .filter(|n| !n.is_empty())
                .map(str::to_owned);
            cfg.insecure = get_bool(t, "insecure")?.unwrap_or(false);
            cfg.ca_file = get_str(t, "ca_file")?.map(str::to_owned);
            match (get_str(t, "cert_file")?, get_str(t, "key_file")?) {
                (Some(c), Some(k)) => cfg.client_cert = Some((c.to_owned(), k.to_owned())),
                (None, None) => {}
                _ => return Err(t.err("cert_file and key_file go together")),
            }
        }
        if let Some(v) = get(at, "headers") {
            let Value::Object(m) = v else {
                return Err(ConfigError::new(
                    child(at.path, "headers"),
                    "must be a mapping of header names to values",
                ));
            };
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(ConfigError::new(format!("{}.headers.{k}", at.path), "must be a string")),
                };
                if http::HeaderName::from_bytes(k.as_bytes()).is_err() || http::HeaderValue::from_str(&v).is_err() {
                    return Err(ConfigError::new(
                        format!("{}.headers.{k}", at.path),
                        "is not a valid HTTP header",
                    ));
                }
                cfg.headers.push((k.clone(), v));
            }
        }
        if let Some(c) = get_str(at, "compression")? {
            cfg.compression = match c {
                "" | "none" => otel_export::Compression::None,
                "gzip" => otel_export::Compression::Gzip,
                "zstd" => otel_export::Compression::Zstd,
                "snappy" => otel_export::Compression::Snappy,
                other => {
                    return Err(ConfigError::new(
                        child(at.path, "compression"),
                        format!("{other:?} is not supported; use none, gzip, zstd or snappy"),
                    ));
                }
            };
        }
        if let Some(v) = get(at, "compression_params") {
            let path = child(at.path, "compression_params");
            let p = At { value: v, path: &path };
            p.map()?;
            p.only_keys(&["level"])?;
            if let Some(level) = crate::config::get_i64(p, "level")? {
                let Some((range, default)) = cfg.compression.levels() else {
                    return Err(ConfigError::new(
                        child(&path, "level"),
                        "a level needs compression: gzip or zstd",
                    ));
                };
                let Some(level) = i32::try_from(level).ok().filter(|l| *l == -1 || range.contains(l)) else {
                    return Err(ConfigError::new(
                        child(&path, "level"),
                        format!(
                            "must be {} to {}, or -1 for the default ({default}), got {level}",
                            range.start(),
                            range.end()
                        ),
                    ));
                };
                cfg.compression_level = Some(level);
            }
        }
        if let Some(t) = get_duration(at, "timeout")? {
            if t.is_zero() {
                return Err(ConfigError::new(child(at.path, "timeout"), "must be above 0"));
            }
            cfg.timeout = t;
        }
        if let Some(v) = get(at, "sending_queue") {
            let path = child(at.path, "sending_queue");
            let q = At { value: v, path: &path };
            q.map()?;
            q.only_keys(&["enabled", "num_consumers", "queue_size", "storage", "blocking", "sizer"])?;
            cfg.queue.storage = get_str(q, "storage")?.filter(|s| !s.is_empty()).map(str::to_owned);
            cfg.queue.blocking = get_bool(q, "blocking")?.unwrap_or(false);
            match get_str(q, "sizer")? {
                None | Some("requests") => {}
                Some("items") => cfg.queue.items = true,
                Some("bytes") if cfg.queue.storage.is_some() => cfg.queue.bytes = true,
                Some(other) => warnings.push(format!(
                    "{path}.sizer {other:?} is ignored by this collector: queue_size counts requests (batches), or spans with sizer: items (bytes with a storage)"
                )),
            }
            cfg.queue.enabled = get_bool(q, "enabled")?.unwrap_or(true);
            if let Some(n) = get_u64(q, "num_consumers")? {
                cfg.queue.num_consumers = (n as usize).max(1);
            }
            if let Some(n) = get_u64(q, "queue_size")? {
                if n == 0 {
                    return Err(ConfigError::new(child(&path, "queue_size"), "must be above 0"));
                }
                cfg.queue.queue_size = n as usize;
            }
        }
        if let Some(v) = get(at, "retry_on_failure") {
            let path = child(at.path, "retry_on_failure");
            let r = At { value: v, path: &path };
            r.map()?;
            r.only_keys(&[
                "enabled",
                "initial_interval",
                "max_interval",
                "max_elapsed_time",
                "multiplier",
                "randomization_factor",
            ])?;
            cfg.retry.enabled = get_bool(r, "enabled")?.unwrap_or(true);
            if let Some(d) = get_duration(r, "initial_interval")? {
                cfg.retry.initial_interval = d;
            }
            if let Some(d) = get_duration(r, "max_interval")? {
                cfg.retry.max_interval = d;
            }
            if let Some(d) = get_duration(r, "max_elapsed_time")? {
                cfg.retry.max_elapsed_time = d;
            }
            if let Some(f) = get_f64(r, "randomization_factor")? {
                if !(0.0..=1.0).contains(&f) {
                    return Err(ConfigError::new(
                        child(&path, "randomization_factor"),
                        "must be between 0 and 1",
                    ));
                }
                cfg.retry.randomization_factor = f;
            }
            if let Some(m) = get_f64(r, "multiplier")? {
                if !(1.0..=10.0).contains(&m) {
                    return Err(ConfigError::new(child(&path, "multiplier"), "must be between 1 and 10"));
                }
                cfg.retry.multiplier = m;
            }
        }
        Ok(cfg)
    }
}

impl OtlpExporterConfig {
    /// These settings with the `auth` extension's header added to `headers`.
    pub(crate) fn with_credentials(&self, ctx: &BuildContext) -> Result<OtlpExporterConfig, String> {
        let mut cfg = self.clone();
        if let Some(id) = &self.auth {
            let (name, value) = ctx.authenticator(id)?.client_header()?;
            cfg.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
            cfg.headers.push((name, value));
        }
        Ok(cfg)
    }
}

impl ExporterSettings for OtlpExporterConfig {
    fn auth_refs(&self) -> Vec<(&'static str, &str)> {
        self.auth
            .as_deref()
            .map(|a| ("auth.authenticator", a))
            .into_iter()
            .collect()
    }

    fn storage_refs(&self) -> Vec<(&'static str, &str)> {
        self.queue
            .storage
            .as_deref()
            .map(|s| ("sending_queue.storage", s))
            .into_iter()
            .collect()
    }

    fn build(&self, ctx: &BuildContext, id: &str) -> Result<Arc<dyn ExporterDyn>, String> {
        let cfg = self.with_credentials(ctx)?;
        let e: Arc<QueuedOtlp> = QueuedOtlp::new(
            &QueueEnv::new(ctx, &cfg)?,
            id,
            &cfg,
            &self.endpoint,
            ExportCounters::new(ctx.metrics(), id),
        )?;
        let labels = [("exporter", id), ("data_type", "traces")];
        let weak = Arc::downgrade(&e);
        ctx.metrics().gauge(
            "otelcol_exporter_queue_size",
            "Requests (batches) waiting in the sending queue; spans with sizer: items.",
            &labels,
            move || weak.upgrade().map_or(0.0, |q| q.queued() as f64),
        );
        if let Some(disk) = &e.disk {
            let weak = Arc::downgrade(disk);
            ctx.metrics().gauge(
                "otelcol_exporter_queue_storage_bytes",
                "Bytes of the persistent sending queue's journal on disk.",
                &labels,
                move || weak.upgrade().map_or(0.0, |d| d.journal.bytes() as f64),
            );
        }
        let capacity = if self.queue.enabled { self.queue.queue_size } else { 1 };
        ctx.metrics().gauge(
            "otelcol_exporter_queue_capacity",
            "Requests (batches) the sending queue holds at most; spans with sizer: items.",
            &labels,
            move || capacity as f64,
        );
        Ok(e)
    }
}

fn otlp_exporter(cfg: &OtlpExporterConfig, endpoint: &str) -> Result<OtlpExporter, String> {
    let protocol = match (cfg.transport, cfg.encoding) {
        (Transport::Grpc, _) => Protocol::Grpc,
        (Transport::Http, Encoding::Proto) => Protocol::HttpProtobuf,
        (Transport::Http, Encoding::Json) => Protocol::HttpJson,
    };
    let retry = if cfg.retry.enabled {
        RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: cfg.retry.initial_interval,
            max_backoff: cfg.retry.max_interval,
            multiplier: cfg.retry.multiplier,
            max_elapsed: cfg.retry.max_elapsed_time,
            randomization_factor: cfg.retry.randomization_factor,
        }
    } else {
        RetryPolicy::disabled()
    };
    let mut b = OtlpExporter::builder()
        .with_protocol(protocol)
        .with_insecure(cfg.insecure)
        .with_compression(cfg.compression)
        .with_timeout(cfg.timeout)
        .with_retry(retry);
    b = match (&cfg.traces_endpoint, cfg.transport) {
        (Some(t), Transport::Http) => b.with_endpoint(t.clone()),
        (None, Transport::Http) => b.with_base_endpoint(endpoint.to_owned()),
        (_, Transport::Grpc) => b.with_endpoint(endpoint.to_owned()),
    };
    for (k, v) in &cfg.headers {
        b = b.with_header(k.clone(), v.clone());
    }
    if let Some(name) = &cfg.server_name_override {
        b = b.with_tls_server_name(name.clone());
    }
    b = b.with_tls_policy(cfg.tls_policy.clone());
    if let Some(level) = cfg.compression_level {
        b = b.with_compression_level(level);
    }
    if let Some(ca) = &cfg.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read tls.ca_file {ca:?}: {e}"))?;
        b = b.with_ca_certificate_pem(pem);
    }
    if let Some((cert, key)) = &cfg.client_cert {
        let c = std::fs::read(cert).map_err(|e| format!("cannot read tls.cert_file {cert:?}: {e}"))?;
        let k = std::fs::read(key).map_err(|e| format!("cannot read tls.key_file {key:?}: {e}"))?;
        b = b.with_client_identity_pem(c, k);
    }
    // The builder names the environment variable an endpoint would come
    // from; here it came from the configuration.
    b.build()
        .map_err(|e| format!("endpoint {:?} is not valid; accepted: {}", e.value(), e.accepted()))
}

/// An OTLP exporter behind a bounded queue with `num_consumers` requests in flight.
pub(crate) struct QueuedOtlp {
    id: String,
    exporter: Arc<OtlpExporter>,
    /// The collector's runtime: requests are sent and shut down on it.
    runtime: tokio::runtime::Handle,
    tx: Mutex<Option<mpsc::Sender<Vec<SpanRec>>>>,
    dispatcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Spans queued or in flight, counted as failed if shutdown times out.
    pending: Arc<AtomicU64>,
    counters: ExportCounters,
    warned: Arc<std::sync::atomic::AtomicBool>,
    /// With `sizer: items`: spans waiting in the queue, and the most it holds.
    items: Option<(Arc<AtomicU64>, u64)>,
    /// With `storage`: the queue on disk (then `tx` is unused).
    disk: Option<Arc<DiskQueue>>,
    /// With `blocking`: receivers wait while the in-memory queue is full.
    room: Option<Arc<QueueRoom>>,
    /// Batches in the in-memory channel.
    batches: Arc<AtomicU64>,
}

/// What a queue is built with: the collector's runtime and metrics, and
/// its storage when it is persistent.
#[derive(Clone)]
pub(crate) struct QueueEnv {
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) metrics: Arc<crate::sidecar::metrics::Metrics>,
    pub(crate) storage: Option<Arc<crate::sidecar::extensions::file_storage::FileStorage>>,
}

impl QueueEnv {
    /// The environment of `cfg`'s queue.
    pub(crate) fn new(ctx: &BuildContext, cfg: &OtlpExporterConfig) -> Result<QueueEnv, String> {
        Ok(QueueEnv {
            runtime: ctx.runtime().clone(),
            metrics: ctx.metrics().clone(),
            storage: cfg.queue.storage.as_deref().map(|s| ctx.storage(s)).transpose()?,
        })
    }
}

/// The in-memory queue's bound as receivers see it (`blocking: true`).
pub(crate) struct QueueRoom {
    /// Batches in the channel.
    batches: Arc<AtomicU64>,
    /// Spans in the channel, with `sizer: items`.
    items: Option<(Arc<AtomicU64>, u64)>,
    capacity: u64,
}

impl Admission for QueueRoom {
    fn admit(&self, _incoming: usize, _spans: u64) -> bool {
        match &self.items {
            Some((q, max)) => q.load(Ordering::Relaxed) < *max,
            None => self.batches.load(Ordering::Relaxed) < self.capacity,
        }
    }

    fn reason(&self) -> &'static str {
        "data refused: the exporter's sending queue is full"
    }

    fn blocking(&self) -> bool {
        true
    }
}

impl QueuedOtlp {
    /// Starts the queue's dispatcher on the collector's runtime; with
    /// `storage`, opens the queue's journal and takes back what it holds.
    pub(crate) fn new(
        env: &QueueEnv,
        id: &str,
        cfg: &OtlpExporterConfig,
        endpoint: &str,
        counters: ExportCounters,
    ) -> Result<Arc<Self>, String> {
        let runtime = &env.runtime;
        let exporter = Arc::new(otlp_exporter(cfg, endpoint)?);
        if let Some(storage) = &env.storage {
            let (journal, recovery) = storage.open(&format!("exporter_{id}"))?;
            let sizer = if cfg.queue.items {
                Sizer::Items
            } else if cfg.queue.bytes {
                Sizer::Bytes
            } else {
                Sizer::Requests
            };
            let disk = DiskQueue::new(
                id,
                journal,
                recovery,
                cfg.queue.queue_size as u64,
                sizer,
                cfg.queue.blocking,
                cfg.encoding == Encoding::Json,
                exporter.clone(),
                // What a stored request's bytes depend on: protocol, encoding, compression.
                (cfg.transport as u8) << 4 | u8::from(cfg.encoding == Encoding::Json) << 3 | cfg.compression as u8,
                counters.clone(),
                &env.metrics,
                runtime.clone(),
            );
            let consumers = if cfg.queue.enabled { cfg.queue.num_consumers } else { 1 };
            let dispatcher = runtime.spawn(disk.clone().dispatch(consumers));
            return Ok(Arc::new(QueuedOtlp {
                id: id.to_owned(),
                exporter,
                runtime: runtime.clone(),
                tx: Mutex::new(None),
                dispatcher: Mutex::new(Some(dispatcher)),
                pending: Arc::new(AtomicU64::new(0)),
                counters,
                warned: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                items: None,
                disk: Some(disk),
                room: None,
                batches: Arc::new(AtomicU64::new(0)),
            }));
        }
        let (consumers, size) = if cfg.queue.enabled {
            (cfg.queue.num_consumers, cfg.queue.queue_size)
        } else {
            (1, 1)
        };
        let (tx, mut rx) = mpsc::channel::<Vec<SpanRec>>(size);
        let pending = Arc::new(AtomicU64::new(0));
        let warned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let json = cfg.encoding == Encoding::Json;
        // Every batch holds a span, so `size` slots also bound a queue of `size` spans.
        let items = (cfg.queue.enabled && cfg.queue.items).then(|| (Arc::new(AtomicU64::new(0)), size as u64));
        let batches = Arc::new(AtomicU64::new(0));
        let room = cfg.queue.blocking.then(|| {
            Arc::new(QueueRoom {
                batches: batches.clone(),
                items: items.clone(),
                capacity: size as u64,
            })
        });
        let dispatcher = {
            let (exporter, pending, counters, warned, id, rt) = (
                exporter.clone(),
                pending.clone(),
                counters.clone(),
                warned.clone(),
                id.to_owned(),
                runtime.clone(),
            );
            let queued_items = items.as_ref().map(|(q, _)| q.clone());
            let queued_batches = batches.clone();
            runtime.spawn(async move {
                let permits = Arc::new(Semaphore::new(consumers));
                while let Some(batch) = rx.recv().await {
                    queued_batches.fetch_sub(1, Ordering::Relaxed);
                    if let Some(q) = &queued_items {
                        q.fetch_sub(batch.len() as u64, Ordering::Relaxed);
                    }
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let n = batch.len() as u64;
                    let (exporter, pending, counters, warned, id) = (
                        exporter.clone(),
                        pending.clone(),
                        counters.clone(),
                        warned.clone(),
                        id.clone(),
                    );
                    rt.spawn(async move {
                        let result = match start_send(&exporter, batch, json) {
                            Ok((sending, bytes)) => {
                                let _live = LiveGuard::new(&counters.live, bytes);
                                sending.await
                            }
                            Err(e) => Err(format!("cannot encode the request: {e}")),
                        };
                        // Claim these spans back from `pending`; when shutdown
                        // gave up waiting it has counted them as failed already.
                        let claimed = pending
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| p.checked_sub(n))
                            .is_ok();
                        match result {
                            Ok(()) if claimed => add(&counters.sent, n),
                            Err(e) if claimed => {
                                add(&counters.failed, n);
                                if !warned.swap(true, Ordering::Relaxed) {
                                    tracing::warn!(exporter = %id, "export failed: {e} (further failures are counted in otelcol_exporter_send_failed_spans)");
                                } else {
                                    tracing::debug!(exporter = %id, "export failed: {e}");
                                }
                            }
                            _ => {}
                        }
                        drop(permit);
                    });
                }
                // Wait for the requests in flight.
                let _ = permits.acquire_many(consumers as u32).await;
            })
        };
        Ok(Arc::new(QueuedOtlp {
            id: id.to_owned(),
            exporter,
            runtime: runtime.clone(),
            tx: Mutex::new(Some(tx)),
            dispatcher: Mutex::new(Some(dispatcher)),
            pending,
            counters,
            warned,
            items,
            disk: None,
            room,
            batches,
        }))
    }
}

/// Encodes `batch` and starts sending it: the request is compressed (or
/// copied) and the spans let go before the send is awaited. Gives the send
/// and the encoded size.
fn start_send(
    exporter: &OtlpExporter,
    batch: Vec<SpanRec>,
    json: bool,
) -> Result<(impl Future<Output = Result<(), String>> + Send + use<>, usize), String> {
    let n = batch.len() as u64;
    let started = with_request_body(&batch, json, |body| (exporter.export_encoded_from(body, n), body.len()));
    drop(batch);
    started
}

impl QueuedOtlp {
    /// Shuts the OTLP exporter down (its transport thread), off the runtime's threads.
    async fn close_exporter(&self, timeout: Duration) {
        let exporter = self.exporter.clone();
        let _ = self
            .runtime
            .spawn_blocking(move || {
                use opentelemetry_sdk::trace::SpanExporter as _;
                exporter.shutdown_with_timeout(timeout)
            })
            .await;
    }

    /// Batches waiting in the queue now (spans, with `sizer: items`).
    fn queued(&self) -> usize {
        if let Some(d) = &self.disk {
            return d.held() as usize;
        }
        if let Some((q, _)) = &self.items {
            return q.load(Ordering::Relaxed) as usize;
        }
        lock(&self.tx)
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }
}

impl Consumer for QueuedOtlp {
    fn consume(&self, spans: Vec<SpanRec>) {
        let n = spans.len() as u64;
        if n == 0 {
            return;
        }
        if let Some(d) = &self.disk {
            d.consume(spans);
            return;
        }
        let tx = lock(&self.tx).clone();
        let Some(tx) = tx else {
            add(&self.counters.failed, n);
            return;
        };
        // With `sizer: items`, a batch that would take the queue over
        // queue_size spans is refused like one that finds no slot.
        let room = match &self.items {
            None => true,
            Some((q, max)) => {
                let before = q.fetch_add(n, Ordering::Relaxed);
                before + n <= *max || {
                    q.fetch_sub(n, Ordering::Relaxed);
                    false
                }
            }
        };
        self.pending.fetch_add(n, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        if !room || tx.try_send(spans).is_err() {
            self.batches.fetch_sub(1, Ordering::Relaxed);
            if room && let Some((q, _)) = &self.items {
                q.fetch_sub(n, Ordering::Relaxed);
            }
            self.pending.fetch_sub(n, Ordering::Relaxed);
            add(&self.counters.enqueue_failed, n);
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(exporter = %self.id, "sending queue is full; dropping spans (counted in otelcol_exporter_enqueue_failed_spans)");
            }
        }
    }
}

impl Exporter for QueuedOtlp {
    fn gate(&self) -> Option<Arc<dyn Admission>> {
        if let Some(d) = &self.disk {
            return Some(d.clone());
        }
        self.room.clone().map(|r| r as Arc<dyn Admission>)
    }

    fn journal(&self) -> Option<Arc<crate::sidecar::journal::Journal>> {
        self.disk.as_ref().map(|d| d.journal.clone())
    }

    fn shutdown(self: Arc<Self>, deadline: Instant) -> BoxFuture {
        if let Some(disk) = self.disk.clone() {
            return Box::pin(async move {
                disk.close();
                let drained = disk.drained(deadline).await;
                let dispatcher = lock(&self.dispatcher).take();
                if let Some(d) = dispatcher {
                    if drained {
                        let _ = d.await;
                    } else {
                        // What is left stays on disk and is sent after the next start.
                        d.abort();
                        tracing::warn!(
                            exporter = %self.id,
                            "shutdown deadline passed: {} spans stay in the persistent queue for the next start",
                            disk.queued_spans()
                        );
                    }
                }
                disk.journal.close();
                self.close_exporter(Duration::from_millis(100)).await;
            });
        }
        Box::pin(async move {
            drop(lock(&self.tx).take());
            let dispatcher = lock(&self.dispatcher).take();
            if let Some(mut d) = dispatcher {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, &mut d).await.is_err() {
                    // Nothing more is sent; requests in flight no longer count.
                    d.abort();
                    let lost = self.pending.swap(0, Ordering::Relaxed);
                    add(&self.counters.failed, lost);
                    tracing::warn!(exporter = %self.id, "shutdown deadline passed with {lost} spans unsent");
                }
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            self.close_exporter(left).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::sidecar::CollectorConfig;
    use crate::sidecar::testing::{context, exporter, metric, spans, trace};

    #[test]
    fn the_compression_level_is_checked_where_it_is_written() {
        let yaml = |exporter: &str| {
            format!(
                "receivers: {{otlp: {{protocols: {{grpc: {{}}}}}}}}\n\
                 exporters: {{otlp: {exporter}}}\n\
                 service: {{pipelines: {{traces: {{receivers: [otlp], exporters: [otlp]}}}}}}\n"
            )
        };
        for ok in [
            "{endpoint: a:4317, compression_params: {level: 1}}",
            "{endpoint: a:4317, compression: zstd, compression_params: {level: 19}}",
            "{endpoint: a:4317, compression_params: {level: -1}}",
        ] {
            assert!(CollectorConfig::parse_with_env(&yaml(ok), &|_| None).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("{endpoint: a:4317, compression_params: {level: 10}}", "must be 1 to 9"),
            (
                "{endpoint: a:4317, compression: none, compression_params: {level: 3}}",
                "needs compression",
            ),
            ("{endpoint: a:4317, compression_params: {speed: 3}}", "speed"),
        ] {
            let e = CollectorConfig::parse_with_env(&yaml(bad), &|_| None).unwrap_err();
            assert!(e.path().starts_with("exporters.otlp.compression_params"), "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
    }
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sizer_items_bounds_the_queue_in_spans() {
        let (ctx, metrics, _stop) = context();
        // A backend that takes connections and never answers: requests hang.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let settings = exporter(
            &format!(
                "{{otlp: {{endpoint: {}, tls: {{insecure: true}}, timeout: 2s, retry_on_failure: {{enabled: false}}, \
                   sending_queue: {{num_consumers: 1, queue_size: 5, sizer: items}}}}, debug: {{}}}}",
                silent.local_addr().unwrap()
            ),
            "otlp",
        );
        let e = settings.build(&ctx, "otlp").unwrap();
        let live = metrics.live();
        e.consume(spans("a", &trace(1, 3), &live));
        // Let the dispatcher take the first batch into flight.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for t in 2..=6 {
            e.consume(spans("a", &trace(t, 3), &live));
        }
        let count = |name: &str| metric(&metrics, &format!("{name}_total{{exporter=\"otlp\"}}"));
        let queue = |name: &str| metric(&metrics, &format!("{name}{{exporter=\"otlp\",data_type=\"traces\"}}"));
        assert_eq!(queue("otelcol_exporter_queue_capacity"), 5.0);
        // In flight: 3 spans; the dispatcher may hold the next 3 for a permit;
        // the queue then takes one batch of 3 (a second would make 6 > 5).
        let refused = count("otelcol_exporter_enqueue_failed_spans");
        assert!((9.0..=12.0).contains(&refused), "{refused}");
        assert!(queue("otelcol_exporter_queue_size") <= 5.0);
        // The backend never answers: shutdown gives up and counts what it holds.
        e.clone().shutdown_dyn(Instant::now() + Duration::from_secs(1)).await;
        assert_eq!(count("otelcol_exporter_send_failed_spans") + refused, 18.0);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            count("otelcol_exporter_send_failed_spans") + refused,
            18.0,
            "requests that time out after shutdown are not counted twice"
        );
        drop(silent);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_span_is_sent_failed_or_refused_and_counted() {
        let (ctx, metrics, _stop) = context();
        // Nothing listens on port 1: every request fails, fast.
        let settings = exporter(
            "{otlp: {endpoint: 127.0.0.1:1, tls: {insecure: true}, timeout: 1s, \
               retry_on_failure: {enabled: false}, sending_queue: {num_consumers: 1, queue_size: 1}}, debug: {}}",
            "otlp",
        );
        let e = settings.build(&ctx, "otlp").unwrap();
        let live = metrics.live();
        for t in 1..=20 {
            e.consume(spans("a", &trace(t, 2), &live));
        }
        e.clone().shutdown_dyn(Instant::now() + Duration::from_secs(10)).await;
        let count = |name: &str| metric(&metrics, &format!("{name}_total{{exporter=\"otlp\"}}"));
        let (sent, failed, refused) = (
            count("otelcol_exporter_sent_spans"),
            count("otelcol_exporter_send_failed_spans"),
            count("otelcol_exporter_enqueue_failed_spans"),
        );
        assert_eq!(sent, 0.0);
        assert!(refused >= 2.0, "a queue of 1 overflows: {refused}");
        assert!(failed >= 2.0, "{failed}");
        assert_eq!(failed + refused, 40.0);
        let queue = |name: &str| metric(&metrics, &format!("{name}{{exporter=\"otlp\",data_type=\"traces\"}}"));
        assert_eq!(queue("otelcol_exporter_queue_capacity"), 1.0);
        assert_eq!(queue("otelcol_exporter_queue_size"), 0.0, "drained at shutdown");
        assert_eq!(live.get(), 0, "nothing held after shutdown");
    }
}
