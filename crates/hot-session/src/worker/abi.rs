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
pub(super) struct FrameGuard {
    pub(super) change: hot_link::ChangedLayout,
    pub(super) function: String,
    pub(super) unit_name: String,
    /// "`e` (`yaml_emitter_t`)", one per variable.
    pub(super) variables: Vec<String>,
}

/// `patch` if the batch passes the checks, else the refusals (nothing has been written).
/// `image` is the image the batch was linked into (the executable, or a library), whose
/// DWARF names the users of a changed type. A changed layout that passes leaves in `guards`
/// the functions whose frames must not be live when the swap commits.
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
        let changes = linker.abi_changes(requests, &patch);
        let mut holders = Vec::new();
        let (users, error) = match changes.image_query() {
            None => (Vec::new(), None),
            Some((names, skip)) => {
                let names: HashSet<&str> = names.iter().map(String::as_str).collect();
                let file = match image.library() {
                    Some(path) => std::fs::read(path)
                        .map(|bytes| (path.to_string(), bytes))
                        .map_err(|e| format!("cannot read {path}: {e}")),
                    None => program
                        .debuggee
                        .read_executable()
                        .map_err(|e| e.to_string()),
                };
                match file {
                    Ok((path, bytes)) => {
                        match hot_object::types::image_type_uses(
                            Path::new(&path),
                            &bytes,
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
                    Err(e) => (Vec::new(), Some(e)),
                }
            }
        };
        // The new objects' own frames too: a function of a recompiled file swapped by an
        // earlier save runs a body the executable's DWARF does not describe.
        let changed = changes.changed_layouts();
        let names: HashSet<&str> = changed.iter().map(|c| c.name.as_str()).collect();
        if !names.is_empty() {
            for request in requests {
                holders.extend(request.object.frame_holders(&names).unwrap_or_default());
            }
        }
        let guards = frame_guards(&changed, &holders);
        (changes.refusals(&users, error.as_deref()), guards)
    }));
    let errors = match run {
        Ok((errors, found)) => {
            *guards = found;
            errors
        }
        Err(panic) => {
            // A bug in the checks is no reason to refuse a swap the link accepted.
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            tracing::error!("the ABI checks panicked (skipped): {what}");
            Vec::new()
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

/// One guard per function and changed type, from the frame holders the DWARF found.
fn frame_guards(
    changes: &[hot_link::ChangedLayout],
    holders: &[hot_object::types::FrameHolder],
) -> Vec<FrameGuard> {
    let mut guards: Vec<FrameGuard> = Vec::new();
    for holder in holders {
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
        match guards
            .iter_mut()
            .find(|g| g.function == holder.function && g.change.name == change.name)
        {
            Some(guard) => {
                if !guard.variables.contains(&variable) {
                    guard.variables.push(variable);
                }
            }
            None => guards.push(FrameGuard {
                change: change.clone(),
                function: holder.function.clone(),
                unit_name: holder.unit_name.clone(),
                variables: vec![variable],
            }),
        }
    }
    guards
}

/// The code of every guarded function (its body in the image and every body an earlier
/// patch placed for it), named after the function, for `WritePlan::refuse_frames`.
pub(super) fn guarded_bodies(
    program: &mut Program,
    image: &UnitImage,
    guards: &[FrameGuard],
) -> Vec<(Range<u64>, String)> {
    let names: HashSet<&str> = guards.iter().map(|g| g.function.as_str()).collect();
    bodies_named(program, image, &names)
}

/// The refusals for the frames found in guarded functions, one per changed type, naming
/// every function met, its threads and the variables it holds.
pub(super) fn frame_refusals(
    guards: &[FrameGuard],
    frames: &[hot_process::LiveFrame],
) -> Vec<LinkError> {
    let mut out: Vec<(&hot_link::ChangedLayout, Vec<String>)> = Vec::new();
    for guard in guards {
        let tids: Vec<String> = frames
            .iter()
            .filter(|f| f.function == guard.function)
            .map(|f| f.tid.to_string())
            .collect();
        if tids.is_empty() {
            continue;
        }
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
            Some((_, holders)) => holders.push(holder),
            None => out.push((&guard.change, vec![holder])),
        }
    }
    out.into_iter()
        .map(|(change, holders)| change.frame_refusal(&holders.join("; ")))
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
    bodies_named(program, image, &swapped)
}

/// The bodies of the functions `names` in `module` and those earlier patches placed.
fn bodies_named(
    program: &mut Program,
    image: &UnitImage,
    names: &HashSet<&str>,
) -> Vec<(Range<u64>, String)> {
    if program.module_of(image).is_none() {
        return Vec::new();
    }
    let mut out = program.functions_named(image, names);
    for name in names {
        for range in program.bodies.get(*name).into_iter().flatten() {
            out.push((range.clone(), name.to_string()));
        }
    }
    out
}

/// After a commit: the bodies it placed, so that the next swap of the same functions knows
/// where their frames may still run. Never forgotten (undo leaves old bodies in place).
pub(super) fn remember_bodies(program: &mut Program, patch: &Patch) {
    let swapped: HashSet<&str> = patch.swapped.iter().map(String::as_str).collect();
    for body in patch
        .bodies
        .iter()
        .filter(|b| swapped.contains(b.name.as_str()))
    {
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
            Some((_, tids)) => tids.push(frame.tid),
            None => functions.push((&frame.function, vec![frame.tid])),
        }
    }
    let mut out = Vec::new();
    for (function, tids) in functions {
        let Some((unit, line)) = objects.iter().enumerate().find_map(|(i, (_, object))| {
            let id = object.symbols.iter().position(|s| {
                s.name == function
                    && s.kind == hot_object::SymbolKind::Function
                    && matches!(s.def, hot_object::SymbolDef::Atom { .. })
            })?;
            let (atom, offset) = object.symbol_location(hot_object::SymbolId(id as u32))?;
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
