//! Attribute value length limits, which opentelemetry_sdk does not apply:
//! a processor wrapper truncating string values before they are exported.

use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use std::time::Duration;

/// Truncates string attribute values (and strings in arrays) of spans, their
/// events and links to `max_chars` characters, then hands the span on.
#[derive(Debug)]
pub struct ValueLengthLimit<P> {
    inner: P,
    max_chars: usize,
}

impl<P: SpanProcessor> ValueLengthLimit<P> {
    /// Truncates to `max_chars` characters before `inner` sees the span.
    pub fn new(inner: P, max_chars: usize) -> Self {
        ValueLengthLimit { inner, max_chars }
    }
}

fn truncate(s: &StringValue, max: usize) -> Option<StringValue> {
    let text = s.as_str();
    // Byte length bounds character count from above: most values skip the scan.
    if text.len() <= max {
        return None;
    }
    let (cut, _) = text.char_indices().nth(max)?;
    Some(StringValue::from(text[..cut].to_owned()))
}

fn limit_all(attributes: &mut [KeyValue], max: usize) {
    for kv in attributes {
        match &mut kv.value {
            Value::String(s) => {
                if let Some(t) = truncate(s, max) {
                    *s = t;
                }
            }
            Value::Array(Array::String(values)) => {
                for s in values.iter_mut() {
                    if let Some(t) = truncate(s, max) {
                        *s = t;
                    }
                }
            }
            _ => {}
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for ValueLengthLimit<P> {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        limit_all(&mut span.attributes, self.max_chars);
        for e in span.events.events.iter_mut() {
            limit_all(&mut e.attributes, self.max_chars);
        }
        for l in span.links.links.iter_mut() {
            limit_all(&mut l.attributes, self.max_chars);
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        let mut kvs = vec![
            KeyValue::new("a", "héllo wörld"),
            KeyValue::new("b", 12345),
            KeyValue::new("c", Value::Array(Array::String(vec!["ééééé".into(), "ok".into()]))),
        ];
        limit_all(&mut kvs, 4);
        assert_eq!(kvs[0].value.as_str(), "héll");
        assert_eq!(kvs[1].value, Value::I64(12345));
        assert_eq!(
            kvs[2].value,
            Value::Array(Array::String(vec!["éééé".into(), "ok".into()]))
        );
    }
}
