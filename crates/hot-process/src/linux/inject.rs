//! System call injection (an `mmap` for arenas) in one stopped thread, through a `syscall`
//! instruction that already exists in the program, and the choice of where arenas go.

use std::ops::Range;

use super::memory::ProcMem;
use super::threads::{get_regs, set_regs, StoppedThreads};
use crate::{Mapping, ProcessError, Protection};

const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];
const PAGE: u64 = 4096;
/// rel32 reach: every byte of an arena must be within this distance of every byte of `near`.
const REACH: u64 = (1 << 31) - 1;

/// Finds a `syscall` instruction to borrow: the two bytes before the instruction pointer of a
/// thread stopped in a system call, else one in libc's (or any) executable mapping.
pub(crate) fn find_syscall_insn(
    mem: &ProcMem,
    regs: &libc::user_regs_struct,
    maps: &[Mapping],
    cached: Option<u64>,
) -> Result<u64, ProcessError> {
    let mut two = [0u8; 2];
    if (regs.orig_rax as i64) >= 0 && regs.rip >= 2 {
        let candidate = regs.rip - 2;
        if mem.read_exact(candidate, &mut two).is_ok() && two == SYSCALL_INSN {
            return Ok(candidate);
        }
    }
    if let Some(candidate) = cached {
        if mem.read_exact(candidate, &mut two).is_ok() && two == SYSCALL_INSN {
            return Ok(candidate);
        }
    }
    let is_libc = |m: &&Mapping| {
        let name = m.path.rsplit('/').next().unwrap_or("");
        name.starts_with("libc.so") || name.starts_with("libc-")
    };
    let libc_text = maps.iter().filter(|m| m.executable).filter(is_libc);
    let other_text = maps
        .iter()
        .filter(|m| m.executable && m.readable)
        .filter(|m| !is_libc(m));
    let mut chunk = vec![0u8; 64 * 1024];
    for mapping in libc_text.chain(other_text) {
        let mut addr = mapping.range.start;
        while addr < mapping.range.end {
            let len = ((mapping.range.end - addr) as usize).min(chunk.len());
            if mem.read_exact(addr, &mut chunk[..len]).is_err() {
                break;
            }
            if let Some(at) = chunk[..len].windows(2).position(|w| w == SYSCALL_INSN) {
                return Ok(addr + at as u64);
            }
            // Overlap by one byte so an instruction across chunks is found.
            addr += len.saturating_sub(1).max(1) as u64;
        }
    }
    Err(ProcessError::Other(
        "no `syscall` instruction found in the program's executable mappings".into(),
    ))
}

/// Runs one system call in the stopped thread `tid` at `syscall_at`, restoring every
/// register afterwards. Returns the raw result (negative errno on failure).
pub(crate) fn inject_syscall(
    threads: &mut StoppedThreads,
    tid: i32,
    syscall_at: u64,
    number: i64,
    args: [u64; 6],
) -> Result<i64, ProcessError> {
    let saved = get_regs(tid)?;
    let result = run_syscall(threads, tid, &saved, syscall_at, number, args);
    // Restore all registers, orig_rax and rax included: a thread stopped in a blocking call
    // carries -ERESTART* in rax, and the kernel restarts the call from these registers.
    let restored = set_regs(tid, &saved);
    let value = result?;
    restored?;
    Ok(value)
}

fn run_syscall(
    threads: &mut StoppedThreads,
    tid: i32,
    saved: &libc::user_regs_struct,
    syscall_at: u64,
    number: i64,
    args: [u64; 6],
) -> Result<i64, ProcessError> {
    let mut regs = *saved;
    regs.rip = syscall_at;
    regs.rax = number as u64;
    regs.rdi = args[0];
    regs.rsi = args[1];
    regs.rdx = args[2];
    regs.r10 = args[3];
    regs.r8 = args[4];
    regs.r9 = args[5];
    // Not inside a system call as far as the kernel's restart logic is concerned, so it
    // does not rewind our rip into the interrupted call.
    regs.orig_rax = u64::MAX;
    set_regs(tid, &regs)?;
    // A signal stop can end a step before the instruction ran; step again then.
    for _ in 0..8 {
        if !threads.single_step(tid)? {
            return Err(ProcessError::Exited);
        }
        let after = get_regs(tid)?;
        if after.rip == syscall_at + 2 {
            return Ok(after.rax as i64);
        }
        if after.rip != syscall_at {
            return Err(ProcessError::Other(format!(
                "injected system call at {syscall_at:#x} in thread {tid} ended at {:#x}",
                after.rip
            )));
        }
    }
    Err(ProcessError::Other(format!(
        "injected system call in thread {tid} did not run"
    )))
}

/// Candidate start addresses for an arena of `size` bytes, best first: in gaps of `maps`
/// below `image_low`, within rel32 reach of all of `near`, never in the gap just above
/// `[heap]` (brk grows into it), above `min_addr`.
pub(crate) fn arena_candidates(
    maps: &[Mapping],
    image_low: u64,
    near: &Range<u64>,
    size: u64,
    min_addr: u64,
) -> Vec<u64> {
    let size = size.div_ceil(PAGE) * PAGE;
    let lowest_allowed = near.end.saturating_sub(REACH).max(min_addr);
    let highest_end = image_low.min(near.start.saturating_add(REACH));
    let mut sorted: Vec<&Mapping> = maps.iter().collect();
    sorted.sort_by_key(|m| m.range.start);
    let mut gaps = Vec::new();
    let mut previous_end = 0u64;
    let mut previous_is_heap = false;
    for mapping in &sorted {
        if mapping.range.start > previous_end && !previous_is_heap {
            gaps.push(previous_end..mapping.range.start);
        }
        previous_end = previous_end.max(mapping.range.end);
        previous_is_heap = mapping.path == "[heap]";
    }
    let mut candidates = Vec::new();
    // Highest gaps first: closest to the image.
    for gap in gaps.iter().rev() {
        let end = gap.end.min(highest_end);
        let start = gap.start.max(lowest_allowed);
        if end < start.saturating_add(size) {
            continue;
        }
        let candidate = ((end - size) / PAGE) * PAGE;
        if candidate >= start {
            candidates.push(candidate);
        }
    }
    candidates
}

pub(crate) fn prot_flags(prot: Protection) -> u64 {
    match prot {
        Protection::ReadExecute => (libc::PROT_READ | libc::PROT_EXEC) as u64,
        Protection::ReadWrite => (libc::PROT_READ | libc::PROT_WRITE) as u64,
    }
}

pub(crate) fn mmap_min_addr() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65536)
        .max(PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(range: Range<u64>, path: &str) -> Mapping {
        Mapping {
            range,
            readable: true,
            writable: false,
            executable: false,
            offset: 0,
            path: path.into(),
            device: (0, 0),
            inode: 0,
        }
    }

    #[test]
    fn candidates_lie_below_the_image_within_reach() {
        let image = 0x5555_5555_4000..0x5555_5555_9000;
        let maps = vec![
            map(0x5555_5540_0000..0x5555_5541_0000, "/other"),
            map(image.clone(), "/prog"),
            map(0x5555_5556_0000..0x5555_5558_0000, "[heap]"),
            map(0x7fff_f000_0000..0x7fff_f001_0000, "[stack]"),
        ];
        let got = arena_candidates(&maps, image.start, &image, 0x3000, 0x10000);
        assert_eq!(got[0], image.start - 0x3000);
        assert_eq!(got[1], 0x5555_5540_0000 - 0x3000);
        for c in &got {
            assert!(c + 0x3000 <= image.start);
            assert!(image.end - c <= REACH);
        }
        // Nothing above the heap, nothing out of reach.
        assert!(got.iter().all(|&c| c < 0x5555_5556_0000));
        assert_eq!(got.len(), 2);
    }
}
