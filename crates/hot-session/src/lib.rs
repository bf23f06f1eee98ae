//! One workspace: its configuration, compile database, compile-on-save, the swap pipeline,
//! the patch journal and diagnostics in editor-neutral form.
//!
//! A [`Session`] owns one sequential worker thread. Front ends (the LSP server, `hot-lsp
//! watch`) only enqueue [`Command`]s and receive [`SessionEvent`]s; they never block on the
//! worker. This crate knows nothing about LSP: positions are 1-based lines and 1-based byte
//! columns, files are paths.

pub mod compile;
pub mod compile_db;
pub mod config;
pub mod fault;
mod library_load;
mod program;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use config::Config;
/// How symbol names read in messages (C++ demangled); front ends use it for their own lines.
pub use hot_object::display_name;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Information,
}

/// A problem at a source position. Lines are 1-based, columns 1-based in bytes (0 = unknown).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    /// End of the range, if the compiler gave one (same conventions).
    pub end_line: Option<u32>,
    pub end_column: Option<u32>,
    pub severity: Severity,
    /// A stable code of DESIGN.md 3.3: `compile-error`, `undefined-symbol`, ...
    pub code: String,
    pub message: String,
}

/// The state of the session's program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Idle,
    Building,
    Running,
    Swapping,
    Exited,
    Failed,
}

/// Microseconds spent in each phase of a swap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Micros {
    /// Wall-clock time of the compile phase (the files of a header's swap compile in
    /// parallel), reading the objects left out: that is the link's.
    pub compile: u64,
    /// The sum of each file's compiler run: a little less than `compile` for one file,
    /// more than it when several files compiled at once.
    pub compile_total: u64,
    /// The whole link: reading (parsing) the compiled objects (their sum; a header's
    /// includers are read on the compile threads), diffing them with their baselines,
    /// linking and the ABI checks. Compiles of files the link pulled in are `compile`'s.
    pub link: u64,
    pub swap: u64,
    /// The save's text was compiled ahead of the save, while the user paused typing: the
    /// save compiled nothing (`compile` is 0) and took that object, and its link when the
    /// running image had not changed since.
    pub compiled_ahead: bool,
}

/// What one swap did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SwapSummary {
    pub seq: u64,
    /// The saved file: a source file, or a header whose includers were swapped.
    pub file: PathBuf,
    /// The files compiled and swapped together: the saved source file, or every
    /// translation unit of the running program that includes the saved header.
    pub files: Vec<PathBuf>,
    pub swapped: Vec<String>,
    pub added: Vec<String>,
    /// Read-only objects of the running program rewritten in place with their new contents
    /// (a `const` table, a vtable): a swap that changed only data names them here.
    pub updated: Vec<String>,
    pub skipped: usize,
    pub micros: Micros,
}

/// A snapshot of the session, readable at any time without waiting for the worker.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub state: State,
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub last_swap: Option<SwapSummary>,
    pub message: Option<String>,
    /// The stable code (DESIGN.md 3.3) of the failure `message` reports, when it is one.
    pub code: Option<String>,
    /// How far the background baselines of the running program are (`None`: none queued).
    pub baselines: Option<BaselineProgress>,
}

/// The baselines (the objects of the text the program was built from) compiled in the
/// background since the program was adopted: a save of a file whose baseline is ready
/// swaps only what changed without compiling it first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BaselineProgress {
    /// Finished (made, or found impossible: the file is then compared with the image).
    pub done: usize,
    pub total: usize,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: State::Idle,
            pid: None,
            exit_code: None,
            signal: None,
            last_swap: None,
            message: None,
            code: None,
            baselines: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Phases reported as progress (LSP `$/progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Compile,
    Link,
    Swap,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    Begin { title: String },
    Report { phase: Phase, message: String },
    End { message: String },
}

/// What the session tells its front end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// The status changed (state, pid, last swap...). Always the full snapshot.
    Status(Status),
    /// The program was started.
    Launched {
        pid: i32,
    },
    /// The program's output: one line, ending with `\n` (a partial line the program left
    /// unterminated is flushed as a line when it pauses).
    Output {
        stream: OutputStream,
        text: String,
    },
    /// The complete current diagnostics of one file (an empty list clears them).
    Diagnostics {
        file: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
    /// A failure or notice without a source line (process exited, permission denied).
    Message {
        severity: Severity,
        text: String,
    },
    /// A swap was applied.
    Swap(SwapSummary),
    /// A saved file compiled and linked, and no function or variable of it changed: nothing
    /// was written to the program (`micros.swap` is 0), or only bodies nothing reaches yet
    /// (an edited weak default that a save's strong definition overrides, kept to run once
    /// the override is deleted; undo reverts that save like a swap).
    Unchanged {
        file: PathBuf,
        micros: Micros,
    },
    /// The program is gone.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    Progress(Progress),
}

/// What a front end asks of the session.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A file was saved (a translation unit or a header).
    Saved(PathBuf),
    /// A file was opened in an editor: compile its baseline in the background if needed.
    Opened(PathBuf),
    /// The editor's buffer of a file has this text now (not saved): compiled and linked
    /// ahead of the save when typing pauses (`[compile] ahead`).
    Changed {
        file: PathBuf,
        text: String,
    },
    /// The editor closed its buffer of a file: its unsaved text is forgotten.
    Closed(PathBuf),
    Launch,
    Attach {
        pid: i32,
    },
    Detach,
    Stop,
    Restart,
    Undo,
    /// New client configuration (same shape as `hot-lsp.toml`, as JSON).
    Configure(serde_json::Value),
    /// Stop the worker: kill a launched program, detach from an attached one.
    Shutdown,
}

/// Where and how a session starts.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub root: PathBuf,
    /// Configuration the client set explicitly (JSON shaped like `hot-lsp.toml`); its keys
    /// win over the file's.
    pub client_config: Option<serde_json::Value>,
    /// Launch the program when the session starts if the configuration says `launch =
    /// "auto"`. Front ends that want to drive launching themselves turn this off.
    pub auto_launch: bool,
}

/// One workspace's session: a handle to its worker.
pub struct Session {
    root: PathBuf,
    commands: crossbeam_channel::Sender<Command>,
    /// Dropped as the session ends, before `Shutdown` is sent: a worker waiting for a
    /// compile (which reads no commands meanwhile) stops it at once instead of finishing it.
    ending: Option<crossbeam_channel::Sender<()>>,
    status: Arc<Mutex<Status>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Session {
    /// Start the worker. It reads the configuration; a workspace that did not opt in (no
    /// `hot-lsp.toml`, no client configuration) stays idle and runs nothing.
    pub fn start(
        options: SessionOptions,
        events: crossbeam_channel::Sender<SessionEvent>,
    ) -> Session {
        let (commands, receiver) = crossbeam_channel::unbounded();
        let (ending, ending_receiver) = crossbeam_channel::bounded(0);
        let status = Arc::new(Mutex::new(Status::default()));
        let root = options.root.clone();
        let worker_status = Arc::clone(&status);
        let worker = std::thread::Builder::new()
            .name(format!("hot-session {}", root.display()))
            .spawn(move || worker::run(options, (receiver, ending_receiver), events, worker_status))
            .ok();
        Session {
            root,
            commands,
            ending: Some(ending),
            status,
            worker,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Enqueue a command; never blocks.
    pub fn send(&self, command: Command) {
        // The worker only goes away after Shutdown; a send after that has nobody to act on it.
        let _ = self.commands.send(command);
    }

    /// The latest status snapshot; never waits for the worker.
    pub fn status(&self) -> Status {
        match self.status.lock() {
            Ok(status) => status.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Shut the worker down and wait for it (kills a launched program).
    pub fn shutdown(mut self) {
        self.ending.take();
        self.send(Command::Shutdown);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            self.ending.take();
            let _ = self.commands.send(Command::Shutdown);
            let _ = worker.join();
        }
    }
}
