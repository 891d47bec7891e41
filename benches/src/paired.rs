//! Interleaved (paired) measurement of two routines inside a criterion bench.
//!
//! Criterion measures one benchmark after another, so when the host's speed
//! drifts between two benchmarks (a noisy neighbour, frequency changes), the
//! ratio of their medians drifts with it. A paired benchmark runs both routines
//! in the same criterion sample, in alternating chunks of a few dozen
//! iterations, and records each chunk's `a / b` time ratio. Both halves of a
//! chunk see the same host, so the median of those ratios moves far less than
//! the ratio of two separate medians. Criterion itself reports the time of one
//! `a` plus one `b`; [`print_paired`] prints the ratios.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Iterations of each routine per chunk: long enough that reading the clock is
/// a small part of a chunk, short enough that the host rarely changes speed
/// within one.
const CHUNK: u64 = 64;

#[derive(Default)]
struct Record {
    ratios: Vec<f64>,
    a: Duration,
    b: Duration,
    iters: u64,
}

static RECORDS: Mutex<BTreeMap<String, Record>> = Mutex::new(BTreeMap::new());

/// A criterion group whose benchmarks each time two routines, interleaved.
pub struct PairedGroup<'a> {
    group: BenchmarkGroup<'a, WallTime>,
    name: String,
}

impl<'a> PairedGroup<'a> {
    /// Opens the criterion group `name`.
    pub fn new(c: &'a mut Criterion, name: &str) -> Self {
        PairedGroup {
            group: c.benchmark_group(name),
            name: name.to_owned(),
        }
    }

    /// Benchmarks `a` and `b` together as `group/name`, recording each chunk's
    /// `a / b` ratio for [`print_paired`]. The chunks alternate which routine
    /// runs first, so neither always finds the caches as the other left them.
    pub fn bench(&mut self, name: &str, mut a: impl FnMut(), mut b: impl FnMut()) -> &mut Self {
        self.bench_timed(name, |n| time(n, &mut a), |n| time(n, &mut b))
    }

    /// Like [`bench`](Self::bench), for routines that run `n` iterations and
    /// time themselves: each can do per-chunk setup and teardown outside its
    /// timing (install its own `tracing` dispatcher, flush a pipeline so its
    /// queue never overflows).
    pub fn bench_timed(
        &mut self,
        name: &str,
        mut a: impl FnMut(u64) -> Duration,
        mut b: impl FnMut(u64) -> Duration,
    ) -> &mut Self {
        let id = format!("{}/{name}", self.name);
        self.group.bench_function(name, |bencher| {
            bencher.iter_custom(|iters| {
                let mut ratios = Vec::with_capacity(iters.div_ceil(CHUNK) as usize);
                let (mut total_a, mut total_b) = (Duration::ZERO, Duration::ZERO);
                let mut left = iters;
                let mut a_first = true;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let (ta, tb) = if a_first {
                        let ta = a(n);
                        (ta, b(n))
                    } else {
                        let tb = b(n);
                        (a(n), tb)
                    };
                    if !tb.is_zero() {
                        ratios.push(ta.as_secs_f64() / tb.as_secs_f64());
                    }
                    total_a += ta;
                    total_b += tb;
                    left -= n;
                    a_first = !a_first;
                }
                record(&id, ratios, total_a, total_b, iters);
                total_a + total_b
            })
        });
        self
    }

    /// Closes the criterion group.
    pub fn finish(self) {
        self.group.finish();
    }
}

impl std::fmt::Debug for PairedGroup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairedGroup")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn record(id: &str, ratios: Vec<f64>, a: Duration, b: Duration, iters: u64) {
    let mut records = RECORDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let record = records.entry(id.to_owned()).or_default();
    record.ratios.extend(ratios);
    record.a += a;
    record.b += b;
    record.iters += iters;
}

fn time(n: u64, f: &mut impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed()
}

/// One row of the paired table: the label, the paired benchmark's id
/// (`group/name`), and the target ratio if the issue sets one.
#[derive(Debug, Clone, Copy)]
pub struct PairedRow<'a> {
    /// What is compared.
    pub label: &'a str,
    /// The paired benchmark's id, `group/name`.
    pub id: &'a str,
    /// The goal for `a / b`, if any.
    pub target: Option<f64>,
}

/// Summary of one paired benchmark's chunk ratios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedSummary {
    /// Chunks recorded.
    pub chunks: usize,
    /// Median of the chunk ratios.
    pub median: f64,
    /// 25th percentile of the chunk ratios.
    pub p25: f64,
    /// 75th percentile of the chunk ratios.
    pub p75: f64,
    /// Mean time of one `a`, in nanoseconds.
    pub a_ns: f64,
    /// Mean time of one `b`, in nanoseconds.
    pub b_ns: f64,
}

/// The summary for `id`, if it ran in this process.
pub fn summary(id: &str) -> Option<PairedSummary> {
    let records = RECORDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let record = records.get(id)?;
    summarize(&record.ratios, record.a, record.b, record.iters)
}

fn summarize(ratios: &[f64], a: Duration, b: Duration, iters: u64) -> Option<PairedSummary> {
    if ratios.is_empty() || b.is_zero() || iters == 0 {
        return None;
    }
    let mut sorted = ratios.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    Some(PairedSummary {
        chunks: sorted.len(),
        median: at(0.5),
        p25: at(0.25),
        p75: at(0.75),
        a_ns: a.as_nanos() as f64 / iters as f64,
        b_ns: b.as_nanos() as f64 / iters as f64,
    })
}

/// Prints the paired ratios measured in this process. `verdicts` words a
/// median at or below its target and one above it (for example "met" and
/// "MISSED").
pub fn print_paired(title: &str, rows: &[PairedRow<'_>], verdicts: [&str; 2]) {
    println!();
    println!("== {title} (paired: interleaved chunks of {CHUNK} iterations, ratio per chunk) ==");
    println!(
        "{:<44} {:>10} {:>10} {:>8} {:>17} {:>9}",
        "", "a (mean)", "b (mean)", "median", "p25-p75", "target"
    );
    for row in rows {
        let Some(s) = summary(row.id) else {
            println!("{:<44} (not measured in this run)", row.label);
            continue;
        };
        let (target, verdict) = match row.target {
            Some(t) => (
                format!("<= {t:.2}"),
                if s.median <= t { verdicts[0] } else { verdicts[1] },
            ),
            None => (String::new(), ""),
        };
        println!(
            "{:<44} {:>10} {:>10} {:>8.3} {:>8.3}-{:<8.3} {:>9} {verdict}",
            row.label,
            crate::fmt_ns(s.a_ns),
            crate::fmt_ns(s.b_ns),
            s.median,
            s.p25,
            s.p75,
            target
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_median_quartiles_and_totals() {
        let s = summarize(
            &[0.5, 0.1, 0.3, 0.2, 0.4],
            Duration::from_nanos(300),
            Duration::from_nanos(1000),
            10,
        )
        .unwrap();
        assert_eq!(s.chunks, 5);
        assert_eq!(s.median, 0.3);
        assert_eq!(s.p25, 0.2);
        assert_eq!(s.p75, 0.4);
        assert!((s.a_ns / s.b_ns - 0.3).abs() < 1e-12);
        assert_eq!((s.a_ns, s.b_ns), (30.0, 100.0));
        assert!(summarize(&[], Duration::ZERO, Duration::from_nanos(1), 1).is_none());
        assert!(summarize(&[1.0], Duration::ZERO, Duration::ZERO, 1).is_none());
        assert!(summarize(&[1.0], Duration::ZERO, Duration::from_nanos(1), 0).is_none());
    }
}
