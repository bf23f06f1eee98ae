//! Byte-exact differential tests for ELF aarch64 against GNU ld (`aarch64-linux-gnu-ld`).
//!
//! As in `differential.rs`: each check compiles a fixture with `aarch64-linux-gnu-gcc` or
//! `clang --target=aarch64-linux-gnu` (`-c -ffunction-sections -fdata-sections` and the
//! variant's flags), links it with `aarch64-linux-gnu-ld --no-relax -Map` (plus `-pie` /
//! `-no-pie`, and `--section-start=.far=0x10000000`, which puts `asm_relocs.c`'s `far_fn`
//! 256 MiB away from its caller), and uses ld's output as the running image. hot-link links
//! the same object with every atom forced to the address ld gave its input section, and
//! the bytes it computes for each atom must equal ld's bytes there, with these
//! equivalences where hot-link deliberately differs:
//! - GOT loads (`ADR_GOT_PAGE` + `LD64_GOT_LO12_NC`) may read another slot: the slot
//!   hot-link reads must hold the same value as the one ld's code reads.
//! - Calls to a library function go through a call stub in the code arena instead of ld's
//!   PLT entry: both must jump through the same GOT slot.
//! - A `bl` out of ±128 MiB goes through hot-link's veneer in the code arena instead of
//!   ld's long-branch stub: both must end at the same address.
//!
//! Every test asserts the relocation types its object exercised, so a compiler that
//! changes its code generation makes a variant fail instead of silently covering less.
//! The test names all contain `aarch64`: `cargo test -- aarch64` runs them.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hot_link::aarch64 as a64;
use hot_link::{
    Arenas, LinkErrorCode, LinkRequest, Linker, Patch, Placement, RuntimeAddr, UnitRef,
};
use hot_object::{AtomId, LinkedImage, Object, RelocKind};
use support::*;

const LD: &str = "aarch64-linux-gnu-ld";
const GCC: &str = "aarch64-linux-gnu-gcc";
/// Where `--section-start` puts the `.far` section: beyond `bl`'s reach from the text.
const FAR: &str = "--section-start=.far=0x10000000";

/// Arenas 16 MiB into the address space: within ±128 MiB of both a PIE linked at 0 and a
/// non-PIE at 0x400000, so calls from the image reach call stubs and veneers there.
fn arenas() -> Arenas {
    Arenas {
        code: RuntimeAddr(0x0100_0000)..RuntimeAddr(0x0110_0000),
        data: RuntimeAddr(0x0110_0000)..RuntimeAddr(0x0120_0000),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compiler {
    Gcc,
    Clang,
}

fn compile(
    compiler: Compiler,
    dir: &std::path::Path,
    name: &str,
    source: &str,
    cflags: &[&str],
) -> std::path::PathBuf {
    match compiler {
        Compiler::Gcc => compile_with(GCC, dir, name, source, cflags),
        Compiler::Clang => {
            let mut flags = vec!["--target=aarch64-linux-gnu"];
            flags.extend_from_slice(cflags);
            compile_with("clang", dir, name, source, &flags)
        }
    }
}

/// What one check covered: relocation types compared (by ELF name), plus `veneer` when a
/// branch went through a veneer, `call stub` when a call went through a call stub, and
/// `weak call nop` when a call to an undefined weak function became `nop`.
struct Coverage {
    kinds: BTreeMap<String, usize>,
}

impl Coverage {
    fn assert_covers(&self, names: &[&str]) {
        for name in names {
            assert!(
                self.kinds.contains_key(*name),
                "expected the fixture to exercise {name}; covered: {:?}",
                self.kinds
            );
        }
    }
}

/// A fixture compiled as `a.c` (with its `extra` units and `lib` libraries) and linked by
/// `aarch64-linux-gnu-ld` in a temporary folder (kept while this lives).
struct Built {
    dir: tempfile::TempDir,
    source: String,
    obj_path: std::path::PathBuf,
    libs: Vec<std::path::PathBuf>,
    linked: Linked,
}

fn build(compiler: Compiler, fixture_name: &str, cflags: &[&str], ldflags: &[&str]) -> Built {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = fixture(fixture_name);
    let obj_path = compile(compiler, dir.path(), "a.c", &source, cflags);
    let mut objects = vec![obj_path.clone()];
    for extra in directives(&source, "extra") {
        objects.push(compile(
            compiler,
            dir.path(),
            &extra,
            &fixture(&extra),
            cflags,
        ));
    }
    let libs: Vec<_> = directives(&source, "lib")
        .iter()
        .map(|l| shared_lib_with(GCC, dir.path(), l, &[]))
        .collect();
    let mut flags = ldflags.to_vec();
    flags.push(FAR);
    let linked = ld_with(LD, dir.path(), &objects, &libs, &flags);
    Built {
        dir,
        source,
        obj_path,
        libs,
        linked,
    }
}

/// Compile `fixture_name` (with its `extra` units and `lib` libraries), link with ld and
/// with hot-link at ld's addresses, compare.
fn check(compiler: Compiler, fixture_name: &str, cflags: &[&str], ldflags: &[&str]) -> Coverage {
    let variant = format!("{compiler:?} {fixture_name} {}", cflags.join(" "));
    let Built {
        // The folder lives until the comparison is done.
        dir: _dir,
        source: _,
        obj_path,
        libs,
        linked,
    } = build(compiler, fixture_name, cflags, ldflags);
    assert_eq!(
        parse_object(&obj_path).machine,
        hot_object::Machine::Aarch64
    );
    let AtLdPlacement {
        object,
        linker,
        patch,
        addresses,
    } = link_at_ld_placement(&obj_path, &linked, &libs, arenas(), &variant);
    compare(
        &object,
        &linker.image().exe.image,
        &patch,
        &addresses,
        &variant,
    )
}

fn word(bytes: &[u8], off: usize) -> u32 {
    a64::read(bytes, off).expect("instruction inside the atom")
}

fn put(bytes: &mut [u8], off: usize, insn: u32) {
    a64::write(bytes, off, insn).expect("instruction inside the atom");
}

/// The 8-byte value a GOT slot holds when the program runs (bias 0): hot-link's write, or
/// the file's bytes, or the addend of the `RELATIVE` relocation the loader applies there.
fn slot_value(patch: Option<&Patch>, image: &LinkedImage, slot: u64) -> Option<u64> {
    if let Some(w) = patch.and_then(|p| {
        p.writes
            .iter()
            .find(|w| w.addr.0 == slot && w.bytes.len() == 8)
    }) {
        return Some(u64::from_le_bytes(w.bytes[..8].try_into().ok()?));
    }
    if let Some(&(_, addend)) = image.relative_relocs.iter().find(|(v, _)| *v == slot) {
        return Some(addend as u64);
    }
    image
        .bytes_at(slot, 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

const ADRP_IMM: u32 = (3 << 29) | (0x7ffff << 5);
const IMM12: u32 = 0xfff << 10;
const IMM26: u32 = 0x03ff_ffff;

fn compare(
    object: &Object,
    image: &LinkedImage,
    patch: &Patch,
    addresses: &HashMap<AtomId, u64>,
    variant: &str,
) -> Coverage {
    let code_arena = arenas().code;
    let in_arena = |a: u64| (code_arena.start.0..code_arena.end.0).contains(&a);
    let mut coverage = Coverage {
        kinds: BTreeMap::new(),
    };
    let mut compared = 0;
    let mut ids: Vec<_> = addresses.keys().copied().collect();
    ids.sort();
    for id in ids {
        let addr = addresses[&id];
        let atom = object.atom(id);
        let Some(write) = patch.writes.iter().find(|w| w.addr.0 == addr) else {
            continue;
        };
        compared += 1;
        let theirs_ref = image.bytes_at(addr, write.bytes.len()).unwrap_or_else(|| {
            panic!(
                "ld output has no bytes at {addr:#x} for {}",
                atom.section_name
            )
        });
        let mut ours = write.bytes.clone();
        let mut theirs = theirs_ref.to_vec();
        // Fields that may differ by design, cleared in both after their equivalence holds.
        let mut masks: Vec<(usize, u32)> = Vec::new();
        for reloc in &atom.relocs {
            let name = RelocKind::aarch64_name(reloc.raw_type);
            *coverage.kinds.entry(name.clone()).or_default() += 1;
            let off = reloc.offset.0 as usize;
            let p = addr + reloc.offset.0;
            let target_name = object.symbol_name(reloc.symbol).to_string();
            let at = format!(
                "{variant}: {}+{off:#x} {name} {target_name}",
                atom.section_name
            );
            match reloc.kind {
                RelocKind::Ld64GotLo12Nc => {
                    // The `adrp` of this load: the closest ADR_GOT_PAGE of the symbol before.
                    let page = atom
                        .relocs
                        .iter()
                        .filter(|r| r.kind == RelocKind::AdrGotPage && r.symbol == reloc.symbol)
                        .filter(|r| r.offset.0 < reloc.offset.0)
                        .max_by_key(|r| r.offset.0)
                        .unwrap_or_else(|| panic!("{at}: no ADR_GOT_PAGE before it"));
                    let poff = page.offset.0 as usize;
                    let slot = |bytes: &[u8]| {
                        a64::adrp_target(word(bytes, poff), addr + page.offset.0)
                            + u64::from(a64::imm12(word(bytes, off))) * 8
                    };
                    let (our_slot, their_slot) = (slot(&ours), slot(&theirs));
                    assert_eq!(
                        slot_value(Some(patch), image, our_slot),
                        slot_value(None, image, their_slot),
                        "{at}: our slot {our_slot:#x} and ld's slot {their_slot:#x} hold different values"
                    );
                    masks.push((poff, ADRP_IMM));
                    masks.push((off, IMM12));
                }
                RelocKind::Call26 | RelocKind::Jump26 if target_name != "__tls_get_addr" => {
                    let (o, t) = (word(&ours, off), word(&theirs, off));
                    if o == a64::NOP {
                        // A call to an undefined weak function; the bytes compare below.
                        *coverage.kinds.entry("weak call nop".into()).or_default() += 1;
                        continue;
                    }
                    let our_target = p.wrapping_add(a64::imm26(o) as u64);
                    let their_target = p.wrapping_add(a64::imm26(t) as u64);
                    if !in_arena(our_target) {
                        continue;
                    }
                    let stub = patch
                        .writes
                        .iter()
                        .find(|w| w.addr.0 == our_target)
                        .unwrap_or_else(|| panic!("{at}: the stub it branches to is not written"));
                    // ld's long-branch stub is 24 bytes, a PLT entry 16 (maybe the last).
                    let theirs_stub = image
                        .bytes_at(their_target, 24)
                        .or_else(|| image.bytes_at(their_target, 16))
                        .unwrap_or_else(|| panic!("{at}: no ld stub at {their_target:#x}"));
                    if let Some(our_slot) = a64::call_stub_slot(&stub.bytes, our_target) {
                        assert_eq!(
                            Some(our_slot),
                            a64::call_stub_slot(theirs_stub, their_target),
                            "{at}: called through another slot than ld's PLT entry"
                        );
                        *coverage.kinds.entry("call stub".into()).or_default() += 1;
                    } else {
                        let ours_to = a64::veneer_target(&stub.bytes, our_target);
                        assert!(
                            ours_to.is_some(),
                            "{at}: our stub is neither a call stub nor a veneer"
                        );
                        assert_eq!(
                            ours_to,
                            a64::veneer_target(theirs_stub, their_target),
                            "{at}: our veneer and ld's stub end at different places"
                        );
                        // ld used a stub too: the target really was out of reach.
                        assert!(!in_arena(their_target));
                        *coverage.kinds.entry("veneer".into()).or_default() += 1;
                    }
                    masks.push((off, IMM26));
                }
                _ => {}
            }
        }
        for (off, mask) in masks {
            let (o, t) = (word(&ours, off), word(&theirs, off));
            put(&mut ours, off, o & !mask);
            put(&mut theirs, off, t & !mask);
        }
        if ours != theirs {
            let first = ours
                .iter()
                .zip(&theirs)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let from = first & !3;
            panic!(
                "{variant}: {} at {addr:#x} differs from ld at offset {first:#x}:\n  hot-link {:02x?}\n  \
                 ld       {:02x?}\nrelocations: {:#?}",
                atom.section_name,
                &ours[from..(from + 8).min(ours.len())],
                &theirs[from..(from + 8).min(theirs.len())],
                atom.relocs
                    .iter()
                    .filter(|r| (r.offset.0 as usize) + 8 >= first && (r.offset.0 as usize) <= first + 8)
                    .collect::<Vec<_>>()
            );
        }
    }
    assert!(compared > 0, "{variant}: no atom compared");
    coverage
}

/// One variant: check, then require the relocation types in `expected`.
fn variant(
    compiler: Compiler,
    fixture_name: &str,
    cflags: &[&str],
    ldflags: &[&str],
    expected: &[&str],
) -> Coverage {
    let c = check(compiler, fixture_name, cflags, ldflags);
    c.assert_covers(expected);
    c
}

use Compiler::{Clang, Gcc};

const RELOCS: &str = "relocs.c";
const ASM: &str = "aarch64/asm_relocs.c";
const TLS: &str = "tls.c";

#[test]
fn aarch64_relocs_o0_non_pie() {
    variant(
        Gcc,
        RELOCS,
        &["-O0", "-fno-pie"],
        &["-no-pie"],
        &[
            "R_AARCH64_CALL26",
            "R_AARCH64_ADR_PREL_PG_HI21",
            "R_AARCH64_ADD_ABS_LO12_NC",
            "R_AARCH64_ABS64",
            "call stub",
        ],
    );
}

#[test]
fn aarch64_relocs_o2_pie_got_loads() {
    variant(
        Gcc,
        RELOCS,
        &["-O2", "-fPIE"],
        &["-pie"],
        &[
            "R_AARCH64_CALL26",
            "R_AARCH64_JUMP26",
            "R_AARCH64_ADR_GOT_PAGE",
            "R_AARCH64_LD64_GOT_LO12_NC",
            "R_AARCH64_LDST32_ABS_LO12_NC",
            "R_AARCH64_LDST64_ABS_LO12_NC",
            "call stub",
        ],
    );
}

#[test]
fn aarch64_relocs_o3_pic() {
    variant(
        Gcc,
        RELOCS,
        &["-O3", "-fPIC"],
        &["-pie"],
        &[
            "R_AARCH64_CALL26",
            "R_AARCH64_ADR_GOT_PAGE",
            "R_AARCH64_LD64_GOT_LO12_NC",
            "R_AARCH64_ABS64",
        ],
    );
}

/// gcc 12's large code model loads addresses from a literal pool in the function's own
/// section (`adrp` + `ldr` of `.text.fn + 0x20`, `ABS64` in text).
#[test]
fn aarch64_relocs_o1_large_code_model_literal_pools() {
    variant(
        Gcc,
        RELOCS,
        &["-O1", "-fno-pie", "-mcmodel=large"],
        &["-no-pie"],
        &[
            "R_AARCH64_ADR_PREL_PG_HI21",
            "R_AARCH64_LDST64_ABS_LO12_NC",
            "R_AARCH64_ABS64",
            "R_AARCH64_CALL26",
        ],
    );
}

/// clang's large code model builds every address with `movz`/`movk`.
#[test]
fn aarch64_clang_relocs_o1_large_code_model_movw() {
    variant(
        Clang,
        RELOCS,
        &["-O1", "-fno-pie", "-mcmodel=large"],
        &["-no-pie"],
        &[
            "R_AARCH64_MOVW_UABS_G0_NC",
            "R_AARCH64_MOVW_UABS_G1_NC",
            "R_AARCH64_MOVW_UABS_G2_NC",
            "R_AARCH64_MOVW_UABS_G3",
            "R_AARCH64_CALL26",
        ],
    );
}

#[test]
fn aarch64_asm_relocs_o2_non_pie_branches_movw_veneer() {
    variant(
        Gcc,
        ASM,
        &["-O2", "-fno-pie"],
        &["-no-pie"],
        &[
            "R_AARCH64_CONDBR19",
            "R_AARCH64_TSTBR14",
            "R_AARCH64_JUMP26",
            "R_AARCH64_LD_PREL_LO19",
            "R_AARCH64_ADR_PREL_LO21",
            "R_AARCH64_MOVW_UABS_G1",
            "R_AARCH64_MOVW_UABS_G1_NC",
            "R_AARCH64_MOVW_UABS_G2",
            "R_AARCH64_PREL32",
            "R_AARCH64_PREL64",
            "R_AARCH64_ABS32",
            "R_AARCH64_LDST8_ABS_LO12_NC",
            "R_AARCH64_LDST16_ABS_LO12_NC",
            "R_AARCH64_LDST128_ABS_LO12_NC",
            "veneer",
            "weak call nop",
        ],
    );
}

#[test]
fn aarch64_asm_relocs_o0_pie_veneer() {
    variant(
        Gcc,
        ASM,
        &["-O0", "-fPIE"],
        &["-pie"],
        &[
            "R_AARCH64_CONDBR19",
            "R_AARCH64_TSTBR14",
            "R_AARCH64_PREL32",
            "R_AARCH64_PREL64",
            "R_AARCH64_LDST128_ABS_LO12_NC",
            "veneer",
        ],
    );
}

#[test]
fn aarch64_tls_local_and_initial_exec_o2_pie() {
    variant(
        Gcc,
        TLS,
        &["-O2", "-fPIE"],
        &["-pie"],
        &[
            "R_AARCH64_TLSLE_ADD_TPREL_HI12",
            "R_AARCH64_TLSLE_ADD_TPREL_LO12_NC",
            "R_AARCH64_TLSIE_ADR_GOTTPREL_PAGE21",
            "R_AARCH64_TLSIE_LD64_GOTTPREL_LO12_NC",
        ],
    );
}

#[test]
fn aarch64_tls_o0_non_pie() {
    variant(
        Gcc,
        TLS,
        &["-O0", "-fno-pie"],
        &["-no-pie"],
        &[
            "R_AARCH64_TLSLE_ADD_TPREL_HI12",
            "R_AARCH64_TLSLE_ADD_TPREL_LO12_NC",
            "R_AARCH64_TLSIE_ADR_GOTTPREL_PAGE21",
        ],
    );
}

#[test]
fn aarch64_tls_descriptors_relaxed_like_ld_o2_pic() {
    variant(
        Gcc,
        TLS,
        &["-O2", "-fPIC"],
        &["-pie"],
        &[
            "R_AARCH64_TLSDESC_ADR_PAGE21",
            "R_AARCH64_TLSDESC_LD64_LO12",
            "R_AARCH64_TLSDESC_ADD_LO12",
            "R_AARCH64_TLSDESC_CALL",
        ],
    );
}

#[test]
fn aarch64_tls_traditional_general_dynamic_relaxed_like_ld() {
    variant(
        Gcc,
        TLS,
        &["-O2", "-fPIC", "-mtls-dialect=trad"],
        &["-pie"],
        &["R_AARCH64_TLSGD_ADR_PAGE21", "R_AARCH64_TLSGD_ADD_LO12_NC"],
    );
}

#[test]
fn aarch64_clang_relocs_o2_pie() {
    variant(
        Clang,
        RELOCS,
        &["-O2", "-fPIE"],
        &["-pie"],
        &[
            "R_AARCH64_CALL26",
            "R_AARCH64_ADR_GOT_PAGE",
            "R_AARCH64_LD64_GOT_LO12_NC",
            "R_AARCH64_ADR_PREL_PG_HI21",
        ],
    );
}

#[test]
fn aarch64_clang_relocs_o0_non_pie() {
    variant(
        Clang,
        RELOCS,
        &["-O0", "-fno-pie"],
        &["-no-pie"],
        &[
            "R_AARCH64_CALL26",
            "R_AARCH64_ADR_PREL_PG_HI21",
            "R_AARCH64_ABS64",
        ],
    );
}

#[test]
fn aarch64_clang_asm_relocs_o3_non_pie() {
    variant(
        Clang,
        ASM,
        &["-O3", "-fno-pie"],
        &["-no-pie"],
        &[
            "R_AARCH64_CONDBR19",
            "R_AARCH64_TSTBR14",
            "R_AARCH64_MOVW_UABS_G2",
            "R_AARCH64_PREL64",
            "veneer",
        ],
    );
}

#[test]
fn aarch64_clang_tls_o2_pic_descriptors() {
    variant(
        Clang,
        TLS,
        &["-O2", "-fPIC"],
        &["-pie"],
        &["R_AARCH64_TLSDESC_ADR_PAGE21", "R_AARCH64_TLSDESC_CALL"],
    );
}

#[test]
fn aarch64_clang_tls_o1_non_pie() {
    variant(
        Clang,
        TLS,
        &["-O1", "-fno-pie"],
        &["-no-pie"],
        &[
            "R_AARCH64_TLSLE_ADD_TPREL_HI12",
            "R_AARCH64_TLSIE_ADR_GOTTPREL_PAGE21",
        ],
    );
}

/// The optimisation levels the variants above leave out, for every fixture, PIE and not,
/// with both compilers: each combination must match ld byte for byte.
#[test]
fn aarch64_other_optimisation_levels() {
    let modes: [(&str, &str); 3] = [
        ("-fno-pie", "-no-pie"),
        ("-fPIE", "-pie"),
        ("-fPIC", "-pie"),
    ];
    let mut seen = BTreeSet::new();
    for compiler in [Gcc, Clang] {
        for fixture_name in [RELOCS, ASM, TLS] {
            for level in ["-O1", "-Os", "-O3"] {
                for (mode, ld_mode) in modes {
                    let c = check(compiler, fixture_name, &[level, mode], &[ld_mode]);
                    seen.extend(c.kinds.into_keys());
                }
            }
        }
    }
    for kind in [
        "R_AARCH64_CALL26",
        "R_AARCH64_ADR_GOT_PAGE",
        "R_AARCH64_TLSDESC_CALL",
        "veneer",
    ] {
        assert!(seen.contains(kind), "expected {kind}; covered: {seen:?}");
    }
}

/// A reference that cannot reach its target is a `relocation-overflow` naming the
/// relocation, the symbol, the function, the offset and the source line, like on x86-64:
/// here `leaf` is placed 8 GiB above the variables its `adrp` addresses.
#[test]
fn aarch64_overflow_is_a_contextual_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = fixture(ASM);
    let obj_path = compile(Gcc, dir.path(), "a.c", &source, &["-O2", "-fno-pie"]);
    let linked = ld_with(
        LD,
        dir.path(),
        std::slice::from_ref(&obj_path),
        &[],
        &["-no-pie", FAR],
    );
    let object = parse_object(&obj_path);
    let exe = module(&linked.exe, 0);
    let tu = tu_of(&exe.image, "a.c");
    let linker = Linker::new(image_model(exe, Vec::new()), arenas());
    let sections = map_sections(&linked.map, "a.o");
    let mut addresses = atom_addresses(&object, &sections);
    let leaf = object
        .atoms
        .iter()
        .position(|a| a.section_name == ".text.leaf")
        .map(|i| AtomId(i as u32))
        .expect("leaf's section");
    addresses.insert(leaf, 0x2_0000_0000);
    let placement = Placement {
        atoms: addresses
            .iter()
            .map(|(a, v)| (*a, RuntimeAddr(*v)))
            .collect(),
        redirect_entries: false,
    };
    let request = LinkRequest {
        object: &object,
        baseline: None,
        unit: UnitRef {
            tu,
            compile_unit: None,
            source: "a.c".into(),
        },
        applied: &[],
    };
    let errors = linker
        .link_with_placement(&request, &placement)
        .expect_err("an adrp 8 GiB away cannot be encoded");
    let error = errors
        .iter()
        .find(|e| e.message.contains("R_AARCH64_ADR_PREL_PG_HI21"))
        .unwrap_or_else(|| panic!("no ADR_PREL_PG_HI21 error in {errors:#?}"));
    assert_eq!(error.code, LinkErrorCode::RelocationOverflow);
    assert_eq!(error.function.as_deref(), Some("leaf"));
    assert_eq!(error.symbol.as_deref(), Some("byte_var"));
    assert!(error.message.contains("±4 GiB"), "{}", error.message);
    assert!(error.message.contains("offset 0x"), "{}", error.message);
    let line = error.line.as_ref().expect("the reference's source line");
    assert_eq!(line.line, line_of(&source, "int leaf(int x)"));
}

/// Link `source` (compiled by gcc with `cflags`, linked non-PIE by ld) with every atom
/// placed `shift` bytes above ld's address and entry jumps on; returns ld's image and the
/// link's result.
fn link_shifted(
    source: &str,
    cflags: &[&str],
    shift: u64,
) -> (Arc<LinkedImage>, Result<Patch, Vec<hot_link::LinkError>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let obj_path = compile(Gcc, dir.path(), "a.c", source, cflags);
    let linked = ld_with(
        LD,
        dir.path(),
        std::slice::from_ref(&obj_path),
        &[],
        &["-no-pie", FAR],
    );
    let object = parse_object(&obj_path);
    let exe = module(&linked.exe, 0);
    let tu = tu_of(&exe.image, "a.c");
    let image = exe.image.clone();
    let linker = Linker::new(image_model(exe, Vec::new()), arenas());
    let addresses = atom_addresses(&object, &map_sections(&linked.map, "a.o"));
    let placement = Placement {
        atoms: addresses
            .iter()
            .map(|(a, v)| (*a, RuntimeAddr(v + shift)))
            .collect(),
        redirect_entries: true,
    };
    let request = LinkRequest {
        object: &object,
        baseline: None,
        unit: UnitRef {
            tu,
            compile_unit: None,
            source: "a.c".into(),
        },
        applied: &[],
    };
    (image, linker.link_with_placement(&request, &placement))
}

/// Entry jumps on aarch64 (the differential checks above switch them off): with every atom
/// of a `-mbranch-protection=standard` build placed 1 MiB above ld's address, each entry of
/// the image gets `b body` right after its landing pad (`bti c` or `paciasp`, which stays
/// the first instruction an indirect call lands on); without branch protection, at the entry
/// itself; with the bodies 3 GiB away (beyond `b`, within `adrp`), the 16-byte absolute
/// `ldr x16, #8; br x16; .quad body`, and a function too short for it is refused.
#[test]
fn aarch64_entry_jumps_keep_bti_landing_pads() {
    // No calls: a body 3 GiB away could not reach a veneer in the arena.
    let source = "int counter;\n\
                  int leaf(int x) { counter += x; return counter * 3; }\n\
                  int twice(int x) { return 2 * x + counter; }\n\
                  int main(void) { int s = 0; for (int i = 0; i < counter; i++) s += i; return s; }\n";
    for (cflags, shift, pad) in [
        (
            &["-O2", "-fno-pie", "-mbranch-protection=standard"][..],
            1u64 << 20,
            4u64,
        ),
        (&["-O2", "-fno-pie"][..], 1 << 20, 0),
        (
            &["-O0", "-fno-pie", "-mbranch-protection=bti"][..],
            3 << 30,
            4,
        ),
    ] {
        let (image, result) = link_shifted(source, cflags, shift);
        let patch = result.unwrap_or_else(|e| panic!("{cflags:?}: {e:#?}"));
        for name in ["leaf", "twice", "main"] {
            let sym = image
                .symbols
                .iter()
                .find(|s| s.name == name && s.defined)
                .unwrap_or_else(|| panic!("{name} in the image"));
            let first = a64::read(image.bytes_at(sym.vaddr, 4).expect("entry bytes"), 0).unwrap();
            assert_eq!(
                a64::is_call_landing_pad(first),
                pad == 4,
                "{cflags:?} {name}: {first:#x}"
            );
            let write = patch
                .entries
                .iter()
                .find(|w| w.function == name)
                .unwrap_or_else(|| {
                    panic!("{cflags:?}: no entry jump for {name}: {:#?}", patch.entries)
                });
            assert_eq!(write.addr.0, sym.vaddr + pad, "{cflags:?} {name}");
            let body = sym.vaddr + shift;
            if shift < 128 << 20 {
                let insn = a64::read(&write.bytes, 0).unwrap();
                assert_eq!(write.bytes.len(), 4);
                assert_eq!(a64::branch_target(insn, write.addr.0), Some(body), "{name}");
            } else {
                assert_eq!(write.bytes.len(), 16);
                assert_eq!(
                    a64::veneer_target(&write.bytes, write.addr.0),
                    Some(body),
                    "{name}"
                );
            }
            let expected = image.bytes_at(write.addr.0, write.bytes.len()).unwrap();
            assert_eq!(
                write.expected, expected,
                "{name}: the original bytes are checked"
            );
        }
    }
    // At -O0 `bti c; mov w0, #0; ret`: 12 bytes, too small for the pad and an absolute jump.
    let with_tiny = format!("{source}int tiny(void) {{ return 0; }}\n");
    let (_, result) = link_shifted(
        &with_tiny,
        &["-O0", "-fno-pie", "-mbranch-protection=bti"],
        3 << 30,
    );
    let errors = result.expect_err("`tiny` cannot hold its jump");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].code, LinkErrorCode::FunctionTooSmall);
    assert_eq!(errors[0].function.as_deref(), Some("tiny"));
    assert!(
        errors[0].message.contains("landing pad"),
        "{}",
        errors[0].message
    );
}

/// A loop whose head is the instruction right behind `bti c` would run the entry jump
/// written there on its next iteration (restarting the new body mid-loop): refused, naming
/// the branch and the entry offset. The same loop without a landing pad branches to the
/// entry itself, which is what every caller means: redirected.
#[test]
fn aarch64_branch_into_the_entry_jump_is_refused() {
    let spin = |pad: &str| {
        format!(
            "__asm__(\".section .text.spin,\\\"ax\\\",%progbits\\n\"\n\
             \".global spin\\n.type spin, %function\\n.p2align 2\\nspin:\\n\"\n\
             \"{pad}\"\n\
             \"1: subs w0, w0, #1\\n  b.ne 1b\\n  ret\\n.size spin, .-spin\\n.text\\n\");\n\
             int spin(int);\n\
             int main(void) {{ return spin(3); }}\n"
        )
    };
    let (_, result) = link_shifted(&spin("  bti c\\n"), &["-O2", "-fno-pie"], 1 << 20);
    let errors = result.expect_err("the loop head is behind `bti c`");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].code, LinkErrorCode::FunctionTooSmall);
    assert_eq!(errors[0].function.as_deref(), Some("spin"));
    assert!(
        errors[0].message.contains("targets entry+4"),
        "{}",
        errors[0].message
    );
    let (image, result) = link_shifted(&spin(""), &["-O2", "-fno-pie"], 1 << 20);
    let patch = result.unwrap_or_else(|e| panic!("{e:#?}"));
    let sym = image
        .symbols
        .iter()
        .find(|s| s.name == "spin")
        .expect("spin");
    let write = patch
        .entries
        .iter()
        .find(|w| w.function == "spin")
        .expect("spin's jump");
    assert_eq!(write.addr.0, sym.vaddr);
}

/// A real link (no forced placement) of an edited aarch64 file against its baseline, as a
/// save does: only the changed function is swapped, its new body lands in the code arena
/// with its `bl` to a new function going to that function's stub (`bti c; b body` in a
/// `-mbranch-protection=bti` build, so function pointers to it land on a pad), its call to
/// a library function through a call stub on the executable's own GOT slot, and its entry
/// in the image jumps to the new body from behind its `bti c`.
#[test]
fn aarch64_save_links_the_changed_function_into_the_arena() {
    let old = "extern int ext_fn(int);\n\
               int counter;\n\
               __attribute__((noinline)) int helper(int x) { return x * 3; }\n\
               int tick(int x) { counter += x; return helper(counter) + ext_fn(x); }\n\
               int main(void) { return tick(1); }\n";
    let new = old.replace(
        "int tick(int x) { counter += x; return helper(counter) + ext_fn(x); }",
        "__attribute__((noinline)) int added(int x) { return x - counter; }\n\
         int tick(int x) { counter += 2 * x; return helper(counter) + ext_fn(x) + added(x); }",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["-O1", "-fPIE", "-mbranch-protection=bti"];
    let old_path = compile(Gcc, dir.path(), "a.c", old, &flags);
    let lib = shared_lib_with(GCC, dir.path(), "ext.c", &[]);
    let linked = ld_with(
        LD,
        dir.path(),
        std::slice::from_ref(&old_path),
        std::slice::from_ref(&lib),
        &["-pie"],
    );
    let old_object = parse_object(&old_path);
    let new_dir = dir.path().join("new");
    std::fs::create_dir(&new_dir).expect("mkdir");
    let new_object = parse_object(&compile(Gcc, &new_dir, "a.c", &new, &flags));
    let exe = module(&linked.exe, 0);
    let image = exe.image.clone();
    let tu = tu_of(&image, "a.c");
    let linker = Linker::new(
        image_model(exe, vec![module(&lib, 0x7f00_0000_0000)]),
        arenas(),
    );
    let request = LinkRequest {
        object: &new_object,
        baseline: Some(&old_object),
        unit: UnitRef {
            tu,
            compile_unit: None,
            source: "a.c".into(),
        },
        applied: &[],
    };
    let patch = linker.link(&request).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, ["tick"]);
    assert_eq!(patch.added, ["added"]);
    let in_arena = |a: u64| (arenas().code.start.0..arenas().code.end.0).contains(&a);
    let body = patch
        .bodies
        .iter()
        .find(|b| b.name == "tick")
        .expect("tick's body");
    assert!(in_arena(body.addr.0));
    let bytes = &patch
        .writes
        .iter()
        .find(|w| w.addr == body.addr)
        .expect("tick written")
        .bytes;
    // Every `bl` of the new body: to helper's entry in the image, to the new stub of
    // `added`, or to a call stub jumping through ext_fn's JUMP_SLOT.
    let sym = |name: &str| {
        image
            .symbols
            .iter()
            .find(|s| s.name == name && s.defined)
            .unwrap_or_else(|| panic!("{name}"))
            .vaddr
    };
    let mut callees = Vec::new();
    for i in 0..bytes.len() / 4 {
        let insn = a64::read(bytes, 4 * i).unwrap();
        if !a64::is_bl(insn) {
            continue;
        }
        let at = body.addr.0 + 4 * i as u64;
        let target = a64::branch_target(insn, at).unwrap();
        if target == sym("helper") {
            callees.push("helper");
            continue;
        }
        let stub = patch
            .writes
            .iter()
            .find(|w| w.addr.0 == target)
            .expect("a stub");
        if let Some(slot) = a64::call_stub_slot(&stub.bytes, target) {
            let got = image
                .got_slots
                .iter()
                .find(|s| s.vaddr == slot)
                .expect("an image GOT slot");
            assert_eq!(got.symbol, "ext_fn");
            callees.push("ext_fn");
        } else {
            assert_eq!(
                a64::read(&stub.bytes, 0),
                Ok(a64::BTI_C),
                "a new function's stub starts with bti c"
            );
            let added = patch
                .bodies
                .iter()
                .find(|b| b.name == "added")
                .expect("added's body");
            assert_eq!(
                a64::branch_target(a64::read(&stub.bytes, 4).unwrap(), target + 4),
                Some(added.addr.0)
            );
            callees.push("added");
        }
    }
    callees.sort_unstable();
    assert_eq!(callees, ["added", "ext_fn", "helper"]);
    // The image's entry of tick: `bti c` stays, `b` to the new body follows.
    let entry = patch
        .entries
        .iter()
        .find(|w| w.function == "tick")
        .expect("tick's entry jump");
    assert_eq!(
        a64::read(image.bytes_at(sym("tick"), 4).unwrap(), 0),
        Ok(a64::BTI_C)
    );
    assert_eq!(entry.addr.0, sym("tick") + 4);
    assert_eq!(
        a64::branch_target(a64::read(&entry.bytes, 0).unwrap(), entry.addr.0),
        Some(body.addr.0)
    );
}

/// Link `fixture_name` with ld, then link the same object again without a baseline (as a
/// first save of a file does): the functions hot-link swaps are those it could not prove
/// equal to the running image's code.
fn swapped_without_baseline(
    compiler: Compiler,
    fixture_name: &str,
    cflags: &[&str],
    ldflags: &[&str],
    edit: Option<(&str, &str)>,
) -> Vec<String> {
    let Built {
        dir,
        source,
        obj_path,
        libs,
        linked,
    } = build(compiler, fixture_name, cflags, ldflags);
    let object = match edit {
        None => parse_object(&obj_path),
        Some((from, to)) => {
            let edited = source.replace(from, to);
            assert_ne!(edited, source);
            let new_dir = dir.path().join("new");
            std::fs::create_dir(&new_dir).expect("mkdir");
            parse_object(&compile(compiler, &new_dir, "a.c", &edited, cflags))
        }
    };
    let exe = module(&linked.exe, 0);
    let tu = tu_of(&exe.image, "a.c");
    let lib_modules = libs
        .iter()
        .enumerate()
        .map(|(i, l)| module(l, 0x7f00_0000_0000 + ((i as u64) << 24)))
        .collect();
    let linker = Linker::new(image_model(exe, lib_modules), arenas());
    let request = LinkRequest {
        object: &object,
        baseline: None,
        unit: UnitRef {
            tu,
            compile_unit: None,
            source: "a.c".into(),
        },
        applied: &[],
    };
    let patch = linker
        .link(&request)
        .unwrap_or_else(|e| panic!("{fixture_name} {cflags:?}: {e:#?}"));
    let mut swapped = patch.swapped.clone();
    swapped.sort();
    swapped
}

/// Without a baseline, an unchanged aarch64 object is recognised as the running image's code
/// function by function (calls through the PLT and ld's veneers, GOT slots, `adrp` pairs,
/// strings compared by contents, TLS as ld relaxed it), for gcc and clang, PIE and not;
/// after an edit, exactly the edited function is swapped.
#[test]
fn aarch64_image_diff_without_baseline() {
    let modes: [(&str, &str); 3] = [
        ("-fno-pie", "-no-pie"),
        ("-fPIE", "-pie"),
        ("-fPIC", "-pie"),
    ];
    for compiler in [Gcc, Clang] {
        for level in ["-O0", "-O2"] {
            for (mode, ld_mode) in modes {
                for fixture_name in [RELOCS, TLS, ASM] {
                    let swapped = swapped_without_baseline(
                        compiler,
                        fixture_name,
                        &[level, mode],
                        &[ld_mode],
                        None,
                    );
                    // gcc's PIC copies `direction`'s local table from an anonymous `.data`
                    // object: writable data without a name is new in every link, so the
                    // function that copies it cannot be proven unchanged.
                    let expected: &[&str] =
                        if compiler == Gcc && mode != "-fno-pie" && fixture_name == RELOCS {
                            &["direction"]
                        } else {
                            &[]
                        };
                    assert_eq!(
                        swapped, expected,
                        "{compiler:?} {fixture_name} {level} {mode}: swapped though nothing changed"
                    );
                }
                // An instruction's immediate, and a string a table points to (compared by
                // contents through the table).
                for (edit, function) in [
                    (
                        ("return words[n & 3][1];", "return words[n & 3][2];"),
                        "pick",
                    ),
                    (("\"south\"", "\"South\""), "direction"),
                ] {
                    let swapped = swapped_without_baseline(
                        compiler,
                        RELOCS,
                        &[level, mode],
                        &[ld_mode],
                        Some(edit),
                    );
                    let mut expected = vec![function];
                    if compiler == Gcc && mode != "-fno-pie" {
                        expected.push("direction");
                    }
                    expected.sort_unstable();
                    expected.dedup();
                    assert_eq!(swapped, expected, "{compiler:?} {level} {mode} {edit:?}");
                }
            }
        }
    }
}
