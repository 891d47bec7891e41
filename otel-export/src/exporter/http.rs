//! OTLP/HTTP (protobuf or JSON) with hyper.

use super::{Attempt, Settings};
use crate::exporter::response::{partial_success_json, partial_success_proto, retry_after};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[cfg(feature = "tls")]
pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;
#[cfg(not(feature = "tls"))]
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Largest response body read (a partial success or an error status).
const MAX_RESPONSE: usize = 4 << 20;

/// Builds the client (connection pool, TLS when the endpoint is https).
pub(crate) fn client(settings: &Settings) -> Result<HttpClient, String> {
    let http = super::tcp_connector(settings);
    #[cfg(feature = "tls")]
    let connector = super::tls::connector(settings, http, false)?;
    #[cfg(not(feature = "tls"))]
    let connector = {
        if settings.endpoint.starts_with("https://") {
            return Err("https endpoints need otel-export's `tls` feature".to_owned());
        }
        http
    };
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// An error and its sources, as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(": ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
}

/// Whether the server answered with something other than HTTP/1.x (a parse
/// error of the response, or a connection closed mid-message by a server that
/// read our request as a broken HTTP/2 preface).
fn not_http1(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_parse() || h.is_parse_status() || h.is_incomplete_message())
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Whether an HTTP status may succeed if tried again (OTLP/HTTP's list).
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// One attempt; `body` is already compressed as `settings` says.
pub(crate) async fn send(client: &HttpClient, settings: &Settings, body: Bytes) -> Attempt {
    let mut request = match Request::post(settings.endpoint.as_str()).body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return Attempt::Failed(format!("invalid OTLP endpoint {:?}: {e}", settings.endpoint)),
    };
    let headers = request.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(settings.content_type()),
    );
    headers.insert(http::header::USER_AGENT, HeaderValue::from_static(super::USER_AGENT));
    if let Some(encoding) = settings.compression.content_encoding() {
        headers.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    for (k, v) in &settings.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.insert(k, v);
        }
    }
    let response = match tokio::time::timeout(settings.timeout, client.request(request)).await {
        Err(_) => {
            return Attempt::Retryable {
                after: None,
                reason: format!("no response within {:?}", settings.timeout),
            };
        }
        Ok(Err(e)) => {
            // An answer that is not HTTP/1.1 at all, or a connection the
            // server dropped: an HTTP/2-only server (most likely an OTLP/gRPC
            // port) does both, and says so to a probe. It will not change on
            // retry.
            if not_http1(&e)
                || super::peer_protocol(&settings.endpoint, settings.timeout).await == Some(super::Peer::Http2)
            {
                return Attempt::Failed(format!(
                    "HTTP request to {} failed: {}: the server does not speak HTTP/1.1; is this the OTLP/gRPC port (4317)? set OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
                    settings.endpoint,
                    chain(&e)
                ));
            }
            return Attempt::Retryable {
                after: None,
                reason: format!("HTTP request to {} failed: {}", settings.endpoint, chain(&e)),
            };
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after);
    let body = match tokio::time::timeout(
        settings.timeout,
        Limited::new(response.into_body(), MAX_RESPONSE).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        _ => Bytes::new(),
    };
    if status.is_success() {
        let partial = if settings.json {
            partial_success_json(&body)
        } else {
            partial_success_proto(&body)
        };
        return Attempt::Sent(partial);
    }
    let detail = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let reason = format!("HTTP {status}: {detail}");
    if retryable(status) {
        Attempt::Retryable { after, reason }
    } else {
        Attempt::Failed(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for s in [429, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(s).unwrap()));
        }
        for s in [400, 401, 403, 404, 413, 500] {
            assert!(!retryable(StatusCode::from_u16(s).unwrap()));
        }
    }
}
