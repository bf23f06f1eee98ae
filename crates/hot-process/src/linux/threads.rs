//! Stopping every thread of the target with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`, waiting for
//! the stops on the program's own thread ids only, single-stepping, and detaching again with
//! any signal that arrived meanwhile delivered.
//!
//! A signal that reaches a thread before its interrupt stop puts it in a signal-delivery
//! stop, which is a ptrace stop like any other: the thread is held right there, and the
//! detach passes the signal back as `data`, so the kernel delivers it with the siginfo it
//! made (SIGCHLD's `si_pid`, SIGIO's `si_fd`); sending it again from here would replace
//! that siginfo with one naming the tracer. A thread that has to be single-stepped gives
//! up its stop; its signal is put back with `PTRACE_SETSIGINFO` into the signal-delivery
//! stop that ends its last step.
//!
//! Every stop counts: any ptrace stop of a thread (the clone-event stop that reports a new
//! thread, a signal-delivery stop) clears its pending `PTRACE_INTERRUPT`, so a thread is held
//! in whatever stop it reports first and is never resumed to wait for the interrupt (it would
//! run on and never stop). A thread that cannot stop in time (a `vfork` waiting for its
//! child, an uninterruptible sleep) cannot be detached either — `PTRACE_DETACH` needs a
//! stopped tracee — so it is kept on this owner thread's list of lingering tracees and let go
//! the moment it stops ([`release_lingering`]); the swap fails with an error naming it.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::fault::{self, Step};
use crate::ProcessError;

/// How long a thread may take to reach its stop (a thread in an uninterruptible sleep, or in
/// a `vfork` waiting for the child, does not stop until that ends): long enough for a busy
/// machine, short enough that the owner thread never hangs.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of every seize: system-call stops (only ever asked for while a thread runs an
/// injected system call) report `SIGTRAP | 0x80`, told apart from a real SIGTRAP.
const SEIZE_OPTIONS: usize = libc::PTRACE_O_TRACESYSGOOD as usize;

/// The last OS error as an `i32` errno.
pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub(crate) fn errno_text(code: i32) -> String {
    std::io::Error::from_raw_os_error(code).to_string()
}

/// Raw `ptrace` with errno. The request numbers and argument meanings are those of
/// `ptrace(2)`; `addr`/`data` are passed through unchanged.
fn ptrace(request: libc::c_uint, tid: i32, addr: usize, data: usize) -> Result<libc::c_long, i32> {
    // SAFETY: ptrace only reads or writes through `data` for the GETREGS/SETREGS/GETSIGINFO/
    // SETSIGINFO/GETEVENTMSG requests, where callers pass a pointer to a live value of the right type.
    let result = unsafe { libc::ptrace(request, tid, addr, data) };
    if result == -1 {
        let code = errno();
        if code != 0 {
            return Err(code);
        }
    }
    Ok(result)
}

pub(crate) fn get_regs(tid: i32) -> Result<libc::user_regs_struct, ProcessError> {
    // SAFETY: user_regs_struct is plain old data; zero is a valid value.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs as *mut _ as usize).map_err(|code| {
        ProcessError::Other(format!(
            "PTRACE_GETREGS on thread {tid}: {}",
            errno_text(code)
        ))
    })?;
    Ok(regs)
}

pub(crate) fn set_regs(tid: i32, regs: &libc::user_regs_struct) -> Result<(), ProcessError> {
    ptrace(libc::PTRACE_SETREGS, tid, 0, regs as *const _ as usize).map_err(|code| {
        ProcessError::Other(format!(
            "PTRACE_SETREGS on thread {tid}: {}",
            errno_text(code)
        ))
    })?;
    Ok(())
}

fn get_siginfo(tid: i32) -> Option<libc::siginfo_t> {
    // SAFETY: siginfo_t is plain old data; zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    ptrace(
        libc::PTRACE_GETSIGINFO,
        tid,
        0,
        &mut info as *mut _ as usize,
    )
    .ok()?;
    Some(info)
}

/// Replaces the siginfo of the signal-delivery stop `tid` is in.
fn set_siginfo(tid: i32, info: &libc::siginfo_t) -> Result<(), i32> {
    ptrace(
        libc::PTRACE_SETSIGINFO,
        tid,
        0,
        info as *const libc::siginfo_t as usize,
    )
    .map(drop)
}

fn event_message(tid: i32) -> Option<u64> {
    let mut message: libc::c_ulong = 0;
    ptrace(
        libc::PTRACE_GETEVENTMSG,
        tid,
        0,
        &mut message as *mut _ as usize,
    )
    .ok()?;
    Some(message)
}

/// `/proc/PID/task` as a list of thread ids.
pub(crate) fn list_tasks(pid: i32, into: &mut Vec<i32>) -> Result<(), ProcessError> {
    into.clear();
    let path = format!("/proc/{pid}/task");
    let dir = std::fs::read_dir(&path).map_err(|err| super::memory::proc_error(&path, err))?;
    for entry in dir.flatten() {
        if let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            into.push(tid);
        }
    }
    Ok(())
}

/// `TracerPid` and state letter from `/proc/PID/task/TID/status`, or None if the thread is gone.
pub(crate) fn tracer_and_state(pid: i32, tid: i32) -> Option<(i32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let mut tracer = 0;
    let mut state = '?';
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("TracerPid:") {
            tracer = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("State:") {
            state = rest.trim().chars().next().unwrap_or('?');
        }
    }
    Some((tracer, state))
}

thread_local! {
    /// Threads this owner thread still traces but could not detach because they were not in
    /// a stop (`(pid, tid)`): a thread blocked in a `vfork` or an uninterruptible sleep when a
    /// stop timed out, one exiting at the detach, or a thread one of those started since (it
    /// was traced from birth). Only the tracer thread can wait for and detach them, so the
    /// list is per thread.
    static LINGERING: RefCell<Vec<(i32, i32)>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    /// The wait status of a leader a ptrace wait reaped (`(pid, status)`), whatever the swap
    /// it happened in returned: the owner thread reports the exit with it, as the leader can
    /// no longer be waited for.
    static LEADER_STATUS: std::cell::Cell<Option<(i32, i32)>> = const { std::cell::Cell::new(None) };
}

fn record_leader_status(pid: i32, status: i32) {
    LEADER_STATUS.with(|s| s.set(Some((pid, status))));
}

/// The wait status of `pid` if a ptrace wait on this thread reaped it.
pub(crate) fn reaped_leader_status(pid: i32) -> Option<i32> {
    LEADER_STATUS
        .with(|s| s.get())
        .and_then(|(p, status)| (p == pid).then_some(status))
}

/// Whether this owner thread still traces threads it could not detach yet.
pub(crate) fn has_lingering() -> bool {
    LINGERING.with(|l| !l.borrow().is_empty())
}

/// Detaches every lingering tracee that has reached a stop (giving back a signal it stopped
/// for) and reaps those that exited; the others stay on the list. Returns the leader's wait
/// status if this reaped it.
pub(crate) fn release_lingering() -> Option<i32> {
    let mut list = LINGERING.with(|l| std::mem::take(&mut *l.borrow_mut()));
    if list.is_empty() {
        return None;
    }
    let mut leader_status = None;
    let mut kept = Vec::new();
    while let Some((pid, tid)) = list.pop() {
        let mut children = Vec::new();
        if !release_one(pid, tid, &mut leader_status, &mut children) {
            kept.push((pid, tid));
        }
        // Traced from birth: each reports its own stop and is let go the same way.
        list.extend(children.into_iter().map(|child| (pid, child)));
    }
    if !kept.is_empty() {
        tracing::debug!(threads = ?kept, "threads still traced until they stop");
    }
    LINGERING.with(|l| l.borrow_mut().extend(kept));
    leader_status
}

/// [`release_lingering`] until nothing lingers or `within` has passed: a killed program's
/// traced threads are zombies only their tracer can reap, and its leader cannot be reaped
/// before them.
pub(crate) fn release_lingering_within(within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    let mut leader_status = None;
    let mut idle_rounds = 0;
    loop {
        if let Some(status) = release_lingering() {
            leader_status = Some(status);
        }
        if !has_lingering() || Instant::now() > deadline {
            return leader_status;
        }
        back_off(&mut idle_rounds);
    }
}

/// Takes `tid` off the lingering list: a new stop holds it again.
fn adopt_lingering(tid: i32) {
    LINGERING.with(|l| l.borrow_mut().retain(|&(_, t)| t != tid));
}

fn add_lingering(pid: i32, tid: i32) {
    LINGERING.with(|l| {
        let mut list = l.borrow_mut();
        if !list.iter().any(|&(_, t)| t == tid) {
            list.push((pid, tid));
        }
    });
}

/// One non-blocking attempt to let go of a traced thread that was not known to be in a stop:
/// true once it is no longer ours (detached, or exited and reaped). Clone children it reported
/// are added to `children`.
fn release_one(
    pid: i32,
    tid: i32,
    leader_status: &mut Option<i32>,
    children: &mut Vec<i32>,
) -> bool {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into our local.
        let result = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if result == 0 {
            return false;
        }
        if result < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            // ECHILD: gone, or no longer traced by us.
            return true;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            if tid == pid {
                *leader_status = Some(status);
                record_leader_status(pid, status);
            }
            return true;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let event = status >> 16;
        let mut data = 0;
        if event == libc::PTRACE_EVENT_CLONE {
            if let Some(child) = event_message(tid) {
                children.push(child as i32);
            }
        }
        if event == 0 && libc::WSTOPSIG(status) != libc::SIGTRAP | 0x80 {
            // A signal-delivery stop: the detach delivers the signal, unless it is the trap
            // that ends a single step of ours. (A system-call stop has no signal to give.)
            let signal = libc::WSTOPSIG(status);
            let ours = signal == libc::SIGTRAP
                && get_siginfo(tid)
                    .is_some_and(|info| info.si_code > 0 && info.si_code != libc::SI_KERNEL);
            if !ours {
                data = signal as usize;
            }
        }
        if ptrace(libc::PTRACE_DETACH, tid, 0, data).is_ok() {
            return true;
        }
        // ESRCH although it stopped: killed meanwhile; its exit shows up in the next wait.
    }
}

/// Where the kernel holds `tid` (`/proc/PID/task/TID/wchan`), for messages.
fn wchan(pid: i32, tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan"))
        .ok()
        .filter(|w| !w.is_empty() && w != "0")
        .unwrap_or_else(|| "?".into())
}

/// A signal that reached a thread while we held it: delivered by the detach when the thread
/// is in a signal-delivery stop then, otherwise sent again after it.
struct PendingSignal {
    tid: i32,
    info: libc::siginfo_t,
}

/// Which ptrace stop a held thread is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopKind {
    /// `PTRACE_EVENT_STOP`: an interrupt or group stop (or a new thread's first stop).
    Interrupt,
    /// A signal-delivery stop (or the trap that ends a single step).
    Signal,
    /// The clone event stop: the thread is inside `clone`, its result not set yet.
    Clone,
    /// Another event stop (exec, exit, fork, ...).
    OtherEvent,
    /// A system-call entry or exit stop (while the thread runs an injected system call).
    Syscall,
}

/// How an injected call ended ([`StoppedThreads::run_call`]).
pub(crate) enum CallEnd {
    /// Held at the system-call stop that shows the callee returned.
    Returned,
    /// Held at a synchronous fault or trap of the callee, never to be delivered.
    Faulted(libc::siginfo_t),
    /// Still running in the callee after the total limit.
    StillRunning,
}

/// What one wait on a thread produced.
enum Waited {
    /// Stopped in a state we can hold it in: interrupt stop, group stop, or (`event` 0) the
    /// trap that ends a single step.
    Stopped { event: i32 },
    /// Held in a signal-delivery stop; the signal is recorded and goes out with the detach.
    Signal,
    /// A system-call entry or exit stop (`PTRACE_SYSCALL`).
    Syscall,
    /// The thread is gone.
    Gone,
    /// Nothing yet.
    NotYet,
}

/// Every thread of one process, stopped by us. Dropping it detaches them all.
pub(crate) struct StoppedThreads {
    pid: i32,
    pub(crate) tids: Vec<i32>,
    /// Signals that arrived while the threads were being stopped or stepped, in order.
    signals: Vec<PendingSignal>,
    /// Threads whose current stop is a signal-delivery stop: detaching them with a signal
    /// number delivers that signal with the stop's siginfo.
    signal_stops: Vec<i32>,
    /// Threads in a stop we have seen reported (and not resumed from since): a detach of
    /// one of them cannot meet another stop first.
    held: Vec<i32>,
    /// The stop each held thread is in.
    stops: Vec<(i32, StopKind)>,
    /// How many signals arrived while the threads were held (for the apply report).
    pub(crate) signals_held: usize,
    /// The leader's exit status if a wait reaped it (a launched program dying mid-swap).
    pub(crate) leader_status: Option<i32>,
    detached: bool,
}

impl StoppedThreads {
    fn new(pid: i32) -> StoppedThreads {
        StoppedThreads {
            pid,
            tids: Vec::new(),
            signals: Vec::new(),
            signal_stops: Vec::new(),
            held: Vec::new(),
            stops: Vec::new(),
            signals_held: 0,
            leader_status: None,
            detached: false,
        }
    }

    /// Seizes and stops every thread, following clones, until the set of tasks is stable.
    pub(crate) fn stop_all(pid: i32) -> Result<StoppedThreads, ProcessError> {
        // Threads a timed-out stop left traced: those that have stopped since go now; the
        // others are seized again below (EPERM, ours) and waited for with the rest.
        let leader_status = release_lingering();
        let mut stopped = StoppedThreads::new(pid);
        stopped.leader_status = leader_status;
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut listed = Vec::with_capacity(16);
        let mut pending: Vec<i32> = Vec::with_capacity(16);
        loop {
            list_tasks(pid, &mut listed)?;
            pending.clear();
            for &tid in &listed {
                if stopped.tids.contains(&tid) {
                    continue;
                }
                match stopped.seize(tid, SEIZE_OPTIONS | libc::PTRACE_O_TRACECLONE as usize)? {
                    SeizeOutcome::Seized | SeizeOutcome::AlreadyOurs => pending.push(tid),
                    SeizeOutcome::Gone => {}
                }
            }
            if pending.is_empty() {
                break;
            }
            for &tid in &pending {
                stopped.interrupt(tid)?;
            }
            stopped.wait_all_stopped(&mut pending, deadline)?;
        }
        if stopped.tids.is_empty() {
            return Err(ProcessError::Exited);
        }
        Ok(stopped)
    }

    /// Seizes and stops one thread (the leader if it can), for a system call injection.
    pub(crate) fn stop_one(pid: i32) -> Result<StoppedThreads, ProcessError> {
        let leader_status = release_lingering();
        let mut stopped = StoppedThreads::new(pid);
        stopped.leader_status = leader_status;
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut listed = Vec::new();
        list_tasks(pid, &mut listed)?;
        // The leader first: other threads come and go.
        listed.sort_by_key(|&tid| tid != pid);
        for tid in listed {
            // A leader that called pthread_exit is a zombie that cannot run code.
            if matches!(tracer_and_state(pid, tid), Some((_, 'Z')) | None) {
                continue;
            }
            if let SeizeOutcome::Seized = stopped.seize(tid, SEIZE_OPTIONS)? {
                stopped.interrupt(tid)?;
                let mut pending = vec![tid];
                stopped.wait_all_stopped(&mut pending, deadline)?;
                // One held for a signal that arrived first is kept held (its signal goes
                // out with its own siginfo at the detach), and the next thread is tried: a
                // thread that runs an injected call cannot give the signal back that way.
                if stopped.stop_kind(tid) == Some(StopKind::Interrupt) {
                    return Ok(stopped);
                }
            }
        }
        match stopped.tids.is_empty() {
            true => Err(ProcessError::Exited),
            false => Ok(stopped),
        }
    }

    /// The thread of [`StoppedThreads::stop_one`] a system call is injected into: the one in
    /// an interrupt stop, else one held for a signal.
    pub(crate) fn injection_thread(&self) -> Option<i32> {
        let interrupted = self
            .tids
            .iter()
            .copied()
            .find(|&tid| self.stop_kind(tid) == Some(StopKind::Interrupt));
        // Never one inside clone (its result is not set yet) or an exec or exit.
        interrupted.or_else(|| {
            self.tids
                .iter()
                .copied()
                .find(|&tid| self.stop_kind(tid) == Some(StopKind::Signal))
        })
    }

    /// `PTRACE_INTERRUPT`: ESRCH means it died between the seize and now (its exit shows up
    /// in the wait); anything else fails the stop, and the drop lets go of what was seized.
    fn interrupt(&mut self, tid: i32) -> Result<(), ProcessError> {
        match fault::errno(Step::Interrupt).and_then(|()| ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0))
        {
            Ok(_) | Err(libc::ESRCH) => Ok(()),
            Err(code) => Err(ProcessError::Other(format!(
                "PTRACE_INTERRUPT of thread {tid} of pid {}: {}; nothing was written",
                self.pid,
                errno_text(code)
            ))),
        }
    }

    fn seize(&mut self, tid: i32, options: usize) -> Result<SeizeOutcome, ProcessError> {
        match fault::denied(Step::Seize).and_then(|()| ptrace(libc::PTRACE_SEIZE, tid, 0, options))
        {
            Ok(_) => {
                self.tids.push(tid);
                Ok(SeizeOutcome::Seized)
            }
            Err(libc::ESRCH) => Ok(SeizeOutcome::Gone),
            Err(libc::EPERM) => {
                // EPERM means: exiting, already traced (by us: a clone child we have not
                // seen the event for yet; or by a debugger), or not allowed at all.
                match tracer_and_state(self.pid, tid) {
                    None | Some((_, 'Z' | 'X')) => Ok(SeizeOutcome::Gone),
                    // TracerPid names the tracing *thread*: this owner thread.
                    // SAFETY: plain system call.
                    Some((tracer, _)) if tracer == unsafe { libc::gettid() } => {
                        adopt_lingering(tid);
                        if !self.tids.contains(&tid) {
                            self.tids.push(tid);
                        }
                        Ok(SeizeOutcome::AlreadyOurs)
                    }
                    Some((tracer, _)) if tracer != 0 => Err(ProcessError::PermissionDenied(format!(
                        "thread {tid} of pid {} is already traced by pid {tracer} (a debugger?); detach it first",
                        self.pid
                    ))),
                    Some(_) => Err(super::permission::denied(
                        self.pid,
                        &format!("cannot trace thread {tid} of pid {}", self.pid),
                    )),
                }
            }
            Err(code) => Err(ProcessError::Other(format!(
                "PTRACE_SEIZE of thread {tid} of pid {}: {}",
                self.pid,
                errno_text(code)
            ))),
        }
    }

    /// Waits until every tid in `pending` is in its interrupt stop, in a signal-delivery stop
    /// (held there; the signal goes out with the detach), or gone; clone children join
    /// `pending`.
    fn wait_all_stopped(
        &mut self,
        pending: &mut Vec<i32>,
        deadline: Instant,
    ) -> Result<(), ProcessError> {
        let mut idle_rounds = 0u32;
        while !pending.is_empty() {
            let mut progressed = false;
            let mut index = 0;
            while index < pending.len() {
                let tid = pending[index];
                match self.wait_once(tid, false) {
                    Waited::NotYet => index += 1,
                    Waited::Gone => {
                        self.forget(tid);
                        pending.swap_remove(index);
                        progressed = true;
                    }
                    // Held there (never met here: no system-call stops are asked for).
                    Waited::Signal | Waited::Syscall => {
                        // Held right here. A signal stop reached after the interrupt cleared
                        // it; one reached before leaves it pending, so a later step first
                        // reports that interrupt stop, and the detach discards it.
                        pending.swap_remove(index);
                        progressed = true;
                    }
                    Waited::Stopped { event, .. } => {
                        progressed = true;
                        // Any event stop holds the thread as well as the interrupt stop, and
                        // must: reaching it cleared the pending interrupt, so a thread
                        // resumed from here would run on and never stop.
                        pending.swap_remove(index);
                        if event == libc::PTRACE_EVENT_CLONE {
                            // The new thread is traced from birth (PTRACE_O_TRACECLONE) and
                            // reports its own stop (PTRACE_EVENT_STOP), perhaps before this
                            // one; it is waited for by its tid like the others.
                            if let Some(child) = event_message(tid) {
                                let child = child as i32;
                                if !self.tids.contains(&child) {
                                    self.tids.push(child);
                                }
                                if !pending.contains(&child) {
                                    pending.push(child);
                                }
                            }
                        }
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
            if progressed {
                idle_rounds = 0;
                continue;
            }
            if Instant::now() > deadline {
                let held: Vec<String> = pending
                    .iter()
                    .map(|&tid| format!("{tid} (in {})", wchan(self.pid, tid)))
                    .collect();
                return Err(ProcessError::Other(format!(
                    "cannot stop every thread of pid {}: thread {} did not stop within {:?} \
                     (a vfork waiting for its child, or an uninterruptible sleep); nothing \
                     was written, every other thread runs on, and that one is let go as soon \
                     as it stops — save again later",
                    self.pid,
                    held.join(", "),
                    STOP_TIMEOUT
                )));
            }
            back_off(&mut idle_rounds);
        }
        Ok(())
    }

    /// One non-blocking wait on `tid`. A signal-delivery stop is recorded; the thread is
    /// held in it ([`Waited::Signal`]), or, while `stepping`, the step's own SIGTRAP ends the
    /// step and any other signal is held for later and the step goes on.
    fn wait_once(&mut self, tid: i32, stepping: bool) -> Waited {
        let mut status = 0;
        // SAFETY: waitpid writes the status into our local.
        let result = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if result == 0 {
            return Waited::NotYet;
        }
        if result < 0 {
            return match errno() {
                libc::EINTR => Waited::NotYet,
                _ => Waited::Gone,
            };
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            if tid == self.pid {
                self.leader_status = Some(status);
                record_leader_status(tid, status);
            }
            return Waited::Gone;
        }
        if !libc::WIFSTOPPED(status) {
            return Waited::NotYet;
        }
        if !self.held.contains(&tid) {
            self.held.push(tid);
        }
        let signal = libc::WSTOPSIG(status);
        let event = status >> 16;
        if event != 0 {
            self.set_stop(
                tid,
                match event {
                    libc::PTRACE_EVENT_STOP => StopKind::Interrupt,
                    libc::PTRACE_EVENT_CLONE => StopKind::Clone,
                    _ => StopKind::OtherEvent,
                },
            );
            return Waited::Stopped { event };
        }
        if signal == libc::SIGTRAP | 0x80 {
            self.set_stop(tid, StopKind::Syscall);
            return Waited::Syscall;
        }
        // A signal-delivery stop.
        self.set_stop(tid, StopKind::Signal);
        let info = get_siginfo(tid);
        self.signal_stops.push(tid);
        if stepping && signal == libc::SIGTRAP {
            // TRAP_TRACE / TRAP_BRKPT from the kernel are the end of our step.
            if info.is_some_and(|info| info.si_code > 0 && info.si_code != libc::SI_KERNEL) {
                return Waited::Stopped { event: 0 };
            }
        }
        let info = info.unwrap_or_else(|| {
            // No siginfo (should not happen in a signal-delivery stop): the signal number
            // alone still gets it delivered.
            // SAFETY: siginfo_t is plain old data; zero is a valid value.
            let mut bare: libc::siginfo_t = unsafe { std::mem::zeroed() };
            bare.si_signo = signal;
            bare
        });
        self.signals.push(PendingSignal { tid, info });
        self.signals_held += 1;
        if !stepping {
            return Waited::Signal;
        }
        // While stepping: hold this one too and step on (signal suppressed for now).
        if self.restart(libc::PTRACE_SINGLESTEP, tid).is_err() {
            return Waited::Gone;
        }
        Waited::NotYet
    }

    /// Resumes `tid` from its stop with `request` and no signal; it leaves any
    /// signal-delivery stop it was in.
    fn restart(&mut self, request: libc::c_uint, tid: i32) -> Result<(), i32> {
        self.signal_stops.retain(|&t| t != tid);
        self.held.retain(|&t| t != tid);
        self.stops.retain(|&(t, _)| t != tid);
        ptrace(request, tid, 0, 0).map(drop)
    }

    fn forget(&mut self, tid: i32) {
        self.tids.retain(|&t| t != tid);
        self.held.retain(|&t| t != tid);
        self.signal_stops.retain(|&t| t != tid);
        self.signals.retain(|s| s.tid != tid);
        self.stops.retain(|&(t, _)| t != tid);
    }

    fn set_stop(&mut self, tid: i32, kind: StopKind) {
        self.stops.retain(|&(t, _)| t != tid);
        self.stops.push((tid, kind));
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// The stop `tid` is held in, if it is held.
    pub(crate) fn stop_kind(&self, tid: i32) -> Option<StopKind> {
        self.stops.iter().find(|&&(t, _)| t == tid).map(|&(_, k)| k)
    }

    /// Lets go of a thread that runs an injected call (one that outlasted its limit): it
    /// runs on in the callee and returns through the trampoline page by itself. It is
    /// interrupted and handed to the owner thread's lingering list, which detaches it at its
    /// next stop; the signals held for it are sent again.
    pub(crate) fn let_go_running(&mut self, tid: i32) {
        let signals: Vec<PendingSignal> = self
            .signals
            .iter()
            .filter(|s| s.tid == tid)
            .map(|s| PendingSignal { tid, info: s.info })
            .collect();
        let held = self.held.contains(&tid);
        self.tids.retain(|&t| t != tid);
        self.held.retain(|&t| t != tid);
        self.signal_stops.retain(|&t| t != tid);
        self.stops.retain(|&(t, _)| t != tid);
        self.signals.retain(|s| s.tid != tid);
        // Held in a stop it can be detached from at once; else stopped first.
        if !(held && ptrace(libc::PTRACE_DETACH, tid, 0, 0).is_ok()) {
            let _ = ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0);
            add_lingering(self.pid, tid);
        }
        for pending in signals {
            redeliver(self.pid, pending.tid, &pending.info);
        }
    }

    /// One non-blocking `waitpid` on `tid`: `(result, status)` as waitpid gives them (0: no
    /// news; EINTR counts as none), `Err(Exited)` once it can no longer be waited for.
    fn wait_status(&mut self, tid: i32) -> Result<(i32, i32), ProcessError> {
        let mut status = 0;
        // SAFETY: waitpid writes the status into our local.
        let result = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if result < 0 && errno() != libc::EINTR {
            self.forget(tid);
            return Err(ProcessError::Exited);
        }
        Ok((result.max(0), status))
    }

    /// Waits on `tid` (`wait_once`, `stepping` as there) until `on` returns a value for what
    /// it reported, failing after `deadline` with "thread TID `late`".
    fn poll_stops<T>(
        &mut self,
        tid: i32,
        stepping: bool,
        deadline: Instant,
        late: &str,
        mut on: impl FnMut(&mut Self, Waited) -> Result<Option<T>, ProcessError>,
    ) -> Result<T, ProcessError> {
        let mut idle_rounds = 0;
        loop {
            match self.wait_once(tid, stepping) {
                Waited::NotYet => {
                    if Instant::now() > deadline {
                        return Err(ProcessError::Other(format!("thread {tid} {late}")));
                    }
                    back_off(&mut idle_rounds);
                }
                waited => {
                    if let Some(value) = on(self, waited)? {
                        return Ok(value);
                    }
                }
            }
        }
    }

    /// Single-steps `tid` once; returns false if the thread is gone. A signal the thread was
    /// held for is kept, to be put into the stop that ends the step; a synchronous fault is
    /// dropped instead (the faulting instruction raises it again when it runs).
    pub(crate) fn single_step(&mut self, tid: i32) -> Result<bool, ProcessError> {
        self.signals
            .retain(|pending| pending.tid != tid || !is_synchronous_fault(&pending.info));
        if let Err(code) =
            fault::errno(Step::SingleStep).and_then(|()| self.restart(libc::PTRACE_SINGLESTEP, tid))
        {
            return Err(ProcessError::Other(format!(
                "PTRACE_SINGLESTEP of thread {tid}: {}",
                errno_text(code)
            )));
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let late = format!(
            "did not finish its single step within {STOP_TIMEOUT:?} (a blocking system call?)"
        );
        self.poll_stops(tid, true, deadline, &late, |this, waited| match waited {
            // A signal stop is not produced while stepping (other signals are held and the
            // step goes on).
            Waited::Stopped { event: 0, .. } | Waited::Signal => Ok(Some(true)),
            Waited::Gone => {
                this.forget(tid);
                Ok(Some(false))
            }
            Waited::Stopped { event, .. } => {
                if event == libc::PTRACE_EVENT_CLONE {
                    // Stepping over clone: the new thread stops on its own, hold it too.
                    if let Some(child) = event_message(tid) {
                        this.adopt_clone_child(child as i32, deadline)?;
                    }
                }
                // An event stop ended the step early; step again from here.
                let _ = this.restart(libc::PTRACE_SINGLESTEP, tid);
                Ok(None)
            }
            Waited::Syscall | Waited::NotYet => {
                let _ = this.restart(libc::PTRACE_SINGLESTEP, tid);
                Ok(None)
            }
        })
    }

    /// Resumes `tid` with `PTRACE_SYSCALL` until its next system-call stop (entry or exit)
    /// and returns its registers there. Signals that arrive meanwhile are held for the
    /// detach, as during a stop; an event stop (an interrupt left pending by an earlier
    /// signal stop) is resumed from. `Err(Exited)` if the thread died.
    pub(crate) fn next_syscall_stop(
        &mut self,
        tid: i32,
        deadline: Instant,
    ) -> Result<libc::user_regs_struct, ProcessError> {
        let resume = |this: &mut StoppedThreads| {
            let resumed = fault::errno(Step::SyscallStop)
                .and_then(|()| this.restart(libc::PTRACE_SYSCALL, tid));
            resumed.map_err(|code| {
                ProcessError::Other(format!(
                    "PTRACE_SYSCALL of thread {tid}: {}",
                    errno_text(code)
                ))
            })
        };
        resume(self)?;
        let late = format!("did not reach its injected system call within {STOP_TIMEOUT:?}");
        self.poll_stops(tid, false, deadline, &late, |this, waited| match waited {
            Waited::Syscall => get_regs(tid).map(Some),
            Waited::Gone => {
                this.forget(tid);
                Err(ProcessError::Exited)
            }
            // Recorded and held for the detach; the injected call goes on.
            Waited::Signal | Waited::Stopped { .. } | Waited::NotYet => resume(this).map(|()| None),
        })
    }

    /// Puts `tid`, held in a system-call stop, back at `regs` and holds it in an interrupt
    /// stop before it runs one instruction of its own. The order makes every moment safe for
    /// a tracer that dies: the interrupt first (while the thread still has the registers
    /// that lead it through its signal frame), then the registers, then the resume, which
    /// meets the interrupt on the way out of the kernel — where the kernel also restarts a
    /// system call `regs` were interrupted in, exactly as if nothing had run in between.
    pub(crate) fn park(
        &mut self,
        tid: i32,
        regs: &libc::user_regs_struct,
        way: &'static str,
    ) -> Result<(), ProcessError> {
        let failed = |what: &str, code: i32| {
            ProcessError::Other(format!("{what} of thread {tid}: {}", errno_text(code)))
        };
        ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0).map_err(|c| failed("PTRACE_INTERRUPT", c))?;
        fault::stage(way, "interrupted");
        set_regs(tid, regs)?;
        fault::stage(way, "registers put back");
        self.restart(libc::PTRACE_CONT, tid)
            .map_err(|c| failed("PTRACE_CONT", c))?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        let late =
            format!("did not stop again within {STOP_TIMEOUT:?} after an injected system call");
        let parked = self.poll_stops(tid, false, deadline, &late, |this, waited| match waited {
            Waited::Signal => Ok(Some(false)),
            Waited::Stopped { .. } => Ok(Some(true)),
            Waited::Gone => {
                this.forget(tid);
                Err(ProcessError::Exited)
            }
            Waited::Syscall | Waited::NotYet => this
                .restart(libc::PTRACE_CONT, tid)
                .map(|()| None)
                .map_err(|c| failed("PTRACE_CONT", c)),
        })?;
        match parked {
            // In an interrupt stop: a signal it holds goes back into a delivery stop.
            true => self.back_into_signal_stop(tid, deadline),
            false => Ok(()),
        }
    }

    /// A thread parked in an interrupt stop that holds a signal (one it was stopped for
    /// before the injection, or one that arrived during it) is put back into a
    /// signal-delivery stop of that signal, with the kernel's siginfo, so the detach delivers
    /// it exactly (a signal sent again by hot-lsp would name hot-lsp as its sender). The
    /// signal is raised again with `tgkill` while the thread is traced and caught at its
    /// delivery stop, where `PTRACE_SETSIGINFO` puts the original siginfo back.
    fn back_into_signal_stop(&mut self, tid: i32, deadline: Instant) -> Result<(), ProcessError> {
        // A synchronous fault is never raised again: the faulting instruction runs again
        // and raises it anew (see `redeliver`).
        let Some(pending) = self
            .signals
            .iter()
            .find(|s| s.tid == tid && !is_synchronous_fault(&s.info))
        else {
            return Ok(());
        };
        let (signal, info) = (pending.info.si_signo, pending.info);
        // SAFETY: plain system call to a thread of the traced program.
        if unsafe { libc::syscall(libc::SYS_tgkill, self.pid, tid, signal) } != 0 {
            // It is still recorded: the detach sends it again.
            return Ok(());
        }
        self.restart(libc::PTRACE_CONT, tid).map_err(|code| {
            ProcessError::Other(format!("PTRACE_CONT of thread {tid}: {}", errno_text(code)))
        })?;
        let mut idle_rounds = 0;
        loop {
            let (result, status) = self.wait_status(tid)?;
            if result > 0 {
                if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                    self.forget(tid);
                    return Err(ProcessError::Exited);
                }
                let event = status >> 16;
                if libc::WIFSTOPPED(status) && event == 0 && libc::WSTOPSIG(status) == signal {
                    self.set_stop(tid, StopKind::Signal);
                    if !self.held.contains(&tid) {
                        self.held.push(tid);
                    }
                    if set_siginfo(tid, &info).is_ok() {
                        self.signal_stops.push(tid);
                    }
                    return Ok(());
                }
                if libc::WIFSTOPPED(status) && event == 0 {
                    // Another signal came first: held like any other, then on to ours.
                    if let Some(other) = get_siginfo(tid) {
                        self.signals.push(PendingSignal { tid, info: other });
                        self.signals_held += 1;
                    }
                }
                self.restart(libc::PTRACE_CONT, tid).map_err(|code| {
                    ProcessError::Other(format!(
                        "PTRACE_CONT of thread {tid}: {}",
                        errno_text(code)
                    ))
                })?;
                continue;
            }
            if Instant::now() > deadline {
                return Err(ProcessError::Other(format!(
                    "thread {tid} did not stop for its held signal {signal} within {STOP_TIMEOUT:?}"
                )));
            }
            back_off(&mut idle_rounds);
        }
    }

    /// Whether `tid` is held in a signal-delivery stop (its signal goes out with the detach).
    pub(crate) fn in_signal_stop(&self, tid: i32) -> bool {
        self.signal_stops.contains(&tid)
    }

    /// Lets `tid` alone run an injected call (the others stay stopped), under
    /// `PTRACE_SYSCALL`, until a system-call stop `returned` recognises (the trampoline's
    /// `getpid` after the callee's return; every other one goes to `on_syscall`) or a
    /// synchronous fault or trap of the callee
    /// (never delivered). Signals that arrive meanwhile are held and go out with the detach,
    /// as during a stop. The call is never interrupted: at `release` every other thread is
    /// let go (the callee may wait for one of them), and at `give_up` it is still running.
    /// `Err(Exited)` when it died.
    pub(crate) fn run_call(
        &mut self,
        tid: i32,
        returned: impl Fn(&libc::user_regs_struct) -> bool,
        on_syscall: &mut dyn FnMut(&libc::user_regs_struct),
        release: Instant,
        give_up: Instant,
    ) -> Result<CallEnd, ProcessError> {
        let resume = |this: &mut StoppedThreads, signal: usize| {
            this.signal_stops.retain(|&t| t != tid);
            this.held.retain(|&t| t != tid);
            this.stops.retain(|&(t, _)| t != tid);
            ptrace(libc::PTRACE_SYSCALL, tid, 0, signal)
                .map(drop)
                .map_err(|code| match code {
                    libc::ESRCH => ProcessError::Exited,
                    _ => ProcessError::Other(format!(
                        "PTRACE_SYSCALL of thread {tid}: {}",
                        errno_text(code)
                    )),
                })
        };
        let hold = |this: &mut StoppedThreads, kind: StopKind| {
            this.set_stop(tid, kind);
            if !this.held.contains(&tid) {
                this.held.push(tid);
            }
        };
        resume(self, 0)?;
        let mut released = false;
        let mut idle_rounds = 0;
        loop {
            let (result, status) = self.wait_status(tid)?;
            if result <= 0 {
                let now = Instant::now();
                if now > give_up {
                    return Ok(CallEnd::StillRunning);
                }
                if now > release && !released {
                    released = true;
                    tracing::info!(
                        tid,
                        "an injected call is taking long: letting the other threads run"
                    );
                    self.release_others(tid);
                }
                back_off(&mut idle_rounds);
                continue;
            }
            idle_rounds = 0;
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                if tid == self.pid {
                    self.leader_status = Some(status);
                    record_leader_status(tid, status);
                }
                self.forget(tid);
                return Err(ProcessError::Exited);
            }
            if !libc::WIFSTOPPED(status) {
                continue;
            }
            let event = status >> 16;
            let number = libc::WSTOPSIG(status);
            if event == 0 && number == libc::SIGTRAP | 0x80 {
                let regs = get_regs(tid)?;
                if returned(&regs) {
                    hold(self, StopKind::Syscall);
                    return Ok(CallEnd::Returned);
                }
                // One of the callee's own system calls.
                on_syscall(&regs);
                fault::stage("call", "a system call of the callee");
                resume(self, 0)?;
                continue;
            }
            if event == libc::PTRACE_EVENT_CLONE {
                if let Some(child) = event_message(tid) {
                    // A child that does not stop in time stays on the list and is let go
                    // when it does; the call goes on either way.
                    if let Err(e) =
                        self.adopt_clone_child(child as i32, Instant::now() + STOP_TIMEOUT)
                    {
                        tracing::warn!(tid, child, "a thread started by an injected call: {e}");
                    }
                    if released {
                        // The others run: so does the callee's new thread.
                        self.release_others(tid);
                    }
                }
            }
            let mut signal = 0;
            if event == 0 {
                if let Some(info) = get_siginfo(tid) {
                    let trap = number == libc::SIGTRAP && info.si_code > 0;
                    if trap || is_synchronous_fault(&info) {
                        hold(self, StopKind::Signal);
                        return Ok(CallEnd::Faulted(info));
                    }
                    if released {
                        // The program runs again: deliver it now, in the callee's context,
                        // as the kernel would to any thread.
                        signal = number as usize;
                    } else {
                        self.signals.push(PendingSignal { tid, info });
                        self.signals_held += 1;
                    }
                }
            }
            resume(self, signal)?;
        }
    }

    /// Detaches every thread but `keep` (see [`StoppedThreads::resume`]).
    fn release_others(&mut self, keep: i32) {
        let others: Vec<i32> = self.tids.iter().copied().filter(|&t| t != keep).collect();
        self.detach_list(&others);
        self.tids.retain(|&t| t == keep);
    }

    fn adopt_clone_child(&mut self, child: i32, deadline: Instant) -> Result<(), ProcessError> {
        if !self.tids.contains(&child) {
            self.tids.push(child);
        }
        let mut pending = vec![child];
        self.wait_all_stopped(&mut pending, deadline)
    }

    /// Detaches every thread. A thread in a signal-delivery stop is detached with the first
    /// signal held for it, which the kernel then delivers with its own siginfo (put back with
    /// `PTRACE_SETSIGINFO` if a single step replaced the stop); the remaining signals (a
    /// second one for the same thread, or one for a thread that ended in an interrupt stop)
    /// are sent again after the detach.
    pub(crate) fn resume(&mut self) {
        if self.detached {
            return;
        }
        self.detached = true;
        let all = self.tids.clone();
        self.detach_list(&all);
    }

    /// Detaches the threads `tids` (with the signals held for them).
    fn detach_list(&mut self, tids: &[i32]) {
        for &tid in tids {
            let mut data = 0;
            let mut delivered = None;
            if self.signal_stops.contains(&tid) {
                if let Some(at) = self.signals.iter().position(|s| s.tid == tid) {
                    let info = self.signals[at].info;
                    if set_siginfo(tid, &info).is_ok() {
                        data = info.si_signo as usize;
                        delivered = Some(self.signals.remove(at));
                    }
                }
            }
            let detached =
                fault::errno(Step::Detach).and_then(|()| ptrace(libc::PTRACE_DETACH, tid, 0, data));
            // A thread whose stop we saw can only be let go from it: try once more (a
            // failure then means it was killed meanwhile).
            let detached = detached.or_else(|code| match self.held.contains(&tid) {
                true => ptrace(libc::PTRACE_DETACH, tid, 0, data),
                false => Err(code),
            });
            if detached.is_err() {
                // The signal it was to get with the detach is sent again after it.
                self.signals.extend(delivered);
                // Not in a stop: it never reached one (a timed-out stop), or it is exiting
                // (a SIGKILL of the whole process). Reap it if it is a traced zombie, detach
                // it if it stopped just now, else keep it to let go as soon as it stops.
                let mut children = Vec::new();
                if !release_one(self.pid, tid, &mut self.leader_status, &mut children) {
                    // Make sure it stops (a thread seized but never interrupted, when the
                    // stop failed half-way, would run on traced for good); the owner thread
                    // lets it go then.
                    let _ = ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0);
                    add_lingering(self.pid, tid);
                }
                for child in children {
                    add_lingering(self.pid, child);
                }
            }
        }
        if has_lingering() {
            if let Some(status) = release_lingering() {
                self.leader_status = Some(status);
            }
        }
        let (mine, others): (Vec<PendingSignal>, Vec<PendingSignal>) =
            std::mem::take(&mut self.signals)
                .into_iter()
                .partition(|s| tids.contains(&s.tid));
        self.signals = others;
        for pending in mine {
            redeliver(self.pid, pending.tid, &pending.info);
        }
    }
}

impl Drop for StoppedThreads {
    fn drop(&mut self) {
        self.resume();
    }
}

enum SeizeOutcome {
    Seized,
    AlreadyOurs,
    Gone,
}

/// Waits between polls: yield the CPU first (the target threads need it to reach their
/// stops, and a stop usually takes microseconds), then sleep a little longer each time.
fn back_off(idle_rounds: &mut u32) {
    *idle_rounds += 1;
    if *idle_rounds < 64 {
        std::thread::yield_now();
    } else if *idle_rounds < 256 {
        std::thread::sleep(Duration::from_micros(20));
    } else {
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A fault the kernel raised for the instruction the thread is at (not one sent by `kill`).
fn is_synchronous_fault(info: &libc::siginfo_t) -> bool {
    matches!(
        info.si_signo,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
    ) && info.si_code > 0
        && info.si_code != libc::SI_KERNEL
}

/// Sends a recorded signal to the same thread again (only for signals the detach could not
/// deliver, see [`StoppedThreads::resume`]). `rt_tgsigqueueinfo` keeps its details
/// but the kernel accepts only queued (negative `si_code`) ones from another process;
/// others go by `tgkill`. Synchronous faults are not resent: the faulting instruction runs
/// again and raises them anew.
fn redeliver(pid: i32, tid: i32, info: &libc::siginfo_t) {
    let signal = info.si_signo;
    if is_synchronous_fault(info) {
        return;
    }
    if info.si_code < 0 && info.si_code != libc::SI_TKILL {
        // SAFETY: the kernel reads a siginfo_t from the pointer.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                pid,
                tid,
                signal,
                info as *const libc::siginfo_t,
            )
        };
        if sent == 0 {
            return;
        }
    }
    // SAFETY: plain system call.
    let sent = unsafe { libc::tgkill(pid, tid, signal) };
    if sent != 0 {
        tracing::warn!(
            pid,
            tid,
            signal,
            "cannot re-deliver a signal held during a swap: {}",
            errno_text(errno())
        );
    }
}
