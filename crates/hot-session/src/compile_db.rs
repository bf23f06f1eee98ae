//! `compile_commands.json`: entries per file, with arguments relative to their directory.
//!
//! Entries come with either `arguments` (an argv) or `command` (a shell-quoted string); `file`
//! and `output` may be relative to `directory`. One file can have several entries (a test
//! build beside the program's); [`CompileDatabase::entries_for`] returns all of them and the
//! session picks the one linked into the running program.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

#[derive(Deserialize)]
struct RawEntry {
    directory: PathBuf,
    file: PathBuf,
    #[serde(default)]
    arguments: Option<Vec<String>>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    output: Option<PathBuf>,
}

/// One compile command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileEntry {
    pub directory: PathBuf,
    /// Absolute, lexically normalised.
    pub file: PathBuf,
    /// The full argv, compiler first.
    pub arguments: Vec<String>,
    pub output: Option<PathBuf>,
}

#[derive(Clone, Debug, Default)]
pub struct CompileDatabase {
    pub path: PathBuf,
    by_file: HashMap<PathBuf, Vec<CompileEntry>>,
}

impl CompileDatabase {
    /// Read and index a database. Errors name the file and say what is wrong.
    pub fn load(path: &Path) -> Result<CompileDatabase, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let raw: Vec<RawEntry> = serde_json::from_str(&text)
            .map_err(|e| format!("{}: invalid compile database: {e}", path.display()))?;
        let mut by_file: HashMap<PathBuf, Vec<CompileEntry>> = HashMap::new();
        for (index, entry) in raw.into_iter().enumerate() {
            let arguments = match (entry.arguments, entry.command) {
                (Some(arguments), _) if !arguments.is_empty() => arguments,
                (_, Some(command)) => shlex::split(&command).ok_or_else(|| {
                    format!(
                        "{}: entry {index}: cannot split the shell command `{command}`",
                        path.display()
                    )
                })?,
                _ => {
                    return Err(format!(
                        "{}: entry {index} has neither `arguments` nor `command`",
                        path.display()
                    ))
                }
            };
            let directory = normalize(&entry.directory);
            let file = normalize(&directory.join(&entry.file));
            let output = entry.output.map(|o| normalize(&directory.join(o)));
            by_file.entry(file.clone()).or_default().push(CompileEntry {
                directory,
                file,
                arguments,
                output,
            });
        }
        Ok(CompileDatabase {
            path: path.to_owned(),
            by_file,
        })
    }

    /// Every entry for `file` (absolute).
    pub fn entries_for(&self, file: &Path) -> &[CompileEntry] {
        self.by_file
            .get(&normalize(file))
            .map_or(&[], |v| v.as_slice())
    }

    /// Every file of the database.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.by_file.keys().map(|p| p.as_path())
    }

    /// Every entry of the database.
    pub fn entries(&self) -> impl Iterator<Item = &CompileEntry> {
        self.by_file.values().flatten()
    }
}

/// `path` relative to `base`, lexically (with `..` where `path` is not under `base`), both
/// normalised first; `None` when one is absolute and the other is not.
pub fn relative_path(path: &Path, base: &Path) -> Option<PathBuf> {
    let (path, base) = (normalize(path), normalize(base));
    if path.is_absolute() != base.is_absolute() {
        return None;
    }
    let path_parts: Vec<Component> = path.components().collect();
    let base_parts: Vec<Component> = base.components().collect();
    let common = path_parts
        .iter()
        .zip(&base_parts)
        .take_while(|(a, b)| a == b)
        .count();
    // A `..` left in the base cannot be undone lexically.
    if base_parts[common..].contains(&Component::ParentDir) {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in common..base_parts.len() {
        out.push("..");
    }
    for part in &path_parts[common..] {
        out.push(part.as_os_str());
    }
    Some(out)
}

/// Remove `.` and resolve `..` without touching the file system (the file may be a symlink
/// farm the build system made; the database's spelling is what the compiler saw).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_commands_relative_to_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("compile_commands.json");
        let root = dir.path().display().to_string();
        let json = serde_json::json!([
            {"directory": format!("{root}/build"), "file": "../src/a.c",
             "arguments": ["cc", "-O1", "-c", "../src/a.c", "-o", "a.o"]},
            {"directory": root.clone(), "file": "src/b.c",
             "command": "cc -DNAME='\"x y\"' -c src/b.c -o b.o"},
            {"directory": root.clone(), "file": "src/a.c",
             "command": "cc -DTEST -c src/a.c -o a-test.o"},
        ]);
        std::fs::write(&db, json.to_string()).expect("write");
        let db = CompileDatabase::load(&db).expect("loads");
        let a = db.entries_for(&dir.path().join("src/a.c"));
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].directory, dir.path().join("build"));
        let b = db.entries_for(&dir.path().join("src/./b.c"));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].arguments[1], "-DNAME=\"x y\"");
        assert!(db.entries_for(&dir.path().join("src/c.c")).is_empty());
    }

    #[test]
    fn relative_paths() {
        let rel = |p: &str, b: &str| relative_path(Path::new(p), Path::new(b));
        assert_eq!(rel("/w/src/a.c", "/w"), Some(PathBuf::from("src/a.c")));
        assert_eq!(
            rel("/w/src/a.c", "/w/build"),
            Some(PathBuf::from("../src/a.c"))
        );
        assert_eq!(rel("/w/./src/../a.c", "/w/"), Some(PathBuf::from("a.c")));
        assert_eq!(rel("src/a.c", "."), Some(PathBuf::from("src/a.c")));
        assert_eq!(rel("/w/a.c", "."), None);
        assert_eq!(rel("a.c", "../x"), None);
    }

    #[test]
    fn broken_database_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("compile_commands.json");
        std::fs::write(&db, "[{\"directory\": 1}]").expect("write");
        let err = CompileDatabase::load(&db).expect_err("rejected");
        assert!(err.contains("compile_commands.json"), "{err}");
    }
}
