//! otel-integrations
