//! Which definition a name binds to in a program of several files, linked by the real
//! `cc` and GNU ld, gold or lld: hidden globals that the linker turned into locals (each
//! linker lists them elsewhere), weak defaults (functions and data) overridden by a strong
//! definition in another file, second definitions a relink would refuse, and named
//! read-only data updated in place (part of the atomic commit, reverted by undo; pointer
//! words expected as symbol + addend).

mod support;

use hot_link::{LinkError, LinkErrorCode, LinkRequest, Linker, NoteSeverity, Patch, UnitRef};
use hot_object::{Binding, Object, RelocKind, TranslationUnitId};
use support::*;

/// A running image linked from several files.
struct Program {
    dir: tempfile::TempDir,
    linker: Linker,
    bias: u64,
    cflags: Vec<String>,
    /// The object each file of the image was built from: the baseline of its first edit.
    built: Vec<(String, Object)>,
}

/// The static linker a program is built with: where each puts the hidden globals it makes
/// local differs (GNU ld: a nameless `STT_FILE` group; gold: the last file's group; lld: the
/// defining file's group, both LOCAL HIDDEN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ld {
    Gnu,
    Gold,
    Lld,
}

const LINKERS: [Ld; 3] = [Ld::Gnu, Ld::Gold, Ld::Lld];

/// Load bias of the shared library of [`program_with`].
const LIB_BIAS: u64 = 0x7fff_f7c0_0000;

fn program(files: &[(&str, &str)], cflags: &[&str]) -> Program {
    program_with(Ld::Gnu, files, cflags, None)
}

/// A program of `files` linked by `linker`, with `lib` (a C source) as a shared library
/// loaded at [`LIB_BIAS`] when given.
fn program_with(linker: Ld, files: &[(&str, &str)], cflags: &[&str], lib: Option<&str>) -> Program {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects: Vec<_> = files
        .iter()
        .map(|(name, text)| compile(dir.path(), name, text, cflags))
        .collect();
    let libs: Vec<_> = lib
        .map(|text| {
            let src = dir.path().join("lib.c");
            std::fs::write(&src, text).expect("writing lib.c");
            let so = dir.path().join("libx.so");
            run(std::process::Command::new("cc")
                .args(["-shared", "-fPIC", "-O0", "-nostdlib", "-o"])
                .arg(&so)
                .arg(&src));
            so
        })
        .into_iter()
        .collect();
    let pie = !cflags.contains(&"-fno-pie");
    let flags = [
        if pie { "-pie" } else { "-no-pie" },
        "--unresolved-symbols=ignore-all",
    ];
    let exe_path = match linker {
        Ld::Gnu => ld(dir.path(), &objects, &libs, &flags).exe,
        Ld::Gold | Ld::Lld => {
            let exe = dir.path().join("out");
            run(std::process::Command::new(if linker == Ld::Gold {
                "ld.gold"
            } else {
                "ld.lld"
            })
            .arg("-o")
            .arg(&exe)
            .args(&objects)
            .args(&libs)
            .args(["-e", "main"])
            .args(flags));
            exe
        }
    };
    let bias = if pie { BIAS } else { 0 };
    let exe = module(&exe_path, bias);
    let libs = libs.iter().map(|so| module(so, LIB_BIAS)).collect();
    let built = files
        .iter()
        .zip(&objects)
        .map(|((name, _), o)| (name.to_string(), parse_object(o)))
        .collect();
    Program {
        built,
        linker: Linker::new(
            image_model(exe, libs),
            if pie {
                arenas_below_image()
            } else {
                low_arenas()
            },
        ),
        dir,
        bias,
        cflags: cflags.iter().map(|s| s.to_string()).collect(),
    }
}

impl Program {
    /// The unit of `file` in the image: its `STT_FILE` group and its DWARF compile unit.
    fn unit(&self, file: &str) -> UnitRef {
        let image = &self.linker.image().exe.image;
        let tu = image
            .translation_units
            .iter()
            .position(|n| n == file)
            .map(|i| TranslationUnitId(i as u32));
        let compile_unit = image
            .compile_units
            .iter()
            .position(|cu| cu.name.ends_with(&format!("/{file}")) || cu.name == file);
        assert!(compile_unit.is_some(), "no compile unit for {file}");
        UnitRef {
            tu,
            compile_unit,
            source: file.to_string(),
        }
    }

    /// Compile a new version of `file` (same flags as the program); links compare it with
    /// the object the image was built from.
    fn compile(&self, version: &str, file: &str, text: &str) -> Object {
        let sub = self.dir.path().join(version);
        std::fs::create_dir_all(&sub).expect("mkdir");
        let flags: Vec<&str> = self.cflags.iter().map(String::as_str).collect();
        parse_object(&compile(&sub, file, text, &flags))
    }

    fn link(&self, file: &str, object: &Object) -> Patch {
        self.linker
            .link(&LinkRequest {
                object,
                baseline: self
                    .built
                    .iter()
                    .find(|(name, _)| name == file)
                    .map(|(_, o)| o),
                unit: self.unit(file),
                applied: &[],
            })
            .unwrap_or_else(|e| panic!("{e:#?}"))
    }

    /// The errors of linking `object` as the new version of `file`.
    fn link_errors(&self, file: &str, object: &Object) -> Vec<LinkError> {
        let baseline = self.built.iter().find(|(name, _)| name == file);
        match self.linker.link(&LinkRequest {
            object,
            baseline: baseline.map(|(_, o)| o),
            unit: self.unit(file),
            applied: &[],
        }) {
            Ok(patch) => panic!("{file}: linked, expected a refusal: {patch:#?}"),
            Err(errors) => errors,
        }
    }

    /// Runtime address of the image's definition of `name` in the STT_FILE group `group`
    /// ("" for the nameless one ld adds), or a global one when `group` is `None`. A local of
    /// a named group is that file's static (default visibility), not a hidden global that
    /// gold or lld listed there.
    fn symbol(&self, name: &str, group: Option<&str>) -> u64 {
        let image = &self.linker.image().exe.image;
        let s = image
            .symbols
            .iter()
            .find(|s| {
                s.name == name
                    && s.defined
                    && !s.dynamic
                    && match group {
                        Some(g) => {
                            s.tu.is_some_and(|tu| image.translation_units[tu.0 as usize] == g)
                                && (g.is_empty() || !s.visibility.is_hidden())
                        }
                        None => s.binding != Binding::Local,
                    }
            })
            .unwrap_or_else(|| panic!("no {name} in group {group:?}"));
        s.vaddr + self.bias
    }

    /// Runtime address of the hidden global `name`, wherever the linker put it: GLOBAL with
    /// hidden visibility, a local of GNU ld's nameless group, or a LOCAL HIDDEN (gold, lld).
    fn hidden(&self, name: &str) -> u64 {
        let image = &self.linker.image().exe.image;
        let s = image
            .symbols
            .iter()
            .find(|s| {
                s.name == name
                    && s.defined
                    && !s.dynamic
                    && (s.visibility.is_hidden()
                        || s.tu
                            .is_some_and(|tu| image.translation_units[tu.0 as usize].is_empty()))
            })
            .unwrap_or_else(|| panic!("no hidden {name}: {:?}", image.symbols));
        s.vaddr + self.bias
    }
}

/// Where the rel32 call or reference to `symbol` in `function`'s new body lands.
fn rel32_target(obj: &Object, patch: &Patch, function: &str, symbol: &str) -> u64 {
    let atom = (0..obj.atoms.len())
        .map(|i| hot_object::AtomId(i as u32))
        .find(|&a| {
            obj.primary_symbol(a)
                .is_some_and(|s| obj.symbol(s).name == function)
        })
        .expect("function atom");
    let body = patch
        .writes
        .iter()
        .find(|w| w.what == format!("body of {function}"))
        .unwrap_or_else(|| panic!("no body of {function}: {patch:#?}"));
    let reloc = obj
        .atom(atom)
        .relocs
        .iter()
        .find(|r| {
            obj.symbol_name(r.symbol) == symbol
                && matches!(r.kind, RelocKind::Pc32 | RelocKind::Plt32)
        })
        .unwrap_or_else(|| panic!("no rel32 reference to {symbol}"));
    let off = reloc.offset.0 as usize;
    let disp = i32::from_le_bytes(body.bytes[off..off + 4].try_into().expect("rel32"));
    (body.addr.0 as i64 + off as i64 + disp as i64 - reloc.addend) as u64
}

const HIDDEN_A: &str = r#"
__attribute__((visibility("hidden"))) int helper(int);
__attribute__((visibility("hidden"))) int use_c(int);
__attribute__((visibility("hidden"))) extern int hdata;
int main(void) { return helper(1) + use_c(2) + hdata; }
"#;
const HIDDEN_B: &str = r#"
__attribute__((visibility("hidden"))) int hdata = 5;
__attribute__((visibility("hidden"))) int helper(int x) { return x * 2; }
"#;
const HIDDEN_C: &str = r#"
__attribute__((noinline)) static int helper(int x) { return x * 3; }
__attribute__((visibility("hidden"))) int use_c(int x) { return helper(x); }
"#;

/// Whether `patch` redirects the stable entry at `entry`, in whichever form (a jump over
/// the entry, a short jump into padding or to a jump inside the old body).
fn redirects(patch: &hot_link::Patch, entry: u64) -> bool {
    patch.redirected_entries().any(|e| e.0 == entry)
}

#[test]
fn hidden_functions_resolve_and_swap_like_globals() {
    // c.c is the last file: gold lists b.c's hidden helper, made LOCAL HIDDEN, in c.c's group
    // next to c.c's own static helper.
    let rows = LINKERS
        .iter()
        .flat_map(|&ld| [(ld, &["-O0", "-fPIE"][..]), (ld, &["-O0", "-fno-pie"][..])]);
    for (ld, flags) in rows {
        let p = program_with(
            ld,
            &[("a.c", HIDDEN_A), ("b.c", HIDDEN_B), ("c.c", HIDDEN_C)],
            flags,
            None,
        );
        let image = &p.linker.image().exe.image;
        // What the linker made of b.c's hidden helper: GNU ld, a local of the nameless group
        // in a PIE (it is called from another file), a GLOBAL with hidden visibility
        // otherwise; gold and lld, a LOCAL HIDDEN in a file's group.
        let helper = p.hidden("helper");
        if ld == Ld::Gnu && flags.contains(&"-fPIE") {
            assert_eq!(helper, p.symbol("helper", Some("")));
        }
        let static_helper = p.symbol("helper", Some("c.c"));
        // Every message below names the row.
        let flags = &format!("{flags:?} {ld:?}");
        assert_ne!(helper, static_helper, "{:?}", image.translation_units);

        // (a) New code in a.c calls b.c's hidden helper: the running one, not c.c's static.
        let a2 = HIDDEN_A.replace("return helper(1)", "return helper(1) + helper(7)");
        let obj = p.compile("a2", "a.c", &a2);
        let patch = p.link("a.c", &obj);
        assert_eq!(patch.swapped, vec!["main".to_string()], "{flags:?}");
        assert_eq!(
            rel32_target(&obj, &patch, "main", "helper"),
            helper,
            "{flags:?}"
        );

        // (b) Editing b.c's hidden helper redirects its entry: a swap, not an addition.
        let b2 = HIDDEN_B.replace("x * 2", "x * 20");
        let obj = p.compile("b2", "b.c", &b2);
        let patch = p.link("b.c", &obj);
        assert_eq!(
            patch.swapped,
            vec!["helper".to_string()],
            "{flags:?} {patch:#?}"
        );
        assert!(!patch.added.contains(&"helper".to_string()), "{patch:#?}");
        assert!(
            redirects(&patch, helper),
            "{flags:?}: helper's entry {helper:#x} is not redirected: {:#?}",
            patch.entries
        );

        // Made `static` by the edit, it is still b.c's function (its code lies in b.c).
        let b3 = HIDDEN_B.replace(
            "__attribute__((visibility(\"hidden\"))) int helper",
            "__attribute__((used)) static int helper",
        );
        assert_ne!(b3, HIDDEN_B);
        let b3 = b3.replace("x * 2", "x * 30");
        let obj = p.compile("b3", "b.c", &b3);
        let patch = p.link("b.c", &obj);
        assert_eq!(
            patch.swapped,
            vec!["helper".to_string()],
            "{flags:?} {patch:#?}"
        );
        assert!(redirects(&patch, helper), "{patch:#?}");

        // Editing c.c's static helper redirects the static, never b.c's hidden one.
        let c2 = HIDDEN_C.replace("x * 3", "x * 30");
        let obj = p.compile("c2", "c.c", &c2);
        let patch = p.link("c.c", &obj);
        assert!(
            redirects(&patch, static_helper) && !redirects(&patch, helper),
            "{flags:?}: {:#?}",
            patch.entries
        );
    }
}

const WEAK: &str = r#"
__attribute__((weak)) int hook(void) { return 1; }
__attribute__((noinline)) int call_hook(void) { return hook() + 100; }
"#;
const STRONG: &str = r#"
int hook(void) { return 2; }
"#;
const WEAK_MAIN: &str = r#"
int call_hook(void);
int main(void) { return call_hook(); }
"#;

#[test]
fn an_overridden_weak_default_never_redirects_the_override() {
    for flags in [&["-O0", "-fPIE"][..], &["-O0", "-fno-pie"][..]] {
        let p = program(
            &[
                ("main.c", WEAK_MAIN),
                ("weak.c", WEAK),
                ("strong.c", STRONG),
            ],
            flags,
        );
        let hook = p.symbol("hook", None);
        // Saving weak.c with its default changed: nothing of the override moves.
        let w2 = WEAK.replace("return 1;", "return 10;");
        let obj = p.compile("w2", "weak.c", &w2);
        let patch = p.link("weak.c", &obj);
        assert!(patch.entries.is_empty(), "{flags:?}: {:#?}", patch.entries);
        assert!(
            patch.swapped.is_empty() && patch.added.is_empty(),
            "{patch:#?}"
        );
        let note = patch
            .notes
            .iter()
            .find(|n| n.code == "weak-overridden")
            .unwrap_or_else(|| panic!("no note: {:#?}", patch.notes));
        assert_eq!(note.severity, NoteSeverity::Information);
        assert!(note.message.contains("strong.c"), "{}", note.message);

        // A changed caller in weak.c calls the override, as the running program does.
        let w3 = WEAK.replace("+ 100", "+ 200");
        let obj = p.compile("w3", "weak.c", &w3);
        let patch = p.link("weak.c", &obj);
        assert_eq!(patch.swapped, vec!["call_hook".to_string()], "{patch:#?}");
        assert_eq!(rel32_target(&obj, &patch, "call_hook", "hook"), hook);
        assert!(!redirects(&patch, hook), "{:#?}", patch.entries);

        // Editing the override itself swaps it.
        let s2 = STRONG.replace("return 2;", "return 20;");
        let obj = p.compile("s2", "strong.c", &s2);
        let patch = p.link("strong.c", &obj);
        assert_eq!(patch.swapped, vec!["hook".to_string()], "{patch:#?}");
        assert!(redirects(&patch, hook), "{patch:#?}");
    }
}

#[test]
fn a_weak_default_nobody_overrides_is_swapped() {
    let p = program(
        &[("main.c", WEAK_MAIN), ("weak.c", WEAK)],
        &["-O0", "-fPIE"],
    );
    let hook = p.symbol("hook", None);
    let w2 = WEAK.replace("return 1;", "return 10;");
    let obj = p.compile("w2", "weak.c", &w2);
    let patch = p.link("weak.c", &obj);
    assert_eq!(patch.swapped, vec!["hook".to_string()], "{patch:#?}");
    assert!(redirects(&patch, hook), "{patch:#?}");
    assert!(patch.notes.is_empty(), "{:#?}", patch.notes);
}

const OTHER: &str = r#"
int other(void) { return 3; }
"#;

/// weak.c before an earlier save added its weak `hook` (then a new function with a stub).
const WEAK_LATER: &str = r#"
__attribute__((noinline)) int call_hook(void) { return 100; }
"#;

/// A strong `hook` added to main.c by a save takes over the entry of weak.c's weak default,
/// as a relink would: the image's entry, or the stub of a weak default an earlier save of
/// weak.c added. The linker remembers whose definition the entry runs: later saves of weak.c
/// leave it alone (and say who owns it), a strong `hook` saved in a third file is a multiple
/// definition, main.c's own next save swaps it again, and undoing the takeover gives the
/// entry back to weak.c.
#[test]
fn a_strong_definition_added_by_a_save_keeps_the_weak_entry() {
    let flag_sets = [&["-O0", "-fPIE"][..], &["-O0", "-fno-pie"][..]];
    for (flags, in_image) in flag_sets.into_iter().flat_map(|f| [(f, true), (f, false)]) {
        let weak_v1 = if in_image { WEAK } else { WEAK_LATER };
        let mut p = program(
            &[
                ("main.c", WEAK_MAIN),
                ("weak.c", weak_v1),
                ("other.c", OTHER),
            ],
            flags,
        );
        // The object of weak.c's last save: the baseline of its next one.
        let mut weak_saved = None;
        let hook = if in_image {
            p.symbol("hook", None)
        } else {
            // An earlier save of weak.c adds the weak default: a new function with a stub.
            let obj = p.compile("w1", "weak.c", WEAK);
            let patch = p.link("weak.c", &obj);
            assert_eq!(patch.added, vec!["hook".to_string()], "{patch:#?}");
            p.linker.commit(&patch);
            weak_saved = Some(obj);
            hook_stub(&patch)
                .unwrap_or_else(|| panic!("no stub: {patch:#?}"))
                .addr
                .0
        };
        let link_weak = |p: &Program, obj: &Object| match &weak_saved {
            None => p.link("weak.c", obj),
            Some(baseline) => p
                .linker
                .link(&LinkRequest {
                    object: obj,
                    baseline: Some(baseline),
                    unit: p.unit("weak.c"),
                    applied: &[],
                })
                .unwrap_or_else(|e| panic!("{e:#?}")),
        };
        let flags = (flags, in_image);
        let with_hook = |ret: &str| format!("{WEAK_MAIN}int hook(void) {{ return {ret}; }}\n");
        let m2 = p.compile("m2", "main.c", &with_hook("2"));
        let takeover = p.link("main.c", &m2);
        assert_eq!(
            takeover.swapped,
            vec!["hook".to_string()],
            "{flags:?}: {takeover:#?}"
        );
        assert!(redirects(&takeover, hook), "{takeover:#?}");
        p.linker.commit(&takeover);

        // weak.c's default edited: not what runs at the entry any more.
        let w2 = WEAK.replace("return 1;", "return 10;");
        let obj = p.compile("w2", "weak.c", &w2);
        let patch = link_weak(&p, &obj);
        assert!(patch.entries.is_empty(), "{flags:?}: {:#?}", patch.entries);
        assert!(patch.swapped.is_empty(), "{patch:#?}");
        let note = patch
            .notes
            .iter()
            .find(|n| n.code == "weak-overridden")
            .unwrap_or_else(|| panic!("no note: {:#?}", patch.notes));
        assert!(note.message.contains("main.c"), "{}", note.message);

        // A changed caller in weak.c calls the stable entry, i.e. main.c's `hook`.
        let w3 = WEAK.replace("+ 100", "+ 200");
        let obj = p.compile("w3", "weak.c", &w3);
        let patch = link_weak(&p, &obj);
        assert_eq!(patch.swapped, vec!["call_hook".to_string()], "{patch:#?}");
        assert_eq!(rel32_target(&obj, &patch, "call_hook", "hook"), hook);
        assert!(!redirects(&patch, hook), "{patch:#?}");

        // A second strong `hook`, in other.c: refused, the entry stays main.c's.
        let o2 = format!("{OTHER}int hook(void) {{ return 4; }}\n");
        let obj = p.compile("o2", "other.c", &o2);
        let errors = p.link_errors("other.c", &obj);
        assert!(
            errors
                .iter()
                .any(|e| e.code == LinkErrorCode::MultipleDefinition
                    && e.message.contains("main.c")
                    && e.message.contains("other.c")),
            "{errors:#?}"
        );

        // main.c's own definition edited again: swapped at the same entry.
        let m3 = p.compile("m3", "main.c", &with_hook("3"));
        let patch = p.linker.link(&LinkRequest {
            object: &m3,
            baseline: Some(&m2),
            unit: p.unit("main.c"),
            applied: &[],
        });
        let patch = patch.unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(patch.swapped, vec!["hook".to_string()], "{patch:#?}");
        assert!(redirects(&patch, hook), "{patch:#?}");

        // Undo of the takeover: the entry is weak.c's again, and its edit is swapped in.
        assert!(p.linker.revert_last().is_some());
        let obj = p.compile("w4", "weak.c", &w2);
        let patch = link_weak(&p, &obj);
        assert_eq!(
            patch.swapped,
            vec!["hook".to_string()],
            "{flags:?}: {patch:#?}"
        );
        assert!(redirects(&patch, hook), "{patch:#?}");
        assert!(patch.notes.is_empty(), "{:#?}", patch.notes);
    }
}

/// Each write of `writes` as (address, bytes expected, bytes written), sorted by address.
/// The patch's write of the entry stub of a new `hook` (a function a save added).
fn hook_stub(patch: &Patch) -> Option<&hot_link::PatchWrite> {
    patch.writes.iter().find(|w| w.what == "entry stub of hook")
}

fn write_triples(writes: &[hot_link::EntryWrite]) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = writes
        .iter()
        .map(|w| (w.addr.0, w.expected.clone(), w.bytes.clone()))
        .collect();
    out.sort();
    out
}

/// A strong `hook` that a save added to main.c over weak.c's default (the image's, or the
/// stub of one an earlier save added), deleted by a later save: the entry runs the default
/// again, as after a relink — the takeover's jump bytes exactly undone — and is weak.c's to
/// edit; undo of the deletion puts the takeover's jump back; a strong `hook` saved again
/// takes the entry over again.
#[test]
fn deleting_a_strong_definition_a_save_added_gives_the_entry_back_to_the_weak_default() {
    let flag_sets = [&["-O0", "-fPIE"][..], &["-O0", "-fno-pie"][..]];
    for (flags, in_image) in flag_sets.into_iter().flat_map(|f| [(f, true), (f, false)]) {
        let weak_v1 = if in_image { WEAK } else { WEAK_LATER };
        let mut p = program(&[("main.c", WEAK_MAIN), ("weak.c", weak_v1)], flags);
        let row = (flags, in_image);
        let mut weak_saved = None;
        let hook = if in_image {
            p.symbol("hook", None)
        } else {
            let obj = p.compile("w1", "weak.c", WEAK);
            let patch = p.link("weak.c", &obj);
            p.linker.commit(&patch);
            weak_saved = Some(obj);
            hook_stub(&patch)
                .unwrap_or_else(|| panic!("no stub: {patch:#?}"))
                .addr
                .0
        };
        let weak_body = p.linker.entry_targets(None).get(&hook).copied();
        let link_main = |p: &Program, obj: &Object, baseline: &Object| {
            p.linker
                .link(&LinkRequest {
                    object: obj,
                    baseline: Some(baseline),
                    unit: p.unit("main.c"),
                    applied: &[],
                })
                .unwrap_or_else(|e| panic!("{row:?}: {e:#?}"))
        };
        let with_hook = |ret: &str| format!("{WEAK_MAIN}int hook(void) {{ return {ret}; }}\n");
        let m2 = p.compile("m2", "main.c", &with_hook("2"));
        let takeover = p.link("main.c", &m2);
        assert!(redirects(&takeover, hook), "{row:?}: {takeover:#?}");
        p.linker.commit(&takeover);

        // Deleted: the takeover's writes, inverted.
        let m3 = p.compile("m3", "main.c", WEAK_MAIN);
        let deletion = link_main(&p, &m3, &m2);
        assert_eq!(deletion.swapped, ["hook"], "{row:?}: {deletion:#?}");
        let inverted: Vec<_> = write_triples(&takeover.entries)
            .into_iter()
            .map(|(at, expected, bytes)| (at, bytes, expected))
            .collect();
        assert_eq!(write_triples(&deletion.entries), inverted, "{row:?}");
        assert_eq!(
            p.linker.entry_targets(Some(&deletion)).get(&hook).copied(),
            weak_body,
            "{row:?}"
        );
        p.linker.commit(&deletion);

        // Undo of the deletion writes the takeover's jump again, and main.c runs again.
        let revert = p.linker.revert_plan().expect("a patch to revert");
        assert_eq!(
            write_triples(&revert.entries),
            write_triples(&takeover.entries),
            "{row:?}"
        );
        p.linker.revert_last();
        let deletion = link_main(&p, &m3, &m2);
        assert_eq!(write_triples(&deletion.entries), inverted, "{row:?}");
        p.linker.commit(&deletion);

        // weak.c's default is the one in use: its edit swaps, with no weak-overridden note.
        let w2 = WEAK.replace("return 1;", "return 10;");
        let obj = p.compile("w2", "weak.c", &w2);
        let patch = p
            .linker
            .link(&LinkRequest {
                object: &obj,
                baseline: Some(weak_saved.as_ref().unwrap_or_else(|| {
                    &p.built
                        .iter()
                        .find(|(n, _)| n == "weak.c")
                        .expect("weak.c")
                        .1
                })),
                unit: p.unit("weak.c"),
                applied: &[],
            })
            .unwrap_or_else(|e| panic!("{row:?}: {e:#?}"));
        assert_eq!(patch.swapped, ["hook"], "{row:?}: {patch:#?}");
        assert!(patch.notes.is_empty(), "{row:?}: {:#?}", patch.notes);
        p.linker.commit(&patch);

        // A strong `hook` saved again takes it over again.
        let m4 = p.compile("m4", "main.c", &with_hook("3"));
        let patch = link_main(&p, &m4, &m3);
        assert_eq!(patch.swapped, ["hook"], "{row:?}: {patch:#?}");
        assert!(redirects(&patch, hook), "{row:?}: {patch:#?}");
    }
}

/// Review repro (1b8d697): weak.c's default edited while a strong `hook` a save added to
/// main.c overrides it (the image's default untouched, one a save redirected the entry to,
/// or the stub of one a save added): the edit is placed where nothing reaches it, with no
/// entry written, and the override remembers it, so deleting the override runs the default
/// as weak.c has it now, as a relink would, not the body it had when overridden. Undo of the
/// edit makes the override remember the earlier default again.
#[test]
fn a_weak_default_edited_while_overridden_runs_once_the_override_is_deleted() {
    let flag_sets = [&["-O0", "-fPIE"][..], &["-O0", "-fno-pie"][..]];
    let starts = [(true, false), (true, true), (false, false)];
    for (flags, (in_image, redirected)) in flag_sets
        .into_iter()
        .flat_map(|f| starts.into_iter().map(move |s| (f, s)))
    {
        let weak_v1 = if in_image { WEAK } else { WEAK_LATER };
        let mut p = program(&[("main.c", WEAK_MAIN), ("weak.c", weak_v1)], flags);
        let row = (flags, in_image, redirected);
        let built_weak = p
            .built
            .iter()
            .find(|(n, _)| n == "weak.c")
            .expect("weak.c")
            .1
            .clone();
        let link = |p: &Program, file: &str, obj: &Object, baseline: &Object| {
            p.linker
                .link(&LinkRequest {
                    object: obj,
                    baseline: Some(baseline),
                    unit: p.unit(file),
                    applied: &[],
                })
                .unwrap_or_else(|e| panic!("{row:?}: {e:#?}"))
        };
        // The object of weak.c's last save: the baseline of its next one.
        let mut weak_saved = built_weak.clone();
        let hook = if in_image {
            p.symbol("hook", None)
        } else {
            let obj = p.compile("w1", "weak.c", WEAK);
            let patch = p.link("weak.c", &obj);
            p.linker.commit(&patch);
            weak_saved = obj;
            hook_stub(&patch)
                .unwrap_or_else(|| panic!("no stub: {patch:#?}"))
                .addr
                .0
        };
        if redirected {
            let obj = p.compile("w1", "weak.c", &WEAK.replace("return 1;", "return 5;"));
            let patch = link(&p, "weak.c", &obj, &weak_saved);
            assert_eq!(patch.swapped, ["hook"], "{row:?}: {patch:#?}");
            p.linker.commit(&patch);
            weak_saved = obj;
        }
        let default_before = p.linker.entry_targets(None).get(&hook).copied();
        let with_hook = |ret: &str| format!("{WEAK_MAIN}int hook(void) {{ return {ret}; }}\n");
        let m2 = p.compile("m2", "main.c", &with_hook("2"));
        let takeover = p.link("main.c", &m2);
        assert!(redirects(&takeover, hook), "{row:?}: {takeover:#?}");
        p.linker.commit(&takeover);

        // Edited while overridden: placed, no entry written, the note as before.
        let w2 = p.compile("w2", "weak.c", &WEAK.replace("return 1;", "return 10;"));
        let edit = link(&p, "weak.c", &w2, &weak_saved);
        assert!(edit.entries.is_empty(), "{row:?}: {:#?}", edit.entries);
        assert!(edit.swapped.is_empty(), "{row:?}: {edit:#?}");
        assert!(
            edit.notes.iter().any(|n| n.code == "weak-overridden"),
            "{row:?}: {:#?}",
            edit.notes
        );
        let placed = edit
            .bodies
            .iter()
            .find(|b| b.name == "hook")
            .unwrap_or_else(|| panic!("{row:?}: the edited default is not placed: {edit:#?}"))
            .addr
            .0;
        assert_eq!(
            p.linker.entry_targets(Some(&edit)).get(&hook).copied(),
            p.linker.entry_targets(None).get(&hook).copied(),
            "{row:?}: the override's entry moved"
        );
        p.linker.commit(&edit);

        // The override deleted: the entry runs the edited default.
        let m3 = p.compile("m3", "main.c", WEAK_MAIN);
        let deletion = link(&p, "main.c", &m3, &m2);
        assert_eq!(deletion.swapped, ["hook"], "{row:?}: {deletion:#?}");
        assert_eq!(
            p.linker.entry_targets(Some(&deletion)).get(&hook).copied(),
            Some(placed),
            "{row:?}: the default as it was when overridden runs"
        );
        p.linker.commit(&deletion);
        // It is weak.c's: its next edit swaps, diffed against the edited default.
        let w3 = p.compile("w3", "weak.c", &WEAK.replace("return 1;", "return 20;"));
        let patch = link(&p, "weak.c", &w3, &w2);
        assert_eq!(patch.swapped, ["hook"], "{row:?}: {patch:#?}");
        assert!(patch.notes.is_empty(), "{row:?}: {:#?}", patch.notes);

        // Undo of the deletion and of the edit: deleting again runs the earlier default.
        assert!(p.linker.revert_last().is_some());
        assert!(p.linker.revert_last().is_some());
        let deletion = link(&p, "main.c", &m3, &m2);
        assert_eq!(deletion.swapped, ["hook"], "{row:?}: {deletion:#?}");
        assert_eq!(
            p.linker.entry_targets(Some(&deletion)).get(&hook).copied(),
            default_before,
            "{row:?}: after undo of the edit"
        );
    }
}

/// A weak data default of weak.c overridden by strong.c, and the edit saved in weak.c:
/// (name, weak.c's definition, strong.c, the edit, how weak.c's `get` reads it).
type WeakData = (
    &'static str,
    &'static str,
    &'static str,
    (&'static str, &'static str),
    &'static str,
);

const WEAK_DATA: &[WeakData] = &[
    // A const table: in use, it would be updated in place.
    (
        "table",
        "__attribute__((weak)) const int table[4] = {1, 2, 3, 4};",
        "const int table[4] = {100, 200, 300, 400};",
        ("{1, 2, 3, 4}", "{5, 6, 7, 8}"),
        "table[i & 3]",
    ),
    // An override of another size: references bind to it all the same (no layout-changed).
    (
        "table",
        "__attribute__((weak)) const int table[4] = {1, 2, 3, 4};",
        "const int table[8] = {100, 200, 300, 400, 500, 600, 700, 800};",
        ("{1, 2, 3, 4}", "{5, 6, 7, 8}"),
        "table[i & 3]",
    ),
    // Writable data is never written; the note says the override is in use, not that an
    // initializer was left out.
    (
        "counter",
        "__attribute__((weak)) int counter = 1;",
        "int counter = 2;",
        ("= 1;", "= 5;"),
        "counter + i",
    ),
];

const GET_MAIN: &str = r#"
int get(int);
int main(void) { return get(1); }
"#;

fn weak_data_file(decl: &str, read: &str) -> String {
    format!("{decl}\n__attribute__((noinline)) int get(int i) {{ return {read}; }}\n")
}

#[test]
fn an_overridden_weak_data_default_is_never_written_and_binds_to_the_override() {
    let rows = WEAK_DATA.iter().flat_map(|row| {
        [
            (row, &["-O0", "-fPIE"][..]),
            (row, &["-O0", "-fno-pie"][..]),
        ]
    });
    for (&(name, decl, strong, (from, to), read), flags) in rows {
        let weak = weak_data_file(decl, read);
        let p = program(
            &[
                ("main.c", GET_MAIN),
                ("weak.c", &weak),
                ("strong.c", strong),
            ],
            flags,
        );
        let over = p.symbol(name, None);
        let row = format!("{name} {strong:?} {flags:?}");

        // The default's new value is not what the program uses: nothing is written.
        let w2 = weak.replace(from, to);
        assert_ne!(w2, weak);
        let obj = p.compile("w2", "weak.c", &w2);
        let patch = p.link("weak.c", &obj);
        assert!(
            !patch.in_place.iter().any(|w| w.addr.0 == over)
                && !patch.writes.iter().any(|w| w.addr.0 == over),
            "{row}: the default's bytes are written over the override: {patch:#?}"
        );
        assert!(
            patch.entries.is_empty() && patch.swapped.is_empty() && patch.added.is_empty(),
            "{row}: {patch:#?}"
        );
        let [note] = patch.notes.as_slice() else {
            panic!("{row}: one note expected: {:#?}", patch.notes);
        };
        assert_eq!(
            (note.code, note.severity, note.symbol.as_deref()),
            ("weak-overridden", NoteSeverity::Information, Some(name)),
            "{row}"
        );
        assert!(note.message.contains("strong.c"), "{row}: {}", note.message);
        assert!(note.line.is_some(), "{row}: {note:#?}");

        // New code of weak.c reads the override, as the running program does.
        let w3 = weak.replace(read, &format!("{read} + 1"));
        let obj = p.compile("w3", "weak.c", &w3);
        let patch = p.link("weak.c", &obj);
        assert_eq!(patch.swapped, vec!["get".to_string()], "{row}: {patch:#?}");
        assert!(patch.notes.is_empty(), "{row}: {:#?}", patch.notes);
        if flags.contains(&"-fPIE") {
            assert_eq!(rel32_target(&obj, &patch, "get", name), over, "{row}");
        }
    }
}

#[test]
fn a_weak_const_default_nobody_overrides_is_updated_in_place() {
    let (name, decl, _, (from, to), read) = WEAK_DATA[0];
    let weak = weak_data_file(decl, read);
    let p = program(
        &[("main.c", GET_MAIN), ("weak.c", &weak)],
        &["-O0", "-fPIE"],
    );
    let table = p.symbol(name, None);
    let obj = p.compile("w2", "weak.c", &weak.replace(from, to));
    let patch = p.link("weak.c", &obj);
    let ints = |v: &[i32]| v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>();
    let w = patch
        .in_place
        .iter()
        .find(|w| w.addr.0 == table)
        .unwrap_or_else(|| panic!("{name} not updated in place: {patch:#?}"));
    assert_eq!(
        (w.expected.clone(), w.bytes.clone()),
        (ints(&[1, 2, 3, 4]), ints(&[5, 6, 7, 8]))
    );
    assert!(patch.notes.is_empty(), "{:#?}", patch.notes);
}

const DUP_A: &str = r#"
__attribute__((noinline)) static int helper(int x) { return x + 1; }
int use_a(int x) { return helper(x); }
"#;
const DUP_B: &str = r#"
__attribute__((noinline)) int helper(int x) { return x * 2; }
int use_a(int);
int main(void) { return helper(1) + use_a(2); }
"#;

#[test]
fn a_second_strong_definition_of_another_files_function_is_refused() {
    // (linker, flags): with -fvisibility=hidden b.c's helper is a hidden global, made LOCAL
    // by every linker; a.c's edit makes a hidden global of its static.
    let mut rows = vec![
        (Ld::Gnu, &["-O0", "-fPIE"][..]),
        (Ld::Gnu, &["-O0", "-fno-pie"][..]),
    ];
    for ld in LINKERS {
        rows.push((ld, &["-O0", "-fPIE", "-fvisibility=hidden"][..]));
    }
    for (ld, flags) in rows {
        let row = format!("{ld:?} {flags:?}");
        let p = program_with(ld, &[("a.c", DUP_A), ("b.c", DUP_B)], flags, None);
        let static_helper = p.symbol("helper", Some("a.c"));

        // An edit of a.c's static swaps the static only.
        let a2 = DUP_A.replace("x + 1", "x + 2");
        let obj = p.compile("a2", "a.c", &a2);
        let patch = p.link("a.c", &obj);
        assert_eq!(
            patch.swapped,
            vec!["helper".to_string()],
            "{row}: {patch:#?}"
        );
        let [entry] = patch.entries.as_slice() else {
            panic!("{row}: {:#?}", patch.entries);
        };
        assert_eq!(entry.addr.0, static_helper, "{row}");

        // Deleting `static`: a real link fails with "multiple definition"; the patch would
        // have sent b.c's callers into a.c's body.
        let a3 = DUP_A
            .replace("static int helper", "int helper")
            .replace("x + 1", "x + 1000");
        let obj = p.compile("a3", "a.c", &a3);
        assert_multiple_definition(&p.link_errors("a.c", &obj), "helper", "b.c", &row);
    }
}

/// `errors` refuse `name` as a second definition of what `other` defines, on a source line.
fn assert_multiple_definition(errors: &[LinkError], name: &str, other: &str, row: &str) {
    let e = errors
        .iter()
        .find(|e| e.code == LinkErrorCode::MultipleDefinition)
        .unwrap_or_else(|| panic!("{row}: {errors:#?}"));
    assert_eq!(e.symbol.as_deref(), Some(name), "{row}");
    assert!(
        e.message.contains(other) && e.message.contains("multiple definition"),
        "{row}: {}",
        e.message
    );
    assert!(e.line.is_some(), "{row}: {e:#?}");
    assert_eq!(e.code.diagnostic_code(), "layout-changed");
}

/// Variables made global by deleting `static` while b.c defines one of that name: (name,
/// a.c, b.c). Bound to b.c's, a.c's code would silently share b.c's state.
const DUP_DATA: &[(&str, &str, &str)] = &[
    (
        "counter",
        "static int counter = 1;\nint use_a(void) { return counter++; }\n",
        "int counter = 2;\nint use_a(void);\nint main(void) { return counter + use_a(); }\n",
    ),
    (
        "limit",
        "static const int limit[2] = {1, 2};\nint use_a(int i) { return limit[i & 1]; }\n",
        "const int limit[2] = {3, 4};\nint use_a(int);\nint main(void) { return limit[0] + use_a(1); }\n",
    ),
];

#[test]
fn a_second_definition_of_another_files_variable_is_refused() {
    for &(name, a, b) in DUP_DATA {
        for flags in [&["-O0", "-fPIE"][..], &["-O0", "-fno-pie"][..]] {
            let row = format!("{name} {flags:?}");
            let p = program(&[("a.c", a), ("b.c", b)], flags);
            let a2 = a.replacen("static ", "", 1);
            let obj = p.compile("a2", "a.c", &a2);
            assert_multiple_definition(&p.link_errors("a.c", &obj), name, "b.c", &row);
        }
    }
}

const INLINE_A: &str = r#"
int use_a(int x) { return x + 1; }
"#;
const INLINE_B: &str = r#"
inline int shared = 3;
int use_a(int);
int main() { return shared + use_a(1); }
"#;

#[test]
fn a_cxx_inline_variable_another_file_defines_too_is_no_multiple_definition() {
    // C++ inline variables live in COMDAT groups (`STB_GNU_UNIQUE`): every file that uses
    // one defines it and the linker keeps one copy, here b.cpp's.
    let p = program(
        &[("a.cpp", INLINE_A), ("b.cpp", INLINE_B)],
        &["-O0", "-fPIE", "-std=c++17"],
    );
    let shared = p.symbol("shared", None);
    let a2 = format!(
        "inline int shared = 3;\n{}",
        INLINE_A.replace("x + 1", "x + shared")
    );
    let obj = p.compile("a2", "a.cpp", &a2);
    let patch = p.link("a.cpp", &obj);
    assert!(
        patch.swapped.iter().any(|f| f.contains("use_a")),
        "{patch:#?}"
    );
    assert!(
        !patch.writes.iter().any(|w| w.addr.0 == shared),
        "{patch:#?}"
    );
}

const NEW_STRONG_MAIN: &str = r#"
int call_hook(void);
int main(void) { return call_hook(); }
"#;

#[test]
fn a_new_strong_definition_replaces_a_weak_default_of_another_file() {
    // After a relink the strong definition wins over weak.c's default: redirecting the
    // default's entry to it is what the program would run.
    for flags in [&["-O0", "-fPIE"][..], &["-O0", "-fno-pie"][..]] {
        let p = program(&[("main.c", NEW_STRONG_MAIN), ("weak.c", WEAK)], flags);
        let hook = p.symbol("hook", None);
        let m2 = format!("{NEW_STRONG_MAIN}int hook(void) {{ return 3; }}\n");
        let obj = p.compile("m2", "main.c", &m2);
        let patch = p.link("main.c", &obj);
        assert!(
            redirects(&patch, hook),
            "{flags:?}: weak.c's hook {hook:#x} is not redirected: {patch:#?}"
        );
        assert!(patch.swapped.contains(&"hook".to_string()), "{patch:#?}");
        assert!(patch.notes.is_empty(), "{:#?}", patch.notes);
    }
}

const ADDEND_LIB: &str = "int arr[4] = {1, 2, 3, 4};\n";
const ADDEND_MAIN: &str = r#"
extern int arr[4];
int *const where[2] = {&arr[0], &arr[2]};
__attribute__((noinline)) int pick(int i) { return *where[i & 1]; }
int main(void) { return pick(0); }
"#;

#[test]
fn in_place_pointers_with_an_addend_expect_symbol_plus_addend() {
    // In a PIE, `where` holds R_X86_64_64 words of `arr` and `arr + 8` (arr is the
    // library's); in a non-PIE, arr is copied into the executable (R_X86_64_COPY) and the
    // words are fixed at link time.
    for flags in [&["-O0", "-fPIE"][..], &["-O0", "-fno-pie"][..]] {
        let p = program_with(Ld::Gnu, &[("main.c", ADDEND_MAIN)], flags, Some(ADDEND_LIB));
        let model = p.linker.image();
        let arr = if flags.contains(&"-fPIE") {
            let lib = &model.libs[0];
            let s = lib
                .image
                .symbols
                .iter()
                .find(|s| s.name == "arr" && s.dynamic && s.defined)
                .expect("the library's arr");
            assert!(
                model
                    .exe
                    .image
                    .got_slots
                    .iter()
                    .any(|g| g.symbol == "arr" && g.addend == 8),
                "{:?}",
                model.exe.image.got_slots
            );
            lib.bias + s.vaddr
        } else {
            p.symbol("arr", None)
        };
        let where_ = p.symbol("where", None);
        let words = |v: &[u64]| v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>();
        let v2 = ADDEND_MAIN.replace("{&arr[0], &arr[2]}", "{&arr[2], &arr[0]}");
        let obj = p.compile("v2", "main.c", &v2);
        let patch = p.link("main.c", &obj);
        let w = patch
            .in_place
            .iter()
            .find(|w| w.addr.0 == where_)
            .unwrap_or_else(|| panic!("{flags:?}: where not updated in place: {patch:#?}"));
        assert_eq!(w.expected, words(&[arr, arr + 8]), "{flags:?}");
        assert_eq!(w.bytes, words(&[arr + 8, arr]), "{flags:?}");
    }
}

const POINTERS: &str = r#"
int first = 1, second = 2;
int *const order[2] = {&first, &second};
const int limits[3] = {1, 2, 3};
__attribute__((noinline)) int pick(int i) { return *order[i & 1] + limits[i % 3]; }
int main(void) { return pick(0); }
"#;

#[test]
fn in_place_updates_are_commit_writes_with_expected_bytes_and_undo_restores_them() {
    let mut p = program(&[("main.c", POINTERS)], &["-O0", "-fPIE"]);
    let first = p.symbol("first", None);
    let second = p.symbol("second", None);
    let order = p.symbol("order", None);
    let limits = p.symbol("limits", None);
    let words = |v: &[u64]| v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>();
    let ints = |v: &[i32]| v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>();

    // A table of pointers in .data.rel.ro: what it holds at run time is the image's
    // addresses moved by the load bias (ld's RELATIVE relocations).
    let v2 = POINTERS.replace("{&first, &second}", "{&second, &first}");
    let obj = p.compile("v2", "main.c", &v2);
    let patch = p.link("main.c", &obj);
    assert!(
        !patch.writes.iter().any(|w| w.addr.0 == order),
        "{patch:#?}"
    );
    let w = patch
        .in_place
        .iter()
        .find(|w| w.addr.0 == order)
        .unwrap_or_else(|| panic!("order not updated in place: {patch:#?}"));
    assert_eq!(w.expected, words(&[first, second]));
    assert_eq!(w.bytes, words(&[second, first]));
    p.linker.commit(&patch);

    // The next update expects what the last one wrote.
    let v3 = v2.replace("{1, 2, 3}", "{7, 8, 9}");
    let obj = p.compile("v3", "main.c", &v3);
    let patch = p.link("main.c", &obj);
    assert!(
        !patch.in_place.iter().any(|w| w.addr.0 == order),
        "order did not change again: {:#?}",
        patch.in_place
    );
    let w = patch
        .in_place
        .iter()
        .find(|w| w.addr.0 == limits)
        .expect("limits updated in place");
    assert_eq!(
        (w.expected.clone(), w.bytes.clone()),
        (ints(&[1, 2, 3]), ints(&[7, 8, 9]))
    );
    p.linker.commit(&patch);

    // Undo puts back what each patch replaced, newest first, checking what is there.
    let revert = p.linker.revert_plan().expect("a patch to revert");
    let revert: Vec<_> = revert.writes().collect();
    let w = revert
        .iter()
        .find(|w| w.addr.0 == limits)
        .unwrap_or_else(|| panic!("limits not reverted: {revert:#?}"));
    assert_eq!(
        (w.expected.clone(), w.bytes.clone()),
        (ints(&[7, 8, 9]), ints(&[1, 2, 3]))
    );
    p.linker.revert_last();
    let revert = p.linker.revert_plan().expect("the first patch");
    let revert: Vec<_> = revert.writes().collect();
    let w = revert
        .iter()
        .find(|w| w.addr.0 == order)
        .unwrap_or_else(|| panic!("order not reverted: {revert:#?}"));
    assert_eq!(w.expected, words(&[second, first]));
    assert_eq!(w.bytes, words(&[first, second]));
    p.linker.revert_last();

    // After undo, a new link expects the original contents again.
    let obj = p.compile("v4", "main.c", &v3);
    let patch = p.link("main.c", &obj);
    let w = patch
        .in_place
        .iter()
        .find(|w| w.addr.0 == limits)
        .expect("limits");
    assert_eq!(w.expected, ints(&[1, 2, 3]));
}

#[test]
fn a_new_function_undone_and_linked_again_is_redirected_from_its_undone_body() {
    let v1 = "int main(void) { return 1; }\n";
    let mut p = program(&[("main.c", v1)], &["-O0"]);
    let v2 = "int helper(void) { return 2; }\nint main(void) { return helper(); }\n";
    let patch = p.link("main.c", &p.compile("v2", "main.c", v2));
    assert!(patch.added.iter().any(|n| n == "helper"), "{patch:#?}");
    let stub = patch
        .writes
        .iter()
        .find(|w| w.what == "entry stub of helper")
        .unwrap_or_else(|| panic!("no stub for helper: {patch:#?}"))
        .clone();
    p.linker.commit(&patch);
    // Undo reverts main's entry; the stub is left as it is (nothing reaches it).
    let revert = p.linker.revert_last().expect("a patch to revert");
    assert!(!revert.writes().any(|w| w.addr == stub.addr), "{revert:#?}");
    // Linked again, the stub is redirected from the jump it still holds.
    let v3 = v2.replace("return 2;", "return 3;");
    let again = p.link("main.c", &p.compile("v3", "main.c", &v3));
    let entry = again
        .entries
        .iter()
        .find(|e| e.addr == stub.addr)
        .unwrap_or_else(|| panic!("the stub of helper is not redirected: {again:#?}"));
    assert_eq!(entry.expected, stub.bytes[..entry.expected.len()]);
    assert_ne!(entry.bytes, entry.expected);
}

#[test]
fn a_new_units_constructors_are_listed_in_startup_order_at_their_new_bodies() {
    let p = program(&[("main.c", "int main(void) { return 0; }\n")], &["-O0"]);
    let extra = "int built;\n\
        __attribute__((constructor)) static void second(void) { built = built * 10 + 2; }\n\
        __attribute__((constructor(101))) static void first(void) { built = 1; }\n\
        int value(void) { return built; }\n";
    let obj = p.compile("new", "extra.c", extra);
    // A file the image does not contain: no STT_FILE group, no compile unit.
    let patch = p
        .linker
        .link(&LinkRequest {
            object: &obj,
            baseline: None,
            unit: UnitRef {
                tu: None,
                compile_unit: None,
                source: "extra.c".to_string(),
            },
            applied: &[],
        })
        .unwrap_or_else(|e| panic!("{e:#?}"));
    let listed: Vec<(&str, &str)> = patch
        .constructors
        .iter()
        .map(|c| (c.function.as_str(), c.unit.as_str()))
        .collect();
    assert_eq!(listed, [("first", "extra.c"), ("second", "extra.c")]);
    for c in &patch.constructors {
        let body = patch
            .bodies
            .iter()
            .find(|b| b.name == c.function)
            .unwrap_or_else(|| panic!("no body of {}: {patch:#?}", c.function));
        assert_eq!(c.addr, body.addr, "{}", c.function);
    }
    // An edit of a unit of the image lists none of its constructors unless they changed.
    let again = p.link(
        "main.c",
        &p.compile("v2", "main.c", "int main(void) { return 1; }\n"),
    );
    assert!(again.constructors.is_empty(), "{again:#?}");
}

/// The atom of the function `name` in `obj`.
fn atom_named(obj: &Object, name: &str) -> hot_object::AtomId {
    (0..obj.atoms.len())
        .map(|i| hot_object::AtomId(i as u32))
        .find(|&a| {
            obj.primary_symbol(a)
                .is_some_and(|s| obj.symbol(s).name == name)
        })
        .unwrap_or_else(|| panic!("no atom of {name}"))
}

/// A strong `hook` (strong.c, overriding weak.c's default) made `static` by a save, with a
/// new user in its file: for the other files' callers the name is gone, so the image's entry
/// of `hook` runs weak.c's default, as after a relink; the new user calls the static's new
/// body, not that entry. Without -fvisibility=hidden and with it (ld makes the hidden `hook`
/// a local of the image).
#[test]
fn a_strong_override_made_static_gives_the_entry_to_the_weak_default() {
    let hidden = [
        &["-O0", "-fPIE"][..],
        &["-O0", "-fPIE", "-fvisibility=hidden"][..],
    ];
    for flags in hidden {
        let p = program(
            &[
                ("main.c", WEAK_MAIN),
                ("weak.c", WEAK),
                ("strong.c", STRONG),
            ],
            flags,
        );
        let image = &p.linker.image().exe.image;
        let entry = image
            .symbols
            .iter()
            .find(|s| s.name == "hook" && s.defined && !s.dynamic)
            .expect("hook")
            .vaddr
            + p.bias;
        let weak = &image.compile_units[p.unit("weak.c").compile_unit.expect("weak.c unit")];
        let [(_, default)] = weak.unnamed_functions.as_slice() else {
            panic!("{flags:?}: {:?}", weak.unnamed_functions);
        };
        let source =
            "static int hook(void) { return 2; }\nint strong_user(void) { return hook(); }\n";
        let obj = p.compile("s2", "strong.c", source);
        let patch = p.link("strong.c", &obj);
        assert_eq!(
            p.linker.entry_targets(Some(&patch)).get(&entry).copied(),
            Some(default + p.bias),
            "{flags:?}: {patch:#?}"
        );
        let body = patch
            .writes
            .iter()
            .find(|w| w.what == "body of hook")
            .unwrap_or_else(|| panic!("{flags:?}: no new body of the static hook: {patch:#?}"));
        // strong_user's call (to the section symbol of the static) lands on its body.
        let user = atom_named(&obj, "strong_user");
        let hook = atom_named(&obj, "hook");
        let call = obj
            .atom(user)
            .relocs
            .iter()
            .find(|r| {
                matches!(obj.symbol(r.symbol).def, hot_object::SymbolDef::Atom { atom, .. } if atom == hook)
            })
            .expect("strong_user's call of hook");
        let user_body = patch
            .writes
            .iter()
            .find(|w| w.what == "body of strong_user")
            .expect("body of strong_user");
        let off = call.offset.0 as usize;
        let disp = i32::from_le_bytes(user_body.bytes[off..off + 4].try_into().expect("rel32"));
        let target = (user_body.addr.0 as i64 + off as i64 + 4 + disp as i64) as u64;
        // A new function's calls go through its stub, which jumps to its body.
        let stub = hook_stub(&patch)
            .unwrap_or_else(|| panic!("{flags:?}: no stub of the static hook: {patch:#?}"));
        assert_eq!(
            target, stub.addr.0,
            "{flags:?}: strong_user calls {target:#x}"
        );
        let jump = i32::from_le_bytes(stub.bytes[1..5].try_into().expect("rel32"));
        assert_eq!(
            (stub.bytes[0], (stub.addr.0 as i64 + 5 + jump as i64) as u64),
            (0xe9, body.addr.0),
            "{flags:?}"
        );
    }
}
