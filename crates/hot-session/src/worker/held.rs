//! Saves while a debugger traces the program.
//!
//! hot-process swaps a program a debugger holds stopped (every thread at a breakpoint or
//! interrupted) through `/proc/PID/mem`, and refuses one the debugger lets run
//! ([`hot_process::ProcessError::HeldByDebugger`]: hot-lsp cannot stop it, and must not
//! write code under running threads). Such a save is said once, then kept here and swapped
//! as soon as the debugger stops the program or detaches: the worker looks every
//! [`super::DEBUGGER_POLL`] while one waits, and never blocks on the debugger.

use std::path::Path;

use super::Worker;

impl Worker {
    /// Keep `saved` to swap once the debugger holds the program stopped or lets it go.
    pub(super) fn hold_save(&mut self, saved: &Path) {
        if !self.held_saves.iter().any(|s| s == saved) {
            self.held_saves.push(saved.to_owned());
        }
    }

    /// Swap the held saves if the program can take them now; forget them if it is gone.
    pub(super) fn retry_held_saves(&mut self) {
        if self.held_saves.is_empty() {
            return;
        }
        let Some(program) = self.program.as_ref() else {
            self.held_saves.clear();
            return;
        };
        if program
            .debuggee
            .debugger()
            .is_some_and(|debugger| !debugger.stopped)
        {
            return;
        }
        for saved in std::mem::take(&mut self.held_saves) {
            self.on_saved(&saved);
        }
    }
}
