//! Span helpers over the OpenTelemetry API: start spans in one expression,
//! keep them current across `.await`, record errors the way the semantic
//! conventions say.

use opentelemetry::trace::{Link, SpanContext, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::SystemTime;

/// The instrumentation scope of spans started by these helpers, unless
/// [`SpanStarter::tracer`] names another.
pub const DEFAULT_TRACER: &str = "otel-core";

/// Builds and starts a span on the global tracer provider.
///
/// ```
/// use otel_core::spans::span;
/// use opentelemetry::trace::{SpanKind, TraceContextExt};
/// use opentelemetry::KeyValue;
///
/// let cx = span("cache.get")
///     .kind(SpanKind::Client)
///     .attribute(KeyValue::new("db.system.name", "redis"))
///     .start();
/// // ... work ...
/// cx.span().end();
/// ```
#[derive(Debug)]
#[must_use = "a span starter does nothing until started"]
pub struct SpanStarter {
    name: Cow<'static, str>,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
    start_time: Option<SystemTime>,
    parent: Option<Context>,
    tracer: Cow<'static, str>,
}

/// Starts describing a span named `name` (kind INTERNAL, child of the current span).
pub fn span(name: impl Into<Cow<'static, str>>) -> SpanStarter {
    SpanStarter {
        name: name.into(),
        kind: SpanKind::Internal,
        attributes: Vec::new(),
        links: Vec::new(),
        start_time: None,
        parent: None,
        tracer: Cow::Borrowed(DEFAULT_TRACER),
    }
}

impl SpanStarter {
    /// The span kind. Defaults to INTERNAL.
    pub fn kind(mut self, kind: SpanKind) -> Self {
        self.kind = kind;
        self
    }

    /// Adds an attribute (known at start, so samplers see it).
    pub fn attribute(mut self, kv: KeyValue) -> Self {
        self.attributes.push(kv);
        self
    }

    /// Adds attributes.
    pub fn attributes(mut self, kvs: impl IntoIterator<Item = KeyValue>) -> Self {
        self.attributes.extend(kvs);
        self
    }

    /// Links another span (e.g. the message a consumer processes).
    pub fn link(mut self, span_context: SpanContext, attributes: Vec<KeyValue>) -> Self {
        self.links.push(Link::new(span_context, attributes, 0));
        self
    }

    /// The start time. Defaults to now.
    pub fn start_time(mut self, time: SystemTime) -> Self {
        self.start_time = Some(time);
        self
    }

    /// The parent context. Defaults to the current context.
    pub fn parent(mut self, cx: &Context) -> Self {
        self.parent = Some(cx.clone());
        self
    }

    /// The tracer (instrumentation scope) name. Defaults to [`DEFAULT_TRACER`].
    pub fn tracer(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.tracer = name.into();
        self
    }

    /// Starts the span; returns the parent context with the span in it. End it
    /// with `cx.span().end()`.
    pub fn start(self) -> Context {
        let tracer = global::tracer(self.tracer);
        let parent = self.parent.unwrap_or_else(Context::current);
        let mut builder = tracer
            .span_builder(self.name)
            .with_kind(self.kind)
            .with_attributes(self.attributes);
        if !self.links.is_empty() {
            builder = builder.with_links(self.links);
        }
        if let Some(t) = self.start_time {
            builder = builder.with_start_time(t);
        }
        let span = builder.start_with_context(&tracer, &parent);
        parent.with_span(span)
    }

    /// Starts the span, makes it current while `f` runs, and ends it after.
    pub fn in_scope<T>(self, f: impl FnOnce(&Context) -> T) -> T {
        let cx = self.start();
        let result = {
            let _guard = cx.clone().attach();
            f(&cx)
        };
        cx.span().end();
        result
    }
}

/// Runs `f` in a new INTERNAL span named `name`, child of the current span.
///
/// ```
/// let answer = otel_core::in_span("compute", |_cx| 6 * 7);
/// assert_eq!(answer, 42);
/// ```
pub fn in_span<T>(name: impl Into<Cow<'static, str>>, f: impl FnOnce(&Context) -> T) -> T {
    span(name).in_scope(f)
}

pin_project_lite::pin_project! {
    /// A future that makes its span current whenever it runs and ends the span
    /// when it completes (or is dropped unfinished). Made by
    /// [`FutureSpanExt::in_span_context`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct InSpan<F> {
        #[pin]
        inner: F,
        cx: Context,
        ended: bool,
    }

    impl<F> PinnedDrop for InSpan<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.ended {
                this.cx.span().end();
            }
        }
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _guard = this.cx.clone().attach();
        match this.inner.poll(task) {
            Poll::Ready(out) => {
                if !*this.ended {
                    *this.ended = true;
                    this.cx.span().end();
                }
                Poll::Ready(out)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Keeps a span current across `.await` points.
///
/// ```
/// use otel_core::spans::{span, FutureSpanExt};
///
/// # async fn fetch() -> u32 { 7 }
/// # async fn run() {
/// let n = fetch().in_span_context(span("fetch").start()).await;
/// # }
/// ```
pub trait FutureSpanExt: Future + Sized {
    /// Polls this future with `cx` current, ending `cx`'s span when done.
    fn in_span_context(self, cx: Context) -> InSpan<Self> {
        InSpan {
            inner: self,
            cx,
            ended: false,
        }
    }
}

impl<F: Future> FutureSpanExt for F {}

/// Records `error` on the span of `cx` as the semantic conventions say: status
/// ERROR with the error's message, and an `exception` event with
/// `exception.type` and `exception.message`.
pub fn record_error<E: std::error::Error + ?Sized>(cx: &Context, error: &E) {
    let span = cx.span();
    let message = error.to_string();
    span.add_event(
        "exception",
        vec![
            KeyValue::new(crate::semconv::attribute::EXCEPTION_TYPE, std::any::type_name::<E>()),
            KeyValue::new(crate::semconv::attribute::EXCEPTION_MESSAGE, message.clone()),
        ],
    );
    span.set_status(Status::error(message));
}
