//! The consistent probability sampler (`th`/`rv`), and a mode compatible with
//! opentelemetry_sdk's `TraceIdRatioBased`.

use crate::ot::{with_threshold, without_threshold};
use crate::parent::Parent;
use crate::threshold::{DEFAULT_PRECISION, Threshold};
use opentelemetry::trace::{Link, SpanKind, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};
use std::fmt;

/// A probability that is not a number in `[0, 1]`, or a precision outside `1..=14`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbabilityError {
    what: &'static str,
    value: String,
}

impl fmt::Display for ProbabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.what {
            "precision" => write!(f, "threshold precision must be 1 to 14 hex digits, got {}", self.value),
            _ => write!(f, "sampling probability must be a number in [0, 1], got {}", self.value),
        }
    }
}

impl std::error::Error for ProbabilityError {}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Keep when R >= T, and say so in `ot=th`.
    Consistent(Option<Threshold>),
    /// opentelemetry_sdk's TraceIdRatioBased: keep when the low 64 bits of the
    /// trace id, shifted right once, are below p * 2^63.
    SdkCompatible(u64),
}

/// Samples a fraction `p` of traces, consistently across services and SDKs.
///
/// This is OpenTelemetry's consistent probability sampler, the successor of
/// `TraceIdRatioBased`: the randomness `R` of a trace is the `rv` sub-key of the
/// parent's `ot` tracestate member when present, else the least significant 56
/// bits of the trace id; the rejection threshold is `T = (1 - p) * 2^56`, rounded
/// to 4 significant hex digits by default; a span is kept when `R >= T`. Since
/// every participant compares the same `R`, a trace kept at probability `p` is
/// kept at every `p' >= p`. A kept span's tracestate carries `ot=th:<T>` (other
/// `ot` sub-keys and other members kept, `ot` moved to the front); a dropped
/// span's carries no `th`. `p = 1` writes `th:0`; `p = 0` never samples.
///
/// The decision ignores the parent's sampled flag; wrap it in
/// [`ParentBased`](crate::ParentBased) to follow callers.
///
/// # Differences from opentelemetry_sdk's `TraceIdRatioBased`
///
/// `TraceIdRatioBased` keeps the traces whose low 64 trace-id bits are
/// *smallest* and writes nothing into the tracestate; this sampler keeps those
/// whose low 56 bits are *largest* and records its threshold. With the same `p`
/// the two keep the same share of traffic but different traces. For fleets
/// where some services still run `TraceIdRatioBased` and make independent
/// decisions on the same trace, [`ProbabilitySampler::sdk_compatible`] makes
/// exactly its decisions (and, not being consistent in the `th` sense, erases
/// `th`).
///
/// ```
/// use otel_sampling::ProbabilitySampler;
/// use opentelemetry_sdk::trace::{SdkTracerProvider, Sampler};
///
/// let sampler = ProbabilitySampler::new(0.1).unwrap();
/// assert_eq!(sampler.threshold_str(), Some("e666".to_owned()));
/// let provider = SdkTracerProvider::builder()
///     .with_sampler(Sampler::ParentBased(Box::new(sampler)))
///     .build();
/// # drop(provider);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ProbabilitySampler {
    probability: f64,
    mode: Mode,
    /// `ot=th:<T>` for kept roots, built once: cloning it skips formatting and
    /// opentelemetry's key/value validation on every kept trace.
    root_state: TraceState,
}

fn check(p: f64) -> Result<f64, ProbabilityError> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(ProbabilityError {
            what: "probability",
            value: p.to_string(),
        })
    }
}

impl ProbabilitySampler {
    /// Samples probability `p` with the default precision of 4 hex digits.
    ///
    /// # Errors
    ///
    /// When `p` is outside `[0, 1]` or NaN.
    pub fn new(p: f64) -> Result<Self, ProbabilityError> {
        Self::with_precision(p, DEFAULT_PRECISION)
    }

    /// Samples probability `p`, encoding the threshold with `precision`
    /// significant hex digits (1 to 14).
    ///
    /// # Errors
    ///
    /// When `p` is outside `[0, 1]` or NaN, or `precision` is outside `1..=14`.
    pub fn with_precision(p: f64, precision: u8) -> Result<Self, ProbabilityError> {
        let p = check(p)?;
        if !(1..=14).contains(&precision) {
            return Err(ProbabilityError {
                what: "precision",
                value: precision.to_string(),
            });
        }
        let threshold = Threshold::from_probability(p, precision);
        let root_state = threshold
            .map(|t| with_threshold(&TraceState::NONE, t))
            .unwrap_or_default();
        Ok(ProbabilitySampler {
            probability: p,
            mode: Mode::Consistent(threshold),
            root_state,
        })
    }

    /// Makes the same decisions as opentelemetry_sdk's `TraceIdRatioBased(p)`,
    /// for fleets migrating from it. Writes no `th` (and erases an inherited one).
    ///
    /// # Errors
    ///
    /// When `p` is outside `[0, 1]` or NaN.
    pub fn sdk_compatible(p: f64) -> Result<Self, ProbabilityError> {
        let p = check(p)?;
        let bound = if p >= 1.0 {
            u64::MAX
        } else {
            (p * (1u64 << 63) as f64) as u64
        };
        Ok(ProbabilitySampler {
            probability: p,
            mode: Mode::SdkCompatible(bound),
            root_state: TraceState::NONE,
        })
    }

    /// The configured probability.
    pub fn probability(&self) -> f64 {
        self.probability
    }

    /// The rejection threshold, `None` for `p = 0` and in compatible mode.
    pub fn threshold(&self) -> Option<Threshold> {
        match self.mode {
            Mode::Consistent(t) => t,
            Mode::SdkCompatible(_) => None,
        }
    }

    /// The `th` value written on kept spans, as text.
    pub fn threshold_str(&self) -> Option<String> {
        self.threshold().map(|t| t.encode().as_str().to_owned())
    }

    /// The decision alone, for a trace with the given parent.
    pub(crate) fn decide(&self, parent: &Parent<'_>, trace_id: TraceId) -> SamplingResult {
        match self.mode {
            Mode::Consistent(None) => drop_result(parent),
            Mode::Consistent(Some(threshold)) => {
                let ot = parent.ot();
                let r = parent.randomness(&ot, trace_id);
                if threshold.should_sample(r) {
                    SamplingResult {
                        decision: SamplingDecision::RecordAndSample,
                        attributes: Vec::new(),
                        trace_state: if parent.has_trace_state() {
                            with_threshold(parent.trace_state, threshold)
                        } else {
                            self.root_state.clone()
                        },
                    }
                } else {
                    drop_result(parent)
                }
            }
            Mode::SdkCompatible(bound) => {
                let bytes = trace_id.to_bytes();
                let mut low = [0u8; 8];
                low.copy_from_slice(&bytes[8..]);
                let keep = bound == u64::MAX || (u64::from_be_bytes(low) >> 1) < bound;
                SamplingResult {
                    decision: if keep {
                        SamplingDecision::RecordAndSample
                    } else {
                        SamplingDecision::Drop
                    },
                    attributes: Vec::new(),
                    trace_state: without_threshold(parent.trace_state),
                }
            }
        }
    }
}

/// A drop that leaves no `th` behind.
pub(crate) fn drop_result(parent: &Parent<'_>) -> SamplingResult {
    SamplingResult {
        decision: SamplingDecision::Drop,
        attributes: Vec::new(),
        trace_state: if parent.has_trace_state() {
            without_threshold(parent.trace_state)
        } else {
            Default::default()
        },
    }
}

impl ShouldSample for ProbabilitySampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        Parent::with(parent_context, |parent| self.decide(parent, trace_id))
    }
}

/// Samples everything. This is the default root sampler, so it writes nothing
/// into the tracestate (no allocation per trace): an inherited `th` is erased,
/// as for any decision that is not a probability decision. For `ot=th:0` on
/// every kept trace, use `ProbabilitySampler::new(1.0)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlwaysOn;

impl ShouldSample for AlwaysOn {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        Parent::with(parent_context, |parent| {
            let mut result = drop_result(parent);
            result.decision = SamplingDecision::RecordAndSample;
            result
        })
    }
}

/// Samples nothing; erases any inherited `th`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlwaysOff;

impl ShouldSample for AlwaysOff {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        Parent::with(parent_context, drop_result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags};
    use opentelemetry_sdk::trace::Sampler;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn sample(s: &dyn ShouldSample, cx: Option<&Context>, trace_id: u128) -> SamplingResult {
        s.should_sample(cx, TraceId::from(trace_id), "span", &SpanKind::Internal, &[], &[])
    }

    fn parent(trace_id: u128, flags: u8, ts: &str) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(trace_id),
            SpanId::from(1),
            TraceFlags::new(flags),
            true,
            if ts.is_empty() {
                TraceState::NONE
            } else {
                TraceState::from_str(ts).unwrap()
            },
        ))
    }

    #[test]
    fn rejects_bad_probabilities_and_precisions() {
        for p in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
            let err = ProbabilitySampler::new(p).unwrap_err();
            assert!(err.to_string().contains("[0, 1]"), "{err}");
            assert!(ProbabilitySampler::sdk_compatible(p).is_err());
        }
        assert!(
            ProbabilitySampler::with_precision(0.5, 0)
                .unwrap_err()
                .to_string()
                .contains("1 to 14")
        );
        assert!(ProbabilitySampler::with_precision(0.5, 15).is_err());
    }

    #[test]
    fn keeps_randomness_at_or_above_threshold() {
        let s = ProbabilitySampler::new(0.5).unwrap(); // T = 0x80000000000000
        let keep = sample(&s, None, 0x0080_0000_0000_0000);
        assert_eq!(keep.decision, SamplingDecision::RecordAndSample);
        assert_eq!(keep.trace_state.header(), "ot=th:8");
        let drop = sample(&s, None, 0x007f_ffff_ffff_ffff);
        assert_eq!(drop.decision, SamplingDecision::Drop);
        assert_eq!(drop.trace_state, TraceState::NONE);
        // Only the low 56 bits count.
        assert_eq!(
            sample(&s, None, 0xffff_ffff_ffff_ffff_ff00_0000_0000_0000).decision,
            SamplingDecision::Drop
        );
    }

    #[test]
    fn p_one_and_zero() {
        let one = ProbabilitySampler::new(1.0).unwrap();
        let r = sample(&one, None, 0);
        assert_eq!(
            (r.decision, r.trace_state.header()),
            (SamplingDecision::RecordAndSample, "ot=th:0".to_owned())
        );
        let zero = ProbabilitySampler::new(0.0).unwrap();
        assert_eq!(sample(&zero, None, u128::MAX).decision, SamplingDecision::Drop);
        assert_eq!(zero.threshold(), None);
    }

    #[test]
    fn rv_overrides_trace_id_and_is_kept() {
        let s = ProbabilitySampler::new(0.5).unwrap();
        // Trace id randomness says drop; rv says keep.
        let cx = parent(1, 0x01, "ot=rv:ffffffffffffff;x:1,vendor=v");
        let r = sample(&s, Some(&cx), 1);
        assert_eq!(r.decision, SamplingDecision::RecordAndSample);
        assert_eq!(r.trace_state.header(), "ot=th:8;rv:ffffffffffffff;x:1,vendor=v");
        // And the reverse.
        let cx = parent(u128::MAX, 0x03, "ot=rv:00000000000000");
        assert_eq!(sample(&s, Some(&cx), u128::MAX).decision, SamplingDecision::Drop);
    }

    #[test]
    fn invalid_rv_falls_back_to_the_trace_id() {
        let s = ProbabilitySampler::new(0.5).unwrap();
        let cx = parent(u128::MAX, 0x03, "ot=rv:zz");
        assert_eq!(
            sample(&s, Some(&cx), u128::MAX).decision,
            SamplingDecision::RecordAndSample
        );
    }

    #[test]
    fn drop_erases_inherited_th() {
        let s = ProbabilitySampler::new(0.5).unwrap();
        let cx = parent(1, 0x03, "a=1,ot=th:0;rv:00000000000000");
        let r = sample(&s, Some(&cx), 1);
        assert_eq!(r.decision, SamplingDecision::Drop);
        assert_eq!(r.trace_state.header(), "ot=rv:00000000000000,a=1");
    }

    #[test]
    fn compatible_mode_matches_the_sdk() {
        for p in [0.0, 0.001, 0.1, 0.5, 0.9, 1.0] {
            let ours = ProbabilitySampler::sdk_compatible(p).unwrap();
            let sdk = Sampler::TraceIdRatioBased(p);
            let mut id: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
            for _ in 0..20_000 {
                id = id
                    .wrapping_mul(0x2545_f491_4f6c_dd1d_1234_5678_9abc_def1)
                    .wrapping_add(0x1442_6950_4088_8963);
                assert_eq!(
                    sample(&ours, None, id).decision,
                    sample(&sdk, None, id).decision,
                    "p={p} id={id:x}"
                );
            }
        }
        let cx = parent(1, 1, "ot=th:8");
        assert_eq!(
            sample(&ProbabilitySampler::sdk_compatible(1.0).unwrap(), Some(&cx), 1).trace_state,
            TraceState::NONE
        );
    }

    #[test]
    fn always_on_and_off() {
        let cx = parent(5, 0x03, "ot=th:c");
        let on = sample(&AlwaysOn, Some(&cx), 5);
        assert_eq!(
            (on.decision, on.trace_state),
            (SamplingDecision::RecordAndSample, TraceState::NONE)
        );
        assert_eq!(
            sample(&AlwaysOn, None, 5).trace_state,
            TraceState::NONE,
            "nothing written at the root"
        );
        let off = sample(&AlwaysOff, Some(&cx), 5);
        assert_eq!(
            (off.decision, off.trace_state),
            (SamplingDecision::Drop, TraceState::NONE)
        );
    }

    proptest! {
        #[test]
        fn never_panics(p in proptest::num::f64::ANY, ts in "[a-z0-9=,;:@ ]{0,40}", id in any::<u128>()) {
            if let Ok(s) = ProbabilitySampler::new(p) {
                let cx = match TraceState::from_str(&ts) {
                    Ok(state) => Context::new().with_remote_span_context(SpanContext::new(TraceId::from(id | 1), SpanId::from(1), TraceFlags::SAMPLED, true, state)),
                    Err(_) => Context::new(),
                };
                let _ = sample(&s, Some(&cx), id);
            }
        }
    }
}
