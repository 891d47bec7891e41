//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.

use crate::{AlwaysOff, AlwaysOn, ParentBased, ProbabilitySampler, RateLimitedSampler, RuleBasedSampler};
use opentelemetry_sdk::trace::ShouldSample;

/// The sampler name variable.
pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// The sampler argument variable.
pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// The sampler used when `OTEL_TRACES_SAMPLER` is unset (the specification's default).
pub const DEFAULT_SAMPLER: &str = "parentbased_always_on";
/// The rate used by `rate_limited` samplers when no argument is given.
pub const DEFAULT_TRACES_PER_SECOND: f64 = 100.0;

/// Every accepted `OTEL_TRACES_SAMPLER` value.
///
/// - `always_on`, `always_off`, `parentbased_always_on`, `parentbased_always_off`:
///   as the specification defines them.
/// - `traceidratio`, `parentbased_traceidratio`: the consistent probability
///   sampler ([`ProbabilitySampler`]), the specification's current definition of
///   TraceIdRatioBased; the argument is the probability (default 1.0).
/// - `consistent_probability`, `parentbased_consistent_probability`: the same
///   sampler under an explicit name.
/// - `traceidratio_compat`, `parentbased_traceidratio_compat`: the decisions of
///   opentelemetry_sdk's `TraceIdRatioBased`, for fleets mid-migration.
/// - `rate_limited`, `parentbased_rate_limited`: at most N new traces per second
///   (argument N, default 100).
/// - `rules`, `parentbased_rules`: rule-based sampling loaded from the YAML or
///   JSON file named by the argument.
pub const ACCEPTED_SAMPLERS: &[&str] = &[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "consistent_probability",
    "parentbased_consistent_probability",
    "traceidratio_compat",
    "parentbased_traceidratio_compat",
    "rate_limited",
    "parentbased_rate_limited",
    "rules",
    "parentbased_rules",
];

/// A sampler configuration that cannot be used: the family's shared
/// [`ConfigError`](otel_propagation::ConfigError), naming the variable, the
/// value and what is accepted.
pub type SamplerConfigError = otel_propagation::ConfigError;

fn arg_error(value: &str, accepted: &str) -> SamplerConfigError {
    SamplerConfigError::new(OTEL_TRACES_SAMPLER_ARG, value, accepted)
}

fn probability_arg(arg: Option<&str>) -> Result<f64, SamplerConfigError> {
    const ACCEPTED: &str = "a probability between 0 and 1 (default 1.0)";
    match arg.map(str::trim) {
        None | Some("") => Ok(1.0),
        Some(s) => match s.parse::<f64>() {
            Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
            _ => Err(arg_error(s, ACCEPTED)),
        },
    }
}

fn rate_arg(arg: Option<&str>) -> Result<f64, SamplerConfigError> {
    const ACCEPTED: &str = "a number of traces per second >= 0 (default 100)";
    match arg.map(str::trim) {
        None | Some("") => Ok(DEFAULT_TRACES_PER_SECOND),
        Some(s) => match s.parse::<f64>() {
            Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
            _ => Err(arg_error(s, ACCEPTED)),
        },
    }
}

fn rules_arg(arg: Option<&str>) -> Result<RuleBasedSampler, SamplerConfigError> {
    const ACCEPTED: &str = "the path of a YAML or JSON sampling-rules file";
    let path = match arg.map(str::trim) {
        None | Some("") => return Err(arg_error("", ACCEPTED)),
        Some(p) => p,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| arg_error(path, &format!("{ACCEPTED} (reading it failed: {e})")))?;
    let parsed = if path.ends_with(".json") {
        RuleBasedSampler::from_json(&text)
    } else {
        #[cfg(feature = "yaml")]
        {
            RuleBasedSampler::from_yaml(&text)
        }
        #[cfg(not(feature = "yaml"))]
        {
            return Err(arg_error(
                path,
                "a .json rules file (YAML rules need otel-sampling's `yaml` feature)",
            ));
        }
    };
    parsed.map_err(|e| arg_error(path, &format!("{ACCEPTED} ({e})")))
}

/// Builds a sampler from `OTEL_TRACES_SAMPLER`-style values, strictly.
///
/// Names are case-insensitive; an empty name means the default.
///
/// # Errors
///
/// An unknown name names `OTEL_TRACES_SAMPLER` and lists [`ACCEPTED_SAMPLERS`];
/// an invalid argument names `OTEL_TRACES_SAMPLER_ARG` and what it must be.
pub fn parse_sampler(name: &str, arg: Option<&str>) -> Result<Box<dyn ShouldSample>, SamplerConfigError> {
    let lower = name.trim().to_ascii_lowercase();
    let name = if lower.is_empty() {
        DEFAULT_SAMPLER
    } else {
        lower.as_str()
    };
    let (parent_based, base) = match name.strip_prefix("parentbased_") {
        Some(base) => (true, base),
        None => (false, name),
    };
    let root: Box<dyn ShouldSample> = match base {
        "always_on" => Box::new(AlwaysOn),
        "always_off" => Box::new(AlwaysOff),
        "traceidratio" | "consistent_probability" => Box::new(
            ProbabilitySampler::new(probability_arg(arg)?).map_err(|e| arg_error(arg.unwrap_or(""), &e.to_string()))?,
        ),
        "traceidratio_compat" => Box::new(
            ProbabilitySampler::sdk_compatible(probability_arg(arg)?)
                .map_err(|e| arg_error(arg.unwrap_or(""), &e.to_string()))?,
        ),
        "rate_limited" => {
            Box::new(RateLimitedSampler::new(rate_arg(arg)?).map_err(|e| arg_error(arg.unwrap_or(""), &e.to_string()))?)
        }
        "rules" => Box::new(rules_arg(arg)?),
        _ => {
            return Err(SamplerConfigError::new(
                OTEL_TRACES_SAMPLER,
                name,
                ACCEPTED_SAMPLERS.join(", "),
            ));
        }
    };
    Ok(if parent_based {
        Box::new(ParentBased::from_boxed(root))
    } else {
        root
    })
}

/// Reads `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` strictly.
///
/// # Errors
///
/// As [`parse_sampler`]; a variable that is not valid Unicode is an error too.
pub fn sampler_from_env_strict() -> Result<Box<dyn ShouldSample>, SamplerConfigError> {
    let name = read_var(OTEL_TRACES_SAMPLER)?;
    let arg = read_var(OTEL_TRACES_SAMPLER_ARG)?;
    parse_sampler(name.as_deref().unwrap_or(""), arg.as_deref())
}

fn read_var(variable: &'static str) -> Result<Option<String>, SamplerConfigError> {
    match std::env::var(variable) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(SamplerConfigError::new(variable, v.to_string_lossy(), "valid UTF-8"))
        }
    }
}

/// Reads `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` the way the
/// specification asks of SDKs: an unknown sampler logs a warning and the
/// default (`parentbased_always_on`) is used; an invalid argument logs a
/// warning and the argument's default is used.
pub fn sampler_from_env() -> Box<dyn ShouldSample> {
    let name = std::env::var(OTEL_TRACES_SAMPLER).unwrap_or_default();
    let arg = std::env::var(OTEL_TRACES_SAMPLER_ARG).ok();
    lenient(&name, arg.as_deref())
}

/// The lenient path of [`sampler_from_env`], on given values: logs a warning
/// for a bad value and falls back as the specification says.
pub fn lenient(name: &str, arg: Option<&str>) -> Box<dyn ShouldSample> {
    let (sampler, problem) = sampler_or_default(name, arg);
    if let Some(e) = problem {
        tracing::warn!(target: "otel_sampling", "{e}; using the default");
    }
    sampler
}

/// The sampler for these values, or the specification's fallback with the
/// problem that caused it (not logged; the caller reports it).
pub fn sampler_or_default(name: &str, arg: Option<&str>) -> (Box<dyn ShouldSample>, Option<SamplerConfigError>) {
    match parse_sampler(name, arg) {
        Ok(s) => (s, None),
        // A bad argument: the same sampler with its default argument.
        Err(e) if e.variable() == OTEL_TRACES_SAMPLER_ARG => match parse_sampler(name, None) {
            Ok(s) => (s, Some(e)),
            Err(_) => (Box::new(ParentBased::new(AlwaysOn)), Some(e)),
        },
        Err(e) => (Box::new(ParentBased::new(AlwaysOn)), Some(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanKind, TraceId};
    use opentelemetry_sdk::trace::SamplingDecision;
    use proptest::prelude::*;

    fn decide(s: &dyn ShouldSample, trace_id: u128) -> SamplingDecision {
        s.should_sample(None, TraceId::from(trace_id), "x", &SpanKind::Internal, &[], &[])
            .decision
    }

    #[test]
    fn every_accepted_name_builds() {
        let dir = std::env::temp_dir().join(format!("otel-sampling-rules-{}.yaml", std::process::id()));
        std::fs::write(&dir, "fallback: keep\n").unwrap();
        for name in ACCEPTED_SAMPLERS {
            let arg = if name.ends_with("rules") { dir.to_str() } else { None };
            assert!(parse_sampler(name, arg).is_ok(), "{name}");
            assert!(parse_sampler(&name.to_uppercase(), arg).is_ok(), "{name} in upper case");
        }
        let _ = std::fs::remove_file(dir);
    }

    #[test]
    fn decisions_by_name() {
        assert_eq!(
            decide(parse_sampler("always_off", None).unwrap().as_ref(), u128::MAX),
            SamplingDecision::Drop
        );
        assert_eq!(
            decide(parse_sampler("", None).unwrap().as_ref(), 1),
            SamplingDecision::RecordAndSample
        );
        let half = parse_sampler("parentbased_traceidratio", Some("0.5")).unwrap();
        assert_eq!(
            decide(half.as_ref(), 0x00ff_ffff_ffff_ffff),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(decide(half.as_ref(), 1), SamplingDecision::Drop);
        // The compat sampler keeps the *small* ids.
        let compat = parse_sampler("traceidratio_compat", Some("0.5")).unwrap();
        assert_eq!(decide(compat.as_ref(), 1), SamplingDecision::RecordAndSample);
    }

    #[test]
    fn strict_errors_name_variable_value_and_accepted() {
        let e = parse_sampler("sometimes", None).unwrap_err();
        assert_eq!(e.variable(), OTEL_TRACES_SAMPLER);
        let text = e.to_string();
        assert!(
            text.contains("OTEL_TRACES_SAMPLER=\"sometimes\"") && text.contains("parentbased_traceidratio"),
            "{text}"
        );

        for bad in ["2", "-0.1", "half", "NaN"] {
            let e = parse_sampler("traceidratio", Some(bad)).unwrap_err();
            assert_eq!((e.variable(), e.value()), (OTEL_TRACES_SAMPLER_ARG, bad));
            assert!(e.to_string().contains("between 0 and 1"));
        }
        let e = parse_sampler("rate_limited", Some("-5")).unwrap_err();
        assert!(e.to_string().contains("traces per second"));
        let e = parse_sampler("rules", Some("/no/such/file.yaml")).unwrap_err();
        assert!(e.to_string().contains("reading it failed"), "{e}");
        assert!(parse_sampler("parentbased_jaeger_remote", None).is_err());
        assert!(parse_sampler("parentbased_", None).is_err());
    }

    #[test]
    fn lenient_falls_back_as_the_specification_says() {
        // Unknown sampler: the default, parentbased_always_on.
        assert_eq!(
            decide(lenient("sometimes", None).as_ref(), 1),
            SamplingDecision::RecordAndSample
        );
        // Invalid ratio argument: the default argument 1.0.
        assert_eq!(
            decide(lenient("traceidratio", Some("lots")).as_ref(), 1),
            SamplingDecision::RecordAndSample
        );
    }

    proptest! {
        #[test]
        fn never_panics(name in ".{0,30}", arg in proptest::option::of(".{0,20}")) {
            // `rules` reads the file its argument names; random paths are not wanted.
            prop_assume!(!name.to_ascii_lowercase().contains("rules"));
            let _ = parse_sampler(&name, arg.as_deref());
            let _ = lenient(&name, arg.as_deref());
        }
    }
}
