//! References to weak functions that nothing defines (zstd's trace hooks), linked from
//! arenas where the program runs: below a PIE at [`BIAS`] (address 0 is out of rel32 reach)
//! or below 2 GiB for a non-PIE. A branch goes where the program's own link sends it (the
//! image's PLT entry; else a stub through the image's GOT slot; else address 0, directly or
//! through a far stub whose slot holds 0), a guard's GOT load reads the image's slot or one
//! holding 0, and a PC-relative address out of reach of 0 is refused naming the symbol.
//! Each case is a row: the program (`a.c` as built), the save, and what the save's `step`
//! must do.

mod support;

use hot_link::{LinkErrorCode, LinkRequest, Linker, Patch, UnitRef};
use hot_object::{GotSlotKind, LinkedImage, Object, RelocKind, TranslationUnitId};
use support::*;

/// Where `step`'s branch to the weak symbol must land.
#[derive(Clone, Copy, Debug)]
enum Branch {
    /// The image's PLT entry for the name.
    Plt,
    /// A stub `jmp *slot(%rip)` through the image's own GOT slot of this kind.
    StubThroughImage(GotSlotKind),
    /// Address 0 itself (ld's `call 0`), in rel32 reach.
    Zero,
    /// A stub `jmp *slot(%rip)` in the code arena through an arena slot holding 0.
    StubThroughZero,
}

/// Which slot `step`'s GOT load of the weak symbol (its `if (hook)`) must read.
#[derive(Clone, Copy, Debug)]
enum Guard {
    /// The image's `GLOB_DAT` slot (0 at run time).
    ImageSlot,
    /// A slot of the data arena holding 0.
    ZeroSlot,
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Links {
        branch: Branch,
        guard: Option<Guard>,
    },
    /// Refused with `relocation-overflow`, the message naming the undefined weak symbol.
    Refused,
}

struct Row {
    what: &'static str,
    /// Compiler flags of the program and of the save.
    cflags: &'static [&'static str],
    /// The program's a.c.
    image: &'static str,
    /// The saved a.c.
    save: &'static str,
    /// The weak symbol `step` refers to.
    symbol: &'static str,
    outcome: Outcome,
}

const PIE: &[&str] = &["-O1", "-fPIE", "-mno-direct-extern-access"];
const PIE_O0: &[&str] = &["-O0", "-fPIE", "-mno-direct-extern-access"];
const PIE_O2: &[&str] = &["-O2", "-fPIE", "-mno-direct-extern-access"];
const NOPIE: &[&str] = &["-O1", "-fno-pie", "-mno-direct-extern-access"];

/// The program: `step` tests and calls `hook` (zstd's trace hooks).
const GUARDED: &str = "__attribute__((weak)) int hook(int);\n\
    int step(int i) { if (hook) return hook(i); return i * 2; }\n\
    int main(void) { return step(1); }\n";
/// The save: the return expression edited.
const GUARDED_EDITED: &str = "__attribute__((weak)) int hook(int);\n\
    int step(int i) { if (hook) return hook(i); return i * 3; }\n\
    int main(void) { return step(1); }\n";
/// The program: `hook` is declared and referenced by nothing (`step` writes `seen` to be
/// longer than an entry jump).
const UNREFERENCED: &str = "__attribute__((weak)) int hook(int);\n\
    volatile int seen;\n\
    int step(int i) { seen = i; return i * 2; }\n\
    int main(void) { return step(1); }\n";
/// The program: `hook` only called (a JUMP_SLOT and a `.plt` entry in a PIE).
const ONLY_CALLED: &str = "__attribute__((weak)) int hook(int);\n\
    int flag;\n\
    int step(int i) { if (flag) return hook(i); return i * 2; }\n\
    int main(void) { return step(1); }\n";
const ONLY_CALLED_EDITED: &str = "__attribute__((weak)) int hook(int);\n\
    int flag;\n\
    int step(int i) { if (flag) return hook(i); return i * 3; }\n\
    int main(void) { return step(1); }\n";
/// The program: `hook` only tested, never called (a `GLOB_DAT` slot, no PLT entry).
const ONLY_TESTED: &str = "__attribute__((weak)) int hook(int);\n\
    int step(int i) { return hook ? 1 : i * 2; }\n\
    int main(void) { return step(1); }\n";
/// The save: `hook`'s address taken PC-relative too (gcc declares `hook` weak in its
/// assembly only for a name the C code refers to).
const LEA: &str = "__attribute__((weak)) int hook(int);\n\
    int step(int i) { if (hook) return hook(i); void *at; \
    __asm__(\"lea hook(%%rip), %0\" : \"=r\"(at)); return at ? 1 : i * 3; }\n\
    int main(void) { return step(1); }\n";

const ROWS: &[Row] = &[
    Row {
        what: "PIE: a guarded call, the return expression edited: the image's PLT entry and slot",
        cflags: PIE,
        image: GUARDED,
        save: GUARDED_EDITED,
        symbol: "hook",
        outcome: Outcome::Links {
            branch: Branch::Plt,
            guard: Some(Guard::ImageSlot),
        },
    },
    Row {
        what: "PIE -O0: the same",
        cflags: PIE_O0,
        image: GUARDED,
        save: GUARDED_EDITED,
        symbol: "hook",
        outcome: Outcome::Links {
            branch: Branch::Plt,
            guard: Some(Guard::ImageSlot),
        },
    },
    Row {
        what: "PIE -O2: a tail call (`jmp`) to the PLT entry",
        cflags: PIE_O2,
        image: GUARDED,
        save: GUARDED_EDITED,
        symbol: "hook",
        outcome: Outcome::Links {
            branch: Branch::Plt,
            guard: Some(Guard::ImageSlot),
        },
    },
    Row {
        what: "PIE: the name only called in the image (a lazy JUMP_SLOT): its PLT entry",
        cflags: PIE,
        image: ONLY_CALLED,
        save: ONLY_CALLED_EDITED,
        symbol: "hook",
        outcome: Outcome::Links {
            branch: Branch::Plt,
            guard: None,
        },
    },
    Row {
        what: "PIE: the name only tested in the image: a stub through its GLOB_DAT slot",
        cflags: PIE,
        image: ONLY_TESTED,
        save: GUARDED_EDITED,
        symbol: "hook",
        outcome: Outcome::Links {
            branch: Branch::StubThroughImage(GotSlotKind::GlobDat),
            guard: Some(Guard::ImageSlot),
        },
    },
    Row {
        what: "PIE: the name unreferenced by the image: a far stub to 0 and a slot holding 0",
        cflags: PIE,
        image: UNREFERENCED,
        save: GUARDED_EDITED,
        symbol: "hook",
        outcome: Outcome::Links {
            branch: Branch::StubThroughZero,
            guard: Some(Guard::ZeroSlot),
        },
    },
    Row {
        what: "non-PIE: ld's `call 0`, in reach of the arena below 2 GiB",
        cflags: NOPIE,
        image: GUARDED,
        save: GUARDED_EDITED,
        symbol: "hook",
        outcome: Outcome::Links {
            branch: Branch::Zero,
            guard: Some(Guard::ZeroSlot),
        },
    },
    Row {
        what: "non-PIE: the name unreferenced by the image: `call 0`",
        cflags: NOPIE,
        image: UNREFERENCED,
        save: GUARDED_EDITED,
        symbol: "hook",
        outcome: Outcome::Links {
            branch: Branch::Zero,
            guard: Some(Guard::ZeroSlot),
        },
    },
    Row {
        what: "PIE: its address taken PC-relative (`lea`): 0 is out of reach, refused",
        cflags: PIE,
        image: GUARDED,
        save: LEA,
        symbol: "hook",
        outcome: Outcome::Refused,
    },
];

/// The program built from `image` with `cflags` less the patch compile's
/// -mno-direct-extern-access (a user's build): its linker (arenas where hot-lsp maps them),
/// bias and baseline object.
fn program(dir: &std::path::Path, image: &str, cflags: &[&str]) -> (Linker, u64, Object) {
    let built = dir.join("built");
    std::fs::create_dir_all(&built).expect("mkdir");
    let users: Vec<&str> = cflags
        .iter()
        .copied()
        .filter(|f| *f != "-mno-direct-extern-access")
        .collect();
    let object = compile(&built, "a.c", image, &users);
    let pie = !cflags.contains(&"-fno-pie");
    let linked = ld(
        dir,
        std::slice::from_ref(&object),
        &[],
        &[if pie { "-pie" } else { "-no-pie" }],
    );
    let bias = if pie { BIAS } else { 0 };
    let arenas = if pie {
        arenas_below_image()
    } else {
        low_arenas()
    };
    let linker = Linker::new(image_model(module(&linked.exe, bias), vec![]), arenas);
    (linker, bias, parse_object(&object))
}

/// The address a relocation field of `step`'s new body designates: `P + field - A`.
fn designated(obj: &Object, patch: &Patch, symbol: &str, got: bool) -> Option<u64> {
    let atom = (0..obj.atoms.len())
        .map(|i| hot_object::AtomId(i as u32))
        .find(|&a| {
            obj.primary_symbol(a)
                .is_some_and(|s| obj.symbol(s).name == "step")
        })
        .expect("step's atom");
    let body = patch
        .writes
        .iter()
        .find(|w| w.what == "body of step")
        .unwrap_or_else(|| panic!("no body of step: {patch:#?}"));
    let reloc = obj.atom(atom).relocs.iter().find(|r| {
        obj.symbol_name(r.symbol) == symbol
            && match got {
                true => matches!(
                    r.kind,
                    RelocKind::GotPcRel | RelocKind::GotPcRelX | RelocKind::RexGotPcRelX
                ),
                false => matches!(r.kind, RelocKind::Plt32 | RelocKind::Pc32),
            }
    })?;
    let off = reloc.offset.0 as usize;
    let field = i32::from_le_bytes(body.bytes[off..off + 4].try_into().expect("rel32"));
    Some((body.addr.0 as i64 + off as i64 + field as i64 - reloc.addend) as u64)
}

/// The 8 bytes the patch writes at `addr`, as a word.
fn written_word(patch: &Patch, addr: u64) -> Option<u64> {
    patch
        .writes
        .iter()
        .find(|w| w.addr.0 == addr && w.bytes.len() == 8)
        .map(|w| u64::from_le_bytes(w.bytes[..8].try_into().expect("8 bytes")))
}

/// The slot a stub `jmp *slot(%rip)` the patch writes at `stub` jumps through.
fn stub_slot(patch: &Patch, stub: u64) -> u64 {
    let write = patch
        .writes
        .iter()
        .find(|w| w.addr.0 == stub)
        .unwrap_or_else(|| panic!("nothing written at the branch target {stub:#x}"));
    assert_eq!(
        write.bytes[..2],
        [0xff, 0x25],
        "not a jmp *slot(%rip): {write:?}"
    );
    let rel = i32::from_le_bytes(write.bytes[2..6].try_into().expect("rel32"));
    (stub as i64 + 6 + rel as i64) as u64
}

fn image_slot(image: &LinkedImage, name: &str, kind: GotSlotKind) -> Option<u64> {
    image
        .got_slots
        .iter()
        .find(|s| s.symbol == name && s.kind == kind)
        .map(|s| s.vaddr)
}

/// Link `object` as the new a.c, compared with `baseline` (else with the running image).
fn link(
    linker: &Linker,
    object: &Object,
    baseline: Option<&Object>,
) -> Result<Patch, Vec<hot_link::LinkError>> {
    let tu = linker
        .image()
        .exe
        .image
        .translation_units
        .iter()
        .position(|n| n == "a.c")
        .map(|i| TranslationUnitId(i as u32));
    linker.link(&LinkRequest {
        object,
        baseline,
        unit: UnitRef {
            tu,
            compile_unit: None,
            source: "a.c".into(),
        },
        applied: &[],
    })
}

fn check(row: &Row) {
    let what = row.what;
    let dir = tempfile::tempdir().expect("tempdir");
    let (linker, bias, baseline) = program(dir.path(), row.image, row.cflags);
    let saved = dir.path().join("saved");
    std::fs::create_dir_all(&saved).expect("mkdir");
    let object = parse_object(&compile(&saved, "a.c", row.save, row.cflags));
    let image = &linker.image().exe.image;
    let arenas = linker.arenas().clone();
    match (link(&linker, &object, Some(&baseline)), row.outcome) {
        (Ok(patch), Outcome::Links { branch, guard }) => {
            assert!(
                patch.swapped.iter().any(|s| s == "step"),
                "{what}: {patch:#?}"
            );
            let target = designated(&object, &patch, row.symbol, false)
                .unwrap_or_else(|| panic!("{what}: no branch to {}", row.symbol));
            match branch {
                Branch::Plt => {
                    let plt = image
                        .plt_entries
                        .iter()
                        .find(|(n, _)| n == row.symbol)
                        .map(|(_, v)| v + bias);
                    assert_eq!(Some(target), plt, "{what}: not the image's PLT entry");
                }
                Branch::StubThroughImage(kind) => {
                    let slot = stub_slot(&patch, target);
                    let image_slot = image_slot(image, row.symbol, kind).map(|v| v + bias);
                    assert_eq!(
                        Some(slot),
                        image_slot,
                        "{what}: not the image's {kind:?} slot"
                    );
                }
                Branch::Zero => assert_eq!(target, 0, "{what}"),
                Branch::StubThroughZero => {
                    assert!(
                        (arenas.code.start.0..arenas.code.end.0).contains(&target),
                        "{what}: {target:#x} is no stub of the code arena"
                    );
                    let slot = stub_slot(&patch, target);
                    assert!(
                        (arenas.data.start.0..arenas.data.end.0).contains(&slot),
                        "{what}: the stub's slot {slot:#x} is not the data arena's"
                    );
                    assert_eq!(written_word(&patch, slot), Some(0), "{what}: {patch:#?}");
                }
            }
            let read = designated(&object, &patch, row.symbol, true);
            match guard {
                None => {}
                Some(Guard::ImageSlot) => {
                    let slot =
                        image_slot(image, row.symbol, GotSlotKind::GlobDat).map(|v| v + bias);
                    assert_eq!(read, slot, "{what}: the guard reads another slot");
                    assert!(slot.is_some(), "{what}: the image has no GLOB_DAT slot");
                }
                Some(Guard::ZeroSlot) => {
                    let slot = read.unwrap_or_else(|| panic!("{what}: no GOT load"));
                    assert!(
                        (arenas.data.start.0..arenas.data.end.0).contains(&slot),
                        "{what}: the guard's slot {slot:#x} is not the data arena's"
                    );
                    assert_eq!(written_word(&patch, slot), Some(0), "{what}");
                }
            }
        }
        (Err(errors), Outcome::Refused) => {
            let error = errors
                .iter()
                .find(|e| e.code == LinkErrorCode::RelocationOverflow)
                .unwrap_or_else(|| panic!("{what}: no relocation-overflow: {errors:#?}"));
            let named = format!("`{}` is an undefined weak symbol", row.symbol);
            assert!(error.message.contains(&named), "{what}: {error:?}");
            assert_eq!(
                error.symbol.as_deref(),
                Some(row.symbol),
                "{what}: {error:?}"
            );
        }
        (Ok(patch), Outcome::Refused) => panic!("{what}: linked, expected a refusal: {patch:#?}"),
        (Err(errors), Outcome::Links { .. }) => panic!("{what}: {errors:#?}"),
    }
}

#[test]
fn references_to_undefined_weak_functions_do_what_the_programs_link_does() {
    for row in ROWS {
        check(row);
    }
}

/// The program for [`WITHOUT_BASELINE`]: `step` with its guarded call, and `other`.
const GUARDED_AND_OTHER: &str = "__attribute__((weak)) int hook(int);\n\
    int step(int i) { if (hook) return hook(i); return i * 2; }\n\
    __attribute__((noinline)) int other(int i) { volatile int k = i; return k + 1; }\n\
    int main(void) { return step(1) + other(2); }\n";

/// Without a baseline, `other` edited: compared with the running code, `step`'s test of and
/// call to `hook` designate what the image's do (its `GLOB_DAT` slot, its PLT entry; in a
/// non-PIE at -O0 ld's relaxed `mov $0` and `call 0`), so only `other` swaps. Each row:
/// the flags of the build and of the save.
const WITHOUT_BASELINE: &[&[&str]] = &[
    &["-O0", "-fPIE", "-mno-direct-extern-access"],
    PIE,
    PIE_O2,
    &["-O0", "-fno-pie", "-mno-direct-extern-access"],
];

#[test]
fn without_a_baseline_a_guarded_call_equals_the_running_code() {
    for cflags in WITHOUT_BASELINE {
        let dir = tempfile::tempdir().expect("tempdir");
        let (linker, _, _) = program(dir.path(), GUARDED_AND_OTHER, cflags);
        let saved = dir.path().join("saved");
        std::fs::create_dir_all(&saved).expect("mkdir");
        let edited = GUARDED_AND_OTHER.replacen("return k + 1;", "return k + 7;", 1);
        let object = parse_object(&compile(&saved, "a.c", &edited, cflags));
        let patch = link(&linker, &object, None).unwrap_or_else(|e| panic!("{cflags:?}: {e:#?}"));
        assert_eq!(patch.swapped, ["other"], "{cflags:?}: {patch:#?}");
    }
}
