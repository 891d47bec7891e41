//! The engine in-process: a `SpanProcessor` that keeps whole error and slow
//! traces and forwards them to a downstream processor.

use crate::config::ConfigError;
use crate::engine::{KeptBy, TailSampler, TailSamplerBuilder, TailSamplingStats, TraceSink};
use crate::predicate::ResourceMatch;
use crate::settings::TailSamplingConfig;
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, TraceFlags};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The downstream processor, shared by the engine (which forwards kept
/// spans) and the processor (which flushes and shuts it down).
struct Downstream<P>(RwLock<P>);

impl<P> Downstream<P> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, P> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<P: SpanProcessor> TraceSink<SpanData> for Downstream<P> {
    fn keep(&self, _trace_id: [u8; 16], spans: Vec<SpanData>, _kept_by: KeptBy<'_>) {
        let p = self.read();
        for mut span in spans {
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
            p.on_end(span);
        }
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
/// this process only; traces crossing services are decided per service
/// unless the spans are sent to one `otel-collector` sidecar instead.
pub struct TailSamplingProcessor<P: SpanProcessor + 'static> {
    sampler: TailSampler<SpanData>,
    downstream: Arc<Downstream<P>>,
    resource: ResourceMatch,
}

impl<P: SpanProcessor + 'static> fmt::Debug for TailSamplingProcessor<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailSamplingProcessor")
            .field("sampler", &self.sampler)
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
        Self::with_sampler(TailSamplerBuilder::new(config), downstream)
    }

    /// A processor on an engine configured with `builder` (a test clock, say).
    pub fn with_sampler(builder: TailSamplerBuilder, downstream: P) -> Self {
        let downstream = Arc::new(Downstream(RwLock::new(downstream)));
        let sink: Arc<dyn TraceSink<SpanData>> = downstream.clone();
        let sampler = builder.build(sink);
        let resource = sampler.resource_match(&Resource::builder_empty().build());
        TailSamplingProcessor {
            sampler,
            downstream,
            resource,
        }
    }

    /// The engine's counters.
    pub fn stats(&self) -> TailSamplingStats {
        self.sampler.stats()
    }

    /// The engine.
    pub fn sampler(&self) -> &TailSampler<SpanData> {
        &self.sampler
    }
}

impl<P: SpanProcessor + 'static> SpanProcessor for TailSamplingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.downstream.read().on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.sampler.ingest(&self.resource, span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.sampler.decide_all();
        self.downstream.read().force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let started = Instant::now();
        self.sampler.shutdown();
        self.downstream
            .read()
            .shutdown_with_timeout(timeout.saturating_sub(started.elapsed()))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = self.sampler.resource_match(resource);
        self.downstream
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .set_resource(resource);
    }
}
