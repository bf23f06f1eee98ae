//! Frames that still run an old body built with gcc's `-fipa-ra` (-O2 and up, or asked for):
//! such a caller keeps values in the call-clobbered registers its same-file callees do not
//! write. A save that makes one of its direct callees write more of them (the callee itself
//! swapped, or a function it calls) would corrupt that frame's state the next time it calls:
//! the frame keeps running the old body (a main loop never returns), and only its new body,
//! compiled against the new callee, knows better. An undo is the same change the other way:
//! a frame in a swapped body keeps running it after the undo, and the callee it was compiled
//! against may be given back its older, wider body.
//!
//! Callers that are not running are safe: they were compiled again with the new callee and
//! are either unchanged (right under the new clobber sets) or swapped. So the bodies to look
//! at are the old bodies of the functions the change replaces (`WritePlan::watch`), and those
//! earlier swaps retired while a frame may still run them, that belong to a unit whose
//! `DW_AT_producer` shows `-fipa-ra` in force. Each of their direct calls to a function of
//! the same unit is asked of `hot_link::clobbers` (the callee's set before the change, as
//! the image has it for an image body, and after it); a body with a call whose set grows, or
//! whose sets cannot be worked out soundly, goes into `WritePlan::refuse_frames`, so a thread
//! with a frame in it when the change commits (threads stopped, the same stack scan as every
//! other frame check) refuses it with nothing written, as `signature-changed` on the callee
//! (an undo: its error message). Any frame in the body counts, not only one returning from
//! that call: a loop stopped in `usleep` makes the call on its next round.
//! No unit built with -fipa-ra (every -O0/-O1/-Og or `-fno-ipa-ra` build): nothing is
//! decoded.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use hot_link::clobbers::{self, ClobberMemo, CodeView, Estimate};
use hot_link::{LinkError, LinkErrorCode, Patch};

use crate::program::{Program, UnitImage};

/// Names in `WritePlan::refuse_frames` that stand for a [`CallGuard`] (its index follows):
/// no symbol is named so.
const KEY: &str = "\u{0}ipa-ra ";

/// An old body a frame must not run while the swap commits.
#[derive(Clone, Debug)]
pub(super) struct CallGuard {
    /// The caller (symbol name), whose old body this is.
    caller: String,
    /// Its code from the second byte on: a word at a body's first byte is a pointer to the
    /// function (`__libc_start_main` holds `main`'s), never a frame.
    range: Range<u64>,
    why: Why,
}

#[derive(Clone, Debug)]
enum Why {
    /// A direct callee (symbol name) that would clobber `added` too.
    Grows { callee: String, added: Vec<String> },
    /// Code on the way could not be decoded, or the set the caller was compiled against
    /// only over-estimated (the direct callee it was asked for, when known).
    Undecided {
        callee: Option<String>,
        reason: String,
    },
}

/// A view of the program's code at runtime addresses: the executable's (or library's)
/// functions from its file, bodies earlier swaps placed (read from the process on demand),
/// and for the view after the swap the patch's new bodies and data; entries redirected to
/// the body they run.
struct View<'a> {
    redirects: HashMap<u64, u64>,
    functions: &'a HashMap<u64, u64>,
    /// `functions` by start, for the body an address lies inside of.
    sorted: &'a [(u64, u64)],
    module: &'a hot_link::Module,
    placed: &'a HashMap<u64, u64>,
    /// Read the bodies placed by earlier swaps (none in the image's own view).
    with_placed: bool,
    patch: Option<&'a HashMap<u64, &'a [u8]>>,
    /// Bytes the change writes before its code runs (its arena contents, data updated in
    /// place), over the process's memory.
    data: &'a [(u64, &'a [u8])],
    program: &'a Program,
}

impl View<'_> {
    fn placed_body(&self, start: u64, end: u64) -> Option<(u64, Cow<'_, [u8]>)> {
        let len = usize::try_from(end.saturating_sub(start)).ok()?;
        let bytes = self.program.debuggee.read_memory(start, len).ok()?;
        Some((start, Cow::Owned(bytes)))
    }

    fn image_body(&self, start: u64, size: u64) -> Option<(u64, Cow<'_, [u8]>)> {
        let bytes = self.module.image.bytes_at(
            start.wrapping_sub(self.module.bias),
            usize::try_from(size).ok()?,
        )?;
        Some((start, Cow::Borrowed(bytes)))
    }
}

impl CodeView for View<'_> {
    fn body_at(&self, addr: u64) -> Option<(u64, Cow<'_, [u8]>)> {
        let start = self.redirects.get(&addr).copied().unwrap_or(addr);
        if let Some(bytes) = self.patch.and_then(|p| p.get(&start)) {
            return Some((start, Cow::Borrowed(bytes)));
        }
        if let Some(&end) = self.placed.get(&start).filter(|_| self.with_placed) {
            return self.placed_body(start, end);
        }
        let &size = self.functions.get(&start)?;
        self.image_body(start, size)
    }

    fn body_containing(&self, addr: u64) -> Option<(u64, Cow<'_, [u8]>)> {
        let inside = |start: u64, len: u64| start < addr && addr - start < len;
        if let Some((&start, bytes)) = self
            .patch
            .into_iter()
            .flatten()
            .find(|(start, bytes)| inside(**start, bytes.len() as u64))
        {
            return Some((start, Cow::Borrowed(bytes)));
        }
        if self.with_placed {
            if let Some((&start, &end)) = self
                .placed
                .iter()
                .find(|(start, end)| inside(**start, end.saturating_sub(**start)))
            {
                return self.placed_body(start, end);
            }
        }
        let at = self.sorted.partition_point(|(start, _)| *start < addr);
        let &(start, size) = self.sorted[..at].last()?;
        inside(start, size)
            .then(|| self.image_body(start, size))
            .flatten()
    }

    fn data(&self, addr: u64, len: usize) -> Option<Cow<'_, [u8]>> {
        for (at, bytes) in self.data {
            let Some(offset) = addr.checked_sub(*at).and_then(|o| usize::try_from(o).ok()) else {
                continue;
            };
            if let Some(part) = offset
                .checked_add(len)
                .and_then(|end| bytes.get(offset..end))
            {
                return Some(Cow::Borrowed(part));
            }
        }
        self.program
            .debuggee
            .read_memory(addr, len)
            .ok()
            .map(Cow::Owned)
    }
}

/// What the code will be once the change commits.
pub(super) enum Change<'a> {
    /// A save's patch.
    Save(&'a Patch),
    /// The undo of the last swap: its entries back where they were, its data updated in place
    /// back to what it held.
    Undo(&'a hot_link::Revert),
}

/// The old bodies in `watch`, and those earlier swaps retired, whose frames must not be live
/// when `change` commits (see the module docs). Empty unless some unit was built with
/// `-fipa-ra`.
pub(super) fn call_guards(
    program: &Program,
    image: &UnitImage,
    change: Change<'_>,
    watch: &[(Range<u64>, String)],
) -> Vec<CallGuard> {
    let (Some(module), Some(linker)) = (program.module_of(image), program.linker_of(image)) else {
        return Vec::new();
    };
    if module.image.machine != hot_object::Machine::X86_64 {
        return Vec::new();
    }
    let bias = module.bias;
    let units = &module.image.compile_units;
    let unit_at = |runtime: u64| {
        let vaddr = runtime.wrapping_sub(bias);
        units
            .iter()
            .position(|cu| cu.ranges.iter().any(|&(b, e)| (b..e).contains(&vaddr)))
    };
    let risky = |cu: usize| {
        units[cu]
            .producer
            .as_deref()
            .is_some_and(super::risky_optimisation)
    };
    // No unit runs -fipa-ra code (every -O0/-O1/-Og or -fno-ipa-ra build): nothing to do.
    if !(0..units.len()).any(risky) {
        return Vec::new();
    }
    let old_redirects = linker.entry_targets(None);
    let new_redirects = match change {
        Change::Save(patch) => linker.entry_targets(Some(patch)),
        Change::Undo(_) => linker.entry_targets_after_revert().unwrap_or_default(),
    };
    // The image bodies of the functions named, in one pass over the symbols.
    let mut names: HashSet<&str> = watch.iter().map(|(_, name)| name.as_str()).collect();
    names.extend(program.bodies.keys().map(String::as_str));
    let mut image_body: HashMap<&str, Range<u64>> = HashMap::new();
    for s in &module.image.symbols {
        if s.defined
            && s.kind == hot_object::SymbolKind::Function
            && names.contains(s.name.as_str())
        {
            let start = s.vaddr.wrapping_add(bias);
            image_body
                .entry(s.name.as_str())
                .or_insert(start..start.saturating_add(s.size));
        }
    }
    // Besides the bodies this change replaces, those earlier swaps retired that a frame may
    // still run (a loop that never returns stays in the body it was in when its function
    // was swapped): the image's body of a function whose entry is redirected and every body
    // placed for it but the one its entry runs now. Their callees' sets are compared as they
    // are now (an image body's as the image has them: what gcc compiled it against) and
    // after this change: the save that retired them compared them the same way.
    let code = &linker.arenas().code;
    let mut candidates: Vec<(Range<u64>, &str)> = watch
        .iter()
        .map(|(range, name)| (range.clone(), name.as_str()))
        .collect();
    for (name, ranges) in &program.bodies {
        let Some(body) = image_body.get(name.as_str()) else {
            continue;
        };
        // Only functions whose entry runs another body now: a `.cold` part or a function
        // copied with a new body is never redirected, and its placed bodies are the
        // current code of their parents.
        let Some(&current) = old_redirects.get(&body.start) else {
            continue;
        };
        candidates.push((body.clone(), name));
        for range in ranges {
            if range.start != current && code.contains(&hot_link::RuntimeAddr(range.start)) {
                candidates.push((range.clone(), name));
            }
        }
    }
    candidates.sort_by_key(|(range, name)| (range.start, range.end, *name));
    candidates.dedup();
    // A body an earlier swap placed is of the unit of the function's body in the image; a
    // function the image lacks counts as -fipa-ra code (some unit is).
    let callers: Vec<(Range<u64>, &str, Option<usize>)> = candidates
        .into_iter()
        .filter(|(range, _)| range.start < range.end)
        .filter_map(|(range, name)| {
            let cu = unit_at(range.start)
                .or_else(|| image_body.get(name).and_then(|b| unit_at(b.start)));
            match cu {
                Some(cu) => risky(cu).then_some((range, name, Some(cu))),
                None => Some((range, name, None)),
            }
        })
        .collect();
    if callers.is_empty() {
        return Vec::new();
    }

    let functions: HashMap<u64, u64> = module
        .image
        .symbols
        .iter()
        .filter(|s| s.defined && s.kind == hot_object::SymbolKind::Function && s.size > 0)
        .map(|s| (s.vaddr.wrapping_add(bias), s.size))
        .collect();
    let mut sorted: Vec<(u64, u64)> = functions.iter().map(|(&a, &s)| (a, s)).collect();
    sorted.sort_unstable();
    let mut placed: HashMap<u64, u64> = HashMap::new();
    for range in program.bodies.values().flatten() {
        placed.insert(range.start, range.end);
    }
    let mut new_bodies: HashMap<u64, &[u8]> = HashMap::new();
    let mut new_data: Vec<(u64, &[u8])> = Vec::new();
    match change {
        Change::Save(patch) => {
            for body in &patch.bodies {
                let (start, size) = (body.addr.0, body.size);
                let bytes = patch.writes.iter().find_map(|w| {
                    let offset = usize::try_from(start.checked_sub(w.addr.0)?).ok()?;
                    w.bytes
                        .get(offset..offset.checked_add(usize::try_from(size).ok()?)?)
                });
                if let Some(bytes) = bytes {
                    new_bodies.insert(start, bytes);
                }
            }
            new_data.extend(patch.writes.iter().map(|w| (w.addr.0, w.bytes.as_slice())));
            new_data.extend(
                patch
                    .in_place
                    .iter()
                    .map(|w| (w.addr.0, w.bytes.as_slice())),
            );
        }
        Change::Undo(revert) => {
            new_data.extend(
                revert
                    .in_place
                    .iter()
                    .map(|w| (w.addr.0, w.bytes.as_slice())),
            );
        }
    }
    // The image as it was built, what its own bodies were compiled against.
    let built = View {
        redirects: HashMap::new(),
        functions: &functions,
        sorted: &sorted,
        module,
        placed: &placed,
        with_placed: false,
        patch: None,
        data: &[],
        program,
    };
    let old = View {
        redirects: old_redirects,
        functions: &functions,
        sorted: &sorted,
        module,
        placed: &placed,
        with_placed: true,
        patch: None,
        data: &[],
        program,
    };
    let new = View {
        redirects: new_redirects,
        functions: &functions,
        sorted: &sorted,
        module,
        placed: &placed,
        with_placed: true,
        patch: Some(&new_bodies),
        data: &new_data,
        program,
    };
    let name_at = |addr: u64| {
        let vaddr = addr.wrapping_sub(bias);
        module
            .image
            .symbols
            .iter()
            .filter(|s| s.defined && s.kind == hot_object::SymbolKind::Function && s.vaddr == vaddr)
            .min_by_key(|s| s.binding != hot_object::Binding::Global)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("the function at {addr:#x}"))
    };

    // The code callers were compiled against must not come out clobbering more than gcc
    // assumed (a growth would hide), the new code never less than it does.
    let mut built_memo = ClobberMemo::new(Estimate::AtMost);
    let mut old_memo = ClobberMemo::new(Estimate::AtMost);
    let mut new_memo = ClobberMemo::new(Estimate::AtLeast);
    let mut guards = Vec::new();
    for (range, caller, cu) in callers {
        let in_image = functions.contains_key(&range.start);
        let bytes: Option<Cow<[u8]>> = if in_image {
            usize::try_from(range.end - range.start)
                .ok()
                .and_then(|len| module.image.bytes_at(range.start.wrapping_sub(bias), len))
                .map(Cow::Borrowed)
        } else {
            usize::try_from(range.end - range.start)
                .ok()
                .and_then(|len| program.debuggee.read_memory(range.start, len).ok())
                .map(Cow::Owned)
        };
        let guarded = range.start.saturating_add(1)..range.end;
        let Some(bytes) = bytes else {
            guards.push(CallGuard {
                caller: caller.to_string(),
                range: guarded,
                why: Why::Undecided {
                    callee: None,
                    reason: format!("its code at {:#x} cannot be read", range.start),
                },
            });
            continue;
        };
        // -fipa-ra knows the callees of the caller's own unit only; a function the image
        // lacks (added by a save) counts as one of them.
        let same_unit = |target: u64| match (cu, functions.contains_key(&target)) {
            (Some(cu), true) => unit_at(target).is_none_or(|t| t == cu),
            _ => true,
        };
        let before: (&dyn CodeView, &mut ClobberMemo) = if in_image {
            (&built, &mut built_memo)
        } else {
            (&old, &mut old_memo)
        };
        match clobbers::growing_calls(
            (range.start, &bytes),
            before,
            (&new, &mut new_memo),
            &same_unit,
        ) {
            Ok(growths) => {
                for growth in growths {
                    guards.push(CallGuard {
                        caller: caller.to_string(),
                        range: guarded.clone(),
                        why: Why::Grows {
                            callee: name_at(growth.callee),
                            added: growth.added.names(),
                        },
                    });
                }
            }
            Err(undecided) => guards.push(CallGuard {
                caller: caller.to_string(),
                range: guarded,
                why: Why::Undecided {
                    callee: undecided.callee.map(name_at),
                    reason: undecided.reason,
                },
            }),
        }
    }
    guards
}

/// The ranges of `guards` for `WritePlan::refuse_frames`, each named by its key.
pub(super) fn guarded_bodies(guards: &[CallGuard]) -> Vec<(Range<u64>, String)> {
    guards
        .iter()
        .enumerate()
        .map(|(i, g)| (g.range.clone(), format!("{KEY}{i}")))
        .collect()
}

/// Whether a refused frame's name is one of [`guarded_bodies`]'s.
pub(super) fn is_key(function: &str) -> bool {
    function.starts_with(KEY)
}

/// Each guard a refused frame is in, once per (symbol the refusal is on, caller), with the
/// refusal's text: `undo` words it for an undo.
fn refusals<'g>(
    guards: &'g [CallGuard],
    frames: &[hot_process::LiveFrame],
    undo: bool,
) -> Vec<(&'g CallGuard, &'g str, String)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let (doing, change, again) = if undo {
        ("undoing the last swap", "the undo", "undo again")
    } else {
        ("swapping it", "the new code", "save again")
    };
    let flags = super::HOT_RELOAD_FLAGS;
    for frame in frames {
        let Some(guard) = frame
            .function
            .strip_prefix(KEY)
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| guards.get(i))
        else {
            continue;
        };
        let caller = hot_object::display_name(&guard.caller);
        let tid = frame.tid;
        let (symbol, message) = match &guard.why {
            Why::Grows { callee, added } => {
                let callee_shown = hot_object::display_name(callee);
                let registers = added.join(", ");
                (
                    callee.as_str(),
                    format!(
                        "`{caller}` is running (thread {tid}) in a body built with -fipa-ra, \
                         which may keep values live across its call to `{callee_shown}` in \
                         registers the `{callee_shown}` it was compiled against left alone; \
                         {change} makes `{callee_shown}` also clobber {registers}: {doing} \
                         now would corrupt {caller}'s state. Nothing was written. Rebuild with the \
                         hot-reload flags ({flags}), or {again} once `{caller}` has returned."
                    ),
                )
            }
            Why::Undecided { callee, reason } => {
                let (symbol, which) = match callee {
                    Some(callee) => (
                        callee.as_str(),
                        format!(
                            "which registers its call to `{}` may clobber",
                            hot_object::display_name(callee)
                        ),
                    ),
                    None => (
                        guard.caller.as_str(),
                        "which registers its callees clobber".to_string(),
                    ),
                };
                (
                    symbol,
                    format!(
                        "`{caller}` is running (thread {tid}) in a body built with -fipa-ra, \
                         and {which}, before and after {change}, cannot be worked out \
                         ({reason}): {doing} now could corrupt {caller}'s state. Nothing was written. \
                         Rebuild with the hot-reload flags ({flags}), or {again} once \
                         `{caller}` has returned."
                    ),
                )
            }
        };
        if seen.insert((symbol.to_string(), guard.caller.clone())) {
            out.push((guard, symbol, message));
        }
    }
    out
}

/// The refusals for the frames found in guarded bodies: `signature-changed` on the callee's
/// line (the caller's for code that did not decode) in the new object that defines it, or
/// on the saved file.
pub(super) fn frame_refusals(
    guards: &[CallGuard],
    frames: &[hot_process::LiveFrame],
    objects: &[(&Path, &hot_object::Object)],
    saved: &Path,
) -> Vec<LinkError> {
    let mut out: Vec<LinkError> = Vec::new();
    for (guard, symbol, message) in refusals(guards, frames, false) {
        let located = objects.iter().find_map(|(file, object)| {
            // The first row at its entry: gcc puts several there (the opening line, then
            // the first statements, views 0, 1, 2), and the last of them is any line at -O2.
            let (atom, offset) = object.function_location(symbol)?;
            let rows = object.lines_of(atom);
            let first = rows.partition_point(|(o, _)| *o < offset);
            let line = rows
                .get(first)
                .filter(|(o, _)| *o == offset)
                .map(|(_, line)| line.clone())
                .or_else(|| object.line_of(atom, offset).cloned());
            Some((*file, line))
        });
        let (file, line) = located.unwrap_or((saved, None));
        out.push(LinkError {
            code: LinkErrorCode::SignatureChanged,
            unit: file.display().to_string(),
            message,
            symbol: Some(symbol.to_string()),
            function: Some(guard.caller.clone()),
            line,
        });
    }
    out
}

/// The texts refusing an undo for the frames found in guarded bodies.
pub(super) fn undo_refusals(
    guards: &[CallGuard],
    frames: &[hot_process::LiveFrame],
) -> Vec<String> {
    refusals(guards, frames, true)
        .into_iter()
        .map(|(_, _, message)| format!("undo refused: {message}"))
        .collect()
}
