//! The collector's YAML, in OpenTelemetry Collector syntax: receivers,
//! processors, exporters, extensions and `service` pipelines, with
//! `${env:VAR}` substitution and errors that say where and what to do.

use crate::config::{
    At, ConfigError, child, get, get_bool, get_duration, get_f64, get_str, get_strings, get_u64, parse_yaml,
};
use crate::settings::TailSamplingConfig;
use serde_json::Value;
use std::time::Duration;

/// An OTLP receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpReceiverConfig {
    /// `protocols.grpc.endpoint`, when gRPC is on.
    pub grpc: Option<String>,
    /// Largest gRPC message accepted, bytes (`max_recv_msg_size_mib`, default 4).
    pub grpc_max_message_bytes: usize,
    /// `protocols.http.endpoint`, when HTTP is on.
    pub http: Option<String>,
    /// Largest HTTP body accepted, bytes (`max_request_body_size`, default 20 MiB).
    pub http_max_body_bytes: usize,
    /// The HTTP path for traces (`traces_url_path`, default `/v1/traces`).
    pub http_traces_path: String,
}

/// `memory_limiter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryLimiterConfig {
    /// How often memory is measured.
    pub check_interval: Duration,
    /// The hard limit, bytes.
    pub limit_bytes: u64,
    /// Headroom below the hard limit: data is refused above `limit - spike`.
    pub spike_bytes: u64,
}

/// `batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Send after this long even when the batch is small.
    pub timeout: Duration,
    /// Send when this many spans are waiting.
    pub send_batch_size: usize,
    /// Split larger batches (0: no limit).
    pub send_batch_max_size: usize,
}

/// What an attribute action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Add when absent.
    Insert,
    /// Replace when present.
    Update,
    /// Add or replace.
    Upsert,
    /// Remove.
    Delete,
    /// Replace the value with its SHA-256 hex digest.
    Hash,
}

/// A literal attribute value from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// A boolean.
    Bool(bool),
}

/// One action of an `attributes` or `resource` processor.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// The attribute.
    pub key: String,
    /// What to do.
    pub kind: ActionKind,
    /// The new value (insert / update / upsert).
    pub value: Option<Literal>,
    /// Or copy it from this attribute.
    pub from_attribute: Option<String>,
}

/// A processor.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorConfig {
    /// `memory_limiter`.
    MemoryLimiter(MemoryLimiterConfig),
    /// `tail_sampling` (parsed again per pipeline: each pipeline owns its engine).
    TailSampling(Value),
    /// `batch`.
    Batch(BatchConfig),
    /// `attributes` (span attributes).
    Attributes(Vec<Action>),
    /// `resource` (resource attributes).
    Resource(Vec<Action>),
}

/// `sending_queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Whether requests queue; when off, at most one request is in flight.
    pub enabled: bool,
    /// Requests sent concurrently.
    pub num_consumers: usize,
    /// Requests waiting at most; beyond it a batch is dropped and counted.
    pub queue_size: usize,
}

/// `retry_on_failure`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
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
}

/// An OTLP exporter (`otlp` over gRPC, `otlphttp` over HTTP).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpExporterConfig {
    /// gRPC (`otlp`) or HTTP (`otlphttp`).
    pub http: bool,
    /// `endpoint`; for HTTP the base URL (`/v1/traces` appended) unless
    /// `traces_endpoint` is set.
    pub endpoint: String,
    /// `traces_endpoint` (HTTP only), used as it is.
    pub traces_endpoint: Option<String>,
    /// `encoding: json` (HTTP only).
    pub json: bool,
    /// `tls.insecure`: plaintext when the endpoint has no scheme.
    pub insecure: bool,
    /// `tls.ca_file`.
    pub ca_file: Option<String>,
    /// `tls.cert_file` and `tls.key_file`.
    pub client_cert: Option<(String, String)>,
    /// `headers`.
    pub headers: Vec<(String, String)>,
    /// `compression`: none, gzip or zstd (default gzip, as the Go exporters).
    pub compression: otel_export::Compression,
    /// `timeout` per request.
    pub timeout: Duration,
    /// `sending_queue`.
    pub queue: QueueConfig,
    /// `retry_on_failure`.
    pub retry: RetryConfig,
}

/// Where the `loadbalancing` exporter finds its backends.
#[derive(Debug, Clone, PartialEq)]
pub enum ResolverConfig {
    /// `static.hostnames`.
    Static(Vec<String>),
    /// `dns`: every address `hostname` resolves to, on `port`, re-resolved every `interval`.
    Dns {
        /// The name to resolve (a headless Service).
        hostname: String,
        /// The backends' OTLP/gRPC port.
        port: u16,
        /// How often to resolve.
        interval: Duration,
        /// How long a lookup may take.
        timeout: Duration,
    },
}

/// How often the `debug` exporter prints the bottleneck summary by default.
pub const DEFAULT_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// An exporter.
#[derive(Debug, Clone, PartialEq)]
pub enum ExporterConfig {
    /// `otlp` or `otlphttp`.
    Otlp(Box<OtlpExporterConfig>),
    /// `file`: OTLP JSON, one request per line.
    File {
        /// `path`.
        path: String,
    },
    /// `debug`: each kept trace as a tree.
    Debug {
        /// `verbosity`: basic (one line per batch), normal (trees), detailed (trees with attributes).
        verbosity: String,
        /// `summary_interval` (ours, not Go's): how often the bottleneck
        /// summary of the tail samplers' traces is printed (and once at
        /// shutdown); `None` (`0s`) for never. Defaults to 60 s.
        summary_interval: Option<Duration>,
    },
    /// `loadbalancing` by trace id.
    LoadBalancing {
        /// `protocol.otlp` settings for every backend (the endpoint comes from the resolver).
        template: Box<OtlpExporterConfig>,
        /// `resolver`.
        resolver: ResolverConfig,
    },
}

/// An extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionConfig {
    /// `health_check`: answers 200 while the collector runs.
    HealthCheck {
        /// `endpoint`.
        endpoint: String,
        /// `path`.
        path: String,
    },
    /// Accepted for compatibility and not started (`pprof`, `zpages`).
    Ignored(String),
}

/// A `service.pipelines.traces[/name]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// `traces` or `traces/name`.
    pub name: String,
    /// Receiver ids.
    pub receivers: Vec<String>,
    /// Processor ids, in order.
    pub processors: Vec<String>,
    /// Exporter ids.
    pub exporters: Vec<String>,
}

/// `service.telemetry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `logs.level`: debug, info, warn, error.
    pub log_level: String,
    /// `logs.encoding`: console (text) or json.
    pub log_json: bool,
    /// The Prometheus `/metrics` address (`metrics.address`, or a pull reader's host and port).
    pub metrics_address: Option<String>,
}

/// A whole collector configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorConfig {
    /// Receivers by id.
    pub receivers: Vec<(String, OtlpReceiverConfig)>,
    /// Processors by id.
    pub processors: Vec<(String, ProcessorConfig)>,
    /// Exporters by id.
    pub exporters: Vec<(String, ExporterConfig)>,
    /// Extensions enabled in `service.extensions`.
    pub extensions: Vec<(String, ExtensionConfig)>,
    /// Trace pipelines.
    pub pipelines: Vec<PipelineConfig>,
    /// Logs and metrics of the collector itself.
    pub telemetry: TelemetryConfig,
    /// Warnings to log at start (ignored components and settings).
    pub warnings: Vec<String>,
}

const MIB: u64 = 1024 * 1024;

/// Replaces `${env:NAME}`, `${env:NAME:-default}` and `${NAME}` in string
/// values; `$$` is a literal `$`. A value that is only a reference takes the
/// variable's type (`4317` becomes a number).
fn substitute(
    v: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    match v {
        Value::String(s) if s.contains('$') => {
            let whole = s.starts_with("${") && s.ends_with('}') && s[2..].find('}') == Some(s.len() - 3);
            let expanded = expand(s, lookup, warnings)?;
            *v = if whole {
                match serde_yaml_ng::from_str::<Value>(&expanded) {
                    Ok(typed @ (Value::Number(_) | Value::Bool(_))) => typed,
                    _ => Value::String(expanded),
                }
            } else {
                Value::String(expanded)
            };
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|i| substitute(i, lookup, warnings)),
        Value::Object(m) => m.values_mut().try_for_each(|i| substitute(i, lookup, warnings)),
        _ => Ok(()),
    }
}

fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let end = r.find('}').ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            let reference = &r[..end];
            rest = &r[end + 1..];
            let reference = reference.strip_prefix("env:").unwrap_or(reference);
            let (name, default) = match reference.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (reference, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "${{{reference}}} is not an environment variable reference like ${{env:NAME}}"
                ));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    warnings.push(format!(
                        "environment variable {name} is not set; ${{env:{name}}} expands to nothing"
                    ));
                }
            }
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The component type of an id (`otlp/tempo` -> `otlp`).
fn kind_of(id: &str) -> &str {
    id.split_once('/').map_or(id, |(t, _)| t)
}

/// Merges `over` into `base`: mappings key by key, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// A component this collector has: its section, its type, the settings it
/// acts on, and the Go settings it accepts without acting on (each named in a
/// warning at `validate` and at start). Parsing checks a component's keys
/// against this table, and `otel-collector components` prints it.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    /// `receivers`, `processors`, `exporters` or `extensions`.
    pub section: &'static str,
    /// The type name (`otlp`, `tail_sampling`, ...).
    pub name: &'static str,
    /// Top-level settings acted on.
    pub settings: &'static [&'static str],
    /// Top-level settings accepted and ignored, with a warning.
    pub ignored: &'static [&'static str],
}

const OTLP_EXPORTER_SETTINGS: &[&str] = &[
    "endpoint",
    "traces_endpoint",
    "encoding",
    "tls",
    "headers",
    "compression",
    "timeout",
    "sending_queue",
    "retry_on_failure",
    "auth",
];
const OTLP_EXPORTER_IGNORED: &[&str] = &[
    "balancer_name",
    "keepalive",
    "wait_for_ready",
    "read_buffer_size",
    "write_buffer_size",
];

/// Every component, in the order `components` prints them.
pub const COMPONENTS: &[Component] = &[
    Component {
        section: "receivers",
        name: "otlp",
        settings: &["protocols"],
        ignored: &[],
    },
    Component {
        section: "processors",
        name: "memory_limiter",
        settings: &[
            "check_interval",
            "limit_mib",
            "spike_limit_mib",
            "limit_percentage",
            "spike_limit_percentage",
        ],
        ignored: &[],
    },
    Component {
        section: "processors",
        name: "tail_sampling",
        settings: crate::settings::TOP_KEYS,
        ignored: &[],
    },
    Component {
        section: "processors",
        name: "batch",
        settings: &["timeout", "send_batch_size", "send_batch_max_size", "metadata_keys"],
        ignored: &["metadata_cardinality_limit"],
    },
    Component {
        section: "processors",
        name: "attributes",
        settings: &["actions", "include", "exclude"],
        ignored: &[],
    },
    Component {
        section: "processors",
        name: "resource",
        settings: &["attributes"],
        ignored: &[],
    },
    Component {
        section: "exporters",
        name: "otlp",
        settings: OTLP_EXPORTER_SETTINGS,
        ignored: OTLP_EXPORTER_IGNORED,
    },
    Component {
        section: "exporters",
        name: "otlphttp",
        settings: OTLP_EXPORTER_SETTINGS,
        ignored: OTLP_EXPORTER_IGNORED,
    },
    Component {
        section: "exporters",
        name: "file",
        settings: &["path", "format"],
        ignored: &["flush_interval"],
    },
    Component {
        section: "exporters",
        name: "debug",
        settings: &["verbosity", "summary_interval"],
        ignored: &["sampling_initial", "sampling_thereafter"],
    },
    Component {
        section: "exporters",
        name: "loadbalancing",
        settings: &["routing_key", "protocol", "resolver"],
        ignored: &[],
    },
    Component {
        section: "extensions",
        name: "health_check",
        settings: &["endpoint", "path"],
        ignored: &["check_collector_pipeline"],
    },
    Component {
        section: "extensions",
        name: "pprof",
        settings: &[],
        ignored: &["(all: accepted, not started)"],
    },
    Component {
        section: "extensions",
        name: "zpages",
        settings: &[],
        ignored: &["(all: accepted, not started)"],
    },
];

/// The table entry of a component.
fn component(section: &str, name: &str) -> Component {
    COMPONENTS
        .iter()
        .find(|c| c.section == section && c.name == name)
        .copied()
        .unwrap_or(Component {
            section: "",
            name: "",
            settings: &[],
            ignored: &[],
        })
}

/// Checks `at`'s keys against `section`/`name` in [`COMPONENTS`]; the ignored
/// ones present become warnings.
fn component_keys(at: At<'_>, section: &str, name: &str, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    let c = component(section, name);
    let all: Vec<&str> = c.settings.iter().chain(c.ignored).copied().collect();
    at.only_keys(&all)?;
    note_ignored(at, c.ignored, warnings);
    Ok(())
}

/// The names of a section's components, from [`COMPONENTS`].
fn names(section: &str) -> Vec<&'static str> {
    COMPONENTS
        .iter()
        .filter(|c| c.section == section)
        .map(|c| c.name)
        .collect()
}

fn removed_or_unknown(section: &str, id: &str, known: &[&str]) -> ConfigError {
    let kind = kind_of(id);
    let path = format!("{section}.{id}");
    let message = match (section, kind) {
        ("exporters", "jaeger") => "the jaeger exporter was removed from the OpenTelemetry Collector: Jaeger accepts \
             OTLP, so use an `otlp` exporter with the Jaeger collector's OTLP/gRPC endpoint (port 4317), e.g. \
             `otlp/jaeger: {endpoint: jaeger-collector:4317, tls: {insecure: true}}`"
            .to_owned(),
        ("exporters", "jaeger_thrift") => "the jaeger_thrift exporter was removed: Jaeger accepts OTLP, use an \
             `otlphttp` exporter with the Jaeger collector's OTLP/HTTP endpoint (port 4318)"
            .to_owned(),
        ("exporters", "logging") => {
            "the logging exporter was removed from the OpenTelemetry Collector: use `debug` instead".to_owned()
        }
        ("receivers", "jaeger" | "zipkin" | "opencensus") => format!(
            "the {kind} receiver is not available here: instrument with OpenTelemetry and send OTLP to the `otlp` receiver"
        ),
        ("processors", "probabilistic_sampler") => "probabilistic_sampler is not available here: use a \
             `tail_sampling` processor with a `probabilistic` policy, or head sampling in the SDK"
            .to_owned(),
        _ => format!(
            "unknown {} type {kind:?}; available: {}",
            section.trim_end_matches('s'),
            known.join(", ")
        ),
    };
    ConfigError::new(path, message)
}

fn section<'a>(root: At<'a>, key: &str) -> Result<Vec<(String, &'a Value)>, ConfigError> {
    match get(root, key) {
        None => Ok(Vec::new()),
        Some(Value::Object(m)) => Ok(m.iter().map(|(k, v)| (k.clone(), v)).collect()),
        Some(other) => Err(ConfigError::new(
            key,
            format!("must be a mapping of components, got {other}"),
        )),
    }
}

static EMPTY: Value = Value::Null;

fn empty_map() -> &'static Value {
    static MAP: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    MAP.get_or_init(|| Value::Object(serde_json::Map::new()))
}

/// A component's settings (`otlp:` with nothing is an empty mapping).
fn body(v: &Value) -> &Value {
    if v.is_null() { empty_map() } else { v }
}

impl CollectorConfig {
    /// Parses a configuration, expanding `${env:VAR}` from the process environment.
    ///
    /// # Errors
    ///
    /// The first problem found, with its path.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, &|name| std::env::var(name).ok())
    }

    /// Parses a configuration, reading variables through `lookup`.
    ///
    /// # Errors
    ///
    /// The first problem found, with its path.
    pub fn parse_with_env(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse_merged_with_env(&[text], lookup)
    }

    /// Parses several configurations merged into one, as the Go Collector
    /// merges repeated `--config` flags: mappings are merged key by key, the
    /// later file's value winning; lists and scalars are replaced whole.
    ///
    /// # Errors
    ///
    /// The first problem found, with its path (in the merged configuration).
    pub fn parse_merged_with_env(texts: &[&str], lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut value = Value::Object(serde_json::Map::new());
        for text in texts {
            merge(&mut value, parse_yaml(text)?);
        }
        let mut warnings = Vec::new();
        substitute(&mut value, lookup, &mut warnings).map_err(|e| ConfigError::new("(environment)", e))?;
        let root = At {
            value: &value,
            path: "",
        };
        if !matches!(value, Value::Object(_)) {
            return Err(ConfigError::new(
                "(root)",
                "a collector configuration is a mapping with receivers, exporters and service",
            ));
        }
        root.only_keys(&[
            "receivers",
            "processors",
            "exporters",
            "extensions",
            "connectors",
            "service",
        ])?;
        if let Some(c) = get(root, "connectors")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            let first = c.keys().next().map_or("", String::as_str);
            return Err(ConfigError::new(
                format!("connectors.{first}"),
                "connectors are not supported by this collector",
            ));
        }

        let mut receivers = Vec::new();
        for (id, v) in section(root, "receivers")? {
            let path = format!("receivers.{id}");
            match kind_of(&id) {
                "otlp" => receivers.push((
                    id.clone(),
                    parse_otlp_receiver(
                        At {
                            value: body(v),
                            path: &path,
                        },
                        &mut warnings,
                    )?,
                )),
                _ => return Err(removed_or_unknown("receivers", &id, &names("receivers"))),
            }
        }

        let mut processors = Vec::new();
        for (id, v) in section(root, "processors")? {
            let path = format!("processors.{id}");
            let at = At {
                value: body(v),
                path: &path,
            };
            at.map()?;
            let p = match kind_of(&id) {
                "memory_limiter" => {
                    component_keys(at, "processors", "memory_limiter", &mut warnings)?;
                    ProcessorConfig::MemoryLimiter(parse_memory_limiter(at)?)
                }
                "tail_sampling" => {
                    // Validate now; each pipeline builds its own engine later.
                    TailSamplingConfig::from_value(at.value, &path)?;
                    ProcessorConfig::TailSampling(at.value.clone())
                }
                "batch" => {
                    component_keys(at, "processors", "batch", &mut warnings)?;
                    ProcessorConfig::Batch(parse_batch(at)?)
                }
                "attributes" => {
                    component_keys(at, "processors", "attributes", &mut warnings)?;
                    reject_filters(at)?;
                    ProcessorConfig::Attributes(parse_actions(at, "actions")?)
                }
                "resource" => {
                    component_keys(at, "processors", "resource", &mut warnings)?;
                    ProcessorConfig::Resource(parse_actions(at, "attributes")?)
                }
                _ => {
                    return Err(removed_or_unknown("processors", &id, &names("processors")));
                }
            };
            processors.push((id.clone(), p));
        }

        let mut exporters = Vec::new();
        for (id, v) in section(root, "exporters")? {
            let path = format!("exporters.{id}");
            let at = At {
                value: body(v),
                path: &path,
            };
            at.map()?;
            let e = match kind_of(&id) {
                "otlp" => ExporterConfig::Otlp(Box::new(parse_otlp_exporter(at, false, true, &mut warnings)?)),
                "otlphttp" => ExporterConfig::Otlp(Box::new(parse_otlp_exporter(at, true, true, &mut warnings)?)),
                "file" => {
                    component_keys(at, "exporters", "file", &mut warnings)?;
                    if let Some(f) = get_str(at, "format")?
                        && f != "json"
                    {
                        return Err(ConfigError::new(
                            child(&path, "format"),
                            format!("only json is supported, got {f:?}"),
                        ));
                    }
                    let p = get_str(at, "path")?
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| ConfigError::new(child(&path, "path"), "the file exporter needs a path"))?;
                    ExporterConfig::File { path: p.to_owned() }
                }
                "debug" => {
                    component_keys(at, "exporters", "debug", &mut warnings)?;
                    let verbosity = get_str(at, "verbosity")?.unwrap_or("normal").to_owned();
                    if !["basic", "normal", "detailed"].contains(&verbosity.as_str()) {
                        return Err(ConfigError::new(
                            child(&path, "verbosity"),
                            format!("must be basic, normal or detailed, got {verbosity:?}"),
                        ));
                    }
                    let summary_interval = match get_duration(at, "summary_interval")? {
                        None => Some(DEFAULT_SUMMARY_INTERVAL),
                        Some(d) if d.is_zero() => None,
                        Some(d) => Some(d),
                    };
                    ExporterConfig::Debug {
                        verbosity,
                        summary_interval,
                    }
                }
                "loadbalancing" => parse_loadbalancing(at, &mut warnings)?,
                _ => {
                    return Err(removed_or_unknown("exporters", &id, &names("exporters")));
                }
            };
            exporters.push((id.clone(), e));
        }

        let extension_defs = section(root, "extensions")?;
        let service_at = At {
            value: get(root, "service").unwrap_or(&EMPTY),
            path: "service",
        };
        if get(root, "service").is_none() {
            return Err(ConfigError::new(
                "service",
                "a configuration needs a service section with pipelines",
            ));
        }
        service_at.map()?;
        service_at.only_keys(&["pipelines", "extensions", "telemetry"])?;

        let mut extensions = Vec::new();
        for (i, id) in get_strings(service_at, "extensions")?.into_iter().enumerate() {
            let def = extension_defs.iter().find(|(k, _)| *k == id).ok_or_else(|| {
                ConfigError::new(
                    format!("service.extensions[{i}]"),
                    format!("extension {id:?} is not defined under extensions"),
                )
            })?;
            let path = format!("extensions.{id}");
            let at = At {
                value: body(def.1),
                path: &path,
            };
            let e = match kind_of(&id) {
                "health_check" => {
                    at.map()?;
                    component_keys(at, "extensions", "health_check", &mut warnings)?;
                    ExtensionConfig::HealthCheck {
                        endpoint: listen_endpoint(at, "endpoint", "localhost:13133")?,
                        path: get_str(at, "path")?.unwrap_or("/").to_owned(),
                    }
                }
                "pprof" | "zpages" => {
                    warnings.push(format!("extension {id} is accepted but not started by this collector"));
                    ExtensionConfig::Ignored(id.clone())
                }
                other => {
                    return Err(ConfigError::new(
                        path,
                        format!(
                            "unknown extension type {other:?}; available: health_check (pprof and zpages are accepted and not started)"
                        ),
                    ));
                }
            };
            extensions.push((id, e));
        }

        let telemetry = parse_telemetry(service_at)?;

        let pipelines_at = At {
            value: get(service_at, "pipelines").unwrap_or(&EMPTY),
            path: "service.pipelines",
        };
        let mut pipelines = Vec::new();
        match pipelines_at.value {
            Value::Object(m) if !m.is_empty() => {
                for (name, v) in m {
                    let path = format!("service.pipelines.{name}");
                    if kind_of(name) != "traces" {
                        return Err(ConfigError::new(
                            path,
                            format!(
                                "{} pipelines are not supported: this collector handles traces",
                                kind_of(name)
                            ),
                        ));
                    }
                    let at = At {
                        value: body(v),
                        path: &path,
                    };
                    at.map()?;
                    at.only_keys(&["receivers", "processors", "exporters"])?;
                    let p = PipelineConfig {
                        name: name.clone(),
                        receivers: get_strings(at, "receivers")?,
                        processors: get_strings(at, "processors")?,
                        exporters: get_strings(at, "exporters")?,
                    };
                    check_refs(&path, "receivers", &p.receivers, receivers.iter().map(|(k, _)| k))?;
                    check_refs(&path, "processors", &p.processors, processors.iter().map(|(k, _)| k))?;
                    check_refs(&path, "exporters", &p.exporters, exporters.iter().map(|(k, _)| k))?;
                    if p.receivers.is_empty() {
                        return Err(ConfigError::new(
                            child(&path, "receivers"),
                            "a pipeline needs at least one receiver",
                        ));
                    }
                    if p.exporters.is_empty() {
                        return Err(ConfigError::new(
                            child(&path, "exporters"),
                            "a pipeline needs at least one exporter",
                        ));
                    }
                    for (i, id) in p.processors.iter().enumerate() {
                        if p.processors[..i].contains(id) {
                            return Err(ConfigError::new(
                                format!("{path}.processors[{i}]"),
                                format!("processor {id:?} appears twice in the pipeline"),
                            ));
                        }
                    }
                    pipelines.push(p);
                }
            }
            _ => {
                return Err(ConfigError::new(
                    "service.pipelines",
                    "at least one traces pipeline is required",
                ));
            }
        }
        Ok(CollectorConfig {
            receivers,
            processors,
            exporters,
            extensions,
            pipelines,
            telemetry,
            warnings,
        })
    }
}

fn check_refs<'a>(
    path: &str,
    what: &str,
    ids: &[String],
    defined: impl Iterator<Item = &'a String> + Clone,
) -> Result<(), ConfigError> {
    for (i, id) in ids.iter().enumerate() {
        if !defined.clone().any(|d| d == id) {
            let list: Vec<&str> = defined.clone().map(String::as_str).collect();
            return Err(ConfigError::new(
                format!("{path}.{what}[{i}]"),
                format!(
                    "{} {id:?} is not defined under {what}{}",
                    what.trim_end_matches('s'),
                    if list.is_empty() {
                        String::new()
                    } else {
                        format!(" (defined: {})", list.join(", "))
                    }
                ),
            ));
        }
    }
    Ok(())
}

fn parse_otlp_receiver(at: At<'_>, warnings: &mut Vec<String>) -> Result<OtlpReceiverConfig, ConfigError> {
    at.map()?;
    component_keys(at, "receivers", "otlp", warnings)?;
    let ppath = child(at.path, "protocols");
    let protocols = At {
        value: get(at, "protocols").unwrap_or(&EMPTY),
        path: &ppath,
    };
    let Value::Object(m) = protocols.value else {
        return Err(protocols.err("the otlp receiver needs protocols: grpc and/or http"));
    };
    if m.is_empty() {
        return Err(protocols.err("the otlp receiver needs protocols: grpc and/or http"));
    }
    protocols.only_keys(&["grpc", "http"])?;
    let mut cfg = OtlpReceiverConfig {
        grpc: None,
        grpc_max_message_bytes: (4 * MIB) as usize,
        http: None,
        http_max_body_bytes: (20 * MIB) as usize,
        http_traces_path: "/v1/traces".to_owned(),
    };
    // Accepted on both protocols and not acted on; `cors` also, named apart
    // because over HTTP its warning says what it means for browsers.
    const IGNORED: &[&str] = &[
        "keepalive",
        "include_metadata",
        "read_buffer_size",
        "write_buffer_size",
        "max_concurrent_streams",
    ];
    const CORS: &str = "browsers' CORS preflight requests are not answered";
    if m.contains_key("grpc") {
        let path = child(&ppath, "grpc");
        let g = At {
            value: body(&m["grpc"]),
            path: &path,
        };
        g.map()?;
        let mut allowed = vec!["endpoint", "max_recv_msg_size_mib", "transport", "tls", "auth", "cors"];
        allowed.extend_from_slice(IGNORED);
        g.only_keys(&allowed)?;
        note_ignored(g, IGNORED, warnings);
        note_ignored(g, &["cors"], warnings);
        reject(
            g,
            "tls",
            "TLS on receivers is not supported; terminate TLS in front of the collector",
        )?;
        reject(g, "auth", "receiver authentication is not supported")?;
        if let Some(t) = get_str(g, "transport")?
            && t != "tcp"
        {
            return Err(ConfigError::new(
                child(&path, "transport"),
                format!("only tcp is supported, got {t:?}"),
            ));
        }
        cfg.grpc = Some(listen_endpoint(g, "endpoint", "localhost:4317")?);
        if let Some(mib) = get_f64(g, "max_recv_msg_size_mib")? {
            if !(mib > 0.0 && mib <= 1024.0) {
                return Err(ConfigError::new(
                    child(&path, "max_recv_msg_size_mib"),
                    "must be between 0 and 1024",
                ));
            }
            cfg.grpc_max_message_bytes = (mib * MIB as f64) as usize;
        }
    }
    if m.contains_key("http") {
        let path = child(&ppath, "http");
        let h = At {
            value: body(&m["http"]),
            path: &path,
        };
        h.map()?;
        let mut allowed = vec![
            "endpoint",
            "max_request_body_size",
            "traces_url_path",
            "metrics_url_path",
            "logs_url_path",
            "tls",
            "auth",
            "cors",
        ];
        allowed.extend_from_slice(IGNORED);
        h.only_keys(&allowed)?;
        if get(h, "cors").is_some() {
            warnings.push(format!("{}.cors is ignored by this collector: {CORS}", path));
        }
        note_ignored(h, IGNORED, warnings);
        reject(
            h,
            "tls",
            "TLS on receivers is not supported; terminate TLS in front of the collector",
        )?;
        reject(h, "auth", "receiver authentication is not supported")?;
        cfg.http = Some(listen_endpoint(h, "endpoint", "localhost:4318")?);
        if let Some(n) = get_u64(h, "max_request_body_size")? {
            cfg.http_max_body_bytes = n as usize;
        }
        if let Some(p) = get_str(h, "traces_url_path")? {
            if !p.starts_with('/') {
                return Err(ConfigError::new(child(&path, "traces_url_path"), "must start with /"));
            }
            cfg.http_traces_path = p.to_owned();
        }
    }
    Ok(cfg)
}

/// Warns about each of `keys` present at `at`: settings accepted so that Go
/// Collector configurations load unchanged, which have no effect here.
fn note_ignored(at: At<'_>, keys: &[&str], warnings: &mut Vec<String>) {
    for key in keys {
        if get(at, key).is_some() {
            warnings.push(format!(
                "{} is accepted and ignored by this collector",
                child(at.path, key)
            ));
        }
    }
}

/// A listening address from `key` (or `default`), checked by [`check_listen_address`].
fn listen_endpoint(at: At<'_>, key: &str, default: &str) -> Result<String, ConfigError> {
    let endpoint = get_str(at, key)?.unwrap_or(default).trim();
    check_listen_address(endpoint).map_err(|why| ConfigError::new(child(at.path, key), why))?;
    Ok(endpoint.to_owned())
}

/// Checks a listening address as the Collector writes it, `host:port`: the
/// host is empty (every interface, as in `:4317`), a name, an IPv4 address
/// or a bracketed IPv6 address; the port is a number (0 picks a free one).
/// Names are resolved only when the collector starts.
///
/// # Errors
///
/// What is wrong with `endpoint`, with an example of the form.
pub(crate) fn check_listen_address(endpoint: &str) -> Result<(), String> {
    const FORM: &str = "host:port, e.g. 0.0.0.0:4317, or :4317 for every interface";
    if endpoint.contains("://") {
        return Err(format!("{endpoint:?} is a URL; a listening address is {FORM}"));
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(format!("{endpoint:?} has no port; a listening address is {FORM}"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "{endpoint:?} has port {port:?}; a port is a number from 0 to 65535"
        ));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let valid = inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        if !valid {
            return Err(format!(
                "{endpoint:?} has host {host:?}, which is not a bracketed IPv6 address"
            ));
        }
    } else if host.contains(':') {
        return Err(format!("{endpoint:?}: an IPv6 host goes in brackets, e.g. [::1]:4317"));
    } else if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '[' || c == ']') {
        return Err(format!(
            "{endpoint:?} has host {host:?}, which is not a host name or address"
        ));
    }
    Ok(())
}

/// Checks where an exporter sends: `http://` or `https://` and an authority
/// (`host[:port]`, IPv6 in brackets), then any path. Without a scheme (gRPC
/// and load-balancing backends only) it is `host[:port]` alone. Names are
/// resolved only when spans are sent.
pub(crate) fn check_send_address(endpoint: &str, needs_scheme: bool) -> Result<(), String> {
    let endpoint = endpoint.trim();
    let authority = match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(format!("{endpoint:?} has scheme {scheme:?}; use http:// or https://"));
            }
            rest.split(['/', '?']).next().unwrap_or("")
        }
        None if needs_scheme => {
            return Err(format!(
                "{endpoint:?} is not a URL; write http:// or https:// and the host, e.g. http://{endpoint}"
            ));
        }
        None if endpoint.contains('/') => {
            return Err(format!(
                "{endpoint:?} is not host:port (a path needs http:// or https://)"
            ));
        }
        None => endpoint,
    };
    let (host, port) = match authority.strip_prefix('[') {
        Some(inner) => {
            let Some((ip, after)) = inner.split_once(']') else {
                return Err(format!(
                    "{endpoint:?} opens an IPv6 address with [ and does not close it"
                ));
            };
            if ip.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{endpoint:?} has [{ip}], which is not an IPv6 address"));
            }
            match after {
                "" => ("ipv6", None),
                _ => match after.strip_prefix(':') {
                    Some(port) => ("ipv6", Some(port)),
                    None => return Err(format!("{endpoint:?} has {after:?} after the IPv6 address")),
                },
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!("{endpoint:?}: an IPv6 host goes in brackets, e.g. [::1]:4317"));
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(format!("{endpoint:?} has no host"));
    }
    if host.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(format!(
            "{endpoint:?} has host {host:?}, which is not a host name or address"
        ));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(format!(
            "{endpoint:?} has port {port:?}; a port is a number from 1 to 65535"
        ));
    }
    Ok(())
}

fn reject(at: At<'_>, key: &str, why: &str) -> Result<(), ConfigError> {
    if get(at, key).is_some() {
        return Err(ConfigError::new(child(at.path, key), why));
    }
    Ok(())
}

fn reject_filters(at: At<'_>) -> Result<(), ConfigError> {
    for k in ["include", "exclude"] {
        reject(
            at,
            k,
            "include/exclude filters are not supported; the actions apply to every span",
        )?;
    }
    Ok(())
}

/// Total memory available to the process: the cgroup limit when set, else physical memory.
fn total_memory() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    match (cgroup, meminfo) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    }
}

fn parse_memory_limiter(at: At<'_>) -> Result<MemoryLimiterConfig, ConfigError> {
    let check_interval = get_duration(at, "check_interval")?.unwrap_or(Duration::from_secs(1));
    if check_interval.is_zero() {
        return Err(ConfigError::new(child(at.path, "check_interval"), "must be above 0"));
    }
    let limit_mib = get_u64(at, "limit_mib")?;
    let limit_pct = get_u64(at, "limit_percentage")?;
    let (limit, spike) = match (limit_mib, limit_pct) {
        (Some(mib), _) if mib > 0 => {
            let spike = get_u64(at, "spike_limit_mib")?.map_or(mib * MIB / 5, |s| s * MIB);
            (mib * MIB, spike)
        }
        (_, Some(pct)) if pct > 0 && pct <= 100 => {
            let total = total_memory().ok_or_else(|| {
                ConfigError::new(
                    child(at.path, "limit_percentage"),
                    "total memory is unknown here; use limit_mib",
                )
            })?;
            let spike_pct = get_u64(at, "spike_limit_percentage")?.unwrap_or(pct / 5);
            (total / 100 * pct, total / 100 * spike_pct)
        }
        (_, Some(pct)) if pct > 100 => {
            return Err(ConfigError::new(
                child(at.path, "limit_percentage"),
                format!("must be 1 to 100, got {pct}"),
            ));
        }
        _ => {
            return Err(at.err("memory_limiter needs limit_mib (or limit_percentage) above 0"));
        }
    };
    if spike >= limit {
        return Err(ConfigError::new(
            child(at.path, "spike_limit_mib"),
            format!("must be below the limit ({} MiB), got {} MiB", limit / MIB, spike / MIB),
        ));
    }
    Ok(MemoryLimiterConfig {
        check_interval,
        limit_bytes: limit,
        spike_bytes: spike,
    })
}

fn parse_batch(at: At<'_>) -> Result<BatchConfig, ConfigError> {
    if get(at, "metadata_keys").is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
        return Err(ConfigError::new(
            child(at.path, "metadata_keys"),
            "batching by metadata is not supported",
        ));
    }
    let timeout = get_duration(at, "timeout")?.unwrap_or(Duration::from_millis(200));
    let send_batch_size = get_u64(at, "send_batch_size")?.unwrap_or(8192) as usize;
    let send_batch_max_size = get_u64(at, "send_batch_max_size")?.unwrap_or(0) as usize;
    if send_batch_max_size != 0 && send_batch_max_size < send_batch_size {
        return Err(ConfigError::new(
            child(at.path, "send_batch_max_size"),
            format!("must be 0 or at least send_batch_size ({send_batch_size})"),
        ));
    }
    Ok(BatchConfig {
        timeout,
        send_batch_size,
        send_batch_max_size,
    })
}

fn parse_actions(at: At<'_>, key: &str) -> Result<Vec<Action>, ConfigError> {
    let path = child(at.path, key);
    let items = match get(at, key) {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None => return Err(ConfigError::new(path, "at least one action is required")),
        Some(other) => {
            return Err(ConfigError::new(
                path,
                format!("must be a list of actions, got {other}"),
            ));
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let a = At { value: item, path: &p };
        a.map()?;
        a.only_keys(&[
            "key",
            "action",
            "value",
            "from_attribute",
            "from_context",
            "pattern",
            "converted_type",
        ])?;
        for unsupported in ["from_context", "pattern", "converted_type"] {
            reject(
                a,
                unsupported,
                &format!("{unsupported} is not supported; use value or from_attribute"),
            )?;
        }
        let key = get_str(a, "key")?
            .filter(|k| !k.is_empty())
            .ok_or_else(|| a.err("an action needs a key"))?
            .to_owned();
        let action = get_str(a, "action")?.ok_or_else(|| a.err("an action needs an action"))?;
        let kind = match action.to_ascii_lowercase().as_str() {
            "insert" => ActionKind::Insert,
            "update" => ActionKind::Update,
            "upsert" => ActionKind::Upsert,
            "delete" => ActionKind::Delete,
            "hash" => ActionKind::Hash,
            "extract" | "convert" => {
                return Err(ConfigError::new(
                    child(&p, "action"),
                    format!("{action} is not supported; available: insert, update, upsert, delete, hash"),
                ));
            }
            _ => {
                return Err(ConfigError::new(
                    child(&p, "action"),
                    format!("unknown action {action:?}; available: insert, update, upsert, delete, hash"),
                ));
            }
        };
        let value = match get(a, "value") {
            None => None,
            Some(Value::String(s)) => Some(Literal::Str(s.clone())),
            Some(Value::Bool(b)) => Some(Literal::Bool(*b)),
            Some(Value::Number(n)) => Some(match n.as_i64() {
                Some(i) => Literal::Int(i),
                None => Literal::Double(n.as_f64().unwrap_or(0.0)),
            }),
            Some(other) => {
                return Err(ConfigError::new(
                    child(&p, "value"),
                    format!("must be a string, number or bool, got {other}"),
                ));
            }
        };
        let from_attribute = get_str(a, "from_attribute")?.map(str::to_owned);
        if matches!(kind, ActionKind::Insert | ActionKind::Update | ActionKind::Upsert) {
            match (&value, &from_attribute) {
                (None, None) => return Err(a.err(format!("{action} needs value or from_attribute"))),
                (Some(_), Some(_)) => return Err(a.err("value and from_attribute are exclusive")),
                _ => {}
            }
        }
        out.push(Action {
            key,
            kind,
            value,
            from_attribute,
        });
    }
    Ok(out)
}

fn parse_otlp_exporter(
    at: At<'_>,
    http: bool,
    needs_endpoint: bool,
    warnings: &mut Vec<String>,
) -> Result<OtlpExporterConfig, ConfigError> {
    component_keys(at, "exporters", if http { "otlphttp" } else { "otlp" }, warnings)?;
    reject(
        at,
        "auth",
        "exporter authentication extensions are not supported; set headers instead",
    )?;
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
    let json = match get_str(at, "encoding")? {
        None | Some("proto") => false,
        Some("json") if http => true,
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
        http,
        endpoint,
        traces_endpoint,
        json,
        insecure: false,
        ca_file: None,
        client_cert: None,
        headers: Vec::new(),
        compression: otel_export::Compression::Gzip,
        timeout: Duration::from_secs(if http { 30 } else { 5 }),
        queue: QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
        },
        retry: RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
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
        ])?;
        if get_bool(t, "insecure_skip_verify")? == Some(true) {
            return Err(ConfigError::new(
                child(&path, "insecure_skip_verify"),
                "skipping certificate verification is not supported; give the server's CA in ca_file",
            ));
        }
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
            other => {
                return Err(ConfigError::new(
                    child(at.path, "compression"),
                    format!("{other:?} is not supported; use none, gzip or zstd"),
                ));
            }
        };
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
        reject(q, "storage", "persistent queues are not supported")?;
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
        if let Some(m) = get_f64(r, "multiplier")? {
            if !(1.0..=10.0).contains(&m) {
                return Err(ConfigError::new(child(&path, "multiplier"), "must be between 1 and 10"));
            }
            cfg.retry.multiplier = m;
        }
    }
    Ok(cfg)
}

fn parse_loadbalancing(at: At<'_>, warnings: &mut Vec<String>) -> Result<ExporterConfig, ConfigError> {
    component_keys(at, "exporters", "loadbalancing", warnings)?;
    if let Some(k) = get_str(at, "routing_key")?
        && k != "traceID"
    {
        return Err(ConfigError::new(
            child(at.path, "routing_key"),
            format!("only traceID routing is supported (tail sampling needs whole traces), got {k:?}"),
        ));
    }
    let ppath = child(at.path, "protocol");
    let protocol = At {
        value: get(at, "protocol").unwrap_or(&EMPTY),
        path: &ppath,
    };
    if get(at, "protocol").is_some() {
        protocol.map()?;
        protocol.only_keys(&["otlp"])?;
    }
    let opath = child(&ppath, "otlp");
    let otlp = At {
        value: body(get(protocol, "otlp").unwrap_or(&EMPTY)),
        path: &opath,
    };
    otlp.map()?;
    if get(otlp, "endpoint").is_some() {
        return Err(ConfigError::new(
            child(&opath, "endpoint"),
            "the resolver gives the endpoints; remove this one",
        ));
    }
    let template = parse_otlp_exporter(otlp, false, false, warnings)?;
    let rpath = child(at.path, "resolver");
    let resolver = At {
        value: get(at, "resolver").unwrap_or(&EMPTY),
        path: &rpath,
    };
    let Value::Object(m) = resolver.value else {
        return Err(resolver.err("the loadbalancing exporter needs a resolver: static or dns"));
    };
    resolver.only_keys(&["static", "dns", "k8s", "aws_cloud_map"])?;
    if m.contains_key("k8s") || m.contains_key("aws_cloud_map") {
        return Err(resolver
            .err("only the static and dns resolvers are supported; for Kubernetes use dns with a headless Service"));
    }
    let resolver = match (m.get("static"), m.get("dns")) {
        (Some(s), None) => {
            let path = child(&rpath, "static");
            let s = At { value: s, path: &path };
            s.map()?;
            s.only_keys(&["hostnames"])?;
            let hosts = get_strings(s, "hostnames")?;
            if hosts.is_empty() {
                return Err(ConfigError::new(
                    child(&path, "hostnames"),
                    "at least one backend is required",
                ));
            }
            for (i, host) in hosts.iter().enumerate() {
                check_send_address(host, false)
                    .map_err(|why| ConfigError::new(format!("{path}.hostnames[{i}]"), why))?;
            }
            ResolverConfig::Static(hosts)
        }
        (None, Some(d)) => {
            let path = child(&rpath, "dns");
            let d = At { value: d, path: &path };
            d.map()?;
            d.only_keys(&["hostname", "port", "interval", "timeout"])?;
            let hostname = get_str(d, "hostname")?
                .filter(|h| !h.is_empty())
                .ok_or_else(|| ConfigError::new(child(&path, "hostname"), "the dns resolver needs a hostname"))?
                .to_owned();
            let port = match get_u64(d, "port")? {
                None => 4317,
                Some(p) if (1..=65535).contains(&p) => p as u16,
                Some(p) => {
                    return Err(ConfigError::new(
                        child(&path, "port"),
                        format!("must be 1 to 65535, got {p}"),
                    ));
                }
            };
            ResolverConfig::Dns {
                hostname,
                port,
                interval: get_duration(d, "interval")?
                    .unwrap_or(Duration::from_secs(5))
                    .max(Duration::from_millis(100)),
                timeout: get_duration(d, "timeout")?.unwrap_or(Duration::from_secs(1)),
            }
        }
        _ => return Err(ConfigError::new(rpath, "set exactly one resolver: static or dns")),
    };
    Ok(ExporterConfig::LoadBalancing {
        template: Box::new(template),
        resolver,
    })
}

fn parse_telemetry(service: At<'_>) -> Result<TelemetryConfig, ConfigError> {
    let mut t = TelemetryConfig {
        log_level: "info".into(),
        log_json: false,
        metrics_address: None,
    };
    let Some(v) = get(service, "telemetry") else {
        return Ok(t);
    };
    let tel = At {
        value: v,
        path: "service.telemetry",
    };
    tel.map()?;
    tel.only_keys(&["logs", "metrics", "traces", "resource"])?;
    if let Some(l) = get(tel, "logs") {
        let logs = At {
            value: l,
            path: "service.telemetry.logs",
        };
        logs.map()?;
        logs.only_keys(&[
            "level",
            "encoding",
            "development",
            "output_paths",
            "error_output_paths",
            "sampling",
        ])?;
        if let Some(level) = get_str(logs, "level")? {
            let level = level.to_ascii_lowercase();
            if !["debug", "info", "warn", "error"].contains(&level.as_str()) {
                return Err(ConfigError::new(
                    "service.telemetry.logs.level",
                    format!("must be debug, info, warn or error, got {level:?}"),
                ));
            }
            t.log_level = level;
        }
        t.log_json = match get_str(logs, "encoding")? {
            None | Some("console") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "service.telemetry.logs.encoding",
                    format!("must be console or json, got {other:?}"),
                ));
            }
        };
    }
    if let Some(m) = get(tel, "metrics") {
        let metrics = At {
            value: m,
            path: "service.telemetry.metrics",
        };
        metrics.map()?;
        metrics.only_keys(&["address", "level", "readers"])?;
        if get_str(metrics, "level")? == Some("none") {
            return Ok(t);
        }
        if get(metrics, "address").is_some() {
            t.metrics_address = Some(listen_endpoint(metrics, "address", "")?);
        }
        if let Some(Value::Array(readers)) = get(metrics, "readers") {
            for r in readers {
                let prom = r.pointer("/pull/exporter/prometheus");
                if let Some(p) = prom {
                    let host = p.get("host").and_then(Value::as_str).unwrap_or("localhost");
                    let port = p.get("port").and_then(Value::as_u64).unwrap_or(8888);
                    // An IPv6 host comes without brackets here.
                    let address = if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    };
                    check_listen_address(&address).map_err(|why| {
                        ConfigError::new("service.telemetry.metrics.readers.pull.exporter.prometheus", why)
                    })?;
                    t.metrics_address = Some(address);
                }
            }
        }
    }
    Ok(t)
}

/// How long to wait for draining on shutdown when nothing else is configured.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn address_checks_never_panic(text in "\\PC{0,40}", needs_scheme in any::<bool>()) {
            let _ = check_listen_address(&text);
            let _ = check_send_address(&text, needs_scheme);
        }

        #[test]
        fn host_and_port_are_accepted_in_every_form(
            host in "[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?",
            port in 1u16..,
            ip in any::<std::net::Ipv6Addr>(),
        ) {
            prop_assert_eq!(check_listen_address(&format!("{host}:{port}")), Ok(()));
            prop_assert_eq!(check_listen_address(&format!(":{port}")), Ok(()));
            prop_assert_eq!(check_listen_address(&format!("[{ip}]:{port}")), Ok(()));
            prop_assert_eq!(check_send_address(&format!("{host}:{port}"), false), Ok(()));
            prop_assert_eq!(check_send_address(&format!("https://{host}:{port}/v1/traces"), true), Ok(()));
            prop_assert_eq!(check_send_address(&format!("http://[{ip}]:{port}"), true), Ok(()));
        }
    }

    #[test]
    fn settings_accepted_for_compatibility_are_named_in_warnings() {
        let yaml = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
        keepalive: {server_parameters: {max_connection_age: 60s}}
      http:
        endpoint: 127.0.0.1:4318
        cors: {allowed_origins: ["https://*.example.com"]}
        include_metadata: true
exporters:
  otlp:
    endpoint: tempo:4317
    balancer_name: round_robin
    keepalive: {time: 10s}
  debug:
    sampling_initial: 5
extensions:
  health_check:
    check_collector_pipeline: {enabled: true}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [otlp, debug]}
"#;
        let config = CollectorConfig::parse(yaml).unwrap();
        let mut warnings = config.warnings.clone();
        warnings.sort();
        let ignored = |path: &str| format!("{path} is accepted and ignored by this collector");
        let mut expected = vec![
            ignored("receivers.otlp.protocols.grpc.keepalive"),
            "receivers.otlp.protocols.http.cors is ignored by this collector: browsers' CORS preflight requests are not answered".to_owned(),
            ignored("receivers.otlp.protocols.http.include_metadata"),
            ignored("exporters.otlp.balancer_name"),
            ignored("exporters.otlp.keepalive"),
            ignored("exporters.debug.sampling_initial"),
            ignored("extensions.health_check.check_collector_pipeline"),
        ];
        expected.sort();
        assert_eq!(warnings, expected);

        // Settings the collector uses draw no warning.
        let plain = CollectorConfig::parse(
            "receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:4317}}}}\n\
             exporters: {otlp: {endpoint: tempo:4317, compression: gzip, timeout: 5s}}\n\
             service: {pipelines: {traces: {receivers: [otlp], exporters: [otlp]}}}\n",
        )
        .unwrap();
        assert_eq!(plain.warnings, Vec::<String>::new());
    }

    #[test]
    fn listen_addresses_take_the_collector_forms() {
        for ok in [
            "0.0.0.0:4317",
            ":4317",
            "localhost:4318",
            "otel-agent.observability.svc:4317",
            "[::]:4317",
            "[::1]:0",
            "127.0.0.1:65535",
        ] {
            assert_eq!(check_listen_address(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("0.0.0.0", "has no port"),
            ("", "has no port"),
            ("0.0.0.0:", "has port \"\""),
            ("0.0.0.0:65536", "has port \"65536\""),
            ("0.0.0.0:otlp", "has port \"otlp\""),
            ("0.0.0.0:-1", "has port \"-1\""),
            ("http://0.0.0.0:4317", "is a URL"),
            ("::1:4317", "goes in brackets"),
            ("[::1:4317", "not a bracketed IPv6 address"),
            ("[nope]:4317", "not a bracketed IPv6 address"),
            ("my host:4317", "not a host name or address"),
        ] {
            let e = check_listen_address(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn send_addresses_take_urls_and_grpc_targets() {
        for (ok, needs_scheme) in [
            ("http://tempo:4318", true),
            ("https://tempo.example.com", true),
            ("HTTP://tempo:4318/otlp/", true),
            ("http://[::1]:4318/v1/traces", true),
            ("tempo:4317", false),
            ("tempo", false),
            ("10.0.0.7:4317", false),
            ("[fd00::7]:4317", false),
            ("https://tempo:443", false),
        ] {
            assert_eq!(check_send_address(ok, needs_scheme), Ok(()), "{ok}");
        }
        for (bad, needs_scheme, why) in [
            ("tempo:4318", true, "is not a URL"),
            ("ftp://tempo:4317", false, "has scheme \"ftp\""),
            ("tempo:99999", false, "has port \"99999\""),
            ("tempo:0", false, "has port \"0\""),
            ("http://tempo:abc/", true, "has port \"abc\""),
            ("http://:4318", true, "has no host"),
            ("tempo:4317/x", false, "a path needs http://"),
            ("fd00::7:4317", false, "goes in brackets"),
            ("[fd00::7:4317", false, "does not close it"),
            ("[tempo]:4317", false, "not an IPv6 address"),
            ("[::1]4317", false, "after the IPv6 address"),
            ("my tempo:4317", false, "not a host name"),
        ] {
            let e = check_send_address(bad, needs_scheme).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn send_addresses_are_checked_where_they_are_configured() {
        let config = |exporter: &str| {
            format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: 127.0.0.1:0}}\n\
                 exporters:\n{exporter}\n\
                 service:\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [x]}}\n"
            )
        };
        for (exporter, place) in [
            ("  otlp/x: {endpoint: \"tempo:70000\"}", "exporters.otlp/x.endpoint"),
            (
                "  otlphttp/x: {endpoint: \"tempo:4318\"}",
                "exporters.otlphttp/x.endpoint",
            ),
            (
                "  otlphttp/x: {traces_endpoint: \"ftp://tempo/v1/traces\"}",
                "exporters.otlphttp/x.traces_endpoint",
            ),
            (
                "  loadbalancing/x:\n    protocol: {otlp: {}}\n    resolver: {static: {hostnames: [a:4317, \"b:x\"]}}",
                "hostnames[1]",
            ),
        ] {
            let yaml = config(exporter).replace(
                "exporters: [x]",
                &format!("exporters: [{}]", exporter.trim().split(':').next().unwrap()),
            );
            let e = CollectorConfig::parse(&yaml).unwrap_err().to_string();
            assert!(e.contains(place), "{place} not in {e}");
        }
    }

    #[test]
    fn listen_addresses_are_checked_where_they_are_configured() {
        let config = |receiver: &str, health: &str, metrics: &str| {
            format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"{receiver}\"}}\n\
                 exporters:\n  debug: {{}}\n\
                 extensions:\n  health_check: {{endpoint: \"{health}\"}}\n\
                 service:\n  extensions: [health_check]\n  telemetry: {{metrics: {{address: \"{metrics}\"}}}}\n\
                 \x20 pipelines:\n    traces: {{receivers: [otlp], exporters: [debug]}}\n"
            )
        };
        let good = CollectorConfig::parse(&config(":4317", ":13133", ":8888")).unwrap();
        assert_eq!(good.telemetry.metrics_address.as_deref(), Some(":8888"));
        for (yaml, place) in [
            (
                config("0.0.0.0:4317x", ":13133", ":8888"),
                "receivers.otlp.protocols.grpc.endpoint",
            ),
            (config(":4317", "13133", ":8888"), "extensions.health_check.endpoint"),
            (config(":4317", ":13133", "8888"), "service.telemetry.metrics.address"),
        ] {
            let e = CollectorConfig::parse(&yaml).unwrap_err().to_string();
            assert!(e.contains(place), "{place} not in {e}");
        }
    }
}
