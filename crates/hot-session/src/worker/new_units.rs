//! Code the running program never linked: compile-database files that are not part of the
//! executable become translation units of the session.
//!
//! - A save of such a file links it in as a new unit: every function new (a stub each),
//!   its variables allocated and initialised, its static constructors (`.init_array`: C++
//!   globals with constructors, `__attribute__((constructor))`) run once in the target
//!   through injected calls, after the arena contents are written and every check of the
//!   commit passed, and before the entries go live (`unwind.rs` runs them between its
//!   stops): a swap refused runs none. From then on it is a unit like the
//!   others: its baseline is the object just linked, so a later save swaps what changed.
//!   Undo of that swap makes it unlinked again (its memory stays; nothing reaches it).
//! - A link that fails on undefined symbols looks them up in the database's files that are
//!   not linked (an unused member of the project's static library): an index of the globals
//!   each one defines, from compiling it with the patch flags (kept while the file and what
//!   it read are unchanged). The defining files are compiled into the same swap as new
//!   units, recursively for what they need; the swap reports which files were pulled in. A
//!   name no project file defines stays `undefined-symbol`, and its message says so; in a
//!   library's unit, a name the executable defines but does not export (no `-rdynamic`) is
//!   said to be that, naming the executable's file.
//!
//! A database file that defines `main` is another program's source (a test, a tool): it is
//! never linked in, saved or looked up.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use hot_link::{ConstructorCall, LinkError, LinkErrorCode};
use hot_object::{Binding, Object, SymbolDef};
use hot_process::ProcessError;

use super::pipeline::{compile_all, UnitJob};
use super::{has_extension, Worker, SOURCE_EXTENSIONS};
use crate::compile::CompileOutcome;
use crate::program::{cu_source, UnitMatch};
use crate::{Phase, Severity};

/// One unlinked database file in the index of who defines what: read from the object the
/// build left behind, or compiled with the patch flags.
pub(super) struct IndexedFile {
    /// When its compile started, or when the build's object was last modified: the entry
    /// holds while neither the file nor anything it read is newer.
    as_of: SystemTime,
    /// The compile command (without the output) the entry is for.
    flags: Vec<String>,
    /// What the compile read, the file itself left out (unknown for a build's object).
    deps: Vec<PathBuf>,
    /// The globals it defines, each with whether it is weak, and whether one is `main`.
    defines: HashMap<String, bool>,
    main: bool,
    /// The patch compile, ready to link (`None`: read from the build's object, or it did
    /// not compile: `compiles` says which).
    compiled: Option<(CompileOutcome, Arc<Object>)>,
    compiles: bool,
}

impl IndexedFile {
    fn new(object: &Object, as_of: SystemTime, flags: Vec<String>, deps: Vec<PathBuf>) -> Self {
        let defines: HashMap<String, bool> = object
            .symbols
            .iter()
            .filter(|s| {
                s.binding != Binding::Local
                    && matches!(s.def, SymbolDef::Atom { .. } | SymbolDef::Common { .. })
            })
            .map(|s| (s.name.to_string(), s.binding == Binding::Weak))
            .collect();
        IndexedFile {
            as_of,
            flags,
            deps,
            main: defines.get("main") == Some(&false),
            defines,
            compiled: None,
            compiles: true,
        }
    }

    /// Whether this entry still describes `file` compiled with `flags`.
    fn current(&self, file: &Path, flags: &[String]) -> bool {
        let not_newer = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m <= self.as_of)
        };
        self.flags == flags && not_newer(file) && self.deps.iter().all(|d| not_newer(d))
    }
}

/// Whether `object` defines a global `main`: the source of another program.
fn defines_main(object: &Object) -> bool {
    object.symbols.iter().any(|s| {
        s.name == "main" && s.binding != Binding::Local && matches!(s.def, SymbolDef::Atom { .. })
    })
}

/// The symbols of the object the build left for `entry` (its `output`, or the argument after
/// `-o`), if it is there, not older than the source, and a plain object: an LTO object's
/// symbol table is not what its code defines, and a stale one would mislead the lookup.
fn build_object(entry: &crate::compile_db::CompileEntry) -> Option<(Object, SystemTime)> {
    let output = entry.output.clone().or_else(|| {
        let at = entry.arguments.iter().position(|a| a == "-o")?;
        entry.arguments.get(at + 1).map(|o| entry.directory.join(o))
    })?;
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built = modified(&output)?;
    if modified(&entry.file)? > built {
        return None;
    }
    let bytes = std::fs::read(&output).ok()?;
    let object = Object::parse(&output, &bytes).ok()?;
    let lto = object
        .symbols
        .iter()
        .any(|s| s.name.starts_with("__gnu_lto_") || s.name.starts_with(".gnu.lto"));
    (!lto).then_some((object, built))
}

/// What looking up undefined names in the unlinked files found.
#[derive(Default)]
pub(super) struct Lookup {
    /// The files to add to the swap: each compiled, with the names it defines.
    pub found: Vec<(UnitJob, CompileOutcome, Object, Vec<String>)>,
    /// Names several unlinked files define (non-weak): none is chosen.
    ambiguous: BTreeMap<String, Vec<PathBuf>>,
    /// The unlinked files searched, and those of them that did not compile.
    searched: usize,
    broken: Vec<PathBuf>,
    /// The database the files came from (`None`: there is none).
    database: Option<PathBuf>,
}

impl Worker {
    /// Whether this session linked `file` into the process as a new unit.
    pub(super) fn is_added_unit(&self, file: &Path) -> bool {
        self.program
            .as_ref()
            .is_some_and(|p| p.added_units.contains(file))
    }

    /// Whether a save of `file`, which the executable does not contain, links it in as a
    /// new unit: it is a source file of the compile database, and no compile unit of the
    /// program could be this file placed elsewhere (then it is refused, saying why).
    pub(super) fn may_add_unit(&mut self, file: &Path) -> bool {
        let in_database = self
            .database()
            .is_some_and(|db| !db.entries_for(file).is_empty());
        let unplaced = self
            .program
            .as_ref()
            .and_then(|p| p.why_not_linked(file))
            .is_some();
        in_database && !unplaced && has_extension(file, SOURCE_EXTENSIONS)
    }

    /// A saved file linked in new that defines `main` belongs to another program.
    pub(super) fn refuse_other_programs(
        &self,
        ready: &[(UnitJob, CompileOutcome, Object)],
    ) -> Result<(), String> {
        for (unit, _, object) in ready {
            if unit.new_unit && defines_main(object) {
                return Err(format!(
                    "{} is not linked into the running program and defines `main`: it is the \
                     source of another program built from the same compile database, so it is \
                     not linked in; nothing was swapped",
                    unit.file.display()
                ));
            }
        }
        Ok(())
    }

    /// The database's source files that are not units of the running program (nor of the
    /// session, nor in `have`), in path order.
    fn unlinked_files(&mut self, have: &[PathBuf]) -> Vec<PathBuf> {
        let root = self.options.root.clone();
        let files: Vec<PathBuf> = match self.database() {
            Some(db) => db.files().map(Path::to_path_buf).collect(),
            None => return Vec::new(),
        };
        let mut unlinked = Vec::new();
        for file in files {
            if !file.starts_with(&root)
                || !file.is_file()
                || !has_extension(&file, SOURCE_EXTENSIONS)
                || have.contains(&file)
                || self.is_added_unit(&file)
            {
                continue;
            }
            // Not in the executable nor in any of the project's libraries.
            let not_linked = self.program.as_mut().is_some_and(|p| {
                p.home_of(&file)
                    .is_ok_and(|(_, unit)| matches!(unit, UnitMatch::NotLinked))
            });
            if not_linked && self.may_add_unit(&file) {
                unlinked.push(file);
            }
        }
        unlinked.sort();
        unlinked
    }

    /// Bring the index entries of `files` up to date: from the objects the build left
    /// where they are current, else by compiling the files now (in parallel).
    fn index_files(&mut self, files: &[PathBuf]) {
        let mut jobs = Vec::new();
        for file in files {
            let job = match self.compile_job(file, None, true) {
                Ok(job) => job,
                Err(e) => {
                    tracing::debug!("index of {}: {e}", file.display());
                    continue;
                }
            };
            let flags = job.job.flags().to_vec();
            if self
                .unit_index
                .get(file)
                .is_some_and(|entry| entry.current(file, &flags))
            {
                continue;
            }
            let entry = self.entry_for(file).ok();
            if let Some((object, built)) = entry.as_ref().and_then(build_object) {
                self.unit_index.insert(
                    file.clone(),
                    IndexedFile::new(&object, built, flags, Vec::new()),
                );
                continue;
            }
            jobs.push(job);
        }
        if !jobs.is_empty() {
            self.progress(
                Phase::Compile,
                &format!(
                    "looking for the missing symbols in {} file{} of the compile database that \
                     the program does not link",
                    jobs.len(),
                    if jobs.len() == 1 { "" } else { "s" }
                ),
            );
        }
        self.compile_index(jobs);
    }

    /// Compile `jobs` for the index (in parallel), keeping each object for the link.
    fn compile_index(&mut self, jobs: Vec<UnitJob>) {
        if jobs.is_empty() {
            return;
        }
        let started = SystemTime::now();
        let count = jobs.len();
        let (events, stopping) = (self.events.clone(), self.stopping.clone());
        let jobs_at_once = self.jobs();
        // Each object is kept parsed; its file goes when they all are read.
        let _outputs =
            super::pipeline::RemoveWhenDone(jobs.iter().map(|u| u.job.output.clone()).collect());
        let compiled = self.while_forwarding(move || {
            compile_all(jobs, jobs_at_once.min(count), &events, &stopping)
        });
        for c in compiled {
            let flags = c.unit.job.flags().to_vec();
            let deps = c.deps.unwrap_or_default();
            let entry = match (c.outcome, c.object) {
                (Ok(outcome), Some(object)) => {
                    let mut entry = IndexedFile::new(&object, started, flags, deps);
                    entry.compiled = Some((outcome, Arc::new(object)));
                    entry
                }
                _ => IndexedFile {
                    compiles: false,
                    ..IndexedFile::new(&Object::default(), started, flags, deps)
                },
            };
            self.unit_index.insert(c.unit.file.clone(), entry);
        }
    }

    /// Look `missing` up in the unlinked files of the database (`have`: the files of the
    /// swap already) and return the files that define them, compiled for the swap.
    pub(super) fn pull_in(&mut self, missing: &[String], have: &[PathBuf]) -> Lookup {
        let database = self.database().map(|db| db.path.clone());
        let candidates = self.unlinked_files(have);
        self.index_files(&candidates);
        let mut lookup = Lookup {
            searched: candidates.len(),
            database,
            ..Lookup::default()
        };
        // The candidates that compile and are not another program's source.
        let usable: Vec<&PathBuf> = candidates
            .iter()
            .filter(|file| match self.unit_index.get(*file) {
                Some(entry) if !entry.compiles => {
                    lookup.broken.push((*file).clone());
                    false
                }
                Some(entry) => !entry.main,
                None => false,
            })
            .collect();
        let mut chosen: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for name in missing {
            let mut strong = Vec::new();
            let mut weak = Vec::new();
            for file in &usable {
                match self.unit_index.get(*file).and_then(|e| e.defines.get(name)) {
                    Some(false) => strong.push((*file).clone()),
                    Some(true) => weak.push((*file).clone()),
                    None => {}
                }
            }
            let pick = match (strong.as_slice(), weak.as_slice()) {
                ([one], _) => one.clone(),
                ([], [first, ..]) => first.clone(),
                ([], []) => continue,
                _ => {
                    lookup.ambiguous.insert(name.clone(), strong);
                    continue;
                }
            };
            chosen.entry(pick).or_default().push(name.clone());
        }
        // Files indexed from the build's objects are compiled for the link now.
        let mut to_compile = Vec::new();
        for file in chosen.keys() {
            let compiled = self
                .unit_index
                .get(file)
                .is_some_and(|e| e.compiled.is_some());
            if !compiled {
                match self.compile_job(file, None, true) {
                    Ok(job) => to_compile.push(job),
                    Err(e) => tracing::debug!("{}: {e}", file.display()),
                }
            }
        }
        if !to_compile.is_empty() {
            let names: Vec<String> = to_compile
                .iter()
                .map(|u| u.file.display().to_string())
                .collect();
            self.progress(
                Phase::Compile,
                &format!("compiling {}, which the program lacks", names.join(", ")),
            );
        }
        self.compile_index(to_compile);
        let mut reused: HashMap<PathBuf, (CompileOutcome, Arc<Object>)> = HashMap::new();
        for file in chosen.keys() {
            match self.unit_index.get(file) {
                Some(IndexedFile {
                    compiled: Some(compiled),
                    ..
                }) => {
                    reused.insert(file.clone(), compiled.clone());
                }
                _ => lookup.broken.push(file.clone()),
            }
        }
        for (file, names) in chosen {
            let Some((outcome, object)) = reused.remove(&file) else {
                continue;
            };
            // What it includes, so a saved header swaps it too once it is linked in.
            if let Some(entry) = self.unit_index.get(&file) {
                self.dependencies.insert(file.clone(), entry.deps.clone());
            }
            let Ok(unit) = self.compile_job(&file, None, true) else {
                continue;
            };
            lookup
                .found
                .push((unit, outcome, Object::clone(&object), names));
        }
        lookup
    }

    /// Complete the messages of undefined symbols that no project file defines (or that
    /// several unlinked files define) with what the lookup found.
    pub(super) fn explain_undefined(&self, errors: &mut [LinkError], lookup: &Lookup) {
        let Some(database) = &lookup.database else {
            return;
        };
        for e in errors.iter_mut() {
            if e.code != LinkErrorCode::UndefinedSymbol {
                continue;
            }
            let Some(name) = &e.symbol else {
                continue;
            };
            let shown = hot_object::display_name(name);
            if let Some(definer) = self.unexported_definer(&e.unit, name) {
                e.message.push_str(&format!(
                    "; the executable defines `{shown}` (in {definer}) but does not export it \
                     to shared libraries, so code of a library cannot reach it: link the \
                     executable with `-rdynamic` (`-Wl,--export-dynamic`) and restart the \
                     program, or define it in the library"
                ));
                continue;
            }
            let why = match lookup.ambiguous.get(name) {
                Some(files) => format!(
                    "; `{shown}` is defined by {} files of the compile database that the program \
                     does not link ({}), and hot-lsp does not guess which one the build would \
                     link",
                    files.len(),
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => {
                    let broken = match lookup.broken.as_slice() {
                        [] => String::new(),
                        files => format!(
                            " ({} of them did not compile: {})",
                            files.len(),
                            files
                                .iter()
                                .map(|f| f.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    format!(
                        "; no file of the compile database ({}) defines it either: the program \
                         does not, and neither do the {} file{} it does not link{broken}",
                        database.display(),
                        lookup.searched,
                        if lookup.searched == 1 { "" } else { "s" }
                    )
                }
            };
            e.message.push_str(&why);
        }
    }

    /// For an undefined symbol of a shared library's unit `unit`: the file of the executable
    /// that defines `name` (its DWARF unit, or the file whose save added it), when the
    /// executable defines it but does not export it (no `-rdynamic`), so that the library's
    /// code cannot bind to it. `None` for a unit of the executable, or a name the
    /// executable exports or does not define.
    fn unexported_definer(&self, unit: &str, name: &str) -> Option<String> {
        let program = self.program.as_ref()?;
        let exe = &program.image.as_ref()?.exe.image;
        let unit = Path::new(unit);
        if exe.compile_units.iter().any(|cu| cu_source(cu) == unit) {
            return None;
        }
        let named = |s: &&hot_object::ImageSymbol| s.defined && s.name == name;
        if exe.symbols.iter().filter(named).any(|s| s.dynamic) {
            return None;
        }
        if let Some(sym) = exe
            .symbols
            .iter()
            .filter(named)
            .find(|s| s.binding != Binding::Local)
        {
            let file = exe
                .compile_units
                .iter()
                .find(|cu| {
                    cu.ranges
                        .iter()
                        .any(|&(lo, hi)| lo <= sym.vaddr && sym.vaddr < hi)
                        || cu.variables.binary_search(&sym.vaddr).is_ok()
                })
                .map_or_else(
                    || "one of its files".to_string(),
                    |cu| cu_source(cu).display().to_string(),
                );
            return Some(file);
        }
        let added = program.linker.as_ref()?.added_function_source(name)?;
        Some(format!("{added}, whose save added it"))
    }

    /// Say which files a swap linked in for the symbols it needed.
    pub(super) fn report_pulled_in(&self, pulled: &[(PathBuf, Vec<String>)]) {
        if pulled.is_empty() {
            return;
        }
        let parts: Vec<String> = pulled
            .iter()
            .map(|(file, names)| {
                let names: Vec<String> = names
                    .iter()
                    .map(|n| format!("`{}`", hot_object::display_name(n)))
                    .collect();
                format!("{} (for {})", file.display(), names.join(", "))
            })
            .collect();
        self.message(
            Severity::Information,
            format!(
                "linked in {} file{} of the compile database that the program did not contain: \
                 {}",
                pulled.len(),
                if pulled.len() == 1 { "" } else { "s" },
                parts.join("; ")
            ),
        );
    }

    /// Run the static constructors of units linked in new, in order, each an injected
    /// call. The first that fails stops the swap (what ran stays done).
    pub(super) fn run_constructors(&self, calls: &[ConstructorCall]) -> Result<(), ProcessError> {
        for call in calls {
            let Some(program) = self.program.as_ref() else {
                return Err(ProcessError::Exited);
            };
            let what = format!(
                "static constructor {} of {}",
                hot_object::display_name(&call.function),
                call.unit
            );
            match program.debuggee.call_function(
                call.addr.0,
                &[],
                super::unwind::CALL_LIMITS,
                &what,
            ) {
                Ok(_) => {}
                Err(ProcessError::Exited) => return Err(ProcessError::Exited),
                Err(ProcessError::CallStillRunning(text)) => {
                    return Err(ProcessError::CallStillRunning(format!(
                        "the swap was refused: the {what} at {} did not finish ({text}); the \
                         program runs on with the old code",
                        call.addr
                    )))
                }
                Err(e) => {
                    return Err(ProcessError::Other(format!(
                        "the swap was refused: the {what} at {} failed ({e}); the program runs \
                         on with the old code",
                        call.addr
                    )))
                }
            }
        }
        Ok(())
    }
}
