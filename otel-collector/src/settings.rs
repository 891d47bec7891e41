//! The `tail_sampling` block: buffer and decision settings plus the compiled
//! policies.

use crate::config::{At, ConfigError, child, get, get_bool, get_duration, get_u64, parse_yaml};
use crate::policy::{Policy, check_unique, parse_policy};
use crate::predicate::Conditions;
use serde_json::Value;
use std::time::Duration;

/// `decision_wait` when none is configured (the Go processor's default).
pub const DEFAULT_DECISION_WAIT: Duration = Duration::from_secs(30);
/// `num_traces` when none is configured (the Go processor's default).
pub const DEFAULT_NUM_TRACES: usize = 50_000;
/// Decision cache sizes when none are configured. The Go processor leaves
/// its caches off; ours are on, so late spans follow their trace's decision.
pub const DEFAULT_DECISION_CACHE_SIZE: usize = 50_000;

pub(crate) const TOP_KEYS: &[&str] = &[
    "decision_wait",
    "decision_wait_after_root_received",
    "num_traces",
    "expected_new_traces_per_sec",
    "decision_cache",
    "sample_on_first_match",
    "drop_pending_traces_on_shutdown",
    "maximum_trace_size_bytes",
    "policies",
    "tail_storage",
];

/// A parsed `tail_sampling` block. A clone has the same settings and fresh
/// policy state (each engine built from it keeps its own rate budgets).
#[derive(Debug, Clone)]
pub struct TailSamplingConfig {
    /// Wait after a trace's first span before deciding.
    pub decision_wait: Duration,
    /// When set, decide this long after the root span arrives (if sooner).
    pub decision_wait_after_root_received: Option<Duration>,
    /// Traces buffered at most; beyond it the oldest is decided early.
    pub num_traces: usize,
    /// A sizing hint for the buffer.
    pub expected_new_traces_per_sec: usize,
    /// Trace ids remembered as kept, so their late spans are kept (0: off).
    pub sampled_cache_size: usize,
    /// Trace ids remembered as dropped, so their late spans are dropped (0: off).
    pub non_sampled_cache_size: usize,
    /// Stop at the first policy that samples (drop policies still veto).
    pub sample_on_first_match: bool,
    /// On shutdown, drop buffered traces instead of deciding them.
    pub drop_pending_traces_on_shutdown: bool,
    /// A trace growing past this many bytes (OTLP protobuf) is dropped.
    pub maximum_trace_size_bytes: Option<u64>,
    /// `tail_storage`: the `file_storage` extension that journals the
    /// buffered spans and the decisions, so a restart (even after `kill -9`)
    /// decides them (the collector binary only).
    pub tail_storage: Option<String>,
    pub(crate) policies: Vec<Policy>,
    pub(crate) conditions: Conditions,
}

impl TailSamplingConfig {
    /// Parses a `tail_sampling` block from YAML: the keys under
    /// `tail_sampling:` (a document whose only key is `tail_sampling` is
    /// accepted too).
    ///
    /// # Errors
    ///
    /// Bad YAML, unknown keys or policy types, missing or out-of-range values;
    /// the error names the path (`tail_sampling.policies[1].latency.threshold_ms`).
    pub fn from_yaml(yaml: &str) -> Result<Self, ConfigError> {
        let value = parse_yaml(yaml)?;
        match &value {
            Value::Object(m) if m.len() == 1 && m.contains_key("tail_sampling") => {
                Self::from_value(&m["tail_sampling"], "tail_sampling")
            }
            _ => Self::from_value(&value, "tail_sampling"),
        }
    }

    /// Parses an already-loaded `tail_sampling` value; `path` prefixes error paths.
    ///
    /// # Errors
    ///
    /// As [`from_yaml`](Self::from_yaml).
    pub fn from_value(value: &Value, path: &str) -> Result<Self, ConfigError> {
        let at = At { value, path };
        at.map()?;
        at.only_keys(TOP_KEYS)?;
        let decision_wait = get_duration(at, "decision_wait")?.unwrap_or(DEFAULT_DECISION_WAIT);
        let after_root = get_duration(at, "decision_wait_after_root_received")?;
        let num_traces = get_u64(at, "num_traces")?.map_or(DEFAULT_NUM_TRACES, |n| n as usize);
        if num_traces == 0 {
            return Err(ConfigError::new(child(path, "num_traces"), "must be above 0"));
        }
        let expected = get_u64(at, "expected_new_traces_per_sec")?.unwrap_or(0) as usize;
        let (mut sampled_cache_size, mut non_sampled_cache_size) =
            (DEFAULT_DECISION_CACHE_SIZE, DEFAULT_DECISION_CACHE_SIZE);
        if let Some(v) = get(at, "decision_cache") {
            let cache_path = child(path, "decision_cache");
            let c = At {
                value: v,
                path: &cache_path,
            };
            c.map()?;
            c.only_keys(&["sampled_cache_size", "non_sampled_cache_size"])?;
            if let Some(n) = get_u64(c, "sampled_cache_size")? {
                sampled_cache_size = n as usize;
            }
            if let Some(n) = get_u64(c, "non_sampled_cache_size")? {
                non_sampled_cache_size = n as usize;
            }
        }
        let sample_on_first_match = get_bool(at, "sample_on_first_match")?.unwrap_or(false);
        let drop_pending = get_bool(at, "drop_pending_traces_on_shutdown")?.unwrap_or(false);
        let max_bytes = get_u64(at, "maximum_trace_size_bytes")?.filter(|n| *n > 0);

        let policies_path = child(path, "policies");
        let items = match get(at, "policies") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) | None => {
                return Err(ConfigError::new(policies_path, "at least one policy is required"));
            }
            Some(other) => return Err(ConfigError::new(policies_path, format!("must be a list, got {other}"))),
        };
        let mut conditions = Conditions::default();
        let mut policies = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            let p = format!("{policies_path}[{i}]");
            policies.push(parse_policy(At { value: v, path: &p }, &mut conditions, 0)?);
        }
        check_unique(&policies, &policies_path)?;
        Ok(TailSamplingConfig {
            decision_wait,
            decision_wait_after_root_received: after_root,
            num_traces,
            expected_new_traces_per_sec: expected,
            sampled_cache_size,
            non_sampled_cache_size,
            sample_on_first_match,
            drop_pending_traces_on_shutdown: drop_pending,
            maximum_trace_size_bytes: max_bytes,
            tail_storage: crate::config::get_str(at, "tail_storage")?
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            policies,
            conditions,
        })
    }

    /// The top-level policy names, in configuration order.
    pub fn policy_names(&self) -> Vec<&str> {
        self.policies.iter().map(|p| p.name.as_str()).collect()
    }
}
