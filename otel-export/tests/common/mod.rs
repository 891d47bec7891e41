//! Real OTLP receivers on loopback for the export tests: a tonic gRPC server
//! and a hyper HTTP server, both recording what they decode and answering as
//! a script says (failures, delays, partial success).
#![allow(dead_code, unreachable_pub, missing_docs)] // shared by several test files; each uses a part

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use otel_export::wire::{put_bytes, put_tag, put_varint};
use prost::Message;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok,
    Partial(i64, &'static str),
    /// gRPC status code (with RetryInfo delay when given).
    Grpc(tonic::Code, Option<Duration>),
    /// HTTP status (with Retry-After seconds when given).
    Http(u16, Option<u64>),
    /// Answer OK after this long.
    Slow(Duration),
}

#[derive(Debug, Default)]
pub struct Received {
    pub requests: Mutex<Vec<ExportTraceServiceRequest>>,
    pub spans: AtomicUsize,
    pub attempts: AtomicUsize,
    pub content_types: Mutex<Vec<String>>,
    pub encodings: Mutex<Vec<String>>,
    script: Mutex<VecDeque<Reply>>,
}

impl Received {
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    fn next_reply(&self) -> Reply {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.script.lock().unwrap().pop_front().unwrap_or(Reply::Ok)
    }

    fn record(&self, req: ExportTraceServiceRequest) {
        let n: usize = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(n, Ordering::SeqCst);
        self.requests.lock().unwrap().push(req);
    }

    pub fn span_count(&self) -> usize {
        self.spans.load(Ordering::SeqCst)
    }

    pub fn span_names(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect()
    }

    /// Waits until `n` spans have arrived or `timeout` passes.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let start = std::time::Instant::now();
        while self.span_count() < n && start.elapsed() < timeout {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.span_count()
    }
}

/// `google.rpc.Status` details carrying a `RetryInfo`.
pub fn retry_info_details(code: i32, delay: Duration) -> Vec<u8> {
    let mut duration = Vec::new();
    put_tag(&mut duration, 1, 0);
    put_varint(&mut duration, delay.as_secs());
    put_tag(&mut duration, 2, 0);
    put_varint(&mut duration, u64::from(delay.subsec_nanos()));
    let mut info = Vec::new();
    put_bytes(&mut info, 1, &duration);
    let mut any = Vec::new();
    put_bytes(&mut any, 1, b"type.googleapis.com/google.rpc.RetryInfo");
    put_bytes(&mut any, 2, &info);
    let mut status = Vec::new();
    put_tag(&mut status, 1, 0);
    put_varint(&mut status, code as u64);
    put_bytes(&mut status, 3, &any);
    status
}

pub struct GrpcServiceForTests(Arc<Received>);

impl GrpcServiceForTests {
    pub fn new(received: Arc<Received>) -> Self {
        GrpcServiceForTests(received)
    }
}

#[tonic::async_trait]
impl TraceService for GrpcServiceForTests {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let reply = self.0.next_reply();
        if let Some(enc) = request.metadata().get("grpc-encoding") {
            self.0
                .encodings
                .lock()
                .unwrap()
                .push(enc.to_str().unwrap_or("").to_owned());
        }
        match reply {
            Reply::Grpc(code, delay) => {
                return Err(match delay {
                    Some(d) => {
                        tonic::Status::with_details(code, "scripted", Bytes::from(retry_info_details(code as i32, d)))
                    }
                    None => tonic::Status::new(code, "scripted"),
                });
            }
            Reply::Slow(d) => tokio::time::sleep(d).await,
            _ => {}
        }
        self.0.record(request.into_inner());
        let partial_success = match reply {
            Reply::Partial(n, msg) => Some(ExportTracePartialSuccess {
                rejected_spans: n,
                error_message: msg.into(),
            }),
            _ => None,
        };
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success }))
    }
}

/// Serves OTLP/gRPC on `listener` (accepting gzip and zstd).
pub async fn serve_grpc_on(listener: TcpListener, received: Arc<Received>) {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = TraceServiceServer::new(GrpcServiceForTests::new(received))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
        .max_decoding_message_size(64 << 20);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
}

/// A gRPC receiver on an ephemeral loopback port.
pub async fn grpc_sink() -> (SocketAddr, Arc<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Received::default());
    serve_grpc_on(listener, received.clone()).await;
    (addr, received)
}

fn decompress(encoding: Option<&str>, body: Bytes) -> Vec<u8> {
    use std::io::Read;
    match encoding {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).unwrap();
            out
        }
        Some("zstd") => zstd::stream::decode_all(&body[..]).unwrap(),
        Some("snappy") => {
            let mut out = Vec::new();
            snap::read::FrameDecoder::new(&body[..]).read_to_end(&mut out).unwrap();
            out
        }
        _ => body.to_vec(),
    }
}

async fn handle_http(
    received: Arc<Received>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, hyper::Error> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let encoding = req
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    received.content_types.lock().unwrap().push(content_type.clone());
    if let Some(e) = &encoding {
        received.encodings.lock().unwrap().push(e.clone());
    }
    let body = req.into_body().collect().await?.to_bytes();
    let reply = received.next_reply();
    let respond = |status: u16, retry_after: Option<u64>| {
        let mut r = http::Response::new(Full::new(Bytes::from_static(b"scripted failure")));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        if let Some(s) = retry_after {
            r.headers_mut().insert("retry-after", s.to_string().parse().unwrap());
        }
        r
    };
    match reply {
        Reply::Http(status, retry_after) => return Ok(respond(status, retry_after)),
        Reply::Slow(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    let raw = decompress(encoding.as_deref(), body);
    let json = content_type == "application/json";
    let request: ExportTraceServiceRequest = if json {
        serde_json::from_slice(&raw).unwrap()
    } else {
        ExportTraceServiceRequest::decode(raw.as_slice()).unwrap()
    };
    received.record(request);
    let partial_success = match reply {
        Reply::Partial(n, msg) => Some(ExportTracePartialSuccess {
            rejected_spans: n,
            error_message: msg.into(),
        }),
        _ => None,
    };
    let response = ExportTraceServiceResponse { partial_success };
    let (body, ct) = if json {
        (serde_json::to_vec(&response).unwrap(), "application/json")
    } else {
        (response.encode_to_vec(), "application/x-protobuf")
    };
    let mut r = http::Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert("content-type", ct.parse().unwrap());
    Ok(r)
}

/// Serves OTLP/HTTP on one accepted connection (plain or TLS).
pub async fn serve_http_connection<S>(stream: S, received: Arc<Received>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle_http(received.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

/// An OTLP/HTTP receiver on an ephemeral loopback port (protobuf and JSON, gzip, zstd and snappy).
pub async fn http_sink() -> (SocketAddr, Arc<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Received::default());
    let r = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let r = r.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle_http(r.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, received)
}
