//! Applying a [`WritePlan`]: arena writes while the program runs, then every thread
//! stopped, moved out of the bytes about to change, expected bytes checked, commit writes
//! with rollback, and every thread released.

use std::time::Instant;

use super::memory::ProcMem;
use super::threads::{get_regs, StoppedThreads};
use crate::{ApplyReport, ProcessError, SlotCopy, Write, WritePlan};

/// How many single steps a thread gets to leave a protected range.
const MAX_STEPS_OUT: usize = 64;

/// Reused buffers, so repeated swaps do not allocate in the stopped window.
#[derive(Default)]
pub(crate) struct ApplyScratch {
    originals: Vec<u8>,
    current: Vec<u8>,
    stack: Vec<u8>,
}

pub(crate) struct Applied {
    pub(crate) report: ApplyReport,
    /// The leader's exit status, if a wait reaped it during the swap.
    pub(crate) leader_status: Option<i32>,
}

pub(crate) fn apply(
    pid: i32,
    mem: &ProcMem,
    plan: &WritePlan,
    scratch: &mut ApplyScratch,
) -> Result<Applied, ProcessError> {
    // (1) Arena contents: not reachable yet, so written while the program runs. A kernel
    // that forces /proc/PID/mem writes only for a tracer refuses them now; those are retried
    // once the threads are seized.
    let mut deferred: Vec<&Write> = Vec::new();
    for write in &plan.prepare {
        if mem.write_all(write.addr, &write.bytes).is_err() {
            deferred.push(write);
        }
    }
    // (2) Slots filled from values read in the target (resolved IFUNCs and the like).
    let mut deferred_copies: Vec<SlotCopy> = Vec::new();
    for &copy in &plan.copies {
        let SlotCopy { src, dst } = copy;
        let mut value = [0u8; 8];
        mem.read_exact(src, &mut value)
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
        mem,
        plan,
        scratch,
        &mut threads,
        &deferred,
        &deferred_copies,
    );
    threads.resume();
    let stopped_micros = started.elapsed().as_micros() as u64;
    let leader_status = threads.leader_status;
    let thread_count = threads.tids.len();
    tracing::debug!(
        pid,
        threads = thread_count,
        stopped_micros,
        commits = plan.commit.len(),
        ok = result.is_ok(),
        "apply"
    );
    result?;
    Ok(Applied {
        report: ApplyReport {
            stopped_micros,
            threads: thread_count,
        },
        leader_status,
    })
}

fn apply_stopped(
    mem: &ProcMem,
    plan: &WritePlan,
    scratch: &mut ApplyScratch,
    threads: &mut StoppedThreads,
    deferred: &[&Write],
    deferred_copies: &[SlotCopy],
) -> Result<(), ProcessError> {
    for write in deferred {
        mem.write_all(write.addr, &write.bytes)
            .map_err(|err| ProcessError::Protection {
                addr: write.addr,
                what: write.what.clone(),
                message: err.to_string(),
            })?;
    }
    for &SlotCopy { src, dst } in deferred_copies {
        let mut value = [0u8; 8];
        let copied = mem
            .read_exact(src, &mut value)
            .and_then(|()| mem.write_all(dst, &value));
        copied.map_err(|err| ProcessError::Protection {
            addr: dst,
            what: format!("slot filled from {src:#x}"),
            message: err.to_string(),
        })?;
    }

    // Move every thread out of the bytes about to change: a thread strictly inside an
    // overwritten range would resume in the middle of the new instruction.
    let inside = |rip: u64| {
        plan.protected.iter().any(|r| r.start < rip && rip < r.end)
            || plan
                .commit
                .iter()
                .any(|w| w.addr < rip && rip < w.addr + w.bytes.len() as u64)
    };
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

    // A thread inside a signal handler resumes, when the handler returns, at the address
    // saved in the signal frame on its stack: if that lies inside the bytes about to change,
    // it would land in the middle of the new jump. The top of each stack is searched for
    // such a word (a signal frame sits within a few KiB of a shallow handler's stack
    // pointer, also on an alternate signal stack). A stray word equal to such an address is
    // harmless: the swap is refused and the next save tries again.
    for &tid in &threads.tids {
        let Ok(regs) = get_regs(tid) else {
            continue;
        };
        if let Some(resume_at) = stack_word_inside(mem, regs.rsp, &mut scratch.stack, &inside) {
            return Err(ProcessError::Other(format!(
                "thread {tid} is in a signal handler that returns to {resume_at:#x}, inside code \
                 being replaced; nothing was written — save again to retry"
            )));
        }
    }

    // (4) Check what is there, keep it for rollback.
    scratch.originals.clear();
    for write in &plan.commit {
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
                return Err(ProcessError::Unexpected {
                    addr: write.addr,
                    what: write.what.clone(),
                });
            }
        }
        scratch
            .originals
            .extend_from_slice(&scratch.current[..write.bytes.len()]);
    }
    let mut offset = 0;
    for (done, write) in plan.commit.iter().enumerate() {
        if let Err(err) = mem.write_all(write.addr, &write.bytes) {
            // Restore everything written so far, this write included (it may be partial).
            let mut back = 0;
            for earlier in &plan.commit[..=done] {
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

/// How much of each stack, from its stack pointer up, is searched for a signal frame.
const SIGNAL_FRAME_SEARCH: usize = 16 * 1024;

/// The first 8-byte-aligned word in the top `SIGNAL_FRAME_SEARCH` bytes of a stack (as far
/// as it is mapped) that `inside` accepts.
fn stack_word_inside(
    mem: &ProcMem,
    rsp: u64,
    buf: &mut Vec<u8>,
    inside: &dyn Fn(u64) -> bool,
) -> Option<u64> {
    let start = rsp & !7;
    // Read page by page: the stack may end (its mapping's top) before the search does.
    let mut offset = 0usize;
    while offset < SIGNAL_FRAME_SEARCH {
        let at = start + offset as u64;
        let chunk = (4096 - (at % 4096) as usize).min(SIGNAL_FRAME_SEARCH - offset);
        buf.resize(chunk, 0);
        if mem.read_exact(at, buf).is_err() {
            break;
        }
        for word in buf.chunks_exact(8) {
            let value = u64::from_le_bytes(word.try_into().unwrap_or_default());
            if inside(value) {
                return Some(value);
            }
        }
        offset += chunk;
    }
    None
}
