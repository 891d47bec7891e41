//! otel-export
