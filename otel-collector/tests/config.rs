#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! Configuration: what parses, and the errors for what does not.

use otel_collector::{DEFAULT_DECISION_CACHE_SIZE, TailSamplingConfig};
use proptest::prelude::*;
use std::time::Duration;

fn err(yaml: &str) -> (String, String) {
    let e = TailSamplingConfig::from_yaml(yaml).unwrap_err();
    (e.path().to_owned(), e.message().to_owned())
}

#[test]
fn defaults_and_top_level_keys() {
    let c = TailSamplingConfig::from_yaml("policies: [{name: a, type: always_sample}]").unwrap();
    assert_eq!(c.decision_wait, Duration::from_secs(30));
    assert_eq!(c.num_traces, 50_000);
    assert_eq!(
        (c.sampled_cache_size, c.non_sampled_cache_size),
        (DEFAULT_DECISION_CACHE_SIZE, DEFAULT_DECISION_CACHE_SIZE)
    );
    assert!(c.decision_wait_after_root_received.is_none());

    let c = TailSamplingConfig::from_yaml(
        r#"
tail_sampling:
  decision_wait: 1m30s
  decision_wait_after_root_received: 250ms
  num_traces: 100
  expected_new_traces_per_sec: 10
  decision_cache: {sampled_cache_size: 100_000, non_sampled_cache_size: 0}
  sample_on_first_match: true
  drop_pending_traces_on_shutdown: true
  maximum_trace_size_bytes: 1048576
  policies: [{name: a, type: always_sample}]
"#,
    )
    .unwrap();
    assert_eq!(c.decision_wait, Duration::from_secs(90));
    assert_eq!(c.decision_wait_after_root_received, Some(Duration::from_millis(250)));
    assert_eq!(c.num_traces, 100);
    assert_eq!((c.sampled_cache_size, c.non_sampled_cache_size), (100_000, 0));
    assert!(c.sample_on_first_match && c.drop_pending_traces_on_shutdown);
    assert_eq!(c.maximum_trace_size_bytes, Some(1 << 20));
}

#[test]
fn the_go_readme_example_parses() {
    let yaml = r#"
decision_wait: 10s
num_traces: 100
expected_new_traces_per_sec: 10
decision_cache:
  sampled_cache_size: 100_000
  non_sampled_cache_size: 100_000
policies:
  [
      {name: test-policy-1, type: always_sample},
      {name: test-policy-2, type: latency, latency: {threshold_ms: 5000, upper_threshold_ms: 10000}},
      {name: test-policy-3, type: numeric_attribute, numeric_attribute: {key: key1, min_value: 50, max_value: 100}},
      {name: test-policy-4, type: probabilistic, probabilistic: {sampling_percentage: 10}},
      {name: test-policy-5, type: status_code, status_code: {status_codes: [ERROR, UNSET]}},
      {name: test-policy-6, type: string_attribute, string_attribute: {key: key2, values: [value1, value2]}},
      {name: test-policy-7, type: string_attribute, string_attribute: {key: key2, values: [value1, val*], enabled_regex_matching: true, cache_max_size: 10}},
      {name: test-policy-8, type: rate_limiting, rate_limiting: {spans_per_second: 35}},
      {name: test-policy-9, type: bytes_limiting, bytes_limiting: {bytes_per_second: 1024000, burst_capacity: 2048000}},
      {name: test-policy-10, type: span_count, span_count: {min_spans: 2, max_spans: 20}},
      {name: test-policy-11, type: trace_state, trace_state: { key: key3, values: [value1, value2] }},
      {name: test-policy-12, type: boolean_attribute, boolean_attribute: {key: key4, value: true}},
      {
        name: and-policy-1, type: and,
        and: {and_sub_policy: [
          {name: test-and-policy-1, type: numeric_attribute, numeric_attribute: { key: key1, min_value: 50, max_value: 100 }},
          {name: test-and-policy-2, type: string_attribute, string_attribute: { key: key2, values: [ value1, value2 ] }},
        ]}
      },
      {
        name: drop-policy-1, type: drop,
        drop: {drop_sub_policy: [
          {name: test-drop-policy-1, type: string_attribute, string_attribute: {key: url.path, values: [\/health, \/metrics], enabled_regex_matching: true}}
        ]}
      },
      {
        name: composite-policy-1, type: composite,
        composite: {
          max_total_spans_per_second: 1000,
          policy_order: [test-composite-policy-1, test-composite-policy-2, test-composite-policy-3],
          composite_sub_policy: [
            {name: test-composite-policy-1, type: numeric_attribute, numeric_attribute: {key: key1, min_value: 50}},
            {name: test-composite-policy-2, type: string_attribute, string_attribute: {key: key2, values: [value1, value2]}},
            {name: test-composite-policy-3, type: always_sample}
          ],
          rate_allocation: [{policy: test-composite-policy-1, percent: 50}, {policy: test-composite-policy-2, percent: 25}]
        }
      },
  ]
"#;
    let c = TailSamplingConfig::from_yaml(yaml).unwrap();
    assert_eq!(c.policy_names().len(), 15);
    assert_eq!(c.policy_names()[14], "composite-policy-1");
}

#[test]
fn errors_name_the_place_and_the_fix() {
    let cases: &[(&str, &str, &str)] = &[
        ("policies: []", "tail_sampling.policies", "at least one policy"),
        (
            "decision_wait: 10\npolicies: [{name: a, type: always_sample}]",
            "tail_sampling.decision_wait",
            "needs a unit",
        ),
        (
            "decison_wait: 10s\npolicies: [{name: a, type: always_sample}]",
            "tail_sampling",
            "unknown key \"decison_wait\"",
        ),
        (
            "num_traces: 0\npolicies: [{name: a, type: always_sample}]",
            "tail_sampling.num_traces",
            "above 0",
        ),
        (
            "policies: [{type: always_sample}]",
            "tail_sampling.policies[0]",
            "needs a name",
        ),
        ("policies: [{name: a}]", "tail_sampling.policies[0]", "needs a type"),
        (
            "policies: [{name: a, type: sometimes}]",
            "tail_sampling.policies[0].type",
            "unknown policy type \"sometimes\"",
        ),
        (
            "policies: [{name: a, type: ottl_condition}]",
            "tail_sampling.policies[0].type",
            "not supported",
        ),
        (
            "policies: [{name: a, type: latency}]",
            "tail_sampling.policies[0].latency.threshold_ms",
            "needs threshold_ms",
        ),
        (
            "policies: [{name: a, type: latency, latency: {threshold_ms: 500, upper_threshold_ms: 100}}]",
            "tail_sampling.policies[0].latency.upper_threshold_ms",
            "above threshold_ms",
        ),
        (
            "policies: [{name: a, type: status_code, status_code: {status_codes: [FAILED]}}]",
            "tail_sampling.policies[0].status_code.status_codes[0]",
            "unknown status code",
        ),
        (
            "policies: [{name: a, type: probabilistic, probabilistic: {sampling_percentage: 150}}]",
            "tail_sampling.policies[0].probabilistic.sampling_percentage",
            "between 0 and 100",
        ),
        (
            "policies: [{name: a, type: probabilistic, probabilistic: {sampling_percentage: ten}}]",
            "tail_sampling.policies[0].probabilistic.sampling_percentage",
            "must be a number",
        ),
        (
            "policies: [{name: a, type: string_attribute, string_attribute: {key: k, values: ['(unclosed'], enabled_regex_matching: true}}]",
            "tail_sampling.policies[0].string_attribute.values",
            "bad regex",
        ),
        (
            "policies: [{name: a, type: boolean_attribute, string_attribute: {key: k, value: true}}]",
            "tail_sampling.policies[0]",
            "unknown key \"string_attribute\"",
        ),
        (
            "policies: [{name: a, type: always_sample}, {name: a, type: always_sample}]",
            "tail_sampling.policies[1]",
            "duplicate policy name",
        ),
        (
            "policies: [{name: a, type: and, and: {and_sub_policy: []}}]",
            "tail_sampling.policies[0].and.and_sub_policy",
            "at least one",
        ),
        (
            "policies: [{name: c, type: composite, composite: {max_total_spans_per_second: 10, policy_order: [x], composite_sub_policy: [{name: y, type: always_sample}]}}]",
            "tail_sampling.policies[0].composite.policy_order[0]",
            "\"x\" is not a composite_sub_policy",
        ),
        (
            "policies: [{name: c, type: composite, composite: {max_total_spans_per_second: 10, policy_order: [y], composite_sub_policy: [{name: y, type: always_sample}, {name: z, type: always_sample}]}}]",
            "tail_sampling.policies[0].composite.policy_order",
            "missing from policy_order",
        ),
        (
            "policies: [{name: c, type: composite, composite: {max_total_spans_per_second: 10, composite_sub_policy: [{name: y, type: always_sample}], rate_allocation: [{policy: y, percent: 70}, {policy: y, percent: 40}]}}]",
            "tail_sampling.policies[0].composite.rate_allocation[1]",
            "allocated twice",
        ),
        ("policies: {name: a}", "tail_sampling.policies", "must be a list"),
        ("[1, 2", "(yaml)", ""),
    ];
    for (yaml, path, message) in cases {
        let (p, m) = err(yaml);
        assert_eq!(&p, path, "{yaml}: {m}");
        assert!(m.contains(message), "{yaml}: {m:?} lacks {message:?}");
    }
}

proptest! {
    #[test]
    fn arbitrary_yaml_never_panics(text in "[ -~\n]{0,200}") {
        let _ = TailSamplingConfig::from_yaml(&text);
    }

    #[test]
    fn arbitrary_policy_values_never_panic(
        ty in prop::sample::select(vec!["latency", "probabilistic", "string_attribute", "numeric_attribute",
            "span_count", "rate_limiting", "bytes_limiting", "composite", "and", "not", "drop", "status_code"]),
        key in prop::sample::select(vec!["threshold_ms", "sampling_percentage", "values", "min_value", "max_spans",
            "spans_per_second", "bytes_per_second", "policy_order", "and_sub_policy", "not_sub_policy", "status_codes", "key"]),
        value in prop::sample::select(vec!["-1", "1e400", "[]", "{}", "''", "[[]]", "x", "18446744073709551616", "~", "[{name: q}]"]),
    ) {
        let yaml = format!("policies: [{{name: p, type: {ty}, {ty}: {{{key}: {value}}}}}]");
        let _ = TailSamplingConfig::from_yaml(&yaml);
    }
}
