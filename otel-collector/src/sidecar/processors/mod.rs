//! Processors, one module each, and their table.

use super::component::{Factory, ProcessorSettings};

pub(crate) mod attributes;
pub(crate) mod batch;
pub(crate) mod memory_limiter;
pub(crate) mod probabilistic_sampler;
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
];
