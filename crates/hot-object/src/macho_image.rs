//! Linked Mach-O images (executables, dylibs) read into [`LinkedImage`]: the symbol table,
//! the image's own GOT (`__got`, `__la_symbol_ptr`), stubs and thread-local variable
//! pointers named through the indirect symbol table, pointers dyld binds (bind opcodes) and
//! rebases, and the thread-local template.
//!
//! The ELF-shaped model is filled as: `__got` slots are [`GotSlotKind::GlobDat`],
//! `__la_symbol_ptr` ones [`GotSlotKind::JumpSlot`], `__thread_ptrs` ones
//! [`GotSlotKind::ThreadLocalPointer`], other bound pointers [`GotSlotKind::Abs64`] with the
//! bind's addend; `__stubs` entries are [`LinkedImage::plt_entries`]; rebased words are
//! [`LinkedImage::relative_relocs`] (the word holds `slide + addend`, the addend being the
//! file's value); [`LinkedImage::tls`] spans `__thread_data` and `__thread_bss`. Mach-O has
//! no `STT_FILE`: `translation_units` are the debug map's `N_SO` source paths (objects
//! compiled with `-g`), and a local symbol's `tu` is the unit whose `N_FUN`/`N_STSYM`/
//! `N_LCSYM` stab names it (none without `-g`).

use std::path::Path;

use object::macho;
use object::read::macho::{MachHeader as _, MachOFile64, Nlist as _, Section as _};
use object::{Endianness, Object as _, ObjectSection as _};

use crate::image::{GotSlot, GotSlotKind, ImageSymbol, SectionData, TlsSegment, Visibility};
use crate::{Binding, LinkedImage, ObjectError, SymbolKind};

fn malformed(path: &Path, message: String) -> ObjectError {
    ObjectError::Malformed {
        path: path.to_path_buf(),
        message,
    }
}

/// The debug map (`N_SO` / `N_OSO` / `N_FUN` stabs ld64 and lld write for objects with
/// DWARF): which translation unit defined each function and static variable. An `N_SO`
/// with a name opens a unit (a name ending in `/` is the directory of the next one), an
/// empty one closes it; `N_FUN`, `N_STSYM` and `N_LCSYM` with a name inside a unit list
/// its symbols at their addresses.
#[derive(Default)]
struct DebugMap {
    units: Vec<String>,
    /// (name, address) -> unit.
    symbols: std::collections::HashMap<(String, u64), u32>,
    current: Option<u32>,
    directory: Option<String>,
}

impl DebugMap {
    fn read(&mut self, n_type: u8, name: &str, value: u64) {
        const N_SO: u8 = 0x64;
        const N_FUN: u8 = 0x24;
        const N_STSYM: u8 = 0x26;
        const N_LCSYM: u8 = 0x28;
        match n_type {
            N_SO if name.is_empty() => {
                self.current = None;
                self.directory = None;
            }
            N_SO if name.ends_with('/') => self.directory = Some(name.to_string()),
            N_SO => {
                let full = match (self.directory.take(), name.starts_with('/')) {
                    (Some(dir), false) => format!("{dir}{name}"),
                    _ => name.to_string(),
                };
                self.current = Some(self.units.len() as u32);
                self.units.push(full);
            }
            N_FUN | N_STSYM | N_LCSYM if !name.is_empty() => {
                if let Some(tu) = self.current {
                    self.symbols.entry((name.to_string(), value)).or_insert(tu);
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn parse_linked(path: &Path, bytes: &[u8]) -> Result<LinkedImage, ObjectError> {
    let file = MachOFile64::<Endianness>::parse(bytes)
        .map_err(|e| malformed(path, format!("not a readable 64-bit Mach-O file: {e}")))?;
    let endian = file.endian();
    let header = file.macho_header();
    let filetype = header.filetype(endian);
    if !matches!(
        filetype,
        macho::MH_EXECUTE | macho::MH_DYLIB | macho::MH_BUNDLE
    ) {
        return Err(malformed(
            path,
            format!(
                "expected a linked Mach-O image (executable, dylib, bundle), found filetype {}",
                filetype.0
            ),
        ));
    }
    let machine = match header.cputype(endian) {
        macho::CPU_TYPE_X86_64 => crate::Machine::X86_64,
        macho::CPU_TYPE_ARM64 => crate::Machine::Aarch64,
        other => {
            return Err(ObjectError::UnsupportedArch {
                path: path.to_path_buf(),
                arch: format!("Mach-O cputype {:#x}", other.0),
            })
        }
    };
    let mut image = LinkedImage {
        machine,
        position_independent: header.flags(endian).0 & macho::MH_PIE.0 != 0
            || filetype == macho::MH_DYLIB,
        ..Default::default()
    };

    // Segments (for bind/rebase addresses and the address range), the indirect symbol
    // table, dyld info, the UUID.
    let mut segments: Vec<u64> = Vec::new();
    let mut range: Option<(u64, u64)> = None;
    let mut indirect: &[object::U32<Endianness, macho::IndirectSymbol>] = &[];
    let mut dyld_info = None;
    let mut cmds = file
        .macho_load_commands()
        .map_err(|e| malformed(path, format!("load commands: {e}")))?;
    while let Some(cmd) = cmds
        .next()
        .map_err(|e| malformed(path, format!("load command: {e}")))?
    {
        let bad = |e: object::Error| malformed(path, format!("load command: {e}"));
        if let Some((seg, _)) = cmd.segment_64().map_err(bad)? {
            let (addr, size) = (seg.vmaddr.get(endian), seg.vmsize.get(endian));
            segments.push(addr);
            // __PAGEZERO (no access, no file contents) is not part of the image.
            if seg.initprot.get(endian).0 != 0 && size > 0 {
                let end = addr.saturating_add(size);
                let (lo, hi) = range.unwrap_or((addr, end));
                range = Some((lo.min(addr), hi.max(end)));
            }
        } else if let Some(d) = cmd.dysymtab().map_err(bad)? {
            indirect = d
                .indirect_symbols(endian, bytes)
                .map_err(|e| malformed(path, format!("indirect symbols: {e}")))?;
        } else if let Some(d) = cmd.dyld_info().map_err(bad)? {
            dyld_info = Some(d);
        } else if let Some(uuid) = cmd.uuid().map_err(bad)? {
            image.build_id = Some(uuid.uuid.to_vec());
        }
    }
    image.vaddr_range = range.unwrap_or((0, 0));

    // Sections.
    struct Sect {
        name: String,
        addr: u64,
        size: u64,
        typ: macho::SectionType,
    }
    let mut sects: Vec<Sect> = Vec::new();
    let mut tls: Option<(u64, u64, u64, u64)> = None; // (start, data end, end, align)
    for section in file.sections() {
        let raw = section.macho_section();
        let flags = raw.flags(endian).0;
        let typ = macho::SectionType((flags & macho::SECTION_TYPE) as u8);
        let segname = section.segment_name().ok().flatten().unwrap_or("");
        let name = format!("{segname},{}", section.name().unwrap_or(""));
        let (addr, size) = (raw.addr(endian), raw.size(endian));
        let zerofill = matches!(
            typ,
            macho::S_ZEROFILL | macho::S_GB_ZEROFILL | macho::S_THREAD_LOCAL_ZEROFILL
        );
        let contents = if zerofill {
            Vec::new()
        } else {
            section
                .data()
                .map_err(|e| malformed(path, format!("section {name}: {e}")))?
                .to_vec()
        };
        if matches!(
            typ,
            macho::S_THREAD_LOCAL_REGULAR | macho::S_THREAD_LOCAL_ZEROFILL
        ) {
            let align = 1u64 << raw.align(endian).min(63);
            let end = addr.saturating_add(size);
            let data_end = if zerofill { addr } else { end };
            tls = Some(match tls {
                None => (addr, data_end, end, align),
                Some((s, d, e, a)) => (s.min(addr), d.max(data_end), e.max(end), a.max(align)),
            });
        }
        image.sections.push(SectionData {
            name: name.clone(),
            vaddr: addr,
            bytes: contents,
            size,
            executable: flags
                & (macho::S_ATTR_PURE_INSTRUCTIONS.0 | macho::S_ATTR_SOME_INSTRUCTIONS.0)
                != 0,
            writable: segname.starts_with("__DATA"),
        });
        sects.push(Sect {
            name,
            addr,
            size,
            typ,
        });
    }
    image.tls = tls.map(|(start, data_end, end, align)| TlsSegment {
        vaddr: start,
        filesz: data_end.saturating_sub(start),
        memsz: end - start,
        align,
    });

    // Symbols.
    let symtab = file.macho_symbol_table();
    let nlists = symtab.symbols();
    image.has_symtab = !nlists.is_empty();
    let mut names: Vec<String> = Vec::with_capacity(nlists.len());
    let mut defined: Vec<(u64, usize)> = Vec::new(); // (vaddr, index in image.symbols)
    let mut debug_map = DebugMap::default();
    for (i, nlist) in nlists.iter().enumerate() {
        let name = nlist
            .name(endian, symtab.strings())
            .map_err(|e| malformed(path, format!("symbol {i}: name: {e}")))?;
        let name = String::from_utf8_lossy(name).into_owned();
        names.push(name.clone());
        let n_type = nlist.n_type().0;
        if n_type & macho::N_STAB != 0 {
            debug_map.read(n_type, &name, nlist.n_value(endian));
            continue;
        }
        let typ = n_type & macho::N_TYPE;
        let desc = nlist.n_desc(endian).0;
        let ext = n_type & macho::N_EXT.0 != 0;
        let binding = match (ext, desc & (macho::N_WEAK_DEF.0 | macho::N_WEAK_REF.0) != 0) {
            (false, _) => Binding::Local,
            (true, true) => Binding::Weak,
            (true, false) => Binding::Global,
        };
        let is_defined = typ == macho::N_SECT.0;
        let sect = is_defined
            .then(|| sects.get((nlist.n_sect() as usize).wrapping_sub(1)))
            .flatten();
        let kind = match sect {
            Some(s) if s.typ == macho::S_THREAD_LOCAL_VARIABLES => SymbolKind::Tls,
            Some(s)
                if image
                    .sections
                    .iter()
                    .any(|d| d.name == s.name && d.executable) =>
            {
                SymbolKind::Function
            }
            Some(_) => SymbolKind::Object,
            None => SymbolKind::NoType,
        };
        let vaddr = if is_defined { nlist.n_value(endian) } else { 0 };
        if is_defined {
            defined.push((vaddr, image.symbols.len()));
        }
        image.symbols.push(ImageSymbol {
            name,
            vaddr,
            size: 0,
            kind,
            binding,
            tu: None,
            section: sect.map(|s| s.name.clone()),
            defined: is_defined,
            // Mach-O has one table: externals are the dynamic ones.
            dynamic: ext,
            default_version: true,
            visibility: if n_type & macho::N_PEXT.0 != 0 {
                Visibility::Hidden
            } else {
                Visibility::Default
            },
        });
    }
    // The debug map's translation units: each local goes to the unit whose N_FUN /
    // N_STSYM / N_LCSYM stab names it at its address.
    for sym in image.symbols.iter_mut() {
        if sym.defined && sym.binding == Binding::Local {
            sym.tu = debug_map
                .symbols
                .get(&(sym.name.clone(), sym.vaddr))
                .map(|&tu| crate::TranslationUnitId(tu));
        }
    }
    image.translation_units = debug_map.units;
    // Mach-O symbols have no size: up to the next symbol of the section, or its end.
    defined.sort_unstable();
    for (k, &(vaddr, idx)) in defined.iter().enumerate() {
        let section_end = sects
            .iter()
            .find(|s| s.addr <= vaddr && vaddr - s.addr < s.size)
            .map_or(vaddr, |s| s.addr.saturating_add(s.size));
        let next = defined[k + 1..]
            .iter()
            .map(|&(v, _)| v)
            .find(|&v| v > vaddr)
            .unwrap_or(section_end);
        image.symbols[idx].size = next.min(section_end).saturating_sub(vaddr);
    }

    // Slots and stubs named by the indirect symbol table.
    let mut slotted = std::collections::HashSet::new();
    for section in file.sections() {
        let raw = section.macho_section();
        let typ = macho::SectionType((raw.flags(endian).0 & macho::SECTION_TYPE) as u8);
        let (kind, entry) = match typ {
            macho::S_NON_LAZY_SYMBOL_POINTERS => (Some(GotSlotKind::GlobDat), 8),
            macho::S_LAZY_SYMBOL_POINTERS => (Some(GotSlotKind::JumpSlot), 8),
            macho::S_THREAD_LOCAL_VARIABLE_POINTERS => (Some(GotSlotKind::ThreadLocalPointer), 8),
            macho::S_SYMBOL_STUBS => (None, u64::from(raw.reserved2(endian))),
            _ => continue,
        };
        let entries = raw
            .indirect_symbols(endian, indirect)
            .map_err(|e| malformed(path, format!("indirect symbols of a section: {e}")))?;
        let addr = raw.addr(endian);
        let data = section.data().unwrap_or(&[]);
        for (i, e) in entries.iter().enumerate() {
            let at = addr.wrapping_add(i as u64 * entry);
            let index = e.get(endian).0;
            let name =
                if index & (macho::INDIRECT_SYMBOL_LOCAL.0 | macho::INDIRECT_SYMBOL_ABS.0) != 0 {
                    // A slot of a local symbol: the (rebased) address it holds says which.
                    let word = data.get(i * 8..i * 8 + 8).map(|w| {
                        u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
                    });
                    match word.and_then(|w| defined.binary_search_by_key(&w, |&(v, _)| v).ok()) {
                        Some(k) => image.symbols[defined[k].1].name.clone(),
                        None => continue,
                    }
                } else {
                    match names.get(index as usize) {
                        Some(n) => n.clone(),
                        None => continue,
                    }
                };
            match kind {
                Some(kind) => {
                    slotted.insert(at);
                    image.got_slots.push(GotSlot {
                        symbol: name,
                        vaddr: at,
                        kind,
                        addend: 0,
                    });
                }
                None => image.plt_entries.push((name, at)),
            }
        }
    }

    // Binds and rebases.
    if let Some(d) = dyld_info {
        let seg = |index: u8, offset: u64, what: &str| {
            segments
                .get(index as usize)
                .map(|s| s.wrapping_add(offset))
                .ok_or_else(|| {
                    malformed(
                        path,
                        format!("{what} in segment {index}, which does not exist"),
                    )
                })
        };
        let mut binds = d
            .binds(endian, bytes, 8)
            .map_err(|e| malformed(path, format!("bind opcodes: {e}")))?;
        while let Some(b) = binds
            .next()
            .map_err(|e| malformed(path, format!("bind opcodes: {e}")))?
        {
            let at = seg(b.segment_index, b.segment_offset, "a bind")?;
            if slotted.contains(&at) {
                continue;
            }
            image.got_slots.push(GotSlot {
                symbol: String::from_utf8_lossy(b.symbol).into_owned(),
                vaddr: at,
                kind: GotSlotKind::Abs64,
                addend: b.addend,
            });
        }
        let mut rebases = d
            .rebases(endian, bytes, 8)
            .map_err(|e| malformed(path, format!("rebase opcodes: {e}")))?;
        while let Some(r) = rebases
            .next()
            .map_err(|e| malformed(path, format!("rebase opcodes: {e}")))?
        {
            let at = seg(r.segment_index, r.segment_offset, "a rebase")?;
            if let Some(word) = image.bytes_at(at, 8) {
                let value = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
                image.relative_relocs.push((at, value as i64));
            }
        }
        image.relative_relocs.sort_unstable();
    }
    Ok(image)
}
