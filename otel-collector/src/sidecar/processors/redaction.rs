//! `redaction`: removes attributes not on an allow list and masks values that
//! match blocked patterns, as Go's processor does for traces: on resources,
//! spans and span events.
//!
//! For each attribute, in order: an ignored key (`ignored_keys`,
//! `ignored_key_patterns`) passes untouched; a key not allowed (unless
//! `allow_all_keys`) is removed; a value matching `allowed_values` passes; a
//! key matching `blocked_key_patterns` has its whole value masked; otherwise
//! every match of `blocked_values` in the value is masked. Masks are `****`,
//! or the hex digest of the matched text with `hash_function` (`md5`, `sha1`,
//! `sha3` (SHA3-256), `hmac-sha256`, `hmac-sha512` with `hmac_key`). Only
//! string values are examined unless `redact_all_types`. `summary: info` adds
//! `redaction.*.count` attributes, `debug` also the sorted key lists.

use crate::facts::AttrValue;
use crate::sidecar::component::{BuildContext, Built, Component, Factory, ProcessorSettings, StagePlace};
use crate::sidecar::config::{At, ConfigError, child, get_bool, get_str, get_strings};
use crate::sidecar::pipeline::Consumer;
use crate::sidecar::wire::{SpanRec, any_value, keyvalues, map_field};
use otel_export::wire::field::{event, key_value, resource, span};
use otel_export::wire::{len_field_len, put_bytes, put_len_header};
use regex::Regex;
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ProcessorSettings> = Factory {
    component: Component {
        section: "processors",
        name: "redaction",
        settings: &[
            "allow_all_keys",
            "allowed_keys",
            "ignored_keys",
            "ignored_key_patterns",
            "blocked_key_patterns",
            "blocked_values",
            "allowed_values",
            "hash_function",
            "hmac_key",
            "redact_all_types",
            "summary",
        ],
        ignored: &["url_sanitizer", "db_sanitizer"],
    },
    parse: |at, _| Ok(Box::new(RedactionConfig::parse(at)?)),
};

/// How a masked match is replaced (`hash_function`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum HashFunction {
    /// Unset: `****`.
    None,
    /// `md5`.
    Md5,
    /// `sha1`.
    Sha1,
    /// `sha3`: SHA3-256.
    Sha3,
    /// `hmac-sha256` with the key.
    HmacSha256(Vec<u8>),
    /// `hmac-sha512` with the key.
    HmacSha512(Vec<u8>),
}

/// Which diagnostic attributes are added (`summary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Summary {
    /// `silent` (the default): none.
    Silent,
    /// `info`: counts.
    Info,
    /// `debug`: counts and key lists.
    Debug,
}

/// `redaction` settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub(crate) struct RedactionConfig {
    pub(crate) allow_all_keys: bool,
    /// `allowed_keys` and the processor's own summary keys.
    pub(crate) allowed_keys: HashSet<String>,
    pub(crate) ignored_keys: HashSet<String>,
    pub(crate) ignored_key_patterns: Vec<Regex>,
    pub(crate) blocked_key_patterns: Vec<Regex>,
    pub(crate) blocked_values: Vec<Regex>,
    pub(crate) allowed_values: Vec<Regex>,
    pub(crate) hash: HashFunction,
    pub(crate) redact_all_types: bool,
    pub(crate) summary: Summary,
}

const REDACTED_KEYS: &str = "redaction.redacted.keys";
const REDACTED_COUNT: &str = "redaction.redacted.count";
const MASKED_KEYS: &str = "redaction.masked.keys";
const MASKED_COUNT: &str = "redaction.masked.count";
const ALLOWED_KEYS: &str = "redaction.allowed.keys";
const ALLOWED_COUNT: &str = "redaction.allowed.count";
const IGNORED_COUNT: &str = "redaction.ignored.count";

fn regexes(at: At<'_>, key: &str) -> Result<Vec<Regex>, ConfigError> {
    get_strings(at, key)?
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Regex::new(p).map_err(|e| {
                ConfigError::new(
                    format!("{}.{key}[{i}]", at.path),
                    format!("not a regular expression: {e}"),
                )
            })
        })
        .collect()
}

impl RedactionConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        let mut allowed_keys: HashSet<String> = get_strings(at, "allowed_keys")?.into_iter().collect();
        // The processor's own summary attributes survive a later pass.
        for k in [REDACTED_KEYS, REDACTED_COUNT, MASKED_KEYS, MASKED_COUNT, IGNORED_COUNT] {
            allowed_keys.insert(k.to_owned());
        }
        let hmac_key = get_str(at, "hmac_key")?.unwrap_or("").as_bytes().to_vec();
        let hash = match get_str(at, "hash_function")?.unwrap_or("") {
            "" => HashFunction::None,
            "md5" => HashFunction::Md5,
            "sha1" => HashFunction::Sha1,
            "sha3" => HashFunction::Sha3,
            h @ ("hmac-sha256" | "hmac-sha512") => {
                if hmac_key.is_empty() {
                    return Err(ConfigError::new(
                        child(at.path, "hmac_key"),
                        format!("hash_function {h} needs a non-empty hmac_key"),
                    ));
                }
                if h == "hmac-sha256" {
                    HashFunction::HmacSha256(hmac_key)
                } else {
                    HashFunction::HmacSha512(hmac_key)
                }
            }
            other => {
                return Err(ConfigError::new(
                    child(at.path, "hash_function"),
                    format!("unknown hash function {other:?}; accepted: md5, sha1, sha3, hmac-sha256, hmac-sha512"),
                ));
            }
        };
        let summary = match get_str(at, "summary")?.unwrap_or("") {
            "" | "silent" => Summary::Silent,
            "info" => Summary::Info,
            "debug" => Summary::Debug,
            other => {
                return Err(ConfigError::new(
                    child(at.path, "summary"),
                    format!("unknown summary {other:?}; accepted: debug, info, silent"),
                ));
            }
        };
        Ok(RedactionConfig {
            allow_all_keys: get_bool(at, "allow_all_keys")?.unwrap_or(false),
            allowed_keys,
            ignored_keys: get_strings(at, "ignored_keys")?.into_iter().collect(),
            ignored_key_patterns: regexes(at, "ignored_key_patterns")?,
            blocked_key_patterns: regexes(at, "blocked_key_patterns")?,
            blocked_values: regexes(at, "blocked_values")?,
            allowed_values: regexes(at, "allowed_values")?,
            hash,
            redact_all_types: get_bool(at, "redact_all_types")?.unwrap_or(false),
            summary,
        })
    }

    fn is_ignored(&self, key: &str) -> bool {
        self.ignored_keys.contains(key) || self.ignored_key_patterns.iter().any(|r| r.is_match(key))
    }

    fn is_removed(&self, key: &str) -> bool {
        !self.allow_all_keys && !self.allowed_keys.contains(key)
    }

    fn mask(&self, matched: &str) -> String {
        use hmac::{KeyInit, Mac};
        use sha2::Digest;
        let hex = crate::hex;
        match &self.hash {
            HashFunction::None => "****".to_owned(),
            HashFunction::Md5 => hex(&md5::Md5::digest(matched.as_bytes())),
            HashFunction::Sha1 => hex(&sha1::Sha1::digest(matched.as_bytes())),
            HashFunction::Sha3 => hex(&sha3::Sha3_256::digest(matched.as_bytes())),
            HashFunction::HmacSha256(key) => match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(matched.as_bytes());
                    hex(&m.finalize().into_bytes())
                }
                Err(_) => "****".to_owned(),
            },
            HashFunction::HmacSha512(key) => match hmac::Hmac::<sha2::Sha512>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(matched.as_bytes());
                    hex(&m.finalize().into_bytes())
                }
                Err(_) => "****".to_owned(),
            },
        }
    }

    /// Every match of `re` in `value` masked (borrowed when nothing matched).
    fn mask_matches<'v>(&self, value: &'v str, re: &Regex) -> Cow<'v, str> {
        re.replace_all(value, |c: &regex::Captures<'_>| self.mask(&c[0]))
    }

    /// The attributes (field `field`) of `message` redacted, summary
    /// attributes added; `None` when nothing changed.
    pub(crate) fn redact(&self, message: &[u8], field: u32) -> Option<Vec<u8>> {
        let mut attrs: Vec<(Cow<'_, str>, Cow<'_, [u8]>)> = Vec::new();
        let (mut redacted, mut masked, mut allowed, mut ignored) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, v) in keyvalues(message, field) {
            if self.is_ignored(k) {
                ignored.push(k.to_owned());
                attrs.push((Cow::Borrowed(k), Cow::Borrowed(v)));
                continue;
            }
            if self.is_removed(k) {
                redacted.push(k.to_owned());
                continue;
            }
            let text: Option<Cow<'_, str>> = match any_value(v) {
                AttrValue::Str(s) => Some(Cow::Borrowed(s)),
                AttrValue::Int(i) if self.redact_all_types => Some(Cow::Owned(i.to_string())),
                AttrValue::Double(d) if self.redact_all_types => Some(Cow::Owned(d.to_string())),
                AttrValue::Bool(b) if self.redact_all_types => Some(Cow::Owned(b.to_string())),
                _ => None,
            };
            let Some(text) = text else {
                attrs.push((Cow::Borrowed(k), Cow::Borrowed(v)));
                continue;
            };
            if self.allowed_values.iter().any(|r| r.is_match(&text)) {
                allowed.push(k.to_owned());
                attrs.push((Cow::Borrowed(k), Cow::Borrowed(v)));
                continue;
            }
            if self.blocked_key_patterns.iter().any(|r| r.is_match(k)) {
                masked.push(k.to_owned());
                let whole = self.mask_matches(&text, &MATCH_ALL);
                attrs.push((Cow::Borrowed(k), Cow::Owned(string_value(&whole))));
                continue;
            }
            let mut out = Cow::Borrowed(text.as_ref());
            for re in &self.blocked_values {
                // Borrowed back when nothing matched: one scan per pattern.
                if let Cow::Owned(masked) = self.mask_matches(&out, re) {
                    out = Cow::Owned(masked);
                }
            }
            if out != text.as_ref() {
                masked.push(k.to_owned());
                attrs.push((Cow::Borrowed(k), Cow::Owned(string_value(&out))));
            } else {
                attrs.push((Cow::Borrowed(k), Cow::Borrowed(v)));
            }
        }
        let changed = !redacted.is_empty() || !masked.is_empty();
        let summarized = self.summary != Summary::Silent
            && !(redacted.is_empty() && masked.is_empty() && allowed.is_empty() && ignored.is_empty());
        if !changed && !summarized {
            return None;
        }
        self.summarize(&mut attrs, redacted, Some(REDACTED_KEYS), REDACTED_COUNT);
        self.summarize(&mut attrs, masked, Some(MASKED_KEYS), MASKED_COUNT);
        self.summarize(&mut attrs, allowed, Some(ALLOWED_KEYS), ALLOWED_COUNT);
        self.summarize(&mut attrs, ignored, None, IGNORED_COUNT);
        let mut out = Vec::with_capacity(message.len() + 64);
        crate::sidecar::wire::copy_without(message, field, &mut out);
        for (k, v) in &attrs {
            let content = len_field_len(key_value::KEY, k.len()) + len_field_len(key_value::VALUE, v.len());
            put_len_header(&mut out, field, content);
            put_bytes(&mut out, key_value::KEY, k.as_bytes());
            put_bytes(&mut out, key_value::VALUE, v);
        }
        Some(out)
    }

    /// Go's summary: with `debug`, `keys_attr` holds the sorted keys (merged
    /// with a list already there); with `info` or `debug`, `count_attr` the
    /// count (added to one already there).
    fn summarize<'a>(
        &self,
        attrs: &mut Vec<(Cow<'a, str>, Cow<'a, [u8]>)>,
        mut keys: Vec<String>,
        keys_attr: Option<&'static str>,
        count_attr: &'static str,
    ) {
        if keys.is_empty() || self.summary == Summary::Silent {
            return;
        }
        let mut count = keys.len() as i64;
        if self.summary == Summary::Debug
            && let Some(name) = keys_attr
        {
            if let Some((_, v)) = attrs.iter().find(|(k, _)| k == name)
                && let AttrValue::Str(s) = any_value(v)
                && !s.is_empty()
            {
                keys.extend(s.split(',').map(str::to_owned));
            }
            keys.sort();
            put(attrs, name, string_value(&keys.join(",")));
        }
        if let Some((_, v)) = attrs.iter().find(|(k, _)| k == count_attr)
            && let AttrValue::Int(i) = any_value(v)
        {
            count += i;
        }
        put(attrs, count_attr, int_value(count));
    }
}

static MATCH_ALL: std::sync::LazyLock<Regex> =
    std::sync::LazyLock::new(|| Regex::new(".*").unwrap_or_else(|_| unreachable!()));

fn put<'a>(attrs: &mut Vec<(Cow<'a, str>, Cow<'a, [u8]>)>, key: &'static str, value: Vec<u8>) {
    match attrs.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = Cow::Owned(value),
        None => attrs.push((Cow::Borrowed(key), Cow::Owned(value))),
    }
}

fn string_value(s: &str) -> Vec<u8> {
    crate::sidecar::actions::literal_value(&crate::sidecar::actions::Literal::Str(s.to_owned()))
}

fn int_value(i: i64) -> Vec<u8> {
    crate::sidecar::actions::literal_value(&crate::sidecar::actions::Literal::Int(i))
}

impl ProcessorSettings for RedactionConfig {
    fn build(&self, _: &BuildContext, _: StagePlace<'_>, next: Arc<dyn Consumer>) -> Result<Built, String> {
        Ok(Built::stage(Arc::new(RedactionStage {
            config: self.clone(),
            next,
        })))
    }
}

/// The stage.
pub(crate) struct RedactionStage {
    config: RedactionConfig,
    next: Arc<dyn Consumer>,
}

impl Consumer for RedactionStage {
    fn consume(&self, mut spans: Vec<SpanRec>) {
        let c = &self.config;
        super::rewrite_resources(&mut spans, |bytes| c.redact(bytes, resource::ATTRIBUTES));
        for s in &mut spans {
            let attributes = c.redact(s.bytes(), span::ATTRIBUTES);
            let current: &[u8] = attributes.as_deref().unwrap_or(s.bytes());
            let events = map_field(current, span::EVENTS, |e| c.redact(e, event::ATTRIBUTES));
            if let Some(bytes) = events.or(attributes) {
                s.set_bytes(bytes::Bytes::from(bytes));
            }
        }
        self.next.consume(spans);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::testing::{Recorder, build, context, processor, resource_attr, span_attr, spans, trace};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::trace::v1::{Span, span::Event};
    use prost::Message as _;

    fn settings(yaml: &str) -> RedactionConfig {
        let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        RedactionConfig::parse(At {
            value: &v,
            path: "processors.redaction",
        })
        .unwrap()
    }

    fn kv(key: &str, v: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn attrs(c: &RedactionConfig, input: Vec<KeyValue>) -> Vec<(String, String)> {
        let bytes = Span {
            attributes: input,
            ..Default::default()
        }
        .encode_to_vec();
        let out = c.redact(&bytes, span::ATTRIBUTES).unwrap_or(bytes);
        let decoded = Span::decode(out.as_slice()).unwrap();
        decoded
            .attributes
            .into_iter()
            .map(|kv| {
                let v = match kv.value.and_then(|v| v.value) {
                    Some(Value::StringValue(s)) => s,
                    Some(Value::IntValue(i)) => format!("int:{i}"),
                    Some(Value::BoolValue(b)) => format!("bool:{b}"),
                    other => format!("{other:?}"),
                };
                (kv.key, v)
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn allow_list_block_values_and_debug_summary() {
        let c = settings(
            "{allowed_keys: [description, group, id, name], ignored_keys: [safe_attribute], \
              blocked_values: ['4[0-9]{12}(?:[0-9]{3})?', '(5[1-5][0-9]{14})'], summary: debug}",
        );
        let got = attrs(
            &c,
            vec![
                kv("id", Value::IntValue(5)),
                kv("name", s("placeholder")),
                kv("group", s("temporary")),
                kv("credit_card", s("4111111111111111")),
                kv("description", s("visa 4111111111111111 and mc 5105105105105100")),
                kv("safe_attribute", s("4111111111111111")),
                kv("birth_date", s("1999-01-01")),
            ],
        );
        assert_eq!(
            got,
            pairs(&[
                ("id", "int:5"),
                ("name", "placeholder"),
                ("group", "temporary"),
                ("description", "visa **** and mc ****"),
                ("safe_attribute", "4111111111111111"),
                ("redaction.redacted.keys", "birth_date,credit_card"),
                ("redaction.redacted.count", "int:2"),
                ("redaction.masked.keys", "description"),
                ("redaction.masked.count", "int:1"),
                ("redaction.ignored.count", "int:1"),
            ])
        );
        // A second pass keeps the summary (its keys are allowed) and adds to it.
        let again = attrs(
            &c,
            vec![
                kv("redaction.redacted.keys", s("birth_date")),
                kv("redaction.redacted.count", Value::IntValue(1)),
                kv("ssn", s("x")),
            ],
        );
        assert_eq!(
            again,
            pairs(&[
                ("redaction.redacted.keys", "birth_date,ssn"),
                ("redaction.redacted.count", "int:2"),
            ])
        );
    }

    #[test]
    fn info_summary_counts_and_silent_adds_nothing() {
        let input = || vec![kv("a", s("1")), kv("b", s("2"))];
        let info = settings("{allowed_keys: [a], summary: info}");
        assert_eq!(
            attrs(&info, input()),
            pairs(&[("a", "1"), ("redaction.redacted.count", "int:1")])
        );
        let silent = settings("{allowed_keys: [a]}");
        assert_eq!(attrs(&silent, input()), pairs(&[("a", "1")]));
    }

    #[test]
    fn hash_functions_give_the_hex_digest_of_the_match() {
        let card = "4111111111111111";
        for (yaml, want) in [
            ("hash_function: md5", "5910f4ea0062a0e29afd3dccc741e3ce"),
            ("hash_function: sha1", "68bfb396f35af3876fc509665b3dc23a0930aab1"),
            (
                "hash_function: sha3",
                "6099154214406cce6105a4688ab66533d3a55d1d7dd393cbccf22b487a22d922",
            ),
            (
                "{hash_function: hmac-sha256, hmac_key: k3y}",
                "1647d69235eb3301dedcda5b17f2338d3f9d41f01727423d9d68ca9926112360",
            ),
            (
                "{hash_function: hmac-sha512, hmac_key: k3y}",
                "7332345e87646e854f28fabfe0f603e6339124838f525404c898b182160def53b6539b442c5dc168819128f264ceb7910a507b55d43590ec401f531710682294",
            ),
        ] {
            let body = yaml.trim_start_matches('{').trim_end_matches('}');
            let c = settings(&format!(
                "{{allow_all_keys: true, blocked_values: ['4[0-9]{{15}}'], {body}}}"
            ));
            let got = attrs(&c, vec![kv("note", s(&format!("card {card}.")))]);
            assert_eq!(got, pairs(&[("note", &format!("card {want}."))]), "{yaml}");
        }
    }

    #[test]
    fn ignored_patterns_allowed_values_blocked_keys_and_all_types() {
        let c = settings(
            "{allow_all_keys: true, ignored_key_patterns: ['^safe\\.'], allowed_values: ['^ok-'], \
              blocked_key_patterns: ['.*token.*', 'pin'], blocked_values: ['[0-9]{4}']}",
        );
        let got = attrs(
            &c,
            vec![
                kv("safe.code", s("1234")),
                kv("code", s("ok-1234")),
                kv("auth_token", s("abc")),
                kv("pin", Value::IntValue(1234)),
                kv("other", s("x 5678 y")),
                kv("count", Value::IntValue(5678)),
            ],
        );
        assert_eq!(
            got,
            pairs(&[
                ("safe.code", "1234"),
                ("code", "ok-1234"),
                ("auth_token", "****"),
                // Not a string: left alone unless redact_all_types.
                ("pin", "int:1234"),
                ("other", "x **** y"),
                ("count", "int:5678"),
            ])
        );
        let all = settings(
            "{allow_all_keys: true, redact_all_types: true, blocked_key_patterns: [pin], blocked_values: ['[0-9]{4}']}",
        );
        let got = attrs(
            &all,
            vec![
                kv("pin", Value::IntValue(1234)),
                kv("count", Value::IntValue(5678)),
                kv("flag", Value::BoolValue(true)),
            ],
        );
        assert_eq!(got, pairs(&[("pin", "****"), ("count", "****"), ("flag", "bool:true")]));
    }

    #[test]
    fn bad_settings_are_refused_with_the_path() {
        for (yaml, says) in [
            ("{blocked_values: ['(']}", "processors.redaction.blocked_values[0]"),
            ("{hash_function: sha512}", "unknown hash function"),
            ("{hash_function: hmac-sha256}", "hmac_key"),
            ("{summary: verbose}", "unknown summary"),
        ] {
            let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
            let e = RedactionConfig::parse(At {
                value: &v,
                path: "processors.redaction",
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains(says), "{yaml}: {e}");
        }
    }

    #[tokio::test]
    async fn resources_spans_and_events_are_redacted() {
        let (ctx, metrics, _stop) = context();
        let settings =
            processor("{redaction: {allowed_keys: [service.name, note], blocked_values: ['u@example\\.com']}}");
        let out = Recorder::new();
        let built = build(&ctx, &settings, "redaction", out.clone());
        let mut input = spans("a", &trace(1, 3), &metrics.live());
        // One span also has an event with attributes.
        let mut first = Span::decode(input[0].bytes()).unwrap();
        first.events.push(Event {
            name: "e".into(),
            attributes: vec![kv("note", s("mail u@example.com")), kv("secret", s("x"))],
            ..Default::default()
        });
        input[0].set_bytes(bytes::Bytes::from(first.encode_to_vec()));
        built.head.consume(input);
        let got = out.take();
        assert_eq!(got.len(), 3);
        for rec in &got {
            assert_eq!(resource_attr(rec, "service.name").as_deref(), Some("a"));
            // user.email is not allowed: removed.
            assert_eq!(span_attr(rec, "user.email"), None);
        }
        assert!(Arc::ptr_eq(&got[0].scope.resource, &got[2].scope.resource));
        let event = &Span::decode(got[0].bytes()).unwrap().events[0];
        let kept: Vec<(&str, Option<&Value>)> = event
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .collect();
        assert_eq!(kept, vec![("note", Some(&s("mail ****")))]);
        assert_eq!(event.name, "e");
    }
}
