//! DWARF: compile units, producers, line tables keyed by relocated section, and where
//! variables are declared.
//!
//! In a relocatable object the DWARF is not final: every address in `.debug_info` and
//! `.debug_line` is 0 plus a relocation against a section symbol, and every string offset
//! (`DW_FORM_strp`, `DW_FORM_line_strp`) is 0 plus a relocation against `.debug_str` or
//! `.debug_line_str`. The sections are therefore read through gimli's [`RelocateReader`] with
//! the object's `.rela.debug_*` tables applied. Addresses relocated against a section are
//! given a *synthetic* value `section_index << 40 | offset`, so that the line sequence of each
//! `-ffunction-sections` function (all of which start at 0) stays distinct and can be mapped
//! back to its atom.

use std::borrow::Cow;
// FxHash: these maps hold the symbols and sections of one object, keyed by names and
// small integers that no adversary chooses; SipHash showed up in profiles of the save path.
use rustc_hash::FxHashMap as HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use gimli::{EndianSlice, Reader, RelocateReader, RunTimeEndian, SectionId};
use object::elf;

use crate::image::CompileUnit;
use crate::{AtomId, AtomOffset, Object, SourceLine, SymbolDef, SymbolId, SymbolKind};

pub(crate) type File<'data> = object::read::elf::ElfFile64<'data, object::Endianness, &'data [u8]>;

/// Bits of a synthetic address that hold the offset inside a section.
const SECTION_SHIFT: u32 = 40;
const OFFSET_MASK: u64 = (1 << SECTION_SHIFT) - 1;

/// What one relocation of a debug section resolves to: the section its symbol is defined in
/// (if any) and the symbol's value plus the addend.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DebugRelocTarget {
    pub section: Option<usize>,
    pub value: u64,
}

/// The relocations of one debug section, by offset inside it: a sorted table, not a hash
/// map. A 2,000-function object has tens of thousands of debug relocations, all read at
/// parse time and most never looked up (DWARF is read on demand); pushing them is cheap
/// where hashing each was a tenth of a save's cost.
#[derive(Clone, Debug, Default)]
pub(crate) struct DebugRelocs {
    entries: Vec<(u64, DebugRelocTarget)>,
    /// Some entry was pushed at or before the offset of the one before it (noted as they
    /// come: checking the whole table afterwards cost as much as pushing it).
    unsorted: bool,
}

impl DebugRelocs {
    /// Room for `additional` more relocations.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }

    /// Add a relocation; call [`DebugRelocs::finish`] before any lookup.
    pub(crate) fn push(&mut self, offset: u64, target: DebugRelocTarget) {
        if self.entries.last().is_some_and(|&(last, _)| last >= offset) {
            self.unsorted = true;
        }
        self.entries.push((offset, target));
    }

    /// Sort by offset (RELA tables usually are already). Of several relocations at one
    /// offset the last one counts, as it did when they were inserted into a map.
    pub(crate) fn finish(&mut self) {
        if self.unsorted {
            self.unsorted = false;
            self.entries.sort_by_key(|&(offset, _)| offset);
            self.entries.reverse();
            self.entries.dedup_by_key(|&mut (offset, _)| offset);
            self.entries.reverse();
        }
    }

    pub(crate) fn get(&self, offset: u64) -> Option<&DebugRelocTarget> {
        let i = self
            .entries
            .binary_search_by_key(&offset, |&(o, _)| o)
            .ok()?;
        Some(&self.entries[i].1)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(u64, DebugRelocTarget)> + '_ {
        self.entries.iter()
    }
}

/// Applies a debug section's relocations while gimli reads it.
#[derive(Clone, Copy)]
pub(crate) struct Relocator<'a> {
    relocs: Option<&'a DebugRelocs>,
}

impl fmt::Debug for Relocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Relocator({} relocations)",
            self.relocs.map_or(0, |r| r.len())
        )
    }
}

impl gimli::Relocate<usize> for Relocator<'_> {
    fn relocate_address(&self, offset: usize, value: u64) -> gimli::Result<u64> {
        match self.relocs.and_then(|r| r.get(offset as u64)) {
            Some(DebugRelocTarget {
                section: Some(section),
                value,
            }) => Ok(((*section as u64) << SECTION_SHIFT).wrapping_add(*value)),
            Some(DebugRelocTarget {
                section: None,
                value,
            }) => Ok(*value),
            None => Ok(value),
        }
    }

    fn relocate_offset(&self, offset: usize, value: usize) -> gimli::Result<usize> {
        match self.relocs.and_then(|r| r.get(offset as u64)) {
            // An offset into another debug section: the symbol is that section's symbol
            // (value 0), so symbol value + addend is the offset.
            Some(target) => Ok(target.value as usize),
            None => Ok(value),
        }
    }
}

pub(crate) type DwarfReader<'a> = RelocateReader<EndianSlice<'a, RunTimeEndian>, Relocator<'a>>;

/// The section index and contents of the debug sections gimli needs, decompressed.
pub(crate) struct LoadedSections<'data> {
    pub(crate) sections: Vec<(SectionId, usize, Cow<'data, [u8]>)>,
    pub(crate) endian: RunTimeEndian,
}

const WANTED: [SectionId; 9] = [
    SectionId::DebugAbbrev,
    SectionId::DebugInfo,
    SectionId::DebugLine,
    SectionId::DebugLineStr,
    SectionId::DebugStr,
    SectionId::DebugStrOffsets,
    SectionId::DebugAddr,
    SectionId::DebugRngLists,
    SectionId::DebugRanges,
];

/// One pass over the section table: an object built with -ffunction-sections has a section
/// per function, and a lookup by name per DWARF section would scan them all each time.
pub(crate) fn load_sections<'data>(file: &File<'data>) -> Result<LoadedSections<'data>, String> {
    let mut sections = Vec::new();
    for section in object::Object::sections(file) {
        let Ok(name) = object::ObjectSection::name(&section) else {
            continue;
        };
        let Some(id) = WANTED.iter().copied().find(|id| id.name() == name) else {
            continue;
        };
        let data = uncompressed(&section).map_err(|e| format!("{name}: {e}"))?;
        sections.push((id, object::ObjectSection::index(&section).0, data));
    }
    let endian = if object::Object::is_little_endian(file) {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    Ok(LoadedSections { sections, endian })
}

/// [`load_sections`] of a relocatable object whose sections `candidates` (index, header
/// and name: those whose names start with `.debug_`) a caller found while reading every
/// section, from their headers: what `object`'s sections give, as [`uncompressed`] reads
/// them (a `.zdebug_` name is no DWARF section gimli is given, so only `SHF_COMPRESSED`
/// matters).
pub(crate) fn load_object_sections<'data, E: object::Endian>(
    endian: E,
    file: &'data [u8],
    candidates: &[(usize, &elf::SectionHeader64<E>, &'data [u8])],
) -> Result<LoadedSections<'data>, String> {
    use object::read::elf::{CompressionHeader, SectionHeader};
    let mut sections = Vec::new();
    for &(index, header, name) in candidates {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let Some(id) = WANTED.iter().copied().find(|id| id.name() == name) else {
            continue;
        };
        let range = match header
            .compression(endian, file)
            .map_err(|e| format!("{name}: {e}"))?
        {
            Some((compression, offset, compressed_size)) => {
                let format = match compression.ch_type(endian) {
                    elf::ELFCOMPRESS_ZLIB => object::CompressionFormat::Zlib,
                    elf::ELFCOMPRESS_ZSTD => object::CompressionFormat::Zstandard,
                    _ => return Err(format!("{name}: Unsupported ELF compression type")),
                };
                object::CompressedFileRange {
                    format,
                    offset,
                    compressed_size,
                    uncompressed_size: compression.ch_size(endian),
                }
            }
            None => object::CompressedFileRange::none(header.file_range(endian)),
        };
        let data = range
            .data(file)
            .map_err(|e| e.to_string())
            .and_then(|compressed| decompressed(compressed))
            .map_err(|e| format!("{name}: {e}"))?;
        sections.push((id, index, data));
    }
    Ok(LoadedSections {
        sections,
        endian: if endian.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        },
    })
}

/// Deflate cannot expand data by more than this factor (zlib's limit is 1032:1); zstd can in
/// theory, but debug sections compress by 3 to 10 times.
const MAX_EXPANSION: u64 = 1032;

/// A section's contents, decompressed if `SHF_COMPRESSED`. The decompressed size is a field of
/// the compression header, and `object` reserves that many bytes before it inflates anything:
/// a size no compressed stream of this length can produce is refused before any allocation.
fn uncompressed<'data>(
    section: &impl object::ObjectSection<'data>,
) -> Result<Cow<'data, [u8]>, String> {
    decompressed(section.compressed_data().map_err(|e| e.to_string())?)
}

/// [`uncompressed`] once the compressed range is read.
fn decompressed(compressed: object::CompressedData<'_>) -> Result<Cow<'_, [u8]>, String> {
    let bound = (compressed.data.len() as u64)
        .saturating_mul(MAX_EXPANSION)
        .saturating_add(4096);
    if compressed.format != object::CompressionFormat::None && compressed.uncompressed_size > bound
    {
        return Err(format!(
            "the compression header claims {} bytes from {} compressed bytes",
            compressed.uncompressed_size,
            compressed.data.len()
        ));
    }
    compressed.decompress().map_err(|e| e.to_string())
}

pub(crate) fn make_dwarf<'a>(
    loaded: &'a LoadedSections<'_>,
    relocs: &'a HashMap<usize, DebugRelocs>,
) -> gimli::Result<gimli::Dwarf<DwarfReader<'a>>> {
    gimli::Dwarf::load(|id| -> gimli::Result<DwarfReader<'a>> {
        let (data, index): (&[u8], Option<usize>) =
            match loaded.sections.iter().find(|(sid, _, _)| *sid == id) {
                Some((_, index, data)) => (data, Some(*index)),
                None => (&[], None),
            };
        let relocator = Relocator {
            relocs: index.and_then(|i| relocs.get(&i)),
        };
        Ok(RelocateReader::new(
            EndianSlice::new(data, loaded.endian),
            relocator,
        ))
    })
}

pub(crate) fn reader_string(reader: &DwarfReader<'_>) -> String {
    match reader.to_slice() {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

pub(crate) fn attr_string(
    dwarf: &gimli::Dwarf<DwarfReader<'_>>,
    unit: &gimli::Unit<DwarfReader<'_>>,
    value: gimli::AttributeValue<DwarfReader<'_>>,
) -> Option<String> {
    dwarf
        .attr_string(unit, value)
        .ok()
        .map(|r| reader_string(&r))
}

/// Remove `.` components and resolve `..` lexically, so that `/src/./a/../b.c` reads
/// `/src/b.c`. Leading `..` of a relative path are kept.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let can_pop = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if can_pop {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The path of a line-table file entry: its name, joined to its include directory and the
/// compilation directory when relative.
pub(crate) fn file_path(
    dwarf: &gimli::Dwarf<DwarfReader<'_>>,
    unit: &gimli::Unit<DwarfReader<'_>>,
    header: &gimli::LineProgramHeader<DwarfReader<'_>>,
    file: &gimli::FileEntry<DwarfReader<'_>>,
    comp_dir: Option<&Path>,
) -> Option<PathBuf> {
    let name = PathBuf::from(attr_string(dwarf, unit, file.path_name())?);
    let mut path = if name.is_absolute() {
        name
    } else {
        let dir = file
            .directory(header)
            .and_then(|dir| attr_string(dwarf, unit, dir))
            .map(PathBuf::from);
        match dir {
            Some(dir) if dir.is_absolute() => dir.join(name),
            // Directory 0 is the compilation directory itself (DWARF 5 spells it out, gimli
            // gives `DW_AT_comp_dir` for it in DWARF 4): joined to the comp_dir again, a
            // relative one (`-ffile-prefix-map=$PWD=.` gives `./src`) would double.
            Some(dir) if file.directory_index() == 0 => dir.join(name),
            Some(dir) => match comp_dir {
                Some(comp_dir) => comp_dir.join(dir).join(name),
                None => dir.join(name),
            },
            None => match comp_dir {
                Some(comp_dir) => comp_dir.join(name),
                None => name,
            },
        }
    };
    path = normalize(&path);
    Some(path)
}

/// Read what every save needs from the object's DWARF: producer, compile-unit name and
/// directory, and the scopes of function-local statics (the diff matches `calls.0` by its
/// function). The rest is read on demand from the sections kept in [`Object::dwarf`]: line
/// rows of an atom when a diagnostic or a placed body asks ([`Object::lines_of`]), where
/// variables are declared ([`Object::decl_line`]), type layouts and signatures for the ABI
/// checks. DWARF problems do not fail the parse: they become a warning, and the object then
/// has no line rows and no declaration lines.
pub(crate) fn read_object_dwarf(
    loaded: Result<LoadedSections<'_>, String>,
    shared: Option<&std::sync::Arc<Vec<u8>>>,
    relocs: HashMap<usize, DebugRelocs>,
    section_atom: Vec<Option<AtomId>>,
    object: &mut Object,
) {
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(message) => {
            object.warnings.push(format!(
                "DWARF could not be read, no line numbers: {message}"
            ));
            return;
        }
    };
    if !loaded
        .sections
        .iter()
        .any(|(id, _, _)| *id == SectionId::DebugInfo)
    {
        return;
    }
    let read = match make_dwarf(&loaded, &relocs) {
        Ok(dwarf) => read_units(&dwarf, &loaded, &relocs, &section_atom, object),
        Err(e) => Err(e.to_string()),
    };
    if let Err(message) = &read {
        object.warnings.push(format!(
            "DWARF could not be read, no line numbers: {message}"
        ));
    }
    // Kept for what is read on demand; after an error only types are (as before lines
    // were read lazily: a unit that could not be walked gave no lines at all).
    object.dwarf = Some(std::sync::Arc::new(crate::types::ObjectDwarf::keep(
        shared,
        &loaded,
        relocs,
        section_atom,
        object.atoms.len(),
        read.is_ok(),
    )));
}

/// The eager part of [`read_object_dwarf`], unit by unit.
fn read_units(
    dwarf: &gimli::Dwarf<DwarfReader<'_>>,
    loaded: &LoadedSections<'_>,
    relocs: &HashMap<usize, DebugRelocs>,
    section_atom: &[Option<AtomId>],
    object: &mut Object,
) -> Result<(), String> {
    let atom_of_address = |address: u64| atom_of_address(section_atom, address);
    // Where `.debug_info` refers to a section holding a local variable (a `DW_OP_addr`
    // location, relocated against it): only the DIE subtrees around those places can hold
    // a function-local static, so only they are walked, not every function's DIEs. Scopes
    // matter for local symbols only (`Object::match_name`, the diff's identities): a C++
    // static of an inline function is a global, matched by its mangled name.
    let local_variable =
        |sym: &crate::Symbol| sym.binding == crate::Binding::Local && is_variable_symbol(sym);
    // Most objects have no local variable at all (no file or function static): then no
    // atom holds one, and neither table below is worth building.
    let any_local_variable = object.symbols.iter().any(local_variable);
    let holds_variable: Vec<bool> = if any_local_variable {
        object
            .atoms
            .iter()
            .map(|a| {
                a.symbols
                    .iter()
                    .any(|&id| local_variable(&object.symbols[id.0 as usize]))
            })
            .collect()
    } else {
        Vec::new()
    };
    let info_index = loaded
        .sections
        .iter()
        .find(|(id, _, _)| *id == SectionId::DebugInfo)
        .map(|(_, index, _)| *index);
    let variable_refs: Vec<u64> = info_index
        .filter(|_| any_local_variable)
        .and_then(|index| relocs.get(&index))
        .map(|r| {
            r.iter()
                .filter(|(_, t)| {
                    t.section
                        .and_then(|s| *section_atom.get(s)?)
                        .is_some_and(|atom| holds_variable[atom.0 as usize])
                })
                .map(|&(offset, _)| offset)
                .collect()
        })
        .unwrap_or_default();

    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| format!(".debug_info: {e}"))? {
        let unit = dwarf
            .unit(header)
            .map_err(|e| format!(".debug_info unit: {e}"))?;
        if object.cu_name.is_none() {
            object.cu_name = unit.name.as_ref().map(reader_string);
            object.cu_comp_dir = unit.comp_dir.as_ref().map(reader_string);
        }
        let mut statics = Vec::new();
        let producer = walk_around(dwarf, &unit, &variable_refs, &mut statics)?;
        if object.producer.is_none() {
            object.producer = producer;
        }
        for (address, scope) in statics {
            if let Some((atom, offset)) = atom_of_address(address) {
                record_static_scope(object, atom, offset, scope);
            }
        }
    }
    Ok(())
}

/// The root's `DW_AT_producer`, and the function-local statics (as [`walk_dies`] finds
/// them) of the top-level DIEs of `unit` that contain one of the `.debug_info` offsets
/// `refs` (sorted). The other top-level DIEs are stepped over (`DW_AT_sibling`), not read.
fn walk_around(
    dwarf: &gimli::Dwarf<DwarfReader<'_>>,
    unit: &gimli::Unit<DwarfReader<'_>>,
    refs: &[u64],
    statics: &mut Vec<(u64, String)>,
) -> Result<Option<String>, String> {
    let mut entries = unit.entries();
    let Some(root) = entries
        .next_dfs()
        .map_err(|e| format!(".debug_info: {e}"))?
    else {
        return Ok(None);
    };
    let producer =
        if root.tag() == gimli::DW_TAG_compile_unit || root.tag() == gimli::DW_TAG_partial_unit {
            root.attr_value(gimli::DW_AT_producer)
                .and_then(|v| attr_string(dwarf, unit, v))
        } else {
            None
        };
    let section_offset = |offset: gimli::UnitOffset| {
        offset
            .to_debug_info_offset(&unit.header)
            .map(|o| o.0 as u64)
    };
    let unit_start = unit
        .header
        .offset()
        .to_debug_info_offset(&unit.header)
        .map(|o| o.0 as u64);
    let unit_end = unit_start.map(|s| s + unit.header.length_including_self() as u64);
    let (Some(unit_start), Some(unit_end)) = (unit_start, unit_end) else {
        return Ok(producer);
    };
    let first = refs.partition_point(|&r| r < unit_start);
    if refs.get(first).is_none_or(|&r| r >= unit_end) || !root.has_children() {
        return Ok(producer);
    }
    // The top-level DIEs, each with the offset it starts at.
    let mut tops: Vec<gimli::UnitOffset> = Vec::new();
    if entries
        .next_entry()
        .map_err(|e| format!(".debug_info: {e}"))?
    {
        while let Some(current) = entries.current() {
            tops.push(current.offset());
            entries
                .next_sibling()
                .map_err(|e| format!(".debug_info: {e}"))?;
        }
    }
    for (i, &top) in tops.iter().enumerate() {
        let Some(start) = section_offset(top) else {
            continue;
        };
        let end = match tops.get(i + 1) {
            Some(&next) => section_offset(next).unwrap_or(unit_end),
            None => unit_end,
        };
        let at = refs.partition_point(|&r| r < start);
        if refs.get(at).is_some_and(|&r| r < end) {
            walk_dies(dwarf, unit, Some(top), statics, None, None, None)?;
        }
    }
    Ok(producer)
}

/// The atom and offset of an address the relocated DWARF holds (`section << SECTION_SHIFT |
/// offset`, see `SECTION_SHIFT`), if the section is an atom's.
pub(crate) fn atom_of_address(
    section_atom: &[Option<AtomId>],
    address: u64,
) -> Option<(AtomId, u64)> {
    let section = (address >> SECTION_SHIFT) as usize;
    let atom = (*section_atom.get(section)?)?;
    Some((atom, address & OFFSET_MASK))
}

/// Every atom's line rows, sorted by offset, from one pass over the line programs of all
/// units: what [`Object::lines_of`] falls back to when the sequence of an atom cannot be read
/// on its own (see `lines.rs`).
pub(crate) fn all_line_rows(
    dwarf: &gimli::Dwarf<DwarfReader<'_>>,
    section_atom: &[Option<AtomId>],
    atoms: usize,
) -> Result<Vec<Vec<(AtomOffset, SourceLine)>>, String> {
    let mut lines = vec![Vec::new(); atoms];
    let atom_of_address = |address: u64| atom_of_address(section_atom, address);
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| format!(".debug_info: {e}"))? {
        let unit = dwarf
            .unit(header)
            .map_err(|e| format!(".debug_info unit: {e}"))?;
        let comp_dir = unit.comp_dir.as_ref().map(reader_string);
        let comp_dir_path = comp_dir.as_deref().map(Path::new);
        // Line rows, mapped to atoms through the relocated sequence addresses.
        let Some(program) = unit.line_program.clone() else {
            continue;
        };
        let mut paths: HashMap<u64, Option<PathBuf>> = HashMap::default();
        let mut rows = program.rows();
        while let Some((header, row)) = rows.next_row().map_err(|e| format!(".debug_line: {e}"))? {
            if row.end_sequence() {
                continue;
            }
            let Some(line) = row.line() else { continue };
            let Some((atom, offset)) = atom_of_address(row.address()) else {
                continue;
            };
            let path = paths
                .entry(row.file_index())
                .or_insert_with(|| {
                    let file = row.file(header)?;
                    file_path(dwarf, &unit, header, file, comp_dir_path)
                })
                .clone();
            let Some(file) = path else { continue };
            let column = match row.column() {
                gimli::ColumnType::LeftEdge => 0,
                gimli::ColumnType::Column(c) => u32::try_from(c.get()).unwrap_or(u32::MAX),
            };
            if let Some(rows) = lines.get_mut(atom.0 as usize) {
                rows.push((
                    AtomOffset(offset),
                    SourceLine {
                        file,
                        line: u32::try_from(line.get()).unwrap_or(u32::MAX),
                        column,
                    },
                ));
            }
        }
    }
    for rows in &mut lines {
        // Stable: rows at the same offset keep the line program's order, and `line_of`
        // takes the last of them, as a debugger does.
        rows.sort_by_key(|(offset, _)| *offset);
    }
    Ok(lines)
}

/// Where each variable symbol of `object` is declared (indexed by [`SymbolId`]), from a walk
/// of every DIE: what [`Object::decl_line`] reads on its first call.
pub(crate) fn decl_lines(
    dwarf: &gimli::Dwarf<DwarfReader<'_>>,
    section_atom: &[Option<AtomId>],
    object: &Object,
) -> Result<Vec<Option<SourceLine>>, String> {
    let mut out = vec![None; object.symbols.len()];
    let atom_of_address = |address: u64| atom_of_address(section_atom, address);
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| format!(".debug_info: {e}"))? {
        let unit = dwarf
            .unit(header)
            .map_err(|e| format!(".debug_info unit: {e}"))?;
        let comp_dir = unit.comp_dir.as_ref().map(reader_string);
        let mut statics = Vec::new();
        let mut decls = Vec::new();
        walk_dies(
            dwarf,
            &unit,
            None,
            &mut statics,
            Some(&mut decls),
            None,
            None,
        )?;
        let comp_dir_path = comp_dir.as_deref().map(Path::new);
        let mut decl_paths: HashMap<u64, Option<PathBuf>> = HashMap::default();
        let decls: Vec<(VarDecl, SourceLine)> = decls
            .into_iter()
            .filter_map(|decl| {
                let file = decl_paths
                    .entry(decl.file)
                    .or_insert_with(|| decl_file_path(dwarf, &unit, decl.file, comp_dir_path))
                    .clone()?;
                let line = SourceLine {
                    file,
                    line: decl.line,
                    column: decl.column,
                };
                Some((decl, line))
            })
            .collect();
        record_decl_lines(object, &mut out, decls, &atom_of_address);
    }
    Ok(out)
}

/// The image's function starts (sorted) and where [`walk_dies`] lists the external
/// functions at none of them.
type Unnamed<'u> = (&'u [u64], &'u mut Vec<(String, u64)>);

/// Walk every DIE of a unit once: returns the root's `DW_AT_producer`, and appends to
/// `statics` each function-local static variable as (address of its `DW_OP_addr` location,
/// name of the enclosing `DW_TAG_subprogram`). A subprogram without a name of its own (an
/// out-of-line instance) takes it from its `DW_AT_abstract_origin` / `DW_AT_specification`.
/// With `decls`, also appends the declaration position of every variable definition that is
/// not an automatic variable (see [`VarDecl`]); with `variables`, the address of every
/// variable with a static `DW_OP_addr` location; with `unnamed` (the image's function
/// starts, sorted), each external function whose `DW_AT_low_pc` is none of them (see
/// [`crate::CompileUnit::unnamed_functions`]).
#[allow(clippy::too_many_arguments)]
fn walk_dies(
    dwarf: &gimli::Dwarf<DwarfReader<'_>>,
    unit: &gimli::Unit<DwarfReader<'_>>,
    subtree: Option<gimli::UnitOffset>,
    statics: &mut Vec<(u64, String)>,
    mut decls: Option<&mut Vec<VarDecl>>,
    mut variables: Option<&mut Vec<u64>>,
    mut unnamed: Option<Unnamed<'_>>,
) -> Result<Option<String>, String> {
    let mut producer = None;
    let mut entries = match subtree {
        Some(offset) => unit
            .entries_at_offset(offset)
            .map_err(|e| format!(".debug_info: {e}"))?,
        None => unit.entries(),
    };
    let mut first = true;
    // (depth, name) of the enclosing subprograms.
    let mut scopes: Vec<(isize, Option<String>)> = Vec::new();
    while let Some(entry) = entries
        .next_dfs()
        .map_err(|e| format!(".debug_info: {e}"))?
    {
        let depth = entry.depth();
        // Depths count from the subtree's root: anything at its depth or above after it
        // is outside.
        if subtree.is_some() && !first && depth <= 0 {
            break;
        }
        first = false;
        while scopes.last().is_some_and(|(d, _)| *d >= depth) {
            scopes.pop();
        }
        let tag = entry.tag();
        if tag == gimli::DW_TAG_compile_unit || tag == gimli::DW_TAG_partial_unit {
            if producer.is_none() {
                producer = entry
                    .attr_value(gimli::DW_AT_producer)
                    .and_then(|v| attr_string(dwarf, unit, v));
            }
        } else if tag == gimli::DW_TAG_subprogram {
            let own_name = |die: &gimli::DebuggingInformationEntry<DwarfReader<'_>>| {
                die.attr_value(gimli::DW_AT_name)
                    .or_else(|| die.attr_value(gimli::DW_AT_linkage_name))
                    .and_then(|v| attr_string(dwarf, unit, v))
            };
            let mut name = own_name(entry);
            let origin = || {
                let origin = entry
                    .attr_value(gimli::DW_AT_abstract_origin)
                    .or_else(|| entry.attr_value(gimli::DW_AT_specification));
                match origin {
                    Some(gimli::AttributeValue::UnitRef(offset)) => unit.entry(offset).ok(),
                    _ => None,
                }
            };
            if name.is_none() {
                name = origin().and_then(|die| own_name(&die));
            }
            if let Some((starts, out)) = unnamed.as_mut() {
                // clang's DWARF 5 gives it as an index into `.debug_addr` (`DW_FORM_addrx`),
                // gcc's as the address itself: `attr_address` reads both.
                let low = entry
                    .attr_value(gimli::DW_AT_low_pc)
                    .and_then(|v| dwarf.attr_address(unit, v).ok().flatten());
                if let Some(low) = low {
                    if low != 0 && starts.binary_search(&low).is_err() {
                        // Rare (an overridden weak default): only then are its external flag
                        // and linkage name looked for, on it or its declaration.
                        let declaration = origin();
                        let dies = std::iter::once(entry).chain(declaration.as_ref());
                        let external = dies.clone().any(|die| {
                            matches!(
                                die.attr_value(gimli::DW_AT_external),
                                Some(gimli::AttributeValue::Flag(true))
                            )
                        });
                        let linkage = dies
                            .filter_map(|die| die.attr_value(gimli::DW_AT_linkage_name))
                            .find_map(|v| attr_string(dwarf, unit, v))
                            .or_else(|| name.clone());
                        if let (true, Some(linkage)) = (external, linkage) {
                            out.push((linkage, low));
                        }
                    }
                }
            }
            scopes.push((depth, name));
        } else if tag == gimli::DW_TAG_variable {
            let scope = scopes.last().map(|(_, name)| name.clone());
            let storage = static_storage(entry, unit);
            if let (Some(Some(scope)), Some(StaticStorage::Address(address))) = (&scope, storage) {
                statics.push((address, scope.clone()));
            }
            if let (Some(variables), Some(StaticStorage::Address(address))) =
                (variables.as_deref_mut(), storage)
            {
                variables.push(address);
            }
            if let Some(decls) = decls.as_deref_mut() {
                if let Some(decl) = variable_decl(dwarf, unit, entry, scope, storage) {
                    decls.push(decl);
                }
            }
        }
    }
    Ok(producer)
}

/// How a variable DIE's `DW_AT_location` places it, when it has static storage.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StaticStorage {
    /// `DW_OP_addr`: the (relocated, synthetic) address of the variable.
    Address(u64),
    /// A constant offset followed by `DW_OP_form_tls_address` /
    /// `DW_OP_GNU_push_tls_address`: a thread-local variable. Its offset is relocated against
    /// the variable's own symbol (`R_X86_64_DTPOFF64`), which the reader does not apply to
    /// constants, so it is not an address to map back to an atom.
    ThreadLocal,
}

/// The static storage of a variable DIE, if its location is a static address or a
/// thread-local offset (not a frame or register location, not a location list).
pub(crate) fn static_storage(
    entry: &gimli::DebuggingInformationEntry<DwarfReader<'_>>,
    unit: &gimli::Unit<DwarfReader<'_>>,
) -> Option<StaticStorage> {
    let gimli::AttributeValue::Exprloc(expr) = entry.attr_value(gimli::DW_AT_location)? else {
        return None;
    };
    let mut ops = expr.0.clone();
    match gimli::Operation::parse(&mut ops, unit.encoding()).ok()? {
        gimli::Operation::Address { address } => Some(StaticStorage::Address(address)),
        gimli::Operation::UnsignedConstant { .. } | gimli::Operation::SignedConstant { .. } => {
            match gimli::Operation::parse(&mut ops, unit.encoding()).ok()? {
                gimli::Operation::TLS => Some(StaticStorage::ThreadLocal),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Where a variable with static storage is declared, as read from its `DW_TAG_variable`
/// DIE, before the file index is resolved.
#[derive(Clone, Debug)]
pub(crate) struct VarDecl {
    /// `DW_AT_name`.
    name: Option<String>,
    /// `DW_AT_linkage_name` (a C++ mangled name), which is then the symbol's name.
    linkage_name: Option<String>,
    /// For a variable declared inside a function, the function's name (`Some(None)` when
    /// the function's name is unknown); `None` at file (or namespace) level.
    scope: Option<Option<String>>,
    /// The variable's relocated synthetic address, when its location is a `DW_OP_addr`.
    address: Option<u64>,
    /// `DW_AT_decl_file`: an index into the unit's line-program file table.
    file: u64,
    line: u32,
    column: u32,
}

/// An unsigned attribute of `entry`, or of the DIE it completes (`DW_AT_specification`: a
/// definition whose declaration came first, or `DW_AT_abstract_origin`), which then holds
/// the attributes the definition has in common with it: gcc emits on the definition only
/// the declaration attributes that differ.
pub(crate) fn inherited_attr<'a>(
    unit: &gimli::Unit<DwarfReader<'a>>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader<'a>>,
    name: gimli::DwAt,
) -> Option<gimli::AttributeValue<DwarfReader<'a>>> {
    if let Some(value) = entry.attr_value(name) {
        return Some(value);
    }
    let origin = entry
        .attr_value(gimli::DW_AT_specification)
        .or_else(|| entry.attr_value(gimli::DW_AT_abstract_origin));
    match origin {
        Some(gimli::AttributeValue::UnitRef(offset)) => unit.entry(offset).ok()?.attr_value(name),
        _ => None,
    }
}

pub(crate) fn unsigned_value(value: gimli::AttributeValue<DwarfReader<'_>>) -> Option<u64> {
    match value {
        gimli::AttributeValue::FileIndex(index) => Some(index),
        other => other.udata_value(),
    }
}

/// The declaration of a variable DIE, for variables that have a symbol: definitions at file
/// level (globals, file statics, thread-locals, commons) and statics inside functions.
/// Declarations (`extern int x;`, `DW_AT_declaration`) are skipped: the defining DIE carries
/// the position of the definition. Automatic variables (no static storage) are skipped.
fn variable_decl<'a>(
    dwarf: &gimli::Dwarf<DwarfReader<'a>>,
    unit: &gimli::Unit<DwarfReader<'a>>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader<'a>>,
    scope: Option<Option<String>>,
    storage: Option<StaticStorage>,
) -> Option<VarDecl> {
    if let Some(gimli::AttributeValue::Flag(true)) = entry.attr_value(gimli::DW_AT_declaration) {
        return None;
    }
    if scope.is_some() && storage.is_none() {
        return None;
    }
    let line = unsigned_value(inherited_attr(unit, entry, gimli::DW_AT_decl_line)?)?;
    let line = u32::try_from(line).ok().filter(|&l| l > 0)?;
    let file = unsigned_value(inherited_attr(unit, entry, gimli::DW_AT_decl_file)?)?;
    let column = inherited_attr(unit, entry, gimli::DW_AT_decl_column)
        .and_then(unsigned_value)
        .map_or(0, |c| u32::try_from(c).unwrap_or(u32::MAX));
    let string = |at: gimli::DwAt| {
        inherited_attr(unit, entry, at).and_then(|value| attr_string(dwarf, unit, value))
    };
    Some(VarDecl {
        name: string(gimli::DW_AT_name),
        linkage_name: string(gimli::DW_AT_linkage_name)
            .or_else(|| string(gimli::DW_AT_MIPS_linkage_name)),
        scope,
        address: match storage {
            Some(StaticStorage::Address(address)) => Some(address),
            _ => None,
        },
        file,
        line,
        column,
    })
}

/// The path of a `DW_AT_decl_file` index, through the unit's line-program file table (the
/// same table the line rows use). Index 0 means "no file" before DWARF 5.
pub(crate) fn decl_file_path(
    dwarf: &gimli::Dwarf<DwarfReader<'_>>,
    unit: &gimli::Unit<DwarfReader<'_>>,
    index: u64,
    comp_dir: Option<&Path>,
) -> Option<PathBuf> {
    let header = unit.line_program.as_ref()?.header();
    if index == 0 && header.version() <= 4 {
        return None;
    }
    let file = header.file(index)?;
    file_path(dwarf, unit, header, file, comp_dir)
}

/// Whether a symbol can be a variable a `DW_TAG_variable` describes.
fn is_variable_symbol(sym: &crate::Symbol) -> bool {
    matches!(
        sym.kind,
        SymbolKind::Object | SymbolKind::Tls | SymbolKind::NoType
    ) && !crate::is_assembler_label(&sym.name)
        && !sym.name.is_empty()
}

/// The variable symbol defined at `offset` in `atom`.
fn variable_symbol_at(object: &Object, atom: AtomId, offset: u64) -> Option<SymbolId> {
    let atom = object.atoms.get(atom.0 as usize)?;
    atom.symbols.iter().copied().find(|&id| {
        let sym = &object.symbols[id.0 as usize];
        is_variable_symbol(sym)
            && matches!(sym.def, SymbolDef::Atom { offset: o, .. } if o.0 == offset)
    })
}

/// Give each declared variable's symbol its declaration line. A variable whose location is
/// an address is found at that address (exact even when names repeat); the others
/// (thread-locals, common symbols, whose location is relocated against the symbol itself)
/// by name: file-level variables by their symbol name, function-local statics by
/// [`Object::match_name`] (`tick/calls` for gcc's `calls.0`) or clang's `tick.calls`. A name
/// that several symbols answer to is left without a line rather than guessed.
fn record_decl_lines(
    object: &Object,
    out: &mut [Option<SourceLine>],
    decls: Vec<(VarDecl, SourceLine)>,
    atom_of_address: &dyn Fn(u64) -> Option<(AtomId, u64)>,
) {
    let set = |out: &mut [Option<SourceLine>], id: SymbolId, line: SourceLine| {
        if let Some(slot) = out.get_mut(id.0 as usize) {
            if slot.is_none() {
                *slot = Some(line);
            }
        }
    };
    let mut by_name: Vec<(VarDecl, SourceLine)> = Vec::new();
    for (decl, line) in decls {
        let at = decl
            .address
            .and_then(atom_of_address)
            .and_then(|(atom, offset)| variable_symbol_at(object, atom, offset));
        match at {
            Some(id) => set(out, id, line),
            None => by_name.push((decl, line)),
        }
    }
    if by_name.is_empty() {
        return;
    }
    // Symbol names and match names of the defined variables without a line yet.
    let mut names: HashMap<String, Vec<SymbolId>> = HashMap::default();
    for i in 0..object.symbols.len() {
        let id = SymbolId(i as u32);
        let sym = &object.symbols[i];
        if !is_variable_symbol(sym)
            || matches!(sym.def, SymbolDef::Undefined | SymbolDef::Other)
            || out.get(i).is_some_and(Option::is_some)
        {
            continue;
        }
        names.entry(sym.name.to_string()).or_default().push(id);
        let match_name = object.match_name(id);
        if match_name != sym.name {
            names.entry(match_name).or_default().push(id);
        }
    }
    for (decl, line) in by_name {
        let keys: Vec<String> = match &decl.scope {
            None => decl
                .linkage_name
                .iter()
                .chain(decl.name.iter())
                .cloned()
                .collect(),
            Some(Some(scope)) => match &decl.name {
                Some(name) => vec![format!("{scope}/{name}"), format!("{scope}.{name}")],
                None => Vec::new(),
            },
            Some(None) => Vec::new(),
        };
        let found = keys
            .iter()
            .find_map(|key| match names.get(key)?.as_slice() {
                [id] => Some(*id),
                _ => None,
            });
        if let Some(id) = found {
            set(out, id, line);
        }
    }
}

/// Record `scope` as the declaring function of the variable symbol at `offset` in `atom`.
fn record_static_scope(object: &mut Object, atom: AtomId, offset: u64, scope: String) {
    if let Some(id) = variable_symbol_at(object, atom, offset) {
        if object.local_static_scopes.is_empty() {
            object.local_static_scopes = vec![None; object.symbols.len()];
        }
        if let Some(slot) = object.local_static_scopes.get_mut(id.0 as usize) {
            *slot = Some(scope);
        }
    }
}

/// Whether a unit is C, C++, Objective-C or assembly (or says no language): only those are
/// ever swapped, so only their line programs are read for statement boundaries (a Rust
/// program's line tables, often most of its DWARF, are skipped).
fn c_family(unit: &gimli::Unit<DwarfReader<'_>>) -> bool {
    let mut entries = unit.entries();
    let Ok(Some(root)) = entries.next_dfs() else {
        return true;
    };
    match root.attr_value(gimli::DW_AT_language) {
        // C89, C, C++, C99, ObjC, ObjC++, C++03, C++11, C11, C++14, C++17, C++20, C17, and
        // MIPS assembler (what gas writes for .s files).
        Some(gimli::AttributeValue::Language(lang)) => matches!(
            lang.0,
            0x1 | 0x2
                | 0x4
                | 0xc
                | 0x10
                | 0x11
                | 0x19
                | 0x1a
                | 0x1d
                | 0x21
                | 0x2a
                | 0x2b
                | 0x2c
                | 0x8001
        ),
        _ => true,
    }
}

/// The compile units of a linked image (name, directory and producer of each), its
/// function-local statics (vaddr, declaring function) and the `is_stmt` line rows within
/// [`crate::image::STATEMENT_WINDOW`] bytes after a start in `function_starts` (sorted),
/// appended as they are read, so an error leaves what was read before it in place.
pub(crate) fn read_image_dwarf(
    file: &File<'_>,
    out: &mut Vec<CompileUnit>,
    statics: &mut Vec<(u64, String)>,
    function_starts: &[u64],
    statements: &mut Vec<u64>,
) -> Result<(), String> {
    let loaded = load_sections(file)?;
    if !loaded
        .sections
        .iter()
        .any(|(id, _, _)| *id == SectionId::DebugInfo)
    {
        return Ok(());
    }
    let no_relocs = HashMap::default();
    let dwarf = make_dwarf(&loaded, &no_relocs).map_err(|e| e.to_string())?;
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| format!(".debug_info: {e}"))? {
        let unit = dwarf
            .unit(header)
            .map_err(|e| format!(".debug_info unit: {e}"))?;
        let mut variables = Vec::new();
        let mut unnamed_functions = Vec::new();
        let producer = walk_dies(
            &dwarf,
            &unit,
            None,
            statics,
            None,
            Some(&mut variables),
            Some((function_starts, &mut unnamed_functions)),
        )?;
        let Some(name) = unit.name.as_ref().map(reader_string) else {
            continue;
        };
        // The unit's code: DW_AT_low_pc/high_pc or DW_AT_ranges. A unit whose ranges cannot
        // be read keeps none (it is then paired with its STT_FILE group by order alone).
        let mut ranges = Vec::new();
        if let Ok(mut iter) = dwarf.unit_ranges(&unit) {
            while let Ok(Some(range)) = iter.next() {
                if range.begin < range.end {
                    ranges.push((range.begin, range.end));
                }
            }
        }
        if let Some(program) = unit.line_program.clone().filter(|_| c_family(&unit)) {
            let mut rows = program.rows();
            // A line program that cannot be read to its end only loses its later rows: the
            // compile units matter more than the breakpoint positions.
            while let Ok(Some((_, row))) = rows.next_row() {
                if row.end_sequence() || !row.is_stmt() {
                    continue;
                }
                let address = row.address();
                // The last function start at or before the row, which must lie after it.
                let at = function_starts.partition_point(|&s| s <= address);
                let near = at
                    .checked_sub(1)
                    .and_then(|i| function_starts.get(i))
                    .is_some_and(|&start| {
                        address > start && address - start < crate::image::STATEMENT_WINDOW
                    });
                if near {
                    statements.push(address);
                }
            }
        }
        variables.sort_unstable();
        variables.dedup();
        // Code of a section the linker discarded (`--gc-sections`, a COMDAT copy not kept)
        // is relocated to 0 or a tombstone outside the unit's code.
        unnamed_functions.retain(|&(_, low)| ranges.iter().any(|&(b, e)| b <= low && low < e));
        out.push(CompileUnit {
            name,
            comp_dir: unit.comp_dir.as_ref().map(reader_string),
            producer,
            ranges,
            variables,
            unnamed_functions,
        });
    }
    Ok(())
}
