//! Frames that still run an old body built with gcc's `-fipa-ra` (-O2 and up): such a
//! caller keeps values in the call-clobbered registers its same-file callees do not write.
//! A save that makes one of its direct callees write more of them (the callee itself swapped,
//! or a function it calls) would corrupt that frame's state the next time it calls: the
//! frame keeps running the old body (a main loop never returns), and only its new body,
//! compiled against the new callee, knows better.
//!
//! Callers that are not running are safe: they were compiled again with the new callee and
//! are either unchanged (right under the new clobber sets) or swapped. So the bodies to look
//! at are the old bodies of the functions the swap replaces (`WritePlan::watch`), and those
//! earlier swaps retired while a frame may still run them, that belong to a unit whose
//! `DW_AT_producer` shows `-fipa-ra` in force. Each of their direct calls to a function of
//! the same unit is asked of `hot_link::clobbers` (the callee's set before the swap and after
//! it); a body with a call whose set grows, or code that cannot be decoded, goes into
//! `WritePlan::refuse_frames`, so a thread with a frame in it when the swap commits (threads
//! stopped, the same stack scan as every other frame check) refuses the save with nothing
//! written, as `signature-changed` on the callee. Any frame in the body counts, not only one
//! returning from that call: a loop stopped in `usleep` makes the call on its next round.
//! No unit built with -fipa-ra (every -O0/-O1/-Og or `-fno-ipa-ra` build): nothing is
//! decoded.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use hot_link::clobbers::{self, ClobberMemo, CodeView};
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
    /// Code on the way could not be decoded.
    Undecided(String),
}

/// A view of the program's code at runtime addresses: the executable's (or library's)
/// functions from its file, bodies earlier swaps placed (read from the process on demand),
/// and for the view after the swap the patch's new bodies; entries redirected to the body
/// they run.
struct View<'a> {
    redirects: HashMap<u64, u64>,
    functions: &'a HashMap<u64, u64>,
    module: &'a hot_link::Module,
    placed: &'a HashMap<u64, u64>,
    patch: Option<&'a HashMap<u64, &'a [u8]>>,
    program: &'a Program,
}

impl CodeView for View<'_> {
    fn body_at(&self, addr: u64) -> Option<(u64, Cow<'_, [u8]>)> {
        let start = self.redirects.get(&addr).copied().unwrap_or(addr);
        if let Some(bytes) = self.patch.and_then(|p| p.get(&start)) {
            return Some((start, Cow::Borrowed(bytes)));
        }
        if let Some(&end) = self.placed.get(&start) {
            let len = usize::try_from(end.saturating_sub(start)).ok()?;
            let bytes = self.program.debuggee.read_memory(start, len).ok()?;
            return Some((start, Cow::Owned(bytes)));
        }
        let &size = self.functions.get(&start)?;
        let bytes = self.module.image.bytes_at(
            start.wrapping_sub(self.module.bias),
            usize::try_from(size).ok()?,
        )?;
        Some((start, Cow::Borrowed(bytes)))
    }
}

/// The old bodies in `watch`, and those earlier swaps retired, whose frames must not be live
/// when `patch` commits (see the module docs). Empty unless some unit was built with
/// `-fipa-ra`.
pub(super) fn call_guards(
    program: &Program,
    image: &UnitImage,
    patch: &Patch,
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
    // Besides the bodies this swap replaces, those earlier swaps retired that a frame may
    // still run (a loop that never returns stays in the body it was in when its function
    // was swapped): the image's body of a function whose entry is redirected and every body
    // placed for it but the one its entry runs now. Their callees' sets are compared as they are now
    // and after this swap: the save that retired them compared them the same way.
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
    let mut placed: HashMap<u64, u64> = HashMap::new();
    for range in program.bodies.values().flatten() {
        placed.insert(range.start, range.end);
    }
    let mut new_bodies: HashMap<u64, &[u8]> = HashMap::new();
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
    let old = View {
        redirects: old_redirects,
        functions: &functions,
        module,
        placed: &placed,
        patch: None,
        program,
    };
    let new = View {
        redirects: linker.entry_targets(Some(patch)),
        functions: &functions,
        module,
        placed: &placed,
        patch: Some(&new_bodies),
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

    let (mut old_memo, mut new_memo) = (ClobberMemo::default(), ClobberMemo::default());
    let mut guards = Vec::new();
    for (range, caller, cu) in callers {
        let bytes: Option<Cow<[u8]>> = if functions.contains_key(&range.start) {
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
                why: Why::Undecided(format!("its code at {:#x} cannot be read", range.start)),
            });
            continue;
        };
        // -fipa-ra knows the callees of the caller's own unit only; a function the image
        // lacks (added by a save) counts as one of them.
        let same_unit = |target: u64| match (cu, functions.contains_key(&target)) {
            (Some(cu), true) => unit_at(target).is_none_or(|t| t == cu),
            _ => true,
        };
        match clobbers::growing_calls(
            (range.start, &bytes),
            (&old, &mut old_memo),
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
                why: Why::Undecided(undecided.reason),
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
    let mut seen = HashSet::new();
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
        let flags = super::HOT_RELOAD_FLAGS;
        let (symbol, message) = match &guard.why {
            Why::Grows { callee, added } => {
                let callee_shown = hot_object::display_name(callee);
                let registers = added.join(", ");
                (
                    callee.as_str(),
                    format!(
                        "`{caller}` is running (thread {tid}) in its old body, built with \
                         -fipa-ra, which may keep values live across its call to \
                         `{callee_shown}` in registers the old `{callee_shown}` left alone; \
                         the new code makes `{callee_shown}` also clobber {registers}: \
                         swapping it now would corrupt {caller}'s state. \
                         Nothing was written. Rebuild with the hot-reload flags ({flags}), or \
                         save again once `{caller}` has returned.",
                        tid = frame.tid
                    ),
                )
            }
            Why::Undecided(reason) => (
                guard.caller.as_str(),
                format!(
                    "`{caller}` is running (thread {tid}) in its old body, built with \
                     -fipa-ra, and which registers its callees clobber after this swap cannot \
                     be worked out ({reason}): swapping it now could corrupt {caller}'s \
                     state. Nothing was written. Rebuild with the hot-reload flags ({flags}), \
                     or save again once `{caller}` has returned.",
                    tid = frame.tid
                ),
            ),
        };
        if !seen.insert((symbol.to_string(), guard.caller.clone())) {
            continue;
        }
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
