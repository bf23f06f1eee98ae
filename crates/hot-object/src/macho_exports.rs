//! What a Mach-O dylib exports, and the list of images in the dyld shared cache: the two
//! things new code needs to call a library function the executable never imported.
//!
//! # The export trie
//!
//! A dylib's exports are a prefix trie (`LC_DYLD_EXPORTS_TRIE`, or the `export_off` range of
//! `LC_DYLD_INFO(_ONLY)`). Each node is: a ULEB128 terminal size, then, when it is not zero,
//! the export's ULEB128 flags and payload (kind in the low two bits: regular, thread-local,
//! absolute; `REEXPORT` (0x08): a dylib ordinal and the name there; `STUB_AND_RESOLVER`
//! (0x10): stub and resolver offsets; otherwise the address as an offset from the image's
//! Mach header), then a child count byte and, per child, the NUL-terminated edge label and
//! the ULEB128 offset of the child node from the trie's start. A name is the concatenation
//! of the labels from the root. Every offset and size is untrusted: a node revisited (a
//! cycle), an offset outside the trie or a name longer than [`MAX_NAME`] is an error.
//!
//! # The shared cache
//!
//! Libraries of the system (`libSystem`, everything under `/usr/lib` and the frameworks)
//! live in the dyld shared cache, mapped into every process. Its header (`dyld_cache_header`
//! in dyld's `dyld_cache_format.h`) starts with a 16-byte magic (`dyld_v1   arm64e`), the
//! file offset and count of the mapping array (32-byte `dyld_cache_mapping_info`: address,
//! size, file offset, max and initial protection) and of the image array (32-byte
//! `dyld_cache_image_info`: address, modification time, inode, path file offset). The image
//! array's offset and count moved from bytes 24/28 to 448/452 in newer caches, whose header
//! is long enough to hold them (the mapping array starts after the header, so
//! `mappingOffset` tells the header's length). Addresses are unslid: the cache's slide is
//! where its first mapping is in the process minus the first mapping's address.
//! [`parse_dyld_cache`] reads all this from bytes (the target's memory, read by hot-process,
//! or a file), and [`export_trie_location`] finds an image's trie from its load commands,
//! so the only Mach call left is reading memory.

use std::collections::HashSet;
use std::path::Path;

use object::macho;
use object::read::macho::{MachHeader as _, MachOFile64};
use object::Endianness;

use crate::image::{ImageSymbol, Visibility};
use crate::{Binding, LinkedImage, ObjectError, SymbolKind};

/// The longest export name accepted (C++ names run long; a trie that builds longer ones is
/// corrupt or hostile).
pub const MAX_NAME: usize = 16 * 1024;

const EXPORT_SYMBOL_FLAGS_KIND_MASK: u64 = 0x03;
const EXPORT_SYMBOL_FLAGS_KIND_THREAD_LOCAL: u64 = 0x01;
const EXPORT_SYMBOL_FLAGS_KIND_ABSOLUTE: u64 = 0x02;
const EXPORT_SYMBOL_FLAGS_WEAK_DEFINITION: u64 = 0x04;
const EXPORT_SYMBOL_FLAGS_REEXPORT: u64 = 0x08;
const EXPORT_SYMBOL_FLAGS_STUB_AND_RESOLVER: u64 = 0x10;

/// One exported name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// As in the trie, with its leading `_` for C names.
    pub name: String,
    /// `EXPORT_SYMBOL_FLAGS_WEAK_DEFINITION`.
    pub weak: bool,
    pub kind: ExportKind,
}

/// What an exported name is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportKind {
    /// Code or data at this offset from the image's Mach header.
    Regular { offset: u64 },
    /// A thread-local variable's descriptor at this offset.
    ThreadLocal { offset: u64 },
    /// An absolute value (not moved by the slide).
    Absolute { value: u64 },
    /// Defined by the dylib with this (1-based) ordinal among the image's dependencies,
    /// under `imported` when the name differs there.
    Reexport {
        ordinal: u64,
        imported: Option<String>,
    },
    /// A stub (offset) calls go through, and the resolver that picks the implementation.
    StubAndResolver { stub: u64, resolver: u64 },
}

fn uleb(trie: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = *trie
            .get(*at)
            .ok_or_else(|| format!("ULEB128 runs past the end at {:#x}", *at))?;
        *at += 1;
        if shift >= 64 || (shift == 63 && byte & 0x7e != 0) {
            return Err(format!("ULEB128 at {:#x} overflows 64 bits", *at - 1));
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

fn cstr<'a>(trie: &'a [u8], at: &mut usize) -> Result<&'a [u8], String> {
    let rest = trie
        .get(*at..)
        .ok_or_else(|| format!("string at {:#x} outside the trie", *at))?;
    let len = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| format!("string at {:#x} has no terminating NUL", *at))?;
    *at += len + 1;
    Ok(&rest[..len])
}

/// Every export of a trie, in trie order (depth first). See the module documentation.
pub fn parse_export_trie(trie: &[u8]) -> Result<Vec<Export>, String> {
    let mut out = Vec::new();
    if trie.is_empty() {
        return Ok(out);
    }
    let mut visited = HashSet::new();
    // (node offset, name so far)
    let mut stack: Vec<(usize, Vec<u8>)> = vec![(0, Vec::new())];
    while let Some((node, name)) = stack.pop() {
        if !visited.insert(node) {
            return Err(format!(
                "node {node:#x} is reached twice (a cycle or shared node)"
            ));
        }
        let mut at = node;
        let terminal = uleb(trie, &mut at)?;
        let children_at = (at as u64)
            .checked_add(terminal)
            .filter(|&c| c < trie.len() as u64)
            .ok_or_else(|| format!("node {node:#x}: terminal size {terminal} runs past the trie"))?
            as usize;
        if terminal > 0 {
            let flags = uleb(trie, &mut at)?;
            let kind = if flags & EXPORT_SYMBOL_FLAGS_REEXPORT != 0 {
                let ordinal = uleb(trie, &mut at)?;
                let imported = cstr(trie, &mut at)?;
                ExportKind::Reexport {
                    ordinal,
                    imported: (!imported.is_empty())
                        .then(|| String::from_utf8_lossy(imported).into_owned()),
                }
            } else if flags & EXPORT_SYMBOL_FLAGS_STUB_AND_RESOLVER != 0 {
                let stub = uleb(trie, &mut at)?;
                let resolver = uleb(trie, &mut at)?;
                ExportKind::StubAndResolver { stub, resolver }
            } else {
                let value = uleb(trie, &mut at)?;
                match flags & EXPORT_SYMBOL_FLAGS_KIND_MASK {
                    EXPORT_SYMBOL_FLAGS_KIND_THREAD_LOCAL => {
                        ExportKind::ThreadLocal { offset: value }
                    }
                    EXPORT_SYMBOL_FLAGS_KIND_ABSOLUTE => ExportKind::Absolute { value },
                    0 => ExportKind::Regular { offset: value },
                    other => return Err(format!("node {node:#x}: unknown export kind {other}")),
                }
            };
            if at > children_at {
                return Err(format!(
                    "node {node:#x}: export information is longer than its terminal size"
                ));
            }
            out.push(Export {
                name: String::from_utf8_lossy(&name).into_owned(),
                weak: flags & EXPORT_SYMBOL_FLAGS_WEAK_DEFINITION != 0,
                kind,
            });
        }
        let mut at = children_at;
        let count = *trie
            .get(at)
            .ok_or_else(|| format!("node {node:#x}: no child count"))?;
        at += 1;
        let mut children = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let label = cstr(trie, &mut at)?;
            let child = uleb(trie, &mut at)?;
            if child == 0 || child >= trie.len() as u64 {
                return Err(format!(
                    "node {node:#x}: child offset {child:#x} outside the trie ({} bytes)",
                    trie.len()
                ));
            }
            let mut full = name.clone();
            full.extend_from_slice(label);
            if full.len() > MAX_NAME {
                return Err(format!(
                    "node {node:#x}: a name longer than {MAX_NAME} bytes"
                ));
            }
            children.push((child as usize, full));
        }
        // Depth first, children in trie order.
        stack.extend(children.into_iter().rev());
    }
    Ok(out)
}

/// Where an image's export trie is, from its Mach header and load commands as mapped
/// (`bytes` start at the header; the load commands must be complete): the trie's address
/// relative to the header (`__LINKEDIT`'s address minus `__TEXT`'s, plus the trie's offset
/// into `__LINKEDIT`), and its size. `None` when the image has no trie.
pub fn export_trie_location(bytes: &[u8]) -> Result<Option<(u64, u64)>, String> {
    let header = macho::MachHeader64::<Endianness>::parse(bytes, 0)
        .map_err(|e| format!("not a 64-bit Mach-O header: {e}"))?;
    let endian = header.endian().map_err(|e| format!("Mach-O header: {e}"))?;
    let mut cmds = header
        .load_commands(endian, bytes, 0)
        .map_err(|e| format!("load commands: {e}"))?;
    let mut text: Option<u64> = None;
    let mut linkedit: Option<(u64, u64, u64)> = None; // (vmaddr, fileoff, filesize)
    let mut trie: Option<(u64, u64)> = None; // (file offset, size)
    while let Some(cmd) = cmds.next().map_err(|e| format!("load command: {e}"))? {
        if let Some((seg, _)) = cmd.segment_64().map_err(|e| format!("segment: {e}"))? {
            match seg.segname.as_slice() {
                n if n.starts_with(b"__TEXT\0") => text = Some(seg.vmaddr.get(endian)),
                n if n.starts_with(b"__LINKEDIT\0") => {
                    linkedit = Some((
                        seg.vmaddr.get(endian),
                        seg.fileoff.get(endian),
                        seg.filesize.get(endian),
                    ))
                }
                _ => {}
            }
        } else if cmd.cmd() == macho::LC_DYLD_EXPORTS_TRIE {
            let d: &macho::LinkeditDataCommand<Endianness> = cmd
                .data()
                .map_err(|e| format!("LC_DYLD_EXPORTS_TRIE: {e}"))?;
            trie = Some((
                u64::from(d.dataoff.get(endian)),
                u64::from(d.datasize.get(endian)),
            ));
        } else if let Some(d) = cmd.dyld_info().map_err(|e| format!("LC_DYLD_INFO: {e}"))? {
            if trie.is_none() && d.export_size.get(endian) > 0 {
                trie = Some((
                    u64::from(d.export_off.get(endian)),
                    u64::from(d.export_size.get(endian)),
                ));
            }
        }
    }
    let Some((off, size)) = trie.filter(|&(_, size)| size > 0) else {
        return Ok(None);
    };
    let text = text.ok_or("no __TEXT segment")?;
    let (vmaddr, fileoff, filesize) = linkedit.ok_or("an export trie but no __LINKEDIT")?;
    let inside = off
        .checked_sub(fileoff)
        .filter(|&i| i.checked_add(size).is_some_and(|end| end <= filesize))
        .ok_or_else(|| {
            format!("the export trie ({off:#x}, {size} bytes) lies outside __LINKEDIT")
        })?;
    let at = vmaddr
        .checked_sub(text)
        .and_then(|d| d.checked_add(inside))
        .ok_or("__LINKEDIT lies below __TEXT")?;
    Ok(Some((at, size)))
}

/// The exports of a dylib file (`ld64.lld -dylib` output, or a dylib on disk) with its
/// install name (`LC_ID_DYLIB`).
pub fn dylib_exports(path: &Path, bytes: &[u8]) -> Result<(String, Vec<Export>), ObjectError> {
    let bad = |message: String| ObjectError::Malformed {
        path: path.to_path_buf(),
        message,
    };
    let file = MachOFile64::<Endianness>::parse(bytes)
        .map_err(|e| bad(format!("not a readable 64-bit Mach-O file: {e}")))?;
    let endian = file.endian();
    let mut cmds = file
        .macho_load_commands()
        .map_err(|e| bad(format!("load commands: {e}")))?;
    let mut name = String::new();
    let mut trie: Option<(u64, u64)> = None;
    while let Some(cmd) = cmds.next().map_err(|e| bad(format!("load command: {e}")))? {
        if cmd.cmd() == macho::LC_ID_DYLIB {
            let d: &macho::DylibCommand<Endianness> =
                cmd.data().map_err(|e| bad(format!("LC_ID_DYLIB: {e}")))?;
            let s = cmd
                .string(endian, d.dylib.name)
                .map_err(|e| bad(format!("LC_ID_DYLIB name: {e}")))?;
            name = String::from_utf8_lossy(s).into_owned();
        } else if cmd.cmd() == macho::LC_DYLD_EXPORTS_TRIE {
            let d: &macho::LinkeditDataCommand<Endianness> = cmd
                .data()
                .map_err(|e| bad(format!("LC_DYLD_EXPORTS_TRIE: {e}")))?;
            trie = Some((
                u64::from(d.dataoff.get(endian)),
                u64::from(d.datasize.get(endian)),
            ));
        } else if let Some(d) = cmd
            .dyld_info()
            .map_err(|e| bad(format!("LC_DYLD_INFO: {e}")))?
        {
            if trie.is_none() {
                trie = Some((
                    u64::from(d.export_off.get(endian)),
                    u64::from(d.export_size.get(endian)),
                ));
            }
        }
    }
    let Some((off, size)) = trie else {
        return Ok((name, Vec::new()));
    };
    let data = off
        .checked_add(size)
        .and_then(|end| bytes.get(off as usize..end as usize))
        .ok_or_else(|| {
            bad(format!(
                "the export trie ({off:#x}, {size} bytes) is outside the file"
            ))
        })?;
    let exports = parse_export_trie(data).map_err(|e| bad(format!("export trie: {e}")))?;
    Ok((name, exports))
}

/// A library model made of exports alone, for the linker's library list: each regular,
/// thread-local and stub-and-resolver export is a defined global at its offset from the
/// Mach header (so the module's bias is where the header is in the process). Absolute
/// exports and re-exports are left out: a re-exported name is found in the image that
/// defines it, which is in the list too.
pub fn exports_image(install_name: &str, exports: &[Export]) -> LinkedImage {
    let mut image = LinkedImage {
        soname: Some(install_name.to_string()),
        position_independent: true,
        has_symtab: true,
        ..Default::default()
    };
    for e in exports {
        let (vaddr, kind) = match e.kind {
            ExportKind::Regular { offset } => (offset, SymbolKind::Function),
            ExportKind::StubAndResolver { stub, .. } => (stub, SymbolKind::Function),
            ExportKind::ThreadLocal { offset } => (offset, SymbolKind::Tls),
            ExportKind::Absolute { .. } | ExportKind::Reexport { .. } => continue,
        };
        image.symbols.push(ImageSymbol {
            name: e.name.clone(),
            vaddr,
            size: 0,
            kind,
            binding: if e.weak {
                Binding::Weak
            } else {
                Binding::Global
            },
            tu: None,
            section: None,
            defined: true,
            dynamic: true,
            default_version: true,
            visibility: Visibility::Default,
        });
    }
    image
}

/// One mapping of the shared cache (`dyld_cache_mapping_info`), unslid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheMapping {
    pub address: u64,
    pub size: u64,
    pub file_offset: u64,
    pub max_prot: u32,
    pub init_prot: u32,
}

/// One image of the shared cache: its Mach header's unslid address and its install path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheImage {
    pub address: u64,
    pub path: String,
}

/// The parts of a shared cache's header hot-lsp uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DyldCache {
    /// e.g. `dyld_v1   arm64e`, trailing spaces and NULs kept out.
    pub magic: String,
    pub uuid: [u8; 16],
    pub mappings: Vec<CacheMapping>,
    pub images: Vec<CacheImage>,
}

impl DyldCache {
    /// The slide of a cache whose first mapping is at `mapped` in the process.
    pub fn slide(&self, mapped: u64) -> Option<u64> {
        let first = self.mappings.first()?;
        mapped.checked_sub(first.address)
    }
}

/// Why [`parse_dyld_cache`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DyldCacheError {
    /// The bytes end before what the header points at: read at least `need` bytes from
    /// the cache's start and call again.
    #[error("the shared cache's header needs {need} bytes, {have} were read")]
    Truncated { need: usize, have: usize },
    #[error("not a dyld shared cache: {0}")]
    Malformed(String),
}

/// Offsets in `dyld_cache_header` (dyld's `dyld_cache_format.h`).
const MAPPING_OFFSET: usize = 16;
const MAPPING_COUNT: usize = 20;
const IMAGES_OFFSET_OLD: usize = 24;
const IMAGES_COUNT_OLD: usize = 28;
const UUID: usize = 88;
const IMAGES_OFFSET: usize = 448;
const IMAGES_COUNT: usize = 452;
/// Sizes of `dyld_cache_mapping_info` and `dyld_cache_image_info`.
const MAPPING_SIZE: usize = 32;
const IMAGE_SIZE: usize = 32;
/// More images than any cache holds (about 4,000 on macOS 14): a corrupt count.
const MAX_IMAGES: usize = 1 << 16;
const MAX_MAPPINGS: usize = 64;

/// The header, mappings and image list of a dyld shared cache, from `bytes` that start at
/// the cache's first byte (its first mapping, in the target's memory, or its file). See the
/// module documentation.
pub fn parse_dyld_cache(bytes: &[u8]) -> Result<DyldCache, DyldCacheError> {
    let need = |n: usize| {
        if bytes.len() < n {
            Err(DyldCacheError::Truncated {
                need: n,
                have: bytes.len(),
            })
        } else {
            Ok(())
        }
    };
    need(IMAGES_COUNT_OLD + 4)?;
    if !bytes.starts_with(b"dyld_v") {
        return Err(DyldCacheError::Malformed(format!(
            "magic {:?}",
            String::from_utf8_lossy(&bytes[..16])
        )));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let magic = String::from_utf8_lossy(&bytes[..16])
        .trim_end_matches(['\0', ' '])
        .to_string();
    let mapping_offset = u32_at(MAPPING_OFFSET) as usize;
    let mapping_count = u32_at(MAPPING_COUNT) as usize;
    if mapping_count == 0 || mapping_count > MAX_MAPPINGS || mapping_offset < IMAGES_COUNT_OLD + 4 {
        return Err(DyldCacheError::Malformed(format!(
            "{mapping_count} mappings at {mapping_offset:#x}"
        )));
    }
    // The header is as long as the mapping array's offset: new fields exist when it holds them.
    let (images_offset, images_count) = if mapping_offset >= IMAGES_COUNT + 4 {
        need(IMAGES_COUNT + 4)?;
        (
            u32_at(IMAGES_OFFSET) as usize,
            u32_at(IMAGES_COUNT) as usize,
        )
    } else {
        (
            u32_at(IMAGES_OFFSET_OLD) as usize,
            u32_at(IMAGES_COUNT_OLD) as usize,
        )
    };
    if images_count > MAX_IMAGES {
        return Err(DyldCacheError::Malformed(format!("{images_count} images")));
    }
    let mut uuid = [0u8; 16];
    if mapping_offset >= UUID + 16 {
        need(UUID + 16)?;
        uuid.copy_from_slice(&bytes[UUID..UUID + 16]);
    }
    let mappings_end = mapping_offset + mapping_count * MAPPING_SIZE;
    need(mappings_end)?;
    let mappings: Vec<CacheMapping> = (0..mapping_count)
        .map(|i| {
            let at = mapping_offset + i * MAPPING_SIZE;
            CacheMapping {
                address: u64_at(at),
                size: u64_at(at + 8),
                file_offset: u64_at(at + 16),
                max_prot: u32_at(at + 24),
                init_prot: u32_at(at + 28),
            }
        })
        .collect();
    if mappings[0].file_offset != 0 {
        return Err(DyldCacheError::Malformed(
            "the first mapping does not start at the cache's first byte".into(),
        ));
    }
    let images_end = images_offset
        .checked_add(images_count * IMAGE_SIZE)
        .ok_or_else(|| DyldCacheError::Malformed("image array offset overflows".into()))?;
    need(images_end)?;
    // Paths are file offsets inside the first mapping, which maps file offset 0.
    let mut raw = Vec::with_capacity(images_count);
    for i in 0..images_count {
        let at = images_offset + i * IMAGE_SIZE;
        let path_at = u32_at(at + 24) as usize;
        if path_at as u64 >= mappings[0].size {
            return Err(DyldCacheError::Malformed(format!(
                "image {i}: path offset {path_at:#x} outside the first mapping"
            )));
        }
        raw.push((u64_at(at), path_at));
    }
    let mut images = Vec::with_capacity(images_count);
    for (i, (address, path_at)) in raw.into_iter().enumerate() {
        let rest = bytes.get(path_at..).unwrap_or(&[]);
        let Some(len) = rest.iter().take(4096).position(|&b| b == 0) else {
            if rest.len() >= 4096 {
                return Err(DyldCacheError::Malformed(format!(
                    "image {i}: path at {path_at:#x} has no NUL in 4096 bytes"
                )));
            }
            // The path runs past what was read: ask for a page more.
            let limit = usize::try_from(mappings[0].size).unwrap_or(usize::MAX);
            if bytes.len() >= limit {
                return Err(DyldCacheError::Malformed(format!(
                    "image {i}: path at {path_at:#x} runs past the first mapping"
                )));
            }
            return Err(DyldCacheError::Truncated {
                need: (path_at + 4096).min(limit),
                have: bytes.len(),
            });
        };
        images.push(CacheImage {
            address,
            path: String::from_utf8_lossy(&rest[..len]).into_owned(),
        });
    }
    Ok(DyldCache {
        magic,
        uuid,
        mappings,
        images,
    })
}
