//! System call injection (an `mmap` for arenas) in one stopped thread, through code that
//! already exists in the program, and the choice of where arenas go.

use std::ops::Range;

use std::time::Instant;

use super::frame::{entry_stop_regs, find_gadgets, resumed_regs, Context, Frame, Gadgets, Restart};
use super::memory::ProcMem;
use super::threads::{get_regs, set_regs, StoppedThreads, STOP_TIMEOUT};
use super::trampoline::{Trampoline, PAGE_SIZE};
use crate::fault;
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

/// How system calls are injected into one image: through its trampoline page once it has
/// one (trampoline.rs: exact, whenever hot-lsp dies), else the bootstrap way — which is how
/// the trampoline page itself is mapped.
#[derive(Debug, Default)]
pub(crate) struct Injector {
    trampoline: Option<Trampoline>,
    bootstrap: Option<Bootstrap>,
}

/// The way system calls are injected before the image has a trampoline page.
#[derive(Clone, Copy, Debug)]
enum Bootstrap {
    /// Through a `syscall; ret` of the program, returning into its `rt_sigreturn` restorer
    /// with a signal frame of the thread's own state (frame.rs): should hot-lsp die at any
    /// moment of it, the thread still finds its way back (a sleep it was in may start over).
    Framed(Gadgets),
    /// Single-stepping a bare `syscall` instruction, for a program that has no such code (a
    /// static executable that never installs a signal handler). A tracer that dies in the
    /// middle leaves the thread with the system call's registers (or a pending step trap):
    /// the program would die of it.
    Stepped(u64),
}

impl Injector {
    /// The image changed (`exec`): what was found belonged to the old one.
    pub(crate) fn forget(&mut self) {
        *self = Injector::default();
    }

    /// The trampoline page, mapped first (by the bootstrap way, in the stopped thread `tid`)
    /// if the image has none yet.
    pub(crate) fn trampoline(
        &mut self,
        threads: &mut StoppedThreads,
        mem: &ProcMem,
        tid: i32,
    ) -> Result<&mut Trampoline, ProcessError> {
        if self
            .trampoline
            .as_ref()
            .is_some_and(|t| !t.still_mapped(mem))
        {
            // The program unmapped it (or mapped over it): never write into what is there.
            tracing::warn!("the trampoline page is gone from the program: mapping another");
            self.trampoline = None;
        }
        if self.trampoline.is_none() {
            let maps = super::memory::read_mappings(threads.pid())?;
            self.trampoline = match Trampoline::find(mem, &maps) {
                Some(found) => Some(found),
                None => Some(self.install_trampoline(threads, mem, tid, &maps)?),
            };
        }
        self.trampoline
            .as_mut()
            .ok_or_else(|| ProcessError::Other("no trampoline page".into()))
    }

    fn install_trampoline(
        &mut self,
        threads: &mut StoppedThreads,
        mem: &ProcMem,
        tid: i32,
        maps: &[Mapping],
    ) -> Result<Trampoline, ProcessError> {
        let how = match self.bootstrap {
            Some(how) => how,
            None => {
                let regs = get_regs(tid)?;
                let how = match find_gadgets(mem, maps) {
                    Some(gadgets) => Bootstrap::Framed(gadgets),
                    None => {
                        tracing::warn!(
                            "no `syscall; ret` and `rt_sigreturn` restorer in the program's \
                             code: the trampoline page is mapped by single steps, which a \
                             hot-lsp killed right then would leave the program to die of"
                        );
                        Bootstrap::Stepped(find_syscall_insn(mem, &regs, maps, None)?)
                    }
                };
                self.bootstrap = Some(how);
                how
            }
        };
        let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let args = [0, PAGE_SIZE, prot, flags, u64::MAX, 0];
        let result = match how {
            Bootstrap::Framed(gadgets) => {
                framed_syscall(threads, mem, tid, gadgets, libc::SYS_mmap, args)?
            }
            Bootstrap::Stepped(syscall_at) => {
                stepped_syscall(threads, tid, syscall_at, libc::SYS_mmap, args)?
            }
        };
        if (-4095..0).contains(&result) {
            return Err(ProcessError::Other(format!(
                "mmap of the trampoline page in pid {} failed: {}",
                threads.pid(),
                std::io::Error::from_raw_os_error(-result as i32)
            )));
        }
        let installed = super::frame::extended_state(tid)
            .map(|extended| super::frame::has_xsave_layout(&extended))
            .and_then(|xsave| Trampoline::install(mem, result as u64, xsave));
        if installed.is_err() {
            // The bootstrap way again: there is no trampoline to go through.
            let args = [result as u64, PAGE_SIZE, 0, 0, 0, 0];
            let _ = match how {
                Bootstrap::Framed(gadgets) => {
                    framed_syscall(threads, mem, tid, gadgets, libc::SYS_munmap, args)
                }
                Bootstrap::Stepped(at) => stepped_syscall(threads, tid, at, libc::SYS_munmap, args),
            };
        }
        installed
    }

    /// Runs one system call in the stopped thread `tid`, which is put back exactly where it
    /// was afterwards. Returns the raw result (negative errno on failure).
    pub(crate) fn syscall(
        &mut self,
        threads: &mut StoppedThreads,
        mem: &ProcMem,
        tid: i32,
        number: i64,
        args: [u64; 6],
    ) -> Result<i64, ProcessError> {
        let trampoline = self.trampoline(threads, mem, tid)?;
        let regs = get_regs(tid)?;
        refuse_int80(mem, tid, &regs)?;
        // A system call leaves the extended state alone: the block need not restore it. The
        // mask it does not change either, but the page's way back sets it all the same.
        let context = Context {
            regs,
            extended: Vec::new(),
            mask: super::frame::sigmask(tid)?,
        };
        let block = trampoline.write_block(mem, tid, &context, false)?;
        let mut set = resumed_regs(&regs, Restart::Kernel);
        set.rip = trampoline.syscall_at();
        set.rsp = block.addr;
        let after_call = trampoline.syscall_at() + 2;
        let call = Injected {
            number,
            args,
            after_call,
            way: "trampoline",
        };
        let (result, parked) = run_and_park(threads, tid, &regs, set, &call);
        if parked {
            trampoline.release(mem, block);
        }
        result
    }
}

/// A thread stopped in a 32-bit system call (`int 0x80`) is not injected into: the way back
/// restarts calls through the 64-bit table.
fn refuse_int80(
    mem: &ProcMem,
    tid: i32,
    regs: &libc::user_regs_struct,
) -> Result<(), ProcessError> {
    match super::frame::in_int80(mem, regs) {
        false => Ok(()),
        true => Err(ProcessError::Other(format!(
            "thread {tid} is stopped in a 32-bit system call (int 0x80); no system call is \
             injected into it — save again"
        ))),
    }
}

/// Single-steps one system call at a bare `syscall` instruction and restores every
/// register after it (see [`Bootstrap::Stepped`]).
fn stepped_syscall(
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

/// The framed injection: the thread's state goes into a signal frame below its red zone,
/// and it runs `syscall; ret` with the call's registers and the stack pointer at the
/// frame. Until hot-lsp has parked it back at its own registers, a thread let go by a
/// dying tracer runs on through the `ret` into the restorer, and `rt_sigreturn` takes it
/// back to where it was.
fn framed_syscall(
    threads: &mut StoppedThreads,
    mem: &ProcMem,
    tid: i32,
    gadgets: Gadgets,
    number: i64,
    args: [u64; 6],
) -> Result<i64, ProcessError> {
    let context = Context::capture(tid)?;
    refuse_int80(mem, tid, &context.regs)?;
    let frame = Frame::write(mem, tid, &context, gadgets.restorer)?;
    let mut set = resumed_regs(&context.regs, Restart::Reexecute);
    set.rip = gadgets.syscall_ret;
    set.rsp = frame.addr;
    let after_call = gadgets.syscall_ret + 2;
    let call = Injected {
        number,
        args,
        after_call,
        way: "framed",
    };
    let (result, parked) = run_and_park(threads, tid, &context.regs, set, &call);
    if parked {
        frame.erase(mem);
    }
    result
}

/// Puts system call `number` with `args` into `regs` (the x86-64 system-call convention).
fn set_syscall(regs: &mut libc::user_regs_struct, number: i64, args: [u64; 6]) {
    regs.rax = number as u64;
    [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9] = args;
}

/// One system call to inject: its number and arguments, where the `syscall` instruction it
/// runs at ends, and the way back's name (for the test hooks).
#[derive(Clone, Copy)]
struct Injected {
    number: i64,
    args: [u64; 6],
    after_call: u64,
    way: &'static str,
}

/// Sets the thread's registers to `set` with the system call `number` and `args` (its
/// `rip` at a `syscall` instruction that ends at `after_call`, its stack at the way back
/// the caller wrote), runs the call under `PTRACE_SYSCALL` to its exit stop, reads the
/// result there, and parks the thread back at `saved` ([`StoppedThreads::park`]). Returns
/// the result and whether the thread was parked (if not, its way back must stay: the thread
/// may yet need it).
fn run_and_park(
    threads: &mut StoppedThreads,
    tid: i32,
    saved: &libc::user_regs_struct,
    mut set: libc::user_regs_struct,
    call: &Injected,
) -> (Result<i64, ProcessError>, bool) {
    let Injected {
        number,
        args,
        after_call,
        way,
    } = *call;
    let stage = |name: &'static str| fault::stage(way, name);
    set_syscall(&mut set, number, args);
    if let Err(e) = set_regs(tid, &set) {
        return (Err(e), true);
    }
    stage("registers set");
    let deadline = Instant::now() + STOP_TIMEOUT;
    // Where the thread is held when the call ends: at the call's entry stop, the kernel
    // runs whatever system call the registers name once it is resumed.
    let mut at_entry = false;
    let result = (|| {
        let entry = threads.next_syscall_stop(tid, deadline)?;
        at_entry = true;
        if entry.rip != after_call || entry.orig_rax != number as u64 {
            return Err(ProcessError::Other(format!(
                "injected system call {number} in thread {tid}: stopped in system call {} at \
                 {:#x} instead",
                entry.orig_rax as i64, entry.rip
            )));
        }
        stage("entry stop");
        let exit = threads.next_syscall_stop(tid, deadline)?;
        at_entry = false;
        if exit.rip != after_call {
            return Err(ProcessError::Other(format!(
                "injected system call {number} in thread {tid} ended at {:#x}",
                exit.rip
            )));
        }
        stage("exit stop");
        Ok(exit.rax as i64)
    })();
    if let Err(ProcessError::Exited) = result {
        return (Err(ProcessError::Exited), false);
    }
    let back = match at_entry {
        true => entry_stop_regs(saved),
        false => *saved,
    };
    match threads.park(tid, &back, way) {
        Ok(()) => (result, true),
        Err(ProcessError::Exited) => (Err(ProcessError::Exited), false),
        Err(e) => (
            Err(ProcessError::Other(format!(
                "{}thread {tid} could not be put back where it was after an injected system \
                 call: {e}",
                match &result {
                    Err(first) => format!("{first}; and "),
                    Ok(_) => String::new(),
                }
            ))),
            false,
        ),
    }
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
    set_syscall(&mut regs, number, args);
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

/// The highest address an arena may reach in a program whose executable lies below 2 GiB:
/// such (non-PIE) code reaches its data with absolute 32-bit references (`R_X86_64_32S`
/// sign-extends, so 2 GiB, not 4), and new code compiled the same way must too.
pub(crate) const LOW_LIMIT: u64 = 1 << 31;
/// Address space kept free above the heap's current end (and above where it starts, if it
/// has not started yet) so `brk` can grow: arenas never go there.
pub(crate) const HEAP_ROOM: u64 = 512 << 20;

/// Where the heap is and may grow: the `[heap]` mapping and `start_brk` (from
/// `/proc/PID/stat`, known before the first `brk`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Heap {
    pub start_brk: Option<u64>,
}

/// Candidate ranges for an arena of `size` bytes, best first: free gaps of `maps` within
/// rel32 reach of all of `near`, above `min_addr`, never in the heap's growth room (from its
/// start to `HEAP_ROOM` above its end). A position-independent executable gets them below
/// its image (where nothing grows into them). An executable mapped below 2 GiB (non-PIE)
/// gets them below 2 GiB, above or below its image, preferably in a gap below the heap's
/// start. A range of the full size is preferred; when no gap has room for it, the largest
/// free piece of at least `min_size` bytes (the arena is sized to the gap).
pub(crate) fn arena_candidates(
    maps: &[Mapping],
    image: &Range<u64>,
    near: &Range<u64>,
    (size, min_size): (u64, u64),
    min_addr: u64,
    heap: Heap,
) -> Vec<Range<u64>> {
    let size = size.div_ceil(PAGE) * PAGE;
    let min_size = (min_size.div_ceil(PAGE) * PAGE).clamp(PAGE, size);
    let low_image = image.end <= LOW_LIMIT;
    let lowest_allowed = near.end.saturating_sub(REACH).max(min_addr);
    let highest_end = if low_image {
        LOW_LIMIT.min(near.start.saturating_add(REACH))
    } else {
        image.start.min(near.start.saturating_add(REACH))
    };
    let mut sorted: Vec<&Mapping> = maps.iter().collect();
    sorted.sort_by_key(|m| m.range.start);
    // The heap's growth room: from where it starts to HEAP_ROOM above where it ends now.
    let heap_mapping = sorted
        .iter()
        .find(|m| m.path == "[heap]")
        .map(|m| m.range.clone());
    let growth = match (heap_mapping, heap.start_brk) {
        (Some(h), Some(b)) => Some(h.start.min(b)..h.end.max(b).saturating_add(HEAP_ROOM)),
        (Some(h), None) => Some(h.start..h.end.saturating_add(HEAP_ROOM)),
        (None, Some(b)) => Some(b..b.saturating_add(HEAP_ROOM)),
        (None, None) => None,
    };
    let mut free = Vec::new();
    let mut previous_end = 0u64;
    for mapping in &sorted {
        if mapping.range.start > previous_end {
            free.push(previous_end..mapping.range.start);
        }
        previous_end = previous_end.max(mapping.range.end);
    }
    free.push(previous_end..u64::MAX);
    // Clip every gap to the allowed window, outside the image's own span and the heap's room.
    let mut pieces: Vec<Range<u64>> = Vec::new();
    for gap in free {
        let gap = gap.start.max(lowest_allowed)..gap.end.min(highest_end);
        let mut parts = vec![gap];
        for hole in [Some(image.clone()), growth.clone()].into_iter().flatten() {
            parts = parts
                .into_iter()
                .flat_map(|p| [p.start..p.end.min(hole.start), p.start.max(hole.end)..p.end])
                .collect();
        }
        for part in parts {
            let start = part.start.div_ceil(PAGE) * PAGE;
            let end = part.end / PAGE * PAGE;
            if end > start && end - start >= min_size {
                pieces.push(start..end);
            }
        }
    }
    let below_heap = |r: &Range<u64>| growth.as_ref().is_none_or(|g| r.end <= g.start);
    // Whole arenas first, closest to the image: the highest gap below it; for a non-PIE,
    // then the highest gap between the image and the heap's start, then above the heap's
    // room. Then pieces, the largest first.
    let mut whole: Vec<Range<u64>> = pieces
        .iter()
        .filter(|p| p.end - p.start >= size)
        .map(|p| p.end - size..p.end)
        .collect();
    whole.sort_by_key(|r| (r.end <= image.start, below_heap(r), r.start));
    whole.reverse();
    let mut partial: Vec<Range<u64>> = pieces
        .into_iter()
        .filter(|p| p.end - p.start < size)
        .collect();
    partial.sort_by_key(|r| std::cmp::Reverse((r.end - r.start, r.start)));
    whole.extend(partial);
    whole
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
        let got = arena_candidates(
            &maps,
            &image,
            &image,
            (0x3000, 0x3000),
            0x10000,
            Heap::default(),
        );
        assert_eq!(got[0], image.start - 0x3000..image.start);
        assert_eq!(got[1].start, 0x5555_5540_0000 - 0x3000);
        for c in &got {
            assert!(c.end <= image.start);
            assert!(image.end - c.start <= REACH);
        }
        // Nothing above the heap, nothing out of reach.
        assert!(got.iter().all(|c| c.start < 0x5555_5556_0000));
        assert_eq!(got.len(), 2);
    }

    /// A non-PIE executable at 0x400000 with the heap the kernel placed at a random offset
    /// above it: the arena goes below 2 GiB, under the heap's start, never in its growth.
    fn non_pie(heap: Range<u64>, extra: &[Mapping]) -> Vec<Mapping> {
        let mut maps = vec![
            map(0x40_0000..0x40_5000, "/prog"),
            map(heap, "[heap]"),
            map(0x7f00_0000_0000..0x7f00_0020_0000, "/usr/lib/libc.so.6"),
            map(0x7fff_f000_0000..0x7fff_f001_0000, "[stack]"),
        ];
        maps.extend_from_slice(extra);
        maps
    }

    #[test]
    fn non_pie_arenas_lie_below_two_gib_away_from_the_heap() {
        let image = 0x40_0000..0x40_5000;
        let size = (64 << 20, 1 << 20);
        // Heap at a random offset: the gap between the image and the heap's start.
        let maps = non_pie(0x3cde_4000..0x3ce0_5000, &[]);
        let got = arena_candidates(&maps, &image, &image, size, 0x10000, Heap::default());
        assert_eq!(got[0], 0x3cde_4000 - (64 << 20)..0x3cde_4000);
        assert!(got.iter().all(|c| c.end <= LOW_LIMIT), "{got:x?}");
        // A small arena fits below the image: there first.
        let got = arena_candidates(
            &maps,
            &image,
            &image,
            (0x3000, 0x3000),
            0x10000,
            Heap::default(),
        );
        assert_eq!(got[0], 0x40_0000 - 0x3000..0x40_0000);
        // No gap below the heap (ASLR off): at the top below 2 GiB, the heap keeps its room.
        let maps = non_pie(0x40_5000..0x42_6000, &[]);
        let got = arena_candidates(&maps, &image, &image, size, 0x10000, Heap::default());
        assert_eq!(got[0], LOW_LIMIT - (64 << 20)..LOW_LIMIT);
        for c in &got {
            assert!(
                c.start >= 0x42_6000 + HEAP_ROOM || c.end <= 0x40_0000,
                "{c:x?}"
            );
        }
        // A heap that has not started yet still has its room, from start_brk.
        let maps = non_pie(0x40_5000..0x40_5000, &[]);
        let heap = Heap {
            start_brk: Some(0x40_6000),
        };
        let got = arena_candidates(&maps, &image, &image, size, 0x10000, heap);
        assert!(got
            .iter()
            .all(|c| c.start >= 0x40_6000 + HEAP_ROOM || c.end <= 0x40_0000));
    }

    #[test]
    fn an_arena_is_sized_to_the_gap_when_less_room_is_free() {
        let image = 0x40_0000..0x40_5000;
        // 16 MiB between the image and the heap, everything above the heap taken.
        let maps = non_pie(
            0x140_5000..0x142_6000,
            &[map(0x2000_0000..0x9000_0000, "/big")],
        );
        let got = arena_candidates(
            &maps,
            &image,
            &image,
            (64 << 20, 1 << 20),
            0x10000,
            Heap::default(),
        );
        assert_eq!(got[0], 0x40_5000..0x140_5000);
        // Then the 4 MiB below the image.
        assert_eq!(got[1], 0x1_0000..0x40_0000);
        assert_eq!(got.len(), 2);
        // Below the minimum: nothing.
        let got = arena_candidates(
            &maps,
            &image,
            &image,
            (64 << 20, 32 << 20),
            0x10000,
            Heap::default(),
        );
        assert!(got.is_empty(), "{got:x?}");
    }
}
