//! The `otel-collector` sidecar: OTLP receivers -> memory limiter ->
//! tail sampling / attributes / resource / batch -> exporters, configured
//! with OpenTelemetry Collector YAML.
//!
//! Spans travel as their OTLP wire bytes: the receivers split requests into
//! per-span byte ranges (checking them), the tail sampler reads only the
//! fields its policies need, and the exporters put requests back together by
//! copying bytes; only the `attributes` and `resource` actions re-encode the
//! attributes they change.

mod actions;
mod bottlenecks;
pub mod config;
mod exporters;
mod memory;
mod metrics;
mod pipeline;
mod receiver;
pub mod wire;

pub use config::CollectorConfig;
pub use memory::resident_bytes;
pub use metrics::Metrics;

use config::{ExtensionConfig, ProcessorConfig};
use exporters::ExporterDyn;
use memory::MemoryLimiter;
use pipeline::{AttributesStage, BatchStage, Consumer, Fanout, Flush, ResourceStage, TailStage};
use receiver::{Intake, PipelineEntry, TraceGrpc, TraceHttp};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A running collector.
pub struct Collector {
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    aux_stop: watch::Sender<bool>,
    aux_servers: Vec<tokio::task::JoinHandle<()>>,
    flushers: Vec<Arc<dyn Flush>>,
    exporters: Vec<(String, Arc<dyn ExporterDyn>)>,
    tails: Vec<(String, Arc<TailStage>)>,
    addresses: Vec<(String, SocketAddr)>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

fn exporter_ids_used(config: &CollectorConfig) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for p in &config.pipelines {
        for e in &p.exporters {
            if !ids.contains(e) {
                ids.push(e.clone());
            }
        }
    }
    ids
}

impl Collector {
    /// Starts every pipeline, receiver and extension of `config`. Must run
    /// inside a multi-threaded tokio runtime.
    ///
    /// # Errors
    ///
    /// When a listener cannot bind, a file cannot be opened or an exporter
    /// cannot be built; the message names the component.
    pub async fn start(config: CollectorConfig) -> Result<Collector, String> {
        let metrics = Arc::new(Metrics::default());
        register_process_gauges(&metrics);
        // Which services and operations make traces slow: fed by the tail samplers.
        let tail_sampling = config.pipelines.iter().flat_map(|p| &p.processors).any(|id| {
            config
                .processors
                .iter()
                .any(|(k, c)| k == id && matches!(c, ProcessorConfig::TailSampling(_)))
        });
        let report = if tail_sampling {
            Some(bottlenecks::BottleneckReport::start()?)
        } else {
            None
        };

        // Exporters, shared by the pipelines that use them.
        let mut exporters: Vec<(String, Arc<dyn ExporterDyn>)> = Vec::new();
        for id in exporter_ids_used(&config) {
            let Some((_, cfg)) = config.exporters.iter().find(|(k, _)| *k == id) else {
                continue;
            };
            let e =
                exporters::build(&id, cfg, &metrics, report.as_ref()).map_err(|e| format!("exporters.{id}: {e}"))?;
            exporters.push((id, e));
        }

        // Pipelines, built from the exporters back to the head.
        let mut limiters: HashMap<String, Arc<MemoryLimiter>> = HashMap::new();
        let mut heads: Vec<(String, PipelineEntry)> = Vec::new();
        let mut flushers: Vec<Arc<dyn Flush>> = Vec::new();
        let mut tails = Vec::new();
        for p in &config.pipelines {
            let outs: Vec<Arc<dyn Consumer>> = p
                .exporters
                .iter()
                .filter_map(|id| {
                    exporters
                        .iter()
                        .find(|(k, _)| k == id)
                        .map(|(_, e)| e.clone() as Arc<dyn Consumer>)
                })
                .collect();
            let mut next: Arc<dyn Consumer> = if outs.len() == 1 {
                outs[0].clone()
            } else {
                Arc::new(Fanout(outs))
            };
            let mut pipeline_flushers: Vec<Arc<dyn Flush>> = Vec::new();
            let mut pipeline_limiters = Vec::new();
            for id in p.processors.iter().rev() {
                let Some((_, cfg)) = config.processors.iter().find(|(k, _)| k == id) else {
                    continue;
                };
                match cfg {
                    ProcessorConfig::MemoryLimiter(m) => {
                        let l = limiters
                            .entry(id.clone())
                            .or_insert_with(|| MemoryLimiter::start(*m, &metrics, id))
                            .clone();
                        pipeline_limiters.push(l);
                    }
                    ProcessorConfig::Batch(b) => {
                        let stage = BatchStage::new(*b, next);
                        pipeline_flushers.push(stage.clone());
                        next = stage;
                    }
                    ProcessorConfig::Attributes(actions) => {
                        next = Arc::new(AttributesStage {
                            actions: actions.clone(),
                            next,
                        });
                    }
                    ProcessorConfig::Resource(actions) => {
                        next = Arc::new(ResourceStage {
                            actions: actions.clone(),
                            next,
                        });
                    }
                    ProcessorConfig::TailSampling(v) => {
                        let path = format!("processors.{id}");
                        let ts =
                            crate::settings::TailSamplingConfig::from_value(v, &path).map_err(|e| e.to_string())?;
                        let stage = TailStage::new(ts, next, &metrics, id, &p.name, report.clone());
                        register_tail_gauges(&metrics, &stage, id, &p.name);
                        tails.push((format!("{}/{id}", p.name), stage.clone()));
                        pipeline_flushers.push(stage.clone());
                        next = stage;
                    }
                }
            }
            // Flush from the head of the pipeline towards the exporters.
            pipeline_flushers.reverse();
            flushers.extend(pipeline_flushers);
            heads.push((
                p.name.clone(),
                PipelineEntry {
                    limiters: pipeline_limiters,
                    head: next,
                },
            ));
        }

        // Receivers.
        let (stop, _) = watch::channel(false);
        let mut servers = Vec::new();
        let mut addresses = Vec::new();
        for (id, rcfg) in &config.receivers {
            let feeds: Vec<&str> = config
                .pipelines
                .iter()
                .filter(|p| p.receivers.contains(id))
                .map(|p| p.name.as_str())
                .collect();
            if feeds.is_empty() {
                continue;
            }
            let entries = |transport: &str| {
                let entries: Vec<PipelineEntry> = heads
                    .iter()
                    .filter(|(name, _)| feeds.contains(&name.as_str()))
                    .map(|(_, e)| PipelineEntry {
                        limiters: e.limiters.clone(),
                        head: e.head.clone(),
                    })
                    .collect();
                Intake::new(entries, &metrics, id, transport)
            };
            if let Some(endpoint) = &rcfg.grpc {
                let listener = receiver::bind(endpoint, &format!("receivers.{id}.protocols.grpc.endpoint")).await?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                addresses.push((format!("{id}/grpc"), addr));
                let service = TraceGrpc::new(entries("grpc"), rcfg.grpc_max_message_bytes);
                let rx = stop.subscribe();
                let id = id.clone();
                servers.push(tokio::spawn(async move {
                    if let Err(e) = receiver::serve_grpc(listener, service, rx).await {
                        tracing::error!(receiver = %id, "gRPC server stopped: {e}");
                    }
                }));
                tracing::info!(receiver = %format!("{}", addresses.last().map_or("", |a| a.0.as_str())), "OTLP/gRPC listening on {addr}");
            }
            if let Some(endpoint) = &rcfg.http {
                let listener = receiver::bind(endpoint, &format!("receivers.{id}.protocols.http.endpoint")).await?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                addresses.push((format!("{id}/http"), addr));
                let handler = Arc::new(TraceHttp {
                    intake: entries("http"),
                    max_body: rcfg.http_max_body_bytes,
                    path: rcfg.http_traces_path.clone(),
                });
                let rx = stop.subscribe();
                servers.push(tokio::spawn(receiver::serve_http(
                    listener,
                    move |req| {
                        let h = handler.clone();
                        async move { h.handle(req).await }
                    },
                    rx,
                )));
                tracing::info!(receiver = %id, "OTLP/HTTP listening on {addr}");
            }
        }

        // Health and metrics endpoints.
        let (aux_stop, _) = watch::channel(false);
        let mut aux_servers = Vec::new();
        for (id, ext) in &config.extensions {
            if let ExtensionConfig::HealthCheck { endpoint, path } = ext {
                let listener = receiver::bind(endpoint, &format!("extensions.{id}.endpoint")).await?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                addresses.push((id.clone(), addr));
                let path = path.clone();
                let up = stop.subscribe();
                aux_servers.push(tokio::spawn(receiver::serve_http(
                    listener,
                    move |req| {
                        let path = path.clone();
                        let stopping = *up.borrow();
                        async move { health(req, &path, stopping) }
                    },
                    aux_stop.subscribe(),
                )));
                tracing::info!(extension = %id, "health check on http://{addr}{}", ext_path(ext));
            }
        }
        if let Some(endpoint) = &config.telemetry.metrics_address {
            let listener = receiver::bind(endpoint, "service.telemetry.metrics.address").await?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            addresses.push(("metrics".into(), addr));
            let m = metrics.clone();
            let r = report.clone();
            aux_servers.push(tokio::spawn(receiver::serve_http(
                listener,
                move |req| {
                    let m = m.clone();
                    let r = r.clone();
                    async move { telemetry(req, &m, r.as_deref()) }
                },
                aux_stop.subscribe(),
            )));
            tracing::info!("metrics on http://{addr}/metrics, bottlenecks on http://{addr}{BOTTLENECKS_PATH}");
        }
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        Ok(Collector {
            metrics,
            stop,
            servers,
            aux_stop,
            aux_servers,
            flushers,
            exporters,
            tails,
            addresses,
        })
    }

    /// The addresses listened on: (`otlp/grpc`, ...), (`otlp/http`, ...),
    /// (`health_check`, ...), (`metrics`, ...).
    pub fn addresses(&self) -> &[(String, SocketAddr)] {
        &self.addresses
    }

    /// The collector's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Stops the receivers (requests in flight finish), decides every
    /// buffered trace, flushes the batches and drains the exporters, all
    /// within `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let _ = self.stop.send(true);
        for s in self.servers {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, s).await;
        }
        tracing::info!("receivers stopped; deciding buffered traces and flushing");
        let flushers = self.flushers;
        let _ = tokio::task::spawn_blocking(move || {
            for f in flushers {
                f.flush();
            }
        })
        .await;
        let drains: Vec<_> = self
            .exporters
            .iter()
            .map(|(_, e)| tokio::spawn(e.clone().shutdown_dyn(deadline)))
            .collect();
        for d in drains {
            let _ = d.await;
        }
        for (name, t) in &self.tails {
            let s = t.sampler.stats();
            tracing::info!(
                pipeline = %name,
                "tail sampling: {} spans received, {} kept, {} dropped by policy, {} late kept, {} late dropped",
                s.spans_received,
                s.spans_sampled,
                s.spans_not_sampled,
                s.late_spans_sampled,
                s.late_spans_dropped
            );
        }
        let _ = self.aux_stop.send(true);
        for s in self.aux_servers {
            let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
        }
    }
}

fn ext_path(ext: &ExtensionConfig) -> &str {
    match ext {
        ExtensionConfig::HealthCheck { path, .. } => path,
        ExtensionConfig::Ignored(_) => "",
    }
}

type Reply = http::Response<http_body_util::Full<bytes::Bytes>>;

fn text(status: http::StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

fn health(req: http::Request<hyper::body::Incoming>, path: &str, stopping: bool) -> Reply {
    if req.uri().path() != path {
        return text(http::StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
    }
    if stopping {
        return text(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            "{\"status\":\"Server not available\"}".into(),
        );
    }
    text(
        http::StatusCode::OK,
        "application/json",
        "{\"status\":\"Server available\"}".into(),
    )
}

/// Where the telemetry server shows the bottleneck summary (`?format=json`
/// for JSON).
pub const BOTTLENECKS_PATH: &str = "/debug/bottlenecks";

/// The telemetry server: Prometheus metrics and the bottleneck summary.
fn telemetry(
    req: http::Request<hyper::body::Incoming>,
    metrics: &Metrics,
    report: Option<&bottlenecks::BottleneckReport>,
) -> Reply {
    match req.uri().path() {
        "/metrics" => text(http::StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
        BOTTLENECKS_PATH => {
            let json = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"));
            match (report, json) {
                (None, _) => text(
                    http::StatusCode::NOT_FOUND,
                    "text/plain",
                    "no tail_sampling processor: the bottleneck summary covers the traces tail samplers decide\n"
                        .into(),
                ),
                (Some(r), true) => text(http::StatusCode::OK, "application/json", r.to_json().to_string()),
                (Some(r), false) => text(http::StatusCode::OK, "text/plain; charset=utf-8", r.render_text()),
            }
        }
        _ => text(
            http::StatusCode::NOT_FOUND,
            "text/plain",
            format!("metrics are at /metrics, the bottleneck summary at {BOTTLENECKS_PATH}\n"),
        ),
    }
}

fn register_process_gauges(metrics: &Metrics) {
    metrics.gauge(
        "otelcol_process_memory_rss",
        "Resident memory of the collector, bytes.",
        &[],
        || resident_bytes().unwrap_or(0) as f64,
    );
    let live = metrics.live();
    metrics.gauge(
        "otelcol_process_span_bytes",
        "Bytes of span data held (buffered, batched, queued).",
        &[],
        move || live.get() as f64,
    );
}

fn register_tail_gauges(metrics: &Metrics, stage: &Arc<TailStage>, id: &str, pipeline: &str) {
    let l = [("processor", id), ("pipeline", pipeline)];
    type Read = fn(&crate::engine::TailSamplingStats) -> u64;
    let fields: [(&str, &str, Read); 10] = [
        (
            "otelcol_processor_tail_sampling_spans_received",
            "Spans received.",
            |s| s.spans_received,
        ),
        (
            "otelcol_processor_tail_sampling_traces_received",
            "Traces received.",
            |s| s.traces_received,
        ),
        (
            "otelcol_processor_tail_sampling_spans_sampled",
            "Spans of kept traces.",
            |s| s.spans_sampled,
        ),
        (
            "otelcol_processor_tail_sampling_spans_not_sampled",
            "Spans of traces not kept.",
            |s| s.spans_not_sampled,
        ),
        ("otelcol_processor_tail_sampling_traces_sampled", "Traces kept.", |s| {
            s.traces_sampled
        }),
        (
            "otelcol_processor_tail_sampling_traces_not_sampled",
            "Traces not kept.",
            |s| s.traces_not_sampled,
        ),
        (
            "otelcol_processor_tail_sampling_late_spans_sampled",
            "Late spans of kept traces, forwarded.",
            |s| s.late_spans_sampled,
        ),
        (
            "otelcol_processor_tail_sampling_late_spans_dropped",
            "Late spans of dropped traces.",
            |s| s.late_spans_dropped,
        ),
        (
            "otelcol_processor_tail_sampling_traces_evicted",
            "Traces decided early (num_traces reached).",
            |s| s.evicted,
        ),
        (
            "otelcol_processor_tail_sampling_spans_buffered",
            "Spans buffered now.",
            |s| s.buffered_spans,
        ),
    ];
    for (name, help, read) in fields {
        let weak = Arc::downgrade(stage);
        metrics.gauge(name, help, &l, move || {
            weak.upgrade().map_or(0.0, |s| read(&s.sampler.stats()) as f64)
        });
    }
    type Vote = fn(&crate::engine::PolicyCounts) -> u64;
    let votes: [(&str, Vote); 2] = [("true", |q| q.sampled), ("false", |q| q.not_sampled + q.dropped)];
    for p in stage.sampler.stats().policies {
        for (sampled, vote) in votes {
            let weak = Arc::downgrade(stage);
            let name = p.name.clone();
            let labels = [
                ("processor", id),
                ("pipeline", pipeline),
                ("policy", p.name.as_str()),
                ("sampled", sampled),
            ];
            metrics.gauge(
                "otelcol_processor_tail_sampling_count_traces_sampled",
                "Traces each policy voted on.",
                &labels,
                move || {
                    weak.upgrade().map_or(0.0, |s| {
                        s.sampler
                            .stats()
                            .policies
                            .iter()
                            .find(|q| q.name == name)
                            .map_or(0.0, |q| vote(q) as f64)
                    })
                },
            );
        }
    }
}
