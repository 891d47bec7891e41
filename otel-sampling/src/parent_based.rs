//! Follow the caller's decision; decide only at the root.

use crate::ot::without_threshold;
use crate::parent::Parent;
use crate::probability::drop_result;
use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

#[derive(Clone, Debug)]
enum Branch {
    /// The specification's default: do what the parent did.
    Follow,
    Delegate(BoxedSampler),
}

/// A boxed sampler that is itself a [`ShouldSample`] (opentelemetry_sdk's
/// `Box<dyn ShouldSample>` is not), so boxed and concrete samplers compose.
#[derive(Clone, Debug)]
pub struct BoxedSampler(Box<dyn ShouldSample>);

impl BoxedSampler {
    /// Boxes `sampler`.
    pub fn new(sampler: impl ShouldSample + 'static) -> Self {
        BoxedSampler(Box::new(sampler))
    }

    /// Wraps an already boxed sampler.
    pub fn from_box(sampler: Box<dyn ShouldSample>) -> Self {
        BoxedSampler(sampler)
    }

    /// The boxed sampler.
    pub fn into_inner(self) -> Box<dyn ShouldSample> {
        self.0
    }
}

impl ShouldSample for BoxedSampler {
    #[inline]
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// Delegates by the parent: the root sampler for roots, and for each of the
/// four parent cases (remote or local, sampled or not) a configurable sampler.
///
/// Defaults follow the OpenTelemetry specification: a sampled parent's span is
/// sampled, an unsampled parent's span is dropped. Following a parent keeps its
/// `th` when it is consistent (the trace's randomness is at or above it) and
/// erases it otherwise; following an unsampled parent erases it too.
///
/// The root sampler is a type parameter so the common case (a
/// [`ProbabilitySampler`](crate::ProbabilitySampler) root) is called directly;
/// [`from_boxed`](Self::from_boxed) takes any boxed sampler.
///
/// ```
/// use otel_sampling::{ParentBased, ProbabilitySampler, AlwaysOn};
///
/// let sampler = ParentBased::new(ProbabilitySampler::new(0.25).unwrap())
///     // Keep traces a caller dropped, e.g. at a trust boundary.
///     .with_remote_parent_not_sampled(AlwaysOn);
/// # let _ = sampler;
/// ```
#[derive(Clone, Debug)]
pub struct ParentBased<R = BoxedSampler> {
    root: R,
    remote_sampled: Branch,
    remote_not_sampled: Branch,
    local_sampled: Branch,
    local_not_sampled: Branch,
}

impl ParentBased<BoxedSampler> {
    /// Uses an already boxed sampler for roots.
    pub fn from_boxed(root: Box<dyn ShouldSample>) -> Self {
        ParentBased::new(BoxedSampler(root))
    }
}

impl<R: ShouldSample> ParentBased<R> {
    /// Uses `root` for spans without a valid parent.
    pub fn new(root: R) -> Self {
        ParentBased {
            root,
            remote_sampled: Branch::Follow,
            remote_not_sampled: Branch::Follow,
            local_sampled: Branch::Follow,
            local_not_sampled: Branch::Follow,
        }
    }

    /// The sampler for a remote, sampled parent. Defaults to following the parent.
    pub fn with_remote_parent_sampled(mut self, sampler: impl ShouldSample + 'static) -> Self {
        self.remote_sampled = Branch::Delegate(BoxedSampler::new(sampler));
        self
    }

    /// The sampler for a remote, unsampled parent. Defaults to following the parent.
    pub fn with_remote_parent_not_sampled(mut self, sampler: impl ShouldSample + 'static) -> Self {
        self.remote_not_sampled = Branch::Delegate(BoxedSampler::new(sampler));
        self
    }

    /// The sampler for a local, sampled parent. Defaults to following the parent.
    pub fn with_local_parent_sampled(mut self, sampler: impl ShouldSample + 'static) -> Self {
        self.local_sampled = Branch::Delegate(BoxedSampler::new(sampler));
        self
    }

    /// The sampler for a local, unsampled parent. Defaults to following the parent.
    pub fn with_local_parent_not_sampled(mut self, sampler: impl ShouldSample + 'static) -> Self {
        self.local_not_sampled = Branch::Delegate(BoxedSampler::new(sampler));
        self
    }

    /// The root sampler.
    pub fn root(&self) -> &R {
        &self.root
    }

    /// Whether a span with a local parent (a parent in the same process) gets
    /// its parent's decision, as by default: then a tracer may decide such a
    /// span without calling the sampler, and skip reading the fields of one
    /// that will not be sampled.
    pub fn follows_local_parents(&self) -> bool {
        matches!(
            (&self.local_sampled, &self.local_not_sampled),
            (Branch::Follow, Branch::Follow)
        )
    }
}

/// A sampled parent's decision, with its `th` checked for consistency.
fn follow_sampled(parent: &Parent<'_>, trace_id: TraceId) -> SamplingResult {
    let trace_state = if parent.has_trace_state() {
        let ot = parent.ot();
        match ot.threshold {
            Some(th) if !th.should_sample(parent.randomness(&ot, trace_id)) => without_threshold(parent.trace_state),
            _ => parent.trace_state.clone(),
        }
    } else {
        Default::default()
    };
    SamplingResult {
        decision: SamplingDecision::RecordAndSample,
        attributes: Vec::new(),
        trace_state,
    }
}

impl<R: ShouldSample + Clone + 'static> ShouldSample for ParentBased<R> {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        if let Some(cx) = parent_context
            && cx.has_active_span()
        {
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                let branch = match (sc.is_remote(), sc.is_sampled()) {
                    (true, true) => &self.remote_sampled,
                    (true, false) => &self.remote_not_sampled,
                    (false, true) => &self.local_sampled,
                    (false, false) => &self.local_not_sampled,
                };
                return match branch {
                    Branch::Follow if sc.is_sampled() => follow_sampled(&Parent::of(sc), trace_id),
                    Branch::Follow => drop_result(&Parent::of(sc)),
                    Branch::Delegate(s) => {
                        s.should_sample(parent_context, trace_id, name, span_kind, attributes, links)
                    }
                };
            }
        }
        self.root
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlwaysOff, AlwaysOn, ProbabilitySampler};
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};
    use std::str::FromStr;

    fn cx(remote: bool, sampled: bool, ts: &str) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x00ff_ffff_ffff_ffff_u128),
            SpanId::from(1),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::NOT_SAMPLED
            },
            remote,
            if ts.is_empty() {
                TraceState::NONE
            } else {
                TraceState::from_str(ts).unwrap()
            },
        ))
    }

    fn run(s: &dyn ShouldSample, cx: Option<&Context>, trace_id: u128) -> SamplingResult {
        s.should_sample(cx, TraceId::from(trace_id), "x", &SpanKind::Internal, &[], &[])
    }

    #[test]
    fn five_branches_default_to_the_specification() {
        let s = ParentBased::new(AlwaysOff);
        assert_eq!(
            run(&s, None, 1).decision,
            SamplingDecision::Drop,
            "root uses the root sampler"
        );
        assert_eq!(
            run(&s, Some(&Context::new()), 1).decision,
            SamplingDecision::Drop,
            "no span: root"
        );
        for remote in [true, false] {
            assert_eq!(
                run(&s, Some(&cx(remote, true, "")), 1).decision,
                SamplingDecision::RecordAndSample
            );
            assert_eq!(
                run(&s, Some(&cx(remote, false, "")), 1).decision,
                SamplingDecision::Drop
            );
        }
    }

    #[test]
    fn follows_local_parents_unless_a_local_branch_is_set() {
        assert!(ParentBased::new(AlwaysOn).follows_local_parents());
        assert!(
            ParentBased::new(AlwaysOn)
                .with_remote_parent_sampled(AlwaysOff)
                .follows_local_parents()
        );
        assert!(
            !ParentBased::new(AlwaysOn)
                .with_local_parent_sampled(AlwaysOff)
                .follows_local_parents()
        );
        assert!(
            !ParentBased::new(AlwaysOn)
                .with_local_parent_not_sampled(AlwaysOn)
                .follows_local_parents()
        );
    }

    #[test]
    fn each_branch_is_configurable() {
        let s = ParentBased::new(AlwaysOn)
            .with_remote_parent_sampled(AlwaysOff)
            .with_remote_parent_not_sampled(AlwaysOn)
            .with_local_parent_sampled(AlwaysOff)
            .with_local_parent_not_sampled(AlwaysOn);
        assert_eq!(run(&s, None, 1).decision, SamplingDecision::RecordAndSample);
        assert_eq!(run(&s, Some(&cx(true, true, "")), 1).decision, SamplingDecision::Drop);
        assert_eq!(
            run(&s, Some(&cx(true, false, "")), 1).decision,
            SamplingDecision::RecordAndSample
        );
        assert_eq!(run(&s, Some(&cx(false, true, "")), 1).decision, SamplingDecision::Drop);
        assert_eq!(
            run(&s, Some(&cx(false, false, "")), 1).decision,
            SamplingDecision::RecordAndSample
        );
    }

    #[test]
    fn threshold_kept_when_consistent_erased_otherwise() {
        let s = ParentBased::new(ProbabilitySampler::new(0.5).unwrap());
        // R = 0xffffffffffffff >= 0x80...: consistent.
        let r = run(&s, Some(&cx(true, true, "ot=th:8,a=1")), 0x00ff_ffff_ffff_ffff);
        assert_eq!(r.trace_state.header(), "ot=th:8,a=1");
        // R = 1 < 0x80...: the parent says sampled, its th says not: erase.
        let r = run(&s, Some(&cx(true, true, "ot=th:8,a=1")), 1);
        assert_eq!(
            (r.decision, r.trace_state.header()),
            (SamplingDecision::RecordAndSample, "a=1".to_owned())
        );
        // Unsampled parent: erased.
        let r = run(&s, Some(&cx(true, false, "a=1,ot=th:8;rv:00000000000001")), 1);
        assert_eq!(r.trace_state.header(), "ot=rv:00000000000001,a=1");
        // th-less sampled parent: none added.
        let r = run(&s, Some(&cx(false, true, "a=1")), 1);
        assert_eq!(r.trace_state.header(), "a=1");
    }

    #[test]
    fn root_decisions_write_th() {
        let s = ParentBased::new(ProbabilitySampler::new(0.25).unwrap());
        let r = run(&s, None, 0x00ff_ffff_ffff_ffff);
        assert_eq!(r.trace_state.header(), "ot=th:c");
    }
}
