//! `debug`: kept traces as trees on standard output, and the bottleneck
//! summary of the tail samplers' traces.

use super::{BoxFuture, ExportCounters, Exporter, ExporterDyn, WriterThread};
use crate::lock;
use crate::sidecar::bottlenecks::BottleneckReport;
use crate::sidecar::component::{BuildContext, Component, ExporterSettings, Factory};
use crate::sidecar::config::{At, ConfigError, child, get_duration, get_str};
use crate::sidecar::pipeline::Consumer;
use crate::sidecar::wire::{SpanRec, SpanView};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The table line.
pub(crate) const FACTORY: Factory<dyn ExporterSettings> = Factory {
    component: Component {
        section: "exporters",
        name: "debug",
        settings: &["verbosity", "summary_interval"],
        ignored: &["sampling_initial", "sampling_thereafter", "use_internal_logger"],
    },
    parse: |at, _| Ok(Box::new(DebugConfig::parse(at)?)),
};

/// How often the `debug` exporter prints the bottleneck summary by default.
pub(crate) const DEFAULT_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// `verbosity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Verbosity {
    /// One line per batch.
    Basic,
    /// Trees (the default).
    #[default]
    Normal,
    /// Trees with attributes.
    Detailed,
}

/// `debug` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DebugConfig {
    /// `verbosity`.
    pub verbosity: Verbosity,
    /// `summary_interval` (ours, not Go's): how often the bottleneck summary
    /// of the tail samplers' traces is printed (and once at shutdown); `None`
    /// (`0s`) for never. Defaults to 60 s.
    pub summary_interval: Option<Duration>,
}

impl DebugConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        let verbosity = match get_str(at, "verbosity")? {
            None | Some("normal") => Verbosity::Normal,
            Some("basic") => Verbosity::Basic,
            Some("detailed") => Verbosity::Detailed,
            Some(other) => {
                return Err(ConfigError::new(
                    child(at.path, "verbosity"),
                    format!("must be basic, normal or detailed, got {other:?}"),
                ));
            }
        };
        let summary_interval = match get_duration(at, "summary_interval")? {
            None => Some(DEFAULT_SUMMARY_INTERVAL),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };
        Ok(DebugConfig {
            verbosity,
            summary_interval,
        })
    }
}

impl ExporterSettings for DebugConfig {
    fn build(&self, ctx: &BuildContext, id: &str) -> Result<Arc<dyn ExporterDyn>, String> {
        let summary = ctx.report().cloned().zip(self.summary_interval);
        let e: Arc<DebugExporter> = DebugExporter::new(
            ctx.runtime(),
            self.verbosity,
            ExportCounters::new(ctx.metrics(), id),
            summary,
        )?;
        Ok(e)
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
    report: Option<Arc<BottleneckReport>>,
    writer: WriterThread,
    runtime: tokio::runtime::Handle,
    /// Dropped to stop the summary thread.
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

/// Batches waiting for the debug exporter's writer.
const DEBUG_QUEUE: usize = 256;

impl DebugExporter {
    pub(crate) fn new(
        runtime: &tokio::runtime::Handle,
        verbosity: Verbosity,
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
        let writer = WriterThread::start("debug-exporter", DEBUG_QUEUE, counters, move |spans| {
            let text = match verbosity {
                Verbosity::Basic => format!("debug exporter: {} spans\n", spans.len()),
                Verbosity::Normal => render_trees(spans, false),
                Verbosity::Detailed => render_trees(spans, true),
            };
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("cannot write to standard output: {e}"))
        })?;
        Ok(Arc::new(DebugExporter {
            report,
            writer,
            runtime: runtime.clone(),
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
        self.writer.send(spans);
    }
}

impl Exporter for DebugExporter {
    fn shutdown(self: Arc<Self>, deadline: Instant) -> BoxFuture {
        Box::pin(async move {
            // The writer prints what is queued, then ends.
            self.writer.finish(&self.runtime).await;
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

#[cfg(test)]
mod tests {
    use super::render_trees;
    use crate::sidecar::testing::{context, exporter, metric, spans, trace};
    use crate::sidecar::wire::LiveBytes;
    use std::time::{Duration, Instant};

    #[test]
    fn trees_name_service_operation_duration_and_error() {
        let mut list = trace(1, 3);
        list[0].ms = 40;
        list[2].error = true;
        let text = render_trees(&spans("checkout", &list, &LiveBytes::new()), true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(&format!("trace {:032x} (3 spans, 40", 1)),
            "{text}"
        );
        assert!(lines[0].ends_with("1 with errors)"), "{text}");
        assert!(text.contains("[checkout] op-1"), "{text}");
        assert!(text.contains("[checkout] op-3  ERROR: boom"), "{text}");
        assert!(
            text.contains("user.email = \"u@example.com\""),
            "detailed shows attributes:\n{text}"
        );
        let plain = render_trees(&spans("checkout", &list, &LiveBytes::new()), false);
        assert!(!plain.contains("user.email"));
    }

    #[tokio::test]
    async fn batches_are_written_off_the_callers_thread_and_counted() {
        let (ctx, metrics, _stop) = context();
        let settings = exporter("{debug: {verbosity: basic, summary_interval: 0s}}", "debug");
        let e = settings.build(&ctx, "debug").unwrap();
        e.consume(spans("a", &trace(1, 3), &metrics.live()));
        e.clone().shutdown_dyn(Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(
            metric(&metrics, "otelcol_exporter_sent_spans_total{exporter=\"debug\"}"),
            3.0
        );
        // After shutdown, spans are refused and counted, not lost silently.
        e.consume(spans("a", &trace(2, 2), &metrics.live()));
        assert_eq!(
            metric(
                &metrics,
                "otelcol_exporter_enqueue_failed_spans_total{exporter=\"debug\"}"
            ),
            2.0
        );
    }
}
