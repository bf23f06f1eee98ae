//! Calling a function of the target in one of its threads while every thread is stopped
//! (libgcc's `__register_frame_info` for the unwind tables of new code).
//!
//! The chosen thread's registers, extended (x87/SSE/AVX) state and signal mask are saved, a
//! call frame is set up below its red zone as the psABI wants it at a function's entry
//! (`rsp + 8` 16-byte aligned, the direction flag clear, `al` = 0 vector registers for a
//! variadic callee) with return address 0, and the thread alone runs until it stops on a
//! fault. A return shows as the fetch fault at address 0 with the stack pointer just above
//! our frame; any other fault is the callee's. Either way every register, the mask and the
//! stack word written are put back, and the fault is never delivered: the program goes on
//! exactly where it was stopped.
//!
//! The return fault is raised by the kernel with `force_sig_info`: for a thread that blocks
//! SIGSEGV, or a process that ignores it, that would reset the program's SIGSEGV action to
//! the default (and unblock it), which restoring registers does not undo. So the call runs
//! with SIGSEGV unblocked in its thread (the exact mask is put back after), a thread that
//! does not block it is preferred, and a program that ignores SIGSEGV gets no call at all.
//!
//! Only a thread held in an interrupt/group stop (`PTRACE_EVENT_STOP`) or a plain
//! signal-delivery stop runs a call: one held at its clone event stop is inside `clone`
//! (its `rax` is still `-ENOSYS`; restoring it there makes the program's `clone3` fail).
//!
//! A call that has started is never pulled back: the callee may hold a lock (from GCC 13,
//! libgcc's registration inserts into a B-tree and calls `malloc` under the unwinder's
//! locks) or wait for one a stopped thread holds. When the first limit passes, every other
//! thread is let go (the program runs on; nothing it can reach depends on the call) and the
//! call thread is waited for up to the total limit. If it still has not returned it is left
//! running in the callee, and the owner thread restores it whenever it comes back (see
//! `threads::ABANDONED`); the call fails saying so.

use std::time::Instant;

use super::memory::ProcMem;
use super::threads::{self, errno_text, get_regs, set_regs, StopKind, StoppedThreads};
use crate::ProcessError;

/// `NT_X86_XSTATE`: the regset of the extended state (x87, SSE, AVX, ...).
const NT_X86_XSTATE: libc::c_int = 0x202;
/// Large enough for any XSAVE layout the kernel reports (AVX-512 needs ~2.7 KiB; AMX 11 KiB).
const XSTATE_MAX: usize = 16 * 1024;
/// Stack space skipped below the thread's stack pointer: the red zone (128 bytes) and more.
const STACK_GAP: u64 = 1024;
/// `PTRACE_GETSIGMASK` / `PTRACE_SETSIGMASK` (not in the libc crate).
const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;
/// SIGSEGV's bit in a kernel signal set.
const SIGSEGV_BIT: u64 = 1 << (libc::SIGSEGV - 1);
/// The `-ERESTART*` values a system call interrupted by a stop leaves in `rax` (512..=516).
const RESTART_ERRNOS: std::ops::RangeInclusive<i64> = -516..=-512;

fn regset(request: libc::c_uint, tid: i32, buf: &mut [u8]) -> Result<usize, ProcessError> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the kernel reads or writes at most `iov_len` bytes at `iov_base`, a live buffer.
    let result = unsafe {
        libc::ptrace(
            request,
            tid,
            NT_X86_XSTATE as usize,
            &mut iov as *mut libc::iovec as usize,
        )
    };
    if result == -1 {
        let err = std::io::Error::last_os_error();
        return Err(ProcessError::Other(format!(
            "{} of the extended registers of thread {tid}: {err}",
            if request == libc::PTRACE_GETREGSET {
                "PTRACE_GETREGSET"
            } else {
                "PTRACE_SETREGSET"
            }
        )));
    }
    Ok(iov.iov_len)
}

/// The blocked-signal mask of a stopped thread.
fn sigmask(tid: i32) -> Result<u64, ProcessError> {
    let mut mask: u64 = 0;
    // SAFETY: the kernel writes 8 bytes (the size passed as `addr`) into our local.
    let result = unsafe {
        libc::ptrace(
            PTRACE_GETSIGMASK,
            tid,
            8usize,
            &mut mask as *mut u64 as usize,
        )
    };
    if result == -1 {
        return Err(ProcessError::Other(format!(
            "PTRACE_GETSIGMASK of thread {tid}: {}",
            errno_text(threads::errno())
        )));
    }
    Ok(mask)
}

fn set_sigmask(tid: i32, mask: u64) -> Result<(), ProcessError> {
    // SAFETY: the kernel reads 8 bytes (the size passed as `addr`) from our local.
    let result =
        unsafe { libc::ptrace(PTRACE_SETSIGMASK, tid, 8usize, &mask as *const u64 as usize) };
    if result == -1 {
        return Err(ProcessError::Other(format!(
            "PTRACE_SETSIGMASK of thread {tid}: {}",
            errno_text(threads::errno())
        )));
    }
    Ok(())
}

/// Whether the process ignores SIGSEGV (`SigIgn` of `/proc/PID/status`; actions are shared
/// by every thread).
fn ignores_sigsegv(pid: i32) -> Result<bool, ProcessError> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(|err| super::memory::proc_error(&path, err))?;
    let ignored = text
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| ProcessError::Other(format!("{path}: no readable SigIgn line")))?;
    Ok(ignored & SIGSEGV_BIT != 0)
}

/// Everything a call changes in its thread, to put back after it.
pub(crate) struct SavedThread {
    pub(crate) tid: i32,
    regs: libc::user_regs_struct,
    extended: Vec<u8>,
    mask: u64,
    /// Where the return address 0 was written, and the word that was there.
    pub(crate) frame: u64,
    old_word: u64,
}

impl SavedThread {
    /// Puts the thread back where it was stopped: registers (orig_rax and rax included, so
    /// an interrupted system call restarts), the extended state, the signal mask and the
    /// stack word. The thread must be in a ptrace stop. Every part is tried; the first
    /// failure is returned.
    pub(crate) fn restore(&mut self) -> Result<(), ProcessError> {
        let tid = self.tid;
        let regs = set_regs(tid, &self.regs);
        let extended = regset(libc::PTRACE_SETREGSET, tid, &mut self.extended).map(drop);
        let mask = set_sigmask(tid, self.mask);
        // SAFETY: PTRACE_POKEDATA writes the word passed as `data` at `addr` in the tracee.
        let poked = unsafe {
            libc::ptrace(
                libc::PTRACE_POKEDATA,
                tid,
                self.frame as usize,
                self.old_word as usize,
            )
        };
        let word = match poked {
            -1 => Err(ProcessError::Other(format!(
                "restore the stack word at {:#x} of thread {tid}: {}",
                self.frame,
                errno_text(threads::errno())
            ))),
            _ => Ok(()),
        };
        regs.and(extended).and(mask).and(word)
    }

    /// Whether the thread's current registers show the return of the call (the fetch fault
    /// at address 0 with our frame popped).
    pub(crate) fn returned(&self, regs: &libc::user_regs_struct) -> bool {
        regs.rip == 0 && regs.rsp == self.frame.wrapping_add(8)
    }
}

/// Which stopped thread runs the call: one in an interrupt or signal-delivery stop (never a
/// clone event stop), preferably one that does not block SIGSEGV, is not holding a signal
/// for delivery, and is blocked in a system call (sleeping in `nanosleep`, `poll` or `read`,
/// it holds no lock of libc's), the leader first. `blocked_only`: no other will do (a call
/// that takes the loader's and malloc's locks in a program that never asked for it: a thread
/// stopped inside `malloc` would wait for itself).
fn pick_thread(
    threads: &StoppedThreads,
    pid: i32,
    blocked_only: bool,
) -> Result<i32, ProcessError> {
    let mut candidates: Vec<(i32, (bool, bool, bool, bool))> = Vec::new();
    for &tid in &threads.tids {
        if !matches!(
            threads.stop_kind(tid),
            Some(StopKind::Interrupt | StopKind::Signal)
        ) || threads::is_abandoned(tid)
        {
            continue;
        }
        let blocks = sigmask(tid).map_or(true, |m| m & SIGSEGV_BIT != 0);
        let in_syscall = get_regs(tid)
            .is_ok_and(|r| (r.orig_rax as i64) >= 0 && RESTART_ERRNOS.contains(&(r.rax as i64)));
        if blocked_only && !in_syscall {
            continue;
        }
        // Sorted ascending: false first.
        let key = (blocks, threads.in_signal_stop(tid), !in_syscall, tid != pid);
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
             its exit, or already runs an earlier call"
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
    if ignores_sigsegv(pid)? {
        return Err(ProcessError::Other(format!(
            "{what}: the program ignores SIGSEGV, and the injected call returns through a \
             fault the kernel would then turn into the default action (killing the program \
             on its next real fault); no call was made"
        )));
    }
    let tid = pick_thread(threads, pid, blocked_only)?;
    let regs = get_regs(tid)?;
    let mut extended = vec![0u8; XSTATE_MAX];
    let len = regset(libc::PTRACE_GETREGSET, tid, &mut extended)?;
    extended.truncate(len);
    let mask = sigmask(tid)?;
    let frame = (regs.rsp.wrapping_sub(STACK_GAP) & !15).wrapping_sub(8);
    let mut old_word = [0u8; 8];
    mem.read_exact(frame, &mut old_word).map_err(|e| {
        ProcessError::Other(format!("{what}: stack of thread {tid} at {frame:#x}: {e}"))
    })?;
    let mut saved = SavedThread {
        tid,
        regs,
        extended,
        mask,
        frame,
        old_word: u64::from_le_bytes(old_word),
    };
    let prepared = mem
        .write_all(frame, &0u64.to_le_bytes())
        .map_err(|e| {
            ProcessError::Other(format!("{what}: stack of thread {tid} at {frame:#x}: {e}"))
        })
        .and_then(|()| set_sigmask(tid, mask & !SIGSEGV_BIT));
    let result = match prepared {
        Ok(()) => match run_call(threads, &saved, function, args, limits, what) {
            Ok(outcome) => outcome,
            Err(ProcessError::Exited) => return Err(ProcessError::Exited),
            Err(e) => Err(CallFailure::Other(e)),
        },
        Err(e) => Err(CallFailure::Other(e)),
    };
    let outcome = match result {
        Err(CallFailure::StillRunning(text)) => {
            // Never put a thread back while it runs the callee: it holds what it holds. It
            // stays traced and running; the owner thread restores it when it returns.
            threads.give_up_call(saved);
            return Err(ProcessError::CallStillRunning(text));
        }
        Err(CallFailure::Other(e)) => Err(e),
        Ok(value) => Ok(value),
    };
    // Put everything back, whatever happened.
    match (outcome, saved.restore()) {
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

/// How a call that did not return a value ended.
enum CallFailure {
    /// The callee faulted, or a ptrace request failed; the thread is stopped.
    Other(ProcessError),
    /// The callee is still running after the total limit.
    StillRunning(String),
}

impl From<ProcessError> for CallFailure {
    fn from(e: ProcessError) -> CallFailure {
        CallFailure::Other(e)
    }
}

fn run_call(
    threads: &mut StoppedThreads,
    saved: &SavedThread,
    function: u64,
    args: &[u64],
    limits: crate::CallLimits,
    what: &str,
) -> Result<Result<u64, CallFailure>, ProcessError> {
    let tid = saved.tid;
    let mut regs = saved.regs;
    regs.rip = function;
    regs.rsp = saved.frame;
    let mut words = [0u64; 6];
    words[..args.len()].copy_from_slice(args);
    regs.rdi = words[0];
    regs.rsi = words[1];
    regs.rdx = words[2];
    regs.rcx = words[3];
    regs.r8 = words[4];
    regs.r9 = words[5];
    regs.rax = 0;
    // Not in a system call: the kernel must not rewind rip to restart one.
    regs.orig_rax = u64::MAX;
    // DF clear at a call (psABI); TF clear so it runs freely.
    regs.eflags &= !(0x400 | 0x100);
    if let Err(e) = set_regs(tid, &regs) {
        return Ok(Err(e.into()));
    }
    let start = Instant::now();
    let info = match threads.run_until_trap(tid, start + limits.stopped, start + limits.total) {
        Ok(Some(info)) => info,
        Ok(None) => {
            return Ok(Err(CallFailure::StillRunning(format!(
                "{what} at {function:#x} did not return within {:?} in thread {tid} (it waits \
                 for something that does not come); the other threads were let go after {:?}, \
                 and that thread is left running in the callee: it is put back where it was \
                 if the call ever returns",
                limits.total, limits.stopped
            ))))
        }
        Err(ProcessError::Exited) => return Err(ProcessError::Exited),
        Err(e) => return Ok(Err(e.into())),
    };
    let after = match get_regs(tid) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e.into())),
    };
    if info.si_signo == libc::SIGSEGV && saved.returned(&after) {
        return Ok(Ok(after.rax));
    }
    Ok(Err(CallFailure::Other(ProcessError::Other(format!(
        "{what} at {function:#x} faulted in thread {tid} (signal {} at {:#x}); the fault was \
         not delivered and the thread was taken back to where it was",
        info.si_signo, after.rip
    )))))
}
