//! `probabilistic_sampler`: keeps a share of spans by trace id, span by span,
//! as the Go processor decides for traces.
//!
//! Three modes, as Go's:
//! - `hash_seed` (the default): FNV-1a (32 bit) over the seed's four bytes
//!   (little-endian) and the trace id; the low 14 bits are the bucket, kept
//!   when below `uint32(float32(percentage) * float32(163.84))`. The same
//!   trace id and seed give the same decision in Go and here. A kept span
//!   gets `rv` (randomness derived from the hash) and `th` in the `ot`
//!   member of its tracestate, unless it already carries either.
//! - `proportional`: consistent probability sampling (the trace id's low 56
//!   bits or an arriving `rv`), multiplying an arriving `th`'s probability by
//!   the percentage; the new `th` is written.
//! - `equalizing`: the same, raising the threshold to the configured one.
//!
//! A `sampling.priority` attribute overrides: 0 drops, above 0 keeps. Spans
//! whose tracestate cannot be read, or that carry no randomness, are dropped
//! under `fail_closed: true` (the default) and kept otherwise. Every decision
//! is counted in `otelcol_processor_probabilistic_sampler_count_traces_sampled_total`
//! by `policy` and `sampled`.

use crate::facts::AttrValue;
use crate::sidecar::component::{BuildContext, Built, Component, Factory, ProcessorSettings, StagePlace};
use crate::sidecar::config::{At, ConfigError, child, get_bool, get_f64, get_str, get_u64};
use crate::sidecar::pipeline::Consumer;
use crate::sidecar::wire::{SpanRec, SpanView, any_value, replace_field};
use otel_export::wire::field::span;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ProcessorSettings> = Factory {
    component: Component {
        section: "processors",
        name: "probabilistic_sampler",
        settings: &[
            "sampling_percentage",
            "hash_seed",
            "mode",
            "sampling_precision",
            "fail_closed",
        ],
        // Logs-only settings in Go: a traces pipeline never reads them.
        ignored: &["attribute_source", "from_attribute", "sampling_priority"],
    },
    parse: |at, _| Ok(Box::new(ProbabilisticSamplerConfig::parse(at)?)),
};

/// How the decision is made (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Mode {
    /// `hash_seed`: Go's original FNV hash of the seed and trace id.
    HashSeed,
    /// `equalizing`: consistent sampling up to one threshold.
    Equalizing,
    /// `proportional`: consistent sampling, multiplying arriving probabilities.
    Proportional,
}

/// `probabilistic_sampler` settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub(crate) struct ProbabilisticSamplerConfig {
    /// `sampling_percentage`, as Go holds it (a float32).
    pub(crate) percentage: f32,
    /// `hash_seed`.
    pub(crate) hash_seed: u32,
    /// `mode` (`hash_seed` when unset, as Go's traces processor).
    pub(crate) mode: Mode,
    /// `sampling_precision`: hex digits of a written `th` (0: all 14).
    pub(crate) precision: u8,
    /// `fail_closed`: drop spans the sampler cannot decide.
    pub(crate) fail_closed: bool,
}

/// The smallest probability a threshold expresses: 2^-56.
const MIN_PROBABILITY: f64 = 1.0 / (1u64 << 56) as f64;
/// 2^56: the threshold that keeps nothing.
const NEVER: u64 = 1 << 56;
/// The randomness that passes every threshold.
const ALL_PROBABILITIES: u64 = NEVER - 1;
/// Hash buckets of the `hash_seed` mode.
const BUCKETS: u32 = 0x4000;

impl ProbabilisticSamplerConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        let percentage = get_f64(at, "sampling_percentage")?.unwrap_or(0.0) as f32;
        let ratio = f64::from(percentage) / 100.0;
        let bad = |why: String| ConfigError::new(child(at.path, "sampling_percentage"), why);
        if ratio.is_nan() || ratio.is_infinite() {
            return Err(bad(format!("sampling rate is invalid: {percentage}%")));
        }
        if ratio < 0.0 {
            return Err(bad(format!("negative sampling rate: {percentage}%")));
        }
        if ratio > 0.0 && ratio < MIN_PROBABILITY {
            return Err(bad(format!(
                "sampling rate is too small: {percentage}% (the least is 2^-56 of all spans)"
            )));
        }
        let hash_seed = match get_u64(at, "hash_seed")? {
            None => 0,
            Some(s) => u32::try_from(s)
                .map_err(|_| ConfigError::new(child(at.path, "hash_seed"), format!("must fit 32 bits, got {s}")))?,
        };
        let mode = match get_str(at, "mode")? {
            None | Some("") | Some("hash_seed") => Mode::HashSeed,
            Some("equalizing") => Mode::Equalizing,
            Some("proportional") => Mode::Proportional,
            Some(other) => {
                return Err(ConfigError::new(
                    child(at.path, "mode"),
                    format!("unsupported sampler mode {other:?}; accepted: hash_seed, equalizing, proportional"),
                ));
            }
        };
        let precision = match get_u64(at, "sampling_precision")? {
            None => 4,
            Some(p @ 0..=14) => p as u8,
            Some(p) => {
                return Err(ConfigError::new(
                    child(at.path, "sampling_precision"),
                    format!("sampling precision is too great, should be <= 14: {p}"),
                ));
            }
        };
        Ok(ProbabilisticSamplerConfig {
            percentage,
            hash_seed,
            mode,
            precision,
            fail_closed: get_bool(at, "fail_closed")?.unwrap_or(true),
        })
    }

    /// The sampler these settings make, as Go's `makeSampler`.
    pub(crate) fn sampler(&self) -> Sampler {
        let pct = self.percentage.min(100.0);
        if pct <= 0.0 {
            return Sampler::Never;
        }
        let ratio = (f64::from(pct) / 100.0).max(MIN_PROBABILITY);
        match self.mode {
            Mode::Equalizing => Sampler::Equalizing {
                threshold: threshold_for(ratio, self.precision).unwrap_or(0),
            },
            Mode::Proportional => Sampler::Proportional {
                ratio,
                precision: self.precision,
            },
            Mode::HashSeed => {
                // float32 arithmetic truncated, as Go has always computed it.
                let scaled = (pct * (BUCKETS as f32 / 100.0)) as u32;
                if scaled == 0 {
                    return Sampler::Never;
                }
                Sampler::Hash {
                    seed: self.hash_seed,
                    threshold: u64::from(BUCKETS - scaled.min(BUCKETS)) << 42,
                }
            }
        }
    }
}

impl ProcessorSettings for ProbabilisticSamplerConfig {
    fn build(&self, ctx: &BuildContext, at: StagePlace<'_>, next: Arc<dyn Consumer>) -> Result<Built, String> {
        let metrics = ctx.metrics();
        let counted = |policy: &str, sampled: &str| {
            metrics.counter(
                "otelcol_processor_probabilistic_sampler_count_traces_sampled",
                "Count of spans that were sampled or not, by the source of their randomness.",
                &[("processor", at.id), ("policy", policy), ("sampled", sampled)],
            )
        };
        let counters = Policy::ALL.map(|p| [counted(p.name(), "false"), counted(p.name(), "true")]);
        Ok(Built::stage(Arc::new(ProbabilisticSampler {
            sampler: self.sampler(),
            fail_closed: self.fail_closed,
            counters,
            next,
        })))
    }
}

/// A configured decision rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sampler {
    /// Percentage 0: nothing is kept (unless a priority says so).
    Never,
    /// `hash_seed` mode: the seed and the rejection threshold.
    Hash { seed: u32, threshold: u64 },
    /// `equalizing` mode: the configured threshold.
    Equalizing { threshold: u64 },
    /// `proportional` mode: the ratio and the precision of written thresholds.
    Proportional { ratio: f64, precision: u8 },
}

/// Where a span's randomness came from: the `policy` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// None found.
    Missing,
    /// The `hash_seed` hash of the trace id.
    TraceIdHash,
    /// The trace id's low 56 bits.
    TraceIdW3c,
    /// An arriving `rv`.
    SamplingRandomness,
    /// A `sampling.priority` attribute decided (or percentage 0).
    SamplingPriority,
}

impl Policy {
    const ALL: [Policy; 5] = [
        Policy::Missing,
        Policy::TraceIdHash,
        Policy::TraceIdW3c,
        Policy::SamplingRandomness,
        Policy::SamplingPriority,
    ];

    fn name(self) -> &'static str {
        match self {
            Policy::Missing => "missing_randomness",
            Policy::TraceIdHash => "trace_id_hash",
            Policy::TraceIdW3c => "trace_id_w3c",
            Policy::SamplingRandomness => "sampling_randomness",
            Policy::SamplingPriority => "sampling_priority",
        }
    }
}

/// The stage.
pub(crate) struct ProbabilisticSampler {
    sampler: Sampler,
    fail_closed: bool,
    /// By [`Policy::ALL`] index: (not sampled, sampled).
    counters: [[Arc<AtomicU64>; 2]; 5],
    next: Arc<dyn Consumer>,
}

impl Consumer for ProbabilisticSampler {
    fn consume(&self, spans: Vec<SpanRec>) {
        let mut kept = Vec::with_capacity(spans.len());
        let mut counts = [[0u64; 2]; 5];
        for mut s in spans {
            let Ok(view) = s.view() else {
                // Not a span the pipeline can read: as an undecidable one.
                let keep = !self.fail_closed;
                counts[0][usize::from(keep)] += 1;
                if keep {
                    kept.push(s);
                }
                continue;
            };
            let d = decide(self.sampler, self.fail_closed, &view);
            // `Policy::ALL` lists the variants in declaration order.
            let i = d.policy as usize;
            counts[i][usize::from(d.keep)] += 1;
            if !d.keep {
                continue;
            }
            if let Some(ts) = d.trace_state {
                let bytes = replace_field(s.bytes(), span::TRACE_STATE, ts.as_bytes());
                s.set_bytes(bytes::Bytes::from(bytes));
            }
            kept.push(s);
        }
        for (c, n) in self.counters.iter().zip(counts) {
            crate::sidecar::metrics::add(&c[0], n[0]);
            crate::sidecar::metrics::add(&c[1], n[1]);
        }
        if !kept.is_empty() {
            self.next.consume(kept);
        }
    }
}

/// One span's outcome.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// Whether the span goes on.
    pub(crate) keep: bool,
    /// The randomness source, for the counter.
    pub(crate) policy: Policy,
    /// The tracestate to write, when a kept span's changed.
    pub(crate) trace_state: Option<String>,
}

/// The `ot` member, as Go's sampling package reads it.
#[derive(Debug, Clone, Default)]
struct Ot<'a> {
    rv: Option<(Cow<'a, str>, u64)>,
    th: Option<(String, u64)>,
    extra: Vec<(&'a str, &'a str)>,
}

/// A tracestate split into its `ot` member and the others, in order.
#[derive(Debug, Clone, Default)]
struct Carrier<'a> {
    ot: Ot<'a>,
    others: Vec<(&'a str, &'a str)>,
}

impl Carrier<'_> {
    fn serialize(&self) -> String {
        let mut out = String::new();
        let mut ot = Vec::new();
        if let Some((rv, _)) = &self.ot.rv {
            ot.push(format!("rv:{rv}"));
        }
        if let Some((th, _)) = &self.ot.th {
            ot.push(format!("th:{th}"));
        }
        ot.extend(self.ot.extra.iter().map(|(k, v)| format!("{k}:{v}")));
        if !ot.is_empty() {
            out.push_str("ot=");
            out.push_str(&ot.join(";"));
        }
        for (k, v) in &self.others {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

/// Parses a span's tracestate; `None` when Go's reader would refuse it.
fn carrier(trace_state: &str) -> Option<Carrier<'_>> {
    let mut c = Carrier::default();
    if trace_state.trim().is_empty() {
        return Some(c);
    }
    // The W3C list: members and their order, with the W3C rules.
    let parsed = otel_propagation::tracestate::parse_tracestate([trace_state]).ok()?;
    let mut ot_value = None;
    for (k, _) in otel_propagation::tracestate::members(&parsed) {
        // Values borrowed from the input (the parsed list owns copies).
        let (key, value) = find_member(trace_state, &k)?;
        if key == "ot" {
            ot_value = Some(value);
        } else {
            c.others.push((key, value));
        }
    }
    if let Some(v) = ot_value {
        c.ot = parse_ot(v)?;
    }
    Some(c)
}

/// The first member of `header` with key `key`, borrowed from it.
fn find_member<'a>(header: &'a str, key: &str) -> Option<(&'a str, &'a str)> {
    header.split(',').find_map(|m| {
        let (k, v) = m.trim_matches([' ', '\t']).split_once('=')?;
        (k == key).then_some((k, v))
    })
}

/// The `ot` value: `key:value` pairs joined by `;` (keys `[a-z][a-z0-9]*`,
/// values `[A-Za-z0-9._-]*`), at most 256 bytes; `rv` is 14 hex digits and
/// `th` 1 to 14.
fn parse_ot(value: &str) -> Option<Ot<'_>> {
    if value.len() > 256 || value.is_empty() {
        return None;
    }
    let mut ot = Ot::default();
    for member in value.split(';') {
        let (k, v) = member.split_once(':')?;
        let mut kb = k.bytes();
        if !kb.next().is_some_and(|c| c.is_ascii_lowercase())
            || !kb.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return None;
        }
        if !v
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return None;
        }
        match k {
            "rv" => {
                if v.len() != 14 {
                    return None;
                }
                ot.rv = Some((Cow::Borrowed(v), u64::from_str_radix(v, 16).ok()?));
            }
            "th" => {
                if v.is_empty() || v.len() > 14 {
                    return None;
                }
                let t = u64::from_str_radix(v, 16).ok()? << (4 * (14 - v.len()));
                ot.th = Some((v.to_owned(), t));
            }
            _ => ot.extra.push((k, v)),
        }
    }
    Some(ot)
}

/// FNV-1a (32 bit) of the seed's little-endian bytes then `bytes`, made into
/// 56 bits of randomness whose top 14 bits order spans as the Go processor's
/// buckets do (kept when `bucket < scaled` is `randomness >= threshold`).
fn hash_randomness(bytes: &[u8], seed: u32) -> u64 {
    let h = crate::hash::fnv1a32(seed.to_le_bytes().into_iter().chain(bytes.iter().copied()));
    let bucket = u64::from(h & (BUCKETS - 1));
    let top = u64::from(BUCKETS) - 1 - bucket;
    let unused = u64::from(h >> 14);
    let mixed = unused ^ (unused << 10);
    (top << 42) | (mixed << 14) | bucket
}

/// The threshold for probability `p` with `precision` hex digits, as Go's
/// `ProbabilityToThresholdWithPrecision`; `None` outside `[2^-56, 1]`.
pub(crate) fn threshold_for(p: f64, precision: u8) -> Option<u64> {
    let precision = if precision == 0 { 14 } else { i32::from(precision) };
    if !(MIN_PROBABILITY..=1.0).contains(&p) {
        return None;
    }
    if p == 1.0 {
        return Some(0);
    }
    // frexp's exponent: x = m * 2^e with m in [0.5, 1) (x is normal here).
    let exp = |x: f64| -> i32 {
        if x == 0.0 {
            0
        } else {
            ((x.to_bits() >> 52) & 0x7ff) as i32 - 1022
        }
    };
    let (ef, er) = (exp(p), exp(1.0 - p));
    let digits = 14.min((precision + ef / -4).max(precision + er / -4));
    let scaled = (p * NEVER as f64).round() as u64;
    let mut t = NEVER - scaled;
    let shift = 4 * (14 - digits);
    if shift != 0 {
        t += 1 << (shift - 1);
        t >>= shift;
        t <<= shift;
    }
    Some(t)
}

/// The `th` encoding of a threshold: hex without trailing zeros, `0` for
/// keep-all, empty for keep-nothing.
fn encode_threshold(t: u64) -> String {
    if t >= NEVER {
        return String::new();
    }
    if t == 0 {
        return "0".into();
    }
    let s = format!("{t:014x}");
    s.trim_end_matches('0').to_owned()
}

/// What `sampling.priority` says: `Some(true)` keep, `Some(false)` drop.
fn priority(view: &SpanView<'_>) -> Option<bool> {
    let (_, v) = view.attributes().find(|(k, _)| *k == "sampling.priority")?;
    let n = match any_value(v) {
        AttrValue::Int(i) => i as f64,
        AttrValue::Double(d) => d,
        AttrValue::Str(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if n == 0.0 {
        Some(false)
    } else if n > 0.0 {
        Some(true)
    } else {
        None
    }
}

/// Decides one span as Go's `commonShouldSampleLogic` does for traces.
pub(crate) fn decide(sampler: Sampler, fail_closed: bool, view: &SpanView<'_>) -> Decision {
    let tid = view.trace_id;
    let has_tid = tid != [0; 16];
    let parsed = carrier(view.trace_state);
    // Randomness, its source, the carrier kept for writing, and whether the
    // span is undecidable.
    let (rnd, mut policy, mut carrier, mut failed) = match sampler {
        Sampler::Never => (ALL_PROBABILITIES, Policy::SamplingPriority, parsed, false),
        Sampler::Hash { seed, .. } => {
            let (rnd, policy) = if has_tid {
                (hash_randomness(&tid, seed), Policy::TraceIdHash)
            } else {
                (ALL_PROBABILITIES, Policy::Missing)
            };
            match parsed {
                None => (rnd, policy, None, true),
                // Consistent sampling already in use: leave it alone.
                Some(c) if c.ot.rv.is_some() || c.ot.th.is_some() => (rnd, policy, None, true),
                Some(mut c) => {
                    // No sampling information yet: the hash becomes the span's `rv`.
                    c.ot.rv = Some((Cow::Owned(format!("{rnd:014x}")), rnd));
                    (rnd, policy, Some(c), false)
                }
            }
        }
        Sampler::Equalizing { .. } | Sampler::Proportional { .. } => match parsed {
            None => (ALL_PROBABILITIES, Policy::Missing, None, true),
            Some(c) => {
                let (rnd, policy) = match &c.ot.rv {
                    Some((_, r)) => (*r, Policy::SamplingRandomness),
                    None if has_tid => (
                        u64::from_be_bytes([0, tid[9], tid[10], tid[11], tid[12], tid[13], tid[14], tid[15]]),
                        Policy::TraceIdW3c,
                    ),
                    None => (ALL_PROBABILITIES, Policy::Missing),
                };
                (rnd, policy, Some(c), false)
            }
        },
    };
    // Consistency: randomness is needed, and an arriving `th` must pass it.
    if !failed {
        if policy == Policy::Missing {
            failed = true;
        } else if let Some(c) = carrier.as_mut()
            && let Some((_, th)) = c.ot.th
            && rnd < th
        {
            c.ot.th = None;
            failed = true;
        }
    }
    let mut threshold = if failed {
        if fail_closed { NEVER } else { 0 }
    } else {
        let arriving = carrier.as_ref().and_then(|c| c.ot.th.as_ref().map(|t| t.1));
        match sampler {
            Sampler::Never => NEVER,
            Sampler::Hash { threshold, .. } => threshold,
            Sampler::Equalizing { threshold } => arriving.map_or(threshold, |a| a.max(threshold)),
            Sampler::Proportional { ratio, precision } => {
                let incoming = arriving.map_or(1.0, |a| (NEVER - a) as f64 / NEVER as f64);
                threshold_for(incoming * ratio, precision).unwrap_or(NEVER)
            }
        }
    };
    if let Some(keep) = priority(view) {
        threshold = if keep { 0 } else { NEVER };
        policy = Policy::SamplingPriority;
    }
    let keep = rnd >= threshold;
    let mut trace_state = None;
    if keep && let Some(mut c) = carrier {
        // A threshold only ever rises (probability only falls).
        let lower = c.ot.th.as_ref().is_some_and(|(_, t)| *t > threshold);
        if !lower {
            let enc = encode_threshold(threshold);
            c.ot.th = (!enc.is_empty()).then_some((enc, threshold));
        }
        let s = c.serialize();
        trace_state = (s != view.trace_state).then_some(s);
    }
    Decision {
        keep,
        policy,
        trace_state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::testing::{Recorder, build, context, metric, processor, spans, trace};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message as _;

    fn tid(hex: &str) -> [u8; 16] {
        let mut t = [0u8; 16];
        for (i, b) in t.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        t
    }

    fn span(trace_id: [u8; 16], trace_state: &str, priority: Option<Value>) -> Vec<u8> {
        Span {
            trace_id: trace_id.to_vec(),
            span_id: vec![0, 0, 0, 0, 0xfe, 0xfe, 0xfe, 0xfe],
            trace_state: trace_state.to_owned(),
            name: "s".into(),
            attributes: priority
                .map(|v| KeyValue {
                    key: "sampling.priority".into(),
                    value: Some(AnyValue { value: Some(v) }),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn config(pct: f32, mode: Mode, precision: u8, fail_closed: bool) -> ProbabilisticSamplerConfig {
        ProbabilisticSamplerConfig {
            percentage: pct,
            hash_seed: 4242,
            mode,
            precision,
            fail_closed,
        }
    }

    /// The Go processor's own 100 expectations for the legacy hash at 50%.
    #[test]
    fn hash_seed_decisions_match_go() {
        let table = include_str!("../../../tests/data/go_hash_seed_50pct.txt");
        let mut rows = 0;
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let w: Vec<&str> = line.split(' ').collect();
            let mut c = config(50.0, Mode::HashSeed, 4, false);
            c.hash_seed = w[0].parse().unwrap();
            let bytes = span(tid(w[1]), "", None);
            let d = decide(c.sampler(), false, &SpanView::parse(&bytes).unwrap());
            assert_eq!(d.keep, w[2] == "true", "seed {} trace {}", w[0], w[1]);
            assert_eq!(d.policy, Policy::TraceIdHash);
            rows += 1;
        }
        assert_eq!(rows, 100);
    }

    /// Go's thresholds for kept spans in `hash_seed` mode (14-bit rounding
    /// shows: 10% is `e668`, a third `aaac`), with an `rv` that passes them.
    #[test]
    fn hash_seed_writes_rv_and_th() {
        for (pct, th) in [
            (100.0, "0"),
            (75.0, "4"),
            (50.0, "8"),
            (25.0, "c"),
            (10.0, "e668"),
            (100.0 / 3.0, "aaac"),
        ] {
            let sampler = config(pct, Mode::HashSeed, 4, true).sampler();
            let mut found = 0;
            for n in 0u64..10_000 {
                let mut t = [0u8; 16];
                t[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
                t[8..].copy_from_slice(&(n ^ 0x5555).to_be_bytes());
                let bytes = span(t, "vendor=x", None);
                let d = decide(sampler, true, &SpanView::parse(&bytes).unwrap());
                if !d.keep {
                    continue;
                }
                let ts = d.trace_state.unwrap();
                let ot = ts.strip_prefix("ot=rv:").unwrap();
                let (rv, rest) = ot.split_once(";th:").unwrap();
                assert_eq!(rest, format!("{th},vendor=x"), "{pct}%");
                let t = u64::from_str_radix(th, 16).unwrap() << (4 * (14 - th.len()));
                assert!(u64::from_str_radix(rv, 16).unwrap() >= t);
                found += 1;
            }
            assert!(found > 900, "{pct}%: {found}");
        }
        // An arriving rv or th is left alone, and the span is undecidable.
        let bytes = span(tid("fefefefefefefefefe80000000000000"), "ot=th:8", None);
        let view = SpanView::parse(&bytes).unwrap();
        assert!(!decide(config(100.0, Mode::HashSeed, 4, true).sampler(), true, &view).keep);
        let open = decide(config(100.0, Mode::HashSeed, 4, false).sampler(), false, &view);
        assert!(open.keep && open.trace_state.is_none());
    }

    /// The Go processor's tracestate expectations for the consistent modes:
    /// (trace id, percentage, precision, arriving tracestate, priority,
    /// equalizing result, proportional result); `None` is dropped.
    #[test]
    fn consistent_modes_match_go() {
        const DEFAULT: &str = "fefefefefefefefefe80000000000000";
        const ALL_F: &str = "111111111111111111ffffffffffffff";
        type Row = (
            &'static str,
            f32,
            u8,
            &'static str,
            Option<i64>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let rows: &[Row] = &[
            (DEFAULT, 100.0, 0, "", None, Some("ot=th:0"), Some("ot=th:0")),
            (DEFAULT, 50.0, 0, "", None, Some("ot=th:8"), Some("ot=th:8")),
            (
                "ddddddddddddddddddc0000000000000",
                25.0,
                0,
                "",
                None,
                Some("ot=th:c"),
                Some("ot=th:c"),
            ),
            ("ddddddddddddddddddb0000000000000", 25.0, 0, "", None, None, None),
            (
                DEFAULT,
                1.0,
                0,
                "ot=rv:FD70A3D70A3D71",
                None,
                Some("ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71"),
                Some("ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71"),
            ),
            (
                DEFAULT,
                1.0,
                4,
                "ot=rv:FD70A3D70A3D71",
                None,
                Some("ot=rv:FD70A3D70A3D71;th:fd70a"),
                Some("ot=rv:FD70A3D70A3D71;th:fd70a"),
            ),
            (DEFAULT, 1.0, 3, "ot=rv:FD70A3D70A3D71", None, None, None),
            (DEFAULT, 1.0, 0, "ot=rv:FD70A3D70A3D70", None, None, None),
            (DEFAULT, 49.0, 0, "", None, None, None),
            (
                DEFAULT,
                1.0,
                0,
                "ot=rv:fd70B000000000",
                None,
                Some("ot=rv:fd70B000000000;th:fd70a3d70a3d71"),
                Some("ot=rv:fd70B000000000;th:fd70a3d70a3d71"),
            ),
            (
                "a0a0a0a0a0a0a0a0a0fe000000000000",
                1.0,
                4,
                "",
                None,
                Some("ot=th:fd70a"),
                Some("ot=th:fd70a"),
            ),
            (DEFAULT, 1.0, 0, "", Some(2), Some("ot=th:0"), Some("ot=th:0")),
            (DEFAULT, 99.0, 0, "", Some(0), None, None),
            (
                DEFAULT,
                50.0,
                0,
                "ot=rv:90000000000000;th:80000000000000",
                None,
                Some("ot=rv:90000000000000;th:8"),
                None,
            ),
            (DEFAULT, 25.0, 0, "ot=th:8", None, None, None),
            (
                "ffffffffffffffffffffffffffffffff",
                25.0,
                0,
                "ot=th:8",
                None,
                Some("ot=th:c"),
                Some("ot=th:e"),
            ),
            (
                DEFAULT,
                50.0,
                0,
                "ot=rv:c0000000000000;th:8",
                None,
                Some("ot=rv:c0000000000000;th:8"),
                Some("ot=rv:c0000000000000;th:c"),
            ),
            (
                DEFAULT,
                100.0,
                0,
                "ot=rv:40000000000000;th:8",
                None,
                Some("ot=rv:40000000000000;th:0"),
                Some("ot=rv:40000000000000;th:0"),
            ),
            (
                DEFAULT,
                40.0,
                3,
                "ot=rv:a0000000000000",
                None,
                Some("ot=rv:a0000000000000;th:99a"),
                Some("ot=rv:a0000000000000;th:99a"),
            ),
            (
                "a0a0a0a0a0a0a0a0a0d0000000000000",
                40.0,
                6,
                "ot=th:8",
                None,
                Some("ot=th:99999a"),
                Some("ot=th:cccccd"),
            ),
            (
                "a0a0a0a0a0a0a0a0a0b0000000000000",
                40.0,
                3,
                "ot=th:8",
                None,
                Some("ot=th:99a"),
                None,
            ),
            ("a0a0a0a0a0a0a0a0a080000000000000", 40.0, 3, "ot=th:8", None, None, None),
            (DEFAULT, 200.0, 0, "", None, Some("ot=th:0"), Some("ot=th:0")),
            (
                ALL_F,
                100.0 / 16384.0,
                0,
                "ot=th:fffc",
                None,
                Some("ot=th:fffc"),
                Some("ot=th:fffffff"),
            ),
            (
                ALL_F,
                (1.0 - 8e-7) * 100.0,
                10,
                "",
                None,
                Some("ot=th:00000cccccccd"),
                Some("ot=th:00000cccccccd"),
            ),
            (
                ALL_F,
                0.0625,
                0,
                "ot=th:fffffffffffff8",
                None,
                Some("ot=th:fffffffffffff8"),
                None,
            ),
        ];
        for (i, (t, pct, precision, ts, prio, eq, prop)) in rows.iter().enumerate() {
            for (mode, want) in [(Mode::Equalizing, eq), (Mode::Proportional, prop)] {
                let sampler = config(*pct, mode, *precision, false).sampler();
                let bytes = span(tid(t), ts, prio.map(Value::IntValue));
                let d = decide(sampler, false, &SpanView::parse(&bytes).unwrap());
                let got = d
                    .keep
                    .then(|| d.trace_state.clone().unwrap_or_else(|| (*ts).to_owned()));
                assert_eq!(got.as_deref(), *want, "row {i} {mode:?}");
            }
        }
    }

    /// Under `fail_closed`, spans the sampler cannot decide are dropped.
    #[test]
    fn undecidable_spans_are_dropped_when_failing_closed() {
        let default = tid("fefefefefefefefefe80000000000000");
        for (t, ts) in [
            ([0u8; 16], ""),
            (default, "ot=rv:abababababababab"),
            (default, "ot=th:abababababababab"),
            (default, "ot=th:-1"),
            (tid("ffffffffffffffffff70000000000000"), "ot=th:8"),
            (default, "ot=th:8;rv:70000000000000"),
            (default, "not a tracestate"),
        ] {
            for mode in [Mode::Equalizing, Mode::Proportional, Mode::HashSeed] {
                let bytes = span(t, ts, None);
                let view = SpanView::parse(&bytes).unwrap();
                let d = decide(config(100.0, mode, 4, true).sampler(), true, &view);
                assert!(!d.keep, "{mode:?} {ts:?}");
                // A priority still decides.
                let bytes = span(t, ts, Some(Value::StringValue("1".into())));
                let view = SpanView::parse(&bytes).unwrap();
                let d = decide(config(100.0, mode, 4, true).sampler(), true, &view);
                assert!(d.keep && d.policy == Policy::SamplingPriority, "{mode:?} {ts:?}");
            }
        }
    }

    #[test]
    fn settings_are_checked_as_go_checks_them() {
        let c = |yaml: &str| {
            crate::sidecar::CollectorConfig::parse_with_env(
                &format!(
                    "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: 127.0.0.1:0}}}}}}}}\n\
                     processors: {{probabilistic_sampler: {yaml}}}\n\
                     exporters: {{debug: {{}}}}\n\
                     service: {{pipelines: {{traces: {{receivers: [otlp], processors: [probabilistic_sampler], exporters: [debug]}}}}}}\n"
                ),
                &|_| None,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert!(c("{sampling_percentage: 15.3, hash_seed: 22}").is_ok());
        assert!(c("{sampling_percentage: 10, mode: proportional, sampling_precision: 14, fail_closed: false}").is_ok());
        for (yaml, says) in [
            ("{sampling_percentage: -1}", "negative sampling rate"),
            ("{sampling_percentage: 1e-20}", "too small"),
            (
                "{sampling_percentage: 10, mode: downsample}",
                "unsupported sampler mode",
            ),
            ("{sampling_percentage: 10, sampling_precision: 15}", "<= 14"),
            ("{sampling_percentage: 10, hash_seed: 5000000000}", "32 bits"),
            ("{sampling_percentage: 10, extra: 1}", "extra"),
        ] {
            let e = c(yaml).unwrap_err();
            assert!(e.contains(says) && e.contains("probabilistic_sampler"), "{yaml}: {e}");
        }
    }

    #[tokio::test]
    async fn the_stage_keeps_about_the_share_and_counts_every_span() {
        let (ctx, metrics, _stop) = context();
        let settings = processor("{probabilistic_sampler: {sampling_percentage: 25, mode: proportional}}");
        let out = Recorder::new();
        let built = build(&ctx, &settings, "probabilistic_sampler", out.clone());
        let live = metrics.live();
        for t in 1..=4000u128 {
            let id = t.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            built.head.consume(spans("a", &trace(id, 2), &live));
        }
        let kept = out.take();
        // Whole traces: both spans of a trace share the decision.
        assert_eq!(kept.len() % 2, 0);
        let share = kept.len() as f64 / 8000.0;
        assert!((share - 0.25).abs() < 0.03, "{share}");
        for s in &kept {
            assert_eq!(s.view().unwrap().trace_state, "ot=th:c");
        }
        let line = "otelcol_processor_probabilistic_sampler_count_traces_sampled_total{processor=\"probabilistic_sampler\",policy=\"trace_id_w3c\",sampled=";
        let yes = metric(&metrics, &format!("{line}\"true\"}}"));
        let no = metric(&metrics, &format!("{line}\"false\"}}"));
        assert_eq!(yes as usize, kept.len());
        assert_eq!((yes + no) as usize, 8000);
    }
}
