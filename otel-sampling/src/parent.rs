//! What a sampler needs to know about the parent span, read once.

use crate::ot::OtState;
use crate::threshold::Randomness;
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceId, TraceState};
use std::sync::atomic::{AtomicBool, Ordering};

/// The random trace id flag of W3C Trace Context Level 2.
const FLAG_RANDOM: u8 = 0x02;

/// The parent's span context, as far as sampling cares.
pub(crate) struct Parent<'a> {
    /// The parent's tracestate (empty for a root).
    pub(crate) trace_state: &'a TraceState,
    /// `None` for a root; otherwise (is_remote, is_sampled).
    pub(crate) kind: Option<(bool, bool)>,
    flags: u8,
}

static EMPTY: TraceState = TraceState::NONE;

impl<'a> Parent<'a> {
    /// Runs `f` with the parent read from `cx`.
    #[inline]
    pub(crate) fn with<T>(cx: Option<&Context>, f: impl FnOnce(&Parent<'_>) -> T) -> T {
        match cx {
            Some(cx) if cx.has_active_span() => {
                let span = cx.span();
                let sc = span.span_context();
                let kind = sc.is_valid().then(|| (sc.is_remote(), sc.is_sampled()));
                f(&Parent {
                    trace_state: sc.trace_state(),
                    kind,
                    flags: sc.trace_flags().to_u8(),
                })
            }
            _ => f(&Parent {
                trace_state: &EMPTY,
                kind: None,
                flags: 0,
            }),
        }
    }

    /// Reads a valid parent span context.
    #[inline]
    pub(crate) fn of(sc: &'a SpanContext) -> Parent<'a> {
        Parent {
            trace_state: sc.trace_state(),
            kind: Some((sc.is_remote(), sc.is_sampled())),
            flags: sc.trace_flags().to_u8(),
        }
    }

    /// Whether the parent's tracestate has any member (skips parsing when not).
    #[inline]
    pub(crate) fn has_trace_state(&self) -> bool {
        has_members(self.trace_state)
    }

    /// The `ot` member's sampling fields.
    #[inline]
    pub(crate) fn ot(&self) -> OtState {
        if self.has_trace_state() {
            OtState::read(self.trace_state)
        } else {
            OtState::default()
        }
    }

    /// The randomness of this trace: explicit `rv`, else the trace id's low 56 bits.
    ///
    /// Trace ids are random when this process made them (roots) or when the
    /// caller said so (the random flag); otherwise the first such decision logs
    /// a warning, as the specification asks, and the trace id is used anyway.
    #[inline]
    pub(crate) fn randomness(&self, ot: &OtState, trace_id: TraceId) -> Randomness {
        if let Some(rv) = ot.randomness {
            return rv;
        }
        if matches!(self.kind, Some((true, _))) && self.flags & FLAG_RANDOM == 0 {
            warn_not_random_once();
        }
        Randomness::from_trace_id(trace_id)
    }
}

/// Whether a tracestate has any member; the comparison with `NONE` answers the
/// common case without building an iterator.
#[inline]
pub(crate) fn has_members(trace_state: &TraceState) -> bool {
    *trace_state != TraceState::NONE && trace_state.into_iter().len() != 0
}

fn warn_not_random_once() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    // A plain load first: the swap's exclusive cache-line access would cost
    // every later decision.
    if !WARNED.load(Ordering::Relaxed) && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "otel_sampling",
            "consistent probability sampling presumes trace id randomness for a remote parent that did not set the W3C random flag; decisions may disagree with callers whose trace ids are not random"
        );
    }
}
