//! A small LSP test client: runs the real `hot-lsp --stdio` binary and speaks JSON-RPC with
//! Content-Length framing to it. Responses are matched by id; notifications are collected and
//! can be awaited with a predicate. Requests from the server (progress token creation) are
//! answered with `null` automatically.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod watch;

/// Generous: the CI box is a busy 2-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Client {
    child: Option<Child>,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    messages: Receiver<Value>,
    /// Messages received and not consumed yet (notifications, responses to other ids).
    backlog: Vec<Value>,
    /// Every notification seen so far, consumed or not.
    pub notifications: Vec<Value>,
    next_id: i64,
    stderr: Arc<Mutex<String>>,
    exit: Option<Receiver<ExitStatus>>,
}

fn write_frame(stdin: &Mutex<Option<ChildStdin>>, body: &[u8]) {
    let mut guard = stdin.lock().expect("stdin lock");
    let Some(stdin) = guard.as_mut() else {
        panic!("stdin is already closed");
    };
    let header = format!("Content-Length: {}\r\n\r\n", body.len());
    stdin.write_all(header.as_bytes()).expect("write header");
    stdin.write_all(body).expect("write body");
    stdin.flush().expect("flush");
}

/// Reads one framed message; None at end of stream.
fn read_frame(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

impl Client {
    /// Starts `hot-lsp --stdio`.
    pub fn start() -> Client {
        Self::start_with(&["--stdio"])
    }

    pub fn start_with(args: &[&str]) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hot-lsp"))
            .args(args)
            .env("HOT_LSP_LOG", "hot_lsp=debug,hot_session=debug,info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hot-lsp");
        let stdin = Arc::new(Mutex::new(Some(child.stdin.take().expect("stdin"))));
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, messages) = mpsc::channel();
        let reply_stdin = Arc::clone(&stdin);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(body) = read_frame(&mut reader) {
                let message: Value = match serde_json::from_slice(&body) {
                    Ok(message) => message,
                    Err(error) => panic!(
                        "the server wrote something that is not JSON: {error}: {:?}",
                        String::from_utf8_lossy(&body)
                    ),
                };
                // A request from the server: answer it so that the server never waits.
                if message.get("method").is_some() && message.get("id").is_some() {
                    let reply = json!({"jsonrpc": "2.0", "id": message["id"], "result": null});
                    let mut guard = reply_stdin.lock().expect("stdin lock");
                    if let Some(stdin) = guard.as_mut() {
                        let body = reply.to_string();
                        let _ = write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len());
                        let _ = stdin.flush();
                    }
                }
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let reader = BufReader::new(stderr_pipe);
            for line in reader.lines() {
                let Ok(line) = line else { return };
                let mut sink = stderr_sink.lock().expect("stderr lock");
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        Client {
            child: Some(child),
            stdin,
            messages,
            backlog: Vec::new(),
            notifications: Vec::new(),
            next_id: 1,
            stderr,
            exit: None,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// The server's log so far, for failure messages.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    pub fn send_raw(&self, body: &[u8]) {
        write_frame(&self.stdin, body);
    }

    /// Writes `bytes` to the server's stdin as they are, without a frame around them.
    pub fn send_bytes(&self, bytes: &[u8]) {
        let mut guard = self.stdin.lock().expect("stdin lock");
        let Some(stdin) = guard.as_mut() else {
            panic!("stdin is already closed");
        };
        stdin.write_all(bytes).expect("write bytes");
        stdin.flush().expect("flush");
    }

    pub fn send(&self, message: &Value) {
        self.send_raw(message.to_string().as_bytes());
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its id without waiting.
    pub fn send_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Sends a request and waits for its whole response message (`result` or `error`).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params);
        self.wait_response(&json!(id))
    }

    /// Takes the next message from the server, keeping notifications on record.
    fn next_message(&mut self, deadline: Instant) -> Option<Value> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(remaining) {
            Ok(message) => {
                if message.get("method").is_some() && message.get("id").is_none() {
                    self.notifications.push(message.clone());
                }
                Some(message)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    fn is_response(message: &Value) -> bool {
        message.get("method").is_none() && message.get("id").is_some()
    }

    /// Waits for the response with this id (`null` for errors about unparsable messages).
    pub fn wait_response(&mut self, id: &Value) -> Value {
        if let Some(index) = self
            .backlog
            .iter()
            .position(|message| Self::is_response(message) && message["id"] == *id)
        {
            return self.backlog.remove(index);
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let Some(message) = self.next_message(deadline) else {
                panic!(
                    "no response to request {id} within {TIMEOUT:?}\nserver log:\n{}",
                    self.stderr()
                );
            };
            if Self::is_response(&message) && message["id"] == *id {
                return message;
            }
            self.backlog.push(message);
        }
    }

    /// Waits for a notification `method` whose params satisfy `matches`; notifications that
    /// arrived earlier and were not consumed count too. Consumes the one it returns.
    pub fn wait_notification(&mut self, method: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.try_wait_notification(method, &matches, TIMEOUT)
            .unwrap_or_else(|| {
                panic!(
                    "no {method} notification matched within {TIMEOUT:?}\nseen: {:#?}\nserver log:\n{}",
                    self.notifications
                        .iter()
                        .filter(|n| n["method"] != "hot-lsp/output")
                        .collect::<Vec<_>>(),
                    self.stderr()
                )
            })
    }

    pub fn try_wait_notification(
        &mut self,
        method: &str,
        matches: &dyn Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        let is_match = |message: &Value| {
            message.get("id").is_none()
                && message["method"] == method
                && matches(&message["params"])
        };
        if let Some(index) = self.backlog.iter().position(is_match) {
            return Some(self.backlog.remove(index)["params"].clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let message = self.next_message(deadline)?;
            if is_match(&message) {
                return Some(message["params"].clone());
            }
            self.backlog.push(message);
        }
    }

    /// Drops every message received and not consumed yet (also those still in the pipe).
    pub fn discard_backlog(&mut self) {
        self.backlog.clear();
        while let Ok(message) = self.messages.try_recv() {
            if message.get("method").is_some() && message.get("id").is_none() {
                self.notifications.push(message);
            }
        }
    }

    /// `initialize` + `initialized` with one workspace folder (or none).
    pub fn initialize(&mut self, folder: Option<&Path>, options: Value) -> Value {
        let folders = match folder {
            Some(folder) => json!([{"uri": file_uri(folder), "name": "test"}]),
            None => Value::Null,
        };
        let response = self.request(
            "initialize",
            json!({
                "processId": std::process::id(),
                "rootUri": folder.map(file_uri),
                "capabilities": {"window": {"workDoneProgress": true}},
                "workspaceFolders": folders,
                "initializationOptions": options,
            }),
        );
        assert!(
            response.get("result").is_some(),
            "initialize failed: {response}\nserver log:\n{}",
            self.stderr()
        );
        self.notify("initialized", json!({}));
        response["result"].clone()
    }

    pub fn execute(&mut self, command: &str, arguments: Value) -> Value {
        self.request(
            "workspace/executeCommand",
            json!({"command": command, "arguments": arguments}),
        )
    }

    pub fn did_save(&self, path: &Path) {
        self.notify(
            "textDocument/didSave",
            json!({"textDocument": {"uri": file_uri(path)}}),
        );
    }

    /// `textDocument/didChange` with the buffer's whole text (the server asks for full sync).
    pub fn did_change(&self, path: &Path, version: i64, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({
                "textDocument": {"uri": file_uri(path), "version": version},
                "contentChanges": [{"text": text}],
            }),
        );
    }

    /// Closes the server's stdin, as a client that goes away without `shutdown` does.
    pub fn close_stdin(&self) {
        self.stdin.lock().expect("stdin lock").take();
    }

    /// Waits for the server process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        if self.exit.is_none() {
            let mut child = self.child.take().expect("the server was started");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                if let Ok(status) = child.wait() {
                    let _ = tx.send(status);
                }
            });
            self.exit = Some(rx);
        }
        let exit = self.exit.as_ref().expect("exit receiver");
        match exit.recv_timeout(TIMEOUT) {
            Ok(status) => status,
            Err(_) => panic!(
                "the server did not exit within {TIMEOUT:?}\nserver log:\n{}",
                self.stderr()
            ),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // A failed test must not leave a server (and its program) behind.
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `file://` URI of an absolute path, as editors send it.
pub fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                uri.push(byte as char)
            }
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri
}

/// Copies `server/tests/fixtures/<name>` into a fresh temporary directory (canonical path).
pub fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
}

/// Copies one of the workspace's shared C fixtures, `tests/fixtures/<name>`.
pub fn copy_shared_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name),
    )
}

fn copy_dir(from: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(from).expect("read the fixture") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy fixture");
    }
    let root = dir.path().canonicalize().expect("canonical tempdir");
    (dir, root)
}

/// Builds the fixture's program the way its hot-lsp.toml expects (`app` from `main.c`).
pub fn build_program(root: &Path) {
    let status = Command::new("cc")
        .args(["-O0", "-g", "-o", "app", "main.c"])
        .current_dir(root)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed to build the fixture");
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
