//! Symbol resolution: what each relocation of the new object refers to — a function's stable
//! entry, bytes of an atom this link copies (a body, a split `.cold` part, an IPA clone,
//! anonymous read-only data), a variable bound to its existing address, or a symbol of the
//! running image (the executable first, then libraries in load order).
//!
//! Classification works on the object alone (no addresses), so the driver can first compute
//! the closure of atoms to place and only then lay them out.

use std::cell::RefCell;
// FxHash: keyed by atom ids and names of one object, which no adversary chooses.
use rustc_hash::FxHashMap as HashMap;

use hot_object::{
    AtomId, AtomKind, AtomOffset, Binding, Machine, Object, Reloc, RelocKind, SymbolDef, SymbolId,
    SymbolKind,
};
use iced_x86::{Decoder, DecoderOptions, Instruction};

use hot_object::ImageSymbol;

use crate::image::{ImageIndex, ImageSymRef, ModuleId, Vaddr};
use crate::layout::{Allocator, EntryOwner, SymKey};
use crate::{ImageModel, RuntimeAddr, UnitRef};

/// How a function symbol's name relates to the function it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FunctionName<'n> {
    /// A function matched by name (`foo`, or `foo.localalias`, gcc's local alias of `foo`).
    Plain(&'n str),
    /// A compiler-split part (`foo.cold`, `foo.cold.3`) of the named function.
    Split(&'n str),
    /// An IPA clone (`foo.constprop.0`, `foo.isra.1`, `foo.part.2`): never matched by name.
    Clone,
}

pub(crate) fn function_name(name: &str) -> FunctionName<'_> {
    // Every suffix below has a dot: most names have none (checked once per function of the
    // object on every link; names are short, a plain loop costs less than `memchr`'s set-up).
    if !name.bytes().any(|b| b == b'.') {
        return FunctionName::Plain(name);
    }
    for marker in [".constprop.", ".isra.", ".part.", ".lto_priv."] {
        if name.contains(marker) {
            return FunctionName::Clone;
        }
    }
    if let Some(pos) = name.find(".cold") {
        let rest = &name[pos + 5..];
        if rest.is_empty() || rest.starts_with('.') {
            return FunctionName::Split(&name[..pos]);
        }
    }
    if let Some(base) = name.strip_suffix(".localalias") {
        return FunctionName::Plain(base);
    }
    FunctionName::Plain(name)
}

/// What an atom holds, for linking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AtomRole {
    /// A function with a stable entry (matched by name to the image, or a new function), at
    /// `offset` in the atom (0, or after `-fpatchable-function-entry` nops).
    Function {
        sym: SymbolId,
        offset: u64,
    },
    /// Code that is never an entry: split parts, IPA clones, text without a function symbol.
    /// Copied fresh with the bodies that reference it.
    Code,
    /// Anonymous read-only data (strings, jump tables, `CSWTCH.N`, `__func__.N`,
    /// function-local `static const` tables): copied fresh with each body that references it.
    AnonReadOnly,
    /// A named read-only object (a `const` global, a file-level `static const`): keeps its
    /// address.
    NamedReadOnly {
        sym: SymbolId,
    },
    /// A compiler's per-unit table in writable data (sanitizer descriptors and source
    /// locations, coverage counters: [`hot_object::is_compiler_table`]): copied fresh, into
    /// the data arena, with each body that references it, like anonymous read-only data.
    CompilerTable,
    /// Writable data: bound to its existing address, or allocated once.
    Variable {
        sym: Option<SymbolId>,
    },
    ThreadLocal {
        sym: Option<SymbolId>,
    },
}

/// Per-object facts computed once per link: atom roles, instruction ends for PC-relative
/// decoding.
pub(crate) struct ObjectInfo<'o> {
    pub obj: &'o Object,
    pub roles: Vec<AtomRole>,
    /// The plain name of the function each atom holds ([`ObjectInfo::function_name`]):
    /// asked for thousands of times per link, classified once.
    plain_names: Vec<Option<&'o str>>,
    /// Instruction ends of each text atom, decoded on first need.
    insn_ends: RefCell<HashMap<AtomId, Vec<(u64, u64)>>>,
}

impl<'o> ObjectInfo<'o> {
    pub(crate) fn new(obj: &'o Object) -> ObjectInfo<'o> {
        let roles: Vec<AtomRole> = (0..obj.atoms.len())
            .map(|i| Self::role_of(obj, AtomId(i as u32)))
            .collect();
        let plain_names = roles
            .iter()
            .map(|role| match role {
                AtomRole::Function { sym, .. } => match function_name(&obj.symbol(*sym).name) {
                    FunctionName::Plain(base) => Some(base),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        ObjectInfo {
            obj,
            roles,
            plain_names,
            insn_ends: RefCell::new(HashMap::default()),
        }
    }

    fn role_of(obj: &Object, id: AtomId) -> AtomRole {
        let atom = obj.atom(id);
        let named = |s: &SymbolId| {
            let sym = obj.symbol(*s);
            let mapping =
                obj.machine == Machine::Aarch64 && hot_object::is_assembler_label(&sym.name);
            !sym.name.is_empty()
                && !matches!(sym.kind, SymbolKind::Section | SymbolKind::File)
                && !mapping
        };
        let primary = atom.symbols.iter().copied().find(named);
        match atom.kind {
            AtomKind::Text => {
                // The first function of the section with a plain name (prefer a global one
                // over `foo.localalias`). It usually sits at offset 0; with
                // `-fpatchable-function-entry=N,M` it follows M bytes of nops.
                let mut best: Option<(u64, SymbolId)> = None;
                for &s in &atom.symbols {
                    let sym = obj.symbol(s);
                    let SymbolDef::Atom { offset, .. } = sym.def else {
                        continue;
                    };
                    // aarch64 mapping symbols (`$x`, `$d`) are NOTYPE and name nothing.
                    if !matches!(sym.kind, SymbolKind::Function | SymbolKind::NoType)
                        || sym.name.is_empty()
                        || hot_object::is_assembler_label(&sym.name)
                    {
                        continue;
                    }
                    if let FunctionName::Plain(base) = function_name(&sym.name) {
                        let better = match best {
                            None => true,
                            Some((best_offset, _)) if offset.0 != best_offset => {
                                offset.0 < best_offset
                            }
                            Some((_, b)) => {
                                base == sym.name && obj.symbol(b).name != base
                                    || (sym.binding != Binding::Local
                                        && obj.symbol(b).binding == Binding::Local)
                            }
                        };
                        if better {
                            best = Some((offset.0, s));
                        }
                    }
                }
                match best {
                    Some((offset, sym)) => AtomRole::Function { sym, offset },
                    None => AtomRole::Code,
                }
            }
            // hot-object's identity rules decide what is anonymous: no named symbol, string
            // literals, `CSWTCH.N`, `__func__.N`, function-local `static const` tables.
            AtomKind::ReadOnly => match primary {
                Some(s) if !atom.merge_strings && hot_object::atom_identity(obj, id).is_some() => {
                    AtomRole::NamedReadOnly { sym: s }
                }
                _ => AtomRole::AnonReadOnly,
            },
            AtomKind::Data | AtomKind::Bss if hot_object::is_compiler_table(obj, id) => {
                AtomRole::CompilerTable
            }
            AtomKind::Data | AtomKind::Bss => AtomRole::Variable { sym: primary },
            AtomKind::TlsData | AtomKind::TlsBss => AtomRole::ThreadLocal { sym: primary },
        }
    }

    pub(crate) fn role(&self, atom: AtomId) -> &AtomRole {
        &self.roles[atom.0 as usize]
    }

    /// The plain name of the function an atom holds.
    pub(crate) fn function_name(&self, atom: AtomId) -> Option<&'o str> {
        self.plain_names.get(atom.0 as usize).copied().flatten()
    }

    /// Whether `name` is another name of the function in `atom` (an alias at the same offset).
    pub(crate) fn is_alias_in(&self, atom: AtomId, name: &str) -> bool {
        let AtomRole::Function { offset, .. } = *self.role(atom) else {
            return false;
        };
        self.obj.atom(atom).symbols.iter().any(|&s| {
            let sym = self.obj.symbol(s);
            sym.name == name
                && matches!(sym.def, SymbolDef::Atom { offset: o, .. } if o.0 == offset)
        })
    }

    /// A readable name for an atom: its function or variable, else its section.
    pub(crate) fn atom_name(&self, atom: AtomId) -> String {
        if let Some(name) = self.function_name(atom) {
            return name.to_string();
        }
        match self.obj.primary_symbol(atom) {
            Some(s) => self.obj.symbol(s).name.to_string(),
            None => self.obj.atom(atom).section_name.to_string(),
        }
    }

    /// A readable name for a relocation's symbol (section symbols by what they hold).
    pub(crate) fn symbol_name(&self, sym: SymbolId) -> String {
        let s = self.obj.symbol(sym);
        if !s.name.is_empty() && s.kind != SymbolKind::Section {
            return s.name.to_string();
        }
        match s.def {
            SymbolDef::Atom { atom, .. } => self.atom_name(atom),
            _ => "<section>".to_string(),
        }
    }

    /// For a PC-relative field at `offset` of a text atom: the distance from the field to the
    /// end of its instruction (4 for `call`, `lea`, 5 or 8 when an immediate follows). Data
    /// atoms and undecodable code give 4, the psABI's usual `-4` form.
    pub(crate) fn pc_adjust(&self, atom: AtomId, offset: AtomOffset) -> u64 {
        if self.obj.atom(atom).kind != AtomKind::Text {
            return 0;
        }
        match self.instruction_around(atom, offset) {
            Some((_, end)) => end - offset.0,
            None => 4,
        }
    }

    /// Whether the field at `offset` of text atom `atom` is the rel32 displacement of a
    /// direct `call`, `jmp` or `jcc` (the last four bytes of that instruction), not the
    /// operand of an instruction that takes the symbol's address (`lea sym(%rip)`).
    pub(crate) fn is_rel32_branch(&self, atom: AtomId, offset: AtomOffset) -> bool {
        let a = self.obj.atom(atom);
        if a.kind != AtomKind::Text {
            return false;
        }
        let Some((start, end)) = self.instruction_around(atom, offset) else {
            return false;
        };
        if end != offset.0.saturating_add(4) {
            return false;
        }
        let Some(code) = a.bytes.get(start as usize..end as usize) else {
            return false;
        };
        let instr = Decoder::with_ip(64, code, start, DecoderOptions::NONE).decode();
        instr.is_call_near() || instr.is_jmp_short_or_near() || instr.is_jcc_short_or_near()
    }

    /// The instruction of text atom `atom` whose bytes hold `offset`: its start and end.
    /// `None` when the decoded code has no instruction there.
    fn instruction_around(&self, atom: AtomId, offset: AtomOffset) -> Option<(u64, u64)> {
        let a = self.obj.atom(atom);
        let mut cache = self.insn_ends.borrow_mut();
        let ends = cache.entry(atom).or_insert_with(|| {
            let mut decoder = Decoder::with_ip(64, &a.bytes, 0, DecoderOptions::NONE);
            let mut instr = Instruction::default();
            let mut v = Vec::new();
            while decoder.can_decode() {
                decoder.decode_out(&mut instr);
                v.push((instr.ip(), instr.next_ip()));
            }
            v
        });
        let idx = ends.partition_point(|&(start, _)| start <= offset.0);
        idx.checked_sub(1)
            .map(|i| ends[i])
            .filter(|&(start, end)| offset.0 >= start && offset.0 < end)
    }
}

/// Whether a relocation kind addresses a GOT slot rather than the symbol.
pub(crate) fn is_got_kind(kind: RelocKind) -> bool {
    matches!(
        kind,
        RelocKind::GotPcRel
            | RelocKind::GotPcRelX
            | RelocKind::RexGotPcRelX
            | RelocKind::AdrGotPage
            | RelocKind::Ld64GotLo12Nc
    )
}

/// Whether a relocation kind is PC-relative to the field.
pub(crate) fn is_pc_relative(kind: RelocKind) -> bool {
    matches!(
        kind,
        RelocKind::Pc32 | RelocKind::Plt32 | RelocKind::Pc16 | RelocKind::Pc8 | RelocKind::Pc64
    )
}

/// What a relocation's symbol designates, before addresses are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetClass {
    /// The stable entry of the function in `atom`. `delta` = designated byte minus the
    /// relocation symbol's offset: `S = entry - delta` makes `S + A (+ pc adjust)` land on
    /// the entry.
    Entry {
        atom: AtomId,
        delta: i64,
    },
    /// Bytes of an atom this link copies.
    Placed {
        atom: AtomId,
    },
    /// An atom bound to an address (variable, named read-only object, thread-local).
    Bound {
        atom: AtomId,
    },
    /// Undefined in the object: found in the image.
    External,
    Absolute(u64),
    /// Not something a patch can refer to (a symbol in a non-allocated section).
    Unsupported,
}

impl ObjectInfo<'_> {
    /// Classify the target of `reloc` in `atom`.
    pub(crate) fn classify(&self, atom: AtomId, reloc: &Reloc) -> TargetClass {
        let sym = self.obj.symbol(reloc.symbol);
        match sym.def {
            SymbolDef::Atom {
                atom: target,
                offset,
            } => match self.role(target) {
                AtomRole::Function { .. } | AtomRole::Code => {
                    let designated = if is_got_kind(reloc.kind) {
                        offset.0 as i64
                    } else if is_pc_relative(reloc.kind) && self.obj.machine == Machine::X86_64 {
                        // aarch64 references designate `S + A` exactly (fixed-size
                        // instructions, no end-of-instruction bias).

                        (offset.0 as i64)
                            .wrapping_add(reloc.addend)
                            .wrapping_add(self.pc_adjust(atom, reloc.offset) as i64)
                    } else {
                        (offset.0 as i64).wrapping_add(reloc.addend)
                    };
                    let entry_offset = match self.role(target) {
                        AtomRole::Function { offset, .. } => Some(*offset as i64),
                        _ => None,
                    };
                    if Some(designated) == entry_offset {
                        TargetClass::Entry {
                            atom: target,
                            delta: designated - offset.0 as i64,
                        }
                    } else {
                        TargetClass::Placed { atom: target }
                    }
                }
                AtomRole::AnonReadOnly | AtomRole::CompilerTable => {
                    TargetClass::Placed { atom: target }
                }
                AtomRole::NamedReadOnly { .. }
                | AtomRole::Variable { .. }
                | AtomRole::ThreadLocal { .. } => TargetClass::Bound { atom: target },
            },
            SymbolDef::Undefined | SymbolDef::Common { .. } => TargetClass::External,
            SymbolDef::Absolute(v) => TargetClass::Absolute(v),
            SymbolDef::Other => TargetClass::Unsupported,
        }
    }

    /// The offset of a relocation's symbol inside its atom (0 for section symbols).
    pub(crate) fn symbol_offset(&self, sym: SymbolId) -> u64 {
        match self.obj.symbol(sym).def {
            SymbolDef::Atom { offset, .. } => offset.0,
            _ => 0,
        }
    }
}

/// The key of a function or variable across links.
pub(crate) fn sym_key(obj: &Object, sym: SymbolId, unit: &UnitRef, name: &str) -> SymKey {
    let s = obj.symbol(sym);
    SymKey {
        unit: (s.binding == Binding::Local).then(|| unit.source.clone()),
        name: name.to_string(),
    }
}

/// Where a function's stable entry is, if it has one already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StableEntry {
    /// The function's address in the original image.
    Image(ImageSymRef),
    /// A new function's jump stub in the code arena.
    Stub(RuntimeAddr),
}

/// Whether the image's code at `vaddr` belongs to `unit` (by its compile unit's DWARF
/// ranges); `None` when the image does not say.
pub(crate) fn unit_defines(model: &ImageModel, unit: &UnitRef, vaddr: u64) -> Option<bool> {
    let cu = model.exe.image.compile_units.get(unit.compile_unit?)?;
    if cu.ranges.is_empty() {
        return None;
    }
    Some(cu.ranges.iter().any(|&(lo, hi)| lo <= vaddr && vaddr < hi))
}

/// Whether the image's definition `sym` belongs to `unit`: by the compile unit's code ranges
/// for code, by the addresses of its variables (`DW_OP_addr`) for data — there only when
/// exactly one compile unit lists the variable (a unit's DWARF may leave one out, and the
/// weak and strong definitions of one name both list the winner). `None` when the image
/// does not say.
pub(crate) fn unit_defines_symbol(
    model: &ImageModel,
    unit: &UnitRef,
    sym: &ImageSymbol,
) -> Option<bool> {
    match sym.kind {
        SymbolKind::Object => {
            let units = &model.exe.image.compile_units;
            let ours = unit.compile_unit?;
            units.get(ours)?;
            let holds =
                |cu: &hot_object::CompileUnit| cu.variables.binary_search(&sym.vaddr).is_ok();
            let mut claims = units.iter().enumerate().filter(|(_, cu)| holds(cu));
            // A global's `DW_OP_addr` names the symbol, so the linker points every unit's
            // definition of it at the one that won (a weak default's DWARF at its
            // override): only a single claim tells which file it was.
            match (claims.next(), claims.next()) {
                (Some((only, _)), None) => Some(only == ours),
                _ => None,
            }
        }
        // A TLS symbol's value is an offset in the TLS template, not an address.
        SymbolKind::Tls => None,
        _ => unit_defines(model, unit, sym.vaddr),
    }
}

/// The name of the source file (DWARF compile unit) other than `besides` that defined the
/// image's `sym`, if the image says.
pub(crate) fn defining_file<'m>(
    model: &'m ImageModel,
    sym: &ImageSymbol,
    besides: &UnitRef,
) -> Option<&'m str> {
    let image = &model.exe.image;
    let cu = match sym.kind {
        SymbolKind::Object => {
            let mut claims = image.compile_units.iter().enumerate().filter(|&(i, cu)| {
                Some(i) != besides.compile_unit && cu.variables.binary_search(&sym.vaddr).is_ok()
            });
            match (claims.next(), claims.next()) {
                (Some((only, _)), None) => Some(only),
                _ => None,
            }
        }
        SymbolKind::Tls => None,
        _ => image.compile_unit_at(sym.vaddr),
    }?;
    image.compile_units.get(cu).map(|cu| cu.name.as_str())
}

/// The executable's definition of the global (or hidden) name `name`: an ordinary global,
/// else a hidden global ld made local (preferring the one `unit` defined), else — for a
/// definition of `unit` itself — a local of `unit`'s own `STT_FILE` group (a function that
/// was `static` in the running program, or a hidden one an ld kept in its file's group).
/// Never another file's static: that is a different object that happens to share the name.
pub(crate) fn exe_definition(
    model: &ImageModel,
    index: &ImageIndex,
    unit: Option<&UnitRef>,
    name: &str,
) -> Option<ImageSymRef> {
    if let Some(r) = index.exe_global(name) {
        return Some(r);
    }
    let Some(unit) = unit else {
        return index.exe_hidden(model, name, None);
    };
    let prefer = |sym: &ImageSymbol| unit_defines_symbol(model, unit, sym) == Some(true);
    index
        .exe_hidden(model, name, Some(&prefer))
        .or_else(|| unit.tu.and_then(|tu| index.exe_local(tu, name)))
}

/// Find the existing stable entry of the function `name` defined by `sym` in the object.
pub(crate) fn existing_entry(
    model: &ImageModel,
    index: &ImageIndex,
    alloc: &Allocator<'_>,
    obj: &Object,
    sym: SymbolId,
    name: &str,
    unit: &UnitRef,
) -> Option<StableEntry> {
    let s = obj.symbol(sym);
    let image = if s.binding == Binding::Local {
        unit.tu
            .and_then(|tu| index.exe_local(tu, name))
            .or_else(|| {
                // A global (or hidden) function of this file in the running program, made
                // `static` by the edit: still this file's function if its code lies in the
                // unit's ranges.
                exe_definition(model, index, Some(unit), name)
                    .filter(|r| unit_defines_symbol(model, unit, r.get(model)) == Some(true))
            })
    } else {
        exe_definition(model, index, Some(unit), name)
    };
    if let Some(r) = image {
        if matches!(r.get(model).kind, SymbolKind::Function | SymbolKind::NoType) {
            return Some(StableEntry::Image(r));
        }
    }
    // A stub only reserved for the batch is the entry of a new function: this unit adds it.
    alloc
        .defined_new_function(&sym_key(obj, sym, unit, name))
        .map(StableEntry::Stub)
}

/// Whether the object's weak definition `sym` is the one the running program uses, given
/// the image's definition `image` of the same name. A weak default overridden by a strong
/// definition in another file is not: the override must never be redirected to it. The
/// unit's code ranges decide; without them, an image definition that is not weak while the
/// object's is weak is taken to be an override. A weak COMDAT copy is in use when the image's
/// definition is weak too (another copy of the same inline function or vague-linkage
/// object), or local (a hidden copy ld made local).
pub(crate) fn weak_definition_in_use(
    model: &ImageModel,
    obj: &Object,
    sym: SymbolId,
    image: ImageSymRef,
    unit: &UnitRef,
) -> bool {
    if obj.symbol(sym).binding != Binding::Weak {
        return true;
    }
    let image_sym = image.get(model);
    if matches!(image_sym.binding, Binding::Weak | Binding::Local)
        && matches!(obj.symbol(sym).def, SymbolDef::Atom { atom, .. } if obj.atom(atom).comdat)
    {
        // A C++ inline function, template instantiation or vague-linkage object (vtable,
        // typeinfo, `DW.ref.*` personality word): every copy is a weak COMDAT one, the
        // same definition, and the link keeps whichever comes first. Nothing overrides
        // this copy; a relink with the new text would run it. A hidden one is a LOCAL
        // symbol of the linked file (-fvisibility=hidden libraries), still a COMDAT copy.
        return true;
    }
    match unit_defines_symbol(model, unit, image_sym) {
        Some(ours) => ours,
        // A strong definition (GLOBAL, or a hidden one ld made LOCAL) beats a weak one.
        None => image_sym.binding == Binding::Weak,
    }
}

/// [`weak_definition_in_use`] for a function whose stable entry is the image's `image` (or
/// a new function's stub, `None`), given whose definition the entry runs since an earlier
/// patch (`owner`): once a strong definition of another file has taken the entry over, this
/// file's weak default is not in use, whatever the image says; the entry runs this file's
/// code again only if the owner is this file. An entry nobody redirected (or that a weak
/// default of another file owns) is decided by the image; a stub nobody else owns is ours.
pub(crate) fn weak_entry_in_use(
    model: &ImageModel,
    (obj, sym): (&Object, SymbolId),
    image: Option<ImageSymRef>,
    unit: &UnitRef,
    owner: Option<&EntryOwner>,
) -> bool {
    if obj.symbol(sym).binding != Binding::Weak {
        return true;
    }
    match (owner, image) {
        (Some(owner), _) if owner.is_of(unit) => true,
        (Some(owner), _) if !owner.weak => false,
        (_, Some(image)) => weak_definition_in_use(model, obj, sym, image, unit),
        (_, None) => true,
    }
}

/// Why the object's definition `sym` of `name` cannot join the running program: a global,
/// non-weak definition while the program's definition in use (`image`) is a non-weak one
/// of another file. A real link fails with "multiple definition" (hidden ones included);
/// redirecting the other file's entry to this body would run the wrong code. `None` when
/// the definitions may coexist or the image cannot tell which file defined `image`.
///
/// A strong definition replacing a *weak* one of another file is no conflict: after a
/// relink the strong one wins, so redirecting the weak entry to it is what the program
/// would do. A unit the image does not have at all (a new translation unit: no `STT_FILE`
/// group, no compile unit) defines none of the image's symbols: every strong one is
/// another file's, named when the image's DWARF says which.
pub(crate) fn multiple_definition(
    model: &ImageModel,
    obj: &Object,
    sym: SymbolId,
    image: ImageSymRef,
    unit: &UnitRef,
    name: &str,
) -> Option<String> {
    let s = obj.symbol(sym);
    if s.binding != Binding::Global {
        return None;
    }
    match s.def {
        // C++ inline functions and variables (`STB_GNU_UNIQUE` ones too): one copy is
        // kept, whichever file defines them.
        SymbolDef::Atom { atom, .. } if obj.atom(atom).comdat => return None,
        // A `-fcommon` tentative definition: the static linker merges it with the other.
        SymbolDef::Common { .. } => return None,
        _ => {}
    }
    let image_sym = image.get(model);
    if image_sym.binding == Binding::Weak {
        return None;
    }
    let new_unit = unit.tu.is_none() && unit.compile_unit.is_none();
    let other = match unit_defines_symbol(model, unit, image_sym) {
        Some(false) => defining_file(model, image_sym, unit)?,
        None if new_unit => defining_file(model, image_sym, unit).unwrap_or("the running program"),
        _ => return None,
    };
    Some(multiple_definition_message(
        name,
        other,
        &unit.source,
        !new_unit,
    ))
}

/// The message of a refused multiple definition of `name`, also defined in `other`, by the
/// unit `source`; `may_have_moved`: the definition may be one that moved between two files
/// of the running program, which only a restart takes in.
pub(crate) fn multiple_definition_message(
    name: &str,
    other: &str,
    source: &str,
    may_have_moved: bool,
) -> String {
    let name = hot_object::display_name(name);
    let moved = match may_have_moved {
        false => String::new(),
        true => format!(" (if `{name}` moved here from {other}, restart the program)"),
    };
    format!(
        "multiple definition of `{name}`: also defined in {other}; a second definition in \
         {source} is one a relink of the program would refuse, so nothing was swapped — make \
         one of them `static` or remove it{moved}"
    )
}

/// [`multiple_definition_message`] for a name two files of one save define (`other`'s
/// object linked first): no earlier save is involved, and the fix is in these files.
/// `located`: the error gets " at file:line" (where `source`'s copy is), which ends the
/// sentence.
fn same_save_definition_message(name: &str, other: &str, source: &str, located: bool) -> String {
    let name = hot_object::display_name(name);
    let place = match located {
        true => format!("the one in {source} is"),
        false => format!("the second is in {source}"),
    };
    format!(
        "multiple definition of `{name}`: this save compiles it twice, in {other} and in \
         {source} (two definitions a relink of the program would refuse), so nothing was \
         swapped — make it `static` or define it in one of them; {place}"
    )
}

/// An undefined symbol of the object, found in the running image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum External {
    /// A function of the executable: its stable entry.
    ExeFunction(RuntimeAddr),
    /// Data (or anything else addressable) of the executable, including copies made by
    /// `R_X86_64_COPY`.
    ExeData(RuntimeAddr),
    /// A thread-local of the executable, by its offset in the TLS template (the `st_value`
    /// of a TLS symbol in a linked image).
    ExeTls(Vaddr),
    /// An IFUNC defined by the executable itself.
    ExeIfunc,
    /// A function added by an earlier patch: its stub.
    NewFunction(RuntimeAddr),
    /// A variable added by an earlier patch.
    NewVariable(RuntimeAddr),
    LibFunction {
        lib: usize,
        addr: RuntimeAddr,
    },
    /// A library IFUNC: the runtime address of the library's `IRELATIVE` slot whose resolver
    /// is the IFUNC's `st_value`, if there is one.
    LibIfunc {
        lib: usize,
        irelative: Option<RuntimeAddr>,
    },
    LibData(RuntimeAddr),
    LibTls {
        lib: usize,
    },
    /// A weak undefined symbol nobody defines: address 0.
    WeakZero,
    Missing,
}

pub(crate) fn lookup_external(
    model: &ImageModel,
    index: &ImageIndex,
    alloc: &Allocator<'_>,
    name: &str,
    weak: bool,
) -> External {
    // In a library's model, a name the library exports that the executable (or a library
    // before it) defines too binds there, as the dynamic linker bound the library's own
    // references.
    if let Some(r) = index.interposer(name) {
        return other_module(model, index, r);
    }
    if let Some(r) = exe_definition(model, index, None, name) {
        let sym = r.get(model);
        let addr = model.exe.runtime(Vaddr(sym.vaddr));
        return match sym.kind {
            SymbolKind::Function => External::ExeFunction(addr),
            SymbolKind::Tls => External::ExeTls(Vaddr(sym.vaddr)),
            SymbolKind::Ifunc => External::ExeIfunc,
            _ => External::ExeData(addr),
        };
    }
    let key = SymKey {
        unit: None,
        name: name.to_string(),
    };
    if let Some(stub) = alloc.new_function(&key) {
        return External::NewFunction(stub);
    }
    if let Some(var) = alloc.new_variable(&key) {
        return External::NewVariable(var.addr);
    }
    if let Some(r) = index.lib_lookup(name) {
        return other_module(model, index, r);
    }
    if weak {
        External::WeakZero
    } else {
        External::Missing
    }
}

/// The definition `r` of a module of `libs` (another library, or the executable seen from a
/// library's model), as an [`External`].
pub(crate) fn other_module(model: &ImageModel, index: &ImageIndex, r: ImageSymRef) -> External {
    let ModuleId::Lib(lib) = r.module else {
        return External::Missing;
    };
    let module = &model.libs[lib];
    let sym = r.get(model);
    let addr = module.runtime(Vaddr(sym.vaddr));
    match sym.kind {
        SymbolKind::Function => External::LibFunction { lib, addr },
        SymbolKind::Ifunc => External::LibIfunc {
            lib,
            irelative: index
                .lib_irelative(lib, Vaddr(sym.vaddr))
                .map(|v| module.runtime(v)),
        },
        SymbolKind::Tls => External::LibTls { lib },
        _ => External::LibData(addr),
    }
}

impl crate::link::Link<'_> {
    /// Whether function `atom` (its symbol `sym`, named `name`) is as in the baseline and
    /// defined there by a symbol of the same name, kind, binding and visibility, in a
    /// section as much a COMDAT as its own. Against the image such a definition is what the
    /// program's own link (or the earlier save that added it) accepted; what can make it a
    /// multiple definition since is only another file's strong definition swapped in (a
    /// function `--gc-sections` dropped from this file added there, a new translation unit
    /// linked in), which owns an entry: the caller asks this only when no entry has such an
    /// owner, and then the image's index (thousands of lookups, cold after the compile) is
    /// not asked again.
    fn defined_as_in_baseline(&self, atom: AtomId, sym: SymbolId, name: &str) -> bool {
        let (Some(map), Some(baseline)) = (self.baseline_match.as_ref(), self.baseline) else {
            return false;
        };
        let Some(&(old, false)) = map.get(&atom) else {
            return false;
        };
        let new = self.info.obj.symbol(sym);
        if baseline.atom(old).comdat != self.info.obj.atom(atom).comdat {
            return false;
        }
        baseline.atom(old).symbols.iter().any(|&s| {
            let s = baseline.symbol(s);
            s.name == name
                && s.binding == new.binding
                && s.hidden == new.hidden
                && s.kind == new.kind
        })
    }

    /// Refuse the object's function definitions that would be multiple definitions of a
    /// name another file of the running program defines (see [`multiple_definition`]),
    /// before any entry of that other file can be redirected to them.
    ///
    /// `committed`: the linker's committed state, to tell a definition an earlier save swapped
    /// in from one an earlier file of this same batch links ([`crate::Linker::link_units`]
    /// links unit k against the state with units 0..k-1 applied).
    pub(crate) fn refuse_multiple_definitions(&mut self, committed: &crate::layout::LinkState) {
        let committed = crate::layout::Allocator::new(committed);
        let others_own = self.alloc.strong_owner_besides(&self.unit.source);
        for i in 0..self.info.obj.atoms.len() {
            let atom = AtomId(i as u32);
            let AtomRole::Function { sym, .. } = *self.info.role(atom) else {
                continue;
            };
            let Some(name) = self.info.function_name(atom) else {
                continue;
            };
            if !others_own && self.defined_as_in_baseline(atom, sym, name) {
                continue;
            }
            let image = exe_definition(self.model, self.index, Some(self.unit), name).filter(|r| {
                matches!(
                    r.get(self.model).kind,
                    SymbolKind::Function | SymbolKind::NoType
                )
            });
            // A global function an earlier save added has a stub (shared by every file's
            // definition of the name).
            let global = self.info.obj.symbol(sym).binding != Binding::Local;
            let entry = match image {
                Some(r) => self.model.exe.runtime(Vaddr(r.get(self.model).vaddr)),
                None => match self.alloc.defined_new_function(&SymKey {
                    unit: None,
                    name: name.to_string(),
                }) {
                    Some(stub) if global => stub,
                    _ => continue,
                },
            };
            let owner = self.alloc.entry_owner(entry);
            let message = match owner {
                // A strong definition another file added by an earlier save runs there now.
                Some(o)
                    if !o.is_of(self.unit)
                        && !o.weak
                        && self.info.obj.symbol(sym).binding == Binding::Global
                        && !self.info.obj.atom(atom).comdat =>
                {
                    if committed.entry_owner(entry) == Some(o) {
                        let other = format!("{} (an earlier save swapped it in)", o.source);
                        Some(multiple_definition_message(
                            name,
                            &other,
                            &self.unit.source,
                            false,
                        ))
                    } else {
                        // A file of this very save (b.c includes a.c, which defines a new
                        // global: both objects have it). The error's place (" at a.c:4",
                        // added to every located error) is this file's copy of it.
                        let located = self.info.obj.line_of(atom, AtomOffset(0)).is_some()
                            || self.atom_decl_line(atom).is_some();
                        Some(same_save_definition_message(
                            name,
                            &o.source,
                            &self.unit.source,
                            located,
                        ))
                    }
                }
                Some(o) if o.is_of(self.unit) => None,
                _ => image.and_then(|r| {
                    multiple_definition(self.model, self.info.obj, sym, r, self.unit, name)
                }),
            };
            if let Some(message) = message {
                self.error(
                    crate::LinkErrorCode::MultipleDefinition,
                    message,
                    Some(name.to_string()),
                    Some((atom, AtomOffset(0))),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_are_classified() {
        assert_eq!(function_name("foo"), FunctionName::Plain("foo"));
        assert_eq!(function_name("foo.cold"), FunctionName::Split("foo"));
        assert_eq!(function_name("foo.cold.2"), FunctionName::Split("foo"));
        assert_eq!(function_name("foo.constprop.0"), FunctionName::Clone);
        assert_eq!(function_name("foo.isra.0"), FunctionName::Clone);
        assert_eq!(function_name("foo.part.0"), FunctionName::Clone);
        assert_eq!(function_name("foo.localalias"), FunctionName::Plain("foo"));
        assert_eq!(function_name("coldness"), FunctionName::Plain("coldness"));
    }
}
