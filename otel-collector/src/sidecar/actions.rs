//! `attributes` and `resource` processor actions, applied to a message's
//! settings and their application to a message's bytes: the other fields
//! are copied as they are, the attributes re-encoded.

use super::config::{At, ConfigError, child, get, get_str, reject};
use super::wire::keyvalues;
use otel_export::wire::field::{any_value, key_value};
use otel_export::wire::{Field, Reader, VARINT, put_bytes, put_fixed64, put_len_header, put_tag, put_varint};
use serde_json::Value;
use std::borrow::Cow;

/// What an attribute action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActionKind {
    /// Add when absent.
    Insert,
    /// Replace when present.
    Update,
    /// Add or replace.
    Upsert,
    /// Remove.
    Delete,
    /// Replace the value with its SHA-256 hex digest.
    Hash,
}

/// A literal attribute value from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// A boolean.
    Bool(bool),
}

/// One action of an `attributes` or `resource` processor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Action {
    /// The attribute.
    pub key: String,
    /// What to do.
    pub kind: ActionKind,
    /// The new value (insert / update / upsert).
    pub value: Option<Literal>,
    /// Or copy it from this attribute.
    pub from_attribute: Option<String>,
}

/// Reads the list of actions under `key`.
pub(crate) fn parse_actions(at: At<'_>, key: &str) -> Result<Vec<Action>, ConfigError> {
    let path = child(at.path, key);
    let items = match get(at, key) {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None => return Err(ConfigError::new(path, "at least one action is required")),
        Some(other) => {
            return Err(ConfigError::new(
                path,
                format!("must be a list of actions, got {other}"),
            ));
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let a = At { value: item, path: &p };
        a.map()?;
        a.only_keys(&[
            "key",
            "action",
            "value",
            "from_attribute",
            "from_context",
            "pattern",
            "converted_type",
        ])?;
        for unsupported in ["from_context", "pattern", "converted_type"] {
            reject(
                a,
                unsupported,
                &format!("{unsupported} is not supported; use value or from_attribute"),
            )?;
        }
        let key = get_str(a, "key")?
            .filter(|k| !k.is_empty())
            .ok_or_else(|| a.err("an action needs a key"))?
            .to_owned();
        let action = get_str(a, "action")?.ok_or_else(|| a.err("an action needs an action"))?;
        let kind = match action.to_ascii_lowercase().as_str() {
            "insert" => ActionKind::Insert,
            "update" => ActionKind::Update,
            "upsert" => ActionKind::Upsert,
            "delete" => ActionKind::Delete,
            "hash" => ActionKind::Hash,
            "extract" | "convert" => {
                return Err(ConfigError::new(
                    child(&p, "action"),
                    format!("{action} is not supported; available: insert, update, upsert, delete, hash"),
                ));
            }
            _ => {
                return Err(ConfigError::new(
                    child(&p, "action"),
                    format!("unknown action {action:?}; available: insert, update, upsert, delete, hash"),
                ));
            }
        };
        let value = match get(a, "value") {
            None => None,
            Some(Value::String(s)) => Some(Literal::Str(s.clone())),
            Some(Value::Bool(b)) => Some(Literal::Bool(*b)),
            Some(Value::Number(n)) => Some(match n.as_i64() {
                Some(i) => Literal::Int(i),
                None => Literal::Double(n.as_f64().unwrap_or(0.0)),
            }),
            Some(other) => {
                return Err(ConfigError::new(
                    child(&p, "value"),
                    format!("must be a string, number or bool, got {other}"),
                ));
            }
        };
        let from_attribute = get_str(a, "from_attribute")?.map(str::to_owned);
        if matches!(kind, ActionKind::Insert | ActionKind::Update | ActionKind::Upsert) {
            match (&value, &from_attribute) {
                (None, None) => return Err(a.err(format!("{action} needs value or from_attribute"))),
                (Some(_), Some(_)) => return Err(a.err("value and from_attribute are exclusive")),
                _ => {}
            }
        }
        out.push(Action {
            key,
            kind,
            value,
            from_attribute,
        });
    }
    Ok(out)
}

/// The `hash` action's value: the lowercase hex SHA-256 of the bytes, as Go's.
pub(crate) fn hex_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    crate::hex(&sha2::Sha256::digest(data))
}

/// An `AnyValue` holding `literal`.
pub(crate) fn literal_value(literal: &Literal) -> Vec<u8> {
    let mut v = Vec::new();
    match literal {
        Literal::Str(s) => put_bytes(&mut v, any_value::STRING, s.as_bytes()),
        Literal::Bool(b) => {
            put_tag(&mut v, any_value::BOOL, VARINT);
            put_varint(&mut v, u64::from(*b));
        }
        Literal::Int(i) => {
            put_tag(&mut v, any_value::INT, VARINT);
            put_varint(&mut v, *i as u64);
        }
        Literal::Double(d) => put_fixed64(&mut v, any_value::DOUBLE, d.to_bits()),
    }
    v
}

/// The bytes the `hash` action digests: a string's bytes, a bool as one
/// byte, an int or double as 8 little-endian bytes; other values give an
/// empty result.
fn hash_value(value: &[u8]) -> Vec<u8> {
    let mut input: Option<Vec<u8>> = None;
    let mut r = Reader::new(value);
    while let Some(Ok(f)) = r.next_field() {
        input = match f {
            (any_value::STRING, Field::Bytes(s)) => Some(s.to_vec()),
            (any_value::BOOL, Field::Varint(b)) => Some(vec![u8::from(b != 0)]),
            (any_value::INT, Field::Varint(i)) => Some(i.to_le_bytes().to_vec()),
            (any_value::DOUBLE, Field::Fixed64(d)) => Some(d.to_le_bytes().to_vec()),
            _ => None,
        };
    }
    let hashed = match input {
        Some(bytes) if !bytes.is_empty() => hex_digest(&bytes),
        _ => String::new(),
    };
    literal_value(&Literal::Str(hashed))
}

/// Applies `actions` to the attributes (field `attr_field`) of `message`;
/// `None` when nothing changed.
pub(crate) fn apply(message: &[u8], attr_field: u32, actions: &[Action]) -> Option<Vec<u8>> {
    let mut attrs: Vec<(Cow<'_, str>, Cow<'_, [u8]>)> = keyvalues(message, attr_field)
        .map(|(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
        .collect();
    let mut changed = false;
    for a in actions {
        let pos = attrs.iter().position(|(k, _)| *k == a.key);
        let new_value = || -> Option<Vec<u8>> {
            match (&a.value, &a.from_attribute) {
                (Some(l), _) => Some(literal_value(l)),
                (None, Some(src)) => attrs.iter().find(|(k, _)| k == src).map(|(_, v)| v.to_vec()),
                (None, None) => None,
            }
        };
        match (a.kind, pos) {
            (ActionKind::Insert, None) | (ActionKind::Upsert, None) => {
                if let Some(v) = new_value() {
                    attrs.push((Cow::Owned(a.key.clone()), Cow::Owned(v)));
                    changed = true;
                }
            }
            (ActionKind::Update | ActionKind::Upsert, Some(i)) => {
                if let Some(v) = new_value() {
                    attrs[i].1 = Cow::Owned(v);
                    changed = true;
                }
            }
            (ActionKind::Delete, Some(_)) => {
                attrs.retain(|(k, _)| *k != a.key);
                changed = true;
            }
            (ActionKind::Hash, Some(i)) => {
                attrs[i].1 = Cow::Owned(hash_value(&attrs[i].1));
                changed = true;
            }
            _ => {}
        }
    }
    if !changed {
        return None;
    }
    let mut out = Vec::with_capacity(message.len() + 64);
    crate::sidecar::wire::copy_without(message, attr_field, &mut out);
    for (k, v) in &attrs {
        let content = otel_export::wire::len_field_len(key_value::KEY, k.len())
            + otel_export::wire::len_field_len(key_value::VALUE, v.len());
        put_len_header(&mut out, attr_field, content);
        put_bytes(&mut out, key_value::KEY, k.as_bytes());
        put_bytes(&mut out, key_value::VALUE, v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::AttrValue;
    use crate::sidecar::wire::{any_value, keyvalues};
    use otel_export::wire::field::resource;

    fn kv(key: &str, v: &Literal) -> Vec<u8> {
        let value = literal_value(v);
        let mut m = Vec::new();
        put_bytes(&mut m, key_value::KEY, key.as_bytes());
        put_bytes(&mut m, key_value::VALUE, &value);
        m
    }

    fn resource(attrs: &[(&str, Literal)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in attrs {
            put_bytes(&mut out, resource::ATTRIBUTES, &kv(k, v));
        }
        // dropped_attributes_count = 3 must survive.
        put_tag(&mut out, resource::DROPPED_ATTRIBUTES_COUNT, VARINT);
        put_varint(&mut out, 3);
        out
    }

    fn action(key: &str, kind: ActionKind, value: Option<Literal>, from: Option<&str>) -> Action {
        Action {
            key: key.into(),
            kind,
            value,
            from_attribute: from.map(str::to_owned),
        }
    }

    fn read(message: &[u8]) -> Vec<(String, String)> {
        keyvalues(message, resource::ATTRIBUTES)
            .map(|(k, v)| {
                let v = match any_value(v) {
                    AttrValue::Str(s) => s.to_owned(),
                    AttrValue::Int(i) => i.to_string(),
                    AttrValue::Bool(b) => b.to_string(),
                    AttrValue::Double(d) => d.to_string(),
                    AttrValue::Other => "?".into(),
                };
                (k.to_owned(), v)
            })
            .collect()
    }

    #[test]
    fn insert_update_upsert_delete_hash() {
        let r = resource(&[
            ("service.name", Literal::Str("checkout".into())),
            ("user.email", Literal::Str("a@b.c".into())),
        ]);
        let out = apply(
            &r,
            1,
            &[
                action(
                    "deployment.environment",
                    ActionKind::Insert,
                    Some(Literal::Str("production".into())),
                    None,
                ),
                action(
                    "service.name",
                    ActionKind::Insert,
                    Some(Literal::Str("ignored".into())),
                    None,
                ),
                action("missing", ActionKind::Update, Some(Literal::Int(1)), None),
                action(
                    "service.name",
                    ActionKind::Update,
                    Some(Literal::Str("shop".into())),
                    None,
                ),
                action("copy", ActionKind::Upsert, None, Some("service.name")),
                action("user.email", ActionKind::Hash, None, None),
                action("k8s.pod.uid", ActionKind::Delete, None, None),
                action("port", ActionKind::Upsert, Some(Literal::Int(4317)), None),
            ],
        )
        .unwrap();
        assert_eq!(
            read(&out),
            [
                ("service.name".into(), "shop".into()),
                ("user.email".into(), hex_digest(b"a@b.c")),
                ("deployment.environment".into(), "production".into()),
                ("copy".into(), "shop".into()),
                ("port".into(), "4317".into()),
            ]
        );
        // The other field is kept.
        let mut rest = Reader::new(&out);
        let mut dropped = None;
        while let Some(Ok(f)) = rest.next_field() {
            if let (resource::DROPPED_ATTRIBUTES_COUNT, Field::Varint(n)) = f {
                dropped = Some(n);
            }
        }
        assert_eq!(dropped, Some(3));
        // Deleting removes every copy of the key.
        let out = apply(
            &out,
            resource::ATTRIBUTES,
            &[action("copy", ActionKind::Delete, None, None)],
        )
        .unwrap();
        assert!(!read(&out).iter().any(|(k, _)| k == "copy"));
    }

    #[test]
    fn no_change_is_none() {
        let r = resource(&[("a", Literal::Bool(true))]);
        assert!(
            apply(
                &r,
                resource::ATTRIBUTES,
                &[action("b", ActionKind::Update, Some(Literal::Int(1)), None)]
            )
            .is_none()
        );
        assert!(apply(&r, resource::ATTRIBUTES, &[action("b", ActionKind::Delete, None, None)]).is_none());
    }

    #[test]
    fn sha256_known_digests() {
        // FIPS 180-4 examples and the empty input.
        assert_eq!(
            hex_digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hashing_non_strings() {
        let r = resource(&[("n", Literal::Int(42)), ("b", Literal::Bool(true))]);
        let out = apply(
            &r,
            1,
            &[
                action("n", ActionKind::Hash, None, None),
                action("b", ActionKind::Hash, None, None),
            ],
        )
        .unwrap();
        assert_eq!(read(&out)[0].1, hex_digest(&42i64.to_le_bytes()));
        assert_eq!(read(&out)[1].1, hex_digest(&[1]));
    }
}
