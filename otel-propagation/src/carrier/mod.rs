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

/// Every value of a header, for `Extractor::get_all`; `None` when there is none.
/// Usually there is one value: the `Vec` is allocated for one and grows for more.
#[cfg(any(feature = "http", feature = "tonic"))]
fn all_values<'a>(mut values: impl Iterator<Item = &'a str>) -> Option<Vec<&'a str>> {
    let first = values.next()?;
    let mut out = Vec::with_capacity(1);
    out.push(first);
    out.extend(values);
    Some(out)
}
