//! The ABI checks of a swap: what a relink and restart would notice and a hot swap would
//! silently get wrong. Run after the link, before anything is written:
//!
//! - a struct, class or union whose layout (size, member offsets and types, from the DWARF
//!   of the baseline and the new object) changed, when code this swap does not recompile
//!   uses it — functions of other files (never the recompiled files' own: a function the
//!   swap leaves in place compiled to the same code with the new layout) — or variables do
//!   (existing objects; a pointer to the type counts, so heap objects held through one do
//!   too) — refused with `layout-changed` on the type's declaration;
//! - a swapped function whose parameter or return types changed while callers in files not
//!   recompiled still call it the old way — refused with `signature-changed`;
//! - a function the saved file no longer defines while other files still call it or hold its
//!   address in data — refused ("removed but still called from ..."); an unreferenced one
//!   is simply left in the image.
//!
//! A layout change is accepted here only when every function that uses the type is
//! recompiled now and no variable of any file reaches it. Objects in frames are the other
//! provable kind: a function whose parameters or locals hold the type (by value or through
//! a pointer) may be running with an old one, and the swapped code it calls would read it
//! with the new layout. Only the stopped process shows which frames exist, so the session
//! keeps each change ([`ChangedLayout`]) and hot-process refuses the commit when a thread
//! has a frame in such a function ([`ChangedLayout::frame_refusal`]). What neither sees: an
//! object reachable only from the heap (no variable and no frame holds a pointer to it or
//! to what holds it), which the new code then reads with the new layout.
//!
//! Two phases keep the crate free of I/O: [`crate::Linker::abi_changes`] compares the
//! objects and decodes the executable's references (pure), and asks for the users of changed
//! types in the executable's own DWARF ([`AbiChanges::image_query`]), which the session reads
//! from the program's file only when a layout did change; [`AbiChanges::refusals`] then
//! turns everything into errors. Types are matched by name; a same-named type another file
//! defines with a layout that is neither the old nor the new one is a different type.

use std::collections::{BTreeSet, HashMap, HashSet};

use rustc_hash::FxHashMap;

use hot_object::types::{AbiFacts, MemberLayout, Signature, TypeLayout, TypeUser, UserKind};
use hot_object::{display_name, Binding, Object, SourceLine, SymbolDef, SymbolKind};
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, OpKind};

use crate::{LinkError, LinkErrorCode, LinkRequest, Linker, Patch};

/// A type whose layout changed, with what uses it.
#[derive(Clone, Debug)]
struct LayoutChange {
    unit: usize,
    old: TypeLayout,
    new: TypeLayout,
    /// The variables of the recompiled files that hold the type (objects that exist with
    /// the old layout); the executable's other files come from [`AbiChanges::refusals`].
    /// Their functions are no users: each was compiled again with the new layout, and one
    /// the swap leaves in place has the same code either way.
    variables: Vec<String>,
}

/// The outcome of the first phase.
#[derive(Debug, Default)]
pub struct AbiChanges {
    errors: Vec<LinkError>,
    layouts: Vec<LayoutChange>,
    sources: Vec<String>,
    skip_units: Vec<usize>,
    /// Compile units of files of this swap linked without a baseline: the image's functions
    /// there are recompiled by it, only their variables keep old objects.
    recompiled_units: Vec<usize>,
}

/// A type whose layout a swap changes, kept past the checks for the refusal the commit may
/// still make: a thread's frame that holds an object of the type (`WritePlan::refuse_frames`
/// in hot-process), which only the stopped process can show.
#[derive(Clone, Debug)]
pub struct ChangedLayout {
    pub name: String,
    unit: String,
    old: TypeLayout,
    new: TypeLayout,
}

impl ChangedLayout {
    /// Whether a compile unit that sees the type as `layout` sees this type (a same-named
    /// type with a third layout is another one; `None`: only declared there, this one).
    pub fn is_seen_as(&self, layout: Option<&TypeLayout>) -> bool {
        layout.is_none_or(|l| l.same_layout(&self.old) || l.same_layout(&self.new))
    }

    /// The `layout-changed` refusal for a running frame that holds an object of the type:
    /// `holder` says which ("`main` (driver.c), running on thread 7, holds its local `e`
    /// (`yaml_emitter_t`)"). On the type's declaration, like every layout refusal: the edit
    /// there is what the swap cannot take.
    pub fn frame_refusal(&self, holder: &str) -> LinkError {
        let name = &self.name;
        LinkError {
            code: LinkErrorCode::LayoutChanged,
            unit: self.unit.clone(),
            message: format!(
                "the layout of `{name}` changed ({}), and a call that is running holds an \
                 object of the old layout: {holder}; the swapped code would read it with the \
                 new one: nothing was swapped — restart the program to use the new layout, or \
                 save again once that call has returned (frames are found by the addresses in \
                 the function's code on the thread's stack: a stale one counts too)",
                layout_difference(&self.old, &self.new),
            ),
            symbol: Some(name.clone()),
            function: None,
            line: self.new.decl.clone(),
        }
    }

    /// The `layout-changed` refusal for a function whose frames hold an object of the type
    /// but whose code could not be located (`why`): whether a thread runs it is unknown, so
    /// the swap is refused as if one did.
    pub fn unlocated_refusal(&self, function: &str, why: &str) -> LinkError {
        let name = &self.name;
        LinkError {
            code: LinkErrorCode::LayoutChanged,
            unit: self.unit.clone(),
            message: format!(
                "the layout of `{name}` changed ({}), and {function} holds an object of it in                  its frame, but its code could not be located ({why}), so whether a running                  call holds an object of the old layout is unknown: nothing was swapped —                  restart the program to use the new layout",
                layout_difference(&self.old, &self.new),
            ),
            symbol: Some(name.clone()),
            function: None,
            line: self.new.decl.clone(),
        }
    }

    /// What refuses the undo of the swap that made this change while a call running that
    /// swap's code holds an object of the new layout (`holder` as for
    /// [`ChangedLayout::frame_refusal`]): the code undo goes back to reads the old one.
    pub fn undo_refusal(&self, holder: &str) -> String {
        format!(
            "undo refused: the swap it would revert changed the layout of `{}` ({}), and a              call running that swap's code holds an object of the new layout: {holder}; the              code undo goes back to would read it with the old one: nothing was written —              undo once that call has returned, or restart the program",
            self.name,
            layout_difference(&self.old, &self.new),
        )
    }
}

impl AbiChanges {
    /// The layouts this swap changes (none: no frame can hold an old one).
    pub fn changed_layouts(&self) -> Vec<ChangedLayout> {
        self.layouts
            .iter()
            .map(|c| ChangedLayout {
                name: c.new.name.clone(),
                unit: self.sources[c.unit].clone(),
                old: c.old.clone(),
                new: c.new.clone(),
            })
            .collect()
    }

    /// The type names whose users the session must look up in the executable's DWARF
    /// (`hot_object::types::image_type_users`), and the compile units to leave out (those
    /// this swap recompiles). `None`: no layout changed, nothing to read.
    pub fn image_query(&self) -> Option<(BTreeSet<String>, Vec<usize>)> {
        if self.layouts.is_empty() {
            return None;
        }
        let names = self.layouts.iter().map(|c| c.new.name.clone()).collect();
        Some((names, self.skip_units.clone()))
    }

    /// Every refusal, given the executable's users of the changed types (empty when
    /// [`AbiChanges::image_query`] asked for nothing, or the DWARF could not be read:
    /// `image_error` then says why, and a changed layout is refused anyway, since its users
    /// are unknown).
    pub fn refusals(self, image_users: &[TypeUser], image_error: Option<&str>) -> Vec<LinkError> {
        let mut errors = self.errors;
        for change in self.layouts {
            let mut variables = change.variables.clone();
            let mut functions = Vec::new();
            for user in image_users {
                if user.type_name != change.new.name {
                    continue;
                }
                if user.kind == UserKind::Function && self.recompiled_units.contains(&user.unit) {
                    continue;
                }
                // Another file's type of the same name with a third layout: not this one.
                if let Some(layout) = &user.layout {
                    if !layout.same_layout(&change.old) && !layout.same_layout(&change.new) {
                        continue;
                    }
                }
                match user.kind {
                    UserKind::Function => functions.push(describe_user(user)),
                    UserKind::Variable => variables.push(describe_user(user)),
                }
            }
            if functions.is_empty() && variables.is_empty() && image_error.is_none() {
                continue;
            }
            for users in [&mut functions, &mut variables] {
                users.sort();
                users.dedup();
            }
            let who = match (image_error, functions.is_empty(), variables.is_empty()) {
                (why, true, true) => format!(
                    "which files of the program use it is unknown ({})",
                    why.unwrap_or("no reason given")
                ),
                (_, false, true) => format!(
                    "code this swap does not recompile uses it: {}",
                    list(&functions, 6)
                ),
                (_, true, false) => format!(
                    "every function that uses it was recompiled, but existing objects keep \
                     the old layout: {}",
                    list(&variables, 6)
                ),
                (_, false, false) => format!(
                    "code this swap does not recompile uses it: {}; existing objects keep the \
                     old layout: {}",
                    list(&functions, 6),
                    list(&variables, 6)
                ),
            };
            let name = &change.new.name;
            errors.push(LinkError {
                code: LinkErrorCode::LayoutChanged,
                unit: self.sources[change.unit].clone(),
                message: format!(
                    "the layout of `{name}` changed ({}), and {who}; {}: nothing was \
                     swapped — restart the program to use the new layout",
                    layout_difference(&change.old, &change.new),
                    if functions.is_empty() && image_error.is_none() {
                        "the new code would read those objects with the new one"
                    } else {
                        "objects with the old layout may exist and that code would read them \
                         with the wrong one"
                    }
                ),
                symbol: Some(name.clone()),
                function: None,
                line: change.new.decl.clone(),
            });
        }
        errors
    }
}

fn describe_user(user: &TypeUser) -> String {
    let unit = short_file(&user.unit_name);
    match (user.kind, user.name.split_once('/')) {
        (UserKind::Variable, Some((function, var))) => format!(
            "the static `{var}` in `{}` ({unit})",
            display_name(function)
        ),
        (UserKind::Variable, None) => {
            format!("the variable `{}` ({unit})", display_name(&user.name))
        }
        (UserKind::Function, _) => format!("`{}` ({unit})", display_name(&user.name)),
    }
}

/// The last path component, for messages.
pub(crate) fn short_file(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// At most `max` items, then "and N more".
fn list(items: &[String], max: usize) -> String {
    let mut text = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > max {
        text.push_str(&format!(" and {} more", items.len() - max));
    }
    text
}

/// "8 -> 12 bytes; `h` moved from offset 4 to 8, `depth` added".
fn layout_difference(old: &TypeLayout, new: &TypeLayout) -> String {
    let size = |s: Option<u64>| s.map_or("incomplete".to_string(), |s| format!("{s} bytes"));
    let mut parts = vec![if old.size == new.size {
        format!("still {}", size(new.size))
    } else {
        format!("{} → {}", size(old.size), size(new.size))
    }];
    let mut details = Vec::new();
    for m in &new.members {
        match old.members.iter().find(|o| o.name == m.name) {
            None => details.push(format!("`{}` added", m.name)),
            // A bit field (before or after) moves by bits: within one byte its byte
            // offset says nothing.
            Some(o) if o.bit_offset.is_some() || m.bit_offset.is_some() => {
                let bit = |l: &MemberLayout| l.bit_offset.unwrap_or(l.offset.saturating_mul(8));
                if bit(o) != bit(m) {
                    details.push(format!(
                        "`{}` moved from bit {} to bit {}",
                        m.name,
                        bit(o),
                        bit(m)
                    ))
                } else if o.bit_size != m.bit_size {
                    let width = |l: &MemberLayout| match l.bit_size {
                        Some(n) => format!("{n} bits"),
                        None => "no bit field".to_string(),
                    };
                    details.push(format!(
                        "`{}` is now {} wide (was {})",
                        m.name,
                        width(m),
                        width(o)
                    ))
                } else if o.type_name != m.type_name {
                    details.push(type_changed(m, o))
                }
            }
            Some(o) if o.offset != m.offset => details.push(format!(
                "`{}` moved from offset {} to {}",
                m.name, o.offset, m.offset
            )),
            Some(o) if o.type_name != m.type_name => details.push(type_changed(m, o)),
            Some(_) => {}
        }
    }
    for o in &old.members {
        if !new.members.iter().any(|m| m.name == o.name) {
            details.push(format!("`{}` removed", o.name));
        }
    }
    if !details.is_empty() {
        parts.push(list(&details, 4));
    }
    parts.join("; ")
}

/// "`m` is now `long` (was `int`)".
fn type_changed(new: &MemberLayout, old: &MemberLayout) -> String {
    format!(
        "`{}` is now `{}` (was `{}`)",
        new.name, new.type_name, old.type_name
    )
}

/// A function defined by an object, with its binding.
fn defined_functions(object: &Object) -> FxHashMap<&str, Binding> {
    let mut defined = FxHashMap::with_capacity_and_hasher(object.atoms.len(), Default::default());
    defined.extend(
        object
            .symbols
            .iter()
            .filter(|s| defines_function(s))
            .map(|s| (s.name.as_str(), s.binding)),
    );
    defined
}

/// Whether a symbol is a named function defined in the object.
fn defines_function(s: &hot_object::Symbol) -> bool {
    s.kind == SymbolKind::Function && matches!(s.def, SymbolDef::Atom { .. }) && !s.name.is_empty()
}

/// Where a function of `object` starts in the source: the first line row of its atom.
pub(crate) fn function_line(object: &Object, name: &str) -> Option<SourceLine> {
    let id = object.symbols.iter().position(|s| {
        s.name == name && s.kind == SymbolKind::Function && matches!(s.def, SymbolDef::Atom { .. })
    })?;
    let (atom, offset) = object.symbol_location(hot_object::SymbolId(id as u32))?;
    object.line_of(atom, offset).cloned()
}

/// A reference from the executable to one of the functions asked about.
struct Reference {
    target: usize,
    /// The referencing function, or the data object holding the address.
    from: String,
    in_data: bool,
    /// The file (`STT_FILE` name) it belongs to.
    file: Option<String>,
}

/// What [`Linker::abi_changes_with`] asks the caller: the facts of a compile unit of the
/// running image for some functions (`None`: it has none), or why they could not be read.
pub type RunningFacts<'a> =
    dyn FnMut(usize, &HashSet<&str>) -> Result<Option<AbiFacts>, String> + 'a;

impl Linker {
    /// Phase one of the ABI checks (see the module docs) for a linked batch: `patch` is what
    /// [`Linker::link_units`] returned for `requests`. Pure. A file without a baseline is not
    /// checked here: see [`Linker::abi_changes_with`].
    pub fn abi_changes(&self, requests: &[LinkRequest<'_>], patch: &Patch) -> AbiChanges {
        self.abi_changes_with(requests, patch, &mut |_, _| Ok(None))
    }

    /// [`Linker::abi_changes`], with `running(unit, functions)` giving the facts of compile
    /// unit `unit` of the image as it runs (its DWARF: the signatures of `functions` and the
    /// layouts they reach; `None` when it has none). A file linked without a baseline (it,
    /// or a header it includes, changed after the build) is compared with those: without
    /// them a changed layout went unseen, and old objects were read with the new one. The
    /// caller reads the image; this stays pure. A failure to read refuses the batch.
    pub fn abi_changes_with(
        &self,
        requests: &[LinkRequest<'_>],
        patch: &Patch,
        running: &mut RunningFacts<'_>,
    ) -> AbiChanges {
        let swapped_names: HashSet<&str> = patch.swapped.iter().map(String::as_str).collect();
        let mut changes = AbiChanges {
            sources: requests.iter().map(|r| r.unit.source.clone()).collect(),
            // The image's users of a changed type in these units are this swap's own code,
            // seen in their baselines; a unit without one is asked for its variables.
            skip_units: requests
                .iter()
                .filter(|r| r.baseline.is_some())
                .filter_map(|r| r.unit.compile_unit)
                .collect(),
            recompiled_units: requests
                .iter()
                .filter(|r| r.baseline.is_none())
                .filter_map(|r| r.unit.compile_unit)
                .collect(),
            ..AbiChanges::default()
        };
        // (request, name, old, new, line) of changed signatures; (request, name, line) of
        // removed functions: both need the executable's references.
        let mut signatures: Vec<(usize, String, Signature, Signature, Option<SourceLine>)> =
            Vec::new();
        let mut removed: Vec<(usize, String, Option<SourceLine>)> = Vec::new();
        // A function that moved to another file of the same swap is not gone.
        // Each object's functions, collected once (a 2,000-function object is most of the cost
        // of these checks when a name set is built per use).
        let defined_by: Vec<FxHashMap<&str, Binding>> = requests
            .iter()
            .map(|r| defined_functions(r.object))
            .collect();
        // A `static` of the name defines it for its own file only.
        let batch_defines = |name: &str| {
            defined_by
                .iter()
                .any(|d| d.get(name).is_some_and(|&b| b != Binding::Local))
        };
        // A strong definition deleted while another file's weak default of the name is in the
        // image: the link redirected its entry there (`Link::fall_back_to_weak_defaults`).
        let fell_back = |name: &str| patch.redirected_names.iter().any(|(_, n)| n == name);
        for (k, request) in requests.iter().enumerate() {
            let Some(baseline) = request.baseline else {
                self.running_changes(k, request, &swapped_names, running, &mut changes);
                continue;
            };
            let defined = &defined_by[k];
            // The few names swapped are looked up in the object's thousands, not the other
            // way round.
            let swapped: HashSet<&str> = swapped_names
                .iter()
                .copied()
                .filter(|n| defined.contains_key(n))
                .collect();
            let mut gone: rustc_hash::FxHashSet<&str> = Default::default();
            for s in baseline.symbols.iter().filter(|s| defines_function(s)) {
                // A weak default gone is what a relink would accept too (another file's
                // definition, or none, is then used): only strong definitions count. A
                // `static` one can only be called by code of its own unit, which this swap
                // recompiles: callers of its name elsewhere call another file's function.
                let name = s.name.as_str();
                if s.binding == Binding::Global
                    && !batch_defines(name)
                    && !fell_back(name)
                    && gone.insert(name)
                {
                    removed.push((k, name.to_string(), function_line(baseline, name)));
                }
            }
            if swapped.is_empty() {
                continue;
            }
            let new = request.object.abi_facts(&swapped).unwrap_or_default();
            let old = baseline.abi_facts(&swapped).unwrap_or_default();
            for function in &new.functions {
                let Some(before) = old.function(&function.name) else {
                    continue;
                };
                if before.signature != function.signature {
                    signatures.push((
                        k,
                        function.name.clone(),
                        before.signature.clone(),
                        function.signature.clone(),
                        function
                            .decl
                            .clone()
                            .or_else(|| function_line(request.object, &function.name)),
                    ));
                }
            }
            self.layout_changes(k, &old, &new, &mut changes);
        }
        self.batch_variables(requests, &mut changes);
        if signatures.is_empty() && removed.is_empty() {
            return changes;
        }
        let targets: Vec<(usize, String)> = signatures
            .iter()
            .map(|(k, name, ..)| (*k, name.clone()))
            .chain(removed.iter().map(|(k, name, _)| (*k, name.clone())))
            .collect();
        let references = self.references(requests, &targets);
        let callers_of = |t: usize| -> Vec<String> {
            let mut callers: Vec<String> = references
                .iter()
                .filter(|r| r.target == t)
                .map(|r| {
                    let file = r.file.as_deref().map(short_file).unwrap_or("another file");
                    match r.in_data {
                        true => format!("the data `{}` ({file})", display_name(&r.from)),
                        false => format!("`{}` ({file})", display_name(&r.from)),
                    }
                })
                .collect();
            callers.sort();
            callers.dedup();
            callers
        };
        for (t, (k, name, old, new, line)) in signatures.into_iter().enumerate() {
            let callers = callers_of(t);
            if callers.is_empty() {
                continue;
            }
            changes.errors.push(LinkError {
                code: LinkErrorCode::SignatureChanged,
                unit: changes.sources[k].clone(),
                message: format!(
                    "the signature of `{}` changed from `{old}` to `{new}`, but it is still \
                     called the old way from {}, which this swap does not recompile: nothing \
                     was swapped — change and save the callers too (or restart the program)",
                    display_name(&name),
                    list(&callers, 6)
                ),
                symbol: Some(name),
                function: None,
                line,
            });
        }
        let offset = targets.len() - removed.len();
        for (i, (k, name, line)) in removed.into_iter().enumerate() {
            let callers = callers_of(offset + i);
            if callers.is_empty() {
                continue;
            }
            let startup = match self.image.home {
                crate::Home::Executable => self.index().startup_lib_lookup(&self.image, &name),
                crate::Home::Library { .. } => self.index().lib_lookup(&name),
            };
            let message = match (startup, self.index().lib_lookup(&name)) {
                // A relink would bind the callers to a library's definition (its weak
                // default, say); the swap does not send calls into another module.
                (Some(r), _) => format!(
                    "`{}` was removed from {} but is still called from {}, which this swap \
                     does not recompile; the only other definition is in {}, which a relink \
                     would use, but hot-lsp does not redirect calls into another module of the \
                     program: nothing was swapped — keep the function, or restart the program",
                    display_name(&name),
                    short_file(&changes.sources[k]),
                    list(&callers, 6),
                    short_file(&r.module.module(&self.image).path),
                ),
                // A library the program loaded itself (`dlopen`), or one ld.so preloaded:
                // the executable does not link against it.
                (None, Some(r)) => format!(
                    "`{}` was removed from {} but is still called from {}, which this swap \
                     does not recompile; a relink would fail with an undefined reference: the \
                     only other definition is in {}, a library the executable is not linked \
                     against (loaded at run time, with dlopen), which hot-lsp does not bind \
                     calls to: nothing was swapped — keep the function, or restart the program",
                    display_name(&name),
                    short_file(&changes.sources[k]),
                    list(&callers, 6),
                    short_file(&r.module.module(&self.image).path),
                ),
                (None, None) => format!(
                    "`{}` was removed from {} but is still called from {}, which this swap \
                     does not recompile (a relink would fail with an undefined reference, \
                     unless it links in a library that defines it): nothing was swapped — \
                     remove those uses first, or keep the function",
                    display_name(&name),
                    short_file(&changes.sources[k]),
                    list(&callers, 6)
                ),
            };
            changes.errors.push(LinkError {
                code: LinkErrorCode::UndefinedSymbol,
                unit: changes.sources[k].clone(),
                message,
                symbol: Some(name),
                function: None,
                line,
            });
        }
        changes
    }

    /// The types the swapped functions of one unit use whose layout changed (one change per
    /// type for the whole batch: the includers of a header see the same one).
    /// The layout changes of request `k`, linked without a baseline, against the running
    /// image's facts of its compile unit (`running`, see [`Linker::abi_changes_with`]).
    fn running_changes(
        &self,
        k: usize,
        request: &LinkRequest<'_>,
        swapped_names: &HashSet<&str>,
        running: &mut RunningFacts<'_>,
        changes: &mut AbiChanges,
    ) {
        let Some(unit) = request.unit.compile_unit else {
            return;
        };
        let defined = defined_functions(request.object);
        let swapped: HashSet<&str> = swapped_names
            .iter()
            .copied()
            .filter(|n| defined.contains_key(n))
            .collect();
        if swapped.is_empty() {
            return;
        }
        let old = match running(unit, &swapped) {
            Ok(Some(old)) => old,
            Ok(None) => return,
            Err(e) => {
                changes.errors.push(LinkError {
                    code: LinkErrorCode::LayoutChanged,
                    unit: request.unit.source.clone(),
                    message: format!(
                        "{} changed after the program was built, and the running program's \
                         debug information, which the layout checks compare it with, could not \
                         be read ({e}): nothing was swapped",
                        request.unit.source
                    ),
                    symbol: None,
                    function: None,
                    line: None,
                });
                return;
            }
        };
        let new = request.object.abi_facts(&swapped).unwrap_or_default();
        self.layout_changes(k, &old, &new, changes);
    }

    fn layout_changes(&self, k: usize, old: &AbiFacts, new: &AbiFacts, changes: &mut AbiChanges) {
        for n in new.layouts.values() {
            let Some(o) = old.layouts.get(&n.name) else {
                continue;
            };
            if o.size.is_none() || n.size.is_none() || o.same_layout(n) {
                continue;
            }
            if changes.layouts.iter().any(|c| c.new.name == n.name) {
                continue;
            }
            changes.layouts.push(LayoutChange {
                unit: k,
                old: o.clone(),
                new: n.clone(),
                variables: Vec::new(),
            });
        }
    }

    /// The variables of every file of the batch that hold a changed type, from their
    /// baselines (what the running program has). A file whose functions all kept their code
    /// (a header's includer that only passes pointers on) still has its objects. The files'
    /// own functions are not asked: all of them were recompiled (one left in place compiled
    /// to the same code with the new layout, so it does not depend on it).
    fn batch_variables(&self, requests: &[LinkRequest<'_>], changes: &mut AbiChanges) {
        if changes.layouts.is_empty() {
            return;
        }
        let names: HashSet<&str> = changes
            .layouts
            .iter()
            .map(|c| c.new.name.as_str())
            .collect();
        let users: Vec<TypeUser> = requests
            .iter()
            .filter_map(|r| r.baseline)
            .flat_map(|baseline| baseline.type_users(&names).unwrap_or_default())
            .filter(|u| u.kind == UserKind::Variable)
            .collect();
        for change in &mut changes.layouts {
            change.variables.extend(
                users
                    .iter()
                    .filter(|u| u.type_name == change.new.name)
                    .map(describe_user),
            );
        }
    }

    /// Every reference the executable holds to the named functions, outside the compile
    /// units of `requests`: direct calls and jumps, RIP-relative and absolute address
    /// operands (`lea fn(%rip)`, a GOT or PLT slot of it; on aarch64 `adrp` pairs, see
    /// [`crate::aarch64::code_references`]), and function pointers in data
    /// (`R_X86_64_RELATIVE` words, absolute words of a non-PIE executable). Decodes all of
    /// the executable's code: run only when a signature changed or a function was removed.
    fn references(
        &self,
        requests: &[LinkRequest<'_>],
        targets: &[(usize, String)],
    ) -> Vec<Reference> {
        let model = &self.image;
        let image = &model.exe.image;
        let index = self.index();
        // Link-time addresses that designate each target.
        let mut designates: HashMap<u64, usize> = HashMap::new();
        for (t, (k, name)) in targets.iter().enumerate() {
            let k = *k;
            let unit = &requests[k].unit;
            let Some(sym) = crate::resolve::exe_definition(model, index, Some(unit), name) else {
                continue;
            };
            if sym.module != crate::image::ModuleId::Exe {
                continue;
            }
            let sym = sym.get(model);
            if sym.kind != SymbolKind::Function || !sym.defined {
                continue;
            }
            designates.insert(sym.vaddr, t);
            for slot in image.got_slots.iter().filter(|s| s.symbol == *name) {
                designates.insert(slot.vaddr, t);
            }
            for (_, plt) in image.plt_entries.iter().filter(|(n, _)| n == name) {
                designates.insert(*plt, t);
            }
        }
        if designates.is_empty() {
            return Vec::new();
        }
        // Code of the units being recompiled: their references are the new objects' concern.
        let recompiled: Vec<(u64, u64)> = requests
            .iter()
            .filter_map(|r| r.unit.compile_unit)
            .filter_map(|cu| image.compile_units.get(cu))
            .flat_map(|cu| cu.ranges.iter().copied())
            .collect();
        let recompiled_tus: Vec<_> = requests.iter().filter_map(|r| r.unit.tu).collect();
        let recompiled_variables: HashSet<u64> = requests
            .iter()
            .filter_map(|r| r.unit.compile_unit)
            .filter_map(|cu| image.compile_units.get(cu))
            .flat_map(|cu| cu.variables.iter().copied())
            .collect();
        // The file a symbol belongs to: its STT_FILE group (locals), else the compile unit
        // whose code or variables hold it (globals).
        let file_of = |sym: &hot_object::ImageSymbol| {
            sym.tu
                .and_then(|tu| image.translation_units.get(tu.0 as usize).cloned())
                .or_else(|| {
                    image
                        .compile_units
                        .iter()
                        .find(|cu| {
                            cu.ranges
                                .iter()
                                .any(|&(start, end)| start <= sym.vaddr && sym.vaddr < end)
                                || cu.variables.contains(&sym.vaddr)
                        })
                        .map(|cu| cu.name.clone())
                })
        };
        let mut out = Vec::new();
        let mut instr = Instruction::default();
        let mut seen: HashSet<(usize, String)> = HashSet::new();
        for sym in image.symbols.iter().filter(|s| {
            s.defined && s.kind == SymbolKind::Function && s.size > 0 && !s.name.is_empty()
        }) {
            if recompiled
                .iter()
                .any(|&(start, end)| start <= sym.vaddr && sym.vaddr < end)
                || sym.tu.is_some_and(|tu| recompiled_tus.contains(&tu))
            {
                continue;
            }
            let Some(bytes) = image.bytes_at(sym.vaddr, sym.size as usize) else {
                continue;
            };
            if image.machine == hot_object::Machine::Aarch64 {
                for target in crate::aarch64::code_references(bytes, sym.vaddr) {
                    if let Some(&t) = designates.get(&target) {
                        if seen.insert((t, sym.name.clone())) {
                            out.push(Reference {
                                target: t,
                                from: sym.name.clone(),
                                in_data: false,
                                file: file_of(sym),
                            });
                        }
                    }
                }
                continue;
            }
            let mut decoder = Decoder::with_ip(64, bytes, sym.vaddr, DecoderOptions::NONE);
            while decoder.can_decode() {
                decoder.decode_out(&mut instr);
                let mut hit = None;
                if matches!(
                    instr.flow_control(),
                    FlowControl::UnconditionalBranch
                        | FlowControl::ConditionalBranch
                        | FlowControl::Call
                ) {
                    hit = designates.get(&instr.near_branch_target()).copied();
                }
                if hit.is_none() && instr.is_ip_rel_memory_operand() {
                    hit = designates.get(&instr.ip_rel_memory_address()).copied();
                }
                if hit.is_none() {
                    for op in 0..instr.op_count() {
                        let value = match instr.op_kind(op) {
                            OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64 => {
                                instr.immediate(op)
                            }
                            _ => continue,
                        };
                        if let Some(&t) = designates.get(&value) {
                            hit = Some(t);
                            break;
                        }
                    }
                }
                if let Some(t) = hit {
                    if seen.insert((t, sym.name.clone())) {
                        out.push(Reference {
                            target: t,
                            from: sym.name.clone(),
                            in_data: false,
                            file: file_of(sym),
                        });
                    }
                }
            }
        }
        // Function pointers in data: RELATIVE words of a PIE, absolute words otherwise.
        let mut words: Vec<(u64, usize)> = image
            .relative_relocs
            .iter()
            .filter_map(|&(at, addend)| Some((at, *designates.get(&(addend as u64))?)))
            .collect();
        if !image.position_independent {
            for section in image.sections.iter().filter(|s| !s.executable) {
                for (i, chunk) in section.bytes.chunks_exact(8).enumerate() {
                    let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                    if let Some(&t) = designates.get(&word) {
                        words.push((section.vaddr + 8 * i as u64, t));
                    }
                }
            }
        }
        for (at, t) in words {
            let holder = image.symbols.iter().find(|s| {
                s.defined
                    && s.kind == SymbolKind::Object
                    && s.vaddr <= at
                    && at < s.vaddr.saturating_add(s.size.max(1))
            });
            let Some(holder) = holder else { continue };
            if holder.tu.is_some_and(|tu| recompiled_tus.contains(&tu))
                || recompiled_variables.contains(&holder.vaddr)
            {
                continue;
            }
            if seen.insert((t, holder.name.clone())) {
                out.push(Reference {
                    target: t,
                    from: holder.name.clone(),
                    in_data: true,
                    file: file_of(holder),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hot_object::types::MemberLayout;

    fn layout(size: u64, members: &[(&str, u64, &str)]) -> TypeLayout {
        TypeLayout {
            name: "struct shape".into(),
            size: Some(size),
            members: members
                .iter()
                .map(|&(name, offset, ty)| MemberLayout {
                    name: name.into(),
                    offset,
                    bit_offset: None,
                    bit_size: None,
                    type_name: ty.into(),
                })
                .collect(),
            decl: None,
        }
    }

    #[test]
    fn a_layout_difference_names_sizes_and_members() {
        let old = layout(8, &[("w", 0, "int"), ("h", 4, "int")]);
        let grown = layout(12, &[("w", 0, "int"), ("depth", 4, "int"), ("h", 8, "int")]);
        assert_eq!(
            layout_difference(&old, &grown),
            "8 bytes → 12 bytes; `depth` added, `h` moved from offset 4 to 8"
        );
        let retyped = layout(8, &[("w", 0, "int"), ("h", 4, "float")]);
        assert_eq!(
            layout_difference(&old, &retyped),
            "still 8 bytes; `h` is now `float` (was `int`)"
        );
        let shrunk = layout(4, &[("w", 0, "int")]);
        assert_eq!(
            layout_difference(&old, &shrunk),
            "8 bytes → 4 bytes; `h` removed"
        );
        assert!(old.same_layout(&layout(8, &[("w", 0, "int"), ("h", 4, "int")])));
        assert!(!old.same_layout(&retyped));
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        let items: Vec<String> = (0..9).map(|i| format!("f{i}")).collect();
        assert_eq!(list(&items[..2], 6), "f0, f1");
        assert_eq!(list(&items, 6), "f0, f1, f2, f3, f4, f5 and 3 more");
    }

    #[test]
    fn users_are_named_by_kind_and_file() {
        let user = |name: &str, kind| TypeUser {
            name: name.into(),
            kind,
            type_name: "struct shape".into(),
            layout: None,
            unit: 0,
            unit_name: "/src/app/main.c".into(),
        };
        assert_eq!(
            describe_user(&user("describe", UserKind::Function)),
            "`describe` (main.c)"
        );
        assert_eq!(
            describe_user(&user("box", UserKind::Variable)),
            "the variable `box` (main.c)"
        );
        assert_eq!(
            describe_user(&user("tick/cache", UserKind::Variable)),
            "the static `cache` in `tick` (main.c)"
        );
        assert_eq!(
            describe_user(&user("_ZN3geo4areaERKNS_5ShapeE", UserKind::Function)),
            "`geo::area(geo::Shape const&)` (main.c)"
        );
    }
}
