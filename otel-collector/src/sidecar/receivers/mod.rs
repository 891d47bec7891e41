//! Receivers, one module each, and their table.

use super::component::{Factory, ReceiverSettings};

pub(crate) mod otlp;

/// Every receiver, by type name.
pub(crate) const TABLE: &[Factory<dyn ReceiverSettings>] = &[otlp::FACTORY];
