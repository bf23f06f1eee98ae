//! Type layouts, signatures, type users and the functions whose frames hold a type, read
//! from the DWARF of real compiles (types.rs).

mod common;

use std::collections::HashSet;

use common::{compile_c, compile_object, line_containing, parse_object};
use hot_object::types::{image_type_users, image_type_uses, HolderCode, UserKind};

const GEOM: &str = "struct shape { int w; int h; };
typedef struct { char tag; long value; } cell_t;
struct list { struct shape *items; int n; };
static struct list all;
long scaled(int v, const char *why, ...) { return v; }
int area(const struct shape *s) { return s->w * s->h; }
int cell_sum(int x) { cell_t c = { 1, x }; return c.tag + (int)c.value; }
int count(void) { return all.n; }
int plain(int x) { return x + 1; }
";

#[test]
fn signatures_and_layouts_of_the_functions_asked_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let object = parse_object(&compile_object(dir.path(), "geom.c", GEOM, &[]));
    let names: HashSet<&str> = ["scaled", "area", "cell_sum"].into_iter().collect();
    let facts = object.abi_facts(&names).expect("abi facts");
    let scaled = facts.function("scaled").expect("scaled");
    assert_eq!(
        scaled.signature.to_string(),
        "long int (int, const char *, ...)"
    );
    assert_eq!(scaled.decl.as_ref().map(|d| d.line), Some(5));
    let area = facts.function("area").expect("area");
    assert_eq!(area.types, vec!["struct shape".to_string()]);
    let shape = &facts.layouts["struct shape"];
    assert_eq!(shape.size, Some(8));
    let members: Vec<(&str, u64)> = shape
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.offset))
        .collect();
    assert_eq!(members, vec![("w", 0), ("h", 4)]);
    assert_eq!(
        shape.decl.as_ref().map(|d| d.line),
        Some(line_containing(GEOM, "struct shape {"))
    );
    // An anonymous struct takes its typedef's name.
    let cell = &facts.layouts["cell_t"];
    assert_eq!((cell.size, cell.members[1].offset), (Some(16), 8));
    // Only what the functions asked about use.
    assert!(
        !facts.layouts.contains_key("struct list"),
        "{:?}",
        facts.layouts.keys()
    );
    assert!(facts.function("plain").is_none());
}

#[test]
fn bit_fields_are_placed_by_bit_in_dwarf_4_and_5_alike() {
    // (name, first bit, width) from the start of the struct: DWARF 5 says it with
    // DW_AT_data_bit_offset, DWARF 4 (gcc) with DW_AT_bit_offset from the top of the
    // storage unit at DW_AT_data_member_location; both are one layout.
    let source = "struct flags { unsigned a : 3, b : 5; unsigned char c; unsigned d : 12; };
int flag_sum(const struct flags *f) { return f->a + f->b + f->c + f->d; }
";
    let dir = tempfile::tempdir().expect("tempdir");
    let names: HashSet<&str> = ["flag_sum"].into_iter().collect();
    let mut layouts = Vec::new();
    for version in ["-gdwarf-4", "-gdwarf-5"] {
        let out = dir.path().join(version);
        std::fs::create_dir_all(&out).expect("dir");
        let object = parse_object(&compile_object(&out, "flags.c", source, &[version]));
        let facts = object.abi_facts(&names).expect("abi facts");
        let flags = facts.layouts["struct flags"].clone();
        let bits: Vec<(&str, u64, Option<u64>, Option<u64>)> = flags
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.offset, m.bit_offset, m.bit_size))
            .collect();
        assert_eq!(
            bits,
            [
                ("a", 0, Some(0), Some(3)),
                ("b", 0, Some(3), Some(5)),
                ("c", 1, None, None),
                ("d", 2, Some(16), Some(12)),
            ],
            "{version}"
        );
        layouts.push(flags);
    }
    assert!(layouts[0].same_layout(&layouts[1]), "{layouts:#?}");
}

/// C with what a partial read of the type tables could get wrong: a struct declared inside
/// a function, an anonymous struct named by a typedef,
/// a function split into hot and cold parts (DW_AT_ranges), a static function and a
/// function-local static.
const TRICKY: &str = "typedef struct { int a; long b; } anon_t;
struct outer { anon_t first; struct outer *next; };
static int helper(struct outer *o) { return o->first.a; }
int with_local(int x) {
    struct inside { int p; char q[3]; } v = { x, {0} };
    return v.p + v.q[0];
}
__attribute__((cold)) void slow(const char *why);
int split(struct outer *o, int n) {
    static int calls;
    calls++;
    if (__builtin_expect(n > 1000, 0)) { slow(\"big\"); return helper(o) * n; }
    return n + calls;
}
anon_t make(int a) { anon_t t = { a, 2 }; return t; }
";

/// A nested function (GNU C, gcc only) using a struct of its enclosing function.
const NESTED: &str = "struct pair { int a; int b; };
int with_nested(int x) {
    struct inside { int p; struct pair q; } v = { x, { 1, 2 } };
    int twice(struct inside *w, int y) { return y * 2 + w->p + v.q.b; }
    return twice(&v, x);
}
int after(struct pair *p) { return p->a; }
";

/// The signatures and layouts [`Object::abi_facts`] gives from tables of the asked-about
/// functions only are exactly those the whole tables give, for each function alone and for
/// all together, gcc and clang, -O0 and -O2.
#[test]
fn abi_facts_of_some_functions_equal_those_of_the_whole_tables() {
    let mut compared = 0;
    for compiler in ["cc", "clang"] {
        for flags in [&["-O0"][..], &["-O2"][..]] {
            let mut sources = vec![("geom.c", GEOM), ("tricky.c", TRICKY)];
            if compiler == "cc" {
                sources.push(("nested.c", NESTED));
            }
            for (name, source) in sources {
                let dir = tempfile::tempdir().expect("tempdir");
                let mut all = vec!["-c", "-g", "-ffunction-sections", "-fdata-sections"];
                all.extend_from_slice(flags);
                let path = common::compile_with(compiler, dir.path(), name, source, &all, "o.o");
                let functions: Vec<String> = parse_object(&path)
                    .symbols
                    .iter()
                    .filter(|s| {
                        s.kind == hot_object::SymbolKind::Function
                            && matches!(s.def, hot_object::SymbolDef::Atom { .. })
                    })
                    .map(|s| s.name.to_string())
                    .collect();
                let mut sets: Vec<HashSet<&str>> =
                    functions.iter().map(|f| [f.as_str()].into()).collect();
                sets.push(functions.iter().map(String::as_str).collect());
                for set in &sets {
                    // A fresh object reads partial tables; the other one reads the whole
                    // tables first (as type_users does).
                    let partial = parse_object(&path).abi_facts(set).expect("partial");
                    let whole = parse_object(&path);
                    whole.type_users(&HashSet::new()).expect("whole tables");
                    let whole = whole.abi_facts(set).expect("whole");
                    assert_eq!(partial, whole, "{compiler} {flags:?} {name} {set:?}");
                    compared += partial.functions.len();
                }
            }
        }
    }
    assert!(compared > 30, "only {compared} functions compared");
}

#[test]
fn users_of_a_type_in_an_object_and_in_an_executable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let object = parse_object(&compile_object(dir.path(), "geom.c", GEOM, &[]));
    let wanted: HashSet<&str> = ["struct shape"].into_iter().collect();
    let users = object.type_users(&wanted).expect("users");
    let mut named: Vec<(&str, UserKind)> =
        users.iter().map(|u| (u.name.as_str(), u.kind)).collect();
    named.sort_by_key(|(n, _)| *n);
    // `all` holds a pointer to shapes (through struct list); `count` only reads `all`.
    assert_eq!(
        named,
        vec![("all", UserKind::Variable), ("area", UserKind::Function)]
    );
    assert!(users
        .iter()
        .all(|u| u.layout.as_ref().and_then(|l| l.size) == Some(8)));

    // An executable whose main.c only knows `struct shape` by name (an opaque pointer).
    let main = "struct shape; int area(const struct shape *s); struct shape *keep;
int describe(struct shape *s) { return s != 0; }
int main(void) { return describe(keep); }
";
    std::fs::write(dir.path().join("geom2.c"), GEOM).expect("write");
    let exe = compile_c(dir.path(), "main.c", main, &["-g", "geom2.c"], "app");
    let bytes = std::fs::read(&exe).expect("read exe");
    let users = image_type_users(&exe, &bytes, &wanted, &[]).expect("image users");
    let main_users: Vec<(&str, UserKind, bool)> = users
        .iter()
        .filter(|u| u.unit_name.ends_with("main.c"))
        .map(|u| (u.name.as_str(), u.kind, u.layout.is_some()))
        .collect();
    assert_eq!(
        main_users,
        vec![
            ("describe", UserKind::Function, false),
            ("keep", UserKind::Variable, false)
        ]
    );
    let unit = users.iter().find(|u| u.name == "area").expect("area").unit;
    let skipped = image_type_users(&exe, &bytes, &wanted, &[unit]).expect("image users");
    assert!(skipped.iter().all(|u| u.unit != unit), "{skipped:?}");
}

/// The cost of the checks on a large file: 2000 functions taking a `struct rec *` (what a
/// save that changes `struct rec` pays: the facts of the changed function in two objects,
/// the users in the new object, the users in the executable). Printed for the record; the
/// assertions check the answers.
#[test]
fn type_users_of_a_large_file() {
    const N: usize = 2000;
    let mut source = String::from(
        "struct rec { int a; int b; long c; struct rec *next; };\nstatic struct rec head;\n",
    );
    for i in 0..N {
        source.push_str(&format!(
            "int f{i}(struct rec *r, int k) {{ int t = r->a + {i}; return t * k + (int)r->c; }}\n"
        ));
    }
    source.push_str("int main(void) { return f0(&head, 1); }\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let object = parse_object(&compile_object(dir.path(), "big.c", &source, &[]));
    let started = std::time::Instant::now();
    let one: HashSet<&str> = ["f7"].into_iter().collect();
    let facts = object.abi_facts(&one).expect("facts");
    let facts_micros = started.elapsed().as_micros();
    assert_eq!(
        facts.function("f7").map(|f| f.types.clone()),
        Some(vec!["struct rec".to_string()])
    );
    let wanted: HashSet<&str> = ["struct rec"].into_iter().collect();
    let started = std::time::Instant::now();
    let users = object.type_users(&wanted).expect("users");
    let users_micros = started.elapsed().as_micros();
    // Every f, and the variable `head` (main only takes its address).
    assert_eq!(users.len(), N + 1, "{:?}", &users[..3]);
    let exe = compile_c(dir.path(), "big.c", &source, &["-g"], "big");
    let bytes = std::fs::read(&exe).expect("read exe");
    let started = std::time::Instant::now();
    let image_users = image_type_users(&exe, &bytes, &wanted, &[]).expect("image users");
    let image_micros = started.elapsed().as_micros();
    assert_eq!(image_users.len(), N + 1);
    eprintln!(
        "{N} functions ({} KiB object): abi_facts of one function {facts_micros} µs, \
         type_users of the object {users_micros} µs, of the executable {image_micros} µs",
        std::fs::metadata(dir.path().join("big.o")).map_or(0, |m| m.len() / 1024)
    );
}

/// The functions whose frames hold `struct s` (image_type_uses): by value, through a
/// pointer, in an array, inside another struct, with `-O0` and `-O2` (where `inner` is
/// inlined into its caller, whose frame then holds its parameter, and main inlines
/// by_value); never a static local,
/// never a function that holds other types only.
#[test]
fn frame_holders_are_the_functions_whose_parameters_or_locals_reach_the_type() {
    let source = "struct s { int a; int b; };
struct wrap { struct s inner; int tag; };
volatile int sink;
int by_pointer(const struct s *p) { return p->a; }
static inline int inner(const struct s *q) { return q->b + sink; }
int by_value(int x) { struct s v = { x, 2 }; sink = by_pointer(&v); return inner(&v); }
int in_array(int x) { struct s arr[2] = { { x, 1 }, { 2, 3 } }; return by_pointer(&arr[1]); }
int wrapped(int x) { struct wrap w = { { x, 1 }, 4 }; return by_pointer(&w.inner); }
int kept(void) { static struct s once; return once.a; }
int other(int x) { int y = x * 2; return y; }
int main(void) { return by_value(1) + in_array(2) + wrapped(3) + kept() + other(4); }
";
    let wanted: HashSet<&str> = ["struct s"].into_iter().collect();
    for opt in ["-O0", "-O2"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = compile_c(dir.path(), "frames.c", source, &["-g", opt], "app");
        let bytes = std::fs::read(&exe).expect("read exe");
        let (_, holders) = image_type_uses(&exe, &bytes, &wanted, &[]).expect("holders");
        let has = |function: &str, variable: &str| {
            holders
                .iter()
                .any(|h| h.function == function && h.variable == variable)
        };
        for (function, variable) in [
            ("by_pointer", "p"),
            ("by_value", "v"),
            ("in_array", "arr"),
            ("wrapped", "w"),
        ] {
            assert!(
                has(function, variable),
                "{opt}: {function}/{variable}: {holders:#?}"
            );
        }
        if opt == "-O2" && !holders.iter().any(|h| h.function == "inner") {
            // inner has no body of its own: its parameter is in by_value's frame.
            assert!(has("by_value", "inner/q"), "{opt}: {holders:#?}");
        }
        // With -O2 main inlines by_value and its frame holds `v`: only -O0's main holds none.
        let never: &[&str] = match opt {
            "-O0" => &["kept", "other", "main"],
            _ => &["kept", "other"],
        };
        for &function in never {
            assert!(
                holders.iter().all(|h| h.function != function),
                "{opt}: {function} holds no struct s: {holders:#?}"
            );
        }
        assert!(
            holders.iter().all(|h| h.type_name == "struct s"),
            "{holders:#?}"
        );
        // Each located by its own DWARF ranges, not by its name.
        for h in &holders {
            assert!(
                matches!(&h.code, HolderCode::Addresses(r) if !r.is_empty()),
                "{opt}: {h:#?}"
            );
        }
        let v = holders.iter().find(|h| h.variable == "v").expect("v");
        assert_eq!(v.variable_type, "struct s");
        assert_eq!(v.layout.as_ref().and_then(|l| l.size), Some(8));
    }
}

/// gcc -O2's copies of a holder (tests/fixtures/frameclones): the DWARF entry of
/// `run_const.constprop.0` is named `run_const`, and `run_cold`'s covers its `.cold` part.
/// The holder's code comes from its own entry: in the executable, ranges covering each
/// symbol the program runs; in the object, those symbols by name.
#[test]
fn frame_holders_of_gcc_clones_and_cold_parts_carry_their_own_code() {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/frameclones/main.c"),
    )
    .expect("read the frameclones fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile_c(
        dir.path(),
        "main.c",
        &source,
        &["-g", "-O2", "-pthread"],
        "app",
    );
    let bytes = std::fs::read(&exe).expect("read exe");
    let image = hot_object::LinkedImage::parse(&exe, &bytes).expect("parse image");
    let object = parse_object(&compile_object(dir.path(), "main.c", &source, &["-O2"]));
    let symbols_of = |code: &HolderCode| -> Vec<String> {
        let HolderCode::Addresses(ranges) = code else {
            panic!("no addresses: {code:?}");
        };
        let mut names: Vec<String> = image
            .symbols
            .iter()
            .filter(|s| {
                s.kind == hot_object::SymbolKind::Function
                    && ranges.iter().any(|r| r.start <= s.vaddr && s.vaddr < r.end)
            })
            .map(|s| s.name.clone())
            .collect();
        names.sort();
        names
    };
    for (ty, function, symbols) in [
        ("struct c_held", "run_const", &["run_const.constprop.0"][..]),
        ("struct p_held", "run_part", &["run_part.part.0"][..]),
        (
            "struct k_held",
            "run_cold",
            &["run_cold", "run_cold.cold"][..],
        ),
        ("struct i_held", "run_isra", &["run_isra.isra.0"][..]),
    ] {
        let wanted: HashSet<&str> = [ty].into_iter().collect();
        let (_, holders) = image_type_uses(&exe, &bytes, &wanted, &[]).expect("holders");
        let holder = holders
            .iter()
            .find(|h| h.function == function)
            .unwrap_or_else(|| panic!("{function} holds no {ty}: {holders:#?}"));
        assert_eq!(symbols_of(&holder.code), symbols, "{holder:#?}");
        let holders = object.frame_holders(&wanted).expect("object holders");
        let holder = holders
            .iter()
            .find(|h| h.function == function)
            .unwrap_or_else(|| panic!("{function} holds no {ty} in the object: {holders:#?}"));
        let expected: Vec<String> = symbols.iter().map(|s| s.to_string()).collect();
        match &holder.code {
            HolderCode::Symbols(names) => {
                let mut names = names.clone();
                names.sort();
                assert_eq!(names, expected, "{holder:#?}");
            }
            other => panic!("{function}: {other:?}"),
        }
    }
}
