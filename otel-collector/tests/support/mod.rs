//! A small span type for engine tests, and a sink that records what it keeps.
#![allow(dead_code, unreachable_pub)]

use otel_collector::{
    AttrValue, Attributes, KeptBy, ManualClock, SpanFacts, StatusCode, TailSampler, TailSamplerBuilder,
    TailSamplingConfig, TraceSink,
};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    S(String),
    I(i64),
    F(f64),
    B(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TSpan {
    pub trace: [u8; 16],
    pub id: u64,
    pub root: bool,
    pub start_ms: u64,
    pub end_ms: u64,
    pub status: StatusCode,
    pub attrs: Vec<(String, Val)>,
    pub trace_state: Vec<(String, String)>,
    pub size: usize,
}

impl TSpan {
    pub fn new(trace: [u8; 16], id: u64) -> Self {
        TSpan {
            trace,
            id,
            root: false,
            start_ms: 1_000,
            end_ms: 1_010,
            status: StatusCode::Unset,
            attrs: Vec::new(),
            trace_state: Vec::new(),
            size: 100,
        }
    }
    pub fn root(mut self) -> Self {
        self.root = true;
        self
    }
    pub fn at(mut self, start_ms: u64, end_ms: u64) -> Self {
        self.start_ms = start_ms;
        self.end_ms = end_ms;
        self
    }
    pub fn error(mut self) -> Self {
        self.status = StatusCode::Error;
        self
    }
    pub fn ok(mut self) -> Self {
        self.status = StatusCode::Ok;
        self
    }
    pub fn attr(mut self, k: &str, v: Val) -> Self {
        self.attrs.push((k.to_owned(), v));
        self
    }
    pub fn s(self, k: &str, v: &str) -> Self {
        self.attr(k, Val::S(v.to_owned()))
    }
    pub fn state(mut self, k: &str, v: &str) -> Self {
        self.trace_state.push((k.to_owned(), v.to_owned()));
        self
    }
    pub fn sized(mut self, size: usize) -> Self {
        self.size = size;
        self
    }
}

fn lookup<'a>(attrs: &'a [(String, Val)], key: &str) -> Option<AttrValue<'a>> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| match v {
        Val::S(s) => AttrValue::Str(s),
        Val::I(i) => AttrValue::Int(*i),
        Val::F(f) => AttrValue::Double(*f),
        Val::B(b) => AttrValue::Bool(*b),
    })
}

impl Attributes for TSpan {
    fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
        lookup(&self.attrs, key)
    }
}

impl SpanFacts for TSpan {
    fn trace_id(&self) -> [u8; 16] {
        self.trace
    }
    fn is_root(&self) -> bool {
        self.root
    }
    fn start_nanos(&self) -> u64 {
        self.start_ms * 1_000_000
    }
    fn end_nanos(&self) -> u64 {
        self.end_ms * 1_000_000
    }
    fn status(&self) -> StatusCode {
        self.status
    }
    fn trace_state_value(&self, key: &str) -> Option<Cow<'_, str>> {
        self.trace_state
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| Cow::Borrowed(v.as_str()))
    }
    fn encoded_len(&self) -> usize {
        self.size
    }
}

/// A resource for tests.
#[derive(Debug, Default)]
pub struct TResource(pub Vec<(String, Val)>);

impl Attributes for TResource {
    fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
        lookup(&self.0, key)
    }
}

/// One `keep` call: trace id, spans, and who kept them.
pub type KeepCall = ([u8; 16], Vec<TSpan>, String);

#[derive(Debug, Default)]
pub struct Collect {
    pub kept: Mutex<Vec<KeepCall>>,
    /// Traces decided not to keep: (trace id, span count).
    pub not_kept: Mutex<Vec<([u8; 16], usize)>>,
}

impl TraceSink<TSpan> for Collect {
    fn keep(&self, trace_id: [u8; 16], spans: Vec<TSpan>, kept_by: KeptBy<'_>) {
        let by = match kept_by {
            KeptBy::Policy(p) => p.to_owned(),
            KeptBy::Cache => "(cache)".to_owned(),
        };
        self.kept.lock().unwrap().push((trace_id, spans, by));
    }

    fn not_kept(&self, trace_id: [u8; 16], spans: Vec<TSpan>) {
        self.not_kept.lock().unwrap().push((trace_id, spans.len()));
    }
}

impl Collect {
    pub fn calls(&self) -> usize {
        self.kept.lock().unwrap().len()
    }
    pub fn kept_ids(&self) -> Vec<[u8; 16]> {
        self.kept.lock().unwrap().iter().map(|k| k.0).collect()
    }
    pub fn has(&self, id: [u8; 16]) -> bool {
        self.kept.lock().unwrap().iter().any(|k| k.0 == id)
    }
    pub fn spans_of(&self, id: [u8; 16]) -> usize {
        self.kept
            .lock()
            .unwrap()
            .iter()
            .filter(|k| k.0 == id)
            .map(|k| k.1.len())
            .sum()
    }
    pub fn total_spans(&self) -> usize {
        self.kept.lock().unwrap().iter().map(|k| k.1.len()).sum()
    }
    pub fn by(&self, id: [u8; 16]) -> Vec<String> {
        self.kept
            .lock()
            .unwrap()
            .iter()
            .filter(|k| k.0 == id)
            .map(|k| k.2.clone())
            .collect()
    }
}

pub struct Rig {
    pub engine: TailSampler<TSpan>,
    pub sink: Arc<Collect>,
    pub clock: Arc<ManualClock>,
    pub none: otel_collector::ResourceMatch,
}

impl Rig {
    pub fn new(yaml: &str) -> Rig {
        let config = TailSamplingConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("config: {e}"));
        let sink = Arc::new(Collect::default());
        let clock = Arc::new(ManualClock::new(1_000_000));
        let s: Arc<dyn TraceSink<TSpan>> = sink.clone();
        let engine = TailSamplerBuilder::new(config)
            .clock(clock.clone())
            .without_timer()
            .build(s);
        let none = engine.resource_match(&TResource::default());
        Rig {
            engine,
            sink,
            clock,
            none,
        }
    }
    pub fn ingest(&self, span: TSpan) {
        self.engine.ingest(&self.none, span);
    }
    /// Moves the clock and decides what is due.
    pub fn advance_ms(&self, ms: u64) {
        self.clock.advance(std::time::Duration::from_millis(ms));
        self.engine.decide_due();
    }
}

/// A well-spread trace id for `n`.
pub fn tid(n: u64) -> [u8; 16] {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut out = [0u8; 16];
    for half in out.chunks_mut(8) {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        half.copy_from_slice(&z.to_be_bytes());
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    out
}
