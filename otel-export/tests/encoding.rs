//! Our OTLP encoders against opentelemetry-proto's own conversion of the same
//! spans, over property-generated spans: every attribute value kind (arrays
//! too), events, links, status, trace state, flags, dropped counts, unicode.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry::trace::{Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use otel_export::encode::{Encoder, Encoding};
use proptest::prelude::*;
use prost::Message;
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z._]{0,12}",
        ".{0,8}",
        Just(String::new()),
        "[\"\\\\\n\t\u{1}é😊]{0,6}"
    ]
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        Just(0.0),
        Just(-1.5)
    ]
}

fn value(finite_only: bool) -> impl Strategy<Value = Value> {
    let float = if finite_only {
        finite().boxed()
    } else {
        any::<f64>().boxed()
    };
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::I64),
        float.clone().prop_map(Value::F64),
        text().prop_map(|s| Value::String(s.into())),
        proptest::collection::vec(any::<bool>(), 0..4).prop_map(|v| Value::Array(Array::Bool(v))),
        proptest::collection::vec(any::<i64>(), 0..4).prop_map(|v| Value::Array(Array::I64(v))),
        proptest::collection::vec(float, 0..4).prop_map(|v| Value::Array(Array::F64(v))),
        proptest::collection::vec(text(), 0..4)
            .prop_map(|v| Value::Array(Array::String(v.into_iter().map(StringValue::from).collect()))),
    ]
}

fn attributes(finite_only: bool) -> impl Strategy<Value = Vec<KeyValue>> {
    proptest::collection::vec(
        (text(), value(finite_only)).prop_map(|(k, v)| KeyValue::new(k, v)),
        0..6,
    )
}

fn trace_state() -> impl Strategy<Value = TraceState> {
    proptest::collection::btree_map("[a-z][a-z0-9]{0,5}", "[a-zA-Z0-9:;]{1,8}", 0..3)
        .prop_map(|m| TraceState::from_key_value(m).unwrap())
}

fn span_context() -> impl Strategy<Value = SpanContext> {
    (any::<u128>(), any::<u64>(), any::<u8>(), any::<bool>(), trace_state())
        .prop_map(|(t, s, f, r, ts)| SpanContext::new(TraceId::from(t), SpanId::from(s), TraceFlags::new(f), r, ts))
}

fn time() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        Just(UNIX_EPOCH),
        (0u64..4_000_000_000_000_000_000).prop_map(|n| UNIX_EPOCH + Duration::from_nanos(n))
    ]
}

fn scope() -> impl Strategy<Value = InstrumentationScope> {
    (0usize..3).prop_map(|i| match i {
        0 => InstrumentationScope::builder("app").build(),
        1 => InstrumentationScope::builder("lib.http")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
            .build(),
        _ => InstrumentationScope::builder("lib.db")
            .with_attributes([KeyValue::new("db.driver", "sqlite")])
            .build(),
    })
}

prop_compose! {
    fn span(finite_only: bool)(
        sc in span_context(),
        parent in any::<u64>(),
        parent_remote in any::<bool>(),
        kind in 0usize..5,
        name in text(),
        start in time(),
        end in time(),
        attrs in attributes(finite_only),
        dropped in 0u32..3,
        events in proptest::collection::vec((text(), time(), attributes(finite_only), 0u32..2), 0..3),
        events_dropped in 0u32..2,
        links in proptest::collection::vec((span_context(), attributes(finite_only), 0u32..2), 0..3),
        links_dropped in 0u32..2,
        status in prop_oneof![Just(Status::Unset), Just(Status::Ok), text().prop_map(Status::error)],
        scope in scope(),
    ) -> SpanData {
        SpanData {
            span_context: sc,
            parent_span_id: SpanId::from(if parent % 3 == 0 { 0 } else { parent }), // sometimes invalid (0)
            parent_span_is_remote: parent_remote,
            span_kind: [SpanKind::Internal, SpanKind::Server, SpanKind::Client, SpanKind::Producer, SpanKind::Consumer][kind].clone(),
            name: Cow::Owned(name),
            start_time: start,
            end_time: end,
            attributes: attrs,
            dropped_attributes_count: dropped,
            events: {
                let mut e = SpanEvents::default();
                e.events = events.into_iter().map(|(n, t, a, d)| Event::new(n, t, a, d)).collect();
                e.dropped_count = events_dropped;
                e
            },
            links: {
                let mut l = SpanLinks::default();
                l.links = links.into_iter().map(|(sc, a, d)| Link::new(sc, a, d)).collect();
                l.dropped_count = links_dropped;
                l
            },
            status,
            instrumentation_scope: scope,
        }
    }
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("checkout")
        .with_attributes([
            KeyValue::new("service.version", "1.0"),
            KeyValue::new("host.cpus", 2),
            KeyValue::new("k8s.pod.name", "pod-ä"),
        ])
        .with_schema_url([], "https://opentelemetry.io/schemas/1.26.0")
        .build()
}

fn reference(spans: &[SpanData], resource: &Resource) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            spans.to_vec(),
            &ResourceAttributesWithSchema::from(resource),
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn protobuf_equals_opentelemetry_proto(spans in proptest::collection::vec(span(false), 0..6)) {
        let resource = resource();
        let expected = reference(&spans, &resource);
        let mut encoder = Encoder::new(&resource);
        let ours = encoder.encode(&spans, Encoding::Protobuf).to_vec();
        // Byte-identical to prost's encoding of the reference conversion...
        prop_assert_eq!(&ours, &expected.encode_to_vec());
        // ...and therefore decodes to the same request.
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).unwrap();
        prop_assert_eq!(decoded.encode_to_vec(), expected.encode_to_vec());
    }

    #[test]
    fn span_encoded_len_is_the_span_field_size(s in span(false)) {
        let expected = reference(std::slice::from_ref(&s), &resource());
        let proto_span = &expected.resource_spans[0].scope_spans[0].spans[0];
        let content = proto_span.encoded_len();
        // Tag (field 2, one byte), length prefix, content.
        let mut prefix = Vec::new();
        prost::encoding::encode_varint(content as u64, &mut prefix);
        prop_assert_eq!(otel_export::encode::span_encoded_len(&s), 1 + prefix.len() + content);
    }

    #[test]
    fn json_decodes_to_the_same_request(spans in proptest::collection::vec(span(true), 0..6)) {
        let resource = resource();
        let expected = reference(&spans, &resource);
        let mut encoder = Encoder::new(&resource);
        let json = encoder.encode(&spans, Encoding::Json).to_vec();
        let text = std::str::from_utf8(&json).unwrap();
        let decoded: ExportTraceServiceRequest = serde_json::from_str(text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn encoder_reuse_gives_the_same_bytes(a in proptest::collection::vec(span(false), 0..4), b in proptest::collection::vec(span(false), 0..4)) {
        let resource = resource();
        let mut reused = Encoder::new(&resource);
        reused.encode(&a, Encoding::Protobuf);
        let second = reused.encode(&b, Encoding::Protobuf).to_vec();
        let fresh = Encoder::new(&resource).encode(&b, Encoding::Protobuf).to_vec();
        prop_assert_eq!(second, fresh);
    }
}

#[test]
fn nan_and_infinities_in_json() {
    let resource = resource();
    let span = SpanData {
        span_context: SpanContext::new(
            TraceId::from(1),
            SpanId::from(2),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: "x".into(),
        start_time: UNIX_EPOCH,
        end_time: UNIX_EPOCH,
        attributes: vec![KeyValue::new("nan", f64::NAN), KeyValue::new("inf", f64::INFINITY)],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("s").build(),
    };
    let json = Encoder::new(&resource)
        .encode(std::slice::from_ref(&span), Encoding::Json)
        .to_vec();
    // proto3 JSON writes non-finite doubles as strings.
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let attrs = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
    assert_eq!(attrs[0]["value"]["doubleValue"], "NaN");
    assert_eq!(attrs[1]["value"]["doubleValue"], "Infinity");
}

/// A tracestate key opentelemetry's `TraceState` cannot hold (carried inside
/// it by the propagator) leaves in both encodings as the header carried it.
#[test]
fn carried_tracestate_members_are_encoded_as_sent() {
    let header = "foo@bar@baz=1,bar=2,t@vvvvvvvvvvvvvvv=3";
    let trace_state = otel_propagation::tracestate::parse_tracestate([header]).unwrap();
    let span = SpanData {
        span_context: SpanContext::new(
            TraceId::from(1),
            SpanId::from(2),
            TraceFlags::SAMPLED,
            false,
            trace_state,
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: "x".into(),
        start_time: UNIX_EPOCH,
        end_time: UNIX_EPOCH,
        attributes: vec![],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("s").build(),
    };
    let resource = resource();
    let proto = Encoder::new(&resource)
        .encode(std::slice::from_ref(&span), Encoding::Protobuf)
        .to_vec();
    let decoded = ExportTraceServiceRequest::decode(proto.as_slice()).unwrap();
    assert_eq!(decoded.resource_spans[0].scope_spans[0].spans[0].trace_state, header);
    let json = Encoder::new(&resource)
        .encode(std::slice::from_ref(&span), Encoding::Json)
        .to_vec();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceState"], header);
}
