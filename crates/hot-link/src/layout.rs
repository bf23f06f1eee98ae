//! Arena layout and the linker's persistent state: bump allocation with alignment in the code
//! and data arenas, stubs and GOT slots allocated once, stable entries of new functions,
//! addresses of new variables, the jump each redirected entry holds now and whose definition
//! it runs (a strong definition that took over a weak default's entry), and the bytes each
//! named read-only object holds after hot-lsp wrote it (so an in-place update knows what to
//! expect there, and undo what to put back).
//!
//! A link never mutates [`LinkState`]: it records everything it allocates in a
//! [`StateDelta`] carried by the [`crate::Patch`], and [`LinkState::apply`] adopts it at
//! commit. Lookups during a link consult the delta first, then the committed state.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use hot_object::AtomId;

use crate::image::ImageSymRef;
use crate::{Arenas, EntryWrite, Revert, RuntimeAddr};

/// The name of a function or variable across links: globals by name, statics by name within
/// their source file (two files may each have a `static int count`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SymKey {
    /// The source file for a local symbol, `None` for a global one.
    pub unit: Option<String>,
    pub name: String,
}

/// What a GOT slot holds. Slots are shared by content: two references to `stderr` use one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SlotContent {
    /// A value known at link time (an address, or a TLS offset).
    Value(u64),
    /// A value copied in the target at apply time from another slot (an IFUNC's
    /// implementation, read from the library's `IRELATIVE` slot).
    CopyFrom(RuntimeAddr),
}

/// A new variable allocated in the data arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NewVariable {
    pub addr: RuntimeAddr,
    pub size: u64,
}

/// The jump a redirected entry holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Redirect {
    /// Where the 5-byte `jmp rel32` lives: the entry itself, fill before the entry (reached
    /// by a 2-byte short jump at the entry), inside the old body (the same), a new function's
    /// stub, or a jump in the code arena reached by an int3-proof entry jump (`entry.rs`).
    pub jump_at: RuntimeAddr,
    /// The bytes at `jump_at` as the last committed patch wrote them.
    pub current: Vec<u8>,
    /// The bytes at `jump_at` before the first redirect (empty for a new function's stub,
    /// which never held anything else).
    pub original: Vec<u8>,
    /// For the two-jump forms: the entry, the first jump written there (a `jmp rel8`, or the
    /// int3-proof `jmp rel32` to the arena) and the entry's original bytes.
    pub short: Option<(RuntimeAddr, Vec<u8>, Vec<u8>)>,
}

impl Redirect {
    /// Where the `jmp rel32` at `jump_at` leads (x86-64): the body the entry runs. `None`
    /// when `current` holds no such jump (an undo put the original code back).
    pub(crate) fn target(&self) -> Option<RuntimeAddr> {
        match self.current.as_slice() {
            [0xe9, rel @ ..] if rel.len() == 4 => {
                let rel = i32::from_le_bytes(rel.try_into().ok()?);
                Some(RuntimeAddr(
                    self.jump_at
                        .0
                        .wrapping_add(5)
                        .wrapping_add(rel as i64 as u64),
                ))
            }
            _ => None,
        }
    }
}

/// Whose definition a redirected entry runs now: the source file of the body it jumps to and
/// whether that definition is weak. A strong definition added in main.c takes over the entry
/// of weak.c's weak default (as a relink would); a later save of weak.c must not take it back.
/// A weak default the image kept under no symbol, which an entry runs again once its
/// strong override was deleted, is owned by its compile unit (`compile_unit`): the linker
/// cannot spell its file as the session does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntryOwner {
    pub source: String,
    pub weak: bool,
    /// The image's compile unit of the definition, when known.
    pub compile_unit: Option<usize>,
    /// For a strong definition a save put over another file's weak default: that default,
    /// which the entry runs again when the strong definition is deleted (as after a relink).
    pub displaced: Option<Box<Displaced>>,
}

/// The weak default a strong definition took an entry from. The image had no strong
/// definition of the name then, so the default's code is still there to run again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Displaced {
    /// Whose definition it is; `None`: the image's own, which no save had touched (the
    /// entry then goes back to being as at launch, with no owner recorded).
    pub owner: Option<EntryOwner>,
    /// Its body; `None`: the image's code at the entry, under the jump a restore takes away.
    pub body: Option<RuntimeAddr>,
}

impl EntryOwner {
    /// Whether the definition the entry runs is `unit`'s.
    pub(crate) fn is_of(&self, unit: &crate::UnitRef) -> bool {
        self.source == unit.source
            || (self.compile_unit.is_some() && self.compile_unit == unit.compile_unit)
    }
}

/// The committed state of the linker.
#[derive(Clone, Debug)]
pub(crate) struct LinkState {
    code_cursor: u64,
    code_end: u64,
    data_cursor: u64,
    data_end: u64,
    new_functions: HashMap<SymKey, RuntimeAddr>,
    new_variables: HashMap<SymKey, NewVariable>,
    got_slots: HashMap<SlotContent, RuntimeAddr>,
    /// `jmp *slot(%rip)` stubs by the slot they jump through.
    plt_stubs: HashMap<RuntimeAddr, RuntimeAddr>,
    /// aarch64 veneers for `b`/`bl` out of imm26 reach, by their final target.
    veneers: HashMap<RuntimeAddr, RuntimeAddr>,
    /// By entry address (a function's stable entry).
    redirects: HashMap<RuntimeAddr, Redirect>,
    /// By entry address: whose definition the entry runs (set with each redirect).
    owners: HashMap<RuntimeAddr, EntryOwner>,
    /// Fill bytes of the image used by jumps (short-form padding, or bytes after a function
    /// shorter than the jump), so two entries never claim the same fill.
    claimed_fill: Vec<Range<u64>>,
    /// Function-local statics bound to the image, by unit and match name (`tick/calls`).
    bound_statics: HashMap<SymKey, ImageSymRef>,
    /// Named read-only objects hot-lsp wrote (added, or updated in place), by address: the
    /// bytes they hold now.
    read_only: HashMap<RuntimeAddr, Vec<u8>>,
    /// Stubs [`crate::Linker::link_units`] allocated for new global functions of a batch
    /// before linking its units (files that call each other's new functions): references
    /// bind to them, the defining unit writes them. Only in a batch's working copy.
    reserved_stubs: HashMap<String, RuntimeAddr>,
}

/// One write of a named read-only object by a patch.
#[derive(Clone, Debug)]
pub(crate) struct ReadOnlyWrite {
    pub addr: RuntimeAddr,
    /// What was there before (`None` for a new object: nothing could read it yet).
    pub before: Option<Vec<u8>>,
    pub after: Vec<u8>,
    /// The object's name, for messages.
    pub name: String,
}

/// What one link allocated and redirected; adopted by [`LinkState::apply`].
#[derive(Clone, Debug, Default)]
pub(crate) struct StateDelta {
    code_cursor: Option<u64>,
    data_cursor: Option<u64>,
    new_functions: HashMap<SymKey, RuntimeAddr>,
    new_variables: HashMap<SymKey, NewVariable>,
    got_slots: HashMap<SlotContent, RuntimeAddr>,
    plt_stubs: HashMap<RuntimeAddr, RuntimeAddr>,
    veneers: HashMap<RuntimeAddr, RuntimeAddr>,
    redirects: Vec<(RuntimeAddr, Redirect)>,
    owners: Vec<(RuntimeAddr, EntryOwner)>,
    /// Entries given back their original code (and with it no redirect and no owner: as at
    /// launch), each with the redirect they held, whose jump bytes the patch restores.
    restored: Vec<(RuntimeAddr, Redirect)>,
    claimed_fill: Vec<Range<u64>>,
    bound_statics: HashMap<SymKey, ImageSymRef>,
    read_only: Vec<ReadOnlyWrite>,
}

impl StateDelta {
    /// Each entry this delta redirects and the body it jumps to ([`Redirect::target`]).
    pub(crate) fn redirect_targets(&self) -> impl Iterator<Item = (RuntimeAddr, RuntimeAddr)> + '_ {
        self.redirects
            .iter()
            .filter_map(|(entry, r)| Some((*entry, r.target()?)))
    }

    /// The entries this delta redirects (stable entries of the image, or new functions' stubs)
    /// or gives back their original code.
    pub(crate) fn redirected(&self) -> impl Iterator<Item = RuntimeAddr> + '_ {
        self.redirects
            .iter()
            .chain(&self.restored)
            .map(|(entry, _)| *entry)
    }

    /// The entries this delta gives back their original code.
    pub(crate) fn restored(&self) -> impl Iterator<Item = RuntimeAddr> + '_ {
        self.restored.iter().map(|(entry, _)| *entry)
    }

    /// The entries this delta gives to a weak definition.
    pub(crate) fn weak_owned(&self) -> impl Iterator<Item = RuntimeAddr> + '_ {
        self.owners
            .iter()
            .filter(|(_, owner)| owner.weak)
            .map(|(entry, _)| *entry)
    }

    /// The named read-only objects this delta updates in place (not new ones).
    pub(crate) fn updated_in_place(&self) -> impl Iterator<Item = RuntimeAddr> + '_ {
        self.read_only
            .iter()
            .filter(|w| w.before.is_some())
            .map(|w| w.addr)
    }

    /// Forget the redirects of `entries` and the in-place updates of `objects` (an earlier
    /// unit of the same combined link made them already); returns the addresses of the
    /// dropped jumps (each redirect's `jump_at`, and the short jump's entry) so the patch can
    /// drop their writes too.
    pub(crate) fn drop_taken(
        &mut self,
        entries: &HashSet<RuntimeAddr>,
        objects: &HashSet<RuntimeAddr>,
    ) -> Vec<RuntimeAddr> {
        let mut jumps = Vec::new();
        let mut drop = |(entry, redirect): &(RuntimeAddr, Redirect)| {
            let keep = !entries.contains(entry);
            if !keep {
                jumps.push(redirect.jump_at);
                jumps.extend(redirect.short.as_ref().map(|(at, _, _)| *at));
            }
            keep
        };
        self.redirects.retain(&mut drop);
        self.restored.retain(&mut drop);
        self.owners.retain(|(entry, _)| !entries.contains(entry));
        self.read_only
            .retain(|w| w.before.is_none() || !objects.contains(&w.addr));
        jumps
    }

    /// Append the delta of a unit linked after this one, against the state this delta left:
    /// its cursors are further on, its maps only add names this one did not have.
    pub(crate) fn append(&mut self, later: StateDelta) {
        self.code_cursor = later.code_cursor.or(self.code_cursor);
        self.data_cursor = later.data_cursor.or(self.data_cursor);
        self.new_functions.extend(later.new_functions);
        self.new_variables.extend(later.new_variables);
        self.got_slots.extend(later.got_slots);
        self.plt_stubs.extend(later.plt_stubs);
        self.veneers.extend(later.veneers);
        self.redirects.extend(later.redirects);
        self.owners.extend(later.owners);
        self.restored.extend(later.restored);
        self.claimed_fill.extend(later.claimed_fill);
        self.bound_statics.extend(later.bound_statics);
        self.read_only.extend(later.read_only);
    }
}

/// The entry states and read-only contents one committed patch replaced, for revert.
#[derive(Clone, Debug)]
pub(crate) struct RevertRecord {
    /// (entry, state before the patch, state the patch set), in patch order.
    entries: Vec<(RuntimeAddr, Option<Redirect>, Redirect)>,
    /// (entry, owner before the patch), in patch order.
    owners: Vec<(RuntimeAddr, Option<EntryOwner>)>,
    /// (entry, redirect and owner before the patch) of the entries it gave back their
    /// original code.
    restored: Vec<(RuntimeAddr, Redirect, Option<EntryOwner>)>,
    /// In-place updates of read-only objects (those with `before`).
    read_only: Vec<ReadOnlyWrite>,
}

/// Test hook: force the address of atoms, as GNU ld placed them, and optionally leave
/// entries alone. Used by the differential tests; production links never pass one.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// Address of each atom (by id in the request's object) that the link places.
    pub atoms: HashMap<AtomId, RuntimeAddr>,
    /// Compute entry jumps (normally true). ld's output has the bodies at the entries, so the
    /// differential tests switch this off.
    pub redirect_entries: bool,
}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArenaKind {
    Code,
    Data,
}

fn align_up(value: u64, align: u64) -> u64 {
    let align = align.max(1);
    value.div_ceil(align) * align
}

impl LinkState {
    /// Each redirected entry and the body it jumps to now ([`Redirect::target`]).
    pub(crate) fn redirect_targets(&self) -> impl Iterator<Item = (RuntimeAddr, RuntimeAddr)> + '_ {
        self.redirects
            .iter()
            .filter_map(|(entry, r)| Some((*entry, r.target()?)))
    }

    /// Whether an earlier committed patch added the global function or variable `name`.
    pub(crate) fn has_new_global(&self, name: &str) -> bool {
        let key = SymKey {
            unit: None,
            name: name.to_string(),
        };
        self.new_functions.contains_key(&key) || self.new_variables.contains_key(&key)
    }

    /// Allocate a stub for each new global function of `names` (see `reserved_stubs`);
    /// returns the delta that holds the space (adopt it with the batch's patch), or the
    /// name whose stub did not fit.
    pub(crate) fn reserve_stubs(
        &mut self,
        names: &[String],
        size: u64,
    ) -> Result<StateDelta, String> {
        let mut alloc = Allocator::new(self);
        let mut stubs = Vec::with_capacity(names.len());
        for name in names {
            match alloc.alloc(ArenaKind::Code, size, size) {
                Ok(stub) => stubs.push((name.clone(), stub)),
                Err(_) => return Err(name.clone()),
            }
        }
        let delta = alloc.delta;
        self.apply(&delta);
        self.reserved_stubs.extend(stubs);
        Ok(delta)
    }

    /// The stubs [`LinkState::reserve_stubs`] reserved, by name.
    pub(crate) fn reserved(&self) -> impl Iterator<Item = (&str, RuntimeAddr)> + '_ {
        self.reserved_stubs
            .iter()
            .map(|(name, stub)| (name.as_str(), *stub))
    }

    pub(crate) fn new(arenas: &Arenas) -> LinkState {
        LinkState {
            code_cursor: arenas.code.start.0,
            code_end: arenas.code.end.0,
            data_cursor: arenas.data.start.0,
            data_end: arenas.data.end.0,
            new_functions: HashMap::new(),
            new_variables: HashMap::new(),
            got_slots: HashMap::new(),
            plt_stubs: HashMap::new(),
            veneers: HashMap::new(),
            redirects: HashMap::new(),
            owners: HashMap::new(),
            reserved_stubs: HashMap::new(),
            claimed_fill: Vec::new(),
            bound_statics: HashMap::new(),
            read_only: HashMap::new(),
        }
    }

    /// Adopt a committed patch's delta; returns what revert needs.
    pub(crate) fn apply(&mut self, delta: &StateDelta) -> RevertRecord {
        if let Some(c) = delta.code_cursor {
            self.code_cursor = c;
        }
        if let Some(c) = delta.data_cursor {
            self.data_cursor = c;
        }
        self.new_functions
            .extend(delta.new_functions.iter().map(|(k, v)| (k.clone(), *v)));
        self.new_variables
            .extend(delta.new_variables.iter().map(|(k, v)| (k.clone(), *v)));
        self.got_slots
            .extend(delta.got_slots.iter().map(|(k, v)| (*k, *v)));
        self.plt_stubs
            .extend(delta.plt_stubs.iter().map(|(k, v)| (*k, *v)));
        self.veneers
            .extend(delta.veneers.iter().map(|(k, v)| (*k, *v)));
        self.claimed_fill.extend(delta.claimed_fill.iter().cloned());
        self.bound_statics
            .extend(delta.bound_statics.iter().map(|(k, v)| (k.clone(), *v)));
        let mut entries = Vec::new();
        for (entry, redirect) in &delta.redirects {
            let previous = self.redirects.insert(*entry, redirect.clone());
            entries.push((*entry, previous, redirect.clone()));
        }
        let mut owners = Vec::new();
        for (entry, owner) in &delta.owners {
            owners.push((*entry, self.owners.insert(*entry, owner.clone())));
        }
        let mut restored = Vec::new();
        for (entry, redirect) in &delta.restored {
            let previous = self
                .redirects
                .remove(entry)
                .unwrap_or_else(|| redirect.clone());
            restored.push((*entry, previous, self.owners.remove(entry)));
        }
        let mut read_only = Vec::new();
        for write in &delta.read_only {
            self.read_only.insert(write.addr, write.after.clone());
            if write.before.is_some() {
                read_only.push(write.clone());
            }
        }
        RevertRecord {
            entries,
            owners,
            restored,
            read_only,
        }
    }

    /// Move the arena cursors past what `delta` allocated, adopting nothing else.
    pub(crate) fn retire(&mut self, delta: &StateDelta) {
        if let Some(c) = delta.code_cursor {
            self.code_cursor = self.code_cursor.max(c);
        }
        if let Some(c) = delta.data_cursor {
            self.data_cursor = self.data_cursor.max(c);
        }
    }

    /// Point the entries of a reverted patch back where they were; returns the writes that
    /// do the same in the process, in the order to apply them.
    pub(crate) fn revert(&mut self, record: RevertRecord) -> Revert {
        let writes = revert_writes(&record);
        for write in record.read_only.iter().rev() {
            if let Some(before) = &write.before {
                self.read_only.insert(write.addr, before.clone());
            }
        }
        // Applied last, reverted first.
        for (entry, redirect, owner) in record.restored.into_iter().rev() {
            self.redirects.insert(entry, redirect);
            if let Some(owner) = owner {
                self.owners.insert(entry, owner);
            }
        }
        for (entry, previous) in record.owners.into_iter().rev() {
            match previous {
                Some(owner) => {
                    self.owners.insert(entry, owner);
                }
                None => {
                    self.owners.remove(&entry);
                }
            }
        }
        for (entry, previous, set) in record.entries.into_iter().rev() {
            match previous {
                Some(prev) => {
                    self.redirects.insert(entry, prev);
                }
                None if set.original.is_empty() && set.short.is_none() => {
                    // A new function's stub: undo writes nothing there (its callers no
                    // longer reach it), so it still jumps to the undone body, and a later
                    // link of the function must redirect it from those bytes.
                    self.redirects.insert(entry, set);
                }
                None => {
                    self.redirects.remove(&entry);
                }
            }
        }
        writes
    }
}

/// The writes that revert a patch in the process, in the order to apply them, computed
/// without changing any state (so the process can refuse them and nothing is lost).
pub(crate) fn revert_writes(record: &RevertRecord) -> Revert {
    let mut writes = Vec::new();
    // The entries the patch gave back their original code get their jumps again: the
    // 5-byte jump first, so it is in place when the short jump at the entry reaches it.
    for (entry, redirect, _) in record.restored.iter().rev() {
        let function = format!("entry at {entry}");
        if !redirect.original.is_empty() {
            writes.push(EntryWrite {
                addr: redirect.jump_at,
                expected: redirect.original.clone(),
                bytes: redirect.current.clone(),
                function: function.clone(),
            });
        }
        if let Some((at, written, original)) = &redirect.short {
            writes.push(EntryWrite {
                addr: *at,
                expected: original.clone(),
                bytes: written.clone(),
                function,
            });
        }
    }
    for (entry, previous, set) in record.entries.iter().rev() {
        match previous {
            Some(prev) => writes.push(EntryWrite {
                addr: set.jump_at,
                expected: set.current.clone(),
                bytes: prev.current.clone(),
                function: format!("entry at {entry}"),
            }),
            // First redirect of this entry: restore the original bytes.
            None => writes.extend(restore_writes(set, &format!("entry at {entry}"))),
        }
    }
    // Read-only objects back to the bytes they held before (with the entries already
    // pointing at the old bodies, nothing new reads them any more).
    let mut in_place = Vec::new();
    for write in record.read_only.iter().rev() {
        if let Some(before) = &write.before {
            in_place.push(EntryWrite {
                addr: write.addr,
                expected: write.after.clone(),
                bytes: before.clone(),
                function: write.name.clone(),
            });
        }
    }
    Revert {
        entries: writes,
        in_place,
    }
}

/// The writes that give an entry redirected as `redirect` says its original code back, in
/// the order to apply them: the short jump goes first, so the fill is unreachable when it is
/// restored. `function` names them in messages.
pub(crate) fn restore_writes(redirect: &Redirect, function: &str) -> Vec<EntryWrite> {
    let mut writes = Vec::new();
    if let Some((at, written, original)) = &redirect.short {
        writes.push(EntryWrite {
            addr: *at,
            expected: written.clone(),
            bytes: original.clone(),
            function: function.to_string(),
        });
    }
    if !redirect.original.is_empty() {
        writes.push(EntryWrite {
            addr: redirect.jump_at,
            expected: redirect.current.clone(),
            bytes: redirect.original.clone(),
            function: function.to_string(),
        });
    }
    writes
}

/// The allocation view of one link: committed state plus this link's delta.
pub(crate) struct Allocator<'s> {
    state: &'s LinkState,
    pub(crate) delta: StateDelta,
}

impl<'s> Allocator<'s> {
    /// The end of a link, for every format: `patch` with this link's allocations, or every
    /// error its phases recorded (a link reports all it found, not the first).
    pub(crate) fn finish(
        self,
        mut patch: crate::Patch,
        errors: Vec<crate::LinkError>,
    ) -> Result<crate::Patch, Vec<crate::LinkError>> {
        if errors.is_empty() {
            patch.delta = self.delta;
            Ok(patch)
        } else {
            Err(errors)
        }
    }

    pub(crate) fn new(state: &'s LinkState) -> Allocator<'s> {
        Allocator {
            state,
            delta: StateDelta::default(),
        }
    }

    /// Bump-allocate `size` bytes aligned to `align` in one arena.
    pub(crate) fn alloc(
        &mut self,
        arena: ArenaKind,
        size: u64,
        align: u64,
    ) -> Result<RuntimeAddr, ArenaKind> {
        let (cursor, end) = match arena {
            ArenaKind::Code => (
                self.delta.code_cursor.unwrap_or(self.state.code_cursor),
                self.state.code_end,
            ),
            ArenaKind::Data => (
                self.delta.data_cursor.unwrap_or(self.state.data_cursor),
                self.state.data_end,
            ),
        };
        let start = align_up(cursor, align);
        let new_cursor = start.checked_add(size.max(1)).ok_or(arena)?;
        if new_cursor > end {
            return Err(arena);
        }
        match arena {
            ArenaKind::Code => self.delta.code_cursor = Some(new_cursor),
            ArenaKind::Data => self.delta.data_cursor = Some(new_cursor),
        }
        Ok(RuntimeAddr(start))
    }

    /// Allocate `size` code-arena bytes at the first address from `pick`, which is given the
    /// free range (the bytes skipped before it stay unused). `None` if `pick` finds none
    /// inside the range.
    pub(crate) fn alloc_code_where(
        &mut self,
        size: u64,
        pick: impl FnOnce(Range<u64>) -> Option<u64>,
    ) -> Option<RuntimeAddr> {
        let cursor = self.delta.code_cursor.unwrap_or(self.state.code_cursor);
        let end = self.state.code_end;
        let last = end.checked_sub(size)?;
        let at = pick(cursor..last.max(cursor))?;
        if at < cursor || at > last {
            return None;
        }
        self.delta.code_cursor = Some(at + size);
        Some(RuntimeAddr(at))
    }

    /// The stub references to the new function `key` bind to: one an earlier link made,
    /// or one reserved for the batch (see [`Allocator::reserved_stub`]).
    pub(crate) fn new_function(&self, key: &SymKey) -> Option<RuntimeAddr> {
        self.defined_new_function(key)
            .or_else(|| self.reserved_stub(key))
    }

    /// The stub of a new function a link already defined (not only reserved).
    pub(crate) fn defined_new_function(&self, key: &SymKey) -> Option<RuntimeAddr> {
        self.delta
            .new_functions
            .get(key)
            .or_else(|| self.state.new_functions.get(key))
            .copied()
    }

    /// The stub reserved for the new global function `key` by the batch, which the unit
    /// that defines it writes (instead of allocating one).
    pub(crate) fn reserved_stub(&self, key: &SymKey) -> Option<RuntimeAddr> {
        match key.unit {
            None => self.state.reserved_stubs.get(&key.name).copied(),
            Some(_) => None,
        }
    }

    pub(crate) fn add_new_function(&mut self, key: SymKey, stub: RuntimeAddr) {
        self.delta.new_functions.insert(key, stub);
    }

    pub(crate) fn new_variable(&self, key: &SymKey) -> Option<NewVariable> {
        self.delta
            .new_variables
            .get(key)
            .or_else(|| self.state.new_variables.get(key))
            .copied()
    }

    pub(crate) fn add_new_variable(&mut self, key: SymKey, var: NewVariable) {
        self.delta.new_variables.insert(key, var);
    }

    /// The slot holding `content`, if one is allocated already (committed or in this link).
    pub(crate) fn got_slot(&self, content: SlotContent) -> Option<RuntimeAddr> {
        self.delta
            .got_slots
            .get(&content)
            .or_else(|| self.state.got_slots.get(&content))
            .copied()
    }

    pub(crate) fn add_got_slot(&mut self, content: SlotContent, slot: RuntimeAddr) {
        self.delta.got_slots.insert(content, slot);
    }

    pub(crate) fn plt_stub(&self, slot: RuntimeAddr) -> Option<RuntimeAddr> {
        self.delta
            .plt_stubs
            .get(&slot)
            .or_else(|| self.state.plt_stubs.get(&slot))
            .copied()
    }

    pub(crate) fn add_plt_stub(&mut self, slot: RuntimeAddr, stub: RuntimeAddr) {
        self.delta.plt_stubs.insert(slot, stub);
    }

    /// The aarch64 veneer already allocated for branches to `target`.
    pub(crate) fn veneer(&self, target: RuntimeAddr) -> Option<RuntimeAddr> {
        self.delta
            .veneers
            .get(&target)
            .or_else(|| self.state.veneers.get(&target))
            .copied()
    }

    pub(crate) fn add_veneer(&mut self, target: RuntimeAddr, veneer: RuntimeAddr) {
        self.delta.veneers.insert(target, veneer);
    }

    /// The committed redirect of an entry (links never redirect one entry twice).
    pub(crate) fn redirect(&self, entry: RuntimeAddr) -> Option<&Redirect> {
        self.state.redirects.get(&entry)
    }

    pub(crate) fn add_redirect(&mut self, entry: RuntimeAddr, redirect: Redirect) {
        self.delta.redirects.push((entry, redirect));
    }

    /// Whose definition the entry at `entry` runs, as committed (links never redirect one
    /// entry twice).
    /// The file that defines the global function `name` an earlier patch added, if one did.
    pub(crate) fn added_function_source(&self, name: &str) -> Option<&str> {
        let key = SymKey {
            unit: None,
            name: name.to_string(),
        };
        let stub = self.state.new_functions.get(&key)?;
        self.state.owners.get(stub).map(|o| o.source.as_str())
    }

    /// Whether any entry runs a strong definition of a file other than `source` (an earlier
    /// save's, or an earlier unit's of this batch): only such a definition can have made one
    /// of `source`'s definitions a multiple definition since it was linked.
    pub(crate) fn strong_owner_besides(&self, source: &str) -> bool {
        let other = |o: &EntryOwner| !o.weak && o.source != source;
        self.state.owners.values().any(other) || self.delta.owners.iter().any(|(_, o)| other(o))
    }

    pub(crate) fn entry_owner(&self, entry: RuntimeAddr) -> Option<&EntryOwner> {
        self.state.owners.get(&entry)
    }

    pub(crate) fn set_entry_owner(&mut self, entry: RuntimeAddr, owner: EntryOwner) {
        self.delta.owners.push((entry, owner));
    }

    /// Give `entry`, redirected as `redirect` says, its original code back: no redirect and
    /// no owner once committed, as at launch.
    pub(crate) fn restore(&mut self, entry: RuntimeAddr, redirect: Redirect) {
        self.delta.restored.push((entry, redirect));
    }

    /// Whether some committed entry runs a strong definition that displaced a weak default.
    pub(crate) fn displaces_any(&self) -> bool {
        self.state.owners.values().any(|o| o.displaced.is_some())
    }

    /// Whether `range` of the image's fill is still free, committed or in this link.
    pub(crate) fn fill_is_free(&self, range: &Range<u64>) -> bool {
        let overlaps = |r: &Range<u64>| r.start < range.end && range.start < r.end;
        !self.state.claimed_fill.iter().any(overlaps)
            && !self.delta.claimed_fill.iter().any(overlaps)
    }

    /// The running static a function-local static's match name was bound to.
    pub(crate) fn bound_static(&self, key: &SymKey) -> Option<ImageSymRef> {
        self.delta
            .bound_statics
            .get(key)
            .or_else(|| self.state.bound_statics.get(key))
            .copied()
    }

    pub(crate) fn add_bound_static(&mut self, key: SymKey, sym: ImageSymRef) {
        self.delta.bound_statics.insert(key, sym);
    }

    /// The bytes hot-lsp last wrote to the read-only object at `addr`, if it wrote any.
    pub(crate) fn read_only_contents(&self, addr: RuntimeAddr) -> Option<&[u8]> {
        self.state.read_only.get(&addr).map(Vec::as_slice)
    }

    pub(crate) fn record_read_only(&mut self, write: ReadOnlyWrite) {
        self.delta.read_only.push(write);
    }

    pub(crate) fn claim_fill(&mut self, range: Range<u64>) {
        self.delta.claimed_fill.push(range);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arenas() -> Arenas {
        Arenas {
            code: RuntimeAddr(0x1000)..RuntimeAddr(0x1100),
            data: RuntimeAddr(0x2000)..RuntimeAddr(0x2010),
        }
    }

    #[test]
    fn bump_allocation_aligns_and_reports_exhaustion() {
        let state = LinkState::new(&arenas());
        let mut alloc = Allocator::new(&state);
        assert_eq!(alloc.alloc(ArenaKind::Code, 3, 1), Ok(RuntimeAddr(0x1000)));
        assert_eq!(alloc.alloc(ArenaKind::Code, 8, 16), Ok(RuntimeAddr(0x1010)));
        assert_eq!(alloc.alloc(ArenaKind::Data, 8, 8), Ok(RuntimeAddr(0x2000)));
        assert_eq!(alloc.alloc(ArenaKind::Data, 8, 8), Ok(RuntimeAddr(0x2008)));
        assert_eq!(alloc.alloc(ArenaKind::Data, 1, 1), Err(ArenaKind::Data));
    }

    #[test]
    fn committed_cursor_survives_into_the_next_link() {
        let mut state = LinkState::new(&arenas());
        let mut alloc = Allocator::new(&state);
        alloc.alloc(ArenaKind::Code, 0x20, 16).unwrap();
        let delta = alloc.delta;
        state.apply(&delta);
        let mut alloc = Allocator::new(&state);
        assert_eq!(alloc.alloc(ArenaKind::Code, 1, 16), Ok(RuntimeAddr(0x1020)));
    }
}
