//! Swapping a program that a debugger holds.
//!
//! A thread has one tracer. While gdb traces the program, hot-lsp cannot seize it: no
//! stop of its own, no registers through ptrace, no single step, no injected call. But
//! when the debugger has *every* thread stopped (at a breakpoint, after an interrupt, in
//! all-stop mode), nothing runs the code, and a swap needs no more than that:
//!
//! - writes go through `/proc/PID/mem`, which any process allowed to trace the program may
//!   write (the kernel's `FOLL_FORCE` writes past read-only text for it as for a tracer);
//! - each thread's program counter and stack pointer come from
//!   `/proc/PID/task/TID/syscall` (the last two fields; `-1 sp pc` outside a system call),
//!   which the kernel reads from the stopped thread's saved registers;
//! - the checks are the normal ones: no thread stopped strictly inside overwritten bytes
//!   (one there cannot be stepped out by hot-lsp: the user is told to `stepi` it), no frame
//!   returning into them (the stack scan of `stacks.rs` from that stack pointer), the bytes
//!   expected at every write, and rollback if one fails.
//!
//! What needs a call or a new mapping (arenas for a first swap, unwind registration, the
//! debugger interface's library) cannot happen now; the session maps its arenas right after
//! launch or attach, so a debugger that attaches later finds them in place.
//!
//! gdb removes its breakpoints from memory while the program is stopped (all-stop,
//! `breakpoint always-inserted off`) and reads the bytes under each again when it inserts
//! them on `continue`, so it puts back what hot-lsp wrote. A debugger that resumes the
//! program *while* the writes happen could let a thread run into a half-written entry: the
//! window is the few microseconds of the writes, after the check that every thread is
//! stopped. That check wants a stop that lasts (50 ms, the same threads at the same places,
//! none scheduled in between): a debugger also stops every thread for moments of its own —
//! a new thread, a library loaded, a signal it passes on — and resumes them at once, and a
//! swap must not be written into one of those.

use std::time::Instant;

use super::apply::{
    check_refused, read_commits, scan_stopped_thread, watched_of, write_commits, Applied,
    ApplyScratch, Mode, StoppedThread,
};
use super::memory::{read_mappings, ProcMem};
use super::stacks::Guarded;
use super::threads::{list_tasks, tracer_and_state};
use crate::{ApplyReport, Debugger, ProcessError, WritePlan};

/// Whether `tid` is a thread of this process (a lingering thread this owner still traces).
fn own_thread(tid: i32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// The debugger tracing the main thread of `pid`, if one does, and whether it holds every
/// thread stopped. (A debugger traces every thread; one that traces only some is met by the
/// seize, which names it.) One read of `/proc` before every swap when none does.
pub(crate) fn debugger_of(pid: i32) -> Option<Debugger> {
    let (tracer, _) = tracer_and_state(pid, pid)?;
    if tracer == 0 || own_thread(tracer) {
        return None;
    }
    let mut tids = Vec::new();
    let stopped = list_tasks(pid, &mut tids).is_ok()
        && tids.iter().all(|&tid| {
            matches!(
                tracer_and_state(pid, tid),
                None | Some((_, 't' | 'T' | 'Z' | 'X'))
            )
        });
    Some(Debugger {
        tracer,
        name: std::fs::read_to_string(format!("/proc/{tracer}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| "a debugger".to_string()),
        stopped,
    })
}

/// The stack pointer and program counter of a stopped thread, from
/// `/proc/PID/task/TID/syscall`: `NR ARG1..ARG6 SP PC`, or `-1 SP PC` outside a system call,
/// or `running`.
fn stopped_sp_pc(pid: i32, tid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() < 3 {
        return None;
    }
    let hex = |f: &str| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok();
    Some((
        hex(fields[fields.len() - 2])?,
        hex(fields[fields.len() - 1])?,
    ))
}

/// How long the debugger's stop must last, unchanged, before a swap writes under it.
const HELD_SETTLE: std::time::Duration = std::time::Duration::from_millis(50);

/// One stopped thread as seen from `/proc`: where it is and how often it has been scheduled.
#[derive(Debug, PartialEq, Eq)]
struct HeldThread {
    tid: i32,
    sp: u64,
    pc: u64,
    switches: u64,
}

/// Every live thread of `pid` if each is in a tracing stop (`None` if one runs).
fn held_threads(pid: i32) -> Result<Option<Vec<HeldThread>>, ProcessError> {
    let mut tids = Vec::new();
    list_tasks(pid, &mut tids)?;
    let mut threads = Vec::with_capacity(tids.len());
    for &tid in &tids {
        match tracer_and_state(pid, tid) {
            // Gone, or exiting: it runs nothing any more.
            None | Some((_, 'Z' | 'X')) => continue,
            Some((_, 't' | 'T')) => {}
            Some(_) => return Ok(None),
        }
        let Some((sp, pc)) = stopped_sp_pc(pid, tid) else {
            return Ok(None);
        };
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
        let switches = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
            .sum();
        threads.push(HeldThread {
            tid,
            sp,
            pc,
            switches,
        });
    }
    Ok(Some(threads))
}

/// Apply `plan` to a program `debugger` traces, if the debugger holds every thread
/// stopped; [`ProcessError::HeldByDebugger`] (nothing written) if any runs. `Mode::Check`
/// makes the same checks and writes nothing.
pub(crate) fn apply_held(
    pid: i32,
    mem: &ProcMem,
    plan: &WritePlan,
    scratch: &mut ApplyScratch,
    debugger: &Debugger,
    mode: Mode,
) -> Result<Applied, ProcessError> {
    let started = Instant::now();
    let running = || ProcessError::HeldByDebugger {
        pid,
        tracer: debugger.tracer,
        name: debugger.name.clone(),
    };
    if !debugger.stopped {
        return Err(running());
    }
    // A debugger also stops every thread for a moment of its own (a new thread, a library
    // loaded, a signal it passes on) and resumes them at once: only a stop that lasts is the
    // user's. The same threads, each at the same place and not scheduled in between, on two
    // looks `HELD_SETTLE` apart.
    let first = held_threads(pid)?.ok_or_else(running)?;
    std::thread::sleep(HELD_SETTLE);
    let second = held_threads(pid)?.ok_or_else(running)?;
    if first != second {
        return Err(running());
    }
    let threads: Vec<(i32, u64, u64)> = second.iter().map(|t| (t.tid, t.sp, t.pc)).collect();

    let guarded = Guarded::new(
        plan.commit
            .iter()
            .map(|w| (w.addr..w.addr + w.bytes.len() as u64, w.what.as_str())),
        &plan.protected,
    );
    // Which old bodies of swapped functions are live, as in a normal apply (`apply.rs`).
    let watched = watched_of(plan);
    let mut live = Vec::new();
    let mut refused = Vec::new();
    if !guarded.is_empty() || !watched.is_empty() {
        let maps = read_mappings(pid)?;
        for &(tid, sp, pc) in &threads {
            if let Some((range, what)) = guarded.find(pc) {
                return Err(ProcessError::Other(format!(
                    "cannot swap now: thread {tid} is stopped by {} inside the {what} \
                     (at entry+{}), which the swap overwrites, and hot-lsp cannot step it \
                     out while the debugger holds it; step it past that instruction in the \
                     debugger (`stepi`) and save again; nothing was written",
                    debugger.name,
                    pc - range.start
                )));
            }
            let thread = StoppedThread { tid, pc, sp };
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
            if let Some(hit) = hit {
                let at = hit.value;
                let (range, what) = guarded.find(at).unwrap_or((at..at, "code being replaced"));
                return Err(ProcessError::Other(format!(
                    "cannot swap now: thread {tid} has a frame that returns into the {what} \
                     (entry+{}), inside the bytes the swap overwrites; nothing was written — \
                     save again once that call has returned",
                    at - range.start
                )));
            }
        }
    }

    check_refused(refused)?;

    let applied = |live| Applied {
        report: ApplyReport {
            stopped_micros: started.elapsed().as_micros() as u64,
            threads: threads.len(),
            live,
            ..ApplyReport::default()
        },
        leader_status: None,
    };
    if mode == Mode::Check {
        read_commits(mem, plan, scratch)?;
        return Ok(applied(live));
    }
    for write in &plan.prepare {
        mem.write_all(write.addr, &write.bytes)
            .map_err(|err| ProcessError::Protection {
                addr: write.addr,
                what: write.what.clone(),
                message: err.to_string(),
            })?;
    }
    for copy in &plan.copies {
        let mut value = [0u8; 8];
        mem.read_exact(copy.src, &mut value)
            .and_then(|()| mem.write_all(copy.dst, &value))
            .map_err(|err| ProcessError::Protection {
                addr: copy.dst,
                what: format!("slot filled from {:#x}", copy.src),
                message: err.to_string(),
            })?;
    }
    write_commits(mem, plan, scratch)?;
    tracing::info!(
        pid,
        debugger = %debugger.name,
        threads = threads.len(),
        "swapped while the debugger holds the program"
    );
    Ok(applied(live))
}
