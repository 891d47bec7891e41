//! Reading what a receiver answered: partial success, and how long to wait
//! before retrying.

use crate::wire::field::{any, duration, partial_success, response, retry_info, rpc_status};
use crate::wire::{Field, Reader};
use std::time::{Duration, SystemTime};

/// `ExportTracePartialSuccess`: spans the receiver refused although the
/// request as a whole succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PartialSuccess {
    pub(crate) rejected_spans: i64,
    pub(crate) error_message: String,
}

/// Reads `ExportTraceServiceResponse` protobuf; malformed bytes count as no
/// partial success (the request itself succeeded).
pub(crate) fn partial_success_proto(body: &[u8]) -> PartialSuccess {
    let mut out = PartialSuccess::default();
    let mut r = Reader::new(body);
    while let Some(Ok((field, value))) = r.next_field() {
        if let (response::PARTIAL_SUCCESS, Field::Bytes(inner)) = (field, value) {
            let mut r = Reader::new(inner);
            while let Some(Ok((field, value))) = r.next_field() {
                match (field, value) {
                    (partial_success::REJECTED_SPANS, Field::Varint(v)) => out.rejected_spans = v as i64,
                    (partial_success::ERROR_MESSAGE, Field::Bytes(b)) => {
                        out.error_message = String::from_utf8_lossy(b).into_owned()
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// Reads an OTLP/JSON `ExportTraceServiceResponse` (`rejectedSpans` may be a
/// number or a decimal string).
pub(crate) fn partial_success_json(body: &[u8]) -> PartialSuccess {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return PartialSuccess::default();
    };
    let p = &v["partialSuccess"];
    let rejected = match &p["rejectedSpans"] {
        serde_json::Value::Number(n) => n.as_i64().unwrap_or(0),
        serde_json::Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    };
    PartialSuccess {
        rejected_spans: rejected,
        error_message: p["errorMessage"].as_str().unwrap_or("").to_owned(),
    }
}

/// The `RetryInfo.retry_delay` in a gRPC status's details (`google.rpc.Status`).
pub(crate) fn grpc_retry_delay(details: &[u8]) -> Option<Duration> {
    const RETRY_INFO: &[u8] = b"type.googleapis.com/google.rpc.RetryInfo";
    let mut r = Reader::new(details);
    while let Some(Ok((field, value))) = r.next_field() {
        let (rpc_status::DETAILS, Field::Bytes(detail)) = (field, value) else {
            continue;
        };
        let (mut type_url, mut payload) = (&[][..], &[][..]);
        let mut a = Reader::new(detail);
        while let Some(Ok((f, v))) = a.next_field() {
            match (f, v) {
                (any::TYPE_URL, Field::Bytes(b)) => type_url = b,
                (any::VALUE, Field::Bytes(b)) => payload = b,
                _ => {}
            }
        }
        if type_url != RETRY_INFO {
            continue;
        }
        let mut info = Reader::new(payload);
        while let Some(Ok((f, v))) = info.next_field() {
            if let (retry_info::RETRY_DELAY, Field::Bytes(delay)) = (f, v) {
                let (mut secs, mut nanos) = (0i64, 0i64);
                let mut d = Reader::new(delay);
                while let Some(Ok((f, v))) = d.next_field() {
                    match (f, v) {
                        (duration::SECONDS, Field::Varint(s)) => secs = s as i64,
                        (duration::NANOS, Field::Varint(n)) => nanos = i64::from(n as i32),
                        _ => {}
                    }
                }
                if secs < 0 || nanos < 0 {
                    return Some(Duration::ZERO);
                }
                return Some(Duration::new(secs as u64, nanos.min(999_999_999) as u32));
            }
        }
        return Some(Duration::ZERO);
    }
    None
}

/// An HTTP `Retry-After` value: delay-seconds or an HTTP-date.
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{put_bytes, put_tag, put_varint};
    use proptest::prelude::*;

    #[test]
    fn partial_success_protobuf() {
        let mut inner = Vec::new();
        put_tag(&mut inner, 1, 0);
        put_varint(&mut inner, 7);
        put_bytes(&mut inner, 2, b"bad spans");
        let mut body = Vec::new();
        put_bytes(&mut body, 1, &inner);
        assert_eq!(
            partial_success_proto(&body),
            PartialSuccess {
                rejected_spans: 7,
                error_message: "bad spans".into()
            }
        );
        assert_eq!(partial_success_proto(b""), PartialSuccess::default());
    }

    #[test]
    fn partial_success_from_json() {
        let p = partial_success_json(br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"x"}}"#);
        assert_eq!(p.rejected_spans, 3);
        assert_eq!(
            partial_success_json(br#"{"partialSuccess":{"rejectedSpans":4}}"#).rejected_spans,
            4
        );
        assert_eq!(partial_success_json(b"{}").rejected_spans, 0);
        assert_eq!(partial_success_json(b"not json").rejected_spans, 0);
    }

    #[test]
    fn retry_info_delay() {
        let mut duration = Vec::new();
        put_tag(&mut duration, 1, 0);
        put_varint(&mut duration, 2);
        put_tag(&mut duration, 2, 0);
        put_varint(&mut duration, 500_000_000);
        let mut info = Vec::new();
        put_bytes(&mut info, 1, &duration);
        let mut any = Vec::new();
        put_bytes(&mut any, 1, b"type.googleapis.com/google.rpc.RetryInfo");
        put_bytes(&mut any, 2, &info);
        let mut status = Vec::new();
        put_tag(&mut status, 1, 0);
        put_varint(&mut status, 8);
        put_bytes(&mut status, 3, &any);
        assert_eq!(grpc_retry_delay(&status), Some(Duration::from_millis(2500)));
        assert_eq!(grpc_retry_delay(b""), None);
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
    }

    proptest! {
        #[test]
        fn never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), s in ".{0,30}") {
            let _ = partial_success_proto(&bytes);
            let _ = partial_success_json(&bytes);
            let _ = grpc_retry_delay(&bytes);
            let _ = retry_after(&s);
        }
    }
}
