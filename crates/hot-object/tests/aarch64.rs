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

/// An aarch64 executable (linked without libc by the cross toolchain) is read like an
/// x86-64 one: its machine, its PLT entries by the GOT slot they jump through (ld's `adrp
/// x16; ldr x17, [x16, #off]; add x16; br x17`), with and without `-z force-bti` (the
/// lazy PLT header, which reads the resolver's unnamed slot, is not an entry), and its
/// `JUMP_SLOT`s.
#[test]
fn aarch64_image_plt_entries() {
    let dir = tempfile::tempdir().unwrap();
    let lib = compile_with(
        "aarch64-linux-gnu-gcc",
        dir.path(),
        "lib.c",
        "int ext_fn(int x) { return x + 1; }\nint ext_other(int x) { return x - 1; }\n",
        &["-shared", "-fPIC", "-nostdlib", "-mbranch-protection=bti"],
        "libext.so",
    );
    let source = "int ext_fn(int);\nint ext_other(int);\n\
                  int main(void) { return ext_fn(1) + ext_other(2); }\n";
    for flags in [
        &["-O2", "-no-pie"][..],
        &[
            "-O2",
            "-pie",
            "-fPIE",
            "-mbranch-protection=bti",
            "-Wl,-z,force-bti",
        ][..],
    ] {
        let object = compile_with(
            "aarch64-linux-gnu-gcc",
            dir.path(),
            "main.c",
            source,
            &[&["-c"][..], flags].concat(),
            "main.o",
        );
        let exe = dir.path().join("main");
        let status = std::process::Command::new("aarch64-linux-gnu-gcc")
            .args(flags)
            .args(["-nostdlib", "-Wl,-e,main"])
            .arg(&object)
            .arg(&lib)
            .arg("-o")
            .arg(&exe)
            .status()
            .expect("run aarch64-linux-gnu-gcc");
        assert!(status.success(), "linking {flags:?}");
        let bytes = std::fs::read(&exe).unwrap();
        let image = hot_object::LinkedImage::parse(&exe, &bytes).unwrap();
        assert_eq!(image.machine, Machine::Aarch64);
        assert_eq!(image.plt_entries.len(), 2, "{:?}", image.plt_entries);
        for name in ["ext_fn", "ext_other"] {
            let &(_, entry) = image
                .plt_entries
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| {
                    panic!(
                        "{flags:?}: no PLT entry for {name}: {:?}",
                        image.plt_entries
                    )
                });
            // The entry itself, or a `bti c` right before it (binutils versions differ on
            // whether `-z force-bti` puts one in each entry): then `adrp x16` follows.
            let word =
                |at: u64| u32::from_le_bytes(image.bytes_at(at, 4).unwrap().try_into().unwrap());
            let adrp = if word(entry) == 0xd503_245f {
                entry + 4
            } else {
                entry
            };
            assert_eq!(
                word(adrp) & 0x9f00_001f,
                0x9000_0010,
                "{flags:?}: adrp x16 at {adrp:#x}"
            );
            assert!(
                image
                    .got_slots
                    .iter()
                    .any(|s| s.symbol == name && s.kind == hot_object::GotSlotKind::JumpSlot),
                "{name}'s JUMP_SLOT"
            );
        }
    }
}
