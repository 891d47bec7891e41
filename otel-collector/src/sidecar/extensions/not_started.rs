//! `pprof` and `zpages`: accepted so that Go Collector configurations load
//! unchanged, and not started (each named in a warning, with any setting).

use crate::sidecar::component::{BoxFuture, BuildContext, Component, ExtensionSettings, Factory, Listening};

/// The table line for `pprof` (its Go settings, all ignored).
pub(crate) const PPROF: Factory<dyn ExtensionSettings> = Factory {
    component: Component {
        section: "extensions",
        name: "pprof",
        settings: &[],
        ignored: &[
            "endpoint",
            "block_profile_fraction",
            "mutex_profile_fraction",
            "save_to_file",
        ],
    },
    parse: |at, warnings| {
        warnings.push(format!("{} is accepted but not started by this collector", at.path));
        Ok(Box::new(NotStarted))
    },
};

/// The table line for `zpages` (its Go settings, all ignored).
pub(crate) const ZPAGES: Factory<dyn ExtensionSettings> = Factory {
    component: Component {
        section: "extensions",
        name: "zpages",
        settings: &[],
        ignored: &["endpoint", "expvar"],
    },
    parse: |at, warnings| {
        warnings.push(format!("{} is accepted but not started by this collector", at.path));
        Ok(Box::new(NotStarted))
    },
};

/// An extension accepted and not started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotStarted;

impl ExtensionSettings for NotStarted {
    fn start<'a>(&'a self, _: &'a BuildContext, _: &'a str) -> BoxFuture<'a, Result<Vec<Listening>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
