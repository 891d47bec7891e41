//! Trace context through a real RabbitMQ broker: the consumer's span continues the
//! producer's trace, with the producer span as parent.
//!
//! Needs a broker at `AMQP_ADDR` (default amqp://guest:guest@127.0.0.1:5672/%2f);
//! `scripts/test.sh` installs and starts one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use opentelemetry::Context;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use otel_propagation::TraceContextPropagator;
use otel_propagation::carrier::lapin::{extract, inject};
use std::time::Duration;

fn amqp_addr() -> String {
    std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

#[tokio::test]
async fn publish_consume_continues_the_trace() {
    let addr = amqp_addr();
    let conn = Connection::connect(&addr, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!("RabbitMQ is not reachable at {addr} ({e}); run scripts/test.sh, which starts one, or set AMQP_ADDR")
        });
    let channel = conn.create_channel().await.unwrap();
    let queue = format!("otel-propagation-test-{}", std::process::id());
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("amqp-test");
    let propagator = TraceContextPropagator::new();

    // Producer: a PRODUCER span whose context travels in the message headers.
    let producer = tracer
        .span_builder(format!("{queue} publish"))
        .with_kind(SpanKind::Producer)
        .start(&tracer);
    let producer_cx = Context::new().with_span(producer);
    let mut headers = FieldTable::default();
    inject(&propagator, &producer_cx, &mut headers);
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"order #1",
            BasicProperties::default().with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    producer_cx.span().end();

    // Consumer: extract from the delivered headers and start a CONSUMER span under it.
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "test-consumer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("consumer open")
        .expect("delivery ok");
    let delivered = delivery.properties.headers().clone().expect("headers delivered");
    let parent = extract(&propagator, &delivered);
    tracer
        .span_builder(format!("{queue} process"))
        .with_kind(SpanKind::Consumer)
        .start_with_context(&tracer, &parent)
        .end();
    delivery.ack(BasicAckOptions::default()).await.unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let producer = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Producer)
        .expect("producer span");
    let consumer = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Consumer)
        .expect("consumer span");
    assert_eq!(consumer.span_context.trace_id(), producer.span_context.trace_id());
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    assert!(consumer.parent_span_is_remote);
    conn.close(200, "done".into()).await.unwrap();
}
