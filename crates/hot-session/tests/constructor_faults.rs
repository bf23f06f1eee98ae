//! A swap that links in a new unit and whose commit fails after the unit's static constructor
//! ran (hot-process's test-only fault injection fails the entry write; every check before the
//! constructor passed): the refusal says that the constructor ran and what it did stays, the
//! program runs the old code, and the next save runs the constructor again for the copies of
//! the unit's variables it links. Fixture ctorlate, with `go` made first so no frame waits.
//! One test: the fault state is global to the process.

mod common;

use common::Fixture;
use hot_process::fault::Step;
use hot_session::{SessionEvent, Severity};

/// ctorlate running (no frame waiting in `twice`), with `twice` edited to call extra.c.
fn launch_edited() -> Fixture {
    let mut f = Fixture::copy("ctorlate");
    f.write("go", "");
    f.start();
    f.wait_launched();
    f.wait_output("twice=2");
    f.edit(
        "main.c",
        "return first + base() + 0;",
        "return first + base() + extra_value();",
    );
    f
}

#[test]
fn a_commit_failing_after_a_new_units_constructor_ran_says_it_ran() {
    let mut f = launch_edited();
    // Refusals of this process's saves that said the constructor had run.
    let mut said_ran = 0;
    // Fail step 1, 2, ... of the save until the commit's entry write is the one failed.
    let mut nth = 0;
    let refusal = loop {
        nth += 1;
        assert!(nth < 200, "no save met a fault at its entry write");
        let (swapped, from, report) = f.save_with_fault("main.c", nth);
        if swapped {
            // A fault that did not stop the swap (a detach, say): the unit is built in that
            // process now, so the next step is tried on a fresh one.
            f = launch_edited();
            said_ran = 0;
            continue;
        }
        assert!(report.fired.is_some(), "save {nth} failed with no fault");
        let errors: Vec<String> = f.log[from..]
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Message {
                    severity: Severity::Error,
                    text,
                } => Some(text.clone()),
                _ => None,
            })
            .collect();
        let text = errors.join("\n");
        if text.contains("had already run") {
            said_ran += 1;
        }
        if report.fired == Some(Step::EntryWrite) {
            break text;
        }
    };
    for needle in [
        "entry of twice",
        "the static constructors of",
        "extra.c",
        "had already run",
        "a later save runs them again",
    ] {
        assert!(refusal.contains(needle), "{needle:?} missing in: {refusal}");
    }
    // A line the program prints after every refused save: with `go` gone its callee waits
    // and says so (output of a save reaches the log only after it, so tick lines are no
    // such mark). By then the constructor printed exactly as often as the refusals said it
    // ran (at the entry write, and any fault in the commit's stop), and no more.
    std::fs::remove_file(f.path("go")).expect("remove go");
    f.wait_output("waiting frame=1024");
    assert_eq!(f.printed("constructor ran"), said_ran);
    // The old code runs on.
    f.write("go", "");
    f.fresh_output.clear();
    for line in f.next_lines(3) {
        assert!(line.ends_with("twice=2"), "not the old code: {line}");
    }

    // The same save without faults: linked anew, its constructor runs for the new copies.
    let (swapped, _, report) = f.save_with_fault("main.c", 0);
    assert!(swapped, "the save after the failed commit: {report:?}");
    // The new code's output comes after the constructor's.
    f.wait_output("twice=102");
    assert_eq!(f.printed("constructor ran"), said_ran + 1);
    f.assert_same_process();
}
