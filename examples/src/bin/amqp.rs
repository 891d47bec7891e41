//! lapin producer and consumer traced by `otel_integrations::amqp`: a
//! PRODUCER span per publish with the context in the message headers, a
//! CONSUMER `process` span per delivery in the same trace.
//!
//! ```text
//! cargo run -p examples --bin amqp
//! ```
//!
//! Needs RabbitMQ at `AMQP_ADDR` (default amqp://guest:guest@127.0.0.1:5672/%2f);
//! `scripts/test.sh` starts one.

use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use otel_integrations::amqp::{Settle, process, publish};
use std::time::Duration;
use tracing::Instrument;

#[tracing::instrument]
async fn store_order(body: String) -> Result<Settle, std::io::Error> {
    println!("stored {body}");
    Ok(Settle::Ack)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let conn = match Connection::connect(&addr, ConnectionProperties::default()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "RabbitMQ is not reachable at {addr}: {e}\n(run scripts/test.sh, which starts one, or set AMQP_ADDR)"
            );
            std::process::exit(2);
        }
    };
    let telemetry = otel_core::Telemetry::from_env()
        .with_service_name("orders")
        // Print the spans (and export nothing else) for this example.
        .without_exporter()
        .with_console_exporter()
        .init()?;
    let channel = conn.create_channel().await?;
    let queue = format!("amqp-example-{}", std::process::id());
    let options = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), options, FieldTable::default())
        .await?;

    // Publish inside a `tracing` span: the PRODUCER span is its child.
    let properties = BasicProperties::default().with_message_id("order-1".into());
    publish(&channel, "", &queue, Default::default(), b"{\"order\": 1}", properties)
        .instrument(tracing::info_span!("place order"))
        .await?
        .await?;

    // Consume: the process span continues the publisher's trace.
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "example".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    if let Some(Ok(delivery)) = consumer.next().await {
        // The handler's `#[instrument]` span is a child of the CONSUMER span.
        let settled = process(&delivery, &queue, |d| {
            store_order(String::from_utf8_lossy(&d.data).into_owned())
        })
        .await?;
        println!("settled: {settled:?}");
    }
    conn.close(200, "done".into()).await?;
    telemetry.shutdown(Duration::from_secs(5))?;
    Ok(())
}
