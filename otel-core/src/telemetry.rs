//! One-call setup: `Telemetry::from_env().install()`.

use crate::console::ConsoleExporter;
use crate::env::*;
use crate::layer::TracingLayer;
use crate::layer::recorder::{Recorder, SamplerHints};
use crate::limits::ValueLengthLimit;
use crate::resource::{self, ResourceSettings};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    SdkTracer, SdkTracerProvider, ShouldSample, SimpleSpanProcessor, SpanLimits, SpanProcessor,
};
use otel_export::{
    BatchConfig, BatchSpanProcessor, ConfigError, Counters, EnvMode, EnvReader, OtlpExporter, OtlpExporterBuilder,
};
use otel_propagation::{BoxedPropagator, CompositePropagator, TraceContextPropagator, propagator_from_names};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long dropping a [`TelemetryHandle`] waits for the final flush.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the pipeline could not be installed: a setting that cannot be used
/// (named with its value and what is accepted), or, for
/// [`init`](TelemetryBuilder::init), a global `tracing` subscriber that is
/// already set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallError(InstallErrorKind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum InstallErrorKind {
    Config(ConfigError),
    SubscriberAlreadySet,
}

impl InstallError {
    /// The variable or setting that was wrong (empty when the error is not
    /// about a setting).
    pub fn variable(&self) -> &str {
        match &self.0 {
            InstallErrorKind::Config(e) => e.variable(),
            InstallErrorKind::SubscriberAlreadySet => "",
        }
    }

    /// The rejected value (empty when the error is not about a setting).
    pub fn value(&self) -> &str {
        match &self.0 {
            InstallErrorKind::Config(e) => e.value(),
            InstallErrorKind::SubscriberAlreadySet => "",
        }
    }

    /// The setting that could not be used, if that is the error.
    pub fn config_error(&self) -> Option<&ConfigError> {
        match &self.0 {
            InstallErrorKind::Config(e) => Some(e),
            InstallErrorKind::SubscriberAlreadySet => None,
        }
    }

    /// Whether [`init`](TelemetryBuilder::init) found a global `tracing`
    /// subscriber already set.
    pub fn is_subscriber_already_set(&self) -> bool {
        self.0 == InstallErrorKind::SubscriberAlreadySet
    }
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            InstallErrorKind::Config(e) => e.fmt(f),
            InstallErrorKind::SubscriberAlreadySet => f.write_str(
                "a global tracing subscriber is already set; call init() once per process, \
                 or use install() and add TelemetryHandle::tracing_layer() to your own subscriber",
            ),
        }
    }
}

impl std::error::Error for InstallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            InstallErrorKind::Config(e) => Some(e),
            InstallErrorKind::SubscriberAlreadySet => None,
        }
    }
}

impl From<ConfigError> for InstallError {
    fn from(e: ConfigError) -> Self {
        InstallError(InstallErrorKind::Config(e))
    }
}

/// Where spans go.
enum ExporterChoice {
    /// OTLP configured in code (`Some`) or by `OTEL_EXPORTER_OTLP_*` (`None`).
    Otlp(Option<Box<OtlpExporterBuilder>>),
    Console,
    None,
}

type EnvLookup = Box<dyn Fn(&str) -> Option<String>>;

/// Builds and installs the tracing pipeline. Code beats environment: every
/// setting made here wins over the `OTEL_*` variable for it.
///
/// ```no_run
/// use std::time::Duration;
///
/// let telemetry = otel_core::Telemetry::from_env()
///     .with_service_name("checkout")
///     .install()
///     .expect("valid telemetry settings");
/// // ... the service runs; spans go to OTLP ...
/// telemetry.shutdown(Duration::from_secs(5)).ok();
/// ```
#[must_use = "nothing is installed until install() is called"]
pub struct TelemetryBuilder {
    env: Option<EnvMode>,
    env_lookup: Option<EnvLookup>,
    resource: ResourceSettings,
    sampler: Option<(Box<dyn ShouldSample>, SamplerHints)>,
    exporters: Option<Vec<ExporterChoice>>,
    extra_processors: Vec<Box<dyn SpanProcessor>>,
    batch: Option<BatchConfig>,
    span_limits: Option<SpanLimits>,
    value_length_limit: Option<usize>,
    propagator: Option<BoxedPropagator>,
    set_globals: bool,
    shutdown_timeout: Duration,
    log_format: LogFormat,
    log_filter: Option<String>,
    console: bool,
    config_file: Option<ConfigSource>,
}

/// A declarative configuration given in code.
enum ConfigSource {
    Path(String),
    #[cfg_attr(not(feature = "yaml"), allow(dead_code))]
    Yaml(String),
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("env", &self.env)
            .field("resource", &self.resource)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// The entry points: [`Telemetry::builder`] (code only) and
/// [`Telemetry::from_env`] (code over `OTEL_*` variables).
#[derive(Debug)]
pub struct Telemetry;

impl Telemetry {
    /// A builder that reads no environment variable.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder {
            env: None,
            env_lookup: None,
            resource: ResourceSettings::default(),
            sampler: None,
            exporters: None,
            extra_processors: Vec::new(),
            batch: None,
            span_limits: None,
            value_length_limit: None,
            propagator: None,
            set_globals: true,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            log_format: LogFormat::default(),
            log_filter: None,
            console: false,
            config_file: None,
        }
    }

    /// A builder pre-filled from the `OTEL_*` variables (read at
    /// [`install`](TelemetryBuilder::install)). Bad values log a warning (a
    /// `tracing` event, or a line on stderr when no global subscriber is
    /// installed yet; also kept in [`TelemetryHandle::warnings`]) and the
    /// specification's default is used; see [`TelemetryBuilder::strict`].
    pub fn from_env() -> TelemetryBuilder {
        let mut b = Self::builder();
        b.env = Some(EnvMode::Lenient);
        b
    }
}

impl TelemetryBuilder {
    /// Configures the pipeline from a declarative configuration file (the
    /// OpenTelemetry configuration data model, `file_format` 1.x; see
    /// [`config_file`](crate::config_file)), as `OTEL_CONFIG_FILE` does: the
    /// other `OTEL_*` variables are then not read (they can still be
    /// referenced in the file as `${NAME}`); settings made in code win.
    pub fn with_config_file(mut self, path: impl Into<String>) -> Self {
        self.config_file = Some(ConfigSource::Path(path.into()));
        self
    }

    /// As [`with_config_file`](Self::with_config_file), from YAML text.
    #[cfg(feature = "yaml")]
    pub fn with_config_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.config_file = Some(ConfigSource::Yaml(yaml.into()));
        self
    }

    /// Makes a bad `OTEL_*` value an [`InstallError`] instead of a warning.
    pub fn strict(mut self) -> Self {
        if self.env.is_some() {
            self.env = Some(EnvMode::Strict);
        }
        self
    }

    /// Reads variables from `lookup` instead of the process environment (tests,
    /// or configuration kept elsewhere). Implies reading the environment.
    pub fn with_env_lookup(mut self, lookup: impl Fn(&str) -> Option<String> + 'static) -> Self {
        self.env.get_or_insert(EnvMode::Lenient);
        self.env_lookup = Some(Box::new(lookup));
        self
    }

    /// `service.name`. Defaults to `OTEL_SERVICE_NAME`, then the executable name.
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.resource.service_name = Some(name.into());
        self
    }

    /// `service.version`. Defaults to `OTEL_RESOURCE_ATTRIBUTES`, else unset.
    pub fn with_service_version(mut self, version: impl Into<String>) -> Self {
        self.resource.service_version = Some(version.into());
        self
    }

    /// `service.namespace`. Defaults to `OTEL_RESOURCE_ATTRIBUTES`, else unset.
    pub fn with_service_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.resource.service_namespace = Some(namespace.into());
        self
    }

    /// Adds a resource attribute (overriding a detected one).
    pub fn with_resource_attribute(mut self, kv: KeyValue) -> Self {
        self.resource.attributes.push(kv);
        self
    }

    /// The head sampler. Defaults to `OTEL_TRACES_SAMPLER`, else `parentbased_always_on`.
    pub fn with_sampler<S: ShouldSample + 'static>(mut self, sampler: S) -> Self {
        let hints = sampler_hints(&sampler);
        self.sampler = Some((Box::new(sampler), hints));
        self
    }

    /// Exports over OTLP with this exporter configuration. Defaults to
    /// `OTEL_TRACES_EXPORTER` and `OTEL_EXPORTER_OTLP_*` (OTLP, http/protobuf).
    pub fn with_otlp(mut self, exporter: OtlpExporterBuilder) -> Self {
        self.exporters
            .get_or_insert_with(Vec::new)
            .push(ExporterChoice::Otlp(Some(Box::new(exporter))));
        self
    }

    /// Also prints each span to stdout, beside the exporters configured in
    /// code or by `OTEL_TRACES_EXPORTER` (OTLP by default). To print only, add
    /// [`without_exporter`](Self::without_exporter) too. Defaults to off.
    pub fn with_console_exporter(mut self) -> Self {
        self.console = true;
        self
    }

    /// Exports nothing (spans still reach processors added with
    /// [`with_span_processor`](Self::with_span_processor), and the console
    /// with [`with_console_exporter`](Self::with_console_exporter)).
    pub fn without_exporter(mut self) -> Self {
        self.exporters = Some(vec![ExporterChoice::None]);
        self
    }

    /// Adds a span processor beside the exporting ones (e.g. an in-process tail sampler).
    pub fn with_span_processor(mut self, processor: impl SpanProcessor + 'static) -> Self {
        self.extra_processors.push(Box::new(processor));
        self
    }

    /// Batching of exported spans. Defaults to the `OTEL_BSP_*` variables.
    pub fn with_batch_config(mut self, config: BatchConfig) -> Self {
        self.batch = Some(config);
        self
    }

    /// Span count limits. Defaults to the `OTEL_*_COUNT_LIMIT` variables, else 128 each.
    pub fn with_span_limits(mut self, limits: SpanLimits) -> Self {
        self.span_limits = Some(limits);
        self
    }

    /// Truncates string attribute values to this many characters. Defaults to
    /// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else no limit.
    pub fn with_attribute_value_length_limit(mut self, max_chars: usize) -> Self {
        self.value_length_limit = Some(max_chars);
        self
    }

    /// The propagator installed globally. Defaults to `OTEL_PROPAGATORS`, else
    /// W3C Trace Context (setting the random flag on new traces) and Baggage.
    pub fn with_propagator(mut self, propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        self.propagator = Some(Box::new(propagator));
        self
    }

    /// Whether to set the global tracer provider and propagator. Defaults to true.
    pub fn with_globals(mut self, set: bool) -> Self {
        self.set_globals = set;
        self
    }

    /// How long dropping the handle waits for the final flush. Defaults to 5 s.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Builds the pipeline and (unless disabled) installs it globally.
    ///
    /// # Errors
    ///
    /// A setting that cannot be used: an invalid endpoint in code, or, in
    /// [`strict`](Self::strict) mode, any invalid `OTEL_*` variable, named with its
    /// value and what is accepted.
    pub fn install(self) -> Result<TelemetryHandle, InstallError> {
        let handle = self.build()?;
        if !tracing::dispatcher::has_been_set() {
            // The warnings went to `tracing` with no subscriber to show them.
            for w in &handle.warnings {
                eprintln!("otel-core: {w}; using the default");
            }
        }
        Ok(handle)
    }

    /// How [`init`](Self::init) writes log lines. Defaults to [`LogFormat::Text`].
    pub fn with_log_format(mut self, format: LogFormat) -> Self {
        self.log_format = format;
        self
    }

    /// Which spans and events [`init`](Self::init) keeps, in `RUST_LOG`
    /// syntax (`"info,my_crate=debug,hyper=warn"`). Defaults to `RUST_LOG`
    /// (read by [`Telemetry::from_env`] builders), else [`DEFAULT_LOG_FILTER`].
    /// Spans filtered out are neither logged nor traced.
    pub fn with_log_filter(mut self, directives: impl Into<String>) -> Self {
        self.log_filter = Some(directives.into());
        self
    }

    /// Installs the pipeline and sets the global `tracing` subscriber: a
    /// registry, an `EnvFilter` ([`with_log_filter`](Self::with_log_filter),
    /// `RUST_LOG`, else `info`), the [`tracing_layer`](TelemetryHandle::tracing_layer)
    /// and a log layer writing lines with trace ids to stdout
    /// ([`with_log_format`](Self::with_log_format)). Keep the returned handle
    /// for the life of the program and shut it down at exit.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let telemetry = otel_core::Telemetry::from_env()
    ///     .with_service_name("checkout")
    ///     .with_log_format(otel_core::LogFormat::Json)
    ///     .init()?;
    /// tracing::info!("started");
    /// // ... serve ...
    /// telemetry.shutdown(std::time::Duration::from_secs(5))?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`install`](Self::install); also a global subscriber already set,
    /// and, in [`strict`](Self::strict) mode, a `RUST_LOG` that does not parse.
    pub fn init(self) -> Result<TelemetryHandle, InstallError> {
        if tracing::dispatcher::has_been_set() {
            return Err(InstallError(InstallErrorKind::SubscriberAlreadySet));
        }
        let (format, code_filter, mode) = (self.log_format, self.log_filter.clone(), self.env);
        let rust_log = match (&code_filter, mode) {
            (None, Some(_)) => match &self.env_lookup {
                Some(lookup) => lookup(RUST_LOG),
                None => std::env::var(RUST_LOG).ok(),
            }
            .filter(|v| !v.trim().is_empty()),
            _ => None,
        };
        let mut handle = self.build()?;
        let (filter, problem) = log_filter(code_filter.as_deref(), rust_log.as_deref());
        if let Some(problem) = problem {
            if mode == Some(EnvMode::Strict) || code_filter.is_some() {
                return Err(problem.into());
            }
            handle.warnings.push(problem);
        }
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(handle.tracing_layer())
            .with((format == LogFormat::Json).then(crate::logs::json_layer))
            .with((format == LogFormat::Text).then(crate::logs::text_layer));
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            return Err(InstallError(InstallErrorKind::SubscriberAlreadySet));
        }
        for w in &handle.warnings {
            tracing::warn!(target: "otel_core", "{w}; using the default");
        }
        Ok(handle)
    }

    fn build(self) -> Result<TelemetryHandle, InstallError> {
        let read_env = self.env.is_some();
        let mode = self.env.unwrap_or(EnvMode::Lenient);
        let mut env = match self.env_lookup {
            Some(lookup) => EnvReader::from_fn(lookup, mode),
            None => EnvReader::process(mode),
        };

        // A declarative configuration replaces the other OTEL_* variables.
        let file_source = match self.config_file {
            Some(source) => Some(source),
            None if read_env => env
                .get(OTEL_CONFIG_FILE)
                .filter(|p| !p.trim().is_empty())
                .map(|p| ConfigSource::Path(p.trim().to_owned())),
            None => None,
        };
        let file = match file_source {
            Some(source) => Some(load_config(source, &env, mode)?),
            None => None,
        };
        let read_env = read_env && file.is_none();
        let mut file_warnings = Vec::new();
        #[cfg_attr(not(feature = "yaml"), allow(unused_mut))]
        let mut resource_settings = self.resource;
        #[cfg_attr(not(feature = "yaml"), allow(unused_mut))]
        let mut file_parts = FileParts::default();
        #[cfg(feature = "yaml")]
        if let Some(file) = file {
            if file.disabled {
                return Ok(TelemetryHandle::disabled());
            }
            resource_settings.file_attributes = file.resource_attributes;
            resource_settings.schema_url = file.schema_url;
            file_warnings = file.warnings;
            file_parts = FileParts {
                sampler: Some(file.sampler),
                limits: Some(file.limits),
                value_length_limit: file.value_length_limit,
                propagator: Some(file.propagator),
                processors: Some(file.processors),
            };
        }
        #[cfg(not(feature = "yaml"))]
        let _ = (file, &mut file_warnings);

        if read_env && env.boolean(OTEL_SDK_DISABLED)?.unwrap_or(false) {
            return Ok(TelemetryHandle::disabled());
        }

        let resource = resource::detect(&mut env, &resource_settings, read_env)?;
        let (sampler, hints): (Box<dyn ShouldSample>, SamplerHints) = match self.sampler.or(file_parts.sampler) {
            Some(s) => s,
            None if read_env => {
                let name = env.get(otel_sampling::OTEL_TRACES_SAMPLER).unwrap_or_default();
                let arg = env.get(otel_sampling::OTEL_TRACES_SAMPLER_ARG);
                let (sampler, problem) = otel_sampling::sampler_or_default(&name, arg.as_deref());
                // Names that are not `parentbased_*` fall back to the default,
                // which is parent-based, only when they are unknown.
                let normalized = name.trim().to_ascii_lowercase();
                let mut hints = SamplerHints {
                    follows_local_parent: normalized.is_empty() || normalized.starts_with("parentbased_"),
                    reads_attributes: normalized.ends_with("rules"),
                };
                if let Some(e) = problem {
                    if e.variable() == otel_sampling::OTEL_TRACES_SAMPLER {
                        hints = DEFAULT_HINTS;
                    }
                    env.reject(e)?;
                }
                (sampler, hints)
            }
            None => (
                Box::new(otel_sampling::ParentBased::new(otel_sampling::AlwaysOn)),
                DEFAULT_HINTS,
            ),
        };
        let limits = match self.span_limits.or(file_parts.limits) {
            Some(l) => l,
            None if read_env => span_limits_from_env(&mut env)?,
            None => SpanLimits::default(),
        };
        let value_length = match self.value_length_limit.or(file_parts.value_length_limit) {
            Some(n) => Some(n),
            None if read_env => match env.positive(OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT)? {
                Some(n) => Some(n),
                None => env.positive(OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT)?,
            },
            None => None,
        };
        let batch = match self.batch {
            Some(b) => b,
            None if read_env => BatchConfig::from_env_reader(&mut env)?,
            None => BatchConfig::default(),
        };
        #[cfg_attr(not(feature = "yaml"), allow(unused_variables))]
        let code_exporters = self.exporters.is_some();
        let mut exporters = match self.exporters {
            Some(e) => e,
            None if read_env => exporters_from_env(&mut env)?,
            None => vec![ExporterChoice::Otlp(None)],
        };
        if self.console && !exporters.iter().any(|e| matches!(e, ExporterChoice::Console)) {
            exporters.push(ExporterChoice::Console);
        }
        let propagator: BoxedPropagator = match self.propagator.or(file_parts.propagator) {
            Some(p) => p,
            None => {
                let names = if read_env { env.get(OTEL_PROPAGATORS) } else { None };
                let names = names.unwrap_or_else(|| DEFAULT_PROPAGATORS.to_owned());
                match propagator_from_names(&names, true) {
                    Ok(p) => Box::new(p),
                    Err(e) => {
                        env.reject(ConfigError::new(
                            OTEL_PROPAGATORS,
                            names.clone(),
                            format!(
                                "{} ({:?} is unknown)",
                                otel_propagation::KNOWN_PROPAGATORS.join(", "),
                                e.name()
                            ),
                        ))?;
                        Box::new(default_propagator())
                    }
                }
            }
        };

        let counters = Arc::new(Counters::new());
        let sampler: Arc<dyn ShouldSample> = Arc::from(sampler);
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_sampler(SharedSampler(sampler.clone()))
            .with_span_limits(limits);
        let mut processors: Vec<Box<dyn SpanProcessor>> = Vec::new();
        // The file's processors, unless code chose the exporters.
        #[cfg(feature = "yaml")]
        let (exporters, batch) = match file_parts.processors {
            Some(specs) if !code_exporters => {
                let mut batch = batch;
                let mut console = false;
                for spec in specs {
                    processors.push(file_processor(spec, &counters, &mut batch, &mut console)?);
                }
                if self.console && !console {
                    processors.push(Box::new(SimpleSpanProcessor::new(ConsoleExporter)));
                }
                (Vec::new(), batch)
            }
            _ => (exporters, batch),
        };
        for choice in exporters {
            processors.push(match choice {
                ExporterChoice::None => continue,
                ExporterChoice::Console => Box::new(SimpleSpanProcessor::new(ConsoleExporter)),
                ExporterChoice::Otlp(otlp) => {
                    let otlp = match otlp {
                        Some(code) => *code,
                        None if read_env => OtlpExporterBuilder::from_env_reader(&mut env)?,
                        None => OtlpExporter::builder(),
                    };
                    let exporter = otlp.with_counters(counters.clone()).build()?;
                    Box::new(
                        BatchSpanProcessor::builder(exporter)
                            .with_config(batch)
                            .with_counters(counters.clone())
                            .build(),
                    )
                }
            });
        }
        processors.extend(self.extra_processors);
        // Shared by the SDK provider (OpenTelemetry API spans) and the
        // `tracing` layer's recorder; the resource is set here, once.
        let shared: Vec<Arc<dyn SpanProcessor>> = processors
            .into_iter()
            .map(|p| {
                let mut p: Box<dyn SpanProcessor> = match value_length {
                    Some(n) => Box::new(ValueLengthLimit::new(BoxedProcessor(p), n)),
                    None => p,
                };
                p.set_resource(&resource);
                Arc::from(p)
            })
            .collect();
        for p in &shared {
            builder = builder.with_span_processor(SharedProcessor(p.clone()));
        }
        let provider = builder.build();
        let recorder = Arc::new(Recorder::new(
            sampler,
            hints,
            limits,
            shared,
            counters.clone(),
            batch.max_queue_size,
        ));
        if self.set_globals {
            global::set_tracer_provider(provider.clone());
            global::set_text_map_propagator(PropagatorHandle(propagator));
        }
        let mut warnings = env.take_warnings();
        warnings.extend(file_warnings);
        Ok(TelemetryHandle {
            provider: Some(provider),
            recorder: Some(recorder),
            resource,
            counters,
            shut_down: AtomicBool::new(false),
            shutdown_timeout: self.shutdown_timeout,
            warnings,
        })
    }
}

/// What a declarative configuration gives the build, where code said nothing.
#[derive(Default)]
struct FileParts {
    sampler: Option<(Box<dyn ShouldSample>, SamplerHints)>,
    limits: Option<SpanLimits>,
    value_length_limit: Option<usize>,
    propagator: Option<BoxedPropagator>,
    #[cfg(feature = "yaml")]
    processors: Option<Vec<crate::config_file::ProcessorSpec>>,
}

#[cfg(feature = "yaml")]
type LoadedConfig = crate::config_file::FileConfig;
#[cfg(not(feature = "yaml"))]
type LoadedConfig = ();

/// Reads a declarative configuration, its `${NAME}` references from `env`.
fn load_config(source: ConfigSource, env: &EnvReader<'_>, mode: EnvMode) -> Result<LoadedConfig, ConfigError> {
    #[cfg(feature = "yaml")]
    {
        let lookup = |name: &str| env.get(name);
        match source {
            ConfigSource::Path(path) => crate::config_file::load(&path, &lookup, mode),
            ConfigSource::Yaml(text) => crate::config_file::parse(&text, &lookup, mode),
        }
    }
    #[cfg(not(feature = "yaml"))]
    {
        let _ = (env, mode);
        let path = match source {
            ConfigSource::Path(p) | ConfigSource::Yaml(p) => p,
        };
        Err(ConfigError::new(
            OTEL_CONFIG_FILE,
            path,
            "no configuration file: declarative configuration needs otel-core's `yaml` feature",
        ))
    }
}

/// Builds one processor of a declarative configuration. The recorder's
/// queue follows the first batch processor's.
#[cfg(feature = "yaml")]
fn file_processor(
    spec: crate::config_file::ProcessorSpec,
    counters: &Arc<Counters>,
    first_batch: &mut BatchConfig,
    console: &mut bool,
) -> Result<Box<dyn SpanProcessor>, ConfigError> {
    use crate::config_file::{ExporterSpec, ProcessorSpec};
    Ok(match spec {
        ProcessorSpec::Batch(config, exporter) => {
            *first_batch = config;
            match exporter {
                ExporterSpec::Otlp(b) => Box::new(
                    BatchSpanProcessor::builder(b.with_counters(counters.clone()).build()?)
                        .with_config(config)
                        .with_counters(counters.clone())
                        .build(),
                ),
                ExporterSpec::Console => {
                    *console = true;
                    Box::new(
                        BatchSpanProcessor::builder(ConsoleExporter)
                            .with_config(config)
                            .with_counters(counters.clone())
                            .build(),
                    )
                }
            }
        }
        ProcessorSpec::Simple(ExporterSpec::Otlp(b)) => {
            Box::new(SimpleSpanProcessor::new(b.with_counters(counters.clone()).build()?))
        }
        ProcessorSpec::Simple(ExporterSpec::Console) => {
            *console = true;
            Box::new(SimpleSpanProcessor::new(ConsoleExporter))
        }
    })
}

/// The variable [`TelemetryBuilder::init`] reads its log filter from.
pub const RUST_LOG: &str = "RUST_LOG";
/// The log filter of [`TelemetryBuilder::init`] when none is given.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// How [`TelemetryBuilder::init`] writes log lines (to stdout, each with the
/// `trace_id`, `span_id` and `trace_flags` of its span).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default format, no colours)
    /// ending in ` trace_id=… span_id=… trace_flags=…`.
    #[default]
    Text,
    /// One JSON object per line, event fields at the top level.
    Json,
    /// No log lines; spans are still traced.
    Off,
}

/// The filter from code, else `RUST_LOG`, else the default; a problem when
/// the chosen directives do not parse (the default is used then).
fn log_filter(code: Option<&str>, env: Option<&str>) -> (tracing_subscriber::EnvFilter, Option<ConfigError>) {
    let (directives, variable) = match (code, env) {
        (Some(c), _) => (c, "log filter (with_log_filter)"),
        (None, Some(e)) => (e, RUST_LOG),
        (None, None) => (DEFAULT_LOG_FILTER, RUST_LOG),
    };
    match tracing_subscriber::EnvFilter::builder().parse(directives) {
        Ok(f) => (f, None),
        Err(e) => (
            tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER),
            Some(ConfigError::new(
                variable,
                directives,
                format!("comma-separated directives such as `info,my_crate=debug` ({e})"),
            )),
        ),
    }
}

fn default_propagator() -> CompositePropagator {
    CompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new().with_random_flag_for_new_traces(true)),
        Box::new(otel_propagation::BaggagePropagator::new()),
    ])
}

fn exporters_from_env(env: &mut EnvReader<'_>) -> Result<Vec<ExporterChoice>, ConfigError> {
    let Some(value) = env.get(OTEL_TRACES_EXPORTER) else {
        return Ok(vec![ExporterChoice::Otlp(None)]);
    };
    let mut out = Vec::new();
    for name in value
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
    {
        match name.as_str() {
            "otlp" => out.push(ExporterChoice::Otlp(None)),
            // `logging` is the specification's deprecated name for `console`.
            "console" | "logging" => out.push(ExporterChoice::Console),
            "none" => return Ok(vec![ExporterChoice::None]),
            _ => {
                env.reject(ConfigError::new(
                    OTEL_TRACES_EXPORTER,
                    value.clone(),
                    "otlp, console, none (comma-separated)",
                ))?;
                return Ok(vec![ExporterChoice::Otlp(None)]);
            }
        }
    }
    Ok(out)
}

fn span_limits_from_env(env: &mut EnvReader<'_>) -> Result<SpanLimits, ConfigError> {
    let mut limits = SpanLimits::default();
    let general = env
        .positive(OTEL_ATTRIBUTE_COUNT_LIMIT)?
        .map(|n| n.min(u32::MAX as usize) as u32);
    let limit =
        |env: &mut EnvReader<'_>, var: &'static str, general: Option<u32>| -> Result<Option<u32>, ConfigError> {
            Ok(env.positive(var)?.map(|n| n.min(u32::MAX as usize) as u32).or(general))
        };
    if let Some(n) = limit(env, OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, general)? {
        limits.max_attributes_per_span = n;
    }
    if let Some(n) = limit(env, OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT, general)? {
        limits.max_attributes_per_event = n;
    }
    if let Some(n) = limit(env, OTEL_LINK_ATTRIBUTE_COUNT_LIMIT, general)? {
        limits.max_attributes_per_link = n;
    }
    if let Some(n) = limit(env, OTEL_SPAN_EVENT_COUNT_LIMIT, None)? {
        limits.max_events_per_span = n;
    }
    if let Some(n) = limit(env, OTEL_SPAN_LINK_COUNT_LIMIT, None)? {
        limits.max_links_per_span = n;
    }
    Ok(limits)
}

/// What the default sampler (`parentbased_always_on`) lets the layer skip.
const DEFAULT_HINTS: SamplerHints = SamplerHints {
    follows_local_parent: true,
    reads_attributes: false,
};

/// What is known of a sampler given in code: whether it follows local parents
/// (see [`otel_sampling::ParentBased::follows_local_parents`]) and whether it
/// may read attributes. Unknown samplers are called for every span, with
/// every attribute.
fn sampler_hints<S: ShouldSample + 'static>(sampler: &S) -> SamplerHints {
    use otel_sampling::{AlwaysOff, AlwaysOn, ParentBased, ProbabilitySampler, RateLimitedSampler};
    let any = sampler as &dyn std::any::Any;
    let ignores_attributes = |any: &dyn std::any::Any| {
        any.is::<AlwaysOn>()
            || any.is::<AlwaysOff>()
            || any.is::<ProbabilitySampler>()
            || any.is::<RateLimitedSampler>()
    };
    macro_rules! parent_based {
        ($($root:ty),*) => {
            $(if let Some(p) = any.downcast_ref::<ParentBased<$root>>() {
                return SamplerHints {
                    follows_local_parent: p.follows_local_parents(),
                    reads_attributes: !ignores_attributes(p.root() as &dyn std::any::Any),
                };
            })*
        };
    }
    parent_based!(AlwaysOn, AlwaysOff, ProbabilitySampler, RateLimitedSampler);
    if let Some(p) = any.downcast_ref::<ParentBased<otel_sampling::BoxedSampler>>() {
        return SamplerHints {
            follows_local_parent: p.follows_local_parents(),
            reads_attributes: true,
        };
    }
    if let Some(sdk) = any.downcast_ref::<opentelemetry_sdk::trace::Sampler>() {
        // The SDK's built-in samplers read no attributes.
        return SamplerHints {
            follows_local_parent: matches!(sdk, opentelemetry_sdk::trace::Sampler::ParentBased(_)),
            reads_attributes: false,
        };
    }
    SamplerHints {
        follows_local_parent: false,
        reads_attributes: !ignores_attributes(any),
    }
}

/// The installed sampler, shared by the SDK provider and the `tracing` layer.
#[derive(Debug, Clone)]
struct SharedSampler(Arc<dyn ShouldSample>);

impl ShouldSample for SharedSampler {
    fn should_sample(
        &self,
        parent_context: Option<&opentelemetry::Context>,
        trace_id: opentelemetry::trace::TraceId,
        name: &str,
        span_kind: &opentelemetry::trace::SpanKind,
        attributes: &[KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// A processor shared by the SDK provider and the `tracing` layer's recorder.
#[derive(Debug)]
struct SharedProcessor(Arc<dyn SpanProcessor>);

impl SpanProcessor for SharedProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }
    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.0.on_end(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, _resource: &Resource) {
        // Set once, when the pipeline was built.
    }
}

/// A boxed processor where a concrete type is needed.
#[derive(Debug)]
struct BoxedProcessor(Box<dyn SpanProcessor>);

impl SpanProcessor for BoxedProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }
    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.0.on_end(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// The installed global propagator.
#[derive(Debug)]
struct PropagatorHandle(BoxedPropagator);

impl TextMapPropagator for PropagatorHandle {
    fn inject_context(&self, cx: &opentelemetry::Context, injector: &mut dyn opentelemetry::propagation::Injector) {
        self.0.inject_context(cx, injector);
    }
    fn extract_with_context(
        &self,
        cx: &opentelemetry::Context,
        extractor: &dyn opentelemetry::propagation::Extractor,
    ) -> opentelemetry::Context {
        self.0.extract_with_context(cx, extractor)
    }
    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        self.0.fields()
    }
}

/// The installed pipeline. Flush and shut it down explicitly; dropping it shuts
/// down with the configured deadline.
#[must_use = "dropping the handle shuts the pipeline down at once; keep it (`let telemetry = ...`) for the life of the program"]
pub struct TelemetryHandle {
    provider: Option<SdkTracerProvider>,
    recorder: Option<Arc<Recorder>>,
    resource: Resource,
    counters: Arc<Counters>,
    shut_down: AtomicBool,
    shutdown_timeout: Duration,
    warnings: Vec<ConfigError>,
}

impl fmt::Debug for TelemetryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryHandle")
            .field("enabled", &self.provider.is_some())
            .field("counters", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl TelemetryHandle {
    fn disabled() -> Self {
        TelemetryHandle {
            provider: None,
            recorder: None,
            resource: Resource::builder_empty().build(),
            counters: Arc::new(Counters::new()),
            shut_down: AtomicBool::new(false),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            warnings: Vec::new(),
        }
    }

    /// Whether a pipeline is installed (false when `OTEL_SDK_DISABLED=true`).
    pub fn is_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// The tracer provider (`None` when disabled).
    pub fn provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// A tracer of this pipeline (a no-op tracer when disabled).
    pub fn tracer(&self, name: &'static str) -> SdkTracer {
        match &self.provider {
            Some(p) => p.tracer(name),
            None => SdkTracerProvider::builder().build().tracer(name),
        }
    }

    /// A `tracing_subscriber` layer recording `tracing` spans into this
    /// pipeline (sampler, processors, exporter); see [`crate::layer`]. Add it
    /// to your subscriber, or let [`TelemetryBuilder::init`] do it. When the
    /// pipeline is disabled the layer does nothing.
    ///
    /// ```
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// let telemetry = otel_core::Telemetry::builder().without_exporter().install().unwrap();
    /// let subscriber = tracing_subscriber::registry().with(telemetry.tracing_layer());
    /// # drop(subscriber);
    /// ```
    pub fn tracing_layer(&self) -> TracingLayer {
        TracingLayer::new(self.recorder.clone())
    }

    /// The detected resource.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Export counters (enqueued, exported, dropped, failed, rejected, retries).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Problems found in the environment that were replaced by defaults.
    pub fn warnings(&self) -> &[ConfigError] {
        &self.warnings
    }

    /// Exports everything ended so far, waiting for delivery.
    ///
    /// # Errors
    ///
    /// When an export fails or times out.
    pub fn force_flush(&self) -> OTelSdkResult {
        if let Some(r) = &self.recorder {
            r.drain();
        }
        match &self.provider {
            Some(p) => p.force_flush(),
            None => Ok(()),
        }
    }

    /// Exports everything ended so far and stops, within `timeout`, and says
    /// how the export went over the pipeline's life: spans delivered, spans
    /// left undelivered (dropped from a full queue, failed, rejected), the last
    /// export error. Check [`ShutdownReport::undelivered`]: a shutdown that
    /// finished in time can still have lost spans to an unreachable receiver.
    ///
    /// # Errors
    ///
    /// When the deadline passes first or an export fails while flushing
    /// (the error carries the report), or shutdown already happened.
    pub fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport, ShutdownError> {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return Err(ShutdownError {
                error: opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown,
                report: self.report(),
            });
        }
        if let Some(r) = &self.recorder {
            r.shutdown();
        }
        let result = match &self.provider {
            Some(p) => p.shutdown_with_timeout(timeout),
            None => Ok(()),
        };
        let report = self.report();
        match result {
            Ok(()) => Ok(report),
            Err(error) => Err(ShutdownError { error, report }),
        }
    }

    /// How the export has gone so far (what [`shutdown`](Self::shutdown) returns).
    pub fn report(&self) -> ShutdownReport {
        let c = self.counters.snapshot();
        // Accepted into the queue and not confirmed: failed, or still queued
        // or in flight; plus never queued (dropped), plus refused by the receiver.
        let unconfirmed = c.enqueued.saturating_sub(c.exported);
        ShutdownReport {
            exported: c.exported.saturating_sub(c.rejected),
            undelivered: c.dropped + unconfirmed + c.rejected,
            last_error: self.counters.last_error(),
        }
    }
}

/// What the pipeline delivered over its life, from our batch processor and
/// OTLP exporter's counters (spans given to processors of your own are not
/// counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Spans the receiver accepted.
    pub exported: u64,
    /// Spans that never reached the receiver: dropped (queue full, or still
    /// queued when the deadline passed), in failed exports, or rejected by the
    /// receiver.
    pub undelivered: u64,
    /// Why the last export that gave up failed.
    pub last_error: Option<String>,
}

impl ShutdownReport {
    /// True when no span was lost.
    pub fn is_complete(&self) -> bool {
        self.undelivered == 0
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} spans exported, {} undelivered", self.exported, self.undelivered)?;
        if let Some(e) = &self.last_error {
            write!(f, " (last error: {e})")?;
        }
        Ok(())
    }
}

/// A shutdown that did not finish cleanly, with what was delivered until then.
#[derive(Debug)]
pub struct ShutdownError {
    error: opentelemetry_sdk::error::OTelSdkError,
    report: ShutdownReport,
}

impl ShutdownError {
    /// The export counts at the time of the failure.
    pub fn report(&self) -> &ShutdownReport {
        &self.report
    }

    /// True when the pipeline had already been shut down.
    pub fn is_already_shut_down(&self) -> bool {
        matches!(self.error, opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown)
    }

    /// True when the deadline passed before everything was exported.
    pub fn is_timeout(&self) -> bool {
        matches!(self.error, opentelemetry_sdk::error::OTelSdkError::Timeout(_))
    }
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "telemetry shutdown: {}; {}", self.error, self.report)
    }
}

impl std::error::Error for ShutdownError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl Drop for TelemetryHandle {
    fn drop(&mut self) {
        if self.shut_down.load(Ordering::SeqCst) {
            return;
        }
        match self.shutdown(self.shutdown_timeout) {
            Err(e) => tracing::warn!(target: "otel_core", "telemetry shutdown on drop: {e}"),
            Ok(report) if !report.is_complete() => {
                tracing::warn!(target: "otel_core", "telemetry shutdown on drop: {report}");
            }
            Ok(_) => {}
        }
    }
}
