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

#[cfg(test)]
mod tests {
    use super::{Consumer, Fanout};
    use crate::sidecar::testing::{Recorder, spans, trace};
    use crate::sidecar::wire::LiveBytes;
    use std::sync::Arc;

    #[test]
    fn fanout_gives_every_consumer_every_span() {
        let (a, b, c) = (Recorder::new(), Recorder::new(), Recorder::new());
        let fan = Fanout(vec![a.clone() as Arc<dyn Consumer>, b.clone(), c.clone()]);
        let live = LiveBytes::new();
        fan.consume(spans("a", &trace(1, 3), &live));
        for r in [&a, &b, &c] {
            assert_eq!(r.ids(), vec![(1, 1), (1, 2), (1, 3)]);
        }
        drop((a, b, c, fan));
        assert_eq!(live.get(), 0, "copies are accounted and released");
        Fanout(Vec::new()).consume(spans("a", &trace(2, 1), &live));
        assert_eq!(live.get(), 0);
    }
}
