#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! The `otel-collector` binary with real components, by area: the Python
//! OpenTelemetry SDK as the client, second instances with a `file`
//! exporter and rotel as receivers, backends behind a `loadbalancing`
//! instance, SIGTERM with traces buffered, malformed input, overload.
//! Shared helpers are in `tests/proc`.

#[path = "../proc/mod.rs"]
mod proc;

mod bad_input;
mod config;
mod durability;
mod end_to_end;
mod grpc_encodings;
mod load_balancing;
mod overload;
