//! A C++ swap whose commit fails after the new code's unwind table was registered with the
//! program's libgcc (hot-process's test-only fault injection fails the entry write): the
//! table stays registered (its code is unreachable), the linker retires its arena space, and
//! the next save of the same file swaps with a table of its own, through which an exception
//! thrown by the new body is caught. One test: the fault state is global to the process.

mod common;

use common::Fixture;
use hot_process::fault::Step;
use hot_session::{Command, SessionEvent};

#[test]
fn a_commit_failing_after_the_unwind_table_was_registered_leaves_the_next_swap_unwinding() {
    let mut f = Fixture::launch("cxxexcept");
    f.wait_output("middle-caught=thrower");
    f.edit("main.cpp", "if (tick < 0) {", "if (tick > 0) {");
    f.edit("main.cpp", "\"risky-v1\"", "\"risky-v2\"");
    // Fail step 1, 2, ... of the save until the commit's entry write is the one failed:
    // every earlier step (arena writes, the registration call's stop) went through.
    let mut nth = 0;
    loop {
        nth += 1;
        assert!(nth < 100, "no save met a fault at its entry write");
        let (swapped, from, report) = f.save_with_fault("main.cpp", nth);
        if swapped {
            // A fault that did not stop the swap (a detach, say): back to the old code.
            f.send(Command::Undo);
            f.wait("the undo", |e| match e {
                SessionEvent::Message { text, .. } if text.contains("reverted") => Some(()),
                _ => None,
            });
            continue;
        }
        assert!(report.fired.is_some(), "save {nth} failed with no fault");
        if report.fired == Some(Step::EntryWrite) {
            // The registration before it went through.
            let unregistered = f.log[from..].iter().any(|e| {
                matches!(e, SessionEvent::Message { text, .. }
                    if text.contains("could not be registered"))
            });
            assert!(!unregistered, "{:#?}", &f.log[from..]);
            break;
        }
    }
    // The old code runs on, exceptions through the program's own code still unwind.
    f.fresh_output.clear();
    f.wait_output(" risky=");
    f.wait_output("middle-caught=thrower");
    // The same save again, without faults: a new table at fresh addresses.
    let (swapped, _, report) = f.save_with_fault("main.cpp", 0);
    assert!(
        swapped,
        "the save after the failed commit did not swap: {report:?}"
    );
    f.fresh_output.clear();
    f.wait_output("caught=risky-v2");
    f.fresh_output.clear();
    let lines = f.next_lines(6);
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("caught=risky-v2"))
            .count()
            >= 2,
        "{lines:#?}"
    );
    f.assert_same_process();
}
