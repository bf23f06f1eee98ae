//! Injected function calls: a call with six arguments returns its result and leaves the
//! program running where it was; a callee that faults fails the call cleanly, with the
//! fault not delivered and the program undisturbed; a callee that waits for a stopped
//! thread finishes once the others are let go; one that does not return is left running,
//! never pulled back, and goes back where it was by itself when it does return. Calls made
//! while a thread is inside `clone`, in threads that block SIGSEGV or in a program that
//! ignores it, leave the program intact.

mod common;

use std::time::Duration;

use hot_process::{CallLimits, Write, WritePlan};

use common::*;

#[test]
fn injected_calls_return_fail_cleanly_and_leave_the_program_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "callee", &[]);
    let (debuggee, rx) = launch(&program, &[]);
    let line = wait_line(&rx, "the addresses", |l| l.starts_with("add6="));
    let (add6, crash, spin, wait_peer, spin_release) = (
        hex_field(&line, "add6="),
        hex_field(&line, "crash="),
        hex_field(&line, "spin="),
        hex_field(&line, "wait_peer="),
        hex_field(&line, "spin_release="),
    );
    wait_line(&rx, "a first tick", |l| l.starts_with("tick="));

    let timeout = CallLimits {
        stopped: Duration::from_secs(10),
        total: TIMEOUT,
    };
    for round in 1..=3 {
        let value = debuggee
            .call_function(add6, &[1, 2, 3, 4, 5, 6], timeout, "add6")
            .expect("call add6");
        assert_eq!(value, 654321);
        // The call ran in the program: its counter moved, and the sleep it interrupted
        // went on without an error.
        let line = wait_line(&rx, "a tick counting the call", |l| {
            l.starts_with("tick=") && field(l, "calls=") == round
        });
        assert_eq!(field(&line, "sleep_errno="), 0, "{line}");
    }

    let err = debuggee
        .call_function(crash, &[8], timeout, "crash")
        .expect_err("crash faults");
    assert!(err.to_string().contains("faulted"), "{err}");
    // A callee waiting for a thread that is stopped finishes once the others are let go.
    let briefly = CallLimits {
        stopped: Duration::from_millis(200),
        total: TIMEOUT,
    };
    let value = debuggee
        .call_function(wait_peer, &[], briefly, "wait_peer")
        .expect("wait_peer returns once the math thread runs");
    assert_eq!(value, 7);
    // One that does not return in time is left running, never pulled back mid-callee...
    let err = debuggee
        .call_function(
            spin,
            &[],
            CallLimits {
                stopped: Duration::from_millis(200),
                total: Duration::from_millis(600),
            },
            "spin",
        )
        .expect_err("spin does not return until released");
    assert!(err.to_string().contains("did not return"), "{err}");
    assert!(err.to_string().contains("left running"), "{err}");
    // ... and put back where it was when it returns (released by a write).
    let release = WritePlan {
        prepare: vec![Write {
            addr: spin_release,
            bytes: 1u64.to_le_bytes().to_vec(),
            expected: None,
            what: "spin_release".into(),
        }],
        ..WritePlan::default()
    };
    debuggee.apply(&release).expect("release spin");

    // Neither the fault nor the abandoned call disturbed the program: it ticks on, its
    // sleeps and its spinning thread's floating-point registers intact.
    let after = wait_line(&rx, "a tick after the failed calls", |l| {
        l.starts_with("tick=")
    });
    let tick = field(&after, "tick=");
    let later = wait_line(&rx, "a later tick", |l| {
        l.starts_with("tick=") && field(l, "tick=") > tick + 2
    });
    assert_eq!(field(&later, "calls="), 3, "{later}");
    assert_eq!(field(&later, "sleep_errno="), 0, "{later}");
    assert_eq!(field(&later, "bad_math="), 0, "{later}");
    assert_not_left_stopped(debuggee.pid(), "after the calls");
    // Still one call away from working.
    let value = debuggee
        .call_function(add6, &[6, 5, 4, 3, 2, 1], timeout, "add6")
        .expect("call add6 again");
    assert_eq!(value, 123456);
}

/// Launches `fixture` (which prints `add=ADDR`, then ticks `tick=N calls=M ok=0|1`), makes
/// `rounds` calls of `add` (and, with `crash`, one of the fixture's faulting `crash=ADDR`),
/// and checks that every call returned its sum, the crash failed, and that every tick after
/// them says ok=1 (the fixture's own checks of what calls must not disturb).
fn check_calls_leave_program_intact(fixture: &str, args: &[&str], rounds: i64, crash: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), fixture, &[]);
    let (debuggee, rx) = launch(&program, args);
    let line = wait_line(&rx, "the address", |l| l.starts_with("add="));
    let add = hex_field(&line, "add=");
    wait_line(&rx, "a first tick", |l| l.starts_with("tick="));
    let limits = CallLimits {
        stopped: Duration::from_secs(10),
        total: TIMEOUT,
    };
    for round in 0..rounds {
        let value = debuggee
            .call_function(add, &[round as u64, 1], limits, "add")
            .unwrap_or_else(|e| panic!("{fixture}: call {round}: {e}"));
        assert_eq!(value, round as u64 + 1, "{fixture}: call {round}");
    }
    if crash {
        let err = debuggee
            .call_function(hex_field(&line, "crash="), &[1], limits, "crash")
            .expect_err("crash faults");
        assert!(err.to_string().contains("faulted"), "{fixture}: {err}");
    }
    // Every tick from the one that counts the last call on is healthy.
    let first = wait_line(&rx, "a tick counting every call", |l| {
        l.starts_with("tick=") && field(l, "calls=") == rounds
    });
    let tick = field(&first, "tick=");
    let mut line = first.clone();
    loop {
        assert_eq!(field(&line, "ok="), 1, "{fixture}: {line}");
        if field(&line, "tick=") > tick + 3 {
            break;
        }
        line = wait_line(&rx, "a later tick", |l| l.starts_with("tick="));
    }
    // A fixture that counts its threads' work (clones: joins=) still does it.
    if first.contains("joins=") {
        assert!(
            field(&line, "joins=") > field(&first, "joins="),
            "{fixture}: no thread joined from {first} to {line}"
        );
    }
    assert_not_left_stopped(debuggee.pid(), fixture);
}

#[test]
fn calls_while_threads_clone_or_block_sigsegv_leave_the_program_intact() {
    // A thread held inside clone must never run a call (its clone would fail and glibc's
    // fallback put two threads on one stack); threads that block SIGSEGV keep their masks
    // and the program its SIGSEGV handler, or its SIGSEGV ignored (nothing on a call's way
    // back faults).
    // (fixture, arguments, calls, then a call that faults): a callee faulting in a thread
    // that blocks SIGSEGV leaves the handler installed. (In a program that ignores SIGSEGV
    // the kernel resets it when a callee faults, which the error then says: not a row.)
    for (fixture, args, rounds, crash) in [
        ("clones", &[][..], 1000, false),
        ("masked", &[][..], 50, true),
        ("masked", &["ignore"][..], 50, false),
    ] {
        check_calls_leave_program_intact(fixture, args, rounds, crash);
    }
}
