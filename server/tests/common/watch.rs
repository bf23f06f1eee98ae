//! A driver for the real `hot-lsp watch` binary: its stdout read line by line on a thread,
//! each line an event (`--json`), or `{"event": "line", "text": ...}` in human mode.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Watch {
    child: Child,
    events: Receiver<Value>,
    /// How long one wait may take.
    timeout: Duration,
    /// Whether the program exiting, an `error` event or an error diagnostic ends any wait
    /// that does not ask for it with a failure, on the spot.
    strict: bool,
    /// Every event but output, for failure messages.
    pub seen: Vec<Value>,
    /// The last output lines, for failure messages.
    recent_output: Vec<String>,
}

impl Watch {
    /// `hot-lsp watch DIR --json`.
    pub fn start(dir: &Path) -> Watch {
        Watch::start_in(dir, true)
    }

    /// `json`: false runs the human-readable mode.
    pub fn start_in(dir: &Path, json: bool) -> Watch {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hot-lsp"));
        command.arg("watch").arg(dir);
        if json {
            command.arg("--json");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hot-lsp watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let event: Value = if json {
                    serde_json::from_str(&line)
                        .unwrap_or_else(|error| panic!("not a JSON event: {line:?}: {error}"))
                } else {
                    serde_json::json!({"event": "line", "text": line})
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        Watch {
            child,
            events,
            timeout: super::TIMEOUT,
            strict: false,
            seen: Vec::new(),
            recent_output: Vec::new(),
        }
    }

    /// Waits of `timeout` each, failing at once on an exit, an error event or an error
    /// diagnostic that the wait does not ask for.
    pub fn strict(mut self, timeout: Duration) -> Watch {
        self.timeout = timeout;
        self.strict = true;
        self
    }

    /// Waits for the next event satisfying `matches`, skipping others.
    pub fn wait(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + self.timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Ok(event) = self.events.recv_timeout(remaining) else {
                panic!(
                    "no {what} within {:?}; events: {:#?}\nlast output: {:#?}",
                    self.timeout, self.seen, self.recent_output
                );
            };
            if event["event"] == "output" {
                let text = event["text"].as_str().unwrap_or_default().to_owned();
                if self.recent_output.len() == 20 {
                    self.recent_output.remove(0);
                }
                self.recent_output.push(text);
            } else {
                self.seen.push(event.clone());
            }
            if matches(&event) {
                return event;
            }
            let fatal = event["event"] == "exited"
                || event["event"] == "error"
                || (event["event"] == "diagnostic" && event["severity"] == "error");
            assert!(
                !(self.strict && fatal),
                "while waiting for {what}: {event}\nevents: {:#?}\nlast output: {:#?}",
                self.seen,
                self.recent_output
            );
        }
    }

    /// Waits for program output containing `needle`.
    pub fn output(&mut self, needle: &str) {
        self.wait(&format!("output containing {needle:?}"), |event| {
            event["event"] == "output"
                && event["text"]
                    .as_str()
                    .is_some_and(|text| text.contains(needle))
        });
    }

    /// The pid of `hot-lsp watch` itself.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `hot-lsp watch` to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for hot-lsp watch")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
