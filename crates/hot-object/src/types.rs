//! Type layouts and function signatures from DWARF, read on demand for the ABI checks of a
//! swap: the layout (size, member offsets) of each struct, class or union that the swapped
//! functions use, their parameter and return types, and which functions and variables of an
//! object or of the running executable use a given type.
//!
//! Nothing here runs when an object is parsed: [`Object`] keeps its debug sections
//! ([`ObjectDwarf`]) and the tables below are built only when the session checks a swap.
//! Each compile unit is read in one depth-first pass into an in-memory table of its type
//! DIEs ([`UnitTypes`]); rendering, layouts and "which types does this reach" are computed
//! from that table, never by re-reading DIEs.
//!
//! Types are matched across objects by their display name: `struct shape` in C (the tag
//! kind is part of a C type's name), the qualified name (`geo::Shape`) in C++. An anonymous
//! aggregate named by a typedef (`typedef struct { .. } point_t;`) takes the typedef's name.
//! A type reaches another through pointers, references, qualifiers, typedefs, arrays,
//! members, base classes and function-pointer types, so a function that holds a
//! `struct list *` uses every type a `struct list` points to.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gimli::{Reader, SectionId, UnitOffset};
use rustc_hash::FxHashMap as HashMap;

use crate::dwarf::{self, DebugRelocs, DwarfReader, LoadedSections, StaticStorage};
use crate::{AtomId, Object, SourceLine, SymbolDef};

/// The debug sections of a relocatable object and their relocations, owned, so that DWARF
/// can be read after the object file itself is gone, and what was read from them on demand.
pub struct ObjectDwarf {
    sections: Vec<(SectionId, usize, crate::shared::Shared<u8>)>,
    endian: gimli::RunTimeEndian,
    pub(crate) relocs: HashMap<usize, DebugRelocs>,
    /// The atom made from each section index, to map relocated addresses back to atoms.
    pub(crate) section_atom: Vec<Option<AtomId>>,
    /// The section index of each atom.
    pub(crate) atom_section: Vec<usize>,
    /// Whether the units could be walked at parse time; if not, no line rows or declaration
    /// lines are given (types may still be).
    pub(crate) readable: bool,
    /// The type table of each named compile unit, read on the first ABI query and kept: the
    /// object of one save is the baseline of the next, whose checks then read only the new
    /// object's DWARF.
    tables: OnceLock<Vec<UnitTypes>>,
    /// The tables of the last functions [`Object::abi_facts`] asked about, while the whole
    /// tables are not read.
    #[allow(clippy::type_complexity)]
    partial: std::sync::Mutex<Option<(Vec<String>, std::sync::Arc<Vec<UnitTypes>>)>>,
    /// Line rows, per atom, read on the first query about that atom.
    pub(crate) lines: crate::lines::LazyLines,
    /// Declaration lines of the variable symbols, read on the first query.
    pub(crate) decls: OnceLock<Vec<Option<SourceLine>>>,
}

impl std::fmt::Debug for ObjectDwarf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: usize = self.sections.iter().map(|(_, _, b)| b.len()).sum();
        write!(
            f,
            "ObjectDwarf({} sections, {bytes} bytes)",
            self.sections.len()
        )
    }
}

impl ObjectDwarf {
    pub(crate) fn keep(
        file: Option<&std::sync::Arc<Vec<u8>>>,
        loaded: &LoadedSections<'_>,
        mut relocs: HashMap<usize, DebugRelocs>,
        section_atom: Vec<Option<AtomId>>,
        atoms: usize,
        readable: bool,
    ) -> Self {
        // A section stored as is stays a range of the object's file; only a compressed one
        // is kept in a buffer of its own.
        let sections: Vec<(SectionId, usize, crate::shared::Shared<u8>)> = loaded
            .sections
            .iter()
            .map(|(id, index, data)| {
                let kept = match (data, file) {
                    (std::borrow::Cow::Borrowed(part), Some(file)) => {
                        match crate::elf::range_of(file, part) {
                            Some(range) => crate::shared::Shared::new(file, range),
                            None => crate::shared::Shared::from(&part[..]),
                        }
                    }
                    _ => crate::shared::Shared::from(&data[..]),
                };
                (*id, *index, kept)
            })
            .collect();
        relocs.retain(|index, _| sections.iter().any(|(_, i, _)| i == index));
        let mut atom_section = vec![usize::MAX; atoms];
        for (section, atom) in section_atom.iter().enumerate() {
            if let Some(slot) = atom.and_then(|a| atom_section.get_mut(a.0 as usize)) {
                *slot = section;
            }
        }
        ObjectDwarf {
            sections,
            endian: loaded.endian,
            relocs,
            section_atom,
            atom_section,
            readable,
            tables: OnceLock::new(),
            partial: std::sync::Mutex::new(None),
            lines: crate::lines::LazyLines::new(atoms),
            decls: OnceLock::new(),
        }
    }

    pub(crate) fn loaded(&self) -> LoadedSections<'_> {
        LoadedSections {
            sections: self
                .sections
                .iter()
                .map(|(id, index, data)| (*id, *index, std::borrow::Cow::Borrowed(&data[..])))
                .collect(),
            endian: self.endian,
        }
    }

    /// The bytes of one kept section and its index in the object.
    pub(crate) fn section(&self, id: SectionId) -> Option<(usize, &[u8])> {
        self.sections
            .iter()
            .find(|(sid, _, _)| *sid == id)
            .map(|(_, index, data)| (*index, &data[..]))
    }

    pub(crate) fn endian(&self) -> gimli::RunTimeEndian {
        self.endian
    }

    /// The type tables [`Object::abi_facts`] reads for `functions` when the whole tables
    /// were not read: see [`UnitTypes::read`]. The last set asked about is kept.
    fn partial_tables(
        &self,
        object: &Object,
        dwarf: &Dwarf<'_>,
        functions: &HashSet<&str>,
    ) -> Result<std::sync::Arc<Vec<UnitTypes>>, String> {
        let mut key: Vec<String> = functions.iter().map(|n| n.to_string()).collect();
        key.sort();
        let mut last = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((names, tables)) = last.as_ref() {
            if *names == key {
                return Ok(tables.clone());
            }
        }
        // The code sections of the functions asked about, and where `.debug_info` refers
        // to them (their DW_AT_low_pc).
        // FxHash: every function of the object is looked up (SipHash showed in profiles).
        let asked: rustc_hash::FxHashSet<&str> = functions.iter().copied().collect();
        let mut sections: Vec<usize> = object
            .symbols
            .iter()
            .filter(|s| s.kind == crate::SymbolKind::Function && asked.contains(&*s.name))
            .filter_map(|s| match s.def {
                crate::SymbolDef::Atom { atom, .. } => {
                    object.atoms.get(atom.0 as usize).map(|a| a.section_index)
                }
                _ => None,
            })
            .collect();
        sections.sort_unstable();
        let refs: Vec<u64> = self
            .section(SectionId::DebugInfo)
            .and_then(|(index, _)| self.relocs.get(&index))
            .map(|relocs| {
                relocs
                    .iter()
                    .filter(|(_, t)| {
                        t.section
                            .is_some_and(|s| sections.binary_search(&s).is_ok())
                    })
                    .map(|&(offset, _)| offset)
                    .collect()
            })
            .unwrap_or_default();
        // The scan reads little-endian words (every target hot-lsp supports).
        let little = self.endian == gimli::RunTimeEndian::Little;
        let raw = self
            .section(SectionId::DebugInfo)
            .filter(|_| little)
            .map(|(index, info)| RawInfo {
                info,
                relocs: self.relocs.get(&index),
                name_offsets: self
                    .section(SectionId::DebugStr)
                    .map(|(_, strings)| name_offsets(strings, functions))
                    .unwrap_or_default(),
            });
        let wanted = Wanted {
            names: functions,
            refs,
            raw,
        };
        let mut tables = Vec::new();
        each_named_unit(dwarf, |_, _, unit| {
            tables.push(UnitTypes::read(dwarf, unit, Some(&wanted))?);
            Ok(())
        })?;
        let tables = std::sync::Arc::new(tables);
        *last = Some((key, tables.clone()));
        Ok(tables)
    }

    /// [`crate::Object::decl_line`]'s table, read on its first call.
    pub(crate) fn decl_lines(&self, object: &Object) -> &[Option<SourceLine>] {
        self.decls.get_or_init(|| {
            if !self.readable {
                return Vec::new();
            }
            let loaded = self.loaded();
            let Ok(dwarf) = dwarf::make_dwarf(&loaded, &self.relocs) else {
                return Vec::new();
            };
            dwarf::decl_lines(&dwarf, &self.section_atom, object).unwrap_or_default()
        })
    }
}

/// The layout of a struct, class or union.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeLayout {
    /// The display name: `struct shape`, `geo::Shape`.
    pub name: String,
    /// `DW_AT_byte_size`; `None` for a declaration (an opaque `struct shape;`).
    pub size: Option<u64>,
    /// Members and base classes in declaration order.
    pub members: Vec<MemberLayout>,
    /// Where the type is declared (`DW_AT_decl_file` / `DW_AT_decl_line`).
    pub decl: Option<SourceLine>,
}

impl TypeLayout {
    /// Whether two layouts describe the same bytes: size and members (names, offsets and
    /// member types); where each is declared does not matter.
    pub fn same_layout(&self, other: &TypeLayout) -> bool {
        self.size == other.size && self.members == other.members
    }
}

/// One member (or base class, named `<base Name>`) of an aggregate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberLayout {
    pub name: String,
    /// Byte offset (`DW_AT_data_member_location`); 0 for union members. For a bit field, the
    /// byte its first bit is in (DWARF 5 gives it no byte offset, DWARF 4 that of its
    /// storage unit): the same field compares equal whichever version described it.
    pub offset: u64,
    /// For a bit field: the offset of its first bit from the start of the aggregate (DWARF 4+
    /// `DW_AT_data_bit_offset`; from the DWARF 2/3 `DW_AT_bit_offset`, counted from the
    /// storage unit's most significant bit, with its `DW_AT_byte_size` and the member's
    /// `DW_AT_bit_size`, for a little-endian target).
    pub bit_offset: Option<u64>,
    /// For a bit field: its width in bits (`DW_AT_bit_size`).
    pub bit_size: Option<u64>,
    /// The member's type, rendered with typedefs resolved.
    pub type_name: String,
}

/// A function's parameter and return types, rendered with typedefs resolved (`long`, not
/// `ssize_t`), so that two compiles compare equal exactly when the calling convention can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub ret: String,
    pub params: Vec<String>,
    /// `...` (`DW_TAG_unspecified_parameters`).
    pub variadic: bool,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut params = self.params.join(", ");
        if self.variadic {
            params.push_str(if self.params.is_empty() {
                "..."
            } else {
                ", ..."
            });
        }
        if params.is_empty() {
            params.push_str("void");
        }
        write!(f, "{} ({params})", self.ret)
    }
}

/// What the DWARF says about one function defined in an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionAbi {
    /// The symbol name (the linkage name for C++).
    pub name: String,
    pub signature: Signature,
    /// Display names of the aggregates its parameters, return value and locals reach.
    pub types: Vec<String>,
    /// Where it is declared (the definition's `DW_AT_decl_line`).
    pub decl: Option<SourceLine>,
}

/// The signatures of some functions of an object and the layouts of the types they use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AbiFacts {
    pub functions: Vec<FunctionAbi>,
    /// By display name; the first definition of a name in the object wins.
    pub layouts: BTreeMap<String, TypeLayout>,
}

impl AbiFacts {
    pub fn function(&self, name: &str) -> Option<&FunctionAbi> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// Whether a [`TypeUser`] is code or data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserKind {
    /// A function with code whose parameters, return value or locals reach the type.
    Function,
    /// A variable with static storage (an existing object) whose type reaches it.
    Variable,
}

/// A function or variable that uses one of the types asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeUser {
    /// The symbol name (linkage name for C++); for a function-local static, `name` in
    /// `function` is written `function/name`.
    pub name: String,
    pub kind: UserKind,
    /// Which of the types asked about it reaches (the first one found).
    pub type_name: String,
    /// That type's layout as this compile unit sees it (`None`: only declared there).
    pub layout: Option<TypeLayout>,
    /// Index of the compile unit (counting only units with a name, as
    /// [`crate::LinkedImage::compile_units`] does), and its `DW_AT_name`.
    pub unit: usize,
    pub unit_name: String,
}

/// A function whose frame holds (as a parameter or automatic local, by value or through a
/// pointer, reference, array or member) one of the types asked about: while a thread runs
/// it, an object of that type exists on the thread's stack or is reached from there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameHolder {
    /// The function's symbol name (linkage name for C++).
    pub function: String,
    /// The parameter or local's name; `inlined/name` for one of a call inlined into the
    /// function (its frame is the function's).
    pub variable: String,
    /// Its type as C writes it (`yaml_emitter_t *`).
    pub variable_type: String,
    /// Which of the types asked about it reaches (the first one found).
    pub type_name: String,
    /// That type's layout as this compile unit sees it (`None`: only declared there).
    pub layout: Option<TypeLayout>,
    /// The compile unit's `DW_AT_name`.
    pub unit_name: String,
    /// Where the function's code is: its frames are found by these addresses on a stack.
    pub code: HolderCode,
}

/// The code of a [`FrameHolder`], from its own (concrete) subprogram DIE: `DW_AT_low_pc` and
/// `DW_AT_high_pc`, or `DW_AT_ranges`, which cover every part of it (a `.cold` part split
/// off). Not looked up by name: the DIE of gcc's IPA clone `run.constprop.0` or split part
/// `run.part.0` is named `run` (after its abstract origin), which is not its symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HolderCode {
    /// In a linked image ([`image_type_uses`]): its link-time address ranges (none: the
    /// linker discarded it).
    Addresses(Vec<Range<u64>>),
    /// In a relocatable object ([`Object::frame_holders`]): the function symbols whose code
    /// its ranges are in (`run.constprop.0`, `run.cold`), which name the bodies placed.
    Symbols(Vec<String>),
    /// Its code could not be located, and why: the caller must assume any frame holds it.
    Unknown(String),
}

impl Object {
    /// The signatures of the named functions (symbol names) defined in this object, and
    /// the layouts of every aggregate they reach. Empty without DWARF.
    pub fn abi_facts(&self, functions: &HashSet<&str>) -> Result<AbiFacts, String> {
        let Some(kept) = &self.dwarf else {
            return Ok(AbiFacts::default());
        };
        let loaded = kept.loaded();
        let dwarf = dwarf::make_dwarf(&loaded, &kept.relocs).map_err(|e| e.to_string())?;
        let mut facts = AbiFacts::default();
        // The whole tables when an earlier query read them; else tables of the functions
        // asked about only (a save asks about the one or two it swaps, of 2,000), kept for
        // the same question about this object as the next save's baseline.
        let partial;
        let tables: &[UnitTypes] = match kept.tables.get() {
            Some(tables) => tables,
            None => {
                partial = kept.partial_tables(self, &dwarf, functions)?;
                &partial
            }
        };
        each_named_unit(&dwarf, |index, _, unit| {
            if let Some(table) = tables.get(index) {
                table.add_facts(&dwarf, unit, functions, &mut facts);
            }
            Ok(())
        })?;
        Ok(facts)
    }

    /// Every function with code and every variable with static storage of this object
    /// whose types reach one of `types` (display names).
    pub fn type_users(&self, types: &HashSet<&str>) -> Result<Vec<TypeUser>, String> {
        let Some(kept) = &self.dwarf else {
            return Ok(Vec::new());
        };
        let loaded = kept.loaded();
        let dwarf = dwarf::make_dwarf(&loaded, &kept.relocs).map_err(|e| e.to_string())?;
        let mut users = Vec::new();
        for_each_unit(&dwarf, Some(&kept.tables), |index, name, unit, table| {
            table.users(&dwarf, unit, types, index, name, &mut users);
        })?;
        Ok(users)
    }
}

impl Object {
    /// The functions with code of this object whose frames hold one of `types`
    /// ([`FrameHolder`]).
    pub fn frame_holders(&self, types: &HashSet<&str>) -> Result<Vec<FrameHolder>, String> {
        let Some(kept) = &self.dwarf else {
            return Ok(Vec::new());
        };
        let loaded = kept.loaded();
        let dwarf = dwarf::make_dwarf(&loaded, &kept.relocs).map_err(|e| e.to_string())?;
        let mut holders = Vec::new();
        for_each_unit(&dwarf, Some(&kept.tables), |_, name, unit, table| {
            table.frame_holders(&dwarf, unit, types, name, &mut holders);
        })?;
        for holder in &mut holders {
            if let HolderCode::Addresses(ranges) = &holder.code {
                holder.code = self.code_symbols(kept, ranges);
            }
        }
        Ok(holders)
    }

    /// The function symbols whose code overlaps `ranges` (relocated DWARF addresses,
    /// `section << 40 | offset`), as [`HolderCode::Symbols`]; none found is
    /// [`HolderCode::Unknown`].
    fn code_symbols(&self, kept: &ObjectDwarf, ranges: &[Range<u64>]) -> HolderCode {
        let mut names: Vec<String> = Vec::new();
        for range in ranges {
            let Some((atom, start)) = dwarf::atom_of_address(&kept.section_atom, range.start)
            else {
                return HolderCode::Unknown(format!(
                    "its code range {:#x}..{:#x} is in no section of the object",
                    range.start, range.end
                ));
            };
            let end = start.saturating_add(range.end.saturating_sub(range.start));
            let Some(atom) = self.atoms.get(atom.0 as usize) else {
                continue;
            };
            for &id in &atom.symbols {
                let Some(symbol) = self.symbols.get(id.0 as usize) else {
                    continue;
                };
                let SymbolDef::Atom { offset, .. } = symbol.def else {
                    continue;
                };
                // A symbol of size 0 (hand-written code) is taken as reaching the range.
                let covers = offset.0 < end && offset.0.saturating_add(symbol.size.max(1)) > start;
                if covers
                    && symbol.kind == crate::SymbolKind::Function
                    && !names.iter().any(|n| *n == symbol.name)
                {
                    names.push(symbol.name.to_string());
                }
            }
        }
        if names.is_empty() {
            HolderCode::Unknown("no function symbol of the object holds its code".to_string())
        } else {
            HolderCode::Symbols(names)
        }
    }
}

/// [`Object::type_users`] for a linked executable (its bytes as read from the running
/// program's file): the functions and variables of every compile unit except those in
/// `skip` (the units a swap recompiles) that use one of `types`. Reads the whole
/// `.debug_info`, so the session calls it only once a changed layout was found.
pub fn image_type_users(
    path: &Path,
    bytes: &[u8],
    types: &HashSet<&str>,
    skip: &[usize],
) -> Result<Vec<TypeUser>, String> {
    image_type_uses(path, bytes, types, skip).map(|(users, _)| users)
}

/// [`image_type_users`] and, from every compile unit (`skip` included: the old bodies of
/// the functions a swap recompiles keep running in the frames they have), the functions
/// whose frames hold one of `types` ([`FrameHolder`]), in one read of `.debug_info`.
/// [`Object::abi_facts`] of a linked image's compile unit `unit` (counted as
/// [`crate::LinkedImage::compile_units`] does): the signatures of `functions` and the layouts
/// they reach as the running program was built. What a save without a baseline (its file,
/// or a header it includes, changed after the build) compares the new object with: the
/// image's DWARF describes the code that runs. Empty facts when the unit is not there.
pub fn image_abi_facts(
    path: &Path,
    bytes: &[u8],
    unit: usize,
    functions: &HashSet<&str>,
) -> Result<AbiFacts, String> {
    let file = dwarf::File::parse(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let loaded = dwarf::load_sections(&file)?;
    let no_relocs = HashMap::default();
    let dwarf = dwarf::make_dwarf(&loaded, &no_relocs).map_err(|e| e.to_string())?;
    let mut facts = AbiFacts::default();
    each_named_unit(&dwarf, |index, _, found| {
        if index == unit {
            let table = UnitTypes::read(&dwarf, found, None)?;
            table.add_facts(&dwarf, found, functions, &mut facts);
        }
        Ok(())
    })?;
    Ok(facts)
}

pub fn image_type_uses(
    path: &Path,
    bytes: &[u8],
    types: &HashSet<&str>,
    skip: &[usize],
) -> Result<(Vec<TypeUser>, Vec<FrameHolder>), String> {
    let file = dwarf::File::parse(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let loaded = dwarf::load_sections(&file)?;
    let no_relocs = HashMap::default();
    let dwarf = dwarf::make_dwarf(&loaded, &no_relocs).map_err(|e| e.to_string())?;
    let mut users = Vec::new();
    let mut holders = Vec::new();
    for_each_unit(&dwarf, None, |index, name, unit, table| {
        if !skip.contains(&index) {
            table.users(&dwarf, unit, types, index, name, &mut users);
        }
        table.frame_holders(&dwarf, unit, types, name, &mut holders);
    })?;
    Ok((users, holders))
}

type Dwarf<'a> = gimli::Dwarf<DwarfReader<'a>>;
type Unit<'a> = gimli::Unit<DwarfReader<'a>>;

/// Run `f` on every named compile unit with its type table, counting units as
/// [`crate::LinkedImage::compile_units`] does. With `cache` (an object's kept tables), the
/// tables are read once, on the first call, and taken from there afterwards.
fn for_each_unit<'a>(
    dwarf: &Dwarf<'a>,
    cache: Option<&OnceLock<Vec<UnitTypes>>>,
    mut f: impl FnMut(usize, &str, &Unit<'a>, &UnitTypes),
) -> Result<(), String> {
    let cached = match cache {
        Some(cache) => match cache.get() {
            Some(tables) => Some(tables),
            None => {
                let mut tables = Vec::new();
                each_named_unit(dwarf, |_, _, unit| {
                    tables.push(UnitTypes::read(dwarf, unit, None)?);
                    Ok(())
                })?;
                Some(cache.get_or_init(|| tables))
            }
        },
        None => None,
    };
    each_named_unit(dwarf, |index, name, unit| {
        match cached.and_then(|tables| tables.get(index)) {
            Some(table) => f(index, name, unit, table),
            None => f(index, name, unit, &UnitTypes::read(dwarf, unit, None)?),
        }
        Ok(())
    })
}

/// Run `f` on every compile unit that has a name, with its index among those.
fn each_named_unit<'a>(
    dwarf: &Dwarf<'a>,
    mut f: impl FnMut(usize, &str, &Unit<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut units = dwarf.units();
    let mut index = 0;
    while let Some(header) = units.next().map_err(|e| format!(".debug_info: {e}"))? {
        let unit = dwarf
            .unit(header)
            .map_err(|e| format!(".debug_info unit: {e}"))?;
        let Some(name) = unit.name.as_ref().map(dwarf::reader_string) else {
            continue;
        };
        f(index, &name, &unit)?;
        index += 1;
    }
    Ok(())
}

/// A type DIE as the table keeps it.
#[derive(Debug)]
struct TypeDie {
    tag: gimli::DwTag,
    /// For aggregates: the display name (qualified, `struct ` in C); else `DW_AT_name`.
    name: Option<String>,
    ty: Option<UnitOffset>,
    size: Option<u64>,
    declaration: bool,
    decl: Option<(u64, u32)>,
    /// Members and base classes (aggregates), parameters (subroutine types), element
    /// counts (arrays).
    children: Vec<ChildDie>,
    variadic: bool,
}

#[derive(Debug)]
struct ChildDie {
    tag: gimli::DwTag,
    name: Option<String>,
    ty: Option<UnitOffset>,
    offset: u64,
    /// From the start of the aggregate, as [`MemberLayout::bit_offset`].
    bit_offset: Option<u64>,
    bit_size: Option<u64>,
    count: Option<u64>,
}

#[derive(Debug, Default)]
struct Subprogram {
    name: String,
    has_code: bool,
    ret: Option<UnitOffset>,
    params: Vec<Option<UnitOffset>>,
    variadic: bool,
    /// Every type its parameters, return value and local variables have.
    type_refs: Vec<UnitOffset>,
    /// Its DIE, for its code ranges (read only for a frame holder).
    die: Option<UnitOffset>,
    /// Its parameters and automatic (non-static) locals, those of the calls inlined into it
    /// too: what its frame holds while it runs, by name and type.
    locals: Vec<(String, UnitOffset)>,
    decl: Option<(u64, u32)>,
}

#[derive(Debug)]
struct Variable {
    name: String,
    ty: UnitOffset,
}

/// One compile unit's types, functions and static variables, read in one pass.
#[derive(Debug, Default)]
struct UnitTypes {
    types: HashMap<UnitOffset, TypeDie>,
    subprograms: Vec<Subprogram>,
    variables: Vec<Variable>,
}

/// The code ranges of a subprogram DIE (`DW_AT_low_pc`/`DW_AT_high_pc` or `DW_AT_ranges`,
/// empty ranges dropped), as [`HolderCode::Addresses`]; none, or unreadable, is
/// [`HolderCode::Unknown`].
fn code_ranges(dwarf: &Dwarf<'_>, unit: &Unit<'_>, die: Option<UnitOffset>) -> HolderCode {
    let Some(die) = die else {
        return HolderCode::Unknown("its DWARF entry is not known".to_string());
    };
    let read = || -> gimli::Result<Vec<Range<u64>>> {
        let entry = unit.entry(die)?;
        let mut ranges = dwarf.die_ranges(unit, &entry)?;
        let mut out = Vec::new();
        while let Some(range) = ranges.next()? {
            out.push(range.begin..range.end);
        }
        Ok(out)
    };
    match read() {
        Ok(ranges) if ranges.is_empty() => {
            HolderCode::Unknown("its DWARF gives its code no address range".to_string())
        }
        // A function the linker discarded (`--gc-sections`) keeps its DIE with address 0
        // (ld.bfd) or a tombstone (lld): it has no code a thread can run.
        Ok(ranges) => HolderCode::Addresses(
            ranges
                .into_iter()
                .filter(|r| r.start != 0 && r.start < u64::MAX - 1 && r.start < r.end)
                .collect(),
        ),
        Err(e) => HolderCode::Unknown(format!("its code ranges could not be read: {e}")),
    }
}

/// Whether a unit's root DIE says C++.
fn is_cxx(root: &gimli::DebuggingInformationEntry<DwarfReader<'_>>) -> bool {
    matches!(
        root.attr_value(gimli::DW_AT_language),
        Some(gimli::AttributeValue::Language(
            gimli::DW_LANG_C_plus_plus
                | gimli::DW_LANG_C_plus_plus_03
                | gimli::DW_LANG_C_plus_plus_11
                | gimli::DW_LANG_C_plus_plus_14
        ))
    )
}

/// The top-level DIEs of a C unit that [`UnitTypes::read`] reads for `wanted`: every one
/// but the functions that are not asked about and do not contain one that is. Found by
/// stepping over DIEs without decoding them (gimli's raw entries: attributes skipped by
/// form, subtrees jumped over through `DW_AT_sibling`), so that the 2,000 functions of a
/// file cost a few hundred instructions each. `None`: read the whole unit.
fn top_level_dies(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    wanted: &Wanted<'_>,
) -> Result<Option<Vec<UnitOffset>>, String> {
    if let Some(tops) = wanted
        .raw
        .as_ref()
        .and_then(|raw| scan_top_level(raw, unit, wanted))
    {
        return Ok(Some(tops));
    }
    let err = |e: gimli::Error| format!(".debug_info: {e}");
    let section_offset = |offset: UnitOffset| {
        offset
            .to_debug_info_offset(&unit.header)
            .map(|o| o.0 as u64)
    };
    // The root, then its first child.
    let mut raw = unit.entries_raw(None).map_err(err)?;
    let Some(root) = raw.read_abbreviation().map_err(err)? else {
        return Ok(Some(Vec::new()));
    };
    raw.skip_attributes(root.attributes()).map_err(err)?;
    if !root.has_children() {
        return Ok(Some(Vec::new()));
    }
    let mut at = raw.next_offset();
    let mut tops = Vec::new();
    loop {
        let mut raw = unit.entries_raw(Some(at)).map_err(err)?;
        if raw.is_empty() {
            break;
        }
        // A null entry: the end of the root's children.
        let Some(abbrev) = raw.read_abbreviation().map_err(err)? else {
            break;
        };
        let function = abbrev.tag() == gimli::DW_TAG_subprogram;
        let mut sibling = None;
        let mut asked = !function;
        let mut named = false;
        for spec in abbrev.attributes() {
            match spec.name() {
                gimli::DW_AT_sibling => {
                    sibling = unit_ref(Some(raw.read_attribute(*spec).map_err(err)?.value()))
                        .filter(|s| s.0 > at.0);
                }
                gimli::DW_AT_name | gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name
                    if function =>
                {
                    named = true;
                    let value = raw.read_attribute(*spec).map_err(err)?.value();
                    // A name that cannot be compared (not UTF-8, unreadable) is read.
                    asked |= match dwarf.attr_string(unit, value) {
                        Ok(name) => match name.to_slice() {
                            Ok(bytes) => std::str::from_utf8(&bytes)
                                .map_or(true, |name| wanted.names.contains(name)),
                            Err(_) => true,
                        },
                        Err(_) => true,
                    };
                }
                _ => raw
                    .skip_attributes(std::slice::from_ref(spec))
                    .map_err(err)?,
            }
        }
        // Without a name of its own (an out-of-line instance), it is named after its
        // origin: read it.
        asked |= function && !named;
        let next = match (abbrev.has_children(), sibling) {
            (false, _) => raw.next_offset(),
            (true, Some(sibling)) => sibling,
            (true, None) => {
                // No DW_AT_sibling (the last child): step over the subtree entry by entry.
                while raw.next_depth() > 0 {
                    if raw.is_empty() {
                        return Ok(None);
                    }
                    if let Some(child) = raw.read_abbreviation().map_err(err)? {
                        raw.skip_attributes(child.attributes()).map_err(err)?;
                    }
                }
                raw.next_offset()
            }
        };
        let inside = match (section_offset(at), section_offset(next)) {
            (Some(start), Some(end)) => wanted.within(start, end),
            _ => true,
        };
        if asked || inside {
            tops.push(at);
        }
        if next.0 <= at.0 {
            return Ok(None);
        }
        at = next;
    }
    Ok(Some(tops))
}

/// [`top_level_dies`] over the bytes of `.debug_info` themselves: each attribute stepped
/// over by its form's size, a function's name compared by its `.debug_str` offset (a
/// relocation's addend in an object) with the offsets of the names asked about, without
/// reading the string. The same answer, at a fraction of the cost; `None` for anything it
/// does not know (a form, a name not in `.debug_str`, bytes out of bounds), and
/// [`top_level_dies`] then reads the unit through gimli.
fn scan_top_level(
    raw: &RawInfo<'_>,
    unit: &Unit<'_>,
    wanted: &Wanted<'_>,
) -> Option<Vec<UnitOffset>> {
    let encoding = unit.header.encoding();
    let unit_start = unit.header.offset().0;
    let unit_end = unit_start.checked_add(unit.header.length_including_self())?;
    let info = raw.info.get(..unit_end)?;
    let mut scan = Scan {
        info,
        at: unit_start + unit.header.header_size(),
        encoding,
    };
    let abbrevs = &unit.abbreviations;
    // The root, then its children.
    let root = abbrevs.get(scan.uleb()?)?;
    scan.skip_attributes(root.attributes())?;
    if !root.has_children() {
        return Some(Vec::new());
    }
    let mut tops = Vec::new();
    loop {
        let at = scan.at;
        if at >= info.len() {
            break;
        }
        let code = scan.uleb()?;
        if code == 0 {
            break;
        }
        let abbrev = abbrevs.get(code)?;
        let function = abbrev.tag() == gimli::DW_TAG_subprogram;
        let mut sibling: Option<usize> = None;
        let mut asked = !function;
        let mut named = false;
        for spec in abbrev.attributes() {
            let field = scan.at;
            match spec.name() {
                gimli::DW_AT_sibling => {
                    let value = scan.reference(spec.form())?;
                    sibling = Some(unit_start.checked_add(value)?).filter(|&s| s > at);
                }
                gimli::DW_AT_name | gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name
                    if function =>
                {
                    named = true;
                    asked |= match spec.form() {
                        gimli::DW_FORM_strp if encoding.format.word_size() == 4 => {
                            scan.skip(spec.form(), spec.implicit_const_value())?;
                            let stored =
                                u32::from_le_bytes(info.get(field..field + 4)?.try_into().ok()?);
                            let offset = raw
                                .relocs
                                .and_then(|r| r.get(field as u64))
                                .map_or(u64::from(stored), |t| t.value);
                            raw.name_offsets.binary_search(&offset).is_ok()
                        }
                        gimli::DW_FORM_string => {
                            scan.skip(spec.form(), None)?;
                            let bytes = info.get(field..scan.at.checked_sub(1)?)?;
                            std::str::from_utf8(bytes).map_or(true, |n| wanted.names.contains(n))
                        }
                        // Anything else is read (and compared) by gimli.
                        _ => return None,
                    };
                }
                _ => scan.skip(spec.form(), spec.implicit_const_value())?,
            }
        }
        asked |= function && !named;
        let next = match (abbrev.has_children(), sibling) {
            (false, _) => scan.at,
            (true, Some(sibling)) => sibling,
            (true, None) => {
                // No DW_AT_sibling (the last child): step over the subtree entry by entry.
                let mut depth = 1usize;
                while depth > 0 {
                    let code = scan.uleb()?;
                    if code == 0 {
                        depth -= 1;
                        continue;
                    }
                    let child = abbrevs.get(code)?;
                    scan.skip_attributes(child.attributes())?;
                    if child.has_children() {
                        depth += 1;
                    }
                }
                scan.at
            }
        };
        if next <= at {
            return None;
        }
        if asked || wanted.within(at as u64, next as u64) {
            tops.push(UnitOffset(at - unit_start));
        }
        scan.at = next;
    }
    Some(tops)
}

/// A position in a unit's DIEs, for [`scan_top_level`].
struct Scan<'a> {
    info: &'a [u8],
    at: usize,
    encoding: gimli::Encoding,
}

impl Scan<'_> {
    fn uleb(&mut self) -> Option<u64> {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = *self.info.get(self.at)?;
            self.at += 1;
            if shift < 64 {
                value |= u64::from(byte & 0x7f) << shift;
            }
            shift += 7;
            if byte & 0x80 == 0 {
                return Some(value);
            }
            if shift > 70 {
                return None;
            }
        }
    }

    fn advance(&mut self, n: usize) -> Option<()> {
        let end = self.at.checked_add(n)?;
        (end <= self.info.len()).then(|| self.at = end)
    }

    fn skip_attributes(&mut self, specs: &[gimli::AttributeSpecification]) -> Option<()> {
        for spec in specs {
            self.skip(spec.form(), spec.implicit_const_value())?;
        }
        Some(())
    }

    /// A unit-relative reference's value.
    fn reference(&mut self, form: gimli::DwForm) -> Option<usize> {
        let start = self.at;
        let bytes = |n: usize, scan: &mut Self| -> Option<u64> {
            let field = scan.info.get(start..start.checked_add(n)?)?;
            scan.advance(n)?;
            let mut word = [0u8; 8];
            word[..n].copy_from_slice(field);
            Some(u64::from_le_bytes(word))
        };
        let value = match form {
            gimli::DW_FORM_ref1 => bytes(1, self)?,
            gimli::DW_FORM_ref2 => bytes(2, self)?,
            gimli::DW_FORM_ref4 => bytes(4, self)?,
            gimli::DW_FORM_ref8 => bytes(8, self)?,
            gimli::DW_FORM_ref_udata => self.uleb()?,
            _ => return None,
        };
        usize::try_from(value).ok()
    }

    /// Step over one attribute value of `form` (little-endian DWARF 2 to 5).
    fn skip(&mut self, form: gimli::DwForm, implicit: Option<i64>) -> Option<()> {
        let word = self.encoding.format.word_size() as usize;
        let address = self.encoding.address_size as usize;
        let n = match form {
            gimli::DW_FORM_flag_present => 0,
            gimli::DW_FORM_implicit_const => {
                implicit?;
                0
            }
            gimli::DW_FORM_data1
            | gimli::DW_FORM_ref1
            | gimli::DW_FORM_flag
            | gimli::DW_FORM_strx1
            | gimli::DW_FORM_addrx1 => 1,
            gimli::DW_FORM_data2
            | gimli::DW_FORM_ref2
            | gimli::DW_FORM_strx2
            | gimli::DW_FORM_addrx2 => 2,
            gimli::DW_FORM_strx3 | gimli::DW_FORM_addrx3 => 3,
            gimli::DW_FORM_data4
            | gimli::DW_FORM_ref4
            | gimli::DW_FORM_ref_sup4
            | gimli::DW_FORM_strx4
            | gimli::DW_FORM_addrx4 => 4,
            gimli::DW_FORM_data8
            | gimli::DW_FORM_ref8
            | gimli::DW_FORM_ref_sig8
            | gimli::DW_FORM_ref_sup8 => 8,
            gimli::DW_FORM_data16 => 16,
            gimli::DW_FORM_addr => address,
            gimli::DW_FORM_strp
            | gimli::DW_FORM_line_strp
            | gimli::DW_FORM_sec_offset
            | gimli::DW_FORM_strp_sup
            | gimli::DW_FORM_GNU_ref_alt
            | gimli::DW_FORM_GNU_strp_alt => word,
            gimli::DW_FORM_ref_addr if self.encoding.version >= 3 => word,
            gimli::DW_FORM_ref_addr => address,
            gimli::DW_FORM_udata
            | gimli::DW_FORM_sdata
            | gimli::DW_FORM_ref_udata
            | gimli::DW_FORM_strx
            | gimli::DW_FORM_addrx
            | gimli::DW_FORM_loclistx
            | gimli::DW_FORM_rnglistx
            | gimli::DW_FORM_GNU_addr_index
            | gimli::DW_FORM_GNU_str_index => {
                self.uleb()?;
                0
            }
            gimli::DW_FORM_string => {
                let len = self.info.get(self.at..)?.iter().position(|&b| b == 0)?;
                len + 1
            }
            gimli::DW_FORM_block1 => {
                let len = *self.info.get(self.at)? as usize;
                self.advance(1)?;
                len
            }
            gimli::DW_FORM_block2 => {
                let field = self.info.get(self.at..self.at.checked_add(2)?)?;
                let len = u16::from_le_bytes([field[0], field[1]]) as usize;
                self.advance(2)?;
                len
            }
            gimli::DW_FORM_block4 => {
                let field = self.info.get(self.at..self.at.checked_add(4)?)?;
                let len = u32::from_le_bytes([field[0], field[1], field[2], field[3]]) as usize;
                self.advance(4)?;
                len
            }
            gimli::DW_FORM_block | gimli::DW_FORM_exprloc => usize::try_from(self.uleb()?).ok()?,
            // gimli::DW_FORM_indirect and anything unknown: gimli reads it.
            _ => return None,
        };
        self.advance(n)
    }
}

fn is_aggregate(tag: gimli::DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_structure_type | gimli::DW_TAG_class_type | gimli::DW_TAG_union_type
    )
}

fn is_type_tag(tag: gimli::DwTag) -> bool {
    is_aggregate(tag)
        || matches!(
            tag,
            gimli::DW_TAG_base_type
                | gimli::DW_TAG_pointer_type
                | gimli::DW_TAG_reference_type
                | gimli::DW_TAG_rvalue_reference_type
                | gimli::DW_TAG_ptr_to_member_type
                | gimli::DW_TAG_const_type
                | gimli::DW_TAG_volatile_type
                | gimli::DW_TAG_restrict_type
                | gimli::DW_TAG_atomic_type
                | gimli::DW_TAG_typedef
                | gimli::DW_TAG_array_type
                | gimli::DW_TAG_subroutine_type
                | gimli::DW_TAG_enumeration_type
                | gimli::DW_TAG_unspecified_type
        )
}

fn unit_ref(value: Option<gimli::AttributeValue<DwarfReader<'_>>>) -> Option<UnitOffset> {
    match value? {
        gimli::AttributeValue::UnitRef(offset) => Some(offset),
        _ => None,
    }
}

/// What encloses the DIE being read.
enum Scope {
    /// A namespace or aggregate: its name qualifies nested aggregates.
    Named(Option<String>),
    /// A type DIE whose children (members, parameters, subranges) belong to it.
    Type(UnitOffset),
    /// A subprogram (index into `subprograms`); `direct` while at its own depth + 1.
    Subprogram(usize),
    /// An inlined subroutine (the name of the function inlined) or a lexical block (`None`)
    /// inside a subprogram.
    Block(Option<String>),
    Other,
}

/// Which functions a partial table is read for ([`UnitTypes::read`]): the names asked
/// about, and the `.debug_info` offsets of the relocations against their code sections
/// (sorted), so that a function nested in another one (GNU C) is found inside it.
struct Wanted<'a> {
    names: &'a HashSet<&'a str>,
    refs: Vec<u64>,
    /// The object's `.debug_info` as stored, its relocations and the `.debug_str` offsets
    /// at which a name asked about is stored (sorted), for [`scan_top_level`].
    raw: Option<RawInfo<'a>>,
}

/// See [`Wanted::raw`].
struct RawInfo<'a> {
    info: &'a [u8],
    relocs: Option<&'a dwarf::DebugRelocs>,
    name_offsets: Vec<u64>,
}

/// Every offset of `.debug_str` at which one of `names` is stored: where `name\0` starts
/// (a string may also be the tail of a longer one).
fn name_offsets(debug_str: &[u8], names: &HashSet<&str>) -> Vec<u64> {
    let mut offsets = Vec::new();
    for name in names {
        let pattern: Vec<u8> = name.bytes().chain(std::iter::once(0)).collect();
        let Some(&first) = pattern.first() else {
            continue;
        };
        let mut at = 0;
        while let Some(found) = debug_str
            .get(at..)
            .and_then(|rest| rest.iter().position(|&b| b == first))
        {
            let p = at + found;
            if debug_str.get(p..p + pattern.len()) == Some(&pattern[..]) {
                offsets.push(p as u64);
            }
            at = p + 1;
        }
    }
    offsets.sort_unstable();
    offsets
}

impl Wanted<'_> {
    /// Whether the subtree of a subprogram, `[start, end)` in `.debug_info`, may hold one
    /// of the functions asked about.
    fn within(&self, start: u64, end: u64) -> bool {
        let at = self.refs.partition_point(|&r| r < start);
        self.refs.get(at).is_some_and(|&r| r < end)
    }
}

impl UnitTypes {
    /// Add to `facts` the signature of each of `functions` with code in this unit and the
    /// layouts of the aggregates they reach ([`Object::abi_facts`]).
    fn add_facts(
        &self,
        dwarf: &Dwarf<'_>,
        unit: &Unit<'_>,
        functions: &HashSet<&str>,
        facts: &mut AbiFacts,
    ) {
        for sub in &self.subprograms {
            if !sub.has_code || !functions.contains(sub.name.as_str()) {
                continue;
            }
            if facts.function(&sub.name).is_some() {
                continue;
            }
            let reached = self.reach(&sub.type_refs);
            let mut types = Vec::new();
            for offset in reached {
                let Some(name) = self.aggregate_name(offset) else {
                    continue;
                };
                types.push(name.clone());
                if !facts.layouts.contains_key(name) {
                    if let Some(layout) = self.layout(dwarf, unit, offset) {
                        facts.layouts.insert(name.clone(), layout);
                    }
                }
            }
            types.sort();
            types.dedup();
            facts.functions.push(FunctionAbi {
                name: sub.name.clone(),
                signature: Signature {
                    ret: self.render_opt(sub.ret),
                    params: sub.params.iter().map(|p| self.render_opt(*p)).collect(),
                    variadic: sub.variadic,
                },
                types,
                decl: sub.decl.and_then(|d| self.source_line(dwarf, unit, d)),
            });
        }
    }

    /// Read a unit's table in one pass. With `wanted`, in a C unit, the subtrees of the
    /// functions not asked about are stepped over (their `DW_AT_sibling`), not read: in C
    /// nothing outside a function can name what it declares inside, so the signatures and
    /// the types the asked-about functions reach come out as from the whole table, but the
    /// table lacks the other functions and their static locals (it serves
    /// [`Object::abi_facts`] for those functions only). C++ units are always read whole (a
    /// member function defined outside its local class refers into another function).
    fn read<'a>(
        dwarf: &Dwarf<'a>,
        unit: &Unit<'a>,
        wanted: Option<&Wanted<'_>>,
    ) -> Result<UnitTypes, String> {
        let mut table = UnitTypes::default();
        let mut cxx = false;
        let mut scopes: Vec<(isize, Scope)> = Vec::new();
        // Typedefs of anonymous aggregates, named after them once the pass is done.
        let mut typedefs: Vec<(UnitOffset, String)> = Vec::new();
        let string = |entry: &gimli::DebuggingInformationEntry<DwarfReader<'_>>, at| {
            entry
                .attr_value(at)
                .and_then(|v| dwarf::attr_string(dwarf, unit, v))
        };
        let mut visit = |entry: &gimli::DebuggingInformationEntry<DwarfReader<'a>>,
                         depth: isize|
         -> Result<(), String> {
            let tag = entry.tag();
            let offset = entry.offset();
            while scopes.last().is_some_and(|(d, _)| *d >= depth) {
                scopes.pop();
            }
            let enclosing_sub = scopes.iter().rev().find_map(|(d, s)| match s {
                Scope::Subprogram(i) => Some((*d, *i)),
                _ => None,
            });
            let parent = scopes.last().map(|(_, s)| s);
            if tag == gimli::DW_TAG_compile_unit || tag == gimli::DW_TAG_partial_unit {
                cxx = is_cxx(entry);
                scopes.push((depth, Scope::Other));
                return Ok(());
            }
            if is_type_tag(tag) {
                let own = string(entry, gimli::DW_AT_name);
                let name = if is_aggregate(tag) {
                    own.as_ref().map(|n| {
                        let mut qualified: Vec<&str> = scopes
                            .iter()
                            .filter_map(|(_, s)| match s {
                                Scope::Named(Some(n)) => Some(n.as_str()),
                                _ => None,
                            })
                            .collect();
                        qualified.push(n);
                        let joined = qualified.join("::");
                        match (cxx, tag) {
                            (true, _) => joined,
                            (false, gimli::DW_TAG_union_type) => format!("union {joined}"),
                            (false, _) => format!("struct {joined}"),
                        }
                    })
                } else if tag == gimli::DW_TAG_enumeration_type {
                    own.map(|n| if cxx { n } else { format!("enum {n}") })
                } else {
                    own
                };
                let ty = unit_ref(entry.attr_value(gimli::DW_AT_type));
                if tag == gimli::DW_TAG_typedef {
                    if let (Some(ty), Some(name)) = (ty, &name) {
                        typedefs.push((ty, name.clone()));
                    }
                }
                let decl = decl_of(unit, entry);
                table.types.insert(
                    offset,
                    TypeDie {
                        tag,
                        name,
                        ty,
                        size: entry
                            .attr_value(gimli::DW_AT_byte_size)
                            .and_then(|v| v.udata_value()),
                        declaration: matches!(
                            entry.attr_value(gimli::DW_AT_declaration),
                            Some(gimli::AttributeValue::Flag(true))
                        ),
                        decl,
                        children: Vec::new(),
                        variadic: false,
                    },
                );
                if is_aggregate(tag) && cxx {
                    // C++ types nested in it are named after it (C has no such scopes).
                    scopes.push((depth, Scope::Named(string(entry, gimli::DW_AT_name))));
                }
                // Its members, parameters and subranges belong to it.
                scopes.push((depth, Scope::Type(offset)));
                return Ok(());
            }
            match (tag, parent) {
                (gimli::DW_TAG_namespace, _) => {
                    scopes.push((depth, Scope::Named(string(entry, gimli::DW_AT_name))));
                }
                (
                    gimli::DW_TAG_member
                    | gimli::DW_TAG_inheritance
                    | gimli::DW_TAG_formal_parameter
                    | gimli::DW_TAG_subrange_type
                    | gimli::DW_TAG_unspecified_parameters,
                    Some(Scope::Type(owner)),
                ) => {
                    let owner = *owner;
                    let udata = |at| entry.attr_value(at).and_then(|v| v.udata_value());
                    let offset = udata(gimli::DW_AT_data_member_location).unwrap_or(0);
                    let bit_size = udata(gimli::DW_AT_bit_size);
                    let bit_offset = udata(gimli::DW_AT_data_bit_offset).or_else(|| {
                        // DWARF 2/3: the bits above the field in its storage unit (of
                        // `DW_AT_byte_size` bytes at `offset`); little-endian.
                        let above = udata(gimli::DW_AT_bit_offset)?;
                        let unit_bits = udata(gimli::DW_AT_byte_size)?.saturating_mul(8);
                        Some(
                            offset
                                .saturating_mul(8)
                                .saturating_add(unit_bits)
                                .saturating_sub(above)
                                .saturating_sub(bit_size.unwrap_or(0)),
                        )
                    });
                    let child = ChildDie {
                        tag,
                        name: string(entry, gimli::DW_AT_name),
                        ty: unit_ref(entry.attr_value(gimli::DW_AT_type)),
                        offset: bit_offset.map_or(offset, |bits| bits / 8),
                        bit_offset,
                        bit_size,
                        count: entry
                            .attr_value(gimli::DW_AT_count)
                            .and_then(|v| v.udata_value())
                            .or_else(|| {
                                entry
                                    .attr_value(gimli::DW_AT_upper_bound)
                                    .and_then(|v| v.udata_value())
                                    .map(|u| u.wrapping_add(1))
                            }),
                    };
                    if let Some(die) = table.types.get_mut(&owner) {
                        if tag == gimli::DW_TAG_unspecified_parameters {
                            die.variadic = true;
                        } else {
                            die.children.push(child);
                        }
                    }
                    scopes.push((depth, Scope::Other));
                }
                (gimli::DW_TAG_subprogram, _) => {
                    let own_name = |die: &gimli::DebuggingInformationEntry<DwarfReader<'_>>| {
                        string(die, gimli::DW_AT_linkage_name)
                            .or_else(|| string(die, gimli::DW_AT_MIPS_linkage_name))
                            .or_else(|| string(die, gimli::DW_AT_name))
                    };
                    let mut name = own_name(entry);
                    if name.is_none() {
                        let origin = unit_ref(
                            entry
                                .attr_value(gimli::DW_AT_specification)
                                .or_else(|| entry.attr_value(gimli::DW_AT_abstract_origin)),
                        );
                        if let Some(origin) = origin {
                            name = unit.entry(origin).ok().and_then(|die| own_name(&die));
                        }
                    }
                    let has_code = entry.attr_value(gimli::DW_AT_low_pc).is_some()
                        || entry.attr_value(gimli::DW_AT_ranges).is_some();
                    let ret = unit_ref(dwarf::inherited_attr(unit, entry, gimli::DW_AT_type));
                    let index = table.subprograms.len();
                    table.subprograms.push(Subprogram {
                        name: name.unwrap_or_default(),
                        has_code,
                        die: Some(offset),
                        ret,
                        type_refs: ret.into_iter().collect(),
                        decl: decl_of(unit, entry),
                        ..Subprogram::default()
                    });
                    scopes.push((depth, Scope::Subprogram(index)));
                }
                (gimli::DW_TAG_inlined_subroutine | gimli::DW_TAG_lexical_block, _)
                    if enclosing_sub.is_some() =>
                {
                    let inlined = (tag == gimli::DW_TAG_inlined_subroutine)
                        .then(|| {
                            dwarf::inherited_attr(unit, entry, gimli::DW_AT_name)
                                .and_then(|v| dwarf::attr_string(dwarf, unit, v))
                        })
                        .flatten();
                    scopes.push((depth, Scope::Block(inlined)));
                }
                (gimli::DW_TAG_formal_parameter | gimli::DW_TAG_unspecified_parameters, _)
                | (gimli::DW_TAG_variable, _) => {
                    let ty = unit_ref(dwarf::inherited_attr(unit, entry, gimli::DW_AT_type));
                    let direct = matches!(parent, Some(Scope::Subprogram(_)));
                    if let Some((_, index)) = enclosing_sub {
                        let sub = &mut table.subprograms[index];
                        match tag {
                            gimli::DW_TAG_unspecified_parameters if direct => sub.variadic = true,
                            gimli::DW_TAG_formal_parameter if direct => sub.params.push(ty),
                            _ => {}
                        }
                        sub.type_refs.extend(ty);
                    }
                    let is_static = tag == gimli::DW_TAG_variable
                        && matches!(
                            dwarf::static_storage(entry, unit),
                            Some(StaticStorage::Address(_) | StaticStorage::ThreadLocal)
                        );
                    if let (false, Some((_, index)), Some(ty)) = (is_static, enclosing_sub, ty) {
                        // An inlined call's parameters name their origin's; they are said
                        // to be the inlined function's (its frame is its caller's).
                        let mut local = dwarf::inherited_attr(unit, entry, gimli::DW_AT_name)
                            .and_then(|v| dwarf::attr_string(dwarf, unit, v))
                            .unwrap_or_else(|| "<unnamed>".to_string());
                        let inlined = scopes.iter().rev().find_map(|(_, s)| match s {
                            Scope::Block(Some(name)) => Some(name),
                            _ => None,
                        });
                        if let Some(inlined) = inlined {
                            local = format!("{inlined}/{local}");
                        }
                        table.subprograms[index].locals.push((local, ty));
                    }
                    if let (true, Some(ty)) = (is_static, ty) {
                        let var = string(entry, gimli::DW_AT_linkage_name)
                            .or_else(|| string(entry, gimli::DW_AT_name))
                            .or_else(|| {
                                let spec = unit_ref(entry.attr_value(gimli::DW_AT_specification))?;
                                let die = unit.entry(spec).ok()?;
                                string(&die, gimli::DW_AT_linkage_name)
                                    .or_else(|| string(&die, gimli::DW_AT_name))
                            })
                            .unwrap_or_default();
                        let name = match enclosing_sub {
                            Some((_, index)) => {
                                format!("{}/{var}", table.subprograms[index].name)
                            }
                            None => var,
                        };
                        table.variables.push(Variable { name, ty });
                    }
                    scopes.push((depth, Scope::Other));
                }
                _ => scopes.push((depth, Scope::Other)),
            }
            Ok(())
        };
        let mut entries = unit.entries();
        let root_is_c = match entries
            .next_dfs()
            .map_err(|e| format!(".debug_info: {e}"))?
        {
            Some(root) => {
                visit(root, 0)?;
                !is_cxx(root)
            }
            None => return Ok(table),
        };
        // The top-level DIEs to read, when only some functions are asked about (C only).
        let tops = match wanted {
            Some(wanted) if root_is_c => top_level_dies(dwarf, unit, wanted)?,
            _ => None,
        };
        match tops {
            None => {
                while let Some(entry) = entries
                    .next_dfs()
                    .map_err(|e| format!(".debug_info: {e}"))?
                {
                    visit(entry, entry.depth())?;
                }
            }
            Some(tops) => {
                for top in tops {
                    let mut entries = unit
                        .entries_at_offset(top)
                        .map_err(|e| format!(".debug_info: {e}"))?;
                    let mut first = true;
                    while let Some(entry) = entries
                        .next_dfs()
                        .map_err(|e| format!(".debug_info: {e}"))?
                    {
                        // Depths count from the top-level DIE, which is at depth 1 of the
                        // unit: its subtree ends at the next entry at its depth or above.
                        if !first && entry.depth() <= 0 {
                            break;
                        }
                        first = false;
                        visit(entry, entry.depth() + 1)?;
                    }
                }
            }
        }
        for (target, name) in typedefs {
            if let Some(die) = table.types.get_mut(&target) {
                if is_aggregate(die.tag) && die.name.is_none() {
                    die.name = Some(name);
                }
            }
        }
        Ok(table)
    }

    /// The type DIEs a type DIE leads to directly.
    fn edges(&self, offset: UnitOffset) -> impl Iterator<Item = UnitOffset> + '_ {
        let die = self.types.get(&offset);
        die.and_then(|d| d.ty).into_iter().chain(
            die.into_iter()
                .flat_map(|d| d.children.iter().filter_map(|c| c.ty)),
        )
    }

    /// Every type DIE reachable from `roots` (roots included).
    fn reach(&self, roots: &[UnitOffset]) -> Vec<UnitOffset> {
        let mut seen: HashSet<UnitOffset> = HashSet::new();
        let mut stack: Vec<UnitOffset> = roots.to_vec();
        let mut out = Vec::new();
        while let Some(offset) = stack.pop() {
            if !seen.insert(offset) {
                continue;
            }
            out.push(offset);
            stack.extend(self.edges(offset));
        }
        out
    }

    fn aggregate_name(&self, offset: UnitOffset) -> Option<&String> {
        let die = self.types.get(&offset)?;
        if is_aggregate(die.tag) {
            die.name.as_ref()
        } else {
            None
        }
    }

    fn render_opt(&self, offset: Option<UnitOffset>) -> String {
        match offset {
            Some(offset) => self.render(offset, 0),
            None => "void".to_string(),
        }
    }

    /// A type as C would write it, typedefs resolved; bounded for cyclic or hostile DWARF.
    fn render(&self, offset: UnitOffset, depth: usize) -> String {
        if depth > 24 {
            return "...".to_string();
        }
        let Some(die) = self.types.get(&offset) else {
            return "?".to_string();
        };
        let inner = || match die.ty {
            Some(ty) => self.render(ty, depth + 1),
            None => "void".to_string(),
        };
        match die.tag {
            gimli::DW_TAG_pointer_type => format!("{} *", inner()),
            gimli::DW_TAG_reference_type => format!("{} &", inner()),
            gimli::DW_TAG_rvalue_reference_type => format!("{} &&", inner()),
            gimli::DW_TAG_ptr_to_member_type => format!("{} ::*", inner()),
            gimli::DW_TAG_const_type => format!("const {}", inner()),
            gimli::DW_TAG_volatile_type => format!("volatile {}", inner()),
            gimli::DW_TAG_restrict_type => format!("{} restrict", inner()),
            gimli::DW_TAG_atomic_type => format!("_Atomic {}", inner()),
            gimli::DW_TAG_typedef => inner(),
            gimli::DW_TAG_array_type => {
                let dims: String = die
                    .children
                    .iter()
                    .filter(|c| c.tag == gimli::DW_TAG_subrange_type)
                    .map(|c| match c.count {
                        Some(n) => format!("[{n}]"),
                        None => "[]".to_string(),
                    })
                    .collect();
                format!("{}{dims}", inner())
            }
            gimli::DW_TAG_subroutine_type => {
                let params: Vec<String> = die
                    .children
                    .iter()
                    .filter(|c| c.tag == gimli::DW_TAG_formal_parameter)
                    .map(|c| match c.ty {
                        Some(ty) => self.render(ty, depth + 1),
                        None => "?".to_string(),
                    })
                    .collect();
                let dots = if die.variadic { ", ..." } else { "" };
                format!("{} (*)({}{dots})", inner(), params.join(", "))
            }
            gimli::DW_TAG_base_type | gimli::DW_TAG_unspecified_type => {
                die.name.clone().unwrap_or_else(|| "?".to_string())
            }
            tag => die.name.clone().unwrap_or_else(|| {
                let kind = match tag {
                    gimli::DW_TAG_union_type => "union",
                    gimli::DW_TAG_enumeration_type => "enum",
                    _ => "struct",
                };
                // An anonymous type: its size says at least something.
                format!("{kind} <anonymous, {} bytes>", die.size.unwrap_or(0))
            }),
        }
    }

    fn source_line(
        &self,
        dwarf: &Dwarf<'_>,
        unit: &Unit<'_>,
        decl: (u64, u32),
    ) -> Option<SourceLine> {
        let comp_dir = unit.comp_dir.as_ref().map(dwarf::reader_string);
        let file: PathBuf =
            dwarf::decl_file_path(dwarf, unit, decl.0, comp_dir.as_deref().map(Path::new))?;
        Some(SourceLine {
            file,
            line: decl.1,
            column: 0,
        })
    }

    fn layout(&self, dwarf: &Dwarf<'_>, unit: &Unit<'_>, offset: UnitOffset) -> Option<TypeLayout> {
        let die = self.types.get(&offset)?;
        let name = die.name.clone()?;
        let members = die
            .children
            .iter()
            .filter(|c| matches!(c.tag, gimli::DW_TAG_member | gimli::DW_TAG_inheritance))
            .map(|c| {
                let type_name = match c.ty {
                    Some(ty) => self.render(ty, 0),
                    None => "?".to_string(),
                };
                MemberLayout {
                    name: match (c.tag, &c.name) {
                        (gimli::DW_TAG_inheritance, _) => format!("<base {type_name}>"),
                        (_, Some(n)) => n.clone(),
                        (_, None) => "<anonymous>".to_string(),
                    },
                    offset: c.offset,
                    bit_offset: c.bit_offset,
                    bit_size: c.bit_size,
                    type_name,
                }
            })
            .collect();
        Some(TypeLayout {
            name,
            size: if die.declaration { None } else { die.size },
            members,
            decl: die.decl.and_then(|d| self.source_line(dwarf, unit, d)),
        })
    }

    /// Functions with code and static variables of this unit that reach an aggregate named
    /// in `types`, appended to `out`.
    fn users(
        &self,
        dwarf: &Dwarf<'_>,
        unit: &Unit<'_>,
        types: &HashSet<&str>,
        index: usize,
        unit_name: &str,
        out: &mut Vec<TypeUser>,
    ) {
        let tainted = self.tainted(types);
        if tainted.is_empty() {
            return;
        }
        let mut push = |name: &str, kind: UserKind, target: UnitOffset| {
            let Some(type_name) = self.aggregate_name(target) else {
                return;
            };
            out.push(TypeUser {
                name: name.to_string(),
                kind,
                type_name: type_name.clone(),
                layout: self
                    .layout(dwarf, unit, target)
                    .filter(|l| l.size.is_some()),
                unit: index,
                unit_name: unit_name.to_string(),
            });
        };
        for sub in &self.subprograms {
            if !sub.has_code || sub.name.is_empty() {
                continue;
            }
            if let Some(target) = sub.type_refs.iter().find_map(|t| tainted.get(t)) {
                push(&sub.name, UserKind::Function, *target);
            }
        }
        for var in &self.variables {
            if let Some(target) = tainted.get(&var.ty) {
                push(&var.name, UserKind::Variable, *target);
            }
        }
    }

    /// Functions with code of this unit whose parameters or automatic locals reach an
    /// aggregate named in `types`, one per such variable, appended to `out`.
    fn frame_holders(
        &self,
        dwarf: &Dwarf<'_>,
        unit: &Unit<'_>,
        types: &HashSet<&str>,
        unit_name: &str,
        out: &mut Vec<FrameHolder>,
    ) {
        let tainted = self.tainted(types);
        if tainted.is_empty() {
            return;
        }
        for sub in self
            .subprograms
            .iter()
            .filter(|s| s.has_code && !s.name.is_empty())
        {
            // Read once per function, for the first local that holds a type asked about.
            let mut code: Option<HolderCode> = None;
            for (variable, ty) in &sub.locals {
                let Some(&target) = tainted.get(ty) else {
                    continue;
                };
                let Some(type_name) = self.aggregate_name(target) else {
                    continue;
                };
                let code = code.get_or_insert_with(|| code_ranges(dwarf, unit, sub.die));
                out.push(FrameHolder {
                    function: sub.name.clone(),
                    variable: variable.clone(),
                    variable_type: self.render(*ty, 0),
                    type_name: type_name.clone(),
                    layout: self
                        .layout(dwarf, unit, target)
                        .filter(|l| l.size.is_some()),
                    unit_name: unit_name.to_string(),
                    code: code.clone(),
                });
            }
        }
    }

    /// Every type DIE that reaches an aggregate named in `types` (itself included), with
    /// the aggregate it reaches; found backwards from those aggregates.
    fn tainted(&self, types: &HashSet<&str>) -> HashMap<UnitOffset, UnitOffset> {
        let mut reverse: HashMap<UnitOffset, Vec<UnitOffset>> = HashMap::default();
        let mut tainted: HashMap<UnitOffset, UnitOffset> = HashMap::default();
        let mut stack = Vec::new();
        for (&offset, die) in &self.types {
            for to in self.edges(offset) {
                reverse.entry(to).or_default().push(offset);
            }
            if is_aggregate(die.tag) && die.name.as_deref().is_some_and(|n| types.contains(n)) {
                tainted.insert(offset, offset);
                stack.push(offset);
            }
        }
        while let Some(offset) = stack.pop() {
            let target = tainted[&offset];
            for &from in reverse.get(&offset).into_iter().flatten() {
                if let std::collections::hash_map::Entry::Vacant(e) = tainted.entry(from) {
                    e.insert(target);
                    stack.push(from);
                }
            }
        }
        tainted
    }
}

/// `DW_AT_decl_file` and `DW_AT_decl_line` of a DIE (or of the declaration it completes).
fn decl_of<'a>(
    unit: &Unit<'a>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader<'a>>,
) -> Option<(u64, u32)> {
    let file = dwarf::unsigned_value(dwarf::inherited_attr(unit, entry, gimli::DW_AT_decl_file)?)?;
    let line = dwarf::unsigned_value(dwarf::inherited_attr(unit, entry, gimli::DW_AT_decl_line)?)?;
    Some((file, u32::try_from(line).ok().filter(|&l| l > 0)?))
}
