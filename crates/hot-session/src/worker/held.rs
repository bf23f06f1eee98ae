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
//! soon as ld.so lists it again. A reload at the very same address is noticed too: the
//! load's key (`library_load.rs`: inode, times, size) changed, or the entry jumps hot-lsp
//! wrote are gone; and a commit into a library first checks them (and its build-id) with
//! the threads stopped.
//!
//! A save whose files are partly in a library not loaded yet (a header included there and
//! in the executable, the relaunch replay) swaps the other files now and holds only those.

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

/// Files of a save held for a library the program has not loaded yet (`Worker::awaiting_load`).
#[derive(Clone, Debug)]
pub(crate) struct HeldForLoad {
    /// What the save is made again as once the library is loaded: the saved source file,
    /// or the header whose includers in the library these are.
    pub saved: PathBuf,
    /// The library (canonical path).
    pub library: PathBuf,
    /// The files of the save built into it.
    pub files: Vec<PathBuf>,
}

impl Worker {
    /// Hold the files of `files` built into a shared library of the workspace the program
    /// has not loaded yet (no loaded image names them): said on each file, swapped into the
    /// library once it is loaded. The others are for the caller to swap now: `None` when no
    /// file is held, else the files left (perhaps none).
    pub(super) fn await_library_load(
        &mut self,
        saved: &Path,
        files: &[PathBuf],
    ) -> Option<Vec<PathBuf>> {
        let mut waiting: Vec<(PathBuf, PathBuf)> = Vec::new();
        for file in files {
            if let Some(lib) = self.unloaded_library_of(file) {
                waiting.push((file.clone(), lib));
            }
        }
        if waiting.is_empty() {
            return None;
        }
        let rest: Vec<PathBuf> = files
            .iter()
            .filter(|f| !waiting.iter().any(|(w, _)| w == *f))
            .cloned()
            .collect();
        let mut libraries: Vec<PathBuf> = Vec::new();
        for (_, lib) in &waiting {
            if !libraries.contains(lib) {
                libraries.push(lib.clone());
            }
        }
        let shown = |lib: &Path| {
            lib.strip_prefix(&self.options.root)
                .unwrap_or(lib)
                .display()
                .to_string()
        };
        let names: Vec<String> = libraries.iter().map(|l| shown(l)).collect();
        let message = if rest.is_empty() {
            format!(
                "{} is not loaded yet; the change is applied when the program loads it \
                 (nothing was linked into the executable)",
                names.join(", ")
            )
        } else {
            format!(
                "{} is not loaded yet: the change to its {} file(s) is applied when the \
                 program loads it; the other {} file(s) are swapped now",
                names.join(", "),
                waiting.len(),
                rest.len()
            )
        };
        for (file, _) in &waiting {
            let diagnostic = Diagnostic {
                file: file.clone(),
                line: 1,
                column: 1,
                end_line: None,
                end_column: None,
                severity: Severity::Information,
                code: LIBRARY_NOT_LOADED.into(),
                message: message.clone(),
            };
            self.publish(file, file, vec![diagnostic]);
        }
        // A header's includers in one library are held together, made again as one save
        // of the header; a source file (the relaunch replay's too) as its own save.
        for lib in &libraries {
            let of_lib: Vec<PathBuf> = waiting
                .iter()
                .filter(|(_, l)| l == lib)
                .map(|(f, _)| f.clone())
                .collect();
            let groups: Vec<(PathBuf, Vec<PathBuf>)> = if files.iter().any(|f| f == saved) {
                of_lib.into_iter().map(|f| (f.clone(), vec![f])).collect()
            } else {
                vec![(saved.to_owned(), of_lib)]
            };
            for (key, files) in groups {
                self.awaiting_load
                    .retain(|h| !(h.saved == key && h.library == *lib));
                self.awaiting_load.push(HeldForLoad {
                    saved: key,
                    library: lib.clone(),
                    files,
                });
            }
        }
        tracing::info!("waiting for {} to be loaded", names.join(", "));
        if rest.is_empty() {
            self.set_state(State::Running, Some(message));
        }
        Some(rest)
    }

    /// The library of the workspace `file` is built into if the program has not loaded it
    /// (no loaded image names `file`, the list read again to be sure).
    pub(super) fn unloaded_library_of(&mut self, file: &Path) -> Option<PathBuf> {
        if self.is_added_unit(file) {
            return None;
        }
        let program = self.program.as_mut()?;
        let not_linked = |p: &mut crate::program::Program| {
            matches!(p.home_of(file), Ok((_, UnitMatch::NotLinked)))
        };
        if !not_linked(program) || (program.refresh_libraries() && !not_linked(program)) {
            return None;
        }
        program.unloaded_library_of(file)
    }

    /// Make the saves held for a library again once the program has loaded it (mapped, and
    /// listed by ld.so). Kept while no program runs: a relaunch gets them. Cheap while the
    /// library is not mapped: one `stat` of it and the memory map per look.
    pub(super) fn retry_awaiting_load(&mut self) {
        if self.awaiting_load.is_empty() {
            return;
        }
        let Some(program) = self.program.as_mut() else {
            return;
        };
        let mut libraries: Vec<PathBuf> = Vec::new();
        for held in &self.awaiting_load {
            if !libraries.contains(&held.library) {
                libraries.push(held.library.clone());
            }
        }
        let mapped: Vec<PathBuf> = libraries
            .into_iter()
            .filter(|lib| program.maps_library(lib))
            .collect();
        if mapped.is_empty() {
            return;
        }
        // Mapped is not loaded yet: `dlopen` lists it once it mapped it; until then the save
        // waits on (its library is still not among those read).
        program.refresh_libraries();
        let listed: Vec<PathBuf> = mapped
            .into_iter()
            .filter(|lib| program.lists_library(lib))
            .collect();
        let (ready, waiting): (Vec<HeldForLoad>, Vec<HeldForLoad>) =
            std::mem::take(&mut self.awaiting_load)
                .into_iter()
                .partition(|h| listed.contains(&h.library));
        self.awaiting_load = waiting;
        for held in ready {
            if held.files == [held.saved.clone()] {
                self.on_saved(&held.saved);
            } else {
                self.swap_with_progress(&held.saved, &held.files);
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
        let (moved, forgotten) = program.forget_moved_libraries();
        // The baselines of a library's files are of the load that went (perhaps another
        // build): its files are compared with the new load's running code instead.
        if !moved.is_empty() {
            let files: Vec<PathBuf> = self.baselines.keys().cloned().collect();
            for file in files {
                let home = program.home_of(&file).ok().map(|(home, _)| home);
                let of_moved = matches!(
                    &home,
                    Some(crate::program::UnitImage::Library(lib)) if moved.contains(lib)
                );
                if of_moved {
                    self.baselines.remove(&file);
                }
            }
        }
        for load in forgotten {
            for file in &load.files {
                self.baselines.remove(file);
                if !self.moved_files.iter().any(|(f, _)| f == file) {
                    self.moved_files.push((file.clone(), load.library.clone()));
                }
            }
            let functions: Vec<String> = load
                .functions
                .iter()
                .map(|f| hot_object::display_name(f).into_owned())
                .collect();
            self.moved_functions
                .insert(load.library.clone(), functions.clone());
            self.message(
                Severity::Warning,
                format!(
                    "{} was unloaded since {} file(s) were swapped into it (dlclose, maybe \
                     dlopen again, here or at another address, perhaps rebuilt): those swaps \
                     went with the old load ({}); hot-lsp links them into the library as it \
                     is loaded now",
                    load.library,
                    load.files.len(),
                    functions.join(", ")
                ),
            );
        }
        !moved.is_empty()
    }

    /// Before a save: forget the libraries that moved since they were read, and link the
    /// files this session swapped into them into their new load, if it is there (`saved`
    /// itself is left to its save). A file that cannot be linked into the new load is said
    /// by name, with the functions that run as built there now.
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
                ready.push((file, lib));
            } else {
                self.moved_files.push((file, lib));
            }
        }
        if ready.is_empty() {
            return;
        }
        let mut failed: Vec<(PathBuf, String)> = Vec::new();
        let mut applied = 0;
        for (file, lib) in &ready {
            match self.compile_link_swap(file) {
                // Swapped, or already what the new load runs (a library rebuilt with it).
                Ok(_) => applied += 1,
                Err(_) => failed.push((file.clone(), lib.clone())),
            }
        }
        self.message(
            Severity::Information,
            format!(
                "re-applied this session's changes to {applied} of {} file(s) in the reloaded library",
                ready.len()
            ),
        );
        for (file, lib) in failed {
            let functions = self.moved_functions.get(&lib).cloned().unwrap_or_default();
            self.message(
                Severity::Warning,
                format!(
                    "{} could not be linked into {lib} as loaded again (see its diagnostics): \
                     the reloaded library runs it as built, without this session's changes \
                     to {}; save it again once it links",
                    file.display(),
                    functions.join(", ")
                ),
            );
        }
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
