//! The launched program lives exactly as long as the server: still running after 30 s of an
//! idle server, gone once the server is killed (no orphans, even on SIGKILL).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{copy_shared_fixture, process_alive};

/// Kills the server if the test fails half-way, so no `hot-lsp watch` outlives it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn program_outlives_an_idle_server_and_dies_with_it() {
    let (_dir, root) = copy_shared_fixture("basic");
    let mut server = Command::new(env!("CARGO_BIN_EXE_hot-lsp"))
        .arg("watch")
        .arg(&root)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start hot-lsp watch");
    let stdout = server.stdout.take().expect("stdout");
    let mut server = KillOnDrop(server);
    let mut lines = BufReader::new(stdout).lines();
    let mut pid = None;
    let launched_at = Instant::now();
    // Read events until 30 s have passed since the launch; the program prints all along.
    while let Some(Ok(line)) = lines.next() {
        let event: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON event: {line:?}: {e}"));
        if event["event"] == "launched" {
            pid = event["pid"].as_i64();
        }
        if event["event"] == "exited" || event["event"] == "error" {
            panic!("the program did not stay up: {line}");
        }
        if pid.is_some() && launched_at.elapsed() >= Duration::from_secs(30) {
            break;
        }
        assert!(
            launched_at.elapsed() < Duration::from_secs(120),
            "no launch event"
        );
    }
    let pid = pid.expect("a launched event");
    assert!(
        process_alive(pid),
        "the program died while the server idled"
    );

    server.0.kill().expect("kill the server");
    server.0.wait().expect("reap the server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the program {pid} outlived the killed server"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
