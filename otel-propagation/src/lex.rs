//! Byte-level helpers shared by the header parsers. Every position they
//! return or split at is next to an ASCII byte, so slices stay on character
//! boundaries.

use std::ops::Range;

/// Optional whitespace (RFC 7230 `OWS`): a space or a tab.
#[inline]
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Where `b` is without leading and trailing spaces and tabs.
#[inline]
fn ows_trimmed(b: &[u8]) -> Range<usize> {
    let start = b.iter().position(|&c| !is_ows(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_ows(c)).map_or(start, |i| i + 1);
    start..end
}

/// `s` without leading and trailing spaces and tabs.
#[inline]
pub(crate) fn trim_ows(s: &str) -> &str {
    s.get(ows_trimmed(s.as_bytes())).unwrap_or_default()
}

/// `b` without leading and trailing spaces and tabs.
#[inline]
pub(crate) fn trim_ows_bytes(b: &[u8]) -> &[u8] {
    b.get(ows_trimmed(b)).unwrap_or_default()
}

/// Index of the first byte at or after `i` that is not a space or tab.
#[inline]
pub(crate) fn skip_ows(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_ows(c)) {
        i += 1;
    }
    i
}

/// Index of the first ',' at or after `i`, or the end of `b`.
#[inline]
pub(crate) fn comma_from(b: &[u8], i: usize) -> usize {
    b.get(i..)
        .and_then(|rest| rest.iter().position(|&c| c == b','))
        .map_or(b.len(), |n| i + n)
}

/// `s` split around the ASCII byte at `at`, which is left out.
#[inline]
pub(crate) fn split_around(s: &str, at: usize) -> (&str, &str) {
    (s.get(..at).unwrap_or_default(), s.get(at + 1..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_stay_on_character_boundaries() {
        assert_eq!(trim_ows(" \té ü\t "), "é ü");
        assert_eq!(trim_ows(" \t "), "");
        assert_eq!(trim_ows(""), "");
        assert_eq!(trim_ows_bytes(b"\t a b \t"), b"a b");
        assert_eq!(trim_ows_bytes(b"  "), b"");
        assert_eq!(skip_ows(b" \tx", 0), 2);
        assert_eq!(skip_ows(b"  ", 5), 5);
        assert_eq!(comma_from(b"a,b,c", 2), 3);
        assert_eq!(comma_from(b"abc", 1), 3);
        assert_eq!(comma_from(b"abc", 9), 3);
        assert_eq!(split_around("ä=ö", 2), ("ä", "ö"));
        assert_eq!(split_around("a=", 1), ("a", ""));
        // Out of range or inside a character: empty rather than a panic.
        assert_eq!(split_around("é", 0), ("", ""));
        assert_eq!(split_around("ab", 7), ("", ""));
    }
}
