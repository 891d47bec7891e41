//! Rule-based sampling: the first matching rule picks the sampler.

use crate::{AlwaysOff, AlwaysOn, ParentBased, ProbabilitySampler, RateLimitedSampler};
use opentelemetry::trace::{Link, SpanKind, TraceId};
use opentelemetry::{Context, Key, KeyValue};
use opentelemetry_sdk::trace::{SamplingResult, ShouldSample};
use regex::Regex;
use serde::Deserialize;
use std::fmt;

/// How a span name or attribute value is matched.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// Equal to the text.
    Exact(String),
    /// Starts with the text.
    Prefix(String),
    /// A glob: `*` matches any run of characters, `?` any one character.
    Glob(String),
    /// A regular expression (unanchored unless it says `^...$`).
    Regex(Regex),
    /// Any value (attributes only: the attribute is present).
    Any,
}

impl Matcher {
    /// A regex matcher.
    ///
    /// # Errors
    ///
    /// When `pattern` is not a valid regular expression.
    pub fn regex(pattern: &str) -> Result<Matcher, RulesError> {
        Regex::new(pattern)
            .map(Matcher::Regex)
            .map_err(|e| RulesError(format!("invalid regex {pattern:?}: {e}")))
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Matcher::Exact(s) => text == s,
            Matcher::Prefix(s) => text.starts_with(s.as_str()),
            Matcher::Glob(g) => glob_match(g.as_bytes(), text.as_bytes()),
            Matcher::Regex(r) => r.is_match(text),
            Matcher::Any => true,
        }
    }
}

/// Glob matching with `*` and `?`, linear backtracking on the last `*`.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// One rule: every condition given must hold; then `sampler` decides.
#[derive(Clone, Debug)]
pub struct Rule {
    description: String,
    name: Option<Matcher>,
    kind: Option<SpanKind>,
    attributes: Vec<(Key, Matcher)>,
    sampler: Box<dyn ShouldSample>,
}

impl Rule {
    /// A rule that applies `sampler` to every span, until conditions are added.
    pub fn new(sampler: impl ShouldSample + 'static) -> Rule {
        Rule {
            description: String::new(),
            name: None,
            kind: None,
            attributes: Vec::new(),
            sampler: Box::new(sampler),
        }
    }

    /// A rule with an already boxed sampler.
    pub fn from_boxed(sampler: Box<dyn ShouldSample>) -> Rule {
        Rule {
            description: String::new(),
            name: None,
            kind: None,
            attributes: Vec::new(),
            sampler,
        }
    }

    /// A description, for logs and `Debug`.
    pub fn described(mut self, description: impl Into<String>) -> Rule {
        self.description = description.into();
        self
    }

    /// The span name must match.
    pub fn name(mut self, matcher: Matcher) -> Rule {
        self.name = Some(matcher);
        self
    }

    /// The span kind must be `kind`.
    pub fn kind(mut self, kind: SpanKind) -> Rule {
        self.kind = Some(kind);
        self
    }

    /// A start attribute `key` must be present with a value that matches.
    /// Non-string values are compared in their text form (`200`, `true`).
    pub fn attribute(mut self, key: impl Into<Key>, matcher: Matcher) -> Rule {
        self.attributes.push((key.into(), matcher));
        self
    }

    fn matches(&self, name: &str, kind: &SpanKind, attributes: &[KeyValue]) -> bool {
        if let Some(k) = &self.kind
            && k != kind
        {
            return false;
        }
        if let Some(m) = &self.name
            && !m.matches(name)
        {
            return false;
        }
        self.attributes.iter().all(|(key, m)| {
            attributes
                .iter()
                .find(|kv| &kv.key == key)
                .is_some_and(|kv| m.matches(&kv.value.as_str()))
        })
    }
}

/// Ordered rules over span name, kind and start attributes; the first rule that
/// matches decides, else the fallback does.
///
/// ```
/// use otel_sampling::{AlwaysOff, AlwaysOn, Matcher, ParentBased, ProbabilitySampler, Rule, RuleBasedSampler};
/// use opentelemetry::trace::SpanKind;
///
/// let sampler = RuleBasedSampler::new(ProbabilitySampler::new(0.1).unwrap())
///     .rule(Rule::new(AlwaysOff).attribute("http.route", Matcher::Exact("/health".into())))
///     .rule(Rule::new(AlwaysOn).kind(SpanKind::Server).attribute("rpc.service", Matcher::Exact("Payments".into())));
/// let sampler = ParentBased::new(sampler);
/// # let _ = sampler;
/// ```
///
/// The same from YAML (or JSON, same shape):
///
/// ```
/// let yaml = r#"
/// rules:
///   - description: health checks
///     attributes:
///       - key: http.route
///         exact: /health
///     sampler: always_off
///   - span_name: { prefix: "payments." }
///     span_kind: server
///     sampler: { probability: 1.0 }
/// fallback: { probability: 0.1 }
/// "#;
/// let sampler = otel_sampling::RuleBasedSampler::from_yaml(yaml).unwrap();
/// assert_eq!(sampler.len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct RuleBasedSampler {
    rules: Vec<Rule>,
    fallback: Box<dyn ShouldSample>,
}

impl RuleBasedSampler {
    /// No rules yet; `fallback` decides for spans no rule matches.
    pub fn new(fallback: impl ShouldSample + 'static) -> Self {
        RuleBasedSampler {
            rules: Vec::new(),
            fallback: Box::new(fallback),
        }
    }

    /// Appends a rule (rules are tried in the order added).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (the fallback decides everything).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Loads rules from YAML.
    ///
    /// # Errors
    ///
    /// When the YAML does not describe rules, or a regex, probability or rate is invalid;
    /// the message names the rule and the field.
    #[cfg(feature = "yaml")]
    pub fn from_yaml(yaml: &str) -> Result<Self, RulesError> {
        // Through a JSON value, so YAML and JSON accept the same shapes
        // (`{ probability: 0.1 }` maps for the sampler variants).
        let value: serde_json::Value =
            serde_yaml_ng::from_str(yaml).map_err(|e| RulesError(format!("invalid sampling rules YAML: {e}")))?;
        let config: RulesConfig =
            serde_json::from_value(value).map_err(|e| RulesError(format!("invalid sampling rules: {e}")))?;
        config.build()
    }

    /// Loads rules from JSON.
    ///
    /// # Errors
    ///
    /// When the JSON does not describe rules, or a regex, probability or rate
    /// is invalid; the message names the rule and the field.
    pub fn from_json(json: &str) -> Result<Self, RulesError> {
        let config: RulesConfig =
            serde_json::from_str(json).map_err(|e| RulesError(format!("invalid sampling rules: {e}")))?;
        config.build()
    }
}

impl ShouldSample for RuleBasedSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let sampler = self
            .rules
            .iter()
            .find(|r| r.matches(name, span_kind, attributes))
            .map_or(self.fallback.as_ref(), |r| r.sampler.as_ref());
        sampler.should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// Invalid sampling rules or sampler configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError(String);

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RulesError {}

/// A sampler described in configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SamplerSpec {
    /// Keep everything.
    #[serde(alias = "keep")]
    AlwaysOn,
    /// Keep nothing.
    #[serde(alias = "drop")]
    AlwaysOff,
    /// Consistent probability.
    Probability(f64),
    /// opentelemetry_sdk `TraceIdRatioBased`-compatible probability.
    ProbabilityCompat(f64),
    /// At most this many traces per second.
    RateLimited(f64),
    /// Follow the parent; the inner sampler decides roots.
    ParentBased(Box<SamplerSpec>),
}

impl SamplerSpec {
    /// Builds the sampler.
    ///
    /// # Errors
    ///
    /// When a probability or rate is out of range.
    pub fn build(&self) -> Result<Box<dyn ShouldSample>, RulesError> {
        Ok(match self {
            SamplerSpec::AlwaysOn => Box::new(AlwaysOn),
            SamplerSpec::AlwaysOff => Box::new(AlwaysOff),
            SamplerSpec::Probability(p) => {
                Box::new(ProbabilitySampler::new(*p).map_err(|e| RulesError(e.to_string()))?)
            }
            SamplerSpec::ProbabilityCompat(p) => {
                Box::new(ProbabilitySampler::sdk_compatible(*p).map_err(|e| RulesError(e.to_string()))?)
            }
            SamplerSpec::RateLimited(r) => {
                Box::new(RateLimitedSampler::new(*r).map_err(|e| RulesError(e.to_string()))?)
            }
            SamplerSpec::ParentBased(inner) => Box::new(ParentBased::from_boxed(inner.build()?)),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesConfig {
    #[serde(default)]
    rules: Vec<RuleConfig>,
    fallback: SamplerSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    #[serde(default)]
    description: String,
    #[serde(default)]
    span_name: Option<MatchConfig>,
    #[serde(default)]
    span_kind: Option<KindConfig>,
    #[serde(default)]
    attributes: Vec<AttributeConfig>,
    sampler: SamplerSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum MatchConfig {
    Exact(String),
    Prefix(String),
    Glob(String),
    Regex(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindConfig {
    Server,
    Client,
    Producer,
    Consumer,
    Internal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributeConfig {
    key: String,
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    glob: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    exists: Option<bool>,
}

impl MatchConfig {
    fn build(self) -> Result<Matcher, RulesError> {
        Ok(match self {
            MatchConfig::Exact(s) => Matcher::Exact(s),
            MatchConfig::Prefix(s) => Matcher::Prefix(s),
            MatchConfig::Glob(s) => Matcher::Glob(s),
            MatchConfig::Regex(s) => Matcher::regex(&s)?,
        })
    }
}

impl RulesConfig {
    fn build(self) -> Result<RuleBasedSampler, RulesError> {
        let fallback = self
            .fallback
            .build()
            .map_err(|e| RulesError(format!("fallback: {e}")))?;
        let mut sampler = RuleBasedSampler {
            rules: Vec::new(),
            fallback,
        };
        for (i, rc) in self.rules.into_iter().enumerate() {
            let which = if rc.description.is_empty() {
                format!("rule {}", i + 1)
            } else {
                format!("rule {:?}", rc.description)
            };
            let ctx = |e: RulesError| RulesError(format!("{which}: {e}"));
            let mut rule = Rule::from_boxed(rc.sampler.build().map_err(ctx)?).described(rc.description.clone());
            if let Some(m) = rc.span_name {
                rule = rule.name(m.build().map_err(ctx)?);
            }
            if let Some(k) = rc.span_kind {
                rule = rule.kind(match k {
                    KindConfig::Server => SpanKind::Server,
                    KindConfig::Client => SpanKind::Client,
                    KindConfig::Producer => SpanKind::Producer,
                    KindConfig::Consumer => SpanKind::Consumer,
                    KindConfig::Internal => SpanKind::Internal,
                });
            }
            for a in rc.attributes {
                let given = [
                    a.exact.is_some(),
                    a.prefix.is_some(),
                    a.glob.is_some(),
                    a.regex.is_some(),
                    a.exists == Some(true),
                ];
                if given.iter().filter(|g| **g).count() != 1 {
                    return Err(ctx(RulesError(format!(
                        "attribute {:?} needs exactly one of exact, prefix, glob, regex, exists: true",
                        a.key
                    ))));
                }
                let m = if let Some(s) = a.exact {
                    Matcher::Exact(s)
                } else if let Some(s) = a.prefix {
                    Matcher::Prefix(s)
                } else if let Some(s) = a.glob {
                    Matcher::Glob(s)
                } else if let Some(s) = a.regex {
                    Matcher::regex(&s).map_err(ctx)?
                } else {
                    Matcher::Any
                };
                rule = rule.attribute(a.key, m);
            }
            sampler.rules.push(rule);
        }
        Ok(sampler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::SamplingDecision;
    use proptest::prelude::*;

    fn decide(s: &RuleBasedSampler, name: &str, kind: SpanKind, attrs: &[KeyValue]) -> SamplingDecision {
        s.should_sample(None, TraceId::from(1), name, &kind, attrs, &[])
            .decision
    }

    #[test]
    fn glob() {
        assert!(glob_match(b"GET /api/*", b"GET /api/products"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a?c", b"ac"));
        assert!(!glob_match(b"a*b", b"aXXc"));
        assert!(glob_match(b"*.health", b"svc.health"));
    }

    #[test]
    fn first_match_wins_and_fallback() {
        let s = RuleBasedSampler::new(AlwaysOff)
            .rule(Rule::new(AlwaysOff).attribute("http.route", Matcher::Exact("/health".into())))
            .rule(
                Rule::new(AlwaysOn)
                    .kind(SpanKind::Server)
                    .attribute("rpc.service", Matcher::Exact("Payments".into())),
            )
            .rule(Rule::new(AlwaysOn).name(Matcher::Prefix("GET ".into())));
        let health = [KeyValue::new("http.route", "/health")];
        assert_eq!(
            decide(&s, "GET /health", SpanKind::Server, &health),
            SamplingDecision::Drop,
            "rule 1 before rule 3"
        );
        let pay = [KeyValue::new("rpc.service", "Payments")];
        assert_eq!(
            decide(&s, "pay", SpanKind::Server, &pay),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(
            decide(&s, "pay", SpanKind::Client, &pay),
            SamplingDecision::Drop,
            "kind must match"
        );
        assert_eq!(
            decide(&s, "GET /x", SpanKind::Client, &[]),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(
            decide(&s, "POST /x", SpanKind::Client, &[]),
            SamplingDecision::Drop,
            "fallback"
        );
    }

    #[test]
    fn non_string_attributes_match_their_text() {
        let s = RuleBasedSampler::new(AlwaysOff)
            .rule(Rule::new(AlwaysOn).attribute("http.response.status_code", Matcher::Exact("500".into())));
        assert_eq!(
            decide(
                &s,
                "x",
                SpanKind::Server,
                &[KeyValue::new("http.response.status_code", 500)]
            ),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(
            decide(
                &s,
                "x",
                SpanKind::Server,
                &[KeyValue::new("http.response.status_code", 200)]
            ),
            SamplingDecision::Drop
        );
    }

    #[test]
    fn loads_yaml_and_json() {
        let yaml = r#"
rules:
  - description: drop health
    span_kind: server
    attributes:
      - key: http.route
        regex: "^/health(z)?$"
    sampler: drop
  - span_name: { glob: "payments.*" }
    attributes:
      - key: tenant
        exists: true
    sampler: { parent_based: { probability: 1.0 } }
fallback: { rate_limited: 100 }
"#;
        let s = RuleBasedSampler::from_yaml(yaml).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            decide(&s, "GET", SpanKind::Server, &[KeyValue::new("http.route", "/healthz")]),
            SamplingDecision::Drop
        );
        assert_eq!(
            decide(
                &s,
                "payments.charge",
                SpanKind::Internal,
                &[KeyValue::new("tenant", "a")]
            ),
            SamplingDecision::RecordAndSample
        );

        let json = r#"{"rules":[{"span_name":{"exact":"a"},"sampler":"always_on"}],"fallback":"always_off"}"#;
        let s = RuleBasedSampler::from_json(json).unwrap();
        assert_eq!(
            decide(&s, "a", SpanKind::Internal, &[]),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(decide(&s, "b", SpanKind::Internal, &[]), SamplingDecision::Drop);
    }

    #[test]
    fn config_errors_name_the_rule_and_field() {
        let bad_regex =
            "rules:\n  - description: broken\n    span_name: { regex: \"(\" }\n    sampler: keep\nfallback: drop\n";
        let e = RuleBasedSampler::from_yaml(bad_regex).unwrap_err().to_string();
        assert!(e.contains("rule \"broken\"") && e.contains("invalid regex"), "{e}");
        let bad_p = "rules:\n  - sampler: { probability: 1.5 }\nfallback: drop\n";
        let e = RuleBasedSampler::from_yaml(bad_p).unwrap_err().to_string();
        assert!(e.contains("rule 1") && e.contains("[0, 1]"), "{e}");
        let two = "rules:\n  - attributes: [{ key: k, exact: a, prefix: b }]\n    sampler: keep\nfallback: drop\n";
        assert!(
            RuleBasedSampler::from_yaml(two)
                .unwrap_err()
                .to_string()
                .contains("exactly one")
        );
        assert!(
            RuleBasedSampler::from_yaml("rules: []\n")
                .unwrap_err()
                .to_string()
                .contains("fallback")
        );
        assert!(RuleBasedSampler::from_yaml("fallback: sometimes\n").is_err());
    }

    proptest! {
        #[test]
        fn glob_never_panics(p in "[a*?]{0,12}", t in "[ab]{0,16}") {
            let _ = glob_match(p.as_bytes(), t.as_bytes());
        }

        #[test]
        fn glob_agrees_with_regex(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            let re = format!("^{}$", p.replace('*', ".*").replace('?', "."));
            prop_assert_eq!(glob_match(p.as_bytes(), t.as_bytes()), Regex::new(&re).unwrap().is_match(&t));
        }

        #[test]
        fn attributes_never_panic(v in ".{0,20}", k in "[a-z.]{1,10}") {
            let s = RuleBasedSampler::new(AlwaysOff).rule(Rule::new(AlwaysOn).attribute(k.clone(), Matcher::Glob(v.clone())));
            let _ = decide(&s, &v, SpanKind::Internal, &[KeyValue::new(k, v.clone())]);
        }
    }
}
