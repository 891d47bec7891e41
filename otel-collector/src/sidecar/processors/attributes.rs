//! `attributes`: insert, update, upsert, delete or hash span attributes.

use crate::sidecar::actions::{self, Action, parse_actions};
use crate::sidecar::component::{BuildContext, Built, Component, Factory, ProcessorSettings, StagePlace};
use crate::sidecar::config::{At, ConfigError, reject};
use crate::sidecar::pipeline::Consumer;
use crate::sidecar::wire::SpanRec;
use otel_export::wire::field::span;
use std::sync::Arc;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ProcessorSettings> = Factory {
    component: Component {
        section: "processors",
        name: "attributes",
        settings: &["actions", "include", "exclude"],
        ignored: &[],
    },
    parse: |at, _| Ok(Box::new(AttributesConfig::parse(at)?)),
};

/// `attributes` settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttributesConfig {
    /// `actions`, in order.
    pub(crate) actions: Vec<Action>,
}

impl AttributesConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        for k in ["include", "exclude"] {
            reject(
                at,
                k,
                "include/exclude filters are not supported; the actions apply to every span",
            )?;
        }
        Ok(AttributesConfig {
            actions: parse_actions(at, "actions")?,
        })
    }
}

impl ProcessorSettings for AttributesConfig {
    fn build(&self, _: &BuildContext, _: StagePlace<'_>, next: Arc<dyn Consumer>) -> Result<Built, String> {
        Ok(Built::stage(Arc::new(AttributesStage {
            actions: self.actions.clone(),
            next,
        })))
    }
}

/// The `attributes` processor: span attribute actions.
pub(crate) struct AttributesStage {
    pub(crate) actions: Vec<Action>,
    pub(crate) next: Arc<dyn Consumer>,
}

impl Consumer for AttributesStage {
    fn consume(&self, mut spans: Vec<SpanRec>) {
        for s in &mut spans {
            if let Some(bytes) = actions::apply(s.bytes(), span::ATTRIBUTES, &self.actions) {
                s.set_bytes(bytes::Bytes::from(bytes));
            }
        }
        self.next.consume(spans);
    }
}
