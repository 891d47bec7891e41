//! Trace ids in every log line: a tracing-subscriber event formatter that adds
//! `trace_id`, `span_id` and `trace_flags` of the current span, as top-level
//! fields of `fmt().json()` output and as a compact suffix of text output.
//!
//! The span is found whether it is a `tracing` span recorded by
//! [`TracingLayer`](crate::TracingLayer) (also when the event names it as its
//! parent without entering it), a span of the OpenTelemetry API, or a
//! `tracing` span of tracing-opentelemetry's layer; nothing is added when no
//! span is active. [`Telemetry::init`](crate::TelemetryBuilder::init) installs
//! one of these layers for you.
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let subscriber = tracing_subscriber::registry()
//!     // .with(telemetry.tracing_layer())
//!     .with(otel_core::logs::json_layer());
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info!(order = 42, "order placed");
//! });
//! ```
//!
//! Text output, with colours off (the ids follow the inner formatter's line):
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let subscriber = tracing_subscriber::registry().with(otel_core::logs::text_layer());
//! # drop(subscriber);
//! ```

use crate::layer::state::{Inherited, Slot};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use std::cell::RefCell;
use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The ids of the event's span: for an event given an explicit parent, that
/// span's; otherwise the active OpenTelemetry context's (a span of
/// [`TracingLayer`](crate::TracingLayer) or of tracing-opentelemetry is active
/// while entered, and so is an OpenTelemetry API span), else the current
/// `tracing` span's as [`TracingLayer`](crate::TracingLayer) recorded it, else
/// (feature `tracing-opentelemetry`) as tracing-opentelemetry keeps it.
fn current_ids<S, N>(ctx: &FmtContext<'_, S, N>, event: &Event<'_>) -> Option<(TraceId, SpanId, u8)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let ids = |sc: &SpanContext| {
        sc.is_valid()
            .then(|| (sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
    };
    let span = match event.parent() {
        Some(id) => ctx.span(id),
        None if event.is_contextual() => {
            if let Some(found) = Context::map_current(|cx| ids(cx.span().span_context())) {
                return Some(found);
            }
            ctx.lookup_current()
        }
        None => None,
    }?;
    for s in span.scope() {
        let ext = s.extensions();
        if let Some(state) = ext.get::<Slot>() {
            return ids(&state.sc);
        }
        if ext.get::<Inherited>().is_none() {
            break;
        }
    }
    #[cfg(feature = "tracing-opentelemetry")]
    {
        let id = span.id();
        let cx = tracing::dispatcher::get_default(|d| tracing_opentelemetry::get_otel_context(&id, d))?;
        return ids(cx.span().span_context());
    }
    #[allow(unreachable_code)] // Reached without the tracing-opentelemetry feature.
    None
}

/// Lowercase hex of `bytes` into `out` (twice as long), without formatting machinery.
fn hex_into<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    std::str::from_utf8(out).unwrap_or_default()
}

/// Wraps an event formatter to add the current span's ids to each line:
/// JSON objects get `trace_id`, `span_id` and `trace_flags` as their first
/// fields; other lines get ` trace_id=… span_id=… trace_flags=…` before the
/// newline.
#[derive(Debug, Clone, Default)]
pub struct WithTraceIds<F> {
    inner: F,
}

impl<F> WithTraceIds<F> {
    /// Adds trace ids to what `inner` formats.
    pub fn new(inner: F) -> Self {
        WithTraceIds { inner }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let Some((trace, span, flags)) = current_ids(ctx, event) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let (mut t, mut s, mut f) = ([0u8; 32], [0u8; 16], [0u8; 2]);
        let trace_id = hex_into(&trace.to_bytes(), &mut t);
        let span_id = hex_into(&span.to_bytes(), &mut s);
        let flags = hex_into(&[flags], &mut f);
        LINE.with(|line| {
            // Re-entrant formatting (an event logged while formatting) gets a fresh buffer.
            let mut owned;
            let mut borrowed = line.try_borrow_mut();
            let buf: &mut String = match borrowed.as_deref_mut() {
                Ok(b) => b,
                Err(_) => {
                    owned = String::new();
                    &mut owned
                }
            };
            buf.clear();
            self.inner.format_event(ctx, Writer::new(buf), event)?;
            match buf.strip_prefix('{') {
                Some(rest) => {
                    for part in [
                        "{\"trace_id\":\"",
                        trace_id,
                        "\",\"span_id\":\"",
                        span_id,
                        "\",\"trace_flags\":\"",
                        flags,
                        "\",",
                    ] {
                        writer.write_str(part)?;
                    }
                    writer.write_str(rest)
                }
                None => {
                    let body = buf.strip_suffix('\n').unwrap_or(buf);
                    for part in [
                        body,
                        " trace_id=",
                        trace_id,
                        " span_id=",
                        span_id,
                        " trace_flags=",
                        flags,
                        "\n",
                    ] {
                        writer.write_str(part)?;
                    }
                    Ok(())
                }
            }
        })
    }
}

/// A `fmt` layer writing JSON lines (event fields at the top level) with trace ids.
pub fn json_layer<S>() -> tracing_subscriber::fmt::Layer<S, JsonFields, WithTraceIds<Format<Json>>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .event_format(WithTraceIds::new(
            format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        ))
}

/// A `fmt` layer writing text lines with a ` trace_id=… span_id=…` suffix (no colours).
pub fn text_layer<S>() -> tracing_subscriber::fmt::Layer<S, format::DefaultFields, WithTraceIds<Format>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(WithTraceIds::new(format().with_ansi(false)))
}

fn format() -> Format {
    Format::default()
}

/// A layer that also records each log event as an event on the current
/// OpenTelemetry span (for spans made with the OpenTelemetry API; spans from
/// tracing-opentelemetry record events themselves).
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanEventsLayer;

struct Fields(Vec<KeyValue>, Option<String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.1 = Some(format!("{value:?}"));
        } else {
            self.0.push(KeyValue::new(field.name(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.1 = Some(value.to_owned());
        } else {
            self.0.push(KeyValue::new(field.name(), value.to_owned()));
        }
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.push(KeyValue::new(field.name(), value));
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0
            .push(KeyValue::new(field.name(), i64::try_from(value).unwrap_or(i64::MAX)));
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.push(KeyValue::new(field.name(), value));
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.push(KeyValue::new(field.name(), value));
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for SpanEventsLayer {
    fn on_event(&self, event: &Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        // Events inside a tracing span are recorded by tracing-opentelemetry already.
        if ctx.current_span().id().is_some() {
            return;
        }
        Context::map_current(|cx| {
            let span = cx.span();
            if !span.is_recording() {
                return;
            }
            let mut fields = Fields(vec![KeyValue::new("level", event.metadata().level().as_str())], None);
            event.record(&mut fields);
            let name = fields.1.take().unwrap_or_else(|| event.metadata().name().to_owned());
            span.add_event(name, fields.0);
        });
    }
}
