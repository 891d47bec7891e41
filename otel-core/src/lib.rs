//! otel-core
