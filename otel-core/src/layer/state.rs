//! What the layer keeps per `tracing` span, and how `tracing` fields become
//! OpenTelemetry attributes, names, kinds, statuses and events.
//!
//! The field conventions are tracing-opentelemetry's, so moving from it is an
//! import change: `otel.name`, `otel.kind`, `otel.status_code`,
//! `otel.status_message` (also its older `otel.status_description`); an
//! `error` field on an event, or an event at ERROR level, marks the span as
//! failed; `&dyn Error` values add `exception.*` attributes. One difference:
//! an event's `error` field sets the span's error description (and the
//! event's `exception.message`) whether or not the event also has a message
//! (tracing-opentelemetry reads it only from events without one, and keeps
//! the `Debug` quotes of a string).

use opentelemetry::trace::{Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _};
use opentelemetry::{Context, Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanLimits;
use std::borrow::Cow;
use std::cell::Cell;
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

/// A string of a span waiting for conversion.
#[derive(Debug, Clone)]
pub(crate) enum Str {
    Static(&'static str),
    /// A range of the span's `text` buffer.
    Text(u32, u32),
    Owned(Cow<'static, str>),
}

/// An attribute value waiting for conversion: integers, floats and booleans
/// as they are, text in the span's `text` buffer.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(Str),
    /// Built already (error chains, values given through the extension trait).
    Other(Value),
}

/// An attribute waiting for conversion.
#[derive(Debug, Clone)]
pub(crate) struct Attr {
    pub(crate) key: Key,
    pub(crate) val: Val,
}

/// Appends `s` to `text`, as a range (or owned, past what a range can address).
fn push_text(text: &mut String, s: &str) -> Str {
    let start = text.len();
    match u32::try_from(start + s.len()) {
        Ok(end) => {
            text.push_str(s);
            Str::Text(start as u32, end)
        }
        Err(_) => Str::Owned(Cow::Owned(s.to_owned())),
    }
}

/// Appends `value`'s `Debug` output to `text`.
fn push_debug(text: &mut String, value: &dyn fmt::Debug) -> Str {
    let start = text.len();
    let _ = write!(text, "{value:?}");
    match u32::try_from(text.len()) {
        Ok(end) => Str::Text(start as u32, end),
        Err(_) => {
            let owned = text[start..].to_owned();
            text.truncate(start);
            Str::Owned(Cow::Owned(owned))
        }
    }
}

impl Str {
    fn as_str<'a>(&'a self, text: &'a str) -> &'a str {
        match self {
            Str::Static(s) => s,
            Str::Text(a, b) => text.get(*a as usize..*b as usize).unwrap_or_default(),
            Str::Owned(s) => s,
        }
    }

    /// The owned string, for `SpanData`.
    pub(crate) fn to_cow(&self, text: &str) -> Cow<'static, str> {
        match self {
            Str::Static(s) => Cow::Borrowed(s),
            Str::Owned(s) => s.clone(),
            Str::Text(..) => Cow::Owned(self.as_str(text).to_owned()),
        }
    }

    /// This string moved from `from` into `to` (text ranges are copied).
    fn rebase(&self, from: &str, to: &mut String) -> Str {
        match self {
            Str::Text(..) => push_text(to, self.as_str(from)),
            other => other.clone(),
        }
    }
}

impl Val {
    /// The OpenTelemetry value, for `SpanData`.
    pub(crate) fn to_value(&self, text: &str) -> Value {
        match self {
            Val::I64(v) => Value::I64(*v),
            Val::F64(v) => Value::F64(*v),
            Val::Bool(v) => Value::Bool(*v),
            Val::Str(Str::Static(s)) => Value::String(StringValue::from(*s)),
            Val::Str(s) => Value::String(StringValue::from(s.to_cow(text))),
            Val::Other(v) => v.clone(),
        }
    }

    fn rebase(&self, from: &str, to: &mut String) -> Val {
        match self {
            Val::Str(s) => Val::Str(s.rebase(from, to)),
            other => other.clone(),
        }
    }
}

impl Attr {
    /// The attribute as a `KeyValue`.
    pub(crate) fn to_key_value(&self, text: &str) -> KeyValue {
        KeyValue::new(self.key.clone(), self.val.to_value(text))
    }

    fn from_key_value(kv: KeyValue) -> Attr {
        Attr {
            key: kv.key,
            val: Val::Other(kv.value),
        }
    }
}

/// A span this layer records (or, when `recording` is false, only gives an
/// identity so its children and outgoing requests carry the trace's context).
///
/// It is boxed, and the box is reused: it lives in the span's registry
/// extensions until the span closes, then its pointer moves to the hand-off
/// buffer; the recorder thread converts it to `SpanData` (allocating the
/// strings and vectors there) and gives the emptied box, with the capacity of
/// its buffers, back to the thread that made it. Recording a span and its
/// fields and events therefore allocates nothing on the caller's thread once
/// the pool is warm.
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
    pub(crate) name: Str,
    pub(crate) kind: SpanKind,
    pub(crate) status: Status,
    pub(crate) target: &'static str,
    /// Clock readings (raw ticks), converted to wall time off the caller's thread.
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// Text of names and values (ranges in `Str::Text`).
    pub(crate) text: String,
    pub(crate) attrs: Vec<Attr>,
    pub(crate) dropped_attributes: u32,
    pub(crate) events: Vec<PendingEvent>,
    /// Attributes of all events (each event holds its range).
    pub(crate) event_attrs: Vec<Attr>,
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
            name: Str::Static(""),
            kind: SpanKind::Internal,
            status: Status::Unset,
            target: "",
            start: 0,
            end: 0,
            text: String::new(),
            attrs: Vec::new(),
            dropped_attributes: 0,
            events: Vec::new(),
            event_attrs: Vec::new(),
            dropped_events: 0,
            links: Vec::new(),
            dropped_links: 0,
        }
    }

    /// Starts a new span in this state (which is empty: fresh, converted or
    /// given back), keeping the capacity of its buffers.
    pub(crate) fn reset(&mut self, owner: u64, meta: &'static Metadata<'static>, start: u64) {
        self.owner = owner;
        self.parent_is_remote = false;
        self.recording = false;
        self.started = false;
        self.own_cx = false;
        self.name = Str::Static(meta.name());
        self.kind = SpanKind::Internal;
        self.status = Status::Unset;
        self.target = meta.target();
        self.start = start;
        self.end = 0;
    }

    /// Forgets fields, events and links (keeping capacity).
    pub(crate) fn clear_data(&mut self) {
        self.text.clear();
        self.attrs.clear();
        self.events.clear();
        self.event_attrs.clear();
        self.links.clear();
        self.dropped_attributes = 0;
        self.dropped_events = 0;
        self.dropped_links = 0;
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

    /// The attributes as `KeyValue`s (for a sampler that reads them).
    pub(crate) fn key_values(&self) -> Vec<KeyValue> {
        self.attrs.iter().map(|a| a.to_key_value(&self.text)).collect()
    }

    /// Adds or replaces an attribute, within the limit.
    pub(crate) fn set_attribute(&mut self, attr: Attr, limits: &SpanLimits) {
        if let Some(existing) = self.attrs.iter_mut().find(|a| a.key == attr.key) {
            *existing = attr;
        } else if self.attrs.len() < limits.max_attributes_per_span as usize {
            self.attrs.push(attr);
        } else {
            self.dropped_attributes += 1;
        }
    }

    /// Sets (or replaces) an attribute given as a `KeyValue`.
    pub(crate) fn set_key_value(&mut self, kv: KeyValue, limits: &SpanLimits) {
        self.set_attribute(Attr::from_key_value(kv), limits);
    }

    /// Applies what a visit of span fields (in `Span::record`) found in `scratch`.
    pub(crate) fn apply(&mut self, scratch: &Scratch, update: SpanUpdate, limits: &SpanLimits) {
        if let Some(name) = update.name {
            self.name = name.rebase(&scratch.text, &mut self.text);
        }
        if let Some(kind) = update.kind {
            self.kind = kind;
        }
        if let Some(status) = update.status.resolve() {
            self.status = status;
        }
        for attr in &scratch.attrs {
            let val = attr.val.rebase(&scratch.text, &mut self.text);
            self.set_attribute(
                Attr {
                    key: attr.key.clone(),
                    val,
                },
                limits,
            );
        }
    }

    /// Adds an event whose name and attributes were visited into `scratch`.
    pub(crate) fn add_event_from(&mut self, scratch: &Scratch, event: EventUpdate, limits: &SpanLimits) {
        if let Some(status) = event.error {
            self.status = status;
        } else if event.level_error && self.status == Status::Unset {
            self.status = Status::error("");
        }
        for kv in event.span_attributes {
            self.set_key_value(kv, limits);
        }
        if self.events.len() >= limits.max_events_per_span as usize {
            self.dropped_events += 1;
            return;
        }
        let max = limits.max_attributes_per_event as usize;
        let kept = scratch.attrs.len().min(max);
        let start = self.event_attrs.len() as u32;
        for attr in &scratch.attrs[..kept] {
            let val = attr.val.rebase(&scratch.text, &mut self.text);
            self.event_attrs.push(Attr {
                key: attr.key.clone(),
                val,
            });
        }
        let name = event.name.rebase(&scratch.text, &mut self.text);
        self.events.push(PendingEvent {
            name,
            at: event.at,
            wall: None,
            attrs: (start, self.event_attrs.len() as u32),
            dropped: (scratch.attrs.len() - kept) as u32,
        });
    }

    /// Adds an event given through the extension trait.
    pub(crate) fn add_event(
        &mut self,
        name: Cow<'static, str>,
        at: u64,
        wall: Option<std::time::SystemTime>,
        attributes: Vec<KeyValue>,
        limits: &SpanLimits,
    ) {
        if self.events.len() >= limits.max_events_per_span as usize {
            self.dropped_events += 1;
            return;
        }
        let max = limits.max_attributes_per_event as usize;
        let dropped = attributes.len().saturating_sub(max) as u32;
        let start = self.event_attrs.len() as u32;
        self.event_attrs
            .extend(attributes.into_iter().take(max).map(Attr::from_key_value));
        self.events.push(PendingEvent {
            name: Str::Owned(name),
            at,
            wall,
            attrs: (start, self.event_attrs.len() as u32),
            dropped,
        });
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

/// Text and attributes visited before they are copied into a span (for
/// `Span::record` and events, whose fields are read without holding the
/// span's lock). One per thread, reused.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub(crate) text: String,
    pub(crate) attrs: Vec<Attr>,
}

thread_local! {
    static SCRATCH: Cell<Scratch> = const {
        Cell::new(Scratch {
            text: String::new(),
            attrs: Vec::new(),
        })
    };
}

/// Runs `f` with this thread's scratch, emptied. The buffers are taken out
/// while `f` runs, so a re-entered call works on fresh ones.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = SCRATCH.try_with(Cell::take).unwrap_or_default();
    scratch.text.clear();
    scratch.attrs.clear();
    let out = f(&mut scratch);
    let _ = SCRATCH.try_with(|c| c.set(scratch));
    out
}

/// Where field values go while a span's fields are visited.
pub(crate) struct SpanVisit<'a> {
    text: &'a mut String,
    attrs: &'a mut Vec<Attr>,
    /// Attributes at most (at creation, the span limit; the rest are counted).
    max: usize,
    pub(crate) dropped: u32,
    pub(crate) update: SpanUpdate,
}

/// What span fields set besides attributes.
#[derive(Debug, Default)]
pub(crate) struct SpanUpdate {
    pub(crate) name: Option<Str>,
    pub(crate) kind: Option<SpanKind>,
    pub(crate) status: StatusFields,
}

impl<'a> SpanVisit<'a> {
    /// Visits into a new span's own buffers, within its attribute limit.
    pub(crate) fn into_state(state: &'a mut SpanState, limits: &SpanLimits) -> Self {
        SpanVisit {
            text: &mut state.text,
            attrs: &mut state.attrs,
            max: limits.max_attributes_per_span as usize,
            dropped: 0,
            update: SpanUpdate::default(),
        }
    }

    /// Visits into a scratch (for `Span::record`); limits apply when applied.
    pub(crate) fn into_scratch(scratch: &'a mut Scratch) -> Self {
        SpanVisit {
            text: &mut scratch.text,
            attrs: &mut scratch.attrs,
            max: usize::MAX,
            dropped: 0,
            update: SpanUpdate::default(),
        }
    }

    fn push(&mut self, key: &'static str, val: Val) {
        if self.attrs.len() < self.max {
            self.attrs.push(Attr {
                key: Key::from_static_str(key),
                val,
            });
        } else {
            self.dropped += 1;
        }
    }

    fn special(&mut self, field: &Field, text: &dyn Fn() -> String) -> bool {
        match field.name() {
            NAME_FIELD => self.update.name = Some(push_text(self.text, &text())),
            KIND_FIELD => {
                if let Some(kind) = kind_from(&text()) {
                    self.update.kind = Some(kind);
                }
            }
            STATUS_CODE_FIELD => self.update.status.code = Some(text()),
            STATUS_MESSAGE_FIELD | STATUS_DESCRIPTION_FIELD => self.update.status.message = Some(text()),
            _ => return false,
        }
        true
    }
}

fn is_special(name: &str) -> bool {
    name.starts_with("otel.")
        && matches!(
            name,
            NAME_FIELD | KIND_FIELD | STATUS_CODE_FIELD | STATUS_MESSAGE_FIELD | STATUS_DESCRIPTION_FIELD
        )
}

impl Visit for SpanVisit<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field.name(), Val::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field.name(), Val::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.push(field.name(), Val::I64(v)),
            Err(_) => {
                let s = push_debug(self.text, &value);
                self.push(field.name(), Val::Str(s));
            }
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field.name(), Val::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if is_special(field.name()) && self.special(field, &|| value.to_owned()) {
            return;
        }
        let s = push_text(self.text, value);
        self.push(field.name(), Val::Str(s));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let message = value.to_string();
        let chain = source_chain(value);
        let m = push_text(self.text, &message);
        self.push(EXCEPTION_MESSAGE, Val::Str(m.clone()));
        self.push(EXCEPTION_STACKTRACE, Val::Other(Value::Array(chain.clone().into())));
        self.push(field.name(), Val::Str(m));
        if self.attrs.len() < self.max {
            self.attrs.push(Attr {
                key: Key::new(format!("{}.chain", field.name())),
                val: Val::Other(Value::Array(chain.into())),
            });
        } else {
            self.dropped += 1;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if is_special(field.name()) && self.special(field, &|| format!("{value:?}")) {
            return;
        }
        let s = push_debug(self.text, value);
        self.push(field.name(), Val::Str(s));
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
    pub(crate) name: Str,
    /// Clock reading when the event happened...
    pub(crate) at: u64,
    /// ...unless the caller gave a wall-clock time.
    pub(crate) wall: Option<std::time::SystemTime>,
    /// Its attributes: a range of the span's `event_attrs`.
    pub(crate) attrs: (u32, u32),
    pub(crate) dropped: u32,
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

/// What an event's fields say: its name (its attributes went to the scratch),
/// and what it changes on its span (an error status, `exception.*` attributes).
#[derive(Debug)]
pub(crate) struct EventUpdate {
    pub(crate) name: Str,
    pub(crate) at: u64,
    /// The event is at ERROR level (an error status when none is set yet).
    pub(crate) level_error: bool,
    /// An `error` field: the span's status, replacing what it had.
    pub(crate) error: Option<Status>,
    pub(crate) span_attributes: Vec<KeyValue>,
    named: bool,
    exception: bool,
}

/// Visits an event's fields into a scratch.
pub(crate) struct EventVisit<'a> {
    scratch: &'a mut Scratch,
    pub(crate) update: EventUpdate,
}

impl<'a> EventVisit<'a> {
    /// An event of `meta` at `at`: `level` and `target` attributes, then its fields.
    pub(crate) fn new(scratch: &'a mut Scratch, meta: &'static Metadata<'static>, at: u64) -> Self {
        scratch.attrs.push(Attr {
            key: Key::from_static_str("level"),
            val: Val::Str(Str::Static(meta.level().as_str())),
        });
        scratch.attrs.push(Attr {
            key: Key::from_static_str("target"),
            val: Val::Str(Str::Static(meta.target())),
        });
        EventVisit {
            scratch,
            update: EventUpdate {
                name: Str::Static(meta.name()),
                at,
                level_error: *meta.level() == Level::ERROR,
                error: None,
                span_attributes: Vec::new(),
                named: false,
                exception: false,
            },
        }
    }

    fn push(&mut self, key: &'static str, val: Val) {
        self.scratch.attrs.push(Attr {
            key: Key::from_static_str(key),
            val,
        });
    }

    /// An `error` field: the span fails with its text, and the event records
    /// it as `exception.message` (an event without a message is named
    /// `exception`, as the exception semantic conventions name it).
    fn error_field(&mut self, text: String) {
        let m = push_text(&mut self.scratch.text, &text);
        self.update.error = Some(Status::error(text));
        self.update.exception = true;
        self.push(EXCEPTION_MESSAGE, Val::Str(m));
    }

    /// Ends the visit: names an event that had no message.
    pub(crate) fn finish(mut self) -> EventUpdate {
        if !self.update.named && self.update.exception {
            self.update.name = Str::Static("exception");
        }
        self.update
    }
}

impl Visit for EventVisit<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field.name(), Val::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field.name(), Val::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.push(field.name(), Val::I64(v)),
            Err(_) => {
                let s = push_debug(&mut self.scratch.text, &value);
                self.push(field.name(), Val::Str(s));
            }
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field.name(), Val::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => {
                self.update.name = push_text(&mut self.scratch.text, value);
                self.update.named = true;
            }
            "error" if !self.update.exception => self.error_field(value.to_owned()),
            name => {
                let s = push_text(&mut self.scratch.text, value);
                self.push(name, Val::Str(s));
            }
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let message = value.to_string();
        let chain = source_chain(value);
        let m = push_text(&mut self.scratch.text, &message);
        self.push(EXCEPTION_MESSAGE, Val::Str(m.clone()));
        self.push(EXCEPTION_STACKTRACE, Val::Other(Value::Array(chain.clone().into())));
        self.update
            .span_attributes
            .push(KeyValue::new(EXCEPTION_MESSAGE, message));
        self.update
            .span_attributes
            .push(KeyValue::new(EXCEPTION_STACKTRACE, Value::Array(chain.clone().into())));
        self.push(field.name(), Val::Str(m));
        self.scratch.attrs.push(Attr {
            key: Key::new(format!("{}.chain", field.name())),
            val: Val::Other(Value::Array(chain.into())),
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => {
                self.update.name = push_debug(&mut self.scratch.text, value);
                self.update.named = true;
            }
            "error" if !self.update.exception => self.error_field(format!("{value:?}")),
            name => {
                let s = push_debug(&mut self.scratch.text, value);
                self.push(name, Val::Str(s));
            }
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
    fn text_ranges_convert_and_move_between_buffers() {
        let mut a = String::new();
        let s = push_text(&mut a, "hello");
        let d = push_debug(&mut a, &42);
        assert_eq!(s.as_str(&a), "hello");
        assert_eq!(d.as_str(&a), "42");
        let mut b = String::from("prefix");
        let moved = s.rebase(&a, &mut b);
        assert_eq!(moved.to_cow(&b), "hello");
        assert_eq!(Val::Str(d).to_value(&a), Value::from("42"));
        // A range past the buffer reads as empty, never panics.
        assert_eq!(Str::Text(3, 99).as_str("ab"), "");
    }

    #[test]
    fn scratch_is_reentrant() {
        let outer = with_scratch(|s| {
            s.text.push_str("outer");
            with_scratch(|inner| {
                assert!(inner.text.is_empty(), "a re-entered call gets a fresh scratch");
                inner.text.push_str("inner");
            });
            s.text.clone()
        });
        assert_eq!(outer, "outer");
    }
}
