//! The collector's YAML, in OpenTelemetry Collector syntax: receivers,
//! processors, exporters, extensions and `service` pipelines, with
//! `${env:VAR}` substitution and errors that say where and what to do.
//!
//! This module reads the frame (sections, `service`, pipelines, telemetry)
//! and finds each component in its section's table by type name; the
//! component's own module reads its settings (see `component.rs`).

pub use super::component::Component;
use super::component::{ExporterSettings, ExtensionSettings, Factory, ProcessorSettings, ReceiverSettings};
pub(crate) use crate::config::{
    At, ConfigError, child, get, get_bool, get_duration, get_f64, get_str, get_strings, get_u64, parse_yaml,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A `service.pipelines.traces[/name]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

/// `service.telemetry.logs.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogLevel {
    /// `debug`.
    Debug,
    /// `info` (the default).
    #[default]
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
}

/// `service.telemetry.logs.encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogEncoding {
    /// `console`: text lines (the default).
    #[default]
    Console,
    /// `json`: one JSON object per line.
    Json,
}

/// `service.telemetry`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TelemetryConfig {
    /// `logs.level`.
    pub log_level: LogLevel,
    /// `logs.encoding`.
    pub log_encoding: LogEncoding,
    /// The Prometheus `/metrics` address (`metrics.address`, or a pull reader's host and port).
    pub metrics_address: Option<String>,
}

/// A whole collector configuration: each component's settings as its own
/// module read them, the pipelines that use them, and the collector's own
/// telemetry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CollectorConfig {
    pub(crate) receivers: Vec<(String, Arc<dyn ReceiverSettings>)>,
    pub(crate) processors: Vec<(String, Arc<dyn ProcessorSettings>)>,
    pub(crate) exporters: Vec<(String, Arc<dyn ExporterSettings>)>,
    /// Extensions enabled in `service.extensions`.
    pub(crate) extensions: Vec<(String, Arc<dyn ExtensionSettings>)>,
    /// Trace pipelines.
    pub pipelines: Vec<PipelineConfig>,
    /// Logs and metrics of the collector itself.
    pub telemetry: TelemetryConfig,
    /// Warnings to log at start (ignored components and settings).
    pub warnings: Vec<String>,
}

impl CollectorConfig {
    /// The ids of the configured components of `section` (`receivers`,
    /// `processors`, `exporters`, `extensions`; extensions only when
    /// `service.extensions` enables them), in the order they were written.
    pub fn component_ids(&self, section: &str) -> Vec<&str> {
        fn ids<T: ?Sized>(v: &[(String, Arc<T>)]) -> Vec<&str> {
            v.iter().map(|(k, _)| k.as_str()).collect()
        }
        match section {
            "receivers" => ids(&self.receivers),
            "processors" => ids(&self.processors),
            "exporters" => ids(&self.exporters),
            "extensions" => ids(&self.extensions),
            _ => Vec::new(),
        }
    }
}

/// Every component this collector has, in the order `components` prints them.
pub fn components() -> impl Iterator<Item = &'static Component> {
    let r = super::receivers::TABLE.iter().map(|f| &f.component);
    let p = super::processors::TABLE.iter().map(|f| &f.component);
    let e = super::exporters::TABLE.iter().map(|f| &f.component);
    let x = super::extensions::TABLE.iter().map(|f| &f.component);
    r.chain(p).chain(e).chain(x)
}

impl Component {
    /// Checks `at`'s keys against this entry; the ignored ones present
    /// become warnings.
    pub(crate) fn check_keys(&self, at: At<'_>, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        let all: Vec<&str> = self.settings.iter().chain(self.ignored).copied().collect();
        at.only_keys(&all)?;
        note_ignored(at, self.ignored, warnings);
        Ok(())
    }
}

/// Reads one section's components through its table.
fn read_section<T: ?Sized>(
    root: At<'_>,
    name: &str,
    table: &[Factory<T>],
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, Arc<T>)>, ConfigError> {
    let mut out = Vec::new();
    for (id, v) in section(root, name)? {
        out.push((id.clone(), read_component(name, &id, v, table, warnings)?));
    }
    Ok(out)
}

/// Reads component `id` of `section` with its table entry.
fn read_component<T: ?Sized>(
    section: &str,
    id: &str,
    v: &Value,
    table: &[Factory<T>],
    warnings: &mut Vec<String>,
) -> Result<Arc<T>, ConfigError> {
    let Some(factory) = table.iter().find(|f| f.component.name == kind_of(id)) else {
        let known: Vec<&str> = table.iter().map(|f| f.component.name).collect();
        return Err(removed_or_unknown(section, id, &known));
    };
    let path = format!("{section}.{id}");
    let at = At {
        value: body(v),
        path: &path,
    };
    at.map()?;
    factory.component.check_keys(at, warnings)?;
    Ok(Arc::from((factory.parse)(at, warnings)?))
}

pub(crate) const MIB: u64 = 1024 * 1024;

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

pub(crate) static EMPTY: Value = Value::Null;

fn empty_map() -> &'static Value {
    static MAP: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    MAP.get_or_init(|| Value::Object(serde_json::Map::new()))
}

/// A component's settings (`otlp:` with nothing is an empty mapping).
pub(crate) fn body(v: &Value) -> &Value {
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

        let receivers = read_section(root, "receivers", super::receivers::TABLE, &mut warnings)?;
        let processors = read_section(root, "processors", super::processors::TABLE, &mut warnings)?;
        let exporters = read_section(root, "exporters", super::exporters::TABLE, &mut warnings)?;

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

        // Extensions are read when `service.extensions` enables them.
        let mut extensions = Vec::new();
        for (i, id) in get_strings(service_at, "extensions")?.into_iter().enumerate() {
            let def = extension_defs.iter().find(|(k, _)| *k == id).ok_or_else(|| {
                ConfigError::new(
                    format!("service.extensions[{i}]"),
                    format!("extension {id:?} is not defined under extensions"),
                )
            })?;
            let e = read_component("extensions", &id, def.1, super::extensions::TABLE, &mut warnings)?;
            extensions.push((id, e));
        }

        check_authenticators(&receivers, &exporters, &extensions)?;
        check_storages(&processors, &exporters, &extensions)?;
        let telemetry = parse_telemetry(service_at, &mut warnings)?;
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

/// Places (`section.id.setting`) that name an extension, and the name.
fn refs<'a, T: ?Sized + 'a>(
    section: &'a str,
    components: &'a [(String, Arc<T>)],
    named: impl Fn(&'a T) -> Vec<(&'static str, &'a str)> + 'a,
) -> impl Iterator<Item = (String, &'a str)> + 'a {
    components.iter().flat_map(move |(id, c)| {
        named(c)
            .into_iter()
            .map(move |(at, name)| (format!("{section}.{id}.{at}"), name))
    })
}

/// Every extension named at a place is defined and of the kind the place
/// needs (the Go Collector refuses to start otherwise).
fn check_extension_refs<'a>(
    named: impl Iterator<Item = (String, &'a str)>,
    extensions: &[(String, Arc<dyn ExtensionSettings>)],
    is_kind: fn(&dyn ExtensionSettings) -> bool,
    (kind, example): (&str, &str),
) -> Result<(), ConfigError> {
    for (place, name) in named {
        let enabled = extensions
            .iter()
            .find(|(k, _)| k == name)
            .is_some_and(|(_, e)| is_kind(e.as_ref()));
        if !enabled {
            return Err(ConfigError::new(
                place,
                format!(
                    "{name:?} is not an enabled {kind} extension: define it under extensions (e.g. {example}) and list it in service.extensions"
                ),
            ));
        }
    }
    Ok(())
}

/// Every `auth.authenticator` names an auth extension (e.g. `bearertokenauth`).
fn check_authenticators(
    receivers: &[(String, Arc<dyn ReceiverSettings>)],
    exporters: &[(String, Arc<dyn ExporterSettings>)],
    extensions: &[(String, Arc<dyn ExtensionSettings>)],
) -> Result<(), ConfigError> {
    let named = refs("receivers", receivers, |r| r.auth_refs()).chain(refs("exporters", exporters, |e| e.auth_refs()));
    check_extension_refs(named, extensions, |e| e.is_authenticator(), ("auth", "bearertokenauth"))
}

/// Every `storage` (`sending_queue.storage`, `tail_storage`) names a `file_storage` extension.
fn check_storages(
    processors: &[(String, Arc<dyn ProcessorSettings>)],
    exporters: &[(String, Arc<dyn ExporterSettings>)],
    extensions: &[(String, Arc<dyn ExtensionSettings>)],
) -> Result<(), ConfigError> {
    let named =
        refs("processors", processors, |p| p.storage_refs()).chain(refs("exporters", exporters, |e| e.storage_refs()));
    check_extension_refs(named, extensions, |e| e.is_storage(), ("storage", "file_storage"))
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

/// Warns about each of `keys` present at `at`: settings accepted so that Go
/// Collector configurations load unchanged, which have no effect here.
pub(crate) fn note_ignored(at: At<'_>, keys: &[&str], warnings: &mut Vec<String>) {
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
pub(crate) fn listen_endpoint(at: At<'_>, key: &str, default: &str) -> Result<String, ConfigError> {
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

pub(crate) fn reject(at: At<'_>, key: &str, why: &str) -> Result<(), ConfigError> {
    if get(at, key).is_some() {
        return Err(ConfigError::new(child(at.path, key), why));
    }
    Ok(())
}

fn parse_telemetry(service: At<'_>, warnings: &mut Vec<String>) -> Result<TelemetryConfig, ConfigError> {
    let mut t = TelemetryConfig::default();
    let Some(v) = get(service, "telemetry") else {
        return Ok(t);
    };
    let tel = At {
        value: v,
        path: "service.telemetry",
    };
    tel.map()?;
    tel.only_keys(&["logs", "metrics", "traces", "resource"])?;
    note_ignored(tel, &["traces", "resource"], warnings);
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
        note_ignored(
            logs,
            &["development", "output_paths", "error_output_paths", "sampling"],
            warnings,
        );
        if let Some(level) = get_str(logs, "level")? {
            t.log_level = match level.to_ascii_lowercase().as_str() {
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" => LogLevel::Warn,
                "error" => LogLevel::Error,
                other => {
                    return Err(ConfigError::new(
                        "service.telemetry.logs.level",
                        format!("must be debug, info, warn or error, got {other:?}"),
                    ));
                }
            };
        }
        t.log_encoding = match get_str(logs, "encoding")? {
            None | Some("console") => LogEncoding::Console,
            Some("json") => LogEncoding::Json,
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
        match get_str(metrics, "level")? {
            Some("none") => return Ok(t),
            None | Some("normal") => {}
            Some(other) => warnings.push(format!(
                "service.telemetry.metrics.level {other:?} is served as \"normal\" by this collector (one set of metrics)"
            )),
        }
        if get(metrics, "address").is_some() {
            t.metrics_address = Some(listen_endpoint(metrics, "address", "")?);
        }
        if let Some(Value::Array(readers)) = get(metrics, "readers") {
            for (i, r) in readers.iter().enumerate() {
                let prom = r.pointer("/pull/exporter/prometheus");
                if prom.is_none() {
                    warnings.push(format!(
                        "service.telemetry.metrics.readers[{i}] is ignored by this collector: only pull readers with a prometheus exporter are served"
                    ));
                }
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

    /// The Go Collector's documented top-level settings of every component
    /// this collector has: each one acts or is named in a warning; none is
    /// an unknown key.
    #[test]
    fn every_documented_go_setting_acts_or_is_warned() {
        const GO: &[(&str, &str, &[&str])] = &[
            ("receivers", "otlp", &["protocols"]),
            (
                "processors",
                "batch",
                &[
                    "timeout",
                    "send_batch_size",
                    "send_batch_max_size",
                    "metadata_keys",
                    "metadata_cardinality_limit",
                ],
            ),
            (
                "processors",
                "memory_limiter",
                &[
                    "check_interval",
                    "limit_mib",
                    "spike_limit_mib",
                    "limit_percentage",
                    "spike_limit_percentage",
                ],
            ),
            (
                "processors",
                "tail_sampling",
                &[
                    "decision_wait",
                    "num_traces",
                    "expected_new_traces_per_sec",
                    "decision_cache",
                    "policies",
                    "sample_on_first_match",
                    "decision_wait_after_root_received",
                    "drop_pending_traces_on_shutdown",
                    "maximum_trace_size_bytes",
                ],
            ),
            ("processors", "attributes", &["actions", "include", "exclude"]),
            ("processors", "resource", &["attributes"]),
            (
                "processors",
                "probabilistic_sampler",
                &[
                    "hash_seed",
                    "sampling_percentage",
                    "mode",
                    "sampling_precision",
                    "fail_closed",
                    "attribute_source",
                    "from_attribute",
                    "sampling_priority",
                ],
            ),
            (
                "processors",
                "redaction",
                &[
                    "allow_all_keys",
                    "allowed_keys",
                    "ignored_keys",
                    "ignored_key_patterns",
                    "blocked_key_patterns",
                    "blocked_values",
                    "allowed_values",
                    "hash_function",
                    "hmac_key",
                    "redact_all_types",
                    "summary",
                    "url_sanitizer",
                    "db_sanitizer",
                ],
            ),
            (
                "exporters",
                "otlp",
                &[
                    "endpoint",
                    "tls",
                    "headers",
                    "compression",
                    "compression_params",
                    "timeout",
                    "sending_queue",
                    "retry_on_failure",
                    "balancer_name",
                    "keepalive",
                    "auth",
                    "read_buffer_size",
                    "write_buffer_size",
                    "wait_for_ready",
                ],
            ),
            (
                "exporters",
                "otlphttp",
                &[
                    "endpoint",
                    "traces_endpoint",
                    "metrics_endpoint",
                    "logs_endpoint",
                    "profiles_endpoint",
                    "tls",
                    "headers",
                    "compression",
                    "compression_params",
                    "timeout",
                    "sending_queue",
                    "retry_on_failure",
                    "encoding",
                    "auth",
                    "read_buffer_size",
                    "write_buffer_size",
                    "max_idle_conns",
                    "max_idle_conns_per_host",
                    "max_conns_per_host",
                    "idle_conn_timeout",
                    "disable_keep_alives",
                    "http2_read_idle_timeout",
                    "http2_ping_timeout",
                    "proxy_url",
                    "cookies",
                ],
            ),
            (
                "exporters",
                "file",
                &[
                    "path",
                    "format",
                    "rotation",
                    "flush_interval",
                    "compression",
                    "append",
                    "group_by",
                    "encoding",
                ],
            ),
            (
                "exporters",
                "debug",
                &[
                    "verbosity",
                    "sampling_initial",
                    "sampling_thereafter",
                    "use_internal_logger",
                ],
            ),
            (
                "exporters",
                "loadbalancing",
                &[
                    "routing_key",
                    "protocol",
                    "resolver",
                    "timeout",
                    "sending_queue",
                    "retry_on_failure",
                ],
            ),
            (
                "extensions",
                "health_check",
                &["endpoint", "path", "check_collector_pipeline", "response_body", "tls"],
            ),
            (
                "extensions",
                "bearertokenauth",
                &["token", "tokens", "filename", "scheme", "header"],
            ),
            ("extensions", "basicauth", &["htpasswd", "client_auth"]),
            (
                "extensions",
                "file_storage",
                &[
                    "directory",
                    "timeout",
                    "fsync",
                    "compaction",
                    "create_directory",
                    "directory_permissions",
                ],
            ),
        ];
        let mut missing = Vec::new();
        for (section, name, keys) in GO {
            let c = super::components()
                .find(|c| c.section == *section && c.name == *name)
                .unwrap_or_else(|| panic!("{section}.{name} is not a component"));
            for k in *keys {
                if !c.settings.contains(k) && !c.ignored.contains(k) {
                    missing.push(format!("{section}.{name}.{k}"));
                }
            }
        }
        assert!(missing.is_empty(), "neither acted on nor warned: {missing:?}");
        // And what the table says is what a configuration gets: an ignored
        // key is a warning.
        let c = CollectorConfig::parse(
            "receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:4317}}}}\n\
             exporters: {otlphttp: {endpoint: http://x:4318, metrics_endpoint: http://x:4318/v1/metrics}}\n\
             service: {pipelines: {traces: {receivers: [otlp], exporters: [otlphttp]}}}\n",
        )
        .unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.starts_with("exporters.otlphttp.metrics_endpoint")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn go_settings_not_acted_on_are_each_named() {
        let yaml = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
        metrics_url_path: /v1/metrics
exporters:
  otlp:
    endpoint: tempo:4317
    tls: {server_name_override: tempo.internal, min_version: "1.2"}
    sending_queue: {blocking: true, sizer: bytes}
    retry_on_failure: {randomization_factor: 0.5}
service:
  telemetry:
    logs: {development: true, output_paths: [stderr]}
    metrics:
      level: detailed
      readers: [{periodic: {exporter: {otlp: {endpoint: x:4317}}}}]
    resource: {service.name: gateway}
  pipelines:
    traces: {receivers: [otlp], exporters: [otlp]}
"#;
        let config = CollectorConfig::parse_with_env(yaml, &|_| None).unwrap();
        for place in [
            "receivers.otlp.protocols.http.metrics_url_path",
            "exporters.otlp.sending_queue.sizer",
            "service.telemetry.logs.development",
            "service.telemetry.logs.output_paths",
            "service.telemetry.metrics.level",
            "service.telemetry.metrics.readers[0]",
            "service.telemetry.resource",
        ] {
            assert!(
                config.warnings.iter().any(|w| w.starts_with(place)),
                "{place} not in {:#?}",
                config.warnings
            );
        }
        // server_name_override acts (the exporter verifies against that name), as does blocking.
        assert!(!config.warnings.iter().any(|w| w.contains("server_name_override")));
        assert!(!config.warnings.iter().any(|w| w.contains("blocking")));
        // A TLS 1.3 minimum acts; a suite rustls does not offer is an error, not a warning.
        assert!(CollectorConfig::parse_with_env(&yaml.replace("\"1.2\"", "\"1.3\""), &|_| None).is_ok());
        let cbc = yaml.replace(
            "min_version: \"1.2\"",
            "min_version: \"1.2\", cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]",
        );
        let e = CollectorConfig::parse_with_env(&cbc, &|_| None).unwrap_err();
        assert_eq!(e.path(), "exporters.otlp.tls.cipher_suites");
        assert!(e.to_string().contains("not offered"), "{e}");
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
