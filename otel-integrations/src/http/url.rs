//! What URLs say in spans: credentials never, query values redacted by default.

/// What `url.full` (clients) and `url.query` (servers) keep of a query
/// string's values. Keys are always kept; credentials in a URL are always
/// replaced by `REDACTED` (the semantic conventions require it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueryValues {
    /// Every value becomes `REDACTED`: `?user=REDACTED&page=REDACTED`. The default:
    /// tokens and personal data travel in query strings more often than not.
    #[default]
    Redacted,
    /// Values are kept, except those of the keys the semantic conventions name
    /// as sensitive (`AWSAccessKeyId`, `Signature`, `sig`, `X-Goog-Signature`).
    SensitiveRedacted,
}

const REDACTED: &str = "REDACTED";
const SENSITIVE_KEYS: [&str; 4] = ["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"];

impl QueryValues {
    fn redacts(self, key: &str) -> bool {
        match self {
            QueryValues::Redacted => true,
            QueryValues::SensitiveRedacted => SENSITIVE_KEYS.contains(&key),
        }
    }
}

/// Appends `query` (without its `?`) to `out` with values redacted per `mode`.
pub(crate) fn push_query(out: &mut String, query: &str, mode: QueryValues) {
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, _)) if mode.redacts(key) => {
                out.push_str(key);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
}

/// `url.full` of an absolute URL: user info replaced by
/// `REDACTED:REDACTED`, query values redacted per `mode`, fragment dropped
/// (it never reaches the server).
pub(crate) fn full(url: &str, mode: QueryValues) -> String {
    let mut out = String::with_capacity(url.len() + 16);
    let (before_fragment, _) = url.split_once('#').unwrap_or((url, ""));
    let (base, query) = match before_fragment.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (before_fragment, None),
    };
    match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            out.push_str(scheme);
            out.push_str("://");
            match authority.rsplit_once('@') {
                Some((_, host)) => {
                    out.push_str("REDACTED:REDACTED@");
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(base),
    }
    if let Some(query) = query {
        out.push('?');
        push_query(&mut out, query, mode);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn credentials_and_query_values() {
        let url = "https://alice:s3cret@api.example.com:8443/v1/items?token=abc&page=2&sig=xyz#frag";
        assert_eq!(
            full(url, QueryValues::Redacted),
            "https://REDACTED:REDACTED@api.example.com:8443/v1/items?token=REDACTED&page=REDACTED&sig=REDACTED"
        );
        assert_eq!(
            full(url, QueryValues::SensitiveRedacted),
            "https://REDACTED:REDACTED@api.example.com:8443/v1/items?token=abc&page=2&sig=REDACTED"
        );
        assert_eq!(
            full("http://h/p?flag&=v&k=", QueryValues::Redacted),
            "http://h/p?flag&=REDACTED&k=REDACTED"
        );
        assert_eq!(full("http://h:80", QueryValues::Redacted), "http://h:80");
        assert_eq!(full("/relative?a=1", QueryValues::Redacted), "/relative?a=REDACTED");
    }

    proptest! {
        #[test]
        fn secrets_never_survive(
            user in "[a-z]{1,8}",
            password in "[A-Z0-9]{12}",
            host in "[a-z]{1,10}(\\.[a-z]{2,3})?(:[0-9]{1,5})?",
            path in "(/[a-z0-9@:]{0,6}){0,3}",
            keys in proptest::collection::vec("[a-z]{1,6}", 0..4),
            secret in "[A-Z0-9]{16}",
        ) {
            let query: Vec<String> = keys.iter().map(|k| format!("{k}={secret}")).collect();
            let url = format!("https://{user}:{password}@{host}{path}?{}", query.join("&"));
            let out = full(&url, QueryValues::Redacted);
            prop_assert!(!out.contains(&password), "{out}");
            prop_assert!(!out.contains(&secret), "{out}");
            prop_assert!(out.starts_with("https://REDACTED:REDACTED@"), "{out}");
            let expected_host = format!("@{host}{path}");
            prop_assert!(out.contains(&expected_host), "{out}");
            for key in &keys {
                let expected = format!("{key}=REDACTED");
                prop_assert!(out.contains(&expected), "{out}");
            }
        }

        #[test]
        fn any_input_is_handled(url in ".{0,80}", sensitive in any::<bool>()) {
            let mode = if sensitive { QueryValues::SensitiveRedacted } else { QueryValues::Redacted };
            let out = full(&url, mode);
            // Without credentials, a query or a fragment, a URL passes unchanged.
            if !url.contains(['@', '?', '#']) {
                prop_assert_eq!(out, url);
            }
        }
    }
}
