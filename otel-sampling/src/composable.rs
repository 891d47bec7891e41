//! The composable samplers of the OpenTelemetry sampling specification
//! (`CompositeSampler`, `ComposableSampler` and the built-in
//! `ComposableAlwaysOn`, `ComposableAlwaysOff`, `ComposableProbability`,
//! `ComposableParentThreshold`, `ComposableRuleBased` and
//! `ComposableAnnotating`).
//!
//! A [`ComposableSampler`] does not decide: it returns a [`SamplingIntent`],
//! a 56-bit rejection threshold (or none, to drop) and whether the threshold
//! can be trusted for span-to-metrics counting. [`CompositeSampler`] makes the
//! decision (the trace's randomness `R >= T`) and keeps the tracestate's
//! `ot=th` in step: written for sampled spans with a reliable threshold,
//! erased otherwise, `rv` never touched. So composed samplers stay consistent
//! across services and SDKs.
//!
//! ```
//! use otel_sampling::composable::{
//!     ComposableAlwaysOff, ComposableAlwaysOn, ComposableParentThreshold,
//!     ComposableProbability, ComposableRuleBased, CompositeSampler,
//! };
//!
//! // Health checks never, checkout always, 10% of other roots; children follow.
//! let roots = ComposableRuleBased::new()
//!     .rule(|p| p.name.starts_with("GET /healthz"), ComposableAlwaysOff)
//!     .rule(|p| p.name.contains("checkout"), ComposableAlwaysOn)
//!     .rule(|_| true, ComposableProbability::new(0.1).unwrap());
//! let sampler = CompositeSampler::new(ComposableParentThreshold::new(roots));
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().with_sampler(sampler).build();
//! # drop(provider);
//! ```
//!
//! # Which sampler to use
//!
//! `CompositeSampler::new(ComposableParentThreshold::new(ComposableProbability::new(p)?))`
//! decides like `ParentBased::new(ProbabilitySampler::new(p)?)`: both write and
//! honour `ot=th`. Compose when the decision has parts (rules, annotations,
//! your own `ComposableSampler`); [`ProbabilitySampler`](crate::ProbabilitySampler),
//! [`ParentBased`](crate::ParentBased), [`RateLimitedSampler`](crate::RateLimitedSampler)
//! and [`RuleBasedSampler`](crate::RuleBasedSampler) remain the direct,
//! slightly faster forms (and the only rate-limited one: a rate limit has no
//! threshold, so it is not composable).

use crate::ot::{with_threshold, without_threshold};
use crate::parent::Parent;
use crate::threshold::{DEFAULT_PRECISION, MAX_ADJUSTED_COUNT, Randomness, Threshold};
use opentelemetry::trace::{Link, SpanKind, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};
use std::fmt;
use std::sync::Arc;

/// What a sampler needs to know of the parent, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentSampling {
    /// The parent is sampled.
    pub sampled: bool,
    /// The parent is remote (from another process).
    pub remote: bool,
    /// The parent's `ot=th`, if it had one.
    pub threshold: Option<Threshold>,
}

/// The arguments of [`ComposableSampler::sampling_intent`]: the sampler API's,
/// without the trace id, and the parent read once.
#[derive(Debug, Clone, Copy)]
pub struct IntentParams<'a> {
    /// The parent context, as given to the sampler.
    pub parent_context: Option<&'a Context>,
    /// The parent span, when the context holds a valid one.
    pub parent: Option<ParentSampling>,
    /// The parent's tracestate (empty for a root).
    pub trace_state: &'a TraceState,
    /// The span name.
    pub name: &'a str,
    /// The span kind.
    pub kind: &'a SpanKind,
    /// Attributes known at the start.
    pub attributes: &'a [KeyValue],
    /// Links known at the start.
    pub links: &'a [Link],
}

/// Gives the tracestate of a span from its parent's and the decision.
pub type TraceStateProvider = Arc<dyn Fn(&TraceState, bool) -> TraceState + Send + Sync>;

/// A sampler's preference for a span, not yet a decision.
#[derive(Clone, Default)]
pub struct SamplingIntent {
    /// The rejection threshold (keep when `R >= T`); `None` drops the span.
    pub threshold: Option<Threshold>,
    /// Whether the threshold can be used to count (span-to-metrics).
    pub adjusted_count_reliable: bool,
    /// Attributes added to the span when it is sampled.
    pub attributes: Vec<KeyValue>,
    /// Rewrites the tracestate (other than `ot`, which the composite keeps).
    pub trace_state: Option<TraceStateProvider>,
}

impl fmt::Debug for SamplingIntent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamplingIntent")
            .field("threshold", &self.threshold)
            .field("adjusted_count_reliable", &self.adjusted_count_reliable)
            .field("attributes", &self.attributes)
            .field("trace_state", &self.trace_state.is_some())
            .finish()
    }
}

impl SamplingIntent {
    /// Keep with `threshold`, reliable for counting.
    pub fn reliable(threshold: Threshold) -> Self {
        SamplingIntent {
            threshold: Some(threshold),
            adjusted_count_reliable: true,
            ..Default::default()
        }
    }

    /// Drop.
    pub fn drop_span() -> Self {
        SamplingIntent::default()
    }
}

/// A sampler that states its preference; [`CompositeSampler`] decides.
/// Implementations must not depend on the trace's randomness or the parent's
/// sampled flag for their threshold (except [`ComposableParentThreshold`],
/// which follows the parent) and must not change `ot` in the tracestate.
pub trait ComposableSampler: Send + Sync + fmt::Debug {
    /// The preference for the span described by `params`.
    fn sampling_intent(&self, params: &IntentParams<'_>) -> SamplingIntent;

    /// A short description with the configuration (`ComposableProbability{0.25}`).
    fn description(&self) -> String;
}

impl<S: ComposableSampler + ?Sized> ComposableSampler for Box<S> {
    fn sampling_intent(&self, params: &IntentParams<'_>) -> SamplingIntent {
        (**self).sampling_intent(params)
    }
    fn description(&self) -> String {
        (**self).description()
    }
}

impl<S: ComposableSampler + ?Sized> ComposableSampler for Arc<S> {
    fn sampling_intent(&self, params: &IntentParams<'_>) -> SamplingIntent {
        (**self).sampling_intent(params)
    }
    fn description(&self) -> String {
        (**self).description()
    }
}

/// Keeps every span; threshold 0, reliable.
#[derive(Debug, Clone, Copy, Default)]
pub struct ComposableAlwaysOn;

impl ComposableSampler for ComposableAlwaysOn {
    fn sampling_intent(&self, _: &IntentParams<'_>) -> SamplingIntent {
        SamplingIntent::reliable(Threshold::ALWAYS)
    }
    fn description(&self) -> String {
        "ComposableAlwaysOn".to_owned()
    }
}

/// Drops every span: no threshold.
#[derive(Debug, Clone, Copy, Default)]
pub struct ComposableAlwaysOff;

impl ComposableSampler for ComposableAlwaysOff {
    fn sampling_intent(&self, _: &IntentParams<'_>) -> SamplingIntent {
        SamplingIntent::drop_span()
    }
    fn description(&self) -> String {
        "ComposableAlwaysOff".to_owned()
    }
}

/// Keeps a share of spans: the threshold of a probability (rounded to 4
/// significant hex digits, as the specification's examples), reliable.
#[derive(Debug, Clone, Copy)]
pub struct ComposableProbability {
    ratio: f64,
    threshold: Option<Threshold>,
}

/// Why a probability cannot be used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioError(f64);

impl fmt::Display for RatioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sampling ratio {} is not in [0, 1]", self.0)
    }
}

impl std::error::Error for RatioError {}

impl ComposableProbability {
    /// Keeps `ratio` of spans. A ratio of 0 (or one below 2^-56) drops
    /// everything, as `ComposableAlwaysOff` does.
    ///
    /// # Errors
    ///
    /// A ratio outside `[0, 1]`, or NaN.
    pub fn new(ratio: f64) -> Result<Self, RatioError> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(RatioError(ratio));
        }
        let threshold = if ratio < 1.0 / MAX_ADJUSTED_COUNT as f64 {
            None
        } else {
            Threshold::from_probability(ratio, DEFAULT_PRECISION)
        };
        Ok(ComposableProbability { ratio, threshold })
    }

    /// The threshold in use (`None`: drops everything).
    pub fn threshold(&self) -> Option<Threshold> {
        self.threshold
    }
}

impl ComposableSampler for ComposableProbability {
    fn sampling_intent(&self, _: &IntentParams<'_>) -> SamplingIntent {
        match self.threshold {
            Some(t) => SamplingIntent::reliable(t),
            None => SamplingIntent::drop_span(),
        }
    }
    fn description(&self) -> String {
        format!("ComposableProbability{{{}}}", self.ratio)
    }
}

/// Follows the parent: its `th` when it had one (reliable), else threshold 0
/// for a sampled parent and none for an unsampled one (not reliable); roots
/// go to the root sampler.
#[derive(Debug, Clone)]
pub struct ComposableParentThreshold<R> {
    root: R,
}

impl<R: ComposableSampler> ComposableParentThreshold<R> {
    /// Uses `root` for spans without a parent.
    pub fn new(root: R) -> Self {
        ComposableParentThreshold { root }
    }
}

impl<R: ComposableSampler> ComposableSampler for ComposableParentThreshold<R> {
    fn sampling_intent(&self, params: &IntentParams<'_>) -> SamplingIntent {
        match params.parent {
            None => self.root.sampling_intent(params),
            Some(ParentSampling {
                sampled: true,
                threshold: Some(t),
                ..
            }) => SamplingIntent::reliable(t),
            Some(ParentSampling { sampled: true, .. }) => SamplingIntent {
                threshold: Some(Threshold::ALWAYS),
                adjusted_count_reliable: false,
                ..Default::default()
            },
            Some(ParentSampling { sampled: false, .. }) => SamplingIntent::drop_span(),
        }
    }
    fn description(&self) -> String {
        format!("ComposableParentThreshold{{root={}}}", self.root.description())
    }
}

/// Decides whether a rule of [`ComposableRuleBased`] applies.
pub type Predicate = Arc<dyn Fn(&IntentParams<'_>) -> bool + Send + Sync>;

/// The intent of the first rule whose predicate holds; drops when none does.
#[derive(Clone, Default)]
pub struct ComposableRuleBased {
    rules: Vec<(Predicate, Arc<dyn ComposableSampler>)>,
}

impl fmt::Debug for ComposableRuleBased {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

impl ComposableRuleBased {
    /// No rules yet (drops everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule, checked after the ones before it.
    pub fn rule(
        mut self,
        predicate: impl Fn(&IntentParams<'_>) -> bool + Send + Sync + 'static,
        sampler: impl ComposableSampler + 'static,
    ) -> Self {
        self.rules.push((Arc::new(predicate), Arc::new(sampler)));
        self
    }
}

impl ComposableSampler for ComposableRuleBased {
    fn sampling_intent(&self, params: &IntentParams<'_>) -> SamplingIntent {
        self.rules
            .iter()
            .find(|(predicate, _)| predicate(params))
            .map_or_else(SamplingIntent::drop_span, |(_, s)| s.sampling_intent(params))
    }
    fn description(&self) -> String {
        let rules: Vec<String> = self.rules.iter().map(|(_, s)| s.description()).collect();
        format!("ComposableRuleBased{{[{}]}}", rules.join(", "))
    }
}

/// Decides as its delegate and adds attributes to the spans it keeps.
#[derive(Debug, Clone)]
pub struct ComposableAnnotating<D> {
    attributes: Vec<KeyValue>,
    delegate: D,
}

impl<D: ComposableSampler> ComposableAnnotating<D> {
    /// Adds `attributes` to the spans `delegate` keeps.
    pub fn new(attributes: impl IntoIterator<Item = KeyValue>, delegate: D) -> Self {
        ComposableAnnotating {
            attributes: attributes.into_iter().collect(),
            delegate,
        }
    }
}

impl<D: ComposableSampler> ComposableSampler for ComposableAnnotating<D> {
    fn sampling_intent(&self, params: &IntentParams<'_>) -> SamplingIntent {
        let mut intent = self.delegate.sampling_intent(params);
        intent.attributes.extend(self.attributes.iter().cloned());
        intent
    }
    fn description(&self) -> String {
        format!("ComposableAnnotating{{{}}}", self.delegate.description())
    }
}

/// A standard sampler (`ShouldSample`) deciding with a [`ComposableSampler`]:
/// drop without a threshold; else keep when the randomness `R >= T` (the
/// trace's `rv` or trace-id randomness when the threshold is reliable, fresh
/// randomness otherwise); `ot=th` written for a reliable kept span and erased
/// otherwise.
#[derive(Debug, Clone)]
pub struct CompositeSampler {
    delegate: Arc<dyn ComposableSampler>,
}

impl CompositeSampler {
    /// Decides with `delegate`.
    pub fn new(delegate: impl ComposableSampler + 'static) -> Self {
        CompositeSampler {
            delegate: Arc::new(delegate),
        }
    }

    /// The delegate's description, wrapped (`CompositeSampler{...}`).
    pub fn description(&self) -> String {
        format!("CompositeSampler{{{}}}", self.delegate.description())
    }
}

/// A fresh 56-bit randomness value (for thresholds not reliable for counting).
fn fresh_randomness() -> Randomness {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    Randomness::from_value(h.finish() & (MAX_ADJUSTED_COUNT - 1)).unwrap_or(Randomness::from_trace_id(TraceId::INVALID))
}

impl ShouldSample for CompositeSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        Parent::with(parent_context, |parent| {
            let ot = parent.ot();
            let params = IntentParams {
                parent_context,
                parent: parent.kind.map(|(remote, sampled)| ParentSampling {
                    sampled,
                    remote,
                    threshold: ot.threshold,
                }),
                trace_state: parent.trace_state,
                name,
                kind: span_kind,
                attributes,
                links,
            };
            let intent = self.delegate.sampling_intent(&params);
            let sampled = intent.threshold.is_some_and(|t| {
                let r = if intent.adjusted_count_reliable {
                    parent.randomness(&ot, trace_id)
                } else {
                    fresh_randomness()
                };
                t.should_sample(r)
            });
            let base = match &intent.trace_state {
                Some(provider) => provider(parent.trace_state, sampled),
                None => parent.trace_state.clone(),
            };
            let trace_state = match intent.threshold {
                Some(t) if sampled && intent.adjusted_count_reliable => with_threshold(&base, t),
                _ => without_threshold(&base),
            };
            SamplingResult {
                decision: if sampled {
                    SamplingDecision::RecordAndSample
                } else {
                    SamplingDecision::Drop
                },
                attributes: if sampled { intent.attributes } else { Vec::new() },
                trace_state,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags};
    use proptest::prelude::*;
    use std::str::FromStr;

    fn parent(sampled: bool, ts: &str) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x00ff_ffff_ffff_ffffu128),
            SpanId::from(1),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            if ts.is_empty() {
                TraceState::NONE
            } else {
                TraceState::from_str(ts).unwrap()
            },
        ))
    }

    fn decide(s: &CompositeSampler, cx: Option<&Context>, trace_id: u128, name: &str) -> SamplingResult {
        s.should_sample(cx, TraceId::from(trace_id), name, &SpanKind::Internal, &[], &[])
    }

    /// The specification's thresholds (tracestate-probability-sampling.md).
    #[test]
    fn probability_thresholds_as_the_specification_writes_them() {
        for (p, th) in [
            (1.0, "0"),
            (0.5, "8"),
            (0.25, "c"),
            (0.125, "e"),
            (1.0 / 3.0, "aaab"),
            (0.1, "e666"),
        ] {
            let s = CompositeSampler::new(ComposableProbability::new(p).unwrap());
            // R = 2^56 - 1 is kept by every threshold.
            let r = decide(&s, None, 0x00ff_ffff_ffff_ffff, "x");
            assert_eq!(r.decision, SamplingDecision::RecordAndSample, "{p}");
            assert_eq!(r.trace_state.get("ot"), Some(format!("th:{th}").as_str()), "{p}");
        }
        assert!(ComposableProbability::new(0.0).unwrap().threshold().is_none());
        assert!(ComposableProbability::new(1e-18).unwrap().threshold().is_none());
        assert!(ComposableProbability::new(1.5).is_err());
        assert!(ComposableProbability::new(f64::NAN).is_err());
    }

    #[test]
    fn the_decision_compares_randomness_with_the_threshold() {
        let s = CompositeSampler::new(ComposableProbability::new(0.5).unwrap());
        // Threshold 0x80000000000000: R below drops, at or above keeps.
        assert_eq!(
            decide(&s, None, 0x007f_ffff_ffff_ffff, "x").decision,
            SamplingDecision::Drop
        );
        assert_eq!(
            decide(&s, None, 0x0080_0000_0000_0000, "x").decision,
            SamplingDecision::RecordAndSample
        );
        // An explicit rv wins over the trace id.
        let cx = parent(true, "ot=rv:7fffffffffffff");
        let with_rv = CompositeSampler::new(ComposableProbability::new(0.5).unwrap());
        assert_eq!(
            decide(&with_rv, Some(&cx), 0x00ff_ffff_ffff_ffff, "x").decision,
            SamplingDecision::Drop
        );
    }

    #[test]
    fn parent_threshold_follows_the_parent() {
        let s = CompositeSampler::new(ComposableParentThreshold::new(
            ComposableProbability::new(0.25).unwrap(),
        ));
        // A sampled parent with th: kept with its th (reliable).
        let r = decide(&s, Some(&parent(true, "ot=th:8,a=1")), 0x00ff_ffff_ffff_ffff, "x");
        assert_eq!(r.decision, SamplingDecision::RecordAndSample);
        assert_eq!(r.trace_state.header(), "ot=th:8,a=1");
        // A sampled parent without th: kept, th not written (unreliable).
        let r = decide(&s, Some(&parent(true, "a=1")), 1, "x");
        assert_eq!(
            (r.decision, r.trace_state.header()),
            (SamplingDecision::RecordAndSample, "a=1".to_owned())
        );
        // An unsampled parent: dropped, and a stale th erased.
        let r = decide(&s, Some(&parent(false, "ot=th:8;rv:01")), 0x00ff_ffff_ffff_ffff, "x");
        assert_eq!(
            (r.decision, r.trace_state.header()),
            (SamplingDecision::Drop, "ot=rv:01".to_owned())
        );
        // A root: the root sampler.
        let r = decide(&s, None, 0x00ff_ffff_ffff_ffff, "x");
        assert_eq!(r.trace_state.get("ot"), Some("th:c"));
    }

    #[test]
    fn rules_annotations_and_the_specification_example() {
        let roots = ComposableRuleBased::new()
            .rule(|p| p.name == "GET /healthz", ComposableAlwaysOff)
            .rule(
                |p| p.name.contains("checkout"),
                ComposableAnnotating::new([KeyValue::new("sampled.by", "checkout rule")], ComposableAlwaysOn),
            )
            .rule(|_| true, ComposableProbability::new(0.1).unwrap());
        let s = CompositeSampler::new(ComposableParentThreshold::new(roots));
        assert_eq!(
            decide(&s, None, 0x00ff_ffff_ffff_ffff, "GET /healthz").decision,
            SamplingDecision::Drop
        );
        let r = decide(&s, None, 0, "POST /checkout");
        assert_eq!(r.decision, SamplingDecision::RecordAndSample);
        assert_eq!(r.attributes, [KeyValue::new("sampled.by", "checkout rule")]);
        assert_eq!(r.trace_state.get("ot"), Some("th:0"));
        let r = decide(&s, None, 0x00ff_ffff_ffff_ffff, "GET /products");
        assert_eq!(r.trace_state.get("ot"), Some("th:e666"));
        assert!(
            s.description()
                .starts_with("CompositeSampler{ComposableParentThreshold{root=ComposableRuleBased{")
        );
        // No rule: dropped.
        let none = CompositeSampler::new(ComposableRuleBased::new());
        assert_eq!(
            decide(&none, None, 0x00ff_ffff_ffff_ffff, "x").decision,
            SamplingDecision::Drop
        );
    }

    proptest! {
        /// The keep ratio of ComposableProbability is its probability.
        #[test]
        fn keep_ratio_matches_the_probability(p in 0.05f64..0.95, seed in any::<u64>()) {
            let s = CompositeSampler::new(ComposableProbability::new(p).unwrap());
            let n = 4000u64;
            let mut x = seed | 1;
            let kept = (0..n)
                .filter(|_| {
                    // xorshift: uniform 56-bit randomness in the trace id.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    decide(&s, None, u128::from(x), "x").decision == SamplingDecision::RecordAndSample
                })
                .count() as f64;
            let expected = ComposableProbability::new(p).unwrap().threshold().unwrap().probability();
            prop_assert!((kept / n as f64 - expected).abs() < 0.04, "{} vs {}", kept / n as f64, expected);
        }

        /// The th a kept span carries reads back as the threshold that kept it,
        /// and a child following it keeps the same th.
        #[test]
        fn thresholds_round_trip_through_tracestate(p in 0.001f64..1.0, r in 0u64..(1 << 56)) {
            let root = CompositeSampler::new(ComposableParentThreshold::new(ComposableProbability::new(p).unwrap()));
            let result = decide(&root, None, u128::from(r), "x");
            if result.decision == SamplingDecision::RecordAndSample {
                let th = crate::ot::OtState::read(&result.trace_state).threshold.unwrap();
                prop_assert_eq!(Some(th), ComposableProbability::new(p).unwrap().threshold());
                let cx = Context::new().with_remote_span_context(SpanContext::new(
                    TraceId::from(u128::from(r)),
                    SpanId::from(1),
                    TraceFlags::SAMPLED,
                    false,
                    result.trace_state.clone(),
                ));
                let child = decide(&root, Some(&cx), u128::from(r), "child");
                prop_assert_eq!(child.decision, SamplingDecision::RecordAndSample);
                prop_assert_eq!(child.trace_state.header(), result.trace_state.header());
            } else {
                prop_assert!(result.trace_state.get("ot").is_none());
            }
        }
    }
}
