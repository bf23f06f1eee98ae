//! Hostile input: a bounded, seeded mutation run over real objects and images, on the stable
//! toolchain, inside the test suite.
//!
//! Real inputs are built in a tempdir with the real `cc` (C at -O0 and -O2, C++ with
//! exceptions, -fPIC, compressed DWARF), plus a PIE executable linked against a shared
//! library. Each target then runs a fixed number of deterministic mutations of them
//! (truncations, bit flips, boundary-value overwrites, section-table, symbol, relocation,
//! program-header and DWARF corruption) through what the session does with such a file:
//! - `object_parse`: `Object::parse` and the accessors the session uses on its result;
//! - `dwarf`: the same with only the `.debug_*` sections (and their relocations) corrupted;
//! - `image_read`: `LinkedImage::parse` of the executable and the library;
//! - `diff`: `changed_functions` between the real object and a mutated one, both ways;
//! - `link_plan`: `Linker::link` of a mutated object against the real image model, and of
//!   the real object against a model built from a mutated executable.
//!
//! Every execution must end in `Ok` or a clean error: a panic, an execution over the time
//! budget or an allocation over the size budget is a finding, printed with the seed and
//! mutation that reproduce it, and fails the test. `HOT_LSP_HOSTILE_SCALE=N` multiplies the
//! iteration counts for a longer local run, `HOT_LSP_HOSTILE_SEED=N` draws other mutations.

mod exercise;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use exercise::{exercise_image, exercise_object};
use hot_link::{ImageModel, LinkRequest, Linker, Module, UnitRef};
use hot_object::{changed_functions, LinkedImage, Object};
use support::*;

// ---------------------------------------------------------------------------------------
// Allocation budget: the largest single allocation each thread asked for since the last
// reset. Inputs are at most a few hundred KiB, so anything near the budget was sized from a
// field of the file (a huge sh_size, a compressed section's claimed size).

/// A single allocation larger than this during one execution is a finding.
const ALLOC_BUDGET: usize = 64 << 20;
/// Larger requests are refused outright (the allocator returns null), so that a finding
/// cannot take the machine's memory: fallible reservations then fail cleanly, infallible
/// ones abort the test with "memory allocation of N bytes failed".
const ALLOC_REFUSE: usize = 1 << 30;

struct Budgeted;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_size(size: usize) {
    // `try_with`: the thread-local may already be gone while a thread exits.
    let _ = LARGEST.try_with(|largest| {
        if size > largest.get() {
            largest.set(size);
        }
    });
}

thread_local! {
    /// The input being executed on this thread, for the report of a refused allocation
    /// (which may abort the process before the run can report it).
    static CURRENT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Whether to refuse an allocation of `size` bytes; says where and on which input first.
fn refuse(size: usize) -> bool {
    if size <= ALLOC_REFUSE {
        return false;
    }
    let input = CURRENT
        .try_with(|c| c.try_borrow().map(|c| c.clone()).unwrap_or_default())
        .unwrap_or_default();
    eprintln!(
        "FINDING: refused an allocation of {size} bytes on input {input}\n{}",
        std::backtrace::Backtrace::force_capture()
    );
    true
}

unsafe impl GlobalAlloc for Budgeted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_size(layout.size());
        if refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_size(layout.size());
        if refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_size(new_size);
        if refuse(new_size) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Budgeted = Budgeted;

// ---------------------------------------------------------------------------------------
// Deterministic randomness.

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A stable seed per target (FNV-1a of its name, independent of the std hasher), mixed with
/// `HOT_LSP_HOSTILE_SEED` when set, to explore other mutations locally.
fn seed_of(name: &str) -> u64 {
    let extra: u64 = std::env::var("HOT_LSP_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    name.bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
        .wrapping_add(extra.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn scale() -> usize {
    std::env::var("HOT_LSP_HOSTILE_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

// ---------------------------------------------------------------------------------------
// Just enough ELF64 little-endian layout to aim mutations at fields. Read from the pristine
// inputs only (which the real toolchain made), so it may trust them.

#[derive(Clone, Copy, Debug)]
struct Shdr {
    /// Offset of the header itself in the file.
    at: usize,
    sh_type: u32,
    offset: usize,
    size: usize,
    name: u32,
}

#[derive(Clone, Debug, Default)]
struct Layout64 {
    shdrs: Vec<Shdr>,
    section_names: Vec<String>,
    phdrs: Vec<usize>,
}

fn rd(bytes: &[u8], at: usize, width: usize) -> u64 {
    let mut v = 0u64;
    for i in 0..width {
        v |= (bytes[at + i] as u64) << (8 * i);
    }
    v
}

fn wr(bytes: &mut [u8], at: usize, width: usize, value: u64) {
    for i in 0..width {
        if let Some(b) = bytes.get_mut(at + i) {
            *b = (value >> (8 * i)) as u8;
        }
    }
}

fn layout(bytes: &[u8]) -> Layout64 {
    let shoff = rd(bytes, 0x28, 8) as usize;
    let shnum = rd(bytes, 0x3c, 2) as usize;
    let shstrndx = rd(bytes, 0x3e, 2) as usize;
    let phoff = rd(bytes, 0x20, 8) as usize;
    let phnum = rd(bytes, 0x38, 2) as usize;
    let shdrs: Vec<Shdr> = (0..shnum)
        .map(|i| {
            let at = shoff + i * 64;
            Shdr {
                at,
                name: rd(bytes, at, 4) as u32,
                sh_type: rd(bytes, at + 4, 4) as u32,
                offset: rd(bytes, at + 24, 8) as usize,
                size: rd(bytes, at + 32, 8) as usize,
            }
        })
        .collect();
    let strtab = shdrs[shstrndx];
    let section_names = shdrs
        .iter()
        .map(|s| {
            let start = strtab.offset + s.name as usize;
            let end = bytes[start..].iter().position(|&b| b == 0).unwrap() + start;
            String::from_utf8_lossy(&bytes[start..end]).into_owned()
        })
        .collect();
    Layout64 {
        shdrs,
        section_names,
        phdrs: (0..phnum).map(|i| phoff + i * 56).collect(),
    }
}

const SHT_SYMTAB: u32 = 2;
const SHT_RELA: u32 = 4;
const SHT_DYNSYM: u32 = 11;
const SHT_DYNAMIC: u32 = 6;

/// Values that break arithmetic: zero, one, all ones, sign boundaries of each width.
const BOUNDARY: [u64; 14] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

fn boundary_near(rng: &mut Rng, real: u64) -> u64 {
    match rng.below(4) {
        0 => real.wrapping_add(1 + rng.below(8) as u64),
        1 => real.wrapping_sub(1 + rng.below(8) as u64),
        _ => *rng.pick(&BOUNDARY),
    }
}

/// The kinds of mutation, named in findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    Truncate,
    BitFlips,
    Overwrite,
    ElfHeader,
    SectionHeader,
    Symbol,
    Relocation,
    ProgramHeader,
    Dynamic,
    Dwarf,
}

/// A mutated input and how it was made.
struct Mutant {
    bytes: Vec<u8>,
    what: String,
}

/// One mutation of `kind` of `input`, whose pristine layout is `layout`.
fn mutate(rng: &mut Rng, input: &[u8], layout: &Layout64, kind: Mutation) -> Mutant {
    let mut bytes = input.to_vec();
    let len = bytes.len();
    let what = match kind {
        Mutation::Truncate => {
            // Short lengths (headers) densely, the rest anywhere, and section boundaries.
            let cut = match rng.below(3) {
                0 => rng.below(256.min(len)),
                1 => rng.below(len),
                _ => {
                    let s = rng.pick(&layout.shdrs);
                    (s.offset + rng.below(s.size.max(1))).min(len)
                }
            };
            bytes.truncate(cut);
            format!("truncated to {cut} bytes")
        }
        Mutation::BitFlips => {
            let n = 1 + rng.below(8);
            let mut at = Vec::new();
            for _ in 0..n {
                let pos = rng.below(len);
                let bit = rng.below(8);
                bytes[pos] ^= 1 << bit;
                at.push(format!("{pos:#x}.{bit}"));
            }
            format!("bit flips at {}", at.join(","))
        }
        Mutation::Overwrite => {
            let width = *rng.pick(&[1usize, 2, 4, 8]);
            let pos = rng.below(len.saturating_sub(width).max(1));
            let value = *rng.pick(&BOUNDARY);
            wr(&mut bytes, pos, width, value);
            format!("{width}-byte overwrite at {pos:#x} with {value:#x}")
        }
        Mutation::ElfHeader => {
            // e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx.
            let fields: [(usize, usize, &str); 7] = [
                (0x20, 8, "e_phoff"),
                (0x28, 8, "e_shoff"),
                (0x36, 2, "e_phentsize"),
                (0x38, 2, "e_phnum"),
                (0x3a, 2, "e_shentsize"),
                (0x3c, 2, "e_shnum"),
                (0x3e, 2, "e_shstrndx"),
            ];
            let (at, width, name) = *rng.pick(&fields);
            let value = boundary_near(rng, rd(input, at, width));
            wr(&mut bytes, at, width, value);
            format!("{name} = {value:#x}")
        }
        Mutation::SectionHeader => {
            let index = rng.below(layout.shdrs.len());
            let s = layout.shdrs[index];
            let fields: [(usize, usize, &str); 9] = [
                (0, 4, "sh_name"),
                (4, 4, "sh_type"),
                (8, 8, "sh_flags"),
                (24, 8, "sh_offset"),
                (32, 8, "sh_size"),
                (40, 4, "sh_link"),
                (44, 4, "sh_info"),
                (48, 8, "sh_addralign"),
                (56, 8, "sh_entsize"),
            ];
            let (field, width, name) = *rng.pick(&fields);
            let value = match (name, rng.below(3)) {
                // Links and infos point at other sections: aim at the edges of the table.
                ("sh_link" | "sh_info", 0) => layout.shdrs.len() as u64 - rng.below(2) as u64,
                ("sh_size", 0) => (len - s.offset.min(len)) as u64 + rng.below(64) as u64,
                _ => boundary_near(rng, rd(input, s.at + field, width)),
            };
            wr(&mut bytes, s.at + field, width, value);
            format!(
                "section {index} ({}) {name} = {value:#x}",
                layout.section_names[index]
            )
        }
        Mutation::Symbol => {
            let tables: Vec<usize> = (0..layout.shdrs.len())
                .filter(|&i| matches!(layout.shdrs[i].sh_type, SHT_SYMTAB | SHT_DYNSYM))
                .collect();
            let Some(&table) = tables.get(rng.below(tables.len())) else {
                return mutate(rng, input, layout, Mutation::Overwrite);
            };
            let s = layout.shdrs[table];
            let count = s.size / 24;
            let index = rng.below(count);
            let at = s.offset + index * 24;
            let fields: [(usize, usize, &str); 6] = [
                (0, 4, "st_name"),
                (4, 1, "st_info"),
                (5, 1, "st_other"),
                (6, 2, "st_shndx"),
                (8, 8, "st_value"),
                (16, 8, "st_size"),
            ];
            let (field, width, name) = *rng.pick(&fields);
            let value = match (name, rng.below(3)) {
                ("st_shndx", 0) => layout.shdrs.len() as u64 - rng.below(2) as u64,
                ("st_shndx", 1) => *rng.pick(&[0xfff1u64, 0xfff2, 0xffff, 0xff00]),
                ("st_info", _) => rng.below(256) as u64,
                _ => boundary_near(rng, rd(input, at + field, width)),
            };
            wr(&mut bytes, at + field, width, value);
            format!(
                "{} symbol {index} {name} = {value:#x}",
                layout.section_names[table]
            )
        }
        Mutation::Relocation => {
            let tables: Vec<usize> = (0..layout.shdrs.len())
                .filter(|&i| layout.shdrs[i].sh_type == SHT_RELA && layout.shdrs[i].size >= 24)
                .collect();
            let Some(&table) = tables.get(rng.below(tables.len())) else {
                return mutate(rng, input, layout, Mutation::Overwrite);
            };
            let s = layout.shdrs[table];
            let index = rng.below(s.size / 24);
            let at = s.offset + index * 24;
            let info = rd(input, at + 8, 8);
            let (field, value) = match rng.below(5) {
                0 => {
                    // r_info symbol index: past the table, its last entry, huge.
                    let sym = *rng.pick(&[
                        (info >> 32) + 1,
                        0,
                        1,
                        0x7fff_ffff,
                        0xffff_ffff,
                        (info >> 32).wrapping_add(1000),
                    ]);
                    ("r_sym", (sym << 32) | (info & 0xffff_ffff))
                }
                1 => {
                    // r_info type: every small type (known and unknown), and huge ones.
                    let ty = if rng.below(4) == 0 {
                        *rng.pick(&[0xffu64, 0x100, 0x7fff_ffff, 0xffff_ffff])
                    } else {
                        rng.below(48) as u64
                    };
                    ("r_type", (info & !0xffff_ffff) | ty)
                }
                2 => (
                    "r_offset",
                    boundary_near(rng, rd(input, at, 8)).wrapping_add(rng.below(2) as u64),
                ),
                3 => ("r_offset", rd(input, at, 8) + rng.below(16) as u64),
                _ => (
                    "r_addend",
                    *rng.pick(&[
                        i64::MAX as u64,
                        i64::MIN as u64,
                        0x7fff_ffff,
                        0x8000_0000,
                        u64::MAX,
                        (rd(input, at + 16, 8)).wrapping_add(0x1000_0000),
                    ]),
                ),
            };
            let field_at = match field {
                "r_offset" => at,
                "r_addend" => at + 16,
                _ => at + 8,
            };
            wr(&mut bytes, field_at, 8, value);
            format!(
                "{} entry {index} {field} = {value:#x}",
                layout.section_names[table]
            )
        }
        Mutation::ProgramHeader => {
            let Some(&at) = layout.phdrs.get(rng.below(layout.phdrs.len())) else {
                return mutate(rng, input, layout, Mutation::SectionHeader);
            };
            let fields: [(usize, usize, &str); 8] = [
                (0, 4, "p_type"),
                (8, 8, "p_offset"),
                (16, 8, "p_vaddr"),
                (24, 8, "p_paddr"),
                (32, 8, "p_filesz"),
                (40, 8, "p_memsz"),
                (48, 8, "p_align"),
                (4, 4, "p_flags"),
            ];
            let (field, width, name) = *rng.pick(&fields);
            let value = boundary_near(rng, rd(input, at + field, width));
            wr(&mut bytes, at + field, width, value);
            format!("program header at {at:#x} {name} = {value:#x}")
        }
        Mutation::Dynamic => {
            let Some(s) = layout.shdrs.iter().find(|s| s.sh_type == SHT_DYNAMIC) else {
                return mutate(rng, input, layout, Mutation::SectionHeader);
            };
            let index = rng.below(s.size / 16);
            let at = s.offset + index * 16 + 8 * rng.below(2);
            let value = boundary_near(rng, rd(input, at, 8));
            wr(&mut bytes, at, 8, value);
            format!(".dynamic word at {at:#x} = {value:#x}")
        }
        Mutation::Dwarf => {
            // A debug section, or the relocation table of one.
            let debug: Vec<usize> = (0..layout.shdrs.len())
                .filter(|&i| {
                    let name = &layout.section_names[i];
                    (name.starts_with(".debug_") || name.starts_with(".rela.debug_"))
                        && layout.shdrs[i].size > 0
                })
                .collect();
            let Some(&index) = debug.get(rng.below(debug.len())) else {
                return mutate(rng, input, layout, Mutation::BitFlips);
            };
            let s = layout.shdrs[index];
            let name = &layout.section_names[index];
            match rng.below(4) {
                0 => {
                    // Shrink the section: its data ends in the middle of a record.
                    let size = rng.below(s.size) as u64;
                    wr(&mut bytes, s.at + 32, 8, size);
                    format!("{name} sh_size = {size:#x}")
                }
                1 => {
                    let n = 1 + rng.below(4);
                    let mut at = Vec::new();
                    for _ in 0..n {
                        let pos = s.offset + rng.below(s.size);
                        let bit = rng.below(8);
                        bytes[pos] ^= 1 << bit;
                        at.push(format!("+{:#x}.{bit}", pos - s.offset));
                    }
                    format!("{name} bit flips at {}", at.join(","))
                }
                _ => {
                    let width = *rng.pick(&[1usize, 2, 4, 8]);
                    let pos = s.offset + rng.below(s.size.saturating_sub(width).max(1));
                    let value = *rng.pick(&BOUNDARY);
                    wr(&mut bytes, pos, width, value);
                    format!(
                        "{name} {width}-byte overwrite at +{:#x} with {value:#x}",
                        pos - s.offset
                    )
                }
            }
        }
    };
    Mutant { bytes, what }
}

// ---------------------------------------------------------------------------------------
// Real inputs.

/// The second version of the program's file: changed bodies, a new function, a new string.
fn prog_v2(v1: &str) -> String {
    v1
        .replace("case 4: return 57;", "case 4: return 58; case 5: return 99;")
        .replace(
            "  return counter + (int)strlen(names[n % 3]);",
            "  counter += added(n);\n  return counter + (int)strlen(names[n % 3]) + (int)strlen(\"v2\");",
        )
        .replace(
            "int tick(int n) {",
            "int added(int n) { return n * 7 + fz_total; }\nint tick(int n) {",
        )
}

struct Seed {
    name: String,
    bytes: Vec<u8>,
    layout: Layout64,
}

fn seed(name: &str, bytes: Vec<u8>) -> Seed {
    let layout = layout(&bytes);
    Seed {
        name: name.to_string(),
        bytes,
        layout,
    }
}

struct Inputs {
    _dir: tempfile::TempDir,
    /// Relocatable objects: the program's file (v1, v2 at several flags), C++, others.
    objects: Vec<Seed>,
    /// The executable and the shared library.
    images: Vec<Seed>,
    /// The real image model and a linker for it.
    linker: Linker,
    model: ImageModel,
    /// v1 and v2 of the program's file, as the program was built (the link baseline and
    /// the object a save produces).
    v1: Object,
    v2: Object,
    v2_bytes: Vec<u8>,
    unit: UnitRef,
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn inputs() -> &'static Inputs {
    static INPUTS: OnceLock<Inputs> = OnceLock::new();
    INPUTS.get_or_init(build_inputs)
}

fn build_inputs() -> Inputs {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let prog_v1 = fixture("hostile_prog.c");
    let lib_source = fixture("hostile_lib.c");
    let cxx_source = fixture("hostile_shape.cc");
    let sub = |name: &str| {
        let p = d.join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    };

    // The library and the program, linked by cc as a user's build would.
    std::fs::write(d.join("fz.c"), &lib_source).expect("write lib");
    let so = d.join("libfz.so");
    run(std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-g"])
        .arg(d.join("fz.c"))
        .arg("-o")
        .arg(&so));
    std::fs::write(d.join("prog.c"), &prog_v1).expect("write prog");
    let exe = d.join("prog");
    run(std::process::Command::new("cc")
        .args(["-O0", "-g", "-ffunction-sections", "-fdata-sections"])
        .arg(d.join("prog.c"))
        .arg("-L")
        .arg(d)
        .args(["-lfz", "-o"])
        .arg(&exe));

    let v1_path = compile(&sub("v1"), "prog.c", &prog_v1, &["-O0"]);
    let v2_source = prog_v2(&prog_v1);
    let v2_path = compile(&sub("v2"), "prog.c", &v2_source, &["-O0"]);
    let mut objects = vec![seed("prog.c -O0 (v2)", read(&v2_path))];
    for (name, src, file, flags) in [
        ("prog.c -O2", prog_v1.as_str(), "prog.c", &["-O2"][..]),
        (
            "prog.c -O2 -fPIC (v2)",
            &v2_source,
            "prog.c",
            &["-O2", "-fPIC"],
        ),
        (
            "prog.c -O1 -gz -gdwarf-4",
            prog_v1.as_str(),
            "prog.c",
            &["-O1", "-gz", "-gdwarf-4"],
        ),
        (
            "fz.c -O2 -fPIC",
            lib_source.as_str(),
            "fz.c",
            &["-O2", "-fPIC"],
        ),
    ] {
        let path = compile(&sub(&name.replace([' ', '(', ')'], "_")), file, src, flags);
        objects.push(seed(name, read(&path)));
    }
    for (name, flags) in [
        ("shape.cc -O0 -fexceptions", &["-O0", "-fexceptions"][..]),
        ("shape.cc -O2 -fPIC", &["-O2", "-fPIC"]),
    ] {
        let path = compile_with(
            "c++",
            &sub(&name.replace([' ', '(', ')'], "_")),
            "shape.cc",
            &cxx_source,
            flags,
        );
        objects.push(seed(name, read(&path)));
    }
    let images = vec![seed("prog (PIE)", read(&exe)), seed("libfz.so", read(&so))];

    let exe_module = module(&exe, BIAS);
    let lib_module = module(&so, 0x7fff_e000_0000);
    let tu = exe_module
        .image
        .translation_units
        .iter()
        .position(|n| n == "prog.c")
        .map(|i| hot_object::TranslationUnitId(i as u32));
    assert!(tu.is_some(), "prog.c is a translation unit of the image");
    // libc too: the program's file calls printf and strlen.
    let libc = module(&libc_path(), 0x7fff_f000_0000);
    let model = image_model(exe_module, vec![lib_module, libc]);
    let linker = Linker::new(model.clone(), arenas_below_image());
    linker.prepare();
    let v1 = parse_object(&v1_path);
    let v2 = parse_object(&v2_path);
    let unit = UnitRef {
        tu,
        compile_unit: None,
        source: "prog.c".into(),
    };
    // The unmutated link must work, or the mutations would test nothing.
    let patch = linker
        .link(&LinkRequest {
            object: &v2,
            baseline: Some(&v1),
            unit: unit.clone(),
            applied: &[],
        })
        .unwrap_or_else(|e| panic!("the real v2 links: {e:#?}"));
    assert!(
        patch.swapped.iter().any(|f| f == "tick"),
        "v2 changes tick: {:?}",
        patch.swapped
    );
    eprintln!(
        "hostile inputs: {} objects, {} images, built in {:.1?}",
        objects.len(),
        images.len(),
        started.elapsed()
    );
    Inputs {
        _dir: dir,
        objects,
        images,
        linker,
        model,
        v1,
        v2_bytes: read(&v2_path),
        v2,
        unit,
    }
}

// ---------------------------------------------------------------------------------------
// The run: executions, findings, panic capture, time and allocation budgets.

/// One execution slower than this (debug build, busy 2-core machine) is a finding: every
/// target is linear in its input, and inputs are small.
const TIME_BUDGET: Duration = Duration::from_secs(5);

/// Beyond this with no progress a target is considered hung: the run stops the test binary
/// after printing the input, since a hung thread cannot be cancelled.
const HANG_LIMIT: Duration = Duration::from_secs(60);

thread_local! {
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            // Panics inside an execution are recorded as findings; any other (an assertion
            // of the harness itself) is reported as usual.
            let recorded = PANIC
                .try_with(|slot| {
                    let mut slot = slot.borrow_mut();
                    if IN_TARGET.with(Cell::get) {
                        *slot = Some(format!("panic at {location}: {message}"));
                        true
                    } else {
                        false
                    }
                })
                .unwrap_or(false);
            if !recorded {
                default(info);
            }
        }));
    });
}

thread_local! {
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
}

struct Finding {
    target: &'static str,
    input: String,
    mutation: String,
    problem: String,
}

/// Counts and findings of one target.
struct Run {
    target: &'static str,
    executions: usize,
    ok: usize,
    refused: usize,
    findings: Vec<Finding>,
    slowest: Duration,
    /// Where the watchdog looks: when this execution started, and what it is.
    current: Arc<Mutex<(Instant, String, Vec<u8>)>>,
}

impl Run {
    fn new(target: &'static str) -> Run {
        install_panic_hook();
        let current = Arc::new(Mutex::new((Instant::now(), String::new(), Vec::new())));
        let watched = Arc::downgrade(&current);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some(current) = watched.upgrade() else {
                return;
            };
            let guard = match current.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if guard.0.elapsed() > HANG_LIMIT {
                let path = std::env::temp_dir().join(format!("hostile-hang-{target}.bin"));
                let _ = std::fs::write(&path, &guard.2);
                eprintln!(
                    "HANG in {target}: {} has run for {:?}; input saved to {}",
                    guard.1,
                    guard.0.elapsed(),
                    path.display()
                );
                std::process::exit(101);
            }
        });
        Run {
            target,
            executions: 0,
            ok: 0,
            refused: 0,
            findings: Vec::new(),
            slowest: Duration::ZERO,
            current,
        }
    }

    /// Run one execution of the target; `body` returns whether the input was accepted.
    fn exec(&mut self, input: &str, mutant: &Mutant, body: impl FnOnce(&[u8]) -> bool) {
        {
            let mut current = self.current.lock().expect("watchdog lock");
            *current = (
                Instant::now(),
                format!("{input}: {}", mutant.what),
                mutant.bytes.clone(),
            );
        }
        CURRENT.with(|c| *c.borrow_mut() = format!("{input}: {}", mutant.what));
        LARGEST.with(|l| l.set(0));
        IN_TARGET.with(|t| t.set(true));
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mutant.bytes)));
        let elapsed = started.elapsed();
        IN_TARGET.with(|t| t.set(false));
        let largest = LARGEST.with(Cell::get);
        self.executions += 1;
        self.slowest = self.slowest.max(elapsed);
        let mut problem = None;
        match result {
            Ok(true) => self.ok += 1,
            Ok(false) => self.refused += 1,
            Err(_) => {
                problem = Some(
                    PANIC
                        .with(|p| p.borrow_mut().take())
                        .unwrap_or_else(|| "a panic".into()),
                )
            }
        }
        if elapsed > TIME_BUDGET {
            problem = Some(format!("took {elapsed:?} (budget {TIME_BUDGET:?})"));
        }
        if largest > ALLOC_BUDGET {
            problem = Some(format!(
                "allocated {largest} bytes at once (budget {ALLOC_BUDGET})"
            ));
        }
        if let Some(problem) = problem {
            self.findings.push(Finding {
                target: self.target,
                input: input.to_string(),
                mutation: mutant.what.clone(),
                problem,
            });
        }
    }

    fn finish(self, started: Instant) {
        eprintln!(
            "hostile {}: {} executions ({} accepted, {} refused with an error) in {:.1?}, \
             slowest {:.1?}, {} findings",
            self.target,
            self.executions,
            self.ok,
            self.refused,
            started.elapsed(),
            self.slowest,
            self.findings.len()
        );
        // Group findings by problem (location), so one bug is one line.
        let mut seen: Vec<(String, usize, String)> = Vec::new();
        for f in &self.findings {
            match seen.iter_mut().find(|(p, _, _)| *p == f.problem) {
                Some(entry) => entry.1 += 1,
                None => seen.push((f.problem.clone(), 1, format!("{}: {}", f.input, f.mutation))),
            }
        }
        for (problem, count, example) in &seen {
            eprintln!(
                "  FINDING {} ({count}x): {problem}\n    e.g. {example}",
                self.findings[0].target
            );
        }
        assert!(
            self.findings.is_empty(),
            "{}: {} executions ended in a panic, a hang or a huge allocation (see above)",
            self.target,
            self.findings.len()
        );
    }
}

/// The mutation kinds each target draws from, with weights.
const OBJECT_MUTATIONS: [(Mutation, usize); 8] = [
    (Mutation::Truncate, 2),
    (Mutation::BitFlips, 3),
    (Mutation::Overwrite, 3),
    (Mutation::ElfHeader, 1),
    (Mutation::SectionHeader, 4),
    (Mutation::Symbol, 3),
    (Mutation::Relocation, 4),
    (Mutation::Dwarf, 2),
];

const IMAGE_MUTATIONS: [(Mutation, usize); 9] = [
    (Mutation::Truncate, 2),
    (Mutation::BitFlips, 3),
    (Mutation::Overwrite, 3),
    (Mutation::ElfHeader, 1),
    (Mutation::SectionHeader, 4),
    (Mutation::Symbol, 3),
    (Mutation::Relocation, 2),
    (Mutation::ProgramHeader, 2),
    (Mutation::Dynamic, 2),
];

fn pick_kind(rng: &mut Rng, kinds: &[(Mutation, usize)]) -> Mutation {
    let total: usize = kinds.iter().map(|(_, w)| w).sum();
    let mut at = rng.below(total);
    for &(kind, weight) in kinds {
        if at < weight {
            return kind;
        }
        at -= weight;
    }
    kinds[0].0
}

/// Iterations per seed input and target, before scaling. Measured to keep every target
/// well under the one-minute budget in a debug build on the 2-core CI machine.
fn iterations(base: usize) -> usize {
    base * scale()
}

/// One round of a mutation run: an input, how many mutants of it, and the mutation kinds
/// they are drawn from (with their weights).
type Round<'i> = (&'i Seed, usize, &'static [(Mutation, usize)]);

/// One mutation run of `target`: for each `(input, iterations, kinds)` round, mutants drawn
/// from `kinds` (with their weights) go to `body`, which says whether the input parsed.
fn mutation_run<'i>(
    target: &'static str,
    rounds: impl IntoIterator<Item = Round<'i>>,
    mut body: impl FnMut(&Seed, &[u8]) -> bool,
) {
    let started = Instant::now();
    let mut run = Run::new(target);
    let mut rng = Rng::new(seed_of(target));
    for (input, count, kinds) in rounds {
        for _ in 0..iterations(count) {
            let kind = pick_kind(&mut rng, kinds);
            let mutant = mutate(&mut rng, &input.bytes, &input.layout, kind);
            run.exec(&input.name, &mutant, |bytes| body(input, bytes));
        }
    }
    run.finish(started);
}

/// Only DWARF sections are corrupted.
const DWARF_MUTATIONS: [(Mutation, usize); 1] = [(Mutation::Dwarf, 1)];

/// A mutated object, parsed; an error must name the file.
fn parsed_object(bytes: &[u8]) -> Option<Object> {
    match Object::parse(Path::new("mutated.o"), bytes) {
        Ok(object) => Some(object),
        Err(e) => {
            assert!(
                e.to_string().contains("mutated.o"),
                "error names the file: {e}"
            );
            None
        }
    }
}

/// A mutated executable or library, parsed; an error must name the file.
fn parsed_image(bytes: &[u8]) -> Option<LinkedImage> {
    match LinkedImage::parse(Path::new("mutated"), bytes) {
        Ok(image) => Some(image),
        Err(e) => {
            assert!(
                e.to_string().contains("mutated"),
                "error names the file: {e}"
            );
            None
        }
    }
}

#[test]
fn object_parse_survives_mutated_objects() {
    let inputs = inputs();
    let rounds = inputs
        .objects
        .iter()
        .map(|i| (i, 400, &OBJECT_MUTATIONS[..]));
    mutation_run("object_parse", rounds, |_, bytes| {
        parsed_object(bytes).inspect(exercise_object).is_some()
    });
}

#[test]
fn dwarf_reader_survives_mutated_debug_sections() {
    let inputs = inputs();
    let objects = inputs
        .objects
        .iter()
        .map(|i| (i, 250, &DWARF_MUTATIONS[..]));
    let images = inputs.images.iter().map(|i| (i, 150, &DWARF_MUTATIONS[..]));
    let image_names: Vec<&str> = inputs.images.iter().map(|i| i.name.as_str()).collect();
    mutation_run("dwarf", objects.chain(images), |input, bytes| {
        if image_names.contains(&input.name.as_str()) {
            parsed_image(bytes).inspect(exercise_image).is_some()
        } else {
            parsed_object(bytes).inspect(exercise_object).is_some()
        }
    });
}

#[test]
fn image_reader_survives_mutated_executables_and_libraries() {
    let inputs = inputs();
    let rounds = inputs.images.iter().map(|i| (i, 300, &IMAGE_MUTATIONS[..]));
    mutation_run("image_read", rounds, |input, bytes| {
        let Some(image) = parsed_image(bytes) else {
            return false;
        };
        exercise_image(&image);
        // The linker built on the mutated module (the executable, or the library next to
        // the real executable) links the real v2.
        let is_exe = std::ptr::eq(input, &inputs.images[0]);
        let module = Module {
            path: "mutated".into(),
            bias: if is_exe { BIAS } else { 0x7fff_e000_0000 },
            image: Arc::new(image),
        };
        let mut model = inputs.model.clone();
        if is_exe {
            model.exe = module;
        } else {
            model.libs[0] = module;
        }
        let linker = Linker::new(model, arenas_below_image());
        linker.prepare();
        for baseline in [Some(&inputs.v1), None] {
            let _ = linker.link(&LinkRequest {
                object: &inputs.v2,
                baseline,
                unit: inputs.unit.clone(),
                applied: &[],
            });
        }
        true
    });
}

#[test]
fn diff_survives_mutated_objects() {
    let inputs = inputs();
    let rounds = inputs
        .objects
        .iter()
        .map(|i| (i, 150, &OBJECT_MUTATIONS[..]));
    mutation_run("diff", rounds, |_, bytes| {
        let Some(object) = parsed_object(bytes) else {
            return false;
        };
        let _ = changed_functions(&inputs.v1, &object);
        let _ = changed_functions(&object, &inputs.v1);
        let _ = changed_functions(&object, &object);
        true
    });
}

#[test]
fn link_planner_survives_mutated_objects() {
    let inputs = inputs();
    let v2 = seed("prog.c -O0 (v2)", inputs.v2_bytes.clone());
    // The program's own file most (it binds to the image), the others for other shapes.
    let mut rounds: Vec<Round> = vec![(&v2, 600, &OBJECT_MUTATIONS[..])];
    rounds.extend(
        inputs
            .objects
            .iter()
            .skip(1)
            .map(|s| (s, 100, &OBJECT_MUTATIONS[..])),
    );
    mutation_run("link_plan", rounds, |_, bytes| {
        let Some(object) = parsed_object(bytes) else {
            return false;
        };
        let link = |object: &Object, baseline: Option<&Object>| {
            let _ = inputs.linker.link(&LinkRequest {
                object,
                baseline,
                unit: inputs.unit.clone(),
                applied: &[],
            });
        };
        link(&object, Some(&inputs.v1));
        link(&object, None);
        link(&inputs.v2, Some(&object));
        true
    });
}

/// The file offset of the `.symtab` entry of `name`.
fn symtab_entry(bytes: &[u8], layout: &Layout64, name: &str) -> usize {
    let (index, symtab) = layout
        .shdrs
        .iter()
        .enumerate()
        .find(|(_, s)| s.sh_type == SHT_SYMTAB)
        .expect(".symtab");
    let strtab = layout.shdrs[rd(bytes, symtab.at + 40, 4) as usize];
    (0..symtab.size / 24)
        .map(|i| symtab.offset + i * 24)
        .find(|&at| {
            let start = strtab.offset + rd(bytes, at, 4) as usize;
            bytes[start..].split(|&b| b == 0).next() == Some(name.as_bytes())
        })
        .unwrap_or_else(|| panic!("no symbol {name} in .symtab {index}"))
}

fn section_header(layout: &Layout64, name: &str) -> Shdr {
    let index = layout
        .section_names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no section {name}"));
    layout.shdrs[index]
}

/// Each finding of the mutation runs as a fixed row, so that it stays fixed whatever the
/// seeded runs draw: the input, the corruption, and what must come out instead of a panic or
/// a huge allocation.
#[test]
fn findings_of_the_mutation_runs_stay_fixed() {
    let started = Instant::now();
    let inputs = inputs();
    let mut run = Run::new("findings");
    let object = |name: &str| {
        inputs
            .objects
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no input {name}"))
    };
    let link_v2_against = |exe: &[u8]| {
        let image = LinkedImage::parse(Path::new("mutated"), exe).expect("the image parses");
        let mut model = inputs.model.clone();
        model.exe = Module {
            path: "mutated".into(),
            bias: BIAS,
            image: Arc::new(image),
        };
        let linker = Linker::new(model, arenas_below_image());
        linker.link(&LinkRequest {
            object: &inputs.v2,
            baseline: None,
            unit: inputs.unit.clone(),
            applied: &[],
        })
    };
    type Edit = Box<dyn Fn(&mut Vec<u8>, &Layout64)>;
    type Check<'a> = Box<dyn Fn(&[u8]) + 'a>;
    let rows: Vec<(&str, &Seed, Edit, Check)> = vec![
        (
            // object reserved the claimed size (up to 2^54 bytes) before inflating.
            "a compressed debug section claiming 1 TiB",
            object("prog.c -O1 -gz -gdwarf-4"),
            Box::new(|bytes, layout| {
                let s = section_header(layout, ".debug_info");
                wr(bytes, s.offset + 8, 8, 1 << 40); // Elf64_Chdr.ch_size
            }),
            Box::new(|bytes| {
                let object = Object::parse(Path::new("mutated.o"), bytes).expect("parses");
                assert!(
                    object
                        .warnings
                        .iter()
                        .any(|w| w.contains("compression header claims")),
                    "{:?}",
                    object.warnings
                );
            }),
        ),
        (
            // A symbol's offset past its atom overflowed `base + offset` in the linker.
            "a symbol past the end of its section",
            object("prog.c -O0 (v2)"),
            Box::new(|bytes, layout| {
                let at = symtab_entry(bytes, layout, "tick");
                wr(bytes, at + 8, 8, 0x8000_0000_0000_0000);
            }),
            Box::new(|bytes| {
                let error = Object::parse(Path::new("mutated.o"), bytes).expect_err("refused");
                assert!(
                    error.to_string().contains("past the end of .text.tick"),
                    "{error}"
                );
            }),
        ),
        (
            // `addend + adjustment` overflowed while comparing with the running image.
            "an addend of i64::MAX",
            object("prog.c -O0 (v2)"),
            Box::new(|bytes, layout| {
                let s = section_header(layout, ".rela.text.tick");
                wr(bytes, s.offset + 16, 8, i64::MAX as u64);
            }),
            Box::new(|bytes| {
                let object = Object::parse(Path::new("mutated.o"), bytes).expect("parses");
                let _ = inputs.linker.link(&LinkRequest {
                    object: &object,
                    baseline: None,
                    unit: inputs.unit.clone(),
                    applied: &[],
                });
            }),
        ),
        (
            // The bss variable was compared with the image through `vec![0; sh_size]`.
            "a .bss section of 8 GiB",
            object("prog.c -O0 (v2)"),
            Box::new(|bytes, layout| {
                let s = section_header(layout, ".bss.calls");
                wr(bytes, s.at + 32, 8, 8 << 30);
            }),
            Box::new(|bytes| {
                let object = Object::parse(Path::new("mutated.o"), bytes).expect("parses");
                let result = inputs.linker.link(&LinkRequest {
                    object: &object,
                    baseline: None,
                    unit: inputs.unit.clone(),
                    applied: &[],
                });
                // `calls` keeps its symbol size, so it stays bound to the image's copy: what
                // matters is that nothing of the claimed 8 GiB is built or written.
                if let Ok(patch) = result {
                    assert!(
                        patch.writes.iter().all(|w| w.bytes.len() < 1 << 20),
                        "a write of the claimed size"
                    );
                }
            }),
        ),
        (
            // The image index computed `vaddr + size` of every symbol.
            "an image symbol of size 2^64 - 5",
            &inputs.images[0],
            Box::new(|bytes, layout| {
                let at = symtab_entry(bytes, layout, "tick");
                wr(bytes, at + 16, 8, 0xffff_ffff_ffff_fffb);
            }),
            Box::new(|bytes| {
                let _ = link_v2_against(bytes);
            }),
        ),
        (
            // `tpoff` rounded and subtracted the TLS segment's size unchecked.
            "a PT_TLS of 2^63 bytes",
            &inputs.images[0],
            Box::new(|bytes, layout| {
                let at = *layout
                    .phdrs
                    .iter()
                    .find(|&&at| rd(bytes, at, 4) == 7) // PT_TLS
                    .expect("PT_TLS");
                wr(bytes, at + 40, 8, 0x7fff_ffff_ffff_ffff);
            }),
            Box::new(|bytes| {
                let errors = link_v2_against(bytes).expect_err("thread-locals cannot be placed");
                assert!(
                    errors.iter().any(|e| e.message.contains("TLS segment")),
                    "{errors:#?}"
                );
            }),
        ),
    ];
    for (what, input, edit, check) in rows {
        let mut bytes = input.bytes.clone();
        edit(&mut bytes, &input.layout);
        let mutant = Mutant {
            bytes,
            what: what.to_string(),
        };
        run.exec(&input.name, &mutant, |bytes| {
            check(bytes);
            true
        });
    }
    run.finish(started);
}
