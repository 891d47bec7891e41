//! Trace context carried in gRPC metadata between a real tonic client and server on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use otel_propagation::carrier::tonic::{extract, inject};
use otel_propagation::{BaggagePropagator, CompositePropagator, TraceContextPropagator};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use tokio::net::TcpListener;

#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    message: String,
}

/// What the server saw in the request metadata.
#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    trace_id: String,
    #[prost(string, tag = "2")]
    parent_span_id: String,
    #[prost(bool, tag = "3")]
    sampled: bool,
    #[prost(bool, tag = "4")]
    remote: bool,
    #[prost(string, tag = "5")]
    tracestate: String,
    #[prost(string, tag = "6")]
    tenant: String,
}

fn propagator() -> CompositePropagator {
    CompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

struct EchoUnary;

impl tonic::server::UnaryService<EchoRequest> for EchoUnary {
    type Response = EchoReply;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<EchoReply>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let cx = extract(&propagator(), request.metadata());
        let span = cx.span();
        let sc = span.span_context();
        let reply = EchoReply {
            trace_id: sc.trace_id().to_string(),
            parent_span_id: sc.span_id().to_string(),
            sampled: sc.is_sampled(),
            remote: sc.is_remote(),
            tracestate: sc.trace_state().header(),
            tenant: cx.baggage().get("tenant").map(|v| v.to_string()).unwrap_or_default(),
        };
        Box::pin(async move { Ok(tonic::Response::new(reply)) })
    }
}

/// A hand-written gRPC service (what tonic's code generator would emit).
#[derive(Clone)]
struct EchoServer;

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = "test.Echo";
}

impl<B> tower::Service<http::Request<B>> for EchoServer
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
            if req.uri().path() == "/test.Echo/Echo" {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<EchoReply, EchoRequest>::default());
                Ok(grpc.unary(EchoUnary, req).await)
            } else {
                Ok(tonic::Status::unimplemented("no such method").into_http())
            }
        })
    }
}

async fn start_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer)
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

async fn call(endpoint: &str, cx: &Context) -> EchoReply {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(EchoRequest { message: "hi".into() });
    inject(&propagator(), cx, request.metadata_mut());
    let path = http::uri::PathAndQuery::from_static("/test.Echo/Echo");
    let codec = tonic_prost::ProstCodec::<EchoRequest, EchoReply>::default();
    client.unary(request, path, codec).await.unwrap().into_inner()
}

#[tokio::test]
async fn context_crosses_a_grpc_hop() {
    let endpoint = start_server().await;
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let cx = Context::new()
        .with_remote_span_context(SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap(),
        ))
        .with_baggage([opentelemetry::KeyValue::new("tenant", "acme corp")]);

    let reply = call(&endpoint, &cx).await;
    assert_eq!(reply.trace_id, trace_id.to_string());
    assert_eq!(reply.parent_span_id, span_id.to_string());
    assert!(reply.sampled && reply.remote);
    assert_eq!(reply.tracestate, "congo=t61rcWkgMzE");
    assert_eq!(reply.tenant, "acme corp");
}

#[tokio::test]
async fn no_context_means_no_parent() {
    let endpoint = start_server().await;
    let reply = call(&endpoint, &Context::new()).await;
    assert_eq!(reply.trace_id, TraceId::INVALID.to_string());
    assert!(!reply.remote);
    // The fields the client wrote are exactly the propagator's fields.
    assert_eq!(
        propagator().fields().collect::<Vec<_>>(),
        ["traceparent", "tracestate", "baggage"]
    );
}
