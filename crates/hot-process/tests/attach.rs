//! Attaching to processes hot-lsp did not start: swaps, exit through the pidfd, and the
//! errors for missing or untraceable processes.

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use crossbeam_channel::Receiver;
use hot_process::{Debuggee, ProcessError, ProcessEvent, Protection};

fn wait_for(rx: &Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(_) => panic!("timed out (or output closed) waiting for {what}"),
        }
    }
}

fn tracer_of(pid: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("TracerPid")
}

#[test]
fn attach_swap_and_exit_of_a_process_started_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "spin", &["-fPIE", "-pie"]);
    let mut child = Command::new(&program)
        .args(["4", "sleep"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let lines = lines_of(&mut child);
    let entry = hex_field(
        &wait_for(&lines, "value=", |l| l.starts_with("value=")),
        "value=",
    );
    let pid = child.id() as i32;

    let (tx, events) = crossbeam_channel::unbounded();
    let debuggee = Debuggee::attach(pid, tx).expect("attach");
    assert_eq!(debuggee.pid(), pid);
    assert!(!debuggee.launched());
    // Not traced between swaps.
    assert_eq!(tracer_of(pid), 0);

    let image = debuggee.image_range().expect("image");
    let arena = debuggee
        .map_arena(image, 4096, Protection::ReadExecute)
        .expect("arena");
    let mut previous = debuggee.read_memory(entry, 5).expect("read");
    for i in 0..20u64 {
        let (plan, jmp) = swap_plan(entry, arena + 16 * i, 2 + (i % 2) as u32, &previous);
        let report = debuggee
            .apply(&plan)
            .unwrap_or_else(|e| panic!("apply {i}: {e}"));
        assert_eq!(report.threads, 5);
        previous = jmp;
    }
    assert_eq!(tracer_of(pid), 0);
    let line = wait_for(&lines, "both bodies", |l| {
        l.starts_with("tick=") && field(l, "two=") > 0 && field(l, "three=") > 0
    });
    assert_eq!(field(&line, "bad="), 0, "{line}");

    // Its exit comes through the pidfd, without a code (it is not our child).
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(wait_exit(&events), (None, None));
    assert!(matches!(
        debuggee.apply(&Default::default()),
        Err(ProcessError::Exited)
    ));
}

#[test]
fn dropping_an_attached_debuggee_leaves_the_process_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, lines, _) = spawn_spin(dir.path(), &["1", "sleep"]);
    let pid = child.id() as i32;
    let (tx, _events) = crossbeam_channel::unbounded::<ProcessEvent>();
    let debuggee = Debuggee::attach(pid, tx).expect("attach");
    drop(debuggee);
    let tick = field(
        &wait_for(&lines, "a tick", |l| l.starts_with("tick=")),
        "tick=",
    );
    wait_for(&lines, "a later tick", |l| {
        l.starts_with("tick=") && field(l, "tick=") > tick + 2
    });
    assert_eq!(tracer_of(pid), 0);
    child.kill().expect("kill");
    child.wait().expect("wait");
}

/// A program attached to again and again (a hot-lsp relaunched all day) keeps one
/// trampoline page, and its tails are handed back: more sessions than the page has tails
/// each map an arena through it.
#[test]
fn sessions_attached_one_after_another_share_one_trampoline_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, lines, _) = spawn_spin(dir.path(), &["1", "sleep"]);
    let pid = child.id() as i32;
    for session in 0..150 {
        let (tx, _events) = crossbeam_channel::unbounded::<ProcessEvent>();
        let debuggee = Debuggee::attach(pid, tx).expect("attach");
        let image = debuggee.image_range().expect("image");
        debuggee
            .map_arena(image, 4096, Protection::ReadWrite)
            .unwrap_or_else(|e| panic!("session {session}: {e}"));
        if session == 149 {
            let maps = debuggee.mappings().expect("maps");
            let pages = maps.iter().filter(|m| debuggee.is_trampoline(m)).count();
            assert_eq!(pages, 1, "one trampoline page for every session");
        }
    }
    let tick = field(
        &wait_for(&lines, "a tick", |l| l.starts_with("tick=")),
        "tick=",
    );
    let line = wait_for(&lines, "a later tick", |l| {
        l.starts_with("tick=") && field(l, "tick=") > tick + 2
    });
    assert_eq!(field(&line, "bad="), 0, "{line}");
    assert_eq!(tracer_of(pid), 0);
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn attaching_to_a_missing_process_names_the_pid() {
    // A pid that just existed and was reaped.
    let mut gone = Command::new("true").spawn().expect("spawn true");
    gone.wait().expect("wait");
    let pid = gone.id() as i32;
    let (tx, _rx) = crossbeam_channel::unbounded();
    match Debuggee::attach(pid, tx) {
        Err(ProcessError::Other(message)) => {
            assert!(
                message.contains(&format!("no process with pid {pid}")),
                "{message}"
            )
        }
        other => panic!("expected a clear error, got {:?}", other.map(|d| d.pid())),
    }
}

#[test]
fn attaching_to_an_already_traced_process_is_permission_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "traced", &[]);
    let mut tracer = Command::new(&program)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let lines = lines_of(&mut tracer);
    let line = wait_for(&lines, "child=", |l| l.starts_with("child="));
    let traced = field(&line, "child=") as i32;
    let (tx, _rx) = crossbeam_channel::unbounded();
    let result = Debuggee::attach(traced, tx);
    tracer.kill().expect("kill");
    tracer.wait().expect("wait");
    match result {
        Err(ProcessError::PermissionDenied(message)) => {
            assert!(message.contains("already traced"), "{message}")
        }
        other => panic!(
            "expected PermissionDenied, got {:?}",
            other.map(|d| d.pid())
        ),
    }
    // Attaching to ourselves is refused too.
    let (tx, _rx) = crossbeam_channel::unbounded();
    assert!(matches!(
        Debuggee::attach(std::process::id() as i32, tx),
        Err(ProcessError::PermissionDenied(_))
    ));
}

/// Runs twice: as the test, it starts a program as root and re-executes this test binary as
/// user `nobody`, which tries to attach to it and prints what it got.
#[test]
fn attaching_to_another_users_process_is_permission_denied() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    const TARGET: &str = "HOT_PROCESS_EPERM_TARGET";
    if let Some(pid) = std::env::var(TARGET)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let result = match Debuggee::attach(pid, tx) {
            Err(ProcessError::PermissionDenied(message)) => format!("PermissionDenied:{message}"),
            Err(other) => format!("other:{other:?}"),
            Ok(_) => "attached".to_string(),
        };
        // Straight to the descriptor: libtest captures println! output.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "\nRESULT={result}").expect("write");
        stdout.flush().expect("flush");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // As an ordinary user the other side of this test (a process of another user) is
        // not available; the already-traced test covers PermissionDenied then.
        eprintln!("not root: cannot run a process as another user; covered by the traced test");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut target, _target_lines, _) = spawn_spin(dir.path(), &["1", "sleep"]);
    let mut helper = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--exact",
            "attaching_to_another_users_process_is_permission_denied",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TARGET, target.id().to_string())
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper as nobody");
    let helper_lines = lines_of(&mut helper);
    let result = wait_for(&helper_lines, "the helper's result", |l| {
        l.starts_with("RESULT=")
    });
    helper.wait().expect("wait helper");
    target.kill().expect("kill");
    target.wait().expect("wait");
    assert!(result.starts_with("RESULT=PermissionDenied:"), "{result}");
    assert!(result.contains(&target.id().to_string()), "{result}");
    // The cause and its fix are named.
    assert!(
        result.contains("another user") && result.contains("CAP_SYS_PTRACE"),
        "{result}"
    );
}
