#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! The `tail_sampling` blocks users deploy (as the seed documents write
//! them) parse and behave as written: every error trace kept whole, every
//! trace at or over the latency threshold kept whole, about p% of the rest.

mod support;

use otel_collector::StatusCode;
use support::*;

/// Seed documents 000 and 002 (Kubernetes on K3s; an SRE checklist).
const SEED_ERRORS_1S_10PCT: &str = r#"
tail_sampling:
  decision_wait: 10s
  policies:
    - name: errors-policy
      type: status_code
      status_code: {status_codes: [ERROR]}
    - name: slow-traces
      type: latency
      latency: {threshold_ms: 1000}
    - name: probabilistic
      type: probabilistic
      probabilistic: {sampling_percentage: 10}
"#;

/// Seed document 001 (gateway collector with an agent DaemonSet).
const SEED_GATEWAY: &str = r#"
tail_sampling:
  decision_wait: 10s
  num_traces: 100000
  policies:
    - name: errors
      type: status_code
      status_code: { status_codes: [ERROR] }
    - name: slow-requests
      type: latency
      latency: { threshold_ms: 2000 }
    - name: standard
      type: probabilistic
      probabilistic: { sampling_percentage: 10 }
"#;

/// Seed document 003 (log-trace correlation), comments included.
const SEED_CORRELATION: &str = r#"
tail_sampling:
  decision_wait: 10s # wait for all spans before deciding
  policies:
    - name: errors-policy
      type: status_code
      status_code: {status_codes: [ERROR]}
    - name: slow-traces
      type: latency
      latency: {threshold_ms: 500}
    - name: probabilistic-sample
      type: probabilistic
      probabilistic: {sampling_percentage: 5} # 5% of remaining traces
"#;

#[test]
fn seed_blocks_behave_as_written() {
    for (yaml, threshold_ms, pct, names) in [
        (
            SEED_ERRORS_1S_10PCT,
            1000,
            10.0,
            ["errors-policy", "slow-traces", "probabilistic"],
        ),
        (SEED_GATEWAY, 2000, 10.0, ["errors", "slow-requests", "standard"]),
        (
            SEED_CORRELATION,
            500,
            5.0,
            ["errors-policy", "slow-traces", "probabilistic-sample"],
        ),
    ] {
        let rig = Rig::new(yaml);
        assert_eq!(rig.engine.config().decision_wait, std::time::Duration::from_secs(10));
        const N: u64 = 20_000;
        let mut routine = 0u64;
        for n in 0..N {
            let id = tid(n);
            // A root and two children; every 50th trace has an error in a
            // child, every 40th a root over the threshold, every 30th a root
            // just under it.
            let dur = match n {
                _ if n % 40 == 0 => threshold_ms + n % 300,
                _ if n % 30 == 0 => threshold_ms - 1,
                _ => 20 + n % 200,
            };
            rig.ingest(TSpan::new(id, 1).root().at(0, dur));
            let child = TSpan::new(id, 2).at(1, 5);
            rig.ingest(if n % 50 == 0 { child.error() } else { child.ok() });
            rig.ingest(TSpan::new(id, 3).at(2, 4));
            if n % 40 != 0 && n % 50 != 0 {
                routine += 1;
            }
            if n % 1000 == 999 {
                rig.advance_ms(10);
            }
        }
        assert_eq!(rig.sink.calls(), 0, "decision_wait is 10 s");
        rig.advance_ms(10_000);
        assert_eq!(rig.engine.buffered_traces(), 0);
        let mut routine_kept = 0u64;
        for n in 0..N {
            let id = tid(n);
            let kept = rig.sink.spans_of(id);
            assert!(kept == 0 || kept == 3, "kept whole or not at all");
            if n % 50 == 0 {
                assert_eq!(kept, 3, "error trace {n}");
                assert_eq!(rig.sink.by(id), [names[0]]);
            } else if n % 40 == 0 {
                assert_eq!(kept, 3, "slow trace {n}");
                assert_eq!(rig.sink.by(id), [names[1]]);
            } else if kept == 3 {
                routine_kept += 1;
                assert_eq!(rig.sink.by(id), [names[2]]);
            }
        }
        // Binomial bounds: 5 standard deviations.
        let p = pct / 100.0;
        let mean = routine as f64 * p;
        let sd = (routine as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (routine_kept as f64 - mean).abs() < 5.0 * sd,
            "{pct}%: kept {routine_kept} of {routine}"
        );
        let s = rig.engine.stats();
        assert_eq!(s.spans_received, 3 * N);
        assert_eq!(s.spans_sampled + s.spans_not_sampled, 3 * N);
        assert_eq!(s.traces_sampled + s.traces_not_sampled, N);
        assert_eq!(s.policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), names);
        assert_eq!(s.policies[0].sampled, N.div_ceil(50));
    }
}

#[test]
fn the_status_filter_reads_every_span() {
    let rig = Rig::new(SEED_CORRELATION);
    let id = tid(7);
    rig.ingest(TSpan::new(id, 1).root().ok());
    for k in 2..50 {
        rig.ingest(TSpan::new(id, k));
    }
    let mut last = TSpan::new(id, 50);
    last.status = StatusCode::Error;
    rig.ingest(last);
    rig.advance_ms(10_000);
    assert_eq!(rig.sink.spans_of(id), 50);
}
