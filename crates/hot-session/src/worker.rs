//! The session worker: one thread, a loop over a closed set of events (front-end commands and
//! the program's own events), running compile -> link -> swap strictly in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use hot_link::{LinkRequest, UnitRef};
use hot_object::Object;
use hot_process::{Debuggee, LaunchSpec, ProcessError, ProcessEvent, WritePlan};

use crate::compile::{self, CompileJob};
use crate::compile_db::{normalize, CompileDatabase, CompileEntry};
use crate::config::{self, Config, LaunchMode};
use crate::program::{unit_of, AppliedPatch, Program, UnitMatch};
use crate::{
    Command, Diagnostic, Micros, OutputStream, Phase, Progress, SessionEvent, SessionOptions,
    Severity, State, Status, SwapSummary,
};

/// Everything the worker reacts to.
enum Event {
    Command(Command),
    Process(ProcessEvent),
    /// Nothing is waiting: time for one background baseline compile.
    Idle,
}

/// The last object of a file that matches what runs, compiled with the same flags.
#[derive(Clone)]
pub(crate) struct Baseline {
    /// The compile command without its output path (see [`CompileJob::flags`]).
    pub argv: Vec<String>,
    pub object: Arc<Object>,
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

fn risky_optimisation(producer: &str) -> bool {
    let optimises = producer
        .split_whitespace()
        .any(|f| matches!(f, "-O2" | "-O3" | "-Os" | "-Ofast" | "-Oz"));
    optimises && !producer.contains("-fno-ipa-ra")
}

struct Worker {
    options: SessionOptions,
    events: Sender<SessionEvent>,
    status: Arc<Mutex<Status>>,
    config: Config,
    opted_in: bool,
    client_config: Option<serde_json::Value>,
    database: Option<CompileDatabase>,
    scratch: Option<tempfile::TempDir>,
    program: Option<Program>,
    process_events: Receiver<ProcessEvent>,
    baselines: HashMap<PathBuf, Baseline>,
    /// Files with diagnostics currently published, per translation unit that produced them.
    published: HashMap<PathBuf, HashSet<PathBuf>>,
    seq: u64,
    warned_optimisation: bool,
    scratch_counter: u64,
    /// Source files swapped into the program, in order, and the build-id of the executable
    /// they went into: a relaunch of that same executable gets them again (re-linked from
    /// source, not replayed as bytes). A rebuilt executable already contains them.
    replay: Vec<PathBuf>,
    replay_build_id: Option<Vec<u8>>,
    /// Files whose baseline is still to be compiled, one at a time while nothing else
    /// waits, so a large program's output and saves are never held up behind them.
    baseline_queue: std::collections::VecDeque<PathBuf>,
    /// The text of each queued file as it was when the program was adopted.
    snapshots: HashMap<PathBuf, Vec<u8>>,
    /// When the running executable was built: a source modified later is not what runs.
    exe_modified: Option<std::time::SystemTime>,
}

pub(crate) fn run(
    options: SessionOptions,
    commands: Receiver<Command>,
    events: Sender<SessionEvent>,
    status: Arc<Mutex<Status>>,
) {
    let mut worker = Worker {
        client_config: options.client_config.clone(),
        options,
        events,
        status,
        config: Config::default(),
        opted_in: false,
        database: None,
        scratch: tempfile::Builder::new().prefix("hot-lsp-").tempdir().ok(),
        program: None,
        process_events: crossbeam_channel::never(),
        baselines: HashMap::new(),
        published: HashMap::new(),
        seq: 0,
        warned_optimisation: false,
        scratch_counter: 0,
        replay: Vec::new(),
        replay_build_id: None,
        baseline_queue: std::collections::VecDeque::new(),
        snapshots: HashMap::new(),
        exe_modified: None,
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
        let event = if worker.baseline_queue.is_empty() {
            crossbeam_channel::select! {
                recv(commands) -> c => command(c),
                recv(worker.process_events) -> e => process(e),
            }
        } else {
            crossbeam_channel::select! {
                recv(commands) -> c => command(c),
                recv(worker.process_events) -> e => process(e),
                default => Event::Idle,
            }
        };
        match event {
            Event::Command(Command::Shutdown) => {
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
                let mut stop = false;
                for command in rest {
                    if command == Command::Shutdown {
                        stop = true;
                        break;
                    }
                    worker.on_command(command);
                }
                if stop {
                    worker.stop_program(false);
                    break;
                }
            }
            Event::Command(command) => worker.on_command(command),
            Event::Process(event) => worker.on_process_event(event),
            Event::Idle => {
                if let Some(file) = worker.baseline_queue.pop_front() {
                    worker.compile_baseline(&file);
                }
            }
        }
    }
}

impl Worker {
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

    /// A failure without a source line: a message, and the status says it too.
    fn fail(&self, text: String) {
        self.message(Severity::Error, text.clone());
        let state = if self.program.is_some() {
            State::Running
        } else {
            State::Failed
        };
        self.set_state(state, Some(text));
    }

    fn reload_config(&mut self) {
        let config_file = self.options.root.join(config::CONFIG_FILE);
        match config::load(&self.options.root, self.client_config.as_ref()) {
            Ok(loaded) => {
                self.config = loaded.config;
                self.opted_in = loaded.opted_in;
                if loaded.has_file {
                    self.publish(&config_file, &config_file, Vec::new());
                }
                self.database = None;
            }
            Err(e) => {
                // An invalid file still opts the workspace in: the user meant to use hot-lsp.
                self.opted_in = true;
                match e.file {
                    Some(file) => {
                        let diagnostic = Diagnostic {
                            file: file.clone(),
                            line: e.line,
                            column: e.column,
                            end_line: None,
                            end_column: None,
                            severity: Severity::Error,
                            code: "config-error".into(),
                            message: e.message.clone(),
                        };
                        self.publish(&file, &file, vec![diagnostic]);
                    }
                    None => self.message(Severity::Error, e.message.clone()),
                }
                self.set_state(State::Failed, Some(e.message));
            }
        }
    }

    /// Publish the complete diagnostics that compiling `unit` produced, grouped per file;
    /// files this unit reported on before and not now are cleared.
    fn publish(&mut self, unit: &Path, primary: &Path, diagnostics: Vec<Diagnostic>) {
        let mut by_file: BTreeMap<PathBuf, Vec<Diagnostic>> = BTreeMap::new();
        by_file.insert(primary.to_owned(), Vec::new());
        for d in diagnostics {
            by_file.entry(d.file.clone()).or_default().push(d);
        }
        let previous = self.published.remove(unit).unwrap_or_default();
        for file in previous {
            by_file.entry(file).or_default();
        }
        let mut now = HashSet::new();
        for (file, diagnostics) in by_file {
            if !diagnostics.is_empty() {
                now.insert(file.clone());
            }
            self.emit(SessionEvent::Diagnostics { file, diagnostics });
        }
        self.published.insert(unit.to_owned(), now);
    }

    fn on_command(&mut self, command: Command) {
        if !self.opted_in && matches!(command, Command::Saved(_) | Command::Opened(_)) {
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
            ProcessEvent::Exited { code, signal } => {
                self.program = None;
                self.process_events = crossbeam_channel::never();
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
                });
            }
        }
    }

    // ---- the program ------------------------------------------------------------------

    fn launch(&mut self) {
        let Some(path) = self.config.program.path.clone() else {
            self.fail(format!(
                "{}: [program] path is not set, so there is nothing to launch",
                self.options.root.join(config::CONFIG_FILE).display()
            ));
            return;
        };
        if let Some(build) = self.config.program.build.clone() {
            self.set_state(State::Building, Some(format!("running `{build}`")));
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(&build)
                .current_dir(&self.options.root)
                .stdin(std::process::Stdio::null())
                .output();
            match output {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    let tail = String::from_utf8_lossy(&out.stderr);
                    let tail: Vec<&str> = tail.lines().rev().take(10).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    self.fail(format!(
                        "the build command `{build}` failed ({}):\n{}",
                        out.status,
                        tail.join("\n")
                    ));
                    return;
                }
                Err(e) => {
                    self.fail(format!("cannot run the build command `{build}`: {e}"));
                    return;
                }
            }
        }
        let root = &self.options.root;
        let spec = LaunchSpec {
            path: root.join(&path),
            args: self.config.program.args.iter().map(Into::into).collect(),
            cwd: root.join(&self.config.program.cwd),
            env: self
                .config
                .program
                .env
                .iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            disable_aslr: self.config.program.disable_aslr,
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        match Debuggee::launch(&spec, tx) {
            Ok(debuggee) => self.adopt(debuggee, rx),
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn attach(&mut self, pid: i32) {
        if self.program.is_some() {
            self.stop_program(true);
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        match Debuggee::attach(pid, tx) {
            Ok(debuggee) => self.adopt(debuggee, rx),
            Err(e) => self.fail(e.to_string()),
        }
    }

    /// Take a started or attached program under management: read its image, compile the
    /// baselines of its translation units, report it running.
    fn adopt(&mut self, debuggee: Debuggee, events: Receiver<ProcessEvent>) {
        let pid = debuggee.pid();
        self.process_events = events;
        self.exe_modified = debuggee.executable_modified();
        self.program = Some(Program::new(debuggee));
        self.baselines.clear();
        self.baseline_queue.clear();
        self.snapshots.clear();
        let announce = |worker: &Worker| {
            worker.emit(SessionEvent::Launched { pid });
            worker.update_status(|s| {
                s.state = State::Running;
                s.pid = Some(pid);
                s.exit_code = None;
                s.signal = None;
                s.message = None;
            });
        };
        let image_error = self.program.as_mut().and_then(|p| p.image().err());
        if let Some(e) = image_error {
            announce(self);
            self.fail(e);
            return;
        }
        self.warn_about_optimisation();
        let build_id = self
            .program
            .as_ref()
            .and_then(|p| p.image.as_ref())
            .and_then(|i| i.model.exe.image.build_id.clone());
        let replay = if build_id.is_some() && build_id == self.replay_build_id {
            std::mem::take(&mut self.replay)
        } else {
            self.replay.clear();
            Vec::new()
        };
        // The sources are read before the launch is announced, so an edit made as soon as
        // the program shows up is never mistaken for the text it was built from.
        self.queue_baselines(&replay);
        announce(self);
        // Map the arenas and index the image now, so the first save pays only for its own
        // change — if the dynamic linker is done. A failure here shows again, and is
        // reported, on the first save.
        if let Some(program) = self.program.as_mut() {
            if program.libraries_ready() {
                if let Err(e) = program.linker() {
                    tracing::debug!("preparing the linker at launch: {e}");
                }
            }
        }
        if !replay.is_empty() {
            // Without a baseline every function of these files counts as changed: the fresh
            // process runs the executable's original code.
            let mut applied = 0;
            for file in &replay {
                if matches!(self.compile_link_swap(file), Ok(Some(_))) {
                    applied += 1;
                }
            }
            self.message(
                Severity::Information,
                format!(
                    "re-applied this session's changes to {applied} of {} file(s) in the relaunched program",
                    replay.len()
                ),
            );
        }
    }

    fn stop_program(&mut self, detach: bool) {
        let Some(program) = self.program.take() else {
            return;
        };
        self.process_events = crossbeam_channel::never();
        if detach || !program.debuggee.launched() {
            program.debuggee.detach();
            self.update_status(|s| {
                s.state = State::Idle;
                s.pid = None;
                s.message = Some("detached".into());
            });
        } else {
            program.debuggee.stop();
            self.update_status(|s| {
                s.state = State::Exited;
                s.pid = None;
            });
        }
    }

    fn warn_about_optimisation(&mut self) {
        if self.warned_optimisation {
            return;
        }
        let Some(image) = self.program.as_ref().and_then(|p| p.image.as_ref()) else {
            return;
        };
        let risky = image
            .model
            .exe
            .image
            .compile_units
            .iter()
            .find(|cu| cu.producer.as_deref().is_some_and(risky_optimisation));
        if let Some(cu) = risky {
            let text = format!(
                "{} was built with {} and without -fno-ipa-ra: callers may rely on which registers \
                 the old callee clobbered, so a swapped function can corrupt them. Build with the \
                 hot-reload flags ({HOT_RELOAD_FLAGS}).",
                cu.name,
                cu.producer.as_deref().unwrap_or("optimisation"),
            );
            self.warned_optimisation = true;
            self.message(Severity::Warning, text);
        }
    }

    // ---- compiling ----------------------------------------------------------------------

    fn database(&mut self) -> Option<&CompileDatabase> {
        if self.database.is_none() {
            let root = &self.options.root;
            let candidates: Vec<PathBuf> = match &self.config.compile.database {
                Some(p) => vec![root.join(p)],
                None => vec![
                    root.join("compile_commands.json"),
                    root.join("build/compile_commands.json"),
                ],
            };
            for candidate in candidates {
                if !candidate.exists() {
                    continue;
                }
                match CompileDatabase::load(&candidate) {
                    Ok(db) => {
                        self.database = Some(db);
                        break;
                    }
                    Err(e) => {
                        self.message(Severity::Error, e);
                        return None;
                    }
                }
            }
        }
        self.database.as_ref()
    }

    /// The compile command of `file`: among several database entries the one whose flags
    /// best match the producer string of the file's compile unit in the image; the
    /// `[compile] command` template otherwise.
    fn entry_for(&mut self, file: &Path) -> Result<CompileEntry, String> {
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
            .and_then(|i| crate::program::producer_of(&i.model.exe.image, file))
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
            None => Err(format!(
                "{} is not in the compile database and hot-lsp.toml has no [compile] command",
                file.display()
            )),
        }
    }

    fn scratch_object(&mut self, file: &Path) -> PathBuf {
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

    /// Compile and parse one file; `None` on failure after reporting it.
    fn compile_object(&mut self, job: &CompileJob) -> Result<Object, String> {
        let bytes = std::fs::read(&job.output)
            .map_err(|e| format!("cannot read {}: {e}", job.output.display()))?;
        let _ = std::fs::remove_file(&job.output);
        Object::parse(&job.output, &bytes).map_err(|e| e.to_string())
    }

    /// Queue the baseline of every source file the image's DWARF names that exists in this
    /// workspace, so the first save of each swaps only what changed. They are compiled in
    /// the background, between events.
    fn queue_baselines(&mut self, skip: &[PathBuf]) {
        let root = self.options.root.clone();
        let files: Vec<PathBuf> = self
            .program
            .as_ref()
            .and_then(|p| p.image.as_ref())
            .map(|image| {
                image
                    .model
                    .exe
                    .image
                    .compile_units
                    .iter()
                    .map(|cu| {
                        let dir = cu.comp_dir.as_deref().unwrap_or("/");
                        normalize(&Path::new(dir).join(&cu.name))
                    })
                    .filter(|p| p.starts_with(&root) && p.is_file() && !skip.contains(p))
                    .collect()
            })
            .unwrap_or_default();
        for file in files {
            if self.snapshot(&file) {
                self.baseline_queue.push_back(file);
            }
        }
    }

    /// Keep the text of `file` as it is now, for its baseline, if it is linked into the
    /// program and unchanged since the executable was built (so this text is what runs).
    /// A file without a snapshot gets no baseline; its first save then swaps every function
    /// of it, which is always correct, where a baseline of edited text would hide the edit.
    fn snapshot(&mut self, file: &Path) -> bool {
        if self.baselines.contains_key(file) || self.snapshots.contains_key(file) {
            return true;
        }
        let unchanged_since_build = match (
            std::fs::metadata(file).and_then(|m| m.modified()).ok(),
            self.exe_modified,
        ) {
            (Some(source), Some(exe)) => source <= exe,
            _ => false,
        };
        let linked = self
            .program
            .as_mut()
            .and_then(|p| p.image().ok())
            .is_some_and(|i| !matches!(unit_of(&i.model.exe.image, file), UnitMatch::NotLinked));
        if !unchanged_since_build || !linked {
            return false;
        }
        match std::fs::read(file) {
            Ok(text) => {
                self.snapshots.insert(file.to_owned(), text);
                true
            }
            Err(_) => false,
        }
    }

    /// Compile the snapshot of `file` into its baseline object. The snapshot is compiled as a
    /// copy in the scratch folder: quote includes still find the file's own folder through
    /// `-iquote`, and `-ffile-prefix-map` keeps `__FILE__` as the original path, so the
    /// object equals what compiling the original would give.
    fn compile_baseline(&mut self, file: &Path) {
        self.baseline_queue.retain(|f| f != file);
        let Some(text) = self.snapshots.remove(file) else {
            return;
        };
        let Ok(entry) = self.entry_for(file) else {
            return;
        };
        let (Some(source_dir), Some(name)) = (file.parent(), file.file_name()) else {
            return;
        };
        self.scratch_counter += 1;
        let copy_dir = self
            .scratch
            .as_ref()
            .map_or_else(std::env::temp_dir, |d| d.path().to_owned())
            .join(format!("snapshot-{}", self.scratch_counter));
        let copy = copy_dir.join(name);
        if std::fs::create_dir_all(&copy_dir)
            .and_then(|()| std::fs::write(&copy, &text))
            .is_err()
        {
            return;
        }
        let output = self.scratch_object(file);
        let job = compile::job_for(&entry, &output);
        let mut argv = job.flags().to_vec();
        // `flags()` ends with `-c <file>`: compile the copy instead.
        argv.truncate(argv.len().saturating_sub(2));
        argv.extend([
            format!("-iquote{}", source_dir.display()),
            format!(
                "-ffile-prefix-map={}={}",
                copy_dir.display(),
                source_dir.display()
            ),
            "-c".into(),
            copy.display().to_string(),
            "-o".into(),
            output.display().to_string(),
        ]);
        let snapshot_job = CompileJob {
            argv,
            ..job.clone()
        };
        let result = compile::run(&snapshot_job);
        let _ = std::fs::remove_dir_all(&copy_dir);
        match result {
            Ok(outcome) if outcome.success => match self.compile_object(&snapshot_job) {
                Ok(object) => {
                    self.baselines.insert(
                        file.to_owned(),
                        Baseline {
                            argv: job.flags().to_vec(),
                            object: Arc::new(object),
                        },
                    );
                }
                Err(e) => tracing::debug!("baseline of {}: {e}", file.display()),
            },
            _ => tracing::debug!("no baseline for {}", file.display()),
        }
    }

    fn on_opened(&mut self, file: &Path) {
        let file = normalize(file);
        if self.program.is_some()
            && has_extension(&file, SOURCE_EXTENSIONS)
            && !self.baselines.contains_key(&file)
            && self.snapshot(&file)
        {
            self.compile_baseline(&file);
        }
    }

    // ---- the swap pipeline ---------------------------------------------------------------

    fn on_saved(&mut self, file: &Path) {
        if !self.opted_in {
            return;
        }
        let file = normalize(file);
        if file == self.options.root.join(config::CONFIG_FILE) {
            self.reload_config();
            return;
        }
        if has_extension(&file, HEADER_EXTENSIONS) {
            self.message(
                Severity::Information,
                format!(
                    "{} is a header: recompiling the files that include it is not supported yet; \
                     save a source file that includes it to swap its changes",
                    file.display()
                ),
            );
            return;
        }
        if !has_extension(&file, SOURCE_EXTENSIONS) {
            return;
        }
        // A baseline still waiting in the queue is needed now, compiled from its snapshot.
        if self.snapshots.contains_key(&file) {
            self.compile_baseline(&file);
        }
        let title = format!(
            "hot-lsp: {}",
            file.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        self.emit(SessionEvent::Progress(Progress::Begin { title }));
        let result = self.compile_link_swap(&file);
        let end = match &result {
            Ok(Some(summary)) => format!(
                "swapped {} function(s) in {} µs",
                summary.swapped.len() + summary.added.len(),
                summary.micros.swap
            ),
            Ok(None) => "compiled".to_string(),
            Err(()) => "failed".to_string(),
        };
        self.emit(SessionEvent::Progress(Progress::End { message: end }));
    }

    fn progress(&self, phase: Phase, message: &str) {
        self.emit(SessionEvent::Progress(Progress::Report {
            phase,
            message: message.into(),
        }));
    }

    /// Compile, link and swap one saved file. `Ok(None)`: compiled, nothing was swapped.
    fn compile_link_swap(&mut self, file: &Path) -> Result<Option<SwapSummary>, ()> {
        let entry = match self.entry_for(file) {
            Ok(e) => e,
            Err(e) => {
                self.fail(e);
                return Err(());
            }
        };
        // A source of the database that the running program does not contain (a test or a
        // tool built from the same tree) is refused before compiling anything.
        if let Some(program) = self.program.as_mut() {
            if let Ok(image) = program.image() {
                if matches!(unit_of(&image.model.exe.image, file), UnitMatch::NotLinked) {
                    let text = format!(
                        "{} is not linked into the running program ({}); nothing was swapped",
                        file.display(),
                        image.model.exe.path
                    );
                    self.fail(text);
                    return Err(());
                }
            }
        }
        let running_state = if self.program.is_some() {
            State::Running
        } else {
            State::Idle
        };
        self.progress(Phase::Compile, "compiling");
        let output = self.scratch_object(file);
        let job = compile::job_for(&entry, &output);
        let outcome = match compile::run(&job) {
            Ok(o) => o,
            Err(e) => {
                self.fail(e.to_string());
                return Err(());
            }
        };
        let mut diagnostics = outcome.diagnostics.clone();
        if !outcome.success {
            self.publish(file, file, diagnostics);
            return Err(());
        }
        let object = match self.compile_object(&job) {
            Ok(o) => o,
            Err(e) => {
                self.fail(e);
                return Err(());
            }
        };
        if self.program.is_none() {
            // No program: compiling is all there is to do; the file's diagnostics are fresh.
            self.publish(file, file, diagnostics);
            self.set_state(running_state, None);
            return Ok(None);
        }
        self.progress(Phase::Link, "linking");
        let Some(program) = self.program.as_mut() else {
            return Err(());
        };
        let link_start = Instant::now();
        let unit = match program.image() {
            Ok(image) => match unit_of(&image.model.exe.image, file) {
                UnitMatch::Found(tu) => UnitRef {
                    tu,
                    source: file.display().to_string(),
                },
                UnitMatch::NotLinked => UnitRef {
                    tu: None,
                    source: file.display().to_string(),
                },
            },
            Err(e) => {
                self.publish(file, file, diagnostics);
                self.fail(e);
                return Err(());
            }
        };
        let baseline = self
            .baselines
            .get(file)
            .filter(|b| b.argv == job.flags())
            .cloned();
        let linker = match program.linker() {
            Ok(l) => l,
            Err(e) => {
                self.publish(file, file, diagnostics);
                self.fail(e);
                return Err(());
            }
        };
        let request = LinkRequest {
            object: &object,
            baseline: baseline.as_ref().map(|b| b.object.as_ref()),
            unit,
        };
        let patch = match linker.link(&request) {
            Ok(p) => p,
            Err(errors) => {
                diagnostics.extend(errors.iter().map(|e| {
                    located(
                        e.line.as_ref(),
                        file,
                        Severity::Error,
                        e.code.diagnostic_code(),
                        &e.message,
                    )
                }));
                self.publish(file, file, diagnostics);
                self.set_state(
                    State::Running,
                    Some("the patch was refused; nothing was written".into()),
                );
                return Err(());
            }
        };
        let link_micros = link_start.elapsed().as_micros() as u64;
        diagnostics.extend(patch.notes.iter().map(|note| {
            located(
                note.line.as_ref(),
                file,
                Severity::Warning,
                note.code,
                &note.message,
            )
        }));
        self.publish(file, file, diagnostics);

        let new_baseline = Baseline {
            argv: job.flags().to_vec(),
            object: Arc::new(object),
        };
        if patch.is_empty() {
            self.baselines.insert(file.to_owned(), new_baseline);
            self.set_state(State::Running, Some("no function changed".into()));
            return Ok(None);
        }

        self.set_state(State::Swapping, None);
        self.progress(Phase::Swap, "swapping");
        let plan = WritePlan {
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
            commit: patch.entries.iter().map(entry_write).collect(),
            protected: patch.protected.iter().map(|r| r.start.0..r.end.0).collect(),
        };
        let Some(program) = self.program.as_mut() else {
            return Err(());
        };
        let swap_start = Instant::now();
        if let Err(e) = program.debuggee.apply(&plan) {
            let text = process_error_text(&e);
            self.fail(text);
            return Err(());
        }
        let swap_micros = swap_start.elapsed().as_micros() as u64;
        if let Some(linker) = program.linker.as_mut() {
            linker.commit(&patch);
        }
        let previous = self.baselines.insert(file.to_owned(), new_baseline);
        let build_id = program
            .image
            .as_ref()
            .and_then(|i| i.model.exe.image.build_id.clone());
        if self.replay_build_id != build_id {
            self.replay.clear();
            self.replay_build_id = build_id;
        }
        if !self.replay.iter().any(|f| f == file) {
            self.replay.push(file.to_owned());
        }
        program.journal.push(AppliedPatch {
            file: file.to_owned(),
            previous_baseline: previous,
        });
        self.seq += 1;
        let summary = SwapSummary {
            seq: self.seq,
            file: file.to_owned(),
            swapped: patch.swapped.clone(),
            added: patch.added.clone(),
            skipped: patch.skipped,
            micros: Micros {
                compile: outcome.micros,
                link: link_micros,
                swap: swap_micros,
            },
        };
        self.emit(SessionEvent::Swap(summary.clone()));
        self.update_status(|s| {
            s.state = State::Running;
            s.last_swap = Some(summary.clone());
            s.message = None;
        });
        Ok(Some(summary))
    }

    fn undo(&mut self) {
        let Some(program) = self.program.as_mut() else {
            self.fail("no program is running: there is no swap to undo".into());
            return;
        };
        let Some(applied) = program.journal.pop() else {
            self.message(Severity::Information, "there is no swap to undo");
            return;
        };
        let reverts = program.linker.as_ref().and_then(|l| l.revert_plan());
        let Some(reverts) = reverts else {
            program.journal.push(applied);
            self.fail("the last swap cannot be reverted".into());
            return;
        };
        let plan = WritePlan {
            commit: reverts.iter().map(entry_write).collect(),
            protected: reverts
                .iter()
                .map(|e| e.addr.0..e.addr.0 + e.bytes.len() as u64)
                .collect(),
            ..WritePlan::default()
        };
        if let Err(e) = program.debuggee.apply(&plan) {
            // The linker still holds the swap, as the process does: undo can be retried.
            program.journal.push(applied);
            let text = process_error_text(&e);
            self.fail(format!("undo failed: {text}"));
            return;
        }
        if let Some(linker) = program.linker.as_mut() {
            linker.revert_last();
        }
        match applied.previous_baseline {
            Some(b) => {
                self.baselines.insert(applied.file.clone(), b);
            }
            None => {
                self.baselines.remove(&applied.file);
            }
        }
        let names: Vec<String> = reverts.iter().map(|e| e.function.clone()).collect();
        self.message(
            Severity::Information,
            format!(
                "reverted the last swap of {} ({})",
                applied.file.display(),
                names.join(", ")
            ),
        );
        self.set_state(State::Running, Some("undone".into()));
    }
}

fn process_error_text(e: &ProcessError) -> String {
    e.to_string()
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
        what: format!("entry of {}", entry.function),
    }
}
