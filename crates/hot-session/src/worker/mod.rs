//! The session worker: one thread, a loop over a closed set of events (front-end commands and
//! the program's own events), running compile -> link -> swap strictly in order.
//!
//! `lifecycle` starts and stops the program, `baseline` knows how files are compiled and
//! what they were compiled from, `pipeline` turns a save into a swap.

mod abi;
pub(crate) use abi::FrameGuard;
mod ahead;
mod assembly;
mod baseline;
pub(crate) mod gdb_jit;
mod held;
mod ipa_ra;
mod lifecycle;
mod lto;
mod new_units;
mod perf_map;
mod pipeline;
mod unwind;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use hot_object::Object;
use hot_process::ProcessEvent;

use crate::compile_db::CompileDatabase;
use crate::config::{self, Config, LaunchMode};
use crate::program::Program;
use crate::{
    Command, Diagnostic, OutputStream, SessionEvent, SessionOptions, Severity, State, Status,
};

/// Everything the worker reacts to.
enum Event {
    Command(Command),
    Process(ProcessEvent),
    /// Nothing is waiting: time for one background baseline compile, or a compile ahead.
    Idle,
    /// The compile ahead of a buffer finished (`None`: its thread ended without a word).
    Ahead(Option<Box<ahead::Done>>),
    /// A background baseline compile finished.
    Baseline(Box<baseline::BaselineDone>),
}

/// The last object of a file that matches what runs, compiled with the same flags.
#[derive(Clone)]
pub(crate) struct Baseline {
    /// The compile command without its output path (see [`CompileJob::flags`]).
    pub argv: Vec<String>,
    pub object: BaselineObject,
    /// The variables of the file whose initializer in this object is not the one the
    /// running program was given: an `initializer-not-applied` warning of an earlier save
    /// that still holds. The next save compares their initializers with that one, not with
    /// this object's, so the warning stays until the source has the running initializer
    /// again (or the variable goes, or the program restarts: the baselines go with it).
    /// Undo gives back the baseline before the swap, with its own list.
    pub unapplied: Vec<Unapplied>,
}

/// A variable whose running initializer is not its file's baseline's ([`Baseline::unapplied`]).
#[derive(Clone)]
pub(crate) struct Unapplied {
    /// Its identity in the file's objects (`hot_link::UnappliedInitializer::identity`:
    /// `counter`, `tick/calls`).
    pub identity: String,
    /// The earlier object of the file whose initializer of it the program has (the
    /// baseline of the save that first warned); `None`: the executable's own bytes (that
    /// save had no baseline and compared with the running image).
    pub applied: Option<BaselineObject>,
}

impl Baseline {
    /// [`Baseline::unapplied`] as the linker takes it (`hot_link::LinkRequest::applied`).
    /// A record whose object cannot be read any more (its scratch file was removed) is left
    /// out: that variable is compared with the baseline.
    pub(crate) fn applied(&self) -> Vec<hot_link::AppliedInitializer<'_>> {
        self.unapplied
            .iter()
            .filter_map(|u| {
                let object = match &u.applied {
                    Some(b) => Some(b.get()?),
                    None => None,
                };
                Some(hot_link::AppliedInitializer {
                    identity: &u.identity,
                    object,
                })
            })
            .collect()
    }

    /// The [`Baseline::unapplied`] list of the baseline a save's object becomes, when the
    /// save linked against `previous` (`None`: without a baseline, against the running
    /// image) and the link noted the variables `noted` (`initializer-not-applied`): a
    /// variable noted before keeps what the program was given; one noted first now was
    /// given `previous`'s initializer (or the executable's). A variable not noted any more
    /// is dropped: its initializer is the running one again, or it is gone.
    pub(crate) fn unapplied_after<'n>(
        previous: Option<&Baseline>,
        noted: impl IntoIterator<Item = &'n str>,
    ) -> Vec<Unapplied> {
        let mut list: Vec<Unapplied> = Vec::new();
        for identity in noted {
            if list.iter().any(|u| u.identity == identity) {
                continue;
            }
            let earlier =
                previous.and_then(|b| b.unapplied.iter().find(|u| u.identity == identity).cloned());
            list.push(earlier.unwrap_or_else(|| {
                Unapplied {
                    identity: identity.to_string(),
                    // The link compared with the baseline only if its object could be read.
                    applied: previous
                        .filter(|b| b.object.get().is_some())
                        .map(|b| b.object.clone()),
                }
            }));
        }
        list
    }
}

/// A baseline's object: parsed (the object of a save, which the next save of its file is
/// diffed against), or left on disk in the scratch folder and parsed on the first save of
/// its file. A background baseline is kept on disk: a parsed object of 2,000 functions
/// takes about 1.9 MiB, and a program of 100,000 functions has 50 of them, most of which are
/// never saved in a session. Clones share one parse.
#[derive(Clone)]
pub(crate) struct BaselineObject(Arc<LazyObject>);

struct LazyObject {
    /// Which baseline this is ([`BaselineObject::identity`]).
    id: u64,
    /// The object file, removed with the last clone (`None`: parsed from the start).
    path: Option<PathBuf>,
    parsed: std::sync::OnceLock<Option<Arc<Object>>>,
}

/// The next baseline's [`BaselineObject::identity`]: never reused, unlike the address of
/// a dropped baseline, which the next one may get.
static NEXT_BASELINE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn next_baseline_id() -> u64 {
    NEXT_BASELINE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl BaselineObject {
    pub(crate) fn parsed(object: Object) -> BaselineObject {
        let parsed = std::sync::OnceLock::new();
        let _ = parsed.set(Some(Arc::new(object)));
        BaselineObject(Arc::new(LazyObject {
            id: next_baseline_id(),
            path: None,
            parsed,
        }))
    }

    /// The object file at `path`, which this baseline now owns (removes).
    pub(crate) fn on_disk(path: PathBuf) -> BaselineObject {
        BaselineObject(Arc::new(LazyObject {
            id: next_baseline_id(),
            path: Some(path),
            parsed: std::sync::OnceLock::new(),
        }))
    }

    /// The object, parsed on the first call. `None` when its file cannot be read or parsed
    /// any more (it parsed when it was compiled: someone removed the scratch folder); the
    /// save is then compared with the running image, as without a baseline.
    pub(crate) fn get(&self) -> Option<&Object> {
        let parsed = self.0.parsed.get_or_init(|| {
            let path = self.0.path.as_ref()?;
            let read = std::fs::read(path).map_err(|e| e.to_string());
            match read.and_then(|bytes| Object::parse_owned(path, bytes).map_err(|e| e.to_string()))
            {
                Ok(object) => Some(Arc::new(object)),
                Err(e) => {
                    tracing::warn!("baseline {} is gone: {e}", path.display());
                    None
                }
            }
        });
        parsed.as_deref()
    }

    /// Whether the object is held in memory, parsed (a save's object, or one read from
    /// disk on its first use).
    pub(crate) fn is_parsed(&self) -> bool {
        self.0.parsed.get().is_some_and(Option::is_some)
    }

    /// This baseline kept on disk at `path` instead of in memory, if it is held parsed:
    /// its file is written (`Object::file`, the bytes it was read from) and parsed again on
    /// first use; the parse held here goes with the last clone of this one. `None` when it
    /// is not parsed, has no file to write (built by hand) or the write fails (it then
    /// stays in memory).
    pub(crate) fn spilled(&self, path: PathBuf) -> Option<BaselineObject> {
        let object = self.0.parsed.get()?.as_ref()?;
        if object.file.is_empty() {
            return None;
        }
        match std::fs::write(&path, &object.file[..]) {
            Ok(()) => Some(BaselineObject::on_disk(path)),
            Err(e) => {
                tracing::debug!(
                    "baseline kept in memory: cannot write {}: {e}",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Which baseline this is (the same for its clones), for telling whether a patch
    /// linked ahead was linked against it.
    pub(crate) fn identity(&self) -> u64 {
        self.0.id
    }
}

impl Drop for LazyObject {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

const SOURCE_EXTENSIONS: &[&str] = &["c", "cc", "cpp", "cxx", "c++", "m", "mm"];
const HEADER_EXTENSIONS: &[&str] = &["h", "hh", "hpp", "hxx", "h++", "inl"];

fn has_extension(path: &Path, list: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| list.contains(&e))
}

/// gcc's `-fipa-ra` lets a caller assume which registers its callee clobbers; a new body
/// may clobber others. The flags that make swapping safe are named in the warning.
const HOT_RELOAD_FLAGS: &str = "-O0, -O1 or -Og, or -O2 -fno-ipa-ra -fno-ipa-icf -fno-ipa-sra";

/// Whether the flags a `DW_AT_producer` records put gcc's `-fipa-ra` in force: the last
/// `-fipa-ra` or `-fno-ipa-ra` decides (gcc applies the -O level first, then the `-f` flags in
/// order), else the last -O level (`-O2`, `-O3` and up, `-Os`, `-Ofast`, `-Oz` enable it; `-O`,
/// `-O0`, `-O1`, `-Og` do not).
fn risky_optimisation(producer: &str) -> bool {
    let mut level = false;
    let mut explicit = None;
    for flag in producer.split_whitespace() {
        match flag {
            "-fipa-ra" => explicit = Some(true),
            "-fno-ipa-ra" => explicit = Some(false),
            _ => {
                if let Some(o) = flag.strip_prefix("-O") {
                    level = match o {
                        "s" | "fast" | "z" => true,
                        "" | "g" => false,
                        digits => digits.parse::<u32>().is_ok_and(|n| n >= 2),
                    };
                }
            }
        }
    }
    explicit.unwrap_or(level)
}

struct Worker {
    options: SessionOptions,
    events: Sender<SessionEvent>,
    status: Arc<Mutex<Status>>,
    config: Config,
    /// The configuration's problems when it last failed to load (`config` then is the last
    /// good one, or the defaults): nothing is launched with it.
    config_errors: Vec<String>,
    opted_in: bool,
    client_config: Option<serde_json::Value>,
    database: Option<CompileDatabase>,
    /// The unreadable database last said to be (its path, length and change time): said once,
    /// not at every look until it is fixed.
    database_error: Option<(PathBuf, u64, Option<std::time::SystemTime>)>,
    scratch: Option<tempfile::TempDir>,
    program: Option<Program>,
    process_events: Receiver<ProcessEvent>,
    baselines: HashMap<PathBuf, Baseline>,
    /// The diagnostics currently published, per translation unit that produced them and
    /// per file they are about: a header's list is the union of what each of its includers
    /// said about it (a header's swap compiles several).
    published: HashMap<PathBuf, BTreeMap<PathBuf, Vec<Diagnostic>>>,
    seq: u64,
    warned_optimisation: bool,
    /// The note that the program has no unwinder to register new code with was given.
    warned_exceptions: bool,
    /// A C program's missing unwinder was logged (once: every swap of it finds the same).
    noted_no_unwinder: bool,
    scratch_counter: u64,
    /// Source files swapped into the program, in order, and the build-id of the executable
    /// they went into: a relaunch of that same executable gets them again (re-linked from
    /// source, not replayed as bytes). A rebuilt executable already contains them.
    replay: Vec<PathBuf>,
    replay_build_id: Option<Vec<u8>>,
    /// The text, as the program was built from it, of each file linked into the program
    /// and unchanged since the build, read at adoption: kept for the program's life, so a
    /// baseline can be compiled from it whenever a save needs one.
    snapshots: BTreeMap<PathBuf, Vec<u8>>,
    /// The text of each file the executable does not contain, unchanged since the build,
    /// read at adoption while the program's libraries were not known yet (ld.so had not
    /// loaded them): a snapshot once they are, if one of them contains the file.
    library_snapshots: BTreeMap<PathBuf, Vec<u8>>,
    /// Files whose baseline is still to be compiled: started in idle time, `jobs` at a
    /// time, so a large program's output and saves are never held up behind them. A save
    /// of a queued file compiles its baseline first (`baseline_for`).
    baseline_queue: BTreeSet<PathBuf>,
    /// The queued baselines being compiled on their own threads, at a lowered priority, so
    /// that the program's output keeps flowing and saves are served during the compiles
    /// (sqlite3.c takes 40 s and more). Only what needs one of them waits for it: a save of
    /// that file (`settle_baseline_of`); undo and a new configuration wait for all
    /// (`settle_baselines`); shutdown and the program's end kill them
    /// (`abandon_baselines`).
    in_flight: baseline::InFlight,
    /// What each baseline compile read (the source and every header, from `-MD`): a
    /// baseline is trusted only if none of them changed after the executable was built.
    /// Kept per translation unit, to find the includers of a header.
    /// Kept current by every compile of a save (`-MD`), so a newly added `#include` is
    /// known, and kept across a relaunch of the same build-id (`dependencies_build_id`): a
    /// header saved right after the relaunch finds its includers without a compile.
    dependencies: HashMap<PathBuf, Vec<PathBuf>>,
    /// The build-id of the executable `dependencies` were compiled for.
    dependencies_build_id: Option<Vec<u8>>,
    /// Files whose baseline was refused because a header they read changed after the
    /// build: no baseline is tried again for this process.
    refused_baselines: HashSet<PathBuf>,
    /// When the running executable was built: a source modified later is not what runs.
    exe_modified: Option<std::time::SystemTime>,
    /// The forked children (running the same executable) the last swap warning named: a
    /// pre-fork server's workers keep the old code, said again when the set changes.
    warned_children: Vec<i32>,
    /// When the session's own build command started for the running program (None: built
    /// elsewhere, or attached). A source modified after that may have been read by the
    /// build before the edit, though the executable it produced is newer than the edit.
    build_started: Option<std::time::SystemTime>,
    /// Snapshots of files modified while the build ran (generated by it, or saved then):
    /// their baseline is kept only if it matches the running image.
    snapshots_during_build: HashSet<PathBuf>,
    /// Until when idle time is spent preparing the linker (arenas, symbol index) of a
    /// program whose libraries were not loaded yet when it was adopted.
    prepare_linker_until: Option<std::time::Instant>,
    /// Saves refused because a debugger lets the program run (`ProcessError::HeldByDebugger`),
    /// swapped as soon as it holds the program stopped or detaches (`retry_held_saves`).
    held_saves: Vec<PathBuf>,
    /// Saves of files built into a shared library of the workspace the program has not
    /// loaded yet (a plugin it `dlopen`s later), with that library: swapped into it once it
    /// is loaded (`held.rs`), never linked into the executable.
    awaiting_load: Vec<held::HeldForLoad>,
    /// Files swapped into a library that was unloaded since (`held.rs`): linked into its new
    /// load at the next save once it is loaded again.
    moved_files: Vec<(PathBuf, String)>,
    /// The functions this session had swapped into each library forgotten (by path): named
    /// when a file of it cannot be linked into the new load.
    moved_functions: HashMap<String, Vec<String>>,
    /// When idle time next looks at the libraries for `awaiting_load` and `moved_files`.
    library_poll_at: Option<std::time::Instant>,
    /// The compile-database files the program does not link, compiled to tell which globals
    /// each defines (`new_units.rs`): a symbol new code needs may be one compile away.
    unit_index: HashMap<PathBuf, new_units::IndexedFile>,
    /// Unsaved buffers and what was compiled of them ahead of their save (`ahead.rs`).
    ahead: ahead::Ahead,
    /// A process event other than output that came while the worker waited for a compile
    /// (`forward_output_until`): from then on nothing more of the program is read until it
    /// is handled, so output after it never goes ahead of it. A save handles it before it
    /// links and before it writes (`program_left`); the loop, before anything else. It is
    /// about the process `process_events` comes from: replacing that process forgets it
    /// (`stop_program`, `adopt`).
    deferred: Option<ProcessEvent>,
    /// Disconnects as the session ends: a wait for compiles (`forward_output_until`) then
    /// kills them (`stopping`) and the session's shutdown does not wait for them.
    ending: Receiver<()>,
    /// Every compile the worker waits for runs with it (a save's, the baselines it needs,
    /// the files a link pulls in): cancelled as the session ends, and then nothing more is
    /// done for the save.
    stopping: crate::compile::Cancel,
}

/// How often idle time looks whether the dynamic linker has finished.
const PREPARE_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// How often a save held back by a debugger looks whether the program is stopped now.
const DEBUGGER_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// How often, while a save waits for its library to be loaded (or a library has swaps a
/// reload would drop), idle time reads the memory map for it. Only then; at most a tenth of a
/// second between the `dlopen` and the swap.
const LIBRARY_LOAD_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The worker's thread: a loop over [`Event`]s from the front end's `commands`, the
/// program, background work and idle time, until `commands` ends or asks to shut down; the
/// second receiver disconnects as the session ends (`Session::ending`).
pub(crate) fn run(
    options: SessionOptions,
    (commands, ending): (Receiver<Command>, Receiver<()>),
    events: Sender<SessionEvent>,
    status: Arc<Mutex<Status>>,
) {
    let mut worker = Worker {
        ending,
        stopping: crate::compile::Cancel::default(),
        client_config: options.client_config.clone(),
        options,
        events,
        status,
        config: Config::default(),
        config_errors: Vec::new(),
        opted_in: false,
        database: None,
        database_error: None,
        scratch: tempfile::Builder::new().prefix("hot-lsp-").tempdir().ok(),
        program: None,
        process_events: crossbeam_channel::never(),
        baselines: HashMap::new(),
        published: HashMap::new(),
        seq: 0,
        warned_optimisation: false,
        warned_exceptions: false,
        noted_no_unwinder: false,
        scratch_counter: 0,
        replay: Vec::new(),
        replay_build_id: None,
        snapshots: BTreeMap::new(),
        library_snapshots: BTreeMap::new(),
        baseline_queue: BTreeSet::new(),
        in_flight: baseline::InFlight::default(),
        dependencies: HashMap::new(),
        dependencies_build_id: None,
        refused_baselines: HashSet::new(),
        exe_modified: None,
        warned_children: Vec::new(),
        build_started: None,
        snapshots_during_build: HashSet::new(),
        prepare_linker_until: None,
        held_saves: Vec::new(),
        awaiting_load: Vec::new(),
        moved_files: Vec::new(),
        moved_functions: HashMap::new(),
        library_poll_at: None,
        unit_index: HashMap::new(),
        ahead: ahead::Ahead::default(),
        deferred: None,
    };
    worker.reload_config();
    if worker.opted_in
        && worker.options.auto_launch
        && worker.config.program.launch == LaunchMode::Auto
    {
        worker.launch();
    }
    loop {
        let command = |c: Result<Command, _>| match c {
            Ok(c) => Event::Command(c),
            Err(_) => Event::Command(Command::Shutdown),
        };
        let process = |e: Result<ProcessEvent, _>| match e {
            Ok(e) => Event::Process(e),
            // The owner thread is gone without an exit notice; treat it as an exit.
            Err(_) => Event::Process(ProcessEvent::Exited {
                code: None,
                signal: None,
            }),
        };
        let event = if let Some(event) = worker.deferred.take() {
            // Held back by a compile the worker waited for: it comes before any later event
            // of the program.
            Event::Process(event)
        } else {
            let idle_after = if worker.baseline_to_start() {
                Some(std::time::Duration::ZERO)
            } else if worker.prepare_linker_until.is_some() {
                // Waiting for the dynamic linker to finish: look again shortly.
                Some(PREPARE_POLL)
            } else if !worker.held_saves.is_empty() {
                // A debugger lets the program run: look again shortly whether it stopped it.
                Some(DEBUGGER_POLL)
            } else if (!worker.awaiting_load.is_empty() && worker.program.is_some())
                || worker.watches_libraries()
            {
                // A save waits for the program to load its library, or a library with
                // swaps may be reloaded (`held.rs`). A deadline, not a fresh interval each
                // turn: a program that prints every few milliseconds would put it off forever.
                let at = *worker
                    .library_poll_at
                    .get_or_insert_with(|| std::time::Instant::now() + LIBRARY_LOAD_POLL);
                Some(at.saturating_duration_since(std::time::Instant::now()))
            } else {
                None
            };
            // A compile ahead due after a pause in typing.
            let idle_after = match (idle_after, worker.ahead.wait()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let ahead = worker.ahead.done();
            let baseline = worker.in_flight.results.clone();
            // Idle time comes when nothing else is ready, after `idle_after` (never: `None`).
            let idle = idle_after.map_or_else(crossbeam_channel::never, crossbeam_channel::after);
            crossbeam_channel::select_biased! {
                recv(commands) -> c => command(c),
                recv(worker.process_events) -> e => process(e),
                recv(ahead) -> d => Event::Ahead(d.ok().map(Box::new)),
                recv(baseline) -> b => match b {
                    Ok(b) => Event::Baseline(Box::new(b)),
                    Err(_) => Event::Idle,
                },
                recv(idle) -> _ => Event::Idle,
            }
        };
        if let Event::Command(command) = &event {
            if waits_for_baselines(command) {
                worker.settle_baselines();
            }
        }
        // What the program did while the worker waited comes first: a restart or an attach
        // must not see the old process's exit after it replaced it.
        if !matches!(event, Event::Command(Command::Saved(_))) {
            worker.handle_deferred();
        }
        match event {
            Event::Baseline(done) => worker.finish_baseline_in_flight(*done),
            Event::Command(Command::Shutdown) => {
                worker.abandon_baselines();
                worker.stop_program(false);
                break;
            }
            Event::Command(Command::Saved(file)) => {
                // Several quick saves coalesce: take every save already queued, once each.
                let mut saved = vec![file];
                let mut rest = Vec::new();
                while let Ok(next) = commands.try_recv() {
                    match next {
                        Command::Saved(f) => {
                            if !saved.contains(&f) {
                                saved.push(f)
                            }
                        }
                        other => rest.push(other),
                    }
                }
                for file in saved {
                    worker.on_saved(&file);
                }
                // A save that ended before it looked (a file that does not compile) leaves
                // it pending: the commands queued behind the saves come after it.
                worker.handle_deferred();
                let mut stop = false;
                for command in rest {
                    if command == Command::Shutdown {
                        stop = true;
                        break;
                    }
                    if waits_for_baselines(&command) {
                        worker.settle_baselines();
                    }
                    worker.on_command(command);
                }
                if stop {
                    worker.abandon_baselines();
                    worker.stop_program(false);
                    break;
                }
            }
            Event::Command(command) => worker.on_command(command),
            Event::Process(event) => worker.on_process_event(event),
            Event::Ahead(done) => worker.on_ahead_done(done),
            Event::Idle => {
                worker.retry_held_saves();
                // The program's event the retried saves left pending comes first, before
                // any background work for a program that may be gone.
                if worker.deferred.is_some() {
                    continue;
                }
                if worker
                    .library_poll_at
                    .is_some_and(|at| at <= std::time::Instant::now())
                {
                    worker.library_poll_at = None;
                    worker.retry_awaiting_load();
                    worker.watch_libraries();
                }
                // The linker first: it takes milliseconds, a baseline takes a compile; a
                // compile ahead runs beside the worker.
                worker.try_prepare_linker();
                worker.ahead_tick();
                worker.start_baselines();
            }
        }
    }
}

/// Whether `command` reads or replaces what background baselines change, and so waits for
/// those in flight: undo puts back the baselines a swap replaced, a new configuration may
/// change every command. Everything else goes ahead of them: the program's output,
/// keystrokes, a save (which waits only for its own files' baselines), and whatever ends
/// the program or the session (which kills them).
fn waits_for_baselines(command: &Command) -> bool {
    matches!(command, Command::Undo | Command::Configure(_))
}

impl Worker {
    /// Wait for `done` while forwarding the program's output as it comes: a compile of a
    /// large file takes a minute, and the program keeps printing meanwhile. Any other event of
    /// the program (its exit, an exec) is kept in `deferred` and ends the forwarding, so
    /// nothing the program said after it goes ahead of it; whoever waited handles it.
    pub(super) fn forward_output_until<T>(
        &mut self,
        done: &Receiver<T>,
    ) -> Result<T, crossbeam_channel::RecvError> {
        loop {
            // Once an event is kept, nothing more of the program is read until it is handled.
            let events = match self.deferred {
                Some(_) => crossbeam_channel::never(),
                None => self.process_events.clone(),
            };
            let ending = self.ending.clone();
            crossbeam_channel::select! {
                recv(done) -> result => return result,
                // Only ever disconnected: the session ends. The compiles die; what waited
                // for them sees `stopping` and does nothing more.
                recv(ending) -> _ => {
                    self.stopping.cancel();
                    self.cancel_baselines();
                    self.ahead.stop();
                    self.ending = crossbeam_channel::never();
                }
                recv(events) -> event => match event {
                    Ok(output @ ProcessEvent::Output { .. }) => self.on_process_event(output),
                    Ok(other) => {
                        if let ProcessEvent::Exec { path } = &other {
                            // Handled once the compile ends; said now, since the program's
                            // output stops reaching the client until then.
                            self.message(
                                Severity::Information,
                                format!(
                                    "the program called exec ({path}) during a compile: \
                                     hot-lsp reads its new image once the compile ends"
                                ),
                            );
                        }
                        self.deferred = Some(other)
                    }
                    // The owner thread is gone without an exit notice: an exit, as in the loop.
                    Err(_) => {
                        self.deferred = Some(ProcessEvent::Exited {
                            code: None,
                            signal: None,
                        })
                    }
                },
            }
        }
    }

    /// Handle the program's event kept while the worker waited (`deferred`), if any.
    fn handle_deferred(&mut self) {
        if let Some(event) = self.deferred.take() {
            self.on_process_event(event);
        }
    }

    /// Run `work` (a compile: nothing of the worker's) on a thread of its own, forwarding
    /// the program's output until it is done (`forward_output_until`).
    pub(super) fn while_forwarding<R: Send>(&mut self, work: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|scope| {
            let (finished, done) = crossbeam_channel::bounded(1);
            let thread = scope.spawn(move || {
                let result = work();
                // Nobody may listen any more only if this thread outlived the scope: never.
                let _ = finished.send(());
                result
            });
            // A thread that panicked drops `finished` without a word: the join says why.
            let _ = self.forward_output_until(&done);
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// How many compiles run at once (`[compile] jobs`, else one per core, at most 16):
    /// a header's includers, and the background baselines.
    fn jobs(&self) -> usize {
        self.config
            .compile
            .jobs
            .map_or_else(pipeline::max_jobs, std::num::NonZeroUsize::get)
    }

    /// Snapshots and queued baselines describe one process (dependency lists describe the
    /// executable, and are kept for a relaunch of the same build-id: see `adopt`); the
    /// baselines compiling for it are killed.
    fn forget_baselines(&mut self) {
        self.abandon_baselines();
        self.in_flight.reset_progress();
        self.snapshots.clear();
        self.library_snapshots.clear();
        self.snapshots_during_build.clear();
        self.baseline_queue.clear();
        self.refused_baselines.clear();
        self.report_baselines();
    }

    fn emit(&self, event: SessionEvent) {
        // A front end that went away stops listening; the worker finishes its job regardless.
        let _ = self.events.send(event);
    }

    fn update_status(&self, change: impl FnOnce(&mut Status)) {
        let snapshot = {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut status);
            status.clone()
        };
        self.emit(SessionEvent::Status(snapshot));
    }

    fn set_state(&self, state: State, message: Option<String>) {
        self.update_status(|s| {
            s.state = state;
            s.message = message;
            s.code = None;
        });
    }

    fn message(&self, severity: Severity, text: impl Into<String>) {
        let text = text.into();
        match severity {
            Severity::Error => tracing::error!("{text}"),
            Severity::Warning => tracing::warn!("{text}"),
            Severity::Information => tracing::info!("{text}"),
        }
        self.emit(SessionEvent::Message { severity, text });
    }

    /// A failure with a stable code (a process or compiler error): the status carries the
    /// code with the message.
    fn fail_coded(&self, code: &str, text: String) {
        let state = if self.program.is_some() {
            State::Running
        } else {
            State::Failed
        };
        self.update_status(|s| {
            s.state = state;
            s.message = Some(text.clone());
            s.code = Some(code.to_owned());
        });
        self.message(Severity::Error, text);
    }

    /// A process error, as [`Worker::fail_coded`] with its code, names demangled.
    fn fail_process(&self, e: &hot_process::ProcessError, context: &str) {
        let text = hot_object::display_names(&e.to_string()).into_owned();
        self.fail_coded(e.code(), format!("{context}{text}"));
    }

    /// A failure without a source line: a message, and the status says it too.
    fn fail(&self, text: String) {
        // The status first: whoever reacts to the message may read the status at once.
        let state = if self.program.is_some() {
            State::Running
        } else {
            State::Failed
        };
        self.set_state(state, Some(text.clone()));
        self.message(Severity::Error, text);
    }

    fn reload_config(&mut self) {
        let config_file = self.options.root.join(config::CONFIG_FILE);
        let was_invalid = !self.config_errors.is_empty();
        match config::load(&self.options.root, self.client_config.as_ref()) {
            Ok(loaded) => {
                self.config = loaded.config;
                self.config_errors.clear();
                self.opted_in = loaded.opted_in;
                if loaded.has_file {
                    self.publish(&config_file, &config_file, Vec::new());
                }
                self.database = None;
                // The configuration that kept the program from launching is fixed: launch
                // now, as a valid one would have at the start.
                if was_invalid
                    && self.program.is_none()
                    && self.options.auto_launch
                    && self.config.program.launch == LaunchMode::Auto
                {
                    self.launch();
                }
            }
            Err(errors) => {
                // An invalid file still opts the workspace in: the user meant to use hot-lsp.
                self.opted_in = true;
                let mut located = Vec::new();
                for e in &errors {
                    match &e.file {
                        Some(file) => located.push(Diagnostic {
                            file: file.clone(),
                            line: e.line,
                            column: e.column,
                            end_line: None,
                            end_column: None,
                            severity: Severity::Error,
                            code: "config-error".into(),
                            message: e.message.clone(),
                        }),
                        None => self.message(Severity::Error, e.message.clone()),
                    }
                }
                if !located.is_empty() {
                    self.publish(&config_file, &config_file, located);
                }
                self.config_errors = errors.iter().map(|e| e.message.clone()).collect();
                let summary = self.config_error_summary();
                self.set_state(State::Failed, Some(summary));
            }
        }
    }

    /// What an invalid configuration keeps from happening, with its first problem.
    fn config_error_summary(&self) -> String {
        let count = self.config_errors.len();
        format!(
            "the hot-lsp configuration has {count} error{}, so nothing is launched: fix {} and \
             save it (first: {})",
            if count == 1 { "" } else { "s" },
            config::CONFIG_FILE,
            self.config_errors.first().map_or("", String::as_str)
        )
    }

    /// Publish the complete diagnostics that compiling `unit` produced, grouped per file;
    /// files this unit reported on before and not now are cleared. A file other units
    /// reported on too (a header) gets the union of all their lists, each diagnostic once.
    fn publish(&mut self, unit: &Path, primary: &Path, diagnostics: Vec<Diagnostic>) {
        let touched = self.record_diagnostics(unit, primary, diagnostics);
        self.emit_diagnostics(touched, unit);
    }

    /// Keep what compiling `unit` reported, without publishing; the files whose published
    /// list it changes.
    fn record_diagnostics(
        &mut self,
        unit: &Path,
        primary: &Path,
        diagnostics: Vec<Diagnostic>,
    ) -> BTreeSet<PathBuf> {
        let mut by_file: BTreeMap<PathBuf, Vec<Diagnostic>> = BTreeMap::new();
        // A relative file comes from the DWARF of a prefix-mapped build (`./src/lvm.c`):
        // resolved as that build resolved it, from the unit's compile command.
        let entry = diagnostics
            .iter()
            .any(|d| d.file.is_relative())
            .then(|| self.database()?.entries_for(unit).first().cloned())
            .flatten();
        for mut d in diagnostics {
            d.file = crate::compile_db::workspace_file(&d.file, entry.as_ref(), &self.options.root);
            by_file.entry(d.file.clone()).or_default().push(d);
        }
        let mut touched: BTreeSet<PathBuf> = by_file.keys().cloned().collect();
        touched.insert(primary.to_owned());
        if let Some(previous) = self.published.remove(unit) {
            touched.extend(previous.into_keys());
        }
        self.published.insert(unit.to_owned(), by_file);
        touched
    }

    /// Publish the union of every unit's diagnostics for each of `files`, `first`'s first.
    ///
    /// A header's line holds one diagnostic per code, not one per file that includes it:
    /// each includer's compile finds the same undefined name or changed layout there, named
    /// after the function it was inlined into (zstd's `ZSTD_hash6`, inlined in four files,
    /// gave four errors on one line that differed only in that). The first stands for the
    /// others and says which files they came from.
    fn emit_diagnostics(&mut self, files: BTreeSet<PathBuf>, first: &Path) {
        for file in files {
            let mut diagnostics: Vec<Diagnostic> = Vec::new();
            // The units each one of `diagnostics` was found in, its own first.
            let mut found_in: Vec<Vec<&Path>> = Vec::new();
            // This unit's first, then the others' in path order.
            let mut units: Vec<&PathBuf> = self.published.keys().collect();
            units.sort_by_key(|u| (u.as_path() != first, u.as_path()));
            for u in units {
                for d in self.published[u].get(&file).into_iter().flatten() {
                    if diagnostics.contains(d) {
                        continue;
                    }
                    // The compiler's own findings are matched by their text (and say which
                    // compile found them, `compiled as part of`): only the linker's fold.
                    let folds = **u != file && !d.code.starts_with("compile-");
                    let same = folds
                        .then(|| {
                            diagnostics.iter().zip(&found_in).position(|(kept, units)| {
                                kept.line == d.line
                                    && kept.code == d.code
                                    && kept.severity == d.severity
                                    && units.first().is_some_and(|first| *first != file)
                                    && !units.contains(&u.as_path())
                            })
                        })
                        .flatten();
                    match same {
                        Some(i) => found_in[i].push(u),
                        None => {
                            diagnostics.push(d.clone());
                            found_in.push(vec![u]);
                        }
                    }
                }
            }
            for (d, units) in diagnostics.iter_mut().zip(&found_in) {
                if let [own, others @ ..] = units.as_slice() {
                    if !others.is_empty() {
                        let shown = |u: &Path| {
                            u.strip_prefix(&self.options.root)
                                .unwrap_or(u)
                                .display()
                                .to_string()
                        };
                        let others: Vec<String> = others.iter().map(|u| shown(u)).collect();
                        d.message.push_str(&format!(
                            " (found compiling {}; the same on this line in {} other file{} \
                             that include{} it: {})",
                            shown(own),
                            others.len(),
                            if others.len() == 1 { "" } else { "s" },
                            if others.len() == 1 { "s" } else { "" },
                            others.join(", ")
                        ));
                    }
                }
            }
            self.emit(SessionEvent::Diagnostics { file, diagnostics });
        }
    }

    fn on_command(&mut self, command: Command) {
        if !self.opted_in
            && matches!(
                command,
                Command::Saved(_)
                    | Command::Opened(_)
                    | Command::Changed { .. }
                    | Command::Closed(_)
            )
        {
            // Files come and go all the time in a folder that did not opt in: stay quiet.
            return;
        }
        if !self.opted_in && !matches!(command, Command::Configure(_)) {
            self.message(
                Severity::Information,
                format!(
                    "{}: hot-lsp is not enabled here (no {} and no client configuration)",
                    self.options.root.display(),
                    config::CONFIG_FILE
                ),
            );
            return;
        }
        match command {
            Command::Saved(file) => self.on_saved(&file),
            Command::Opened(file) => self.on_opened(&file),
            Command::Changed { file, text } => self.on_changed(&file, text),
            Command::Closed(file) => self.on_closed(&file),
            Command::Launch => {
                if self.program.is_some() {
                    self.message(Severity::Information, "the program is already running");
                } else {
                    self.launch();
                }
            }
            Command::Attach { pid } => self.attach(pid),
            Command::Detach => self.stop_program(true),
            Command::Stop => {
                self.stop_program(false);
                self.set_state(State::Exited, Some("stopped".into()));
            }
            Command::Restart => {
                self.stop_program(false);
                self.launch();
            }
            Command::Undo => self.undo(),
            Command::Configure(value) => {
                let was_opted_in = self.opted_in;
                self.client_config = Some(value);
                self.reload_config();
                if !was_opted_in
                    && self.opted_in
                    && self.program.is_none()
                    && self.options.auto_launch
                    && self.config.program.launch == LaunchMode::Auto
                {
                    self.launch();
                }
            }
            Command::Shutdown => self.stop_program(false),
        }
    }

    fn on_process_event(&mut self, event: ProcessEvent) {
        match event {
            ProcessEvent::Output { stream, text } => {
                let stream = match stream {
                    hot_process::Stream::Stdout => OutputStream::Stdout,
                    hot_process::Stream::Stderr => OutputStream::Stderr,
                };
                // The owner thread delivers lines without their end (and flushes a partial
                // line when the program pauses); front ends get each as a line.
                let mut text = text;
                text.push('\n');
                self.emit(SessionEvent::Output { stream, text });
            }
            ProcessEvent::Exec { path } => self.on_exec(&path),
            ProcessEvent::Exited { code, signal } => {
                self.program = None;
                self.process_events = crossbeam_channel::never();
                // Baselines describe a process; the next one gets its own.
                self.forget_baselines();
                let how = match (code, signal) {
                    (Some(c), _) => format!("the program exited with code {c}"),
                    (None, Some(s)) => format!("the program was killed by signal {s}"),
                    (None, None) => "the program has exited".to_string(),
                };
                self.emit(SessionEvent::Exited { code, signal });
                self.message(Severity::Warning, how.clone());
                self.update_status(|s| {
                    s.state = State::Exited;
                    s.pid = None;
                    s.exit_code = code;
                    s.signal = signal;
                    s.message = Some(how);
                    s.code = Some("process-exited".to_owned());
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BaselineObject;

    /// Which producers' flags put -fipa-ra in force.
    #[test]
    fn ipa_ra_is_read_off_the_producers_flags() {
        for (flags, risky) in [
            ("-O2", true),
            ("-O3", true),
            ("-O4", true),
            ("-O99", true),
            ("-Os", true),
            ("-Ofast", true),
            ("-Oz", true),
            ("-O0", false),
            ("-O", false),
            ("-O1", false),
            ("-Og", false),
            ("", false),
            // The last -O level decides.
            ("-O2 -O1", false),
            ("-O0 -O2", true),
            ("-O3 -O", false),
            ("-O1 -fipa-ra", true),
            ("-fipa-ra -O1", true),
            ("-O -fipa-ra", true),
            ("-O1 -fipa-ra -fno-ipa-ra", false),
            ("-O2 -fno-ipa-ra", false),
            ("-fno-ipa-ra -O2", false),
            ("-O2 -fno-ipa-ra -fipa-ra", true),
            ("-O2 -fno-ipa-icf -fno-ipa-sra", true),
        ] {
            let producer = format!("GNU C17 12.2.0 -mtune=generic -march=x86-64 -g {flags}");
            assert_eq!(super::risky_optimisation(&producer), risky, "{flags}");
        }
    }

    /// `cc FLAGS source -o object`, which must succeed.
    fn compile(source: &std::path::Path, object: &std::path::Path, flags: &[&str]) {
        let status = std::process::Command::new("cc")
            .args(flags)
            .arg(source)
            .arg("-o")
            .arg(object)
            .status()
            .expect("running cc");
        assert!(status.success(), "cc failed");
    }

    /// A baseline left on disk: parsed on the first `get`, shared by its clones, its file
    /// removed with the last clone; one whose file is gone is no baseline (not an error).
    #[test]
    fn a_baseline_on_disk_is_parsed_on_first_use_and_removed_with_its_last_clone() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let source = dir.path().join("unit.c");
        std::fs::write(&source, "int answer(void) { return 42; }\n").expect("write unit.c");
        let check = |name: &str, remove_first: bool| {
            let object = dir.path().join(name);
            compile(&source, &object, &["-c", "-g"]);
            let baseline = BaselineObject::on_disk(object.clone());
            if remove_first {
                std::fs::remove_file(&object).expect("remove the object");
                assert!(
                    baseline.get().is_none(),
                    "{name}: a missing file is no baseline"
                );
                return;
            }
            let clone = baseline.clone();
            let parsed = baseline.get().expect("the object parses");
            assert!(
                parsed.symbols.iter().any(|s| s.name == "answer"),
                "{name}: the object's symbols are read"
            );
            assert_eq!(
                baseline.identity(),
                clone.identity(),
                "{name}: one baseline"
            );
            drop(baseline);
            assert!(object.exists(), "{name}: a clone still holds the file");
            assert!(clone.get().is_some(), "{name}: the clone shares the parse");
            drop(clone);
            assert!(!object.exists(), "{name}: removed with the last clone");
        };
        check("kept.o", false);
        check("removed.o", true);
    }

    /// A baseline held parsed, spilled to disk for the journal: the file written is the
    /// object it was parsed from, parsed again on first use; one without a file (built by
    /// hand) stays as it is.
    #[test]
    fn a_parsed_baseline_spills_to_its_object_file() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let source = dir.path().join("unit.c");
        std::fs::write(&source, "int answer(void) { return 42; }\nint other;\n")
            .expect("write unit.c");
        let object = dir.path().join("unit.o");
        compile(&source, &object, &["-c", "-g", "-ffunction-sections"]);
        let bytes = std::fs::read(&object).expect("read unit.o");
        let parsed = hot_object::Object::parse_owned(&object, bytes.clone()).expect("parses");
        let names = |o: &hot_object::Object| -> Vec<String> {
            o.symbols.iter().map(|s| s.name.to_string()).collect()
        };
        let expected = names(&parsed);
        let baseline = BaselineObject::parsed(parsed);
        assert!(baseline.is_parsed(), "a save's object is held parsed");
        let spill = dir.path().join("spilled.o");
        let on_disk = baseline.spilled(spill.clone()).expect("spilled");
        assert_eq!(std::fs::read(&spill).expect("the spilled file"), bytes);
        assert!(!on_disk.is_parsed(), "left on disk until used");
        let again = on_disk.get().expect("the spilled object parses");
        assert_eq!(names(again), expected, "the same object");
        drop(on_disk);
        assert!(!spill.exists(), "removed with its baseline");
        let by_hand = BaselineObject::parsed(hot_object::Object::default());
        assert!(
            by_hand.spilled(dir.path().join("none.o")).is_none(),
            "an object without a file stays in memory"
        );
    }
}
