//! axum servers and hyper clients on loopback, three hops: one trace, the
//! right parents, semantic-convention attributes, 5xx as errors, route
//! templates as names, spans open until the body has streamed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{SimpleSpanProcessor, SpanData};
use otel_core::Telemetry;
use otel_core::testing::{InMemoryExporter, render_trace, tree_shape};
use otel_integrations::http::{HttpClientLayer, HttpServerLayer};
use std::net::SocketAddr;

use std::time::Duration;
use tower::ServiceExt;
use tower_layer::Layer;

static GLOBALS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn install() -> (otel_core::TelemetryHandle, InMemoryExporter) {
    let exporter = InMemoryExporter::default();
    let handle = Telemetry::builder()
        .with_service_name("http-test")
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .install()
        .unwrap();
    (handle, exporter)
}

type TracedClient =
    otel_integrations::http::HttpClient<Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>>;

fn client() -> TracedClient {
    HttpClientLayer::new().layer(Client::builder(TokioExecutor::new()).build_http())
}

async fn get_text(client: &TracedClient, url: String) -> (u16, String) {
    let req = http::Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let resp = client.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
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

#[tokio::test(flavor = "multi_thread")]
async fn three_hops_make_one_trace() {
    let _g = GLOBALS.lock().await;
    let (_handle, exporter) = install();

    let stock = serve(
        Router::new()
            .route(
                "/stock/{id}",
                get(|Path(id): Path<u32>| async move {
                    if id == 13 {
                        (
                            http::StatusCode::INTERNAL_SERVER_ERROR,
                            "out of stock service".to_owned(),
                        )
                    } else {
                        (http::StatusCode::OK, format!("{id}: 7 left"))
                    }
                }),
            )
            .layer(HttpServerLayer::new()),
    )
    .await;
    let items = serve(
        Router::new()
            .route(
                "/items/{id}",
                get(move |Path(id): Path<u32>| async move {
                    let (status, body) = get_text(&client(), format!("http://{stock}/stock/{id}")).await;
                    (http::StatusCode::from_u16(status).unwrap(), body)
                }),
            )
            .layer(HttpServerLayer::new()),
    )
    .await;
    let gateway = serve(
        Router::new()
            .route(
                "/api/products/{id}",
                get(move |Path(id): Path<u32>| async move {
                    let (status, body) = get_text(&client(), format!("http://{items}/items/{id}")).await;
                    (http::StatusCode::from_u16(status).unwrap(), body)
                }),
            )
            .layer(HttpServerLayer::new()),
    )
    .await;

    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::get(format!("http://{gateway}/api/products/42"))
        .header("user-agent", "hop-test/1.0")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = plain.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let spans = exporter.spans();
    assert_eq!(
        spans.len(),
        5,
        "3 server spans and 2 client spans: {:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let trace = spans[0].span_context.trace_id();
    assert!(spans.iter().all(|s| s.span_context.trace_id() == trace), "one trace");
    let tree = render_trace(&spans, trace);
    let names = tree_shape(&tree);
    assert_eq!(
        names,
        [
            "GET /api/products/{id}",
            "└── GET",
            "    └── GET /items/{id}",
            "        └── GET",
            "            └── GET /stock/{id}"
        ],
        "{tree}"
    );
    let root = spans.iter().find(|s| s.name == "GET /api/products/{id}").unwrap();
    assert_eq!(root.span_kind, SpanKind::Server);
    assert!(!root.parent_span_is_remote && root.parent_span_id == opentelemetry::trace::SpanId::INVALID);
    assert_eq!(attr(root, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(root, "http.route").as_deref(), Some("/api/products/{id}"));
    assert_eq!(attr(root, "url.path").as_deref(), Some("/api/products/42"));
    assert_eq!(attr(root, "url.scheme").as_deref(), Some("http"));
    assert_eq!(attr(root, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(root, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(root, "server.port"), Some(gateway.port().to_string()));
    assert_eq!(attr(root, "user_agent.original").as_deref(), Some("hop-test/1.0"));
    assert_eq!(attr(root, "network.protocol.version").as_deref(), Some("1.1"));
    let items_server = spans.iter().find(|s| s.name == "GET /items/{id}").unwrap();
    assert!(
        items_server.parent_span_is_remote,
        "the middle hop continues a remote parent"
    );
    let clients: Vec<&SpanData> = spans.iter().filter(|s| s.span_kind == SpanKind::Client).collect();
    assert!(
        clients
            .iter()
            .all(|c| attr(c, "url.full").is_some() && attr(c, "http.response.status_code").as_deref() == Some("200"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_errors() {
    let _g = GLOBALS.lock().await;
    let (_handle, exporter) = install();
    let failing = serve(
        Router::new()
            .route(
                "/boom",
                get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
            )
            .route("/missing", get(|| async { (http::StatusCode::NOT_FOUND, "nope") }))
            .layer(HttpServerLayer::new()),
    )
    .await;
    let c = client();
    assert_eq!(get_text(&c, format!("http://{failing}/boom")).await.0, 503);
    assert_eq!(get_text(&c, format!("http://{failing}/missing")).await.0, 404);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let spans = exporter.spans();
    let boom = spans.iter().find(|s| s.name == "GET /boom").unwrap();
    assert!(
        matches!(boom.status, Status::Error { .. }),
        "5xx is an error on the server"
    );
    assert_eq!(attr(boom, "error.type").as_deref(), Some("503"));
    let missing = spans.iter().find(|s| s.name == "GET /missing").unwrap();
    assert_eq!(
        missing.status,
        Status::Unset,
        "4xx is the caller's problem, not the server's"
    );
    let clients: Vec<&SpanData> = spans.iter().filter(|s| s.span_kind == SpanKind::Client).collect();
    assert_eq!(clients.len(), 2);
    assert!(
        clients.iter().all(|c| matches!(c.status, Status::Error { .. })),
        "4xx and 5xx are errors on the client"
    );

    // A transport error is an error too.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let req = http::Request::get(format!("http://{dead}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(c.clone().oneshot(req).await.is_err());
    let failed = exporter
        .spans()
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .find(|s| attr(s, "error.type").as_deref() == Some("transport"));
    assert!(failed.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_hyper_service_uses_the_route_function_never_the_raw_path() {
    let _g = GLOBALS.lock().await;
    let (_handle, exporter) = install();
    let svc = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
        // A body that streams for a while: the span must cover it.
        let chunks = futures_util::stream::iter(0..3).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(format!("chunk{i}"))))
        });
        Ok::<_, std::convert::Infallible>(http::Response::new(StreamBody::new(Box::pin(chunks))))
    });
    let with_route = HttpServerLayer::new()
        .with_route_fn(|parts| {
            parts
                .uri
                .path()
                .starts_with("/users/")
                .then(|| "/users/{id}".to_owned())
        })
        .layer(svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper_util::service::TowerToHyperService::new(with_route.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    let c = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for path in ["/users/123", "/other/xyz"] {
        let resp = c
            .request(
                http::Request::get(format!("http://{addr}{path}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"chunk0chunk1chunk2");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let spans = exporter.spans();
    let names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
    assert!(names.contains(&"GET /users/{id}".to_owned()), "{names:?}");
    assert!(
        names.contains(&"GET".to_owned()),
        "no route known: the method alone, not /other/xyz: {names:?}"
    );
    for s in &spans {
        let d = s.end_time.duration_since(s.start_time).unwrap();
        assert!(
            d >= Duration::from_millis(150),
            "span ended before the body finished: {d:?}"
        );
    }
}

use futures_util::StreamExt as _;

/// Two services in one process, each with its own provider (and resource):
/// the spans land in the right provider, in one trace.
#[tokio::test(flavor = "multi_thread")]
async fn each_service_can_have_its_own_tracer_provider() {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    let propagator = otel_propagation::TraceContextPropagator::new();
    let provider = |name: &str| {
        let exporter = InMemorySpanExporter::default();
        let p = SdkTracerProvider::builder()
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_service_name(name.to_owned())
                    .build(),
            )
            .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
            .build();
        (p, exporter)
    };
    let (front, front_spans) = provider("front");
    let (back, back_spans) = provider("back");
    let back_app = Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move { format!("item {id}") }),
        )
        .layer(
            HttpServerLayer::new()
                .with_tracer_provider(&back)
                .with_propagator(propagator.clone()),
        );
    let back_addr = serve(back_app).await;
    let client = HttpClientLayer::new()
        .with_tracer_provider(&front)
        .with_propagator(propagator.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http());
    let front_app = Router::new()
        .route(
            "/",
            get(move || {
                let client = client.clone();
                async move {
                    let req = http::Request::get(format!("http://{back_addr}/items/7"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let resp = client.oneshot(req).await.unwrap();
                    let body = resp.into_body().collect().await.unwrap().to_bytes();
                    String::from_utf8_lossy(&body).into_owned()
                }
            }),
        )
        .layer(
            HttpServerLayer::new()
                .with_tracer_provider(&front)
                .with_propagator(propagator),
        );
    let front_addr = serve(front_app).await;
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = plain
        .get(format!("http://{front_addr}/").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "item 7");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let f = front_spans.get_finished_spans().unwrap();
    let b = back_spans.get_finished_spans().unwrap();
    let names = |v: &[SpanData]| {
        v.iter()
            .map(|s| (s.name.to_string(), s.span_kind.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&b), [("GET /items/{id}".to_owned(), SpanKind::Server)]);
    assert_eq!(f.len(), 2, "{:?}", names(&f));
    assert!(f.iter().any(|s| s.span_kind == SpanKind::Client));
    let trace = f[0].span_context.trace_id();
    assert!(f.iter().chain(&b).all(|s| s.span_context.trace_id() == trace));
    let client_span = f.iter().find(|s| s.span_kind == SpanKind::Client).unwrap();
    assert_eq!(b[0].parent_span_id, client_span.span_context.span_id());
    assert_eq!(b[0].instrumentation_scope.name(), "otel-integrations");
    let _ = (front.tracer("x"), back.shutdown());
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_and_hooks_shape_the_server_spans() {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::TraceContextExt;
    let _g = GLOBALS.lock().await;
    let (_handle, exporter) = install();
    // The handler answers with the trace id current while it runs.
    let current_trace = || async {
        let cx = opentelemetry::Context::current();
        let id = cx.span().span_context().trace_id().to_string();
        ([("x-cache", "hit")], id)
    };
    let app = serve(
        Router::new()
            .route("/healthz", get(current_trace))
            .route("/orders", get(current_trace))
            .route(
                "/slow-down",
                get(|| async { (http::StatusCode::TOO_MANY_REQUESTS, "later") }),
            )
            .layer(
                HttpServerLayer::new()
                    .with_filter(|req| req.uri.path() != "/healthz")
                    .with_request_attributes(|req| {
                        req.headers
                            .get("x-tenant")
                            .and_then(|v| v.to_str().ok())
                            .map(|t| vec![KeyValue::new("app.tenant", t.to_owned())])
                            .unwrap_or_default()
                    })
                    .with_response_attributes(|_, headers| {
                        headers
                            .get("x-cache")
                            .and_then(|v| v.to_str().ok())
                            .map(|c| vec![KeyValue::new("app.cache", c.to_owned())])
                            .unwrap_or_default()
                    })
                    .with_error_statuses(|s| s.is_server_error() || s == http::StatusCode::TOO_MANY_REQUESTS),
            ),
    )
    .await;
    let c = client();
    let (status, health_trace) = get_text(&c, format!("http://{app}/healthz")).await;
    assert_eq!(status, 200);
    let req = http::Request::get(format!("http://{app}/orders"))
        .header("x-tenant", "acme")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(get_text(&c, format!("http://{app}/slow-down")).await.0, 429);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let spans = exporter.spans();
    let servers: Vec<&SpanData> = spans.iter().filter(|s| s.span_kind == SpanKind::Server).collect();
    assert!(
        servers.iter().all(|s| s.name != "GET /healthz"),
        "filtered requests get no span: {:?}",
        servers.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // The filtered handler still ran in the caller's context.
    let health_client = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Client && attr(s, "url.full").is_some_and(|u| u.ends_with("/healthz")))
        .unwrap();
    assert_eq!(health_trace, health_client.span_context.trace_id().to_string());

    let orders = servers.iter().find(|s| s.name == "GET /orders").unwrap();
    assert_eq!(attr(orders, "app.tenant").as_deref(), Some("acme"));
    assert_eq!(attr(orders, "app.cache").as_deref(), Some("hit"));
    assert_eq!(attr(orders, "http.route").as_deref(), Some("/orders"));
    assert_eq!(orders.status, Status::Unset);

    let slow = servers.iter().find(|s| s.name == "GET /slow-down").unwrap();
    assert!(matches!(slow.status, Status::Error { .. }), "429 is an error by choice");
    assert_eq!(attr(slow, "error.type").as_deref(), Some("429"));
    assert_eq!(attr(slow, "app.tenant"), None);
}
