//! aarch64 objects from the Debian cross compiler (`gcc-aarch64-linux-gnu`): the same
//! atoms, relocations (raw types kept), line tables and diff as on x86-64.

mod common;

use common::*;
use hot_object::{changed_functions, AtomKind, Machine, Object, RelocKind};

/// The x86-64 fixture without libc headers (the cross compiler has none installed).
fn source() -> String {
    include_str!("fixtures/calls.c").replace("#include <stdio.h>", "int printf(const char *, ...);")
}

fn compile(dir: &std::path::Path, source: &str, output: &str, flags: &[&str]) -> Object {
    let mut all = vec!["-c", "-g", "-ffunction-sections", "-fdata-sections"];
    all.extend_from_slice(flags);
    let path = compile_with(
        "aarch64-linux-gnu-gcc",
        dir,
        "calls.c",
        source,
        &all,
        output,
    );
    parse_object(&path)
}

#[test]
fn aarch64_object() {
    let dir = tempfile::tempdir().unwrap();
    let source = source();
    let object = compile(dir.path(), &source, "calls.o", &["-O0"]);
    assert_eq!(object.machine, Machine::Aarch64);
    assert!(object.warnings.is_empty(), "{:?}", object.warnings);

    let main = atom_of(&object, "main");
    assert_eq!(object.atom(main).kind, AtomKind::Text);
    let call = object
        .atom(main)
        .relocs
        .iter()
        .find(|r| object.symbol_name(r.symbol) == "printf")
        .expect("call to printf");
    assert_eq!(call.raw_type, object::elf::R_AARCH64_CALL26.0);
    assert_eq!(call.kind, RelocKind::Call26);
    assert_eq!(
        hot_object::RelocKind::raw_name(Machine::Aarch64, call.raw_type),
        "R_AARCH64_CALL26"
    );
    let line = object
        .line_of(main, call.offset)
        .expect("line of the printf call");
    assert_eq!(line.line, line_containing(&source, "printf(\""));
    assert_eq!(line.file, dir.path().join("calls.c"));

    let greeting = atom_of(&object, "greeting");
    assert_eq!(object.atom(greeting).relocs[0].kind, RelocKind::Abs64);
}

#[test]
fn aarch64_string_change_changes_only_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let source = source();
    let changed = source.replace("%s %d\\n", "%s and %d\\n");
    assert_ne!(source, changed);
    for flags in [&["-O0"][..], &["-O2"][..]] {
        let old = compile(dir.path(), &source, "old.o", flags);
        let new = compile(dir.path(), &changed, "new.o", flags);
        let diff = changed_functions(&old, &new);
        let names: Vec<&str> = diff.changed.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["main"], "{flags:?}: {diff:#?}");
        assert!(changed_functions(&old, &old).is_empty());
    }
}
