//! Database client spans with the stable database semantic conventions.
//!
//! [`db_span!`](crate::db_span) makes a `tracing` span (so it nests under
//! `#[instrument]` spans and log lines inside it carry its ids) that the
//! [`TracingLayer`](crate::TracingLayer) records as a CLIENT span named
//! `{operation} {collection}`, with `db.system.name`, `db.namespace`,
//! `db.operation.name`, `db.collection.name` and `db.query.text`, the query
//! sanitised by [`sanitize_query`] (literals become `?`).
//!
//! # The recipe for sqlx, diesel, rusqlite and the rest
//!
//! Wrap each query's future (or call) in the span; log errors inside it (an
//! `error` field on an event fails the span).
//!
//! ```
//! use tracing::Instrument;
//! # async fn fetch_one(_sql: &str, _id: i64) -> Result<String, String> { Ok("tea".into()) }
//!
//! const FIND_PRODUCT: &str = "SELECT name FROM products WHERE id = $1";
//!
//! # async fn run() {
//! let name = async {
//!     // sqlx: sqlx::query_scalar(FIND_PRODUCT).bind(7).fetch_one(&pool).await
//!     fetch_one(FIND_PRODUCT, 7).await.inspect_err(|e| tracing::error!(error = %e, "query failed"))
//! }
//! .instrument(otel_core::db_span!(
//!     system = "postgresql",
//!     namespace = "shop",
//!     operation = "SELECT",
//!     collection = "products",
//!     query = FIND_PRODUCT,
//! ))
//! .await;
//! # let _ = name; }
//! ```
//!
//! For blocking clients, `span.in_scope(|| conn.execute(...))`. Extra
//! `tracing` fields go after `query` (`server.address = "db.internal"`,
//! `db.response.status_code = tracing::field::Empty` to record later).

use std::borrow::Cow;

/// A `tracing` span for a database call, recorded as a CLIENT span with the
/// database semantic conventions; see [the module](crate::db).
///
/// `system` is `db.system.name` (`"postgresql"`, `"mysql"`, `"sqlite"`, ...);
/// `namespace` (optional) is `db.namespace`; `operation` and `collection`
/// name the span; `query` is recorded sanitised ([`sanitize_query`]). More
/// `tracing` fields may follow. The span is at INFO level, with the caller's
/// module as its target.
#[macro_export]
macro_rules! db_span {
    (
        system = $system:expr,
        $(namespace = $namespace:expr,)?
        operation = $operation:expr,
        collection = $collection:expr,
        query = $query:expr
        $(, $($rest:tt)*)?
    ) => {
        $crate::tracing::info_span!(
            "db",
            otel.name = %::std::format_args!("{} {}", $operation, $collection),
            otel.kind = "client",
            db.system.name = $system,
            $(db.namespace = $namespace,)?
            db.operation.name = $operation,
            db.collection.name = $collection,
            db.query.text = %$crate::db::sanitize_query($query),
            $($($rest)*)?
        )
    };
}

/// `query` with its literals (strings, numbers) replaced by `?`, as the
/// semantic conventions ask of `db.query.text`. Placeholders (`?`, `?1`,
/// `$1`, `:name`, `@p`), identifiers (also quoted ones), keywords and
/// comments are kept. Borrows when there was nothing to replace.
pub fn sanitize_query(query: &str) -> Cow<'_, str> {
    let bytes = query.as_bytes();
    let mut out = String::new();
    // Bytes before `copied` are already in `out` (only used once something changed).
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    let replace = |out: &mut String, start: usize, end: usize, copied: &mut usize| {
        out.push_str(&query[*copied..start]);
        out.push('?');
        *copied = end;
    };
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\'' => {
                let end = skip_quoted(bytes, i, b'\'');
                replace(&mut out, i, end, &mut copied);
                changed = true;
                i = end;
            }
            b'"' | b'`' => i = skip_quoted(bytes, i, b),
            b'[' => {
                i = bytes[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .map_or(bytes.len(), |p| i + p + 1)
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |p| i + p)
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = query[i + 2..].find("*/").map_or(bytes.len(), |p| i + 2 + p + 2)
            }
            b'0'..=b'9' | b'.' if starts_number(bytes, i) => {
                let end = number_end(bytes, i);
                replace(&mut out, i, end, &mut copied);
                changed = true;
                i = end;
            }
            _ if is_word(b) || matches!(b, b'?' | b'$' | b':' | b'@') => {
                // An identifier, keyword or placeholder: digits inside it stay.
                i += 1;
                while i < bytes.len() && is_word(bytes[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    if !changed {
        return Cow::Borrowed(query);
    }
    out.push_str(&query[copied..]);
    Cow::Owned(out)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Whether a number starts at `i` (a digit, or `.` followed by a digit).
fn starts_number(bytes: &[u8], i: usize) -> bool {
    bytes[i].is_ascii_digit() || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
}

/// The end of the numeric literal at `i`: digits, one fraction, an exponent,
/// or a hexadecimal `0x...`.
fn number_end(bytes: &[u8], mut i: usize) -> usize {
    if bytes[i] == b'0' && matches!(bytes.get(i + 1), Some(b'x' | b'X')) {
        i += 2;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        return i;
    }
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
        let mut j = i + 1;
        if j < bytes.len() && matches!(bytes[j], b'+' | b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            i = j;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

/// The end of the quoted run at `start` (a doubled quote is an escaped quote,
/// as in standard SQL); the whole rest when it is not closed.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::sanitize_query;
    use proptest::prelude::*;

    #[test]
    fn literals_become_placeholders() {
        let cases = [
            (
                "SELECT * FROM users WHERE name = 'O''Brien' AND age > 42",
                "SELECT * FROM users WHERE name = ? AND age > ?",
            ),
            (
                "UPDATE t SET price = 3.5e-2, code = 0xFF WHERE id = .5",
                "UPDATE t SET price = ?, code = ? WHERE id = ?",
            ),
            (
                "INSERT INTO t2 (a1, b_2) VALUES ('x', -7)",
                "INSERT INTO t2 (a1, b_2) VALUES (?, -?)",
            ),
            (
                "SELECT \"col1\", `tbl2`.x, [a 3] FROM s3.t4 -- id = 5\nWHERE y = 'a''b'",
                "SELECT \"col1\", `tbl2`.x, [a 3] FROM s3.t4 -- id = 5\nWHERE y = ?",
            ),
            ("SELECT 'unterminated", "SELECT ?"),
            ("/* 1 */ SELECT 1", "/* 1 */ SELECT ?"),
        ];
        for (query, expected) in cases {
            assert_eq!(sanitize_query(query), expected, "{query}");
        }
    }

    #[test]
    fn placeholders_and_plain_queries_are_borrowed() {
        for query in [
            "SELECT name FROM products WHERE id = ?1",
            "SELECT * FROM t WHERE a = $1 AND b = :name AND c = @p2 AND d = ?",
            "INSERT OR REPLACE INTO orders (id, user) VALUES (?1, ?2)",
            "",
        ] {
            assert!(
                matches!(sanitize_query(query), std::borrow::Cow::Borrowed(_)),
                "{query}"
            );
        }
    }

    proptest! {
        #[test]
        fn literals_never_survive(
            table in "[a-z][a-z0-9_]{0,8}",
            column in "[a-z][a-z0-9_]{0,8}",
            text in "[^']{0,20}",
            number in any::<u32>(),
            fraction in any::<u16>(),
        ) {
            let query = format!(
                "SELECT {column} FROM {table} WHERE {column} = '{text}' AND n = {number} AND f = {number}.{fraction}"
            );
            let out = sanitize_query(&query);
            prop_assert_eq!(
                out.as_ref(),
                format!("SELECT {column} FROM {table} WHERE {column} = ? AND n = ? AND f = ?")
            );
        }

        #[test]
        fn any_input_is_safe_and_idempotent(query in "\\PC{0,60}") {
            let once = sanitize_query(&query).into_owned();
            let twice = sanitize_query(&once).into_owned();
            prop_assert_eq!(once, twice);
        }
    }
}
