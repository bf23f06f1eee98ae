//! C++ beyond plain functions, really swapped (tests/fixtures/cxxmore, built with `c++` and
//! with `clang++`): a lambda, virtual functions reached through an object made before the
//! swap, static locals with guard variables, a template instantiated for the first time by
//! new code, static data members, libstdc++ functions the program never called; and vtable
//! layout changes, refused with `layout-changed` naming the class. Each case is a row.

mod common;

use common::{field, Fixture};
use hot_session::{SessionEvent, Severity};

/// A way to build the fixture: the compiler and extra flags.
type Build = (&'static str, &'static str);

/// Both C++ compilers the fixtures are built with: their mangling of lambdas, their COMDAT
/// and unique-symbol choices differ.
const COMPILERS: [Build; 2] = [("c++", ""), ("clang++", "")];

/// Without PIE: the vtable and typeinfo words are absolute addresses in the file, the
/// typeinfo's own vtable pointer points into a copy (`R_X86_64_COPY`) of libstdc++'s.
const NO_PIE: [Build; 1] = [("c++", "-no-pie -fno-pie")];

/// The `cxxmore` fixture built as `build` says, launched and printing.
fn cxxmore((compiler, extra): Build) -> Fixture {
    let mut f = Fixture::copy("cxxmore");
    let flags = format!("-std=c++17 -O0 -g {extra}");
    f.write(
        "hot-lsp.toml",
        &format!(
            "[program]\npath = \"app\"\nbuild = \"{compiler} {flags} -o app main.cpp\"\n\n\
             [compile]\ncommand = \"{compiler} {flags} -c {{file}} -o {{output}}\"\n"
        ),
    );
    f.start();
    f.wait_launched();
    f.wait_output("tick=");
    f
}

/// The integer `key=` of an output line.
fn number(line: &str, key: &str) -> i64 {
    field(line, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in {line:?}"))
}

/// What must hold between a line printed before the swap and one printed after it.
type Kept = fn(before: &str, after: &str) -> Result<(), String>;

/// One edit of main.cpp that must swap.
struct Edit<'a> {
    /// What the row shows.
    what: &'a str,
    /// Replacements in main.cpp, in order.
    edits: &'a [(&'a str, &'a str)],
    /// The swapped functions, as pieces of their demangled names (a lambda's name differs
    /// between compilers), in any order.
    swapped: &'a [&'a str],
    /// Functions that may be swapped too: a caller whose exception table the compiler
    /// recomputed because a callee in the file now can (or cannot) throw.
    may_also: &'a [&'a str],
    /// Pieces of demangled names that must be among the added symbols.
    added: &'a [&'a str],
    /// A piece of every line the new code prints.
    after: &'a str,
    /// State the program had before the swap that it must keep.
    kept: Kept,
}

fn nothing(_: &str, _: &str) -> Result<(), String> {
    Ok(())
}

/// Launch cxxmore with each compiler, apply `row`'s edits, save: exactly `row.swapped` must
/// swap, `row.added` be added, the program print `row.after`, keep `row.kept`, and be the
/// process launched at first.
fn check_cxx_edit(row: &Edit<'_>) {
    check_cxx_edit_in(&COMPILERS, row);
}

/// [`check_cxx_edit`] with the fixture built each way of `builds`.
fn check_cxx_edit_in(builds: &[Build], row: &Edit<'_>) {
    for &build in builds {
        let compiler = format!("{} {}", build.0, build.1);
        let mut f = cxxmore(build);
        let before = f.wait_output("tick=");
        for (from, to) in row.edits {
            f.edit("main.cpp", from, to);
        }
        f.save("main.cpp");
        let swap = f.wait_swap();
        let shown = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .map(|n| hot_session::display_name(n).into_owned())
                .collect()
        };
        let (swapped, added) = (shown(&swap.swapped), shown(&swap.added));
        let context = format!(
            "{compiler}, {}: swapped {swapped:?}, added {added:?}",
            row.what
        );
        for name in &swapped {
            assert!(
                row.swapped
                    .iter()
                    .chain(row.may_also)
                    .any(|want| name.contains(want)),
                "{name:?} swapped: {context}"
            );
        }
        for want in row.swapped {
            assert!(
                swapped.iter().any(|s| s.contains(want)),
                "{want:?} not swapped: {context}"
            );
        }
        for want in row.added {
            assert!(
                added.iter().any(|s| s.contains(want)),
                "{want:?} not added: {context}"
            );
        }
        let after = f.wait_output(row.after);
        // The next lines too: the new code keeps running, and so does the program.
        f.fresh_output.clear();
        for line in f.next_lines(3) {
            assert!(line.contains(row.after), "{context}: {line}");
        }
        if let Err(e) = (row.kept)(&before, &after) {
            panic!("{context}: {e}\nbefore: {before}\nafter:  {after}");
        }
        f.assert_same_process();
    }
}

#[test]
fn lambdas_changed_inside_a_function_and_in_a_stored_std_function() {
    for row in [
        Edit {
            what: "a lambda's body",
            edits: &[("return x + 1 + tick * 0;", "return x + 100 + tick * 0;")],
            swapped: &["lambda_value(int)::"],
            may_also: &[],
            added: &[],
            after: " lambda=100 ",
            kept: nothing,
        },
        // The std::function was made before the swap: its invoker reaches the lambda's
        // entry, redirected to the new body (gcc names it `stored::{lambda(int)#1}`, clang
        // `$_1`).
        Edit {
            what: "a lambda held by a std::function made at startup",
            edits: &[("return x * 2;", "return x * 3;")],
            swapped: &["::operator()(int) const"],
            may_also: &[],
            added: &[],
            after: " stored=15 ",
            kept: nothing,
        },
    ] {
        check_cxx_edit(&row);
    }
}

/// An override added to `Rect`: its vtable keeps its layout and is updated in place, so the
/// object made before the swap calls the new function.
const OVERRIDE_ADDED: Edit<'static> = Edit {
    what: "an override added (the vtable keeps its layout and is updated in place)",
    edits: &[(
        "    int sides() const override {",
        "    int depth() const override {\n        return 7;\n    }\n    \
         int sides() const override {",
    )],
    swapped: &[],
    may_also: &[],
    added: &["Rect::depth() const"],
    after: " depth=7 ",
    kept: nothing,
};

/// The object was made before the swap: its vtable pointer is the old one, so the new
/// bodies are reached through the running program's vtable.
#[test]
fn virtual_functions_swapped_and_called_through_an_existing_object() {
    for row in [
        Edit {
            what: "an out-of-line virtual function (the key function)",
            edits: &[("return w * h;", "return w * h * 10;")],
            swapped: &["Rect::area() const"],
            may_also: &[],
            added: &[],
            after: " area=120 ",
            kept: nothing,
        },
        Edit {
            what: "an inline virtual function (a COMDAT copy)",
            edits: &[("return 4;", "return 40;")],
            swapped: &["Rect::sides() const"],
            may_also: &[],
            added: &[],
            after: " sides=40 ",
            kept: nothing,
        },
        OVERRIDE_ADDED,
    ] {
        check_cxx_edit(&row);
    }
}

/// `counter` and `inline_counter` count on from where they were (the edited one now
/// printed negated), and their initializer (which counts its calls in `init`) is not run
/// again.
fn counters_kept(before: &str, after: &str) -> Result<(), String> {
    for key in ["counter", "inline"] {
        if number(after, key).abs() <= number(before, key) {
            return Err(format!("{key} was re-initialised or lost its value"));
        }
    }
    if number(after, "init") != number(before, "init") {
        return Err("an initializer ran again".into());
    }
    Ok(())
}

#[test]
fn static_locals_with_guards_keep_their_values() {
    for row in [
        Edit {
            what: "a function with a static local",
            edits: &[("return n++;", "return -(n++);")],
            swapped: &["counter()"],
            may_also: &[],
            added: &[],
            after: " counter=-",
            kept: counters_kept,
        },
        Edit {
            what: "an inline function with a static local (a unique object)",
            edits: &[("return m++;", "return -(m++);")],
            swapped: &["inline_counter()"],
            may_also: &[],
            added: &[],
            after: " inline=-",
            kept: counters_kept,
        },
    ] {
        check_cxx_edit(&row);
    }
}

#[test]
fn a_template_instantiated_for_the_first_time_by_new_code() {
    check_cxx_edit(&Edit {
        what: "twice<long> and twice<double>",
        edits: &[(
            "return twice(21);",
            "return (int)twice(21L) + (int)twice(0.5) + 100;",
        )],
        swapped: &["tmpl_value()"],
        may_also: &[],
        added: &["long twice<long>(long)", "double twice<double>(double)"],
        after: " tmpl=143 ",
        kept: nothing,
    });
}

/// `hits` counts on in the storage main reads, and the new code's writes to `misses` land
/// there too.
fn members_kept(before: &str, after: &str) -> Result<(), String> {
    if number(after, "hits") <= number(before, "hits") {
        return Err("hits did not keep counting in the same storage".into());
    }
    if number(after, "misses") < number(before, "misses") + 1000 {
        return Err("the new code's writes to misses did not reach main's".into());
    }
    Ok(())
}

#[test]
fn static_data_members_are_the_same_storage() {
    check_cxx_edit(&Edit {
        what: "Stats::hits and the inline Stats::misses",
        edits: &[(
            "return Stats::hits;",
            "Stats::misses += 1000;\n    return -Stats::hits;",
        )],
        swapped: &["record()"],
        may_also: &[],
        added: &[],
        after: " rec=-",
        kept: members_kept,
    });
}

#[test]
fn new_code_calls_libstdcxx_functions_the_program_never_called() {
    for (what, includes, body, after) in [
        (
            "std::to_string",
            "",
            "return std::to_string(40 + 2);",
            " lib=42",
        ),
        (
            "std::sort on a std::vector",
            "#include <algorithm>\n#include <vector>\n",
            "std::vector<int> v{3, 1, 2};\n    std::sort(v.begin(), v.end());\n    \
             return std::to_string(v[0] * 100 + v[1] * 10 + v[2]);",
            " lib=123",
        ),
        (
            "std::ostringstream",
            "#include <sstream>\n",
            "std::ostringstream os;\n    os << \"os\" << 7;\n    return os.str();",
            " lib=os7",
        ),
        (
            "std::hash of a std::string (std::_Hash_bytes)",
            "#include <functional>\n",
            "return std::hash<std::string>{}(std::string(\"abc\")) != 0 ? \"hashed\" : \"zero\";",
            " lib=hashed",
        ),
        (
            "std::chrono::steady_clock::now",
            "#include <chrono>\n",
            "return std::chrono::steady_clock::now().time_since_epoch().count() > 0 ? \
             \"clock\" : \"none\";",
            " lib=clock",
        ),
    ] {
        let (include, call) = (
            format!("#include <string>\n{includes}"),
            format!("(void)tick;\n    {body}"),
        );
        check_cxx_edit(&Edit {
            what,
            edits: &[
                ("#include <string>\n", &include),
                ("return std::string(tick > 0 ? \"none\" : \"\");", &call),
            ],
            swapped: &["lib_value[abi:cxx11](int)"],
            // gcc finds that the new body cannot throw: main's table drops the call.
            may_also: &["main"],
            added: &[],
            after,
            kept: nothing,
        });
    }
}

/// One edit of a class that changes its vtable's layout.
struct LayoutChange {
    what: &'static str,
    edits: &'static [(&'static str, &'static str)],
    /// The class the refusal must name.
    class: &'static str,
}

/// Launch cxxmore with each compiler, apply `row`'s edits and save: the save must be refused
/// with `layout-changed` naming `row.class`, nothing swapped, the program printing what it
/// printed before.
fn check_layout_refused(row: &LayoutChange) {
    check_layout_refused_in(&COMPILERS, row);
}

/// [`check_layout_refused`] with the fixture built each way of `builds`.
fn check_layout_refused_in(builds: &[Build], row: &LayoutChange) {
    for &build in builds {
        let compiler = format!("{} {}", build.0, build.1);
        let mut f = cxxmore(build);
        f.wait_output("area=12 sides=4 depth=0 ");
        for (from, to) in row.edits {
            f.edit("main.cpp", from, to);
        }
        f.save("main.cpp");
        let diagnostics = f.wait_diagnostics("main.cpp");
        let context = format!("{compiler}, {}: {diagnostics:#?}", row.what);
        let named = format!("`{}`", row.class);
        let found = diagnostics
            .iter()
            .find(|d| d.code == "layout-changed" && d.message.contains(&named))
            .unwrap_or_else(|| panic!("no layout-changed diagnostic naming {named}: {context}"));
        assert_eq!(found.severity, Severity::Error, "{context}");
        assert!(!found.message.contains("_Z"), "a mangled name: {context}");
        assert!(
            found.message.contains("restart"),
            "no way out given: {context}"
        );
        // It sits on the class's head (its DWARF declaration), not on a line inside one of
        // its functions (which can be another class's inlined code).
        let head = f.line_of("main.cpp", &format!("struct {} ", row.class));
        assert_eq!(
            found.line, head,
            "not on the head of {} (line {head}): {context}",
            row.class
        );
        let text = std::fs::read_to_string(f.path("main.cpp")).expect("read main.cpp");
        let end = text
            .lines()
            .enumerate()
            .skip(head as usize)
            .find(|(_, l)| *l == "};")
            .map_or(0, |(i, _)| i as u32 + 1);
        assert!(
            (head..=end).contains(&found.line),
            "line {} is not in {} (lines {head}-{end}): {context}",
            found.line,
            row.class
        );
        f.assert_unchanged(0, "area=12 sides=4 depth=0 lambda=1 stored=10 ", 3);
        assert!(
            !f.log.iter().any(|e| matches!(e, SessionEvent::Swap(_))),
            "{context}"
        );
    }
}

const SECOND_BASE: LayoutChange = LayoutChange {
    what: "a second base class",
    edits: &[(
        "struct Rect : Shape {",
        "struct Named {\n    virtual const char *name() const {\n        return \"n\";\n    }\n};\n\nstruct Rect : Named, Shape {",
    )],
    class: "Rect",
};

const EMPTY_BASE: LayoutChange = LayoutChange {
    what: "an empty base class added (the vtable is the same, the type information not)",
    edits: &[(
        "struct Rect : Shape {",
        "struct Tag {};\n\nstruct Rect : Shape, Tag {",
    )],
    class: "Rect",
};

#[test]
fn a_changed_vtable_layout_is_refused_naming_the_class() {
    for row in [
        LayoutChange {
            what: "a virtual function added to the base",
            edits: &[(
                "    virtual int sides() const {\n        return 0;\n    }\n",
                "    virtual int sides() const {\n        return 0;\n    }\n    \
                 virtual int corners() const {\n        return 0;\n    }\n",
            )],
            class: "Shape",
        },
        LayoutChange {
            what: "a virtual function removed from the base",
            edits: &[
                (
                    "    virtual int sides() const {\n        return 0;\n    }\n",
                    "",
                ),
                ("int sides() const override {", "int sides() const {"),
                ("shape->sides()", "static_cast<Rect *>(shape)->sides()"),
            ],
            class: "Shape",
        },
        LayoutChange {
            what: "two virtual functions of the base swapped (same vtable size)",
            edits: &[
                ("    virtual int area() const = 0;\n", ""),
                (
                    "        return 0;\n    }\n};",
                    "        return 0;\n    }\n    virtual int area() const = 0;\n};",
                ),
            ],
            class: "Shape",
        },
        SECOND_BASE,
        EMPTY_BASE,
    ] {
        check_layout_refused(&row);
    }
}

/// An override added to a class rewrites its vtable in place (same layout): undo puts the
/// running program's vtable back, and the object made before both calls the base's
/// function again.
#[test]
fn undo_restores_a_vtable_updated_in_place() {
    for build in COMPILERS {
        let compiler = build.0;
        let mut f = cxxmore(build);
        for (from, to) in OVERRIDE_ADDED.edits {
            f.edit("main.cpp", from, to);
        }
        f.save("main.cpp");
        let swap = f.wait_swap();
        assert!(swap.swapped.is_empty(), "{compiler}: {swap:?}");
        f.wait_output(" depth=7 ");
        f.send(hot_session::Command::Undo);
        f.wait("the undo", |e| match e {
            SessionEvent::Message { text, .. } if text.contains("reverted") => Some(()),
            _ => None,
        });
        f.fresh_output.clear();
        f.wait_output(" depth=0 ");
        for line in f.next_lines(3) {
            assert!(line.contains(" depth=0 "), "{compiler}: {line}");
        }
        f.assert_same_process();
    }
}

/// Without PIE the running program's vtable and typeinfo words are absolute addresses (the
/// typeinfo's own vtable pointer into a copy of libstdc++'s): an override still updates the
/// vtable in place, a base class added is still refused.
#[test]
fn without_pie_vtables_and_type_information_are_compared_too() {
    check_cxx_edit_in(&NO_PIE, &OVERRIDE_ADDED);
    for row in [SECOND_BASE, EMPTY_BASE] {
        check_layout_refused_in(&NO_PIE, &row);
    }
}

/// A lambda added after the existing ones keeps their numbers: swapped. One added before
/// them renumbers gcc's (`{lambda(int)#1}` is now the new one), and closures the program
/// holds would run another lambda's body: refused, naming the scope, the program unchanged.
/// clang numbers this one after the existing lambda (`$_1`, the running `$_0` keeps its
/// name): it swaps.
#[test]
fn a_lambda_added_after_others_swaps_one_added_before_them_is_refused() {
    for (build, refused) in [(COMPILERS[0], true), (COMPILERS[1], false)] {
        let mut f = cxxmore(build);
        let context = format!("{} {}", build.0, build.1);
        f.wait_output(" lambda=1 ");
        f.edit(
            "main.cpp",
            "    auto add = [tick]",
            "    auto first = [](int x) { return x * 5; };\n    auto add = [tick]",
        );
        f.edit(
            "main.cpp",
            "    return add(0);",
            "    return add(0) + first(1);",
        );
        f.save("main.cpp");
        let path = f.path("main.cpp");
        let diagnostics = f.wait("the refusal", |e| match e {
            SessionEvent::Diagnostics { file, diagnostics }
                if *file == path && !diagnostics.is_empty() =>
            {
                Some(Ok(diagnostics.clone()))
            }
            SessionEvent::Swap(s) => Some(Err(s.clone())),
            _ => None,
        });
        if !refused {
            let swap = diagnostics.expect_err("clang's edit swaps");
            assert!(
                !swap.swapped.iter().any(|s| s.contains("$_0")),
                "{context}: {swap:?}"
            );
            f.wait_output(" lambda=6 ");
            f.assert_same_process();
            continue;
        }
        let diagnostics = diagnostics.unwrap_or_else(|s| panic!("{context}: swapped: {s:?}"));
        let found = diagnostics
            .iter()
            .find(|d| d.code == "layout-changed" && d.message.contains("renumbered"))
            .unwrap_or_else(|| panic!("{context}: no renumbering refusal: {diagnostics:#?}"));
        assert_eq!(found.severity, Severity::Error, "{context}: {found:?}");
        assert!(
            found.message.contains("`lambda_value(int)`") && found.message.contains("restart"),
            "{context}: {found:?}"
        );
        f.assert_unchanged(0, " lambda=1 stored=10 ", 3);
    }
    check_cxx_edit(&Edit {
        what: "a lambda appended",
        edits: &[(
            "    return add(0);",
            "    auto second = [](int x) { return x * 5; };\n    return add(0) + second(1);",
        )],
        swapped: &["lambda_value(int)"],
        // clang numbers closures file-wide: `stored`'s lambda is now `$_2`, so the
        // initializer of `stored` changed (it never runs again).
        may_also: &["__cxx_global_var_init"],
        added: &["lambda_value(int)::"],
        after: " lambda=6 ",
        kept: nothing,
    });
}

/// Rows: an edit of tmpl.h (cxxcomdat), the file saved, and what main.cpp prints after it.
/// Saving b.cpp alone (the header changed on disk, not saved) swaps b.cpp's copy in: the
/// program kept a.cpp's (another size: a.cpp is built at -O0), the same definition.
const COMDAT_EDITS: &[(&str, &str, &str, &str)] = &[
    ("return v * 2;", "return v * 3;", "tmpl.h", "a=7 b=3"),
    ("return 7;", "return 70;", "tmpl.h", "a=70 b=2"),
    ("return v * 2;", "return v * 3;", "b.cpp", "a=7 b=3"),
];

/// tests/fixtures/cxxcomdat built by `compiler`: every copy of the template and the inline
/// function is a weak COMDAT one, so a save swaps the changed copy with no `weak-overridden`
/// note (no strong definition overrides any of them) and the new body runs.
fn check_comdat_edit(compiler: &str, (from, to, saved, after): (&str, &str, &str, &str)) {
    let mut f = Fixture::copy("cxxcomdat");
    let flags = "-std=c++17 -O1 -g";
    f.write(
        "hot-lsp.toml",
        &format!(
            "[program]\npath = \"app\"\nbuild = \"{compiler} {flags} -o app main.cpp a.cpp b.cpp\"\n\n\
             [compile]\ncommand = \"{compiler} {flags} -c {{file}} -o {{output}}\"\n"
        ),
    );
    f.start();
    f.wait_launched();
    f.wait_output("a=7 b=2");
    f.edit("tmpl.h", from, to);
    f.save(saved);
    let swap = f.wait_swap();
    assert!(!swap.swapped.is_empty(), "{compiler}, {saved}: {swap:?}");
    f.wait_output(after);
    let notes = weak_overridden_notes(&f);
    assert!(notes.is_empty(), "{compiler}, {saved}: {notes:#?}");
    f.assert_same_process();
}

/// Every `weak-overridden` diagnostic the session sent.
fn weak_overridden_notes(f: &Fixture) -> Vec<&hot_session::Diagnostic> {
    f.log
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Diagnostics { diagnostics, .. } => Some(diagnostics),
            _ => None,
        })
        .flatten()
        .filter(|d| d.code == "weak-overridden")
        .collect()
}

#[test]
fn comdat_copies_of_a_template_and_an_inline_function_swap_without_weak_overridden() {
    for (compiler, _) in COMPILERS {
        for &row in COMDAT_EDITS {
            check_comdat_edit(compiler, row);
        }
    }
}

/// Rows: how tests/fixtures/cxxshared is built (`sh build.sh MODE`: "" keeps the baselines,
/// "old" makes every source newer than the program, so the link compares with the running
/// image), the edit of lib/detail.h, and what main.cpp prints after it.
const SHARED_COMDAT_EDITS: &[(&str, (&str, &str), &str)] = &[
    ("", ("return 1;", "return 5;"), "lib=11 "),
    ("old", ("return 1;", "return 5;"), "lib=11 "),
];

/// tests/fixtures/cxxshared built by `compiler`: a save of a header of the library
/// (-fvisibility=hidden: ld made its COMDAT vtables, typeinfo and `DW.ref.*` words local)
/// swaps the edited function with no `weak-overridden` note for the COMDAT data the edit
/// did not touch (the tester's fmtlib case had 21).
fn check_shared_comdat_edit(compiler: &str, (mode, (from, to), after): (&str, (&str, &str), &str)) {
    let mut f = Fixture::copy("cxxshared");
    f.write(
        "hot-lsp.toml",
        &format!("[program]\npath = \"app\"\nbuild = \"CXX={compiler} sh build.sh {mode}\"\n"),
    );
    f.start();
    f.wait_launched();
    f.wait_output("lib=7 ");
    f.edit("lib/detail.h", from, to);
    f.save("lib/detail.h");
    let swap = f.wait_swap();
    assert!(
        swap.swapped.iter().any(|s| s.contains("offset_for")),
        "{compiler}, {mode:?}: {swap:?}"
    );
    f.wait_output(after);
    let notes = weak_overridden_notes(&f);
    assert!(notes.is_empty(), "{compiler}, {mode:?}: {notes:#?}");
    f.assert_same_process();
}

#[test]
fn comdat_data_of_a_hidden_visibility_library_is_not_weak_overridden() {
    for (compiler, _) in COMPILERS {
        for &row in SHARED_COMDAT_EDITS {
            check_shared_comdat_edit(compiler, row);
        }
    }
}

/// One override added in a header that is newer than the running program when the session
/// starts: the first save of its includers is compared with the running program, not with
/// a baseline (tests/fixtures/cxxnobase, built by its build.sh at `-O1`).
struct NoBaselineOverride {
    what: &'static str,
    /// The header's edit, made before the session starts.
    edit: (&'static str, &'static str),
    /// The vtables that must be updated in place.
    updated: &'static [&'static str],
    /// Functions that may be swapped: `main`, whose code the patch flags'
    /// `-mno-direct-extern-access` changes (its register choices), not its source.
    may_swap: &'static [&'static str],
    /// A piece of every line printed once the override runs.
    after: &'static str,
}

fn check_no_baseline_override(row: &NoBaselineOverride) {
    let mut f = Fixture::copy("cxxnobase");
    let built = std::process::Command::new("sh")
        .arg(f.path("build.sh"))
        .status()
        .expect("run build.sh");
    assert!(built.success(), "cxxnobase builds");
    f.edit("visit.h", row.edit.0, row.edit.1);
    f.start();
    f.wait_launched();
    f.wait_output("tick=");
    f.save("visit.h");
    let swap = f.wait_swap();
    let context = format!(
        "{}: swapped {:?}, updated {:?}, added {:?}",
        row.what, swap.swapped, swap.updated, swap.added
    );
    for want in row.updated {
        assert!(
            swap.updated.iter().any(|u| u == want),
            "{want} not updated: {context}"
        );
    }
    for name in &swap.swapped {
        assert!(
            row.may_swap.contains(&name.as_str()),
            "{name} swapped: {context}"
        );
    }
    f.wait_output(row.after);
    f.fresh_output.clear();
    for line in f.next_lines(3) {
        assert!(line.contains(row.after), "{context}: {line}");
    }
    f.assert_same_process();
}

/// tinyxml2's case: without a baseline, a vtable's words (relocations) were taken as
/// unchanged, so the added override was reported while the running vtable kept the base's
/// function.
#[test]
fn an_override_added_without_a_baseline_updates_the_vtable() {
    check_no_baseline_override(&NoBaselineOverride {
        what: "an inline override of visit(const C &) added to Counter",
        edit: (
            "    bool visit(const B &) override;\n",
            "    bool visit(const B &) override;\n    bool visit(const C &) override {\n        \
             sig += 'c';\n        return true;\n    }\n",
        ),
        updated: &["_ZTV7Counter"],
        may_swap: &["main"],
        after: " sig=abc ",
    });
}
