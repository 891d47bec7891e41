//! Which propagator instrumentation reads and writes context with: the global
//! one (what `otel-core` installs) or one given to a layer or helper.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::{Context, global};
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Default)]
pub(crate) enum Propagation {
    /// The global propagator, looked up per use.
    #[default]
    Global,
    Custom(Arc<dyn TextMapPropagator + Send + Sync>),
}

impl fmt::Debug for Propagation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Propagation::Global => f.write_str("Global"),
            Propagation::Custom(p) => f.debug_tuple("Custom").field(p).finish(),
        }
    }
}

impl Propagation {
    /// A given propagator.
    pub(crate) fn custom(propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        Propagation::Custom(Arc::new(propagator))
    }

    /// The remote context in a carrier, on top of an empty context.
    pub(crate) fn extract(&self, extractor: &dyn Extractor) -> Context {
        match self {
            Propagation::Global => {
                global::get_text_map_propagator(|p| p.extract_with_context(&Context::new(), extractor))
            }
            Propagation::Custom(p) => p.extract_with_context(&Context::new(), extractor),
        }
    }

    /// Writes `cx` into a carrier.
    pub(crate) fn inject(&self, cx: &Context, injector: &mut dyn Injector) {
        match self {
            Propagation::Global => global::get_text_map_propagator(|p| p.inject_context(cx, injector)),
            Propagation::Custom(p) => p.inject_context(cx, injector),
        }
    }
}
