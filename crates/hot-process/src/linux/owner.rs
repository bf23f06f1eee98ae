//! The owner thread of one debuggee: it forks the launched program, makes every ptrace call,
//! waits only on the program's own thread ids, forwards output line by line and reports the
//! exit. Requests arrive on a channel, announced through an eventfd it polls with the pidfd
//! and the output descriptors.

use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::apply::{apply, ApplyScratch, Mode};
use super::inject::{arena_candidates, mmap_min_addr, prot_flags, Heap, Injector, LOW_LIMIT};
use super::memory::{exe_link, image_range, read_mappings, start_brk, ProcMem};
use super::threads::{
    errno, errno_text, has_lingering, reaped_leader_status, release_lingering,
    release_lingering_within, StoppedThreads,
};
use crate::{ApplyReport, ProcessError, ProcessEvent, Protection, Stream, WritePlan};

/// How long a partial line waits for the rest before it is sent on its own.
const PARTIAL_LINE_FLUSH_MS: i32 = 50;
/// How often threads a timed-out stop left traced are looked at, to let them go.
const LINGERING_POLL_MS: i32 = 10;
/// How long a killed program's traced threads get to exit before its leader is reaped.
const REAP_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);
/// How often an idle owner thread looks whether the program called `exec`.
const EXEC_POLL_MS: i32 = 200;
/// A line longer than this is sent in pieces.
const MAX_LINE: usize = 64 * 1024;

pub(crate) enum Request {
    MapArena {
        near: Range<u64>,
        size: u64,
        min_size: u64,
        prot: Protection,
        reply: Sender<Result<Range<u64>, ProcessError>>,
    },
    Apply {
        plan: WritePlan,
        /// `Mode::Check`: every check of the apply, nothing written.
        mode: Mode,
        reply: Sender<Result<ApplyReport, ProcessError>>,
    },
    /// Call a function in the target with every thread stopped (see `call.rs`).
    Call {
        function: u64,
        args: Vec<u64>,
        limits: crate::CallLimits,
        what: String,
        /// Only a thread blocked in a system call may run it (see `call::pick_thread`).
        blocked_only: bool,
        reply: Sender<Result<u64, ProcessError>>,
    },
    /// Kill a launched program and reap it; stop watching an attached one.
    Stop { reply: Sender<()> },
    /// Stop controlling the program. A launched one keeps running: this thread stays to
    /// forward its output and reap it (its exit would otherwise kill the program through
    /// `PR_SET_PDEATHSIG`).
    Detach { reply: Sender<()> },
}

/// An eventfd the owner polls; writing to it announces a request.
pub(crate) struct Wake(OwnedFd);

impl Wake {
    pub(crate) fn new() -> Result<Wake, ProcessError> {
        // SAFETY: plain system call returning a fresh descriptor.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(ProcessError::Other(format!(
                "eventfd: {}",
                errno_text(errno())
            )));
        }
        // SAFETY: fd is fresh and ours.
        Ok(Wake(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local. A full counter (EAGAIN) still means "awake".
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
    }

    fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a local.
        unsafe {
            libc::read(
                self.0.as_raw_fd(),
                &mut value as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }
}

pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, i32> {
    // SAFETY: plain system call returning a fresh descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: fd is fresh and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

struct Output {
    fd: OwnedFd,
    stream: Stream,
    partial: Vec<u8>,
}

pub(crate) struct Owner {
    pub(crate) pid: i32,
    pub(crate) launched: bool,
    pub(crate) pidfd: OwnedFd,
    pub(crate) mem: Arc<ProcMem>,
    pub(crate) events: Sender<ProcessEvent>,
    pub(crate) requests: Receiver<Request>,
    pub(crate) wake: Arc<Wake>,
    outputs: Vec<Output>,
    detached: bool,
    /// The leader's wait status if a ptrace wait already reaped it.
    leader_status: Option<i32>,
    /// How system calls are injected into the current image.
    injector: Injector,
    scratch: ApplyScratch,
    /// When output last arrived: a partial line is flushed once it is this old.
    last_output: std::time::Instant,
}

impl Owner {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        pid: i32,
        launched: bool,
        pidfd: OwnedFd,
        mem: Arc<ProcMem>,
        events: Sender<ProcessEvent>,
        requests: Receiver<Request>,
        wake: Arc<Wake>,
        outputs: Vec<(OwnedFd, Stream)>,
    ) -> Owner {
        Owner {
            pid,
            launched,
            pidfd,
            mem,
            events,
            requests,
            wake,
            outputs: outputs
                .into_iter()
                .map(|(fd, stream)| Output {
                    fd,
                    stream,
                    partial: Vec::new(),
                })
                .collect(),
            detached: false,
            leader_status: None,
            injector: Injector::default(),
            scratch: ApplyScratch::default(),
            last_output: std::time::Instant::now(),
        }
    }

    /// The loop: until the program exits, or a stop (or, for an attached program, a detach).
    pub(crate) fn run(mut self) {
        let mut pollfds: Vec<libc::pollfd> = Vec::with_capacity(2 + self.outputs.len());
        loop {
            pollfds.clear();
            let poll_entry = |fd: i32| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            pollfds.push(poll_entry(self.pidfd.as_raw_fd()));
            pollfds.push(poll_entry(self.wake.0.as_raw_fd()));
            for output in &self.outputs {
                pollfds.push(poll_entry(output.fd.as_raw_fd()));
            }
            let partial = self.outputs.iter().any(|o| !o.partial.is_empty());
            // Threads still traced after a timed-out stop are let go the moment they stop:
            // look at them often, never block forever with one left stopped.
            let timeout = match (partial, has_lingering()) {
                (_, true) => LINGERING_POLL_MS,
                (true, false) => PARTIAL_LINE_FLUSH_MS,
                // A detached program is not ours to re-read.
                (false, false) if self.detached => -1,
                (false, false) => EXEC_POLL_MS,
            };
            // SAFETY: pollfds is a live array of the given length.
            let ready =
                unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
            if ready < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                tracing::error!(pid = self.pid, "poll failed: {}", errno_text(errno()));
                return;
            }
            if has_lingering() {
                if let Some(status) = release_lingering() {
                    self.leader_status = Some(status);
                }
            }
            if !self.detached {
                self.check_exec();
            }
            if ready == 0 {
                // The program paused mid-line: send what it wrote.
                if self.last_output.elapsed().as_millis() >= PARTIAL_LINE_FLUSH_MS as u128 {
                    self.flush_partials();
                }
                continue;
            }
            // Output first, so it precedes an exit notice.
            let mut closed = Vec::new();
            for (index, pollfd) in pollfds[2..].iter().enumerate() {
                if pollfd.revents != 0 && !self.read_output(index) {
                    closed.push(index);
                }
            }
            for index in closed.into_iter().rev() {
                let mut output = self.outputs.remove(index);
                self.flush_partial(&mut output);
            }
            if pollfds[1].revents != 0 {
                self.wake.drain();
                while let Ok(request) = self.requests.try_recv() {
                    if self.handle(request) {
                        return;
                    }
                }
            }
            if pollfds[0].revents != 0 {
                self.report_exit();
                return;
            }
        }
    }

    /// Handles one request; true when the loop should end.
    fn handle(&mut self, request: Request) -> bool {
        match request {
            Request::MapArena {
                near,
                size,
                min_size,
                prot,
                reply,
            } => {
                let result = if self.detached {
                    Err(ProcessError::Other("the program was detached".into()))
                } else if let Some(exec) = self.check_exec() {
                    Err(exec)
                } else {
                    self.map_arena(near, (size, min_size), prot)
                };
                let _ = reply.send(result);
                false
            }
            Request::Apply { plan, mode, reply } => {
                let result = if self.detached {
                    Err(ProcessError::Other("the program was detached".into()))
                } else if let Some(exec) = self.check_exec() {
                    Err(exec)
                } else {
                    apply(self.pid, &self.mem, &plan, &mut self.scratch, mode).map(|applied| {
                        if applied.leader_status.is_some() {
                            self.leader_status = applied.leader_status;
                        }
                        applied.report
                    })
                };
                let _ = reply.send(result);
                false
            }
            Request::Call {
                function,
                args,
                limits,
                what,
                blocked_only,
                reply,
            } => {
                let result = if self.detached {
                    Err(ProcessError::Other("the program was detached".into()))
                } else {
                    StoppedThreads::stop_all(self.pid).and_then(|mut threads| {
                        let call = super::call::Call {
                            function,
                            args: &args,
                            limits,
                            what: &what,
                            blocked_only,
                        };
                        let result = threads
                            .injection_thread()
                            .ok_or(ProcessError::Exited)
                            .and_then(|tid| self.injector.trampoline(&mut threads, &self.mem, tid))
                            .and_then(|trampoline| {
                                super::call::call_function(
                                    self.pid,
                                    &self.mem,
                                    &mut threads,
                                    trampoline,
                                    &call,
                                )
                            });
                        threads.resume();
                        if threads.leader_status.is_some() {
                            self.leader_status = threads.leader_status;
                        }
                        result
                    })
                };
                let _ = reply.send(result);
                false
            }
            Request::Stop { reply } => {
                if self.launched && !self.detached {
                    // The program leads its own process group (setsid at launch): kill the
                    // group, so processes it started go too, then the program itself.
                    // SAFETY: plain system calls; the pid is our unreaped child, so neither
                    // it nor its group id can have been reused.
                    unsafe {
                        libc::kill(-self.pid, libc::SIGKILL);
                        libc::kill(self.pid, libc::SIGKILL);
                    }
                    self.report_exit();
                }
                let _ = reply.send(());
                true
            }
            Request::Detach { reply } => {
                self.detached = true;
                let _ = reply.send(());
                // An attached program needs nothing more from us.
                !self.launched
            }
        }
    }

    /// If the program called `exec` since the last look: reopens its memory for the new
    /// address space, forgets what belonged to the old one, reports [`ProcessEvent::Exec`],
    /// and returns the error a request meant for the old image gets.
    fn check_exec(&mut self) -> Option<ProcessError> {
        if !self.mem.reopen_after_exec() {
            return None;
        }
        // The borrowed code and the trampoline page were the old image's.
        self.injector.forget();
        let path = exe_link(self.pid)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".into());
        tracing::info!(pid = self.pid, %path, "the program called exec");
        let _ = self.events.send(ProcessEvent::Exec { path: path.clone() });
        Some(ProcessError::Other(format!(
            "pid {} called exec and now runs {path}: the change was made for the image it ran \
             before, so nothing was written; hot-lsp reads the new image — save again",
            self.pid
        )))
    }

    fn map_arena(
        &mut self,
        near: Range<u64>,
        (size, min_size): (u64, u64),
        prot: Protection,
    ) -> Result<Range<u64>, ProcessError> {
        if size == 0 {
            return Err(ProcessError::Other("an arena of 0 bytes".into()));
        }
        let maps = read_mappings(self.pid)?;
        let exe = image_range(self.pid, &maps)?;
        // Arenas for a shared library (`near` outside the executable) go next to the
        // library, as for a position-independent executable: below its lowest mapping.
        let image = if near.start < exe.end && exe.start < near.end {
            exe
        } else {
            near.clone()
        };
        let heap = Heap {
            start_brk: start_brk(self.pid),
        };
        let candidates = arena_candidates(
            &maps,
            &image,
            &near,
            (size, min_size),
            mmap_min_addr(),
            heap,
        );
        if candidates.is_empty() {
            let place = if image.end <= LOW_LIMIT {
                "below 2 GiB (the executable is not position-independent) outside the heap's room"
            } else {
                "below the image"
            };
            return Err(ProcessError::Other(format!(
                "no free gap of {min_size:#x} bytes {place} (image at {:#x}) within ±2 GiB of {:#x}..{:#x}",
                image.start, near.start, near.end
            )));
        }
        let mut threads = StoppedThreads::stop_one(self.pid)?;
        let tid = threads.injection_thread().ok_or(ProcessError::Exited)?;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
        for candidate in candidates {
            let (hint, length) = (candidate.start, candidate.end - candidate.start);
            let result = match crate::fault::syscall(crate::fault::Step::Mmap) {
                Some(injected) => injected,
                None => self.injector.syscall(
                    &mut threads,
                    &self.mem,
                    tid,
                    libc::SYS_mmap,
                    [hint, length, prot_flags(prot), flags, u64::MAX, 0],
                )?,
            };
            if result == -(libc::EEXIST as i64) {
                // Someone mapped it since we read the maps: try the next gap.
                continue;
            }
            if (-4095..0).contains(&result) {
                return Err(ProcessError::Other(format!(
                    "mmap of {length:#x} bytes at {hint:#x} in pid {} failed: {}",
                    self.pid,
                    errno_text(-result as i32)
                )));
            }
            let addr = result as u64;
            if addr != hint {
                // A kernel without MAP_FIXED_NOREPLACE takes it as a hint: undo and refuse.
                let _ = self.injector.syscall(
                    &mut threads,
                    &self.mem,
                    tid,
                    libc::SYS_munmap,
                    [addr, length, 0, 0, 0, 0],
                );
                return Err(ProcessError::Other(format!(
                    "mmap at {hint:#x} returned {addr:#x} (kernel without MAP_FIXED_NOREPLACE?)"
                )));
            }
            threads.resume();
            return Ok(addr..addr + length);
        }
        Err(ProcessError::Other(format!(
            "every gap below the executable within reach of {:#x}..{:#x} was taken",
            near.start, near.end
        )))
    }

    /// Reads what is available; false at end of stream.
    fn read_output(&mut self, index: usize) -> bool {
        let mut buf = [0u8; 8192];
        loop {
            let output = &mut self.outputs[index];
            // SAFETY: reads into a local buffer of the given length.
            let n = unsafe {
                libc::read(
                    output.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n > 0 {
                self.last_output = std::time::Instant::now();
                // The new image may have written this after the last look (an exec between
                // that look and this read): a look now, between the read and the lines, puts
                // the exec event before every line of the new image. A line of the old image
                // read in the same chunk then follows it.
                if !self.detached {
                    self.check_exec();
                }
                let output = &mut self.outputs[index];
                output.partial.extend_from_slice(&buf[..n as usize]);
                self.send_lines(index);
                continue;
            }
            if n == 0 {
                return false;
            }
            return match errno() {
                libc::EAGAIN | libc::EINTR => true,
                // EIO: the pseudo-terminal's last slave descriptor closed.
                _ => false,
            };
        }
    }

    fn send_lines(&mut self, index: usize) {
        let output = &mut self.outputs[index];
        let mut start = 0;
        while let Some(newline) = output.partial[start..].iter().position(|&b| b == b'\n') {
            let mut line = &output.partial[start..start + newline];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let _ = self.events.send(ProcessEvent::Output {
                stream: output.stream,
                text: String::from_utf8_lossy(line).into_owned(),
            });
            start += newline + 1;
        }
        output.partial.drain(..start);
        if output.partial.len() > MAX_LINE {
            let text = String::from_utf8_lossy(&output.partial).into_owned();
            output.partial.clear();
            let _ = self.events.send(ProcessEvent::Output {
                stream: output.stream,
                text,
            });
        }
    }

    fn flush_partial(&self, output: &mut Output) {
        if !output.partial.is_empty() {
            let text = String::from_utf8_lossy(&output.partial).into_owned();
            output.partial.clear();
            let _ = self.events.send(ProcessEvent::Output {
                stream: output.stream,
                text,
            });
        }
    }

    fn flush_partials(&mut self) {
        let mut outputs = std::mem::take(&mut self.outputs);
        for output in &mut outputs {
            self.flush_partial(output);
        }
        self.outputs = outputs;
    }

    /// Reaps the launched program (our own child only, never -1: the server runs compilers),
    /// within a bound: its leader cannot be reaped before every traced thread is, so
    /// lingering ones are reaped meanwhile, and a program that still cannot be reaped (it
    /// should not happen) is logged rather than waited for forever. `None`: no status known.
    fn reap_leader(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + 2 * REAP_WITHIN;
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status into our local.
            let reaped =
                unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL | libc::WNOHANG) };
            if reaped == self.pid {
                return Some(status);
            }
            if reaped < 0 && errno() != libc::EINTR {
                // ECHILD: a ptrace wait reaped it already (perhaps in a swap that failed).
                return reaped_leader_status(self.pid).or(self.leader_status);
            }
            if let Some(status) = release_lingering() {
                self.leader_status = Some(status);
            }
            if std::time::Instant::now() > deadline {
                tracing::error!(pid = self.pid, "the program could not be reaped in time");
                return reaped_leader_status(self.pid).or(self.leader_status);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The program is gone (or being killed): drain its output, reap it, report.
    fn report_exit(&mut self) {
        // Traced threads left over from a timed-out stop are zombies only this thread can
        // reap; the leader cannot be reaped before them.
        if let Some(status) = release_lingering_within(REAP_WITHIN) {
            self.leader_status = Some(status);
        }
        let event = if self.launched {
            let status = self.reap_leader();
            match status {
                Some(s) if libc::WIFEXITED(s) => ProcessEvent::Exited {
                    code: Some(libc::WEXITSTATUS(s)),
                    signal: None,
                },
                Some(s) if libc::WIFSIGNALED(s) => ProcessEvent::Exited {
                    code: None,
                    signal: Some(libc::WTERMSIG(s)),
                },
                _ => ProcessEvent::Exited {
                    code: None,
                    signal: None,
                },
            }
        } else {
            ProcessEvent::Exited {
                code: None,
                signal: None,
            }
        };
        for index in 0..self.outputs.len() {
            self.read_output(index);
        }
        self.flush_partials();
        let _ = self.events.send(event);
    }
}
