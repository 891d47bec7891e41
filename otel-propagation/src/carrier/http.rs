//! `http::HeaderMap` carrier.
//!
//! ```
//! use otel_propagation::carrier::http::{extract, inject};
//! use otel_propagation::TraceContextPropagator;
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("traceparent", "00-12345678901234567890123456789012-1234567890123456-01".parse().unwrap());
//! let cx = extract(&TraceContextPropagator::new(), &headers);
//! let mut outgoing = http::HeaderMap::new();
//! inject(&TraceContextPropagator::new(), &cx, &mut outgoing);
//! assert_eq!(outgoing["traceparent"], headers["traceparent"]);
//! ```

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};

/// Reads propagation headers from a [`HeaderMap`]. Values that are not visible
/// ASCII are skipped; `get_all` returns every value of a repeated header.
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let mut values = self.0.get_all(key).iter().filter_map(|v| v.to_str().ok()).peekable();
        values.peek()?;
        Some(values.collect())
    }
}

/// Writes propagation headers into a [`HeaderMap`], replacing earlier values.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

/// The header names our propagators write, resolved without parsing.
pub(crate) fn known_name(key: &str) -> Option<HeaderName> {
    Some(match key {
        "traceparent" => HeaderName::from_static("traceparent"),
        "tracestate" => HeaderName::from_static("tracestate"),
        "baggage" => HeaderName::from_static("baggage"),
        "b3" => HeaderName::from_static("b3"),
        "x-b3-traceid" => HeaderName::from_static("x-b3-traceid"),
        "x-b3-spanid" => HeaderName::from_static("x-b3-spanid"),
        "x-b3-sampled" => HeaderName::from_static("x-b3-sampled"),
        "x-b3-flags" => HeaderName::from_static("x-b3-flags"),
        _ => return None,
    })
}

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let name = match known_name(key) {
            Some(name) => name,
            None => match HeaderName::from_bytes(key.as_bytes()) {
                Ok(name) => name,
                Err(_) => return,
            },
        };
        // Takes the String's buffer without copying; propagators only produce
        // visible ASCII, so this fails only for a foreign propagator's bad value.
        if let Ok(value) = HeaderValue::try_from(value) {
            self.0.insert(name, value);
        }
    }

    fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }
}

/// Extracts a context from `headers` on top of the current context.
pub fn extract(propagator: &dyn TextMapPropagator, headers: &HeaderMap) -> Context {
    propagator.extract(&HeaderExtractor(headers))
}

/// Extracts a context from `headers` on top of `cx`.
pub fn extract_with_context(propagator: &dyn TextMapPropagator, cx: &Context, headers: &HeaderMap) -> Context {
    propagator.extract_with_context(cx, &HeaderExtractor(headers))
}

/// Injects `cx` into `headers`.
pub fn inject(propagator: &dyn TextMapPropagator, cx: &Context, headers: &mut HeaderMap) {
    propagator.inject_context(cx, &mut HeaderInjector(headers));
}

/// Injects `cx` into any `http::Request`, for clients that are not tower services.
pub fn inject_request<B>(propagator: &dyn TextMapPropagator, cx: &Context, request: &mut http::Request<B>) {
    inject(propagator, cx, request.headers_mut());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BaggagePropagator, TraceContextPropagator};
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn reads_every_value_of_repeated_headers() {
        let mut h = HeaderMap::new();
        h.append("tracestate", HeaderValue::from_static("foo=1"));
        h.append("tracestate", HeaderValue::from_static("bar=2"));
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-12345678901234567890123456789012-1234567890123456-01"),
        );
        let cx = extract(&TraceContextPropagator::new(), &h);
        let span = cx.span();
        assert_eq!(span.span_context().trace_state().get("bar"), Some("2"));
        assert_eq!(HeaderExtractor(&h).get_all("missing"), None);
    }

    #[test]
    fn duplicate_traceparent_headers_are_rejected() {
        let mut h = HeaderMap::new();
        h.append(
            "traceparent",
            HeaderValue::from_static("00-12345678901234567890123456789011-1234567890123456-01"),
        );
        h.append(
            "traceparent",
            HeaderValue::from_static("00-12345678901234567890123456789012-1234567890123456-01"),
        );
        assert!(
            !extract(&TraceContextPropagator::new(), &h)
                .span()
                .span_context()
                .is_valid()
        );
    }

    #[test]
    fn non_ascii_values_do_not_break_extraction() {
        let mut h = HeaderMap::new();
        h.insert("baggage", HeaderValue::from_bytes(b"k=\xff\xfe").unwrap());
        h.append("baggage", HeaderValue::from_static("ok=1"));
        let cx = extract(&BaggagePropagator::new(), &h);
        assert_eq!(cx.baggage().get("ok").map(|v| v.as_str()), Some("1"));
    }

    #[test]
    fn injector_skips_invalid_names_and_values() {
        let mut h = HeaderMap::new();
        let mut inj = HeaderInjector(&mut h);
        inj.set("bad name", "x".into());
        inj.set("good", "line\nbreak".into());
        inj.set("Custom-Name", "ok".into());
        assert_eq!(h.len(), 1);
        assert_eq!(h["custom-name"], "ok");
    }
}
