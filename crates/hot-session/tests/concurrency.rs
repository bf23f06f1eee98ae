//! Saves that do not wait their turn: a save arriving while a swap runs, a save while the
//! program is still being built and launched, and 50 saves of one file in one second. The
//! session takes them one at a time (coalescing saves already queued): whatever happens in
//! between, the last content saved is what ends up running, nothing deadlocks, and no save
//! is lost. The program's output is not held up behind a long background baseline compile
//! either. (Two workspaces swapping at once: server/tests/concurrency.rs.)

mod common;

use std::time::{Duration, Instant};

use common::{field, Fixture};
use hot_session::{Phase, Progress, SessionEvent, Severity, State};

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
    let errors: Vec<&SessionEvent> = f
        .log
        .iter()
        .filter(|e| {
            matches!(
                e,
                SessionEvent::Message {
                    severity: Severity::Error,
                    ..
                }
            )
        })
        .collect();
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
fn check_save_while_the_program_runs(during: DuringCompile) {
    let mut f = Fixture::launch("slowsave");
    let pid = f.pid.expect("launched");
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
    let ended = |f: &Fixture| {
        f.log[from..].iter().any(|e| {
            matches!(
                e,
                SessionEvent::Swap(_) | SessionEvent::Progress(Progress::End { .. })
            )
        })
    };
    assert!(!ended(&f), "{during:?}: the save ended without its compile");
    if during == DuringCompile::Exits {
        f.write("exit-now", "");
        f.wait_output("exiting");
        // Gone (reaped by the session's tracer), not merely said goodbye.
        let deadline = Instant::now() + common::TIMEOUT;
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < deadline, "pid {pid} still exists");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!ended(&f), "the save ended without its compile");
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
