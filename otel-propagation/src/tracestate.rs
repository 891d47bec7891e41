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

#[inline]
fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// Whether `key` is a valid tracestate key (simple or `tenant@system`).
pub fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    if b.is_empty() || b.len() > MAX_KEY_LEN {
        return false;
    }
    match b.iter().position(|&c| c == b'@') {
        None => (b[0].is_ascii_lowercase() || b[0].is_ascii_digit()) && b.iter().all(|&c| is_key_char(c)),
        Some(at) => {
            let (tenant, system) = (&b[..at], &b[at + 1..]);
            !tenant.is_empty()
                && tenant.len() <= MAX_TENANT_LEN
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant.iter().all(|&c| is_key_char(c))
                && !system.is_empty()
                && system.len() <= MAX_SYSTEM_LEN
                && system[0].is_ascii_lowercase()
                && system.iter().all(|&c| is_key_char(c))
        }
    }
}

/// Whether `value` is a valid tracestate value.
pub fn is_valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    match b.last() {
        None | Some(b' ') => false,
        Some(_) => b.len() <= MAX_VALUE_LEN && b.iter().all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'='),
    }
}

#[inline]
fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
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
    let mut error = None;
    let mut count = 0usize;
    // One pass: each member is validated as opentelemetry's TraceState takes
    // it, so nothing is stored twice; the first broken rule stops the list.
    let mut checked = values
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(trim_ows)
        .filter(|member| !member.is_empty())
        .map_while(|member| match check_member(member) {
            Ok(kv) if count < MAX_MEMBERS => {
                count += 1;
                Some(kv)
            }
            Ok(_) => {
                error = Some(TraceStateError::TooManyMembers);
                None
            }
            Err(e) => {
                error = Some(e);
                None
            }
        })
        // opentelemetry's own key check is narrower than the specification: it
        // refuses a system id of exactly 14 characters. Such members cannot be
        // represented in its TraceState, so only they are left out; the rest
        // of the list is kept intact and in order.
        .filter(|(key, _)| key.find('@').is_none_or(|at| key.len() - at - 1 < MAX_SYSTEM_LEN));
    let built = TraceState::from_key_value(checked.by_ref());
    // A 33rd member (or a broken one after the 32nd) is only seen by pulling once more.
    let more = checked.next().is_some();
    drop(checked);
    if let Some(e) = error {
        return Err(e);
    }
    if more {
        return Err(TraceStateError::TooManyMembers);
    }
    // Every member passed a check at least as strict as opentelemetry's, so
    // this cannot fail; an empty list is the safe answer if it ever did.
    let trace_state = built.unwrap_or_default();
    if has_duplicate_key(&trace_state) {
        return Err(TraceStateError::DuplicateKey);
    }
    Ok(trace_state)
}

/// Splits and validates one list member.
fn check_member(member: &str) -> Result<(&str, &str), TraceStateError> {
    let (key, value) = member.split_once('=').ok_or(TraceStateError::MissingEquals)?;
    if !is_valid_key(key) {
        return Err(TraceStateError::InvalidKey);
    }
    if !is_valid_value(value) {
        return Err(TraceStateError::InvalidValue);
    }
    Ok((key, value))
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
pub fn format_tracestate(trace_state: &TraceState) -> String {
    let mut iter = trace_state.into_iter();
    let Some((k0, v0)) = iter.next() else {
        return String::new();
    };
    let mut len = k0.len() + v0.len() + 1;
    for (k, v) in trace_state.into_iter().skip(1) {
        len += k.len() + v.len() + 2;
    }
    let mut out = String::with_capacity(len);
    out.push_str(k0);
    out.push('=');
    out.push_str(v0);
    for (k, v) in iter {
        out.push(',');
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

    proptest! {
        #[test]
        fn never_panics(values in proptest::collection::vec(".{0,120}", 0..4)) {
            let _ = parse_tracestate(values.iter().map(String::as_str));
        }

        #[test]
        fn valid_lists_round_trip(members in proptest::collection::btree_map(
            "[a-z][a-z0-9_*/-]{0,20}(@[a-z][a-z0-9]{0,12})?",
            "[!-+\\--<>-~][ -+\\--<>-~]{0,20}[!-+\\--<>-~]",
            1..32,
        )) {
            let text = members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            let ts = parse_tracestate([text.as_str()]).unwrap();
            prop_assert_eq!(format_tracestate(&ts), text);
        }
    }
}
