//! At most N new traces per second.

use crate::parent::Parent;
use crate::probability::drop_result;
use opentelemetry::trace::{Link, SpanKind, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A monotonic clock in nanoseconds; replaceable in tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Nanoseconds since an arbitrary, fixed origin.
    fn now_nanos(&self) -> u64;
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A rate or burst that is not a finite, non-negative number.
#[derive(Debug, Clone, PartialEq)]
pub struct RateError(String);

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RateError {}

/// The shared budget: a generic cell rate algorithm (GCRA), one atomic word.
#[derive(Debug)]
struct Budget {
    /// The theoretical arrival time of the next allowed trace, in clock nanoseconds.
    tat: AtomicU64,
    interval: u64,
    tolerance: u64,
    clock: Arc<dyn Clock>,
}

impl Budget {
    fn try_take(&self) -> bool {
        let now = self.clock.now_nanos();
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(tat, start + self.interval, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }
}

/// Samples at most `per_second` new traces per second, with bursts of up to
/// `burst` (lock-free: one atomic compare-and-swap per decision).
///
/// A rate-limited decision is not a probability decision, so no `th` is
/// written and an inherited one is erased. Use it as the root sampler of
/// [`ParentBased`](crate::ParentBased) to limit *traces*; on its own it limits
/// spans. Clones share one budget.
///
/// ```
/// use otel_sampling::{ParentBased, RateLimitedSampler};
/// let sampler = ParentBased::new(RateLimitedSampler::new(100.0).unwrap());
/// # let _ = sampler;
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitedSampler {
    budget: Arc<Budget>,
    per_second: f64,
    burst: u64,
}

impl RateLimitedSampler {
    /// `per_second` traces per second, burst of `max(1, ceil(per_second))`.
    ///
    /// # Errors
    ///
    /// When `per_second` is negative, NaN or infinite.
    pub fn new(per_second: f64) -> Result<Self, RateError> {
        let burst = per_second.ceil().max(1.0);
        Self::with_clock(per_second, burst as u64, Arc::new(MonotonicClock::default()))
    }

    /// `per_second` traces per second with bursts of up to `burst`.
    ///
    /// # Errors
    ///
    /// When `per_second` is negative, NaN or infinite, or `burst` is 0.
    pub fn with_burst(per_second: f64, burst: u64) -> Result<Self, RateError> {
        Self::with_clock(per_second, burst, Arc::new(MonotonicClock::default()))
    }

    /// Like [`with_burst`](Self::with_burst) with an explicit clock.
    ///
    /// # Errors
    ///
    /// As [`with_burst`](Self::with_burst).
    pub fn with_clock(per_second: f64, burst: u64, clock: Arc<dyn Clock>) -> Result<Self, RateError> {
        if !per_second.is_finite() || per_second < 0.0 {
            return Err(RateError(format!(
                "traces per second must be a finite number >= 0, got {per_second}"
            )));
        }
        if burst == 0 {
            return Err(RateError("burst must be at least 1".to_owned()));
        }
        let interval = if per_second > 0.0 {
            (1e9 / per_second).max(1.0) as u64
        } else {
            u64::MAX / 4
        };
        let start = clock.now_nanos();
        Ok(RateLimitedSampler {
            budget: Arc::new(Budget {
                // Start with a full bucket: `burst` traces may pass at once.
                tat: AtomicU64::new(start),
                interval,
                tolerance: interval.saturating_mul(burst - 1),
                clock,
            }),
            per_second,
            burst,
        })
    }

    /// The configured rate.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// The configured burst.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    fn allows(&self) -> bool {
        self.per_second > 0.0 && self.budget.try_take()
    }
}

impl ShouldSample for RateLimitedSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        Parent::with(parent_context, |parent| {
            let mut result = drop_result(parent);
            if self.allows() {
                result.decision = SamplingDecision::RecordAndSample;
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[derive(Debug, Default)]
    struct FakeClock(AtomicU64);
    impl Clock for FakeClock {
        fn now_nanos(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn decide(s: &RateLimitedSampler) -> bool {
        s.should_sample(None, TraceId::from(1), "x", &SpanKind::Server, &[], &[])
            .decision
            == SamplingDecision::RecordAndSample
    }

    #[test]
    fn burst_then_rate_with_a_fake_clock() {
        let clock = Arc::new(FakeClock::default());
        let s = RateLimitedSampler::with_clock(10.0, 5, clock.clone()).unwrap();
        assert_eq!((0..20).filter(|_| decide(&s)).count(), 5, "the burst");
        clock.0.store(100_000_000, Ordering::SeqCst); // +100 ms = one token at 10/s
        assert_eq!((0..20).filter(|_| decide(&s)).count(), 1);
        clock.0.store(1_100_000_000, Ordering::SeqCst); // +1 s: refilled to the burst, not beyond
        assert_eq!((0..20).filter(|_| decide(&s)).count(), 5);
    }

    #[test]
    fn zero_rate_never_samples() {
        let s = RateLimitedSampler::new(0.0).unwrap();
        assert!(!(0..100).any(|_| decide(&s)));
    }

    #[test]
    fn bad_rates_are_errors() {
        for r in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(
                RateLimitedSampler::new(r)
                    .unwrap_err()
                    .to_string()
                    .contains("traces per second")
            );
        }
        assert!(RateLimitedSampler::with_burst(1.0, 0).is_err());
    }

    #[test]
    fn concurrent_callers_never_exceed_the_budget() {
        let per_second = 2000.0;
        let burst = 50;
        let s = RateLimitedSampler::with_burst(per_second, burst).unwrap();
        let started = Instant::now();
        let allowed = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    while started.elapsed().as_millis() < 300 {
                        if decide(&s) {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let elapsed = started.elapsed().as_secs_f64();
        let allowed = allowed.load(Ordering::Relaxed) as f64;
        let budget = burst as f64 + per_second * elapsed;
        assert!(allowed <= budget, "allowed {allowed} > budget {budget}");
        assert!(allowed >= per_second * 0.25 * 0.5, "far too few allowed: {allowed}");
    }
}
