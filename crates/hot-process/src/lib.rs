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

/// How to start the program.
#[derive(Clone, Debug, Default)]
pub struct LaunchSpec {
    pub path: PathBuf,
    pub args: Vec<OsString>,
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
    /// Program output, split at line ends where possible (a partial line is flushed when the
    /// program pauses).
    Output { stream: Stream, text: String },
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

/// Everything one swap writes. Applied as: (1) `prepare` writes (arena contents, not yet
/// reachable), (2) `copies` (dst <- 8 bytes at src, read in the target), (3) stop every
/// thread, move threads out of `protected`, check every `expected`, (4) `commit` writes
/// (entry jumps), (5) resume and detach. Any failure restores what was written.
#[derive(Clone, Debug, Default)]
pub struct WritePlan {
    pub prepare: Vec<Write>,
    pub copies: Vec<(u64, u64)>,
    pub commit: Vec<Write>,
    pub protected: Vec<Range<u64>>,
}

/// Timing of an apply, for the swap summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyReport {
    /// Microseconds with every thread stopped.
    pub stopped_micros: u64,
    pub threads: usize,
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
    #[error("{what} at {addr:#x} holds unexpected bytes (a debugger breakpoint?); nothing was written")]
    Unexpected { addr: u64, what: String },
    #[error("{0}")]
    Other(String),
}

/// A running program under hot-lsp's control. Dropping it kills a launched program and
/// detaches from an attached one.
pub struct Debuggee {
    _private: (),
}

impl Debuggee {
    /// Launch on a fresh owner thread; events go to `events`.
    pub fn launch(
        _spec: &LaunchSpec,
        _events: crossbeam_channel::Sender<ProcessEvent>,
    ) -> Result<Debuggee, ProcessError> {
        Err(ProcessError::Other("not implemented yet".into()))
    }

    /// Attach to a running process of the same user (not traced between swaps).
    pub fn attach(
        _pid: i32,
        _events: crossbeam_channel::Sender<ProcessEvent>,
    ) -> Result<Debuggee, ProcessError> {
        Err(ProcessError::Other("not implemented yet".into()))
    }

    pub fn pid(&self) -> i32 {
        0
    }

    /// Whether hot-lsp started it (and will kill it) rather than attached.
    pub fn launched(&self) -> bool {
        false
    }

    /// `/proc/PID/exe`, readable even if the file was replaced on disk.
    pub fn exe_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/exe", self.pid()))
    }

    pub fn mappings(&self) -> Result<Vec<Mapping>, ProcessError> {
        Err(ProcessError::Other("not implemented yet".into()))
    }

    pub fn read_memory(&self, _addr: u64, _len: usize) -> Result<Vec<u8>, ProcessError> {
        Err(ProcessError::Other("not implemented yet".into()))
    }

    /// Map `size` bytes with `prot` within ±2 GiB of every address in `near` (below the
    /// lowest mapping of the image, never above the heap), by an injected `mmap`. Returns the
    /// start address.
    pub fn map_arena(
        &self,
        _near: Range<u64>,
        _size: u64,
        _prot: Protection,
    ) -> Result<u64, ProcessError> {
        Err(ProcessError::Other("not implemented yet".into()))
    }

    /// Apply a plan atomically (see [`WritePlan`]).
    pub fn apply(&self, _plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        Err(ProcessError::Other("not implemented yet".into()))
    }

    /// Kill a launched program (SIGKILL) and wait for it; detach from an attached one.
    pub fn stop(self) {}

    /// Let the program run on without hot-lsp (launched ones keep running until the server
    /// exits, because of `PR_SET_PDEATHSIG`).
    pub fn detach(self) {}
}
