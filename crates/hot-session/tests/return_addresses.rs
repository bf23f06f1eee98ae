//! A frame whose return address lies inside the bytes an entry jump overwrites: gcc -O2
//! begins `twice` (tests/fixtures/retaddr) with `push %rbx; call *%rdi`, and its callee,
//! with a 64 KiB or a 1 KiB local buffer, waits for a file while `twice` is edited and
//! saved. The program must keep running, and either the swap leaves the return address
//! intact (a short jump through padding) or the save is refused with a message naming the
//! function, after which a save once the frame has returned swaps. The "altstack" callee
//! waits in a signal handler on an alternate signal stack, so twice+3 is only found by
//! following the signal frame back to the thread's normal stack.

mod common;

use common::Fixture;
use hot_session::{SessionEvent, Severity, SwapSummary};

/// What a save while the callee waits must lead to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Swapped at once; the waiting frame still returns into the old body.
    Swapped,
    /// Refused (no padding for a short jump, so only the 5-byte jump fits); swapped after.
    RefusedUntilReturned,
}

/// The swap of the last save, or what refused it (an error message or diagnostic).
fn save_outcome(f: &mut Fixture) -> Result<SwapSummary, String> {
    f.wait("the outcome of the save", |e| match e {
        SessionEvent::Swap(summary) => Some(Ok(summary.clone())),
        SessionEvent::Message {
            severity: Severity::Error,
            text,
        } => Some(Err(text.clone())),
        SessionEvent::Diagnostics { diagnostics, .. }
            if diagnostics.iter().any(|d| d.severity == Severity::Error) =>
        {
            Some(Err(format!("{diagnostics:#?}")))
        }
        _ => None,
    })
}

/// Launch retaddr with `callee` ("deep", "shallow" or "altstack"), optionally built with
/// `-falign-functions=1` so that no padding lies within a short jump's reach of `twice`,
/// wait until the callee waits, edit `twice` and save.
fn check_live_return_address(callee: &str, packed: bool, expect: Expect) {
    let mut f = Fixture::copy("retaddr");
    let config = std::fs::read_to_string(f.path("hot-lsp.toml")).expect("read config");
    let mut config = config.replace(r#"args = ["deep"]"#, &format!(r#"args = ["{callee}"]"#));
    if packed {
        config = config.replace(
            "-fcf-protection=none",
            "-fcf-protection=none -falign-functions=1",
        );
    }
    f.write("hot-lsp.toml", &config);
    f.start();
    let pid = f.wait("the program to launch", |e| match e {
        SessionEvent::Launched { pid } => Some(*pid),
        _ => None,
    });
    f.pid = Some(pid);
    let frame = match callee {
        "deep" => 65536,
        "shallow" => 1024,
        _ => 512,
    };
    f.wait_output(&format!("waiting frame={frame}"));

    f.edit(
        "main.c",
        "return first + base() + 0;",
        "return first + base() + 100;",
    );
    f.save("main.c");
    let outcome = save_outcome(&mut f);
    match (expect, outcome) {
        (Expect::Swapped, Ok(summary)) => {
            assert_eq!(summary.swapped, vec!["twice".to_string()], "{summary:?}");
        }
        (Expect::RefusedUntilReturned, Err(message)) => {
            for needle in ["`twice`", "entry+3", "thread", "nothing was written"] {
                assert!(message.contains(needle), "{needle:?} missing in: {message}");
            }
        }
        (expect, outcome) => panic!("expected {expect:?}, the save gave {outcome:?}"),
    }
    f.assert_same_process();

    // Let the callee return: it lands at twice+3 and finishes the old body (2), whatever
    // the entry holds now.
    f.write("go", "");
    let line = f.wait_output("tick=");
    assert!(
        line.ends_with("twice=2"),
        "the waiting frame returned wrongly: {line}"
    );
    if expect == Expect::RefusedUntilReturned {
        // The frame is gone: the same save swaps now.
        f.save("main.c");
        let summary = f.wait_swap();
        assert_eq!(summary.swapped, vec!["twice".to_string()], "{summary:?}");
    }
    f.wait_output("twice=102");
    f.assert_same_process();
}

#[test]
fn a_callee_with_a_64_kib_frame_returning_into_the_entry_jump() {
    check_live_return_address("deep", false, Expect::Swapped);
}

#[test]
fn a_callee_with_a_1_kib_frame_returning_into_the_entry_jump() {
    check_live_return_address("shallow", false, Expect::Swapped);
}

#[test]
fn without_padding_a_deep_return_address_refuses_until_the_frame_returns() {
    check_live_return_address("deep", true, Expect::RefusedUntilReturned);
}

#[test]
fn without_padding_a_shallow_return_address_refuses_until_the_frame_returns() {
    check_live_return_address("shallow", true, Expect::RefusedUntilReturned);
}

#[test]
fn without_padding_a_return_address_below_a_handler_on_an_alternate_stack_refuses() {
    check_live_return_address("altstack", true, Expect::RefusedUntilReturned);
}

#[test]
fn a_return_address_below_a_handler_on_an_alternate_stack_with_padding() {
    check_live_return_address("altstack", false, Expect::Swapped);
}

/// The static constructor of a unit linked in new must not run for a swap that is refused:
/// fixture ctorlate is retaddr's packed variant, whose compile database names extra.c too
/// (not built; its `__attribute__((constructor))` prints "constructor ran"). The save makes
/// `twice` call extra.c's function, so extra.c is pulled into the swap as a new unit, while
/// the waiting callee's frame returns into the bytes `twice`'s entry jump would overwrite:
/// the commit is refused, and the constructor must not have run (it used to run first). Once
/// the frame returned, the same save swaps and the constructor runs, once.
#[test]
fn a_swap_refused_by_a_live_return_address_runs_no_constructor_of_a_unit_it_pulls_in() {
    let mut f = Fixture::copy("ctorlate");
    f.start();
    f.wait_launched();
    f.wait_output("waiting frame=1024");
    f.edit(
        "main.c",
        "return first + base() + 0;",
        "return first + base() + extra_value();",
    );
    f.save("main.c");
    match save_outcome(&mut f) {
        Err(message) => {
            for needle in ["`twice`", "entry+3", "nothing was written"] {
                assert!(message.contains(needle), "{needle:?} missing in: {message}");
            }
            assert!(
                !message.contains("constructors of"),
                "the refusal says constructors ran: {message}"
            );
        }
        Ok(summary) => panic!("the save swapped with the frame live: {summary:?}"),
    }
    f.assert_same_process();

    // The frame returns into the old body; everything the program prints from here on comes
    // after anything a constructor run by the refused swap would have printed.
    f.write("go", "");
    let line = f.wait_output("tick=");
    assert!(line.ends_with("twice=2"), "not the old code: {line}");
    for line in f.next_lines(3) {
        assert!(line.ends_with("twice=2"), "not the old code: {line}");
    }
    assert_eq!(
        f.printed("constructor ran"),
        0,
        "the refused swap ran extra.c's constructor"
    );

    f.save("main.c");
    let summary = save_outcome(&mut f).expect("the save once the frame returned");
    assert_eq!(summary.swapped, vec!["twice".to_string()], "{summary:?}");
    f.wait_output("twice=102");
    assert_eq!(f.printed("constructor ran"), 1, "constructed once");
    f.assert_same_process();
}
