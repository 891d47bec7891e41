//! Lowercase hexadecimal encoding and decoding without allocation.

const INVALID: u8 = 0xff;

/// Lowercase hex digit -> value, anything else -> `INVALID`.
static DECODE_LOWER: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Any-case hex digit -> value (B3 and other lenient formats).
static DECODE_ANY: [u8; 256] = {
    let mut table = DECODE_LOWER;
    let mut i = 0;
    while i < 6 {
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

const ENCODE: &[u8; 16] = b"0123456789abcdef";

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// For each byte of `x` (all below 0x80): high bit set when the byte is in `lo..=hi`.
#[inline(always)]
const fn in_range(x: u64, lo: u8, hi: u8) -> u64 {
    let at_least_lo = x.wrapping_add(ONES * (0x80 - lo as u64));
    let above_hi = x.wrapping_add(ONES * (0x7f - hi as u64));
    at_least_lo & !above_hi & HIGH_BITS
}

/// Decodes 8 lowercase hex digits packed big-endian in a `u64` (SWAR: eight
/// digits are checked and converted with a handful of word operations).
#[inline(always)]
fn decode8(x: u64) -> Option<u32> {
    if x & HIGH_BITS != 0 {
        return None;
    }
    let valid = in_range(x, b'0', b'9') | in_range(x, b'a', b'f');
    if valid != HIGH_BITS {
        return None;
    }
    // '0'..'9' -> low nibble; 'a'..'f' (bit 6 set) -> low nibble + 9.
    let letters = (x >> 6) & ONES;
    let nibbles = (x & (ONES * 0x0f)) + letters * 9;
    let pairs = (nibbles | (nibbles >> 4)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    Some(((quads | (quads >> 16)) & 0xffff_ffff) as u32)
}

#[inline(always)]
fn load8(digits: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&digits[at..at + 8]);
    u64::from_be_bytes(word)
}

/// Decodes exactly 16 lowercase hex digits.
#[inline]
pub(crate) fn decode16_lower(digits: &[u8]) -> Option<u64> {
    if digits.len() != 16 {
        return None;
    }
    let high = decode8(load8(digits, 0))?;
    let low = decode8(load8(digits, 8))?;
    Some(u64::from(high) << 32 | u64::from(low))
}

/// Decodes exactly 32 lowercase hex digits.
#[inline]
pub(crate) fn decode32_lower(digits: &[u8]) -> Option<u128> {
    if digits.len() != 32 {
        return None;
    }
    let high = decode16_lower(&digits[..16])?;
    let low = decode16_lower(&digits[16..])?;
    Some(u128::from(high) << 64 | u128::from(low))
}

/// Decodes exactly 2 lowercase hex digits.
#[inline]
pub(crate) fn decode2_lower(digits: &[u8]) -> Option<u8> {
    decode2_with(digits, &DECODE_LOWER)
}

/// Decodes exactly 2 hex digits of either case (a percent escape's).
#[inline]
pub(crate) fn decode2_any(digits: &[u8]) -> Option<u8> {
    decode2_with(digits, &DECODE_ANY)
}

#[inline]
fn decode2_with(digits: &[u8], table: &[u8; 256]) -> Option<u8> {
    match digits {
        [h, l] => {
            let (h, l) = (table[*h as usize], table[*l as usize]);
            if (h | l) & 0x80 != 0 { None } else { Some(h << 4 | l) }
        }
        _ => None,
    }
}

/// Decodes up to 32 hex digits of either case into a `u128`.
#[inline]
pub(crate) fn decode_u128_any(digits: &[u8]) -> Option<u128> {
    decode_with(digits, &DECODE_ANY)
}

#[inline]
fn decode_with(digits: &[u8], table: &[u8; 256]) -> Option<u128> {
    match digits.len() {
        0..=16 => decode_u64_with(digits, table).map(u128::from),
        17..=32 => {
            let (high, low) = digits.split_at(digits.len() - 16);
            let high = decode_u64_with(high, table)?;
            let low = decode_u64_with(low, table)?;
            Some(u128::from(high) << 64 | u128::from(low))
        }
        _ => None,
    }
}

/// Decodes up to 16 hex digits; 64-bit arithmetic keeps the loop short.
#[inline]
fn decode_u64_with(digits: &[u8], table: &[u8; 256]) -> Option<u64> {
    let mut value: u64 = 0;
    // OR-ing every nibble lets the loop run without a branch per digit;
    // INVALID has the high bit set, so one check at the end finds it.
    let mut seen: u8 = 0;
    for &b in digits {
        let nibble = table[b as usize];
        seen |= nibble;
        value = (value << 4) | u64::from(nibble & 0x0f);
    }
    if seen & 0x80 != 0 { None } else { Some(value) }
}

/// Byte -> its two lowercase hex digits as a big-endian `u16`.
static ENCODE_U16: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = u16::from_be_bytes([ENCODE[i >> 4], ENCODE[i & 0x0f]]);
        i += 1;
    }
    table
};

/// The eight lowercase hex digits of `x`, most significant first, as the bytes
/// of a big-endian word.
#[inline(always)]
pub(crate) fn encode8(x: u32) -> u64 {
    let [a, b, c, d] = x.to_be_bytes();
    u64::from(ENCODE_U16[a as usize]) << 48
        | u64::from(ENCODE_U16[b as usize]) << 32
        | u64::from(ENCODE_U16[c as usize]) << 16
        | u64::from(ENCODE_U16[d as usize])
}

/// Writes `bytes` as lowercase hex into `out`, which must be twice as long.
#[inline]
pub(crate) fn encode_bytes(bytes: &[u8], out: &mut [u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&ENCODE_U16[b as usize].to_be_bytes());
    }
}

/// Writes `value` as `out.len()` lowercase hex digits (most significant first).
#[inline]
pub(crate) fn encode_lower(value: u128, out: &mut [u8]) {
    let bytes = value.to_be_bytes();
    if out.len().is_multiple_of(2) && out.len() <= 32 {
        encode_bytes(&bytes[16 - out.len() / 2..], out);
    } else {
        let mut value = value;
        for slot in out.iter_mut().rev() {
            *slot = ENCODE[(value & 0x0f) as usize];
            value >>= 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode8_writes_every_nibble_in_order() {
        for x in [0u32, 1, 9, 10, 15, 0x0123_4567, 0x89ab_cdef, 0xdead_beef, u32::MAX] {
            assert_eq!(encode8(x).to_be_bytes(), *format!("{x:08x}").as_bytes(), "{x:#x}");
        }
        for shift in 0..32 {
            for x in [1u32 << shift, !(1u32 << shift), 0xa5a5_a5a5 >> shift] {
                assert_eq!(encode8(x).to_be_bytes(), *format!("{x:08x}").as_bytes(), "{x:#x}");
            }
        }
    }

    #[test]
    fn decodes_any_case() {
        assert_eq!(decode_u128_any(b"00ff"), Some(0xff));
        assert_eq!(decode_u128_any(b"00FF"), Some(0xff));
        assert_eq!(decode_u128_any(b"0g"), None);
        assert_eq!(decode_u128_any(b"+1"), None);
        assert_eq!(decode_u128_any(&[b'f'; 32]), Some(u128::MAX));
        assert_eq!(decode_u128_any(&[b'F'; 17]), Some(u128::MAX >> 60));
        assert_eq!(decode_u128_any(&[b'f'; 33]), None);
        assert_eq!(decode2_any(b"aF"), Some(0xaf));
        assert_eq!(decode2_any(b"2g"), None);
        assert_eq!(decode2_any(b"2"), None);
    }

    #[test]
    fn decodes_fixed_lowercase() {
        assert_eq!(decode2_lower(b"0a"), Some(0x0a));
        assert_eq!(decode2_lower(b"0A"), None);
        assert_eq!(decode16_lower(b"0123456789abcdef"), Some(0x0123_4567_89ab_cdef));
        assert_eq!(
            decode32_lower(b"0123456789abcdeffedcba9876543210"),
            Some(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210)
        );
        assert_eq!(decode16_lower(b"0123456789abcde"), None);
    }

    proptest::proptest! {
        #[test]
        fn swar_matches_the_table(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 16)) {
            let expected = bytes.iter().try_fold(0u64, |acc, &b| {
                let n = DECODE_LOWER[b as usize];
                (n != INVALID).then_some(acc << 4 | u64::from(n))
            });
            proptest::prop_assert_eq!(decode16_lower(&bytes), expected);
        }

        #[test]
        fn swar_decodes_every_valid_string(v in proptest::prelude::any::<u64>()) {
            let text = format!("{v:016x}");
            proptest::prop_assert_eq!(decode16_lower(text.as_bytes()), Some(v));
        }
    }

    #[test]
    fn encodes_fixed_width() {
        let mut out = [0u8; 4];
        encode_lower(0xab, &mut out);
        assert_eq!(&out, b"00ab");
        let mut odd = [0u8; 3];
        encode_lower(0xabc, &mut odd);
        assert_eq!(&odd, b"abc");
        let mut out = [0u8; 32];
        encode_lower(u128::MAX - 1, &mut out);
        assert_eq!(&out, b"fffffffffffffffffffffffffffffffe");
    }
}
