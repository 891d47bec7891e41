//! The SDK-level `OTEL_*` variables `otel-core` reads itself (the exporter,
//! processor, sampler and propagator variables are read by their crates).

/// `OTEL_SDK_DISABLED`: `true` installs nothing.
pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_CONFIG_FILE`: a declarative configuration file (feature `yaml`) that
/// configures the pipeline instead of the other `OTEL_*` variables.
pub const OTEL_CONFIG_FILE: &str = "OTEL_CONFIG_FILE";
/// `OTEL_SERVICE_NAME`.
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `OTEL_RESOURCE_ATTRIBUTES`.
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// `OTEL_TRACES_EXPORTER`: `otlp` (default), `console`, `none`, comma-separated.
pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `OTEL_PROPAGATORS`: default `tracecontext,baggage`.
pub const OTEL_PROPAGATORS: &str = "OTEL_PROPAGATORS";
/// `OTEL_ATTRIBUTE_COUNT_LIMIT`: the default for the attribute count limits below.
pub const OTEL_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`: the default for span attribute value lengths.
pub const OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";
/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` (default 128).
pub const OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT` (default: no limit).
pub const OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT";
/// `OTEL_SPAN_EVENT_COUNT_LIMIT` (default 128).
pub const OTEL_SPAN_EVENT_COUNT_LIMIT: &str = "OTEL_SPAN_EVENT_COUNT_LIMIT";
/// `OTEL_SPAN_LINK_COUNT_LIMIT` (default 128).
pub const OTEL_SPAN_LINK_COUNT_LIMIT: &str = "OTEL_SPAN_LINK_COUNT_LIMIT";
/// `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT` (default 128).
pub const OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT` (default 128).
pub const OTEL_LINK_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT";
/// The propagators used when `OTEL_PROPAGATORS` is unset.
pub const DEFAULT_PROPAGATORS: &str = "tracecontext,baggage";
