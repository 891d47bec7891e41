//! Declarative configuration: `OTEL_CONFIG_FILE` names a YAML file in the
//! OpenTelemetry configuration data model (`file_format` 1.x) that configures
//! the pipeline instead of the other `OTEL_*` variables.
//!
//! What this project reads of the schema:
//!
//! - `disabled`;
//! - `resource`: `attributes` (with `type`), `attributes_list`, `schema_url`,
//!   `detection/development` (host, process and service detection always run);
//! - `attribute_limits` and `tracer_provider.limits`;
//! - `propagator`: `composite` and `composite_list` (`tracecontext`,
//!   `baggage`, `b3`, `b3multi`); absent means no propagation, as the schema says;
//! - `tracer_provider.processors`: `batch` (`schedule_delay`,
//!   `export_timeout`, `max_queue_size`, `max_export_batch_size`) and `simple`,
//!   each with an `otlp_http` (`endpoint`, `headers`, `headers_list`,
//!   `compression`, `timeout`, `encoding`, `tls`), `otlp_grpc` (the same with
//!   `tls.insecure`, without `encoding`) or `console` exporter;
//! - `tracer_provider.sampler`: `always_on`, `always_off`,
//!   `trace_id_ratio_based`, `parent_based` (all five branches),
//!   `probability/development` (consistent probability, `ot=th`) and
//!   `composite/development` with the composable samplers (`always_on`,
//!   `always_off`, `probability`, `parent_threshold`, `rule_based` with
//!   `attribute_values`, `attribute_patterns`, `span_kinds` and `parent`).
//!
//! Environment variables are substituted in values as the data model
//! specifies (`${NAME}`, `${env:NAME}`, `${NAME:-default}`, `$$` for `$`; an
//! invalid reference is an error; a value is typed after substitution, and
//! never parsed as YAML structure). Keys the schema defines that this project
//! does not act on (`meter_provider`, `logger_provider`, other samplers or
//! exporters, ...) are named in a warning, or an error in strict mode; a value
//! of the wrong type or out of range is always an error naming its path.

use crate::layer::recorder::SamplerHints;
use opentelemetry::trace::SpanKind;
use opentelemetry::{Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{ShouldSample, SpanLimits};
use otel_export::{BatchConfig, Compression, ConfigError, EnvMode, OtlpExporterBuilder, Protocol};
use otel_propagation::BoxedPropagator;
use otel_sampling::{
    AlwaysOff, AlwaysOn, BoxedSampler, ComposableAlwaysOff, ComposableAlwaysOn, ComposableParentThreshold,
    ComposableProbability, ComposableRuleBased, ComposableSampler, CompositeSampler, ParentBased, ProbabilitySampler,
};
use serde_yaml_ng::Value as Yaml;
use std::sync::Arc;
use std::time::Duration;

pub use crate::env::OTEL_CONFIG_FILE;

/// An exporter of a configured processor.
pub(crate) enum ExporterSpec {
    Otlp(Box<OtlpExporterBuilder>),
    Console,
}

/// A configured span processor.
pub(crate) enum ProcessorSpec {
    Batch(BatchConfig, ExporterSpec),
    Simple(ExporterSpec),
}

/// What a configuration file says, ready for the builder.
pub(crate) struct FileConfig {
    pub(crate) disabled: bool,
    /// `attributes_list` first, then `attributes` (which win).
    pub(crate) resource_attributes: Vec<KeyValue>,
    pub(crate) schema_url: Option<String>,
    pub(crate) propagator: BoxedPropagator,
    pub(crate) processors: Vec<ProcessorSpec>,
    pub(crate) sampler: (Box<dyn ShouldSample>, SamplerHints),
    pub(crate) limits: SpanLimits,
    pub(crate) value_length_limit: Option<usize>,
    /// Keys read but not acted on (lenient mode).
    pub(crate) warnings: Vec<ConfigError>,
}

/// Reads the file at `path`.
pub(crate) fn load(
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    mode: EnvMode,
) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            OTEL_CONFIG_FILE,
            path,
            format!("the path of a readable YAML configuration file ({e})"),
        )
    })?;
    parse(&text, lookup, mode).map_err(|e| {
        let place = format!("{path}: {}", e.variable());
        e.at(place)
    })
}

/// Reads a configuration from YAML text.
pub(crate) fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    mode: EnvMode,
) -> Result<FileConfig, ConfigError> {
    let root: Yaml =
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::new("(file)", "", format!("valid YAML ({e})")))?;
    let mut cx = Reader {
        lookup,
        strict: mode == EnvMode::Strict,
        warnings: Vec::new(),
    };
    let root = Node {
        value: &root,
        path: String::new(),
    };
    if !root.value.is_mapping() {
        return Err(root.error("a mapping with file_format and the SDK's settings"));
    }
    let version = cx
        .string(&root.child("file_format"))?
        .ok_or_else(|| root.child("file_format").error("a file format version such as \"1.0\""))?;
    if !(version == "1" || version.starts_with("1.")) {
        return Err(root
            .child("file_format")
            .error_with(&version, "a 1.x file format (this project reads the 1.x schema)"));
    }
    // The top level allows further properties; these are the schema's own.
    cx.unsupported(
        &root,
        &[
            "log_level",
            "meter_provider",
            "logger_provider",
            "instrumentation/development",
            "distribution",
        ],
    )?;
    let disabled = cx.boolean(&root.child("disabled"))?.unwrap_or(false);

    let (resource_attributes, schema_url) = resource(&mut cx, &root.child("resource"))?;
    let general = root.child("attribute_limits");
    cx.known_keys(
        &general,
        &[
            "attribute_value_length_limit",
            "attribute_count_limit",
            "attribute_value_depth_limit",
        ],
    )?;
    let mut value_length_limit = cx.unsigned(&general.child("attribute_value_length_limit"))?;
    let mut attribute_count = cx.unsigned(&general.child("attribute_count_limit"))?;

    let propagator = propagator(&mut cx, &root.child("propagator"))?;

    let tp = root.child("tracer_provider");
    let mut limits = SpanLimits::default();
    let (processors, sampler) = if tp.is_absent() {
        // No tracer provider: spans are not recorded.
        (
            Vec::new(),
            (
                Box::new(AlwaysOff) as Box<dyn ShouldSample>,
                SamplerHints {
                    follows_local_parent: true,
                    reads_attributes: false,
                },
            ),
        )
    } else {
        cx.known_keys(&tp, &["processors", "limits", "sampler"])?;
        cx.unsupported(&tp, &["id_generator", "tracer_configurator/development"])?;
        let l = tp.child("limits");
        cx.known_keys(
            &l,
            &[
                "attribute_value_length_limit",
                "attribute_value_depth_limit",
                "attribute_count_limit",
                "event_count_limit",
                "link_count_limit",
                "event_attribute_count_limit",
                "link_attribute_count_limit",
            ],
        )?;
        if let Some(n) = cx.unsigned(&l.child("attribute_value_length_limit"))? {
            value_length_limit = Some(n);
        }
        if let Some(n) = cx.unsigned(&l.child("attribute_count_limit"))? {
            attribute_count = Some(n);
        }
        let u32_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        if let Some(n) = cx.unsigned(&l.child("event_count_limit"))? {
            limits.max_events_per_span = u32_of(n);
        }
        if let Some(n) = cx.unsigned(&l.child("link_count_limit"))? {
            limits.max_links_per_span = u32_of(n);
        }
        if let Some(n) = cx.unsigned(&l.child("event_attribute_count_limit"))? {
            limits.max_attributes_per_event = u32_of(n);
        }
        if let Some(n) = cx.unsigned(&l.child("link_attribute_count_limit"))? {
            limits.max_attributes_per_link = u32_of(n);
        }
        if let Some(n) = attribute_count {
            limits.max_attributes_per_span = u32_of(n);
        }
        let processors = processors(&mut cx, &tp.child("processors"))?;
        let sampler_node = tp.child("sampler");
        let sampler = if sampler_node.is_absent() {
            let default = ParentBased::new(AlwaysOn);
            (
                Box::new(default) as Box<dyn ShouldSample>,
                SamplerHints {
                    follows_local_parent: true,
                    reads_attributes: false,
                },
            )
        } else {
            let built = sampler(&mut cx, &sampler_node)?;
            (built.sampler, built.hints)
        };
        (processors, sampler)
    };
    if tp.is_absent()
        && let Some(n) = attribute_count
    {
        limits.max_attributes_per_span = u32::try_from(n).unwrap_or(u32::MAX);
    }
    Ok(FileConfig {
        disabled,
        resource_attributes,
        schema_url,
        propagator,
        processors,
        sampler,
        limits,
        value_length_limit: value_length_limit.filter(|&n| n > 0),
        warnings: cx.warnings,
    })
}

// --- the reader ---------------------------------------------------------------

/// A place in the file: its value (or `Null` when absent) and its path.
struct Node<'a> {
    value: &'a Yaml,
    path: String,
}

static NULL: Yaml = Yaml::Null;

impl<'a> Node<'a> {
    fn child(&self, key: &str) -> Node<'a> {
        let value = self.value.as_mapping().and_then(|m| m.get(key)).unwrap_or(&NULL);
        Node {
            value,
            path: if self.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.path)
            },
        }
    }

    fn items(&self) -> Vec<Node<'a>> {
        self.value.as_sequence().map_or_else(Vec::new, |s| {
            s.iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: format!("{}[{i}]", self.path),
                })
                .collect()
        })
    }

    fn is_absent(&self) -> bool {
        self.value.is_null()
    }

    /// The keys of a mapping (non-string keys shown as they are).
    fn keys(&self) -> Vec<String> {
        self.value.as_mapping().map_or_else(Vec::new, |m| {
            m.keys()
                .map(|k| match k {
                    Yaml::String(s) => s.clone(),
                    other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_owned(),
                })
                .collect()
        })
    }

    fn error(&self, accepted: &str) -> ConfigError {
        let shown = match self.value {
            Yaml::Null => String::new(),
            Yaml::String(s) => s.clone(),
            other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_owned(),
        };
        self.error_with(&shown, accepted)
    }

    fn error_with(&self, value: &str, accepted: &str) -> ConfigError {
        ConfigError::new(self.path.clone(), value, accepted)
    }
}

struct Reader<'l> {
    lookup: &'l dyn Fn(&str) -> Option<String>,
    strict: bool,
    warnings: Vec<ConfigError>,
}

/// A scalar after substitution: `None` when absent, null or empty.
enum Scalar {
    Text(String),
    Number(serde_yaml_ng::Number),
    Bool(bool),
}

impl Reader<'_> {
    /// A key this project does not act on: a warning, or an error in strict mode.
    fn not_acted_on(&mut self, node: &Node<'_>, why: &str) -> Result<(), ConfigError> {
        let e = ConfigError::new(node.path.clone(), "", why.to_owned());
        if self.strict {
            return Err(e);
        }
        self.warnings.push(e);
        Ok(())
    }

    /// Keys of the schema that this project reads no further.
    fn unsupported(&mut self, node: &Node<'_>, keys: &[&str]) -> Result<(), ConfigError> {
        for key in keys {
            let child = node.child(key);
            if node.value.as_mapping().is_some_and(|m| m.contains_key(*key)) {
                self.not_acted_on(&child, "a setting this project does not act on (ignored)")?;
            }
        }
        Ok(())
    }

    /// Every key of `node` is one of `known` (or left for `unsupported`).
    fn known_keys(&mut self, node: &Node<'_>, known: &[&str]) -> Result<(), ConfigError> {
        if node.is_absent() {
            return Ok(());
        }
        if !node.value.is_mapping() {
            return Err(node.error("a mapping"));
        }
        for key in node.keys() {
            if !known.contains(&key.as_str()) {
                let child = node.child(&key);
                let accepted = format!("one of: {}", known.join(", "));
                if self.strict {
                    return Err(child.error_with("", &format!("a known key ({accepted})")));
                }
                self.warnings
                    .push(child.error_with("", &format!("a known key ({accepted}); ignored")));
            }
        }
        Ok(())
    }

    fn scalar(&self, node: &Node<'_>) -> Result<Option<Scalar>, ConfigError> {
        Ok(match node.value {
            Yaml::Null => None,
            Yaml::Bool(b) => Some(Scalar::Bool(*b)),
            Yaml::Number(n) => Some(Scalar::Number(n.clone())),
            Yaml::String(s) => {
                let text = substitute(s, self.lookup).map_err(|bad| {
                    node.error_with(
                        s,
                        &format!("${{NAME}}, ${{env:NAME}} or ${{NAME:-default}} references ({bad:?} is not one)"),
                    )
                })?;
                (!text.is_empty()).then_some(Scalar::Text(text))
            }
            _ => return Err(node.error("a single value")),
        })
    }

    fn string(&self, node: &Node<'_>) -> Result<Option<String>, ConfigError> {
        Ok(match self.scalar(node)? {
            None => None,
            Some(Scalar::Text(t)) => Some(t),
            Some(Scalar::Number(n)) => Some(n.to_string()),
            Some(Scalar::Bool(b)) => Some(b.to_string()),
        })
    }

    fn boolean(&self, node: &Node<'_>) -> Result<Option<bool>, ConfigError> {
        match self.scalar(node)? {
            None => Ok(None),
            Some(Scalar::Bool(b)) => Ok(Some(b)),
            Some(Scalar::Text(t)) => match t.as_str() {
                "true" | "True" | "TRUE" => Ok(Some(true)),
                "false" | "False" | "FALSE" => Ok(Some(false)),
                _ => Err(node.error_with(&t, "true or false")),
            },
            Some(Scalar::Number(n)) => Err(node.error_with(&n.to_string(), "true or false")),
        }
    }

    fn number(&self, node: &Node<'_>) -> Result<Option<f64>, ConfigError> {
        match self.scalar(node)? {
            None => Ok(None),
            Some(Scalar::Number(n)) => Ok(n.as_f64()),
            Some(Scalar::Text(t)) => yaml_int(&t)
                .map(|i| i as f64)
                .or_else(|| t.parse::<f64>().ok().filter(|f| f.is_finite()))
                .map(Some)
                .ok_or_else(|| node.error_with(&t, "a number")),
            Some(Scalar::Bool(b)) => Err(node.error_with(&b.to_string(), "a number")),
        }
    }

    fn unsigned(&self, node: &Node<'_>) -> Result<Option<usize>, ConfigError> {
        let accepted = "a whole number >= 0";
        match self.scalar(node)? {
            None => Ok(None),
            Some(Scalar::Number(n)) => n
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| node.error_with(&n.to_string(), accepted)),
            Some(Scalar::Text(t)) => yaml_int(&t)
                .and_then(|v| usize::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| node.error_with(&t, accepted)),
            Some(Scalar::Bool(b)) => Err(node.error_with(&b.to_string(), accepted)),
        }
    }

    fn millis(&self, node: &Node<'_>) -> Result<Option<Duration>, ConfigError> {
        Ok(self.unsigned(node)?.map(|ms| Duration::from_millis(ms as u64)))
    }

    fn positive(&self, node: &Node<'_>) -> Result<Option<usize>, ConfigError> {
        match self.unsigned(node)? {
            Some(0) => Err(node.error_with("0", "a whole number > 0")),
            other => Ok(other),
        }
    }

    fn ratio(&self, node: &Node<'_>) -> Result<f64, ConfigError> {
        match self.number(node)? {
            None => Ok(1.0),
            Some(r) if (0.0..=1.0).contains(&r) => Ok(r),
            Some(r) => Err(node.error_with(&r.to_string(), "a ratio between 0 and 1")),
        }
    }

    /// The one key of a single-entry mapping (`{always_on: }`), with its node.
    fn one_of<'a>(&self, node: &Node<'a>, what: &str) -> Result<(String, Node<'a>), ConfigError> {
        let keys = node.keys();
        match keys.as_slice() {
            [one] => Ok((one.clone(), node.child(one))),
            _ => Err(node.error(&format!("a mapping with exactly one {what}"))),
        }
    }
}

/// An integer as the YAML 1.2 core schema reads one (decimal, `0x`, `0o`).
fn yaml_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if negative { -value } else { value })
}

/// Substitutes environment references in a scalar, as the data model says:
/// `$$` escapes are found first, left to right, and references are matched
/// only between them. `Err` carries an invalid reference.
pub(crate) fn substitute(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    loop {
        match rest.find("$$") {
            Some(at) => {
                substitute_segment(&rest[..at], lookup, &mut out)?;
                out.push('$');
                rest = &rest[at + 2..];
            }
            None => {
                substitute_segment(rest, lookup, &mut out)?;
                return Ok(out);
            }
        }
    }
}

fn substitute_segment(segment: &str, lookup: &dyn Fn(&str) -> Option<String>, out: &mut String) -> Result<(), String> {
    let mut rest = segment;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            // No closing brace: not a reference.
            out.push_str(&rest[start..]);
            return Ok(());
        };
        let inner = &after[..end];
        if inner.contains('\n') {
            out.push_str("${");
            rest = after;
            continue;
        }
        let body = inner.strip_prefix("env:").unwrap_or(inner);
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(format!("${{{inner}}}"));
        }
        match lookup(name).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(&v),
            None => out.push_str(default.unwrap_or("")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

// --- sections -------------------------------------------------------------------

fn resource(cx: &mut Reader<'_>, node: &Node<'_>) -> Result<(Vec<KeyValue>, Option<String>), ConfigError> {
    cx.known_keys(
        node,
        &["attributes", "attributes_list", "schema_url", "detection/development"],
    )?;
    let mut out = Vec::new();
    let list = node.child("attributes_list");
    if let Some(text) = cx.string(&list)? {
        let parsed = crate::resource::parse_resource_attributes(&text).map_err(|bad| {
            list.error_with(
                &text,
                &format!("comma-separated key=value pairs with percent-encoded values ({bad:?} is not one)"),
            )
        })?;
        out.extend(parsed);
    }
    let attributes = node.child("attributes");
    if !attributes.is_absent() && !attributes.value.is_sequence() {
        return Err(attributes.error("a list of {name, value, type}"));
    }
    for item in attributes.items() {
        cx.known_keys(&item, &["name", "value", "type"])?;
        let name = cx
            .string(&item.child("name"))?
            .ok_or_else(|| item.child("name").error("an attribute name"))?;
        if let Some(value) = attribute_value(cx, &item)? {
            out.push(KeyValue::new(name, value));
        }
    }
    let detection = node.child("detection/development");
    cx.known_keys(&detection, &["detectors", "attributes"])?;
    cx.unsupported(&detection, &["attributes"])?;
    for d in detection.child("detectors").items() {
        let (kind, at) = cx.one_of(&d, "detector")?;
        match kind.as_str() {
            // Always detected here.
            "host" | "process" | "service" => {}
            _ => cx.not_acted_on(&at, "a detector this project has (host, process, service); ignored")?,
        }
    }
    Ok((out, cx.string(&node.child("schema_url"))?))
}

fn need<T>(v: Option<T>, n: &Node<'_>, what: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| n.error(what))
}

fn attribute_value(cx: &Reader<'_>, item: &Node<'_>) -> Result<Option<Value>, ConfigError> {
    let value = item.child("value");
    let kind = cx.string(&item.child("type"))?.unwrap_or_else(|| "string".to_owned());
    let array = |value: &Node<'_>| -> Result<Vec<Yaml>, ConfigError> {
        match value.value.as_sequence() {
            Some(items) => Ok(items.clone()),
            None => Err(value.error(&format!("a list ({kind})"))),
        }
    };
    let items = |value: &Node<'_>| -> Result<Vec<(Yaml, String)>, ConfigError> {
        Ok(array(value)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| (v, format!("{}[{i}]", value.path)))
            .collect())
    };
    Ok(Some(match kind.as_str() {
        "string" => match cx.string(&value)? {
            Some(s) => Value::from(s),
            None => return Ok(None),
        },
        "bool" => match cx.boolean(&value)? {
            Some(b) => Value::from(b),
            None => return Ok(None),
        },
        "int" => match cx.number(&value)? {
            Some(f) if f.fract() == 0.0 => Value::from(f as i64),
            Some(f) => return Err(value.error_with(&f.to_string(), "a whole number")),
            None => return Ok(None),
        },
        "double" => match cx.number(&value)? {
            Some(f) => Value::from(f),
            None => return Ok(None),
        },
        "string_array" => {
            let mut out: Vec<StringValue> = Vec::new();
            for (v, path) in items(&value)? {
                let n = Node { value: &v, path };
                out.push(need(cx.string(&n)?, &n, "a string")?.into());
            }
            Value::Array(out.into())
        }
        "bool_array" => {
            let mut out = Vec::new();
            for (v, path) in items(&value)? {
                let n = Node { value: &v, path };
                out.push(need(cx.boolean(&n)?, &n, "true or false")?);
            }
            Value::Array(out.into())
        }
        "int_array" => {
            let mut out = Vec::new();
            for (v, path) in items(&value)? {
                let n = Node { value: &v, path };
                out.push(need(cx.number(&n)?.filter(|f| f.fract() == 0.0), &n, "a whole number")? as i64);
            }
            Value::Array(out.into())
        }
        "double_array" => {
            let mut out = Vec::new();
            for (v, path) in items(&value)? {
                let n = Node { value: &v, path };
                out.push(need(cx.number(&n)?, &n, "a number")?);
            }
            Value::Array(out.into())
        }
        other => {
            return Err(item.child("type").error_with(
                other,
                "string, bool, int, double, string_array, bool_array, int_array or double_array",
            ));
        }
    }))
}

fn propagator(cx: &mut Reader<'_>, node: &Node<'_>) -> Result<BoxedPropagator, ConfigError> {
    cx.known_keys(node, &["composite", "composite_list"])?;
    let mut names: Vec<String> = Vec::new();
    for item in node.child("composite").items() {
        let (name, _) = cx.one_of(&item, "propagator")?;
        names.push(name);
    }
    if let Some(list) = cx.string(&node.child("composite_list"))? {
        names.extend(list.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()));
    }
    let mut unique: Vec<String> = Vec::new();
    for n in names {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    if unique.is_empty() {
        // The schema: no propagator configured is a noop propagator.
        unique.push("none".to_owned());
    }
    let list = unique.join(",");
    otel_propagation::propagator_from_names(&list, true)
        .map(|p| Box::new(p) as BoxedPropagator)
        .map_err(|e| {
            node.error_with(
                &list,
                &format!(
                    "propagators among {} ({:?} is unknown)",
                    otel_propagation::KNOWN_PROPAGATORS.join(", "),
                    e.name()
                ),
            )
        })
}

fn processors(cx: &mut Reader<'_>, node: &Node<'_>) -> Result<Vec<ProcessorSpec>, ConfigError> {
    if !node.value.is_sequence() || node.items().is_empty() {
        return Err(node.error("a list of at least one processor (batch or simple)"));
    }
    let mut out = Vec::new();
    for item in node.items() {
        let (kind, at) = cx.one_of(&item, "processor")?;
        match kind.as_str() {
            "batch" => {
                cx.known_keys(
                    &at,
                    &[
                        "schedule_delay",
                        "export_timeout",
                        "max_queue_size",
                        "max_export_batch_size",
                        "exporter",
                    ],
                )?;
                let mut batch = BatchConfig::default();
                if let Some(d) = cx.millis(&at.child("schedule_delay"))? {
                    batch.schedule_delay = d;
                }
                if let Some(d) = cx.millis(&at.child("export_timeout"))? {
                    // 0: no limit.
                    batch.export_timeout = if d.is_zero() { Duration::from_secs(24 * 3600) } else { d };
                }
                if let Some(n) = cx.positive(&at.child("max_queue_size"))? {
                    batch.max_queue_size = n;
                }
                let size = at.child("max_export_batch_size");
                if let Some(n) = cx.positive(&size)? {
                    if n > batch.max_queue_size {
                        return Err(size.error_with(
                            &n.to_string(),
                            &format!("a batch size no larger than max_queue_size ({})", batch.max_queue_size),
                        ));
                    }
                    batch.max_export_batch_size = n;
                }
                batch.max_export_batch_size = batch.max_export_batch_size.min(batch.max_queue_size);
                out.push(ProcessorSpec::Batch(batch, exporter(cx, &at.child("exporter"))?));
            }
            "simple" => {
                cx.known_keys(&at, &["exporter"])?;
                out.push(ProcessorSpec::Simple(exporter(cx, &at.child("exporter"))?));
            }
            _ => return Err(at.error_with("", "batch or simple")),
        }
    }
    Ok(out)
}

fn exporter(cx: &mut Reader<'_>, node: &Node<'_>) -> Result<ExporterSpec, ConfigError> {
    let (kind, at) = cx.one_of(node, "exporter (otlp_http, otlp_grpc or console)")?;
    let grpc = match kind.as_str() {
        "console" => return Ok(ExporterSpec::Console),
        "otlp_http" => false,
        "otlp_grpc" => true,
        _ => return Err(at.error_with("", "otlp_http, otlp_grpc or console")),
    };
    let mut keys = vec!["endpoint", "tls", "headers", "headers_list", "compression", "timeout"];
    if !grpc {
        keys.push("encoding");
    }
    cx.known_keys(&at, &keys)?;
    cx.unsupported(&at, &["max_request_size", "max_response_size"])?;
    let mut b = OtlpExporterBuilder::default();
    let protocol = if grpc {
        Protocol::Grpc
    } else {
        let encoding = at.child("encoding");
        match cx.string(&encoding)?.as_deref() {
            None | Some("protobuf") => Protocol::HttpProtobuf,
            Some("json") => Protocol::HttpJson,
            Some(other) => return Err(encoding.error_with(other, "protobuf or json")),
        }
    };
    b = b.with_protocol(protocol);
    if let Some(endpoint) = cx.string(&at.child("endpoint"))? {
        // The schema's endpoint is the full URL (http: with /v1/traces).
        b = b.with_endpoint(endpoint);
    }
    let list = at.child("headers_list");
    if let Some(text) = cx.string(&list)? {
        let headers = otel_export::config::parse_headers(&text)
            .map_err(|bad| list.error_with(&text, &format!("key=value pairs ({bad:?} is not one)")))?;
        for (k, v) in headers {
            b = b.with_header(k, v);
        }
    }
    for h in at.child("headers").items() {
        cx.known_keys(&h, &["name", "value"])?;
        let name = cx
            .string(&h.child("name"))?
            .ok_or_else(|| h.child("name").error("a header name"))?;
        // A null value leaves the header out.
        if let Some(value) = cx.string(&h.child("value"))? {
            b = b.with_header(name.to_ascii_lowercase(), value);
        }
    }
    let compression = at.child("compression");
    if let Some(c) = cx.string(&compression)? {
        b = b.with_compression(
            Compression::parse(&c).ok_or_else(|| compression.error_with(&c, "gzip, zstd, snappy or none"))?,
        );
    }
    if let Some(t) = cx.millis(&at.child("timeout"))? {
        b = b.with_timeout(t);
    }
    let tls = at.child("tls");
    let mut tls_keys = vec!["ca_file", "key_file", "cert_file"];
    if grpc {
        tls_keys.push("insecure");
    }
    cx.known_keys(&tls, &tls_keys)?;
    let read = |cx: &Reader<'_>, key: &str| -> Result<Option<Vec<u8>>, ConfigError> {
        let n = tls.child(key);
        match cx.string(&n)? {
            None => Ok(None),
            Some(path) => std::fs::read(&path)
                .map(Some)
                .map_err(|e| n.error_with(&path, &format!("a readable PEM file ({e})"))),
        }
    };
    if let Some(pem) = read(cx, "ca_file")? {
        b = b.with_ca_certificate_pem(pem);
    }
    match (read(cx, "cert_file")?, read(cx, "key_file")?) {
        (Some(cert), Some(key)) => b = b.with_client_identity_pem(cert, key),
        (None, None) => {}
        _ => return Err(tls.error_with("", "both cert_file and key_file for a client certificate, or neither")),
    }
    if grpc && let Some(insecure) = cx.boolean(&tls.child("insecure"))? {
        b = b.with_insecure(insecure);
    }
    Ok(ExporterSpec::Otlp(Box::new(b)))
}

// --- samplers -------------------------------------------------------------------

struct BuiltSampler {
    sampler: Box<dyn ShouldSample>,
    hints: SamplerHints,
}

fn sampler(cx: &mut Reader<'_>, node: &Node<'_>) -> Result<BuiltSampler, ConfigError> {
    let (kind, at) = cx.one_of(node, "sampler")?;
    let plain = |sampler: Box<dyn ShouldSample>| BuiltSampler {
        sampler,
        hints: SamplerHints {
            follows_local_parent: false,
            reads_attributes: false,
        },
    };
    Ok(match kind.as_str() {
        "always_on" => plain(Box::new(AlwaysOn)),
        "always_off" => plain(Box::new(AlwaysOff)),
        "trace_id_ratio_based" | "probability/development" => {
            cx.known_keys(&at, &["ratio"])?;
            let ratio_node = at.child("ratio");
            let ratio = cx.ratio(&ratio_node)?;
            let built = if kind == "trace_id_ratio_based" {
                // The classic ratio sampler, as the SDKs compute it.
                ProbabilitySampler::sdk_compatible(ratio)
            } else {
                ProbabilitySampler::new(ratio)
            };
            plain(Box::new(
                built.map_err(|e| ratio_node.error_with(&ratio.to_string(), &e.to_string()))?,
            ))
        }
        "parent_based" => {
            cx.known_keys(
                &at,
                &[
                    "root",
                    "remote_parent_sampled",
                    "remote_parent_not_sampled",
                    "local_parent_sampled",
                    "local_parent_not_sampled",
                ],
            )?;
            let root_node = at.child("root");
            let root = if root_node.is_absent() {
                plain(Box::new(AlwaysOn))
            } else {
                sampler(cx, &root_node)?
            };
            let mut reads_attributes = root.hints.reads_attributes;
            let mut pb = ParentBased::new(BoxedSampler::from_box(root.sampler));
            type SetBranch = fn(ParentBased, BoxedSampler) -> ParentBased;
            let branches: [(&str, SetBranch); 4] = [
                ("remote_parent_sampled", |p, s| p.with_remote_parent_sampled(s)),
                ("remote_parent_not_sampled", |p, s| p.with_remote_parent_not_sampled(s)),
                ("local_parent_sampled", |p, s| p.with_local_parent_sampled(s)),
                ("local_parent_not_sampled", |p, s| p.with_local_parent_not_sampled(s)),
            ];
            for (key, set) in branches {
                let n = at.child(key);
                if n.is_absent() {
                    continue;
                }
                let b = sampler(cx, &n)?;
                reads_attributes |= b.hints.reads_attributes;
                pb = set(pb, BoxedSampler::from_box(b.sampler));
            }
            let follows = pb.follows_local_parents();
            BuiltSampler {
                sampler: Box::new(pb),
                hints: SamplerHints {
                    follows_local_parent: follows,
                    reads_attributes,
                },
            }
        }
        "composite/development" => {
            let (composable, reads_attributes) = composable(cx, &at)?;
            BuiltSampler {
                sampler: Box::new(CompositeSampler::new(composable)),
                hints: SamplerHints {
                    follows_local_parent: false,
                    reads_attributes,
                },
            }
        }
        "always_record" | "jaeger_remote/development" => {
            return Err(at.error_with(
                "",
                "a sampler this project has (always_record and jaeger_remote are not)",
            ));
        }
        _ => {
            return Err(at.error_with(
                "",
                "always_on, always_off, trace_id_ratio_based, parent_based, probability/development or composite/development",
            ));
        }
    })
}

/// A composable sampler, and whether it reads attributes.
fn composable(cx: &mut Reader<'_>, node: &Node<'_>) -> Result<(Arc<dyn ComposableSampler>, bool), ConfigError> {
    let (kind, at) = cx.one_of(node, "composable sampler")?;
    Ok(match kind.as_str() {
        "always_on" => (Arc::new(ComposableAlwaysOn), false),
        "always_off" => (Arc::new(ComposableAlwaysOff), false),
        "probability" => {
            cx.known_keys(&at, &["ratio"])?;
            let n = at.child("ratio");
            let ratio = cx.ratio(&n)?;
            let p = ComposableProbability::new(ratio).map_err(|e| n.error_with(&ratio.to_string(), &e.to_string()))?;
            (Arc::new(p), false)
        }
        "parent_threshold" => {
            cx.known_keys(&at, &["root"])?;
            let root = at.child("root");
            if root.is_absent() {
                return Err(root.error("a composable sampler for spans without a parent"));
            }
            let (root, reads) = composable(cx, &root)?;
            (Arc::new(ComposableParentThreshold::new(root)), reads)
        }
        "rule_based" => {
            cx.known_keys(&at, &["rules"])?;
            let mut rb = ComposableRuleBased::new();
            for rule in at.child("rules").items() {
                cx.known_keys(
                    &rule,
                    &[
                        "attribute_values",
                        "attribute_patterns",
                        "span_kinds",
                        "parent",
                        "sampler",
                    ],
                )?;
                let predicate = rule_predicate(cx, &rule)?;
                let s = rule.child("sampler");
                if s.is_absent() {
                    return Err(s.error("the composable sampler of the rule"));
                }
                let (sampler, _) = composable(cx, &s)?;
                rb = rb.rule(move |p| predicate.matches(p), sampler);
            }
            (Arc::new(rb), true)
        }
        _ => return Err(at.error_with("", "always_on, always_off, probability, parent_threshold or rule_based")),
    })
}

#[derive(Default)]
struct RulePredicate {
    values: Option<(Key, Vec<String>)>,
    patterns: Option<(Key, Vec<String>, Vec<String>)>,
    kinds: Option<Vec<SpanKind>>,
    /// none, remote, local
    parents: Option<Vec<&'static str>>,
}

impl RulePredicate {
    fn matches(&self, p: &otel_sampling::composable::IntentParams<'_>) -> bool {
        let attribute = |key: &Key| p.attributes.iter().find(|kv| &kv.key == key).map(|kv| &kv.value);
        let texts = |v: &Value| -> Vec<String> {
            match v {
                Value::Array(a) => match a {
                    opentelemetry::Array::Bool(x) => x.iter().map(ToString::to_string).collect(),
                    opentelemetry::Array::I64(x) => x.iter().map(ToString::to_string).collect(),
                    opentelemetry::Array::F64(x) => x.iter().map(ToString::to_string).collect(),
                    opentelemetry::Array::String(x) => x.iter().map(|s| s.as_str().to_owned()).collect(),
                    _ => Vec::new(),
                },
                other => vec![other.as_str().into_owned()],
            }
        };
        if let Some((key, values)) = &self.values {
            match attribute(key) {
                Some(v) if texts(v).iter().any(|t| values.contains(t)) => {}
                _ => return false,
            }
        }
        if let Some((key, included, excluded)) = &self.patterns {
            let Some(v) = attribute(key) else {
                return false;
            };
            let ok = texts(v).iter().any(|t| {
                (included.is_empty() || included.iter().any(|p| wildcard(p, t)))
                    && !excluded.iter().any(|p| wildcard(p, t))
            });
            if !ok {
                return false;
            }
        }
        if let Some(kinds) = &self.kinds
            && !kinds.contains(p.kind)
        {
            return false;
        }
        if let Some(parents) = &self.parents {
            let parent = match p.parent {
                None => "none",
                Some(s) if s.remote => "remote",
                Some(_) => "local",
            };
            if !parents.contains(&parent) {
                return false;
            }
        }
        true
    }
}

fn rule_predicate(cx: &mut Reader<'_>, rule: &Node<'_>) -> Result<RulePredicate, ConfigError> {
    let mut p = RulePredicate::default();
    let strings = |cx: &Reader<'_>, n: &Node<'_>| -> Result<Vec<String>, ConfigError> {
        if !n.value.is_sequence() {
            return Err(n.error("a list of strings"));
        }
        n.items()
            .iter()
            .map(|i| cx.string(i)?.ok_or_else(|| i.error("a string")))
            .collect()
    };
    let values = rule.child("attribute_values");
    if !values.is_absent() {
        cx.known_keys(&values, &["key", "values"])?;
        let key = cx
            .string(&values.child("key"))?
            .ok_or_else(|| values.child("key").error("an attribute key"))?;
        p.values = Some((Key::new(key), strings(cx, &values.child("values"))?));
    }
    let patterns = rule.child("attribute_patterns");
    if !patterns.is_absent() {
        cx.known_keys(&patterns, &["key", "included", "excluded"])?;
        let key = cx
            .string(&patterns.child("key"))?
            .ok_or_else(|| patterns.child("key").error("an attribute key"))?;
        let list = |cx: &Reader<'_>, name: &str| {
            let n = patterns.child(name);
            if n.is_absent() { Ok(Vec::new()) } else { strings(cx, &n) }
        };
        p.patterns = Some((Key::new(key), list(cx, "included")?, list(cx, "excluded")?));
    }
    let kinds = rule.child("span_kinds");
    if !kinds.is_absent() {
        let mut out = Vec::new();
        for k in kinds.items() {
            out.push(match cx.string(&k)?.as_deref() {
                Some("internal") => SpanKind::Internal,
                Some("server") => SpanKind::Server,
                Some("client") => SpanKind::Client,
                Some("producer") => SpanKind::Producer,
                Some("consumer") => SpanKind::Consumer,
                _ => return Err(k.error("internal, server, client, producer or consumer")),
            });
        }
        p.kinds = Some(out);
    }
    let parents = rule.child("parent");
    if !parents.is_absent() {
        let mut out = Vec::new();
        for k in parents.items() {
            out.push(match cx.string(&k)?.as_deref() {
                Some("none") => "none",
                Some("remote") => "remote",
                Some("local") => "local",
                _ => return Err(k.error("none, remote or local")),
            });
        }
        p.parents = Some(out);
    }
    Ok(p)
}

/// `?` matches one character, `*` any run (none included); the rest exactly.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn substitution_follows_the_data_model_table() {
        let lookup = env(&[
            ("STRING_VALUE", "value"),
            ("BOOL_VALUE", "true"),
            ("REPLACE_ME", "${DO_NOT_REPLACE_ME}"),
            ("DO_NOT_REPLACE_ME", "Never use this value"),
            ("VALUE_WITH_ESCAPE", "value$$"),
            ("INVALID_MAP_VALUE", "value\nkey:value"),
        ]);
        let cases = [
            ("${STRING_VALUE}", "value"),
            ("${env:STRING_VALUE}", "value"),
            ("${INVALID_MAP_VALUE}", "value\nkey:value"),
            ("foo ${STRING_VALUE} ${BOOL_VALUE}", "foo value true"),
            ("${UNDEFINED_KEY}", ""),
            ("${UNDEFINED_KEY:-fallback}", "fallback"),
            ("${REPLACE_ME}", "${DO_NOT_REPLACE_ME}"),
            ("${UNDEFINED_KEY:-${STRING_VALUE}}", "${STRING_VALUE}"),
            ("$${STRING_VALUE}", "${STRING_VALUE}"),
            ("$$${STRING_VALUE}", "$value"),
            ("$$$${STRING_VALUE}", "$${STRING_VALUE}"),
            ("$${STRING_VALUE:-fallback}", "${STRING_VALUE:-fallback}"),
            ("$${STRING_VALUE:-${STRING_VALUE}}", "${STRING_VALUE:-value}"),
            (
                "${UNDEFINED_KEY:-$${UNDEFINED_KEY}}",
                "${UNDEFINED_KEY:-${UNDEFINED_KEY}}",
            ),
            ("${VALUE_WITH_ESCAPE}", "value$$"),
            ("a $$ b", "a $ b"),
            ("a $ b", "a $ b"),
            ("${unclosed", "${unclosed"),
        ];
        for (input, expected) in cases {
            assert_eq!(substitute(input, &lookup).as_deref(), Ok(expected), "{input}");
        }
        for bad in ["${STRING_VALUE:?error}", "${1API_KEY}", "${API_$KEY}", "${}"] {
            assert!(substitute(bad, &lookup).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_typed_after_substitution() {
        let lookup = env(&[("RATIO", "0.25"), ("OFF", "true"), ("SIZE", "0x10")]);
        let yaml = r#"
file_format: "1.0"
disabled: ${OFF:-false}
tracer_provider:
  processors:
    - batch:
        max_queue_size: ${SIZE}
        exporter: {console: }
  sampler:
    trace_id_ratio_based: {ratio: "${RATIO}"}
"#;
        let c = parse(yaml, &lookup, EnvMode::Strict).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.disabled);
        match &c.processors[0] {
            ProcessorSpec::Batch(b, ExporterSpec::Console) => assert_eq!(b.max_queue_size, 16),
            _ => panic!("a batch processor with a console exporter"),
        }
    }

    #[test]
    fn bad_files_name_the_path() {
        let lookup = env(&[]);
        let cases = [
            ("file_format: \"2.0\"\n", "file_format"),
            ("disabled: true\n", "file_format"),
            (
                "file_format: \"1.0\"\ntracer_provider:\n  processors:\n    - batch: {exporter: {zipkin: {}}}\n",
                "tracer_provider.processors[0].batch.exporter.zipkin",
            ),
            (
                "file_format: \"1.0\"\ntracer_provider:\n  processors: [{simple: {exporter: {console: }}}]\n  sampler: {trace_id_ratio_based: {ratio: 2}}\n",
                "tracer_provider.sampler.trace_id_ratio_based.ratio",
            ),
            (
                "file_format: \"1.0\"\ntracer_provider:\n  processors: [{batch: {max_queue_size: 10, max_export_batch_size: 20, exporter: {console: }}}]\n",
                "tracer_provider.processors[0].batch.max_export_batch_size",
            ),
            (
                "file_format: \"1.0\"\nresource:\n  attributes: [{name: a, value: x, type: int}]\n",
                "resource.attributes[0].value",
            ),
            ("file_format: \"1.0\"\ndisabled: ${BAD:?x}\n", "disabled"),
            (
                "file_format: \"1.0\"\npropagator: {composite: [{jaeger: }]}\n",
                "propagator",
            ),
            (
                "file_format: \"1.0\"\ntracer_provider: {}\n",
                "tracer_provider.processors",
            ),
        ];
        for (yaml, path) in cases {
            let e = parse(yaml, &lookup, EnvMode::Lenient)
                .err()
                .unwrap_or_else(|| panic!("{yaml} parsed"));
            assert_eq!(e.variable(), path, "{yaml}: {e}");
        }
    }

    #[test]
    fn unsupported_keys_warn_or_fail_by_mode() {
        let yaml = "file_format: \"1.0\"\nmeter_provider: {readers: []}\ntracer_provider:\n  processors: [{simple: {exporter: {console: }}}]\n  colour: blue\n";
        let lookup = env(&[]);
        let lenient = parse(yaml, &lookup, EnvMode::Lenient).unwrap_or_else(|e| panic!("{e}"));
        let paths: Vec<&str> = lenient.warnings.iter().map(ConfigError::variable).collect();
        assert_eq!(paths, ["meter_provider", "tracer_provider.colour"]);
        let strict = parse(yaml, &lookup, EnvMode::Strict)
            .err()
            .unwrap_or_else(|| panic!("strict parsed"));
        assert_eq!(strict.variable(), "meter_provider");
    }

    #[test]
    fn propagators_as_listed_and_none_when_absent() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
        let cx = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        let inject = |yaml: &str| {
            let c = parse(yaml, &env(&[]), EnvMode::Strict).unwrap_or_else(|e| panic!("{e}"));
            let mut headers = HashMap::new();
            c.propagator.inject_context(&cx, &mut headers);
            let mut keys: Vec<String> = headers.into_keys().collect();
            keys.sort();
            keys
        };
        assert_eq!(
            inject(
                "file_format: \"1.0\"\npropagator:\n  composite: [{tracecontext: }]\n  composite_list: tracecontext,b3multi\n"
            ),
            ["traceparent", "x-b3-sampled", "x-b3-spanid", "x-b3-traceid"]
        );
        assert!(
            inject("file_format: \"1.0\"\n").is_empty(),
            "no propagator section: no propagation"
        );
    }

    #[test]
    fn wildcards() {
        for (p, t, m) in [
            ("*", "", true),
            ("/health*", "/healthz", true),
            ("/api/?/x", "/api/7/x", true),
            ("/api/?/x", "/api/77/x", false),
            ("4*", "404", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
        ] {
            assert_eq!(wildcard(p, t), m, "{p} {t}");
        }
    }

    proptest! {
        #[test]
        fn substitution_never_panics_and_escapes_round_trip(input in "[a-z${}:$\\-_ ]{0,40}") {
            let lookup = |_: &str| Some("v".to_owned());
            let _ = substitute(&input, &lookup);
            // Doubling every `$` escapes everything: the input comes back.
            let escaped = input.replace('$', "$$");
            prop_assert_eq!(substitute(&escaped, &lookup), Ok(input.clone()));
        }

        #[test]
        fn patterns_without_wildcards_match_exactly(text in "\\PC{0,20}", other in "\\PC{0,20}") {
            prop_assume!(!text.contains(['*', '?']));
            prop_assert!(wildcard("*", &text));
            prop_assert!(wildcard(&text, &text));
            prop_assert_eq!(wildcard(&text, &other), text == other);
        }
    }
}
