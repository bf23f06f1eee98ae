//! Knowing what changed without a baseline: a program built by the real `cc` (gcc driving
//! GNU ld, with its relaxations, PLT and libc) is the running image; the same file compiled
//! again with the patch flags and linked without baseline must swap exactly the functions
//! whose source changed — by bytes or only by what a relocation designates — and skip all
//! others, including functions too small for an entry jump.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use hot_link::{LinkRequest, Linker, Patch, UnitRef};
use hot_object::{Object, SymbolKind, TranslationUnitId};
use support::*;

const LIBC_BIAS: u64 = 0x7fff_f700_0000;

/// The patch flags hot-lsp adds to a file's own.
const PATCH_FLAGS: &[&str] = &[
    "-g",
    "-ffunction-sections",
    "-fdata-sections",
    "-mno-direct-extern-access",
];

struct Built {
    dir: tempfile::TempDir,
    linker: Linker,
    tu: Option<TranslationUnitId>,
    cflags: Vec<String>,
}

/// Build the fixture program with `cc <cflags> -g` (no section flags, as a user's build).
fn build(cflags: &[&str]) -> Built {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["image_diff.c", "image_diff_other.c"] {
        std::fs::write(dir.path().join(name), fixture(name)).expect("writing source");
    }
    let exe = dir.path().join("app");
    run(Command::new("cc")
        .args(cflags)
        .arg("-g")
        .args(["image_diff.c", "image_diff_other.c", "-o"])
        .arg(&exe)
        .current_dir(dir.path()));
    let pie = !cflags.contains(&"-no-pie");
    let exe = module(&exe, if pie { BIAS } else { 0 });
    let tu = exe
        .image
        .translation_units
        .iter()
        .position(|n| n == "image_diff.c")
        .map(|i| TranslationUnitId(i as u32));
    let libc = module(&libc_path(), LIBC_BIAS);
    let arenas = if pie {
        hot_link::Arenas {
            code: hot_link::RuntimeAddr(0x5555_0000_0000)..hot_link::RuntimeAddr(0x5555_0010_0000),
            data: hot_link::RuntimeAddr(0x5555_0010_0000)..hot_link::RuntimeAddr(0x5555_0020_0000),
        }
    } else {
        low_arenas()
    };
    Built {
        linker: Linker::new(image_model(exe, vec![libc]), arenas),
        dir,
        tu,
        cflags: cflags.iter().map(|s| s.to_string()).collect(),
    }
}

impl Built {
    /// Compile `source` as the patch of image_diff.c, in its own folder.
    fn patch_object(&self, name: &str, source: &str) -> Object {
        let sub = self.dir.path().join(name);
        std::fs::create_dir_all(&sub).expect("mkdir");
        let src = sub.join("image_diff.c");
        std::fs::write(&src, source).expect("writing source");
        let obj = sub.join("image_diff.o");
        let cflags: Vec<&str> = self
            .cflags
            .iter()
            .map(String::as_str)
            .filter(|f| !matches!(*f, "-no-pie" | "-pie"))
            .collect();
        run(Command::new("cc")
            .arg("-c")
            .args(&cflags)
            .args(PATCH_FLAGS)
            .arg(&src)
            .arg("-o")
            .arg(&obj));
        parse_object(&obj)
    }

    fn link(&self, object: &Object) -> Patch {
        self.linker
            .link(&LinkRequest {
                object,
                baseline: None,
                unit: UnitRef {
                    tu: self.tu,
                    compile_unit: None,
                    source: "image_diff.c".into(),
                },
                applied: &[],
            })
            .unwrap_or_else(|e| panic!("{:?}: {e:#?}", self.cflags))
    }
}

fn defines(obj: &Object, function: &str) -> bool {
    obj.symbols
        .iter()
        .any(|s| s.name == function && s.kind == SymbolKind::Function)
}

fn functions(obj: &Object) -> usize {
    obj.atoms
        .iter()
        .filter(|a| {
            a.symbols.iter().any(|&s| {
                let s = obj.symbol(s);
                // Split parts and IPA clones have no entry: they go with their callers.
                s.kind == SymbolKind::Function
                    && ![".cold", ".constprop.", ".isra.", ".part."]
                        .iter()
                        .any(|m| s.name.contains(m))
            })
        })
        .count()
}

/// Edits of the fixture, one per function, each changing what the function does; some only
/// change what a relocation designates (same bytes): a string's contents, the callee, the
/// variable, a constant in `.rodata.cst8`.
const EDITS: &[(&str, &str, &str)] = &[
    ("label", "\"alpha\"", "\"alphb\""),
    ("bump", "++counter;", "++counter2;"),
    ("calls_other", "other_value(x) + 1;", "other_value2(x) + 1;"),
    ("sw", "case 2: return 35;", "case 2: return 36;"),
    ("scale", "x * 1.5 + 0.25;", "x * 1.5 + 0.5;"),
    ("tiny_id", "return x; }", "return x + 1; }"),
    ("checked", "x * 7;", "x * 9;"),
    // In checked's `.cold` part at -O2.
    ("checked", "counter2 - 1;", "counter2 - 2;"),
    ("lookup", "5, 9, 2", "5, 8, 2"),
    ("flush_out", "fflush(stdout);", "fflush(stderr);"),
    ("tls_bump", "++tls_counter;", "++tls_other;"),
    ("offtab", "{11, 2, 3", "{12, 2, 3"),
    // `scaled_by` itself where it is not cloned (-O0, -O1), else its caller, which the clone
    // is copied with.
    (
        "scaled_by|uses_clone",
        "hidden_state * 5;",
        "hidden_state * 6;",
    ),
];

/// The fixture without edits must be found equal everywhere; each edit alone must swap
/// exactly its function.
fn check(cflags: &[&str]) {
    let b = build(cflags);
    let source = fixture("image_diff.c");
    let same = b.patch_object("same", &source);
    let total = functions(&same);
    // Symbol maps and entry landings are built once per linker, not per link.
    b.linker.prepare();
    let started = Instant::now();
    let patch = b.link(&same);
    let elapsed = started.elapsed();
    assert!(
        patch.swapped.is_empty(),
        "{cflags:?}: unchanged source, yet swapped {:?}",
        patch.swapped
    );
    assert!(patch.is_empty(), "{cflags:?}: {patch:#?}");
    assert_eq!(patch.skipped, total, "{cflags:?}");
    eprintln!(
        "{cflags:?}: {total} functions compared and found equal in {elapsed:?} ({:?} per function)",
        elapsed / total as u32
    );
    for (i, (function, from, to)) in EDITS.iter().enumerate() {
        assert!(source.contains(from), "{from}");
        let edited = source.replacen(from, to, 1);
        let obj = b.patch_object(&format!("edit{i}"), &edited);
        let patch = b.link(&obj);
        let swapped: BTreeSet<&str> = patch.swapped.iter().map(String::as_str).collect();
        let function = match function.split_once('|') {
            Some((own, _)) if defines(&obj, own) => own,
            Some((_, caller)) => caller,
            None => function,
        };
        assert_eq!(
            swapped,
            BTreeSet::from([function]),
            "{cflags:?}: editing {function}"
        );
        assert_eq!(patch.skipped, total - 1, "{cflags:?}: editing {function}");
    }
}

#[test]
fn unchanged_functions_equal_the_image_at_o1() {
    check(&["-O1"]);
}

#[test]
fn unchanged_functions_equal_the_image_at_o2() {
    check(&["-O2"]);
}

#[test]
fn unchanged_functions_equal_the_image_at_o2_without_plt() {
    check(&["-O2", "-fno-plt"]);
}

#[test]
fn unchanged_functions_equal_the_image_at_o2_pic() {
    check(&["-O2", "-fPIC"]);
}

#[test]
fn unchanged_functions_equal_the_image_without_pie() {
    check(&["-O2", "-no-pie", "-fno-pie"]);
}

#[test]
fn unchanged_functions_equal_the_image_at_o0() {
    check(&["-O0"]);
}

/// A generated file of 400 functions at -O1 (tests/fixtures/large), most of them 4 bytes:
/// without a baseline, an edit of one function swaps that function only.
#[test]
fn a_file_of_400_small_functions_swaps_only_the_edited_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let large = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/large");
    for name in ["gen.sh", "main.c"] {
        std::fs::copy(large.join(name), dir.path().join(name)).expect("copying the fixture");
    }
    run(Command::new("sh")
        .args([
            "-c",
            "sh gen.sh && cc -O1 -g -o app main.c unit00.c unit01.c unit02.c unit03.c \
             unit04.c unit05.c unit06.c unit07.c unit08.c unit09.c unit10.c unit11.c",
        ])
        .current_dir(dir.path()));
    let exe = module(&dir.path().join("app"), BIAS);
    let tu = exe
        .image
        .translation_units
        .iter()
        .position(|n| n == "unit03.c")
        .map(|i| TranslationUnitId(i as u32));
    let linker = Linker::new(
        image_model(exe, vec![module(&libc_path(), LIBC_BIAS)]),
        hot_link::Arenas {
            code: hot_link::RuntimeAddr(0x5555_0000_0000)..hot_link::RuntimeAddr(0x5555_0010_0000),
            data: hot_link::RuntimeAddr(0x5555_0010_0000)..hot_link::RuntimeAddr(0x5555_0020_0000),
        },
    );
    linker.prepare();
    let src = dir.path().join("unit03.c");
    let source = std::fs::read_to_string(&src).expect("reading unit03.c");
    std::fs::write(&src, source.replacen("s += i * 3;", "s += i * 5;", 1)).expect("editing");
    let obj = dir.path().join("unit03.o");
    run(Command::new("cc")
        .args(["-c", "-O1", "-I."])
        .args(PATCH_FLAGS)
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .current_dir(dir.path()));
    let object = parse_object(&obj);
    let request = LinkRequest {
        object: &object,
        baseline: None,
        unit: UnitRef {
            tu,
            compile_unit: None,
            source: "unit03.c".into(),
        },
        applied: &[],
    };
    let started = Instant::now();
    let patch = linker.link(&request).unwrap_or_else(|e| panic!("{e:#?}"));
    let elapsed = started.elapsed();
    assert_eq!(patch.swapped, vec!["unit03_edited".to_string()]);
    assert_eq!(patch.skipped, 401, "unit03_f0..f399 and unit03_sum");
    eprintln!(
        "unit03.c: 402 functions, 401 found equal to the image in {elapsed:?} ({:?} per function)",
        elapsed / 402
    );
}
