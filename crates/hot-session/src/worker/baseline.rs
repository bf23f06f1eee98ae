//! Compile commands and baselines: which command compiles a file, and the object of the
//! text the program was built from, against which a save is compared.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hot_object::Object;

use super::{has_extension, Baseline, Worker, SOURCE_EXTENSIONS};
use crate::compile::{self, CompileJob};
use crate::compile_db::{normalize, CompileDatabase, CompileEntry};
use crate::program::{cu_source, unit_of, UnitMatch};
use crate::Severity;

impl Worker {
    pub(super) fn database(&mut self) -> Option<&CompileDatabase> {
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
            None => Err(format!(
                "{} is not in the compile database and hot-lsp.toml has no [compile] command",
                file.display()
            )),
        }
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

    /// Compile and parse one file; `None` on failure after reporting it.
    pub(super) fn compile_object(&mut self, job: &CompileJob) -> Result<Object, String> {
        let bytes = std::fs::read(&job.output)
            .map_err(|e| format!("cannot read {}: {e}", job.output.display()))?;
        let _ = std::fs::remove_file(&job.output);
        Object::parse(&job.output, &bytes).map_err(|e| e.to_string())
    }

    /// Queue the baseline of every source file the image's DWARF names that exists in this
    /// workspace, so the first save of each swaps only what changed. They are compiled in
    /// the background, between events.
    pub(super) fn queue_baselines(&mut self, skip: &[PathBuf]) {
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
        for file in files {
            self.snapshot(&file);
        }
    }

    /// Keep the text of `file` as it is now, for its baseline, if it is linked into the
    /// program and unchanged since the executable was built (so this text is what runs).
    /// A file without a snapshot gets no baseline; its first save then swaps every function
    /// of it, which is always correct, where a baseline of edited text would hide the edit.
    pub(super) fn snapshot(&mut self, file: &Path) -> bool {
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
            .is_some_and(|i| !matches!(unit_of(&i.exe.image, file), UnitMatch::NotLinked));
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
    pub(super) fn compile_baseline(&mut self, file: &Path) {
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

    pub(super) fn on_opened(&mut self, file: &Path) {
        let file = normalize(file);
        if self.program.is_some()
            && has_extension(&file, SOURCE_EXTENSIONS)
            && !self.baselines.contains_key(&file)
            && self.snapshot(&file)
        {
            self.compile_baseline(&file);
        }
    }
}
