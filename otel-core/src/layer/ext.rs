//! OpenTelemetry operations on a `tracing::Span`, named as in
//! tracing-opentelemetry so moving from it is an import change.

use super::recorder::Recorder;
use super::{Hooks, TracingLayer};
use opentelemetry::trace::{Link, SpanContext, Status};
use opentelemetry::{Context, Key, KeyValue, Value};
use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;
use tracing_core::Dispatch;
use tracing_core::span::Id;

/// Why [`OpenTelemetrySpanExt::set_parent`] did not change the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetParentError {
    /// The span's subscriber has no [`TracingLayer`] (or its pipeline is shut down).
    LayerNotFound,
    /// The span's context was already used (it was entered, or a child or
    /// [`OpenTelemetrySpanExt::context`] took it), so its trace is fixed.
    AlreadyStarted,
    /// The span is disabled (filtered out, or made without a subscriber).
    SpanDisabled,
}

impl fmt::Display for SetParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetParentError::LayerNotFound => "the span's subscriber has no otel-core tracing layer (or it is shut down)",
            SetParentError::AlreadyStarted => {
                "the span's context was already used (entered, or given to a child), so its parent cannot change; set the parent right after creating the span"
            }
            SetParentError::SpanDisabled => "the span is disabled (filtered out or made without a subscriber)",
        })
    }
}

impl std::error::Error for SetParentError {}

/// OpenTelemetry operations on a `tracing::Span` recorded by [`TracingLayer`].
///
/// On a span the layer does not record (disabled, or in a trace that is not
/// sampled) the recording operations do nothing.
///
/// ```
/// use otel_core::OpenTelemetrySpanExt;
/// use opentelemetry::trace::TraceContextExt;
///
/// let span = tracing::info_span!("handle message");
/// // A context extracted from the message's headers would go here.
/// let _ = span.set_parent(opentelemetry::Context::new());
/// span.set_attribute("messaging.message.id", "m-1");
/// let cx = span.context();
/// assert!(!cx.span().span_context().is_valid()); // no subscriber here
/// ```
pub trait OpenTelemetrySpanExt {
    /// Makes `cx` (for example a context extracted from incoming headers) the
    /// span's parent, sampling it again. Call it right after creating the span.
    ///
    /// A span created inside a trace that is not sampled kept none of its
    /// fields; after `set_parent` it has its name and what is recorded from
    /// then on. Create such spans with `parent: None` to keep them.
    ///
    /// # Errors
    ///
    /// [`SetParentError`]: no layer, the span's context already used, or the
    /// span disabled.
    fn set_parent(&self, cx: Context) -> Result<(), SetParentError>;

    /// Links another span.
    fn add_link(&self, cx: SpanContext);

    /// Links another span, with attributes on the link.
    fn add_link_with_attributes(&self, cx: SpanContext, attributes: Vec<KeyValue>);

    /// The span's OpenTelemetry context, to propagate or to parent
    /// OpenTelemetry API spans; an empty context when the span is disabled.
    /// Its trace is then fixed ([`set_parent`](Self::set_parent) fails).
    fn context(&self) -> Context;

    /// Sets (or replaces) an attribute.
    fn set_attribute(&self, key: impl Into<Key>, value: impl Into<Value>);

    /// Sets the status.
    fn set_status(&self, status: Status);

    /// Adds an event, timestamped now.
    fn add_event(&self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>);

    /// Adds an event with a timestamp.
    fn add_event_with_timestamp(
        &self,
        name: impl Into<Cow<'static, str>>,
        timestamp: SystemTime,
        attributes: Vec<KeyValue>,
    );
}

/// Runs `f` with the span's layer, if its subscriber has one.
fn with_layer<R>(span: &tracing::Span, f: impl FnOnce(&TracingLayer, Hooks, &Dispatch, &Id) -> R) -> Option<R> {
    span.with_subscriber(|(id, dispatch)| {
        let layer = dispatch.downcast_ref::<TracingLayer>()?;
        let hooks = layer.hooks?;
        Some(f(layer, hooks, dispatch, id))
    })
    .flatten()
}

fn edit(span: &tracing::Span, mut f: impl FnMut(&mut super::state::SpanState, &Recorder)) {
    with_layer(span, |layer, hooks, dispatch, id| {
        (hooks.edit)(layer, dispatch, id, &mut f)
    });
}

impl OpenTelemetrySpanExt for tracing::Span {
    fn set_parent(&self, cx: Context) -> Result<(), SetParentError> {
        if self.is_disabled() {
            return Err(SetParentError::SpanDisabled);
        }
        with_layer(self, |layer, hooks, dispatch, id| {
            (hooks.set_parent)(layer, dispatch, id, cx)
        })
        .unwrap_or(Err(SetParentError::LayerNotFound))
    }

    fn add_link(&self, cx: SpanContext) {
        self.add_link_with_attributes(cx, Vec::new());
    }

    fn add_link_with_attributes(&self, cx: SpanContext, attributes: Vec<KeyValue>) {
        if !cx.is_valid() {
            return;
        }
        let mut link = Some(Link::new(cx, attributes, 0));
        edit(self, |state, recorder| {
            if let Some(link) = link.take() {
                state.add_link(link, &recorder.limits);
            }
        });
    }

    fn context(&self) -> Context {
        with_layer(self, |layer, hooks, dispatch, id| (hooks.context)(layer, dispatch, id))
            .flatten()
            .unwrap_or_default()
    }

    fn set_attribute(&self, key: impl Into<Key>, value: impl Into<Value>) {
        let mut kv = Some(KeyValue::new(key, value));
        edit(self, |state, recorder| {
            if let Some(kv) = kv.take() {
                state.set_key_value(kv, &recorder.limits);
            }
        });
    }

    fn set_status(&self, status: Status) {
        let mut status = Some(status);
        edit(self, |state, _| {
            if let Some(s) = status.take() {
                state.status = s;
            }
        });
    }

    fn add_event(&self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
        let mut event = Some((name.into(), attributes));
        edit(self, |state, recorder| {
            if let Some((name, attributes)) = event.take() {
                let at = recorder.clock.raw();
                state.add_event(name, at, None, attributes, &recorder.limits);
            }
        });
    }

    fn add_event_with_timestamp(
        &self,
        name: impl Into<Cow<'static, str>>,
        timestamp: SystemTime,
        attributes: Vec<KeyValue>,
    ) {
        let mut event = Some((name.into(), attributes));
        edit(self, |state, recorder| {
            if let Some((name, attributes)) = event.take() {
                state.add_event(name, 0, Some(timestamp), attributes, &recorder.limits);
            }
        });
    }
}
