//! The test harness for real programs: copy a fixture workspace, start a session on it, edit
//! and save its sources, and wait for what the session reports.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hot_session::{
    Command, Diagnostic, OutputStream, Session, SessionEvent, SessionOptions, Severity, SwapSummary,
};

/// Generous: CI is a busy two-core machine, and every wait ends as soon as its event arrives.
pub const TIMEOUT: Duration = Duration::from_secs(90);

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create fixture copy");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("fixture entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub session: Option<Session>,
    events: Receiver<SessionEvent>,
    /// Every event seen, for failure messages.
    pub log: Vec<SessionEvent>,
    /// Program output received since the last `save` (or since launch).
    pub fresh_output: String,
    pub pid: Option<i32>,
}

impl Fixture {
    /// Copy `tests/fixtures/<name>` without starting anything.
    pub fn copy(name: &str) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix(&format!("hot-lsp-{name}-"))
            .tempdir()
            .expect("tempdir");
        copy_dir(&fixtures_dir().join(name), dir.path());
        let (_tx, events) = crossbeam_channel::unbounded();
        Fixture {
            dir,
            session: None,
            events,
            log: Vec::new(),
            fresh_output: String::new(),
            pid: None,
        }
    }

    /// Start the session (which builds and launches the program when configured to).
    pub fn start(&mut self) {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.events = rx;
        self.session = Some(Session::start(
            SessionOptions {
                root: self.dir.path().to_owned(),
                client_config: None,
                auto_launch: true,
            },
            tx,
        ));
    }

    /// Copy, start, and wait until the program runs and prints its first line.
    pub fn launch(name: &str) -> Fixture {
        let mut fixture = Fixture::copy(name);
        fixture.start();
        fixture.wait_launched();
        fixture.wait_output("tick=");
        fixture
    }

    /// Wait for the launch (of a started session) and remember the pid.
    pub fn wait_launched(&mut self) -> i32 {
        let pid = self.wait("the program to launch", |e| match e {
            SessionEvent::Launched { pid } => Some(*pid),
            _ => None,
        });
        self.pid = Some(pid);
        pid
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Give the session the editor's buffer of `file` (its text on disk now) as unsaved
    /// text, and wait for the compile ahead's link to publish the file's list.
    pub fn compile_ahead(&mut self, file: &str) {
        let path = self.path(file);
        let text = std::fs::read_to_string(&path).expect("read the buffer's file");
        self.send(Command::Changed {
            file: path.clone(),
            text,
        });
        self.wait("the compile ahead", |e| {
            matches!(e, SessionEvent::Diagnostics { file, .. } if *file == path).then_some(())
        });
    }

    pub fn send(&self, command: Command) {
        self.session
            .as_ref()
            .expect("session started")
            .send(command);
    }

    /// Replace the first `from` in a source file by `to` (the test fails if it is absent).
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let path = self.path(rel);
        let text = std::fs::read_to_string(&path).expect("read source");
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write source");
    }

    pub fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).expect("write file");
    }

    /// Build the program by the shell command `build` (run in the workspace) and configure
    /// the session to launch `app` as built, with no build command of its own, compiling
    /// saves with `cc -O0 -g`.
    pub fn build_by_the_test(&self, build: &str) {
        let built = std::process::Command::new("sh")
            .args(["-c", build])
            .current_dir(self.dir.path())
            .status()
            .expect("run sh");
        assert!(built.success(), "the fixture builds: {build}");
        self.write(
            "hot-lsp.toml",
            "[program]\npath = \"app\"\n\n[compile]\ncommand = \"cc -O0 -g -c {file} -o {output}\"\n",
        );
    }

    /// Tell the session a file was saved; output from now on counts as fresh.
    pub fn save(&mut self, rel: &str) {
        self.drain();
        self.fresh_output.clear();
        self.send(Command::Saved(self.path(rel)));
    }

    fn record(&mut self, event: SessionEvent) {
        if let SessionEvent::Output { stream: _, text } = &event {
            self.fresh_output.push_str(text);
        }
        self.log.push(event);
    }

    /// Record every event already sent, without waiting.
    pub fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.record(event);
        }
    }

    fn log_tail(&self) -> String {
        let start = self.log.len().saturating_sub(30);
        self.log[start..]
            .iter()
            .map(|e| format!("  {e:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Wait until `pick` accepts an event; panic with the recent events on timeout.
    pub fn wait<T>(&mut self, what: &str, mut pick: impl FnMut(&SessionEvent) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    let found = pick(&event);
                    self.record(event);
                    if let Some(found) = found {
                        return found;
                    }
                }
                Err(_) => {
                    let out = &self.fresh_output;
                    let tail = &out[out.len().saturating_sub(2000)..];
                    panic!(
                        "timed out waiting for {what}; recent events:\n{}\nfresh output (end):\n{tail}",
                        self.log_tail(),
                    )
                }
            }
        }
    }

    /// How often the program printed `needle` (in its stdout so far).
    pub fn printed(&self, needle: &str) -> usize {
        self.stdout().matches(needle).count()
    }

    /// Everything the program printed on stdout so far, in the order it came.
    pub fn stdout(&self) -> String {
        self.log
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Output {
                    stream: OutputStream::Stdout,
                    text,
                } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Wait for a complete line of fresh output containing `needle`; returns the line.
    pub fn wait_output(&mut self, needle: &str) -> String {
        let find = |out: &str| {
            out.lines()
                .filter(|_| out.contains('\n'))
                .find(|l| l.contains(needle))
                .map(str::to_owned)
        };
        if let Some(line) = find(&self.fresh_output) {
            return line;
        }
        let mut buffer = self.fresh_output.clone();
        self.wait(&format!("output containing {needle:?}"), |e| match e {
            SessionEvent::Output { text, .. } => {
                buffer.push_str(text);
                let complete = &buffer[..buffer.rfind('\n').map_or(0, |p| p + 1)];
                complete
                    .lines()
                    .find(|l| l.contains(needle))
                    .map(str::to_owned)
            }
            _ => None,
        })
    }

    /// Wait for a line containing `needle`, then require the next `n` lines to contain it
    /// too: lines computed before a swap may still arrive after it (several, on a loaded
    /// machine), so a new value is checked by when it shows and that it stays. `what` says
    /// what a line without it would mean.
    pub fn wait_output_stays(&mut self, needle: &str, n: usize, what: &str) {
        self.wait_output(needle);
        for line in self.next_lines(n) {
            assert!(line.contains(needle), "{what}: {line}");
        }
    }

    /// Wait for `n` more complete lines of output and return them.
    pub fn next_lines(&mut self, n: usize) -> Vec<String> {
        let mut buffer = String::new();
        let mut lines = Vec::new();
        self.wait(&format!("{n} more lines of output"), |e| {
            if let SessionEvent::Output { text, .. } = e {
                buffer.push_str(text);
                while let Some(p) = buffer.find('\n') {
                    lines.push(buffer[..p].to_owned());
                    buffer.drain(..=p);
                }
            }
            (lines.len() >= n).then(|| lines.clone())
        })
    }

    /// Wait for the swap of the last save; a diagnostic error or an error message first is a
    /// test failure that shows what the session said.
    pub fn wait_swap(&mut self) -> SwapSummary {
        let result = self.wait("a swap", |e| match e {
            SessionEvent::Swap(s) => Some(Ok(s.clone())),
            SessionEvent::Diagnostics { diagnostics, .. }
                if diagnostics.iter().any(|d| d.severity == Severity::Error) =>
            {
                Some(Err(format!("{diagnostics:#?}")))
            }
            SessionEvent::Message {
                severity: Severity::Error,
                text,
            } => Some(Err(text.clone())),
            _ => None,
        });
        match result {
            Ok(summary) => summary,
            Err(e) => panic!("the swap failed: {e}\nrecent events:\n{}", self.log_tail()),
        }
    }

    /// Wait for a non-empty diagnostics list for `rel`.
    /// The diagnostics lists published for `rel` after the log's first `from` events.
    #[allow(dead_code)]
    pub fn published_since(&self, from: usize, rel: &str) -> Vec<Vec<Diagnostic>> {
        let path = self.path(rel);
        self.log[from..]
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Diagnostics {
                    file: published,
                    diagnostics,
                } if *published == path => Some(diagnostics.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn wait_diagnostics(&mut self, rel: &str) -> Vec<Diagnostic> {
        let path = self.path(rel);
        self.wait(&format!("diagnostics for {rel}"), |e| match e {
            SessionEvent::Diagnostics { file, diagnostics }
                if *file == path && !diagnostics.is_empty() =>
            {
                Some(diagnostics.clone())
            }
            _ => None,
        })
    }

    /// The error messages seen so far.
    pub fn errors_seen(&self) -> Vec<&SessionEvent> {
        self.log
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    SessionEvent::Message {
                        severity: Severity::Error,
                        ..
                    }
                )
            })
            .collect()
    }

    /// The first message of the given severity, already seen or still to come.
    pub fn wait_message(&mut self, severity: Severity) -> String {
        self.drain();
        let seen = self.log.iter().find_map(|e| match e {
            SessionEvent::Message { severity: s, text } if *s == severity => Some(text.clone()),
            _ => None,
        });
        if let Some(text) = seen {
            return text;
        }
        self.wait(&format!("a {severity:?} message"), |e| match e {
            SessionEvent::Message { severity: s, text } if *s == severity => Some(text.clone()),
            _ => None,
        })
    }

    /// The 1-based line of the first line of `rel` containing `needle`.
    pub fn line_of(&self, rel: &str, needle: &str) -> u32 {
        let text = std::fs::read_to_string(self.path(rel)).expect("read source");
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i as u32 + 1)
            .unwrap_or_else(|| panic!("{rel} has no line containing {needle:?}"))
    }

    /// The program is alive and is still the process launched at first.
    pub fn assert_same_process(&self) {
        let pid = self.pid.expect("launched");
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "the program (pid {pid}) is gone"
        );
        let status = self.session.as_ref().expect("session").status();
        assert_eq!(status.pid, Some(pid), "the session reports another pid");
    }

    /// After a refused save: `swaps` swaps so far (the refused one added none), the next
    /// `lines` lines the program prints all contain `steady`, and it is the same process.
    pub fn assert_unchanged(&mut self, swaps: usize, steady: &str, lines: usize) {
        let swapped = self
            .log
            .iter()
            .filter(|e| matches!(e, SessionEvent::Swap(_)))
            .count();
        assert_eq!(swapped, swaps, "the refused save swapped something");
        self.fresh_output.clear();
        for l in self.next_lines(lines) {
            assert!(l.contains(steady), "the program changed: {l}");
        }
        self.assert_same_process();
    }

    pub fn stdout_seen(&self) -> bool {
        self.log.iter().any(|e| {
            matches!(
                e,
                SessionEvent::Output {
                    stream: OutputStream::Stdout,
                    ..
                }
            )
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.shutdown();
        }
    }
}

/// Parse `key=value` out of an output line.
pub fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_owned()
}

/// The threads of `pid` that are stopped or traced (from /proc/PID/task/*/status); empty
/// when the process is gone.
#[allow(dead_code)]
pub fn stopped_or_traced(pid: i32) -> Vec<String> {
    let mut left = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return left;
    };
    for entry in dir.flatten() {
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let get = |key: &str| status_field(&status, key);
        let (state, tracer) = (get("State:"), get("TracerPid:"));
        if state.starts_with('t') || state.starts_with('T') || tracer != "0" {
            left.push(format!(
                "{pid}/{:?}: {state}, tracer {tracer}",
                entry.file_name()
            ));
        }
    }
    left
}

impl Fixture {
    /// Saves `rel` with the `nth` fault step of the process backend armed (0: none) and
    /// waits for the save to end; returns whether it swapped, where its events start in the
    /// log, and the fault report.
    #[allow(dead_code)]
    pub fn save_with_fault(
        &mut self,
        rel: &str,
        nth: u64,
    ) -> (bool, usize, hot_process::fault::Report) {
        hot_process::fault::arm(nth);
        self.save(rel);
        let from = self.log.len();
        self.wait("the save to end", |e| {
            matches!(e, SessionEvent::Progress(hot_session::Progress::End { .. })).then_some(())
        });
        let report = hot_process::fault::disarm();
        let swapped = self.log[from..]
            .iter()
            .any(|e| matches!(e, SessionEvent::Swap(_)));
        (swapped, from, report)
    }
}

/// The value of `key` (e.g. `"State:"`) in a `/proc/.../status` text, trimmed; empty if absent.
#[allow(dead_code)]
pub fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

impl Fixture {
    /// Waits for the information that a relaunch got this session's changes again, and
    /// returns it (it says how many files, e.g. "2 of 3").
    #[allow(dead_code)]
    pub fn wait_replayed(&mut self) -> String {
        self.wait("the replay message", |e| match e {
            SessionEvent::Message {
                severity: hot_session::Severity::Information,
                text,
            } if text.contains("re-applied") => Some(text.clone()),
            _ => None,
        })
    }
}

impl Fixture {
    /// The sharedlib fixture's lib/plug.c as it is now, built with `compiler` into
    /// `lib/<name>` as build.sh builds libplug.so (a rebuilt plugin for the program to load).
    #[allow(dead_code)]
    pub fn build_plug(&self, compiler: &str, name: &str) {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{compiler} -O0 -g -fPIC -c lib/plug.c -o lib/plug2.o && \
                 {compiler} -shared -o lib/{name} lib/plug2.o"
            ))
            .current_dir(self.dir.path())
            .status()
            .expect("run the compiler");
        assert!(status.success(), "building lib/{name} failed");
    }
}
