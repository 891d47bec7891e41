//! Reading and rewriting the OpenTelemetry `ot` member of a tracestate
//! (`ot=th:fd70a4;rv:...;other:value`).

use crate::threshold::{Randomness, Threshold};
use opentelemetry::trace::TraceState;

/// The tracestate key OpenTelemetry owns.
pub const OT_KEY: &str = "ot";

/// The sampling-relevant content of an `ot` member. Invalid `th`/`rv` values
/// are treated as absent, as the specification says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtState {
    /// The `th` sub-key, when present and valid.
    pub threshold: Option<Threshold>,
    /// The `rv` sub-key, when present and valid.
    pub randomness: Option<Randomness>,
}

impl OtState {
    /// Reads the `ot` member of `trace_state`.
    pub fn read(trace_state: &TraceState) -> OtState {
        match trace_state.get(OT_KEY) {
            Some(value) => OtState::parse(value),
            None => OtState::default(),
        }
    }

    /// Parses an `ot` member value.
    pub fn parse(value: &str) -> OtState {
        let mut state = OtState::default();
        for field in value.split(';') {
            match field.split_once(':') {
                Some(("th", v)) => state.threshold = Threshold::parse(v),
                Some(("rv", v)) => state.randomness = Randomness::parse(v),
                _ => {}
            }
        }
        state
    }
}

/// Returns `trace_state` with `th` set to `threshold` in its `ot` member,
/// keeping every other sub-key and member; the `ot` member moves to the front.
pub fn with_threshold(trace_state: &TraceState, threshold: Threshold) -> TraceState {
    let th = threshold.encode();
    let value = match trace_state.get(OT_KEY) {
        None => {
            let mut v = String::with_capacity(3 + th.as_str().len());
            v.push_str("th:");
            v.push_str(th.as_str());
            v
        }
        Some(existing) => {
            let mut v = String::with_capacity(existing.len() + 18);
            v.push_str("th:");
            v.push_str(th.as_str());
            for field in existing.split(';').filter(|f| !f.is_empty() && !f.starts_with("th:")) {
                v.push(';');
                v.push_str(field);
            }
            v
        }
    };
    // The key and value are valid, so insert cannot fail; keep the input if it ever does.
    trace_state
        .insert(OT_KEY, value)
        .unwrap_or_else(|_| trace_state.clone())
}

/// Returns `trace_state` without the `th` sub-key (other sub-keys and members
/// kept; an `ot` member left empty is removed). Clones cheaply when there is
/// nothing to erase.
pub fn without_threshold(trace_state: &TraceState) -> TraceState {
    let Some(existing) = trace_state.get(OT_KEY) else {
        return trace_state.clone();
    };
    if !existing.split(';').any(|f| f.starts_with("th:")) {
        return trace_state.clone();
    }
    let rest: Vec<&str> = existing
        .split(';')
        .filter(|f| !f.is_empty() && !f.starts_with("th:"))
        .collect();
    if rest.is_empty() {
        let remaining = trace_state.delete(OT_KEY).unwrap_or_else(|_| trace_state.clone());
        // opentelemetry keeps an empty list after deleting the last member; an
        // empty tracestate is `NONE` everywhere else.
        if remaining.into_iter().len() == 0 {
            TraceState::NONE
        } else {
            remaining
        }
    } else {
        trace_state
            .insert(OT_KEY, rest.join(";"))
            .unwrap_or_else(|_| trace_state.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn ts(s: &str) -> TraceState {
        TraceState::from_str(s).unwrap()
    }

    #[test]
    fn reads_th_and_rv() {
        let s = OtState::read(&ts("vendor=x,ot=th:c;rv:0123456789abcd;foo:bar"));
        assert_eq!(s.threshold, Threshold::parse("c"));
        assert_eq!(s.randomness, Randomness::parse("0123456789abcd"));
    }

    #[test]
    fn invalid_values_are_ignored() {
        let s = OtState::read(&ts("ot=th:xyz;rv:123"));
        assert_eq!(s, OtState::default());
        let s = OtState::read(&ts("ot=th:123456789012345"));
        assert_eq!(s.threshold, None);
    }

    #[test]
    fn setting_th_keeps_other_keys_and_moves_ot_first() {
        let out = with_threshold(
            &ts("congo=1,ot=rv:0123456789abcd;th:8;x:y,rojo=2"),
            Threshold::parse("c").unwrap(),
        );
        assert_eq!(out.header(), "ot=th:c;rv:0123456789abcd;x:y,congo=1,rojo=2");
        let out = with_threshold(&TraceState::NONE, Threshold::ALWAYS);
        assert_eq!(out.header(), "ot=th:0");
    }

    #[test]
    fn erasing_th() {
        assert_eq!(
            without_threshold(&ts("a=1,ot=th:8;rv:0123456789abcd")).header(),
            "ot=rv:0123456789abcd,a=1"
        );
        assert_eq!(without_threshold(&ts("a=1,ot=th:8")).header(), "a=1");
        assert_eq!(without_threshold(&ts("a=1,ot=x:y")).header(), "a=1,ot=x:y");
        assert_eq!(without_threshold(&TraceState::NONE), TraceState::NONE);
    }

    proptest! {
        #[test]
        fn never_panics(v in "[ -~]{0,60}") {
            let _ = OtState::parse(&v);
        }
    }
}
