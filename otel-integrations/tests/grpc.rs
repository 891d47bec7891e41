//! A tonic server and client on loopback, both traced by our layers: OK and
//! error codes, span names, rpc attributes, one trace across the call.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{SimpleSpanProcessor, SpanData};
use otel_core::Telemetry;
use otel_core::testing::InMemoryExporter;
use otel_integrations::grpc::{GrpcClientLayer, GrpcServerLayer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tower_layer::Layer;

#[derive(Clone, PartialEq, prost::Message)]
struct CheckRequest {
    /// The gRPC code the server answers with (0 = OK).
    #[prost(int32, tag = "1")]
    answer_code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CheckReply {
    #[prost(bool, tag = "1")]
    in_stock: bool,
}

struct Check;

impl tonic::server::UnaryService<CheckRequest> for Check {
    type Response = CheckReply;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<CheckReply>, tonic::Status>> + Send>>;
    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let code = request.get_ref().answer_code;
        Box::pin(async move {
            // A child span made by the handler belongs to the server span.
            otel_core::in_span("inventory.lookup", |_| {});
            match code {
                0 => Ok(tonic::Response::new(CheckReply { in_stock: true })),
                c => Err(tonic::Status::new(tonic::Code::from_i32(c), "scripted")),
            }
        })
    }
}

#[derive(Clone)]
struct Inventory;

impl tonic::server::NamedService for Inventory {
    const NAME: &'static str = "demo.Inventory";
}

impl<B> tower::Service<http::Request<B>> for Inventory
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
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<CheckReply, CheckRequest>::default());
            Ok(grpc.unary(Check, req).await)
        })
    }
}

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn ok_and_error_codes() {
    let exporter = InMemoryExporter::default();
    let _handle = Telemetry::builder()
        .without_exporter()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .install()
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(GrpcServerLayer::new())
            .add_service(Inventory)
            .serve_with_incoming(incoming),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let traced = GrpcClientLayer::new().layer(channel);

    // OK, a caller error (INVALID_ARGUMENT) and server errors.
    for code in [0, 3, 13, 14] {
        let mut client = tonic::client::Grpc::new(traced.clone());
        client.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/demo.Inventory/Check");
        let result = otel_core::spans::span("caller").start();
        let _g = result.clone().attach();
        let reply = client
            .unary(
                tonic::Request::new(CheckRequest { answer_code: code }),
                path,
                tonic_prost::ProstCodec::<CheckRequest, CheckReply>::default(),
            )
            .await;
        drop(_g);
        opentelemetry::trace::TraceContextExt::span(&result).end();
        assert_eq!(reply.is_ok(), code == 0);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    let spans = exporter.spans();
    let servers: Vec<&SpanData> = spans.iter().filter(|s| s.span_kind == SpanKind::Server).collect();
    let clients: Vec<&SpanData> = spans.iter().filter(|s| s.span_kind == SpanKind::Client).collect();
    assert_eq!((servers.len(), clients.len()), (4, 4));
    for s in servers.iter().chain(clients.iter()) {
        assert_eq!(s.name, "demo.Inventory/Check");
        assert_eq!(attr(s, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(attr(s, "rpc.service").as_deref(), Some("demo.Inventory"));
        assert_eq!(attr(s, "rpc.method").as_deref(), Some("Check"));
    }
    for (i, code) in [0, 3, 13, 14].into_iter().enumerate() {
        let (server, client) = (servers[i], clients[i]);
        assert_eq!(
            attr(server, "rpc.grpc.status_code"),
            Some(code.to_string()),
            "server {code}"
        );
        assert_eq!(
            attr(client, "rpc.grpc.status_code"),
            Some(code.to_string()),
            "client {code}"
        );
        // Same trace: the server continues the client's context from the metadata.
        assert_eq!(server.span_context.trace_id(), client.span_context.trace_id());
        assert_eq!(server.parent_span_id, client.span_context.span_id());
        assert!(server.parent_span_is_remote);
        // Server errors only for server-side codes; client errors for any non-OK.
        assert_eq!(
            matches!(server.status, Status::Error { .. }),
            matches!(code, 13 | 14),
            "server {code}"
        );
        assert_eq!(
            matches!(client.status, Status::Error { .. }),
            code != 0,
            "client {code}"
        );
        // The handler's own span is a child of the server span.
        let lookup = spans
            .iter()
            .find(|s| s.name == "inventory.lookup" && s.parent_span_id == server.span_context.span_id());
        assert!(lookup.is_some(), "handler span under server span {code}");
    }
}
