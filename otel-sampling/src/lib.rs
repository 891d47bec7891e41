//! otel-sampling
