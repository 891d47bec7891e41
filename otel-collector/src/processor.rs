//! The engine in-process: a `SpanProcessor` that keeps whole error and slow
//! traces and forwards them to a downstream processor. Several providers
//! (services hosted in one process) can share one engine, so a trace
//! crossing them is decided once, whole.

use crate::config::ConfigError;
use crate::engine::{KeptBy, TailSampler, TailSamplerBuilder, TailSamplingStats, TraceSink};
use crate::facts::{AttrValue, Attributes, SpanFacts, StatusCode};
use crate::predicate::ResourceMatch;
use crate::settings::TailSamplingConfig;
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, TraceFlags};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// A buffered span and the member (provider) it came from.
#[derive(Debug)]
pub struct MemberSpan {
    member: usize,
    span: SpanData,
}

impl Attributes for MemberSpan {
    fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
        self.span.attribute(key)
    }
}

impl SpanFacts for MemberSpan {
    fn trace_id(&self) -> [u8; 16] {
        self.span.trace_id()
    }
    fn is_root(&self) -> bool {
        self.span.is_root()
    }
    fn start_nanos(&self) -> u64 {
        self.span.start_nanos()
    }
    fn end_nanos(&self) -> u64 {
        self.span.end_nanos()
    }
    fn status(&self) -> StatusCode {
        SpanFacts::status(&self.span)
    }
    fn trace_state_value(&self, key: &str) -> Option<Cow<'_, str>> {
        self.span.trace_state_value(key)
    }
    fn encoded_len(&self) -> usize {
        self.span.encoded_len()
    }
}

/// Where a member's kept spans go.
trait Forward: Send + Sync {
    fn forward(&self, span: SpanData);
}

/// The downstream processor, shared by the engine (which forwards kept
/// spans) and the processor (which flushes and shuts it down).
struct Downstream<P>(RwLock<P>);

impl<P> Downstream<P> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, P> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<P: SpanProcessor> Forward for Downstream<P> {
    fn forward(&self, mut span: SpanData) {
        // A kept span is sampled, whatever head sampling recorded it as:
        // downstream processors export only sampled spans.
        let sc = &span.span_context;
        if !sc.is_sampled() {
            span.span_context = SpanContext::new(
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags() | TraceFlags::SAMPLED,
                sc.is_remote(),
                sc.trace_state().clone(),
            );
        }
        self.read().on_end(span);
    }
}

#[derive(Default)]
struct Members(RwLock<Vec<Arc<dyn Forward>>>);

impl TraceSink<MemberSpan> for Members {
    fn keep(&self, _trace_id: [u8; 16], spans: Vec<MemberSpan>, _kept_by: KeptBy<'_>) {
        let members = self.0.read().unwrap_or_else(PoisonError::into_inner);
        for s in spans {
            if let Some(m) = members.get(s.member) {
                m.forward(s.span);
            }
        }
    }
}

struct GroupInner {
    sampler: TailSampler<MemberSpan>,
    members: Arc<Members>,
    /// Members not yet shut down; the engine shuts down with the last.
    open: AtomicUsize,
}

/// One tail-sampling engine shared by several tracer providers (services
/// hosted in one process, each with its own resource): a trace crossing
/// them is decided once, whole, and each kept span goes back to its own
/// provider's downstream processor.
///
/// ```
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
/// use otel_collector::TailSamplingGroup;
///
/// let group = TailSamplingGroup::from_config_yaml(r#"
/// decision_wait: 5s
/// policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]
/// "#)?;
/// let gateway = SdkTracerProvider::builder()
///     .with_span_processor(group.processor(SimpleSpanProcessor::new(InMemorySpanExporter::default())))
///     .build();
/// let auth = SdkTracerProvider::builder()
///     .with_span_processor(group.processor(SimpleSpanProcessor::new(InMemorySpanExporter::default())))
///     .build();
/// # drop((gateway, auth));
/// # Ok::<(), otel_collector::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct TailSamplingGroup {
    inner: Arc<GroupInner>,
}

impl fmt::Debug for TailSamplingGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailSamplingGroup")
            .field("sampler", &self.inner.sampler)
            .finish()
    }
}

impl TailSamplingGroup {
    /// A group from a `tail_sampling` block (the keys under `tail_sampling:`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad key and why.
    pub fn from_config_yaml(yaml: &str) -> Result<Self, ConfigError> {
        Ok(Self::new(TailSamplingConfig::from_yaml(yaml)?))
    }

    /// A group running `config`.
    pub fn new(config: TailSamplingConfig) -> Self {
        Self::with_sampler(TailSamplerBuilder::new(config))
    }

    /// A group on an engine configured with `builder` (a test clock, say).
    pub fn with_sampler(builder: TailSamplerBuilder) -> Self {
        let members = Arc::new(Members::default());
        let sink: Arc<dyn TraceSink<MemberSpan>> = members.clone();
        let sampler = builder.build(sink);
        TailSamplingGroup {
            inner: Arc::new(GroupInner {
                sampler,
                members,
                open: AtomicUsize::new(0),
            }),
        }
    }

    /// A processor for one provider, forwarding its kept spans to `downstream`.
    pub fn processor<P: SpanProcessor + 'static>(&self, downstream: P) -> TailSamplingProcessor<P> {
        let downstream = Arc::new(Downstream(RwLock::new(downstream)));
        let member = {
            let mut members = self.inner.members.0.write().unwrap_or_else(PoisonError::into_inner);
            members.push(downstream.clone());
            members.len() - 1
        };
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        let resource = self.inner.sampler.resource_match(&Resource::builder_empty().build());
        TailSamplingProcessor {
            group: self.inner.clone(),
            member,
            downstream,
            resource,
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The engine's counters.
    pub fn stats(&self) -> TailSamplingStats {
        self.inner.sampler.stats()
    }

    /// Decides every buffered trace now.
    pub fn decide_all(&self) {
        self.inner.sampler.decide_all();
    }
}

/// Tail sampling inside the application.
///
/// Every span that ends is buffered by trace; after `decision_wait` (or
/// `decision_wait_after_root_received` once the root span ended) the
/// policies decide, and kept traces go, whole, to the downstream processor
/// (for example `otel_export::BatchSpanProcessor`).
///
/// Head sampling decides which spans reach this processor at all, so run it
/// with an always-on sampler (the default), or a sampler that records every
/// span without setting the sampled flag: a 10% head sampler would leave
/// only 10% of the error traces for the tail to keep. Kept spans get the
/// sampled flag before they are forwarded. The decision covers the spans of
/// this process only (of every provider in a [`TailSamplingGroup`]); traces
/// crossing processes are decided per process unless their spans are sent
/// to one `otel-collector` sidecar instead.
pub struct TailSamplingProcessor<P: SpanProcessor + 'static> {
    group: Arc<GroupInner>,
    member: usize,
    downstream: Arc<Downstream<P>>,
    resource: ResourceMatch,
    closed: std::sync::atomic::AtomicBool,
}

impl<P: SpanProcessor + 'static> fmt::Debug for TailSamplingProcessor<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailSamplingProcessor")
            .field("sampler", &self.group.sampler)
            .field("member", &self.member)
            .field("downstream", &*self.downstream.read())
            .finish()
    }
}

impl<P: SpanProcessor + 'static> TailSamplingProcessor<P> {
    /// A processor from a `tail_sampling` block (the keys under
    /// `tail_sampling:`, as the OpenTelemetry Collector's YAML writes them),
    /// forwarding kept traces to `downstream`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad key and why.
    pub fn from_config_yaml(yaml: &str, downstream: P) -> Result<Self, ConfigError> {
        Ok(Self::new(TailSamplingConfig::from_yaml(yaml)?, downstream))
    }

    /// A processor running `config`, forwarding kept traces to `downstream`.
    pub fn new(config: TailSamplingConfig, downstream: P) -> Self {
        TailSamplingGroup::new(config).processor(downstream)
    }

    /// A processor on an engine configured with `builder` (a test clock, say).
    pub fn with_sampler(builder: TailSamplerBuilder, downstream: P) -> Self {
        TailSamplingGroup::with_sampler(builder).processor(downstream)
    }

    /// The engine's counters (shared by the group).
    pub fn stats(&self) -> TailSamplingStats {
        self.group.sampler.stats()
    }
}

impl<P: SpanProcessor + 'static> SpanProcessor for TailSamplingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.downstream.read().on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.group.sampler.ingest(
            &self.resource,
            MemberSpan {
                member: self.member,
                span,
            },
        );
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.group.sampler.decide_all();
        self.downstream.read().force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let started = Instant::now();
        if self.closed.swap(true, Ordering::AcqRel) {
            return Err(opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown);
        }
        if self.group.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.group.sampler.shutdown();
        } else {
            // Others still feed the engine: decide what is buffered so this
            // member's spans are forwarded before its downstream stops.
            self.group.sampler.decide_all();
        }
        self.downstream
            .read()
            .shutdown_with_timeout(timeout.saturating_sub(started.elapsed()))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = self.group.sampler.resource_match(resource);
        self.downstream
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .set_resource(resource);
    }
}
