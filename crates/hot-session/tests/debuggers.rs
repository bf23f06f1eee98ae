//! Debuggers see swapped code (issue 11): after a swap the real gdb, attached to the running
//! program (hot-lsp detaches between swaps), names the new body and the saved file's line
//! through GDB's JIT interface, stops at a breakpoint set on a line of the new body, and
//! after undo no longer knows the withdrawn body. Fixture tests/fixtures/debugger.

mod common;

use std::process::Command as Process;

use common::*;
use hot_session::{Command, SessionEvent, Severity};

/// gdb attached to `pid` in batch mode running `commands`, then detaching (the program
/// runs on); its stdout and stderr. Bounded by `timeout` so a hang fails the test instead
/// of holding the program forever.
fn gdb(pid: i32, commands: &[&str]) -> String {
    let mut gdb = Process::new("timeout");
    gdb.args(["-k", "10", "120", "gdb", "-nx", "-batch", "-p"])
        .arg(pid.to_string())
        .env("DEBUGINFOD_URLS", "");
    for command in commands {
        gdb.args(["-ex", command]);
    }
    let out = gdb.output().expect("run gdb (Debian package gdb)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Where the last swap placed `name`, from the profiler's map hot-lsp keeps.
fn placed(pid: i32, name: &str) -> (u64, u64) {
    let map = std::fs::read_to_string(format!("/tmp/perf-{pid}.map")).expect("perf map");
    map.lines()
        .rev()
        .find_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let start = u64::from_str_radix(parts.next()?, 16).ok()?;
            let size = u64::from_str_radix(parts.next()?, 16).ok()?;
            (parts.next()? == name).then_some((start, size))
        })
        .unwrap_or_else(|| panic!("{name} is not in the perf map:\n{map}"))
}

/// The `0x...` value gdb printed after `key` (e.g. `$1 = ` for `p/x $pc`).
fn hex_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let hex = rest.trim_start().strip_prefix("0x")?;
    let end = hex
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(hex.len());
    u64::from_str_radix(&hex[..end], 16).ok()
}

#[test]
fn gdb_names_breaks_in_and_forgets_a_swapped_body() {
    let mut f = Fixture::launch("debugger");
    let pid = f.pid.expect("pid");
    f.wait_output("compute=10");
    f.edit(
        "main.c",
        "    nap();\n    return x * 1;",
        "    int y = x * 2;\n    nap();\n    return y;",
    );
    f.save("main.c");
    let swap = f.wait_swap();
    assert_eq!(swap.swapped, vec!["compute".to_string()], "{swap:?}");
    f.wait_output("compute=20");
    // The call of nap() is one line lower in the new body than in the executable's.
    let line = f.line_of("main.c", "    nap();");
    let (start, size) = placed(pid, "compute");
    let in_body = |addr: u64| (start..start + size).contains(&addr);

    // (1) A stop finds compute's frame on the main thread nearly always (it sleeps in
    // nap); gdb names it and the line of the new body.
    let frame = format!("main.c:{line}");
    let mut seen = String::new();
    for _ in 0..10 {
        seen = gdb(pid, &["thread apply all bt"]);
        if seen.contains(" compute ") {
            break;
        }
    }
    let compute_frame = seen
        .lines()
        .find(|l| l.contains(" compute ") && l.starts_with('#'))
        .unwrap_or_else(|| panic!("no frame of compute in gdb's backtrace:\n{seen}"));
    assert!(compute_frame.contains(&frame), "{compute_frame}\n{seen}");
    // `#2  0x000055d5c3a0f1a2 in compute () at .../main.c:16`
    let pc = compute_frame
        .split_whitespace()
        .find_map(|w| u64::from_str_radix(w.strip_prefix("0x")?, 16).ok())
        .unwrap_or_else(|| panic!("no address in {compute_frame}"));
    assert!(
        in_body(pc),
        "{pc:#x} is not in the new body {start:#x}+{size:#x}"
    );
    // Nothing else in the backtrace is left unnamed.
    assert!(!seen.contains("?? ()"), "{seen}");

    // (2) A breakpoint on that line stops in the new body.
    let hit = gdb(
        pid,
        &[
            &format!("break {frame}"),
            "continue",
            "p/x $pc",
            "info symbol $pc",
        ],
    );
    // `Breakpoint 1.1, compute () at /tmp/.../main.c:16`: one of two locations (the old
    // body has a line 16 too), the one in the new body.
    assert!(
        hit.lines()
            .any(|l| l.starts_with("Breakpoint 1") && l.contains("compute") && l.ends_with(&frame)),
        "{hit}"
    );
    let pc = hex_after(&hit, "$1 = ").unwrap_or_else(|| panic!("no pc:\n{hit}"));
    assert!(
        in_body(pc),
        "stopped at {pc:#x}, not in the new body:\n{hit}"
    );
    // `compute + 19 in section .text of <in-memory@0x...>`: the object hot-lsp announced.
    assert!(
        hit.lines()
            .any(|l| l.starts_with("compute + ") && l.contains("of <in-memory@")),
        "{hit}"
    );
    // Detached, the program runs on with the new code.
    f.wait_output("compute=20");

    // (3) Undo withdraws the body: gdb knows its address no more.
    let probe = format!("info symbol {start:#x}");
    let before = gdb(pid, &[&probe]);
    assert!(
        before.contains("compute in section .text of <in-memory@"),
        "{before}"
    );
    f.send(Command::Undo);
    f.wait("the undo", |e| match e {
        SessionEvent::Message {
            severity: Severity::Information,
            text,
        } if text.contains("reverted") => Some(()),
        _ => None,
    });
    f.wait_output("compute=10");
    let after = gdb(pid, &[&probe]);
    assert!(after.contains("No symbol matches"), "{after}");
    f.assert_same_process();
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
}
