//! The ABI checks of a swap, on real processes (fixture `abi`): a changed struct layout used
//! by code the swap does not recompile, a changed signature whose callers were not
//! recompiled, a removed function that is still called (all refused, the program left as it
//! was), and a changed function with a live frame (swapped, with an information diagnostic).

mod common;

use common::Fixture;
use hot_session::{SessionEvent, Severity};

/// One refused save: the edit, the code, where the diagnostic sits (the first line of the
/// saved file containing `at`), and what its message must say.
struct Refusal<'a> {
    fixture: &'a str,
    file: &'a str,
    from: &'a str,
    to: &'a str,
    code: &'a str,
    at: &'a str,
    says: &'a [&'a str],
    /// What the message must not say (the recompiled files' own functions).
    not: &'a [&'a str],
    /// The file saved, when it is not the one edited (a header edited, one includer saved).
    saved: Option<&'a str>,
    /// Files saved unchanged before the edit, so that their baselines are compiled from the
    /// header as the program was built (a header edited first leaves them without one).
    first: &'a [&'a str],
    /// What every line the program prints afterwards still contains.
    steady: &'a str,
}

/// Apply the edit, save, and check the diagnostic; then the program prints lines with the
/// old results (`steady`), nothing was swapped, and the same process runs.
fn check_refusal(case: &Refusal<'_>) -> Fixture {
    check_refusal_in(Fixture::launch(case.fixture), case)
}

/// [`check_refusal`] in a fixture already launched (built another way, or swapped before:
/// the refused save adds no swap to those already made).
fn check_refusal_in(f: Fixture, case: &Refusal<'_>) -> Fixture {
    check_refusal_as(f, case, false)
}

/// [`check_refusal`] of a save whose text the editor's buffer had and the session compiled,
/// linked and checked ahead (`[compile] ahead`): the save takes that patch and must be
/// refused all the same.
fn check_refusal_typed(case: &Refusal<'_>) -> Fixture {
    check_refusal_as(Fixture::launch(case.fixture), case, true)
}

fn check_refusal_as(mut f: Fixture, case: &Refusal<'_>, typed: bool) -> Fixture {
    f.wait_output(case.steady);
    f.drain();
    let swaps = f
        .log
        .iter()
        .filter(|e| matches!(e, SessionEvent::Swap(_)))
        .count();
    for file in case.first {
        save_unchanged(&mut f, file);
    }
    f.edit(case.file, case.from, case.to);
    let line = f.line_of(case.file, case.at);
    if typed {
        f.compile_ahead(case.file);
    }
    f.save(case.saved.unwrap_or(case.file));
    let diagnostics = f.wait_diagnostics(case.file);
    let found = diagnostics
        .iter()
        .find(|d| d.code == case.code)
        .unwrap_or_else(|| panic!("no {} diagnostic: {diagnostics:#?}", case.code));
    assert_eq!(
        (found.line, found.severity),
        (line, Severity::Error),
        "{found:#?}"
    );
    for needle in case.says {
        assert!(
            found.message.contains(needle),
            "{needle:?} not in {:?}",
            found.message
        );
    }
    for needle in case.not {
        assert!(
            !found.message.contains(needle),
            "{needle:?} in {:?}",
            found.message
        );
    }
    f.assert_unchanged(swaps, case.steady, 3);
    f
}

/// Save `file` as it is and wait for the save to find nothing changed (its baseline is
/// compiled by then).
fn save_unchanged(f: &mut Fixture, file: &str) {
    f.save(file);
    f.wait(&format!("the unchanged save of {file}"), |e| {
        matches!(e, SessionEvent::Unchanged { .. }).then_some(())
    });
}

const STEADY: &str = "area=12 scaled=20 cell=3 helper=2 described=1 tripled=3 mode=old";

/// Every refusal of the ABI checks: a row each.
const REFUSALS: &[Refusal<'static>] = &[
    // geom.c's struct shape: main.c holds a heap object through `box` and takes it in
    // `describe`, neither recompiled by a save of geom.c.
    Refusal {
        fixture: "abi",
        file: "geom.c",
        from: "struct shape { int w; int h; };",
        to: "struct shape { int w; int depth; int h; };",
        code: "layout-changed",
        at: "struct shape { int w; int depth; int h; };",
        says: &[
            "`struct shape`",
            "8 bytes → 12 bytes",
            "`h` moved from offset 4 to 8",
            "`depth` added",
            "`describe` (main.c)",
            "the variable `box` (main.c)",
        ],
        not: &[],
        saved: None,
        first: &[],
        steady: STEADY,
    },
    // main.c declares `long scaled(int)` itself and calls it from run_round.
    Refusal {
        fixture: "abi",
        file: "geom.c",
        from: "long scaled(int v) {",
        to: "long scaled(long v) {",
        code: "signature-changed",
        at: "long scaled(long v) {",
        says: &[
            "`scaled`",
            "from `long int (int)` to `long int (long int)`",
            "`run_round` (main.c)",
        ],
        not: &[],
        saved: None,
        first: &[],
        steady: STEADY,
    },
    // main.c calls helper; the diagnostic sits where the definition was.
    Refusal {
        fixture: "abi",
        file: "geom.c",
        from: "int helper(int v) {\n    return bump(v);\n}\n",
        to: "/* helper is gone */\n",
        code: "undefined-symbol",
        at: "/* helper is gone */",
        says: &[
            "`helper` was removed from geom.c",
            "still called from `run_round` (main.c)",
        ],
        not: &[],
        saved: None,
        first: &[],
        steady: STEADY,
    },
    // tripled is only in main.c's table of function pointers.
    Refusal {
        fixture: "abi",
        file: "geom.c",
        from: "int tripled(int v) {\n    return v * 3;\n}\n",
        to: "/* tripled is gone */\n",
        code: "undefined-symbol",
        at: "/* tripled is gone */",
        says: &[
            "`tripled` was removed from geom.c",
            "the data `table` (main.c)",
        ],
        not: &[],
        saved: None,
        first: &[],
        steady: STEADY,
    },
    // C++: geo::Shape is known to main.cpp by name only; main holds one through `box`.
    Refusal {
        fixture: "cxxabi",
        file: "geo.cpp",
        from: "    int w;\n    int h;\n};",
        to: "    int w;\n    long depth;\n    int h;\n};",
        code: "layout-changed",
        at: "struct Shape {",
        says: &[
            "`geo::Shape`",
            "8 bytes → 24 bytes",
            "`depth` added",
            "the variable `box` (main.cpp)",
        ],
        not: &[],
        saved: None,
        first: &[],
        steady: "area=12 scale=20",
    },
    // C++: a new parameter type is a new function (another mangled name); the old one, which
    // main calls, is gone.
    Refusal {
        fixture: "cxxabi",
        file: "geo.cpp",
        from: "int scale(int v) {",
        to: "int scale(long v) {",
        code: "undefined-symbol",
        at: "int scale(long v) {",
        says: &[
            "`geo::scale(int)` was removed from geo.cpp",
            "still called from `main` (main.cpp)",
        ],
        not: &[],
        saved: None,
        first: &[],
        steady: "area=12 scale=20",
    },
    // A member added at the end: geom.c's `area` compiles to the same code and stays, and
    // is no user "this swap does not recompile"; main.c's are.
    Refusal {
        fixture: "abi",
        file: "geom.c",
        from: "struct shape { int w; int h; };",
        to: "struct shape { int w; int h; int depth; };",
        code: "layout-changed",
        at: "struct shape { int w; int h; int depth; };",
        says: &[
            "`struct shape`",
            "8 bytes → 12 bytes",
            "`depth` added",
            "`describe` (main.c)",
            "the variable `box` (main.c)",
        ],
        not: &["(geom.c)", "`area`"],
        saved: None,
        first: &[],
        steady: STEADY,
    },
    // point.h saved: point.c and main.c are both recompiled, so no function is named (main.c's
    // `show` and point.c's `point_known` keep their code); main.c's `origin` exists.
    Refusal {
        fixture: "layout",
        file: "point.h",
        from: POINT.0,
        to: POINT.1,
        code: "layout-changed",
        at: POINT.1,
        says: &[
            "`struct point`",
            "8 bytes → 12 bytes",
            "`z` added",
            "every function that uses it was recompiled",
            "the variable `origin` (main.c)",
        ],
        not: &["does not recompile", "`show`", "`point_known`", "(point.c)"],
        saved: None,
        first: &["main.c", "point.c"],
        steady: LAYOUT_STEADY,
    },
    // point.h edited, point.c saved: main.c's users are named, point.c's own are not.
    Refusal {
        fixture: "layout",
        file: "point.h",
        from: POINT.0,
        to: POINT.1,
        code: "layout-changed",
        at: POINT.1,
        says: &[
            "`struct point`",
            "code this swap does not recompile uses it: ",
            "`show` (main.c)",
            "the variable `origin` (main.c)",
        ],
        not: &["(point.c)", "`point_known`"],
        saved: Some("point.c"),
        first: &["main.c", "point.c"],
        steady: LAYOUT_STEADY,
    }, // Two bit fields of one byte swapped: the message names the bits they moved between
    // (their byte offsets are 0 before and after); geom.c's `flags` holds one.
    Refusal {
        fixture: "abi",
        file: "geom.c",
        from: "struct flags { unsigned a : 3, b : 5; };",
        to: "struct flags { unsigned b : 5, a : 3; };",
        code: "layout-changed",
        at: "struct flags { unsigned b : 5, a : 3; };",
        says: &[
            "`struct flags`",
            "still 4 bytes",
            "`b` moved from bit 3 to bit 0",
            "`a` moved from bit 0 to bit 5",
            "the variable `flags` (geom.c)",
        ],
        not: &["offset 0 to 0"],
        saved: None,
        first: &[],
        steady: STEADY,
    },
];

/// The frames fixture's objects in running frames: main, which never returns, holds a
/// `struct held` by value and a pointer to a `struct pointed`. Every function using them is
/// in main.c, the file saved, and no variable holds them: only main's frame shows that
/// objects of the old layout exist (the new held_sum would read main's `h` with the new one).
const FRAME_REFUSALS: &[Refusal<'static>] = &[
    Refusal {
        fixture: "frames",
        file: "main.c",
        from: "struct held { int a; int b; };",
        to: "struct held { int z; int a; int b; };",
        code: "layout-changed",
        at: "struct held { int z; int a; int b; };",
        says: &[
            "the layout of `struct held` changed (8 bytes → 12 bytes",
            "`z` added",
            "a call that is running holds an object of the old layout: `main` (main.c), \
             running on thread ",
            "holds its local `h` (`struct held`)",
            "nothing was swapped",
        ],
        not: &["`tick`", "`held_sum`", "does not recompile"],
        saved: None,
        first: &[],
        steady: FRAMES_STEADY,
    },
    Refusal {
        fixture: "frames",
        file: "main.c",
        from: "struct pointed { int a; int b; };",
        to: "struct pointed { int z; int a; int b; };",
        code: "layout-changed",
        at: "struct pointed { int z; int a; int b; };",
        says: &[
            "the layout of `struct pointed` changed",
            "`main` (main.c), running on thread ",
            "holds its local `p` (`struct pointed *`)",
        ],
        not: &["`tick`", "`pointed_sum`"],
        saved: None,
        first: &[],
        steady: FRAMES_STEADY,
    },
];

const FRAMES_STEADY: &str = "held=3 pointed=7 passing=5";

#[test]
fn layout_change_of_a_struct_a_running_frame_holds_by_value_is_refused() {
    check_refusal(&FRAME_REFUSALS[0]);
}

#[test]
fn layout_change_of_a_struct_a_running_frame_points_to_is_refused() {
    check_refusal(&FRAME_REFUSALS[1]);
}

/// The patch linked ahead carries the frame guards its checks made: the swap still looks
/// at main's frame.
#[test]
fn layout_change_compiled_ahead_of_a_struct_a_running_frame_holds_is_refused() {
    check_refusal_typed(&FRAME_REFUSALS[0]);
}

/// The frames fixture's struct passing with a member `c` added, which passing_sum adds
/// (and 100) to its result.
fn add_member_to_passing(f: &Fixture) {
    f.edit(
        "main.c",
        "struct passing { int a; int b; };",
        "struct passing { int a; int b; int c; };",
    );
    f.edit(
        "main.c",
        "return p->a + p->b;\n}\n\nstatic int rounds;",
        "return p->a + p->b + p->c + 100;\n}\n\nstatic int rounds;",
    );
}

/// struct passing lives only in tick's frame (and is passed to passing_sum), and tick has
/// returned whenever the program sleeps: no frame holds an old one, so the change swaps and
/// the new code reads the new member.
#[test]
fn layout_change_of_a_struct_only_frames_not_running_hold_swaps() {
    let mut f = Fixture::launch("frames");
    f.wait_output(FRAMES_STEADY);
    add_member_to_passing(&f);
    f.save("main.c");
    let swap = f.wait_swap();
    for function in ["passing_sum", "tick"] {
        assert!(swap.swapped.contains(&function.to_string()), "{swap:?}");
    }
    f.wait_output("held=3 pointed=7 passing=105");
    f.assert_same_process();
}

/// The frameclones fixture (gcc -O2): each struct is held by a function gcc cloned or
/// split, whose DWARF entry is named after its origin (`run_const`), not as the symbol the
/// thread runs (`run_const.constprop.0`), and one of them (`run_cold`) runs in its `.cold`
/// part: the guard takes each holder's code from its own DWARF ranges. clang -O2 builds the
/// same program without clones: the same refusals.
const CLONE_REFUSALS: &[(&str, &str)] = &[
    ("c_held", "run_const"),
    ("p_held", "run_part"),
    ("k_held", "run_cold"),
    ("i_held", "run_isra"),
];

const CLONES_STEADY: &str = "const=12 part=34 cold=56 isra=78";

/// Each row of [`CLONE_REFUSALS`] in the frameclones fixture built by `compiler` (`cc` or
/// `clang`) at -O2: a member added in front of the struct is refused, naming the holder.
fn check_clone_refusals(compiler: &str) {
    for &(name, holder) in CLONE_REFUSALS {
        let mut f = Fixture::copy("frameclones");
        f.write(
            "hot-lsp.toml",
            &format!(
                "[program]\npath = \"app\"\nbuild = \"{compiler} -O2 -g -o app main.c -pthread\"\n\n\
                 [compile]\ncommand = \"{compiler} -O2 -g -c {{file}} -o {{output}}\"\n"
            ),
        );
        f.start();
        f.wait_launched();
        f.wait_output("tick=");
        let from = format!("struct {name} {{ int a; int b; }};");
        let to = format!("struct {name} {{ int z; int a; int b; }};");
        let changed = format!("the layout of `struct {name}` changed");
        let running = format!("`{holder}` (main.c), running on thread ");
        let case = Refusal {
            fixture: "frameclones",
            file: "main.c",
            from: &from,
            to: &to,
            code: "layout-changed",
            at: &to,
            says: &[&changed, &running, "nothing was swapped"],
            not: &["`main`", "could not be located"],
            saved: None,
            first: &[],
            steady: CLONES_STEADY,
        };
        check_refusal_in(f, &case);
    }
}

#[test]
fn layout_change_held_by_gcc_o2_clones_and_split_parts_is_refused() {
    check_clone_refusals("cc");
}

#[test]
fn layout_change_held_by_clang_o2_functions_is_refused() {
    check_clone_refusals("clang");
}

/// Save the frameclones fixture's c_sum calling a new function `park`, which never returns
/// and holds a `struct a_held` (a type no code used at launch); wait for it to run.
fn add_park(f: &mut Fixture) {
    f.wait_output(CLONES_STEADY);
    f.edit(
        "main.c",
        "__attribute__((noinline)) int c_sum(const struct c_held *h) { return h->a * 10 + h->b; }",
        "__attribute__((noinline)) static void park(void) {\n\
         \x20   struct a_held q = { 9, 1 };\n\
         \x20   for (;;) {\n\
         \x20       c_out = q.a * 10 + q.b;\n\
         \x20       usleep(20000);\n\
         \x20   }\n\
         }\n\
         __attribute__((noinline)) int c_sum(const struct c_held *h) { park(); return h->a; }",
    );
    f.save("main.c");
    let swap = f.wait_swap();
    assert!(swap.added.contains(&"park".to_string()), "{swap:?}");
    f.wait_output("const=91 part=34");
}

/// A function an earlier save added (`park`, not in the executable) runs on a thread and
/// holds a `struct a_held`: a layout change of it is refused, naming it, as for a function
/// of the executable.
#[test]
fn layout_change_held_by_a_function_an_earlier_save_added_is_refused() {
    let mut f = Fixture::launch("frameclones");
    add_park(&mut f);
    let case = Refusal {
        fixture: "frameclones",
        file: "main.c",
        from: "struct a_held { int a; int b; };",
        to: "struct a_held { int z; int a; int b; };",
        code: "layout-changed",
        at: "struct a_held { int z; int a; int b; };",
        says: &[
            "the layout of `struct a_held` changed",
            "`park` (main.c), running on thread ",
            "holds its local `q` (`struct a_held`)",
            "nothing was swapped",
        ],
        not: &["`main`", "could not be located"],
        saved: None,
        first: &[],
        steady: "const=91 part=34",
    };
    check_refusal_in(f, &case);
}

/// The `still-running` note of main.c's next list, which must sit on `line`.
fn still_running_note(f: &mut Fixture, line: u32) -> hot_session::Diagnostic {
    let diagnostics = f.wait_diagnostics("main.c");
    let note = diagnostics
        .iter()
        .find(|d| d.code == "still-running")
        .unwrap_or_else(|| panic!("no still-running note: {diagnostics:#?}"));
    assert_eq!(
        (note.line, note.severity),
        (line, Severity::Information),
        "{note:#?}"
    );
    note.clone()
}

/// A function an earlier save added is watched like a swapped one: edited while a thread
/// runs it, it swaps with a `still-running` note (its running call stays in the body the
/// first save placed).
#[test]
fn a_function_an_earlier_save_added_running_on_a_thread_swaps_with_a_note() {
    let mut f = Fixture::launch("frameclones");
    add_park(&mut f);
    f.edit(
        "main.c",
        "c_out = q.a * 10 + q.b;",
        "c_out = q.a * 10 + q.b + 1;",
    );
    let line = f.line_of("main.c", "static void park(void)");
    f.save("main.c");
    let swap = f.wait_swap();
    assert!(swap.swapped.contains(&"park".to_string()), "{swap:?}");
    let note = still_running_note(&mut f, line);
    assert!(note.message.contains("`park` was running"), "{note:#?}");
    f.fresh_output.clear();
    for l in f.next_lines(3) {
        assert!(
            l.contains("const=91 part=34"),
            "the running call left its body: {l}"
        );
    }
    f.assert_same_process();
}

/// Undo of a layout change while the swap's new code holds an object of the new layout:
/// the save changes struct passing and makes tick loop inside itself, so once the swap is
/// in, main's thread stays in the new tick holding a new-layout `q`. Undo would send it back
/// to code that reads `q` with the old layout: refused, naming tick and the thread; nothing
/// is written (the new code keeps running, and the swap stays undoable later).
#[test]
fn undo_of_a_layout_change_while_the_new_code_holds_a_new_object_is_refused() {
    let mut f = Fixture::launch("frames");
    f.wait_output(FRAMES_STEADY);
    add_member_to_passing(&f);
    f.edit(
        "main.c",
        "    struct passing q = { rounds, 5 };\n    rounds++;",
        "    struct passing q = { rounds, 5, 0 };\n    for (;;) {\n    q.a = rounds;\n    rounds++;",
    );
    f.edit(
        "main.c",
        "           passing_sum(&q) - rounds + 1);\n    fflush(stdout);\n",
        "           passing_sum(&q) - rounds + 1);\n    fflush(stdout);\n    usleep(50000);\n    }\n",
    );
    f.save("main.c");
    let swap = f.wait_swap();
    assert!(swap.swapped.contains(&"tick".to_string()), "{swap:?}");
    f.wait_output("held=3 pointed=7 passing=105");
    f.send(hot_session::Command::Undo);
    let text = f.wait("the undo's refusal", |e| match e {
        SessionEvent::Message {
            severity: Severity::Error,
            text,
        } => Some(text.clone()),
        SessionEvent::Message {
            severity: Severity::Information,
            text,
        } if text.contains("reverted") => panic!("the undo was made: {text}"),
        _ => None,
    });
    for needle in [
        "undo refused",
        "the layout of `struct passing` (8 bytes → 12 bytes",
        "`tick` (main.c), running on thread ",
        "holds its local `q` (`struct passing`)",
        "nothing was written",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }
    f.fresh_output.clear();
    for l in f.next_lines(3) {
        assert!(
            l.contains("held=3 pointed=7 passing=105"),
            "the undo wrote: {l}"
        );
    }
    f.assert_same_process();
}

/// The ABI checks failing inside (a panic, injected by `hot_session::fault` into this
/// test's workspace only) refuse the save on its file, never swap it with no frame guards:
/// struct passing's change swaps without the fault
/// (`layout_change_of_a_struct_only_frames_not_running_hold_swaps`).
#[test]
fn a_save_whose_abi_checks_fail_internally_is_refused() {
    let f = Fixture::launch("frames");
    hot_session::fault::panic_abi_checks_under(f.dir.path(), true);
    let case = Refusal {
        fixture: "frames",
        file: "main.c",
        from: "struct passing { int a; int b; };",
        to: "struct passing { int a; int b; int c; };",
        code: "layout-changed",
        // No source line: the file's first.
        at: "/* The frames fixture",
        says: &[
            "the ABI checks of this swap of ",
            "failed with an internal error: injected panic in the ABI checks",
            "nothing was swapped",
        ],
        not: &[],
        saved: None,
        first: &[],
        steady: FRAMES_STEADY,
    };
    let f = check_refusal_in(f, &case);
    hot_session::fault::panic_abi_checks_under(f.dir.path(), false);
}

/// point.h's struct point with a member added in front (every member moves).
const POINT: (&str, &str) = (
    "struct point { int x; int y; };",
    "struct point { int z; int x; int y; };",
);

const LAYOUT_STEADY: &str = "sum=3 first=1 known=1 pair=2 pair_first=0";

#[test]
fn layout_change_used_by_other_files_is_refused() {
    check_refusal(&REFUSALS[0]);
}

#[test]
fn signature_change_with_callers_in_other_files_is_refused() {
    check_refusal(&REFUSALS[1]);
}

#[test]
fn removed_function_still_called_is_refused() {
    check_refusal(&REFUSALS[2]);
}

#[test]
fn removed_function_held_in_a_table_of_another_file_is_refused() {
    check_refusal(&REFUSALS[3]);
}

#[test]
fn cxx_class_layout_change_used_by_other_files_is_refused() {
    check_refusal(&REFUSALS[4]);
}

#[test]
fn cxx_overload_replacing_a_called_function_is_refused_with_demangled_names() {
    check_refusal(&REFUSALS[5]);
}

#[test]
fn layout_change_names_no_function_of_the_saved_file() {
    check_refusal(&REFUSALS[6]);
}

#[test]
fn layout_change_of_a_saved_header_names_only_the_variable() {
    check_refusal(&REFUSALS[7]);
}

#[test]
fn layout_change_of_a_header_saved_through_one_includer_names_the_other() {
    check_refusal(&REFUSALS[8]);
}

#[test]
fn bit_fields_moved_within_a_byte_are_refused_naming_their_bits() {
    check_refusal(&REFUSALS[9]);
}

/// point.h's struct pair grows while only functions of point.c and main.c use it: a save of
/// the header recompiles them all (some keep their code: `pair_first`, `show_pair`), so it
/// swaps.
#[test]
fn layout_change_of_a_saved_header_used_only_by_its_includers_swaps() {
    let mut f = Fixture::launch("layout");
    f.wait_output(LAYOUT_STEADY);
    for file in ["main.c", "point.c"] {
        save_unchanged(&mut f, file);
    }
    f.edit(
        "point.h",
        "struct pair { int a; int b; };",
        "struct pair { int a; int b; int c; };",
    );
    f.edit("point.h", "#define BONUS 0", "#define BONUS 100");
    f.save("point.h");
    let swap = f.wait_swap();
    for function in ["pair_sum", "point_sum", "run_round"] {
        assert!(swap.swapped.contains(&function.to_string()), "{swap:?}");
    }
    f.wait_output("sum=103 first=1 known=1 pair=102 pair_first=0");
    f.assert_same_process();
}

/// A struct only one function uses, with no variable of it anywhere: its layout changes
/// with that function, which swaps.
#[test]
fn layout_change_used_only_by_swapped_functions_swaps() {
    let mut f = Fixture::launch("abi");
    f.wait_output("cell=3");
    f.edit(
        "geom.c",
        "struct cell { int a; int b; };",
        "struct cell { int a; long pad; int b; };",
    );
    f.edit(
        "geom.c",
        "struct cell c = { x, 2 };",
        "struct cell c = { x, 0, 2 };",
    );
    f.edit("geom.c", "return c.a + c.b;", "return c.a + c.b + 40;");
    f.save("geom.c");
    let swap = f.wait_swap();
    assert_eq!(swap.swapped, vec!["cell_sum".to_string()], "{swap:?}");
    f.wait_output("cell=43");
    f.assert_same_process();
}

/// The signature of a static function called from its own file only: its callers are
/// recompiled with it, so it swaps.
#[test]
fn signature_change_with_callers_in_the_same_file_swaps() {
    let mut f = Fixture::launch("abi");
    f.wait_output("helper=2");
    f.edit(
        "geom.c",
        "static int bump(int v) {\n    return v + 1;",
        "static long bump(long v) {\n    return v + 5;",
    );
    f.save("geom.c");
    let swap = f.wait_swap();
    assert!(swap.swapped.contains(&"bump".to_string()), "{swap:?}");
    f.wait_output("helper=6");
    f.assert_same_process();
}

/// A function nothing calls can go: nothing to swap, no diagnostic, and the next edit
/// swaps as usual.
#[test]
fn removing_an_unreferenced_function_is_fine() {
    let mut f = Fixture::launch("abi");
    f.wait_output("helper=2");
    f.edit("geom.c", "int spare(int v) {\n    return v - 1;\n}\n", "");
    f.save("geom.c");
    let path = f.path("geom.c");
    let diagnostics = f.wait("geom.c's diagnostics", |e| match e {
        SessionEvent::Diagnostics { file, diagnostics } if *file == path => {
            Some(diagnostics.clone())
        }
        _ => None,
    });
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    f.wait("the unchanged save", |e| {
        matches!(e, SessionEvent::Unchanged { .. }).then_some(())
    });
    f.edit("geom.c", "return v + 1;", "return v + 2;");
    f.save("geom.c");
    let swap = f.wait_swap();
    assert_eq!(swap.swapped, vec!["bump".to_string()], "{swap:?}");
    f.wait_output("helper=3");
    f.assert_same_process();
}

/// run_round spends its time asleep inside itself on the main thread: it swaps with an
/// information diagnostic on its line, and its next call prints the new text.
#[test]
fn a_function_running_on_a_stack_swaps_with_a_note_and_changes_on_its_next_call() {
    let mut f = Fixture::launch("abi");
    f.wait_output("mode=old");
    f.edit("main.c", "mode=old", "mode=new");
    let line = f.line_of("main.c", "void run_round(void)");
    f.save("main.c");
    let swap = f.wait_swap();
    assert_eq!(swap.swapped, vec!["run_round".to_string()], "{swap:?}");
    let note = still_running_note(&mut f, line);
    for needle in ["`run_round` was running", "old body", "next call"] {
        assert!(
            note.message.contains(needle),
            "{needle:?} not in {:?}",
            note.message
        );
    }
    let before: u64 = common::field(&f.wait_output("mode=new"), "tick")
        .parse()
        .expect("tick");
    // Its state survived, and every later round is new.
    assert!(before > 1, "the program restarted");
    for l in f.next_lines(3) {
        assert!(l.contains("mode=new"), "{l}");
    }
    f.assert_same_process();
}

/// point.h changed after the program was built (edited before the session started, the
/// program not rebuilt: a Makefile without header dependencies, a `git checkout`): its
/// includers have no baseline, so the save is compared with the running program — and so
/// is the layout, from the executable's DWARF. main.c's `origin` holds an old `struct
/// point`: refused, as with a baseline. (Without the comparison the swap went through and
/// the new code read old objects with the new layout: brotli's decoder state, found by a
/// tester, crashed.)
#[test]
fn layout_change_of_a_header_changed_after_the_build_is_refused() {
    let mut f = Fixture::copy("layout");
    // Launched as built: the session builds nothing.
    f.build_by_the_test("cc -O0 -g -o app main.c point.c");
    f.edit("point.h", POINT.0, POINT.1);
    f.start();
    f.wait_launched();
    let case = Refusal {
        fixture: "layout",
        file: "point.h",
        // Edited already, before the launch.
        from: POINT.1,
        to: POINT.1,
        code: "layout-changed",
        at: POINT.1,
        says: &[
            "`struct point`",
            "8 bytes → 12 bytes",
            "`z` added",
            "the variable `origin` (main.c)",
        ],
        not: &["does not recompile", "`show`", "`point_known`"],
        saved: None,
        first: &[],
        steady: LAYOUT_STEADY,
    };
    check_refusal_in(f, &case);
}
