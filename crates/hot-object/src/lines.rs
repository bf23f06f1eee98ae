//! Line rows of one atom, read on demand from the object's line program.
//!
//! A save needs the rows of the few functions it places (for the debugger's view of the new
//! bodies and for diagnostics), not of the 2,000 functions of the file. With
//! `-ffunction-sections` every function has a sequence of its own, which starts with a
//! `DW_LNE_set_address` whose operand is relocated against the function's section: the
//! relocations of `.debug_line` therefore say where each atom's sequence starts, and only
//! that sequence is run. Anything this reader does not expect (a sequence that does not
//! start with a plain 64-bit `DW_LNE_set_address`, an address set again mid-sequence, a file
//! defined in the program, VLIW operation indexes, a sequence without its end) makes it fall
//! back to one full pass with gimli over every unit, which gives every atom's rows.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gimli::{Reader, Section, SectionId};
use rustc_hash::FxHashMap as HashMap;

use crate::dwarf::{self, DwarfReader};
use crate::types::ObjectDwarf;
use crate::{AtomId, AtomOffset, SourceLine};

type Rows = Vec<(AtomOffset, SourceLine)>;

/// The rows read so far.
#[derive(Debug, Default)]
pub(crate) struct LazyLines {
    atoms: Vec<OnceLock<Rows>>,
    /// Every atom's rows from one full pass (the fallback).
    full: OnceLock<Vec<Rows>>,
}

impl LazyLines {
    pub(crate) fn new(atoms: usize) -> Self {
        LazyLines {
            atoms: (0..atoms).map(|_| OnceLock::new()).collect(),
            ..LazyLines::default()
        }
    }
}

impl ObjectDwarf {
    /// The rows of `atom`, sorted by offset; empty when it has none or the DWARF could not
    /// be read.
    pub(crate) fn rows_of(&self, atom: AtomId) -> &[(AtomOffset, SourceLine)] {
        if !self.readable {
            return &[];
        }
        let Some(cell) = self.lines.atoms.get(atom.0 as usize) else {
            return &[];
        };
        cell.get_or_init(|| match self.sequence_rows(atom) {
            Some(rows) => rows,
            None => self
                .full_rows()
                .get(atom.0 as usize)
                .cloned()
                .unwrap_or_default(),
        })
    }

    pub(crate) fn lines_full_read(&self) -> bool {
        self.lines.full.get().is_some()
    }

    /// Every atom's rows from one pass of gimli (what [`ObjectDwarf::rows_of`] falls back
    /// to, and what the tests compare it with).
    pub(crate) fn full_rows(&self) -> &[Rows] {
        self.lines.full.get_or_init(|| {
            let loaded = self.loaded();
            let Ok(dwarf) = dwarf::make_dwarf(&loaded, &self.relocs) else {
                return Vec::new();
            };
            dwarf::all_line_rows(&dwarf, &self.section_atom, self.atom_section.len())
                .unwrap_or_default()
        })
    }

    /// The rows of `atom` read from its own sequences only; `None`: fall back.
    fn sequence_rows(&self, atom: AtomId) -> Option<Rows> {
        let section = *self.atom_section.get(atom.0 as usize)?;
        let (line_index, data) = self.section(SectionId::DebugLine)?;
        let relocs = self.relocs.get(&line_index)?;
        // The relocations against the atom's section: the operands of the set_address of
        // its sequences. One pass over the table (a few entries per function), kept nowhere.
        let offsets: Vec<u64> = relocs
            .iter()
            .filter(|(_, target)| target.section == Some(section))
            .map(|&(offset, _)| offset)
            .collect();
        if offsets.is_empty() {
            // No sequence is relocated against the atom's section: it has no rows.
            return Some(Vec::new());
        }
        let loaded = self.loaded();
        let dwarf = dwarf::make_dwarf(&loaded, &self.relocs).ok()?;
        let base = dwarf.debug_line.reader().clone();
        let mut rows = Vec::new();
        let mut units = dwarf.units();
        // The units whose line program holds each sequence (one, in an object).
        let mut programs = Vec::new();
        while let Ok(Some(header)) = units.next() {
            let unit = dwarf.unit(header).ok()?;
            let Some(program) = &unit.line_program else {
                continue;
            };
            let buf = program.header().raw_program_buf();
            let start = buf.offset_from(&base) as u64;
            let end = start + buf.len() as u64;
            programs.push((start, end, unit));
        }
        // Every relocated place in `.debug_line`, sorted: the set_address operands of all
        // sequences (and, in DWARF 5 headers, string offsets before the programs).
        let all: Vec<u64> = relocs.iter().map(|&(offset, _)| offset).collect();
        for &offset in &offsets {
            let (start, end, unit) = programs
                .iter()
                .find(|(start, end, _)| (*start..*end).contains(&offset))?;
            let target = relocs.get(offset)?;
            let sequence = Sequence {
                data,
                endian: self.endian(),
                end: usize::try_from(*end).ok()?,
                header: unit.line_program.as_ref()?.header(),
            };
            // The sequence starts right after the end of the one before it (whose own
            // set_address is the relocation before this one), or at the program's start:
            // gas puts state (the column) before the address.
            let at = all.partition_point(|&o| o < offset);
            let from = match at.checked_sub(1).map(|i| all[i]) {
                Some(previous) if previous > *start => {
                    sequence.end_of(usize::try_from(previous).ok()?)?
                }
                _ => usize::try_from(*start).ok()?,
            };
            sequence.run(&dwarf, unit, from, offset, target.value, &mut rows)?;
        }
        // Stable, as in the full pass: rows at one offset keep the program's order.
        rows.sort_by_key(|(offset, _)| *offset);
        Some(rows)
    }
}

/// One sequence of a line program, read from the raw bytes of `.debug_line`.
struct Sequence<'a, 'h> {
    data: &'a [u8],
    endian: gimli::RunTimeEndian,
    /// The end of the unit's program.
    end: usize,
    header: &'h gimli::LineProgramHeader<DwarfReader<'h>>,
}

/// One instruction of a line program, decoded.
enum Op {
    Special(u8),
    Copy,
    AdvancePc(u64),
    AdvanceLine(i64),
    SetFile(u64),
    SetColumn(u64),
    ConstAddPc,
    FixedAdvancePc(u16),
    EndSequence,
    /// `DW_LNE_set_address` (its operand is read from the relocation, not here).
    SetAddress,
    /// `DW_LNE_define_file`: changes the file table, which the full pass handles.
    DefineFile,
    /// Flags, ISA, discriminators, opcodes this reader does not know: no row state it uses.
    Other,
}

impl Sequence<'_, '_> {
    /// Whether the program's encoding is one this reader handles.
    fn supported(&self) -> bool {
        self.header.maximum_operations_per_instruction() == 1
            && self.header.address_size() == 8
            && self.header.opcode_base() >= 13
            && self.header.line_range() != 0
    }

    /// Where the sequence whose `DW_LNE_set_address` operand is at `operand` ends (just
    /// after its `DW_LNE_end_sequence`).
    fn end_of(&self, operand: usize) -> Option<usize> {
        if !self.supported() || operand < 3 || self.data.get(operand - 3..operand)? != [0, 9, 2] {
            return None;
        }
        let mut pos = operand + 8;
        loop {
            match self.next_op(&mut pos)? {
                Op::EndSequence => return Some(pos),
                Op::SetAddress | Op::DefineFile => return None,
                _ => {}
            }
        }
    }

    /// Run the sequence that starts at `from` and whose `DW_LNE_set_address` operand is at
    /// `operand`, relocated to `address`, appending its rows; `None` for anything
    /// unexpected.
    fn run(
        &self,
        dwarf: &gimli::Dwarf<DwarfReader<'_>>,
        unit: &gimli::Unit<DwarfReader<'_>>,
        from: usize,
        operand: u64,
        address: u64,
        rows: &mut Rows,
    ) -> Option<()> {
        let header = self.header;
        let operand = usize::try_from(operand).ok()?;
        // `00 09 02`: extended opcode, 9 bytes, DW_LNE_set_address with an 8-byte operand.
        if !self.supported() || operand < 3 || self.data.get(operand - 3..operand)? != [0, 9, 2] {
            return None;
        }
        let opcode_base = header.opcode_base();
        let line_range = header.line_range();
        let min_length = u64::from(header.minimum_instruction_length());
        let line_base = i64::from(header.line_base());
        let comp_dir = unit.comp_dir.as_ref().map(dwarf::reader_string);
        let comp_dir = comp_dir.as_deref().map(Path::new);
        let mut paths: HashMap<u64, Option<PathBuf>> = HashMap::default();

        let (mut file, mut line, mut column) = (1u64, 1u64, 0u64);
        // The state set before the address (no rows there: the address is not known yet).
        let mut pos = from;
        while pos < operand - 3 {
            match self.next_op(&mut pos)? {
                Op::SetFile(f) => file = f,
                Op::SetColumn(c) => column = c,
                Op::AdvanceLine(d) => advance_line(&mut line, d),
                // The address set next replaces whatever these did to it.
                Op::AdvancePc(_) | Op::ConstAddPc | Op::FixedAdvancePc(_) | Op::Other => {}
                _ => return None,
            }
        }
        if pos != operand - 3 {
            return None;
        }
        let mut address = address;
        pos = operand + 8;
        loop {
            let emit = match self.next_op(&mut pos)? {
                Op::Special(op) => {
                    let adjusted = op - opcode_base;
                    advance_line(&mut line, line_base + i64::from(adjusted % line_range));
                    address = address.wrapping_add(min_length * u64::from(adjusted / line_range));
                    true
                }
                Op::Copy => true,
                Op::AdvancePc(advance) => {
                    address = address.wrapping_add(min_length.wrapping_mul(advance));
                    false
                }
                Op::AdvanceLine(d) => {
                    advance_line(&mut line, d);
                    false
                }
                Op::SetFile(f) => {
                    file = f;
                    false
                }
                Op::SetColumn(c) => {
                    column = c;
                    false
                }
                Op::ConstAddPc => {
                    let adjusted = 255 - opcode_base;
                    address = address.wrapping_add(min_length * u64::from(adjusted / line_range));
                    false
                }
                Op::FixedAdvancePc(advance) => {
                    address = address.wrapping_add(u64::from(advance));
                    false
                }
                Op::EndSequence => return Some(()),
                // Another address mid-sequence, or a file defined in the program: the full
                // pass handles those.
                Op::SetAddress | Op::DefineFile => return None,
                Op::Other => false,
            };
            if !emit || line == 0 {
                continue;
            }
            let path = paths
                .entry(file)
                .or_insert_with(|| {
                    let entry = header.file(file)?;
                    dwarf::file_path(dwarf, unit, header, entry, comp_dir)
                })
                .clone();
            let Some(path) = path else { continue };
            rows.push((
                AtomOffset(address),
                SourceLine {
                    file: path,
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                    column: u32::try_from(column).unwrap_or(u32::MAX),
                },
            ));
        }
    }

    /// Decode the instruction at `pos` and step over it; `None` past the program's end or
    /// on a truncated instruction.
    fn next_op(&self, pos: &mut usize) -> Option<Op> {
        if *pos >= self.end {
            return None;
        }
        let op = *self.data.get(*pos)?;
        *pos += 1;
        if op >= self.header.opcode_base() {
            return Some(Op::Special(op));
        }
        Some(match op {
            0 => {
                let length = usize::try_from(self.uleb(pos)?).ok()?;
                if length == 0 {
                    return None;
                }
                let sub = gimli::DwLne(*self.data.get(*pos)?);
                *pos = pos.checked_add(length)?;
                match sub {
                    gimli::DW_LNE_end_sequence => Op::EndSequence,
                    gimli::DW_LNE_set_address => Op::SetAddress,
                    gimli::DW_LNE_define_file => Op::DefineFile,
                    _ => Op::Other,
                }
            }
            1 => Op::Copy,
            2 => Op::AdvancePc(self.uleb(pos)?),
            3 => Op::AdvanceLine(self.sleb(pos)?),
            4 => Op::SetFile(self.uleb(pos)?),
            5 => Op::SetColumn(self.uleb(pos)?),
            6 | 7 | 10 | 11 => Op::Other,
            8 => Op::ConstAddPc,
            9 => {
                let bytes: [u8; 2] = self.data.get(*pos..*pos + 2)?.try_into().ok()?;
                *pos += 2;
                Op::FixedAdvancePc(match self.endian {
                    gimli::RunTimeEndian::Little => u16::from_le_bytes(bytes),
                    gimli::RunTimeEndian::Big => u16::from_be_bytes(bytes),
                })
            }
            _ => {
                // DW_LNS_set_isa (12) and opcodes this reader does not know: skip their
                // operands, as gimli does.
                let lengths = self.header.standard_opcode_lengths().to_slice().ok()?;
                for _ in 0..*lengths.get(usize::from(op) - 1)? {
                    self.uleb(pos)?;
                }
                Op::Other
            }
        })
    }

    fn uleb(&self, pos: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = *self.data.get(*pos)?;
            *pos += 1;
            if shift < 64 {
                value |= u64::from(byte & 0x7f) << shift;
            }
            shift += 7;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
    }

    fn sleb(&self, pos: &mut usize) -> Option<i64> {
        let mut value = 0i64;
        let mut shift = 0;
        loop {
            let byte = *self.data.get(*pos)?;
            *pos += 1;
            if shift < 64 {
                value |= i64::from(byte & 0x7f) << shift;
            }
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Some(value);
            }
        }
    }
}

/// The line register's advance as gimli applies it: a decrement below 1 leaves 0.
fn advance_line(line: &mut u64, increment: i64) {
    if increment < 0 {
        *line = line.saturating_sub(increment.unsigned_abs());
    } else {
        *line = line.wrapping_add(increment as u64);
    }
}
