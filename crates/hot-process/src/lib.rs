//! The debuggee: launch or attach, watch it live, stop every thread, read and write its
//! memory, map arenas near its image, and apply a set of writes atomically with rollback.
//!
//! This is the only crate that makes ptrace, `/proc` or Mach calls. All ptrace requests for
//! one debuggee are issued by a dedicated owner thread (Linux requires the tracer thread to
//! issue them), which also forks the launched program so `PR_SET_PDEATHSIG` is tied to a
//! thread that lives as long as the [`Debuggee`].

use std::ffi::OsString;
use std::ops::Range;
use std::path::PathBuf;

/// Test-only fault injection (the `fault-injection` feature); see [`fault::arm`].
#[cfg(feature = "fault-injection")]
pub mod fault;
#[cfg(not(feature = "fault-injection"))]
#[allow(dead_code)]
mod fault;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod linux;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use linux as backend;
// The macOS backend's logic that makes no Mach call: compiled and tested everywhere.
#[cfg_attr(not(target_vendor = "apple"), allow(dead_code))]
mod task_apply;
// The macOS launch and exit events without Apple calls: compiled and tested everywhere.
#[cfg_attr(not(target_vendor = "apple"), allow(dead_code))]
mod task_launch;
// Its Mach calls (`task_for_pid`, VM, thread states): Apple targets only.
#[cfg(target_vendor = "apple")]
mod macos;
#[cfg(target_vendor = "apple")]
use macos as backend;
#[cfg(not(any(
    all(target_os = "linux", target_arch = "x86_64"),
    target_vendor = "apple"
)))]
mod unsupported;
#[cfg(not(any(
    all(target_os = "linux", target_arch = "x86_64"),
    target_vendor = "apple"
)))]
use unsupported as backend;

/// `AT_PHDR` in [`Debuggee::auxv_entry`]: the address of the executable's program headers.
pub const AT_PHDR: u64 = 3;
/// `AT_BASE`: the dynamic loader's load address.
pub const AT_BASE: u64 = 7;
/// `AT_ENTRY`: the executable's entry point, as loaded (bias included).
pub const AT_ENTRY: u64 = 9;

/// How to start the program. The program runs in its own session, with stdin on
/// `/dev/null`, stdout on a pseudo-terminal (so C stdio line-buffers it) and stderr on a pipe.
/// How long an injected call may take ([`Debuggee::call_function`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// With every other thread stopped; after it they run again.
    pub stopped: std::time::Duration,
    /// In all; after it the call fails and its thread is left running in the callee.
    pub total: std::time::Duration,
}

#[derive(Clone, Debug, Default)]
pub struct LaunchSpec {
    /// The program, executed as given (a relative path is relative to `cwd`, as after `cd`).
    pub path: PathBuf,
    pub args: Vec<OsString>,
    /// Working directory; empty means the server's.
    pub cwd: PathBuf,
    /// Extra environment on top of the server's.
    pub env: Vec<(OsString, OsString)>,
    pub disable_aslr: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What the owner thread reports, delivered on the channel given at launch/attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessEvent {
    /// Program output, one line per event without its line terminator ("\n" or "\r\n"). A
    /// partial line is sent on its own when the program writes nothing more for 50 ms, and
    /// at exit.
    Output { stream: Stream, text: String },
    /// The program called `exec`: the same process now runs another image (`path`, as
    /// `/proc/PID/exe` names it; the same file again for a program that re-executes itself).
    /// Everything read from the old image is void: read the new one. Noticed within
    /// 200 ms, and before any arena mapping or apply, which fail instead of writing the
    /// new image as if it were the old one.
    Exec { path: String },
    /// The program is gone. An attached process reports no code.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub range: Range<u64>,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    pub offset: u64,
    /// The backing file, `[heap]`, `[stack]`, or empty. A " (deleted)" suffix is kept.
    pub path: String,
    /// Device (major, minor) of the backing file, (0, 0) for anonymous memory.
    pub device: (u32, u32),
    /// Inode of the backing file, 0 for anonymous memory.
    pub inode: u64,
}

/// Protection of an arena to map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    ReadExecute,
    ReadWrite,
}

/// A write of bytes to the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub addr: u64,
    pub bytes: Vec<u8>,
    /// The bytes expected there before writing (checked while every thread is stopped); a
    /// mismatch aborts the whole apply with [`ProcessError::Unexpected`].
    pub expected: Option<Vec<u8>>,
    /// For messages: "entry of foo".
    pub what: String,
}

/// "Copy the 8 bytes at `src` to `dst`", both in the target: a value only the running
/// program knows, such as the implementation an IFUNC resolver chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotCopy {
    pub src: u64,
    pub dst: u64,
}

/// Everything one swap writes. Applied as: (1) `prepare` writes (arena contents, not yet
/// reachable), (2) `copies` (dst <- 8 bytes at src, read in the target), (3) stop every
/// thread, move threads out of `protected`, check every `expected`, (4) `commit_data` and
/// `commit` writes (data the program can read, then entry jumps), (5) resume and detach. Any
/// failure restores what was written.
///
/// Details: a thread is "inside" a range when `start < rip < end` (a thread exactly at the
/// start runs the new bytes whole); commit write ranges count as protected too. Threads are
/// single-stepped out (at most 64 steps each, else the apply fails with nothing committed).
/// Return addresses count like instruction pointers, at any depth: each thread's live stack
/// (from its stack pointer to the end of its mapping, at most 64 MiB) is scanned for a word
/// inside a protected or commit range, and any hit refuses the apply with nothing written
/// ([`ProcessError::Other`] naming the thread, the function — from the `what` of the commit
/// write, "entry of foo" — and the offset from its entry). The scan is conservative: a stale
/// word equal to such an address refuses too.
/// Signals that reach a thread while it is being stopped are delivered after the swap with
/// their original siginfo. A process stopped by SIGSTOP can be swapped and is left stopped.
#[derive(Clone, Debug, Default)]
pub struct WritePlan {
    pub prepare: Vec<Write>,
    pub copies: Vec<SlotCopy>,
    /// Data the program can already read (a `const` table updated in place): written with
    /// every thread stopped, checked and rolled back together with `commit`, but not code, so
    /// no thread is stepped out of it and a stack word pointing into it refuses nothing.
    pub commit_data: Vec<Write>,
    /// The entry jumps; a commit write's `what` names its function ("entry of foo").
    pub commit: Vec<Write>,
    /// Ranges no thread may be stopped strictly inside or return into, besides the commit
    /// writes' own ranges; each is named after the commit write it overlaps.
    pub protected: Vec<Range<u64>>,
    /// The old bodies of the functions being swapped, each with the function's name: the
    /// apply reports which of them a thread is running or will return into right now
    /// ([`ApplyReport::live`]), found by the same stack scan as `protected`; they refuse
    /// nothing (those frames finish in the old body). A word at a body's first byte is a
    /// pointer to the function, not a frame, and is not reported; each function is named
    /// once per thread, however many of its ranges the thread is in.
    pub watch: Vec<(Range<u64>, String)>,
    /// Code no thread may be running or return into while this plan commits, each range
    /// with a name for the caller: a frame there (instruction pointer or return address, by
    /// the same conservative stack scan as `protected`) refuses the apply with nothing
    /// written ([`ProcessError::FrameRefused`], naming each function met and its thread). The session gives
    /// the bodies of functions whose frames hold objects of a type whose layout the swap
    /// changes.
    pub refuse_frames: Vec<(Range<u64>, String)>,
    /// Bytes that must still be in the target when it commits, checked with every thread
    /// stopped before any commit write (in [`WritePlan::commit`]'s check, and in a check-only
    /// apply): what shows that the module the patch was linked against is the one mapped
    /// there now — a library `dlclose`d since the link is unreadable there, one loaded again
    /// in its place holds other bytes. Either refuses the apply with nothing committed
    /// ([`ProcessError::Other`], naming `what`).
    pub verify: Vec<Verify>,
}

/// A range of the target that must hold `bytes` when a [`WritePlan`] commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verify {
    pub addr: u64,
    pub bytes: Vec<u8>,
    /// For messages: what the bytes are ("the build-id of /w/libplug.so").
    pub what: String,
}

impl Verify {
    /// The refusal when the target holds `found` (`None`: unreadable) instead of `bytes`.
    pub fn refusal(&self, found: Option<&[u8]>) -> ProcessError {
        let now = match found {
            None => "cannot be read any more",
            Some(_) => "holds other bytes now",
        };
        ProcessError::Other(format!(
            "{} at {:#x} {now}: the module the patch was linked against was unloaded or loaded \
             again since the link (dlclose, dlopen); nothing was written — save again",
            self.what, self.addr
        ))
    }
}

/// A function of [`WritePlan::watch`] that a thread runs in (its instruction pointer or a
/// return address on its stack lies in the old body) while the swap commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveFrame {
    /// The name given in [`WritePlan::watch`].
    pub function: String,
    pub tid: i32,
}

/// A process other than hot-lsp tracing the program (a debugger).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debugger {
    /// The tracing thread's id (`TracerPid`).
    pub tracer: i32,
    /// Its command name (`/proc/TRACER/comm`), e.g. `gdb`.
    pub name: String,
    /// Whether it holds every thread stopped (then a swap can be written).
    pub stopped: bool,
}

/// Timing of an apply, for the swap summary.
#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    /// Microseconds with every thread stopped (from the first seize to the last detach).
    pub stopped_micros: u64,
    /// How many threads were stopped.
    pub threads: usize,
    /// How many signals reached the threads while they were held. Each is delivered after
    /// the swap with the siginfo the kernel made for it (SIGCHLD's `si_pid`, a queued
    /// signal's value).
    pub signals_held: usize,
    /// The watched old bodies ([`WritePlan::watch`]) some thread had a frame in, one entry
    /// per function and thread. Conservative like the stack scan: a stale word on a stack
    /// that equals an address in an old body counts too.
    pub live: Vec<LiveFrame>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {path}: {message}")]
    Launch { path: PathBuf, message: String },
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("the program has exited")]
    Exited,
    #[error("cannot write {what} at {addr:#x}: {message}")]
    Protection {
        addr: u64,
        what: String,
        message: String,
    },
    #[error(
        "{what} at {addr:#x} does not hold the bytes hot-lsp expects there (a debugger breakpoint, or a change hot-lsp did not make); nothing was written"
    )]
    Unexpected { addr: u64, what: String },
    #[error("{0}")]
    Other(String),
    /// A debugger traces the program and lets it run: hot-lsp can neither stop it nor
    /// write code under running threads. Nothing was written; a save is swapped in once
    /// the debugger holds the program stopped (or has detached).
    #[error(
        "the program (pid {pid}) runs under {name} (pid {tracer}), and hot-lsp cannot stop a program a debugger traces: stop it in the debugger (interrupt it or let it reach a breakpoint) and the save is swapped in then, or detach the debugger; nothing was written"
    )]
    HeldByDebugger { pid: i32, tracer: i32, name: String },
    /// An injected call that did not return within its total limit: its thread is left
    /// running in the callee (never pulled back mid-call) and is put back where it was if
    /// the callee ever returns. What the callee was to do may still happen.
    #[error("{0}")]
    CallStillRunning(String),
    /// Threads have frames in [`WritePlan::refuse_frames`] (each function, named as there,
    /// and thread once): nothing was written.
    #[error("{}", refused_frames(.0))]
    FrameRefused(Vec<LiveFrame>),
}

/// The message of [`ProcessError::FrameRefused`].
fn refused_frames(frames: &[LiveFrame]) -> String {
    let each: Vec<String> = frames
        .iter()
        .map(|f| format!("`{}` (thread {})", f.function, f.tid))
        .collect();
    format!(
        "a thread has a frame in code that must not be live while this swap commits: {}; \
         nothing was written",
        each.join(", ")
    )
}

impl ProcessError {
    /// The stable code the user sees with the message (DESIGN.md 3.3; `launch-failed` and
    /// `process-error` for what the list has no code for). Exhaustive: a new variant must
    /// say how it reaches the user.
    pub fn code(&self) -> &'static str {
        match self {
            ProcessError::Launch { .. } => "launch-failed",
            ProcessError::PermissionDenied(_) => "permission-denied",
            ProcessError::Exited => "process-exited",
            // A write the memory refused, or bytes that are not what hot-lsp left there:
            // either way nothing was written.
            ProcessError::Protection { .. } | ProcessError::Unexpected { .. } => {
                "protection-failure"
            }
            ProcessError::Other(_)
            | ProcessError::CallStillRunning(_)
            | ProcessError::FrameRefused(_)
            | ProcessError::HeldByDebugger { .. } => "process-error",
        }
    }
}

/// A running program under hot-lsp's control. Dropping it kills a launched program and
/// detaches from an attached one.
///
/// Every ptrace call happens on the debuggee's owner thread; the methods send it a request and
/// wait for the answer, except `mappings`, `read_memory` and `auxv`, which read `/proc`
/// directly. Between calls the program runs untraced, so a debugger can attach.
pub struct Debuggee {
    inner: backend::Debuggee,
}

impl Debuggee {
    /// Launch on a fresh owner thread; events go to `events`. A program that cannot be
    /// started (missing file, not executable, bad working directory) gives
    /// [`ProcessError::Launch`] with the system's reason.
    pub fn launch(
        spec: &LaunchSpec,
        events: crossbeam_channel::Sender<ProcessEvent>,
    ) -> Result<Debuggee, ProcessError> {
        backend::Debuggee::launch(spec, events).map(|inner| Debuggee { inner })
    }

    /// Attach to a running process of the same user (not traced between swaps). Checks at
    /// once that it may be traced: [`ProcessError::PermissionDenied`] if not (another user,
    /// a debugger already attached, Yama), [`ProcessError::Other`] naming the pid if there is
    /// no such process. Its exit is reported without a code.
    pub fn attach(
        pid: i32,
        events: crossbeam_channel::Sender<ProcessEvent>,
    ) -> Result<Debuggee, ProcessError> {
        backend::Debuggee::attach(pid, events).map(|inner| Debuggee { inner })
    }

    pub fn pid(&self) -> i32 {
        self.inner.pid()
    }

    /// Whether hot-lsp started it (and will kill it) rather than attached.
    pub fn launched(&self) -> bool {
        self.inner.launched()
    }

    /// `/proc/PID/exe`, readable even if the file was replaced on disk.
    pub fn exe_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/exe", self.pid()))
    }

    /// The executable the process runs, read through `/proc/PID/exe` (so a file rebuilt on
    /// disk since the launch does not fool it), with the path it was started from as the
    /// kernel reports it (the same spelling as in [`Debuggee::mappings`]).
    pub fn read_executable(&self) -> Result<(String, Vec<u8>), ProcessError> {
        let link = self.exe_path();
        let gone = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => ProcessError::Exited,
            std::io::ErrorKind::PermissionDenied => {
                ProcessError::PermissionDenied(format!("cannot read {}: {e}", link.display()))
            }
            _ => ProcessError::Other(format!("cannot read {}: {e}", link.display())),
        };
        let path = std::fs::read_link(&link).map_err(gone)?;
        let bytes = std::fs::read(&link).map_err(gone)?;
        Ok((path.display().to_string(), bytes))
    }

    /// When the executable the process runs was last modified: sources changed after it were
    /// not part of the running image.
    pub fn executable_modified(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.exe_path())
            .and_then(|m| m.modified())
            .ok()
    }

    /// The program's child processes that run its own executable (forked workers of a
    /// pre-fork server; a child that called exec runs something else and is not listed),
    /// in pid order. They are not traced and a swap does not reach them: each keeps the
    /// code it was forked with.
    pub fn forked_children(&self) -> Vec<i32> {
        let pid = self.pid();
        let Ok(exe) = std::fs::read_link(self.exe_path()) else {
            return Vec::new();
        };
        // The kernel's own list of each thread's children (`CONFIG_PROC_CHILDREN`): a look at
        // the program's threads, where reading the status of every process on the machine
        // took 2 ms of each save. Without it, every process is looked at.
        let candidates: Vec<i32> = match own_children(pid) {
            Some(children) => children,
            None => {
                let Ok(dir) = std::fs::read_dir("/proc") else {
                    return Vec::new();
                };
                dir.flatten()
                    .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
                    .collect()
            }
        };
        let mut children: Vec<i32> = candidates
            .into_iter()
            .filter(|&child| {
                let status = std::fs::read_to_string(format!("/proc/{child}/status"));
                let parent = status.ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("PPid:"))
                        .and_then(|p| p.trim().parse::<i32>().ok())
                });
                parent == Some(pid)
                    && std::fs::read_link(format!("/proc/{child}/exe"))
                        .ok()
                        .as_ref()
                        == Some(&exe)
            })
            .collect();
        children.sort_unstable();
        children
    }

    /// `/proc/PID/maps`, in address order.
    pub fn mappings(&self) -> Result<Vec<Mapping>, ProcessError> {
        self.inner.mappings()
    }

    /// Whether `mapping` is hot-lsp's trampoline page: one page of its own code, mapped with
    /// the first system call it injects into an image and kept for the program's lifetime
    /// (every injected system call and call returns through it; see the backend's
    /// `trampoline.rs`). It is never an arena.
    pub fn is_trampoline(&self, mapping: &Mapping) -> bool {
        self.inner.is_trampoline(mapping)
    }

    /// Reads target memory (`/proc/PID/mem`); unmapped bytes are an error.
    pub fn read_memory(&self, addr: u64, len: usize) -> Result<Vec<u8>, ProcessError> {
        self.inner.read_memory(addr, len)
    }

    /// The debugger tracing the program right now, if one does. [`Debuggee::apply`] then
    /// works only while the debugger holds every thread stopped, through `/proc/PID/mem`;
    /// injected calls and new arenas are impossible until it detaches.
    pub fn debugger(&self) -> Option<Debugger> {
        self.inner.debugger()
    }

    /// Writes target memory while the program runs (`/proc/PID/mem`), with no stop and no
    /// check: only for data the program itself never reads (the debugger interface's list
    /// of new code, which only a debugger reads). Code and data the program uses change
    /// through [`Debuggee::apply`].
    pub fn write_memory(&self, addr: u64, bytes: &[u8], what: &str) -> Result<(), ProcessError> {
        self.inner.write_memory(addr, bytes, what)
    }

    /// The auxiliary vector (`/proc/PID/auxv`) as (key, value) pairs.
    pub fn auxv(&self) -> Result<Vec<(u64, u64)>, ProcessError> {
        self.inner.auxv()
    }

    /// One auxiliary vector entry, e.g. [`AT_PHDR`] or [`AT_ENTRY`]: with the ELF file's
    /// `e_entry`, `AT_ENTRY - e_entry` is the load bias of a PIE.
    pub fn auxv_entry(&self, key: u64) -> Result<Option<u64>, ProcessError> {
        Ok(self
            .inner
            .auxv()?
            .into_iter()
            .find(|&(k, _)| k == key)
            .map(|(_, v)| v))
    }

    /// The address range spanned by the executable's own mappings (those of
    /// `/proc/PID/exe`), a natural `near` for [`Debuggee::map_arena`].
    pub fn image_range(&self) -> Result<Range<u64>, ProcessError> {
        self.inner.image_range()
    }

    /// Map `size` bytes (rounded up to pages) with `prot` within ±2 GiB of every address in
    /// `near` (below the lowest mapping of a position-independent image; below 2 GiB for an
    /// executable mapped there, away from the heap's growth), by an injected `mmap`. `near`
    /// is the executable's mappings, or a shared library's (the arena then goes below it).
    /// Returns the start address. The new memory is zero-filled.
    pub fn map_arena(
        &self,
        near: Range<u64>,
        size: u64,
        prot: Protection,
    ) -> Result<u64, ProcessError> {
        self.inner
            .map_arena(near, (size, size), prot)
            .map(|r| r.start)
    }

    /// Like [`Debuggee::map_arena`], but when no free gap in reach has room for `size`
    /// bytes, maps the largest one of at least `min_size` bytes. Returns the mapped range.
    pub fn map_arena_up_to(
        &self,
        near: Range<u64>,
        size: u64,
        min_size: u64,
        prot: Protection,
    ) -> Result<Range<u64>, ProcessError> {
        self.inner.map_arena(near, (size, min_size), prot)
    }

    /// Apply a plan atomically (see [`WritePlan`]). Besides `plan.protected`, a thread
    /// strictly inside a commit write's range is also stepped out of it. On error nothing of
    /// `commit` remains written (`prepare` writes may remain: they are unreachable).
    ///
    /// Threads born while the others are being stopped or stepped are stopped and detached
    /// with them. A thread that cannot be stopped within 5 s (one in `vfork` waiting for its
    /// child, or in an uninterruptible sleep) fails the apply with [`ProcessError::Other`]
    /// naming it and where the kernel holds it; nothing is written, every other thread is
    /// resumed, and that one is detached by the owner thread as soon as it stops (it is never
    /// left in a ptrace stop).
    pub fn apply(&self, plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        self.inner.apply(plan)
    }

    /// Every check [`Debuggee::apply`] makes before it commits, and no write: every thread
    /// stopped and stepped out of the bytes `plan` would change, every stack scanned, the
    /// bytes expected at each commit write compared (its `prepare` and `copies` are not
    /// written either). `Ok` means the apply of the same plan would not be refused by the
    /// program's state right now — for what must happen only once nothing can refuse the
    /// swap (the static constructors of a new translation unit). The program runs between
    /// this check and the apply, so the apply checks again.
    pub fn check(&self, plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        self.inner.check(plan)
    }

    /// Call the function at `function` in the target with up to six integer arguments and
    /// return its result (`rax`), with every thread stopped: one of them (held in an
    /// interrupt or signal stop, never inside `clone`; preferably one that does not block
    /// SIGSEGV and is blocked in a system call) runs the call on its own stack, below its red
    /// zone, and is then put back exactly where it was (registers, x87/SSE/AVX state, signal
    /// mask, the stack word used). A callee that faults fails the call with
    /// [`ProcessError::Other`]; the fault is not delivered and the program goes on as it was
    /// (what the callee did until then stays done). A program that ignores SIGSEGV gets no
    /// call (the return through a fault would reset that action).
    ///
    /// A call that has started is never pulled back (the callee may hold a lock): after
    /// `limits.stopped` the other threads are let go, and after `limits.total` the call fails
    /// with the thread left running in the callee; it is put back where it was if the callee
    /// ever returns. `what` names the callee in messages.
    pub fn call_function(
        &self,
        function: u64,
        args: &[u64],
        limits: CallLimits,
        what: &str,
    ) -> Result<u64, ProcessError> {
        self.inner
            .call_function(function, args, limits, what, false)
    }

    /// Like [`Debuggee::call_function`], but only in a thread blocked in a system call
    /// (sleeping in `nanosleep`, `poll` or `read`, it holds none of libc's or the loader's
    /// locks): for a call that takes those locks in a program that never asked for it
    /// (`dlopen`), where a thread stopped inside `malloc` would wait for itself. With no such
    /// thread nothing is called, and a later try may find one.
    pub fn call_function_in_blocked_thread(
        &self,
        function: u64,
        args: &[u64],
        limits: CallLimits,
        what: &str,
    ) -> Result<u64, ProcessError> {
        self.inner.call_function(function, args, limits, what, true)
    }

    /// macOS: where the dyld shared cache is mapped in the program (its header's address,
    /// slide and UUID), for resolving library functions the executable never imported.
    #[cfg(target_vendor = "apple")]
    pub fn shared_cache(&self) -> Result<(u64, u64, [u8; 16]), ProcessError> {
        self.inner.shared_cache().map(|c| (c.base, c.slide, c.uuid))
    }

    /// Kill a launched program (SIGKILL) and wait for it, reporting its exit; detach from an
    /// attached one.
    pub fn stop(self) {
        self.inner.stop()
    }

    /// Let the program run on without hot-lsp. A launched one keeps running until the server
    /// exits (`PR_SET_PDEATHSIG`); its output is still forwarded and its exit reported.
    pub fn detach(self) {
        self.inner.detach()
    }
}

/// The session moves a `Debuggee` between threads and shares it; keep it `Send + Sync`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Debuggee>();
};

/// The children of every thread of `pid`, from `/proc/PID/task/TID/children`; `None` when
/// the kernel has no such file (built without `CONFIG_PROC_CHILDREN`) or the threads cannot
/// be listed.
#[cfg(target_os = "linux")]
fn own_children(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut children = Vec::new();
    for task in tasks.flatten() {
        let mut path = task.path();
        path.push("children");
        match std::fs::read_to_string(&path) {
            Ok(text) => children.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            ),
            // A thread that ended since the listing has no children to give.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && task.path().exists() => {
                return None
            }
            Err(_) => {}
        }
    }
    children.sort_unstable();
    children.dedup();
    Some(children)
}

#[cfg(not(target_os = "linux"))]
fn own_children(_pid: i32) -> Option<Vec<i32>> {
    None
}
