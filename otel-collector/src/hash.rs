//! The probabilistic policy's hash, the same as the Go collector's so mixed
//! fleets agree: FNV-1a (64 bit) over the salt then the trace id bytes,
//! sampled when at or below `percentage / 100 * u64::MAX`.

/// The salt the Go processor uses when none is configured.
pub const DEFAULT_HASH_SALT: &str = "default-hash-seed";

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `salt` followed by `trace_id`.
pub fn hash_trace_id(salt: &str, trace_id: &[u8; 16]) -> u64 {
    fnv1a(salt.as_bytes().iter().chain(trace_id.iter()).copied())
}

/// FNV-1a, 64 bits.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes
        .into_iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// FNV-1a, 32 bits (the `probabilistic_sampler` processor's `hash_seed` hash).
#[cfg_attr(not(feature = "sidecar"), allow(dead_code))]
pub(crate) fn fnv1a32(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes
        .into_iter()
        .fold(0x811c_9dc5, |h: u32, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// `u64::MAX * ratio` as the Go processor computes it: the exact product
/// rounded to 64 significant bits (to nearest, ties to even), then truncated
/// to an integer; ratios of 1 and above give `u64::MAX`.
pub(crate) fn threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio >= 1.0 {
        return u64::MAX;
    }
    let bits = ratio.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let (mant, exp) = if exp == 0 {
        (bits & ((1 << 52) - 1), -1074)
    } else {
        ((bits & ((1 << 52) - 1)) | (1 << 52), exp - 1075)
    };
    // exact = (2^64 - 1) * mant * 2^exp, with exp < 0 here.
    let product = u128::from(u64::MAX) * u128::from(mant);
    let width = 128 - product.leading_zeros() as i32;
    let mut rounded = product;
    if width > 64 {
        let shift = (width - 64) as u32;
        let keep = product >> shift;
        let rem = product & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        let keep = if rem > half || (rem == half && keep & 1 == 1) {
            keep + 1
        } else {
            keep
        };
        rounded = keep << shift;
    }
    let down = (-exp) as u32;
    if down >= 128 {
        return 0;
    }
    u64::try_from(rounded >> down).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        // FNV-1a 64 of the empty input is the offset basis; of "a" a published value.
        let mut h = OFFSET;
        assert_eq!(h, 0xcbf29ce484222325);
        h ^= u64::from(b'a');
        h = h.wrapping_mul(PRIME);
        assert_eq!(h, 0xaf63dc4c8601ec8c);
        // Salt and trace id are hashed as one byte stream.
        let id = [7u8; 16];
        let mut joined = OFFSET;
        for &b in b"salt".iter().chain(id.iter()) {
            joined ^= u64::from(b);
            joined = joined.wrapping_mul(PRIME);
        }
        assert_eq!(hash_trace_id("salt", &id), joined);
    }

    #[test]
    fn thresholds() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), u64::MAX);
        assert_eq!(threshold(2.0), u64::MAX);
        // (2^64-1)/2 = 2^63 - 0.5 fits in 64 significant bits; truncation gives 2^63 - 1.
        assert_eq!(threshold(0.5), u64::MAX / 2);
        assert_eq!(threshold(0.25), (1 << 62) - 1);
        let t = threshold(0.1);
        assert!((t as f64 / u64::MAX as f64 - 0.1).abs() < 1e-15);
        assert!(threshold(f64::NAN) == 0);
    }
}
