//! The pipeline side of the `tracing` layer: the installed sampler and span
//! processors, the clock, and the hand-off of closed spans.
//!
//! A span's state lives in a box taken from its thread's pool. A closing span's
//! box moves into a buffer owned by its thread (an uncontended lock and a
//! pointer push; no conversion, no channel). A recorder thread takes the
//! buffers' contents every [`TICK`], or sooner when one fills, converts them to
//! `SpanData` (wall-clock times, instrumentation scopes), hands them to the
//! processors, and gives the emptied boxes back to the thread's pool, so the
//! memory of a span state never changes threads for good. `force_flush` and
//! `shutdown` drain every buffer first, so no closed span is left behind; a
//! span that cannot be buffered (the buffer is at its bound, or the pipeline
//! is shut down) is counted in `dropped`.

use super::state::SpanState;
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{Event, TraceContextExt as _};
use opentelemetry_sdk::trace::{ShouldSample, SpanData, SpanEvents, SpanLimits, SpanLinks, SpanProcessor};
use otel_export::Counters;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, SystemTime};

/// How often the recorder thread takes closed spans when no buffer fills.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// A thread's buffer wakes the recorder thread when it holds this many spans.
const WAKE_AT: usize = 1024;
/// How long a clock anchor is used before it is taken again (bounds drift
/// between the cycle counter and the wall clock).
const REANCHOR: Duration = Duration::from_secs(1);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What is known of the installed sampler, so the layer can skip work.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SamplerHints {
    /// It follows a local parent's decision (ParentBased with its default
    /// local branches): a child's decision needs no sampler call.
    pub(crate) follows_local_parent: bool,
    /// It may read attributes (unknown samplers are assumed to).
    pub(crate) reads_attributes: bool,
}

/// Locks, recovering from a poisoned lock (the data are plain buffers).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// The boxes are the point: a span's state is written once into a pooled box
// and only the pointer moves between threads.
#[allow(clippy::vec_box)]
#[derive(Debug, Default)]
struct Buffered {
    /// Closed spans, for the recorder thread.
    spans: Vec<Box<SpanState>>,
    /// Emptied boxes, for the thread's pool.
    free: Vec<Box<SpanState>>,
    closed: bool,
}

/// One thread's closed spans, waiting for the recorder thread.
#[derive(Debug, Default)]
struct ThreadBuffer {
    inner: Mutex<Buffered>,
}

/// A thread's side of one recorder: its buffer and its pool of boxes.
#[allow(clippy::vec_box)] // Pooled boxes, reused (see `Buffered`).
#[derive(Debug)]
struct Local {
    recorder: u64,
    buffer: Arc<ThreadBuffer>,
    pool: Vec<Box<SpanState>>,
}

thread_local! {
    /// This thread's side of each live recorder.
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

/// Wall time of a raw clock reading.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    wall: SystemTime,
    raw: u64,
}

#[allow(clippy::vec_box)] // Pooled boxes, reused (see `Buffered`).
#[derive(Debug)]
struct Drain {
    scopes: HashMap<&'static str, InstrumentationScope>,
    /// The scope of the last span converted (most spans share a few targets).
    last_scope: Option<(&'static str, InstrumentationScope)>,
    spare: Vec<Box<SpanState>>,
    anchor: Anchor,
}

/// The shared half of every [`TracingLayer`](super::TracingLayer) made from one
/// installed pipeline.
pub(crate) struct Recorder {
    id: u64,
    pub(crate) sampler: Arc<dyn ShouldSample>,
    /// See [`SamplerHints`].
    pub(crate) follows_local_parent: bool,
    /// The sampler may read attributes (else none are built for it).
    pub(crate) sampler_reads_attributes: bool,
    pub(crate) limits: SpanLimits,
    pub(crate) clock: quanta::Clock,
    processors: Vec<Arc<dyn SpanProcessor>>,
    counters: Arc<Counters>,
    /// Spans a thread may hold before closing ones are dropped and counted.
    cap: usize,
    buffers: Mutex<(Vec<Arc<ThreadBuffer>>, bool)>,
    drain: Mutex<Drain>,
    thread: OnceLock<Thread>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: AtomicBool,
    warned: AtomicBool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("id", &self.id)
            .field("follows_local_parent", &self.follows_local_parent)
            .field("processors", &self.processors.len())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub(crate) fn new(
        sampler: Arc<dyn ShouldSample>,
        hints: SamplerHints,
        limits: SpanLimits,
        processors: Vec<Arc<dyn SpanProcessor>>,
        counters: Arc<Counters>,
        cap: usize,
    ) -> Self {
        let clock = quanta::Clock::new();
        let anchor = Anchor {
            wall: SystemTime::now(),
            raw: clock.raw(),
        };
        Recorder {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            sampler,
            follows_local_parent: hints.follows_local_parent,
            sampler_reads_attributes: hints.reads_attributes,
            limits,
            clock,
            processors,
            counters,
            cap: cap.max(4 * WAKE_AT),
            buffers: Mutex::new((Vec::new(), false)),
            drain: Mutex::new(Drain {
                scopes: HashMap::new(),
                last_scope: None,
                spare: Vec::new(),
                anchor,
            }),
            thread: OnceLock::new(),
            worker: Mutex::new(None),
            stop: AtomicBool::new(false),
            warned: AtomicBool::new(false),
        }
    }

    /// Starts the recorder thread once (the first layer made asks for it).
    pub(crate) fn start(self: &Arc<Self>) {
        let mut worker = lock(&self.worker);
        if worker.is_some() || self.stop.load(Ordering::Relaxed) {
            return;
        }
        let weak: Weak<Recorder> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("otel-tracing-recorder".into())
            .spawn(move || {
                // Whatever the processors do here (log, make spans) is not traced.
                let _quiet = opentelemetry::Context::enter_telemetry_suppressed_scope();
                loop {
                    std::thread::park_timeout(TICK);
                    let Some(recorder) = weak.upgrade() else { return };
                    if recorder.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    recorder.drain();
                }
            });
        match spawned {
            Ok(handle) => {
                let _ = self.thread.set(handle.thread().clone());
                *worker = Some(handle);
            }
            Err(e) => {
                // Spans still reach the processors at every flush; say so once.
                tracing::warn!(target: "otel_core", "cannot start the tracing recorder thread: {e}; closed spans reach the exporter only at force_flush and shutdown");
            }
        }
    }

    /// Runs `f` with this thread's side of the recorder (made on first use);
    /// `None` when the thread is exiting or the call re-entered.
    fn with_local<R>(&self, f: impl FnOnce(&mut Local) -> R) -> Option<R> {
        LOCAL
            .try_with(|local| {
                let mut local = local.try_borrow_mut().ok()?;
                let at = match local.iter().position(|l| l.recorder == self.id) {
                    Some(at) => at,
                    None => {
                        // Sides of recorders that are gone are forgotten here.
                        local.retain(|l| !lock(&l.buffer.inner).closed);
                        local.push(Local {
                            recorder: self.id,
                            buffer: self.register(),
                            pool: Vec::new(),
                        });
                        local.len() - 1
                    }
                };
                Some(f(&mut local[at]))
            })
            .ok()
            .flatten()
    }

    /// An empty span state from this thread's pool.
    pub(crate) fn take_box(&self) -> Box<SpanState> {
        self.with_local(|local| {
            if local.pool.is_empty() {
                std::mem::swap(&mut local.pool, &mut lock(&local.buffer.inner).free);
            }
            local.pool.pop()
        })
        .flatten()
        .unwrap_or_else(|| Box::new(SpanState::empty()))
    }

    /// Returns an unused box to this thread's pool (a span that is not
    /// recorded, or one another copy of the layer already owns).
    pub(crate) fn give_back(&self, mut state: Box<SpanState>) {
        state.cx = None;
        state.clear_data();
        state.sc = opentelemetry::trace::SpanContext::NONE;
        let mut state = Some(state);
        let _ = self.with_local(|local| {
            if local.pool.len() < self.cap
                && let Some(s) = state.take()
            {
                local.pool.push(s);
            }
        });
    }

    /// Hands a closed span over; never blocks on anything but its own
    /// thread's buffer lock, which the recorder thread holds only to swap.
    pub(crate) fn finish(&self, state: Box<SpanState>) {
        let mut state = Some(state);
        let _ = self.with_local(|local| {
            if let Some(s) = state.take() {
                self.push(&local.buffer, s);
            }
        });
        if let Some(s) = state {
            if std::thread::panicking() {
                self.dropped(1, "a span closed while its thread was panicking");
            } else {
                // Re-entered, or the thread is exiting: a buffer of its own.
                self.push(&self.register(), s);
            }
        }
    }

    fn push(&self, buffer: &ThreadBuffer, state: Box<SpanState>) {
        let mut inner = lock(&buffer.inner);
        if inner.closed {
            drop(inner);
            self.dropped(1, "the telemetry pipeline is shut down");
            return;
        }
        if inner.spans.len() >= self.cap {
            drop(inner);
            self.dropped(1, "the hand-off buffer is full (the recorder thread is behind)");
            self.wake();
            return;
        }
        inner.spans.push(state);
        let len = inner.spans.len();
        drop(inner);
        if len == WAKE_AT {
            self.wake();
        }
    }

    fn register(&self) -> Arc<ThreadBuffer> {
        let buffer = Arc::new(ThreadBuffer::default());
        let mut buffers = lock(&self.buffers);
        if buffers.1 {
            lock(&buffer.inner).closed = true;
        } else {
            buffers.0.push(buffer.clone());
        }
        buffer
    }

    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    fn dropped(&self, n: u64, why: &str) {
        self.counters.add_dropped(n);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "otel_core", "dropping tracing spans: {why}; the total is in the `dropped` counter");
        }
    }

    /// Moves every buffered span to the processors. Runs on the recorder
    /// thread, and on the caller's thread in `force_flush` and `shutdown`
    /// (one at a time: when it returns, every span closed before the call has
    /// reached the processors).
    pub(crate) fn drain(&self) {
        let mut drain = lock(&self.drain);
        let buffers: Vec<Arc<ThreadBuffer>> = {
            let mut registered = lock(&self.buffers);
            // A buffer only the list holds belongs to a thread that has ended;
            // it is drained below and then forgotten.
            let snapshot = registered.0.clone();
            registered
                .0
                .retain(|b| Arc::strong_count(b) > 2 || !lock(&b.inner).spans.is_empty());
            snapshot
        };
        let now = self.clock.raw();
        if self.clock.delta(drain.anchor.raw, now) > REANCHOR {
            drain.anchor = Anchor {
                wall: SystemTime::now(),
                raw: self.clock.raw(),
            };
        }
        for buffer in buffers {
            let mut taken = std::mem::take(&mut drain.spare);
            std::mem::swap(&mut taken, &mut lock(&buffer.inner).spans);
            for state in taken.iter_mut() {
                let span = self.convert(&mut drain, state);
                self.deliver(span);
            }
            // The emptied boxes go back to their thread's pool.
            {
                let mut inner = lock(&buffer.inner);
                let room = self.cap.saturating_sub(inner.free.len());
                inner.free.extend(taken.drain(..).take(room));
            }
            taken.clear();
            drain.spare = taken;
        }
    }

    fn deliver(&self, span: SpanData) {
        match self.processors.as_slice() {
            [] => {}
            [only] => only.on_end(span),
            [rest @ .., last] => {
                for p in rest {
                    p.on_end(span.clone());
                }
                last.on_end(span);
            }
        }
    }

    fn wall(&self, anchor: Anchor, raw: u64) -> SystemTime {
        if raw >= anchor.raw {
            anchor.wall + self.clock.delta(anchor.raw, raw)
        } else {
            anchor.wall - self.clock.delta(raw, anchor.raw)
        }
    }

    /// Builds the `SpanData` of a closed span, leaving its box empty (with
    /// the capacity of its buffers) for reuse.
    fn convert(&self, drain: &mut Drain, state: &mut SpanState) -> SpanData {
        let anchor = drain.anchor;
        let scope = match &drain.last_scope {
            Some((target, scope)) if std::ptr::eq(*target, state.target) => scope.clone(),
            _ => {
                let scope = drain
                    .scopes
                    .entry(state.target)
                    .or_insert_with(|| InstrumentationScope::builder(state.target).build())
                    .clone();
                drain.last_scope = Some((state.target, scope.clone()));
                scope
            }
        };
        let text = state.text.as_str();
        let events = state
            .events
            .iter()
            .map(|e| {
                let at = e.wall.unwrap_or_else(|| self.wall(anchor, e.at));
                let attributes = state
                    .event_attrs
                    .get(e.attrs.0 as usize..e.attrs.1 as usize)
                    .unwrap_or_default()
                    .iter()
                    .map(|a| a.to_key_value(text))
                    .collect();
                Event::new(e.name.to_cow(text), at, attributes, e.dropped)
            })
            .collect();
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        span_events.dropped_count = state.dropped_events;
        let mut span_links = SpanLinks::default();
        span_links.links = std::mem::take(&mut state.links);
        span_links.dropped_count = state.dropped_links;
        let data = SpanData {
            span_context: std::mem::replace(&mut state.sc, opentelemetry::trace::SpanContext::NONE),
            parent_span_id: state.parent_span_id,
            parent_span_is_remote: state.parent_is_remote,
            span_kind: state.kind.clone(),
            name: state.name.to_cow(text),
            start_time: self.wall(anchor, state.start),
            end_time: self.wall(anchor, state.end.max(state.start)),
            attributes: state.attrs.iter().map(|a| a.to_key_value(text)).collect(),
            dropped_attributes_count: state.dropped_attributes,
            events: span_events,
            links: span_links,
            status: std::mem::replace(&mut state.status, opentelemetry::trace::Status::Unset),
            instrumentation_scope: scope,
        };
        state.clear_data();
        data
    }

    /// Stops the recorder thread, drains what is buffered and refuses (and
    /// counts) spans closed from now on.
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake();
        if let Some(handle) = lock(&self.worker).take() {
            // The thread ends after at most one drain.
            let _ = handle.join();
        }
        let buffers = {
            let mut registered = lock(&self.buffers);
            registered.1 = true;
            std::mem::take(&mut registered.0)
        };
        let mut drain = lock(&self.drain);
        for buffer in buffers {
            let taken = {
                let mut inner = lock(&buffer.inner);
                inner.closed = true;
                std::mem::take(&mut inner.spans)
            };
            for mut state in taken {
                let span = self.convert(&mut drain, &mut state);
                self.deliver(span);
            }
        }
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Whether the current thread is one whose telemetry is suppressed (the
/// exporter's and the recorder's own threads).
#[inline]
pub(crate) fn suppressed() -> bool {
    opentelemetry::Context::is_current_telemetry_suppressed()
}

/// The span context of a context, when it holds a valid one.
pub(crate) fn valid_span_context(cx: &opentelemetry::Context) -> Option<opentelemetry::trace::SpanContext> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.clone())
}
