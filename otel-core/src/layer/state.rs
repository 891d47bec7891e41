//! What the layer keeps per `tracing` span, and how `tracing` fields become
//! OpenTelemetry attributes, names, kinds, statuses and events.
//!
//! The field conventions are tracing-opentelemetry's, so moving from it is an
//! import change: `otel.name`, `otel.kind`, `otel.status_code`,
//! `otel.status_message` (also its older `otel.status_description`); an
//! `error` field on an event, or an event at ERROR level, marks the span as
//! failed; `&dyn Error` values add `exception.*` attributes.

use opentelemetry::trace::{Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _};
use opentelemetry::{Context, Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanLimits;
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use tracing_core::field::{Field, Visit};
use tracing_core::{Level, Metadata};

const NAME_FIELD: &str = "otel.name";
const KIND_FIELD: &str = "otel.kind";
const STATUS_CODE_FIELD: &str = "otel.status_code";
const STATUS_MESSAGE_FIELD: &str = "otel.status_message";
/// tracing-opentelemetry's name for the status message.
const STATUS_DESCRIPTION_FIELD: &str = "otel.status_description";
const EXCEPTION_MESSAGE: &str = "exception.message";
const EXCEPTION_STACKTRACE: &str = "exception.stacktrace";

/// A span this layer records (or, when `recording` is false, only gives an
/// identity so its children and outgoing requests carry the trace's context).
///
/// It is boxed, and the box is reused: it lives in the span's registry
/// extensions until the span closes, then its pointer moves to the hand-off
/// buffer; the recorder thread converts it to `SpanData` and gives the empty
/// box back to the thread that made it, so a span costs no allocation of its
/// own and its memory stays with its thread.
#[derive(Debug)]
pub(crate) struct SpanState {
    /// The layer instance that made it (a second copy of the layer ignores it).
    pub(crate) owner: u64,
    pub(crate) sc: SpanContext,
    pub(crate) parent_span_id: SpanId,
    pub(crate) parent_is_remote: bool,
    /// Sampled or record-only: fields, events and links are kept.
    pub(crate) recording: bool,
    /// Its context was handed out (entered, given to a child or to a caller):
    /// its parent can no longer change.
    pub(crate) started: bool,
    /// `cx` is this span's own context (else it is the parent's, whose
    /// entries, such as baggage, this span's context will carry).
    pub(crate) own_cx: bool,
    pub(crate) cx: Option<Context>,
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: SpanKind,
    pub(crate) status: Status,
    pub(crate) target: &'static str,
    /// Clock readings (raw ticks), converted to wall time off the caller's thread.
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) dropped_attributes: u32,
    pub(crate) events: Vec<PendingEvent>,
    pub(crate) dropped_events: u32,
    pub(crate) links: Vec<Link>,
    pub(crate) dropped_links: u32,
}

impl SpanState {
    /// An empty state (what a pooled box holds between spans).
    pub(crate) fn empty() -> Self {
        SpanState {
            owner: 0,
            sc: SpanContext::NONE,
            parent_span_id: SpanId::INVALID,
            parent_is_remote: false,
            recording: false,
            started: false,
            own_cx: false,
            cx: None,
            name: Cow::Borrowed(""),
            kind: SpanKind::Internal,
            status: Status::Unset,
            target: "",
            start: 0,
            end: 0,
            attributes: Vec::new(),
            dropped_attributes: 0,
            events: Vec::new(),
            dropped_events: 0,
            links: Vec::new(),
            dropped_links: 0,
        }
    }

    /// Starts a new span in this (empty) state.
    pub(crate) fn reset(&mut self, owner: u64, meta: &'static Metadata<'static>, start: u64, fields: usize) {
        self.owner = owner;
        self.parent_is_remote = false;
        self.recording = false;
        self.started = false;
        self.own_cx = false;
        self.name = Cow::Borrowed(meta.name());
        self.kind = SpanKind::Internal;
        self.status = Status::Unset;
        self.target = meta.target();
        self.start = start;
        self.end = 0;
        self.dropped_attributes = 0;
        self.dropped_events = 0;
        self.dropped_links = 0;
        self.attributes.reserve_exact(fields);
    }

    /// This span's context (built on first use), marking it started.
    pub(crate) fn context(&mut self) -> Context {
        self.started = true;
        if !self.own_cx {
            let base = self.cx.take().unwrap_or_default();
            self.cx = Some(base.with_remote_span_context(self.sc.clone()));
            self.own_cx = true;
        }
        self.cx.clone().unwrap_or_default()
    }

    /// Adds or replaces an attribute, within the limit.
    pub(crate) fn set_attribute(&mut self, kv: KeyValue, limits: &SpanLimits) {
        if let Some(existing) = self.attributes.iter_mut().find(|a| a.key == kv.key) {
            *existing = kv;
        } else {
            self.push_attribute(kv, limits);
        }
    }

    /// Adds an attribute known to be new, within the limit.
    fn push_attribute(&mut self, kv: KeyValue, limits: &SpanLimits) {
        if self.attributes.len() < limits.max_attributes_per_span as usize {
            self.attributes.push(kv);
        } else {
            self.dropped_attributes += 1;
        }
    }

    /// Applies what a visit of span fields (in `Span::record`) found.
    pub(crate) fn apply(&mut self, update: SpanUpdate, limits: &SpanLimits) {
        if let Some(name) = update.name {
            self.name = name;
        }
        if let Some(kind) = update.kind {
            self.kind = kind;
        }
        if let Some(status) = update.status.resolve() {
            self.status = status;
        }
        for kv in update.attributes {
            self.set_attribute(kv, limits);
        }
    }

    /// Adds an event, within the limits.
    pub(crate) fn add_event(&mut self, mut event: PendingEvent, limits: &SpanLimits) {
        if self.events.len() >= limits.max_events_per_span as usize {
            self.dropped_events += 1;
            return;
        }
        let max = limits.max_attributes_per_event as usize;
        if event.attributes.len() > max {
            event.dropped += (event.attributes.len() - max) as u32;
            event.attributes.truncate(max);
        }
        self.events.push(event);
    }

    /// Adds a link, within the limits.
    pub(crate) fn add_link(&mut self, mut link: Link, limits: &SpanLimits) {
        if self.links.len() >= limits.max_links_per_span as usize {
            self.dropped_links += 1;
            return;
        }
        let max = limits.max_attributes_per_link as usize;
        if link.attributes.len() > max {
            link.dropped_attributes_count += (link.attributes.len() - max) as u32;
            link.attributes.truncate(max);
        }
        self.links.push(link);
    }
}

/// Where span fields go: straight into a new span's state at creation (no
/// lock is held and the span is not shared yet), or into a [`SpanUpdate`]
/// applied afterwards for `Span::record`.
pub(crate) trait FieldSink {
    fn set_name(&mut self, name: Cow<'static, str>);
    fn set_kind(&mut self, kind: SpanKind);
    fn status(&mut self) -> &mut StatusFields;
    fn attribute(&mut self, kv: KeyValue);
}

/// `otel.status_code` and `otel.status_message`, combined once all fields are seen.
#[derive(Debug, Default)]
pub(crate) struct StatusFields {
    code: Option<String>,
    message: Option<String>,
}

impl StatusFields {
    /// The status the fields give, if any.
    pub(crate) fn resolve(self) -> Option<Status> {
        match (self.code, self.message) {
            (Some(code), message) => Some(status_from(&code, message)),
            (None, Some(message)) => Some(Status::error(message)),
            (None, None) => None,
        }
    }
}

/// Fields at creation, written into the state with its limits.
pub(crate) struct NewSpan<'a> {
    pub(crate) state: &'a mut SpanState,
    pub(crate) limits: &'a SpanLimits,
    pub(crate) status: StatusFields,
}

impl FieldSink for NewSpan<'_> {
    fn set_name(&mut self, name: Cow<'static, str>) {
        self.state.name = name;
    }
    fn set_kind(&mut self, kind: SpanKind) {
        self.state.kind = kind;
    }
    fn status(&mut self) -> &mut StatusFields {
        &mut self.status
    }
    fn attribute(&mut self, kv: KeyValue) {
        self.state.push_attribute(kv, self.limits);
    }
}

impl NewSpan<'_> {
    /// Sets the status the fields gave.
    pub(crate) fn finish(self) {
        if let Some(status) = self.status.resolve() {
            self.state.status = status;
        }
    }
}

/// The fields of one `Span::record` call, applied to the span afterwards.
#[derive(Debug, Default)]
pub(crate) struct SpanUpdate {
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) kind: Option<SpanKind>,
    pub(crate) status: StatusFields,
    pub(crate) attributes: Vec<KeyValue>,
}

impl FieldSink for SpanUpdate {
    fn set_name(&mut self, name: Cow<'static, str>) {
        self.name = Some(name);
    }
    fn set_kind(&mut self, kind: SpanKind) {
        self.kind = Some(kind);
    }
    fn status(&mut self) -> &mut StatusFields {
        &mut self.status
    }
    fn attribute(&mut self, kv: KeyValue) {
        self.attributes.push(kv);
    }
}

/// Visits span fields into a [`FieldSink`].
pub(crate) struct SpanFields<'a, T: FieldSink>(pub(crate) &'a mut T);

impl<T: FieldSink> SpanFields<'_, T> {
    fn special(&mut self, field: &Field, text: &dyn Fn() -> String) -> bool {
        match field.name() {
            NAME_FIELD => self.0.set_name(Cow::Owned(text())),
            KIND_FIELD => {
                if let Some(kind) = kind_from(&text()) {
                    self.0.set_kind(kind);
                }
            }
            STATUS_CODE_FIELD => self.0.status().code = Some(text()),
            STATUS_MESSAGE_FIELD | STATUS_DESCRIPTION_FIELD => self.0.status().message = Some(text()),
            _ => return false,
        }
        true
    }
}

impl<T: FieldSink> Visit for SpanFields<'_, T> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.attribute(KeyValue::new(field.name(), value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.attribute(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.0.attribute(KeyValue::new(field.name(), v)),
            Err(_) => self
                .0
                .attribute(KeyValue::new(field.name(), Value::String(debug_string(&value)))),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.attribute(KeyValue::new(field.name(), value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.special(field, &|| value.to_owned()) {
            self.0
                .attribute(KeyValue::new(field.name(), Value::String(owned(value))));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let message = value.to_string();
        let chain = source_chain(value);
        self.0.attribute(KeyValue::new(EXCEPTION_MESSAGE, message.clone()));
        self.0
            .attribute(KeyValue::new(EXCEPTION_STACKTRACE, Value::Array(chain.clone().into())));
        self.0.attribute(KeyValue::new(field.name(), message));
        self.0.attribute(KeyValue::new(
            Key::new(format!("{}.chain", field.name())),
            Value::Array(chain.into()),
        ));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.special(field, &|| format!("{value:?}")) {
            self.0
                .attribute(KeyValue::new(field.name(), Value::String(debug_string(value))));
        }
    }
}

/// What the registry's extensions hold for a span of this layer.
pub(crate) type Slot = Box<SpanState>;

/// A span in a trace that is not recorded, whose parent is a span of this
/// layer: it has no identity of its own (its context is its nearest recorded
/// ancestor's), so it costs no allocation. Zero-sized, so the registry's
/// extension map stores it without allocating.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inherited;

/// An event waiting for its span to close.
#[derive(Debug)]
pub(crate) struct PendingEvent {
    pub(crate) name: Cow<'static, str>,
    /// Clock reading when the event happened...
    pub(crate) at: u64,
    /// ...unless the caller gave a wall-clock time.
    pub(crate) wall: Option<std::time::SystemTime>,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) dropped: u32,
}

thread_local! {
    /// Formatting buffer for `Debug` values, so each value costs one exact allocation.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// `format!("{value:?}")` into a boxed string of exactly the right size.
fn debug_string(value: &dyn fmt::Debug) -> StringValue {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let _ = write!(buf, "{value:?}");
            StringValue::from(buf.as_str().to_owned())
        }
        // A Debug impl that formats another field through us: fall back.
        Err(_) => StringValue::from(format!("{value:?}")),
    })
}

/// An owned copy (`to_owned` allocates exactly the length, so the conversion
/// to a boxed string does not reallocate).
fn owned(value: &str) -> StringValue {
    StringValue::from(value.to_owned())
}

fn kind_from(s: &str) -> Option<SpanKind> {
    [
        ("server", SpanKind::Server),
        ("client", SpanKind::Client),
        ("producer", SpanKind::Producer),
        ("consumer", SpanKind::Consumer),
        ("internal", SpanKind::Internal),
    ]
    .into_iter()
    .find(|(n, _)| s.eq_ignore_ascii_case(n))
    .map(|(_, k)| k)
}

fn status_from(code: &str, message: Option<String>) -> Status {
    if code.eq_ignore_ascii_case("ok") {
        Status::Ok
    } else if code.eq_ignore_ascii_case("error") {
        Status::error(message.unwrap_or_default())
    } else {
        Status::Unset
    }
}

/// The `source()` chain of an error, outermost first after `err` itself.
fn source_chain(err: &(dyn std::error::Error + 'static)) -> Vec<StringValue> {
    let mut chain = Vec::new();
    let mut next = err.source();
    while let Some(e) = next {
        chain.push(StringValue::from(e.to_string()));
        next = e.source();
    }
    chain
}

/// What the fields of an event say: the event itself, and what it changes on
/// its span (an error status, `exception.*` attributes).
#[derive(Debug)]
pub(crate) struct EventUpdate {
    pub(crate) event: PendingEvent,
    /// The event is at ERROR level (an error status when none is set yet).
    pub(crate) level_error: bool,
    /// An `error` field: the span's status, replacing what it had.
    pub(crate) error: Option<Status>,
    pub(crate) span_attributes: Vec<KeyValue>,
    named: bool,
}

impl EventUpdate {
    /// An event of `meta` at `at`: `level` and `target` attributes, then its fields.
    pub(crate) fn new(meta: &'static Metadata<'static>, at: u64) -> Self {
        let mut attributes = Vec::with_capacity(meta.fields().len() + 2);
        attributes.push(KeyValue::new("level", meta.level().as_str()));
        attributes.push(KeyValue::new("target", meta.target()));
        EventUpdate {
            event: PendingEvent {
                name: Cow::Borrowed(""),
                at,
                wall: None,
                attributes,
                dropped: 0,
            },
            level_error: *meta.level() == Level::ERROR,
            error: None,
            span_attributes: Vec::new(),
            named: false,
        }
    }

    /// Names an unnamed event after its metadata.
    pub(crate) fn finish(mut self, meta: &'static Metadata<'static>) -> Self {
        if !self.named {
            self.event.name = Cow::Borrowed(meta.name());
        }
        self
    }

    fn error_field(&mut self, text: String) {
        self.error = Some(Status::error(text.clone()));
        self.event.name = Cow::Borrowed("exception");
        self.named = true;
        self.event.attributes.push(KeyValue::new(EXCEPTION_MESSAGE, text));
    }
}

impl Visit for EventUpdate {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.event.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.event.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.event.attributes.push(KeyValue::new(field.name(), v)),
            Err(_) => self
                .event
                .attributes
                .push(KeyValue::new(field.name(), Value::String(debug_string(&value)))),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.event.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => {
                self.event.name = Cow::Owned(value.to_owned());
                self.named = true;
            }
            "error" if !self.named => self.error_field(format!("{value:?}")),
            name => self
                .event
                .attributes
                .push(KeyValue::new(name, Value::String(owned(value)))),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let message = value.to_string();
        let chain = source_chain(value);
        let attrs = &mut self.event.attributes;
        attrs.push(KeyValue::new(EXCEPTION_MESSAGE, message.clone()));
        attrs.push(KeyValue::new(EXCEPTION_STACKTRACE, Value::Array(chain.clone().into())));
        self.span_attributes
            .push(KeyValue::new(EXCEPTION_MESSAGE, message.clone()));
        self.span_attributes
            .push(KeyValue::new(EXCEPTION_STACKTRACE, Value::Array(chain.clone().into())));
        attrs.push(KeyValue::new(field.name(), message));
        attrs.push(KeyValue::new(
            Key::new(format!("{}.chain", field.name())),
            Value::Array(chain.into()),
        ));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => {
                self.event.name = Cow::Owned(debug_string(value).into());
                self.named = true;
            }
            "error" if !self.named => self.error_field(format!("{value:?}")),
            name => self
                .event
                .attributes
                .push(KeyValue::new(name, Value::String(debug_string(value)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_combine() {
        let f = |code: Option<&str>, message: Option<&str>| {
            StatusFields {
                code: code.map(str::to_owned),
                message: message.map(str::to_owned),
            }
            .resolve()
        };
        assert_eq!(f(Some("ERROR"), Some("boom")), Some(Status::error("boom")));
        assert_eq!(f(None, Some("only a message")), Some(Status::error("only a message")));
        assert_eq!(f(Some("ok"), None), Some(Status::Ok));
        assert_eq!(f(Some("whatever"), None), Some(Status::Unset));
        assert_eq!(f(None, None), None);
    }

    #[test]
    fn kinds_parse_in_any_case() {
        assert_eq!(kind_from("SERVER"), Some(SpanKind::Server));
        assert_eq!(kind_from("consumer"), Some(SpanKind::Consumer));
        assert_eq!(kind_from("sideways"), None);
    }

    #[test]
    fn debug_strings_are_exact_and_reentrant() {
        struct Nested;
        impl fmt::Debug for Nested {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Formats through the same scratch buffer while it is borrowed.
                f.write_str(debug_string(&"inner").as_str())
            }
        }
        assert_eq!(debug_string(&42).as_str(), "42");
        assert_eq!(debug_string(&Nested).as_str(), "\"inner\"");
    }
}
