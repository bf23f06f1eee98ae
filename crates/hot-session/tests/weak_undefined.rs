//! Calls to weak functions that nothing defines (zstd's trace hooks), really swapped
//! (tests/fixtures/weakundef): the new code tests and calls them as the program's own link
//! does — in a PIE through the image's GOT slot and PLT entry, built `-fno-pie -no-pie` as
//! ld's `mov $0` / `call 0`, a name the image never referenced through a far stub to address
//! 0 — so a guarded call is never reached, a reached one faults at address 0 as the
//! original's would, and a lazy PLT entry still binds to a library loaded later with
//! `RTLD_GLOBAL`. A reference that takes the address PC-relative out of reach of 0 is refused
//! naming the undefined weak symbol. Each case is a row, run with every build it names.

mod common;

use common::{field, Fixture};
use hot_session::SessionEvent;

/// The builds of the fixture (`sh build.sh MODE LEVEL`).
const PIE: &[&str] = &["pie -O0", "pie -O1"];
const NOPIE: &[&str] = &["nopie -O0", "nopie -O1"];
const ALL: &[&str] = &["pie -O0", "pie -O1", "nopie -O0", "nopie -O1"];

/// A number the program prints: `field` equals `times * tick + plus` on the same line.
#[derive(Clone, Copy, Debug)]
struct Value {
    field: &'static str,
    times: i64,
    plus: i64,
}

const fn value(field: &'static str, times: i64, plus: i64) -> Value {
    Value { field, times, plus }
}

impl Value {
    /// Whether `line` (`tick=N step=.. other=.. late=..`) shows this value.
    fn shown_by(&self, line: &str) -> bool {
        if !line.starts_with("tick=") {
            return false;
        }
        let number = |key| field(line, key).parse::<i64>().expect("a number");
        number(self.field) == self.times * number("tick") + self.plus
    }
}

/// What the program does once a file is created after the swap.
#[derive(Clone, Copy, Debug)]
enum Then {
    Prints(Value),
    /// It calls address 0: prints `fault=0` and exits with code 3.
    Faults,
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Swaps {
        swapped: &'static [&'static str],
        /// Swapped too when there is no baseline: compared with the running code, they are
        /// not shown to do the same (swapping too much, never too little).
        may_also: &'static [&'static str],
        prints: Value,
        /// A file created after the swap, and what the program does then.
        then: Option<(&'static str, Then)>,
    },
    /// A diagnostic of this code whose message contains this; nothing swapped.
    Refused {
        code: &'static str,
        message: &'static str,
    },
}

struct Row {
    what: &'static str,
    builds: &'static [&'static str],
    /// main.c touched after the build: no baseline is trusted, the save is compared with
    /// the running program's code.
    touched: bool,
    /// Replacements in main.c, in order, saved together.
    edits: &'static [(&'static str, &'static str)],
    outcome: Outcome,
}

/// The program's original computation, before any swap.
const STEP_TWICE: Value = value("step", 2, 0);

/// `step` calling the unguarded `later_hook` once `call-hook` exists (a name the image has
/// neither PLT entry nor GOT slot for).
const LATER_HOOK_REACHED: &str =
    "    if (later_hook != NULL || access(\"call-hook\", F_OK) == 0)\n\
                                  \x20       return later_hook(i);\n    return i * 4;";

const GUARDED_CALLS: &[Row] = &[
    Row {
        what: "the return expression edited beside the guarded call (zstd's \
               ZSTD_compressBegin_internal)",
        builds: ALL,
        touched: false,
        edits: &[("return i * 2;", "return i * 3;")],
        outcome: Outcome::Swaps {
            swapped: &["step"],
            may_also: &[],
            prints: value("step", 3, 0),
            then: None,
        },
    },
    Row {
        what: "the guarded call itself edited",
        builds: ALL,
        touched: false,
        edits: &[(
            "return trace_hook(i);\n    return i * 2;",
            "return trace_hook(i + 1) * 5;\n    return i * 5;",
        )],
        outcome: Outcome::Swaps {
            swapped: &["step"],
            may_also: &[],
            prints: value("step", 5, 0),
            then: None,
        },
    },
    Row {
        what: "the call to trace_hook reached: it faults at address 0, as the original's",
        builds: ALL,
        touched: false,
        edits: &[
            (
                "if (trace_hook != NULL)",
                "if (trace_hook != NULL || access(\"call-hook\", F_OK) == 0)",
            ),
            ("return i * 2;", "return i * 6;"),
        ],
        outcome: Outcome::Swaps {
            swapped: &["step"],
            may_also: &[],
            prints: value("step", 6, 0),
            then: Some(("call-hook", Then::Faults)),
        },
    },
    Row {
        what: "a guarded call to later_hook added (no PLT entry or GOT slot in the image)",
        builds: ALL,
        touched: false,
        edits: &[(
            "    return i * 2;",
            "    if (later_hook != NULL)\n        return later_hook(i);\n    return i * 4;",
        )],
        outcome: Outcome::Swaps {
            swapped: &["step"],
            may_also: &[],
            prints: value("step", 4, 0),
            then: None,
        },
    },
    Row {
        what: "the added call to later_hook reached: it faults at address 0 (in a PIE through \
               the far stub)",
        builds: ALL,
        touched: false,
        edits: &[("    return i * 2;", LATER_HOOK_REACHED)],
        outcome: Outcome::Swaps {
            swapped: &["step"],
            may_also: &[],
            prints: value("step", 4, 0),
            then: Some(("call-hook", Then::Faults)),
        },
    },
];

const LAZY_BINDING: &[Row] = &[Row {
    what: "late edited, then libhook.so loaded with RTLD_GLOBAL: the new late's call to \
           late_hook binds to it through the image's lazy PLT entry",
    builds: ALL,
    touched: false,
    edits: &[("return -1;", "return -2;")],
    outcome: Outcome::Swaps {
        swapped: &["late"],
        may_also: &[],
        prints: value("late", 0, -2),
        then: Some(("load-hook", Then::Prints(value("late", 100, 0)))),
    },
}];

const WITHOUT_BASELINE: &[Row] = &[
    Row {
        what: "no baseline, other edited: step (the guarded call through the PLT) equals the \
               running code",
        builds: PIE,
        touched: true,
        edits: &[("return i + 1;", "return i + 7;")],
        outcome: Outcome::Swaps {
            swapped: &["other"],
            may_also: &[],
            prints: value("other", 1, 7),
            then: None,
        },
    },
    Row {
        // The patch compile adds -mno-direct-extern-access: its test of trace_hook is a GOT
        // load where ld wrote `mov $0`, so step may differ from the running code.
        what: "no baseline, other edited, non-PIE: step may be swapped too, and still works",
        builds: NOPIE,
        touched: true,
        edits: &[("return i + 1;", "return i + 7;")],
        outcome: Outcome::Swaps {
            swapped: &["other"],
            may_also: &["step"],
            prints: value("other", 1, 7),
            then: None,
        },
    },
];

/// `step` taking trace_hook's address PC-relative (`lea`), which only GOT loads avoid.
const ADDRESS_BY_LEA: &str =
    "    void *at;\n    __asm__(\"lea trace_hook(%%rip), %0\" : \"=r\"(at));\n\
                              \x20   return at ? -1 : i * 3;";

const ADDRESS_TAKEN: &[Row] = &[
    Row {
        what: "its address taken PC-relative in a PIE: 0 is out of the arena's reach, refused",
        builds: PIE,
        touched: false,
        edits: &[("    return i * 2;", ADDRESS_BY_LEA)],
        outcome: Outcome::Refused {
            code: "relocation-overflow",
            message: "`trace_hook` is an undefined weak symbol",
        },
    },
    Row {
        what: "its address taken PC-relative in a non-PIE: 0 is in reach, encoded as ld does",
        builds: NOPIE,
        touched: false,
        edits: &[("    return i * 2;", ADDRESS_BY_LEA)],
        outcome: Outcome::Swaps {
            swapped: &["step"],
            may_also: &[],
            prints: value("step", 3, 0),
            then: None,
        },
    },
];

/// Wait for a complete line of fresh output that `shows`; then the next three lines must
/// show it too (lines computed before a swap may still arrive after it).
fn wait_value(f: &mut Fixture, what: &str, v: Value) {
    let mut buffer = f.fresh_output.clone();
    let seen = buffer
        .lines()
        .take(buffer.matches('\n').count())
        .any(|l| v.shown_by(l));
    if !seen {
        f.wait(&format!("{what}: a line with {v:?}"), |e| match e {
            SessionEvent::Output { text, .. } => {
                buffer.push_str(text);
                let complete = &buffer[..buffer.rfind('\n').map_or(0, |p| p + 1)];
                complete.lines().any(|l| v.shown_by(l)).then_some(())
            }
            _ => None,
        });
    }
    for line in f.next_lines(3) {
        assert!(v.shown_by(&line), "{what}: expected {v:?}, printed {line}");
    }
}

/// Launch the fixture built as `build` says (touched after the build when `touched`), apply
/// `row`'s edits, save, and check its outcome; the process must be the one launched.
fn check(row: &Row, build: &str) {
    let what = format!("{} [{build}]", row.what);
    // Named in the test's output: a failed swap panics without the row.
    eprintln!("row: {what}");
    let mut f = Fixture::copy("weakundef");
    let touch = if row.touched { " && touch main.c" } else { "" };
    f.write(
        "hot-lsp.toml",
        &format!("[program]\npath = \"app\"\nbuild = \"sh build.sh {build}{touch}\"\n"),
    );
    f.start();
    f.wait_launched();
    wait_value(&mut f, &what, STEP_TWICE);
    for (from, to) in row.edits {
        f.edit("main.c", from, to);
    }
    f.save("main.c");
    match row.outcome {
        Outcome::Swaps {
            swapped,
            may_also,
            prints,
            then,
        } => {
            let swap = f.wait_swap();
            let mut expected: Vec<&str> = swapped.to_vec();
            let extra: Vec<&String> = swap
                .swapped
                .iter()
                .filter(|s| !swapped.contains(&s.as_str()))
                .collect();
            assert!(
                extra.iter().all(|s| may_also.contains(&s.as_str())),
                "{what}: swapped {:?}, expected {swapped:?} (and maybe {may_also:?})",
                swap.swapped
            );
            expected.extend(extra.iter().map(|s| s.as_str()));
            let mut got: Vec<&str> = swap.swapped.iter().map(String::as_str).collect();
            got.sort_unstable();
            expected.sort_unstable();
            assert_eq!(got, expected, "{what}: {swap:?}");
            wait_value(&mut f, &what, prints);
            f.assert_same_process();
            assert!(f.errors_seen().is_empty(), "{what}: {:#?}", f.errors_seen());
            match then {
                None => {}
                Some((file, Then::Prints(v))) => {
                    f.write(file, "");
                    wait_value(&mut f, &what, v);
                    f.assert_same_process();
                }
                Some((file, Then::Faults)) => {
                    f.write(file, "");
                    let line = f.wait_output("fault=");
                    assert_eq!(line.trim(), "fault=0", "{what}: the call faulted elsewhere");
                    let exited = f.wait(&format!("{what}: the program's exit"), |e| match e {
                        SessionEvent::Exited { code, signal } => Some((*code, *signal)),
                        _ => None,
                    });
                    assert_eq!(exited, (Some(3), None), "{what}");
                }
            }
        }
        Outcome::Refused { code, message } => {
            let diagnostics = f.wait_diagnostics("main.c");
            let found = diagnostics
                .iter()
                .find(|d| d.code == code)
                .unwrap_or_else(|| panic!("{what}: no {code} diagnostic: {diagnostics:#?}"));
            assert!(found.message.contains(message), "{what}: {found:?}");
            assert!(
                !found.message.starts_with("value "),
                "{what}: a bare overflow: {found:?}"
            );
            let swaps = f
                .log
                .iter()
                .filter(|e| matches!(e, SessionEvent::Swap(_)))
                .count();
            assert_eq!(swaps, 0, "{what}: the refused save swapped something");
            f.fresh_output.clear();
            wait_value(&mut f, &what, STEP_TWICE);
            f.assert_same_process();
        }
    }
}

/// Every row with each of its builds; the ones that failed (each panic's message is printed
/// as it happens) are listed together at the end.
fn check_rows(rows: &[Row]) {
    let mut failed = Vec::new();
    for row in rows {
        for build in row.builds {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(row, build)));
            if run.is_err() {
                failed.push(format!("{} [{build}]", row.what));
            }
        }
    }
    assert!(failed.is_empty(), "rows failed:\n  {}", failed.join("\n  "));
}

#[test]
fn guarded_calls_to_undefined_weak_functions_swap() {
    check_rows(GUARDED_CALLS);
}

#[test]
fn a_lazy_plt_entry_binds_to_a_library_loaded_later() {
    check_rows(LAZY_BINDING);
}

#[test]
fn without_a_baseline_a_guarded_call_equals_the_running_code() {
    check_rows(WITHOUT_BASELINE);
}

#[test]
fn an_undefined_weak_address_out_of_reach_is_refused_by_name() {
    check_rows(ADDRESS_TAKEN);
}
