//! `loadbalancing`: each trace to one backend, chosen by trace id on a
//! consistent-hash ring of the resolved endpoints.

use super::otlp::{OtlpExporterConfig, QueuedOtlp, Transport};
use super::{BoxFuture, ExportCounters, Exporter, ExporterDyn};
use crate::lock;
use crate::sidecar::component::{BuildContext, Component, ExporterSettings, Factory};
use crate::sidecar::config::{
    At, ConfigError, EMPTY, body, check_send_address, child, get, get_duration, get_str, get_strings, get_u64,
};
use crate::sidecar::metrics::{Metrics, add};
use crate::sidecar::pipeline::Consumer;
use crate::sidecar::wire::SpanRec;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The table line.
pub(crate) const FACTORY: Factory<dyn ExporterSettings> = Factory {
    component: Component {
        section: "exporters",
        name: "loadbalancing",
        settings: &["routing_key", "protocol", "resolver"],
        ignored: &[],
    },
    parse: |at, warnings| Ok(Box::new(LoadBalancingConfig::parse(at, warnings)?)),
};

/// Where the `loadbalancing` exporter finds its backends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ResolverConfig {
    /// `static.hostnames`.
    Static(Vec<String>),
    /// `dns`: every address `hostname` resolves to, on `port`, re-resolved every `interval`.
    Dns {
        /// The name to resolve (a headless Service).
        hostname: String,
        /// The backends' OTLP/gRPC port.
        port: u16,
        /// How often to resolve.
        interval: Duration,
        /// How long a lookup may take.
        timeout: Duration,
    },
}

/// `loadbalancing` settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadBalancingConfig {
    /// `protocol.otlp` settings for every backend (the endpoint comes from the resolver).
    pub template: OtlpExporterConfig,
    /// `resolver`.
    pub resolver: ResolverConfig,
}

impl LoadBalancingConfig {
    fn parse(at: At<'_>, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        if let Some(k) = get_str(at, "routing_key")?
            && k != "traceID"
        {
            return Err(ConfigError::new(
                child(at.path, "routing_key"),
                format!("only traceID routing is supported (tail sampling needs whole traces), got {k:?}"),
            ));
        }
        let ppath = child(at.path, "protocol");
        let protocol = At {
            value: get(at, "protocol").unwrap_or(&EMPTY),
            path: &ppath,
        };
        if get(at, "protocol").is_some() {
            protocol.map()?;
            protocol.only_keys(&["otlp"])?;
        }
        let opath = child(&ppath, "otlp");
        let otlp = At {
            value: body(get(protocol, "otlp").unwrap_or(&EMPTY)),
            path: &opath,
        };
        otlp.map()?;
        if get(otlp, "endpoint").is_some() {
            return Err(ConfigError::new(
                child(&opath, "endpoint"),
                "the resolver gives the endpoints; remove this one",
            ));
        }
        super::otlp::OTLP.component.check_keys(otlp, warnings)?;
        let template = OtlpExporterConfig::parse(otlp, Transport::Grpc, false, warnings)?;
        let rpath = child(at.path, "resolver");
        let resolver = At {
            value: get(at, "resolver").unwrap_or(&EMPTY),
            path: &rpath,
        };
        let Value::Object(m) = resolver.value else {
            return Err(resolver.err("the loadbalancing exporter needs a resolver: static or dns"));
        };
        resolver.only_keys(&["static", "dns", "k8s", "aws_cloud_map"])?;
        if m.contains_key("k8s") || m.contains_key("aws_cloud_map") {
            return Err(resolver.err(
                "only the static and dns resolvers are supported; for Kubernetes use dns with a headless Service",
            ));
        }
        let resolver = match (m.get("static"), m.get("dns")) {
            (Some(s), None) => {
                let path = child(&rpath, "static");
                let s = At { value: s, path: &path };
                s.map()?;
                s.only_keys(&["hostnames"])?;
                let hosts = get_strings(s, "hostnames")?;
                if hosts.is_empty() {
                    return Err(ConfigError::new(
                        child(&path, "hostnames"),
                        "at least one backend is required",
                    ));
                }
                for (i, host) in hosts.iter().enumerate() {
                    check_send_address(host, false)
                        .map_err(|why| ConfigError::new(format!("{path}.hostnames[{i}]"), why))?;
                }
                ResolverConfig::Static(hosts)
            }
            (None, Some(d)) => {
                let path = child(&rpath, "dns");
                let d = At { value: d, path: &path };
                d.map()?;
                d.only_keys(&["hostname", "port", "interval", "timeout"])?;
                let hostname = get_str(d, "hostname")?
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| ConfigError::new(child(&path, "hostname"), "the dns resolver needs a hostname"))?
                    .to_owned();
                let port = match get_u64(d, "port")? {
                    None => 4317,
                    Some(p) if (1..=65535).contains(&p) => p as u16,
                    Some(p) => {
                        return Err(ConfigError::new(
                            child(&path, "port"),
                            format!("must be 1 to 65535, got {p}"),
                        ));
                    }
                };
                ResolverConfig::Dns {
                    hostname,
                    port,
                    interval: get_duration(d, "interval")?
                        .unwrap_or(Duration::from_secs(5))
                        .max(Duration::from_millis(100)),
                    timeout: get_duration(d, "timeout")?.unwrap_or(Duration::from_secs(1)),
                }
            }
            _ => return Err(ConfigError::new(rpath, "set exactly one resolver: static or dns")),
        };
        Ok(LoadBalancingConfig { template, resolver })
    }
}

impl ExporterSettings for LoadBalancingConfig {
    fn auth_refs(&self) -> Vec<(&'static str, &str)> {
        let template = self.template.auth.as_deref();
        template
            .map(|a| ("protocol.otlp.auth.authenticator", a))
            .into_iter()
            .collect()
    }

    fn build(&self, ctx: &BuildContext, id: &str) -> Result<Arc<dyn ExporterDyn>, String> {
        let template = self.template.with_credentials(ctx)?;
        let e: Arc<LoadBalancer> = LoadBalancer::new(ctx, id, &template, &self.resolver)?;
        Ok(e)
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
    /// The collector's runtime: backends and the resolver run on it.
    runtime: tokio::runtime::Handle,
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
        ctx: &BuildContext,
        id: &str,
        template: &OtlpExporterConfig,
        resolver: &ResolverConfig,
    ) -> Result<Arc<Self>, String> {
        let metrics = ctx.metrics();
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
            runtime: ctx.runtime().clone(),
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
                let task = ctx.spawn(async move {
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
                    QueuedOtlp::new(
                        &self.runtime,
                        &id,
                        &self.template,
                        e,
                        ExportCounters::new(&self.metrics, &id),
                    )?
                }
            };
            backends.insert(e.clone(), b);
        }
        // Backends that left drain in the background.
        for (_, old) in state.1.drain() {
            let deadline = Instant::now() + Duration::from_secs(30);
            self.runtime.spawn(old.shutdown(deadline));
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
