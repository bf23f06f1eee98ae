//! Object files as plain data: relocatable objects become atoms, symbols and relocations;
//! linked images (the running executable, its shared libraries) become symbol tables, GOT
//! slots, TLS layout and DWARF compile units.
//!
//! This is the only crate that parses object files. Everything it returns is owned, plain data
//! (no borrowed `object` types escape), so `hot-link` can be tested on hand-built values and
//! the rest of the engine never needs to know the file format.
//!
//! Three kinds of address appear here and they are never mixed:
//! - [`AtomOffset`]: an offset inside one atom (one input section) of a relocatable object;
//! - link-time virtual addresses of a linked image (`u64` fields named `vaddr`), which become
//!   runtime addresses only after adding the module's load bias (done in `hot-link`).

pub mod diff;
mod dwarf;
mod eh_frame;
mod elf;
pub mod image;
mod index;
pub mod jit;
mod lines;
mod macho;
pub mod macho_exports;
mod macho_image;
pub mod names;
pub mod reloc;
pub mod shared;
pub mod types;

pub use diff::{
    atom_identity, changed_functions, counterpart_differs, is_compiler_table,
    is_compiler_table_name, is_ipa_clone, is_odr_indicator, matched_atoms, unit_name, AtomDiff,
    AtomMatch, ChangeReason, NamedAtom,
};

pub use image::{
    CompileUnit, GotSlot, GotSlotKind, ImageSymbol, IrelativeSlot, LinkTimeOptimized, LinkedImage,
    SectionData, TlsSegment, TranslationUnitId, Visibility, STATEMENT_WINDOW,
};
pub use index::IndexCell;
pub use names::{display_name, display_names};
pub use reloc::RelocKind;
pub use shared::{Name, Shared};

use std::path::{Path, PathBuf};

/// Dense index of an atom inside one [`Object`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtomId(pub u32);

/// Dense index of a symbol inside one [`Object`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolId(pub u32);

/// An offset inside one atom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtomOffset(pub u64);

/// The architecture an object was built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Machine {
    #[default]
    X86_64,
    Aarch64,
}

/// The container format an object was read from. Relocation kinds are shared, but the raw
/// types ([`Reloc::raw_type`]) are numbered by the format: ELF `r_type` or Mach-O `r_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ObjectFormat {
    #[default]
    Elf,
    /// Mach-O (`MH_OBJECT`): atoms are the `subsections_via_symbols` pieces of sections,
    /// symbol names carry their leading `_`, and section names read `__TEXT,__text`.
    MachO,
}

/// What an atom holds, which decides the arena it goes to and whether its runtime value may
/// be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomKind {
    /// Executable code (`.text*`).
    Text,
    /// Read-only data: `.rodata*`, and `.data.rel.ro*` (writable in the object, read-only
    /// after RELRO in the image).
    ReadOnly,
    /// Initialised writable data (`.data*`).
    Data,
    /// Zero-initialised writable data (`.bss*`, and common symbols turned into atoms).
    Bss,
    /// Thread-local initialised data (`.tdata*`).
    TlsData,
    /// Thread-local zero-initialised data (`.tbss*`).
    TlsBss,
}

impl AtomKind {
    pub fn is_writable_data(self) -> bool {
        matches!(self, AtomKind::Data | AtomKind::Bss)
    }
    pub fn is_tls(self) -> bool {
        matches!(self, AtomKind::TlsData | AtomKind::TlsBss)
    }
}

/// One allocatable input section of a relocatable object. Compiled with
/// `-ffunction-sections -fdata-sections`, this is one function or one variable (plus
/// anonymous sections such as `.rodata.str1.1` or `.rodata.foo` jump tables).
#[derive(Clone, Debug)]
pub struct Atom {
    /// The input section name, e.g. `.text.foo`, `.text.unlikely.foo`, `.rodata.str1.1`.
    pub section_name: Name,
    /// The section's index in the object file (for diagnostics and DWARF line keys).
    pub section_index: usize,
    pub kind: AtomKind,
    pub align: u64,
    pub size: u64,
    /// Section contents; empty for `Bss`/`TlsBss`. A range of the object's file.
    pub bytes: Shared<u8>,
    /// `SHF_MERGE | SHF_STRINGS`: anonymous string literals, never bound by name.
    pub merge_strings: bool,
    /// `SHF_GROUP`: a member of a section group (a COMDAT: C++ inline functions and
    /// variables, template instances). The linker keeps one copy of each group, so several
    /// files defining its symbols is no multiple definition.
    pub comdat: bool,
    /// Relocations applying to this atom, sorted by offset (a range of the object's one
    /// table of relocations).
    pub relocs: Shared<Reloc>,
    /// Symbols defined inside this atom (not the section symbol), sorted by offset.
    pub symbols: Shared<SymbolId>,
}

/// Where a symbol is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolDef {
    /// Defined in an atom of this object, at an offset.
    Atom { atom: AtomId, offset: AtomOffset },
    /// Undefined here: resolved against the running image.
    Undefined,
    /// `SHN_ABS`.
    Absolute(u64),
    /// A common symbol (`-fcommon`); allocated like a bss variable.
    Common { size: u64, align: u64 },
    /// Defined in a section that is not an atom (debug info, notes, discarded groups).
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolKind {
    Function,
    Object,
    Tls,
    /// `STT_GNU_IFUNC`.
    Ifunc,
    Section,
    File,
    NoType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Local,
    Global,
    Weak,
}

#[derive(Clone, Debug)]
pub struct Symbol {
    /// The name as in the symbol table (empty for section symbols; see `section_name`).
    pub name: Name,
    pub kind: SymbolKind,
    pub binding: Binding,
    /// `STV_HIDDEN` / `STV_INTERNAL` / `STV_PROTECTED`: never interposed.
    pub hidden: bool,
    pub def: SymbolDef,
    pub size: u64,
}

/// One relocation: where it applies, the raw ELF type next to its decoded meaning, the symbol
/// it refers to and its addend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reloc {
    pub offset: AtomOffset,
    /// The raw `r_type` (e.g. `R_X86_64_PLT32` = 4).
    pub raw_type: u32,
    pub kind: RelocKind,
    pub symbol: SymbolId,
    pub addend: i64,
}

/// A position in a source file, from the object's DWARF: a line-table row, or the declaration
/// attributes of a variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLine {
    pub file: PathBuf,
    /// 1-based.
    pub line: u32,
    /// 1-based, 0 when unknown.
    pub column: u32,
}

/// A parsed relocatable object.
///
/// `Object::default()` is an empty x86-64 object, handy for building test values with
/// `Object { atoms, symbols, ..Default::default() }`.
#[derive(Clone, Debug, Default)]
pub struct Object {
    pub machine: Machine,
    /// Added: ELF or Mach-O (decides how [`Reloc::raw_type`] is named).
    pub format: ObjectFormat,
    /// Added: the object file as read, which atoms, FDEs and debug sections are ranges of
    /// (empty for an object built by hand). Writing it out gives back the object.
    pub file: Shared<u8>,
    pub atoms: Vec<Atom>,
    pub symbols: Vec<Symbol>,
    /// `DW_AT_producer` of the object's compile unit, if it has DWARF.
    pub producer: Option<String>,
    /// `DW_AT_name` / `DW_AT_comp_dir` of the compile unit.
    pub cu_name: Option<String>,
    pub cu_comp_dir: Option<String>,
    /// Added: for each local symbol (indexed by [`SymbolId`]) that is a function-local static
    /// variable, the name of the function declaring it, from DWARF (`DW_TAG_variable` with a
    /// `DW_OP_addr` location nested in a `DW_TAG_subprogram`). gcc names such a variable
    /// `calls.0`, and the numeric suffix changes when statics are added elsewhere in the file,
    /// so matching goes by (enclosing function, name without suffix); see
    /// [`Object::local_static_scope`] and [`Object::match_name`]. Empty or shorter than
    /// `symbols` when unknown.
    pub local_static_scopes: Vec<Option<String>>,
    /// Added: non-fatal problems met while reading the object, e.g. DWARF that could not be
    /// read (then `lines` are missing, but atoms and relocations are complete).
    pub warnings: Vec<String>,
    /// Added: the records of `.eh_frame` (CIEs and FDEs), in section order; empty when the
    /// object has none or it could not be read (then a warning says why). `.eh_frame` is not
    /// an atom: the linker copies the FDEs of the functions it places (see
    /// [`Object::fdes_of`]) with their CIEs into a table of its own.
    pub eh_frame: Vec<EhRecord>,
    /// Added: the object's static constructors (`.init_array`, `.init_array.N`: C++ globals
    /// with constructors, `__attribute__((constructor))`), in the order the startup code of a
    /// program linked from this object alone would run them: prioritised ones by priority,
    /// then the plain `.init_array`, each section in entry order. They already ran at launch
    /// for a unit of the image; a unit linked in new runs them once itself.
    pub constructors: Vec<Constructor>,
    /// Added: the object's debug sections (with their relocations), kept so that what a
    /// save rarely needs is read on demand, for the atoms and functions it concerns only:
    /// line rows ([`Object::lines_of`]), where variables are declared
    /// ([`Object::decl_line`]), type layouts and function signatures
    /// ([`Object::abi_facts`], [`Object::type_users`]). `None` without DWARF.
    pub dwarf: Option<std::sync::Arc<types::ObjectDwarf>>,
    /// Added: the identities and FDEs of the atoms, indexed on the first diff or FDE query
    /// and kept (see `index.rs`); a clone starts without.
    pub index: IndexCell,
}

/// One entry of an `.init_array` section: the function it points at, as a symbol (gas
/// writes a section symbol for a local function) and an addend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Constructor {
    /// `N` of `.init_array.N` (lower runs first); `None` for the plain `.init_array`, which
    /// runs after every prioritised one.
    pub priority: Option<u32>,
    pub symbol: SymbolId,
    pub addend: i64,
}

/// One record of `.eh_frame`: a CIE or an FDE, whole (from its length word to its end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EhRecord {
    /// Offset of the record in the object's `.eh_frame`.
    pub offset: u64,
    /// The record's bytes, length word included, unrelocated (a range of the object's file).
    pub bytes: Shared<u8>,
    /// Relocations inside the record, with offsets from the record's start, sorted: an FDE's
    /// `pc_begin` (at 8) and LSDA pointer, a CIE's personality pointer.
    pub relocs: Shared<Reloc>,
    pub kind: EhRecordKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EhRecordKind {
    Cie,
    /// `cie`: index (in [`Object::eh_frame`]) of the CIE it uses; `function`: the atom its
    /// `pc_begin` is relocated against.
    Fde {
        cie: usize,
        function: Option<AtomId>,
    },
}

/// Why an object could not be read. Callers branch on it (a non-ELF file, an unsupported
/// architecture and a corrupt object are reported differently).
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{path}: not an ELF object file")]
    NotElf { path: PathBuf },
    #[error("{path}: unsupported architecture {arch}")]
    UnsupportedArch { path: PathBuf, arch: String },
    #[error("{path}: expected a relocatable object (ET_REL), found {found}")]
    NotRelocatable { path: PathBuf, found: String },
    #[error("{path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("{path}: the executable is stripped (no .symtab); hot-lsp needs its symbol table — rebuild without -s / strip")]
    Stripped { path: PathBuf },
}

impl Object {
    /// Parse a relocatable object: ELF, or a 64-bit Mach-O `MH_OBJECT` (x86-64, arm64).
    /// `path` is used only in error messages.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Object, ObjectError> {
        if macho::is_macho(bytes) {
            return macho::parse_relocatable(path, bytes);
        }
        elf::parse_relocatable(path, bytes.to_vec())
    }

    /// [`Object::parse`] of the bytes of a file just read, which the object keeps
    /// ([`Object::file`]; its atoms' bytes are ranges of it) without copying them.
    pub fn parse_owned(path: &Path, bytes: Vec<u8>) -> Result<Object, ObjectError> {
        if macho::is_macho(&bytes) {
            return macho::parse_relocatable(path, &bytes);
        }
        elf::parse_relocatable(path, bytes)
    }

    /// The name of a relocation's raw type in this object's format, for diagnostics.
    pub fn reloc_type_name(&self, raw_type: u32) -> String {
        match self.format {
            ObjectFormat::Elf => RelocKind::raw_name(self.machine, raw_type),
            ObjectFormat::MachO => RelocKind::macho_name(self.machine, raw_type),
        }
    }

    pub fn atom(&self, id: AtomId) -> &Atom {
        &self.atoms[id.0 as usize]
    }

    pub fn symbol(&self, id: SymbolId) -> &Symbol {
        &self.symbols[id.0 as usize]
    }

    /// The line rows of an atom, sorted by offset: `(offset, line)`, from the DWARF line
    /// program, whose sequences start at 0 of each function section (keyed by the section
    /// the sequence was relocated against, not by raw address). Read on the first call for
    /// the atom: a save asks only about the functions it places or reports on.
    pub fn lines_of(&self, atom: AtomId) -> &[(AtomOffset, SourceLine)] {
        match &self.dwarf {
            Some(dwarf) => dwarf.rows_of(atom),
            None => &[],
        }
    }

    /// Every atom's line rows from one full pass over the line programs, the way
    /// [`Object::lines_of`] falls back to when an atom's own sequence cannot be read alone.
    /// For tests that check the two agree.
    #[doc(hidden)]
    pub fn lines_by_full_pass(&self) -> Vec<Vec<(AtomOffset, SourceLine)>> {
        match &self.dwarf {
            Some(dwarf) if dwarf.readable => {
                let mut rows = dwarf.full_rows().to_vec();
                rows.resize(self.atoms.len(), Vec::new());
                rows
            }
            _ => vec![Vec::new(); self.atoms.len()],
        }
    }

    /// Whether [`Object::lines_of`] had to read every atom's rows in one full pass (it reads
    /// the atom's own sequences otherwise). For tests.
    #[doc(hidden)]
    pub fn lines_fell_back(&self) -> bool {
        self.dwarf.as_ref().is_some_and(|d| d.lines_full_read())
    }

    /// The source line of an offset inside an atom (the last row at or before it).
    pub fn line_of(&self, atom: AtomId, offset: AtomOffset) -> Option<&SourceLine> {
        let rows = self.lines_of(atom);
        let idx = rows.partition_point(|(o, _)| *o <= offset);
        if idx == 0 {
            return None;
        }
        Some(&rows[idx - 1].1)
    }

    /// Where a variable is declared in the source (the defining declaration, from DWARF):
    /// globals, file statics and function-local statics, thread-locals included. `None` for
    /// functions, for symbols the object's DWARF does not describe, and without `-g`.
    /// Read from DWARF on the first call (a walk of every DIE), kept afterwards.
    pub fn decl_line(&self, id: SymbolId) -> Option<&SourceLine> {
        self.dwarf
            .as_ref()?
            .decl_lines(self)
            .get(id.0 as usize)?
            .as_ref()
    }

    /// The name to show for a symbol: its own name, or for a section symbol (whose name is
    /// empty in [`Symbol::name`]) the name of the section it stands for, e.g. `.rodata.str1.1`.
    pub fn symbol_name(&self, id: SymbolId) -> &str {
        let sym = self.symbol(id);
        if sym.kind == SymbolKind::Section {
            if let SymbolDef::Atom { atom, .. } = sym.def {
                return &self.atom(atom).section_name;
            }
        }
        &sym.name
    }

    /// The atom made from the section with ELF index `section_index`, if that section is an
    /// atom. Atoms are stored in section order, so this is a binary search.
    pub fn atom_by_section_index(&self, section_index: usize) -> Option<AtomId> {
        self.atoms
            .binary_search_by_key(&section_index, |a| a.section_index)
            .ok()
            .map(|i| AtomId(i as u32))
    }

    /// Where a symbol is defined, if it is defined in an atom of this object.
    pub fn symbol_location(&self, id: SymbolId) -> Option<(AtomId, AtomOffset)> {
        match self.symbols.get(id.0 as usize)?.def {
            SymbolDef::Atom { atom, offset } => Some((atom, offset)),
            _ => None,
        }
    }

    /// Where the function defined as `name` in this object starts (the first such symbol
    /// defined in an atom).
    pub fn function_location(&self, name: &str) -> Option<(AtomId, AtomOffset)> {
        self.symbols
            .iter()
            .filter(|s| s.name == name && s.kind == SymbolKind::Function)
            .find_map(|s| match s.def {
                SymbolDef::Atom { atom, offset } => Some((atom, offset)),
                _ => None,
            })
    }

    /// For a function-local static variable: the function that declares it (from DWARF).
    pub fn local_static_scope(&self, id: SymbolId) -> Option<&str> {
        self.local_static_scopes.get(id.0 as usize)?.as_deref()
    }

    /// The name a symbol is matched by across compiles of the same file (and against the
    /// image's local symbols): the plain name for functions and variables, and for a
    /// function-local static `calls.0` declared in `tick` the key `tick/calls` (gcc's numeric
    /// suffix is not stable between compiles). A local static whose function is unknown is
    /// matched by its name with the suffix stripped. clang names such statics `tick.calls`,
    /// which is stable and kept as it is.
    pub fn match_name(&self, id: SymbolId) -> String {
        self.match_name_ref(id).into_owned()
    }

    /// [`Object::match_name`], borrowed from the symbol when it is its name (the diff asks
    /// for every atom and every relocation target; most names are their own identity).
    pub(crate) fn match_name_ref(&self, id: SymbolId) -> std::borrow::Cow<'_, str> {
        let sym = self.symbol(id);
        if sym.binding != Binding::Local {
            return std::borrow::Cow::Borrowed(&sym.name);
        }
        let Some(base) = diff::strip_numeric_suffix(&sym.name) else {
            return std::borrow::Cow::Borrowed(&sym.name);
        };
        match self.local_static_scope(id) {
            Some(scope) => std::borrow::Cow::Owned(format!("{scope}/{base}")),
            None => std::borrow::Cow::Borrowed(base),
        }
    }

    /// The FDEs (indexes into [`Object::eh_frame`]) that describe code of `atom`, in
    /// section order (from the object's index, built on the first query).
    pub fn fdes_of(&self, atom: AtomId) -> impl Iterator<Item = usize> + '_ {
        self.index().fdes_of(atom)
    }

    /// The object's tables of identities and FDEs (`index.rs`), built on the first call.
    pub(crate) fn index(&self) -> &index::ObjectIndex {
        self.index.get_or_build(self)
    }

    /// The first named symbol defined in an atom (the function or variable it holds).
    /// Assembler-local labels (`.LC0`, which gas keeps as symbols in mergeable sections),
    /// aarch64 mapping symbols (`$x`, `$d`, `$x.12`) and Mach-O private labels (`ltmp0`,
    /// `l_.str`: C names carry a leading `_` there) are not names of anything and are skipped.
    pub fn primary_symbol(&self, atom: AtomId) -> Option<SymbolId> {
        self.atom(atom).symbols.iter().copied().find(|&s| {
            let sym = self.symbol(s);
            let private = self.format == ObjectFormat::MachO && macho::is_private_label(&sym.name);
            !sym.name.is_empty()
                && !is_assembler_label(&sym.name)
                && !private
                && !matches!(sym.kind, SymbolKind::Section | SymbolKind::File)
        })
    }
}

/// Whether a symbol name is an assembler artefact rather than the name of a function or
/// variable: a local label kept in the symbol table (`.L...`) or an ARM/aarch64 mapping
/// symbol (`$x`, `$d`, `$a`, `$t`, optionally followed by `.suffix`).
pub fn is_assembler_label(name: &str) -> bool {
    if name.starts_with(".L") {
        return true;
    }
    let bytes = name.as_bytes();
    bytes.len() >= 2
        && bytes[0] == b'$'
        && matches!(bytes[1], b'x' | b'd' | b'a' | b't')
        && (bytes.len() == 2 || bytes[2] == b'.')
}
