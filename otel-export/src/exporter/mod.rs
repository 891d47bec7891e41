//! The OTLP span exporter: gRPC, HTTP/protobuf and HTTP/JSON.

mod compress;
pub use compress::{DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};
#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "grpc")]
pub use grpc::{RawCodec, RawDecoder, RawEncoder};
#[cfg(feature = "http")]
mod http;
pub(crate) mod response;
#[cfg(feature = "tls")]
mod tls;
mod transport;

use crate::config::{ConfigError, EnvMode, EnvReader, parse_headers};
use crate::counters::Counters;
use crate::encode::{Encoder, Encoding};
use bytes::Bytes;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use response::PartialSuccess;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use transport::Transport;

pub(crate) const USER_AGENT: &str = concat!("otel-rs-otlp-exporter/", env!("CARGO_PKG_VERSION"));

/// `OTEL_EXPORTER_OTLP_PROTOCOL`.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: base URL; `v1/traces` is appended for HTTP.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: used as it is.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_HEADERS`.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`.
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// `OTEL_EXPORTER_OTLP_COMPRESSION`.
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`.
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds).
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` (milliseconds).
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_CERTIFICATE`: PEM file of CA certificates to trust.
pub const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`.
pub const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`: PEM client certificate (mTLS).
pub const OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_CLIENT_KEY`: PEM client key (mTLS).
pub const OTEL_EXPORTER_OTLP_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
/// `OTEL_EXPORTER_OTLP_INSECURE`: plaintext gRPC for endpoints without a scheme.
pub const OTEL_EXPORTER_OTLP_INSECURE: &str = "OTEL_EXPORTER_OTLP_INSECURE";
/// `OTEL_EXPORTER_OTLP_TRACES_INSECURE`.
pub const OTEL_EXPORTER_OTLP_TRACES_INSECURE: &str = "OTEL_EXPORTER_OTLP_TRACES_INSECURE";

/// The default per-request timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default gRPC endpoint.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// The default HTTP endpoint.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// The OTLP transport and encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (the specification's default).
    #[default]
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

impl Protocol {
    /// Parses an `OTEL_EXPORTER_OTLP_PROTOCOL` value.
    pub fn parse(value: &str) -> Option<Protocol> {
        match value.trim() {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            "http/json" => Some(Protocol::HttpJson),
            _ => None,
        }
    }
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// None.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
    /// snappy, in its framed format (the Go Collector's `snappy`, which
    /// its receivers read whether framed or block).
    Snappy,
}

impl Compression {
    /// Parses an `OTEL_EXPORTER_OTLP_COMPRESSION` value.
    pub fn parse(value: &str) -> Option<Compression> {
        match value.trim() {
            "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "snappy" => Some(Compression::Snappy),
            _ => None,
        }
    }

    fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Snappy => Some("snappy"),
        }
    }
}

/// Retries of failed requests: exponential backoff with jitter, or the delay
/// the receiver asks for (`Retry-After`, gRPC `RetryInfo`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// The first backoff.
    pub initial_backoff: Duration,
    /// The largest backoff.
    pub max_backoff: Duration,
    /// Backoff growth per retry.
    pub multiplier: f64,
    /// No retry starts after this long since the first attempt.
    pub max_elapsed: Duration,
    /// Each backoff is drawn at random within this fraction of itself (0.2:
    /// 80% to 120%), so that many clients refused together do not retry
    /// together. 0 to 1; the Go Collector's `randomization_factor`.
    pub randomization_factor: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            multiplier: 1.5,
            max_elapsed: Duration::from_secs(30),
            randomization_factor: 0.2,
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn disabled() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub(crate) enum Attempt {
    Sent(PartialSuccess),
    Retryable { after: Option<Duration>, reason: String },
    Failed(String),
}

/// Resolved settings, shared with the transport thread.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) protocol: Protocol,
    pub(crate) endpoint: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) compression: Compression,
    /// The level for `compression` (checked when built).
    pub(crate) compression_level: i32,
    pub(crate) timeout: Duration,
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// The name the server's certificate is verified against (and sent as
    /// SNI), instead of the endpoint's host.
    pub(crate) tls_server_name: Option<String>,
    pub(crate) client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// TLS versions and cipher suites (unset: TLS 1.2 and 1.3, rustls' suites).
    #[cfg(feature = "tls")]
    pub(crate) tls_policy: Option<crate::tls::TlsPolicy>,
    pub(crate) retry: RetryPolicy,
    pub(crate) json: bool,
}

impl Settings {
    fn content_type(&self) -> &'static str {
        if self.json {
            "application/json"
        } else {
            "application/x-protobuf"
        }
    }
}

/// Builds an [`OtlpExporter`]. Code beats environment: start from
/// [`OtlpExporterBuilder::from_env`] and override with setters.
#[derive(Debug, Clone, Default)]
pub struct OtlpExporterBuilder {
    protocol: Protocol,
    endpoint: Option<String>,
    base_endpoint: bool,
    headers: Vec<(String, String)>,
    compression: Compression,
    compression_level: Option<i32>,
    timeout: Option<Duration>,
    ca_pem: Option<Vec<u8>>,
    tls_server_name: Option<String>,
    client_identity: Option<(Vec<u8>, Vec<u8>)>,
    #[cfg(feature = "tls")]
    tls_policy: Option<crate::tls::TlsPolicy>,
    insecure: Option<bool>,
    retry: RetryPolicy,
    counters: Option<Arc<Counters>>,
}

fn read_file(variable: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(variable, path, format!("a readable PEM file ({e})")))
}

impl OtlpExporterBuilder {
    /// The builder pre-filled from the `OTEL_EXPORTER_OTLP_*` variables, strictly.
    ///
    /// # Errors
    ///
    /// The first invalid variable, with its value and what is accepted.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_reader(&mut EnvReader::process(EnvMode::Strict))
    }

    /// The builder pre-filled from variables read by `env` (strict or lenient).
    ///
    /// # Errors
    ///
    /// In strict mode, the first invalid variable.
    pub fn from_env_reader(env: &mut EnvReader<'_>) -> Result<Self, ConfigError> {
        let mut b = OtlpExporterBuilder::default();
        if let Some((var, v)) = env.first(&[OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL]) {
            match Protocol::parse(&v) {
                Some(p) => b.protocol = p,
                None => env.reject(ConfigError::new(var, v, "grpc, http/protobuf, http/json"))?,
            }
        }
        if let Some(v) = env.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
            b.endpoint = Some(v.trim().to_owned());
        } else if let Some(v) = env.get(OTEL_EXPORTER_OTLP_ENDPOINT) {
            b.endpoint = Some(v.trim().to_owned());
            b.base_endpoint = true;
        }
        for var in [OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TRACES_HEADERS] {
            // Signal-specific headers are applied last, so they win on a shared key.
            if let Some(v) = env.get(var) {
                match parse_headers(&v) {
                    Ok(h) => {
                        for (k, v) in h {
                            b.headers.retain(|(existing, _)| existing != &k);
                            b.headers.push((k, v));
                        }
                    }
                    Err(bad) => env.reject(ConfigError::new(
                        var,
                        bad,
                        "comma-separated key=value pairs (values percent-encoded)",
                    ))?,
                }
            }
        }
        if let Some((var, v)) = env.first(&[OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, OTEL_EXPORTER_OTLP_COMPRESSION]) {
            match Compression::parse(&v) {
                Some(c) => b.compression = c,
                None => env.reject(ConfigError::new(var, v, "gzip, zstd, snappy, none"))?,
            }
        }
        let traces_timeout = env.millis(OTEL_EXPORTER_OTLP_TRACES_TIMEOUT)?;
        b.timeout = match traces_timeout {
            Some(t) => Some(t),
            None => env.millis(OTEL_EXPORTER_OTLP_TIMEOUT)?,
        };
        if let Some((var, path)) = env.first(&[OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, OTEL_EXPORTER_OTLP_CERTIFICATE]) {
            match read_file(var, &path) {
                Ok(pem) => b.ca_pem = Some(pem),
                Err(e) => env.reject(e)?,
            }
        }
        match (
            env.get(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE),
            env.get(OTEL_EXPORTER_OTLP_CLIENT_KEY),
        ) {
            (Some(cert), Some(key)) => {
                match (
                    read_file(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, &cert),
                    read_file(OTEL_EXPORTER_OTLP_CLIENT_KEY, &key),
                ) {
                    (Ok(c), Ok(k)) => b.client_identity = Some((c, k)),
                    (Err(e), _) | (_, Err(e)) => env.reject(e)?,
                }
            }
            (Some(v), None) => env.reject(ConfigError::new(
                OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
                v,
                "a client certificate together with OTEL_EXPORTER_OTLP_CLIENT_KEY",
            ))?,
            (None, Some(v)) => env.reject(ConfigError::new(
                OTEL_EXPORTER_OTLP_CLIENT_KEY,
                v,
                "a client key together with OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            ))?,
            (None, None) => {}
        }
        let insecure = env.boolean(OTEL_EXPORTER_OTLP_TRACES_INSECURE)?;
        b.insecure = match insecure {
            Some(i) => Some(i),
            None => env.boolean(OTEL_EXPORTER_OTLP_INSECURE)?,
        };
        Ok(b)
    }

    /// The transport and encoding. Defaults to `OTEL_EXPORTER_OTLP_PROTOCOL`, else http/protobuf.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The URL requests go to, used as it is (like `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
    /// except that an HTTP URL without a path gets `/v1/traces`. A gRPC URL without a
    /// scheme is `https://` unless [`with_insecure`](Self::with_insecure) is set.
    /// Defaults to `http://localhost:4317` (gRPC) or `http://localhost:4318/v1/traces` (HTTP).
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self.base_endpoint = false;
        self
    }

    /// A base URL to which `v1/traces` is appended for HTTP (like `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn with_base_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self.base_endpoint = true;
        self
    }

    /// Adds a header (gRPC metadata) sent with every request. Defaults to none.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into().to_ascii_lowercase();
        self.headers.retain(|(k, _)| *k != key);
        self.headers.push((key, value.into()));
        self
    }

    /// Body compression. Defaults to none.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The compression level: gzip 1 to 9 (default [`DEFAULT_GZIP_LEVEL`],
    /// 6, as the Go Collector), zstd 1 to 22 (default
    /// [`DEFAULT_ZSTD_LEVEL`], 3); -1 for the default. Checked by
    /// [`build`](Self::build).
    pub fn with_compression_level(mut self, level: i32) -> Self {
        self.compression_level = Some(level);
        self
    }

    /// Per-request timeout. Defaults to 10 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The name the server's certificate must carry (and the TLS SNI), when
    /// it is not the endpoint's host: e.g. an IP endpoint whose certificate
    /// names a service (the Go Collector's `tls.server_name_override`).
    /// Defaults to the endpoint's host.
    pub fn with_tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_server_name = Some(name.into());
        self
    }

    /// The TLS versions and TLS 1.2 cipher suites to offer (the Go
    /// Collector's `tls.min_version`, `max_version` and `cipher_suites`).
    /// Defaults to TLS 1.2 and 1.3 with rustls' suites.
    #[cfg(feature = "tls")]
    pub fn with_tls_policy(mut self, policy: crate::tls::TlsPolicy) -> Self {
        self.tls_policy = Some(policy);
        self
    }

    /// PEM CA certificates to trust besides the system's. Defaults to none.
    pub fn with_ca_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// A PEM client certificate and key for mutual TLS. Defaults to none.
    pub fn with_client_identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_identity = Some((cert.into(), key.into()));
        self
    }

    /// Plaintext gRPC for an endpoint given without a scheme. Defaults to false.
    pub fn with_insecure(mut self, insecure: bool) -> Self {
        self.insecure = Some(insecure);
        self
    }

    /// How failed requests are retried. Defaults to [`RetryPolicy::default`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Counters to write to (share one with a [`BatchSpanProcessor`](crate::BatchSpanProcessor)).
    /// Defaults to the exporter's own.
    pub fn with_counters(mut self, counters: Arc<Counters>) -> Self {
        self.counters = Some(counters);
        self
    }

    fn resolve_endpoint(&self) -> Result<String, ConfigError> {
        let raw = match &self.endpoint {
            None => {
                return Ok(match self.protocol {
                    Protocol::Grpc => DEFAULT_GRPC_ENDPOINT.to_owned(),
                    _ => DEFAULT_HTTP_ENDPOINT.to_owned(),
                });
            }
            Some(e) => e.trim().to_owned(),
        };
        let variable = if self.base_endpoint {
            OTEL_EXPORTER_OTLP_ENDPOINT
        } else {
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
        };
        let with_scheme = if raw.starts_with("http://") || raw.starts_with("https://") {
            raw.clone()
        } else if raw.contains("://") {
            return Err(ConfigError::new(variable, raw, "an http:// or https:// URL"));
        } else if self.protocol == Protocol::Grpc {
            let scheme = if self.insecure.unwrap_or(false) {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{raw}")
        } else {
            return Err(ConfigError::new(variable, raw, "an http:// or https:// URL"));
        };
        let uri: ::http::Uri = with_scheme
            .parse()
            .map_err(|_| ConfigError::new(variable, raw.clone(), "a valid URL"))?;
        if uri.host().is_none() {
            return Err(ConfigError::new(variable, raw, "a URL with a host"));
        }
        if self.protocol == Protocol::Grpc {
            return Ok(with_scheme);
        }
        let path = uri.path();
        // A base endpoint always gets the signal path; a full one only when it has no path.
        Ok(if self.base_endpoint || path.is_empty() || path == "/" {
            format!("{}/v1/traces", with_scheme.trim_end_matches('/'))
        } else {
            with_scheme
        })
    }

    /// What this build of the crate cannot do, said at build time rather than
    /// at the first export.
    fn check_features(&self, endpoint: &str) -> Result<(), ConfigError> {
        let missing = |setting: &str, value: &str, feature: &str| {
            ConfigError::new(
                setting,
                value,
                format!("this build of otel-export lacks its `{feature}` feature; enable it in Cargo.toml"),
            )
        };
        if self.protocol == Protocol::Grpc && !cfg!(feature = "grpc") {
            return Err(missing(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc", "grpc"));
        }
        if self.protocol != Protocol::Grpc && !cfg!(feature = "http") {
            let value = if self.protocol == Protocol::HttpJson {
                "http/json"
            } else {
                "http/protobuf"
            };
            return Err(missing(OTEL_EXPORTER_OTLP_PROTOCOL, value, "http"));
        }
        if endpoint.starts_with("https://") && !cfg!(feature = "tls") {
            return Err(missing(OTEL_EXPORTER_OTLP_ENDPOINT, endpoint, "tls"));
        }
        if self.compression == Compression::Zstd && !cfg!(feature = "zstd") {
            return Err(missing(OTEL_EXPORTER_OTLP_COMPRESSION, "zstd", "zstd"));
        }
        if self.compression == Compression::Snappy && !cfg!(feature = "snappy") {
            return Err(missing(OTEL_EXPORTER_OTLP_COMPRESSION, "snappy", "snappy"));
        }
        Ok(())
    }

    /// Builds the exporter. No connection is made until the first export.
    ///
    /// # Errors
    ///
    /// When the endpoint is not a usable URL.
    pub fn build(self) -> Result<OtlpExporter, ConfigError> {
        let endpoint = self.resolve_endpoint()?;
        self.check_features(&endpoint)?;
        let compression_level = compress::resolve_level(self.compression, self.compression_level).ok_or_else(|| {
            ConfigError::new(
                "compression level",
                self.compression_level.unwrap_or_default().to_string(),
                compress::accepted_levels(self.compression),
            )
        })?;
        let settings = Settings {
            protocol: self.protocol,
            endpoint,
            headers: self.headers,
            compression: self.compression,
            compression_level,
            timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            ca_pem: self.ca_pem,
            tls_server_name: self.tls_server_name,
            client_identity: self.client_identity,
            #[cfg(feature = "tls")]
            tls_policy: self.tls_policy,
            retry: self.retry,
            json: self.protocol == Protocol::HttpJson,
        };
        Ok(OtlpExporter {
            inner: Arc::new(Inner {
                settings,
                counters: self.counters.unwrap_or_default(),
                transport: Mutex::new(None),
                client: OnceLock::new(),
                shut_down: AtomicBool::new(false),
                warned_partial: AtomicBool::new(false),
            }),
            encoder: Mutex::new(Encoder::default()),
        })
    }
}

/// Plain TCP connections as the hyper-based clients make them (no Nagle,
/// any scheme, the exporter's timeout to connect).
#[cfg(any(feature = "http", feature = "tls"))]
pub(crate) fn tcp_connector(settings: &Settings) -> hyper_util::client::legacy::connect::HttpConnector {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(settings.timeout));
    http
}

#[derive(Debug)]
enum Client {
    #[cfg(feature = "grpc")]
    Grpc(grpc::GrpcClient),
    #[cfg(feature = "http")]
    Http(Box<http::HttpClient>),
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    counters: Arc<Counters>,
    transport: Mutex<Option<Transport>>,
    /// Built on the transport thread on first use.
    client: OnceLock<Result<Client, String>>,
    shut_down: AtomicBool,
    warned_partial: AtomicBool,
}

/// Exports spans over OTLP/gRPC, OTLP/HTTP protobuf or OTLP/HTTP JSON.
///
/// Spans are encoded by our own encoder straight from `SpanData`; requests,
/// retries and backoff run on the exporter's own I/O thread, so it works from
/// any runtime or none (with our [`BatchSpanProcessor`](crate::BatchSpanProcessor),
/// with opentelemetry_sdk's processors, or called directly).
///
/// ```no_run
/// use otel_export::{OtlpExporter, Protocol, BatchSpanProcessor};
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let exporter = OtlpExporter::builder()
///     .with_protocol(Protocol::Grpc)
///     .with_endpoint("http://localhost:4317")
///     .build()
///     .unwrap();
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(BatchSpanProcessor::builder(exporter).build())
///     .build();
/// # drop(provider);
/// ```
pub struct OtlpExporter {
    inner: Arc<Inner>,
    encoder: Mutex<Encoder>,
}

impl fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("protocol", &self.inner.settings.protocol)
            .field("endpoint", &self.inner.settings.endpoint)
            .finish_non_exhaustive()
    }
}

impl OtlpExporter {
    /// A builder with defaults (no environment read).
    pub fn builder() -> OtlpExporterBuilder {
        OtlpExporterBuilder::default()
    }

    /// An exporter configured from the `OTEL_EXPORTER_OTLP_*` variables.
    ///
    /// # Errors
    ///
    /// The first invalid variable, naming it, its value and what is accepted.
    pub fn from_env() -> Result<Self, ConfigError> {
        OtlpExporterBuilder::from_env()?.build()
    }

    /// The resolved endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.inner.settings.endpoint
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.inner.settings.protocol
    }

    /// The counters this exporter writes (`retries`, `rejected`, `send_failed`).
    pub fn counters(&self) -> Arc<Counters> {
        self.inner.counters.clone()
    }

    fn encode(&self, batch: &[SpanData]) -> Result<Bytes, String> {
        let settings = &self.inner.settings;
        let encoding = if settings.json {
            Encoding::Json
        } else {
            Encoding::Protobuf
        };
        let raw = match self.encoder.lock() {
            Ok(mut e) => e.encode_owned(batch, encoding),
            Err(poisoned) => poisoned.into_inner().encode_owned(batch, encoding),
        };
        self.compress(raw)
    }

    /// The request body as it goes on the wire: compressed, and for gRPC
    /// framed (the 5-byte length prefix, written in place ahead of the
    /// compressed bytes, so the body is not copied again).
    fn compress(&self, raw: Vec<u8>) -> Result<Bytes, String> {
        let settings = &self.inner.settings;
        if settings.protocol != Protocol::Grpc && settings.compression == Compression::None {
            return Ok(Bytes::from(raw));
        }
        self.compress_from(&raw)
    }

    /// As [`compress`](Self::compress), from a borrowed body (copied when
    /// it is sent as it is).
    fn compress_from(&self, raw: &[u8]) -> Result<Bytes, String> {
        let settings = &self.inner.settings;
        if settings.protocol != Protocol::Grpc {
            return compress::compress(settings.compression, settings.compression_level, raw, 0).map(Bytes::from);
        }
        let mut framed = compress::compress(settings.compression, settings.compression_level, raw, 5)?;
        let len = u32::try_from(framed.len() - 5).map_err(|_| "a gRPC message is at most 4 GiB".to_owned())?;
        framed[0] = u8::from(settings.compression != Compression::None);
        framed[1..5].copy_from_slice(&len.to_be_bytes());
        Ok(Bytes::from(framed))
    }

    /// Whether request bodies are OTLP JSON (`http/json`) rather than protobuf.
    pub fn sends_json(&self) -> bool {
        self.inner.settings.json
    }

    /// Sends an already-encoded `ExportTraceServiceRequest` (protobuf, or
    /// OTLP JSON when [`sends_json`](Self::sends_json)) holding `spans` spans,
    /// with this exporter's compression, headers, timeout and retries, on its
    /// transport thread. Forwarders use it to pass spans on without decoding
    /// them.
    ///
    /// # Errors
    ///
    /// The future resolves to an error saying why the request was not
    /// delivered (after retries); the spans are counted in `send_failed`.
    pub fn export_encoded(
        &self,
        body: Vec<u8>,
        spans: u64,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + use<> {
        Self::finish(self.start(|| self.compress(body), spans))
    }

    /// As [`export_encoded`](Self::export_encoded), from a borrowed body:
    /// it is compressed (or copied) before this returns, so the caller can
    /// encode the next request into the same buffer. A forwarder that
    /// encodes a large batch per request saves allocating (and the kernel
    /// zeroing) a fresh buffer each time. Likewise gzip and zstd keep a
    /// scratch buffer per thread, as large as the largest request
    /// compressed on that thread (not kept above 32 MiB).
    ///
    /// # Errors
    ///
    /// As [`export_encoded`](Self::export_encoded).
    pub fn export_encoded_from(
        &self,
        body: &[u8],
        spans: u64,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + use<> {
        Self::finish(self.start(|| self.compress_from(body), spans))
    }

    /// Makes the body (unless shut down) and starts sending it on the
    /// transport thread.
    fn start(
        &self,
        ready: impl FnOnce() -> Result<Bytes, String>,
        spans: u64,
    ) -> Result<transport::AbortOnDrop<Result<(), String>>, String> {
        if self.inner.shut_down.load(Ordering::Relaxed) {
            return Err("the exporter is shut down".to_owned());
        }
        ready().and_then(|body| self.transport_run(body, spans))
    }

    /// The outcome of a send [`start`](Self::start) began.
    async fn finish(started: Result<transport::AbortOnDrop<Result<(), String>>, String>) -> Result<(), String> {
        match started?.await {
            Ok(result) => result,
            Err(join) => Err(format!("export task ended: {join}")),
        }
    }

    /// An encoded request made ready to send as this exporter sends it
    /// (compressed, and framed for gRPC): what
    /// [`export_prepared`](Self::export_prepared) takes. A queue that keeps
    /// requests on disk stores this form (a tenth of the bytes with gzip)
    /// and does not compress twice.
    ///
    /// # Errors
    ///
    /// When compression fails or the request is too large to frame.
    pub fn prepare_encoded(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        self.compress_from(body).map(Vec::from)
    }

    /// Sends a request [`prepare_encoded`](Self::prepare_encoded) made (by
    /// this exporter, or one with the same protocol and compression), as
    /// [`export_encoded`](Self::export_encoded) sends.
    ///
    /// # Errors
    ///
    /// As [`export_encoded`](Self::export_encoded).
    pub fn export_prepared(
        &self,
        prepared: Vec<u8>,
        spans: u64,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + use<> {
        Self::finish(self.start(|| Ok(Bytes::from(prepared)), spans))
    }

    fn transport_run(&self, body: Bytes, spans: u64) -> Result<transport::AbortOnDrop<Result<(), String>>, String> {
        let mut guard = self
            .inner
            .transport
            .lock()
            .map_err(|_| "transport lock poisoned".to_owned())?;
        if guard.is_none() {
            *guard = Some(Transport::start().map_err(|e| format!("cannot start the OTLP transport thread: {e}"))?);
        }
        let transport = guard.as_ref().ok_or_else(|| "transport not started".to_owned())?;
        let inner = self.inner.clone();
        Ok(transport.run(async move { inner.send_with_retry(body, spans).await }))
    }
}

impl Inner {
    fn client(&self) -> Result<&Client, String> {
        self.client
            .get_or_init(|| match self.settings.protocol {
                #[cfg(feature = "grpc")]
                Protocol::Grpc => grpc::channel(&self.settings).map(Client::Grpc),
                #[cfg(feature = "http")]
                Protocol::HttpProtobuf | Protocol::HttpJson => {
                    http::client(&self.settings).map(|c| Client::Http(Box::new(c)))
                }
                #[allow(unreachable_patterns)] // with both transports built in
                other => Err(format!("{other:?} needs a transport feature of otel-export")),
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn send_once(&self, body: Bytes) -> Attempt {
        match self.client() {
            Err(e) => Attempt::Failed(e),
            #[cfg(feature = "grpc")]
            Ok(Client::Grpc(channel)) => grpc::send(channel.clone(), &self.settings, body).await,
            #[cfg(feature = "http")]
            Ok(Client::Http(client)) => http::send(client, &self.settings, body).await,
            #[allow(unreachable_patterns)] // with a transport built in
            Ok(_) => {
                drop(body);
                Attempt::Failed("no transport built in".to_owned())
            }
        }
    }

    async fn send_with_retry(&self, body: Bytes, spans: u64) -> Result<(), String> {
        let retry = self.settings.retry;
        let started = Instant::now();
        let mut backoff = retry.initial_backoff;
        let mut attempt = 1u32;
        loop {
            match self.send_once(body.clone()).await {
                Attempt::Sent(partial) => {
                    if partial.rejected_spans > 0 || !partial.error_message.is_empty() {
                        Counters::add(&self.counters.rejected, partial.rejected_spans.max(0) as u64);
                        if !self.warned_partial.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                target: "otel_export",
                                rejected = partial.rejected_spans,
                                "OTLP receiver rejected spans (partial success): {}; further partial successes are counted in `rejected` without logging",
                                partial.error_message
                            );
                        }
                    }
                    return Ok(());
                }
                Attempt::Failed(reason) => {
                    Counters::add(&self.counters.send_failed, spans);
                    self.counters.set_last_error(&reason);
                    return Err(reason);
                }
                Attempt::Retryable { after, reason } => {
                    let delay = after.unwrap_or_else(|| jitter(backoff, retry.randomization_factor));
                    if attempt >= retry.max_attempts || started.elapsed() + delay > retry.max_elapsed {
                        Counters::add(&self.counters.send_failed, spans);
                        let reason = format!("{reason} (gave up after {attempt} attempts)");
                        self.counters.set_last_error(&reason);
                        return Err(reason);
                    }
                    Counters::add(&self.counters.retries, 1);
                    tracing::debug!(target: "otel_export", "retrying in {delay:?}: {reason}");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    backoff = backoff.mul_f64(retry.multiplier).min(retry.max_backoff);
                }
            }
        }
    }
}

/// What a server at an endpoint speaks, as far as a failed export needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Answers HTTP/1.1 (an OTLP/HTTP port).
    Http1,
    /// Opens with an HTTP/2 SETTINGS frame (an OTLP/gRPC port).
    Http2,
}

/// Sends one HTTP/1.1 request to a plain-`http` endpoint's address and reads
/// the first bytes of the answer. Used only after an export failed, to name
/// a protocol mismatch; `None` when it cannot tell.
pub(crate) async fn peer_protocol(endpoint: &str, timeout: Duration) -> Option<Peer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let uri = endpoint.parse::<::http::Uri>().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let authority = uri.authority()?.clone();
    let addr = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
    let probe = async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET / HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        // An HTTP/2 server may close on the bad preface before reading it all.
        let _ = stream.write_all(request.as_bytes()).await;
        let mut head = [0u8; 9];
        let mut read = 0;
        while read < head.len() {
            match stream.read(&mut head[read..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
        if head[..read].starts_with(b"HTTP/1.") {
            Some(Peer::Http1)
        } else if read == head.len() && head[3] == 0x04 && head[5..9] == [0, 0, 0, 0] {
            // Frame header: 3-byte length, type 4 (SETTINGS), flags, stream 0.
            Some(Peer::Http2)
        } else {
            None
        }
    };
    tokio::time::timeout(timeout.min(Duration::from_secs(2)), probe)
        .await
        .ok()
        .flatten()
}

/// `d` scaled by a random factor in [0.8, 1.2].
/// `d` spread uniformly over `d * (1 - factor) ..= d * (1 + factor)`.
fn jitter(d: Duration, factor: f64) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let factor = if factor.is_finite() {
        factor.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let r = (RandomState::new().hash_one(Instant::now()) % 1001) as f64 / 1000.0;
    d.mul_f64(1.0 - factor + 2.0 * factor * r)
}

impl SpanExporter for OtlpExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // Encoding runs here, on the caller's (the processor worker's) thread;
        // the request runs on the transport thread.
        let spans = batch.len() as u64;
        let started = if self.inner.shut_down.load(Ordering::Relaxed) {
            Err(OTelSdkError::AlreadyShutdown)
        } else {
            self.encode(&batch)
                .and_then(|body| self.transport_run(body, spans))
                .map_err(OTelSdkError::InternalFailure)
        };
        drop(batch);
        async move {
            match started?.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(OTelSdkError::InternalFailure(reason)),
                Err(join) => Err(OTelSdkError::InternalFailure(format!("export task ended: {join}"))),
            }
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.inner.shut_down.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let transport = self.inner.transport.lock().ok().and_then(|mut t| t.take());
        match transport {
            Some(mut t) => {
                if t.stop(timeout) {
                    Ok(())
                } else {
                    Err(OTelSdkError::Timeout(timeout))
                }
            }
            None => Ok(()),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        match self.encoder.get_mut() {
            Ok(e) => e.set_resource(resource),
            Err(poisoned) => poisoned.into_inner().set_resource(resource),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoffs_spread_within_the_randomization_factor() {
        let d = Duration::from_millis(1000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let j = super::jitter(d, 0.5);
            assert!(
                j >= Duration::from_millis(500) && j <= Duration::from_millis(1500),
                "{j:?}"
            );
            seen.insert(j.as_millis() / 100);
        }
        assert!(seen.len() >= 5, "spread over the range: {seen:?}");
        assert_eq!(super::jitter(d, 0.0), d);
        // Out-of-range factors are clamped, never a panic.
        assert!(super::jitter(d, 7.0) <= Duration::from_millis(2000));
        assert_eq!(super::jitter(d, f64::NAN), d);
    }

    use super::*;
    use std::collections::HashMap;

    fn env_builder(vars: &[(&str, &str)], mode: EnvMode) -> Result<OtlpExporterBuilder, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OtlpExporterBuilder::from_env_reader(&mut EnvReader::from_fn(move |k| map.get(k).cloned(), mode))
    }

    fn endpoint(vars: &[(&str, &str)]) -> String {
        env_builder(vars, EnvMode::Strict)
            .unwrap()
            .build()
            .unwrap()
            .endpoint()
            .to_owned()
    }

    #[test]
    fn endpoint_rules() {
        assert_eq!(endpoint(&[]), "http://localhost:4318/v1/traces");
        assert_eq!(
            endpoint(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            "http://localhost:4317"
        );
        assert_eq!(
            endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/base")]),
            "http://c:4318/base/v1/traces"
        );
        assert_eq!(
            endpoint(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/custom")
            ]),
            "http://t:9/custom",
            "the signal-specific endpoint wins and is used as it is"
        );
        assert_eq!(
            endpoint(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")
            ]),
            "http://c:4317",
            "no path is appended for gRPC"
        );
        assert_eq!(
            endpoint(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317")
            ]),
            "https://c:4317"
        );
        assert_eq!(
            endpoint(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317"),
                ("OTEL_EXPORTER_OTLP_INSECURE", "true")
            ]),
            "http://c:4317"
        );
        assert_eq!(
            endpoint(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
            ]),
            "http://localhost:4317",
            "the signal-specific protocol wins"
        );
    }

    #[test]
    fn code_beats_env() {
        let e = env_builder(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")], EnvMode::Strict)
            .unwrap()
            .with_endpoint("http://code:1/v1/traces")
            .build()
            .unwrap();
        assert_eq!(e.endpoint(), "http://code:1/v1/traces");
    }

    #[test]
    fn strict_errors_name_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "thrift",
                "grpc, http/protobuf, http/json",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli", "gzip, zstd, snappy, none"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s", "milliseconds"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue", "key=value"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "yes", "true or false"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/such/ca.pem", "readable PEM"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem", "together with"),
        ];
        for (var, value, accepted) in cases {
            let err = env_builder(&[(var, value)], EnvMode::Strict).unwrap_err();
            assert_eq!(err.variable(), *var);
            assert!(err.to_string().contains(accepted), "{err}");
            // Lenient mode: the default is used instead.
            assert!(env_builder(&[(var, value)], EnvMode::Lenient).is_ok(), "{var}");
        }
        let err = env_builder(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://c")], EnvMode::Strict)
            .unwrap()
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT") && err.to_string().contains("http://"),
            "{err}"
        );
        let err = OtlpExporter::builder()
            .with_endpoint("localhost:4318")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("http:// or https://"), "{err}");
    }

    #[test]
    fn headers_from_env_and_code() {
        let b = env_builder(
            &[
                ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=3"),
            ],
            EnvMode::Strict,
        )
        .unwrap()
        .with_header("C", "4");
        assert_eq!(
            b.headers,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "3".into()),
                ("c".into(), "4".into())
            ]
        );
    }
}
