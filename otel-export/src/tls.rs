//! Which TLS versions and TLS 1.2 cipher suites a connection may use, with
//! the Go Collector's names (`min_version: "1.2"`, `cipher_suites:
//! [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]`), for exporters and for the
//! collector's receivers alike.
//!
//! rustls speaks TLS 1.2 and 1.3 only, with AEAD cipher suites: a policy that
//! asks for less (a 1.1 maximum, a CBC suite) is refused with the reason
//! rather than silently given something else. As in Go, `cipher_suites`
//! chooses among TLS 1.2 suites; TLS 1.3 suites are not configurable.

use rustls::crypto::CryptoProvider;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use std::sync::Arc;

/// A TLS version as the Go Collector names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TlsVersion {
    /// `"1.0"`.
    V1_0,
    /// `"1.1"`.
    V1_1,
    /// `"1.2"`.
    V1_2,
    /// `"1.3"`.
    V1_3,
}

impl TlsVersion {
    /// Reads `"1.0"` to `"1.3"`.
    ///
    /// # Errors
    ///
    /// Any other text, with the accepted values.
    pub fn parse(s: &str) -> Result<TlsVersion, String> {
        match s {
            "1.0" => Ok(TlsVersion::V1_0),
            "1.1" => Ok(TlsVersion::V1_1),
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            other => Err(format!("must be 1.0, 1.1, 1.2 or 1.3, got {other:?}")),
        }
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_0 => "1.0",
            TlsVersion::V1_1 => "1.1",
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        })
    }
}

/// The versions and TLS 1.2 cipher suites a connection may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPolicy {
    tls12: bool,
    tls13: bool,
    /// IANA names of the allowed TLS 1.2 suites; empty: rustls' defaults.
    suites: Vec<String>,
}

/// TLS 1.2 and 1.3 with rustls' suites: what an unset policy means.
impl Default for TlsPolicy {
    fn default() -> Self {
        TlsPolicy {
            tls12: true,
            tls13: true,
            suites: Vec::new(),
        }
    }
}

impl TlsPolicy {
    /// The policy of Go's `min_version`, `max_version` and `cipher_suites`
    /// (unset: TLS 1.2 and 1.3 with rustls' suites, as Go's defaults).
    ///
    /// # Errors
    ///
    /// A version range rustls cannot meet (nothing from 1.2 up), a maximum
    /// below the minimum, or a suite name that is unknown or that rustls does
    /// not offer (CBC and static-RSA suites), each with the reason.
    pub fn new(
        min: Option<TlsVersion>,
        max: Option<TlsVersion>,
        cipher_suites: &[String],
    ) -> Result<TlsPolicy, String> {
        let min = min.unwrap_or(TlsVersion::V1_2);
        let max = max.unwrap_or(TlsVersion::V1_3);
        if max < min {
            return Err(format!("max_version {max} is below min_version {min} (unset: 1.2)"));
        }
        if max < TlsVersion::V1_2 {
            return Err(
                "TLS below 1.2 is not offered by this build (rustls speaks 1.2 and 1.3); raise max_version".into(),
            );
        }
        let policy = TlsPolicy {
            tls12: min <= TlsVersion::V1_2,
            tls13: max >= TlsVersion::V1_3,
            suites: cipher_suites.iter().map(|s| canonical(s)).collect(),
        };
        let offered = tls12_suites();
        for (given, name) in cipher_suites.iter().zip(&policy.suites) {
            if !offered.iter().any(|s| suite_name(s) == *name) {
                let names: Vec<String> = offered.iter().map(suite_name).collect();
                return Err(format!(
                    "cipher suite {given:?} is not offered (rustls implements these TLS 1.2 suites: {})",
                    names.join(", ")
                ));
            }
        }
        if !policy.suites.is_empty() && !policy.tls12 {
            return Err("cipher_suites choose TLS 1.2 suites, but min_version 1.3 turns TLS 1.2 off".into());
        }
        Ok(policy)
    }

    /// The crypto provider with only the allowed suites.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        let base = base_provider();
        if self.suites.is_empty() {
            return base;
        }
        let mut p = (*base).clone();
        p.cipher_suites.retain(|s| match s {
            SupportedCipherSuite::Tls13(_) => true,
            SupportedCipherSuite::Tls12(_) => self.suites.contains(&suite_name(s)),
        });
        Arc::new(p)
    }

    /// The protocol versions to offer.
    pub fn versions(&self) -> Vec<&'static SupportedProtocolVersion> {
        let mut v = Vec::new();
        if self.tls13 {
            v.push(&rustls::version::TLS13);
        }
        if self.tls12 {
            v.push(&rustls::version::TLS12);
        }
        v
    }
}

/// The process-wide provider an application installed (e.g. aws-lc-rs), ring otherwise.
fn base_provider() -> Arc<CryptoProvider> {
    match CryptoProvider::get_default() {
        Some(installed) => installed.clone(),
        // ring's provider is deprecated only for lacking post-quantum key exchange.
        #[allow(deprecated)]
        None => Arc::new(rustls::crypto::ring::default_provider()),
    }
}

fn tls12_suites() -> Vec<SupportedCipherSuite> {
    base_provider()
        .cipher_suites
        .iter()
        .copied()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
        .collect()
}

fn suite_name(s: &SupportedCipherSuite) -> String {
    format!("{:?}", s.suite())
}

/// Go also accepts the ChaCha20 suites without their `_SHA256` ending.
fn canonical(name: &str) -> String {
    let name = name.trim();
    if name.ends_with("CHACHA20_POLY1305") {
        format!("{name}_SHA256")
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<TlsVersion> {
        Some(TlsVersion::parse(s).unwrap())
    }

    #[test]
    fn versions_follow_min_and_max() {
        let p = TlsPolicy::new(None, None, &[]).unwrap();
        assert_eq!(p.versions().len(), 2);
        let only13 = TlsPolicy::new(v("1.3"), None, &[]).unwrap();
        assert_eq!(only13.versions(), [&rustls::version::TLS13]);
        let only12 = TlsPolicy::new(v("1.0"), v("1.2"), &[]).unwrap();
        assert_eq!(only12.versions(), [&rustls::version::TLS12]);
        assert!(TlsPolicy::new(v("1.3"), v("1.2"), &[]).unwrap_err().contains("below"));
        assert!(TlsPolicy::new(None, v("1.1"), &[]).unwrap_err().contains("1.2"));
        assert!(TlsVersion::parse("1.4").unwrap_err().contains("1.0, 1.1, 1.2 or 1.3"));
    }

    #[test]
    fn cipher_suites_choose_among_tls12_suites() {
        let names = [
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_owned(),
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".to_owned(),
        ];
        let p = TlsPolicy::new(None, None, &names).unwrap();
        let provider = p.provider();
        let tls12: Vec<String> = provider
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .map(suite_name)
            .collect();
        assert_eq!(tls12.len(), 2, "{tls12:?}");
        assert!(tls12.contains(&"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".to_owned()));
        // TLS 1.3 suites stay.
        assert!(
            provider
                .cipher_suites
                .iter()
                .any(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
        );
        let cbc = ["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".to_owned()];
        let e = TlsPolicy::new(None, None, &cbc).unwrap_err();
        assert!(
            e.contains("not offered") && e.contains("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
            "{e}"
        );
        assert!(
            TlsPolicy::new(v("1.3"), None, &names[..1])
                .unwrap_err()
                .contains("min_version 1.3")
        );
    }
}
