//! `tracing` spans as OpenTelemetry spans, straight into the installed
//! pipeline: [`TracingLayer`], from [`TelemetryHandle::tracing_layer`](crate::TelemetryHandle::tracing_layer), and
//! [`OpenTelemetrySpanExt`] on `tracing::Span`.
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let telemetry = otel_core::Telemetry::builder()
//!     .with_service_name("checkout")
//!     .without_exporter()
//!     .with_console_exporter()
//!     .install()
//!     .expect("valid settings");
//! let subscriber = tracing_subscriber::registry()
//!     .with(telemetry.tracing_layer())
//!     .with(otel_core::logs::json_layer());
//! tracing::subscriber::with_default(subscriber, || {
//!     let _span = tracing::info_span!("load config", file = "app.toml").entered();
//!     tracing::info!("loaded");
//! });
//! telemetry.shutdown(std::time::Duration::from_secs(5)).expect("flushed");
//! ```
//!
//! # What a `tracing` span becomes
//!
//! - A span of the installed pipeline: sampled at creation by the installed
//!   sampler (given the name, kind and the fields known at creation), handed
//!   to its processors (batch export, an in-process tail sampler, ...) when it
//!   closes. Processors' `on_start` is not called: there is no SDK span.
//! - Its name is the span's name, or an `otel.name` field; `otel.kind`,
//!   `otel.status_code` and `otel.status_message` set kind and status; other
//!   fields become attributes (integers, floats and booleans typed, `Debug`
//!   and `Display` values as strings); `Span::record` adds or replaces one.
//! - Events inside it become span events with their fields (plus `level` and
//!   `target`); an ERROR event, or an event with an `error` field (what
//!   `#[instrument(err)]` emits), sets the error status and makes an
//!   `exception` event. `follows_from` becomes a link. The instrumentation
//!   scope is the span's target (its module path, unless set).
//! - Its parent is the `tracing` parent (contextual or explicit); a span with
//!   no `tracing` parent continues the current OpenTelemetry context (a
//!   request span of `otel-integrations`' server layer, or a context you
//!   attached). While the span is entered, `opentelemetry::Context::current()`
//!   is its context, so OpenTelemetry API spans (the HTTP, gRPC and AMQP
//!   client spans of `otel-integrations`) become its children and propagate it.
//! - Timing: start at creation, end at close. The clock is the CPU's cycle
//!   counter when the OS trusts it, calibrated against the system clock.
//!
//! # Costs
//!
//! The work on the calling thread is creating the span's identity and
//! context, recording fields, and moving the span into its thread's hand-off
//! buffer at close. Converting it to `SpanData` and calling the processors
//! happen on the pipeline's recorder thread, within 100 ms (sooner under
//! load), and at every `force_flush` and `shutdown`. A span in a trace that
//! is not sampled records nothing: its fields are not read, and, below a span
//! of this layer, it shares its parent's context and allocates nothing.
//!
//! # Edges
//!
//! - A span never closed is never exported (nothing leaks beyond what the
//!   registry keeps for it). A span closed on another thread is handed off by
//!   that thread.
//! - Adding the layer twice records each span once (the first copy to see a
//!   span owns it).
//! - A layer of a pipeline that is disabled (`OTEL_SDK_DISABLED`) does
//!   nothing; after `shutdown`, closed spans are counted as dropped.
//! - Fields of any type and size are accepted; attribute, event and link
//!   counts follow the pipeline's span limits (extra ones are counted as
//!   dropped on the span).

mod ext;
mod ids;
pub(crate) mod recorder;
pub(crate) mod state;

pub use ext::{OpenTelemetrySpanExt, SetParentError};

use opentelemetry::Context as OtelContext;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags};
use opentelemetry_sdk::trace::SamplingDecision;
use recorder::Recorder;
use state::{EventVisit, Inherited, Slot, SpanState, SpanVisit, with_scratch};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

/// The W3C Trace Context Level 2 random trace-id flag.
const FLAG_RANDOM: u8 = 0x02;
/// Ancestors searched for a recorded span before giving up (a bound, not a
/// depth real programs reach).
const MAX_HOPS: usize = 256;

static NEXT_LAYER: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Contexts attached by `on_enter`, detached by the matching `on_exit`:
    /// (layer id, span id, guard).
    static GUARDS: RefCell<Vec<(u64, u64, opentelemetry::ContextGuard)>> = const { RefCell::new(Vec::new()) };
}

/// Runs a closure on a recorded span's state.
type EditFn = fn(&TracingLayer, &Dispatch, &Id, &mut dyn FnMut(&mut SpanState, &Recorder));

/// The functions that reach a span's data from a `Dispatch`, made for the
/// subscriber type the layer was added to (so [`OpenTelemetrySpanExt`] works
/// without knowing it).
#[derive(Clone, Copy)]
struct Hooks {
    context: fn(&TracingLayer, &Dispatch, &Id) -> Option<OtelContext>,
    set_parent: fn(&TracingLayer, &Dispatch, &Id, OtelContext) -> Result<(), SetParentError>,
    edit: EditFn,
}

/// A `tracing_subscriber` layer that records `tracing` spans as OpenTelemetry
/// spans of an installed pipeline. Get one from
/// [`TelemetryHandle::tracing_layer`](crate::TelemetryHandle::tracing_layer);
/// see the [module documentation](self) for what it records.
pub struct TracingLayer {
    id: u64,
    recorder: Option<Arc<Recorder>>,
    hooks: Option<Hooks>,
    activate: bool,
}

impl std::fmt::Debug for TracingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingLayer")
            .field("enabled", &self.recorder.is_some())
            .finish_non_exhaustive()
    }
}

/// The parent of a new span, as far as its identity and sampling go.
struct ParentInfo {
    /// The parent's context: a recorded span's own, or the current
    /// OpenTelemetry context for a span without a `tracing` parent.
    cx: Option<OtelContext>,
    /// The parent's valid span context, if any.
    sc: Option<SpanContext>,
    /// The parent is a span of this layer (a local parent).
    ours: bool,
}

impl TracingLayer {
    pub(crate) fn new(recorder: Option<Arc<Recorder>>) -> Self {
        if let Some(r) = &recorder {
            r.start();
        }
        TracingLayer {
            id: NEXT_LAYER.fetch_add(1, Ordering::Relaxed),
            recorder,
            hooks: None,
            activate: true,
        }
    }

    /// Whether entering a span makes its context the current OpenTelemetry
    /// context (`opentelemetry::Context::current()`), so OpenTelemetry API
    /// spans started inside it (the HTTP, gRPC and AMQP client spans of
    /// `otel-integrations`, other libraries' spans) become its children and
    /// outgoing requests propagate it. Defaults to true.
    ///
    /// Turned off, a span costs less to enter and exit (no context is built,
    /// attached or detached), `tracing` spans still form their trees, and
    /// [`OpenTelemetrySpanExt::context`] still gives a span's context to
    /// propagate by hand; but OpenTelemetry API spans inside a `tracing` span
    /// no longer see it.
    pub fn with_context_activation(mut self, activate: bool) -> Self {
        self.activate = activate;
        self
    }

    fn live(&self) -> Option<&Recorder> {
        self.recorder.as_deref().filter(|r| !r.is_shut_down())
    }

    /// The context of the nearest span at or above `from` that this layer
    /// recorded (a span of an unsampled trace shares its ancestor's).
    fn nearest_context<S>(from: Option<SpanRef<'_, S>>) -> Option<OtelContext>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut next = from;
        for _ in 0..MAX_HOPS {
            let span = next?;
            if let Some(state) = span.extensions_mut().get_mut::<Slot>() {
                return Some(state.context());
            }
            next = span.parent();
        }
        None
    }

    fn parent_of<S>(span: &SpanRef<'_, S>, attrs: &Attributes<'_>) -> ParentInfo
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut next = span.parent();
        for _ in 0..MAX_HOPS {
            let Some(p) = next else { break };
            if let Some(state) = p.extensions_mut().get_mut::<Slot>() {
                let cx = state.context();
                return ParentInfo {
                    cx: Some(cx),
                    sc: Some(state.sc.clone()),
                    ours: true,
                };
            }
            next = p.parent();
        }
        // No recorded `tracing` parent: continue the current OpenTelemetry
        // context, unless the span was given an explicit parent (or none).
        if attrs.is_contextual() {
            let cx = OtelContext::current();
            let sc = recorder::valid_span_context(&cx);
            ParentInfo {
                cx: Some(cx),
                sc,
                ours: false,
            }
        } else {
            ParentInfo {
                cx: None,
                sc: None,
                ours: false,
            }
        }
    }

    fn context_of<S>(_layer: &TracingLayer, dispatch: &Dispatch, id: &Id) -> Option<OtelContext>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let subscriber = dispatch.downcast_ref::<S>()?;
        Self::nearest_context(subscriber.span(id))
    }

    fn edit_of<S>(layer: &TracingLayer, dispatch: &Dispatch, id: &Id, f: &mut dyn FnMut(&mut SpanState, &Recorder))
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(recorder) = layer.live() else { return };
        let Some(subscriber) = dispatch.downcast_ref::<S>() else {
            return;
        };
        let Some(span) = subscriber.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(state) = ext.get_mut::<Slot>()
            && state.recording
        {
            f(state, recorder);
        }
    }

    fn set_parent_of<S>(
        layer: &TracingLayer,
        dispatch: &Dispatch,
        id: &Id,
        cx: OtelContext,
    ) -> Result<(), SetParentError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let recorder = layer.live().ok_or(SetParentError::LayerNotFound)?;
        let subscriber = dispatch.downcast_ref::<S>().ok_or(SetParentError::LayerNotFound)?;
        let span = subscriber.span(id).ok_or(SetParentError::SpanDisabled)?;
        let meta = span.metadata();
        let mut ext = span.extensions_mut();
        let mut state = match ext.remove::<Slot>() {
            Some(s) if s.started => {
                ext.insert(s);
                return Err(SetParentError::AlreadyStarted);
            }
            Some(s) => s,
            None if ext.remove::<Inherited>().is_some() => {
                // Created inside a trace that is not sampled: it kept no fields.
                let mut s = recorder.take_box();
                s.reset(layer.id, meta, recorder.clock.raw());
                s
            }
            None => return Err(SetParentError::SpanDisabled),
        };
        drop(ext);
        let parent = ParentInfo {
            sc: recorder::valid_span_context(&cx),
            cx: Some(cx),
            ours: false,
        };
        layer.identify(&mut state, parent, recorder);
        span.extensions_mut().insert(state);
        Ok(())
    }

    /// Gives `state` its trace, span id, sampling decision and parent, from
    /// `parent` and the sampler (which sees the name, kind and fields so far).
    fn identify(&self, state: &mut SpanState, parent: ParentInfo, recorder: &Recorder) {
        let trace_id = parent.sc.as_ref().map_or_else(ids::trace_id, SpanContext::trace_id);
        // Attributes are built for the sampler only when it reads them.
        let attributes = if recorder.sampler_reads_attributes {
            state.key_values()
        } else {
            Vec::new()
        };
        let result = recorder.sampler.should_sample(
            parent.cx.as_ref(),
            trace_id,
            state.name.to_cow(&state.text).as_ref(),
            &state.kind,
            &attributes,
            &state.links,
        );
        let sampled = result.decision == SamplingDecision::RecordAndSample;
        state.recording = result.decision != SamplingDecision::Drop;
        if state.recording {
            for kv in result.attributes {
                state.set_key_value(kv, &recorder.limits);
            }
        } else {
            state.clear_data();
        }
        let (flags, parent_span_id, parent_is_remote) = match &parent.sc {
            Some(p) => (p.trace_flags().with_sampled(sampled), p.span_id(), p.is_remote()),
            None => (
                TraceFlags::new(FLAG_RANDOM).with_sampled(sampled),
                SpanId::INVALID,
                false,
            ),
        };
        state.sc = SpanContext::new(trace_id, ids::span_id(), flags, false, result.trace_state);
        state.parent_span_id = parent_span_id;
        state.parent_is_remote = parent_is_remote;
        state.cx = parent.cx;
        state.own_cx = false;
    }

    /// Records the fields given at creation straight into `state`'s buffers.
    fn record_new(state: &mut SpanState, attrs: &Attributes<'_>, recorder: &Recorder) {
        if attrs.is_empty() {
            return;
        }
        let mut visit = SpanVisit::into_state(state, &recorder.limits);
        attrs.record(&mut visit);
        let (dropped, update) = (visit.dropped, visit.update);
        state.dropped_attributes += dropped;
        if let Some(name) = update.name {
            state.name = name;
        }
        if let Some(kind) = update.kind {
            state.kind = kind;
        }
        if let Some(status) = update.status.resolve() {
            state.status = status;
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for TracingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        self.hooks = Some(Hooks {
            context: Self::context_of::<S>,
            set_parent: Self::set_parent_of::<S>,
            edit: Self::edit_of::<S>,
        });
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(recorder) = self.live() else { return };
        if recorder::suppressed() {
            return;
        }
        let start = recorder.clock.raw();
        let Some(span) = ctx.span(id) else { return };
        let meta = attrs.metadata();
        let parent = Self::parent_of(&span, attrs);

        if parent.ours && recorder.follows_local_parent {
            // The sampler would follow the parent: decide without calling it,
            // and read no field of a span that will not be recorded.
            let Some(psc) = parent.sc.as_ref().filter(|sc| sc.is_sampled()) else {
                insert_inherited(&span);
                return;
            };
            let mut state = recorder.take_box();
            state.reset(self.id, meta, start);
            state.sc = SpanContext::new(
                psc.trace_id(),
                ids::span_id(),
                psc.trace_flags(),
                false,
                psc.trace_state().clone(),
            );
            state.parent_span_id = psc.span_id();
            state.recording = true;
            state.cx = parent.cx;
            Self::record_new(&mut state, attrs, recorder);
            insert_state(&span, state, recorder);
        } else {
            let mut state = recorder.take_box();
            state.reset(self.id, meta, start);
            Self::record_new(&mut state, attrs, recorder);
            let ours = parent.ours;
            self.identify(&mut state, parent, recorder);
            if !state.recording && ours {
                recorder.give_back(state);
                insert_inherited(&span);
                return;
            }
            insert_state(&span, state, recorder);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(recorder) = self.live() else { return };
        let Some(span) = ctx.span(id) else { return };
        if !recording(&span, self.id) {
            return;
        }
        with_scratch(|scratch| {
            let mut visit = SpanVisit::into_scratch(scratch);
            values.record(&mut visit);
            let update = visit.update;
            if let Some(state) = span.extensions_mut().get_mut::<Slot>() {
                state.apply(scratch, update, &recorder.limits);
            }
        });
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        let Some(recorder) = self.live() else { return };
        let Some(span) = ctx.span(id) else { return };
        if !recording(&span, self.id) {
            return;
        }
        let Some(cx) = Self::nearest_context(ctx.span(follows)) else {
            return;
        };
        let Some(sc) = recorder::valid_span_context(&cx) else {
            return;
        };
        if let Some(state) = span.extensions_mut().get_mut::<Slot>() {
            state.add_link(opentelemetry::trace::Link::with_context(sc), &recorder.limits);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(recorder) = self.live() else { return };
        let span = match event.parent() {
            Some(id) => ctx.span(id),
            None if event.is_contextual() => ctx.lookup_current(),
            None => None,
        };
        let Some(span) = span else { return };
        if !recording(&span, self.id) {
            return;
        }
        let meta = event.metadata();
        let at = recorder.clock.raw();
        with_scratch(|scratch| {
            let mut visit = EventVisit::new(scratch, meta, at);
            event.record(&mut visit);
            let update = visit.finish();
            if let Some(state) = span.extensions_mut().get_mut::<Slot>() {
                state.add_event_from(scratch, update, &recorder.limits);
            }
        });
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.activate || self.live().is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let cx = {
            let mut ext = span.extensions_mut();
            if let Some(state) = ext.get_mut::<Slot>() {
                (state.owner == self.id).then(|| state.context())
            } else if ext.get_mut::<Inherited>().is_some() {
                drop(ext);
                Self::nearest_context(span.parent())
            } else {
                None
            }
        };
        if let Some(cx) = cx {
            let guard = cx.attach();
            let (layer, span) = (self.id, id.into_u64());
            let _ = GUARDS.try_with(|g| {
                if let Ok(mut g) = g.try_borrow_mut() {
                    g.push((layer, span, guard));
                }
            });
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        if !self.activate {
            return;
        }
        let key = (self.id, id.into_u64());
        let guard = GUARDS
            .try_with(|g| {
                let mut g = g.try_borrow_mut().ok()?;
                let at = g.iter().rposition(|(l, s, _)| (*l, *s) == key)?;
                Some(g.remove(at).2)
            })
            .ok()
            .flatten();
        // Detached after the list is released: dropping a context may run code.
        drop(guard);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(recorder) = self.recorder.as_deref() else {
            return;
        };
        let end = recorder.clock.raw();
        let Some(span) = ctx.span(&id) else { return };
        let state = {
            let mut ext = span.extensions_mut();
            match ext.remove::<Slot>() {
                Some(s) if s.owner != self.id => {
                    ext.insert(s);
                    None
                }
                other => other,
            }
        };
        let Some(mut state) = state else { return };
        // Contexts are released here, on the thread that made them.
        state.cx = None;
        if state.recording {
            state.end = end;
            recorder.finish(state);
        } else {
            recorder.give_back(state);
        }
    }
}

/// Whether `span` is recorded by the layer `owner`.
fn recording<S>(span: &SpanRef<'_, S>, owner: u64) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    span.extensions()
        .get::<Slot>()
        .is_some_and(|s| s.owner == owner && s.recording)
}

/// Marks `span` as part of an unsampled trace below a span of this layer
/// (unless another copy of the layer already took it).
fn insert_inherited<S>(span: &SpanRef<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut ext = span.extensions_mut();
    if ext.get_mut::<Slot>().is_none() {
        ext.insert(Inherited);
    }
}

/// Stores `state` for `span` (unless another copy of the layer already took it).
fn insert_state<S>(span: &SpanRef<'_, S>, state: Slot, recorder: &Recorder)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut ext = span.extensions_mut();
    if ext.get_mut::<Slot>().is_none() && ext.get_mut::<Inherited>().is_none() {
        ext.insert(state);
    } else {
        drop(ext);
        recorder.give_back(state);
    }
}
