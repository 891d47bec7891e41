//! The seed scenario's services, each reporting under its own `service.name`
//! and instrumented only through the crate family's middleware and helpers:
//!
//! - `gateway` (axum): `GET /api/products/{id}` verifies the caller with
//!   `auth` over gRPC, then asks `product` over HTTP; `POST /api/orders`
//!   verifies, then publishes the order to RabbitMQ.
//! - `auth` (tonic): `shop.auth.Auth/Verify`.
//! - `product` (axum): a cache lookup, then a SQLite query on a miss.
//! - `order-worker` (lapin): consumes orders and stores them in SQLite.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use otel_integrations::amqp::{Amqp, Settle};
use otel_integrations::grpc::{GrpcClient, GrpcClientLayer, GrpcServerLayer};
use otel_integrations::http::{HttpClient, HttpClientLayer, HttpServerLayer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tower::ServiceExt;
use tower_layer::Layer;

/// The queue orders go through.
pub const ORDERS_QUEUE: &str = "shop-orders";

// --- auth: a tonic gRPC service --------------------------------------------------

/// `shop.auth.VerifyRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VerifyRequest {
    /// The caller's bearer token.
    #[prost(string, tag = "1")]
    pub token: String,
}

/// `shop.auth.VerifyReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VerifyReply {
    /// Who the token belongs to.
    #[prost(string, tag = "1")]
    pub user: String,
}

struct Verify;

impl tonic::server::UnaryService<VerifyRequest> for Verify {
    type Response = VerifyReply;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<VerifyReply>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<VerifyRequest>) -> Self::Future {
        let token = request.into_inner().token;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if token.starts_with("expired") {
                tracing::warn!(token_kind = "expired", "rejected an expired token");
                return Err(tonic::Status::unauthenticated("token expired"));
            }
            if token == "overloaded" {
                tracing::error!("token store unavailable");
                return Err(tonic::Status::unavailable("token store unavailable"));
            }
            let user = token.strip_prefix("user-").unwrap_or("anonymous").to_owned();
            tracing::info!(user = %user, "token verified");
            Ok(tonic::Response::new(VerifyReply { user }))
        })
    }
}

#[derive(Clone)]
struct AuthService;

impl tonic::server::NamedService for AuthService {
    const NAME: &'static str = "shop.auth.Auth";
}

impl<B> tower::Service<http::Request<B>> for AuthService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() != "/shop.auth.Auth/Verify" {
                return Ok(tonic::Status::unimplemented("unknown method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<VerifyReply, VerifyRequest>::default());
            Ok(grpc.unary(Verify, req).await)
        })
    }
}

async fn listen() -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Starts `auth` on a loopback port.
///
/// # Errors
///
/// When no port can be bound.
pub async fn start_auth(provider: &SdkTracerProvider) -> std::io::Result<SocketAddr> {
    let (listener, addr) = listen().await?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder()
        .layer(GrpcServerLayer::new().with_tracer_provider(provider))
        .add_service(AuthService)
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    Ok(addr)
}

// --- product: axum + cache + SQLite -------------------------------------------------

struct ProductState {
    tracer: SdkTracer,
    db: Mutex<rusqlite::Connection>,
    cache: Mutex<HashMap<u32, String>>,
}

/// A CLIENT span for a database call, child of the current span.
fn db_span(
    tracer: &SdkTracer,
    name: &'static str,
    operation: &'static str,
    collection: &'static str,
    query: &'static str,
) -> Context {
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("db.system.name", "sqlite"),
            KeyValue::new("db.namespace", "shop"),
            KeyValue::new("db.operation.name", operation),
            KeyValue::new("db.collection.name", collection),
            KeyValue::new("db.query.text", query),
        ])
        .start_with_context(tracer, &Context::current());
    Context::current().with_span(span)
}

const SELECT_PRODUCT: &str = "SELECT name, price_cents FROM products WHERE id = ?1";

async fn product(State(s): State<Arc<ProductState>>, Path(id): Path<u32>) -> (StatusCode, String) {
    // The cache first.
    let cached = {
        let span = s
            .tracer
            .span_builder("cache.get")
            .with_kind(SpanKind::Internal)
            .with_attributes([KeyValue::new("cache.key", format!("product:{}", id % 10))])
            .start(&s.tracer);
        let cx = Context::current().with_span(span);
        let hit = s.cache.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned();
        cx.span().set_attribute(KeyValue::new("cache.hit", hit.is_some()));
        cx.span().end();
        hit
    };
    if let Some(body) = cached {
        return (StatusCode::OK, body);
    }
    // Products from 900 up live on the slow archive.
    if id >= 900 {
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let cx = db_span(&s.tracer, "SELECT shop.products", "SELECT", "products", SELECT_PRODUCT);
    // Product 13 sits in a table the service has no rights on: the query fails.
    let query = if id == 13 {
        "SELECT name, price_cents FROM archived_products WHERE id = ?1"
    } else {
        SELECT_PRODUCT
    };
    let result = {
        let db = s.db.lock().unwrap_or_else(PoisonError::into_inner);
        db.query_row(query, [id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
    };
    let span = cx.span();
    let reply = match result {
        Ok((name, price)) => {
            let body = format!("{{\"id\":{id},\"name\":\"{name}\",\"price_cents\":{price}}}");
            s.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, body.clone());
            (StatusCode::OK, body)
        }
        Err(rusqlite::Error::QueryReturnedNoRows) => (StatusCode::NOT_FOUND, "{\"error\":\"no such product\"}".into()),
        Err(e) => {
            span.set_status(Status::error(e.to_string()));
            span.set_attribute(KeyValue::new("error.type", "sqlite"));
            tracing::error!(product = id, error = %e, "product query failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "{\"error\":\"database error\"}".into(),
            )
        }
    };
    span.end();
    reply
}

/// Starts `product` with a seeded in-memory SQLite database.
///
/// # Errors
///
/// When no port can be bound or the database cannot be created.
pub async fn start_product(provider: &SdkTracerProvider) -> Result<SocketAddr, String> {
    let db = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
    db.execute_batch(
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);",
    )
    .map_err(|e| e.to_string())?;
    for id in (1..=120).chain(900..=910) {
        db.execute(
            "INSERT INTO products (id, name, price_cents) VALUES (?1, ?2, ?3)",
            rusqlite::params![id, format!("product {id}"), 199 + i64::from(id) * 10],
        )
        .map_err(|e| e.to_string())?;
    }
    let state = Arc::new(ProductState {
        tracer: provider.tracer("product"),
        db: Mutex::new(db),
        cache: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/products/{id}", get(product))
        .with_state(state)
        .layer(HttpServerLayer::new().with_tracer_provider(provider));
    let (listener, addr) = listen().await.map_err(|e| e.to_string())?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

// --- gateway: axum, calling auth (gRPC) and product (HTTP), publishing orders ---------

type HttpOut = HttpClient<Client<HttpConnector, Full<Bytes>>>;

/// Where the gateway publishes orders.
#[derive(Clone, Debug)]
pub struct OrderQueue {
    /// The channel.
    pub channel: Channel,
    /// The gateway's AMQP instrumentation.
    pub amqp: Amqp,
}

struct GatewayState {
    auth: GrpcClient<tonic::transport::Channel>,
    http: HttpOut,
    product: SocketAddr,
    orders: Option<OrderQueue>,
}

/// Verifies the bearer token with `auth`; the HTTP status to answer on failure.
async fn verify(s: &GatewayState, headers: &HeaderMap) -> Result<String, StatusCode> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let mut client = tonic::client::Grpc::new(s.auth.clone());
    client.ready().await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let reply = client
        .unary(
            tonic::Request::new(VerifyRequest { token }),
            http::uri::PathAndQuery::from_static("/shop.auth.Auth/Verify"),
            tonic_prost::ProstCodec::<VerifyRequest, VerifyReply>::default(),
        )
        .await;
    match reply {
        Ok(r) => Ok(r.into_inner().user),
        Err(status) if status.code() == tonic::Code::Unauthenticated => Err(StatusCode::UNAUTHORIZED),
        Err(status) => {
            tracing::error!(code = ?status.code(), "auth failed: {}", status.message());
            Err(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

async fn gateway_product(
    State(s): State<Arc<GatewayState>>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let user = match verify(&s, &headers).await {
        Ok(u) => u,
        Err(code) => return (code, format!("{{\"error\":\"{}\"}}", code.as_u16())),
    };
    let request = http::Request::get(format!("http://{}/products/{id}", s.product))
        .body(Full::new(Bytes::new()))
        .unwrap_or_default();
    match s.http.clone().oneshot(request).await {
        Ok(resp) => {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_server_error() {
                tracing::error!(product = id, user = %user, "product service failed with {status}");
                (StatusCode::BAD_GATEWAY, "{\"error\":\"product service failed\"}".into())
            } else {
                tracing::info!(product = id, user = %user, status = status.as_u16(), "product served");
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        }
        Err(e) => {
            tracing::error!("product service unreachable: {e}");
            (
                StatusCode::BAD_GATEWAY,
                "{\"error\":\"product service unreachable\"}".into(),
            )
        }
    }
}

async fn gateway_order(
    State(s): State<Arc<GatewayState>>,
    headers: HeaderMap,
    Json(order): Json<serde_json::Value>,
) -> (StatusCode, String) {
    let user = match verify(&s, &headers).await {
        Ok(u) => u,
        Err(code) => return (code, String::new()),
    };
    let Some(q) = &s.orders else {
        return (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"no broker\"}".into());
    };
    let id = order.get("id").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let payload = serde_json::json!({"id": id, "user": user}).to_string();
    let published = q
        .amqp
        .publish(
            &q.channel,
            "",
            ORDERS_QUEUE,
            Default::default(),
            payload.as_bytes(),
            BasicProperties::default().with_message_id(format!("order-{id}").into()),
        )
        .await;
    match published {
        Ok(confirm) => {
            let _ = confirm.await;
            tracing::info!(order = id, user = %user, "order accepted");
            (StatusCode::ACCEPTED, format!("{{\"order\":{id}}}"))
        }
        Err(e) => {
            tracing::error!(order = id, "cannot publish the order: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"broker\"}".into())
        }
    }
}

/// Starts `gateway`.
///
/// # Errors
///
/// When no port can be bound or `auth` cannot be reached.
pub async fn start_gateway(
    provider: &SdkTracerProvider,
    auth: SocketAddr,
    product: SocketAddr,
    orders: Option<OrderQueue>,
) -> Result<SocketAddr, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{auth}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("auth at {auth}: {e}"))?;
    let state = Arc::new(GatewayState {
        auth: GrpcClientLayer::new().with_tracer_provider(provider).layer(channel),
        http: HttpClientLayer::new()
            .with_tracer_provider(provider)
            .layer(Client::builder(TokioExecutor::new()).build_http()),
        product,
        orders,
    });
    let app = Router::new()
        .route("/api/products/{id}", get(gateway_product))
        .route("/api/orders", post(gateway_order))
        .with_state(state)
        .layer(HttpServerLayer::new().with_tracer_provider(provider));
    let (listener, addr) = listen().await.map_err(|e| e.to_string())?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

// --- order-worker: RabbitMQ consumer --------------------------------------------------

/// Connects to RabbitMQ at `addr` and declares the orders queue.
///
/// # Errors
///
/// When the broker is not reachable.
pub async fn connect_broker(addr: &str) -> Result<(Connection, Channel), String> {
    let connect = Connection::connect(addr, ConnectionProperties::default());
    let conn = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let channel = conn.create_channel().await.map_err(|e| e.to_string())?;
    channel
        .queue_declare(
            ORDERS_QUEUE.into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((conn, channel))
}

/// Starts `order-worker`: each order is processed in a CONSUMER span and
/// stored with an INSERT span, except every third one, whose payment is
/// declined: its CONSUMER span ends in an error and the message is rejected,
/// so the tail sampler keeps that trace. Returns the count of orders settled
/// (stored or rejected).
///
/// # Errors
///
/// When the consumer cannot be registered.
pub async fn start_worker(
    provider: &SdkTracerProvider,
    channel: Channel,
) -> Result<Arc<std::sync::atomic::AtomicU64>, String> {
    let db = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
    db.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, user TEXT NOT NULL);")
        .map_err(|e| e.to_string())?;
    let db = Arc::new(Mutex::new(db));
    let mut consumer = channel
        .basic_consume(
            ORDERS_QUEUE.into(),
            "order-worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let amqp = Amqp::new().with_tracer_provider(provider);
    let tracer = provider.tracer("order-worker");
    let stored = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = stored.clone();
    tokio::spawn(async move {
        use futures_util::StreamExt as _;
        while let Some(Ok(delivery)) = consumer.next().await {
            let (db, tracer, count) = (db.clone(), tracer.clone(), count.clone());
            let _ = amqp
                .process(&delivery, ORDERS_QUEUE, |d| {
                    let data = d.data.clone();
                    async move {
                        let order: serde_json::Value = serde_json::from_slice(&data).map_err(|e| e.to_string())?;
                        let id = order["id"].as_i64().unwrap_or(0);
                        if id % 3 == 2 {
                            tracing::warn!(order = id, "payment declined");
                            return Err(format!("payment declined for order {id}"));
                        }
                        let cx = db_span(
                            &tracer,
                            "INSERT shop.orders",
                            "INSERT",
                            "orders",
                            "INSERT INTO orders (id, user) VALUES (?1, ?2)",
                        );
                        let result = db.lock().unwrap_or_else(PoisonError::into_inner).execute(
                            "INSERT OR REPLACE INTO orders (id, user) VALUES (?1, ?2)",
                            rusqlite::params![order["id"].as_i64().unwrap_or(0), order["user"].as_str().unwrap_or("")],
                        );
                        cx.span().end();
                        result.map_err(|e| e.to_string())?;
                        tracing::info!(order = id, "order stored");
                        Ok::<_, String>(Settle::Ack)
                    }
                })
                .await;
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    Ok(stored)
}
