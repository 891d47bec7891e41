//! The seed scenario's services, each reporting under its own `service.name`,
//! instrumented as a real service would be: the crate family's middleware
//! makes the SERVER, CLIENT, PRODUCER and CONSUMER spans, and each service's
//! own code uses `tracing` (`#[instrument]` handlers, database and cache
//! spans, `info!`/`error!` events), recorded by the service's
//! [`TracingLayer`](otel_core::TracingLayer). Each service is a module, so a
//! process hosting all four gives each its own layer by target ([`layer_for`]).
//!
//! - `gateway` (axum): `GET /api/products/{id}` verifies the caller with
//!   `auth` over gRPC, then asks `product` over HTTP; `POST /api/orders`
//!   verifies, then publishes the order to RabbitMQ.
//! - `auth` (tonic): `shop.auth.Auth/Verify`.
//! - `product` (axum): a cache lookup, then a SQLite query on a miss.
//! - `order-worker` (lapin): consumes orders and stores them in SQLite.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use std::net::SocketAddr;
use std::time::Duration;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{Filtered, Targets};

/// The queue orders go through.
pub const ORDERS_QUEUE: &str = "shop-orders";

pub use auth::{VerifyReply, VerifyRequest, start as start_auth};
pub use gateway::{OrderQueue, start as start_gateway};
pub use product::start as start_product;
pub use worker::start as start_worker;

/// The module (the `tracing` target) of each service's code, by service name.
pub const SERVICE_TARGETS: [(&str, &str); 4] = [
    ("gateway", "examples::shop::gateway"),
    ("auth", "examples::shop::auth"),
    ("product", "examples::shop::product"),
    ("order-worker", "examples::shop::worker"),
];

/// `service`'s `tracing` layer: `handle`'s layer, seeing only the spans and
/// events of that service's module, at INFO and above.
pub fn layer_for<S>(service: &str, handle: &otel_core::TelemetryHandle) -> Filtered<otel_core::TracingLayer, Targets, S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let target = SERVICE_TARGETS
        .iter()
        .find(|(name, _)| *name == service)
        .map_or("examples::shop", |(_, target)| target);
    handle
        .tracing_layer()
        .with_filter(Targets::new().with_target(target, tracing::Level::INFO))
}

async fn listen() -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// A CLIENT span for a call to the shop's SQLite database: `otel_core::db_span!`
/// (the database semantic conventions, the query text sanitised). A macro, so
/// the span's target is the calling service's module.
macro_rules! db_span {
    ($operation:literal, $collection:literal, $query:expr) => {
        otel_core::db_span!(
            system = "sqlite",
            namespace = "shop",
            operation = $operation,
            collection = $collection,
            query = $query,
        )
    };
}

// --- auth: a tonic gRPC service --------------------------------------------------

/// `auth`: a tonic gRPC service checking bearer tokens.
pub mod auth {
    use super::listen;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use otel_integrations::grpc::GrpcServerLayer;
    use std::convert::Infallible;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context as TaskContext, Poll};
    use std::time::Duration;

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

    /// Looks the token up (a real service would ask its token store).
    #[tracing::instrument(skip_all, fields(token.kind))]
    async fn check_token(token: String) -> Result<String, tonic::Status> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let span = tracing::Span::current();
        if token.starts_with("expired") {
            span.record("token.kind", "expired");
            tracing::warn!("rejected an expired token");
            return Err(tonic::Status::unauthenticated("token expired"));
        }
        if token == "overloaded" {
            tracing::error!(error = "token store unavailable");
            return Err(tonic::Status::unavailable("token store unavailable"));
        }
        span.record("token.kind", "user");
        let user = token.strip_prefix("user-").unwrap_or("anonymous").to_owned();
        tracing::info!(user = %user, "token verified");
        Ok(user)
    }

    struct Verify;

    impl tonic::server::UnaryService<VerifyRequest> for Verify {
        type Response = VerifyReply;
        type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<VerifyReply>, tonic::Status>> + Send>>;

        fn call(&mut self, request: tonic::Request<VerifyRequest>) -> Self::Future {
            let token = request.into_inner().token;
            Box::pin(async move {
                let user = check_token(token).await?;
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
                let mut grpc =
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::<VerifyReply, VerifyRequest>::default());
                Ok(grpc.unary(Verify, req).await)
            })
        }
    }

    /// Starts `auth` on a loopback port.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub async fn start(provider: &SdkTracerProvider) -> std::io::Result<SocketAddr> {
        let (listener, addr) = listen().await?;
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tonic::transport::Server::builder()
            .layer(GrpcServerLayer::new().with_tracer_provider(provider))
            .add_service(AuthService)
            .serve_with_incoming(incoming);
        tokio::spawn(server);
        Ok(addr)
    }
}

// --- product: axum + cache + SQLite -------------------------------------------------

/// `product`: an axum service with a cache in front of SQLite.
pub mod product {
    use super::listen;
    use axum::Router;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::get;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use otel_integrations::http::HttpServerLayer;
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    struct ProductState {
        db: Mutex<rusqlite::Connection>,
        cache: Mutex<HashMap<u32, String>>,
    }

    const SELECT_PRODUCT: &str = "SELECT name, price_cents FROM products WHERE id = ?1";

    #[tracing::instrument(name = "cache.get", skip(s), fields(cache.key = %format_args!("product:{}", id % 10), cache.hit))]
    fn cached(s: &ProductState, id: u32) -> Option<String> {
        let hit = s.cache.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned();
        tracing::Span::current().record("cache.hit", hit.is_some());
        hit
    }

    #[tracing::instrument(skip(s), fields(product.id = id))]
    async fn product(State(s): State<Arc<ProductState>>, Path(id): Path<u32>) -> (StatusCode, String) {
        if let Some(body) = cached(&s, id) {
            return (StatusCode::OK, body);
        }
        // Products from 900 up live on the slow archive.
        if id >= 900 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let query_span = db_span!("SELECT", "products", SELECT_PRODUCT);
        let _in_query = query_span.enter();
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
        match result {
            Ok((name, price)) => {
                let body = format!("{{\"id\":{id},\"name\":\"{name}\",\"price_cents\":{price}}}");
                s.cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id, body.clone());
                (StatusCode::OK, body)
            }
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                (StatusCode::NOT_FOUND, "{\"error\":\"no such product\"}".into())
            }
            Err(e) => {
                // An `error` field fails the query span; the message is the log line.
                tracing::error!(error = %e, error.type = "sqlite", "product query failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "{\"error\":\"database error\"}".into(),
                )
            }
        }
    }

    /// Starts `product` with a seeded in-memory SQLite database.
    ///
    /// # Errors
    ///
    /// When no port can be bound or the database cannot be created.
    pub async fn start(provider: &SdkTracerProvider) -> Result<SocketAddr, String> {
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
}

// --- gateway: axum, calling auth (gRPC) and product (HTTP), publishing orders ---------

/// `gateway`: the public axum service.
pub mod gateway {
    use super::auth::{VerifyReply, VerifyRequest};
    use super::{ORDERS_QUEUE, listen};
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use lapin::{BasicProperties, Channel};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use otel_integrations::amqp::Amqp;
    use otel_integrations::grpc::{GrpcClient, GrpcClientLayer};
    use otel_integrations::http::{HttpClient, HttpClientLayer, HttpServerLayer};
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tower::ServiceExt;
    use tower_layer::Layer;

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
    #[tracing::instrument(skip_all, fields(user))]
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
            Ok(r) => {
                let user = r.into_inner().user;
                tracing::Span::current().record("user", user.as_str());
                Ok(user)
            }
            Err(status) if status.code() == tonic::Code::Unauthenticated => Err(StatusCode::UNAUTHORIZED),
            Err(status) => {
                tracing::error!(code = ?status.code(), "auth failed: {}", status.message());
                Err(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }

    #[tracing::instrument(skip(s, headers), fields(product.id = id))]
    async fn get_product(
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
                    tracing::error!(user = %user, "product service failed with {status}");
                    (StatusCode::BAD_GATEWAY, "{\"error\":\"product service failed\"}".into())
                } else {
                    tracing::info!(user = %user, status = status.as_u16(), "product served");
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

    #[tracing::instrument(skip_all, fields(order.id))]
    async fn place_order(
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
        tracing::Span::current().record("order.id", id);
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
                tracing::info!(user = %user, "order accepted");
                (StatusCode::ACCEPTED, format!("{{\"order\":{id}}}"))
            }
            Err(e) => {
                tracing::error!("cannot publish the order: {e}");
                (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"broker\"}".into())
            }
        }
    }

    /// Starts `gateway`.
    ///
    /// # Errors
    ///
    /// When no port can be bound or `auth` cannot be reached.
    pub async fn start(
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
            .route("/api/products/{id}", get(get_product))
            .route("/api/orders", post(place_order))
            .with_state(state)
            .layer(HttpServerLayer::new().with_tracer_provider(provider));
        let (listener, addr) = listen().await.map_err(|e| e.to_string())?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }
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

/// `order-worker`: a RabbitMQ consumer storing orders in SQLite.
pub mod worker {
    use super::ORDERS_QUEUE;
    use lapin::Channel;
    use lapin::options::BasicConsumeOptions;
    use lapin::types::FieldTable;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use otel_integrations::amqp::{Amqp, Settle};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    /// Stores one order; every third payment is declined.
    #[tracing::instrument(skip_all, fields(order.id))]
    async fn handle_order(db: Arc<Mutex<rusqlite::Connection>>, data: Vec<u8>) -> Result<Settle, String> {
        let order: serde_json::Value = serde_json::from_slice(&data).map_err(|e| e.to_string())?;
        let id = order["id"].as_i64().unwrap_or(0);
        tracing::Span::current().record("order.id", id);
        if id % 3 == 2 {
            tracing::warn!("payment declined");
            return Err(format!("payment declined for order {id}"));
        }
        const STORE_ORDER: &str = "INSERT OR REPLACE INTO orders (id, user) VALUES (?1, ?2)";
        let result = db_span!("INSERT", "orders", STORE_ORDER).in_scope(|| {
            db.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .execute(STORE_ORDER, rusqlite::params![id, order["user"].as_str().unwrap_or("")])
        });
        result.map_err(|e| e.to_string())?;
        tracing::info!("order stored");
        Ok(Settle::Ack)
    }

    /// Starts `order-worker`: each order is processed in a CONSUMER span and
    /// stored with an INSERT span, except every third one, whose payment is
    /// declined: its CONSUMER span ends in an error and the message is
    /// rejected, so the tail sampler keeps that trace. Returns the count of
    /// orders settled (stored or rejected).
    ///
    /// # Errors
    ///
    /// When the consumer cannot be registered.
    pub async fn start(provider: &SdkTracerProvider, channel: Channel) -> Result<Arc<AtomicU64>, String> {
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
        let stored = Arc::new(AtomicU64::new(0));
        let count = stored.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt as _;
            while let Some(Ok(delivery)) = consumer.next().await {
                let db = db.clone();
                let _ = amqp
                    .process(&delivery, ORDERS_QUEUE, |d| handle_order(db, d.data.clone()))
                    .await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(stored)
    }
}
