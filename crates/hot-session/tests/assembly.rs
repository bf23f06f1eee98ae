//! Assembly sources are not swapped yet, and a save of one the program was built from says
//! so: one `unsupported-source` warning on its first line, nothing written, the program
//! running on as built; saved back to the text it was built from, the warning goes. An
//! assembly file that is not the program's gets nothing. Fixture `assembly`: value.S
//! (preprocessed) and plain.s, linked into the program and named by the compile database.

mod common;

use common::Fixture;
use hot_session::{SessionEvent, Severity};

const STEADY: &str = "asm=7 plain=3 scale=10";

/// One assembly file of the fixture and an edit of it.
struct Row {
    file: &'static str,
    from: &'static str,
    to: &'static str,
}

const ROWS: &[Row] = &[
    Row {
        file: "value.S",
        from: "#define VALUE 7",
        to: "#define VALUE 70",
    },
    Row {
        file: "plain.s",
        from: "movl $3, %eax",
        to: "movl $30, %eax",
    },
];

fn check(row: &Row) {
    let mut f = Fixture::launch("assembly");
    f.wait_output(STEADY);
    let original = std::fs::read_to_string(f.path(row.file)).expect("read the file");
    f.edit(row.file, row.from, row.to);
    f.save(row.file);
    let diagnostics = f.wait_diagnostics(row.file);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    let d = &diagnostics[0];
    assert_eq!(
        (d.code.as_str(), d.line, d.severity),
        ("unsupported-source", 1, Severity::Warning),
        "{d:#?}"
    );
    for needle in [
        row.file,
        "assembly source",
        "does not swap assembly yet",
        "changed nothing in the running program",
    ] {
        assert!(
            d.message.contains(needle),
            "{needle:?} not in {:?}",
            d.message
        );
    }
    f.assert_unchanged(0, STEADY, 3);

    // Saved back to the text the program was built from: the warning goes.
    f.write(row.file, &original);
    f.save(row.file);
    let path = f.path(row.file);
    f.wait(&format!("{}'s list cleared", row.file), |e| match e {
        SessionEvent::Diagnostics { file, diagnostics } if *file == path => {
            assert!(diagnostics.is_empty(), "{diagnostics:#?}");
            Some(())
        }
        _ => None,
    });
    f.assert_unchanged(0, STEADY, 3);
    assert!(f.errors_seen().is_empty(), "{:#?}", f.errors_seen());
}

#[test]
fn a_saved_s_file_with_the_preprocessor_is_answered_and_not_swapped() {
    check(&ROWS[0]);
}

#[test]
fn a_saved_plain_s_file_is_answered_and_not_swapped() {
    check(&ROWS[1]);
}

/// An assembly file neither the program nor the compile database has: nothing is said (the
/// worker handles saves in order, so the swap of the save after it shows it was handled).
#[test]
fn an_assembly_file_outside_the_program_gets_nothing() {
    let mut f = Fixture::launch("assembly");
    f.wait_output(STEADY);
    f.write("extra.S", "    .text\n");
    let from = f.log.len();
    f.save("extra.S");
    f.edit("main.c", "return x * 1 + OFFSET;", "return x * 2 + OFFSET;");
    f.save("main.c");
    let swap = f.wait_swap();
    assert_eq!(swap.swapped, ["scale"], "{swap:?}");
    f.wait_output("asm=7 plain=3 scale=20");
    assert!(
        f.published_since(from, "extra.S").is_empty(),
        "{:#?}",
        &f.log[from..]
    );
}

/// A header that main.c and value.S both include (offset.h): its save swaps main.c's
/// functions and leaves value.S as built, with a warning on it naming the header (it was
/// swapped in with the header's other includers, running the assembly a save of its own
/// refuses).
#[test]
fn a_header_an_assembly_source_includes_swaps_its_other_includers_only() {
    let mut f = Fixture::launch("assembly");
    f.wait_output(STEADY);
    f.edit("offset.h", "#define OFFSET 0", "#define OFFSET 5");
    let from = f.log.len();
    f.save("offset.h");
    let swap = f.wait_swap();
    assert_eq!(swap.swapped, ["scale"], "{swap:?}");
    f.wait_output("asm=7 plain=3 scale=15");
    // Published before the swap (the warning is said when the includers are chosen).
    let diagnostics = f.published_since(from, "value.S").pop().unwrap_or_default();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    let d = &diagnostics[0];
    assert_eq!(
        (d.code.as_str(), d.severity),
        ("unsupported-source", Severity::Warning),
        "{d:#?}"
    );
    for needle in ["value.S includes offset.h", "does not swap assembly yet"] {
        assert!(
            d.message.contains(needle),
            "{needle:?} not in {:?}",
            d.message
        );
    }
    f.assert_unchanged(1, "asm=7 plain=3 scale=15", 3);
    assert!(f.errors_seen().is_empty(), "{:#?}", f.errors_seen());
}
