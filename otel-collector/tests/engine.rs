#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! Behaviour of the tail-sampling engine, with a manual clock.

mod support;

use otel_collector::{Clock, TailSamplerBuilder, TailSamplingConfig, TraceSink};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::*;

const ERRORS_ONLY: &str = r#"
decision_wait: 1s
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
"#;

#[test]
fn spans_of_one_trace_across_resources_and_batches_are_decided_once() {
    let rig = Rig::new(
        r#"
decision_wait: 1s
policies:
  - name: checkout-service
    type: string_attribute
    string_attribute: {key: service.name, values: [checkout]}
"#,
    );
    let gateway = rig
        .engine
        .resource_match(&TResource(vec![("service.name".into(), Val::S("gateway".into()))]));
    let checkout = rig
        .engine
        .resource_match(&TResource(vec![("service.name".into(), Val::S("checkout".into()))]));
    let id = tid(1);
    // Batch 1 from the gateway, batch 2 from checkout 300 ms later, batch 3 from the gateway again.
    rig.engine.ingest(&gateway, TSpan::new(id, 1).root());
    rig.engine.ingest(&gateway, TSpan::new(id, 2));
    rig.advance_ms(300);
    rig.engine.ingest(&checkout, TSpan::new(id, 3));
    rig.advance_ms(300);
    rig.engine.ingest(&gateway, TSpan::new(id, 4));
    assert_eq!(rig.sink.calls(), 0, "nothing is decided before decision_wait");
    rig.advance_ms(400);
    assert_eq!(rig.sink.calls(), 1, "decided once");
    assert_eq!(
        rig.sink.spans_of(id),
        4,
        "kept whole: the resource match of one batch counts for the trace"
    );
    assert_eq!(rig.sink.by(id), ["checkout-service"]);
    let s = rig.engine.stats();
    assert_eq!(
        (s.traces_received, s.spans_received, s.traces_sampled, s.spans_sampled),
        (1, 4, 1, 4)
    );
    assert_eq!(s.buffered_traces, 0);
    // The other trace, gateway only, is not kept.
    let other = tid(2);
    rig.engine.ingest(&gateway, TSpan::new(other, 1).root());
    rig.advance_ms(1000);
    assert!(!rig.sink.has(other));
}

#[test]
fn late_spans_follow_the_decision() {
    let rig = Rig::new(ERRORS_ONLY);
    let (kept, dropped) = (tid(10), tid(11));
    rig.ingest(TSpan::new(kept, 1).root().error());
    rig.ingest(TSpan::new(dropped, 1).root());
    rig.advance_ms(1000);
    assert_eq!(rig.sink.spans_of(kept), 1);
    // Late spans: an OK one of the kept trace is forwarded, an error one of
    // the dropped trace does not revive it.
    rig.ingest(TSpan::new(kept, 2));
    rig.ingest(TSpan::new(dropped, 2).error());
    rig.advance_ms(5000);
    assert_eq!(rig.sink.spans_of(kept), 2);
    assert_eq!(rig.sink.by(kept), ["errors", "(cache)"]);
    assert!(!rig.sink.has(dropped));
    let s = rig.engine.stats();
    assert_eq!(
        (s.late_spans_sampled, s.late_spans_dropped, s.traces_received),
        (1, 1, 2)
    );
    assert_eq!(s.buffered_traces, 0);
}

#[test]
fn without_decision_caches_late_spans_start_over() {
    let rig = Rig::new(
        r#"
decision_wait: 1s
decision_cache: {sampled_cache_size: 0, non_sampled_cache_size: 0}
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
"#,
    );
    let id = tid(12);
    rig.ingest(TSpan::new(id, 1).root());
    rig.advance_ms(1000);
    rig.ingest(TSpan::new(id, 2).error());
    assert_eq!(rig.engine.stats().late_spans_dropped, 0);
    assert_eq!(rig.engine.buffered_traces(), 1, "buffered as a new trace");
    rig.advance_ms(1000);
    assert_eq!(rig.sink.spans_of(id), 1, "only the late error span is left to keep");
    assert_eq!(rig.engine.stats().traces_received, 2);
}

#[test]
fn decision_cache_is_reused_for_every_late_span_and_bounded() {
    let rig = Rig::new(
        r#"
decision_wait: 1s
decision_cache: {sampled_cache_size: 32, non_sampled_cache_size: 32}
policies: [{name: all, type: always_sample}]
"#,
    );
    let first = tid(20);
    rig.ingest(TSpan::new(first, 1));
    rig.advance_ms(1000);
    for i in 2..12 {
        rig.ingest(TSpan::new(first, i));
    }
    assert_eq!(rig.sink.spans_of(first), 11);
    assert_eq!(rig.engine.stats().late_spans_sampled, 10);
    assert_eq!(
        rig.engine.buffered_traces(),
        0,
        "late spans of a kept trace are not buffered"
    );
    // Thousands of later decisions push the first trace out of the bounded cache.
    for n in 0..4000 {
        rig.ingest(TSpan::new(tid(1000 + n), 1));
    }
    rig.advance_ms(1000);
    rig.ingest(TSpan::new(first, 99));
    assert_eq!(rig.engine.buffered_traces(), 1, "forgotten: buffered again");
}

#[test]
fn fifo_eviction_decides_the_oldest_early() {
    let rig = Rig::new(
        r#"
decision_wait: 10s
num_traces: 100
policies: [{name: all, type: always_sample}]
"#,
    );
    for n in 0..210 {
        rig.ingest(TSpan::new(tid(n), 1).root());
        rig.clock.advance(std::time::Duration::from_millis(1));
    }
    let s = rig.engine.stats();
    assert_eq!(s.evicted, 110);
    assert_eq!(s.buffered_traces, 100);
    assert_eq!(rig.engine.buffered_traces(), 100);
    let kept = rig.sink.kept_ids();
    let expected: Vec<[u8; 16]> = (0..110).map(tid).collect();
    assert_eq!(
        kept, expected,
        "the 110 oldest, in arrival order, decided early (and kept: always_sample)"
    );
    rig.advance_ms(10_000);
    let s = rig.engine.stats();
    assert_eq!((s.traces_sampled, s.buffered_traces, s.evicted), (210, 0, 110));
}

#[test]
fn eviction_uses_what_arrived_so_far() {
    let rig = Rig::new(
        r#"
decision_wait: 10s
num_traces: 2
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
"#,
    );
    rig.ingest(TSpan::new(tid(1), 1).error());
    rig.ingest(TSpan::new(tid(2), 1));
    rig.ingest(TSpan::new(tid(3), 1));
    assert!(rig.sink.has(tid(1)), "evicted early but its error was seen: kept");
    rig.ingest(TSpan::new(tid(4), 1));
    assert!(!rig.sink.has(tid(2)));
    assert_eq!(rig.engine.stats().evicted, 2);
}

#[test]
fn concurrent_ingest_racing_decisions_loses_nothing() {
    let rig = Arc::new(Rig::new(
        r#"
decision_wait: 5ms
num_traces: 300
policies: [{name: all, type: always_sample}]
"#,
    ));
    const THREADS: u64 = 4;
    const TRACES: u64 = 2000;
    const SPANS_PER_THREAD: u64 = 3;
    let done = Arc::new(AtomicBool::new(false));
    let decider = {
        let (rig, done) = (rig.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                rig.advance_ms(1);
                if rig.clock.now_ms() % 7 == 0 {
                    rig.engine.decide_all();
                }
            }
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let rig = rig.clone();
            std::thread::spawn(move || {
                for n in 0..TRACES {
                    for k in 0..SPANS_PER_THREAD {
                        rig.ingest(TSpan::new(tid(n), t * 100 + k));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    decider.join().unwrap();
    rig.engine.decide_all();
    let expected = (THREADS * SPANS_PER_THREAD) as usize;
    for n in 0..TRACES {
        assert_eq!(rig.sink.spans_of(tid(n)), expected, "trace {n}");
    }
    let s = rig.engine.stats();
    assert_eq!(s.spans_received, THREADS * TRACES * SPANS_PER_THREAD);
    assert_eq!(
        s.spans_received,
        s.spans_sampled + s.spans_not_sampled + s.late_spans_sampled + s.late_spans_dropped + s.buffered_spans
    );
    assert_eq!(s.spans_not_sampled + s.late_spans_dropped + s.buffered_spans, 0);
}

#[test]
fn drop_vetoes_regardless_of_order() {
    let drop_policy = r#"
  - name: no-health
    type: drop
    drop:
      drop_sub_policy:
        - name: health-path
          type: string_attribute
          string_attribute: {key: url.path, values: [\/health, \/metrics], enabled_regex_matching: true}
"#;
    let always = "\n  - name: all\n    type: always_sample\n";
    for policies in [format!("{always}{drop_policy}"), format!("{drop_policy}{always}")] {
        for first_match in [false, true] {
            let rig = Rig::new(&format!(
                "decision_wait: 1s\nsample_on_first_match: {first_match}\npolicies:{policies}"
            ));
            rig.ingest(TSpan::new(tid(1), 1).s("url.path", "/api/health"));
            rig.ingest(TSpan::new(tid(2), 1).s("url.path", "/api/orders"));
            rig.advance_ms(1000);
            assert!(!rig.sink.has(tid(1)), "vetoed ({policies}, first match {first_match})");
            assert!(rig.sink.has(tid(2)));
            let s = rig.engine.stats();
            let drop_counts = s.policies.iter().find(|p| p.name == "no-health").unwrap();
            assert_eq!(drop_counts.dropped, 1);
        }
    }
}

#[test]
fn inverted_matches_follow_the_go_rules() {
    let rig = Rig::new(
        r#"
decision_wait: 1s
policies:
  - name: not-test-env
    type: string_attribute
    string_attribute: {key: env, values: [test], invert_match: true}
  - name: all
    type: always_sample
"#,
    );
    // env=test on one span: inverted not-sampled vetoes even always_sample.
    rig.ingest(TSpan::new(tid(1), 1).s("env", "prod"));
    rig.ingest(TSpan::new(tid(1), 2).s("env", "test"));
    rig.ingest(TSpan::new(tid(2), 1).s("env", "prod"));
    rig.ingest(TSpan::new(tid(3), 1));
    rig.advance_ms(1000);
    assert!(!rig.sink.has(tid(1)));
    assert!(rig.sink.has(tid(2)));
    assert!(rig.sink.has(tid(3)), "a missing key is not a match");

    // Inverted sampled keeps only when no policy said not sampled.
    let rig = Rig::new(
        r#"
decision_wait: 1s
policies:
  - name: not-test-env
    type: string_attribute
    string_attribute: {key: env, values: [test], invert_match: true}
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
"#,
    );
    rig.ingest(TSpan::new(tid(1), 1).s("env", "prod"));
    rig.ingest(TSpan::new(tid(2), 1).s("env", "prod").error());
    rig.advance_ms(1000);
    assert!(!rig.sink.has(tid(1)), "inverted sampled but errors said not sampled");
    assert!(rig.sink.has(tid(2)));

    // Alone, an inverted sampled keeps.
    let rig = Rig::new(
        r#"
decision_wait: 1s
policies:
  - name: big-orders-excluded
    type: numeric_attribute
    numeric_attribute: {key: order.items, min_value: 100, invert_match: true}
"#,
    );
    rig.ingest(TSpan::new(tid(1), 1).attr("order.items", Val::I(3)));
    rig.ingest(TSpan::new(tid(2), 1).attr("order.items", Val::I(300)));
    rig.advance_ms(1000);
    assert!(rig.sink.has(tid(1)));
    assert!(!rig.sink.has(tid(2)));

    // Inside `and`, an inverted match is a plain yes or no.
    let rig = Rig::new(
        r#"
decision_wait: 1s
policies:
  - name: prod-errors
    type: and
    and:
      and_sub_policy:
        - {name: not-test, type: string_attribute, string_attribute: {key: env, values: [test], invert_match: true}}
        - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
"#,
    );
    rig.ingest(TSpan::new(tid(1), 1).s("env", "prod").error());
    rig.ingest(TSpan::new(tid(2), 1).s("env", "test").error());
    rig.advance_ms(1000);
    assert!(rig.sink.has(tid(1)));
    assert!(!rig.sink.has(tid(2)));
}

#[test]
fn latency_spans_the_whole_trace() {
    let rig = Rig::new(
        r#"
decision_wait: 5s
policies: [{name: slow, type: latency, latency: {threshold_ms: 1000}}]
"#,
    );
    // Every span takes 10 ms, but the trace runs from 0 to 1200 ms.
    let long = tid(1);
    rig.ingest(TSpan::new(long, 1).at(10_000, 10_010));
    rig.ingest(TSpan::new(long, 2).at(10_600, 10_610));
    rig.ingest(TSpan::new(long, 3).at(11_190, 11_200));
    // Same spans, tighter: 900 ms.
    let short = tid(2);
    rig.ingest(TSpan::new(short, 1).at(10_000, 10_010));
    rig.ingest(TSpan::new(short, 2).at(10_890, 10_900));
    // Exactly the threshold counts.
    let edge = tid(3);
    rig.ingest(TSpan::new(edge, 1).at(10_000, 11_000));
    rig.advance_ms(5000);
    assert!(rig.sink.has(long));
    assert!(!rig.sink.has(short));
    assert!(rig.sink.has(edge));
}

#[test]
fn latency_upper_threshold() {
    let rig = Rig::new(
        r#"
decision_wait: 5s
policies: [{name: mid, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 500}}]
"#,
    );
    let cases = [
        (1, 300, true),
        (2, 600, false),
        (3, 100, false),
        (4, 500, true),
        (5, 50, false),
    ];
    for (n, ms, _) in cases {
        // Two spans whose union is `ms` long: the second starts inside the window.
        rig.ingest(TSpan::new(tid(n), 1).at(0, 10));
        rig.ingest(TSpan::new(tid(n), 2).at(ms / 2, ms));
    }
    rig.advance_ms(5000);
    for (n, ms, kept) in cases {
        assert_eq!(rig.sink.has(tid(n)), kept, "{ms} ms");
    }
}

#[test]
fn probabilistic_accuracy_with_a_fixed_salt() {
    for pct in [1.0, 10.0, 33.3, 50.0] {
        let rig = Rig::new(&format!(
            "decision_wait: 1s\npolicies: [{{name: p, type: probabilistic, probabilistic: {{sampling_percentage: {pct}, hash_salt: fixed-salt}}}}]"
        ));
        const N: u64 = 100_000;
        for n in 0..N {
            rig.ingest(TSpan::new(tid(n), 1));
            if n % 10_000 == 9_999 {
                rig.engine.decide_all();
            }
        }
        rig.engine.decide_all();
        let kept = rig.sink.calls() as f64 / N as f64 * 100.0;
        assert!((kept - pct).abs() <= 0.5, "{pct}%: kept {kept}%");
    }
    // The same salt decides the same ids, whatever else was configured.
    let a = Rig::new(
        "decision_wait: 1s\npolicies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 20, hash_salt: s1}}]",
    );
    let b = Rig::new(
        "decision_wait: 9s\nnum_traces: 5\npolicies: [{name: q, type: probabilistic, probabilistic: {sampling_percentage: 20, hash_salt: s1}}]",
    );
    for n in 0..2000 {
        a.ingest(TSpan::new(tid(n), 1));
        b.ingest(TSpan::new(tid(n), 1));
    }
    a.engine.decide_all();
    b.engine.decide_all();
    let (mut ka, mut kb) = (a.sink.kept_ids(), b.sink.kept_ids());
    ka.sort();
    kb.sort();
    assert_eq!(ka, kb);
    // Hash and threshold as the Go processor: kept when FNV-1a(salt ++ id) <= pct/100 * 2^64.
    let expected: Vec<[u8; 16]> = {
        let mut v: Vec<[u8; 16]> = (0..2000)
            .map(tid)
            .filter(|id| (otel_collector::hash_trace_id("s1", id) as f64) <= 0.2 * 18_446_744_073_709_551_615.0)
            .collect();
        v.sort();
        v
    };
    assert_eq!(ka, expected);
}

#[test]
fn rate_limiting_per_second_with_a_fake_clock() {
    let rig = Rig::new(
        r#"
decision_wait: 1s
policies: [{name: rl, type: rate_limiting, rate_limiting: {spans_per_second: 10}}]
"#,
    );
    // Five 3-span traces decided in the same second: 3 fit (9 spans), 2 do not.
    for n in 0..5 {
        for k in 0..3 {
            rig.ingest(TSpan::new(tid(n), k));
        }
    }
    rig.advance_ms(1000);
    assert_eq!(rig.sink.calls(), 3);
    // The next second has a fresh budget.
    for n in 5..7 {
        for k in 0..3 {
            rig.ingest(TSpan::new(tid(n), k));
        }
    }
    rig.advance_ms(1000);
    assert_eq!(rig.sink.calls(), 5);
    let rl = &rig.engine.stats().policies[0];
    assert_eq!((rl.sampled, rl.not_sampled), (5, 2));
}

#[test]
fn bytes_limiting_token_bucket() {
    let rig = Rig::new(
        r#"
decision_wait: 1s
policies: [{name: bl, type: bytes_limiting, bytes_limiting: {bytes_per_second: 1000, burst_capacity: 1500}}]
"#,
    );
    // Burst: 1500 bytes available at first.
    for n in 0..4 {
        rig.ingest(TSpan::new(tid(n), 1).sized(500));
    }
    rig.advance_ms(1000);
    assert_eq!(rig.sink.calls(), 3);
    // One second refills 1000 bytes.
    for n in 4..8 {
        rig.ingest(TSpan::new(tid(n), 1).sized(500));
    }
    rig.advance_ms(1000);
    assert_eq!(rig.sink.calls(), 5);
}

#[test]
fn composite_respects_order_falls_through_and_shares_the_rest() {
    let yaml = |order: &str| {
        format!(
            r#"
decision_wait: 1s
policies:
  - name: budgeted
    type: composite
    composite:
      max_total_spans_per_second: 100
      policy_order: [{order}]
      composite_sub_policy:
        - name: gold
          type: string_attribute
          string_attribute: {{key: tier, values: [gold]}}
        - name: any
          type: always_sample
      rate_allocation:
        - {{policy: gold, percent: 60}}
"#
        )
    };
    let rig = Rig::new(&yaml("gold, any"));
    // Ten 10-span gold traces: six fit gold's 60, four fall through to `any`
    // (not in rate_allocation: it shares the remaining 40).
    for n in 0..10 {
        for k in 0..10 {
            rig.ingest(TSpan::new(tid(n), k).s("tier", "gold"));
        }
    }
    // Then plain traces: the composite's 100 spans are spent this second.
    for n in 10..15 {
        for k in 0..10 {
            rig.ingest(TSpan::new(tid(n), k));
        }
    }
    rig.advance_ms(1000);
    assert_eq!(rig.sink.calls(), 10);
    assert!((0..10).all(|n| rig.sink.has(tid(n))));
    // Next second: plain traces get the shared 40.
    for n in 20..30 {
        for k in 0..10 {
            rig.ingest(TSpan::new(tid(n), k));
        }
    }
    rig.advance_ms(1000);
    assert_eq!((20..30).filter(|n| rig.sink.has(tid(*n))).count(), 4);

    // Order matters: with `any` first, plain traffic takes the shared 40 and
    // gold traces first spend `any`'s share, then their own.
    let rig = Rig::new(&yaml("any, gold"));
    for n in 0..10 {
        for k in 0..10 {
            rig.ingest(TSpan::new(tid(n), k));
        }
    }
    for n in 10..20 {
        for k in 0..10 {
            rig.ingest(TSpan::new(tid(n), k).s("tier", "gold"));
        }
    }
    rig.advance_ms(1000);
    assert_eq!((0..10).filter(|n| rig.sink.has(tid(*n))).count(), 4);
    assert_eq!((10..20).filter(|n| rig.sink.has(tid(*n))).count(), 6);
}

#[test]
fn span_count_trace_state_boolean_and_not() {
    let rig = Rig::new(
        r#"
decision_wait: 1s
policies:
  - {name: chatty, type: span_count, span_count: {min_spans: 3, max_spans: 4}}
  - {name: vendor, type: trace_state, trace_state: {key: acme, values: [debug]}}
  - {name: forced, type: boolean_attribute, boolean_attribute: {key: app.force_sample, value: true}}
  - name: not-fast
    type: not
    not:
      not_sub_policy: {name: fast, type: latency, latency: {threshold_ms: 0, upper_threshold_ms: 2000}}
"#,
    );
    for k in 0..3 {
        rig.ingest(TSpan::new(tid(1), k));
    }
    for k in 0..5 {
        rig.ingest(TSpan::new(tid(2), k));
    }
    rig.ingest(TSpan::new(tid(3), 1).state("acme", "debug"));
    rig.ingest(TSpan::new(tid(4), 1).state("acme", "info"));
    rig.ingest(TSpan::new(tid(5), 1).attr("app.force_sample", Val::B(true)));
    rig.ingest(TSpan::new(tid(6), 1).attr("app.force_sample", Val::B(false)));
    rig.ingest(TSpan::new(tid(7), 1).at(0, 2500));
    rig.advance_ms(1000);
    let kept: Vec<u64> = (1..=7).filter(|n| rig.sink.has(tid(*n))).collect();
    assert_eq!(kept, [1, 3, 5, 7]);
}

#[test]
fn root_arrival_decides_early() {
    let rig = Rig::new(
        r#"
decision_wait: 30s
decision_wait_after_root_received: 50ms
policies: [{name: all, type: always_sample}]
"#,
    );
    rig.ingest(TSpan::new(tid(1), 2));
    rig.ingest(TSpan::new(tid(2), 2));
    rig.advance_ms(10);
    rig.ingest(TSpan::new(tid(1), 1).root());
    rig.advance_ms(49);
    assert_eq!(rig.sink.calls(), 0);
    rig.advance_ms(1);
    assert_eq!(rig.sink.kept_ids(), [tid(1)]);
    assert_eq!(
        rig.engine.buffered_traces(),
        1,
        "the trace without a root waits the full decision_wait"
    );
    let s = rig.engine.stats();
    assert_eq!(
        s.decision_delay_buckets[..6].iter().sum::<u64>(),
        1,
        "decided within 100 ms of its first span"
    );
}

#[test]
fn oversized_traces_are_dropped_and_counted() {
    let rig = Rig::new(
        r#"
decision_wait: 1s
maximum_trace_size_bytes: 1000
policies: [{name: all, type: always_sample}]
"#,
    );
    for k in 0..11 {
        rig.ingest(TSpan::new(tid(1), k).sized(100));
    }
    rig.ingest(TSpan::new(tid(2), 1).sized(5000));
    rig.ingest(TSpan::new(tid(3), 1).sized(100));
    rig.advance_ms(1000);
    assert_eq!(rig.sink.kept_ids(), [tid(3)]);
    let s = rig.engine.stats();
    assert_eq!(s.too_large, 2);
    assert_eq!(s.late_spans_dropped, 0);
    assert_eq!(s.spans_not_sampled, 12);
    let mut not_kept = rig.sink.not_kept.lock().unwrap().clone();
    not_kept.sort();
    assert_eq!(not_kept, [(tid(1), 11), (tid(2), 1)], "observers see what was not kept");
}

#[test]
fn traces_not_kept_reach_the_sink_whole_and_once() {
    let rig = Rig::new(ERRORS_ONLY);
    rig.ingest(TSpan::new(tid(1), 1).root());
    rig.ingest(TSpan::new(tid(1), 2).error());
    for k in 1..=3 {
        rig.ingest(TSpan::new(tid(2), k));
    }
    rig.advance_ms(1000);
    assert_eq!(rig.sink.kept_ids(), [tid(1)]);
    assert_eq!(*rig.sink.not_kept.lock().unwrap(), [(tid(2), 3)]);
    // A late span of the dropped trace is dropped by the cache, not reported again.
    rig.ingest(TSpan::new(tid(2), 4));
    rig.advance_ms(1000);
    assert_eq!(rig.sink.not_kept.lock().unwrap().len(), 1);
    assert_eq!(rig.engine.stats().late_spans_dropped, 1);
}

#[test]
fn shutdown_decides_or_drops_pending() {
    let rig = Rig::new("decision_wait: 30s\npolicies: [{name: all, type: always_sample}]");
    rig.ingest(TSpan::new(tid(1), 1));
    rig.engine.shutdown();
    assert!(rig.sink.has(tid(1)));
    rig.ingest(TSpan::new(tid(2), 1));
    assert_eq!(rig.engine.stats().spans_after_shutdown, 1);

    let rig = Rig::new(
        "decision_wait: 30s\ndrop_pending_traces_on_shutdown: true\npolicies: [{name: all, type: always_sample}]",
    );
    rig.ingest(TSpan::new(tid(1), 1));
    rig.engine.shutdown();
    assert_eq!(rig.sink.calls(), 0);
    assert_eq!(rig.engine.stats().dropped_on_shutdown, 1);
}

#[test]
fn the_decision_thread_decides_within_milliseconds() {
    let config =
        TailSamplingConfig::from_yaml("decision_wait: 100ms\npolicies: [{name: all, type: always_sample}]").unwrap();
    let sink = Arc::new(Collect::default());
    let s: Arc<dyn TraceSink<TSpan>> = sink.clone();
    let engine = TailSamplerBuilder::new(config).build(s);
    let none = engine.resource_match(&TResource::default());
    let started = std::time::Instant::now();
    engine.ingest(&none, TSpan::new(tid(1), 1));
    while sink.calls() == 0 && started.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let waited = started.elapsed();
    assert_eq!(sink.calls(), 1);
    assert!(
        waited >= std::time::Duration::from_millis(100),
        "not before decision_wait: {waited:?}"
    );
    // Not on a one-second tick (generous bound for a loaded machine).
    assert!(
        waited < std::time::Duration::from_millis(900),
        "decided after {waited:?}"
    );
    // A later trace wakes the sleeping thread with its own deadline.
    engine.ingest(&none, TSpan::new(tid(2), 1));
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(sink.calls(), 2);
    engine.shutdown();
}

#[test]
fn batched_ingest_decides_as_span_by_span_ingest_does() {
    const POLICY: &str = r#"
decision_wait: 1s
decision_wait_after_root_received: 200ms
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
"#;
    // Requests as they arrive: runs of spans of one trace, a trace split
    // across two requests, a late span of a decided trace.
    let requests = |batch: &dyn Fn(Vec<TSpan>)| {
        batch(vec![
            TSpan::new(tid(1), 1).root(),
            TSpan::new(tid(1), 2),
            TSpan::new(tid(2), 1),
            TSpan::new(tid(2), 2).error(),
            TSpan::new(tid(3), 1),
        ]);
        batch(vec![TSpan::new(tid(3), 2).error(), TSpan::new(tid(3), 3).root()]);
    };
    let one_by_one = Rig::new(POLICY);
    let batched = Rig::new(POLICY);
    let no_resource = batched.engine.resource_match(&TResource(Vec::new()));
    requests(&|spans| {
        for s in spans {
            one_by_one.ingest(s);
        }
    });
    requests(&|spans| {
        let prepared = spans
            .into_iter()
            .map(|s| (batched.engine.prepare(&no_resource, &s), s))
            .collect();
        batched.engine.ingest_prepared_batch(prepared);
    });
    for rig in [&one_by_one, &batched] {
        rig.advance_ms(250);
        // Trace 1 and 3 had their root: decided after 200 ms; trace 3 kept.
        assert!(rig.sink.has(tid(3)) && !rig.sink.has(tid(1)));
        rig.advance_ms(1000);
        assert_eq!(rig.sink.spans_of(tid(2)), 2);
        assert_eq!(rig.sink.spans_of(tid(3)), 3);
        rig.ingest(TSpan::new(tid(3), 4));
    }
    let (a, b) = (one_by_one.engine.stats(), batched.engine.stats());
    assert_eq!(
        (
            a.spans_received,
            a.traces_received,
            a.traces_sampled,
            a.spans_sampled,
            a.late_spans_sampled
        ),
        (
            b.spans_received,
            b.traces_received,
            b.traces_sampled,
            b.spans_sampled,
            b.late_spans_sampled
        )
    );
    assert_eq!((b.spans_received, b.traces_received, b.traces_sampled), (8, 3, 2));
}

#[test]
fn concurrent_batches_flushes_and_evictions_account_for_every_span() {
    // A small buffer (evictions), traces split across requests (spans of
    // buffered traces), repeated ids after decisions (late spans), and
    // flushes racing the ingest.
    let rig = Rig::new(
        r#"
decision_wait: 1s
num_traces: 64
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
"#,
    );
    let stop = AtomicBool::new(false);
    let (threads, requests, traces, spans) = (2u64, 4000u64, 10u64, 3u64);
    std::thread::scope(|s| {
        for t in 0..threads {
            let rig = &rig;
            s.spawn(move || {
                for r in 0..requests {
                    let batch: Vec<TSpan> = (0..traces)
                        .flat_map(|k| {
                            // Ids repeat across requests and threads: some
                            // traces are still buffered, some decided.
                            let id = tid((t * 7 + r * traces + k) % 500);
                            (0..spans).map(move |n| {
                                let span = TSpan::new(id, r * 100 + n);
                                if n == 0 && k % 3 == 0 { span.error() } else { span }
                            })
                        })
                        .collect();
                    let prepared = batch
                        .into_iter()
                        .map(|span| (rig.engine.prepare(&rig.none, &span), span))
                        .collect();
                    rig.engine.ingest_prepared_batch(prepared);
                }
            });
        }
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                rig.engine.decide_all();
                let st = rig.engine.stats();
                // Never wrapped below zero by a decision racing an ingest.
                assert!(st.buffered_spans < 1 << 32 && st.buffered_traces < 1 << 32, "{st:?}");
                std::thread::yield_now();
            }
        });
        // The flusher stops once the ingesting threads are done.
        while rig.engine.stats().spans_received < threads * requests * traces * spans {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
    });
    rig.engine.decide_all();
    let st = rig.engine.stats();
    assert_eq!(st.spans_received, threads * requests * traces * spans);
    assert_eq!((st.buffered_spans, st.buffered_traces), (0, 0), "{st:?}");
    assert_eq!(
        st.spans_received,
        st.spans_sampled
            + st.spans_not_sampled
            + st.late_spans_sampled
            + st.late_spans_dropped
            + st.spans_after_shutdown,
        "{st:?}"
    );
    assert!(
        st.evicted > 0 || st.late_spans_sampled + st.late_spans_dropped > 0,
        "{st:?}"
    );
    // What was kept reached the sink.
    assert_eq!(rig.sink.total_spans() as u64, st.spans_sampled + st.late_spans_sampled);
}
