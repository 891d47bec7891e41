//! `basicauth`: receivers that name it take requests whose
//! `Authorization: Basic ...` matches an `htpasswd` entry (inline or a file);
//! exporters that name it send `client_auth`'s username and password. As the
//! Go extension; only plain `user:password` entries are read (hashed ones are
//! refused with a clear error rather than never matching).

use crate::sidecar::component::{
    Authenticator, BoxFuture, BuildContext, Component, ExtensionSettings, Factory, Listening,
};
use crate::sidecar::config::{At, ConfigError, child, get, get_str};
use base64::Engine as _;
use std::sync::Arc;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ExtensionSettings> = Factory {
    component: Component {
        section: "extensions",
        name: "basicauth",
        settings: &["htpasswd", "client_auth"],
        ignored: &[],
    },
    parse: |at, _| Ok(Box::new(BasicAuthConfig::parse(at)?)),
};

/// `basicauth` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct BasicAuthConfig {
    /// `htpasswd.inline` and the lines of `htpasswd.file`: user, password.
    pub(crate) users: Vec<(String, String)>,
    /// `client_auth`: username, password.
    pub(crate) client: Option<(String, String)>,
}

/// The `user:password` entries of htpasswd text (`place` names where it came from).
fn entries(text: &str, place: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, password)) = line.split_once(':') else {
            return Err(ConfigError::new(place, format!("line {} is not user:password", i + 1)));
        };
        if ["$2a$", "$2b$", "$2y$", "$apr1$", "{SHA}", "$5$", "$6$"]
            .iter()
            .any(|p| password.starts_with(p))
        {
            return Err(ConfigError::new(
                place,
                format!(
                    "line {}: hashed htpasswd passwords are not supported here; write user:password in plain text (it can come from ${{env:VAR}})",
                    i + 1
                ),
            ));
        }
        out.push((user.to_owned(), password.to_owned()));
    }
    Ok(out)
}

impl BasicAuthConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        let mut cfg = BasicAuthConfig::default();
        if let Some(h) = get(at, "htpasswd") {
            let path = child(at.path, "htpasswd");
            let h = At { value: h, path: &path };
            h.map()?;
            h.only_keys(&["file", "inline"])?;
            if let Some(inline) = get_str(h, "inline")? {
                cfg.users.extend(entries(inline, &child(&path, "inline"))?);
            }
            if let Some(file) = get_str(h, "file")? {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| ConfigError::new(child(&path, "file"), format!("cannot read {file:?}: {e}")))?;
                cfg.users.extend(entries(&text, &child(&path, "file"))?);
            }
        }
        if let Some(c) = get(at, "client_auth") {
            let path = child(at.path, "client_auth");
            let c = At { value: c, path: &path };
            c.map()?;
            c.only_keys(&["username", "password"])?;
            let user = get_str(c, "username")?.unwrap_or_default();
            if user.is_empty() || user.contains(':') {
                return Err(ConfigError::new(
                    child(&path, "username"),
                    "needs a username without ':'",
                ));
            }
            cfg.client = Some((user.to_owned(), get_str(c, "password")?.unwrap_or_default().to_owned()));
        }
        if cfg.users.is_empty() && cfg.client.is_none() {
            return Err(at.err("basicauth needs htpasswd (for receivers) or client_auth (for exporters)"));
        }
        Ok(cfg)
    }
}

impl ExtensionSettings for BasicAuthConfig {
    fn start<'a>(&'a self, _: &'a BuildContext, _: &'a str) -> BoxFuture<'a, Result<Vec<Listening>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn is_authenticator(&self) -> bool {
        true
    }

    fn authenticator(&self) -> Result<Option<Arc<dyn Authenticator>>, String> {
        let encode = |(u, p): &(String, String)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        Ok(Some(Arc::new(BasicAuth {
            accepted: self.users.iter().map(encode).collect(),
            client: self.client.as_ref().map(encode),
        })))
    }
}

struct BasicAuth {
    /// `Basic ...` header values of the htpasswd entries.
    accepted: Vec<String>,
    client: Option<String>,
}

impl Authenticator for BasicAuth {
    fn authenticate(&self, headers: &http::HeaderMap) -> bool {
        headers.get_all(http::header::AUTHORIZATION).iter().any(|v| {
            self.accepted
                .iter()
                .any(|a| super::bearertokenauth::same(v.as_bytes(), a.as_bytes()))
        })
    }

    fn client_header(&self) -> Result<(String, String), String> {
        self.client
            .clone()
            .map(|v| ("authorization".to_owned(), v))
            .ok_or_else(|| "this basicauth extension has no client_auth for exporters".to_owned())
    }

    fn challenge(&self) -> &'static str {
        "Basic realm=\"otel-collector\""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<BasicAuthConfig, ConfigError> {
        let v = crate::config::parse_yaml(yaml).unwrap();
        BasicAuthConfig::parse(At {
            value: &v,
            path: "extensions.basicauth",
        })
    }

    #[test]
    fn htpasswd_entries_pass_and_client_auth_is_sent() {
        let cfg = parse(
            "htpasswd: {inline: \"alice:wonder\\nbob:builder\"}\nclient_auth: {username: alice, password: wonder}",
        )
        .unwrap();
        let auth = cfg.authenticator().unwrap().unwrap();
        let (name, value) = auth.client_header().unwrap();
        assert_eq!(
            (name.as_str(), value.as_str()),
            ("authorization", "Basic YWxpY2U6d29uZGVy")
        );
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        assert!(auth.authenticate(&h));
        h.insert(http::header::AUTHORIZATION, "Basic Ym9iOmJ1aWxkZXI=".parse().unwrap());
        assert!(auth.authenticate(&h));
        h.insert(http::header::AUTHORIZATION, "Basic Ym9iOndyb25n".parse().unwrap());
        assert!(!auth.authenticate(&h));
        assert!(!auth.authenticate(&http::HeaderMap::new()));
    }

    #[test]
    fn what_cannot_work_is_an_error_with_its_place() {
        let e = parse("htpasswd: {inline: \"alice:$2y$05$abcdefghijklmnopqrstuv\"}").unwrap_err();
        assert_eq!(e.path(), "extensions.basicauth.htpasswd.inline");
        assert!(e.message().contains("hashed"), "{e}");
        assert!(parse("{}").is_err());
        assert!(parse("client_auth: {username: \"a:b\"}").is_err());
        let e = parse("htpasswd: {file: /nonexistent/htpasswd}").unwrap_err();
        assert_eq!(e.path(), "extensions.basicauth.htpasswd.file");
    }
}
