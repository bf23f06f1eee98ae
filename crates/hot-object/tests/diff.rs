//! The atom diff on pairs of real compiles: what changed, what is new, what disappeared.

mod common;

use common::*;
use hot_object::{changed_functions, AtomDiff, ChangeReason, Object};

/// Compile `old` and `new` versions of the same file (same name, same directory, same
/// flags, like a save in the editor) and diff them.
fn diff_sources(old: &str, new: &str, flags: &[&str]) -> (Object, Object, AtomDiff) {
    let dir = tempfile::tempdir().unwrap();
    let old_obj = {
        let path = compile_object(dir.path(), "unit.c", old, flags);
        let moved = dir.path().join("old.o");
        std::fs::rename(&path, &moved).unwrap();
        parse_object(&moved)
    };
    let new_obj = parse_object(&compile_object(dir.path(), "unit.c", new, flags));
    let diff = changed_functions(&old_obj, &new_obj);
    (old_obj, new_obj, diff)
}

fn names(list: &[hot_object::AtomMatch]) -> Vec<&str> {
    let mut v: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
    v.sort();
    v
}

const BASE: &str = r#"
#include <stdio.h>

int counter;
static int scale = 3;

static int twice(int x) { return 2 * x; }

__attribute__((noinline)) int add(int a, int b) { return twice(a) + b * scale; }

__attribute__((noinline)) void greet(const char *who) { printf("hello, %s, nice to see you\n", who); }

__attribute__((noinline)) void part(void) { printf("goodbye for now, see you later\n"); }

int tick(void) { static int calls; return ++calls; }

int main(void)
{
    greet("you");
    part();
    counter = add(1, 2) + tick();
    return 0;
}
"#;

#[test]
fn unchanged_file_changes_nothing() {
    for flags in [&["-O0"][..], &["-O2"][..], &["-O0", "-fPIC"][..]] {
        let (_, _, diff) = diff_sources(BASE, BASE, flags);
        assert!(diff.is_empty(), "{flags:?}: {diff:#?}");
        let unchanged = names(&diff.unchanged);
        for name in ["add", "greet", "part", "main", "counter"] {
            assert!(
                unchanged.contains(&name),
                "{flags:?}: {name} missing in {unchanged:?}"
            );
        }
    }
}

#[test]
fn body_change_changes_only_that_function() {
    let new = BASE.replace("return 2 * x;", "return 3 * x;");
    // With optimisation `twice` is inlined into `add`, which is then what changed.
    for (flags, expected) in [(&["-O0"][..], "twice"), (&["-O1"][..], "add")] {
        let (_, _, diff) = diff_sources(BASE, &new, flags);
        assert_eq!(names(&diff.changed), [expected], "{flags:?}: {diff:#?}");
        assert!(diff.added.is_empty() && diff.removed.is_empty());
        assert!(
            matches!(
                diff.changed[0].reason,
                Some(ChangeReason::Bytes { .. } | ChangeReason::Layout)
            ),
            "{flags:?}: {diff:#?}"
        );
    }
}

#[test]
fn string_literal_change_changes_only_its_user() {
    // The new literal is longer, so every literal placed after it moves: users of those
    // must not count as changed.
    let new = BASE.replace(
        "hello, %s, nice to see you\\n",
        "hello there, %s, so very nice to see you\\n",
    );
    assert_ne!(new, BASE);
    for flags in [
        &["-O0"][..],
        &["-O2"][..],
        &["-O0", "-fPIC"][..],
        &["-O0", "-fno-pie", "-no-pie"][..],
    ] {
        let (_, _, diff) = diff_sources(BASE, &new, flags);
        assert_eq!(names(&diff.changed), ["greet"], "{flags:?}: {diff:#?}");
        assert!(
            matches!(diff.changed[0].reason, Some(ChangeReason::Target { .. })),
            "{flags:?}: {:?}",
            diff.changed[0].reason
        );
        assert!(
            diff.added.is_empty() && diff.removed.is_empty(),
            "{flags:?}: {diff:#?}"
        );
    }
}

#[test]
fn argument_literal_change_changes_the_caller() {
    let new = BASE.replace("greet(\"you\")", "greet(\"them\")");
    let (_, _, diff) = diff_sources(BASE, &new, &["-O0"]);
    assert_eq!(names(&diff.changed), ["main"], "{diff:#?}");
}

#[test]
fn new_static_function_is_added() {
    let new = BASE
        .replace(
            "int tick(void)",
            "static int thrice(int x) { return 3 * x; }\n\nint tick(void)",
        )
        .replace("counter = add(1, 2)", "counter = thrice(add(1, 2))");
    let (_, new_obj, diff) = diff_sources(BASE, &new, &["-O0"]);
    let added: Vec<&str> = diff.added.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(added, ["thrice"], "{diff:#?}");
    assert_eq!(
        new_obj.atom(diff.added[0].atom).section_name,
        ".text.thrice"
    );
    assert_eq!(names(&diff.changed), ["main"], "{diff:#?}");
    assert!(diff.removed.is_empty());
}

#[test]
fn removed_function_is_reported() {
    let new = BASE.replace("__attribute__((noinline)) void part(void) { printf(\"goodbye for now, see you later\\n\"); }", "").replace("    part();\n", "");
    let (old_obj, _, diff) = diff_sources(BASE, &new, &["-O0"]);
    let removed: Vec<&str> = diff.removed.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(removed, ["part"], "{diff:#?}");
    assert_eq!(
        old_obj.atom(diff.removed[0].atom).section_name,
        ".text.part"
    );
    assert_eq!(names(&diff.changed), ["main"], "{diff:#?}");
}

#[test]
fn variable_initializer_change() {
    let new = BASE.replace("static int scale = 3;", "static int scale = 4;");
    let (_, _, diff) = diff_sources(BASE, &new, &["-O0"]);
    assert_eq!(names(&diff.changed), ["scale"], "{diff:#?}");
}

#[test]
fn local_statics_match_across_renumbering() {
    // A new function-local static before `tick` renumbers gcc's `calls.N`: matching goes by
    // the declaring function, so `tick`'s counter still matches and nothing else changes.
    let old = "int tick(void) { static int calls; return ++calls; }\n\
               int tock(void) { static int calls = 5; return calls += 2; }\n";
    let new = "int early(void) { static int calls = 9; return calls--; }\n\
               int tick(void) { static int calls; return ++calls; }\n\
               int tock(void) { static int calls = 5; return calls += 2; }\n";
    let (_, _, diff) = diff_sources(old, new, &["-O0"]);
    let added: Vec<&str> = diff.added.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(added, ["early", "early/calls"], "{diff:#?}");
    assert!(diff.changed.is_empty(), "{diff:#?}");
    assert_eq!(
        names(&diff.unchanged),
        ["tick", "tick/calls", "tock", "tock/calls"]
    );
}

const COLD: &str = r#"
#include <stdio.h>
#include <stdlib.h>

/* Calling a cold function makes gcc move the whole failure path to `checked.cold`. */
__attribute__((cold, noinline)) void report(int x) { fprintf(stderr, "bad %d\n", x); }

__attribute__((noinline)) int checked(int x)
{
    if (x < 0) {
        report(x);
        fprintf(stderr, "negative value %d\n", x);
        abort();
    }
    return x * 3 + 1;
}

__attribute__((noinline)) int other(int x) { return x + 7; }

int main(int argc, char **argv)
{
    (void)argv;
    return checked(argc) + other(argc);
}
"#;

#[test]
fn cold_part_is_one_unit_with_its_function() {
    let (old_obj, _, diff) = diff_sources(COLD, COLD, &["-O2"]);
    assert!(diff.is_empty(), "{diff:#?}");
    let unchanged = names(&diff.unchanged);
    assert!(
        unchanged.contains(&"checked.cold"),
        "gcc did not split checked: {unchanged:?}"
    );
    let cold = diff
        .unchanged
        .iter()
        .find(|m| m.name == "checked.cold")
        .unwrap();
    assert!(old_obj
        .atom(cold.old)
        .section_name
        .starts_with(".text.unlikely"));

    // Change only the cold path: the hot part must be reported too.
    let new = COLD.replace("negative value %d\\n", "value %d is negative\\n");
    let (_, _, diff) = diff_sources(COLD, &new, &["-O2"]);
    assert_eq!(
        names(&diff.changed),
        ["checked", "checked.cold"],
        "{diff:#?}"
    );
    let hot = diff.changed.iter().find(|m| m.name == "checked").unwrap();
    assert_eq!(
        hot.reason,
        Some(ChangeReason::UnitPart {
            part: "checked.cold".into()
        })
    );

    // Change only the hot path: the cold part goes with it.
    let new = COLD.replace("return x * 3 + 1;", "return x * 5 + 1;");
    let (_, _, diff) = diff_sources(COLD, &new, &["-O2"]);
    assert_eq!(
        names(&diff.changed),
        ["checked", "checked.cold"],
        "{diff:#?}"
    );
    assert!(!names(&diff.changed).contains(&"other"));
}

const CLONE: &str = r#"
#include <stdio.h>
__attribute__((noinline)) static int scale(int x, int k) { printf("scaling %d\n", x); return x * k + k; }
int a(int x) { return scale(x, 3); }
int b(int x) { return scale(x, 3) + 1; }
int c(int x) { return x - 1; }
"#;

#[test]
fn ipa_clones_are_compared_through_their_callers() {
    let (old_obj, _, diff) = diff_sources(CLONE, CLONE, &["-O2"]);
    assert!(
        old_obj
            .symbols
            .iter()
            .any(|s| s.name == "scale.constprop.0"),
        "gcc made no constprop clone"
    );
    assert!(diff.is_empty(), "{diff:#?}");
    assert!(!names(&diff.unchanged)
        .iter()
        .any(|n| n.contains("constprop")));

    // A changed clone is never matched itself; both callers change and get linked to it.
    let new = CLONE.replace("return x * k + k;", "return x * k - k;");
    let (_, new_obj, diff) = diff_sources(CLONE, &new, &["-O2"]);
    assert!(new_obj
        .symbols
        .iter()
        .any(|s| s.name == "scale.constprop.0"));
    assert_eq!(names(&diff.changed), ["a", "b"], "{diff:#?}");
    assert!(
        diff.added.is_empty() && diff.removed.is_empty(),
        "{diff:#?}"
    );
}

/// gcc -O2 makes `a` and `b`, which call each other, into clones that call each other
/// (`a.part.0.constprop.0` <-> `b.part.0.constprop.0`): a cycle of anonymous atoms, reached
/// from `run_a` through one clone and from `run_b` through the other.
const CYCLE: &str = r#"
#include <stdio.h>
static void b(int n, const char *tag);
static void a(int n, const char *tag) {
    if (n <= 0) return;
    printf("%s: a-path %d\n", tag, n);
    printf("%s: a-path again %d\n", tag, n);
    b(n - 1, tag);
    printf("%s: a-path done %d\n", tag, n);
}
static void b(int n, const char *tag) {
    if (n <= 0) return;
    printf("%s: b-path %d\n", tag, n);
    printf("%s: b-path again %d\n", tag, n);
    a(n - 1, tag);
    printf("%s: b-path done %d\n", tag, n);
}
void run_a(int n) { a(n, "x"); }
void run_b(int n) { b(n, "x"); }
void other(int n) { printf("other %d\n", n); }
"#;

#[test]
fn a_change_inside_a_cycle_of_clones_changes_every_caller_of_the_cycle() {
    let (old_obj, _, diff) = diff_sources(CYCLE, CYCLE, &["-O2"]);
    let clones: Vec<&str> = old_obj
        .symbols
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| n.contains(".constprop."))
        .collect();
    assert!(clones.len() >= 2, "gcc made no cycle of clones: {clones:?}");
    assert!(diff.is_empty(), "{diff:#?}");
    // Each literal, before and after the call into the other clone: whichever clone is met
    // first, and wherever in it the difference lies, both entries into the cycle change.
    for literal in [
        "a-path %d",
        "a-path done %d",
        "b-path again %d",
        "b-path done %d",
    ] {
        let new = CYCLE.replace(literal, &format!("{literal} (edited)"));
        assert_ne!(new, CYCLE);
        let (_, _, diff) = diff_sources(CYCLE, &new, &["-O2"]);
        assert_eq!(
            names(&diff.changed),
            ["run_a", "run_b"],
            "{literal}: {diff:#?}"
        );
        assert_eq!(names(&diff.unchanged), ["other"], "{literal}: {diff:#?}");
    }
    // A change outside the cycle leaves the cycle and its callers unchanged.
    let new = CYCLE.replace("other %d", "other one %d");
    let (_, _, diff) = diff_sources(CYCLE, &new, &["-O2"]);
    assert_eq!(names(&diff.changed), ["other"], "{diff:#?}");
    assert_eq!(names(&diff.unchanged), ["run_a", "run_b"], "{diff:#?}");
}

const TABLES: &str = r#"
#include <stdio.h>

int dispatch(int op, int x)
{
    switch (op) {
    case 0: return x + 11;
    case 1: return x * 13;
    case 2: return x - 17;
    case 3: return x ^ 19;
    case 4: return x << 3;
    case 5: return x / 7;
    case 6: return x % 5;
    default: return -1;
    }
}

int lookup(int i)
{
    static const int table[] = { 2, 3, 5, 7, 11, 13, 17, 19, 23, 29 };
    return i < 10 ? table[i] : 0;
}

void whoami(void) { printf("%s\n", __func__); }

void other(void) { printf("%s\n", __func__); }
"#;

#[test]
fn jump_tables_and_local_tables_follow_their_function() {
    for flags in [
        &["-O0"][..],
        &["-O2"][..],
        &["-O2", "-fPIC"][..],
        &["-O2", "-fno-pie", "-no-pie"][..],
    ] {
        let (_, _, diff) = diff_sources(TABLES, TABLES, flags);
        assert!(diff.is_empty(), "{flags:?}: {diff:#?}");
        let unchanged = names(&diff.unchanged);
        for name in ["dispatch", "lookup", "other", "whoami"] {
            assert!(unchanged.contains(&name), "{flags:?}: {unchanged:?}");
        }

        let new = TABLES.replace("case 3: return x ^ 19;", "case 3: return x ^ 23;");
        let (_, _, diff) = diff_sources(TABLES, &new, flags);
        let changed: Vec<&str> = names(&diff.changed)
            .into_iter()
            .filter(|n| *n != "dispatch.cold")
            .collect();
        assert_eq!(changed, ["dispatch"], "{flags:?}: {diff:#?}");

        // A changed entry of a function-local `static const` table changes its function.
        let new = TABLES.replace("23, 29 }", "23, 31 }");
        let (_, _, diff) = diff_sources(TABLES, &new, flags);
        assert_eq!(names(&diff.changed), ["lookup"], "{flags:?}: {diff:#?}");

        // Renaming a function changes what `__func__` holds: only that function changes
        // (and it appears under its new name).
        let new = TABLES.replace("void whoami(void)", "void who_am_i(void)");
        let (_, _, diff) = diff_sources(TABLES, &new, flags);
        assert!(diff.changed.is_empty(), "{flags:?}: {diff:#?}");
        let added: Vec<&str> = diff.added.iter().map(|a| a.name.as_str()).collect();
        let removed: Vec<&str> = diff.removed.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            (added, removed),
            (vec!["who_am_i"], vec!["whoami"]),
            "{flags:?}"
        );
    }
}

#[test]
fn a_caller_whose_exception_table_changed_is_changed() {
    // `leaf` cannot throw, so g++ leaves `caller`'s call of it out of caller's call-site
    // table; once `leaf` may throw, caller's code is the same but its table lists the call.
    let old = "#include <stdexcept>\n\
               int other(int);\n\
               int leaf(int x) { return x; }\n\
               int caller(int x) { try { return leaf(x) + other(x); } catch (...) { return -1; } }\n";
    let new = old.replace(
        "int leaf(int x) { return x; }",
        "int leaf(int x) { if (x > 0) throw std::runtime_error(\"x\"); return x; }",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["-c", "-O0", "-g", "-ffunction-sections", "-fdata-sections"];
    let old_obj = {
        let path = compile_with("c++", dir.path(), "unit.cpp", old, &flags, "old.o");
        parse_object(&path)
    };
    let new_obj = parse_object(&compile_with(
        "c++",
        dir.path(),
        "unit.cpp",
        &new,
        &flags,
        "new.o",
    ));
    let diff = changed_functions(&old_obj, &new_obj);
    assert_eq!(
        names(&diff.changed),
        ["_Z4leafi", "_Z6calleri"],
        "{diff:#?}"
    );
    let caller = diff
        .changed
        .iter()
        .find(|m| m.name == "_Z6calleri")
        .expect("caller");
    assert_eq!(
        caller.reason,
        Some(ChangeReason::ExceptionTable),
        "{diff:#?}"
    );
    // The same file compiled twice: no change, tables included.
    let again = parse_object(&compile_with(
        "c++",
        dir.path(),
        "unit.cpp",
        &new,
        &flags,
        "again.o",
    ));
    assert!(changed_functions(&new_obj, &again).is_empty());
}
