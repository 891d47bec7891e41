//! What pipeline stages are to each other: consumers that pass spans on,
//! stages that buffer and flush, and the fan-out to several exporters. The
//! stages themselves live in `processors/` and `exporters/`.

use super::wire::SpanRec;
use std::sync::Arc;

/// Takes spans; never blocks for long.
pub(crate) trait Consumer: Send + Sync {
    fn consume(&self, spans: Vec<SpanRec>);
}

/// A stage that buffers and can be told to pass everything on.
pub(crate) trait Flush: Send + Sync {
    /// Passes every buffered span downstream (shutdown).
    fn flush(&self);
}

/// Sends the same spans to several consumers.
pub(crate) struct Fanout(pub(crate) Vec<Arc<dyn Consumer>>);

impl Consumer for Fanout {
    fn consume(&self, spans: Vec<SpanRec>) {
        match self.0.split_last() {
            None => {}
            Some((last, rest)) => {
                for c in rest {
                    c.consume(spans.clone());
                }
                last.consume(spans);
            }
        }
    }
}
