//! The README's quick start: an axum service whose handler reads a database
//! and calls another service with reqwest, all in one trace.
//!
//! ```sh
//! OTEL_TRACES_EXPORTER=console cargo run -p examples --bin quickstart
//! curl localhost:8080/api/orders/7   # then Ctrl-C
//! ```
use axum::extract::{Path, State};
use axum::{Router, http::StatusCode, routing::get};
use otel_integrations::http::HttpServerLayer;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

#[derive(Clone)]
struct App {
    db: Arc<Mutex<rusqlite::Connection>>,
    http: reqwest_middleware::ClientWithMiddleware,
    inventory: String,
}

#[tracing::instrument(skip(app))]
async fn order(State(app): State<App>, Path(id): Path<u32>) -> Result<String, (StatusCode, String)> {
    const FIND: &str = "SELECT item FROM orders WHERE id = ?1";
    let item: String = otel_core::db_span!(
        system = "sqlite",
        operation = "SELECT",
        collection = "orders",
        query = FIND
    )
    .in_scope(|| {
        let db = app.db.lock().unwrap_or_else(PoisonError::into_inner);
        db.query_row(FIND, [id], |row| row.get(0))
    })
    .map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))?;
    tracing::info!(%item, "order found");
    // A CLIENT span, child of this one, with the context in the headers.
    let bad_gateway = |e: &dyn std::error::Error| (StatusCode::BAD_GATEWAY, e.to_string());
    let response = app.http.get(format!("{}/stock/{item}", app.inventory)).send().await;
    let stock = response
        .map_err(|e| bad_gateway(&e))?
        .text()
        .await
        .map_err(|e| bad_gateway(&e))?;
    Ok(format!("order {id}: {item}, {stock} in stock\n"))
}

#[tracing::instrument]
async fn stock(Path(item): Path<String>) -> String {
    tokio::time::sleep(Duration::from_millis(5)).await;
    "3".to_owned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // OTLP export, sampler, propagators and resource from OTEL_*; the global
    // subscriber with RUST_LOG, the `tracing` layer and trace ids in log lines.
    let telemetry = otel_core::Telemetry::from_env().with_service_name("checkout").init()?;
    let db = rusqlite::Connection::open_in_memory()?;
    db.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT); INSERT INTO orders VALUES (7, 'tea');")?;
    let listener = tokio::net::TcpListener::bind(std::env::var("ADDR").unwrap_or("127.0.0.1:8080".into())).await?;
    let app = App {
        db: Arc::new(Mutex::new(db)),
        http: otel_integrations::reqwest::client(reqwest::Client::new()),
        // Inventory stands in for another service; it is served here too.
        inventory: format!("http://{}", listener.local_addr()?),
    };
    let router = Router::new()
        .route("/api/orders/{id}", get(order))
        .route("/stock/{item}", get(stock))
        // A SERVER span per request, continuing the caller's trace.
        .layer(HttpServerLayer::new().with_filter(|req| req.uri.path() != "/healthz"))
        .with_state(app);
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or_default() })
        .await?;
    // Flushes what is left; says so when spans could not be delivered.
    let report = telemetry.shutdown(Duration::from_secs(5))?;
    if !report.is_complete() {
        eprintln!("telemetry: {report}");
    }
    Ok(())
}
