//! OTLP export for OpenTelemetry spans: a batch span processor that never blocks
//! the application or drops a span without counting it, and OTLP exporters over
//! gRPC, HTTP/protobuf and HTTP/JSON with our own encoder.

pub mod encode;
pub mod wire;
