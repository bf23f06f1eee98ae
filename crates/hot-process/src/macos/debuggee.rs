//! The macOS [`crate::Debuggee`] backend: `posix_spawn` (flags and command from
//! `task_launch.rs`), the task port (`task.rs`), output and exit events, memory, arenas and
//! the apply (`task_apply.rs`). Apple targets only, and **never compiled**: these machines
//! have no Apple standard library. Everything here that needs no Apple call lives in
//! `task_launch.rs` and `task_apply.rs`, which are tested on Linux.
//!
//! Events: one thread per output stream (the pseudo-terminal's master for stdout, a pipe for
//! stderr) sends each line as it comes (a partial line only at the end of the stream, not
//! after 50 ms as on Linux), and a thread waits for the exit: `waitpid` for a launched
//! program (our child), a kqueue `EVFILT_PROC`/`NOTE_EXIT` for an attached one (no code).
//! Not on macOS yet: `exec` events, injected calls ([`Debuggee::call_function`]), the
//! checks without writes ([`Debuggee::check`]), a debugger's presence.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;

use crossbeam_channel::Sender;

use super::task::MachTask;
use crate::task_apply::{apply_plan, Task};
use crate::task_launch::{arena_address, exit_event, spawn_command, spawn_error, spawn_flags};
use crate::{
    ApplyReport, LaunchSpec, Mapping, ProcessError, ProcessEvent, Protection, Stream, WritePlan,
};

/// `task_dyld_info` (`mach/task_info.h`): where dyld's `dyld_all_image_infos` is.
#[repr(C)]
#[derive(Default)]
struct TaskDyldInfo {
    all_image_info_addr: u64,
    all_image_info_size: u64,
    all_image_info_format: i32,
}
const TASK_DYLD_INFO: u32 = 17;

extern "C" {
    fn task_info(
        task: mach2::port::mach_port_t,
        flavor: u32,
        info: *mut i32,
        count: *mut u32,
    ) -> i32;
    // `spawn.h` (macOS 10.15+); declared here in case the libc crate lacks it.
    fn posix_spawn_file_actions_addchdir_np(
        actions: *mut libc::posix_spawn_file_actions_t,
        path: *const libc::c_char,
    ) -> libc::c_int;
}

/// How far an arena may be from the image: rel32 reach on x86-64, which keeps arm64's
/// `adrp` (±4 GiB) in reach too; arm64's `b` beyond ±128 MiB goes through veneers.
const ARENA_REACH: u64 = (1 << 31) - (1 << 20);

pub(crate) struct Debuggee {
    pid: i32,
    launched: bool,
    task: Mutex<MachTask>,
    exe: String,
}

fn os_error(what: &str) -> ProcessError {
    ProcessError::Other(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// Send each line of `fd` as an output event until the stream ends.
fn forward(fd: OwnedFd, stream: Stream, events: Sender<ProcessEvent>) {
    std::thread::spawn(move || {
        let reader = BufReader::new(File::from(fd));
        for line in reader.split(b'\n') {
            let Ok(mut line) = line else { break };
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            if events.send(ProcessEvent::Output { stream, text }).is_err() {
                break;
            }
        }
    });
}

/// Report the exit of our child `pid` from `waitpid`.
fn watch_child(pid: i32, events: Sender<ProcessEvent>) {
    std::thread::spawn(move || loop {
        let mut status = 0;
        // SAFETY: waits for our own child only; `status` is a local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            if let Some(event) = exit_event(status) {
                let _ = events.send(event);
                return;
            }
        } else if r == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            let _ = events.send(ProcessEvent::Exited {
                code: None,
                signal: None,
            });
            return;
        }
    });
}

/// Report the exit of a process that is not our child (attached): kqueue `NOTE_EXIT`.
fn watch_attached(pid: i32, events: Sender<ProcessEvent>) -> Result<(), ProcessError> {
    // SAFETY: creates a kqueue descriptor, ours.
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return Err(os_error("kqueue"));
    }
    // SAFETY: `kq` is fresh and ours.
    let kq = unsafe { OwnedFd::from_raw_fd(kq) };
    let change = libc::kevent {
        ident: pid as libc::uintptr_t,
        filter: libc::EVFILT_PROC,
        flags: libc::EV_ADD | libc::EV_ONESHOT,
        fflags: libc::NOTE_EXIT,
        data: 0,
        udata: std::ptr::null_mut(),
    };
    use std::os::fd::AsRawFd;
    // SAFETY: one change, no events out.
    let r = unsafe {
        libc::kevent(
            kq.as_raw_fd(),
            &change,
            1,
            std::ptr::null_mut(),
            0,
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(os_error(&format!("kevent(NOTE_EXIT) for pid {pid}")));
    }
    std::thread::spawn(move || {
        // SAFETY: plain-old-data out structure.
        let mut event: libc::kevent = unsafe { std::mem::zeroed() };
        // SAFETY: waits for one event into a local.
        let n = unsafe {
            libc::kevent(
                kq.as_raw_fd(),
                std::ptr::null(),
                0,
                &mut event,
                1,
                std::ptr::null(),
            )
        };
        let _ = n;
        let _ = events.send(ProcessEvent::Exited {
            code: None,
            signal: None,
        });
    });
    Ok(())
}

/// The path of the executable `pid` runs (`proc_pidpath`).
fn exe_path(pid: i32) -> Result<String, ProcessError> {
    let mut buf = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
    // SAFETY: writes at most `buf.len()` bytes into `buf`.
    let n =
        unsafe { libc::proc_pidpath(pid, buf.as_mut_ptr() as *mut libc::c_void, buf.len() as u32) };
    if n <= 0 {
        return Err(ProcessError::Exited);
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The file backing the region at `addr` (`proc_regionfilename`), empty for anonymous memory.
fn region_file(pid: i32, addr: u64) -> String {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: writes at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::proc_regionfilename(
            pid,
            addr,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len() as u32,
        )
    };
    if n <= 0 {
        return String::new();
    }
    buf.truncate(n as usize);
    String::from_utf8_lossy(&buf).into_owned()
}

impl Debuggee {
    pub(crate) fn launch(
        spec: &LaunchSpec,
        events: Sender<ProcessEvent>,
    ) -> Result<Debuggee, ProcessError> {
        let command = spawn_command(spec, std::env::vars_os())?;
        // stdout on a pseudo-terminal (C stdio line-buffers it), stderr on a pipe, stdin
        // from /dev/null.
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: out-pointers to locals; no name, termios or window size.
        if unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        } != 0
        {
            return Err(os_error("openpty"));
        }
        // SAFETY: fresh descriptors, ours.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut pipe = [-1; 2];
        // SAFETY: writes two descriptors into the local array.
        if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
            return Err(os_error("pipe"));
        }
        // SAFETY: fresh descriptors, ours.
        let (err_read, err_write) =
            unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        let null =
            File::open("/dev/null").map_err(|e| ProcessError::Other(format!("/dev/null: {e}")))?;
        use std::os::fd::AsRawFd;
        let pid = {
            // SAFETY: the spawn attributes and file actions are initialised, used and
            // destroyed here; every pointer passed lives until posix_spawn returns.
            unsafe {
                let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
                let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
                libc::posix_spawnattr_init(&mut attr);
                libc::posix_spawn_file_actions_init(&mut actions);
                libc::posix_spawnattr_setflags(&mut attr, spawn_flags(spec.disable_aslr));
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::posix_spawnattr_setsigmask(&mut attr, &empty);
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::posix_spawnattr_setsigdefault(&mut attr, &all);
                libc::posix_spawn_file_actions_adddup2(&mut actions, null.as_raw_fd(), 0);
                libc::posix_spawn_file_actions_adddup2(&mut actions, slave.as_raw_fd(), 1);
                libc::posix_spawn_file_actions_adddup2(&mut actions, err_write.as_raw_fd(), 2);
                if let Some(cwd) = &command.cwd {
                    posix_spawn_file_actions_addchdir_np(&mut actions, cwd.as_ptr());
                }
                let mut argv: Vec<*mut libc::c_char> =
                    command.argv.iter().map(|a| a.as_ptr() as *mut _).collect();
                argv.push(std::ptr::null_mut());
                let mut envp: Vec<*mut libc::c_char> =
                    command.env.iter().map(|a| a.as_ptr() as *mut _).collect();
                envp.push(std::ptr::null_mut());
                let mut pid: libc::pid_t = 0;
                let r = libc::posix_spawn(
                    &mut pid,
                    command.program.as_ptr(),
                    &actions,
                    &attr,
                    argv.as_ptr(),
                    envp.as_ptr(),
                );
                libc::posix_spawn_file_actions_destroy(&mut actions);
                libc::posix_spawnattr_destroy(&mut attr);
                if r != 0 {
                    return Err(spawn_error(spec, r));
                }
                pid
            }
        };
        drop((slave, err_write, null));
        // The program was started suspended: take its task port before it runs, and kill a
        // program hot-lsp may not control.
        let task = match MachTask::open(pid) {
            Ok(task) => task,
            Err(e) => {
                // SAFETY: our own child, killed and reaped.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
                return Err(e);
            }
        };
        forward(master, Stream::Stdout, events.clone());
        forward(err_read, Stream::Stderr, events.clone());
        watch_child(pid, events);
        let mut task = task;
        // POSIX_SPAWN_START_SUSPENDED suspends the task once: let it run.
        task.resume()?;
        let exe = exe_path(pid).unwrap_or_else(|_| spec.path.display().to_string());
        Ok(Debuggee {
            pid,
            launched: true,
            task: Mutex::new(task),
            exe,
        })
    }

    pub(crate) fn attach(pid: i32, events: Sender<ProcessEvent>) -> Result<Debuggee, ProcessError> {
        let task = MachTask::open(pid)?;
        watch_attached(pid, events)?;
        Ok(Debuggee {
            pid,
            launched: false,
            exe: exe_path(pid)?,
            task: Mutex::new(task),
        })
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    pub(crate) fn launched(&self) -> bool {
        self.launched
    }

    fn task(&self) -> std::sync::MutexGuard<'_, MachTask> {
        // A panic while holding the port left no Mach state half-changed that a later call
        // could not cope with.
        self.task.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task's VM regions as [`Mapping`]s, with the files behind them.
    pub(crate) fn mappings(&self) -> Result<Vec<Mapping>, ProcessError> {
        let regions = self.task().regions()?;
        Ok(regions
            .into_iter()
            .map(|r| Mapping {
                path: region_file(self.pid, r.range.start),
                readable: r.protection & 1 != 0,
                writable: r.protection & 2 != 0,
                executable: r.protection & 4 != 0,
                range: r.range,
                offset: 0,
                device: (0, 0),
                inode: 0,
            })
            .collect())
    }

    /// Where the dyld shared cache is in the program: `task_info(TASK_DYLD_INFO)` gives
    /// `dyld_all_image_infos`, whose first bytes `task_launch::shared_cache_location` reads.
    /// The session then reads the cache's header and image list
    /// (`hot_object::macho_exports::parse_dyld_cache`), each image's load commands and
    /// export trie (`export_trie_location`, `parse_export_trie`) with
    /// [`Debuggee::read_memory`], and gives the linker one library per image
    /// (`exports_image`, bias = the image's address plus the slide).
    pub(crate) fn shared_cache(
        &self,
    ) -> Result<crate::task_launch::SharedCacheLocation, ProcessError> {
        let mut info = TaskDyldInfo::default();
        // In natural_t units, as the flavor's count.
        let mut count = (std::mem::size_of::<TaskDyldInfo>() / 4) as u32;
        let port = self.task().port();
        // SAFETY: out-pointers to a local of the size `count` says.
        let kr = unsafe {
            task_info(
                port,
                TASK_DYLD_INFO,
                &mut info as *mut TaskDyldInfo as *mut i32,
                &mut count,
            )
        };
        if kr != 0 {
            return Err(ProcessError::Other(format!(
                "task_info(TASK_DYLD_INFO) of pid {} failed: kern_return {kr}",
                self.pid
            )));
        }
        let bytes = self.read_memory(
            info.all_image_info_addr,
            crate::task_launch::ALL_IMAGE_INFOS_PREFIX,
        )?;
        crate::task_launch::shared_cache_location(&bytes)
            .map_err(|e| ProcessError::Other(format!("the shared cache of pid {}: {e}", self.pid)))
    }

    pub(crate) fn read_memory(&self, addr: u64, len: usize) -> Result<Vec<u8>, ProcessError> {
        self.task().read(addr, len)
    }

    pub(crate) fn is_trampoline(&self, _mapping: &Mapping) -> bool {
        // No trampoline page on macOS: nothing is injected.
        false
    }

    pub(crate) fn debugger(&self) -> Option<crate::Debugger> {
        None
    }

    pub(crate) fn write_memory(
        &self,
        addr: u64,
        bytes: &[u8],
        what: &str,
    ) -> Result<(), ProcessError> {
        crate::task_apply::write_pages(&mut *self.task(), addr, bytes, what)
    }

    pub(crate) fn auxv(&self) -> Result<Vec<(u64, u64)>, ProcessError> {
        Err(ProcessError::Other(
            "a macOS process has no auxiliary vector: read the image from its Mach header".into(),
        ))
    }

    /// The span of the regions backed by the executable's file.
    pub(crate) fn image_range(&self) -> Result<Range<u64>, ProcessError> {
        let mine: Vec<Range<u64>> = self
            .mappings()?
            .into_iter()
            .filter(|m| m.path == self.exe)
            .map(|m| m.range)
            .collect();
        let start = mine.iter().map(|r| r.start).min();
        let end = mine.iter().map(|r| r.end).max();
        match (start, end) {
            (Some(s), Some(e)) => Ok(s..e),
            _ => Err(ProcessError::Other(format!(
                "no region of {} is mapped",
                self.exe
            ))),
        }
    }

    pub(crate) fn map_arena(
        &self,
        near: Range<u64>,
        (size, min_size): (u64, u64),
        prot: Protection,
    ) -> Result<Range<u64>, ProcessError> {
        let mut task = self.task();
        let page = task.page_size();
        let mapped: Vec<Range<u64>> = task.regions()?.into_iter().map(|r| r.range).collect();
        let mut want = size;
        loop {
            if let Some(at) = arena_address(&mapped, near.clone(), want, page, ARENA_REACH) {
                let len = want.next_multiple_of(page);
                if task.allocate_at(at, len) {
                    let protection = match prot {
                        Protection::ReadExecute => 1 | 4,
                        Protection::ReadWrite => 1 | 2,
                    };
                    task.protect(at..at + len, protection)?;
                    return Ok(at..at + len);
                }
            }
            if want <= min_size {
                return Err(ProcessError::Other(format!(
                    "no free {size:#x} bytes within 2 GiB of {:#x}..{:#x}",
                    near.start, near.end
                )));
            }
            want = (want / 2).max(min_size);
        }
    }

    pub(crate) fn apply(&self, plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        apply_plan(&mut *self.task(), plan)
    }

    pub(crate) fn check(&self, _plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        Err(ProcessError::Other(
            "checking a swap without writing it is not implemented on macOS yet".into(),
        ))
    }

    pub(crate) fn call_function(
        &self,
        _function: u64,
        _args: &[u64],
        _limits: crate::CallLimits,
        what: &str,
        _blocked_only: bool,
    ) -> Result<u64, ProcessError> {
        Err(ProcessError::Other(format!(
            "calling {what} in the program is not implemented on macOS yet"
        )))
    }

    pub(crate) fn stop(self) {
        if self.launched {
            // SAFETY: our own child; the exit thread reaps it and reports the exit.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            }
        }
    }

    pub(crate) fn detach(self) {
        // The task port is released on drop; the program runs on.
    }
}
