//! One-call setup: `Telemetry::from_env().install()`.

use crate::console::ConsoleExporter;
use crate::env::*;
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

/// Why the pipeline could not be installed: names the variable or setting, the
/// value, and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallError(ConfigError);

impl InstallError {
    /// The variable or setting that was wrong.
    pub fn variable(&self) -> &str {
        self.0.variable()
    }

    /// The rejected value.
    pub fn value(&self) -> &str {
        self.0.value()
    }
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for InstallError {}

impl From<ConfigError> for InstallError {
    fn from(e: ConfigError) -> Self {
        InstallError(e)
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
    sampler: Option<Box<dyn ShouldSample>>,
    exporters: Option<Vec<ExporterChoice>>,
    extra_processors: Vec<Box<dyn SpanProcessor>>,
    batch: Option<BatchConfig>,
    span_limits: Option<SpanLimits>,
    value_length_limit: Option<usize>,
    propagator: Option<BoxedPropagator>,
    set_globals: bool,
    shutdown_timeout: Duration,
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
    pub fn with_sampler(mut self, sampler: impl ShouldSample + 'static) -> Self {
        self.sampler = Some(Box::new(sampler));
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

    /// Also prints spans to stdout.
    pub fn with_console_exporter(mut self) -> Self {
        self.exporters
            .get_or_insert_with(Vec::new)
            .push(ExporterChoice::Console);
        self
    }

    /// Exports nothing (spans still reach processors added with
    /// [`with_span_processor`](Self::with_span_processor)).
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
        let read_env = self.env.is_some();
        let mode = self.env.unwrap_or(EnvMode::Lenient);
        let mut env = match self.env_lookup {
            Some(lookup) => EnvReader::from_fn(lookup, mode),
            None => EnvReader::process(mode),
        };

        if read_env && env.boolean(OTEL_SDK_DISABLED)?.unwrap_or(false) {
            return Ok(TelemetryHandle::disabled());
        }

        let resource = resource::detect(&mut env, &self.resource, read_env)?;
        let sampler: Box<dyn ShouldSample> = match self.sampler {
            Some(s) => s,
            None if read_env => {
                let name = env.get(otel_sampling::OTEL_TRACES_SAMPLER).unwrap_or_default();
                let arg = env.get(otel_sampling::OTEL_TRACES_SAMPLER_ARG);
                let (sampler, problem) = otel_sampling::sampler_or_default(&name, arg.as_deref());
                if let Some(e) = problem {
                    env.reject(ConfigError::new(e.variable(), e.value(), strip_prefix(&e.to_string())))?;
                }
                sampler
            }
            None => Box::new(otel_sampling::ParentBased::new(otel_sampling::AlwaysOn)),
        };
        let limits = match self.span_limits {
            Some(l) => l,
            None if read_env => span_limits_from_env(&mut env)?,
            None => SpanLimits::default(),
        };
        let value_length = match self.value_length_limit {
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
        let exporters = match self.exporters {
            Some(e) => e,
            None if read_env => exporters_from_env(&mut env)?,
            None => vec![ExporterChoice::Otlp(None)],
        };
        let propagator: BoxedPropagator = match self.propagator {
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
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_sampler(sampler)
            .with_span_limits(limits);
        for choice in exporters {
            let processor: Box<dyn SpanProcessor> = match choice {
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
            };
            builder = match value_length {
                Some(n) => builder.with_span_processor(ValueLengthLimit::new(BoxedProcessor(processor), n)),
                None => builder.with_span_processor(BoxedProcessor(processor)),
            };
        }
        for p in self.extra_processors {
            builder = match value_length {
                Some(n) => builder.with_span_processor(ValueLengthLimit::new(BoxedProcessor(p), n)),
                None => builder.with_span_processor(BoxedProcessor(p)),
            };
        }
        let provider = builder.build();
        if self.set_globals {
            global::set_tracer_provider(provider.clone());
            global::set_text_map_propagator(PropagatorHandle(propagator));
        }
        let warnings = env.take_warnings();
        if !tracing::dispatcher::has_been_set() {
            // The warnings went to `tracing` with no subscriber to show them.
            for w in &warnings {
                eprintln!("otel-core: {w}; using the default");
            }
        }
        Ok(TelemetryHandle {
            provider: Some(provider),
            resource,
            counters,
            shut_down: AtomicBool::new(false),
            shutdown_timeout: self.shutdown_timeout,
            warnings,
        })
    }
}

fn strip_prefix(message: &str) -> String {
    // SamplerConfigError's message already names the variable; keep what it accepts.
    message
        .split_once("accepted: ")
        .map_or_else(|| message.to_owned(), |(_, a)| a.to_owned())
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

/// A boxed processor handed to the SDK (which takes concrete types).
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
pub struct TelemetryHandle {
    provider: Option<SdkTracerProvider>,
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
        match &self.provider {
            Some(p) => p.force_flush(),
            None => Ok(()),
        }
    }

    /// Exports everything ended so far and stops, within `timeout`.
    ///
    /// # Errors
    ///
    /// When the deadline passes first, or shutdown already happened.
    pub fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return Err(opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown);
        }
        match &self.provider {
            Some(p) => p.shutdown_with_timeout(timeout),
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryHandle {
    fn drop(&mut self) {
        if !self.shut_down.load(Ordering::SeqCst)
            && let Err(e) = self.shutdown(self.shutdown_timeout)
        {
            tracing::warn!(target: "otel_core", "telemetry shutdown on drop: {e}");
        }
    }
}
