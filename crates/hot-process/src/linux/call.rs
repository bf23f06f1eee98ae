//! Calling a function of the target in one of its threads while every thread is stopped
//! (libgcc's `__register_frame_info` for the unwind tables of new code, `dlopen`, the
//! constructors of new translation units).
//!
//! The chosen thread's registers, extended (x87/SSE/AVX) state and signal mask are saved,
//! and a call frame is set up below its red zone as the psABI wants it at a function's entry
//! (`rsp + 8` 16-byte aligned, the direction flag clear, `al` = 0 vector registers for a
//! variadic callee), returning into the trampoline page (trampoline.rs) above a block that
//! holds the thread's own state. The thread alone runs, under `PTRACE_SYSCALL`, until the
//! trampoline's `getpid` after the return (the result is on the stack by then) or a fault
//! of the callee. Either way hot-lsp puts every register, the extended state and the mask
//! back, and a fault is never delivered: the program goes on exactly where it was stopped.
//! Should hot-lsp die while the callee runs, the callee returns into the trampoline all the
//! same, and the page puts the thread back by itself.
//!
//! One thing is the kernel's, beyond reach: the restart block of a sleep (`nanosleep`,
//! `poll`, a futex wait with a timeout) the thread was interrupted in, which holds the time
//! left. A callee that sleeps or polls itself replaces it, and the interrupted sleep then
//! ends early with EINTR, as if a signal handler had run. Threads blocked in other calls are
//! preferred for that reason.
//!
//! Only a thread held in an interrupt/group stop (`PTRACE_EVENT_STOP`) or a plain
//! signal-delivery stop runs a call: one held at its clone event stop is inside `clone`
//! (its `rax` is still `-ENOSYS`; restoring it there makes the program's `clone3` fail).
//!
//! A call that has started is never pulled back: the callee may hold a lock (from GCC 13,
//! libgcc's registration inserts into a B-tree and calls `malloc` under the unwinder's
//! locks) or wait for one a stopped thread holds. When the first limit passes, every other
//! thread is let go (the program runs on; nothing it can reach depends on the call) and the
//! call thread is waited for up to the total limit. If it still has not returned it is let
//! go too, running in the callee: it returns through the trampoline whenever the callee
//! does. The call fails saying so.

use std::time::Instant;

use super::frame::{
    entry_stop_regs, resumed_regs, set_extended_state, set_sigmask, sigmask, Context, Restart,
};
use super::memory::ProcMem;
use super::threads::{get_regs, set_regs, CallEnd, StopKind, StoppedThreads};
use super::trampoline::Trampoline;
use crate::ProcessError;

/// The `-ERESTART*` values a system call interrupted by a stop leaves in `rax` (512..=516).
const RESTART_ERRNOS: std::ops::RangeInclusive<i64> = -516..=-512;
/// The one of them whose restart needs the kernel's restart block (`nanosleep`, `poll`).
const ERESTART_RESTARTBLOCK: i64 = -516;
/// The direction and trap flags: clear at a call (psABI), and never set for a thread that
/// may run untraced.
const EFLAGS_DF_TF: u64 = 0x400 | 0x100;
/// The signals a fault of the callee raises (kernel signal-set bits).
const FAULT_SIGNALS: u64 = 1 << (libc::SIGSEGV - 1)
    | 1 << (libc::SIGBUS - 1)
    | 1 << (libc::SIGILL - 1)
    | 1 << (libc::SIGFPE - 1)
    | 1 << (libc::SIGTRAP - 1);
/// `-EINTR` as a register value.
const EINTR: u64 = -(libc::EINTR as i64) as u64;
/// System calls that replace the thread's restart block (sleeps, polls, timed waits).
const REPLACES_RESTART_BLOCK: [i64; 9] = [
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_select,
    libc::SYS_pselect6,
    libc::SYS_futex,
    libc::SYS_restart_syscall,
    libc::SYS_epoll_pwait2,
];

/// The signals the process ignores (`SigIgn` of `/proc/PID/status`; 0 if unreadable).
fn ignored_faults(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Which stopped thread runs the call: one in an interrupt or signal-delivery stop (never a
/// clone event stop), preferably one that is not holding a signal for delivery and is
/// blocked in a system call (sleeping in `nanosleep`, `poll` or `read`, it holds no lock of
/// libc's), one whose call restarts without the kernel's restart block (`read`, not
/// `nanosleep`), the leader first. `blocked_only`: no other will do (a call that takes the
/// loader's and malloc's locks in a program that never asked for it: a thread stopped
/// inside `malloc` would wait for itself).
fn pick_thread(
    mem: &ProcMem,
    threads: &StoppedThreads,
    pid: i32,
    blocked_only: bool,
) -> Result<i32, ProcessError> {
    let mut candidates: Vec<(i32, (bool, bool, bool, bool))> = Vec::new();
    for &tid in &threads.tids {
        if !matches!(
            threads.stop_kind(tid),
            Some(StopKind::Interrupt | StopKind::Signal)
        ) {
            continue;
        }
        let interrupted = get_regs(tid)
            .ok()
            .filter(|r| (r.orig_rax as i64) >= 0 && RESTART_ERRNOS.contains(&(r.rax as i64)));
        let in_syscall = interrupted.is_some();
        if blocked_only && !in_syscall {
            continue;
        }
        if interrupted.is_some_and(|r| super::frame::in_int80(mem, &r)) {
            // Its restart would go through the 64-bit table with a 32-bit number.
            continue;
        }
        // A sleep's restart state lives in the kernel (the thread's restart block), where a
        // callee that sleeps or polls itself replaces it: that sleep would then end early
        // with EINTR. A thread in a call restarted from its registers alone is better.
        let restart_block = interrupted.is_some_and(|r| r.rax as i64 == ERESTART_RESTARTBLOCK);
        // Sorted ascending: false first.
        let key = (
            threads.in_signal_stop(tid),
            !in_syscall,
            restart_block,
            tid != pid,
        );
        candidates.push((tid, key));
    }
    candidates.sort_by_key(|&(_, key)| key);
    candidates.first().map(|&(tid, _)| tid).ok_or_else(|| {
        if blocked_only {
            return ProcessError::Other(format!(
                "no thread of pid {pid} is blocked in a system call, and only such a thread \
                 can run this call safely; no call was made"
            ));
        }
        ProcessError::Other(format!(
            "no thread of pid {pid} can run a call: each is held inside a clone, an exec or \
             its exit"
        ))
    })
}

/// One injected call: the function, its integer arguments, its time limits, its name in
/// messages, and whether only a thread blocked in a system call may run it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    pub(crate) function: u64,
    pub(crate) args: &'a [u64],
    pub(crate) limits: crate::CallLimits,
    pub(crate) what: &'a str,
    pub(crate) blocked_only: bool,
}

/// Calls the function at `function` with up to six integer arguments in one of the stopped
/// threads and returns its `rax`. Every thread must be stopped (`threads`); they stay
/// stopped unless the call outlasts `limits.stopped`, after which the others are let go
/// (see the module doc). `what` names the callee in messages.
pub(crate) fn call_function(
    pid: i32,
    mem: &ProcMem,
    threads: &mut StoppedThreads,
    trampoline: &mut Trampoline,
    call: &Call<'_>,
) -> Result<u64, ProcessError> {
    let Call {
        function,
        args,
        limits,
        what,
        blocked_only,
    } = *call;
    if args.len() > 6 {
        return Err(ProcessError::Other(format!(
            "{what}: {} arguments, at most 6 go in registers",
            args.len()
        )));
    }
    let tid = pick_thread(mem, threads, pid, blocked_only)?;
    let mut context = Context::capture(tid)?;
    let block = trampoline.write_block(mem, tid, &context, true)?;
    // A fault of the callee in a thread that blocks it would make the kernel reset the
    // program's action for it to the default (`force_sig_info`): unblocked for the call.
    // hot-lsp puts the mask back after it, the page's way back does without hot-lsp.
    if let Err(e) = set_sigmask(tid, context.mask & !FAULT_SIGNALS) {
        trampoline.release(mem, block);
        return Err(e);
    }
    let mut regs = resumed_regs(&context.regs, Restart::Kernel);
    regs.rip = function;
    regs.rsp = block.addr - 8;
    let mut words = [0u64; 6];
    words[..args.len()].copy_from_slice(args);
    regs.rdi = words[0];
    regs.rsi = words[1];
    regs.rdx = words[2];
    regs.rcx = words[3];
    regs.r8 = words[4];
    regs.r9 = words[5];
    regs.rax = 0;
    regs.eflags &= !EFLAGS_DF_TF;
    if let Err(e) = set_regs(tid, &regs) {
        let _ = set_sigmask(tid, context.mask);
        trampoline.release(mem, block);
        return Err(e);
    }
    crate::fault::stage("call", "registers set");
    let returned_at = trampoline.syscall_at() + 2;
    let returned = |r: &libc::user_regs_struct| {
        r.rip == returned_at && r.orig_rax == libc::SYS_getpid as u64 && r.rsp == block.addr
    };
    // The restart block of a sleep the thread was interrupted in is replaced by any sleep
    // or wait of the callee's own: from then on the way back ends the interrupted call with
    // EINTR (as a signal handler running would), never runs the kernel's restart with what
    // the callee left there.
    let sleeping =
        (context.regs.orig_rax as i64) >= 0 && context.regs.rax as i64 == ERESTART_RESTARTBLOCK;
    let mut ended = false;
    let mut on_syscall = |r: &libc::user_regs_struct| {
        if sleeping && !ended && REPLACES_RESTART_BLOCK.contains(&(r.orig_rax as i64)) {
            ended = block
                .end_interrupted_call(mem, context.regs.rip, EINTR)
                .is_ok();
        }
    };
    let start = Instant::now();
    let end = threads.run_call(
        tid,
        returned,
        &mut on_syscall,
        start + limits.stopped,
        start + limits.total,
    );
    let mut back_regs = context.regs;
    if ended {
        back_regs.rax = EINTR;
        back_regs.orig_rax = u64::MAX;
    }
    let (outcome, back) = match end {
        Err(ProcessError::Exited) => return Err(ProcessError::Exited),
        // Held somewhere in the callee, perhaps at one of its system calls' entry stops,
        // where registers put back would run that call again: let it finish on its own.
        Err(e) => {
            threads.let_go_running(tid);
            return Err(ProcessError::Other(format!(
                "{what} at {function:#x} in thread {tid}: {e}; the thread was let go in the \
                 callee, and goes back to where it was by itself when the call returns"
            )));
        }
        Ok(CallEnd::StillRunning) => {
            // Its way back stays (the block and its tail are never reused): the thread is
            // let go in the callee, and returns through the trampoline whenever it does.
            threads.let_go_running(tid);
            return Err(ProcessError::CallStillRunning(format!(
                "{what} at {function:#x} did not return within {:?} in thread {tid} (it waits \
                 for something that does not come); the other threads were let go after {:?}, \
                 and that thread is left running in the callee: it goes back to where it was \
                 by itself if the call ever returns",
                limits.total, limits.stopped
            )));
        }
        // At the trampoline's `getpid` entry stop: the kernel runs what the registers name
        // once resumed, so the interrupted system call's restart, not the getpid.
        Ok(CallEnd::Returned) => {
            crate::fault::stage("call", "returned");
            (block.result(mem), entry_stop_regs(&back_regs))
        }
        Ok(CallEnd::Faulted(info)) => {
            let at = get_regs(tid).map_or(0, |r| r.rip);
            // Held at the fault: should hot-lsp die now, the kernel would drop the signal and
            // the thread run the faulting instruction again, untraced. Sent to the page's way
            // back first, it goes home instead.
            if let Ok(mut home) = get_regs(tid) {
                home.rip = trampoline.restore();
                home.rsp = block.addr;
                let _ = set_regs(tid, &home);
            }
            crate::fault::stage("call", "faulted");
            let reset = match ignored_faults(pid) & (1 << (info.si_signo - 1)) {
                0 => String::new(),
                _ => format!(
                    "; the program ignored signal {}, and the kernel set it back to its \
                     default action when the callee faulted",
                    info.si_signo
                ),
            };
            (
                Err(ProcessError::Other(format!(
                    "{what} at {function:#x} faulted in thread {tid} (signal {} at {at:#x}); the \
                     fault was not delivered and the thread was taken back to where it was{reset}",
                    info.si_signo
                ))),
                back_regs,
            )
        }
    };
    // Put everything back, whatever happened: the extended state and the mask first, the
    // registers last (with them the thread no longer needs the trampoline).
    let restored = set_extended_state(tid, &mut context.extended)
        .and_then(|()| match sigmask(tid)? == context.mask {
            true => Ok(()),
            false => set_sigmask(tid, context.mask),
        })
        .and_then(|()| threads.park(tid, &back, "call"));
    match restored {
        Ok(()) => trampoline.release(mem, block),
        Err(ProcessError::Exited) => return Err(ProcessError::Exited),
        Err(_) => {}
    }
    match (outcome, restored) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(e)) => Err(ProcessError::Other(format!(
            "{what} returned, but thread {tid} could not be put back where it was: {e}"
        ))),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(restore)) => Err(ProcessError::Other(format!(
            "{e}; and thread {tid} could not be put back where it was: {restore}"
        ))),
    }
}
