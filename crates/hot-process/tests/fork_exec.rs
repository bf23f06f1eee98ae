//! fork and exec in the program (issue 12): children forked while a swap holds the threads
//! are never traced or stopped (the seize follows clones, not forks), and a program that
//! calls exec is reported with the new image's path and then mapped and swapped as the new
//! image, not written as the old one.

mod common;

use std::sync::Arc;

use common::*;
use hot_process::{ProcessEvent, Protection};

/// The processes whose parent is `pid`, with their state letter and tracer.
fn children(pid: i32) -> Vec<(i32, char, i32)> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let value = |key: &str| status_field(&status, key);
        if value("PPid:").parse() == Ok(pid) {
            let state = value("State:").chars().next().unwrap_or('?');
            found.push((child, state, value("TracerPid:").parse().unwrap_or(-1)));
        }
    }
    found
}

#[test]
fn children_forked_while_the_threads_are_held_are_never_traced_or_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "forkloop", &["-fPIE", "-pie"]);
    let (debuggee, rx) = launch(&program, &[]);
    let debuggee = Arc::new(debuggee);
    let pid = debuggee.pid();
    let entry = hex_field(
        &wait_line(&rx, "value=", |l| l.starts_with("value=")),
        "value=",
    );
    let image = debuggee.image_range().expect("image");
    let swaps = 200u64;
    let arena = debuggee
        .map_arena(image, swaps * 16, Protection::ReadExecute)
        .expect("arena");
    let forks_before = field(
        &wait_line(&rx, "a tick", |l| l.starts_with("tick=")),
        "forks=",
    );
    let mut previous = debuggee.read_memory(entry, 5).expect("entry");
    let mut children_seen = 0;
    for i in 0..swaps {
        let (plan, jmp) = swap_plan(entry, arena + 16 * i, 2 + (i % 2) as u32, &previous);
        apply_within(&debuggee, &plan, &format!("swap {i}")).expect("swap");
        previous = jmp;
        // Right after the detach: any child forked meanwhile is still young.
        let kids = children(pid);
        children_seen += kids.len();
        for (child, state, tracer) in kids {
            assert!(
                tracer == 0 && state != 't' && state != 'T',
                "swap {i}: child {child} of {pid} is {state}, traced by {tracer}"
            );
        }
        assert_not_left_stopped(pid, &format!("swap {i}"));
    }
    // The forking thread goes on: no child is held anywhere, each exited with a valid code.
    let line = wait_line(&rx, "50 more forks", |l| {
        l.starts_with("tick=") && field(l, "forks=") > forks_before + 50
    });
    assert_eq!(field(&line, "child_bad="), 0, "{line}");
    assert_eq!(field(&line, "bad="), 0, "{line}");
    let forks = field(&line, "forks=") - forks_before;
    eprintln!("{swaps} swaps while forking: {forks} children, {children_seen} seen alive right after a swap");
}

#[test]
fn a_program_that_calls_exec_is_reported_and_swapped_as_its_new_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "execer", &["-fPIE", "-pie"]);
    let trigger = dir.path().join("exec-now");
    let trigger_arg = trigger.to_str().expect("utf-8 path");
    let (debuggee, rx) = launch(&program, &[trigger_arg]);
    let debuggee = Arc::new(debuggee);
    let pid = debuggee.pid();
    let swap_value = |line: &str, returned: u32, what: &str| {
        let entry = hex_field(line, "value=");
        let image = debuggee.image_range().expect("image");
        assert!(
            image.contains(&entry),
            "{what}: {entry:#x} not in {image:x?}"
        );
        let arena = debuggee
            .map_arena(image, 16, Protection::ReadExecute)
            .expect("arena");
        let previous = debuggee.read_memory(entry, 5).expect("entry");
        let (plan, _) = swap_plan(entry, arena, returned, &previous);
        apply_within(&debuggee, &plan, what).expect("swap");
        wait_line(&rx, what, |l| l.contains(&format!("got={returned}")));
        assert_not_left_stopped(pid, what);
        (entry, previous)
    };
    let line = wait_line(&rx, "value=", |l| l.starts_with("value="));
    let (old_entry, old_bytes) = swap_value(&line, 2, "the swap before exec");

    std::fs::write(&trigger, b"").expect("touch the trigger");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let path = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(ProcessEvent::Exec { path }) => break path,
            Ok(ProcessEvent::Exited { code, signal }) => panic!("exited: {code:?} {signal:?}"),
            Ok(ProcessEvent::Output { .. }) => {}
            Err(_) => panic!("no exec event"),
        }
    };
    let exe = std::fs::canonicalize(&program).expect("canonical");
    assert_eq!(path, exe.display().to_string());
    assert_eq!(debuggee.pid(), pid, "exec keeps the pid");
    // The fresh image runs value() as compiled; the old swap went with the old image.
    let line = wait_line(&rx, "the new image", |l| l.starts_with("value="));
    assert!(line.ends_with("gen=1"), "{line}");
    wait_line(&rx, "the new image's code", |l| l.contains("gen=1 got=1"));
    // Memory is read from the new image (the file of the old one would read nothing).
    let (new_entry, _) = swap_value(&line, 3, "the swap after exec");
    wait_line(&rx, "the new image swapped", |l| l.contains("gen=1 got=3"));
    if new_entry == old_entry {
        // Same address (no ASLR): the entry held the original bytes again before the swap.
        assert_ne!(
            debuggee.read_memory(new_entry, 5).expect("entry"),
            old_bytes
        );
    }
    eprintln!("exec reported ({path}); value() at {old_entry:#x} before, {new_entry:#x} after");
}

#[test]
fn exec_in_the_middle_of_back_to_back_stops_hangs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "execer", &["-fPIE", "-pie"]);
    let trigger = dir.path().join("exec-now");
    let (debuggee, rx) = launch(&program, &[trigger.to_str().expect("utf-8 path")]);
    let debuggee = Arc::new(debuggee);
    let pid = debuggee.pid();
    wait_line(&rx, "value=", |l| l.starts_with("value="));
    // Stop and release the program over and over while it calls exec, 10 times: each stop
    // meets the old image or the new one, none hangs, every exec is reported.
    let mut stops = 0;
    let mut failed = 0;
    let mut exec = String::new();
    for gen in 1..=10 {
        std::fs::write(&trigger, b"").expect("touch the trigger");
        let deadline = std::time::Instant::now() + TIMEOUT;
        // The lines reported before the exec event, for the failure message.
        let mut before_exec = Vec::new();
        exec = loop {
            match apply_within(&debuggee, &hot_process::WritePlan::default(), "a stop") {
                Ok(_) => stops += 1,
                Err(_) => failed += 1,
            }
            match rx.try_recv() {
                Ok(ProcessEvent::Exec { path }) => break path,
                Ok(ProcessEvent::Exited { code, signal }) => {
                    panic!("exited: {code:?} {signal:?}")
                }
                Ok(ProcessEvent::Output { text, .. }) => before_exec.push(text),
                _ => {}
            }
            assert!(std::time::Instant::now() < deadline, "no exec event {gen}");
        };
        wait_not_left_stopped(pid, &format!("after exec {gen}"));
        let line = wait_new_image(&rx, pid, gen, &before_exec);
        assert!(line.ends_with(&format!("gen={gen}")), "{line}");
        wait_line(&rx, "the new image runs", |l| {
            l.contains(&format!("gen={gen} got=1"))
        });
    }
    eprintln!("{stops} stops ({failed} refused) around 10 execs of {exec}");
}

/// The new image's first line (`value=`), failing after [`TIMEOUT`] with the program's task
/// states and the lines reported before the exec event: a program left stopped or blocked
/// shows in the first, a new image's line reported ahead of its exec in the second.
fn wait_new_image(
    rx: &crossbeam_channel::Receiver<ProcessEvent>,
    pid: i32,
    gen: i32,
    before_exec: &[String],
) -> String {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(ProcessEvent::Output { text, .. }) if text.starts_with("value=") => return text,
            Ok(ProcessEvent::Exited { code, signal }) => {
                panic!("exec {gen}: exited ({code:?}, {signal:?}) before the new image's line")
            }
            Ok(_) => {}
            Err(_) => {
                let tail = &before_exec[before_exec.len().saturating_sub(5)..];
                let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall"));
                panic!(
                    "exec {gen}: timed out waiting for the new image; threads: {:?}; \
                     /proc/{pid}/syscall: {syscall:?}; last lines before the exec event: {tail:?}",
                    task_states(pid)
                )
            }
        }
    }
}
