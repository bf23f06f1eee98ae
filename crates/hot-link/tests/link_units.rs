//! Behaviour of the patch linker on real objects: a program is compiled and linked with the
//! real `cc`/`ld` (version 1, the "running image"), later versions of its source are compiled
//! to objects and linked against it with hot-link.

mod support;

use hot_link::{
    AppliedInitializer, Arenas, LinkErrorCode, LinkRequest, Linker, Patch, RuntimeAddr,
    UnappliedInitializer, UnitRef,
};
use hot_object::{Object, RelocKind, SymbolKind, TranslationUnitId};
use support::*;

/// Load bias of the first shared library built by a test.
const LIB_BIAS: u64 = 0x7fff_e000_0000;

/// A running image built from `v1`: the linker for it and v1's object (a baseline).
struct Program {
    dir: tempfile::TempDir,
    linker: Linker,
    v1: Object,
    tu: Option<TranslationUnitId>,
    /// The executable's load bias.
    bias: u64,
}

fn program(v1: &str, cflags: &[&str], libs: Vec<hot_link::Module>, arenas: Arenas) -> Program {
    program_linked_with(v1, cflags, &[], libs, arenas)
}

/// Like [`program`], with shared libraries (fixture sources) ld links the program against;
/// they are added to the image model after `libs`, at distinct biases.
fn program_linked_with(
    v1: &str,
    cflags: &[&str],
    link_libs: &[&str],
    mut libs: Vec<hot_link::Module>,
    arenas: Arenas,
) -> Program {
    let dir = tempfile::tempdir().expect("tempdir");
    let obj = compile(dir.path(), "prog.c", v1, cflags);
    let so: Vec<_> = link_libs
        .iter()
        .map(|l| shared_lib(dir.path(), l, &[]))
        .collect();
    for (i, path) in so.iter().enumerate() {
        libs.push(module(path, LIB_BIAS + ((i as u64) << 32)));
    }
    // A non-PIE program is linked at its link-time addresses.
    let pie = !cflags.contains(&"-fno-pie");
    let bias = if pie { BIAS } else { 0 };
    // The program may call library functions the test models without linking them.
    let linked = ld(
        dir.path(),
        std::slice::from_ref(&obj),
        &so,
        &[
            if pie { "-pie" } else { "-no-pie" },
            "--unresolved-symbols=ignore-all",
        ],
    );
    let exe = module(&linked.exe, bias);
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
        bias,
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
                compile_unit: None,
                source: "prog.c".into(),
            },
            applied: &[],
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
        s.vaddr + self.bias
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

/// gcc -O2 begins `twice` with `push %rbx; call *%rdi`: the callee returns to twice+3.
const CALL_AT_ENTRY: &str = r#"
__attribute__((noipa)) int base(void) { return 1; }
__attribute__((noinline)) int twice(int (*cb)(void)) { int a = cb(); return a + base() + 0; }
int main(void) { return twice(base); }
"#;

/// The entry of `twice` as planned for a v2 that changes its body.
fn plan_for_twice(flags: &[&str]) -> (Program, Patch) {
    let p = program(CALL_AT_ENTRY, flags, vec![], arenas_below_image());
    let twice = p.exe_symbol("twice");
    let original = p
        .linker
        .image()
        .exe
        .image
        .bytes_at(twice - BIAS, 3)
        .expect("twice's bytes")
        .to_vec();
    assert_eq!(original, vec![0x53, 0xff, 0xd7], "push %rbx; call *%rdi");
    let obj = p.compile("v2", &CALL_AT_ENTRY.replace("+ 0;", "+ 5;"), flags);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, vec!["twice".to_string()]);
    (p, patch)
}

#[test]
fn a_call_returning_inside_the_entry_jump_gets_the_short_jump() {
    let flags = ["-O2", "-fcf-protection=none"];
    let (p, patch) = plan_for_twice(&flags);
    let twice = p.exe_symbol("twice");
    // The short jump covers entry..entry+2 only: a frame returning to entry+3 finds the
    // old instructions there.
    assert_eq!(patch.entries.len(), 2, "{:#?}", patch.entries);
    let short = &patch.entries[1];
    assert_eq!(short.addr.0, twice);
    assert_eq!(short.bytes.len(), 2);
    assert_eq!(short.bytes[0], 0xeb);
    let pad = &patch.entries[0];
    assert!(
        pad.addr.0 + 5 <= twice || pad.addr.0 >= twice + 14,
        "{pad:?}"
    );
    assert!(patch
        .protected
        .iter()
        .all(|r| !(r.start.0 < twice + 3 && twice + 3 < r.end.0)));
}

#[test]
fn a_call_returning_inside_the_entry_jump_without_padding_keeps_the_direct_jump() {
    // No padding in reach: the 5-byte jump is planned (not refused); the apply refuses it
    // while a frame really returns to entry+3.
    let flags = ["-O2", "-fcf-protection=none", "-falign-functions=1"];
    let p = program(
        &format!("{CALL_AT_ENTRY}\n{}", SPREAD_AFTER),
        &flags,
        vec![],
        arenas_below_image(),
    );
    let twice = p.exe_symbol("twice");
    let v2 = format!("{CALL_AT_ENTRY}\n{}", SPREAD_AFTER).replace("+ 0;", "+ 5;");
    let obj = p.compile("v2", &v2, &flags);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, vec!["twice".to_string()]);
    assert_eq!(patch.entries.len(), 1, "{:#?}", patch.entries);
    assert_eq!(patch.entries[0].addr.0, twice);
    assert_eq!(patch.entries[0].bytes[0], 0xe9);
    assert!(patch
        .protected
        .contains(&(RuntimeAddr(twice)..RuntimeAddr(twice + 5))));
}

/// `hop` (assembly, as a `.cold` part would be) jumps to entry+4 of `spin`, right behind its
/// `endbr64`: a branch from outside the body into the bytes the jump overwrites.
const HOP: &str = r#"
__attribute__((noinline)) int spin(volatile int *p) {
  int n = 0;
  while (*p) { n++; }
  return n;
}
__asm__(".text\n.globl hop\n.type hop,@function\nhop:\n\tjmp spin+4\n.size hop,.-hop\n");
int main(void) { static volatile int z; return spin(&z); }
"#;

#[test]
fn a_branch_from_outside_the_body_into_the_entry_jump_gets_the_short_jump() {
    let flags = ["-O1", "-fcf-protection", "-falign-functions=16"];
    let p = program(HOP, &flags, vec![], arenas_below_image());
    let spin = p.exe_symbol("spin");
    let image = &p.linker.image().exe.image;
    assert_eq!(
        image.bytes_at(spin - BIAS, 4).expect("spin's bytes"),
        &[0xf3, 0x0f, 0x1e, 0xfa],
        "spin starts with endbr64"
    );
    let obj = p.compile("v2", &HOP.replace("n++;", "n += 2;"), &flags);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, vec!["spin".to_string()]);
    assert_eq!(patch.entries.len(), 2, "{:#?}", patch.entries);
    assert_eq!(patch.entries[1].addr.0, spin);
    assert_eq!(patch.entries[1].bytes.len(), 2, "a short jump at the entry");

    // Without padding, the same branch refuses the swap and says where it comes from.
    let flags = ["-O1", "-fcf-protection", "-fno-align-functions"];
    let p = program(HOP, &flags, vec![], arenas_below_image());
    let hop = p.exe_symbol("hop");
    let obj = p.compile("v2", &HOP.replace("n++;", "n += 2;"), &flags);
    let errors = p.link(&obj, Some(&p.v1)).expect_err("no room for the jump");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].code, LinkErrorCode::FunctionTooSmall);
    let message = &errors[0].message;
    assert!(
        message.contains("entry+4") && message.contains(&format!("{hop:#x}")),
        "{message}"
    );
}

/// More than a short jump's reach of code after `twice`, so that no padding is near it.
const SPREAD_AFTER: &str = r#"
__attribute__((noinline)) long spread(long x) {
  for (int i = 0; i < 3; i++) {
    x = x * 37 + (x << 4) - 9; x ^= x >> 17; x = x * 41 + (x << 6) - 1; x ^= x >> 19;
    x = x * 31 + 7; x ^= x >> 3; x = x * 17 + (x << 5) - 11; x ^= x >> 7;
    x = x * 13 + (x << 2) - 5; x ^= x >> 11; x = x * 29 + (x << 3) - 3; x ^= x >> 13;
  }
  return x;
}
__attribute__((noinline)) long spread2(long x) { return spread(x) * 3 + spread(x + 1); }
__attribute__((noinline)) long spread3(long x) { return spread2(x) * 5 + spread2(x + 2); }
"#;

#[test]
fn patchable_function_entry_nops_make_room_for_the_short_jump() {
    // The same function as above, with the 5 nops -fpatchable-function-entry=5,5 puts before
    // each symbol: the short jump goes into them.
    let flags = [
        "-O1",
        "-fcf-protection",
        "-fno-align-functions",
        "-fpatchable-function-entry=5,5",
    ];
    let p = program(SPIN, &flags, vec![], arenas_below_image());
    let spin = p.exe_symbol("spin");
    let v2 = SPIN.replace(
        "while (*p) {\n  }",
        "while (*p) {\n    __asm__ volatile(\"pause\");\n  }",
    );
    let obj = p.compile("v2", &v2, &flags);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, vec!["spin".to_string()]);
    assert_eq!(patch.entries.len(), 2, "{:#?}", patch.entries);
    assert_eq!(patch.entries[0].addr.0, spin - 5);
    assert_eq!(patch.entries[0].expected, vec![0x90; 5]);
    assert_eq!(patch.entries[1].addr.0, spin);
    assert_eq!(patch.entries[1].bytes, vec![0xeb, 0xf9]);
    // The jump lands on the new body's entry, past its own 5 nops.
    let body = patch
        .writes
        .iter()
        .find(|w| w.what == "body of spin")
        .expect("body");
    assert_eq!(&body.bytes[..5], &[0x90; 5]);
    let rel = i32::from_le_bytes(patch.entries[0].bytes[1..5].try_into().expect("rel32"));
    assert_eq!((spin as i64 - 5 + 5 + rel as i64) as u64, body.addr.0 + 5);
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

/// A program linked by the real `cc` against the real libc (loaded at `libc_bias`).
fn program_on_libc(v1: &str, cflags: &[&str], libc_bias: u64) -> Program {
    let dir = tempfile::tempdir().expect("tempdir");
    let obj = compile(dir.path(), "prog.c", v1, cflags);
    let pie = !cflags.contains(&"-fno-pie");
    let exe_path = dir.path().join("out");
    run(std::process::Command::new("cc")
        .arg(if pie { "-pie" } else { "-no-pie" })
        .arg("-o")
        .arg(&exe_path)
        .arg(&obj));
    let bias = if pie { BIAS } else { 0 };
    let exe = module(&exe_path, bias);
    let tu = exe
        .image
        .translation_units
        .iter()
        .position(|n| n == "prog.c")
        .map(|i| TranslationUnitId(i as u32));
    let arenas = if pie {
        arenas_below_image()
    } else {
        low_arenas()
    };
    let libc = module(&libc_path(), libc_bias);
    Program {
        v1: parse_object(&obj),
        linker: Linker::new(image_model(exe, vec![libc]), arenas),
        dir,
        tu,
        bias,
    }
}

/// `name` is an IFUNC of the real libc with no `IRELATIVE` slot for its resolver (glibc
/// 2.36: `strstr`, `time`): the case only the executable's own PLT can serve.
fn assert_ifunc_without_irelative(p: &Program, name: &str) {
    let libc = &p.linker.image().libs[0].image;
    let sym = libc
        .symbols
        .iter()
        .find(|s| s.name == name && s.dynamic && s.defined && s.default_version)
        .unwrap_or_else(|| panic!("libc defines {name}"));
    assert_eq!(sym.kind, SymbolKind::Ifunc, "{name} is an IFUNC in glibc");
    assert!(
        !libc
            .irelative_slots
            .iter()
            .any(|s| s.resolver_vaddr == sym.vaddr),
        "this glibc has an IRELATIVE slot for {name}: the test's premise no longer holds"
    );
}

/// The executable's GOT slot of `kind` for `name`, at run time.
fn exe_slot(p: &Program, name: &str, kind: hot_object::GotSlotKind) -> Option<u64> {
    p.linker
        .image()
        .exe
        .image
        .got_slots
        .iter()
        .find(|s| s.symbol == name && s.kind == kind)
        .map(|s| s.vaddr + p.bias)
}

/// The executable's PLT entry for `name`, at run time.
fn exe_plt(p: &Program, name: &str) -> Option<u64> {
    p.linker
        .image()
        .exe
        .image
        .plt_entries
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v + p.bias)
}

const CALLS_STRSTR: &str = r#"
#include <string.h>
#include <time.h>
char *find(const char *h, const char *n) { return strstr(h, n); }
long now(void) { return (long)time(0); }
long use(const char *s) { return s[0]; }
int main(int argc, char **argv) { return (find(argv[0], "xy") != 0) + (int)now() + (int)use(argv[0]); }
"#;

#[test]
fn library_ifunc_without_irelative_slot_is_called_through_the_executables_slot() {
    const LIBC_BIAS: u64 = 0x7fff_f000_0000;
    for flags in [&["-O0", "-fPIE"][..], &["-O0", "-fno-pie"][..]] {
        let p = program_on_libc(CALLS_STRSTR, flags, LIBC_BIAS);
        for name in ["strstr", "time"] {
            assert_ifunc_without_irelative(&p, name);
        }
        let v2 = CALLS_STRSTR.replace(
            "long use(const char *s) { return s[0]; }",
            "long use(const char *s) { return strstr(s, \"ab\") ? (long)time(0) : 0; }",
        );
        let obj = p.compile("v2", &v2, flags);
        let patch = p
            .link(&obj, Some(&p.v1))
            .unwrap_or_else(|e| panic!("{flags:?}: {e:#?}"));
        assert_eq!(patch.swapped, vec!["use".to_string()], "{patch:#?}");
        assert!(patch.slot_copies.is_empty(), "{:#?}", patch.slot_copies);
        for name in ["strstr", "time"] {
            let slot = exe_slot(&p, name, hot_object::GotSlotKind::JumpSlot)
                .unwrap_or_else(|| panic!("{flags:?}: the program calls {name} through a PLT"));
            let stub = patch
                .writes
                .iter()
                .find(|w| w.what == format!("call stub for {name}"))
                .unwrap_or_else(|| panic!("{flags:?}: no stub for {name}: {patch:#?}"));
            assert_eq!(&stub.bytes[..2], &[0xff, 0x25]);
            let rel = i32::from_le_bytes(stub.bytes[2..6].try_into().expect("rel32"));
            assert_eq!(
                (stub.addr.0 as i64 + 6 + rel as i64) as u64,
                slot,
                "{flags:?}: {name} is reached through the executable's JUMP_SLOT"
            );
        }
    }
}

#[test]
fn address_of_a_library_ifunc_without_irelative_slot_is_the_programs_own() {
    const LIBC_BIAS: u64 = 0x7fff_f000_0000;
    let pointer = "char *(*pick(void))(const char *, const char *) { return strstr; }\n";
    // A PIE that only called strstr: the PLT entry, a working pointer (a GOT load in new
    // code gets an arena slot holding it).
    let p = program_on_libc(CALLS_STRSTR, &["-O0", "-fPIE"], LIBC_BIAS);
    assert!(exe_slot(&p, "strstr", hot_object::GotSlotKind::GlobDat).is_none());
    let plt = exe_plt(&p, "strstr").expect("PLT entry");
    let obj = p.compile("v2", &format!("{CALLS_STRSTR}{pointer}"), &["-O0", "-fPIE"]);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(
        patch
            .writes
            .iter()
            .any(|w| w.what == "GOT slot for strstr" && w.bytes == plt.to_le_bytes()),
        "{patch:#?}"
    );
    // A non-PIE: the PLT entry is the canonical address, as an absolute in the code.
    let p = program_on_libc(CALLS_STRSTR, &["-O0", "-fno-pie"], LIBC_BIAS);
    let plt = exe_plt(&p, "strstr").expect("PLT entry");
    let obj = p.compile(
        "v2",
        &format!("{CALLS_STRSTR}{pointer}"),
        &["-O0", "-fno-pie"],
    );
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    let body = patch
        .writes
        .iter()
        .find(|w| w.what == "body of pick")
        .expect("body of pick");
    assert!(
        body.bytes
            .windows(4)
            .any(|b| b == (plt as u32).to_le_bytes()),
        "{plt:#x} in {body:#?}"
    );
    // A PIE that took the address itself: its GLOB_DAT slot, copied at apply time into the
    // new pointer, so `&strstr` compares equal with the program's.
    let v1 = format!("{CALLS_STRSTR}{pointer}");
    let p = program_on_libc(&v1, &["-O0", "-fPIE"], LIBC_BIAS);
    let glob_dat = exe_slot(&p, "strstr", hot_object::GotSlotKind::GlobDat).expect("GLOB_DAT");
    let v2 = format!("{v1}char *(*saved)(const char *, const char *) = strstr;\nvoid *get(void) {{ return &saved; }}\n");
    let obj = p.compile("v2", &v2, &["-O0", "-fPIE"]);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(
        patch
            .slot_copies
            .iter()
            .any(|c| c.src.0 == glob_dat && c.what == "address of strstr"),
        "{:#?}",
        patch.slot_copies
    );
}

#[test]
fn library_ifunc_the_program_never_calls_without_irelative_slot_is_refused() {
    let p = program_on_libc(BASE, &["-O0", "-fPIE"], 0x7fff_f000_0000);
    assert_ifunc_without_irelative(&p, "strstr");
    let v2 = BASE
        .replace(
            "int counter;",
            "int counter;\nchar *strstr(const char *, const char *);",
        )
        .replace(
            "counter += helper(n);",
            "counter += helper(n) + (strstr(\"abc\", \"bc\") != 0);",
        );
    let obj = p.compile("v2", &v2, &["-O0", "-fno-builtin"]);
    let errors = p.link(&obj, Some(&p.v1)).expect_err("refused");
    assert!(
        errors
            .iter()
            .any(|e| e.code == LinkErrorCode::UnsupportedRelocation
                && e.message.contains("`strstr` is an IFUNC of")
                && e.message.contains("R_X86_64_IRELATIVE")),
        "{errors:#?}"
    );
}

const CALLS_ATEXIT: &str = r#"
#include <stdlib.h>
static void bye(void) {}
void later(void) {}
int main(void) { atexit(bye); later(); return 0; }
"#;

/// glibc 2.34+ keeps `atexit` in libc_nonshared.a: a program that called it has its own
/// (LOCAL, in ld's nameless `STT_FILE` group), which new code calls directly; in one that
/// never did, the refusal says where it lives.
#[test]
fn atexit_resolves_to_the_executables_copy_or_is_explained() {
    const LIBC_BIAS: u64 = 0x7fff_f000_0000;
    let edit = |v1: &str| {
        v1.replace(
            "void later(void) {}",
            "static void again(void) {}\nvoid later(void) { atexit(again); }",
        )
    };
    for flags in [&["-O0", "-fPIE"][..], &["-O0", "-fno-pie"][..]] {
        let p = program_on_libc(CALLS_ATEXIT, flags, LIBC_BIAS);
        let atexit = p.exe_symbol("atexit");
        let obj = p.compile("v2", &edit(CALLS_ATEXIT), flags);
        let patch = p
            .link(&obj, Some(&p.v1))
            .unwrap_or_else(|e| panic!("{flags:?}: {e:#?}"));
        assert_eq!(patch.swapped, vec!["later".to_string()], "{patch:#?}");
        let body = patch
            .writes
            .iter()
            .find(|w| w.what == "body of later")
            .expect("body of later");
        let call = body
            .bytes
            .iter()
            .rposition(|&b| b == 0xe8)
            .expect("a call in later");
        let rel = i32::from_le_bytes(body.bytes[call + 1..call + 5].try_into().expect("rel32"));
        assert_eq!(
            (body.addr.0 as i64 + call as i64 + 5 + rel as i64) as u64,
            atexit,
            "{flags:?}: the executable's own atexit"
        );
    }
    let never = CALLS_ATEXIT.replace("atexit(bye); ", "");
    let p = program_on_libc(&never, &["-O0", "-fPIE"], LIBC_BIAS);
    let obj = p.compile("v2", &edit(&never), &["-O0", "-fPIE"]);
    let errors = p.link(&obj, Some(&p.v1)).expect_err("refused");
    assert!(
        errors
            .iter()
            .any(|e| e.code == LinkErrorCode::UndefinedSymbol
                && e.message.contains("undefined symbol `atexit`")
                && e.message.contains("libc_nonshared.a")),
        "{errors:#?}"
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

    // Without a baseline the functions are compared with the running image: the same.
    let patch = p.link(&obj, None).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, vec!["other".to_string()]);
    assert_eq!(patch.skipped, 3, "helper, tick and main equal the image");

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
    let revert = p.linker.revert_last().expect("one patch to revert").entries;
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
    let per_thread = errors
        .iter()
        .find(|e| {
            e.code == LinkErrorCode::NewThreadLocal && e.symbol.as_deref() == Some("per_thread")
        })
        .unwrap_or_else(|| panic!("{errors:#?}"));
    let counter = errors
        .iter()
        .find(|e| e.code == LinkErrorCode::LayoutChanged && e.symbol.as_deref() == Some("counter"))
        .unwrap_or_else(|| panic!("{errors:#?}"));
    // Both point at the variable's declaration, not at line 1.
    assert_eq!(
        per_thread.line.as_ref().map(|l| l.line),
        Some(line_of(&v2, "__thread int per_thread;")),
        "{per_thread:#?}"
    );
    assert_eq!(
        counter.line.as_ref().map(|l| (l.line, l.column)),
        Some((line_of(&v2, "long counter;"), 6)),
        "{counter:#?}"
    );
    assert!(
        counter
            .line
            .as_ref()
            .is_some_and(|l| l.file.ends_with("v2/prog.c")),
        "{counter:#?}"
    );
}

#[test]
fn resized_function_local_static_is_layout_changed_at_its_declaration() {
    let p = program(TABLES, &["-O0"], vec![], arenas_below_image());
    let v2 = TABLES.replace("static int calls;", "static long calls;");
    let obj = p.compile("v2", &v2, &["-O0"]);
    let errors = p.link(&obj, Some(&p.v1)).expect_err("resized");
    let calls = errors
        .iter()
        .find(|e| {
            e.code == LinkErrorCode::LayoutChanged
                && e.symbol.as_deref().is_some_and(|s| s.starts_with("calls."))
        })
        .unwrap_or_else(|| panic!("{errors:#?}"));
    assert_eq!(
        calls.line.as_ref().map(|l| l.line),
        Some(line_of(&v2, "static long calls;")),
        "{calls:#?}"
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
    let note = patch
        .notes
        .iter()
        .find(|n| n.code == "initializer-not-applied" && n.symbol.as_deref() == Some("counter"))
        .unwrap_or_else(|| panic!("{:#?}", patch.notes));
    assert_eq!(
        note.line.as_ref().map(|l| l.line),
        Some(line_of(&v2, "int counter = 5;")),
        "{note:#?}"
    );
    assert!(
        !patch.writes.iter().any(|w| w.what.contains("counter")),
        "the running value is kept"
    );
}

/// A variable an earlier save changed without applying its initializer
/// (`LinkRequest::applied`) is compared with the initializer the program was given, not with
/// the baseline: an unrelated edit keeps the note, and the source going back to the running
/// initializer drops it (where the baseline alone says the opposite both times). The program
/// was given `int counter;` (zeros), by v1 or by the executable itself.
#[test]
fn an_unapplied_initializer_is_compared_with_the_one_the_program_has() {
    let p = program(BASE, &["-O0"], vec![], arenas_below_image());
    let five = BASE.replace("int counter;", "int counter = 5;");
    let v2 = p.compile("v2", &five, &["-O0"]);
    let v3 = p.compile(
        "v3",
        &five.replace("return n * 2;", "return n * 3;"),
        &["-O0"],
    );
    let v4 = p.compile(
        "v4",
        &BASE.replace("return n * 2;", "return n * 3;"),
        &["-O0"],
    );
    let noted = |object: &Object, baseline: &Object, applied: Option<Option<&Object>>| {
        let applied: Vec<AppliedInitializer> = applied
            .map(|object| AppliedInitializer {
                identity: "counter",
                object,
            })
            .into_iter()
            .collect();
        let patch = p
            .linker
            .link(&LinkRequest {
                object,
                baseline: Some(baseline),
                unit: UnitRef {
                    tu: p.tu,
                    compile_unit: None,
                    source: "prog.c".into(),
                },
                applied: &applied,
            })
            .unwrap_or_else(|e| panic!("{e:#?}"));
        let note = patch
            .notes
            .iter()
            .any(|n| n.code == "initializer-not-applied" && n.symbol.as_deref() == Some("counter"));
        let listed = patch.unapplied_initializers
            == [UnappliedInitializer {
                unit: "prog.c".into(),
                identity: "counter".into(),
            }];
        assert_eq!(note, listed, "{:#?}", patch.unapplied_initializers);
        note
    };
    // (new object, baseline, what the program was given, noted)
    let rows: [(&Object, &Object, Option<Option<&Object>>, bool); 7] = [
        (&v2, &p.v1, None, true),
        // An unrelated edit after it: the baseline (v2) already has `= 5`.
        (&v3, &v2, Some(Some(&p.v1)), true),
        (&v3, &v2, Some(None), true),
        (&v3, &v2, None, false),
        // Back to what runs: the baseline (v3) has `= 5`.
        (&v4, &v3, Some(Some(&p.v1)), false),
        (&v4, &v3, Some(None), false),
        (&v4, &v3, None, true),
    ];
    for (i, (object, baseline, applied, expected)) in rows.into_iter().enumerate() {
        assert_eq!(noted(object, baseline, applied), expected, "row {i}");
    }
}

/// The 8-byte value hot-link writes into a data-arena GOT slot that `function`'s new body
/// loads `symbol` from (a GOT-relative relocation).
fn got_slot_value(obj: &Object, patch: &Patch, function: &str, symbol: &str) -> u64 {
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
        .find(|r| {
            obj.symbol_name(r.symbol) == symbol
                && matches!(
                    r.kind,
                    RelocKind::GotPcRel | RelocKind::GotPcRelX | RelocKind::RexGotPcRelX
                )
        })
        .unwrap_or_else(|| panic!("no GOT reference to {symbol}"));
    let off = reloc.offset.0 as usize;
    let disp = i32::from_le_bytes(body.bytes[off..off + 4].try_into().expect("rel32"));
    let slot = (body.addr.0 as i64 + off as i64 + disp as i64 - reloc.addend) as u64;
    let w = patch
        .writes
        .iter()
        .find(|w| w.addr.0 == slot)
        .expect("slot written by the patch");
    u64::from_le_bytes(w.bytes[..8].try_into().expect("8 bytes"))
}

const EXTERN: &str = r#"
extern int ext_var;
extern int ext_fn(int);
int reads(void) { return ext_var + ext_fn(1); }
int main(void) { return reads(); }
"#;

#[test]
fn extern_data_binds_to_the_executables_copy_or_the_library() {
    // v1 reads ext_var PC-relative (gcc's default PIE): ld gives the executable a copy.
    let p = program_linked_with(
        EXTERN,
        &["-O0", "-fPIE"],
        &["ext.c"],
        vec![],
        arenas_below_image(),
    );
    let exe_copy = p.exe_symbol("ext_var");
    let lib = &p.linker.image().libs[0];
    let ext_other = lib
        .image
        .symbols
        .iter()
        .find(|s| s.name == "ext_other" && s.dynamic)
        .expect("ext_other");
    let lib_addr = ext_other.vaddr + lib.bias;

    // v2, compiled as patches are (-mno-direct-extern-access), reaches both through GOT slots.
    let v2 = EXTERN
        .replace(
            "extern int ext_var;",
            "extern int ext_var;\nextern int ext_other;",
        )
        .replace("return ext_var +", "return ext_var + ext_other +");
    let obj = p.compile("v2", &v2, &["-O0", "-fPIE", "-mno-direct-extern-access"]);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        got_slot_value(&obj, &patch, "reads", "ext_var"),
        exe_copy,
        "bound to the executable's copy"
    );
    assert_eq!(
        got_slot_value(&obj, &patch, "reads", "ext_other"),
        lib_addr,
        "the library's own variable"
    );
}

const TABLES: &str = r#"
const int limits[3] = {1, 2, 3};
__attribute__((noinline)) int tick(void) {
  static int calls;
  return ++calls + limits[calls % 3];
}
__attribute__((noinline)) static int twice(int x) { return 2 * x; }
__attribute__((noinline)) int (*get(void))(int) { return twice; }
__attribute__((noinline)) int sw(int n) {
  switch (n) {
  case 0: return 11;
  case 1: return 23;
  case 2: return 35;
  case 3: return 47;
  case 4: return 59;
  case 5: return 61;
  }
  return twice(n);
}
int main(void) { return tick() + get()(1) + sw(2); }
"#;

#[test]
fn function_local_statics_bind_to_the_running_ones_despite_renumbering() {
    let p = program(TABLES, &["-O0"], vec![], arenas_below_image());
    let calls = p
        .linker
        .image()
        .exe
        .image
        .symbols
        .iter()
        .find(|s| s.name.starts_with("calls."))
        .map(|s| s.vaddr + BIAS)
        .expect("calls.N in the image");
    // A new static declared before tick's renumbers gcc's suffixes.
    let v2 = TABLES
        .replace(
            "int tick(void) {",
            "int early(void) { static int calls = 9; return calls++; }\nint tick(void) {",
        )
        .replace("return ++calls +", "return calls++ +");
    let obj = p.compile("v2", &v2, &["-O0"]);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(
        patch.swapped.contains(&"tick".to_string()),
        "{:?}",
        patch.swapped
    );
    // early's `calls` is new (allocated), tick's is the running one.
    assert_eq!(pc_relative_target(&obj, &patch, "tick", "calls"), calls);
    assert_ne!(pc_relative_target(&obj, &patch, "early", "calls"), calls);
    assert!(
        patch.added.iter().any(|a| a.starts_with("calls.")),
        "{:?}",
        patch.added
    );

    // Without a baseline the DWARF scopes of the object and of the image tell them apart.
    let patch = p.link(&obj, None).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(pc_relative_target(&obj, &patch, "tick", "calls"), calls);
    assert_ne!(pc_relative_target(&obj, &patch, "early", "calls"), calls);
}

#[test]
fn named_read_only_data_is_updated_in_place_or_refused_when_resized() {
    let p = program(TABLES, &["-O0"], vec![], arenas_below_image());
    let limits = p.exe_symbol("limits");
    let v2 = TABLES.replace("{1, 2, 3}", "{1, 2, 4}");
    let obj = p.compile("v2", &v2, &["-O0"]);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    // The program can read `limits` now: the update belongs to the atomic commit (written
    // with every thread stopped, checked against what is there), not to the arena writes.
    assert!(
        !patch.writes.iter().any(|w| w.addr.0 == limits),
        "an in-place update went out with the arena writes"
    );
    let w = patch
        .in_place
        .iter()
        .find(|w| w.addr.0 == limits)
        .expect("limits rewritten in place");
    let ints = |v: &[i32]| v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>();
    assert_eq!(w.bytes, ints(&[1, 2, 4]));
    assert_eq!(w.expected, ints(&[1, 2, 3]));
    assert!(
        patch.entries.is_empty(),
        "no function changed: {:?}",
        patch.swapped
    );

    let v3 = TABLES.replace("limits[3] = {1, 2, 3}", "limits[4] = {1, 2, 3, 4}");
    let obj = p.compile("v3", &v3, &["-O0"]);
    let errors = p.link(&obj, Some(&p.v1)).expect_err("resized");
    let limits = errors
        .iter()
        .find(|e| e.code == LinkErrorCode::LayoutChanged && e.symbol.as_deref() == Some("limits"))
        .unwrap_or_else(|| panic!("{errors:#?}"));
    assert_eq!(
        limits.line.as_ref().map(|l| l.line),
        Some(line_of(&v3, "limits[4]")),
        "{limits:#?}"
    );
}

#[test]
fn function_addresses_are_stable_entries_and_jump_tables_point_into_the_new_body() {
    for flags in [
        &["-O0", "-fPIE"][..],
        &["-O0", "-fno-pie"][..],
        &["-O2", "-fPIE"][..],
    ] {
        // Absolute 32-bit references of non-PIE code need arenas below 2 GiB.
        let arenas = if flags.contains(&"-fno-pie") {
            low_arenas()
        } else {
            arenas_below_image()
        };
        let p = program(TABLES, flags, vec![], arenas);
        let twice = p.exe_symbol("twice");
        let v2 = TABLES
            .replace("return 2 * x;", "return 3 * x;")
            .replace("return 47;", "return 48;");
        let obj = p.compile("v2", &v2, flags);
        let patch = p
            .link(&obj, Some(&p.v1))
            .unwrap_or_else(|e| panic!("{e:#?}"));
        let mut swapped = patch.swapped.clone();
        swapped.sort();
        assert_eq!(
            swapped,
            vec!["sw".to_string(), "twice".to_string()],
            "{flags:?}"
        );
        // `return twice;` in get (unchanged, not written) and `twice(n)` in sw: the stable
        // entry, never the new body of twice.
        let sw_body = patch
            .writes
            .iter()
            .find(|w| w.what == "body of sw")
            .expect("sw");
        let twice_body = patch
            .writes
            .iter()
            .find(|w| w.what == "body of twice")
            .expect("twice");
        let sw_atom = (0..obj.atoms.len())
            .map(|i| hot_object::AtomId(i as u32))
            .find(|&a| {
                obj.primary_symbol(a)
                    .is_some_and(|s| obj.symbol(s).name == "sw")
            })
            .expect("sw atom");
        let mut saw_twice = false;
        for r in &obj.atom(sw_atom).relocs {
            if obj.symbol_name(r.symbol).contains("twice") {
                let off = r.offset.0 as usize;
                let disp =
                    i32::from_le_bytes(sw_body.bytes[off..off + 4].try_into().expect("rel32"));
                let target = (sw_body.addr.0 as i64 + off as i64 + 4 + disp as i64) as u64;
                assert_eq!(
                    target, twice,
                    "{flags:?}: sw reaches twice through its stable entry"
                );
                assert_ne!(target, twice_body.addr.0);
                saw_twice = true;
            }
        }
        assert!(saw_twice, "{flags:?}: sw calls twice");
        // The jump table is copied fresh and every entry lands inside the new body of sw.
        // (gcc -O2 turns this switch into a lookup table; -O0 keeps a jump table.)
        let Some(table) = patch
            .writes
            .iter()
            .find(|w| w.what.starts_with(".rodata.sw"))
        else {
            assert!(
                flags.contains(&"-O2"),
                "{flags:?}: no jump table copied: {:#?}",
                patch.writes
            );
            continue;
        };
        let body = sw_body.addr.0..sw_body.addr.0 + sw_body.bytes.len() as u64;
        let targets: Vec<u64> = if flags.contains(&"-fPIE") {
            // Relative entries: table + entry.
            table
                .bytes
                .chunks(4)
                .map(|c| {
                    (table.addr.0 as i64 + i32::from_le_bytes(c.try_into().expect("4")) as i64)
                        as u64
                })
                .collect()
        } else {
            table
                .bytes
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                .collect()
        };
        assert!(targets.len() >= 6, "{flags:?}: {targets:x?}");
        for t in targets {
            assert!(
                body.contains(&t),
                "{flags:?}: jump table entry {t:#x} outside the new body {body:x?}"
            );
        }
    }
}

const COLD: &str = r#"
void fail(const char *m) __attribute__((cold, noreturn));
int counter;
__attribute__((noinline)) void fail(const char *m) { (void)m; __builtin_trap(); }
__attribute__((noinline)) int checked(int x) {
  if (__builtin_expect(x < 0, 0)) {
    counter++;
    fail("negative");
  }
  return x * 2;
}
int main(void) { return checked(1); }
"#;

#[test]
fn cold_parts_and_new_string_tables_go_with_their_function() {
    let p = program(COLD, &["-O2"], vec![], arenas_below_image());
    let v2 = COLD
        .replace(
            "__attribute__((noinline)) int checked",
            "static const char *names[] = {\"zero\", \"one\"};\nvoid rename_it(int i, const char *s) { names[i & 1] = s; }\n__attribute__((noinline)) int checked",
        )
        .replace("return x * 2;", "return x * 3 + names[x & 1][0];")
        .replace("\"negative\"", "\"negative input\"");
    let obj = p.compile("v2", &v2, &["-O2"]);
    assert!(
        obj.atoms
            .iter()
            .any(|a| a.section_name == ".text.unlikely.checked"),
        "gcc split checked.cold"
    );
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, vec!["checked".to_string()]);
    assert!(
        patch.added.contains(&"rename_it".to_string())
            && patch.added.contains(&"names".to_string()),
        "{:?}",
        patch.added
    );
    let cold = patch
        .writes
        .iter()
        .find(|w| w.what.starts_with(".text.unlikely.checked"))
        .expect("cold part written");
    let body = patch
        .writes
        .iter()
        .find(|w| w.what == "body of checked")
        .expect("body");
    // checked's `js` to its cold part reaches the new copy.
    let js = body
        .bytes
        .windows(2)
        .position(|w| w == [0x0f, 0x88])
        .expect("js rel32");
    let rel = i32::from_le_bytes(body.bytes[js + 2..js + 6].try_into().expect("rel32"));
    assert_eq!(
        (body.addr.0 as i64 + js as i64 + 6 + rel as i64) as u64,
        cold.addr.0
    );
    // The new function-local table of string pointers is a new variable whose pointers lead
    // to the new strings.
    let names = patch
        .writes
        .iter()
        .find(|w| w.what.starts_with("data names"))
        .expect("names allocated");
    assert_eq!(names.bytes.len(), 16);
    for (i, want) in [b"zero\0".as_slice(), b"one\0".as_slice()]
        .iter()
        .enumerate()
    {
        let ptr = u64::from_le_bytes(names.bytes[i * 8..i * 8 + 8].try_into().expect("8"));
        let hit = patch.writes.iter().any(|w| {
            ptr >= w.addr.0
                && ptr < w.addr.0 + w.bytes.len() as u64
                && w.bytes[(ptr - w.addr.0) as usize..].starts_with(want)
        });
        assert!(hit, "names[{i}] = {ptr:#x} does not point at {want:?}");
    }
}

const FOLDED: &str = r#"
__attribute__((noinline, noclone)) static int add_a(int x) { return x * 41 + 7; }
__attribute__((noinline, noclone)) static int add_b(int x) { return x * 41 + 7; }
int main(void) { return add_a(1) + add_b(2); }
"#;

#[test]
fn entries_shared_by_identical_code_folding_move_only_together() {
    let p = program(FOLDED, &["-O2"], vec![], arenas_below_image());
    assert_eq!(
        p.exe_symbol("add_a"),
        p.exe_symbol("add_b"),
        "gcc folded the two functions"
    );
    // Only add_b changes: its entry is add_a's too, so it cannot move alone.
    let v2 = FOLDED.replace(
        "add_b(int x) { return x * 41 + 7; }",
        "add_b(int x) { return x * 43 + 7; }",
    );
    let obj = p.compile("v2", &v2, &["-O2"]);
    let errors = p.link(&obj, Some(&p.v1)).expect_err("shared entry");
    assert!(
        errors
            .iter()
            .all(|e| e.code == LinkErrorCode::LayoutChanged),
        "{errors:#?}"
    );
    let b = errors
        .iter()
        .find(|e| e.symbol.as_deref() == Some("add_b"))
        .expect("add_b refused");
    assert!(
        b.message.contains("`add_a`") && b.message.contains("identical code folding"),
        "{}",
        b.message
    );
    // Both change alike: gcc folds them again and the one body serves both names.
    let v3 = FOLDED.replace("x * 41", "x * 43");
    let obj = p.compile("v3", &v3, &["-O2"]);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.entries.len(), 1, "{:#?}", patch.entries);
    assert_eq!(patch.entries[0].addr.0, p.exe_symbol("add_a"));
}

const POINTER_TABLE: &str = r#"
extern int ext_fn(int);
__attribute__((noinline)) int local_fn(int x) { return x * 3; }
int (*const table[2])(int) = {ext_fn, local_fn};
int main(void) { return table[0](1) + table[1](2); }
"#;

#[test]
fn a_const_table_of_pointers_expects_what_the_dynamic_linker_put_there() {
    // What the table holds at run time: the library's function (a symbol the dynamic linker
    // resolved) and the executable's own function moved by the load bias.
    let p = program_linked_with(
        POINTER_TABLE,
        &["-O0", "-fPIE"],
        &["ext.c"],
        vec![],
        arenas_below_image(),
    );
    let lib = &p.linker.image().libs[0];
    let ext_fn = lib
        .image
        .symbols
        .iter()
        .find(|s| s.name == "ext_fn" && s.dynamic)
        .map(|s| s.vaddr + lib.bias)
        .expect("ext_fn");
    let local_fn = p.exe_symbol("local_fn");
    let table = p.exe_symbol("table");
    let v2 = POINTER_TABLE.replace("{ext_fn, local_fn}", "{local_fn, ext_fn}");
    let obj = p.compile("v2", &v2, &["-O0", "-fPIE", "-mno-direct-extern-access"]);
    let patch = p
        .link(&obj, Some(&p.v1))
        .unwrap_or_else(|e| panic!("{e:#?}"));
    let w = patch
        .in_place
        .iter()
        .find(|w| w.addr.0 == table)
        .unwrap_or_else(|| panic!("table not updated in place: {patch:#?}"));
    let words = |v: &[u64]| v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>();
    assert_eq!(w.expected, words(&[ext_fn, local_fn]));
    assert_eq!(w.bytes, words(&[local_fn, ext_fn]));
}

/// `tick` has a cleanup (a destructor, in C): its CIE points at the personality routine
/// through `DW.ref.__gcc_personality_v0`.
const UNWINDS: &str = r#"
int counter;
static void release(int *p) { counter -= *p; }
int helper(int x) { return x + 1; }
int tick(int n) {
  int held __attribute__((cleanup(release))) = helper(n);
  counter += helper(held) * 2;
  return counter;
}
int main(void) { return tick(1); }
"#;

#[test]
fn a_code_arena_too_full_for_the_unwind_table_costs_only_the_table() {
    let out = std::process::Command::new("cc")
        .arg("-print-file-name=libgcc_s.so.1")
        .output()
        .expect("cc -print-file-name");
    let libgcc = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut p = program(
        UNWINDS,
        &["-fexceptions"],
        vec![module(&libgcc, LIB_BIAS)],
        arenas_below_image(),
    );
    let v2 = p.compile(
        "v2",
        &UNWINDS.replace("return x + 1;", "return x + 2;"),
        &["-fexceptions"],
    );
    let roomy = p.link(&v2, Some(&p.v1)).expect("link");
    let table = roomy.unwind[0];
    // The same link with a code arena that ends where the table would start (+ 1 byte).
    let mut arenas = arenas_below_image();
    arenas.code.end = table.frame.offset(1);
    p.linker = Linker::new(p.linker.image().clone(), arenas);
    let patch = p
        .link(&v2, Some(&p.v1))
        .unwrap_or_else(|e| panic!("a full arena for the table refused the link: {e:#?}"));
    assert!(patch.unwind.is_empty(), "{:?}", patch.unwind);
    assert_eq!(patch.swapped, roomy.swapped);
    assert!(
        patch
            .notes
            .iter()
            .any(|n| n.message.contains("code arena is full") && n.message.contains("unwind")),
        "{:#?}",
        patch.notes
    );
}

#[test]
fn placed_bodies_get_an_eh_frame_table_with_their_fdes_and_personality() {
    // libgcc_s defines `_Unwind_Resume`, which the cleanup's landing pad calls.
    let out = std::process::Command::new("cc")
        .arg("-print-file-name=libgcc_s.so.1")
        .output()
        .expect("cc -print-file-name");
    let libgcc = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let p = program(
        UNWINDS,
        &["-fexceptions"],
        vec![module(&libgcc, LIB_BIAS)],
        arenas_below_image(),
    );
    let v2 = p.compile(
        "v2",
        &UNWINDS
            .replace("return x + 1;", "return x + 2;")
            .replace("helper(held) * 2", "helper(held) * 3"),
        &["-fexceptions"],
    );
    let patch = p.link(&v2, Some(&p.v1)).expect("link");
    assert_eq!(patch.unwind.len(), 1, "{:?}", patch.unwind);
    let unwind = patch.unwind[0];
    let write_at = |addr: RuntimeAddr| {
        patch
            .writes
            .iter()
            .find(|w| w.addr == addr)
            .unwrap_or_else(|| panic!("nothing written at {addr}: {:#?}", patch.writes))
    };
    let table = write_at(unwind.frame);
    assert_eq!(table.bytes.len() as u64, unwind.len);
    assert!(table.bytes.ends_with(&[0; 4]), "no terminator");
    assert!(write_at(unwind.object).bytes.iter().all(|&b| b == 0));
    let body = |name: &str| {
        let w = patch
            .writes
            .iter()
            .find(|w| w.what == format!("body of {name}"))
            .unwrap_or_else(|| panic!("no body of {name}"));
        (w.addr.0, w.bytes.len() as u64)
    };
    // The table read back as the unwinder reads it, at its runtime address.
    use gimli::UnwindSection;
    let eh = gimli::EhFrame::new(&table.bytes, gimli::LittleEndian);
    let bases = gimli::BaseAddresses::default().set_eh_frame(unwind.frame.0);
    let mut entries = eh.entries(&bases);
    let mut fdes = Vec::new();
    while let Some(entry) = entries.next().expect("a record") {
        if let gimli::CieOrFde::Fde(partial) = entry {
            let fde = partial
                .parse(gimli::EhFrame::cie_from_offset)
                .expect("an FDE");
            fdes.push(((fde.initial_address(), fde.len()), fde));
        }
    }
    let ranges: Vec<(u64, u64)> = fdes.iter().map(|(r, _)| *r).collect();
    let mut expected = vec![body("helper"), body("tick")];
    expected.sort();
    let mut sorted = ranges.clone();
    sorted.sort();
    assert_eq!(
        sorted, expected,
        "one FDE per placed body, at its arena address"
    );
    assert_eq!(unwind.fdes, 2);
    let (_, tick) = fdes
        .iter()
        .find(|(r, _)| *r == body("tick"))
        .expect("tick's FDE");
    // The personality pointer is indirect, through the executable's own DW.ref slot
    // (bound like any variable). (gcc's C cleanups need no LSDA; C++ LSDAs are covered by
    // the real-process tests of hot-session.)
    let Some(gimli::Pointer::Indirect(slot)) = tick.personality() else {
        panic!("no indirect personality: {:?}", tick.personality());
    };
    assert_eq!(slot, p.exe_symbol("DW.ref.__gcc_personality_v0"));
    // The table stays registered after undo (an undone body may still run) and after a
    // failed commit (`retire`): neither its space nor anything else the patch allocated is
    // handed out again.
    let allocated = |patch: &hot_link::Patch| -> Vec<(u64, u64)> {
        patch
            .writes
            .iter()
            .map(|w| (w.addr.0, w.addr.0 + w.bytes.len() as u64))
            .collect()
    };
    let disjoint = |a: &[(u64, u64)], b: &[(u64, u64)]| {
        a.iter()
            .all(|&(s, e)| b.iter().all(|&(s2, e2)| e <= s2 || e2 <= s))
    };
    let mut p = p;
    p.linker.commit(&patch);
    p.linker.revert_last().expect("revert");
    let again = p.link(&v2, Some(&p.v1)).expect("link after undo");
    assert!(
        disjoint(&allocated(&patch), &allocated(&again)),
        "a link after undo reuses the undone patch's arena space"
    );
    p.linker.retire(&again);
    let third = p
        .link(&v2, Some(&p.v1))
        .expect("link after a retired patch");
    assert!(
        disjoint(&allocated(&again), &allocated(&third)),
        "a link after retire reuses the retired patch's arena space"
    );
    assert!(third.unwind[0].frame.0 >= again.unwind[0].frame.0 + again.unwind[0].len);
    // Retiring adopts nothing else: the entries were never committed, so there is no
    // second swap to revert (only none).
    assert!(p.linker.revert_plan().is_none());
}

/// The files of a program whose units are swapped together (a header they all include
/// edited): `SCALE` stands for the header's macro, one function per file uses it.
const UNITS: [(&str, &str); 3] = [
    (
        "a.c",
        "#define SCALE 1\nint part_b(void);\nint part_c(void);\nint part_a(void) { return 1 * SCALE; }\nint main(void) { return part_a() + part_b() + part_c(); }\n",
    ),
    ("b.c", "#define SCALE 1\nint part_b(void) { return 10 * SCALE; }\n"),
    ("c.c", "#define SCALE 1\nint part_c(void) { return 100 * SCALE; }\n"),
];

/// A program of several files (compiled by `compiler`) linked by GNU ld, its linker and the
/// objects it was built from.
struct Units {
    dir: tempfile::TempDir,
    linker: Linker,
    built: Vec<Object>,
    files: &'static [(&'static str, &'static str)],
    compiler: &'static str,
}

impl Units {
    fn new() -> Units {
        Units::of("cc", &UNITS)
    }

    fn of(compiler: &'static str, files: &'static [(&'static str, &'static str)]) -> Units {
        let dir = tempfile::tempdir().expect("tempdir");
        let objects: Vec<_> = files
            .iter()
            .map(|(name, text)| compile_with(compiler, dir.path(), name, text, &["-O0"]))
            .collect();
        let linked = ld(
            dir.path(),
            &objects,
            &[],
            &["-pie", "--unresolved-symbols=ignore-all"],
        );
        let linker = Linker::new(
            image_model(module(&linked.exe, BIAS), vec![]),
            arenas_below_image(),
        );
        let built = objects.iter().map(|o| parse_object(o)).collect();
        Units {
            dir,
            linker,
            built,
            files,
            compiler,
        }
    }

    /// The unit of the image `file` replaces.
    fn unit(&self, file: &str) -> UnitRef {
        let image = &self.linker.image().exe.image;
        UnitRef {
            tu: image
                .translation_units
                .iter()
                .position(|n| n == file)
                .map(|i| TranslationUnitId(i as u32)),
            compile_unit: image
                .compile_units
                .iter()
                .position(|cu| cu.name.ends_with(&format!("/{file}")) || cu.name == file),
            source: file.to_owned(),
        }
    }

    /// Each file with `edit` (from, to) applied where it applies, compiled in the subfolder
    /// `version`; files the edit does not touch are left out.
    fn edited(&self, version: &str, edits: &[(&str, &str, &str)]) -> Vec<(usize, Object)> {
        let sub = self.dir.path().join(version);
        std::fs::create_dir_all(&sub).expect("mkdir");
        self.files
            .iter()
            .enumerate()
            .filter_map(|(i, (name, text))| {
                let mut text = text.to_string();
                let mut touched = false;
                for (file, from, to) in edits {
                    if file == name {
                        assert!(text.contains(from), "{name} has no {from:?}");
                        text = text.replace(from, to);
                        touched = true;
                    }
                }
                touched.then(|| {
                    let object = compile_with(self.compiler, &sub, name, &text, &["-O0"]);
                    (i, parse_object(&object))
                })
            })
            .collect()
    }
}

/// The link requests of edited `objects` (from [`Units::edited`]) against the objects the
/// program was built from, with their units.
/// One request per edited object (from [`Units::edited`]), each with its file's unit of the
/// image and its v1 object (in `built`, which is `p.built`: borrowed apart from `p.linker`)
/// as the baseline.
fn unit_requests<'a>(
    p: &Units,
    built: &'a [Object],
    objects: &'a [(usize, Object)],
) -> Vec<LinkRequest<'a>> {
    objects
        .iter()
        .map(|(i, object)| LinkRequest {
            object,
            baseline: Some(&built[*i]),
            unit: p.unit(p.files[*i].0),
            applied: &[],
        })
        .collect()
}

/// Several units linked as one patch, row by row: (what, edits per file, functions swapped,
/// names added, units that fail). Every patch that links is checked the same way: its arena
/// writes never overlap, and commit + `revert_plan`/`revert_last` of the combined patch is
/// one record that puts back every entry it redirected.
#[test]
fn units_linked_together_share_the_arenas_and_revert_as_one() {
    type Row<'a> = (
        &'a str,
        &'a [(&'a str, &'a str, &'a str)],
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
    );
    let rows: [Row; 5] = [
        (
            "the header's macro changed in all three files",
            &[
                ("a.c", "#define SCALE 1", "#define SCALE 2"),
                ("b.c", "#define SCALE 1", "#define SCALE 2"),
                ("c.c", "#define SCALE 1", "#define SCALE 2"),
            ],
            &["part_a", "part_b", "part_c"],
            &[],
            &[],
        ),
        (
            // Linked alone, c.c's call to `fresh` is undefined: the earlier unit's addition
            // is visible to the next.
            "a function b.c adds is called by c.c",
            &[
                (
                    "b.c",
                    "int part_b",
                    "int fresh(int x) { return x + 5; }\nint part_b",
                ),
                ("b.c", "10 * SCALE", "10 * SCALE + fresh(0)"),
                ("c.c", "int part_c", "int fresh(int);\nint part_c"),
                ("c.c", "100 * SCALE", "100 * SCALE + fresh(1)"),
            ],
            &["part_b", "part_c"],
            &["fresh"],
            &[],
        ),
        (
            // The mirror: c.c adds it, b.c (before c.c in the given order) calls it. A
            // relink succeeds, so the swap does: c.c is linked first.
            "a function c.c adds is called by b.c",
            &[
                ("b.c", "int part_b", "int fresh(int);\nint part_b"),
                ("b.c", "10 * SCALE", "10 * SCALE + fresh(0)"),
                (
                    "c.c",
                    "int part_c",
                    "int fresh(int x) { return x + 5; }\nint part_c",
                ),
                ("c.c", "100 * SCALE", "100 * SCALE + fresh(1)"),
            ],
            &["part_c", "part_b"],
            &["fresh"],
            &[],
        ),
        (
            "two files refer to a missing function: both errors, each with its unit",
            &[
                ("a.c", "int part_a", "int missing(void);\nint part_a"),
                ("a.c", "1 * SCALE", "missing()"),
                ("b.c", "#define SCALE 1", "#define SCALE 3"),
                ("c.c", "int part_c", "int missing(void);\nint part_c"),
                ("c.c", "100 * SCALE", "missing()"),
            ],
            &[],
            &[],
            &["a.c", "c.c"],
        ),
        (
            "one file alone is the one-unit case",
            &[("b.c", "#define SCALE 1", "#define SCALE 4")],
            &["part_b"],
            &[],
            &[],
        ),
    ];
    for (k, (what, edits, swapped, added, failing)) in rows.into_iter().enumerate() {
        let mut p = Units::new();
        let objects = p.edited(&format!("v{k}"), edits);
        let requests = unit_requests(&p, &p.built, &objects);
        let patch = match p.linker.link_units(&requests) {
            Err(errors) => {
                let mut units: Vec<&str> = errors.iter().map(|e| e.unit.as_str()).collect();
                units.dedup();
                assert_eq!(units, failing, "{what}: {errors:#?}");
                assert!(
                    errors
                        .iter()
                        .all(|e| e.code == LinkErrorCode::UndefinedSymbol
                            && e.symbol.as_deref() == Some("missing")),
                    "{what}: {errors:#?}"
                );
                continue;
            }
            Ok(patch) => patch,
        };
        assert!(
            failing.is_empty(),
            "{what}: linked, expected errors in {failing:?}"
        );
        assert_eq!(patch.swapped, swapped, "{what}");
        assert_eq!(patch.added, added, "{what}");
        if !added.is_empty() {
            // Alone, the unit that calls the addition does not link.
            assert!(
                requests.iter().any(|r| p.linker.link(r).is_err()),
                "{what}: every unit links alone"
            );
        }

        // Every arena write has its own bytes: no two units were given the same space.
        let mut ranges: Vec<(u64, u64, &str)> = patch
            .writes
            .iter()
            .map(|w| (w.addr.0, w.addr.0 + w.bytes.len() as u64, w.what.as_str()))
            .collect();
        ranges.sort();
        for pair in ranges.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "{what}: overlapping writes {pair:?}"
            );
        }
        let entries: Vec<u64> = patch.entries.iter().map(|e| e.addr.0).collect();
        let mut distinct = entries.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            entries.len(),
            "{what}: an entry written twice"
        );

        // One commit, one record: its revert puts back each entry's bytes.
        p.linker.commit(&patch);
        let plan = p.linker.revert_plan().expect("a record");
        let reverted = p.linker.revert_last().expect("a record");
        assert_eq!(plan, reverted, "{what}");
        for entry in &patch.entries {
            let back = reverted
                .entries
                .iter()
                .find(|w| w.addr == entry.addr)
                .unwrap_or_else(|| panic!("{what}: {} not reverted", entry.function));
            assert_eq!(
                (&back.expected, &back.bytes),
                (&entry.bytes, &entry.expected),
                "{what}: {}",
                entry.function
            );
        }
        assert_eq!(reverted.entries.len(), patch.entries.len(), "{what}");
        assert!(
            p.linker.revert_last().is_none(),
            "{what}: more than one record"
        );
        // The linker is back where it was: the same units link to the same entry writes;
        // and the stub of each function the patch added, which undo leaves as it is
        // (nothing reaches it), is redirected from the jump it still holds.
        let again = p.linker.link_units(&requests).expect("links again");
        let stubs: Vec<&hot_link::PatchWrite> = patch
            .writes
            .iter()
            .filter(|w| w.what.starts_with("entry stub of "))
            .collect();
        assert_eq!(stubs.len(), added.len(), "{what}: {stubs:#?}");
        let (from_stubs, rest): (Vec<_>, Vec<_>) = again
            .entries
            .iter()
            .partition(|e| stubs.iter().any(|s| s.addr == e.addr));
        // By address: the units may link in another order now (an addition undone keeps
        // its stub, so it is no longer new to the program and orders nothing).
        let mut expected: Vec<_> = rest.iter().map(|e| (e.addr, &e.expected)).collect();
        let mut first: Vec<_> = patch
            .entries
            .iter()
            .map(|e| (e.addr, &e.expected))
            .collect();
        expected.sort();
        first.sort();
        assert_eq!(expected, first, "{what}");
        assert_eq!(from_stubs.len(), stubs.len(), "{what}: {from_stubs:#?}");
        for entry in from_stubs {
            let stub = stubs.iter().find(|s| s.addr == entry.addr).expect("a stub");
            assert_eq!(entry.expected, stub.bytes[..entry.expected.len()], "{what}");
        }
    }
}

/// Two C++ files with a copy of one inline function of a header (a COMDAT group each;
/// the executable kept one).
const INLINE_UNITS: [(&str, &str); 2] = [
    (
        "u1.cpp",
        "inline int twice(int x) { return 2 * x; }\nint f2(int);\nint f1(int x) { return twice(x); }\nint main() { return f1(1) + f2(2); }\n",
    ),
    (
        "u2.cpp",
        "inline int twice(int x) { return 2 * x; }\nint f2(int x) { return twice(x) + 1; }\n",
    ),
];

#[test]
fn an_inline_function_both_units_carry_is_redirected_once() {
    let mut p = Units::of("c++", &INLINE_UNITS);
    let edit = "inline int twice(int x) { return 2 * x; }";
    let to = "inline int twice(int x) { return 3 * x; }";
    let objects = p.edited("v2", &[("u1.cpp", edit, to), ("u2.cpp", edit, to)]);
    let requests = unit_requests(&p, &p.built, &objects);
    // Alone, each unit redirects the entry the executable uses.
    let alone: Vec<Patch> = requests
        .iter()
        .map(|r| p.linker.link(r).unwrap_or_else(|e| panic!("{e:#?}")))
        .collect();
    let entry_of = |patch: &Patch| -> Vec<(u64, Vec<u8>)> {
        patch
            .entries
            .iter()
            .filter(|e| e.function.contains("twice"))
            .map(|e| (e.addr.0, e.expected.clone()))
            .collect()
    };
    assert_eq!(entry_of(&alone[0]).len(), 1, "{:#?}", alone[0].entries);
    assert_eq!(entry_of(&alone[0]), entry_of(&alone[1]));
    // Together: one write, expecting the original bytes, reverted once.
    let patch = p
        .linker
        .link_units(&requests)
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        entry_of(&patch),
        entry_of(&alone[0]),
        "{:#?}",
        patch.entries
    );
    p.linker.commit(&patch);
    let reverted = p.linker.revert_last().expect("a record");
    let (addr, original) = entry_of(&alone[0]).remove(0);
    let back: Vec<_> = reverted
        .entries
        .iter()
        .filter(|w| w.addr.0 == addr)
        .collect();
    assert!(
        matches!(back.as_slice(), [w] if w.bytes == original),
        "{:#?}",
        reverted.entries
    );
}

/// The stub a call in `function`'s new body (PLT32 or PC32 to `symbol`) reaches, and the
/// body that stub jumps to.
fn call_through_stub(obj: &Object, patch: &Patch, function: &str, symbol: &str) -> (u64, u64) {
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
        .find(|r| obj.symbol_name(r.symbol) == symbol)
        .unwrap_or_else(|| panic!("no reference to {symbol} in {function}"));
    let off = reloc.offset.0 as usize;
    let disp = i32::from_le_bytes(body.bytes[off..off + 4].try_into().expect("rel32"));
    let stub = (body.addr.0 as i64 + off as i64 + disp as i64 - reloc.addend) as u64;
    let write = patch
        .writes
        .iter()
        .find(|w| w.addr.0 == stub)
        .unwrap_or_else(|| panic!("{function} calls {stub:#x}, which the patch does not write"));
    assert_eq!(write.what, format!("entry stub of {symbol}"));
    assert_eq!(write.bytes[0], 0xe9, "{}", write.what);
    let rel = i32::from_le_bytes(write.bytes[1..5].try_into().expect("rel32"));
    (stub, (stub as i64 + 5 + rel as i64) as u64)
}

#[test]
fn new_functions_two_units_add_and_call_across_get_stubs_reserved_before_linking() {
    // b.c calls `from_c`, which c.c adds; c.c calls `from_b`, which b.c adds. No order of
    // the two links sees both, as a relink does: their stubs are reserved first.
    let p = Units::new();
    let objects = p.edited(
        "v1",
        &[
            (
                "b.c",
                "int part_b",
                "int from_c(void);\nint from_b(void) { return 3; }\nint part_b",
            ),
            ("b.c", "10 * SCALE", "10 * SCALE + from_c()"),
            (
                "c.c",
                "int part_c",
                "int from_b(void);\nint from_c(void) { return 4; }\nint part_c",
            ),
            ("c.c", "100 * SCALE", "100 * SCALE + from_b()"),
        ],
    );
    let mut requests = unit_requests(&p, &p.built, &objects);
    for order in ["given", "reversed"] {
        let patch = p
            .linker
            .link_units(&requests)
            .unwrap_or_else(|e| panic!("{order}: {e:#?}"));
        let mut added = patch.added.clone();
        added.sort();
        assert_eq!(added, ["from_b", "from_c"], "{order}");
        let body = |name: &str| {
            patch
                .writes
                .iter()
                .find(|w| w.what == format!("body of {name}"))
                .unwrap_or_else(|| panic!("{order}: no body of {name}"))
                .addr
                .0
        };
        let (b, c) = (&objects[0].1, &objects[1].1);
        let (_, to_c) = call_through_stub(b, &patch, "part_b", "from_c");
        assert_eq!(to_c, body("from_c"), "{order}: b.c's call");
        let (_, to_b) = call_through_stub(c, &patch, "part_c", "from_b");
        assert_eq!(to_b, body("from_b"), "{order}: c.c's call");
        // Every arena write has its own bytes, the reserved stubs included.
        let mut ranges: Vec<(u64, u64)> = patch
            .writes
            .iter()
            .map(|w| (w.addr.0, w.addr.0 + w.bytes.len() as u64))
            .collect();
        ranges.sort();
        assert!(
            ranges.windows(2).all(|w| w[0].1 <= w[1].0),
            "{order}: {ranges:x?}"
        );
        // Committed, the next link does not hand the stubs' space out again.
        let mut linker = Linker::new(p.linker.image().clone(), arenas_below_image());
        let again = linker.link_units(&requests).expect("links");
        linker.commit(&again);
        let later = linker.link(&requests[0]).expect("links again");
        let taken: Vec<(u64, u64)> = again
            .writes
            .iter()
            .map(|w| (w.addr.0, w.addr.0 + w.bytes.len() as u64))
            .collect();
        assert!(
            later.writes.iter().all(|w| !taken
                .iter()
                .any(|(s, e)| w.addr.0 < *e && w.addr.0 + w.bytes.len() as u64 > *s)),
            "{order}: a later link reuses the batch's space"
        );
        requests.reverse();
    }
}

#[test]
fn new_variables_two_units_add_and_read_across_are_refused_naming_both_files() {
    // b.c reads `knob_c`, which c.c adds; c.c reads `knob_b`, which b.c adds: a new
    // variable is placed by its file's link, so no order works. Refused as a whole, never
    // half-bound.
    let p = Units::new();
    let objects = p.edited(
        "v1",
        &[
            (
                "b.c",
                "int part_b",
                "extern int knob_c;\nint knob_b = 3;\nint part_b",
            ),
            ("b.c", "10 * SCALE", "10 * SCALE + knob_c"),
            (
                "c.c",
                "int part_c",
                "extern int knob_b;\nint knob_c = 4;\nint part_c",
            ),
            ("c.c", "100 * SCALE", "100 * SCALE + knob_b"),
        ],
    );
    let mut requests = unit_requests(&p, &p.built, &objects);
    for order in ["given", "reversed"] {
        let errors = p
            .linker
            .link_units(&requests)
            .expect_err("mutual references between new variables linked");
        let found: Vec<(&str, Option<&str>)> = errors
            .iter()
            .map(|e| (e.unit.as_str(), e.symbol.as_deref()))
            .collect();
        assert_eq!(
            found,
            [("b.c", Some("knob_c")), ("c.c", Some("knob_b"))],
            "{order}: {errors:#?}"
        );
        for e in &errors {
            assert_eq!(e.code, LinkErrorCode::UndefinedSymbol, "{order}: {e:#?}");
            assert!(
                e.message.contains("b.c")
                    && e.message.contains("c.c")
                    && e.message.contains("same swap"),
                "{order}: {}",
                e.message
            );
        }
        requests.reverse();
    }
}

#[test]
fn a_weak_reference_to_a_variable_a_later_unit_adds_is_bound_to_it() {
    // b.c (first in the given order) refers weakly to `knob`, which c.c now defines: as in
    // a relink, b.c's reference is c.c's `knob`, never 0.
    let p = Units::new();
    let objects = p.edited(
        "v1",
        &[
            (
                "b.c",
                "int part_b",
                "extern int knob __attribute__((weak));\nint part_b",
            ),
            ("b.c", "10 * SCALE", "10 * SCALE + (&knob ? knob : 0)"),
            ("c.c", "int part_c", "int knob = 5;\nint part_c"),
        ],
    );
    let requests = unit_requests(&p, &p.built, &objects);
    let patch = p
        .linker
        .link_units(&requests)
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.added, ["knob"]);
    let knob = patch
        .writes
        .iter()
        .find(|w| w.what == "data knob")
        .expect("c.c's new knob")
        .addr
        .0;
    let slot = got_slot_value(&objects[0].1, &patch, "part_b", "knob");
    assert_eq!(
        slot, knob,
        "b.c reads a null `knob` though c.c defines it in this very patch"
    );
}

/// Two C files that each carry the same weak default (of a header); the executable kept
/// w1.c's.
const WEAK_UNITS: [(&str, &str); 2] = [
    (
        "w1.c",
        "__attribute__((weak)) int hookw(int x) { return 2 * x; }\nint g2(int);\nint g1(int x) { return hookw(x); }\nint main(void) { return g1(1) + g2(2); }\n",
    ),
    (
        "w2.c",
        "__attribute__((weak)) int hookw(int x) { return 2 * x; }\nint g2(int x) { return hookw(x) + 1; }\n",
    ),
];

#[test]
fn a_weak_default_two_units_carry_is_swapped_once_without_a_weak_overridden_note() {
    let mut p = Units::of("cc", &WEAK_UNITS);
    let edit = "return 2 * x; }";
    let to = "return 3 * x; }";
    let objects = p.edited("v2", &[("w1.c", edit, to), ("w2.c", edit, to)]);
    let requests = unit_requests(&p, &p.built, &objects);
    let patch = p
        .linker
        .link_units(&requests)
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, ["hookw"]);
    assert!(
        patch.notes.is_empty(),
        "the edit is swapped (through w1.c), yet w2.c says it is not: {:#?}",
        patch.notes
    );
    p.linker.commit(&patch);
}

#[test]
fn swapped_names_each_entry_once_when_units_share_an_inline_function() {
    // Both units carry `twice` (and the new `thrice`): the summary counts `twice` once,
    // as it is redirected once.
    let p = Units::of("c++", &INLINE_UNITS);
    let edit = "inline int twice(int x) { return 2 * x; }";
    let to =
        "inline int twice(int x) { return 3 * x; }\ninline int thrice(int x) { return 3 * x; }";
    let objects = p.edited(
        "v2",
        &[
            ("u1.cpp", edit, to),
            ("u2.cpp", edit, to),
            (
                "u1.cpp",
                "return twice(x); }",
                "return twice(x) + thrice(x); }",
            ),
            (
                "u2.cpp",
                "return twice(x) + 1; }",
                "return twice(x) + thrice(x) + 1; }",
            ),
        ],
    );
    let requests = unit_requests(&p, &p.built, &objects);
    let patch = p
        .linker
        .link_units(&requests)
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(patch.swapped, ["_Z5twicei", "_Z2f1i", "_Z2f2i"]);
    assert_eq!(patch.added, ["_Z6thricei"]);
    let mut functions: Vec<&str> = patch.entries.iter().map(|e| e.function.as_str()).collect();
    functions.sort();
    functions.dedup();
    assert_eq!(functions.len(), patch.swapped.len(), "{:#?}", patch.entries);
}

/// A weak default in b.c that main calls, and a c.c without it.
const OVERRIDE_UNITS: [(&str, &str); 3] = [
    (
        "a.c",
        "int hook(void);\nint main(void) { return hook(); }\n",
    ),
    (
        "b.c",
        "#define SCALE 1\n__attribute__((weak)) int hook(void) { return SCALE; }\n",
    ),
    (
        "c.c",
        "#define SCALE 1\nint part_c(void) { return SCALE; }\n",
    ),
];

/// Where the jumps the patch writes lead from `at` (an entry: through a short jump, a jump
/// inside the old body or a jump in the arena), to the first address no jump is written at.
fn jump_chain_end(patch: &Patch, mut at: RuntimeAddr) -> u64 {
    for _ in 0..4 {
        let bytes = patch
            .entries
            .iter()
            .find(|e| e.addr == at)
            .map(|e| &e.bytes)
            .or_else(|| {
                patch
                    .writes
                    .iter()
                    .find(|w| w.addr == at && w.what.starts_with("entry jump of "))
                    .map(|w| &w.bytes)
            });
        at = match bytes.map(Vec::as_slice) {
            Some([0xeb, rel]) => RuntimeAddr((at.0 as i64 + 2 + *rel as i8 as i64) as u64),
            Some([0xe9, rel @ ..]) => {
                let rel = i32::from_le_bytes(rel.try_into().expect("jmp rel32"));
                RuntimeAddr((at.0 as i64 + 5 + rel as i64) as u64)
            }
            _ => return at.0,
        };
    }
    panic!("a chain of more than 4 jumps from the entry")
}

#[test]
fn a_strong_definition_beats_a_weak_default_of_the_same_swap_in_either_order() {
    // b.c's weak `hook` changes and c.c adds a strong `hook` in one swap: as in a relink,
    // hook's entry runs c.c's (`return 100`, `mov $0x64,%eax`), whichever unit is first,
    // and a later save of b.c alone does not take it back.
    let p = Units::of("cc", &OVERRIDE_UNITS);
    let objects = p.edited(
        "v2",
        &[
            ("b.c", "#define SCALE 1", "#define SCALE 2"),
            (
                "c.c",
                "#define SCALE 1",
                "#define SCALE 2\nint hook(void) { return 100; }",
            ),
        ],
    );
    let mut requests = unit_requests(&p, &p.built, &objects);
    for order in ["given", "reversed"] {
        let mut linker = Linker::new(p.linker.image().clone(), arenas_below_image());
        let patch = linker
            .link_units(&requests)
            .unwrap_or_else(|e| panic!("{order}: {e:#?}"));
        let hook: Vec<RuntimeAddr> = patch
            .redirected_entries()
            .filter(|entry| {
                patch
                    .entries
                    .iter()
                    .any(|e| e.addr == *entry && e.function == "hook")
            })
            .collect();
        assert_eq!(hook.len(), 1, "{order}: {:#?}", patch.entries);
        let target = jump_chain_end(&patch, hook[0]);
        let body = patch
            .writes
            .iter()
            .find(|w| w.addr.0 == target)
            .unwrap_or_else(|| panic!("{order}: no body at the entry's target"));
        assert!(
            body.bytes.windows(5).any(|b| b == [0xb8, 0x64, 0, 0, 0]),
            "{order}: hook's entry runs {} ({:x?}), not c.c's strong definition",
            body.what,
            body.bytes
        );
        assert_eq!(
            patch.swapped.iter().filter(|n| *n == "hook").count(),
            1,
            "{order}: {:?}",
            patch.swapped
        );
        linker.commit(&patch);
        // b.c's weak default saved again alone: the override keeps the entry.
        let b = requests
            .iter()
            .find(|r| r.unit.source == "b.c")
            .expect("b.c's request");
        let again = linker.link(b).unwrap_or_else(|e| panic!("{order}: {e:#?}"));
        assert!(
            again.entries.iter().all(|e| e.function != "hook"),
            "{order}: b.c took hook's entry back: {:#?}",
            again.entries
        );
        requests.reverse();
    }
}

/// How an entry is redirected, as the table of [`entry_forms_around_statement_boundaries`]
/// expects it.
#[derive(Debug, PartialEq, Eq)]
enum Form {
    /// The 5-byte `jmp rel32` over the entry.
    Direct,
    /// The same over a statement boundary at entry+N, which a note tells the user about.
    DirectOverStatement(u64),
    /// A 2-byte `jmp rel8` at the entry into padding that holds the `jmp rel32`.
    Short,
    /// The 5-byte `jmp rel32` over the entry to a jump in the code arena placed so that the
    /// entry jump holds `int3` at each statement boundary entry+N it covers.
    Int3Proof(&'static [u64]),
    /// A 2-byte `jmp rel8` at the entry to a `jmp rel32` written at entry+N of the old body.
    InBody(u64),
}

/// The form of `function`'s entry in the patch, checked for consistency on the way.
fn form_of(p: &Program, patch: &Patch, function: &str) -> Form {
    let entry = p.exe_symbol(function);
    let writes: Vec<_> = patch
        .entries
        .iter()
        .filter(|e| e.function == function)
        .collect();
    let thunk = patch
        .writes
        .iter()
        .find(|w| w.what == format!("entry jump of {function}"));
    let body = patch
        .writes
        .iter()
        .find(|w| w.what == format!("body of {function}"))
        .expect("the new body");
    let target = |w: &hot_link::EntryWrite| {
        let rel = i32::from_le_bytes(w.bytes[1..5].try_into().expect("rel32"));
        (w.addr.0 as i64 + 5 + rel as i64) as u64
    };
    match (writes.as_slice(), thunk) {
        ([direct], None) if direct.addr.0 == entry => {
            assert_eq!(direct.bytes[0], 0xe9);
            assert_eq!(target(direct), body.addr.0);
            let noted: Vec<_> = patch
                .notes
                .iter()
                .filter(|n| n.code == "entry-covers-statement")
                .collect();
            match noted.as_slice() {
                [] => Form::Direct,
                [note] => {
                    assert_eq!(note.symbol.as_deref(), Some(function), "{note:?}");
                    let at = note
                        .message
                        .split("entry+")
                        .nth(1)
                        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("no entry+N in {note:?}"));
                    Form::DirectOverStatement(at)
                }
                more => panic!("{more:#?}"),
            }
        }
        // Written into the old body (not padding): everything up to its end is protected.
        ([long, short], None)
            if short.addr.0 == entry
                && patch
                    .protected
                    .contains(&(RuntimeAddr(entry)..RuntimeAddr(long.addr.0 + 5))) =>
        {
            assert_eq!(short.bytes[0], 0xeb);
            assert_eq!(
                entry + 2 + short.bytes[1] as i8 as u64,
                long.addr.0,
                "the short jump reaches the long one"
            );
            assert_eq!(target(long), body.addr.0);
            Form::InBody(long.addr.0 - entry)
        }
        ([pad, short], None) if short.addr.0 == entry => {
            assert_eq!(short.bytes[0], 0xeb);
            assert_eq!(target(pad), body.addr.0);
            Form::Short
        }
        ([jump], Some(thunk)) => {
            assert_eq!(jump.addr.0, entry);
            assert_eq!(jump.bytes[0], 0xe9);
            assert_eq!(
                target(jump),
                thunk.addr.0,
                "the entry jumps to the arena jump"
            );
            let tail = hot_link::EntryWrite {
                addr: thunk.addr,
                expected: Vec::new(),
                bytes: thunk.bytes.clone(),
                function: function.into(),
            };
            assert_eq!(tail.bytes.len(), 5);
            assert_eq!(
                target(&tail),
                body.addr.0,
                "the arena jump ends in the new body"
            );
            assert!(patch
                .protected
                .contains(&(jump.addr..RuntimeAddr(jump.addr.0 + 5))));
            let int3: Vec<u64> = (1..5u64)
                .filter(|&i| jump.bytes[i as usize] == 0xcc)
                .collect();
            Form::Int3Proof(Box::leak(int3.into_boxed_slice()))
        }
        other => panic!("unexpected entry writes for {function}: {other:#?}"),
    }
}

/// Entry forms around statement boundaries (where gdb puts `break f` and `break file:line`,
/// from the executable's line table) inside the first 5 bytes: (what, source of v1, the edit
/// that makes v2, flags, function, form). `-falign-functions=1` packs functions without
/// padding (as -O0 does anyway), `=16` leaves padding before each.
/// `value` with 30 one-byte statements after its prologue (a `nop` each).
const NOPS_VALUE: &str = concat!(
    "int value(void) {\n",
    "  __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\");\n",
    "  __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\");\n",
    "  __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\");\n",
    "  __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\");\n",
    "  __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\");\n",
    "  __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\");\n",
    "  __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\");\n",
    "  __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\");\n",
    "  __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\");\n",
    "  __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\"); __asm__ volatile(\"nop\");\n",
    "  return 7;\n}\nint main(void) { return value(); }\n",
);

/// [`NOPS_VALUE`]'s function under another name, without `main`, for units of one swap.
fn nops_function(name: &str) -> &'static str {
    let text = NOPS_VALUE
        .replace("int main(void) { return value(); }\n", "")
        .replace("value", name);
    Box::leak(text.into_boxed_str())
}

type StatementRow = (
    &'static str,
    &'static str,
    (&'static str, &'static str),
    &'static [&'static str],
    &'static str,
    Form,
);
const STATEMENT_ROWS: &[StatementRow] = &[
    (
        "-O0 without parameters: `break f` at entry+4, no padding: a short jump to a jump from there",
        "int value(void) {\n  return 7;\n}\nint main(void) { return value(); }\n",
        ("return 7", "return 8"),
        &["-O0"],
        "value",
        Form::InBody(4),
    ),
    (
        "-O0 without parameters, padding before it: the short jump leaves entry+4 alone",
        "int value(void) {\n  return 7;\n}\nint main(void) { return value(); }\n",
        ("return 7", "return 8"),
        &["-O0", "-falign-functions=16"],
        "value",
        Form::Short,
    ),
    (
        "-O0 with locals: `sub $N,%rsp` puts the first statement at entry+8",
        "void sink(int *p) { (void)p; }\nint value(void) {\n  int a[4] = {7};\n  sink(a);\n  return a[0];\n}\nint main(void) { return value(); }\n",
        ("return a[0]", "return a[0] + 1"),
        &["-O0"],
        "value",
        Form::Direct,
    ),
    (
        "-O0 with a parameter: its store puts the first statement at entry+7",
        "int twice(int x) {\n  return x * 2;\n}\nint main(void) { return twice(2); }\n",
        ("x * 2", "x * 3"),
        &["-O0"],
        "twice",
        Form::Direct,
    ),
    (
        "-O0 with endbr64: the first statement at entry+8",
        "int value(void) {\n  return 7;\n}\nint main(void) { return value(); }\n",
        ("return 7", "return 8"),
        &["-O0", "-fcf-protection"],
        "value",
        Form::Direct,
    ),
    (
        "-O0, six statements one byte apart after the prologue: the jump in the body goes past them",
        "int value(void) {\n  __asm__ volatile(\"nop\");\n  __asm__ volatile(\"nop\");\n  __asm__ volatile(\"nop\");\n  __asm__ volatile(\"nop\");\n  __asm__ volatile(\"nop\");\n  __asm__ volatile(\"nop\");\n  return 7;\n}\nint main(void) { return value(); }\n",
        ("return 7", "return 8"),
        &["-O0"],
        "value",
        Form::InBody(10),
    ),
    (
        "-O0, statements too close together all through the known window: the plain jump, noted",
        NOPS_VALUE,
        ("return 7", "return 8"),
        &["-O0"],
        "value",
        Form::DirectOverStatement(4),
    ),
    (
        "-O1 (no function alignment): `break sum` at entry+1, a statement at entry+4: no form avoids both",
        "__attribute__((noipa)) void nap(void) { __asm__ volatile(\"\"); }\n__attribute__((noinline)) int sum(int a, int b) {\n  int s = a + b;\n  nap();\n  return s * 3;\n}\nint main(void) { return sum(1, 2); }\n",
        ("s * 3", "s * 5"),
        &["-O1", "-fcf-protection=none"],
        "sum",
        Form::DirectOverStatement(1),
    ),
    (
        "-O2, a statement at entry+4 behind `push %rbx; lea`: padding takes the short jump",
        "__attribute__((noipa)) void nap(void) { __asm__ volatile(\"\"); }\n__attribute__((noinline)) int sum(int a, int b) {\n  int s = a + b;\n  nap();\n  return s * 3;\n}\nint main(void) { return sum(1, 2); }\n",
        ("s * 3", "s * 5"),
        &["-O2", "-fcf-protection=none"],
        "sum",
        Form::Short,
    ),
    (
        "-O2 without padding: `push %rbx; lea`, a statement at entry+4: a short jump to a jump from there",
        "__attribute__((noipa)) void nap(void) { __asm__ volatile(\"\"); }\n__attribute__((noinline)) int sum(int a, int b) {\n  int s = a + b;\n  nap();\n  return s * 3;\n}\nint main(void) { return sum(1, 2); }\n",
        ("s * 3", "s * 5"),
        &["-O2", "-fcf-protection=none", "-falign-functions=1"],
        "sum",
        Form::InBody(4),
    ),
    (
        "-O1, %eax written before a statement at entry+2: a short jump to a jump from there",
        "int value(void) {\n  __asm__ volatile(\"xor %%eax, %%eax\" ::: \"eax\");\n  __asm__ volatile(\"nop; nop; nop; nop; nop; nop\");\n  return 7;\n}\nint main(void) { return value(); }\n",
        ("return 7", "return 8"),
        &["-O1", "-fcf-protection=none"],
        "value",
        Form::InBody(2),
    ),
    (
        "-O1 (no function alignment): `break sum` at entry+1 only: the entry jump holds int3 there",
        "__attribute__((noipa)) void nap(void) { __asm__ volatile(\"\"); }\n__attribute__((noinline)) int sum(int a, int b) {\n  int s = a * 1000 + b;\n  nap();\n  return s * 3;\n}\nint main(void) { return sum(1, 2); }\n",
        ("s * 3", "s * 5"),
        &["-O1", "-fcf-protection=none"],
        "sum",
        Form::Int3Proof(&[1]),
    ),
    (
        "-O0 without a line table: gdb's own prologue analysis breaks at entry+4, after `push %rbp; mov %rsp,%rbp`",
        "int value(void) {\n  return 7;\n}\nint main(void) { return value(); }\n",
        ("return 7", "return 8"),
        &["-O0", "-g0"],
        "value",
        Form::InBody(4),
    ),
];

#[test]
fn entry_forms_around_statement_boundaries() {
    let mut wrong = Vec::new();
    for (what, v1, (from, to), flags, function, form) in STATEMENT_ROWS {
        let mut flags = flags.to_vec();
        if !flags.iter().any(|f| f.starts_with("-falign-functions")) && flags.contains(&"-O0") {
            flags.push("-falign-functions=1");
        }
        let mut p = program(v1, &flags, vec![], arenas_below_image());
        let v2 = v1.replace(from, to);
        assert_ne!(&v2, v1, "{what}: the edit changes nothing");
        let obj = p.compile("v2", &v2, &flags);
        let patch = p
            .link(&obj, Some(&p.v1))
            .unwrap_or_else(|e| panic!("{what}: {e:#?}"));
        assert_eq!(patch.swapped, vec![function.to_string()], "{what}");
        let got = form_of(&p, &patch, function);
        if &got != form {
            wrong.push(format!("{what}: {got:?}, not {form:?}"));
            continue;
        }
        if matches!(form, Form::Int3Proof(..)) {
            check_int3_proof_later(&mut p, &patch, &obj, function, what);
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// After an int3-proof entry is committed: a later swap rewrites only the arena jump; undo
/// puts the entry's bytes back, and a new link plans the form again.
fn check_int3_proof_later(p: &mut Program, patch: &Patch, v2: &Object, function: &str, what: &str) {
    let jump = patch.entries[0].clone();
    let thunk = patch
        .writes
        .iter()
        .find(|w| w.what == format!("entry jump of {function}"))
        .expect("the arena jump")
        .clone();
    p.linker.commit(patch);
    // v1 again, over v2: the arena jump moves, nothing else.
    let back = p.v1.clone();
    let again = p
        .link(&back, Some(v2))
        .unwrap_or_else(|e| panic!("{what}: {e:#?}"));
    assert_eq!(again.swapped, vec![function.to_string()], "{what}");
    assert_eq!(again.entries.len(), 1, "{what}: {:#?}", again.entries);
    assert_eq!(again.entries[0].addr, thunk.addr, "{what}");
    assert_eq!(again.entries[0].expected, thunk.bytes, "{what}");
    assert!(
        !again
            .writes
            .iter()
            .any(|w| w.what.starts_with("entry jump of ")),
        "{what}: a second arena jump"
    );
    // Undo of v2: the entry's bytes back, the arena jump left alone (unreachable).
    let revert = p.linker.revert_last().expect("a record");
    assert_eq!(revert.entries.len(), 1, "{what}: {:#?}", revert.entries);
    assert_eq!(revert.entries[0].addr, jump.addr, "{what}");
    assert_eq!(revert.entries[0].expected, jump.bytes, "{what}");
    assert_eq!(revert.entries[0].bytes, jump.expected, "{what}");
    let relinked = p
        .link(v2, Some(&back))
        .unwrap_or_else(|e| panic!("{what}: {e:#?}"));
    let form = form_of(p, &relinked, function);
    assert!(matches!(form, Form::Int3Proof(..)), "{what}: {form:?}");
    assert_eq!(relinked.entries[0].expected, jump.expected, "{what}");
}

/// Two units of one swap whose functions' entry jumps both cover a statement (statements one
/// byte apart all through the known window, no padding at -O0): the combined patch lists
/// both, so a debugger holding the program refuses the swap whichever unit links last.
#[test]
fn entries_over_statements_of_every_unit_reach_the_combined_patch() {
    let files: &'static [(&str, &str)] = Box::leak(Box::new([
        (
            "a.c",
            "int first(void);\nint second(void);\nint main(void) { return first() + second(); }\n",
        ),
        ("b.c", nops_function("first")),
        ("c.c", nops_function("second")),
    ]));
    let p = Units::of("cc", files);
    let objects = p.edited(
        "v2",
        &[
            ("b.c", "return 7", "return 8"),
            ("c.c", "return 7", "return 9"),
        ],
    );
    let requests = unit_requests(&p, &p.built, &objects);
    let linker = Linker::new(p.linker.image().clone(), arenas_below_image());
    let patch = linker
        .link_units(&requests)
        .unwrap_or_else(|e| panic!("{e:#?}"));
    let mut covered: Vec<&str> = patch
        .entries_over_statements
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    covered.sort_unstable();
    assert_eq!(covered, ["first", "second"], "{:#?}", patch.entries);
}
