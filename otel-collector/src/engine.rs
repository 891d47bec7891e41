//! The trace buffer and decision loop, generic over how a span is stored
//! (`SpanData` in-process, OTLP wire bytes in the sidecar).

use crate::facts::{Attributes, SpanFacts};
use crate::lock;
use crate::policy::{Decision, Summary, View};
use crate::predicate::ResourceMatch;
use crate::settings::TailSamplingConfig;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// A millisecond clock for decisions and rate limits.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since an arbitrary, fixed origin; never decreases.
    fn now_ms(&self) -> u64;
}

/// The monotonic system clock. Its origin lies 2^32 ms (about 49 days)
/// before it was made, so spans that arrived before a restart (read back
/// from a journal) still have an arrival time on it.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock { origin: Instant::now() }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        (1 << 32) + self.origin.elapsed().as_millis() as u64
    }
}

/// A clock that moves only when told (tests and simulations).
#[derive(Debug, Default)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    /// A clock at `ms`.
    pub fn new(ms: u64) -> Self {
        ManualClock { ms: AtomicU64::new(ms) }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.ms.fetch_add(by.as_millis() as u64, Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Relaxed)
    }
}

/// Why spans reach the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptBy<'a> {
    /// The named top-level policy sampled the trace.
    Policy(&'a str),
    /// Late spans of a trace already kept (the sampled decision cache).
    Cache,
}

/// Where kept traces go.
pub trait TraceSink<T>: Send + Sync {
    /// The spans of a kept trace (or late spans of one), in arrival order.
    /// Called on the deciding thread; must not block.
    fn keep(&self, trace_id: [u8; 16], spans: Vec<T>, kept_by: KeptBy<'_>);

    /// The spans of a trace decided not to keep (by policy, too large, or
    /// pending at shutdown), for observers such as statistics over every
    /// trace seen. Called on the deciding thread; must not block. By default
    /// they are dropped.
    fn not_kept(&self, trace_id: [u8; 16], spans: Vec<T>) {
        let _ = (trace_id, spans);
    }
}

impl<T, F> TraceSink<T> for F
where
    F: Fn([u8; 16], Vec<T>, KeptBy<'_>) + Send + Sync,
{
    fn keep(&self, trace_id: [u8; 16], spans: Vec<T>, kept_by: KeptBy<'_>) {
        self(trace_id, spans, kept_by);
    }
}

/// Trace ids are random: fold and mix them instead of hashing with SipHash.
#[derive(Debug, Default, Clone, Copy)]
struct IdHash;

#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = mix(v);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher::default()
    }
}

fn mix(v: u128) -> u64 {
    let x = (v as u64) ^ ((v >> 64) as u64);
    let x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

/// Remembers the last `cap` trace ids inserted.
#[derive(Debug)]
struct DecisionCache {
    cap: usize,
    set: HashSet<u128, IdHash>,
    ring: VecDeque<u128>,
}

impl DecisionCache {
    fn new(cap: usize) -> Self {
        DecisionCache {
            cap,
            set: HashSet::default(),
            ring: VecDeque::new(),
        }
    }

    fn insert(&mut self, key: u128) {
        if self.cap == 0 || !self.set.insert(key) {
            return;
        }
        self.ring.push_back(key);
        if self.ring.len() > self.cap
            && let Some(old) = self.ring.pop_front()
        {
            self.set.remove(&old);
        }
    }

    fn contains(&self, key: u128) -> bool {
        self.set.contains(&key)
    }
}

#[derive(Debug)]
struct Trace<T> {
    seq: u64,
    arrived_ms: u64,
    root_seen: bool,
    summary: Summary,
    spans: Vec<T>,
}

#[derive(Debug)]
struct Shard<T> {
    live: HashMap<u128, Trace<T>, IdHash>,
    sampled: DecisionCache,
    not_sampled: DecisionCache,
}

#[derive(Debug, Clone, Copy)]
struct Due {
    at_ms: u64,
    key: u128,
    seq: u64,
}

/// What [`Inner::ingest_batch`] settles once for a whole request.
struct Ingested {
    /// The sequence number for the next new trace (a block was taken).
    next_seq: u64,
    new_traces: u64,
    /// Spans of traces decided already (not buffered).
    late_spans: u64,
    /// Deadlines of new traces, and after-root deadlines.
    wait: Vec<Due>,
    root: Vec<Due>,
}

#[derive(Debug, Default)]
struct Queues {
    /// Decision deadlines in arrival order (also the eviction order).
    wait: VecDeque<Due>,
    /// Early deadlines after a root span, in root arrival order.
    root: VecDeque<Due>,
    /// The deadline the timer sleeps towards; 0 while it works.
    sleeping_until: u64,
}

impl Queues {
    fn next_due(&self) -> Option<u64> {
        match (self.wait.front(), self.root.front()) {
            (Some(a), Some(b)) => Some(a.at_ms.min(b.at_ms)),
            (Some(a), None) => Some(a.at_ms),
            (None, Some(b)) => Some(b.at_ms),
            (None, None) => None,
        }
    }
}

/// Why a trace is being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Wait,
    Root,
    Evicted,
    TooLarge,
    Flush,
    DropPending,
}

/// Upper bounds (ms) of the decision delay histogram buckets; the last bucket is unbounded.
pub const DECISION_DELAY_BUCKETS_MS: [u64; 14] = [
    1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000,
];

#[derive(Debug, Default)]
struct PolicyStats {
    sampled: AtomicU64,
    not_sampled: AtomicU64,
    dropped: AtomicU64,
    /// Evaluations per latency bucket ([`POLICY_LATENCY_BUCKETS_US`] plus one unbounded).
    latency: [AtomicU64; POLICY_LATENCY_BUCKETS_US.len() + 1],
    /// Sum of evaluation times, nanoseconds.
    latency_nanos: AtomicU64,
}

/// Upper bounds, microseconds, of the per-policy evaluation latency
/// histogram (`otelcol_processor_tail_sampling_sampling_decision_latency`).
pub const POLICY_LATENCY_BUCKETS_US: [u64; 23] = [
    1, 2, 5, 10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000,
    50000,
];

#[derive(Debug, Default)]
struct Stats {
    traces_received: AtomicU64,
    spans_received: AtomicU64,
    traces_sampled: AtomicU64,
    traces_not_sampled: AtomicU64,
    spans_sampled: AtomicU64,
    spans_not_sampled: AtomicU64,
    late_spans_sampled: AtomicU64,
    late_spans_dropped: AtomicU64,
    evicted: AtomicU64,
    too_large: AtomicU64,
    dropped_on_shutdown: AtomicU64,
    spans_after_shutdown: AtomicU64,
    buffered_spans: AtomicU64,
    decision_delay: [AtomicU64; DECISION_DELAY_BUCKETS_MS.len() + 1],
    decision_delay_ms_sum: AtomicU64,
    evaluation_nanos: AtomicU64,
}

/// Per-policy decision counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCounts {
    /// The policy's name.
    pub name: String,
    /// Traces it voted to sample (inverted "sampled" included).
    pub sampled: u64,
    /// Traces it voted not to sample.
    pub not_sampled: u64,
    /// Traces it vetoed (drop policies).
    pub dropped: u64,
    /// Evaluations per latency bucket: bounds in [`POLICY_LATENCY_BUCKETS_US`]
    /// plus one unbounded bucket.
    pub latency_buckets: Vec<u64>,
    /// Sum of its evaluation times, nanoseconds.
    pub latency_nanos: u64,
}

/// A snapshot of the engine's counters.
///
/// Every span received is accounted for: `spans_received = spans_sampled +
/// spans_not_sampled + late_spans_sampled + late_spans_dropped +
/// buffered_spans + spans_after_shutdown`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailSamplingStats {
    /// Traces seen (a trace id seen again after its decision was forgotten counts again).
    pub traces_received: u64,
    /// Spans seen.
    pub spans_received: u64,
    /// Traces kept.
    pub traces_sampled: u64,
    /// Traces not kept.
    pub traces_not_sampled: u64,
    /// Spans of kept traces, forwarded at the decision.
    pub spans_sampled: u64,
    /// Spans of traces not kept.
    pub spans_not_sampled: u64,
    /// Spans arriving after their trace was kept, forwarded.
    pub late_spans_sampled: u64,
    /// Spans arriving after their trace was dropped, dropped.
    pub late_spans_dropped: u64,
    /// Traces decided before `decision_wait` because `num_traces` was reached.
    pub evicted: u64,
    /// Traces dropped for exceeding `maximum_trace_size_bytes`.
    pub too_large: u64,
    /// Traces dropped undecided at shutdown (`drop_pending_traces_on_shutdown`).
    pub dropped_on_shutdown: u64,
    /// Spans refused because the engine was shut down.
    pub spans_after_shutdown: u64,
    /// Traces buffered now.
    pub buffered_traces: u64,
    /// Spans buffered now.
    pub buffered_spans: u64,
    /// Decisions per delay bucket (first span to decision), bounds in
    /// [`DECISION_DELAY_BUCKETS_MS`] plus one unbounded bucket.
    pub decision_delay_buckets: Vec<u64>,
    /// Sum of decision delays, milliseconds.
    pub decision_delay_ms_sum: u64,
    /// Time spent evaluating policies, nanoseconds.
    pub evaluation_nanos: u64,
    /// Per top-level policy.
    pub policies: Vec<PolicyCounts>,
}

struct Inner<T> {
    cfg: TailSamplingConfig,
    /// Evaluation order: drop policies first (they veto whatever the order), then the rest.
    order: Vec<usize>,
    policy_stats: Vec<PolicyStats>,
    shards: Vec<Mutex<Shard<T>>>,
    queues: Mutex<Queues>,
    wake: Condvar,
    live: AtomicUsize,
    seq: AtomicU64,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn TraceSink<T>>,
    stats: Stats,
    stop: AtomicBool,
    closed: AtomicBool,
}

/// A decided trace waiting to be handed to the sink (outside the shard lock).
struct Decided<T> {
    trace_id: [u8; 16],
    spans: Vec<T>,
    /// The policy that kept it; `None`: not kept.
    policy: Option<usize>,
}

/// Builds a [`TailSampler`].
pub struct TailSamplerBuilder {
    config: TailSamplingConfig,
    clock: Option<Arc<dyn Clock>>,
    timer: bool,
}

impl fmt::Debug for TailSamplerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailSamplerBuilder")
            .field("config", &self.config)
            .field("timer", &self.timer)
            .finish()
    }
}

impl TailSamplerBuilder {
    /// A builder for an engine running `config`, on the system clock, with a
    /// decision thread.
    pub fn new(config: TailSamplingConfig) -> Self {
        TailSamplerBuilder {
            config,
            clock: None,
            timer: true,
        }
    }

    /// Uses `clock` instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Starts no decision thread: decisions happen only in
    /// [`TailSampler::decide_due`], [`TailSampler::decide_all`] and on eviction.
    pub fn without_timer(mut self) -> Self {
        self.timer = false;
        self
    }

    /// Builds the engine, handing kept traces to `sink`.
    pub fn build<T: Send + 'static>(self, sink: Arc<dyn TraceSink<T>>) -> TailSampler<T> {
        let cfg = self.config;
        let mut order: Vec<usize> = (0..cfg.policies.len()).filter(|&i| cfg.policies[i].is_drop()).collect();
        order.extend((0..cfg.policies.len()).filter(|&i| !cfg.policies[i].is_drop()));
        let per_shard = |n: usize| n.div_ceil(SHARDS);
        let capacity = cfg
            .expected_new_traces_per_sec
            .saturating_mul(cfg.decision_wait.as_secs() as usize)
            .min(cfg.num_traces);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    live: HashMap::with_capacity_and_hasher(per_shard(capacity), IdHash),
                    sampled: DecisionCache::new(per_shard(cfg.sampled_cache_size)),
                    not_sampled: DecisionCache::new(per_shard(cfg.non_sampled_cache_size)),
                })
            })
            .collect();
        let inner = Arc::new(Inner {
            policy_stats: cfg.policies.iter().map(|_| PolicyStats::default()).collect(),
            order,
            cfg,
            shards,
            queues: Mutex::new(Queues::default()),
            wake: Condvar::new(),
            live: AtomicUsize::new(0),
            seq: AtomicU64::new(1),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::default())),
            sink,
            stats: Stats::default(),
            stop: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let timer = if self.timer {
            let worker = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("tail-sampling".into())
                .spawn(move || worker.run_timer())
                .ok()
        } else {
            None
        };
        // Without a thread (spawn failure included) decisions still happen on
        // eviction, flush and shutdown.
        TailSampler {
            inner,
            timer: Mutex::new(timer),
        }
    }
}

/// The tail-sampling engine: buffers spans by trace, decides each trace once
/// with the configured policies, hands kept traces to its sink, and makes late
/// spans follow the decision.
pub struct TailSampler<T: Send + 'static> {
    inner: Arc<Inner<T>>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

impl<T: Send + 'static> fmt::Debug for TailSampler<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailSampler")
            .field("config", &self.inner.cfg)
            .field("buffered_traces", &self.inner.live.load(Relaxed))
            .finish()
    }
}

/// What the engine reads from a span before storing it (see
/// [`TailSampler::prepare`]).
#[derive(Debug, Clone, Copy)]
pub struct PreparedSpan {
    trace_id: [u8; 16],
    start: u64,
    end: u64,
    status: crate::facts::StatusCode,
    root: bool,
    bytes: usize,
    bits: u128,
}

impl<T: Send + 'static> TailSampler<T> {
    /// The configuration.
    pub fn config(&self) -> &TailSamplingConfig {
        &self.inner.cfg
    }

    /// The attribute conditions `resource` satisfies; compute once per resource.
    pub fn resource_match<R: Attributes + ?Sized>(&self, resource: &R) -> ResourceMatch {
        self.inner.cfg.conditions.resource_bits(resource)
    }

    /// Buffers a span that describes itself.
    pub fn ingest(&self, resource: &ResourceMatch, span: T)
    where
        T: SpanFacts,
    {
        let facts = self.inner.facts(resource, &span);
        self.inner.ingest(facts, span);
    }

    /// Buffers `item`, described by `facts` (for storage that does not
    /// describe itself cheaply, e.g. undecoded wire bytes).
    pub fn ingest_with<S: SpanFacts + ?Sized>(&self, resource: &ResourceMatch, facts: &S, item: T) {
        let facts = self.inner.facts(resource, facts);
        self.inner.ingest(facts, item);
    }

    /// Reads what the engine needs from a span, so the span's storage can
    /// then be moved into [`ingest_prepared`](Self::ingest_prepared) (for
    /// storage the facts borrow from, e.g. wire bytes).
    pub fn prepare<S: SpanFacts + ?Sized>(&self, resource: &ResourceMatch, span: &S) -> PreparedSpan {
        self.inner.facts(resource, span)
    }

    /// Buffers `item`, described by `prepared`.
    pub fn ingest_prepared(&self, prepared: PreparedSpan, item: T) {
        self.inner.ingest(prepared, item);
    }

    /// Buffers many spans, each described by its prepared facts, as
    /// [`ingest_prepared`](Self::ingest_prepared) would one by one; spans of
    /// one trace that come together (as they do in an export request) take
    /// the trace's shard lock and map entry once, and the clock and the
    /// counters are read and written once per call.
    pub fn ingest_prepared_batch(&self, items: Vec<(PreparedSpan, T)>) {
        let now = self.inner.clock.now_ms();
        self.inner.ingest_batch(items, now);
    }

    /// [`ingest_prepared_batch`](Self::ingest_prepared_batch) for spans
    /// that arrived `age` ago (a journal read back after a restart): their
    /// traces keep their original deadlines, due at once when past.
    pub fn ingest_prepared_batch_aged(&self, items: Vec<(PreparedSpan, T)>, age: Duration) {
        let arrived = self.inner.clock.now_ms().saturating_sub(age.as_millis() as u64);
        self.inner.ingest_batch(items, arrived);
    }

    /// Remembers a decision made before a restart, so late spans of the
    /// trace follow it (when the decision caches are on).
    pub fn remember(&self, trace_id: [u8; 16], kept: bool) {
        let key = u128::from_be_bytes(trace_id);
        let mut shard = lock(self.inner.shard(key));
        if kept {
            shard.sampled.insert(key);
        } else {
            shard.not_sampled.insert(key);
        }
    }

    /// Decides every trace whose wait is over at the clock's time.
    pub fn decide_due(&self) {
        self.inner.decide_due(self.inner.clock.now_ms());
    }

    /// Decides every buffered trace now (flush).
    pub fn decide_all(&self) {
        self.inner.decide_all(Cause::Flush);
    }

    /// Stops the decision thread, then decides every buffered trace (or drops
    /// them with `drop_pending_traces_on_shutdown`). Later spans are refused
    /// and counted.
    pub fn shutdown(&self) {
        self.stop_timer();
        self.inner.closed.store(true, Relaxed);
        let cause = if self.inner.cfg.drop_pending_traces_on_shutdown {
            Cause::DropPending
        } else {
            Cause::Flush
        };
        self.inner.decide_all(cause);
    }

    fn stop_timer(&self) {
        self.inner.stop.store(true, Relaxed);
        {
            let _q = lock(&self.inner.queues);
            self.inner.wake.notify_all();
        }
        if let Some(handle) = lock(&self.timer).take() {
            let _ = handle.join();
        }
    }

    /// Traces buffered now.
    pub fn buffered_traces(&self) -> usize {
        self.inner.live.load(Relaxed)
    }

    /// The counters.
    pub fn stats(&self) -> TailSamplingStats {
        let s = &self.inner.stats;
        let r = |a: &AtomicU64| a.load(Relaxed);
        TailSamplingStats {
            traces_received: r(&s.traces_received),
            spans_received: r(&s.spans_received),
            traces_sampled: r(&s.traces_sampled),
            traces_not_sampled: r(&s.traces_not_sampled),
            spans_sampled: r(&s.spans_sampled),
            spans_not_sampled: r(&s.spans_not_sampled),
            late_spans_sampled: r(&s.late_spans_sampled),
            late_spans_dropped: r(&s.late_spans_dropped),
            evicted: r(&s.evicted),
            too_large: r(&s.too_large),
            dropped_on_shutdown: r(&s.dropped_on_shutdown),
            spans_after_shutdown: r(&s.spans_after_shutdown),
            buffered_traces: self.inner.live.load(Relaxed) as u64,
            buffered_spans: r(&s.buffered_spans),
            decision_delay_buckets: s.decision_delay.iter().map(r).collect(),
            decision_delay_ms_sum: r(&s.decision_delay_ms_sum),
            evaluation_nanos: r(&s.evaluation_nanos),
            policies: self
                .inner
                .cfg
                .policies
                .iter()
                .zip(&self.inner.policy_stats)
                .map(|(p, c)| PolicyCounts {
                    name: p.name.clone(),
                    sampled: r(&c.sampled),
                    not_sampled: r(&c.not_sampled),
                    dropped: r(&c.dropped),
                    latency_buckets: c.latency.iter().map(r).collect(),
                    latency_nanos: r(&c.latency_nanos),
                })
                .collect(),
        }
    }
}

impl<T: Send + 'static> Drop for TailSampler<T> {
    fn drop(&mut self) {
        self.stop_timer();
    }
}

impl<T: Send + 'static> Inner<T> {
    fn facts<S: SpanFacts + ?Sized>(&self, resource: &ResourceMatch, span: &S) -> PreparedSpan {
        PreparedSpan {
            trace_id: span.trace_id(),
            start: span.start_nanos(),
            end: span.end_nanos(),
            status: span.status(),
            root: span.is_root(),
            bytes: span.encoded_len(),
            bits: resource.bits | self.cfg.conditions.span_bits(span),
        }
    }

    fn shard(&self, key: u128) -> &Mutex<Shard<T>> {
        &self.shards[(mix(key) >> 60) as usize % SHARDS]
    }

    fn ingest_batch(&self, items: Vec<(PreparedSpan, T)>, now: u64) {
        if items.is_empty() {
            return;
        }
        // A trace may be cut off at the size limit span by span; keep that exact.
        if self.cfg.maximum_trace_size_bytes.is_some() {
            for (f, item) in items {
                self.ingest(f, item);
            }
            return;
        }
        let stats = &self.stats;
        let total = items.len() as u64;
        stats.spans_received.fetch_add(total, Relaxed);
        if self.closed.load(Relaxed) {
            stats.spans_after_shutdown.fetch_add(total, Relaxed);
            return;
        }
        // Shared counters and the deadline queue are touched once per
        // request, not once per trace: the receiver's threads ingest at the
        // same time. Counters a decision subtracts from are raised before
        // any trace is buffered (a trace may be decided, by a flush, before
        // this call ends) and lowered after for what was not new.
        let runs = 1 + items.windows(2).filter(|w| w[0].0.trace_id != w[1].0.trace_id).count() as u64;
        stats.buffered_spans.fetch_add(total, Relaxed);
        self.live.fetch_add(runs as usize, Relaxed);
        let mut done = Ingested {
            next_seq: self.seq.fetch_add(runs, Relaxed),
            new_traces: 0,
            late_spans: 0,
            wait: Vec::with_capacity(runs as usize),
            root: Vec::new(),
        };
        let mut items = items.into_iter().peekable();
        let mut run: Vec<(PreparedSpan, T)> = Vec::new();
        while let Some(first) = items.next() {
            let id = first.0.trace_id;
            run.push(first);
            while let Some(next) = items.next_if(|(f, _)| f.trace_id == id) {
                run.push(next);
            }
            self.ingest_run(&mut run, now, &mut done);
        }
        if runs > done.new_traces {
            self.live.fetch_sub((runs - done.new_traces) as usize, Relaxed);
        }
        if done.late_spans > 0 {
            stats.buffered_spans.fetch_sub(done.late_spans, Relaxed);
        }
        if done.new_traces > 0 {
            stats.traces_received.fetch_add(done.new_traces, Relaxed);
        }
        self.schedule(&done.wait, &done.root);
        self.evict_oldest();
    }

    /// Buffers `run`, spans of one trace (emptied), noting in `done` what
    /// the caller settles for the whole request.
    fn ingest_run(&self, run: &mut Vec<(PreparedSpan, T)>, now: u64, done: &mut Ingested) {
        let Some(trace_id) = run.first().map(|(f, _)| f.trace_id) else {
            return;
        };
        let n = run.len() as u64;
        let key = u128::from_be_bytes(trace_id);
        let has_root = run.iter().any(|(f, _)| f.root);
        let mut shard = lock(self.shard(key));
        let shard_ref = &mut *shard;
        match shard_ref.live.entry(key) {
            Entry::Occupied(mut e) => {
                let t = e.get_mut();
                t.spans.reserve(run.len());
                for (f, item) in run.drain(..) {
                    t.summary.add(f.start, f.end, f.status, f.bytes, f.bits);
                    t.spans.push(item);
                }
                let seq = t.seq;
                let first_root = has_root && !t.root_seen;
                t.root_seen |= has_root;
                drop(shard);
                if first_root {
                    done.root.extend(self.root_due(key, seq, now));
                }
            }
            Entry::Vacant(e) => {
                if let Some(kept) = Self::decided(&shard_ref.sampled, &shard_ref.not_sampled, key) {
                    drop(shard);
                    done.late_spans += n;
                    self.late(kept, trace_id, run.drain(..).map(|(_, item)| item).collect());
                    return;
                }
                let seq = done.next_seq;
                done.next_seq += 1;
                let mut summary = Summary::default();
                let mut spans = Vec::with_capacity(run.len());
                for (f, item) in run.drain(..) {
                    summary.add(f.start, f.end, f.status, f.bytes, f.bits);
                    spans.push(item);
                }
                e.insert(Trace {
                    seq,
                    arrived_ms: now,
                    root_seen: has_root,
                    summary,
                    spans,
                });
                drop(shard);
                done.new_traces += 1;
                done.wait.push(self.wait_due(key, seq, now));
                if has_root {
                    done.root.extend(self.root_due(key, seq, now));
                }
            }
        }
    }

    fn ingest(&self, f: PreparedSpan, item: T) {
        let stats = &self.stats;
        stats.spans_received.fetch_add(1, Relaxed);
        if self.closed.load(Relaxed) {
            stats.spans_after_shutdown.fetch_add(1, Relaxed);
            return;
        }
        let key = u128::from_be_bytes(f.trace_id);
        let now = self.clock.now_ms();
        let after_root = self.cfg.decision_wait_after_root_received.map(|d| d.as_millis() as u64);
        let max_bytes = self.cfg.maximum_trace_size_bytes;
        let mut shard = lock(self.shard(key));
        let shard_ref = &mut *shard;
        match shard_ref.live.entry(key) {
            Entry::Occupied(mut e) => {
                let t = e.get_mut();
                t.summary.add(f.start, f.end, f.status, f.bytes, f.bits);
                t.spans.push(item);
                stats.buffered_spans.fetch_add(1, Relaxed);
                let seq = t.seq;
                let schedule_root = f.root && !t.root_seen && after_root.is_some();
                if f.root {
                    t.root_seen = true;
                }
                if max_bytes.is_some_and(|m| t.summary.bytes > m) {
                    let t = e.remove();
                    let kept = self.conclude(shard_ref, key, t, now, Cause::TooLarge);
                    drop(shard);
                    self.emit(kept);
                    return;
                }
                drop(shard);
                if schedule_root {
                    self.schedule_after_root(key, seq, now);
                }
            }
            Entry::Vacant(e) => {
                if let Some(kept) = Self::decided(&shard_ref.sampled, &shard_ref.not_sampled, key) {
                    drop(shard);
                    self.late(kept, f.trace_id, vec![item]);
                    return;
                }
                let seq = self.seq.fetch_add(1, Relaxed);
                let mut summary = Summary::default();
                summary.add(f.start, f.end, f.status, f.bytes, f.bits);
                let too_large = max_bytes.is_some_and(|m| summary.bytes > m);
                let trace = Trace {
                    seq,
                    arrived_ms: now,
                    root_seen: f.root,
                    summary,
                    spans: vec![item],
                };
                stats.traces_received.fetch_add(1, Relaxed);
                stats.buffered_spans.fetch_add(1, Relaxed);
                self.live.fetch_add(1, Relaxed);
                if too_large {
                    let kept = self.conclude(shard_ref, key, trace, now, Cause::TooLarge);
                    drop(shard);
                    self.emit(kept);
                    return;
                }
                e.insert(trace);
                drop(shard);
                self.schedule_new(key, seq, now, f.root);
            }
        }
    }

    /// A new trace's decision, `decision_wait` after `now`.
    fn wait_due(&self, key: u128, seq: u64, now: u64) -> Due {
        let at_ms = now + self.cfg.decision_wait.as_millis() as u64;
        Due { at_ms, key, seq }
    }

    /// The early decision after the root span, when configured.
    fn root_due(&self, key: u128, seq: u64, now: u64) -> Option<Due> {
        let wait = self.cfg.decision_wait_after_root_received?;
        let at_ms = now + wait.as_millis() as u64;
        Some(Due { at_ms, key, seq })
    }

    /// Schedules the early decision after the root span, when configured.
    fn schedule_after_root(&self, key: u128, seq: u64, now: u64) {
        self.schedule(&[], self.root_due(key, seq, now).as_slice());
    }

    /// Schedules a new trace's decisions and keeps the buffer within `num_traces`.
    fn schedule_new(&self, key: u128, seq: u64, now: u64, root: bool) {
        let root_due = if root { self.root_due(key, seq, now) } else { None };
        self.schedule(&[self.wait_due(key, seq, now)], root_due.as_slice());
        self.evict_oldest();
    }

    /// Whether a trace absent from the buffer was decided already: kept
    /// (`Some(true)`), not kept (`Some(false)`), or new (`None`).
    fn decided(sampled: &DecisionCache, not_sampled: &DecisionCache, key: u128) -> Option<bool> {
        if sampled.contains(key) {
            Some(true)
        } else if not_sampled.contains(key) {
            Some(false)
        } else {
            None
        }
    }

    /// Late spans of a decided trace: forwarded when it was kept, dropped
    /// when not (called with the shard's lock released).
    fn late(&self, kept: bool, trace_id: [u8; 16], items: Vec<T>) {
        let n = items.len() as u64;
        if kept {
            self.stats.late_spans_sampled.fetch_add(n, Relaxed);
            self.sink.keep(trace_id, items, KeptBy::Cache);
        } else {
            self.stats.late_spans_dropped.fetch_add(n, Relaxed);
        }
    }

    /// Queues decisions (`wait`: after `decision_wait`, also the eviction
    /// order; `root`: after the root span) under one lock, and wakes the
    /// decision thread when one is due before it would wake.
    fn schedule(&self, wait: &[Due], root: &[Due]) {
        let Some(earliest) = wait.iter().chain(root).map(|d| d.at_ms).min() else {
            return;
        };
        let mut q = lock(&self.queues);
        q.wait.extend(wait);
        q.root.extend(root);
        if earliest < q.sleeping_until {
            self.wake.notify_one();
        }
    }

    /// Decides the oldest buffered traces early until the buffer is within `num_traces`.
    fn evict_oldest(&self) {
        while self.live.load(Relaxed) > self.cfg.num_traces {
            let Some(due) = lock(&self.queues).wait.pop_front() else {
                return;
            };
            self.decide_key(due, Cause::Evicted, self.clock.now_ms());
        }
    }

    /// Decides the trace `due` names, if it is still the same buffered trace.
    fn decide_key(&self, due: Due, cause: Cause, now: u64) -> bool {
        let mut shard = lock(self.shard(due.key));
        let shard_ref = &mut *shard;
        let t = match shard_ref.live.entry(due.key) {
            Entry::Occupied(e) if e.get().seq == due.seq => e.remove(),
            _ => return false,
        };
        let kept = self.conclude(shard_ref, due.key, t, now, cause);
        drop(shard);
        self.emit(kept);
        true
    }

    /// Decides a trace removed from the buffer, under its shard's lock
    /// (so a span racing the decision finds the cached verdict).
    fn conclude(&self, shard: &mut Shard<T>, key: u128, t: Trace<T>, now: u64, cause: Cause) -> Decided<T> {
        let stats = &self.stats;
        self.live.fetch_sub(1, Relaxed);
        let spans = t.spans.len() as u64;
        stats.buffered_spans.fetch_sub(spans, Relaxed);
        let trace_id = key.to_be_bytes();
        let verdict = match cause {
            Cause::TooLarge => {
                stats.too_large.fetch_add(1, Relaxed);
                None
            }
            Cause::DropPending => {
                stats.dropped_on_shutdown.fetch_add(1, Relaxed);
                None
            }
            _ => {
                if cause == Cause::Evicted {
                    stats.evicted.fetch_add(1, Relaxed);
                }
                let delay = now.saturating_sub(t.arrived_ms);
                let bucket = DECISION_DELAY_BUCKETS_MS
                    .iter()
                    .position(|b| delay <= *b)
                    .unwrap_or(DECISION_DELAY_BUCKETS_MS.len());
                stats.decision_delay[bucket].fetch_add(1, Relaxed);
                stats.decision_delay_ms_sum.fetch_add(delay, Relaxed);
                let started = Instant::now();
                let v = self.evaluate(&View {
                    trace_id: &trace_id,
                    summary: &t.summary,
                    now_ms: now,
                });
                stats
                    .evaluation_nanos
                    .fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
                v
            }
        };
        match verdict {
            Some(_) => {
                shard.sampled.insert(key);
                stats.traces_sampled.fetch_add(1, Relaxed);
                stats.spans_sampled.fetch_add(spans, Relaxed);
            }
            None => {
                shard.not_sampled.insert(key);
                stats.traces_not_sampled.fetch_add(1, Relaxed);
                stats.spans_not_sampled.fetch_add(spans, Relaxed);
            }
        }
        Decided {
            trace_id,
            spans: t.spans,
            policy: verdict,
        }
    }

    fn emit(&self, decided: Decided<T>) {
        match decided.policy {
            Some(policy) => {
                let name = self.cfg.policies.get(policy).map_or("", |p| p.name.as_str());
                self.sink.keep(decided.trace_id, decided.spans, KeptBy::Policy(name));
            }
            None if !decided.spans.is_empty() => self.sink.not_kept(decided.trace_id, decided.spans),
            None => {}
        }
    }

    /// The final decision: the index of the policy that kept the trace, or
    /// `None`. A drop vetoes; an inverted not-sampled vetoes; any sampled
    /// keeps; an inverted sampled keeps when no policy said not sampled.
    fn evaluate(&self, v: &View<'_>) -> Option<usize> {
        let mut sampled = None;
        let mut invert_sampled = None;
        let mut not_sampled = false;
        let mut invert_not = false;
        for &i in &self.order {
            let started = Instant::now();
            let d = self.cfg.policies[i].evaluate(v);
            let took = started.elapsed().as_nanos() as u64;
            let c = &self.policy_stats[i];
            let bucket = POLICY_LATENCY_BUCKETS_US
                .iter()
                .position(|b| took <= b * 1000)
                .unwrap_or(POLICY_LATENCY_BUCKETS_US.len());
            c.latency[bucket].fetch_add(1, Relaxed);
            c.latency_nanos.fetch_add(took, Relaxed);
            match d {
                Decision::Dropped => {
                    c.dropped.fetch_add(1, Relaxed);
                    return None;
                }
                Decision::Sampled | Decision::InvertSampled => c.sampled.fetch_add(1, Relaxed),
                Decision::NotSampled | Decision::InvertNotSampled => c.not_sampled.fetch_add(1, Relaxed),
            };
            match d {
                Decision::Sampled => {
                    sampled.get_or_insert(i);
                    if self.cfg.sample_on_first_match {
                        break;
                    }
                }
                Decision::InvertSampled => {
                    invert_sampled.get_or_insert(i);
                }
                Decision::NotSampled => not_sampled = true,
                Decision::InvertNotSampled => invert_not = true,
                Decision::Dropped => {}
            }
        }
        if invert_not {
            None
        } else if sampled.is_some() {
            sampled
        } else if !not_sampled {
            invert_sampled
        } else {
            None
        }
    }

    fn decide_due(&self, now: u64) {
        /// Moves the due entries at the front of `queue` into `batch`, up to `limit`.
        fn pop_due(queue: &mut VecDeque<Due>, now: u64, cause: Cause, batch: &mut Vec<(Due, Cause)>, limit: usize) {
            while batch.len() < limit && queue.front().is_some_and(|d| d.at_ms <= now) {
                if let Some(d) = queue.pop_front() {
                    batch.push((d, cause));
                }
            }
        }
        loop {
            let mut batch: Vec<(Due, Cause)> = Vec::new();
            {
                let mut q = lock(&self.queues);
                pop_due(&mut q.wait, now, Cause::Wait, &mut batch, 1024);
                pop_due(&mut q.root, now, Cause::Root, &mut batch, 2048);
            }
            if batch.is_empty() {
                return;
            }
            for (due, cause) in batch {
                self.decide_key(due, cause, now);
            }
        }
    }

    fn decide_all(&self, cause: Cause) {
        let now = self.clock.now_ms();
        for shard in &self.shards {
            let mut decided = Vec::new();
            {
                let mut g = lock(shard);
                let g = &mut *g;
                let traces: Vec<(u128, Trace<T>)> = g.live.drain().collect();
                for (key, t) in traces {
                    decided.push(self.conclude(g, key, t, now, cause));
                }
            }
            for d in decided {
                self.emit(d);
            }
        }
    }

    fn run_timer(&self) {
        loop {
            let mut q = lock(&self.queues);
            loop {
                if self.stop.load(Relaxed) {
                    return;
                }
                let now = self.clock.now_ms();
                match q.next_due() {
                    Some(at) if at <= now => break,
                    Some(at) => {
                        q.sleeping_until = at;
                        q = self
                            .wake
                            .wait_timeout(q, Duration::from_millis(at - now))
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    None => {
                        q.sleeping_until = u64::MAX;
                        q = self
                            .wake
                            .wait_timeout(q, Duration::from_secs(1))
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                }
            }
            q.sleeping_until = 0;
            drop(q);
            self.decide_due(self.clock.now_ms());
        }
    }
}
