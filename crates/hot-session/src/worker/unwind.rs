//! Registering the unwind tables of new bodies with the program's own unwinder, so C++
//! exceptions, `backtrace()` and debuggers walk through swapped code.
//!
//! hot-link builds one `.eh_frame` table per patch ([`hot_link::Patch::unwind`]); here it is
//! handed to libgcc's `__register_frame_info(table, object)` by a call injected into the
//! target (`Debuggee::call_function`), and to `__deregister_frame_info(table)` on undo.
//! The table must be registered *before* the entries go live (an exception thrown by the
//! new body a microsecond after the commit must find it), and must be in memory before it is
//! registered (another thread's unwinder may read it at once). So a patch with a table is
//! applied in three steps: the arena contents (nothing reaches them yet), the registration,
//! then the commit; a commit that fails deregisters the table again, so a later link that
//! reuses the same arena addresses never registers a second table over a live one.
//!
//! `__register_frame_info` is libgcc's: libgcc_s.so.1 (every C++ program loads it through
//! libstdc++) or a statically linked libgcc_eh. A C program has none until glibc loads
//! libgcc_s for its first `backtrace()` (or `pthread_cancel`): then there is no unwinder to
//! tell, which is said once.

use std::time::Duration;

use hot_link::UnwindRegistration;
use hot_process::{ApplyReport, ProcessError, WritePlan};

use super::Worker;
use crate::Severity;

/// How long the registration call may take. It takes microseconds; it can only wait for
/// libgcc's mutex held by a thread stopped inside an unwind, which a timeout then reports.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl Worker {
    /// Apply `plan`, registering `tables` (the patch's unwind tables) before its entries go
    /// live. `cxx`: the patch's code uses C++ exceptions, so a table that cannot be
    /// registered is worth a warning rather than a note.
    pub(super) fn apply_with_unwind(
        &mut self,
        plan: &WritePlan,
        tables: &[UnwindRegistration],
        cxx: bool,
    ) -> Result<ApplyReport, ProcessError> {
        if tables.is_empty() {
            return self.debuggee_apply(plan);
        }
        let Some(register) = self.unwinder_function("__register_frame_info") else {
            self.note_no_unwinder(cxx);
            return self.debuggee_apply(plan);
        };
        // The tables and everything else in the arenas, unreachable until the commit.
        let contents = WritePlan {
            prepare: plan.prepare.clone(),
            copies: plan.copies.clone(),
            ..WritePlan::default()
        };
        self.debuggee_apply(&contents)?;
        let mut registered = Vec::new();
        let mut failure = None;
        for table in tables {
            let Some(program) = self.program.as_ref() else {
                return Err(ProcessError::Exited);
            };
            match program.debuggee.call_function(
                register.0,
                &[table.frame.0, table.object.0],
                CALL_TIMEOUT,
                "__register_frame_info",
            ) {
                Ok(_) => registered.push(*table),
                Err(ProcessError::Exited) => return Err(ProcessError::Exited),
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            self.message(
                if cxx {
                    Severity::Warning
                } else {
                    Severity::Information
                },
                format!(
                    "the unwind information of the new code could not be registered ({e}): an \
                     exception thrown in or through a swapped function terminates the program, \
                     and backtraces stop at it"
                ),
            );
        }
        let commit = WritePlan {
            prepare: Vec::new(),
            copies: Vec::new(),
            ..plan.clone()
        };
        let result = self.debuggee_apply(&commit);
        if result.is_ok() {
            if let Some(program) = self.program.as_mut() {
                program
                    .unwind_registered
                    .extend(registered.iter().map(|t| t.frame));
            }
        } else {
            // Nothing runs the new bodies: take the tables back before their arena space is
            // handed out again.
            for table in registered {
                self.deregister(table);
            }
        }
        result
    }

    /// After undo: deregister the reverted patch's tables that were registered.
    pub(super) fn unregister_unwind(&mut self, tables: &[UnwindRegistration]) {
        for table in tables {
            let Some(program) = self.program.as_mut() else {
                return;
            };
            // libgcc aborts the program when asked to deregister a table it does not know.
            let Some(at) = program
                .unwind_registered
                .iter()
                .position(|&f| f == table.frame)
            else {
                continue;
            };
            program.unwind_registered.remove(at);
            self.deregister(*table);
        }
    }

    fn deregister(&mut self, unwind: UnwindRegistration) {
        let Some(deregister) = self.unwinder_function("__deregister_frame_info") else {
            return;
        };
        let Some(program) = self.program.as_ref() else {
            return;
        };
        if let Err(e) = program.debuggee.call_function(
            deregister.0,
            &[unwind.frame.0],
            CALL_TIMEOUT,
            "__deregister_frame_info",
        ) {
            // The table stays registered; it describes code that stays mapped, so unwinding
            // through it stays right.
            self.message(
                Severity::Information,
                format!(
                    "the unwind table of the reverted code at {} stays registered: {e}",
                    unwind.frame
                ),
            );
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
        if program.refresh_libraries() {
            return program.linker.as_ref()?.function_address(name);
        }
        None
    }

    fn note_no_unwinder(&mut self, cxx: bool) {
        if self.warned_exceptions {
            return;
        }
        self.warned_exceptions = true;
        let text = "the program has no unwinder to register the new code's unwind tables with \
                    (no `__register_frame_info`: libgcc_s is not loaded, as in a C program \
                    before its first backtrace()): exceptions cannot pass through swapped \
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

    fn debuggee_apply(&self, plan: &WritePlan) -> Result<ApplyReport, ProcessError> {
        match self.program.as_ref() {
            Some(program) => program.debuggee.apply(plan),
            None => Err(ProcessError::Exited),
        }
    }
}
