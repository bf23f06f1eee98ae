//! Faults at every step of a real swap (issue 12): the `faults` fixture's first(), second()
//! and const table change together on each save; with hot-process's test-only fault
//! injection the Nth step of the save's swap fails, for N = 1, 2, ... until a save swaps with
//! no fault hit. After each save the program runs the complete old version or the complete
//! new one, as the session said (a swap event, or an error and nothing swapped), and is left
//! running untraced; at the end undo walks back exactly the swaps that happened (a failed
//! swap left no journal entry) and a save after the undos swaps again (the baselines agree).
//! One test: the fault state is global to the process.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{stopped_or_traced, Fixture, TIMEOUT};
use hot_process::fault::{self, Step};
use hot_session::{Command, SessionEvent, Severity};

/// util.c at version `k`: first() returns k, second() 10 k, table[1] is 100 k.
fn util(k: i64) -> String {
    format!(
        "const int table[4] = {{0, {}, 0, 0}};\n\nint first(void) {{\n    return {k};\n}}\n\n\
         int second(void) {{\n    return {};\n}}\n",
        100 * k,
        10 * k
    )
}

/// (first, second, table, mixes) of one output line.
fn values(line: &str) -> (i64, i64, i64, i64) {
    let get = |key: &str| -> i64 {
        common::field(line, key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} in {line:?}"))
    };
    (get("first"), get("second"), get("table"), get("mixes"))
}

/// Checks every line printed since the save: with `new = None` (the swap failed) all of them
/// run `old`; otherwise old lines, at most one line read across the swap (first() before
/// it, table after it, second() either side: they are read in that order), then new lines.
fn check_lines(lines: &[String], old: i64, new: Option<i64>, what: &str) {
    let whole = |(a, b, t, _): (i64, i64, i64, i64), k: i64| a == k && b == 10 * k && t == 100 * k;
    let mut switched = false;
    for line in lines.iter().filter(|l| l.starts_with("tick=")) {
        let v = values(line);
        let Some(new) = new else {
            assert!(
                whole(v, old),
                "{what}: a failed swap left a mix or ran: {line}"
            );
            continue;
        };
        if switched {
            assert!(
                whole(v, new),
                "{what}: back to the old code, or mixed: {line}"
            );
        } else if whole(v, new) {
            switched = true;
        } else if !whole(v, old) {
            let (a, b, t, _) = v;
            let across = a == old && t == 100 * new && (b == 10 * old || b == 10 * new);
            assert!(across, "{what}: a mix no swap can produce: {line}");
            switched = true;
        }
    }
}

/// Lines of program output in `events`.
fn output_lines(events: &[SessionEvent]) -> Vec<String> {
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Output { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    text.lines().map(str::to_owned).collect()
}

/// Waits until no thread of `pid` is stopped or traced (a thread let go after a failed stop
/// is detached by the owner thread as soon as it stops).
fn wait_untraced(pid: i32, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{what}: the program is gone"
        );
        let left = stopped_or_traced(pid);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: threads left stopped or traced: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Saves util.c at version `k` and waits for the save to end; returns whether it swapped,
/// where its events start in the log, and the fault report.
fn save_version(f: &mut Fixture, k: i64, nth: u64) -> (bool, usize, fault::Report) {
    f.write("util.c", &util(k));
    f.save_with_fault("util.c", nth)
}

/// Waits for two lines of version `k` (the second was printed wholly after the save) and
/// returns the mixes count the workers reported in it.
fn settle(f: &mut Fixture, k: i64) -> i64 {
    let needle = format!("first={k} second={} table={} ", 10 * k, 100 * k);
    f.wait_output(&needle);
    f.fresh_output.clear();
    values(&f.wait_output(&needle)).3
}

#[test]
fn each_step_of_a_real_swap_fails_in_turn_and_undo_agrees() {
    let mut f = Fixture::launch("faults");
    let pid = f.pid.expect("pid");
    let mut running = 1;
    let mut mixes = settle(&mut f, running);
    let mut faults: BTreeMap<Step, u64> = BTreeMap::new();
    let mut swaps = 0u64;
    let mut failures = 0u64;
    let mut nth = 0u64;
    let mut saves = 0u64;
    let last = loop {
        nth += 1;
        saves += 1;
        let target = if running == 2 { 3 } else { 2 };
        let (swapped, from, report) = save_version(&mut f, target, nth);
        let events = f.log[from..].to_vec();
        if let Some(step) = report.fired {
            *faults.entry(step).or_default() += 1;
        }
        let what = format!("save {nth} (fault at {:?})", report.fired);
        wait_untraced(pid, &what);
        let errors: Vec<&String> = events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Message {
                    severity: Severity::Error,
                    text,
                } => Some(text),
                _ => None,
            })
            .collect();
        // The file's diagnostics: the last list published for util.c in this save.
        let util = f.path("util.c");
        let published = events.iter().rev().find_map(|e| match e {
            SessionEvent::Diagnostics { file, diagnostics } if *file == util => {
                Some(diagnostics.clone())
            }
            _ => None,
        });
        let codes: Vec<&str> = published
            .iter()
            .flatten()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.code.as_str())
            .collect();
        let expected_code = match (swapped, report.fired) {
            (true, _) => None,
            // A refused seize is what a denied ptrace looks like.
            (false, Some(Step::Seize)) => Some("permission-denied"),
            (false, Some(Step::EntryWrite | Step::DataWrite)) => Some("protection-failure"),
            (false, _) => None,
        };
        assert_eq!(
            codes,
            Vec::from_iter(expected_code),
            "{what}: {published:#?}"
        );
        if expected_code == Some("permission-denied") {
            let message = &published.iter().flatten().next().expect("one").message;
            assert!(message.contains("permission denied"), "{message}");
            assert!(
                message.contains("security module"),
                "the fix is not named: {message}"
            );
        }
        if swapped {
            assert!(errors.is_empty(), "{what}: swapped, yet {errors:?}");
            swaps += 1;
        } else {
            assert!(
                report.fired.is_some(),
                "{what}: failed with no fault: {events:#?}"
            );
            assert!(!errors.is_empty(), "{what}: failed silently: {events:#?}");
            failures += 1;
        }
        let new = swapped.then_some(target);
        let now = new.unwrap_or(running);
        let settled = settle(&mut f, now);
        check_lines(&output_lines(&f.log[from..]), running, new, &what);
        if swapped {
            assert!(settled <= mixes + 2, "{what}: mixes {mixes} -> {settled}");
        } else {
            assert_eq!(settled, mixes, "{what}: the workers saw a mix");
        }
        mixes = settled;
        running = now;
        f.assert_same_process();
        if swapped && report.seen(Step::Mmap) > 0 {
            // This save also made the linker (its arenas are mapped at the first link, which
            // a save can reach before the launch prepared it): from here on every save is a
            // swap alone, whose steps are counted from 1 again.
            nth = 0;
        } else if swapped && report.fired.is_none() {
            break report;
        }
    };
    let total: u64 = faults.values().sum();
    eprintln!(
        "{saves} saves: {swaps} swapped, {failures} failed; faults injected per step ({total} in \
         all): {faults:?}; a save's swap without faults: {:?}",
        last.seen
    );
    for step in [
        Step::Seize,
        Step::Interrupt,
        Step::EntryWrite,
        Step::DataWrite,
        Step::ArenaWrite,
        Step::Detach,
    ] {
        assert!(
            faults.contains_key(&step),
            "no fault of {step:?}: {faults:?}"
        );
    }

    // Undo under faults: each step of the revert fails in turn until one undo goes through.
    // A failed undo leaves the program, the journal and the baseline as they were (the
    // program runs the last swap whole), so undo can be tried again.
    let before = if swaps == 1 {
        1
    } else if running == 2 {
        3
    } else {
        2
    };
    let mut undo_faults: BTreeMap<Step, u64> = BTreeMap::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let from = f.log.len();
        fault::arm(attempt);
        f.send(Command::Undo);
        let said = f.wait(&format!("undo with fault {attempt}"), |e| match e {
            SessionEvent::Message { severity, text }
                if text.contains("revert") || text.contains("undo") =>
            {
                Some((*severity, text.clone()))
            }
            _ => None,
        });
        let report = fault::disarm();
        if let Some(step) = report.fired {
            *undo_faults.entry(step).or_default() += 1;
        }
        let what = format!("undo, fault at {:?}", report.fired);
        wait_untraced(pid, &what);
        let reverted = said.0 == Severity::Information && said.1.contains("reverted");
        assert!(reverted || report.fired.is_some(), "{what}: {said:?}");
        let now = if reverted { before } else { running };
        settle(&mut f, now);
        check_lines(
            &output_lines(&f.log[from..]),
            running,
            reverted.then_some(before),
            &what,
        );
        if reverted {
            running = before;
            swaps -= 1;
            break;
        }
    }
    eprintln!("undo: {attempt} tries, faults injected per step: {undo_faults:?}");
    assert!(
        undo_faults.contains_key(&Step::EntryWrite),
        "{undo_faults:?}"
    );

    // The journal holds exactly the swaps that happened: undo walks them back to version 1.
    for undo in 0..swaps {
        f.send(Command::Undo);
        let said = f.wait(&format!("undo {undo}"), |e| match e {
            SessionEvent::Message { severity, text }
                if text.contains("revert") || text.contains("undo") =>
            {
                Some((*severity, text.clone()))
            }
            _ => None,
        });
        assert!(
            said.0 == Severity::Information && said.1.contains("reverted"),
            "undo {undo} of {swaps}: {said:?}"
        );
    }
    settle(&mut f, 1);
    f.send(Command::Undo);
    f.wait("the undo with nothing left", |e| match e {
        SessionEvent::Message { text, .. } if text.contains("undo") || text.contains("revert") => {
            assert!(text.contains("no swap to undo"), "{text}");
            Some(())
        }
        _ => None,
    });
    // The baseline is version 1's again: saving the file (still at `running`) swaps it in.
    let (swapped, from, _) = save_version(&mut f, running, 0);
    assert!(
        swapped,
        "the save after the undos did not swap: {:#?}",
        &f.log[from..]
    );
    settle(&mut f, running);
    wait_untraced(pid, "at the end");
    f.assert_same_process();
}
