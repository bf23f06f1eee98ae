//! A changed initializer of a variable the running program keeps is not applied, and its
//! `initializer-not-applied` warning says so for as long as that is true: through every later
//! save of the file (an unrelated edit, a further change of the same initializer, an undo),
//! compared with what the program was given rather than with the previous save's object,
//! until the source has the running initializer again or the variable is gone. Fixture
//! `initializer`: counter.c's `counter`, `spare` and `calls`, printed by the program.

mod common;

use common::{field, Fixture};
use hot_session::{Command, Progress, SessionEvent, Severity};

/// One step of a row, on counter.c.
#[derive(Clone, Copy)]
enum Step {
    /// Replace `from` by `to` and save (`from` empty: save the text as it is). Afterwards the
    /// file's diagnostics warn `initializer-not-applied` on the declarations that start
    /// with `warned` (each as the text has it then), and on no other line.
    Save {
        from: &'static str,
        to: &'static str,
        warned: &'static [&'static str],
    },
    /// Undo the last swap.
    Undo,
}

use Step::{Save, Undo};

struct Row {
    /// Built by the test, and the first step's edit made after the build, before the
    /// launch: no baseline, so that save compares with the running image.
    edited_after_build: bool,
    steps: &'static [Step],
}

const COUNTER: &str = "static int counter =";
const SPARE: &str = "int spare =";
const CALLS: &str = "static int calls =";

/// A function the running program lacks (its save adds it), after the variables.
const ADD_UNUSED: Step = Save {
    from: "int calls_made(void) {",
    to: "int unused_fn(void) {\n    return 7;\n}\n\nint calls_made(void) {",
    warned: &[],
};

/// `step` with the warnings `warned` expected after it.
const fn warned(step: Step, warned: &'static [&'static str]) -> Step {
    match step {
        Save { from, to, .. } => Save { from, to, warned },
        Undo => Undo,
    }
}

/// Save counter.c's text as it is.
const fn resave(warned: &'static [&'static str]) -> Step {
    Save {
        from: "",
        to: "",
        warned,
    }
}

/// The tester's reproduction on zstd's build: `= 5000`, then an unrelated function.
const UNRELATED_SAVE: Row = Row {
    edited_after_build: false,
    steps: &[
        Save {
            from: "counter = 100;",
            to: "counter = 1000000;",
            warned: &[COUNTER],
        },
        warned(ADD_UNUSED, &[COUNTER]),
        Save {
            from: "return 7;",
            to: "return 8;",
            warned: &[COUNTER],
        },
        // The source has the running initializer again: the warning goes, and stays gone.
        Save {
            from: "counter = 1000000;",
            to: "counter = 100;",
            warned: &[],
        },
        Save {
            from: "return 8;",
            to: "return 9;",
            warned: &[],
        },
    ],
};

/// A second change of the same initializer is compared with what runs, not with the first.
const CHANGED_AGAIN: Row = Row {
    edited_after_build: false,
    steps: &[
        Save {
            from: "counter = 100;",
            to: "counter = 1000000;",
            warned: &[COUNTER],
        },
        Save {
            from: "counter = 1000000;",
            to: "counter = 2000000;",
            warned: &[COUNTER],
        },
        Save {
            from: "counter = 2000000;",
            to: "counter = 100;",
            warned: &[],
        },
    ],
};

/// Each variable has its own: `spare` back to what runs leaves `counter`'s warning.
const TWO_VARIABLES: Row = Row {
    edited_after_build: false,
    steps: &[
        Save {
            from: "spare = 1;",
            to: "spare = 1000000;",
            warned: &[SPARE],
        },
        Save {
            from: "counter = 100;",
            to: "counter = 1000000;",
            warned: &[COUNTER, SPARE],
        },
        Save {
            from: "spare = 1000000;",
            to: "spare = 1;",
            warned: &[COUNTER],
        },
        resave(&[COUNTER]),
    ],
};

/// A function-local static (`calls.0`, matched by its function and name).
const LOCAL_STATIC: Row = Row {
    edited_after_build: false,
    steps: &[
        Save {
            from: "calls = 0;",
            to: "calls = 1000000;",
            warned: &[CALLS],
        },
        warned(ADD_UNUSED, &[CALLS]),
        Save {
            from: "calls = 1000000;",
            to: "calls = 0;",
            warned: &[],
        },
    ],
};

/// A variable removed from the source has nothing left to warn about.
const REMOVED: Row = Row {
    edited_after_build: false,
    steps: &[
        Save {
            from: "spare = 1;",
            to: "spare = 1000000;",
            warned: &[SPARE],
        },
        Save {
            from: "int spare = 1000000;\n",
            to: "",
            warned: &[],
        },
        resave(&[]),
    ],
};

/// Undo of the unrelated save gives back the baseline before it, which still knows what the
/// program was given.
const UNDONE: Row = Row {
    edited_after_build: false,
    steps: &[
        Save {
            from: "counter = 100;",
            to: "counter = 1000000;",
            warned: &[COUNTER],
        },
        warned(ADD_UNUSED, &[COUNTER]),
        Undo,
        resave(&[COUNTER]),
    ],
};

/// Without a baseline (counter.c edited after the build): the first save compares with the
/// running image, and so do the later ones for that variable.
const AFTER_THE_BUILD: Row = Row {
    edited_after_build: true,
    steps: &[
        Save {
            from: "counter = 100;",
            to: "counter = 1000000;",
            warned: &[COUNTER],
        },
        warned(ADD_UNUSED, &[COUNTER]),
        Save {
            from: "counter = 1000000;",
            to: "counter = 100;",
            warned: &[],
        },
    ],
};

/// The diagnostics of counter.c as last published (none yet: empty).
fn current_lines(f: &Fixture) -> Vec<(u32, Severity, String)> {
    let path = f.path("counter.c");
    f.log
        .iter()
        .rev()
        .find_map(|e| match e {
            SessionEvent::Diagnostics { file, diagnostics } if *file == path => Some(
                diagnostics
                    .iter()
                    .filter(|d| d.code == "initializer-not-applied")
                    .map(|d| (d.line, d.severity, d.message.clone()))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

fn check(row: &Row) {
    let mut f = Fixture::copy("initializer");
    let mut first_edit_made = false;
    if row.edited_after_build {
        f.build_by_the_test("cc -O0 -g -o app main.c counter.c");
        if let Some(Save { from, to, .. }) = row.steps.first() {
            f.edit("counter.c", from, to);
            first_edit_made = true;
        }
    }
    f.start();
    f.wait_launched();
    f.wait_output("tick=");
    for (n, step) in row.steps.iter().enumerate() {
        let (from, to, warned) = match step {
            Save { from, to, warned } => (*from, *to, *warned),
            Undo => {
                f.send(Command::Undo);
                f.wait("the undo", |e| match e {
                    SessionEvent::Message {
                        severity: Severity::Information,
                        text,
                    } if text.contains("reverted") => Some(()),
                    SessionEvent::Message {
                        severity: Severity::Error,
                        text,
                    } => panic!("step {n}: the undo failed: {text}"),
                    _ => None,
                });
                continue;
            }
        };
        if !(n == 0 && first_edit_made) {
            f.edit("counter.c", from, to);
        }
        f.save("counter.c");
        let end = f.wait("the save to end", |e| match e {
            SessionEvent::Progress(Progress::End { message }) => Some(message.clone()),
            _ => None,
        });
        assert_ne!(end, "failed", "step {n}: the save failed: {:#?}", f.log);
        let mut expected: Vec<u32> = warned
            .iter()
            .map(|decl| f.line_of("counter.c", decl))
            .collect();
        expected.sort_unstable();
        let found = current_lines(&f);
        let mut lines: Vec<u32> = found.iter().map(|(line, ..)| *line).collect();
        lines.sort_unstable();
        assert_eq!(
            lines, expected,
            "step {n} ({from:?} -> {to:?}): `initializer-not-applied` on lines {lines:?}, \
             expected on {warned:?}: {found:#?}"
        );
        for (line, severity, message) in &found {
            assert_eq!(*severity, Severity::Warning, "line {line}: {message}");
            assert!(
                message.contains("the running program keeps the current value"),
                "line {line}: {message}"
            );
        }
    }
    // The program still runs with the values it had: nothing was applied.
    for line in f.next_lines(3) {
        for key in ["value", "calls"] {
            let v: u64 = field(&line, key).parse().expect("a number");
            assert!(v < 1_000_000, "an initializer was applied: {line}");
        }
    }
    f.assert_same_process();
}

#[test]
fn an_unrelated_save_keeps_the_warning() {
    check(&UNRELATED_SAVE);
}

#[test]
fn a_second_change_is_compared_with_what_runs() {
    check(&CHANGED_AGAIN);
}

#[test]
fn each_variable_keeps_its_own_warning() {
    check(&TWO_VARIABLES);
}

#[test]
fn a_function_local_static_keeps_its_warning() {
    check(&LOCAL_STATIC);
}

#[test]
fn a_removed_variable_has_no_warning() {
    check(&REMOVED);
}

#[test]
fn undo_keeps_the_warning() {
    check(&UNDONE);
}

#[test]
fn without_a_baseline_the_warning_stays_too() {
    check(&AFTER_THE_BUILD);
}
