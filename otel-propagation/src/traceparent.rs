//! The W3C `traceparent` header value, parsed and formatted without allocation.
//!
//! ```
//! use otel_propagation::traceparent::TraceParent;
//!
//! let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
//! assert!(tp.is_sampled());
//! assert!(tp.is_random());
//! assert_eq!(tp.format().as_str(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03");
//! ```

use crate::hex;
use crate::lex::trim_ows_bytes;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use std::fmt;

/// Length of a version `00` traceparent value.
pub const TRACEPARENT_LEN: usize = 55;

/// The sampled flag (bit 0).
pub const FLAG_SAMPLED: u8 = 0x01;
/// The random trace id flag of Trace Context Level 2 (bit 1).
pub const FLAG_RANDOM: u8 = 0x02;
/// The flags this crate knows and propagates; every other bit is zeroed on output.
pub const KNOWN_FLAGS: u8 = FLAG_SAMPLED | FLAG_RANDOM;

/// A parsed `traceparent` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The version byte as received (`00` for the current format, higher for future ones).
    pub version: u8,
    /// The trace id; never all-zero.
    pub trace_id: TraceId,
    /// The caller's span id (`parent-id`); never all-zero.
    pub span_id: SpanId,
    /// The flags this crate keeps: sampled and random for version `00`, sampled
    /// only for higher versions (whose other bits have no defined meaning yet).
    pub flags: u8,
}

/// Why a `traceparent` value was rejected.
///
/// A small `Copy` type so the hot path never allocates; its `Display` says what
/// the header must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Shorter than 55 characters, or version `00` with extra characters.
    Length,
    /// The version is not two lowercase hex digits followed by `-`.
    Version,
    /// Version `ff`, which the specification forbids.
    ForbiddenVersion,
    /// The trace id is not 32 lowercase hex digits followed by `-`.
    TraceId,
    /// The parent id is not 16 lowercase hex digits followed by `-`.
    SpanId,
    /// The flags are not two lowercase hex digits at the end or before `-`.
    Flags,
    /// The trace id is all zeros.
    ZeroTraceId,
    /// The parent id is all zeros.
    ZeroSpanId,
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::Length => "traceparent must be 55 characters for version 00 (at least 55 for later versions)",
            Self::Version => "traceparent version must be two lowercase hex digits followed by '-'",
            Self::ForbiddenVersion => "traceparent version ff is forbidden",
            Self::TraceId => "traceparent trace-id must be 32 lowercase hex digits followed by '-'",
            Self::SpanId => "traceparent parent-id must be 16 lowercase hex digits followed by '-'",
            Self::Flags => "traceparent trace-flags must be two lowercase hex digits",
            Self::ZeroTraceId => "traceparent trace-id must not be all zeros",
            Self::ZeroSpanId => "traceparent parent-id must not be all zeros",
        };
        f.write_str(what)
    }
}

impl std::error::Error for TraceParentError {}

impl TraceParent {
    /// Parses a `traceparent` header value strictly per W3C Trace Context Level 2.
    ///
    /// Optional whitespace (spaces and tabs) around the value is ignored.
    ///
    /// # Errors
    ///
    /// Returns a [`TraceParentError`] naming the first rule the value breaks.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        Self::parse_bytes(value.as_bytes())
    }

    /// Parses a `traceparent` header value given as bytes (as HTTP header
    /// values are); any byte outside the grammar is rejected, so the value
    /// need not be checked for ASCII first.
    ///
    /// # Errors
    ///
    /// Returns a [`TraceParentError`] naming the first rule the value breaks.
    pub fn parse_bytes(value: &[u8]) -> Result<Self, TraceParentError> {
        let bytes = trim_ows_bytes(value);
        if bytes.len() < TRACEPARENT_LEN {
            // Report a malformed version first: it is the more useful message.
            if bytes.len() >= 3 && (bytes[2] != b'-' || hex::decode2_lower(&bytes[..2]).is_none()) {
                return Err(TraceParentError::Version);
            }
            return Err(TraceParentError::Length);
        }
        if bytes[2] != b'-' {
            return Err(TraceParentError::Version);
        }
        let version = hex::decode2_lower(&bytes[..2]).ok_or(TraceParentError::Version)?;
        if version == 0xff {
            return Err(TraceParentError::ForbiddenVersion);
        }
        if version == 0 {
            if bytes.len() != TRACEPARENT_LEN {
                return Err(TraceParentError::Length);
            }
        } else if bytes.len() > TRACEPARENT_LEN && bytes[TRACEPARENT_LEN] != b'-' {
            return Err(TraceParentError::Flags);
        }
        if bytes[35] != b'-' {
            return Err(TraceParentError::TraceId);
        }
        if bytes[52] != b'-' {
            return Err(TraceParentError::SpanId);
        }
        let trace_id = hex::decode32_lower(&bytes[3..35]).ok_or(TraceParentError::TraceId)?;
        let span_id = hex::decode16_lower(&bytes[36..52]).ok_or(TraceParentError::SpanId)?;
        let raw_flags = hex::decode2_lower(&bytes[53..55]).ok_or(TraceParentError::Flags)?;
        if trace_id == 0 {
            return Err(TraceParentError::ZeroTraceId);
        }
        if span_id == 0 {
            return Err(TraceParentError::ZeroSpanId);
        }
        let flags = if version == 0 {
            raw_flags & KNOWN_FLAGS
        } else {
            raw_flags & FLAG_SAMPLED
        };
        Ok(TraceParent {
            version,
            trace_id: TraceId::from(trace_id),
            span_id: SpanId::from(span_id),
            flags,
        })
    }

    /// Builds the value for an outgoing request from a span context (always version `00`).
    pub fn from_span_context(span_context: &SpanContext) -> Self {
        TraceParent {
            version: 0,
            trace_id: span_context.trace_id(),
            span_id: span_context.span_id(),
            flags: span_context.trace_flags().to_u8() & KNOWN_FLAGS,
        }
    }

    /// Whether the caller may have recorded the trace.
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Whether the caller declared the trace id's right-most 7 bytes random.
    pub fn is_random(&self) -> bool {
        self.flags & FLAG_RANDOM != 0
    }

    /// The remote span context this value describes, with the given tracestate.
    pub fn into_span_context(self, trace_state: TraceState) -> SpanContext {
        SpanContext::new(
            self.trace_id,
            self.span_id,
            TraceFlags::new(self.flags),
            true,
            trace_state,
        )
    }

    /// Formats as version `00` into a stack buffer; unknown flag bits are zeroed.
    pub fn format(&self) -> TraceParentBuf {
        let mut bytes = [0u8; TRACEPARENT_LEN];
        for (chunk, word) in bytes.chunks_mut(8).zip(self.words()) {
            chunk.copy_from_slice(&word.to_be_bytes()[..chunk.len()]);
        }
        TraceParentBuf { bytes }
    }

    /// Formats as version `00` into a new `Vec` of exactly
    /// [`TRACEPARENT_LEN`] bytes (what `http::HeaderValue::try_from` takes
    /// without copying); unknown flag bits are zeroed.
    pub fn to_vec(&self) -> Vec<u8> {
        // Capacity exactly the length: `bytes::Bytes` (inside `HeaderValue`)
        // takes such a `Vec` as it is, and allocates again for any other.
        let mut out = Vec::with_capacity(TRACEPARENT_LEN);
        let [w0, w1, w2, w3, w4, w5, w6] = self.words();
        for word in [w0, w1, w2, w3, w4, w5] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(&w6.to_be_bytes()[..TRACEPARENT_LEN - 48]);
        out
    }

    /// Formats as version `00` into a new `String` (what an
    /// [`Injector`](opentelemetry::propagation::Injector) takes); unknown flag
    /// bits are zeroed.
    pub fn to_header_string(&self) -> String {
        // Only ASCII hex digits and '-' are ever written, so this cannot fail;
        // the fallback keeps the function total without `unsafe`.
        String::from_utf8(self.to_vec()).unwrap_or_default()
    }

    /// The version `00` value as seven big-endian words, the last one padded
    /// with a zero byte: whole-word stores, which a following read of the same
    /// words (the UTF-8 check of a `String`) gets forwarded without a stall.
    fn words(&self) -> [u64; 7] {
        const PREFIX: u64 = u64::from_be_bytes(*b"00-\0\0\0\0\0");
        const DASH: u64 = b'-' as u64;
        let t = u128::from_be_bytes(self.trace_id.to_bytes());
        let s = u64::from_be_bytes(self.span_id.to_bytes());
        let (t0, t1) = (hex::encode8((t >> 96) as u32), hex::encode8((t >> 64) as u32));
        let (t2, t3) = (hex::encode8((t >> 32) as u32), hex::encode8(t as u32));
        let (s0, s1) = (hex::encode8((s >> 32) as u32), hex::encode8(s as u32));
        let flags = hex::encode8(u32::from(self.flags & KNOWN_FLAGS)) & 0xffff;
        // "00-" t(32) "-" s(16) "-" flags(2): each digit word is split across
        // two output words at the offsets where it lands.
        [
            PREFIX | t0 >> 24,
            t0 << 40 | t1 >> 24,
            t1 << 40 | t2 >> 24,
            t2 << 40 | t3 >> 24,
            t3 << 40 | DASH << 32 | s0 >> 32,
            s0 << 32 | s1 >> 32,
            s1 << 32 | DASH << 24 | flags << 8,
        ]
    }
}

/// A formatted `traceparent` value held on the stack.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParentBuf {
    bytes: [u8; TRACEPARENT_LEN],
}

impl TraceParentBuf {
    /// The value as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and '-' are ever written, so this cannot fail;
        // the fallback keeps the function total without `unsafe`.
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    /// The value as bytes.
    pub fn as_bytes(&self) -> &[u8; TRACEPARENT_LEN] {
        &self.bytes
    }
}

impl std::ops::Deref for TraceParentBuf {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for TraceParentBuf {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for TraceParentBuf {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Display for TraceParentBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TraceParentBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Parses a `traceparent` value: shorthand for [`TraceParent::parse`].
///
/// # Errors
///
/// See [`TraceParent::parse`].
pub fn parse_traceparent(value: &str) -> Result<TraceParent, TraceParentError> {
    TraceParent::parse(value)
}

/// Formats a span context as a version `00` `traceparent` value on the stack.
pub fn format_traceparent(span_context: &SpanContext) -> TraceParentBuf {
    TraceParent::from_span_context(span_context).format()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TID: &str = "12345678901234567890123456789012";
    const SID: &str = "1234567890123456";

    fn tp(s: &str) -> Result<TraceParent, TraceParentError> {
        TraceParent::parse(s)
    }

    #[test]
    fn parses_valid_version_00() {
        let p = tp(&format!("00-{TID}-{SID}-01")).unwrap();
        assert_eq!(p.version, 0);
        assert_eq!(p.trace_id, TraceId::from_hex(TID).unwrap());
        assert_eq!(p.span_id, SpanId::from_hex(SID).unwrap());
        assert!(p.is_sampled());
        assert!(!p.is_random());
    }

    #[test]
    fn keeps_sampled_and_random_zeroes_other_flags() {
        assert_eq!(tp(&format!("00-{TID}-{SID}-03")).unwrap().flags, 0x03);
        assert_eq!(tp(&format!("00-{TID}-{SID}-ff")).unwrap().flags, 0x03);
        assert_eq!(tp(&format!("00-{TID}-{SID}-08")).unwrap().flags, 0x00);
        let p = tp(&format!("00-{TID}-{SID}-fe")).unwrap();
        assert_eq!(p.format().as_str(), format!("00-{TID}-{SID}-02"));
    }

    #[test]
    fn ows_is_ignored() {
        for v in [
            format!(" 00-{TID}-{SID}-01"),
            format!("\t00-{TID}-{SID}-01"),
            format!("00-{TID}-{SID}-01 "),
            format!("00-{TID}-{SID}-01\t"),
            format!("\t 00-{TID}-{SID}-01 \t"),
        ] {
            assert!(tp(&v).is_ok(), "{v:?}");
        }
    }

    #[test]
    fn version_rules() {
        assert_eq!(
            tp(&format!("ff-{TID}-{SID}-01")),
            Err(TraceParentError::ForbiddenVersion)
        );
        assert_eq!(tp(&format!(".0-{TID}-{SID}-01")), Err(TraceParentError::Version));
        assert_eq!(tp(&format!("0.-{TID}-{SID}-01")), Err(TraceParentError::Version));
        assert!(tp(&format!("000-{TID}-{SID}-01")).is_err());
        assert!(tp(&format!("0000-{TID}-{SID}-01")).is_err());
        assert!(tp(&format!("0-{TID}-{SID}-01")).is_err());
        assert_eq!(tp(&format!("0A-{TID}-{SID}-01")), Err(TraceParentError::Version));
        // Version 00 must be exactly 55 characters.
        assert_eq!(tp(&format!("00-{TID}-{SID}-01.")), Err(TraceParentError::Length));
        assert_eq!(
            tp(&format!("00-{TID}-{SID}-01-what-the-future-will-be-like")),
            Err(TraceParentError::Length)
        );
    }

    #[test]
    fn higher_versions_parse_the_first_55_characters() {
        let p = tp(&format!("cc-{TID}-{SID}-01")).unwrap();
        assert_eq!(p.version, 0xcc);
        assert!(p.is_sampled());
        let p = tp(&format!("cc-{TID}-{SID}-03-what-the-future-will-be-like")).unwrap();
        assert_eq!(p.trace_id, TraceId::from_hex(TID).unwrap());
        // Only the sampled bit is defined for versions we do not know.
        assert_eq!(p.flags, FLAG_SAMPLED);
        assert_eq!(
            tp(&format!("cc-{TID}-{SID}-01.what-the-future-will-be-like")),
            Err(TraceParentError::Flags)
        );
        // Shorter than 55 is never parsed.
        assert_eq!(tp(&format!("cc-{TID}-{SID}-1")), Err(TraceParentError::Length));
        // Output is always version 00.
        assert!(p.format().as_str().starts_with("00-"));
    }

    #[test]
    fn id_rules() {
        assert_eq!(
            tp(&format!("00-{}-{SID}-01", "0".repeat(32))),
            Err(TraceParentError::ZeroTraceId)
        );
        assert_eq!(
            tp(&format!("00-{TID}-{}-01", "0".repeat(16))),
            Err(TraceParentError::ZeroSpanId)
        );
        assert_eq!(
            tp(&format!("00-.2345678901234567890123456789012-{SID}-01")),
            Err(TraceParentError::TraceId)
        );
        assert_eq!(
            tp(&format!("00-1234567890123456789012345678901.-{SID}-01")),
            Err(TraceParentError::TraceId)
        );
        assert_eq!(
            tp(&format!("00-{}-{SID}-01", TID.to_uppercase().replace('1', "A"))),
            Err(TraceParentError::TraceId)
        );
        assert_eq!(
            tp(&format!("00-{TID}-.234567890123456-01")),
            Err(TraceParentError::SpanId)
        );
        assert_eq!(
            tp(&format!("00-{TID}-123456789012345.-01")),
            Err(TraceParentError::SpanId)
        );
        assert_eq!(
            tp(&format!("00-{TID}-ABCDEF7890123456-01")),
            Err(TraceParentError::SpanId)
        );
        assert!(tp(&format!("00-{TID}3-{SID}-01")).is_err());
        assert!(tp(&format!("00-{}-{SID}-01", &TID[1..])).is_err());
        assert!(tp(&format!("00-{TID}-{SID}7-01")).is_err());
        assert!(tp(&format!("00-{TID}-{}-01", &SID[1..])).is_err());
    }

    #[test]
    fn flag_rules() {
        assert_eq!(tp(&format!("00-{TID}-{SID}-.0")), Err(TraceParentError::Flags));
        assert_eq!(tp(&format!("00-{TID}-{SID}-0.")), Err(TraceParentError::Flags));
        assert_eq!(tp(&format!("00-{TID}-{SID}-0A")), Err(TraceParentError::Flags));
        assert!(tp(&format!("00-{TID}-{SID}-001")).is_err());
        assert!(tp(&format!("00-{TID}-{SID}-1")).is_err());
    }

    #[test]
    fn no_sign_characters() {
        // u128::from_str_radix would accept a leading '+'; the strict parser must not.
        assert!(tp(&format!("00-+{}-{SID}-01", &TID[1..])).is_err());
        assert!(tp(&format!("00-{TID}-+{}-01", &SID[1..])).is_err());
        assert!(tp(&format!("00-{TID}-{SID}-+1")).is_err());
        assert!(tp(&format!("+0-{TID}-{SID}-01")).is_err());
    }

    #[test]
    fn format_matches_span_context() {
        let sc = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(0x00f0_67aa_0ba9_02b7),
            TraceFlags::new(0x83),
            false,
            TraceState::NONE,
        );
        assert_eq!(
            format_traceparent(&sc).as_str(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
        );
    }

    #[test]
    fn error_messages_name_the_field() {
        assert!(TraceParentError::TraceId.to_string().contains("trace-id"));
        assert!(TraceParentError::SpanId.to_string().contains("parent-id"));
        assert!(TraceParentError::Flags.to_string().contains("trace-flags"));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = TraceParent::parse(&s);
        }

        #[test]
        fn never_panics_near_valid(
            prefix in "[0-9a-fA-F.+ -]{0,3}",
            body in "[0-9a-f-]{50,56}",
            suffix in "[ -~]{0,4}",
        ) {
            let _ = TraceParent::parse(&format!("{prefix}{body}{suffix}"));
        }

        #[test]
        fn valid_values_round_trip(trace in 1u128.., span in 1u64.., flags in 0u8..=3) {
            let text = format!("00-{trace:032x}-{span:016x}-{flags:02x}");
            let parsed = TraceParent::parse(&text).unwrap();
            prop_assert_eq!(parsed.trace_id, TraceId::from(trace));
            prop_assert_eq!(parsed.span_id, SpanId::from(span));
            prop_assert_eq!(parsed.flags, flags);
            let formatted = parsed.format();
            prop_assert_eq!(formatted.as_str(), text.as_str());
        }

        #[test]
        fn formats_any_ids_and_flags(trace in any::<u128>(), span in any::<u64>(), flags in any::<u8>(), version in any::<u8>()) {
            let parent = TraceParent {
                version,
                trace_id: TraceId::from(trace),
                span_id: SpanId::from(span),
                flags,
            };
            let expected = format!("00-{trace:032x}-{span:016x}-{:02x}", flags & KNOWN_FLAGS);
            let formatted = parent.format();
            prop_assert_eq!(formatted.as_str(), expected.as_str());
            prop_assert_eq!(parent.to_header_string(), expected.as_str());
            let bytes = parent.to_vec();
            prop_assert_eq!(bytes.as_slice(), expected.as_bytes());
            prop_assert_eq!(bytes.capacity(), TRACEPARENT_LEN);
        }

        #[test]
        fn agrees_with_a_reference_grammar(s in "[0-9a-fA-F-]{55}") {
            // A direct transcription of the ABNF for version 00, used as an oracle.
            let b = s.as_bytes();
            let lower_hex = |r: std::ops::Range<usize>| b[r].iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
            let expect_ok = b[2] == b'-' && b[35] == b'-' && b[52] == b'-'
                && lower_hex(0..2) && &s[0..2] != "ff"
                && lower_hex(3..35) && lower_hex(36..52) && lower_hex(53..55)
                && s[3..35].bytes().any(|c| c != b'0') && s[36..52].bytes().any(|c| c != b'0')
                && (&s[0..2] == "00" || s.len() == 55);
            prop_assert_eq!(TraceParent::parse(&s).is_ok(), expect_ok);
        }
    }
}
