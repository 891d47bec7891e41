//! `health_check`: answers 200 while the collector takes data, 503 once it
//! is shutting down.

use crate::sidecar::component::{BoxFuture, BuildContext, Component, ExtensionSettings, Factory, Listening};
use crate::sidecar::config::{At, ConfigError, get_str, listen_endpoint};
use crate::sidecar::{Reply, receiver, text};

/// The table line.
pub(crate) const FACTORY: Factory<dyn ExtensionSettings> = Factory {
    component: Component {
        section: "extensions",
        name: "health_check",
        settings: &["endpoint", "path"],
        ignored: &["check_collector_pipeline", "response_body", "tls"],
    },
    parse: |at, _| Ok(Box::new(HealthCheckConfig::parse(at)?)),
};

/// `health_check` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthCheckConfig {
    /// `endpoint` (default `localhost:13133`).
    pub endpoint: String,
    /// `path` (default `/`).
    pub path: String,
}

impl HealthCheckConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        Ok(HealthCheckConfig {
            endpoint: listen_endpoint(at, "endpoint", "localhost:13133")?,
            path: get_str(at, "path")?.unwrap_or("/").to_owned(),
        })
    }
}

impl ExtensionSettings for HealthCheckConfig {
    fn start<'a>(&'a self, ctx: &'a BuildContext, id: &'a str) -> BoxFuture<'a, Result<Vec<Listening>, String>> {
        Box::pin(async move {
            let listener = receiver::bind(&self.endpoint, &format!("extensions.{id}.endpoint")).await?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let path = self.path.clone();
            let stopping = ctx.stopping();
            let task = ctx.spawn(receiver::serve_http(
                listener,
                move |req| {
                    let path = path.clone();
                    let stopping = *stopping.borrow();
                    async move { health(req, &path, stopping) }
                },
                ctx.ended(),
            ));
            tracing::info!(extension = %id, "health check on http://{addr}{}", self.path);
            Ok(vec![Listening {
                name: id.to_owned(),
                addr,
                task,
            }])
        })
    }
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
