//! Forwards one session's events to the LSP client: diagnostics, status, program output,
//! messages and work-done progress.
//!
//! A std thread blocks on the session's crossbeam channel and hands each event to a tokio task,
//! which sends it to the client in order. Progress goes through a second task, because creating
//! a progress token waits for the client's reply and must not hold up diagnostics.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hot_session::{OutputStream, Progress, SessionEvent, Severity};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower_lsp_server::ls_types::notification::Notification;
use tower_lsp_server::ls_types::{
    notification, MessageType, NumberOrString, ProgressParams, ProgressParamsValue, Uri,
    WorkDoneProgress, WorkDoneProgressBegin, WorkDoneProgressEnd, WorkDoneProgressReport,
};
use tower_lsp_server::Client;

use super::convert::{self, LineCache};

/// `hot-lsp/status`: the status object of DESIGN.md 3.3.
pub enum StatusNotification {}

impl Notification for StatusNotification {
    type Params = Value;
    const METHOD: &'static str = "hot-lsp/status";
}

/// `hot-lsp/output`: `{"workspace", "stream", "text"}`.
pub enum OutputNotification {}

impl Notification for OutputNotification {
    type Params = Value;
    const METHOD: &'static str = "hot-lsp/output";
}

/// How long to wait for the client to acknowledge a new progress token before giving up on
/// that progress (the swap itself goes on regardless).
const PROGRESS_CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Progress tokens are unique for the whole server process.
static NEXT_PROGRESS_TOKEN: AtomicU64 = AtomicU64::new(1);

/// Starts forwarding the events of the session of folder `workspace` (its URI) at `root`.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    client: Client,
    workspace: String,
    root: PathBuf,
    events: crossbeam_channel::Receiver<SessionEvent>,
    progress_supported: bool,
) {
    let (forward_tx, forward_rx) = mpsc::unbounded_channel();
    let progress_tx = if progress_supported {
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        runtime.spawn(forward_progress(client.clone(), progress_rx));
        Some(progress_tx)
    } else {
        None
    };
    let forwarder = Forwarder {
        client,
        workspace: workspace.clone(),
        root,
        progress: progress_tx,
        files_with_diagnostics: HashSet::new(),
        information_shown: HashSet::new(),
    };
    runtime.spawn(forwarder.run(forward_rx));
    let receiver = std::thread::Builder::new()
        .name(format!("hot-lsp bridge {workspace}"))
        .spawn(move || {
            // The loop ends when the session's worker is gone (its sender dropped) or when the
            // forwarding task has stopped (the server is exiting).
            for event in events {
                if forward_tx.send(event).is_err() {
                    break;
                }
            }
        });
    if let Err(error) = receiver {
        tracing::error!(%error, %workspace, "cannot spawn the event bridge thread");
    }
}

struct Forwarder {
    client: Client,
    workspace: String,
    root: PathBuf,
    progress: Option<mpsc::UnboundedSender<Progress>>,
    /// Files whose last published diagnostics were not empty: cleared when the session ends.
    files_with_diagnostics: HashSet<Uri>,
    /// Information messages already shown once.
    information_shown: HashSet<String>,
}

impl Forwarder {
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<SessionEvent>) {
        // An event taken from the channel while coalescing output, to forward next.
        let mut next: Option<SessionEvent> = None;
        loop {
            let event = match next.take() {
                Some(event) => event,
                None => match events.recv().await {
                    Some(event) => event,
                    None => break,
                },
            };
            let event = match event {
                SessionEvent::Output { stream, text } => {
                    let (text, following) = coalesce_output(stream, text, &mut events);
                    next = following;
                    SessionEvent::Output { stream, text }
                }
                other => other,
            };
            self.forward(event).await;
        }
        // The session is gone (its folder was closed): its diagnostics are stale now.
        for uri in std::mem::take(&mut self.files_with_diagnostics) {
            self.client.publish_diagnostics(uri, Vec::new(), None).await;
        }
    }

    async fn forward(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Diagnostics { file, diagnostics } => {
                self.publish_diagnostics(file, diagnostics).await;
            }
            SessionEvent::Status(status) => {
                let params = convert::status_json(&self.workspace, &self.root, &status);
                self.client
                    .send_notification::<StatusNotification>(params)
                    .await;
            }
            SessionEvent::Output { stream, text } => {
                let stream = match stream {
                    OutputStream::Stdout => "stdout",
                    OutputStream::Stderr => "stderr",
                };
                let params = json!({"workspace": self.workspace, "stream": stream, "text": text});
                self.client
                    .send_notification::<OutputNotification>(params)
                    .await;
            }
            SessionEvent::Message { severity, text } => {
                // A notice repeats on every save in a workspace that did not opt in; a popup
                // each time would be noise, so a repeated notice only goes to the log.
                let repeated = severity == Severity::Information
                    && !self.information_shown.insert(text.clone());
                if repeated {
                    self.client.log_message(MessageType::INFO, text).await;
                } else {
                    self.client
                        .show_message(convert::message_type(severity), text)
                        .await;
                }
            }
            SessionEvent::Exited { code, signal } => {
                let kind = if code == Some(0) {
                    MessageType::INFO
                } else {
                    MessageType::WARNING
                };
                let text = format!("hot-lsp: {}", convert::exit_description(code, signal));
                self.client.show_message(kind, text).await;
            }
            SessionEvent::Launched { pid } => {
                self.client
                    .log_message(MessageType::INFO, format!("hot-lsp: launched pid {pid}"))
                    .await;
            }
            SessionEvent::Swap(summary) => {
                let text = format!(
                    "hot-lsp: swap #{} of {}: swapped [{}], added [{}], {} unchanged \
                     (compile {} µs, link {} µs, swap {} µs)",
                    summary.seq,
                    summary.file.display(),
                    convert::shown_names(&summary.swapped).join(", "),
                    convert::shown_names(&summary.added).join(", "),
                    summary.skipped,
                    summary.micros.compile,
                    summary.micros.link,
                    summary.micros.swap,
                );
                self.client.log_message(MessageType::LOG, text).await;
            }
            SessionEvent::Unchanged { file, micros } => {
                // The status notification says it too (its message); the log keeps a line
                // per save like it does for swaps.
                let text = format!(
                    "hot-lsp: {}: no function changed (compile {} µs, link {} µs)",
                    file.display(),
                    micros.compile,
                    micros.link,
                );
                self.client.log_message(MessageType::LOG, text).await;
            }
            SessionEvent::Progress(progress) => {
                if let Some(progress_tx) = &self.progress {
                    let _ = progress_tx.send(progress);
                }
            }
        }
    }

    async fn publish_diagnostics(
        &mut self,
        file: PathBuf,
        diagnostics: Vec<hot_session::Diagnostic>,
    ) {
        let file = if file.is_absolute() {
            file
        } else {
            self.root.join(file)
        };
        let Some(uri) = convert::path_to_uri(&self.root, &file) else {
            tracing::warn!(file = %file.display(), "diagnostics for a file without a URI");
            return;
        };
        let mut lines = LineCache::default();
        let converted: Vec<_> = diagnostics
            .iter()
            .map(|diagnostic| {
                let mut diagnostic = diagnostic.clone();
                if !diagnostic.file.is_absolute() {
                    diagnostic.file = self.root.join(&diagnostic.file);
                }
                convert::diagnostic(&mut lines, &diagnostic)
            })
            .collect();
        if converted.is_empty() {
            self.files_with_diagnostics.remove(&uri);
        } else {
            self.files_with_diagnostics.insert(uri.clone());
        }
        self.client.publish_diagnostics(uri, converted, None).await;
    }
}

/// At most this much program output goes into one `hot-lsp/output` notification.
const MAX_OUTPUT_BATCH: usize = 64 * 1024;

/// Appends the output lines of `stream` that are already waiting in the channel to `text`, so
/// that a program printing in a tight loop costs the client a few large notifications instead
/// of thousands of small ones. Returns the text and the first event that did not fit.
fn coalesce_output(
    stream: OutputStream,
    mut text: String,
    events: &mut mpsc::UnboundedReceiver<SessionEvent>,
) -> (String, Option<SessionEvent>) {
    while text.len() < MAX_OUTPUT_BATCH {
        match events.try_recv() {
            Ok(SessionEvent::Output {
                stream: same,
                text: more,
            }) if same == stream => text.push_str(&more),
            Ok(other) => return (text, Some(other)),
            Err(_) => break,
        }
    }
    (text, None)
}

/// Sends `$/progress` for one session's begin/report/end sequence, on tokens it creates with
/// `window/workDoneProgress/create`.
async fn forward_progress(client: Client, mut progress: mpsc::UnboundedReceiver<Progress>) {
    // The token of the progress in flight, if the client accepted it.
    let mut current: Option<NumberOrString> = None;
    while let Some(event) = progress.recv().await {
        let (token, value) = match event {
            Progress::Begin { title } => {
                let sequence = NEXT_PROGRESS_TOKEN.fetch_add(1, Ordering::Relaxed);
                let token = NumberOrString::String(format!("hot-lsp/{sequence}"));
                let created = tokio::time::timeout(
                    PROGRESS_CREATE_TIMEOUT,
                    client.create_work_done_progress(token.clone()),
                )
                .await;
                current = match created {
                    Ok(Ok(())) => Some(token.clone()),
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "the client refused a progress token");
                        None
                    }
                    Err(_) => {
                        tracing::debug!("the client did not acknowledge a progress token");
                        None
                    }
                };
                let begin = WorkDoneProgress::Begin(WorkDoneProgressBegin {
                    title,
                    ..WorkDoneProgressBegin::default()
                });
                (current.clone(), begin)
            }
            Progress::Report { phase, message } => {
                let phase = match phase {
                    hot_session::Phase::Compile => "compile",
                    hot_session::Phase::Link => "link",
                    hot_session::Phase::Swap => "swap",
                };
                let report = WorkDoneProgress::Report(WorkDoneProgressReport {
                    message: Some(format!("{phase}: {message}")),
                    ..WorkDoneProgressReport::default()
                });
                (current.clone(), report)
            }
            Progress::End { message } => {
                let end = WorkDoneProgress::End(WorkDoneProgressEnd {
                    message: Some(message),
                });
                (current.take(), end)
            }
        };
        if let Some(token) = token {
            let params = ProgressParams {
                token,
                value: ProgressParamsValue::WorkDone(value),
            };
            client
                .send_notification::<notification::Progress>(params)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(stream: OutputStream, text: &str) -> SessionEvent {
        SessionEvent::Output {
            stream,
            text: text.to_owned(),
        }
    }

    #[test]
    fn waiting_output_of_one_stream_is_sent_as_one_notification() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for event in [
            output(OutputStream::Stdout, "b\n"),
            output(OutputStream::Stdout, "c\n"),
            output(OutputStream::Stderr, "oops\n"),
            output(OutputStream::Stdout, "d\n"),
        ] {
            tx.send(event).unwrap();
        }
        let (text, next) = coalesce_output(OutputStream::Stdout, "a\n".to_owned(), &mut rx);
        assert_eq!(text, "a\nb\nc\n");
        assert_eq!(next, Some(output(OutputStream::Stderr, "oops\n")));
        let (text, next) = coalesce_output(OutputStream::Stdout, String::new(), &mut rx);
        assert_eq!((text.as_str(), next), ("d\n", None));
    }
}
