//! The swap pipeline: compile the saved file (or every includer of a saved header, in
//! parallel), link the objects against the running image as one patch, apply it, report;
//! and undo.
//!
//! A swap is three steps whatever was saved: [`Worker::unit_job`] picks each file's compile
//! command and its unit of the image, [`compile_all`] compiles them (one thread per job,
//! `[compile] jobs`, else [`max_jobs`]), [`Worker::link_and_apply`] links every object into one patch
//! (`Linker::link_units`), writes it in one atomic commit and journals it as one swap.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crossbeam_channel::Sender;
use hot_link::{LinkRequest, UnitRef};
use hot_object::{Object, TranslationUnitId};
use hot_process::{ProcessEvent, WritePlan};

use super::{
    has_extension, Baseline, BaselineObject, Worker, HEADER_EXTENSIONS, SOURCE_EXTENSIONS,
};
use crate::compile::{self, Cancel, CompileJob, CompileOutcome};
use crate::compile_db::normalize;
use crate::config;
use crate::program::{AppliedPatch, LinkerError, UnitImage, UnitMatch};
use crate::{Diagnostic, Micros, Phase, Progress, SessionEvent, Severity, State, SwapSummary};

/// The most compiles a header's swap runs at once, whatever the machine has.
const MAX_JOBS: usize = 16;

/// How many compiles run at once: one per core, at most [`MAX_JOBS`].
pub(super) fn max_jobs() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_JOBS)
}

/// Whether the text of `file` contains `name` (a file name it may `#include`); a file that
/// cannot be read does not.
fn names(file: &Path, name: &[u8]) -> bool {
    !name.is_empty()
        && std::fs::read(file).is_ok_and(|text| text.windows(name.len()).any(|w| w == name))
}

/// What a swap gives: `Ok(None)`, compiled and nothing to swap.
pub(super) type SwapResult = Result<Option<SwapSummary>, Refused>;

/// Why a swap wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Said already (a message, the files' diagnostics).
    Failed,
    /// The program the swap was for exited or called exec while it compiled.
    Left(ProgramLeft),
}

/// How the program a save was for left while the save compiled (`Worker::program_left`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProgramLeft {
    Exited,
    /// The same process runs a new image: the save is made again in it.
    Exec,
}

/// One file to compile for a swap.
pub(super) struct UnitJob {
    pub(super) file: PathBuf,
    pub(super) job: CompileJob,
    /// Where the compiler writes the file's dependency list (`-MD -MF`), so the includers
    /// of a header stay known as files are saved.
    pub(super) depfile: PathBuf,
    /// The `STT_FILE` group of the image the file replaces (`None`: not found there, or no
    /// program runs).
    pub(super) tu: Option<TranslationUnitId>,
    /// The image `tu` is a unit of, whose linker links the file: the executable, or one of
    /// the project's shared libraries.
    pub(super) image: UnitImage,
    /// A compile-database file the program does not contain yet, linked in as a new
    /// translation unit by this swap (`new_units.rs`).
    pub(super) new_unit: bool,
}

/// What compiling one [`UnitJob`] gave.
pub(super) struct Compiled {
    pub(super) unit: UnitJob,
    /// `Err`: the compiler could not run (with its stable code), or its object could not be
    /// read.
    pub(super) outcome: Result<CompileOutcome, (Option<&'static str>, String)>,
    /// The object, if the compile succeeded.
    pub(super) object: Option<Object>,
    /// What the compile read, the file itself left out.
    pub(super) deps: Option<Vec<PathBuf>>,
    /// How long reading (parsing) the object took, on the compile thread: the link's
    /// work, counted in the save's `link`, not in its `compile`.
    pub(super) read_micros: u64,
}

impl Worker {
    pub(super) fn on_saved(&mut self, file: &Path) {
        // The program called exec during the save, which wrote nothing: its new image gets
        // the save now (once: a program that keeps re-executing itself is said so again).
        // Told by this save's own result, so an exec during another swap (a relaunch's
        // replay) never makes a later save twice.
        if self.save(file) == Some(ProgramLeft::Exec) && self.program.is_some() {
            self.save(file);
        }
    }

    /// Whether the program left during the save (`program_left`).
    fn save(&mut self, file: &Path) -> Option<ProgramLeft> {
        if !self.opted_in {
            return None;
        }
        let mut file = normalize(file);
        // A source file saved through another path than the compile database's (a
        // workspace opened through a symlink) is the database's file: its command, its
        // baseline, its unit in the program.
        if has_extension(&file, SOURCE_EXTENSIONS)
            || has_extension(&file, super::assembly::ASSEMBLY_EXTENSIONS)
        {
            if let Some(spelled) = self.database().and_then(|db| db.spelling_of(&file)) {
                file = spelled;
            }
        }
        // This save supersedes one held back by a debugger.
        self.held_saves.retain(|held| *held != file);
        self.awaiting_load.retain(|held| held.saved != file);
        if file == self.options.root.join(config::CONFIG_FILE) {
            self.reload_config();
            return None;
        }
        // What was compiled ahead with this file as it was (a header's includers, the units
        // including a source file) must never be swapped in after it: it would undo it.
        self.ahead_saw_save(&file);
        // A library unloaded since it was read is read again first, and what this session
        // swapped into it linked into its new load.
        self.relink_moved_libraries(Some(&file));
        if has_extension(&file, HEADER_EXTENSIONS) {
            return self.on_header_saved(&file);
        }
        // Not swapped yet, and said so (`assembly.rs`).
        if has_extension(&file, super::assembly::ASSEMBLY_EXTENSIONS) {
            self.on_assembly_saved(&file);
            return None;
        }
        if !has_extension(&file, SOURCE_EXTENSIONS) {
            return None;
        }
        // A source file other units include (lz4hc.c includes lz4.c; a unity build's
        // members) is saved like a header: those units have copies of its code (static and
        // inline functions, or all of it), and swapping the file alone would leave the
        // program running old copies next to new ones.
        let mut includers = match self.program {
            Some(_) => self.program_includers(&file),
            None => Vec::new(),
        };
        self.leave_out_assembly(&file, &mut includers);
        if !includers.is_empty() {
            // A file only included (not a unit of its own) is not compiled by itself.
            let mut files = Vec::with_capacity(includers.len() + 1);
            if self.is_program_unit(&file) {
                files.push(file.clone());
            }
            files.extend(includers);
            // What was compiled ahead is this file alone: the save compiles all of them.
            self.forget_compiled_ahead(&file);
            return self.swap_with_progress(&file, &files);
        }
        if self.outside_the_program(&file) {
            return None;
        }
        // The text on disk compiled already while the user paused typing (`ahead.rs`).
        if let Some(ready) = self.take_compiled_ahead(&file) {
            let files = std::slice::from_ref(&file);
            return self.with_progress(&file, files, |worker| {
                worker.swap_compiled_ahead(&file, ready)
            });
        }
        self.swap_with_progress(&file, std::slice::from_ref(&file))
    }

    /// Whether one of `units` includes `file`, as its dependency list says.
    fn included_by_any(&self, file: &Path, units: &[PathBuf]) -> bool {
        self.includers(file).iter().any(|unit| units.contains(unit))
    }

    /// Whether `file` is a translation unit of the running program: linked into it (or no
    /// DWARF to tell), added by this session, or of a library not loaded yet.
    fn is_program_unit(&mut self, file: &Path) -> bool {
        self.is_linked(file) || self.is_added_unit(file) || self.unloaded_library_of(file).is_some()
    }

    /// The translation units of the running program that include `file` (a header, or a
    /// source file), directly or not, as their last compile's dependency list says, `file`
    /// itself left out. Files no compile has told the includes of yet (their baseline is
    /// still queued, or was not made) are asked first by a preprocessor run, whether or not
    /// they compile now; for a source file only those whose text names it, so a plain save
    /// right after the launch does not preprocess the whole program (a unit that reaches
    /// the file through a header alone is found once its own baseline has compiled).
    fn program_includers(&mut self, file: &Path) -> Vec<PathBuf> {
        let named: Option<Vec<u8>> = has_extension(file, SOURCE_EXTENSIONS)
            .then(|| file.file_name())
            .flatten()
            .map(|name| name.as_encoded_bytes().to_vec());
        let unknown: Vec<PathBuf> = self
            .program_sources(std::slice::from_ref(&file.to_owned()))
            .into_iter()
            .filter(|f| {
                !self.dependencies.contains_key(f)
                    && self.is_program_unit(f)
                    && named.as_deref().is_none_or(|name| names(f, name))
            })
            .collect();
        if !unknown.is_empty() {
            self.progress(
                Phase::Compile,
                &format!("finding which of {} files include it", unknown.len()),
            );
        }
        self.scan_dependencies(&unknown, self.jobs());
        self.includers(file)
            .into_iter()
            .filter(|unit| unit != file && self.is_program_unit(unit))
            .collect()
    }

    /// A saved source file hot-lsp has no command for and the running program was not built
    /// from (a test or tool of the tree, a file a checkout or untar wrote): said on the file,
    /// as information, like a header nothing includes — not an error per file. One that is
    /// part of the program (or no program runs to tell) goes on to the error that says what
    /// is missing.
    fn outside_the_program(&mut self, file: &Path) -> bool {
        if self.program.is_none() || self.has_compile_command(file) {
            return false;
        }
        // A database written for another tree: the error that says so, not a quiet note.
        if self.is_linked(file)
            || self.is_added_unit(file)
            || self.database_elsewhere(file).is_some()
        {
            return false;
        }
        let message = format!(
            "{} is not part of the running program, and the compile database has no \
             command for it: nothing was compiled or swapped",
            file.display()
        );
        let diagnostic = located(None, file, Severity::Information, "not-included", &message);
        self.publish(file, file, vec![diagnostic]);
        true
    }

    /// Swap `files` as one, between a progress begin and end titled by `saved`.
    pub(super) fn swap_with_progress(
        &mut self,
        saved: &Path,
        files: &[PathBuf],
    ) -> Option<ProgramLeft> {
        self.with_progress(saved, files, |worker| worker.swap_files(saved, files))
    }

    /// Run `swap` (of `files`) between a progress begin and end titled by `saved`; whether
    /// the program left meanwhile.
    pub(super) fn with_progress(
        &mut self,
        saved: &Path,
        files: &[PathBuf],
        swap: impl FnOnce(&mut Self) -> SwapResult,
    ) -> Option<ProgramLeft> {
        let name = saved
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let title = match files {
            [one] if one == saved => format!("hot-lsp: {name}"),
            // A source file with the units that include it.
            _ if files.iter().any(|f| f == saved) => {
                format!(
                    "hot-lsp: {name} (and {} files that include it)",
                    files.len() - 1
                )
            }
            _ => format!("hot-lsp: {name} ({} files include it)", files.len()),
        };
        self.emit(SessionEvent::Progress(Progress::Begin { title }));
        let result = swap(self);
        let end = match &result {
            Ok(Some(summary)) => format!(
                "swapped {} function(s) in {} µs",
                summary.swapped.len() + summary.added.len(),
                summary.micros.swap
            ),
            Ok(None) => "compiled".to_string(),
            Err(_) => "failed".to_string(),
        };
        self.emit(SessionEvent::Progress(Progress::End { message: end }));
        match result {
            Err(Refused::Left(left)) => Some(left),
            _ => None,
        }
    }

    /// A saved header: every translation unit of the running program that includes it
    /// (directly or not, as their last compile's dependency list says) is recompiled and
    /// swapped in one patch. A header no unit includes gets an information diagnostic.
    fn on_header_saved(&mut self, header: &Path) -> Option<ProgramLeft> {
        if self.program.is_none() {
            self.message(
                Severity::Information,
                format!(
                    "{} is a header: no program is running, so nothing is swapped",
                    header.display()
                ),
            );
            return None;
        }
        // Files of a library not loaded yet count: their includers are held for its load.
        let mut includers = self.program_includers(header);
        let included_somewhere = !includers.is_empty();
        self.leave_out_assembly(header, &mut includers);
        if included_somewhere && includers.is_empty() {
            self.set_state(
                State::Running,
                Some(format!(
                    "only assembly sources include {}: nothing was swapped",
                    header.display()
                )),
            );
            return None;
        }
        if includers.is_empty() {
            let diagnostic = Diagnostic {
                file: header.to_owned(),
                line: 1,
                column: 1,
                end_line: None,
                end_column: None,
                severity: Severity::Information,
                code: "not-included".into(),
                message: format!(
                    "no translation unit of the running program includes {}: nothing was \
                     recompiled or swapped",
                    header.display()
                ),
            };
            self.publish(header, header, vec![diagnostic]);
            self.set_state(
                State::Running,
                Some("the saved header is not included by the running program".into()),
            );
            return None;
        }
        // An earlier "not included" is no longer true. Only then is the header's list
        // published here: the swap publishes it with what its includers say now, and a list
        // sent here too would show their last warnings once more (a front end that prints
        // every list, like `hot-lsp watch`, printed each warning twice).
        let said_before = self
            .published
            .get(header)
            .is_some_and(|by_file| by_file.values().any(|list| !list.is_empty()));
        if said_before {
            self.publish(header, header, Vec::new());
        }
        self.swap_with_progress(header, &includers)
    }

    pub(super) fn progress(&self, phase: Phase, message: &str) {
        self.emit(SessionEvent::Progress(Progress::Report {
            phase,
            message: message.into(),
        }));
    }

    /// Compile, link and swap one saved file. `Ok(None)`: compiled, nothing was swapped.
    pub(super) fn compile_link_swap(&mut self, file: &Path) -> SwapResult {
        self.swap_files(file, std::slice::from_ref(&file.to_owned()))
    }

    /// The compile of `file` for a swap. A source of the database that the running program
    /// does not contain (a test or a tool built from the same tree) is refused before
    /// compiling anything.
    pub(super) fn unit_job(&mut self, file: &Path) -> Result<UnitJob, String> {
        // A file with no compile command is said so first.
        self.entry_for(file)?;
        // (A save refuses these with a diagnostic first: `Worker::refuse_lto`.)
        if let Some((exe, evidence)) = self.lto_evidence(file) {
            return Err(format!("{exe} was built with -flto ({evidence})"));
        }
        // The libraries are known by now if they were not at adoption.
        self.snapshot_library_files();
        let mut new_unit = false;
        let mut image = UnitImage::Executable;
        let tu = match self.program.as_mut().map(|p| {
            let exe = p.image().map(|i| i.exe.path.clone());
            let mut home = p.home_of(file);
            // A library loaded with `dlopen` since the list was read may contain it.
            if matches!(home, Ok((_, UnitMatch::NotLinked))) && p.refresh_libraries() {
                home = p.home_of(file);
            }
            home.and_then(|home| Ok((home, exe?)))
        }) {
            None => None,
            Some(Ok(((home, UnitMatch::Found(tu)), _))) => {
                image = home;
                tu
            }
            Some(Ok(((_, UnitMatch::NotLinked), _))) if self.is_added_unit(file) => None,
            Some(Ok(((_, UnitMatch::NotLinked), _))) if self.may_add_unit(file) => {
                new_unit = true;
                None
            }
            Some(Ok(((_, UnitMatch::NotLinked), exe))) => {
                let why = self
                    .program
                    .as_ref()
                    .and_then(|p| p.why_not_linked(file))
                    .map(|why| format!(". {why}"))
                    .unwrap_or_default();
                return Err(format!(
                    "{} is not linked into the running program ({exe}); nothing was swapped{why}",
                    file.display()
                ));
            }
            Some(Err(e)) => return Err(e),
        };
        let mut job = self.compile_job(file, tu, new_unit)?;
        job.image = image;
        Ok(job)
    }

    /// The compile of `file` for a swap, as the unit `tu` of the image (`None`: a unit the
    /// executable does not have), with its dependency list written.
    pub(super) fn compile_job(
        &mut self,
        file: &Path,
        tu: Option<TranslationUnitId>,
        new_unit: bool,
    ) -> Result<UnitJob, String> {
        let entry = self.entry_for(file)?;
        let output = self.scratch_object(file);
        let depfile = output.with_extension("d");
        let mut job = compile::job_for(&entry, &output);
        // After `-o <output>`, so `flags()` (what baselines are matched by) is unchanged.
        job.argv
            .extend(["-MD".into(), "-MF".into(), depfile.display().to_string()]);
        Ok(UnitJob {
            file: file.to_owned(),
            job,
            depfile,
            tu,
            image: UnitImage::Executable,
            new_unit,
        })
    }

    /// Compile `files`, link them into one patch and apply it in one atomic commit: the
    /// saved source file (`files` = `[saved]`), or the includers of the saved header. A
    /// file that does not compile refuses the whole swap with nothing written.
    /// `Ok(None)`: compiled, nothing was swapped.
    pub(super) fn swap_files(&mut self, saved: &Path, files: &[PathBuf]) -> SwapResult {
        if self.refuse_lto(saved, files) {
            return Err(Refused::Failed);
        }
        // Files of a library not loaded yet are held; the others swap now.
        let rest = self.await_library_load(saved, files);
        let files = match &rest {
            Some(rest) if rest.is_empty() => return Ok(None),
            Some(rest) => rest.as_slice(),
            None => files,
        };
        // The relaunch replay names its first file as the save: one held is not this swap's.
        // A saved header, or a saved source file held with its includers swapping now,
        // is still what this swap is of (its summary, its journal entry, a retry).
        let saved = match files.first() {
            Some(first) if !files.iter().any(|f| f == saved) && rest.is_some() => {
                if has_extension(saved, HEADER_EXTENSIONS) || self.included_by_any(saved, files) {
                    saved
                } else {
                    first.as_path()
                }
            }
            _ => saved,
        };
        let mut units = Vec::with_capacity(files.len());
        for file in files {
            match self.unit_job(file) {
                Ok(unit) => {
                    self.hurry_baseline_of(file, files.len() == 1);
                    units.push(unit);
                }
                Err(e) => {
                    self.fail(e);
                    return Err(Refused::Failed);
                }
            }
        }
        let running_state = if self.program.is_some() {
            State::Running
        } else {
            State::Idle
        };
        let jobs = self.jobs().min(units.len());
        match units.as_slice() {
            [_] => self.progress(Phase::Compile, "compiling"),
            _ => self.progress(
                Phase::Compile,
                &format!("compiling {} files ({jobs} at a time)", units.len()),
            ),
        }
        let compile_start = Instant::now();
        // The objects are removed once this save is done (below), not as they are read.
        let _outputs = RemoveWhenDone(units.iter().map(|u| u.job.output.clone()).collect());
        // On compile threads: the program's output is forwarded meanwhile.
        let (events, stopping) = (self.events.clone(), self.stopping.clone());
        let compiled = self.while_forwarding(move || compile_all(units, jobs, &events, &stopping));
        // Reading the objects is the link's (the slowest file's read ends the compile phase;
        // a header's includers are read in parallel, their sum is what the link did).
        let read_last = compiled.iter().map(|c| c.read_micros).max().unwrap_or(0);
        let read_all: u64 = compiled.iter().map(|c| c.read_micros).sum();
        let compile_wall = (compile_start.elapsed().as_micros() as u64).saturating_sub(read_last);
        let compile_total = compiled
            .iter()
            .filter_map(|c| c.outcome.as_ref().ok())
            .map(|o| o.micros)
            .sum();
        let mut compiled = compiled;
        name_includers(&mut compiled);
        // What each file includes now: a header added by this very save counts from now.
        for c in &compiled {
            if let Some(deps) = &c.deps {
                self.dependencies.insert(c.unit.file.clone(), deps.clone());
            }
        }
        // The session ends: its compiles were stopped, and nothing is said of them.
        if self.stopping.is_cancelled() {
            return Err(Refused::Failed);
        }
        // The program exited or called exec while the files compiled: nothing more is done
        // for it (no baselines of the includers, no link), whether or not they compiled; an
        // event left pending here would otherwise outlive the save (a restart after it).
        if self.deferred.is_some() {
            let (files, mut diagnostics): (Vec<PathBuf>, Vec<Vec<Diagnostic>>) = compiled
                .iter()
                .filter_map(|c| {
                    let outcome = c.outcome.as_ref().ok()?;
                    Some((c.unit.file.clone(), outcome.diagnostics.clone()))
                })
                .unzip();
            if let Some(left) = self.program_left(saved, &files, &mut diagnostics) {
                return Err(Refused::Left(left));
            }
        }
        // Every file compiled (and its diagnostics are fresh), or nothing is swapped.
        let mut ready = Vec::with_capacity(compiled.len());
        let mut failed = Vec::new();
        // What the files that did not compile said, published with the others' below.
        let mut failed_diagnostics = Vec::new();
        for c in compiled {
            match (&c.outcome, c.object) {
                (Ok(outcome), Some(object)) => ready.push((c.unit, outcome.clone(), object)),
                (Ok(outcome), None) => {
                    failed_diagnostics.push((c.unit.file.clone(), outcome.diagnostics.clone()));
                    failed.push(c.unit.file);
                }
                (Err((code, e)), _) => {
                    match code {
                        Some(code) => self.fail_coded(code, e.clone()),
                        None => self.fail(e.clone()),
                    }
                    failed.push(c.unit.file);
                }
            }
        }
        if !failed.is_empty() || self.program.is_none() {
            // (Those without an outcome were reported through `fail`.)
            let (mut files, mut diagnostics): (Vec<PathBuf>, Vec<Vec<Diagnostic>>) =
                failed_diagnostics.into_iter().unzip();
            for (unit, outcome, _) in ready {
                files.push(unit.file);
                diagnostics.push(outcome.diagnostics);
            }
            self.publish_each(&files, diagnostics);
            if failed.is_empty() {
                // No program: compiling is all there is to do, and said (a save answered by
                // nothing looks lost).
                self.message(
                    Severity::Information,
                    format!(
                        "{} compiled: no program is running, so nothing is swapped",
                        saved.display()
                    ),
                );
                self.set_state(running_state, None);
                return Ok(None);
            }
            if files.len() > 1 {
                let names: Vec<String> = failed.iter().map(|f| f.display().to_string()).collect();
                // `saved` is a header, or (the relaunch replay) the first of the source
                // files swapped together.
                let together = if files.iter().any(|f| f.as_path() == saved) {
                    format!(
                        "none of the {} files swapped together was swapped",
                        files.len()
                    )
                } else {
                    format!(
                        "none of the {} files that include {} was swapped",
                        files.len(),
                        saved.display()
                    )
                };
                self.set_state(
                    running_state,
                    Some(format!("{} does not compile: {together}", names.join(", "))),
                );
            }
            return Err(Refused::Failed);
        }
        let micros = Micros {
            compile: compile_wall,
            compile_total,
            link: read_all,
            ..Micros::default()
        };
        self.link_and_apply(saved, ready, micros, None)
    }

    /// Link the compiled files as one patch against the running image, publish each file's
    /// diagnostics, write the patch in one atomic commit, journal it and report the swap.
    /// `prelinked`: the patch of exactly these objects, linked and ABI-checked ahead against
    /// the linker's current state (`ahead.rs` checks that), so neither is done again.
    pub(super) fn link_and_apply(
        &mut self,
        saved: &Path,
        mut ready: Vec<(UnitJob, CompileOutcome, Object)>,
        mut micros: Micros,
        mut prelinked: Option<Checked>,
    ) -> SwapResult {
        if let Err(e) = self.refuse_other_programs(&ready) {
            for (unit, outcome, _) in &ready {
                self.publish(&unit.file, &unit.file, outcome.diagnostics.clone());
            }
            self.fail(e);
            return Err(Refused::Failed);
        }
        // A library that moved while the save compiled (a plugin reloaded) is read again:
        // the link goes into its new load, never where the old one was — nor a patch
        // linked ahead against the old one.
        if self.forget_moved_libraries() {
            prelinked = None;
        }
        // What runs, compiled with the same flags (now, if it is still in the queue; the
        // includers of a header saved right after launch, in parallel).
        let pending: Vec<PathBuf> = ready
            .iter()
            .map(|(unit, _, _)| unit)
            .filter(|unit| {
                self.baselines
                    .get(&unit.file)
                    .is_none_or(|b| b.argv != unit.job.flags())
                    && self.snapshots.contains_key(&unit.file)
                    && !self.replay.contains(&unit.file)
            })
            .map(|unit| unit.file.clone())
            .collect();
        if pending.len() > 1 {
            self.compile_baselines(&pending, self.jobs());
        }
        let mut baselines: Vec<Option<Baseline>> = ready
            .iter()
            .map(|(unit, _, _)| self.baseline_for(&unit.file, unit.job.flags()))
            .collect();
        // Each file's diagnostics, completed with the linker's findings before publishing.
        let mut diagnostics: Vec<Vec<Diagnostic>> = ready
            .iter()
            .map(|(_, outcome, _)| outcome.diagnostics.clone())
            .collect();
        let mut files: Vec<PathBuf> = ready.iter().map(|(unit, _, _)| unit.file.clone()).collect();
        // One linker per image: the files of one swap must all be linked into the same one.
        let image = ready
            .first()
            .map(|(unit, _, _)| unit.image.clone())
            .unwrap_or_default();
        if let Some((other, _, _)) = ready.iter().find(|(unit, _, _)| unit.image != image) {
            let name = |i: &UnitImage| i.library().unwrap_or("the executable").to_string();
            let first = &ready[0].0;
            for (unit, outcome, _) in &ready {
                self.publish(&unit.file, &unit.file, outcome.diagnostics.clone());
            }
            self.fail(format!(
                "{} is linked into {} and {} into {}: a swap of files of two images at once is \
                 not supported yet; nothing was swapped",
                first.file.display(),
                name(&first.image),
                other.file.display(),
                name(&other.image)
            ));
            return Err(Refused::Failed);
        }
        // The session ends (the baselines' compiles were stopped): nothing more is done.
        if self.stopping.is_cancelled() {
            return Err(Refused::Failed);
        }
        // The program exited or called exec while the save compiled: nothing to link for.
        if let Some(left) = self.program_left(saved, &files, &mut diagnostics) {
            return Err(Refused::Left(left));
        }
        self.progress(Phase::Link, "linking");
        let link_start = Instant::now();
        // Files of the compile database the program never linked, compiled and added to
        // this swap for the symbols the others need (`new_units.rs`), and what each gave.
        let mut pulled: Vec<(PathBuf, Vec<String>)> = Vec::new();
        let mut lookup = None;
        let mut lookup_micros = 0u64;
        // Functions whose running frames would hold objects of a layout the swap changes.
        let mut guards = Vec::new();
        let linked = loop {
            let Some(program) = self.program.as_mut() else {
                return Err(Refused::Failed);
            };
            // Variables whose initializer an earlier save changed without applying it are
            // compared with what the program was given (`Baseline::unapplied`).
            let applied: Vec<Vec<hot_link::AppliedInitializer>> = baselines
                .iter()
                .map(|b| b.as_ref().map(Baseline::applied).unwrap_or_default())
                .collect();
            let requests: Vec<LinkRequest> = ready
                .iter()
                .zip(&baselines)
                .zip(&applied)
                .map(|(((unit, _, object), baseline), applied)| {
                    // The compile unit tells which definition of a global name this file made
                    // (weak defaults, hidden symbols).
                    let compile_unit = program.compile_unit_of(&image, &unit.file);
                    LinkRequest {
                        object,
                        baseline: baseline.as_ref().and_then(|b| b.object.get()),
                        unit: UnitRef {
                            tu: unit.tu,
                            compile_unit,
                            source: unit.file.display().to_string(),
                        },
                        applied,
                    }
                })
                .collect();
            // A patch linked and checked ahead stands for the first link and its checks
            // (it linked: no name was missing); files pulled in relink.
            if let Some(checked) = prelinked.take() {
                guards = checked.guards;
                break Ok(Ok(checked.patch));
            }
            let mut linked = program
                .linker_for(&image)
                .and_then(|linker| link_guarded(linker, &requests).map_err(Into::into));
            let undefined = linked.as_ref().is_ok_and(|result| {
                result.as_ref().is_err_and(|errors| {
                    errors
                        .iter()
                        .any(|e| e.code == hot_link::LinkErrorCode::UndefinedSymbol)
                })
            });
            // A symbol may come from a library loaded since the linker last looked.
            if undefined && program.refresh_libraries() {
                if let Ok(linker) = program.linker_for(&image) {
                    linked = link_guarded(linker, &requests).map_err(Into::into);
                }
            }
            // Names the link could not resolve, taken before the ABI checks: a function
            // removed but still called is refused there as `undefined-symbol` too, and must
            // never send the lookup looking for another definition of it.
            let missing = undefined_names(&linked);
            // Changed layouts and signatures, removed functions still called (worker/abi.rs).
            let linked = linked.map(|result| {
                result.and_then(|patch| {
                    super::abi::check(program, &image, &requests, patch, &mut guards)
                })
            });
            drop(requests);
            if missing.is_empty() {
                break linked;
            }
            let lookup_start = Instant::now();
            let mut found = self.pull_in(&missing, &files);
            // Compiling the files pulled in is compile time, not link time.
            lookup_micros += lookup_start.elapsed().as_micros() as u64;
            let added = std::mem::take(&mut found.found);
            lookup = Some(found);
            if added.is_empty() {
                break linked;
            }
            for (unit, outcome, object, names) in added {
                baselines.push(None);
                diagnostics.push(outcome.diagnostics.clone());
                files.push(unit.file.clone());
                pulled.push((unit.file.clone(), names));
                ready.push((unit, outcome, object));
            }
        };
        let result = match linked {
            Ok(result) => result,
            Err(LinkerError::Process { what, error }) => {
                // The arenas could not be mapped: a denied trace is as much the save's
                // failure as a refused swap, shown where the file is.
                if let Some(code) = process_error_code(&error) {
                    let text = hot_object::display_names(&format!("{what}: {error}")).into_owned();
                    for (file, diagnostics) in files.iter().zip(&mut diagnostics) {
                        diagnostics.push(located(None, file, Severity::Error, code, &text));
                    }
                }
                self.publish_each(&files, diagnostics);
                self.fail_process(&error, &format!("{what}: "));
                return Err(Refused::Failed);
            }
            Err(LinkerError::LibraryNotMapped(text)) => {
                for (file, diagnostics) in files.iter().zip(&mut diagnostics) {
                    diagnostics.push(located(
                        None,
                        file,
                        Severity::Error,
                        crate::program::LIBRARY_NOT_MAPPED,
                        &text,
                    ));
                }
                self.publish_each(&files, diagnostics);
                self.fail_coded(crate::program::LIBRARY_NOT_MAPPED, text);
                return Err(Refused::Failed);
            }
            Err(LinkerError::Other(text)) => {
                self.publish_each(&files, diagnostics);
                self.fail(text);
                return Err(Refused::Failed);
            }
        };
        let patch = match result {
            Ok(p) => p,
            Err(mut errors) => {
                if let Some(lookup) = &lookup {
                    self.explain_undefined(&mut errors, lookup);
                }
                add_refusals(&files, &mut diagnostics, &errors);
                self.publish_each(&files, diagnostics);
                // A file saved to be linked in new (perhaps a test's source that was never
                // meant to be): say that this is what was tried.
                let new_saved: Vec<String> = ready
                    .iter()
                    .filter(|(unit, _, _)| unit.new_unit && unit.file == saved)
                    .map(|(unit, _, _)| unit.file.display().to_string())
                    .collect();
                let text = match new_saved.as_slice() {
                    [file] => format!(
                        "{file} is not part of the running program, and linking it in as a new \
                         translation unit was refused (see its diagnostics); nothing was written"
                    ),
                    _ => "the patch was refused; nothing was written".to_string(),
                };
                self.set_state(State::Running, Some(text));
                return Err(Refused::Failed);
            }
        };
        // (Added to the objects' reads, which the compile threads did.)
        micros.link += (link_start.elapsed().as_micros() as u64).saturating_sub(lookup_micros);
        micros.compile += lookup_micros;
        micros.compile_total += lookup_micros;
        for (file, diagnostics) in files.iter().zip(&mut diagnostics) {
            let source = file.display().to_string();
            diagnostics.extend(note_diagnostics(&patch, &source, file));
        }
        // From here each way out publishes every file's list once, complete with what the
        // apply adds (a refusal's code, `still-running`): one list per file and save.

        // C++ code: a table the unwinder cannot take is worth a warning (`unwind.rs`).
        let unwinds_cxx_exceptions = ready.iter().any(|(_, _, object)| {
            object
                .symbols
                .iter()
                .any(|s| s.name == "__gxx_personality_v0")
        });
        // Units linked in new run their static constructors once, before the commit.
        let new_units: Vec<PathBuf> = ready
            .iter()
            .filter(|(unit, _, _)| unit.new_unit)
            .map(|(unit, _, _)| unit.file.clone())
            .collect();
        // Once per process: a unit undone and linked in again finds its variables built.
        let new_sources: Vec<String> = new_units
            .iter()
            .filter(|f| {
                self.program
                    .as_ref()
                    .is_none_or(|p| !p.constructed_units.contains(*f))
            })
            .map(|f| f.display().to_string())
            .collect();
        let constructors: Vec<hot_link::ConstructorCall> = patch
            .constructors
            .iter()
            .filter(|c| new_sources.contains(&c.unit))
            .cloned()
            .collect();
        // Each object becomes its file's baseline, remembering the variables whose
        // initializer the program still does not have.
        let new_baselines: Vec<(PathBuf, Baseline)> = ready
            .into_iter()
            .zip(&baselines)
            .map(|((unit, _, object), previous)| {
                let source = unit.file.display().to_string();
                let noted = patch
                    .unapplied_initializers
                    .iter()
                    .filter(|u| u.unit == source)
                    .map(|u| u.identity.as_str());
                let baseline = Baseline {
                    argv: unit.job.flags().to_vec(),
                    object: BaselineObject::parsed(object),
                    unapplied: Baseline::unapplied_after(previous.as_ref(), noted),
                };
                (unit.file, baseline)
            })
            .collect();
        if patch.is_empty() {
            self.publish_each(&files, diagnostics);
            self.baselines.extend(new_baselines);
            // Every save is answered: a front end driving the session (a script on `watch
            // --json`, an editor's status line) can tell this save was seen and did nothing.
            self.emit(SessionEvent::Unchanged {
                file: saved.to_owned(),
                micros,
            });
            self.set_state(State::Running, Some(unchanged_text(saved, &micros)));
            return Ok(None);
        }

        // ... or while the files the link pulled in compiled: nothing is written.
        if self.stopping.is_cancelled() {
            return Err(Refused::Failed);
        }
        if let Some(left) = self.program_left(saved, &files, &mut diagnostics) {
            return Err(Refused::Left(left));
        }
        self.set_state(State::Swapping, None);
        self.progress(Phase::Swap, "swapping");
        let mut plan = write_plan(&patch);
        let mut call_guards = Vec::new();
        if let Some(program) = self.program.as_mut() {
            plan.watch = super::abi::old_bodies(program, &image, &patch);
            plan.refuse_frames = super::abi::guarded_bodies(&guards);
            // Old bodies built with -fipa-ra whose callees would clobber more: no frame may
            // run them when the swap commits.
            call_guards = super::ipa_ra::call_guards(
                program,
                &image,
                super::ipa_ra::Change::Save(&patch),
                &plan.watch,
            );
            plan.refuse_frames
                .extend(super::ipa_ra::guarded_bodies(&call_guards));
            // A library unloaded or loaded again between the link and this write: caught
            // with the threads stopped, nothing written.
            plan.verify = program.verify_of(&image);
        }
        let swap_start = Instant::now();
        let report = self.apply_with_unwind(&plan, &patch, unwinds_cxx_exceptions, &constructors);
        if let Err(hot_process::ProcessError::FrameRefused(frames)) = &report {
            // A changed layout whose old objects a running frame holds: refused like the
            // link's ABI checks, on the type's declaration, the program left as it was.
            let (calls, layouts): (Vec<_>, Vec<_>) = frames
                .iter()
                .cloned()
                .partition(|f| super::ipa_ra::is_key(&f.function));
            let mut errors = super::abi::frame_refusals(&guards, &layouts, |change, holder| {
                change.frame_refusal(holder)
            });
            // An -fipa-ra caller still running whose callee would clobber more: on the
            // callee.
            let objects: Vec<(&Path, &Object)> = new_baselines
                .iter()
                .filter_map(|(file, b)| Some((file.as_path(), b.object.get()?)))
                .collect();
            errors.extend(super::ipa_ra::frame_refusals(
                &call_guards,
                &calls,
                &objects,
                saved,
            ));
            drop(objects);
            add_refusals(&files, &mut diagnostics, &errors);
            self.publish_each(&files, diagnostics);
            self.set_state(
                State::Running,
                Some("the patch was refused; nothing was written".to_string()),
            );
            return Err(Refused::Failed);
        }
        if let Err(e) = &report {
            if let hot_process::ProcessError::HeldByDebugger { .. } = e {
                self.hold_save(saved);
            }
            if let Some(code) = process_error_code(e) {
                // The save did not reach the program: say so where each file is shown, until
                // a later save of it links again.
                let text = hot_object::display_names(&e.to_string()).into_owned();
                for (file, diagnostics) in files.iter().zip(&mut diagnostics) {
                    diagnostics.push(located(None, file, Severity::Error, code, &text));
                }
            }
            self.publish_each(&files, diagnostics);
            self.fail_process(e, "");
            return Err(Refused::Failed);
        }
        let live = report.map(|r| r.live).unwrap_or_default();
        let Some(program) = self.program.as_mut() else {
            self.publish_each(&files, diagnostics);
            return Err(Refused::Failed);
        };
        micros.swap = swap_start.elapsed().as_micros() as u64;
        if let Some(linker) = program.linker_of_mut(&image) {
            linker.commit(&patch);
        }
        program.record_library_writes(&image, &patch.entries);
        super::abi::remember_bodies(program, &patch);
        let undo_guards = super::abi::undo_guards(program, &image, &guards);
        let undo_watch = super::abi::placed(&patch);
        // Swapped functions a thread was inside: their running calls finish in the old body.
        let objects: Vec<(&Path, &Object)> = new_baselines
            .iter()
            .filter_map(|(file, b)| Some((file.as_path(), b.object.get()?)))
            .collect();
        let still_running = super::abi::live_diagnostics(&live, &objects);
        drop(objects);
        self.record_perf_map(&patch.bodies);
        let debugger_entry = self.announce_to_debuggers(&patch);
        let Some(program) = self.program.as_mut() else {
            self.publish_each(&files, diagnostics);
            return Err(Refused::Failed);
        };
        let build_id = program
            .image
            .as_ref()
            .and_then(|i| i.exe.image.build_id.clone());
        if self.replay_build_id != build_id {
            self.replay.clear();
            self.replay_build_id = build_id;
        }
        let mut journaled = Vec::with_capacity(new_baselines.len());
        for (file, baseline) in new_baselines {
            let previous = self.baselines.insert(file.clone(), baseline);
            if !self.replay.contains(&file) {
                self.replay.push(file.clone());
            }
            // Swapped into the library as loaded now: nothing of it to re-apply.
            self.moved_files.retain(|(moved, _)| *moved != file);
            journaled.push((file, previous));
        }
        if let Some(program) = self.program.as_mut() {
            program.added_units.extend(new_units.iter().cloned());
            program.constructed_units.extend(new_units.iter().cloned());
            program.journal.push(AppliedPatch {
                image,
                saved: saved.to_owned(),
                files: journaled,
                debugger_entry,
                added_units: new_units,
                undo_guards,
                undo_watch,
                functions: patch.swapped.iter().chain(&patch.added).cloned().collect(),
            });
        }
        self.report_pulled_in(&pulled);
        self.seq += 1;
        let summary = SwapSummary {
            seq: self.seq,
            file: saved.to_owned(),
            files,
            swapped: patch.swapped.clone(),
            added: patch.added.clone(),
            updated: updated_objects(&patch),
            skipped: patch.skipped,
            micros,
        };
        // The lists come before the swap event, as a refusal's would; a `still-running`
        // note tells of the swap itself, so lists with one follow it.
        let after_swap = !still_running.is_empty();
        for (unit, diagnostic) in still_running {
            diagnostics[unit].push(diagnostic);
        }
        if !after_swap {
            self.publish_each(&summary.files, std::mem::take(&mut diagnostics));
        }
        // Only bodies nothing reaches were written (an edited weak default whose override,
        // a save's strong definition, now remembers it, to run once it is deleted): nothing
        // the program runs changed, so the save is answered as unchanged. It is journaled
        // all the same: undo takes the remembered default back with the baseline.
        let unreachable_only = patch.entries.is_empty()
            && patch.in_place.is_empty()
            && constructors.is_empty()
            && summary.swapped.is_empty()
            && summary.added.is_empty();
        if unreachable_only {
            self.emit(SessionEvent::Unchanged {
                file: saved.to_owned(),
                micros: summary.micros,
            });
        } else {
            self.emit(SessionEvent::Swap(summary.clone()));
        }
        if after_swap {
            self.publish_each(&summary.files, diagnostics);
        }
        let (pid, children) = match self.program.as_ref() {
            Some(p) => (p.debuggee.pid(), p.debuggee.forked_children()),
            None => (0, Vec::new()),
        };
        if !children.is_empty() && children != self.warned_children {
            let pids: Vec<String> = children.iter().map(|c| c.to_string()).collect();
            self.message(
                Severity::Warning,
                format!(
                    "swapped in pid {pid} only: its {} child process{} running the same program \
                     (pid {}) {} forked before this swap and keep{} the old code; restart \
                     them (or the program) to run the new code there",
                    children.len(),
                    if children.len() == 1 { "" } else { "es" },
                    pids.join(", "),
                    if children.len() == 1 { "was" } else { "were" },
                    if children.len() == 1 { "s" } else { "" },
                ),
            );
        }
        self.warned_children = children;
        if unreachable_only {
            self.set_state(State::Running, Some(unchanged_text(saved, &summary.micros)));
        } else {
            self.update_status(|s| {
                s.state = State::Running;
                s.last_swap = Some(summary.clone());
                s.message = None;
            });
        }
        self.spill_journal();
        Ok(Some(summary))
    }

    /// Keep on disk the baselines that undo restores, but for the last swap's: each is a
    /// parsed object of its whole file (about 1.9 MiB for 2,000 functions), and a session
    /// of many saves of one file would otherwise hold one per save. Undo of the last swap
    /// finds its baselines parsed; an older one is parsed again when undo reaches it.
    /// Called after the swap was reported, so the writes do not delay it.
    fn spill_journal(&mut self) {
        let Some(program) = self.program.as_ref() else {
            return;
        };
        let older = program.journal.len().saturating_sub(1);
        let mut spills = Vec::new();
        for (entry, applied) in program.journal[..older].iter().enumerate() {
            for (slot, (file, baseline)) in applied.files.iter().enumerate() {
                if let Some(baseline) = baseline {
                    if baseline.object.is_parsed() {
                        spills.push((entry, slot, file.clone()));
                    }
                }
            }
        }
        for (entry, slot, file) in spills {
            let path = self.scratch_object(&file);
            let Some(program) = self.program.as_mut() else {
                return;
            };
            let Some(Some(baseline)) = program
                .journal
                .get_mut(entry)
                .and_then(|a| a.files.get_mut(slot))
                .map(|(_, b)| b)
            else {
                continue;
            };
            if let Some(on_disk) = baseline.object.spilled(path) {
                baseline.object = on_disk;
            }
        }
    }

    /// Handle the program's event that came while the save waited for a compile
    /// (`Worker::deferred`), in its place: before the save links or writes. Whether the
    /// program the save was for is gone — it exited (the save's outcome is `process-exited`,
    /// said on each file too, as a write refused for that reason is) or called exec (the save
    /// is made again in the new image by `on_saved`); each file's list is published then.
    fn program_left(
        &mut self,
        saved: &Path,
        files: &[PathBuf],
        diagnostics: &mut [Vec<Diagnostic>],
    ) -> Option<ProgramLeft> {
        let event = self.deferred.take()?;
        let left = match &event {
            ProcessEvent::Exited { .. } => ProgramLeft::Exited,
            ProcessEvent::Exec { .. } => ProgramLeft::Exec,
            // Output is forwarded, never deferred.
            ProcessEvent::Output { .. } => {
                self.on_process_event(event);
                return None;
            }
        };
        self.on_process_event(event);
        let name = saved.display();
        if left == ProgramLeft::Exec {
            // The save made again publishes the files' lists: not now as well.
            self.message(
                Severity::Information,
                format!(
                    "the program called exec while {name} was compiled: nothing was written; \
                     the save is made again in its new image"
                ),
            );
            return Some(left);
        }
        let text = format!("the program exited while {name} was compiled: nothing was swapped");
        let exited = hot_process::ProcessError::Exited.code();
        for (file, diagnostics) in files.iter().zip(diagnostics.iter_mut()) {
            diagnostics.push(located(None, file, Severity::Error, exited, &text));
        }
        self.publish_each(files, diagnostics.to_vec());
        // The state stays `exited`, with the exit's code and signal; the message is the save's.
        self.update_status(|s| {
            s.message = Some(text.clone());
            s.code = Some(exited.to_owned());
        });
        self.message(Severity::Error, text);
        Some(left)
    }

    /// Publish the diagnostics of each file (compiled as its own translation unit), all
    /// recorded before any is published: a header the files include is published once, with
    /// what all of them say now (not first with what the others said before this save).
    fn publish_each(&mut self, files: &[PathBuf], diagnostics: Vec<Vec<Diagnostic>>) {
        let mut touched = std::collections::BTreeSet::new();
        for (file, diagnostics) in files.iter().zip(diagnostics) {
            touched.extend(self.record_diagnostics(file, file, diagnostics));
        }
        if let Some(first) = files.first() {
            self.emit_diagnostics(touched, first);
        }
    }

    pub(super) fn undo(&mut self) {
        // A library that moved (dlclose, dlopen again) took the swaps made into it along:
        // undo must not write their reverts where the old load was, nor revert an older
        // swap in their place.
        let last_library = self
            .program
            .as_ref()
            .and_then(|p| p.journal.last())
            .and_then(|a| a.image.library().map(str::to_string));
        self.forget_moved_libraries();
        let Some(program) = self.program.as_mut() else {
            self.fail("no program is running: there is no swap to undo".into());
            return;
        };
        if let Some(library) = last_library.filter(|lib| {
            !program
                .journal
                .iter()
                .any(|a| a.image.library() == Some(lib.as_str()))
        }) {
            self.message(
                Severity::Information,
                format!(
                    "nothing was undone: the last swap went into {library}, which has been \
                     unloaded since (its swaps went with the old load); undo again to revert \
                     the swap before it"
                ),
            );
            return;
        }
        let Some(applied) = program.journal.pop() else {
            self.message(Severity::Information, "there is no swap to undo");
            return;
        };
        let reverts = program
            .linker_of(&applied.image)
            .and_then(|l| l.revert_plan());
        let Some(reverts) = reverts else {
            program.journal.push(applied);
            self.fail("the last swap cannot be reverted".into());
            return;
        };
        // A thread in the swap's new code holding an object of a layout it changed refuses
        // the undo, as such a frame refuses a save: the old code would read it. So does one
        // in a body built with -fipa-ra whose callee the undo gives back a wider body: the
        // swapped bodies keep running after the undo, compiled against the callees undone.
        let call_guards = super::ipa_ra::call_guards(
            program,
            &applied.image,
            super::ipa_ra::Change::Undo(&reverts),
            &applied.undo_watch,
        );
        let mut refuse_frames = super::abi::guarded_bodies(&applied.undo_guards);
        refuse_frames.extend(super::ipa_ra::guarded_bodies(&call_guards));
        let plan = WritePlan {
            commit_data: reverts.in_place.iter().map(data_write).collect(),
            commit: reverts.entries.iter().map(entry_write).collect(),
            watch: applied.undo_watch.clone(),
            refuse_frames,
            verify: program.verify_of(&applied.image),
            ..WritePlan::default()
        };
        let report = match program.debuggee.apply(&plan) {
            Ok(report) => report,
            Err(hot_process::ProcessError::FrameRefused(frames)) => {
                let (calls, layouts): (Vec<_>, Vec<_>) = frames
                    .into_iter()
                    .partition(|f| super::ipa_ra::is_key(&f.function));
                let mut texts =
                    super::abi::frame_refusals(&applied.undo_guards, &layouts, |c, h| {
                        c.undo_refusal(h)
                    });
                texts.extend(super::ipa_ra::undo_refusals(&call_guards, &calls));
                program.journal.push(applied);
                self.fail(hot_object::display_names(&texts.join("\n")).into_owned());
                return;
            }
            Err(e) => {
                // The linker still holds the swap, as the process does: undo can be retried.
                program.journal.push(applied);
                self.fail_process(&e, "undo failed: ");
                return;
            }
        };
        if let Some(linker) = program.linker_of_mut(&applied.image) {
            linker.revert_last();
        }
        // What the library's entries hold now is what a later load must be told by.
        program.record_library_writes(&applied.image, &reverts.entries);
        // Units this swap linked in are not part of the program any more (their code and
        // data stay in the arenas, unreachable from the reverted entries).
        for file in &applied.added_units {
            program.added_units.remove(file);
        }
        if let Some(entry) = applied.debugger_entry {
            self.withdraw_from_debuggers(entry);
        }
        let mut reverted_files = Vec::with_capacity(applied.files.len());
        for (file, previous) in applied.files {
            match previous {
                Some(b) => {
                    self.baselines.insert(file.clone(), b);
                }
                None => {
                    self.baselines.remove(&file);
                }
            }
            reverted_files.push(file.display().to_string());
        }
        let names: Vec<String> = reverts
            .writes()
            .map(|e| hot_object::display_name(&e.function).into_owned())
            .collect();
        let which = match reverted_files.as_slice() {
            [one] if *one == applied.saved.display().to_string() => one.clone(),
            files => format!("{} ({})", applied.saved.display(), files.join(", ")),
        };
        // The calls already in the undone bodies finish there (`still-running`).
        let mut running: Vec<(String, Vec<String>)> = Vec::new();
        for frame in &report.live {
            let tid = frame.tid.to_string();
            match running.iter_mut().find(|(f, _)| *f == frame.function) {
                Some((_, tids)) if !tids.contains(&tid) => tids.push(tid),
                Some(_) => {}
                None => running.push((frame.function.clone(), vec![tid])),
            }
        }
        let still = running
            .iter()
            .map(|(function, tids)| {
                format!(
                    "; `{}` is still running its swapped body (thread{} {}): the calls already \
                     in it finish there",
                    hot_object::display_name(function),
                    if tids.len() == 1 { "" } else { "s" },
                    tids.join(", ")
                )
            })
            .collect::<String>();
        self.message(
            Severity::Information,
            format!(
                "reverted the last swap of {which} ({}){still}",
                names.join(", ")
            ),
        );
        self.set_state(State::Running, Some("undone".into()));
    }
}

/// Compile every unit, `jobs` at a time (each in its own thread; one job runs here), and
/// report each file as it finishes. Results come back in the units' order.
pub(super) fn compile_all(
    units: Vec<UnitJob>,
    jobs: usize,
    events: &Sender<SessionEvent>,
    cancel: &Cancel,
) -> Vec<Compiled> {
    let total = units.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let run = |unit: &UnitJob| {
        let result = compile_one(unit, cancel);
        let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if total > 1 {
            let name = unit.file.file_name().map_or_else(
                || unit.file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let how = match &result {
                (Ok(o), ..) if o.success => "compiled",
                _ => "failed to compile",
            };
            // A front end that went away stops listening; the compile goes on regardless.
            let _ = events.send(SessionEvent::Progress(Progress::Report {
                phase: Phase::Compile,
                message: format!("{how} {name} ({finished}/{total})"),
            }));
        }
        result
    };
    let results = in_parallel(&units, jobs, run);
    units
        .into_iter()
        .zip(results)
        .map(|(unit, (outcome, object, deps, read_micros))| Compiled {
            unit,
            outcome,
            object,
            deps,
            read_micros,
        })
        .collect()
}

/// `f` of every item, `jobs` items at a time (each job a thread of its own, taking the next
/// item when it is done; one job runs here). Results come back in the items' order.
pub(super) fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if jobs <= 1 || items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.min(items.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            break;
                        };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        // A job that panicked (a bug) panics here, as it would have without threads.
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Compile one unit and read its object and dependency list (no worker state: this runs
/// on the compile threads).
#[allow(clippy::type_complexity)]
fn compile_one(
    unit: &UnitJob,
    cancel: &Cancel,
) -> (
    Result<CompileOutcome, (Option<&'static str>, String)>,
    Option<Object>,
    Option<Vec<PathBuf>>,
    u64,
) {
    let outcome = match compile::run_cancellable(&unit.job, cancel, compile::Priority::Normal) {
        Ok(Some(outcome)) => Ok(outcome),
        Ok(None) => Err((
            None,
            format!(
                "the compile of {} was stopped: the session ends",
                unit.file.display()
            ),
        )),
        Err(e) => Err((Some(e.code()), e.to_string())),
    };
    let deps = std::fs::read_to_string(&unit.depfile).ok().map(|text| {
        compile::parse_depfile(&text, &unit.job.directory)
            .into_iter()
            .filter(|d| *d != unit.file)
            .collect()
    });
    let _ = std::fs::remove_file(&unit.depfile);
    match outcome {
        Ok(o) if o.success => {
            let read_start = Instant::now();
            let read = super::baseline::parse_object_file(&unit.job.output);
            let read_micros = read_start.elapsed().as_micros() as u64;
            match read {
                Ok(object) => (Ok(o), Some(object), deps, read_micros),
                Err(e) => (Err((None, e)), None, deps, read_micros),
            }
        }
        other => (other, None, deps, 0),
    }
}

/// A patch linked ahead of its save (`ahead.rs`) that passed the save's ABI checks, with the
/// frame guards those checks made: valid while the linker and the baseline are what it was
/// linked against, which the save checks before it takes it.
pub(super) struct Checked {
    pub(super) patch: hot_link::Patch,
    pub(super) guards: Vec<super::abi::FrameGuard>,
}

/// Object files a save (or a lookup in the unlinked files) compiled, removed when it is
/// done with them (by every way out of it): unlinking a just-written object frees its page cache, 0.15 ms for a 2,000-function
/// file, which the compile thread paid before the link could start. Their names are unique
/// (`scratch_object`), so nothing else can be using them.
pub(super) struct RemoveWhenDone(pub(super) Vec<PathBuf>);

impl Drop for RemoveWhenDone {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The names of undefined symbols a failed link reports (each once, in order).
fn undefined_names<E>(
    linked: &Result<Result<hot_link::Patch, Vec<hot_link::LinkError>>, E>,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Ok(Err(errors)) = linked {
        for e in errors {
            if e.code != hot_link::LinkErrorCode::UndefinedSymbol {
                continue;
            }
            if let Some(name) = &e.symbol {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
    }
    names
}

/// The error diagnostics of refusals (`errors`), each added to the file of its unit.
fn add_refusals(
    files: &[PathBuf],
    diagnostics: &mut [Vec<Diagnostic>],
    errors: &[hot_link::LinkError],
) {
    for (file, diagnostics) in files.iter().zip(diagnostics) {
        let source = file.display().to_string();
        diagnostics.extend(refusal_diagnostics(errors, &source, file));
    }
}

/// The error diagnostics of the refusals of unit `source`, shown in `file`.
pub(super) fn refusal_diagnostics(
    errors: &[hot_link::LinkError],
    source: &str,
    file: &Path,
) -> Vec<Diagnostic> {
    grouped(
        errors.iter().filter(|e| e.unit == source).map(|e| Finding {
            code: e.code.diagnostic_code(),
            symbol: e.symbol.as_deref(),
            line: e.line.as_ref(),
            message: &e.message,
            severity: Severity::Error,
        }),
        file,
    )
}

/// A diagnostic one unit's compile says in another source file (b.c includes a.c and
/// fails there, while a.c alone compiles): "a.c:8: `K` undeclared" would read as a.c's own
/// error, so it says which compile it comes from — unless that file's own compile in this
/// swap says the very same (then it is the file's, and shown once). Headers are left as
/// they are: only compiled as part of their includers, and one error every includer
/// says is shown once.
fn name_includers(compiled: &mut [Compiled]) {
    let own: Vec<(PathBuf, Vec<Diagnostic>)> = compiled
        .iter()
        .filter_map(|c| {
            let outcome = c.outcome.as_ref().ok()?;
            Some((c.unit.file.clone(), outcome.diagnostics.clone()))
        })
        .collect();
    let said_by_itself = |d: &Diagnostic| {
        own.iter()
            .any(|(file, list)| *file == d.file && list.contains(d))
    };
    for c in compiled.iter_mut() {
        let Ok(outcome) = c.outcome.as_mut() else {
            continue;
        };
        let unit = &c.unit.file;
        let name = unit.file_name().map_or_else(
            || unit.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        for d in &mut outcome.diagnostics {
            if d.file != *unit && has_extension(&d.file, SOURCE_EXTENSIONS) && !said_by_itself(d) {
                d.message
                    .push_str(&format!(" (compiled as part of {name})"));
            }
        }
    }
}

/// The process side's plan for a patch: arena writes and slot copies first, then the
/// in-place data and the entries in one atomic commit.
fn write_plan(patch: &hot_link::Patch) -> WritePlan {
    WritePlan {
        prepare: patch
            .writes
            .iter()
            .map(|w| hot_process::Write {
                addr: w.addr.0,
                bytes: w.bytes.clone(),
                expected: None,
                what: w.what.clone(),
            })
            .collect(),
        copies: patch
            .slot_copies
            .iter()
            .map(|c| hot_process::SlotCopy {
                src: c.src.0,
                dst: c.dst.0,
            })
            .collect(),
        // Read-only objects the program can read now change with the entries, while
        // every thread is stopped, checked and rolled back like them.
        commit_data: patch.in_place.iter().map(data_write).collect(),
        commit: patch.entries.iter().map(entry_write).collect(),
        protected: patch.protected.iter().map(|r| r.start.0..r.end.0).collect(),
        watch: Vec::new(),
        refuse_frames: Vec::new(),
        verify: Vec::new(),
    }
}

/// `Linker::link_units`, with a panic (a bug of hot-link's, met on input it did not expect)
/// turned into a message: the link is pure and wrote nothing, so the session and the
/// program go on as they were.
pub(super) fn link_guarded(
    linker: &hot_link::Linker,
    requests: &[LinkRequest<'_>],
) -> Result<Result<hot_link::Patch, Vec<hot_link::LinkError>>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| linker.link_units(requests))).map_err(
        |panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            let sources: Vec<&str> = requests.iter().map(|r| r.unit.source.as_str()).collect();
            format!(
                "internal error of hot-link while linking {}: {what}; nothing was written and \
                 the program runs on unchanged — please report this with the file",
                sources.join(", ")
            )
        },
    )
}

/// The status message of a save that changed nothing, as `hot-lsp watch` prints it too.
pub(crate) fn unchanged_text(file: &Path, micros: &Micros) -> String {
    format!(
        "{}: no function changed (compile {:.1} ms, link {:.1} ms)",
        file.display(),
        micros.compile as f64 / 1000.0,
        micros.link as f64 / 1000.0
    )
}

/// The diagnostic code (DESIGN.md 3.3) of a swap the process refused, for the failures that
/// have one: the trace denied, memory that cannot be written, the program gone.
fn process_error_code(e: &hot_process::ProcessError) -> Option<&'static str> {
    match e {
        hot_process::ProcessError::PermissionDenied(_) => Some("permission-denied"),
        hot_process::ProcessError::Protection { .. } => Some("protection-failure"),
        hot_process::ProcessError::Exited => Some("process-exited"),
        hot_process::ProcessError::Launch { .. }
        | hot_process::ProcessError::Unexpected { .. }
        | hot_process::ProcessError::Other(_)
        | hot_process::ProcessError::CallStillRunning(_)
        | hot_process::ProcessError::FrameRefused(_)
        | hot_process::ProcessError::HeldByDebugger { .. } => None,
    }
}

/// Per symbol and code, at most this many source lines get a diagnostic of their own; the
/// rest are summed up in one more. A missing symbol used all over a big file (Lua's lvm.c:
/// one macro, ~90 relocations) would otherwise bury the editor's problem list.
const LINES_PER_SYMBOL: usize = 5;

/// At most this many of the lines beyond [`LINES_PER_SYMBOL`] are named in the summary.
const SUMMARY_LINES: usize = 10;

/// The diagnostics of the linker's notes (warnings, information) about the unit `source`,
/// shown in `file`.
pub(super) fn note_diagnostics(
    patch: &hot_link::Patch,
    source: &str,
    file: &Path,
) -> Vec<Diagnostic> {
    grouped(
        patch
            .notes
            .iter()
            .filter(|note| note.unit == source)
            .map(|note| Finding {
                code: note.code,
                symbol: note.symbol.as_deref(),
                line: note.line.as_ref(),
                message: &note.message,
                severity: match note.severity {
                    hot_link::NoteSeverity::Warning => Severity::Warning,
                    hot_link::NoteSeverity::Information => Severity::Information,
                },
            }),
        file,
    )
}

/// A linker error or note, as far as turning it into a diagnostic goes.
pub(super) struct Finding<'a> {
    pub(super) code: &'a str,
    pub(super) symbol: Option<&'a str>,
    pub(super) line: Option<&'a hot_object::SourceLine>,
    pub(super) message: &'a str,
    pub(super) severity: Severity,
}

/// Where a finding is, as compared for grouping: the file and line (no column: the calls of
/// one line are one place to the user).
type Place = Option<(PathBuf, u32)>;

/// The findings of one code and symbol beyond [`LINES_PER_SYMBOL`] lines.
struct Overflow<'a> {
    /// Index of their summary among the diagnostics.
    at: usize,
    references: usize,
    lines: Vec<Option<&'a hot_object::SourceLine>>,
}

/// One diagnostic for findings of one code, symbol and line (the linker reports each
/// relocation: a line calling a missing function three times is three findings), and per
/// code and symbol at most [`LINES_PER_SYMBOL`] lines plus one summary of the others.
/// Findings without a symbol are grouped when their message is the same too. Diagnostics
/// come in source order (those without a line first), each group with its first finding's
/// message and column.
pub(super) fn grouped<'a>(
    findings: impl Iterator<Item = Finding<'a>>,
    file: &Path,
) -> Vec<Diagnostic> {
    // (finding, references on its line), in the order of their first findings.
    let mut groups: Vec<(Finding<'a>, usize)> = Vec::new();
    let mut index: HashMap<(&'a str, &'a str, bool, Place), usize> = HashMap::new();
    for finding in findings {
        let place: Place = finding.line.map(|l| (l.file.clone(), l.line));
        let key = (
            finding.code,
            finding.symbol.unwrap_or(finding.message),
            finding.symbol.is_some(),
            place,
        );
        match index.get(&key) {
            Some(&i) => groups[i].1 += 1,
            None => {
                index.insert(key, groups.len());
                groups.push((finding, 1));
            }
        }
    }

    // Source order, not the linker's (relocation offsets: at -O2 the lines of a function
    // come in any order): the lines shown for a symbol are its first ones in the file.
    groups.sort_by_cached_key(|(f, _)| f.line.map(|l| (l.file.clone(), l.line)));
    // Per (code, symbol): the lines shown so far, and the summary of the others.
    let mut shown: HashMap<(&str, &str), usize> = HashMap::new();
    let mut overflows: HashMap<(&str, &str), Overflow> = HashMap::new();
    let mut diagnostics = Vec::new();
    for (finding, references) in &groups {
        if let Some(symbol) = finding.symbol {
            let key = (finding.code, symbol);
            let count = shown.entry(key).or_insert(0);
            if *count >= LINES_PER_SYMBOL {
                let overflow = overflows.entry(key).or_insert_with(|| {
                    // The summary sits on the first line it stands for.
                    diagnostics.push(located(
                        finding.line,
                        file,
                        finding.severity,
                        finding.code,
                        "",
                    ));
                    Overflow {
                        at: diagnostics.len() - 1,
                        references: 0,
                        lines: Vec::new(),
                    }
                });
                overflow.references += references;
                overflow.lines.push(finding.line);
                continue;
            }
            *count += 1;
        }
        let mut diagnostic = located(
            finding.line,
            file,
            finding.severity,
            finding.code,
            finding.message,
        );
        if *references > 1 {
            diagnostic.message.push_str(&format!(
                " (and {} more reference{} on this line)",
                references - 1,
                plural(references - 1)
            ));
        }
        diagnostics.push(diagnostic);
    }
    for ((_, symbol), overflow) in overflows {
        // Lines of the summary's own file by number, others (a header's) by file and line.
        let home = overflow.lines.first().copied().flatten().map(|l| &l.file);
        let mut lines: Vec<String> = overflow
            .lines
            .iter()
            .take(SUMMARY_LINES)
            .map(|line| match line {
                Some(l) if Some(&l.file) == home => l.line.to_string(),
                Some(l) => format!("{}:{}", l.file.display(), l.line),
                None => "unknown".to_owned(),
            })
            .collect();
        if overflow.lines.len() > lines.len() {
            lines.push("…".to_owned());
        }
        diagnostics[overflow.at].message = format!(
            "… and {} more reference{} to `{}` on {} other line{} (line{} {})",
            overflow.references,
            plural(overflow.references),
            hot_object::display_name(symbol),
            overflow.lines.len(),
            plural(overflow.lines.len()),
            plural(overflow.lines.len()),
            lines.join(", ")
        );
    }
    diagnostics
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A linker finding as a diagnostic on the source line it is about (the first line of the
/// saved file when the object's DWARF has none for it).
fn located(
    line: Option<&hot_object::SourceLine>,
    file: &Path,
    severity: Severity,
    code: &str,
    message: &str,
) -> Diagnostic {
    Diagnostic {
        file: line.map_or_else(|| file.to_owned(), |l| l.file.clone()),
        line: line.map_or(1, |l| l.line),
        column: line.map_or(1, |l| l.column.max(1)),
        end_line: None,
        end_column: None,
        severity,
        code: code.to_string(),
        message: message.to_string(),
    }
}

/// An entry jump as a write the process side checks (`expected`) before it writes.
fn entry_write(entry: &hot_link::EntryWrite) -> hot_process::Write {
    hot_process::Write {
        addr: entry.addr.0,
        bytes: entry.bytes.clone(),
        expected: Some(entry.expected.clone()),
        what: format!("entry of {}", hot_object::display_name(&entry.function)),
    }
}

/// An in-place update of a read-only object (its `function` is the object's name).
fn data_write(update: &hot_link::EntryWrite) -> hot_process::Write {
    hot_process::Write {
        what: format!(
            "in-place update of {}",
            hot_object::display_name(&update.function)
        ),
        ..entry_write(update)
    }
}

/// The read-only objects a patch rewrites in place, each once, in the patch's order.
fn updated_objects(patch: &hot_link::Patch) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for write in &patch.in_place {
        if !names.contains(&write.function) {
            names.push(write.function.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32) -> hot_object::SourceLine {
        hot_object::SourceLine {
            file: PathBuf::from("/w/main.c"),
            line,
            column: 5,
        }
    }

    fn undefined<'a>(symbol: &'a str, line: &'a hot_object::SourceLine) -> Finding<'a> {
        Finding {
            code: "undefined-symbol",
            symbol: Some(symbol),
            line: Some(line),
            message: "undefined symbol",
            severity: Severity::Error,
        }
    }

    #[test]
    fn references_of_one_line_are_one_diagnostic_and_lines_are_capped_per_symbol() {
        let lines: Vec<hot_object::SourceLine> = (10..20).map(at).collect();
        // `a`: three references on line 10, one on each of lines 11..=19; `b` on line 10.
        let mut findings = vec![
            undefined("a", &lines[0]),
            undefined("a", &lines[0]),
            undefined("b", &lines[0]),
            undefined("a", &lines[0]),
        ];
        // The linker's order is that of relocation offsets, not of lines.
        for line in lines[1..].iter().rev() {
            findings.push(undefined("a", line));
        }
        findings.push(undefined("a", &lines[9]));
        let diagnostics = grouped(findings.into_iter(), Path::new("/w/main.c"));
        let shown: Vec<(u32, &str)> = diagnostics
            .iter()
            .map(|d| (d.line, d.message.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (10, "undefined symbol (and 2 more references on this line)"),
                (10, "undefined symbol"),
                (11, "undefined symbol"),
                (12, "undefined symbol"),
                (13, "undefined symbol"),
                (14, "undefined symbol"),
                (
                    15,
                    "… and 6 more references to `a` on 5 other lines (lines 15, 16, 17, 18, 19)"
                ),
            ]
        );
    }

    #[test]
    fn findings_without_a_symbol_merge_only_when_their_message_is_the_same() {
        let line = at(3);
        let finding = |message| Finding {
            code: "unsupported-relocation",
            symbol: None,
            line: Some(&line),
            message,
            severity: Severity::Error,
        };
        let diagnostics = grouped(
            [finding("x"), finding("y"), finding("x")].into_iter(),
            Path::new("/w/main.c"),
        );
        let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages, ["x (and 1 more reference on this line)", "y"]);
    }
}
