//! ELF parsing with the `object` crate: relocatable objects into atoms, symbols and
//! relocations, and linked images (executables, shared libraries) into symbol tables, GOT
//! slots and section contents.
//!
//! Every read goes through `object`'s bounds-checked accessors and every value taken from the
//! file is checked before it is used as an index, so malformed input yields
//! [`ObjectError::Malformed`] and never a panic.

// FxHash: these maps hold the symbols and sections of one object, keyed by names and
// small integers that no adversary chooses; SipHash showed up in profiles of the save path.
use rustc_hash::FxHashMap as HashMap;
use std::path::Path;
use std::sync::Arc;

use object::elf;
use object::pod::Pod;
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader, Rela, SectionHeader, Sym};
use object::{Endian, Endianness, SymbolIndex};

use crate::dwarf::{self, DebugRelocTarget, DebugRelocs};
use crate::image::{
    CompileUnit, GotSlot, GotSlotKind, ImageSymbol, IrelativeSlot, LinkedImage, SectionData,
    TlsSegment, TranslationUnitId, Visibility,
};
use crate::shared::Shared;
use crate::{
    Atom, AtomId, AtomKind, AtomOffset, Binding, Constructor, Machine, Name, Object, ObjectError,
    Reloc, RelocKind, Symbol, SymbolDef, SymbolId, SymbolKind,
};

type File<'data> = ElfFile64<'data, Endianness, &'data [u8]>;

fn malformed(path: &Path, message: impl Into<String>) -> ObjectError {
    ObjectError::Malformed {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The ELF type, as a word for error messages.
fn file_type_name(e_type: u16) -> String {
    match e_type {
        0 => "ET_NONE".into(),
        1 => "ET_REL".into(),
        2 => "ET_EXEC (an executable)".into(),
        3 => "ET_DYN (a PIE executable or shared library)".into(),
        4 => "ET_CORE (a core dump)".into(),
        other => format!("ELF type {other}"),
    }
}

/// The fields of the ELF identification and header we must check before trusting the rest:
/// they decide between "not ELF", "wrong architecture", "wrong kind of file" and "corrupt".
struct Identification {
    machine: Machine,
    e_type: u16,
}

fn identify(path: &Path, bytes: &[u8]) -> Result<Identification, ObjectError> {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(ObjectError::NotElf {
            path: path.to_owned(),
        });
    }
    // e_ident (16 bytes), e_type (2), e_machine (2): 20 bytes are needed to classify.
    if bytes.len() < 20 {
        return Err(malformed(path, "truncated ELF header"));
    }
    let big_endian = match elf::DataEncoding(bytes[5]) {
        elf::ELFDATA2LSB => false,
        elf::ELFDATA2MSB => true,
        other => {
            return Err(malformed(
                path,
                format!("invalid ELF data encoding {}", other.0),
            ))
        }
    };
    let read_u16 = |at: usize| {
        let pair = [bytes[at], bytes[at + 1]];
        if big_endian {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    };
    let e_type = read_u16(16);
    let e_machine = read_u16(18);
    let machine_name = || match elf::Machine::NAMES.name(elf::Machine(e_machine)) {
        Some(name) => name.to_string(),
        None => format!("ELF machine {e_machine}"),
    };
    let machine = match (elf::FileClass(bytes[4]), elf::Machine(e_machine)) {
        (elf::ELFCLASS64, elf::EM_X86_64) => Machine::X86_64,
        (elf::ELFCLASS64, elf::EM_AARCH64) => Machine::Aarch64,
        (elf::ELFCLASS32, _) => {
            return Err(ObjectError::UnsupportedArch {
                path: path.to_owned(),
                arch: format!("{} (32-bit ELF)", machine_name()),
            })
        }
        (elf::ELFCLASS64, _) => {
            return Err(ObjectError::UnsupportedArch {
                path: path.to_owned(),
                arch: machine_name(),
            })
        }
        (class, _) => return Err(malformed(path, format!("invalid ELF class {}", class.0))),
    };
    Ok(Identification { machine, e_type })
}

fn open<'data>(path: &Path, bytes: &'data [u8]) -> Result<File<'data>, ObjectError> {
    File::parse(bytes).map_err(|e| malformed(path, format!("invalid ELF file: {e}")))
}

fn lossy(bytes: &[u8]) -> String {
    // The plain check first: names are ASCII, and the lossy decoder is slower at it.
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// A string table of the file (`.strtab`, `.shstrtab`), read the way `object`'s
/// `StringTable` reads it (a name is the bytes from its offset to the next NUL, inside the
/// section's range) but checked as UTF-8 once as a whole: a 2,000-function object has
/// 8,000 names, and finding each through `object` and checking each on its own was a tenth
/// of a parse. A name that is a slice of a valid table on character boundaries is valid
/// UTF-8 itself, so it is copied without another check.
struct StrTab<'data> {
    /// The table's bytes; `None` when the section is missing or out of the file (every
    /// lookup fails, and the caller asks `object` why).
    data: Option<&'data [u8]>,
    /// The whole table as text, when it is valid UTF-8: copied once, the names made of it
    /// are ranges of it.
    text: Option<Arc<str>>,
    /// The table ends with a NUL: every offset inside it starts a name.
    terminated: bool,
}

impl<'data> StrTab<'data> {
    /// The table in `range` of `file` (as `object` computes it: `sh_offset`, `sh_size`).
    fn new(file: &'data [u8], range: Option<(u64, u64)>) -> StrTab<'data> {
        let data = range.and_then(|(offset, size)| {
            let start = usize::try_from(offset).ok()?;
            let end = start.checked_add(usize::try_from(size).ok()?)?;
            file.get(start..end)
        });
        StrTab {
            data,
            text: data
                .and_then(|d| std::str::from_utf8(d).ok())
                .map(Arc::from),
            terminated: data.is_some_and(|d| d.last() == Some(&0)),
        }
    }

    /// The name at `offset`, `None` where `object` would fail to read it.
    fn get(&self, offset: u32) -> Option<&'data [u8]> {
        let tail = self.data?.get(offset as usize..)?;
        let len = nul_at(tail)?;
        Some(&tail[..len])
    }

    /// The name at `offset`, or where this table cannot give it, `theirs`: `object`'s
    /// reading of it, which says why it cannot be read (and must agree where it can).
    fn name(
        &self,
        offset: u32,
        theirs: impl Fn() -> object::read::Result<&'data [u8]>,
    ) -> object::read::Result<&'data [u8]> {
        let name = match self.get(offset) {
            Some(name) => Ok(name),
            None => theirs(),
        };
        debug_assert_eq!(name, theirs());
        name
    }

    /// Whether a name can be read at `offset` (without finding its end, when the table is
    /// NUL-terminated).
    fn valid(&self, offset: u32) -> bool {
        match self.data {
            Some(data) if self.terminated => (offset as usize) < data.len(),
            _ => self.get(offset).is_some(),
        }
    }

    /// `name` (read at `offset`) as a [`Name`], as [`lossy`] makes it: a range of the
    /// table's text, or where the table is not text, a lossy copy of its own.
    fn string(&self, offset: u32, name: &[u8]) -> Name {
        let start = offset as usize;
        self.text
            .as_ref()
            .and_then(|t| Name::in_text(t, start..start + name.len()))
            .unwrap_or_else(|| Name::from(lossy(name)))
    }

    /// The empty name, shared with the table's names.
    fn empty(&self) -> Name {
        self.text
            .as_ref()
            .and_then(|t| Name::in_text(t, 0..0))
            .unwrap_or_default()
    }
}

/// Where the first NUL of `bytes` is. Names are short (a dozen bytes): eight bytes are
/// tested at a time with integer arithmetic, which costs less than a vector search's set-up.
fn nul_at(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // The lowest byte flagged here is the first zero byte (a borrow can only flag bytes
        // above a zero one).
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return Some(at + (zeros.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..].iter().position(|&b| b == 0).map(|p| at + p)
}

fn symbol_kind(st_type: elf::SymbolType) -> SymbolKind {
    match st_type {
        elf::STT_FUNC => SymbolKind::Function,
        elf::STT_OBJECT | elf::STT_COMMON => SymbolKind::Object,
        elf::STT_TLS => SymbolKind::Tls,
        elf::STT_GNU_IFUNC => SymbolKind::Ifunc,
        elf::STT_SECTION => SymbolKind::Section,
        elf::STT_FILE => SymbolKind::File,
        _ => SymbolKind::NoType,
    }
}

fn symbol_binding(st_bind: elf::SymbolBind) -> Binding {
    match st_bind {
        elf::STB_LOCAL => Binding::Local,
        elf::STB_WEAK => Binding::Weak,
        // STB_GLOBAL and STB_GNU_UNIQUE (C++ inline statics) both bind globally.
        _ => Binding::Global,
    }
}

fn symbol_visibility(st_visibility: elf::SymbolVisibility) -> Visibility {
    match st_visibility {
        elf::STV_HIDDEN => Visibility::Hidden,
        elf::STV_INTERNAL => Visibility::Internal,
        elf::STV_PROTECTED => Visibility::Protected,
        _ => Visibility::Default,
    }
}

/// Decide whether an allocatable section of a relocatable object becomes an atom, and of
/// which kind.
///
/// Only `SHT_PROGBITS` and `SHT_NOBITS` sections hold functions and variables. Everything
/// else that is allocatable is metadata for the static or dynamic linker, not program
/// content a patch can place on its own:
/// - `.eh_frame` (`SHT_X86_64_UNWIND`, or `SHT_PROGBITS` from some assemblers): one table of
///   CIEs/FDEs for the whole object, not one function's; it is split into records
///   ([`Object::eh_frame`]) and the linker builds a table of the FDEs it needs.
/// - `.note*` (`SHT_NOTE`): properties and ABI tags for the linker.
/// - `.init_array` / `.fini_array` / `.preinit_array`: tables of pointers for the startup
///   code. A unit of the image ran its constructors at launch; `.init_array` entries are read
///   into [`Object::constructors`] for a unit linked in new, which runs them itself.
/// - `__patchable_function_entries` (`-fpatchable-function-entry`): a list of patch sites
///   for tracing tools, collected by the linker; the functions themselves are atoms as usual.
/// - `.group`, `.symtab`, string tables, relocation sections and debug sections are not
///   `SHF_ALLOC` in the first place.
///
/// Empty sections are skipped by the caller unless a symbol is defined in them.
fn atom_kind(name: &[u8], sh_type: elf::SectionType, flags: u64) -> Option<AtomKind> {
    if flags & elf::SHF_ALLOC.0 == 0 {
        return None;
    }
    if sh_type != elf::SHT_PROGBITS && sh_type != elf::SHT_NOBITS {
        return None;
    }
    if name == b".eh_frame"
        || name.starts_with(b".note")
        || name.starts_with(b".debug")
        || name == b"__patchable_function_entries"
    {
        return None;
    }
    let nobits = sh_type == elf::SHT_NOBITS;
    let kind = if flags & elf::SHF_TLS.0 != 0 {
        if nobits {
            AtomKind::TlsBss
        } else {
            AtomKind::TlsData
        }
    } else if flags & elf::SHF_EXECINSTR.0 != 0 {
        AtomKind::Text
    } else if nobits {
        AtomKind::Bss
    } else if flags & elf::SHF_WRITE.0 == 0 || name.starts_with(b".data.rel.ro") {
        // `.data.rel.ro*` is writable only until the dynamic linker applied its relocations.
        AtomKind::ReadOnly
    } else {
        AtomKind::Data
    };
    Some(kind)
}

/// Order of symbols that share an offset inside an atom: the function or variable first
/// (that is the atom's primary symbol), then untyped labels; within a rank, globals before
/// weak before locals, so an exported name wins over a local alias.
fn symbol_rank(sym: &Symbol) -> (u8, u8) {
    let kind = match sym.kind {
        SymbolKind::Function | SymbolKind::Object | SymbolKind::Tls | SymbolKind::Ifunc => 0,
        _ => 1,
    };
    let binding = match sym.binding {
        Binding::Global => 0,
        Binding::Weak => 1,
        Binding::Local => 2,
    };
    (kind, binding)
}

/// `Some(priority)` for a constructor table: `.init_array.N` gives `Some(Some(N))`, the plain
/// `.init_array` `Some(None)`.
fn init_array_priority(name: &[u8]) -> Option<Option<u32>> {
    if name == b".init_array" {
        return Some(None);
    }
    let digits = name.strip_prefix(b".init_array.")?;
    std::str::from_utf8(digits).ok()?.parse().ok().map(Some)
}

pub(crate) fn parse_relocatable(path: &Path, bytes: Vec<u8>) -> Result<Object, ObjectError> {
    let ident = identify(path, &bytes)?;
    if ident.e_type != elf::ET_REL.0 {
        return Err(ObjectError::NotRelocatable {
            path: path.to_owned(),
            found: file_type_name(ident.e_type),
        });
    }
    // The file, which atoms and FDEs are ranges of.
    let shared = Arc::new(bytes);
    parse_shared(path, ident, &shared)
}

/// Where `part` (a slice of `whole`) starts and ends in it.
fn range_in(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    range_of(whole, part).unwrap_or(0..0)
}

/// Where `part` starts and ends in `whole`, if it is a slice of it.
pub(crate) fn range_of(whole: &[u8], part: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// An atom before the names are done.
struct Draft<'data> {
    name: &'data [u8],
    /// Where `name` is in the section name table.
    name_offset: u32,
    section_index: usize,
    kind: AtomKind,
    align: u64,
    size: u64,
    bytes: std::ops::Range<usize>,
    merge_strings: bool,
    comdat: bool,
    /// Into the object's one table of relocations (`None`: no relocation section yet).
    relocs: Option<std::ops::Range<usize>>,
}

fn parse_shared(
    path: &Path,
    ident: Identification,
    shared: &Arc<Vec<u8>>,
) -> Result<Object, ObjectError> {
    let bytes: &[u8] = shared;
    let tables = open_tables(path, bytes)?;
    // Every field of the file is read in its byte order: known here once, not tested at
    // each of the ~100,000 reads of a 2,000-function object.
    match tables.endian {
        Endianness::Little => parse_as(path, ident, shared, &tables, object::LittleEndian),
        Endianness::Big => parse_as(path, ident, shared, &tables, object::BigEndian),
    }
}

/// What `object`'s `ElfFile::parse` reads of a relocatable object, checked as it checks it
/// (the same errors, in the same order), without the map from each section to its
/// relocation sections it builds for its own accessors (half of what `ElfFile::parse` cost
/// on a 2,000-function object), which nothing here uses.
struct Tables<'data> {
    header: &'data elf::FileHeader64<Endianness>,
    endian: Endianness,
    sections: object::read::elf::SectionTable<'data, elf::FileHeader64<Endianness>>,
    symtab: object::read::elf::SymbolTable<'data, elf::FileHeader64<Endianness>>,
}

fn open_tables<'data>(path: &Path, bytes: &'data [u8]) -> Result<Tables<'data>, ObjectError> {
    let invalid = |e: &dyn std::fmt::Display| malformed(path, format!("invalid ELF file: {e}"));
    let header = elf::FileHeader64::<Endianness>::parse(bytes).map_err(|e| invalid(&e))?;
    let endian = header.endian().map_err(|e| invalid(&e))?;
    header
        .program_headers(endian, bytes)
        .map_err(|e| invalid(&e))?;
    let sections = header.sections(endian, bytes).map_err(|e| invalid(&e))?;
    let symtab = sections
        .symbols(endian, bytes, elf::SHT_SYMTAB)
        .map_err(|e| invalid(&e))?;
    sections
        .symbols(endian, bytes, elf::SHT_DYNSYM)
        .map_err(|e| invalid(&e))?;
    // `RelocationSections::parse`'s checks: the relocation sections of `.symtab` apply to
    // a section of the file that is no relocation section itself (the last offender is
    // the one named, as it walks the table backwards).
    let is_relocs =
        |t: elf::SectionType| t == elf::SHT_REL || t == elf::SHT_RELA || t == elf::SHT_CREL;
    let headers = sections.iter().as_slice();
    for shdr in headers.iter().rev() {
        if !is_relocs(shdr.sh_type(endian)) || shdr.sh_link(endian) as usize != symtab.section().0 {
            continue;
        }
        let target = shdr.sh_info(endian) as usize;
        if target == 0 {
            continue;
        }
        match headers.get(target) {
            None => return Err(invalid(&"Invalid ELF sh_info for relocation section")),
            Some(t) if is_relocs(t.sh_type(endian)) => {
                return Err(invalid(&"Unsupported ELF sh_info for relocation section"))
            }
            Some(_) => {}
        }
    }
    Ok(Tables {
        header,
        endian,
        sections,
        symtab,
    })
}

/// `items` (headers, symbols, relocations of `file`) typed for the byte order `E`: the same
/// bytes, a type of the same size and alignment 1.
fn retyped<'a, T: Pod, U: Pod>(path: &Path, items: &'a [T]) -> Result<&'a [U], ObjectError> {
    object::pod::slice_from_all_bytes(object::pod::bytes_of_slice(items))
        .map_err(|_| malformed(path, "ELF tables cannot be read in their byte order"))
}

fn parse_as<E: Endian>(
    path: &Path,
    ident: Identification,
    shared: &Arc<Vec<u8>>,
    tables: &Tables<'_>,
    endian: E,
) -> Result<Object, ObjectError> {
    let bytes: &[u8] = shared;
    // `object`'s own accessors, for what only they read (extended section indexes) and for
    // their messages.
    let any_endian = tables.endian;
    let sections = &tables.sections;
    let any_headers: &[elf::SectionHeader64<Endianness>] = sections.iter().as_slice();
    let headers: &[elf::SectionHeader64<E>] = retyped(path, any_headers)?;

    // The two string tables, as `object` finds them (the section names' through
    // `e_shstrndx`, the symbols' through `.symtab`'s link); `object` parsed both already.
    let shstrtab = StrTab::new(
        bytes,
        tables
            .header
            .shstrndx(any_endian, bytes)
            .ok()
            .and_then(|index| headers.get(index as usize))
            .and_then(|shdr| shdr.file_range(endian)),
    );
    let symtab = &tables.symtab;
    let strtab = StrTab::new(
        bytes,
        match symtab.string_section().0 {
            0 => None,
            link => headers
                .get(link)
                .map(|shdr| (shdr.sh_offset(endian), shdr.sh_size(endian))),
        },
    );
    // The name of a section or symbol: from the tables above, or where they cannot give it,
    // from `object` (which says why).
    let section_name = |index: usize, shdr: &elf::SectionHeader64<E>| {
        shstrtab
            .name(shdr.sh_name(endian), || {
                sections.section_name(any_endian, &any_headers[index])
            })
            .map_err(|e| malformed(path, format!("section {index}: bad name: {e}")))
    };
    let any_symbols = symtab.symbols();
    let symbol_name = |index: usize, sym: &elf::Sym64<E>| {
        strtab
            .name(sym.st_name(endian), || {
                symtab.symbol_name(any_endian, &any_symbols[index])
            })
            .map_err(|e| malformed(path, format!("symbol {index}: bad name: {e}")))
    };

    // The section each symbol is defined in (as `object` reads `st_shndx`, extended indexes
    // included), and its value: needed to resolve relocations of debug sections too, which
    // may point at non-atom sections (.debug_str, .debug_line). Sections in which a symbol
    // other than the section symbol is defined: an empty section becomes an atom only if it
    // names something (a zero-size variable), not for the empty `.text`/`.data`/`.bss`
    // every object carries.
    let raw_symbols: &[elf::Sym64<E>] = retyped(path, any_symbols)?;
    let mut symbol_sections: Vec<(Option<usize>, u64)> = Vec::with_capacity(raw_symbols.len());
    let mut names_something = vec![false; headers.len()];
    // Whether `object` refused a symbol's section index: the symbol pass asks it again, for
    // its message.
    let mut unreadable_section = false;
    for (index, (sym, any_sym)) in raw_symbols.iter().zip(any_symbols).enumerate() {
        let section = match symtab.symbol_section(any_endian, any_sym, SymbolIndex(index)) {
            Ok(section) => section.map(|s| s.0),
            Err(_) => {
                unreadable_section = true;
                None
            }
        };
        symbol_sections.push((section, sym.st_value(endian)));
        if sym.st_type() == elf::STT_SECTION || sym.st_type() == elf::STT_FILE {
            continue;
        }
        if let Some(flag) = section.and_then(|s| names_something.get_mut(s)) {
            *flag = true;
        }
    }

    // Atoms, in section order (so `section_index` increases with the atom id).
    let mut drafts: Vec<Draft<'_>> = Vec::with_capacity(headers.len() / 2 + 4);
    let mut section_atom: Vec<Option<AtomId>> = vec![None; headers.len()];
    // Every section's name, read once (the relocation sections name their targets).
    let mut section_names: Vec<&[u8]> = Vec::with_capacity(headers.len());
    // The relocation sections, read after the symbols.
    let mut reloc_sections: Vec<usize> = Vec::new();
    let mut debug_sections: Vec<usize> = Vec::new();
    // The `.eh_frame` section: its contents, or why they cannot be read.
    let mut eh_frame_section: Option<Result<std::ops::Range<usize>, String>> = None;
    for (index, shdr) in headers.iter().enumerate() {
        let name = section_name(index, shdr)?;
        section_names.push(name);
        let sh_type = shdr.sh_type(endian);
        if sh_type == elf::SHT_RELA || sh_type == elf::SHT_REL || sh_type == elf::SHT_CREL {
            reloc_sections.push(index);
        }
        if name.starts_with(b".debug_") {
            debug_sections.push(index);
        }
        if name == b".eh_frame" && eh_frame_section.is_none() {
            eh_frame_section = Some(
                shdr.data(endian, bytes)
                    .map(|data| range_in(bytes, data))
                    .map_err(|e| e.to_string()),
            );
        }
        let flags = shdr.sh_flags(endian).0;
        let Some(kind) = atom_kind(name, sh_type, flags) else {
            continue;
        };
        let size = shdr.sh_size(endian);
        if size == 0 && !names_something[index] {
            continue;
        }
        let section_bytes = if sh_type == elf::SHT_NOBITS {
            0..0
        } else {
            let data = shdr.data(endian, bytes).map_err(|e| {
                malformed(
                    path,
                    format!("section {}: contents out of bounds: {e}", lossy(name)),
                )
            })?;
            range_in(bytes, data)
        };
        section_atom[index] = Some(AtomId(drafts.len() as u32));
        drafts.push(Draft {
            name,
            name_offset: shdr.sh_name(endian),
            section_index: index,
            kind,
            align: shdr.sh_addralign(endian).max(1),
            size,
            bytes: section_bytes,
            merge_strings: flags & elf::SHF_MERGE.0 != 0 && flags & elf::SHF_STRINGS.0 != 0,
            comdat: flags & elf::SHF_GROUP.0 != 0,
            relocs: None,
        });
    }

    // Symbols: one per .symtab entry, index preserved (SymbolId == symbol table index).
    let mut symbols: Vec<Symbol> = Vec::with_capacity(raw_symbols.len());
    for (index, sym) in raw_symbols.iter().enumerate() {
        let kind = symbol_kind(sym.st_type());
        // Section symbols carry no name of their own (see `Object::symbol_name`): theirs
        // is only checked to be readable.
        let name: &[u8] = if kind == SymbolKind::Section && strtab.valid(sym.st_name(endian)) {
            b""
        } else {
            symbol_name(index, sym)?
        };
        // The name in messages (a section symbol's own, not the empty one it is given).
        let shown = || lossy(strtab.get(sym.st_name(endian)).unwrap_or(name));
        let shndx = sym.st_shndx(endian);
        let (section, value) = symbol_sections[index];
        let section = if unreadable_section {
            symtab
                .symbol_section(any_endian, &any_symbols[index], SymbolIndex(index))
                .map_err(|e| malformed(path, format!("symbol {}: {e}", shown())))?
                .map(|s| s.0)
        } else {
            section
        };
        let def = if index == 0 || shndx == elf::SHN_UNDEF {
            SymbolDef::Undefined
        } else if shndx == elf::SHN_ABS {
            SymbolDef::Absolute(value)
        } else if shndx == elf::SHN_COMMON {
            // For a common symbol st_value holds the required alignment.
            SymbolDef::Common {
                size: sym.st_size(endian),
                align: value.max(1),
            }
        } else {
            match section {
                Some(s) if s < section_atom.len() => match section_atom[s] {
                    // A symbol may sit at the end of its section (an end label), not past it.
                    Some(atom) if value > drafts[atom.0 as usize].size => {
                        return Err(malformed(
                            path,
                            format!(
                                "symbol {}: value {value:#x} past the end of {} ({:#x} bytes)",
                                shown(),
                                lossy(drafts[atom.0 as usize].name),
                                drafts[atom.0 as usize].size
                            ),
                        ))
                    }
                    Some(atom) => SymbolDef::Atom {
                        atom,
                        offset: AtomOffset(value),
                    },
                    None => SymbolDef::Other,
                },
                Some(s) => {
                    return Err(malformed(
                        path,
                        format!("symbol {}: section index {s} out of range", shown()),
                    ))
                }
                None => SymbolDef::Other,
            }
        };
        symbols.push(Symbol {
            name: if kind == SymbolKind::Section {
                strtab.empty()
            } else {
                strtab.string(sym.st_name(endian), name)
            },
            kind,
            binding: symbol_binding(sym.st_bind()),
            hidden: sym.st_visibility() != elf::STV_DEFAULT,
            def,
            size: sym.st_size(endian),
        });
    }

    // Defined symbols of each atom, sorted by offset: one table, a range per atom (a
    // counting sort by atom keeps symbol order within each).
    let mut symbol_start = vec![0u32; drafts.len() + 1];
    let atom_of_symbol = |sym: &Symbol| match sym.def {
        SymbolDef::Atom { atom, .. } if sym.kind != SymbolKind::Section => Some(atom.0 as usize),
        _ => None,
    };
    for sym in &symbols {
        if let Some(a) = atom_of_symbol(sym) {
            symbol_start[a + 1] += 1;
        }
    }
    for a in 0..drafts.len() {
        symbol_start[a + 1] += symbol_start[a];
    }
    let mut atom_symbols = vec![SymbolId(0); symbol_start[drafts.len()] as usize];
    let mut fill = symbol_start.clone();
    for (index, sym) in symbols.iter().enumerate() {
        if let Some(a) = atom_of_symbol(sym) {
            atom_symbols[fill[a] as usize] = SymbolId(index as u32);
            fill[a] += 1;
        }
    }
    for a in 0..drafts.len() {
        let range = symbol_start[a] as usize..symbol_start[a + 1] as usize;
        if range.len() > 1 {
            atom_symbols[range].sort_by_key(|&id| {
                let sym = &symbols[id.0 as usize];
                let offset = match sym.def {
                    SymbolDef::Atom { offset, .. } => offset.0,
                    _ => 0,
                };
                (offset, symbol_rank(sym))
            });
        }
    }

    // Relocations: of atoms (into one table, a range per atom), of debug sections (for
    // DWARF) and of `.eh_frame` (split into records with it below).
    // Sized first: a 2,000-function object has 2,000 relocation sections, and growing the
    // table by doubling copied it over and over.
    let rela_count = |index: usize| {
        (headers[index].sh_size(endian) / std::mem::size_of::<elf::Rela64<E>>() as u64) as usize
    };
    let atom_reloc_count: usize = reloc_sections
        .iter()
        .filter(|&&index| {
            let target = headers[index].sh_info(endian) as usize;
            section_atom.get(target).is_some_and(|a| a.is_some())
        })
        .map(|&index| rela_count(index))
        .sum();
    let mut all_relocs: Vec<Reloc> = Vec::with_capacity(atom_reloc_count.min(bytes.len() / 24));
    let mut debug_relocs: HashMap<usize, DebugRelocs> = HashMap::default();
    let mut eh_frame_relocs: Vec<Reloc> = Vec::new();
    // Why the `.eh_frame` relocations cannot be used (REL/CREL, another symbol table, out
    // of bounds): that only costs the object's unwind table, a warning (`read_eh_frame`).
    let mut eh_frame_unusable: Option<String> = None;
    // `.init_array` entries: ((plain, priority, section), offset, entry), sorted below.
    let mut constructors: Vec<((bool, u32, usize), u64, Constructor)> = Vec::new();
    for &index in &reloc_sections {
        let shdr = &headers[index];
        let sh_type = shdr.sh_type(endian);
        let target = shdr.sh_info(endian) as usize;
        if target >= headers.len() {
            return Err(malformed(
                path,
                format!("relocation section {index}: target section {target} out of range"),
            ));
        }
        let target_atom = section_atom[target];
        let target_name = section_names.get(target).copied().unwrap_or_default();
        let is_debug = target_name.starts_with(b".debug_");
        let is_eh_frame = target_name == b".eh_frame";
        if let Some(priority) = init_array_priority(target_name) {
            if sh_type == elf::SHT_RELA && shdr.sh_link(endian) as usize == symtab.section().0 {
                if let Ok(Some((relas, _))) = shdr.rela(endian, bytes) {
                    for rela in relas {
                        let sym = rela.r_sym(endian, false) as usize;
                        let raw_type = rela.r_type(endian, false).0;
                        let kind = match ident.machine {
                            Machine::X86_64 => RelocKind::from_x86_64(raw_type),
                            Machine::Aarch64 => RelocKind::from_aarch64(raw_type),
                        };
                        // Anything but a plain pointer to a symbol of this object is not
                        // a constructor entry this reader understands: left out (and the
                        // linker refuses what it cannot place).
                        if kind != RelocKind::Abs64 || sym >= symbols.len() {
                            continue;
                        }
                        constructors.push((
                            (priority.is_none(), priority.unwrap_or(0), target),
                            rela.r_offset(endian),
                            Constructor {
                                priority,
                                symbol: SymbolId(sym as u32),
                                addend: rela.r_addend(endian),
                            },
                        ));
                    }
                }
            }
            continue;
        }
        if target_atom.is_none() && !is_debug && !is_eh_frame {
            continue;
        }
        if is_eh_frame && sh_type != elf::SHT_RELA {
            eh_frame_unusable = Some(format!(
                "its relocations use {}, only RELA is supported",
                if sh_type == elf::SHT_REL {
                    "SHT_REL"
                } else {
                    "SHT_CREL"
                }
            ));
            continue;
        }
        if sh_type != elf::SHT_RELA {
            return Err(malformed(
                path,
                format!(
                    "relocations of {} use {}, only RELA is supported",
                    lossy(target_name),
                    if sh_type == elf::SHT_REL {
                        "SHT_REL"
                    } else {
                        "SHT_CREL"
                    }
                ),
            ));
        }
        if shdr.sh_link(endian) as usize != symtab.section().0 {
            return Err(malformed(
                path,
                format!("relocations of {} do not use .symtab", lossy(target_name)),
            ));
        }
        let Ok(Some((relas, _))) = shdr.rela(endian, bytes) else {
            return Err(malformed(
                path,
                format!("relocations of {}: table out of bounds", lossy(target_name)),
            ));
        };
        if is_eh_frame {
            if let Err(e) = eh_frame_rela(
                path,
                endian,
                ident.machine,
                relas,
                symbols.len(),
                &mut eh_frame_relocs,
            ) {
                eh_frame_unusable = Some(e.to_string());
            }
        } else if let Some(atom_id) = target_atom {
            let atom = &mut drafts[atom_id.0 as usize];
            // An atom's relocations are one run of the table: a second relocation section
            // for the same atom (never from a compiler) moves its run to the end.
            let first = all_relocs.len();
            if let Some(previous) = atom.relocs.take() {
                all_relocs.extend_from_within(previous);
            }
            all_relocs.reserve(relas.len());
            for rela in relas {
                let raw_type = rela.r_type(endian, false).0;
                let sym = rela.r_sym(endian, false) as usize;
                let offset = rela.r_offset(endian);
                if sym >= symbols.len() {
                    return Err(malformed(
                        path,
                        format!(
                            "relocation at {}+{offset:#x}: symbol index {sym} out of range",
                            lossy(atom.name)
                        ),
                    ));
                }
                if offset >= atom.size {
                    return Err(malformed(
                        path,
                        format!(
                            "relocation at {}+{offset:#x}: offset past the section end ({:#x})",
                            lossy(atom.name),
                            atom.size
                        ),
                    ));
                }
                let kind = match ident.machine {
                    Machine::X86_64 => RelocKind::from_x86_64(raw_type),
                    Machine::Aarch64 => RelocKind::from_aarch64(raw_type),
                };
                all_relocs.push(Reloc {
                    offset: AtomOffset(offset),
                    raw_type,
                    kind,
                    symbol: SymbolId(sym as u32),
                    addend: rela.r_addend(endian),
                });
            }
            let run = &mut all_relocs[first..];
            if !run.windows(2).all(|w| w[0].offset <= w[1].offset) {
                run.sort_by_key(|r| r.offset);
            }
            atom.relocs = Some(first..all_relocs.len());
        } else {
            let map = debug_relocs.entry(target).or_default();
            map.reserve(relas.len());
            for rela in relas {
                let sym = rela.r_sym(endian, false) as usize;
                let Some(&(section, value)) = symbol_sections.get(sym) else {
                    return Err(malformed(
                        path,
                        format!(
                            "relocation of {}: symbol index {sym} out of range",
                            lossy(target_name)
                        ),
                    ));
                };
                map.push(
                    rela.r_offset(endian),
                    DebugRelocTarget {
                        section,
                        value: value.wrapping_add(rela.r_addend(endian) as u64),
                    },
                );
            }
        }
    }

    let all_relocs = Arc::new(all_relocs);
    let atom_symbols = Arc::new(atom_symbols);
    let atoms: Vec<Atom> = drafts
        .into_iter()
        .enumerate()
        .map(|(a, d)| Atom {
            section_name: shstrtab.string(d.name_offset, d.name),
            section_index: d.section_index,
            kind: d.kind,
            align: d.align,
            size: d.size,
            bytes: Shared::new(shared, d.bytes),
            merge_strings: d.merge_strings,
            comdat: d.comdat,
            relocs: Shared::new(&all_relocs, d.relocs.unwrap_or(0..0)),
            symbols: Shared::new(
                &atom_symbols,
                symbol_start[a] as usize..symbol_start[a + 1] as usize,
            ),
        })
        .collect();
    let mut object = Object {
        machine: ident.machine,
        format: crate::ObjectFormat::Elf,
        file: Shared::whole(Arc::clone(shared)),
        atoms,
        symbols,
        producer: None,
        cu_name: None,
        cu_comp_dir: None,
        local_static_scopes: Vec::new(),
        warnings: Vec::new(),
        eh_frame: Vec::new(),
        constructors: {
            constructors.sort_by_key(|&(key, offset, _)| (key, offset));
            constructors.into_iter().map(|(_, _, c)| c).collect()
        },
        dwarf: None,
        index: Default::default(),
    };
    match eh_frame_unusable {
        // Unrelocated records would describe the wrong code: no table at all.
        Some(why) => object.warnings.push(format!(
            ".eh_frame not read ({why}): new code from this object gets no unwind table"
        )),
        None => read_eh_frame(shared, eh_frame_section, eh_frame_relocs, &mut object),
    }
    // `local_static_scopes` stays empty unless the DWARF names a function-local static:
    // 24 bytes per symbol of a 4,000-symbol object kept as a baseline for every file.
    for relocs in debug_relocs.values_mut() {
        relocs.finish();
    }
    // Section 0 is no section `object` hands out, whatever it is named.
    let debug_sections: Vec<_> = debug_sections
        .into_iter()
        .filter(|&index| index != 0)
        .map(|index| (index, &headers[index], section_names[index]))
        .collect();
    dwarf::read_object_dwarf(
        dwarf::load_object_sections(endian, bytes, &debug_sections),
        Some(shared),
        debug_relocs,
        section_atom,
        &mut object,
    );
    Ok(object)
}

/// The relocations of `.eh_frame`, decoded like an atom's (section offsets), added to
/// `out`; on an error `out` is left as it was.
fn eh_frame_rela<E: Endian>(
    path: &Path,
    endian: E,
    machine: Machine,
    relas: &[elf::Rela64<E>],
    symbol_count: usize,
    out: &mut Vec<Reloc>,
) -> Result<(), ObjectError> {
    let before = out.len();
    out.reserve(relas.len());
    for rela in relas {
        let sym = rela.r_sym(endian, false) as usize;
        let offset = rela.r_offset(endian);
        if sym >= symbol_count {
            out.truncate(before);
            return Err(malformed(
                path,
                format!("relocation at .eh_frame+{offset:#x}: symbol index {sym} out of range"),
            ));
        }
        let raw_type = rela.r_type(endian, false).0;
        out.push(Reloc {
            offset: AtomOffset(offset),
            raw_type,
            kind: match machine {
                Machine::X86_64 => RelocKind::from_x86_64(raw_type),
                Machine::Aarch64 => RelocKind::from_aarch64(raw_type),
            },
            symbol: SymbolId(sym as u32),
            addend: rela.r_addend(endian),
        });
    }
    Ok(())
}

/// Split the object's `.eh_frame` (if any) into records. A table that cannot be read only
/// costs the unwind information of new code: a warning, not a refusal.
fn read_eh_frame(
    file: &Arc<Vec<u8>>,
    section: Option<Result<std::ops::Range<usize>, String>>,
    relocs: Vec<Reloc>,
    object: &mut Object,
) {
    let range = match section {
        None => return,
        Some(Ok(range)) => range,
        Some(Err(e)) => {
            object
                .warnings
                .push(format!(".eh_frame: contents out of bounds: {e}"));
            return;
        }
    };
    match crate::eh_frame::split(file, range, relocs, &object.symbols) {
        Ok(records) => object.eh_frame = records,
        Err(e) => object.warnings.push(e),
    }
}

/// Strip an ELF symbol version suffix: `stdout@GLIBC_2.2.5` and `memcpy@@GLIBC_2.14` both
/// become the plain name.
fn strip_version(name: &[u8]) -> &[u8] {
    match name.iter().position(|&b| b == b'@') {
        // A name starting with '@' is not versioned; keep it whole.
        Some(at) if at > 0 => &name[..at],
        _ => name,
    }
}

fn dynamic_reloc_kind(machine: Machine, r_type: u32) -> Option<DynRelocKind> {
    use DynRelocKind::*;
    let kind = match (machine, elf::RelocationType(r_type)) {
        (Machine::X86_64, elf::R_X86_64_JUMP_SLOT) => Slot(GotSlotKind::JumpSlot),
        (Machine::X86_64, elf::R_X86_64_GLOB_DAT) => Slot(GotSlotKind::GlobDat),
        (Machine::X86_64, elf::R_X86_64_COPY) => Slot(GotSlotKind::Copy),
        (Machine::X86_64, elf::R_X86_64_64) => Slot(GotSlotKind::Abs64),
        (Machine::X86_64, elf::R_X86_64_IRELATIVE) => Irelative,
        (Machine::X86_64, elf::R_X86_64_RELATIVE) => Relative,
        (Machine::Aarch64, elf::R_AARCH64_RELATIVE) => Relative,
        (Machine::Aarch64, elf::R_AARCH64_JUMP_SLOT) => Slot(GotSlotKind::JumpSlot),
        (Machine::Aarch64, elf::R_AARCH64_GLOB_DAT) => Slot(GotSlotKind::GlobDat),
        (Machine::Aarch64, elf::R_AARCH64_COPY) => Slot(GotSlotKind::Copy),
        (Machine::Aarch64, elf::R_AARCH64_ABS64) => Slot(GotSlotKind::Abs64),
        (Machine::Aarch64, elf::R_AARCH64_IRELATIVE) => Irelative,
        _ => return None,
    };
    Some(kind)
}

enum DynRelocKind {
    Slot(GotSlotKind),
    Irelative,
    Relative,
}

pub(crate) fn parse_linked(path: &Path, bytes: &[u8]) -> Result<LinkedImage, ObjectError> {
    let ident = identify(path, bytes)?;
    if ident.e_type != elf::ET_EXEC.0 && ident.e_type != elf::ET_DYN.0 {
        return Err(ObjectError::NotRelocatable {
            path: path.to_owned(),
            found: format!(
                "{} where a linked executable or shared library was expected",
                file_type_name(ident.e_type)
            ),
        });
    }
    let file = open(path, bytes)?;
    let endian = file.endian();
    let sections = file.elf_section_table();

    let mut section_names: Vec<Option<String>> = Vec::with_capacity(sections.len());
    let mut section_data = Vec::new();
    for (index, shdr) in sections.enumerate() {
        let name = sections
            .section_name(endian, shdr)
            .map_err(|e| malformed(path, format!("section {}: bad name: {e}", index.0)))?;
        let flags = shdr.sh_flags(endian).0;
        let alloc = flags & elf::SHF_ALLOC.0 != 0;
        section_names.push(alloc.then(|| lossy(name)));
        if !alloc {
            continue;
        }
        let sh_type = shdr.sh_type(endian);
        let contents = if sh_type == elf::SHT_NOBITS {
            Vec::new()
        } else {
            shdr.data(endian, bytes)
                .map_err(|e| {
                    malformed(
                        path,
                        format!("section {}: contents out of bounds: {e}", lossy(name)),
                    )
                })?
                .to_vec()
        };
        section_data.push(SectionData {
            name: lossy(name),
            vaddr: shdr.sh_addr(endian),
            bytes: contents,
            size: shdr.sh_size(endian),
            executable: flags & elf::SHF_EXECINSTR.0 != 0,
            writable: flags & elf::SHF_WRITE.0 != 0,
        });
    }

    // .symtab, grouped by STT_FILE.
    let mut symbols = Vec::new();
    let mut translation_units = Vec::new();
    let symtab = file.elf_symbol_table();
    let has_symtab = !symtab.is_empty();
    let mut current_tu: Option<TranslationUnitId> = None;
    for (index, sym) in symtab.enumerate().skip(1) {
        let name = symtab
            .symbol_name(endian, sym)
            .map_err(|e| malformed(path, format!(".symtab symbol {}: bad name: {e}", index.0)))?;
        let st_type = sym.st_type();
        if st_type == elf::STT_FILE {
            current_tu = Some(TranslationUnitId(translation_units.len() as u32));
            translation_units.push(lossy(name));
            continue;
        }
        if st_type == elf::STT_SECTION {
            continue;
        }
        let binding = symbol_binding(sym.st_bind());
        let section = symtab
            .symbol_section(endian, sym, index)
            .map_err(|e| malformed(path, format!(".symtab symbol {}: {e}", lossy(name))))?;
        symbols.push(ImageSymbol {
            name: lossy(strip_version(name)),
            vaddr: sym.st_value(endian),
            size: sym.st_size(endian),
            kind: symbol_kind(st_type),
            binding,
            tu: if binding == Binding::Local {
                current_tu
            } else {
                None
            },
            section: section.and_then(|s| section_names.get(s.0).cloned().flatten()),
            defined: !sym.is_undefined(endian),
            dynamic: false,
            default_version: true,
            visibility: symbol_visibility(sym.st_visibility()),
        });
    }

    // .dynsym with symbol versions.
    let dynsym = file.elf_dynamic_symbol_table();
    let versyms = sections
        .gnu_versym(endian, bytes)
        .map_err(|e| malformed(path, format!(".gnu.version: {e}")))?
        .map(|(versyms, _)| versyms);
    let mut dynsym_names: Vec<String> = Vec::with_capacity(dynsym.len());
    for (index, sym) in dynsym.enumerate() {
        let name = dynsym
            .symbol_name(endian, sym)
            .map_err(|e| malformed(path, format!(".dynsym symbol {}: bad name: {e}", index.0)))?;
        let name = lossy(strip_version(name));
        dynsym_names.push(name.clone());
        let st_type = sym.st_type();
        if index.0 == 0 || st_type == elf::STT_SECTION || st_type == elf::STT_FILE {
            continue;
        }
        // Bit 15 of a version index marks a hidden (non-default, `@`) version.
        let default_version = match versyms {
            Some(v) => v.get(index.0).is_none_or(|v| !v.0.get(endian).is_hidden()),
            None => true,
        };
        let section = dynsym
            .symbol_section(endian, sym, index)
            .map_err(|e| malformed(path, format!(".dynsym symbol {name}: {e}")))?;
        symbols.push(ImageSymbol {
            name,
            vaddr: sym.st_value(endian),
            size: sym.st_size(endian),
            kind: symbol_kind(st_type),
            binding: symbol_binding(sym.st_bind()),
            tu: None,
            section: section.and_then(|s| section_names.get(s.0).cloned().flatten()),
            defined: !sym.is_undefined(endian),
            dynamic: true,
            default_version,
            visibility: symbol_visibility(sym.st_visibility()),
        });
    }

    // Dynamic relocations: every allocatable RELA section (.rela.dyn, .rela.plt; .rela.iplt
    // of a static executable). Non-allocatable ones (`ld --emit-relocs`) describe the link,
    // not the loader's work.
    let mut got_slots = Vec::new();
    let mut irelative_slots = Vec::new();
    let mut relative_relocs = Vec::new();
    for shdr in sections.iter() {
        if shdr.sh_type(endian) != elf::SHT_RELA || shdr.sh_flags(endian).0 & elf::SHF_ALLOC.0 == 0
        {
            continue;
        }
        let Ok(Some((relas, link))) = shdr.rela(endian, bytes) else {
            return Err(malformed(path, "dynamic relocation table out of bounds"));
        };
        // Relocations normally name .dynsym; a static executable's IRELATIVE relocations
        // have no symbol at all.
        let uses_dynsym = link.0 == 0 || link == dynsym.section();
        for rela in relas {
            let r_type = rela.r_type(endian, false).0;
            let Some(kind) = dynamic_reloc_kind(ident.machine, r_type) else {
                continue;
            };
            let vaddr = rela.r_offset(endian);
            match kind {
                DynRelocKind::Irelative => irelative_slots.push(IrelativeSlot {
                    vaddr,
                    resolver_vaddr: rela.r_addend(endian) as u64,
                }),
                DynRelocKind::Relative => relative_relocs.push((vaddr, rela.r_addend(endian))),
                DynRelocKind::Slot(kind) => {
                    let sym = rela.r_sym(endian, false) as usize;
                    if sym == 0 || !uses_dynsym {
                        continue;
                    }
                    let Some(name) = dynsym_names.get(sym) else {
                        return Err(malformed(
                            path,
                            format!("dynamic relocation at {vaddr:#x}: symbol {sym} out of range"),
                        ));
                    };
                    got_slots.push(GotSlot {
                        symbol: name.clone(),
                        vaddr,
                        kind,
                        addend: rela.r_addend(endian),
                    });
                }
            }
        }
    }

    let plt_entries = match ident.machine {
        Machine::X86_64 => x86_64_plt_entries(&section_data, &got_slots),
        Machine::Aarch64 => aarch64_plt_entries(&section_data, &got_slots),
    };

    // Segments: load range and TLS.
    let mut tls = None;
    let mut low = u64::MAX;
    let mut high = 0u64;
    for phdr in file.elf_program_headers() {
        let p_type = phdr.p_type(endian);
        if p_type == elf::PT_LOAD {
            let vaddr = phdr.p_vaddr(endian);
            low = low.min(vaddr);
            high = high.max(vaddr.saturating_add(phdr.p_memsz(endian)));
        } else if p_type == elf::PT_TLS {
            tls = Some(TlsSegment {
                vaddr: phdr.p_vaddr(endian),
                filesz: phdr.p_filesz(endian),
                memsz: phdr.p_memsz(endian),
                align: phdr.p_align(endian).max(1),
            });
        }
    }
    let vaddr_range = if low <= high { (low, high) } else { (0, 0) };

    let build_id = object::Object::build_id(&file)
        .map_err(|e| malformed(path, format!("notes: {e}")))?
        .map(|id| id.to_vec());
    let (soname, needed) =
        read_dynamic_names(&file, bytes).map_err(|message| malformed(path, message))?;

    // Compile units only help to map source files to the image: unreadable DWARF is a
    // warning, not a reason to refuse the image.
    let mut warnings = Vec::new();
    let mut compile_units: Vec<CompileUnit> = Vec::new();
    let mut local_static_scopes = Vec::new();
    let mut function_starts: Vec<u64> = symbols
        .iter()
        .filter(|s| s.defined && s.kind == SymbolKind::Function && s.vaddr != 0)
        .map(|s| s.vaddr)
        .collect();
    function_starts.sort_unstable();
    function_starts.dedup();
    let mut statement_starts = Vec::new();
    if let Err(message) = dwarf::read_image_dwarf(
        &file,
        &mut compile_units,
        &mut local_static_scopes,
        &function_starts,
        &mut statement_starts,
    ) {
        warnings.push(format!("DWARF could not be read completely: {message}"));
    }
    local_static_scopes.sort();
    local_static_scopes.dedup_by(|a, b| a.0 == b.0);
    relative_relocs.sort_unstable();
    statement_starts.sort_unstable();
    statement_starts.dedup();

    Ok(LinkedImage {
        machine: ident.machine,
        build_id,
        position_independent: ident.e_type == elf::ET_DYN.0,
        soname,
        needed,
        symbols,
        translation_units,
        got_slots,
        irelative_slots,
        plt_entries,
        tls,
        compile_units,
        sections: section_data,
        vaddr_range,
        has_symtab,
        warnings,
        local_static_scopes,
        relative_relocs,
        statement_starts,
    })
}

/// `DT_SONAME` and the `DT_NEEDED` names of `.dynamic`.
fn read_dynamic_names(
    file: &File<'_>,
    bytes: &[u8],
) -> Result<(Option<String>, Vec<String>), String> {
    let endian = file.endian();
    let sections = file.elf_section_table();
    let Some((dyns, strings_index)) = sections
        .dynamic(endian, bytes)
        .map_err(|e| format!(".dynamic: {e}"))?
    else {
        return Ok((None, Vec::new()));
    };
    let strings = sections
        .strings(endian, bytes, strings_index)
        .map_err(|e| format!(".dynamic string table: {e}"))?;
    let (mut soname, mut needed) = (None, Vec::new());
    for entry in dyns {
        let tag = entry.tag(endian);
        if tag == elf::DT_SONAME || tag == elf::DT_NEEDED {
            let name = entry
                .string(endian, strings)
                .map_err(|e| format!("DT_SONAME/DT_NEEDED: {e}"))?;
            match tag == elf::DT_SONAME {
                true if soname.is_none() => soname = Some(lossy(name)),
                true => {}
                false => needed.push(lossy(name)),
            }
        }
    }
    Ok((soname, needed))
}

/// aarch64 PLT entries by the symbol whose GOT slot they jump through. ld's entries are
/// `adrp x16, slot; ldr x17, [x16, #:lo12:slot]; add x16, x16, #:lo12:slot; br x17`, behind
/// a `bti c` in `-z force-bti` images: every `adrp x16` followed by such an `ldr x17` is
/// decoded and the slot it reads looked up among the named GOT slots (the lazy PLT header
/// reads the resolver's slot, which has no name, and is skipped).
fn aarch64_plt_entries(sections: &[SectionData], got_slots: &[GotSlot]) -> Vec<(String, u64)> {
    const BTI_C: u32 = 0xd503_245f;
    let by_slot: HashMap<u64, &str> = got_slots
        .iter()
        .map(|slot| (slot.vaddr, slot.symbol.as_str()))
        .collect();
    let mut entries = Vec::new();
    for section in sections.iter().filter(|s| s.name == ".plt") {
        let words: Vec<u32> = section
            .bytes
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        for (i, pair) in words.windows(2).enumerate() {
            let (adrp, ldr) = (pair[0], pair[1]);
            // `adrp x16, ...` and `ldr x17, [x16, #imm]`.
            if adrp & 0x9f00_001f != 0x9000_0010 || ldr & 0xffc0_03ff != 0xf940_0211 {
                continue;
            }
            let at = section.vaddr.wrapping_add(4 * i as u64);
            let immlo = u64::from((adrp >> 29) & 3);
            let immhi = u64::from((adrp >> 5) & 0x7_ffff);
            // Sign-extend the 21-bit page count and scale it to bytes.
            let pages = ((((immhi << 2) | immlo) << 43) as i64) >> 43;
            let page = (at & !0xfff).wrapping_add((pages << 12) as u64);
            let slot = page.wrapping_add(u64::from((ldr >> 10) & 0xfff) * 8);
            let Some(name) = by_slot.get(&slot) else {
                continue;
            };
            let entry = if i > 0 && words[i - 1] == BTI_C {
                at - 4
            } else {
                at
            };
            entries.push((name.to_string(), entry));
        }
    }
    entries
}

/// PLT entries by the symbol whose GOT slot they jump through. Each entry of `.plt.sec`,
/// `.plt` and `.plt.got` is decoded: an optional `endbr64`, an optional `bnd` prefix and
/// `jmp *rel32(%rip)`; the slot it reads is looked up among the named GOT slots. This
/// works for lazy and non-lazy PLTs, with and without IBT, without depending on the order of
/// `.rela.plt`. Entries that jump elsewhere (the lazy PLT header, IBT `.plt` stubs that
/// push and branch to the header) are skipped.
fn x86_64_plt_entries(sections: &[SectionData], got_slots: &[GotSlot]) -> Vec<(String, u64)> {
    let by_slot: HashMap<u64, &str> = got_slots
        .iter()
        .map(|slot| (slot.vaddr, slot.symbol.as_str()))
        .collect();
    let mut entries = Vec::new();
    for section in sections {
        let entry_size = match section.name.as_str() {
            ".plt" | ".plt.sec" => 16,
            ".plt.got" => {
                // 8-byte entries without IBT, 16-byte ones (endbr64 + bnd jmp + nop) with it.
                if section.bytes.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
                    16
                } else {
                    8
                }
            }
            _ => continue,
        };
        for (index, entry) in section.bytes.chunks(entry_size).enumerate() {
            let mut at = 0;
            if entry.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
                at += 4;
            }
            if entry.get(at) == Some(&0xf2) {
                at += 1;
            }
            if entry.get(at..at + 2) != Some(&[0xff, 0x25]) {
                continue;
            }
            let Some(disp) = entry.get(at + 2..at + 6) else {
                continue;
            };
            let disp = i32::from_le_bytes([disp[0], disp[1], disp[2], disp[3]]);
            let entry_vaddr = section.vaddr.wrapping_add((index * entry_size) as u64);
            let next = entry_vaddr.wrapping_add((at + 6) as u64);
            let slot = next.wrapping_add(disp as i64 as u64);
            if let Some(name) = by_slot.get(&slot) {
                entries.push((name.to_string(), entry_vaddr));
            }
        }
    }
    entries
}
