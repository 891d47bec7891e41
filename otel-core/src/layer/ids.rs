//! Trace and span ids from a per-thread generator: no lock, no shared state,
//! a few nanoseconds each.
//!
//! The generator is wyrand (a 64-bit state stepped by a fixed odd increment and
//! mixed with one 128-bit multiply), seeded per thread from the standard
//! library's randomly keyed SipHash. Every bit of a trace id is random, as the
//! W3C random trace-id flag promises and consistent probability sampling
//! (which reads the low 56 bits) needs.

use opentelemetry::trace::{SpanId, TraceId};
use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

const STEP: u64 = 0xa076_1d64_78bd_642f;
const MIX: u64 = 0xe703_7ed1_a0b4_28db;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.write(format!("{:?}", std::thread::current().id()).as_bytes());
    h.finish()
}

#[inline]
fn next() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(STEP);
        s.set(x);
        let t = u128::from(x).wrapping_mul(u128::from(x ^ MIX));
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A random, valid (non-zero) trace id.
#[inline]
pub(crate) fn trace_id() -> TraceId {
    loop {
        let id = (u128::from(next()) << 64) | u128::from(next());
        if id != 0 {
            return TraceId::from(id);
        }
    }
}

/// A random, valid (non-zero) span id.
#[inline]
pub(crate) fn span_id() -> SpanId {
    loop {
        let id = next();
        if id != 0 {
            return SpanId::from(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_valid_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(span_id()));
            assert_ne!(trace_id(), TraceId::INVALID);
        }
    }

    #[test]
    fn low_56_bits_are_uniform_enough_for_sampling() {
        // A 1/4 threshold on the low 56 bits keeps about a quarter.
        let n = 40_000;
        let kept = (0..n)
            .filter(|_| {
                let low = u128::from_be_bytes(trace_id().to_bytes()) as u64 & ((1 << 56) - 1);
                low < (1 << 54)
            })
            .count();
        let share = kept as f64 / n as f64;
        assert!((0.24..0.26).contains(&share), "{share}");
    }

    #[test]
    fn threads_draw_different_sequences() {
        let a = std::thread::spawn(span_id).join().unwrap();
        let b = std::thread::spawn(span_id).join().unwrap();
        assert_ne!(a, b);
    }
}
