//! The Mach-O link behind [`crate::Linker`]: the same phases and the same [`Patch`] as the ELF
//! link (`link.rs`), for objects from `clang --target=x86_64-apple-macos` /
//! `arm64-apple-macos` against a model of a Mach-O executable.
//!
//! 1. Roles: each `subsections_via_symbols` atom with a name is a function (text) or a
//!    variable; atoms without one (string literals, `__literal*`, `l_`/`L` labels) are
//!    copied only when a copied atom refers to them.
//! 2. Binding: a function's stable entry is its address in the image (a global by name, or
//!    the private-extern local a hidden global became; a local in the unit's translation
//!    unit, [`crate::UnitRef::tu`], which the debug map's `N_SO` stabs give images of `-g`
//!    objects; without one, by name when the image has exactly one local of that name, and
//!    two files' `static` functions of one name are refused), else a 16-byte stub allocated
//!    once in the code arena. Variables and thread-local descriptors bind to the image's; a new
//!    variable is allocated once in the data arena (a named constant in the code arena); a
//!    new thread-local is refused (dyld registers thread-local templates at load).
//! 3. What changed: with a baseline, [`hot_object::changed_functions`]; without one, every
//!    function of the object is swapped (there is no instruction-level comparison with a
//!    Mach-O image yet).
//! 4. Layout: changed bodies and the anonymous atoms they reach in fresh code-arena space.
//! 5. Library symbols: a name the executable imports already goes through the image's own
//!    `__stubs` and `__got`/`__auth_got` slots (named by the indirect symbol table); a new
//!    one is looked up in [`crate::ImageModel::libs`] (for macOS, the exports of the dyld
//!    shared cache's images, read by the session from the target's memory with
//!    `hot_object::dyld_cache`), and gets a GOT slot in the data arena holding its address
//!    and, for calls, a stub in the code arena (`jmp *slot(%rip)`; arm64:
//!    `adrp x16; ldr x17; add x16; br x17`).
//! 6. Relocation: [`crate::macho::relocate`], lld's formulas and relaxations, with the
//!    entries and bindings above.
//! 7. Entries: the ELF entry planners (`entry.rs`: `jmp rel32`, short jumps through padding;
//!    `entry_aarch64.rs`: `b` or `ldr x16, #8; br x16; .quad` after `bti c`/`pacibsp`).
//!
//! Not here yet: unwind tables of the new bodies (`__compact_unwind`/`__eh_frame` are not
//! read), DWARF line rows (so no source lines on errors), static constructors of new units,
//! the ABI checks, breakpoint-aware arm64 entry forms.

use std::collections::{HashMap, HashSet};

use hot_object::{AtomId, AtomKind, Binding, Object, RelocKind, SymbolDef, SymbolId, SymbolKind};

use crate::image::{ImageIndex, ImageSymRef, ModuleId, Vaddr};
use crate::layout::{Allocator, ArenaKind, LinkState, Placement, Redirect, SlotContent, SymKey};
use crate::macho::{relocate, MachOError, MachOPlacement};
use crate::{
    entry, LinkError, LinkErrorCode, LinkRequest, Linker, Patch, PatchWrite, PlacedBody,
    RuntimeAddr,
};

/// Size of a call stub to a library function: `jmp *slot(%rip)` padded to 8 on x86-64,
/// the 4-instruction PLT-shaped stub on arm64.
fn call_stub_size(machine: hot_object::Machine) -> u64 {
    match machine {
        hot_object::Machine::X86_64 => 8,
        hot_object::Machine::Aarch64 => crate::aarch64::STUB_LEN,
    }
}

/// The executable's local symbols by name, built once per linker: Mach-O images have no
/// translation-unit groups, so a local binds by name when the name is unique.
#[derive(Debug, Default)]
pub(crate) struct MachOIndex {
    locals: HashMap<String, Vec<u32>>,
}

impl MachOIndex {
    pub(crate) fn build(image: &hot_object::LinkedImage) -> MachOIndex {
        let mut index = MachOIndex::default();
        for (i, s) in image.symbols.iter().enumerate() {
            if s.defined && s.binding == Binding::Local && !s.name.is_empty() {
                index
                    .locals
                    .entry(s.name.clone())
                    .or_default()
                    .push(i as u32);
            }
        }
        index
    }
}

/// What an object symbol resolves to.
#[derive(Clone, Copy, Debug)]
enum Entry {
    /// A function of the image: its symbol.
    Image(ImageSymRef),
    /// A new function's stub; `true` when this link allocated it (and writes it).
    Stub(RuntimeAddr, bool),
}

struct MachOLink<'a> {
    linker: &'a Linker,
    index: &'a ImageIndex,
    obj: &'a Object,
    request: &'a LinkRequest<'a>,
    alloc: Allocator<'a>,
    placement: Option<&'a Placement>,
    errors: Vec<LinkError>,
    patch: Patch,
    /// Function atoms and their entries.
    functions: HashMap<AtomId, Entry>,
    /// Variable atoms bound to the image or to an earlier link's allocation: the runtime
    /// address of their offset 0.
    bound: HashMap<AtomId, RuntimeAddr>,
    /// Variables this link allocates and writes.
    new_variables: HashMap<AtomId, RuntimeAddr>,
    /// Atoms copied into the code arena, in placement order, and their addresses.
    order: Vec<AtomId>,
    placed: HashMap<AtomId, RuntimeAddr>,
}

/// Link one Mach-O object (see the module documentation).
pub(crate) fn link(
    linker: &Linker,
    state: &LinkState,
    request: &LinkRequest<'_>,
    placement: Option<&Placement>,
) -> Result<Patch, Vec<LinkError>> {
    let mut cx = MachOLink {
        linker,
        index: linker.index(),
        obj: request.object,
        request,
        alloc: Allocator::new(state),
        placement,
        errors: Vec::new(),
        patch: Patch::default(),
        functions: HashMap::new(),
        bound: HashMap::new(),
        new_variables: HashMap::new(),
        order: Vec::new(),
        placed: HashMap::new(),
    };
    let exe = &linker.image.exe;
    if exe.image.format() != hot_object::ObjectFormat::MachO
        || request.object.format != hot_object::ObjectFormat::MachO
        || request.object.machine != exe.image.machine
    {
        cx.error(
            LinkErrorCode::UnsupportedRelocation,
            format!(
                "{}: the object is {:?} for {:?}, the running program {:?} for {:?}",
                request.unit.source,
                request.object.format,
                request.object.machine,
                exe.image.format(),
                exe.image.machine
            ),
            None,
            None,
        );
        return Err(cx.errors);
    }
    cx.bind();
    let changed = cx.changed();
    cx.lay_out(changed);
    let relocated = cx.relocate();
    cx.redirect_entries(&relocated);
    cx.alloc.finish(cx.patch, cx.errors)
}

impl<'a> MachOLink<'a> {
    fn error(
        &mut self,
        code: LinkErrorCode,
        message: String,
        symbol: Option<String>,
        function: Option<String>,
    ) {
        self.errors.push(LinkError {
            code,
            unit: self.request.unit.source.clone(),
            message,
            symbol,
            function,
            line: None,
        });
    }

    fn name_of(&self, atom: AtomId) -> Option<&'a str> {
        let obj = self.obj;
        obj.primary_symbol(atom)
            .map(|s| obj.symbol(s).name.as_str())
    }

    fn key(&self, sym: SymbolId) -> SymKey {
        let s = self.obj.symbol(sym);
        SymKey {
            unit: (s.binding == Binding::Local).then(|| self.request.unit.source.clone()),
            name: s.name.to_string(),
        }
    }

    /// The image's definition of an object symbol: a global by name, a local by a unique
    /// name. `Err` names the ambiguity.
    fn image_definition(&self, sym: SymbolId) -> Result<Option<ImageSymRef>, String> {
        let s = self.obj.symbol(sym);
        let exe = ImageSymRef {
            module: ModuleId::Exe,
            index: 0,
        };
        if s.binding != Binding::Local {
            // A hidden global of the object is a private-extern local of the image.
            let model = &self.linker.image;
            return Ok(self
                .index
                .exe_global(&s.name)
                .or_else(|| self.index.exe_hidden(model, &s.name, None)));
        }
        // With the debug map (objects built with `-g`), the unit's own local.
        if let Some(tu) = self.request.unit.tu {
            return Ok(self.index.exe_local(tu, &s.name));
        }
        let locals = self.linker.macho_index().locals.get(s.name.as_str());
        match locals.map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(ImageSymRef { index: *one, ..exe })),
            Some(many) => Err(format!(
                "the running program has {} local symbols named `{}` and no debug map saying \
                 which file each came from (build with -g), so this file's cannot be told apart",
                many.len(),
                hot_object::display_name(&s.name)
            )),
        }
    }

    /// Phase 1 and 2: every named atom's role and binding.
    fn bind(&mut self) {
        let obj = self.obj;
        for (i, atom) in obj.atoms.iter().enumerate() {
            let id = AtomId(i as u32);
            let Some(primary) = obj.primary_symbol(id) else {
                continue;
            };
            let name = obj.symbol(primary).name.clone();
            let found = match self.image_definition(primary) {
                Ok(found) => found,
                Err(message) => {
                    self.error(
                        LinkErrorCode::LayoutChanged,
                        message,
                        Some(name.to_string()),
                        None,
                    );
                    continue;
                }
            };
            let model = &self.linker.image;
            if atom.kind == AtomKind::Text {
                let entry = match found {
                    Some(r) if r.get(model).kind == SymbolKind::Function => Entry::Image(r),
                    Some(_) => {
                        self.error(
                            LinkErrorCode::LayoutChanged,
                            format!(
                                "`{}` is a function here and a variable in the running program",
                                hot_object::display_name(&name)
                            ),
                            Some(name.to_string()),
                            None,
                        );
                        continue;
                    }
                    None => match self.alloc.new_function(&self.key(primary)) {
                        Some(stub) => Entry::Stub(stub, false),
                        None => match self
                            .alloc
                            .alloc(ArenaKind::Code, crate::link::STUB_SIZE, 16)
                        {
                            Ok(stub) => {
                                self.alloc.add_new_function(self.key(primary), stub);
                                Entry::Stub(stub, true)
                            }
                            Err(_) => {
                                self.error(
                                    LinkErrorCode::ArenaExhausted,
                                    format!(
                                        "the code arena has no room left for the stub of the new \
                                         function `{}`",
                                        hot_object::display_name(&name)
                                    ),
                                    Some(name.to_string()),
                                    None,
                                );
                                continue;
                            }
                        },
                    },
                };
                self.functions.insert(id, entry);
                continue;
            }
            let thread_local = atom.kind.is_tls() || atom.section_name.ends_with(",__thread_vars");
            if let Some(r) = found {
                let sym = r.get(model);
                if atom.size > sym.size && sym.size != 0 {
                    self.error(
                        LinkErrorCode::LayoutChanged,
                        format!(
                            "`{}` grew from {} to {} bytes; the running program cannot move it",
                            hot_object::display_name(&name),
                            sym.size,
                            atom.size
                        ),
                        Some(name.to_string()),
                        None,
                    );
                    continue;
                }
                self.bound.insert(id, model.exe.runtime(Vaddr(sym.vaddr)));
                continue;
            }
            if thread_local {
                self.error(
                    LinkErrorCode::NewThreadLocal,
                    format!(
                        "the new thread-local variable `{}` cannot be added to a running \
                         program (dyld sets up thread-local storage at load); restart it",
                        hot_object::display_name(&name)
                    ),
                    Some(name.to_string()),
                    None,
                );
                continue;
            }
            let key = self.key(primary);
            if let Some(var) = self.alloc.new_variable(&key) {
                self.bound.insert(id, var.addr);
                continue;
            }
            let arena = if atom.kind.is_writable_data() {
                ArenaKind::Data
            } else {
                ArenaKind::Code
            };
            match self.alloc.alloc(arena, atom.size, atom.align.max(1)) {
                Ok(addr) => {
                    self.alloc.add_new_variable(
                        key,
                        crate::layout::NewVariable {
                            addr,
                            size: atom.size,
                        },
                    );
                    self.new_variables.insert(id, addr);
                    self.patch.added.push(name.to_string());
                }
                Err(_) => self.error(
                    LinkErrorCode::ArenaExhausted,
                    format!(
                        "the {} arena has no room left for the new variable `{}` ({} bytes)",
                        if arena == ArenaKind::Data {
                            "data"
                        } else {
                            "code"
                        },
                        hot_object::display_name(&name),
                        atom.size
                    ),
                    Some(name.to_string()),
                    None,
                ),
            }
        }
    }

    /// Phase 3: the function atoms to place.
    fn changed(&mut self) -> Vec<AtomId> {
        let mut functions: Vec<AtomId> = self.functions.keys().copied().collect();
        functions.sort_unstable();
        let Some(old) = self.request.baseline else {
            return functions;
        };
        let diff = hot_object::changed_functions(old, self.obj);
        let unchanged: HashSet<AtomId> = diff.unchanged.iter().map(|m| m.new).collect();
        let before = functions.len();
        // A new function's stub from an earlier link keeps its body: only the diff decides.
        functions.retain(|id| !unchanged.contains(id));
        self.patch.skipped = before - functions.len();
        functions
    }

    /// Phase 4: place the changed bodies and every anonymous atom they (or new variables)
    /// reach, in the code arena (or where the test placement says).
    fn lay_out(&mut self, changed: Vec<AtomId>) {
        let obj = self.obj;
        let mut queue: Vec<AtomId> = changed;
        queue.extend(self.new_variables.keys().copied());
        queue.sort_unstable();
        let mut seen: HashSet<AtomId> = queue.iter().copied().collect();
        let mut i = 0;
        while i < queue.len() {
            let id = queue[i];
            i += 1;
            if !self.new_variables.contains_key(&id) {
                self.order.push(id);
            }
            for reloc in &obj.atom(id).relocs {
                let SymbolDef::Atom { atom, .. } = obj.symbol(reloc.symbol).def else {
                    continue;
                };
                let named = self.functions.contains_key(&atom)
                    || self.bound.contains_key(&atom)
                    || self.new_variables.contains_key(&atom);
                if !named && seen.insert(atom) {
                    queue.push(atom);
                }
            }
        }
        for id in self.order.clone() {
            let atom = obj.atom(id);
            let addr = match self.placement {
                Some(p) => match p.atoms.get(&id) {
                    Some(&a) => Ok(a),
                    None => Err(format!(
                        "the test placement has no address for {} atom {id:?}",
                        atom.section_name
                    )),
                },
                None => {
                    let arena = if atom.kind.is_writable_data() {
                        ArenaKind::Data
                    } else {
                        ArenaKind::Code
                    };
                    self.alloc
                        .alloc(arena, atom.size, atom.align.max(1))
                        .map_err(|_| {
                            format!(
                                "the arena has no room left for {} ({} bytes)",
                                self.name_of(id).unwrap_or(&atom.section_name),
                                atom.size
                            )
                        })
                }
            };
            match addr {
                Ok(addr) => {
                    self.placed.insert(id, addr);
                }
                Err(message) => self.error(
                    LinkErrorCode::ArenaExhausted,
                    message,
                    self.name_of(id).map(str::to_string),
                    None,
                ),
            }
        }
    }

    /// The placement [`relocate`] works with: the image's symbols, slots and stubs at their
    /// runtime addresses, this link's atoms, entries and bindings, and slots and stubs for
    /// library symbols the image does not import.
    fn macho_placement(&mut self) -> MachOPlacement {
        let model = &self.linker.image;
        let exe = &model.exe;
        let obj = self.obj;
        let mut p = MachOPlacement::default();
        for slot in &exe.image.got_slots {
            let map = match slot.kind {
                hot_object::GotSlotKind::GlobDat => &mut p.got,
                hot_object::GotSlotKind::ThreadLocalPointer => &mut p.tlv_pointers,
                _ => continue,
            };
            map.entry(slot.symbol.clone())
                .or_insert(exe.runtime(Vaddr(slot.vaddr)).0);
        }
        for (name, vaddr) in &exe.image.plt_entries {
            p.stubs
                .entry(name.clone())
                .or_insert(exe.runtime(Vaddr(*vaddr)).0);
        }
        p.tlv_template = exe.image.tls.map(|t| exe.runtime(Vaddr(t.vaddr)).0);
        for (&id, &addr) in self.placed.iter().chain(&self.new_variables) {
            p.atoms.insert(id, addr.0);
        }
        // Symbols of atoms not placed: functions' old bodies, bound variables.
        for (i, atom) in obj.atoms.iter().enumerate() {
            let id = AtomId(i as u32);
            if p.atoms.contains_key(&id) {
                continue;
            }
            let base = match (self.functions.get(&id), self.bound.get(&id)) {
                (Some(Entry::Image(r)), _) => Some(exe.runtime(Vaddr(r.get(model).vaddr))),
                (Some(Entry::Stub(..)), _) => None,
                (None, Some(&addr)) => Some(addr),
                _ => None,
            };
            if let Some(base) = base {
                for &s in &atom.symbols {
                    if let SymbolDef::Atom { offset, .. } = obj.symbol(s).def {
                        p.fixed.insert(s, base.0.wrapping_add(offset.0));
                    }
                }
                // The section symbol a section-relative relocation uses.
                for (k, sym) in obj.symbols.iter().enumerate() {
                    if sym.kind == SymbolKind::Section
                        && sym.def
                            == (SymbolDef::Atom {
                                atom: id,
                                offset: hot_object::AtomOffset(0),
                            })
                    {
                        p.fixed.insert(SymbolId(k as u32), base.0);
                    }
                }
            }
        }
        for (&id, &entry) in &self.functions {
            let addr = match entry {
                Entry::Image(r) => exe.runtime(Vaddr(r.get(model).vaddr)),
                Entry::Stub(stub, _) => stub,
            };
            if let Some(primary) = obj.primary_symbol(id) {
                for &s in &obj.atom(id).symbols {
                    if obj.symbol(s).def
                        == (SymbolDef::Atom {
                            atom: id,
                            offset: hot_object::AtomOffset(0),
                        })
                    {
                        p.entries.insert(s, addr.0);
                    }
                }
                p.entries.insert(primary, addr.0);
            }
        }
        // Undefined names: the executable's globals, new functions and variables of earlier
        // links, else a library's export through a slot (and a stub for calls).
        let mut undefined: Vec<(SymbolId, bool, bool)> = Vec::new(); // (symbol, call, slot)
        for &id in self.placed.keys().chain(self.new_variables.keys()) {
            for reloc in &obj.atom(id).relocs {
                if obj.symbol(reloc.symbol).def != SymbolDef::Undefined {
                    continue;
                }
                let call = matches!(reloc.kind, RelocKind::Plt32 | RelocKind::Arm64Branch26);
                let slot = matches!(
                    reloc.kind,
                    RelocKind::RexGotPcRelX
                        | RelocKind::GotPcRel
                        | RelocKind::Arm64GotPage21
                        | RelocKind::Arm64GotPageOff12
                );
                undefined.push((reloc.symbol, call, slot));
            }
        }
        undefined.sort_unstable_by_key(|&(s, call, slot)| (s, !call, !slot));
        let mut done: HashMap<SymbolId, (bool, bool)> = HashMap::new();
        for (sym, call, slot) in undefined {
            let e = done.entry(sym).or_insert((false, false));
            let (call, slot) = (call && !e.0, slot && !e.1);
            e.0 |= call;
            e.1 |= slot;
            let name = obj.symbol(sym).name.clone();
            if let Some(r) = self.index.exe_global(&name) {
                p.symbols
                    .insert(name.to_string(), exe.runtime(Vaddr(r.get(model).vaddr)).0);
                continue;
            }
            let global = SymKey {
                unit: None,
                name: name.to_string(),
            };
            if let Some(stub) = self.alloc.new_function(&global) {
                p.symbols.insert(name.to_string(), stub.0);
                continue;
            }
            if let Some(var) = self.alloc.new_variable(&global) {
                p.symbols.insert(name.to_string(), var.addr.0);
                continue;
            }
            let Some(found) = self.index.lib_lookup(&name) else {
                // The image's own import (stub or slot) still works without an address.
                if p.stubs.contains_key(name.as_str()) || p.got.contains_key(name.as_str()) {
                    continue;
                }
                self.error(
                    LinkErrorCode::UndefinedSymbol,
                    format!(
                        "undefined symbol `{}`: neither the running program nor the libraries \
                         it loaded define it",
                        hot_object::display_name(&name)
                    ),
                    Some(name.to_string()),
                    None,
                );
                continue;
            };
            let lib = found.module.module(model);
            let addr = lib.runtime(Vaddr(found.get(model).vaddr));
            p.symbols.insert(name.to_string(), addr.0);
            let needs_slot = (slot && !p.got.contains_key(name.as_str()))
                || (call && !p.stubs.contains_key(name.as_str()));
            if !needs_slot {
                continue;
            }
            let Some(slot_addr) = self.slot_holding(addr, &name) else {
                continue;
            };
            if slot && !p.got.contains_key(name.as_str()) {
                p.got.insert(name.to_string(), slot_addr.0);
            }
            if call && !p.stubs.contains_key(name.as_str()) {
                if let Some(stub) = self.call_stub(slot_addr, &name) {
                    p.stubs.insert(name.to_string(), stub.0);
                }
            }
        }
        if obj.machine == hot_object::Machine::Aarch64 {
            self.add_veneers(&mut p);
        }
        p
    }

    /// arm64: a branch from the code arena beyond `b`/`bl` reach (±128 MiB: an arena far
    /// from the image) goes through a 16-byte veneer in the arena instead, one per target
    /// (`adrp x16; add x16; br x16`, or the absolute jump). A branch's target is its name's
    /// stub when it has one, so the veneer becomes the name's stub.
    fn add_veneers(&mut self, p: &mut MachOPlacement) {
        let obj = self.obj;
        let mut far: Vec<(String, u64)> = Vec::new();
        let mut ids: Vec<AtomId> = self.placed.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let base = self.placed[&id].0;
            for reloc in &obj.atom(id).relocs {
                // A veneer stands for a name: only a branch to the name itself can use it.
                if reloc.kind != RelocKind::Arm64Branch26 || reloc.addend != 0 {
                    continue;
                }
                let name = &obj.symbol(reloc.symbol).name;
                let target = p
                    .stubs
                    .get(name.as_str())
                    .copied()
                    .or_else(|| crate::macho::target_of(obj, p, reloc));
                let pc = base.wrapping_add(reloc.offset.0);
                if let Some(t) = target {
                    if crate::aarch64::b(pc, t).is_none() {
                        far.push((name.to_string(), t));
                    }
                }
            }
        }
        for (name, target) in far {
            if p.stubs
                .get(&name)
                .is_some_and(|&s| self.alloc.veneer(RuntimeAddr(target)) == Some(RuntimeAddr(s)))
            {
                continue;
            }
            let veneer = match self.alloc.veneer(RuntimeAddr(target)) {
                Some(v) => v,
                None => match self
                    .alloc
                    .alloc(ArenaKind::Code, crate::aarch64::STUB_LEN, 8)
                {
                    Ok(v) => {
                        self.alloc.add_veneer(RuntimeAddr(target), v);
                        self.patch.writes.push(PatchWrite {
                            addr: v,
                            bytes: crate::aarch64::veneer(v.0, target),
                            what: format!("veneer to {}", hot_object::display_name(&name)),
                        });
                        v
                    }
                    Err(_) => {
                        self.error(
                            LinkErrorCode::ArenaExhausted,
                            format!(
                                "the code arena has no room left for a veneer to `{}`",
                                hot_object::display_name(&name)
                            ),
                            Some(name),
                            None,
                        );
                        continue;
                    }
                },
            };
            p.stubs.insert(name, veneer.0);
        }
    }

    /// A GOT slot in the data arena holding `value` (shared by content, allocated once).
    fn slot_holding(&mut self, value: RuntimeAddr, name: &str) -> Option<RuntimeAddr> {
        let content = SlotContent::Value(value.0);
        if let Some(slot) = self.alloc.got_slot(content) {
            return Some(slot);
        }
        match self.alloc.alloc(ArenaKind::Data, 8, 8) {
            Ok(slot) => {
                self.alloc.add_got_slot(content, slot);
                self.patch.writes.push(PatchWrite {
                    addr: slot,
                    bytes: value.0.to_le_bytes().to_vec(),
                    what: format!("GOT slot for {}", hot_object::display_name(name)),
                });
                Some(slot)
            }
            Err(_) => {
                self.error(
                    LinkErrorCode::ArenaExhausted,
                    format!(
                        "the data arena has no room left for the GOT slot of `{}`",
                        hot_object::display_name(name)
                    ),
                    Some(name.to_string()),
                    None,
                );
                None
            }
        }
    }

    /// A call stub in the code arena jumping through `slot` (allocated once per slot).
    fn call_stub(&mut self, slot: RuntimeAddr, name: &str) -> Option<RuntimeAddr> {
        if let Some(stub) = self.alloc.plt_stub(slot) {
            return Some(stub);
        }
        let machine = self.obj.machine;
        let size = call_stub_size(machine);
        let stub = self.alloc.alloc(ArenaKind::Code, size, 16).ok()?;
        let bytes = match machine {
            hot_object::Machine::X86_64 => {
                crate::x86_64::jmp_indirect(stub.0, slot.0, size as usize)
            }
            hot_object::Machine::Aarch64 => crate::aarch64::call_stub(stub.0, slot.0),
        };
        let Some(bytes) = bytes else {
            self.error(
                LinkErrorCode::RelocationOverflow,
                format!(
                    "the GOT slot of `{}` at {slot} is out of reach of its call stub at {stub}",
                    hot_object::display_name(name)
                ),
                Some(name.to_string()),
                None,
            );
            return None;
        };
        self.alloc.add_plt_stub(slot, stub);
        self.patch.writes.push(PatchWrite {
            addr: stub,
            bytes,
            what: format!("call stub for {}", hot_object::display_name(name)),
        });
        Some(stub)
    }

    /// Phase 6: relocate every placed atom; the bytes of each, by atom.
    fn relocate(&mut self) -> HashMap<AtomId, Vec<u8>> {
        let placement = self.macho_placement();
        if !self.errors.is_empty() {
            return HashMap::new();
        }
        match relocate(self.obj, &placement) {
            Ok(atoms) => atoms
                .into_iter()
                .map(|(id, _, bytes)| (id, bytes))
                .collect(),
            Err(errors) => {
                for e in errors {
                    self.reloc_error(e);
                }
                HashMap::new()
            }
        }
    }

    fn reloc_error(&mut self, e: MachOError) {
        let code = if e.message.contains("undefined") {
            LinkErrorCode::UndefinedSymbol
        } else if e.message.contains("is not a Mach-O relocation") {
            LinkErrorCode::UnsupportedRelocation
        } else {
            LinkErrorCode::RelocationOverflow
        };
        let message = format!(
            "{} in `{}` ({} at +{:#x}, against `{}`): {}",
            match code {
                LinkErrorCode::UndefinedSymbol => "undefined symbol",
                LinkErrorCode::UnsupportedRelocation => "unsupported relocation",
                _ => "relocation out of range",
            },
            hot_object::display_name(&e.symbol),
            e.reloc,
            e.offset,
            hot_object::display_name(&e.target),
            e.message
        );
        self.error(code, message, Some(e.target.clone()), Some(e.symbol));
    }

    /// Phase 7: writes of bodies and new variables, then the entry jumps.
    fn redirect_entries(&mut self, relocated: &HashMap<AtomId, Vec<u8>>) {
        if !self.errors.is_empty() {
            return;
        }
        let obj = self.obj;
        let mut vars: Vec<(AtomId, RuntimeAddr)> =
            self.new_variables.iter().map(|(&a, &b)| (a, b)).collect();
        vars.sort_unstable();
        for (id, addr) in vars {
            if let Some(bytes) = relocated.get(&id) {
                self.patch.writes.push(PatchWrite {
                    addr,
                    bytes: bytes.clone(),
                    what: format!("variable {}", self.name_of(id).unwrap_or("?")),
                });
            }
        }
        for id in self.order.clone() {
            let Some(&addr) = self.placed.get(&id) else {
                continue;
            };
            let atom = obj.atom(id);
            let name = self.name_of(id);
            if let Some(bytes) = relocated.get(&id) {
                self.patch.writes.push(PatchWrite {
                    addr,
                    bytes: bytes.clone(),
                    what: match name {
                        Some(n) if atom.kind == AtomKind::Text => format!("body of {n}"),
                        Some(n) => format!("data of {n}"),
                        None => format!("{} literal", atom.section_name),
                    },
                });
            }
            if atom.kind == AtomKind::Text {
                if let Some(n) = name {
                    self.patch.bodies.push(PlacedBody {
                        name: n.to_string(),
                        addr,
                        size: atom.size,
                        lines: obj.lines_of(id).to_vec(),
                    });
                }
            }
        }
        let redirect = self.placement.is_none_or(|p| p.redirect_entries);
        for id in self.order.clone() {
            let (Some(&entry), Some(&body), Some(name)) = (
                self.functions.get(&id),
                self.placed.get(&id),
                self.name_of(id),
            ) else {
                continue;
            };
            let name = name.to_string();
            if !redirect {
                self.patch.swapped.push(name);
                continue;
            }
            let model = &self.linker.image;
            let (entry_addr, plan) = match entry {
                Entry::Image(r) => (
                    model.exe.runtime(Vaddr(r.get(model).vaddr)),
                    entry::plan_image_entry(
                        model,
                        self.index,
                        self.linker.landings(),
                        &mut self.alloc,
                        r.get(model),
                        body,
                        &name,
                    )
                    .map(Some),
                ),
                Entry::Stub(stub, true) => {
                    let bytes = &obj.atom(id).bytes;
                    match crate::link::stub_jump(obj.machine, bytes, stub, body) {
                        Some((jump_at, jump, padded)) => {
                            self.patch.writes.push(PatchWrite {
                                addr: stub,
                                bytes: padded,
                                what: format!("entry stub of {name}"),
                            });
                            self.alloc.add_redirect(
                                stub,
                                Redirect {
                                    jump_at,
                                    current: jump,
                                    original: Vec::new(),
                                    short: None,
                                },
                            );
                            self.patch.added.push(name);
                            continue;
                        }
                        None => (
                            stub,
                            Err((
                                LinkErrorCode::RelocationOverflow,
                                format!(
                                    "the body of `{name}` at {body} is out of reach of its stub \
                                     {stub}"
                                ),
                            )),
                        ),
                    }
                }
                Entry::Stub(stub, false) => {
                    (stub, entry::plan_stub(&self.alloc, stub, body, &name))
                }
            };
            match plan {
                Ok(Some(plan)) => {
                    self.patch.writes.extend(plan.arena);
                    if let Some((message, at)) = plan.note {
                        self.patch.entries_over_statements.push((name.clone(), at));
                        self.patch.notes.push(crate::LinkNote {
                            code: "entry-covers-statement",
                            message,
                            symbol: Some(name.clone()),
                            line: None,
                            severity: crate::NoteSeverity::Information,
                            unit: self.request.unit.source.clone(),
                        });
                    }
                    self.patch.entries.extend(plan.writes);
                    self.patch.protected.extend(plan.protected);
                    if let Some(fill) = plan.claimed_fill {
                        self.alloc.claim_fill(fill);
                    }
                    self.alloc.add_redirect(entry_addr, plan.redirect);
                    self.patch.redirected_names.push((entry_addr, name.clone()));
                    self.patch.swapped.push(name);
                }
                Ok(None) => {}
                Err((code, message)) => self.error(code, message, Some(name.clone()), Some(name)),
            }
        }
    }
}
