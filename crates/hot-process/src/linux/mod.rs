//! The Linux x86-64 backend: ptrace and `/proc`, all ptrace calls on one owner thread per
//! debuggee.

mod apply;
mod call;
mod frame;
mod held;
mod inject;
mod launch;
mod memory;
mod owner;
mod permission;
mod stacks;
mod threads;
mod trampoline;

use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use crate::{ApplyReport, LaunchSpec, Mapping, ProcessError, ProcessEvent, Protection, WritePlan};
use memory::ProcMem;
use owner::{pidfd_open, Owner, Request, Wake};

pub(crate) struct Debuggee {
    pid: i32,
    launched: bool,
    mem: Arc<ProcMem>,
    requests: Sender<Request>,
    wake: Arc<Wake>,
    owner: Option<JoinHandle<()>>,
}

impl Debuggee {
    pub(crate) fn launch(
        spec: &LaunchSpec,
        events: Sender<ProcessEvent>,
    ) -> Result<Debuggee, ProcessError> {
        let wake = Arc::new(Wake::new()?);
        let (requests, request_rx) = crossbeam_channel::unbounded();
        let (started_tx, started_rx) = crossbeam_channel::bounded(1);
        let spec = spec.clone();
        let owner_wake = wake.clone();
        let name = spec
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let owner = std::thread::Builder::new()
            .name(format!("hot-process {name}"))
            .spawn(move || {
                let started = launch::spawn(&spec).and_then(|launched| {
                    let pid = launched.pid;
                    let setup = (|| {
                        let pidfd = pidfd_open(pid).map_err(|code| {
                            ProcessError::Other(format!(
                                "pidfd_open({pid}): {}",
                                threads::errno_text(code)
                            ))
                        })?;
                        let mem = Arc::new(ProcMem::open(pid)?);
                        Ok((pidfd, mem))
                    })();
                    match setup {
                        Ok((pidfd, mem)) => Ok((launched, pidfd, mem)),
                        Err(err) => {
                            // SAFETY: our own unreaped child.
                            unsafe {
                                libc::kill(pid, libc::SIGKILL);
                                libc::waitpid(pid, std::ptr::null_mut(), 0);
                            }
                            Err(err)
                        }
                    }
                });
                match started {
                    Ok((launched, pidfd, mem)) => {
                        let _ = started_tx.send(Ok((launched.pid, mem.clone())));
                        Owner::new(
                            launched.pid,
                            true,
                            pidfd,
                            mem,
                            events,
                            request_rx,
                            owner_wake,
                            launched.outputs,
                        )
                        .run();
                    }
                    Err(err) => {
                        let _ = started_tx.send(Err(err));
                    }
                }
            })
            .map_err(|err| ProcessError::Other(format!("cannot start the owner thread: {err}")))?;
        let started = started_rx
            .recv()
            .map_err(|_| ProcessError::Other("the owner thread died while launching".into()));
        match started.and_then(|result| result) {
            Ok((pid, mem)) => Ok(Debuggee {
                pid,
                launched: true,
                mem,
                requests,
                wake,
                owner: Some(owner),
            }),
            Err(err) => {
                let _ = owner.join();
                Err(err)
            }
        }
    }

    pub(crate) fn attach(pid: i32, events: Sender<ProcessEvent>) -> Result<Debuggee, ProcessError> {
        if pid <= 0 {
            return Err(ProcessError::Other(format!("invalid pid {pid}")));
        }
        if pid == std::process::id() as i32 {
            return Err(ProcessError::PermissionDenied(
                "cannot attach to hot-lsp itself".into(),
            ));
        }
        let pidfd = pidfd_open(pid).map_err(|code| match code {
            libc::ESRCH => ProcessError::Other(format!("no process with pid {pid}")),
            libc::EPERM | libc::EACCES => permission::denied(
                pid,
                &format!("cannot attach to pid {pid}: {}", threads::errno_text(code)),
            ),
            _ => ProcessError::Other(format!("pidfd_open({pid}): {}", threads::errno_text(code))),
        })?;
        let mem = Arc::new(ProcMem::open(pid).map_err(|err| match err {
            ProcessError::Exited => ProcessError::Other(format!("no process with pid {pid}")),
            other => other,
        })?);
        let wake = Arc::new(Wake::new()?);
        let (requests, request_rx) = crossbeam_channel::unbounded();
        let (checked_tx, checked_rx) = crossbeam_channel::bounded(1);
        let owner_wake = wake.clone();
        let owner_mem = mem.clone();
        let owner = std::thread::Builder::new()
            .name(format!("hot-process {pid}"))
            .spawn(move || {
                // Check now that we may trace it (another user's process, a debugger already
                // attached, Yama), rather than at the first swap.
                let checked = StoppedThreads::stop_one(pid).map(|mut threads| threads.resume());
                let ok = checked.is_ok();
                let _ = checked_tx.send(checked);
                if ok {
                    Owner::new(
                        pid,
                        false,
                        pidfd,
                        owner_mem,
                        events,
                        request_rx,
                        owner_wake,
                        Vec::new(),
                    )
                    .run();
                }
            })
            .map_err(|err| ProcessError::Other(format!("cannot start the owner thread: {err}")))?;
        let checked = checked_rx
            .recv()
            .map_err(|_| ProcessError::Other("the owner thread died while attaching".into()))
            .and_then(|r| r);
        match checked {
            Ok(()) => Ok(Debuggee {
                pid,
                launched: false,
                mem,
                requests,
                wake,
                owner: Some(owner),
            }),
            Err(err) => {
                let _ = owner.join();
                Err(err)
            }
        }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    pub(crate) fn launched(&self) -> bool {
        self.launched
    }

    pub(crate) fn mappings(&self) -> Result<Vec<Mapping>, ProcessError> {
        memory::read_mappings(self.pid)
    }

    pub(crate) fn read_memory(&self, addr: u64, len: usize) -> Result<Vec<u8>, ProcessError> {
        self.mem.read_vec(addr, len)
    }

    pub(crate) fn is_trampoline(&self, mapping: &crate::Mapping) -> bool {
        trampoline::is_trampoline(&self.mem, mapping)
    }

    pub(crate) fn debugger(&self) -> Option<crate::Debugger> {
        held::debugger_of(self.pid)
    }

    pub(crate) fn write_memory(
        &self,
        addr: u64,
        bytes: &[u8],
        what: &str,
    ) -> Result<(), ProcessError> {
        self.mem
            .write_all(addr, bytes)
            .map_err(|e| ProcessError::Protection {
                addr,
                what: what.to_string(),
                message: format!("cannot write: {e}"),
            })
    }

    pub(crate) fn auxv(&self) -> Result<Vec<(u64, u64)>, ProcessError> {
        memory::read_auxv(self.pid)
    }

    pub(crate) fn image_range(&self) -> Result<Range<u64>, ProcessError> {
        let maps = memory::read_mappings(self.pid)?;
        memory::image_range(self.pid, &maps)
    }

    fn request<T>(
        &self,
        make: impl FnOnce(Sender<Result<T, ProcessError>>) -> Request,
    ) -> Result<T, ProcessError> {
        let (reply, reply_rx) = crossbeam_channel::bounded(1);
        self.requests
            .send(make(reply))
            .map_err(|_| ProcessError::Exited)?;
        self.wake.notify();
        reply_rx.recv().unwrap_or(Err(ProcessError::Exited))
    }

    pub(crate) fn map_arena(
        &self,
        near: Range<u64>,
        (size, min_size): (u64, u64),
        prot: Protection,
    ) -> Result<Range<u64>, ProcessError> {
        self.request(|reply| Request::MapArena {
            near,
            size,
            min_size,
            prot,
            reply,
        })
    }

    pub(crate) fn apply(&self, plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        self.request(|reply| Request::Apply {
            plan: plan.clone(),
            mode: apply::Mode::Write,
            reply,
        })
    }

    pub(crate) fn check(&self, plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        self.request(|reply| Request::Apply {
            plan: plan.clone(),
            mode: apply::Mode::Check,
            reply,
        })
    }

    pub(crate) fn call_function(
        &self,
        function: u64,
        args: &[u64],
        limits: crate::CallLimits,
        what: &str,
        blocked_only: bool,
    ) -> Result<u64, ProcessError> {
        self.request(|reply| Request::Call {
            function,
            args: args.to_vec(),
            limits,
            what: what.to_string(),
            blocked_only,
            reply,
        })
    }

    fn finish(&mut self, detach: bool) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        let (reply, reply_rx) = crossbeam_channel::bounded(1);
        let request = if detach {
            Request::Detach { reply }
        } else {
            Request::Stop { reply }
        };
        if self.requests.send(request).is_ok() {
            self.wake.notify();
            let _ = reply_rx.recv();
        }
        if detach && self.launched {
            // The owner thread stays, forwarding output and reaping the program: its exit
            // would kill the program (PR_SET_PDEATHSIG).
            drop(owner);
        } else {
            let _ = owner.join();
        }
    }

    pub(crate) fn stop(mut self) {
        self.finish(false);
    }

    pub(crate) fn detach(mut self) {
        self.finish(true);
    }
}

impl Drop for Debuggee {
    fn drop(&mut self) {
        // Dropping kills a launched program and detaches from an attached one.
        let detach = !self.launched;
        self.finish(detach);
    }
}

use threads::StoppedThreads;
