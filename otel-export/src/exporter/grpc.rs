//! OTLP/gRPC with tonic, sending our pre-encoded request bytes as they are.

use super::{Attempt, Compression, Settings};
use crate::exporter::response::{grpc_retry_delay, partial_success_proto};
use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataValue};
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

/// Builds the channel; must run inside the transport runtime (tonic spawns its
/// connection worker there).
pub(crate) fn channel(settings: &Settings) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(settings.endpoint.clone())
        .map_err(|e| format!("invalid OTLP endpoint {:?}: {e}", settings.endpoint))?
        .tcp_nodelay(true)
        .connect_timeout(settings.timeout)
        .timeout(settings.timeout)
        .user_agent(super::USER_AGENT)
        .map_err(|e| format!("invalid user agent: {e}"))?;
    #[cfg(not(feature = "tls"))]
    if settings.endpoint.starts_with("https://") {
        return Err("https endpoints need otel-export's `tls` feature".to_owned());
    }
    #[cfg(feature = "tls")]
    if settings.endpoint.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(pem) = &settings.ca_pem {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem.clone()));
        }
        if let Some((cert, key)) = &settings.client_identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(cert.clone(), key.clone()));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("TLS configuration failed: {e}"))?;
    }
    Ok(endpoint.connect_lazy())
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

/// One attempt.
pub(crate) async fn send(channel: Channel, settings: &Settings, body: Bytes) -> Attempt {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc = match settings.compression {
        Compression::Gzip => grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip),
        #[cfg(feature = "zstd")]
        Compression::Zstd => grpc.send_compressed(tonic::codec::CompressionEncoding::Zstd),
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => return Attempt::Failed("zstd compression needs otel-export's `zstd` feature".to_owned()),
        Compression::None => grpc,
    };
    if let Err(e) = grpc.ready().await {
        return Attempt::Retryable {
            after: None,
            reason: format!("gRPC channel not ready: {e}"),
        };
    }
    let mut request = tonic::Request::new(body);
    request.set_timeout(settings.timeout);
    for (k, v) in &settings.headers {
        if let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(k.as_bytes()),
            MetadataValue::try_from(v.as_str()),
        ) {
            request.metadata_mut().insert(k, v);
        }
    }
    match grpc
        .unary(request, PathAndQuery::from_static(EXPORT_PATH), RawCodec)
        .await
    {
        Ok(response) => Attempt::Sent(partial_success_proto(response.get_ref())),
        Err(status) => {
            let delay = grpc_retry_delay(status.details());
            let mut reason = format!("gRPC {:?}: {}", status.code(), status.message());
            let mut next = std::error::Error::source(&status);
            while let Some(e) = next {
                reason.push_str(": ");
                reason.push_str(&e.to_string());
                next = e.source();
            }
            // An HTTP/1.1-only server (an OTLP/HTTP port) answers an HTTP/2
            // preface with an HTTP/1 error: h2 sees a malformed frame. It
            // will not change on retry.
            let connection_level = matches!(status.code(), tonic::Code::Unknown | tonic::Code::Unavailable);
            if connection_level
                && super::peer_protocol(&settings.endpoint, settings.timeout).await == Some(super::Peer::Http1)
            {
                return Attempt::Failed(format!(
                    "{reason}: the server does not speak HTTP/2 (gRPC); is this the OTLP/HTTP port (4318)? set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
                ));
            }
            if retryable(status.code(), delay.is_some()) {
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
