//! `OTEL_*` environment variables of the OTLP exporter and the batch span
//! processor, read strictly (errors) or leniently (warnings and defaults).

use std::fmt;
use std::time::Duration;

pub use otel_propagation::ConfigError;

/// How to treat a bad environment value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnvMode {
    /// The specification's behaviour: log a warning, use the default.
    #[default]
    Lenient,
    /// Return a [`ConfigError`].
    Strict,
}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Reads variables from a source (the process environment, or a map in tests),
/// collecting the problems found in lenient mode.
pub struct EnvReader<'a> {
    lookup: Lookup<'a>,
    mode: EnvMode,
    warnings: Vec<ConfigError>,
}

impl fmt::Debug for EnvReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvReader")
            .field("mode", &self.mode)
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl<'a> EnvReader<'a> {
    /// Reads the process environment.
    pub fn process(mode: EnvMode) -> EnvReader<'static> {
        EnvReader {
            lookup: Box::new(|k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned())),
            mode,
            warnings: Vec::new(),
        }
    }

    /// Reads variables from `lookup`.
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'a, mode: EnvMode) -> Self {
        EnvReader {
            lookup: Box::new(lookup),
            mode,
            warnings: Vec::new(),
        }
    }

    /// The variable, `None` when unset or empty (the specification treats both alike).
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// The first set variable of `names`, with its name.
    pub fn first(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names.iter().find_map(|n| self.get(n).map(|v| (*n, v)))
    }

    /// Handles a bad value: an error in strict mode, else a warning recorded and logged.
    ///
    /// # Errors
    ///
    /// `error` itself, in strict mode.
    pub fn reject(&mut self, error: ConfigError) -> Result<(), ConfigError> {
        match self.mode {
            EnvMode::Strict => Err(error),
            EnvMode::Lenient => {
                tracing::warn!(target: "otel_export", "{error}; using the default");
                self.warnings.push(error);
                Ok(())
            }
        }
    }

    /// The problems found in lenient mode.
    pub fn warnings(&self) -> &[ConfigError] {
        &self.warnings
    }

    /// Takes the problems found in lenient mode.
    pub fn take_warnings(&mut self) -> Vec<ConfigError> {
        std::mem::take(&mut self.warnings)
    }

    /// A duration in milliseconds.
    ///
    /// # Errors
    ///
    /// In strict mode, when the value is not a non-negative integer.
    pub fn millis(&mut self, name: &'static str) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        match v.trim().parse::<u64>() {
            Ok(ms) => Ok(Some(Duration::from_millis(ms))),
            Err(_) => self
                .reject(ConfigError::new(name, v, "a whole number of milliseconds"))
                .map(|()| None),
        }
    }

    /// A positive integer.
    ///
    /// # Errors
    ///
    /// In strict mode, when the value is not an integer >= 1.
    pub fn positive(&mut self, name: &'static str) -> Result<Option<usize>, ConfigError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => self
                .reject(ConfigError::new(name, v, "a whole number >= 1"))
                .map(|()| None),
        }
    }

    /// A boolean: `true`/`false`, any case.
    ///
    /// # Errors
    ///
    /// In strict mode, for any other value.
    pub fn boolean(&mut self, name: &'static str) -> Result<Option<bool>, ConfigError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => self.reject(ConfigError::new(name, v, "true or false")).map(|()| None),
        }
    }
}

/// Parses an `OTEL_EXPORTER_OTLP_HEADERS` value: `key1=value1,key2=value2`,
/// values percent-decoded, whitespace around keys and values trimmed.
///
/// # Errors
///
/// The first member that is not `key=value` with a non-empty key.
pub fn parse_headers(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for member in value.split(',') {
        if member.trim().is_empty() {
            continue;
        }
        match member.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => out.push((
                k.trim().to_ascii_lowercase(),
                percent_encoding::percent_decode_str(v.trim())
                    .decode_utf8_lossy()
                    .into_owned(),
            )),
            _ => return Err(member.trim().to_owned()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn reader(vars: &[(&str, &str)], mode: EnvMode) -> EnvReader<'static> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EnvReader::from_fn(move |k| map.get(k).cloned(), mode)
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_headers("api-key=abc%20def , X-Tenant = acme,,").unwrap(),
            vec![("api-key".into(), "abc def".into()), ("x-tenant".into(), "acme".into())]
        );
        assert_eq!(parse_headers("novalue").unwrap_err(), "novalue");
        assert_eq!(parse_headers("=v").unwrap_err(), "=v");
    }

    #[test]
    fn strict_and_lenient() {
        let mut strict = reader(&[("T", "ten"), ("B", "yes"), ("N", "0")], EnvMode::Strict);
        let e = strict.millis("T").unwrap_err();
        assert_eq!(
            e.to_string(),
            "T=\"ten\" is not valid; accepted: a whole number of milliseconds"
        );
        assert!(strict.boolean("B").unwrap_err().to_string().contains("true or false"));
        assert!(strict.positive("N").is_err());

        let mut lenient = reader(&[("T", "ten"), ("B", "TRUE"), ("E", " ")], EnvMode::Lenient);
        assert_eq!(lenient.millis("T").unwrap(), None);
        assert_eq!(lenient.boolean("B").unwrap(), Some(true));
        assert_eq!(lenient.get("E"), None, "empty counts as unset");
        assert_eq!(lenient.warnings().len(), 1);
    }
}
