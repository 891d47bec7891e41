//! OTLP/gRPC over tonic's channel (connections, HTTP/2, TLS), with our own
//! framing: the request is encoded, compressed and framed before it gets
//! here, and sent as it is; the status is read from the trailers.

use super::{Attempt, Settings};
use crate::exporter::response::{grpc_retry_delay, partial_success_proto};
use bytes::{Buf, BufMut, Bytes};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A tonic codec that passes protobuf messages through as bytes, unparsed:
/// clients send pre-encoded requests with it, servers receive requests they
/// read themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// The encoder of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

/// The decoder of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// The connection to a gRPC server: tonic's channel for plaintext, and for
/// `https://` an HTTP/2 client on our rustls connector (so the TLS versions
/// and cipher suites of the exporter's policy apply, which tonic's TLS does
/// not let a caller choose).
#[derive(Debug, Clone)]
pub(crate) enum GrpcClient {
    /// `http://`.
    Plain(Channel),
    /// `https://`: the client and the export method's URI on the endpoint.
    #[cfg(feature = "tls")]
    Tls(Box<(TlsClient, http::Uri)>),
}

#[cfg(feature = "tls")]
type TlsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

/// Builds the client; must run inside the transport runtime (connection
/// workers are spawned there).
pub(crate) fn channel(settings: &Settings) -> Result<GrpcClient, String> {
    if settings.endpoint.starts_with("https://") {
        #[cfg(not(feature = "tls"))]
        return Err("https endpoints need otel-export's `tls` feature".to_owned());
        #[cfg(feature = "tls")]
        {
            let uri = http::Uri::try_from(format!("{}{EXPORT_PATH}", settings.endpoint.trim_end_matches('/')))
                .map_err(|e| format!("invalid OTLP endpoint {:?}: {e}", settings.endpoint))?;
            let connector = super::tls::connector(settings, super::tcp_connector(settings), true)?;
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .timer(hyper_util::rt::TokioTimer::new())
                .build(connector);
            return Ok(GrpcClient::Tls(Box::new((client, uri))));
        }
    }
    let endpoint = Endpoint::from_shared(settings.endpoint.clone())
        .map_err(|e| format!("invalid OTLP endpoint {:?}: {e}", settings.endpoint))?
        .tcp_nodelay(true)
        .connect_timeout(settings.timeout)
        .timeout(settings.timeout)
        .user_agent(super::USER_AGENT)
        .map_err(|e| format!("invalid user agent: {e}"))?;
    Ok(GrpcClient::Plain(endpoint.connect_lazy()))
}

/// Whether a gRPC status may succeed if tried again (the OTLP specification's list;
/// RESOURCE_EXHAUSTED only when the server says when to retry).
fn retryable(code: Code, has_retry_info: bool) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    ) || (code == Code::ResourceExhausted && has_retry_info)
}

/// The gRPC status of a response: from its trailers (or its headers for a
/// trailers-only response), read without trusting the server: a malformed
/// `grpc-status-details-bin` is ignored, not a panic.
struct GrpcStatus {
    code: Code,
    message: String,
    details: Vec<u8>,
}

fn grpc_status(map: &http::HeaderMap) -> Option<GrpcStatus> {
    use base64::Engine as _;
    let code = map.get("grpc-status")?.to_str().ok()?.trim().parse::<i32>().ok()?;
    let message = map
        .get("grpc-message")
        .map(|m| {
            percent_encoding::percent_decode(m.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let details = map
        .get("grpc-status-details-bin")
        .and_then(|d| LENIENT.decode(d.as_bytes()).ok())
        .unwrap_or_default();
    Some(GrpcStatus {
        code: Code::from_i32(code),
        message,
        details,
    })
}

/// The gRPC code for an HTTP status without `grpc-status` (the gRPC
/// project's HTTP-to-gRPC status mapping).
fn code_from_http(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// The `grpc-timeout` header for `timeout` (at most 8 digits, as the
/// protocol requires).
fn grpc_timeout(timeout: std::time::Duration) -> String {
    let ms = timeout.as_millis();
    if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", timeout.as_secs().min(99_999_999))
    }
}

/// Largest response body read (an `ExportTraceServiceResponse` is small).
const MAX_RESPONSE: usize = 4 << 20;

/// The message of a unary response body (5-byte frame header, then the
/// message; gzip-compressed when the flag says so).
fn response_message(body: &[u8], encoding: Option<&[u8]>) -> Result<Vec<u8>, String> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let header: [u8; 5] = body
        .get(..5)
        .and_then(|h| h.try_into().ok())
        .ok_or("a gRPC response shorter than its frame header")?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let message = body
        .get(5..5 + len)
        .ok_or("a gRPC response shorter than its frame says")?;
    match (header[0], encoding) {
        (0, _) => Ok(message.to_vec()),
        (1, Some(b"gzip")) => {
            let mut d = libdeflater::Decompressor::new();
            let mut out = vec![0u8; MAX_RESPONSE];
            let n = d
                .gzip_decompress(message, &mut out)
                .map_err(|e| format!("cannot gunzip the gRPC response: {e:?}"))?;
            out.truncate(n);
            Ok(out)
        }
        (1, other) => Err(format!(
            "a gRPC response compressed with {:?}, which was not asked for",
            other.map(String::from_utf8_lossy)
        )),
        (flag, _) => Err(format!("a gRPC frame with flag {flag}")),
    }
}

/// The request headers of an export.
fn headers(settings: &Settings, headers: &mut http::HeaderMap) {
    for (k, v) in &settings.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    headers.insert("grpc-accept-encoding", http::HeaderValue::from_static("identity,gzip"));
    if let Ok(t) = http::HeaderValue::from_str(&grpc_timeout(settings.timeout)) {
        headers.insert("grpc-timeout", t);
    }
    if let Some(encoding) = settings.compression.content_encoding() {
        headers.insert("grpc-encoding", http::HeaderValue::from_static(encoding));
    }
}

/// A response body of either client, its errors as text.
type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, String>;

/// Sends the request; the response or the transport error's chain.
async fn call(client: GrpcClient, settings: &Settings, body: Bytes) -> Result<http::Response<ResponseBody>, String> {
    use http_body_util::BodyExt as _;
    use tower_service::Service as _;
    match client {
        GrpcClient::Plain(mut channel) => {
            std::future::poll_fn(|cx| channel.poll_ready(cx))
                .await
                .map_err(|e| format!("gRPC channel not ready: {e}"))?;
            let mut request = http::Request::new(tonic::body::Body::new(http_body_util::Full::new(body)));
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = http::Uri::from_static(EXPORT_PATH);
            headers(settings, request.headers_mut());
            let response = channel.call(request).await.map_err(|e| error_chain(&e))?;
            Ok(response.map(|b| b.map_err(|s| s.to_string()).boxed_unsync()))
        }
        #[cfg(feature = "tls")]
        GrpcClient::Tls(tls) => {
            let (client, uri) = *tls;
            let mut request = http::Request::new(http_body_util::Full::new(body));
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = uri;
            headers(settings, request.headers_mut());
            if let Ok(ua) = http::HeaderValue::from_str(super::USER_AGENT) {
                request.headers_mut().insert(http::header::USER_AGENT, ua);
            }
            let response = tokio::time::timeout(settings.timeout, client.request(request))
                .await
                .map_err(|_| format!("no response within {:?}", settings.timeout))?
                .map_err(|e| error_chain(&e))?;
            Ok(response.map(|b| b.map_err(|e| e.to_string()).boxed_unsync()))
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        cause.push_str(": ");
        cause.push_str(&inner.to_string());
        next = inner.source();
    }
    cause
}

/// One attempt: `body` is the framed (and compressed) request, sent as it
/// is; the status is read from the response's trailers.
pub(crate) async fn send(client: GrpcClient, settings: &Settings, body: Bytes) -> Attempt {
    use http_body_util::BodyExt as _;
    let failed = |code: Code, message: &str, details: &[u8], cause: Option<String>| {
        let delay = grpc_retry_delay(details);
        let mut reason = format!("gRPC {code:?}: {message}");
        if let Some(c) = cause {
            reason.push_str(": ");
            reason.push_str(&c);
        }
        (code, delay, reason)
    };
    let outcome = match call(client, settings, body).await {
        Err(cause) => Err(failed(Code::Unavailable, "transport error", &[], Some(cause))),
        Ok(response) => {
            let (parts, body) = response.into_parts();
            match grpc_status(&parts.headers) {
                // Trailers-only: the status came with the headers.
                Some(s) if s.code != Code::Ok => Err(failed(s.code, &s.message, &s.details, None)),
                _ if parts.status != http::StatusCode::OK => Err(failed(
                    code_from_http(parts.status),
                    &format!("HTTP {}", parts.status),
                    &[],
                    None,
                )),
                header_status => match http_body_util::Limited::new(body, MAX_RESPONSE).collect().await {
                    Err(e) => Err(failed(
                        Code::Unavailable,
                        "reading the response",
                        &[],
                        Some(e.to_string()),
                    )),
                    Ok(collected) => {
                        let trailers = collected.trailers().and_then(grpc_status);
                        match trailers.or(header_status) {
                            None => Err(failed(Code::Internal, "the response has no grpc-status", &[], None)),
                            Some(s) if s.code != Code::Ok => Err(failed(s.code, &s.message, &s.details, None)),
                            Some(_) => {
                                let encoding = parts.headers.get("grpc-encoding").map(http::HeaderValue::as_bytes);
                                match response_message(&collected.to_bytes(), encoding) {
                                    Ok(message) => Ok(partial_success_proto(&message)),
                                    Err(e) => Err(failed(Code::Internal, &e, &[], None)),
                                }
                            }
                        }
                    }
                },
            }
        }
    };
    match outcome {
        Ok(partial) => Attempt::Sent(partial),
        Err((code, delay, reason)) => {
            // An HTTP/1.1-only server (an OTLP/HTTP port) answers an HTTP/2
            // preface with an HTTP/1 error: h2 sees a malformed frame. It
            // will not change on retry.
            let connection_level = matches!(code, Code::Unknown | Code::Unavailable);
            if connection_level
                && super::peer_protocol(&settings.endpoint, settings.timeout).await == Some(super::Peer::Http1)
            {
                return Attempt::Failed(format!(
                    "{reason}: the server does not speak HTTP/2 (gRPC); is this the OTLP/HTTP port (4318)? set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
                ));
            }
            if retryable(code, delay.is_some()) {
                Attempt::Retryable { after: delay, reason }
            } else {
                Attempt::Failed(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes() {
        for c in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(retryable(c, false), "{c:?}");
        }
        assert!(!retryable(Code::ResourceExhausted, false));
        assert!(retryable(Code::ResourceExhausted, true));
        for c in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
        ] {
            assert!(!retryable(c, true), "{c:?}");
        }
    }
}
