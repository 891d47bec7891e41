#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! The engine in-process, inside the official `SdkTracerProvider`.

use opentelemetry::trace::{
    Link, Span as _, SpanKind, Status, TraceContextExt, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample, SimpleSpanProcessor, Span,
    SpanData, SpanProcessor,
};
use otel_collector::TailSamplingProcessor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A downstream processor that records what it is given.
#[derive(Debug, Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<SpanData>>>,
    flushes: Arc<Mutex<u32>>,
    shutdowns: Arc<Mutex<u32>>,
}

impl SpanProcessor for Recorder {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        self.spans.lock().unwrap().push(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        *self.flushes.lock().unwrap() += 1;
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        *self.shutdowns.lock().unwrap() += 1;
        Ok(())
    }
}

impl Recorder {
    fn traces(&self) -> Vec<(TraceId, usize)> {
        let spans = self.spans.lock().unwrap();
        let mut out: Vec<(TraceId, usize)> = Vec::new();
        for s in spans.iter() {
            let id = s.span_context.trace_id();
            match out.iter_mut().find(|(t, _)| *t == id) {
                Some((_, n)) => *n += 1,
                None => out.push((id, 1)),
            }
        }
        out
    }
    fn count(&self, id: TraceId) -> usize {
        self.traces().iter().find(|(t, _)| *t == id).map_or(0, |(_, n)| *n)
    }
}

const POLICIES: &str = r#"
decision_wait: 10s
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
  - name: slow-traces
    type: latency
    latency: {threshold_ms: 1000}
  - name: probabilistic
    type: probabilistic
    probabilistic: {sampling_percentage: 0}
"#;

/// Three traces: one with an error deep inside, one slow, one routine.
fn traffic(provider: &SdkTracerProvider) -> (TraceId, TraceId, TraceId) {
    let tracer = provider.tracer("checkout");
    let error = tracer.in_span("GET /checkout", |cx| {
        tracer.in_span("SELECT orders", |_| {});
        tracer.in_span("POST /payments", |cx| {
            cx.span().set_status(Status::error("card declined"))
        });
        cx.span().span_context().trace_id()
    });
    // Slow: the root spans 1.5 s, its children are quick.
    let start = SystemTime::now() - Duration::from_millis(1500);
    let mut root = tracer.span_builder("GET /report").with_start_time(start).start(&tracer);
    let slow = root.span_context().trace_id();
    let cx = Context::current().with_remote_span_context(root.span_context().clone());
    let mut child = tracer
        .span_builder("render")
        .with_start_time(start)
        .start_with_context(&tracer, &cx);
    child.end_with_timestamp(start + Duration::from_millis(5));
    root.end();
    let routine = tracer.in_span("GET /health", |cx| {
        tracer.in_span("ping", |_| {});
        cx.span().span_context().trace_id()
    });
    (error, slow, routine)
}

#[test]
fn keeps_error_and_slow_traces_whole_and_drops_routine_ones() {
    let recorder = Recorder::default();
    let processor = TailSamplingProcessor::from_config_yaml(POLICIES, recorder.clone()).unwrap();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    let (error, slow, routine) = traffic(&provider);
    assert!(recorder.traces().is_empty(), "nothing before the decision");
    provider.force_flush().unwrap();
    assert_eq!(recorder.count(error), 3);
    assert_eq!(recorder.count(slow), 2);
    assert_eq!(recorder.count(routine), 0);
    assert_eq!(*recorder.flushes.lock().unwrap(), 1, "flush reaches downstream");
    provider.shutdown().unwrap();
    assert_eq!(*recorder.shutdowns.lock().unwrap(), 1);
}

#[test]
fn shutdown_decides_buffered_traces_before_downstream_shuts_down() {
    let recorder = Recorder::default();
    let processor = TailSamplingProcessor::from_config_yaml(POLICIES, recorder.clone()).unwrap();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    let (error, slow, _) = traffic(&provider);
    provider.shutdown().unwrap();
    assert_eq!(recorder.count(error), 3);
    assert_eq!(recorder.count(slow), 2);
}

/// Records every span without the sampled flag.
#[derive(Debug, Clone)]
struct RecordAll;

impl ShouldSample for RecordAll {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        SamplingResult {
            decision: SamplingDecision::RecordOnly,
            attributes: Vec::new(),
            trace_state: parent
                .map(|c| c.span().span_context().trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

#[test]
fn record_only_head_sampling_exports_kept_traces_as_sampled() {
    let exporter = InMemorySpanExporter::default();
    let processor =
        TailSamplingProcessor::from_config_yaml(POLICIES, SimpleSpanProcessor::new(exporter.clone())).unwrap();
    let provider = SdkTracerProvider::builder()
        .with_sampler(RecordAll)
        .with_span_processor(processor)
        .build();
    let (error, _slow, routine) = traffic(&provider);
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.iter().filter(|s| s.span_context.trace_id() == error).count(), 3);
    assert!(spans.iter().all(|s| s.span_context.is_sampled()));
    assert!(!spans.iter().any(|s| s.span_context.trace_id() == routine));
}

#[test]
fn resource_attributes_count() {
    let yaml = r#"
decision_wait: 10s
policies:
  - name: checkout-only
    type: string_attribute
    string_attribute: {key: service.name, values: [checkout]}
"#;
    for (service, kept) in [("checkout", true), ("catalog", false)] {
        let recorder = Recorder::default();
        let processor = TailSamplingProcessor::from_config_yaml(yaml, recorder.clone()).unwrap();
        let provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder_empty().with_service_name(service).build())
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("t");
        tracer.in_span("op", |_| {});
        provider.force_flush().unwrap();
        assert_eq!(recorder.traces().len() == 1, kept, "{service}");
    }
}

#[test]
fn root_end_decides_without_waiting_for_decision_wait() {
    let recorder = Recorder::default();
    let yaml = r#"
decision_wait: 30s
decision_wait_after_root_received: 20ms
policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]
"#;
    let processor = TailSamplingProcessor::from_config_yaml(yaml, recorder.clone()).unwrap();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    let tracer = provider.tracer("t");
    let id = tracer.in_span("root", |cx| {
        tracer.in_span("child", |cx| cx.span().set_status(Status::error("boom")));
        cx.span().span_context().trace_id()
    });
    let started = std::time::Instant::now();
    while recorder.count(id) < 2 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(recorder.count(id), 2, "decided by the root's arrival, well before 30 s");
    drop(provider);
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let err = TailSamplingProcessor::from_config_yaml(
        "policies: [{name: slow, type: latency, latency: {threshold: 10}}]",
        Recorder::default(),
    )
    .unwrap_err();
    assert_eq!(err.path(), "tail_sampling.policies[0].latency");
    assert!(err.to_string().contains("unknown key \"threshold\""), "{err}");
}

#[test]
fn a_group_decides_traces_crossing_providers_once() {
    let group = otel_collector::TailSamplingGroup::from_config_yaml(POLICIES).unwrap();
    let (front_rec, back_rec) = (Recorder::default(), Recorder::default());
    let front = SdkTracerProvider::builder()
        .with_resource(Resource::builder_empty().with_service_name("gateway").build())
        .with_span_processor(group.processor(front_rec.clone()))
        .build();
    let back = SdkTracerProvider::builder()
        .with_resource(Resource::builder_empty().with_service_name("auth").build())
        .with_span_processor(group.processor(back_rec.clone()))
        .build();
    let (ft, bt) = (front.tracer("gateway"), back.tracer("auth"));
    // The error happens in the back service; the front's spans are kept too.
    let mut ids = Vec::new();
    for fail in [true, false] {
        let id = ft.in_span("GET /login", |cx| {
            let remote = Context::current().with_remote_span_context(cx.span().span_context().clone());
            let mut s = bt.start_with_context("auth.Auth/Verify", &remote);
            if fail {
                s.set_status(Status::error("token expired"));
            }
            s.end();
            cx.span().span_context().trace_id()
        });
        ids.push(id);
    }
    group.decide_all();
    assert_eq!(front_rec.count(ids[0]), 1);
    assert_eq!(back_rec.count(ids[0]), 1);
    assert_eq!(front_rec.count(ids[1]) + back_rec.count(ids[1]), 0);
    let s = group.stats();
    assert_eq!((s.traces_sampled, s.traces_not_sampled), (1, 1));
    // Shutting one provider down leaves the other working.
    back.shutdown().unwrap();
    let late = ft.in_span("GET /slow", |cx| {
        cx.span().set_status(Status::error("x"));
        cx.span().span_context().trace_id()
    });
    front.shutdown().unwrap();
    assert_eq!(front_rec.count(late), 1);
    assert_eq!(*back_rec.shutdowns.lock().unwrap(), 1);
    assert_eq!(*front_rec.shutdowns.lock().unwrap(), 1);
}
