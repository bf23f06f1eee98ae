//! Mach-O objects from `clang --target=x86_64-apple-macos11` and `--target=arm64-apple-macos11`
//! (freestanding sources: `-c` needs no SDK): `subsections_via_symbols` atoms, and every
//! relocation type decoded to the crate's model with the raw Mach-O type kept.

mod common;

use common::*;
use hot_object::{AtomKind, Machine, Object, ObjectFormat, Reloc, RelocKind, SymbolKind};

const SOURCE: &str = include_str!("fixtures/macho_relocs.c");

fn compile(dir: &std::path::Path, target: &str, opt: &str) -> Object {
    let target = format!("--target={target}-apple-macos11");
    let output = format!("{}{opt}.o", &target[9..]);
    let path = compile_with(
        "clang",
        dir,
        "macho_relocs.c",
        SOURCE,
        &[&target, opt, "-c"],
        &output,
    );
    parse_object(&path)
}

/// The relocations of `function`'s atom as (target name, decoded kind, Mach-O type name,
/// addend). A section symbol (a string literal's atom) is named by its contents.
fn relocs_of(object: &Object, function: &str) -> Vec<(String, RelocKind, String, i64)> {
    let atom = atom_of(object, function);
    object
        .atom(atom)
        .relocs
        .iter()
        .map(|r: &Reloc| {
            let sym = object.symbol(r.symbol);
            let name = match (sym.kind, sym.def) {
                (SymbolKind::Section, hot_object::SymbolDef::Atom { atom, .. }) => {
                    String::from_utf8_lossy(&object.atom(atom).bytes).into_owned()
                }
                _ => sym.name.to_string(),
            };
            (name, r.kind, object.reloc_type_name(r.raw_type), r.addend)
        })
        .collect()
}

fn row(name: &str, kind: RelocKind, raw: &str, addend: i64) -> (String, RelocKind, String, i64) {
    (name.to_string(), kind, raw.to_string(), addend)
}

#[test]
fn macho_x86_64_relocations_decode_to_the_elf_model() {
    let dir = tempfile::tempdir().unwrap();
    let object = compile(dir.path(), "x86_64", "-O2");
    assert_eq!(object.machine, Machine::X86_64);
    assert_eq!(object.format, ObjectFormat::MachO);
    use RelocKind::*;
    // PC-relative addends are ELF-style (`S + A - P`): -4, less the immediate that follows
    // (`SIGNED_1/2/4` carry -1/-2/-4 in the field and the linker adds it back).
    assert_eq!(
        relocs_of(&object, "_tick"),
        vec![
            row("_counter", Pc32, "X86_64_RELOC_SIGNED", -4),
            row("_counter", Pc32, "X86_64_RELOC_SIGNED", -4),
            row("_flag", Pc32, "X86_64_RELOC_SIGNED_1", -5),
            row("_half", Pc32, "X86_64_RELOC_SIGNED_2", -6),
            row("_word", Pc32, "X86_64_RELOC_SIGNED_4", -8),
            row("_tls_counter", Tlvp, "X86_64_RELOC_TLV", -4),
            // table[1] = 5: +4 for the element, -8 for the field and the imm32 after it.
            row("_table", Pc32, "X86_64_RELOC_SIGNED", -4),
            row("_ext_var", RexGotPcRelX, "X86_64_RELOC_GOT_LOAD", -4),
            row("_ext_fn", Plt32, "X86_64_RELOC_BRANCH", -4),
            row("_tls_init", Tlvp, "X86_64_RELOC_TLV", -4),
        ]
    );
    assert_eq!(
        relocs_of(&object, "_is_ext"),
        vec![row("_ext_var", GotPcRel, "X86_64_RELOC_GOT", -4)]
    );
    // `lea L_.str(%rip)`: section-relative, becomes the string's own atom + 0 - 4.
    assert_eq!(
        relocs_of(&object, "_greeting"),
        vec![row("hello\0", Pc32, "X86_64_RELOC_SIGNED", -4)]
    );
    let greeting = object.atom(atom_of(&object, "_greeting"));
    assert_eq!(
        &greeting.bytes[4..11],
        &[0x48, 0x8d, 0x05, 0, 0, 0, 0],
        "the section-relative displacement is zeroed (it holds object-file addresses)"
    );
    check_data(&object);
}

/// Data relocations are the same on both machines: pointers and SUBTRACTOR pairs.
fn check_data(object: &Object) {
    use RelocKind::*;
    let (unsigned, subtractor) = match object.machine {
        Machine::X86_64 => ("X86_64_RELOC_UNSIGNED", "X86_64_RELOC_SUBTRACTOR"),
        Machine::Aarch64 => ("ARM64_RELOC_UNSIGNED", "ARM64_RELOC_SUBTRACTOR"),
    };
    assert_eq!(
        relocs_of(object, "_diff"),
        vec![
            row("_anchor", Subtractor, subtractor, 0),
            row("_table", Abs64, unsigned, 0)
        ]
    );
    assert_eq!(
        relocs_of(object, "_diff32"),
        vec![
            row("_table", Subtractor, subtractor, 0),
            row("_greeting", Abs32, unsigned, 0)
        ]
    );
    assert_eq!(
        relocs_of(object, "_table_ptr"),
        vec![row("_table", Abs64, unsigned, 8)]
    );
    assert_eq!(
        relocs_of(object, "_fn_ptr"),
        vec![row("_ext_fn", Abs64, unsigned, 0)]
    );
    // Each symbol starts an atom: `table`, `table_ptr`, `fn_ptr` are separate atoms of
    // __DATA,__data, sized up to the next symbol (so padding before it is included).
    for (name, size) in [("_table", 16), ("_table_ptr", 8), ("_fn_ptr", 8)] {
        let atom = object.atom(atom_of(object, name));
        assert_eq!(atom.section_name, "__DATA,__data", "{name}");
        assert_eq!(atom.kind, AtomKind::Data, "{name}");
        assert!(
            (size..size + 8).contains(&atom.size),
            "{name}: {} bytes",
            atom.size
        );
    }
    assert_eq!(
        object.atom(atom_of(object, "_table_ptr")).bytes,
        vec![0; 8],
        "the inline addend is moved into the relocation"
    );
    let text = object.atom(atom_of(object, "_tick"));
    assert_eq!(
        (text.kind, text.section_name.as_str()),
        (AtomKind::Text, "__TEXT,__text")
    );
    let anchor = object.atom(atom_of(object, "_anchor"));
    assert_eq!(anchor.kind, AtomKind::Bss);
    let tls = object.atom(atom_of(object, "_tls_init$tlv$init"));
    assert_eq!(tls.kind, AtomKind::TlsData);
    let tls_bss = object.atom(atom_of(object, "_tls_counter$tlv$init"));
    assert_eq!(tls_bss.kind, AtomKind::TlsBss);
    // The descriptor: `_tlv_bootstrap`, 0, the offset of the initial value.
    let desc = object.symbol(
        object
            .primary_symbol(atom_of(object, "_tls_init"))
            .expect("descriptor symbol"),
    );
    assert_eq!(desc.kind, SymbolKind::Tls);
    let strings = object.atom(atom_of_bytes(object, b"hello\0"));
    assert!(strings.merge_strings && strings.kind == AtomKind::ReadOnly);
}

fn atom_of_bytes(object: &Object, bytes: &[u8]) -> hot_object::AtomId {
    (0..object.atoms.len() as u32)
        .map(hot_object::AtomId)
        .find(|&a| object.atom(a).bytes == bytes)
        .unwrap_or_else(|| panic!("no atom holding {bytes:?}"))
}

#[test]
fn macho_arm64_relocations_decode_with_their_addend_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let object = compile(dir.path(), "arm64", "-O2");
    assert_eq!(object.machine, Machine::Aarch64);
    assert_eq!(object.format, ObjectFormat::MachO);
    use RelocKind::*;
    let tick = relocs_of(&object, "_tick");
    let expect = [
        row("_counter", Arm64Page21, "ARM64_RELOC_PAGE21", 0),
        row("_counter", Arm64PageOff12, "ARM64_RELOC_PAGEOFF12", 0),
        row(
            "_tls_counter",
            Arm64TlvpPage21,
            "ARM64_RELOC_TLVP_LOAD_PAGE21",
            0,
        ),
        row(
            "_tls_counter",
            Arm64TlvpPageOff12,
            "ARM64_RELOC_TLVP_LOAD_PAGEOFF12",
            0,
        ),
        // table[1]: the +4 comes from the ARM64_RELOC_ADDEND before each.
        row("_table", Arm64Page21, "ARM64_RELOC_PAGE21", 4),
        row("_table", Arm64PageOff12, "ARM64_RELOC_PAGEOFF12", 4),
        row("_ext_var", Arm64GotPage21, "ARM64_RELOC_GOT_LOAD_PAGE21", 0),
        row(
            "_ext_var",
            Arm64GotPageOff12,
            "ARM64_RELOC_GOT_LOAD_PAGEOFF12",
            0,
        ),
        row("_ext_fn", Arm64Branch26, "ARM64_RELOC_BRANCH26", 0),
    ];
    for e in &expect {
        assert!(tick.contains(e), "missing {e:?} in {tick:#?}");
    }
    assert!(
        tick.iter().all(|r| r.2 != "ARM64_RELOC_ADDEND"),
        "ADDEND is folded into the relocation after it: {tick:#?}"
    );
    assert_eq!(
        relocs_of(&object, "_greeting"),
        vec![
            row("l_.str", Arm64Page21, "ARM64_RELOC_PAGE21", 0),
            row("l_.str", Arm64PageOff12, "ARM64_RELOC_PAGEOFF12", 0)
        ]
    );
    check_data(&object);
}

/// Every optimisation level parses, and each object's atoms cover their sections with the
/// relocations inside them.
#[test]
fn macho_objects_parse_at_every_optimisation_level() {
    let dir = tempfile::tempdir().unwrap();
    for target in ["x86_64", "arm64"] {
        for opt in ["-O0", "-O1", "-O2", "-O3", "-Os"] {
            let object = compile(dir.path(), target, opt);
            let names: Vec<_> = (0..object.atoms.len() as u32)
                .filter_map(|a| object.primary_symbol(hot_object::AtomId(a)))
                .map(|s| object.symbol(s).name.clone())
                .collect();
            for f in ["_greeting", "_is_ext", "_tick", "_table", "_diff"] {
                assert!(
                    names.iter().any(|n| n == f),
                    "{target} {opt}: no atom {f}: {names:?}"
                );
            }
            for atom in &object.atoms {
                assert!(atom.bytes.is_empty() || atom.bytes.len() as u64 == atom.size);
                for r in &atom.relocs {
                    assert!(
                        r.offset.0 < atom.size,
                        "{target} {opt}: {r:?} outside {}",
                        atom.section_name
                    );
                    assert_ne!(r.kind, RelocKind::Unknown, "{target} {opt}: {r:?}");
                }
            }
        }
    }
}

/// Truncated or corrupted Mach-O bytes are an error, never a panic.
#[test]
fn macho_damaged_objects_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = compile_with(
        "clang",
        dir.path(),
        "macho_relocs.c",
        SOURCE,
        &["--target=x86_64-apple-macos11", "-O2", "-c"],
        "d.o",
    );
    let bytes = std::fs::read(&path).unwrap();
    let mut errors = 0;
    for len in (4..bytes.len()).step_by(7) {
        if Object::parse(&path, &bytes[..len]).is_err() {
            errors += 1;
        }
    }
    assert!(errors > 0);
    // Flip bytes through the load commands, symbol table and relocations.
    for i in (0..bytes.len()).step_by(13) {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0xa5;
        let _ = Object::parse(&path, &damaged);
    }
}

/// `ld64.lld`, under its plain name or Debian's versioned one.
/// A linked Mach-O image (ld64.lld's output) read into the image model: symbols, the GOT and
/// stubs named through the indirect symbol table, pointers dyld binds, rebases, the
/// thread-local template.
#[test]
fn macho_image_model_of_an_ld64_lld_executable() {
    use hot_object::{GotSlotKind, LinkedImage};
    let dir = tempfile::tempdir().unwrap();
    for arch in ["x86_64", "arm64"] {
        let source = format!("{SOURCE}\nint main(void) {{ return tick(1); }}\n");
        let obj = compile_with(
            "clang",
            dir.path(),
            "macho_relocs.c",
            &source,
            &[&format!("--target={arch}-apple-macos11"), "-O2", "-c"],
            &format!("{arch}.o"),
        );
        let exe = dir.path().join(format!("{arch}.out"));
        let status = std::process::Command::new(ld64())
            .args(["-arch", arch, "-platform_version", "macos", "11.0", "11.0"])
            .args(["-undefined", "dynamic_lookup", "-o"])
            .arg(&exe)
            .arg(&obj)
            .status()
            .expect("running ld64.lld");
        assert!(status.success());
        let bytes = std::fs::read(&exe).unwrap();
        let image = LinkedImage::parse(&exe, &bytes).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert!(image.position_independent && image.has_symtab, "{arch}");
        assert_eq!(
            image.build_id.as_ref().map(Vec::len),
            Some(16),
            "{arch}: LC_UUID"
        );
        let sym = |name: &str| {
            image
                .symbols
                .iter()
                .find(|s| s.name == name && s.defined)
                .unwrap_or_else(|| panic!("{arch}: no symbol {name}"))
        };
        let tick = sym("_tick");
        assert_eq!(tick.kind, SymbolKind::Function);
        assert!(tick.size > 16 && tick.section.as_deref() == Some("__TEXT,__text"));
        assert_eq!(sym("_counter").binding, hot_object::Binding::Local);
        assert_eq!(sym("_tls_init").kind, SymbolKind::Tls);
        let slot = |name: &str, kind: GotSlotKind| {
            image
                .got_slots
                .iter()
                .find(|s| s.symbol == name && s.kind == kind)
                .unwrap_or_else(|| {
                    panic!("{arch}: no {kind:?} slot of {name}: {:?}", image.got_slots)
                })
        };
        // The GOT slot of the imported variable, bound by dyld; its call through a stub.
        let got = slot("_ext_var", GotSlotKind::GlobDat);
        assert_eq!(
            image.section_at(got.vaddr).map(|s| s.name.as_str()),
            Some("__DATA_CONST,__got")
        );
        assert!(
            image.plt_entries.iter().any(|(n, _)| n == "_ext_fn"),
            "{arch}: stub of _ext_fn"
        );
        // `fn_ptr = ext_fn`: a bound pointer in __data; the descriptors' `_tlv_bootstrap`.
        assert_eq!(
            slot("_ext_fn", GotSlotKind::Abs64).vaddr,
            sym("_fn_ptr").vaddr
        );
        assert_eq!(
            slot("__tlv_bootstrap", GotSlotKind::Abs64).vaddr,
            sym("_tls_init").vaddr
        );
        // `table_ptr = &table[2]`: rebased, holding its link-time value.
        assert!(
            image
                .relative_relocs
                .contains(&(sym("_table_ptr").vaddr, (sym("_table").vaddr + 8) as i64)),
            "{arch}: rebase of _table_ptr"
        );
        let tls = image.tls.expect("thread-local template");
        assert_eq!(
            (tls.filesz, tls.memsz),
            (4, 8),
            "{arch}: __thread_data + __thread_bss"
        );
        assert_eq!(tls.vaddr, sym("_tls_init$tlv$init").vaddr);
        // Damaged images are errors, never panics.
        for i in (0..bytes.len()).step_by(61) {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x5a;
            let _ = LinkedImage::parse(&exe, &damaged);
            let _ = LinkedImage::parse(&exe, &bytes[..i]);
        }
    }
}

/// The diff of two compiles works on Mach-O atoms: a changed string literal changes only its
/// user, a changed body only its function (section-relative fields hold object addresses
/// that move with unrelated code, and are not compared).
#[test]
fn macho_diff_reports_only_the_edited_function() {
    use hot_object::changed_functions;
    let dir = tempfile::tempdir().unwrap();
    let edits = [
        ("return \"hello\";", "return \"hello, world\";", "_greeting"),
        (
            "return x * 3 + counter;",
            "return x * 4 + counter;",
            "_helper",
        ),
    ];
    for arch in ["x86_64", "arm64"] {
        for opt in ["-O0", "-O2"] {
            let old = compile(dir.path(), arch, opt);
            assert!(changed_functions(&old, &old).is_empty());
            for (from, to, function) in edits {
                let source = SOURCE.replace(from, to);
                assert_ne!(source, SOURCE);
                let path = compile_with(
                    "clang",
                    dir.path(),
                    "macho_relocs.c",
                    &source,
                    &[&format!("--target={arch}-apple-macos11"), opt, "-c"],
                    "new.o",
                );
                let new = parse_object(&path);
                let diff = changed_functions(&old, &new);
                let names: Vec<&str> = diff.changed.iter().map(|m| m.name.as_str()).collect();
                // At -O2 `helper` is inlined into `tick`: the edit changes `tick`.
                let expect = if function == "_helper" && opt == "-O2" {
                    "_tick"
                } else {
                    function
                };
                assert_eq!(names, [expect], "{arch} {opt} {from}: {diff:#?}");
                assert!(
                    diff.added.is_empty() && diff.removed.is_empty(),
                    "{arch} {opt}: {diff:#?}"
                );
            }
        }
    }
}

/// C++ on Mach-O: `__mod_init_func` entries become the object's constructors, in order;
/// an inline function is a weak definition, kept once by the linker like an ELF COMDAT.
#[test]
fn macho_cpp_constructors_and_weak_definitions() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["x86_64", "arm64"] {
        let path = compile_with(
            "clang++",
            dir.path(),
            "macho_ctors.cc",
            include_str!("fixtures/macho_ctors.cc"),
            &[
                &format!("--target={arch}-apple-macos11"),
                "-stdlib=libc++",
                "-O0",
                "-c",
            ],
            &format!("ctors_{arch}.o"),
        );
        let object = parse_object(&path);
        let ctors: Vec<&str> = object
            .constructors
            .iter()
            .map(|c| object.symbol(c.symbol).name.as_str())
            .collect();
        assert!(
            ctors.contains(&"__GLOBAL__sub_I_macho_ctors.cc")
                && ctors.iter().any(|c| c.contains("boot")),
            "{arch}: constructors {ctors:?}"
        );
        assert!(
            object
                .constructors
                .iter()
                .all(|c| c.priority.is_none() && c.addend == 0),
            "{arch}: {:?}",
            object.constructors
        );
        let twice = atom_of(&object, "__Z5twicei");
        assert!(object.atom(twice).comdat, "{arch}: weak definition");
        let sym = object.symbol(object.primary_symbol(twice).unwrap());
        assert_eq!(sym.binding, hot_object::Binding::Weak, "{arch}");
        assert!(!object.atom(atom_of(&object, "__Z3usei")).comdat, "{arch}");
    }
}
