//! The `tail_sampling` block of an OpenTelemetry Collector configuration,
//! with the Go processor's keys, parsed with errors that name the policy and
//! the field.

use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// A configuration error: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    message: String,
}

impl ConfigError {
    /// An error at `path` (e.g. `tail_sampling.policies[2].latency.threshold_ms`).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Where in the configuration.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Parses a Go duration (`10s`, `500ms`, `1m30s`, `1.5h`, `250us`, `0`).
///
/// # Errors
///
/// When the text is not a Go duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("an empty duration".to_owned());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("{text:?} is not a duration like 10s, 500ms or 1m30s"));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("{text:?} has a bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("{text:?} needs a unit (ns, us, ms, s, m, h)")),
            other => return Err(format!("{text:?} has an unknown unit {other:?} (ns, us, ms, s, m, h)")),
        };
        total += number * unit;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// A configuration value with its path, for readable errors.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub(crate) value: &'a Value,
    pub(crate) path: &'a str,
}

impl<'a> At<'a> {
    pub(crate) fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.path, message)
    }

    pub(crate) fn map(&self) -> Result<&'a serde_json::Map<String, Value>, ConfigError> {
        match self.value {
            Value::Object(m) => Ok(m),
            Value::Null => Err(self.err("must be a mapping, got nothing")),
            other => Err(self.err(format!("must be a mapping, got {other}"))),
        }
    }

    /// Fails on keys outside `allowed`, naming them and the accepted keys.
    pub(crate) fn only_keys(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        if let Value::Object(m) = self.value
            && let Some(bad) = m.keys().find(|k| !allowed.contains(&k.as_str()))
        {
            return Err(self.err(format!("unknown key {bad:?}; accepted: {}", allowed.join(", "))));
        }
        Ok(())
    }
}

pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn get<'a>(at: At<'a>, key: &str) -> Option<&'a Value> {
    match at.value {
        Value::Object(m) => m.get(key).filter(|v| !v.is_null()),
        _ => None,
    }
}

/// A number written as text, with YAML 1.1 digit separators (`100_000`) removed.
fn number_text(s: &str) -> String {
    let t = s.trim();
    if t.contains('_')
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '_' | '.' | '-' | '+'))
    {
        t.replace('_', "")
    } else {
        t.to_owned()
    }
}

pub(crate) fn get_u64(at: At<'_>, key: &str) -> Result<Option<u64>, ConfigError> {
    match get(at, key) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| ConfigError::new(child(at.path, key), format!("must be a whole number >= 0, got {n}"))),
        Some(Value::String(s)) => number_text(s)
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::new(child(at.path, key), format!("must be a whole number >= 0, got {s:?}"))),
        Some(other) => Err(ConfigError::new(
            child(at.path, key),
            format!("must be a whole number >= 0, got {other}"),
        )),
    }
}

pub(crate) fn get_i64(at: At<'_>, key: &str) -> Result<Option<i64>, ConfigError> {
    match get(at, key) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| ConfigError::new(child(at.path, key), format!("must be a whole number, got {n}"))),
        Some(Value::String(s)) => number_text(s)
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::new(child(at.path, key), format!("must be a whole number, got {s:?}"))),
        Some(other) => Err(ConfigError::new(
            child(at.path, key),
            format!("must be a whole number, got {other}"),
        )),
    }
}

pub(crate) fn get_f64(at: At<'_>, key: &str) -> Result<Option<f64>, ConfigError> {
    match get(at, key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => number_text(s)
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| ConfigError::new(child(at.path, key), format!("must be a number, got {s:?}"))),
        Some(other) => Err(ConfigError::new(
            child(at.path, key),
            format!("must be a number, got {other}"),
        )),
    }
}

pub(crate) fn get_bool(at: At<'_>, key: &str) -> Result<Option<bool>, ConfigError> {
    match get(at, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ConfigError::new(
            child(at.path, key),
            format!("must be true or false, got {other}"),
        )),
    }
}

pub(crate) fn get_str<'a>(at: At<'a>, key: &str) -> Result<Option<&'a str>, ConfigError> {
    match get(at, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ConfigError::new(
            child(at.path, key),
            format!("must be a string, got {other}"),
        )),
    }
}

pub(crate) fn get_duration(at: At<'_>, key: &str) -> Result<Option<Duration>, ConfigError> {
    match get(at, key) {
        None => Ok(None),
        Some(Value::String(s)) => parse_duration(s)
            .map(Some)
            .map_err(|e| ConfigError::new(child(at.path, key), e)),
        // The Go collector would read a bare number as nanoseconds, never
        // what was meant: ask for a unit instead.
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(Duration::ZERO)),
        Some(Value::Number(n)) => Err(ConfigError::new(
            child(at.path, key),
            format!("{n} needs a unit (ns, us, ms, s, m, h), e.g. {n}s"),
        )),
        Some(other) => Err(ConfigError::new(
            child(at.path, key),
            format!("must be a duration like 10s, got {other}"),
        )),
    }
}

pub(crate) fn get_strings(at: At<'_>, key: &str) -> Result<Vec<String>, ConfigError> {
    match get(at, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                other => Err(ConfigError::new(
                    format!("{}[{i}]", child(at.path, key)),
                    format!("must be a string, got {other}"),
                )),
            })
            .collect(),
        Some(other) => Err(ConfigError::new(
            child(at.path, key),
            format!("must be a list, got {other}"),
        )),
    }
}

/// Parses YAML (or JSON, a subset) into a value tree.
///
/// # Errors
///
/// When the text is not YAML.
pub fn parse_yaml(text: &str) -> Result<Value, ConfigError> {
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| ConfigError::new("(yaml)", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("10 sec").is_err());
        assert!(parse_duration("").is_err());
    }

    proptest! {
        #[test]
        fn durations_never_panic(s in ".{0,12}") {
            let _ = parse_duration(&s);
        }
    }
}
