//! Propagators by the names `OTEL_PROPAGATORS` uses.

use crate::{
    B3Encoding, B3Propagator, BaggagePropagator, BoxedPropagator, CompositePropagator, TraceContextPropagator,
};
use std::fmt;

/// The names [`propagator_from_names`] accepts.
pub const KNOWN_PROPAGATORS: &[&str] = &["tracecontext", "baggage", "b3", "b3multi", "none"];

/// A propagator name that is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagatorNameError {
    name: String,
}

impl PropagatorNameError {
    /// The name that was not recognised.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for PropagatorNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown propagator {:?}; accepted: {}",
            self.name,
            KNOWN_PROPAGATORS.join(", ")
        )
    }
}

impl std::error::Error for PropagatorNameError {}

/// Builds the composite for a comma-separated list of propagator names, in the
/// given order, as `OTEL_PROPAGATORS` specifies: `tracecontext`, `baggage`,
/// `b3` (single header), `b3multi`, `none`. Names are trimmed and compared
/// case-insensitively; duplicates are used once; `none` anywhere means none.
///
/// `tracecontext` is built with
/// [`TraceContextPropagator::with_random_flag_for_new_traces`] set to
/// `random_flag_for_new_traces`.
///
/// # Errors
///
/// The first unknown name, with the accepted ones in the message.
pub fn propagator_from_names(
    list: &str,
    random_flag_for_new_traces: bool,
) -> Result<CompositePropagator, PropagatorNameError> {
    let mut seen: Vec<String> = Vec::new();
    for raw in list.split(',') {
        let name = raw.trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        if !KNOWN_PROPAGATORS.contains(&name.as_str()) {
            return Err(PropagatorNameError {
                name: raw.trim().to_owned(),
            });
        }
        if !seen.contains(&name) {
            seen.push(name);
        }
    }
    if seen.iter().any(|n| n == "none") {
        return Ok(CompositePropagator::new(Vec::new()));
    }
    let propagators = seen
        .iter()
        .map(|name| -> BoxedPropagator {
            match name.as_str() {
                "tracecontext" => {
                    Box::new(TraceContextPropagator::new().with_random_flag_for_new_traces(random_flag_for_new_traces))
                }
                "baggage" => Box::new(BaggagePropagator::new()),
                "b3" => Box::new(B3Propagator::with_encoding(B3Encoding::SingleHeader)),
                _ => Box::new(B3Propagator::with_encoding(B3Encoding::MultipleHeader)),
            }
        })
        .collect();
    Ok(CompositePropagator::new(propagators))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapPropagator;

    #[test]
    fn builds_in_order() {
        let p = propagator_from_names(" tracecontext , Baggage,b3multi", false).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p.fields().next(), Some("traceparent"));
        let p = propagator_from_names("b3,tracecontext", false).unwrap();
        assert_eq!(p.fields().next(), Some("b3"));
    }

    #[test]
    fn none_and_empty() {
        assert!(propagator_from_names("none", false).unwrap().is_empty());
        assert!(propagator_from_names("tracecontext,none", false).unwrap().is_empty());
        assert!(propagator_from_names("", false).unwrap().is_empty());
    }

    #[test]
    fn unknown_name_is_named() {
        let err = propagator_from_names("tracecontext,xray", false).unwrap_err();
        assert_eq!(err.name(), "xray");
        assert!(err.to_string().contains("tracecontext, baggage, b3, b3multi, none"));
    }
}
