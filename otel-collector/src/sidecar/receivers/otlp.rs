//! `otlp` receiver: OTLP/gRPC and OTLP/HTTP (protobuf and JSON) on the
//! ports and paths the Go Collector uses.

use crate::sidecar::component::{BoxFuture, BuildContext, Component, Factory, Listening, ReceiverSettings, parse_auth};
use crate::sidecar::config::{
    At, ConfigError, EMPTY, MIB, body, child, get, get_f64, get_str, get_u64, listen_endpoint, note_ignored,
};
use crate::sidecar::receiver::{self, Intake, TraceGrpc, TraceHttp};
use crate::sidecar::tls::{self, ServerTlsConfig, parse_server_tls};
use serde_json::Value;
use std::sync::Arc;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ReceiverSettings> = Factory {
    component: Component {
        section: "receivers",
        name: "otlp",
        settings: &["protocols"],
        ignored: &[],
    },
    parse: |at, warnings| Ok(Box::new(OtlpReceiverConfig::parse(at, warnings)?)),
};

/// An OTLP receiver's settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OtlpReceiverConfig {
    /// `protocols.grpc.endpoint`, when gRPC is on.
    pub grpc: Option<String>,
    /// Largest gRPC message accepted, bytes (`max_recv_msg_size_mib`, default 4).
    pub grpc_max_message_bytes: usize,
    /// `protocols.http.endpoint`, when HTTP is on.
    pub http: Option<String>,
    /// Largest HTTP body accepted, bytes (`max_request_body_size`, default 20 MiB).
    pub http_max_body_bytes: usize,
    /// The HTTP path for traces (`traces_url_path`, default `/v1/traces`).
    pub http_traces_path: String,
    /// `protocols.grpc.auth.authenticator`.
    pub grpc_auth: Option<String>,
    /// `protocols.grpc.tls`.
    pub(crate) grpc_tls: Option<ServerTlsConfig>,
    /// `protocols.http.tls`.
    pub(crate) http_tls: Option<ServerTlsConfig>,
    /// `protocols.http.auth.authenticator`.
    pub http_auth: Option<String>,
}

impl OtlpReceiverConfig {
    fn parse(at: At<'_>, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let ppath = child(at.path, "protocols");
        let protocols = At {
            value: get(at, "protocols").unwrap_or(&EMPTY),
            path: &ppath,
        };
        let Value::Object(m) = protocols.value else {
            return Err(protocols.err("the otlp receiver needs protocols: grpc and/or http"));
        };
        if m.is_empty() {
            return Err(protocols.err("the otlp receiver needs protocols: grpc and/or http"));
        }
        protocols.only_keys(&["grpc", "http"])?;
        let mut cfg = OtlpReceiverConfig {
            grpc: None,
            grpc_max_message_bytes: (4 * MIB) as usize,
            http: None,
            http_max_body_bytes: (20 * MIB) as usize,
            http_traces_path: "/v1/traces".to_owned(),
            grpc_auth: None,
            http_auth: None,
            grpc_tls: None,
            http_tls: None,
        };
        // Accepted on both protocols and not acted on; `cors` also, named apart
        // because over HTTP its warning says what it means for browsers.
        const IGNORED: &[&str] = &[
            "keepalive",
            "include_metadata",
            "read_buffer_size",
            "write_buffer_size",
            "max_concurrent_streams",
        ];
        const CORS: &str = "browsers' CORS preflight requests are not answered";
        if m.contains_key("grpc") {
            let path = child(&ppath, "grpc");
            let g = At {
                value: body(&m["grpc"]),
                path: &path,
            };
            g.map()?;
            let mut allowed = vec!["endpoint", "max_recv_msg_size_mib", "transport", "tls", "auth", "cors"];
            allowed.extend_from_slice(IGNORED);
            g.only_keys(&allowed)?;
            note_ignored(g, IGNORED, warnings);
            note_ignored(g, &["cors"], warnings);
            cfg.grpc_tls = parse_server_tls(g, warnings)?;
            cfg.grpc_auth = parse_auth(g)?;
            if let Some(t) = get_str(g, "transport")?
                && t != "tcp"
            {
                return Err(ConfigError::new(
                    child(&path, "transport"),
                    format!("only tcp is supported, got {t:?}"),
                ));
            }
            cfg.grpc = Some(listen_endpoint(g, "endpoint", "localhost:4317")?);
            if let Some(mib) = get_f64(g, "max_recv_msg_size_mib")? {
                if !(mib > 0.0 && mib <= 1024.0) {
                    return Err(ConfigError::new(
                        child(&path, "max_recv_msg_size_mib"),
                        "must be between 0 and 1024",
                    ));
                }
                cfg.grpc_max_message_bytes = (mib * MIB as f64) as usize;
            }
        }
        if m.contains_key("http") {
            let path = child(&ppath, "http");
            let h = At {
                value: body(&m["http"]),
                path: &path,
            };
            h.map()?;
            let mut allowed = vec![
                "endpoint",
                "max_request_body_size",
                "traces_url_path",
                "metrics_url_path",
                "logs_url_path",
                "tls",
                "auth",
                "cors",
            ];
            allowed.extend_from_slice(IGNORED);
            h.only_keys(&allowed)?;
            if get(h, "cors").is_some() {
                warnings.push(format!("{}.cors is ignored by this collector: {CORS}", path));
            }
            note_ignored(h, IGNORED, warnings);
            for key in ["metrics_url_path", "logs_url_path"] {
                if get(h, key).is_some() {
                    warnings.push(format!(
                        "{} is ignored by this collector: it takes traces only",
                        child(&path, key)
                    ));
                }
            }
            cfg.http_tls = parse_server_tls(h, warnings)?;
            cfg.http_auth = parse_auth(h)?;
            cfg.http = Some(listen_endpoint(h, "endpoint", "localhost:4318")?);
            if let Some(n) = get_u64(h, "max_request_body_size")? {
                cfg.http_max_body_bytes = n as usize;
            }
            if let Some(p) = get_str(h, "traces_url_path")? {
                if !p.starts_with('/') {
                    return Err(ConfigError::new(child(&path, "traces_url_path"), "must start with /"));
                }
                cfg.http_traces_path = p.to_owned();
            }
        }
        Ok(cfg)
    }
}

impl ReceiverSettings for OtlpReceiverConfig {
    fn auth_refs(&self) -> Vec<(&'static str, &str)> {
        let grpc = self
            .grpc_auth
            .as_deref()
            .map(|a| ("protocols.grpc.auth.authenticator", a));
        let http = self
            .http_auth
            .as_deref()
            .map(|a| ("protocols.http.auth.authenticator", a));
        grpc.into_iter().chain(http).collect()
    }

    fn start<'a>(
        &'a self,
        ctx: &'a BuildContext,
        id: &'a str,
        intake: &'a (dyn Fn(&str) -> Arc<Intake> + Send + Sync),
    ) -> BoxFuture<'a, Result<Vec<Listening>, String>> {
        Box::pin(async move {
            let mut started = Vec::new();
            if let Some(endpoint) = &self.grpc {
                let listener = receiver::bind(endpoint, &format!("receivers.{id}.protocols.grpc.endpoint")).await?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                let auth = self.grpc_auth.as_deref().map(|a| ctx.authenticator(a)).transpose()?;
                let service = TraceGrpc::new(intake("grpc"), self.grpc_max_message_bytes, auth);
                let tls = self.grpc_tls.as_ref().map(|t| tls::acceptor(t, &[b"h2"])).transpose()?;
                let stop = ctx.stopping();
                let name = format!("{id}/grpc");
                let task = {
                    let name = name.clone();
                    ctx.spawn(async move {
                        if let Err(e) = receiver::serve_grpc(listener, service, tls, stop).await {
                            tracing::error!(receiver = %name, "gRPC server stopped: {e}");
                        }
                    })
                };
                tracing::info!(receiver = %name, "OTLP/gRPC listening on {addr}");
                started.push(Listening { name, addr, task });
            }
            if let Some(endpoint) = &self.http {
                let listener = receiver::bind(endpoint, &format!("receivers.{id}.protocols.http.endpoint")).await?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                let auth = self.http_auth.as_deref().map(|a| ctx.authenticator(a)).transpose()?;
                let handler = Arc::new(TraceHttp {
                    auth,
                    intake: intake("http"),
                    max_body: self.http_max_body_bytes,
                    path: self.http_traces_path.clone(),
                });
                let tls = self
                    .http_tls
                    .as_ref()
                    .map(|t| tls::acceptor(t, &[b"http/1.1"]))
                    .transpose()?;
                let task = ctx.spawn(receiver::serve_http_tls(
                    listener,
                    tls,
                    move |req| {
                        let h = handler.clone();
                        async move { h.handle(req).await }
                    },
                    ctx.stopping(),
                ));
                tracing::info!(receiver = %id, "OTLP/HTTP listening on {addr}");
                started.push(Listening {
                    name: format!("{id}/http"),
                    addr,
                    task,
                });
            }
            Ok(started)
        })
    }
}
