//! `bearertokenauth`: receivers that name it refuse requests without
//! `Authorization: Bearer <token>` (gRPC UNAUTHENTICATED, HTTP 401, counted);
//! exporters that name it send that header. The token is `token`, or the
//! contents of `filename`, read again when the file changes (receivers) as in
//! the Go extension.

use crate::sidecar::component::{
    Authenticator, BoxFuture, BuildContext, Component, ExtensionSettings, Factory, Listening,
};
use crate::sidecar::config::{At, ConfigError, child, get_str};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ExtensionSettings> = Factory {
    component: Component {
        section: "extensions",
        name: "bearertokenauth",
        settings: &["scheme", "token", "filename", "header"],
        ignored: &["tokens"],
    },
    parse: |at, _| Ok(Box::new(BearerTokenConfig::parse(at)?)),
};

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// `token`.
    Inline(String),
    /// `filename`.
    File(String),
}

/// `bearertokenauth` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BearerTokenConfig {
    /// `scheme` (default `Bearer`; empty for the bare token).
    pub(crate) scheme: String,
    /// `header` (default `Authorization`).
    pub(crate) header: String,
    /// `token` or `filename`.
    pub(crate) source: TokenSource,
}

impl BearerTokenConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        let source = match (get_str(at, "token")?, get_str(at, "filename")?) {
            (Some(t), None) if !t.is_empty() => TokenSource::Inline(t.to_owned()),
            (None, Some(f)) if !f.is_empty() => TokenSource::File(f.to_owned()),
            (Some(_), Some(_)) => return Err(at.err("set token or filename, not both")),
            _ => return Err(at.err("bearertokenauth needs a token or a filename")),
        };
        let header = get_str(at, "header")?.unwrap_or("Authorization").to_owned();
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(ConfigError::new(child(at.path, "header"), "is not an HTTP header name"));
        }
        Ok(BearerTokenConfig {
            scheme: get_str(at, "scheme")?.unwrap_or("Bearer").to_owned(),
            header,
            source,
        })
    }
}

impl ExtensionSettings for BearerTokenConfig {
    fn start<'a>(&'a self, _: &'a BuildContext, _: &'a str) -> BoxFuture<'a, Result<Vec<Listening>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn is_authenticator(&self) -> bool {
        true
    }

    fn authenticator(&self) -> Result<Option<Arc<dyn Authenticator>>, String> {
        let auth = BearerToken {
            config: self.clone(),
            current: Mutex::new((None, String::new())),
        };
        // A missing or unreadable file is an error at start, not a
        // collector that refuses every request.
        auth.token()?;
        Ok(Some(Arc::new(auth)))
    }
}

struct BearerToken {
    config: BearerTokenConfig,
    /// For `filename`: the file's modification time when read, and its token.
    current: Mutex<(Option<SystemTime>, String)>,
}

impl BearerToken {
    /// The token now (the file read again when it changed).
    fn token(&self) -> Result<String, String> {
        match &self.config.source {
            TokenSource::Inline(t) => Ok(t.clone()),
            TokenSource::File(path) => {
                let modified = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .map_err(|e| format!("cannot read the token file {path:?}: {e}"))?;
                let mut current = crate::lock(&self.current);
                if current.0 != Some(modified) {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read the token file {path:?}: {e}"))?;
                    *current = (Some(modified), text.trim().to_owned());
                }
                Ok(current.1.clone())
            }
        }
    }

    fn expected(&self, token: &str) -> String {
        if self.config.scheme.is_empty() {
            token.to_owned()
        } else {
            format!("{} {token}", self.config.scheme)
        }
    }
}

/// Compares without stopping at the first difference.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator for BearerToken {
    fn authenticate(&self, headers: &http::HeaderMap) -> bool {
        let Ok(token) = self.token() else {
            return false;
        };
        let expected = self.expected(&token);
        headers
            .get_all(self.config.header.as_str())
            .iter()
            .any(|v| same(v.as_bytes(), expected.as_bytes()))
    }

    fn client_header(&self) -> Result<(String, String), String> {
        Ok((self.config.header.to_ascii_lowercase(), self.expected(&self.token()?)))
    }

    fn challenge(&self) -> &'static str {
        "Bearer"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(source: TokenSource, scheme: &str) -> Arc<dyn Authenticator> {
        BearerTokenConfig {
            scheme: scheme.to_owned(),
            header: "Authorization".to_owned(),
            source,
        }
        .authenticator()
        .unwrap()
        .unwrap()
    }

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn only_the_token_with_its_scheme_passes() {
        let a = auth(TokenSource::Inline("s3cret".into()), "Bearer");
        assert!(a.authenticate(&headers("Bearer s3cret")));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret ",
            "bearer s3cret",
            "s3cret",
            "Basic s3cret",
        ] {
            assert!(!a.authenticate(&headers(wrong)), "{wrong}");
        }
        assert!(!a.authenticate(&http::HeaderMap::new()));
        assert_eq!(
            a.client_header().unwrap(),
            ("authorization".to_owned(), "Bearer s3cret".to_owned())
        );
        let bare = auth(TokenSource::Inline("s3cret".into()), "");
        assert!(bare.authenticate(&headers("s3cret")));
    }

    #[test]
    fn a_token_file_is_read_again_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("bearer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first\n").unwrap();
        let a = auth(TokenSource::File(path.display().to_string()), "Bearer");
        assert!(a.authenticate(&headers("Bearer first")));
        // A new token, with a modification time that differs.
        std::fs::write(&path, "second").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(a.authenticate(&headers("Bearer second")));
        assert!(!a.authenticate(&headers("Bearer first")));
        // A file that is gone fails closed.
        std::fs::remove_file(&path).unwrap();
        assert!(!a.authenticate(&headers("Bearer second")));
        let missing = BearerTokenConfig {
            scheme: "Bearer".into(),
            header: "Authorization".into(),
            source: TokenSource::File(path.display().to_string()),
        };
        assert!(
            missing
                .authenticator()
                .err()
                .unwrap()
                .contains("cannot read the token file")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
