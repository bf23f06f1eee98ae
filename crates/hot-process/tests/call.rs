//! Injected function calls: a call with six arguments returns its result and leaves the
//! program running where it was; a callee that faults or never returns fails the call
//! cleanly, with the fault not delivered and the program undisturbed.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn injected_calls_return_fail_cleanly_and_leave_the_program_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "callee", &[]);
    let (debuggee, rx) = launch(&program, &[]);
    let line = wait_line(&rx, "the addresses", |l| l.starts_with("add6="));
    let (add6, crash, spin) = (
        hex_field(&line, "add6="),
        hex_field(&line, "crash="),
        hex_field(&line, "spin="),
    );
    wait_line(&rx, "a first tick", |l| l.starts_with("tick="));

    let timeout = Duration::from_secs(10);
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
    let err = debuggee
        .call_function(spin, &[], Duration::from_millis(300), "spin")
        .expect_err("spin never returns");
    assert!(err.to_string().contains("did not return"), "{err}");

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
