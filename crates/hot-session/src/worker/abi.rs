//! The ABI checks of a swap (`hot_link`'s `abi.rs`: changed layouts, changed signatures,
//! removed functions still called), run between the link and the apply, with the one part
//! the pure linker leaves to the session: reading the executable's DWARF for the users of a
//! changed type, done only when a layout did change. Also the other side of a swap's
//! stack scan: which swapped functions a thread was running in when it committed
//! (`still-running`, information).

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use hot_link::{LinkError, LinkRequest, Patch};

use crate::program::{Program, UnitImage};
use crate::{Diagnostic, Severity};

/// A function whose frame holds an object of a type whose layout the swap changes (by
/// value, or through a pointer, reference, array or member, as its DWARF says): a thread
/// running it when the swap commits refuses the swap (`WritePlan::refuse_frames`), since
/// its frame keeps the old-layout object and the swapped code it calls would read that
/// with the new layout.
#[derive(Clone, Debug)]
pub(crate) struct FrameGuard {
    pub(super) change: hot_link::ChangedLayout,
    pub(super) function: String,
    pub(super) unit_name: String,
    /// "`e` (`yaml_emitter_t`)", one per variable.
    pub(super) variables: Vec<String>,
    /// Every piece of code running it now, at run time: its code in the image from its own
    /// DWARF entries (a gcc clone `f.constprop.0`, a split `f.part.0`, a `.cold` part
    /// included) and every body an earlier save placed for one of its symbols.
    pub(super) ranges: Vec<Range<u64>>,
    /// Its symbols in the objects this swap links (empty: it is the image's only): the
    /// bodies this swap places for them run the new layout, which undo must guard.
    pub(super) symbols: Vec<String>,
}

/// `patch` if the batch passes the checks, else the refusals (nothing has been written).
/// `image` is the image the batch was linked into (the executable, or a library), whose
/// DWARF names the users of a changed type. A changed layout that passes leaves in `guards`
/// the functions whose frames must not be live when the swap commits. Checks that fail
/// (a panic, DWARF that cannot be read, a holder whose code cannot be located) refuse the
/// swap: an empty `guards` must mean that no frame can hold an old object.
pub(super) fn check(
    program: &Program,
    image: &UnitImage,
    requests: &[LinkRequest<'_>],
    patch: Patch,
    guards: &mut Vec<FrameGuard>,
) -> Result<Patch, Vec<LinkError>> {
    guards.clear();
    let Some(linker) = program.linker_of(image) else {
        return Ok(patch);
    };
    let started = Instant::now();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sources: Vec<&str> = requests.iter().map(|r| r.unit.source.as_str()).collect();
        crate::fault::abi_checks(&sources);
        // The image's file, read once and only if a check needs its DWARF.
        let image_file: std::cell::OnceCell<Result<(String, Vec<u8>), String>> =
            std::cell::OnceCell::new();
        let read_image = || {
            image_file.get_or_init(|| match image.library() {
                Some(path) => std::fs::read(path)
                    .map(|bytes| (path.to_string(), bytes))
                    .map_err(|e| format!("cannot read {path}: {e}")),
                None => program
                    .debuggee
                    .read_executable()
                    .map_err(|e| e.to_string()),
            })
        };
        // A file without a baseline is compared with the compile unit the image runs.
        let changes = linker.abi_changes_with(requests, &patch, &mut |unit, functions| {
            let (path, bytes) = read_image().as_ref().map_err(Clone::clone)?;
            hot_object::types::image_abi_facts(Path::new(path), bytes, unit, functions).map(Some)
        });
        let mut holders = Vec::new();
        let (users, error) = match changes.image_query() {
            None => (Vec::new(), None),
            Some((names, skip)) => {
                let names: HashSet<&str> = names.iter().map(String::as_str).collect();
                let file = read_image();
                match file {
                    Ok((path, bytes)) => {
                        match hot_object::types::image_type_uses(
                            Path::new(path),
                            bytes,
                            &names,
                            &skip,
                        ) {
                            Ok((users, frames)) => {
                                holders = frames;
                                (users, None)
                            }
                            Err(e) => (Vec::new(), Some(e)),
                        }
                    }
                    Err(e) => (Vec::new(), Some(e.clone())),
                }
            }
        };
        // The new objects' own frames too: a function of a recompiled file swapped (or
        // added) by an earlier save runs a body the executable's DWARF does not describe.
        let changed = changes.changed_layouts();
        let names: HashSet<&str> = changed.iter().map(|c| c.name.as_str()).collect();
        let mut unreadable = Vec::new();
        let mut new_holders = Vec::new();
        if !names.is_empty() {
            for request in requests {
                match request.object.frame_holders(&names) {
                    Ok(found) => new_holders.extend(found),
                    Err(e) => unreadable.push((request.unit.source.clone(), e)),
                }
            }
        }
        let (guards, unlocated) = frame_guards(program, image, &changed, &holders, &new_holders);
        let mut errors = changes.refusals(&users, error.as_deref());
        for change in &changed {
            for (source, e) in &unreadable {
                errors.push(change.unlocated_refusal(
                    &format!("the functions of {source}"),
                    &format!("its DWARF could not be read: {e}"),
                ));
            }
        }
        errors.extend(unlocated);
        (errors, guards)
    }));
    let errors = match run {
        Ok((errors, found)) => {
            *guards = found;
            errors
        }
        Err(panic) => {
            // A bug in the checks: whether old objects would be read with a new layout is
            // unknown, so nothing is swapped (swapping with no guards could corrupt them).
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".to_string());
            tracing::error!("the ABI checks panicked (the swap is refused): {what}");
            checks_failed(requests, &what)
        }
    };
    tracing::debug!(
        micros = started.elapsed().as_micros() as u64,
        refusals = errors.len(),
        "abi checks"
    );
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(errors)
    }
}

/// The refusal of a swap whose ABI checks failed internally (`what`), on each file.
fn checks_failed(requests: &[LinkRequest<'_>], what: &str) -> Vec<LinkError> {
    let sources: Vec<&str> = requests.iter().map(|r| r.unit.source.as_str()).collect();
    let message = format!(
        "the ABI checks of this swap of {} (changed layouts and signatures, removed \
         functions still called, running frames holding a changed type) failed with an \
         internal error: {what}; whether the swap is safe is unknown, so nothing was \
         swapped — please report this with the file",
        sources.join(", ")
    );
    sources
        .iter()
        .map(|source| LinkError {
            code: hot_link::LinkErrorCode::LayoutChanged,
            unit: source.to_string(),
            message: message.clone(),
            symbol: None,
            function: None,
            line: None,
        })
        .collect()
}

/// One guard per function and changed type, from the frame holders the image's DWARF
/// (`image_holders`) and the linked objects' (`object_holders`) found, with the code that
/// runs it; and the refusals for holders whose code cannot be located.
fn frame_guards(
    program: &Program,
    image: &UnitImage,
    changes: &[hot_link::ChangedLayout],
    image_holders: &[hot_object::types::FrameHolder],
    object_holders: &[hot_object::types::FrameHolder],
) -> (Vec<FrameGuard>, Vec<LinkError>) {
    use hot_object::types::HolderCode;
    let mut guards: Vec<FrameGuard> = Vec::new();
    let mut unlocated: Vec<LinkError> = Vec::new();
    let module = program.module_of(image);
    for holder in image_holders.iter().chain(object_holders) {
        let Some(change) = changes
            .iter()
            .find(|c| c.name == holder.type_name && c.is_seen_as(holder.layout.as_ref()))
        else {
            continue;
        };
        let variable = match holder.variable.split_once('/') {
            Some((inlined, name)) => format!(
                "`{name}` (`{}`, of the call of `{}` inlined there)",
                holder.variable_type,
                hot_object::display_name(inlined)
            ),
            None => format!("`{}` (`{}`)", holder.variable, holder.variable_type),
        };
        let unit = holder
            .unit_name
            .rsplit('/')
            .next()
            .unwrap_or(&holder.unit_name);
        let who = || {
            format!(
                "`{}` ({unit}), whose frame holds {variable}",
                hot_object::display_name(&holder.function)
            )
        };
        // Where it runs: never by its DWARF name alone (`run` is `run.constprop.0`).
        let (ranges, symbols) = match (&holder.code, module) {
            (HolderCode::Unknown(why), _) => {
                unlocated.push(change.unlocated_refusal(&who(), why));
                continue;
            }
            (_, None) => {
                unlocated.push(change.unlocated_refusal(
                    &who(),
                    &format!(
                        "{} is not mapped in the program",
                        image.library().unwrap_or("the executable")
                    ),
                ));
                continue;
            }
            (HolderCode::Addresses(code), Some(module)) => {
                let mut ranges: Vec<Range<u64>> = code
                    .iter()
                    .map(|r| {
                        let start = module.runtime(hot_link::Vaddr(r.start)).0;
                        start..start.saturating_add(r.end - r.start)
                    })
                    .collect();
                // The image symbols of its code (`run.constprop.0`, `run.cold`) name the
                // bodies earlier saves placed for it.
                let names: HashSet<&str> = image_functions(module)
                    .filter(|s| {
                        code.iter()
                            .any(|r| s.vaddr < r.end && s.vaddr + s.size.max(1) > r.start)
                    })
                    .map(|s| s.name.as_str())
                    .collect();
                ranges.extend(placed_bodies(program, &names));
                (ranges, Vec::new())
            }
            (HolderCode::Symbols(symbols), Some(module)) => {
                let names: HashSet<&str> = symbols.iter().map(String::as_str).collect();
                let ranges = bodies_named(program, module, &names)
                    .into_iter()
                    .map(|(range, _)| range)
                    .collect();
                (ranges, symbols.clone())
            }
        };
        match guards
            .iter_mut()
            .find(|g| g.function == holder.function && g.change.name == change.name)
        {
            Some(guard) => {
                if !guard.variables.contains(&variable) {
                    guard.variables.push(variable);
                }
                guard.ranges.extend(ranges);
                guard.symbols.extend(symbols);
            }
            None => guards.push(FrameGuard {
                change: change.clone(),
                function: holder.function.clone(),
                unit_name: holder.unit_name.clone(),
                variables: vec![variable],
                ranges,
                symbols,
            }),
        }
    }
    for guard in &mut guards {
        guard.ranges.sort_by_key(|r| (r.start, r.end));
        guard.ranges.dedup();
        guard.symbols.sort();
        guard.symbols.dedup();
    }
    (guards, unlocated)
}

/// The code of every guarded function, named after the function, for
/// `WritePlan::refuse_frames`.
pub(super) fn guarded_bodies(guards: &[FrameGuard]) -> Vec<(Range<u64>, String)> {
    guards
        .iter()
        .flat_map(|g| g.ranges.iter().map(|r| (r.clone(), g.function.clone())))
        .collect()
}

/// For undo of the swap that placed `patch`: the guards of the functions of its objects
/// whose frames hold a type it changed, each with the code that runs their new layout (the
/// bodies of their symbols, this patch's among them), so that undo is refused while a call
/// of it holds a new-layout object. Called once the patch's bodies are remembered.
pub(super) fn undo_guards(
    program: &Program,
    image: &UnitImage,
    guards: &[FrameGuard],
) -> Vec<FrameGuard> {
    let Some(module) = program.module_of(image) else {
        return Vec::new();
    };
    guards
        .iter()
        .filter(|g| !g.symbols.is_empty())
        .map(|g| {
            let names: HashSet<&str> = g.symbols.iter().map(String::as_str).collect();
            FrameGuard {
                ranges: bodies_named(program, module, &names)
                    .into_iter()
                    .map(|(range, _)| range)
                    .collect(),
                ..g.clone()
            }
        })
        .collect()
}

/// The refusals for the frames found in guarded functions, one per changed type, naming
/// every function met, its threads and the variables it holds (`refusal` words it: a
/// save's `frame_refusal`, or undo's).
pub(super) fn frame_refusals<T>(
    guards: &[FrameGuard],
    frames: &[hot_process::LiveFrame],
    refusal: impl Fn(&hot_link::ChangedLayout, &str) -> T,
) -> Vec<T> {
    let mut out: Vec<(&hot_link::ChangedLayout, Vec<String>)> = Vec::new();
    for guard in guards {
        let mut tids: Vec<i32> = frames
            .iter()
            .filter(|f| f.function == guard.function)
            .map(|f| f.tid)
            .collect();
        tids.sort_unstable();
        tids.dedup();
        if tids.is_empty() {
            continue;
        }
        let tids: Vec<String> = tids.iter().map(|t| t.to_string()).collect();
        let unit = guard
            .unit_name
            .rsplit('/')
            .next()
            .unwrap_or(&guard.unit_name);
        let holder = format!(
            "`{}` ({unit}), running on thread{} {}, holds {} {}",
            hot_object::display_name(&guard.function),
            if tids.len() == 1 { "" } else { "s" },
            tids.join(", "),
            if guard.variables.len() == 1 {
                "its local"
            } else {
                "its locals"
            },
            guard.variables.join(", ")
        );
        match out.iter_mut().find(|(c, _)| c.name == guard.change.name) {
            Some((_, holders)) => {
                if !holders.contains(&holder) {
                    holders.push(holder);
                }
            }
            None => out.push((&guard.change, vec![holder])),
        }
    }
    out.into_iter()
        .map(|(change, holders)| refusal(change, &holders.join("; ")))
        .collect()
}

/// The code ranges that run each swapped function's current code right now: its body in the
/// executable and every body an earlier patch placed for it (a frame of any of them still
/// finishes there), for [`hot_process::WritePlan::watch`].
pub(super) fn old_bodies(
    program: &mut Program,
    image: &UnitImage,
    patch: &Patch,
) -> Vec<(Range<u64>, String)> {
    let swapped: HashSet<&str> = patch.swapped.iter().map(String::as_str).collect();
    // Looked up in the image's index of functions by name: a walk over every symbol of a
    // 100,000-function image took 5 ms a save.
    let mut out = program.functions_named(image, &swapped);
    for name in &swapped {
        for range in program.bodies.get(*name).into_iter().flatten() {
            out.push((range.clone(), name.to_string()));
        }
    }
    // A body remembered that is the image's own range too is watched once.
    out.sort_by_key(|(range, name)| (range.start, range.end, name.clone()));
    out.dedup();
    out
}

/// The bodies `patch` placed for the functions it swapped or added, named after them.
pub(super) fn placed(patch: &Patch) -> Vec<(Range<u64>, String)> {
    patch
        .bodies
        .iter()
        .filter(|b| patch.swapped.contains(&b.name) || patch.added.contains(&b.name))
        .map(|b| (b.addr.0..b.addr.0.saturating_add(b.size), b.name.clone()))
        .collect()
}

/// The functions `module`'s image defines.
fn image_functions(module: &hot_link::Module) -> impl Iterator<Item = &hot_object::ImageSymbol> {
    module
        .image
        .symbols
        .iter()
        .filter(|s| s.defined && s.kind == hot_object::SymbolKind::Function)
}

/// The bodies earlier patches placed for the functions `names`.
fn placed_bodies<'a>(
    program: &'a Program,
    names: &'a HashSet<&str>,
) -> impl Iterator<Item = Range<u64>> + 'a {
    names
        .iter()
        .flat_map(|name| program.bodies.get(*name).into_iter().flatten().cloned())
}

/// The bodies of the functions `names` in `module` and those earlier patches placed.
fn bodies_named(
    program: &Program,
    module: &hot_link::Module,
    names: &HashSet<&str>,
) -> Vec<(Range<u64>, String)> {
    let mut out: Vec<(Range<u64>, String)> = image_functions(module)
        .filter(|s| s.size > 0 && names.contains(s.name.as_str()))
        .map(|s| {
            let start = module.runtime(hot_link::Vaddr(s.vaddr)).0;
            (start..start.saturating_add(s.size), s.name.clone())
        })
        .collect();
    for name in names {
        for range in program.bodies.get(*name).into_iter().flatten() {
            out.push((range.clone(), name.to_string()));
        }
    }
    // A body remembered that is the image's own range too is watched once.
    out.sort_by_key(|(range, name)| (range.start, range.end, name.clone()));
    out.dedup();
    out
}

/// After a commit: the bodies it placed (of functions swapped and added, their `.cold`
/// parts, the unchanged ones copied with them: code a thread may run from now on), so that
/// the next swap of the same functions knows where their frames may still run, and guards
/// them. Never forgotten (undo leaves old bodies in place).
pub(super) fn remember_bodies(program: &mut Program, patch: &Patch) {
    for body in &patch.bodies {
        program
            .bodies
            .entry(body.name.clone())
            .or_default()
            .push(body.addr.0..body.addr.0.saturating_add(body.size));
    }
}

/// One information diagnostic per swapped function that a thread was running when the swap
/// committed, on the line where the function starts in the new object, with the index of
/// the unit (in `objects`) whose file it goes to.
pub(super) fn live_diagnostics(
    live: &[hot_process::LiveFrame],
    objects: &[(&Path, &hot_object::Object)],
) -> Vec<(usize, Diagnostic)> {
    let mut functions: Vec<(&str, Vec<i32>)> = Vec::new();
    for frame in live {
        match functions.iter_mut().find(|(f, _)| *f == frame.function) {
            // One thread in two ranges of the function (its body in the image and the same
            // body remembered) is named once.
            Some((_, tids)) if tids.contains(&frame.tid) => {}
            Some((_, tids)) => tids.push(frame.tid),
            None => functions.push((&frame.function, vec![frame.tid])),
        }
    }
    let mut out = Vec::new();
    for (function, tids) in functions {
        let Some((unit, line)) = objects.iter().enumerate().find_map(|(i, (_, object))| {
            let (atom, offset) = object.function_location(function)?;
            Some((i, object.line_of(atom, offset).cloned()))
        }) else {
            continue;
        };
        let threads: Vec<String> = tids.iter().map(|t| t.to_string()).collect();
        let message = format!(
            "`{}` was running when it was swapped (thread{} {}): the calls already in it \
             finish in the old body; the change takes effect on its next call",
            hot_object::display_name(function),
            if tids.len() == 1 { "" } else { "s" },
            threads.join(", ")
        );
        out.push((
            unit,
            Diagnostic {
                file: line
                    .as_ref()
                    .map_or_else(|| objects[unit].0.to_owned(), |l| l.file.clone()),
                line: line.as_ref().map_or(1, |l| l.line),
                column: line.as_ref().map_or(1, |l| l.column.max(1)),
                end_line: None,
                end_column: None,
                severity: Severity::Information,
                code: STILL_RUNNING.to_string(),
                message,
            },
        ));
    }
    out
}

/// The code of [`live_diagnostics`].
pub(crate) const STILL_RUNNING: &str = "still-running";
