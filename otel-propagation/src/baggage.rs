//! The W3C Baggage propagator and its codec.

use opentelemetry::Context;
use opentelemetry::baggage::{Baggage, BaggageExt, BaggageMetadata};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::{Key, StringValue};
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

#[inline]
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 7230 `tchar`: the characters of a baggage key.
#[inline]
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// Whether `key` is a valid baggage key (an RFC 7230 token).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(is_tchar)
}

/// W3C `baggage-octet`: what a raw (encoded) value may contain.
#[inline]
fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn is_valid_property(property: &str) -> bool {
    match property.split_once('=') {
        None => is_valid_key(property.trim_matches(is_ows)),
        Some((k, v)) => is_valid_key(k.trim_matches(is_ows)) && v.trim_matches(is_ows).bytes().all(is_baggage_octet),
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
        for member in value.split(',') {
            let member = member.trim_matches(is_ows);
            if member.is_empty() {
                continue;
            }
            let Some(parsed) = parse_member(member) else {
                continue;
            };
            // Limits count members as they would be written: with a ',' between them.
            let cost = member.len() + usize::from(members > 0);
            if members == MAX_MEMBERS || bytes + cost > MAX_BYTES {
                continue;
            }
            members += 1;
            bytes += cost;
            let (key, value, metadata) = parsed;
            baggage.insert_with_metadata(key, value, metadata);
        }
    }
    baggage
}

fn parse_member(member: &str) -> Option<(Key, StringValue, BaggageMetadata)> {
    let (kv, properties) = match member.split_once(';') {
        Some((kv, props)) => (kv, Some(props)),
        None => (member, None),
    };
    let (key, raw_value) = kv.split_once('=')?;
    let key = key.trim_matches(is_ows);
    let raw_value = raw_value.trim_matches(is_ows);
    if !is_valid_key(key) || !raw_value.bytes().all(is_baggage_octet) {
        return None;
    }
    let metadata = match properties {
        None => BaggageMetadata::default(),
        Some(props) => {
            if !props.split(';').all(is_valid_property) {
                return None;
            }
            BaggageMetadata::from(props)
        }
    };
    Some((
        Key::from(key.to_owned()),
        StringValue::from(percent_decode(raw_value)),
        metadata,
    ))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a value; invalid UTF-8 in the result becomes U+FFFD and a
/// `%` that does not start an escape is kept literally.
pub fn percent_decode(raw: &str) -> String {
    if !raw.contains('%') {
        return raw.to_owned();
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
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
    is_baggage_octet(b) && b != b'%' && b != b'='
}

/// Appends `value` percent-encoded.
pub fn percent_encode_into(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if is_unencoded(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// Encodes baggage as a `baggage` header value, keeping within [`MAX_MEMBERS`]
/// and [`MAX_BYTES`] by leaving out whole members that would not fit.
pub fn encode_baggage(baggage: &Baggage) -> String {
    let mut out = String::with_capacity(baggage.len() * 24);
    let mut members = 0usize;
    for (key, (value, metadata)) in baggage {
        if members == MAX_MEMBERS {
            break;
        }
        if !is_valid_key(key.as_str()) {
            continue;
        }
        let start = out.len();
        if members > 0 {
            out.push(',');
        }
        out.push_str(key.as_str());
        out.push('=');
        percent_encode_into(value.as_str(), &mut out);
        let metadata = metadata.as_str();
        if !metadata.is_empty() {
            out.push(';');
            out.push_str(metadata);
        }
        if out.len() > MAX_BYTES {
            out.truncate(start);
            continue;
        }
        members += 1;
    }
    out
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

    proptest! {
        #[test]
        fn decode_never_panics(values in proptest::collection::vec(".{0,200}", 0..3)) {
            let _ = decode_baggage(values.iter().map(String::as_str));
        }

        #[test]
        fn percent_decode_never_panics(s in ".{0,64}") {
            let _ = percent_decode(&s);
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
