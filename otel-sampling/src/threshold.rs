//! Rejection thresholds (`th`) and randomness values (`rv`) of OpenTelemetry
//! consistent probability sampling: 56-bit integers compared as `R >= T`.

use opentelemetry::trace::TraceId;
use std::fmt;

/// 2^56: the number of distinct thresholds and randomness values.
pub const MAX_ADJUSTED_COUNT: u64 = 1 << 56;
const MASK_56: u64 = MAX_ADJUSTED_COUNT - 1;
/// The default number of significant hex digits in an encoded threshold.
pub const DEFAULT_PRECISION: u8 = 4;

/// A 56-bit rejection threshold: a span is kept when its randomness is `>=` it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Threshold(u64);

impl Threshold {
    /// Keeps everything (`th:0`).
    pub const ALWAYS: Threshold = Threshold(0);

    /// The threshold with this 56-bit value; `None` above 2^56 - 1.
    pub const fn from_value(value: u64) -> Option<Threshold> {
        if value <= MASK_56 { Some(Threshold(value)) } else { None }
    }

    /// The 56-bit value.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// The threshold for probability `p` in `(0, 1]`, rounded to `precision`
    /// significant hex digits (1 to 14; leading `f` digits of small
    /// probabilities do not count against it), as the OpenTelemetry
    /// specification computes it. `None` for `p` outside `(0, 1]` or NaN.
    pub fn from_probability(p: f64, precision: u8) -> Option<Threshold> {
        if !(p > 0.0 && p <= 1.0) {
            return None;
        }
        if p == 1.0 {
            return Some(Threshold::ALWAYS);
        }
        // frexp: p = m * 2^e with m in [0.5, 1).
        let e = frexp_exponent(p);
        // Each 4 leading binary zeros of p become a leading 'f' of the threshold:
        // raise the precision by that many digits, within what an f64 holds.
        let digits = (i32::from(precision) + (-e).div_euclid(4)).clamp(1, 12);
        // 2 - p lies in (1, 2): its 52 mantissa bits are the 13 hex digits of the
        // rejection probability. Half a unit of the last kept digit rounds it.
        let rejection = 2.0 - p + 0.5 * 2f64.powi(-4 * digits);
        let mantissa = if rejection >= 2.0 {
            (1u64 << 52) - 1
        } else {
            rejection.to_bits() & ((1u64 << 52) - 1)
        };
        let kept = mantissa >> (4 * (13 - digits));
        Some(Threshold(kept << (56 - 4 * digits)))
    }

    /// Parses a `th` value: 1 to 14 hex digits, implicitly followed by zeros.
    pub fn parse(th: &str) -> Option<Threshold> {
        let b = th.as_bytes();
        if b.is_empty() || b.len() > 14 {
            return None;
        }
        let mut value = 0u64;
        for &c in b {
            value = value << 4 | u64::from(hex_value(c)?);
        }
        Some(Threshold(value << (4 * (14 - b.len()))))
    }

    /// The probability of keeping a span: `(2^56 - T) / 2^56`.
    pub fn probability(self) -> f64 {
        (MAX_ADJUSTED_COUNT - self.0) as f64 / MAX_ADJUSTED_COUNT as f64
    }

    /// How many spans a kept one represents: the inverse of [`probability`](Self::probability).
    pub fn adjusted_count(self) -> f64 {
        MAX_ADJUSTED_COUNT as f64 / (MAX_ADJUSTED_COUNT - self.0) as f64
    }

    /// Whether randomness `r` passes this threshold.
    #[inline]
    pub fn should_sample(self, r: Randomness) -> bool {
        r.0 >= self.0
    }

    /// The `th` encoding: lowercase hex, trailing zeros removed, `0` for [`ALWAYS`](Self::ALWAYS).
    pub fn encode(self) -> ThBuf {
        let mut buf = ThBuf {
            bytes: [b'0'; 14],
            len: 1,
        };
        if self.0 == 0 {
            return buf;
        }
        let mut len = 14;
        let mut v = self.0;
        while v & 0xf == 0 {
            v >>= 4;
            len -= 1;
        }
        for i in (0..len).rev() {
            buf.bytes[i] = HEX[(v & 0xf) as usize];
            v >>= 4;
        }
        buf.len = len as u8;
        buf
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn frexp_exponent(p: f64) -> i32 {
    let bits = p.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: normalise by the position of the highest mantissa bit.
        let mantissa = bits & ((1u64 << 52) - 1);
        -1022 - (mantissa.leading_zeros() as i32 - 12)
    } else {
        biased - 1022
    }
}

/// An encoded `th` value on the stack.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThBuf {
    bytes: [u8; 14],
    len: u8,
}

impl ThBuf {
    /// The encoded digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("0")
    }
}

impl fmt::Display for ThBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ThBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A 56-bit randomness value: the `rv` sub-key, or the trace id's low 56 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Randomness(u64);

impl Randomness {
    /// The least significant 56 bits of a trace id.
    #[inline]
    pub fn from_trace_id(trace_id: TraceId) -> Randomness {
        let bytes = trace_id.to_bytes();
        let mut low = [0u8; 8];
        low.copy_from_slice(&bytes[8..]);
        Randomness(u64::from_be_bytes(low) & MASK_56)
    }

    /// Parses an `rv` value: exactly 14 hex digits.
    pub fn parse(rv: &str) -> Option<Randomness> {
        let b = rv.as_bytes();
        if b.len() != 14 {
            return None;
        }
        let mut value = 0u64;
        for &c in b {
            value = value << 4 | u64::from(hex_value(c)?);
        }
        Some(Randomness(value))
    }

    /// The randomness with this 56-bit value; `None` above 2^56 - 1.
    pub const fn from_value(value: u64) -> Option<Randomness> {
        if value <= MASK_56 {
            Some(Randomness(value))
        } else {
            None
        }
    }

    /// The 56-bit value.
    pub const fn value(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn th(p: f64, precision: u8) -> String {
        Threshold::from_probability(p, precision)
            .unwrap()
            .encode()
            .as_str()
            .to_owned()
    }

    #[test]
    fn matches_the_specification_table() {
        // 1-in-N probabilities at precision 3, 4 and 5, as the specification lists them.
        let table: &[(f64, [&str; 3])] = &[
            (1.0, ["0", "0", "0"]),
            (0.5, ["8", "8", "8"]),
            (1.0 / 3.0, ["aab", "aaab", "aaaab"]),
            (0.25, ["c", "c", "c"]),
            (0.2, ["ccd", "cccd", "ccccd"]),
            (0.125, ["e", "e", "e"]),
            (0.1, ["e66", "e666", "e6666"]),
            (0.0625, ["f", "f", "f"]),
            (0.01, ["fd71", "fd70a", "fd70a4"]),
            (0.001, ["ffbe7", "ffbe77", "ffbe76d"]),
            (0.0001, ["fff972", "fff9724", "fff97247"]),
            (0.00001, ["ffff584", "ffff583a", "ffff583a5"]),
            (0.000001, ["ffffef4", "ffffef39", "ffffef391"]),
        ];
        for (p, expected) in table {
            for (precision, want) in [3u8, 4, 5].into_iter().zip(expected) {
                assert_eq!(th(*p, precision), *want, "p={p} precision={precision}");
            }
        }
    }

    #[test]
    fn one_percent_example_value() {
        let t = Threshold::from_probability(0.01, 5).unwrap();
        assert_eq!(t.value(), 0xfd70a400000000);
        assert!((t.probability() - 0.009999990463256836).abs() < 1e-15);
    }

    #[test]
    fn th_values_decode() {
        assert_eq!(Threshold::parse("0"), Some(Threshold::ALWAYS));
        assert_eq!(Threshold::parse("8").unwrap().value(), 0x80000000000000);
        assert_eq!(Threshold::parse("fd70a4").unwrap().value(), 0xfd70a400000000);
        assert_eq!(Threshold::parse("FD70A4").unwrap().value(), 0xfd70a400000000);
        assert_eq!(Threshold::parse("ffffffffffffff").unwrap().value(), (1 << 56) - 1);
        for bad in ["", "fffffffffffffff", "g", "0x1", " 1", "-1"] {
            assert_eq!(Threshold::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rv_values_decode() {
        assert_eq!(Randomness::parse("00000000000000").unwrap().value(), 0);
        assert_eq!(Randomness::parse("ffffffffffffff").unwrap().value(), (1 << 56) - 1);
        for bad in ["", "fffffffffffff", "fffffffffffffff", "zzzzzzzzzzzzzz"] {
            assert_eq!(Randomness::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn randomness_is_the_low_56_bits() {
        let id = TraceId::from(0x0123_4567_89ab_cdef_ff11_2233_4455_6677);
        assert_eq!(Randomness::from_trace_id(id).value(), 0x11_2233_4455_6677);
    }

    #[test]
    fn out_of_range_probabilities() {
        for p in [0.0, -0.1, 1.0000001, f64::NAN, f64::INFINITY] {
            assert_eq!(Threshold::from_probability(p, 4), None, "{p}");
        }
        // The smallest probabilities still give a valid threshold below 2^56.
        for p in [f64::MIN_POSITIVE, 5e-324, 1e-30] {
            let t = Threshold::from_probability(p, 4).unwrap();
            assert!(t.value() < MAX_ADJUSTED_COUNT);
        }
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(v in 0u64..MAX_ADJUSTED_COUNT) {
            let t = Threshold::from_value(v).unwrap();
            prop_assert_eq!(Threshold::parse(t.encode().as_str()), Some(t));
        }

        #[test]
        fn parse_never_panics(s in ".{0,20}") {
            let _ = Threshold::parse(&s);
            let _ = Randomness::parse(&s);
        }

        #[test]
        fn probability_is_close(p in 1e-6f64..=1.0, precision in 1u8..=14) {
            let t = Threshold::from_probability(p, precision).unwrap();
            let got = t.probability();
            // 4 significant digits (at least 1) of a hex fraction: relative error bound.
            let digits = i32::from(precision.min(12));
            let bound = 16f64.powi(-digits.max(1)) * 16.0 / p.max(1e-300);
            prop_assert!((got - p).abs() / p <= bound.max(1e-9), "p={} got={} th={}", p, got, t.encode());
        }

        #[test]
        fn monotone_in_probability(a in 1e-9f64..=1.0, b in 1e-9f64..=1.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let t_lo = Threshold::from_probability(lo, 4).unwrap();
            let t_hi = Threshold::from_probability(hi, 4).unwrap();
            prop_assert!(t_hi <= t_lo);
        }
    }
}
