//! The project's own shared libraries, really swapped (tests/fixtures/sharedlib, built with
//! `cc` and with `clang`, with and without baselines): a saved file compiled into libfoo.so is patched into the library
//! (its symbols, bias and GOT; arenas near it), new library code binds the library's own
//! hidden functions and statics — never the executable's same-named ones — and the names
//! the executable interposes as the dynamic linker bound them; a file of the executable is
//! still patched into the executable. Each case is a row.

mod common;

use common::{field, Fixture};
use hot_session::{Command, Severity};

/// A way to build the fixture: the compiler, and what runs after build.sh.
type Build = (&'static str, &'static str);

/// Both C compilers; each with baselines (the sources as built), and with the sources
/// touched after the build, so that no baseline is trusted and each save is compared with
/// the running library's code instead (hot-link's image_diff: a library calls its own
/// exported functions through its PLT).
const BUILDS: [Build; 4] = [
    ("cc", ""),
    ("clang", ""),
    ("cc", " && touch lib/foo.c lib/plug.c main.c"),
    ("clang", " && touch lib/foo.c lib/plug.c main.c"),
];

/// Both compilers with libfoo built as CMake builds a versioned library (`build.sh
/// versioned`): ld.so lists it by its SONAME symlink, the kernel maps the versioned file.
const VERSIONED: [Build; 2] = [("cc", " versioned"), ("clang", " versioned")];

/// The `sharedlib` fixture built as `build` says, launched and printing.
fn sharedlib((compiler, after): Build) -> Fixture {
    let mut f = Fixture::copy("sharedlib");
    f.write(
        "hot-lsp.toml",
        &format!("[program]\npath = \"app\"\nbuild = \"CC={compiler} sh build.sh{after}\"\n"),
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
    /// Files created after the launch (`load-plug` has the program `dlopen` libplug.so),
    /// and what the program prints once it saw them.
    create: &'a [&'a str],
    before: &'a str,
    /// The file edited, and its replacements in order.
    file: &'a str,
    edits: &'a [(&'a str, &'a str)],
    /// The functions swapped.
    swapped: &'a [&'a str],
    /// Functions that may be swapped too when there is no baseline: compared with the
    /// running code, they are not shown to do the same (swapping too much, never too
    /// little).
    may_also: &'a [&'a str],
    /// A piece of every line the new code prints.
    after: &'a str,
}

/// With each build: launch, apply `row`'s edits, save; exactly `row.swapped` must swap,
/// the program print `row.after`, the library's counter go on from where it was, and the
/// process be the one launched at first. Returns the fixtures, swapped, for more checks.
fn check_edit(row: &Edit<'_>) -> Vec<Fixture> {
    check_edit_in(&BUILDS, row)
}

/// [`check_edit`] with the given builds.
fn check_edit_in(builds: &[Build], row: &Edit<'_>) -> Vec<Fixture> {
    builds
        .iter()
        .map(|&build| {
            let mut f = sharedlib(build);
            for file in row.create {
                f.write(file, "");
            }
            let before = count(&f.wait_output(row.before));
            for (from, to) in row.edits {
                f.edit(row.file, from, to);
            }
            f.save(row.file);
            let swap = f.wait_swap();
            let extra = !build.1.is_empty();
            let swapped: Vec<&String> = swap
                .swapped
                .iter()
                .filter(|s| !(extra && row.may_also.contains(&s.as_str())))
                .collect();
            assert_eq!(swapped, row.swapped, "{} ({build:?}): {swap:?}", row.what);
            let line = f.wait_output(row.after);
            assert!(
                count(&line) > before,
                "{} ({build:?}): the library's counter restarted: {before} then {line:?}",
                row.what
            );
            f.assert_same_process();
            f
        })
        .collect()
}

/// The edit of the library's static `label`, for each way to build the library.
const LABEL_EDIT: Edit<'static> = Edit {
    what: "a static function of the library",
    file: "lib/foo.c",
    create: &[],
    before: "tick=",
    edits: &[("return \"one\";", "return \"two\";")],
    swapped: &["label"],
    may_also: &[],
    after: "label=two value=0 who=app",
};

#[test]
fn a_library_function_edited_is_swapped_in_the_library_and_keeps_its_state() {
    check_edit(&LABEL_EDIT);
}

#[test]
fn a_library_reached_through_its_soname_symlink_is_swapped_in_the_library() {
    // DT_NEEDED libfoo.so.1 -> libfoo.so.1.2.3: the library is the file mapped, whatever
    // ld.so calls it; the swap goes into it, in the process launched.
    let fixtures = check_edit_in(&VERSIONED, &LABEL_EDIT);
    for f in &fixtures {
        let target = std::fs::read_link(f.path("lib/libfoo.so.1")).expect("libfoo.so.1 symlink");
        assert_eq!(
            target,
            std::path::Path::new("libfoo.so.1.2.3"),
            "the build is versioned"
        );
    }
}

#[test]
fn new_library_code_binds_the_librarys_hidden_function_and_statics() {
    // The library's lib_hidden(7) is 107 (main.c's is 5907); its `counter` counts ticks
    // (main.c's static of that name is 5000); `lib_scale` is the variable main.c set to 7
    // (through its copy of it in a gcc PIE, R_X86_64_COPY), not the library's initial 3.
    check_edit(&Edit {
        what: "a hidden function, a static and an exported variable of the library",
        file: "lib/foo.c",
        create: &[],
        before: "tick=",
        edits: &[(
            "return 0;",
            "return lib_hidden(lib_scale) + 1000 * (counter >= 5000);",
        )],
        swapped: &["value"],
        may_also: &[],
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
        create: &[],
        before: "tick=",
        edits: &[("return \"one\";", "return whoami();")],
        swapped: &["label"],
        may_also: &[],
        after: "label=app value=0 who=app",
    });
}

#[test]
fn a_file_of_the_executable_is_still_patched_into_the_executable() {
    check_edit(&Edit {
        what: "a static function of the executable",
        file: "main.c",
        create: &[],
        before: "tick=",
        edits: &[("return \"main-one\";", "return \"main-two\";")],
        swapped: &["app_label"],
        // gcc -O0's literals of main.c share one block with app_label's.
        may_also: &["main"],
        after: "app=main-two hidden=5900",
    });
}

#[test]
fn a_library_loaded_with_dlopen_after_launch_is_patched_too() {
    check_edit(&Edit {
        what: "a function of a library dlopen'ed after hot-lsp read the libraries",
        create: &["load-plug"],
        before: "plug=1",
        file: "lib/plug.c",
        edits: &[("return 1;", "return 2;")],
        swapped: &["plug_value"],
        may_also: &[],
        after: "label=one value=0 who=app app=main-one hidden=5900 plug=2",
    });
}

#[test]
fn undo_restores_the_librarys_entries_and_a_later_save_swaps_again() {
    let row = Edit {
        what: "a static function of the library, undone",
        file: "lib/foo.c",
        create: &[],
        before: "tick=",
        edits: &[("return \"one\";", "return \"two\";")],
        swapped: &["label"],
        may_also: &[],
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
        // `main` too without a baseline (see the executable's row).
        assert!(
            swap.swapped.iter().any(|s| s == "app_label")
                && swap.swapped.iter().all(|s| s == "app_label" || s == "main"),
            "{swap:?}"
        );
        let line = f.wait_output("app=main-three");
        assert!(line.contains("label=one"), "{line}");
        f.assert_same_process();
    }
}

/// Edit lib/foo.c to declare and call `name`, save it, and return its `undefined-symbol`
/// diagnostic.
fn save_library_call_of(f: &mut Fixture, name: &str) -> hot_session::Diagnostic {
    f.edit(
        "lib/foo.c",
        "static int counter;",
        &format!("static int counter;\nint {name}(void);"),
    );
    f.edit("lib/foo.c", "return 0;", &format!("return {name}();"));
    f.save("lib/foo.c");
    let diagnostics = f.wait_diagnostics("lib/foo.c");
    diagnostics
        .into_iter()
        .find(|d| d.code == "undefined-symbol")
        .unwrap_or_else(|| panic!("{name}: no undefined-symbol"))
}

#[test]
fn an_undefined_symbol_in_a_library_edit_is_refused_and_leaves_it_running() {
    for build in BUILDS {
        let mut f = sharedlib(build);
        let found = save_library_call_of(&mut f, "nosuch");
        let line = f.line_of("lib/foo.c", "return nosuch();");
        assert_eq!(
            (found.line, found.severity),
            (line, Severity::Error),
            "{found:?}"
        );
        assert!(found.message.contains("nosuch"), "{found:?}");
        f.assert_unchanged(0, "label=one value=0 who=app", 3);
    }
}

/// Rows: a function of the executable new library code calls, and the edit of main.c that
/// defines it first (`None`: main.c defines it as built): the executable defines it but does
/// not export it (no `-rdynamic`), which the refusal says, naming main.c.
const UNEXPORTED: &[(&str, Option<(&str, &str)>)] = &[
    ("app_helper", None),
    (
        "app_added",
        Some((
            "static const char *app_label(void) {",
            "int app_added(void) {\n    return 4;\n}\n\nstatic const char *app_label(void) {",
        )),
    ),
];

#[test]
fn library_code_calling_a_function_the_executable_does_not_export_is_refused_saying_so() {
    for &(name, define) in UNEXPORTED {
        let mut f = sharedlib(BUILDS[0]);
        let mut swaps = 0;
        if let Some((from, to)) = define {
            f.edit("main.c", from, to);
            f.save("main.c");
            let swap = f.wait_swap();
            assert!(swap.added.iter().any(|a| a == name), "{swap:?}");
            swaps = 1;
        }
        let found = save_library_call_of(&mut f, name);
        let main = f.path("main.c").display().to_string();
        for needle in [
            name,
            "the executable defines",
            &main,
            "does not export",
            "-rdynamic",
        ] {
            assert!(
                found.message.contains(needle),
                "{needle:?} not in {found:?}"
            );
        }
        assert!(
            !found.message.contains("no file of the compile database"),
            "{found:?}"
        );
        f.assert_unchanged(swaps, "label=one value=0 who=app", 3);
    }
}

#[test]
fn a_header_of_the_library_and_the_executable_is_refused_as_one_swap_of_two_images() {
    // lib/foo.h is included by main.c (the executable) and lib/foo.c (libfoo.so): one
    // atomic swap across two images is not supported, so nothing is swapped.
    let mut f = sharedlib(BUILDS[0]);
    f.edit(
        "lib/foo.h",
        "extern int lib_scale;",
        "extern int lib_scale;\nint lib_extra(void);",
    );
    f.save("lib/foo.h");
    let text = f.wait_message(Severity::Error);
    assert!(
        text.contains("two images") && text.contains("libfoo.so"),
        "{text}"
    );
    f.assert_unchanged(0, "label=one value=0 who=app app=main-one", 3);
}

/// A save of a library the program has not loaded yet: held (an information diagnostic
/// naming the library, nothing swapped, nothing linked into the executable), then swapped
/// into the library once the program `dlopen`s it.
struct BeforeLoad<'a> {
    what: &'a str,
    file: &'a str,
    edits: &'a [(&'a str, &'a str)],
    /// The library the diagnostic names.
    library: &'a str,
    /// What the program prints before the library is loaded.
    before: &'a str,
    /// The file whose creation has the program load it.
    load: &'a str,
    swapped: &'a [&'a str],
    /// A piece of a line the edited code of the library prints.
    after: &'a str,
}

/// With each build: launch, save `row`'s edit while the library is not loaded, check it is
/// held; have the program load it, and check the edit swaps into the library.
fn check_before_load(row: &BeforeLoad<'_>) {
    for build in BUILDS {
        let mut f = sharedlib(build);
        f.wait_output(row.before);
        for (from, to) in row.edits {
            f.edit(row.file, from, to);
        }
        f.save(row.file);
        let diagnostics = f.wait_diagnostics(row.file);
        let held = diagnostics
            .iter()
            .find(|d| d.code == "library-not-loaded")
            .unwrap_or_else(|| panic!("{} ({build:?}): not held: {diagnostics:#?}", row.what));
        assert_eq!(held.severity, Severity::Information, "{held:?}");
        assert!(
            held.message.contains(row.library) && held.message.contains("not loaded yet"),
            "{} ({build:?}): {held:?}",
            row.what
        );
        // Nothing was swapped (no new code in the executable): the program runs as it did.
        f.assert_unchanged(0, row.before, 3);
        f.write(row.load, "");
        let swap = f.wait_swap();
        assert_eq!(
            swap.swapped, row.swapped,
            "{} ({build:?}): {swap:?}",
            row.what
        );
        assert!(
            swap.added.is_empty(),
            "{} ({build:?}): new code was linked: {swap:?}",
            row.what
        );
        f.wait_output(row.after);
        f.assert_same_process();
    }
}

#[test]
fn a_save_of_a_library_not_loaded_yet_is_held_and_swapped_into_it_once_loaded() {
    check_before_load(&BeforeLoad {
        what: "a function of libplug.so saved before the program dlopens it",
        file: "lib/plug.c",
        edits: &[("return 1;", "return 2;")],
        library: "lib/libplug.so",
        before: "plug=0",
        load: "load-plug",
        swapped: &["plug_value"],
        after: "hidden=5900 plug=2",
    });
}

/// A library swapped, then unloaded and loaded again at another address (`reload-plug`):
/// the session notices the new load by itself and links the earlier swap into it, and the
/// next save goes into the new load, never where the old one was.
struct Reload<'a> {
    what: &'a str,
    file: &'a str,
    /// The edit swapped into the first load, and what the program prints then (and again
    /// once it is re-applied to the new load).
    first: (&'a str, &'a str),
    first_after: &'a str,
    /// The edit saved after the reload, and what the program prints then.
    second: (&'a str, &'a str),
    swapped: &'a [&'a str],
    second_after: &'a str,
}

/// With each build: load libplug.so, swap `row.first`, reload the library elsewhere: the
/// first edit must be swapped into the new load without a save, the session say the library
/// moved; then `row.second` must swap into the new load too.
fn check_reload(row: &Reload<'_>) {
    for build in BUILDS {
        let mut f = sharedlib(build);
        f.write("load-plug", "");
        f.wait_output("plug=1");
        f.edit(row.file, row.first.0, row.first.1);
        f.save(row.file);
        f.wait_swap();
        f.wait_output(row.first_after);
        f.write("reload-plug", "");
        f.wait_output("plug reloaded elsewhere");
        let again = f.wait_swap();
        swapped_all(
            row.swapped,
            &again,
            &format!("{} ({build:?}), re-applied", row.what),
        );
        f.fresh_output.clear();
        f.wait_output(row.first_after);
        let warning = f.wait_message(Severity::Warning);
        assert!(
            warning.contains("libplug.so") && warning.contains("unloaded"),
            "{} ({build:?}): {warning}",
            row.what
        );
        f.edit(row.file, row.second.0, row.second.1);
        f.save(row.file);
        let swap = f.wait_swap();
        swapped_all(row.swapped, &swap, &format!("{} ({build:?})", row.what));
        f.wait_output(row.second_after);
        no_false_still_running(&f, &format!("{} ({build:?})", row.what));
        f.assert_same_process();
    }
}

#[test]
fn a_library_unloaded_and_loaded_again_elsewhere_is_swapped_in_its_new_load() {
    check_reload(&Reload {
        what: "libplug.so swapped, dlclose'd and dlopen'ed again at another address",
        file: "lib/plug.c",
        first: ("return 1;", "return 2;"),
        first_after: "hidden=5900 plug=2",
        second: ("return 2;", "return 3;"),
        swapped: &["plug_value"],
        second_after: "hidden=5900 plug=3",
    });
    // A first swap that only adds a function writes no entry jump into the library: the
    // new load is told by its address alone, in idle time too.
    check_reload(&Reload {
        what: "libplug.so given a new function, dlclose'd and dlopen'ed again elsewhere",
        file: "lib/plug.c",
        first: (
            "int plug_value(void) {",
            "int plug_pad(void) {\n    return 7;\n}\n\nint plug_value(void) {",
        ),
        first_after: "hidden=5900 plug=1",
        second: ("return 1;", "return 3;"),
        swapped: &[],
        second_after: "hidden=5900 plug=3",
    });
}

/// Every function of `expected` is among those `swap` swapped (`what` says which swap).
fn swapped_all(expected: &[&str], swap: &hot_session::SwapSummary, what: &str) {
    assert!(
        expected.iter().all(|s| swap.swapped.iter().any(|w| w == s)),
        "{what}: {expected:?} not all swapped: {swap:?}"
    );
}

/// How a row of [`check_same_base_reload`] has the program load libplug.so again at the
/// address it had (`reload-here`).
#[derive(Clone, Copy, Debug)]
enum Reloaded {
    /// The very file it had: only the entry jumps hot-lsp wrote tell the loads apart.
    SameFile,
    /// A rebuilt file renamed over it (`lib/libplug.so.new`): a new inode.
    RenamedOver,
    /// A rebuilt file copied into it (`lib/libplug.so.inplace`): the same inode.
    RewrittenInPlace,
}

/// A library reloaded where it was: the session must tell the new load from the old (its
/// model read again, this session's swaps linked into it), and the next save must run
/// what it says — never code linked against the old load's layout.
#[derive(Clone, Copy)]
struct SameBase<'a> {
    what: &'a str,
    how: Reloaded,
    /// libplug.so's source as built.
    source: &'a str,
    /// What it prints as built.
    built: &'a str,
    /// The edit swapped before the reload, and what the program prints then.
    first: (&'a str, &'a str),
    first_after: &'a str,
    /// Whether the reloaded library is rebuilt from the source as edited (else it is the
    /// file as built, which the session's first swap must be re-applied to).
    rebuilt: bool,
    /// What the reloaded library prints before the second save.
    reloaded: &'a str,
    /// The edit saved after the reload, the functions it swaps, and what is printed then.
    second: (&'a str, &'a str),
    swapped: &'a [&'a str],
    second_after: &'a str,
    /// What must never be printed (code linked against the old load).
    never: Option<&'a str>,
}

/// The sharedlib fixture with `lib/plug.c` as `plug`, built with `compiler`, launched with
/// libplug.so loaded.
fn sharedlib_with_plug(compiler: &str, after: &str, plug: &str, printed: &str) -> Fixture {
    let mut f = Fixture::copy("sharedlib");
    f.write("lib/plug.c", plug);
    f.write(
        "hot-lsp.toml",
        &format!("[program]\npath = \"app\"\nbuild = \"CC={compiler} sh build.sh{after}\"\n"),
    );
    f.write("load-plug", "");
    f.start();
    f.wait_launched();
    f.wait_output(printed);
    f
}

/// No `still-running` note names a thread twice or blames a function no thread runs in
/// (the program's thread sleeps in `usleep` from main, never in libplug.so's code).
fn no_false_still_running(f: &Fixture, what: &str) {
    for event in &f.log {
        if let hot_session::SessionEvent::Diagnostics { diagnostics, .. } = event {
            for d in diagnostics.iter().filter(|d| d.code == "still-running") {
                assert!(
                    !d.message.contains("plug_value") && !d.message.contains("scale"),
                    "{what}: {d:?}"
                );
            }
        }
    }
}

/// With each build: swap `row.first`, have the program reload libplug.so at the same
/// address as `row.how` says; the session must say the load is new and, when the library
/// is the file as built, swap the first edit into it again; `row.second` must then swap
/// and print `row.second_after`, never `row.never`.
fn check_same_base_reload(row: &SameBase<'_>) {
    for (compiler, after) in BUILDS {
        let what = format!("{} ({compiler}{after})", row.what);
        let mut f = sharedlib_with_plug(compiler, after, row.source, row.built);
        f.edit("lib/plug.c", row.first.0, row.first.1);
        f.save("lib/plug.c");
        f.wait_swap();
        f.wait_output(row.first_after);
        match row.how {
            Reloaded::SameFile => {}
            Reloaded::RenamedOver => f.build_plug(compiler, "libplug.so.new"),
            Reloaded::RewrittenInPlace => f.build_plug(compiler, "libplug.so.inplace"),
        }
        f.write("reload-here", "");
        let line = f.wait_output("plug reloaded");
        assert!(
            line.contains("here"),
            "{what}: not reloaded in place: {line}"
        );
        if !row.rebuilt {
            // The file as built runs again: the first edit is swapped into the new load.
            let again = f.wait_swap();
            swapped_all(&["plug_value"], &again, &format!("{what}, re-applied"));
        }
        let warning = f.wait_message(Severity::Warning);
        assert!(
            warning.contains("libplug.so") && warning.contains("unloaded"),
            "{what}: {warning}"
        );
        f.fresh_output.clear();
        f.wait_output(row.reloaded);
        f.edit("lib/plug.c", row.second.0, row.second.1);
        f.save("lib/plug.c");
        let swap = f.wait_swap();
        swapped_all(row.swapped, &swap, &what);
        f.fresh_output.clear();
        f.wait_output(row.second_after);
        f.next_lines(3);
        if let Some(never) = row.never {
            assert_eq!(f.printed(never), 0, "{what}: the old load's code ran");
        }
        no_false_still_running(&f, &what);
        f.assert_same_process();
    }
}

/// libplug.so calling a function placed after the one it is: a function added before
/// that one moves it in a rebuild, where a link against the old load would call the
/// added one instead.
const SCALED_PLUG: &str = "int scale(int x);\n\nint plug_value(void) {\n    return scale(10) + 1;\n}\n\nint scale(int x) {\n    return x * 2;\n}\n";

#[test]
fn a_library_reloaded_at_the_same_address_is_a_new_load() {
    let pad = (
        "int scale(int x) {\n    return x * 2;",
        "int pad_fn(int x) {\n    return x + 1000;\n}\n\nint scale(int x) {\n    return x * 2;",
    );
    let renamed = SameBase {
        what: "a rebuilt file renamed over it, loaded where it was",
        how: Reloaded::RenamedOver,
        source: SCALED_PLUG,
        built: "plug=21",
        first: pad,
        first_after: "plug=21",
        rebuilt: true,
        reloaded: "hidden=5900 plug=21",
        second: ("return scale(10) + 1;", "return scale(10) + 2;"),
        swapped: &["plug_value"],
        second_after: "hidden=5900 plug=22",
        never: Some("plug=1012"),
    };
    let rows = [
        SameBase {
            what: "the same file loaded again where it was",
            how: Reloaded::SameFile,
            source: "int plug_value(void) {\n    return 1;\n}\n",
            built: "plug=1",
            first: ("return 1;", "return 2;"),
            first_after: "hidden=5900 plug=2",
            rebuilt: false,
            reloaded: "hidden=5900 plug=2",
            second: ("return 2;", "return 3;"),
            swapped: &["plug_value"],
            second_after: "hidden=5900 plug=3",
            never: None,
        },
        renamed,
        SameBase {
            what: "a rebuilt file copied into it (same inode), loaded where it was",
            how: Reloaded::RewrittenInPlace,
            ..renamed
        },
    ];
    for row in &rows {
        check_same_base_reload(row);
    }
}

/// Whether the session said `library-not-loaded` on `rel` (of `f`) so far.
fn held_for_load(f: &mut Fixture, rel: &str) -> bool {
    f.drain();
    let path = f.path(rel);
    f.log.iter().any(|e| {
        matches!(e, hot_session::SessionEvent::Diagnostics { file, diagnostics }
            if *file == path && diagnostics.iter().any(|d| d.code == "library-not-loaded"))
    })
}

#[test]
fn a_relaunch_replays_the_executable_now_and_holds_a_file_of_a_library_not_loaded_yet() {
    for compiler in ["cc", "clang"] {
        let mut f = Fixture::copy("sharedlib");
        // Built here, not by a build command: the relaunch runs the very same build, which
        // gets this session's changes again.
        let built = std::process::Command::new("sh")
            .arg("build.sh")
            .env("CC", compiler)
            .current_dir(f.dir.path())
            .status()
            .expect("run build.sh");
        assert!(built.success());
        f.write("hot-lsp.toml", "[program]\npath = \"app\"\n");
        f.write("load-plug", "");
        f.start();
        let first = f.wait_launched();
        f.wait_output("plug=1");
        f.edit("lib/plug.c", "return 1;", "return 2;");
        f.save("lib/plug.c");
        f.wait_swap();
        f.edit("main.c", "return \"main-one\";", "return \"main-two\";");
        f.save("main.c");
        f.wait_swap();
        f.wait_output("app=main-two hidden=5900 plug=2");
        // The relaunch does not load libplug.so until `load-plug` is there again.
        std::fs::remove_file(f.path("load-plug")).expect("remove load-plug");
        f.send(Command::Restart);
        let second = f.wait("the relaunch", |e| match e {
            hot_session::SessionEvent::Launched { pid } if *pid != first => Some(*pid),
            _ => None,
        });
        f.pid = Some(second);
        let note = f.wait_replayed();
        assert!(
            note.contains("1 of 1") && note.contains("1 file(s) of a library"),
            "{compiler}: {note}"
        );
        f.fresh_output.clear();
        let line = f.wait_output("app=main-two");
        assert!(line.contains("plug=0"), "{compiler}: {line}");
        assert!(
            held_for_load(&mut f, "lib/plug.c"),
            "{compiler}: plug.c not held"
        );
        f.write("load-plug", "");
        let swap = f.wait_swap();
        swapped_all(&["plug_value"], &swap, compiler);
        f.wait_output("app=main-two hidden=5900 plug=2");
        f.assert_same_process();
    }
}

#[test]
fn a_header_of_the_executable_and_a_library_not_loaded_yet_swaps_the_executable_and_holds_the_library(
) {
    for (compiler, after) in BUILDS {
        let what = format!("{compiler}{after}");
        let mut f = Fixture::copy("sharedlib");
        f.write("lib/plug.h", "#define PLUG_BONUS 0\n");
        f.write(
            "lib/plug.c",
            "#include \"plug.h\"\n\nint plug_value(void) {\n    return 1 + PLUG_BONUS;\n}\n",
        );
        f.edit(
            "main.c",
            "#include \"lib/foo.h\"",
            "#include \"lib/foo.h\"\n#include \"lib/plug.h\"",
        );
        f.edit(
            "main.c",
            "return \"main-one\";",
            "return PLUG_BONUS ? \"main-bonus\" : \"main-one\";",
        );
        f.write(
            "hot-lsp.toml",
            &format!("[program]\npath = \"app\"\nbuild = \"CC={compiler} sh build.sh{after}\"\n"),
        );
        f.start();
        f.wait_launched();
        f.wait_output("app=main-one hidden=5900 plug=0");
        f.edit("lib/plug.h", "PLUG_BONUS 0", "PLUG_BONUS 1");
        f.save("lib/plug.h");
        let swap = f.wait_swap();
        assert_eq!(swap.files, vec![f.path("main.c")], "{what}: {swap:?}");
        swapped_all(&["app_label"], &swap, &what);
        f.wait_output("app=main-bonus hidden=5900 plug=0");
        assert!(
            held_for_load(&mut f, "lib/plug.c"),
            "{what}: plug.c not held"
        );
        f.write("load-plug", "");
        let swap = f.wait_swap();
        swapped_all(&["plug_value"], &swap, &what);
        f.wait_output("app=main-bonus hidden=5900 plug=2");
        f.assert_same_process();
    }
}

#[test]
fn a_loaded_library_whose_file_is_only_touched_keeps_its_swaps() {
    // The same load runs on (the entry jump hot-lsp wrote is still there): new times on its
    // file are no reload, so nothing is forgotten or said, and the next save swaps as usual.
    for build in BUILDS {
        let mut f = sharedlib(build);
        f.write("load-plug", "");
        f.wait_output("plug=1");
        f.edit("lib/plug.c", "return 1;", "return 2;");
        f.save("lib/plug.c");
        f.wait_swap();
        f.wait_output("hidden=5900 plug=2");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(f.path("lib/libplug.so"))
            .and_then(|file| file.set_modified(later))
            .expect("touch lib/libplug.so");
        f.edit("lib/plug.c", "return 2;", "return 3;");
        f.save("lib/plug.c");
        let swap = f.wait_swap();
        swapped_all(&["plug_value"], &swap, &format!("{build:?}"));
        f.wait_output("hidden=5900 plug=3");
        f.drain();
        let warned = f.log.iter().any(|e| {
            matches!(e, hot_session::SessionEvent::Message { severity: Severity::Warning, text }
                if text.contains("unloaded"))
        });
        assert!(!warned, "{build:?}: a touched file was taken for a reload");
        f.assert_same_process();
    }
}
