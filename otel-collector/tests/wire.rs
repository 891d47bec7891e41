#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! OTLP requests as wire bytes: split into spans and put back together
//! without changing a field, checked against prost's decoding; arbitrary
//! bytes never panic.

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use otel_collector::sidecar::wire::{LiveBytes, SpanView, encode_request};

fn split_request(
    body: &bytes::Bytes,
) -> Result<Vec<otel_collector::sidecar::wire::SpanRec>, otel_collector::sidecar::wire::DecodeError> {
    otel_collector::sidecar::wire::split_request(body, &LiveBytes::new())
}
use otel_collector::{AttrValue, Attributes, SpanFacts, StatusCode};
use otel_export::encode::{Encoder, Encoding};
use proptest::prelude::*;
use prost::Message as _;
use std::time::{Duration, UNIX_EPOCH};

fn span(trace: u128, id: u64, parent: u64, scope: &str, error: bool, attrs: Vec<KeyValue>) -> SpanData {
    let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(trace),
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("vendor", "v1")]).unwrap(),
        ),
        parent_span_id: SpanId::from(parent),
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: format!("op-{id}").into(),
        start_time: start,
        end_time: start + Duration::from_millis(id % 1000),
        attributes: attrs,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: if error { Status::error("bad") } else { Status::Ok },
        instrumentation_scope: InstrumentationScope::builder(scope.to_owned())
            .with_version("1.0")
            .build(),
    }
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("checkout")
        .with_attribute(KeyValue::new("k8s.pod.name", "p-1"))
        .build()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn split_then_encode_keeps_every_span(
        shape in proptest::collection::vec((any::<u128>().prop_filter("valid", |t| *t != 0), 1u64..u64::MAX, any::<u64>(), 0usize..3, any::<bool>(), any::<i64>()), 1..12)
    ) {
        let spans: Vec<SpanData> = shape
            .iter()
            .map(|(t, id, parent, scope, error, n)| {
                span(*t, *id, *parent, ["a", "b", "c"][*scope], *error, vec![KeyValue::new("n", *n), KeyValue::new("s", "x")])
            })
            .collect();
        let request = Encoder::new(&resource()).encode(&spans, Encoding::Protobuf).to_vec();
        let request = bytes::Bytes::from(request);
        let recs = split_request(&request).unwrap();
        prop_assert_eq!(recs.len(), spans.len());
        // The request groups spans by scope, in first-seen order.
        let mut order: Vec<&str> = Vec::new();
        for s in &spans {
            if !order.contains(&s.instrumentation_scope.name()) {
                order.push(s.instrumentation_scope.name());
            }
        }
        let mut grouped: Vec<&SpanData> = spans.iter().collect();
        grouped.sort_by_key(|s| order.iter().position(|o| *o == s.instrumentation_scope.name()));
        for (rec, original) in recs.iter().zip(grouped) {
            let v = rec.view().unwrap();
            prop_assert_eq!(v.trace_id, original.span_context.trace_id().to_bytes());
            prop_assert_eq!(v.span_id, original.span_context.span_id().to_bytes());
            prop_assert_eq!(v.is_root(), original.parent_span_id == SpanId::INVALID);
            prop_assert_eq!(v.status(), if original.status == Status::Ok { StatusCode::Ok } else { StatusCode::Error });
            let vendor = v.trace_state_value("vendor").map(|c| c.into_owned());
            prop_assert_eq!(vendor.as_deref(), Some("v1"));
            prop_assert_eq!(v.attribute("s"), Some(AttrValue::Str("x")));
            prop_assert_eq!(v.encoded_len(), otel_export::encode::span_encoded_len(original));
        }
        // Reassembled: the same spans, resources and scopes, as prost reads them.
        let rebuilt = ExportTraceServiceRequest::decode(encode_request(&recs).as_slice()).unwrap();
        let original = ExportTraceServiceRequest::decode(&request[..]).unwrap();
        let flat = |r: &ExportTraceServiceRequest| {
            let mut v: Vec<(Vec<u8>, String, Vec<u8>)> = r
                .resource_spans
                .iter()
                .flat_map(|rs| {
                    rs.scope_spans.iter().flat_map(move |ss| {
                        ss.spans.iter().map(move |s| {
                            (rs.resource.as_ref().unwrap().encode_to_vec(), ss.scope.as_ref().unwrap().name.clone(), s.encode_to_vec())
                        })
                    })
                })
                .collect();
            v.sort();
            v
        };
        prop_assert_eq!(flat(&rebuilt), flat(&original));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(recs) = split_request(&bytes::Bytes::from(bytes)) {
            for r in &recs {
                let _ = r.view();
            }
            let _ = encode_request(&recs);
        }
    }

    #[test]
    fn mutated_requests_never_panic(flip in 0usize..4096, to in any::<u8>(), cut in 0usize..4096) {
        let spans: Vec<SpanData> = (1..6).map(|i| span(i as u128, i, 0, "a", i == 3, vec![KeyValue::new("k", i as i64)])).collect();
        let mut request = Encoder::new(&resource()).encode(&spans, Encoding::Protobuf).to_vec();
        let len = request.len();
        request[flip % len] = to;
        request.truncate(cut % (len + 1));
        if let Ok(recs) = split_request(&bytes::Bytes::from(request)) {
            let _ = encode_request(&recs);
            for r in &recs {
                if let Ok(v) = r.view() {
                    let _ = v.attribute("k");
                }
            }
        }
    }
}

#[test]
fn spans_from_other_sdks_without_optional_fields() {
    // A span with no parent, no status and no timestamps, in an empty resource.
    use otel_export::wire::put_bytes;
    let mut s = Vec::new();
    put_bytes(&mut s, 1, &[9; 16]);
    put_bytes(&mut s, 2, &[9; 8]);
    let req = request_of_span(&s);
    let recs = split_request(&bytes::Bytes::from(req)).unwrap();
    let v: SpanView<'_> = recs[0].view().unwrap();
    assert!(v.is_root());
    assert_eq!((v.start, v.end, v.status), (0, 0, StatusCode::Unset));
    // An empty request is valid and empty.
    assert!(split_request(&bytes::Bytes::new()).unwrap().is_empty());
    // A span without a span id is not.
    let mut bad = Vec::new();
    put_bytes(&mut bad, 1, &[9; 16]);
    let req = request_of_span(&bad);
    assert!(
        split_request(&bytes::Bytes::from(req))
            .unwrap_err()
            .to_string()
            .contains("span_id")
    );
}

/// A one-span request whose span name, attribute key, string value and a
/// string inside an array value are `name`, `key`, `value`, `nested`.
fn request_with_strings(name: &[u8], key: &[u8], value: &[u8], nested: &[u8]) -> Vec<u8> {
    use otel_export::wire::put_bytes;
    let any_string = |s: &[u8]| {
        let mut v = Vec::new();
        put_bytes(&mut v, 1, s);
        v
    };
    let mut array = Vec::new();
    put_bytes(&mut array, 1, &any_string(nested));
    let mut array_value = Vec::new();
    put_bytes(&mut array_value, 5, &array);
    let keyvalue = |k: &[u8], v: &[u8]| {
        let mut kv = Vec::new();
        put_bytes(&mut kv, 1, k);
        put_bytes(&mut kv, 2, v);
        kv
    };
    let mut s = Vec::new();
    put_bytes(&mut s, 1, &[7; 16]);
    put_bytes(&mut s, 2, &[7; 8]);
    put_bytes(&mut s, 5, name);
    put_bytes(&mut s, 9, &keyvalue(key, &any_string(value)));
    put_bytes(&mut s, 9, &keyvalue(b"list", &array_value));
    request_of_span(&s)
}

/// A request holding the one encoded span `span`, in an empty resource and scope.
fn request_of_span(span: &[u8]) -> Vec<u8> {
    use otel_export::wire::put_bytes;
    let mut ss = Vec::new();
    put_bytes(&mut ss, 2, span);
    let mut rs = Vec::new();
    put_bytes(&mut rs, 2, &ss);
    let mut req = Vec::new();
    put_bytes(&mut req, 1, &rs);
    req
}

proptest! {
    /// OTLP strings must be UTF-8: a request is taken exactly when every
    /// string in it is, ASCII or not.
    #[test]
    fn strings_are_taken_exactly_when_they_are_utf8(
        strings in proptest::collection::vec(
            prop_oneof![
                "[a-z.]{0,40}".prop_map(String::into_bytes),
                "\\PC{0,40}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..40),
            ],
            4,
        ),
    ) {
        let valid = strings.iter().all(|s| std::str::from_utf8(s).is_ok());
        let req = request_with_strings(&strings[0], &strings[1], &strings[2], &strings[3]);
        let got = split_request(&bytes::Bytes::from(req));
        prop_assert_eq!(got.is_ok(), valid, "{:?}", got.err());
        if let Err(e) = got {
            prop_assert!(e.to_string().contains("not UTF-8"), "{}", e);
        }
    }
}

#[test]
fn each_collector_counts_its_own_live_bytes() {
    let a = LiveBytes::new();
    let b = LiveBytes::new();
    let spans: Vec<SpanData> = (1..=3)
        .map(|i| span(7, i, 0, "a", false, vec![KeyValue::new("n", 1)]))
        .collect();
    let request = bytes::Bytes::from(Encoder::new(&resource()).encode(&spans, Encoding::Protobuf).to_vec());
    let spans = otel_collector::sidecar::wire::split_request(&request, &a).unwrap();
    assert_eq!(spans.len(), 3);
    let held = a.get();
    assert!(held > request.len() as i64 / 2, "{held}");
    assert_eq!(b.get(), 0, "another collector's budget is untouched");
    let copy = spans[0].clone();
    assert!(a.get() > held);
    drop(copy);
    drop(spans);
    assert_eq!(a.get(), 0, "everything released");
}
