//! otel-collector
