//! Every frame of a stopped thread that would return into bytes a swap overwrites: a
//! conservative scan of the thread's live stack, following signal frames to the stack the
//! signal interrupted (a handler on an alternate signal stack).
//!
//! gcc -O2 starts functions with `push %rbx; call *%rdi`: the callee returns to entry+3,
//! inside the 5-byte jump that redirects the entry. A resume address saved in a signal frame
//! is the same hazard. Every 8-byte word from the stack pointer to the end of the mapping
//! that holds it is compared with the guarded ranges. A stale word equal to such an address
//! refuses the swap too, which is harmless (nothing is written and the next save tries
//! again); what the scan must never do is miss a live frame.
//!
//! A handler running on an alternate signal stack (`sigaltstack`) has the interrupted frames
//! on the thread's normal stack, which the stack pointer does not lead to. The kernel's
//! signal frame on x86-64 (`struct rt_sigframe`) starts with `pretcode`, the address of the
//! restorer (`__restore_rt`: `mov $15,%rax; syscall`, i.e. `rt_sigreturn`), followed by the
//! `ucontext`: `uc_flags` (a few flag bits), `uc_link` (0), `uc_stack` (24 bytes) and the
//! `sigcontext`, whose `rsp` (at frame+168) is the interrupted stack pointer. A word that
//! points at a restorer and is followed by such a header starts a frame; the stack at its
//! saved `rsp` is scanned as well, if it is not the one already being scanned. Stacks that
//! no register or signal frame leads to (suspended `swapcontext` coroutines) are not seen.

use std::ops::Range;

use super::memory::ProcMem;
use crate::{Mapping, ProcessError};

/// At most this much of one stack is scanned (a deeper one refuses the swap): far more than
/// any real stack, small enough to keep the stopped window bounded on a thread whose stack
/// pointer sits in a huge mapping (an alternate signal stack in the heap).
const MAX_STACK_SCAN: u64 = 64 << 20;

/// How much of a stack is read at once.
const STACK_CHUNK: usize = 64 * 1024;

/// Signal frames followed from one thread, at most (nested handlers on several stacks).
const MAX_STACKS: usize = 16;

/// `rt_sigframe` offsets on x86-64 (see the module docs).
const FRAME_UC_FLAGS: u64 = 8;
const FRAME_UC_LINK: u64 = 16;
const FRAME_SAVED_RSP: u64 = 168;
/// `cs` (with `gs`, `fs`, `ss`) after `rip` and `eflags` in the `sigcontext`.
const FRAME_SAVED_CS: u64 = 192;
/// The code segment of 64-bit user code (`__USER_CS`).
const USER_CS: u64 = 0x33;

/// The restorers signal frames return through: glibc's `mov $15,%rax; syscall` and musl's
/// `mov $15,%eax; syscall`.
const RESTORERS: [&[u8]; 2] = [
    &[0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05],
    &[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05],
];

/// The ranges a thread must neither be stopped in nor return into, each with what it is
/// ("entry of foo") for messages. Sorted by start, so that a stack word is looked up by
/// binary search: a first save may redirect thousands of entries while every thread waits.
pub(crate) struct Guarded<'a> {
    /// (range, what, rank): rank 0 for commit writes, which start at the entry (offsets in
    /// messages are counted from them), 1 for other protected ranges.
    ranges: Vec<(Range<u64>, &'a str, u8)>,
    /// The longest range: how far back from a lookup's position a containing range can start.
    longest: u64,
}

impl<'a> Guarded<'a> {
    /// `commit` ranges with their names, then `protected` ranges, each named after the
    /// commit range it overlaps.
    pub(crate) fn new(
        commit: impl Iterator<Item = (Range<u64>, &'a str)>,
        protected: &[Range<u64>],
    ) -> Guarded<'a> {
        let mut ranges: Vec<(Range<u64>, &str, u8)> =
            commit.map(|(range, what)| (range, what, 0)).collect();
        ranges.sort_by_key(|(r, _, _)| r.start);
        let named = ranges.len();
        let longest_commit = ranges
            .iter()
            .map(|(r, _, _)| r.end.saturating_sub(r.start))
            .max()
            .unwrap_or(0);
        for range in protected {
            // The commit ranges that start before `range` ends, nearest first, as far back as
            // one could still reach into it.
            let upto = ranges[..named].partition_point(|(r, _, _)| r.start < range.end);
            let what = ranges[..upto]
                .iter()
                .rev()
                .take_while(|(r, _, _)| r.start.saturating_add(longest_commit) > range.start)
                .find(|(r, _, _)| range.start < r.end)
                .map_or("code being replaced", |(_, what, _)| *what);
            ranges.push((range.clone(), what, 1));
        }
        ranges.sort_by_key(|(r, _, rank)| (r.start, *rank));
        let longest = ranges
            .iter()
            .map(|(r, _, _)| r.end.saturating_sub(r.start))
            .max()
            .unwrap_or(0);
        Guarded { ranges, longest }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The range `addr` lies strictly inside (`start < addr < end`: a thread exactly at the
    /// start runs the new bytes whole), and what it is.
    pub(crate) fn find(&self, addr: u64) -> Option<(Range<u64>, &'a str)> {
        let upto = self.ranges.partition_point(|(r, _, _)| r.start < addr);
        let mut best: Option<&(Range<u64>, &str, u8)> = None;
        for candidate in self.ranges[..upto].iter().rev() {
            if candidate.0.start.saturating_add(self.longest) <= addr {
                break;
            }
            if addr < candidate.0.end && best.is_none_or(|b| candidate.2 < b.2) {
                best = Some(candidate);
            }
        }
        best.map(|(r, what, _)| (r.clone(), *what))
    }
}

/// Old bodies of swapped functions whose live frames the apply reports (not refused), as
/// indexes into [`crate::WritePlan::watch`]. Sorted by start for a binary search per word.
pub(crate) struct Watched {
    ranges: Vec<(Range<u64>, usize)>,
    longest: u64,
    /// Ranges with an index below this one hold no frame at their first byte
    /// ([`Watched::past_entry_below`]).
    past_entry: usize,
}

impl Watched {
    pub(crate) fn new(ranges: impl Iterator<Item = Range<u64>>) -> Watched {
        let mut ranges: Vec<(Range<u64>, usize)> = ranges
            .enumerate()
            .filter(|(_, r)| r.start < r.end)
            .map(|(i, r)| (r, i))
            .collect();
        ranges.sort_by_key(|(r, _)| r.start);
        let longest = ranges
            .iter()
            .map(|(r, _)| r.end - r.start)
            .max()
            .unwrap_or(0);
        Watched {
            ranges,
            longest,
            past_entry: 0,
        }
    }

    /// The ranges with an index below `n` (old bodies reported live, `WritePlan::watch`)
    /// are not found at their first byte: a word there is a pointer to the function (a
    /// local holding it, `dladdr`'s symbol address), never a return address — no call
    /// returns to a function's entry — and a thread stopped exactly there runs the entry
    /// jump the swap writes, not the old body.
    pub(crate) fn past_entry_below(mut self, n: usize) -> Watched {
        self.past_entry = n;
        self
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Every watched range holding `addr` (bodies of aliases may coincide).
    pub(crate) fn find(&self, addr: u64, mut found: impl FnMut(usize)) {
        let upto = self.ranges.partition_point(|(r, _)| r.start <= addr);
        for (range, index) in self.ranges[..upto].iter().rev() {
            if range.start.saturating_add(self.longest) <= addr {
                break;
            }
            if addr < range.end && !(*index < self.past_entry && addr == range.start) {
                found(*index);
            }
        }
    }
}

/// What a scan of one thread found.
pub(crate) struct Hit {
    /// The word: an address inside a guarded range.
    pub(crate) value: u64,
    /// Whether it was found on a stack reached through a signal frame.
    pub(crate) via_signal_frame: bool,
}

/// Scans the stack of a thread whose stack pointer is `rsp`, and every stack its signal
/// frames lead to, for a word inside `look.guarded` (recording the `look.watched` bodies met
/// on the way). `maps` is `/proc/PID/maps` in address order.
/// A stack that cannot be read is an error: a frame there could not be checked.
pub(crate) fn scan_thread(
    mem: &ProcMem,
    maps: &[Mapping],
    tid: i32,
    rsp: u64,
    look: &mut Look<'_, '_>,
    buf: &mut Vec<u8>,
) -> Result<Option<Hit>, ProcessError> {
    let mut pending = vec![rsp];
    let mut scanned: Vec<Range<u64>> = Vec::new();
    while let Some(start) = pending.pop() {
        if scanned.iter().any(|r| r.contains(&start)) {
            continue;
        }
        if scanned.len() == MAX_STACKS {
            return Err(ProcessError::Other(format!(
                "thread {tid} has signal frames on more than {MAX_STACKS} stacks; nothing was \
                 written — save again"
            )));
        }
        let Some(mapping) = mapping_at(maps, start) else {
            return Err(ProcessError::Other(format!(
                "thread {tid} has its stack at {start:#x}, outside every mapping, so its \
                 frames cannot be checked; nothing was written"
            )));
        };
        let end = mapping.range.end;
        if end - start > MAX_STACK_SCAN {
            // Frames beyond the cap would go unchecked: say so rather than pass.
            return Err(ProcessError::Other(format!(
                "thread {tid} has a stack of more than {} MiB above {start:#x}, too deep to \
                 check its frames while the program is stopped; nothing was written — save \
                 again when it is shallower",
                MAX_STACK_SCAN >> 20
            )));
        }
        let range = (start & !7)..end;
        let via_signal_frame = !scanned.is_empty();
        if let Some(value) = scan_range(mem, maps, tid, range.clone(), look, buf, &mut pending)? {
            return Ok(Some(Hit {
                value,
                via_signal_frame,
            }));
        }
        scanned.push(range);
    }
    Ok(None)
}

/// What a stack scan looks for: words inside `guarded` (the first one ends the scan) and
/// words inside `watched` (each recorded in `live`, once).
pub(crate) struct Look<'a, 'g> {
    pub(crate) guarded: &'a Guarded<'g>,
    pub(crate) watched: &'a Watched,
    pub(crate) live: &'a mut Vec<usize>,
}

/// One stack range: the first word inside `guarded`, with the saved stack pointers of the
/// signal frames met on the way pushed to `pending` and the watched bodies recorded.
fn scan_range(
    mem: &ProcMem,
    maps: &[Mapping],
    tid: i32,
    range: Range<u64>,
    look: &mut Look<'_, '_>,
    buf: &mut Vec<u8>,
    pending: &mut Vec<u64>,
) -> Result<Option<u64>, ProcessError> {
    let mut at = range.start;
    while at < range.end {
        let chunk = ((range.end - at) as usize).min(STACK_CHUNK) & !7;
        if chunk == 0 {
            break;
        }
        buf.resize(chunk, 0);
        mem.read_exact(at, buf).map_err(|err| {
            ProcessError::Other(format!(
                "cannot read the stack of thread {tid} at {at:#x} to check its frames: {err}; \
                 nothing was written"
            ))
        })?;
        for i in (0..chunk).step_by(8) {
            let value = word_at(buf, i).unwrap_or_default();
            if look.guarded.find(value).is_some() {
                return Ok(Some(value));
            }
            if !look.watched.is_empty() {
                let live = &mut *look.live;
                look.watched.find(value, |i| {
                    if !live.contains(&i) {
                        live.push(i);
                    }
                });
            }
            if let Some(saved_rsp) = signal_frame_rsp(mem, maps, buf, at, i, value) {
                pending.push(saved_rsp);
            }
        }
        at += chunk as u64;
    }
    Ok(None)
}

/// If the word `value` at `frame` starts a kernel signal frame, the stack pointer it saved.
/// Cheap tests first: most words are not code addresses, and most code addresses on a stack
/// are return addresses, not followed by a `ucontext` header.
/// The frame is the word at `buf[i]`, read from `base + i`; words of its header are taken
/// from `buf` while they lie in it.
fn signal_frame_rsp(
    mem: &ProcMem,
    maps: &[Mapping],
    buf: &[u8],
    base: u64,
    i: usize,
    value: u64,
) -> Option<u64> {
    if !mapping_at(maps, value).is_some_and(|m| m.executable) {
        return None;
    }
    let word = |offset: u64| -> Option<u64> {
        if let Some(w) = word_at(buf, i + offset as usize) {
            return Some(w);
        }
        let mut bytes = [0u8; 8];
        mem.read_exact((base + i as u64).checked_add(offset)?, &mut bytes)
            .ok()?;
        Some(u64::from_le_bytes(bytes))
    };
    // uc_flags holds a few UC_* bits, uc_link is NULL for a kernel-made frame, and the
    // saved code segment is the 64-bit user one.
    if word(FRAME_UC_FLAGS)? > 0xff
        || word(FRAME_UC_LINK)? != 0
        || word(FRAME_SAVED_CS)? & 0xffff != USER_CS
    {
        return None;
    }
    let mut code = [0u8; 9];
    mem.read_exact(value, &mut code).ok()?;
    if !RESTORERS.iter().any(|r| code.starts_with(r)) {
        return None;
    }
    // A stack is writable data, never code.
    word(FRAME_SAVED_RSP)
        .filter(|&rsp| mapping_at(maps, rsp).is_some_and(|m| m.writable && !m.executable))
}

/// The little-endian word at `buf[i..i + 8]`, if it lies in `buf`.
fn word_at(buf: &[u8], i: usize) -> Option<u64> {
    let bytes = buf.get(i..i.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The mapping that holds `addr` (`maps` is in address order).
fn mapping_at(maps: &[Mapping], addr: u64) -> Option<&Mapping> {
    let index = maps.partition_point(|m| m.range.end <= addr);
    maps.get(index).filter(|m| m.range.contains(&addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_body_is_not_found_at_its_first_byte() {
        // Index 0 is an old body reported live (past_entry_below(1)); index 1 a body whose
        // frames refuse the swap, found at its first byte as before.
        let w = Watched::new([0x1000..0x1080, 0x1000..0x1080].into_iter()).past_entry_below(1);
        let at = |addr| {
            let mut found = Vec::new();
            w.find(addr, |i| found.push(i));
            found.sort_unstable();
            found
        };
        assert_eq!(
            at(0x1000),
            vec![1],
            "a pointer to the function is no frame of it"
        );
        assert_eq!(at(0x1001), vec![0, 1]);
        assert_eq!(at(0x107f), vec![0, 1]);
    }

    #[test]
    fn watched_lookup_finds_every_body_holding_an_address() {
        let w = Watched::new(
            [
                0x2000..0x2100,
                0x1000..0x1080,
                0x1000..0x1010,
                0x3000..0x3000,
            ]
            .into_iter(),
        );
        let at = |addr| {
            let mut found = Vec::new();
            w.find(addr, |i| found.push(i));
            found.sort_unstable();
            found
        };
        assert_eq!(at(0x1000), vec![1, 2], "the first byte of a body is in it");
        assert_eq!(at(0x1040), vec![1]);
        assert_eq!(at(0x1080), Vec::<usize>::new(), "ranges are half-open");
        assert_eq!(at(0x20ff), vec![0]);
        assert_eq!(
            at(0x3000),
            Vec::<usize>::new(),
            "an empty range holds nothing"
        );
        assert_eq!(at(0), Vec::<usize>::new());
        assert_eq!(at(u64::MAX), Vec::<usize>::new());
        assert!(Watched::new(std::iter::empty()).is_empty());
    }

    #[test]
    fn guarded_lookup_prefers_the_commit_write_and_is_strict() {
        let commit = [
            (0x1000..0x1005, "entry of foo"),
            (0x2000..0x2005, "entry of bar"),
        ];
        let protected = [0x1000..0x1002, 0x3000..0x3005];
        let g = Guarded::new(commit.iter().cloned(), &protected);
        assert_eq!(g.find(0x1001), Some((0x1000..0x1005, "entry of foo")));
        assert_eq!(g.find(0x1004), Some((0x1000..0x1005, "entry of foo")));
        assert_eq!(
            g.find(0x1000),
            None,
            "a thread at the entry runs the new bytes whole"
        );
        assert_eq!(g.find(0x1005), None);
        assert_eq!(g.find(0x2003), Some((0x2000..0x2005, "entry of bar")));
        assert_eq!(
            g.find(0x3001),
            Some((0x3000..0x3005, "code being replaced"))
        );
        assert_eq!(g.find(0x0fff), None);
        assert_eq!(g.find(u64::MAX), None);
        // A protected range inside a commit write that starts before it is named after it.
        let inner: Vec<Range<u64>> = std::iter::once(0x2002..0x2004).collect();
        let g = Guarded::new(commit.iter().cloned(), &inner);
        assert_eq!(g.find(0x2003), Some((0x2000..0x2005, "entry of bar")));
        let g = Guarded::new(std::iter::empty(), &inner);
        assert_eq!(
            g.find(0x2003),
            Some((0x2002..0x2004, "code being replaced"))
        );
    }
}
