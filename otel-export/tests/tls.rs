//! OTLP over TLS (rustls) to receivers with a freshly generated certificate,
//! trusted through the exporter's CA setting.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use opentelemetry::trace::{Tracer, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use opentelemetry_sdk::trace::SdkTracerProvider;
use otel_export::{BatchSpanProcessor, OtlpExporter, Protocol, RetryPolicy};
use std::sync::Arc;
use std::time::Duration;

fn certificate() -> (String, String) {
    certificate_for(&["127.0.0.1", "localhost"])
}

fn certificate_for(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn export(builder: otel_export::OtlpExporterBuilder, n: usize) -> otel_export::CountersSnapshot {
    let processor = BatchSpanProcessor::builder(builder.with_retry(RetryPolicy::disabled()).build().unwrap()).build();
    let counters = processor.counters();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    let tracer = provider.tracer("tls");
    for _ in 0..n {
        tracer.in_span("secure", |_| {});
    }
    let _ = provider.shutdown_with_timeout(Duration::from_secs(15));
    counters.snapshot()
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_over_tls_with_a_custom_ca() {
    let (cert, key) = certificate();
    let received = Arc::new(common::Received::default());
    let addr = grpc_tls_server(&cert, &key, received.clone()).await;
    let endpoint = format!("https://127.0.0.1:{}", addr.port());
    let trusted = OtlpExporter::builder()
        .with_protocol(Protocol::Grpc)
        .with_endpoint(endpoint.clone())
        .with_ca_certificate_pem(cert.as_bytes());
    let c = tokio::task::spawn_blocking(move || export(trusted, 20)).await.unwrap();
    assert_eq!((c.exported, received.span_count()), (20, 20));

    // Without the CA the server is not trusted: nothing is delivered, and it is counted.
    let untrusted = OtlpExporter::builder()
        .with_protocol(Protocol::Grpc)
        .with_endpoint(endpoint);
    let c = tokio::task::spawn_blocking(move || export(untrusted, 5)).await.unwrap();
    assert_eq!((c.exported, c.failed), (0, 5));
    assert_eq!(received.span_count(), 20);
}

/// A gRPC server over TLS with `cert`; its address.
async fn grpc_tls_server(cert: &str, key: &str, received: Arc<common::Received>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key));
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let svc = TraceServiceServer::new(common::GrpcServiceForTests::new(received));
    tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(svc)
            .serve_with_incoming(incoming),
    );
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tls_server_name_can_differ_from_the_endpoint_host() {
    // The certificate names a service, the endpoint is an IP address.
    let (cert, key) = certificate_for(&["collector.internal"]);
    let received = Arc::new(common::Received::default());
    let addr = grpc_tls_server(&cert, &key, received.clone()).await;
    let endpoint = format!("https://127.0.0.1:{}", addr.port());
    let named = OtlpExporter::builder()
        .with_protocol(Protocol::Grpc)
        .with_endpoint(endpoint.clone())
        .with_ca_certificate_pem(cert.as_bytes())
        .with_tls_server_name("collector.internal");
    let c = tokio::task::spawn_blocking(move || export(named, 10)).await.unwrap();
    assert_eq!((c.exported, received.span_count()), (10, 10));
    // Verified against the endpoint's host, the certificate does not match.
    let unnamed = OtlpExporter::builder()
        .with_protocol(Protocol::Grpc)
        .with_endpoint(endpoint)
        .with_ca_certificate_pem(cert.as_bytes());
    let c = tokio::task::spawn_blocking(move || export(unnamed, 5)).await.unwrap();
    assert_eq!((c.exported, c.failed), (0, 5));
    // And over HTTPS.
    let received = Arc::new(common::Received::default());
    let addr = https_server(&cert, &key, received.clone()).await;
    let endpoint = format!("https://127.0.0.1:{}", addr.port());
    let named = OtlpExporter::builder()
        .with_endpoint(endpoint.clone())
        .with_ca_certificate_pem(cert.as_bytes())
        .with_tls_server_name("collector.internal");
    let c = tokio::task::spawn_blocking(move || export(named, 10)).await.unwrap();
    assert_eq!((c.exported, received.span_count()), (10, 10));
    let unnamed = OtlpExporter::builder()
        .with_endpoint(endpoint)
        .with_ca_certificate_pem(cert.as_bytes());
    let c = tokio::task::spawn_blocking(move || export(unnamed, 5)).await.unwrap();
    assert_eq!((c.exported, c.failed), (0, 5));
}

/// An OTLP/HTTP server over TLS with `cert`; its address.
async fn https_server(cert: &str, key: &str, received: Arc<common::Received>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    use rustls::pki_types::pem::PemObject;
    let certs = vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let r = received.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                common::serve_http_connection(tokio_rustls::TlsStream::Server(tls), r).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_custom_ca() {
    let (cert, key) = certificate();
    let received = Arc::new(common::Received::default());
    // The server of the test uses ring, as the exporter falls back to.
    let addr = https_server(&cert, &key, received.clone()).await;
    let trusted = OtlpExporter::builder()
        .with_endpoint(format!("https://127.0.0.1:{}", addr.port()))
        .with_ca_certificate_pem(cert.as_bytes());
    let c = tokio::task::spawn_blocking(move || export(trusted, 20)).await.unwrap();
    assert_eq!((c.exported, received.span_count()), (20, 20));
}
