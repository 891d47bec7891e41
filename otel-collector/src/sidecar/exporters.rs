//! Exporters: OTLP (gRPC and HTTP) behind a bounded sending queue, an OTLP
//! JSON file, a debug printer of trace trees, and load balancing by trace id.

use super::bottlenecks::BottleneckReport;
use super::config::{ExporterConfig, OtlpExporterConfig, ResolverConfig};
use super::metrics::{Metrics, add};
use super::pipeline::Consumer;
use super::wire::{LiveGuard, SpanRec, SpanView, encode_request};
use crate::lock;
use otel_export::{OtlpExporter, Protocol, RetryPolicy};
use prost::Message as _;
use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An exporter: takes spans without blocking and drains on shutdown.
pub(crate) trait Exporter: Consumer {
    /// Stops taking spans and sends what is queued, until `deadline`; what
    /// is still unsent then is counted as failed.
    fn shutdown(self: Arc<Self>, deadline: Instant) -> BoxFuture;
}

/// Counters every exporter keeps.
#[derive(Clone)]
pub(crate) struct ExportCounters {
    /// The collector's live-bytes account (encoded requests in flight count).
    pub(crate) live: Arc<super::wire::LiveBytes>,
    pub(crate) sent: Arc<AtomicU64>,
    pub(crate) failed: Arc<AtomicU64>,
    pub(crate) enqueue_failed: Arc<AtomicU64>,
}

impl ExportCounters {
    pub(crate) fn new(metrics: &Metrics, id: &str) -> Self {
        let l = [("exporter", id)];
        ExportCounters {
            live: metrics.live(),
            sent: metrics.counter("otelcol_exporter_sent_spans", "Spans delivered.", &l),
            failed: metrics.counter(
                "otelcol_exporter_send_failed_spans",
                "Spans that could not be delivered.",
                &l,
            ),
            enqueue_failed: metrics.counter(
                "otelcol_exporter_enqueue_failed_spans",
                "Spans dropped because the sending queue was full.",
                &l,
            ),
        }
    }
}

/// An OTLP request body from spans: protobuf, or OTLP JSON.
pub(crate) fn request_body(spans: &[SpanRec], json: bool) -> Result<Vec<u8>, String> {
    let proto = encode_request(spans);
    if !json {
        return Ok(proto);
    }
    to_json(&proto)
}

/// Protobuf `ExportTraceServiceRequest` bytes as OTLP JSON.
pub(crate) fn to_json(proto: &[u8]) -> Result<Vec<u8>, String> {
    let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(proto)
        .map_err(|e| e.to_string())?;
    serde_json::to_vec(&request).map_err(|e| e.to_string())
}

fn otlp_exporter(cfg: &OtlpExporterConfig, endpoint: &str) -> Result<OtlpExporter, String> {
    let protocol = match (cfg.http, cfg.json) {
        (false, _) => Protocol::Grpc,
        (true, false) => Protocol::HttpProtobuf,
        (true, true) => Protocol::HttpJson,
    };
    let retry = if cfg.retry.enabled {
        RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: cfg.retry.initial_interval,
            max_backoff: cfg.retry.max_interval,
            multiplier: cfg.retry.multiplier,
            max_elapsed: cfg.retry.max_elapsed_time,
        }
    } else {
        RetryPolicy::disabled()
    };
    let mut b = OtlpExporter::builder()
        .with_protocol(protocol)
        .with_insecure(cfg.insecure)
        .with_compression(cfg.compression)
        .with_timeout(cfg.timeout)
        .with_retry(retry);
    b = match (&cfg.traces_endpoint, cfg.http) {
        (Some(t), true) => b.with_endpoint(t.clone()),
        (None, true) => b.with_base_endpoint(endpoint.to_owned()),
        (_, false) => b.with_endpoint(endpoint.to_owned()),
    };
    for (k, v) in &cfg.headers {
        b = b.with_header(k.clone(), v.clone());
    }
    if let Some(ca) = &cfg.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read tls.ca_file {ca:?}: {e}"))?;
        b = b.with_ca_certificate_pem(pem);
    }
    if let Some((cert, key)) = &cfg.client_cert {
        let c = std::fs::read(cert).map_err(|e| format!("cannot read tls.cert_file {cert:?}: {e}"))?;
        let k = std::fs::read(key).map_err(|e| format!("cannot read tls.key_file {key:?}: {e}"))?;
        b = b.with_client_identity_pem(c, k);
    }
    // The builder names the environment variable an endpoint would come
    // from; here it came from the configuration.
    b.build()
        .map_err(|e| format!("endpoint {:?} is not valid; accepted: {}", e.value(), e.accepted()))
}

/// An OTLP exporter behind a bounded queue with `num_consumers` requests in flight.
pub(crate) struct QueuedOtlp {
    id: String,
    exporter: Arc<OtlpExporter>,
    json: bool,
    tx: Mutex<Option<mpsc::Sender<Vec<SpanRec>>>>,
    dispatcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Spans queued or in flight, counted as failed if shutdown times out.
    pending: Arc<AtomicU64>,
    counters: ExportCounters,
    warned: Arc<std::sync::atomic::AtomicBool>,
}

impl QueuedOtlp {
    pub(crate) fn new(
        id: &str,
        cfg: &OtlpExporterConfig,
        endpoint: &str,
        counters: ExportCounters,
    ) -> Result<Arc<Self>, String> {
        let exporter = Arc::new(otlp_exporter(cfg, endpoint)?);
        let (consumers, size) = if cfg.queue.enabled {
            (cfg.queue.num_consumers, cfg.queue.queue_size)
        } else {
            (1, 1)
        };
        let (tx, mut rx) = mpsc::channel::<Vec<SpanRec>>(size);
        let pending = Arc::new(AtomicU64::new(0));
        let warned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let json = cfg.json;
        let dispatcher = {
            let (exporter, pending, counters, warned, id) = (
                exporter.clone(),
                pending.clone(),
                counters.clone(),
                warned.clone(),
                id.to_owned(),
            );
            tokio::spawn(async move {
                let permits = Arc::new(Semaphore::new(consumers));
                while let Some(batch) = rx.recv().await {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let n = batch.len() as u64;
                    let body = request_body(&batch, json);
                    drop(batch);
                    let (exporter, pending, counters, warned, id) = (
                        exporter.clone(),
                        pending.clone(),
                        counters.clone(),
                        warned.clone(),
                        id.clone(),
                    );
                    tokio::spawn(async move {
                        let result = match body {
                            Ok(body) => {
                                let _live = LiveGuard::new(&counters.live, body.len());
                                exporter.export_encoded(body, n).await
                            }
                            Err(e) => Err(format!("cannot encode the request: {e}")),
                        };
                        match result {
                            Ok(()) => add(&counters.sent, n),
                            Err(e) => {
                                add(&counters.failed, n);
                                if !warned.swap(true, Ordering::Relaxed) {
                                    tracing::warn!(exporter = %id, "export failed: {e} (further failures are counted in otelcol_exporter_send_failed_spans)");
                                } else {
                                    tracing::debug!(exporter = %id, "export failed: {e}");
                                }
                            }
                        }
                        pending.fetch_sub(n, Ordering::Relaxed);
                        drop(permit);
                    });
                }
                // Wait for the requests in flight.
                let _ = permits.acquire_many(consumers as u32).await;
            })
        };
        Ok(Arc::new(QueuedOtlp {
            id: id.to_owned(),
            exporter,
            json,
            tx: Mutex::new(Some(tx)),
            dispatcher: Mutex::new(Some(dispatcher)),
            pending,
            counters,
            warned,
        }))
    }
}

impl Consumer for QueuedOtlp {
    fn consume(&self, spans: Vec<SpanRec>) {
        let n = spans.len() as u64;
        if n == 0 {
            return;
        }
        let tx = lock(&self.tx).clone();
        let Some(tx) = tx else {
            add(&self.counters.failed, n);
            return;
        };
        self.pending.fetch_add(n, Ordering::Relaxed);
        if tx.try_send(spans).is_err() {
            self.pending.fetch_sub(n, Ordering::Relaxed);
            add(&self.counters.enqueue_failed, n);
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(exporter = %self.id, "sending queue is full; dropping spans (counted in otelcol_exporter_enqueue_failed_spans)");
            }
        }
    }
}

impl Exporter for QueuedOtlp {
    fn shutdown(self: Arc<Self>, deadline: Instant) -> BoxFuture {
        Box::pin(async move {
            drop(lock(&self.tx).take());
            let dispatcher = lock(&self.dispatcher).take();
            if let Some(d) = dispatcher {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, d).await.is_err() {
                    let lost = self.pending.swap(0, Ordering::Relaxed);
                    add(&self.counters.failed, lost);
                    tracing::warn!(exporter = %self.id, "shutdown deadline passed with {lost} spans unsent");
                }
            }
            let exporter = self.exporter.clone();
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            let _ = tokio::task::spawn_blocking(move || {
                use opentelemetry_sdk::trace::SpanExporter as _;
                exporter.shutdown_with_timeout(left)
            })
            .await;
            let _ = self.json;
        })
    }
}

/// `file`: one OTLP JSON request per line, written by a thread of its own.
pub(crate) struct FileExporter {
    tx: Mutex<Option<std::sync::mpsc::SyncSender<Vec<SpanRec>>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    counters: ExportCounters,
}

impl FileExporter {
    pub(crate) fn new(path: &str, counters: ExportCounters) -> Result<Arc<Self>, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {path:?} for writing: {e}"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<SpanRec>>(1024);
        let c = counters.clone();
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("file-exporter".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                for batch in rx {
                    let n = batch.len() as u64;
                    let line = request_body(&batch, true);
                    drop(batch);
                    let written = line.map_err(|e| e.to_string()).and_then(|mut l| {
                        l.push(b'\n');
                        out.write_all(&l).and_then(|()| out.flush()).map_err(|e| e.to_string())
                    });
                    match written {
                        Ok(()) => add(&c.sent, n),
                        Err(e) => {
                            add(&c.failed, n);
                            tracing::warn!("file exporter cannot write to {path:?}: {e}");
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the file exporter thread: {e}"))?;
        Ok(Arc::new(FileExporter {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            counters,
        }))
    }
}

impl Consumer for FileExporter {
    fn consume(&self, spans: Vec<SpanRec>) {
        let n = spans.len() as u64;
        let sent = match &*lock(&self.tx) {
            Some(tx) => tx.try_send(spans).is_ok(),
            None => false,
        };
        if !sent {
            add(&self.counters.enqueue_failed, n);
        }
    }
}

impl Exporter for FileExporter {
    fn shutdown(self: Arc<Self>, _deadline: Instant) -> BoxFuture {
        Box::pin(async move {
            drop(lock(&self.tx).take());
            let thread = lock(&self.thread).take();
            if let Some(t) = thread {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
        })
    }
}

/// The `service.name` of a span's resource ("" without one).
pub(crate) fn service_of(rec: &SpanRec) -> String {
    crate::sidecar::wire::keyvalues(
        &rec.scope.resource.bytes,
        otel_export::wire::field::resource::ATTRIBUTES,
    )
    .find(|(k, _)| *k == "service.name")
    .map(|(_, val)| match crate::sidecar::wire::any_value(val) {
        crate::facts::AttrValue::Str(s) => s.to_owned(),
        _ => String::new(),
    })
    .unwrap_or_default()
}

/// A span as the analysis sees it.
pub(crate) fn span_node<'a>(v: &SpanView<'a>, service: &'a str) -> otel_export::analysis::SpanNode<'a> {
    let node = otel_export::analysis::SpanNode::new(
        u64::from_be_bytes(v.span_id),
        u64::from_be_bytes(v.parent_span_id),
        service,
        v.name,
        v.start,
        v.end,
    );
    if v.status == crate::facts::StatusCode::Error {
        node.failed(v.status_message)
    } else {
        node
    }
}

/// Renders the spans of one batch as trees, one per trace, with the shared
/// renderer: durations, self times, the critical path marked and the
/// culprit named (see `otel_export::analysis`); `detailed` adds attributes.
pub(crate) fn render_trees(spans: &[SpanRec], detailed: bool) -> String {
    use otel_export::analysis::{SpanNode, format_duration, render_tree_with};
    let views: Vec<(SpanView<'_>, &SpanRec)> = spans.iter().filter_map(|s| s.view().ok().map(|v| (v, s))).collect();
    let mut traces: Vec<[u8; 16]> = Vec::new();
    for (v, _) in &views {
        if !traces.contains(&v.trace_id) {
            traces.push(v.trace_id);
        }
    }
    let mut out = String::new();
    for t in traces {
        let members: Vec<&(SpanView<'_>, &SpanRec)> = views.iter().filter(|(v, _)| v.trace_id == t).collect();
        let services: Vec<String> = members.iter().map(|(_, rec)| service_of(rec)).collect();
        let nodes: Vec<SpanNode<'_>> = members
            .iter()
            .zip(&services)
            .map(|((v, _), service)| span_node(v, service))
            .collect();
        let start = nodes.iter().map(|n| n.start).min().unwrap_or(0);
        let end = nodes.iter().map(|n| n.end).max().unwrap_or(0);
        let errors = nodes.iter().filter(|n| n.error.is_some()).count();
        out.push_str(&format!(
            "trace {} ({} spans, {}{})\n",
            crate::hex(&t),
            members.len(),
            format_duration(std::time::Duration::from_nanos(end.saturating_sub(start))),
            if errors > 0 {
                format!(", {errors} with errors")
            } else {
                String::new()
            }
        ));
        let tree = render_tree_with(
            &nodes,
            |i| {
                let n = &nodes[i];
                let status = match &n.error {
                    Some(d) if d.is_empty() => "  ERROR".to_owned(),
                    Some(d) => format!("  ERROR: {d}"),
                    None => String::new(),
                };
                format!("[{}] {}{status}", n.service, n.name)
            },
            |i| {
                if !detailed {
                    return Vec::new();
                }
                members[i]
                    .0
                    .attributes()
                    .map(|(k, val)| {
                        let shown = match crate::sidecar::wire::any_value(val) {
                            crate::facts::AttrValue::Str(s) => format!("{s:?}"),
                            crate::facts::AttrValue::Int(i) => i.to_string(),
                            crate::facts::AttrValue::Double(d) => d.to_string(),
                            crate::facts::AttrValue::Bool(b) => b.to_string(),
                            crate::facts::AttrValue::Other => "(complex)".into(),
                        };
                        format!("{k} = {shown}")
                    })
                    .collect()
            },
        );
        for line in tree.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `debug`: prints kept traces as trees with durations on standard output,
/// and the bottleneck summary every `summary_interval` and at shutdown.
///
/// Batches are rendered and written on the exporter's own thread, behind a
/// bounded queue, so the stage that hands them over (the tail sampler's
/// decision thread) never waits on stdout; a full queue drops the batch and
/// counts it.
pub(crate) struct DebugExporter {
    counters: ExportCounters,
    report: Option<Arc<BottleneckReport>>,
    tx: Mutex<Option<std::sync::mpsc::SyncSender<Vec<SpanRec>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Dropped to stop the summary thread.
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

/// Batches waiting for the debug exporter's writer.
const DEBUG_QUEUE: usize = 256;

impl DebugExporter {
    pub(crate) fn new(
        verbosity: &str,
        counters: ExportCounters,
        summary: Option<(Arc<BottleneckReport>, Duration)>,
    ) -> Result<Arc<Self>, String> {
        let (stop, report) = match summary {
            Some((report, every)) => {
                let (stop, stopped) = std::sync::mpsc::channel::<()>();
                let r = report.clone();
                std::thread::Builder::new()
                    .name("debug-summary".into())
                    .spawn(move || {
                        let mut printed = 0;
                        // Wakes every interval until the exporter shuts down.
                        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                            let analysed = r.analysed();
                            if analysed > printed {
                                printed = analysed;
                                print_summary(&r);
                            }
                        }
                    })
                    .map_err(|e| format!("cannot start the debug exporter's summary thread: {e}"))?;
                (Some(stop), Some(report))
            }
            None => (None, None),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<SpanRec>>(DEBUG_QUEUE);
        let verbosity = verbosity.to_owned();
        let c = counters.clone();
        let writer = std::thread::Builder::new()
            .name("debug-exporter".into())
            .spawn(move || {
                for spans in rx {
                    let text = if verbosity == "basic" {
                        format!("debug exporter: {} spans\n", spans.len())
                    } else {
                        render_trees(&spans, verbosity == "detailed")
                    };
                    let mut stdout = std::io::stdout().lock();
                    let ok = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_ok();
                    add(if ok { &c.sent } else { &c.failed }, spans.len() as u64);
                }
            })
            .map_err(|e| format!("cannot start the debug exporter's thread: {e}"))?;
        Ok(Arc::new(DebugExporter {
            counters,
            report,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            stop: Mutex::new(stop),
        }))
    }
}

fn print_summary(report: &BottleneckReport) {
    let text = report.render_text();
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

impl Consumer for DebugExporter {
    fn consume(&self, spans: Vec<SpanRec>) {
        let n = spans.len() as u64;
        let sent = match &*lock(&self.tx) {
            Some(tx) => tx.try_send(spans).is_ok(),
            None => false,
        };
        if !sent {
            add(&self.counters.enqueue_failed, n);
        }
    }
}

impl Exporter for DebugExporter {
    fn shutdown(self: Arc<Self>, deadline: Instant) -> BoxFuture {
        Box::pin(async move {
            // The writer prints what is queued, then ends.
            drop(lock(&self.tx).take());
            let writer = lock(&self.writer).take();
            if let Some(w) = writer {
                let _ = tokio::task::spawn_blocking(move || w.join()).await;
            }
            drop(lock(&self.stop).take());
            if let Some(report) = &self.report {
                report.settle(deadline.saturating_duration_since(Instant::now())).await;
                if report.analysed() > 0 {
                    print_summary(report);
                }
            }
        })
    }
}

/// Points on the hash ring per backend.
const VIRTUAL_NODES: u32 = 160;

fn fnv(bytes: &[u8]) -> u64 {
    let h = crate::hash::fnv1a(bytes.iter().copied());
    // Spread FNV's weak low bits.
    let h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// A consistent-hash ring of backend endpoints.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ring {
    points: Vec<(u64, usize)>,
    pub(crate) endpoints: Vec<String>,
}

impl Ring {
    pub(crate) fn new(mut endpoints: Vec<String>) -> Ring {
        endpoints.sort();
        endpoints.dedup();
        let mut points = Vec::with_capacity(endpoints.len() * VIRTUAL_NODES as usize);
        for (i, e) in endpoints.iter().enumerate() {
            for v in 0..VIRTUAL_NODES {
                points.push((fnv(format!("{e}#{v}").as_bytes()), i));
            }
        }
        points.sort_unstable();
        Ring { points, endpoints }
    }

    /// The endpoint index a trace goes to.
    pub(crate) fn route(&self, trace_id: &[u8; 16]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = fnv(trace_id);
        let i = self.points.partition_point(|(p, _)| *p < h);
        Some(self.points.get(i).unwrap_or(&self.points[0]).1)
    }
}

/// `loadbalancing`: each trace to one backend, chosen on a consistent-hash ring.
pub(crate) struct LoadBalancer {
    id: String,
    template: OtlpExporterConfig,
    state: RwLock<(Ring, HashMap<String, Arc<QueuedOtlp>>)>,
    /// Spans handed to a backend (each backend counts its own deliveries).
    routed: Arc<AtomicU64>,
    /// Spans with no backend to go to.
    unroutable: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    resolver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn backend_endpoint(host: &str, insecure: bool) -> String {
    let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !host.ends_with(']') {
        host.to_owned()
    } else {
        format!("{host}:4317")
    };
    if with_port.contains("://") {
        with_port
    } else {
        format!("{}://{with_port}", if insecure { "http" } else { "https" })
    }
}

impl LoadBalancer {
    pub(crate) fn new(
        id: &str,
        template: &OtlpExporterConfig,
        resolver: &ResolverConfig,
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<Self>, String> {
        let lb = Arc::new(LoadBalancer {
            id: id.to_owned(),
            template: template.clone(),
            state: RwLock::new((Ring::default(), HashMap::new())),
            routed: metrics.counter(
                "otelcol_loadbalancer_routed_spans",
                "Spans handed to a backend.",
                &[("exporter", id)],
            ),
            unroutable: metrics.counter(
                "otelcol_exporter_send_failed_spans",
                "Spans that could not be delivered.",
                &[("exporter", id)],
            ),
            metrics: metrics.clone(),
            resolver: Mutex::new(None),
        });
        match resolver {
            ResolverConfig::Static(hosts) => {
                lb.set_backends(hosts.iter().map(|h| backend_endpoint(h, template.insecure)).collect())?;
            }
            ResolverConfig::Dns {
                hostname,
                port,
                interval,
                timeout,
            } => {
                let weak = Arc::downgrade(&lb);
                let (hostname, port, interval, timeout) = (hostname.clone(), *port, *interval, *timeout);
                let task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(interval);
                    loop {
                        tick.tick().await;
                        let Some(lb) = weak.upgrade() else { return };
                        let lookup =
                            tokio::time::timeout(timeout, tokio::net::lookup_host((hostname.as_str(), port))).await;
                        match lookup {
                            Ok(Ok(addrs)) => {
                                let endpoints: Vec<String> = addrs
                                    .map(|a| backend_endpoint(&a.to_string(), lb.template.insecure))
                                    .collect();
                                if endpoints.is_empty() {
                                    tracing::warn!(exporter = %lb.id, "{hostname} resolves to no address; keeping the current backends");
                                } else if let Err(e) = lb.set_backends(endpoints) {
                                    tracing::warn!(exporter = %lb.id, "cannot use the resolved backends: {e}");
                                }
                            }
                            Ok(Err(e)) => tracing::warn!(exporter = %lb.id, "cannot resolve {hostname}: {e}"),
                            Err(_) => tracing::warn!(exporter = %lb.id, "resolving {hostname} timed out"),
                        }
                    }
                });
                *lock(&lb.resolver) = Some(task);
            }
        }
        Ok(lb)
    }

    /// Replaces the backend set; traces of kept backends keep their backend
    /// except for the share the new ones take over.
    pub(crate) fn set_backends(&self, endpoints: Vec<String>) -> Result<(), String> {
        let ring = Ring::new(endpoints);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.0.endpoints == ring.endpoints {
            return Ok(());
        }
        let mut backends = HashMap::new();
        for e in &ring.endpoints {
            let b = match state.1.remove(e) {
                Some(b) => b,
                None => {
                    let id = format!("{}/{e}", self.id);
                    QueuedOtlp::new(&id, &self.template, e, ExportCounters::new(&self.metrics, &id))?
                }
            };
            backends.insert(e.clone(), b);
        }
        // Backends that left drain in the background.
        for (_, old) in state.1.drain() {
            let deadline = Instant::now() + Duration::from_secs(30);
            tokio::spawn(old.shutdown(deadline));
        }
        tracing::info!(exporter = %self.id, "backends: {}", ring.endpoints.join(", "));
        *state = (ring, backends);
        Ok(())
    }
}

impl Consumer for LoadBalancer {
    fn consume(&self, spans: Vec<SpanRec>) {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let (ring, backends) = &*state;
        let mut per: Vec<Vec<SpanRec>> = (0..ring.endpoints.len()).map(|_| Vec::new()).collect();
        let mut unroutable = 0u64;
        for s in spans {
            let idx = s.view().ok().and_then(|v| ring.route(&v.trace_id));
            match idx {
                Some(i) => per[i].push(s),
                None => unroutable += 1,
            }
        }
        add(&self.unroutable, unroutable);
        for (i, batch) in per.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let n = batch.len() as u64;
            match backends.get(&ring.endpoints[i]) {
                Some(b) => {
                    b.consume(batch);
                    add(&self.routed, n);
                }
                None => add(&self.unroutable, n),
            }
        }
    }
}

impl Exporter for LoadBalancer {
    fn shutdown(self: Arc<Self>, deadline: Instant) -> BoxFuture {
        Box::pin(async move {
            if let Some(r) = lock(&self.resolver).take() {
                r.abort();
            }
            let backends: Vec<Arc<QueuedOtlp>> = {
                let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
                state.1.values().cloned().collect()
            };
            for b in backends {
                b.shutdown(deadline).await;
            }
        })
    }
}

/// Builds an exporter.
pub(crate) fn build(
    id: &str,
    cfg: &ExporterConfig,
    metrics: &Arc<Metrics>,
    report: Option<&Arc<BottleneckReport>>,
) -> Result<Arc<dyn ExporterDyn>, String> {
    Ok(match cfg {
        ExporterConfig::Otlp(o) => {
            let e: Arc<QueuedOtlp> = QueuedOtlp::new(id, o, &o.endpoint, ExportCounters::new(metrics, id))?;
            e
        }
        ExporterConfig::File { path } => FileExporter::new(path, ExportCounters::new(metrics, id))?,
        ExporterConfig::Debug {
            verbosity,
            summary_interval,
        } => {
            let summary = report.cloned().zip(*summary_interval);
            DebugExporter::new(verbosity, ExportCounters::new(metrics, id), summary)?
        }
        ExporterConfig::LoadBalancing { template, resolver } => LoadBalancer::new(id, template, resolver, metrics)?,
    })
}

/// An exporter as a trait object: consume, and shut down.
pub(crate) trait ExporterDyn: Consumer {
    fn shutdown_dyn(self: Arc<Self>, deadline: Instant) -> BoxFuture;
}

impl<E: Exporter + 'static> ExporterDyn for E {
    fn shutdown_dyn(self: Arc<Self>, deadline: Instant) -> BoxFuture {
        self.shutdown(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;

    fn endpoints(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://10.0.0.{i}:4317")).collect()
    }

    fn id(n: u64) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
        b
    }

    #[test]
    fn traces_spread_evenly_and_few_move_when_backends_change() {
        let three = Ring::new(endpoints(3));
        let four = Ring::new(endpoints(4));
        let two = Ring::new(endpoints(2));
        const N: u64 = 30_000;
        let mut counts = [0u64; 3];
        let (mut moved_add, mut moved_remove) = (0, 0);
        for n in 0..N {
            let t = id(n);
            let a = three.route(&t).unwrap();
            counts[a] += 1;
            let b = four.route(&t).unwrap();
            if three.endpoints[a] != four.endpoints[b] {
                moved_add += 1;
                // Only to the new backend.
                assert_eq!(four.endpoints[b], "http://10.0.0.3:4317");
            }
            let c = two.route(&t).unwrap();
            if three.endpoints[a] != two.endpoints[c] {
                moved_remove += 1;
                // Only traces of the removed backend.
                assert_eq!(three.endpoints[a], "http://10.0.0.2:4317");
            }
        }
        for c in counts {
            assert!((c as f64 / N as f64 - 1.0 / 3.0).abs() < 0.06, "uneven: {counts:?}");
        }
        // Adding a fourth backend moves about a quarter; removing one about a third.
        assert!((moved_add as f64 / N as f64) < 0.33, "{moved_add}");
        assert!((moved_remove as f64 / N as f64) < 0.40, "{moved_remove}");
        // The same trace always goes to the same backend.
        assert_eq!(three.route(&id(7)), Ring::new(endpoints(3)).route(&id(7)));
        assert_eq!(Ring::new(Vec::new()).route(&id(1)), None);
    }
}
