//! Processors, one module each, and their table.

use super::component::{Factory, ProcessorSettings};
use super::wire::{ResourceBlock, ScopeBlock, SpanRec};
use std::sync::Arc;

pub(crate) mod attributes;
pub(crate) mod batch;
pub(crate) mod memory_limiter;
pub(crate) mod probabilistic_sampler;
pub(crate) mod redaction;
pub(crate) mod resource;
pub(crate) mod tail_sampling;

/// Every processor, by type name.
pub(crate) const TABLE: &[Factory<dyn ProcessorSettings>] = &[
    memory_limiter::FACTORY,
    tail_sampling::FACTORY,
    batch::FACTORY,
    attributes::FACTORY,
    resource::FACTORY,
    probabilistic_sampler::FACTORY,
    redaction::FACTORY,
];

/// Rewrites each distinct resource of `spans` once with `rewrite` (given the
/// `Resource` message, `None` when unchanged); spans that shared a resource
/// share the rewritten one.
pub(crate) fn rewrite_resources(spans: &mut [SpanRec], rewrite: impl Fn(&[u8]) -> Option<Vec<u8>>) {
    // Old scope block -> rewritten scope block (resource rewritten once).
    let mut scopes: Vec<(Arc<ScopeBlock>, Arc<ScopeBlock>)> = Vec::new();
    let mut resources: Vec<(Arc<ResourceBlock>, Arc<ResourceBlock>)> = Vec::new();
    for s in spans {
        if let Some((_, new)) = scopes.iter().find(|(old, _)| Arc::ptr_eq(old, &s.scope)) {
            s.scope = new.clone();
            continue;
        }
        let old_resource = &s.scope.resource;
        let new_resource = match resources.iter().find(|(old, _)| Arc::ptr_eq(old, old_resource)) {
            Some((_, new)) => new.clone(),
            None => {
                let new = match rewrite(&old_resource.bytes) {
                    Some(bytes) => Arc::new(ResourceBlock {
                        bytes: bytes.into_boxed_slice(),
                        schema_url: old_resource.schema_url.clone(),
                    }),
                    None => old_resource.clone(),
                };
                resources.push((old_resource.clone(), new.clone()));
                new
            }
        };
        if Arc::ptr_eq(&new_resource, &s.scope.resource) {
            scopes.push((s.scope.clone(), s.scope.clone()));
            continue;
        }
        let new_scope = Arc::new(ScopeBlock {
            resource: new_resource,
            bytes: s.scope.bytes.clone(),
            schema_url: s.scope.schema_url.clone(),
            live: s.scope.live.clone(),
        });
        scopes.push((s.scope.clone(), new_scope.clone()));
        s.scope = new_scope;
    }
}
