//! A self-restoring signal frame on a stopped thread's stack: code hot-lsp makes a thread
//! run (an injected system call) returns through `rt_sigreturn` to exactly where the thread
//! was, with or without hot-lsp. If hot-lsp dies mid-injection — SIGKILL, OOM, a crash —
//! the kernel lets the thread go with whatever registers it had at that moment; without
//! this frame it would run on with the injection's registers and crash the program.
//!
//! The x86-64 signal frame `rt_sigreturn` reads (`struct rt_sigframe` of the kernel's
//! `arch/x86/include/asm/sigframe.h`), at the stack pointer minus 8 when the restorer's
//! `syscall` runs:
//!
//! ```text
//!   +0    pretcode      the restorer's address, popped by the `ret` that reaches it
//!   +8    uc_flags      UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS
//!   +16   uc_link
//!   +24   uc_stack      ss_sp, ss_flags, ss_size
//!   +48   uc_mcontext   struct sigcontext: r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx,
//!                       rsp, rip, eflags, cs/gs/fs/ss, err, trapno, oldmask, cr2, fpstate
//!   +304  uc_sigmask
//!   +312  siginfo       (unused by rt_sigreturn)
//!   +448  fpstate       the XSAVE area, 64-byte aligned, FP_XSTATE_MAGIC2 after it
//! ```
//!
//! What `rt_sigreturn` puts back and how each is made exact:
//! - General registers, `rip`, `rsp` and the flags: from `uc_mcontext`.
//! - The x87/SSE/AVX state: from the XSAVE area at `fpstate`, exactly as `PTRACE_GETREGSET`
//!   (`NT_X86_XSTATE`) gave it, whose software-reserved bytes already carry the
//!   `FP_XSTATE_MAGIC1` header the kernel checks; a null `fpstate` would *clear* the state.
//! - The signal mask: from `uc_sigmask`, the thread's own (`PTRACE_GETSIGMASK`).
//! - The alternate signal stack: `rt_sigreturn` sets it from `uc_stack`, and the thread's
//!   cannot be read from outside; an invalid `ss_flags` makes that `sigaltstack` fail with
//!   `EINVAL` before it changes anything (the kernel ignores all but `EFAULT` there).
//! - `orig_rax` becomes -1, so the kernel cannot restart a system call the thread was
//!   interrupted in. The frame therefore holds the registers the kernel's own restart would
//!   make (`rip` back onto the `syscall` instruction, `rax` = its number): the call is made
//!   again. For `-ERESTART_RESTARTBLOCK` (`nanosleep`, `poll`, ...) the kernel would
//!   continue with the remaining time; `rt_sigreturn` resets that restart block, so the call
//!   is made again with its original arguments: a relative sleep starts over. That is the
//!   only difference, and it only happens if hot-lsp dies mid-injection: while hot-lsp
//!   lives it puts the thread back itself, with the kernel's exact restart.

use super::memory::ProcMem;
use super::threads::{self, errno_text, get_regs};
use crate::{Mapping, ProcessError};

/// `NT_X86_XSTATE`: the regset of the extended state (x87, SSE, AVX, ...).
const NT_X86_XSTATE: libc::c_int = 0x202;
/// Large enough for any XSAVE layout the kernel reports (AVX-512 needs ~2.7 KiB; AMX 11 KiB).
const XSTATE_MAX: usize = 16 * 1024;
/// `PTRACE_GETSIGMASK` / `PTRACE_SETSIGMASK` (not in the libc crate).
const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;

/// Stack space left untouched below the thread's stack pointer: the red zone (128 bytes)
/// and more.
pub(crate) const STACK_GAP: u64 = 1024;
/// Where the XSAVE area starts in the frame (64-byte aligned, as `xrstor` needs).
const FPSTATE_AT: usize = 448;
/// `uc_mcontext` and `uc_sigmask` offsets in the frame.
const MCONTEXT_AT: usize = 48;
const SIGMASK_AT: usize = 304;
/// `fpstate` pointer and segment words inside `struct sigcontext`.
const SC_SEGMENTS: usize = 144;
const SC_FPSTATE: usize = 184;
/// `UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS`.
const UC_FLAGS: u64 = 0x1 | 0x2 | 0x4;
/// An `ss_flags` that is none of 0, `SS_ONSTACK`, `SS_DISABLE`: `sigaltstack` refuses it
/// with `EINVAL` and the thread's alternate stack stays as it is.
const SS_FLAGS_KEEP: u32 = 0x40;
/// The software-reserved bytes of the FXSAVE area, where `FP_XSTATE_MAGIC1` and the XSAVE
/// size live (`struct _fpx_sw_bytes`).
const SW_BYTES_AT: usize = 464;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// The `-ERESTART*` values a system call interrupted by a stop leaves in `rax`: the kernel
/// restarts the call for these when no signal handler runs.
const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;
/// The trap flag: never set in registers we hand to a thread that may run untraced.
const EFLAGS_TF: u64 = 0x100;

/// `mov rax, 15; syscall`: `rt_sigreturn`, as glibc's and musl's `__restore_rt` are.
const RESTORER: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];
/// `syscall; ret`.
const SYSCALL_RET: [u8; 3] = [0x0f, 0x05, 0xc3];

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

/// The extended (x87/SSE/AVX) state of a stopped thread, in the XSAVE layout.
pub(crate) fn extended_state(tid: i32) -> Result<Vec<u8>, ProcessError> {
    let mut extended = vec![0u8; XSTATE_MAX];
    let len = regset(libc::PTRACE_GETREGSET, tid, &mut extended)?;
    extended.truncate(len);
    Ok(extended)
}

pub(crate) fn set_extended_state(tid: i32, extended: &mut [u8]) -> Result<(), ProcessError> {
    regset(libc::PTRACE_SETREGSET, tid, extended).map(drop)
}

/// The blocked-signal mask of a stopped thread.
pub(crate) fn sigmask(tid: i32) -> Result<u64, ProcessError> {
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

pub(crate) fn set_sigmask(tid: i32, mask: u64) -> Result<(), ProcessError> {
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

/// Everything of a stopped thread that running injected code may change.
pub(crate) struct Context {
    pub(crate) regs: libc::user_regs_struct,
    pub(crate) extended: Vec<u8>,
    pub(crate) mask: u64,
}

impl Context {
    pub(crate) fn capture(tid: i32) -> Result<Context, ProcessError> {
        Ok(Context {
            regs: get_regs(tid)?,
            extended: extended_state(tid)?,
            mask: sigmask(tid)?,
        })
    }
}

/// How a thread put back by user-mode code restarts the system call it was interrupted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Restart {
    /// As the kernel does when no signal handler runs: `-ERESTART_RESTARTBLOCK` goes on
    /// through `restart_syscall` (with the time that was left). Right when nothing on the
    /// way back went through `rt_sigreturn` (the trampoline page).
    Kernel,
    /// Through a signal frame: `rt_sigreturn` resets the restart block, so the original call
    /// is made again with its original arguments (or, interrupted in `restart_syscall`
    /// itself, that returns EINTR). See the module doc.
    Reexecute,
}

/// The registers a thread resumes with once the kernel has dealt with the system call it
/// was stopped in, when no signal handler runs: the call is restarted (`rip` back on the
/// `syscall` instruction, `rax` its number). `orig_rax` is -1, as after `rt_sigreturn`.
pub(crate) fn resumed_regs(
    regs: &libc::user_regs_struct,
    restart: Restart,
) -> libc::user_regs_struct {
    let mut resumed = *regs;
    let interrupted = (regs.orig_rax as i64) >= 0;
    let again = match regs.rax as i64 {
        ERESTART_RESTARTBLOCK if restart == Restart::Kernel => {
            Some(libc::SYS_restart_syscall as u64)
        }
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK => {
            Some(regs.orig_rax)
        }
        _ => None,
    };
    if let Some(number) = again.filter(|_| interrupted) {
        resumed.rax = number;
        resumed.rip = regs.rip.wrapping_sub(2);
    }
    resumed.orig_rax = u64::MAX;
    resumed.eflags &= !EFLAGS_TF;
    resumed
}

/// The registers that, set at a system-call *entry* stop, make the kernel do what resuming
/// from the stop `regs` were taken in would have done: restart the call they were
/// interrupted in (`restart_syscall` for `-ERESTART_RESTARTBLOCK`, which continues with the
/// time that was left), or nothing at all (`orig_rax` -1: the entry is skipped and `rax`
/// kept). Never a system call that had already finished: running it again would repeat it.
pub(crate) fn entry_stop_regs(regs: &libc::user_regs_struct) -> libc::user_regs_struct {
    let mut at_entry = *regs;
    let interrupted = (regs.orig_rax as i64) >= 0;
    at_entry.orig_rax = match regs.rax as i64 {
        ERESTART_RESTARTBLOCK if interrupted => libc::SYS_restart_syscall as u64,
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND if interrupted => regs.orig_rax,
        _ => u64::MAX,
    };
    at_entry
}

/// Whether the thread stopped in a system call made with `int 0x80` (the 32-bit entry of
/// a 64-bit program): its number is one of the 32-bit table, which neither restart way here
/// knows.
pub(crate) fn in_int80(mem: &ProcMem, regs: &libc::user_regs_struct) -> bool {
    let mut two = [0u8; 2];
    (regs.orig_rax as i64) >= 0
        && mem.read_exact(regs.rip.wrapping_sub(2), &mut two).is_ok()
        && two == [0xcd, 0x80]
}

/// Code in the program that injected code borrows: a `syscall; ret` and a restorer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gadgets {
    pub(crate) syscall_ret: u64,
    pub(crate) restorer: u64,
}

/// Finds a `syscall; ret` and an `rt_sigreturn` restorer (`mov rax, 15; syscall`) in the
/// program's executable mappings, libc's first (glibc and musl have both). Any bytes that
/// read so will do, even inside a longer instruction: the thread executes from there.
pub(crate) fn find_gadgets(mem: &ProcMem, maps: &[Mapping]) -> Option<Gadgets> {
    let is_libc = |m: &&Mapping| {
        let name = m.path.rsplit('/').next().unwrap_or("");
        name.starts_with("libc.so") || name.starts_with("libc-") || name.starts_with("ld-musl")
    };
    let libc_text = maps
        .iter()
        .filter(|m| m.executable && m.readable)
        .filter(is_libc);
    let other_text = maps
        .iter()
        .filter(|m| m.executable && m.readable)
        .filter(|m| !is_libc(m));
    let (mut syscall_ret, mut restorer) = (None, None);
    let mut chunk = vec![0u8; 64 * 1024];
    for mapping in libc_text.chain(other_text) {
        let mut addr = mapping.range.start;
        while addr < mapping.range.end && (syscall_ret.is_none() || restorer.is_none()) {
            let len = ((mapping.range.end - addr) as usize).min(chunk.len());
            if mem.read_exact(addr, &mut chunk[..len]).is_err() {
                break;
            }
            let bytes = &chunk[..len];
            let find = |pattern: &[u8]| {
                bytes
                    .windows(pattern.len())
                    .position(|w| w == pattern)
                    .map(|at| addr + at as u64)
            };
            syscall_ret = syscall_ret.or_else(|| find(&SYSCALL_RET));
            restorer = restorer.or_else(|| find(&RESTORER));
            // Overlap so a pattern across chunks is found.
            addr += len.saturating_sub(RESTORER.len()).max(1) as u64;
        }
        if let (Some(syscall_ret), Some(restorer)) = (syscall_ret, restorer) {
            return Some(Gadgets {
                syscall_ret,
                restorer,
            });
        }
    }
    None
}

/// A signal frame written below a stopped thread's red zone, and the bytes it covered.
pub(crate) struct Frame {
    /// Where the thread's stack pointer goes: the frame's `pretcode` word.
    pub(crate) addr: u64,
    covered: Vec<u8>,
}

impl Frame {
    /// Writes the frame that puts the thread of `context` back where it was when
    /// `restorer` runs `rt_sigreturn` with the stack pointer at `addr + 8`. Fails without
    /// writing anything if that part of the stack cannot be read (a thread near the end of
    /// its stack).
    pub(crate) fn write(
        mem: &ProcMem,
        tid: i32,
        context: &Context,
        restorer: u64,
    ) -> Result<Frame, ProcessError> {
        let extended = &context.extended;
        let xstate_size = xstate_size(extended);
        let size = FPSTATE_AT + xstate_size + 4;
        let top = context.regs.rsp.wrapping_sub(STACK_GAP);
        let addr = top.wrapping_sub(size as u64) & !63;
        let stack_error = |e: std::io::Error| {
            ProcessError::Other(format!(
                "the stack of thread {tid} has no room for a signal frame at {addr:#x} ({size} \
                 bytes below its stack pointer {:#x}): {e}",
                context.regs.rsp
            ))
        };
        super::trampoline::check_stack(tid, context.regs.rsp, addr..addr + size as u64)?;
        let mut covered = vec![0u8; size];
        mem.read_exact(addr, &mut covered).map_err(stack_error)?;

        let resumed = resumed_regs(&context.regs, Restart::Reexecute);
        let mut frame = vec![0u8; size];
        let mut put = |at: usize, value: u64| {
            frame[at..at + 8].copy_from_slice(&value.to_le_bytes());
        };
        put(0, restorer);
        put(8, UC_FLAGS);
        put(16, 0);
        // uc_stack: ss_sp, ss_flags (+ padding), ss_size.
        put(24, 0);
        put(32, u64::from(SS_FLAGS_KEEP));
        put(40, 0);
        let r = &resumed;
        let gprs = [
            r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx,
            r.rdx, r.rax, r.rcx, r.rsp, r.rip, r.eflags,
        ];
        for (i, value) in gprs.into_iter().enumerate() {
            put(MCONTEXT_AT + 8 * i, value);
        }
        // cs, gs, fs, ss (16 bits each).
        let segments =
            (r.cs & 0xffff) | (r.gs & 0xffff) << 16 | (r.fs & 0xffff) << 32 | (r.ss & 0xffff) << 48;
        put(MCONTEXT_AT + SC_SEGMENTS, segments);
        put(MCONTEXT_AT + SC_FPSTATE, addr + FPSTATE_AT as u64);
        put(SIGMASK_AT, context.mask);
        frame[FPSTATE_AT..FPSTATE_AT + xstate_size.min(extended.len())]
            .copy_from_slice(&extended[..xstate_size.min(extended.len())]);
        if has_xsave_layout(extended) {
            // The software bytes `PTRACE_GETREGSET` gives are the machine's (the largest
            // layout, AMX tiles included); the kernel checks them against this task's size:
            // announce the size that was read, with the magic right after it.
            let sw = FPSTATE_AT + SW_BYTES_AT;
            frame[sw + 4..sw + 8].copy_from_slice(&(xstate_size as u32 + 4).to_le_bytes());
            frame[sw + 16..sw + 20].copy_from_slice(&(xstate_size as u32).to_le_bytes());
        }
        frame[FPSTATE_AT + xstate_size..FPSTATE_AT + xstate_size + 4]
            .copy_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
        mem.write_all(addr, &frame).map_err(stack_error)?;
        Ok(Frame { addr, covered })
    }

    /// Puts back the stack bytes the frame covered, once the thread no longer needs it.
    pub(crate) fn erase(self, mem: &ProcMem) {
        // Below the stack pointer: nothing the program reads. Best effort.
        let _ = mem.write_all(self.addr, &self.covered);
    }
}

/// Whether the extended state is in the XSAVE layout (with the software-reserved header),
/// not the plain FXSAVE one of a CPU without XSAVE.
pub(crate) fn has_xsave_layout(extended: &[u8]) -> bool {
    extended
        .get(SW_BYTES_AT..SW_BYTES_AT + 4)
        .is_some_and(|b| b == FP_XSTATE_MAGIC1.to_le_bytes())
}

/// The XSAVE size the software-reserved bytes announce, at most what was read (the frame
/// announces that size; the kernel checks `FP_XSTATE_MAGIC2` after it), or the plain
/// FXSAVE size (512) without them.
fn xstate_size(extended: &[u8]) -> usize {
    let word = |at: usize| {
        extended
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    match (word(SW_BYTES_AT), word(SW_BYTES_AT + 16)) {
        (Some(FP_XSTATE_MAGIC1), Some(size)) => (size as usize).min(extended.len()),
        _ => 512.min(extended.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(rip: u64, rax: i64, orig_rax: i64) -> libc::user_regs_struct {
        // SAFETY: plain old data.
        let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        r.rip = rip;
        r.rax = rax as u64;
        r.orig_rax = orig_rax as u64;
        r.eflags = 0x246 | EFLAGS_TF;
        r
    }

    /// (restart, rax, orig_rax) at the stop → (rip, rax) the thread resumes with.
    #[test]
    fn resumed_registers_restart_what_the_kernel_restarts() {
        use Restart::*;
        let block = ERESTART_RESTARTBLOCK;
        let cases: [(&str, Restart, i64, i64, u64, i64); 8] = [
            ("not in a system call", Kernel, 7, -1, 0x1000, 7),
            ("nanosleep, restart block", Kernel, block, 35, 0xffe, 219),
            (
                "restart block via sigreturn",
                Reexecute,
                block,
                35,
                0xffe,
                35,
            ),
            ("read, ERESTARTSYS", Kernel, ERESTARTSYS, 0, 0xffe, 0),
            (
                "ERESTARTSYS via sigreturn",
                Reexecute,
                ERESTARTSYS,
                0,
                0xffe,
                0,
            ),
            ("ERESTARTNOINTR", Kernel, ERESTARTNOINTR, 61, 0xffe, 61),
            ("ERESTARTNOHAND", Kernel, ERESTARTNOHAND, 7, 0xffe, 7),
            ("finished with an error", Kernel, -4, 35, 0x1000, -4),
        ];
        for (what, restart, rax, orig_rax, rip, resumed_rax) in cases {
            let resumed = resumed_regs(&regs(0x1000, rax, orig_rax), restart);
            assert_eq!(
                (resumed.rip, resumed.rax as i64),
                (rip, resumed_rax),
                "{what}"
            );
            assert_eq!(resumed.orig_rax, u64::MAX, "{what}");
            assert_eq!(resumed.eflags & EFLAGS_TF, 0, "{what}");
        }
    }

    /// (rax, orig_rax) at the stop → orig_rax to set at an entry stop.
    #[test]
    fn entry_stops_run_only_what_the_kernel_would_restart() {
        let cases: [(&str, i64, i64, i64); 5] = [
            ("not in a system call", 7, -1, -1),
            ("nanosleep, restart block", ERESTART_RESTARTBLOCK, 35, 219),
            ("read, ERESTARTSYS", ERESTARTSYS, 0, 0),
            ("finished write: never again", 12, 1, -1),
            ("finished with an error", -4, 35, -1),
        ];
        for (what, rax, orig_rax, expected) in cases {
            let at_entry = entry_stop_regs(&regs(0x1000, rax, orig_rax));
            assert_eq!(at_entry.orig_rax as i64, expected, "{what}");
            assert_eq!((at_entry.rip, at_entry.rax as i64), (0x1000, rax), "{what}");
        }
    }

    #[test]
    fn xstate_size_comes_from_the_software_bytes() {
        let mut area = vec![0u8; 1024];
        assert_eq!(xstate_size(&area), 512, "no magic: FXSAVE only");
        area[SW_BYTES_AT..SW_BYTES_AT + 4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
        area[SW_BYTES_AT + 16..SW_BYTES_AT + 20].copy_from_slice(&832u32.to_le_bytes());
        assert_eq!(xstate_size(&area), 832);
        area[SW_BYTES_AT + 16..SW_BYTES_AT + 20].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(xstate_size(&area), 1024, "at most what was read");
    }
}
