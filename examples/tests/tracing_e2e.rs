//! `tracing` spans across services, end to end: the shop's four services
//! (axum gateway and product service, a tonic auth service, a RabbitMQ
//! worker) run on loopback, each with its own pipeline and `tracing` layer,
//! and export over OTLP/HTTP to an independent receiver (the Python
//! OpenTelemetry protocol classes decode every request). A product request
//! and an order must each arrive as one trace, with the parents, names,
//! kinds, attributes, events and statuses of the services' `#[instrument]`
//! spans, the middleware spans around them and the database spans inside.
//!
//! One test in this file: the global `tracing` subscriber is set once per
//! process. `scripts/test.sh` provides the Python packages (`OTEL_TEST_PYTHON`)
//! and RabbitMQ (`AMQP_ADDR`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use bytes::Bytes;
use examples::shop;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use otel_core::{Telemetry, TelemetryHandle};
use otel_export::{OtlpExporter, Protocol};
use otel_propagation::{BaggagePropagator, CompositePropagator, TraceContextPropagator};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OTEL_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "the Python OpenTelemetry SDK is needed: run scripts/test.sh (it creates {}) or set OTEL_TEST_PYTHON",
        venv.display()
    );
    venv
}

/// The Python receiver, killed on drop.
struct Receiver {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_receiver() -> Receiver {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/otlp_receiver.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Python receiver");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the receiver prints its port");
    let port = serde_json::from_str::<Value>(&first).unwrap()["port"].as_u64().unwrap() as u16;
    Receiver { child, lines, port }
}

fn pipeline(name: &str, port: u16) -> TelemetryHandle {
    Telemetry::builder()
        .with_service_name(name)
        .with_otlp(
            OtlpExporter::builder()
                .with_protocol(Protocol::HttpProtobuf)
                .with_endpoint(format!("http://127.0.0.1:{port}/v1/traces")),
        )
        .with_globals(false)
        .install()
        .unwrap()
}

/// The span of `service` named `name` in `spans` (those of one trace).
fn span<'a>(spans: &'a [Value], service: &str, name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["service"] == service && s["name"] == name)
        .unwrap_or_else(|| {
            let have: Vec<String> = spans
                .iter()
                .map(|s| format!("{}:{}", s["service"], s["name"]))
                .collect();
            panic!("no span {service}:{name} in {have:?}")
        })
}

fn child_of(child: &Value, parent: &Value) {
    assert_eq!(
        child["parent_span_id"], parent["span_id"],
        "{} should be a child of {}",
        child["name"], parent["name"]
    );
    assert_eq!(child["trace_id"], parent["trace_id"]);
}

async fn request(gateway: std::net::SocketAddr, method: &str, path: &str, body: &str) -> u16 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{gateway}{path}"))
        .header("authorization", "Bearer user-1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

#[test]
fn tracing_spans_cross_http_grpc_and_amqp_as_one_trace_each() {
    let receiver = start_receiver();
    let services = ["gateway", "auth", "product", "order-worker"];
    let handles: Vec<TelemetryHandle> = services.iter().map(|s| pipeline(s, receiver.port)).collect();
    let subscriber = tracing_subscriber::registry()
        .with(shop::layer_for("gateway", &handles[0]))
        .with(shop::layer_for("auth", &handles[1]))
        .with(shop::layer_for("product", &handles[2]))
        .with(shop::layer_for("order-worker", &handles[3]));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    opentelemetry::global::set_text_map_propagator(CompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let provider = |i: usize| handles[i].provider().cloned().unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker_up = runtime.block_on(async {
        let amqp_addr =
            std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        let broker = shop::connect_broker(&amqp_addr).await;
        if broker.is_err() && std::env::var_os("CI").is_some() {
            panic!("RabbitMQ is not reachable at {amqp_addr}; scripts/test.sh starts one");
        }
        let auth = shop::start_auth(&provider(1)).await.unwrap();
        let product = shop::start_product(&provider(2)).await.unwrap();
        let (orders, settled) = match broker {
            Ok((conn, channel)) => {
                let settled = shop::start_worker(&provider(3), channel).await.unwrap();
                let amqp = otel_integrations::amqp::Amqp::new().with_tracer_provider(&provider(0));
                let queue = shop::OrderQueue {
                    channel: conn.create_channel().await.unwrap(),
                    amqp,
                };
                (Some(queue), Some((settled, conn)))
            }
            Err(e) => {
                eprintln!("RabbitMQ not reachable ({e}): the AMQP hop is not checked");
                (None, None)
            }
        };
        let up = orders.is_some();
        let gateway = shop::start_gateway(&provider(0), auth, product, orders).await.unwrap();
        // Product 13's query fails: an error trace.
        assert_eq!(request(gateway, "GET", "/api/products/13", "").await, 502);
        if let Some((settled, _conn)) = settled {
            assert_eq!(request(gateway, "POST", "/api/orders", "{\"id\":4}").await, 202);
            let deadline = Instant::now() + Duration::from_secs(10);
            while settled.load(std::sync::atomic::Ordering::Relaxed) < 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        up
    });
    drop(runtime);
    for h in &handles {
        h.shutdown(Duration::from_secs(10)).unwrap();
    }
    let expected = if broker_up { 11 + 10 } else { 11 };
    let mut spans: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while spans.len() < expected && Instant::now() < deadline {
        if let Ok(line) = receiver.lines.recv_timeout(Duration::from_millis(200)) {
            spans.push(serde_json::from_str(&line).unwrap());
        }
    }
    let names: Vec<String> = spans
        .iter()
        .map(|s| format!("{}:{}", s["service"], s["name"]))
        .collect();
    assert_eq!(spans.len(), expected, "{names:?}");

    // The product request: one trace through all three services.
    let all = spans;
    let root = span(&all, "gateway", "GET /api/products/{id}");
    let spans: Vec<Value> = all
        .iter()
        .filter(|s| s["trace_id"] == root["trace_id"])
        .cloned()
        .collect();
    assert_eq!(root["kind"], "SERVER");
    assert_eq!(root["parent_span_id"], "");
    assert_eq!(root["status"], "ERROR");
    let handler = span(&spans, "gateway", "get_product");
    child_of(handler, root);
    assert_eq!(handler["kind"], "INTERNAL");
    assert_eq!(handler["attributes"]["product.id"], 13);
    assert_eq!(handler["scope"], "examples::shop::gateway");
    let verify = span(&spans, "gateway", "verify");
    child_of(verify, handler);
    assert_eq!(verify["attributes"]["user"], "1");
    let grpc_client = spans
        .iter()
        .find(|s| s["service"] == "gateway" && s["kind"] == "CLIENT" && s["name"] == "shop.auth.Auth/Verify")
        .unwrap();
    child_of(grpc_client, verify);
    let grpc_server = span(&spans, "auth", "shop.auth.Auth/Verify");
    assert_eq!(grpc_server["kind"], "SERVER");
    child_of(grpc_server, grpc_client);
    let check = span(&spans, "auth", "check_token");
    child_of(check, grpc_server);
    assert_eq!(check["attributes"]["token.kind"], "user");
    assert_eq!(check["events"][0]["name"], "token verified");
    assert_eq!(check["events"][0]["attributes"]["user"], "1");
    let http_client = span(&spans, "gateway", "GET");
    assert_eq!(http_client["kind"], "CLIENT");
    child_of(http_client, handler);
    let product_server = span(&spans, "product", "GET /products/{id}");
    child_of(product_server, http_client);
    let product = span(&spans, "product", "product");
    child_of(product, product_server);
    let cache = span(&spans, "product", "cache.get");
    child_of(cache, product);
    assert_eq!(cache["attributes"]["cache.hit"], false);
    assert_eq!(cache["attributes"]["cache.key"], "product:3");
    let query = span(&spans, "product", "SELECT products");
    child_of(query, product);
    assert_eq!(query["kind"], "CLIENT");
    assert_eq!(query["attributes"]["db.system.name"], "sqlite");
    assert_eq!(query["attributes"]["db.collection.name"], "products");
    assert_eq!(query["attributes"]["db.operation.name"], "SELECT");
    assert_eq!(query["attributes"]["db.namespace"], "shop");
    assert_eq!(
        query["attributes"]["db.query.text"],
        "SELECT name, price_cents FROM products WHERE id = ?1"
    );
    assert_eq!(query["status"], "ERROR");
    assert!(
        query["status_message"]
            .as_str()
            .unwrap()
            .contains("no such table: archived_products"),
        "{query}"
    );
    let failed = &query["events"][0];
    assert_eq!(failed["name"], "product query failed");
    assert_eq!(failed["attributes"]["level"], "ERROR");
    assert_eq!(failed["attributes"]["error.type"], "sqlite");
    assert_eq!(spans.len(), 11, "{names:?}");

    // The order: across RabbitMQ, one trace, the worker's spans below the consumer.
    if broker_up {
        let order = span(&all, "gateway", "place_order");
        let spans: Vec<Value> = all
            .iter()
            .filter(|s| s["trace_id"] == order["trace_id"])
            .cloned()
            .collect();
        assert_eq!(spans.len(), 10, "{names:?}");
        assert_eq!(order["attributes"]["order.id"], 4);
        let publish = span(&spans, "gateway", "shop-orders publish");
        assert_eq!(publish["kind"], "PRODUCER");
        child_of(publish, order);
        let process = span(&spans, "order-worker", "shop-orders process");
        assert_eq!(process["kind"], "CONSUMER");
        child_of(process, publish);
        let handle = span(&spans, "order-worker", "handle_order");
        child_of(handle, process);
        assert_eq!(handle["events"][0]["name"], "order stored");
        let insert = span(&spans, "order-worker", "INSERT orders");
        child_of(insert, handle);
        assert_eq!(insert["kind"], "CLIENT");
    }
}
