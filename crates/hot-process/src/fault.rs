//! Fault injection for tests: with the `fault-injection` feature (never enabled in the
//! shipped binary), [`arm`] makes the Nth step of what the process backend does next fail
//! as the system would fail it: an arena write, a slot copy, a seize, an interrupt, a single
//! step, the injected `mmap`, an entry write, an in-place data write, a detach. Tests count
//! up N until a swap completes with no fault hit, and check after each that the program runs
//! the complete old or the complete new code and is left running untraced.
//!
//! [`arm_action`] instead runs a test's closure at every step of one kind and lets the step
//! go on: something the test needs to happen at a known moment of a swap (a child's exit
//! signal arriving while the threads are held) happens then, every time, not by chance.
//!
//! Without the feature every hook is a constant `false` the compiler removes. With it, the
//! state is global to the process, so a test binary using it must run one such test at a
//! time.

/// One kind of step a swap is made of; each hook site names one.
// `SingleStep` is the ptrace request's name.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// A `prepare` write into an arena (while the program runs, or retried once stopped).
    ArenaWrite,
    /// Reading the source of a slot copy (an IFUNC's resolved address).
    SlotCopy,
    /// `PTRACE_SEIZE` of one thread (fails as a denied trace, `EPERM`).
    Seize,
    /// `PTRACE_INTERRUPT` of one thread.
    Interrupt,
    /// `PTRACE_SINGLESTEP` (out of a protected range, or over an injected `syscall` where
    /// the framed injection cannot be used).
    SingleStep,
    /// `PTRACE_SYSCALL` to the entry or exit stop of an injected system call.
    SyscallStop,
    /// The injected `mmap` of an arena (fails as with `ENOMEM`).
    Mmap,
    /// A commit write of an entry jump.
    EntryWrite,
    /// A commit write of a read-only object updated in place.
    DataWrite,
    /// `PTRACE_DETACH` of one thread.
    Detach,
}

impl Step {
    pub const ALL: [Step; 10] = [
        Step::ArenaWrite,
        Step::SlotCopy,
        Step::Seize,
        Step::Interrupt,
        Step::SingleStep,
        Step::SyscallStop,
        Step::Mmap,
        Step::EntryWrite,
        Step::DataWrite,
        Step::Detach,
    ];
}

#[cfg(feature = "fault-injection")]
mod armed {
    use super::Step;
    use std::sync::Mutex;

    /// What happened since [`arm`]: how many steps of each kind were reached, and which
    /// one (if any) was made to fail.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Report {
        pub seen: Vec<(Step, u64)>,
        pub fired: Option<Step>,
    }

    impl Report {
        pub fn seen(&self, step: Step) -> u64 {
            self.seen
                .iter()
                .find(|(s, _)| *s == step)
                .map_or(0, |(_, n)| *n)
        }

        pub fn total(&self) -> u64 {
            self.seen.iter().map(|(_, n)| n).sum()
        }
    }

    struct State {
        armed: bool,
        /// 1-based number of the step to fail; 0 fails none (counting only).
        target: u64,
        /// Count only steps of this kind towards `target`.
        kind: Option<Step>,
        count: u64,
        seen: [u64; Step::ALL.len()],
        fired: Option<Step>,
        /// Instead of failing the step, SIGKILL this process there and let the step go on.
        kill: Option<i32>,
        /// Run before every step of this kind; the step then goes on.
        action: Option<(Step, Box<dyn FnMut() + Send>)>,
        /// Run at every named point inside an injection ([`stage`]): the way back, the point.
        stages: Option<Box<dyn FnMut(&'static str, &'static str) + Send>>,
    }

    static STATE: Mutex<State> = Mutex::new(State {
        armed: false,
        target: 0,
        kind: None,
        count: 0,
        seen: [0; Step::ALL.len()],
        fired: None,
        kill: None,
        action: None,
        stages: None,
    });

    fn state() -> std::sync::MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count steps from now on and fail the `nth` (1-based); 0 only counts.
    pub fn arm(nth: u64) {
        arm_with(nth, None);
    }

    /// Count steps from now on and fail the `nth` (1-based) of kind `step` only.
    pub fn arm_kind(step: Step, nth: u64) {
        arm_with(nth, None);
        state().kind = Some(step);
    }

    /// Count steps from now on and, at the `nth`, SIGKILL process `pid` (the step itself
    /// goes on and meets a program that is dying): the program dies at a known step.
    pub fn arm_kill(nth: u64, pid: i32) {
        arm_with(nth, Some(pid));
    }

    /// Count steps from now on and run `action` before every `step` (none is failed): the
    /// test makes something happen at that moment of each swap.
    pub fn arm_action(step: Step, action: impl FnMut() + Send + 'static) {
        arm_with(0, None);
        state().action = Some((step, Box::new(action)));
    }

    /// Runs `action` with the way back (`framed`, `trampoline`) and the name of every point
    /// inside an injected system call the process backend passes (each moment its tracer could die at: a test `_exit`s there).
    pub fn arm_stages(action: impl FnMut(&'static str, &'static str) + Send + 'static) {
        state().stages = Some(Box::new(action));
    }

    pub(crate) fn stage(way: &'static str, name: &'static str) {
        // Taken out while it runs: the action may call back into this module.
        let taken = state().stages.take();
        if let Some(mut action) = taken {
            action(way, name);
            state().stages.get_or_insert(action);
        }
    }

    fn arm_with(nth: u64, kill: Option<i32>) {
        let mut s = state();
        s.kill = kill;
        s.action = None;
        s.kind = None;
        s.armed = true;
        s.target = nth;
        s.count = 0;
        s.seen = [0; Step::ALL.len()];
        s.fired = None;
    }

    /// Stop counting; what was seen since [`arm`].
    pub fn disarm() -> Report {
        let mut s = state();
        s.armed = false;
        s.action = None;
        Report {
            seen: Step::ALL
                .iter()
                .zip(s.seen)
                .filter(|(_, n)| *n > 0)
                .map(|(step, n)| (*step, n))
                .collect(),
            fired: s.fired,
        }
    }

    pub(crate) fn fails(step: Step) -> bool {
        let mut s = state();
        if !s.armed {
            return false;
        }
        if s.kind.is_none_or(|kind| kind == step) {
            s.count += 1;
        }
        if let Some(at) = Step::ALL.iter().position(|k| *k == step) {
            s.seen[at] += 1;
        }
        if let Some((when, action)) = s.action.as_mut() {
            if *when == step {
                action();
            }
        }
        if s.count == s.target && s.kind.is_none_or(|kind| kind == step) {
            s.fired = Some(step);
            if let Some(pid) = s.kill {
                tracing::warn!(?step, nth = s.count, pid, "killing the program");
                // SAFETY: plain system call.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return false;
            }
            tracing::warn!(?step, nth = s.count, "injected fault");
            return true;
        }
        false
    }
}

#[cfg(feature = "fault-injection")]
pub use armed::{arm, arm_action, arm_kill, arm_kind, arm_stages, disarm, Report};

#[cfg(feature = "fault-injection")]
pub(crate) use armed::{fails, stage};

/// A named point inside an injection (nothing, without the feature).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn stage(_way: &'static str, _name: &'static str) {}

/// Whether this step is to fail (never, without the feature).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn fails(_step: Step) -> bool {
    false
}

/// The step as an I/O result: a failing one is an `EIO` error.
#[inline(always)]
pub(crate) fn io(step: Step) -> std::io::Result<()> {
    if fails(step) {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}

/// The step as a ptrace result: a failing one is `EIO`.
#[inline(always)]
pub(crate) fn errno(step: Step) -> Result<(), i32> {
    if fails(step) {
        return Err(libc::EIO);
    }
    Ok(())
}

/// The step as a ptrace result the kernel refused: a failing one is `EPERM` (a security
/// policy denying the trace).
#[inline(always)]
pub(crate) fn denied(step: Step) -> Result<(), i32> {
    if fails(step) {
        return Err(libc::EPERM);
    }
    Ok(())
}

/// The step as a raw system call result: a failing one returns `-ENOMEM`.
#[inline(always)]
pub(crate) fn syscall(step: Step) -> Option<i64> {
    fails(step).then_some(-(libc::ENOMEM as i64))
}
