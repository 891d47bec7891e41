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
        ignored: &["timeout", "sending_queue", "retry_on_failure"],
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
        /// `port`: added to each address as Go adds it (the ring hashes
        /// `address:port`, or the bare address when unset); 4317 when unset.
        port: Option<u16>,
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
                    None => None,
                    Some(p) if (1..=65535).contains(&p) => Some(p as u16),
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
    fn storage_refs(&self) -> Vec<(&'static str, &str)> {
        self.template
            .queue
            .storage
            .as_deref()
            .map(|s| ("protocol.otlp.sending_queue.storage", s))
            .into_iter()
            .collect()
    }

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

/// Ring positions, points per resolved endpoint and the probe limit of the
/// Go exporter's ring (contrib `loadbalancingexporter`, as changed by PR
/// #41271): see [`Ring`].
const RING_POSITIONS: u32 = 36_000;
const RING_WEIGHT: u32 = 100;
const RING_PROBES: u32 = 10;

/// The consistent-hash ring of the Go `loadbalancing` exporter, point for
/// point, so that Go and our agents send a trace to the same gateway.
///
/// Every resolved endpoint string (sorted, duplicates kept, as Go's resolvers
/// hand them over) gets [`RING_WEIGHT`] points: point `i` of endpoint `e` sits
/// at `crc32_ieee(e ++ u32_le(i)) % RING_POSITIONS`. A taken position is
/// probed forward one slot at a time, wrapping; a point with no free slot
/// after [`RING_PROBES`] steps is left out. A trace goes to the first point at
/// or after `crc32_ieee(trace_id) % RING_POSITIONS`, wrapping to the first.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Ring {
    /// `(position, index into backends)`, sorted by position (positions are distinct).
    points: Vec<(u32, usize)>,
    /// The distinct backends the points lead to, sorted.
    pub(crate) backends: Vec<String>,
}

impl Ring {
    /// The ring over `resolved` (the resolver's strings, which Go hashes),
    /// each leading to the backend `backend(key)` names.
    pub(crate) fn new(mut resolved: Vec<String>, backend: impl Fn(&str) -> String) -> Ring {
        resolved.sort();
        let mut backends: Vec<String> = resolved.iter().map(|k| backend(k)).collect();
        backends.sort();
        backends.dedup();
        let mut taken = vec![false; RING_POSITIONS as usize];
        let mut points = Vec::with_capacity(resolved.len() * RING_WEIGHT as usize);
        for key in &resolved {
            let b = backends.binary_search(&backend(key)).unwrap_or_default();
            for i in 0..RING_WEIGHT {
                let mut h = crc32fast::Hasher::new();
                h.update(key.as_bytes());
                h.update(&i.to_le_bytes());
                let mut pos = h.finalize() % RING_POSITIONS;
                let mut probed = 0;
                while taken[pos as usize] && probed < RING_PROBES {
                    pos = (pos + 1) % RING_POSITIONS;
                    probed += 1;
                }
                if probed >= RING_PROBES {
                    continue;
                }
                taken[pos as usize] = true;
                points.push((pos, b));
            }
        }
        points.sort_unstable();
        Ring { points, backends }
    }

    /// The backend index a trace goes to.
    pub(crate) fn route(&self, trace_id: &[u8; 16]) -> Option<usize> {
        let first = self.points.first()?;
        let pos = crc32fast::hash(trace_id) % RING_POSITIONS;
        let i = self.points.partition_point(|(p, _)| *p < pos);
        Some(self.points.get(i).unwrap_or(first).1)
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
    /// What each backend's queue is built with.
    env: super::otlp::QueueEnv,
    resolver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The string Go's DNS resolver gives for an address: IPv6 in brackets, and
/// `:port` only when the port is configured.
fn resolved_name(ip: std::net::IpAddr, port: Option<u16>) -> String {
    let host = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// Where a resolved backend is reached: its port (4317 when it names none)
/// and a scheme from `insecure`.
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
            env: super::otlp::QueueEnv::new(ctx, template)?,
            resolver: Mutex::new(None),
        });
        match resolver {
            ResolverConfig::Static(hosts) => {
                lb.set_backends(hosts.clone())?;
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
                            tokio::time::timeout(timeout, tokio::net::lookup_host((hostname.as_str(), 0))).await;
                        match lookup {
                            Ok(Ok(addrs)) => {
                                let endpoints: Vec<String> = addrs.map(|a| resolved_name(a.ip(), port)).collect();
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

    /// Replaces the backend set (`resolved`: the resolver's strings, as Go's
    /// resolvers give them); traces of kept backends keep their backend
    /// except for the share the new ones take over.
    pub(crate) fn set_backends(&self, resolved: Vec<String>) -> Result<(), String> {
        let insecure = self.template.insecure;
        let ring = Ring::new(resolved, |key| backend_endpoint(key, insecure));
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.0 == ring {
            return Ok(());
        }
        let mut backends = HashMap::new();
        for e in &ring.backends {
            let b = match state.1.remove(e) {
                Some(b) => b,
                None => {
                    let id = format!("{}/{e}", self.id);
                    QueuedOtlp::new(
                        &self.env,
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
        tracing::info!(exporter = %self.id, "backends: {}", ring.backends.join(", "));
        *state = (ring, backends);
        Ok(())
    }
}

impl Consumer for LoadBalancer {
    fn consume(&self, spans: Vec<SpanRec>) {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let (ring, backends) = &*state;
        let mut per: Vec<Vec<SpanRec>> = (0..ring.backends.len()).map(|_| Vec::new()).collect();
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
            match backends.get(&ring.backends[i]) {
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
    use super::{Ring, backend_endpoint, resolved_name};

    fn endpoints(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:4317")).collect()
    }

    fn same(key: &str) -> String {
        key.to_owned()
    }

    fn id(n: u64) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
        b
    }

    /// Rows computed by `tests/data/go_ring.py`, an independent reading of
    /// the Go exporter's ring: for each endpoint set and trace id, the backend.
    #[test]
    fn routes_as_the_go_ring_does() {
        let table = include_str!("../../../tests/data/go_ring.txt");
        let mut sets: Vec<Vec<String>> = Vec::new();
        let mut rows = 0;
        for line in table.lines() {
            let mut words = line.split(' ');
            match words.next() {
                Some("set") => {
                    words.next();
                    sets.push(words.map(str::to_owned).collect());
                }
                Some(n) => {
                    let set = &sets[n.parse::<usize>().unwrap()];
                    let hex = words.next().unwrap();
                    let want = words.next().unwrap();
                    let mut tid = [0u8; 16];
                    for (i, b) in tid.iter_mut().enumerate() {
                        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
                    }
                    // Input order does not matter (Go's resolvers sort).
                    let mut reversed = set.clone();
                    reversed.reverse();
                    for input in [set.clone(), reversed] {
                        let ring = Ring::new(input, same);
                        let got = ring.route(&tid).map(|i| ring.backends[i].as_str());
                        assert_eq!(got, Some(want), "set {n}, trace {hex}");
                    }
                    rows += 1;
                }
                None => {}
            }
        }
        assert_eq!(rows, 84);
    }

    #[test]
    fn points_probe_forward_and_give_up_after_ten() {
        // Two copies of one endpoint: every point of the second collides
        // with the first's and probes one slot on, so the backend has 200.
        let twice = Ring::new(vec!["b:4317".into(), "b:4317".into()], same);
        assert_eq!(twice.points.len(), 200);
        assert_eq!(twice.backends, ["b:4317"]);
        // 300 backends crowd 36000 positions: some points find no slot.
        let crowded = Ring::new(
            (0..300).map(|i| format!("10.9.{}.{}:4317", i / 256, i % 256)).collect(),
            same,
        );
        assert!(crowded.points.len() < 30_000 && crowded.points.len() > 28_000);
        let mut positions: Vec<u32> = crowded.points.iter().map(|p| p.0).collect();
        positions.dedup();
        assert_eq!(positions.len(), crowded.points.len());
    }

    #[test]
    fn resolved_names_and_backends_follow_go() {
        let v4 = "10.0.0.7".parse().unwrap();
        let v6 = "fd00::7".parse().unwrap();
        assert_eq!(resolved_name(v4, None), "10.0.0.7");
        assert_eq!(resolved_name(v4, Some(4317)), "10.0.0.7:4317");
        assert_eq!(resolved_name(v6, Some(4317)), "[fd00::7]:4317");
        assert_eq!(backend_endpoint("10.0.0.7", true), "http://10.0.0.7:4317");
        assert_eq!(backend_endpoint("[fd00::7]", false), "https://[fd00::7]:4317");
        assert_eq!(backend_endpoint("gw:4318", true), "http://gw:4318");
        // "gw" and "gw:4317" are two ring keys but one backend, as in Go.
        let ring = Ring::new(vec!["gw".into(), "gw:4317".into()], |k| backend_endpoint(k, true));
        assert_eq!(ring.backends, ["http://gw:4317"]);
        assert_eq!(ring.points.len(), 200);
    }

    #[test]
    fn traces_spread_evenly_and_few_move_when_backends_change() {
        let three = Ring::new(endpoints(3), same);
        let four = Ring::new(endpoints(4), same);
        let two = Ring::new(endpoints(2), same);
        const N: u64 = 30_000;
        let mut counts = [0u64; 3];
        let (mut moved_add, mut moved_remove) = (0, 0);
        for n in 0..N {
            let t = id(n);
            let a = three.route(&t).unwrap();
            counts[a] += 1;
            let b = four.route(&t).unwrap();
            if three.backends[a] != four.backends[b] {
                moved_add += 1;
                // Only to the new backend.
                assert_eq!(four.backends[b], "10.0.0.3:4317");
            }
            let c = two.route(&t).unwrap();
            if three.backends[a] != two.backends[c] {
                moved_remove += 1;
                // Only traces of the removed backend.
                assert_eq!(three.backends[a], "10.0.0.2:4317");
            }
        }
        for c in counts {
            assert!((c as f64 / N as f64 - 1.0 / 3.0).abs() < 0.08, "uneven: {counts:?}");
        }
        // Adding a fourth backend moves about a quarter; removing one about a third.
        assert!((moved_add as f64 / N as f64) < 0.35, "{moved_add}");
        assert!((moved_remove as f64 / N as f64) < 0.42, "{moved_remove}");
        // The same trace always goes to the same backend.
        assert_eq!(three.route(&id(7)), Ring::new(endpoints(3), same).route(&id(7)));
        assert_eq!(Ring::new(Vec::new(), same).route(&id(1)), None);
    }
}
