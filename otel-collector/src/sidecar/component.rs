//! What a component module gives the collector, and what the collector gives
//! it back when it builds.
//!
//! Each component lives in one file under `receivers/`, `processors/`,
//! `exporters/` or `extensions/`. The file owns the component's typed
//! settings, reads them from the YAML once (its `parse`), and builds its
//! stage from a [`BuildContext`]. One [`Factory`] line in the section's
//! `TABLE` makes the collector know it: the configuration reader finds it by
//! type name, checks its keys against its [`Component`] entry, and
//! `otel-collector components` lists it.
//!
//! # The concurrency contract
//!
//! - [`Consumer::consume`](super::pipeline::Consumer::consume) may be called
//!   on a receiver's task or on a tail sampler's decision thread. It never
//!   blocks on I/O and never waits for long: stages that write (exporters)
//!   hand batches to their own bounded queue and count what does not fit.
//! - Background work runs on the collector's runtime through
//!   [`BuildContext::spawn`] (the handle is kept, never taken from whatever
//!   runtime is ambient), or on a thread the component names and joins at
//!   shutdown.
//! - Memory is accounted per collector: the [`LiveBytes`] the context hands
//!   out is this collector's, and the memory limiter reads the same one.

use super::bottlenecks::BottleneckReport;
use super::config::{At, ConfigError};
use super::extensions::file_storage::FileStorage;
use super::metrics::Metrics;
use super::pipeline::{Consumer, Flush};
use super::receiver::Intake;
use super::wire::LiveBytes;
use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A component this collector has: its section, its type, the settings it
/// acts on, and the Go settings it accepts without acting on (each named in a
/// warning at `validate` and at start). Parsing checks a component's keys
/// against this entry, and `otel-collector components` prints it.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    /// `receivers`, `processors`, `exporters` or `extensions`.
    pub section: &'static str,
    /// The type name (`otlp`, `tail_sampling`, ...).
    pub name: &'static str,
    /// Top-level settings acted on.
    pub settings: &'static [&'static str],
    /// Top-level settings accepted and ignored, with a warning.
    pub ignored: &'static [&'static str],
}

/// A future the collector awaits while it starts or stops.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One table line: a component's entry and the reader of its settings.
pub(crate) struct Factory<T: ?Sized + 'static> {
    /// The type name, section and settings.
    pub(crate) component: Component,
    /// Reads the component's settings (keys already checked against
    /// `component`); pushes warnings for what it accepts without acting on.
    pub(crate) parse: fn(At<'_>, &mut Vec<String>) -> Result<Box<T>, ConfigError>,
}

/// The settings of a receiver, ready to start.
pub(crate) trait ReceiverSettings: std::fmt::Debug + Send + Sync {
    /// Starts listening; spans go to the [`Intake`] that `intake` makes for
    /// a transport (`grpc`, `http`).
    fn start<'a>(
        &'a self,
        ctx: &'a BuildContext,
        id: &'a str,
        intake: &'a (dyn Fn(&str) -> Arc<Intake> + Send + Sync),
    ) -> BoxFuture<'a, Result<Vec<Listening>, String>>;

    /// The auth extensions it names: (setting, below the receiver's id; extension id).
    fn auth_refs(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }
}

/// The settings of a processor, ready to build.
pub(crate) trait ProcessorSettings: std::fmt::Debug + Send + Sync {
    /// Builds the stage that sits in front of `next` in one pipeline.
    fn build(&self, ctx: &BuildContext, at: StagePlace<'_>, next: Arc<dyn Consumer>) -> Result<Built, String>;

    /// Whether the stage decides whole traces (a tail sampler), so the
    /// collector keeps a bottleneck summary of them.
    fn decides_traces(&self) -> bool {
        false
    }

    /// The storage extensions it names: (setting, below the processor's id; extension id).
    fn storage_refs(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }
}

/// The settings of an exporter, ready to build.
pub(crate) trait ExporterSettings: std::fmt::Debug + Send + Sync {
    /// Builds the exporter (shared by every pipeline that names it).
    fn build(&self, ctx: &BuildContext, id: &str) -> Result<Arc<dyn super::exporters::ExporterDyn>, String>;

    /// The auth extensions it names: (setting, below the exporter's id; extension id).
    fn auth_refs(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }

    /// The storage extensions it names: (setting, below the exporter's id; extension id).
    fn storage_refs(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }
}

/// The settings of an extension, ready to start.
pub(crate) trait ExtensionSettings: std::fmt::Debug + Send + Sync {
    /// Starts it; what it serves ends after the pipelines have drained.
    fn start<'a>(&'a self, ctx: &'a BuildContext, id: &'a str) -> BoxFuture<'a, Result<Vec<Listening>, String>>;

    /// The authenticator, for an `auth` extension (`bearertokenauth`).
    fn authenticator(&self) -> Result<Option<Arc<dyn Authenticator>>, String> {
        Ok(None)
    }

    /// Whether it is an `auth` extension (checked when the configuration is read).
    fn is_authenticator(&self) -> bool {
        false
    }

    /// The storage, for a `file_storage` extension (opened when the collector starts).
    fn storage(&self) -> Result<Option<Arc<FileStorage>>, String> {
        Ok(None)
    }

    /// Whether it is a storage extension (checked when the configuration is read).
    fn is_storage(&self) -> bool {
        false
    }
}

/// An `auth` extension as receivers (checking requests) and exporters
/// (sending credentials) use it.
pub(crate) trait Authenticator: Send + Sync {
    /// Whether a request's headers carry valid credentials.
    fn authenticate(&self, headers: &http::HeaderMap) -> bool;

    /// The header a client sends: (name, value).
    fn client_header(&self) -> Result<(String, String), String>;

    /// The `WWW-Authenticate` challenge of an HTTP 401 (`Bearer`, `Basic`).
    fn challenge(&self) -> &'static str;
}

/// The `auth` setting of a receiver protocol or an exporter:
/// `auth: {authenticator: <extension id>}`.
pub(crate) fn parse_auth(at: At<'_>) -> Result<Option<String>, ConfigError> {
    let Some(v) = super::config::get(at, "auth") else {
        return Ok(None);
    };
    let path = super::config::child(at.path, "auth");
    let a = At { value: v, path: &path };
    a.map()?;
    a.only_keys(&["authenticator"])?;
    let id = super::config::get_str(a, "authenticator")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| a.err("auth needs an authenticator: the id of an auth extension, e.g. bearertokenauth"))?;
    Ok(Some(id.to_owned()))
}

/// Where a processor stage sits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StagePlace<'a> {
    /// The processor's id (`batch`, `tail_sampling/errors`).
    pub(crate) id: &'a str,
    /// The pipeline's name (`traces`, `traces/gateway`).
    pub(crate) pipeline: &'a str,
}

/// A built processor stage.
pub(crate) struct Built {
    /// Where spans enter: the new stage, or `next` itself for a stage that
    /// only admits (the memory limiter).
    pub(crate) head: Arc<dyn Consumer>,
    /// Told to pass on what it buffers at shutdown.
    pub(crate) flush: Option<Arc<dyn Flush>>,
    /// Asked by the receivers before data enters the pipeline.
    pub(crate) gate: Option<Arc<dyn Admission>>,
    /// The journal the stage writes what it takes to (a tail sampler with
    /// `tail_storage`): receivers answer once it is durable there.
    pub(crate) journal: Option<Arc<super::journal::Journal>>,
}

impl Built {
    /// A stage that transforms and passes on, holding nothing.
    pub(crate) fn stage(head: Arc<dyn Consumer>) -> Built {
        Built {
            head,
            flush: None,
            gate: None,
            journal: None,
        }
    }

    /// A stage that buffers: flushed at shutdown.
    pub(crate) fn buffering<S: Consumer + Flush + 'static>(stage: Arc<S>) -> Built {
        Built {
            head: stage.clone(),
            flush: Some(stage),
            gate: None,
            journal: None,
        }
    }
}

/// Decides whether data may enter a pipeline (before it is decoded).
pub(crate) trait Admission: Send + Sync {
    /// Whether `incoming` more bytes carrying `spans` spans may enter;
    /// counts them as refused when not.
    fn admit(&self, incoming: usize, spans: u64) -> bool;

    /// What the client is told when data is refused.
    fn reason(&self) -> &'static str {
        "data refused due to high memory usage"
    }

    /// Whether receivers wait for room (a while) instead of refusing at once.
    fn blocking(&self) -> bool {
        false
    }
}

/// A server a receiver or extension started.
pub(crate) struct Listening {
    /// `otlp/grpc`, `health_check`, ...
    pub(crate) name: String,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Ends when it has stopped.
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// What a component is built with: the collector's runtime, its metrics and
/// memory account, its shutdown signals and the bottleneck summary.
pub(crate) struct BuildContext {
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    report: Option<Arc<BottleneckReport>>,
    /// True once the receivers are to stop taking data.
    stopping: watch::Receiver<bool>,
    /// True once the pipelines have drained and servers such as the health
    /// check end.
    ended: watch::Receiver<bool>,
    /// Instances shared across pipelines by component id.
    shared: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
    /// The enabled auth extensions, by id.
    authenticators: HashMap<String, Arc<dyn Authenticator>>,
    /// The enabled storage extensions, by id.
    storages: HashMap<String, Arc<FileStorage>>,
}

impl BuildContext {
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        report: Option<Arc<BottleneckReport>>,
        stopping: watch::Receiver<bool>,
        ended: watch::Receiver<bool>,
        authenticators: HashMap<String, Arc<dyn Authenticator>>,
    ) -> Self {
        BuildContext {
            runtime,
            metrics,
            report,
            stopping,
            ended,
            shared: Mutex::new(HashMap::new()),
            authenticators,
            storages: HashMap::new(),
        }
    }

    /// The context with the enabled storage extensions.
    pub(crate) fn with_storages(mut self, storages: HashMap<String, Arc<FileStorage>>) -> Self {
        self.storages = storages;
        self
    }

    /// The storage extension `id`.
    pub(crate) fn storage(&self, id: &str) -> Result<Arc<FileStorage>, String> {
        self.storages.get(id).cloned().ok_or_else(|| {
            format!("storage {id:?} is not an enabled file_storage extension (define it under extensions and list it in service.extensions)")
        })
    }

    /// The auth extension `id` (enabled in `service.extensions`).
    pub(crate) fn authenticator(&self, id: &str) -> Result<Arc<dyn Authenticator>, String> {
        self.authenticators.get(id).cloned().ok_or_else(|| {
            format!("auth.authenticator {id:?} is not an enabled auth extension (define it under extensions and list it in service.extensions)")
        })
    }

    /// The collector's runtime.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Runs `task` on the collector's runtime.
    pub(crate) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(task)
    }

    /// The collector's metrics registry.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// This collector's account of span bytes held.
    pub(crate) fn live(&self) -> Arc<LiveBytes> {
        self.metrics.live()
    }

    /// The bottleneck summary, when a tail sampler feeds one.
    pub(crate) fn report(&self) -> Option<&Arc<BottleneckReport>> {
        self.report.as_ref()
    }

    /// Turns true when the receivers are to stop.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.clone()
    }

    /// Turns true when the collector has drained and its servers end.
    pub(crate) fn ended(&self) -> watch::Receiver<bool> {
        self.ended.clone()
    }

    /// The instance for component `id`, made by `make` the first time (a
    /// memory limiter named in two pipelines is one limiter).
    pub(crate) fn shared<T: Any + Send + Sync>(&self, id: &str, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        let mut shared = crate::lock(&self.shared);
        if let Some(existing) = shared.get(id).and_then(|a| a.clone().downcast::<T>().ok()) {
            return existing;
        }
        let made = make();
        shared.insert(id.to_owned(), made.clone());
        made
    }
}
