//! A response body that ends its span when the body has been sent (or dropped).

use http_body::{Body, Frame, SizeHint};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use std::pin::Pin;
use std::task::Poll;

/// Which gRPC side a body belongs to, for reading `grpc-status` from trailers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrpcRole {
    Server,
    Client,
}

/// gRPC codes a server records as errors (the others are the caller's fault).
pub(crate) fn server_error_code(code: i64) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Records `grpc-status` on the span and sets its status.
pub(crate) fn record_grpc_status(cx: &Context, role: GrpcRole, code: i64, message: Option<&str>) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("rpc.grpc.status_code", code));
    let error = match role {
        GrpcRole::Server => server_error_code(code),
        GrpcRole::Client => code != 0,
    };
    if error {
        span.set_status(Status::error(message.unwrap_or("").to_owned()));
        span.set_attribute(KeyValue::new("error.type", code.to_string()));
    }
}

/// Reads `grpc-status` (and `grpc-message`) from headers or trailers.
pub(crate) fn grpc_status(headers: &http::HeaderMap) -> Option<(i64, Option<String>)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.trim().parse::<i64>().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode);
    Some((code, message))
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec); invalid
/// escapes and non-UTF-8 results are kept as they came.
fn percent_decode(raw: &str) -> String {
    match percent_encoding::percent_decode_str(raw).decode_utf8() {
        Ok(text) => text.into_owned(),
        Err(_) => raw.to_owned(),
    }
}

#[cfg(test)]
mod percent_tests {
    use super::percent_decode;

    #[test]
    fn decodes_grpc_messages() {
        assert_eq!(percent_decode("token%20store%20unavailable"), "token store unavailable");
        assert_eq!(percent_decode("caf%C3%A9 100%"), "café 100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%FF"), "%FF");
    }
}

pin_project_lite::pin_project! {
    /// A body wrapper that ends the request's span when the body is finished
    /// (end of stream, error) or dropped, so the span covers streaming.
    #[derive(Debug)]
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        cx: Option<Context>,
        grpc: Option<GrpcRole>,
        grpc_seen: bool,
    }

    impl<B> PinnedDrop for TracedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(cx) = this.cx.take() {
                cx.span().end();
            }
        }
    }
}

impl<B> TracedBody<B> {
    pub(crate) fn new(inner: B, cx: Context, grpc: Option<GrpcRole>, grpc_seen: bool) -> Self {
        TracedBody {
            inner,
            cx: Some(cx),
            grpc,
            grpc_seen,
        }
    }
}

impl<B: Body> Body for TracedBody<B>
where
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(task);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(role), Some(trailers), Some(cx)) = (*this.grpc, frame.trailers_ref(), this.cx.as_ref())
                    && let Some((code, message)) = grpc_status(trailers)
                {
                    record_grpc_status(cx, role, code, message.as_deref());
                    *this.grpc_seen = true;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(cx) = this.cx.take() {
                    let span = cx.span();
                    span.set_status(Status::error(e.to_string()));
                    span.set_attribute(KeyValue::new("error.type", "body"));
                    span.end();
                }
            }
            Poll::Ready(None) => {
                if let Some(cx) = this.cx.take() {
                    cx.span().end();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
