//! Statistical behaviour of the consistent probability sampler over a million
//! random trace ids: ratio within binomial bounds, consistency across
//! probabilities, agreement with explicit randomness.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SamplingDecision, ShouldSample};
use otel_sampling::{ProbabilitySampler, Randomness, Threshold};
use std::str::FromStr;

const N: usize = 1_000_000;

fn sampled(s: &ProbabilitySampler, cx: Option<&Context>, id: TraceId) -> bool {
    s.should_sample(cx, id, "op", &SpanKind::Server, &[], &[]).decision == SamplingDecision::RecordAndSample
}

#[test]
fn observed_ratio_within_five_sigma() {
    let ids: Vec<TraceId> = {
        let g = RandomIdGenerator::default();
        (0..N).map(|_| g.new_trace_id()).collect()
    };
    for p in [0.001, 0.01, 0.1, 1.0 / 3.0, 0.5, 0.9] {
        let s = ProbabilitySampler::new(p).unwrap();
        // The encoded threshold is the probability actually applied.
        let effective = s.threshold().unwrap().probability();
        let kept = ids.iter().filter(|id| sampled(&s, None, **id)).count() as f64;
        let mean = N as f64 * effective;
        let sigma = (N as f64 * effective * (1.0 - effective)).sqrt();
        assert!(
            (kept - mean).abs() <= 5.0 * sigma,
            "p={p}: kept {kept}, expected {mean} ± {}",
            5.0 * sigma
        );
        assert!(
            (effective - p).abs() / p < 1e-3,
            "4-digit threshold for {p} applies {effective}"
        );
    }
}

#[test]
fn sampled_at_p_means_sampled_at_every_larger_p() {
    let g = RandomIdGenerator::default();
    let ps = [
        0.0001,
        0.001,
        0.01,
        0.05,
        0.1,
        0.2,
        0.25,
        1.0 / 3.0,
        0.5,
        0.75,
        0.9,
        0.999,
        1.0,
    ];
    let samplers: Vec<ProbabilitySampler> = ps.iter().map(|p| ProbabilitySampler::new(*p).unwrap()).collect();
    for _ in 0..200_000 {
        let id = g.new_trace_id();
        let decisions: Vec<bool> = samplers.iter().map(|s| sampled(s, None, id)).collect();
        // Once kept, kept at every higher probability.
        if let Some(first) = decisions.iter().position(|d| *d) {
            assert!(decisions[first..].iter().all(|d| *d), "id {id}: {decisions:?}");
        }
    }
}

#[test]
fn decisions_follow_explicit_randomness() {
    let g = RandomIdGenerator::default();
    let s = ProbabilitySampler::new(0.3).unwrap();
    let threshold = s.threshold().unwrap();
    for i in 0..50_000u64 {
        let rv = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) & ((1 << 56) - 1);
        let cx = Context::new().with_remote_span_context(SpanContext::new(
            g.new_trace_id(),
            SpanId::from(1),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_str(&format!("ot=rv:{rv:014x}")).unwrap(),
        ));
        let expected = threshold.should_sample(Randomness::from_value(rv).unwrap());
        let span = cx.span();
        let result = s.should_sample(
            Some(&cx),
            span.span_context().trace_id(),
            "op",
            &SpanKind::Server,
            &[],
            &[],
        );
        assert_eq!(
            result.decision == SamplingDecision::RecordAndSample,
            expected,
            "rv={rv:014x}"
        );
        if expected {
            // The explicit randomness travels on unchanged, beside the threshold.
            assert_eq!(
                result.trace_state.get("ot"),
                Some(format!("th:{};rv:{rv:014x}", threshold.encode()).as_str())
            );
        }
    }
}

#[test]
fn thresholds_decode_for_every_digit_count() {
    for digits in 1..=14usize {
        let th = "f".repeat(digits - 1) + "8";
        let t = Threshold::parse(&th).unwrap();
        assert_eq!(t.encode().as_str(), th);
        assert_eq!(Threshold::parse(&th.to_uppercase()), Some(t));
    }
}
