//! Debuggers and swapped code (issue 11), with the real gdb: after a swap gdb, attached to
//! the running program (hot-lsp detaches between swaps), names the new body and the saved
//! file's line through GDB's JIT interface, stops at a breakpoint set on a line of the new
//! body, and after undo no longer knows the withdrawn body. A program gdb holds stopped
//! takes a swap (through /proc/PID/mem) and runs it when continued; one gdb lets run gets a
//! message and is swapped once gdb stops it. Fixture tests/fixtures/debugger; breakpoints
//! inside the bytes an entry jump covers: tests/fixtures/breakpoints.

mod common;

use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::Instant;

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

/// gdb attached to `pid` in batch mode, started in the background with `commands`; its
/// output is read when it has exited ([`finish`]).
fn gdb_in_background(pid: i32, commands: &[String]) -> Child {
    let mut gdb = Process::new("timeout");
    gdb.args(["-k", "10", "300", "gdb", "-nx", "-batch", "-p"])
        .arg(pid.to_string())
        .env("DEBUGINFOD_URLS", "")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for command in commands {
        gdb.args(["-ex", command]);
    }
    gdb.spawn().expect("run gdb (Debian package gdb)")
}

fn finish(gdb: Child) -> String {
    let out = gdb.wait_with_output().expect("wait for gdb");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// gdb's shell command that waits until `file` exists (how a test lets gdb go on).
fn gdb_wait_for(file: &Path) -> String {
    format!(
        "shell while [ ! -e '{}' ]; do sleep 0.02; done",
        file.display()
    )
}

/// Whether this machine's gdb can call a function in a program (`p f(21)`). gdb 13 cannot on
/// a CPU with AMX (Sapphire Rapids on): restoring the registers after the call writes an
/// xstate of the size it knows, the kernel wants its own (larger) size, and refuses:
/// "Couldn't write extended state status: Bad address", in any program, hot-lsp or not.
/// Probed once on a program of its own.
fn gdb_can_call_functions() -> bool {
    static CAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hot-lsp-gdb-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("probe folder");
        let (source, program) = (dir.join("probe.c"), dir.join("probe"));
        std::fs::write(
            &source,
            "int twice(int x) { return 2 * x; }\nint main(void) { return twice(0); }\n",
        )
        .expect("write the probe");
        let built = Process::new("cc")
            .args(["-g", "-O0", "-o"])
            .arg(&program)
            .arg(&source)
            .status()
            .expect("run cc");
        assert!(built.success(), "cc failed on the gdb probe");
        let out = Process::new("timeout")
            .args(["-k", "10", "120", "gdb", "-nx", "-batch"])
            .args([
                "-ex",
                "break main",
                "-ex",
                "run",
                "-ex",
                "p twice(21)",
                "-ex",
                "kill",
            ])
            .arg(&program)
            .env("DEBUGINFOD_URLS", "")
            .output()
            .expect("run gdb (Debian package gdb)");
        let _ = std::fs::remove_dir_all(&dir);
        String::from_utf8_lossy(&out.stdout).contains("$1 = 42")
    })
}

/// gdb's commands that have `function` run in the program and print its result as
/// `$N = VALUE`: gdb calling it (`p compute(10)`) where gdb can call functions
/// ([`gdb_can_call_functions`]); elsewhere the program's own next call of it (the fixtures
/// call it with the same arguments), stopped at a breakpoint, `finish`ed, and its return
/// register printed. Either way the call enters through the swapped entry.
fn gdb_result_of(function: &str, call: &str) -> Vec<String> {
    if gdb_can_call_functions() {
        return vec![format!("p {call}")];
    }
    eprintln!("gdb cannot call functions on this machine: checking {function}'s own call");
    [
        &format!("break {function}") as &str,
        "continue",
        "delete",
        "finish",
        "p $eax",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect()
}

/// Polls `done` until it holds, failing after [`TIMEOUT`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `TracerPid` and the state letter of `pid`.
fn traced_state(pid: i32) -> (i32, char) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let tracer = status_field(&status, "TracerPid:").parse().unwrap_or(0);
    let state = status_field(&status, "State:")
        .chars()
        .next()
        .unwrap_or('?');
    (tracer, state)
}

/// hot-lsp's code arena is mapped (right after launch): a swap needs no new mapping, which
/// a debugger holding the program would rule out.
fn wait_for_arena(pid: i32) {
    wait_until("the code arena", || {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        maps.lines().any(|l| {
            let mut fields = l.split_whitespace();
            let perms = fields.nth(1).unwrap_or("");
            perms.starts_with("r-x") && fields.nth(3).is_none()
        })
    });
}

/// The edit the tests make: compute() doubles, and its call of nap() moves a line down.
fn edit_compute(f: &Fixture) {
    f.edit(
        "main.c",
        "    nap();\n    return x * 1;",
        "    int y = x * 2;\n    nap();\n    return y;",
    );
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

/// gdb names the new body, its line, and the frames around it; a breakpoint on a line of it
/// stops there; undo withdraws it. Per row: the optimisation level the program and the save
/// are built with. At -O2 the new body has no frame pointer (`push %rbx; call nap`): gdb can
/// only unwind through it with the unwind table the announced object carries.
#[test]
fn gdb_names_breaks_in_and_forgets_a_swapped_body() {
    for level in ["-O0", "-O2"] {
        check_gdb_sees_swapped_code(level);
    }
}

fn check_gdb_sees_swapped_code(level: &str) {
    let mut f = Fixture::copy("debugger");
    f.write(
        "hot-lsp.toml",
        &format!(
            "[program]\npath = \"app\"\nbuild = \"cc {level} -g -o app main.c\"\n\n\
             [compile]\ncommand = \"cc {level} -g -c {{file}} -o {{output}}\"\n"
        ),
    );
    f.start();
    f.wait_launched();
    let pid = f.pid.expect("pid");
    f.wait_output("compute=10");
    edit_compute(&f);
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
    assert!(
        compute_frame.contains(&frame),
        "{level}: {compute_frame}\n{seen}"
    );
    // Unwound through the new frame into main, and nothing left unnamed.
    let below = seen
        .lines()
        .skip_while(|l| !l.contains(" compute "))
        .nth(1)
        .unwrap_or("");
    assert!(below.contains(" main "), "{level}: {below}\n{seen}");
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

/// The debugger fixture running, with gdb attached in the background: gdb runs `before`
/// (ending with the program stopped in gdb, or running under it), then says so by creating
/// a file ([`Held::wait_stopped`]), waits until the test lets it go on ([`Held::go_on`]),
/// runs `after` and detaches.
struct Held {
    f: Fixture,
    pid: i32,
    /// `None` once it has been let go on and has exited.
    gdb: Option<Child>,
    stopped: std::path::PathBuf,
    go: std::path::PathBuf,
}

fn held_by_gdb(before: &[&str], after: &[&str]) -> Held {
    let mut f = Fixture::launch("debugger");
    f.wait_output("compute=10");
    held_in(f, before, after)
}

/// [`held_by_gdb`] on a fixture already running.
fn held_in(f: Fixture, before: &[&str], after: &[&str]) -> Held {
    let pid = f.pid.expect("pid");
    wait_for_arena(pid);
    let (stopped, go) = (f.path("stopped"), f.path("go"));
    let mut commands: Vec<String> = before.iter().map(|c| c.to_string()).collect();
    commands.push(format!("shell touch '{}'", stopped.display()));
    commands.push(gdb_wait_for(&go));
    commands.extend(after.iter().map(|c| c.to_string()));
    let gdb = gdb_in_background(pid, &commands);
    Held {
        f,
        pid,
        gdb: Some(gdb),
        stopped,
        go,
    }
}

impl Held {
    /// Waits until gdb has run `before`.
    fn wait_stopped(&self, what: &str) {
        wait_until(what, || self.stopped.exists());
    }

    /// Lets gdb run `after` and detach; its output.
    fn go_on(&mut self) -> String {
        std::fs::write(&self.go, "").expect("let gdb go on");
        finish(self.gdb.take().expect("gdb let go on once"))
    }

    /// Saves the edit of compute and waits for its swap.
    fn save_edit(&mut self) {
        edit_compute(&self.f);
        self.f.save("main.c");
        let swap = self.f.wait_swap();
        assert_eq!(swap.swapped, vec!["compute".to_string()], "{swap:?}");
    }
}

/// gdb stops the program at a breakpoint (in nap, called by the old compute); a save then is
/// written through /proc/PID/mem while gdb holds it, and the program runs the new code once
/// gdb lets it go on: a call from gdb returns the new result, and so does the program.
#[test]
fn a_program_gdb_holds_at_a_breakpoint_takes_a_swap() {
    let mut after = vec!["delete".to_string()];
    after.extend(gdb_result_of("compute", "compute(10)"));
    let after: Vec<&str> = after.iter().map(String::as_str).collect();
    let mut held = held_by_gdb(&["break nap", "continue"], &after);
    held.wait_stopped("gdb stopping the program at nap");
    held.save_edit();
    // Still held: gdb has the program, hot-lsp never took it over.
    assert_ne!(
        traced_state(held.pid).0,
        0,
        "gdb no longer traces the program"
    );
    let said = held.go_on();
    assert!(
        said.lines()
            .any(|l| l.starts_with('$') && l.ends_with(" = 20")),
        "gdb's call of compute:\n{said}"
    );
    held.f.wait_output("compute=20");
    held.f.assert_same_process();
}

/// gdb attached and letting the program run: a save is refused with a message saying what
/// to do (the program is not stopped, nothing hangs), and swapped as soon as gdb stops the
/// program (here at SIGINT, which gdb intercepts).
#[test]
fn a_program_gdb_lets_run_is_swapped_once_gdb_stops_it() {
    let mut held = held_by_gdb(&["continue"], &[]);
    let pid = held.pid;
    wait_until("gdb running the program", || {
        let (tracer, state) = traced_state(pid);
        tracer != 0 && state != 't'
    });
    // Fresh lines: gdb has let the program go on (it also runs briefly between the attach
    // and the attach's stop).
    held.f.next_lines(2);
    edit_compute(&held.f);
    held.f.save("main.c");
    let said = held.f.wait_message(Severity::Error);
    assert!(
        said.contains("runs under gdb") && said.contains("stop it in the debugger"),
        "{said}"
    );
    // The program runs on (gdb lets it), with the old code.
    held.f.wait_output("compute=10");
    // SAFETY: plain system call on the test's own child; gdb intercepts the signal.
    unsafe { libc::kill(pid, libc::SIGINT) };
    held.wait_stopped("gdb stopping the program");
    let swap = held.f.wait_swap();
    assert_eq!(swap.swapped, vec!["compute".to_string()], "{swap:?}");
    let said = held.go_on();
    assert!(said.contains("detached"), "{said}");
    held.f.wait_output("compute=20");
    held.f.assert_same_process();
}

/// A breakpoint on the entry of the swapped function. gdb takes its breakpoints out while
/// the program is stopped (its default), so the swap writes the entry jump and gdb puts the
/// breakpoint back over it on `continue`: the breakpoint keeps stopping every call, and the
/// call goes on into the new body.
#[test]
fn a_breakpoint_on_a_swapped_entry_keeps_working() {
    // `*compute`: the first instruction (`break compute` stops after the prologue, in the
    // old body, which later calls never reach).
    let mut held = held_by_gdb(&["break *compute", "continue"], &["continue", "finish"]);
    held.wait_stopped("gdb stopping the program at compute");
    held.save_edit();
    let said = held.go_on();
    // Stopped again at the entry by the breakpoint, and that call returned the new result.
    assert_eq!(said.matches("Breakpoint 1, ").count(), 2, "{said}");
    assert!(said.contains("Value returned is $1 = 20"), "{said}");
    held.f.wait_output("compute=20");
    held.f.assert_same_process();
}

/// gdb keeping its breakpoints inserted while the program is stopped: the `int3` on the
/// entry is found where the swap would write its jump, and the save is refused naming the
/// breakpoint, with nothing written. Once gdb is gone, the next save swaps.
#[test]
fn a_breakpoint_left_inserted_on_an_entry_refuses_the_swap() {
    let mut held = held_by_gdb(
        &[
            "set breakpoint always-inserted on",
            "break *compute",
            "continue",
        ],
        &["delete"],
    );
    held.wait_stopped("gdb stopping the program at compute");
    edit_compute(&held.f);
    held.f.save("main.c");
    let said = held.f.wait_message(Severity::Error);
    assert!(
        said.contains("breakpoint (int3)") && said.contains("entry of compute"),
        "{said}"
    );
    held.go_on();
    // Nothing was written: the program runs the old code, and the next save swaps.
    held.f.wait_output("compute=10");
    held.f.save("main.c");
    let swap = held.f.wait_swap();
    assert_eq!(swap.swapped, vec!["compute".to_string()], "{swap:?}");
    held.f.wait_output("compute=20");
    held.f.assert_same_process();
}

/// The fixture `name` built and compiled with `flags` (`-O1 -g`).
fn launch_at(name: &str, flags: &str) -> Fixture {
    let mut f = Fixture::copy(name);
    f.write(
        "hot-lsp.toml",
        &format!(
            "[program]\npath = \"app\"\nbuild = \"cc {flags} -o app main.c\"\n\n\
             [compile]\ncommand = \"cc {flags} -c {{file}} -o {{output}}\"\n"
        ),
    );
    f.start();
    f.wait_launched();
    f
}

/// `len` bytes of `pid`'s memory at `addr`.
fn read_memory(pid: i32, addr: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut bytes = vec![0; len];
    mem.read_exact_at(&mut bytes, addr)
        .unwrap_or_else(|e| panic!("read {len} bytes at {addr:#x}: {e}"));
    bytes
}

/// How often gdb reported stopping at breakpoint 1 (`Breakpoint 1, ` or, for one of several
/// locations, `Breakpoint 1.2, `).
fn stops(said: &str) -> usize {
    said.lines()
        .filter(|l| {
            l.strip_prefix("Breakpoint 1")
                .is_some_and(|rest| rest.starts_with(", ") || rest.starts_with('.'))
        })
        .count()
}

/// A breakpoint gdb puts inside the first 5 bytes of a function hot-lsp swaps (`break f`
/// after an -O0 prologue, a line breakpoint at -O1 and -O2). Per row: the compile flags,
/// the function, gdb's breakpoint (`LINE` is the line of `line_of` in main.c), the edit, the
/// program's output before and after, what gdb's `p CALL` returns after, and the form of
/// the entry, which never puts the middle of a jump under the breakpoint.
struct BreakRow {
    flags: &'static str,
    function: &'static str,
    breakpoint: &'static str,
    line_of: &'static str,
    edit: (&'static str, &'static str),
    before: &'static str,
    after: &'static str,
    call: (&'static str, &'static str),
    form: EntryForm,
}

/// How the entry bytes look after the swap (hot-link's `entry.rs`).
#[derive(Debug)]
enum EntryForm {
    /// A 2-byte `jmp rel8` into padding; entry+2 onwards keep their bytes.
    Short,
    /// A 2-byte `jmp rel8` to a `jmp rel32` written at entry+N of the old body, where the
    /// breakpoint's statement is: every call still stops there.
    InBody(u64),
    /// The `jmp rel32` at the entry holds `int3` at each statement boundary entry+N it
    /// covers: gdb's breakpoint there changes no byte, and is no longer reached.
    Int3Proof(&'static [u64]),
}

const BREAK_ROWS: &[BreakRow] = &[
    // `break value` stops at entry+4, after `push %rbp; mov %rsp,%rbp`; no padding in reach:
    // a short jump to a jump from that statement.
    BreakRow {
        flags: "-O0 -g",
        function: "value",
        breakpoint: "break value",
        line_of: "    return 7;",
        edit: ("return 7;", "return 8;"),
        before: "value=7",
        after: "value=8",
        call: ("value()", "= 8"),
        form: EntryForm::InBody(4),
    },
    // At -O1 (no function alignment, no padding) prod's first statement is at entry+1,
    // after `push %rbx`, and its next past entry+5: the entry jump holds int3 at entry+1.
    BreakRow {
        flags: "-O1 -g",
        function: "prod",
        breakpoint: "break main.c:LINE",
        line_of: "    int p = a * 1000 + b;",
        edit: ("p * 7;", "p * 9;"),
        before: "prod=7014",
        after: "prod=9018",
        call: ("prod(1, 2)", "= 9018"),
        form: EntryForm::Int3Proof(&[1]),
    },
    // The line of sum's call of nap() is a statement at entry+4 (after `push %rbx; lea`);
    // functions are aligned, so a short jump into the padding before it leaves it alone.
    BreakRow {
        flags: "-O2 -g",
        function: "sum",
        breakpoint: "break main.c:LINE",
        line_of: "    nap();",
        edit: ("s * 3;", "s * 5;"),
        before: "sum=9",
        after: "sum=15",
        call: ("sum(1, 2)", "= 15"),
        form: EntryForm::Short,
    },
    // Without -g gdb's own prologue analysis puts `break value` at entry+4, after `push
    // %rbp; mov %rsp,%rbp`, with no line table to say so: the same form as with -g.
    BreakRow {
        flags: "-O0",
        function: "value",
        breakpoint: "break value",
        line_of: "    return 7;",
        edit: ("return 7;", "return 8;"),
        before: "value=7",
        after: "value=8",
        call: ("(int) value()", "= 8"),
        form: EntryForm::InBody(4),
    },
];

impl BreakRow {
    fn breakpoint(&self, f: &Fixture) -> String {
        match self.breakpoint.contains("LINE") {
            true => self
                .breakpoint
                .replace("LINE", &f.line_of("main.c", self.line_of).to_string()),
            false => self.breakpoint.to_string(),
        }
    }

    /// The entry of the function (before any swap, while gdb knows only the executable),
    /// once hot-lsp has mapped its arenas and let the program go.
    fn entry(&self, pid: i32) -> u64 {
        wait_for_arena(pid);
        wait_until("hot-lsp detached after mapping the arenas", || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .is_ok_and(|s| s.lines().any(|l| l.trim_end() == "TracerPid:\t0"))
        });
        let said = gdb(pid, &[&format!("p/x &{}", self.function)]);
        hex_after(&said, "$1 = ").unwrap_or_else(|| panic!("no address:\n{said}"))
    }

    /// The first bytes of the function are as the row's form leaves them: never the middle
    /// of a jump under the breakpoint's statement.
    fn check_form(&self, pid: i32, entry: u64, original: &[u8]) {
        let now = read_memory(pid, entry, 16);
        let level = self.flags;
        match self.form {
            EntryForm::Short => {
                assert_eq!(now[0], 0xeb, "{level}: a short jump: {now:02x?}");
                assert_eq!(now[2..], original[2..], "{level}: entry+2.. intact");
            }
            EntryForm::InBody(at) => {
                let at = at as usize;
                assert_eq!(now[0], 0xeb, "{level}: a short jump: {now:02x?}");
                assert_eq!(
                    now[1] as usize,
                    at - 2,
                    "{level}: to entry+{at}: {now:02x?}"
                );
                assert_eq!(
                    now[at], 0xe9,
                    "{level}: a jmp rel32 at entry+{at}: {now:02x?}"
                );
                assert_eq!(
                    now[at + 5..],
                    original[at + 5..],
                    "{level}: the rest intact"
                );
            }
            EntryForm::Int3Proof(offsets) => {
                assert_eq!(now[0], 0xe9, "{level}: a jmp rel32: {now:02x?}");
                for &at in offsets {
                    assert_eq!(
                        now[at as usize], 0xcc,
                        "{level}: int3 at entry+{at}: {now:02x?}"
                    );
                }
                assert_eq!(now[5..], original[5..], "{level}: entry+5.. intact");
            }
        }
    }

    /// Whether calls still stop at the breakpoint after the swap.
    fn still_stops(&self) -> bool {
        matches!(self.form, EntryForm::InBody(_))
    }
}

/// gdb stops the program at a breakpoint inside the first 5 bytes of `f` (it takes its
/// breakpoints out while stopped), and `finish`es it; the save is written while gdb holds the
/// program; gdb puts
/// its breakpoint back on `continue` over bytes the swap did not turn into the middle of a
/// jump: the program runs on, the new code computes the new result, nothing crashes.
#[test]
fn a_breakpoint_inside_the_entry_bytes_survives_a_swap_while_gdb_holds_the_program() {
    for row in BREAK_ROWS {
        let mut f = launch_at("breakpoints", row.flags);
        let pid = f.pid.expect("pid");
        f.wait_output(row.before);
        let entry = row.entry(pid);
        let original = read_memory(pid, entry, 16);
        let breakpoint = row.breakpoint(&f);
        // The row's breakpoint is where the row says: inside the entry jump's 5 bytes.
        let placed = gdb(pid, &[&breakpoint]);
        let at = hex_after(&placed, "Breakpoint 1 at ").unwrap_or_else(|| panic!("{placed}"));
        assert!(
            at > entry && at < entry + 5,
            "{}: {breakpoint} at {at:#x}, not inside the 5 bytes at {entry:#x}:\n{placed}",
            row.flags
        );
        let mut after: Vec<String> = if row.still_stops() {
            // Each call goes through the jump the breakpoint sits on.
            vec!["continue".into(), "delete".into()]
        } else {
            // The old body is not entered any more: its breakpoint is not hit again.
            vec!["delete".into()]
        };
        after.extend(gdb_result_of(row.function, row.call.0));
        let after: Vec<&str> = after.iter().map(String::as_str).collect();
        // Stopped at the breakpoint, then back in main: a thread stopped inside the entry
        // bytes refuses the swap (`a_thread_gdb_holds_inside_the_entry_bytes_refuses_the_swap`).
        let mut held = held_in(f, &[&breakpoint, "continue", "finish"], &after);
        held.wait_stopped("gdb stopping the program at the breakpoint");
        held.f.edit("main.c", row.edit.0, row.edit.1);
        held.f.save("main.c");
        let swap = held.f.wait_swap();
        assert_eq!(
            swap.swapped,
            vec![row.function.to_string()],
            "{}: {swap:?}",
            row.flags
        );
        row.check_form(pid, entry, &original);
        let said = held.go_on();
        let hits = if row.still_stops() { 2 } else { 1 };
        assert_eq!(stops(&said), hits, "{}: {said}", row.flags);
        assert!(
            said.lines()
                .any(|l| l.starts_with('$') && l.ends_with(row.call.1)),
            "{}: gdb's call of {}:\n{said}",
            row.flags,
            row.call.0
        );
        held.f.wait_output(row.after);
        held.f.assert_same_process();
    }
}

/// The swap made while no debugger is attached; then gdb attaches and sets the breakpoint
/// inside the first 5 bytes of the swapped function: it lands on bytes the swap left
/// intact or on the jump's first byte, so calls stop there and go on into the new body.
#[test]
fn a_breakpoint_set_inside_the_entry_bytes_after_a_swap_stops_and_runs_the_new_code() {
    for row in BREAK_ROWS {
        let mut f = launch_at("breakpoints", row.flags);
        let pid = f.pid.expect("pid");
        f.wait_output(row.before);
        let entry = row.entry(pid);
        let original = read_memory(pid, entry, 16);
        f.edit("main.c", row.edit.0, row.edit.1);
        f.save("main.c");
        let swap = f.wait_swap();
        assert_eq!(
            swap.swapped,
            vec![row.function.to_string()],
            "{}: {swap:?}",
            row.flags
        );
        f.wait_output(row.after);
        row.check_form(pid, entry, &original);
        // Two stops (in the old bytes' jump or in the new body, whose line gdb knows through
        // the JIT interface), then the call returns the new result (the announced object
        // has no types, so gdb prints no "Value returned": the register holds it).
        let breakpoint = row.breakpoint(&f);
        let said = gdb(
            pid,
            &[
                &breakpoint,
                "continue",
                "continue",
                "delete",
                "finish",
                "p $eax",
            ],
        );
        assert_eq!(stops(&said), 2, "{}: {said}", row.flags);
        let value = row.after.split('=').nth(1).expect("a value");
        assert!(
            said.lines()
                .any(|l| l.starts_with('$') && l.ends_with(&format!(" = {value}"))),
            "{}: {said}",
            row.flags
        );
        f.wait_output(row.after);
        f.assert_same_process();
    }
}

/// gdb keeping its breakpoints inserted while the program is stopped, with `break value` at
/// entry+4 of the -O0 function: the `int3` sits where the jump inside the old body goes,
/// so the save is refused naming the breakpoint, nothing written; once gdb is gone, the next
/// save swaps.
#[test]
fn a_breakpoint_left_inserted_inside_the_entry_bytes_refuses_the_swap() {
    let row = &BREAK_ROWS[0];
    let mut f = launch_at("breakpoints", row.flags);
    let pid = f.pid.expect("pid");
    f.wait_output(row.before);
    let entry = row.entry(pid);
    let original = read_memory(pid, entry, 16);
    let mut held = held_in(
        f,
        &[
            "set breakpoint always-inserted on",
            row.breakpoint,
            "continue",
            // Back in main: the int3, not the thread, is what refuses the swap.
            "finish",
        ],
        &["delete"],
    );
    held.wait_stopped("gdb stopping the program at value");
    held.f.edit("main.c", row.edit.0, row.edit.1);
    held.f.save("main.c");
    let said = held.f.wait_message(Severity::Error);
    assert!(
        said.contains("breakpoint (int3)") && said.contains("value"),
        "{said}"
    );
    let mut int3 = original.clone();
    int3[4] = 0xcc;
    assert_eq!(
        read_memory(pid, entry, 16),
        int3,
        "only gdb's int3 at entry+4"
    );
    held.go_on();
    // Nothing was written: the program runs the old code, and the next save swaps.
    held.f.wait_output(row.before);
    assert_eq!(read_memory(pid, entry, 16), original);
    held.f.save("main.c");
    let swap = held.f.wait_swap();
    assert_eq!(swap.swapped, vec![row.function.to_string()], "{swap:?}");
    held.f.wait_output(row.after);
    row.check_form(pid, entry, &original);
    held.f.assert_same_process();
}

/// At -O1 sum's statements are at entry+1 and entry+4: no entry form avoids both, so its
/// jump covers one. While gdb holds the program (its breakpoint at entry+1 taken out, to be
/// put back over whatever is there on `continue`) the swap is refused, naming the function
/// and nothing written; once gdb has detached, the same save swaps (with a note).
#[test]
fn an_entry_jump_over_a_statement_is_refused_while_gdb_holds_the_program() {
    let mut f = launch_at("breakpoints", "-O1 -g");
    let pid = f.pid.expect("pid");
    f.wait_output("sum=9");
    let said = gdb(pid, &["p/x &sum"]);
    let entry = hex_after(&said, "$1 = ").unwrap_or_else(|| panic!("no address:\n{said}"));
    let original = read_memory(pid, entry, 16);
    let line = f.line_of("main.c", "    int s = a + b;");
    let breakpoint = format!("break main.c:{line}");
    let mut held = held_in(f, &[&breakpoint, "continue"], &["delete"]);
    held.wait_stopped("gdb stopping the program in sum");
    held.f.edit("main.c", "s * 3;", "s * 5;");
    held.f.save("main.c");
    let said = held.f.wait_message(Severity::Error);
    assert!(
        said.contains("holds the program") && said.contains("`sum`") && said.contains("entry+1"),
        "{said}"
    );
    assert_eq!(read_memory(pid, entry, 16), original, "nothing written");
    held.go_on();
    held.f.wait_output("sum=9");
    held.f.save("main.c");
    let swap = held.f.wait_swap();
    assert_eq!(swap.swapped, vec!["sum".to_string()], "{swap:?}");
    held.f.wait_output("sum=15");
    held.f.assert_same_process();
}

/// gdb holds a thread at `break value`, at entry+4 of the -O0 function, which the jump inside
/// the old body overwrites: the thread has run the prologue and must go on in the old body,
/// so the swap is refused (saying how to step it out), nothing written; once gdb has
/// detached, the same save swaps.
#[test]
fn a_thread_gdb_holds_inside_the_entry_bytes_refuses_the_swap() {
    let row = &BREAK_ROWS[0];
    let mut f = launch_at("breakpoints", row.flags);
    let pid = f.pid.expect("pid");
    f.wait_output(row.before);
    let entry = row.entry(pid);
    let original = read_memory(pid, entry, 16);
    let mut held = held_in(f, &[row.breakpoint, "continue"], &["delete"]);
    held.wait_stopped("gdb stopping the program at value");
    held.f.edit("main.c", row.edit.0, row.edit.1);
    held.f.save("main.c");
    let said = held.f.wait_message(Severity::Error);
    assert!(
        said.contains("stopped by gdb inside the entry of value") && said.contains("stepi"),
        "{said}"
    );
    assert_eq!(read_memory(pid, entry, 16), original, "nothing written");
    held.go_on();
    held.f.wait_output(row.before);
    held.f.save("main.c");
    let swap = held.f.wait_swap();
    assert_eq!(swap.swapped, vec![row.function.to_string()], "{swap:?}");
    held.f.wait_output(row.after);
    row.check_form(pid, entry, &original);
    held.f.assert_same_process();
}
