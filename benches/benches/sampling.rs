//! Head-sampling decisions: ours (ParentBased + ProbabilitySampler) beside
//! opentelemetry_sdk's ParentBased(TraceIdRatioBased), in the same run.
//!
//! `cargo bench -p benches --bench sampling`

use benches::{Pair, print_ratios};
use criterion::{Criterion, criterion_group};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample};
use otel_sampling::{AlwaysOff, AlwaysOn, Matcher, ParentBased, ProbabilitySampler, Rule, RuleBasedSampler};
use std::hint::black_box;
use std::str::FromStr;

const P: f64 = 0.1;

fn ours() -> ParentBased<ProbabilitySampler> {
    ParentBased::new(ProbabilitySampler::new(P).expect("valid probability"))
}

fn sdk() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(P)))
}

/// 1024 random ids, filtered by whether our sampler keeps them.
fn ids(keep: Option<bool>) -> Vec<TraceId> {
    let g = RandomIdGenerator::default();
    let s = ours();
    let mut out = Vec::with_capacity(1024);
    while out.len() < 1024 {
        let id = g.new_trace_id();
        let kept =
            s.should_sample(None, id, "x", &SpanKind::Server, &[], &[]).decision == SamplingDecision::RecordAndSample;
        if keep.is_none_or(|k| k == kept) {
            out.push(id);
        }
    }
    out
}

fn decide_loop(
    c: &mut Criterion,
    group: &str,
    name: &str,
    s: &dyn ShouldSample,
    cx: &Context,
    ids: &[TraceId],
    attrs: &[KeyValue],
) {
    let mut g = c.benchmark_group(group);
    let mut i = 0usize;
    g.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(s.should_sample(
                Some(cx),
                black_box(ids[i]),
                "GET /api/products",
                &SpanKind::Server,
                attrs,
                &[],
            ))
        })
    });
    g.finish();
}

fn root(c: &mut Criterion) {
    let root_cx = Context::new();
    let (o, t) = (ours(), sdk());
    for (group, keep) in [
        ("root_not_sampled", Some(false)),
        ("root_sampled_writes_th", Some(true)),
        ("root_mixed", None),
    ] {
        let ids = ids(keep);
        decide_loop(c, group, "ours", &o, &root_cx, &ids, &[]);
        decide_loop(c, group, "sdk", &t, &root_cx, &ids, &[]);
    }
}

fn sampled_parent(c: &mut Criterion) {
    let (o, t) = (ours(), sdk());
    let ids = ids(None);
    for (group, ts) in [
        ("sampled_parent", ""),
        ("sampled_parent_with_th", "ot=th:e666,vendor=v"),
    ] {
        let cx = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0eff_ffff),
            SpanId::from(7),
            TraceFlags::SAMPLED,
            true,
            if ts.is_empty() {
                TraceState::NONE
            } else {
                TraceState::from_str(ts).expect("static tracestate")
            },
        ));
        decide_loop(c, group, "ours", &o, &cx, &ids, &[]);
        decide_loop(c, group, "sdk", &t, &cx, &ids, &[]);
    }
}

fn rules(c: &mut Criterion) {
    let mut s = RuleBasedSampler::new(ProbabilitySampler::new(P).expect("valid probability"));
    for i in 0..8 {
        s = s.rule(Rule::new(AlwaysOff).attribute("http.route", Matcher::Exact(format!("/internal/{i}"))));
    }
    s = s.rule(Rule::new(AlwaysOff).name(Matcher::Glob("GET /health*".into())));
    s = s.rule(
        Rule::new(AlwaysOn)
            .kind(SpanKind::Server)
            .attribute("rpc.service", Matcher::Exact("Payments".into())),
    );
    let sampler = ParentBased::new(s);
    let attrs = [
        KeyValue::new("http.route", "/api/products"),
        KeyValue::new("http.request.method", "GET"),
    ];
    let ids = ids(None);
    // Every rule is tried and misses; the fallback decides.
    decide_loop(
        c,
        "rules_10_fallthrough",
        "ours",
        &sampler,
        &Context::new(),
        &ids,
        &attrs,
    );
    decide_loop(c, "rules_10_fallthrough", "sdk", &sdk(), &Context::new(), &ids, &attrs);
}

criterion_group!(benches, root, sampled_parent, rules);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let pair = |label, group: &'static str, target| Pair {
        label,
        ours: Box::leak(format!("{group}/ours").into_boxed_str()),
        theirs: Box::leak(format!("{group}/sdk").into_boxed_str()),
        target,
    };
    print_ratios(
        "should_sample, ParentBased + ProbabilitySampler(0.1) vs SDK ParentBased(TraceIdRatioBased(0.1))",
        &[
            pair("root decision, no tracestate write", "root_not_sampled", Some(1.0)),
            pair("root decision, kept (writes ot=th)", "root_sampled_writes_th", None),
            pair("root decision, random ids (10% write th)", "root_mixed", None),
            pair("sampled remote parent", "sampled_parent", None),
            pair("sampled remote parent carrying th", "sampled_parent_with_th", None),
            pair("rule-based, 10 rules, fallthrough", "rules_10_fallthrough", None),
        ],
    );
}
