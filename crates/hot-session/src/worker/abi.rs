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

/// `patch` if the batch passes the checks, else the refusals (nothing has been written).
/// `image` is the image the batch was linked into (the executable, or a library), whose
/// DWARF names the users of a changed type.
pub(super) fn check(
    program: &Program,
    image: &UnitImage,
    requests: &[LinkRequest<'_>],
    patch: Patch,
) -> Result<Patch, Vec<LinkError>> {
    let Some(linker) = program.linker_of(image) else {
        return Ok(patch);
    };
    let started = Instant::now();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let changes = linker.abi_changes(requests, &patch);
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
                        match hot_object::types::image_type_users(
                            Path::new(&path),
                            &bytes,
                            &names,
                            &skip,
                        ) {
                            Ok(users) => (users, None),
                            Err(e) => (Vec::new(), Some(e)),
                        }
                    }
                    Err(e) => (Vec::new(), Some(e)),
                }
            }
        };
        changes.refusals(&users, error.as_deref())
    }));
    let errors = match run {
        Ok(errors) => errors,
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

/// The code ranges that run each swapped function's current code right now: its body in the
/// executable and every body an earlier patch placed for it (a frame of any of them still
/// finishes there), for [`hot_process::WritePlan::watch`].
pub(super) fn old_bodies(
    program: &Program,
    image: &UnitImage,
    patch: &Patch,
) -> Vec<(Range<u64>, String)> {
    let Some(module) = program.module_of(image) else {
        return Vec::new();
    };
    let swapped: HashSet<&str> = patch.swapped.iter().map(String::as_str).collect();
    let mut out: Vec<(Range<u64>, String)> = module
        .image
        .symbols
        .iter()
        .filter(|s| {
            s.defined
                && s.kind == hot_object::SymbolKind::Function
                && s.size > 0
                && swapped.contains(s.name.as_str())
        })
        .map(|s| {
            let start = module.runtime(hot_link::Vaddr(s.vaddr)).0;
            (start..start.saturating_add(s.size), s.name.clone())
        })
        .collect();
    for name in &patch.swapped {
        for range in program.bodies.get(name).into_iter().flatten() {
            out.push((range.clone(), name.clone()));
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
