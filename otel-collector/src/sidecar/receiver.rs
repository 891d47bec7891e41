//! The OTLP receiver: gRPC (tonic's server for connections, the message
//! read and decompressed here and passed on unparsed) and HTTP (protobuf or
//! JSON), both gzip, zstd or snappy, both feeding the same intake.

use super::component::{Admission, Authenticator};
use super::decompress::{Encoding, decompress};
use super::metrics::{Metrics, add};
use super::pipeline::Consumer;
use super::wire::split_request;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use otel_export::wire::{put_bytes, put_tag, put_varint};
use prost::Message as _;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use tokio::sync::watch;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Where a receiver's spans go: each pipeline's head, after its gates (memory limiters).
#[derive(Clone)]
pub(crate) struct PipelineEntry {
    pub(crate) gates: Vec<Arc<dyn Admission>>,
    pub(crate) head: Arc<dyn Consumer>,
    /// Journals that take the pipeline's spans as they arrive (persistent
    /// queues right after the receiver): a request is answered once they
    /// hold it durably.
    pub(crate) journals: Vec<Arc<super::journal::Journal>>,
}

/// Why a request was not taken.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not a valid request: the client must not retry.
    Malformed(String),
    /// Over a limit (memory, a full persistent queue): retry later.
    Busy(&'static str),
}

/// Counts and dispatches what one receiver takes in.
pub(crate) struct Intake {
    pub(crate) pipelines: Vec<PipelineEntry>,
    live: Arc<super::wire::LiveBytes>,
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    malformed: Arc<AtomicU64>,
    unauthenticated: Arc<AtomicU64>,
}

impl Intake {
    pub(crate) fn new(pipelines: Vec<PipelineEntry>, metrics: &Metrics, id: &str, transport: &str) -> Arc<Self> {
        let l = [("receiver", id), ("transport", transport)];
        Arc::new(Intake {
            pipelines,
            live: metrics.live(),
            accepted: metrics.counter(
                "otelcol_receiver_accepted_spans",
                "Spans accepted into the pipelines.",
                &l,
            ),
            refused: metrics.counter(
                "otelcol_receiver_refused_spans",
                "Spans refused (memory limit); clients retry.",
                &l,
            ),
            malformed: metrics.counter(
                "otelcol_receiver_malformed_requests",
                "Trace requests refused unread: not valid OTLP, an unsupported content type or encoding, or over the size limit.",
                &l,
            ),
            unauthenticated: metrics.counter(
                "otelcol_receiver_unauthenticated_requests",
                "Trace requests refused for missing or wrong credentials (auth).",
                &l,
            ),
        })
    }

    /// Whether `headers` pass `auth` (no auth: always); counts a refusal.
    pub(crate) fn authenticated(&self, auth: Option<&Arc<dyn Authenticator>>, headers: &http::HeaderMap) -> bool {
        let ok = auth.is_none_or(|a| a.authenticate(headers));
        if !ok {
            add(&self.unauthenticated, 1);
        }
        ok
    }

    /// Counts a request refused before its spans could be read (bad compression,
    /// bad JSON, an unsupported content type or encoding, an oversized body).
    pub(crate) fn note_malformed(&self) {
        add(&self.malformed, 1);
    }

    /// [`accept`](Self::accept), after waiting (up to 10 s) for room in
    /// gates that block rather than refuse, and answered once the spans are
    /// durable in the journals that took them.
    pub(crate) async fn take(&self, body: &Bytes) -> Result<usize, Refusal> {
        let blocking: Vec<&Arc<dyn Admission>> = self
            .pipelines
            .iter()
            .flat_map(|p| p.gates.iter())
            .filter(|g| g.blocking())
            .collect();
        if !blocking.is_empty() {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while blocking.iter().any(|g| !g.admit(0, 0)) && std::time::Instant::now() < until {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        let failed_before: u64 = self.journals().map(|j| j.failed_appends()).sum();
        let n = self.accept(body)?;
        if self.journals().map(|j| j.failed_appends()).sum::<u64>() != failed_before {
            // Some of this request may not be on disk: the client sends it again.
            return Err(Refusal::Busy(
                "data refused: it could not be written to disk (disk full?)",
            ));
        }
        for j in self.journals() {
            j.durable(j.last_ticket()).await;
        }
        Ok(n)
    }

    fn journals(&self) -> impl Iterator<Item = &Arc<super::journal::Journal>> {
        self.pipelines.iter().flat_map(|p| p.journals.iter())
    }

    /// Takes an `ExportTraceServiceRequest` (protobuf bytes); the spans keep slices of `body`.
    pub(crate) fn accept(&self, body: &Bytes) -> Result<usize, Refusal> {
        let spans = match split_request(body, &self.live) {
            Ok(s) => s,
            Err(e) => {
                add(&self.malformed, 1);
                return Err(Refusal::Malformed(e.0));
            }
        };
        let n = spans.len();
        if n == 0 {
            return Ok(0);
        }
        for p in &self.pipelines {
            if let Some(g) = p.gates.iter().find(|g| !g.admit(0, n as u64)) {
                add(&self.refused, n as u64);
                return Err(Refusal::Busy(g.reason()));
            }
        }
        if let Some((last, rest)) = self.pipelines.split_last() {
            for p in rest {
                p.head.consume(spans.to_vec());
            }
            last.head.consume(spans);
        }
        add(&self.accepted, n as u64);
        Ok(n)
    }
}

/// `google.rpc.Status` with `code` and `message`, and a `RetryInfo` detail when given.
fn rpc_status(code: i32, message: &str, retry_after_secs: Option<u64>) -> Vec<u8> {
    use otel_export::wire::VARINT;
    use otel_export::wire::field::{any, duration, retry_info, rpc_status};
    let mut s = Vec::new();
    put_tag(&mut s, rpc_status::CODE, VARINT);
    put_varint(&mut s, code as u64);
    put_bytes(&mut s, rpc_status::MESSAGE, message.as_bytes());
    if let Some(secs) = retry_after_secs {
        let mut delay = Vec::new();
        put_tag(&mut delay, duration::SECONDS, VARINT);
        put_varint(&mut delay, secs);
        let mut info = Vec::new();
        put_bytes(&mut info, retry_info::RETRY_DELAY, &delay);
        let mut detail = Vec::new();
        put_bytes(&mut detail, any::TYPE_URL, b"type.googleapis.com/google.rpc.RetryInfo");
        put_bytes(&mut detail, any::VALUE, &info);
        put_bytes(&mut s, rpc_status::DETAILS, &detail);
    }
    s
}

// --- gRPC --------------------------------------------------------------------

/// The trace service, for tonic's server.
#[derive(Clone)]
pub(crate) struct TraceGrpc {
    intake: Arc<Intake>,
    max_message: usize,
    auth: Option<Arc<dyn Authenticator>>,
}

impl TraceGrpc {
    pub(crate) fn new(intake: Arc<Intake>, max_message: usize, auth: Option<Arc<dyn Authenticator>>) -> Self {
        TraceGrpc {
            intake,
            max_message,
            auth,
        }
    }
}

impl tonic::server::NamedService for TraceGrpc {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

type BoxResponse = Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl tower_service::Service<Request<tonic::body::Body>> for TraceGrpc {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxResponse;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            let status = tonic::Status::unimplemented(format!(
                "{} is not served here: this collector receives traces (TraceService/Export)",
                req.uri().path()
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        if !self.intake.authenticated(self.auth.as_ref(), req.headers()) {
            let status = tonic::Status::unauthenticated("missing or invalid credentials");
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let intake = self.intake.clone();
        let max = self.max_message;
        Box::pin(async move {
            let response = match read_export(req, max).await {
                Ok(body) => match intake.take(&body).await {
                    Ok(_) => grpc_ok(),
                    Err(Refusal::Malformed(m)) => tonic::Status::invalid_argument(m).into_http(),
                    Err(Refusal::Busy(why)) => tonic::Status::with_details(
                        tonic::Code::Unavailable,
                        why,
                        Bytes::from(rpc_status(tonic::Code::Unavailable as i32, why, Some(1))),
                    )
                    .into_http(),
                },
                Err(status) => {
                    // Refused before its spans could be read (too large,
                    // unknown or broken compression): counted like the HTTP refusals.
                    intake.note_malformed();
                    let unimplemented = status.code() == tonic::Code::Unimplemented;
                    let mut r = status.into_http();
                    if unimplemented {
                        r.headers_mut().insert(
                            "grpc-accept-encoding",
                            http::HeaderValue::from_static(super::decompress::ACCEPTED),
                        );
                    }
                    r
                }
            };
            Ok(response)
        })
    }
}

/// The answer to an export taken whole: an empty `ExportTraceServiceResponse`
/// and `grpc-status: 0`.
fn grpc_ok() -> http::Response<tonic::body::Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    // One message, not compressed, of length 0.
    let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])).with_trailers(std::future::ready(Some(Ok(trailers))));
    let mut r = http::Response::new(tonic::body::Body::new(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    h.insert(
        "grpc-accept-encoding",
        http::HeaderValue::from_static(super::decompress::ACCEPTED),
    );
    r
}

/// The one request message of a unary call (`ExportTraceServiceRequest`
/// bytes), decompressed as its `grpc-encoding` says, in a buffer of exactly
/// its size: the spans keep it alive while they are buffered.
async fn read_export(req: Request<tonic::body::Body>, max: usize) -> Result<Bytes, tonic::Status> {
    let name = req
        .headers()
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let Some(encoding) = Encoding::from_name(&name) else {
        return Err(tonic::Status::unimplemented(format!(
            "grpc-encoding {name:?} is not supported; use {}",
            super::decompress::ACCEPTED
        )));
    };
    let (compressed, message) = read_one_message(req.into_body(), max).await?;
    if !compressed {
        return Ok(Bytes::from(message));
    }
    if encoding == Encoding::Identity {
        return Err(tonic::Status::internal(
            "a compressed message without a grpc-encoding (or with identity)",
        ));
    }
    match decompress(encoding, message, max) {
        Ok(m) => Ok(Bytes::from(m)),
        Err(e @ super::decompress::Error::TooLarge(_)) => Err(tonic::Status::resource_exhausted(e.to_string())),
        Err(e) => Err(tonic::Status::internal(e.to_string())),
    }
}

/// What a message's buffer reserves before more than this has arrived.
const FIRST_RESERVE: usize = 256 << 10;

/// Reads a gRPC body holding one length-prefixed message of at most `max`
/// bytes: whether it is compressed, and its bytes.
async fn read_one_message(
    mut body: impl hyper::body::Body<Data = Bytes, Error = tonic::Status> + Unpin,
    max: usize,
) -> Result<(bool, Vec<u8>), tonic::Status> {
    let mut prefix = [0u8; 5];
    let mut have = 0;
    let mut header: Option<(bool, usize)> = None;
    let mut message = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame?.into_data() else {
            continue; // trailers
        };
        while !data.is_empty() {
            let Some((_, len)) = header else {
                let take = (5 - have).min(data.len());
                prefix[have..have + take].copy_from_slice(&data[..take]);
                have += take;
                data = data.slice(take..);
                if have == 5 {
                    let compressed = match prefix[0] {
                        0 => false,
                        1 => true,
                        flag => {
                            return Err(tonic::Status::internal(format!(
                                "a message with the compressed flag {flag} (0 or 1 expected)"
                            )));
                        }
                    };
                    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
                    if len > max {
                        return Err(tonic::Status::resource_exhausted(format!(
                            "the message is larger than the limit ({len} vs. {max} bytes)"
                        )));
                    }
                    // Room for what has arrived; the rest once it comes,
                    // so a length announced but never sent costs nothing.
                    message.reserve_exact(len.min(FIRST_RESERVE));
                    header = Some((compressed, len));
                }
                continue;
            };
            if message.len() == len {
                return Err(tonic::Status::internal("more than one request message in a unary call"));
            }
            let take = (len - message.len()).min(data.len());
            if message.capacity() - message.len() < take {
                // Exactly the message: buffered spans keep this buffer alive.
                message.reserve_exact(len - message.len());
            }
            message.extend_from_slice(&data[..take]);
            data = data.slice(take..);
        }
    }
    match header {
        Some((compressed, len)) if message.len() == len => Ok((compressed, message)),
        Some((_, len)) => Err(tonic::Status::internal(format!(
            "the request ended {} bytes into a {len}-byte message",
            message.len()
        ))),
        None => Err(tonic::Status::internal("the request has no message")),
    }
}

/// Serves gRPC on `listener` until `stop` turns true; over TLS with `tls`.
pub(crate) async fn serve_grpc(
    listener: tokio::net::TcpListener,
    service: TraceGrpc,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let shutdown = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let Some(acceptor) = tls else {
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        return tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| e.to_string());
    };
    // Handshakes run apart, so a slow client does not hold up the others.
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>,
    >(64);
    let accepting = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        if let Some(tls) = super::tls::handshake(&acceptor, stream).await {
                            let _ = tx.send(Ok(tls)).await;
                        }
                    });
                }
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
    let result = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), shutdown)
        .await
        .map_err(|e| e.to_string());
    accepting.abort();
    result
}

// --- HTTP --------------------------------------------------------------------

/// The OTLP/HTTP endpoint.
pub(crate) struct TraceHttp {
    /// Checks credentials first, when the receiver has `auth`.
    pub(crate) auth: Option<Arc<dyn Authenticator>>,
    pub(crate) intake: Arc<Intake>,
    pub(crate) max_body: usize,
    pub(crate) path: String,
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn http_error(status: StatusCode, json: bool, code: i32, message: &str) -> Response<Full<Bytes>> {
    if json {
        let body = serde_json::json!({ "code": code, "message": message }).to_string();
        respond(status, "application/json", body.into_bytes())
    } else {
        respond(status, "application/x-protobuf", rpc_status(code, message, None))
    }
}

impl TraceHttp {
    pub(crate) async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != self.path {
            return respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                format!("not found; traces go to POST {}\n", self.path).into_bytes(),
            );
        }
        if !self.intake.authenticated(self.auth.as_ref(), req.headers()) {
            let mut r = respond(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                b"missing or invalid credentials\n".to_vec(),
            );
            if let Some(a) = &self.auth {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(a.challenge()),
                );
            }
            return r;
        }
        if req.method() != http::Method::POST {
            let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"use POST\n".to_vec());
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            return r;
        }
        let (proto, json) = match self.read_request(req).await {
            Ok(read) => read,
            Err(refusal) => {
                // Every trace request refused before its spans could be read.
                self.intake.note_malformed();
                return refusal;
            }
        };
        match self.intake.take(&proto).await {
            Ok(_) => {
                if json {
                    respond(StatusCode::OK, "application/json", b"{}".to_vec())
                } else {
                    respond(StatusCode::OK, "application/x-protobuf", Vec::new())
                }
            }
            Err(Refusal::Malformed(m)) => http_error(StatusCode::BAD_REQUEST, json, 3, &m),
            Err(Refusal::Busy(why)) => {
                let mut r = http_error(StatusCode::SERVICE_UNAVAILABLE, json, 14, why);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                r
            }
        }
    }

    /// The body of a trace request as protobuf `ExportTraceServiceRequest`
    /// bytes, and whether it came as JSON; or the answer to a request whose
    /// spans cannot be read (content type, encoding, size, JSON).
    async fn read_request(&self, req: Request<hyper::body::Incoming>) -> Result<(Bytes, bool), Response<Full<Bytes>>> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        let json = match content_type.as_str() {
            "application/x-protobuf" | "application/protobuf" => false,
            "application/json" => true,
            other => {
                return Err(respond(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "text/plain",
                    format!("unsupported content type {other:?}; use application/x-protobuf or application/json\n")
                        .into_bytes(),
                ));
            }
        };
        let encoding = req
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let raw = match Limited::new(req.into_body(), self.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let too_large = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
                return Err(if too_large {
                    http_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        json,
                        8,
                        &format!("the body is larger than {} bytes", self.max_body),
                    )
                } else {
                    http_error(StatusCode::BAD_REQUEST, json, 3, &format!("cannot read the body: {e}"))
                });
            }
        };
        let Some(encoding) = Encoding::from_name(&encoding) else {
            return Err(http_error(
                StatusCode::BAD_REQUEST,
                json,
                3,
                &format!("unsupported Content-Encoding {encoding:?}; use gzip, zstd or snappy"),
            ));
        };
        let body = decompress(encoding, Vec::from(raw), self.max_body)
            .map_err(|e| http_error(StatusCode::BAD_REQUEST, json, 3, &e.to_string()))?;
        let proto = if json {
            let request = serde_json::from_slice::<
                opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
            >(&body)
            .map_err(|e| {
                http_error(
                    StatusCode::BAD_REQUEST,
                    json,
                    3,
                    &format!("not an OTLP JSON trace request: {e}"),
                )
            })?;
            Bytes::from(request.encode_to_vec())
        } else {
            Bytes::from(body)
        };
        Ok((proto, json))
    }
}

/// A small HTTP/1 server: every request goes to `handler`; stops when `stop`
/// turns true, letting requests in flight finish.
pub(crate) async fn serve_http<H, F>(listener: tokio::net::TcpListener, handler: H, stop: watch::Receiver<bool>)
where
    H: Fn(Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_http_tls(listener, None, handler, stop).await;
}

/// [`serve_http`], over TLS with `tls`.
pub(crate) async fn serve_http_tls<H, F>(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: H,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let service = hyper::service::service_fn(move |req| {
                    let f = handler(req);
                    async move { Ok::<_, Infallible>(f.await) }
                });
                let watcher = graceful.watcher();
                let tls = tls.clone();
                // This loop runs on the collector's runtime (started with
                // `BuildContext::spawn`), so its connections do too.
                tokio::spawn(async move {
                    let http1 = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let conn = http1.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                            let _ = watcher.watch(conn).await;
                        }
                        Some(acceptor) => {
                            if let Some(tls) = super::tls::handshake(&acceptor, stream).await {
                                let conn = http1.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                                let _ = watcher.watch(conn).await;
                            }
                        }
                    }
                });
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
}

/// Binds `endpoint` (`host:port`), with a message that names the setting on
/// failure. An empty host (`:4317`) means every interface, as in the Go
/// Collector: IPv6 and IPv4 where the host has IPv6, else IPv4.
pub(crate) async fn bind(endpoint: &str, what: &str) -> Result<tokio::net::TcpListener, String> {
    let addrs: Vec<SocketAddr> = match endpoint.strip_prefix(':').map(str::parse::<u16>) {
        Some(Ok(port)) => vec![
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
        ],
        _ => tokio::net::lookup_host(endpoint)
            .await
            .map_err(|e| format!("{what}: cannot resolve {endpoint:?}: {e}"))?
            .collect(),
    };
    let mut last = String::from("no address");
    for a in addrs {
        match tokio::net::TcpListener::bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("{what}: cannot listen on {endpoint}: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A request body arriving in the given pieces, as HTTP/2 DATA frames.
    struct Pieces(std::collections::VecDeque<Bytes>);

    impl hyper::body::Body for Pieces {
        type Data = Bytes;
        type Error = tonic::Status;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, tonic::Status>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }

    fn read(body: &[u8], cuts: &[usize], max: usize) -> Result<(bool, Vec<u8>), tonic::Status> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        at.extend([0, body.len()]);
        at.sort_unstable();
        let pieces = at
            .windows(2)
            .map(|w| Bytes::copy_from_slice(&body[w[0]..w[1]]))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(read_one_message(Pieces(pieces), max))
    }

    proptest! {
        #[test]
        fn one_message_is_read_whole_from_any_pieces_into_a_buffer_of_its_size(
            len in prop_oneof![0usize..64, (FIRST_RESERVE - 8)..(FIRST_RESERVE + 4096)],
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            compressed in any::<bool>(),
        ) {
            let message: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut body = vec![u8::from(compressed)];
            body.extend_from_slice(&(len as u32).to_be_bytes());
            body.extend_from_slice(&message);
            let (flag, got) = read(&body, &cuts, 1 << 20).unwrap();
            prop_assert_eq!(flag, compressed);
            prop_assert_eq!(got.capacity(), len);
            prop_assert_eq!(got, message);
            // Cut short anywhere, or followed by more bytes: refused.
            let short = &body[..body.len() - 1];
            prop_assert!(read(short, &cuts, 1 << 20).is_err());
            let mut more = body.clone();
            more.push(0);
            prop_assert!(read(&more, &cuts, 1 << 20).is_err());
            // Over the limit: refused from the prefix alone.
            if len > 0 {
                let e = read(&body[..5], &[], len - 1).unwrap_err();
                prop_assert_eq!(e.code(), tonic::Code::ResourceExhausted);
            }
        }
    }

    #[tokio::test]
    async fn an_empty_host_listens_on_every_interface() {
        let listener = bind(":0", "test").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listener.local_addr().unwrap().ip().is_unspecified());
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        accept.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_bad_address_names_the_setting() {
        let e = bind("127.0.0.1:99999", "receivers.otlp.protocols.grpc.endpoint")
            .await
            .unwrap_err();
        assert!(e.starts_with("receivers.otlp.protocols.grpc.endpoint: "), "{e}");
    }
}
