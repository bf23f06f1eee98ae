//! Behaviour of the patch linker on real objects: a program is compiled and linked with the
//! real `cc`/`ld` (version 1, the "running image"), later versions of its source are compiled
//! to objects and linked against it with hot-link.

mod support;

use hot_link::{Arenas, LinkErrorCode, LinkRequest, Linker, Patch, RuntimeAddr, UnitRef};
use hot_object::{Object, RelocKind, SymbolKind, TranslationUnitId};
use support::*;

/// Load bias of the test programs (a typical PIE address with ASLR off).
const BIAS: u64 = 0x5555_5555_4000;

fn arenas_below_image() -> Arenas {
    Arenas {
        code: RuntimeAddr(0x5555_0000_0000)..RuntimeAddr(0x5555_0010_0000),
        data: RuntimeAddr(0x5555_0010_0000)..RuntimeAddr(0x5555_0020_0000),
    }
}

/// A running image built from `v1`: the linker for it and v1's object (a baseline).
struct Program {
    dir: tempfile::TempDir,
    linker: Linker,
    v1: Object,
    tu: Option<TranslationUnitId>,
}

fn program(v1: &str, cflags: &[&str], libs: Vec<hot_link::Module>, arenas: Arenas) -> Program {
    let dir = tempfile::tempdir().expect("tempdir");
    let obj = compile(dir.path(), "prog.c", v1, cflags);
    // The program may call library functions the test models without linking them.
    let linked = ld(
        dir.path(),
        std::slice::from_ref(&obj),
        &[],
        &["-pie", "--unresolved-symbols=ignore-all"],
    );
    let exe = module(&linked.exe, BIAS);
    let tu = exe
        .image
        .translation_units
        .iter()
        .position(|n| n == "prog.c")
        .map(|i| TranslationUnitId(i as u32));
    assert!(
        tu.is_some(),
        "prog.c not among {:?}",
        exe.image.translation_units
    );
    let linker = Linker::new(image_model(exe, libs), arenas);
    Program {
        v1: parse_object(&obj),
        dir,
        linker,
        tu,
    }
}

impl Program {
    fn compile(&self, name: &str, source: &str, cflags: &[&str]) -> Object {
        let sub = self.dir.path().join(name);
        std::fs::create_dir_all(&sub).expect("mkdir");
        parse_object(&compile(&sub, "prog.c", source, cflags))
    }

    fn link(
        &self,
        object: &Object,
        baseline: Option<&Object>,
    ) -> Result<Patch, Vec<hot_link::LinkError>> {
        self.linker.link(&LinkRequest {
            object,
            baseline,
            unit: UnitRef {
                tu: self.tu,
                source: "prog.c".into(),
            },
        })
    }

    fn exe_symbol(&self, name: &str) -> u64 {
        let s = self
            .linker
            .image()
            .exe
            .image
            .symbols
            .iter()
            .find(|s| s.name == name && s.defined)
            .unwrap_or_else(|| panic!("no symbol {name} in the image"));
        s.vaddr + BIAS
    }
}

const BASE: &str = r#"
int counter;
int helper(int x) { return x + 1; }
int tick(int n) {
  counter += helper(n);
  return counter;
}
int other(int n) { return n * 2; }
int main(void) { return tick(1) + other(2); }
"#;

#[test]
fn undefined_symbol_is_reported_with_its_line_and_relocation() {
    let p = program(BASE, &["-O0"], vec![], arenas_below_image());
    let v2 = BASE
        .replace("  return counter;", "  frobnicate(n);\n  return counter;")
        .replace("int counter;", "int counter;\nvoid frobnicate(int);");
    let obj = p.compile("v2", &v2, &["-O0"]);
    let errors = p
        .link(&obj, Some(&p.v1))
        .expect_err("frobnicate is undefined");
    let e = errors
        .iter()
        .find(|e| e.code == LinkErrorCode::UndefinedSymbol)
        .unwrap_or_else(|| panic!("no undefined-symbol error in {errors:#?}"));
    assert_eq!(e.symbol.as_deref(), Some("frobnicate"));
    assert_eq!(e.function.as_deref(), Some("tick"));
    let line = e.line.as_ref().expect("a source line");
    assert_eq!(line.line, line_of(&v2, "frobnicate(n);"));
    assert!(e.message.contains("R_X86_64_PLT32"), "{}", e.message);
    assert!(
        e.message.contains("`frobnicate`") && e.message.contains("`tick`"),
        "{}",
        e.message
    );
    assert_eq!(e.code.diagnostic_code(), "undefined-symbol");
}

#[test]
fn relocation_overflow_is_reported_not_truncated() {
    // Arenas 100 TiB away from the image: no rel32 reaches back.
    let far = Arenas {
        code: RuntimeAddr(0x7000_0000_0000)..RuntimeAddr(0x7000_0010_0000),
        data: RuntimeAddr(0x7000_0010_0000)..RuntimeAddr(0x7000_0020_0000),
    };
    let p = program(BASE, &["-O0"], vec![], far);
    let v2 = BASE.replace("counter += helper(n);", "counter += helper(n) * 2;");
    let obj = p.compile("v2", &v2, &["-O0"]);
    let errors = p.link(&obj, Some(&p.v1)).expect_err("out of reach");
    let overflow: Vec<_> = errors
        .iter()
        .filter(|e| e.code == LinkErrorCode::RelocationOverflow)
        .collect();
    assert!(!overflow.is_empty(), "{errors:#?}");
    // Every reference from the new body of tick to the image overflows: helper and counter.
    let symbols: Vec<_> = overflow
        .iter()
        .filter_map(|e| e.symbol.as_deref())
        .collect();
    assert!(
        symbols.contains(&"helper") && symbols.contains(&"counter"),
        "{symbols:?}"
    );
    let helper = overflow
        .iter()
        .find(|e| e.symbol.as_deref() == Some("helper"))
        .expect("helper");
    assert!(
        helper.message.contains("R_X86_64_PLT32"),
        "{}",
        helper.message
    );
    assert_eq!(helper.function.as_deref(), Some("tick"));
    assert_eq!(
        helper.line.as_ref().map(|l| l.line),
        Some(line_of(&v2, "helper(n) * 2"))
    );
}

const SPIN: &str = r#"
__attribute__((noinline)) int one(void) { return 1; }
__attribute__((noinline)) void spin(volatile int *p) {
  while (*p) {
  }
}
__attribute__((noinline)) int plain(int x) { return x * 7 + one(); }
int main(void) { static volatile int z; spin(&z); return one() + plain(3); }
"#;

#[test]
fn loop_head_behind_endbr64_gets_a_short_jump_through_padding() {
    // -O1 (the hot-reload profile) does not align loop heads: the loop starts right after
    // endbr64. Functions aligned to 16 leave padding before spin.
    let flags = ["-O1", "-fcf-protection", "-falign-functions=16"];
    let p = program(SPIN, &flags, vec![], arenas_below_image());
    let spin = p.exe_symbol("spin");
    let image = &p.linker.image().exe.image;
    let original = image
        .bytes_at(spin - BIAS, 8)
        .expect("spin's bytes")
        .to_vec();
    assert_eq!(
        &original[..4],
        &[0xf3, 0x0f, 0x1e, 0xfa],
        "spin starts with endbr64"
    );

    let v2 = SPIN.replace(
        "while (*p) {\n  }",
        "while (*p) {\n    __asm__ volatile(\"pause\");\n  }",
    );
    let obj = p.compile("v2", &v2, &flags);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, vec!["spin".to_string()]);
    let writes: Vec<_> = patch
        .entries
        .iter()
        .filter(|e| e.function == "spin")
        .collect();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    // First the 5-byte jump into the padding right before spin, then the short jump.
    let pad = &writes[0];
    assert_eq!(pad.addr.0, spin - 5);
    assert_eq!(pad.bytes[0], 0xe9);
    assert_eq!(
        pad.expected,
        image
            .bytes_at(spin - BIAS - 5, 5)
            .expect("padding")
            .to_vec()
    );
    let body = patch
        .writes
        .iter()
        .find(|w| w.what == "body of spin")
        .expect("new body");
    let rel = i32::from_le_bytes(pad.bytes[1..5].try_into().expect("rel32"));
    assert_eq!((pad.addr.0 as i64 + 5 + rel as i64) as u64, body.addr.0);
    let short = &writes[1];
    assert_eq!(short.addr.0, spin);
    assert_eq!(short.bytes, vec![0xeb, 0xf9]);
    assert_eq!(short.expected, original[..2].to_vec());
    assert!(patch
        .protected
        .contains(&(RuntimeAddr(spin)..RuntimeAddr(spin + 2))));

    // A function without a branch into its first bytes gets the plain 5-byte jump.
    let v3 = SPIN.replace("x * 7", "x * 9");
    let obj = p.compile("v3", &v3, &flags);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, vec!["plain".to_string()]);
    let plain = p.exe_symbol("plain");
    assert_eq!(patch.entries.len(), 1);
    assert_eq!(patch.entries[0].addr.0, plain);
    assert_eq!(
        patch.entries[0].expected,
        image.bytes_at(plain - BIAS, 5).expect("bytes").to_vec()
    );
    assert_eq!(patch.entries[0].bytes[0], 0xe9);
}

#[test]
fn loop_head_without_padding_is_function_too_small() {
    let flags = ["-O1", "-fcf-protection", "-fno-align-functions"];
    let p = program(SPIN, &flags, vec![], arenas_below_image());
    let v2 = SPIN.replace(
        "while (*p) {\n  }",
        "while (*p) {\n    __asm__ volatile(\"pause\");\n  }",
    );
    let obj = p.compile("v2", &v2, &flags);
    let errors = p.link(&obj, Some(&p.v1)).expect_err("no room for the jump");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].code, LinkErrorCode::FunctionTooSmall);
    assert_eq!(errors[0].symbol.as_deref(), Some("spin"));
    assert!(
        errors[0].message.contains("entry+4"),
        "{}",
        errors[0].message
    );
    assert_eq!(
        errors[0].line.as_ref().map(|l| l.line),
        Some(line_of(SPIN, "void spin"))
    );
}

#[test]
fn library_ifunc_is_called_through_a_slot_copied_from_its_irelative_slot() {
    let libc_path = libc_path();
    const LIBC_BIAS: u64 = 0x7fff_f000_0000;
    let libc = module(&libc_path, LIBC_BIAS);
    let strlen = libc
        .image
        .symbols
        .iter()
        .find(|s| s.name == "strlen" && s.dynamic && s.defined && s.default_version)
        .expect("libc defines strlen")
        .clone();
    assert_eq!(
        strlen.kind,
        SymbolKind::Ifunc,
        "strlen is an IFUNC in glibc"
    );
    let irelative = libc
        .image
        .irelative_slots
        .iter()
        .find(|s| s.resolver_vaddr == strlen.vaddr)
        .expect("libc has an IRELATIVE slot for strlen's resolver");
    let expected_src = irelative.vaddr + LIBC_BIAS;

    let p = program(BASE, &["-O0"], vec![libc], arenas_below_image());
    let v2 = BASE
        .replace(
            "int counter;",
            "int counter;\nunsigned long strlen(const char *);",
        )
        .replace(
            "counter += helper(n);",
            "counter += helper(n) + (int)strlen(\"abc\");",
        );
    let obj = p.compile("v2", &v2, &["-O0", "-fno-builtin"]);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.slot_copies.len(), 1, "{:#?}", patch.slot_copies);
    let copy = &patch.slot_copies[0];
    assert_eq!(
        copy.src.0, expected_src,
        "copied from libc's IRELATIVE slot, not the resolver"
    );
    let data = arenas_below_image().data;
    assert!(copy.dst >= data.start && copy.dst < data.end);
    assert!(
        !patch.writes.iter().any(|w| w.addr == copy.dst),
        "the slot's value is only known in the target"
    );
    // The call goes to a stub `jmp *slot(%rip)` whose slot is the copied one.
    let stub = patch
        .writes
        .iter()
        .find(|w| w.what == "call stub for strlen")
        .expect("stub");
    assert_eq!(&stub.bytes[..2], &[0xff, 0x25]);
    let rel = i32::from_le_bytes(stub.bytes[2..6].try_into().expect("rel32"));
    assert_eq!((stub.addr.0 as i64 + 6 + rel as i64) as u64, copy.dst.0);
    assert!(
        patch.writes.iter().all(|w| !w
            .bytes
            .windows(8)
            .any(|b| b == (strlen.vaddr + LIBC_BIAS).to_le_bytes())),
        "the resolver's address is never used as the function"
    );
}

#[test]
fn unchanged_functions_are_skipped_with_a_baseline() {
    let p = program(BASE, &["-O0"], vec![], arenas_below_image());
    let v2 = BASE.replace("n * 2", "n * 3");
    let obj = p.compile("v2", &v2, &["-O0"]);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, vec!["other".to_string()]);
    assert!(patch.added.is_empty());
    assert_eq!(patch.skipped, 3, "helper, tick and main are unchanged");
    assert_eq!(patch.entries.len(), 1);
    assert_eq!(patch.entries[0].addr.0, p.exe_symbol("other"));

    // Without a baseline every function is written.
    let patch = p.link(&obj, None).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped.len(), 4, "{:?}", patch.swapped);
    assert_eq!(patch.skipped, 0);

    // Unchanged source: nothing to write at all.
    let same = p.compile("same", BASE, &["-O0"]);
    let patch = p
        .link(&same, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(patch.is_empty(), "{patch:#?}");
}

/// The address a PC-relative reference to `symbol` in `function`'s new body resolves to.
fn pc_relative_target(obj: &Object, patch: &Patch, function: &str, symbol: &str) -> u64 {
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
        .expect("body");
    let reloc = obj
        .atom(atom)
        .relocs
        .iter()
        .find(|r| obj.symbol_name(r.symbol).contains(symbol) && r.kind == RelocKind::Pc32)
        .unwrap_or_else(|| panic!("no PC32 reference to {symbol}"));
    let off = reloc.offset.0 as usize;
    let disp = i32::from_le_bytes(body.bytes[off..off + 4].try_into().expect("rel32"));
    (body.addr.0 as i64 + off as i64 + disp as i64 - reloc.addend) as u64
}

#[test]
fn new_static_variable_and_function_keep_their_addresses_across_links() {
    let mut p = program(BASE, &["-O0"], vec![], arenas_below_image());
    let v2 = BASE
        .replace("int counter;", "int counter;\nstatic int added_count = 7;\nstatic int fresh(int x) { return x - added_count; }")
        .replace("counter += helper(n);", "counter += helper(n) + fresh(n);\n  added_count++;");
    let obj2 = p.compile("v2", &v2, &["-O0"]);
    let patch2 = p
        .link(&obj2, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    let mut added = patch2.added.clone();
    added.sort();
    assert_eq!(added, vec!["added_count".to_string(), "fresh".to_string()]);
    assert_eq!(patch2.swapped, vec!["tick".to_string()]);
    let var = patch2
        .writes
        .iter()
        .find(|w| w.what == "data added_count")
        .expect("initialised once");
    assert_eq!(var.bytes, 7i32.to_le_bytes().to_vec());
    let data = arenas_below_image().data;
    assert!(var.addr >= data.start && var.addr < data.end);
    assert_eq!(
        pc_relative_target(&obj2, &patch2, "tick", "added_count"),
        var.addr.0
    );
    let stub = patch2
        .writes
        .iter()
        .find(|w| w.what == "entry stub of fresh")
        .expect("stub")
        .clone();
    p.linker.commit(&patch2);

    // v3 changes tick and fresh: the variable is bound (not rewritten), fresh keeps its
    // stub, whose jump is redirected expecting the bytes v2 wrote.
    let v3 = v2
        .replace("return x - added_count;", "return x + added_count;")
        .replace("helper(n) + fresh", "helper(n) - fresh");
    let obj3 = p.compile("v3", &v3, &["-O0"]);
    let patch3 = p
        .link(&obj3, Some(&obj2))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(patch3.added.is_empty(), "{:?}", patch3.added);
    assert!(!patch3.writes.iter().any(|w| w.what == "data added_count"));
    assert_eq!(
        pc_relative_target(&obj3, &patch3, "tick", "added_count"),
        var.addr.0
    );
    let mut swapped = patch3.swapped.clone();
    swapped.sort();
    assert_eq!(swapped, vec!["fresh".to_string(), "tick".to_string()]);
    let stub_write = patch3
        .entries
        .iter()
        .find(|e| e.function == "fresh")
        .expect("stub redirect");
    assert_eq!(stub_write.addr, stub.addr);
    assert_eq!(stub_write.expected, stub.bytes[..5].to_vec());
    let tick_write = patch3
        .entries
        .iter()
        .find(|e| e.function == "tick")
        .expect("tick redirect");
    let tick_v2 = patch2
        .entries
        .iter()
        .find(|e| e.function == "tick")
        .expect("tick in v2");
    assert_eq!(
        tick_write.expected, tick_v2.bytes,
        "the second swap expects the first swap's jump"
    );
    p.linker.commit(&patch3);

    // Undo v3: the entries go back to v2's bodies.
    let revert = p.linker.revert_last().expect("one patch to revert");
    let tick_back = revert
        .iter()
        .find(|w| w.addr == tick_write.addr)
        .expect("tick reverted");
    assert_eq!(tick_back.expected, tick_write.bytes);
    assert_eq!(tick_back.bytes, tick_v2.bytes);
}

#[test]
fn new_thread_local_is_refused_and_changed_size_is_layout_changed() {
    let p = program(BASE, &["-O0"], vec![], arenas_below_image());
    let v2 = BASE
        .replace("int counter;", "long counter;\n__thread int per_thread;")
        .replace("return counter;", "return counter + per_thread;");
    let obj = p.compile("v2", &v2, &["-O0"]);
    let errors = p.link(&obj, Some(&p.v1)).expect_err("refused");
    assert!(
        errors
            .iter()
            .any(|e| e.code == LinkErrorCode::NewThreadLocal
                && e.symbol.as_deref() == Some("per_thread")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.code == LinkErrorCode::LayoutChanged
                && e.symbol.as_deref() == Some("counter")),
        "{errors:#?}"
    );
}

#[test]
fn changed_initializer_of_existing_variable_is_a_note() {
    let p = program(BASE, &["-O0"], vec![], arenas_below_image());
    let v2 = BASE.replace("int counter;", "int counter = 5;");
    let obj = p.compile("v2", &v2, &["-O0"]);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(
        patch
            .notes
            .iter()
            .any(|n| n.code == "initializer-not-applied" && n.symbol.as_deref() == Some("counter")),
        "{:#?}",
        patch.notes
    );
    assert!(
        !patch.writes.iter().any(|w| w.what.contains("counter")),
        "the running value is kept"
    );
}
