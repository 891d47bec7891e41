//! A real reqwest client, through reqwest-middleware, against an axum server
//! with our server layer on loopback: client spans under the `tracing` span
//! that made the call, the server span under the client span, redacted URLs,
//! errors, a span per retry attempt with `http.request.resend_count`, filters.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use axum::Router;
use axum::routing::get;
use http::Extensions;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{SimpleSpanProcessor, SpanData};
use otel_core::Telemetry;
use otel_core::testing::InMemoryExporter;
use otel_integrations::http::HttpServerLayer;
use otel_integrations::reqwest::TracingMiddleware;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

static GLOBALS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn install() -> (otel_core::TelemetryHandle, InMemoryExporter) {
    let exporter = InMemoryExporter::default();
    let handle = Telemetry::builder()
        .with_service_name("reqwest-test")
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .install()
        .unwrap();
    (handle, exporter)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// A retry middleware of the usual shape: the same extensions for every attempt.
struct RetryOn503;

#[async_trait::async_trait]
impl Middleware for RetryOn503 {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let copy = req.try_clone();
        let first = next.clone().run(req, extensions).await?;
        match copy {
            Some(copy) if first.status() == 503 => {
                drop(first);
                next.run(copy, extensions).await
            }
            _ => Ok(first),
        }
    }
}

#[tokio::test]
async fn reqwest_calls_are_client_spans_in_one_trace() {
    let _g = GLOBALS.lock().await;
    let (handle, exporter) = install();
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(handle.tracing_layer()));

    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let calls = flaky_calls.clone();
    let app = serve(
        Router::new()
            .route("/items/{id}", get(|| async { "an item" }))
            .route(
                "/fail",
                get(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "no") }),
            )
            .route(
                "/flaky",
                get(move || {
                    let calls = calls.clone();
                    async move {
                        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                            (http::StatusCode::SERVICE_UNAVAILABLE, "busy")
                        } else {
                            (http::StatusCode::OK, "fine")
                        }
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .layer(HttpServerLayer::new()),
    )
    .await;
    let client: ClientWithMiddleware = ClientBuilder::new(reqwest::Client::new())
        .with(RetryOn503)
        .with(TracingMiddleware::new().with_filter(|req| !req.url().ends_with("/healthz")))
        .build();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    async {
        let port = app.port();
        let url = format!("http://alice:s3cret@127.0.0.1:{port}/items/7?token=abc");
        let body = client.get(url).send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "an item");
        let fail = client.get(format!("http://{app}/fail")).send().await.unwrap();
        assert_eq!(fail.status(), 500);
        drop(fail);
        let flaky = client.get(format!("http://{app}/flaky")).send().await.unwrap();
        assert_eq!(flaky.text().await.unwrap(), "fine");
        let health = client.get(format!("http://{app}/healthz")).send().await.unwrap();
        assert_eq!(health.text().await.unwrap(), "ok");
        assert!(client.get(format!("http://{dead}/")).send().await.is_err());
    }
    .instrument(tracing::info_span!("checkout"))
    .await;
    handle.force_flush().unwrap();

    let spans = exporter.spans();
    let checkout = spans.iter().find(|s| s.name == "checkout").expect("the tracing span");
    let clients: Vec<&SpanData> = spans.iter().filter(|s| s.span_kind == SpanKind::Client).collect();
    assert_eq!(
        clients.len(),
        5,
        "items, fail, two flaky attempts, the dead port; healthz filtered: {:?}",
        clients.iter().map(|c| attr(c, "url.full")).collect::<Vec<_>>()
    );
    for c in &clients {
        assert_eq!(c.name, "GET");
        assert_eq!(c.span_context.trace_id(), checkout.span_context.trace_id());
        assert_eq!(
            c.parent_span_id,
            checkout.span_context.span_id(),
            "under the tracing span"
        );
        assert_eq!(attr(c, "server.address").as_deref(), Some("127.0.0.1"));
    }
    let by_path = |path: &str| -> Vec<&SpanData> {
        clients
            .iter()
            .copied()
            .filter(|c| attr(c, "url.full").is_some_and(|u| u.contains(path)))
            .collect()
    };

    let item = by_path("/items/7")[0];
    // reqwest moves the credentials into an Authorization header before any
    // middleware runs; the query value is ours to redact.
    assert_eq!(
        attr(item, "url.full").unwrap(),
        format!("http://127.0.0.1:{}/items/7?token=REDACTED", app.port())
    );
    assert_eq!(attr(item, "server.port"), Some(app.port().to_string()));
    assert_eq!(attr(item, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(item.status, Status::Unset);
    let server = spans.iter().find(|s| s.name == "GET /items/{id}").unwrap();
    assert_eq!(
        server.parent_span_id,
        item.span_context.span_id(),
        "context crossed the hop"
    );
    assert!(item.end_time >= server.end_time, "the client span covers the body");

    let fail = by_path("/fail")[0];
    assert!(matches!(fail.status, Status::Error { .. }));
    assert_eq!(attr(fail, "error.type").as_deref(), Some("500"));

    let flaky = by_path("/flaky");
    assert_eq!(flaky.len(), 2, "a span per attempt");
    let first = flaky
        .iter()
        .find(|c| attr(c, "http.request.resend_count").is_none())
        .unwrap();
    let retry = flaky
        .iter()
        .find(|c| attr(c, "http.request.resend_count").is_some())
        .unwrap();
    assert_eq!(attr(first, "http.response.status_code").as_deref(), Some("503"));
    assert_eq!(attr(retry, "http.request.resend_count").as_deref(), Some("1"));
    assert_eq!(attr(retry, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(retry.status, Status::Unset);

    let failed = by_path(&dead.to_string())[0];
    assert_eq!(attr(failed, "error.type").as_deref(), Some("transport"));
    assert!(matches!(failed.status, Status::Error { .. }));

    // The filtered request still reached the server, untraced by the client:
    // its server span has no remote parent from us.
    let health = spans.iter().find(|s| s.name == "GET /healthz").unwrap();
    assert!(
        clients
            .iter()
            .all(|c| c.span_context.span_id() != health.parent_span_id)
    );
}

#[tokio::test]
async fn hooks_add_attributes_and_choose_errors() {
    let _g = GLOBALS.lock().await;
    let (handle, exporter) = install();
    let app = serve(
        Router::new()
            .route(
                "/missing",
                get(|| async { (http::StatusCode::NOT_FOUND, [("x-request-id", "r-42")], "gone") }),
            )
            .layer(HttpServerLayer::new()),
    )
    .await;
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(
            TracingMiddleware::new()
                .with_request_attributes(|req| {
                    vec![opentelemetry::KeyValue::new(
                        "app.has_tenant",
                        req.headers().contains_key("x-tenant"),
                    )]
                })
                .with_response_attributes(|_, headers| {
                    headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(|id| vec![opentelemetry::KeyValue::new("app.request_id", id.to_owned())])
                        .unwrap_or_default()
                })
                // A 404 is an answer here, not a failure.
                .with_error_statuses(|s| s.is_server_error())
                .with_query_values(otel_integrations::http::QueryValues::SensitiveRedacted),
        )
        .build();
    let resp = client
        .get(format!("http://{app}/missing?page=2&sig=abc"))
        .header("x-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "gone");
    handle.force_flush().unwrap();
    let spans = exporter.spans();
    let c = spans.iter().find(|s| s.span_kind == SpanKind::Client).unwrap();
    assert_eq!(attr(c, "app.has_tenant").as_deref(), Some("true"));
    assert_eq!(attr(c, "app.request_id").as_deref(), Some("r-42"));
    assert_eq!(c.status, Status::Unset);
    assert_eq!(attr(c, "error.type"), None);
    assert_eq!(
        attr(c, "url.full").unwrap(),
        format!("http://{app}/missing?page=2&sig=REDACTED")
    );
}

#[tokio::test]
async fn redirects_followed_by_the_middleware_are_a_span_per_hop() {
    let _g = GLOBALS.lock().await;
    let (handle, exporter) = install();
    let other = serve(
        Router::new()
            .route(
                "/landing",
                get(|headers: http::HeaderMap| async move {
                    format!("authorization sent: {}", headers.contains_key("authorization"))
                }),
            )
            .layer(HttpServerLayer::new()),
    )
    .await;
    let app = serve(
        Router::new()
            .route(
                "/old",
                get(|| async { (http::StatusCode::FOUND, [("location", "/new")], "") }),
            )
            .route("/new", get(|| async { "moved here" }))
            .route(
                "/submit",
                axum::routing::post(|| async { (http::StatusCode::SEE_OTHER, [("location", "/new")], "") }),
            )
            .route(
                "/away",
                get(move || async move {
                    let to = format!("http://{other}/landing");
                    (http::StatusCode::TEMPORARY_REDIRECT, [("location", to)], "")
                }),
            )
            .route(
                "/loop",
                get(|| async { (http::StatusCode::FOUND, [("location", "/loop")], "") }),
            )
            .layer(HttpServerLayer::new()),
    )
    .await;
    let client = ClientBuilder::new(
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    )
    .with(TracingMiddleware::new().with_redirects(3))
    .build();

    let moved = client.get(format!("http://{app}/old")).send().await.unwrap();
    assert_eq!(moved.url().path(), "/new");
    assert_eq!(moved.text().await.unwrap(), "moved here");
    let posted = client
        .post(format!("http://{app}/submit"))
        .body("form")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.text().await.unwrap(), "moved here", "303 continues as GET");
    let away = client
        .get(format!("http://{app}/away"))
        .header("authorization", "Bearer secret")
        .send()
        .await
        .unwrap();
    assert_eq!(away.text().await.unwrap(), "authorization sent: false");
    let looping = client.get(format!("http://{app}/loop")).send().await.unwrap();
    assert_eq!(looping.status(), 302, "after 3 redirects the last answer is returned");
    drop(looping);
    handle.force_flush().unwrap();

    let spans = exporter.spans();
    let clients: Vec<&SpanData> = spans.iter().filter(|s| s.span_kind == SpanKind::Client).collect();
    let hop = |path: &str| -> Vec<&SpanData> {
        clients
            .iter()
            .copied()
            .filter(|c| attr(c, "url.full").is_some_and(|u| u.ends_with(path)))
            .collect()
    };
    let old = hop("/old")[0];
    assert_eq!(attr(old, "http.response.status_code").as_deref(), Some("302"));
    assert_eq!(attr(old, "http.request.resend_count"), None);
    assert_eq!(old.status, Status::Unset, "a redirect is not an error");
    let new = hop("/new");
    assert_eq!(new.len(), 2, "from /old and from /submit");
    assert!(
        new.iter()
            .all(|c| attr(c, "http.request.resend_count").as_deref() == Some("1"))
    );
    assert!(new.iter().all(|c| c.name == "GET"));
    let submit = hop("/submit")[0];
    assert_eq!(submit.name, "POST");
    let landing = hop("/landing")[0];
    assert_eq!(attr(landing, "http.request.resend_count").as_deref(), Some("1"));
    // Each hop's server span is the child of that hop's client span.
    let server_new: Vec<&SpanData> = spans.iter().filter(|s| s.name == "GET /new").collect();
    for s in &server_new {
        assert!(new.iter().any(|c| c.span_context.span_id() == s.parent_span_id));
    }
    let loops = hop("/loop");
    assert_eq!(loops.len(), 4, "the first request and three redirects");
    let mut counts: Vec<String> = loops
        .iter()
        .map(|c| attr(c, "http.request.resend_count").unwrap_or_default())
        .collect();
    counts.sort();
    assert_eq!(counts, ["", "1", "2", "3"]);
}
