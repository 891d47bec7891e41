//! An OTLP/gRPC load generator: realistic 8-span traces (see
//! [`spans::trace`](crate::spans::trace)), fresh trace ids in every request,
//! sent at a target rate by concurrent clients.

use crate::spans::{resource, trace};
use bytes::Bytes;
use otel_export::encode::{Encoder, Encoding};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A request template and where its trace ids sit, so each send patches in fresh ids.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    /// (offset of a 16-byte trace id, which trace of the request it belongs to).
    ids: Vec<(usize, usize)>,
    traces: usize,
    /// Spans per request.
    pub spans: u64,
}

impl Template {
    /// A request of `traces` traces from the realistic mix (2% errors, 3% slow).
    pub fn new(traces: usize) -> Template {
        let spans: Vec<_> = (0..traces as u64).flat_map(trace).collect();
        let mut encoder = Encoder::new(&resource());
        let bytes = encoder.encode(&spans, Encoding::Protobuf).to_vec();
        let mut ids = Vec::new();
        for t in 0..traces {
            let id = spans[t * 8].span_context.trace_id().to_bytes();
            ids.extend(
                bytes
                    .windows(16)
                    .enumerate()
                    .filter(|(_, w)| *w == id)
                    .map(|(at, _)| (at, t)),
            );
        }
        Template {
            bytes,
            ids,
            traces,
            spans: spans.len() as u64,
        }
    }

    /// The request with trace ids `first..first + traces`.
    pub fn with_ids(&self, first: u64) -> Bytes {
        let mut b = self.bytes.clone();
        for &(offset, t) in &self.ids {
            let n = first + t as u64;
            b[offset..offset + 8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
            b[offset + 8..offset + 16].copy_from_slice(&(n | 1 << 63).to_be_bytes());
        }
        Bytes::from(b)
    }

    /// Bytes per request.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the request is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Traces per request.
    pub fn traces(&self) -> usize {
        self.traces
    }
}

/// What a run sent.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Spans in requests answered OK.
    pub ok_spans: AtomicU64,
    /// Requests refused or failed.
    pub failed_requests: AtomicU64,
    /// Microseconds from sending each answered request to its answer.
    pub latencies_us: std::sync::Mutex<Vec<u32>>,
}

impl LoadStats {
    /// The `q` quantile (0..=1) of request latency, microseconds.
    pub fn latency_quantile_us(&self, q: f64) -> u32 {
        let mut l = self.latencies_us.lock().map(|l| l.clone()).unwrap_or_default();
        if l.is_empty() {
            return 0;
        }
        l.sort_unstable();
        l[((l.len() - 1) as f64 * q).round() as usize]
    }
}

/// Sends to `endpoint` (`http://host:port`) at `rate` spans per second for
/// `duration`, with `concurrency` requests in flight at most; `rate` 0
/// sends as fast as the collector answers (saturating load).
///
/// # Panics
///
/// When the endpoint cannot be reached (benches only).
pub async fn run(
    endpoint: String,
    template: Arc<Template>,
    rate: u64,
    duration: Duration,
    concurrency: usize,
) -> Arc<LoadStats> {
    let stats = Arc::new(LoadStats::default());
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .expect("endpoint")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect to the collector");
    let next = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let per_request = template.spans;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (channel, stats, next, template) = (channel.clone(), stats.clone(), next.clone(), template.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(template.traces() as u64, Ordering::Relaxed);
                if rate == 0 {
                    if started.elapsed() > duration {
                        return;
                    }
                } else {
                    let request_no = first / template.traces() as u64;
                    // Pace: request k may start at k * per_request / rate seconds.
                    let due = started + Duration::from_secs_f64(request_no as f64 * per_request as f64 / rate as f64);
                    if due > started + duration {
                        return;
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = template.with_ids(first);
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                if grpc.ready().await.is_err() {
                    stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let sent = Instant::now();
                let r = grpc
                    .unary(
                        tonic::Request::new(body),
                        http::uri::PathAndQuery::from_static(EXPORT),
                        otel_export::RawCodec,
                    )
                    .await;
                match r {
                    Ok(_) => {
                        let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        if let Ok(mut l) = stats.latencies_us.lock() {
                            l.push(us);
                        }
                        stats.ok_spans.fetch_add(per_request, Ordering::Relaxed)
                    }
                    Err(_) => stats.failed_requests.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    stats
}

/// CPU time (user + system) of process `pid`, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// User + system CPU time in a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> Option<Duration> {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Clock ticks are 100 per second on Linux.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU time of each thread of process `pid`: (thread id, thread name, CPU time).
pub fn thread_cpu_times(pid: u32) -> Vec<(u32, String, Duration)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| {
            let tid: u32 = t.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_owned();
            Some((tid, name, stat_cpu(&stat)?))
        })
        .collect()
}

/// Peak and current resident memory of process `pid`, bytes.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    };
    Some((kb("VmHWM:")?, kb("VmRSS:")?))
}
