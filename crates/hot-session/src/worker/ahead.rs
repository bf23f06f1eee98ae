//! Compile ahead of the save: an edited buffer's text is compiled in the background once
//! typing pauses, linked against the running image and put through the save's ABI checks
//! without writing anything, so what the save would be refused for shows while typing and a
//! save of that same text swaps at once.
//!
//! One compile ahead runs at a time, on a thread of its own (the worker never waits for it
//! while typing goes on); a newer text of the same file kills it (its whole process group).
//! The text is compiled as a copy in the scratch folder with `-iquote` and
//! `-ffile-prefix-map`, as a snapshot's baseline is, so the object equals compiling the
//! file. A save takes the result only if the file on disk is byte for byte the text
//! compiled; a compile ahead of the saved text that is still running is waited for (it is
//! the compile the save needs), one of older text is killed, so a save never waits behind
//! text it does not contain. A result is only as good as the files it read: each file the
//! compile read (its dependency list) is stamped with its content, and a result one of them
//! no longer matches — a header or an included source file saved since, or saved while it
//! compiled — is never linked nor taken by a save (it would swap back the code that save
//! swapped in); its buffer compiles ahead again. Compile errors while typing are the
//! business of the editor's C/C++ server: only the link's findings are published, each
//! message starting with [`ON_SAVE`], under a unit of their own (`ahead_unit`) so the last
//! save's diagnostics stay until the next save.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hot_link::{LinkRequest, UnitRef};
use hot_object::Object;

use super::baseline::read_object;
use super::pipeline::{link_guarded, note_diagnostics, Checked, UnitJob};
use super::{has_extension, Worker, SOURCE_EXTENSIONS};
use crate::compile::{self, Cancel, CompileJob, CompileOutcome};
use crate::compile_db::normalize;
use crate::Micros;

/// How a diagnostic of a compile ahead starts: it says what the save will do, not what
/// happened.
pub(crate) const ON_SAVE: &str = "on save: ";

/// An open buffer's latest text.
struct Buffer {
    text: Arc<Vec<u8>>,
    /// When its compile ahead may start (`None`: started already, or the save compiles).
    due: Option<Instant>,
}

/// The compile ahead in progress.
struct Running {
    file: PathBuf,
    text: Arc<Vec<u8>>,
    /// `Ahead::saves` when it started: a file it read that was saved after is stale in it.
    started: u64,
    cancel: Cancel,
    /// Its thread's one answer; disconnected if the thread died without one.
    done: Receiver<Done>,
}

/// What a compile ahead's thread sends back.
pub(super) struct Done {
    unit: UnitJob,
    /// `None`: cancelled, or the text does not compile (said by the save, not now).
    compiled: Option<Compiled>,
}

/// A buffer's text compiled: the outcome, the object, and what the compile read.
struct Compiled {
    outcome: CompileOutcome,
    object: Object,
    /// The dependency list (the file itself left out); `None`: the compiler wrote none.
    deps: Option<Vec<PathBuf>>,
    /// Each of `deps` with its content as the compile read it (`Stamp`).
    reads: Vec<(PathBuf, Option<Stamp>)>,
}

/// A file's content, as its length and a hash of its bytes (`None` in a list: unreadable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    hash: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        use std::hash::Hasher;
        let bytes = std::fs::read(path).ok()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        hasher.write(&bytes);
        Some(Stamp {
            len: bytes.len() as u64,
            hash: hasher.finish(),
        })
    }
}

/// Whether every file of `reads` still has the content the compile read (the length is
/// asked first: most changes change it, and then the file is not read).
fn reads_unchanged(reads: &[(PathBuf, Option<Stamp>)]) -> bool {
    reads.iter().all(|(path, stamp)| match stamp {
        Some(stamp) => {
            std::fs::metadata(path).is_ok_and(|m| m.len() == stamp.len)
                && Stamp::of(path) == Some(*stamp)
        }
        None => Stamp::of(path).is_none(),
    })
}

/// What the running image a patch was linked against looked like: the linker's state and
/// the baseline the new object was compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LinkedAgainst {
    changes: u64,
    baseline: Option<u64>,
}

/// A buffer's text compiled ahead, and its link if it linked.
pub(super) struct Ready {
    text: Arc<Vec<u8>>,
    /// The process it was linked for: its unit (`tu`) means nothing in another one.
    pid: i32,
    unit: UnitJob,
    outcome: CompileOutcome,
    object: Object,
    deps: Option<Vec<PathBuf>>,
    /// What the compile read, each with its content then: the result is this text's only
    /// while all of them are unchanged.
    reads: Vec<(PathBuf, Option<Stamp>)>,
    patch: Option<(LinkedAgainst, Checked)>,
}

/// The worker's compile-ahead state.
pub(super) struct Ahead {
    buffers: HashMap<PathBuf, Buffer>,
    running: Option<Running>,
    ready: HashMap<PathBuf, Ready>,
    /// Saves seen so far, and the count at each file's last save: a compile ahead that read
    /// a file saved after it started (`Running::started`) read what that save replaced.
    saves: u64,
    saved: HashMap<PathBuf, u64>,
    /// Never ready: what the worker waits on while nothing compiles ahead.
    idle: Receiver<Done>,
}

impl Default for Ahead {
    fn default() -> Self {
        Ahead {
            buffers: HashMap::new(),
            running: None,
            ready: HashMap::new(),
            saves: 0,
            saved: HashMap::new(),
            idle: crossbeam_channel::never(),
        }
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // The session ends: no compiler outlives it.
        if let Some(running) = self.running.take() {
            running.cancel.cancel();
        }
    }
}

impl Ahead {
    /// The running compile ahead's answer, for the worker's wait.
    pub(super) fn done(&self) -> &Receiver<Done> {
        self.running.as_ref().map_or(&self.idle, |r| &r.done)
    }

    /// How long until a compile ahead is due (`None`: none is, or one runs already).
    pub(super) fn wait(&self) -> Option<Duration> {
        if self.running.is_some() {
            return None;
        }
        let due = self.buffers.values().filter_map(|b| b.due).min()?;
        Some(due.saturating_duration_since(Instant::now()))
    }

    /// A new process (launch, relaunch, exec, attach): what was compiled and linked ahead
    /// was for the previous one (its units, its linker, its baselines). The buffers stay,
    /// each due again, so their next compile ahead is for this process.
    pub(super) fn forget_process(&mut self) {
        if let Some(running) = self.running.take() {
            running.cancel.cancel();
        }
        self.ready.clear();
        let now = Instant::now();
        for buffer in self.buffers.values_mut() {
            buffer.due = Some(now);
        }
    }

    /// The session ends during a wait for the compile ahead: kill it, so the wait ends now.
    pub(super) fn stop(&self) {
        if let Some(running) = &self.running {
            running.cancel.cancel();
        }
    }

    /// `file` was saved: every result that read it is stale and dropped, each buffer due
    /// again (after the pause) to compile ahead with what was saved. A compile ahead still
    /// running that read it is told by its start (`on_ahead_done`), or killed now if its
    /// last known dependencies (`known`) name the file.
    fn saved(&mut self, file: &Path, known: &HashMap<PathBuf, Vec<PathBuf>>, delay: Duration) {
        self.saves += 1;
        self.saved.insert(file.to_owned(), self.saves);
        let reads = |ready: &Ready| ready.reads.iter().any(|(path, _)| path == file);
        let mut again: Vec<PathBuf> = self
            .ready
            .iter()
            .filter(|(unit, ready)| unit.as_path() != file && reads(ready))
            .map(|(unit, _)| unit.clone())
            .collect();
        for unit in &again {
            self.ready.remove(unit);
        }
        if let Some(running) = self.running.as_ref().filter(|r| {
            r.file != file
                && known
                    .get(&r.file)
                    .is_some_and(|deps| deps.iter().any(|d| d == file))
        }) {
            again.push(running.file.clone());
            if let Some(running) = self.running.take() {
                running.cancel.cancel();
            }
        }
        let due = Instant::now() + delay;
        for unit in again {
            if let Some(buffer) = self.buffers.get_mut(&unit) {
                buffer.due = Some(due);
            }
        }
    }

    /// Whether a compile ahead that started at `started` read one of `deps` as it was
    /// before a save of it.
    fn saved_since(&self, started: u64, deps: &[PathBuf]) -> bool {
        deps.iter()
            .any(|d| self.saved.get(d).is_some_and(|&at| at > started))
    }

    /// Kill the compile ahead of `file`, if one runs.
    fn cancel(&mut self, file: &Path) {
        if self.running.as_ref().is_some_and(|r| r.file == file) {
            if let Some(running) = self.running.take() {
                running.cancel.cancel();
            }
        }
    }
}

/// The key the diagnostics of compiles ahead are published under (`Worker::publish`
/// keeps each unit's list apart; this one is never a file).
fn ahead_unit(file: &Path) -> PathBuf {
    PathBuf::from(format!("{} (compiled ahead)", file.display()))
}

impl Worker {
    /// The buffer of `file` has `text` now: a compile ahead is due after the pause.
    pub(super) fn on_changed(&mut self, file: &Path, text: String) {
        let file = normalize(file);
        self.ahead.cancel(&file);
        self.ahead.ready.remove(&file);
        if !self.config.compile.ahead || !has_extension(&file, SOURCE_EXTENSIONS) {
            self.ahead.buffers.remove(&file);
            return;
        }
        let delay = Duration::from_millis(self.config.compile.ahead_delay_ms);
        self.ahead.buffers.insert(
            file,
            Buffer {
                text: Arc::new(text.into_bytes()),
                due: Some(Instant::now() + delay),
            },
        );
    }

    /// The editor closed `file`: its unsaved text and what was compiled of it are gone.
    pub(super) fn on_closed(&mut self, file: &Path) {
        let file = normalize(file);
        self.ahead.cancel(&file);
        self.ahead.ready.remove(&file);
        if self.ahead.buffers.remove(&file).is_some() {
            self.clear_ahead_diagnostics(&file);
        }
    }

    fn clear_ahead_diagnostics(&mut self, file: &Path) {
        let unit = ahead_unit(file);
        let Some(previous) = self.published.remove(&unit) else {
            return;
        };
        // Only findings that were shown need clearing: the file's list sent for nothing
        // would show the last save's warnings once more (a save compiled ahead published
        // them twice).
        if previous.values().any(|list| !list.is_empty()) {
            self.published.insert(unit.clone(), previous);
            self.publish(&unit, file, Vec::new());
            self.published.remove(&unit);
        }
    }

    /// Start the compile ahead that is due first, if none runs (idle time).
    pub(super) fn ahead_tick(&mut self) {
        if self.ahead.running.is_some() {
            return;
        }
        if self.program.is_none() {
            // Nothing to link against: the next change after a launch compiles ahead.
            for buffer in self.ahead.buffers.values_mut() {
                buffer.due = None;
            }
            return;
        }
        let now = Instant::now();
        let Some(file) = self
            .ahead
            .buffers
            .iter()
            .filter(|(_, b)| b.due.is_some_and(|due| due <= now))
            .min_by_key(|(_, b)| b.due)
            .map(|(file, _)| file.clone())
        else {
            return;
        };
        let Some(buffer) = self.ahead.buffers.get_mut(&file) else {
            return;
        };
        buffer.due = None;
        let text = Arc::clone(&buffer.text);
        if let Err(e) = self.start_ahead(&file, text) {
            // Nothing to say while typing: the save compiles and reports as usual.
            tracing::debug!(file = %file.display(), "no compile ahead: {e}");
        }
    }

    fn start_ahead(&mut self, file: &Path, text: Arc<Vec<u8>>) -> Result<(), String> {
        let unit = self.unit_job(file)?;
        // The file's own command on a copy of the buffer (`scratch_copy`).
        let (copy_dir, copy, as_file) = self.scratch_copy(file, text.as_slice(), "ahead")?;
        let mut argv = unit.job.flags_without_input();
        argv.extend(as_file);
        argv.extend([
            "-MD".into(),
            "-MF".into(),
            unit.depfile.display().to_string(),
            "-c".into(),
            copy.display().to_string(),
            "-o".into(),
            unit.job.output.display().to_string(),
        ]);
        let job = CompileJob {
            argv,
            ..unit.job.clone()
        };
        // What the file read at its last compile, stamped before this one reads it: one
        // changed while it compiles is then told from what the compile read.
        let known = self.dependencies.get(file).cloned().unwrap_or_default();
        let cancel = Cancel::default();
        let (sender, done) = crossbeam_channel::bounded(1);
        let thread_cancel = cancel.clone();
        std::thread::Builder::new()
            .name("hot-lsp compile ahead".into())
            .spawn(move || {
                let compiled = compile_copy(&job, &unit, &copy, &known, &thread_cancel);
                let _ = std::fs::remove_dir_all(&copy_dir);
                // The worker may have moved on (a newer text); then nobody listens.
                let _ = sender.send(Done { unit, compiled });
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        self.ahead.running = Some(Running {
            file: file.to_owned(),
            text,
            started: self.ahead.saves,
            cancel,
            done,
        });
        Ok(())
    }

    /// The running compile ahead answered (`None`: its thread died without an answer).
    pub(super) fn on_ahead_done(&mut self, done: Option<Box<Done>>) {
        let Some(running) = self.ahead.running.take() else {
            return;
        };
        let current = self
            .ahead
            .buffers
            .get(&running.file)
            .is_some_and(|b| Arc::ptr_eq(&b.text, &running.text));
        match done.and_then(|d| {
            let Done { unit, compiled } = *d;
            compiled.map(|c| (unit, c))
        }) {
            // It read a file saved since it started, or one changed since it read it: what
            // it compiled is not this text with the files as they are. It compiles again.
            Some((_, compiled))
                if current
                    && (self.ahead.saved_since(
                        running.started,
                        compiled.deps.as_deref().unwrap_or_default(),
                    ) || !reads_unchanged(&compiled.reads)) =>
            {
                tracing::debug!(
                    file = %running.file.display(),
                    "a compile ahead read a file changed since"
                );
                let delay = Duration::from_millis(self.config.compile.ahead_delay_ms);
                if let Some(buffer) = self.ahead.buffers.get_mut(&running.file) {
                    buffer.due = Some(Instant::now() + delay);
                }
            }
            Some((unit, compiled)) if current => {
                self.link_ahead(running.text, unit, compiled);
            }
            // A text that does not compile: the last pre-flight findings are about another.
            _ if current => self.clear_ahead_diagnostics(&running.file),
            _ => {}
        }
        self.ahead_tick();
    }

    /// Link a compiled buffer against the running image (nothing is written) and publish
    /// what the save would be told.
    fn link_ahead(&mut self, text: Arc<Vec<u8>>, unit: UnitJob, compiled: Compiled) {
        let Compiled {
            outcome,
            object,
            deps,
            reads,
        } = compiled;
        let file = unit.file.clone();
        // Linked against the baseline the save will use: one compiling is waited for.
        self.settle_baseline_of(&file);
        let baseline = self
            .baselines
            .get(&file)
            .filter(|b| b.argv == unit.job.flags())
            .cloned();
        let Some(program) = self.program.as_mut() else {
            return;
        };
        let pid = program.debuggee.pid();
        let compile_unit = program.compile_unit_of(&unit.image, &file);
        let source = file.display().to_string();
        let applied = baseline
            .as_ref()
            .map(super::Baseline::applied)
            .unwrap_or_default();
        let request = LinkRequest {
            object: &object,
            baseline: baseline.as_ref().and_then(|b| b.object.get()),
            unit: UnitRef {
                tu: unit.tu,
                compile_unit,
                source: source.clone(),
            },
            applied: &applied,
        };
        let requests = std::slice::from_ref(&request);
        let image = unit.image.clone();
        let link = |program: &mut crate::program::Program| {
            let linker = program.linker_for(&image).ok()?;
            let changes = linker.changes();
            Some((changes, link_guarded(linker, requests).ok()?))
        };
        let mut linked = link(program);
        let undefined = linked.as_ref().is_some_and(|(_, result)| {
            result.as_ref().is_err_and(|errors| {
                errors
                    .iter()
                    .any(|e| e.code == hot_link::LinkErrorCode::UndefinedSymbol)
            })
        });
        // As the save does: the symbol may come from a library loaded since.
        if undefined && program.refresh_libraries() {
            linked = link(program);
        }
        // The save's ABI checks too (worker/abi.rs: a changed layout or signature, a
        // function removed but still called): what the save would be refused for shows
        // while typing, whichever check refuses it.
        let linked = linked.map(|(changes, result)| {
            let checked = result.and_then(|patch| {
                // Frames are the save's to look at, with the program stopped; the guards
                // that check needs are kept for it.
                let mut guards = Vec::new();
                super::abi::check(program, &image, requests, patch, &mut guards)
                    .map(|patch| Checked { patch, guards })
            });
            (changes, checked)
        });
        drop(request);
        // A panic of the linker (already a message) is for the save to report.
        let Some((changes, result)) = linked else {
            self.clear_ahead_diagnostics(&file);
            return;
        };
        let against = LinkedAgainst {
            changes,
            baseline: baseline.as_ref().map(|b| b.object.identity()),
        };
        let mut diagnostics = match &result {
            Ok(checked) => note_diagnostics(&checked.patch, &source, &file),
            Err(errors) => super::pipeline::refusal_diagnostics(errors, &source, &file),
        };
        for d in &mut diagnostics {
            d.message.insert_str(0, ON_SAVE);
        }
        self.publish(&ahead_unit(&file), &file, diagnostics);
        self.ahead.ready.insert(
            file,
            Ready {
                text,
                pid,
                unit,
                outcome,
                object,
                deps,
                reads,
                patch: result.ok().map(|checked| (against, checked)),
            },
        );
    }

    /// At every save, before anything is compiled for it: what was compiled ahead with the
    /// file as it was before (its includers' results, a header's) is stale (`Ahead::saved`).
    pub(super) fn ahead_saw_save(&mut self, file: &Path) {
        let delay = Duration::from_millis(self.config.compile.ahead_delay_ms);
        self.ahead.saved(file, &self.dependencies, delay);
    }

    /// At a save of `file` that compiles other files with it (the units that include it):
    /// its compile ahead is of the file alone, not the save's, so it is stopped or dropped,
    /// and its findings give way to the save's.
    pub(super) fn forget_compiled_ahead(&mut self, file: &Path) {
        self.saving_ahead_buffer(file);
        self.ahead.cancel(file);
        self.ahead.ready.remove(file);
    }

    /// A save of `file` compiles its text now, one way or the other: no compile ahead of it
    /// is due, and the pre-flight findings are the save's to replace.
    fn saving_ahead_buffer(&mut self, file: &Path) {
        if let Some(buffer) = self.ahead.buffers.get_mut(file) {
            buffer.due = None;
        }
        self.clear_ahead_diagnostics(file);
    }

    /// At a save of `file`: its compile ahead, if the file on disk is exactly the text it
    /// compiled (waiting for one of that text still running, killing one of another).
    pub(super) fn take_compiled_ahead(&mut self, file: &Path) -> Option<Ready> {
        let disk = std::fs::read(file).ok();
        self.saving_ahead_buffer(file);
        if let Some(running) = self.ahead.running.as_ref().filter(|r| r.file == file) {
            if disk.as_deref() == Some(running.text.as_slice()) {
                let done = running.done.clone();
                let done = self.forward_output_until(&done).ok().map(Box::new);
                self.on_ahead_done(done);
                // Its findings come with the save's own diagnostics; a compile ahead found
                // stale is not made again for the text this save compiles.
                self.saving_ahead_buffer(file);
            } else {
                self.ahead.cancel(file);
            }
        }
        let ready = self.ahead.ready.remove(file)?;
        let pid = self.program.as_ref().map(|p| p.debuggee.pid());
        if disk.as_deref() != Some(ready.text.as_slice()) || pid != Some(ready.pid) {
            return None;
        }
        // Every file the compile read is as it read it: else the object has old code of a
        // header or an included file (saved since, or changed on disk), and swapping it
        // would undo that change.
        if ready.deps.is_none() || !reads_unchanged(&ready.reads) {
            tracing::debug!(file = %file.display(), "the compile ahead read a file changed since");
            return None;
        }
        // The file is still the unit it was when compiled ahead (another save may have
        // linked it in as a new unit since, or an exec kept the pid), compiled by the same
        // command (the compile database may have changed since): else compile anew.
        let now = self.unit_job(file).ok()?;
        let same_command = now.job.flags() == ready.unit.job.flags()
            && now.job.directory == ready.unit.job.directory;
        (now.tu == ready.unit.tu && now.new_unit == ready.unit.new_unit && same_command)
            .then_some(ready)
    }

    /// Swap a save whose text was compiled ahead: no compile, and no link either when the
    /// image and the baseline are still what the patch was linked against.
    pub(super) fn swap_compiled_ahead(
        &mut self,
        file: &Path,
        ready: Ready,
    ) -> super::pipeline::SwapResult {
        let Ready {
            unit,
            outcome,
            object,
            deps,
            patch,
            ..
        } = ready;
        if let Some(deps) = deps {
            self.dependencies.insert(file.to_owned(), deps);
        }
        // The baseline the save links with (compiled now if it is still queued, as
        // `link_and_apply` would), to tell whether the patch was linked against it.
        let baseline = self
            .baseline_for(file, unit.job.flags())
            .map(|b| b.object.identity());
        // The linker of the image the file is a unit of (a library's own, for a file of a
        // project library), as the ahead link read it.
        let changes = self
            .program
            .as_mut()
            .and_then(|p| p.linker_for(&unit.image).ok().map(|l| l.changes()));
        let prelinked = patch
            .filter(|(against, _)| Some(against.changes) == changes && against.baseline == baseline)
            .map(|(_, patch)| patch);
        tracing::debug!(
            file = %file.display(),
            relinked = prelinked.is_none(),
            "a save compiled ahead"
        );
        let micros = Micros {
            compiled_ahead: true,
            ..Micros::default()
        };
        self.link_and_apply(file, vec![(unit, outcome, object)], micros, prelinked)
    }
}

/// Compile the copy of a buffer and read its object and dependency list (on the compile
/// ahead's thread: no worker state). Diagnostics and dependencies name the file, not the
/// copy. `known`: what the file read at its last compile, stamped before this compile
/// reads them, so a change while it compiles shows in `Compiled::reads`; a file new to
/// the list is stamped once the compile is done (a save of it meanwhile is told by
/// `Running::started`).
fn compile_copy(
    job: &CompileJob,
    unit: &UnitJob,
    copy: &Path,
    known: &[PathBuf],
    cancel: &Cancel,
) -> Option<Compiled> {
    let before: HashMap<&Path, Option<Stamp>> =
        known.iter().map(|d| (d.as_path(), Stamp::of(d))).collect();
    let outcome = compile::run_cancellable(job, cancel, compile::Priority::Normal);
    let deps: Option<Vec<PathBuf>> = std::fs::read_to_string(&unit.depfile).ok().map(|text| {
        compile::parse_depfile(&text, &job.directory)
            .into_iter()
            .filter(|d| d != copy && *d != unit.file)
            .collect()
    });
    let _ = std::fs::remove_file(&unit.depfile);
    let mut outcome = match outcome {
        Ok(Some(outcome)) if outcome.success && !cancel.is_cancelled() => outcome,
        _ => {
            let _ = std::fs::remove_file(&job.output);
            return None;
        }
    };
    let object = read_object(job).ok()?;
    for d in &mut outcome.diagnostics {
        if d.file == copy {
            d.file = unit.file.clone();
        }
    }
    let reads = deps
        .iter()
        .flatten()
        .map(|d| {
            let stamp = match before.get(d.as_path()) {
                Some(stamp) => *stamp,
                None => Stamp::of(d),
            };
            (d.clone(), stamp)
        })
        .collect();
    Some(Compiled {
        outcome,
        object,
        deps,
        reads,
    })
}
