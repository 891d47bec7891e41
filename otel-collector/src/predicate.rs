//! Attribute and tracestate conditions, evaluated once per span at ingest
//! and kept as one bit per condition in the trace's summary, so a decision
//! never walks the spans again.

use crate::config::ConfigError;
use crate::facts::{AttrValue, Attributes, SpanFacts};
use regex::RegexSet;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// The most conditions (attribute and tracestate policies, counted at every
/// nesting level) one configuration may hold.
pub const MAX_CONDITIONS: usize = 128;

/// The conditions a resource satisfies, computed once per resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceMatch {
    pub(crate) bits: u128,
}

/// How a string attribute's value is matched.
pub(crate) enum StrMatch {
    /// Equal to one of the values.
    Exact(Vec<String>),
    /// Matched (anywhere, unanchored, as the Go processor does) by one of the regexes.
    Regex {
        set: RegexSet,
        cache: Option<Mutex<BoundedCache>>,
    },
}

impl fmt::Debug for StrMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrMatch::Exact(v) => f.debug_tuple("Exact").field(v).finish(),
            StrMatch::Regex { set, .. } => f.debug_tuple("Regex").field(&set.patterns()).finish(),
        }
    }
}

/// Remembers regex results for recent values (`cache_max_size`); cleared when full.
#[derive(Debug)]
pub(crate) struct BoundedCache {
    max: usize,
    map: HashMap<String, bool>,
}

impl BoundedCache {
    pub(crate) fn new(max: usize) -> Self {
        BoundedCache {
            max,
            map: HashMap::new(),
        }
    }
}

/// A copy with the same values and patterns and an empty cache.
impl Clone for StrMatch {
    fn clone(&self) -> Self {
        match self {
            StrMatch::Exact(values) => StrMatch::Exact(values.clone()),
            StrMatch::Regex { set, cache } => StrMatch::Regex {
                set: set.clone(),
                cache: cache
                    .as_ref()
                    .map(|c| Mutex::new(BoundedCache::new(crate::lock(c).max))),
            },
        }
    }
}

impl StrMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(values) => values.iter().any(|v| v == value),
            StrMatch::Regex { set, cache: None } => set.is_match(value),
            StrMatch::Regex {
                set,
                cache: Some(cache),
            } => {
                let mut c = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(&hit) = c.map.get(value) {
                    return hit;
                }
                let hit = set.is_match(value);
                if c.map.len() >= c.max {
                    c.map.clear();
                }
                if c.max > 0 {
                    c.map.insert(value.to_owned(), hit);
                }
                hit
            }
        }
    }
}

/// One condition.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    /// A string attribute (resource or span) with a matching value.
    Str { key: String, matcher: StrMatch },
    /// A numeric attribute (resource or span) within `[min, max]`.
    Num { key: String, min: i64, max: i64 },
    /// A boolean attribute (resource or span) equal to `value`.
    Bool { key: String, value: bool },
    /// A span whose tracestate has `key` with one of `values`.
    TraceState { key: String, values: Vec<String> },
}

impl Condition {
    fn attribute_holds(&self, attrs: &(impl Attributes + ?Sized)) -> bool {
        match self {
            Condition::Str { key, matcher } => match attrs.attribute(key) {
                Some(AttrValue::Str(s)) if !s.is_empty() => matcher.matches(s),
                _ => false,
            },
            Condition::Num { key, min, max } => match attrs.attribute(key) {
                Some(AttrValue::Int(i)) => *min <= i && i <= *max,
                Some(AttrValue::Double(f)) => (*min as f64) <= f && f <= (*max as f64),
                _ => false,
            },
            Condition::Bool { key, value } => matches!(attrs.attribute(key), Some(AttrValue::Bool(b)) if b == *value),
            Condition::TraceState { .. } => false,
        }
    }

    fn span_holds(&self, span: &(impl SpanFacts + ?Sized)) -> bool {
        match self {
            Condition::TraceState { key, values } => span
                .trace_state_value(key)
                .is_some_and(|v| values.iter().any(|x| x.as_str() == v.as_ref())),
            other => other.attribute_holds(span),
        }
    }
}

/// All conditions of a configuration, indexed by bit.
#[derive(Debug, Default, Clone)]
pub(crate) struct Conditions {
    list: Vec<Condition>,
}

impl Conditions {
    /// Registers a condition and returns its bit index.
    pub(crate) fn add(&mut self, condition: Condition, path: &str) -> Result<u8, ConfigError> {
        if self.list.len() >= MAX_CONDITIONS {
            return Err(ConfigError::new(
                path,
                format!("more than {MAX_CONDITIONS} attribute and trace_state policies in one tail_sampling block"),
            ));
        }
        self.list.push(condition);
        Ok((self.list.len() - 1) as u8)
    }

    pub(crate) fn resource_bits(&self, resource: &(impl Attributes + ?Sized)) -> ResourceMatch {
        let mut bits = 0u128;
        for (i, c) in self.list.iter().enumerate() {
            if c.attribute_holds(resource) {
                bits |= 1 << i;
            }
        }
        ResourceMatch { bits }
    }

    pub(crate) fn span_bits(&self, span: &(impl SpanFacts + ?Sized)) -> u128 {
        let mut bits = 0u128;
        for (i, c) in self.list.iter().enumerate() {
            if c.span_holds(span) {
                bits |= 1 << i;
            }
        }
        bits
    }
}
