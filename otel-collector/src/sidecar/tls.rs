//! TLS for receivers: rustls with the certificate and key read from files,
//! and read again when either file changes (a renewed certificate is served
//! to the next connection, as the Go Collector's `reload_interval` does
//! without needing one); client certificates checked against
//! `client_ca_file` (mutual TLS).

use crate::sidecar::config::{At, ConfigError, child, get, get_str, get_strings};
use otel_export::tls::{TlsPolicy, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A receiver protocol's `tls` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerTlsConfig {
    /// `cert_file`.
    pub(crate) cert_file: String,
    /// `key_file`.
    pub(crate) key_file: String,
    /// `client_ca_file`: clients must present a certificate it signed.
    pub(crate) client_ca_file: Option<String>,
    /// `min_version`, `max_version` and `cipher_suites`.
    pub(crate) policy: TlsPolicy,
}

/// Reads `tls` at `at`, when present.
pub(crate) fn parse_server_tls(at: At<'_>, warnings: &mut Vec<String>) -> Result<Option<ServerTlsConfig>, ConfigError> {
    let Some(v) = get(at, "tls") else {
        return Ok(None);
    };
    let path = child(at.path, "tls");
    let t = At { value: v, path: &path };
    t.map()?;
    t.only_keys(&[
        "cert_file",
        "key_file",
        "client_ca_file",
        "min_version",
        "max_version",
        "reload_interval",
        "client_ca_file_reload",
        "cipher_suites",
        "ca_file",
    ])?;
    for key in ["client_ca_file_reload", "ca_file"] {
        if get(t, key).is_some() {
            warnings.push(format!(
                "{} is ignored by this collector: a receiver checks clients with client_ca_file, read at start",
                child(&path, key)
            ));
        }
    }
    if get(t, "reload_interval").is_some() {
        warnings.push(format!(
            "{} is not needed here: the certificate and key are read again whenever their files change",
            child(&path, "reload_interval")
        ));
    }
    let required = |key: &str| -> Result<String, ConfigError> {
        get_str(t, key)?
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ConfigError::new(child(&path, key), "TLS on a receiver needs cert_file and key_file"))
    };
    let policy = parse_policy(t)?;
    Ok(Some(ServerTlsConfig {
        cert_file: required("cert_file")?,
        key_file: required("key_file")?,
        client_ca_file: get_str(t, "client_ca_file")?
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        policy,
    }))
}

/// `min_version`, `max_version` and `cipher_suites` of a `tls` block, as Go reads them.
pub(crate) fn parse_policy(t: At<'_>) -> Result<TlsPolicy, ConfigError> {
    let version = |key: &str| -> Result<Option<TlsVersion>, ConfigError> {
        match get_str(t, key)? {
            None | Some("") => Ok(None),
            Some(v) => TlsVersion::parse(v)
                .map(Some)
                .map_err(|e| ConfigError::new(child(t.path, key), e)),
        }
    };
    let (min, max) = (version("min_version")?, version("max_version")?);
    let suites = get_strings(t, "cipher_suites")?;
    TlsPolicy::new(min, max, &suites).map_err(|e| {
        let key = if e.contains("cipher") {
            "cipher_suites"
        } else {
            "max_version"
        };
        ConfigError::new(child(t.path, key), e)
    })
}

fn modified(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The certificate and key of `cfg`, as rustls signs with them.
fn load(cfg: &ServerTlsConfig, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let certs = CertificateDer::pem_file_iter(&cfg.cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the certificate {:?}: {e}", cfg.cert_file))?;
    if certs.is_empty() {
        return Err(format!("{:?} holds no PEM certificate", cfg.cert_file));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file)
        .map_err(|e| format!("cannot read the key {:?}: {e}", cfg.key_file))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("cannot use the key {:?}: {e}", cfg.key_file))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

/// Serves the certificate of the files, read again when they change.
#[derive(Debug)]
struct Reloading {
    cfg: ServerTlsConfig,
    provider: Arc<CryptoProvider>,
    /// The files' modification times when read, and what they held.
    current: Mutex<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
    /// Checked at most this often.
    checked: Mutex<std::time::Instant>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut checked = crate::lock(&self.checked);
        let due = checked.elapsed() >= Duration::from_secs(1);
        if due {
            *checked = std::time::Instant::now();
        }
        drop(checked);
        let mut current = crate::lock(&self.current);
        if due {
            let (c, k) = (modified(&self.cfg.cert_file), modified(&self.cfg.key_file));
            if (c, k) != (current.0, current.1) {
                match load(&self.cfg, &self.provider) {
                    Ok(key) => {
                        tracing::info!("TLS certificate {:?} read again", self.cfg.cert_file);
                        *current = (c, k, key);
                    }
                    // Half-written files during a renewal: keep serving the old pair.
                    Err(e) => tracing::warn!("keeping the current TLS certificate: {e}"),
                }
            }
        }
        Some(current.2.clone())
    }
}

/// A TLS acceptor for `cfg`, offering the `alpn` protocols.
///
/// # Errors
///
/// When the files cannot be read or do not hold a certificate and key.
pub(crate) fn acceptor(cfg: &ServerTlsConfig, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor, String> {
    let provider = cfg.policy.provider();
    let key = load(cfg, &provider)?;
    let resolver = Arc::new(Reloading {
        cfg: cfg.clone(),
        provider: provider.clone(),
        current: Mutex::new((modified(&cfg.cert_file), modified(&cfg.key_file), key)),
        checked: Mutex::new(std::time::Instant::now()),
    });
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&cfg.policy.versions())
        .map_err(|e| format!("TLS configuration failed: {e}"))?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read client_ca_file {ca:?}: {e}"))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("invalid certificate in client_ca_file {ca:?}: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("cannot verify clients with {ca:?}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Completes the TLS handshake on `stream` within [`HANDSHAKE_TIMEOUT`];
/// `None` (logged) when the client fails it or takes too long.
pub(crate) async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake refused: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}
