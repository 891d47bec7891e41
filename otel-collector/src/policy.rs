//! Sampling policies: parsed from the Go processor's YAML keys, evaluated on a
//! trace's summary in O(policies).

use crate::config::{At, ConfigError, child, get, get_bool, get_f64, get_i64, get_str, get_strings, get_u64};
use crate::facts::StatusCode;
use crate::hash::{DEFAULT_HASH_SALT, hash_trace_id, threshold};
use crate::lock;
use crate::predicate::{BoundedCache, Condition, Conditions, StrMatch};
use regex::RegexSet;
use serde_json::Value;
use std::sync::Mutex;

/// What the engine knows of a buffered trace.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Summary {
    /// Earliest span start, Unix nanoseconds.
    pub(crate) start_min: u64,
    /// Latest span end, Unix nanoseconds.
    pub(crate) end_max: u64,
    pub(crate) spans: u64,
    pub(crate) bytes: u64,
    /// Status codes seen (`StatusCode::bit`).
    pub(crate) status: u8,
    /// Conditions some span or resource of the trace satisfied.
    pub(crate) bits: u128,
}

impl Summary {
    pub(crate) fn add(&mut self, start: u64, end: u64, status: StatusCode, bytes: usize, bits: u128) {
        if self.spans == 0 || start < self.start_min {
            self.start_min = start;
        }
        if self.spans == 0 || end > self.end_max {
            self.end_max = end;
        }
        self.spans += 1;
        self.bytes += bytes as u64;
        self.status |= status.bit();
        self.bits |= bits;
    }

    /// Whole milliseconds from the earliest start to the latest end.
    fn duration_ms(&self) -> i64 {
        (self.end_max.saturating_sub(self.start_min) / 1_000_000) as i64
    }
}

/// A trace to decide.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) trace_id: &'a [u8; 16],
    pub(crate) summary: &'a Summary,
    pub(crate) now_ms: u64,
}

/// A policy's verdict, with the Go processor's inverted variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Sampled,
    NotSampled,
    InvertSampled,
    InvertNotSampled,
    Dropped,
}

impl Decision {
    fn samples(self) -> bool {
        matches!(self, Decision::Sampled | Decision::InvertSampled)
    }
}

#[derive(Debug, Default)]
struct Window {
    second: u64,
    used: u64,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ms: Option<u64>,
}

impl Bucket {
    fn take(&mut self, amount: u64, now_ms: u64) -> bool {
        if let Some(last) = self.last_ms {
            let elapsed = now_ms.saturating_sub(last) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last_ms = Some(now_ms);
        let amount = amount as f64;
        if amount <= self.tokens {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone)]
struct Sub {
    policy: Policy,
    /// Spans per second of its own; `None` shares what the allocations leave.
    budget: Option<u64>,
}

#[derive(Debug, Default)]
struct CompositeState {
    second: u64,
    total: u64,
    shared: u64,
    own: Vec<u64>,
}

#[derive(Debug)]
struct Composite {
    max_total: u64,
    shared_budget: u64,
    subs: Vec<Sub>,
    state: Mutex<CompositeState>,
}

impl Clone for Bucket {
    fn clone(&self) -> Self {
        Bucket {
            rate: self.rate,
            burst: self.burst,
            tokens: self.burst,
            last_ms: None,
        }
    }
}

impl Clone for Composite {
    fn clone(&self) -> Self {
        Composite {
            max_total: self.max_total,
            shared_budget: self.shared_budget,
            subs: self.subs.clone(),
            state: Mutex::new(CompositeState::default()),
        }
    }
}

impl Clone for Kind {
    fn clone(&self) -> Self {
        match self {
            Kind::AlwaysSample => Kind::AlwaysSample,
            Kind::Latency { threshold_ms, upper_ms } => Kind::Latency {
                threshold_ms: *threshold_ms,
                upper_ms: *upper_ms,
            },
            Kind::StatusCode { mask } => Kind::StatusCode { mask: *mask },
            Kind::Probabilistic { salt, threshold } => Kind::Probabilistic {
                salt: salt.clone(),
                threshold: *threshold,
            },
            Kind::Condition { bit, invert } => Kind::Condition {
                bit: *bit,
                invert: *invert,
            },
            Kind::SpanCount { min, max } => Kind::SpanCount { min: *min, max: *max },
            Kind::RateLimiting { per_second, .. } => Kind::RateLimiting {
                per_second: *per_second,
                window: Mutex::new(Window::default()),
            },
            Kind::BytesLimiting(bucket) => Kind::BytesLimiting(Mutex::new(crate::lock(bucket).clone())),
            Kind::And(policies) => Kind::And(policies.clone()),
            Kind::Not(policy) => Kind::Not(policy.clone()),
            Kind::Drop(policies) => Kind::Drop(policies.clone()),
            Kind::Composite(c) => Kind::Composite(c.clone()),
        }
    }
}

#[derive(Debug)]
enum Kind {
    AlwaysSample,
    Latency { threshold_ms: i64, upper_ms: i64 },
    StatusCode { mask: u8 },
    Probabilistic { salt: String, threshold: u64 },
    Condition { bit: u8, invert: bool },
    SpanCount { min: u64, max: u64 },
    RateLimiting { per_second: u64, window: Mutex<Window> },
    BytesLimiting(Mutex<Bucket>),
    And(Vec<Policy>),
    Not(Box<Policy>),
    Drop(Vec<Policy>),
    Composite(Box<Composite>),
}

/// A named policy. A clone has the same settings and fresh state (rate and
/// byte budgets start full).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) name: String,
    kind: Kind,
}

impl Policy {
    pub(crate) fn is_drop(&self) -> bool {
        matches!(self.kind, Kind::Drop(_))
    }

    /// The verdict, inverted variants included (the top level combines them).
    pub(crate) fn evaluate(&self, v: &View<'_>) -> Decision {
        let s = v.summary;
        match &self.kind {
            Kind::AlwaysSample => Decision::Sampled,
            Kind::Latency { threshold_ms, upper_ms } => {
                let d = s.duration_ms();
                let hit = if *upper_ms == 0 {
                    d >= *threshold_ms
                } else {
                    *threshold_ms < d && d <= *upper_ms
                };
                verdict(hit)
            }
            Kind::StatusCode { mask } => verdict(s.status & mask != 0),
            Kind::Probabilistic { salt, threshold } => verdict(hash_trace_id(salt, v.trace_id) <= *threshold),
            Kind::Condition { bit, invert } => {
                let hit = s.bits & (1u128 << bit) != 0;
                match (invert, hit) {
                    (false, true) => Decision::Sampled,
                    (false, false) => Decision::NotSampled,
                    (true, true) => Decision::InvertNotSampled,
                    (true, false) => Decision::InvertSampled,
                }
            }
            Kind::SpanCount { min, max } => verdict(s.spans >= *min && (*max == 0 || s.spans <= *max)),
            Kind::RateLimiting { per_second, window } => {
                let mut w = lock(window);
                let second = v.now_ms / 1000;
                if w.second != second {
                    w.second = second;
                    w.used = 0;
                }
                let fits = w.used + s.spans <= *per_second;
                if fits {
                    w.used += s.spans;
                }
                verdict(fits)
            }
            Kind::BytesLimiting(bucket) => verdict(lock(bucket).take(s.bytes, v.now_ms)),
            Kind::And(subs) => {
                for p in subs {
                    if !p.evaluate(v).samples() {
                        return Decision::NotSampled;
                    }
                }
                Decision::Sampled
            }
            Kind::Not(sub) => verdict(!sub.evaluate(v).samples()),
            Kind::Drop(subs) => {
                for p in subs {
                    if !p.evaluate(v).samples() {
                        return Decision::NotSampled;
                    }
                }
                Decision::Dropped
            }
            Kind::Composite(c) => c.evaluate(v),
        }
    }
}

impl Composite {
    fn evaluate(&self, v: &View<'_>) -> Decision {
        let spans = v.summary.spans;
        let second = v.now_ms / 1000;
        for (i, sub) in self.subs.iter().enumerate() {
            if !sub.policy.evaluate(v).samples() {
                continue;
            }
            let mut st = lock(&self.state);
            if st.second != second {
                st.second = second;
                st.total = 0;
                st.shared = 0;
                st.own.iter_mut().for_each(|u| *u = 0);
            }
            if st.total + spans > self.max_total {
                // The composite as a whole is spent this second.
                return Decision::NotSampled;
            }
            let fits = match sub.budget {
                Some(b) => st.own[i] + spans <= b,
                None => st.shared + spans <= self.shared_budget,
            };
            if fits {
                match sub.budget {
                    Some(_) => st.own[i] += spans,
                    None => st.shared += spans,
                }
                st.total += spans;
                return Decision::Sampled;
            }
            // Over its own budget: the next sub-policy in order may still take it.
        }
        Decision::NotSampled
    }
}

fn verdict(hit: bool) -> Decision {
    if hit { Decision::Sampled } else { Decision::NotSampled }
}

/// The policy types this engine knows, for error messages.
pub(crate) const POLICY_TYPES: &[&str] = &[
    "always_sample",
    "latency",
    "status_code",
    "probabilistic",
    "string_attribute",
    "numeric_attribute",
    "boolean_attribute",
    "span_count",
    "trace_state",
    "rate_limiting",
    "bytes_limiting",
    "and",
    "not",
    "drop",
    "composite",
];

/// Parses one policy (`{name, type, <type>: {...}}`).
pub(crate) fn parse_policy(at: At<'_>, conds: &mut Conditions, depth: usize) -> Result<Policy, ConfigError> {
    if depth > 8 {
        return Err(at.err("policies nest more than 8 levels deep"));
    }
    at.map()?;
    let name = get_str(at, "name")?
        .ok_or_else(|| at.err("a policy needs a name"))?
        .to_owned();
    if name.trim().is_empty() {
        return Err(at.err("a policy name must not be empty"));
    }
    let ty = get_str(at, "type")?.ok_or_else(|| at.err(format!("policy {name:?} needs a type")))?;
    match ty {
        "ottl_condition" => {
            return Err(ConfigError::new(
                child(at.path, "type"),
                "ottl_condition is not supported; express the condition with string_attribute, numeric_attribute, \
                 boolean_attribute, status_code, latency or span_count policies, combined with and / not / drop",
            ));
        }
        "trace_flags" => {
            return Err(ConfigError::new(
                child(at.path, "type"),
                "trace_flags is not supported; head sampling already decided the sampled flag, use always_sample",
            ));
        }
        t if !POLICY_TYPES.contains(&t) => {
            return Err(ConfigError::new(
                child(at.path, "type"),
                format!("unknown policy type {t:?}; accepted: {}", POLICY_TYPES.join(", ")),
            ));
        }
        _ => {}
    }
    at.only_keys(&["name", "type", ty])?;
    let params_path = child(at.path, ty);
    let params_value = get(at, ty);
    let empty = Value::Object(serde_json::Map::new());
    let p = At {
        value: params_value.unwrap_or(&empty),
        path: &params_path,
    };
    if params_value.is_some() {
        p.map()?;
    }
    let need = |what: &str| {
        ConfigError::new(
            child(&params_path, what),
            format!("policy {name:?} ({ty}) needs {what}"),
        )
    };
    // The attribute or tracestate key a condition policy reads: present and not empty.
    let required_key = || -> Result<String, ConfigError> {
        get_str(p, "key")?
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| need("key"))
    };
    // The values a string or tracestate policy matches: at least one.
    let required_values = || -> Result<Vec<String>, ConfigError> {
        let values = get_strings(p, "values")?;
        if values.is_empty() {
            Err(need("values"))
        } else {
            Ok(values)
        }
    };
    let kind = match ty {
        "always_sample" => Kind::AlwaysSample,
        "latency" => {
            p.only_keys(&["threshold_ms", "upper_threshold_ms"])?;
            let threshold_ms = get_i64(p, "threshold_ms")?.ok_or_else(|| need("threshold_ms"))?;
            let upper_ms = get_i64(p, "upper_threshold_ms")?.unwrap_or(0);
            if threshold_ms < 0 || upper_ms < 0 {
                return Err(p.err("thresholds must not be negative"));
            }
            if upper_ms != 0 && upper_ms <= threshold_ms {
                return Err(ConfigError::new(
                    child(&params_path, "upper_threshold_ms"),
                    format!("must be above threshold_ms ({threshold_ms}), got {upper_ms}"),
                ));
            }
            Kind::Latency { threshold_ms, upper_ms }
        }
        "status_code" => {
            p.only_keys(&["status_codes"])?;
            let codes = get_strings(p, "status_codes")?;
            if codes.is_empty() {
                return Err(need("status_codes"));
            }
            let mut mask = 0;
            for (i, c) in codes.iter().enumerate() {
                mask |= match c.to_ascii_uppercase().as_str() {
                    "OK" => StatusCode::Ok.bit(),
                    "ERROR" => StatusCode::Error.bit(),
                    "UNSET" => StatusCode::Unset.bit(),
                    _ => {
                        return Err(ConfigError::new(
                            format!("{}[{i}]", child(&params_path, "status_codes")),
                            format!("unknown status code {c:?}; accepted: OK, ERROR, UNSET"),
                        ));
                    }
                };
            }
            Kind::StatusCode { mask }
        }
        "probabilistic" => {
            p.only_keys(&["sampling_percentage", "hash_salt"])?;
            let pct = get_f64(p, "sampling_percentage")?.ok_or_else(|| need("sampling_percentage"))?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(ConfigError::new(
                    child(&params_path, "sampling_percentage"),
                    format!("must be between 0 and 100, got {pct}"),
                ));
            }
            let salt = get_str(p, "hash_salt")?
                .filter(|s| !s.is_empty())
                .unwrap_or(DEFAULT_HASH_SALT)
                .to_owned();
            Kind::Probabilistic {
                salt,
                threshold: threshold(pct / 100.0),
            }
        }
        "string_attribute" => {
            p.only_keys(&[
                "key",
                "values",
                "enabled_regex_matching",
                "cache_max_size",
                "invert_match",
            ])?;
            let key = required_key()?;
            let values = required_values()?;
            let regex = get_bool(p, "enabled_regex_matching")?.unwrap_or(false);
            let cache = get_u64(p, "cache_max_size")?;
            let matcher = if regex {
                let set = RegexSet::new(&values)
                    .map_err(|e| ConfigError::new(child(&params_path, "values"), format!("bad regex: {e}")))?;
                StrMatch::Regex {
                    set,
                    cache: cache
                        .filter(|n| *n > 0)
                        .map(|n| Mutex::new(BoundedCache::new(n as usize))),
                }
            } else {
                StrMatch::Exact(values)
            };
            let invert = get_bool(p, "invert_match")?.unwrap_or(false);
            let bit = conds.add(Condition::Str { key, matcher }, &params_path)?;
            Kind::Condition { bit, invert }
        }
        "numeric_attribute" => {
            p.only_keys(&["key", "min_value", "max_value", "invert_match"])?;
            let key = required_key()?;
            let min = get_i64(p, "min_value")?;
            let max = get_i64(p, "max_value")?;
            if min.is_none() && max.is_none() {
                return Err(p.err(format!(
                    "policy {name:?} (numeric_attribute) needs min_value, max_value or both"
                )));
            }
            let (min, max) = (min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX));
            if min > max {
                return Err(p.err(format!("min_value ({min}) is above max_value ({max})")));
            }
            let invert = get_bool(p, "invert_match")?.unwrap_or(false);
            let bit = conds.add(Condition::Num { key, min, max }, &params_path)?;
            Kind::Condition { bit, invert }
        }
        "boolean_attribute" => {
            p.only_keys(&["key", "value", "invert_match"])?;
            let key = required_key()?;
            let value = get_bool(p, "value")?.ok_or_else(|| need("value"))?;
            let invert = get_bool(p, "invert_match")?.unwrap_or(false);
            let bit = conds.add(Condition::Bool { key, value }, &params_path)?;
            Kind::Condition { bit, invert }
        }
        "span_count" => {
            p.only_keys(&["min_spans", "max_spans"])?;
            let min = get_u64(p, "min_spans")?;
            let max = get_u64(p, "max_spans")?;
            if min.is_none() && max.is_none() {
                return Err(p.err(format!(
                    "policy {name:?} (span_count) needs min_spans, max_spans or both"
                )));
            }
            let (min, max) = (min.unwrap_or(0), max.unwrap_or(0));
            if max != 0 && min > max {
                return Err(p.err(format!("min_spans ({min}) is above max_spans ({max})")));
            }
            Kind::SpanCount { min, max }
        }
        "trace_state" => {
            p.only_keys(&["key", "values"])?;
            let key = required_key()?;
            let values = required_values()?;
            let bit = conds.add(Condition::TraceState { key, values }, &params_path)?;
            Kind::Condition { bit, invert: false }
        }
        "rate_limiting" => {
            p.only_keys(&["spans_per_second"])?;
            let per_second = get_u64(p, "spans_per_second")?.ok_or_else(|| need("spans_per_second"))?;
            Kind::RateLimiting {
                per_second,
                window: Mutex::new(Window::default()),
            }
        }
        "bytes_limiting" => {
            p.only_keys(&["bytes_per_second", "burst_capacity"])?;
            let rate = get_u64(p, "bytes_per_second")?.ok_or_else(|| need("bytes_per_second"))?;
            if rate == 0 {
                return Err(ConfigError::new(
                    child(&params_path, "bytes_per_second"),
                    "must be above 0",
                ));
            }
            let burst = get_u64(p, "burst_capacity")?.unwrap_or(rate.saturating_mul(2));
            Kind::BytesLimiting(Mutex::new(Bucket {
                rate: rate as f64,
                burst: burst as f64,
                tokens: burst as f64,
                last_ms: None,
            }))
        }
        "and" => Kind::And(parse_list(p, "and_sub_policy", conds, depth, &name)?),
        "drop" => Kind::Drop(parse_list(p, "drop_sub_policy", conds, depth, &name)?),
        "not" => {
            p.only_keys(&["not_sub_policy"])?;
            let sub_path = child(&params_path, "not_sub_policy");
            let sub = match get(p, "not_sub_policy") {
                Some(Value::Array(items)) if items.len() == 1 => parse_policy(
                    At {
                        value: &items[0],
                        path: &format!("{sub_path}[0]"),
                    },
                    conds,
                    depth + 1,
                )?,
                Some(Value::Array(_)) => return Err(ConfigError::new(sub_path, "must hold exactly one policy")),
                Some(v) => parse_policy(
                    At {
                        value: v,
                        path: &sub_path,
                    },
                    conds,
                    depth + 1,
                )?,
                None => return Err(need("not_sub_policy")),
            };
            Kind::Not(Box::new(sub))
        }
        "composite" => Kind::Composite(Box::new(parse_composite(p, conds, depth, &name)?)),
        _ => return Err(at.err(format!("unknown policy type {ty:?}"))),
    };
    Ok(Policy { name, kind })
}

fn parse_list(
    p: At<'_>,
    key: &str,
    conds: &mut Conditions,
    depth: usize,
    name: &str,
) -> Result<Vec<Policy>, ConfigError> {
    p.only_keys(&[key])?;
    sub_policies(p, key, conds, depth, name)
}

/// The non-empty list of sub-policies under `key`, names unique.
fn sub_policies(
    p: At<'_>,
    key: &str,
    conds: &mut Conditions,
    depth: usize,
    name: &str,
) -> Result<Vec<Policy>, ConfigError> {
    let path = child(p.path, key);
    let items = match get(p, key) {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None => {
            return Err(ConfigError::new(
                path,
                format!("policy {name:?} needs at least one sub-policy"),
            ));
        }
        Some(other) => {
            return Err(ConfigError::new(
                path,
                format!("must be a list of policies, got {other}"),
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        out.push(parse_policy(
            At {
                value: v,
                path: &format!("{path}[{i}]"),
            },
            conds,
            depth + 1,
        )?);
    }
    check_unique(&out, &path)?;
    Ok(out)
}

pub(crate) fn check_unique(policies: &[Policy], path: &str) -> Result<(), ConfigError> {
    for (i, p) in policies.iter().enumerate() {
        if policies[..i].iter().any(|q| q.name == p.name) {
            return Err(ConfigError::new(
                format!("{path}[{i}]"),
                format!("duplicate policy name {:?}", p.name),
            ));
        }
    }
    Ok(())
}

fn parse_composite(p: At<'_>, conds: &mut Conditions, depth: usize, name: &str) -> Result<Composite, ConfigError> {
    p.only_keys(&[
        "max_total_spans_per_second",
        "policy_order",
        "composite_sub_policy",
        "rate_allocation",
    ])?;
    let max_total = get_u64(p, "max_total_spans_per_second")?.ok_or_else(|| {
        ConfigError::new(
            child(p.path, "max_total_spans_per_second"),
            format!("policy {name:?} needs it"),
        )
    })?;
    let subs = sub_policies(p, "composite_sub_policy", conds, depth, name)?;

    // Rate allocations, by sub-policy name.
    let alloc_path = child(p.path, "rate_allocation");
    let mut alloc: Vec<(String, f64)> = Vec::new();
    match get(p, "rate_allocation") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                let path = format!("{alloc_path}[{i}]");
                let a = At { value: v, path: &path };
                a.map()?;
                a.only_keys(&["policy", "percent"])?;
                let policy = get_str(a, "policy")?.ok_or_else(|| a.err("needs policy"))?.to_owned();
                let percent = get_f64(a, "percent")?.ok_or_else(|| a.err("needs percent"))?;
                if !(0.0..=100.0).contains(&percent) {
                    return Err(a.err(format!("percent must be between 0 and 100, got {percent}")));
                }
                if !subs.iter().any(|s| s.name == policy) {
                    return Err(a.err(format!("{policy:?} is not a composite_sub_policy of {name:?}")));
                }
                if alloc.iter().any(|(n, _)| *n == policy) {
                    return Err(a.err(format!("{policy:?} is allocated twice")));
                }
                alloc.push((policy, percent));
            }
        }
        Some(other) => return Err(ConfigError::new(alloc_path, format!("must be a list, got {other}"))),
    }
    let allocated: f64 = alloc.iter().map(|(_, p)| p).sum();
    if allocated > 100.0 + 1e-9 {
        return Err(ConfigError::new(
            alloc_path,
            format!("percentages add up to {allocated}, above 100"),
        ));
    }
    let budget_of = |pct: f64| (max_total as f64 * pct / 100.0).floor() as u64;

    // Evaluation order: policy_order when given, else declaration order.
    let order_path = child(p.path, "policy_order");
    let order = get_strings(p, "policy_order")?;
    let mut ordered: Vec<Policy> = Vec::with_capacity(subs.len());
    if order.is_empty() {
        ordered = subs;
    } else {
        let mut pool: Vec<Option<Policy>> = subs.into_iter().map(Some).collect();
        for (i, n) in order.iter().enumerate() {
            let slot = pool.iter_mut().find(|s| s.as_ref().is_some_and(|s| s.name == *n));
            match slot.and_then(Option::take) {
                Some(s) => ordered.push(s),
                None => {
                    return Err(ConfigError::new(
                        format!("{order_path}[{i}]"),
                        format!("{n:?} is not a composite_sub_policy of {name:?} (or is listed twice)"),
                    ));
                }
            }
        }
        if let Some(left) = pool.into_iter().flatten().next() {
            return Err(ConfigError::new(
                order_path,
                format!("sub-policy {:?} is defined but missing from policy_order", left.name),
            ));
        }
    }
    let subs: Vec<Sub> = ordered
        .into_iter()
        .map(|policy| {
            let budget = alloc
                .iter()
                .find(|(n, _)| *n == policy.name)
                .map(|(_, pct)| budget_of(*pct));
            Sub { policy, budget }
        })
        .collect();
    let shared_budget = budget_of(100.0 - allocated);
    let n = subs.len();
    Ok(Composite {
        max_total,
        shared_budget,
        subs,
        state: Mutex::new(CompositeState {
            own: vec![0; n],
            ..CompositeState::default()
        }),
    })
}
