//! The B3 propagator (Zipkin), single-header and multi-header.

use crate::hex;
use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use std::sync::LazyLock;

/// The single B3 header.
pub const B3_SINGLE_HEADER: &str = "b3";
/// Multi-header B3: trace id.
pub const B3_TRACE_ID_HEADER: &str = "x-b3-traceid";
/// Multi-header B3: span id.
pub const B3_SPAN_ID_HEADER: &str = "x-b3-spanid";
/// Multi-header B3: parent span id (read for validation, never needed downstream).
pub const B3_PARENT_SPAN_ID_HEADER: &str = "x-b3-parentspanid";
/// Multi-header B3: sampling decision.
pub const B3_SAMPLED_HEADER: &str = "x-b3-sampled";
/// Multi-header B3: debug flag.
pub const B3_FLAGS_HEADER: &str = "x-b3-flags";

static SINGLE_FIELDS: LazyLock<[String; 1]> = LazyLock::new(|| [B3_SINGLE_HEADER.to_owned()]);
static MULTI_FIELDS: LazyLock<[String; 4]> = LazyLock::new(|| {
    [
        B3_TRACE_ID_HEADER,
        B3_SPAN_ID_HEADER,
        B3_SAMPLED_HEADER,
        B3_FLAGS_HEADER,
    ]
    .map(str::to_owned)
});
static ALL_FIELDS: LazyLock<[String; 5]> = LazyLock::new(|| {
    [
        B3_SINGLE_HEADER,
        B3_TRACE_ID_HEADER,
        B3_SPAN_ID_HEADER,
        B3_SAMPLED_HEADER,
        B3_FLAGS_HEADER,
    ]
    .map(str::to_owned)
});

/// Which headers [`B3Propagator`] writes. Extraction always accepts both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum B3Encoding {
    /// `b3: {trace}-{span}-{sampled}` (the `b3` value of `OTEL_PROPAGATORS`).
    #[default]
    SingleHeader,
    /// `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`/`X-B3-Flags` (`b3multi`).
    MultipleHeader,
    /// Both forms.
    SingleAndMultipleHeader,
}

/// Context marker for a B3 debug (`d` / `X-B3-Flags: 1`) decision, passed on downstream.
#[derive(Debug)]
struct B3Debug(TraceId);

/// Propagates span context in Zipkin B3 headers.
///
/// Extraction reads the single `b3` header first and falls back to the
/// `X-B3-*` headers; 64-bit trace ids are left-padded to 128 bits; a debug
/// decision counts as sampled and is propagated as debug.
///
/// ```
/// use opentelemetry::propagation::TextMapPropagator;
/// use opentelemetry::trace::TraceContextExt;
/// use otel_propagation::B3Propagator;
/// use std::collections::HashMap;
///
/// let mut carrier = HashMap::new();
/// carrier.insert("b3".to_string(), "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1".to_string());
/// let cx = B3Propagator::new().extract(&carrier);
/// assert!(cx.span().span_context().is_sampled());
/// ```
#[derive(Clone, Debug, Default)]
pub struct B3Propagator {
    encoding: B3Encoding,
}

impl B3Propagator {
    /// A propagator writing the single `b3` header.
    pub const fn new() -> Self {
        B3Propagator {
            encoding: B3Encoding::SingleHeader,
        }
    }

    /// A propagator writing the given encoding.
    pub const fn with_encoding(encoding: B3Encoding) -> Self {
        B3Propagator { encoding }
    }

    /// The encoding this propagator writes.
    pub const fn encoding(&self) -> B3Encoding {
        self.encoding
    }

    fn extract_single(&self, extractor: &dyn Extractor) -> Option<(SpanContext, bool)> {
        let value = extractor.get(B3_SINGLE_HEADER)?.trim();
        let mut parts = value.split('-');
        let trace = parse_trace_id(parts.next()?)?;
        let span = parse_span_id(parts.next()?)?;
        let (sampled, debug) = match parts.next() {
            None => (false, false),
            Some("1") => (true, false),
            Some("0") => (false, false),
            Some("d") => (true, true),
            Some(_) => return None,
        };
        if let Some(parent) = parts.next() {
            parse_span_id(parent)?;
        }
        if parts.next().is_some() {
            return None;
        }
        Some((remote(trace, span, sampled), debug))
    }

    fn extract_multi(&self, extractor: &dyn Extractor) -> Option<(SpanContext, bool)> {
        let trace = parse_trace_id(extractor.get(B3_TRACE_ID_HEADER)?.trim())?;
        let span = parse_span_id(extractor.get(B3_SPAN_ID_HEADER)?.trim())?;
        if let Some(parent) = extractor.get(B3_PARENT_SPAN_ID_HEADER) {
            parse_span_id(parent.trim())?;
        }
        let debug = extractor.get(B3_FLAGS_HEADER).map(str::trim) == Some("1");
        let sampled = match extractor.get(B3_SAMPLED_HEADER).map(str::trim) {
            None => false,
            Some("1") | Some("true") => true,
            Some("0") | Some("false") => false,
            Some(_) => return None,
        };
        Some((remote(trace, span, sampled || debug), debug))
    }
}

fn remote(trace: TraceId, span: SpanId, sampled: bool) -> SpanContext {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::NOT_SAMPLED
    };
    SpanContext::new(trace, span, flags, true, TraceState::NONE)
}

fn parse_trace_id(s: &str) -> Option<TraceId> {
    if s.len() != 16 && s.len() != 32 {
        return None;
    }
    match hex::decode_u128_any(s.as_bytes())? {
        0 => None,
        id => Some(TraceId::from(id)),
    }
}

fn parse_span_id(s: &str) -> Option<SpanId> {
    if s.len() != 16 {
        return None;
    }
    match hex::decode_u128_any(s.as_bytes())? as u64 {
        0 => None,
        id => Some(SpanId::from(id)),
    }
}

fn trace_hex(id: TraceId) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::encode_lower(u128::from_be_bytes(id.to_bytes()), &mut out);
    out
}

fn span_hex(id: SpanId) -> [u8; 16] {
    let mut out = [0u8; 16];
    hex::encode_lower(u128::from(u64::from_be_bytes(id.to_bytes())), &mut out);
    out
}

fn ascii(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl TextMapPropagator for B3Propagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        let debug = cx.get::<B3Debug>().is_some_and(|d| d.0 == sc.trace_id());
        let trace = trace_hex(sc.trace_id());
        let span_id = span_hex(sc.span_id());
        if matches!(
            self.encoding,
            B3Encoding::SingleHeader | B3Encoding::SingleAndMultipleHeader
        ) {
            let decision = if debug {
                'd'
            } else if sc.is_sampled() {
                '1'
            } else {
                '0'
            };
            let mut value = String::with_capacity(32 + 1 + 16 + 2);
            value.push_str(&ascii(&trace));
            value.push('-');
            value.push_str(&ascii(&span_id));
            value.push('-');
            value.push(decision);
            injector.set(B3_SINGLE_HEADER, value);
        }
        if matches!(
            self.encoding,
            B3Encoding::MultipleHeader | B3Encoding::SingleAndMultipleHeader
        ) {
            injector.set(B3_TRACE_ID_HEADER, ascii(&trace));
            injector.set(B3_SPAN_ID_HEADER, ascii(&span_id));
            if debug {
                // Debug implies accept; the specification says not to send Sampled with it.
                injector.set(B3_FLAGS_HEADER, "1".to_owned());
            } else {
                injector.set(B3_SAMPLED_HEADER, if sc.is_sampled() { "1" } else { "0" }.to_owned());
            }
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let found = self.extract_single(extractor).or_else(|| self.extract_multi(extractor));
        match found {
            Some((sc, debug)) => {
                let trace_id = sc.trace_id();
                let cx = cx.with_remote_span_context(sc);
                if debug { cx.with_value(B3Debug(trace_id)) } else { cx }
            }
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        match self.encoding {
            B3Encoding::SingleHeader => FieldIter::new(SINGLE_FIELDS.as_slice()),
            B3Encoding::MultipleHeader => FieldIter::new(MULTI_FIELDS.as_slice()),
            B3Encoding::SingleAndMultipleHeader => FieldIter::new(ALL_FIELDS.as_slice()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn carrier(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sc(cx: &Context) -> SpanContext {
        cx.span().span_context().clone()
    }

    #[test]
    fn single_header_forms() {
        let p = B3Propagator::new();
        let cx = p.extract(&carrier(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )]));
        assert_eq!(
            sc(&cx).trace_id(),
            TraceId::from_hex("80f198ee56343ba864fe8b2a57d3eff7").unwrap()
        );
        assert!(sc(&cx).is_sampled() && sc(&cx).is_remote());

        let cx = p.extract(&carrier(&[("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0")]));
        assert_eq!(sc(&cx).trace_id(), TraceId::from(0x64fe_8b2a_57d3_eff7));
        assert!(!sc(&cx).is_sampled());

        for bad in [
            "0",
            "1",
            "x-y",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-2",
            "0000000000000000-e457b5a2e4d86bd1-1",
        ] {
            assert!(!sc(&p.extract(&carrier(&[("b3", bad)]))).is_valid(), "{bad}");
        }
    }

    #[test]
    fn multi_header_forms_and_debug() {
        let p = B3Propagator::with_encoding(B3Encoding::MultipleHeader);
        let cx = p.extract(&carrier(&[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-flags", "1"),
        ]));
        assert!(sc(&cx).is_sampled());
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        assert_eq!(out.get("x-b3-flags").map(String::as_str), Some("1"));
        assert!(!out.contains_key("x-b3-sampled"));

        let single = B3Propagator::new();
        let mut out = HashMap::new();
        single.inject_context(&cx, &mut out);
        assert_eq!(out["b3"], "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d");
    }

    #[test]
    fn round_trips_both_encodings() {
        for enc in [
            B3Encoding::SingleHeader,
            B3Encoding::MultipleHeader,
            B3Encoding::SingleAndMultipleHeader,
        ] {
            let p = B3Propagator::with_encoding(enc);
            let original = Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(0xabc),
                SpanId::from(0xdef),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ));
            let mut out = HashMap::new();
            p.inject_context(&original, &mut out);
            let back = p.extract(&out);
            assert_eq!(sc(&back).trace_id(), TraceId::from(0xabc));
            assert_eq!(sc(&back).span_id(), SpanId::from(0xdef));
            assert!(sc(&back).is_sampled());
        }
    }

    proptest! {
        #[test]
        fn never_panics(single in ".{0,80}", t in ".{0,40}", s in ".{0,20}", d in ".{0,6}") {
            let p = B3Propagator::new();
            let _ = p.extract(&carrier(&[("b3", &single)]));
            let _ = p.extract(&carrier(&[("x-b3-traceid", &t), ("x-b3-spanid", &s), ("x-b3-sampled", &d)]));
        }
    }
}
