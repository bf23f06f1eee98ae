//! Byte-exact differential tests of Mach-O linking against `ld64.lld` (LLVM 14, Debian's
//! `lld` package ships it as `ld64.lld-14`).
//!
//! Each case compiles freestanding C fixtures with `clang --target=<arch>-apple-macos11 -c`
//! (no SDK needed: no system headers), links them with `ld64.lld -undefined dynamic_lookup`
//! (undefined names become flat-namespace imports, so no libSystem `.tbd` is needed) as an
//! executable (PIE, and `-no_pie` on x86-64) or a `-dylib`, and reads the output with
//! hot-object's Mach-O image reader ([`LinkedImage::parse`]): where lld put each atom (symbol
//! table; string and literal atoms by content), its GOT, stubs and thread-local variable
//! pointers (indirect symbol table) and which pointers dyld binds (bind opcodes). hot-link
//! then relocates the first fixture's atoms ([`hot_link::macho::relocate`]) at the same
//! addresses with the image's slots ([`MachOPlacement::with_image`]), and its bytes must
//! equal lld's, except that a pointer dyld binds holds its addend in lld's file and the bound
//! address in hot-link's (imports get made-up addresses here).
//!
//! Every case asserts the Mach-O relocation types it compared, so a compiler change that
//! stops emitting one fails instead of silently covering less.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

use hot_link::macho::{relocate, MachOPlacement};
use hot_object::{AtomId, AtomKind, LinkedImage, Object, RelocKind};
use support::macho::{self, ld64, lld_address, relocs_fixture};
use support::{directives, fixture, run};

fn compile(dir: &Path, arch: &str, name: &str, source: &str, opt: &str) -> PathBuf {
    macho::compile(dir, arch, name, source, &[opt])
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Output {
    Executable,
    /// `-no_pie` (x86-64 only: arm64 macOS executables are always PIE).
    NoPie,
    Dylib,
}

/// Link with lld and with hot-link; compare; return the relocation types compared.
fn check_against_ld64(
    arch: &str,
    source: &str,
    opt: &str,
    output: Output,
) -> BTreeMap<String, usize> {
    let dir = tempfile::tempdir().expect("tempdir");
    let variant = format!("{arch} {opt} {output:?}");
    let main = compile(dir.path(), arch, "a.c", source, opt);
    let mut objects = vec![main.clone()];
    for extra in directives(source, "extra") {
        objects.push(compile(dir.path(), arch, &extra, &fixture(&extra), opt));
    }
    let out = dir.path().join("a.out");
    let mut cmd = Command::new(ld64());
    cmd.args(["-arch", arch, "-platform_version", "macos", "11.0", "11.0"])
        .args(["-undefined", "dynamic_lookup", "-o"])
        .arg(&out)
        .args(&objects);
    match output {
        Output::Executable => {}
        Output::NoPie => {
            cmd.arg("-no_pie");
        }
        Output::Dylib => {
            cmd.arg("-dylib");
        }
    }
    run(&mut cmd);
    let linked = std::fs::read(&out).expect("reading lld's output");
    // lld's output through hot-object's Mach-O image reader: its symbols, GOT, stubs,
    // thread-local pointers and binds are what hot-link is given, so the comparison checks
    // the reader too.
    let image = LinkedImage::parse(&out, &linked).unwrap_or_else(|e| panic!("{variant}: {e}"));
    assert_eq!(
        image.position_independent,
        output != Output::NoPie,
        "{variant}: MH_PIE"
    );
    let bytes = std::fs::read(&main).expect("reading the object");
    let object = Object::parse(&main, &bytes).unwrap_or_else(|e| panic!("{variant}: {e}"));

    let mut placement = MachOPlacement::with_image(&image, 0);
    let symbols: HashMap<&str, u64> = image
        .symbols
        .iter()
        .filter(|s| s.defined)
        .map(|s| (s.name.as_str(), s.vaddr))
        .collect();
    for (i, atom) in object.atoms.iter().enumerate() {
        let id = AtomId(i as u32);
        match lld_address(&object, id, &image, &symbols) {
            Some(addr) => {
                placement.atoms.insert(id, addr);
            }
            None => assert!(
                atom.relocs.is_empty() && atom.bytes.iter().all(|&b| b == 0),
                "{variant}: lld placed no atom of {} with {} bytes and relocations {:?}",
                atom.section_name,
                atom.size,
                atom.relocs
            ),
        }
    }
    // Imports (names no object defines) get made-up addresses; what lld bound to them is
    // checked against those.
    let mut fake = HashMap::new();
    for sym in &object.symbols {
        if sym.def == hot_object::SymbolDef::Undefined && !symbols.contains_key(sym.name.as_str()) {
            let addr = 0x7ff8_0000_0000 + fake.len() as u64 * 0x1000;
            fake.insert(sym.name.clone(), addr);
            placement.symbols.insert(sym.name.to_string(), addr);
        }
    }
    let binds = macho::binds(&image);

    let ours = relocate(&object, &placement)
        .unwrap_or_else(|errors| panic!("{variant}: hot-link failed: {errors:#?}"));
    let mut kinds = BTreeMap::new();
    let mut compared = 0;
    for (id, addr, mut our_bytes) in ours {
        let atom = object.atom(id);
        let mut theirs = image
            .bytes_at(addr, our_bytes.len())
            .unwrap_or_else(|| panic!("{variant}: no lld bytes at {addr:#x}"))
            .to_vec();
        // Bound pointers: lld's file holds the addend, ours the bound address.
        for (&at, &(name, addend)) in binds.range(addr..addr + our_bytes.len() as u64) {
            let off = (at - addr) as usize;
            let value = u64::from_le_bytes(our_bytes[off..off + 8].try_into().expect("8"));
            let want = fake.get(name).copied().unwrap_or_else(|| {
                panic!("{variant}: lld binds {name} at {at:#x}, not an import of the object")
            });
            assert_eq!(
                value,
                want.wrapping_add(addend as u64),
                "{variant}: bound pointer to {name} at {at:#x}"
            );
            our_bytes[off..off + 8].fill(0);
            theirs[off..off + 8].fill(0);
        }
        if our_bytes != theirs {
            let first = our_bytes
                .iter()
                .zip(&theirs)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{variant}: {} atom {:?} at {addr:#x} differs from lld at +{first:#x}\n  ours: {:02x?}\n  lld:  {:02x?}\n  relocs: {:#?}",
                atom.section_name,
                object.primary_symbol(id).map(|s| object.symbol(s).name.clone()),
                &our_bytes[first.saturating_sub(4)..(first + 12).min(our_bytes.len())],
                &theirs[first.saturating_sub(4)..(first + 12).min(theirs.len())],
                atom.relocs
            );
        }
        if atom.kind != AtomKind::Bss {
            compared += 1;
        }
        for r in &atom.relocs {
            *kinds.entry(object.reloc_type_name(r.raw_type)).or_insert(0) += 1;
            // An arm64 instruction relocation's addend can only come from an ADDEND pair.
            if object.machine == hot_object::Machine::Aarch64
                && r.addend != 0
                && !matches!(r.kind, RelocKind::Abs64 | RelocKind::Abs32)
            {
                *kinds.entry("ARM64_RELOC_ADDEND".into()).or_insert(0) += 1;
            }
        }
    }
    assert!(compared > 3, "{variant}: only {compared} atoms compared");
    kinds
}

fn assert_covers(kinds: &BTreeMap<String, usize>, names: &[&str], variant: &str) {
    for name in names {
        assert!(
            kinds.contains_key(*name),
            "{variant}: expected the fixture to exercise {name}; covered: {kinds:?}"
        );
    }
}

/// The x86-64 relocation types every variant of the relocation fixture exercises.
const X86_64_RELOCS: &[&str] = &[
    "X86_64_RELOC_UNSIGNED",
    "X86_64_RELOC_SIGNED",
    "X86_64_RELOC_BRANCH",
    "X86_64_RELOC_GOT_LOAD",
    "X86_64_RELOC_SUBTRACTOR",
    "X86_64_RELOC_TLV",
    "X86_64_RELOC_SIGNED_1",
    "X86_64_RELOC_SIGNED_2",
    "X86_64_RELOC_SIGNED_4",
];

#[test]
fn macho_x86_64_relocs_match_ld64_lld() {
    let source = relocs_fixture();
    for (opt, output) in [
        ("-O0", Output::Executable),
        ("-O1", Output::Executable),
        ("-O2", Output::Executable),
        ("-O3", Output::Executable),
        ("-Os", Output::Dylib),
        ("-O2", Output::Dylib),
        ("-O2", Output::NoPie),
    ] {
        let variant = format!("relocs {opt} {output:?}");
        let kinds = check_against_ld64("x86_64", &source, opt, output);
        assert_covers(&kinds, X86_64_RELOCS, &variant);
        if opt != "-O0" {
            // `cmpq _ext_var@GOTPCREL(%rip)`: at -O0 clang loads the pointer first.
            assert_covers(&kinds, &["X86_64_RELOC_GOT"], &variant);
        }
    }
}

#[test]
fn macho_x86_64_data_and_got_relaxation_match_ld64_lld() {
    let source = fixture("macho_data.c");
    for (opt, output) in [
        ("-O0", Output::Executable),
        ("-O1", Output::Dylib),
        ("-O2", Output::Executable),
        ("-O3", Output::Dylib),
        ("-O1", Output::NoPie),
    ] {
        let variant = format!("data {opt} {output:?}");
        let kinds = check_against_ld64("x86_64", &source, opt, output);
        assert_covers(
            &kinds,
            &[
                "X86_64_RELOC_UNSIGNED",
                "X86_64_RELOC_SIGNED",
                "X86_64_RELOC_BRANCH",
                "X86_64_RELOC_GOT_LOAD",
                "X86_64_RELOC_SUBTRACTOR",
            ],
            &variant,
        );
    }
}

/// The arm64 relocation types every variant of the relocation fixture exercises.
const ARM64_RELOCS: &[&str] = &[
    "ARM64_RELOC_UNSIGNED",
    "ARM64_RELOC_SUBTRACTOR",
    "ARM64_RELOC_BRANCH26",
    "ARM64_RELOC_PAGE21",
    "ARM64_RELOC_PAGEOFF12",
    "ARM64_RELOC_GOT_LOAD_PAGE21",
    "ARM64_RELOC_GOT_LOAD_PAGEOFF12",
    "ARM64_RELOC_TLVP_LOAD_PAGE21",
    "ARM64_RELOC_TLVP_LOAD_PAGEOFF12",
];

#[test]
fn macho_arm64_relocs_match_ld64_lld() {
    let source = relocs_fixture();
    for (opt, output) in [
        ("-O0", Output::Executable),
        ("-O1", Output::Executable),
        ("-O2", Output::Executable),
        ("-O3", Output::Dylib),
        ("-Os", Output::Dylib),
    ] {
        let variant = format!("arm64 relocs {opt} {output:?}");
        let kinds = check_against_ld64("arm64", &source, opt, output);
        assert_covers(&kinds, ARM64_RELOCS, &variant);
        if opt != "-O0" {
            // `table[1] = 5`: `adrp`/`str` of `_table + 4`; at -O0 clang adds the 4 itself.
            assert_covers(&kinds, &["ARM64_RELOC_ADDEND"], &variant);
        }
    }
}

#[test]
fn macho_arm64_data_and_got_relaxation_match_ld64_lld() {
    let source = fixture("macho_data.c");
    for (opt, output) in [
        ("-O0", Output::Executable),
        ("-O1", Output::Dylib),
        ("-O2", Output::Executable),
        ("-O3", Output::Dylib),
    ] {
        let variant = format!("arm64 data {opt} {output:?}");
        let kinds = check_against_ld64("arm64", &source, opt, output);
        assert_covers(
            &kinds,
            &[
                "ARM64_RELOC_UNSIGNED",
                "ARM64_RELOC_SUBTRACTOR",
                "ARM64_RELOC_BRANCH26",
                "ARM64_RELOC_PAGE21",
                "ARM64_RELOC_PAGEOFF12",
                "ARM64_RELOC_GOT_LOAD_PAGE21",
                "ARM64_RELOC_GOT_LOAD_PAGEOFF12",
                "ARM64_RELOC_POINTER_TO_GOT",
            ],
            &variant,
        );
    }
}

/// What hot-link cannot link is a diagnostic naming the atom, the Mach-O relocation and its
/// target, never a truncated field: a branch beyond ±128 MiB without a stub, a symbol with no
/// address, a GOT reference without a slot.
#[test]
fn macho_unresolvable_references_are_errors_with_their_relocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    for arch in ["x86_64", "arm64"] {
        let obj = compile(dir.path(), arch, "a.c", &relocs_fixture(), "-O2");
        let bytes = std::fs::read(&obj).expect("reading the object");
        let object = Object::parse(&obj, &bytes).expect("parse");
        let mut placement = MachOPlacement::default();
        let mut next = 0x1_0000_0000u64;
        for (i, atom) in object.atoms.iter().enumerate() {
            placement.atoms.insert(AtomId(i as u32), next);
            next += atom.size.next_multiple_of(16);
        }
        // `ext_fn` 4 GiB away with no stub; `ext_var` and `__tlv_bootstrap` unknown.
        placement
            .symbols
            .insert("_ext_fn".into(), 0x2_0000_0000 + next);
        let errors = relocate(&object, &placement).expect_err("must not link");
        let find = |target: &str| {
            errors
                .iter()
                .find(|e| e.target == target)
                .unwrap_or_else(|| panic!("{arch}: no error about {target}: {errors:#?}"))
        };
        let branch = find("_ext_fn");
        let want = if arch == "x86_64" {
            "X86_64_RELOC_BRANCH"
        } else {
            "ARM64_RELOC_BRANCH26"
        };
        assert_eq!(
            (branch.reloc.as_str(), branch.symbol.as_str()),
            (want, "_tick"),
            "{arch}"
        );
        let var = find("_ext_var");
        assert!(
            var.message.contains("undefined") || var.message.contains("GOT"),
            "{arch}: {var}"
        );
        assert!(
            find("__tlv_bootstrap").message.contains("undefined"),
            "{arch}"
        );
        assert!(
            errors
                .iter()
                .all(|e| e.section.contains(',') && !e.reloc.is_empty()),
            "{arch}: {errors:#?}"
        );
    }
}
