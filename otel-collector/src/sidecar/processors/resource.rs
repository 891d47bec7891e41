//! `resource`: resource attribute actions, applied once per distinct resource.

use crate::sidecar::actions::{self, Action, parse_actions};
use crate::sidecar::component::{BuildContext, Built, Component, Factory, ProcessorSettings, StagePlace};
use crate::sidecar::config::{At, ConfigError};
use crate::sidecar::pipeline::Consumer;
use crate::sidecar::wire::SpanRec;
use otel_export::wire::field::resource;
use std::sync::Arc;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ProcessorSettings> = Factory {
    component: Component {
        section: "processors",
        name: "resource",
        settings: &["attributes"],
        ignored: &[],
    },
    parse: |at, _| Ok(Box::new(ResourceConfig::parse(at)?)),
};

/// `resource` settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResourceConfig {
    /// `attributes`: the actions, in order.
    pub(crate) actions: Vec<Action>,
}

impl ResourceConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        Ok(ResourceConfig {
            actions: parse_actions(at, "attributes")?,
        })
    }
}

impl ProcessorSettings for ResourceConfig {
    fn build(&self, _: &BuildContext, _: StagePlace<'_>, next: Arc<dyn Consumer>) -> Result<Built, String> {
        Ok(Built::stage(Arc::new(ResourceStage {
            actions: self.actions.clone(),
            next,
        })))
    }
}

/// The `resource` processor: resource attribute actions, once per distinct resource.
pub(crate) struct ResourceStage {
    pub(crate) actions: Vec<Action>,
    pub(crate) next: Arc<dyn Consumer>,
}

impl Consumer for ResourceStage {
    fn consume(&self, mut spans: Vec<SpanRec>) {
        super::rewrite_resources(&mut spans, |bytes| {
            actions::apply(bytes, resource::ATTRIBUTES, &self.actions)
        });
        self.next.consume(spans);
    }
}

#[cfg(test)]
mod tests {
    use crate::sidecar::testing::{Recorder, build, context, processor, resource_attr, spans, trace};
    use std::sync::Arc;

    #[tokio::test]
    async fn each_distinct_resource_is_rewritten_once() {
        let (ctx, metrics, _stop) = context();
        let settings = processor(
            "{resource: {attributes: [{key: deployment.environment, action: upsert, value: prod},\
               {key: service.name, action: update, value: renamed}]}}",
        );
        let out = Recorder::new();
        let built = build(&ctx, &settings, "resource", out.clone());
        let live = metrics.live();
        let mut input = spans("a", &trace(1, 3), &live);
        input.extend(spans("b", &trace(2, 2), &live));
        built.head.consume(input);
        let got = out.take();
        assert_eq!(got.len(), 5);
        for s in &got {
            assert_eq!(resource_attr(s, "deployment.environment").as_deref(), Some("prod"));
            assert_eq!(resource_attr(s, "service.name").as_deref(), Some("renamed"));
        }
        // Spans that shared a resource still share one (rewritten once).
        assert!(Arc::ptr_eq(&got[0].scope.resource, &got[2].scope.resource));
        assert!(!Arc::ptr_eq(&got[0].scope.resource, &got[3].scope.resource));
    }
}
