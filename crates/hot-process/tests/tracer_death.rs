//! A hot-lsp that dies in the middle of an injected system call (SIGKILL, the OOM killer, a
//! crash) leaves the program running exactly as it was. The tracer is this test binary run
//! again as a child process: it attaches to the regkeeper fixture, maps an arena, and
//! `_exit`s at the Nth point inside the injections (`fault::arm_stages`), N = 1, 2, ... until
//! a run passes every point. The first run maps the trampoline page the framed way and then
//! the arena through it; later tracers find the page and use it. After each death the
//! fixture must run on untraced with every register, its FP control word, its signal mask
//! and alternate stack as they were; it checks all of that itself after every sleep. Through
//! the trampoline its sleep must also go on undisturbed; the framed way may end it early with
//! EINTR (a sleep interrupted twice cannot be continued after `rt_sigreturn`).

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use crossbeam_channel::Receiver;
use hot_process::fault;
use hot_process::{CallLimits, Debuggee, Protection};

/// The environment variable that makes this test's process the tracer: `PID:N:WHAT`, WHAT
/// `mmap`, `call=ADDRESS` (of the fixture's `twice`) or `crash=ADDRESS` (of its `crash`).
const TRACER: &str = "HOT_TRACER_DEATH";
/// The tracer's exit code once the injection completed without reaching point N.
const COMPLETED: i32 = 10;

/// The tracer: attaches to the pid, maps an arena or calls `twice(21)`, and `_exit`s at the
/// `die_at`-th point of the injections, naming it on stderr first.
fn act_as_tracer(spec: &str) -> ! {
    let mut parts = spec.splitn(3, ':');
    let (pid, die_at, what) = (|| {
        Some((
            parts.next()?.parse::<i32>().ok()?,
            parts.next()?.parse::<u32>().ok()?,
            parts.next()?.to_string(),
        ))
    })()
    .expect("HOT_TRACER_DEATH=PID:N:WHAT");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let debuggee = Debuggee::attach(pid, tx).expect("attach");
    let near = debuggee.image_range().expect("image range");
    let mut seen = 0;
    fault::arm_stages(move |way, stage| {
        seen += 1;
        if seen == die_at {
            eprintln!("dying at: {way}: {stage}");
            // SAFETY: ends this process on the spot, as a SIGKILL would.
            unsafe { libc::_exit(0) };
        }
    });
    let address = |a: &str| u64::from_str_radix(a.trim_start_matches("0x"), 16).expect("address");
    let limits = CallLimits {
        stopped: TIMEOUT,
        total: TIMEOUT,
    };
    let result = match what.split_once('=') {
        None => debuggee
            .map_arena(near, 1 << 20, Protection::ReadWrite)
            .map(|addr| eprintln!("mapped at {addr:#x}")),
        Some(("call", at)) => debuggee
            .call_function(address(at), &[21], limits, "twice")
            .map(|value| assert_eq!(value, 42, "twice(21)")),
        Some((_, at)) => match debuggee.call_function(address(at), &[21], limits, "crash") {
            Err(e) if e.to_string().contains("faulted") => Ok(()),
            other => panic!("crash(21) did not fault: {other:?}"),
        },
    };
    match result {
        Ok(()) => std::process::exit(COMPLETED),
        Err(e) => {
            eprintln!("the injection failed: {e}");
            std::process::exit(11);
        }
    }
}

/// Waits for `count` more "ok" lines, failing on a "BAD" one, on the end of the output
/// (the program died) or after the timeout. Returns how many sleeps ended with EINTR.
fn runs_on(lines: &Receiver<String>, count: usize, when: &str) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    let (mut seen, mut interrupted) = (0, 0);
    while seen < count {
        match lines.recv_deadline(deadline) {
            Ok(line) if line.starts_with("BAD") => panic!("{when}: {line}"),
            Ok(line) if line.starts_with("ok") => seen += 1,
            Ok(line) if line.starts_with("eintr") => interrupted += 1,
            Ok(_) => {}
            Err(e) => panic!("{when}: the program stopped printing ({e})"),
        }
    }
    interrupted
}

/// Runs tracers doing `what` that die at point `first`, `first + 1`, ... until one
/// completes; after each, the program must run on untraced and intact. Returns (point,
/// sleeps cut short) of each.
fn kill_the_tracer_at_every_point(
    pid: i32,
    lines: &Receiver<String>,
    what: &str,
    first: u32,
) -> Vec<(String, usize)> {
    let mut points = Vec::new();
    for die_at in first.. {
        assert!(die_at < 30, "the tracer never got through: {points:?}");
        let tracer = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(TRACER, format!("{pid}:{die_at}:{what}"))
            .output()
            .expect("run the tracer");
        let stderr = String::from_utf8_lossy(&tracer.stderr);
        let when = format!("after a tracer ({what}) that ended at point {die_at} ({stderr})");
        wait_not_left_stopped(pid, &when);
        let interrupted = runs_on(lines, 2, &when);
        match tracer.status.code() {
            Some(COMPLETED) => return points,
            Some(0) => points.push((
                stderr
                    .lines()
                    .find_map(|l| l.strip_prefix("dying at: "))
                    .unwrap_or("?")
                    .to_string(),
                interrupted,
            )),
            other => panic!("the tracer failed ({other:?}): {stderr}"),
        }
    }
    unreachable!()
}

/// Asserts that the tracer died at each of `expected` (`way: point`).
fn died_at_each(points: &[(String, usize)], expected: &[&str]) {
    for point in expected {
        assert!(
            points.iter().any(|(p, _)| p == point),
            "the tracer never died at {point:?}: {points:?}"
        );
    }
}

const TEST: &str = "a_tracer_dying_anywhere_in_an_injection_leaves_the_program_as_it_was";

#[test]
fn a_tracer_dying_anywhere_in_an_injection_leaves_the_program_as_it_was() {
    if let Ok(spec) = std::env::var(TRACER) {
        act_as_tracer(&spec);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "regkeeper", &[]);
    let mut child = Command::new(&program)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn regkeeper");
    let pid = child.id() as i32;
    let lines = lines_of(&mut child);
    let ready = lines.recv_timeout(TIMEOUT).expect("the ready line");
    let (twice, crash) = ready
        .strip_prefix("ready twice=")
        .and_then(|rest| rest.split_once(" crash="))
        .unwrap_or_else(|| panic!("not the ready line: {ready}"));
    assert_eq!(runs_on(&lines, 1, "before any tracer"), 0);

    // The first tracer maps the trampoline page the framed way, then the arena through it.
    let mmaps = kill_the_tracer_at_every_point(pid, &lines, "mmap", 1);
    let stops = [
        "registers set",
        "entry stop",
        "exit stop",
        "interrupted",
        "registers put back",
    ];
    let expected: Vec<String> = ["framed", "trampoline"]
        .iter()
        .flat_map(|way| stops.iter().map(move |stop| format!("{way}: {stop}")))
        .collect();
    died_at_each(
        &mmaps,
        &expected.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // A call, through the trampoline page that tracer left.
    let calls = kill_the_tracer_at_every_point(pid, &lines, &format!("call={twice}"), 1);
    died_at_each(
        &calls,
        &[
            "call: registers set",
            "call: a system call of the callee",
            "call: returned",
            "call: interrupted",
            "call: registers put back",
        ],
    );
    // A call whose callee faults: held at the fault, the thread is sent home first. (A
    // tracer dying before the fault leaves the callee to fault untraced, which kills the
    // program as the fault would have without hot-lsp: from point 2, the fault, on.)
    let faults = kill_the_tracer_at_every_point(pid, &lines, &format!("crash={crash}"), 2);
    died_at_each(
        &faults,
        &[
            "call: faulted",
            "call: interrupted",
            "call: registers put back",
        ],
    );
    for (point, interrupted) in mmaps.iter().chain(&calls).chain(&faults) {
        if !point.starts_with("framed") {
            assert_eq!(*interrupted, 0, "a sleep ended early after {point:?}");
        }
    }
    eprintln!(
        "the tracer died at {} points of an mmap, {} of a call and {} of a faulting call \
         ((point, sleeps cut short by EINTR): {mmaps:?} {calls:?} {faults:?}); the program ran \
         on with its registers, FP state, mask and alternate stack intact after each",
        mmaps.len(),
        calls.len(),
        faults.len()
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
}
