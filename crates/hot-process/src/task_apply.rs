//! Applying a [`WritePlan`] to a task that is stopped and written as a whole (macOS: a Mach
//! task port), with no Mach call in this file: the order of operations, the page splitting of
//! writes and the protection bookkeeping, written against the [`Task`] trait so they are
//! tested on Linux with a memory model (`tests` below). The Mach implementation of [`Task`]
//! is `macos/task.rs` (Apple targets only).
//!
//! The order, as the Linux backend's (`linux/apply.rs`):
//! 1. `prepare` writes (arena contents, not reachable yet) and `copies`, the program running;
//! 2. `task_suspend`;
//! 3. every thread's instruction pointer, link register (arm64) and the words of its stack
//!    checked against the commit writes and `plan.protected`: a thread inside refuses the
//!    swap (a Mach backend has no cheap single step to move it out, unlike ptrace), a return
//!    address inside too; hits in `plan.watch` are reported as live frames;
//! 4. every `expected` compared;
//! 5. `commit_data` then `commit` written, each page by page (`mach_vm_write` of one page at
//!    most), a page that is not writable made `VM_PROT_READ | VM_PROT_WRITE | VM_PROT_COPY`
//!    first (`COPY`: a private copy of a file-backed text page, since its maximum protection
//!    has no write) and given back its original protection after; any failure writes back the
//!    original bytes of everything already written;
//! 6. the instruction cache flushed over every written range (`vm_machine_attribute
//!    (MATTR_CACHE, MATTR_VAL_CACHE_FLUSH)`, needed on arm64);
//! 7. `task_resume`, whatever happened after step 2.

use std::ops::Range;
use std::time::Instant;

use crate::{ApplyReport, LiveFrame, ProcessError, Write, WritePlan};

/// `VM_PROT_*` bits (`mach/vm_prot.h`).
pub(crate) const VM_PROT_READ: u32 = 0x1;
pub(crate) const VM_PROT_WRITE: u32 = 0x2;
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const VM_PROT_EXECUTE: u32 = 0x4;
pub(crate) const VM_PROT_COPY: u32 = 0x10;

/// How far up from its stack pointer a thread's stack is scanned (as on Linux).
const MAX_STACK_SCAN: u64 = 64 << 20;

/// A VM region around an address: its range and current and maximum protection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) range: Range<u64>,
    pub(crate) protection: u32,
    pub(crate) max_protection: u32,
}

/// What the apply needs of one thread, read while the task is suspended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ThreadState {
    /// The Mach thread id (for messages).
    pub(crate) id: u64,
    pub(crate) pc: u64,
    pub(crate) sp: u64,
    /// arm64's link register: the return address of a leaf function, never on the stack.
    pub(crate) lr: Option<u64>,
}

/// The operations the apply makes on a task. Each is one Mach call in `macos/task.rs`.
pub(crate) trait Task {
    fn page_size(&self) -> u64;
    /// `task_suspend`.
    fn suspend(&mut self) -> Result<(), ProcessError>;
    /// `task_resume`.
    fn resume(&mut self) -> Result<(), ProcessError>;
    /// `task_threads` + `thread_get_state` of each.
    fn threads(&mut self) -> Result<Vec<ThreadState>, ProcessError>;
    /// `mach_vm_region` (`VM_REGION_BASIC_INFO_64`) of the region holding `addr`.
    fn region(&mut self, addr: u64) -> Result<Region, ProcessError>;
    /// `mach_vm_protect(.., set_maximum = false, protection)`.
    fn protect(&mut self, range: Range<u64>, protection: u32) -> Result<(), ProcessError>;
    /// `mach_vm_read_overwrite`.
    fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, ProcessError>;
    /// `mach_vm_write` of bytes within one page.
    fn write(&mut self, addr: u64, bytes: &[u8]) -> Result<(), ProcessError>;
    /// `vm_machine_attribute(MATTR_CACHE, MATTR_VAL_CACHE_FLUSH)` (a no-op on x86-64).
    fn flush_code(&mut self, range: Range<u64>) -> Result<(), ProcessError>;
}

/// `[addr, addr + len)` cut at page boundaries: (address, range of the bytes) per page.
pub(crate) fn split_pages(addr: u64, len: usize, page: u64) -> Vec<(u64, Range<usize>)> {
    let mut out = Vec::new();
    let mut done = 0usize;
    while done < len {
        let at = addr + done as u64;
        let room = (page - at % page) as usize;
        let n = room.min(len - done);
        out.push((at, done..done + n));
        done += n;
    }
    out
}

/// Write `bytes` at `addr` page by page, making each non-writable page writable (with
/// `VM_PROT_COPY`) just for its write and giving it back its protection after, also when the
/// write fails.
pub(crate) fn write_pages(
    task: &mut dyn Task,
    addr: u64,
    bytes: &[u8],
    what: &str,
) -> Result<(), ProcessError> {
    let page = task.page_size();
    let fail = |at: u64, message: String| ProcessError::Protection {
        addr: at,
        what: what.to_string(),
        message,
    };
    for (at, range) in split_pages(addr, bytes.len(), page) {
        let region = task
            .region(at)
            .map_err(|e| fail(at, format!("no mapping: {e}")))?;
        let page_range = at - at % page..at - at % page + page;
        let writable = region.protection & VM_PROT_WRITE != 0;
        if !writable {
            task.protect(
                page_range.clone(),
                VM_PROT_READ | VM_PROT_WRITE | VM_PROT_COPY,
            )
            .map_err(|e| fail(at, format!("making the page writable: {e}")))?;
        }
        let written = task.write(at, &bytes[range]);
        if !writable {
            let restored = task.protect(page_range, region.protection);
            written.map_err(|e| fail(at, e.to_string()))?;
            restored.map_err(|e| {
                fail(
                    at,
                    format!(
                        "written, but its protection {:#x} could not be restored: {e}",
                        region.protection
                    ),
                )
            })?;
        } else {
            written.map_err(|e| fail(at, e.to_string()))?;
        }
    }
    Ok(())
}

/// Apply `plan` to `task` in the order of the module documentation.
pub(crate) fn apply_plan(
    task: &mut dyn Task,
    plan: &WritePlan,
) -> Result<ApplyReport, ProcessError> {
    for w in &plan.prepare {
        write_pages(task, w.addr, &w.bytes, &w.what)?;
    }
    for copy in &plan.copies {
        let value = task.read(copy.src, 8)?;
        write_pages(task, copy.dst, &value, "a copied slot")?;
    }
    task.suspend()?;
    let start = Instant::now();
    let result = stopped(task, plan);
    // Resumed whatever happened while it was suspended.
    let resumed = task.resume();
    let mut report = result?;
    resumed?;
    report.stopped_micros = start.elapsed().as_micros() as u64;
    Ok(report)
}

/// Steps 3 to 6, the task suspended.
fn stopped(task: &mut dyn Task, plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
    let threads = task.threads()?;
    // Ranges no thread may be in or return into: commit writes and `protected`, each named
    // after the commit write it overlaps.
    let name_of = |r: &Range<u64>| {
        plan.commit
            .iter()
            .find(|w| w.addr < r.end && r.start < w.addr + w.bytes.len() as u64)
            .map_or_else(|| format!("{:#x}", r.start), |w| w.what.clone())
    };
    let mut guarded: Vec<(Range<u64>, String)> = plan
        .commit
        .iter()
        .map(|w| (w.addr..w.addr + w.bytes.len() as u64, w.what.clone()))
        .collect();
    guarded.extend(plan.protected.iter().map(|r| (r.clone(), name_of(r))));
    let mut live: Vec<LiveFrame> = Vec::new();
    let mut refused: Vec<LiveFrame> = Vec::new();
    for t in &threads {
        if let Some((_, what)) = guarded.iter().find(|(r, _)| r.start < t.pc && t.pc < r.end) {
            return Err(ProcessError::Other(format!(
                "thread {} is running inside {what} (pc {:#x}); nothing was written, save again to retry",
                t.id, t.pc
            )));
        }
        let mut words = stack_words(task, t)?;
        words.extend(t.lr);
        words.push(t.pc);
        for word in words {
            if word != t.pc {
                if let Some((r, what)) =
                    guarded.iter().find(|(r, _)| r.start < word && word < r.end)
                {
                    return Err(ProcessError::Other(format!(
                        "thread {} will return into {what} at +{:#x}; nothing was written, save again once it has returned",
                        t.id,
                        word - r.start
                    )));
                }
            }
            // Old bodies are reported live; a frame in `refuse_frames` refuses the commit.
            for (list, ranges, past_entry) in [
                (&mut live, &plan.watch, true),
                (&mut refused, &plan.refuse_frames, false),
            ] {
                for (r, function) in ranges {
                    // A word at an old body's entry is a pointer to it, not a frame.
                    if r.contains(&word)
                        && !(past_entry && word == r.start)
                        && !list
                            .iter()
                            .any(|l| l.function == *function && l.tid as u64 == t.id)
                    {
                        list.push(LiveFrame {
                            function: function.clone(),
                            tid: t.id as i32,
                        });
                    }
                }
            }
        }
    }
    if !refused.is_empty() {
        return Err(ProcessError::FrameRefused(refused));
    }
    for verify in &plan.verify {
        match task.read(verify.addr, verify.bytes.len()) {
            Ok(now) if now == verify.bytes => {}
            Ok(now) => return Err(verify.refusal(Some(&now))),
            Err(_) => return Err(verify.refusal(None)),
        }
    }
    let writes: Vec<&Write> = plan.commit_data.iter().chain(&plan.commit).collect();
    let mut originals = Vec::with_capacity(writes.len());
    for w in &writes {
        let current = task.read(w.addr, w.bytes.len())?;
        if let Some(expected) = &w.expected {
            if current != *expected {
                return Err(ProcessError::Unexpected {
                    addr: w.addr,
                    what: w.what.clone(),
                });
            }
        }
        originals.push(current);
    }
    for (i, w) in writes.iter().enumerate() {
        if let Err(e) = write_pages(task, w.addr, &w.bytes, &w.what) {
            // Put back everything written, the failed write included (part of it may be).
            for (done, original) in writes[..=i].iter().zip(&originals).rev() {
                let _ = write_pages(task, done.addr, original, &done.what);
            }
            return Err(e);
        }
    }
    for w in plan.prepare.iter().chain(writes.iter().copied()) {
        task.flush_code(w.addr..w.addr + w.bytes.len() as u64)?;
    }
    Ok(ApplyReport {
        stopped_micros: 0,
        threads: threads.len(),
        signals_held: 0,
        live,
    })
}

/// The 8-byte words of a thread's stack, from its stack pointer to the end of its region (at
/// most [`MAX_STACK_SCAN`]).
fn stack_words(task: &mut dyn Task, t: &ThreadState) -> Result<Vec<u64>, ProcessError> {
    let region = task.region(t.sp)?;
    let end = region.range.end.min(t.sp.saturating_add(MAX_STACK_SCAN));
    let start = t.sp & !7;
    if end <= start {
        return Ok(Vec::new());
    }
    let bytes = task.read(start, (end - start) as usize)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// What `task_for_pid` failing means: with `KERN_FAILURE` (5), that hot-lsp lacks the
/// debugger entitlement or the program refuses being debugged.
pub(crate) fn task_for_pid_error(pid: i32, kern_return: i32) -> ProcessError {
    if kern_return == 5 {
        ProcessError::PermissionDenied(format!(
            "task_for_pid({pid}) failed (KERN_FAILURE): macOS gives a task port only to a \
             signed debugger. Sign hot-lsp with the debugger entitlement \
             (`codesign -s - --entitlements entitlements.plist --force $(which hot-lsp)`), \
             and build the program without the hardened runtime (or sign it with \
             com.apple.security.get-task-allow); system binaries cannot be debugged under \
             System Integrity Protection"
        ))
    } else {
        ProcessError::Other(format!(
            "task_for_pid({pid}) failed: kern_return {kern_return}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const PAGE: u64 = 0x4000;

    /// One call the apply made, in order.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Call {
        Suspend,
        Resume,
        Threads,
        Protect(u64, u32),
        Read(u64),
        Write(u64, usize),
        Flush(u64),
    }

    /// Memory of a task as Mach gives it: pages with a protection and a maximum protection;
    /// a write to a page without `VM_PROT_WRITE` fails (`KERN_PROTECTION_FAILURE`), a
    /// protection beyond the maximum fails unless `VM_PROT_COPY` asks for a private copy
    /// (which may be written). Every call is logged.
    struct FakeTask {
        pages: BTreeMap<u64, (Vec<u8>, u32, u32)>,
        threads: Vec<ThreadState>,
        log: Vec<Call>,
        suspended: bool,
        /// `protect` of this page fails.
        refuse_protect: Option<u64>,
    }

    impl FakeTask {
        fn new() -> FakeTask {
            FakeTask {
                pages: BTreeMap::new(),
                threads: Vec::new(),
                log: Vec::new(),
                suspended: false,
                refuse_protect: None,
            }
        }
        fn map(&mut self, range: Range<u64>, prot: u32, max: u32) {
            for p in (range.start..range.end).step_by(PAGE as usize) {
                self.pages.insert(p, (vec![0xcc; PAGE as usize], prot, max));
            }
        }
        fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
            (0..len as u64)
                .map(|i| {
                    let a = addr + i;
                    self.pages[&(a - a % PAGE)].0[(a % PAGE) as usize]
                })
                .collect()
        }
        fn prot(&self, addr: u64) -> u32 {
            self.pages[&(addr - addr % PAGE)].1
        }
        fn writes(&self) -> Vec<Call> {
            self.log
                .iter()
                .filter(|c| matches!(c, Call::Write(..)))
                .cloned()
                .collect()
        }
    }

    fn kern(what: &str) -> ProcessError {
        ProcessError::Other(what.to_string())
    }

    impl Task for FakeTask {
        fn page_size(&self) -> u64 {
            PAGE
        }
        fn suspend(&mut self) -> Result<(), ProcessError> {
            self.log.push(Call::Suspend);
            self.suspended = true;
            Ok(())
        }
        fn resume(&mut self) -> Result<(), ProcessError> {
            self.log.push(Call::Resume);
            self.suspended = false;
            Ok(())
        }
        fn threads(&mut self) -> Result<Vec<ThreadState>, ProcessError> {
            assert!(self.suspended, "thread states read from a running task");
            self.log.push(Call::Threads);
            Ok(self.threads.clone())
        }
        fn region(&mut self, addr: u64) -> Result<Region, ProcessError> {
            let page = addr - addr % PAGE;
            let (protection, max_protection) = self
                .pages
                .get(&page)
                .map(|e| (e.1, e.2))
                .ok_or_else(|| kern("KERN_INVALID_ADDRESS"))?;
            // The region: this page and its neighbours of the same protection.
            let mut end = page + PAGE;
            while self.pages.get(&end).is_some_and(|e| e.1 == protection) {
                end += PAGE;
            }
            Ok(Region {
                range: page..end,
                protection,
                max_protection,
            })
        }
        fn protect(&mut self, range: Range<u64>, protection: u32) -> Result<(), ProcessError> {
            self.log.push(Call::Protect(range.start, protection));
            assert_eq!(range.start % PAGE, 0);
            if self.refuse_protect == Some(range.start) {
                return Err(kern("KERN_PROTECTION_FAILURE"));
            }
            for p in (range.start..range.end).step_by(PAGE as usize) {
                let entry = self
                    .pages
                    .get_mut(&p)
                    .ok_or_else(|| kern("KERN_INVALID_ADDRESS"))?;
                let wanted = protection & !VM_PROT_COPY;
                if protection & VM_PROT_COPY != 0 {
                    entry.2 |= VM_PROT_WRITE;
                }
                if wanted & !entry.2 != 0 {
                    return Err(kern("KERN_PROTECTION_FAILURE"));
                }
                entry.1 = wanted;
            }
            Ok(())
        }
        fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, ProcessError> {
            self.log.push(Call::Read(addr));
            Ok(self.bytes(addr, len))
        }
        fn write(&mut self, addr: u64, bytes: &[u8]) -> Result<(), ProcessError> {
            self.log.push(Call::Write(addr, bytes.len()));
            let page = addr - addr % PAGE;
            assert!(
                addr + bytes.len() as u64 <= page + PAGE,
                "a write crosses a page boundary"
            );
            let entry = self
                .pages
                .get_mut(&page)
                .ok_or_else(|| kern("KERN_INVALID_ADDRESS"))?;
            if entry.1 & VM_PROT_WRITE == 0 {
                return Err(kern("KERN_PROTECTION_FAILURE"));
            }
            let off = (addr - page) as usize;
            entry.0[off..off + bytes.len()].copy_from_slice(bytes);
            Ok(())
        }
        fn flush_code(&mut self, range: Range<u64>) -> Result<(), ProcessError> {
            self.log.push(Call::Flush(range.start));
            Ok(())
        }
    }

    const RX: u32 = VM_PROT_READ | VM_PROT_EXECUTE;
    const RW: u32 = VM_PROT_READ | VM_PROT_WRITE;
    const TEXT: u64 = 0x1_0000_0000;
    const ARENA: u64 = 0x2_0000_0000;
    const STACK: u64 = 0x7_0000_0000;

    fn task() -> FakeTask {
        let mut t = FakeTask::new();
        // Text of a file mapping: read-execute, and its maximum has no write.
        t.map(TEXT..TEXT + 4 * PAGE, RX, RX);
        t.map(ARENA..ARENA + PAGE, RW, RW | VM_PROT_EXECUTE);
        t.map(STACK..STACK + PAGE, RW, RW);
        t.threads = vec![ThreadState {
            id: 7,
            pc: TEXT + 3 * PAGE + 0x10,
            sp: STACK + PAGE - 64,
            lr: None,
        }];
        t
    }

    fn write(addr: u64, bytes: Vec<u8>, what: &str) -> Write {
        Write {
            addr,
            bytes,
            expected: None,
            what: what.to_string(),
        }
    }

    #[test]
    fn writes_are_split_at_page_boundaries() {
        assert_eq!(
            split_pages(0x3ffe, 5, PAGE),
            vec![(0x3ffe, 0..2), (0x4000, 2..5)]
        );
        assert_eq!(split_pages(0x4000, 0x4000, PAGE), vec![(0x4000, 0..0x4000)]);
        assert_eq!(
            split_pages(0x1, 2 * PAGE as usize, PAGE),
            vec![
                (0x1, 0..0x3fff),
                (0x4000, 0x3fff..0x7fff),
                (0x8000, 0x7fff..0x8000)
            ]
        );
        assert!(split_pages(0x10, 0, PAGE).is_empty());
    }

    #[test]
    fn a_write_across_read_execute_pages_copies_each_page_and_restores_it() {
        let mut t = task();
        let bytes: Vec<u8> = (0..PAGE as usize + 8).map(|i| i as u8).collect();
        let at = TEXT + PAGE - 4;
        write_pages(&mut t, at, &bytes, "entry of tick").unwrap();
        assert_eq!(t.bytes(at, bytes.len()), bytes);
        assert_eq!(
            t.log,
            vec![
                Call::Protect(TEXT, VM_PROT_READ | VM_PROT_WRITE | VM_PROT_COPY),
                Call::Write(at, 4),
                Call::Protect(TEXT, RX),
                Call::Protect(TEXT + PAGE, VM_PROT_READ | VM_PROT_WRITE | VM_PROT_COPY),
                Call::Write(TEXT + PAGE, PAGE as usize),
                Call::Protect(TEXT + PAGE, RX),
                Call::Protect(TEXT + 2 * PAGE, VM_PROT_READ | VM_PROT_WRITE | VM_PROT_COPY),
                Call::Write(TEXT + 2 * PAGE, 4),
                Call::Protect(TEXT + 2 * PAGE, RX),
            ]
        );
        for p in 0..3 {
            assert_eq!(t.prot(TEXT + p * PAGE), RX, "page {p} keeps its protection");
        }
    }

    #[test]
    fn writable_pages_are_written_without_protection_changes() {
        let mut t = task();
        write_pages(&mut t, ARENA + 8, &[1, 2, 3], "arena").unwrap();
        assert_eq!(t.log, vec![Call::Write(ARENA + 8, 3)]);
    }

    #[test]
    fn without_copy_a_text_page_could_not_be_made_writable() {
        // The model refuses what Mach refuses: the COPY bit is what makes the write possible.
        let mut t = task();
        assert!(t.protect(TEXT..TEXT + PAGE, RW).is_err());
        assert!(t.write(TEXT, &[0]).is_err());
    }

    #[test]
    fn apply_runs_suspend_check_write_flush_resume_in_order() {
        let mut t = task();
        let plan = WritePlan {
            prepare: vec![write(ARENA, vec![0x90; 16], "body of tick")],
            commit: vec![Write {
                expected: Some(vec![0xcc; 5]),
                ..write(TEXT + 0x100, vec![0xe9, 1, 2, 3, 4], "entry of tick")
            }],
            ..Default::default()
        };
        let report = apply_plan(&mut t, &plan).unwrap();
        assert_eq!(report.threads, 1);
        let order: Vec<&Call> = t
            .log
            .iter()
            .filter(|c| !matches!(c, Call::Read(_) | Call::Protect(..)))
            .collect();
        assert_eq!(
            order,
            vec![
                &Call::Write(ARENA, 16),
                &Call::Suspend,
                &Call::Threads,
                &Call::Write(TEXT + 0x100, 5),
                &Call::Flush(ARENA),
                &Call::Flush(TEXT + 0x100),
                &Call::Resume,
            ]
        );
        assert_eq!(t.bytes(TEXT + 0x100, 5), vec![0xe9, 1, 2, 3, 4]);
        assert_eq!(t.prot(TEXT), RX);
        assert!(!t.suspended);
    }

    #[test]
    fn a_thread_inside_a_commit_refuses_and_resumes() {
        let mut t = task();
        let pc = t.threads[0].pc;
        let plan = WritePlan {
            commit: vec![write(pc - 2, vec![0xe9, 0, 0, 0, 0], "entry of tick")],
            ..Default::default()
        };
        let err = apply_plan(&mut t, &plan).unwrap_err().to_string();
        assert!(
            err.contains("thread 7 is running inside entry of tick"),
            "{err}"
        );
        assert!(t.writes().is_empty());
        assert_eq!(t.log.last(), Some(&Call::Resume));
    }

    #[test]
    fn a_return_address_into_a_protected_range_refuses() {
        let mut t = task();
        let ret = TEXT + 0x208;
        let sp = t.threads[0].sp;
        t.pages.get_mut(&STACK).unwrap().0[(sp - STACK) as usize + 8..(sp - STACK) as usize + 16]
            .copy_from_slice(&ret.to_le_bytes());
        let plan = WritePlan {
            commit: vec![write(TEXT + 0x200, vec![0xe9, 0, 0, 0, 0], "entry of tick")],
            protected: std::iter::once(TEXT + 0x200..TEXT + 0x240).collect(),
            ..Default::default()
        };
        let err = apply_plan(&mut t, &plan).unwrap_err().to_string();
        assert!(
            err.contains("will return into entry of tick at +0x8"),
            "{err}"
        );
        assert!(t.writes().is_empty());
        // A link register counts like a stack word (arm64 leaf functions).
        let mut t = task();
        t.threads[0].lr = Some(ret);
        assert!(apply_plan(&mut t, &plan).is_err());
        assert!(t.writes().is_empty());
        assert!(!t.suspended);
    }

    #[test]
    fn watched_bodies_with_frames_are_reported_live() {
        let mut t = task();
        let pc = t.threads[0].pc;
        let plan = WritePlan {
            watch: vec![(pc - 0x10..pc + 0x10, "tick".to_string())],
            ..Default::default()
        };
        let report = apply_plan(&mut t, &plan).unwrap();
        assert_eq!(
            report.live,
            vec![LiveFrame {
                function: "tick".into(),
                tid: 7
            }]
        );
    }

    #[test]
    fn unexpected_bytes_refuse_before_any_write() {
        let mut t = task();
        let plan = WritePlan {
            commit: vec![Write {
                expected: Some(vec![0x55; 5]),
                ..write(TEXT + 0x100, vec![0xe9, 0, 0, 0, 0], "entry of tick")
            }],
            ..Default::default()
        };
        assert!(matches!(
            apply_plan(&mut t, &plan),
            Err(ProcessError::Unexpected { addr, .. }) if addr == TEXT + 0x100
        ));
        assert!(t.writes().is_empty());
        assert_eq!(t.log.last(), Some(&Call::Resume));
    }

    #[test]
    fn a_failed_commit_write_rolls_back_the_others() {
        let mut t = task();
        t.refuse_protect = Some(TEXT + 2 * PAGE);
        let plan = WritePlan {
            commit_data: vec![write(ARENA + 0x40, vec![9; 8], "table")],
            commit: vec![
                write(TEXT + 0x100, vec![0xe9, 1, 1, 1, 1], "entry of a"),
                write(TEXT + 2 * PAGE + 0x10, vec![0xe9, 2, 2, 2, 2], "entry of b"),
            ],
            ..Default::default()
        };
        let err = apply_plan(&mut t, &plan).unwrap_err();
        assert!(
            matches!(&err, ProcessError::Protection { addr, what, .. }
                if *addr == TEXT + 2 * PAGE + 0x10 && what == "entry of b"),
            "{err}"
        );
        assert_eq!(
            t.bytes(TEXT + 0x100, 5),
            vec![0xcc; 5],
            "entry of a rolled back"
        );
        assert_eq!(
            t.bytes(ARENA + 0x40, 8),
            vec![0xcc; 8],
            "the table rolled back"
        );
        assert_eq!(t.prot(TEXT), RX);
        assert_eq!(t.log.last(), Some(&Call::Resume));
    }

    #[test]
    fn kern_failure_from_task_for_pid_explains_the_entitlement() {
        let e = task_for_pid_error(42, 5);
        assert_eq!(e.code(), "permission-denied");
        let text = e.to_string();
        assert!(text.contains("entitlements.plist") && text.contains("hardened runtime"));
        assert_eq!(task_for_pid_error(42, 4).code(), "process-error");
    }
}
