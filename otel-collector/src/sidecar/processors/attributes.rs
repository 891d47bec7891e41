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

#[cfg(test)]
mod tests {
    use crate::sidecar::testing::{Recorder, build, context, processor, span_attr, spans, trace};

    #[tokio::test]
    async fn actions_apply_to_every_span_in_order() {
        let (ctx, metrics, _stop) = context();
        let settings = processor(
            "{attributes: {actions: [\
               {key: env, action: insert, value: prod},\
               {key: owner, action: upsert, from_attribute: user.email},\
               {key: user.email, action: hash},\
               {key: missing, action: update, value: x}]}}",
        );
        let out = Recorder::new();
        let built = build(&ctx, &settings, "attributes", out.clone());
        assert!(built.flush.is_none() && built.gate.is_none());
        built.head.consume(spans("a", &trace(1, 2), &metrics.live()));
        let got = out.take();
        assert_eq!(got.len(), 2);
        let sha = crate::sidecar::actions::hex_digest(b"u@example.com");
        for s in &got {
            assert_eq!(span_attr(s, "env").as_deref(), Some("prod"));
            assert_eq!(span_attr(s, "owner").as_deref(), Some("u@example.com"));
            assert_eq!(span_attr(s, "user.email"), Some(sha.clone()));
            assert_eq!(span_attr(s, "missing"), None, "update does not add");
            // The rest of the span is untouched.
            assert!(s.view().unwrap().name.starts_with("op-"));
        }
    }
}
