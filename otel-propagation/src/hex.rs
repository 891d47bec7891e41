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

/// Decodes up to 32 lowercase hex digits into a `u128`; `None` on any other byte.
#[inline]
pub(crate) fn decode_u128_lower(digits: &[u8]) -> Option<u128> {
    decode_with(digits, &DECODE_LOWER)
}

/// Decodes up to 32 hex digits of either case into a `u128`.
#[inline]
pub(crate) fn decode_u128_any(digits: &[u8]) -> Option<u128> {
    decode_with(digits, &DECODE_ANY)
}

#[inline]
fn decode_with(digits: &[u8], table: &[u8; 256]) -> Option<u128> {
    if digits.len() > 32 {
        return None;
    }
    let mut value: u128 = 0;
    // OR-ing every nibble lets the loop run without a branch per digit;
    // INVALID has the high bit set, so one check at the end finds it.
    let mut seen: u8 = 0;
    for &b in digits {
        let nibble = table[b as usize];
        seen |= nibble;
        value = (value << 4) | u128::from(nibble & 0x0f);
    }
    if seen & 0x80 != 0 { None } else { Some(value) }
}

/// Writes `value` as `out.len()` lowercase hex digits (most significant first).
#[inline]
pub(crate) fn encode_lower(mut value: u128, out: &mut [u8]) {
    for slot in out.iter_mut().rev() {
        *slot = ENCODE[(value & 0x0f) as usize];
        value >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_lowercase_only() {
        assert_eq!(decode_u128_lower(b"00ff"), Some(0xff));
        assert_eq!(decode_u128_lower(b"00FF"), None);
        assert_eq!(decode_u128_any(b"00FF"), Some(0xff));
        assert_eq!(decode_u128_lower(b"0g"), None);
        assert_eq!(decode_u128_lower(b"+1"), None);
        assert_eq!(decode_u128_lower(&[b'f'; 32]), Some(u128::MAX));
        assert_eq!(decode_u128_lower(&[b'f'; 33]), None);
    }

    #[test]
    fn encodes_fixed_width() {
        let mut out = [0u8; 4];
        encode_lower(0xab, &mut out);
        assert_eq!(&out, b"00ab");
    }
}
