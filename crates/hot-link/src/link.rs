//! The link driver: from a request to a [`Patch`], in phases.
//!
//! 1. Bind data (`data.rs`): every variable, named read-only object and thread-local of the
//!    object gets its address (existing, or allocated once for a new variable).
//! 2. Find each function's stable entry (`resolve.rs`; a function without one is new) and
//!    decide what changed: [`hot_object::changed_functions`] against the baseline, else an
//!    instruction-level comparison with the running image (`image_diff.rs`,
//!    `image_diff_aarch64.rs`).
//! 3. Closure: the atoms to copy are the changed functions plus everything their relocations
//!    (and those of new variables) reach by content: split parts, IPA clones, interior
//!    references, anonymous read-only data.
//!    A function the image lacks (dropped by `--gc-sections`) that is as in the baseline is
//!    copied only when something copied calls it or another file of the batch refers to it.
//! 4. Layout (`layout.rs`): bodies into fresh code-arena space, stubs for new functions.
//! 5. Relocation (`x86_64.rs`), with GOT slots and call stubs allocated on demand.
//! 6. Entries (`entry.rs`): the jump that makes each new body live.
//!
//! Errors of every phase are collected; any error aborts the whole patch.

// FxHash: keyed by atom ids and addresses of one object, which no adversary chooses;
// SipHash was a tenth of a save's link in callgrind.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use hot_object::{
    AtomId, AtomKind, AtomOffset, Binding, GotSlotKind, Reloc, RelocKind, SourceLine, SymbolId,
};

use crate::image::{ImageIndex, Vaddr};
use crate::image_diff::ImageDiff;
use crate::layout::{
    Allocator, ArenaKind, Displaced, EntryOwner, LinkState, Placement, ReadOnlyWrite, Redirect,
    SlotContent,
};
use crate::resolve::{
    existing_entry, lookup_external, sym_key, weak_entry_in_use, AtomRole, External, ObjectInfo,
    StableEntry, TargetClass,
};
use crate::x86_64::{self, store, ApplyError, Field};
use crate::{
    entry, EntryWrite, ImageModel, LinkError, LinkErrorCode, LinkNote, LinkRequest, Linker,
    NoteSeverity, Patch, PatchWrite, RuntimeAddr, SlotCopy, UnitRef,
};

/// Why one relocation failed: code and a description (completed with context by
/// [`Link::reloc_error`]). An empty description means the cause was reported already.
type Failure = (LinkErrorCode, String);

/// Size and alignment of a new function's stub: 16 keeps function pointers aligned like
/// gcc's (C++ member-function pointers use the low bit).
pub(crate) const STUB_SIZE: u64 = 16;
/// Size of a call stub `jmp *slot(%rip)` (6 bytes, padded).
const CALL_STUB_SIZE: u64 = 8;

/// The state of one link.
pub(crate) struct Link<'a> {
    pub model: &'a ImageModel,
    pub index: &'a ImageIndex,
    pub landings: &'a crate::branches::EntryLandings,
    pub info: ObjectInfo<'a>,
    /// With a baseline: for each named atom of the object that the baseline also has (by
    /// hot-object's identity, e.g. `tick/calls`), its counterpart there and whether it
    /// changed (by bytes or by relocation targets). Atoms absent here are new.
    pub baseline_match: Option<BaselineMatch>,
    /// The baseline object, if any.
    pub baseline: Option<&'a hot_object::Object>,
    /// Variables whose running initializer is not the baseline's ([`LinkRequest::applied`]).
    pub applied: &'a [crate::AppliedInitializer<'a>],
    /// The object defines the baseline's functions, by name and binding, in its order
    /// ([`same_function_names`]): none was deleted, added or made `static`.
    same_functions: bool,
    pub unit: &'a UnitRef,
    pub alloc: Allocator<'a>,
    pub placement: Option<&'a Placement>,
    pub errors: Vec<LinkError>,
    pub patch: Patch,
    /// Atoms copied by this link, in placement order, and their addresses once laid out.
    pub place_order: Vec<AtomId>,
    pub placed: HashMap<AtomId, RuntimeAddr>,
    /// Runtime address of offset 0 of each bound data atom.
    pub bound: HashMap<AtomId, RuntimeAddr>,
    /// TLS-template offset (as a `Vaddr`, the image symbol's `st_value`) of offset 0 of each
    /// bound thread-local atom.
    pub tls_bound: HashMap<AtomId, Vaddr>,
    /// Data atoms this link writes (new variables, updated read-only objects).
    pub data_writes: Vec<AtomId>,
    /// Read-only objects of the image whose words have relocations, without a baseline
    /// (a C++ vtable): compared with the image once the functions' entries are known
    /// ([`Link::compare_read_only_with_image`]), at their image address.
    pub read_only_to_compare: Vec<(AtomId, RuntimeAddr)>,
    /// Stable entry of each function atom that has one (or gets one in this link).
    pub entries: HashMap<AtomId, StableEntry>,
    /// New functions whose stub this link allocates.
    pub new_stubs: HashSet<AtomId>,
    /// Functions the image does not have (the static linker's `--gc-sections` dropped them,
    /// or every call was inlined) that are as in the baseline: nothing in the program runs
    /// them, so they are linked (and `added`) only when code this link writes refers to
    /// them (`close_over`).
    pub dormant: HashSet<AtomId>,
    /// Names other objects of the batch refer to without defining them: a dormant
    /// function of one of these names is linked, since another file's new code may call it.
    pub wanted: &'a HashSet<String>,
    /// Weak definitions of the object that a strong definition in another file overrides
    /// in the running program: references reach the override, and their own entry (the
    /// override's) is never redirected.
    pub overridden: HashSet<AtomId>,
    /// Of [`Link::overridden`], the edited ones whose override (a save's strong definition)
    /// remembers this unit's default as the one to run again once it is deleted
    /// ([`crate::layout::EntryOwner::displaced`]), by the override's entry: they are placed,
    /// unreachable while overridden, and the override then remembers the new body, so
    /// deleting it runs the default as the source has it now, as a relink would.
    pub redefaults: HashMap<AtomId, RuntimeAddr>,
    /// Bound data atoms allocated by this link (unreachable until its entries are written).
    pub fresh_data: HashSet<AtomId>,
    /// Functions as in the baseline whose stable entry is not looked up yet (indexed by
    /// atom): a save of a file of thousands of functions changes a few, and looking every
    /// one up in the image's index (cold after the compile) was most of the link's time.
    /// [`Link::settle`] looks one up when code this link writes refers to it.
    pub unsettled: Vec<bool>,
}

/// For each atom of the new object, its counterpart in the baseline and whether the two
/// differ ([`hot_object::matched_atoms`]): a table indexed by atom, since every
/// function of the object asks.
pub(crate) struct BaselineMatch(Vec<Option<(AtomId, bool)>>);

impl BaselineMatch {
    fn new(old: &hot_object::Object, new: &hot_object::Object) -> BaselineMatch {
        BaselineMatch(hot_object::matched_atoms(old, new))
    }

    /// The baseline's atom matched with `atom`, and whether they differ.
    pub(crate) fn get(&self, atom: &AtomId) -> Option<&(AtomId, bool)> {
        self.0.get(atom.0 as usize)?.as_ref()
    }
}

/// Link one object against `state`: the linker's committed state, or (for the later units of
/// [`Linker::link_units`]) that state with the earlier units' deltas applied.
pub(crate) fn link(
    linker: &Linker,
    state: &LinkState,
    request: &LinkRequest<'_>,
    placement: Option<&Placement>,
    wanted: &HashSet<String>,
) -> Result<Patch, Vec<LinkError>> {
    // Mach-O objects and images take the Mach-O link, which also refuses a mix of formats.
    if request.object.format == hot_object::ObjectFormat::MachO
        || linker.image.exe.image.format() == hot_object::ObjectFormat::MachO
    {
        return crate::macho_link::link(linker, state, request, placement);
    }
    let index = linker.index();
    let mut cx = Link {
        model: &linker.image,
        index,
        landings: linker.landings(),
        info: ObjectInfo::new(request.object),
        baseline_match: request
            .baseline
            .map(|old| BaselineMatch::new(old, request.object)),
        baseline: request.baseline,
        applied: request.applied,
        same_functions: request
            .baseline
            .is_some_and(|old| same_function_names(request.object, old)),
        unit: &request.unit,
        alloc: Allocator::new(state),
        placement,
        errors: Vec::new(),
        patch: Patch::default(),
        place_order: Vec::new(),
        placed: HashMap::default(),
        bound: HashMap::default(),
        tls_bound: HashMap::default(),
        data_writes: Vec::new(),
        read_only_to_compare: Vec::new(),
        entries: HashMap::default(),
        new_stubs: HashSet::default(),
        dormant: HashSet::default(),
        wanted,
        overridden: HashSet::default(),
        redefaults: HashMap::default(),
        fresh_data: HashSet::default(),
        unsettled: Vec::new(),
    };
    if request.object.machine != linker.image.exe.image.machine {
        cx.error(
            LinkErrorCode::UnsupportedRelocation,
            format!(
                "{}: the object is for {:?} and the running program for {:?}",
                request.unit.source, request.object.machine, linker.image.exe.image.machine
            ),
            None,
            None,
        );
        return Err(cx.errors);
    }
    cx.bind_data();
    cx.refuse_multiple_definitions(&linker.state);
    cx.check_lambda_numbering();
    let changed = cx.changed_functions();
    cx.compare_read_only_with_image();
    cx.close_over(changed);
    cx.lay_out();
    cx.check_label_addresses();
    cx.relocate();
    cx.build_unwind();
    cx.redirect_entries();
    cx.fall_back_to_weak_defaults();
    cx.list_bodies();
    cx.list_constructors();
    cx.alloc.finish(cx.patch, cx.errors)
}

impl<'a> Link<'a> {
    /// Record an error about `atom` (at `offset`, for the source line). A data atom has no
    /// line rows: its line is where its variable is declared.
    pub(crate) fn error(
        &mut self,
        code: LinkErrorCode,
        message: String,
        symbol: Option<String>,
        at: Option<(AtomId, AtomOffset)>,
    ) {
        let function = at.map(|(atom, _)| self.info.atom_name(atom));
        let line = at.and_then(|(atom, offset)| {
            self.info
                .obj
                .line_of(atom, offset)
                .or_else(|| self.info.obj.line_of(atom, AtomOffset(0)))
                .cloned()
                .or_else(|| self.atom_decl_line(atom))
        });
        self.push_error(code, message, symbol, function, line);
    }

    /// Record an error about a variable that no single reference causes (its size, storage
    /// class or allocation): located at the variable's declaration.
    pub(crate) fn variable_error(
        &mut self,
        code: LinkErrorCode,
        message: String,
        name: String,
        line: Option<SourceLine>,
    ) {
        self.push_error(code, message, Some(name), None, line);
    }

    /// Where an atom starts in the source: a function's first line row, or the declaration
    /// of the variable a data atom holds.
    pub(crate) fn atom_line(&self, atom: AtomId) -> Option<SourceLine> {
        self.info
            .obj
            .line_of(atom, AtomOffset(0))
            .cloned()
            .or_else(|| self.atom_decl_line(atom))
    }

    /// Where the variable an atom holds is declared: the first of its symbols the object's
    /// DWARF describes.
    pub(crate) fn atom_decl_line(&self, atom: AtomId) -> Option<SourceLine> {
        let obj = self.info.obj;
        obj.atom(atom)
            .symbols
            .iter()
            .find_map(|&sym| obj.decl_line(sym))
            .cloned()
    }

    fn push_error(
        &mut self,
        code: LinkErrorCode,
        message: String,
        symbol: Option<String>,
        function: Option<String>,
        line: Option<SourceLine>,
    ) {
        // Every error passes here: the one place its sentence gets readable C++ names (the
        // mangled one stays in `symbol` and `function`).
        let message = hot_object::display_names(&message).into_owned();
        let message = match &line {
            Some(l) => format!("{message} at {}:{}", l.file.display(), l.line),
            None => message,
        };
        self.errors.push(LinkError {
            code,
            unit: self.unit.source.clone(),
            message,
            symbol,
            function,
            line,
        });
    }

    fn reloc_error(&mut self, atom: AtomId, reloc: &Reloc, (code, what): Failure) {
        if what.is_empty() {
            return;
        }
        let symbol = self.info.symbol_name(reloc.symbol);
        let mut what = what;
        if code == LinkErrorCode::RelocationOverflow
            && self.info.classify(atom, reloc) == TargetClass::External
            && matches!(
                lookup_external(self.model, self.index, &self.alloc, &symbol, false),
                External::LibData(_)
            )
        {
            // The usual cause: code compiled for direct access to extern data (gcc's default
            // PIE relies on copy relocations the running program does not have for it).
            what.push_str(
                "; a library variable is out of direct reach: compile the patch with \
                 -mno-direct-extern-access so it is reached through a GOT slot",
            );
        }
        let message = format!(
            "{what} ({} against `{symbol}` in `{}`, offset {:#x})",
            hot_object::RelocKind::raw_name(self.info.obj.machine, reloc.raw_type),
            self.info.atom_name(atom),
            reloc.offset.0
        );
        self.error(code, message, Some(symbol), Some((atom, reloc.offset)));
    }

    fn function_atoms(&self) -> impl Iterator<Item = AtomId> + '_ {
        (0..self.info.obj.atoms.len())
            .map(|i| AtomId(i as u32))
            .filter(|&a| matches!(self.info.role(a), AtomRole::Function { .. }))
    }

    /// Phase 2: the function atoms to write, and every function's stable entry.
    fn changed_functions(&mut self) -> Vec<AtomId> {
        let mut changed = Vec::new();
        let functions: Vec<AtomId> = self.function_atoms().collect();
        // Without a baseline, every stable entry first: comparing a function with the image
        // needs its callees'. With one, only the changed functions' (and those of functions
        // whose name another file of the batch wants): the others are settled on demand.
        let mut found = Vec::with_capacity(functions.len());
        let defer = self.baseline_match.is_some() && self.placement.is_none();
        if defer {
            self.unsettled = vec![false; self.info.obj.atoms.len()];
        }
        let made_static = self.made_static_over_a_default();
        let made_static_atoms: HashSet<AtomId> = match made_static.is_empty() {
            true => HashSet::default(),
            false => functions
                .iter()
                .copied()
                .filter(|&a| match *self.info.role(a) {
                    AtomRole::Function { sym, .. } => {
                        let s = self.info.obj.symbol(sym);
                        s.binding == Binding::Local && made_static.contains(s.name.as_str())
                    }
                    _ => false,
                })
                .collect(),
        };
        self.refuse_made_static_with_address_held(&made_static, &made_static_atoms);
        // The functions referring to one of them (by its symbol or its section's): their
        // image code calls the entry, which runs the default from now on.
        let referring: HashSet<AtomId> = functions
            .iter()
            .copied()
            .filter(|&atom| {
                !made_static_atoms.is_empty()
                    && self.info.obj.atom(atom).relocs.iter().any(|r| {
                        match self.info.classify(atom, r) {
                            TargetClass::Entry { atom: t, .. }
                            | TargetClass::Placed { atom: t } => {
                                t != atom && made_static_atoms.contains(&t)
                            }
                            _ => false,
                        }
                    })
            })
            .collect();
        for atom in functions {
            let AtomRole::Function { sym, .. } = *self.info.role(atom) else {
                continue;
            };
            let name = self.info.function_name(atom).unwrap_or_default();
            let own_new = made_static_atoms.contains(&atom);
            let refers = own_new || referring.contains(&atom);
            if defer && self.as_before(atom) && !self.wanted.contains(name) && !refers {
                self.unsettled[atom.0 as usize] = true;
                continue;
            }
            // A function made `static` whose name falls back to another file's default
            // (`fall_back_to_weak_defaults`) is a new function of this file: the entry is
            // the default's now.
            let existing = match own_new {
                true => None,
                false => existing_entry(
                    self.model,
                    self.index,
                    &self.alloc,
                    self.info.obj,
                    sym,
                    name,
                    self.unit,
                ),
            };
            if let Some(e) = existing {
                self.entries.insert(atom, e);
            }
            found.push((atom, sym, name, existing));
        }
        let unchanged = self.unchanged_in_image(&found);
        let own_new_atom = |atom: AtomId| made_static_atoms.contains(&atom);
        for (atom, sym, name, existing) in found {
            let differs = referring.contains(&atom)
                || match &self.baseline_match {
                    Some(map) => map.get(&atom).is_none_or(|m| m.1),
                    None => !unchanged.contains(&atom),
                };
            if let Some(entry) = existing {
                if let Some((owner, image)) = self.overriding(sym, entry) {
                    // Calls to the name reach the override, as in the running program.
                    self.overridden.insert(atom);
                    if differs {
                        if let Some(entry_addr) = self.remembered_default(entry, image) {
                            self.redefaults.insert(atom, entry_addr);
                            changed.push(atom);
                        }
                        match (owner.filter(|o| !o.is_of(self.unit)), image) {
                            (Some(o), _) => {
                                self.note_weak_overridden_in(name, Some(&o.source), atom)
                            }
                            (None, Some(r)) => self.note_overridden_weak(name, r, atom, true),
                            (None, None) => self.note_weak_overridden_in(name, None, atom),
                        }
                    }
                    continue;
                }
            }
            match existing {
                Some(_) => {
                    if differs {
                        changed.push(atom);
                    }
                }
                None => {
                    let as_before = self
                        .baseline_match
                        .as_ref()
                        .is_some_and(|map| map.get(&atom).is_some_and(|m| !m.1));
                    if as_before && !self.wanted.contains(name) && !own_new_atom(atom) {
                        self.dormant.insert(atom);
                        continue;
                    }
                    // A function without a stable entry is new: it always gets written.
                    self.new_stubs.insert(atom);
                    changed.push(atom);
                }
            }
        }
        changed
    }

    /// The functions the baseline defines as globals and the object as `static` whose name
    /// another definition takes over once they are gone (see
    /// [`Link::fall_back_to_weak_defaults`]): a weak default of another file the image
    /// kept, the default an earlier save displaced, or a library's definition. Rare: empty
    /// unless the object has a `static` of a baseline global's name.
    fn made_static_over_a_default(&self) -> HashSet<String> {
        let Some(baseline) = self.baseline else {
            return HashSet::default();
        };
        if self.same_functions {
            return HashSet::default();
        }
        let is_function = |s: &&hot_object::Symbol| {
            s.kind == hot_object::SymbolKind::Function
                && matches!(s.def, hot_object::SymbolDef::Atom { .. })
                && !s.name.is_empty()
        };
        let locals: HashSet<&str> = self
            .info
            .obj
            .symbols
            .iter()
            .filter(is_function)
            .filter(|s| s.binding == Binding::Local)
            .map(|s| s.name.as_str())
            .collect();
        if locals.is_empty() {
            return HashSet::default();
        }
        let ours = self.unit.compile_unit;
        let units = &self.model.exe.image.compile_units;
        baseline
            .symbols
            .iter()
            .filter(is_function)
            .filter(|s| s.binding == Binding::Global && locals.contains(s.name.as_str()))
            .map(|s| s.name.as_str())
            .filter(|&name| {
                let default_in_image = units.iter().enumerate().any(|(i, cu)| {
                    Some(i) != ours && cu.unnamed_functions.iter().any(|(n, _)| n == name)
                });
                let entry =
                    crate::resolve::exe_definition(self.model, self.index, Some(self.unit), name)
                        .map(|r| self.model.exe.runtime(Vaddr(r.get(self.model).vaddr)));
                let displaced = entry
                    .and_then(|e| self.alloc.entry_owner(e))
                    .is_some_and(|o| o.displaced.is_some());
                let library = self.model.home == crate::Home::Executable
                    && self
                        .index
                        .startup_lib_lookup(self.model, name)
                        .is_some_and(|r| {
                            r.get(self.model).kind == hot_object::SymbolKind::Function
                        });
                default_in_image || displaced || library
            })
            .map(str::to_string)
            .collect()
    }

    /// A function of `made_static` whose address this file takes (a reference other than a
    /// direct call or jump: in its data, `int (*p)(void) = hook;`, or code loading it), in
    /// the object or in the baseline, cannot be swapped: a relink makes those pointers the
    /// `static`, but the ones in the running program hold the old entry, which from now on
    /// runs the other definition (the pointers already stored, in data this link does not
    /// rewrite or wherever the baseline's code put them, cannot be found).
    fn refuse_made_static_with_address_held(
        &mut self,
        made_static: &HashSet<String>,
        atoms: &HashSet<AtomId>,
    ) {
        let Some(baseline) = self.baseline else {
            return;
        };
        if made_static.is_empty() {
            return;
        }
        let obj = self.info.obj;
        let mut held: Vec<(String, Option<(AtomId, AtomOffset)>)> = Vec::new();
        for (i, atom) in obj.atoms.iter().enumerate() {
            let id = AtomId(i as u32);
            for r in atom.relocs.iter() {
                let TargetClass::Entry { atom: t, .. } = self.info.classify(id, r) else {
                    continue;
                };
                if !atoms.contains(&t) || direct_branch(atom, r) {
                    continue;
                }
                let name = self.info.function_name(t).unwrap_or_default().to_string();
                if !held.iter().any(|(n, _)| *n == name) {
                    held.push((name, Some((id, r.offset))));
                }
            }
        }
        for atom in baseline.atoms.iter() {
            for r in atom.relocs.iter() {
                let s = baseline.symbol(r.symbol);
                if s.binding == Binding::Local
                    || !made_static.contains(s.name.as_str())
                    || direct_branch(atom, r)
                {
                    continue;
                }
                if !held.iter().any(|(n, _)| *n == s.name) {
                    held.push((s.name.to_string(), None));
                }
            }
        }
        for (name, at) in held {
            self.error(
                LinkErrorCode::SignatureChanged,
                format!(
                    "`{name}` was made `static`, and {} takes its address (a function pointer, \
                     in its data or its code): a relink makes those pointers the `static` \
                     function, but the ones the running program holds point at the old \
                     `{name}`, which from now on runs another file's definition: nothing was \
                     swapped — restart the program to make `{name}` static",
                    crate::abi::short_file(&self.unit.source),
                ),
                Some(name),
                at,
            );
        }
    }

    /// Whether the baseline has this atom, unchanged.
    fn as_before(&self, atom: AtomId) -> bool {
        self.baseline_match
            .as_ref()
            .is_some_and(|map| map.get(&atom).is_some_and(|m| !m.1))
    }

    /// Look up the stable entry of a function [`Link::changed_functions`] left unsettled
    /// (as in the baseline, wanted by no other file), exactly as it would have: its image
    /// entry (never redirected when a strong definition elsewhere overrides it), or none,
    /// and then it is dormant. Written code refers to it, so it is asked now.
    fn settle(&mut self, atom: AtomId) {
        if !self
            .unsettled
            .get(atom.0 as usize)
            .is_some_and(|&unsettled| unsettled)
        {
            return;
        }
        self.unsettled[atom.0 as usize] = false;
        let AtomRole::Function { sym, .. } = *self.info.role(atom) else {
            return;
        };
        let name = self.info.function_name(atom).unwrap_or_default();
        let Some(entry) = existing_entry(
            self.model,
            self.index,
            &self.alloc,
            self.info.obj,
            sym,
            name,
            self.unit,
        ) else {
            self.dormant.insert(atom);
            return;
        };
        self.entries.insert(atom, entry);
        if self.overriding(sym, entry).is_some() {
            // Unchanged, so no note: only references must reach the override.
            self.overridden.insert(atom);
        }
    }

    /// When the object's weak definition `sym` is not what its stable `entry` runs (a strong
    /// definition elsewhere overrides it): the entry's owner, if a save made one, and the
    /// image's symbol, if the entry is the image's — what the note about it names.
    fn overriding(
        &self,
        sym: SymbolId,
        entry: StableEntry,
    ) -> Option<(Option<EntryOwner>, Option<crate::image::ImageSymRef>)> {
        let (image, entry_addr) = match entry {
            StableEntry::Image(r) => (
                Some(r),
                self.model.exe.runtime(Vaddr(r.get(self.model).vaddr)),
            ),
            StableEntry::Stub(stub) => (None, stub),
        };
        let owner = self.alloc.entry_owner(entry_addr).cloned();
        let sym_ref = (self.info.obj, sym);
        (!weak_entry_in_use(self.model, sym_ref, image, self.unit, owner.as_ref()))
            .then_some((owner, image))
    }

    /// The entry of the override of this unit's weak definition at `entry` (of `image` in
    /// the image, if the entry is the image's), when the override is a save's strong
    /// definition that remembers this unit's default as the one it displaced: deleting it
    /// runs that default again, so an edited default must be placed and remembered.
    fn remembered_default(
        &self,
        entry: StableEntry,
        image: Option<crate::image::ImageSymRef>,
    ) -> Option<RuntimeAddr> {
        let entry_addr = match entry {
            StableEntry::Image(r) => self.model.exe.runtime(Vaddr(r.get(self.model).vaddr)),
            StableEntry::Stub(stub) => stub,
        };
        let owner = self.alloc.entry_owner(entry_addr)?;
        if owner.weak || owner.is_of(self.unit) {
            return None;
        }
        let ours = match &owner.displaced.as_ref()?.owner {
            Some(default) => default.is_of(self.unit),
            // The image's own default, untouched since launch: this unit's if it defines
            // the image's symbol.
            None => image.is_some_and(|r| {
                crate::resolve::unit_defines_symbol(self.model, self.unit, r.get(self.model))
                    == Some(true)
            }),
        };
        ours.then_some(entry_addr)
    }

    /// Without a baseline: the functions of the object that do what the image's code at
    /// their stable entry does (`image_diff.rs`). None with a baseline, or with a forced
    /// placement (the differential tests want every atom linked).
    fn unchanged_in_image(
        &self,
        found: &[(AtomId, SymbolId, &str, Option<StableEntry>)],
    ) -> HashSet<AtomId> {
        let mut unchanged = HashSet::default();
        if self.baseline_match.is_some() || self.placement.is_some() {
            return unchanged;
        }
        if self.info.obj.machine == hot_object::Machine::Aarch64 {
            for &(atom, _, _, existing) in found {
                let Some(StableEntry::Image(r)) = existing else {
                    continue;
                };
                let sym = r.get(self.model);
                let entry = self.model.exe.runtime(Vaddr(sym.vaddr));
                if self.unchanged_in_image_aarch64(atom, entry, sym.size) {
                    unchanged.insert(atom);
                }
            }
            return unchanged;
        }
        let mut diff = ImageDiff::new();
        for &(atom, _, _, existing) in found {
            let Some(StableEntry::Image(r)) = existing else {
                continue;
            };
            let sym = r.get(self.model);
            let entry = self.model.exe.runtime(Vaddr(sym.vaddr));
            if diff.unchanged(self, atom, entry, sym.size) {
                unchanged.insert(atom);
            }
        }
        unchanged
    }

    /// Tell the user once per save that an edited weak default (function or data) is not
    /// what the running program uses.
    pub(crate) fn note_overridden_weak(
        &mut self,
        name: &str,
        r: crate::image::ImageSymRef,
        atom: AtomId,
        known_changed: bool,
    ) {
        let file = crate::resolve::defining_file(self.model, r.get(self.model), self.unit);
        self.note_weak_overridden(name, file, atom, known_changed);
    }

    /// [`Link::note_overridden_weak`] with the override's file known (`None`: unknown).
    fn note_weak_overridden_in(&mut self, name: &str, file: Option<&str>, atom: AtomId) {
        self.note_weak_overridden(name, file, atom, true);
    }

    /// The note itself; `known_changed` false: the link could not tell whether the edit
    /// changed the default (data with relocations and no baseline), so it does not say so.
    fn note_weak_overridden(
        &mut self,
        name: &str,
        file: Option<&str>,
        atom: AtomId,
        known_changed: bool,
    ) {
        let site = file.map(|file| format!(" (in {file})")).unwrap_or_default();
        let shown = hot_object::display_name(name);
        let outcome = if known_changed {
            "this edit is not swapped in and the program keeps using the override"
        } else {
            "if this edit changed it, the change is not swapped in"
        };
        self.patch.notes.push(LinkNote {
            code: "weak-overridden",
            message: format!(
                "`{shown}` here is a weak definition, and the running program uses the strong \
                 definition of `{shown}`{site} instead: {outcome}"
            ),
            symbol: Some(name.to_string()),
            line: self.atom_line(atom),
            severity: NoteSeverity::Information,
            unit: self.unit.source.clone(),
        });
    }

    /// Phase 3: everything the written atoms reach by content.
    fn close_over(&mut self, changed: Vec<AtomId>) {
        let mut queued: HashSet<AtomId> = HashSet::default();
        let mut work: Vec<AtomId> = Vec::new();
        for atom in changed {
            if queued.insert(atom) {
                self.place_order.push(atom);
                work.push(atom);
            }
        }
        work.extend(self.data_writes.iter().copied());
        while let Some(atom) = work.pop() {
            // Every function this atom refers to (by entry or inside) has its entry looked
            // up before the atom is classified: relocating it and redirecting what is copied
            // need them. (Its LSDAs are data, and their own references come through here.)
            let obj = self.info.obj;
            for reloc in obj.atom(atom).relocs.iter() {
                if let hot_object::SymbolDef::Atom { atom: target, .. } =
                    obj.symbol(reloc.symbol).def
                {
                    self.settle(target);
                }
            }
            let relocs = &self.info.obj.atom(atom).relocs;
            let mut woken = Vec::new();
            let targets = relocs
                .iter()
                .filter_map(|reloc| match self.info.classify(atom, reloc) {
                    TargetClass::Placed { atom: target } => Some(target),
                    // A function the image lacks, called by new code: linked as new.
                    TargetClass::Entry { atom: target, .. } if self.dormant.contains(&target) => {
                        woken.push(target);
                        Some(target)
                    }
                    _ => None,
                });
            // A body's LSDAs are reached only from .eh_frame (`unwind.rs`).
            let targets: Vec<AtomId> = targets.chain(self.unwind_data_of(atom)).collect();
            for target in woken {
                self.dormant.remove(&target);
                self.new_stubs.insert(target);
            }
            for target in targets {
                if queued.insert(target) {
                    self.place_order.push(target);
                    work.push(target);
                }
            }
        }
        // Unchanged functions not pulled in by an interior reference are not written.
        self.patch.skipped = self
            .function_atoms()
            .filter(|a| !queued.contains(a))
            .count();
    }

    /// Phase 4: addresses for the copied atoms and stubs for new functions.
    fn lay_out(&mut self) {
        let order = self.place_order.clone();
        for atom in order {
            let a = self.info.obj.atom(atom);
            let forced = self.placement.and_then(|p| p.atoms.get(&atom).copied());
            // Compiler tables are written by the code that uses them (UBSan's reported
            // flag, coverage counters): they go to the writable arena.
            let arena = if matches!(self.info.role(atom), AtomRole::CompilerTable) {
                ArenaKind::Data
            } else {
                ArenaKind::Code
            };
            let addr = match forced {
                Some(addr) => addr,
                None => match self.alloc.alloc(arena, a.size, a.align.max(1)) {
                    Ok(addr) => addr,
                    Err(_) => {
                        let name = self.info.atom_name(atom);
                        let line = self.atom_line(atom);
                        self.arena_exhausted(arena, &name, a.size, line);
                        continue;
                    }
                },
            };
            self.placed.insert(atom, addr);
        }
        let mut new_stubs: Vec<AtomId> = self.new_stubs.iter().copied().collect();
        new_stubs.sort();
        for atom in new_stubs {
            let AtomRole::Function { sym, .. } = *self.info.role(atom) else {
                continue;
            };
            let name = self
                .info
                .function_name(atom)
                .unwrap_or_default()
                .to_string();
            let key = sym_key(self.info.obj, sym, self.unit, &name);
            let stub = match self.alloc.reserved_stub(&key) {
                Some(stub) => Ok(stub),
                None => self.alloc.alloc(ArenaKind::Code, STUB_SIZE, STUB_SIZE),
            };
            match stub {
                Ok(stub) => {
                    self.alloc.add_new_function(key, stub);
                    self.entries.insert(atom, StableEntry::Stub(stub));
                }
                Err(_) => {
                    let line = self.atom_line(atom);
                    self.arena_exhausted(ArenaKind::Code, &name, STUB_SIZE, line);
                }
            }
        }
    }

    /// The arena cannot hold `what`; `line` is where it is (a function's first line, a
    /// variable's declaration), when known.
    pub(crate) fn arena_exhausted(
        &mut self,
        arena: ArenaKind,
        what: &str,
        size: u64,
        line: Option<SourceLine>,
    ) {
        let which = match arena {
            ArenaKind::Code => "code",
            ArenaKind::Data => "data",
        };
        self.variable_error(
            LinkErrorCode::ArenaExhausted,
            format!(
                "the {which} arena is full: no room for `{what}` ({size} bytes); restart the \
                 program to start with fresh arenas"
            ),
            what.to_string(),
            line,
        );
    }

    /// Phase 5: relocate and emit every copied atom and written data atom.
    fn relocate(&mut self) {
        let order = self.place_order.clone();
        for atom in order {
            let Some(&base) = self.placed.get(&atom) else {
                continue;
            };
            let bytes = self.apply_atom(atom, base);
            let what = match self.info.role(atom) {
                AtomRole::Function { .. } => format!("body of {}", self.info.atom_name(atom)),
                _ => format!(
                    "{} for {}",
                    self.info.obj.atom(atom).section_name,
                    self.unit.source
                ),
            };
            self.patch.writes.push(PatchWrite {
                addr: base,
                bytes,
                what,
            });
        }
        let data = self.data_writes.clone();
        for atom in data {
            let Some(&base) = self.bound.get(&atom) else {
                continue;
            };
            let bytes = self.apply_atom(atom, base);
            let name = self.info.atom_name(atom);
            let read_only = matches!(self.info.role(atom), AtomRole::NamedReadOnly { .. });
            if self.fresh_data.contains(&atom) {
                // Allocated by this link: nothing can read it before the entries go live.
                if read_only {
                    self.alloc.record_read_only(ReadOnlyWrite {
                        addr: base,
                        before: None,
                        after: bytes.clone(),
                        name: name.clone(),
                    });
                }
                self.patch.writes.push(PatchWrite {
                    addr: base,
                    bytes,
                    what: format!("data {name}"),
                });
                continue;
            }
            // An object the running program can read now: updated in the atomic commit.
            let expected = match self.alloc.read_only_contents(base) {
                Some(b) => Some(b.to_vec()),
                None => self.image_contents(base, bytes.len()),
            };
            let Some(expected) = expected else {
                self.error(
                    LinkErrorCode::UnsupportedRelocation,
                    format!(
                        "cannot tell what `{name}` at {base} holds in the running program (a \
                         pointer in it is filled in by the dynamic linker from a symbol hot-lsp \
                         cannot find), so it cannot be updated in place; restart the program"
                    ),
                    Some(name),
                    Some((atom, AtomOffset(0))),
                );
                continue;
            };
            if expected == bytes {
                continue;
            }
            self.alloc.record_read_only(ReadOnlyWrite {
                addr: base,
                before: Some(expected.clone()),
                after: bytes.clone(),
                name: name.clone(),
            });
            self.patch.in_place.push(EntryWrite {
                addr: base,
                expected,
                bytes,
                function: name,
            });
        }
    }

    /// What `len` bytes of the executable at `addr` hold in the running program when no patch
    /// wrote them: the file's bytes with the dynamic linker's work redone — `RELATIVE` words
    /// are bias + addend, a word bound to a symbol holds that symbol's runtime address.
    /// `None` when a bound symbol cannot be found (or the bytes are not in the file).
    pub(crate) fn image_contents(&self, addr: RuntimeAddr, len: usize) -> Option<Vec<u8>> {
        let exe = &self.model.exe;
        let image = &exe.image;
        let vaddr = addr.0.wrapping_sub(exe.bias);
        let mut bytes = match image.section_at(vaddr) {
            Some(sec) if sec.bytes.is_empty() => vec![0; len],
            Some(_) => image.bytes_at(vaddr, len)?.to_vec(),
            None => return None,
        };
        let end = vaddr.checked_add(len as u64)?;
        let mut put = |at: u64, value: u64| {
            for (i, b) in value.to_le_bytes().iter().enumerate() {
                let p = at.wrapping_add(i as u64);
                if p >= vaddr && p < end {
                    bytes[(p - vaddr) as usize] = *b;
                }
            }
        };
        let relatives = &image.relative_relocs;
        let first = relatives.partition_point(|&(v, _)| v.saturating_add(8) <= vaddr);
        for &(v, addend) in relatives[first..].iter().take_while(|&&(v, _)| v < end) {
            put(v, exe.bias.wrapping_add(addend as u64));
        }
        for slot in &image.got_slots {
            // Words the dynamic linker filled with a symbol's address (`R_X86_64_64`, and
            // `GLOB_DAT` for good measure); a `COPY` target is a variable, not a pointer.
            if !matches!(slot.kind, GotSlotKind::Abs64 | GotSlotKind::GlobDat)
                || slot.vaddr.saturating_add(8) <= vaddr
                || slot.vaddr >= end
            {
                continue;
            }
            let value = if let Some(r) =
                crate::resolve::exe_definition(self.model, self.index, None, &slot.symbol)
            {
                exe.runtime(Vaddr(r.get(self.model).vaddr)).0
            } else {
                let r = self.index.lib_lookup(&slot.symbol)?;
                r.module
                    .module(self.model)
                    .runtime(Vaddr(r.get(self.model).vaddr))
                    .0
            };
            // `&arr[2]` is `arr + 8`: the loader adds the addend (`GLOB_DAT`'s is 0).
            put(slot.vaddr, value.wrapping_add(slot.addend as u64));
        }
        Some(bytes)
    }

    fn apply_atom(&mut self, atom: AtomId, base: RuntimeAddr) -> Vec<u8> {
        let obj = self.info.obj;
        let a = obj.atom(atom);
        let mut bytes = if a.bytes.is_empty() {
            vec![0u8; a.size as usize]
        } else {
            a.bytes.to_vec()
        };
        let mut consumed_until = 0u64;
        for reloc in &a.relocs {
            if reloc.offset.0 < consumed_until {
                // Part of a TLS sequence rewritten by the relocation before it (the call to
                // `__tls_get_addr` after TLSGD/TLSLD).
                continue;
            }
            match self.apply_one(atom, base, reloc, &mut bytes) {
                Ok(until) => consumed_until = consumed_until.max(until),
                Err(failure) => self.reloc_error(atom, reloc, failure),
            }
        }
        bytes
    }

    /// Apply one relocation; returns the end of the bytes it consumed beyond its field (for
    /// TLS sequences), or 0.
    fn apply_one(
        &mut self,
        atom: AtomId,
        base: RuntimeAddr,
        reloc: &Reloc,
        bytes: &mut [u8],
    ) -> Result<u64, Failure> {
        let p = base.0.wrapping_add(reloc.offset.0) as i128;
        let off = reloc.offset.0 as usize;
        let a = reloc.addend as i128;
        let class = self.info.classify(atom, reloc);
        let in_code = self.info.obj.atom(atom).kind == AtomKind::Text;
        let aarch64 = self.info.obj.machine == hot_object::Machine::Aarch64;
        if aarch64 && crate::reloc_aarch64::is_aarch64_kind(reloc.kind) {
            return self.apply_aarch64(base, reloc, class, bytes);
        }
        let put = |bytes: &mut [u8], field: Field, value: i128| -> Result<u64, Failure> {
            store(bytes, off, field, value)
                .map(|_| 0)
                .map_err(apply_failure)
        };
        match reloc.kind {
            RelocKind::None => Ok(0),
            RelocKind::GotPcRel | RelocKind::GotPcRelX | RelocKind::RexGotPcRelX => {
                let slot = self.got_slot_for(class, reloc)?;
                put(bytes, Field::Signed32, slot.0 as i128 + a - p)
            }
            RelocKind::GotPcRel64 => {
                let slot = self.got_slot_for(class, reloc)?;
                put(bytes, Field::Word64, slot.0 as i128 + a - p)
            }
            RelocKind::Plt32
            | RelocKind::Pc32
            | RelocKind::Pc16
            | RelocKind::Pc8
            | RelocKind::Pc64
            | RelocKind::Abs64
            | RelocKind::Abs32
            | RelocKind::Abs32S
            | RelocKind::Abs16
            | RelocKind::Abs8 => {
                let call = reloc.kind == RelocKind::Plt32
                    || (!aarch64 && in_code && reloc.kind == RelocKind::Pc32);
                // (aarch64 branches to an undefined weak are `apply_aarch64`'s: ld's `nop`.)
                let weak_zero = match (aarch64, class) {
                    (false, TargetClass::External) => self.undefined_weak(reloc),
                    _ => None,
                };
                if let Some(name) = &weak_zero {
                    let branch = reloc.kind == RelocKind::Plt32
                        || (reloc.kind == RelocKind::Pc32
                            && self.info.is_rel32_branch(atom, reloc.offset));
                    if branch {
                        let target = self.branch_to_undefined_weak(name, reloc, p)?;
                        return put(bytes, Field::Signed32, target.0 as i128 + a - p);
                    }
                }
                let s = match weak_zero {
                    // Its address, as the program's own link resolved it.
                    Some(_) => 0,
                    None => match self.symbol_value(class, reloc, call)? {
                        SymValue::Addr(s) => s as i128,
                        SymValue::CopyInto(src)
                            if reloc.kind == RelocKind::Abs64 && reloc.addend == 0 =>
                        {
                            // A pointer to a library IFUNC in new data: the target copies the
                            // chosen implementation into the field.
                            self.patch.slot_copies.push(SlotCopy {
                                dst: RuntimeAddr(p as u64),
                                src,
                                what: format!("address of {}", self.info.symbol_name(reloc.symbol)),
                            });
                            return Ok(0);
                        }
                        SymValue::CopyInto(_) => return Err((
                            LinkErrorCode::UnsupportedRelocation,
                            "the address of a library IFUNC can only be stored as a plain 64-bit \
                             pointer"
                                .into(),
                        )),
                    },
                };
                if aarch64 {
                    return Self::store_aarch64_data(reloc, p as u64, s as u64, bytes);
                }
                let (field, value) = match reloc.kind {
                    RelocKind::Plt32 | RelocKind::Pc32 => (Field::Signed32, s + a - p),
                    RelocKind::Pc16 => (Field::Signed16, s + a - p),
                    RelocKind::Pc8 => (Field::Signed8, s + a - p),
                    RelocKind::Pc64 => (Field::Word64, s + a - p),
                    RelocKind::Abs64 => (Field::Word64, s + a),
                    RelocKind::Abs32 => (Field::Unsigned32, s + a),
                    RelocKind::Abs32S => (Field::Signed32, s + a),
                    RelocKind::Abs16 => (Field::Either16, s + a),
                    _ => (Field::Either8, s + a),
                };
                match (put(bytes, field, value), weak_zero) {
                    (Err((LinkErrorCode::RelocationOverflow, _)), Some(name)) => Err((
                        LinkErrorCode::RelocationOverflow,
                        undefined_weak_out_of_reach(&name, p as u64),
                    )),
                    (stored, _) => stored,
                }
            }
            RelocKind::Size32 | RelocKind::Size64 => {
                let z = self.info.obj.symbol(reloc.symbol).size as i128;
                let field = if reloc.kind == RelocKind::Size32 {
                    Field::Unsigned32
                } else {
                    Field::Word64
                };
                put(bytes, field, z + a)
            }
            RelocKind::TpOff32 => {
                let t = self.tpoff(class, reloc)? as i128;
                put(bytes, Field::Signed32, t + a)
            }
            RelocKind::TpOff64 => {
                let t = self.tpoff(class, reloc)? as i128;
                put(bytes, Field::Word64, t + a)
            }
            RelocKind::GotTpOff => {
                let t = self.tpoff(class, reloc)?;
                // `relax_gottpoff` checks the instruction before changing any byte.
                match x86_64::relax_gottpoff(bytes, off, t) {
                    Ok(()) => Ok(0),
                    Err(ApplyError::UnexpectedCode(_)) => {
                        // Not a form ld relaxes: keep the GOT load, from a slot holding the
                        // offset.
                        let slot = self.arena_slot(SlotContent::Value(t as u64), "TLS offset")?;
                        put(bytes, Field::Signed32, slot.0 as i128 + a - p)
                    }
                    Err(e) => Err(apply_failure(e)),
                }
            }
            RelocKind::TlsGd => {
                let t = self.tpoff(class, reloc)?;
                x86_64::relax_tlsgd(bytes, off, t).map_err(apply_failure)?;
                Ok(reloc.offset.0 + 12)
            }
            RelocKind::TlsLd => {
                x86_64::relax_tlsld(bytes, off).map_err(apply_failure)?;
                Ok(reloc.offset.0 + 10)
            }
            RelocKind::DtpOff32 | RelocKind::DtpOff64 => {
                // In an executable's code ld turns the offset in the module's block into the
                // thread-pointer offset (the LD sequence now yields the thread pointer).
                let v = if in_code {
                    self.tpoff(class, reloc)? as i128
                } else {
                    self.tls_offset(class, reloc)? as i128
                };
                let field = if reloc.kind == RelocKind::DtpOff32 {
                    Field::Signed32
                } else {
                    Field::Word64
                };
                put(bytes, field, v + a)
            }
            RelocKind::GotPc32TlsDesc => {
                let t = self.tpoff(class, reloc)?;
                x86_64::relax_tlsdesc(bytes, off, t).map_err(apply_failure)?;
                Ok(0)
            }
            RelocKind::TlsDescCall => {
                x86_64::relax_tlsdesc_call(bytes, off).map_err(apply_failure)?;
                Ok(0)
            }
            _ => Err((
                LinkErrorCode::UnsupportedRelocation,
                "hot-link does not support this relocation type".into(),
            )),
        }
    }

    pub(crate) fn tls_segment(&self) -> Result<hot_object::TlsSegment, Failure> {
        if let crate::Home::Library { .. } = self.model.home {
            return Err(library_tls(&self.model.exe.path));
        }
        self.model.exe.image.tls.ok_or_else(|| {
            (
                LinkErrorCode::UnsupportedRelocation,
                "the executable has no TLS segment, so its thread-locals cannot be reached".into(),
            )
        })
    }

    /// The offset of a thread-local target in the executable's TLS template. (In a linked
    /// image, the `st_value` of an `STT_TLS` symbol is this offset, not an address.)
    pub(crate) fn tls_offset(&self, class: TargetClass, reloc: &Reloc) -> Result<u64, Failure> {
        if let crate::Home::Library { .. } = self.model.home {
            return Err(library_tls(&self.model.exe.path));
        }
        let name = self.info.symbol_name(reloc.symbol);
        match class {
            TargetClass::Bound { atom } => match self.tls_bound.get(&atom) {
                Some(v) => Ok(v.0.wrapping_add(self.info.symbol_offset(reloc.symbol))),
                None if matches!(self.info.role(atom), AtomRole::ThreadLocal { .. }) => {
                    Err((LinkErrorCode::NewThreadLocal, String::new()))
                }
                None => Err((
                    LinkErrorCode::UnsupportedRelocation,
                    format!("`{name}` is not a thread-local variable"),
                )),
            },
            TargetClass::External => {
                let weak = self.info.obj.symbol(reloc.symbol).binding == Binding::Weak;
                match lookup_external(self.model, self.index, &self.alloc, &name, weak) {
                    External::ExeTls(v) => Ok(v.0),
                    External::LibTls { lib } => Err((
                        LinkErrorCode::UnsupportedRelocation,
                        format!(
                            "thread-local `{name}` is defined in {}; a patch can only reach the \
                             executable's own thread-locals",
                            self.model.libs[lib].path
                        ),
                    )),
                    External::Missing => Err((
                        LinkErrorCode::UndefinedSymbol,
                        format!("undefined thread-local `{name}`"),
                    )),
                    _ => Err((
                        LinkErrorCode::UnsupportedRelocation,
                        format!("`{name}` is not a thread-local variable"),
                    )),
                }
            }
            _ => Err((
                LinkErrorCode::UnsupportedRelocation,
                format!("`{name}` is not a thread-local variable"),
            )),
        }
    }

    /// x86-64 variant II: the TLS block ends at the thread pointer, so
    /// `tpoff = (S - tls_start) - round_up(tls_memsz, tls_align)`, where `S - tls_start` is
    /// the symbol's offset in the TLS template.
    pub(crate) fn tpoff(&self, class: TargetClass, reloc: &Reloc) -> Result<i64, Failure> {
        let offset = self.tls_offset(class, reloc)?;
        let tls = self.tls_segment()?;
        let align = tls.align.max(1);
        // PT_TLS's sizes are fields of the file: an implausible one is an error, not a wrap.
        tls.memsz
            .checked_next_multiple_of(align)
            .and_then(|size| i64::try_from(size).ok())
            .and_then(|size| (offset as i64).checked_sub(size))
            .ok_or_else(|| {
                (
                    LinkErrorCode::UnsupportedRelocation,
                    format!(
                        "the executable's TLS segment ({:#x} bytes, {align}-byte aligned) is too \
                         large to place thread-locals in",
                        tls.memsz
                    ),
                )
            })
    }

    /// The value `S` of a relocation's symbol. `call`: the reference is a call or jump, so a
    /// library function may be reached through a stub.
    pub(crate) fn symbol_value(
        &mut self,
        class: TargetClass,
        reloc: &Reloc,
        call: bool,
    ) -> Result<SymValue, Failure> {
        let sym_offset = self.info.symbol_offset(reloc.symbol);
        if let TargetClass::Entry { .. } = class {
            // A library's exported function the executable interposes: the library's own
            // calls reach the executable's (ld.so bound its PLT so), and so do new ones.
            let sym = self.info.obj.symbol(reloc.symbol);
            if sym.binding != Binding::Local && !sym.hidden {
                let name = self.info.symbol_name(reloc.symbol);
                if let Some(r) = self.index.interposer(&name) {
                    let external = crate::resolve::other_module(self.model, self.index, r);
                    return self.external_value(&name, external, reloc, call);
                }
            }
        }
        match class {
            TargetClass::Entry { atom, delta } => match self.entries.get(&atom) {
                Some(StableEntry::Image(r)) => {
                    let entry = self.model.exe.runtime(Vaddr(r.get(self.model).vaddr));
                    Ok(SymValue::Addr(entry.0.wrapping_add_signed(-delta)))
                }
                Some(StableEntry::Stub(stub)) => {
                    Ok(SymValue::Addr(stub.0.wrapping_add_signed(-delta)))
                }
                // Its stub did not fit in the arena (reported there). Never a function left
                // unsettled: `close_over` settles every function written code refers to.
                None => {
                    debug_assert!(
                        !self.unsettled.get(atom.0 as usize).is_some_and(|&u| u),
                        "a reference to an unsettled function ({atom:?})"
                    );
                    Err((LinkErrorCode::ArenaExhausted, String::new()))
                }
            },
            TargetClass::Placed { atom } => match self.placed.get(&atom) {
                Some(base) => Ok(SymValue::Addr(base.0.wrapping_add(sym_offset))),
                None => Err((LinkErrorCode::ArenaExhausted, String::new())),
            },
            TargetClass::Bound { atom } => match self.bound.get(&atom) {
                Some(base) => Ok(SymValue::Addr(base.0.wrapping_add(sym_offset))),
                None if self.tls_bound.contains_key(&atom) => Err((
                    LinkErrorCode::UnsupportedRelocation,
                    "a thread-local variable is referenced by a non-TLS relocation".into(),
                )),
                // Binding failed and was reported.
                None => Err((LinkErrorCode::LayoutChanged, String::new())),
            },
            TargetClass::Absolute(v) => Ok(SymValue::Addr(v)),
            TargetClass::Unsupported => Err((
                LinkErrorCode::UnsupportedRelocation,
                "the symbol is defined in a section a patch cannot load".into(),
            )),
            TargetClass::External => {
                let name = self.info.symbol_name(reloc.symbol);
                let sym = self.info.obj.symbol(reloc.symbol);
                let weak = sym.binding == Binding::Weak;
                let external = lookup_external(self.model, self.index, &self.alloc, &name, weak);
                self.external_value(&name, external, reloc, call)
            }
        }
    }

    /// The value `S` of a reference to `name`, found outside the object (`external`).
    fn external_value(
        &mut self,
        name: &str,
        external: External,
        reloc: &Reloc,
        call: bool,
    ) -> Result<SymValue, Failure> {
        let name = name.to_string();
        match external {
            External::ExeFunction(a)
            | External::ExeData(a)
            | External::NewFunction(a)
            | External::NewVariable(a)
            | External::LibData(a) => Ok(SymValue::Addr(a.0)),
            External::LibFunction { addr, .. } => {
                let non_pic_32 = matches!(reloc.kind, RelocKind::Abs32 | RelocKind::Abs32S);
                let exe = &self.model.exe;
                if call || non_pic_32 {
                    self.call_stub(&name, SlotContent::Value(addr.0))
                        .map(|s| SymValue::Addr(s.0))
                } else if let (false, Some(plt)) =
                    (exe.image.position_independent, self.index.exe_plt(&name))
                {
                    // A non-PIE executable that takes the function's address makes its
                    // PLT entry the canonical address; keep pointers comparable.
                    Ok(SymValue::Addr(exe.runtime(plt).0))
                } else {
                    Ok(SymValue::Addr(addr.0))
                }
            }
            External::LibIfunc { lib, irelative } => {
                self.library_ifunc(&name, lib, irelative, call)
            }
            External::ExeIfunc => Err((
                LinkErrorCode::UnsupportedRelocation,
                format!("`{name}` is an IFUNC of the executable, which patches cannot call"),
            )),
            External::ExeTls(_) | External::LibTls { .. } => Err((
                LinkErrorCode::UnsupportedRelocation,
                format!("thread-local `{name}` is referenced by a non-TLS relocation"),
            )),
            External::WeakZero => Ok(SymValue::Addr(0)),
            External::Missing => Err((LinkErrorCode::UndefinedSymbol, undefined_message(&name))),
        }
    }

    /// The value of a library IFUNC `name` of `libs[lib]` (`.dynsym` value = its resolver,
    /// never to be called as the function). Only the target knows which implementation the
    /// resolver chose; it is found, in this order:
    ///
    /// - for a call: the executable's own `JUMP_SLOT`/`GLOB_DAT` slot, which ld.so fills
    ///   with the implementation (a lazy `JUMP_SLOT` first holds the PLT resolution path,
    ///   which ends in the implementation: jumping through it is right either way); else a
    ///   slot copied at apply time from the library's `IRELATIVE` slot for that resolver
    ///   (only IFUNCs the library calls itself have one: glibc 2.36 has none for `strstr`
    ///   or `time`);
    /// - for the address `&name`: in a non-PIE, the PLT entry (the canonical address when
    ///   the program took `&name`, as for plain library functions; it also fits the
    ///   absolute 32-bit forms non-PIE code uses); else the executable's `GLOB_DAT` slot,
    ///   copied at apply time (what the program's own `&name` loads: ld.so stores the
    ///   implementation there); else the copied `IRELATIVE` slot; else, in a PIE that only
    ///   ever called `name`, its PLT entry: a working pointer to the function, though not
    ///   equal to the address libc itself would hand out (the program took none of its own
    ///   to compare with).
    ///
    /// Refused when the executable has neither slot nor PLT entry and the library has no
    /// `IRELATIVE` slot: running the resolver is the only other way, and never done.
    fn library_ifunc(
        &mut self,
        name: &str,
        lib: usize,
        irelative: Option<RuntimeAddr>,
        call: bool,
    ) -> Result<SymValue, Failure> {
        let exe = &self.model.exe;
        let plt = self.index.exe_plt(name).map(|v| exe.runtime(v));
        if call {
            if let Some(slot) = self.exe_call_slot(name) {
                return self.stub_through(name, slot).map(|s| SymValue::Addr(s.0));
            }
            if let Some(src) = irelative {
                return self
                    .call_stub(name, SlotContent::CopyFrom(src))
                    .map(|s| SymValue::Addr(s.0));
            }
            if let Some(plt) = plt {
                return Ok(SymValue::Addr(plt.0));
            }
            return Err(no_irelative(name, &self.model.libs[lib].path));
        }
        if let (false, Some(plt)) = (exe.image.position_independent, plt) {
            return Ok(SymValue::Addr(plt.0));
        }
        if let Some(v) = self.index.exe_got_slot(name, &[GotSlotKind::GlobDat]) {
            return Ok(SymValue::CopyInto(exe.runtime(v)));
        }
        match (plt, irelative) {
            (_, Some(src)) => Ok(SymValue::CopyInto(src)),
            (Some(plt), None) => Ok(SymValue::Addr(plt.0)),
            (None, None) => Err(no_irelative(name, &self.model.libs[lib].path)),
        }
    }

    /// A stub `jmp *slot(%rip)` in the code arena for calling a library function: through
    /// the executable's own `JUMP_SLOT`/`GLOB_DAT` slot if it has one, else through an arena
    /// slot holding `content`. Allocated once per slot.
    fn call_stub(&mut self, name: &str, content: SlotContent) -> Result<RuntimeAddr, Failure> {
        let slot = match self.exe_call_slot(name) {
            Some(slot) => slot,
            None => self.arena_slot(content, name)?,
        };
        self.stub_through(name, slot)
    }

    /// The executable's own slot a call of the library function `name` may jump through:
    /// its `JUMP_SLOT` (lazy or not, the PLT path ends in the function), or the `GLOB_DAT`
    /// slot of `.plt.got` / `-fno-plt` calls.
    fn exe_call_slot(&self, name: &str) -> Option<RuntimeAddr> {
        self.index
            .exe_got_slot(name, &[GotSlotKind::JumpSlot, GotSlotKind::GlobDat])
            .map(|v| self.model.exe.runtime(v))
    }

    /// The `jmp *slot(%rip)` stub for `slot`, allocated once per slot.
    fn stub_through(&mut self, name: &str, slot: RuntimeAddr) -> Result<RuntimeAddr, Failure> {
        if let Some(stub) = self.alloc.plt_stub(slot) {
            return Ok(stub);
        }
        let aarch64 = self.info.obj.machine == hot_object::Machine::Aarch64;
        // aarch64: ld's PLT entry `adrp x16; ldr x17; add x16; br x17` (16 bytes).
        let size = if aarch64 {
            crate::aarch64::STUB_LEN
        } else {
            CALL_STUB_SIZE
        };
        let stub = self.alloc.alloc(ArenaKind::Code, size, size).map_err(|_| {
            (
                LinkErrorCode::ArenaExhausted,
                "the code arena is full".to_string(),
            )
        })?;
        let bytes = if aarch64 {
            crate::aarch64::call_stub(stub.0, slot.0)
        } else {
            x86_64::jmp_indirect(stub.0, slot.0, CALL_STUB_SIZE as usize)
        };
        let bytes = bytes.ok_or_else(|| {
            let reach = if aarch64 { "ADRP (±4 GiB)" } else { "rel32" };
            (
                LinkErrorCode::RelocationOverflow,
                format!(
                    "the GOT slot {slot} for `{name}` is out of {reach} reach of the code arena"
                ),
            )
        })?;
        self.patch.writes.push(PatchWrite {
            addr: stub,
            bytes,
            what: format!("call stub for {name}"),
        });
        self.alloc.add_plt_stub(slot, stub);
        Ok(stub)
    }

    /// The name of `reloc`'s symbol when it is an undefined weak symbol that nothing in the
    /// running program defines (nor a file of this save): its address is 0.
    fn undefined_weak(&self, reloc: &Reloc) -> Option<String> {
        if self.info.obj.symbol(reloc.symbol).binding != Binding::Weak {
            return None;
        }
        let name = self.info.symbol_name(reloc.symbol);
        let external = lookup_external(self.model, self.index, &self.alloc, &name, true);
        (external == External::WeakZero).then_some(name)
    }

    /// Where a rel32 `call`, `jmp` or `jcc` at `p` to the undefined weak `name` goes: where
    /// the program's own link sent such a branch, so that a guard (`if (name)`, which reads
    /// the GOT slot `got_slot_for` gives: the image's own, or one holding 0) and the call
    /// agree with the running program.
    ///
    /// - The image's PLT entry for `name` (ld's `call name@plt` in a PIE, or whenever the
    ///   program reached it through the GOT): it jumps through the slot ld.so filled, and a
    ///   lazy one binds, when first called, to a library loaded later with `RTLD_GLOBAL`
    ///   that defines the name — exactly as the program's own calls do.
    /// - Else a stub through the image's own `JUMP_SLOT`/`GLOB_DAT` slot for it.
    /// - Else address 0, as ld's `call 0`: directly when it is in rel32 reach, else through a
    ///   stub `jmp *slot(%rip)` whose arena slot holds 0 (the far call stub library
    ///   functions use). A call that is reached faults at address 0, as the original does.
    fn branch_to_undefined_weak(
        &mut self,
        name: &str,
        reloc: &Reloc,
        p: i128,
    ) -> Result<RuntimeAddr, Failure> {
        let reaches =
            |target: u64| i32::try_from(target as i128 + reloc.addend as i128 - p).is_ok();
        let exe = &self.model.exe;
        if let Some(plt) = self.index.exe_plt(name).map(|v| exe.runtime(v)) {
            if reaches(plt.0) {
                return Ok(plt);
            }
        }
        if let Some(slot) = self.exe_call_slot(name) {
            return self.stub_through(name, slot);
        }
        if reaches(0) {
            return Ok(RuntimeAddr(0));
        }
        self.call_stub(name, SlotContent::Value(0))
    }

    /// An 8-byte slot in the data arena holding `content`, allocated once per content.
    fn arena_slot(&mut self, content: SlotContent, what: &str) -> Result<RuntimeAddr, Failure> {
        if let Some(slot) = self.alloc.got_slot(content) {
            return Ok(slot);
        }
        let slot = self.alloc.alloc(ArenaKind::Data, 8, 8).map_err(|_| {
            (
                LinkErrorCode::ArenaExhausted,
                "the data arena is full".to_string(),
            )
        })?;
        match content {
            SlotContent::Value(v) => self.patch.writes.push(PatchWrite {
                addr: slot,
                bytes: v.to_le_bytes().to_vec(),
                what: format!("GOT slot for {what}"),
            }),
            SlotContent::CopyFrom(src) => self.patch.slot_copies.push(SlotCopy {
                dst: slot,
                src,
                what: format!("GOT slot for IFUNC {what}"),
            }),
        }
        self.alloc.add_got_slot(content, slot);
        Ok(slot)
    }

    /// The GOT slot a GOT-relative relocation refers to.
    pub(crate) fn got_slot_for(
        &mut self,
        class: TargetClass,
        reloc: &Reloc,
    ) -> Result<RuntimeAddr, Failure> {
        if class == TargetClass::External {
            let name = self.info.symbol_name(reloc.symbol);
            // The executable's own slot holds the resolved address (a lazy JUMP_SLOT does
            // not, so it is never used for a GOT load).
            if let Some(v) = self.index.exe_got_slot(&name, &[GotSlotKind::GlobDat]) {
                return Ok(self.model.exe.runtime(v));
            }
            // Anything else (a library IFUNC too) holds the value `&name` has for a plain
            // pointer, so a GOT load and a pointer in data compare equal.
        }
        let name = self.info.symbol_name(reloc.symbol);
        match self.symbol_value(class, reloc, false)? {
            SymValue::Addr(s) => self.arena_slot(SlotContent::Value(s), &name),
            SymValue::CopyInto(src) => self.arena_slot(SlotContent::CopyFrom(src), &name),
        }
    }

    /// The code atoms placed in the arena, in placement order, for [`Patch::bodies`].
    fn list_bodies(&mut self) {
        for &atom in &self.place_order {
            let a = self.info.obj.atom(atom);
            if a.kind != hot_object::AtomKind::Text {
                continue;
            }
            if let Some(&addr) = self.placed.get(&atom) {
                self.patch.bodies.push(crate::PlacedBody {
                    name: self.info.atom_name(atom),
                    addr,
                    size: a.size,
                    lines: self.info.obj.lines_of(atom).to_vec(),
                });
            }
        }
    }

    /// The object's constructors whose functions this link placed, in startup order.
    fn list_constructors(&mut self) {
        let obj = self.info.obj;
        for c in &obj.constructors {
            let hot_object::SymbolDef::Atom { atom, offset } = obj.symbol(c.symbol).def else {
                continue;
            };
            let Some(&base) = self.placed.get(&atom) else {
                continue;
            };
            let at = offset.0.wrapping_add(c.addend as u64);
            let function = obj
                .atom(atom)
                .symbols
                .iter()
                .map(|&s| obj.symbol(s))
                .find(|s| {
                    s.kind == hot_object::SymbolKind::Function
                        && matches!(s.def, hot_object::SymbolDef::Atom { offset, .. } if offset.0 == at)
                })
                .map_or_else(|| self.info.atom_name(atom), |s| s.name.to_string());
            self.patch.constructors.push(crate::ConstructorCall {
                unit: self.unit.source.clone(),
                function,
                addr: base.offset(at),
            });
        }
    }

    /// Phase 6: the entry jumps.
    fn redirect_entries(&mut self) {
        if self.placement.is_some_and(|p| !p.redirect_entries) {
            for atom in self.place_order.clone() {
                if let Some(name) = self.info.function_name(atom) {
                    self.patch.swapped.push(name.to_string());
                }
            }
            return;
        }
        let mut seen: HashMap<RuntimeAddr, String> = HashMap::default();
        for atom in self.place_order.clone() {
            let Some(name) = self.info.function_name(atom).map(str::to_string) else {
                continue;
            };
            if self.overridden.contains(&atom) {
                // Copied only because another body reaches into it, or an edited default
                // the override remembers: its entry is the override's, which stays as it is.
                if let (Some(&entry_addr), Some(&start)) =
                    (self.redefaults.get(&atom), self.placed.get(&atom))
                {
                    self.remember_default_body(atom, entry_addr, start);
                }
                continue;
            }
            let Some(&start) = self.placed.get(&atom) else {
                continue;
            };
            // The new body's entry: past any `-fpatchable-function-entry` nops.
            let body = match self.info.role(atom) {
                AtomRole::Function { offset, .. } => start.offset(*offset),
                _ => start,
            };
            let Some(&entry) = self.entries.get(&atom) else {
                continue;
            };
            let entry_addr = match entry {
                StableEntry::Image(r) => self.model.exe.runtime(Vaddr(r.get(self.model).vaddr)),
                StableEntry::Stub(s) => s,
            };
            if let StableEntry::Image(r) = entry {
                // An entry the image shares with other functions (identical code folding)
                // may only move if every one of them is this same function now.
                let vaddr = Vaddr(r.get(self.model).vaddr);
                let others: Vec<String> = self
                    .index
                    .other_functions_at(self.model, vaddr, &name)
                    .into_iter()
                    .filter(|other| !self.info.is_alias_in(atom, other))
                    .collect();
                if !others.is_empty() {
                    self.error(
                        LinkErrorCode::LayoutChanged,
                        format!(
                            "`{name}` shares its entry {entry_addr} with {} in the running program \
                             (identical code folding), so redirecting it would change them too; \
                             restart, and build with -fno-ipa-icf for hot reloading",
                            others.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
                        ),
                        Some(name.clone()),
                        Some((atom, AtomOffset(0))),
                    );
                    continue;
                }
            }
            if let Some(other) = seen.insert(entry_addr, name.clone()) {
                self.error(
                    LinkErrorCode::LayoutChanged,
                    format!(
                        "`{name}` and `{other}` share the entry {entry_addr} in the running \
                         program (identical code folding); it cannot be redirected to two bodies"
                    ),
                    Some(name.clone()),
                    Some((atom, AtomOffset(0))),
                );
                continue;
            }
            let plan = match entry {
                StableEntry::Image(r) => entry::plan_image_entry(
                    self.model,
                    self.index,
                    self.landings,
                    &mut self.alloc,
                    r.get(self.model),
                    body,
                    &name,
                )
                .map(Some),
                StableEntry::Stub(stub) if self.new_stubs.contains(&atom) => {
                    // A new function: its stub is unreachable until this patch's bodies run,
                    // so it is written with the arena contents.
                    match self.new_stub_bytes(atom, stub, body) {
                        Some((jump_at, bytes, padded)) => {
                            self.patch.writes.push(PatchWrite {
                                addr: stub,
                                bytes: padded,
                                what: format!("entry stub of {name}"),
                            });
                            self.alloc.add_redirect(
                                stub,
                                Redirect {
                                    jump_at,
                                    current: bytes,
                                    original: Vec::new(),
                                    short: None,
                                },
                            );
                            self.alloc.set_entry_owner(stub, self.entry_owner(atom));
                            self.patch.added.push(name.clone());
                            Ok(None)
                        }
                        None => Err((
                            LinkErrorCode::RelocationOverflow,
                            format!(
                                "the body of `{name}` at {body} is out of reach of its stub {stub}"
                            ),
                        )),
                    }
                }
                StableEntry::Stub(stub) => entry::plan_stub(&self.alloc, stub, body, &name),
            };
            match plan {
                Ok(Some(plan)) => {
                    let mut owner = self.entry_owner(atom);
                    if !owner.weak {
                        let image_sym = match entry {
                            StableEntry::Image(r) => Some(r.get(self.model)),
                            StableEntry::Stub(_) => None,
                        };
                        owner.displaced = self.displaced_default(image_sym, entry_addr);
                    }
                    let line = self.atom_line(atom);
                    self.take_entry_plan(name, entry_addr, plan, owner, line);
                }
                Ok(None) => {}
                Err((code, message)) => {
                    self.error(code, message, Some(name), Some((atom, AtomOffset(0))))
                }
            }
        }
    }

    /// The override at `entry_addr` remembers `atom`, this unit's edited weak default just
    /// placed at `start`, as the default it displaced: deleting the override runs it.
    fn remember_default_body(&mut self, atom: AtomId, entry_addr: RuntimeAddr, start: RuntimeAddr) {
        let Some(mut owner) = self.alloc.entry_owner(entry_addr).cloned() else {
            return;
        };
        let body = match self.info.role(atom) {
            AtomRole::Function { offset, .. } => start.offset(*offset),
            _ => start,
        };
        owner.displaced = Some(Box::new(Displaced {
            owner: Some(self.entry_owner(atom)),
            body: Some(body),
        }));
        self.alloc.set_entry_owner(entry_addr, owner);
    }

    /// The weak default a strong definition of this unit takes the entry `entry_addr` (of
    /// `image_sym` in the image, or a stub an earlier save made) from, for when a later save
    /// deletes it again: the weak definition an earlier save (or a fallback) gave the entry,
    /// or the image's own weak definition of another file, untouched since launch; when this
    /// unit's definition ran there already (a save of an override the save before added),
    /// the one it displaced then.
    fn displaced_default(
        &self,
        image_sym: Option<&hot_object::ImageSymbol>,
        entry_addr: RuntimeAddr,
    ) -> Option<Box<Displaced>> {
        match self.alloc.entry_owner(entry_addr) {
            // This unit's own weak definition made strong: deleting it leaves no default.
            Some(previous) if previous.weak && !previous.is_of(self.unit) => {
                // The body it jumps to now; without a readable jump (aarch64) nothing is
                // remembered, and a deletion is refused as before.
                let body = match self.alloc.redirect(entry_addr) {
                    Some(redirect) => Some(redirect.target()?),
                    None => None,
                };
                Some(Box::new(Displaced {
                    owner: Some(EntryOwner {
                        displaced: None,
                        ..previous.clone()
                    }),
                    body,
                }))
            }
            Some(previous) => previous
                .displaced
                .clone()
                .filter(|_| previous.is_of(self.unit)),
            None => {
                let image_sym = image_sym?;
                let others_weak = image_sym.binding == Binding::Weak
                    && crate::resolve::unit_defines_symbol(self.model, self.unit, image_sym)
                        == Some(false);
                // Without an owner the entry was never redirected (or undo took it back).
                (others_weak && self.alloc.redirect(entry_addr).is_none()).then(|| {
                    Box::new(Displaced {
                        owner: None,
                        body: None,
                    })
                })
            }
        }
    }

    /// Give `name`'s entry `entry_addr` the image's code at it back (the weak default ld
    /// put there), undoing the jump of the strong definition this save deletes.
    fn restore_image_entry(&mut self, name: &str, entry_addr: RuntimeAddr) {
        let Some(redirect) = self.alloc.redirect(entry_addr).cloned() else {
            return;
        };
        let writes = crate::layout::restore_writes(&redirect, name);
        self.patch.protected.extend(
            writes
                .iter()
                .map(|w| w.addr..w.addr.offset(w.bytes.len() as u64)),
        );
        self.patch.entries.extend(writes);
        self.alloc.restore(entry_addr, redirect);
        self.patch
            .redirected_names
            .push((entry_addr, name.to_string()));
        self.patch.swapped.push(name.to_string());
    }

    /// Make `plan` (the jump that redirects `name`'s entry `entry_addr`) part of the patch,
    /// the entry then running `owner`'s definition; `line` is where a note about it goes.
    fn take_entry_plan(
        &mut self,
        name: String,
        entry_addr: RuntimeAddr,
        plan: entry::EntryPlan,
        owner: EntryOwner,
        line: Option<SourceLine>,
    ) {
        self.patch.writes.extend(plan.arena);
        if let Some((message, at)) = plan.note {
            self.patch.entries_over_statements.push((name.clone(), at));
            self.patch.notes.push(LinkNote {
                code: "entry-covers-statement",
                message,
                symbol: Some(name.clone()),
                line,
                severity: NoteSeverity::Information,
                unit: self.unit.source.clone(),
            });
        }
        self.patch.entries.extend(plan.writes);
        self.patch.protected.extend(plan.protected);
        if let Some(fill) = plan.claimed_fill {
            self.alloc.claim_fill(fill);
        }
        self.alloc.add_redirect(entry_addr, plan.redirect);
        self.alloc.set_entry_owner(entry_addr, owner);
        self.patch.redirected_names.push((entry_addr, name.clone()));
        self.patch.swapped.push(name);
    }

    /// Strong functions of the baseline that the object no longer defines (or defines as a
    /// `static` only), whose entry ran this file's definition, while another file's weak
    /// default of the name is still in the image (ld kept its body and dropped its symbol,
    /// [`hot_object::CompileUnit::unnamed_functions`]; of several, the first in link order):
    /// after a relink that default is the definition in use, so the entry is redirected to
    /// its body, not left running the deleted code (and calls to the name are no undefined
    /// references: [`crate::Linker::abi_changes`] leaves the names redirected here alone).
    /// With no such default, a library's definition of the name is the fallback
    /// ([`Link::fall_back_to_a_library`]).
    fn fall_back_to_weak_defaults(&mut self) {
        if self.placement.is_some_and(|p| !p.redirect_entries) {
            return;
        }
        let (Some(baseline), Some(ours)) = (self.baseline, self.unit.compile_unit) else {
            return;
        };
        // Most programs override no weak default: then nothing here looks at the objects.
        // (A library's definition counts too, for the executable's functions: see
        // `fall_back_to_a_library`.)
        let units = &self.model.exe.image.compile_units;
        let libraries = self.model.home == crate::Home::Executable && !self.model.libs.is_empty();
        if !libraries
            && !self.alloc.displaces_any()
            && !units
                .iter()
                .enumerate()
                .any(|(i, cu)| i != ours && !cu.unnamed_functions.is_empty())
        {
            return;
        }
        let obj = self.info.obj;
        // The common save adds, removes and makes `static` no function: nothing is gone.
        if self.same_functions {
            return;
        }
        let defines = |o: &'a hot_object::Object| {
            o.symbols.iter().filter(|s| {
                matches!(s.kind, hot_object::SymbolKind::Function)
                    && matches!(s.def, hot_object::SymbolDef::Atom { .. })
            })
        };
        // A `static` of the name is no definition of it: one the edit made `static` is gone
        // for the file's callers elsewhere, which a relink binds to the weak default.
        let now: HashSet<&str> = defines(obj)
            .filter(|s| matches!(s.binding, Binding::Global | Binding::Weak))
            .map(|s| s.name.as_str())
            .collect();
        let mut seen: HashSet<&str> = HashSet::default();
        let gone = defines(baseline)
            .filter(|s| s.binding == Binding::Global)
            .map(|s| s.name.as_str())
            .filter(|name| !now.contains(name) && seen.insert(name));
        let mut unnamed_code: Option<Option<u64>> = None;
        for name in gone.collect::<Vec<_>>() {
            // The image's entry, or the stub of a function an earlier save added (a weak
            // default a save of its file added, taken over by this file's strong one).
            let (entry_addr, image_sym) =
                match crate::resolve::exe_definition(self.model, self.index, Some(self.unit), name)
                {
                    Some(r) => {
                        let image_sym = r.get(self.model);
                        if image_sym.kind != hot_object::SymbolKind::Function {
                            continue;
                        }
                        (
                            self.model.exe.runtime(Vaddr(image_sym.vaddr)),
                            Some(image_sym),
                        )
                    }
                    None => {
                        let key = crate::layout::SymKey {
                            unit: None,
                            name: name.to_string(),
                        };
                        match self.alloc.defined_new_function(&key) {
                            Some(stub) => (stub, None),
                            None => continue,
                        }
                    }
                };
            // The entry must run this file's (strong) definition: one a save of it swapped
            // in, or the image's own in its code.
            let (ours_runs, displaced) = match (self.alloc.entry_owner(entry_addr), image_sym) {
                (Some(owner), _) => (
                    owner.is_of(self.unit) && !owner.weak,
                    owner.displaced.clone(),
                ),
                (None, Some(image_sym)) => (
                    crate::resolve::unit_defines_symbol(self.model, self.unit, image_sym)
                        == Some(true),
                    None,
                ),
                (None, None) => (false, None),
            };
            if !ours_runs {
                continue;
            }
            let line = crate::abi::function_line(baseline, name);
            // An earlier save put this definition over a weak default: that one runs again.
            match displaced.map(|d| *d) {
                Some(Displaced { body: None, .. }) => {
                    self.restore_image_entry(name, entry_addr);
                    continue;
                }
                Some(Displaced {
                    owner: Some(owner),
                    body: Some(body),
                }) => {
                    let plan = match image_sym {
                        Some(sym) => entry::plan_image_entry(
                            self.model,
                            self.index,
                            self.landings,
                            &mut self.alloc,
                            sym,
                            body,
                            name,
                        )
                        .map(Some),
                        None => entry::plan_stub(&self.alloc, entry_addr, body, name),
                    };
                    match plan {
                        Ok(Some(plan)) => {
                            self.take_entry_plan(name.to_string(), entry_addr, plan, owner, line)
                        }
                        Ok(None) => {}
                        Err((code, message)) => {
                            self.error(code, message, Some(name.to_string()), None)
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let Some(image_sym) = image_sym else {
                continue;
            };
            // Of several weak defaults a relink keeps the first in link order, the order of
            // the compile units in `.debug_info` (ld concatenates it in link order).
            let default = units
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != ours)
                .find_map(|(i, cu)| {
                    let (_, vaddr) = cu.unnamed_functions.iter().find(|(n, _)| n == name)?;
                    Some((i, cu, *vaddr))
                });
            // A file built without -g has no compile unit: a weak default of the name in it
            // (first in link order, or the only one, a relink's choice over a library's)
            // is code under no symbol that no unit's DWARF tells apart. Before the entry is
            // redirected to another definition, no such code may be there.
            let redirects =
                default.is_some() || self.index.startup_lib_lookup(self.model, name).is_some();
            let outside = match redirects {
                true => *unnamed_code.get_or_insert_with(|| code_outside_units(self.model)),
                false => None,
            };
            if let Some(at) = outside {
                self.error(
                    LinkErrorCode::UndefinedSymbol,
                    format!(
                        "`{name}` was removed from {}: a relink would use another definition \
                         of it, but the executable has code under no symbol and outside every \
                         file built with -g (at {:#x}, a weak default of a file built without \
                         -g, say), which could be the one a relink picks: nothing was swapped \
                         — keep the function, or build every file with -g, or restart the \
                         program",
                        crate::abi::short_file(&self.unit.source),
                        self.model.exe.runtime(Vaddr(at)).0,
                    ),
                    Some(name.to_string()),
                    None,
                );
                continue;
            }
            let Some((unit, cu, vaddr)) = default else {
                self.fall_back_to_a_library(name, entry_addr, image_sym, line);
                continue;
            };
            let owner = EntryOwner {
                source: cu.name.clone(),
                weak: true,
                compile_unit: Some(unit),
                displaced: None,
            };
            let body = self.model.exe.runtime(Vaddr(vaddr));
            match entry::plan_image_entry(
                self.model,
                self.index,
                self.landings,
                &mut self.alloc,
                image_sym,
                body,
                name,
            ) {
                Ok(plan) => {
                    self.take_entry_plan(name.to_string(), entry_addr, plan, owner, line);
                }
                Err((code, message)) => self.error(code, message, Some(name.to_string()), None),
            }
        }
    }
}

impl Link<'_> {
    /// [`Link::fall_back_to_weak_defaults`] for a function `name` of the executable (its
    /// image symbol `image_sym`, entry `entry_addr`) whose strong definition this save
    /// deletes, when no file of the executable has a default of it but a library the
    /// executable links against defines it (a weak default there, say; never a library
    /// loaded with `dlopen`: [`ImageIndex::startup_lib_lookup`]): the executable's definition
    /// interposed it, and after a relink the executable's calls go to it through the PLT.
    /// The entry then jumps there, through a call stub (the library is out of `jmp rel32`
    /// reach), owned by the library.
    fn fall_back_to_a_library(
        &mut self,
        name: &str,
        entry_addr: RuntimeAddr,
        image_sym: &hot_object::ImageSymbol,
        line: Option<SourceLine>,
    ) {
        if self.model.home != crate::Home::Executable {
            return;
        }
        // Only a library the executable links against: one the program loaded with
        // `dlopen` is no definition a relink would find (its link fails: an undefined
        // reference), and the entry must not jump into code a `dlclose` may unmap.
        // `Linker::abi_changes` then refuses the save.
        let Some(r) = self.index.startup_lib_lookup(self.model, name) else {
            return;
        };
        let External::LibFunction { lib, addr } =
            crate::resolve::other_module(self.model, self.index, r)
        else {
            return;
        };
        let owner = EntryOwner {
            source: self.model.libs[lib].path.clone(),
            weak: true,
            compile_unit: None,
            displaced: None,
        };
        let planned = self
            .call_stub(name, SlotContent::Value(addr.0))
            .and_then(|stub| {
                entry::plan_image_entry(
                    self.model,
                    self.index,
                    self.landings,
                    &mut self.alloc,
                    image_sym,
                    stub,
                    name,
                )
            });
        match planned {
            Ok(plan) => self.take_entry_plan(name.to_string(), entry_addr, plan, owner, line),
            Err((code, message)) => self.error(code, message, Some(name.to_string()), None),
        }
    }

    /// The stub of a new function: where its jump lives, the jump, and the whole stub.
    /// x86-64: `jmp rel32` padded with `int3`. aarch64: `b body`, behind a `bti c` when the
    /// body starts with a landing pad (function pointers to the new function are the stub,
    /// and in a `PROT_BTI` process an indirect call must land on one).
    fn new_stub_bytes(
        &self,
        atom: AtomId,
        stub: RuntimeAddr,
        body: RuntimeAddr,
    ) -> Option<(RuntimeAddr, Vec<u8>, Vec<u8>)> {
        let entry_offset = match self.info.role(atom) {
            AtomRole::Function { offset, .. } => *offset as usize,
            _ => 0,
        };
        let bytes = &self.info.obj.atom(atom).bytes;
        stub_jump(
            self.info.obj.machine,
            bytes.get(entry_offset..).unwrap_or(&[]),
            stub,
            body,
        )
    }

    /// Who an entry redirected to `atom`'s new body belongs to: this unit, weak or not.
    fn entry_owner(&self, atom: AtomId) -> EntryOwner {
        let weak = match self.info.role(atom) {
            AtomRole::Function { sym, .. } => self.info.obj.symbol(*sym).binding == Binding::Weak,
            _ => false,
        };
        EntryOwner {
            source: self.unit.source.clone(),
            weak,
            compile_unit: self.unit.compile_unit,
            displaced: None,
        }
    }
}

/// A new function's stub at `stub` for the body at `body`, whose code from its entry on is
/// `entry_bytes`: where its jump lives, the jump, and the whole stub. x86-64: `jmp rel32`
/// padded with `int3`. aarch64: `b body`, behind a `bti c` when the body starts with a
/// landing pad (function pointers to the new function are the stub, and in a `PROT_BTI`
/// process an indirect call must land on one). `None` when the body is out of reach.
pub(crate) fn stub_jump(
    machine: hot_object::Machine,
    entry_bytes: &[u8],
    stub: RuntimeAddr,
    body: RuntimeAddr,
) -> Option<(RuntimeAddr, Vec<u8>, Vec<u8>)> {
    if machine == hot_object::Machine::Aarch64 {
        let first = crate::aarch64::read(entry_bytes, 0);
        let bti = first.is_ok_and(crate::aarch64::is_call_landing_pad);
        let padded = crate::aarch64::stub_bytes(stub.0, body.0, bti)?;
        let at = if bti { 4 } else { 0 };
        return Some((
            stub.offset(at),
            padded[at as usize..at as usize + 4].to_vec(),
            padded,
        ));
    }
    let bytes = x86_64::jmp_rel32(stub.0, body.0)?;
    let mut padded = bytes.clone();
    padded.resize(STUB_SIZE as usize, 0xcc);
    Some((stub, bytes, padded))
}

/// The value of a symbol for a non-GOT relocation.
pub(crate) enum SymValue {
    Addr(u64),
    /// Only the target knows it: copy 8 bytes from this address (an IFUNC's implementation).
    CopyInto(RuntimeAddr),
}

/// The first address of `.text` that holds code (not alignment padding) under no function
/// symbol and in no compile unit's ranges, if any: the body of a weak default a strong
/// definition overrode (ld drops its symbol, keeps its bytes) in a file built without -g.
fn code_outside_units(model: &ImageModel) -> Option<u64> {
    let image = &model.exe.image;
    let text = image
        .sections
        .iter()
        .find(|s| s.name == ".text" && s.executable)?;
    let end = text.vaddr + text.bytes.len() as u64;
    let in_text = |s: &&hot_object::ImageSymbol| {
        s.defined && s.vaddr >= text.vaddr && s.vaddr < end && !s.name.is_empty()
    };
    let mut starts: Vec<u64> = image
        .symbols
        .iter()
        .filter(in_text)
        .map(|s| s.vaddr)
        .collect();
    starts.sort_unstable();
    // An assembly function without `.size` (crtstuff's `frame_dummy`, say) covers the
    // instructions from its start to the last of its exits, and not past the next symbol.
    let sizeless = image
        .symbols
        .iter()
        .filter(in_text)
        .filter(|s| s.size == 0 && s.kind == hot_object::SymbolKind::Function)
        .map(|s| {
            let next = starts.iter().copied().find(|&b| b > s.vaddr).unwrap_or(end);
            let bytes = &text.bytes[(s.vaddr - text.vaddr) as usize..(next - text.vaddr) as usize];
            let len = match image.machine {
                hot_object::Machine::X86_64 => x86_extent(bytes, s.vaddr),
                // Not decoded: taken to reach the next symbol.
                _ => bytes.len() as u64,
            };
            (s.vaddr, s.vaddr + len)
        });
    let mut covered: Vec<(u64, u64)> = image
        .symbols
        .iter()
        .filter(in_text)
        .filter(|s| s.size > 0)
        .map(|s| (s.vaddr, s.vaddr + s.size))
        .chain(sizeless)
        .chain(
            image
                .compile_units
                .iter()
                .flat_map(|cu| cu.ranges.iter().copied()),
        )
        .filter(|&(begin, finish)| begin < finish)
        .collect();
    covered.sort_unstable();
    let mut at = text.vaddr;
    let gap = |from: u64, to: u64| -> Option<u64> {
        let bytes = text
            .bytes
            .get((from - text.vaddr) as usize..(to.min(end) - text.vaddr) as usize)?;
        let padding = match image.machine {
            hot_object::Machine::X86_64 => x86_padding(bytes),
            _ => bytes
                .chunks(4)
                .all(|w| w == [0x1f, 0x20, 0x03, 0xd5] || w.iter().all(|&b| b == 0)),
        };
        (!padding).then_some(from)
    };
    for (begin, finish) in covered {
        if begin > at {
            if let Some(found) = gap(at, begin) {
                return Some(found);
            }
        }
        at = at.max(finish);
    }
    match at < end {
        true => gap(at, end),
        false => None,
    }
}

/// The length of the x86-64 code at `ip` that a function without `.size` spans: up to the
/// first `ret`, `jmp`, `hlt` or `ud2` past every forward branch target seen before it.
fn x86_extent(bytes: &[u8], ip: u64) -> u64 {
    use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic};
    let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    let mut furthest = ip;
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            return insn.ip() - ip;
        }
        let flow = insn.flow_control();
        if matches!(
            flow,
            FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch
        ) && insn.near_branch_target() > furthest
        {
            furthest = insn.near_branch_target();
        }
        let exits = matches!(
            flow,
            FlowControl::Return | FlowControl::UnconditionalBranch | FlowControl::IndirectBranch
        ) || matches!(insn.mnemonic(), Mnemonic::Hlt | Mnemonic::Ud2);
        if exits && insn.next_ip() > furthest {
            return insn.next_ip() - ip;
        }
    }
    bytes.len() as u64
}

/// Whether `bytes` are all alignment padding: zeros, `int3`, `nop` and the multi-byte
/// `nop`s assemblers and ld fill with (`66 .. 2e 0f 1f /0`).
fn x86_padding(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if matches!(bytes[i], 0x00 | 0x90 | 0xcc) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && matches!(bytes[j], 0x66 | 0x2e) {
            j += 1;
        }
        if bytes.get(j) == Some(&0x90) {
            i = j + 1;
            continue;
        }
        if bytes.get(j) != Some(&0x0f) || bytes.get(j + 1) != Some(&0x1f) {
            return false;
        }
        let Some(&modrm) = bytes.get(j + 2) else {
            return false;
        };
        let (mode, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
        if reg != 0 || mode == 3 {
            return false;
        }
        let sib = usize::from(rm == 4);
        let disp = match mode {
            1 => 1,
            2 => 4,
            _ if rm == 5 => 4,
            _ => 0,
        };
        i = j + 3 + sib + disp;
    }
    true
}

/// Whether `reloc` in `atom` is a direct call or jump (x86-64 `call`/`jmp`/`jcc rel32`,
/// aarch64 `bl`/`b`): a use of a function that holds no pointer to it.
fn direct_branch(atom: &hot_object::Atom, reloc: &Reloc) -> bool {
    match reloc.kind {
        RelocKind::Call26 | RelocKind::Jump26 => true,
        RelocKind::Plt32 | RelocKind::Pc32 if atom.kind == AtomKind::Text => {
            let at = reloc.offset.0 as usize;
            let byte = |back: usize| {
                at.checked_sub(back)
                    .and_then(|i| atom.bytes.get(i).copied())
            };
            matches!(byte(1), Some(0xe8 | 0xe9))
                || (byte(2) == Some(0x0f) && matches!(byte(1), Some(0x80..=0x8f)))
        }
        _ => false,
    }
}

fn apply_failure(e: ApplyError) -> Failure {
    let code = match e {
        ApplyError::Overflow { .. } => LinkErrorCode::RelocationOverflow,
        _ => LinkErrorCode::UnsupportedRelocation,
    };
    (code, e.to_string())
}

/// Functions glibc (2.34 and later) keeps in `libc_nonshared.a` rather than exporting them
/// from `libc.so.6` (`ar t libc_nonshared.a`): a program gets its own copy only if it called
/// them when it was linked (then the executable defines them, LOCAL, and they resolve there).
const LIBC_NONSHARED: &[(&str, &str)] = &[
    ("atexit", "__cxa_atexit"),
    ("at_quick_exit", "__cxa_at_quick_exit"),
    ("pthread_atfork", "__register_atfork"),
];

/// The message for a symbol neither the executable nor any library defines.
/// Thread-locals of new code in a shared library: the dynamic linker places the library's
/// TLS block (its module id, offsets from `__tls_get_addr`) at run time, so no link-time
/// offset reaches it.
fn library_tls(path: &str) -> Failure {
    (
        LinkErrorCode::UnsupportedRelocation,
        format!(
            "new code in the shared library {path} refers to a thread-local variable; a patch \
             can reach only the executable's own thread-locals: restart the program"
        ),
    )
}

/// Why a reference at `p` (in the patch) to the undefined weak `name` is refused: a field
/// that holds its address (0) cannot encode 0 from there.
fn undefined_weak_out_of_reach(name: &str, p: u64) -> String {
    let name = hot_object::display_name(name);
    format!(
        "`{name}` is an undefined weak symbol (nothing in the running program defines it, so \
         its address is 0), and this reference cannot encode address 0 at {p:#x}, where the \
         patch places it: nothing was swapped — take its address through the GOT (as -fPIE or \
         -mno-direct-extern-access code does), or restart the program"
    )
}

fn undefined_message(name: &str) -> String {
    match LIBC_NONSHARED.iter().find(|(n, _)| *n == name) {
        Some((_, exported)) => format!(
            "undefined symbol `{name}`: glibc does not export it from libc.so.6 (it lives in \
             libc_nonshared.a, a wrapper of `{exported}` that is linked into an executable only \
             if the executable calls it), and the running program never called `{name}`; \
             restart the program to use it"
        ),
        None => format!("undefined symbol `{name}`"),
    }
}

fn no_irelative(name: &str, lib: &str) -> Failure {
    (
        LinkErrorCode::UnsupportedRelocation,
        format!(
            "`{name}` is an IFUNC of {lib}: the running program never calls it (no PLT entry or \
             GOT slot in the executable) and the library has no R_X86_64_IRELATIVE slot for \
             its resolver, so its implementation cannot be found without running the resolver; \
             restart the program to use it"
        ),
    )
}

/// Whether two objects define the same functions, by name and binding, in the same order
/// (as a save that changed only bodies leaves the symbol table): then no function was
/// deleted or made `static`, which one pass of string compares tells without the name sets
/// the weak-default checks would build over every function of a large file on every save.
fn same_function_names(a: &hot_object::Object, b: &hot_object::Object) -> bool {
    fn functions(o: &hot_object::Object) -> impl Iterator<Item = (&str, Binding)> + '_ {
        o.symbols
            .iter()
            .filter(|s| {
                s.kind == hot_object::SymbolKind::Function
                    && matches!(s.def, hot_object::SymbolDef::Atom { .. })
            })
            .map(|s| (s.name.as_str(), s.binding))
    }
    functions(a).eq(functions(b))
}
