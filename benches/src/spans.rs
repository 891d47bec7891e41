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

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[allow(clippy::too_many_arguments)] // a span's fields, in order
fn child(
    trace: TraceId,
    parent: SpanId,
    id: u64,
    name: &'static str,
    kind: SpanKind,
    start: SystemTime,
    ms: u64,
    attributes: Vec<KeyValue>,
) -> SpanData {
    SpanData {
        span_context: SpanContext::new(trace, SpanId::from(id), TraceFlags::SAMPLED, false, TraceState::NONE),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: kind,
        name: name.into(),
        start_time: start,
        end_time: start + Duration::from_millis(ms),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("otel-integrations")
            .with_version("0.1.0")
            .build(),
    }
}

/// Trace `n` of a realistic mix, 8 spans: an HTTP server root, three HTTP
/// client calls, three database queries and one internal span. Every 50th
/// trace has a failing query (and a 500 at the root); every 33rd takes 1.5 s.
pub fn trace(n: u64) -> Vec<SpanData> {
    let trace_id = TraceId::from((u128::from(splitmix(n)) << 64) | u128::from(splitmix(!n)));
    let root_id = SpanId::from(splitmix(n ^ 0x5555) | 1);
    let error = n.is_multiple_of(50);
    let slow = n.is_multiple_of(33);
    let start = SystemTime::now();
    let total_ms = if slow { 1500 } else { 40 + n % 60 };
    let mut root = span(n);
    root.span_context = SpanContext::new(trace_id, root_id, TraceFlags::SAMPLED, false, TraceState::NONE);
    root.parent_span_id = SpanId::INVALID;
    root.parent_span_is_remote = false;
    root.events = SpanEvents::default();
    root.start_time = start;
    root.end_time = start + Duration::from_millis(total_ms);
    if error {
        root.attributes[4] = KeyValue::new("http.response.status_code", 500);
        root.status = Status::error("");
    }
    let mut spans = vec![root];
    let id = |k: u64| splitmix(n.wrapping_mul(31).wrapping_add(k)) | 1;
    for k in 0..3u64 {
        spans.push(child(
            trace_id,
            root_id,
            id(k),
            "GET",
            SpanKind::Client,
            start + Duration::from_millis(2 + k * 5),
            4,
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("server.address", "inventory.shop.svc"),
                KeyValue::new("server.port", 8080),
                KeyValue::new(
                    "url.full",
                    format!("http://inventory.shop.svc:8080/api/stock/{}", n % 1000 + k),
                ),
                KeyValue::new("http.response.status_code", 200),
                KeyValue::new("network.protocol.version", "1.1"),
            ],
        ));
    }
    for k in 0..3u64 {
        let mut q = child(
            trace_id,
            root_id,
            id(10 + k),
            "SELECT shop.products",
            SpanKind::Client,
            start + Duration::from_millis(20 + k * 3),
            2,
            vec![
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.namespace", "shop"),
                KeyValue::new("db.operation.name", "SELECT"),
                KeyValue::new("db.query.text", "SELECT id, name, price FROM products WHERE id = $1"),
            ],
        );
        if error && k == 2 {
            q.status = Status::error("deadlock detected");
        }
        spans.push(q);
    }
    spans.push(child(
        trace_id,
        root_id,
        id(20),
        "render",
        SpanKind::Internal,
        start + Duration::from_millis(32),
        3,
        vec![
            KeyValue::new("template", "product.html"),
            KeyValue::new("cache.hit", n.is_multiple_of(3)),
        ],
    ));
    spans
}
