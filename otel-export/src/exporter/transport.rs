//! The exporter's own I/O thread: a current-thread Tokio runtime that runs
//! every request, retry and backoff, so exporting works the same whatever
//! runtime (or none) the caller has, and never sleeps on a caller's thread.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running transport thread.
#[derive(Debug)]
pub(crate) struct Transport {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Transport {
    /// Starts the thread.
    pub(crate) fn start() -> std::io::Result<Transport> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("otel-otlp-transport".into())
            .spawn(move || {
                // Requests made here are not traced (their client libraries'
                // spans would be exported, and traced again).
                let _quiet = opentelemetry::Context::enter_telemetry_suppressed_scope();
                // Runs spawned requests until told to stop (or the exporter is gone).
                let _ = runtime.block_on(stopped);
                // In-flight requests are cancelled with the runtime, here on this thread.
                drop(runtime);
                let _ = done_tx.send(());
            })?;
        Ok(Transport {
            handle,
            stop: Some(stop),
            done,
        })
    }

    /// Runs `task` on the transport thread; dropping the returned future cancels it.
    pub(crate) fn run<F>(&self, task: F) -> AbortOnDrop<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        AbortOnDrop(self.handle.spawn(task))
    }

    /// Stops the thread (requests still running are cancelled); waits up to
    /// `timeout` for it to end.
    pub(crate) fn stop(&mut self, timeout: Duration) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.done.recv_timeout(timeout).is_ok()
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A task handle that cancels the task when dropped, so a caller's timeout
/// really ends the request.
#[derive(Debug)]
pub(crate) struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
