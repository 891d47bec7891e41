//! `file`: OTLP JSON, one request per line, written by a thread of its own.

use super::{BoxFuture, ExportCounters, Exporter, ExporterDyn, WriterThread, request_body};
use crate::sidecar::component::{BuildContext, Component, ExporterSettings, Factory};
use crate::sidecar::config::{At, ConfigError, child, get_str};
use crate::sidecar::pipeline::Consumer;
use crate::sidecar::wire::SpanRec;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ExporterSettings> = Factory {
    component: Component {
        section: "exporters",
        name: "file",
        settings: &["path", "format"],
        ignored: &[
            "flush_interval",
            "rotation",
            "compression",
            "append",
            "group_by",
            "encoding",
        ],
    },
    parse: |at, _| Ok(Box::new(FileConfig::parse(at)?)),
};

/// `file` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileConfig {
    /// `path`: the file appended to.
    pub path: String,
}

impl FileConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        if let Some(f) = get_str(at, "format")?
            && f != "json"
        {
            return Err(ConfigError::new(
                child(at.path, "format"),
                format!("only json is supported, got {f:?}"),
            ));
        }
        let path = get_str(at, "path")?
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ConfigError::new(child(at.path, "path"), "the file exporter needs a path"))?;
        Ok(FileConfig { path: path.to_owned() })
    }
}

impl ExporterSettings for FileConfig {
    fn build(&self, ctx: &BuildContext, id: &str) -> Result<Arc<dyn ExporterDyn>, String> {
        let e: Arc<FileExporter> =
            FileExporter::new(ctx.runtime(), &self.path, ExportCounters::new(ctx.metrics(), id))?;
        Ok(e)
    }
}

/// `file`: one OTLP JSON request per line, written by a thread of its own.
pub(crate) struct FileExporter {
    writer: WriterThread,
    runtime: tokio::runtime::Handle,
}

/// Batches waiting for the file exporter's writer.
const FILE_QUEUE: usize = 1024;

impl FileExporter {
    pub(crate) fn new(
        runtime: &tokio::runtime::Handle,
        path: &str,
        counters: ExportCounters,
    ) -> Result<Arc<Self>, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {path:?} for writing: {e}"))?;
        let mut out = std::io::BufWriter::new(file);
        let path = path.to_owned();
        let writer = WriterThread::start("file-exporter", FILE_QUEUE, counters, move |batch| {
            let mut line = request_body(batch, true)?;
            line.push(b'\n');
            out.write_all(&line)
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write to {path:?}: {e}"))
        })?;
        Ok(Arc::new(FileExporter {
            writer,
            runtime: runtime.clone(),
        }))
    }
}

impl Consumer for FileExporter {
    fn consume(&self, spans: Vec<SpanRec>) {
        self.writer.send(spans);
    }
}

impl Exporter for FileExporter {
    fn shutdown(self: Arc<Self>, _deadline: Instant) -> BoxFuture {
        Box::pin(async move { self.writer.finish(&self.runtime).await })
    }

    fn gate(&self) -> Option<Arc<dyn crate::sidecar::component::Admission>> {
        Some(self.writer.room())
    }
}

#[cfg(test)]
mod tests {
    use crate::sidecar::testing::{context, exporter, metric, spans, trace};
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn writes_one_otlp_json_request_per_line_and_counts_spans() {
        let (ctx, metrics, _stop) = context();
        let dir = std::env::temp_dir().join(format!("file-exporter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spans.jsonl");
        let settings = exporter(
            &format!("{{file: {{path: {:?}}}, debug: {{}}}}", path.display()),
            "file",
        );
        let e = settings.build(&ctx, "file").unwrap();
        let live = metrics.live();
        e.consume(spans("a", &trace(1, 3), &live));
        e.consume(spans("b", &trace(2, 2), &live));
        e.clone().shutdown_dyn(Instant::now() + Duration::from_secs(5)).await;

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let spans_in = |line: &str| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .len()
        };
        assert_eq!((spans_in(lines[0]), spans_in(lines[1])), (3, 2));
        assert!(lines[1].contains("\"b\""), "the resource travels with its spans");
        assert_eq!(
            metric(&metrics, "otelcol_exporter_sent_spans_total{exporter=\"file\"}"),
            5.0
        );
        // Everything written is released from the memory account.
        assert_eq!(live.get(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_an_error_at_build() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        let (ctx, _, _stop) = context();
        let settings = exporter("{file: {path: /nonexistent/dir/spans.jsonl}, debug: {}}", "file");
        let e = settings.build(&ctx, "file").err().unwrap();
        assert!(e.contains("cannot open \"/nonexistent/dir/spans.jsonl\""), "{e}");
    }
}
