//! Saves while a debugger traces the program.
//!
//! hot-process swaps a program a debugger holds stopped (every thread at a breakpoint or
//! interrupted) through `/proc/PID/mem`, and refuses one the debugger lets run
//! ([`hot_process::ProcessError::HeldByDebugger`]: hot-lsp cannot stop it, and must not
//! write code under running threads). Such a save is said once, then kept here and swapped
//! as soon as the debugger stops the program or detaches: the worker looks every
//! [`super::DEBUGGER_POLL`] while one waits, and never blocks on the debugger.
//!
//! Saves of a file built into a shared library of the workspace that the program has not
//! loaded yet (a plugin it `dlopen`s later) are held too: linking the file into the
//! executable as new code would be a swap nothing calls — the program runs the library's
//! own copy once it loads it. The save is said on the file (information), and swapped into
//! the library once the program loads it: idle time reads the memory map every
//! [`super::LIBRARY_LOAD_POLL`] while one waits, and the save is made again once ld.so
//! lists the library (its first save then compares with the library's running code); a
//! relaunch keeps them (it has not loaded the library either).
//!
//! A library `dlclose`d (and maybe `dlopen`ed again elsewhere) is noticed before a save and
//! after its compile (`Program::forget_moved_libraries`, against ld.so's list), and in idle
//! time while it has swaps (its bias in the memory map, every [`super::LIBRARY_LOAD_POLL`]):
//! its linker and journal entries are dropped, and the files swapped into it are linked into
//! the new load from source (compared with its running code, like the relaunch replay) as
//! soon as ld.so lists it again. A reload at the very same address is not noticed.

use std::path::{Path, PathBuf};

use super::Worker;
use crate::program::UnitMatch;
use crate::{Diagnostic, Severity, State};

/// The code of the information diagnostic on a save held for its library.
pub(crate) const LIBRARY_NOT_LOADED: &str = "library-not-loaded";

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

impl Worker {
    /// Hold `saved` if one of `files` belongs to a shared library of the workspace that the
    /// program has not loaded yet (no loaded image names it): said on the file, swapped into
    /// the library once it is loaded. Whether the save was held.
    pub(super) fn await_library_load(&mut self, saved: &Path, files: &[PathBuf]) -> bool {
        let mut waiting: Vec<(PathBuf, PathBuf)> = Vec::new();
        for file in files {
            if self.is_added_unit(file) {
                continue;
            }
            let Some(program) = self.program.as_mut() else {
                return false;
            };
            let not_linked = |p: &mut crate::program::Program| {
                matches!(p.home_of(file), Ok((_, UnitMatch::NotLinked)))
            };
            if !not_linked(program) || (program.refresh_libraries() && !not_linked(program)) {
                continue;
            }
            if let Some(lib) = program.unloaded_library_of(file) {
                waiting.push((file.clone(), lib));
            }
        }
        let Some((_, lib)) = waiting.first() else {
            return false;
        };
        let lib = lib.clone();
        let shown = lib.strip_prefix(&self.options.root).unwrap_or(&lib);
        let message = format!(
            "{} is not loaded yet; the change is applied when the program loads it \
             (nothing was linked into the executable)",
            shown.display()
        );
        let diagnostics = waiting
            .iter()
            .map(|(file, _)| Diagnostic {
                file: file.clone(),
                line: 1,
                column: 1,
                end_line: None,
                end_column: None,
                severity: Severity::Information,
                code: LIBRARY_NOT_LOADED.into(),
                message: message.clone(),
            })
            .collect();
        self.publish(saved, saved, diagnostics);
        self.awaiting_load.retain(|(held, _)| held != saved);
        self.awaiting_load.push((saved.to_owned(), lib));
        self.set_state(State::Running, Some(message));
        true
    }

    /// Make the saves held for a library again once the program has loaded it (mapped, and
    /// listed by ld.so). Kept while no program runs: a relaunch gets them.
    pub(super) fn retry_awaiting_load(&mut self) {
        if self.awaiting_load.is_empty() {
            return;
        }
        let Some(program) = self.program.as_mut() else {
            return;
        };
        let mapped: Vec<PathBuf> = self
            .awaiting_load
            .iter()
            .filter(|(_, lib)| program.maps_library(lib))
            .map(|(saved, _)| saved.clone())
            .collect();
        if mapped.is_empty() {
            return;
        }
        // Mapped is not loaded yet: `dlopen` lists it once it mapped it; until then the save
        // waits on (its library is still not among those read).
        program.refresh_libraries();
        for saved in mapped {
            let listed = self.program.as_ref().is_some_and(|p| {
                self.awaiting_load
                    .iter()
                    .filter(|(s, _)| *s == saved)
                    .all(|(_, lib)| p.lists_library(lib))
            });
            if listed {
                self.on_saved(&saved);
            }
        }
    }
}

impl Worker {
    /// Forget the libraries that moved since they were read (`Program::forget_moved_libraries`):
    /// the files swapped into them lose their last swapped object as baseline (the new load
    /// runs the library as built) and wait to be linked into the new load; said once per
    /// library. Whether any moved.
    pub(super) fn forget_moved_libraries(&mut self) -> bool {
        let Some(program) = self.program.as_mut() else {
            return false;
        };
        let (moved, swapped) = program.forget_moved_libraries();
        for (lib, files) in swapped {
            for file in &files {
                self.baselines.remove(file);
                if !self.moved_files.iter().any(|(f, _)| f == file) {
                    self.moved_files.push((file.clone(), lib.clone()));
                }
            }
            self.message(
                Severity::Warning,
                format!(
                    "{lib} was unloaded since {} file(s) were swapped into it (dlclose, maybe \
                     dlopen again at another address): those swaps went with the old load; \
                     hot-lsp links them into the library as it is loaded now",
                    files.len()
                ),
            );
        }
        moved
    }

    /// Before a save: forget the libraries that moved since they were read, and link the
    /// files this session swapped into them into their new load, if it is there (`saved`
    /// itself is left to its save).
    pub(super) fn relink_moved_libraries(&mut self, saved: Option<&Path>) {
        self.forget_moved_libraries();
        if self.moved_files.is_empty() {
            return;
        }
        let loaded = |worker: &mut Worker, file: &Path| {
            worker.program.as_mut().is_some_and(|p| {
                matches!(
                    p.home_of(file),
                    Ok((crate::program::UnitImage::Library(_), UnitMatch::Found(_)))
                )
            })
        };
        let mut ready = Vec::new();
        for (file, lib) in std::mem::take(&mut self.moved_files) {
            if Some(file.as_path()) == saved {
                continue;
            }
            if loaded(self, &file) {
                ready.push(file);
            } else {
                self.moved_files.push((file, lib));
            }
        }
        if ready.is_empty() {
            return;
        }
        let applied = ready
            .iter()
            .filter(|file| matches!(self.compile_link_swap(file), Ok(Some(_))))
            .count();
        self.message(
            Severity::Information,
            format!(
                "re-applied this session's changes to {applied} of {} file(s) in the reloaded library",
                ready.len()
            ),
        );
    }
}

impl Worker {
    /// Whether idle time watches the libraries: one has swaps of this session (a reload
    /// would drop them), or files wait for a library to be loaded again.
    pub(super) fn watches_libraries(&self) -> bool {
        !self.moved_files.is_empty() || self.program.as_ref().is_some_and(|p| p.has_library_swaps())
    }

    /// Idle time: a library with swaps that moved (`dlclose`, maybe `dlopen` elsewhere), or
    /// one whose files wait that is mapped again, gets this session's swaps re-applied to
    /// its new load without waiting for a save. Cheap while nothing changed: the memory
    /// map is read, no library file.
    pub(super) fn watch_libraries(&mut self) {
        let Some(program) = self.program.as_mut() else {
            self.moved_files.clear();
            return;
        };
        let moved = program.swapped_library_moved();
        let back = self
            .moved_files
            .iter()
            .any(|(_, lib)| program.maps_library(Path::new(lib)));
        if !moved && !back {
            return;
        }
        if back {
            // Listed by ld.so once `dlopen` mapped it: until then the files wait on.
            program.refresh_libraries();
        }
        self.relink_moved_libraries(None);
    }
}
