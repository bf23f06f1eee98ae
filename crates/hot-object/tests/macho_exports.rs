//! Export tries of real dylibs (`ld64.lld-14 -dylib`, objects from `clang
//! --target=<arch>-apple-macos11`), hostile tries, and dyld shared-cache headers built here
//! byte by byte after the layout of dyld's `dyld_cache_format.h`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use hot_object::macho_exports::{
    dylib_exports, export_trie_location, exports_image, parse_dyld_cache, parse_export_trie,
    DyldCacheError, ExportKind,
};
use hot_object::{Binding, LinkedImage, SymbolKind};

const LIB: &str = r#"
int lib_counter = 3;
const char lib_name[] = "lib";
_Thread_local int lib_tls = 1;
static int hidden_helper(int x) { return x + lib_counter; }
__attribute__((visibility("hidden"))) int not_exported(int x) { return x * 2; }
__attribute__((weak)) int lib_weak(int x) { return x - 1; }
int lib_fn(int x) { return hidden_helper(x) + not_exported(x) + lib_tls; }
int lib_fn_with_a_longer_name_sharing_a_prefix(int x) { return lib_fn(x) + 1; }
int lib_fn2(int x) { return lib_fn(x) * 2; }
"#;

fn link_dylib(dir: &Path, arch: &str, name: &str, objects: &[&Path], extra: &[&str]) -> Vec<u8> {
    let out = dir.join(name);
    let mut cmd = Command::new(ld64());
    cmd.args(["-arch", arch, "-platform_version", "macos", "11.0", "11.0"])
        .args(["-dylib", "-undefined", "dynamic_lookup", "-install_name"])
        .arg(format!("/usr/lib/{name}"))
        .args(extra)
        .arg("-o")
        .arg(&out)
        .args(objects);
    let o = cmd.output().expect("running ld64.lld");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(&out).expect("reading the dylib")
}

/// Every export of a dylib is a defined, external, non-hidden symbol of its symbol table at
/// the same address, with its weakness and kind; the trie found through the load commands
/// (as the target's memory would be read) holds the same exports.
fn check(arch: &str, opt: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = format!("--target={arch}-apple-macos11");
    let obj = compile_with(
        "clang",
        dir.path(),
        "lib.c",
        LIB,
        &[&target, opt, "-c"],
        "lib.o",
    );
    let bytes = link_dylib(dir.path(), arch, "libhot.dylib", &[&obj], &[]);
    let path = dir.path().join("libhot.dylib");
    let (install, exports) = dylib_exports(&path, &bytes).expect("exports");
    let variant = format!("{arch} {opt}");
    assert_eq!(install, "/usr/lib/libhot.dylib", "{variant}");
    let image = LinkedImage::parse(&path, &bytes).expect("image");
    // Export offsets are from the Mach header, at the start of `__TEXT`.
    let base = image.vaddr_range.0;
    let want: BTreeMap<String, (u64, bool, SymbolKind)> = image
        .symbols
        .iter()
        .filter(|s| s.defined && s.binding != Binding::Local && !s.visibility.is_hidden())
        .map(|s| {
            (
                s.name.clone(),
                (s.vaddr - base, s.binding == Binding::Weak, s.kind),
            )
        })
        .collect();
    let got: BTreeMap<String, (u64, bool, SymbolKind)> = exports
        .iter()
        .map(|e| {
            let (offset, kind) = match e.kind {
                ExportKind::Regular { offset } => (offset, None),
                ExportKind::ThreadLocal { offset } => (offset, Some(SymbolKind::Tls)),
                ref other => panic!("{variant}: unexpected export {other:?}"),
            };
            let sym_kind = want.get(&e.name).map_or(SymbolKind::NoType, |w| w.2);
            (e.name.clone(), (offset, e.weak, kind.unwrap_or(sym_kind)))
        })
        .collect();
    assert_eq!(got, want, "{variant}: exports against the symbol table");
    for name in [
        "_lib_fn",
        "_lib_fn2",
        "_lib_weak",
        "_lib_counter",
        "_lib_tls",
    ] {
        assert!(got.contains_key(name), "{variant}: {name} not exported");
    }
    assert!(got["_lib_weak"].1, "{variant}: weak flag");
    assert!(!got.contains_key("_not_exported") && !got.contains_key("_hidden_helper"));
    // Found from the load commands, as hot-process reads them from memory: in an lld dylib
    // every segment's file offset equals its address.
    let (at, size) = export_trie_location(&bytes)
        .expect("load commands")
        .expect("a trie");
    let from_memory = parse_export_trie(&bytes[at as usize..(at + size) as usize])
        .expect("the trie at its address");
    assert_eq!(from_memory, exports, "{variant}: trie by address");
    // The linker's library model: each export a defined dynamic global at its offset.
    let model = exports_image(&install, &exports);
    let f = model
        .symbols
        .iter()
        .find(|s| s.name == "_lib_fn")
        .expect("_lib_fn in the model");
    assert!(f.defined && f.dynamic && f.binding == Binding::Global);
    assert_eq!(f.vaddr, got["_lib_fn"].0, "{variant}");
}

#[test]
fn macho_export_trie_of_ld64_lld_dylibs() {
    for (arch, opt) in [
        ("x86_64", "-O0"),
        ("x86_64", "-O2"),
        ("arm64", "-O1"),
        ("arm64", "-O3"),
    ] {
        check(arch, opt);
    }
}

/// Hand-made tries: every form of damage is an error naming where, never a panic or a loop.
#[test]
fn macho_export_trie_refuses_damaged_tries() {
    // Root: no terminal, one child "_a" at 5; node 5: terminal (flags 0, offset 0x10).
    let good: &[u8] = &[0, 1, b'_', b'a', 0, 7, 0, 2, 0, 0x10, 0];
    let exports = parse_export_trie(good).expect("a good trie");
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].name, "_a");
    assert_eq!(exports[0].kind, ExportKind::Regular { offset: 0x10 });
    // The kinds ld64.lld-14 does not write (it lists no re-exports in a trie): a re-export
    // under another name (flags 0x08, ordinal 2, "_b"), a stub and resolver (0x10).
    let kinds: &[(&[u8], ExportKind)] = &[
        (
            &[0, 1, b'_', b'a', 0, 6, 5, 0x08, 2, b'_', b'b', 0, 0],
            ExportKind::Reexport {
                ordinal: 2,
                imported: Some("_b".into()),
            },
        ),
        (
            &[0, 1, b'_', b'a', 0, 6, 3, 0x08, 1, 0, 0],
            ExportKind::Reexport {
                ordinal: 1,
                imported: None,
            },
        ),
        (
            &[0, 1, b'_', b'a', 0, 6, 4, 0x10, 0x20, 0x80, 0x01, 0],
            ExportKind::StubAndResolver {
                stub: 0x20,
                resolver: 0x80,
            },
        ),
        (
            &[0, 1, b'_', b'a', 0, 6, 2, 0x02, 0x7f, 0],
            ExportKind::Absolute { value: 0x7f },
        ),
    ];
    for (bytes, kind) in kinds {
        let exports = parse_export_trie(bytes).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(exports.len(), 1, "{kind:?}");
        assert_eq!((&exports[0].name[..], &exports[0].kind), ("_a", kind));
    }
    // Absolute values and re-exports are not symbols of the library model.
    let reexport = parse_export_trie(kinds[0].0).expect("re-export");
    assert!(exports_image("/usr/lib/libx.dylib", &reexport)
        .symbols
        .is_empty());
    let rows: &[(&str, &[u8], &str)] = &[
        ("child back to the root", &[0, 1, b'_', 0, 0], "outside"),
        (
            "child to itself",
            &[0, 1, b'_', 0, 5, 0, 1, b'x', 0, 5],
            "twice",
        ),
        ("child past the end", &[0, 1, b'_', 0, 0x40], "outside"),
        ("terminal size past the end", &[0x7f, 0, 0], "terminal size"),
        ("no child count", &[0], "past the trie"),
        ("label without NUL", &[0, 1, b'_', b'a'], "NUL"),
        (
            "ULEB128 over 64 bits",
            &[
                0, 1, b'_', 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            "overflows",
        ),
        ("info longer than its size", &[1, 0, 0x10, 0], "longer"),
        ("unknown kind", &[2, 3, 0, 0], "unknown export kind"),
    ];
    for (what, bytes, needle) in rows {
        let err = parse_export_trie(bytes).expect_err(what);
        assert!(err.contains(needle), "{what}: {err}");
    }
}

/// A shared cache header of the given layout: `new` puts the image array's offset and count
/// at 448/452 (the header then runs to 0x1c8), the old layout at 24/28.
fn cache(new: bool, mappings: &[(u64, u64, u64)], images: &[(u64, &str)]) -> Vec<u8> {
    let header_len: usize = if new { 0x1c8 } else { 0x98 };
    let mapping_offset = header_len;
    let images_offset = mapping_offset + 32 * mappings.len();
    let paths_offset = images_offset + 32 * images.len();
    let mut b = vec![0u8; paths_offset];
    b[..16].copy_from_slice(b"dyld_v1  arm64e\0");
    let put32 =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut b, 16, mapping_offset as u32);
    put32(&mut b, 20, mappings.len() as u32);
    if new {
        // The old fields are zero in new caches.
        put32(&mut b, 448, images_offset as u32);
        put32(&mut b, 452, images.len() as u32);
    } else {
        put32(&mut b, 24, images_offset as u32);
        put32(&mut b, 28, images.len() as u32);
    }
    b[88..104].copy_from_slice(&[0xab; 16]);
    for (i, &(address, size, file_offset)) in mappings.iter().enumerate() {
        let at = mapping_offset + 32 * i;
        put64(&mut b, at, address);
        put64(&mut b, at + 8, size);
        put64(&mut b, at + 16, file_offset);
        put32(&mut b, at + 24, 5);
        put32(&mut b, at + 28, 5);
    }
    for (i, &(address, path)) in images.iter().enumerate() {
        let at = images_offset + 32 * i;
        let path_at = b.len();
        b.extend_from_slice(path.as_bytes());
        b.push(0);
        put64(&mut b, at, address);
        put32(&mut b, at + 24, path_at as u32);
    }
    b
}

#[test]
fn macho_dyld_cache_header_and_image_list() {
    let mappings = [
        (0x1_8000_0000, 0x4000_0000, 0),
        (0x1_c000_0000, 0x1000_0000, 0x4000_0000),
        (0x1_d000_0000, 0x0800_0000, 0x5000_0000),
    ];
    let images = [
        (0x1_8000_4000, "/usr/lib/libSystem.B.dylib"),
        (0x1_8001_0000, "/usr/lib/system/libsystem_c.dylib"),
        (
            0x1_8100_0000,
            "/System/Library/Frameworks/Foundation.framework/Foundation",
        ),
    ];
    for new in [true, false] {
        let bytes = cache(new, &mappings, &images);
        let parsed = parse_dyld_cache(&bytes).unwrap_or_else(|e| panic!("new={new}: {e}"));
        assert_eq!(parsed.magic, "dyld_v1  arm64e");
        assert_eq!(parsed.uuid, [0xab; 16]);
        assert_eq!(parsed.mappings.len(), 3);
        assert_eq!(parsed.mappings[1].address, 0x1_c000_0000);
        assert_eq!(parsed.mappings[2].file_offset, 0x5000_0000);
        let got: Vec<(u64, &str)> = parsed
            .images
            .iter()
            .map(|i| (i.address, i.path.as_str()))
            .collect();
        assert_eq!(got, images, "new={new}");
        assert_eq!(parsed.slide(0x1_8a00_0000), Some(0xa00_0000));
        // Read as hot-process reads memory: a small first read, then what it asks for.
        let mut have = 64;
        let read = loop {
            match parse_dyld_cache(&bytes[..have.min(bytes.len())]) {
                Ok(c) => break c,
                Err(DyldCacheError::Truncated { need, .. }) => {
                    assert!(need > have, "new={new}: asks for {need} after {have}");
                    have = need;
                }
                Err(e) => panic!("new={new}: {e}"),
            }
        };
        assert_eq!(read, parsed);
    }
    let good = cache(true, &mappings, &images);
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("bad magic", {
            let mut b = good.clone();
            b[..6].copy_from_slice(b"dyle_v");
            b
        }),
        ("no mappings", {
            let mut b = good.clone();
            b[20..24].copy_from_slice(&0u32.to_le_bytes());
            b
        }),
        ("a million images", {
            let mut b = good.clone();
            b[452..456].copy_from_slice(&1_000_000u32.to_le_bytes());
            b
        }),
        ("a path outside the first mapping", {
            let mut b = good.clone();
            let images_offset = 0x1c8 + 3 * 32;
            b[images_offset + 24..images_offset + 28]
                .copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
            b
        }),
        ("first mapping not at file offset 0", {
            let mut b = good.clone();
            b[0x1c8 + 16..0x1c8 + 24].copy_from_slice(&0x1000u64.to_le_bytes());
            b
        }),
    ];
    for (what, bytes) in damaged {
        match parse_dyld_cache(&bytes) {
            Err(DyldCacheError::Malformed(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}
