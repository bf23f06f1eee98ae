//! Registering the unwind tables of new bodies with the program's own unwinder, so C++
//! exceptions, `backtrace()` and debuggers walk through swapped code.
//!
//! hot-link builds one `.eh_frame` table per patch ([`hot_link::Patch::unwind`]); here it is
//! handed to libgcc's `__register_frame_info(table, object)` by a call injected into the
//! target (`Debuggee::call_function`). The table must be registered *before* the entries go
//! live (an exception thrown by the new body a microsecond after the commit must find it),
//! and must be in memory before it is registered (another thread's unwinder may read it at
//! once). So a patch with a table is applied in three steps, each its own stop of the
//! program: the arena contents (nothing reaches them yet), the registration, then the
//! commit. Until the commit nothing the program runs can reach the new code, so the other
//! threads may run while a slow registration call finishes (hot-process lets them go after
//! [`CALL_LIMITS`]`.stopped`).
//!
//! A registered table is never deregistered. After undo an old frame may still be running a
//! reverted body, or return into one, and an exception through it needs the table; arena
//! space is never reused (hot-link keeps undone allocations), so the table stays valid. A
//! commit that fails after the registration keeps the table too (its code is unreachable:
//! harmless) and retires the patch's arena space in the linker ([`hot_link::Linker::retire`]),
//! so no later link writes over a table libgcc still has on its list.
//!
//! `__register_frame_info` is libgcc's: libgcc_s.so.1 (every C++ program loads it through
//! libstdc++) or a statically linked libgcc_eh. Up to GCC 12 it only links the object into
//! a list under a mutex (the `struct object` is ours, in the arena: no `malloc`); from GCC 13
//! it also inserts the range into a B-tree, which calls `malloc` under the unwinder's locks:
//! a call that waits there must be let finish, never pulled back (hot-process does so). A C
//! program has no unwinder until glibc loads libgcc_s for its first `backtrace()` (or
//! `pthread_cancel`): then there is none to tell, which is said once. LLVM's libunwind
//! ignores `__register_frame_info` (it wants `__register_frame` per FDE): not handled yet.

use std::time::Duration;

use hot_link::Patch;
use hot_process::{ApplyReport, CallLimits, ProcessError, WritePlan};

use super::Worker;
use crate::Severity;

/// How long the registration call may take: it takes microseconds. With every other thread
/// stopped it can only wait for a lock a stopped thread holds (libgcc's, or malloc's from
/// GCC 13), so after `stopped` the other threads run again; it is given up on (left to
/// finish in its thread) only after `total`.
pub(super) const CALL_LIMITS: CallLimits = CallLimits {
    stopped: Duration::from_secs(2),
    total: Duration::from_secs(60),
};

impl Worker {
    /// Apply `plan`, registering the patch's unwind tables before its entries go live.
    /// `cxx`: the patch's code uses C++ exceptions, so a table that cannot be registered is
    /// worth a warning rather than a note.
    ///
    /// `constructors` (those of units linked in new, `new_units.rs`) run after the tables
    /// are registered and before the commit, in their own stops: the new unit's globals are
    /// constructed before anything the program runs can reach its code. Before them, every
    /// check of the commit is made with nothing written (`Debuggee::check`), so a swap the
    /// program's state refuses runs no constructor.
    pub(super) fn apply_with_unwind(
        &mut self,
        plan: &WritePlan,
        patch: &Patch,
        cxx: bool,
        constructors: &[hot_link::ConstructorCall],
    ) -> Result<ApplyReport, ProcessError> {
        let no_tables: &[hot_link::UnwindRegistration] = &[];
        let mut tables = patch.unwind.as_slice();
        let debugger = self.program.as_ref().and_then(|p| p.debuggee.debugger());
        if let (Some(debugger), Some((function, at))) = (
            debugger.as_ref().filter(|d| d.stopped),
            patch.entries_over_statements.first(),
        ) {
            // The debugger took its breakpoints out to stop the program and puts them back,
            // over whatever is there then, on `continue`: one on that statement would land
            // inside the jump.
            return Err(ProcessError::Other(format!(
                "the swap was refused: {} (pid {}) holds the program, and the jump that \
                 redirects `{function}` would cover its statement at entry+{at}, where the \
                 debugger may have a breakpoint it puts back when the program continues (a \
                 breakpoint inside the jump would crash the program); detach the debugger and \
                 save again",
                debugger.name, debugger.tracer
            )));
        }
        if tables.is_empty() && constructors.is_empty() {
            return self.debuggee_apply(plan);
        }
        if let Some(debugger) = debugger.filter(|d| d.stopped) {
            // Registration and constructors are calls in the program, which a debugger's
            // stop rules out (hot-process writes such a swap through /proc/PID/mem, and
            // calls nothing).
            if !constructors.is_empty() {
                return Err(ProcessError::Other(format!(
                    "the swap was refused: {} (pid {}) holds the program, and the new file's \
                     static constructors must run through a call in the program, which cannot \
                     be made while a debugger traces it; detach the debugger and save again",
                    debugger.name, debugger.tracer
                )));
            }
            if cxx {
                return Err(ProcessError::Other(format!(
                    "the swap was refused: {} (pid {}) holds the program, and the unwind \
                     table of the new C++ code must be registered through a call in the \
                     program, which cannot be made while a debugger traces it (an exception \
                     through the new code would terminate it); detach the debugger and save \
                     again",
                    debugger.name, debugger.tracer
                )));
            }
            tracing::info!(
                "{} holds the program: the new code's unwind table is not registered",
                debugger.name
            );
            return self.debuggee_apply(plan);
        }
        let mut register = hot_link::RuntimeAddr(0);
        if !tables.is_empty() {
            match self.unwinder_function("__register_frame_info") {
                Some(found) => register = found,
                None => {
                    self.note_no_unwinder(cxx);
                    if constructors.is_empty() {
                        return self.debuggee_apply(plan);
                    }
                    tables = no_tables;
                }
            }
        }
        // (Looked up without re-reading the libraries: libgcc was just found.)
        let llvm = self
            .program
            .as_ref()
            .and_then(|p| p.linker.as_ref())
            .and_then(|l| l.function_address("__unw_add_dynamic_fde"));
        if llvm.is_some() && !tables.is_empty() {
            self.note_llvm_libunwind(cxx);
        }
        // The tables and everything else in the arenas, unreachable until the commit.
        let contents = WritePlan {
            prepare: plan.prepare.clone(),
            copies: plan.copies.clone(),
            ..WritePlan::default()
        };
        self.debuggee_apply(&contents)?;
        // Whether libgcc may hold a pointer into the patch's arena space from here on.
        let mut registered = false;
        let mut failure = None;
        for table in tables {
            let Some(program) = self.program.as_ref() else {
                return Err(ProcessError::Exited);
            };
            match program.debuggee.call_function(
                register.0,
                &[table.frame.0, table.object.0],
                CALL_LIMITS,
                "__register_frame_info",
            ) {
                Ok(_) => registered = true,
                Err(ProcessError::Exited) => return Err(ProcessError::Exited),
                Err(ProcessError::CallStillRunning(text)) => {
                    // The thread is still inside libgcc (perhaps holding its locks): the
                    // swap cannot go on, and the table may yet be registered.
                    self.retire(patch);
                    return Err(ProcessError::CallStillRunning(format!(
                        "the swap was refused: registering the unwind table of the new code \
                         did not finish ({text}); the program runs on with the old code"
                    )));
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            if cxx {
                // C++ code whose tables are not registered terminates the program on its
                // first exception: refuse the swap (nothing reaches the new code yet) rather
                // than swap in code that kills the program. The failure is transient (a
                // stop or a call that failed), so the next save tries again.
                if registered {
                    self.retire(patch);
                }
                return Err(ProcessError::Other(format!(
                    "the swap was refused: the unwind table of the new code could not be \
                     registered ({e}), and without it an exception thrown in or through the \
                     new code would terminate the program; it runs on with the old code — \
                     save again to retry"
                )));
            }
            self.message(
                Severity::Information,
                format!(
                    "the unwind information of the new code could not be registered ({e}): \
                     backtraces stop at the swapped functions"
                ),
            );
        }
        let commit = WritePlan {
            prepare: Vec::new(),
            copies: Vec::new(),
            ..plan.clone()
        };
        if !constructors.is_empty() {
            // What a constructor does cannot be taken back (it prints, opens files, registers
            // itself elsewhere): it runs only once every check that can refuse the commit has
            // passed — a frame returning into the bytes an entry jump overwrites, a thread
            // that cannot be stepped out, bytes changed under an entry (a breakpoint), a
            // debugger that took the program — made now with every thread stopped, and
            // nothing written.
            if let Err(e) = self.debuggee_check(&commit) {
                if registered {
                    self.retire(patch);
                }
                return Err(e);
            }
            // From the first call on, the target may hold pointers into the patch's space
            // (an `atexit` destructor, a registered callback): never handed out again.
            if let Err(e) = self.run_constructors(constructors) {
                self.retire(patch);
                return Err(e);
            }
            registered = true;
        }
        let result = self.debuggee_apply(&commit);
        if result.is_err() && registered {
            // The table stays registered (nothing reaches its code); its space must never
            // be handed out again.
            self.retire(patch);
        }
        if constructors.is_empty() {
            return result;
        }
        // The program ran between the check and the commit (the constructors in it), so the
        // commit checks again, and its writes may fail: refused now, it must not pass for a
        // save that did nothing.
        result.map_err(|e| constructors_ran(e, constructors))
    }

    pub(super) fn retire(&mut self, patch: &Patch) {
        if let Some(linker) = self.program.as_mut().and_then(|p| p.linker_of_patch(patch)) {
            linker.retire(patch);
        }
    }

    /// libgcc's `name` in the running program, looking at the libraries again if it is not
    /// found (glibc loads libgcc_s on the first `backtrace()`).
    fn unwinder_function(&mut self, name: &str) -> Option<hot_link::RuntimeAddr> {
        let program = self.program.as_mut()?;
        let found = program.linker.as_ref()?.function_address(name);
        if found.is_some() {
            return found;
        }
        // The list was read an instant ago (before the link) and was as known.
        if program.libraries_just_checked() {
            return None;
        }
        if program.refresh_libraries() {
            return program.linker.as_ref()?.function_address(name);
        }
        None
    }

    /// LLVM's libunwind is loaded: its `__register_frame_info` does nothing (it takes FDEs
    /// one by one through `__register_frame`), so the tables are registered with libgcc
    /// only, if the program has it too. Said once, like the missing unwinder.
    fn note_llvm_libunwind(&mut self, cxx: bool) {
        if self.warned_exceptions {
            return;
        }
        self.warned_exceptions = true;
        let text = "the program loads LLVM's libunwind, which ignores `__register_frame_info`: \
                    if it is the program's unwinder, exceptions cannot pass through swapped \
                    functions and backtraces stop at them";
        self.message(
            if cxx {
                Severity::Warning
            } else {
                Severity::Information
            },
            text,
        );
    }

    fn note_no_unwinder(&mut self, cxx: bool) {
        let text = "the program has no unwinder to register the new code's unwind tables with \
                    (no `__register_frame_info`: libgcc_s is not loaded, as in a C program \
                    before its first backtrace()): exceptions cannot pass through swapped \
                    functions and backtraces stop at them";
        if !cxx {
            // Most C programs never unwind: a note on every first swap would be noise. A
            // later swap registers its tables once glibc has loaded libgcc_s. Logged once.
            if !std::mem::replace(&mut self.noted_no_unwinder, true) {
                tracing::info!("{text}");
            }
            return;
        }
        if self.warned_exceptions {
            return;
        }
        self.warned_exceptions = true;
        self.message(Severity::Warning, text);
    }

    fn debuggee_check(&self, plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        match self.program.as_ref() {
            Some(program) => program.debuggee.check(plan),
            None => Err(ProcessError::Exited),
        }
    }

    fn debuggee_apply(&self, plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        match self.program.as_ref() {
            Some(program) => program.debuggee.apply(plan),
            None => Err(ProcessError::Exited),
        }
    }
}

/// A commit that failed after the static constructors of new units ran, although the check
/// before them passed (the program ran in between, or a write failed): the refusal says that
/// they ran and that what they did stays, so "nothing was swapped" is not taken for "nothing
/// happened".
fn constructors_ran(e: ProcessError, constructors: &[hot_link::ConstructorCall]) -> ProcessError {
    let mut units: Vec<&str> = constructors.iter().map(|c| c.unit.as_str()).collect();
    units.dedup();
    let note = format!(
        "; the static constructors of {} had already run in the program (every check before \
         them had passed; the commit failed after them): what they did stays done, their \
         copies of the unit's variables are in memory nothing reaches, and a later save runs \
         them again",
        units.join(", ")
    );
    match e {
        ProcessError::Exited => ProcessError::Exited,
        ProcessError::PermissionDenied(text) => {
            ProcessError::PermissionDenied(format!("{text}{note}"))
        }
        ProcessError::Protection {
            addr,
            what,
            message,
        } => ProcessError::Protection {
            addr,
            what,
            message: format!("{message}{note}"),
        },
        other => ProcessError::Other(format!("{other}{note}")),
    }
}
