//! DWARF: compile units, producers and line tables keyed by relocated section.
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
use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use gimli::{EndianSlice, Reader, RelocateReader, RunTimeEndian, SectionId};

use crate::image::CompileUnit;
use crate::{AtomId, AtomOffset, Object, SourceLine, SymbolDef, SymbolKind};

type File<'data> = object::read::elf::ElfFile64<'data, object::Endianness, &'data [u8]>;

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

/// The relocations of one debug section, by offset inside it.
pub(crate) type DebugRelocs = HashMap<u64, DebugRelocTarget>;

/// Applies a debug section's relocations while gimli reads it.
#[derive(Clone, Copy)]
struct Relocator<'a> {
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
        match self.relocs.and_then(|r| r.get(&(offset as u64))) {
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
        match self.relocs.and_then(|r| r.get(&(offset as u64))) {
            // An offset into another debug section: the symbol is that section's symbol
            // (value 0), so symbol value + addend is the offset.
            Some(target) => Ok(target.value as usize),
            None => Ok(value),
        }
    }
}

type DwarfReader<'a> = RelocateReader<EndianSlice<'a, RunTimeEndian>, Relocator<'a>>;

/// The section index and contents of the debug sections gimli needs, decompressed.
struct LoadedSections<'data> {
    sections: Vec<(SectionId, usize, Cow<'data, [u8]>)>,
    endian: RunTimeEndian,
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

fn load_sections<'data>(file: &File<'data>) -> Result<LoadedSections<'data>, String> {
    let mut sections = Vec::new();
    for id in WANTED {
        if let Some((index, data)) = crate::elf::section_data_by_name(file, id.name())? {
            sections.push((id, index, data));
        }
    }
    let endian = if object::Object::is_little_endian(file) {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    Ok(LoadedSections { sections, endian })
}

fn make_dwarf<'a>(
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

fn reader_string(reader: &DwarfReader<'_>) -> String {
    match reader.to_slice() {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

fn attr_string(
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
fn file_path(
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

/// Read producer, compile-unit name and directory, line rows per atom and the scopes of
/// function-local statics into `object`. DWARF problems do not fail the parse: they become a
/// warning and the line table stays empty.
pub(crate) fn read_object_dwarf(
    file: &File<'_>,
    relocs: &HashMap<usize, DebugRelocs>,
    section_atom: &[Option<AtomId>],
    object: &mut Object,
) {
    if let Err(message) = read_object_dwarf_inner(file, relocs, section_atom, object) {
        object.warnings.push(format!(
            "DWARF could not be read, no line numbers: {message}"
        ));
        for rows in &mut object.lines {
            rows.clear();
        }
    }
}

fn read_object_dwarf_inner(
    file: &File<'_>,
    relocs: &HashMap<usize, DebugRelocs>,
    section_atom: &[Option<AtomId>],
    object: &mut Object,
) -> Result<(), String> {
    let loaded = load_sections(file)?;
    if !loaded
        .sections
        .iter()
        .any(|(id, _, _)| *id == SectionId::DebugInfo)
    {
        return Ok(());
    }
    let dwarf = make_dwarf(&loaded, relocs).map_err(|e| e.to_string())?;
    let atom_of_address = |address: u64| -> Option<(AtomId, u64)> {
        let section = (address >> SECTION_SHIFT) as usize;
        let atom = (*section_atom.get(section)?)?;
        Some((atom, address & OFFSET_MASK))
    };

    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| format!(".debug_info: {e}"))? {
        let unit = dwarf
            .unit(header)
            .map_err(|e| format!(".debug_info unit: {e}"))?;
        let comp_dir = unit.comp_dir.as_ref().map(reader_string);
        if object.cu_name.is_none() {
            object.cu_name = unit.name.as_ref().map(reader_string);
            object.cu_comp_dir = comp_dir.clone();
        }

        // Walk the DIEs: the producer on the root, and function-local statics.
        let mut statics = Vec::new();
        let producer = walk_dies(&dwarf, &unit, &mut statics)?;
        if object.producer.is_none() {
            object.producer = producer;
        }
        for (address, scope) in statics {
            if let Some((atom, offset)) = atom_of_address(address) {
                record_static_scope(object, atom, offset, scope);
            }
        }

        // Line rows, mapped to atoms through the relocated sequence addresses.
        let Some(program) = unit.line_program.clone() else {
            continue;
        };
        let comp_dir_path = comp_dir.as_deref().map(Path::new);
        let mut paths: HashMap<u64, Option<PathBuf>> = HashMap::new();
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
                    file_path(&dwarf, &unit, header, file, comp_dir_path)
                })
                .clone();
            let Some(file) = path else { continue };
            let column = match row.column() {
                gimli::ColumnType::LeftEdge => 0,
                gimli::ColumnType::Column(c) => u32::try_from(c.get()).unwrap_or(u32::MAX),
            };
            if let Some(rows) = object.lines.get_mut(atom.0 as usize) {
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
    for rows in &mut object.lines {
        // Stable: rows at the same offset keep the line program's order, and `line_of`
        // takes the last of them, as a debugger does.
        rows.sort_by_key(|(offset, _)| *offset);
    }
    Ok(())
}

/// Walk every DIE of a unit once: returns the root's `DW_AT_producer`, and appends to
/// `statics` each function-local static variable as (address of its `DW_OP_addr` location,
/// name of the enclosing `DW_TAG_subprogram`). A subprogram without a name of its own (an
/// out-of-line instance) takes it from its `DW_AT_abstract_origin` / `DW_AT_specification`.
fn walk_dies(
    dwarf: &gimli::Dwarf<DwarfReader<'_>>,
    unit: &gimli::Unit<DwarfReader<'_>>,
    statics: &mut Vec<(u64, String)>,
) -> Result<Option<String>, String> {
    let mut producer = None;
    let mut entries = unit.entries();
    // (depth, name) of the enclosing subprograms.
    let mut scopes: Vec<(isize, Option<String>)> = Vec::new();
    while let Some(entry) = entries
        .next_dfs()
        .map_err(|e| format!(".debug_info: {e}"))?
    {
        let depth = entry.depth();
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
            if name.is_none() {
                let origin = entry
                    .attr_value(gimli::DW_AT_abstract_origin)
                    .or_else(|| entry.attr_value(gimli::DW_AT_specification));
                if let Some(gimli::AttributeValue::UnitRef(offset)) = origin {
                    name = unit.entry(offset).ok().and_then(|die| own_name(&die));
                }
            }
            scopes.push((depth, name));
        } else if tag == gimli::DW_TAG_variable {
            let Some(Some(scope)) = scopes.last().map(|(_, name)| name.clone()) else {
                continue;
            };
            let Some(gimli::AttributeValue::Exprloc(expr)) =
                entry.attr_value(gimli::DW_AT_location)
            else {
                continue;
            };
            let mut ops = expr.0.clone();
            if let Ok(gimli::Operation::Address { address }) =
                gimli::Operation::parse(&mut ops, unit.encoding())
            {
                statics.push((address, scope));
            }
        }
    }
    Ok(producer)
}

/// Record `scope` as the declaring function of the variable symbol at `offset` in `atom`.
fn record_static_scope(object: &mut Object, atom: AtomId, offset: u64, scope: String) {
    let Some(atom) = object.atoms.get(atom.0 as usize) else {
        return;
    };
    let symbol = atom.symbols.iter().copied().find(|&id| {
        let sym = &object.symbols[id.0 as usize];
        matches!(
            sym.kind,
            SymbolKind::Object | SymbolKind::Tls | SymbolKind::NoType
        ) && !crate::is_assembler_label(&sym.name)
            && matches!(sym.def, SymbolDef::Atom { offset: o, .. } if o.0 == offset)
    });
    if let Some(id) = symbol {
        if let Some(slot) = object.local_static_scopes.get_mut(id.0 as usize) {
            *slot = Some(scope);
        }
    }
}

/// The compile units of a linked image (name, directory and producer of each) and its
/// function-local statics (vaddr, declaring function), appended as they are read, so an
/// error leaves what was read before it in place.
pub(crate) fn read_image_dwarf(
    file: &File<'_>,
    out: &mut Vec<CompileUnit>,
    statics: &mut Vec<(u64, String)>,
) -> Result<(), String> {
    let loaded = load_sections(file)?;
    if !loaded
        .sections
        .iter()
        .any(|(id, _, _)| *id == SectionId::DebugInfo)
    {
        return Ok(());
    }
    let no_relocs = HashMap::new();
    let dwarf = make_dwarf(&loaded, &no_relocs).map_err(|e| e.to_string())?;
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| format!(".debug_info: {e}"))? {
        let unit = dwarf
            .unit(header)
            .map_err(|e| format!(".debug_info unit: {e}"))?;
        let producer = walk_dies(&dwarf, &unit, statics)?;
        let Some(name) = unit.name.as_ref().map(reader_string) else {
            continue;
        };
        out.push(CompileUnit {
            name,
            comp_dir: unit.comp_dir.as_ref().map(reader_string),
            producer,
        });
    }
    Ok(())
}
