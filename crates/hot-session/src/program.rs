//! The session's running program: the debuggee handle, the model of its image (executable,
//! libraries, biases) and the linker that patches it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use hot_link::{Arenas, Home, ImageModel, Linker, Module, RuntimeAddr};
use hot_object::{LinkedImage, TranslationUnitId};
use hot_process::{Debuggee, Mapping, Protection};

use crate::compile_db::{normalize, relative_path, CompileDatabase};
use crate::config::PathPrefix;
use crate::library_load::{self, LibraryWrites, LoadKey};

/// Size of the code arena (bodies, read-only data, stubs) and of the data arena (new
/// variables, GOT slots). Address space only: pages are committed when written.
const CODE_ARENA_SIZE: u64 = 64 << 20;
const DATA_ARENA_SIZE: u64 = 16 << 20;
/// The least an arena may be when less room is free.
const MIN_ARENA_SIZE: u64 = 1 << 20;

/// Why no linker could be made for the program.
#[derive(Debug)]
pub enum LinkerError {
    /// The process refused what the linker needs of it (`what`: mapping an arena); the
    /// error keeps its kind, so a denied trace is reported as one.
    Process {
        what: &'static str,
        error: hot_process::ProcessError,
    },
    /// A library the saved file belongs to is not mapped in the process (any more): shown
    /// on the saved file with [`LIBRARY_NOT_MAPPED`], naming the library.
    LibraryNotMapped(String),
    /// Anything else (the image could not be read).
    Other(String),
}

/// The code of [`LinkerError::LibraryNotMapped`].
pub const LIBRARY_NOT_MAPPED: &str = "library-not-mapped";

impl std::fmt::Display for LinkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkerError::Process { what, error } => write!(f, "{what}: {error}"),
            LinkerError::LibraryNotMapped(text) | LinkerError::Other(text) => f.write_str(text),
        }
    }
}

impl From<String> for LinkerError {
    fn from(text: String) -> LinkerError {
        LinkerError::Other(text)
    }
}

/// The linked image a translation unit belongs to, and so the linker its saves go through:
/// the executable, or one of the project's shared libraries the program loaded (by path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum UnitImage {
    #[default]
    Executable,
    Library(String),
}

impl UnitImage {
    /// What a message names: the library's path (the executable's needs no name).
    pub fn library(&self) -> Option<&str> {
        match self {
            UnitImage::Executable => None,
            UnitImage::Library(path) => Some(path),
        }
    }
}

/// The linker of one of the program's shared libraries: its model has the library as the
/// module patched ([`Home::Library`]), its arenas are within reach of the library.
pub(crate) struct LibraryLinker {
    pub path: String,
    pub linker: Linker,
}

/// A patch that was applied, kept so `undo` can revert it.
pub(crate) struct AppliedPatch {
    /// The image the patch was linked into (whose linker undo reverts).
    pub image: UnitImage,
    /// The saved file (a source file, or the header whose includers were swapped).
    pub saved: PathBuf,
    /// Each file the patch recompiled, with its baseline before this patch (restored by
    /// undo): the saved source file, or every includer of the saved header.
    pub files: Vec<(PathBuf, Option<crate::worker::Baseline>)>,
    /// The entry that announced the patch's code to debuggers (`worker/gdb_jit.rs`),
    /// unlinked by undo.
    pub debugger_entry: Option<u64>,
    /// The files of `files` this patch linked in as new translation units (not part of the
    /// executable): undo makes them unlinked again.
    pub added_units: Vec<PathBuf>,
    /// The functions of the patch's objects whose frames hold a type whose layout it
    /// changed, with the code running them (its new bodies): undo is refused while a
    /// thread's frame there holds an object of the new layout (`worker/abi.rs`).
    pub undo_guards: Vec<crate::worker::FrameGuard>,
    /// The bodies the patch placed for the functions it swapped or added, each named after
    /// its function: undo reports a thread still running one (`still-running`).
    pub undo_watch: Vec<(std::ops::Range<u64>, String)>,
    /// The functions the patch swapped or added (what a reload of its library loses).
    pub functions: Vec<String>,
}

/// A library load forgotten ([`Program::forget_moved_libraries`]): the files this session
/// had swapped into it, and the functions those swaps changed.
pub(crate) struct ForgottenLoad {
    pub library: String,
    pub files: Vec<PathBuf>,
    pub functions: Vec<String>,
}

pub(crate) struct Program {
    pub debuggee: Debuggee,
    /// The running image, read once per launch or attach. Its compile units name the
    /// workspace files they were built from: `sources` is applied when it is read.
    pub image: Option<ImageModel>,
    pub linker: Option<Linker>,
    /// One linker per shared library of the project a save was linked into, made on its
    /// first save (see [`Program::home_of`]).
    pub library_linkers: Vec<LibraryLinker>,
    pub journal: Vec<AppliedPatch>,
    /// `/tmp/perf-PID.map` was written for this process (`worker/perf_map.rs`): later
    /// bodies are appended to it.
    pub perf_map_started: bool,
    /// GDB's JIT interface in this process (`worker/gdb_jit.rs`).
    pub debugger_interface: crate::worker::gdb_jit::DebuggerInterface,
    /// Compile-database files this session linked into the process as new translation
    /// units (`worker/new_units.rs`): units of the session like those of the executable
    /// from then on, swapped against their last object.
    pub added_units: BTreeSet<PathBuf>,
    /// Units linked in new whose static constructors ran in this process. Kept by undo: a
    /// unit linked in again gets its variables back at the same addresses, already built.
    pub constructed_units: BTreeSet<PathBuf>,
    /// Bodies committed patches placed in the arena, by symbol name (worker/abi.rs): where
    /// frames of a function swapped or added before may still run.
    pub bodies: std::collections::HashMap<String, Vec<std::ops::Range<u64>>>,
    sources: SourceMap,
    /// The libraries were read into `image` before the linker was made
    /// ([`Program::libraries_known`]).
    libraries_read: bool,
    /// The last [`Program::forget_moved_libraries`] found ld.so's list exactly as it was
    /// read: the one look that follows right after in the same save (the unwinder's, at
    /// the swap) needs no second read of the list ([`Program::libraries_just_checked`]).
    libraries_checked: bool,
    /// Compile units that `sources` could not place, for the message of a refused save.
    unplaced: Vec<Unplaced>,
    /// What link-time optimization left in each image read so far, by path
    /// ([`Program::lto_of`]).
    lto: HashMap<String, Option<hot_object::LinkTimeOptimized>>,
    /// The shared libraries found in the workspace ([`Program::unloaded_library_of`]), by
    /// canonical path: when each was read, and the files it names.
    workspace_libs: HashMap<PathBuf, (std::time::SystemTime, LibraryFiles)>,
    /// The load of each library of `image.libs` (same order) as it was read: a library
    /// whose key differs now is another load (`library_load.rs`).
    library_keys: Vec<LoadKey>,
    /// Libraries a re-read of the list found to be another load than the one read before
    /// (`refresh_libraries`), for `forget_moved_libraries` to forget.
    reloaded: Vec<String>,
    /// The entry jumps this session wrote into each library (`library_load.rs`).
    pub library_writes: LibraryWrites,
    /// The shared objects under the workspace and when they were listed
    /// ([`Program::unloaded_library_of`]).
    workspace_so: Option<(std::time::Instant, Vec<PathBuf>)>,
    /// Per module path, the image it was built for and that image's defined functions
    /// (`symbols` indices) sorted by name ([`Program::functions_named`]).
    function_names: HashMap<String, (Arc<LinkedImage>, Vec<u32>)>,
}

/// The source files a shared library on disk was built from: its DWARF compile units
/// (placed in the workspace), else the base names of its `STT_FILE` symbols.
#[derive(Clone, Debug, Default)]
struct LibraryFiles {
    compile_units: Vec<PathBuf>,
    file_symbols: Vec<String>,
}

/// How deep [`Program::unloaded_library_of`] looks for shared libraries under the workspace,
/// and how many files it looks at: a bound for a huge tree, not a property of the program.
const LIBRARY_SCAN_DEPTH: usize = 6;
const LIBRARY_SCAN_FILES: usize = 20_000;

impl Program {
    pub fn new(debuggee: Debuggee, sources: SourceMap) -> Program {
        Program {
            debuggee,
            image: None,
            linker: None,
            library_linkers: Vec::new(),
            journal: Vec::new(),
            perf_map_started: false,
            debugger_interface: Default::default(),
            added_units: BTreeSet::new(),
            constructed_units: BTreeSet::new(),
            bodies: Default::default(),
            sources,
            libraries_read: false,
            libraries_checked: false,
            unplaced: Vec::new(),
            lto: HashMap::new(),
            workspace_libs: HashMap::new(),
            function_names: HashMap::new(),
            library_keys: Vec::new(),
            reloaded: Vec::new(),
            library_writes: LibraryWrites::default(),
            workspace_so: None,
        }
    }

    /// The libraries read, each with the key of its load: what a re-read reuses.
    fn known_libraries(&self) -> Vec<(LoadKey, Module)> {
        let libs = self.image.iter().flat_map(|image| &image.libs);
        self.library_keys
            .iter()
            .cloned()
            .zip(libs.cloned())
            .collect()
    }

    /// Set the libraries read (and the keys of their loads).
    fn set_libraries(&mut self, libs: Vec<(LoadKey, Module)>) {
        let (keys, modules): (Vec<LoadKey>, Vec<Module>) = libs.into_iter().unzip();
        self.library_keys = keys;
        if let Some(image) = self.image.as_mut() {
            image.libs = modules;
        }
    }

    /// The running ranges of `image`'s defined functions named any of `names` (statics of
    /// the same name in other files included), found by binary search in an index sorted by
    /// name, built on the first call for each image: every save asks for its swapped
    /// functions, and a walk over the symbols of a 100,000-function executable took 5 ms of
    /// each save.
    pub fn functions_named(
        &mut self,
        image: &UnitImage,
        names: &HashSet<&str>,
    ) -> Vec<(std::ops::Range<u64>, String)> {
        if names.is_empty() {
            return Vec::new();
        }
        let Some(module) = self.module_of(image).cloned() else {
            return Vec::new();
        };
        let symbols = &module.image.symbols;
        let entry = self
            .function_names
            .entry(module.path.clone())
            .or_insert_with(|| (module.image.clone(), Vec::new()));
        if !Arc::ptr_eq(&entry.0, &module.image) || (entry.1.is_empty() && !symbols.is_empty()) {
            let mut sorted: Vec<u32> = symbols
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.defined && s.kind == hot_object::SymbolKind::Function && s.size > 0
                })
                .map(|(i, _)| i as u32)
                .collect();
            sorted
                .sort_unstable_by(|&a, &b| symbols[a as usize].name.cmp(&symbols[b as usize].name));
            *entry = (module.image.clone(), sorted);
        }
        let sorted = &entry.1;
        let mut out = Vec::new();
        for name in names {
            let first = sorted.partition_point(|&i| symbols[i as usize].name.as_str() < *name);
            for &i in sorted[first..]
                .iter()
                .take_while(|&&i| symbols[i as usize].name == *name)
            {
                let s = &symbols[i as usize];
                let start = module.runtime(hot_link::Vaddr(s.vaddr)).0;
                out.push((start..start.saturating_add(s.size), s.name.clone()));
            }
        }
        out
    }

    /// Read the executable of the running process (once); its libraries come with the
    /// linker, once the dynamic linker has loaded them.
    pub fn image(&mut self) -> Result<&ImageModel, String> {
        if self.image.is_none() {
            let (image, unplaced) = read_image(&self.debuggee, &self.sources)?;
            self.image = Some(image);
            self.unplaced = unplaced;
        }
        self.image
            .as_ref()
            .ok_or_else(|| "the program's image could not be read".to_string())
    }

    /// The linker, created with fresh arenas the first time a patch needs it.
    pub fn linker(&mut self) -> Result<&mut Linker, LinkerError> {
        if self.linker.is_none() {
            // The libraries are read with the linker, not with the executable: right after
            // exec the dynamic linker has not loaded them yet (see `libraries_ready`).
            let exe = self.image()?.exe.clone();
            let known = self.known_libraries();
            let libs = read_libraries(&self.debuggee, &exe, &self.sources, &known)?;
            self.set_libraries(libs);
            let model = self
                .image
                .clone()
                .ok_or_else(|| "the program's image is not read".to_string())?;
            // Arenas must be within rel32 reach of the executable's mappings.
            let exe_range = self
                .debuggee
                .image_range()
                .map_err(|error| LinkerError::Process {
                    what: "cannot find the executable's mappings",
                    error,
                })?;
            let arenas = map_arenas(&self.debuggee, exe_range)?;
            let linker = Linker::new(model, arenas);
            linker.prepare();
            self.linker = Some(linker);
        }
        self.linker
            .as_mut()
            .ok_or_else(|| LinkerError::Other("the linker could not be created".into()))
    }
}

/// A code and a data arena within rel32 reach of `near` (an image's mappings), sized to the
/// gap when less room is free (a non-PIE executable below 2 GiB).
fn map_arenas(debuggee: &Debuggee, near: std::ops::Range<u64>) -> Result<Arenas, LinkerError> {
    let code = debuggee
        .map_arena_up_to(
            near.clone(),
            CODE_ARENA_SIZE,
            MIN_ARENA_SIZE,
            Protection::ReadExecute,
        )
        .map_err(|error| LinkerError::Process {
            what: "cannot map the code arena",
            error,
        })?;
    let data = debuggee
        .map_arena_up_to(near, DATA_ARENA_SIZE, MIN_ARENA_SIZE, Protection::ReadWrite)
        .map_err(|error| LinkerError::Process {
            what: "cannot map the data arena",
            error,
        })?;
    Ok(Arenas {
        code: RuntimeAddr(code.start)..RuntimeAddr(code.end),
        data: RuntimeAddr(data.start)..RuntimeAddr(data.end),
    })
}

/// The global scope as seen from `libs[i]`: the executable, then every other library in load
/// order, with how many of them come before the library.
fn scope_of(image: &ImageModel, i: usize) -> (Vec<Module>, Home) {
    let mut scope = Vec::with_capacity(image.libs.len());
    scope.push(image.exe.clone());
    scope.extend(
        image
            .libs
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, m)| m.clone()),
    );
    (scope, Home::Library { interposers: 1 + i })
}

impl Program {
    /// The linker of `image`: the executable's, or that of one of its shared libraries,
    /// made with fresh arenas near the library the first time a save links into it.
    pub fn linker_for(&mut self, image: &UnitImage) -> Result<&mut Linker, LinkerError> {
        let path = match image {
            UnitImage::Executable => return self.linker(),
            UnitImage::Library(path) => path.clone(),
        };
        self.linker()?;
        if let Some(i) = self.library_linkers.iter().position(|l| l.path == path) {
            return Ok(&mut self.library_linkers[i].linker);
        }
        let model = self
            .image
            .as_ref()
            .ok_or_else(|| "the program's image is not read".to_string())?;
        let i = model
            .libs
            .iter()
            .position(|m| m.path == path)
            .ok_or_else(|| format!("{path} is not loaded in the program any more"))?;
        let (libs, home) = scope_of(model, i);
        let lib_model = ImageModel {
            exe: model.libs[i].clone(),
            libs,
            home,
        };
        let maps = self
            .debuggee
            .mappings()
            .map_err(|error| LinkerError::Process {
                what: "cannot read the memory map",
                error,
            })?;
        let range = maps
            .iter()
            .filter(|m| m.path == path)
            .map(|m| m.range.clone())
            .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))
            .ok_or_else(|| {
                LinkerError::LibraryNotMapped(format!(
                    "{path} (which the saved file is compiled into) is not mapped in process {}: \
                     it was unloaded, or the running program maps another file; nothing was \
                     written",
                    self.debuggee.pid()
                ))
            })?;
        let arenas = map_arenas(&self.debuggee, range)?;
        let linker = Linker::new(lib_model, arenas);
        linker.prepare();
        self.library_linkers.push(LibraryLinker { path, linker });
        let last = self.library_linkers.len() - 1;
        Ok(&mut self.library_linkers[last].linker)
    }

    /// The linker of `image` if it was made.
    pub fn linker_of(&self, image: &UnitImage) -> Option<&Linker> {
        match image {
            UnitImage::Executable => self.linker.as_ref(),
            UnitImage::Library(path) => self
                .library_linkers
                .iter()
                .find(|l| l.path == *path)
                .map(|l| &l.linker),
        }
    }

    /// [`Program::linker_of`], to change.
    pub fn linker_of_mut(&mut self, image: &UnitImage) -> Option<&mut Linker> {
        match image {
            UnitImage::Executable => self.linker.as_mut(),
            UnitImage::Library(path) => self
                .library_linkers
                .iter_mut()
                .find(|l| l.path == *path)
                .map(|l| &mut l.linker),
        }
    }

    /// The linker whose arenas hold `patch`'s writes (the one it was linked by).
    pub fn linker_of_patch(&mut self, patch: &hot_link::Patch) -> Option<&mut Linker> {
        let at = patch.writes.first().map(|w| w.addr)?;
        let holds = |l: &Linker| {
            let arenas = l.arenas();
            arenas.code.contains(&at) || arenas.data.contains(&at)
        };
        if self.linker.as_ref().is_some_and(holds) {
            return self.linker.as_mut();
        }
        self.library_linkers
            .iter_mut()
            .map(|l| &mut l.linker)
            .find(|l| holds(l))
    }

    /// The module of `image` as read (the executable, or the library), if it is.
    pub fn module_of(&self, image: &UnitImage) -> Option<&Module> {
        let model = self.image.as_ref()?;
        match image {
            UnitImage::Executable => Some(&model.exe),
            UnitImage::Library(path) => model.libs.iter().find(|m| m.path == *path),
        }
    }

    /// The index of `file`'s DWARF compile unit in `image`'s module.
    pub fn compile_unit_of(&self, image: &UnitImage, file: &Path) -> Option<usize> {
        self.module_of(image)?
            .image
            .compile_units
            .iter()
            .position(|cu| cu_source(cu) == file)
    }

    /// The image `file` is compiled into and its unit there. The executable's DWARF names it,
    /// else a library's DWARF; else the one image (the executable, or a project library —
    /// one inside the workspace) with an `STT_FILE` group of its name that no compile unit
    /// claims: the file was built without -g, with or without DWARF for the others (lz4's
    /// library built by its own flags beside a -g driver), unless the compile database
    /// builds the file with -g (an image with DWARF would name it) or has another file of
    /// its name, named by no compile unit, that could be that group as well (another
    /// program's, in the same database). Otherwise the executable's answer (not linked, or
    /// a unit found by name only). Groups or files that nothing tells apart are refused,
    /// naming the files. The libraries are those the linker read, or read here once ld.so
    /// loaded them: a save re-reads the list ([`Program::refresh_libraries`]) for a library
    /// `dlopen`ed since.
    pub fn home_of(&mut self, file: &Path) -> Result<(UnitImage, UnitMatch), String> {
        self.libraries_known();
        // Read here, borrowed below beside `sources`.
        self.image()?;
        let model = self
            .image
            .as_ref()
            .ok_or("the program's image could not be read")?;
        let home = image_home(model, &self.sources, file);
        home.map_err(|(image, unsure)| unsure_message(file, &image, &unsure))
    }

    /// The shared library of the workspace `file` is built into when the program has not
    /// loaded it (yet): a library it will `dlopen` later. Asked only of a file no loaded image
    /// names, before it would be linked into the executable as new code — which the program
    /// never calls once it loads the library's own copy. A `.so` file under the workspace
    /// root (not mapped in the process) whose DWARF names `file`, or, without DWARF, whose
    /// `STT_FILE` symbols give its base name. Each library is read once per modification.
    pub fn unloaded_library_of(&mut self, file: &Path) -> Option<PathBuf> {
        // Loaded is in the library list, not merely mapped: `dlopen` maps the file before
        // ld.so lists it, and a save then must wait, not link into the executable.
        let loaded: HashSet<PathBuf> = self
            .image
            .iter()
            .flat_map(|image| &image.libs)
            .filter_map(|m| std::fs::canonicalize(&m.path).ok())
            .collect();
        let base = file.file_name().map(|b| b.to_string_lossy().into_owned())?;
        // The tree is walked at most once a second: a header save asks of every file no
        // loaded image names, one after another.
        let fresh = self
            .workspace_so
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < std::time::Duration::from_secs(1));
        if !fresh {
            let found = shared_objects_under(&self.sources.root);
            self.workspace_so = Some((std::time::Instant::now(), found));
        }
        let libs = self
            .workspace_so
            .as_ref()
            .map(|(_, libs)| libs.clone())
            .unwrap_or_default();
        for lib in libs {
            if loaded.contains(&lib) {
                continue;
            }
            let Ok(modified) = std::fs::metadata(&lib).and_then(|m| m.modified()) else {
                continue;
            };
            let known = self
                .workspace_libs
                .get(&lib)
                .filter(|(at, _)| *at == modified)
                .map(|(_, files)| files.clone());
            let files = match known {
                Some(files) => files,
                None => {
                    let files = self.library_files(&lib);
                    self.workspace_libs
                        .insert(lib.clone(), (modified, files.clone()));
                    files
                }
            };
            let names = if files.compile_units.is_empty() {
                files.file_symbols.contains(&base)
            } else {
                files.compile_units.iter().any(|cu| cu == file)
            };
            if names {
                return Some(lib);
            }
        }
        None
    }

    /// What [`LibraryFiles`] `lib` names (nothing when it cannot be read).
    fn library_files(&self, lib: &Path) -> LibraryFiles {
        let Ok(bytes) = std::fs::read(lib) else {
            return LibraryFiles::default();
        };
        let Ok(mut image) = LinkedImage::parse(lib, &bytes) else {
            return LibraryFiles::default();
        };
        self.sources.place(&mut image.compile_units);
        LibraryFiles {
            compile_units: image.compile_units.iter().map(cu_source).collect(),
            file_symbols: image
                .translation_units
                .iter()
                .filter_map(|name| Path::new(name).file_name())
                .map(|b| b.to_string_lossy().into_owned())
                .collect(),
        }
    }

    /// Whether the library at `lib` (a canonical path) is mapped in the process now: cheap
    /// (the memory map), so a save held for it looks often.
    /// One `stat` of `lib` and the memory map: a mapping of the same device and inode (no
    /// mapping's path is resolved).
    pub fn maps_library(&self, lib: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(lib) else {
            return false;
        };
        let identity = (dev_major_minor(meta.dev()), meta.ino());
        self.debuggee
            .mappings()
            .is_ok_and(|maps| maps.iter().any(|m| (m.device, m.inode) == identity))
    }

    /// Whether ld.so lists the library at `lib` (a canonical path) among the libraries read.
    /// A library read is named by the path the kernel maps, already resolved.
    pub fn lists_library(&self, lib: &Path) -> bool {
        self.image
            .iter()
            .flat_map(|image| &image.libs)
            .any(|m| Path::new(&m.path) == lib)
    }

    /// Whether `file` went through link-time optimization in the image it belongs to
    /// (`hot_object::LinkedImage::link_time_optimized`): then its functions may be inlined
    /// into other files' code, so a swap would not change what runs. `Some((image path,
    /// what gave it away))`; a partially LTO'd image answers for its LTO'd files only, one
    /// whose files cannot be told apart for all of them.
    pub fn lto_of(&mut self, file: &Path) -> Option<(String, String)> {
        let (home, _) = self.home_of(file).ok()?;
        let module = self.module_of(&home)?;
        let path = module.path.clone();
        // Read once per image: it walks every symbol, and a header save asks per includer.
        if !self.lto.contains_key(&path) {
            let lto = module.image.link_time_optimized();
            self.lto.insert(path.clone(), lto);
        }
        let lto = self.lto.get(&path)?.as_ref()?;
        let unit = self.compile_unit_of(&home, file);
        (lto.units.is_empty() || unit.is_some_and(|u| lto.units.contains(&u)))
            .then(|| (path, lto.evidence.clone()))
    }

    /// Read the library list again and hand it to the linkers if it changed (a library
    /// loaded with `dlopen` since, or a list read while ld.so was still loading). Returns
    /// whether anything changed, i.e. whether a failed link is worth retrying.
    pub fn refresh_libraries(&mut self) -> bool {
        self.libraries_checked = false;
        let Some(image) = self.image.as_ref() else {
            return false;
        };
        if self.linker.is_none() && !self.libraries_read {
            return false;
        }
        let exe = image.exe.clone();
        let known = self.known_libraries();
        // Each load already read is reused (its key is compared first): a list that did not
        // change reads no library file.
        let Ok(libs) = read_libraries(&self.debuggee, &exe, &self.sources, &known) else {
            return false;
        };
        if libs.iter().map(|(k, _)| k).eq(self.library_keys.iter()) {
            return false;
        }
        // A library listed again under its path but as another load (reloaded at the same
        // address, a rebuilt file): `forget_moved_libraries` forgets what went with the old.
        for (old, _) in &known {
            let now = libs.iter().map(|(k, _)| k).find(|k| k.path == old.path);
            if now.is_some_and(|now| now != old && self.is_reload(old, Some(now)))
                && !self.reloaded.contains(&old.path)
            {
                self.reloaded.push(old.path.clone());
            }
        }
        self.set_libraries(libs);
        let Some(image) = self.image.as_ref() else {
            return false;
        };
        if let Some(linker) = self.linker.as_mut() {
            linker.set_libraries(image.libs.clone());
        }
        for lib in &mut self.library_linkers {
            // A library unloaded since keeps its linker until a save notices it moved
            // (`forget_moved_libraries`): it links nothing new (its saves find no image).
            if let Some(i) = image.libs.iter().position(|m| m.path == lib.path) {
                let (scope, home) = scope_of(image, i);
                lib.linker.set_scope(scope, home);
            }
        }
        true
    }

    /// Whether ld.so's list was just found unchanged by [`Program::forget_moved_libraries`]
    /// (no library loaded or unloaded since it was read), told once: a C program without
    /// libgcc_s asked for its unwinder at every swap read the list a second time within
    /// the same millisecond. A library loaded after this look is as late as one loaded
    /// right after the swap: the next save registers its tables.
    pub fn libraries_just_checked(&mut self) -> bool {
        std::mem::take(&mut self.libraries_checked)
    }

    /// The libraries read whose load is gone (`dlclose`d, and maybe `dlopen`ed again,
    /// elsewhere or at the very same address, perhaps a rebuilt file): their model and
    /// linker describe a load that is gone — writing there is a protection failure, or a
    /// write into whatever maps that range now, linked against code that is not there. A
    /// load is told by its key (`library_load.rs`: bias, device, inode, times and size of
    /// the file), and by the entry jumps this session wrote into it, which a new load of
    /// the same file at the same address lacks. Each is forgotten: the library list is read
    /// again, its linker dropped (the next save makes one for the new load), and the
    /// journal's swaps of it taken off (undo cannot revert what went with the old load).
    /// Returns, per library, the files those swaps had linked into it and the functions
    /// they swapped or added, for the worker to link into the new load; first, the
    /// libraries forgotten.
    pub fn forget_moved_libraries(&mut self) -> (Vec<String>, Vec<ForgottenLoad>) {
        self.libraries_checked = false;
        let Some(image) = self.image.as_ref() else {
            return (Vec::new(), Vec::new());
        };
        if image.libs.is_empty() || (self.linker.is_none() && !self.libraries_read) {
            return (Vec::new(), Vec::new());
        }
        let Ok(maps) = self.debuggee.mappings() else {
            return (Vec::new(), Vec::new());
        };
        // Each library's load now, told as it was when read: ld.so's list, each entry by
        // the file the kernel maps and its key (no library file is parsed), else the
        // memory map.
        let now = current_keys(&self.debuggee, &image.exe, &maps);
        self.libraries_checked = now
            .as_ref()
            .is_some_and(|now| now.iter().eq(self.library_keys.iter()));
        let mut moved: Vec<String> = image
            .libs
            .iter()
            .zip(&self.library_keys)
            .filter(|(m, key)| match &now {
                Some(now) => self.is_reload(key, now.iter().find(|k| k.path == key.path)),
                None => {
                    bias_of(&maps, &m.path, &m.image) != Some(m.bias)
                        || self.library_writes.gone(&self.debuggee, &m.path)
                }
            })
            .map(|(m, _)| m.path.clone())
            .collect();
        for path in std::mem::take(&mut self.reloaded) {
            if !moved.contains(&path) {
                moved.push(path);
            }
        }
        if moved.is_empty() {
            return (Vec::new(), Vec::new());
        }
        self.refresh_libraries();
        // This very re-read may have found them (they are forgotten below).
        self.reloaded.retain(|path| !moved.contains(path));
        let mut forgotten = Vec::new();
        for path in moved.clone() {
            tracing::info!("{path} is not the load it was read as any more: read again");
            self.library_linkers.retain(|l| l.path != path);
            self.library_writes.forget(&path);
            let image = UnitImage::Library(path.clone());
            let mut files: Vec<PathBuf> = Vec::new();
            let mut functions: Vec<String> = Vec::new();
            for patch in self.journal.iter().filter(|p| p.image == image) {
                for (file, _) in &patch.files {
                    if !files.contains(file) {
                        files.push(file.clone());
                    }
                }
                for function in &patch.functions {
                    if !functions.contains(function) {
                        functions.push(function.clone());
                    }
                }
            }
            self.journal.retain(|p| p.image != image);
            if !files.is_empty() {
                forgotten.push(ForgottenLoad {
                    library: path,
                    files,
                    functions,
                });
            }
        }
        (moved, forgotten)
    }

    /// The entry jumps of a patch committed into `image` (a library's), recorded so that a
    /// later load of the library lacking them is noticed, and checked again before the
    /// next commit into it.
    pub fn record_library_writes(&mut self, image: &UnitImage, entries: &[hot_link::EntryWrite]) {
        if let UnitImage::Library(path) = image {
            self.library_writes
                .record(path, entries.iter().map(|e| (e.addr.0, e.bytes.clone())));
        }
    }

    /// What must still be in the process when a patch linked into `image` commits
    /// ([`hot_process::WritePlan::verify`]): for a library, the entry jumps this session
    /// wrote into it and its build-id as mapped — a library unloaded since the link cannot
    /// be read there, one loaded again there lacks the jumps, a rebuilt one has another
    /// build-id.
    pub fn verify_of(&self, image: &UnitImage) -> Vec<hot_process::Verify> {
        let UnitImage::Library(path) = image else {
            return Vec::new();
        };
        let mut verify = self.library_writes.verify(path);
        let module = self
            .image
            .as_ref()
            .and_then(|i| i.libs.iter().find(|m| m.path == *path));
        if let Some(module) = module {
            let note = module
                .image
                .sections
                .iter()
                .find(|s| s.name == ".note.gnu.build-id");
            if let (Some(note), Some(id)) = (note, &module.image.build_id) {
                // The note's header (name and descriptor sizes, type) and "GNU\0" come first.
                verify.push(hot_process::Verify {
                    addr: module.bias.wrapping_add(note.vaddr).wrapping_add(16),
                    bytes: id.clone(),
                    what: format!("the build-id of {path}"),
                });
            }
        }
        verify
    }

    /// Whether a swap of this session went into a shared library.
    pub fn has_library_swaps(&self) -> bool {
        self.journal
            .iter()
            .any(|p| p.image != UnitImage::Executable)
    }

    /// Whether a library this session swapped is not the load it was read as any more:
    /// another bias, inode, or contents of its file, or an entry jump this session wrote
    /// into it is gone (the memory map, one `stat` and one read per jump: cheap enough for
    /// idle time, no library file is read). Confirmed, and acted on, by
    /// [`Program::forget_moved_libraries`].
    pub fn swapped_library_moved(&self) -> bool {
        let Some(image) = self.image.as_ref() else {
            return false;
        };
        let Ok(maps) = self.debuggee.mappings() else {
            return false;
        };
        image.libs.iter().zip(&self.library_keys).any(|(m, key)| {
            self.journal
                .iter()
                .any(|p| p.image.library() == Some(m.path.as_str()))
                && match bias_of(&maps, &m.path, &m.image) {
                    // Its key now, at the bias it is mapped at now (another one: moved).
                    Some(bias) => {
                        self.is_reload(key, Some(&library_load::key_of(&maps, &key.path, bias)))
                    }
                    None => true,
                }
        })
    }

    /// Whether the library read as `old` is another load now (`now`: its key now, `None`
    /// when it is not listed). The same key is the same load unless an entry jump this
    /// session wrote into it is gone (the same file loaded again where it was). A key that
    /// differs only in the file's times or size (the inode mapped was rewritten or touched
    /// on disk) is the same load while every jump this session wrote is still there; with
    /// none written, it is taken for a reload (forgetting what is not one costs a re-link
    /// from source; missing one runs code linked against the old contents).
    fn is_reload(&self, old: &LoadKey, now: Option<&LoadKey>) -> bool {
        let Some(now) = now else {
            return true;
        };
        let jumps_gone = || self.library_writes.gone(&self.debuggee, &old.path);
        if now == old {
            return jumps_gone();
        }
        let same_inode = (&now.path, now.bias, now.device, now.inode)
            == (&old.path, old.bias, old.device, old.inode);
        !same_inode || !self.library_writes.has(&old.path) || jumps_gone()
    }

    /// Whether the program's libraries are known: read by the linker, or read here without
    /// making the linker (no arena is mapped) once the dynamic linker loaded them; the
    /// linker reads them again when it is made.
    pub fn libraries_known(&mut self) -> bool {
        if self.linker.is_some() || self.libraries_read {
            return true;
        }
        if !self.libraries_ready() {
            return false;
        }
        let Some(exe) = self.image.as_ref().map(|i| i.exe.clone()) else {
            return false;
        };
        match read_libraries(&self.debuggee, &exe, &self.sources, &[]) {
            Ok(libs) if self.image.is_some() => {
                self.set_libraries(libs);
                self.libraries_read = true;
                true
            }
            _ => false,
        }
    }

    /// Whether the dynamic linker has finished loading the program's libraries, so the linker
    /// can be prepared now instead of on the first save.
    pub fn libraries_ready(&mut self) -> bool {
        let Ok(image) = self.image() else {
            return false;
        };
        let exe = image.exe.clone();
        let dynamic = exe.image.sections.iter().any(|s| s.name == ".dynamic");
        !dynamic || link_map(&self.debuggee, &exe).is_some()
    }
}

/// The kind of interpreter `exe_path` is, when a script's `#!` line names it: the shells and
/// script runners a wrapper of a program is written for.
fn interpreter_name(exe_path: &str) -> Option<&'static str> {
    let name = Path::new(exe_path).file_name()?.to_str()?;
    const SHELLS: &[&str] = &["sh", "dash", "bash", "ash", "zsh", "ksh", "mksh", "busybox"];
    if SHELLS.contains(&name) {
        return Some("a shell");
    }
    let runner = ["python", "perl", "ruby", "node", "env"]
        .into_iter()
        .any(|r| {
            name.strip_prefix(r)
                .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        });
    runner.then_some("a script interpreter")
}

/// The load bias of a file mapped in the process: the start of its mapping at file offset 0
/// minus the page-aligned lowest `PT_LOAD` address.
fn bias_of(maps: &[Mapping], path: &str, image: &LinkedImage) -> Option<u64> {
    let first = maps.iter().find(|m| m.path == path && m.offset == 0)?;
    Some(first.range.start.wrapping_sub(image.vaddr_range.0 & !0xfff))
}

fn read_image(
    debuggee: &Debuggee,
    sources: &SourceMap,
) -> Result<(ImageModel, Vec<Unplaced>), String> {
    let (exe_path, exe_bytes) = debuggee
        .read_executable()
        .map_err(|e| format!("cannot read the program's executable: {e}"))?;
    let mut exe =
        LinkedImage::parse(Path::new(&exe_path), &exe_bytes).map_err(|e| e.to_string())?;
    let unplaced = sources.place(&mut exe.compile_units);
    if !exe.has_symtab {
        if let Some(shell) = interpreter_name(&exe_path) {
            // A wrapper script that runs the program as its child: the process hot-lsp
            // launched (and swaps into) is the interpreter, never the program.
            return Err(format!(
                "the process hot-lsp launched runs {exe_path} ({shell}), not a program built from \
                 this workspace: [program] path is a script that starts the program without \
                 `exec`, so the program is its child, which hot-lsp does not swap; end the \
                 script with `exec` (`exec ./build/app \"$@\"`) or set [program] path to the \
                 executable itself"
            ));
        }
        return Err(format!(
            "{exe_path} is stripped (it has no .symtab): hot-lsp needs the executable's symbol \
             table — build it without `-s` and do not strip it"
        ));
    }
    let maps = debuggee
        .mappings()
        .map_err(|e| format!("cannot read the memory map: {e}"))?;
    let exe_bias = if exe.position_independent {
        bias_of(&maps, &exe_path, &exe)
            .ok_or_else(|| format!("{exe_path} is not mapped in process {}", debuggee.pid()))?
    } else {
        0
    };
    let model = ImageModel {
        exe: Module {
            path: exe_path,
            bias: exe_bias,
            image: Arc::new(exe),
        },
        libs: Vec::new(),
        home: Default::default(),
    };
    Ok((model, unplaced))
}

/// Where the sources of a build made elsewhere are in this workspace.
///
/// DWARF names the folder each compile ran in. When the build ran in another place (a
/// container, a build farm, a tree copied or moved since) or remapped its paths
/// (`-ffile-prefix-map`, `-fdebug-prefix-map`, Bazel's `/proc/self/cwd`), those paths name no
/// file here. A compile unit is placed by, in order: the longest `[compile] path_map` prefix
/// of its path; its own path, if that is in the workspace or the compile database; its path
/// relative to the folder it was compiled in, matched against each database entry's `file`
/// relative to the entry's `directory` — only when exactly one file matches and no other
/// unit names that file, because a wrong guess would swap code into the wrong unit.
#[derive(Clone, Debug, Default)]
pub(crate) struct SourceMap {
    root: PathBuf,
    /// Build-time prefix -> absolute workspace prefix, longest prefix first.
    prefixes: Vec<(PathBuf, PathBuf)>,
    /// A database entry's file relative to its directory -> the distinct (file, directory).
    relative: HashMap<PathBuf, Vec<(PathBuf, PathBuf)>>,
    /// Every file of the database.
    files: HashSet<PathBuf>,
    /// The database's files by base name, each with whether every command of it builds it
    /// with debug information: how a file no compile unit names is told from its namesakes.
    by_name: HashMap<std::ffi::OsString, Vec<(PathBuf, bool)>>,
}

/// A compile unit outside the workspace that could not be placed, kept to explain a refused
/// save.
#[derive(Clone, Debug)]
pub(crate) struct Unplaced {
    /// The unit's path as DWARF gives it, and the folder it was compiled in.
    spelled: PathBuf,
    comp_dir: String,
    why: Unplacement,
}

#[derive(Clone, Debug)]
enum Unplacement {
    /// No database file has its relative path.
    NoMatch,
    /// Several database files have it.
    Ambiguous(Vec<PathBuf>),
    /// The one file that has it is named by another unit as well.
    Taken(PathBuf),
}

enum Placement {
    /// The unit names a file of the workspace or of the database already.
    Keep,
    /// Moved to this file, compiled in this folder.
    Moved {
        file: PathBuf,
        dir: PathBuf,
    },
    /// Found by its relative path; taken only if no other unit names the same file.
    Relative {
        file: PathBuf,
        dir: PathBuf,
    },
    Unplaced(Unplacement),
}

impl SourceMap {
    pub fn new(
        root: &Path,
        path_map: &BTreeMap<PathPrefix, PathPrefix>,
        database: Option<&CompileDatabase>,
    ) -> SourceMap {
        let root = normalize(root);
        let prefixes = path_map_prefixes(&root, path_map);
        let mut relative: HashMap<PathBuf, Vec<(PathBuf, PathBuf)>> = HashMap::new();
        let mut files = HashSet::new();
        let mut debug: BTreeMap<PathBuf, bool> = BTreeMap::new();
        for entry in database.into_iter().flat_map(|db| db.entries()) {
            files.insert(entry.file.clone());
            // A file built twice, once without -g, may be linked as that one.
            *debug.entry(entry.file.clone()).or_insert(true) &= entry.builds_debug_info();
            if let Some(rel) = relative_path(&entry.file, &entry.directory) {
                let list = relative.entry(rel).or_default();
                if !list.iter().any(|(file, _)| *file == entry.file) {
                    list.push((entry.file.clone(), entry.directory.clone()));
                }
            }
        }
        let mut by_name: HashMap<std::ffi::OsString, Vec<(PathBuf, bool)>> = HashMap::new();
        for (file, debug) in debug {
            if let Some(name) = file.file_name() {
                by_name
                    .entry(name.to_owned())
                    .or_default()
                    .push((file, debug));
            }
        }
        SourceMap {
            root,
            prefixes,
            relative,
            files,
            by_name,
        }
    }

    /// `path` with its longest `path_map` prefix replaced.
    fn mapped(&self, path: &Path) -> Option<PathBuf> {
        self.prefixes.iter().find_map(|(from, to)| {
            // `"." = ...` (for `-ffile-prefix-map=$PWD=.` builds) is every relative path,
            // not every path.
            if from.as_os_str().is_empty() && path.is_absolute() {
                return None;
            }
            let rest = path.strip_prefix(from).ok()?;
            Some(normalize(&to.join(rest)))
        })
    }

    fn placement(&self, cu: &hot_object::CompileUnit) -> Placement {
        let spelled = cu_source(cu);
        let comp_dir = normalize(Path::new(cu.comp_dir.as_deref().unwrap_or("/")));
        if let Some(file) = self.mapped(&spelled) {
            let dir = self
                .mapped(&comp_dir)
                .or_else(|| file.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| self.root.clone());
            return Placement::Moved { file, dir };
        }
        if spelled.is_absolute()
            && (spelled.starts_with(&self.root) || self.files.contains(&spelled))
        {
            return Placement::Keep;
        }
        let name = Path::new(&cu.name);
        let rel = if name.is_relative() {
            Some(normalize(name))
        } else {
            relative_path(name, &comp_dir)
        };
        match rel
            .and_then(|rel| self.relative.get(&rel))
            .map(Vec::as_slice)
        {
            Some([(file, dir)]) => Placement::Relative {
                file: file.clone(),
                dir: dir.clone(),
            },
            Some(several) if several.len() > 1 => Placement::Unplaced(Unplacement::Ambiguous(
                several.iter().map(|(file, _)| file.clone()).collect(),
            )),
            _ => Placement::Unplaced(Unplacement::NoMatch),
        }
    }

    /// Rewrite each unit's `name` and `comp_dir` to the workspace file it was built from and
    /// the folder it is compiled in now; return the units that could not be placed.
    fn place(&self, units: &mut [hot_object::CompileUnit]) -> Vec<Unplaced> {
        let placements: Vec<Placement> = units.iter().map(|cu| self.placement(cu)).collect();
        // How many units name each file once placed.
        let mut named: HashMap<PathBuf, usize> = HashMap::new();
        for (placement, cu) in placements.iter().zip(units.iter()) {
            let file = match placement {
                Placement::Keep => cu_source(cu),
                Placement::Moved { file, .. } | Placement::Relative { file, .. } => file.clone(),
                Placement::Unplaced(_) => continue,
            };
            *named.entry(file).or_default() += 1;
        }
        let mut unplaced = Vec::new();
        for (cu, placement) in units.iter_mut().zip(placements) {
            let why = match placement {
                Placement::Keep => continue,
                Placement::Relative { file, .. } if named.get(&file).copied().unwrap_or(0) > 1 => {
                    Unplacement::Taken(file)
                }
                Placement::Moved { file, dir } | Placement::Relative { file, dir } => {
                    cu.name = file.to_string_lossy().into_owned();
                    cu.comp_dir = Some(dir.to_string_lossy().into_owned());
                    continue;
                }
                Placement::Unplaced(why) => why,
            };
            unplaced.push(Unplaced {
                spelled: cu_source(cu),
                comp_dir: cu.comp_dir.clone().unwrap_or_else(|| "/".into()),
                why,
            });
        }
        unplaced
    }
}

impl Program {
    /// Why `file` has no compile unit in the running program, when a unit built elsewhere
    /// may be it: the sentence to add to the refusal, with what to put in `hot-lsp.toml`.
    pub fn why_not_linked(&self, file: &Path) -> Option<String> {
        let same_name = |p: &Path| p.file_name().is_some_and(|n| Some(n) == file.file_name());
        let list = |files: &[PathBuf]| {
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let hint = |u: &Unplaced| {
            format!(
                "say where that build's sources are in hot-lsp.toml: [compile] path_map = {{ \"{}\" = \"<folder in this workspace>\" }}",
                u.comp_dir
            )
        };
        let found = self.unplaced.iter().find_map(|u| match &u.why {
            Unplacement::Ambiguous(files) if files.iter().any(|f| f == file) => Some(format!(
                "The program's compile unit {} (compiled in {}) matches {} files of the compile \
                 database by its path relative to the compile folder ({}), and hot-lsp does not \
                 guess; {}",
                u.spelled.display(),
                u.comp_dir,
                files.len(),
                list(files),
                hint(u)
            )),
            Unplacement::Taken(taken) if taken == file => Some(format!(
                "The program's compile unit {} (compiled in {}) matches it by its path relative \
                 to the compile folder, but so does another compile unit; {}",
                u.spelled.display(),
                u.comp_dir,
                hint(u)
            )),
            _ => None,
        });
        found.or_else(|| {
            self.unplaced.iter().find_map(|u| {
                (matches!(u.why, Unplacement::NoMatch) && same_name(&u.spelled)).then(|| {
                    format!(
                        "The program has a compile unit {} (compiled in {}), outside this \
                         workspace and not in its compile database; if the program was built \
                         from these sources elsewhere (a container, a moved tree, \
                         -ffile-prefix-map), {}",
                        u.spelled.display(),
                        u.comp_dir,
                        hint(u)
                    )
                })
            })
        })
    }
}

/// `[compile] path_map` as (build-time prefix, absolute workspace prefix), longest build-time
/// prefix first: what DWARF paths and the compile database's paths are rewritten with.
pub(crate) fn path_map_prefixes(
    root: &Path,
    path_map: &BTreeMap<PathPrefix, PathPrefix>,
) -> Vec<(PathBuf, PathBuf)> {
    let root = normalize(root);
    let mut prefixes: Vec<(PathBuf, PathBuf)> = path_map
        .iter()
        .map(|(from, to)| (normalize(&from.0), normalize(&root.join(&to.0))))
        .collect();
    prefixes.sort_by_key(|(from, _)| std::cmp::Reverse(from.components().count()));
    prefixes
}

/// The source file a compile unit was compiled from (`DW_AT_comp_dir` + `DW_AT_name`).
pub(crate) fn cu_source(cu: &hot_object::CompileUnit) -> PathBuf {
    let dir = cu.comp_dir.as_deref().unwrap_or("/");
    normalize(&Path::new(dir).join(&cu.name))
}

/// Which `STT_FILE` group and compile unit of the image hold `source`.
pub(crate) enum UnitMatch {
    Found(Option<TranslationUnitId>),
    /// The image has DWARF and no compile unit or unclaimed group for this file.
    NotLinked,
}

/// [`Program::home_of`] in `model`, whose project libraries are those under `sources`'
/// root. `Err`: the image (its path) where `file` may be any of several `STT_FILE` groups,
/// or its one group may be another database file's.
fn image_home(
    model: &ImageModel,
    sources: &SourceMap,
    file: &Path,
) -> Result<(UnitImage, UnitMatch), (String, Unsure)> {
    let names = |image: &LinkedImage| image.compile_units.iter().any(|cu| cu_source(cu) == file);
    let answer = |module: &Module, namesakes: &Namesakes| {
        unit_of(&module.image, file, namesakes).map_err(|n| (module.path.clone(), n))
    };
    // A unit found by name asks nothing of its namesakes.
    let named = Namesakes::default();
    if names(&model.exe.image) {
        return Ok((UnitImage::Executable, answer(&model.exe, &named)?));
    }
    let project: Vec<&Module> = model.libs.iter().filter(|m| m.image.has_symtab).collect();
    if let Some(lib) = project.iter().find(|m| names(&m.image)) {
        return Ok((UnitImage::Library(lib.path.clone()), answer(lib, &named)?));
    }
    // No compile unit names it: an image with a group of its name no compile unit claims
    // (or several it cannot tell apart, refused below), if no other file of the database
    // may be that group.
    let namesakes = &namesakes_of(model, sources, file);
    let root = sources.root.as_path();
    let grouped = |image: &LinkedImage| {
        matches!(
            unit_of(image, file, namesakes),
            Ok(UnitMatch::Found(Some(_))) | Err(_)
        )
    };
    let libs: Vec<&&Module> = project
        .iter()
        .filter(|m| Path::new(&m.path).starts_with(root) && grouped(&m.image))
        .collect();
    if let (false, [lib]) = (grouped(&model.exe.image), libs.as_slice()) {
        return Ok((
            UnitImage::Library(lib.path.clone()),
            answer(lib, namesakes)?,
        ));
    }
    Ok((UnitImage::Executable, answer(&model.exe, namesakes)?))
}

/// What the compile database says of a source file that no compile unit names, to tell
/// whether an `STT_FILE` group of its base name is surely its own: another program's file
/// of that name (a tool's `util.c` beside the library's) is in the same database.
#[derive(Debug, Default)]
pub(crate) struct Namesakes {
    /// The database builds the file with debug information: linked into an image with
    /// DWARF, a compile unit would name it.
    debug: bool,
    /// The database's other files of its base name that no compile unit of any image
    /// names, each with whether it is built with debug information.
    others: Vec<(PathBuf, bool)>,
}

/// [`Namesakes`] of `file`, in `model` and the database `sources` was made from.
fn namesakes_of(model: &ImageModel, sources: &SourceMap, file: &Path) -> Namesakes {
    let same = file
        .file_name()
        .and_then(|name| sources.by_name.get(name))
        .map(Vec::as_slice)
        .unwrap_or_default();
    let named = |f: &Path| {
        std::iter::once(&model.exe)
            .chain(&model.libs)
            .any(|m| m.image.compile_units.iter().any(|cu| cu_source(cu) == f))
    };
    Namesakes {
        debug: same.iter().any(|(f, debug)| f == file && *debug),
        others: same
            .iter()
            .filter(|(f, _)| f != file && !named(f))
            .cloned()
            .collect(),
    }
}

/// Why a file no compile unit names is refused rather than given an `STT_FILE` group: how
/// many groups of its name no compile unit claims, and the other database files that could
/// be them (`rivals`).
#[derive(Debug, PartialEq)]
pub(crate) struct Unsure {
    groups: usize,
    rivals: Vec<PathBuf>,
}

/// Which unit of `image` `source` is: its compile unit's group, else (built without -g) the
/// one `STT_FILE` group of its name that no compile unit claims, if no other file of the
/// database (`namesakes`) may be it. `Err`: several such groups, or files, could be it and
/// nothing tells them apart.
pub(crate) fn unit_of(
    image: &LinkedImage,
    source: &Path,
    namesakes: &Namesakes,
) -> Result<UnitMatch, Unsure> {
    let base = source.file_name().map(|b| b.to_string_lossy().into_owned());
    let same_base = |name: &str| {
        Path::new(name)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            == base
    };
    let units: Vec<&hot_object::CompileUnit> = image
        .compile_units
        .iter()
        .filter(|cu| same_base(&cu.name))
        .collect();
    let groups: Vec<usize> = image
        .translation_units
        .iter()
        .enumerate()
        .filter(|(_, name)| same_base(name))
        .map(|(i, _)| i)
        .collect();
    let found =
        |group: Option<&usize>| UnitMatch::Found(group.map(|&g| TranslationUnitId(g as u32)));
    let Some(rank) = units.iter().position(|cu| cu_source(cu) == source) else {
        return unclaimed_group(image, source, namesakes, &units, &groups);
    };
    if units.len() == 1 && groups.len() <= 1 {
        return Ok(found(groups.first()));
    }
    // Several files of this name. A group belongs to the unit whose code ranges or static
    // variables hold its local symbols: pairing the k-th unit with the k-th group would
    // break as soon as one of the files was built without -g (it has a group, no unit).
    let claims = claimed_groups(image, &units, &groups);
    if let Some(group) = claims[rank] {
        return Ok(found(Some(&group)));
    }
    // The unit has no local symbol (or DWARF gave it no addresses): the groups nobody
    // claimed pair with the units that claimed none, in link order, if they are as many.
    let free_groups: Vec<usize> = groups
        .iter()
        .copied()
        .filter(|g| !claims.contains(&Some(*g)))
        .collect();
    let free_units: Vec<usize> = (0..units.len()).filter(|&u| claims[u].is_none()).collect();
    if free_groups.len() != free_units.len() {
        return Ok(UnitMatch::Found(None));
    }
    let position = free_units.iter().position(|&u| u == rank);
    Ok(found(position.and_then(|p| free_groups.get(p))))
}

/// The unit of `source`, which no compile unit of `image` names: a file built without -g
/// (every file, in an image without DWARF; lz4's lib/*.c by their own flags beside a -g
/// driver, in one with DWARF) still has its `STT_FILE` group, which no compile unit's code
/// or variables claim. `units` and `groups` are the image's compile units and groups of
/// `source`'s base name. A file the database builds with -g is not linked into an image
/// with DWARF (a compile unit would name it). The one group left is it; of several, the
/// one whose name (as the compiler was given it: clang's `lib/util.c`; gcc gives the base
/// name only) is the tail of `source`'s path — in both cases only if no other database
/// file that could be in the image without a compile unit (`namesakes`: built without -g,
/// or any, in an image without DWARF) fits the group as well; else `Err`, as guessing
/// would swap code into another file's unit.
fn unclaimed_group(
    image: &LinkedImage,
    source: &Path,
    namesakes: &Namesakes,
    units: &[&hot_object::CompileUnit],
    groups: &[usize],
) -> Result<UnitMatch, Unsure> {
    let dwarf = !image.compile_units.is_empty();
    if dwarf && namesakes.debug {
        return Ok(UnitMatch::NotLinked);
    }
    // Without a group of its name, or a compile unit of its name to claim one, no symbol is
    // read: `home_of` is asked of many files per save (who includes a header).
    let claims = if groups.is_empty() || units.is_empty() {
        Vec::new()
    } else {
        claimed_groups(image, units, groups)
    };
    let free: Vec<usize> = groups
        .iter()
        .copied()
        .filter(|g| !claims.contains(&Some(*g)))
        .collect();
    // A compile unit that claimed no group (no local symbol) may own any free one: as many
    // free groups as such units leave none that is surely another file's.
    let unclaiming = units.len() - claims.iter().flatten().count();
    if free.len() <= unclaiming {
        if !dwarf {
            // No DWARF and no group: the file's name is all there is to go by.
            return Ok(UnitMatch::Found(None));
        }
        return Ok(UnitMatch::NotLinked);
    }
    let found = |g: usize| Ok(UnitMatch::Found(Some(TranslationUnitId(g as u32))));
    // The other files that may be a group of this image without a compile unit naming them.
    let rivals: Vec<&Path> = namesakes
        .others
        .iter()
        .filter(|(_, debug)| !dwarf || !debug)
        .map(|(f, _)| f.as_path())
        .collect();
    if let ([group], 0, []) = (free.as_slice(), unclaiming, rivals.as_slice()) {
        return found(*group);
    }
    let spells = |g: usize, file: &Path| {
        let tail: PathBuf = Path::new(&image.translation_units[g])
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        tail.components().count() > 1
            && !tail.components().any(|c| matches!(c, Component::ParentDir))
            && file.ends_with(&tail)
    };
    let spelled: Vec<usize> = free
        .iter()
        .copied()
        .filter(|&g| spells(g, source))
        .collect();
    // `/w/tools/lib/util.c` ends with `lib/util.c` as `/w/lib/util.c` does.
    match spelled.as_slice() {
        [group] if !rivals.iter().any(|f| spells(*group, f)) => found(*group),
        _ => Err(Unsure {
            groups: free.len(),
            rivals: rivals.into_iter().map(Path::to_path_buf).collect(),
        }),
    }
}

/// The refusal of `file`, which any of `unsure.groups` `STT_FILE` groups of `image` (none a
/// compile unit's) could be, or whose one group could be another file's, naming those.
fn unsure_message(file: &Path, image: &str, unsure: &Unsure) -> String {
    let mut rivals: Vec<String> = unsure
        .rivals
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    rivals.sort();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let units = match unsure.groups {
        1 => format!("the one unit named `{name}`"),
        n => format!("any of {n} units named `{name}`"),
    };
    // In an image without DWARF a rival may be built with -g: that says nothing there.
    let rivals = match rivals.as_slice() {
        [] => String::new(),
        files => format!(
            ", and so may {} (in the compile database, and named by no compile unit)",
            files.join(", ")
        ),
    };
    format!(
        "{} may be {units} in {image} built without debug information{rivals}; hot-lsp does \
         not guess: build them with -g or give them distinct names; nothing was swapped",
        file.display(),
    )
}

/// For each unit, the group (among `groups`) most of whose local symbols lie in the unit's
/// code ranges or at its static variables' addresses; `None` when no symbol does.
fn claimed_groups(
    image: &LinkedImage,
    units: &[&hot_object::CompileUnit],
    groups: &[usize],
) -> Vec<Option<usize>> {
    let mut counts = vec![vec![0usize; groups.len()]; units.len()];
    for sym in image.symbols.iter().filter(|s| s.defined && !s.dynamic) {
        let Some(tu) = sym.tu else { continue };
        let Some(g) = groups.iter().position(|&g| g == tu.0 as usize) else {
            continue;
        };
        for (u, cu) in units.iter().enumerate() {
            let in_code = cu
                .ranges
                .iter()
                .any(|&(begin, end)| (begin..end).contains(&sym.vaddr));
            if in_code || cu.variables.binary_search(&sym.vaddr).is_ok() {
                counts[u][g] += 1;
            }
        }
    }
    counts
        .iter()
        .map(|row| {
            let (best, &count) = row.iter().enumerate().max_by_key(|(_, &c)| c)?;
            (count > 0).then(|| groups[best])
        })
        .collect()
}

/// The producer string of the compile unit for `source`, if the image has one.
pub(crate) fn producer_of<'a>(image: &'a LinkedImage, source: &Path) -> Option<&'a str> {
    image.compile_units.iter().find_map(|cu| {
        (cu_source(cu) == source)
            .then_some(cu.producer.as_deref())
            .flatten()
    })
}

/// `r_debug.r_state` once the dynamic linker's list is complete.
const RT_CONSISTENT: u32 = 0;
/// `DT_DEBUG`: the dynamic linker stores the address of its `r_debug` there.
const DT_DEBUG: u64 = 21;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// The libraries in load order — the order ELF interposition follows — with their load
/// bias, from the dynamic linker's own list: the executable's `DT_DEBUG` entry points to
/// `r_debug`, whose `r_map` chains the `link_map`s. `None` while that list is not there or
/// not complete (right after exec, or during a `dlopen`).
fn link_map(debuggee: &Debuggee, exe: &Module) -> Option<Vec<(String, u64)>> {
    let dynamic = exe.image.sections.iter().find(|s| s.name == ".dynamic")?;
    let bytes = debuggee
        .read_memory(dynamic.vaddr.wrapping_add(exe.bias), dynamic.size as usize)
        .ok()?;
    let entries: Vec<(u64, u64)> = bytes
        .chunks_exact(16)
        .filter_map(|entry| {
            let tag = u64::from_le_bytes(entry[..8].try_into().ok()?);
            let value = u64::from_le_bytes(entry[8..].try_into().ok()?);
            Some((tag, value))
        })
        .take_while(|&(tag, _)| tag != DT_NULL)
        .collect();
    let r_debug = entries.iter().find(|(tag, _)| *tag == DT_DEBUG)?.1;
    let needed = entries.iter().filter(|(tag, _)| *tag == DT_NEEDED).count();
    if r_debug == 0 {
        return None;
    }
    let header = debuggee.read_memory(r_debug, 40).ok()?;
    let word = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .and_then(|w| w.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let state = u32::from_le_bytes(header.get(24..28)?.try_into().ok()?);
    if state != RT_CONSISTENT {
        return None;
    }
    let mut libs = Vec::new();
    let mut next = word(&header, 8)?;
    // A corrupt list must not loop forever.
    for _ in 0..4096 {
        if next == 0 {
            break;
        }
        let entry = debuggee.read_memory(next, 40).ok()?;
        let (l_addr, l_name) = (word(&entry, 0)?, word(&entry, 8)?);
        let name = read_c_string(debuggee, l_name).unwrap_or_default();
        // The executable (empty name) and the vDSO (`linux-vdso.so.1`, no file) have nothing
        // to read. A name with a slash is a path: absolute, or relative as `dlopen` was given
        // it ("./lib/libx.so"; `read_libraries` finds its file by its mapping).
        if name.contains('/') {
            libs.push((name, l_addr));
        }
        next = word(&entry, 24)?;
    }
    // ld.so publishes a consistent list holding only the executable before it starts
    // loading: until every direct dependency is in it, the list is not the program's.
    let loaded = libs
        .iter()
        .filter(|(name, _)| !name.contains("/ld-linux"))
        .count();
    (loaded >= needed).then_some(libs)
}

/// The path under which `/proc/PID/maps` names the library ld.so lists as `name` loaded at
/// `bias`: the file mapping with the same device and inode as `name` (a symlink, a hard
/// link, a build tree moved since: one file whatever it is called), else the one whose
/// resolved path is `name`'s, else the file mapped at offset 0 at `bias` (ld links a shared
/// library's first `PT_LOAD` at 0; a relative `name` resolves against a directory the
/// program may have left since). `None`: nothing mapped is that library.
fn mapped_path(maps: &[Mapping], name: &str, bias: u64) -> Option<String> {
    let files = || {
        maps.iter()
            .filter(|m| m.path.starts_with('/') && m.inode != 0)
    };
    let absolute = name.starts_with('/');
    if absolute {
        if let Ok(meta) = std::fs::metadata(name) {
            use std::os::unix::fs::MetadataExt;
            let identity = (dev_major_minor(meta.dev()), meta.ino());
            if let Some(m) = files().find(|m| (m.device, m.inode) == identity) {
                return Some(m.path.clone());
            }
        }
        if let Ok(real) = std::fs::canonicalize(name) {
            let real = real.to_string_lossy();
            if let Some(m) = files().find(|m| m.path == real) {
                return Some(m.path.clone());
            }
        }
    }
    files()
        .find(|m| m.offset == 0 && m.range.start == bias)
        .map(|m| m.path.clone())
}

/// A `st_dev` as `/proc/PID/maps` writes it: (major, minor), in the kernel's encoding of
/// `dev_t` (glibc's `gnu_dev_major`/`gnu_dev_minor`).
pub(crate) fn dev_major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

fn read_c_string(debuggee: &Debuggee, addr: u64) -> Option<String> {
    if addr == 0 {
        return None;
    }
    // Read up to the end of the page first: the next page may not be mapped.
    let to_page_end = (4096 - (addr % 4096)) as usize;
    let mut bytes = debuggee.read_memory(addr, to_page_end.min(4096)).ok()?;
    if !bytes.contains(&0) {
        bytes.extend(debuggee.read_memory(addr + to_page_end as u64, 4096).ok()?);
    }
    let end = bytes.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// The ELF shared objects (`*.so`, `*.so.N…`) under `root`, canonical, each once: hidden
/// directories and Cargo's `target` left out, at most [`LIBRARY_SCAN_DEPTH`] deep.
fn shared_objects_under(root: &Path) -> Vec<PathBuf> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![(root.to_path_buf(), 0usize)];
    let mut looked = 0usize;
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            looked += 1;
            if looked > LIBRARY_SCAN_FILES {
                return found.into_iter().collect();
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                if depth < LIBRARY_SCAN_DEPTH && !name.starts_with('.') && name != "target" {
                    dirs.push((path, depth + 1));
                }
                continue;
            }
            let shared = name.ends_with(".so") || name.contains(".so.");
            if !shared {
                continue;
            }
            let Ok(real) = std::fs::canonicalize(&path) else {
                continue;
            };
            let elf = std::fs::File::open(&real).is_ok_and(|mut f| {
                let mut magic = [0u8; 4];
                std::io::Read::read_exact(&mut f, &mut magic).is_ok() && magic == *b"\x7fELF"
            });
            if elf {
                found.insert(real);
            }
        }
    }
    found.into_iter().collect()
}

/// The shared libraries of the process, each with its bias: in `link_map` order when the
/// dynamic linker's list is readable, otherwise every library file mapped at offset 0.
///
/// A library's compile units are placed in the workspace like the executable's (`sources`):
/// a file of the project compiled into one of its libraries is linked into that library.
/// The load of each library ld.so lists, by the file the kernel maps: what
/// [`read_libraries`] reads, told without reading any library file (`None`: no consistent
/// list). A library upgraded on disk while mapped is left out (its file is not what runs).
fn current_keys(debuggee: &Debuggee, exe: &Module, maps: &[Mapping]) -> Option<Vec<LoadKey>> {
    let list = link_map(debuggee, exe)?;
    let mut keys = Vec::new();
    for (name, bias) in list {
        // The library is known by the name the kernel gives its mapping, never by the
        // spelling ld.so keeps (`l_name`): that is the name `dlopen` or DT_NEEDED gave,
        // relative ("./lib/libx.so"), or a SONAME symlink (`libcjson.so.1`) to the
        // versioned file the kernel names (`libcjson.so.1.7.15`). Every later lookup
        // (arenas near the library, its bias) goes through the memory map.
        let Some(path) = mapped_path(maps, &name, bias) else {
            continue;
        };
        // A library upgraded on disk shows as "(deleted)": its file is not what runs.
        if path.ends_with(" (deleted)")
            || maps.iter().any(|m| m.path == format!("{path} (deleted)"))
        {
            tracing::debug!("{path} was replaced on disk; its symbols are not used");
            continue;
        }
        keys.push(library_load::key_of(maps, &path, bias));
    }
    Some(keys)
}

/// The libraries of the process, each with the key of its load. A load of `known` (read
/// before) with the same key is reused, not read again: a re-read of an unchanged list
/// parses no library file.
fn read_libraries(
    debuggee: &Debuggee,
    exe: &Module,
    sources: &SourceMap,
    known: &[(LoadKey, Module)],
) -> Result<Vec<(LoadKey, Module)>, String> {
    let maps = debuggee
        .mappings()
        .map_err(|e| format!("cannot read the memory map: {e}"))?;
    if let Some(keys) = current_keys(debuggee, exe, &maps) {
        let mut libs = Vec::new();
        for key in keys {
            if let Some((_, module)) = known.iter().find(|(k, _)| *k == key) {
                libs.push((key, module.clone()));
                continue;
            }
            let Ok(bytes) = std::fs::read(&key.path) else {
                continue;
            };
            let Ok(mut image) = LinkedImage::parse(Path::new(&key.path), &bytes) else {
                continue;
            };
            sources.place(&mut image.compile_units);
            let module = Module {
                path: key.path.clone(),
                bias: key.bias,
                image: Arc::new(image),
            };
            libs.push((key, module));
        }
        return Ok(libs);
    }
    let exe_path = exe.path.as_str();
    // Every file mapped at offset 0 that is not the executable. The dynamic linker maps
    // libraries top-down, so descending address approximates load order.
    let mut libs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut lib_maps: Vec<&Mapping> = maps
        .iter()
        .filter(|m| m.offset == 0 && m.path.starts_with('/') && m.path != exe_path)
        .filter(|m| m.path.contains(".so"))
        .collect();
    lib_maps.sort_by_key(|m| std::cmp::Reverse(m.range.start));
    for mapping in lib_maps {
        if !seen.insert(mapping.path.clone()) {
            continue;
        }
        // A library upgraded on disk shows as "(deleted)": its file is not what runs.
        if mapping.path.ends_with(" (deleted)") {
            tracing::warn!(
                "{} was replaced on disk; its symbols are not used",
                mapping.path
            );
            continue;
        }
        let path = mapping.path.as_str();
        // Read before and still that load: not parsed again (a list mid-`dlopen` is read
        // this way at every look until ld.so is done).
        if let Some(known) = known
            .iter()
            .find(|(k, _)| k.path == path && library_load::still_mapped(&maps, k))
        {
            libs.push(known.clone());
            continue;
        }
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let Ok(mut image) = LinkedImage::parse(Path::new(path), &bytes) else {
            continue;
        };
        sources.place(&mut image.compile_units);
        let Some(bias) = bias_of(&maps, path, &image) else {
            continue;
        };
        let module = Module {
            path: path.to_owned(),
            bias,
            image: Arc::new(image),
        };
        libs.push((library_load::key_of(&maps, path, bias), module));
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, comp_dir: &str) -> hot_object::CompileUnit {
        hot_object::CompileUnit {
            name: name.into(),
            comp_dir: Some(comp_dir.into()),
            producer: None,
            ranges: Vec::new(),
            variables: Vec::new(),
            unnamed_functions: Vec::new(),
        }
    }

    fn database(root: &Path, entries: &[(&str, &str)]) -> CompileDatabase {
        let json: Vec<serde_json::Value> = entries
            .iter()
            .map(|(dir, file)| {
                serde_json::json!({"directory": root.join(dir), "file": file,
                                   "arguments": ["cc", "-c", file]})
            })
            .collect();
        let path = root.join("compile_commands.json");
        std::fs::write(&path, serde_json::Value::Array(json).to_string()).expect("write");
        CompileDatabase::load(&path).expect("database")
    }

    #[test]
    fn units_built_elsewhere_are_placed_or_explained() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let db = database(
            root,
            &[
                (".", "main.c"),
                ("build", "../src/io.c"),
                ("a", "util.c"),
                ("b", "util.c"),
                (".", "here.c"),
                (".", "twice.c"),
            ],
        );
        let path_map = BTreeMap::from([
            (PathPrefix("/ci".into()), PathPrefix("elsewhere".into())),
            (PathPrefix("/ci/tree".into()), PathPrefix(".".into())),
        ]);
        let map = SourceMap::new(root, &path_map, Some(&db));
        let root_text = root.display().to_string();
        let mut units = vec![
            // The longest path_map prefix wins, for the file and its folder.
            unit("lib/x.c", "/ci/tree"),
            // Relative to the compile folder, with `..`: unique in the database.
            unit("/old/src/io.c", "/old/build"),
            unit("main.c", "/old"),
            // Ambiguous: `util.c` in two database folders.
            unit("util.c", "/old/a"),
            // In the workspace already: kept, and it takes `here.c` from the relative match.
            unit(&format!("{root_text}/here.c"), &root_text),
            unit("here.c", "/elsewhere"),
            // Nothing matches.
            unit("gone.c", "/old"),
        ];
        let unplaced = map.place(&mut units);
        let sources: Vec<PathBuf> = units.iter().map(cu_source).collect();
        assert_eq!(sources[0], root.join("lib/x.c"));
        assert_eq!(units[0].comp_dir.as_deref(), Some(root_text.as_str()));
        assert_eq!(sources[1], root.join("src/io.c"));
        assert_eq!(
            units[1].comp_dir,
            Some(root.join("build").display().to_string())
        );
        assert_eq!(sources[2], root.join("main.c"));
        assert_eq!(sources[3], PathBuf::from("/old/a/util.c"));
        assert_eq!(sources[4], root.join("here.c"));
        assert_eq!(sources[5], PathBuf::from("/elsewhere/here.c"));
        assert_eq!(sources[6], PathBuf::from("/old/gone.c"));
        let whys: Vec<String> = unplaced
            .iter()
            .map(|u| format!("{} {:?}", u.spelled.display(), u.why))
            .collect();
        assert_eq!(unplaced.len(), 3, "{whys:#?}");
        assert!(matches!(&unplaced[0].why, Unplacement::Ambiguous(f) if f.len() == 2));
        assert!(matches!(&unplaced[1].why, Unplacement::Taken(f) if *f == root.join("here.c")));
        assert!(matches!(unplaced[2].why, Unplacement::NoMatch));

        // `-ffile-prefix-map=$PWD=.` leaves relative paths: `"." = "src"` maps those only.
        let path_map = BTreeMap::from([(PathPrefix(".".into()), PathPrefix("src".into()))]);
        let map = SourceMap::new(root, &path_map, None);
        let mut units = vec![unit("./x.c", "."), unit("/usr/src/y.c", "/usr/src")];
        let unplaced = map.place(&mut units);
        assert_eq!(cu_source(&units[0]), root.join("src/x.c"));
        assert_eq!(cu_source(&units[1]), PathBuf::from("/usr/src/y.c"));
        assert_eq!(unplaced.len(), 1);
    }

    /// An image whose `STT_FILE` groups are `groups` (each with one local function at
    /// 0x1000 * (its index + 1)), and whose DWARF has compile units `with_dwarf`: a group's
    /// index (the unit's code is its function) and the file, compiled in `/w`.
    fn grouped_image(groups: &[&str], with_dwarf: &[(usize, &str)]) -> LinkedImage {
        let at = |g: usize| 0x1000 * (g as u64 + 1);
        LinkedImage {
            translation_units: groups.iter().map(|g| g.to_string()).collect(),
            symbols: (0..groups.len())
                .map(|g| hot_object::ImageSymbol {
                    name: "step".into(),
                    vaddr: at(g),
                    size: 16,
                    kind: hot_object::SymbolKind::Function,
                    binding: hot_object::Binding::Local,
                    tu: Some(TranslationUnitId(g as u32)),
                    section: Some(".text".into()),
                    defined: true,
                    dynamic: false,
                    default_version: false,
                    visibility: Default::default(),
                })
                .collect(),
            compile_units: with_dwarf
                .iter()
                .map(|&(g, name)| hot_object::CompileUnit {
                    ranges: vec![(at(g), at(g) + 16)],
                    ..unit(name, "/w")
                })
                .collect(),
            ..Default::default()
        }
    }

    fn group_of(image: &LinkedImage, file: &str) -> Result<Option<u32>, usize> {
        unit_of(image, Path::new(file), &Namesakes::default())
            .map(|m| match m {
                UnitMatch::Found(tu) => tu.map(|t| t.0),
                UnitMatch::NotLinked => None,
            })
            .map_err(|unsure| unsure.groups)
    }

    #[test]
    fn a_file_built_without_debug_info_is_its_unclaimed_group() {
        // lz4: the driver with -g, lib/lz4.c and lib/lz4hc.c without (gcc names a group by
        // the base name).
        let lz4 = grouped_image(&["work.c", "lz4.c", "lz4hc.c"], &[(0, "work.c")]);
        assert_eq!(group_of(&lz4, "/w/work.c"), Ok(Some(0)));
        assert_eq!(group_of(&lz4, "/w/lib/lz4.c"), Ok(Some(1)));
        assert_eq!(group_of(&lz4, "/w/lib/lz4hc.c"), Ok(Some(2)));
        assert!(matches!(
            unit_of(&lz4, Path::new("/w/tool.c"), &Namesakes::default()),
            Ok(UnitMatch::NotLinked)
        ));
        // samename: lib/util.c without -g, src/util.c with: the group src's unit does not
        // claim.
        let samename = grouped_image(
            &["main.c", "util.c", "util.c"],
            &[(0, "main.c"), (2, "src/util.c")],
        );
        assert_eq!(group_of(&samename, "/w/lib/util.c"), Ok(Some(1)));
        assert_eq!(group_of(&samename, "/w/src/util.c"), Ok(Some(2)));
        // Two files of one name without -g: clang's group names tell them apart, gcc's do
        // not (refused, not guessed).
        let clang = grouped_image(&["main.c", "a/util.c", "b/util.c"], &[(0, "main.c")]);
        assert_eq!(group_of(&clang, "/w/b/util.c"), Ok(Some(2)));
        assert_eq!(group_of(&clang, "/w/a/util.c"), Ok(Some(1)));
        let gcc = grouped_image(&["main.c", "util.c", "util.c"], &[(0, "main.c")]);
        assert_eq!(group_of(&gcc, "/w/a/util.c"), Err(2));
        // No DWARF at all: the one group of its name.
        let stripped = grouped_image(&["main.c", "lib.c"], &[]);
        assert_eq!(group_of(&stripped, "/w/lib.c"), Ok(Some(1)));
    }

    /// Where `file` is in an executable `exe` beside libraries `libs` (path, image), with the
    /// compile database `entries` (file relative to `/w`, its arguments): the group's index,
    /// `None` when not linked, else the unsure refusal's rivals.
    fn home_among(
        exe: &LinkedImage,
        libs: &[(&str, LinkedImage)],
        entries: &[(&str, &[&str])],
        file: &str,
    ) -> Result<(UnitImage, Option<u32>), Vec<PathBuf>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let json: Vec<serde_json::Value> = entries
            .iter()
            .map(|(file, arguments)| {
                serde_json::json!({"directory": "/w", "file": file, "arguments": arguments})
            })
            .collect();
        let path = dir.path().join("compile_commands.json");
        std::fs::write(&path, serde_json::Value::Array(json).to_string()).expect("write");
        let db = CompileDatabase::load(&path).expect("database");
        let sources = SourceMap::new(Path::new("/w"), &BTreeMap::new(), Some(&db));
        let module = |path: &str, image: &LinkedImage| Module {
            path: path.into(),
            bias: 0,
            image: Arc::new(image.clone()),
        };
        let model = ImageModel {
            exe: module("/w/app", exe),
            libs: libs.iter().map(|(p, image)| module(p, image)).collect(),
            home: Home::Executable,
        };
        match image_home(&model, &sources, Path::new(file)) {
            Ok((image, UnitMatch::Found(tu))) => Ok((image, tu.map(|t| t.0))),
            Ok((image, UnitMatch::NotLinked)) => Ok((image, None)),
            Err((image, unsure)) => {
                let text = unsure_message(Path::new(file), &image, &unsure);
                for rival in &unsure.rivals {
                    assert!(text.contains(&rival.display().to_string()), "{text}");
                }
                Err(unsure.rivals)
            }
        }
    }

    #[test]
    fn a_namesake_of_another_program_does_not_take_an_unclaimed_group() {
        const G: &[&str] = &["cc", "-g", "-c", "x.c"];
        const NO_G: &[&str] = &["cc", "-O2", "-c", "x.c"];
        const G_THEN_G0: &[&str] = &["cc", "-g", "-g0", "-c", "x.c"];
        let exe = UnitImage::Executable;
        let rivals = |files: &[&str]| Err(files.iter().map(PathBuf::from).collect::<Vec<_>>());
        // toolnamesake: app links lib/util.c without -g; tools/util.c, the tool's, is built
        // with -g, so it would have a compile unit if app linked it.
        let app = grouped_image(&["main.c", "util.c"], &[(0, "main.c")]);
        let tool_g = [("main.c", G), ("lib/util.c", NO_G), ("tools/util.c", G)];
        assert_eq!(
            home_among(&app, &[], &tool_g, "/w/tools/util.c"),
            Ok((exe.clone(), None))
        );
        assert_eq!(
            home_among(&app, &[], &tool_g, "/w/lib/util.c"),
            Ok((exe.clone(), Some(1)))
        );
        // Built without -g (a later -g0 undoes -g), or once with and once without: either
        // may be the group, so neither takes it.
        for tool in [NO_G, G_THEN_G0] {
            let db = [("main.c", G), ("lib/util.c", NO_G), ("tools/util.c", tool)];
            assert_eq!(
                home_among(&app, &[], &db, "/w/lib/util.c"),
                rivals(&["/w/tools/util.c"])
            );
            assert_eq!(
                home_among(&app, &[], &db, "/w/tools/util.c"),
                rivals(&["/w/lib/util.c"])
            );
        }
        let twice = [
            ("lib/util.c", NO_G),
            ("tools/util.c", G),
            ("tools/util.c", NO_G),
        ];
        assert_eq!(
            home_among(&app, &[], &twice, "/w/lib/util.c"),
            rivals(&["/w/tools/util.c"])
        );
        // A namesake a compile unit of another image names is that image's.
        let mut tool_lib = grouped_image(&["util.c"], &[]);
        tool_lib.compile_units = vec![unit("tools/util.c", "/w")];
        let tool_no_g = [("lib/util.c", NO_G), ("tools/util.c", NO_G)];
        assert_eq!(
            home_among(
                &app,
                &[("/usr/lib/libtool.so", tool_lib)],
                &tool_no_g,
                "/w/lib/util.c"
            ),
            Ok((exe.clone(), Some(1)))
        );
        // Without DWARF in the image, -g says nothing (stripped after the link).
        let stripped = grouped_image(&["main.c", "util.c"], &[]);
        assert_eq!(
            home_among(&stripped, &[], &tool_g, "/w/lib/util.c"),
            rivals(&["/w/tools/util.c"])
        );
        assert_eq!(
            home_among(&stripped, &[], &tool_g, "/w/tools/util.c"),
            rivals(&["/w/lib/util.c"])
        );
        // clang's `lib/util.c` group: the tail of /w/lib/util.c and of /w/tools/lib/util.c,
        // not of /w/tools/util.c.
        let clang = grouped_image(&["main.c", "lib/util.c"], &[(0, "main.c")]);
        assert_eq!(
            home_among(&clang, &[], &tool_no_g, "/w/lib/util.c"),
            Ok((exe.clone(), Some(1)))
        );
        let nested = [("lib/util.c", NO_G), ("tools/lib/util.c", NO_G)];
        assert_eq!(
            home_among(&clang, &[], &nested, "/w/lib/util.c"),
            rivals(&["/w/tools/lib/util.c"])
        );
        assert_eq!(
            home_among(&clang, &[], &nested, "/w/tools/lib/util.c"),
            rivals(&["/w/lib/util.c"])
        );
        let nested_g = [("lib/util.c", NO_G), ("tools/lib/util.c", G)];
        assert_eq!(
            home_among(&clang, &[], &nested_g, "/w/lib/util.c"),
            Ok((exe.clone(), Some(1)))
        );
        // Two groups clang names apart: a rival of one leaves the other alone.
        let two = grouped_image(&["main.c", "a/util.c", "b/util.c"], &[(0, "main.c")]);
        let db = [("a/util.c", NO_G), ("b/util.c", NO_G), ("x/a/util.c", NO_G)];
        assert_eq!(
            home_among(&two, &[], &db, "/w/b/util.c"),
            Ok((exe.clone(), Some(2)))
        );
        assert_eq!(
            home_among(&two, &[], &db, "/w/a/util.c"),
            rivals(&["/w/b/util.c", "/w/x/a/util.c"])
        );
    }
}
