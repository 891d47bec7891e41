//! Where a trace's time went: its critical path, each span's self time, the
//! culprit (the service and operation with the largest share of the critical
//! path, and the error if there was one), a trace tree that shows them, and a
//! bounded bottleneck summary over many traces.
//!
//! The renderer of `otel-core`'s `testing` module, the demo and the
//! collector's `debug` exporter all use this module, so they agree.
//!
//! # The critical path
//!
//! The chain of work that determined the trace's end-to-end latency, found by
//! walking back from the end of the root: the last child to finish before the
//! current point is on the path (and, recursively, its own last-finishing
//! children); the parent's time after that child and before the point is the
//! parent's own. Then the point moves to the child's start and the walk goes
//! on. So:
//!
//! - of children running in parallel, only the one that finished last counts
//!   (the others were waited for in parallel);
//! - a client span's time not covered by its server child (network, queueing,
//!   a slow peer's accept) is the client span's own time on the path;
//! - a child that outlives its parent is counted only up to the parent's end
//!   (after it, the parent was not waiting), and a child starting before its
//!   parent (clock skew between services) only from the parent's start;
//! - spans whose parent is missing from the trace are roots of their own
//!   subtree; the trace's path is the one of the root that ended last.
//!
//! ```
//! use otel_export::analysis::{SpanNode, analyze};
//!
//! let ms = |n: u64| n * 1_000_000;
//! let spans = [
//!     SpanNode::new(1, 0, "gateway", "GET /api/products/{id}", ms(0), ms(606)),
//!     SpanNode::new(2, 1, "gateway", "verify", ms(1), ms(4)),
//!     SpanNode::new(3, 1, "product", "GET /products/{id}", ms(5), ms(605)),
//!     SpanNode::new(4, 3, "product", "SELECT shop.products", ms(6), ms(604)),
//! ];
//! let analysis = analyze(&spans);
//! assert_eq!(
//!     analysis.culprit_line(),
//!     "product: SELECT shop.products 99% of 606ms on the critical path"
//! );
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

/// What the analysis needs of a span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanNode<'a> {
    /// The span id.
    pub id: u64,
    /// The parent's span id (0 for none).
    pub parent: u64,
    /// `service.name` of the span's resource.
    pub service: Cow<'a, str>,
    /// The operation (span name).
    pub name: Cow<'a, str>,
    /// Start, nanoseconds since the Unix epoch.
    pub start: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end: u64,
    /// The error description, when the span's status is an error.
    pub error: Option<Cow<'a, str>>,
}

impl<'a> SpanNode<'a> {
    /// A span without an error.
    pub fn new(
        id: u64,
        parent: u64,
        service: impl Into<Cow<'a, str>>,
        name: impl Into<Cow<'a, str>>,
        start: u64,
        end: u64,
    ) -> Self {
        SpanNode {
            id,
            parent,
            service: service.into(),
            name: name.into(),
            start,
            end: end.max(start),
            error: None,
        }
    }

    /// The same span, failed with `description`.
    pub fn failed(mut self, description: impl Into<Cow<'a, str>>) -> Self {
        self.error = Some(description.into());
        self
    }

    /// Built from an SDK span (the service name is not in `SpanData`).
    pub fn from_span_data(span: &'a opentelemetry_sdk::trace::SpanData, service: &'a str) -> Self {
        let nanos = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };
        let mut node = SpanNode::new(
            u64::from_be_bytes(span.span_context.span_id().to_bytes()),
            u64::from_be_bytes(span.parent_span_id.to_bytes()),
            service,
            span.name.as_ref(),
            nanos(span.start_time),
            nanos(span.end_time),
        );
        if let opentelemetry::trace::Status::Error { description } = &span.status {
            node.error = Some(Cow::Borrowed(description.as_ref()));
        }
        node
    }

    fn duration(&self) -> u64 {
        self.end - self.start
    }
}

/// One stretch of the critical path: a span's own time between two points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index of the span in the analysed slice.
    pub span: usize,
    /// Start of the stretch (ns since the epoch).
    pub start: u64,
    /// End of the stretch.
    pub end: u64,
}

/// The service and operation with the largest share of the critical path.
#[derive(Debug, Clone, PartialEq)]
pub struct Culprit {
    /// Its service.
    pub service: String,
    /// Its operation.
    pub operation: String,
    /// Its time on the critical path, ns.
    pub on_path: u64,
}

/// Where the error of a failed trace began: a failed span none of whose
/// children failed (the deepest, the earliest of several).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorOrigin {
    /// Its service.
    pub service: String,
    /// Its operation.
    pub operation: String,
    /// The error description.
    pub description: String,
}

/// The analysis of one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceAnalysis {
    /// End-to-end latency: from the earliest root's start to the end of the
    /// root that ended last, ns.
    pub total: u64,
    /// The critical path, latest stretch first.
    pub path: Vec<Segment>,
    /// Each span's self time (its duration less the union of its children's
    /// intervals within it), by index.
    pub self_time: Vec<u64>,
    /// Each span's time on the critical path, by index.
    pub on_path: Vec<u64>,
    /// The culprit, if the trace has any span.
    pub culprit: Option<Culprit>,
    /// Where the error began, if a span failed.
    pub error: Option<ErrorOrigin>,
}

impl TraceAnalysis {
    /// Whether span `i` has time on the critical path.
    pub fn is_on_path(&self, i: usize) -> bool {
        self.on_path.get(i).is_some_and(|&t| t > 0)
    }

    /// One line naming the culprit: "product: SELECT shop.products 92% of
    /// 606ms on the critical path", and "; error in auth: check_token: token
    /// expired" when a span failed.
    pub fn culprit_line(&self) -> String {
        let mut line = match &self.culprit {
            Some(c) => format!(
                "{}{} {}% of {} on the critical path",
                service_prefix(&c.service),
                c.operation,
                percent(c.on_path, self.total),
                format_duration(Duration::from_nanos(self.total))
            ),
            None => "no spans".to_owned(),
        };
        if let Some(e) = &self.error {
            let _ = write!(line, "; error in {}{}", service_prefix(&e.service), e.operation);
            if !e.description.is_empty() {
                let _ = write!(line, ": {}", e.description);
            }
        }
        line
    }
}

/// `service: `, or nothing when the service is not known.
fn service_prefix(service: &str) -> String {
    if service.is_empty() {
        String::new()
    } else {
        format!("{service}: ")
    }
}

fn percent(part: u64, total: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    ((u128::from(part) * 100 + u128::from(total) / 2) / u128::from(total)) as u64
}

/// The children of each span (by index), roots, and clamped intervals.
struct Tree {
    children: Vec<Vec<usize>>,
    roots: Vec<usize>,
    /// Each span's interval, clamped into its parent's (recursively).
    clamped: Vec<(u64, u64)>,
}

fn tree(spans: &[SpanNode<'_>]) -> Tree {
    let index: HashMap<u64, usize> = spans.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let mut children = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match index.get(&s.parent) {
            Some(&p) if p != i && s.parent != 0 => children[p].push(i),
            _ => roots.push(i),
        }
    }
    // A cycle (ids reused wrongly) leaves spans unreachable from any root:
    // the first of each such group is detached from its parent and made a
    // root, so what follows is a forest.
    let parent_of: Vec<Option<usize>> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| index.get(&s.parent).copied().filter(|&p| p != i && s.parent != 0))
        .collect();
    let mut clamped: Vec<(u64, u64)> = spans.iter().map(|s| (s.start, s.end)).collect();
    let mut seen = vec![false; spans.len()];
    let mut stack: Vec<usize> = roots.clone();
    let visit =
        |children: &Vec<Vec<usize>>, stack: &mut Vec<usize>, seen: &mut Vec<bool>, clamped: &mut Vec<(u64, u64)>| {
            while let Some(i) = stack.pop() {
                if seen[i] {
                    continue;
                }
                seen[i] = true;
                let (ps, pe) = clamped[i];
                for &c in &children[i] {
                    let (cs, ce) = (spans[c].start, spans[c].end);
                    let s = cs.clamp(ps, pe);
                    let e = ce.clamp(s, pe);
                    clamped[c] = (s, e);
                    stack.push(c);
                }
            }
        };
    visit(&children, &mut stack, &mut seen, &mut clamped);
    for i in 0..spans.len() {
        if !seen[i] {
            if let Some(p) = parent_of[i] {
                children[p].retain(|&c| c != i);
            }
            roots.push(i);
            stack.push(i);
            visit(&children, &mut stack, &mut seen, &mut clamped);
        }
    }
    Tree {
        children,
        roots,
        clamped,
    }
}

/// Analyses the spans of one trace.
pub fn analyze(spans: &[SpanNode<'_>]) -> TraceAnalysis {
    let t = tree(spans);
    let n = spans.len();
    let mut self_time = vec![0u64; n];
    for i in 0..n {
        // On the span's own interval (an async child that outlived its parent
        // still did its own work), children clamped into it.
        let (s, e) = (spans[i].start, spans[i].end);
        let mut intervals: Vec<(u64, u64)> = t.children[i]
            .iter()
            .map(|&c| {
                let cs = spans[c].start.clamp(s, e);
                (cs, spans[c].end.clamp(cs, e))
            })
            .collect();
        intervals.sort_unstable();
        let mut covered = 0;
        let mut cursor = s;
        for (cs, ce) in intervals {
            let cs = cs.max(cursor);
            if ce > cs {
                covered += ce - cs;
                cursor = ce;
            }
        }
        self_time[i] = (e - s).saturating_sub(covered);
    }

    let mut path = Vec::new();
    let root = t
        .roots
        .iter()
        .copied()
        .max_by_key(|&r| (t.clamped[r].1, std::cmp::Reverse(t.clamped[r].0)));
    if let Some(root) = root {
        walk(root, t.clamped[root].1, &t, &mut path);
    }
    let mut on_path = vec![0u64; n];
    for seg in &path {
        on_path[seg.span] += seg.end - seg.start;
    }
    // From the earliest root's start (children are clamped into their
    // parents, so a skewed child does not stretch it) to the path root's end.
    let total = match root {
        Some(r) => {
            let earliest = t.roots.iter().map(|&x| t.clamped[x].0).min().unwrap_or(0);
            t.clamped[r].1.saturating_sub(earliest)
        }
        None => 0,
    };

    // The culprit: the (service, operation) with the most time on the path.
    let mut by_op: Vec<((&str, &str), u64)> = Vec::new();
    for (i, &time) in on_path.iter().enumerate() {
        if time == 0 {
            continue;
        }
        let key = (spans[i].service.as_ref(), spans[i].name.as_ref());
        match by_op.iter_mut().find(|(k, _)| *k == key) {
            Some((_, t)) => *t += time,
            None => by_op.push((key, time)),
        }
    }
    let culprit = by_op
        .iter()
        .max_by_key(|(_, t)| *t)
        .map(|((service, operation), t)| Culprit {
            service: (*service).to_owned(),
            operation: (*operation).to_owned(),
            on_path: *t,
        });

    let failed = |i: usize| spans[i].error.is_some();
    let error = (0..n)
        .filter(|&i| failed(i) && !t.children[i].iter().any(|&c| failed(c)))
        .max_by_key(|&i| (depth(i, spans, &t), std::cmp::Reverse(spans[i].start)))
        .map(|i| ErrorOrigin {
            service: spans[i].service.to_string(),
            operation: spans[i].name.to_string(),
            description: spans[i].error.as_deref().unwrap_or_default().to_owned(),
        });

    TraceAnalysis {
        total,
        path,
        self_time,
        on_path,
        culprit,
        error,
    }
}

fn depth(i: usize, spans: &[SpanNode<'_>], t: &Tree) -> usize {
    let index: HashMap<u64, usize> = spans.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let mut d = 0;
    let mut at = i;
    let mut seen = HashSet::new();
    while let Some(&p) = index.get(&spans[at].parent) {
        if !seen.insert(p) || t.roots.contains(&at) {
            break;
        }
        d += 1;
        at = p;
    }
    d
}

/// The critical path of span `i` up to `until`, latest stretch first.
fn walk(i: usize, until: u64, t: &Tree, path: &mut Vec<Segment>) {
    // Iterative over the chain of last-finishing children, with an explicit
    // stack for the recursion into each (deep traces do not overflow).
    let mut stack = vec![(i, until)];
    while let Some((span, until)) = stack.pop() {
        let (start, _) = t.clamped[span];
        let mut cursor = until;
        let mut kids: Vec<usize> = t.children[span].clone();
        // Latest end first; among equal ends, the later start (shorter) first.
        kids.sort_unstable_by_key(|&c| std::cmp::Reverse((t.clamped[c].1, t.clamped[c].0)));
        let mut pending = Vec::new();
        for c in kids {
            let (cs, ce) = t.clamped[c];
            // Ended after the point: it ran in parallel with one already on
            // the path, which finished later.
            if ce > cursor {
                continue;
            }
            if cursor > ce {
                path.push(Segment {
                    span,
                    start: ce,
                    end: cursor,
                });
            }
            pending.push((c, ce));
            cursor = cs;
            if cursor <= start {
                break;
            }
        }
        if cursor > start {
            path.push(Segment {
                span,
                start,
                end: cursor,
            });
        }
        // Children in the order their stretches come (latest first).
        for p in pending.into_iter().rev() {
            stack.push(p);
        }
    }
}

/// A duration as trees show it: `150ms`, `2.5ms`, `850µs`, `1.25s`.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us >= 1_000_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else if us >= 10_000 {
        format!("{}ms", (us + 500) / 1000)
    } else if us >= 1_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

/// Renders a trace as an indented tree, children by start time; each line
/// has the span's duration and self time, `*` marks spans on the critical
/// path, and a last line names the culprit. `label` writes each span's label.
///
/// ```text
/// [gateway] GET /api/products/{id}  606ms (self 4.0ms) *
/// ├── [gateway] verify  3.0ms (self 3.0ms) *
/// └── [product] GET /products/{id}  599ms (self 3.0ms) *
///     └── [product] SELECT shop.products  596ms (self 596ms) *
/// culprit: product: SELECT shop.products 98% of 606ms on the critical path
/// ```
pub fn render_tree(spans: &[SpanNode<'_>], label: impl Fn(usize) -> String) -> String {
    render_tree_with(spans, label, |_| Vec::new())
}

/// [`render_tree`] with lines of detail under each span (attributes, say),
/// indented below its line.
pub fn render_tree_with(
    spans: &[SpanNode<'_>],
    label: impl Fn(usize) -> String,
    details: impl Fn(usize) -> Vec<String>,
) -> String {
    let analysis = analyze(spans);
    let t = tree(spans);
    let mut out = String::new();
    let mut roots = t.roots.clone();
    roots.sort_by_key(|&r| spans[r].start);
    // Depth-first with an explicit stack: (span, prefix, connector).
    let mut stack: Vec<(usize, String, &'static str)> =
        roots.into_iter().rev().map(|r| (r, String::new(), "")).collect();
    while let Some((i, prefix, connector)) = stack.pop() {
        let _ = writeln!(
            out,
            "{prefix}{connector}{}  {} (self {}){}",
            label(i),
            format_duration(Duration::from_nanos(spans[i].duration())),
            format_duration(Duration::from_nanos(analysis.self_time[i])),
            if analysis.is_on_path(i) { " *" } else { "" }
        );
        let deeper = format!(
            "{prefix}{}",
            match connector {
                "├── " => "│   ",
                "└── " => "    ",
                _ => "",
            }
        );
        for line in details(i) {
            let _ = writeln!(out, "{deeper}  · {line}");
        }
        let mut kids = t.children[i].clone();
        kids.sort_by_key(|&c| spans[c].start);
        let last = kids.len().saturating_sub(1);
        for (k, c) in kids.into_iter().enumerate().rev() {
            stack.push((c, deeper.clone(), if k == last { "└── " } else { "├── " }));
        }
    }
    let _ = writeln!(out, "culprit: {}", analysis.culprit_line());
    out
}

/// Aggregates per (service, operation) over many traces, in bounded memory:
/// span count, error count, duration percentiles (log-scale histogram, 2%
/// resolution) and time on the critical path.
#[derive(Debug, Clone)]
pub struct Bottlenecks {
    rows: HashMap<(String, String), Row>,
    max_rows: usize,
    overflow: u64,
    traces: u64,
    path_total: u64,
}

/// One (service, operation) of a [`Bottlenecks`] summary.
#[derive(Debug, Clone, PartialEq)]
pub struct BottleneckRow {
    /// The service.
    pub service: String,
    /// The operation.
    pub operation: String,
    /// Spans seen.
    pub count: u64,
    /// Of which failed.
    pub errors: u64,
    /// Median duration, ns.
    pub p50: u64,
    /// 99th percentile duration, ns.
    pub p99: u64,
    /// Time on critical paths, ns.
    pub on_path: u64,
    /// Its share of all critical-path time, 0 to 1.
    pub path_share: f64,
}

#[derive(Debug, Clone, Default)]
struct Row {
    count: u64,
    errors: u64,
    on_path: u64,
    /// Bucket index -> count; buckets grow by 2% from 1 µs.
    histogram: HashMap<u16, u64>,
}

const BUCKET_GROWTH: f64 = 1.02;

fn bucket(ns: u64) -> u16 {
    let us = (ns as f64 / 1000.0).max(1.0);
    (us.ln() / BUCKET_GROWTH.ln()).floor().min(f64::from(u16::MAX)) as u16
}

fn bucket_value(b: u16) -> u64 {
    // The bucket's midpoint, back in ns.
    (BUCKET_GROWTH.powf(f64::from(b) + 0.5) * 1000.0) as u64
}

impl Default for Bottlenecks {
    fn default() -> Self {
        Bottlenecks::new(1000)
    }
}

impl Bottlenecks {
    /// A summary keeping at most `max_rows` (service, operation) pairs; spans
    /// of further pairs are counted in [`overflow`](Self::overflow).
    pub fn new(max_rows: usize) -> Self {
        Bottlenecks {
            rows: HashMap::new(),
            max_rows,
            overflow: 0,
            traces: 0,
            path_total: 0,
        }
    }

    /// Adds one trace.
    pub fn record(&mut self, spans: &[SpanNode<'_>]) {
        let analysis = analyze(spans);
        self.record_analyzed(spans, &analysis);
    }

    /// Adds one trace already analysed.
    pub fn record_analyzed(&mut self, spans: &[SpanNode<'_>], analysis: &TraceAnalysis) {
        self.traces += 1;
        for (i, s) in spans.iter().enumerate() {
            let key = (s.service.to_string(), s.name.to_string());
            if !self.rows.contains_key(&key) && self.rows.len() >= self.max_rows {
                self.overflow += 1;
                continue;
            }
            let row = self.rows.entry(key).or_default();
            row.count += 1;
            row.errors += u64::from(s.error.is_some());
            let on_path = analysis.on_path.get(i).copied().unwrap_or(0);
            row.on_path += on_path;
            self.path_total += on_path;
            *row.histogram.entry(bucket(s.duration())).or_default() += 1;
        }
    }

    /// Traces recorded.
    pub fn traces(&self) -> u64 {
        self.traces
    }

    /// Spans not summarised because the row bound was reached.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// The rows, largest share of critical-path time first.
    pub fn rows(&self) -> Vec<BottleneckRow> {
        let mut rows: Vec<BottleneckRow> = self
            .rows
            .iter()
            .map(|((service, operation), r)| {
                let mut buckets: Vec<(u16, u64)> = r.histogram.iter().map(|(b, n)| (*b, *n)).collect();
                buckets.sort_unstable();
                let quantile = |q: f64| {
                    let rank = ((r.count as f64) * q).ceil().max(1.0) as u64;
                    let mut seen = 0;
                    for (b, n) in &buckets {
                        seen += n;
                        if seen >= rank {
                            return bucket_value(*b);
                        }
                    }
                    0
                };
                BottleneckRow {
                    service: service.clone(),
                    operation: operation.clone(),
                    count: r.count,
                    errors: r.errors,
                    p50: quantile(0.5),
                    p99: quantile(0.99),
                    on_path: r.on_path,
                    path_share: if self.path_total == 0 {
                        0.0
                    } else {
                        r.on_path as f64 / self.path_total as f64
                    },
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.on_path
                .cmp(&a.on_path)
                .then_with(|| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)))
        });
        rows
    }

    /// The summary as a text table (the first `limit` rows).
    pub fn render_text(&self, limit: usize) -> String {
        let mut out = format!(
            "{:<14} {:<32} {:>7} {:>7} {:>9} {:>9} {:>10}\n",
            "service", "operation", "spans", "errors", "p50", "p99", "path share"
        );
        for r in self.rows().into_iter().take(limit) {
            let _ = writeln!(
                out,
                "{:<14} {:<32} {:>7} {:>6.1}% {:>9} {:>9} {:>9.1}%",
                truncate(&r.service, 14),
                truncate(&r.operation, 32),
                r.count,
                100.0 * r.errors as f64 / r.count.max(1) as f64,
                format_duration(Duration::from_nanos(r.p50)),
                format_duration(Duration::from_nanos(r.p99)),
                100.0 * r.path_share
            );
        }
        out
    }

    /// The summary as JSON: `{"traces": N, "overflow": N, "rows": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows()
            .into_iter()
            .map(|r| {
                serde_json::json!({
                    "service": r.service,
                    "operation": r.operation,
                    "count": r.count,
                    "errors": r.errors,
                    "error_rate": r.errors as f64 / r.count.max(1) as f64,
                    "p50_ns": r.p50,
                    "p99_ns": r.p99,
                    "critical_path_ns": r.on_path,
                    "critical_path_share": r.path_share,
                })
            })
            .collect();
        serde_json::json!({"traces": self.traces, "overflow": self.overflow, "rows": rows})
    }
}

fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().take(max - 1).chain(['…']).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn node(
        id: u64,
        parent: u64,
        service: &'static str,
        name: &'static str,
        start: u64,
        end: u64,
    ) -> SpanNode<'static> {
        SpanNode::new(id, parent, service, name, start * MS, end * MS)
    }

    fn path_ms(spans: &[SpanNode<'_>], a: &TraceAnalysis) -> Vec<(String, u64)> {
        (0..spans.len())
            .filter(|&i| a.on_path[i] > 0)
            .map(|i| (spans[i].name.to_string(), a.on_path[i] / MS))
            .collect()
    }

    #[test]
    fn sequential_children_are_all_on_the_path() {
        let spans = [
            node(1, 0, "svc", "root", 0, 100),
            node(2, 1, "svc", "a", 10, 30),
            node(3, 1, "svc", "b", 30, 90),
        ];
        let a = analyze(&spans);
        assert_eq!(
            path_ms(&spans, &a),
            [("root".into(), 20), ("a".into(), 20), ("b".into(), 60)]
        );
        assert_eq!(a.self_time.iter().map(|t| t / MS).collect::<Vec<_>>(), [20, 20, 60]);
        assert_eq!(a.total, 100 * MS);
        assert_eq!(a.culprit_line(), "svc: b 60% of 100ms on the critical path");
    }

    #[test]
    fn of_parallel_children_the_last_to_finish_counts() {
        let spans = [
            node(1, 0, "svc", "root", 0, 100),
            node(2, 1, "svc", "fast", 10, 40),
            node(3, 1, "svc", "slow", 10, 95),
        ];
        let a = analyze(&spans);
        assert_eq!(path_ms(&spans, &a), [("root".into(), 15), ("slow".into(), 85)]);
        assert!(!a.is_on_path(1));
        // Self time of the parent: what no child covers.
        assert_eq!(a.self_time[0] / MS, 15);
    }

    #[test]
    fn a_client_span_with_a_short_server_child_has_the_network_time() {
        let spans = [
            node(1, 0, "gateway", "GET /x", 0, 100),
            node(2, 1, "gateway", "GET", 5, 95),
            node(3, 2, "product", "GET /products", 80, 90),
        ];
        let a = analyze(&spans);
        assert_eq!(
            path_ms(&spans, &a),
            [("GET /x".into(), 10), ("GET".into(), 80), ("GET /products".into(), 10)]
        );
        assert_eq!(a.culprit_line(), "gateway: GET 80% of 100ms on the critical path");
    }

    #[test]
    fn async_children_outliving_the_parent_count_up_to_its_end() {
        let spans = [
            node(1, 0, "svc", "handler", 0, 50),
            node(2, 1, "svc", "background", 40, 500),
        ];
        let a = analyze(&spans);
        assert_eq!(a.total, 50 * MS);
        assert_eq!(path_ms(&spans, &a), [("handler".into(), 40), ("background".into(), 10)]);
    }

    #[test]
    fn clock_skew_a_child_starting_before_its_parent() {
        let spans = [
            node(1, 0, "gateway", "call", 100, 200),
            node(2, 1, "remote", "serve", 90, 190),
        ];
        let a = analyze(&spans);
        assert_eq!(path_ms(&spans, &a), [("call".into(), 10), ("serve".into(), 90)]);
        assert_eq!(a.total, 100 * MS);
    }

    #[test]
    fn spans_missing_from_the_trace_leave_orphans_as_roots() {
        let spans = [
            node(1, 0, "gateway", "GET", 0, 100),
            // Its parent (id 9) was not kept.
            node(2, 9, "product", "SELECT", 20, 150),
        ];
        let a = analyze(&spans);
        // The path follows the root that ended last.
        assert_eq!(path_ms(&spans, &a), [("SELECT".into(), 130)]);
        assert_eq!(a.total, 150 * MS);
    }

    #[test]
    fn the_error_origin_is_the_deepest_failed_span() {
        let spans = [
            node(1, 0, "gateway", "GET /api/products/{id}", 0, 10).failed("HTTP 502"),
            node(2, 1, "gateway", "GET", 1, 9).failed("HTTP 500"),
            node(3, 2, "product", "SELECT shop.products", 2, 3).failed("no such table: archived_products"),
            node(4, 1, "auth", "check_token", 0, 1),
        ];
        let line = analyze(&spans).culprit_line();
        assert!(
            line.ends_with("; error in product: SELECT shop.products: no such table: archived_products"),
            "{line}"
        );
    }

    #[test]
    fn empty_and_degenerate_traces_do_not_panic() {
        assert_eq!(analyze(&[]).culprit_line(), "no spans");
        let zero = [node(1, 0, "s", "instant", 5, 5)];
        assert_eq!(analyze(&zero).total, 0);
        // A cycle of parents: each still rendered once.
        let cycle = [node(1, 2, "s", "a", 0, 10), node(2, 1, "s", "b", 0, 5)];
        let tree = render_tree(&cycle, |i| cycle[i].name.to_string());
        assert_eq!(tree.lines().count(), 3, "{tree}");
    }

    #[test]
    fn the_tree_marks_the_path_and_ends_with_the_culprit() {
        let spans = [
            node(1, 0, "gateway", "GET /api/products/{id}", 0, 606),
            node(2, 1, "gateway", "verify", 1, 4),
            node(3, 1, "product", "GET /products/{id}", 5, 604),
            node(4, 3, "product", "SELECT shop.products", 6, 602),
        ];
        let tree = render_tree(&spans, |i| format!("[{}] {}", spans[i].service, spans[i].name));
        assert_eq!(
            tree,
            "\
[gateway] GET /api/products/{id}  606ms (self 4.0ms) *
├── [gateway] verify  3.0ms (self 3.0ms) *
└── [product] GET /products/{id}  599ms (self 3.0ms) *
    └── [product] SELECT shop.products  596ms (self 596ms) *
culprit: product: SELECT shop.products 98% of 606ms on the critical path
"
        );
    }

    #[test]
    fn bottlenecks_summarise_in_bounded_memory() {
        let mut b = Bottlenecks::new(3);
        for i in 0..100u64 {
            let slow = if i % 10 == 0 { 500 } else { 10 };
            let spans = [
                node(1, 0, "gateway", "GET", 0, slow + 2),
                node(2, 1, "product", "SELECT", 1, slow + 1),
                SpanNode::new(3, 1, "x", format!("op-{i}"), MS, 2 * MS),
            ];
            b.record(&spans);
        }
        let rows = b.rows();
        assert_eq!(rows.len(), 3, "bounded");
        assert_eq!(b.overflow(), 99);
        let select = rows.iter().find(|r| r.operation == "SELECT").unwrap();
        assert_eq!(select.count, 100);
        let p50 = select.p50 as f64 / MS as f64;
        let p99 = select.p99 as f64 / MS as f64;
        assert!((9.5..10.5).contains(&p50), "{p50}");
        assert!((490.0..510.0).contains(&p99), "{p99}");
        assert_eq!(rows[0].operation, "SELECT", "the most critical-path time first");
        let json = b.to_json();
        assert_eq!(json["traces"], 100);
        assert!(b.render_text(10).contains("SELECT"));
    }

    use proptest::prelude::*;

    fn arbitrary_trace() -> impl Strategy<Value = Vec<SpanNode<'static>>> {
        proptest::collection::vec((0u64..12, 0u64..1000, 0u64..1000, any::<bool>()), 0..12).prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (parent, a, b, failed))| {
                    let node = SpanNode::new(i as u64 + 1, parent, "s", format!("op{i}"), a.min(b), a.max(b));
                    if failed { node.failed("x") } else { node }
                })
                .collect()
        })
    }

    proptest! {
        /// Any spans, parents missing, cyclic or skewed: no panic, every span
        /// rendered once, and the path covers the chosen root exactly.
        #[test]
        fn any_trace_is_analysed(spans in arbitrary_trace()) {
            let a = analyze(&spans);
            let tree = render_tree(&spans, |i| spans[i].name.to_string());
            prop_assert_eq!(tree.lines().count(), spans.len() + 1);
            for (i, s) in spans.iter().enumerate() {
                prop_assert!(a.self_time[i] <= s.end - s.start);
                prop_assert!(a.on_path[i] <= s.end - s.start);
            }
            let on_path: u64 = a.on_path.iter().sum();
            prop_assert!(on_path <= a.total);
            let covered: u64 = a.path.iter().map(|seg| seg.end - seg.start).sum();
            prop_assert_eq!(covered, on_path);
        }
    }
}
