//! Drives the `w3c-service` binary the way the W3C Trace Context test harness does:
//! a real HTTP client sends `POST /test` with the harness's headers, and a real
//! callback server on loopback records what the service sends back.
//!
//! The cases follow the harness (w3c/trace-context `test/test.py`) at commit
//! acab820 ("Fix tracestate key grammar tests"), with SPEC_LEVEL=2 and
//! STRICT_LEVEL=2: keys `( lcalpha / DIGIT ) 0*255 keychar`, `@` allowed
//! anywhere after the first character; a repeated key keeps one member.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

type Headers = Vec<(String, String)>;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Harness {
    _service: Service,
    endpoint: String,
    callback: SocketAddr,
    received: Arc<Mutex<HashMap<String, Headers>>>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Harness {
    async fn start() -> Harness {
        let mut child = Command::new(env!("CARGO_BIN_EXE_w3c-service"))
            .env("PORT", "0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start w3c-service");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("first line names the address")
            .to_owned();

        let received: Arc<Mutex<HashMap<String, Headers>>> = Arc::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callback = listener.local_addr().unwrap();
        let store = received.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let store = store.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let store = store.clone();
                        async move {
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                                .collect();
                            store.lock().unwrap().insert(req.uri().path().to_owned(), headers);
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Harness {
            _service: Service(child),
            endpoint: format!("http://{addr}/test"),
            callback,
            received,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends one harness request; returns the headers of each of `count` callbacks.
    async fn request(&self, headers: &[(&str, &str)], count: usize) -> Vec<Headers> {
        let run = format!("{:016x}", rand_u64());
        let calls: Vec<serde_json::Value> = (0..count)
            .map(|i| serde_json::json!({"url": format!("http://{}/{run}/{i}", self.callback), "arguments": []}))
            .collect();
        let mut builder = Request::post(&self.endpoint);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(Bytes::from(serde_json::Value::Array(calls).to_string())))
            .unwrap();
        let resp = self.client.request(req).await.expect("service answers");
        assert_eq!(resp.status(), 200);
        let _ = resp.into_body().collect().await;
        let got = self.received.lock().unwrap();
        (0..count)
            .map(|i| {
                got.get(&format!("/{run}/{i}"))
                    .cloned()
                    .expect("the service called back before answering")
            })
            .collect()
    }

    async fn one(&self, headers: &[(&str, &str)]) -> (Traceparent, Vec<(String, String)>) {
        let h = self.request(headers, 1).await.remove(0);
        let tps: Vec<&String> = h.iter().filter(|(k, _)| k == "traceparent").map(|(_, v)| v).collect();
        assert_eq!(tps.len(), 1, "exactly one traceparent in {h:?}");
        let tracestate = h
            .iter()
            .filter(|(k, _)| k == "tracestate")
            .flat_map(|(_, v)| {
                assert!(!v.trim().is_empty(), "an empty tracestate header was sent");
                v.split(',')
                    .map(|m| {
                        let (k, v) = m.trim().split_once('=').unwrap();
                        (k.to_owned(), v.to_owned())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        (Traceparent::parse(tps[0]), tracestate)
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

#[derive(Debug)]
struct Traceparent {
    trace_id: String,
    parent_id: String,
    flags: u8,
}

impl Traceparent {
    /// The harness's own check: `^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`.
    fn parse(v: &str) -> Traceparent {
        let parts: Vec<&str> = v.split('-').collect();
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        assert!(
            parts.len() == 4 && hex(parts[0], 2) && hex(parts[1], 32) && hex(parts[2], 16) && hex(parts[3], 2),
            "malformed traceparent sent: {v:?}"
        );
        assert_eq!(parts[0], "00");
        Traceparent {
            trace_id: parts[1].to_owned(),
            parent_id: parts[2].to_owned(),
            flags: u8::from_str_radix(parts[3], 16).unwrap(),
        }
    }
}

fn get<'a>(ts: &'a [(String, String)], k: &str) -> Option<&'a str> {
    ts.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

const TID: &str = "12345678901234567890123456789012";
const TP1: &str = "00-12345678901234567890123456789012-1234567890123456-01";
const TP0: &str = "00-12345678901234567890123456789012-1234567890123456-00";

#[tokio::test(flavor = "multi_thread")]
async fn trace_context_harness_cases() {
    let h = Harness::start().await;

    // Missing headers: a new valid trace, marked random (the SDK's ids are random).
    let (tp, ts) = h.one(&[]).await;
    assert!(ts.is_empty());
    assert_eq!(tp.flags & 0x02, 0x02, "a trace started here carries the random flag");

    // traceparent only: same trace, new parent id, flags unchanged.
    let (tp, _) = h.one(&[("traceparent", TP1)]).await;
    assert_eq!(tp.trace_id, TID);
    assert_ne!(tp.parent_id, "1234567890123456");
    assert_eq!(
        tp.flags, 0x01,
        "an upstream id not declared random is never marked random"
    );

    // The random flag is propagated unchanged.
    let (tp, _) = h
        .one(&[("traceparent", "00-12345678901234567890123456789012-1234567890123456-03")])
        .await;
    assert_eq!((tp.trace_id.as_str(), tp.flags), (TID, 0x03));

    // Duplicated traceparent: restart.
    let (tp, _) = h
        .one(&[
            ("traceparent", "00-12345678901234567890123456789011-1234567890123456-01"),
            ("traceparent", TP1),
        ])
        .await;
    assert_ne!(tp.trace_id, "12345678901234567890123456789011");
    assert_ne!(tp.trace_id, TID);

    // Header names: wrong names restart, any casing is accepted.
    for name in ["trace-parent", "trace.parent"] {
        assert_ne!(h.one(&[(name, TP1)]).await.0.trace_id, TID, "{name}");
    }
    for name in ["TraceParent", "TrAcEpArEnT", "TRACEPARENT"] {
        assert_eq!(h.one(&[(name, TP1)]).await.0.trace_id, TID, "{name}");
    }

    // Invalid values restart the trace.
    for bad in [
        "00-12345678901234567890123456789012-1234567890123456-01.",
        "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
        "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
        "ff-12345678901234567890123456789012-1234567890123456-01",
        ".0-12345678901234567890123456789012-1234567890123456-01",
        "0.-12345678901234567890123456789012-1234567890123456-01",
        "000-12345678901234567890123456789012-1234567890123456-01",
        "0-12345678901234567890123456789012-1234567890123456-01",
        "00-.2345678901234567890123456789012-1234567890123456-01",
        "00-123456789012345678901234567890123-1234567890123456-01",
        "00-1234567890123456789012345678901-1234567890123456-01",
        "00-12345678901234567890123456789012-0000000000000000-01",
        "00-12345678901234567890123456789012-.234567890123456-01",
        "00-12345678901234567890123456789012-12345678901234567-01",
        "00-12345678901234567890123456789012-123456789012345-01",
        "00-12345678901234567890123456789012-1234567890123456-.0",
        "00-12345678901234567890123456789012-1234567890123456-001",
        "00-12345678901234567890123456789012-1234567890123456-1",
    ] {
        let (tp, _) = h.one(&[("traceparent", bad), ("tracestate", "foo=1")]).await;
        assert_ne!(tp.trace_id, TID, "{bad}");
    }
    let (tp, _) = h
        .one(&[("traceparent", "00-00000000000000000000000000000000-1234567890123456-01")])
        .await;
    assert_ne!(tp.trace_id, "0".repeat(32));

    // Future versions are parsed by their first 55 characters.
    for ok in [
        "cc-12345678901234567890123456789012-1234567890123456-01",
        "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
    ] {
        assert_eq!(h.one(&[("traceparent", ok)]).await.0.trace_id, TID, "{ok}");
    }

    // OWS around traceparent.
    for ows in [
        " 00-12345678901234567890123456789012-1234567890123456-01",
        "00-12345678901234567890123456789012-1234567890123456-01\t",
        "\t 00-12345678901234567890123456789012-1234567890123456-01 \t",
    ] {
        assert_eq!(h.one(&[("traceparent", ows)]).await.0.trace_id, TID, "{ows:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tracestate_harness_cases() {
    let h = Harness::start().await;

    // tracestate without traceparent is discarded.
    let (_, a) = h.one(&[("tracestate", "foo=1")]).await;
    let (_, b) = h.one(&[("tracestate", "foo=1,bar=2")]).await;
    assert_eq!(a.len(), b.len());
    assert!(a.is_empty());

    // Inherited with traceparent, any header casing.
    for name in ["tracestate", "TraceState", "TRACESTATE"] {
        let (tp, ts) = h.one(&[("traceparent", TP0), (name, "foo=1,bar=2")]).await;
        assert_eq!(tp.trace_id, TID);
        assert_eq!(get(&ts, "foo"), Some("1"), "{name}");
    }
    let (_, ts) = h.one(&[("traceparent", TP0), ("trace-state", "foo=1")]).await;
    assert_eq!(get(&ts, "foo"), None);

    // Empty headers: never sent, and do not hide other values.
    let (_, ts) = h.one(&[("traceparent", TP0), ("tracestate", "")]).await;
    assert!(ts.is_empty());
    let (_, ts) = h
        .one(&[("traceparent", TP0), ("tracestate", "foo=1"), ("tracestate", "")])
        .await;
    assert_eq!(get(&ts, "foo"), Some("1"));
    let (_, ts) = h
        .one(&[("traceparent", TP0), ("tracestate", ""), ("tracestate", "foo=1")])
        .await;
    assert_eq!(get(&ts, "foo"), Some("1"));

    // Multiple headers are combined, in order.
    let (_, ts) = h
        .one(&[
            ("traceparent", TP0),
            ("tracestate", "foo=1,bar=2"),
            ("tracestate", "rojo=1,congo=2"),
            ("tracestate", "baz=3"),
        ])
        .await;
    let keys: Vec<&str> = ts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["foo", "bar", "rojo", "congo", "baz"]);

    // Duplicated keys (test_tracestate_duplicated_keys): the tracestate is
    // inherited; a repeated key keeps one of its members.
    for (pair, kept) in [
        (("foo=1,foo=1", None), ["1"].as_slice()),
        (("foo=1,foo=2", None), &["1", "2"]),
        (("foo=1", Some("foo=1")), &["1"]),
        (("foo=1", Some("foo=2")), &["1", "2"]),
    ] {
        let mut headers = vec![("traceparent", TP0), ("tracestate", pair.0)];
        if let Some(second) = pair.1 {
            headers.push(("tracestate", second));
        }
        let (tp, ts) = h.one(&headers).await;
        assert_eq!(tp.trace_id, TID);
        let foo = get(&ts, "foo").unwrap_or_else(|| panic!("{pair:?}: {ts:?}"));
        assert!(kept.contains(&foo), "{pair:?}: {ts:?}");
    }

    // All allowed characters.
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let value: String = (0x20u8..=0x2b)
        .chain(0x2d..=0x3c)
        .chain(0x3e..=0x7e)
        .map(char::from)
        .collect();
    for k in [key.to_owned(), format!("{key}@a-z0-9_-*/")] {
        let header = format!("{k}={value}");
        let (_, ts) = h.one(&[("traceparent", TP0), ("tracestate", &header)]).await;
        assert_eq!(get(&ts, &k), Some(value.as_str()));
    }

    // OWS handling.
    for ows in ["foo=1 \t , \t bar=2, \t baz=3", "foo=1\t \t,\t \tbar=2,\t \tbaz=3"] {
        let (_, ts) = h.one(&[("traceparent", TP0), ("tracestate", ows)]).await;
        assert_eq!(
            (get(&ts, "foo"), get(&ts, "bar"), get(&ts, "baz")),
            (Some("1"), Some("2"), Some("3"))
        );
    }
    for ows in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
        let (_, ts) = h.one(&[("traceparent", TP0), ("tracestate", ows)]).await;
        assert_eq!(get(&ts, "foo"), Some("1"), "{ows:?}");
    }

    // Illegal keys and values discard the tracestate.
    for bad in [
        "foo =1",
        "FOO=1",
        "foo.bar=1",
        "@foo=1,bar=2",
        "foo=bar=baz",
        "foo=,bar=3",
    ] {
        let (tp, ts) = h.one(&[("traceparent", TP0), ("tracestate", bad)]).await;
        assert_eq!(tp.trace_id, TID);
        assert!(ts.is_empty(), "{bad}: {ts:?}");
    }
    // `@` anywhere after the first character (test_tracestate_key_illegal_vendor_format).
    for (header, key) in [
        ("foo@=1,bar=2", "foo@"),
        ("foo@@bar=1,bar=2", "foo@@bar"),
        ("foo@bar@baz=1,bar=2", "foo@bar@baz"),
    ] {
        let (_, ts) = h.one(&[("traceparent", TP0), ("tracestate", header)]).await;
        assert_eq!(get(&ts, key), Some("1"), "{header}: {ts:?}");
        assert_eq!(get(&ts, "bar"), Some("2"), "{header}: {ts:?}");
    }

    // Member count limit: 32 kept, 33 discarded.
    let members = |n: usize| (1..=n).map(|i| format!("bar{i:02}={i:02}")).collect::<Vec<_>>();
    let m32 = members(32);
    let (_, ts) = h
        .one(&[
            ("traceparent", TP0),
            ("tracestate", &m32[..10].join(",")),
            ("tracestate", &m32[10..20].join(",")),
            ("tracestate", &m32[20..30].join(",")),
            ("tracestate", &m32[30..].join(",")),
        ])
        .await;
    assert_eq!(ts.len(), 32);
    assert_eq!(get(&ts, "bar01"), Some("01"));
    let m33 = members(33);
    let (_, ts) = h
        .one(&[
            ("traceparent", TP0),
            ("tracestate", &m33[..10].join(",")),
            ("tracestate", &m33[10..20].join(",")),
            ("tracestate", &m33[20..30].join(",")),
            ("tracestate", &m33[30..].join(",")),
        ])
        .await;
    assert_eq!(get(&ts, "bar01"), None);

    // Key length limits (test_tracestate_key_length_limit): 256 characters,
    // `@` anywhere within them.
    let z256 = "z".repeat(256);
    let long_system = format!("{}@{}", "t".repeat(241), "v".repeat(14));
    let long_tenant = format!("{}@v", "t".repeat(242));
    let short_tenant = format!("t@{}", "v".repeat(15));
    for key in [&z256, &long_system, &long_tenant, &short_tenant] {
        let member = format!("{key}=1");
        let (_, ts) = h
            .one(&[("traceparent", TP0), ("tracestate", "foo=1"), ("tracestate", &member)])
            .await;
        assert_eq!(get(&ts, "foo"), Some("1"), "{member}");
        assert_eq!(get(&ts, key), Some("1"), "{member}: {ts:?}");
    }
    let member = format!("{}=1", "z".repeat(257));
    let (_, ts) = h
        .one(&[("traceparent", TP0), ("tracestate", "foo=1"), ("tracestate", &member)])
        .await;
    assert_eq!(get(&ts, "foo"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn advanced_harness_cases() {
    let h = Harness::start().await;

    // Several callbacks: one trace, a new parent id each time.
    let calls = h.request(&[("traceparent", TP1)], 3).await;
    let tps: Vec<Traceparent> = calls
        .iter()
        .map(|c| Traceparent::parse(&c.iter().find(|(k, _)| k == "traceparent").unwrap().1))
        .collect();
    assert!(tps.iter().all(|t| t.trace_id == TID));
    let parents: std::collections::HashSet<&str> = tps.iter().map(|t| t.parent_id.as_str()).collect();
    assert_eq!(parents.len(), 3);

    for headers in [
        &[][..],
        &[("traceparent", "00-00000000000000000000000000000000-1234567890123456-01")][..],
    ] {
        let calls = h.request(headers, 3).await;
        let tps: Vec<Traceparent> = calls
            .iter()
            .map(|c| Traceparent::parse(&c.iter().find(|(k, _)| k == "traceparent").unwrap().1))
            .collect();
        assert!(tps.iter().all(|t| t.trace_id != "0".repeat(32)));
        let parents: std::collections::HashSet<&str> = tps.iter().map(|t| t.parent_id.as_str()).collect();
        assert_eq!(parents.len(), 3);
    }

    // Baggage travels with the callbacks, values unchanged.
    let calls = h
        .request(&[("traceparent", TP1), ("baggage", "user=ada%20l,tier=gold;ttl=60")], 1)
        .await;
    let baggage = &calls[0]
        .iter()
        .find(|(k, _)| k == "baggage")
        .expect("baggage is propagated")
        .1;
    let mut members: Vec<&str> = baggage.split(',').collect();
    members.sort_unstable();
    assert_eq!(members, ["tier=gold;ttl=60", "user=ada%20l"]);
}
