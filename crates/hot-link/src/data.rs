//! Binding rules for variables: data keeps its state.
//!
//! - Existing globals, file statics and function-local statics (`calls.0`, matched by the
//!   name without its numeric suffix within the translation unit) are bound to their address
//!   in the image and never written. A changed initializer gives an
//!   `initializer-not-applied` note (listed in `Patch::unapplied_initializers`); a variable
//!   an earlier save already warned about ([`crate::LinkRequest::applied`]) is compared with
//!   the initializer the program was given, not with the baseline's, so the note stays
//!   until the source has that initializer again. A changed size or alignment is
//!   `layout-changed`.
//! - New variables are allocated once in the data arena (remembered by name and unit),
//!   initialised from the object with their relocations applied, and keep their address.
//! - Named read-only objects that exist in the image keep their address and are updated in
//!   place when their contents changed and their size did not. New ones are allocated once
//!   in the code arena (read + execute, so they stay read-only). The program can already
//!   read an existing one (or one an earlier patch added), so its update is a commit write
//!   ([`crate::Patch::in_place`]) with the bytes it holds now as `expected`, not an arena
//!   write: written with every thread stopped, rolled back on failure, reverted by undo.
//! - A weak default (read-only or writable) that a strong definition of another file
//!   overrides binds to the override, whatever its size, and is never written: the running
//!   program uses the override. A changed default gets a `weak-overridden` note.
//! - A global variable of the object that another file already defines (a `static` made
//!   global by the edit) is refused as a multiple definition, never bound to the other
//!   file's variable.
//! - Thread-locals bind to the executable's TLS layout; new ones cannot be added.

// FxHash: keyed by atom ids and names of one object, which no adversary chooses.
use rustc_hash::FxHashMap as HashMap;

use hot_object::{AtomId, AtomKind, Binding, SourceLine, SymbolId, SymbolKind, TranslationUnitId};

use crate::image::{strip_numeric_suffix, ImageSymRef, Vaddr};
use crate::layout::{ArenaKind, NewVariable, SymKey};
use crate::link::Link;
use crate::resolve::AtomRole;
use crate::{LinkErrorCode, LinkNote};

impl Link<'_> {
    /// Phase 1: give every data atom of the object its address.
    pub(crate) fn bind_data(&mut self) {
        let obj = self.info.obj;
        // New local variables are remembered across links by hot-object's match name
        // (`tick/calls` for gcc's `calls.0` declared in `tick`: the numeric suffix changes
        // between compiles). Names that still collide are keyed by their full name.
        let mut match_count: HashMap<String, u32> = HashMap::default();
        for role in &self.info.roles {
            if let AtomRole::Variable { sym: Some(s) } | AtomRole::NamedReadOnly { sym: s } = role {
                if obj.symbol(*s).binding == Binding::Local {
                    *match_count.entry(obj.match_name(*s)).or_default() += 1;
                }
            }
        }
        // How many locals of the object share each name without numeric suffix.
        let mut local_counts: HashMap<String, u32> = HashMap::default();
        for role in &self.info.roles {
            if let AtomRole::Variable { sym: Some(s) }
            | AtomRole::NamedReadOnly { sym: s }
            | AtomRole::ThreadLocal { sym: Some(s) } = role
            {
                let sym = obj.symbol(*s);
                if sym.binding == Binding::Local {
                    *local_counts
                        .entry(strip_numeric_suffix(&sym.name).to_string())
                        .or_default() += 1;
                }
            }
        }
        for i in 0..obj.atoms.len() {
            let atom = AtomId(i as u32);
            let (sym, tls, read_only) = match *self.info.role(atom) {
                AtomRole::Variable { sym } => (sym, false, false),
                AtomRole::ThreadLocal { sym } => (sym, true, false),
                AtomRole::NamedReadOnly { sym } => (Some(sym), false, true),
                _ => continue,
            };
            let a = obj.atom(atom);
            if a.section_name == "__patchable_function_entries" {
                // Where `-fpatchable-function-entry` areas are, for tracers that patch
                // them; the running program's table stays as it is.
                continue;
            }
            let Some(sym) = sym else {
                if a.size > 0 && !tls {
                    // Unnamed writable data (rare: assembler sections): a new variable keyed
                    // by its section name.
                    let key = SymKey {
                        unit: Some(self.unit.source.clone()),
                        name: a.section_name.to_string(),
                    };
                    let decl = self.atom_decl_line(atom);
                    self.bind_new(atom, key, a.section_name.to_string(), read_only, None, decl);
                }
                continue;
            };
            let s = obj.symbol(sym);
            let name = s.name.clone();
            // Data atoms have no line rows: diagnostics point at the declaration. Read only
            // for a diagnostic or a new variable (the object's DWARF is walked for it).
            let decl = || obj.decl_line(sym).cloned();
            let local = s.binding == Binding::Local;
            let sym_offset = self.info.symbol_offset(sym);
            let our_size = if s.size != 0 { s.size } else { a.size };
            let found = if !local {
                Ok(crate::resolve::exe_definition(
                    self.model,
                    self.index,
                    Some(self.unit),
                    &name,
                ))
            } else if let Some(tu) = self.unit.tu {
                self.find_local(tu, atom, sym, &local_counts)
            } else {
                Ok(None)
            };
            // Whether the contents changed since the baseline (`None`: no baseline, or the
            // baseline does not have this atom).
            let baseline_changed = |this: &Self| -> Option<bool> {
                this.baseline_match.as_ref()?.get(&atom).map(|m| m.1)
            };
            match found {
                Err(candidates) => self.variable_error(
                    LinkErrorCode::LayoutChanged,
                    format!(
                        "cannot tell which of the running program's statics {} is `{name}`; \
                         restart the program",
                        candidates.join(", ")
                    ),
                    name.to_string(),
                    decl(),
                ),
                Ok(Some(r)) => {
                    if local && strip_numeric_suffix(&name).len() != name.len() {
                        // Remember which running static this one is, so later compiles
                        // (renumbered again) find it by match name.
                        let key = SymKey {
                            unit: Some(self.unit.source.clone()),
                            name: obj.match_name(sym),
                        };
                        self.alloc.add_bound_static(key, r);
                    }
                    let image_sym = r.get(self.model);
                    if !local
                        && !crate::resolve::weak_definition_in_use(
                            self.model, obj, sym, r, self.unit,
                        )
                    {
                        // A weak default another file overrides: references bind to the
                        // override, as in the running program, whatever its size; its bytes
                        // are the override's and are never written (read-only or not).
                        let vaddr = image_sym.vaddr.wrapping_sub(sym_offset);
                        self.bind_to_image(atom, vaddr, tls);
                        // Only an edit that changed the default is "not swapped in": without
                        // a baseline, plain bytes are compared with the override's; words
                        // with relocations cannot be, so the note says it may not apply.
                        let changed = baseline_changed(self).or_else(|| {
                            a.relocs
                                .is_empty()
                                .then(|| self.initializer_differs_from_image(atom, vaddr))
                        });
                        if changed != Some(false) {
                            self.note_overridden_weak(&name, r, atom, changed.is_some());
                        }
                        continue;
                    }
                    if let Some(message) = (!local)
                        .then(|| {
                            crate::resolve::multiple_definition(
                                self.model, obj, sym, r, self.unit, &name,
                            )
                        })
                        .flatten()
                    {
                        // Binding it to the other file's variable would silently share
                        // (and hide) state a relink would refuse to merge.
                        self.variable_error(
                            LinkErrorCode::MultipleDefinition,
                            message,
                            name.to_string(),
                            decl(),
                        );
                        continue;
                    }
                    if (image_sym.kind == SymbolKind::Tls) != tls {
                        self.variable_error(
                            LinkErrorCode::LayoutChanged,
                            format!(
                                "`{name}` changed between thread-local and ordinary storage; \
                                 restart the program"
                            ),
                            name.to_string(),
                            decl(),
                        );
                        continue;
                    }
                    if let Some(message) = read_only
                        .then(|| {
                            crate::vtable::layout_change(
                                obj,
                                atom,
                                (&name, our_size),
                                &self.model.exe.image,
                                image_sym,
                            )
                        })
                        .flatten()
                    {
                        // A C++ vtable or typeinfo whose layout changed: existing objects
                        // point into the running one.
                        let line = self.class_line(atom).or_else(decl);
                        self.variable_error(
                            LinkErrorCode::LayoutChanged,
                            message,
                            name.to_string(),
                            line,
                        );
                        continue;
                    }
                    if image_sym.size != our_size && image_sym.size != 0 {
                        self.variable_error(
                            LinkErrorCode::LayoutChanged,
                            format!(
                                "`{name}` changed size from {} to {our_size} bytes; its storage in \
                                 the running program cannot grow or shrink: restart the program",
                                image_sym.size
                            ),
                            name.to_string(),
                            decl(),
                        );
                        continue;
                    }
                    if image_sym.vaddr % a.align.max(1) != 0 {
                        self.variable_error(
                            LinkErrorCode::LayoutChanged,
                            format!(
                                "`{name}` now needs {}-byte alignment, which its address {:#x} in \
                                 the running program does not have; restart the program",
                                a.align, image_sym.vaddr
                            ),
                            name.to_string(),
                            decl(),
                        );
                        continue;
                    }
                    let vaddr = image_sym.vaddr.wrapping_sub(sym_offset);
                    if let Some(r) = (!local && !s.hidden && !tls)
                        .then(|| self.index.interposer(&name))
                        .flatten()
                    {
                        // A library's exported variable the executable interposes (its copy
                        // by `R_X86_64_COPY`, or a definition of its own): that is the
                        // variable the library's code uses, and never written here.
                        let module = r.module.module(self.model);
                        let at = module.runtime(Vaddr(r.get(self.model).vaddr));
                        self.bound
                            .insert(atom, crate::RuntimeAddr(at.0.wrapping_sub(sym_offset)));
                        continue;
                    }
                    self.bind_to_image(atom, vaddr, tls);
                    // A variable whose initializer an earlier save changed without applying
                    // it is compared with what the program was given, not the baseline.
                    let applied = (!read_only)
                        .then(|| self.applied_differs(atom, Some(vaddr)))
                        .flatten();
                    if read_only
                        && applied.is_none()
                        && self.baseline_match.is_none()
                        && !a.relocs.is_empty()
                    {
                        // Without a baseline, words with relocations (a vtable's slots) are
                        // compared with what they designate in the image once the entries
                        // of the functions are known.
                        self.read_only_to_compare
                            .push((atom, crate::RuntimeAddr(vaddr)));
                        continue;
                    }
                    let changed = applied
                        .or_else(|| baseline_changed(self))
                        .unwrap_or_else(|| {
                            // Without a baseline, compare plain initializers with the image.
                            self.baseline_match.is_none()
                                && a.relocs.is_empty()
                                && self.initializer_differs_from_image(atom, vaddr)
                        });
                    if changed {
                        if read_only {
                            self.data_writes.push(atom);
                        } else {
                            self.note_initializer(atom, &name, decl());
                        }
                    }
                }
                Ok(None) if tls => self.variable_error(
                    LinkErrorCode::NewThreadLocal,
                    format!(
                        "new thread-local variable `{name}` cannot be added to a running program \
                         (its threads' TLS blocks are already laid out); restart the program"
                    ),
                    name.to_string(),
                    decl(),
                ),
                Ok(None) => {
                    let match_name = obj.match_name(sym);
                    let key_name = if local && match_count.get(&match_name) == Some(&1) {
                        match_name
                    } else {
                        name.to_string()
                    };
                    let key = SymKey {
                        unit: local.then(|| self.unit.source.clone()),
                        name: key_name,
                    };
                    let changed = (!read_only)
                        .then(|| self.applied_differs(atom, None))
                        .flatten()
                        .or_else(|| baseline_changed(self));
                    self.bind_new(atom, key, name.to_string(), read_only, changed, decl());
                }
            }
        }
    }

    /// Phase 2b, without a baseline: each read-only object of the image whose words have
    /// relocations (a C++ vtable, a table of pointers) is written in place when a word
    /// designates something other than what the running program's word does (an override
    /// added: the slot now designates the new function's entry) or its other bytes differ.
    /// On x86-64 the words are compared as `image_diff.rs` compares a function's references;
    /// elsewhere the object is written whenever its relocated bytes differ from the running
    /// ones ([`Link::relocate`] drops a write of the same bytes).
    pub(crate) fn compare_read_only_with_image(&mut self) {
        let candidates = std::mem::take(&mut self.read_only_to_compare);
        if candidates.is_empty() {
            return;
        }
        if self.info.obj.machine != hot_object::Machine::X86_64 {
            self.data_writes
                .extend(candidates.into_iter().map(|(atom, _)| atom));
            return;
        }
        let mut diff = crate::image_diff::ImageDiff::new();
        for (atom, addr) in candidates {
            if !diff.data_unchanged(self, atom, addr) {
                self.data_writes.push(atom);
            }
        }
    }

    /// Whether the bytes of the data atom `atom` (relocations ignored) differ from the
    /// image's at `vaddr`; false when the image has no section there.
    fn initializer_differs_from_image(&self, atom: AtomId, vaddr: u64) -> bool {
        let a = self.info.obj.atom(atom);
        let image = &self.model.exe.image;
        // A bss atom is compared with zeros without building them: its size is a field of
        // the file, not bounded by the file's length.
        let zeros = a.bytes.is_empty();
        match image.section_at(vaddr) {
            Some(sec) if sec.bytes.is_empty() => a.bytes.iter().any(|&b| b != 0),
            Some(_) if zeros => usize::try_from(a.size)
                .ok()
                .and_then(|len| image.bytes_at(vaddr, len))
                .is_some_and(|theirs| theirs.iter().any(|&b| b != 0)),
            Some(_) => image
                .bytes_at(vaddr, a.bytes.len())
                .is_some_and(|theirs| theirs != a.bytes.as_slice()),
            None => false,
        }
    }

    /// The running static a local of the object is: by exact name for file statics; for a
    /// function-local static (`calls.0`, whose suffix changes between compiles) the one an
    /// earlier link bound its match name (`tick/calls`) to, else the image's static with the
    /// same scoped match name (from the image's DWARF), else the one the baseline's
    /// counterpart names, else the only local of the unit with that name once the suffix is
    /// stripped. A static the image's scopes or the baseline do not have is new.
    fn find_local(
        &self,
        tu: TranslationUnitId,
        atom: AtomId,
        sym: SymbolId,
        local_counts: &HashMap<String, u32>,
    ) -> Result<Option<ImageSymRef>, Vec<String>> {
        let obj = self.info.obj;
        let name = &obj.symbol(sym).name;
        let stripped = strip_numeric_suffix(name);
        if stripped.len() == name.len() {
            return Ok(self.index.exe_local(tu, name));
        }
        let key = SymKey {
            unit: Some(self.unit.source.clone()),
            name: obj.match_name(sym),
        };
        if let Some(r) = self.alloc.bound_static(&key) {
            return Ok(Some(r));
        }
        if key.name.contains('/') {
            // Both the object's and the image's DWARF name the declaring function.
            match self.index.exe_scoped_static(tu, &key.name) {
                Ok(Some(r)) => return Ok(Some(r)),
                Err(()) => return Ok(None),
                Ok(None) => {}
            }
        }
        if let (Some(matches), Some(baseline)) = (&self.baseline_match, self.baseline) {
            let Some(&(old_atom, _)) = matches.get(&atom) else {
                return Ok(None);
            };
            if let Some(old_sym) = baseline.primary_symbol(old_atom) {
                if let Some(r) = self.index.exe_local(tu, &baseline.symbol(old_sym).name) {
                    return Ok(Some(r));
                }
            }
        }
        if local_counts.get(stripped).copied().unwrap_or(0) > 1 {
            // Several statics of this name in the object and nothing to tell them apart but
            // their (unstable) numbers.
            return match self.index.exe_local(tu, name) {
                Some(r) => Ok(Some(r)),
                None => self
                    .index
                    .exe_local_static(self.model, tu, name)
                    .and_then(|r| match r {
                        Some(r) => Err(vec![r.get(self.model).name.clone()]),
                        None => Ok(None),
                    }),
            };
        }
        self.index.exe_local_static(self.model, tu, name)
    }

    /// Bind `atom` to the image's bytes at link-time address `vaddr` (the atom's start): a
    /// thread-local by its TLS offset, anything else by its runtime address.
    fn bind_to_image(&mut self, atom: AtomId, vaddr: u64, tls: bool) {
        if tls {
            self.tls_bound.insert(atom, Vaddr(vaddr));
        } else {
            self.bound
                .insert(atom, self.model.exe.runtime(Vaddr(vaddr)));
        }
    }

    /// Whether the initializer of the writable variable `atom` differs from the one the
    /// running program was given, when an earlier save changed it without applying it
    /// ([`crate::LinkRequest::applied`]); `None` when it has no such record (the baseline
    /// tells). `image_vaddr`: where the executable has it, for a record of the executable's
    /// own bytes (none for a variable a patch added).
    fn applied_differs(&self, atom: AtomId, image_vaddr: Option<u64>) -> Option<bool> {
        if self.applied.is_empty() {
            return None;
        }
        let obj = self.info.obj;
        let identity = hot_object::atom_identity(obj, atom)?;
        let applied = self.applied.iter().find(|a| a.identity == identity)?;
        match applied.object {
            Some(old) => hot_object::counterpart_differs(old, obj, atom),
            None => {
                let vaddr = image_vaddr?;
                // The executable's plain bytes: an initializer with relocations (an address)
                // cannot be compared with them, and is not taken for applied.
                Some(
                    !obj.atom(atom).relocs.is_empty()
                        || self.initializer_differs_from_image(atom, vaddr),
                )
            }
        }
    }

    /// Note that a kept variable's initializer changed; `line` is its declaration.
    fn note_initializer(&mut self, atom: AtomId, name: &str, line: Option<SourceLine>) {
        if let Some(identity) = hot_object::atom_identity(self.info.obj, atom) {
            self.patch
                .unapplied_initializers
                .push(crate::UnappliedInitializer {
                    unit: self.unit.source.clone(),
                    identity,
                });
        }
        let shown = hot_object::display_name(name);
        self.patch.notes.push(LinkNote {
            code: "initializer-not-applied",
            message: format!(
                "the initializer of `{shown}` changed, but the running program keeps the current \
                 value of `{shown}`; restart to apply the new initializer"
            ),
            symbol: Some(name.to_string()),
            line,
            severity: crate::NoteSeverity::Warning,
            unit: self.unit.source.clone(),
        });
    }

    /// Bind a variable that did not exist in the image: at the address an earlier patch gave
    /// it, or at a fresh one. `decl` is where it is declared, for diagnostics.
    fn bind_new(
        &mut self,
        atom: AtomId,
        key: SymKey,
        name: String,
        read_only: bool,
        contents_changed: Option<bool>,
        decl: Option<SourceLine>,
    ) {
        let a = self.info.obj.atom(atom);
        let size = a.size;
        if let Some(existing) = self.alloc.new_variable(&key) {
            if existing.size != size {
                self.variable_error(
                    LinkErrorCode::LayoutChanged,
                    format!(
                        "`{name}` changed size from {} to {size} bytes since it was added; \
                         restart the program",
                        existing.size
                    ),
                    name,
                    decl,
                );
                return;
            }
            self.bound.insert(atom, existing.addr);
            if read_only {
                // A read-only object holds no state: keep it current.
                if contents_changed.unwrap_or(true) {
                    self.data_writes.push(atom);
                }
            } else if contents_changed == Some(true) {
                self.note_initializer(atom, &name, decl);
            }
            return;
        }
        let forced = self.placement.and_then(|p| p.atoms.get(&atom).copied());
        let arena = if read_only {
            ArenaKind::Code
        } else {
            ArenaKind::Data
        };
        let addr = match forced {
            Some(addr) => addr,
            None => match self.alloc.alloc(arena, size, a.align.max(1)) {
                Ok(addr) => addr,
                Err(kind) => {
                    self.arena_exhausted(kind, &name, size, decl);
                    return;
                }
            },
        };
        self.alloc.add_new_variable(key, NewVariable { addr, size });
        self.bound.insert(atom, addr);
        self.fresh_data.insert(atom);
        self.data_writes.push(atom);
        // Only names the user wrote are "added": unnamed data (top-level asm, keyed by its
        // section name) is no symbol of the program.
        if a.kind != AtomKind::Text && !hot_object::is_odr_indicator(&name) && !a.symbols.is_empty()
        {
            self.patch.added.push(name);
        }
    }
}
