//! Calling a function of the target in one of its threads while every thread is stopped
//! (libgcc's `__register_frame_info` for the unwind tables of new code).
//!
//! The chosen thread's registers and extended (x87/SSE/AVX) state are saved, a call frame
//! is set up below its red zone as the psABI wants it at a function's entry (`rsp + 8`
//! 16-byte aligned, the direction flag clear, `al` = 0 vector registers for a variadic
//! callee) with return address 0, and the thread alone runs until it stops on a fault. A
//! return shows as the fetch fault at address 0 with the stack pointer just above our frame;
//! any other fault is the callee's. Either way, and on a timeout, every register and the
//! stack word written are put back, and the fault is never delivered: the program goes on
//! exactly where it was stopped.
//!
//! A callee that needs a lock another (stopped) thread holds cannot finish: it times out,
//! and the thread is taken back to where it was. Choose callees that hold no lock when they
//! block (libgcc's registration takes its mutex only around list updates, and
//! `__register_frame_info` is given its `struct object` so it does not call `malloc`).

use std::time::{Duration, Instant};

use super::memory::ProcMem;
use super::threads::{get_regs, set_regs, StoppedThreads};
use crate::ProcessError;

/// `NT_X86_XSTATE`: the regset of the extended state (x87, SSE, AVX, ...).
const NT_X86_XSTATE: libc::c_int = 0x202;
/// Large enough for any XSAVE layout the kernel reports (AVX-512 needs ~2.7 KiB; AMX 11 KiB).
const XSTATE_MAX: usize = 16 * 1024;
/// Stack space skipped below the thread's stack pointer: the red zone (128 bytes) and more.
const STACK_GAP: u64 = 1024;

/// The thread's extended register state, as `PTRACE_GETREGSET` gave it.
struct ExtendedState(Vec<u8>);

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

fn save_extended(tid: i32) -> Result<ExtendedState, ProcessError> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let len = regset(libc::PTRACE_GETREGSET, tid, &mut buf)?;
    buf.truncate(len);
    Ok(ExtendedState(buf))
}

fn restore_extended(tid: i32, state: &mut ExtendedState) -> Result<(), ProcessError> {
    regset(libc::PTRACE_SETREGSET, tid, &mut state.0).map(drop)
}

/// Which stopped thread runs the call: one that is not holding a signal for delivery,
/// preferably one blocked in a system call (sleeping in `nanosleep`, `poll` or `read`, it
/// holds no lock of libc's), the leader first.
fn pick_thread(threads: &StoppedThreads, pid: i32) -> Result<i32, ProcessError> {
    let mut order: Vec<i32> = threads.tids.clone();
    order.sort_by_key(|&tid| tid != pid);
    let free: Vec<i32> = order
        .iter()
        .copied()
        .filter(|&tid| !threads.in_signal_stop(tid))
        .collect();
    let in_syscall = free
        .iter()
        .copied()
        .find(|&tid| get_regs(tid).is_ok_and(|r| (r.orig_rax as i64) >= 0));
    in_syscall
        .or_else(|| free.first().copied())
        .or_else(|| order.first().copied())
        .ok_or(ProcessError::Exited)
}

/// Calls the function at `function` with up to six integer arguments in one of the stopped
/// threads and returns its `rax`. Every thread must be stopped (`threads`); they stay
/// stopped. `what` names the callee in messages.
pub(crate) fn call_function(
    pid: i32,
    mem: &ProcMem,
    threads: &mut StoppedThreads,
    function: u64,
    args: &[u64],
    timeout: Duration,
    what: &str,
) -> Result<u64, ProcessError> {
    if args.len() > 6 {
        return Err(ProcessError::Other(format!(
            "{what}: {} arguments, at most 6 go in registers",
            args.len()
        )));
    }
    let tid = pick_thread(threads, pid)?;
    let saved = get_regs(tid)?;
    let mut extended = save_extended(tid)?;
    let frame = (saved.rsp.wrapping_sub(STACK_GAP) & !15).wrapping_sub(8);
    let mut old_word = [0u8; 8];
    mem.read_exact(frame, &mut old_word).map_err(|e| {
        ProcessError::Other(format!("{what}: stack of thread {tid} at {frame:#x}: {e}"))
    })?;
    mem.write_all(frame, &0u64.to_le_bytes()).map_err(|e| {
        ProcessError::Other(format!("{what}: stack of thread {tid} at {frame:#x}: {e}"))
    })?;
    let result = run_call(threads, tid, &saved, frame, function, args, timeout, what);
    // Put everything back, whatever happened: registers (orig_rax and rax included, so an
    // interrupted system call restarts), the extended state, the stack word.
    let restored = set_regs(tid, &saved)
        .and_then(|()| restore_extended(tid, &mut extended))
        .and_then(|()| {
            mem.write_all(frame, &old_word)
                .map_err(|e| ProcessError::Other(format!("{what}: restore the stack: {e}")))
        });
    match (result, restored) {
        (Err(ProcessError::Exited), _) => Err(ProcessError::Exited),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e),
        (Ok(value), Ok(())) => Ok(value),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_call(
    threads: &mut StoppedThreads,
    tid: i32,
    saved: &libc::user_regs_struct,
    frame: u64,
    function: u64,
    args: &[u64],
    timeout: Duration,
    what: &str,
) -> Result<u64, ProcessError> {
    let mut regs = *saved;
    regs.rip = function;
    regs.rsp = frame;
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
    set_regs(tid, &regs)?;
    let deadline = Instant::now() + timeout;
    let Some(info) = threads.run_until_trap(tid, deadline)? else {
        return Err(ProcessError::Other(format!(
            "{what} at {function:#x} did not return within {timeout:?} in thread {tid} (it may \
             wait for a lock a stopped thread holds); the thread was taken back to where it was"
        )));
    };
    let after = get_regs(tid)?;
    if info.si_signo == libc::SIGSEGV && after.rip == 0 && after.rsp == frame.wrapping_add(8) {
        return Ok(after.rax);
    }
    Err(ProcessError::Other(format!(
        "{what} at {function:#x} faulted in thread {tid} (signal {} at {:#x}); the fault was \
         not delivered and the thread was taken back to where it was",
        info.si_signo, after.rip
    )))
}
