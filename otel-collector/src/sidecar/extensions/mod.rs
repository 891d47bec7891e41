//! Extensions, one module each, and their table.

use super::component::{ExtensionSettings, Factory};

pub(crate) mod basicauth;
pub(crate) mod bearertokenauth;
pub(crate) mod file_storage;
pub(crate) mod health_check;
pub(crate) mod not_started;

/// Every extension, by type name.
pub(crate) const TABLE: &[Factory<dyn ExtensionSettings>] = &[
    health_check::FACTORY,
    bearertokenauth::FACTORY,
    basicauth::FACTORY,
    file_storage::FACTORY,
    not_started::PPROF,
    not_started::ZPAGES,
];
