//! Propagation on an `http::HeaderMap`: ours beside opentelemetry_sdk's propagators
//! with opentelemetry-http carriers, in the same run.
//!
//! `cargo bench -p benches --bench propagation`

use benches::paired::{PairedGroup, PairedRow, print_paired};
use benches::{Pair, print_ratios};
use criterion::{Criterion, criterion_group};
use http::HeaderMap;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use otel_propagation::carrier::http::{HeaderExtractor, HeaderInjector};
use std::hint::black_box;
use std::str::FromStr;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
const BAGGAGE: &str = "userId=alice,serverNode=DF%2028,isProduction=false";

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, v.parse().expect("static header value"));
    }
    h
}

fn span_cx(trace_state: TraceState) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        TraceFlags::SAMPLED,
        false,
        trace_state,
    ))
}

/// Extract through `TextMapPropagator` with our carrier.
fn extract_ours(p: &dyn TextMapPropagator, empty: &Context, h: &HeaderMap) -> Context {
    p.extract_with_context(empty, &HeaderExtractor(black_box(h)))
}

/// Extract through `TextMapPropagator` with opentelemetry-http's carrier.
fn extract_peer(p: &dyn TextMapPropagator, empty: &Context, h: &HeaderMap) -> Context {
    p.extract_with_context(empty, &opentelemetry_http::HeaderExtractor(black_box(h)))
}

/// Inject through `TextMapPropagator` with our carrier into a cleared map.
fn inject_ours(p: &dyn TextMapPropagator, cx: &Context, out: &mut HeaderMap) {
    out.clear();
    p.inject_context(black_box(cx), &mut HeaderInjector(out));
    black_box(&out);
}

/// Inject through `TextMapPropagator` with opentelemetry-http's carrier into a cleared map.
fn inject_peer(p: &dyn TextMapPropagator, cx: &Context, out: &mut HeaderMap) {
    out.clear();
    p.inject_context(black_box(cx), &mut opentelemetry_http::HeaderInjector(out));
    black_box(&out);
}

/// Our direct `HeaderMap` inject into a cleared map.
fn inject_direct(p: &otel_propagation::TraceContextPropagator, cx: &Context, out: &mut HeaderMap) {
    out.clear();
    p.inject_headers(black_box(cx), out);
    black_box(&out);
}

fn extract_group(
    c: &mut Criterion,
    name: &str,
    h: &HeaderMap,
    ours: &dyn TextMapPropagator,
    theirs: &dyn TextMapPropagator,
) {
    let mut g = c.benchmark_group(name);
    let empty = Context::new();
    g.bench_function("ours", |b| b.iter(|| black_box(extract_ours(ours, &empty, h))));
    g.bench_function("sdk", |b| b.iter(|| black_box(extract_peer(theirs, &empty, h))));
    g.finish();
}

fn inject_group(
    c: &mut Criterion,
    name: &str,
    cx: &Context,
    ours: &dyn TextMapPropagator,
    theirs: &dyn TextMapPropagator,
) {
    let mut g = c.benchmark_group(name);
    let mut h = HeaderMap::with_capacity(4);
    g.bench_function("ours", |b| b.iter(|| inject_ours(ours, cx, &mut h)));
    g.bench_function("sdk", |b| b.iter(|| inject_peer(theirs, cx, &mut h)));
    g.finish();
}

/// Our direct `HeaderMap` path (no Extractor/Injector indirection), measured
/// under the same group as the trait paths.
fn direct_group(c: &mut Criterion, name: &str, h: &HeaderMap, cx: &Context) {
    let ours = otel_propagation::TraceContextPropagator::new();
    let mut g = c.benchmark_group(name);
    let empty = Context::new();
    g.bench_function("ours_direct_extract", |b| {
        b.iter(|| black_box(ours.extract_headers(&empty, black_box(h))))
    });
    g.bench_function("ours_direct_span_context", |b| {
        b.iter(|| black_box(ours.span_context_from_headers(black_box(h))))
    });
    let mut out = HeaderMap::with_capacity(4);
    g.bench_function("ours_direct_inject", |b| b.iter(|| inject_direct(&ours, cx, &mut out)));
    g.finish();
}

const MEMBERS: [(&str, &str); 3] = [("userId", "alice"), ("serverNode", "DF 28"), ("isProduction", "false")];

/// The remote span context every extract bench parses.
fn remote_span_context() -> SpanContext {
    SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    )
}

/// The `Context` a `traceparent` extract returns, built from parsed parts.
fn floor_span(empty: &Context, sc: &SpanContext) -> Context {
    empty.with_remote_span_context(black_box(sc).clone())
}

/// The same with `TRACESTATE`'s two members in opentelemetry's `TraceState`.
fn floor_span_with_tracestate(empty: &Context, sc: &SpanContext) -> Context {
    let ts = TraceState::from_key_value(black_box([("congo", "t61rcWkgMzE"), ("rojo", "00f067aa0ba902b7")]))
        .unwrap_or_default();
    let sc = black_box(sc);
    empty.with_remote_span_context(SpanContext::new(
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags(),
        true,
        ts,
    ))
}

/// The `Context` a baggage extract of `BAGGAGE` returns, built from parsed parts.
fn floor_baggage(empty: &Context) -> Context {
    let mut baggage = opentelemetry::baggage::Baggage::new();
    for (k, v) in black_box(&MEMBERS) {
        baggage.insert(k.to_string(), v.to_string());
    }
    empty.with_baggage(baggage)
}

/// Reads `keys` through our `Extractor` the way an extract must (`get_all`).
fn carrier_get_all(h: &HeaderMap, keys: &[&str]) {
    let extractor = HeaderExtractor(black_box(h));
    for key in keys {
        black_box(extractor.get_all(key));
    }
}

/// Writes already-formatted `values` through our `Injector` (an owned `String` each).
fn carrier_set(out: &mut HeaderMap, values: &[(&str, &str)]) {
    out.clear();
    let mut injector = HeaderInjector(out);
    for (key, value) in values {
        injector.set(key, black_box(*value).to_owned());
    }
    black_box(&out);
}

/// What every `TextMapPropagator` pays whatever its parser: building the
/// `Context` it returns from an already-parsed result (opentelemetry's
/// `Context`, `SpanContext` and `Baggage` types fix this cost), so the table
/// can also show how the parts a propagator controls compare.
fn floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("context_floor");
    let empty = Context::new();
    let sc = remote_span_context();
    g.bench_function("remote_span_context", |b| b.iter(|| black_box(floor_span(&empty, &sc))));
    g.bench_function("remote_span_context_with_tracestate", |b| {
        b.iter(|| black_box(floor_span_with_tracestate(&empty, &sc)))
    });
    g.bench_function("baggage_3_entries", |b| b.iter(|| black_box(floor_baggage(&empty))));
    g.finish();
}

/// What the `Extractor`/`Injector` interface and http's types cost a propagator
/// going through our carriers, whatever its parser or formatter. Extract must
/// use `get_all` (two `traceparent` headers are invalid, and repeated
/// `tracestate`/`baggage` headers are combined), which returns a `Vec`. Inject
/// hands the `Injector` an owned `String` per header, which becomes a checked
/// `HeaderValue` inserted into the map.
fn carrier_floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("carrier_floor");
    let tp = headers(&[("traceparent", TRACEPARENT)]);
    let tp_ts = headers(&[("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)]);
    let bag = headers(&[("baggage", BAGGAGE)]);
    for (name, h, keys) in [
        ("traceparent_get_all", &tp, &["traceparent", "tracestate"][..]),
        (
            "traceparent_tracestate_get_all",
            &tp_ts,
            &["traceparent", "tracestate"][..],
        ),
        ("baggage_get_all", &bag, &["baggage"][..]),
    ] {
        g.bench_function(name, |b| b.iter(|| carrier_get_all(h, keys)));
    }
    let mut out = HeaderMap::with_capacity(4);
    for (name, values) in [
        ("traceparent_set", &[("traceparent", TRACEPARENT)][..]),
        (
            "traceparent_tracestate_set",
            &[("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)][..],
        ),
    ] {
        g.bench_function(name, |b| b.iter(|| carrier_set(&mut out, values)));
    }
    g.finish();
}

/// The `tracestate` parsers alone: ours (strict Level 2 grammar) and
/// opentelemetry's `TraceState::from_str`, both building the same `TraceState`.
fn tracestate_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("tracestate_parse");
    g.bench_function("ours", |b| {
        b.iter(|| black_box(otel_propagation::tracestate::parse_tracestate([black_box(TRACESTATE)])))
    });
    g.bench_function("sdk", |b| {
        b.iter(|| black_box(TraceState::from_str(black_box(TRACESTATE))))
    });
    g.finish();
}

fn trace_context(c: &mut Criterion) {
    let ours = otel_propagation::TraceContextPropagator::new();
    let theirs = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    direct_group(
        c,
        "traceparent_direct",
        &headers(&[("traceparent", TRACEPARENT)]),
        &span_cx(TraceState::NONE),
    );

    extract_group(
        c,
        "traceparent_extract",
        &headers(&[("traceparent", TRACEPARENT)]),
        &ours,
        &theirs,
    );
    extract_group(
        c,
        "traceparent_tracestate_extract",
        &headers(&[("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)]),
        &ours,
        &theirs,
    );
    inject_group(c, "traceparent_inject", &span_cx(TraceState::NONE), &ours, &theirs);
    let ts = TraceState::from_str(TRACESTATE).expect("static tracestate");
    inject_group(c, "traceparent_tracestate_inject", &span_cx(ts), &ours, &theirs);
}

/// A context carrying `MEMBERS` as baggage, for the inject benches.
fn baggage_cx() -> Context {
    Context::new().with_baggage(MEMBERS.map(|(k, v)| KeyValue::new(k, v)))
}

fn baggage(c: &mut Criterion) {
    let ours = otel_propagation::BaggagePropagator::new();
    let theirs = opentelemetry_sdk::propagation::BaggagePropagator::new();
    extract_group(c, "baggage_extract", &headers(&[("baggage", BAGGAGE)]), &ours, &theirs);
    inject_group(c, "baggage_inject", &baggage_cx(), &ours, &theirs);
}

/// Ours and the peer interleaved in the same samples (see `benches::paired`),
/// and each trait path's fixed costs against the peer the same way: ratios the
/// host's drift between two separate benchmarks does not move.
fn paired(c: &mut Criterion) {
    let tc = otel_propagation::TraceContextPropagator::new();
    let tc_sdk = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    let bg = otel_propagation::BaggagePropagator::new();
    let bg_sdk = opentelemetry_sdk::propagation::BaggagePropagator::new();
    let tp = headers(&[("traceparent", TRACEPARENT)]);
    let tp_ts = headers(&[("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)]);
    let bag = headers(&[("baggage", BAGGAGE)]);
    let empty = Context::new();
    let cx_tp = span_cx(TraceState::NONE);
    let cx_ts = span_cx(TraceState::from_str(TRACESTATE).expect("static tracestate"));
    let cx_bag = baggage_cx();
    let remote = remote_span_context();
    let extract = |p: &dyn TextMapPropagator, h: &HeaderMap| {
        black_box(extract_ours(p, &empty, h));
    };
    let extract_sdk = |p: &dyn TextMapPropagator, h: &HeaderMap| {
        black_box(extract_peer(p, &empty, h));
    };
    let (mut ours_out, mut sdk_out) = (HeaderMap::with_capacity(4), HeaderMap::with_capacity(4));

    let mut g = PairedGroup::new(c, "paired");
    g.bench(
        "traceparent_extract",
        || extract(&tc, &tp),
        || extract_sdk(&tc_sdk, &tp),
    );
    g.bench(
        "traceparent_tracestate_extract",
        || extract(&tc, &tp_ts),
        || extract_sdk(&tc_sdk, &tp_ts),
    );
    g.bench(
        "traceparent_inject",
        || inject_ours(&tc, &cx_tp, &mut ours_out),
        || inject_peer(&tc_sdk, &cx_tp, &mut sdk_out),
    );
    g.bench(
        "traceparent_tracestate_inject",
        || inject_ours(&tc, &cx_ts, &mut ours_out),
        || inject_peer(&tc_sdk, &cx_ts, &mut sdk_out),
    );
    g.bench(
        "traceparent_direct_extract",
        || {
            black_box(tc.extract_headers(&empty, black_box(&tp)));
        },
        || extract_sdk(&tc_sdk, &tp),
    );
    g.bench(
        "traceparent_direct_span_context",
        || {
            black_box(tc.span_context_from_headers(black_box(&tp)));
        },
        || extract_sdk(&tc_sdk, &tp),
    );
    g.bench(
        "traceparent_direct_inject",
        || inject_direct(&tc, &cx_tp, &mut ours_out),
        || inject_peer(&tc_sdk, &cx_tp, &mut sdk_out),
    );
    g.bench(
        "tracestate_parse",
        || {
            let _ = black_box(otel_propagation::tracestate::parse_tracestate([black_box(TRACESTATE)]));
        },
        || {
            let _ = black_box(TraceState::from_str(black_box(TRACESTATE)));
        },
    );
    g.bench("baggage_extract", || extract(&bg, &bag), || extract_sdk(&bg_sdk, &bag));
    g.bench(
        "baggage_inject",
        || inject_ours(&bg, &cx_bag, &mut ours_out),
        || inject_peer(&bg_sdk, &cx_bag, &mut sdk_out),
    );
    // Fixed costs of each trait path (as in `context_floor` and
    // `carrier_floor`) against the peer's whole path.
    g.bench(
        "fixed_traceparent_extract",
        || {
            carrier_get_all(&tp, &["traceparent", "tracestate"]);
            black_box(floor_span(&empty, &remote));
        },
        || extract_sdk(&tc_sdk, &tp),
    );
    g.bench(
        "fixed_traceparent_tracestate_extract",
        || {
            carrier_get_all(&tp_ts, &["traceparent", "tracestate"]);
            black_box(floor_span_with_tracestate(&empty, &remote));
        },
        || extract_sdk(&tc_sdk, &tp_ts),
    );
    g.bench(
        "fixed_traceparent_inject",
        || carrier_set(&mut ours_out, &[("traceparent", TRACEPARENT)]),
        || inject_peer(&tc_sdk, &cx_tp, &mut sdk_out),
    );
    g.bench(
        "fixed_traceparent_tracestate_inject",
        || {
            carrier_set(
                &mut ours_out,
                &[("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)],
            )
        },
        || inject_peer(&tc_sdk, &cx_ts, &mut sdk_out),
    );
    g.bench(
        "fixed_baggage_extract",
        || {
            carrier_get_all(&bag, &["baggage"]);
            black_box(floor_baggage(&empty));
        },
        || extract_sdk(&bg_sdk, &bag),
    );
    g.finish();
}

criterion_group!(
    benches,
    floor,
    carrier_floor,
    tracestate_parse,
    trace_context,
    baggage,
    paired
);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let pair = |label, group: &'static str, target| Pair {
        label,
        ours: Box::leak(format!("{group}/ours").into_boxed_str()),
        theirs: Box::leak(format!("{group}/sdk").into_boxed_str()),
        target: Some(target),
    };
    print_ratios(
        "propagation on http::HeaderMap",
        &[
            pair("traceparent extract", "traceparent_extract", 0.2),
            Pair {
                label: "traceparent extract, direct HeaderMap path",
                ours: "traceparent_direct/ours_direct_extract",
                theirs: "traceparent_extract/sdk",
                target: Some(0.2),
            },
            Pair {
                label: "traceparent -> SpanContext, direct (no Context)",
                ours: "traceparent_direct/ours_direct_span_context",
                theirs: "traceparent_extract/sdk",
                target: Some(0.2),
            },
            pair(
                "traceparent + tracestate extract",
                "traceparent_tracestate_extract",
                0.2,
            ),
            pair("traceparent inject", "traceparent_inject", 0.2),
            Pair {
                label: "traceparent inject, direct HeaderMap path",
                ours: "traceparent_direct/ours_direct_inject",
                theirs: "traceparent_inject/sdk",
                target: Some(0.2),
            },
            pair("traceparent + tracestate inject", "traceparent_tracestate_inject", 0.2),
            pair("baggage (3 entries) extract", "baggage_extract", 1.0 / 3.0),
            pair("baggage (3 entries) inject", "baggage_inject", 1.0 / 3.0),
        ],
    );
    print_above_floor();
    print_floor_share();
    let row = |label, id, target| PairedRow {
        label,
        id,
        target: Some(target),
    };
    print_paired(
        "propagation on http::HeaderMap: ours / peer",
        &[
            row("traceparent extract", "paired/traceparent_extract", 0.2),
            row(
                "traceparent extract, direct HeaderMap path",
                "paired/traceparent_direct_extract",
                0.2,
            ),
            row(
                "traceparent -> SpanContext, direct (no Context)",
                "paired/traceparent_direct_span_context",
                0.2,
            ),
            row(
                "traceparent + tracestate extract",
                "paired/traceparent_tracestate_extract",
                0.2,
            ),
            row("traceparent inject", "paired/traceparent_inject", 0.2),
            row(
                "traceparent inject, direct HeaderMap path",
                "paired/traceparent_direct_inject",
                0.2,
            ),
            row(
                "traceparent + tracestate inject",
                "paired/traceparent_tracestate_inject",
                0.2,
            ),
            row("baggage (3 entries) extract", "paired/baggage_extract", 1.0 / 3.0),
            row("baggage (3 entries) inject", "paired/baggage_inject", 1.0 / 3.0),
        ],
        ["met", "MISSED"],
    );
    print_paired(
        "tracestate parser alone: ours / TraceState::from_str",
        &[PairedRow {
            label: "tracestate parse (2 members)",
            id: "paired/tracestate_parse",
            target: None,
        }],
        ["", ""],
    );
    print_paired(
        "fixed costs of the trait path / peer",
        &[
            row("traceparent extract", "paired/fixed_traceparent_extract", 0.2),
            row(
                "traceparent + tracestate extract",
                "paired/fixed_traceparent_tracestate_extract",
                0.2,
            ),
            row("traceparent inject", "paired/fixed_traceparent_inject", 0.2),
            row(
                "traceparent + tracestate inject",
                "paired/fixed_traceparent_tracestate_inject",
                0.2,
            ),
            row("baggage (3 entries) extract", "paired/fixed_baggage_extract", 1.0 / 3.0),
        ],
        ["room left for our code", "target below the fixed costs"],
    );
}

/// Extract ratios with the fixed cost of building the returned `Context`
/// taken out of both sides: the part each propagator's own code costs.
fn print_above_floor() {
    let Some(dir) = benches::criterion_dir() else {
        return;
    };
    let get = |id: &str| benches::median_ns(&dir, id);
    println!();
    println!("== extract above the Context floor (both sides minus context_floor) ==");
    for (label, floor, ours, theirs) in [
        (
            "traceparent extract",
            "context_floor/remote_span_context",
            "traceparent_extract/ours",
            "traceparent_extract/sdk",
        ),
        (
            "traceparent extract, direct HeaderMap path",
            "context_floor/remote_span_context",
            "traceparent_direct/ours_direct_extract",
            "traceparent_extract/sdk",
        ),
        (
            "traceparent + tracestate extract",
            "context_floor/remote_span_context_with_tracestate",
            "traceparent_tracestate_extract/ours",
            "traceparent_tracestate_extract/sdk",
        ),
        (
            "baggage (3 entries) extract",
            "context_floor/baggage_3_entries",
            "baggage_extract/ours",
            "baggage_extract/sdk",
        ),
    ] {
        if let (Some(floor), Some(ours), Some(theirs)) = (get(floor), get(ours), get(theirs)) {
            println!(
                "{label:<44} floor {:>10}  ours +{:>10}  peer +{:>10}  ratio {:.3}",
                benches::fmt_ns(floor),
                benches::fmt_ns(ours - floor),
                benches::fmt_ns(theirs - floor),
                (ours - floor) / (theirs - floor)
            );
        }
    }
}

/// The fixed costs of each trait path (the `Context`, `SpanContext`,
/// `TraceState` or `Baggage` it must build, and the carrier work the
/// `Extractor`/`Injector` interface requires) as a share of the peer's whole
/// time. Where that share alone is above the target, no parser or formatter
/// can meet the target on this interface.
fn print_floor_share() {
    let Some(dir) = benches::criterion_dir() else {
        return;
    };
    let get = |id: &str| benches::median_ns(&dir, id);
    println!();
    println!("== fixed costs of the trait path as a share of the peer's time ==");
    for (label, parts, theirs, target) in [
        (
            "traceparent extract",
            &["context_floor/remote_span_context", "carrier_floor/traceparent_get_all"][..],
            "traceparent_extract/sdk",
            0.2,
        ),
        (
            "traceparent + tracestate extract",
            &[
                "context_floor/remote_span_context_with_tracestate",
                "carrier_floor/traceparent_tracestate_get_all",
            ][..],
            "traceparent_tracestate_extract/sdk",
            0.2,
        ),
        (
            "traceparent inject",
            &["carrier_floor/traceparent_set"][..],
            "traceparent_inject/sdk",
            0.2,
        ),
        (
            "traceparent + tracestate inject",
            &["carrier_floor/traceparent_tracestate_set"][..],
            "traceparent_tracestate_inject/sdk",
            0.2,
        ),
        (
            "baggage (3 entries) extract",
            &["context_floor/baggage_3_entries", "carrier_floor/baggage_get_all"][..],
            "baggage_extract/sdk",
            1.0 / 3.0,
        ),
    ] {
        let floor: Option<f64> = parts.iter().map(|id| get(id)).sum();
        if let (Some(floor), Some(theirs)) = (floor, get(theirs)) {
            let share = floor / theirs;
            let verdict = if share > target {
                "target below the fixed costs"
            } else {
                "room left for the parser"
            };
            println!(
                "{label:<44} fixed {:>10}  peer {:>10}  share {share:.3}  target {target:.2}  {verdict}",
                benches::fmt_ns(floor),
                benches::fmt_ns(theirs),
            );
        }
    }
}
