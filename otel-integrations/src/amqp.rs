//! lapin (AMQP 0.9.1 / RabbitMQ) helpers: a PRODUCER span per publish with the
//! context in the message headers, and a CONSUMER `process` span per delivery,
//! child of (and linked to) the producer span, current while the handler runs.
//!
//! ```no_run
//! use otel_integrations::amqp::{publish, process, Settle};
//! # async fn demo(channel: lapin::Channel, delivery: lapin::message::Delivery) -> lapin::Result<()> {
//! publish(&channel, "", "orders", Default::default(), b"order #1", Default::default()).await?;
//! let settled = process(&delivery, "orders", |d| async move {
//!     // handle d.data ...
//!     Ok::<_, std::io::Error>(Settle::Ack)
//! }).await?;
//! # let _ = settled; Ok(()) }
//! ```

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions};

use crate::propagation::Propagation;
use crate::tracer::TracerSource;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, PublisherConfirm};
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Link, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use otel_propagation::carrier::lapin::{AmqpHeaderExtractor, AmqpHeaderInjector};
use std::fmt;
use std::future::Future;

/// The instrumentation scope of AMQP spans.
pub const TRACER_NAME: &str = crate::tracer::SCOPE;

/// How a processed delivery is settled with the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Acknowledge: done.
    Ack,
    /// Negative acknowledgement, optionally back to the queue.
    Nack {
        /// Requeue the message.
        requeue: bool,
    },
    /// Reject, optionally back to the queue.
    Reject {
        /// Requeue the message.
        requeue: bool,
    },
}

fn destination(exchange: &str, routing_key: &str) -> String {
    if exchange.is_empty() {
        routing_key.to_owned()
    } else {
        exchange.to_owned()
    }
}

/// The tracer and propagator the AMQP helpers use: the globals by default
/// ([`publish`], [`process`] and [`extract`] use those), or a given
/// provider's tracer and a given propagator.
#[derive(Clone, Default)]
pub struct Amqp {
    tracer: TracerSource,
    propagation: Propagation,
}

impl fmt::Debug for Amqp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Amqp")
            .field("tracer", &self.tracer)
            .field("propagation", &self.propagation)
            .finish()
    }
}

impl Amqp {
    /// The global tracer provider and propagator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records spans with `provider` (its resource names the service).
    pub fn with_tracer_provider<P, T, Sp>(mut self, provider: &P) -> Self
    where
        P: TracerProvider<Tracer = T>,
        T: Tracer<Span = Sp> + Send + Sync + 'static,
        Sp: opentelemetry::trace::Span + Send + Sync + 'static,
    {
        self.tracer = TracerSource::from_provider(provider);
        self
    }

    /// Reads and writes message headers with `propagator`.
    pub fn with_propagator(mut self, propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        self.propagation = Propagation::custom(propagator);
        self
    }

    /// The context a delivery carries (the producer span).
    pub fn extract(&self, delivery: &Delivery) -> Context {
        let empty = FieldTable::default();
        let headers = delivery.properties.headers().as_ref().unwrap_or(&empty);
        self.propagation.extract(&AmqpHeaderExtractor(headers))
    }

    /// Publishes a message in a PRODUCER span; see [`publish`].
    ///
    /// # Errors
    ///
    /// lapin's publish error (also recorded on the span).
    pub async fn publish(
        &self,
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        options: BasicPublishOptions,
        payload: &[u8],
        properties: BasicProperties,
    ) -> lapin::Result<PublisherConfirm> {
        let dest = destination(exchange, routing_key);
        let mut attributes = vec![
            KeyValue::new("messaging.system", "rabbitmq"),
            KeyValue::new("messaging.destination.name", dest.clone()),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.operation.name", "publish"),
            KeyValue::new("messaging.message.body.size", payload.len() as i64),
        ];
        if !routing_key.is_empty() {
            attributes.push(KeyValue::new(
                "messaging.rabbitmq.destination.routing_key",
                routing_key.to_owned(),
            ));
        }
        if let Some(id) = properties.message_id() {
            attributes.push(KeyValue::new("messaging.message.id", id.to_string()));
        }
        let span = self.tracer.with(|tracer| {
            tracer
                .span_builder(format!("{dest} publish"))
                .with_kind(SpanKind::Producer)
                .with_attributes(attributes)
                .start_with_context(tracer, &Context::current())
        });
        let cx = Context::current().with_span(span);
        let mut headers = properties.headers().clone().unwrap_or_default();
        self.propagation.inject(&cx, &mut AmqpHeaderInjector(&mut headers));
        let result = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                payload,
                properties.with_headers(headers),
            )
            .await;
        let span = cx.span();
        if let Err(e) = &result {
            span.set_status(Status::error(e.to_string()));
            span.set_attribute(KeyValue::new("error.type", "publish"));
        }
        span.end();
        result
    }

    /// Processes a delivery in a CONSUMER span; see [`process`].
    ///
    /// # Errors
    ///
    /// lapin's error from settling the delivery.
    pub async fn process<F, Fut, E>(&self, delivery: &Delivery, queue: &str, handler: F) -> lapin::Result<Settle>
    where
        F: FnOnce(&Delivery) -> Fut,
        Fut: Future<Output = Result<Settle, E>>,
        E: fmt::Display,
    {
        let parent = self.extract(delivery);
        let producer = parent.span().span_context().clone();
        let mut attributes = vec![
            KeyValue::new("messaging.system", "rabbitmq"),
            KeyValue::new(
                "messaging.destination.name",
                destination(delivery.exchange.as_str(), queue),
            ),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.message.body.size", delivery.data.len() as i64),
            KeyValue::new("messaging.rabbitmq.message.delivery_tag", delivery.delivery_tag as i64),
        ];
        if !delivery.routing_key.as_str().is_empty() {
            attributes.push(KeyValue::new(
                "messaging.rabbitmq.destination.routing_key",
                delivery.routing_key.to_string(),
            ));
        }
        if let Some(id) = delivery.properties.message_id() {
            attributes.push(KeyValue::new("messaging.message.id", id.to_string()));
        }
        let mut builder = opentelemetry::trace::SpanBuilder::from_name(format!("{queue} process"))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes);
        if producer.is_valid() {
            builder = builder.with_links(vec![Link::with_context(producer)]);
        }
        let span = self.tracer.with(|tracer| builder.start_with_context(tracer, &parent));
        let cx = parent.with_span(span);

        // The handler is called with the consumer span current too: an
        // `#[instrument]` async fn makes its span when called, not when polled.
        let work = {
            let _current = cx.clone().attach();
            handler(delivery)
        };
        let outcome = work.with_context(cx.clone()).await;
        let span = cx.span();
        let settle = match outcome {
            Ok(settle) => settle,
            Err(e) => {
                span.set_status(Status::error(e.to_string()));
                span.set_attribute(KeyValue::new("error.type", "handler"));
                Settle::Reject { requeue: false }
            }
        };
        let (name, result) = match settle {
            Settle::Ack => ("ack", delivery.ack(BasicAckOptions::default()).await),
            Settle::Nack { requeue } => (
                "nack",
                delivery
                    .nack(BasicNackOptions {
                        requeue,
                        ..Default::default()
                    })
                    .await,
            ),
            Settle::Reject { requeue } => ("reject", delivery.reject(BasicRejectOptions { requeue }).await),
        };
        span.set_attribute(KeyValue::new("messaging.rabbitmq.settle", name));
        span.add_event(
            name,
            vec![KeyValue::new(
                "requeue",
                matches!(
                    settle,
                    Settle::Nack { requeue: true } | Settle::Reject { requeue: true }
                ),
            )],
        );
        if let Err(e) = &result {
            span.set_status(Status::error(e.to_string()));
        }
        span.end();
        result.map(|_| settle)
    }
}

/// Publishes a message in a PRODUCER span `{exchange or queue} publish` (child
/// of the current context), with the span's context added to the message
/// headers. The span ends when the broker has the message; the returned
/// confirmation can be awaited as usual.
///
/// # Errors
///
/// lapin's publish error (also recorded on the span).
pub async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    options: BasicPublishOptions,
    payload: &[u8],
    properties: BasicProperties,
) -> lapin::Result<PublisherConfirm> {
    Amqp::new()
        .publish(channel, exchange, routing_key, options, payload, properties)
        .await
}

/// The context a delivery carries (the producer span), for handlers that do
/// their own processing spans.
pub fn extract(delivery: &Delivery) -> Context {
    Amqp::new().extract(delivery)
}

/// Processes a delivery in a CONSUMER span `{queue} process`: child of the
/// producer span the message carries (and linked to it), current while
/// `handler` runs. The delivery is then settled as the handler says (ack,
/// nack, reject), recorded on the span. A handler error is recorded and the
/// message rejected without requeue.
///
/// # Errors
///
/// lapin's error from settling the delivery.
pub async fn process<F, Fut, E>(delivery: &Delivery, queue: &str, handler: F) -> lapin::Result<Settle>
where
    F: FnOnce(&Delivery) -> Fut,
    Fut: Future<Output = Result<Settle, E>>,
    E: fmt::Display,
{
    Amqp::new().process(delivery, queue, handler).await
}
