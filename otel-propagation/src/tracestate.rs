//! The W3C `tracestate` header: strict parsing of one or more header values and
//! formatting without intermediate strings.
//!
//! Keys follow the Level 2 grammar: a simple key (`lcalpha`/`DIGIT` then up to 255
//! of `a-z 0-9 _ - * /`) or a multi-tenant key `tenant@system` (tenant of 1 to 241
//! characters starting with `lcalpha`/`DIGIT`, system of 1 to 14 starting with
//! `lcalpha`). Values are 1 to 256 printable ASCII characters without `,` and `=`
//! that do not end in a space.
//!
//! ```
//! use otel_propagation::tracestate::{parse_tracestate, format_tracestate};
//!
//! let ts = parse_tracestate(["congo=t61rcWkgMzE", " , rojo=00f067aa0ba902b7"]).unwrap();
//! assert_eq!(format_tracestate(&ts), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
//! ```

use crate::lex::{comma_from, split_around, trim_ows};
use opentelemetry::trace::TraceState;
use std::fmt;

/// At most this many list members; a longer list is discarded whole.
pub const MAX_MEMBERS: usize = 32;
const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 256;
const MAX_TENANT_LEN: usize = 241;
const MAX_SYSTEM_LEN: usize = 14;

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
    /// The same key appears twice.
    DuplicateKey,
}

impl fmt::Display for TraceStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooManyMembers => "tracestate has more than 32 list members",
            Self::MissingEquals => "tracestate list member is not key=value",
            Self::InvalidKey => {
                "tracestate key must be lowercase letters, digits, '_', '-', '*', '/' (tenant@system allowed), at most 256 characters"
            }
            Self::InvalidValue => {
                "tracestate value must be 1 to 256 printable ASCII characters without ',' or '=' and must not end in a space"
            }
            Self::DuplicateKey => "tracestate has the same key twice",
        })
    }
}

impl std::error::Error for TraceStateError {}

/// Byte classes of the tracestate grammar, one table lookup per byte.
const KEY: u8 = 1; // a-z 0-9 _ - * /
const KEY_FIRST: u8 = 2; // a-z 0-9
const LCALPHA: u8 = 4; // a-z
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
        table[b] |= KEY | KEY_FIRST | LCALPHA;
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
    table
};

#[inline]
fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

/// Checks a key; on success returns the length of its system id (0 for a simple key).
#[inline]
fn check_key(key: &[u8]) -> Option<usize> {
    let (&first, _) = key.split_first()?;
    if class(first) & KEY_FIRST == 0 {
        return None;
    }
    let mut at = None;
    for (i, &b) in key.iter().enumerate() {
        if class(b) & KEY == 0 {
            if b != b'@' || at.is_some() {
                return None;
            }
            at = Some(i);
        }
    }
    match at {
        None => (key.len() <= MAX_KEY_LEN).then_some(0),
        Some(at) => {
            let system = &key[at + 1..];
            (at <= MAX_TENANT_LEN
                && !system.is_empty()
                && system.len() <= MAX_SYSTEM_LEN
                && class(system[0]) & LCALPHA != 0)
                .then_some(system.len())
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

/// Whether `key` is a valid tracestate key (simple or `tenant@system`).
pub fn is_valid_key(key: &str) -> bool {
    check_key(key.as_bytes()).is_some()
}

/// Whether `value` is a valid tracestate value.
pub fn is_valid_value(value: &str) -> bool {
    check_value(value.as_bytes())
}

/// Parses one or more `tracestate` header values as one list (repeated headers
/// are combined in order). Empty and whitespace-only members are skipped.
///
/// # Errors
///
/// Any invalid member, a duplicate key or more than 32 members invalidates the
/// whole list; the error says which rule was broken.
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
    // Every member passed a check at least as strict as opentelemetry's, so
    // this cannot fail; an empty list is the safe answer if it ever did.
    let trace_state = built.unwrap_or_default();
    if has_duplicate_key(&trace_state) {
        return Err(TraceStateError::DuplicateKey);
    }
    Ok(trace_state)
}

/// The valid members of a list spread over header values, in order; stops at
/// the first broken rule and records it.
struct Members<'a, I> {
    values: I,
    /// What is left of the header value being read.
    rest: &'a str,
    count: usize,
    error: Option<TraceStateError>,
}

impl<'a, I: Iterator<Item = &'a str>> Iterator for Members<'a, I> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
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
            let result = check_member(member).and_then(|(key, value, system_len)| {
                if self.count == MAX_MEMBERS {
                    return Err(TraceStateError::TooManyMembers);
                }
                self.count += 1;
                Ok((key, value, system_len))
            });
            match result {
                // opentelemetry's own key check is narrower than the specification:
                // it refuses a system id of exactly 14 characters. Such members
                // cannot be represented in its TraceState, so only they are left
                // out; the rest of the list is kept intact and in order.
                Ok((_, _, MAX_SYSTEM_LEN)) => continue,
                Ok((key, value, _)) => return Some((key, value)),
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            }
        }
    }
}

/// Splits and validates one (trimmed, non-empty) list member; also returns the
/// length of the key's system id.
#[inline]
fn check_member(member: &str) -> Result<(&str, &str, usize), TraceStateError> {
    let eq = member
        .bytes()
        .position(|b| b == b'=')
        .ok_or(TraceStateError::MissingEquals)?;
    let (key, value) = split_around(member, eq);
    let system_len = check_key(key.as_bytes()).ok_or(TraceStateError::InvalidKey)?;
    if !check_value(value.as_bytes()) {
        return Err(TraceStateError::InvalidValue);
    }
    Ok((key, value, system_len))
}

/// Whether two members share a key (lists are at most 32 long, so pairwise is cheapest).
fn has_duplicate_key(trace_state: &TraceState) -> bool {
    trace_state
        .into_iter()
        .enumerate()
        .any(|(i, (key, _))| trace_state.into_iter().take(i).any(|(earlier, _)| earlier == key))
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
    // Most tracestates have a few members: one walk over the `TraceState`
    // keeps them on the stack while it sizes the value; only longer ones are
    // walked a second time.
    const ON_STACK: usize = 4;
    let mut first = [("", ""); ON_STACK];
    let mut iter = trace_state.into_iter();
    let mut count = 0;
    let mut len = 0;
    for slot in &mut first {
        let Some((k, v)) = iter.next() else {
            break;
        };
        *slot = (k, v);
        len += k.len() + v.len() + 2;
        count += 1;
    }
    if count == 0 {
        return String::new();
    }
    let rest = count == ON_STACK && iter.len() > 0;
    if rest {
        len += iter.map(|(k, v)| k.len() + v.len() + 2).sum::<usize>();
    }
    let tail = rest.then(|| trace_state.into_iter().skip(ON_STACK));
    let mut out = String::with_capacity(len - 1);
    for (i, (k, v)) in first[..count]
        .iter()
        .copied()
        .chain(tail.into_iter().flatten())
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
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
    fn duplicate_keys_invalidate() {
        assert_eq!(parse(&["foo=1,foo=1"]), Err(TraceStateError::DuplicateKey));
        assert_eq!(parse(&["foo=1", "foo=2"]), Err(TraceStateError::DuplicateKey));
    }

    #[test]
    fn key_grammar() {
        let all = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
        assert!(is_valid_key(all));
        assert!(is_valid_key(&format!("{all}@a-z0-9_-*/")));
        assert!(is_valid_key(&"z".repeat(256)));
        assert!(!is_valid_key(&"z".repeat(257)));
        assert!(is_valid_key(&format!("{}@{}", "t".repeat(241), "v".repeat(14))));
        assert!(!is_valid_key(&format!("{}@v", "t".repeat(242))));
        assert!(!is_valid_key(&format!("t@{}", "v".repeat(15))));
        for bad in [
            "",
            "foo ",
            "FOO",
            "foo.bar",
            "foo@",
            "@foo",
            "foo@@bar",
            "foo@bar@baz",
            "_foo",
            "foo@1bar",
        ] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
        assert!(is_valid_key("1foo"));
        assert!(is_valid_key("ot"));
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
        assert_eq!(parse(&["foo@=1,bar=2"]), Err(TraceStateError::InvalidKey));
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
    fn fourteen_character_system_ids_are_left_out_not_the_list() {
        // opentelemetry's TraceState cannot hold this valid key; the others survive in order.
        let long = format!("{}@{}", "t".repeat(241), "v".repeat(14));
        let ts = parse(&["foo=1", &format!("{long}=1"), "bar=2"]).unwrap();
        assert_eq!(format_tracestate(&ts), "foo=1,bar=2");
    }

    #[test]
    fn empty_tracestate_formats_empty() {
        assert_eq!(format_tracestate(&TraceState::NONE), "");
    }

    /// The rules read straight from the specification, written for clarity
    /// rather than speed, to check the table-driven parser against.
    fn reference(values: &[String]) -> Result<Vec<(String, String)>, TraceStateError> {
        fn simple(key: &str, max: usize) -> bool {
            let mut chars = key.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && key.len() <= max
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-*/".contains(c))
        }
        fn key_ok(key: &str) -> bool {
            match key.split_once('@') {
                None => simple(key, 256),
                Some((tenant, system)) => {
                    simple(tenant, 241) && simple(system, 14) && system.starts_with(|c: char| c.is_ascii_lowercase())
                }
            }
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
            if key
                .split_once('@')
                .is_some_and(|(_, system)| system.len() == MAX_SYSTEM_LEN)
            {
                continue;
            }
            out.push((key.to_owned(), value.to_owned()));
        }
        let keys: std::collections::HashSet<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        if keys.len() != out.len() {
            return Err(TraceStateError::DuplicateKey);
        }
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
                ts.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>()
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
                ts.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>()
            });
            prop_assert_eq!(ours, reference(&values));
        }

        #[test]
        fn valid_lists_round_trip(members in proptest::collection::btree_map(
            "[a-z][a-z0-9_*/-]{0,20}(@[a-z][a-z0-9]{0,12})?",
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
