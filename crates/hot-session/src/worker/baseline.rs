//! Compile commands and baselines: which command compiles a file, and the object of the
//! text the program was built from, against which a save is compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hot_object::Object;

use super::{has_extension, Baseline, BaselineObject, Worker, SOURCE_EXTENSIONS};
use crate::compile::{self, Cancel, CompileJob, Priority};
use crate::compile_db::{normalize, CompileDatabase, CompileEntry};
use crate::program::{cu_source, UnitMatch};
use crate::{BaselineProgress, Phase, Severity};

/// How long after its last change an unreadable compile database may still be in the middle
/// of a write.
const DATABASE_WRITE_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the compile database at `path`, which did not parse, may be in the middle of a
/// write: empty (truncated, not yet written) or changed within [`DATABASE_WRITE_WINDOW`].
/// The session's idle work reads it at any time, so a build or a script rewriting it in
/// place is caught between the truncation and the write.
fn database_being_written(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    let recent = metadata
        .modified()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < DATABASE_WRITE_WINDOW);
    metadata.len() == 0 || recent
}

impl Worker {
    /// The compile database, read again whenever its file changed since it was read (a
    /// stat per call, made before each save and baseline uses it): a build that rewrites
    /// `compile_commands.json` while the session runs reaches the next save in the editor
    /// and in `watch` alike, without watching the file.
    pub(super) fn database(&mut self) -> Option<&CompileDatabase> {
        let root = &self.options.root;
        let candidates: Vec<PathBuf> = match &self.config.compile.database {
            Some(p) => vec![root.join(p)],
            None => vec![
                root.join("compile_commands.json"),
                root.join("build/compile_commands.json"),
            ],
        };
        let Some(path) = candidates.into_iter().find(|c| c.exists()) else {
            if let Some(old) = self.database.take() {
                self.database_changed(&old, &CompileDatabase::default());
            }
            return None;
        };
        let prefixes = crate::program::path_map_prefixes(root, &self.config.compile.path_map);
        let current = self
            .database
            .as_mut()
            .is_some_and(|db| db.path == path && db.remapped == prefixes && db.is_current());
        if !current {
            match CompileDatabase::load(&path) {
                Ok(mut db) => {
                    // A moved or copied tree: the entries name the old one, as its DWARF does.
                    db.remap(&prefixes);
                    self.database_error = None;
                    if let Some(old) = self.database.take() {
                        self.database_changed(&old, &db);
                    }
                    self.database = Some(db);
                }
                // A build may be writing it right now (truncated, then written): the entries
                // read before stay in use, the next look reads it again, and only a file
                // that stays invalid once written is said to be.
                Err(e) if database_being_written(&path) => {
                    tracing::debug!("{e} (being written: read again at the next look)");
                }
                Err(e) => {
                    let seen = std::fs::metadata(&path)
                        .ok()
                        .map(|m| (path.clone(), m.len(), m.modified().ok()));
                    if seen.is_some() && seen == self.database_error {
                        return self.database.as_ref();
                    }
                    self.database_error = seen;
                    let kept = if self.database.is_some() {
                        "; the entries read before stay in use"
                    } else {
                        ""
                    };
                    self.message(Severity::Error, format!("{e}{kept}"));
                }
            }
        }
        self.database.as_ref()
    }

    /// The compile database was read again: a file whose entries changed no longer has a
    /// baseline, since its old object was compiled with the old command and a baseline
    /// compiled now with the new one would hide the command's change (a `-DVALUE=2` that
    /// changes code the text does not) from the diff. Its next save is compared with the
    /// running program instead.
    fn database_changed(&mut self, old: &CompileDatabase, new: &CompileDatabase) {
        let changed = old.changed_files(new);
        let mut dropped = Vec::new();
        for file in &changed {
            let had_baseline = self.baselines.remove(file).is_some();
            let had_snapshot = self.snapshots.remove(file).is_some();
            if self.baseline_queue.remove(file) {
                self.count_baseline_done();
            }
            if self.in_flight.compiles(file) {
                // Compiled with the old command: of no use.
                self.abandon_baseline_of(file);
                self.count_baseline_done();
            }
            if had_baseline || had_snapshot {
                dropped.push(file.display().to_string());
            }
        }
        tracing::info!(
            database = %new.path.display(),
            changed = changed.len(),
            "the compile database changed: read it again"
        );
        if !dropped.is_empty() {
            self.message(
                Severity::Information,
                format!(
                    "{} changed: the command of {} is new, so its next save is compared with \
                     the running program",
                    old.path.display(),
                    dropped.join(", ")
                ),
            );
        }
    }

    /// Whether `file` has a compile command (a database entry or the `[compile] command`
    /// template), without choosing among entries as [`Worker::entry_for`] does.
    pub(super) fn has_compile_command(&mut self, file: &Path) -> bool {
        let template = self
            .config
            .compile
            .command
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty());
        template
            || self
                .database()
                .is_some_and(|db| !db.entries_for(file).is_empty())
    }

    /// The compile command of `file`: among several database entries the one whose flags
    /// best match the producer string of the file's compile unit in the image; the
    /// `[compile] command` template otherwise.
    pub(super) fn entry_for(&mut self, file: &Path) -> Result<CompileEntry, String> {
        let root = self.options.root.clone();
        let template = self
            .config
            .compile
            .command
            .clone()
            .filter(|t| !t.trim().is_empty());
        let producer: Option<String> = self
            .program
            .as_ref()
            .and_then(|p| p.image.as_ref())
            .and_then(|i| crate::program::producer_of(&i.exe.image, file))
            .map(str::to_owned);
        let entries: Vec<CompileEntry> = self
            .database()
            .map(|db| db.entries_for(file).to_vec())
            .unwrap_or_default();
        if let Some(best) = entries.iter().max_by_key(|e| {
            producer.as_deref().map_or(0, |p| {
                e.arguments
                    .iter()
                    .filter(|a| a.starts_with('-') && p.split_whitespace().any(|f| f == *a))
                    .count()
            })
        }) {
            return Ok(best.clone());
        }
        match template {
            Some(t) => compile::entry_from_template(&t, &root, file)
                .ok_or_else(|| format!("cannot split the [compile] command `{t}`")),
            None => Err(self.not_in_database(file)),
        }
    }

    /// Why `file` has no compile command: the plain fact, and when the database was
    /// written for another tree, which ([`Worker::database_elsewhere`]).
    fn not_in_database(&mut self, file: &Path) -> String {
        let plain = format!(
            "{} is not in the compile database and hot-lsp.toml has no [compile] command",
            file.display()
        );
        match self.database_elsewhere(file) {
            Some(why) => format!("{plain}: {why}"),
            None => plain,
        }
    }

    /// When `file` has no entry and every file of the database lies under one folder
    /// outside the workspace, the database was written for another tree (a moved or copied
    /// checkout, a container): the sentence that says which, and the two ways out.
    pub(super) fn database_elsewhere(&mut self, file: &Path) -> Option<String> {
        let root = normalize(&self.options.root);
        let db = self.database()?;
        if !db.entries_for(file).is_empty() {
            return None;
        }
        let elsewhere = db.common_folder()?;
        if elsewhere.starts_with(&root) || elsewhere.parent().is_none() {
            return None;
        }
        // The old tree's root: the database file at the saved file's place in it.
        let old_root = file.strip_prefix(&root).ok().and_then(|rel| {
            db.files().find_map(|f| {
                let mut old = f.to_path_buf();
                for _ in rel.components() {
                    old.pop();
                }
                (old.join(rel) == f).then_some(old)
            })
        });
        let (from, to) = match &old_root {
            Some(old) => (old.display().to_string(), "."),
            None => (
                elsewhere.display().to_string(),
                "<folder in this workspace>",
            ),
        };
        Some(format!(
            "{} describes the tree {} (every file it lists is there), not this workspace {}; \
             regenerate it here, or map that tree in hot-lsp.toml: [compile] path_map = \
             {{ \"{from}\" = \"{to}\" }}",
            db.path.display(),
            elsewhere.display(),
            root.display(),
        ))
    }

    pub(super) fn scratch_object(&mut self, file: &Path) -> PathBuf {
        self.scratch_counter += 1;
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unit".into());
        let dir = match &self.scratch {
            Some(d) => d.path().to_owned(),
            None => std::env::temp_dir(),
        };
        dir.join(format!("{stem}-{}.o", self.scratch_counter))
    }

    /// Queue the baseline of every source file of this workspace that the image's DWARF or
    /// the compile database names, so the first save of each swaps only what changed. They are compiled in
    /// the background, between events.
    pub(super) fn queue_baselines(&mut self, skip: &[PathBuf]) {
        for file in self.program_sources(skip) {
            self.snapshot(&file);
        }
    }

    /// The source files of this workspace that the image's DWARF or the compile database
    /// names (candidates: not all of a database's files need be linked into the program),
    /// `skip` left out.
    pub(super) fn program_sources(&mut self, skip: &[PathBuf]) -> Vec<PathBuf> {
        let root = self.options.root.clone();
        let files: Vec<PathBuf> = self
            .program
            .as_ref()
            .and_then(|p| p.image.as_ref())
            .map(|image| {
                image
                    .exe
                    .image
                    .compile_units
                    .iter()
                    .map(cu_source)
                    .filter(|p| p.starts_with(&root) && p.is_file() && !skip.contains(p))
                    .collect()
            })
            .unwrap_or_default();
        // A program built without -g names no compile units: the compile database's files
        // are candidates too (`snapshot` keeps only those linked into the program).
        let mut files = files;
        if let Some(db) = self.database() {
            let mut seen: std::collections::HashSet<PathBuf> = files.iter().cloned().collect();
            seen.extend(skip.iter().cloned());
            for file in db.files() {
                if file.starts_with(&root) && file.is_file() && seen.insert(file.to_owned()) {
                    files.push(file.to_owned());
                }
            }
        }
        files
    }

    /// What `files`, as they are now, include (directly or not), from a preprocessor-only
    /// run of their compile commands (`-M`, `jobs` at a time): for files no compile has told
    /// yet, when a header is saved. Preprocessing succeeds where compiling may not (the
    /// saved header may break a file), and costs a fraction of a compile. Recorded in the
    /// dependency lists; a file whose scan fails is left unknown.
    pub(super) fn scan_dependencies(&mut self, files: &[PathBuf], jobs: usize) {
        let mut scans = Vec::new();
        for file in files {
            let entry = match self.entry_for(file) {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::debug!("includes of {}: {e}", file.display());
                    continue;
                }
            };
            let output = self.scratch_object(file);
            let depfile = output.with_extension("d");
            let job = compile::job_for(&entry, &output);
            // Without `-c <file>`: preprocess it instead.
            let mut argv = job.flags_without_input();
            argv.extend([
                "-M".into(),
                "-MF".into(),
                depfile.display().to_string(),
                file.display().to_string(),
            ]);
            scans.push((file.clone(), argv, job.directory, depfile));
        }
        let found = self.while_forwarding(|| {
            super::pipeline::in_parallel(&scans, jobs, |(file, argv, dir, depfile)| {
                let run = std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .current_dir(dir)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                let text = std::fs::read_to_string(depfile);
                let _ = std::fs::remove_file(depfile);
                match (run, text) {
                    (_, Ok(text)) => Ok(compile::parse_depfile(&text, dir)
                        .into_iter()
                        .filter(|d| d != file)
                        .collect::<Vec<PathBuf>>()),
                    (Ok(status), Err(e)) => {
                        Err(format!("`{}` ({status}) wrote no list: {e}", argv[0]))
                    }
                    (Err(e), _) => Err(format!("cannot run `{}`: {e}", argv[0])),
                }
            })
        });
        for ((file, ..), deps) in scans.into_iter().zip(found) {
            match deps {
                Ok(deps) => {
                    self.dependencies.insert(file, deps);
                }
                Err(e) => tracing::debug!("includes of {}: {e}", file.display()),
            }
        }
    }

    /// Whether `file` may be a translation unit of the running program (its image has a
    /// compile unit for it, or no DWARF to tell).
    pub(super) fn is_linked(&mut self, file: &Path) -> bool {
        self.program
            .as_mut()
            .and_then(|p| p.home_of(file).ok())
            .is_some_and(|(_, unit)| !matches!(unit, UnitMatch::NotLinked))
    }

    /// Whether a file last modified at `modified` may be what the running executable was
    /// built from: not newer than the executable.
    pub(super) fn older_than_the_build(&self, modified: std::time::SystemTime) -> bool {
        self.exe_modified.is_some_and(|exe| modified <= exe)
    }

    /// Whether a file was modified while the session's build ran: the build wrote it (a
    /// generated source) or the user saved it then — and a build that compiles, then links,
    /// may have read it before that save, yet leaves an executable newer than it.
    fn during_the_build(&self, path: &Path) -> bool {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        match (self.build_started, modified) {
            (Some(started), Some(modified)) => modified >= started,
            _ => false,
        }
    }

    /// Whether `object` (a baseline compiled from a snapshot) is what the program runs for
    /// `file`: linked against the running image without a baseline, it changes nothing.
    /// Anything that cannot tell (no linker yet, an error) says no.
    fn matches_running_image(&mut self, file: &Path, object: &Object) -> bool {
        let Some(program) = self.program.as_mut() else {
            return false;
        };
        let (image, tu) = match program.home_of(file) {
            Ok((image, UnitMatch::Found(tu))) => (image, tu),
            Ok((_, UnitMatch::NotLinked)) | Err(_) => return false,
        };
        let compile_unit = program.compile_unit_of(&image, file);
        let Ok(linker) = program.linker_for(&image) else {
            return false;
        };
        let request = hot_link::LinkRequest {
            object,
            baseline: None,
            unit: hot_link::UnitRef {
                tu,
                compile_unit,
                source: file.display().to_string(),
            },
            applied: &[],
        };
        matches!(
            super::pipeline::link_guarded(linker, std::slice::from_ref(&request)),
            Ok(Ok(patch)) if patch.is_empty()
        )
    }

    /// Keep the text of `file` as it is now, for its baseline, if it is linked into the
    /// program and unchanged since the executable was built (so this text is what runs),
    /// and queue its baseline compile. A file without a snapshot gets no baseline; its first
    /// save is then compared with the running image (hot-link's `image_diff`), which is
    /// always correct, where a baseline of edited text would hide the edit.
    pub(super) fn snapshot(&mut self, file: &Path) -> bool {
        if self.baselines.contains_key(file) || self.snapshots.contains_key(file) {
            return true;
        }
        if self.refused_baselines.contains(file) {
            // Compiled before and refused (a header changed after the build): no use again.
            return false;
        }
        let unchanged_since_build = std::fs::metadata(file)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| self.older_than_the_build(modified));
        if !unchanged_since_build {
            return false;
        }
        if !self.is_linked(file) {
            // A library of the program may contain it, once the dynamic linker loaded them:
            // its text is kept now, as it was built from (`snapshot_library_files`).
            let libraries_unknown = self.program.as_mut().is_some_and(|p| !p.libraries_known());
            if libraries_unknown {
                if let Ok(text) = std::fs::read(file) {
                    self.library_snapshots.insert(file.to_owned(), text);
                }
            }
            return false;
        }
        if self.during_the_build(file) {
            self.snapshots_during_build.insert(file.to_owned());
        }
        match std::fs::read(file) {
            Ok(text) => {
                self.snapshots.insert(file.to_owned(), text);
                if self.baseline_queue.insert(file.to_owned()) {
                    self.count_baseline_queued();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Once the program's libraries are known: the texts kept at adoption of the files one
    /// of them contains become snapshots, and their baselines are queued.
    pub(super) fn snapshot_library_files(&mut self) {
        if self.library_snapshots.is_empty() {
            return;
        }
        if !self.program.as_mut().is_some_and(|p| p.libraries_known()) {
            return;
        }
        for (file, text) in std::mem::take(&mut self.library_snapshots) {
            if !self.is_linked(&file) || self.snapshots.contains_key(&file) {
                continue;
            }
            if self.during_the_build(&file) {
                self.snapshots_during_build.insert(file.clone());
            }
            self.snapshots.insert(file.clone(), text);
            if self.baseline_queue.insert(file) {
                self.count_baseline_queued();
            }
        }
        self.report_baselines();
    }

    /// The baseline a save of `file` compiled with `flags` is diffed against. One compiled
    /// with other flags is no use; a baseline not compiled yet (still queued, or compiled
    /// with flags that changed since) is compiled now from the snapshot, before the save is
    /// linked: a save is never linked as if nothing were known about what runs when the
    /// text the program was built from is known. Once this session swapped the file, the
    /// snapshot no longer describes what runs and only the last swapped object counts.
    pub(super) fn baseline_for(&mut self, file: &Path, flags: &[String]) -> Option<Baseline> {
        // One compiling in the background is as good as ready: wait for it (only for it),
        // and say so (a big file's takes minutes).
        if self.in_flight.compiles(file) {
            self.progress(
                Phase::Compile,
                "waiting for the text the program was built from to compile (its baseline)",
            );
        }
        self.settle_baseline_of(file);
        if let Some(b) = self.baselines.get(file) {
            if b.argv == flags {
                return Some(b.clone());
            }
        }
        let swapped = self.replay.iter().any(|f| f == file);
        if swapped || !self.snapshots.contains_key(file) {
            return None;
        }
        self.progress(
            Phase::Compile,
            "compiling the text the program was built from (its baseline)",
        );
        if let Err(e) = self.compile_baseline(file) {
            self.no_baseline(file, &e);
            return None;
        }
        self.baselines
            .get(file)
            .filter(|b| b.argv == flags)
            .cloned()
    }

    /// Compile the snapshot of `file` into its baseline object. The snapshot is compiled as a
    /// copy in the scratch folder: quote includes still find the file's own folder through
    /// `-iquote`, and `-ffile-prefix-map` keeps `__FILE__` as the original path, so the
    /// object equals what compiling the original would give — provided the headers are
    /// still what they were at the build: the compile writes its dependency list, and a
    /// baseline with a dependency modified after the executable is not kept (it would hide
    /// the header's change from every diff of this file), nor is one whose dependencies
    /// are unknown.
    ///
    /// `Err` says why no baseline was made when it may work another time (the snapshot is
    /// kept); a baseline refused for a changed header is said here, and its snapshot
    /// dropped.
    pub(super) fn compile_baseline(&mut self, file: &Path) -> Result<(), String> {
        let Some(job) = self.baseline_job(file)? else {
            return Ok(());
        };
        let queued = job.queued;
        let stopping = self.stopping.clone();
        let run = self.while_forwarding(|| run_baseline(&job, &stopping, Priority::Normal));
        let result = self.finish_baseline(job, run);
        if queued {
            self.count_baseline_done();
            self.report_baselines();
        }
        result
    }

    /// Start queued baselines in the background until `jobs` compile at once (each on a
    /// thread of its own, its compiler in a process group of its own at a lowered
    /// priority); their results come back to the worker's loop
    /// (`finish_baseline_in_flight`). Nothing waits for them but what needs one: a save of
    /// that very file (`baseline_for`), an includer's baseline (`compile_baselines`).
    pub(super) fn start_baselines(&mut self) {
        let jobs = self.jobs();
        while self.in_flight.running.len() < jobs {
            let Some(file) = self.baseline_queue.first().cloned() else {
                break;
            };
            if let Err(e) = self.start_baseline(&file, Priority::Background) {
                // The snapshot stays: the file's first save tries again.
                tracing::debug!("baseline of {}: {e}", file.display());
            }
        }
        self.report_baselines();
    }

    /// A save of `file` is about to compile it, and will need its baseline: one compiling in
    /// the background runs at the save's priority from now on, and one still queued starts
    /// now, beside the save's own compile, instead of after it (a file of sqlite3.c's size
    /// took two compiles end to end, the baseline's at nice +10).
    /// `start_queued` is false for a header's includers: they start `jobs` at a time.
    pub(super) fn hurry_baseline_of(&mut self, file: &Path, start_queued: bool) {
        if let Some(cancel) = self.in_flight.cancel_of(file) {
            cancel.hurry();
            return;
        }
        if !start_queued || self.baselines.contains_key(file) || !self.baseline_queue.contains(file)
        {
            return;
        }
        if let Err(e) = self.start_baseline(file, Priority::Normal) {
            tracing::debug!("baseline of {}: {e}", file.display());
        }
        self.report_baselines();
    }

    /// Whether idle time has a baseline to start: one is queued and a job is free.
    pub(super) fn baseline_to_start(&self) -> bool {
        !self.baseline_queue.is_empty() && self.in_flight.running.len() < self.jobs()
    }

    fn start_baseline(&mut self, file: &Path, priority: Priority) -> Result<(), String> {
        let Some(job) = self.baseline_job(file)? else {
            // No snapshot any more: nothing to make.
            return Ok(());
        };
        let id = self.in_flight.next;
        self.in_flight.next += 1;
        let cancel = Cancel::default();
        let thread_cancel = cancel.clone();
        let done = self.in_flight.sender.clone();
        let spawned = std::thread::Builder::new()
            .name("hot-lsp baseline".into())
            .spawn(move || {
                // A panic (a bug) still reports, so nothing waits for this file forever.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_baseline(&job, &thread_cancel, priority)
                }));
                // Abandoned at shutdown: nobody listens any more.
                let _ = done.send(BaselineDone {
                    id,
                    run: run.ok().map(|run| (job, run)),
                });
            });
        if let Err(e) = spawned {
            self.count_baseline_done();
            return Err(format!("cannot start its baseline compile: {e}"));
        }
        self.in_flight.running.insert(id, (file.to_owned(), cancel));
        Ok(())
    }

    /// The session ends, or the program is gone: every baseline compile in flight is
    /// killed (the compiler's whole process group) and its result never waited for. A
    /// baseline of a big file takes a minute, and nothing needs it any more; its thread
    /// removes its scratch files as the killed compiler returns.
    pub(super) fn abandon_baselines(&mut self) {
        for (_, (file, cancel)) in std::mem::take(&mut self.in_flight.running) {
            tracing::debug!("the baseline compile of {} is abandoned", file.display());
            cancel.cancel();
        }
    }

    /// Kill every baseline compile in flight, keeping them in flight: their results (none)
    /// still come back, so whoever waits for them is not left waiting (the session ends).
    pub(super) fn cancel_baselines(&self) {
        for (_, cancel) in self.in_flight.running.values() {
            cancel.cancel();
        }
    }

    /// Kill the baseline compile of `file` in flight, if any: its command changed.
    fn abandon_baseline_of(&mut self, file: &Path) {
        self.in_flight.running.retain(|_, (f, cancel)| {
            let keep = f != file;
            if !keep {
                cancel.cancel();
            }
            keep
        });
    }

    /// Wait for every baseline compile in flight and keep their results.
    pub(super) fn settle_baselines(&mut self) {
        while !self.in_flight.running.is_empty() {
            self.settle_one_baseline();
        }
    }

    /// Wait for the baseline compile of `file`, if one is in flight, and keep its result
    /// (and those of others that finish first).
    pub(super) fn settle_baseline_of(&mut self, file: &Path) {
        while self.in_flight.compiles(file) {
            self.settle_one_baseline();
        }
    }

    fn settle_one_baseline(&mut self) {
        // The worker holds a sender: this ends when a compile thread reports, and every
        // thread reports (a panic included).
        // Output keeps flowing while the worker waits (sqlite3.c takes 40 s and more).
        let results = self.in_flight.results.clone();
        match self.forward_output_until(&results) {
            Ok(done) => self.finish_baseline_in_flight(done),
            Err(_) => self.abandon_baselines(),
        }
    }

    /// A background baseline compile finished: keep its object as `compile_baseline`
    /// would. Without a result (its thread panicked) the snapshot stays, so the file's first
    /// save compiles the baseline itself. The result of a compile abandoned since (the
    /// program is gone, the command changed) is dropped, as is one of a file that has a
    /// baseline by now (swapped meanwhile: what runs is the swapped object).
    pub(super) fn finish_baseline_in_flight(&mut self, done: BaselineDone) {
        let Some((file, _)) = self.in_flight.running.remove(&done.id) else {
            return;
        };
        let stale = self.baselines.contains_key(&file) || self.replay.contains(&file);
        let result = match done.run {
            _ if stale => Ok(()),
            Some((job, run)) => self.finish_baseline(job, run),
            None => Err("its compile thread ended without a result".to_owned()),
        };
        if let Err(e) = result {
            // The snapshot stays: the file's first save tries again.
            tracing::debug!("baseline of {}: {e}", file.display());
        }
        self.count_baseline_done();
        self.report_baselines();
    }

    /// One queued baseline is finished (made, refused or failed).
    fn count_baseline_done(&mut self) {
        let progress = &mut self.in_flight.progress;
        progress.done = (progress.done + 1).min(progress.total);
        let last = progress.done == progress.total;
        if last && self.baseline_queue.is_empty() && self.in_flight.running.is_empty() {
            self.say_baselines_done();
        }
    }

    /// The baselines' progress in the status, when it changed.
    pub(super) fn report_baselines(&mut self) {
        let progress = self.in_flight.progress;
        let current = (progress.total > 0).then_some(progress);
        if self.in_flight.reported != current {
            self.in_flight.reported = current;
            self.update_status(|s| s.baselines = current);
        }
    }

    /// A file was queued for a baseline.
    pub(super) fn count_baseline_queued(&mut self) {
        self.in_flight.progress.total += 1;
    }

    /// The last queued baseline has been compiled (not merely started).
    pub(super) fn say_baselines_done(&self) {
        // What scripts/bench counts as ready for minimal swaps.
        tracing::info!(files = self.baselines.len(), "every baseline is compiled");
    }

    /// Compile the baselines of `files` that are still to be made, at most `jobs` at a time
    /// (the includers of a saved header, right after launch). A baseline that cannot be
    /// made is said once, as [`Worker::baseline_for`] does.
    pub(super) fn compile_baselines(&mut self, files: &[PathBuf], jobs: usize) {
        // Those compiling in the background already are waited for, not compiled twice.
        for file in files {
            self.settle_baseline_of(file);
        }
        let mut prepared = Vec::new();
        for file in files {
            if self.baselines.contains_key(file) {
                continue;
            }
            match self.baseline_job(file) {
                Ok(Some(job)) => prepared.push(job),
                Ok(None) => {}
                Err(e) => self.no_baseline(file, &e),
            }
        }
        if prepared.is_empty() {
            return;
        }
        self.progress(
            Phase::Compile,
            &format!(
                "compiling the text the program was built from (the baselines of {} files)",
                prepared.len()
            ),
        );
        let stopping = self.stopping.clone();
        let runs = self.while_forwarding(|| {
            super::pipeline::in_parallel(&prepared, jobs, |job| {
                run_baseline(job, &stopping, Priority::Normal)
            })
        });
        for (job, run) in prepared.into_iter().zip(runs) {
            let file = job.file.clone();
            let queued = job.queued;
            if let Err(e) = self.finish_baseline(job, run) {
                self.no_baseline(&file, &e);
            }
            if queued {
                self.count_baseline_done();
            }
        }
        self.report_baselines();
    }

    /// A baseline could not be made: said once, since without the snapshot later saves do
    /// not try again.
    fn no_baseline(&mut self, file: &Path, e: &str) {
        self.snapshots.remove(file);
        self.message(
            Severity::Warning,
            format!(
                "no baseline for {}: {e}; this save is compared with the running program instead",
                file.display()
            ),
        );
    }

    /// `text` written as a copy of `file` into a fresh scratch folder (named after `what`:
    /// "snapshot", "ahead"): the folder, the copy, and the flags that make compiling the copy equal compiling
    /// `file`: quote includes still find the file's folder, and its paths (DWARF,
    /// `__FILE__`) are the file's.
    pub(super) fn scratch_copy(
        &mut self,
        file: &Path,
        text: &[u8],
        what: &str,
    ) -> Result<(PathBuf, PathBuf, [String; 2]), String> {
        let (Some(source_dir), Some(name)) = (file.parent(), file.file_name()) else {
            return Err(format!("{} has no file name", file.display()));
        };
        self.scratch_counter += 1;
        let copy_dir = self
            .scratch
            .as_ref()
            .map_or_else(std::env::temp_dir, |d| d.path().to_owned())
            .join(format!("{what}-{}", self.scratch_counter));
        let copy = copy_dir.join(name);
        std::fs::create_dir_all(&copy_dir)
            .and_then(|()| std::fs::write(&copy, text))
            .map_err(|e| format!("cannot write its {what} to {}: {e}", copy_dir.display()))?;
        let flags = [
            format!("-iquote{}", source_dir.display()),
            format!(
                "-ffile-prefix-map={}={}",
                copy_dir.display(),
                source_dir.display()
            ),
        ];
        Ok((copy_dir, copy, flags))
    }

    /// The compile of `file`'s snapshot, written to the scratch folder (`None`: no snapshot,
    /// so no baseline to make).
    fn baseline_job(&mut self, file: &Path) -> Result<Option<BaselineJob>, String> {
        let queued = self.baseline_queue.remove(file);
        match self.snapshot_job(file) {
            Ok(Some(mut job)) => {
                job.queued = queued;
                Ok(Some(job))
            }
            nothing => {
                if queued {
                    // Nothing to compile: finished for the progress, as it will never be.
                    self.count_baseline_done();
                }
                nothing
            }
        }
    }

    /// [`Worker::baseline_job`] without the queue.
    fn snapshot_job(&mut self, file: &Path) -> Result<Option<BaselineJob>, String> {
        if !self.snapshots.contains_key(file) {
            return Ok(None);
        }
        // The command first: reading a changed compile database drops the snapshots of the
        // files whose command changed (`database_changed`).
        let entry = self.entry_for(file)?;
        let Some(text) = self.snapshots.get(file).cloned() else {
            return Ok(None);
        };
        let (copy_dir, copy, as_file) = self.scratch_copy(file, &text, "snapshot")?;
        let output = self.scratch_object(file);
        let depfile = output.with_extension("d");
        let job = compile::job_for(&entry, &output);
        // Without `-c <file>`: compile the copy instead.
        let mut argv = job.flags_without_input();
        argv.extend(as_file);
        argv.extend([
            "-MD".into(),
            "-MF".into(),
            depfile.display().to_string(),
            "-c".into(),
            copy.display().to_string(),
            "-o".into(),
            output.display().to_string(),
        ]);
        let snapshot_job = CompileJob {
            argv,
            ..job.clone()
        };
        Ok(Some(BaselineJob {
            file: file.to_owned(),
            flags: job.flags().to_vec(),
            job: snapshot_job,
            copy_dir,
            copy,
            depfile,
            queued: false,
        }))
    }

    /// Keep the object of a baseline compile if none of what it read changed since the
    /// build, and its dependency list.
    fn finish_baseline(&mut self, job: BaselineJob, run: BaselineRun) -> Result<(), String> {
        let BaselineJob {
            file,
            flags,
            copy,
            job,
            ..
        } = job;
        // Owns the object file from here: removed unless it becomes the baseline.
        let on_disk = BaselineObject::on_disk(job.output);
        let file = file.as_path();
        let object = run
            .object
            .map_err(|e| format!("the text it was built from does not compile again: {e}"))?;
        let deps = run.deps.ok_or(
            "the compiler wrote no dependency list, so whether its headers changed since the \
             build is unknown",
        )?;
        // The first dependency is the copy itself, which is the snapshot: trusted (and the
        // original, should a compiler remap the copy's name, is what the snapshot replaces).
        let deps: Vec<PathBuf> = deps
            .into_iter()
            .filter(|d| *d != copy && d != file)
            .collect();
        let newer = deps.iter().find(|d| {
            // A header that is gone, or an executable without a date: not what ran.
            !std::fs::metadata(d)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| self.older_than_the_build(modified))
        });
        if let Some(header) = newer.cloned() {
            // Said once per header, not once per file that includes it.
            if !self
                .refused_baselines
                .iter()
                .filter_map(|other| self.dependencies.get(other))
                .any(|other| other.contains(&header))
            {
                let text = format!(
                    "{} changed after the program was built (it is included by {}): the first \
                     save of each file that includes it is compared with the running program instead \
                     of a baseline, so the header's change is not lost",
                    header.display(),
                    file.display(),
                );
                self.message(Severity::Information, text);
            }
            self.record_baseline_dependencies(file, deps);
            self.refused_baselines.insert(file.to_owned());
            // No baseline can be made of this text with the headers as they are now.
            self.snapshots.remove(file);
            return Ok(());
        }
        // The file as it was when its snapshot was taken (it may be edited since); its
        // headers as they are now (one edited after the build was refused above).
        let ambiguous = self.snapshots_during_build.remove(file)
            || deps.iter().any(|d| self.during_the_build(d));
        self.record_baseline_dependencies(file, deps);
        if ambiguous && !self.matches_running_image(file, &object) {
            // Saved while the build ran, after the build read it: the snapshot is the edit,
            // not what runs. Without a baseline the save is compared with the running image.
            tracing::info!(
                file = %file.display(),
                "modified during the build and not what runs: no baseline"
            );
            self.snapshots.remove(file);
            return Ok(());
        }
        self.baselines.insert(
            file.to_owned(),
            Baseline {
                argv: flags,
                object: on_disk,
                unapplied: Vec::new(),
            },
        );
        Ok(())
    }

    /// Keep what a baseline compile read as `file`'s dependency list, unless a compile of
    /// a save (or one before a relaunch of this build) told already: the baseline is the
    /// text the program was built from, the save's is the text as it is now, which is what
    /// a header's includers are found by.
    fn record_baseline_dependencies(&mut self, file: &Path, deps: Vec<PathBuf>) {
        self.dependencies.entry(file.to_owned()).or_insert(deps);
    }

    /// The translation units whose last compile (a baseline, or a save) read `header` (or
    /// a source file: lz4hc.c includes lz4.c), in path order. A dependency is the header
    /// when it is the same file on disk, whatever path it was read by (`-Iinc` with
    /// `inc -> zlib` lists `inc/zlib.h`). For a source file only the dependencies named
    /// like sources are looked at on disk: every save of one asks, and most dependencies
    /// are headers.
    pub(super) fn includers(&self, header: &Path) -> Vec<PathBuf> {
        let identity = crate::compile_db::file_identity(header);
        let source = has_extension(header, SOURCE_EXTENSIONS);
        let is_header = |d: &PathBuf| {
            d == header
                || identity.is_some()
                    && (!source || has_extension(d, SOURCE_EXTENSIONS))
                    && crate::compile_db::file_identity(d) == identity
        };
        let mut units: Vec<PathBuf> = self
            .dependencies
            .iter()
            .filter(|(_, deps)| deps.iter().any(is_header))
            .map(|(unit, _)| unit.clone())
            .collect();
        units.sort();
        units
    }

    pub(super) fn on_opened(&mut self, file: &Path) {
        let file = normalize(file);
        if self.program.is_some()
            && has_extension(&file, SOURCE_EXTENSIONS)
            && !self.baselines.contains_key(&file)
            && !self.in_flight.compiles(&file)
            && self.snapshot(&file)
        {
            if let Err(e) = self.compile_baseline(&file) {
                // Kept: the first save tries again and says so if it fails.
                tracing::debug!("baseline of {}: {e}", file.display());
            }
        }
    }
}

/// Read and parse the object a finished compile wrote (and remove the file).
pub(super) fn read_object(job: &CompileJob) -> Result<Object, String> {
    let object = parse_object_file(&job.output);
    let _ = std::fs::remove_file(&job.output);
    object
}

/// Read and parse an object file, leaving it in place.
pub(super) fn parse_object_file(path: &Path) -> Result<Object, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Object::parse_owned(path, bytes).map_err(|e| e.to_string())
}

/// A baseline compile prepared by the worker: the snapshot written to its own folder.
pub(super) struct BaselineJob {
    file: PathBuf,
    /// The flags of the file's patch compile, which the baseline is matched by.
    flags: Vec<String>,
    /// The compile of the snapshot's copy.
    job: CompileJob,
    copy_dir: PathBuf,
    copy: PathBuf,
    depfile: PathBuf,
    /// It was taken off the queue: its end counts in the baselines' progress.
    queued: bool,
}

/// The background baseline compiles, up to the session's `jobs` at once: each on a thread of
/// its own, reporting on one channel, so the worker's loop waits on one receiver.
pub(super) struct InFlight {
    /// Each compile running, by id (ids are never reused, so the result of an abandoned
    /// compile is never taken for a later one of the same file): its file and what kills it.
    running: BTreeMap<u64, (PathBuf, Cancel)>,
    next: u64,
    sender: crossbeam_channel::Sender<BaselineDone>,
    pub(super) results: crossbeam_channel::Receiver<BaselineDone>,
    /// The queued baselines of this program, and how many of them are finished.
    progress: BaselineProgress,
    /// What the status says of them.
    reported: Option<BaselineProgress>,
}

impl Default for InFlight {
    fn default() -> Self {
        let (sender, results) = crossbeam_channel::unbounded();
        InFlight {
            running: BTreeMap::new(),
            next: 0,
            sender,
            results,
            progress: BaselineProgress { done: 0, total: 0 },
            reported: None,
        }
    }
}

impl InFlight {
    /// Whether the baseline of `file` is compiling.
    pub(super) fn compiles(&self, file: &Path) -> bool {
        self.running.values().any(|(f, _)| f == file)
    }

    /// What stops (or hurries) the compile of `file` in flight.
    fn cancel_of(&self, file: &Path) -> Option<Cancel> {
        self.running
            .values()
            .find(|(f, _)| f == file)
            .map(|(_, cancel)| cancel.clone())
    }

    /// A new program: no progress yet (the compiles in flight are abandoned first).
    pub(super) fn reset_progress(&mut self) {
        self.progress = BaselineProgress { done: 0, total: 0 };
    }
}

/// A finished background baseline compile: which one, and what was compiled and what it
/// gave (`None`: its thread panicked).
pub(super) struct BaselineDone {
    id: u64,
    run: Option<(BaselineJob, BaselineRun)>,
}

/// What a baseline compile gave.
pub(super) struct BaselineRun {
    object: Result<Object, String>,
    deps: Option<Vec<PathBuf>>,
}

/// Run a prepared baseline compile (no worker state: it may run on a compile thread), in a
/// process group of its own that `cancel` kills.
pub(super) fn run_baseline(job: &BaselineJob, cancel: &Cancel, priority: Priority) -> BaselineRun {
    let result = compile::run_cancellable(&job.job, cancel, priority);
    let _ = std::fs::remove_dir_all(&job.copy_dir);
    let deps = std::fs::read_to_string(&job.depfile)
        .ok()
        .map(|text| compile::parse_depfile(&text, &job.job.directory));
    let _ = std::fs::remove_file(&job.depfile);
    let object = match result {
        Ok(None) => {
            let _ = std::fs::remove_file(&job.job.output);
            Err("its compile was cancelled".to_owned())
        }
        // Left on disk: the baseline keeps the file and parses it again on its file's first
        // save (`BaselineObject`); parsed here to know it reads.
        Ok(Some(outcome)) if outcome.success => parse_object_file(&job.job.output),
        Ok(Some(outcome)) => Err(outcome
            .diagnostics
            .iter()
            .find(|d| d.severity == Severity::Error)
            .map_or(outcome.unparsed, |d| d.message.clone())),
        Err(e) => Err(e.to_string()),
    };
    BaselineRun { object, deps }
}
