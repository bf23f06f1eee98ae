//! Mach-O relocatable objects (`MH_OBJECT`, x86-64 and arm64) read into the same atoms,
//! symbols and relocations as ELF objects.
//!
//! # Atoms
//!
//! A Mach-O object has few sections (`__TEXT,__text` holds every function); the unit the
//! linker moves is the *subsection*: with `MH_SUBSECTIONS_VIA_SYMBOLS` (which clang always
//! sets), each symbol starts a new atom that runs to the next symbol, except `N_ALT_ENTRY`
//! symbols, which are inside their atom. Literal sections are split by content the way
//! ld64/lld do: `__cstring` at each NUL-terminated string, `__literal4/8/16` every 4/8/16
//! bytes. The atom's alignment is the section's, reduced to what its offset inside the
//! section guarantees (lld's rule).
//!
//! # Relocations
//!
//! Mach-O relocations are REL-style (the addend is in the field) and come in pairs
//! (`SUBTRACTOR` + `UNSIGNED`, arm64 `ADDEND` + the instruction relocation). They are decoded
//! to the crate's ELF-like model, `value = S + A - P`, so the rest of the engine reads them
//! like ELF ones:
//! - x86-64 PC-relative types (`SIGNED`, `SIGNED_1/2/4`, `BRANCH`, `GOT_LOAD`, `GOT`, `TLV`)
//!   compute `S + inline - (P + 4)` for an external symbol (lld: the embedded addend is
//!   `inline + k` and the PC is `P + 4 + k` for `SIGNED_k`), so `A = inline - 4`. For a
//!   section-relative one (`r_extern = 0`, a local label such as a string literal) the field
//!   holds the displacement as assembled, so the target is `P + 4 + k + inline` in the
//!   object's addresses; it becomes the atom containing it plus an offset, and
//!   `A = offset - 4 - k`.
//! - `UNSIGNED` (`Abs64`/`Abs32`): `A = inline`, or the atom and offset of the inline
//!   address for a section-relative one.
//! - `SUBTRACTOR` pairs become two relocations at one offset: [`RelocKind::Subtractor`] of
//!   the minus symbol, then `Abs64`/`Abs32` of the plus symbol with the inline addend.
//! - arm64 relocations other than `UNSIGNED`/`SUBTRACTOR` take their addend from a
//!   preceding `ADDEND` (an instruction field has no room for one), never from the field;
//!   `POINTER_TO_GOT` is `GotPcRel` with no PC bias.
//!
//! Relocated fields of data and x86-64 code are zeroed in the atom's bytes once their addend
//! is read: a section-relative field holds object-file addresses, which move when unrelated
//! code changes, and the diff compares bytes.
//!
//! Not read yet: DWARF (Mach-O keeps it in `__DWARF` sections; line rows are missing, with a
//! warning), `__LD,__compact_unwind` and `__TEXT,__eh_frame` (unwind info of new code).

use std::path::Path;

use object::macho;
use object::read::macho::{MachHeader as _, MachOFile64, Nlist as _, Section as _};
use object::{Endianness, Object as _, ObjectSection as _};

use crate::shared::{Name, Shared};
use crate::{
    Atom, AtomId, AtomKind, AtomOffset, Binding, Constructor, Machine, Object, ObjectError,
    ObjectFormat, Reloc, RelocKind, Symbol, SymbolDef, SymbolId, SymbolKind,
};

/// Whether `bytes` start like a 64-bit Mach-O file (either byte order).
pub(crate) fn is_macho(bytes: &[u8]) -> bool {
    match bytes.get(..4) {
        Some(magic) => {
            let m = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
            m == macho::MH_MAGIC_64 || m == macho::MH_CIGAM_64
        }
        None => false,
    }
}

/// One section of the object as the parser needs it.
struct Sect<'data> {
    /// 1-based ordinal (`n_sect`, `r_symbolnum` of a section relocation).
    ordinal: usize,
    name: String,
    addr: u64,
    size: u64,
    align: u64,
    typ: u8,
    data: &'data [u8],
    relocs: &'data [macho::Relocation<Endianness>],
    /// What the section becomes.
    role: Role,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Atoms(AtomKind),
    Constructors,
    /// Debug info, unwind tables and other sections that are not code or data of the program.
    Skip,
}

fn malformed(path: &Path, message: String) -> ObjectError {
    ObjectError::Malformed {
        path: path.to_path_buf(),
        message,
    }
}

fn fixed_name(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn role_of(segname: &str, sectname: &str, typ: u8, attrs: u32) -> Role {
    if attrs & macho::S_ATTR_DEBUG.0 != 0
        || segname == "__LD"
        || segname == "__DWARF"
        || sectname == "__eh_frame"
    {
        return Role::Skip;
    }
    let text = attrs & (macho::S_ATTR_PURE_INSTRUCTIONS.0 | macho::S_ATTR_SOME_INSTRUCTIONS.0) != 0;
    let t = macho::SectionType(typ);
    let kind = match t {
        macho::S_MOD_INIT_FUNC_POINTERS => return Role::Constructors,
        macho::S_ZEROFILL | macho::S_GB_ZEROFILL => AtomKind::Bss,
        macho::S_THREAD_LOCAL_ZEROFILL => AtomKind::TlsBss,
        macho::S_THREAD_LOCAL_REGULAR => AtomKind::TlsData,
        // The descriptors (`__thread_vars`): dyld rewrites their first word at load.
        macho::S_THREAD_LOCAL_VARIABLES => AtomKind::Data,
        macho::S_CSTRING_LITERALS
        | macho::S_4BYTE_LITERALS
        | macho::S_8BYTE_LITERALS
        | macho::S_16BYTE_LITERALS
        | macho::S_LITERAL_POINTERS => AtomKind::ReadOnly,
        macho::S_REGULAR | macho::S_COALESCED => {
            if text {
                AtomKind::Text
            } else if segname == "__TEXT" || segname == "__DATA_CONST" || sectname == "__const" {
                // `__DATA,__const` is read-only after dyld's fixups, like ELF `.data.rel.ro`.
                AtomKind::ReadOnly
            } else {
                AtomKind::Data
            }
        }
        // Stubs, lazy pointers, interposing tables, init offsets: linker output, not input.
        _ => return Role::Skip,
    };
    Role::Atoms(kind)
}

/// Where each atom of a section starts (section-relative offsets, ascending, starting at 0).
fn split_points(sect: &Sect, symbol_offsets: &[u64], subsections: bool) -> Vec<u64> {
    let mut points = vec![0u64];
    match macho::SectionType(sect.typ) {
        macho::S_CSTRING_LITERALS => {
            let mut start = 0usize;
            while start < sect.data.len() {
                let len = sect.data[start..]
                    .iter()
                    .position(|&b| b == 0)
                    .map_or(sect.data.len() - start, |p| p + 1);
                start += len;
                if start < sect.data.len() {
                    points.push(start as u64);
                }
            }
        }
        t @ (macho::S_4BYTE_LITERALS | macho::S_8BYTE_LITERALS | macho::S_16BYTE_LITERALS) => {
            let step = match t {
                macho::S_4BYTE_LITERALS => 4,
                macho::S_8BYTE_LITERALS => 8,
                _ => 16,
            };
            points.extend((1..sect.size.div_ceil(step)).map(|i| i * step));
        }
        _ if subsections => {
            points.extend(
                symbol_offsets
                    .iter()
                    .copied()
                    .filter(|&o| o > 0 && o < sect.size),
            );
        }
        _ => {}
    }
    points.sort_unstable();
    points.dedup();
    points
}

/// The atoms of one section: (section-relative start, atom), ascending.
type SectionAtoms = Vec<(u64, AtomId)>;

/// The atom of a section containing section-relative `offset`, and the offset inside it. An
/// offset at the very end of the section (an end label) belongs to the last atom.
fn locate(atoms: &SectionAtoms, all: &[Draft], offset: u64) -> Option<(AtomId, u64)> {
    let idx = atoms.partition_point(|&(start, _)| start <= offset);
    let (start, atom) = *atoms.get(idx.checked_sub(1)?)?;
    let inside = offset - start;
    (inside <= all[atom.0 as usize].size).then_some((atom, inside))
}

pub(crate) fn parse_relocatable(path: &Path, bytes: &[u8]) -> Result<Object, ObjectError> {
    let file = MachOFile64::<Endianness>::parse(bytes)
        .map_err(|e| malformed(path, format!("not a readable 64-bit Mach-O file: {e}")))?;
    let endian = file.endian();
    let header = file.macho_header();
    let machine = match header.cputype(endian) {
        macho::CPU_TYPE_X86_64 => Machine::X86_64,
        macho::CPU_TYPE_ARM64 => Machine::Aarch64,
        other => {
            return Err(ObjectError::UnsupportedArch {
                path: path.to_path_buf(),
                arch: format!("Mach-O cputype {:#x}", other.0),
            })
        }
    };
    let filetype = header.filetype(endian);
    if filetype != macho::MH_OBJECT {
        return Err(ObjectError::NotRelocatable {
            path: path.to_path_buf(),
            found: format!("Mach-O filetype {}", filetype.0),
        });
    }
    let subsections = header.flags(endian).0 & macho::MH_SUBSECTIONS_VIA_SYMBOLS.0 != 0;

    let mut sects: Vec<Sect> = Vec::new();
    for section in file.sections() {
        let raw = section.macho_section();
        let ordinal = section.index().0;
        let segname = fixed_name(raw.segname());
        let sectname = fixed_name(raw.sectname());
        let flags = raw.flags(endian).0;
        let typ = (flags & macho::SECTION_TYPE) as u8;
        let attrs = flags & macho::SECTION_ATTRIBUTES;
        let name = format!("{segname},{sectname}");
        let zerofill = matches!(
            macho::SectionType(typ),
            macho::S_ZEROFILL | macho::S_GB_ZEROFILL | macho::S_THREAD_LOCAL_ZEROFILL
        );
        let data = if zerofill {
            &[][..]
        } else {
            section
                .data()
                .map_err(|e| malformed(path, format!("section {name}: contents: {e}")))?
        };
        let relocs = section
            .macho_relocations()
            .map_err(|e| malformed(path, format!("section {name}: relocations: {e}")))?;
        let align_log = raw.align(endian);
        if align_log > 63 {
            return Err(malformed(
                path,
                format!("section {name}: alignment 2^{align_log}"),
            ));
        }
        let size = raw.size(endian);
        if !zerofill && data.len() as u64 != size {
            return Err(malformed(
                path,
                format!(
                    "section {name}: {size} bytes declared, {} in the file",
                    data.len()
                ),
            ));
        }
        sects.push(Sect {
            ordinal,
            name,
            addr: raw.addr(endian),
            size,
            align: 1u64 << align_log,
            typ,
            data,
            relocs,
            role: role_of(&segname, &sectname, typ, attrs),
        });
    }
    let sect_by_ordinal = |ordinal: usize| sects.iter().position(|s| s.ordinal == ordinal);

    // Symbols: every non-stab nlist entry, in table order; `nlist_map[i]` is the SymbolId of
    // nlist entry `i`.
    let symtab = file.macho_symbol_table();
    let strings = symtab.strings();
    let nlists = symtab.symbols();
    let mut nlist_map: Vec<Option<SymbolId>> = vec![None; nlists.len()];
    struct Pending {
        name: String,
        n_type: u8,
        n_sect: u8,
        n_desc: u16,
        n_value: u64,
    }
    let mut pending: Vec<Pending> = Vec::new();
    for (i, nlist) in nlists.iter().enumerate() {
        let n_type = nlist.n_type().0;
        if n_type & macho::N_STAB != 0 {
            continue;
        }
        let name = nlist
            .name(endian, strings)
            .map_err(|e| malformed(path, format!("symbol {i}: name: {e}")))?;
        nlist_map[i] = Some(SymbolId(pending.len() as u32));
        pending.push(Pending {
            name: String::from_utf8_lossy(name).into_owned(),
            n_type,
            n_sect: nlist.n_sect(),
            n_desc: nlist.n_desc(endian).0,
            n_value: nlist.n_value(endian),
        });
    }
    let is_defined_in = |p: &Pending, s: &Sect| {
        p.n_type & macho::N_TYPE == macho::N_SECT.0 && p.n_sect as usize == s.ordinal
    };

    // Atoms, section by section.
    let mut atoms: Vec<Draft> = Vec::new();
    let mut section_atoms: Vec<SectionAtoms> = vec![Vec::new(); sects.len()];
    for (si, sect) in sects.iter().enumerate() {
        let Role::Atoms(kind) = sect.role else {
            continue;
        };
        if sect.size == 0 {
            continue;
        }
        let mut offsets: Vec<u64> = pending
            .iter()
            .filter(|p| is_defined_in(p, sect) && p.n_desc & macho::N_ALT_ENTRY.0 == 0)
            .filter_map(|p| p.n_value.checked_sub(sect.addr))
            .collect();
        offsets.sort_unstable();
        let points = split_points(sect, &offsets, subsections);
        for (k, &start) in points.iter().enumerate() {
            let end = points.get(k + 1).copied().unwrap_or(sect.size);
            // lld: a subsection is as aligned as its section, less what its offset breaks.
            let align = if start == 0 {
                sect.align
            } else {
                sect.align.min(1u64 << start.trailing_zeros())
            };
            let bytes = if sect.data.is_empty() {
                Vec::new()
            } else {
                sect.data[start as usize..end as usize].to_vec()
            };
            section_atoms[si].push((start, AtomId(atoms.len() as u32)));
            atoms.push(Draft {
                section_name: sect.name.clone(),
                section_index: sect.ordinal,
                kind,
                align,
                size: end - start,
                bytes,
                merge_strings: macho::SectionType(sect.typ) == macho::S_CSTRING_LITERALS,
                comdat: macho::SectionType(sect.typ) == macho::S_COALESCED,
                relocs: Vec::new(),
                symbols: Vec::new(),
            });
        }
    }

    // Symbols, now that atoms are known.
    let mut symbols: Vec<Symbol> = Vec::with_capacity(pending.len());
    for (id, p) in pending.iter().enumerate() {
        let ext = p.n_type & macho::N_EXT.0 != 0;
        let weak = p.n_desc & (macho::N_WEAK_DEF.0 | macho::N_WEAK_REF.0) != 0;
        let binding = match (ext, weak) {
            (false, _) => Binding::Local,
            (true, true) => Binding::Weak,
            (true, false) => Binding::Global,
        };
        let typ = p.n_type & macho::N_TYPE;
        let (def, kind, size) = if typ == macho::N_SECT.0 {
            match sect_by_ordinal(p.n_sect as usize) {
                Some(si) => {
                    let sect = &sects[si];
                    let offset = p.n_value.checked_sub(sect.addr).ok_or_else(|| {
                        malformed(
                            path,
                            format!(
                                "symbol {}: address {:#x} before its section {}",
                                p.name, p.n_value, sect.name
                            ),
                        )
                    })?;
                    match locate(&section_atoms[si], &atoms, offset) {
                        Some((atom, inside)) => {
                            let a = &atoms[atom.0 as usize];
                            let kind = match (a.kind, macho::SectionType(sect.typ)) {
                                (AtomKind::Text, _) => SymbolKind::Function,
                                (_, macho::S_THREAD_LOCAL_VARIABLES) => SymbolKind::Tls,
                                _ => SymbolKind::Object,
                            };
                            // Mach-O symbols have no size: up to the next symbol or the end.
                            let next = pending
                                .iter()
                                .filter(|q| is_defined_in(q, sect) && q.n_value > p.n_value)
                                .map(|q| q.n_value - sect.addr)
                                .min()
                                .unwrap_or(sect.size);
                            (
                                SymbolDef::Atom {
                                    atom,
                                    offset: AtomOffset(inside),
                                },
                                kind,
                                next.min(sect.size) - offset.min(sect.size),
                            )
                        }
                        None if matches!(sect.role, Role::Atoms(_)) && sect.size > 0 => {
                            return Err(malformed(
                                path,
                                format!(
                                    "symbol {}: address {:#x} outside its section {}",
                                    p.name, p.n_value, sect.name
                                ),
                            ))
                        }
                        None => (SymbolDef::Other, SymbolKind::Object, 0),
                    }
                }
                None => {
                    return Err(malformed(
                        path,
                        format!("symbol {}: no section {}", p.name, p.n_sect),
                    ))
                }
            }
        } else if typ == macho::N_UNDF.0 && ext && p.n_value != 0 {
            let align_log = (p.n_desc >> 8) & 0x0f;
            (
                SymbolDef::Common {
                    size: p.n_value,
                    align: 1u64 << align_log,
                },
                SymbolKind::Object,
                p.n_value,
            )
        } else if typ == macho::N_UNDF.0 {
            (SymbolDef::Undefined, SymbolKind::NoType, 0)
        } else if typ == macho::N_ABS.0 {
            (SymbolDef::Absolute(p.n_value), SymbolKind::NoType, 0)
        } else {
            (SymbolDef::Other, SymbolKind::NoType, 0)
        };
        if let SymbolDef::Atom { atom, .. } = def {
            atoms[atom.0 as usize].symbols.push(SymbolId(id as u32));
            if binding == Binding::Weak {
                // A weak definition (C++ inline function, template instance) may be in
                // several objects; the linker keeps one, like an ELF COMDAT group.
                atoms[atom.0 as usize].comdat = true;
            }
        }
        symbols.push(Symbol {
            name: p.name.as_str().into(),
            kind,
            binding,
            hidden: p.n_type & macho::N_PEXT.0 != 0,
            def,
            size,
        });
    }
    for atom in &mut atoms {
        // By offset; at one offset, names of the program before assembler-private labels
        // (`ltmp0`, `l_.str`, `L...`), so the atom's primary symbol is the function.
        atom.symbols.sort_by_key(|&s| {
            let sym = &symbols[s.0 as usize];
            let offset = match sym.def {
                SymbolDef::Atom { offset, .. } => offset.0,
                _ => 0,
            };
            (offset, is_private_label(&sym.name))
        });
    }

    // Relocations.
    let mut section_symbols: rustc_hash::FxHashMap<AtomId, SymbolId> = Default::default();
    let mut constructors = Vec::new();
    let mut ctx = RelocContext {
        path,
        machine,
        sects: &sects,
        section_atoms: &section_atoms,
        nlist_map: &nlist_map,
        atoms: &mut atoms,
        symbols: &mut symbols,
        section_symbols: &mut section_symbols,
    };
    for (si, sect) in sects.iter().enumerate() {
        match sect.role {
            Role::Skip => continue,
            Role::Constructors => {
                for r in sect.relocs {
                    let info = r.info(endian);
                    let (symbol, addend) =
                        ctx.absolute_target(&info, read_field(sect, &info, path)?)?;
                    constructors.push((
                        info.r_address,
                        Constructor {
                            priority: None,
                            symbol,
                            addend,
                        },
                    ));
                }
            }
            Role::Atoms(_) => ctx.section(si, endian)?,
        }
    }
    constructors.sort_by_key(|&(offset, _)| offset);
    for atom in &mut atoms {
        atom.relocs.sort_by_key(|r| r.offset);
    }

    let mut warnings = Vec::new();
    if sects.iter().any(|s| s.name.starts_with("__DWARF,")) {
        warnings.push(
            "Mach-O DWARF is not read yet: no line rows or variable declarations for this object"
                .to_string(),
        );
    }
    Ok(Object {
        machine,
        format: ObjectFormat::MachO,
        file: Shared::from(bytes),
        atoms: atoms.into_iter().map(Draft::into_atom).collect(),
        symbols,
        warnings,
        constructors: constructors.into_iter().map(|(_, c)| c).collect(),
        ..Default::default()
    })
}

/// An atom while its relocations and symbols are collected (and Mach-O's addends folded
/// into its bytes): [`Atom`] with growable parts.
struct Draft {
    section_name: String,
    section_index: usize,
    kind: AtomKind,
    align: u64,
    size: u64,
    bytes: Vec<u8>,
    merge_strings: bool,
    comdat: bool,
    relocs: Vec<Reloc>,
    symbols: Vec<SymbolId>,
}

impl Draft {
    fn into_atom(self) -> Atom {
        Atom {
            section_name: self.section_name.into(),
            section_index: self.section_index,
            kind: self.kind,
            align: self.align,
            size: self.size,
            bytes: Shared::from(self.bytes),
            merge_strings: self.merge_strings,
            comdat: self.comdat,
            relocs: Shared::from(self.relocs),
            symbols: Shared::from(self.symbols),
        }
    }
}

/// Assembler- and linker-private labels: not names of anything in the program (C and C++
/// names carry a leading `_` in Mach-O).
pub(crate) fn is_private_label(name: &str) -> bool {
    name.starts_with('l') || name.starts_with('L')
}

/// The inline value of a relocated field (sign-extended for 32 bits).
fn read_field(sect: &Sect, info: &macho::RelocationInfo, path: &Path) -> Result<i64, ObjectError> {
    let start = info.r_address as usize;
    let len = 1usize << info.r_length;
    let field = start
        .checked_add(len)
        .and_then(|end| sect.data.get(start..end))
        .ok_or_else(|| {
            malformed(
                path,
                format!(
                    "section {}: relocation at {:#x} ({len} bytes) outside the section",
                    sect.name, info.r_address
                ),
            )
        })?;
    Ok(match len {
        1 => field[0] as i8 as i64,
        2 => i16::from_le_bytes([field[0], field[1]]) as i64,
        4 => i32::from_le_bytes([field[0], field[1], field[2], field[3]]) as i64,
        _ => i64::from_le_bytes(field.try_into().unwrap_or([0; 8])),
    })
}

struct RelocContext<'a, 'data> {
    path: &'a Path,
    machine: Machine,
    sects: &'a [Sect<'data>],
    section_atoms: &'a [SectionAtoms],
    nlist_map: &'a [Option<SymbolId>],
    atoms: &'a mut Vec<Draft>,
    symbols: &'a mut Vec<Symbol>,
    section_symbols: &'a mut rustc_hash::FxHashMap<AtomId, SymbolId>,
}

impl RelocContext<'_, '_> {
    fn err(&self, sect: &Sect, info: &macho::RelocationInfo, what: &str) -> ObjectError {
        malformed(
            self.path,
            format!(
                "section {}: relocation {} at {:#x}: {what}",
                sect.name,
                RelocKind::macho_name(self.machine, info.r_type.0 as u32),
                info.r_address
            ),
        )
    }

    fn extern_symbol(&self, info: &macho::RelocationInfo) -> Option<SymbolId> {
        *self.nlist_map.get(info.r_symbolnum as usize)?
    }

    /// The section symbol standing for `atom` (made on first use), the target of
    /// section-relative relocations, as in ELF.
    fn section_symbol(&mut self, atom: AtomId) -> SymbolId {
        if let Some(&s) = self.section_symbols.get(&atom) {
            return s;
        }
        let id = SymbolId(self.symbols.len() as u32);
        self.symbols.push(Symbol {
            name: Name::default(),
            kind: SymbolKind::Section,
            binding: Binding::Local,
            hidden: false,
            def: SymbolDef::Atom {
                atom,
                offset: AtomOffset(0),
            },
            size: self.atoms[atom.0 as usize].size,
        });
        self.section_symbols.insert(atom, id);
        id
    }

    /// A section-relative target: the atom of section ordinal `ordinal` holding object
    /// address `addr`, as (section symbol, offset inside the atom).
    fn section_target(&mut self, ordinal: u32, addr: i64) -> Option<(SymbolId, i64)> {
        let si = self
            .sects
            .iter()
            .position(|s| s.ordinal == ordinal as usize)?;
        let offset = u64::try_from(addr).ok()?.checked_sub(self.sects[si].addr)?;
        let (atom, inside) = locate(&self.section_atoms[si], self.atoms, offset)?;
        Some((self.section_symbol(atom), inside as i64))
    }

    /// Target and addend of a non-PC-relative field holding `inline`.
    fn absolute_target(
        &mut self,
        info: &macho::RelocationInfo,
        inline: i64,
    ) -> Result<(SymbolId, i64), ObjectError> {
        if info.r_extern {
            return self
                .extern_symbol(info)
                .map(|s| (s, inline))
                .ok_or_else(|| malformed(self.path, format!("bad symbol {}", info.r_symbolnum)));
        }
        self.section_target(info.r_symbolnum, inline).ok_or_else(|| {
            malformed(
                self.path,
                format!(
                    "section-relative relocation at {:#x}: address {inline:#x} is in no atom of section {}",
                    info.r_address, info.r_symbolnum
                ),
            )
        })
    }

    fn section(&mut self, si: usize, endian: Endianness) -> Result<(), ObjectError> {
        let sects = self.sects;
        let sect = &sects[si];
        let infos: Vec<macho::RelocationInfo> =
            sect.relocs.iter().map(|r| r.info(endian)).collect();
        let mut i = 0;
        // Zeroed fields: (section offset, length).
        let mut zero: Vec<(u64, usize)> = Vec::new();
        while i < infos.len() {
            let info = infos[i];
            if info.r_address & macho::R_SCATTERED != 0 {
                return Err(self.err(
                    sect,
                    &info,
                    "scattered relocations are not used on 64-bit targets",
                ));
            }
            let mut decoded: Vec<(u64, Reloc)> = Vec::new();
            let offset = info.r_address as u64;
            let raw = info.r_type.0 as u32;
            let mut consumed = 1;
            match self.machine {
                Machine::X86_64 => {
                    let inline = if sect.data.is_empty() {
                        0
                    } else {
                        read_field(sect, &info, self.path)?
                    };
                    match (info.r_type, info.r_pcrel, info.r_length) {
                        (macho::X86_64_RELOC_UNSIGNED, false, 2 | 3) => {
                            let (symbol, addend) = self.absolute_target(&info, inline)?;
                            let kind = if info.r_length == 3 {
                                RelocKind::Abs64
                            } else {
                                RelocKind::Abs32
                            };
                            decoded.push((
                                offset,
                                Reloc {
                                    offset: AtomOffset(offset),
                                    raw_type: raw,
                                    kind,
                                    symbol,
                                    addend,
                                },
                            ));
                        }
                        (macho::X86_64_RELOC_SUBTRACTOR, false, 2 | 3) => {
                            decoded.extend(self.subtractor_pair(
                                sect,
                                &infos,
                                i,
                                inline,
                                macho::X86_64_RELOC_UNSIGNED,
                            )?);
                            consumed = 2;
                        }
                        (
                            t @ (macho::X86_64_RELOC_SIGNED
                            | macho::X86_64_RELOC_SIGNED_1
                            | macho::X86_64_RELOC_SIGNED_2
                            | macho::X86_64_RELOC_SIGNED_4
                            | macho::X86_64_RELOC_BRANCH
                            | macho::X86_64_RELOC_GOT_LOAD
                            | macho::X86_64_RELOC_GOT
                            | macho::X86_64_RELOC_TLV),
                            true,
                            2,
                        ) => {
                            let k: i64 = match t {
                                macho::X86_64_RELOC_SIGNED_1 => 1,
                                macho::X86_64_RELOC_SIGNED_2 => 2,
                                macho::X86_64_RELOC_SIGNED_4 => 4,
                                _ => 0,
                            };
                            let kind = match t {
                                macho::X86_64_RELOC_BRANCH => RelocKind::Plt32,
                                macho::X86_64_RELOC_GOT_LOAD => RelocKind::RexGotPcRelX,
                                macho::X86_64_RELOC_GOT => RelocKind::GotPcRel,
                                macho::X86_64_RELOC_TLV => RelocKind::Tlvp,
                                _ => RelocKind::Pc32,
                            };
                            let (symbol, addend) = if info.r_extern {
                                let s = self
                                    .extern_symbol(&info)
                                    .ok_or_else(|| self.err(sect, &info, "bad symbol index"))?;
                                (s, inline - 4)
                            } else if matches!(kind, RelocKind::Pc32 | RelocKind::Plt32) {
                                let target = (sect.addr as i64)
                                    .wrapping_add(offset as i64 + 4 + k)
                                    .wrapping_add(inline);
                                let (s, inside) = self
                                    .section_target(info.r_symbolnum, target)
                                    .ok_or_else(|| {
                                        self.err(
                                            sect,
                                            &info,
                                            &format!("target {target:#x} is in no atom"),
                                        )
                                    })?;
                                (s, inside - 4 - k)
                            } else {
                                return Err(self.err(
                                    sect,
                                    &info,
                                    "a GOT or TLV reference must name a symbol",
                                ));
                            };
                            decoded.push((
                                offset,
                                Reloc {
                                    offset: AtomOffset(offset),
                                    raw_type: raw,
                                    kind,
                                    symbol,
                                    addend,
                                },
                            ));
                        }
                        _ => {
                            return Err(self.err(
                                sect,
                                &info,
                                &format!(
                                    "unexpected form (pcrel {}, length {})",
                                    info.r_pcrel,
                                    1u32 << info.r_length
                                ),
                            ))
                        }
                    }
                    zero.push((offset, 1usize << info.r_length));
                }
                Machine::Aarch64 => {
                    let mut addend = 0i64;
                    let mut info = info;
                    if info.r_type == macho::ARM64_RELOC_ADDEND {
                        // r_symbolnum is a signed 24-bit addend for the next relocation.
                        addend = ((info.r_symbolnum << 8) as i32 >> 8) as i64;
                        info = *infos.get(i + 1).ok_or_else(|| {
                            self.err(sect, &info, "ADDEND is the last relocation")
                        })?;
                        if info.r_address as u64 != offset {
                            return Err(self.err(
                                sect,
                                &info,
                                "ADDEND is not followed by a relocation at its address",
                            ));
                        }
                        consumed = 2;
                    }
                    let raw = info.r_type.0 as u32;
                    let inline = || read_field(sect, &info, self.path);
                    let kind = match (info.r_type, info.r_pcrel, info.r_length) {
                        (macho::ARM64_RELOC_UNSIGNED, false, 2 | 3) if consumed == 1 => {
                            let (symbol, addend) = self.absolute_target(&info, inline()?)?;
                            let kind = if info.r_length == 3 {
                                RelocKind::Abs64
                            } else {
                                RelocKind::Abs32
                            };
                            decoded.push((
                                offset,
                                Reloc {
                                    offset: AtomOffset(offset),
                                    raw_type: raw,
                                    kind,
                                    symbol,
                                    addend,
                                },
                            ));
                            zero.push((offset, 1usize << info.r_length));
                            None
                        }
                        (macho::ARM64_RELOC_SUBTRACTOR, false, 2 | 3) if consumed == 1 => {
                            decoded.extend(self.subtractor_pair(
                                sect,
                                &infos,
                                i,
                                inline()?,
                                macho::ARM64_RELOC_UNSIGNED,
                            )?);
                            zero.push((offset, 1usize << info.r_length));
                            consumed = 2;
                            None
                        }
                        (macho::ARM64_RELOC_POINTER_TO_GOT, true, 2) => {
                            // Like every arm64 type but UNSIGNED/SUBTRACTOR, its addend is
                            // an ADDEND's: the field holds what the assembler made of
                            // `sym@GOT - .` (minus the field's offset), which ld64 and lld
                            // ignore.
                            zero.push((offset, 4));
                            Some((RelocKind::GotPcRel, addend))
                        }
                        (macho::ARM64_RELOC_BRANCH26, true, 2) => {
                            Some((RelocKind::Arm64Branch26, addend))
                        }
                        (macho::ARM64_RELOC_PAGE21, true, 2) => {
                            Some((RelocKind::Arm64Page21, addend))
                        }
                        (macho::ARM64_RELOC_PAGEOFF12, false, 2) => {
                            Some((RelocKind::Arm64PageOff12, addend))
                        }
                        (macho::ARM64_RELOC_GOT_LOAD_PAGE21, true, 2) => {
                            Some((RelocKind::Arm64GotPage21, addend))
                        }
                        (macho::ARM64_RELOC_GOT_LOAD_PAGEOFF12, false, 2) => {
                            Some((RelocKind::Arm64GotPageOff12, addend))
                        }
                        (macho::ARM64_RELOC_TLVP_LOAD_PAGE21, true, 2) => {
                            Some((RelocKind::Arm64TlvpPage21, addend))
                        }
                        (macho::ARM64_RELOC_TLVP_LOAD_PAGEOFF12, false, 2) => {
                            Some((RelocKind::Arm64TlvpPageOff12, addend))
                        }
                        _ => {
                            return Err(self.err(
                                sect,
                                &info,
                                &format!(
                                    "unexpected form (pcrel {}, length {}{})",
                                    info.r_pcrel,
                                    1u32 << info.r_length,
                                    if consumed == 2 { ", after ADDEND" } else { "" }
                                ),
                            ))
                        }
                    };
                    if let Some((kind, addend)) = kind {
                        if !info.r_extern {
                            return Err(self.err(
                                sect,
                                &info,
                                "an arm64 instruction relocation must name a symbol",
                            ));
                        }
                        let symbol = self
                            .extern_symbol(&info)
                            .ok_or_else(|| self.err(sect, &info, "bad symbol index"))?;
                        decoded.push((
                            offset,
                            Reloc {
                                offset: AtomOffset(offset),
                                raw_type: raw,
                                kind,
                                symbol,
                                addend,
                            },
                        ));
                    }
                }
            }
            for (offset, mut reloc) in decoded {
                let (atom, inside) = locate(&self.section_atoms[si], self.atoms, offset)
                    .filter(|&(atom, inside)| inside < self.atoms[atom.0 as usize].size)
                    .ok_or_else(|| self.err(sect, &info, "outside every atom of the section"))?;
                reloc.offset = AtomOffset(inside);
                self.atoms[atom.0 as usize].relocs.push(reloc);
            }
            i += consumed;
        }
        // Zero the fields whose addends were read (see the module documentation).
        for (offset, len) in zero {
            if let Some((atom, inside)) = locate(&self.section_atoms[si], self.atoms, offset) {
                let bytes = &mut self.atoms[atom.0 as usize].bytes;
                let start = inside as usize;
                if let Some(field) = bytes.get_mut(start..start + len) {
                    field.fill(0);
                }
            }
        }
        Ok(())
    }

    /// `SUBTRACTOR` at `infos[i]` and the `UNSIGNED` after it: the minus relocation and the
    /// plus one, both at the pair's offset.
    fn subtractor_pair(
        &mut self,
        sect: &Sect,
        infos: &[macho::RelocationInfo],
        i: usize,
        inline: i64,
        unsigned: macho::RelocationType,
    ) -> Result<Vec<(u64, Reloc)>, ObjectError> {
        let minus = infos[i];
        let plus = *infos
            .get(i + 1)
            .filter(|p| {
                p.r_type == unsigned
                    && p.r_address == minus.r_address
                    && p.r_length == minus.r_length
                    && !p.r_pcrel
            })
            .ok_or_else(|| self.err(sect, &minus, "not followed by UNSIGNED of the same field"))?;
        if !minus.r_extern {
            return Err(self.err(sect, &minus, "the subtracted symbol must be named"));
        }
        let minus_sym = self
            .extern_symbol(&minus)
            .ok_or_else(|| self.err(sect, &minus, "bad symbol index"))?;
        let (plus_sym, addend) = if plus.r_extern {
            let s = self
                .extern_symbol(&plus)
                .ok_or_else(|| self.err(sect, &plus, "bad symbol index"))?;
            (s, inline)
        } else {
            // The assembler writes the plus target's object address (with its constant)
            // and leaves B to the linker, as for a lone section-relative UNSIGNED.
            self.section_target(plus.r_symbolnum, inline)
                .ok_or_else(|| {
                    self.err(sect, &plus, &format!("target {inline:#x} is in no atom"))
                })?
        };
        let offset = minus.r_address as u64;
        let kind = if minus.r_length == 3 {
            RelocKind::Abs64
        } else {
            RelocKind::Abs32
        };
        Ok(vec![
            (
                offset,
                Reloc {
                    offset: AtomOffset(offset),
                    raw_type: minus.r_type.0 as u32,
                    kind: RelocKind::Subtractor,
                    symbol: minus_sym,
                    addend: 0,
                },
            ),
            (
                offset,
                Reloc {
                    offset: AtomOffset(offset),
                    raw_type: plus.r_type.0 as u32,
                    kind,
                    symbol: plus_sym,
                    addend,
                },
            ),
        ])
    }
}
