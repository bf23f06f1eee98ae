//! Large objects: more sections than fit in 16 bits (extended section numbering), and many
//! functions in one executable.

mod common;

use std::fmt::Write as _;
use std::process::Command;

use common::*;
use hot_object::{AtomOffset, LinkedImage};

/// 33,000 functions in their own sections plus their relocation sections exceed
/// SHN_LORESERVE (0xff00): section indices of symbols go through SHT_SYMTAB_SHNDX and the
/// section count through section 0. Assembled directly (fast), with DWARF line info.
#[test]
fn extended_section_numbering() {
    const FUNCTIONS: usize = 33_000;
    let dir = tempfile::tempdir().unwrap();
    let mut asm = String::new();
    for i in 0..FUNCTIONS {
        writeln!(
            asm,
            ".section .text.f{i},\"ax\",@progbits\n.globl f{i}\n.type f{i},@function\nf{i}:\n\
             \tnop\n\tcall g\n\tret\n.size f{i}, .-f{i}"
        )
        .unwrap();
    }
    let source = dir.path().join("many.s");
    std::fs::write(&source, &asm).unwrap();
    let object_path = dir.path().join("many.o");
    let status = Command::new("as")
        .arg("--gdwarf-5")
        .arg(&source)
        .arg("-o")
        .arg(&object_path)
        .status()
        .expect("run as");
    assert!(status.success());

    let started = std::time::Instant::now();
    let object = parse_object(&object_path);
    let elapsed = started.elapsed();
    assert_eq!(object.atoms.len(), FUNCTIONS);
    let last = atom_of(&object, &format!("f{}", FUNCTIONS - 1));
    assert!(object.atom(last).section_index > 0xff00);
    let reloc = object.atom(last).relocs[0];
    assert_eq!(object.symbol_name(reloc.symbol), "g");
    assert_eq!(reloc.offset, AtomOffset(2));
    // Line rows of the last function: its `call g` line in the assembly source.
    let call_line = asm
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("call g"))
        .nth(FUNCTIONS - 1)
        .map(|(i, _)| i as u32 + 1)
        .unwrap();
    let line = object
        .line_of(last, reloc.offset)
        .expect("line of the call");
    assert_eq!(line.line, call_line);
    assert_eq!(line.file, source);
    // Linear work: far below what a quadratic pass over 66k sections would take.
    assert!(elapsed.as_secs() < 30, "parse took {elapsed:?}");
}

#[test]
fn many_function_executable() {
    const FUNCTIONS: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let mut source = String::from("#include <stdio.h>\n");
    for i in 0..FUNCTIONS {
        writeln!(
            source,
            "static int v{i} = {i};\nint f{i}(int x) {{ if (x > {i}) printf(\"f{i} %d\\n\", x); return x + v{i}; }}"
        )
        .unwrap();
    }
    source.push_str("int main(int c, char **v) { (void)v; return f0(c) + f1999(c); }\n");
    let exe = compile_c(dir.path(), "many.c", &source, &["-O0", "-g"], "many");
    let bytes = std::fs::read(&exe).unwrap();
    let image = LinkedImage::parse(&exe, &bytes).unwrap();
    let functions = image
        .symbols
        .iter()
        .filter(|s| !s.dynamic && s.name.starts_with('f'))
        .count();
    assert!(functions >= FUNCTIONS);
    let v = image.symbols.iter().find(|s| s.name == "v1999").unwrap();
    assert!(v.tu.is_some());
    assert_eq!(image.bytes_at(v.vaddr, 4), Some(&1999i32.to_le_bytes()[..]));
}
