//! Head samplers for OpenTelemetry: parent-based, consistent probability
//! (tracestate `ot=th`/`rv`), rate limited and rule based, plus
//! `OTEL_TRACES_SAMPLER` parsing.
//!
//! Every sampler implements opentelemetry_sdk's [`ShouldSample`] and works inside
//! the official `SdkTracerProvider`.
//!
//! # Quick start
//!
//! ```
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use otel_sampling::{ParentBased, ProbabilitySampler};
//!
//! // Keep 10% of new traces; follow the caller's decision otherwise.
//! let sampler = ParentBased::new(ProbabilitySampler::new(0.1).unwrap());
//! let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
//! # drop(provider);
//! ```
//!
//! # Consistency across services and SDKs
//!
//! [`ProbabilitySampler`] follows the OpenTelemetry consistent probability
//! sampling specification: every participant compares the same 56-bit
//! randomness (the trace id's low 56 bits, or an explicit `rv`) against its
//! rejection threshold, and kept spans carry their threshold in `ot=th:...`, so
//! downstream stages (other SDKs, collectors) can count and re-sample them
//! correctly. Decisions that are not probability decisions (rate limiting, a
//! parent without a threshold, a dropped parent) erase `th`.
//!
//! # Composable samplers
//!
//! [`composable`] has the specification's `CompositeSampler` and the
//! built-in `ComposableSampler`s (always on/off, probability, parent
//! threshold, rule based, annotating), working on the same thresholds and
//! `ot=th`; that module says which form to use when.
//!
//! # Environment
//!
//! [`sampler_from_env`] reads `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`
//! leniently, as the specification asks; [`sampler_from_env_strict`] and
//! [`parse_sampler`] return errors naming the variable, the value and what is
//! accepted. See [`ACCEPTED_SAMPLERS`] for the names.
//!
//! # Features
//!
//! - `yaml` (default): `RuleBasedSampler::from_yaml`, and YAML rules files
//!   for `OTEL_TRACES_SAMPLER=rules` (JSON rules need no feature).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod composable;
mod env;
pub mod ot;
mod parent;
mod parent_based;
mod probability;
mod rate_limited;
mod rules;
pub mod threshold;

pub use composable::{
    ComposableAlwaysOff, ComposableAlwaysOn, ComposableAnnotating, ComposableParentThreshold, ComposableProbability,
    ComposableRuleBased, ComposableSampler, CompositeSampler, SamplingIntent,
};
pub use env::{
    ACCEPTED_SAMPLERS, DEFAULT_SAMPLER, DEFAULT_TRACES_PER_SECOND, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG,
    SamplerConfigError, lenient, parse_sampler, sampler_from_env, sampler_from_env_strict, sampler_or_default,
};
pub use parent_based::{BoxedSampler, ParentBased};
pub use probability::{AlwaysOff, AlwaysOn, ProbabilityError, ProbabilitySampler};
pub use rate_limited::{Clock, MonotonicClock, RateError, RateLimitedSampler};
pub use rules::{Matcher, Rule, RuleBasedSampler, RulesError, SamplerSpec};
pub use threshold::{Randomness, Threshold};

/// Re-exported: the trait every sampler here implements.
pub use opentelemetry_sdk::trace::ShouldSample;
