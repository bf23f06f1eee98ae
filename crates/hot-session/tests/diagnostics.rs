//! Compiler diagnostics reach the user once: a warning in a header that several translation
//! units include is one diagnostic, not one per includer's compile, and a warning of a saved
//! file is published once per save (a front end that prints every list it gets, like
//! `hot-lsp watch`, shows it once), save after save.

mod common;

use common::Fixture;
use hot_session::{Diagnostic, Progress, SessionEvent, Severity};

/// A save that makes the compiler warn: the workspace, the file edited and saved, the edit,
/// the file the warning is about and a text of its message.
struct Warned {
    fixture: &'static str,
    saved: &'static str,
    from: &'static str,
    to: &'static str,
    warned: &'static str,
    needle: &'static str,
    /// A diagnostic code the file's list must carry besides the warning after the first save.
    besides: Option<&'static str>,
    /// The editor's buffer had the saved text, compiled ahead before each save.
    typed: bool,
}

const ROWS: &[Warned] = &[
    // common.h is included by a.c, b.c and c.c: three compiles say the same warning.
    Warned {
        fixture: "headers3",
        saved: "common.h",
        from: "#define SCALE 1",
        to: "#define SCALE 2\n#warning \"scale is two\"",
        warned: "common.h",
        needle: "scale is two",
        besides: None,
        typed: false,
    },
    Warned {
        fixture: "headers3",
        saved: "a.c",
        from: "int part_a(void) {",
        to: "#warning \"part a changed\"\nint part_a(void) {",
        warned: "a.c",
        needle: "part a changed",
        besides: None,
        typed: false,
    },
    // run_round is swapped while the main thread sleeps inside it: its list gets a
    // `still-running` note after the apply, and the warning must not come again with it.
    Warned {
        fixture: "abi",
        saved: "main.c",
        from: "void run_round(void) {",
        to: "#warning \"round changed\"\nvoid run_round(void) {\n    setvbuf(stdout, NULL, _IOLBF, 0);",
        warned: "main.c",
        needle: "round changed",
        besides: Some("still-running"),
        typed: false,
    },
    // The save takes the object compiled ahead of it: the compile ahead's (empty) findings
    // are cleared without showing the last save's warning once more.
    Warned {
        fixture: "headers3",
        saved: "a.c",
        from: "int part_a(void) {",
        to: "#warning \"part a typed\"\nint part_a(void) {",
        warned: "a.c",
        needle: "part a typed",
        besides: None,
        typed: true,
    },
    // a.c is compiled by itself and included by b.c: the warning only b.c's compile of it
    // says is a.c's, published on a.c.
    Warned {
        fixture: "cinclude",
        saved: "a.c",
        from: "static int scale(int x) {",
        to: "#ifdef A_INCLUDED_ONLY\n#warning \"b.c's copy\"\n#endif\nstatic int scale(int x) {",
        warned: "a.c",
        needle: "b.c's copy",
        besides: None,
        typed: false,
    },
];

/// Wait for the end of the save just made and return the diagnostics lists published for
/// `file` during it.
fn lists_of_save(f: &mut Fixture, file: &str) -> Vec<Vec<Diagnostic>> {
    let from = f.log.len();
    f.wait("the save to end", |e| {
        matches!(e, SessionEvent::Progress(Progress::End { .. })).then_some(())
    });
    f.published_since(from, file)
}

fn check_warned_once(row: &Warned) {
    let mut f = Fixture::launch(row.fixture);
    f.edit(row.saved, row.from, row.to);
    // Twice: the second save must not show the first one's warning again beside its own.
    for round in 1..=2 {
        if row.typed {
            f.compile_ahead(row.saved);
        }
        f.save(row.saved);
        let from = f.log.len();
        let lists = lists_of_save(&mut f, row.warned);
        if row.typed {
            let ahead = f.log[from..].iter().any(|e| match e {
                SessionEvent::Swap(s) => s.micros.compiled_ahead,
                SessionEvent::Unchanged { micros, .. } => micros.compiled_ahead,
                _ => false,
            });
            assert!(ahead, "save {round} did not take the object compiled ahead");
        }
        let warnings = |list: &[Diagnostic]| {
            list.iter()
                .filter(|d| d.severity == Severity::Warning && d.message.contains(row.needle))
                .count()
        };
        let last = lists.last().cloned().unwrap_or_default();
        assert_eq!(
            warnings(&last),
            1,
            "{} (save {round}): the warning in {} once in its list: {lists:#?}",
            row.saved,
            row.warned
        );
        assert_eq!(
            last.iter()
                .filter(|d| d.message.contains(row.needle))
                .map(|d| d.code.as_str())
                .collect::<Vec<_>>(),
            ["compile-warning"]
        );
        // (The second save changes nothing: no apply, no note.)
        if let Some(code) = row.besides.filter(|_| round == 1) {
            let said: Vec<&SessionEvent> = f
                .log
                .iter()
                .filter(|e| matches!(e, SessionEvent::Swap(_) | SessionEvent::Message { .. }))
                .collect();
            assert!(
                last.iter().any(|d| d.code == code),
                "no {code}: {last:#?}\n{said:#?}"
            );
        }
        let total: usize = lists.iter().map(|l| warnings(l)).sum();
        assert_eq!(
            total, 1,
            "{} (save {round}): the warning in {} published once during the save: {lists:#?}",
            row.saved, row.warned
        );
    }
    f.assert_same_process();
}

#[test]
fn a_compile_warning_is_reported_once() {
    for row in ROWS {
        check_warned_once(row);
    }
}

/// A compile error in a source file another unit includes (tests/fixtures/cinclude: b.c
/// includes a.c): the edit of a.c, a text of the error's line, and whether a.c's own
/// compile says it too. An error only b.c's compile finds (a.c alone compiles) says it comes
/// from b.c's compile; one a.c's own compile says too is a.c's, shown once, as it is.
struct IncludedError {
    from: &'static str,
    to: &'static str,
    needle: &'static str,
    also_its_own: bool,
}

const INCLUDED_ERRORS: &[IncludedError] = &[
    // Only b.c defines A_INCLUDED_ONLY: "a.c:N: 'K' undeclared" alone reads as a.c's own.
    IncludedError {
        from: "    return x + 100;",
        to: "#ifdef A_INCLUDED_ONLY\n    x += K_ONLY_IN_B;\n#endif\n    return x + 100;",
        needle: "K_ONLY_IN_B",
        also_its_own: false,
    },
    IncludedError {
        from: "    return x + 100;",
        to: "    x += K_IN_BOTH;\n    return x + 100;",
        needle: "K_IN_BOTH",
        also_its_own: true,
    },
];

#[test]
fn an_error_only_an_includers_compile_finds_says_which_compile_found_it() {
    for row in INCLUDED_ERRORS {
        let mut f = Fixture::launch("cinclude");
        f.wait_output("a=101 b=1101 mixes=0");
        f.edit("a.c", row.from, row.to);
        let line = f.line_of("a.c", row.needle);
        f.save("a.c");
        let lists = lists_of_save(&mut f, "a.c");
        let shown = lists.last().cloned().unwrap_or_default();
        let errors: Vec<&Diagnostic> = shown
            .iter()
            .filter(|d| d.severity == Severity::Error && d.line == line)
            .filter(|d| d.message.contains(row.needle))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "{}: one error on line {line}: {shown:#?}",
            row.needle
        );
        let named = errors[0].message.contains("(compiled as part of b.c)");
        assert_eq!(
            named, !row.also_its_own,
            "{}: the error names b.c's compile only when a.c's own does not say it: {:?}",
            row.needle, errors[0].message
        );
        f.assert_unchanged(0, "a=101 b=1101", 3);
    }
}

/// A linker finding in a header that several files include: the same line of the header,
/// found by each includer's compile (named after the function it was inlined into), is one
/// diagnostic naming the files. `fixture`'s `saved` edited `from` → `to`; the finding's code
/// is on the line holding `needle`; `own` is the includer whose finding stands for the
/// others, `others` the rest.
struct HeaderFinding {
    fixture: &'static str,
    saved: &'static str,
    from: &'static str,
    to: &'static str,
    needle: &'static str,
    code: &'static str,
    own: &'static str,
    others: &'static [&'static str],
}

const HEADER_FINDINGS: &[HeaderFinding] = &[
    // common.h's inline function calls a name nobody defines, inlined into part_a, part_b
    // and part_c (a.c, b.c, c.c): three `undefined-symbol` findings on one line.
    HeaderFinding {
        fixture: "headers3",
        saved: "common.h",
        from: "#define SCALE 1",
        to: "int oops(int);\n\
             static inline __attribute__((always_inline)) int scaled(void) {\n\
             \x20   return oops(1);\n\
             }\n\
             #define SCALE scaled()",
        needle: "return oops(1);",
        code: "undefined-symbol",
        own: "a.c",
        others: &["b.c", "c.c"],
    },
];

#[test]
fn a_header_line_found_by_several_includers_is_one_diagnostic() {
    for row in HEADER_FINDINGS {
        let mut f = Fixture::launch(row.fixture);
        f.edit(row.saved, row.from, row.to);
        let line = f.line_of(row.saved, row.needle);
        f.save(row.saved);
        let lists = lists_of_save(&mut f, row.saved);
        let shown = lists.last().cloned().unwrap_or_default();
        let on_line: Vec<&Diagnostic> = shown
            .iter()
            .filter(|d| d.line == line && d.code == row.code)
            .collect();
        assert_eq!(
            on_line.len(),
            1,
            "{}: one `{}` on line {line}: {shown:#?}",
            row.saved,
            row.code
        );
        let message = &on_line[0].message;
        let names = format!(
            "(found compiling {}; the same on this line in {} other files that include it: {})",
            row.own,
            row.others.len(),
            row.others.join(", ")
        );
        assert!(
            message.ends_with(&names),
            "{}: the diagnostic names the includers ({names}): {message:?}",
            row.saved
        );
        f.assert_same_process();
    }
}
