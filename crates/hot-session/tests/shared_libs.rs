//! The project's own shared libraries, really swapped (tests/fixtures/sharedlib, built with
//! `cc` and with `clang`): a saved file compiled into libfoo.so is patched into the library
//! (its symbols, bias and GOT; arenas near it), new library code binds the library's own
//! hidden functions and statics — never the executable's same-named ones — and the names
//! the executable interposes as the dynamic linker bound them; a file of the executable is
//! still patched into the executable. Each case is a row.

mod common;

use common::{field, Fixture};
use hot_session::{Command, Severity};

/// Both C compilers the fixture is built with.
const COMPILERS: [&str; 2] = ["cc", "clang"];

/// The `sharedlib` fixture built by `compiler`, launched and printing.
fn sharedlib(compiler: &str) -> Fixture {
    let mut f = Fixture::copy("sharedlib");
    f.write(
        "hot-lsp.toml",
        &format!("[program]\npath = \"app\"\nbuild = \"CC={compiler} sh build.sh\"\n"),
    );
    f.start();
    f.wait_launched();
    f.wait_output("tick=");
    f
}

/// The library's `count=` of an output line: its static counter, which a swap must keep.
fn count(line: &str) -> u64 {
    field(line, "count")
        .parse()
        .unwrap_or_else(|_| panic!("count= is not a number in {line:?}"))
}

/// One edit that must swap.
struct Edit<'a> {
    /// What the row shows.
    what: &'a str,
    /// The file edited, and its replacements in order.
    file: &'a str,
    edits: &'a [(&'a str, &'a str)],
    /// The functions swapped.
    swapped: &'a [&'a str],
    /// A piece of every line the new code prints.
    after: &'a str,
}

/// With each compiler: launch, apply `row`'s edits, save; exactly `row.swapped` must swap,
/// the program print `row.after`, the library's counter go on from where it was, and the
/// process be the one launched at first. Returns the fixtures, swapped, for more checks.
fn check_edit(row: &Edit<'_>) -> Vec<Fixture> {
    COMPILERS
        .iter()
        .map(|compiler| {
            let mut f = sharedlib(compiler);
            let before = count(&f.wait_output("tick="));
            for (from, to) in row.edits {
                f.edit(row.file, from, to);
            }
            f.save(row.file);
            let swap = f.wait_swap();
            assert_eq!(
                swap.swapped, row.swapped,
                "{} ({compiler}): {swap:?}",
                row.what
            );
            let line = f.wait_output(row.after);
            assert!(
                count(&line) > before,
                "{} ({compiler}): the library's counter restarted: {before} then {line:?}",
                row.what
            );
            f.assert_same_process();
            f
        })
        .collect()
}

#[test]
fn a_library_function_edited_is_swapped_in_the_library_and_keeps_its_state() {
    check_edit(&Edit {
        what: "a static function of the library",
        file: "lib/foo.c",
        edits: &[("return \"one\";", "return \"two\";")],
        swapped: &["label"],
        after: "label=two value=0 who=app",
    });
}

#[test]
fn new_library_code_binds_the_librarys_hidden_function_and_statics() {
    // The library's lib_hidden(7) is 107 (main.c's is 5907); its `counter` counts ticks
    // (main.c's static of that name is 5000); `lib_scale` is the variable main.c set to 7
    // (through its copy of it in a gcc PIE, R_X86_64_COPY), not the library's initial 3.
    check_edit(&Edit {
        what: "a hidden function, a static and an exported variable of the library",
        file: "lib/foo.c",
        edits: &[(
            "return 0;",
            "return lib_hidden(lib_scale) + 1000 * (counter >= 5000);",
        )],
        swapped: &["value"],
        after: "label=one value=107 who=app",
    });
}

#[test]
fn new_library_code_calls_what_the_executable_interposes() {
    // main.c defines whoami too: the dynamic linker bound the library's calls to it, and
    // new code of the library calls it as well.
    check_edit(&Edit {
        what: "a function the executable interposes",
        file: "lib/foo.c",
        edits: &[("return \"one\";", "return whoami();")],
        swapped: &["label"],
        after: "label=app value=0 who=app",
    });
}

#[test]
fn a_file_of_the_executable_is_still_patched_into_the_executable() {
    check_edit(&Edit {
        what: "a static function of the executable",
        file: "main.c",
        edits: &[("return \"main-one\";", "return \"main-two\";")],
        swapped: &["app_label"],
        after: "app=main-two hidden=5900",
    });
}

#[test]
fn undo_restores_the_librarys_entries_and_a_later_save_swaps_again() {
    let row = Edit {
        what: "a static function of the library, undone",
        file: "lib/foo.c",
        edits: &[("return \"one\";", "return \"two\";")],
        swapped: &["label"],
        after: "label=two",
    };
    for mut f in check_edit(&row) {
        f.send(Command::Undo);
        let text = f.wait_message(Severity::Information);
        assert!(
            text.contains("reverted") && text.contains("lib/foo.c"),
            "{text}"
        );
        f.fresh_output.clear();
        f.wait_output("label=one");
        // A main.c swap after it goes to the executable, the library keeps its original code.
        f.edit("main.c", "return \"main-one\";", "return \"main-three\";");
        f.save("main.c");
        let swap = f.wait_swap();
        assert_eq!(swap.swapped, ["app_label"], "{swap:?}");
        let line = f.wait_output("app=main-three");
        assert!(line.contains("label=one"), "{line}");
        f.assert_same_process();
    }
}

#[test]
fn an_undefined_symbol_in_a_library_edit_is_refused_and_leaves_it_running() {
    for compiler in COMPILERS {
        let mut f = sharedlib(compiler);
        f.edit(
            "lib/foo.c",
            "static int counter;",
            "static int counter;\nint nosuch(void);",
        );
        f.edit("lib/foo.c", "return 0;", "return nosuch();");
        let line = f.line_of("lib/foo.c", "return nosuch();");
        f.save("lib/foo.c");
        let diagnostics = f.wait_diagnostics("lib/foo.c");
        let found = diagnostics
            .iter()
            .find(|d| d.code == "undefined-symbol")
            .unwrap_or_else(|| panic!("{compiler}: no undefined-symbol: {diagnostics:#?}"));
        assert_eq!(
            (found.line, found.severity),
            (line, Severity::Error),
            "{found:?}"
        );
        assert!(found.message.contains("nosuch"), "{found:?}");
        f.assert_unchanged(0, "label=one value=0 who=app", 3);
    }
}
