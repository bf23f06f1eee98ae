//! In-memory ELF objects that describe code placed outside any loaded file, for debuggers'
//! JIT interface.
//!
//! gdb (and lldb) learn about code a JIT wrote through `__jit_debug_descriptor`: a list of
//! entries, each pointing at an object file in the target's memory. gdb opens such an object
//! with BFD and takes every allocated section's `sh_addr` as the address it is at — no
//! relocation (LLVM registers its relocatable objects the same way, with `sh_addr` patched
//! to the load address). So the object made here is an `ET_REL` with:
//!
//! - one `SHT_NOBITS` code section per function, `sh_addr` its runtime address and
//!   `sh_size` its size (the bytes are in the process; a debugger reads them from there);
//! - a global `STT_FUNC` symbol per function at offset 0 of its section (BFD symbol values
//!   are section-relative), named as linked (mangled for C++: debuggers demangle it, and
//!   `break Shape::area` then finds it);
//! - DWARF 4 written with gimli: one compile unit over all functions (`DW_AT_ranges`), a
//!   `DW_TAG_subprogram` per function (`DW_AT_linkage_name` for C++), and a line program
//!   whose rows are the new object's own line table moved to runtime addresses, so a frame
//!   shows the saved file's line and `break file.c:LINE` resolves into the new body. Addresses
//!   in it are absolute: with no relocation sections, BFD leaves them as written;
//! - the patch's unwind table, if it has one: an allocated `.eh_frame` whose `sh_addr` is
//!   where the table lies in the arena and whose bytes are the table's, already relocated
//!   there (its pc-relative pointers are right at that address), so a debugger unwinds
//!   frames of new code compiled without a frame pointer. A debugger reads one `.eh_frame`
//!   per object: a patch of several units (a header swap) describes the first unit's table.

use std::path::{Path, PathBuf};

use gimli::write::{
    Address, AttributeValue, DwarfUnit, EndianVec, LineProgram, LineString, Range, RangeList,
    Sections,
};
use gimli::{Encoding, Format, LineEncoding};
use object::elf;
use object::write::elf::{FileHeader, SectionHeader, Sym, Writer};

use crate::{AtomOffset, SourceLine};

/// One function placed in the target: its linked name, where it runs, and its line rows
/// (offsets from its start, sorted, as in [`crate::Object::lines`]).
#[derive(Clone, Copy, Debug)]
pub struct JitFunction<'a> {
    pub name: &'a str,
    pub addr: u64,
    pub size: u64,
    pub lines: &'a [(AtomOffset, SourceLine)],
}

/// An unwind table in the target: its runtime address and its bytes as written there.
#[derive(Clone, Copy, Debug)]
pub struct JitUnwind<'a> {
    pub addr: u64,
    pub bytes: &'a [u8],
}

/// The object gdb's JIT interface takes for `functions` (x86-64), with their unwind table
/// if they have one. `comp_dir`: the compilation directory (relative line-table paths are
/// relative to it).
pub fn debug_object(
    functions: &[JitFunction<'_>],
    unwind: Option<JitUnwind<'_>>,
    comp_dir: &Path,
) -> Result<Vec<u8>, String> {
    let dwarf = dwarf_sections(functions, comp_dir)?;
    elf_object(functions, unwind, &dwarf)
}

/// The name without its parameter list, as `DW_AT_name` carries it (`Shape::area` for
/// `_ZNK5Shape4areaEv`); C names are themselves.
fn short_name(name: &str) -> String {
    if !name.starts_with("_Z") {
        return name.to_string();
    }
    let shown = crate::display_name(name);
    // Cut at the parameter list's opening parenthesis, outside template brackets.
    let mut depth = 0i32;
    for (i, c) in shown.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            '(' if depth == 0 && i > 0 => return shown[..i].to_string(),
            _ => {}
        }
    }
    shown.into_owned()
}

fn line_string(text: &str) -> LineString {
    LineString::String(text.as_bytes().to_vec())
}

/// `.debug_*` sections (name, bytes) describing `functions`.
fn dwarf_sections(
    functions: &[JitFunction<'_>],
    comp_dir: &Path,
) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let encoding = Encoding {
        format: Format::Dwarf32,
        version: 4,
        address_size: 8,
    };
    let primary: PathBuf = functions
        .iter()
        .find_map(|f| f.lines.first().map(|(_, l)| l.file.clone()))
        .unwrap_or_else(|| PathBuf::from("hot-lsp"));
    let comp_dir_text = match comp_dir.to_string_lossy() {
        text if text.is_empty() => "/".to_string(),
        text => text.into_owned(),
    };
    let mut dwarf = DwarfUnit::new(encoding);
    dwarf.unit.line_program = LineProgram::new(
        encoding,
        LineEncoding::default(),
        line_string(&comp_dir_text),
        None,
        line_string(&primary.to_string_lossy()),
        None,
    );
    let cxx = functions.iter().any(|f| f.name.starts_with("_Z"));
    let ranges = RangeList(
        functions
            .iter()
            .map(|f| Range::StartLength {
                begin: Address::Constant(f.addr),
                length: f.size,
            })
            .collect(),
    );
    let ranges = dwarf.unit.ranges.add(ranges);
    let root = dwarf.unit.root();
    {
        let cu = dwarf.unit.get_mut(root);
        cu.set(
            gimli::DW_AT_producer,
            AttributeValue::String(b"hot-lsp (code swapped into the running program)".to_vec()),
        );
        cu.set(
            gimli::DW_AT_name,
            AttributeValue::String(primary.to_string_lossy().as_bytes().to_vec()),
        );
        cu.set(
            gimli::DW_AT_comp_dir,
            AttributeValue::String(comp_dir_text.as_bytes().to_vec()),
        );
        cu.set(
            gimli::DW_AT_language,
            AttributeValue::Language(if cxx {
                gimli::DW_LANG_C_plus_plus
            } else {
                gimli::DW_LANG_C99
            }),
        );
        cu.set(
            gimli::DW_AT_low_pc,
            AttributeValue::Address(Address::Constant(0)),
        );
        cu.set(gimli::DW_AT_ranges, AttributeValue::RangeListRef(ranges));
    }
    for function in functions {
        let mut file_id = None;
        let program = &mut dwarf.unit.line_program;
        program.begin_sequence(Some(Address::Constant(function.addr)));
        for (offset, line) in function.lines {
            if offset.0 >= function.size {
                break;
            }
            let directory = match line.file.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => {
                    program.add_directory(line_string(&dir.to_string_lossy()))
                }
                _ => program.default_directory(),
            };
            let name = line
                .file
                .file_name()
                .map_or_else(|| line.file.to_string_lossy(), |n| n.to_string_lossy());
            let file = program.add_file(line_string(&name), directory, None);
            file_id.get_or_insert((file, line.line));
            let row = program.row();
            row.address_offset = offset.0;
            row.file = file;
            row.line = u64::from(line.line);
            row.column = u64::from(line.column);
            program.generate_row();
        }
        program.end_sequence(function.size);

        let entry = dwarf.unit.add(root, gimli::DW_TAG_subprogram);
        let die = dwarf.unit.get_mut(entry);
        die.set(
            gimli::DW_AT_name,
            AttributeValue::String(short_name(function.name).into_bytes()),
        );
        if function.name.starts_with("_Z") {
            die.set(
                gimli::DW_AT_linkage_name,
                AttributeValue::String(function.name.as_bytes().to_vec()),
            );
        }
        die.set(gimli::DW_AT_external, AttributeValue::FlagPresent);
        die.set(
            gimli::DW_AT_low_pc,
            AttributeValue::Address(Address::Constant(function.addr)),
        );
        die.set(gimli::DW_AT_high_pc, AttributeValue::Udata(function.size));
        if let Some((file, line)) = file_id {
            die.set(
                gimli::DW_AT_decl_file,
                AttributeValue::FileIndex(Some(file)),
            );
            die.set(
                gimli::DW_AT_decl_line,
                AttributeValue::Udata(u64::from(line)),
            );
        }
    }
    let mut sections = Sections::new(EndianVec::new(gimli::LittleEndian));
    dwarf
        .write(&mut sections)
        .map_err(|e| format!("writing the DWARF of the new code: {e}"))?;
    let mut out = Vec::new();
    sections
        .for_each(|id, data| {
            if !data.slice().is_empty() {
                out.push((id.name(), data.slice().to_vec()));
            }
            Ok::<(), gimli::write::Error>(())
        })
        .map_err(|e| format!("writing the DWARF of the new code: {e}"))?;
    Ok(out)
}

/// The ELF file around the code sections, symbols and `dwarf`.
fn elf_object(
    functions: &[JitFunction<'_>],
    unwind: Option<JitUnwind<'_>>,
    dwarf: &[(&'static str, Vec<u8>)],
) -> Result<Vec<u8>, String> {
    let mut buffer = Vec::new();
    let mut w = Writer::new(object::Endianness::Little, true, &mut buffer);
    // Reserve: header, section indices and names, data, tables, section headers.
    w.reserve_file_header();
    w.reserve_null_section_index();
    let text_name = w.add_section_name(b".text");
    let text_sections: Vec<_> = functions
        .iter()
        .map(|_| w.reserve_section_index())
        .collect();
    // Section headers in index order: code, the unwind table, the DWARF.
    let eh_frame = unwind.map(|table| {
        let name = w.add_section_name(b".eh_frame");
        w.reserve_section_index();
        (name, table)
    });
    let dwarf_names: Vec<_> = dwarf
        .iter()
        .map(|(name, _)| w.add_section_name(name.as_bytes()))
        .collect();
    for _ in dwarf {
        w.reserve_section_index();
    }
    // Section data in file order: the unwind table (8-aligned), then the DWARF.
    let eh_frame =
        eh_frame.map(|(name, table)| (name, table, w.reserve(table.bytes.len() as u64, 8)));
    let dwarf_offsets: Vec<u64> = dwarf
        .iter()
        .map(|(_, bytes)| w.reserve(bytes.len() as u64, 1))
        .collect();
    w.reserve_symtab_section_index();
    w.reserve_strtab_section_index();
    w.reserve_shstrtab_section_index();
    w.reserve_null_symbol_index();
    let names: Vec<_> = functions
        .iter()
        .map(|f| w.add_string(f.name.as_bytes()))
        .collect();
    for section in &text_sections {
        w.reserve_symbol_index(Some(*section));
    }
    w.reserve_symtab();
    let layout = |e: object::write::Error| format!("laying out the debug object: {e}");
    w.reserve_strtab().map_err(layout)?;
    w.reserve_shstrtab().map_err(layout)?;
    w.reserve_section_headers();

    // Write, in the same order.
    w.write_file_header(&FileHeader {
        os_abi: elf::ELFOSABI_NONE,
        abi_version: 0,
        e_type: elf::ET_REL,
        e_machine: elf::EM_X86_64,
        e_entry: 0,
        e_flags: Default::default(),
    })
    .map_err(|e| format!("writing the debug object: {e}"))?;
    if let Some((_, table, offset)) = &eh_frame {
        w.write_align(8);
        debug_assert_eq!(w.len(), *offset);
        w.write(table.bytes);
    }
    for (_, bytes) in dwarf {
        w.write(bytes);
    }
    w.write_null_symbol();
    for ((function, name), section) in functions.iter().zip(&names).zip(&text_sections) {
        w.write_symbol(&Sym {
            section: Some(section.0),
            st_name: w.string_offset(Some(*name)),
            st_info: elf::SymbolInfo::new(elf::STB_GLOBAL, elf::STT_FUNC),
            st_other: elf::STV_DEFAULT.into(),
            st_shndx: Default::default(),
            st_value: 0,
            st_size: function.size,
        });
    }
    w.write_strtab();
    w.write_shstrtab();
    w.write_null_section_header();
    for function in functions {
        w.write_section_header(&SectionHeader {
            sh_name: w.section_name_offset(Some(text_name)),
            sh_type: elf::SHT_NOBITS,
            sh_flags: elf::SHF_ALLOC | elf::SHF_EXECINSTR,
            sh_addr: function.addr,
            sh_offset: 0,
            sh_size: function.size,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: 1,
            sh_entsize: 0,
        });
    }
    if let Some((name, table, offset)) = &eh_frame {
        w.write_section_header(&SectionHeader {
            sh_name: w.section_name_offset(Some(*name)),
            sh_type: elf::SHT_PROGBITS,
            sh_flags: elf::SHF_ALLOC,
            sh_addr: table.addr,
            sh_offset: *offset,
            sh_size: table.bytes.len() as u64,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: 8,
            sh_entsize: 0,
        });
    }
    for ((name, (_, bytes)), offset) in dwarf_names.iter().zip(dwarf).zip(&dwarf_offsets) {
        w.write_section_header(&SectionHeader {
            sh_name: w.section_name_offset(Some(*name)),
            sh_type: elf::SHT_PROGBITS,
            sh_flags: Default::default(),
            sh_addr: 0,
            sh_offset: *offset,
            sh_size: bytes.len() as u64,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: 1,
            sh_entsize: 0,
        });
    }
    // Every symbol is global: the first global is index 1.
    w.write_symtab_section_header(1);
    w.write_strtab_section_header();
    w.write_shstrtab_section_header();
    Ok(buffer)
}
