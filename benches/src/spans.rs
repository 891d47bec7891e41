//! Realistic spans for the export benches: 10 attributes, 1 event, 5 resource attributes.

use opentelemetry::trace::{Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::time::{Duration, SystemTime};

/// The resource of the benchmark service (5 attributes).
pub fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("checkout")
        .with_attributes([
            KeyValue::new("service.version", "1.4.2"),
            KeyValue::new("service.namespace", "shop"),
            KeyValue::new("host.name", "node-7.cluster.local"),
            KeyValue::new("k8s.pod.name", "checkout-7d9f8b6c5-x2x4z"),
        ])
        .build()
}

/// One server span as an HTTP framework would record it.
pub fn span(i: u64) -> SpanData {
    let start = SystemTime::now();
    let mut events = SpanEvents::default();
    events.events.push(Event::new(
        "exception",
        start + Duration::from_micros(300),
        vec![
            KeyValue::new("exception.type", "TimeoutError"),
            KeyValue::new("exception.message", "upstream timed out"),
        ],
        0,
    ));
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736 ^ u128::from(i)),
            SpanId::from(0x00f0_67aa_0ba9_02b7 ^ i),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from(0x1111_2222_3333_4444 ^ i),
        parent_span_is_remote: true,
        span_kind: SpanKind::Server,
        name: "GET /api/products/{id}".into(),
        start_time: start,
        end_time: start + Duration::from_millis(12),
        attributes: vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/api/products/{id}"),
            KeyValue::new("url.path", "/api/products/42"),
            KeyValue::new("url.scheme", "https"),
            KeyValue::new("http.response.status_code", 200),
            KeyValue::new("server.address", "shop.example.com"),
            KeyValue::new("server.port", 443),
            KeyValue::new("client.address", "10.0.3.17"),
            KeyValue::new("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
            KeyValue::new("network.protocol.version", "1.1"),
        ],
        dropped_attributes_count: 0,
        events,
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("otel-integrations")
            .with_version("0.1.0")
            .build(),
    }
}
