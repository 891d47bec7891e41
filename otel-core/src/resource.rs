//! Resource detection: who is emitting the spans.

use crate::env::{OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME};
use opentelemetry::{Key, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{ResourceDetector, TelemetryResourceDetector};
use otel_export::{ConfigError, EnvReader};
use std::collections::BTreeMap;

/// Downward-API variables our Kubernetes manifests set, and the attribute each becomes.
pub const KUBERNETES_VARIABLES: &[(&str, &str)] = &[
    ("K8S_POD_NAME", "k8s.pod.name"),
    ("K8S_POD_UID", "k8s.pod.uid"),
    ("K8S_NAMESPACE_NAME", "k8s.namespace.name"),
    ("K8S_NODE_NAME", "k8s.node.name"),
    ("K8S_DEPLOYMENT_NAME", "k8s.deployment.name"),
    ("K8S_CLUSTER_NAME", "k8s.cluster.name"),
];

/// Percent-decodes `s`; `None` on a `%` without two hex digits after it or
/// on a result that is not UTF-8 (the specification discards the whole
/// variable then; the decoder itself passes such escapes through).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let well_formed = b.iter().enumerate().filter(|&(_, &c)| c == b'%').all(|(i, _)| {
        b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES`: `key1=value1,key2=value2`, values
/// percent-decoded.
///
/// # Errors
///
/// The first malformed member (no `=`, empty key, or a bad percent escape);
/// the specification says to discard the whole value then.
pub fn parse_resource_attributes(value: &str) -> Result<Vec<KeyValue>, String> {
    let mut out = Vec::new();
    for member in value.split(',') {
        if member.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = member.split_once('=') else {
            return Err(member.trim().to_owned());
        };
        let key = k.trim();
        let decoded = percent_decode(v.trim()).ok_or_else(|| member.trim().to_owned())?;
        if key.is_empty() {
            return Err(member.trim().to_owned());
        }
        out.push(KeyValue::new(key.to_owned(), decoded));
    }
    Ok(out)
}

/// The semantic-convention name of this machine's architecture.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc" => "ppc32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// The semantic-convention name of this operating system.
fn os_type() -> &'static str {
    match std::env::consts::OS {
        "macos" | "ios" => "darwin",
        other => other,
    }
}

fn host_name(env: &EnvReader<'_>) -> Option<String> {
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(name) = std::fs::read_to_string(path) {
            let name = name.trim();
            if !name.is_empty() {
                return Some(name.to_owned());
            }
        }
    }
    env.get("HOSTNAME").or_else(|| env.get("COMPUTERNAME"))
}

/// The executable's file name, without a `.exe` suffix.
pub fn executable_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let name = exe.file_stem()?.to_string_lossy().into_owned();
    (!name.is_empty()).then_some(name)
}

/// A random version-4 UUID for `service.instance.id`.
fn random_uuid() -> String {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    let mut b = RandomIdGenerator::default().new_trace_id().to_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What the builder was told in code; it beats everything detected.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceSettings {
    pub(crate) service_name: Option<String>,
    pub(crate) service_version: Option<String>,
    pub(crate) service_namespace: Option<String>,
    pub(crate) attributes: Vec<KeyValue>,
    /// From a declarative configuration: below code, above detection.
    pub(crate) file_attributes: Vec<KeyValue>,
    pub(crate) schema_url: Option<String>,
}

/// Detects the resource. Precedence, lowest to highest: detected attributes
/// (host, process, Kubernetes, telemetry SDK), `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_SERVICE_NAME`, then code. `service.name` falls back to the executable
/// name, so it is `unknown_service` only when no name is known at all.
///
/// # Errors
///
/// In strict mode, a malformed `OTEL_RESOURCE_ATTRIBUTES`.
pub(crate) fn detect(
    env: &mut EnvReader<'_>,
    settings: &ResourceSettings,
    read_env: bool,
) -> Result<Resource, ConfigError> {
    let mut attrs: BTreeMap<Key, Value> = BTreeMap::new();
    let mut put = |kv: KeyValue| {
        attrs.insert(kv.key, kv.value);
    };

    for kv in TelemetryResourceDetector.detect().iter() {
        put(KeyValue::new(kv.0.clone(), kv.1.clone()));
    }
    put(KeyValue::new("telemetry.distro.name", "otel-rs"));
    put(KeyValue::new("telemetry.distro.version", env!("CARGO_PKG_VERSION")));
    put(KeyValue::new("host.arch", host_arch()));
    put(KeyValue::new("os.type", os_type()));
    put(KeyValue::new("process.pid", i64::from(std::process::id())));
    put(KeyValue::new("process.runtime.name", "rustc"));
    put(KeyValue::new(
        "process.runtime.version",
        env!("OTEL_CORE_RUSTC_VERSION"),
    ));
    put(KeyValue::new("process.runtime.description", "Rust"));
    put(KeyValue::new("service.instance.id", random_uuid()));
    let exe = executable_name();
    if let Some(exe) = &exe {
        put(KeyValue::new("process.executable.name", exe.clone()));
    }
    if let Some(h) = host_name(env) {
        put(KeyValue::new("host.name", h));
    }
    for (var, key) in KUBERNETES_VARIABLES {
        if let Some(v) = env.get(var) {
            put(KeyValue::new(*key, v.trim().to_owned()));
        }
    }

    if read_env {
        if let Some(v) = env.get(OTEL_RESOURCE_ATTRIBUTES) {
            match parse_resource_attributes(&v) {
                Ok(kvs) => kvs.into_iter().for_each(&mut put),
                Err(bad) => env.reject(ConfigError::new(
                    OTEL_RESOURCE_ATTRIBUTES,
                    v.clone(),
                    format!(
                        "comma-separated key=value pairs with percent-encoded values; {bad:?} is not one (the whole variable is ignored)"
                    ),
                ))?,
            }
        }
        if let Some(name) = env.get(OTEL_SERVICE_NAME) {
            put(KeyValue::new("service.name", name.trim().to_owned()));
        }
    }

    for kv in settings.file_attributes.iter().cloned() {
        put(kv);
    }
    for kv in settings.attributes.iter().cloned() {
        put(kv);
    }
    if let Some(v) = &settings.service_version {
        put(KeyValue::new("service.version", v.clone()));
    }
    if let Some(v) = &settings.service_namespace {
        put(KeyValue::new("service.namespace", v.clone()));
    }
    if let Some(v) = &settings.service_name {
        put(KeyValue::new("service.name", v.clone()));
    }
    attrs
        .entry(Key::from_static_str("service.name"))
        .or_insert_with(|| Value::from(exe.unwrap_or_else(|| "unknown_service".to_owned())));
    let mut builder = Resource::builder_empty().with_attributes(attrs.into_iter().map(|(k, v)| KeyValue::new(k, v)));
    if let Some(url) = &settings.schema_url {
        builder = builder.with_schema_url(Vec::<KeyValue>::new(), url.clone());
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use otel_export::EnvMode;
    use std::collections::HashMap;

    fn detect_with(vars: &[(&str, &str)], settings: ResourceSettings, mode: EnvMode) -> Result<Resource, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        detect(
            &mut EnvReader::from_fn(move |k| map.get(k).cloned(), mode),
            &settings,
            true,
        )
    }

    fn get(r: &Resource, k: &'static str) -> Option<String> {
        r.get(&Key::from_static_str(k)).map(|v| v.to_string())
    }

    #[test]
    fn parses_resource_attributes() {
        let kvs = parse_resource_attributes("a=1, b = two%20words ,c=%E2%9C%93").unwrap();
        assert_eq!(
            kvs,
            vec![
                KeyValue::new("a", "1"),
                KeyValue::new("b", "two words"),
                KeyValue::new("c", "✓")
            ]
        );
        assert!(parse_resource_attributes("novalue").is_err());
        assert!(parse_resource_attributes("=x").is_err());
        assert!(parse_resource_attributes("a=%zz").is_err());
        assert!(parse_resource_attributes("a=50%").is_err(), "a truncated escape");
        assert!(parse_resource_attributes("a=%FF").is_err(), "not UTF-8");
    }

    #[test]
    fn service_name_precedence() {
        let r = detect_with(&[], ResourceSettings::default(), EnvMode::Strict).unwrap();
        let exe = executable_name().unwrap();
        assert_eq!(
            get(&r, "service.name").unwrap(),
            exe,
            "the binary name, not unknown_service"
        );
        let r = detect_with(
            &[("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs")],
            ResourceSettings::default(),
            EnvMode::Strict,
        )
        .unwrap();
        assert_eq!(get(&r, "service.name").unwrap(), "from-attrs");
        let r = detect_with(
            &[
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
                ("OTEL_SERVICE_NAME", "from-env"),
            ],
            ResourceSettings::default(),
            EnvMode::Strict,
        )
        .unwrap();
        assert_eq!(get(&r, "service.name").unwrap(), "from-env");
        let code = ResourceSettings {
            service_name: Some("from-code".into()),
            ..Default::default()
        };
        let r = detect_with(&[("OTEL_SERVICE_NAME", "from-env")], code, EnvMode::Strict).unwrap();
        assert_eq!(get(&r, "service.name").unwrap(), "from-code");
    }

    #[test]
    fn kubernetes_and_host_attributes() {
        let vars = [
            ("K8S_POD_NAME", "checkout-7d9f8b6c5-x2x4z"),
            ("K8S_POD_UID", "0b5e9f7c-1111-2222-3333-444455556666"),
            ("K8S_NAMESPACE_NAME", "shop"),
            ("K8S_NODE_NAME", "node-7"),
            ("K8S_DEPLOYMENT_NAME", "checkout"),
            ("K8S_CLUSTER_NAME", "prod-eu"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.version=1.4.2,service.namespace=shop,deployment.environment.name=production",
            ),
        ];
        let r = detect_with(&vars, ResourceSettings::default(), EnvMode::Strict).unwrap();
        for (var, key) in KUBERNETES_VARIABLES {
            let expected = vars.iter().find(|(v, _)| v == var).unwrap().1;
            assert_eq!(get(&r, key).as_deref(), Some(expected), "{key}");
        }
        assert_eq!(get(&r, "service.version").as_deref(), Some("1.4.2"));
        assert_eq!(get(&r, "service.namespace").as_deref(), Some("shop"));
        for key in [
            "host.arch",
            "os.type",
            "process.pid",
            "process.executable.name",
            "process.runtime.name",
            "process.runtime.version",
            "telemetry.sdk.name",
            "telemetry.sdk.language",
            "telemetry.sdk.version",
            "service.instance.id",
        ] {
            assert!(get(&r, key).is_some(), "{key}");
        }
        let id = get(&r, "service.instance.id").unwrap();
        assert_eq!((id.len(), &id[14..15]), (36, "4"), "a v4 UUID: {id}");
    }

    #[test]
    fn malformed_resource_attributes() {
        let err = detect_with(
            &[("OTEL_RESOURCE_ATTRIBUTES", "a=1,oops")],
            ResourceSettings::default(),
            EnvMode::Strict,
        )
        .unwrap_err();
        assert_eq!(err.variable(), "OTEL_RESOURCE_ATTRIBUTES");
        let r = detect_with(
            &[("OTEL_RESOURCE_ATTRIBUTES", "a=1,oops")],
            ResourceSettings::default(),
            EnvMode::Lenient,
        )
        .unwrap();
        assert_eq!(get(&r, "a"), None, "the whole value is discarded");
    }
}
