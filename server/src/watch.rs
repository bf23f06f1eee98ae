//! `hot-lsp watch [DIR] [--json]`: the swap pipeline without an editor. Launches the
//! workspace's program, watches its C/C++ sources (and its assembly sources, which the session
//! answers without swapping), sends every settled change to the session and prints the
//! session's events as human-readable lines or JSON lines.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use hot_session::{
    Command, Diagnostic, OutputStream, Session, SessionEvent, SessionOptions, Severity, State,
};
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::{json, Value};

/// A file counts as saved once it has not changed for this long: a truncate-then-write or a
/// write-by-rename is then seen once, with its final content.
const QUIET_PERIOD: Duration = Duration::from_millis(100);

/// How long a file written in place may stay quiet while its writer still has it open
/// (written to, not closed since): a script or a tool writing a file in parts, pausing
/// between them, is waited for rather than its half-written text compiled. A writer that
/// keeps the file open longer than this has its text taken as it is then.
const OPEN_WRITER_PERIOD: Duration = Duration::from_secs(3);

/// What a file-system event says of a file's writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Written in place (`IN_MODIFY`): its writer may not be done.
    Written,
    /// A writer closed it (`IN_CLOSE_WRITE`), or it was replaced whole (created, renamed
    /// into place) or its metadata changed: its text is complete.
    Complete,
}

/// Extensions of the C, C++ and Objective-C sources and headers hot-lsp compiles, and of
/// the assembly sources it answers without swapping (`s` is also `.S`: compared without
/// case).
const SOURCE_EXTENSIONS: [&str; 13] = [
    "c", "cc", "cpp", "cxx", "h", "hh", "hpp", "hxx", "m", "mm", "s", "sx", "asm",
];

/// Whether a changed path under `root` is a source worth compiling: a source or header
/// extension, and not inside `target/` or a hidden directory (`.git`, editor state), nor a
/// hidden file (editor swap and lock files).
pub fn is_watched_source(root: &Path, path: &Path) -> bool {
    let has_source_extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            SOURCE_EXTENSIONS
                .iter()
                .any(|known| extension.eq_ignore_ascii_case(known))
        });
    if !has_source_extension {
        return false;
    }
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    relative.components().all(|component| match component {
        Component::Normal(name) => {
            let name = name.to_string_lossy();
            !name.starts_with('.') && name != "target"
        }
        _ => false,
    })
}

/// What a file-system event says of a file's content, if it can mean that it changed.
fn content_change(kind: &EventKind) -> Option<Change> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Change::Complete),
        EventKind::Access(_) => None,
        EventKind::Modify(ModifyKind::Data(_)) => Some(Change::Written),
        _ => Some(Change::Complete),
    }
}

/// Runs the watcher until SIGINT or SIGTERM. Returns the process exit code.
pub fn run(dir: Option<PathBuf>, json: bool) -> anyhow::Result<i32> {
    let dir = match dir {
        Some(dir) => dir,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let root = match dir.canonicalize() {
        Ok(root) => root,
        Err(error) => {
            eprintln!("hot-lsp watch: cannot open {}: {error}", dir.display());
            return Ok(2);
        }
    };
    if !root.join("hot-lsp.toml").is_file() {
        eprintln!(
            "hot-lsp watch: {} has no hot-lsp.toml, so hot-lsp will not build or run anything \
             there.\nCreate one with at least:\n\n[program]\npath = \"build/app\"\n\n[compile]\n\
             command = \"cc -O0 -g -c {{file}} -o {{output}}\"",
            root.display()
        );
        return Ok(2);
    }

    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let session = Session::start(
        SessionOptions {
            root: root.clone(),
            client_config: None,
            auto_launch: true,
        },
        events_tx,
    );

    let (changes_tx, changes_rx) = crossbeam_channel::unbounded::<(Change, Vec<PathBuf>)>();
    let mut watcher =
        notify::recommended_watcher(move |result: notify::Result<notify::Event>| match result {
            Ok(event) => {
                if let Some(change) = content_change(&event.kind) {
                    let _ = changes_tx.send((change, event.paths));
                }
            }
            Err(error) => tracing::warn!(%error, "file watcher error"),
        })
        .context("cannot create the file watcher")?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", root.display()))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    let (printer_done_tx, printer_done_rx) = tokio::sync::oneshot::channel::<()>();
    let printer_root = root.clone();
    let printer = std::thread::Builder::new()
        .name("hot-lsp watch printer".to_owned())
        .spawn(move || {
            let mut printer = Printer::new(printer_root, json);
            for event in events_rx {
                printer.print(event);
            }
            let _ = printer_done_tx.send(());
        })
        .context("cannot spawn the event printer")?;

    let code = std::thread::scope(|scope| {
        let debouncer_root = root.clone();
        let session_ref = &session;
        scope.spawn(move || debounce(&debouncer_root, &changes_rx, session_ref));
        let code = runtime.block_on(async {
            tokio::select! {
                signal = crate::signals::terminated() => {
                    tracing::info!(signal, "stopping");
                    0
                }
                _ = printer_done_rx => {
                    eprintln!("hot-lsp watch: the session stopped unexpectedly");
                    1
                }
            }
        });
        // Dropping the watcher closes the change channel, which ends the debouncer.
        drop(watcher);
        code
    });
    // Kills a launched program (detaches from an attached one) before the process exits.
    session.shutdown();
    if printer.join().is_err() {
        tracing::error!("the event printer panicked");
    }
    Ok(code)
}

/// Sends `Command::Saved` for each source file once it has been quiet for `QUIET_PERIOD`
/// with its writer done (closed, or the file replaced whole), or for `OPEN_WRITER_PERIOD`
/// while a writer still holds it open.
fn debounce(root: &Path, changes: &Receiver<(Change, Vec<PathBuf>)>, session: &Session) {
    // Each changed file: when it is due, and whether a writer may still be writing it.
    let mut due_at: HashMap<PathBuf, (Instant, Change)> = HashMap::new();
    loop {
        let next_due = due_at.values().map(|&(deadline, _)| deadline).min();
        let received = match next_due {
            Some(deadline) => {
                changes.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            }
            None => changes.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok((change, paths)) => {
                let now = Instant::now();
                for path in paths {
                    if !is_watched_source(root, &path) {
                        continue;
                    }
                    let period = match change {
                        Change::Written => OPEN_WRITER_PERIOD,
                        Change::Complete => QUIET_PERIOD,
                    };
                    due_at.insert(path, (now + period, change));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let settled: Vec<PathBuf> = due_at
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(path, _)| path.clone())
            .collect();
        for path in settled {
            let Some((_, change)) = due_at.remove(&path) else {
                continue;
            };
            if change == Change::Written {
                tracing::info!(
                    file = %path.display(),
                    "still open for writing after {OPEN_WRITER_PERIOD:?} without a change: taken as saved"
                );
            }
            // A file that was deleted (or renamed away for good) has nothing to compile.
            if path.is_file() {
                tracing::debug!(file = %path.display(), "changed");
                session.send(Command::Saved(path));
            }
        }
    }
}

/// Prints session events, as human-readable lines or one JSON object per line.
struct Printer {
    root: PathBuf,
    json: bool,
    last_state: Option<State>,
    /// Files with diagnostics on screen, so that a clean compile can say they are fixed.
    files_with_diagnostics: HashSet<PathBuf>,
    /// The last status: a failure's status (with its code) comes right before its message.
    last_status: Option<hot_session::Status>,
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Information => "information",
    }
}

impl Printer {
    fn new(root: PathBuf, json: bool) -> Printer {
        Printer {
            root,
            json,
            last_state: None,
            files_with_diagnostics: HashSet::new(),
            last_status: None,
        }
    }

    fn absolute(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }

    /// A path as shown to a human: relative to the workspace when inside it.
    fn shown(&self, path: &Path) -> String {
        let absolute = self.absolute(path);
        absolute
            .strip_prefix(&self.root)
            .unwrap_or(&absolute)
            .display()
            .to_string()
    }

    fn line(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (the reader went away) leaves nothing useful to do with the text.
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    fn event(&self, value: &Value) {
        self.line(&value.to_string());
    }

    fn print(&mut self, event: SessionEvent) {
        if let SessionEvent::Status(status) = &event {
            self.last_status = Some(status.clone());
        }
        if self.json {
            self.print_json(event);
        } else {
            self.print_human(event);
        }
    }

    fn diagnostic_json(&self, diagnostic: &Diagnostic) -> Value {
        json!({
            "event": "diagnostic",
            "file": self.absolute(&diagnostic.file).to_string_lossy(),
            "line": diagnostic.line,
            "column": diagnostic.column,
            "severity": severity_name(diagnostic.severity),
            "code": diagnostic.code,
            "message": diagnostic.message,
        })
    }

    fn print_json(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Launched { pid } => self.event(&json!({"event": "launched", "pid": pid})),
            SessionEvent::Swap(summary) => self.event(&json!({
                "event": "swap",
                "seq": summary.seq,
                "file": self.absolute(&summary.file).to_string_lossy(),
                "files": summary
                    .files
                    .iter()
                    .map(|f| self.absolute(f).to_string_lossy().into_owned())
                    .collect::<Vec<_>>(),
                "swapped": summary.swapped,
                "added": summary.added,
                // What a person reads; the mangled names above are what tools match on.
                "swapped_display": crate::lsp::convert::shown_names(&summary.swapped),
                "added_display": crate::lsp::convert::shown_names(&summary.added),
                "updated": summary.updated,
                "updated_display": crate::lsp::convert::shown_names(&summary.updated),
                "skipped": summary.skipped,
                "micros": {
                    "compile": summary.micros.compile,
                    "link": summary.micros.link,
                    "swap": summary.micros.swap,
                },
            })),
            SessionEvent::Unchanged { file, micros } => self.event(&json!({
                "event": "unchanged",
                "file": self.absolute(&file).to_string_lossy(),
                "micros": {"compile": micros.compile, "link": micros.link},
            })),
            SessionEvent::Diagnostics { file, diagnostics } => {
                let file = self.absolute(&file);
                if diagnostics.is_empty() {
                    // A file whose errors a later save fixed: without this line a script
                    // reading the events would still think it broken.
                    if self.files_with_diagnostics.remove(&file) {
                        self.event(&json!({"event": "fixed", "file": file.to_string_lossy()}));
                    }
                    return;
                }
                self.files_with_diagnostics.insert(file);
                for diagnostic in &diagnostics {
                    self.event(&self.diagnostic_json(diagnostic));
                }
            }
            SessionEvent::Exited { code, signal } => {
                self.event(&json!({"event": "exited", "code": code, "signal": signal}));
            }
            SessionEvent::Message {
                severity: Severity::Error,
                text,
            } => {
                // The stable code of the failure (`launch-failed`, `permission-denied`...),
                // from the status the session sets with the same message.
                let code = self
                    .last_status
                    .as_ref()
                    .filter(|s| s.message.as_deref() == Some(text.as_str()))
                    .and_then(|s| s.code.clone());
                self.event(&json!({"event": "error", "message": text, "code": code}));
            }
            // Warnings and information (an -O2 build without -fno-ipa-ra, a saved header, an
            // undo) matter to a script as much as errors do.
            SessionEvent::Message { severity, text } => self.event(&json!({
                "event": "message",
                "severity": severity_name(severity),
                "text": text,
            })),
            SessionEvent::Output { stream, text } => {
                let stream = match stream {
                    OutputStream::Stdout => "stdout",
                    OutputStream::Stderr => "stderr",
                };
                self.event(&json!({"event": "output", "stream": stream, "text": text}));
            }
            SessionEvent::Status(_) | SessionEvent::Progress(_) => {}
        }
    }

    fn print_human(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Launched { pid } => self.line(&format!("[hot-lsp] launched pid {pid}")),
            SessionEvent::Swap(summary) => {
                let mut text = format!(
                    "[hot-lsp] swap #{} {}: ",
                    summary.seq,
                    self.shown(&summary.file)
                );
                let shown = crate::lsp::convert::shown_names;
                if summary.swapped.is_empty() && summary.added.is_empty() {
                    text.push_str("no function changed");
                } else {
                    text.push_str(&format!("swapped [{}]", shown(&summary.swapped).join(", ")));
                    if !summary.added.is_empty() {
                        text.push_str(&format!(", added [{}]", shown(&summary.added).join(", ")));
                    }
                }
                if !summary.updated.is_empty() {
                    text.push_str(&format!(
                        ", updated [{}] in place",
                        shown(&summary.updated).join(", ")
                    ));
                }
                text.push_str(&format!(
                    ", {} unchanged (compile {:.1} ms, link {:.1} ms, swap {:.1} ms)",
                    summary.skipped,
                    summary.micros.compile as f64 / 1000.0,
                    summary.micros.link as f64 / 1000.0,
                    summary.micros.swap as f64 / 1000.0,
                ));
                self.line(&text);
            }
            SessionEvent::Unchanged { file, micros } => self.line(&format!(
                "[hot-lsp] {}: no function changed (compile {:.1} ms, link {:.1} ms)",
                self.shown(&file),
                micros.compile as f64 / 1000.0,
                micros.link as f64 / 1000.0,
            )),
            SessionEvent::Diagnostics { file, diagnostics } => {
                let file = self.absolute(&file);
                if diagnostics.is_empty() {
                    if self.files_with_diagnostics.remove(&file) {
                        self.line(&format!("[hot-lsp] {}: fixed", self.shown(&file)));
                    }
                    return;
                }
                self.files_with_diagnostics.insert(file);
                for diagnostic in &diagnostics {
                    self.line(&format!(
                        "{}:{}:{}: {}: {} [{}]",
                        self.shown(&diagnostic.file),
                        diagnostic.line,
                        diagnostic.column,
                        severity_name(diagnostic.severity),
                        diagnostic.message,
                        diagnostic.code
                    ));
                }
            }
            SessionEvent::Exited { code, signal } => self.line(&format!(
                "[hot-lsp] {}",
                crate::lsp::convert::exit_description(code, signal)
            )),
            SessionEvent::Message { severity, text } => {
                self.line(&format!("[hot-lsp] {}: {text}", severity_name(severity)));
            }
            SessionEvent::Output { stream, text } => match stream {
                OutputStream::Stdout => {
                    let mut stdout = std::io::stdout().lock();
                    let _ = stdout.write_all(text.as_bytes());
                    let _ = stdout.flush();
                }
                OutputStream::Stderr => {
                    let mut stderr = std::io::stderr().lock();
                    let _ = stderr.write_all(text.as_bytes());
                    let _ = stderr.flush();
                }
            },
            SessionEvent::Status(status) => {
                // Swapping is too brief to be worth a line; the swap line says what happened.
                if status.state != State::Swapping && self.last_state != Some(status.state) {
                    self.last_state = Some(status.state);
                    let mut text = format!(
                        "[hot-lsp] {}",
                        crate::lsp::convert::state_name(status.state)
                    );
                    if let Some(message) = &status.message {
                        text.push_str(&format!(": {message}"));
                    }
                    self.line(&text);
                }
            }
            SessionEvent::Progress(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_sources_outside_target_are_watched() {
        let root = Path::new("/w");
        assert!(is_watched_source(root, Path::new("/w/src/main.c")));
        assert!(is_watched_source(root, Path::new("/w/include/app.HPP")));
        assert!(is_watched_source(root, Path::new("/w/ui/view.mm")));
        assert!(is_watched_source(root, Path::new("/w/lib/huf_amd64.S")));
        assert!(is_watched_source(root, Path::new("/w/lib/start.s")));
        assert!(!is_watched_source(root, Path::new("/w/build/main.o")));
        assert!(!is_watched_source(root, Path::new("/w/target/gen/x.c")));
        assert!(!is_watched_source(root, Path::new("/w/.git/x.c")));
        assert!(!is_watched_source(root, Path::new("/w/src/.main.c.swp")));
        assert!(!is_watched_source(root, Path::new("/w/src/.#main.c")));
        assert!(!is_watched_source(root, Path::new("/w/src/main.c~")));
        assert!(!is_watched_source(root, Path::new("/elsewhere/main.c")));
    }
}
