//! The `tracing` layer: what a `tracing` span becomes, parentage both ways
//! with the OpenTelemetry context, sampling, the span extension trait, limits,
//! and the edges (spans closed elsewhere, a layer added twice, shutdown).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{SimpleSpanProcessor, SpanData, SpanLimits};
use otel_core::testing::{InMemoryExporter, render_trace, tree_shape};
use otel_core::{OpenTelemetrySpanExt, SetParentError, Telemetry, TelemetryHandle};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

fn pipeline(builder: otel_core::TelemetryBuilder) -> (TelemetryHandle, InMemoryExporter) {
    let exporter = InMemoryExporter::default();
    let handle = builder
        .with_service_name("layer-test")
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .with_globals(false)
        .install()
        .unwrap();
    (handle, exporter)
}

fn install() -> (TelemetryHandle, InMemoryExporter) {
    pipeline(Telemetry::builder())
}

/// Runs `f` under a registry with the layer, then flushes.
fn traced<T>(handle: &TelemetryHandle, f: impl FnOnce() -> T) -> T {
    let subscriber = tracing_subscriber::registry().with(handle.tracing_layer());
    let out = tracing::subscriber::with_default(subscriber, f);
    handle.force_flush().unwrap();
    out
}

fn find<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name:?} in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[derive(Debug)]
struct Custom {
    #[allow(dead_code)] // read through Debug
    id: u32,
}

#[test]
fn a_span_tree_with_typed_fields_events_and_status() {
    let (handle, exporter) = install();
    traced(&handle, || {
        let root = tracing::info_span!(
            "GET /api/products",
            http.route = "/api/products",
            http.response.status_code = 200_i64,
            ratio = 0.5_f64,
            cached = true,
            big = u64::MAX,
            custom = ?Custom { id: 7 },
            shown = %"display",
            otel.kind = "server",
        );
        let _r = root.enter();
        tracing::info!(items = 3, "listed products");
        {
            let _q = tracing::info_span!("SELECT products", otel.name = "SELECT shop.products").entered();
            // As `#[instrument(err)]` emits it: an `error` field, no message.
            tracing::error!(error = "connection reset");
            tracing::warn!(error = "timed out", "retrying");
        }
        let late = tracing::info_span!("render", bytes = tracing::field::Empty);
        late.record("bytes", 512_i64);
        late.record("bytes", 1024_i64);
        drop(late);
    });
    let spans = exporter.spans();
    assert_eq!(spans.len(), 3, "{spans:?}");
    let trace = spans[0].span_context.trace_id();
    assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));
    let tree = render_trace(&spans, trace);
    let names = tree_shape(&tree);
    assert_eq!(
        names,
        ["GET /api/products", "├── SELECT shop.products", "└── render"],
        "{tree}"
    );

    let root = find(&spans, "GET /api/products");
    assert_eq!(root.span_kind, SpanKind::Server);
    assert_eq!(attr(root, "http.route"), Some(&Value::from("/api/products")));
    assert_eq!(attr(root, "http.response.status_code"), Some(&Value::I64(200)));
    assert_eq!(attr(root, "ratio"), Some(&Value::F64(0.5)));
    assert_eq!(attr(root, "cached"), Some(&Value::Bool(true)));
    assert_eq!(attr(root, "big"), Some(&Value::from(u64::MAX.to_string())));
    assert_eq!(attr(root, "custom"), Some(&Value::from("Custom { id: 7 }")));
    assert_eq!(attr(root, "shown"), Some(&Value::from("display")));
    assert!(attr(root, "otel.kind").is_none(), "special fields are not attributes");
    assert_eq!(root.status, Status::Unset);
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    assert_eq!(root.instrumentation_scope.name(), module_path!());
    assert!(root.end_time >= root.start_time);
    let event = &root.events.events[0];
    assert_eq!(event.name, "listed products");
    let event_attrs: Vec<(&str, &Value)> = event.attributes.iter().map(|kv| (kv.key.as_str(), &kv.value)).collect();
    assert!(event_attrs.contains(&("items", &Value::I64(3))), "{event_attrs:?}");
    assert!(
        event_attrs.contains(&("level", &Value::from("INFO"))),
        "{event_attrs:?}"
    );
    assert!(event.timestamp >= root.start_time && event.timestamp <= root.end_time);

    let query = find(&spans, "SELECT shop.products");
    assert_eq!(query.parent_span_id, root.span_context.span_id());
    assert!(!query.parent_span_is_remote);
    let failed = &query.events.events[0];
    assert_eq!(failed.name, "exception");
    assert!(
        failed
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "exception.message" && kv.value == Value::from("connection reset"))
    );
    // An `error` field beside a message: the message names the event, the
    // error describes the span's status (the last error wins).
    let retrying = &query.events.events[1];
    assert_eq!(retrying.name, "retrying");
    assert!(
        retrying
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "exception.message" && kv.value == Value::from("timed out"))
    );
    assert_eq!(query.status, Status::error("timed out"));

    let render = find(&spans, "render");
    assert_eq!(attr(render, "bytes"), Some(&Value::I64(1024)), "record replaces");
    assert_eq!(
        render.attributes.iter().filter(|kv| kv.key.as_str() == "bytes").count(),
        1
    );
}

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

#[tracing::instrument(err)]
fn fails(n: u32) -> Result<u32, Boom> {
    if n > 1 { Err(Boom) } else { Ok(n) }
}

#[test]
fn instrument_err_marks_the_span_failed_and_error_fields_become_exceptions() {
    let (handle, exporter) = install();
    traced(&handle, || {
        assert!(fails(1).is_ok());
        assert!(fails(2).is_err());
        let span = tracing::info_span!("parse");
        let _e = span.enter();
        let source = std::io::Error::other(Boom);
        tracing::warn!(error = &source as &dyn std::error::Error, "bad input");
        tracing::error!("giving up");
    });
    let spans = exporter.spans();
    let ok = spans.iter().find(|s| s.name == "fails" && s.status == Status::Unset);
    assert!(ok.is_some(), "{spans:?}");
    let failed = spans
        .iter()
        .find(|s| s.name == "fails" && s.status != Status::Unset)
        .unwrap();
    assert_eq!(failed.status, Status::error("boom"));
    assert_eq!(attr(failed, "n"), Some(&Value::I64(2)));
    assert!(failed.events.iter().any(|e| e.name == "exception"));

    let parse = find(&spans, "parse");
    assert_eq!(parse.status, Status::error(""), "an ERROR event fails the span");
    let with_error = &parse.events.events[0];
    let message = with_error
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.message")
        .unwrap();
    assert_eq!(message.value, Value::from("boom"));
    assert!(with_error.attributes.iter().any(|kv| kv.key.as_str() == "error.chain"));
    assert_eq!(attr(parse, "exception.message"), Some(&Value::from("boom")));
}

#[test]
fn otel_context_and_tracing_spans_form_one_tree() {
    let (handle, exporter) = install();
    let tracer = handle.tracer("api");
    traced(&handle, || {
        // An OpenTelemetry API span (as a server middleware makes) is current...
        let server = tracer.start("GET /checkout");
        let cx = Context::current_with_span(server);
        let _attached = cx.clone().attach();
        // ...so a tracing span continues it...
        let handler = tracing::info_span!("checkout handler");
        let _h = handler.enter();
        // ...and inside the tracing span, the current context is the tracing span's,
        // so an OpenTelemetry API span (as a client middleware makes) is its child.
        let client = tracer.start("POST /payments");
        drop(client);
        drop(_h);
        drop(handler);
        cx.span().end();
    });
    let spans = exporter.spans();
    let server = find(&spans, "GET /checkout");
    let handler = find(&spans, "checkout handler");
    let client = find(&spans, "POST /payments");
    assert_eq!(handler.parent_span_id, server.span_context.span_id());
    assert_eq!(client.parent_span_id, handler.span_context.span_id());
    let trace = server.span_context.trace_id();
    assert!([handler, client].iter().all(|s| s.span_context.trace_id() == trace));
}

#[test]
fn context_current_reflects_the_entered_span_and_is_restored_on_exit() {
    let (handle, exporter) = install();
    traced(&handle, || {
        let before = Context::current().span().span_context().clone();
        assert!(!before.is_valid());
        let span = tracing::info_span!("outer");
        {
            let _e = span.enter();
            let inside = Context::current().span().span_context().clone();
            assert!(inside.is_valid());
            assert_eq!(inside, span.context().span().span_context().clone());
            // Root traces started here carry the W3C random flag.
            assert_eq!(inside.trace_flags().to_u8() & 0x02, 0x02);
            assert!(inside.is_sampled());
        }
        assert!(!Context::current().span().span_context().is_valid());
    });
    assert_eq!(exporter.spans().len(), 1);
    let flags = exporter.spans()[0].span_context.trace_flags().to_u8();
    assert_eq!(flags, 0x03);
}

fn remote(sampled: bool) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::NOT_SAMPLED
        },
        true,
        TraceState::NONE,
    ))
}

#[test]
fn sampled_out_spans_and_their_children_are_not_exported() {
    let (handle, exporter) = pipeline(
        Telemetry::builder().with_sampler(otel_core::otel_sampling::ParentBased::new(
            otel_core::otel_sampling::AlwaysOff,
        )),
    );
    traced(&handle, || {
        let root = tracing::info_span!("dropped root", field = "not read");
        let _r = root.enter();
        let child = tracing::info_span!("dropped child", n = 1);
        let _c = child.enter();
        tracing::info!("an event in a dropped span");
        // The dropped trace still propagates: the context is valid, not sampled.
        let cx = Context::current();
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && !sc.is_sampled());
        assert_eq!(child.context().span().span_context().trace_id(), sc.trace_id());
        // A remote sampled parent is honoured by ParentBased, even in here.
        let incoming = tracing::info_span!(parent: None, "incoming");
        incoming.set_parent(remote(true)).unwrap();
        let _i = incoming.enter();
        let inner = tracing::info_span!("inner");
        drop(inner);
    });
    let names: Vec<String> = exporter.spans().iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"incoming".to_owned()) && names.contains(&"inner".to_owned()));
    let incoming = find(&exporter.spans(), "incoming").clone();
    assert_eq!(
        incoming.span_context.trace_id(),
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736)
    );
    assert_eq!(incoming.parent_span_id, SpanId::from(0x00f0_67aa_0ba9_02b7));
    assert!(incoming.parent_span_is_remote);
}

#[test]
fn parent_based_follows_an_incoming_decision_both_ways() {
    let (handle, exporter) = install();
    traced(&handle, || {
        let _kept = remote(true).attach();
        drop(tracing::info_span!("kept by the caller"));
        drop(_kept);
        let _dropped = remote(false).attach();
        let span = tracing::info_span!("dropped by the caller");
        let _e = span.enter();
        drop(tracing::info_span!("its child"));
    });
    let names: Vec<String> = exporter.spans().iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["kept by the caller"]);
}

#[test]
fn extension_trait_sets_parent_attributes_status_events_and_links() {
    let (handle, exporter) = install();
    let linked = SpanContext::new(
        TraceId::from(9),
        SpanId::from(8),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    traced(&handle, || {
        let span = tracing::info_span!("consume");
        span.set_parent(remote(true)).unwrap();
        span.set_attribute("messaging.message.id", "m-1");
        span.set_status(Status::error("declined"));
        span.add_event("retrying", vec![KeyValue::new("attempt", 2)]);
        span.add_link(linked.clone());
        let cx = span.context();
        assert_eq!(
            cx.span().span_context().trace_id(),
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736)
        );
        assert_eq!(span.set_parent(remote(false)), Err(SetParentError::AlreadyStarted));

        let other = tracing::info_span!("other");
        let _e = other.enter();
        assert_eq!(other.set_parent(remote(true)), Err(SetParentError::AlreadyStarted));
        drop(_e);

        let a = tracing::info_span!("a");
        let b = tracing::info_span!("b");
        b.follows_from(&a);
        drop((a, b));
    });
    let spans = exporter.spans();
    let consume = find(&spans, "consume");
    assert!(consume.parent_span_is_remote);
    assert_eq!(attr(consume, "messaging.message.id"), Some(&Value::from("m-1")));
    assert_eq!(consume.status, Status::error("declined"));
    assert_eq!(consume.events.events[0].name, "retrying");
    assert_eq!(consume.links.links[0].span_context, linked);
    let a = find(&spans, "a");
    let b = find(&spans, "b");
    assert_eq!(b.links.links[0].span_context.span_id(), a.span_context.span_id());

    // Without a subscriber: nothing to do, no panic.
    let lone = tracing::info_span!("lone");
    assert!(matches!(
        lone.set_parent(remote(true)),
        Err(SetParentError::SpanDisabled | SetParentError::LayerNotFound)
    ));
    assert!(!lone.context().span().span_context().is_valid());
    lone.set_attribute("k", "v");
}

#[test]
fn limits_count_what_they_drop() {
    let limits = SpanLimits {
        max_attributes_per_span: 2,
        max_events_per_span: 1,
        max_attributes_per_event: 3,
        ..SpanLimits::default()
    };
    let (handle, exporter) = pipeline(Telemetry::builder().with_span_limits(limits));
    traced(&handle, || {
        let span = tracing::info_span!("limited", a = 1, b = 2, c = 3, d = 4);
        let _e = span.enter();
        tracing::info!(x = 1, y = 2, z = 3, "first");
        tracing::info!("second");
        let huge = "x".repeat(1 << 20);
        span.record("a", huge.as_str());
    });
    let span = find(&exporter.spans(), "limited").clone();
    assert_eq!(span.attributes.len(), 2);
    assert_eq!(span.dropped_attributes_count, 2);
    assert_eq!(span.events.events.len(), 1);
    assert_eq!(span.events.dropped_count, 1);
    // level, target, x... : three kept, the rest counted.
    assert_eq!(span.events.events[0].attributes.len(), 3);
    assert_eq!(span.events.events[0].dropped_attributes_count, 2);
    assert_eq!(attr(&span, "a").map(|v| v.as_str().len()), Some(1 << 20));
}

#[test]
fn spans_closed_on_other_threads_and_never_closed() {
    let (handle, exporter) = install();
    let subscriber = tracing_subscriber::registry().with(handle.tracing_layer());
    let dispatch = tracing::Dispatch::new(subscriber);
    let moved = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("moved"));
    let never = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("never closed"));
    let d = dispatch.clone();
    std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d, || {
            let _e = moved.enter();
            drop(tracing::info_span!("child on another thread"));
        });
        drop(moved);
    })
    .join()
    .unwrap();
    handle.force_flush().unwrap();
    let spans = exporter.spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let moved = find(&spans, "moved");
    let child = find(&spans, "child on another thread");
    assert_eq!(child.parent_span_id, moved.span_context.span_id());
    std::mem::forget(never);
}

#[test]
fn a_layer_added_twice_records_each_span_once() {
    let (handle, exporter) = install();
    let subscriber = tracing_subscriber::registry()
        .with(handle.tracing_layer())
        .with(handle.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        let _a = tracing::info_span!("once").entered();
        drop(tracing::info_span!("child"));
    });
    handle.force_flush().unwrap();
    let spans = exporter.spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert_eq!(
        find(&spans, "child").parent_span_id,
        find(&spans, "once").span_context.span_id()
    );
}

#[test]
fn disabled_and_shut_down_pipelines_record_nothing_and_count() {
    let disabled = Telemetry::from_env()
        .with_env_lookup(|k| (k == "OTEL_SDK_DISABLED").then(|| "true".to_owned()))
        .install()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(disabled.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        let _s = tracing::info_span!("nothing").entered();
        assert!(!Context::current().span().span_context().is_valid());
    });

    let (handle, exporter) = install();
    let subscriber = tracing_subscriber::registry().with(handle.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        let open = tracing::info_span!("open at shutdown");
        handle.shutdown(Duration::from_secs(5)).unwrap();
        drop(open);
        drop(tracing::info_span!("after shutdown").entered());
    });
    assert!(exporter.spans().is_empty());
    // The span open at shutdown closed after it: counted, not lost silently.
    assert_eq!(handle.counters().snapshot().dropped, 1);
}

#[test]
fn spans_reach_processors_without_a_flush() {
    let (handle, exporter) = install();
    let subscriber = tracing_subscriber::registry().with(handle.tracing_layer());
    tracing::subscriber::with_default(subscriber, || drop(tracing::info_span!("eventually")));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while exporter.spans().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(exporter.spans().len(), 1, "the recorder thread delivers on its own");
}

#[test]
fn consistent_probability_sampling_keeps_a_share_and_whole_traces() {
    let (handle, exporter) = pipeline(
        Telemetry::builder().with_sampler(otel_core::otel_sampling::ParentBased::new(
            otel_core::otel_sampling::ProbabilitySampler::new(0.25).unwrap(),
        )),
    );
    traced(&handle, || {
        for _ in 0..4000 {
            let _r = tracing::info_span!("root").entered();
            drop(tracing::info_span!("child"));
        }
    });
    let spans = exporter.spans();
    let roots = spans.iter().filter(|s| s.name == "root").count();
    let children = spans.iter().filter(|s| s.name == "child").count();
    assert_eq!(roots, children, "whole traces are kept");
    assert!((800..1200).contains(&roots), "{roots} of 4000 at 25%");
    let root = find(&spans, "root");
    assert_eq!(root.span_context.trace_state().get("ot"), Some("th:c"));
}

mod values {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Field values of any content and size arrive as they were given.
        #[test]
        fn any_field_value_round_trips(text in ".{0,300}", n in any::<i64>(), u in any::<u64>(), f in any::<f64>(), b in any::<bool>()) {
            let (handle, exporter) = install();
            traced(&handle, || {
                let span = tracing::info_span!("values", text = text.as_str(), n, u, f, b, dbg = ?text, later = tracing::field::Empty);
                span.record("later", text.as_str());
                let _e = span.enter();
                tracing::info!(text = text.as_str(), "{text}");
            });
            let spans = exporter.spans();
            prop_assert_eq!(spans.len(), 1);
            let s = &spans[0];
            prop_assert_eq!(attr(s, "text"), Some(&Value::from(text.clone())));
            prop_assert_eq!(attr(s, "later"), Some(&Value::from(text.clone())));
            prop_assert_eq!(attr(s, "dbg"), Some(&Value::from(format!("{text:?}"))));
            prop_assert_eq!(attr(s, "n"), Some(&Value::I64(n)));
            let expected_u = i64::try_from(u).map_or_else(|_| Value::from(u.to_string()), Value::I64);
            prop_assert_eq!(attr(s, "u"), Some(&expected_u));
            prop_assert_eq!(attr(s, "b"), Some(&Value::Bool(b)));
            match attr(s, "f") {
                Some(Value::F64(v)) => prop_assert!(v.to_bits() == f.to_bits() || (v.is_nan() && f.is_nan())),
                other => prop_assert!(false, "f: {other:?}"),
            }
            let event = &s.events.events[0];
            prop_assert_eq!(event.name.as_ref(), text.as_str());
            let event_text = event.attributes.iter().find(|kv| kv.key.as_str() == "text").map(|kv| &kv.value);
            prop_assert_eq!(event_text, Some(&Value::from(text.clone())));
        }
    }
}

#[test]
fn spans_made_where_telemetry_is_suppressed_are_not_recorded() {
    // The exporter's own threads run with telemetry suppressed, so the spans
    // their HTTP and gRPC client libraries make are not exported again.
    let (handle, exporter) = install();
    traced(&handle, || {
        {
            let _quiet = Context::enter_telemetry_suppressed_scope();
            drop(tracing::info_span!("inside an exporter").entered());
        }
        drop(tracing::info_span!("application").entered());
    });
    let names: Vec<String> = exporter.spans().iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["application"]);
}

#[test]
fn db_span_follows_the_database_conventions() {
    let (handle, exporter) = install();
    let id = 7;
    traced(&handle, || {
        let _request = tracing::info_span!("load order").entered();
        let query = format!("SELECT total FROM orders WHERE id = {id} AND owner = 'alice'");
        otel_core::db_span!(
            system = "postgresql",
            namespace = "shop",
            operation = "SELECT",
            collection = "orders",
            query = &query,
            server.address = "db.internal",
        )
        .in_scope(|| tracing::error!(error = "connection reset", "query failed"));
        otel_core::db_span!(
            system = "sqlite",
            operation = "DELETE",
            collection = "carts",
            query = "DELETE FROM carts WHERE id = ?1",
        )
        .in_scope(|| {});
    });
    let spans = exporter.spans();
    let select = find(&spans, "SELECT orders");
    assert_eq!(select.span_kind, SpanKind::Client);
    assert_eq!(select.parent_span_id, find(&spans, "load order").span_context.span_id());
    let text = |s: &SpanData, k: &str| attr(s, k).map(|v| v.as_str().into_owned());
    assert_eq!(text(select, "db.system.name").as_deref(), Some("postgresql"));
    assert_eq!(text(select, "db.namespace").as_deref(), Some("shop"));
    assert_eq!(text(select, "db.operation.name").as_deref(), Some("SELECT"));
    assert_eq!(text(select, "db.collection.name").as_deref(), Some("orders"));
    assert_eq!(
        text(select, "db.query.text").as_deref(),
        Some("SELECT total FROM orders WHERE id = ? AND owner = ?"),
        "literals never reach the span"
    );
    assert_eq!(text(select, "server.address").as_deref(), Some("db.internal"));
    assert!(
        matches!(select.status, Status::Error { .. }),
        "an error event fails the span"
    );
    let delete = find(&spans, "DELETE carts");
    assert_eq!(attr(delete, "db.namespace"), None);
    assert_eq!(
        text(delete, "db.query.text").as_deref(),
        Some("DELETE FROM carts WHERE id = ?1")
    );
}
