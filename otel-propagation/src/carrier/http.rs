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

use crate::TraceContextPropagator;
use crate::traceparent::TraceParent;
use crate::tracestate::parse_tracestate;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceState};

/// Reads propagation headers from a [`HeaderMap`]. Values that are not UTF-8
/// are skipped (our propagators reject any non-ASCII content themselves);
/// `get_all` returns every value of a repeated header.
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = match known_name(key) {
            Some(name) => self.0.get(name),
            None => self.0.get(key),
        };
        value.and_then(value_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let all = match known_name(key) {
            Some(name) => self.0.get_all(name),
            None => self.0.get_all(key),
        };
        super::all_values(all.iter().filter_map(value_str))
    }
}

/// A header value as text. `HeaderValue::to_str` checks byte by byte for
/// visible ASCII; UTF-8 validation checks a word at a time, and every parser
/// behind it validates its own grammar anyway.
fn value_str(value: &HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

/// Writes propagation headers into a [`HeaderMap`], replacing earlier values.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
static BAGGAGE: HeaderName = HeaderName::from_static("baggage");
static B3: HeaderName = HeaderName::from_static("b3");
static B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
static B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
static B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// The header names our propagators use, resolved without parsing (http's
/// name parsing otherwise costs more than parsing the value).
fn known_name(key: &str) -> Option<&'static HeaderName> {
    Some(match key {
        "traceparent" => &TRACEPARENT,
        "tracestate" => &TRACESTATE,
        "baggage" => &BAGGAGE,
        "b3" => &B3,
        "x-b3-traceid" => &B3_TRACE_ID,
        "x-b3-spanid" => &B3_SPAN_ID,
        "x-b3-sampled" => &B3_SAMPLED,
        "x-b3-flags" => &B3_FLAGS,
        _ => return None,
    })
}

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let name = match known_name(key) {
            Some(name) => name.clone(),
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

/// The direct path for `http::HeaderMap`: the same rules as the
/// [`TextMapPropagator`] implementation, without the `Extractor`/`Injector`
/// indirection (no header-name parsing, no intermediate `Vec` or `String`).
impl TraceContextPropagator {
    /// Reads the remote span context from `headers`; `None` when there is no
    /// valid, unique `traceparent`. Allocates only for a non-empty `tracestate`.
    pub fn span_context_from_headers(&self, headers: &HeaderMap) -> Option<SpanContext> {
        let mut values = headers.get_all(&TRACEPARENT).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let parent = TraceParent::parse_bytes(first.as_bytes()).ok()?;
        let mut states = headers.get_all(&TRACESTATE).iter().peekable();
        let trace_state = if states.peek().is_none() {
            TraceState::NONE
        } else {
            // As on the trait path, values that are not UTF-8 are skipped.
            parse_tracestate(states.filter_map(value_str)).unwrap_or_default()
        };
        Some(parent.into_span_context(trace_state))
    }

    /// Extracts from `headers` on top of `cx`: the direct-path equivalent of
    /// [`TextMapPropagator::extract_with_context`].
    pub fn extract_headers(&self, cx: &Context, headers: &HeaderMap) -> Context {
        match self.span_context_from_headers(headers) {
            Some(sc) => self.attach(cx, sc),
            None => cx.clone(),
        }
    }

    /// Writes `traceparent` (and a non-empty `tracestate`) for `cx` into `headers`:
    /// the direct-path equivalent of [`TextMapPropagator::inject_context`].
    pub fn inject_headers(&self, cx: &Context, headers: &mut HeaderMap) {
        let Some((parent, trace_state)) = self.outgoing(cx) else {
            return;
        };
        if let Ok(value) = HeaderValue::try_from(parent.to_vec()) {
            headers.insert(TRACEPARENT.clone(), value);
        }
        if !trace_state.is_empty()
            && let Ok(value) = HeaderValue::try_from(trace_state)
        {
            headers.insert(TRACESTATE.clone(), value);
        }
    }
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
    fn non_ascii_utf8_values_reach_the_parsers_and_are_refused_there() {
        let tp = "00-12345678901234567890123456789012-1234567890123456-01";
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(tp));
        h.append("tracestate", HeaderValue::from_static("a=1"));
        h.append(
            "tracestate",
            HeaderValue::from_bytes("b=\u{e9}t\u{e9}".as_bytes()).unwrap(),
        );
        h.insert("baggage", HeaderValue::from_bytes("k=\u{e9},ok=1".as_bytes()).unwrap());
        // The tracestate list as a whole is invalid, so none of it is kept, on both paths.
        let p = TraceContextPropagator::new();
        for cx in [extract(&p, &h), p.extract_headers(&Context::new(), &h)] {
            let span = cx.span();
            assert!(span.span_context().is_valid());
            assert_eq!(span.span_context().trace_state().header(), "");
        }
        // A baggage member with a raw non-ASCII value is skipped; the others stay.
        let cx = extract(&BaggagePropagator::new(), &h);
        assert_eq!(cx.baggage().get("ok").map(|v| v.as_str()), Some("1"));
        assert_eq!(cx.baggage().get("k"), None);
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_bytes(format!("{tp}\u{e9}").as_bytes()).unwrap(),
        );
        assert!(!extract(&p, &h).span().span_context().is_valid());
    }

    #[test]
    fn direct_path_agrees_with_trait_path() {
        let p = TraceContextPropagator::new();
        let cases: &[&[(&str, &str)]] = &[
            &[
                ("traceparent", "00-12345678901234567890123456789012-1234567890123456-03"),
                ("tracestate", "a=1"),
                ("tracestate", "b=2"),
            ],
            &[
                ("traceparent", "00-12345678901234567890123456789012-1234567890123456-01"),
                ("tracestate", "a=1,a=2"),
            ],
            &[
                ("traceparent", "00-12345678901234567890123456789012-1234567890123456-01"),
                ("traceparent", "00-12345678901234567890123456789012-1234567890123456-01"),
            ],
            &[("traceparent", "00-00000000000000000000000000000000-1234567890123456-01")],
            &[("tracestate", "a=1")],
        ];
        for case in cases {
            let mut h = HeaderMap::new();
            for (k, v) in *case {
                h.append(*k, HeaderValue::from_static(v));
            }
            let trait_cx = extract(&p, &h);
            let direct_cx = p.extract_headers(&Context::new(), &h);
            assert_eq!(
                trait_cx.span().span_context(),
                direct_cx.span().span_context(),
                "{case:?}"
            );
            let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
            inject(&p, &trait_cx, &mut a);
            p.inject_headers(&direct_cx, &mut b);
            assert_eq!(a, b, "{case:?}");
        }
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
