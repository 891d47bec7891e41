//! Carriers: adapters between propagators and the header maps of HTTP, gRPC and AMQP.
//!
//! Each carrier module offers an extractor over a borrowed map, an injector over
//! a mutable one, and `extract`/`inject` shorthands taking any propagator.

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "lapin")]
pub mod lapin;
#[cfg(feature = "tonic")]
pub mod tonic;
