//! The rustls connector both transports use for `https://` endpoints: the
//! system's roots plus a configured CA, a client certificate, a server name
//! override, and the versions and cipher suites of a [`TlsPolicy`].

use super::Settings;
use crate::tls::TlsPolicy;
use hyper_util::client::legacy::connect::HttpConnector;

/// The connector: HTTP/1.1 (`h2: false`, OTLP/HTTP) or HTTP/2 only (gRPC).
pub(crate) fn connector(
    settings: &Settings,
    http: HttpConnector,
    h2: bool,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = &settings.ca_pem {
        for cert in pem_certs(pem)? {
            roots.add(cert).map_err(|e| format!("invalid CA certificate: {e}"))?;
        }
    }
    // The application's process-wide provider when it installed one (e.g.
    // aws-lc-rs), ring otherwise; only the policy's suites and versions.
    let default = TlsPolicy::default();
    let policy = settings.tls_policy.as_ref().unwrap_or(&default);
    let builder = rustls::ClientConfig::builder_with_provider(policy.provider())
        .with_protocol_versions(&policy.versions())
        .map_err(|e| format!("TLS configuration failed: {e}"))?
        .with_root_certificates(roots);
    let tls = match &settings.client_identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = pem_certs(cert)?;
            use rustls::pki_types::pem::PemObject;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| format!("invalid client key: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("invalid client certificate: {e}"))?
        }
    };
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match &settings.tls_server_name {
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(if h2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    })
}

fn pem_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM certificate: {e}"))
}
