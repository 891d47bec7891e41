//! Publish and consume through a real RabbitMQ broker with our helpers: one
//! trace, PRODUCER and CONSUMER spans with messaging attributes, the consumer a
//! child of (and linked to) the producer, settlement recorded.
//!
//! Needs a broker at `AMQP_ADDR` (default amqp://guest:guest@127.0.0.1:5672/%2f);
//! `scripts/test.sh` installs and starts one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{SimpleSpanProcessor, SpanData};
use otel_core::Telemetry;
use otel_core::testing::InMemoryExporter;
use otel_integrations::amqp::{Settle, process, publish};
use std::time::Duration;

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_then_process_is_one_trace() {
    let exporter = InMemoryExporter::default();
    let _handle = Telemetry::builder()
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .install()
        .unwrap();
    let addr = std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let conn = Connection::connect(&addr, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!("RabbitMQ is not reachable at {addr} ({e}); run scripts/test.sh, which starts one, or set AMQP_ADDR")
        });
    let channel = conn.create_channel().await.unwrap();
    let queue = format!("otel-integrations-{}", std::process::id());
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

    // Two messages: one the handler acks, one it fails.
    otel_core::in_span("place order", |_| {});
    let checkout = otel_core::spans::span("POST /orders").kind(SpanKind::Server).start();
    {
        let _g = checkout.clone().attach();
        for id in ["order-1", "order-2"] {
            publish(
                &channel,
                "",
                &queue,
                Default::default(),
                id.as_bytes(),
                BasicProperties::default().with_message_id(id.into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    }
    opentelemetry::trace::TraceContextExt::span(&checkout).end();

    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let settled = process(&delivery, &queue, |d| {
            let ok = d.data == b"order-1";
            async move {
                otel_core::in_span("charge card", |_| {});
                if ok { Ok(Settle::Ack) } else { Err("card declined") }
            }
        })
        .await
        .unwrap();
        assert_eq!(
            settled,
            if delivery.data == b"order-1" {
                Settle::Ack
            } else {
                Settle::Reject { requeue: false }
            }
        );
    }

    let spans = exporter.spans();
    let producers: Vec<&SpanData> = spans.iter().filter(|s| s.span_kind == SpanKind::Producer).collect();
    let consumers: Vec<&SpanData> = spans.iter().filter(|s| s.span_kind == SpanKind::Consumer).collect();
    assert_eq!((producers.len(), consumers.len()), (2, 2));
    let root = spans.iter().find(|s| s.name == "POST /orders").unwrap();
    for (p, c) in producers.iter().zip(&consumers) {
        assert_eq!(p.name, format!("{queue} publish"));
        assert_eq!(c.name, format!("{queue} process"));
        assert_eq!(
            p.parent_span_id,
            root.span_context.span_id(),
            "the publish is part of the request"
        );
        assert_eq!(
            c.span_context.trace_id(),
            root.span_context.trace_id(),
            "one trace end to end"
        );
        assert_eq!(
            c.parent_span_id,
            p.span_context.span_id(),
            "the consumer's parent is the producer"
        );
        assert_eq!(
            c.links[0].span_context.span_id(),
            p.span_context.span_id(),
            "and it links to it"
        );
        for s in [p, c] {
            assert_eq!(attr(s, "messaging.system").as_deref(), Some("rabbitmq"));
            assert_eq!(attr(s, "messaging.destination.name"), Some(queue.clone()));
            assert_eq!(
                attr(s, "messaging.rabbitmq.destination.routing_key"),
                Some(queue.clone())
            );
        }
        assert_eq!(attr(p, "messaging.operation.type").as_deref(), Some("send"));
        assert_eq!(attr(c, "messaging.operation.type").as_deref(), Some("process"));
        assert_eq!(attr(p, "messaging.message.id"), attr(c, "messaging.message.id"));
        let charge = spans
            .iter()
            .find(|s| s.name == "charge card" && s.parent_span_id == c.span_context.span_id());
        assert!(charge.is_some(), "the handler runs inside the consumer span");
    }
    let acked = consumers
        .iter()
        .find(|c| attr(c, "messaging.message.id").as_deref() == Some("order-1"))
        .unwrap();
    assert_eq!(attr(acked, "messaging.rabbitmq.settle").as_deref(), Some("ack"));
    assert_eq!(acked.status, Status::Unset);
    let failed = consumers
        .iter()
        .find(|c| attr(c, "messaging.message.id").as_deref() == Some("order-2"))
        .unwrap();
    assert_eq!(attr(failed, "messaging.rabbitmq.settle").as_deref(), Some("reject"));
    assert_eq!(failed.status, Status::error("card declined"));
    conn.close(200, "done".into()).await.unwrap();
}
