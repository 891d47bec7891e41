//! Tail sampling: one policy engine, used in-process as a `SpanProcessor`
//! ([`TailSamplingProcessor`]) and in the `otel-collector` sidecar.
//!
//! Configuration is the OpenTelemetry Collector's `tail_sampling` block with
//! the Go processor's keys:
//!
//! ```
//! use otel_collector::TailSamplingConfig;
//!
//! let config = TailSamplingConfig::from_yaml(r#"
//! decision_wait: 10s
//! policies:
//!   - name: errors
//!     type: status_code
//!     status_code: {status_codes: [ERROR]}
//!   - name: slow-traces
//!     type: latency
//!     latency: {threshold_ms: 1000}
//!   - name: probabilistic
//!     type: probabilistic
//!     probabilistic: {sampling_percentage: 10}
//! "#)?;
//! assert_eq!(config.policy_names(), ["errors", "slow-traces", "probabilistic"]);
//! # Ok::<(), otel_collector::ConfigError>(())
//! ```
//!
//! Policies: `always_sample`, `latency`, `status_code`, `probabilistic` (the
//! Go processor's FNV-1a hash and default salt, so mixed fleets agree),
//! `string_attribute`, `numeric_attribute`, `boolean_attribute`, `span_count`,
//! `trace_state`, `rate_limiting`, `bytes_limiting`, `and`, `not`, `drop` and
//! `composite`. Resource and span attributes both count. A `drop` match vetoes
//! whatever the order; otherwise any sampled vote keeps the trace, with the
//! Go processor's rules for inverted matches.
//!
//! Where this engine differs from the Go processor:
//! - decisions are due to the millisecond after `decision_wait` (or
//!   `decision_wait_after_root_received` once the root span arrived), not on
//!   a one-second tick;
//! - the decision caches are on by default (`decision_cache` sizes, 0 turns
//!   one off), so late spans follow their trace's decision;
//! - a trace evicted by `num_traces` is decided early on what arrived, not
//!   dropped undecided;
//! - `latency` measures the whole trace (earliest start to latest end) even
//!   with `upper_threshold_ms`;
//! - `composite` evaluates sub-policies in `policy_order`, a sub-policy over
//!   its budget falls through to the next, and sub-policies missing from
//!   `rate_allocation` share what the allocations leave;
//! - `rate_limiting` admits a trace when the second's total stays at or
//!   below `spans_per_second`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod engine;

/// Lowercase hex of `bytes`.
#[cfg_attr(not(feature = "sidecar"), allow(dead_code))]
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Locks `m`, recovering the data of a poisoned lock: a panicking holder
/// leaves buffers and counters that are still worth using.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
mod facts;
mod hash;
mod policy;
mod predicate;
mod processor;
mod settings;

pub use config::{ConfigError, parse_duration, parse_yaml};
pub use engine::{
    Clock, DECISION_DELAY_BUCKETS_MS, KeptBy, ManualClock, POLICY_LATENCY_BUCKETS_US, PolicyCounts, PreparedSpan,
    SystemClock, TailSampler, TailSamplerBuilder, TailSamplingStats, TraceSink,
};
pub use facts::{AttrValue, Attributes, NoAttributes, SpanFacts, StatusCode};
pub use hash::{DEFAULT_HASH_SALT, hash_trace_id};
pub use predicate::{MAX_CONDITIONS, ResourceMatch};
pub use processor::{MemberSpan, TailSamplingGroup, TailSamplingProcessor};
pub use settings::{DEFAULT_DECISION_CACHE_SIZE, DEFAULT_DECISION_WAIT, DEFAULT_NUM_TRACES, TailSamplingConfig};

#[cfg(feature = "sidecar")]
pub mod sidecar;
