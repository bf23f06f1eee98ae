//! Shared helpers of hot-link's integration tests: compile C fixtures with the real `cc`,
//! link them with the real GNU `ld`, parse the results with hot-object, read ld's map file.
#![allow(dead_code)]

pub mod macho;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hot_link::{Arenas, ImageModel, Module, RuntimeAddr};
use hot_object::{LinkedImage, Object};

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(name: &str) -> String {
    let path = fixture_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Values of `// hot-link: KEY value` lines in a fixture.
pub fn directives(source: &str, key: &str) -> Vec<String> {
    let prefix = format!("// hot-link: {key} ");
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
        .collect()
}

/// The 1-based line of the first line of `source` containing `needle`.
pub fn line_of(source: &str, needle: &str) -> u32 {
    source
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in fixture")) as u32
        + 1
}

pub fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cc -c` with the patch flags hot-lsp uses.
pub fn compile(dir: &Path, name: &str, source: &str, cflags: &[&str]) -> PathBuf {
    compile_with("cc", dir, name, source, cflags)
}

/// `compiler -c` (`cc`, `clang`) with the patch flags hot-lsp uses.
pub fn compile_with(
    compiler: &str,
    dir: &Path,
    name: &str,
    source: &str,
    cflags: &[&str],
) -> PathBuf {
    let src = dir.join(name);
    std::fs::write(&src, source).expect("writing fixture source");
    let obj = src.with_extension("o");
    run(Command::new(compiler)
        .arg("-c")
        .args(["-g", "-ffunction-sections", "-fdata-sections"])
        .args(cflags)
        .arg(&src)
        .arg("-o")
        .arg(&obj));
    obj
}

/// A shared library from a fixture source.
pub fn shared_lib(dir: &Path, fixture_name: &str, extra: &[&str]) -> PathBuf {
    shared_lib_with("cc", dir, fixture_name, extra)
}

/// A shared library from a fixture source, built by `compiler` (a cross compiler for
/// another architecture's differential tests).
pub fn shared_lib_with(compiler: &str, dir: &Path, fixture_name: &str, extra: &[&str]) -> PathBuf {
    let src = dir.join(fixture_name);
    std::fs::write(&src, fixture(fixture_name)).expect("writing lib source");
    let so = dir.join(format!("lib{}.so", fixture_name.trim_end_matches(".c")));
    run(Command::new(compiler)
        .args(["-shared", "-fPIC", "-O2", "-nostdlib"])
        .args(extra)
        .arg(&src)
        .arg("-o")
        .arg(&so));
    so
}

pub fn parse_object(path: &Path) -> Object {
    let bytes = std::fs::read(path).expect("reading object");
    Object::parse(path, &bytes).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

pub fn parse_image(path: &Path) -> LinkedImage {
    let bytes = std::fs::read(path).expect("reading image");
    LinkedImage::parse(path, &bytes).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

pub fn module(path: &Path, bias: u64) -> Module {
    Module {
        path: path.display().to_string(),
        bias,
        image: Arc::new(parse_image(path)),
    }
}

pub fn libc_path() -> PathBuf {
    for p in [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("no libc.so.6 found");
}

/// Load bias of the test programs (a typical PIE address with ASLR off).
pub const BIAS: u64 = 0x5555_5555_4000;

/// Arenas below a PIE loaded at [`BIAS`], within rel32 reach.
pub fn arenas_below_image() -> Arenas {
    Arenas {
        code: RuntimeAddr(0x5555_0000_0000)..RuntimeAddr(0x5555_0010_0000),
        data: RuntimeAddr(0x5555_0010_0000)..RuntimeAddr(0x5555_0020_0000),
    }
}

/// Arenas right after a low image (within rel32 and absolute-32 reach).
pub fn low_arenas() -> Arenas {
    Arenas {
        code: RuntimeAddr(0x1000_0000)..RuntimeAddr(0x1010_0000),
        data: RuntimeAddr(0x1010_0000)..RuntimeAddr(0x1020_0000),
    }
}

pub fn image_model(exe: Module, libs: Vec<Module>) -> ImageModel {
    ImageModel {
        exe,
        libs,
        home: Default::default(),
    }
}

/// Input sections ld placed, from its `-Map` file: (section name, address, size) of the
/// sections that came from `object_file`.
pub fn map_sections(map: &str, object_file: &str) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = map.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        // Input section lines start with one space and a section name.
        let Some(rest) = line.strip_prefix(' ') else {
            continue;
        };
        if !rest.starts_with('.') {
            continue;
        }
        let mut fields: Vec<&str> = rest.split_whitespace().collect();
        let name = fields.remove(0).to_string();
        if fields.is_empty() {
            // Long names put address, size and file on the next line.
            if let Some(next) = lines.get(i) {
                fields = next.split_whitespace().collect();
                i += 1;
            }
        }
        if fields.len() < 3 || !fields[2].ends_with(object_file) {
            continue;
        }
        let parse = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        if let (Some(addr), Some(size)) = (parse(fields[0]), parse(fields[1])) {
            out.push((name, addr, size));
        }
    }
    out
}

/// Assemble a program: objects linked by ld with a map file.
pub struct Linked {
    pub exe: PathBuf,
    pub map: String,
}

pub fn ld(dir: &Path, objects: &[PathBuf], libs: &[PathBuf], flags: &[&str]) -> Linked {
    ld_with("ld", dir, objects, libs, flags)
}

/// [`ld`] with another GNU ld (`aarch64-linux-gnu-ld`).
pub fn ld_with(
    linker: &str,
    dir: &Path,
    objects: &[PathBuf],
    libs: &[PathBuf],
    flags: &[&str],
) -> Linked {
    let exe = dir.join("out");
    let map = dir.join("map.txt");
    run(Command::new(linker)
        .arg("-o")
        .arg(&exe)
        .args(objects)
        .args(libs)
        .args(["-e", "main", "--no-relax", "-Map"])
        .arg(&map)
        .args(flags));
    Linked {
        exe,
        map: std::fs::read_to_string(&map).expect("reading map"),
    }
}

/// Map each atom of `object` to the address ld gave its section.
pub fn atom_addresses(
    object: &Object,
    sections: &[(String, u64, u64)],
) -> HashMap<hot_object::AtomId, u64> {
    let mut by_name: HashMap<&str, Vec<u64>> = HashMap::new();
    for (name, addr, size) in sections {
        if *size > 0 {
            by_name.entry(name.as_str()).or_default().push(*addr);
        }
    }
    let mut out = HashMap::new();
    let mut taken: HashMap<&str, usize> = HashMap::new();
    for (i, atom) in object.atoms.iter().enumerate() {
        if atom.size == 0 {
            continue;
        }
        let n = taken.entry(atom.section_name.as_str()).or_default();
        if let Some(addr) = by_name
            .get(atom.section_name.as_str())
            .and_then(|v| v.get(*n))
        {
            out.insert(hot_object::AtomId(i as u32), *addr);
            *n += 1;
        }
    }
    out
}

/// The translation unit (`STT_FILE` group) of `source` in a linked image.
pub fn tu_of(
    image: &hot_object::LinkedImage,
    source: &str,
) -> Option<hot_object::TranslationUnitId> {
    image
        .translation_units
        .iter()
        .position(|n| n == source)
        .map(|i| hot_object::TranslationUnitId(i as u32))
}

/// What a differential test compares: `a.o` linked by hot-link at the addresses ld gave
/// its sections in `linked`, against the image ld wrote.
pub struct AtLdPlacement {
    pub object: Object,
    pub linker: hot_link::Linker,
    pub patch: hot_link::Patch,
    pub addresses: HashMap<hot_object::AtomId, u64>,
}

/// Link `obj_path` (`a.c`'s object, one of ld's inputs) with hot-link at ld's placement,
/// against ld's executable (bias 0) and `libs` (at distinct biases).
pub fn link_at_ld_placement(
    obj_path: &Path,
    linked: &Linked,
    libs: &[PathBuf],
    arenas: hot_link::Arenas,
    variant: &str,
) -> AtLdPlacement {
    let object = parse_object(obj_path);
    let exe = module(&linked.exe, 0);
    let lib_modules = libs
        .iter()
        .enumerate()
        .map(|(i, l)| module(l, 0x7f00_0000_0000 + ((i as u64) << 24)))
        .collect();
    let tu = tu_of(&exe.image, "a.c");
    assert!(
        tu.is_some(),
        "no STT_FILE a.c in {:?}",
        exe.image.translation_units
    );
    let linker = hot_link::Linker::new(image_model(exe, lib_modules), arenas);
    let sections = map_sections(&linked.map, "a.o");
    let addresses = atom_addresses(&object, &sections);
    assert!(!addresses.is_empty(), "no sections of a.o in the map file");
    let placement = hot_link::Placement {
        atoms: addresses
            .iter()
            .map(|(a, v)| (*a, hot_link::RuntimeAddr(*v)))
            .collect(),
        redirect_entries: false,
    };
    let request = hot_link::LinkRequest {
        object: &object,
        baseline: None,
        unit: hot_link::UnitRef {
            tu,
            compile_unit: None,
            source: "a.c".into(),
        },
        applied: &[],
    };
    let patch = match linker.link_with_placement(&request, &placement) {
        Ok(p) => p,
        Err(errors) => panic!("hot-link failed ({variant}): {errors:#?}"),
    };
    AtLdPlacement {
        object,
        linker,
        patch,
        addresses,
    }
}
