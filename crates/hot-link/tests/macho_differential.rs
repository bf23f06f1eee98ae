//! Byte-exact differential tests of Mach-O linking against `ld64.lld` (LLVM 14, Debian's
//! `lld` package ships it as `ld64.lld-14`).
//!
//! Each case compiles freestanding C fixtures with `clang --target=<arch>-apple-macos11 -c`
//! (no SDK needed: no system headers), links them with `ld64.lld -undefined dynamic_lookup`
//! (undefined names become flat-namespace imports, so no libSystem `.tbd` is needed) as an
//! executable or a `-dylib`, and reads the output: where lld put each atom (symbol table;
//! string and literal atoms by content), its GOT, stubs and thread-local variable pointers
//! (indirect symbol table) and which pointers dyld binds (bind opcodes). hot-link then
//! relocates the first fixture's atoms ([`hot_link::macho::relocate`]) at the same addresses
//! with the same slots, and its bytes must equal lld's, except that a pointer dyld binds holds
//! its addend in lld's file and the bound address in hot-link's (imports get made-up
//! addresses here).
//!
//! Every case asserts the Mach-O relocation types it compared, so a compiler change that
//! stops emitting one fails instead of silently covering less.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use hot_link::macho::{relocate, MachOPlacement};
use hot_object::{AtomId, AtomKind, Object, RelocKind};
use object::macho;
use object::read::macho::{MachOFile64, Nlist as _, Section as _};
use object::{Endianness, Object as _, ObjectSection as _};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The fixture hot-object's Mach-O tests read (one function or variable per relocation
/// type), with a `main` so that it links as an executable.
fn relocs_fixture() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hot-object/tests/fixtures/macho_relocs.c");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    source + "int main(void) { return tick(1) + is_ext(0) + (int)(long)greeting(); }\n"
}

/// `ld64.lld`, under its plain name or Debian's versioned one.
fn ld64() -> &'static str {
    for name in ["ld64.lld", "ld64.lld-14"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name;
        }
    }
    panic!("ld64.lld not found (Debian: apt-get install lld, which ships ld64.lld-14)");
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn compile(dir: &Path, arch: &str, name: &str, source: &str, opt: &str) -> PathBuf {
    let src = dir.join(name);
    std::fs::write(&src, source).expect("writing the fixture");
    let obj = src.with_extension("o");
    run(Command::new("clang")
        .arg(format!("--target={arch}-apple-macos11"))
        .args([opt, "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj));
    obj
}

/// Values of `hot-link: KEY value` lines in a fixture.
fn directives(source: &str, key: &str) -> Vec<String> {
    let prefix = format!("hot-link: {key} ");
    source
        .lines()
        .filter_map(|l| l.split_once(&prefix).map(|(_, v)| v.trim().to_string()))
        .collect()
}

/// A section of lld's output: (name, address, size, file range or None for zero-fill).
type OutputSection = (String, u64, u64, Option<(usize, usize)>);

/// What lld's output says about where things are.
struct Linked {
    bytes: Vec<u8>,
    /// Defined symbols by name.
    symbols: HashMap<String, u64>,
    got: HashMap<String, u64>,
    stubs: HashMap<String, u64>,
    tlv_pointers: HashMap<String, u64>,
    /// Non-lazy binds: address -> (symbol, addend).
    binds: BTreeMap<u64, (String, i64)>,
    tlv_template: Option<u64>,
    sections: Vec<OutputSection>,
}

impl Linked {
    fn read(path: &Path) -> Linked {
        let bytes = std::fs::read(path).expect("reading lld's output");
        let file = MachOFile64::<Endianness>::parse(&*bytes).expect("lld's output parses");
        let endian = file.endian();
        let symtab = file.macho_symbol_table();
        let mut names_by_index = Vec::new();
        let mut symbols = HashMap::new();
        for nlist in symtab.iter() {
            let name = String::from_utf8_lossy(nlist.name(endian, symtab.strings()).unwrap_or(b""))
                .into_owned();
            if !nlist.is_stab() && nlist.n_type().0 & macho::N_TYPE == macho::N_SECT.0 {
                symbols.insert(name.clone(), nlist.n_value(endian));
            }
            names_by_index.push(name);
        }
        let mut indirect: &[object::U32<Endianness, macho::IndirectSymbol>] = &[];
        let mut segments = Vec::new();
        let mut binds = BTreeMap::new();
        let mut cmds = file.macho_load_commands().expect("load commands");
        let mut dyld_info = None;
        while let Some(cmd) = cmds.next().expect("load command") {
            if let Some(d) = cmd.dysymtab().expect("dysymtab") {
                indirect = d
                    .indirect_symbols(endian, &*bytes)
                    .expect("indirect symbols");
            }
            if let Some((seg, _)) = cmd.segment_64().expect("segment") {
                segments.push(seg.vmaddr.get(endian));
            }
            if let Some(d) = cmd.dyld_info().expect("dyld info") {
                dyld_info = Some(d);
            }
        }
        if let Some(d) = dyld_info {
            let mut it = d.binds(endian, &*bytes, 8).expect("bind opcodes");
            while let Some(b) = it.next().expect("bind") {
                let addr = segments[b.segment_index as usize] + b.segment_offset;
                binds.insert(
                    addr,
                    (String::from_utf8_lossy(b.symbol).into_owned(), b.addend),
                );
            }
        }
        let (mut got, mut stubs, mut tlv_pointers) =
            (HashMap::new(), HashMap::new(), HashMap::new());
        let mut sections = Vec::new();
        let mut tlv_template: Option<u64> = None;
        for section in file.sections() {
            let raw = section.macho_section();
            let typ = macho::SectionType((raw.flags(endian).0 & macho::SECTION_TYPE) as u8);
            let (addr, size) = (raw.addr(endian), raw.size(endian));
            let name = format!(
                "{},{}",
                section.segment_name().ok().flatten().unwrap_or(""),
                section.name().unwrap_or("")
            );
            let zerofill = matches!(
                typ,
                macho::S_ZEROFILL | macho::S_GB_ZEROFILL | macho::S_THREAD_LOCAL_ZEROFILL
            );
            let range = (!zerofill).then(|| {
                let off = raw.offset(endian) as usize;
                (off, off + size as usize)
            });
            sections.push((name, addr, size, range));
            if matches!(
                typ,
                macho::S_THREAD_LOCAL_REGULAR | macho::S_THREAD_LOCAL_ZEROFILL
            ) {
                tlv_template = Some(tlv_template.map_or(addr, |t: u64| t.min(addr)));
            }
            let (map, entry) = match typ {
                macho::S_NON_LAZY_SYMBOL_POINTERS => (&mut got, 8),
                macho::S_SYMBOL_STUBS => (&mut stubs, raw.reserved2(endian) as u64),
                macho::S_THREAD_LOCAL_VARIABLE_POINTERS => (&mut tlv_pointers, 8),
                _ => continue,
            };
            let entries = raw
                .indirect_symbols(endian, indirect)
                .expect("indirect symbols of a section");
            for (i, e) in entries.iter().enumerate() {
                let index = e.get(endian).0;
                let slot = addr + i as u64 * entry;
                if index & (macho::INDIRECT_SYMBOL_LOCAL.0 | macho::INDIRECT_SYMBOL_ABS.0) != 0 {
                    // A local symbol's slot: its content (rebased) says which.
                    let off = raw.offset(endian) as usize + i * 8;
                    let value = u64::from_le_bytes(bytes[off..off + 8].try_into().expect("8"));
                    if let Some((name, _)) = symbols.iter().find(|(_, &a)| a == value) {
                        map.insert(name.clone(), slot);
                    }
                } else if let Some(name) = names_by_index.get(index as usize) {
                    map.insert(name.clone(), slot);
                }
            }
        }
        Linked {
            bytes,
            symbols,
            got,
            stubs,
            tlv_pointers,
            binds,
            tlv_template,
            sections,
        }
    }

    fn section_data(&self, name: &str) -> Option<(u64, &[u8])> {
        let sectname = name.split(',').nth(1)?;
        self.sections
            .iter()
            .find(|(n, ..)| n.split(',').nth(1) == Some(sectname))
            .and_then(|(_, addr, _, range)| range.map(|(s, e)| (*addr, &self.bytes[s..e])))
    }

    fn bytes_at(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.sections.iter().find_map(|(_, a, size, range)| {
            let (s, _) = (*range)?;
            (addr >= *a && addr + len as u64 <= a + size)
                .then(|| &self.bytes[s + (addr - a) as usize..s + (addr - a) as usize + len])
        })
    }
}

/// Where lld put an atom: through any of its symbols, else (a literal) by its contents.
fn lld_address(object: &Object, atom: AtomId, linked: &Linked) -> Option<u64> {
    let a = object.atom(atom);
    for &s in &a.symbols {
        let sym = object.symbol(s);
        if let (Some(&addr), hot_object::SymbolDef::Atom { offset, .. }) =
            (linked.symbols.get(&sym.name), sym.def)
        {
            return Some(addr - offset.0);
        }
    }
    if a.bytes.is_empty() {
        return None;
    }
    let (base, data) = linked.section_data(&a.section_name)?;
    let step = if a.merge_strings {
        1
    } else {
        a.align.max(1) as usize
    };
    (0..data.len().saturating_sub(a.bytes.len() - 1))
        .step_by(step)
        .find(|&i| {
            data[i..i + a.bytes.len()] == a.bytes[..]
                && (!a.merge_strings || i == 0 || data[i - 1] == 0)
        })
        .map(|i| base + i as u64)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Output {
    Executable,
    Dylib,
}

/// Link with lld and with hot-link; compare; return the relocation types compared.
fn check_against_ld64(
    arch: &str,
    source: &str,
    opt: &str,
    output: Output,
) -> BTreeMap<String, usize> {
    let dir = tempfile::tempdir().expect("tempdir");
    let variant = format!("{arch} {opt} {output:?}");
    let main = compile(dir.path(), arch, "a.c", source, opt);
    let mut objects = vec![main.clone()];
    for extra in directives(source, "extra") {
        objects.push(compile(dir.path(), arch, &extra, &fixture(&extra), opt));
    }
    let out = dir.path().join("a.out");
    let mut cmd = Command::new(ld64());
    cmd.args(["-arch", arch, "-platform_version", "macos", "11.0", "11.0"])
        .args(["-undefined", "dynamic_lookup", "-o"])
        .arg(&out)
        .args(&objects);
    if output == Output::Dylib {
        cmd.arg("-dylib");
    }
    run(&mut cmd);
    let linked = Linked::read(&out);
    let bytes = std::fs::read(&main).expect("reading the object");
    let object = Object::parse(&main, &bytes).unwrap_or_else(|e| panic!("{variant}: {e}"));

    let mut placement = MachOPlacement {
        tlv_template: linked.tlv_template,
        ..Default::default()
    };
    for (i, atom) in object.atoms.iter().enumerate() {
        let id = AtomId(i as u32);
        match lld_address(&object, id, &linked) {
            Some(addr) => {
                placement.atoms.insert(id, addr);
            }
            None => assert!(
                atom.relocs.is_empty() && atom.bytes.iter().all(|&b| b == 0),
                "{variant}: lld placed no atom of {} with {} bytes and relocations {:?}",
                atom.section_name,
                atom.size,
                atom.relocs
            ),
        }
    }
    // Imports (names no object defines) get made-up addresses; what lld bound to them is checked against those.
    let mut fake = HashMap::new();
    for sym in &object.symbols {
        if sym.def == hot_object::SymbolDef::Undefined && !linked.symbols.contains_key(&sym.name) {
            let addr = 0x7ff8_0000_0000 + fake.len() as u64 * 0x1000;
            fake.insert(sym.name.clone(), addr);
            placement.symbols.insert(sym.name.clone(), addr);
        }
    }
    placement.got = linked.got.iter().map(|(k, v)| (k.clone(), *v)).collect();
    placement.stubs = linked.stubs.iter().map(|(k, v)| (k.clone(), *v)).collect();
    placement.tlv_pointers = linked
        .tlv_pointers
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    // Symbols the other objects define.
    for sym in &object.symbols {
        if let Some(&addr) = linked.symbols.get(&sym.name) {
            placement.symbols.entry(sym.name.clone()).or_insert(addr);
        }
    }

    let ours = relocate(&object, &placement)
        .unwrap_or_else(|errors| panic!("{variant}: hot-link failed: {errors:#?}"));
    let mut kinds = BTreeMap::new();
    let mut compared = 0;
    for (id, addr, mut our_bytes) in ours {
        let atom = object.atom(id);
        let mut theirs = linked
            .bytes_at(addr, our_bytes.len())
            .unwrap_or_else(|| panic!("{variant}: no lld bytes at {addr:#x}"))
            .to_vec();
        // Bound pointers: lld's file holds the addend, ours the bound address.
        for (&at, (name, addend)) in linked.binds.range(addr..addr + our_bytes.len() as u64) {
            let off = (at - addr) as usize;
            let value = u64::from_le_bytes(our_bytes[off..off + 8].try_into().expect("8"));
            let want = fake.get(name).copied().unwrap_or_else(|| {
                panic!("{variant}: lld binds {name} at {at:#x}, not an import of the object")
            });
            assert_eq!(
                value,
                want.wrapping_add(*addend as u64),
                "{variant}: bound pointer to {name} at {at:#x}"
            );
            our_bytes[off..off + 8].fill(0);
            theirs[off..off + 8].fill(0);
        }
        if our_bytes != theirs {
            let first = our_bytes
                .iter()
                .zip(&theirs)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{variant}: {} atom {:?} at {addr:#x} differs from lld at +{first:#x}\n  ours: {:02x?}\n  lld:  {:02x?}\n  relocs: {:#?}",
                atom.section_name,
                object.primary_symbol(id).map(|s| object.symbol(s).name.clone()),
                &our_bytes[first.saturating_sub(4)..(first + 12).min(our_bytes.len())],
                &theirs[first.saturating_sub(4)..(first + 12).min(theirs.len())],
                atom.relocs
            );
        }
        if atom.kind != AtomKind::Bss {
            compared += 1;
        }
        for r in &atom.relocs {
            *kinds.entry(object.reloc_type_name(r.raw_type)).or_insert(0) += 1;
            // An arm64 instruction relocation's addend can only come from an ADDEND pair.
            if object.machine == hot_object::Machine::Aarch64
                && r.addend != 0
                && !matches!(r.kind, RelocKind::Abs64 | RelocKind::Abs32)
            {
                *kinds.entry("ARM64_RELOC_ADDEND".into()).or_insert(0) += 1;
            }
        }
    }
    assert!(compared > 3, "{variant}: only {compared} atoms compared");
    kinds
}

fn assert_covers(kinds: &BTreeMap<String, usize>, names: &[&str], variant: &str) {
    for name in names {
        assert!(
            kinds.contains_key(*name),
            "{variant}: expected the fixture to exercise {name}; covered: {kinds:?}"
        );
    }
}

/// The x86-64 relocation types every variant of the relocation fixture exercises.
const X86_64_RELOCS: &[&str] = &[
    "X86_64_RELOC_UNSIGNED",
    "X86_64_RELOC_SIGNED",
    "X86_64_RELOC_BRANCH",
    "X86_64_RELOC_GOT_LOAD",
    "X86_64_RELOC_SUBTRACTOR",
    "X86_64_RELOC_TLV",
    "X86_64_RELOC_SIGNED_1",
    "X86_64_RELOC_SIGNED_2",
    "X86_64_RELOC_SIGNED_4",
];

#[test]
fn macho_x86_64_relocs_match_ld64_lld() {
    let source = relocs_fixture();
    for (opt, output) in [
        ("-O0", Output::Executable),
        ("-O1", Output::Executable),
        ("-O2", Output::Executable),
        ("-O3", Output::Executable),
        ("-Os", Output::Dylib),
        ("-O2", Output::Dylib),
    ] {
        let variant = format!("relocs {opt} {output:?}");
        let kinds = check_against_ld64("x86_64", &source, opt, output);
        assert_covers(&kinds, X86_64_RELOCS, &variant);
        if opt != "-O0" {
            // `cmpq _ext_var@GOTPCREL(%rip)`: at -O0 clang loads the pointer first.
            assert_covers(&kinds, &["X86_64_RELOC_GOT"], &variant);
        }
    }
}

#[test]
fn macho_x86_64_data_and_got_relaxation_match_ld64_lld() {
    let source = fixture("macho_data.c");
    for (opt, output) in [
        ("-O0", Output::Executable),
        ("-O1", Output::Dylib),
        ("-O2", Output::Executable),
        ("-O3", Output::Dylib),
    ] {
        let variant = format!("data {opt} {output:?}");
        let kinds = check_against_ld64("x86_64", &source, opt, output);
        assert_covers(
            &kinds,
            &[
                "X86_64_RELOC_UNSIGNED",
                "X86_64_RELOC_SIGNED",
                "X86_64_RELOC_BRANCH",
                "X86_64_RELOC_GOT_LOAD",
                "X86_64_RELOC_SUBTRACTOR",
            ],
            &variant,
        );
    }
}

/// The arm64 relocation types every variant of the relocation fixture exercises.
const ARM64_RELOCS: &[&str] = &[
    "ARM64_RELOC_UNSIGNED",
    "ARM64_RELOC_SUBTRACTOR",
    "ARM64_RELOC_BRANCH26",
    "ARM64_RELOC_PAGE21",
    "ARM64_RELOC_PAGEOFF12",
    "ARM64_RELOC_GOT_LOAD_PAGE21",
    "ARM64_RELOC_GOT_LOAD_PAGEOFF12",
    "ARM64_RELOC_TLVP_LOAD_PAGE21",
    "ARM64_RELOC_TLVP_LOAD_PAGEOFF12",
];

#[test]
fn macho_arm64_relocs_match_ld64_lld() {
    let source = relocs_fixture();
    for (opt, output) in [
        ("-O0", Output::Executable),
        ("-O1", Output::Executable),
        ("-O2", Output::Executable),
        ("-O3", Output::Dylib),
        ("-Os", Output::Dylib),
    ] {
        let variant = format!("arm64 relocs {opt} {output:?}");
        let kinds = check_against_ld64("arm64", &source, opt, output);
        assert_covers(&kinds, ARM64_RELOCS, &variant);
        if opt != "-O0" {
            // `table[1] = 5`: `adrp`/`str` of `_table + 4`; at -O0 clang adds the 4 itself.
            assert_covers(&kinds, &["ARM64_RELOC_ADDEND"], &variant);
        }
    }
}

#[test]
fn macho_arm64_data_and_got_relaxation_match_ld64_lld() {
    let source = fixture("macho_data.c");
    for (opt, output) in [
        ("-O0", Output::Executable),
        ("-O1", Output::Dylib),
        ("-O2", Output::Executable),
        ("-O3", Output::Dylib),
    ] {
        let variant = format!("arm64 data {opt} {output:?}");
        let kinds = check_against_ld64("arm64", &source, opt, output);
        assert_covers(
            &kinds,
            &[
                "ARM64_RELOC_UNSIGNED",
                "ARM64_RELOC_SUBTRACTOR",
                "ARM64_RELOC_BRANCH26",
                "ARM64_RELOC_PAGE21",
                "ARM64_RELOC_PAGEOFF12",
                "ARM64_RELOC_GOT_LOAD_PAGE21",
                "ARM64_RELOC_GOT_LOAD_PAGEOFF12",
                "ARM64_RELOC_POINTER_TO_GOT",
            ],
            &variant,
        );
    }
}
