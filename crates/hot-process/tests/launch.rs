//! Launching: errors, output forwarding, exit codes, stop/detach, and no orphans when the
//! owner process dies.

mod common;

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

use common::*;
use hot_process::{Debuggee, LaunchSpec, ProcessError, ProcessEvent, Stream};

#[test]
fn missing_program_gives_a_clear_launch_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let missing = dir.path().join("no-such-program");
    let err = Debuggee::launch(&spec(&missing, &[]), tx)
        .err()
        .expect("launch must fail");
    match &err {
        ProcessError::Launch { path, message } => {
            assert_eq!(path, &missing);
            assert!(message.contains("No such file or directory"), "{message}");
        }
        other => panic!("expected a Launch error, got {other:?}"),
    }
    assert!(err.to_string().contains("no-such-program"), "{err}");
}

#[test]
fn non_executable_and_bad_cwd_are_launch_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("not-a-program");
    std::fs::write(&text, "hello").expect("write");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let err = Debuggee::launch(&spec(&text, &[]), tx.clone())
        .err()
        .expect("must fail");
    assert!(
        matches!(&err, ProcessError::Launch { message, .. } if message.contains("Permission denied")),
        "{err:?}"
    );
    let program = compile(dir.path(), "outputs", &[]);
    let mut bad_cwd = spec(&program, &[]);
    bad_cwd.cwd = dir.path().join("missing-dir");
    let err = Debuggee::launch(&bad_cwd, tx).err().expect("must fail");
    assert!(
        matches!(&err, ProcessError::Launch { message, .. } if message.contains("missing-dir")),
        "{err:?}"
    );
}

#[test]
fn output_lines_partial_lines_and_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "outputs", &[]);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut launch = spec(&program, &["a", "b"]);
    launch.env.push(("HOT_PROCESS_TEST".into(), "yes".into()));
    let debuggee = Debuggee::launch(&launch, tx).expect("launch");
    assert!(debuggee.launched());
    let mut events = Vec::new();
    loop {
        let event = rx.recv_timeout(TIMEOUT).expect("event");
        let done = matches!(event, ProcessEvent::Exited { .. });
        events.push(event);
        if done {
            break;
        }
    }
    let out = |stream, text: &str| ProcessEvent::Output {
        stream,
        text: text.into(),
    };
    assert!(
        events.contains(&out(Stream::Stdout, "hello stdout")),
        "{events:?}"
    );
    assert!(
        events.contains(&out(Stream::Stderr, "hello stderr")),
        "{events:?}"
    );
    assert!(
        events.contains(&out(Stream::Stdout, "args=3 cwd-env=yes")),
        "{events:?}"
    );
    // The program pauses 300 ms after "partial": it is flushed on its own.
    let partial = events
        .iter()
        .position(|e| e == &out(Stream::Stdout, "partial"));
    let rest = events
        .iter()
        .position(|e| e == &out(Stream::Stdout, " end"));
    assert!(partial.is_some() && rest > partial, "{events:?}");
    assert_eq!(
        events.last(),
        Some(&ProcessEvent::Exited {
            code: Some(3),
            signal: None
        })
    );
    // Requests after the exit say so.
    assert!(matches!(
        debuggee.apply(&Default::default()),
        Err(ProcessError::Exited)
    ));
}

#[test]
fn stop_kills_and_reaps_drop_kills_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "spin", &[]);
    let (debuggee, rx) = launch(&program, &["1", "sleep"]);
    wait_line(&rx, "first tick", |l| l.starts_with("tick="));
    let pid = debuggee.pid();
    debuggee.stop();
    // Reaped by stop(): the pid is gone at once, not a zombie.
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err(),
        "pid {pid} still exists"
    );
    assert_eq!(wait_exit(&rx), (None, Some(libc::SIGKILL)));

    let (debuggee, rx) = launch(&program, &["1", "sleep"]);
    wait_line(&rx, "first tick", |l| l.starts_with("tick="));
    let pid = debuggee.pid();
    drop(debuggee);
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err(),
        "pid {pid} still exists"
    );
}

#[test]
fn detach_leaves_it_running_and_still_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "spin", &[]);
    let (debuggee, rx) = launch(&program, &["1", "sleep"]);
    wait_line(&rx, "first tick", |l| l.starts_with("tick="));
    let pid = debuggee.pid();
    debuggee.detach();
    let before = field(
        &wait_line(&rx, "a tick", |l| l.starts_with("tick=")),
        "tick=",
    );
    wait_line(&rx, "a later tick", |l| field(l, "tick=") > before + 2);
    assert!(!is_dead(pid));
    // SAFETY: plain system call on the test's own program.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(wait_exit(&rx), (None, Some(libc::SIGTERM)));
    assert!(wait_dead(pid));
}

#[test]
fn disable_aslr_loads_a_pie_at_the_fixed_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "spin", &["-fPIE", "-pie"]);
    let (tx, rx) = crossbeam_channel::unbounded();
    let debuggee = Debuggee::launch(
        &LaunchSpec {
            disable_aslr: true,
            ..spec(&program, &["1", "sleep"])
        },
        tx,
    )
    .expect("launch");
    wait_line(&rx, "value", |l| l.starts_with("value="));
    assert_eq!(
        debuggee.image_range().expect("image").start,
        0x5555_5555_4000
    );
}

/// Runs twice: as the test, it re-executes this test binary as a helper that launches a
/// program and prints its pid; then it SIGKILLs the helper and expects the program to die
/// (PR_SET_PDEATHSIG).
#[test]
fn program_dies_with_its_owner_process() {
    const HELPER: &str = "HOT_PROCESS_ORPHAN_HELPER";
    if let Some(dir) = std::env::var_os(HELPER) {
        let program = compile(std::path::Path::new(&dir), "spin", &[]);
        let (debuggee, rx) = launch(&program, &["1", "sleep"]);
        wait_line(&rx, "first tick", |l| l.starts_with("tick="));
        // Straight to the descriptor: libtest captures println! output.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "PROGRAM_PID={}", debuggee.pid()).expect("write");
        stdout.flush().expect("flush");
        // Wait to be killed; keep the debuggee alive.
        loop {
            std::thread::park();
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut helper = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--exact",
            "program_dies_with_its_owner_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let stdout = helper.stdout.take().expect("stdout");
    let (pid_tx, pid_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            // libtest may have printed "test name ... " before it on the same line.
            if let Some((_, pid)) = line.split_once("PROGRAM_PID=") {
                let _ = pid_tx.send(pid.trim().parse::<i32>().ok());
                return;
            }
        }
        let _ = pid_tx.send(None);
    });
    let program_pid = pid_rx.recv_timeout(TIMEOUT).ok().flatten();
    let Some(program_pid) = program_pid else {
        let _ = helper.kill();
        panic!("the helper did not print the program's pid");
    };
    assert!(!is_dead(program_pid));
    helper.kill().expect("kill helper");
    helper.wait().expect("wait helper");
    assert!(
        wait_dead(program_pid),
        "program {program_pid} outlived its owner"
    );
}

/// stop() kills the program's whole process group: children it started go too.
#[test]
fn stop_takes_the_programs_children_along() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "forker", &[]);
    let (debuggee, rx) = launch(&program, &[]);
    let child = field(
        &wait_line(&rx, "child=", |l| l.starts_with("child=")),
        "child=",
    ) as i32;
    assert!(!is_dead(child));
    debuggee.stop();
    assert!(wait_dead(child), "child {child} survived stop()");
}
