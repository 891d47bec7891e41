//! Where instrumentation gets its tracer: the global provider (what
//! `otel-core` installs) or one given provider, for processes that host
//! several services, each under its own `service.name`.

use opentelemetry::InstrumentationScope;
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use std::fmt;
use std::sync::Arc;

/// The instrumentation scope name of every span this crate creates.
pub(crate) const SCOPE: &str = "otel-integrations";

#[derive(Clone, Default)]
pub(crate) enum TracerSource {
    /// `global::tracer`, looked up per use (so a provider installed later is used).
    #[default]
    Global,
    Given(Arc<BoxedTracer>),
}

impl fmt::Debug for TracerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TracerSource::Global => f.write_str("Global"),
            TracerSource::Given(_) => f.write_str("Given"),
        }
    }
}

impl TracerSource {
    pub(crate) fn from_provider<P, T, S>(provider: &P) -> Self
    where
        P: TracerProvider<Tracer = T>,
        T: Tracer<Span = S> + Send + Sync + 'static,
        S: Span + Send + Sync + 'static,
    {
        let scope = InstrumentationScope::builder(SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        TracerSource::Given(Arc::new(BoxedTracer::new(Box::new(provider.tracer_with_scope(scope)))))
    }

    /// Runs `f` with the tracer.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&BoxedTracer) -> R) -> R {
        match self {
            TracerSource::Global => f(&global::tracer(SCOPE)),
            TracerSource::Given(t) => f(t),
        }
    }
}
