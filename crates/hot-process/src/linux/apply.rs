//! Applying a [`WritePlan`]: arena writes while the program runs, then every thread
//! stopped, moved out of the bytes about to change, expected bytes checked, commit writes
//! with rollback, and every thread released. A check ([`Mode::Check`]) does all of that
//! but the writes.

use std::time::Instant;

use super::memory::{read_mappings, ProcMem};
use std::ops::Range;

use super::stacks::{scan_thread, Guarded, Look, Watched};
use super::threads::{get_regs, StoppedThreads};
use crate::fault::{self, Step};
use crate::{ApplyReport, LiveFrame, ProcessError, SlotCopy, Write, WritePlan};

/// How many single steps a thread gets to leave a protected range.
const MAX_STEPS_OUT: usize = 64;

/// Reused buffers, so repeated swaps do not allocate in the stopped window.
#[derive(Default)]
pub(crate) struct ApplyScratch {
    originals: Vec<u8>,
    current: Vec<u8>,
    pub(super) stack: Vec<u8>,
}

pub(crate) struct Applied {
    pub(crate) report: ApplyReport,
    /// The leader's exit status, if a wait reaped it during the swap.
    pub(crate) leader_status: Option<i32>,
}

/// Whether an apply writes, or only makes every check a write would be refused by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Write,
    /// Stop every thread, step them out of the bytes about to change, scan their stacks and
    /// compare the bytes expected at every commit write, and write nothing (`prepare` and
    /// `copies` are not written either).
    Check,
}

pub(crate) fn apply(
    pid: i32,
    mem: &ProcMem,
    plan: &WritePlan,
    scratch: &mut ApplyScratch,
    mode: Mode,
) -> Result<Applied, ProcessError> {
    // A debugger holds the program: it cannot be stopped by hot-lsp, but may be stopped
    // already (held.rs).
    if let Some(debugger) = super::held::debugger_of(pid) {
        return super::held::apply_held(pid, mem, plan, scratch, &debugger, mode);
    }
    let nothing = WritePlan::default();
    let (prepare, copies) = match mode {
        Mode::Write => (&plan.prepare, &plan.copies),
        Mode::Check => (&nothing.prepare, &nothing.copies),
    };
    // (1) Arena contents: not reachable yet, so written while the program runs. A kernel
    // that forces /proc/PID/mem writes only for a tracer refuses them now; those are retried
    // once the threads are seized.
    let mut deferred: Vec<&Write> = Vec::new();
    for write in prepare {
        if fault::io(Step::ArenaWrite)
            .and_then(|()| mem.write_all(write.addr, &write.bytes))
            .is_err()
        {
            deferred.push(write);
        }
    }
    // (2) Slots filled from values read in the target (resolved IFUNCs and the like).
    let mut deferred_copies: Vec<SlotCopy> = Vec::new();
    for &copy in copies {
        let SlotCopy { src, dst } = copy;
        let mut value = [0u8; 8];
        fault::io(Step::SlotCopy)
            .and_then(|()| mem.read_exact(src, &mut value))
            .map_err(|err| ProcessError::Protection {
                addr: src,
                what: format!("slot source for {dst:#x}"),
                message: format!("cannot read: {err}"),
            })?;
        if mem.write_all(dst, &value).is_err() {
            deferred_copies.push(copy);
        }
    }

    // (3) Stop the world.
    let started = Instant::now();
    let mut threads = StoppedThreads::stop_all(pid)?;
    let result = apply_stopped(
        pid,
        mem,
        plan,
        scratch,
        &mut threads,
        &deferred,
        &deferred_copies,
        mode,
    );
    threads.resume();
    let stopped_micros = started.elapsed().as_micros() as u64;
    let leader_status = threads.leader_status;
    let signals_held = threads.signals_held;
    let thread_count = threads.tids.len();
    tracing::debug!(
        pid,
        threads = thread_count,
        stopped_micros,
        commits = plan.commit.len() + plan.commit_data.len(),
        ok = result.is_ok(),
        "apply"
    );
    let live = result?;
    Ok(Applied {
        report: ApplyReport {
            stopped_micros,
            threads: thread_count,
            signals_held,
            live,
        },
        leader_status,
    })
}

#[allow(clippy::too_many_arguments)]
fn apply_stopped(
    pid: i32,
    mem: &ProcMem,
    plan: &WritePlan,
    scratch: &mut ApplyScratch,
    threads: &mut StoppedThreads,
    deferred: &[&Write],
    deferred_copies: &[SlotCopy],
    mode: Mode,
) -> Result<Vec<LiveFrame>, ProcessError> {
    let mut live = Vec::new();
    for write in deferred {
        fault::io(Step::ArenaWrite)
            .and_then(|()| mem.write_all(write.addr, &write.bytes))
            .map_err(|err| ProcessError::Protection {
                addr: write.addr,
                what: write.what.clone(),
                message: err.to_string(),
            })?;
    }
    for &SlotCopy { src, dst } in deferred_copies {
        let mut value = [0u8; 8];
        let copied = fault::io(Step::SlotCopy)
            .and_then(|()| mem.read_exact(src, &mut value))
            .and_then(|()| mem.write_all(dst, &value));
        copied.map_err(|err| ProcessError::Protection {
            addr: dst,
            what: format!("slot filled from {src:#x}"),
            message: err.to_string(),
        })?;
    }

    // Move every thread out of the bytes about to change: a thread strictly inside an
    // overwritten range would resume in the middle of the new instruction.
    let guarded = Guarded::new(
        plan.commit
            .iter()
            .map(|w| (w.addr..w.addr + w.bytes.len() as u64, w.what.as_str())),
        &plan.protected,
    );
    let inside = |rip: u64| guarded.find(rip).is_some();
    let mut index = 0;
    while index < threads.tids.len() {
        let tid = threads.tids[index];
        index += 1;
        let mut rip = match get_regs(tid) {
            Ok(regs) => regs.rip,
            Err(_) => continue,
        };
        let mut steps = 0;
        while inside(rip) {
            if steps == MAX_STEPS_OUT {
                return Err(ProcessError::Other(format!(
                    "thread {tid} is still at {rip:#x} inside code being replaced after {MAX_STEPS_OUT} single steps; nothing was written"
                )));
            }
            steps += 1;
            if !threads.single_step(tid)? {
                break;
            }
            rip = get_regs(tid)?.rip;
        }
    }

    // Every frame of every thread, at any depth, including the stacks their signal frames
    // lead to (stacks.rs); on the way, which old bodies of swapped functions are live.
    let watched = watched_of(plan);
    let mut refused = Vec::new();
    if (!guarded.is_empty() || !watched.is_empty()) && !threads.tids.is_empty() {
        let maps = read_mappings(pid)?;
        for &tid in &threads.tids {
            let Ok(regs) = get_regs(tid) else {
                // Gone since it stopped (SIGKILL): it runs nothing any more.
                continue;
            };
            let thread = StoppedThread {
                tid,
                pc: regs.rip,
                sp: regs.rsp,
            };
            let hit = scan_stopped_thread(
                mem,
                &maps,
                plan,
                &guarded,
                &watched,
                thread,
                scratch,
                (&mut live, &mut refused),
            )?;
            let Some(hit) = hit else {
                continue;
            };
            let at = hit.value;
            let (range, what) = guarded.find(at).unwrap_or((at..at, "code being replaced"));
            let function = what.strip_prefix("entry of ").unwrap_or(what);
            let place = if hit.via_signal_frame {
                " (below the signal handler it is running)"
            } else {
                ""
            };
            return Err(ProcessError::Other(format!(
                "cannot swap `{function}` now: thread {tid} has a frame{place} that returns into \
                 entry+{} of `{function}` ({at:#x}), inside the bytes the entry jump \
                 overwrites; nothing was written — save again once that call has returned",
                at - range.start
            )));
        }
    }

    check_refused(refused)?;

    // (4) Check what is there, keep it for rollback, write.
    match mode {
        Mode::Write => write_commits(mem, plan, scratch)?,
        Mode::Check => read_commits(mem, plan, scratch)?,
    }
    Ok(live)
}

/// The ranges the stack scan records: `plan.watch`, then `plan.refuse_frames` (indices past
/// `plan.watch.len()`).
pub(super) fn watched_of(plan: &WritePlan) -> Watched {
    Watched::new(
        plan.watch
            .iter()
            .chain(&plan.refuse_frames)
            .map(|(range, _)| range.clone()),
    )
    .past_entry_below(plan.watch.len())
}

/// Frames met in `plan.refuse_frames` (every thread scanned, each function and thread once)
/// refuse the commit.
pub(super) fn check_refused(refused: Vec<LiveFrame>) -> Result<(), ProcessError> {
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ProcessError::FrameRefused(refused))
    }
}

/// A stopped thread's id, program counter and stack pointer.
#[derive(Clone, Copy, Debug)]
pub(super) struct StoppedThread {
    pub(super) tid: i32,
    pub(super) pc: u64,
    pub(super) sp: u64,
}

/// Scans one stopped thread (its pc, its stack and the stacks its signal frames lead to):
/// the old bodies of `plan.watch` it is inside go to `live`; a word inside `guarded` is
/// returned (the swap must not go on).
#[allow(clippy::too_many_arguments)]
pub(super) fn scan_stopped_thread(
    mem: &ProcMem,
    maps: &[crate::Mapping],
    plan: &WritePlan,
    guarded: &Guarded<'_>,
    watched: &Watched,
    thread: StoppedThread,
    scratch: &mut ApplyScratch,
    (live, refused): (&mut Vec<LiveFrame>, &mut Vec<LiveFrame>),
) -> Result<Option<super::stacks::Hit>, ProcessError> {
    let mut in_use = Vec::new();
    watched.find(thread.pc, |i| in_use.push(i));
    let mut look = Look {
        guarded,
        watched,
        live: &mut in_use,
    };
    let hit = scan_thread(
        mem,
        maps,
        thread.tid,
        thread.sp,
        &mut look,
        &mut scratch.stack,
    )?;
    in_use.sort_unstable();
    in_use.dedup();
    let frame = |(_, name): &(Range<u64>, String)| LiveFrame {
        function: name.clone(),
        tid: thread.tid,
    };
    for i in in_use {
        match plan.watch.get(i) {
            // Two ranges of one function (its body in the image and the same body
            // remembered, or two old bodies) name the thread once.
            Some(watched) => {
                let found = frame(watched);
                if !live.contains(&found) {
                    live.push(found);
                }
            }
            // A frame that holds what the swap must not meet: nothing is written.
            None => {
                let Some(range) = plan.refuse_frames.get(i - plan.watch.len()) else {
                    continue;
                };
                let found = frame(range);
                if !refused.contains(&found) {
                    refused.push(found);
                }
            }
        }
    }
    Ok(hit)
}

/// The commit writes of `plan` (in-place data, then entries), with every thread that could
/// run them held: each is checked against the bytes expected there and its original bytes
/// kept, then all are written; a write that fails restores everything written before it.
pub(super) fn write_commits(
    mem: &ProcMem,
    plan: &WritePlan,
    scratch: &mut ApplyScratch,
) -> Result<(), ProcessError> {
    read_commits(mem, plan, scratch)?;
    // Data first: once the entries point at the new bodies, what those read must be in
    // place.
    let commits = || plan.commit_data.iter().chain(&plan.commit);
    let mut offset = 0;
    for (done, write) in commits().enumerate() {
        let step = match done < plan.commit_data.len() {
            true => Step::DataWrite,
            false => Step::EntryWrite,
        };
        if let Err(err) = fault::io(step).and_then(|()| mem.write_all(write.addr, &write.bytes)) {
            // Restore everything written so far, this write included (it may be partial).
            let mut back = 0;
            for earlier in commits().take(done + 1) {
                let original = &scratch.originals[back..back + earlier.bytes.len()];
                if let Err(restore) = mem.write_all(earlier.addr, original) {
                    tracing::error!(
                        addr = earlier.addr,
                        what = %earlier.what,
                        "cannot restore the original bytes after a failed swap: {restore}"
                    );
                }
                back += earlier.bytes.len();
            }
            return Err(ProcessError::Protection {
                addr: write.addr,
                what: write.what.clone(),
                message: format!("{err}; the writes before it were rolled back"),
            });
        }
        offset += write.bytes.len();
    }
    debug_assert_eq!(offset, scratch.originals.len());
    Ok(())
}

/// The first half of [`write_commits`]: every commit write's target read and checked against
/// the bytes expected there, its original bytes kept in `scratch` for a rollback. Nothing
/// is written.
pub(super) fn read_commits(
    mem: &ProcMem,
    plan: &WritePlan,
    scratch: &mut ApplyScratch,
) -> Result<(), ProcessError> {
    // The module the patch was linked against is still the one mapped (no write yet).
    for verify in &plan.verify {
        scratch.current.resize(verify.bytes.len(), 0);
        if mem.read_exact(verify.addr, &mut scratch.current).is_err() {
            return Err(verify.refusal(None));
        }
        if scratch.current != verify.bytes {
            return Err(verify.refusal(Some(&scratch.current)));
        }
    }
    let commits = || plan.commit_data.iter().chain(&plan.commit);
    scratch.originals.clear();
    for write in commits() {
        let len = write
            .bytes
            .len()
            .max(write.expected.as_ref().map_or(0, Vec::len));
        scratch.current.resize(len, 0);
        mem.read_exact(write.addr, &mut scratch.current)
            .map_err(|err| ProcessError::Protection {
                addr: write.addr,
                what: write.what.clone(),
                message: format!("cannot read: {err}"),
            })?;
        if let Some(expected) = &write.expected {
            if scratch.current[..expected.len()] != expected[..] {
                return Err(unexpected_bytes(write, &scratch.current, expected));
            }
        }
        scratch
            .originals
            .extend_from_slice(&scratch.current[..write.bytes.len()]);
    }
    Ok(())
}

/// `INT3`, the byte a software breakpoint puts over an instruction.
const INT3: u8 = 0xcc;

/// What to say when `write`'s target holds `current` instead of `expected`: a debugger's
/// breakpoint (an `int3` where hot-lsp expects another byte: a debugger that keeps its
/// breakpoints inserted while the program is stopped, or one that left them behind) is
/// named as such and never written over; anything else is a change hot-lsp did not make.
fn unexpected_bytes(write: &Write, current: &[u8], expected: &[u8]) -> ProcessError {
    let breakpoint = current
        .iter()
        .zip(expected)
        .position(|(&now, &wanted)| now == INT3 && wanted != INT3);
    match breakpoint {
        Some(offset) => ProcessError::Other(format!(
            "a debugger's breakpoint (int3) is at {:#x} (the {} + {offset}), which the \
             swap would overwrite; nothing was written — delete that breakpoint, or let the \
             debugger take its breakpoints out while the program is stopped (gdb's default, \
             `set breakpoint always-inserted off`), and save again",
            write.addr + offset as u64,
            write.what
        )),
        None => ProcessError::Unexpected {
            addr: write.addr,
            what: write.what.clone(),
        },
    }
}
