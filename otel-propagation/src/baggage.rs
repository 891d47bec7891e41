//! The W3C Baggage propagator and its codec.

use crate::hex;
use crate::lex::{comma_from, skip_ows, split_around, trim_ows, trim_ows_bytes};
use opentelemetry::Context;
use opentelemetry::baggage::{Baggage, BaggageExt, BaggageMetadata};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::{Key, StringValue};
use std::cell::RefCell;
use std::ops::Range;
use std::sync::LazyLock;

/// The `baggage` header name.
pub const BAGGAGE_HEADER: &str = "baggage";
/// At most this many list members are extracted or injected.
pub const MAX_MEMBERS: usize = 64;
/// At most this many bytes of list members (with separators) are extracted or injected.
pub const MAX_BYTES: usize = 8192;

static FIELDS: LazyLock<[String; 1]> = LazyLock::new(|| [BAGGAGE_HEADER.to_owned()]);

/// Propagates [`Baggage`] in the W3C `baggage` header.
///
/// Extraction combines repeated headers, trims whitespace around keys, values
/// and properties, percent-decodes values (invalid UTF-8 becomes U+FFFD, a `%`
/// not followed by two hex digits stays as it is) and keeps properties. Members
/// past 64 or past 8192 bytes are dropped whole; a malformed member is skipped
/// without affecting the others. Injection percent-encodes every value so it
/// arrives unchanged after any number of hops.
///
/// ```
/// use opentelemetry::baggage::BaggageExt;
/// use opentelemetry::propagation::TextMapPropagator;
/// use otel_propagation::BaggagePropagator;
/// use std::collections::HashMap;
///
/// let mut carrier = HashMap::new();
/// carrier.insert("baggage".to_string(), "user=ada%20l, tier = gold ;ttl=60".to_string());
/// let cx = BaggagePropagator::new().extract(&carrier);
/// assert_eq!(cx.baggage().get("user").map(|v| v.as_str()), Some("ada l"));
/// assert_eq!(cx.baggage().get_with_metadata("tier").unwrap().1.as_str(), "ttl=60");
/// ```
#[derive(Clone, Debug, Default)]
pub struct BaggagePropagator {
    _private: (),
}

impl BaggagePropagator {
    /// A new baggage propagator.
    pub const fn new() -> Self {
        BaggagePropagator { _private: () }
    }
}

impl TextMapPropagator for BaggagePropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let baggage = cx.baggage();
        if baggage.is_empty() {
            return;
        }
        let header = encode_baggage(baggage);
        if !header.is_empty() {
            injector.set(BAGGAGE_HEADER, header);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some(values) = extractor.get_all(BAGGAGE_HEADER) else {
            return cx.clone();
        };
        let baggage = decode_baggage(values.iter().copied());
        if baggage.is_empty() {
            cx.clone()
        } else {
            cx.with_baggage(baggage)
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(FIELDS.as_slice())
    }
}

/// Byte classes of the baggage grammar, one table lookup per byte.
const TCHAR: u8 = 1; // RFC 7230 token character: a key or property name
const OCTET: u8 = 2; // W3C baggage-octet: what a raw (encoded) value may contain
const PLAIN: u8 = 4; // a value byte inject writes as it is (see `is_unencoded`)

static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0x21;
    while b <= 0x7e {
        // baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
        if b != b'"' as usize && b != b',' as usize && b != b';' as usize && b != b'\\' as usize {
            table[b] |= OCTET;
            if b != b'%' as usize && b != b'=' as usize {
                table[b] |= PLAIN;
            }
        }
        let c = b as u8;
        if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            )
        {
            table[b] |= TCHAR;
        }
        b += 1;
    }
    table
};

#[inline]
fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

/// Whether `key` is a valid baggage key (an RFC 7230 token).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| class(b) & TCHAR != 0)
}

fn is_valid_property(property: &str) -> bool {
    match property.bytes().position(|b| b == b'=') {
        None => is_valid_key(trim_ows(property)),
        Some(eq) => {
            let (k, v) = split_around(property, eq);
            is_valid_key(trim_ows(k)) && trim_ows(v).bytes().all(|b| class(b) & OCTET != 0)
        }
    }
}

/// Decodes one or more `baggage` header values into [`Baggage`].
///
/// Malformed members are skipped; members beyond [`MAX_MEMBERS`] or beyond
/// [`MAX_BYTES`] of header text are dropped whole.
pub fn decode_baggage<'a, I>(values: I) -> Baggage
where
    I: IntoIterator<Item = &'a str>,
{
    let mut baggage = Baggage::new();
    let mut members = 0usize;
    let mut bytes = 0usize;
    for value in values {
        let mut at = 0;
        while at < value.len() {
            let (member, parsed, next) = scan_member(value, at);
            at = next;
            let Some(parsed) = parsed else {
                continue;
            };
            // Limits count members as they would be written: with a ',' between them.
            let cost = member + usize::from(members > 0);
            if members == MAX_MEMBERS || bytes + cost > MAX_BYTES {
                continue;
            }
            members += 1;
            bytes += cost;
            if let Some((key, value, metadata)) = parsed.build(value) {
                baggage.insert_with_metadata(key, value, metadata);
            }
        }
    }
    baggage
}

/// Where the parts of a well-formed list member lie in its header value.
struct Member {
    key: Range<usize>,
    value: Range<usize>,
    escaped: bool,
    properties: Option<Range<usize>>,
}

impl Member {
    fn build(self, header: &str) -> Option<(Key, StringValue, BaggageMetadata)> {
        let key = header.get(self.key)?;
        let raw_value = header.get(self.value)?;
        let metadata = match self.properties {
            None => BaggageMetadata::default(),
            Some(range) => BaggageMetadata::from(header.get(range)?),
        };
        let value = if self.escaped {
            percent_decode(raw_value)
        } else {
            raw_value.to_owned()
        };
        Some((Key::from(key.to_owned()), StringValue::from(value), metadata))
    }
}

/// Reads the list member that starts at byte `at` of `header`:
/// `OWS key OWS = OWS value OWS *( ; property )`, up to the next `,`.
/// Returns the length of the member without surrounding whitespace, the
/// member's parts when it is well formed, and where the next member starts.
/// One pass: each byte is classified once.
fn scan_member(header: &str, at: usize) -> (usize, Option<Member>, usize) {
    let b = header.as_bytes();
    let start = skip_ows(b, at);
    let mut i = start;
    while b.get(i).is_some_and(|&c| class(c) & TCHAR != 0) {
        i += 1;
    }
    let key = start..i;
    i = skip_ows(b, i);
    let mut parsed = None;
    if !key.is_empty() && b.get(i) == Some(&b'=') {
        let value_start = skip_ows(b, i + 1);
        i = value_start;
        let mut escaped = false;
        while let Some(&c) = b.get(i).filter(|&&c| class(c) & OCTET != 0) {
            escaped |= c == b'%';
            i += 1;
        }
        let value = value_start..i;
        i = skip_ows(b, i);
        match b.get(i) {
            None | Some(b',') => {
                parsed = Some(Member {
                    key,
                    value,
                    escaped,
                    properties: None,
                })
            }
            Some(b';') => {
                let props_start = i + 1;
                let props_end = comma_from(b, props_start);
                let props = header.get(props_start..props_end).unwrap_or_default();
                if props.split(';').all(is_valid_property) {
                    parsed = Some(Member {
                        key,
                        value,
                        escaped,
                        properties: Some(props_start..props_end),
                    });
                }
                i = props_end;
            }
            Some(_) => {}
        }
    }
    // A malformed member runs to the next ','; its text is skipped whole.
    let end = comma_from(b, i);
    let len = b.get(start..end).map_or(0, |member| trim_ows_bytes(member).len());
    (len, parsed, end + 1)
}

/// The byte an escape at `bytes[i]` stands for, if one starts there.
#[inline]
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    match bytes.get(i..i + 3)? {
        [b'%', digits @ ..] => hex::decode2_any(digits),
        _ => None,
    }
}

/// Percent-decodes a value; invalid UTF-8 in the result becomes U+FFFD and a
/// `%` that does not start an escape is kept literally.
pub fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    // Sized exactly, so the string needs no shrinking when it is stored.
    let escapes = (0..bytes.len()).filter(|&i| escape_at(bytes, i).is_some()).count();
    if escapes == 0 {
        return raw.to_owned();
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_sub(2 * escapes));
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match escape_at(bytes, i) {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Characters a value keeps as they are on the wire; everything else is `%XX`.
#[inline]
fn is_unencoded(b: u8) -> bool {
    // Baggage octets except '%' (so a literal '%' survives decoding) and '='
    // (some decoders split on every '=').
    class(b) & PLAIN != 0
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `value` percent-encoded; runs of bytes that need no encoding are
/// copied whole.
fn percent_encode_into(value: &str, out: &mut Vec<u8>) {
    let mut rest = value.as_bytes();
    loop {
        let at = rest.iter().position(|&b| !is_unencoded(b)).unwrap_or(rest.len());
        let (plain, tail) = rest.split_at(at);
        out.extend_from_slice(plain);
        let Some((&b, tail)) = tail.split_first() else {
            return;
        };
        out.extend_from_slice(&[b'%', HEX_UPPER[usize::from(b >> 4)], HEX_UPPER[usize::from(b & 0x0f)]]);
        rest = tail;
    }
}

/// Encodes baggage as a `baggage` header value, keeping within [`MAX_MEMBERS`]
/// and [`MAX_BYTES`] by leaving out whole members that would not fit.
///
/// The returned string has no spare capacity: an http `HeaderValue` takes
/// such a buffer as it is, where spare capacity costs it another allocation.
pub fn encode_baggage(baggage: &Baggage) -> String {
    thread_local! {
        // Where the header is written before it is copied out at its exact
        // length; reused, so encoding allocates once.
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let encoded = SCRATCH.try_with(|scratch| {
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            return None;
        };
        scratch.clear();
        encode_into(baggage, &mut scratch);
        let header = as_text(&scratch);
        if scratch.capacity() > MAX_BYTES * 2 {
            *scratch = Vec::new();
        }
        Some(header)
    });
    encoded.ok().flatten().unwrap_or_else(|| {
        // Only while the thread is being torn down.
        let mut header = Vec::new();
        encode_into(baggage, &mut header);
        as_text(&header)
    })
}

/// The encoded header as a string. It is ASCII keys and encoded values plus
/// properties that were text already, so the lossy branch is never taken.
fn as_text(encoded: &[u8]) -> String {
    match std::str::from_utf8(encoded) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(encoded).into_owned(),
    }
}

/// Keys are written as they are: `Baggage` admits only keys that are tokens
/// (the same rule as [`is_valid_key`]; a test holds the two together).
fn encode_into(baggage: &Baggage, out: &mut Vec<u8>) {
    let mut members = 0usize;
    for (key, (value, metadata)) in baggage {
        if members == MAX_MEMBERS {
            break;
        }
        let start = out.len();
        if members > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key.as_str().as_bytes());
        out.push(b'=');
        percent_encode_into(value.as_str(), out);
        let metadata = metadata.as_str();
        if !metadata.is_empty() {
            out.push(b';');
            out.extend_from_slice(metadata.as_bytes());
        }
        if out.len() > MAX_BYTES {
            out.truncate(start);
            continue;
        }
        members += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::KeyValueMetadata;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn get<'a>(b: &'a Baggage, k: &str) -> Option<&'a str> {
        b.get(k).map(|v| v.as_str())
    }

    #[test]
    fn decodes_members_with_properties_and_ows() {
        let b = decode_baggage(["key1 = value1 ; prop1 ; p2=v2 , key2=a=b", "key3=%F0%9F%98%8A"]);
        assert_eq!(get(&b, "key1"), Some("value1"));
        assert_eq!(b.get_with_metadata("key1").unwrap().1.as_str(), "prop1 ; p2=v2");
        assert_eq!(get(&b, "key2"), Some("a=b"));
        assert_eq!(get(&b, "key3"), Some("😊"));
    }

    #[test]
    fn invalid_utf8_becomes_replacement_char() {
        let b = decode_baggage(["k=%FF%FEok"]);
        assert_eq!(get(&b, "k"), Some("\u{FFFD}\u{FFFD}ok"));
    }

    #[test]
    fn literal_percent_stays() {
        let b = decode_baggage(["k=100%,j=%zz,i=50%2"]);
        assert_eq!(get(&b, "k"), Some("100%"));
        assert_eq!(get(&b, "j"), Some("%zz"));
        assert_eq!(get(&b, "i"), Some("50%2"));
    }

    #[test]
    fn malformed_members_are_skipped_alone() {
        let b = decode_baggage(["good=1,no-equals,bad key=2,=3,also=\"quoted\",k=v;bad prop=x,ok=2"]);
        assert_eq!(get(&b, "good"), Some("1"));
        assert_eq!(get(&b, "ok"), Some("2"));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn member_limit_drops_whole_members() {
        let header: Vec<String> = (0..70).map(|i| format!("k{i}=v{i}")).collect();
        let b = decode_baggage([header.join(",").as_str()]);
        assert_eq!(b.len(), MAX_MEMBERS);
        assert!(get(&b, "k63").is_some());
        assert!(get(&b, "k64").is_none());
    }

    #[test]
    fn byte_limit_drops_whole_members() {
        let big = "x".repeat(3000);
        let header = format!("a={big},b={big},c={big},d=1");
        let b = decode_baggage([header.as_str()]);
        assert_eq!(get(&b, "a").map(str::len), Some(3000));
        assert_eq!(get(&b, "b").map(str::len), Some(3000));
        assert!(get(&b, "c").is_none(), "third member would pass 8192 bytes");
        assert_eq!(get(&b, "d"), Some("1"), "a later small member still fits");
    }

    #[test]
    fn byte_limit_counts_members_without_surrounding_whitespace() {
        let fits = format!(" \t a={} \t ", "x".repeat(MAX_BYTES - 2));
        assert_eq!(decode_baggage([fits.as_str()]).len(), 1);
        let too_long = format!("a={}", "x".repeat(MAX_BYTES - 1));
        assert!(decode_baggage([too_long.as_str()]).is_empty());
        // The ',' before a second member counts.
        let second = format!("a={},b=1", "x".repeat(MAX_BYTES - 6));
        assert_eq!(decode_baggage([second.as_str()]).len(), 2);
        let second = format!("a={},b=1", "x".repeat(MAX_BYTES - 5));
        assert_eq!(decode_baggage([second.as_str()]).len(), 1);
    }

    /// `encode_into` relies on `Baggage` refusing keys that are not tokens.
    #[test]
    fn baggage_admits_exactly_the_keys_we_would_send() {
        let mut keys: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
        keys.extend(["", "ok", "a b", "a,b", "é", "x\u{1F600}", "tab\t", "semi;colon", "k=v"].map(String::from));
        for key in keys {
            let mut b = Baggage::new();
            b.insert(key.clone(), "v");
            assert_eq!(b.len() == 1, is_valid_key(&key), "key {key:?}");
            assert!(b.len() != 1 || encode_baggage(&b) == format!("{key}=v"));
        }
    }

    #[test]
    fn encode_never_exceeds_limits() {
        let big = "y".repeat(3000);
        let b = Baggage::from_iter((0..3).map(|i| KeyValue::new(format!("k{i}"), big.clone())));
        let header = encode_baggage(&b);
        assert!(header.len() <= MAX_BYTES);
        assert_eq!(header.split(',').count(), 2);
    }

    #[test]
    fn values_survive_many_hops() {
        let original = "100% sure, a=b; \"q\" \\ é 😊 %41";
        let mut cx = Context::new().with_baggage([KeyValueMetadata::new("k", original, "p=1")]);
        let p = BaggagePropagator::new();
        for _ in 0..5 {
            let mut carrier = HashMap::new();
            p.inject_context(&cx, &mut carrier);
            cx = p.extract(&carrier);
        }
        assert_eq!(get(cx.baggage(), "k"), Some(original));
        assert_eq!(cx.baggage().get_with_metadata("k").unwrap().1.as_str(), "p=1");
    }

    #[test]
    fn empty_or_missing_header_leaves_context_unchanged() {
        let p = BaggagePropagator::new();
        let cx = p.extract(&HashMap::<String, String>::new());
        assert!(cx.baggage().is_empty());
        let mut carrier = HashMap::new();
        carrier.insert("baggage".to_string(), " , ".to_string());
        assert!(p.extract(&carrier).baggage().is_empty());
        let mut out = HashMap::new();
        p.inject_context(&Context::new(), &mut out);
        assert!(out.is_empty());
    }

    /// The decoding rules read straight from the specifications, written for
    /// clarity rather than speed, to check the table-driven decoder against:
    /// key -> (decoded value, properties).
    fn reference(values: &[String]) -> HashMap<String, (String, String)> {
        let ows: &[char] = &[' ', '\t'];
        let token = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
        };
        let octet = |c: char| ('!'..='~').contains(&c) && !"\",;\\".contains(c);
        let property = |p: &str| match p.split_once('=') {
            None => token(p.trim_matches(ows)),
            Some((k, v)) => token(k.trim_matches(ows)) && v.trim_matches(ows).chars().all(octet),
        };
        let decode = |v: &str| {
            let b = v.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                let hex = |j: usize| b.get(j).and_then(|c| char::from(*c).to_digit(16));
                match (b[i], hex(i + 1), hex(i + 2)) {
                    (b'%', Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    (c, _, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        };
        let mut out = HashMap::new();
        let (mut members, mut bytes) = (0, 0);
        for member in values.iter().flat_map(|v| v.split(',')) {
            let member = member.trim_matches(ows);
            if member.is_empty() {
                continue;
            }
            let (kv, props) = match member.split_once(';') {
                Some((kv, props)) => (kv, Some(props)),
                None => (member, None),
            };
            let Some((key, value)) = kv.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim_matches(ows), value.trim_matches(ows));
            if !token(key) || !value.chars().all(octet) || !props.is_none_or(|p| p.split(';').all(property)) {
                continue;
            }
            let cost = member.len() + usize::from(members > 0);
            if members == MAX_MEMBERS || bytes + cost > MAX_BYTES {
                continue;
            }
            members += 1;
            bytes += cost;
            // opentelemetry keeps properties with surrounding whitespace trimmed.
            out.insert(
                key.to_owned(),
                (decode(value), props.unwrap_or_default().trim().to_owned()),
            );
        }
        out
    }

    /// Header values whose members are mostly valid, with the occasional
    /// broken key, value, property or separator.
    fn near_valid_headers() -> impl Strategy<Value = Vec<String>> {
        let key = prop_oneof![6 => "[A-Za-z0-9!#$&'*+.^_`|~-]{1,4}", 1 => "[a-z ;=,\"%\t]{0,4}"];
        let value = prop_oneof![
            6 => "(%[0-9A-Fa-f]{2}|%[0-9g]?|[!#-+\\--:<-\\[\\]-~ ]){0,5}",
            1 => "[ -~\t]{0,5}",
        ];
        let props = prop_oneof![4 => Just(String::new()), 1 => "(;[a-z \t]{0,3}(=[!-~ ]{0,3})?){1,2}"];
        let ows = || prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("\t "), 1 => Just("x")];
        let eq = prop_oneof![8 => Just("="), 1 => Just(""), 1 => Just(";")];
        let member = ((ows(), key, ows(), eq), (ows(), value, ows(), props))
            .prop_map(|((a, k, b, e), (c, v, d, p))| format!("{a}{k}{b}{e}{c}{v}{d}{p}"));
        let header = proptest::collection::vec(member, 0..8).prop_map(|m| m.join(","));
        proptest::collection::vec(header, 0..3)
    }

    proptest! {
        #[test]
        fn agrees_with_the_specification_reference(values in near_valid_headers()) {
            let baggage = decode_baggage(values.iter().map(String::as_str));
            let ours: HashMap<String, (String, String)> = baggage
                .iter()
                .map(|(k, (v, m))| (k.as_str().to_owned(), (v.as_str().to_owned(), m.as_str().to_owned())))
                .collect();
            prop_assert_eq!(ours, reference(&values));
        }

        #[test]
        fn decode_never_panics(values in proptest::collection::vec(".{0,200}", 0..3)) {
            let _ = decode_baggage(values.iter().map(String::as_str));
        }

        #[test]
        fn percent_decode_never_panics(s in ".{0,64}") {
            let _ = percent_decode(&s);
        }

        #[test]
        fn encoded_header_is_allocated_exactly_and_round_trips(
            entries in proptest::collection::btree_map("[A-Za-z0-9_.-]{1,8}", (".{0,12}", "(p=[a-z0-9]{1,3})?"), 0..8),
            big in proptest::option::of(7000usize..8200),
        ) {
            let mut b = Baggage::from_iter(entries.iter().map(|(k, (v, m))| KeyValueMetadata::new(k.clone(), v.clone(), m.as_str())));
            if let Some(n) = big {
                b.insert("big", "x".repeat(n));
            }
            let header = encode_baggage(&b);
            prop_assert_eq!(header.capacity(), header.len());
            prop_assert!(header.len() <= MAX_BYTES);
            let back = decode_baggage([header.as_str()]);
            for (k, (v, m)) in &back {
                prop_assert_eq!(b.get_with_metadata(k.as_str()), Some(&(v.clone(), m.clone())));
            }
            // Only a member that would pass the byte limit is left out.
            if big.is_none() {
                prop_assert_eq!(back.len(), b.len());
            }
        }

        #[test]
        fn encoder_matches_a_byte_by_byte_reading_of_the_spec(value in "[ -~\t%=,;\"\\\\é\u{1F600}]{0,40}") {
            // baggage-octet, minus '%' and '=' which are always encoded.
            let reference: String = value
                .bytes()
                .map(|b| match b {
                    b'%' | b'=' => format!("%{b:02X}"),
                    0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E => char::from(b).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            let mut out = b"k=".to_vec();
            percent_encode_into(&value, &mut out);
            prop_assert_eq!(std::str::from_utf8(&out[2..]).ok(), Some(reference.as_str()));
        }

        #[test]
        fn any_value_round_trips(key in "[A-Za-z0-9_.-]{1,16}", value in ".{0,64}") {
            let b = Baggage::from_iter([KeyValue::new(key.clone(), value.clone())]);
            let header = encode_baggage(&b);
            let back = decode_baggage([header.as_str()]);
            prop_assert_eq!(back.get(&key).map(|v| v.as_str().to_owned()), Some(value));
        }
    }
}
