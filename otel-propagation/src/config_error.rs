//! The error every crate of this family returns for a setting it cannot use.

use std::fmt;

/// A configuration value that cannot be used: names the environment
/// variable or the configuration path it came from (`OTEL_TRACES_SAMPLER`,
/// `tracer_provider.sampler.parent_based.root`), the value, and what is
/// accepted.
///
/// `otel-export`, `otel-sampling` and `otel-core` all return this type, so a
/// caller reads [`variable`](Self::variable), [`value`](Self::value) and
/// [`accepted`](Self::accepted) instead of parsing the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    variable: String,
    value: String,
    accepted: String,
}

impl ConfigError {
    /// An error for `variable` (or setting), which had `value`; `accepted`
    /// says what would do.
    pub fn new(variable: impl Into<String>, value: impl Into<String>, accepted: impl Into<String>) -> Self {
        ConfigError {
            variable: variable.into(),
            value: value.into(),
            accepted: accepted.into(),
        }
    }

    /// The variable or setting that was wrong.
    pub fn variable(&self) -> &str {
        &self.variable
    }

    /// The rejected value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What would have been accepted.
    pub fn accepted(&self) -> &str {
        &self.accepted
    }

    /// The same error, named by the setting `place` instead (a value read
    /// from a configuration file rather than the environment).
    #[must_use]
    pub fn at(mut self, place: impl Into<String>) -> Self {
        self.variable = place.into();
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not valid; accepted: {}",
            self.variable, self.value, self.accepted
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::ConfigError;

    #[test]
    fn names_the_variable_the_value_and_what_is_accepted() {
        let e = ConfigError::new("OTEL_BSP_MAX_QUEUE_SIZE", "lots", "a whole number above 0");
        assert_eq!(
            e.to_string(),
            "OTEL_BSP_MAX_QUEUE_SIZE=\"lots\" is not valid; accepted: a whole number above 0"
        );
        let e = e.at("tracer_provider.processors[0].batch.max_queue_size");
        assert_eq!(e.variable(), "tracer_provider.processors[0].batch.max_queue_size");
        assert_eq!((e.value(), e.accepted()), ("lots", "a whole number above 0"));
    }
}
