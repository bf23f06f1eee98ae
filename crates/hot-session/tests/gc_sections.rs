//! Functions the static linker dropped (fixture `gcsections`: `-ffunction-sections
//! -Wl,--gc-sections`, util.c's `unused_helper` and the static `scale` it calls are not in
//! the program): a save that leaves them as they were neither links nor lists them; one whose
//! new code calls them links them, lists them as added, and the call works.

mod common;

use common::Fixture;

/// One save of util.c.
struct Row {
    from: &'static str,
    to: &'static str,
    swapped: &'static [&'static str],
    /// The swap's `added`, in any order.
    added: &'static [&'static str],
    /// What the program prints then.
    after: &'static str,
}

const ROWS: &[Row] = &[
    // `used` changes; the dropped functions are as they were.
    Row {
        from: "return v + 1;",
        to: "return v + 2;",
        swapped: &["used"],
        added: &[],
        after: "used=3",
    },
    // `used` now calls unused_helper, which calls scale: both are linked in.
    Row {
        from: "return v + 1;",
        to: "return v + unused_helper(1);",
        swapped: &["used"],
        added: &["scale", "unused_helper"],
        after: "used=101",
    },
];

fn check(row: &Row) {
    let mut f = Fixture::launch("gcsections");
    f.wait_output("used=2");
    f.edit("util.c", row.from, row.to);
    f.save("util.c");
    let swap = f.wait_swap();
    let mut added = swap.added.clone();
    added.sort();
    assert_eq!(
        (swap.swapped.as_slice(), added.as_slice()),
        (
            row.swapped
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .as_slice(),
            row.added
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .as_slice()
        ),
        "{swap:?}"
    );
    f.wait_output(row.after);
    f.assert_same_process();
}

#[test]
fn a_dropped_function_left_as_it_was_is_not_added() {
    check(&ROWS[0]);
}

#[test]
fn a_dropped_function_that_new_code_calls_is_linked_and_added() {
    check(&ROWS[1]);
}

/// A dropped function that another file defined since (an earlier save added it there) is a
/// multiple definition once util.c's new code calls its own: a relink would refuse the two,
/// and linking util.c's would run main.c's body for util.c's calls. The save of util.c is
/// refused on its definition, and the program runs on unchanged. (A link that skipped the
/// check for functions as in their baseline took it: found in review.)
#[test]
fn a_dropped_function_another_file_has_defined_since_is_a_multiple_definition() {
    let mut f = Fixture::launch("gcsections");
    f.wait_output("used=2");
    f.edit(
        "main.c",
        "int used(int v);",
        "int used(int v);\nint unused_helper(int v) { return v * 7; }",
    );
    f.save("main.c");
    let swap = f.wait_swap();
    assert_eq!(swap.added, vec!["unused_helper".to_string()], "{swap:?}");
    f.edit("util.c", "return v + 1;", "return v + unused_helper(1);");
    f.save("util.c");
    let diagnostics = f.wait_diagnostics("util.c");
    let line = f.line_of("util.c", "int unused_helper(int v)");
    assert!(
        // (A second definition is refused as `layout-changed`, README's table of edits.)
        diagnostics.iter().any(|d| d.code == "layout-changed"
            && d.line == line
            && d.message.contains("multiple definition")
            && d.message.contains("unused_helper")
            && d.message.contains("main.c")),
        "{diagnostics:#?}"
    );
    f.assert_unchanged(1, "used=2", 3);
}
