//! Parsing relocatable objects built by the system `cc`: atoms, symbols, relocations, DWARF
//! lines, and robustness against malformed input.

mod common;

use std::path::Path;

use common::*;
use hot_object::{
    AtomId, AtomKind, AtomOffset, Binding, ObjectError, RelocKind, SymbolDef, SymbolKind,
};

const CALLS: &str = include_str!("fixtures/calls.c");

#[test]
fn atoms_symbols_and_relocations() {
    let dir = tempfile::tempdir().unwrap();
    let path = compile_object(dir.path(), "calls.c", CALLS, &["-O0"]);
    let object = parse_object(&path);

    let add = atom_of(&object, "add");
    assert_eq!(object.atom(add).section_name, ".text.add");
    assert_eq!(object.atom(add).kind, AtomKind::Text);
    assert!(object.atom(add).size as usize == object.atom(add).bytes.len());

    let counter = atom_of(&object, "counter");
    assert_eq!(object.atom(counter).kind, AtomKind::Bss);
    assert!(object.atom(counter).bytes.is_empty());
    assert_eq!(object.atom(counter).size, 4);

    let hidden = atom_of(&object, "hidden_total");
    assert_eq!(object.atom(hidden).kind, AtomKind::Data);
    assert_eq!(object.atom(hidden).bytes, 5i32.to_le_bytes());

    // `greeting` is a pointer (writable data); the literal lives in a merge-strings section.
    let greeting = atom_of(&object, "greeting");
    assert_eq!(object.atom(greeting).kind, AtomKind::Data);
    let reloc = object.atom(greeting).relocs[0];
    assert_eq!(reloc.kind, RelocKind::Abs64);
    let target = object.symbol(reloc.symbol);
    let strings = match target.def {
        SymbolDef::Atom { atom, .. } => object.atom(atom),
        other => panic!("string target not in an atom: {other:?}"),
    };
    assert!(
        strings.section_name.starts_with(".rodata"),
        "{}",
        strings.section_name
    );
    assert_eq!(strings.kind, AtomKind::ReadOnly);
    let at = reloc.addend as usize;
    assert!(strings.bytes[at..].starts_with(b"hello\0"));

    // main calls add (PLT32 against the global symbol) and printf (undefined).
    let main = atom_of(&object, "main");
    let names: Vec<(&str, RelocKind)> = object
        .atom(main)
        .relocs
        .iter()
        .map(|r| (object.symbol_name(r.symbol), r.kind))
        .collect();
    assert!(names.contains(&("add", RelocKind::Plt32)), "{names:?}");
    assert!(names.iter().any(|(n, _)| *n == "printf"), "{names:?}");
    // The format string is anonymous read-only data, referenced PC-relative (addend - 4).
    let (format, at) = object
        .atom(main)
        .relocs
        .iter()
        .find_map(|r| match object.symbol(r.symbol).def {
            SymbolDef::Atom { atom, .. }
                if object.symbol(r.symbol).kind == SymbolKind::Section
                    && object.atom(atom).kind == AtomKind::ReadOnly =>
            {
                Some((object.atom(atom), (r.addend + 4) as usize))
            }
            _ => None,
        })
        .expect("reference to a string literal");
    assert!(
        format.bytes[at..].starts_with(b"%s %d\n\0"),
        "{}",
        format.section_name
    );
    let printf = object.symbols.iter().find(|s| s.name == "printf").unwrap();
    assert_eq!(printf.def, SymbolDef::Undefined);
    assert!(object
        .atom(main)
        .relocs
        .windows(2)
        .all(|w| w[0].offset <= w[1].offset));

    // Section symbols map to their atom at offset 0 and are named by their section.
    for (index, sym) in object.symbols.iter().enumerate() {
        if sym.kind != SymbolKind::Section {
            continue;
        }
        assert!(sym.name.is_empty());
        if let SymbolDef::Atom { atom, offset } = sym.def {
            assert_eq!(offset, AtomOffset(0));
            let id = hot_object::SymbolId(index as u32);
            assert_eq!(object.symbol_name(id), object.atom(atom).section_name);
            assert_eq!(
                object.atom_by_section_index(object.atom(atom).section_index),
                Some(atom)
            );
        }
    }
    // No atom for unwind tables, notes or debug sections.
    assert!(object
        .atoms
        .iter()
        .all(|a| !a.section_name.starts_with(".eh_frame")
            && !a.section_name.starts_with(".note")
            && !a.section_name.starts_with(".debug")));

    let twice = object.symbols.iter().find(|s| s.name == "twice").unwrap();
    assert_eq!(twice.binding, Binding::Local);
    assert_eq!(twice.kind, SymbolKind::Function);
}

#[test]
fn dwarf_lines_per_function_section() {
    let dir = tempfile::tempdir().unwrap();
    let path = compile_object(dir.path(), "calls.c", CALLS, &["-O0"]);
    let object = parse_object(&path);
    assert!(object.warnings.is_empty(), "{:?}", object.warnings);
    assert!(object
        .producer
        .as_deref()
        .is_some_and(|p| p.contains("-ffunction-sections")));
    assert_eq!(
        object.cu_name.as_deref(),
        Some(dir.path().join("calls.c").to_str().unwrap())
    );

    // Find the call to `twice` inside `add` through its relocation, and map it to a line.
    let add = atom_of(&object, "add");
    let call = object
        .atom(add)
        .relocs
        .iter()
        .find(|r| object.symbol_name(r.symbol).contains("twice"))
        .expect("call to twice");
    let line = object.line_of(add, call.offset).expect("line of the call");
    assert_eq!(line.line, line_containing(CALLS, "sum = twice(sum)"));
    assert_eq!(line.file, dir.path().join("calls.c"));
    assert!(line.column > 0);

    // Each function's rows start at its own offset 0 (sections are told apart by relocation).
    let main = atom_of(&object, "main");
    let first = object.line_of(main, AtomOffset(0)).unwrap();
    assert_eq!(first.line, line_containing(CALLS, "int main(void)") + 1);
    let first_add = object.line_of(add, AtomOffset(0)).unwrap();
    assert_eq!(
        first_add.line,
        line_containing(CALLS, "int add(int a, int b)") + 1
    );
    let printf_call = object
        .atom(main)
        .relocs
        .iter()
        .find(|r| object.symbol_name(r.symbol) == "printf")
        .unwrap();
    assert_eq!(
        object.line_of(main, printf_call.offset).unwrap().line,
        line_containing(CALLS, "printf(")
    );
}

/// The rows of each atom, read from its own line sequence on demand, are exactly those one
/// full pass of gimli over the line program gives, for gcc and clang, optimised or not,
/// DWARF 4 and 5 (and the direct reading was used: no fallback to the full pass).
#[test]
fn lines_read_per_atom_equal_the_full_pass() {
    let compilers: &[&str] = &["cc", "clang"];
    let flag_sets: &[&[&str]] = &[
        &["-O0"],
        &["-O2"],
        &["-O2", "-fPIC", "-gdwarf-4"],
        &["-Og", "-gdwarf-5"],
    ];
    let mut rows_seen = 0;
    for compiler in compilers {
        for flags in flag_sets {
            for (name, source) in [("calls.c", CALLS), ("decls.c", DECLS)] {
                let dir = tempfile::tempdir().unwrap();
                let mut all = vec!["-c", "-g", "-ffunction-sections", "-fdata-sections"];
                all.extend_from_slice(flags);
                let path = common::compile_with(compiler, dir.path(), name, source, &all, "out.o");
                let object = parse_object(&path);
                let lazy: Vec<Vec<_>> = (0..object.atoms.len() as u32)
                    .map(|a| object.lines_of(AtomId(a)).to_vec())
                    .collect();
                let what = format!("{compiler} {flags:?} {name}");
                assert!(
                    !object.lines_fell_back(),
                    "{what}: fell back to the full pass"
                );
                let full = object.lines_by_full_pass();
                for (atom, (lazy, full)) in lazy.iter().zip(&full).enumerate() {
                    assert_eq!(
                        lazy, full,
                        "{what}: atom {}",
                        object.atoms[atom].section_name
                    );
                }
                rows_seen += lazy.iter().map(Vec::len).sum::<usize>();
            }
        }
    }
    assert!(rows_seen > 100, "only {rows_seen} rows in all objects");
}

#[test]
fn dwarf4_lines_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = compile_object(dir.path(), "calls.c", CALLS, &["-O0", "-gdwarf-4"]);
    let object = parse_object(&path);
    let add = atom_of(&object, "add");
    let call = object
        .atom(add)
        .relocs
        .iter()
        .find(|r| object.symbol_name(r.symbol).contains("twice"))
        .unwrap();
    assert_eq!(
        object.line_of(add, call.offset).unwrap().line,
        line_containing(CALLS, "sum = twice(sum)")
    );
    assert_eq!(object.cu_comp_dir.as_deref(), dir.path().to_str());
}

#[test]
fn function_local_statics_know_their_function() {
    let dir = tempfile::tempdir().unwrap();
    let path = compile_object(dir.path(), "calls.c", CALLS, &["-O0"]);
    let object = parse_object(&path);
    let mut keys: Vec<String> = (0..object.symbols.len() as u32)
        .map(hot_object::SymbolId)
        .filter(|&s| object.symbol(s).kind == SymbolKind::Object)
        .filter(|&s| object.symbol(s).name.starts_with("calls"))
        .map(|s| object.match_name(s))
        .collect();
    keys.sort();
    assert_eq!(keys, ["tick/calls", "tock/calls"]);
}

#[test]
fn common_symbols() {
    let dir = tempfile::tempdir().unwrap();
    let path = compile_object(
        dir.path(),
        "common.c",
        "int shared_counter;\n",
        &["-fcommon"],
    );
    let object = parse_object(&path);
    let sym = object
        .symbols
        .iter()
        .find(|s| s.name == "shared_counter")
        .unwrap();
    assert!(
        matches!(sym.def, SymbolDef::Common { size: 4, align: 4 }),
        "{:?}",
        sym.def
    );
}

#[test]
fn tls_and_relro_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let source = "__thread int tls_zero;\n__thread int tls_init = 3;\n\
                  int x;\nint *const table[] = { &x };\n\
                  const int ro = 7;\n";
    let path = compile_object(dir.path(), "kinds.c", source, &["-fPIC"]);
    let object = parse_object(&path);
    assert_eq!(
        object.atom(atom_of(&object, "tls_zero")).kind,
        AtomKind::TlsBss
    );
    assert_eq!(
        object.atom(atom_of(&object, "tls_init")).kind,
        AtomKind::TlsData
    );
    let table = object.atom(atom_of(&object, "table"));
    assert!(
        table.section_name.starts_with(".data.rel.ro"),
        "{}",
        table.section_name
    );
    assert_eq!(table.kind, AtomKind::ReadOnly);
    assert_eq!(object.atom(atom_of(&object, "ro")).kind, AtomKind::ReadOnly);
}

#[test]
fn errors_are_classified() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new("x.o");
    assert!(matches!(
        hot_object::Object::parse(path, b"#!/bin/sh\necho hi\n"),
        Err(ObjectError::NotElf { .. })
    ));
    assert!(matches!(
        hot_object::Object::parse(path, b""),
        Err(ObjectError::NotElf { .. })
    ));

    let exe = compile_c(
        dir.path(),
        "main.c",
        "int main(void) { return 0; }\n",
        &[],
        "main",
    );
    let bytes = std::fs::read(&exe).unwrap();
    assert!(matches!(
        hot_object::Object::parse(&exe, &bytes),
        Err(ObjectError::NotRelocatable { .. })
    ));

    let obj = compile_object(dir.path(), "calls.c", CALLS, &[]);
    let mut bytes = std::fs::read(&obj).unwrap();
    // Pretend to be a RISC-V object (EM_RISCV = 243).
    bytes[18] = 243;
    bytes[19] = 0;
    match hot_object::Object::parse(&obj, &bytes) {
        Err(ObjectError::UnsupportedArch { arch, .. }) => assert!(arch.contains("RISCV"), "{arch}"),
        other => panic!("expected UnsupportedArch, got {other:?}"),
    }
    let bytes = std::fs::read(&obj).unwrap();
    assert!(matches!(
        hot_object::Object::parse(&obj, &bytes[..40]),
        Err(ObjectError::Malformed { .. })
    ));
}

/// A tiny deterministic generator (xorshift), so the fuzz test needs no extra crate and
/// every failure is reproducible from the seed printed.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[test]
fn malformed_input_never_panics() {
    fuzz_object(&["-O0"]);
    // Optimised PIC code: merge-string and constant sections, jump tables, `.cold` parts.
    fuzz_object(&["-O2", "-fPIC"]);
}

fn fuzz_object(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let obj = compile_object(dir.path(), "calls.c", CALLS, flags);
    let original = std::fs::read(&obj).unwrap();
    let path = obj.as_path();

    // Every truncation length of the header region, then coarser steps.
    let mut lengths: Vec<usize> = (0..256.min(original.len())).collect();
    lengths.extend((256..original.len()).step_by(97));
    for len in lengths {
        let _ = hot_object::Object::parse(path, &original[..len]);
        let _ = hot_object::LinkedImage::parse(path, &original[..len]);
    }

    // Garbage behind a valid ELF identification.
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..200 {
        let mut bytes = original[..20].to_vec();
        let len = (rng.next() % 4096) as usize;
        bytes.extend((0..len).map(|_| rng.next() as u8));
        let _ = hot_object::Object::parse(path, &bytes);
    }

    // Random byte flips of a real object: result may be Ok or Err, never a panic.
    // Half of the flips hit the ELF header and the section header table (at e_shoff, the
    // end of a gas object), where a wrong value misleads every later step.
    let baseline = hot_object::Object::parse(path, &original).unwrap();
    let shoff = u64::from_le_bytes(original[0x28..0x30].try_into().unwrap()) as usize;
    assert!(shoff < original.len());
    let mut ok = 0;
    let mut err = 0;
    let rounds: u64 = std::env::var("HOT_OBJECT_FUZZ_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1500);
    for round in 0..rounds {
        let mut bytes = original.clone();
        let flips = 1 + rng.next() % 8;
        for _ in 0..flips {
            let at = match rng.next() % 4 {
                0 => (rng.next() % 64) as usize,
                1 => shoff + (rng.next() % (bytes.len() - shoff) as u64) as usize,
                _ => (rng.next() % bytes.len() as u64) as usize,
            };
            bytes[at] ^= 1 << (rng.next() % 8);
        }
        let result = std::panic::catch_unwind(|| {
            let parsed = hot_object::Object::parse(path, &bytes);
            // The diff must cope with whatever the parser accepted.
            if let Ok(mutated) = &parsed {
                let _ = hot_object::changed_functions(&baseline, mutated);
                let _ = hot_object::changed_functions(mutated, &baseline);
            }
            parsed.map(|_| ())
        });
        match result {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => err += 1,
            Err(_) => panic!("parse panicked in round {round}"),
        }
    }
    assert_eq!(ok + err, rounds);
}

#[test]
fn patchable_function_entries_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = compile_object(
        dir.path(),
        "calls.c",
        CALLS,
        &["-O0", "-fpatchable-function-entry=16,8"],
    );
    let object = parse_object(&path);
    assert!(object
        .atoms
        .iter()
        .all(|a| a.section_name != "__patchable_function_entries"));
    let add = atom_of(&object, "add");
    let symbol = object.primary_symbol(add).unwrap();
    // The padding before the entry belongs to the atom; the symbol sits after it.
    assert_eq!(object.symbol_location(symbol), Some((add, AtomOffset(8))));
    assert!(object.atom(add).bytes[..8].iter().all(|&b| b == 0x90));
}

/// Variables of every storage class the linker reports on, each on a line of its own.
const DECLS: &str = r#"#include <stddef.h>
extern int announced;
int global_counter = 3;
static int file_total;
__thread int per_thread = 2;
int shared_name;
int announced = 4;

int tick(int n) {
  static int calls;
  int automatic = n;
  calls += automatic;
  return calls + file_total + per_thread + announced;
}

int tock(int n) {
  static int calls = 1;
  static int shared_name;
  calls += n;
  shared_name += calls;
  return calls + shared_name;
}
"#;

/// The symbol named `name` (exactly, suffix included).
fn symbol_named(object: &hot_object::Object, name: &str) -> hot_object::SymbolId {
    (0..object.symbols.len() as u32)
        .map(hot_object::SymbolId)
        .find(|&s| object.symbol(s).name == name)
        .unwrap_or_else(|| panic!("no symbol {name}"))
}

/// The symbol whose match name is `key` (`tick/calls`).
fn symbol_matching(object: &hot_object::Object, key: &str) -> hot_object::SymbolId {
    (0..object.symbols.len() as u32)
        .map(hot_object::SymbolId)
        .filter(|&s| object.symbol(s).kind == SymbolKind::Object)
        .find(|&s| object.match_name(s) == key)
        .unwrap_or_else(|| panic!("no symbol matching {key}"))
}

fn assert_decl(object: &hot_object::Object, id: hot_object::SymbolId, needle: &str, column: u32) {
    let name = object.symbol(id).name.clone();
    let decl = object
        .decl_line(id)
        .unwrap_or_else(|| panic!("no declaration line for {name}"));
    assert_eq!(
        decl.line,
        line_containing(DECLS, needle),
        "{name} declared at {decl:?}"
    );
    assert_eq!(decl.column, column, "{name} declared at {decl:?}");
    assert_eq!(
        decl.file.file_name().and_then(|f| f.to_str()),
        Some("decls.c"),
        "{name} declared at {decl:?}"
    );
    assert!(decl.file.is_absolute(), "{decl:?}");
}

#[test]
fn variables_know_their_declaration_line() {
    for dwarf in ["-gdwarf-5", "-gdwarf-4"] {
        for common in ["-fno-common", "-fcommon"] {
            let dir = tempfile::tempdir().unwrap();
            let path = compile_object(dir.path(), "decls.c", DECLS, &["-O0", dwarf, common]);
            let object = parse_object(&path);
            assert!(object.warnings.is_empty(), "{:?}", object.warnings);

            // A global, a file static, a thread-local, and a tentative definition (a common
            // symbol with -fcommon, whose DWARF location is relocated against itself).
            assert_decl(
                &object,
                symbol_named(&object, "global_counter"),
                "int global_counter",
                5,
            );
            assert_decl(
                &object,
                symbol_named(&object, "file_total"),
                "static int file_total",
                12,
            );
            assert_decl(
                &object,
                symbol_named(&object, "per_thread"),
                "__thread int per_thread",
                14,
            );
            assert_decl(
                &object,
                symbol_named(&object, "shared_name"),
                "int shared_name;",
                5,
            );
            // Declared `extern` first: the definition's line, not the declaration's.
            assert_decl(
                &object,
                symbol_named(&object, "announced"),
                "int announced = 4;",
                5,
            );
            // Function-local statics, two of them named alike, one named like a global.
            assert_decl(
                &object,
                symbol_matching(&object, "tick/calls"),
                "static int calls;",
                14,
            );
            assert_decl(
                &object,
                symbol_matching(&object, "tock/calls"),
                "static int calls = 1;",
                14,
            );
            assert_decl(
                &object,
                symbol_matching(&object, "tock/shared_name"),
                "static int shared_name;",
                14,
            );
            // Functions have line rows, not declaration lines.
            assert!(object.decl_line(symbol_named(&object, "tick")).is_none());
        }
    }
}

#[test]
fn eh_frame_records_name_their_cie_function_and_lsda() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = "struct Noisy { ~Noisy(); };\n\
                  void may_throw();\n\
                  int plain(int x) { return x + 1; }\n\
                  int guarded() { Noisy n; may_throw(); return 1; }\n";
    let path = compile_with(
        "c++",
        dir.path(),
        "eh.cpp",
        source,
        &["-c", "-O0", "-ffunction-sections", "-fdata-sections"],
        "eh.o",
    );
    let object = parse_object(&path);
    assert!(object.warnings.is_empty(), "{:?}", object.warnings);
    let cies = object
        .eh_frame
        .iter()
        .filter(|r| r.kind == hot_object::EhRecordKind::Cie)
        .count();
    // One CIE without a personality (`plain`), one with `__gxx_personality_v0` (`guarded`).
    assert_eq!(cies, 2, "{:#?}", object.eh_frame);
    for name in ["_Z5plaini", "_Z7guardedv"] {
        let atom = atom_of(&object, name);
        let fdes: Vec<usize> = object.fdes_of(atom).collect();
        assert_eq!(fdes.len(), 1, "{name}: {:#?}", object.eh_frame);
        let fde = &object.eh_frame[fdes[0]];
        let hot_object::EhRecordKind::Fde { cie, .. } = fde.kind else {
            unreachable!()
        };
        let cie = &object.eh_frame[cie];
        // Records are whole: the length word plus what it counts.
        for r in [fde, cie] {
            let length = u32::from_le_bytes(r.bytes[..4].try_into().expect("4 bytes"));
            assert_eq!(length as usize + 4, r.bytes.len());
        }
        // pc_begin is the first relocation, at 8; `guarded` also has its LSDA pointer into
        // its own `.gcc_except_table` section, and its CIE the personality pointer.
        assert_eq!(fde.relocs[0].offset.0, 8);
        let targets: Vec<String> = fde
            .relocs
            .iter()
            .map(|r| object.symbol_name(r.symbol).to_string())
            .collect();
        if name == "_Z7guardedv" {
            assert_eq!(
                targets,
                [".text._Z7guardedv", ".gcc_except_table._Z7guardedv"]
            );
            let personality: Vec<&str> = cie
                .relocs
                .iter()
                .map(|r| object.symbol_name(r.symbol))
                .collect();
            assert_eq!(personality, ["DW.ref.__gxx_personality_v0"]);
        } else {
            assert_eq!(targets, [".text._Z5plaini"]);
            assert!(cie.relocs.is_empty());
        }
    }
}

#[test]
fn eh_frame_relocations_in_rel_form_cost_only_the_unwind_table() {
    // gcc emits RELA on x86-64; an assembler may write REL or CREL. Such an `.eh_frame`
    // cannot be relocated here: the object is still read (its code swaps), without a table.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = compile_object(
        dir.path(),
        "rel.c",
        "int plain(int x) { return x + 1; }\n",
        &[],
    );
    let mut bytes = std::fs::read(&path).expect("read object");
    let word = |b: &[u8], at: usize, n: usize| {
        b[at..at + n]
            .iter()
            .rev()
            .fold(0u64, |v, &x| (v << 8) | x as u64) as usize
    };
    // ELF64 header: e_shoff at 0x28, e_shentsize 0x3a, e_shnum 0x3c, e_shstrndx 0x3e.
    let (shoff, shentsize, shnum, shstrndx) = (
        word(&bytes, 0x28, 8),
        word(&bytes, 0x3a, 2),
        word(&bytes, 0x3c, 2),
        word(&bytes, 0x3e, 2),
    );
    let strtab = word(&bytes, shoff + shstrndx * shentsize + 0x18, 8);
    let rela = (0..shnum)
        .map(|i| shoff + i * shentsize)
        .find(|&h| {
            let name = strtab + word(&bytes, h, 4);
            bytes[name..].starts_with(b".rela.eh_frame\0")
        })
        .expect("a .rela.eh_frame section");
    // sh_type: SHT_RELA (4) -> SHT_REL (9).
    assert_eq!(word(&bytes, rela + 4, 4), 4);
    bytes[rela + 4] = 9;
    let object = hot_object::Object::parse(&path, &bytes)
        .unwrap_or_else(|e| panic!("an object with REL .eh_frame relocations is refused: {e}"));
    assert!(object.eh_frame.is_empty(), "{:#?}", object.eh_frame);
    assert!(
        object
            .warnings
            .iter()
            .any(|w| w.contains(".eh_frame not read") && w.contains("SHT_REL")),
        "{:?}",
        object.warnings
    );
    assert!(object.symbols.iter().any(|s| s.name == "plain"));
}

#[test]
fn constructors_in_startup_order() {
    // Declared in the reverse of the order the startup code runs them: prioritised ones by
    // priority, then the plain `.init_array` in entry order.
    let source = "int order[8]; int n;\n\
        __attribute__((constructor)) static void plain_a(void) { order[n++] = 1; }\n\
        __attribute__((constructor(300))) static void late(void) { order[n++] = 3; }\n\
        __attribute__((constructor(200))) static void early(void) { order[n++] = 2; }\n\
        __attribute__((constructor)) void plain_b(void) { order[n++] = 4; }\n";
    let dir = tempfile::tempdir().unwrap();
    let path = compile_object(dir.path(), "ctors.c", source, &["-O0"]);
    let object = parse_object(&path);
    let names: Vec<(Option<u32>, String)> = object
        .constructors
        .iter()
        .map(|c| {
            // gas writes a local function's entry as its section symbol plus an offset.
            let name = match object.symbol(c.symbol).def {
                SymbolDef::Atom { atom, offset } => {
                    let at = offset.0 as i64 + c.addend;
                    object
                        .atom(atom)
                        .symbols
                        .iter()
                        .map(|&s| object.symbol(s))
                        .find(|s| {
                            s.kind == SymbolKind::Function
                                && matches!(s.def, SymbolDef::Atom { offset, .. } if offset.0 as i64 == at)
                        })
                        .map(|s| s.name.to_string())
                        .unwrap_or_default()
                }
                other => panic!("constructor not in an atom: {other:?}"),
            };
            (c.priority, name)
        })
        .collect();
    assert_eq!(
        names,
        [
            (Some(200), "early".to_string()),
            (Some(300), "late".to_string()),
            (None, "plain_a".to_string()),
            (None, "plain_b".to_string()),
        ]
    );
}
