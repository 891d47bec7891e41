//! An OTLP/gRPC receiver for the benches: counts spans straight from the
//! request bytes (no decoding into structs), so it costs little CPU beside
//! the pipelines being measured.

use bytes::{Buf, BufMut, Bytes};
use otel_export::wire::{Field, Reader};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Spans and requests received.
#[derive(Debug, Default)]
pub struct SinkCounts {
    /// Spans received.
    pub spans: AtomicU64,
    /// Requests received.
    pub requests: AtomicU64,
    /// Request body bytes as they came over the wire (compressed, with
    /// gRPC framing).
    pub wire_bytes: AtomicU64,
}

impl SinkCounts {
    /// Spans received so far.
    pub fn spans(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }

    /// Request bytes received so far, as sent (compressed).
    pub fn wire_bytes(&self) -> u64 {
        self.wire_bytes.load(Ordering::Relaxed)
    }
}

/// A request body that counts the bytes of its data frames.
struct Counting<B> {
    inner: B,
    counts: Arc<SinkCounts>,
}

impl<B> http_body::Body for Counting<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counts
                .wire_bytes
                .fetch_add(data.remaining() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Counts the `Span` messages of an `ExportTraceServiceRequest`.
pub fn count_spans(request: &[u8]) -> u64 {
    let mut n = 0;
    let mut rs = Reader::new(request);
    while let Some(Ok((1, Field::Bytes(resource_spans)))) = rs.next_field() {
        let mut ss = Reader::new(resource_spans);
        while let Some(Ok((field, value))) = ss.next_field() {
            if let (2, Field::Bytes(scope_spans)) = (field, value) {
                let mut spans = Reader::new(scope_spans);
                while let Some(Ok((field, _))) = spans.next_field() {
                    n += u64::from(field == 2);
                }
            }
        }
    }
    n
}

#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

struct Export(Arc<SinkCounts>);

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = Bytes;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Bytes>, tonic::Status>> + Send>>;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let n = count_spans(request.get_ref());
        self.0.spans.fetch_add(n, Ordering::Relaxed);
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        // An empty ExportTraceServiceResponse.
        Box::pin(async { Ok(tonic::Response::new(Bytes::new())) })
    }
}

#[derive(Clone)]
struct TraceService(Arc<SinkCounts>);

impl tonic::server::NamedService for TraceService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> tower::Service<http::Request<B>> for TraceService
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let counts = self.0.clone();
        let req = req.map(|inner| Counting {
            inner,
            counts: counts.clone(),
        });
        Box::pin(async move {
            if req.uri().path().ends_with("/Export") {
                let mut grpc = tonic::server::Grpc::new(Raw)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                    .max_decoding_message_size(256 << 20);
                Ok(grpc.unary(Export(counts), req).await)
            } else {
                Ok(tonic::Status::unimplemented("only TraceService/Export").into_http())
            }
        })
    }
}

/// Starts the sink on an ephemeral loopback port of the current Tokio runtime.
///
/// # Panics
///
/// When no loopback port can be bound (benches only).
pub async fn start() -> (SocketAddr, Arc<SinkCounts>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound address");
    let counts = Arc::new(SinkCounts::default());
    // TCP_NODELAY must be set on the incoming stream: the server builder's flag
    // is ignored by serve_with_incoming.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceService(counts.clone()))
            .serve_with_incoming(incoming),
    );
    (addr, counts)
}
