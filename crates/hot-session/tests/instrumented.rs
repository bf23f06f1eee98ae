//! Programs built with compiler instrumentation (fixture `instrumented`, built by each row
//! with real gcc or clang): `-fsanitize=address,undefined` and `--coverage` give every file
//! tables of their own (ASan's globals descriptors, UBSan's source locations and type
//! descriptors, gcov's counters and function records). Successive edits of one file that
//! grow those tables all swap: the tables are copied fresh with each body, never named in
//! `added`, never refused as `layout-changed` or warned about as `initializer-not-applied`,
//! and the program keeps running with no sanitizer report.

mod common;

use common::Fixture;
use hot_session::{OutputStream, SessionEvent};

/// One build and the edits saved one after the other.
struct Row {
    /// The compiler (`cc`, `clang`).
    cc: &'static str,
    /// The instrumentation options, for every file and the link.
    flags: &'static str,
    /// How many of [`EDITS`] are saved, in order.
    edits: usize,
}

/// Edits of calc.c, each one a list of replacements and the value `calc` prints after it.
/// 1: a string literal (an ASan-redzoned global) behind a branch; 2: a new global array;
/// 3: a multiplication UBSan checks for overflow.
const EDITS: &[(&[(&str, &str)], &str)] = &[
    (
        &[(
            "    return r;",
            "    if (v < 0)\n        fputs(\"negative\\n\", stderr);\n    return r + 63;",
        )],
        "calc=70",
    ),
    (
        &[
            (
                "static int calls;",
                "static int calls;\nint extra[16] = {30};",
            ),
            ("return r + 63;", "return r + 63 + extra[calls & 15 & 0];"),
        ],
        "calc=100",
    ),
    (&[("* 0 + 7;", "* 0 + 7 + v * v * 0 - 1;")], "calc=99"),
];

fn check(row: &Row) {
    let mut f = Fixture::copy("instrumented");
    let cmd = format!("{} -O1 -g -fno-omit-frame-pointer {}", row.cc, row.flags);
    f.write(
        "hot-lsp.toml",
        &format!(
            "[program]\npath = \"app\"\nbuild = \"{cmd} -o app main.c calc.c\"\n\n\
             [compile]\ncommand = \"{cmd} -c {{file}} -o {{output}}\"\n"
        ),
    );
    f.start();
    f.wait_launched();
    f.wait_output("calc=7");
    for (replacements, after) in &EDITS[..row.edits] {
        for (from, to) in *replacements {
            f.edit("calc.c", from, to);
        }
        f.save("calc.c");
        let swap = f.wait_swap();
        assert!(swap.swapped.iter().any(|s| s == "calc"), "{swap:?}");
        let internal: Vec<&String> = swap
            .added
            .iter()
            .filter(|name| name.starts_with('.') || name.starts_with("__"))
            .collect();
        assert!(
            internal.is_empty(),
            "compiler tables listed as added: {swap:?}"
        );
        f.wait_output(after);
        f.assert_same_process();
    }
    for event in &f.log {
        match event {
            SessionEvent::Diagnostics { diagnostics, .. } => {
                assert!(diagnostics.is_empty(), "{diagnostics:#?}")
            }
            SessionEvent::Output {
                stream: OutputStream::Stderr,
                text,
            } => {
                for report in ["AddressSanitizer", "runtime error", "negative"] {
                    assert!(!text.contains(report), "the program reported: {text}");
                }
            }
            _ => {}
        }
    }
}

const ROWS: &[Row] = &[
    Row {
        cc: "cc",
        flags: "-fsanitize=address,undefined",
        edits: 3,
    },
    Row {
        cc: "clang",
        flags: "-fsanitize=address,undefined",
        edits: 3,
    },
    Row {
        cc: "cc",
        flags: "--coverage",
        edits: 2,
    },
    Row {
        cc: "clang",
        flags: "--coverage",
        edits: 2,
    },
];

#[test]
fn gcc_asan_ubsan_three_edits_swap() {
    check(&ROWS[0]);
}

#[test]
fn clang_asan_ubsan_three_edits_swap() {
    check(&ROWS[1]);
}

#[test]
fn gcc_coverage_two_edits_swap() {
    check(&ROWS[2]);
}

#[test]
fn clang_coverage_two_edits_swap() {
    check(&ROWS[3]);
}
