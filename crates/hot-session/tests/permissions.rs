//! Permissions (issue 12): attaching (only ever on the user's explicit `Attach` command) to
//! another user's process is refused with a message that says why and how to fix it, and
//! the session stays usable.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hot_session::{Session, SessionEvent, SessionOptions, Severity, State};

const TARGET: &str = "HOT_SESSION_EPERM_TARGET";
const WORKSPACE: &str = "HOT_SESSION_EPERM_WORKSPACE";
const TIMEOUT: Duration = Duration::from_secs(90);

/// As the helper (user `nobody`): a session on the workspace attaches to the target and
/// prints the error message it got and the state after it.
fn attach_as_helper(pid: i32, root: &str) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let session = Session::start(
        SessionOptions {
            root: root.into(),
            client_config: None,
            auto_launch: false,
        },
        tx,
    );
    session.send(hot_session::Command::Attach { pid });
    let deadline = Instant::now() + TIMEOUT;
    let text = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(SessionEvent::Message {
                severity: Severity::Error,
                text,
            }) => break text,
            Ok(_) => {}
            Err(_) => break "no error message".into(),
        }
    };
    let state = session.status().state;
    // Straight to the descriptor: libtest captures println! output.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "\nSTATE={state:?}").expect("write");
    writeln!(stdout, "RESULT={}", text.replace('\n', " ")).expect("write");
    stdout.flush().expect("flush");
    session.shutdown();
}

/// Runs twice: as the test (root), it starts a process as root and re-executes this test as
/// user `nobody`, whose session attaches to it.
#[test]
fn attaching_to_another_users_process_says_why_and_how_to_fix_it() {
    if let (Ok(pid), Ok(root)) = (std::env::var(TARGET), std::env::var(WORKSPACE)) {
        attach_as_helper(pid.parse().expect("pid"), &root);
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Another user's process needs root to set up; hot-process's unit test covers every
        // cause's message (permission.rs) and its attach test the refusal itself.
        eprintln!("not root: cannot run a process as another user here");
        return;
    }
    // A workspace `nobody` can read, opted in, launching nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.path().join("hot-lsp.toml"), "[program]\n").expect("config");
    let mut target = Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("start a process as root");
    let mut helper = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--exact",
            "attaching_to_another_users_process_says_why_and_how_to_fix_it",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TARGET, target.id().to_string())
        .env(WORKSPACE, dir.path())
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the helper as nobody");
    let lines: Vec<String> = BufReader::new(helper.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .collect();
    helper.wait().expect("wait for the helper");
    target.kill().expect("kill");
    target.wait().expect("wait");
    let get = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
            .to_owned()
    };
    let result = get("RESULT=");
    let pid = target.id().to_string();
    for needle in [
        "permission denied",
        &format!("pid {pid} (uid 0)"),
        "uid 65534",
        "another user",
        "run hot-lsp as uid 0",
        "CAP_SYS_PTRACE",
    ] {
        assert!(result.contains(needle), "no {needle:?} in {result}");
    }
    assert_eq!(get("STATE="), format!("{:?}", State::Failed));
    eprintln!("nobody attaching to root's pid {pid}: {result}");
}
