//! Helpers shared by the integration tests: compile C fixtures with the system `cc`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compile `source` (C text) named `name` into `dir` with `flags`; returns the output path.
/// The source file is written into `dir`, so DWARF names point there.
pub fn compile_c(dir: &Path, name: &str, source: &str, flags: &[&str], output: &str) -> PathBuf {
    compile_with("cc", dir, name, source, flags, output)
}

/// Like [`compile_c`] with another compiler driver (a cross compiler).
pub fn compile_with(
    compiler: &str,
    dir: &Path,
    name: &str,
    source: &str,
    flags: &[&str],
    output: &str,
) -> PathBuf {
    let src = dir.join(name);
    std::fs::write(&src, source).expect("write fixture source");
    let out = dir.join(output);
    let status = Command::new(compiler)
        .args(flags)
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| {
            panic!("run {compiler}: {e} (aarch64 tests need gcc-aarch64-linux-gnu)")
        });
    assert!(status.success(), "{compiler} {flags:?} {name} failed");
    out
}

/// Compile to a relocatable object with the patch flags hot-lsp uses.
pub fn compile_object(dir: &Path, name: &str, source: &str, extra: &[&str]) -> PathBuf {
    let mut flags = vec!["-c", "-g", "-ffunction-sections", "-fdata-sections"];
    flags.extend_from_slice(extra);
    let output = format!("{}.o", name.trim_end_matches(".c"));
    compile_c(dir, name, source, &flags, &output)
}

pub fn parse_object(path: &Path) -> hot_object::Object {
    let bytes = std::fs::read(path).expect("read object");
    match hot_object::Object::parse(path, &bytes) {
        Ok(o) => o,
        Err(e) => panic!("parse {}: {e}", path.display()),
    }
}

/// The atom whose primary symbol is `name`.
pub fn atom_of(object: &hot_object::Object, name: &str) -> hot_object::AtomId {
    (0..object.atoms.len() as u32)
        .map(hot_object::AtomId)
        .find(|&a| {
            object
                .primary_symbol(a)
                .is_some_and(|s| object.symbol(s).name == name)
        })
        .unwrap_or_else(|| panic!("no atom for {name}"))
}

/// 1-based line number of the first line of `source` containing `needle`.
pub fn line_containing(source: &str, needle: &str) -> u32 {
    source
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in source")) as u32
        + 1
}

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
