//! The Mach-O link behind [`hot_link::Linker`], the interface the session drives: objects
//! from `clang --target=x86_64-apple-macos11` / `arm64-apple-macos11` against the image model
//! of an executable `ld64.lld-14` linked (with a dylib it links too, whose export trie is the
//! library model).
//!
//! - At lld's addresses ([`hot_link::Linker::link_with_placement`]), every write of the
//!   patch equals lld's bytes.
//! - In arenas, edits of a running program's file swap exactly what changed: each entry jump
//!   decoded (iced-x86; arm64 with hot-link's own decoders) lands on its new body, after
//!   `bti c` when there is one, as `b` near the image and as the 16-byte absolute jump far
//!   from it; every call out of a new body reaches an image function, an image stub, a new
//!   function's stub, a veneer or a call stub whose GOT slot holds the library's export.
//! - A second swap of the same function rewrites the jump the first wrote, and undo puts the
//!   original bytes back.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hot_link::aarch64 as a64;
use hot_link::{Arenas, ImageModel, LinkRequest, Linker, Module, Patch, RuntimeAddr, UnitRef};
use hot_object::macho_exports::{dylib_exports, exports_image};
use hot_object::{AtomId, LinkedImage, Machine, Object};
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction};
use support::macho::{compile, link, lld_address, relocs_fixture, symbols};
use support::{directives, fixture};

/// Where the tests load the executable (its slide) and the library's Mach header.
const SLIDE: u64 = 0x1000_0000;
const LIB_BASE: u64 = 0x7ff8_1000_0000;

/// A program linked by lld: the executable's and the library's models.
struct Program {
    dir: tempfile::TempDir,
    arch: &'static str,
    image: Arc<LinkedImage>,
    lib: Arc<LinkedImage>,
}

/// Compile `source` (and its `extra` files) with `flags`, link it with `macho_lib.c`'s dylib.
fn build(arch: &'static str, source: &str, flags: &[&str], out_flags: &[&str]) -> Program {
    let dir = tempfile::tempdir().expect("tempdir");
    let lib_obj = compile(dir.path(), arch, "lib.c", &fixture("macho_lib.c"), &["-O1"]);
    let dylib = dir.path().join("libext.dylib");
    link(
        arch,
        &dylib,
        &[lib_obj],
        &["-dylib", "-install_name", "/usr/lib/libext.dylib"],
    );
    let mut objects = vec![compile(dir.path(), arch, "a.c", source, flags)];
    for extra in directives(source, "extra") {
        objects.push(compile(dir.path(), arch, &extra, &fixture(&extra), flags));
    }
    objects.push(dylib.clone());
    let exe = dir.path().join("a.out");
    link(arch, &exe, &objects, out_flags);
    let bytes = std::fs::read(&exe).expect("reading lld's executable");
    let image = LinkedImage::parse(&exe, &bytes).expect("the executable's model");
    let lib_bytes = std::fs::read(&dylib).expect("reading the dylib");
    let (install, exports) = dylib_exports(&dylib, &lib_bytes).expect("the dylib's exports");
    Program {
        dir,
        arch,
        image: Arc::new(image),
        lib: Arc::new(exports_image(&install, &exports)),
    }
}

impl Program {
    fn machine(&self) -> Machine {
        if self.arch == "arm64" {
            Machine::Aarch64
        } else {
            Machine::X86_64
        }
    }

    fn model(&self, slide: u64) -> ImageModel {
        ImageModel {
            exe: Module {
                path: "a.out".into(),
                bias: slide,
                image: self.image.clone(),
            },
            libs: vec![Module {
                path: "/usr/lib/libext.dylib".into(),
                bias: LIB_BASE,
                image: self.lib.clone(),
            }],
            home: Default::default(),
        }
    }

    /// The lib export's runtime address.
    fn export(&self, name: &str) -> Option<u64> {
        let s = self.lib.symbols.iter().find(|s| s.name == name)?;
        Some(LIB_BASE + s.vaddr)
    }

    fn object(&self, name: &str, source: &str, flags: &[&str]) -> Object {
        let path = compile(self.dir.path(), self.arch, name, source, flags);
        let bytes = std::fs::read(&path).expect("reading the object");
        Object::parse(&path, &bytes).expect("parsing the object")
    }
}

fn request<'a>(object: &'a Object, baseline: Option<&'a Object>) -> LinkRequest<'a> {
    LinkRequest {
        object,
        baseline,
        unit: UnitRef {
            tu: None,
            compile_unit: None,
            source: "a.c".into(),
        },
        applied: &[],
    }
}

/// Arenas `distance` bytes past the executable's end (at its slide).
fn arenas(program: &Program, slide: u64, distance: u64) -> Arenas {
    let end = (program.image.vaddr_range.1 + slide).next_multiple_of(0x10_0000) + distance;
    Arenas {
        code: RuntimeAddr(end)..RuntimeAddr(end + 0x10_0000),
        data: RuntimeAddr(end + 0x10_0000)..RuntimeAddr(end + 0x20_0000),
    }
}

/// Link the program's own object with the Linker at lld's addresses: every write must be
/// lld's bytes (a pointer dyld binds holds the library's address in ours, its addend in
/// lld's file).
fn check_at_lld_addresses(arch: &'static str, source: &str, opt: &str, out_flags: &[&str]) {
    let variant = format!("{arch} {opt} {out_flags:?}");
    let program = build(arch, source, &[opt], out_flags);
    let object = program.object("a.c", source, &[opt]);
    let image = &program.image;
    let syms = symbols(image);
    let mut placement = hot_link::Placement {
        redirect_entries: false,
        ..Default::default()
    };
    for i in 0..object.atoms.len() {
        let id = AtomId(i as u32);
        if let Some(addr) = lld_address(&object, id, image, &syms) {
            placement.atoms.insert(id, RuntimeAddr(addr));
        }
    }
    let linker = Linker::new(program.model(0), arenas(&program, 0, 0x100_0000));
    let patch = linker
        .link_with_placement(&request(&object, None), &placement)
        .unwrap_or_else(|e| panic!("{variant}: {e:#?}"));
    let binds = support::macho::binds(image);
    let mut compared = 0;
    for w in &patch.writes {
        let mut ours = w.bytes.clone();
        let mut theirs = image
            .bytes_at(w.addr.0, ours.len())
            .unwrap_or_else(|| {
                panic!(
                    "{variant}: {} at {} is not where lld put it",
                    w.what, w.addr
                )
            })
            .to_vec();
        for (&at, &(name, addend)) in binds.range(w.addr.0..w.addr.0 + ours.len() as u64) {
            let off = (at - w.addr.0) as usize;
            let value = u64::from_le_bytes(ours[off..off + 8].try_into().expect("8 bytes"));
            let want = program
                .export(name)
                .expect("a bound name the dylib exports");
            assert_eq!(value, want.wrapping_add(addend as u64), "{variant}: {name}");
            ours[off..off + 8].fill(0);
            theirs[off..off + 8].fill(0);
        }
        assert_eq!(ours, theirs, "{variant}: {} at {}", w.what, w.addr);
        compared += 1;
    }
    let functions = object
        .atoms
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            a.kind == hot_object::AtomKind::Text
                && object.primary_symbol(AtomId(*i as u32)).is_some()
        })
        .count();
    assert_eq!(
        patch.swapped.len(),
        functions,
        "{variant}: {:?}",
        patch.swapped
    );
    assert!(
        compared >= functions && functions >= 3,
        "{variant}: {compared} writes"
    );
    assert!(patch.entries.is_empty(), "{variant}");
}

#[test]
fn macho_linker_patch_matches_ld64_lld_at_its_addresses() {
    let relocs = relocs_fixture();
    let data = fixture("macho_data.c");
    let rows: &[(&str, &str, &str, &[&str])] = &[
        ("x86_64", &relocs, "-O0", &[]),
        ("x86_64", &relocs, "-O2", &[]),
        ("x86_64", &relocs, "-O1", &["-no_pie"]),
        ("x86_64", &data, "-O2", &[]),
        ("arm64", &relocs, "-O0", &[]),
        ("arm64", &relocs, "-O3", &[]),
        ("arm64", &data, "-O1", &[]),
        ("arm64", &data, "-Os", &[]),
    ];
    for &(arch, source, opt, out) in rows {
        check_at_lld_addresses(arch, source, opt, out);
    }
}

/// One edit of `macho_swap.c`: the marked lines replaced.
struct Edit {
    arch: &'static str,
    flags: &'static [&'static str],
    /// (marker, new line) pairs.
    lines: &'static [(&'static str, &'static str)],
    swapped: &'static [&'static str],
    added: &'static [&'static str],
    /// How far past the executable the arenas are.
    distance: u64,
    /// Writes the patch must have, by the start of their description ("call stub for _x").
    writes: &'static [&'static str],
    /// Functions whose entry jump covers a statement boundary (`Patch::entries_over_statements`;
    /// these images have no DWARF, so the boundary is gdb's stop after the frame setup).
    over_statements: &'static [&'static str],
    /// The length of the jump at the entry (arm64: 4 for `b`, 16 for the absolute form);
    /// 0: any (x86-64 picks among its forms by the old body's prologue).
    jump: usize,
}

fn edited(source: &str, lines: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for line in source.lines() {
        match lines
            .iter()
            .find(|(marker, _)| line.contains(&format!("/* edit: {marker} */")))
        {
            Some((_, new)) => out.push_str(new),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Where each direct branch or call out of `bytes` (at `addr`) goes.
fn calls_out(machine: Machine, bytes: &[u8], addr: u64) -> Vec<u64> {
    let inside = |t: u64| (addr..addr + bytes.len() as u64).contains(&t);
    match machine {
        Machine::X86_64 => {
            let mut decoder = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
            let mut out = Vec::new();
            let mut instr = Instruction::default();
            while decoder.can_decode() {
                decoder.decode_out(&mut instr);
                if matches!(
                    instr.flow_control(),
                    FlowControl::Call | FlowControl::UnconditionalBranch
                ) && instr.is_call_near() | instr.is_jmp_near()
                {
                    out.push(instr.near_branch_target());
                }
            }
            out.into_iter().filter(|&t| !inside(t)).collect()
        }
        Machine::Aarch64 => (0..bytes.len() / 4)
            .filter_map(|i| {
                let insn = a64::read(bytes, 4 * i).ok()?;
                a64::is_branch26(insn).then(|| a64::branch_target(insn, addr + 4 * i as u64))?
            })
            .filter(|&t| !inside(t))
            .collect(),
    }
}

/// The target of a jump written at `at`: `jmp rel32` / `b` / the absolute form.
fn jump_target(machine: Machine, bytes: &[u8], at: u64) -> Option<u64> {
    match machine {
        Machine::X86_64 => {
            let mut decoder = Decoder::with_ip(64, bytes, at, DecoderOptions::NONE);
            let instr = decoder.decode();
            instr
                .is_jmp_short_or_near()
                .then(|| instr.near_branch_target())
        }
        Machine::Aarch64 => match bytes.len() {
            4 => a64::branch_target(a64::read(bytes, 0).ok()?, at)
                .filter(|_| a64::is_branch26(a64::read(bytes, 0).unwrap_or(0))),
            16 => (a64::read(bytes, 0).ok()? == a64::LDR_X16_PC8
                && a64::read(bytes, 4).ok()? == a64::BR_X16)
                .then(|| u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"))),
            _ => None,
        },
    }
}

/// Where a call stub or veneer of the patch at `at` goes: (slot it reads, final target).
fn stub_destination(patch: &Patch, machine: Machine, at: u64) -> Option<(Option<u64>, u64)> {
    let w = patch.writes.iter().find(|w| w.addr.0 == at)?;
    let slot_value = |slot: u64| {
        patch
            .writes
            .iter()
            .find(|s| s.addr.0 == slot)
            .map(|s| u64::from_le_bytes(s.bytes[..8].try_into().expect("8 bytes")))
    };
    match machine {
        Machine::X86_64 => {
            let mut decoder = Decoder::with_ip(64, &w.bytes, at, DecoderOptions::NONE);
            let instr = decoder.decode();
            if instr.is_jmp_near_indirect() && instr.is_ip_rel_memory_operand() {
                let slot = instr.ip_rel_memory_address();
                return Some((Some(slot), slot_value(slot)?));
            }
            Some((None, jump_target(machine, &w.bytes, at)?))
        }
        Machine::Aarch64 => {
            if let Some(slot) = a64::call_stub_slot(&w.bytes, at) {
                return Some((Some(slot), slot_value(slot)?));
            }
            if w.what.starts_with("entry stub") {
                let off = if a64::read(&w.bytes, 0).ok()? == a64::BTI_C {
                    4
                } else {
                    0
                };
                return Some((
                    None,
                    jump_target(machine, &w.bytes[off..off + 4], at + off as u64)?,
                ));
            }
            Some((None, a64::veneer_target(&w.bytes, at)?))
        }
    }
}

fn check_edit(source: &str, edit: &Edit) -> (Program, Linker, Patch) {
    let variant = format!("{} {:?} {:?}", edit.arch, edit.flags, edit.lines);
    let program = build(edit.arch, source, edit.flags, &[]);
    let machine = program.machine();
    let baseline = program.object("a.c", source, edit.flags);
    let changed = program.object("b.c", &edited(source, edit.lines), edit.flags);
    let linker = Linker::new(program.model(SLIDE), arenas(&program, SLIDE, edit.distance));
    let patch = linker
        .link(&request(&changed, Some(&baseline)))
        .unwrap_or_else(|e| panic!("{variant}: {e:#?}"));
    let swapped: BTreeSet<&str> = patch.swapped.iter().map(String::as_str).collect();
    assert_eq!(swapped, edit.swapped.iter().copied().collect(), "{variant}");
    for name in edit.added {
        assert!(
            patch.added.iter().any(|a| a == name),
            "{variant}: {name} not added: {:?}",
            patch.added
        );
    }
    for what in edit.writes {
        assert!(
            patch.writes.iter().any(|w| w.what.starts_with(what)),
            "{variant}: no write `{what}`: {:?}",
            patch.writes.iter().map(|w| &w.what).collect::<Vec<_>>()
        );
    }
    if let Some(slot) = patch
        .writes
        .iter()
        .find(|w| w.what == "GOT slot for _lib_new_fn")
    {
        let value = u64::from_le_bytes(slot.bytes[..8].try_into().expect("8 bytes"));
        assert_eq!(
            Some(value),
            program.export("_lib_new_fn"),
            "{variant}: the slot"
        );
    }
    let over: BTreeSet<&str> = patch
        .entries_over_statements
        .iter()
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(
        over,
        edit.over_statements.iter().copied().collect(),
        "{variant}"
    );
    assert_eq!(
        patch
            .notes
            .iter()
            .filter(|n| n.code == "entry-covers-statement")
            .count(),
        edit.over_statements.len(),
        "{variant}"
    );
    let image = &program.image;
    let body_of: HashMap<&str, u64> = patch
        .bodies
        .iter()
        .map(|b| (b.name.as_str(), b.addr.0))
        .collect();
    // Entries: at each swapped function's image address (after `bti c`), a jump that
    // reaches its new body, directly or (x86-64's breakpoint-safe forms) through a second
    // jump of the patch; what each expects is the image's bytes.
    for name in edit.swapped {
        let sym = image
            .symbols
            .iter()
            .find(|s| s.defined && s.name == *name)
            .unwrap_or_else(|| panic!("{variant}: {name} is not an image function"));
        let first = image.bytes_at(sym.vaddr, 4).expect("entry bytes");
        let pad = machine == Machine::Aarch64
            && a64::is_call_landing_pad(a64::read(first, 0).expect("4 bytes"));
        let mut at = sym.vaddr + SLIDE + if pad { 4 } else { 0 };
        let mut hops = 0;
        while at != body_of[name] {
            let (bytes, expected) = match patch.entries.iter().find(|e| e.addr.0 == at) {
                Some(e) => (&e.bytes, Some(&e.expected)),
                None => match patch.writes.iter().find(|w| w.addr.0 == at) {
                    Some(w) => (&w.bytes, None),
                    None => panic!("{variant}: {name}: no jump of the patch at {at:#x}"),
                },
            };
            if hops == 0 && edit.jump != 0 {
                assert_eq!(bytes.len(), edit.jump, "{variant}: {name}'s entry jump");
            }
            if let Some(expected) = expected {
                let old = image
                    .bytes_at(at - SLIDE, expected.len())
                    .expect("image bytes");
                assert_eq!(expected, old, "{variant}: {name} at {at:#x}");
            }
            at = jump_target(machine, bytes, at)
                .unwrap_or_else(|| panic!("{variant}: {name}: no jump at {at:#x}: {bytes:02x?}"));
            hops += 1;
            assert!(hops <= 3, "{variant}: {name}: jumps do not reach the body");
        }
    }
    assert!(
        patch
            .entries
            .iter()
            .all(|e| edit.swapped.contains(&e.function.as_str())),
        "{variant}: {:#?}",
        patch.entries
    );
    // Calls out of new bodies reach what the program has.
    let functions: BTreeSet<u64> = image
        .symbols
        .iter()
        .filter(|s| s.defined && s.kind == hot_object::SymbolKind::Function)
        .map(|s| s.vaddr + SLIDE)
        .collect();
    let stubs: BTreeMap<u64, &str> = image
        .plt_entries
        .iter()
        .map(|(n, a)| (a + SLIDE, n.as_str()))
        .collect();
    for b in &patch.bodies {
        let w = patch
            .writes
            .iter()
            .find(|w| w.addr == b.addr)
            .expect("the body's write");
        for target in calls_out(machine, &w.bytes, b.addr.0) {
            if functions.contains(&target) || stubs.contains_key(&target) {
                continue;
            }
            let (slot, to) = stub_destination(&patch, machine, target).unwrap_or_else(|| {
                panic!("{variant}: {} calls {target:#x}, which is nothing", b.name)
            });
            let lib = program
                .lib
                .symbols
                .iter()
                .find(|s| s.vaddr + LIB_BASE == to);
            let ok = functions.contains(&to)
                || stubs.contains_key(&to)
                || body_of.values().any(|&v| v == to)
                || (slot.is_some() && lib.is_some());
            assert!(
                ok,
                "{variant}: {} calls {target:#x} -> {to:#x} ({slot:?})",
                b.name
            );
        }
    }
    (program, linker, patch)
}

#[test]
fn macho_linker_swaps_edits_through_stable_entries() {
    let source = fixture("macho_swap.c");
    const NEAR: u64 = 0x400_0000; // 64 MiB: within `b` reach
    const FAR: u64 = 0x4000_0000; // 1 GiB
    let helper: &[(&str, &str)] = &[("helper", "  return x * 5 + counter;")];
    let new_fn: &[(&str, &str)] = &[
        (
            "new function",
            "extern int lib_new_fn(int); __attribute__((noinline)) int fresh(int x) { return lib_new_fn(x) + ext_var; }",
        ),
        ("tick", "  return helper(x) + fresh(x) * scale;"),
    ];
    let greeting: &[(&str, &str)] = &[("greeting", "  return \"hello, world\";")];
    let rows = [
        Edit {
            arch: "x86_64",
            flags: &["-O0"],
            lines: helper,
            swapped: &["_helper"],
            added: &[],
            writes: &[],
            over_statements: &[],
            distance: NEAR,
            jump: 0,
        },
        Edit {
            arch: "x86_64",
            flags: &["-O2"],
            lines: new_fn,
            swapped: &["_tick"],
            added: &["_fresh"],
            writes: &[
                "call stub for _lib_new_fn",
                "GOT slot for _lib_new_fn",
                "entry stub of _fresh",
            ],
            over_statements: &[],
            distance: NEAR,
            jump: 0,
        },
        Edit {
            arch: "x86_64",
            flags: &["-O1"],
            lines: greeting,
            swapped: &["_greeting", "_main"],
            added: &[],
            writes: &["__TEXT,__cstring literal"],
            over_statements: &[],
            distance: NEAR,
            jump: 0,
        },
        Edit {
            arch: "arm64",
            flags: &["-O0"],
            lines: helper,
            swapped: &["_helper"],
            added: &[],
            writes: &[],
            over_statements: &[],
            distance: NEAR,
            jump: 4,
        },
        Edit {
            arch: "arm64",
            flags: &["-O2"],
            lines: new_fn,
            swapped: &["_tick"],
            added: &["_fresh"],
            writes: &[
                "call stub for _lib_new_fn",
                "GOT slot for _lib_new_fn",
                "entry stub of _fresh",
            ],
            over_statements: &[],
            distance: NEAR,
            jump: 4,
        },
        Edit {
            arch: "arm64",
            flags: &["-O2"],
            lines: new_fn,
            swapped: &["_tick"],
            added: &["_fresh"],
            writes: &[
                "call stub for _lib_new_fn",
                "GOT slot for _lib_new_fn",
                "veneer to _helper",
                "entry stub of _fresh",
            ],
            over_statements: &["_tick"],
            distance: FAR,
            jump: 16,
        },
        Edit {
            arch: "arm64",
            flags: &["-O1", "-mbranch-protection=standard"],
            lines: helper,
            swapped: &["_helper"],
            added: &[],
            writes: &[],
            over_statements: &[],
            distance: NEAR,
            jump: 4,
        },
        Edit {
            arch: "arm64",
            flags: &["-O1", "-mbranch-protection=standard"],
            lines: new_fn,
            swapped: &["_tick"],
            added: &["_fresh"],
            writes: &[
                "call stub for _lib_new_fn",
                "GOT slot for _lib_new_fn",
                "veneer to _helper",
                "entry stub of _fresh",
            ],
            // The frame setup (`stp; stp; add x29`) ends at entry+20, the jump at entry+20.
            over_statements: &[],
            distance: FAR,
            jump: 16,
        },
    ];
    for edit in &rows {
        check_edit(&source, edit);
    }
}

/// A second swap of a function rewrites the jump the first one wrote (expecting it), and undo
/// puts back what was there before.
#[test]
fn macho_linker_second_swap_and_undo() {
    let source = fixture("macho_swap.c");
    for (arch, jump) in [("x86_64", 0), ("arm64", 4)] {
        let first: &[(&str, &str)] = &[("helper", "  return x * 5 + counter;")];
        let edit = Edit {
            arch,
            flags: &["-O1"],
            lines: first,
            swapped: &["_helper"],
            added: &[],
            writes: &[],
            over_statements: &[],
            distance: 0x400_0000,
            jump,
        };
        let (program, mut linker, patch) = check_edit(&source, &edit);
        linker.commit(&patch);
        let one = program.object("b.c", &edited(&source, first), &["-O1"]);
        let two = program.object(
            "c.c",
            &edited(&source, &[("helper", "  return x * 7 + counter;")]),
            &["-O1"],
        );
        let again = linker
            .link(&request(&two, Some(&one)))
            .expect("the second swap");
        assert_eq!(again.swapped, ["_helper"], "{arch}");
        // Every jump it writes expects what the first swap wrote there.
        let first_wrote = |at: RuntimeAddr| {
            patch
                .entries
                .iter()
                .map(|e| (e.addr, &e.bytes))
                .chain(patch.writes.iter().map(|w| (w.addr, &w.bytes)))
                .find(|(a, _)| *a == at)
                .map(|(_, b)| b.clone())
        };
        assert!(!again.entries.is_empty(), "{arch}");
        for e in &again.entries {
            let wrote = first_wrote(e.addr).unwrap_or_else(|| panic!("{arch}: {} is new", e.addr));
            assert_eq!(
                e.expected,
                wrote[..e.expected.len()],
                "{arch}: at {}",
                e.addr
            );
        }
        let body = again
            .bodies
            .iter()
            .find(|b| b.name == "_helper")
            .expect("new body")
            .addr
            .0;
        let fresh = patch
            .bodies
            .iter()
            .map(|b| b.addr.0 + b.size)
            .max()
            .unwrap_or(0);
        assert!(body >= fresh, "{arch}: the new body is in fresh space");
        linker.commit(&again);
        // Undo: the jumps as the first swap left them, then the image's bytes.
        let undo = linker.revert_last().expect("undo");
        for e in &undo.entries {
            let wrote = first_wrote(e.addr).unwrap_or_else(|| panic!("{arch}: {}", e.addr));
            assert_eq!(
                e.bytes,
                wrote[..e.bytes.len()],
                "{arch}: undo to the first swap"
            );
        }
        let undo = linker.revert_last().expect("undo");
        assert!(!undo.entries.is_empty(), "{arch}");
        for e in &undo.entries {
            if let Some(old) = program.image.bytes_at(e.addr.0 - SLIDE, e.bytes.len()) {
                assert_eq!(e.bytes, old, "{arch}: undo to the image at {}", e.addr);
            }
        }
    }
}

/// What cannot be linked is a diagnostic naming the symbol: a name nobody defines, a new
/// thread-local, an object for another machine.
#[test]
fn macho_linker_refusals_name_the_symbol() {
    let source = fixture("macho_swap.c");
    let program = build("arm64", &source, &["-O1"], &[]);
    let linker = Linker::new(program.model(SLIDE), arenas(&program, SLIDE, 0x400_0000));
    let baseline = program.object("a.c", &source, &["-O1"]);
    let rows: &[(&str, &str, hot_link::LinkErrorCode, &str)] = &[
        (
            "  return helper(x) + nowhere(x);",
            "int nowhere(int);",
            hot_link::LinkErrorCode::UndefinedSymbol,
            "_nowhere",
        ),
        (
            "  return helper(x) + tls_new++;",
            "_Thread_local int tls_new;",
            hot_link::LinkErrorCode::NewThreadLocal,
            "_tls_new",
        ),
    ];
    for (tick, decl, code, symbol) in rows {
        let text = edited(&source, &[("tick", tick), ("new function", decl)]);
        let object = program.object("b.c", &text, &["-O1"]);
        let errors = linker
            .link(&request(&object, Some(&baseline)))
            .expect_err(symbol);
        assert!(
            errors
                .iter()
                .any(|e| e.code == *code && e.symbol.as_deref() == Some(*symbol)),
            "{symbol}: {errors:#?}"
        );
    }
    // `bti c; adrp; add; ret` has no room for the landing pad and the 16-byte jump an arena
    // beyond `b` reach needs.
    let flags = &["-O1", "-mbranch-protection=standard"];
    let bti = build("arm64", &source, flags, &[]);
    let far = Linker::new(bti.model(SLIDE), arenas(&bti, SLIDE, 0x4000_0000));
    let baseline = bti.object("a.c", &source, flags);
    let text = edited(&source, &[("greeting", "  return \"hello, world\";")]);
    let object = bti.object("b.c", &text, flags);
    let errors = far
        .link(&request(&object, Some(&baseline)))
        .expect_err("too small");
    assert!(
        errors
            .iter()
            .any(|e| e.code == hot_link::LinkErrorCode::FunctionTooSmall
                && e.symbol.as_deref() == Some("_greeting")
                && e.message.contains("landing pad")),
        "{errors:#?}"
    );
    let x86 = build("x86_64", &source, &["-O1"], &[]);
    let object = x86.object("a.c", &source, &["-O1"]);
    let errors = linker
        .link(&request(&object, None))
        .expect_err("another machine");
    assert!(errors[0].message.contains("X86_64"), "{errors:#?}");
}

/// Two files with a `static helper`: with the debug map (`-g`), an edit of one binds to
/// its own; without the file's translation unit the name is ambiguous and refused.
#[test]
fn macho_linker_binds_the_saved_files_own_statics() {
    let source = format!(
        "// hot-link: extra macho_twin.c\n{}",
        fixture("macho_swap.c")
    );
    let edit: &[(&str, &str)] = &[("helper", "  return x * 5 + counter;")];
    for arch in ["x86_64", "arm64"] {
        let flags = &["-O1", "-g"];
        let program = build(arch, &source, flags, &[]);
        let image = &program.image;
        let tu = image
            .translation_units
            .iter()
            .position(|n| n.ends_with("/a.c"))
            .map(|i| hot_object::TranslationUnitId(i as u32));
        assert!(tu.is_some(), "{arch}: units {:?}", image.translation_units);
        let helpers: Vec<_> = image
            .symbols
            .iter()
            .filter(|s| s.defined && s.name == "_helper")
            .collect();
        assert_eq!(helpers.len(), 2, "{arch}");
        let mine = helpers.iter().find(|s| s.tu == tu).expect("a.c's helper");
        assert!(
            helpers.iter().any(|s| s.tu.is_some() && s.tu != tu),
            "{arch}: twin's helper"
        );
        let linker = Linker::new(program.model(SLIDE), arenas(&program, SLIDE, 0x400_0000));
        let baseline = program.object("a.c", &source, flags);
        let changed = program.object("b.c", &edited(&source, edit), flags);
        let mut req = request(&changed, Some(&baseline));
        req.unit.tu = tu;
        let patch = linker
            .link(&req)
            .unwrap_or_else(|e| panic!("{arch}: {e:#?}"));
        assert_eq!(patch.swapped, ["_helper"], "{arch}");
        // Every form writes a jump at the entry itself (after a landing pad on arm64).
        let start = mine.vaddr + SLIDE;
        assert!(
            patch
                .entries
                .iter()
                .any(|e| (start..start + 8).contains(&e.addr.0)),
            "{arch}: no jump at a.c's helper {start:#x}: {:#x?}",
            patch.entries
        );
        // Without the unit: two `_helper`s, refused naming the way out.
        let errors = linker
            .link(&request(&changed, Some(&baseline)))
            .expect_err("ambiguous");
        assert!(
            errors
                .iter()
                .any(|e| e.symbol.as_deref() == Some("_helper")
                    && e.message.contains("build with -g")),
            "{arch}: {errors:#?}"
        );
    }
}
