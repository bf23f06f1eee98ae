//! Which atoms changed between two compiles of the same file (the baseline and the new
//! object), compared by bytes and by what their relocations designate.
//!
//! Atoms are matched by *identity*: the name of their primary symbol (see
//! [`atom_identity`]). Anonymous atoms — string literals, jump tables, `CSWTCH.N`,
//! `__func__.N`, function-local `static const` tables, IPA clones — have no identity: they
//! are never matched themselves but compared *through* the relocations that reference them,
//! so that a changed string literal changes exactly the functions that use it, and a string
//! that merely moved inside `.rodata.str1.1` (because another one grew) changes nothing.
//!
//! A function and its compiler-split parts (`fn.cold` in `.text.unlikely.fn`) form one
//! *unit*: when any part changed, appeared or disappeared, every matched part is reported
//! changed, because the parts jump into each other and are linked and swapped together.

// FxHash: these maps hold the symbols and sections of one object, keyed by names and
// small integers that no adversary chooses; SipHash showed up in profiles of the save path.
use rustc_hash::FxHashMap as HashMap;

use std::borrow::Cow;

use crate::index::ObjectIndex;
use crate::{
    AtomId, AtomKind, AtomOffset, Binding, Machine, Object, Reloc, RelocKind, SymbolDef, SymbolKind,
};

/// A named atom of the old object and its counterpart in the new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtomMatch {
    /// The identity both atoms share (see [`atom_identity`]): `add`, `tick/calls`, `fn.cold`.
    pub name: String,
    pub old: AtomId,
    pub new: AtomId,
    /// Why the pair counts as changed; `None` in [`AtomDiff::unchanged`].
    pub reason: Option<ChangeReason>,
}

/// A named atom without counterpart in the other object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedAtom {
    pub name: String,
    pub atom: AtomId,
}

/// The first difference found between two matched atoms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeReason {
    /// The atom kind changed (e.g. a variable moved from `.bss` to `.data`).
    Kind,
    /// Size or alignment changed.
    Layout,
    /// The contents differ, first at this offset.
    Bytes { offset: AtomOffset },
    /// A relocation was added, removed, or differs in offset or type.
    Relocations { offset: AtomOffset },
    /// A relocation at this offset designates something else (another symbol, another
    /// addend into it, or anonymous data with other contents).
    Target { offset: AtomOffset },
    /// Another part of the same unit changed, appeared or disappeared (`fn` / `fn.cold`).
    UnitPart { part: String },
    /// The code is the same but its exception table (LSDA, `.gcc_except_table`, reached only
    /// from its FDE) is not: it catches or cleans up differently. A C++ function whose callee
    /// in the same file could not throw before leaves that call out of its table (a throw
    /// through it terminates); once the callee may throw, the call is listed.
    ExceptionTable,
}

/// The result of [`changed_functions`]. Atom ids in `old`/`removed` index the old object,
/// those in `new`/`added` the new one. Every named atom of either object appears exactly
/// once; anonymous atoms appear nowhere. Each list is sorted by atom id (the new object's
/// for `changed`, `unchanged` and `added`, the old object's for `removed`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AtomDiff {
    /// Matched named atoms (functions and variables) that differ.
    pub changed: Vec<AtomMatch>,
    /// Matched named atoms that are identical, including everything they reference.
    pub unchanged: Vec<AtomMatch>,
    /// Named atoms of the new object with no counterpart in the old one.
    pub added: Vec<NamedAtom>,
    /// Named atoms of the old object with no counterpart in the new one.
    pub removed: Vec<NamedAtom>,
}

impl AtomDiff {
    /// Whether nothing changed, appeared or disappeared.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

/// `calls.0` -> `calls`; `None` when the name has no numeric suffix.
pub(crate) fn strip_numeric_suffix(name: &str) -> Option<&str> {
    let (base, suffix) = name.rsplit_once('.')?;
    if base.is_empty() || suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(base)
}

/// Whether `name` is an IPA clone made by gcc (`foo.constprop.0`, `foo.isra.0`,
/// `foo.part.0`, and LTO's `foo.lto_priv.0`): its signature or body depends on its callers,
/// so it is never matched by name.
pub fn is_ipa_clone(name: &str) -> bool {
    // Every marker has a dot; most names have none.
    name.contains('.')
        && [".constprop.", ".isra.", ".part.", ".lto_priv."]
            .iter()
            .any(|marker| name.contains(marker))
}

/// The unit a part belongs to: `fn.cold` and `fn.cold.1` belong to `fn`; everything else is
/// its own unit.
pub fn unit_name(identity: &str) -> &str {
    let trimmed = strip_numeric_suffix(identity).unwrap_or(identity);
    trimmed.strip_suffix(".cold").unwrap_or(identity)
}

/// Whether a data atom is one of the compiler's per-translation-unit tables rather than a
/// variable of the program: sanitizer and coverage instrumentation data, which the
/// instrumented code references like a string literal (a fresh copy goes with each new
/// body) and which is never matched by name or checked for layout.
///
/// Recognised by names no C or C++ variable can have, and only for local symbols:
/// - no named symbol, in a section named after an assembler-local label
///   (`-fdata-sections` gives `.data.rel.local..LASAN0`, `.data..Lubsan_type0`,
///   `.data.rel.local..Lubsan_data2`, `.data.rel..LPBX0`, clang's `.data..L__unnamed_2`,
///   `.data.rel.ro..L___asan_gen_.3`);
/// - a local symbol whose name starts with `.` (clang's ASan-padded `.str`, `.str.1`);
/// - the compilers' reserved prefixes: gcc's gcov counters and function records
///   (`__gcov0.f`, `__gcov_.f`), clang's (`__llvm_gcov_ctr.1`,
///   `__llvm_internal_gcov_emit_arcs_args.0`), clang's ASan descriptor arrays
///   (`__unnamed_4`) and `__asan_gen_` strings.
pub fn is_compiler_table(object: &Object, atom: AtomId) -> bool {
    let a = object.atom(atom);
    if !matches!(a.kind, AtomKind::Data | AtomKind::Bss | AtomKind::ReadOnly) {
        return false;
    }
    match object.primary_symbol(atom) {
        None => a.section_name.contains("..L"),
        Some(s) => {
            let sym = object.symbol(s);
            sym.binding == Binding::Local && is_compiler_table_name(&sym.name)
        }
    }
}

/// Whether a global variable is ASan's ODR indicator of a global (`__odr_asan.table`, one
/// byte per instrumented global): a real variable that keeps its address, but the
/// compiler's, not one to name to the user as added.
pub fn is_odr_indicator(name: &str) -> bool {
    name.starts_with("__odr_asan.")
}

/// The name test of [`is_compiler_table`] (the caller checks that the symbol is local).
pub fn is_compiler_table_name(name: &str) -> bool {
    const PREFIXES: [&str; 8] = [
        ".",
        "__gcov0.",
        "__gcov_.",
        "__llvm_gcov_",
        "__llvm_internal_gcov_",
        "__unnamed_",
        "__asan_gen_",
        "___asan_gen_",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The identity an atom is matched by across compiles, or `None` for an anonymous atom.
///
/// It is [`Object::match_name`] of the atom's primary symbol (`tick/calls` for gcc's
/// `calls.0` in `tick`), except that these are anonymous: atoms without a named symbol
/// (`.rodata.str1.1`, jump tables in `.rodata.fn`), IPA clones, and function-local
/// read-only data (`__func__.0`, `CSWTCH.3`, `static const` tables inside functions:
/// local, read-only, with a numeric suffix or a DWARF scope), which is copied fresh with
/// each body and never bound by name.
pub fn atom_identity(object: &Object, atom: AtomId) -> Option<String> {
    identity(object, atom).map(Cow::into_owned)
}

/// [`atom_identity`], borrowed from the object (its index keeps the identities).
fn identity(object: &Object, atom: AtomId) -> Option<Cow<'_, str>> {
    object.index().identity(object, atom).map(Cow::Borrowed)
}

/// The matching of two objects with names borrowed from them: what [`changed_functions`]
/// reports, before its names are copied out.
struct Matching<'a> {
    /// (identity, old atom, new atom, reason), in new atom order.
    matches: Vec<(&'a str, AtomId, AtomId, Option<ChangeReason>)>,
    added: Vec<(&'a str, AtomId)>,
    removed: Vec<(&'a str, AtomId)>,
}

/// Compare two compiles of the same file: which named atoms changed, which are new, which
/// disappeared. See [`AtomDiff`] for the shape of the answer and the module documentation
/// for the rules.
///
/// Runs in time linear in the size of both objects (each anonymous pair is compared once).
pub fn changed_functions(old: &Object, new: &Object) -> AtomDiff {
    let m = match_objects(old, new);
    let named = |(name, atom): (&str, AtomId)| NamedAtom {
        name: name.to_string(),
        atom,
    };
    let mut diff = AtomDiff {
        added: m.added.into_iter().map(named).collect(),
        removed: m.removed.into_iter().map(named).collect(),
        ..AtomDiff::default()
    };
    for (name, old, new, reason) in m.matches {
        let m = AtomMatch {
            name: name.to_string(),
            old,
            new,
            reason,
        };
        if m.reason.is_some() {
            diff.changed.push(m);
        } else {
            diff.unchanged.push(m);
        }
    }
    diff
}

/// [`changed_functions`] as the linker asks it: for each atom of `new` (by index), its
/// counterpart in `old` and whether the two differ; no names are copied.
pub fn matched_atoms(old: &Object, new: &Object) -> Vec<Option<(AtomId, bool)>> {
    let mut table = vec![None; new.atoms.len()];
    for (_, old_atom, new_atom, reason) in match_objects(old, new).matches {
        if let Some(slot) = table.get_mut(new_atom.0 as usize) {
            *slot = Some((old_atom, reason.is_some()));
        }
    }
    table
}

/// Whether `new_atom` differs from the atom of `old` with the same identity (compared as
/// [`changed_functions`] compares a matched pair: bytes, and what each relocation
/// designates); `None` when `old` has no atom of that identity, or `new_atom` has none.
/// `old` may be any earlier compile of the file, not only the last one: the session compares
/// a variable's initializer with the object whose initializer the running program was given.
pub fn counterpart_differs(old: &Object, new: &Object, new_atom: AtomId) -> Option<bool> {
    let name = new.index().identity(new, new_atom)?;
    let old_atom = old.index().atoms_named(old, name).next()?;
    let mut comparer = Comparer::new(old, new);
    Some(comparer.compare_named(old_atom, new_atom).is_some())
}

fn match_objects<'a>(old: &'a Object, new: &'a Object) -> Matching<'a> {
    let (old_index, new_index) = (old.index(), new.index());
    let mut matched_old = vec![false; old.atoms.len()];
    let mut comparer = Comparer::new(old, new);

    // Identities are paired in atom order; duplicates (two `calls.N` whose functions DWARF
    // did not tell) are paired in order: the first unmatched old atom of the name.
    let mut matches = Vec::new();
    let mut added = Vec::new();
    for index in 0..new.atoms.len() as u32 {
        let new_atom = AtomId(index);
        let Some(name) = new_index.identity(new, new_atom) else {
            continue;
        };
        let counterpart = old_index
            .atoms_named(old, name)
            .find(|a| !matched_old[a.0 as usize]);
        match counterpart {
            Some(old_atom) => {
                matched_old[old_atom.0 as usize] = true;
                let reason = comparer.compare_named(old_atom, new_atom);
                matches.push((name, old_atom, new_atom, reason));
            }
            None => added.push((name, new_atom)),
        }
    }
    let removed: Vec<(&str, AtomId)> = (0..old.atoms.len() as u32)
        .filter(|&a| !matched_old[a as usize])
        .filter_map(|a| Some((old_index.identity(old, AtomId(a))?, AtomId(a))))
        .collect();

    // Units: a change, addition or removal of any part changes every matched part.
    let mut unit_changed: HashMap<&str, &str> = HashMap::default();
    for &(name, _, _, ref reason) in &matches {
        if reason.is_some() {
            unit_changed.entry(unit_name(name)).or_insert(name);
        }
    }
    for &(name, _) in added.iter().chain(removed.iter()) {
        unit_changed.entry(unit_name(name)).or_insert(name);
    }
    if !unit_changed.is_empty() {
        for (name, _, _, reason) in &mut matches {
            if reason.is_none() {
                if let Some(part) = unit_changed.get(unit_name(name)) {
                    *reason = Some(ChangeReason::UnitPart {
                        part: part.to_string(),
                    });
                }
            }
        }
    }
    Matching {
        matches,
        added,
        removed,
    }
}

/// What a relocation designates, for comparison across the two objects.
enum Target<'a> {
    /// A symbol matched by name (an external, a named function or variable), and the
    /// position inside it (symbol offset + addend).
    Named(Cow<'a, str>, i64),
    /// A position inside an anonymous atom of this object: compared by contents.
    Anonymous { atom: AtomId, position: i64 },
    /// Something without a name that is not an atom (absolute symbols, debug sections):
    /// compared by its raw value.
    Raw(u64, i64),
}

/// Where the comparison of an anonymous pair stands.
///
/// Two anonymous atoms are equal when their contents are and every reference designates
/// equal things: the greatest fixpoint, in which a cycle of references (a table pointing at
/// itself, two IPA clones calling each other: `a.part.0.constprop.0` / `b.constprop.0`) is
/// equal unless something in it differs. A pair being compared is assumed equal, and the
/// pairs whose comparison met that assumption form a strongly connected component with it
/// (Tarjan's algorithm over the pairs, found while comparing). Every member reaches every
/// other, so when any member differs they all do: their results are final only when the
/// component's root ends, and are then the same for all of them.
#[derive(Clone, Copy, Debug)]
enum PairState {
    /// Entered with this Tarjan index, not final yet; `differs` once its own comparison
    /// found a difference (which no assumption can undo).
    Open { index: u32, differs: bool },
    /// Final: whether the pair is equal.
    Done(bool),
}

struct Comparer<'a> {
    old: &'a Object,
    new: &'a Object,
    old_index: &'a ObjectIndex,
    new_index: &'a ObjectIndex,
    /// Anonymous atom pairs compared so far, and those still open (see [`PairState`]).
    memo: HashMap<(AtomId, AtomId), PairState>,
    /// Tarjan's stack: open anonymous pairs in the order they were entered. A pair stays on
    /// it after its own comparison ended until the root of its strongly connected component
    /// of references ends, because its result may rest on the assumption that a pair
    /// further down is equal.
    open: Vec<(AtomId, AtomId)>,
    /// The lowest index of an open pair that the comparison in progress at each level of
    /// the recursion reached (Tarjan's lowlink), innermost last.
    lowlinks: Vec<u32>,
    next_index: u32,
    old_labels: Labels,
    new_labels: Labels,
}

/// The positions inside anonymous data atoms that exact references of the object designate
/// (the assembler's `.LC` labels, lost in the object file): they delimit the objects of a
/// `.rodata` blob. Computed on first use, in one pass over every relocation.
#[derive(Default)]
struct Labels {
    by_atom: Option<HashMap<AtomId, Vec<u64>>>,
}

impl Labels {
    fn window(
        &mut self,
        object: &Object,
        atom: AtomId,
        p: i64,
        reach: i64,
    ) -> Option<(usize, usize)> {
        let size = object.atom(atom).bytes.len();
        if p < 0 || p as usize >= size {
            return None;
        }
        let labels = self.by_atom.get_or_insert_with(|| collect_labels(object));
        let after = (p + reach) as u64;
        let end = labels
            .get(&atom)
            .and_then(|positions| {
                let i = positions.partition_point(|&l| l <= after);
                positions.get(i).copied()
            })
            .map_or(size, |l| (l as usize).min(size));
        Some((p as usize, end))
    }
}

fn collect_labels(object: &Object) -> HashMap<AtomId, Vec<u64>> {
    let mut labels: HashMap<AtomId, Vec<u64>> = HashMap::default();
    for (index, atom) in object.atoms.iter().enumerate() {
        for reloc in &atom.relocs {
            let SymbolDef::Atom {
                atom: target,
                offset,
            } = object.symbol(reloc.symbol).def
            else {
                continue;
            };
            if !reference_is_exact(object, AtomId(index as u32), reloc) {
                continue;
            }
            let bias = pc_bias(object.machine, reloc.kind);
            let position = (offset.0 as i64)
                .wrapping_add(reloc.addend)
                .wrapping_add(bias);
            if position >= 0 {
                labels.entry(target).or_default().push(position as u64);
            }
        }
    }
    for positions in labels.values_mut() {
        positions.sort_unstable();
        positions.dedup();
    }
    labels
}

impl<'a> Comparer<'a> {
    /// A comparison of `old`'s atoms with `new`'s, nothing compared yet.
    fn new(old: &'a Object, new: &'a Object) -> Comparer<'a> {
        Comparer {
            old,
            new,
            old_index: old.index(),
            new_index: new.index(),
            memo: HashMap::default(),
            open: Vec::new(),
            lowlinks: Vec::new(),
            next_index: 0,
            old_labels: Labels::default(),
            new_labels: Labels::default(),
        }
    }
}

impl Comparer<'_> {
    fn compare_named(&mut self, old: AtomId, new: AtomId) -> Option<ChangeReason> {
        self.compare_atoms(old, new)
            .or_else(|| self.compare_exception_tables(old, new))
    }

    /// Whether two matched functions have different LSDAs (see
    /// [`ChangeReason::ExceptionTable`]), compared like any anonymous data they reference.
    fn compare_exception_tables(&mut self, old: AtomId, new: AtomId) -> Option<ChangeReason> {
        // Neither object has an LSDA (C code): both lists are empty (two lookups per
        // function of the object otherwise, on every save).
        if self.new.atom(new).kind != AtomKind::Text
            || !(self.old_index.has_lsdas() || self.new_index.has_lsdas())
        {
            return None;
        }
        let old_tables = lsdas(self.old, self.old_index, old);
        let new_tables = lsdas(self.new, self.new_index, new);
        if old_tables.len() != new_tables.len() {
            return Some(ChangeReason::ExceptionTable);
        }
        for (a, b) in old_tables.into_iter().zip(new_tables) {
            if self.compare_atoms(a, b).is_some() {
                return Some(ChangeReason::ExceptionTable);
            }
        }
        None
    }

    /// The first difference between two atoms, comparing relocation targets recursively.
    fn compare_atoms(&mut self, old_id: AtomId, new_id: AtomId) -> Option<ChangeReason> {
        let (old, new) = (self.old.atom(old_id), self.new.atom(new_id));
        if old.kind != new.kind {
            return Some(ChangeReason::Kind);
        }
        if old.size != new.size || old.align != new.align {
            return Some(ChangeReason::Layout);
        }
        if old.bytes != new.bytes {
            let offset = old
                .bytes
                .iter()
                .zip(&new.bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Some(ChangeReason::Bytes {
                offset: AtomOffset(offset as u64),
            });
        }
        for (a, b) in old.relocs.iter().zip(&new.relocs) {
            if a.offset != b.offset || a.raw_type != b.raw_type {
                return Some(ChangeReason::Relocations {
                    offset: a.offset.min(b.offset),
                });
            }
            if !self.same_target(old_id, a, new_id, b) {
                return Some(ChangeReason::Target { offset: a.offset });
            }
        }
        if old.relocs.len() != new.relocs.len() {
            let shorter = old.relocs.len().min(new.relocs.len());
            let offset = old
                .relocs
                .get(shorter)
                .or_else(|| new.relocs.get(shorter))
                .map_or(AtomOffset(0), |r| r.offset);
            return Some(ChangeReason::Relocations { offset });
        }
        None
    }

    fn target<'o>(object: &'o Object, index: &'o ObjectIndex, reloc: &Reloc) -> Target<'o> {
        let sym = object.symbol(reloc.symbol);
        match sym.def {
            SymbolDef::Atom { atom, offset } => {
                let position = (offset.0 as i64).wrapping_add(reloc.addend);
                match index.identity(object, atom) {
                    // A named symbol designates itself (the atom's identity when it is the
                    // atom's primary symbol); a section symbol or an alias inside a named
                    // atom designates the atom's identity at an offset.
                    Some(identity) if index.is_primary(atom, reloc.symbol) => {
                        Target::Named(Cow::Borrowed(identity), reloc.addend)
                    }
                    Some(_) if sym.kind != SymbolKind::Section && !sym.name.is_empty() => {
                        Target::Named(object.match_name_ref(reloc.symbol), reloc.addend)
                    }
                    Some(identity) => Target::Named(Cow::Borrowed(identity), position),
                    None => Target::Anonymous { atom, position },
                }
            }
            SymbolDef::Undefined | SymbolDef::Common { .. } => {
                Target::Named(Cow::Borrowed(&sym.name), reloc.addend)
            }
            SymbolDef::Absolute(value) => Target::Raw(value, reloc.addend),
            SymbolDef::Other => {
                if sym.name.is_empty() {
                    Target::Raw(u64::from(reloc.symbol.0), reloc.addend)
                } else {
                    Target::Named(Cow::Borrowed(&sym.name), reloc.addend)
                }
            }
        }
    }

    fn same_target(&mut self, old_atom: AtomId, a: &Reloc, new_atom: AtomId, b: &Reloc) -> bool {
        let ta = Self::target(self.old, self.old_index, a);
        let tb = Self::target(self.new, self.new_index, b);
        match (ta, tb) {
            (Target::Named(x, xa), Target::Named(y, ya)) => x == y && xa == ya,
            (Target::Raw(x, xa), Target::Raw(y, ya)) => x == y && xa == ya,
            (
                Target::Anonymous {
                    atom: x,
                    position: px,
                },
                Target::Anonymous {
                    atom: y,
                    position: py,
                },
            ) => {
                let exact = reference_is_exact(self.old, old_atom, a)
                    && reference_is_exact(self.new, new_atom, b);
                self.same_anonymous(x, px, y, py, a.kind, exact)
            }
            _ => false,
        }
    }

    /// Whether position `px` of old anonymous atom `x` designates the same contents as
    /// position `py` of new anonymous atom `y`.
    fn same_anonymous(
        &mut self,
        x: AtomId,
        px: i64,
        y: AtomId,
        py: i64,
        kind: RelocKind,
        exact: bool,
    ) -> bool {
        let (ax, ay) = (self.old.atom(x), self.new.atom(y));
        let bias = pc_bias(self.old.machine, kind);
        // When the instruction is not known to end at the field, the designated byte may be
        // up to 4 bytes (an imm32) further: compare everything that could be meant.
        let reach = if exact { 0 } else { 4 };
        if ax.merge_strings && ay.merge_strings {
            let char_size = merge_entry_size(&ax.section_name, ".str").unwrap_or(1);
            if char_size == merge_entry_size(&ay.section_name, ".str").unwrap_or(1) {
                let wx = string_window(&ax.bytes, px.saturating_add(bias), reach, char_size);
                let wy = string_window(&ay.bytes, py.saturating_add(bias), reach, char_size);
                return match (wx, wy) {
                    (Some((sx, ex, rx)), Some((sy, ey, ry))) => {
                        rx == ry && ax.bytes[sx..ex] == ay.bytes[sy..ey]
                    }
                    _ => px == py && ax.bytes == ay.bytes,
                };
            }
        }
        if let (Some(nx), Some(ny)) = (
            merge_entry_size(&ax.section_name, ".cst"),
            merge_entry_size(&ay.section_name, ".cst"),
        ) {
            if nx == ny && ax.relocs.is_empty() && ay.relocs.is_empty() {
                let wx = entry_window(&ax.bytes, px.saturating_add(bias), reach, nx);
                let wy = entry_window(&ay.bytes, py.saturating_add(bias), reach, ny);
                return match (wx, wy) {
                    (Some((sx, ex, rx)), Some((sy, ey, ry))) => {
                        rx == ry && ax.bytes[sx..ex] == ay.bytes[sy..ey]
                    }
                    _ => px == py && ax.bytes == ay.bytes,
                };
            }
        }
        // Anonymous data without relocations or symbols of its own (gcc -O0 puts all string
        // literals and constants of a file into one `.rodata`): the designated object runs
        // from its position to the next position that any exact reference designates.
        if ax.relocs.is_empty()
            && ay.relocs.is_empty()
            && self.old.primary_symbol(x).is_none()
            && self.new.primary_symbol(y).is_none()
        {
            let wx = self
                .old_labels
                .window(self.old, x, px.saturating_add(bias), reach);
            let wy = self
                .new_labels
                .window(self.new, y, py.saturating_add(bias), reach);
            return match (wx, wy) {
                (Some((sx, ex)), Some((sy, ey))) => {
                    // The window runs up to the next label and so may end in alignment
                    // padding before it, which differs when the next object moved.
                    let align = ax.align.max(ay.align);
                    trim_padding(&ax.bytes[sx..ex], align) == trim_padding(&ay.bytes[sy..ey], align)
                }
                _ => px == py && ax.bytes == ay.bytes,
            };
        }
        // Any other anonymous atom (jump table, CSWTCH, __func__, static const table, IPA
        // clone) is compared as a whole, at the same position, recursively.
        if px != py {
            return false;
        }
        self.same_whole(x, y)
    }

    /// Whether anonymous atoms `x` (old) and `y` (new) are equal as a whole, references
    /// included: see [`PairState`] for how cycles of references are decided.
    fn same_whole(&mut self, x: AtomId, y: AtomId) -> bool {
        match self.memo.get(&(x, y)) {
            Some(&PairState::Done(equal)) => return equal,
            Some(&PairState::Open { index, differs }) => {
                // A reference back into a comparison still open: assume equal (unless it is
                // already known to differ) and tie the current pair to that one's component.
                if let Some(low) = self.lowlinks.last_mut() {
                    *low = (*low).min(index);
                }
                return !differs;
            }
            None => {}
        }
        let index = self.next_index;
        self.next_index += 1;
        self.memo.insert(
            (x, y),
            PairState::Open {
                index,
                differs: false,
            },
        );
        self.open.push((x, y));
        self.lowlinks.push(index);
        let equal = self.compare_atoms(x, y).is_none();
        let low = self.lowlinks.pop().unwrap_or(index);
        if let Some(parent) = self.lowlinks.last_mut() {
            *parent = (*parent).min(low);
        }
        if !equal {
            self.memo.insert(
                (x, y),
                PairState::Open {
                    index,
                    differs: true,
                },
            );
        }
        if low < index {
            // Part of a component whose root is still being compared: provisional.
            return equal;
        }
        // The root of its component: every pair entered since belongs to it and gets the
        // component's result, equal only if no member differs.
        let start = self
            .open
            .iter()
            .rposition(|&pair| pair == (x, y))
            .unwrap_or(0);
        let members = self.open.split_off(start);
        let all_equal = members.iter().all(|pair| {
            !matches!(
                self.memo.get(pair),
                Some(PairState::Open { differs: true, .. })
            )
        });
        for pair in members {
            self.memo.insert(pair, PairState::Done(all_equal));
        }
        all_equal
    }
}

/// What to add to `symbol + addend` to get the byte a reference designates. On x86-64 the
/// addend of a PC-relative reference also carries the distance from the relocated field to
/// the end of the instruction (-4 for `lea .LC0(%rip)`), so the designated byte is 4 further
/// (plus the size of any immediate that follows: see [`reference_is_exact`]). aarch64
/// relocations (`ADRP` + `ADD :lo12:`, `PREL32` in data) designate `symbol + addend` itself.
fn pc_bias(machine: Machine, kind: RelocKind) -> i64 {
    match (machine, kind) {
        (
            Machine::X86_64,
            RelocKind::Pc32
            | RelocKind::Plt32
            | RelocKind::GotPcRel
            | RelocKind::GotPcRelX
            | RelocKind::RexGotPcRelX,
        ) => 4,
        _ => 0,
    }
}

/// Whether a reference designates exactly `symbol + addend` (plus 4 if PC-relative), i.e.
/// nothing follows the relocated field in its instruction. True for absolute relocations,
/// and for a rip-relative operand (`modrm` with mod 00, rm 101 right before the field) of an
/// instruction that has no immediate: not one of the opcodes that take one, and not in the
/// `0f 3a` map (legacy, VEX or EVEX encoded) whose instructions all do.
fn reference_is_exact(object: &Object, atom: AtomId, reloc: &Reloc) -> bool {
    if object.machine == Machine::Aarch64 {
        // Fixed-size instructions: the addend is the designated offset, always.
        return true;
    }
    match reloc.kind {
        RelocKind::Abs64 | RelocKind::Abs32 | RelocKind::Abs32S => true,
        RelocKind::Pc32
            if reloc.addend == -4 || object.symbol(reloc.symbol).kind == SymbolKind::Section =>
        {
            let bytes = &object.atom(atom).bytes;
            let at = reloc.offset.0 as usize;
            let byte = |back: usize| at.checked_sub(back).and_then(|i| bytes.get(i)).copied();
            let (Some(modrm), Some(opcode)) = (byte(1), byte(2)) else {
                return false;
            };
            const WITH_IMMEDIATE: [u8; 21] = [
                0x80, 0x81, 0x83, 0xc6, 0xc7, 0x69, 0x6b, 0xf6, 0xf7, 0xc0, 0xc1, 0x70, 0x71, 0x72,
                0x73, 0xc2, 0xc4, 0xc5, 0xa4, 0xac, 0xba,
            ];
            let map_0f3a = byte(3) == Some(0x3a) && byte(4) == Some(0x0f)
                || byte(5) == Some(0xc4) && byte(4).is_some_and(|b| b & 0x1f == 3)
                || byte(6) == Some(0x62) && byte(5).is_some_and(|b| b & 0x07 == 3);
            modrm & 0xc7 == 0x05 && !WITH_IMMEDIATE.contains(&opcode) && !map_0f3a
        }
        _ => false,
    }
}

/// `bytes` without up to `align - 1` trailing zero bytes: the most alignment padding the
/// assembler can have put between two objects of a section aligned to `align`.
fn trim_padding(bytes: &[u8], align: u64) -> &[u8] {
    let max = usize::try_from(align.saturating_sub(1)).unwrap_or(usize::MAX);
    let zeros = bytes
        .iter()
        .rev()
        .take(max)
        .take_while(|&&b| b == 0)
        .count();
    &bytes[..bytes.len() - zeros]
}

/// The entry size encoded in a merge section name: `.rodata.str1.1` -> 1,
/// `.rodata.main.str4.4` -> 4 (gcc prefixes the function with `-fdata-sections`),
/// `.rodata.cst16` -> 16. `marker` is `.str` or `.cst`.
fn merge_entry_size(section_name: &str, marker: &str) -> Option<usize> {
    let rest = &section_name[section_name.rfind(marker)? + marker.len()..];
    let digits: &str = rest.split('.').next()?;
    digits.parse().ok().filter(|&n: &usize| n > 0)
}

/// The strings of a merge-strings section that position `p` (and up to `reach` bytes after
/// it) falls into: `(start, end, p - start)`, `end` past the terminating NUL character.
fn string_window(
    bytes: &[u8],
    p: i64,
    reach: i64,
    char_size: usize,
) -> Option<(usize, usize, usize)> {
    if p < 0 || p as usize >= bytes.len() {
        return None;
    }
    let p = p as usize;
    let last = (p + reach as usize).min(bytes.len() - 1);
    let is_nul = |at: usize| {
        bytes
            .get(at..at + char_size)
            .is_some_and(|c| c.iter().all(|&b| b == 0))
    };
    let align = |at: usize| at - at % char_size;
    // Start: just after the NUL character before p.
    let mut start = align(p);
    while start >= char_size && !is_nul(start - char_size) {
        start -= char_size;
    }
    // End: just after the NUL character at or after `last`.
    let mut end = align(last);
    while end < bytes.len() && !is_nul(end) {
        end += char_size;
    }
    let end = (end + char_size).min(bytes.len());
    Some((start, end, p - start))
}

/// The fixed-size entries of a merge-constants section that position `p` (and up to `reach`
/// bytes after it) falls into: `(start, end, p - start)`.
fn entry_window(bytes: &[u8], p: i64, reach: i64, size: usize) -> Option<(usize, usize, usize)> {
    if p < 0 || p as usize >= bytes.len() {
        return None;
    }
    let p = p as usize;
    let last = (p + reach as usize).min(bytes.len() - 1);
    let start = p - p % size;
    let end = (last - last % size + size).min(bytes.len());
    Some((start, end, p - start))
}

/// The atoms a function's FDEs point at besides the function itself: its LSDAs.
fn lsdas(object: &Object, fdes: &ObjectIndex, atom: AtomId) -> Vec<AtomId> {
    let mut tables = Vec::new();
    for fde in fdes.fdes_of(atom) {
        let Some(record) = object.eh_frame.get(fde) else {
            continue;
        };
        for reloc in &record.relocs {
            // pc_begin (at 8) designates the function itself.
            if reloc.offset.0 == 8 {
                continue;
            }
            if let SymbolDef::Atom { atom: target, .. } = object.symbol(reloc.symbol).def {
                if target != atom {
                    tables.push(target);
                }
            }
        }
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_units() {
        assert_eq!(strip_numeric_suffix("calls.0"), Some("calls"));
        assert_eq!(strip_numeric_suffix("calls"), None);
        assert_eq!(strip_numeric_suffix("a.b"), None);
        assert_eq!(unit_name("fn.cold"), "fn");
        assert_eq!(unit_name("fn.cold.2"), "fn");
        assert_eq!(unit_name("fn"), "fn");
        assert_eq!(unit_name("tick/calls"), "tick/calls");
        assert!(is_ipa_clone("f.constprop.0"));
        assert!(!is_ipa_clone("f.cold"));
    }

    #[test]
    fn windows() {
        let bytes = b"hello\0%d\n\0world\0";
        // p at the start of "%d\n".
        assert_eq!(string_window(bytes, 6, 0, 1), Some((6, 10, 0)));
        // Reaching 4 bytes further takes in "world" too.
        assert_eq!(string_window(bytes, 6, 4, 1), Some((6, 16, 0)));
        assert_eq!(string_window(bytes, 0, 0, 1), Some((0, 6, 0)));
        assert_eq!(string_window(bytes, 99, 0, 1), None);
        assert_eq!(entry_window(&[0; 32], 9, 0, 8), Some((8, 16, 1)));
        assert_eq!(entry_window(&[0; 32], 9, 4, 8), Some((8, 16, 1)));
        assert_eq!(entry_window(&[0; 32], 14, 4, 8), Some((8, 24, 6)));
        assert_eq!(merge_entry_size(".rodata.str1.1", ".str"), Some(1));
        assert_eq!(merge_entry_size(".rodata.main.str4.4", ".str"), Some(4));
        assert_eq!(merge_entry_size(".rodata.cst16", ".cst"), Some(16));
        assert_eq!(merge_entry_size(".rodata", ".cst"), None);
    }
}
