//! Mach-O helpers of the tests: `clang --target=<arch>-apple-macos11 -c`, `ld64.lld`, and
//! where lld put an object's atoms.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hot_object::{AtomId, LinkedImage, Object};

/// `ld64.lld`, under its plain name or Debian's versioned one.
pub fn ld64() -> &'static str {
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

/// Write `source` as `dir/name` and compile it for `<arch>-apple-macos11` with `flags`.
pub fn compile(dir: &Path, arch: &str, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(name);
    std::fs::write(&src, source).expect("writing the fixture");
    let obj = src.with_extension("o");
    super::run(
        Command::new("clang")
            .arg(format!("--target={arch}-apple-macos11"))
            .args(flags)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj),
    );
    obj
}

/// `ld64.lld -arch ARCH -platform_version macos 11.0 11.0 -undefined dynamic_lookup -o OUT
/// INPUTS FLAGS`.
pub fn link(arch: &str, out: &Path, inputs: &[PathBuf], flags: &[&str]) {
    super::run(
        Command::new(ld64())
            .args(["-arch", arch, "-platform_version", "macos", "11.0", "11.0"])
            .args(["-undefined", "dynamic_lookup", "-o"])
            .arg(out)
            .args(inputs)
            .args(flags),
    );
}

/// The defined symbols of a linked image by name.
pub fn symbols(image: &LinkedImage) -> HashMap<&str, u64> {
    image
        .symbols
        .iter()
        .filter(|s| s.defined)
        .map(|s| (s.name.as_str(), s.vaddr))
        .collect()
}

/// Where lld put an atom: through any of its symbols, else (a literal) by its contents.
pub fn lld_address(
    object: &Object,
    atom: AtomId,
    image: &LinkedImage,
    symbols: &HashMap<&str, u64>,
) -> Option<u64> {
    let a = object.atom(atom);
    for &s in &a.symbols {
        let sym = object.symbol(s);
        if let (Some(&addr), hot_object::SymbolDef::Atom { offset, .. }) =
            (symbols.get(sym.name.as_str()), sym.def)
        {
            return Some(addr - offset.0);
        }
    }
    if a.bytes.is_empty() {
        return None;
    }
    let sectname = a.section_name.split(',').nth(1)?;
    let section = image
        .sections
        .iter()
        .find(|s| s.name.split(',').nth(1) == Some(sectname))?;
    let data = &section.bytes;
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
        .map(|i| section.vaddr + i as u64)
}

/// The fixture hot-object's Mach-O tests read (one function or variable per relocation
/// type), with a `main` so that it links as an executable.
pub fn relocs_fixture() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hot-object/tests/fixtures/macho_relocs.c");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    source + "int main(void) { return tick(1) + is_ext(0) + (int)(long)greeting(); }\n"
}

/// The pointers dyld binds in a linked image (not GOT slots or stubs): address -> (symbol,
/// addend). lld's file holds the addend there, hot-link's patch the bound address.
pub fn binds(image: &LinkedImage) -> std::collections::BTreeMap<u64, (&str, i64)> {
    image
        .got_slots
        .iter()
        .filter(|s| s.kind == hot_object::GotSlotKind::Abs64)
        .map(|s| (s.vaddr, (s.symbol.as_str(), s.addend)))
        .collect()
}
