//! Saves that do not wait their turn: a save arriving while a swap runs, a save while the
//! program is still being built and launched, and 50 saves of one file in one second. The
//! session takes them one at a time (coalescing saves already queued): whatever happens in
//! between, the last content saved is what ends up running, nothing deadlocks, and no save
//! is lost. The program's output is not held up behind a long background baseline compile
//! either. (Two workspaces swapping at once: server/tests/concurrency.rs.)

mod common;

use std::time::{Duration, Instant};

use common::{field, Fixture};
use hot_session::{Command, Phase, Progress, SessionEvent, Severity, State};

/// `return x * {factor};` as compute's body in basic's main.c.
fn set_factor(f: &Fixture, factor: u32) {
    let path = f.path("main.c");
    let text = std::fs::read_to_string(&path).expect("read main.c");
    let start = text.find("return x * ").expect("compute's body");
    let end = start + text[start..].find(';').expect("end of the statement");
    let edited = format!("{}return x * {factor}{}", &text[..start], &text[end..]);
    std::fs::write(&path, edited).expect("write main.c");
}

/// The last save counts: the program prints `compute={10 * factor}` and goes on printing
/// it, no error was reported, the session is running, and it is the process launched first.
fn assert_runs_last(f: &mut Fixture, factor: u32) {
    let expected = format!("compute={}", 10 * factor);
    f.wait_output(&expected);
    for line in f.next_lines(5) {
        assert_eq!(
            field(&line, "compute"),
            (10 * factor).to_string(),
            "an earlier save ran after the last one: {line}"
        );
    }
    let errors = f.errors_seen();
    assert!(errors.is_empty(), "{errors:#?}");
    let status = f.session.as_ref().expect("session").status();
    assert_eq!(status.state, State::Running, "{status:?}");
    f.assert_same_process();
}

#[test]
fn a_save_arriving_during_a_swap_runs_after_it() {
    let mut f = Fixture::launch("basic");
    f.wait_output("compute=10");
    for round in 0..5u32 {
        let first = 2 + 2 * round;
        set_factor(&f, first);
        f.save("main.c");
        // The worker says it is swapping right before it writes: the next save lands while
        // the swap (or what follows it) is still under way.
        f.wait("the swapping state", |e| match e {
            SessionEvent::Status(s) if s.state == State::Swapping => Some(()),
            _ => None,
        });
        set_factor(&f, first + 1);
        f.save("main.c");
        assert_runs_last(&mut f, first + 1);
    }
    let swaps = f
        .log
        .iter()
        .filter(|e| matches!(e, SessionEvent::Swap(_)))
        .count();
    assert_eq!(swaps, 10, "each save was its own swap");
}

#[test]
fn fifty_saves_in_one_second_end_with_the_last_one_running() {
    let mut f = Fixture::launch("basic");
    f.wait_output("compute=10");
    let started = Instant::now();
    for factor in 2..52u32 {
        set_factor(&f, factor);
        f.save("main.c");
        // An editor's pace: 50 saves spread over about a second (a load, not a wait).
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = started.elapsed();
    assert_runs_last(&mut f, 51);
    let swaps = f
        .log
        .iter()
        .filter(|e| matches!(e, SessionEvent::Swap(_)))
        .count();
    eprintln!("50 saves sent in {sent:?}: {swaps} swaps (the others coalesced)");
    assert!((1..=50).contains(&swaps), "{swaps} swaps");
}

/// The build command compiles, then links a second later; the file is saved in between.
/// The executable is newer than the edit but was compiled from the text before it: the
/// session must not take the edited text for what runs (its baseline), or the save would
/// look like it changed nothing.
#[test]
fn a_save_during_the_build_and_launch_is_not_lost() {
    let mut f = Fixture::copy("basic");
    f.write(
        "hot-lsp.toml",
        "[program]\npath = \"app\"\nbuild = \"cc -O0 -g -c main.c -o main.o && sleep 1 && cc -o app main.o\"\n\n\
         [compile]\ncommand = \"cc -O0 -g -c {file} -o {output}\"\n",
    );
    f.start();
    // The compile has read main.c once its object exists.
    let object = f.path("main.o");
    let deadline = Instant::now() + common::TIMEOUT;
    while !object.exists() {
        assert!(Instant::now() < deadline, "the build never compiled main.c");
        std::thread::sleep(Duration::from_millis(5));
    }
    set_factor(&f, 7);
    f.save("main.c");
    f.wait_launched();
    assert_runs_last(&mut f, 7);
}

/// A baseline compiled in the background while nothing else waits (sqlite3.c: 40 s and more)
/// used to run on the session's own thread, so the program's output stopped reaching the
/// client until it finished. The fixture's compiler holds the baseline compile until the
/// test says go: the output must keep coming meanwhile, and a save made then waits for the
/// baseline and is compared with it.
#[test]
fn output_keeps_flowing_while_a_baseline_compiles_in_the_background() {
    let mut f = Fixture::launch("slowbaseline");
    let started = f.path("baseline-started");
    let deadline = Instant::now() + common::TIMEOUT;
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "no baseline compile started within {:?}",
            common::TIMEOUT
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The compiler waits for `go`: these lines come while the baseline compile runs.
    let lines = f.next_lines(20);
    assert!(lines.iter().all(|l| l.contains("compute=10")), "{lines:?}");
    assert!(!f.path("go").exists());

    f.edit("main.c", "return x * 1;", "return x * 2;");
    f.save("main.c");
    f.write("go", "");
    let swap = f.wait_swap();
    assert_eq!(swap.swapped, ["compute"], "{swap:?}");
    assert_eq!(swap.skipped, 1, "main is unchanged: {swap:?}");
    f.wait_output("compute=20");
    f.assert_same_process();
}

/// What the program does while a save's compile is held (tests/fixtures/slowsave).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DuringCompile {
    /// It prints on: its lines reach the client during the compile, and the save swaps.
    Prints,
    /// It exits: the save's outcome is `process-exited`, and nothing is swapped.
    Exits,
}

/// A save's compile takes as long as the fixture's compiler (`gatedcc`) holds it: the
/// program's output reaches the client meanwhile, not after the swap (47 s of silence on a
/// file of 1,500 functions), every line once and in order; a program that exits during the
/// compile is the save's outcome, not a swap into a dead pid.
/// Creates `go` when dropped, so a failed assertion lets the held compile go at once
/// instead of leaving the session's shutdown waiting for gatedcc's 5 minutes.
struct ReleaseOnDrop(std::path::PathBuf);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

/// The slowsave fixture launched, and what lets its held compiles go if the test fails.
fn launch_slowsave() -> (Fixture, ReleaseOnDrop) {
    let f = Fixture::launch("slowsave");
    let release = ReleaseOnDrop(f.path("go"));
    (f, release)
}

/// Save slowsave's main.c with `compute` changed, and wait until gatedcc holds its compile
/// and the program printed a line since (`compiling=1`); the log's length at the save.
fn save_and_hold(f: &mut Fixture) -> usize {
    f.edit("main.c", "return x * 1;", "return x * 2;");
    f.save("main.c");
    let from = f.log.len();
    f.wait("the save's compile", |e| {
        matches!(
            e,
            SessionEvent::Progress(Progress::Report {
                phase: Phase::Compile,
                ..
            })
        )
        .then_some(())
    });
    // The compiler waits for `go`: these lines come while the save compiles, the last ones
    // printed after gatedcc said it holds the compile.
    let lines = f.next_lines(10);
    assert!(lines.iter().all(|l| l.contains("compute=10")), "{lines:?}");
    f.fresh_output.clear();
    f.wait_output("compiling=1");
    assert!(!f.path("go").exists());
    from
}

/// Wait until `path` exists (a fixture's own marker: no session event tells it).
fn wait_for_file(path: &std::path::Path) {
    let deadline = Instant::now() + common::TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no {} within {:?}",
            path.display(),
            common::TIMEOUT
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until process `pid` is gone (reaped by the session's tracer), not merely said
/// goodbye.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + common::TIMEOUT;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "pid {pid} still exists");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_save_while_the_program_runs(during: DuringCompile) {
    let (mut f, _release) = launch_slowsave();
    let pid = f.pid.expect("launched");
    let from = save_and_hold(&mut f);
    let ended = |f: &mut Fixture| {
        // Every event sent so far, not only those a wait happened to read.
        f.drain();
        f.log[from..].iter().any(|e| {
            matches!(
                e,
                SessionEvent::Swap(_) | SessionEvent::Progress(Progress::End { .. })
            )
        })
    };
    assert!(
        !ended(&mut f),
        "{during:?}: the save ended without its compile"
    );
    if during == DuringCompile::Exits {
        f.write("exit-now", "");
        f.wait_output("exiting");
        wait_gone(pid);
        assert!(!ended(&mut f), "the save ended without its compile");
    }
    // The figure, for the report: how much output reached the client during the compile.
    let printed = f.log[from..]
        .iter()
        .filter(|e| matches!(e, SessionEvent::Output { .. }))
        .count();
    eprintln!("{during:?}: {printed} lines of output during the held compile");
    f.write("go", "");
    let end = f.wait("the save to end", |e| match e {
        SessionEvent::Progress(Progress::End { message }) => Some(message.clone()),
        _ => None,
    });
    let swaps: Vec<&SessionEvent> = f.log[from..]
        .iter()
        .filter(|e| matches!(e, SessionEvent::Swap(_)))
        .collect();
    match during {
        DuringCompile::Prints => {
            assert!(
                matches!(swaps.as_slice(), [SessionEvent::Swap(s)] if s.swapped == ["compute"]),
                "{end}: {swaps:?}"
            );
            f.wait_output("compute=20");
            f.assert_same_process();
        }
        DuringCompile::Exits => {
            assert_eq!(end, "failed", "{swaps:?}");
            assert!(swaps.is_empty(), "a swap into a dead pid: {swaps:?}");
            let exited = |e: &SessionEvent| match e {
                SessionEvent::Exited { code, .. } => Some(*code),
                _ => None,
            };
            let code = match f.log[from..].iter().find_map(exited) {
                Some(code) => code,
                None => f.wait("the exit", exited),
            };
            assert_eq!(code, Some(3));
            let said = f.wait_message(Severity::Error);
            assert!(said.contains("exited"), "{said}");
            let status = f.session.as_ref().expect("session").status();
            assert_eq!(
                (status.state, status.code.as_deref()),
                (State::Exited, Some("process-exited")),
                "{status:?}"
            );
        }
    }
    // Every line once, in order: the ticks count up by one from the first line seen.
    let stdout = f.stdout();
    let ticks: Vec<u64> = stdout
        .lines()
        .filter(|l| l.contains("tick="))
        .map(|l| field(l, "tick").parse().expect("a tick number"))
        .collect();
    let first = ticks.first().copied().unwrap_or_default();
    let expected: Vec<u64> = (first..first + ticks.len() as u64).collect();
    assert_eq!(ticks, expected, "{during:?}: output lost or out of order");
}

#[test]
fn output_keeps_flowing_while_a_save_compiles() {
    for during in [DuringCompile::Prints, DuringCompile::Exits] {
        check_save_while_the_program_runs(during);
    }
}

/// The nice value of a process (field 19 of `/proc/PID/stat`, counted after the command's
/// closing parenthesis, which may contain spaces).
fn nice_of(pid: &str) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let rest = stat.rsplit(')').next().expect("stat has a command");
    // After ")": state is field 3, nice is field 19.
    rest.split_whitespace()
        .nth(16)
        .and_then(|n| n.parse().ok())
        .expect("nice field")
}

/// What the parallelbaselines fixture's compiler logged: the most baseline compiles that
/// ran at once, and the files whose baseline compile ended.
fn baseline_compiles(log: &str) -> (usize, Vec<String>) {
    let (mut running, mut most, mut ended) = (0usize, 0usize, Vec::new());
    for line in log.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["start", _, "baseline", _] => {
                running += 1;
                most = most.max(running);
            }
            ["end", _, "baseline", file] => {
                running = running.saturating_sub(1);
                ended.push((*file).to_owned());
            }
            _ => {}
        }
    }
    ended.sort();
    (most, ended)
}

/// `[compile] jobs = 2` and four files whose compiler holds the baselines of b.c, c.c and
/// main.c until the test says go: a.c's baseline is made, b.c's and c.c's compile at once
/// (main.c waits for a job) at a lower priority than the session, a save of a.c is served
/// while they are held and before main.c's starts, and once released every baseline
/// completes, never more than two at a time.
#[test]
fn baselines_compile_jobs_at_a_time_niced_and_a_save_goes_before_them() {
    let mut f = Fixture::launch("parallelbaselines");
    let held = |file: &str| f.path(&format!("held/{file}.pid"));
    let deadline = Instant::now() + common::TIMEOUT;
    while !(held("b.c").exists() && held("c.c").exists()) {
        assert!(
            Instant::now() < deadline,
            "b.c's and c.c's baselines did not both start within {:?}",
            common::TIMEOUT
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(f.path("compiles.log")).expect("the compiler's log");
    let (most, ended) = baseline_compiles(&log);
    assert_eq!(most, 2, "two baselines compile at once:\n{log}");
    assert_eq!(
        ended,
        ["a.c"],
        "a.c's alone is done, the others held:\n{log}"
    );
    assert!(
        !log.contains("baseline main.c"),
        "main.c waits for a job:\n{log}"
    );

    let ours = nice_of("self");
    for file in ["b.c", "c.c"] {
        let pid = std::fs::read_to_string(held(file)).expect("held pid");
        let theirs = nice_of(pid.trim());
        assert!(
            theirs > ours || ours == 19,
            "{file}'s baseline compiler runs at nice {theirs}, the session at {ours}"
        );
    }

    f.edit("a.c", "return x * 1;", "return x * 2;");
    f.save("a.c");
    let swap = f.wait_swap();
    assert_eq!(
        swap.swapped,
        ["compute"],
        "compared with a.c's baseline: {swap:?}"
    );
    f.wait_output("compute=20");
    let log = std::fs::read_to_string(f.path("compiles.log")).expect("the compiler's log");
    let (_, ended) = baseline_compiles(&log);
    assert_eq!(
        ended,
        ["a.c"],
        "the save went before the held baselines:\n{log}"
    );
    assert!(
        !log.contains("baseline main.c"),
        "the save went before main.c's baseline:\n{log}"
    );

    f.write("go", "");
    f.wait("every baseline done", |e| match e {
        SessionEvent::Status(s) => s
            .baselines
            .filter(|b| b.done == b.total && b.total == 4)
            .map(|_| ()),
        _ => None,
    });
    let log = std::fs::read_to_string(f.path("compiles.log")).expect("the compiler's log");
    let (most, ended) = baseline_compiles(&log);
    assert_eq!(most, 2, "never more than two at once:\n{log}");
    assert_eq!(ended, ["a.c", "b.c", "c.c", "main.c"], "{log}");
    // b.c's baseline is used: a one-function edit swaps that function alone.
    f.edit("b.c", "return x + 1;", "return x + 5;");
    f.save("b.c");
    let swap = f.wait_swap();
    assert_eq!(swap.swapped, ["value_b"], "{swap:?}");
    f.wait_output("b=6");
    f.assert_same_process();
}

/// The events after `from` that are the end of a save, and the swaps.
fn save_ends(f: &Fixture, from: usize) -> (Vec<String>, Vec<hot_session::SwapSummary>) {
    let mut ends = Vec::new();
    let mut swaps = Vec::new();
    for e in &f.log[from..] {
        match e {
            SessionEvent::Progress(Progress::End { message }) => ends.push(message.clone()),
            SessionEvent::Swap(s) => swaps.push(s.clone()),
            _ => {}
        }
    }
    (ends, swaps)
}

/// A restart queued behind a save, the program exiting while that save's compile is held
/// and the compile failing: the exit kept during the compile was delivered after the
/// restart had launched the program again, and dropped (killed) the new one. The relaunched
/// program must keep running: the pid it was launched with, its output going on, the
/// session running it.
#[test]
fn a_restart_behind_a_save_keeps_the_program_it_relaunches() {
    let (mut f, _release) = launch_slowsave();
    let old = f.pid.expect("launched");
    save_and_hold(&mut f);
    // Queued while the worker waits for the first save's compile: taken together, the
    // restart behind the second save (coalesced), whose compile is held next and fails.
    f.write("fail", "");
    f.send(Command::Saved(f.path("main.c")));
    f.send(Command::Restart);
    std::fs::remove_file(f.path("compile-started")).expect("remove compile-started");
    f.write("pass", "");
    f.wait("the first save to end", |e| {
        matches!(e, SessionEvent::Progress(Progress::End { .. })).then_some(())
    });
    wait_for_file(&f.path("compile-started"));
    // The second save's compile is held: the program exits during it.
    exit_then_relaunch(&mut f, old);
}

/// With a restart queued or taken and a compile held: the program `old` exits, then the
/// compile goes on (`go`). The program the restart launches keeps running (25 lines,
/// 0.5 s, and no exit), the session running it with the pid it was launched with.
fn exit_then_relaunch(f: &mut Fixture, old: i32) {
    f.write("exit-now", "");
    f.wait_output("exiting");
    wait_gone(old);
    // Or the relaunched program would exit too.
    std::fs::remove_file(f.path("exit-now")).expect("remove exit-now");
    f.write("go", "");
    let new = f.wait("the relaunch", |e| match e {
        SessionEvent::Launched { pid } => Some(*pid),
        _ => None,
    });
    assert_ne!(new, old);
    relaunched_runs_on(f, new);
}

/// The program launched again as `new` keeps running: 25 lines of its output (0.5 s) and no
/// exit, the session running it with that pid.
fn relaunched_runs_on(f: &mut Fixture, new: i32) {
    // 25 lines of the new program (0.5 s), or its end.
    let mut lines = 0;
    let exited = f.wait("the relaunched program's output", |e| match e {
        SessionEvent::Exited { .. } => Some(Some(format!("{e:?}"))),
        SessionEvent::Output { .. } => {
            lines += 1;
            (lines >= 25).then_some(None)
        }
        _ => None,
    });
    assert_eq!(
        exited, None,
        "the relaunched program (pid {new}) was dropped"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{new}")).exists(),
        "the relaunched program (pid {new}) is gone"
    );
    f.drain();
    let status = f.session.as_ref().expect("session").status();
    assert_eq!(
        (status.state, status.pid),
        (State::Running, Some(new)),
        "{status:?}"
    );
}

/// A restart taken while a baseline compiles in the background does not wait for it: the
/// compile (held by the fixture's compiler) dies with the program it was for, the program is
/// launched again at once, and nothing of the old process (its exit) reaches the new one.
#[test]
fn a_restart_during_a_background_baseline_keeps_the_program_it_relaunches() {
    let mut f = Fixture::launch("slowbaseline");
    let _release = ReleaseOnDrop(f.path("go"));
    let old = f.pid.expect("launched");
    wait_for_file(&f.path("baseline-started"));
    let compiler: i32 = std::fs::read_to_string(f.path("baseline.pid"))
        .expect("baseline.pid")
        .trim()
        .parse()
        .expect("a pid");
    f.send(Command::Restart);
    let new = f.wait("the relaunch", |e| match e {
        SessionEvent::Launched { pid } => Some(*pid),
        _ => None,
    });
    assert_ne!(new, old);
    wait_gone(old);
    // Killed, not let go: the test never created `go`.
    wait_gone(compiler);
    assert!(!f.path("go").exists());
    relaunched_runs_on(&mut f, new);
}

/// The program calls exec while a save's compile is held: nothing is written into the
/// image it left, and the save is made again, once, in the new one (same pid); hot-lsp says
/// so as soon as it reads the exec, which the test waits for before it lets the compile go.
#[test]
fn an_exec_during_a_save_makes_the_save_again_in_the_new_image() {
    let (mut f, _release) = launch_slowsave();
    let from = save_and_hold(&mut f);
    f.write("exec-now", "");
    let notice = f.wait("the exec noticed during the compile", |e| match e {
        SessionEvent::Message { text, .. } if text.contains("during a compile") => {
            Some(text.clone())
        }
        _ => None,
    });
    assert!(notice.contains("called exec"), "{notice}");
    let (ends, swaps) = save_ends(&f, from);
    assert!(ends.is_empty() && swaps.is_empty(), "{ends:?} {swaps:?}");
    f.write("go", "");
    let swap = f.wait_swap();
    assert_eq!(swap.swapped, ["compute"], "{swap:?}");
    // Two saves' ends: the one the exec interrupted, and the one made again (which swapped).
    f.wait("the second save's end", |e| {
        matches!(e, SessionEvent::Progress(Progress::End { .. })).then_some(())
    });
    let line = f.wait_output("compute=20");
    assert_eq!(field(&line, "gen"), "1", "{line}");
    f.assert_same_process();
    f.drain();
    let (ends, swaps) = save_ends(&f, from);
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert_eq!(swaps.len(), 1, "{swaps:?}");
    // A later save is made once: nothing of the exec is left over.
    let before = f.log.len();
    f.edit("main.c", "return x * 2;", "return x * 3;");
    f.save("main.c");
    f.wait_swap();
    f.wait("the later save's end", |e| {
        matches!(e, SessionEvent::Progress(Progress::End { .. })).then_some(())
    });
    f.wait_output("compute=30");
    f.drain();
    let begins = f.log[before..]
        .iter()
        .filter(|e| matches!(e, SessionEvent::Progress(Progress::Begin { .. })))
        .count();
    assert_eq!(begins, 1, "the later save was made {begins} times");
}

/// The processes whose command line names `needle` and the fixture's folder.
fn processes_running(f: &Fixture, needle: &str) -> Vec<i32> {
    let dir = f.dir.path().display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains(needle) && cmdline.contains(&dir) {
            found.push(pid);
        }
    }
    found
}

/// The session ends while gatedcc holds a save's compile: the worker, which reads no
/// commands while it waits, stops the compile (its whole process group) and the shutdown
/// returns at once instead of after the compile (gatedcc holds it 5 minutes), leaving no
/// compiler and no program behind.
#[test]
fn a_shutdown_during_a_save_compile_stops_the_compile() {
    let (mut f, _release) = launch_slowsave();
    let program = f.pid.expect("launched");
    save_and_hold(&mut f);
    let compilers = processes_running(&f, "gatedcc");
    assert!(!compilers.is_empty(), "no gatedcc holds the compile");
    let session = f.session.take().expect("session");
    let (done, ended) = crossbeam_channel::bounded(1);
    let started = Instant::now();
    std::thread::spawn(move || {
        session.shutdown();
        let _ = done.send(());
    });
    ended
        .recv_timeout(common::TIMEOUT)
        .expect("the shutdown waited for the held compile");
    eprintln!("shutdown during a held compile: {:?}", started.elapsed());
    for pid in compilers.into_iter().chain([program]) {
        wait_gone(pid);
    }
    assert!(
        !f.path("go").exists(),
        "the compile was let go, not stopped"
    );
}
