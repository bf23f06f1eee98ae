//! Parsing linked images: a PIE and a non-PIE executable built by `cc`, a stripped one, and
//! the system libc.

mod common;

use common::*;
use hot_object::{GotSlotKind, LinkedImage, ObjectError, SymbolKind};

const IMAGE: &str = include_str!("fixtures/image.c");

fn parse_image(path: &std::path::Path) -> LinkedImage {
    let bytes = std::fs::read(path).expect("read image");
    match LinkedImage::parse(path, &bytes) {
        Ok(image) => image,
        Err(e) => panic!("parse {}: {e}", path.display()),
    }
}

/// `name@plt` entries as GNU objdump labels them.
fn objdump_plt(path: &std::path::Path) -> Vec<(String, u64)> {
    let out = std::process::Command::new("objdump")
        .arg("-d")
        .arg(path)
        .output()
        .expect("objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut entries: Vec<(String, u64)> = text
        .lines()
        .filter_map(|line| {
            let (addr, rest) = line.split_once(" <")?;
            let name = rest.strip_suffix("@plt>:")?;
            Some((name.to_string(), u64::from_str_radix(addr.trim(), 16).ok()?))
        })
        .collect();
    entries.sort();
    entries
}

fn check_plt(image: &LinkedImage, path: &std::path::Path) {
    let mut ours = image.plt_entries.clone();
    ours.sort();
    assert_eq!(ours, objdump_plt(path));
}

fn check_executable(image: &LinkedImage, dir: &std::path::Path) {
    assert!(image.has_symtab);
    assert!(image.warnings.is_empty(), "{:?}", image.warnings);
    assert!(image.build_id.as_ref().is_some_and(|id| !id.is_empty()));
    let main = image
        .symbols
        .iter()
        .find(|s| s.name == "main" && !s.dynamic)
        .expect("main");
    assert_eq!(main.kind, SymbolKind::Function);
    assert_eq!(main.section.as_deref(), Some(".text"));
    assert!(main.defined);
    // The body of main is in the section data.
    let body = image
        .bytes_at(main.vaddr, main.size as usize)
        .expect("main bytes");
    assert_eq!(body.len() as u64, main.size);
    assert!(main.vaddr >= image.vaddr_range.0 && main.vaddr < image.vaddr_range.1);

    // Locals grouped by their STT_FILE.
    let helper = image
        .symbols
        .iter()
        .find(|s| s.name == "helper")
        .expect("helper");
    let tu = helper.tu.expect("helper has a translation unit");
    assert_eq!(image.translation_units[tu.0 as usize], "image.c");
    let counter = image
        .symbols
        .iter()
        .find(|s| s.name == "local_counter")
        .unwrap();
    assert_eq!(counter.tu, Some(tu));
    let global = image
        .symbols
        .iter()
        .find(|s| s.name == "global_value")
        .unwrap();
    assert_eq!(global.tu, None);

    // Version suffixes are stripped (`stdout@GLIBC_2.2.5` in .symtab).
    assert!(image.symbols.iter().all(|s| !s.name.contains('@')));
    assert!(image
        .symbols
        .iter()
        .any(|s| s.name == "stdout" && !s.dynamic));
    // `stdout` is copied into the executable; strlen's address is taken (GLOB_DAT or
    // an absolute pointer) and it is called through the PLT.
    let copy = image
        .got_slots
        .iter()
        .find(|g| g.symbol == "stdout")
        .expect("stdout slot");
    assert_eq!(copy.kind, GotSlotKind::Copy);
    assert!(
        image.got_slots.iter().any(|g| g.symbol == "fprintf"),
        "{:?}",
        image.got_slots
    );
    let plt: Vec<&str> = image.plt_entries.iter().map(|(n, _)| n.as_str()).collect();
    assert!(plt.contains(&"fprintf"), "{plt:?}");

    let tls = image.tls.expect("PT_TLS");
    assert!(tls.memsz >= 4 && tls.filesz >= 4);

    let cu = image
        .compile_units
        .iter()
        .find(|cu| cu.name.ends_with("image.c"))
        .expect("compile unit of image.c");
    assert_eq!(cu.comp_dir.as_deref(), dir.to_str());
    assert!(cu.producer.as_deref().is_some_and(|p| p.contains("GNU C")));
    // Its addresses: the code of main and helper, and where its static variables live
    // (what pairs the unit with its STT_FILE group when two files share a name).
    let at = |name: &str| {
        image
            .symbols
            .iter()
            .find(|s| s.name == name && !s.dynamic)
            .unwrap_or_else(|| panic!("no {name}"))
            .vaddr
    };
    for function in ["main", "helper"] {
        let vaddr = at(function);
        assert!(
            cu.ranges.iter().any(|&(b, e)| (b..e).contains(&vaddr)),
            "{function} at {vaddr:#x} is outside {:x?}",
            cu.ranges
        );
    }
    for variable in ["local_counter", "global_value"] {
        assert!(
            cu.variables.contains(&at(variable)),
            "{variable} missing in {:x?}",
            cu.variables
        );
    }
}

#[test]
fn pie_executable() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile_c(
        dir.path(),
        "image.c",
        IMAGE,
        &["-g", "-O0", "-pie", "-fPIE"],
        "image",
    );
    let image = parse_image(&exe);
    assert!(image.position_independent);
    check_executable(&image, dir.path());
    check_plt(&image, &exe);
    let dynamic_main = image.symbols.iter().filter(|s| s.dynamic).count();
    assert!(dynamic_main > 0, "PIE has a .dynsym");
}

#[test]
fn non_pie_executable() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile_c(
        dir.path(),
        "image.c",
        IMAGE,
        &["-g", "-O0", "-no-pie", "-fno-pie"],
        "image",
    );
    let image = parse_image(&exe);
    assert!(!image.position_independent);
    assert!(image.vaddr_range.0 >= 0x400000);
    check_executable(&image, dir.path());
    check_plt(&image, &exe);
}

#[test]
fn bind_now_plt() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile_c(
        dir.path(),
        "image.c",
        IMAGE,
        &["-O0", "-Wl,-z,now"],
        "image",
    );
    let image = parse_image(&exe);
    check_plt(&image, &exe);
}

#[test]
fn stripped_executable() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile_c(dir.path(), "image.c", IMAGE, &["-O0", "-s"], "image");
    let image = parse_image(&exe);
    assert!(!image.has_symtab);
    assert!(matches!(
        image.require_symtab(&exe),
        Err(ObjectError::Stripped { .. })
    ));
    assert!(image.symbols.iter().all(|s| s.dynamic));
    assert!(image.compile_units.is_empty());
    assert!(image.got_slots.iter().any(|g| g.symbol == "stdout"));
}

#[test]
fn relocatable_object_is_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let obj = compile_object(dir.path(), "image.c", IMAGE, &[]);
    let bytes = std::fs::read(&obj).unwrap();
    assert!(matches!(
        LinkedImage::parse(&obj, &bytes),
        Err(ObjectError::NotRelocatable { .. })
    ));
}

#[test]
fn system_libc() {
    let path = std::path::Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    let image = parse_image(path);
    assert!(image.position_independent);
    assert_eq!(image.soname.as_deref(), Some("libc.so.6"));
    assert!(image.build_id.is_some());
    assert!(image.tls.is_some());

    let strlen = image
        .symbols
        .iter()
        .find(|s| s.dynamic && s.name == "strlen")
        .expect("strlen in .dynsym");
    assert_eq!(strlen.kind, SymbolKind::Ifunc);
    assert!(strlen.default_version);
    assert!(strlen.defined);
    // The IRELATIVE slot whose resolver is strlen's resolver holds the chosen implementation.
    assert!(
        image
            .irelative_slots
            .iter()
            .any(|slot| slot.resolver_vaddr == strlen.vaddr),
        "no IRELATIVE slot with resolver {:#x}",
        strlen.vaddr
    );

    // A symbol with an old, hidden version next to its default one.
    let versions: Vec<bool> = image
        .symbols
        .iter()
        .filter(|s| s.dynamic && s.name == "memcpy")
        .map(|s| s.default_version)
        .collect();
    assert!(
        versions.contains(&true) && versions.contains(&false),
        "memcpy versions {versions:?}"
    );

    // Every allocated section is there, with contents for PROGBITS.
    let text = image.sections.iter().find(|s| s.name == ".text").unwrap();
    assert!(text.executable && !text.writable);
    assert_eq!(text.bytes.len() as u64, text.size);
    assert!(image
        .section_at(strlen.vaddr)
        .is_some_and(|s| s.name == ".text"));
}

#[test]
fn malformed_images_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile_c(dir.path(), "image.c", IMAGE, &["-g", "-O0"], "image");
    let original = std::fs::read(&exe).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for len in (0..original.len()).step_by(211) {
        let _ = LinkedImage::parse(&exe, &original[..len]);
    }
    for round in 0..600 {
        let mut bytes = original.clone();
        for _ in 0..1 + next() % 8 {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] ^= 1 << (next() % 8);
        }
        let result = std::panic::catch_unwind(|| LinkedImage::parse(&exe, &bytes).map(|_| ()));
        assert!(
            result.is_ok(),
            "LinkedImage::parse panicked in round {round}"
        );
    }
}

#[test]
fn image_local_statics_know_their_function() {
    let dir = tempfile::tempdir().unwrap();
    let source = include_str!("fixtures/calls.c");
    for flags in [&["-g", "-O0"][..], &["-g", "-O2"][..]] {
        let exe = compile_c(dir.path(), "calls.c", source, flags, "calls");
        let image = parse_image(&exe);
        let mut keys: Vec<String> = image
            .symbols
            .iter()
            .filter(|s| !s.dynamic && s.name.starts_with("calls."))
            .map(|s| image.match_name(s))
            .collect();
        keys.sort();
        assert_eq!(keys, ["tick/calls", "tock/calls"], "{flags:?}");
        // The same keys as the object compiled from the same source.
        let obj = compile_object(dir.path(), "calls.c", source, &flags[1..]);
        let object = parse_object(&obj);
        let mut object_keys: Vec<String> = (0..object.symbols.len() as u32)
            .map(hot_object::SymbolId)
            .filter(|&s| object.symbol(s).kind == SymbolKind::Object)
            .filter(|&s| object.symbol(s).name.starts_with("calls."))
            .map(|s| object.match_name(s))
            .collect();
        object_keys.sort();
        assert_eq!(object_keys, keys, "{flags:?}");
    }
}

/// The statement boundaries near function starts are the `is_stmt` rows gdb breaks at:
/// `break value` at entry+4 of an -O0 function without parameters (after `push %rbp; mov
/// %rsp,%rbp`), none at the entry itself, none further than the window, none without `-g`.
#[test]
fn image_statement_starts_are_where_gdb_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let source = "int value(void) {\n  return 7;\n}\nint twice(int x) {\n  return 2 * x;\n}\n\
                  int main(void) { return value() + twice(1); }\n";
    let exe = compile_c(dir.path(), "stmt.c", source, &["-g", "-O0"], "stmt");
    let image = parse_image(&exe);
    let start = |name: &str| {
        image
            .symbols
            .iter()
            .find(|s| s.name == name && !s.dynamic)
            .unwrap_or_else(|| panic!("no {name}"))
            .vaddr
    };
    let value = start("value");
    assert_eq!(image.statements_in(value, value + 5), &[value + 4]);
    // `twice` stores its parameter first: its first statement is past the jump's bytes.
    let twice = start("twice");
    let in_twice = image.statements_in(twice, twice + 5);
    assert!(in_twice.is_empty(), "{in_twice:x?}");
    // After `push %rbp; mov %rsp,%rbp; mov %edi,-4(%rbp)`.
    assert_eq!(
        image.statements_in(twice, twice + 16).first(),
        Some(&(twice + 7))
    );
    assert!(image.statement_starts.windows(2).all(|w| w[0] < w[1]));
    assert!(!image.statement_starts.contains(&value));
    let main = start("main");
    assert!(image.statement_starts.iter().all(|&at| [value, twice, main]
        .iter()
        .any(|&s| at > s && at - s < hot_object::STATEMENT_WINDOW)));

    let bare = compile_c(dir.path(), "stmt.c", source, &["-O0"], "bare");
    assert!(parse_image(&bare).statement_starts.is_empty());
}

/// A weak default overridden by a strong definition in another file: ld keeps its body under
/// no symbol, and the DWARF of its unit still gives its start. clang's DWARF 5 gives it as
/// an index into `.debug_addr` (`DW_FORM_addrx`), not as the address itself.
#[test]
fn an_overridden_weak_defaults_body_is_found_in_dwarf_4_and_5() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("weak.c"),
        "__attribute__((weak)) int hook(void) { return 1; }\n",
    )
    .unwrap();
    let main = "int hook(void) { return 2; }\nint main(void) { return hook(); }\n";
    for compiler in ["cc", "clang"] {
        for dwarf in ["-gdwarf-4", "-gdwarf-5"] {
            let row = format!("{compiler} {dwarf}");
            let exe = compile_with(
                compiler,
                dir.path(),
                "main.c",
                main,
                &[dwarf, "-O0", "weak.c"],
                "app",
            );
            let image = parse_image(&exe);
            let weak = image
                .compile_units
                .iter()
                .find(|cu| cu.name.ends_with("weak.c"))
                .unwrap_or_else(|| panic!("{row}: no weak.c unit"));
            let [(name, vaddr)] = weak.unnamed_functions.as_slice() else {
                panic!("{row}: {:?}", weak.unnamed_functions);
            };
            assert_eq!(name, "hook", "{row}");
            // Not the strong `hook`, but inside weak.c's code.
            let strong = image
                .symbols
                .iter()
                .find(|s| s.name == "hook")
                .expect("hook");
            assert_ne!(*vaddr, strong.vaddr, "{row}");
            assert!(
                weak.ranges.iter().any(|&(b, e)| b <= *vaddr && *vaddr < e),
                "{row}: {vaddr:#x} outside {:x?}",
                weak.ranges
            );
        }
    }
}
