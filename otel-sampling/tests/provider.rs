//! The samplers inside the official `SdkTracerProvider`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry::Context;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer, TracerProvider as _,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use otel_sampling::{ParentBased, ProbabilitySampler, RateLimitedSampler};
use std::str::FromStr;

fn provider(
    sampler: impl opentelemetry_sdk::trace::ShouldSample + 'static,
) -> (SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(exporter.clone())
        .build();
    (provider, exporter)
}

#[test]
fn roots_carry_th_and_children_inherit_it() {
    let (provider, exporter) = provider(ParentBased::new(ProbabilitySampler::new(1.0).unwrap()));
    let tracer = provider.tracer("t");
    tracer.in_span("root", |cx| {
        assert_eq!(cx.span().span_context().trace_state().header(), "ot=th:0");
        tracer.in_span("child", |cx| {
            assert_eq!(cx.span().span_context().trace_state().header(), "ot=th:0");
        });
    });
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 2);
    assert!(
        spans
            .iter()
            .all(|s| s.span_context.trace_state().get("ot") == Some("th:0"))
    );
}

#[test]
fn remote_parent_with_th_is_followed_and_kept() {
    let (provider, exporter) = provider(ParentBased::new(ProbabilitySampler::new(0.001).unwrap()));
    let tracer = provider.tracer("t");
    let parent = Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x00ff_ffff_ffff_ffff_u128),
        SpanId::from(7),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_str("ot=th:c,vendor=x").unwrap(),
    ));
    tracer.start_with_context("server", &parent).end();
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(
        spans.len(),
        1,
        "the caller sampled it, so the low root probability does not matter"
    );
    assert_eq!(spans[0].span_context.trace_state().header(), "ot=th:c,vendor=x");
}

#[test]
fn rate_limited_roots_in_the_provider() {
    let (provider, exporter) = provider(ParentBased::new(RateLimitedSampler::with_burst(0.001, 3).unwrap()));
    let tracer = provider.tracer("t");
    for _ in 0..10 {
        tracer.in_span("root", |_| tracer.in_span("child", |_| {}));
    }
    let spans = exporter.get_finished_spans().unwrap();
    // Three traces pass (the burst), each whole; no th on rate-limited decisions.
    assert_eq!(spans.len(), 6);
    assert!(spans.iter().all(|s| s.span_context.trace_state().get("ot").is_none()));
}
