//! The W3C `tracestate` header: strict parsing of one or more header values and
//! formatting without intermediate strings.
//!
//! Keys follow the grammar of the W3C Trace Context text as it reads today
//! (Level 2 editor's draft, section "Key"; the harness at commit acab820, "Fix
//! tracestate key grammar tests"): `( lcalpha / DIGIT ) 0*255 keychar` with
//! `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`, so `@` may appear
//! anywhere after the first character, any number of times. Values are 1 to
//! 256 printable ASCII characters without `,` and `=` that do not end in a
//! space. A key that appears twice keeps its first member (the text lets
//! vendors discard duplicates); the rest of the list is kept.
//!
//! # Keys opentelemetry cannot hold
//!
//! opentelemetry's `TraceState` still checks keys against an older grammar: at
//! most one `@`, at most 13 characters after it. A member it would refuse is
//! carried inside the `TraceState` in a form it takes: the key escaped (`@`
//! as `*-`, `*` as `**`) behind [`CARRIED_PREFIX`], as much of it as fits a
//! key, the rest of it at the start of the value before a `~`. Every reader in
//! this crate family turns it back into the original: [`format_tracestate`]
//! (outgoing headers), [`members`] and [`get`] (the tail sampler's
//! `trace_state` policy, the OTLP encoders). Members whose key starts with the
//! prefix are carried the same way, so a carried member is never confused
//! with a real one. The one case left out: a carried member whose escaped key
//! and value together exceed about 500 characters (many `@` or `*` in a key
//! near the length limit, with a long value); only that member is dropped.
//!
//! ```
//! use otel_propagation::tracestate::{parse_tracestate, format_tracestate};
//!
//! let ts = parse_tracestate(["congo=t61rcWkgMzE", " , rojo=00f067aa0ba902b7"]).unwrap();
//! assert_eq!(format_tracestate(&ts), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
//! ```

use crate::lex::{comma_from, split_around, trim_ows};
use opentelemetry::trace::TraceState;
use std::borrow::Cow;
use std::fmt;

/// At most this many list members; a longer list is discarded whole.
pub const MAX_MEMBERS: usize = 32;
const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 256;
/// The longest system id (the part after `@`) opentelemetry's `TraceState` takes.
const OTEL_MAX_SYSTEM_LEN: usize = 13;

/// The key prefix of a member carried for opentelemetry's `TraceState`, which
/// refuses its key (see the [module documentation](self)).
pub const CARRIED_PREFIX: &str = "0tsx*";
/// Ends the rest of the escaped key in a carried member's value (no escaped
/// key contains it).
const CARRIED_SEPARATOR: char = '~';
/// How much of an escaped key the carried member's key holds.
const CARRIED_KEY_ROOM: usize = MAX_KEY_LEN - CARRIED_PREFIX.len();

/// Why a `tracestate` value was discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TraceStateError {
    /// More than 32 list members.
    TooManyMembers,
    /// A list member without `=`.
    MissingEquals,
    /// A key outside the key grammar.
    InvalidKey,
    /// A value outside the value grammar.
    InvalidValue,
}

impl fmt::Display for TraceStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooManyMembers => "tracestate has more than 32 list members",
            Self::MissingEquals => "tracestate list member is not key=value",
            Self::InvalidKey => {
                "tracestate key must start with a lowercase letter or digit, then lowercase letters, digits, '_', '-', '*', '/' or '@', at most 256 characters"
            }
            Self::InvalidValue => {
                "tracestate value must be 1 to 256 printable ASCII characters without ',' or '=' and must not end in a space"
            }
        })
    }
}

impl std::error::Error for TraceStateError {}

/// Byte classes of the tracestate grammar, one table lookup per byte.
const KEY: u8 = 1; // a-z 0-9 _ - * / @
const KEY_FIRST: u8 = 2; // a-z 0-9
const VALUE: u8 = 8; // printable ASCII (0x20-0x7e) except ',' and '='

static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0x20;
    while b <= 0x7e {
        if b != b',' as usize && b != b'=' as usize {
            table[b] = VALUE;
        }
        b += 1;
    }
    let mut b = b'a' as usize;
    while b <= b'z' as usize {
        table[b] |= KEY | KEY_FIRST;
        b += 1;
    }
    let mut b = b'0' as usize;
    while b <= b'9' as usize {
        table[b] |= KEY | KEY_FIRST;
        b += 1;
    }
    table[b'_' as usize] |= KEY;
    table[b'-' as usize] |= KEY;
    table[b'*' as usize] |= KEY;
    table[b'/' as usize] |= KEY;
    table[b'@' as usize] |= KEY;
    table
};

#[inline]
fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

/// Checks a key against the current grammar.
#[inline]
fn check_key(key: &[u8]) -> bool {
    match key.split_first() {
        Some((&first, rest)) => {
            key.len() <= MAX_KEY_LEN && class(first) & KEY_FIRST != 0 && rest.iter().all(|&b| class(b) & KEY != 0)
        }
        None => false,
    }
}

/// Whether opentelemetry's `TraceState` takes a (valid) key as it is: at most
/// one `@`, followed by a lowercase letter or digit (or nothing) and at most
/// 13 characters; and not a key this module uses for carried members.
#[inline]
fn otel_holds(key: &str) -> bool {
    if key.starts_with(CARRIED_PREFIX) {
        return false;
    }
    let bytes = key.as_bytes();
    match bytes.iter().position(|&b| b == b'@') {
        None => true,
        Some(at) => {
            let system = &bytes[at + 1..];
            system.len() <= OTEL_MAX_SYSTEM_LEN
                && !system.contains(&b'@')
                && system.first().is_none_or(|&b| class(b) & KEY_FIRST != 0)
        }
    }
}

#[inline]
fn check_value(value: &[u8]) -> bool {
    match value.last() {
        None | Some(b' ') => false,
        Some(_) => value.len() <= MAX_VALUE_LEN && value.iter().all(|&b| class(b) & VALUE != 0),
    }
}

/// Whether `key` is a valid tracestate key.
pub fn is_valid_key(key: &str) -> bool {
    check_key(key.as_bytes())
}

/// Whether `value` is a valid tracestate value.
pub fn is_valid_value(value: &str) -> bool {
    check_value(value.as_bytes())
}

/// Parses one or more `tracestate` header values as one list (repeated headers
/// are combined in order). Empty and whitespace-only members are skipped; a
/// key seen before keeps its first member.
///
/// # Errors
///
/// Any invalid member or more than 32 members invalidates the whole list; the
/// error says which rule was broken.
pub fn parse_tracestate<'a, I>(values: I) -> Result<TraceState, TraceStateError>
where
    I: IntoIterator<Item = &'a str>,
{
    // One pass: each member is validated as opentelemetry's TraceState takes
    // it, so nothing is stored twice; the first broken rule stops the list.
    let mut members = Members {
        values: values.into_iter(),
        rest: "",
        count: 0,
        kept: [""; MAX_MEMBERS],
        kept_len: 0,
        error: None,
    };
    let built = TraceState::from_key_value(members.by_ref());
    // A 33rd member (or a broken one after the 32nd) is only seen by pulling once more.
    if members.next().is_some() {
        return Err(TraceStateError::TooManyMembers);
    }
    if let Some(e) = members.error {
        return Err(e);
    }
    // Every member passed a check at least as strict as opentelemetry's (or
    // is carried in a form it takes), so this cannot fail; an empty list is
    // the safe answer if it ever did.
    Ok(built.unwrap_or_default())
}

/// The valid members of a list spread over header values, in order, without
/// repeated keys, in the form opentelemetry's `TraceState` takes; stops at the
/// first broken rule and records it.
struct Members<'a, I> {
    values: I,
    /// What is left of the header value being read.
    rest: &'a str,
    count: usize,
    /// Keys kept so far (duplicates are skipped).
    kept: [&'a str; MAX_MEMBERS],
    kept_len: usize,
    error: Option<TraceStateError>,
}

impl<'a, I: Iterator<Item = &'a str>> Iterator for Members<'a, I> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<(Cow<'a, str>, Cow<'a, str>)> {
        if self.error.is_some() {
            return None;
        }
        loop {
            if self.rest.is_empty() {
                self.rest = self.values.next()?;
                continue;
            }
            let (member, rest) = split_around(self.rest, comma_from(self.rest.as_bytes(), 0));
            self.rest = rest;
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let (key, value) = match check_member(member) {
                Ok(_) if self.count == MAX_MEMBERS => {
                    self.error = Some(TraceStateError::TooManyMembers);
                    return None;
                }
                Ok(kv) => kv,
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            };
            self.count += 1;
            if self.kept[..self.kept_len].contains(&key) {
                continue;
            }
            self.kept[self.kept_len] = key;
            self.kept_len += 1;
            if otel_holds(key) {
                return Some((Cow::Borrowed(key), Cow::Borrowed(value)));
            }
            match carry(key, value) {
                Some((k, v)) => return Some((Cow::Owned(k), Cow::Owned(v))),
                // Too long to carry: only this member is left out.
                None => continue,
            }
        }
    }
}

/// Splits and validates one (trimmed, non-empty) list member.
#[inline]
fn check_member(member: &str) -> Result<(&str, &str), TraceStateError> {
    let eq = member
        .bytes()
        .position(|b| b == b'=')
        .ok_or(TraceStateError::MissingEquals)?;
    let (key, value) = split_around(member, eq);
    if !check_key(key.as_bytes()) {
        return Err(TraceStateError::InvalidKey);
    }
    if !check_value(value.as_bytes()) {
        return Err(TraceStateError::InvalidValue);
    }
    Ok((key, value))
}

/// A member whose key opentelemetry refuses, in a form it takes (see the
/// [module documentation](self)); `None` when it does not fit.
fn carry(key: &str, value: &str) -> Option<(String, String)> {
    let mut escaped = String::with_capacity(key.len() + 8);
    for c in key.chars() {
        match c {
            '*' => escaped.push_str("**"),
            '@' => escaped.push_str("*-"),
            c => escaped.push(c),
        }
    }
    // Never split an escape pair between key and value.
    let mut cut = escaped.len().min(CARRIED_KEY_ROOM);
    if escaped[..cut].bytes().rev().take_while(|&b| b == b'*').count() % 2 == 1 {
        cut -= 1;
    }
    let (in_key, in_value) = escaped.split_at(cut);
    if in_value.len() + 1 + value.len() > MAX_VALUE_LEN {
        return None;
    }
    Some((
        format!("{CARRIED_PREFIX}{in_key}"),
        format!("{in_value}{CARRIED_SEPARATOR}{value}"),
    ))
}

/// The original key of an escaped one.
fn unescape(escaped: &str) -> String {
    let mut key = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        match (c, c == '*') {
            (_, true) => match chars.next() {
                Some('-') => key.push('@'),
                Some('*') | None => key.push('*'),
                Some(other) => {
                    key.push('*');
                    key.push(other);
                }
            },
            (c, false) => key.push(c),
        }
    }
    key
}

/// A member as the header carries it: a carried member turned back into its
/// original key and value.
#[inline]
fn original<'a>(key: &'a str, value: &'a str) -> (Cow<'a, str>, &'a str) {
    if let Some(in_key) = key.strip_prefix(CARRIED_PREFIX)
        && let Some((in_value, v)) = value.split_once(CARRIED_SEPARATOR)
    {
        let mut escaped = String::with_capacity(in_key.len() + in_value.len());
        escaped.push_str(in_key);
        escaped.push_str(in_value);
        return (Cow::Owned(unescape(&escaped)), v);
    }
    (Cow::Borrowed(key), value)
}

/// The members of `trace_state` as the header carries them, in order
/// (members carried for keys opentelemetry refuses are turned back into
/// their original key and value).
pub fn members(trace_state: &TraceState) -> impl Iterator<Item = (Cow<'_, str>, &str)> {
    trace_state.into_iter().map(|(k, v)| original(k, v))
}

/// The value of `key` in `trace_state`, also for a key opentelemetry's
/// `TraceState::get` cannot find because it carries it.
pub fn get<'a>(trace_state: &'a TraceState, key: &str) -> Option<&'a str> {
    members(trace_state).find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Formats a tracestate for an outgoing header: `k=v` members joined by `,`.
/// Returns an empty string for an empty tracestate (which must not be sent).
/// The `String`'s capacity is exactly its length, so `http::HeaderValue`
/// takes it without another allocation.
#[inline]
pub fn format_tracestate(trace_state: &TraceState) -> String {
    // Most spans carry no tracestate; comparing with `NONE` inlines to one test.
    if *trace_state == TraceState::NONE {
        return String::new();
    }
    format_members(trace_state)
}

fn format_members(trace_state: &TraceState) -> String {
    let mut len = 0;
    let mut count = 0;
    for (k, v) in members(trace_state) {
        len += k.len() + v.len() + 2;
        count += 1;
    }
    if count == 0 {
        return String::new();
    }
    let mut out = String::with_capacity(len - 1);
    for (i, (k, v)) in members(trace_state).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&k);
        out.push('=');
        out.push_str(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(v: &[&str]) -> Result<TraceState, TraceStateError> {
        parse_tracestate(v.iter().copied())
    }

    #[test]
    fn combines_repeated_headers_in_order() {
        let ts = parse(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]).unwrap();
        assert_eq!(format_tracestate(&ts), "foo=1,bar=2,rojo=1,congo=2,baz=3");
    }

    #[test]
    fn tolerates_empty_members_and_ows() {
        let ts = parse(&["foo=1 \t , \t bar=2, \t baz=3", "", " , ,"]).unwrap();
        assert_eq!(format_tracestate(&ts), "foo=1,bar=2,baz=3");
        assert_eq!(parse(&[""]).unwrap(), TraceState::NONE);
        assert_eq!(parse(&[" \t "]).unwrap(), TraceState::NONE);
        let ts = parse(&[",, foo=1,\t,bar=2,", ","]).unwrap();
        assert_eq!(format_tracestate(&ts), "foo=1,bar=2");
    }

    #[test]
    fn thirty_two_members_kept_thirty_three_discarded() {
        let list: Vec<String> = (1..=32).map(|i| format!("bar{i:02}={i:02}")).collect();
        let ts = parse(&[&list.join(",")]).unwrap();
        assert_eq!(ts.into_iter().count(), 32);
        let list: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        assert_eq!(parse(&[&list.join(",")]), Err(TraceStateError::TooManyMembers));
    }

    #[test]
    fn a_repeated_key_keeps_its_first_member() {
        let f = |v: &[&str]| format_tracestate(&parse(v).unwrap());
        assert_eq!(f(&["foo=1,foo=1"]), "foo=1");
        assert_eq!(f(&["foo=1", "foo=2"]), "foo=1");
        assert_eq!(f(&["foo=1,bar=2,foo=3,baz=4"]), "foo=1,bar=2,baz=4");
        // A repeat still counts toward the 32-member limit of the header.
        let list: Vec<String> = (0..33).map(|i| format!("k{}={i}", i % 2)).collect();
        assert_eq!(parse(&[&list.join(",")]), Err(TraceStateError::TooManyMembers));
    }

    #[test]
    fn key_grammar() {
        let all = "abcdefghijklmnopqrstuvwxyz0123456789_-*/@";
        assert!(is_valid_key(all));
        assert!(is_valid_key(&"z".repeat(256)));
        assert!(!is_valid_key(&"z".repeat(257)));
        // `@` anywhere after the first character, any number of times.
        for good in [
            "foo@",
            "foo@@bar",
            "foo@bar@baz",
            "foo@1bar",
            "foo@_bar",
            "1foo",
            "ot",
            "t@vvvvvvvvvvvvvvv",
        ] {
            assert!(is_valid_key(good), "{good:?}");
        }
        assert!(is_valid_key(&format!("{}@{}", "t".repeat(241), "v".repeat(14))));
        assert!(is_valid_key(&format!("{}@v", "t".repeat(242))));
        assert!(!is_valid_key(&format!("{}@{}", "t".repeat(241), "v".repeat(15))));
        for bad in ["", "foo ", "FOO", "foo.bar", "@foo", "_foo", "*foo", "foo=", "fo o"] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn value_grammar() {
        let value: String = (0x20u8..=0x2b)
            .chain(0x2d..=0x3c)
            .chain(0x3e..=0x7e)
            .map(char::from)
            .collect();
        assert!(is_valid_value(&value));
        assert!(is_valid_value(" leading-space-kept"));
        assert!(!is_valid_value(""));
        assert!(!is_valid_value("trailing "));
        assert!(!is_valid_value("bar=baz"));
        assert!(!is_valid_value("a,b"));
        assert!(!is_valid_value("tab\there"));
        assert!(!is_valid_value("é"));
        assert!(is_valid_value(&"v".repeat(256)));
        assert!(!is_valid_value(&"v".repeat(257)));
    }

    #[test]
    fn invalid_member_invalidates_the_list() {
        assert_eq!(parse(&["foo=bar=baz"]), Err(TraceStateError::InvalidValue));
        assert_eq!(parse(&["foo=,bar=3"]), Err(TraceStateError::InvalidValue));
        assert_eq!(parse(&["foo =1"]), Err(TraceStateError::InvalidKey));
        assert_eq!(parse(&["@foo=1,bar=2"]), Err(TraceStateError::InvalidKey));
        assert_eq!(parse(&["foo"]), Err(TraceStateError::MissingEquals));
        assert_eq!(
            parse(&["foo=1", &format!("{}=1", "z".repeat(257))]),
            Err(TraceStateError::InvalidKey)
        );
    }

    #[test]
    fn leading_space_in_value_is_preserved() {
        let ts = parse(&["foo= 1"]).unwrap();
        assert_eq!(ts.get("foo"), Some(" 1"));
    }

    #[test]
    fn keys_opentelemetry_refuses_are_carried_end_to_end() {
        // The W3C harness's cases (acab820): all kept, in order, as sent.
        let long = format!("{}@{}", "t".repeat(241), "v".repeat(14));
        let tenant = format!("{}@v", "t".repeat(242));
        for header in [
            "foo@=1,bar=2".to_owned(),
            "foo@@bar=1,bar=2".to_owned(),
            "foo@bar@baz=1,bar=2".to_owned(),
            format!("foo=1,{long}=1"),
            format!("foo=1,{tenant}=1"),
            format!("foo=1,t@{}=1", "v".repeat(15)),
        ] {
            let ts = parse(&[&header]).unwrap();
            assert_eq!(format_tracestate(&ts), header);
            for member in header.split(',') {
                let (k, v) = member.split_once('=').unwrap();
                assert_eq!(get(&ts, k), Some(v), "{k}");
            }
        }
        // Carried members are opaque to opentelemetry's own reader...
        let ts = parse(&["foo@bar@baz=1,bar=2"]).unwrap();
        assert_eq!(ts.get("foo@bar@baz"), None);
        assert_eq!(ts.get("bar"), Some("2"));
        // ...and a real key that looks like a carried one is carried too.
        let looks_carried = format!("{CARRIED_PREFIX}0*x=x,foo@bar@baz=1,a**b@*-c@d=2");
        let ts = parse(&[&looks_carried]).unwrap();
        assert_eq!(format_tracestate(&ts), looks_carried);
        // The one case left out: too long to carry (a 256-character key of
        // `@`s escapes to 511 characters, with a 100-character value).
        let huge = format!("a{}", "@".repeat(255));
        let ts = parse(&[&format!("foo=1,{huge}={},bar=2", "v".repeat(100))]).unwrap();
        assert_eq!(format_tracestate(&ts), "foo=1,bar=2");
    }

    #[test]
    fn empty_tracestate_formats_empty() {
        assert_eq!(format_tracestate(&TraceState::NONE), "");
    }

    /// The rules read straight from the specification, written for clarity
    /// rather than speed, to check the table-driven parser against.
    fn reference(values: &[String]) -> Result<Vec<(String, String)>, TraceStateError> {
        fn key_ok(key: &str) -> bool {
            let mut chars = key.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && key.len() <= 256
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-*/@".contains(c))
        }
        fn value_ok(value: &str) -> bool {
            !value.is_empty()
                && value.len() <= 256
                && !value.ends_with(' ')
                && value.chars().all(|c| (' '..='~').contains(&c) && c != ',' && c != '=')
        }
        let mut out: Vec<(String, String)> = Vec::new();
        let mut count = 0;
        for member in values.iter().flat_map(|v| v.split(',')) {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let (key, value) = member.split_once('=').ok_or(TraceStateError::MissingEquals)?;
            if !key_ok(key) {
                return Err(TraceStateError::InvalidKey);
            }
            if !value_ok(value) {
                return Err(TraceStateError::InvalidValue);
            }
            if count == MAX_MEMBERS {
                return Err(TraceStateError::TooManyMembers);
            }
            count += 1;
            if out.iter().any(|(k, _)| k == key) {
                continue;
            }
            // Members opentelemetry's TraceState cannot hold are carried,
            // unless key and value are too long together.
            let held = !key.starts_with(CARRIED_PREFIX)
                && match key.split_once('@') {
                    None => true,
                    Some((_, system)) => {
                        system.len() <= 13
                            && !system.contains('@')
                            && system
                                .chars()
                                .next()
                                .is_none_or(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    }
                };
            let escaped = key.len() + key.matches(['@', '*']).count();
            let mut in_key = escaped.min(251);
            let star_run = key
                .chars()
                .flat_map(|c| match c {
                    '*' => "**".chars(),
                    '@' => "*-".chars(),
                    _ => "x".chars(),
                })
                .take(in_key)
                .collect::<String>()
                .chars()
                .rev()
                .take_while(|&c| c == '*')
                .count();
            if star_run % 2 == 1 {
                in_key -= 1;
            }
            if !held && escaped - in_key + 1 + value.len() > 256 {
                out.push((key.to_owned(), String::new()));
                continue;
            }
            out.push((key.to_owned(), value.to_owned()));
        }
        // A member too long to carry still blocks its key's repeats; then it is left out.
        out.retain(|(_, v)| !v.is_empty());
        Ok(out)
    }

    /// Header values whose members are mostly valid, with the occasional
    /// broken key, value, separator or whitespace, so that both outcomes and
    /// every rule are reached.
    fn near_valid_lists() -> impl Strategy<Value = Vec<String>> {
        let key = prop_oneof![
            4 => "[a-z0-9][a-z0-9_*/-]{0,4}",
            2 => "[a-z0-9][a-z0-9]{0,3}@[a-z][a-z0-9]{0,3}",
            1 => "[a-z0-9@.A-Z_ -]{0,5}",
            1 => Just("t@abcdefghijklmn".to_owned()),
            1 => Just("t@abcdefghijklmno".to_owned()),
            1 => "[a-z][a-z@]{0,4}@@?[a-z_]{0,3}",
            1 => Just(format!("{CARRIED_PREFIX}1")),
        ];
        let value = prop_oneof![
            6 => "[!-+\\--<>-~][ -+\\--<>-~]{0,4}",
            1 => "[ -~\t]{0,5}",
        ];
        let eq = prop_oneof![8 => Just("="), 1 => Just("")];
        let ows = prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just(" \t")];
        let member = prop_oneof![
            8 => (ows.clone(), key, eq, value, ows).prop_map(|(a, k, e, v, b)| format!("{a}{k}{e}{v}{b}")),
            1 => Just(String::new()),
            1 => Just(" \t".to_owned()),
        ];
        let list = proptest::collection::vec(member, 0..8).prop_map(|m| m.join(","));
        proptest::collection::vec(list, 0..3)
    }

    proptest! {
        #[test]
        fn never_panics(values in proptest::collection::vec(".{0,120}", 0..4)) {
            let _ = parse_tracestate(values.iter().map(String::as_str));
        }

        #[test]
        fn agrees_with_the_specification_reference(values in near_valid_lists()) {
            let ours = parse_tracestate(values.iter().map(String::as_str)).map(|ts| {
                members(&ts).map(|(k, v)| (k.into_owned(), v.to_owned())).collect::<Vec<_>>()
            });
            prop_assert_eq!(ours, reference(&values));
        }

        #[test]
        fn long_lists_agree_with_the_reference(
            n in 28usize..36,
            dup in proptest::option::of(1usize..36),
            unrepresentable in proptest::option::of(0usize..36),
        ) {
            let mut members: Vec<String> = (0..n).map(|i| format!("k{i}=v{i}")).collect();
            if let Some(d) = dup.filter(|&d| d < n) {
                members[d] = "k0=again".to_owned();
            }
            if let Some(u) = unrepresentable.filter(|&u| u < n) {
                members[u] = format!("t{u}@abcdefghijklmn=v");
            }
            let values = vec![members.join(",")];
            let ours = parse_tracestate(values.iter().map(String::as_str)).map(|ts| {
                super::members(&ts).map(|(k, v)| (k.into_owned(), v.to_owned())).collect::<Vec<_>>()
            });
            prop_assert_eq!(ours, reference(&values));
        }

        #[test]
        fn valid_lists_round_trip(members in proptest::collection::btree_map(
            "[a-z][a-z0-9_*/-]{0,20}(@[a-z0-9_@*]{0,20})?",
            "[!-+\\--<>-~][ -+\\--<>-~]{0,20}[!-+\\--<>-~]",
            1..32,
        )) {
            let text = members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            let ts = parse_tracestate([text.as_str()]).unwrap();
            let formatted = format_tracestate(&ts);
            // Exact capacity: `http::HeaderValue` takes the buffer without copying.
            prop_assert_eq!(formatted.capacity(), formatted.len());
            prop_assert_eq!(formatted, text);
        }
    }
}

#[cfg(test)]
mod carried {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every valid key that fits survives carrying, whatever its `@`s and `*`s.
        #[test]
        fn carried_members_come_back_as_sent(
            key in "[a-z0-9][a-z0-9_*/@-]{0,255}",
            value in "[!-+\\--<>-~]{1,40}",
        ) {
            // A key equal to a neighbour's makes the list carry a duplicate, another case.
            prop_assume!(key != "k" && key != "z");
            let header = format!("k=1,{key}={value},z=2");
            let ts = parse_tracestate([header.as_str()]).unwrap();
            let back: Vec<(String, String)> = members(&ts).map(|(k, v)| (k.into_owned(), v.to_owned())).collect();
            if back.len() == 3 {
                prop_assert_eq!(format_tracestate(&ts), header);
                prop_assert_eq!(get(&ts, &key), Some(value.as_str()));
            } else {
                // Left out only when escaping makes it too long to carry.
                prop_assert!(!otel_holds(&key));
                prop_assert!(carry(&key, &value).is_none());
                prop_assert_eq!(format_tracestate(&ts), "k=1,z=2");
            }
        }
    }
}
