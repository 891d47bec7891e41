//! The batch span processor.

use crate::config::{ConfigError, EnvMode, EnvReader};
use crate::counters::Counters;
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// `OTEL_BSP_SCHEDULE_DELAY` (milliseconds between exports of a partial batch).
pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// `OTEL_BSP_EXPORT_TIMEOUT` (milliseconds an export may take).
pub const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
/// `OTEL_BSP_MAX_QUEUE_SIZE`.
pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// `OTEL_BSP_MAX_CONCURRENT_EXPORTS` (not in the specification; opentelemetry_sdk reads it too).
pub const OTEL_BSP_MAX_CONCURRENT_EXPORTS: &str = "OTEL_BSP_MAX_CONCURRENT_EXPORTS";

/// Defaults of the OpenTelemetry specification (and ours for concurrency).
pub const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_millis(5000);
/// Default export timeout.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_millis(30_000);
/// Default queue size.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;
/// Default batch size.
pub const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;
/// Default number of exports in flight.
pub const DEFAULT_MAX_CONCURRENT_EXPORTS: usize = 4;

/// Batching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Spans held at most; more are dropped and counted.
    pub max_queue_size: usize,
    /// The longest a span waits for a batch to fill.
    pub schedule_delay: Duration,
    /// Spans per export.
    pub max_export_batch_size: usize,
    /// The longest one export may take; then it is abandoned and its spans counted as failed.
    pub export_timeout: Duration,
    /// Exports in flight at once.
    pub max_concurrent_exports: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
            schedule_delay: DEFAULT_SCHEDULE_DELAY,
            max_export_batch_size: DEFAULT_MAX_EXPORT_BATCH_SIZE,
            export_timeout: DEFAULT_EXPORT_TIMEOUT,
            max_concurrent_exports: DEFAULT_MAX_CONCURRENT_EXPORTS,
        }
    }
}

impl BatchConfig {
    /// The defaults overridden by `OTEL_BSP_*` variables read by `env`.
    ///
    /// # Errors
    ///
    /// In strict mode, the first invalid variable; also when the batch size
    /// exceeds the queue size (the specification requires batch <= queue).
    pub fn from_env_reader(env: &mut EnvReader<'_>) -> Result<Self, ConfigError> {
        let mut c = BatchConfig::default();
        if let Some(d) = env.millis(OTEL_BSP_SCHEDULE_DELAY)? {
            c.schedule_delay = d;
        }
        if let Some(d) = env.millis(OTEL_BSP_EXPORT_TIMEOUT)? {
            c.export_timeout = d;
        }
        if let Some(n) = env.positive(OTEL_BSP_MAX_QUEUE_SIZE)? {
            c.max_queue_size = n;
        }
        if let Some(n) = env.positive(OTEL_BSP_MAX_EXPORT_BATCH_SIZE)? {
            if n > c.max_queue_size {
                env.reject(ConfigError::new(
                    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
                    n.to_string(),
                    format!("a batch size no larger than the queue size ({})", c.max_queue_size),
                ))?;
                c.max_export_batch_size = c.max_queue_size.min(DEFAULT_MAX_EXPORT_BATCH_SIZE);
            } else {
                c.max_export_batch_size = n;
            }
        }
        if let Some(n) = env.positive(OTEL_BSP_MAX_CONCURRENT_EXPORTS)? {
            c.max_concurrent_exports = n;
        }
        Ok(c)
    }

    /// The defaults overridden by the process's `OTEL_BSP_*` variables, strictly.
    ///
    /// # Errors
    ///
    /// The first invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_reader(&mut EnvReader::process(EnvMode::Strict))
    }
}

enum Control {
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(Duration, SyncSender<OTelSdkResult>),
    SetResource(Resource),
}

#[derive(Debug)]
struct Shared {
    queued: AtomicUsize,
    notify: Notify,
    shut_down: AtomicBool,
    warned_full: AtomicBool,
    counters: Arc<Counters>,
}

/// Builds a [`BatchSpanProcessor`].
#[derive(Debug)]
pub struct BatchSpanProcessorBuilder<E> {
    exporter: E,
    config: BatchConfig,
    counters: Option<Arc<Counters>>,
}

impl<E: SpanExporter + 'static> BatchSpanProcessorBuilder<E> {
    /// All settings at once (e.g. from [`BatchConfig::from_env`]).
    pub fn with_config(mut self, config: BatchConfig) -> Self {
        self.config = config;
        self
    }

    /// Spans held at most. Defaults to 2048 (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub fn with_max_queue_size(mut self, n: usize) -> Self {
        self.config.max_queue_size = n;
        self
    }

    /// The longest a span waits for a batch to fill. Defaults to 5 s (`OTEL_BSP_SCHEDULE_DELAY`).
    pub fn with_scheduled_delay(mut self, d: Duration) -> Self {
        self.config.schedule_delay = d;
        self
    }

    /// Spans per export. Defaults to 512 (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub fn with_max_export_batch_size(mut self, n: usize) -> Self {
        self.config.max_export_batch_size = n;
        self
    }

    /// The longest one export may take. Defaults to 30 s (`OTEL_BSP_EXPORT_TIMEOUT`).
    pub fn with_export_timeout(mut self, d: Duration) -> Self {
        self.config.export_timeout = d;
        self
    }

    /// Exports in flight at once. Defaults to 4 (`OTEL_BSP_MAX_CONCURRENT_EXPORTS`).
    pub fn with_max_concurrent_exports(mut self, n: usize) -> Self {
        self.config.max_concurrent_exports = n;
        self
    }

    /// Counters to write to (share one with an [`OtlpExporter`](crate::OtlpExporter)).
    /// Defaults to the processor's own.
    pub fn with_counters(mut self, counters: Arc<Counters>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// Starts the worker thread and returns the processor.
    ///
    /// Sizes of 0 are raised to 1, and a batch larger than the queue is
    /// lowered to the queue size.
    pub fn build(self) -> BatchSpanProcessor {
        let mut config = self.config;
        config.max_queue_size = config.max_queue_size.max(1);
        config.max_export_batch_size = config.max_export_batch_size.clamp(1, config.max_queue_size);
        config.max_concurrent_exports = config.max_concurrent_exports.max(1);
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            notify: Notify::new(),
            shut_down: AtomicBool::new(false),
            warned_full: AtomicBool::new(false),
            counters: self.counters.unwrap_or_default(),
        });
        let (tx, rx) = mpsc::sync_channel(config.max_queue_size);
        let (control_tx, control_rx) = mpsc::channel();
        let worker_shared = shared.clone();
        let exporter = self.exporter;
        let spawned = std::thread::Builder::new()
            .name("otel-batch-export".into())
            .spawn(move || worker_thread(exporter, rx, control_rx, worker_shared, config));
        let worker = match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                // Without a worker nothing can be exported: refuse spans, visibly.
                tracing::error!(target: "otel_export", "cannot start the batch export thread: {e}; spans will be dropped and counted");
                shared.shut_down.store(true, Ordering::Relaxed);
                None
            }
        };
        BatchSpanProcessor {
            tx,
            control: Mutex::new(control_tx),
            shared,
            config,
            worker: Mutex::new(worker),
        }
    }
}

/// Batches ended spans and exports them from a dedicated thread.
///
/// - `on_end` never blocks: a span goes into a bounded lock-free queue (or is
///   dropped and counted when the queue is full, with one warning).
/// - Only sampled spans are exported; a span the sampler marked record-only is not.
/// - Up to `max_concurrent_exports` exports are in flight, each bounded by
///   `export_timeout`.
/// - `force_flush` and `shutdown` wait with deadlines, from any thread: a Tokio
///   runtime of either flavour or none (the worker owns its own runtime).
/// - [`counters`](Self::counters) says where every span went.
///
/// ```
/// use otel_export::BatchSpanProcessor;
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
///
/// let exporter = InMemorySpanExporter::default();
/// let processor = BatchSpanProcessor::builder(exporter.clone()).build();
/// let counters = processor.counters();
/// let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
/// # use opentelemetry::trace::{Tracer, TracerProvider};
/// provider.tracer("t").in_span("work", |_| {});
/// provider.shutdown().unwrap();
/// assert_eq!(counters.snapshot().exported, 1);
/// ```
pub struct BatchSpanProcessor {
    tx: SyncSender<SpanData>,
    control: Mutex<mpsc::Sender<Control>>,
    shared: Arc<Shared>,
    config: BatchConfig,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl fmt::Debug for BatchSpanProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchSpanProcessor")
            .field("config", &self.config)
            .field("counters", &self.shared.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl BatchSpanProcessor {
    /// A builder for a processor exporting to `exporter`.
    pub fn builder<E: SpanExporter + 'static>(exporter: E) -> BatchSpanProcessorBuilder<E> {
        BatchSpanProcessorBuilder {
            exporter,
            config: BatchConfig::default(),
            counters: None,
        }
    }

    /// The counters this processor writes.
    pub fn counters(&self) -> Arc<Counters> {
        self.shared.counters.clone()
    }

    /// The settings in use.
    pub fn config(&self) -> BatchConfig {
        self.config
    }

    fn drop_span(&self, why: &str) {
        Counters::add(&self.shared.counters.dropped, 1);
        if !self.shared.warned_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "otel_export",
                "dropping spans: {why}; the total is in the `dropped` counter and reported at shutdown"
            );
        }
    }

    fn send_control(&self, c: Control) -> Result<(), OTelSdkError> {
        let sent = self
            .control
            .lock()
            .map_err(|_| OTelSdkError::InternalFailure("control lock poisoned".into()))?
            .send(c);
        self.shared.notify.notify_one();
        sent.map_err(|_| OTelSdkError::AlreadyShutdown)
    }

    fn wait(&self, ack: &Receiver<OTelSdkResult>, timeout: Duration) -> OTelSdkResult {
        match ack.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::InternalFailure("the export thread ended".into())),
        }
    }
}

impl SpanProcessor for BatchSpanProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        // A record-only span is for in-process use; it is not exported.
        if !span.span_context.is_sampled() {
            return;
        }
        if self.shared.shut_down.load(Ordering::Relaxed) {
            self.drop_span("the processor is shut down");
            return;
        }
        // Counted before it is sent, so the worker, which uncounts each span it
        // takes, never sees the count below what the channel holds.
        let queued = self.shared.queued.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        match self.tx.try_send(span) {
            Ok(()) => {
                // Wake the worker once per full batch; the timer covers the rest.
                if queued == self.config.max_export_batch_size {
                    self.shared.notify.notify_one();
                }
            }
            Err(e) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => self.drop_span("the export queue is full"),
                    TrySendError::Disconnected(_) => self.drop_span("the export thread has ended"),
                }
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        if self.shared.shut_down.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let (ack_tx, ack) = mpsc::sync_channel(1);
        self.send_control(Control::Flush(ack_tx))?;
        self.wait(&ack, self.config.export_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.shared.shut_down.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let (ack_tx, ack) = mpsc::sync_channel(1);
        self.send_control(Control::Shutdown(timeout, ack_tx))?;
        let result = self.wait(&ack, timeout);
        if result.is_ok()
            && let Ok(mut worker) = self.worker.lock()
            && let Some(handle) = worker.take()
        {
            // The worker has acknowledged and is returning; this join is immediate.
            let _ = handle.join();
        }
        let c = self.shared.counters.snapshot();
        if c.dropped > 0 || c.failed > 0 {
            tracing::warn!(target: "otel_export", "batch span processor shut down: {} exported, {} dropped, {} failed", c.exported, c.dropped, c.failed);
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = self.send_control(Control::SetResource(resource.clone()));
    }
}

impl Drop for BatchSpanProcessor {
    fn drop(&mut self) {
        // Not shut down explicitly: let the worker export what it holds and end,
        // without blocking whoever drops us.
        if !self.shared.shut_down.swap(true, Ordering::Relaxed) {
            let (ack_tx, _ack) = mpsc::sync_channel(1);
            let _ = self.send_control(Control::Shutdown(self.config.export_timeout, ack_tx));
        }
    }
}

fn worker_thread<E: SpanExporter + 'static>(
    exporter: E,
    rx: Receiver<SpanData>,
    control: Receiver<Control>,
    shared: Arc<Shared>,
    config: BatchConfig,
) {
    // Whatever exporting does (HTTP and gRPC client internals that emit
    // `tracing` spans) is not traced itself: no feedback loop.
    let _quiet = opentelemetry::Context::enter_telemetry_suppressed_scope();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(target: "otel_export", "cannot start the batch export runtime: {e}; spans will be dropped and counted");
            shared.shut_down.store(true, Ordering::Relaxed);
            return;
        }
    };
    let mut worker = Worker {
        exporter: Arc::new(exporter),
        rx,
        shared,
        config,
        in_flight: JoinSet::new(),
    };
    runtime.block_on(worker.run(control));
}

struct Worker<E> {
    exporter: Arc<E>,
    rx: Receiver<SpanData>,
    shared: Arc<Shared>,
    config: BatchConfig,
    in_flight: JoinSet<(u64, Result<OTelSdkResult, tokio::time::error::Elapsed>)>,
}

impl<E: SpanExporter + 'static> Worker<E> {
    async fn run(&mut self, control: Receiver<Control>) {
        let mut batch: Vec<SpanData> = Vec::with_capacity(self.config.max_export_batch_size);
        let mut deadline = tokio::time::Instant::now() + self.config.schedule_delay;
        loop {
            // Full batches go out as soon as there is an export slot.
            while self.fill(&mut batch, usize::MAX) {
                self.dispatch(&mut batch).await;
                deadline = tokio::time::Instant::now() + self.config.schedule_delay;
            }
            if tokio::time::Instant::now() >= deadline {
                if !batch.is_empty() {
                    self.dispatch(&mut batch).await;
                }
                deadline = tokio::time::Instant::now() + self.config.schedule_delay;
            }
            loop {
                match control.try_recv() {
                    Ok(Control::Flush(ack)) => {
                        let result = self.flush(&mut batch, self.config.export_timeout).await;
                        let _ = ack.try_send(result);
                    }
                    Ok(Control::Shutdown(timeout, ack)) => {
                        let started = Instant::now();
                        let result = self.flush(&mut batch, timeout).await;
                        let remaining = timeout.saturating_sub(started.elapsed());
                        let exporter_result = self.exporter.shutdown_with_timeout(remaining);
                        self.count_leftovers();
                        let _ = ack.try_send(result.and(exporter_result));
                        return;
                    }
                    Ok(Control::SetResource(resource)) => {
                        self.drain_in_flight().await;
                        match Arc::get_mut(&mut self.exporter) {
                            Some(e) => e.set_resource(&resource),
                            None => {
                                tracing::warn!(target: "otel_export", "could not pass the resource to the exporter")
                            }
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        // The processor is gone without a shutdown: export what is held, then end.
                        let _ = self.flush(&mut batch, self.config.export_timeout).await;
                        let _ = self.exporter.shutdown_with_timeout(self.config.export_timeout);
                        self.count_leftovers();
                        return;
                    }
                }
            }
            tokio::select! {
                _ = self.shared.notify.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => self.record(done),
            }
        }
    }

    /// Spans that raced past the shutdown flag into the queue after the final
    /// flush: counted as dropped, never lost silently.
    fn count_leftovers(&self) {
        while self.rx.try_recv().is_ok() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            Counters::add(&self.shared.counters.dropped, 1);
        }
    }

    /// Moves queued spans into `batch` (at most `limit`); true when the batch is full.
    fn fill(&self, batch: &mut Vec<SpanData>, mut limit: usize) -> bool {
        while batch.len() < self.config.max_export_batch_size && limit > 0 {
            match self.rx.try_recv() {
                Ok(span) => {
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                    Counters::add(&self.shared.counters.enqueued, 1);
                    batch.push(span);
                    limit -= 1;
                }
                Err(_) => break,
            }
        }
        batch.len() >= self.config.max_export_batch_size
    }

    /// Starts exporting `batch` once a slot is free.
    async fn dispatch(&mut self, batch: &mut Vec<SpanData>) {
        while self.in_flight.len() >= self.config.max_concurrent_exports {
            match self.in_flight.join_next().await {
                Some(done) => self.record(done),
                None => break,
            }
        }
        let spans = std::mem::replace(batch, Vec::with_capacity(self.config.max_export_batch_size));
        let n = spans.len() as u64;
        let exporter = self.exporter.clone();
        let timeout = self.config.export_timeout;
        self.in_flight
            .spawn(async move { (n, tokio::time::timeout(timeout, exporter.export(spans)).await) });
    }

    fn record(&self, done: Result<(u64, Result<OTelSdkResult, tokio::time::error::Elapsed>), tokio::task::JoinError>) {
        let c = &self.shared.counters;
        match done {
            Ok((n, Ok(Ok(())))) => Counters::add(&c.exported, n),
            Ok((n, Ok(Err(e)))) => {
                Counters::add(&c.failed, n);
                tracing::warn!(target: "otel_export", "export of {n} spans failed: {e}");
            }
            Ok((n, Err(_))) => {
                Counters::add(&c.failed, n);
                tracing::warn!(target: "otel_export", "export of {n} spans timed out after {:?}", self.config.export_timeout);
            }
            Err(e) => tracing::error!(target: "otel_export", "export task failed: {e}"),
        }
    }

    async fn drain_in_flight(&mut self) {
        while let Some(done) = self.in_flight.join_next().await {
            self.record(done);
        }
    }

    /// Exports everything queued now and waits for every export, within `timeout`.
    async fn flush(&mut self, batch: &mut Vec<SpanData>, timeout: Duration) -> OTelSdkResult {
        let work = async {
            // Only what was queued when the flush began: under load the queue
            // never empties, and a flush must end.
            let mut remaining = self.shared.queued.load(Ordering::Relaxed);
            loop {
                let before = batch.len();
                let full = self.fill(batch, remaining);
                remaining -= batch.len() - before;
                if full || (remaining == 0 && !batch.is_empty()) {
                    self.dispatch(batch).await;
                }
                if remaining == 0 && batch.is_empty() {
                    break;
                }
                if !full && batch.len() == before {
                    // Counted but not yet visible in the channel: a sender is mid-send.
                    tokio::task::yield_now().await;
                    remaining = remaining.min(self.shared.queued.load(Ordering::Relaxed));
                }
            }
            self.drain_in_flight().await;
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(()) => Ok(()),
            Err(_) => Err(OTelSdkError::Timeout(timeout)),
        }
    }
}
