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
    /// What the file was when it was read, to tell whether it changed since.
    stamp: Option<Stamp>,
    /// The prefixes [`CompileDatabase::remap`] applied (a changed `path_map` reads it again).
    pub remapped: Vec<(PathBuf, PathBuf)>,
}

/// A file's identity and size and modification time, and a hash of the text read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: std::time::SystemTime,
    /// When the file was read: a file modified shortly before that may have been modified
    /// again within the same timestamp tick (the kernel's file clock is coarse, a few ms).
    read_at: std::time::SystemTime,
    hash: u64,
}

/// Within this much of a read, an unchanged size and time do not prove the content unchanged.
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

impl Stamp {
    fn of(
        metadata: &std::fs::Metadata,
        read_at: std::time::SystemTime,
        text: &str,
    ) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        Some(Stamp {
            inode: metadata.ino(),
            len: metadata.len(),
            modified: metadata.modified().ok()?,
            read_at,
            hash: text_hash(text),
        })
    }
}

impl CompileDatabase {
    /// Read and index a database. Errors name the file and say what is wrong.
    pub fn load(path: &Path) -> Result<CompileDatabase, String> {
        // Metadata before the text: a write after the stat makes the stamp look old, and
        // the next look reads the file again, never the other way round.
        let metadata = std::fs::metadata(path).ok();
        let read_at = std::time::SystemTime::now();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let stamp = metadata.and_then(|m| Stamp::of(&m, read_at, &text));
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
            stamp,
            remapped: Vec::new(),
        })
    }

    /// Whether the file on disk is still the one read: same inode, size and modification
    /// time, and, when it was modified within [`RACY_WINDOW`] of the read, the same text.
    /// A stat per call, and a read only in that window: cheap enough to ask on every save.
    pub fn is_current(&mut self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(stamp) = &mut self.stamp else {
            return false;
        };
        let Ok(metadata) = std::fs::metadata(&self.path) else {
            return false;
        };
        let same = metadata.ino() == stamp.inode
            && metadata.len() == stamp.len
            && metadata.modified().ok() == Some(stamp.modified);
        if !same {
            return false;
        }
        let racy = stamp
            .read_at
            .duration_since(stamp.modified)
            .map_or(true, |age| age < RACY_WINDOW);
        if !racy {
            return true;
        }
        let read_at = std::time::SystemTime::now();
        let same_text =
            std::fs::read_to_string(&self.path).is_ok_and(|text| text_hash(&text) == stamp.hash);
        if same_text {
            // The text read now is the one indexed: once this read is outside the window,
            // the size and time alone decide again (no read per save for a big database).
            stamp.read_at = read_at;
        }
        same_text
    }

    /// The files whose entries differ between `self` and `newer` (added, removed or with
    /// other commands), in path order.
    pub fn changed_files(&self, newer: &CompileDatabase) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .by_file
            .keys()
            .chain(newer.by_file.keys())
            .filter(|file| self.by_file.get(*file) != newer.by_file.get(*file))
            .cloned()
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// Every entry for `file` (absolute).
    pub fn entries_for(&self, file: &Path) -> &[CompileEntry] {
        self.by_file
            .get(&normalize(file))
            .map_or(&[], |v| v.as_slice())
    }

    /// The database's spelling of `file` (absolute): `file` itself when the database has
    /// entries under that path, else the path of a file of the database that is the same
    /// file on disk (a workspace or folder reached through a symlink). `None`: not in it.
    pub fn spelling_of(&self, file: &Path) -> Option<PathBuf> {
        let file = normalize(file);
        if self.by_file.contains_key(&file) {
            return Some(file);
        }
        let identity = file_identity(&file)?;
        self.by_file
            .keys()
            .find(|k| file_identity(k) == Some(identity))
            .cloned()
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

impl CompileDatabase {
    /// Rewrite every entry's paths with `prefixes` (build-time absolute prefix -> workspace
    /// prefix, longest first: `[compile] path_map`), so a database written for a tree that
    /// was moved or copied since finds the saved file and compiles it in the new tree.
    /// Rewritten: `file`, `directory`, `output`, and in the arguments an absolute path that
    /// is the whole argument, follows a path flag glued (`-I/old/inc`) or follows `=`
    /// (`-ffile-prefix-map=/old=.`, so the new objects' DWARF reads as the old build's). Only
    /// whole leading path components match: `/old` never rewrites `/older`.
    pub fn remap(&mut self, prefixes: &[(PathBuf, PathBuf)]) {
        self.remapped = prefixes.to_vec();
        if prefixes.is_empty() {
            return;
        }
        let by_file = std::mem::take(&mut self.by_file);
        for (_, entries) in by_file {
            for mut entry in entries {
                entry.directory = remap_path(&entry.directory, prefixes);
                entry.file = remap_path(&entry.file, prefixes);
                entry.output = entry.output.map(|o| remap_path(&o, prefixes));
                for argument in entry.arguments.iter_mut().skip(1) {
                    *argument = remap_argument(argument, prefixes);
                }
                self.by_file
                    .entry(entry.file.clone())
                    .or_default()
                    .push(entry);
            }
        }
    }

    /// The deepest folder holding every file of the database, when there are files.
    pub fn common_folder(&self) -> Option<PathBuf> {
        let mut files = self.by_file.keys();
        let mut common = files.next()?.parent()?.to_path_buf();
        for file in files {
            while !file.starts_with(&common) {
                if !common.pop() {
                    return None;
                }
            }
        }
        Some(common)
    }
}

impl CompileEntry {
    /// Whether this command builds its file with debug information, so that a compile unit
    /// of an image with DWARF names the file if it is linked in. The last switch decides:
    /// `-g`, `-g1`..`-g3`, `-ggdb[1-3]`, `-gdwarf[-N]`, `-glldb`, `-gsce`, clang's
    /// `-gline-tables-only`/`-gmlt` turn it on, `-g0`/`-ggdb0` off. Options that only shape
    /// debug information (`-gsplit-dwarf`, `-gz`, `-gno-…`, `-gcolumn-info`) and formats
    /// without compile units (`-gbtf`, `-gctf`) leave it as it was: a file wrongly counted
    /// without -g is refused as unsure, never taken for another's unit.
    pub fn builds_debug_info(&self) -> bool {
        self.arguments
            .iter()
            .skip(1)
            .rev()
            .find_map(|a| debug_switch(a))
            .unwrap_or(false)
    }

    /// The folder that relative paths in this entry's DWARF are relative to. A build with
    /// `-ffile-prefix-map=$PWD=.` (Debian's default) or `-fdebug-prefix-map` writes the
    /// compile folder rewritten, e.g. `./src` for `<tree>/src`: its paths (`./src/lvm.c`)
    /// are relative to `<tree>`, the folder the map's target `.` stands for, not to the
    /// compile folder. Found by rewriting `directory` with the entry's own maps (the last
    /// matching one wins, as in GCC) and removing the relative result from its end; the
    /// compile folder when no map makes it relative.
    pub fn dwarf_base(&self) -> PathBuf {
        let mut spelled: Option<PathBuf> = None;
        for argument in &self.arguments {
            let Some(map) = argument
                .strip_prefix("-ffile-prefix-map=")
                .or_else(|| argument.strip_prefix("-fdebug-prefix-map="))
            else {
                continue;
            };
            let Some((old, new)) = map.split_once('=') else {
                continue;
            };
            if let Ok(rest) = self.directory.strip_prefix(normalize(Path::new(old))) {
                spelled = Some(normalize(&Path::new(new).join(rest)));
            }
        }
        let Some(spelled) = spelled.filter(|s| s.is_relative()) else {
            return self.directory.clone();
        };
        let mut base = self.directory.clone();
        let parts: Vec<Component> = spelled.components().collect();
        let tail: Vec<Component> = self
            .directory
            .components()
            .rev()
            .take(parts.len())
            .collect();
        if parts.contains(&Component::ParentDir)
            || tail.len() != parts.len()
            || !tail.iter().rev().eq(parts.iter())
        {
            return self.directory.clone();
        }
        for _ in &parts {
            base.pop();
        }
        base
    }
}

/// The workspace file a path from the DWARF of an object compiled by `entry` names: an
/// absolute path as it is, a relative one (a prefix-mapped build) against
/// [`CompileEntry::dwarf_base`], or against `root` when the file has no entry. The one place
/// every diagnostic placed from debug info goes through.
pub fn workspace_file(path: &Path, entry: Option<&CompileEntry>, root: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let base = entry.map_or_else(|| root.to_path_buf(), CompileEntry::dwarf_base);
    normalize(&base.join(path))
}

/// `path` with its longest matching prefix replaced (only absolute prefixes apply).
fn remap_path(path: &Path, prefixes: &[(PathBuf, PathBuf)]) -> PathBuf {
    prefixes
        .iter()
        .filter(|(from, _)| from.is_absolute())
        .find_map(|(from, to)| Some(normalize(&to.join(path.strip_prefix(from).ok()?))))
        .unwrap_or_else(|| path.to_path_buf())
}

/// One compiler argument with an absolute path in it rewritten (see [`CompileDatabase::remap`]).
fn remap_argument(argument: &str, prefixes: &[(PathBuf, PathBuf)]) -> String {
    const GLUED: [&str; 8] = [
        "-I",
        "-isystem",
        "-iquote",
        "-idirafter",
        "-include",
        "-o",
        "-MF",
        "-L",
    ];
    let rewrite = |text: &str| -> Option<String> {
        let path = Path::new(text);
        if !path.is_absolute() {
            return None;
        }
        let mapped = remap_path(path, prefixes);
        (mapped != path).then(|| mapped.to_string_lossy().into_owned())
    };
    if let Some(mapped) = rewrite(argument) {
        return mapped;
    }
    for flag in GLUED {
        if let Some(rest) = argument.strip_prefix(flag) {
            if let Some(mapped) = rewrite(rest) {
                return format!("{flag}{mapped}");
            }
        }
    }
    if argument.starts_with('-') {
        // `-ffile-prefix-map=OLD=NEW`: each `=`-separated part that is a path.
        let parts: Vec<String> = argument
            .split('=')
            .map(|part| rewrite(part).unwrap_or_else(|| part.to_string()))
            .collect();
        return parts.join("=");
    }
    argument.to_string()
}

/// A file's identity on disk, device and inode with symlinks followed: paths are spelled
/// many ways (a symlinked include folder `inc -> zlib`, a workspace reached through a
/// link, a hard link), the file they name is one. `None` when it cannot be read.
pub fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
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

/// Whether `argument` turns debug information on (`Some(true)`) or off, if it is a switch
/// of it at all (see [`CompileEntry::builds_debug_info`]).
fn debug_switch(argument: &str) -> Option<bool> {
    let rest = argument.strip_prefix("-g")?;
    let level = |digits: &str| match digits {
        "" | "1" | "2" | "3" => Some(true),
        "0" => Some(false),
        _ => None,
    };
    match rest {
        "dwarf" | "lldb" | "sce" | "line-tables-only" | "mlt" => Some(true),
        _ => match (rest.strip_prefix("gdb"), rest.strip_prefix("dwarf-")) {
            (Some(digits), _) => level(digits),
            (_, Some(version)) => version.parse::<u8>().ok().map(|_| true),
            _ => level(rest),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_info_is_the_last_switch_of_it() {
        for (arguments, debug) in [
            (&["cc", "-O0", "-c", "a.c"][..], false),
            (&["cc", "-g", "-c", "a.c"], true),
            (&["cc", "-g3", "-c", "a.c"], true),
            (&["cc", "-ggdb", "-c", "a.c"], true),
            (&["cc", "-gdwarf-4", "-c", "a.c"], true),
            (&["clang", "-gline-tables-only", "-c", "a.c"], true),
            (&["cc", "-g", "-O2", "-g0", "-c", "a.c"], false),
            (&["cc", "-g0", "-g2", "-c", "a.c"], true),
            (&["cc", "-ggdb3", "-ggdb0", "-c", "a.c"], false),
            // Shaping options alone turn nothing on, nor off after -g.
            (&["cc", "-gsplit-dwarf", "-gz", "-c", "a.c"], false),
            (&["cc", "-g", "-gno-column-info", "-c", "a.c"], true),
            // The compiler's own name is no switch.
            (&["-g", "-c", "a.c"], false),
        ] {
            let entry = CompileEntry {
                directory: "/w".into(),
                file: "/w/a.c".into(),
                arguments: arguments.iter().map(|a| a.to_string()).collect(),
                output: None,
            };
            assert_eq!(entry.builds_debug_info(), debug, "{arguments:?}");
        }
    }

    #[test]
    fn dwarf_base_undoes_the_entry_prefix_map() {
        // (directory, arguments, the folder relative DWARF paths are relative to)
        for (directory, arguments, base) in [
            (
                "/w/lua/src",
                &["cc", "-ffile-prefix-map=/w/lua=.", "-c", "lvm.c"][..],
                "/w/lua",
            ),
            (
                "/w/src",
                &["cc", "-fdebug-prefix-map=/w/src=.", "-c", "a.c"],
                "/w/src",
            ),
            (
                "/w/src",
                &["cc", "-ffile-prefix-map=/w=/build", "-c", "a.c"],
                "/w/src",
            ),
            ("/w/src", &["cc", "-c", "a.c"], "/w/src"),
            // The last matching map wins, as in GCC.
            (
                "/w/a/b",
                &[
                    "cc",
                    "-ffile-prefix-map=/w/a/b=x",
                    "-ffile-prefix-map=/w=.",
                    "-c",
                    "a.c",
                ],
                "/w",
            ),
        ] {
            let entry = CompileEntry {
                directory: directory.into(),
                file: Path::new(directory).join("x.c"),
                arguments: arguments.iter().map(|a| a.to_string()).collect(),
                output: None,
            };
            assert_eq!(
                entry.dwarf_base(),
                Path::new(base),
                "{directory} {arguments:?}"
            );
        }
    }

    #[test]
    fn remapped_arguments() {
        let prefixes = [(PathBuf::from("/old/ws"), PathBuf::from("/new/ws"))];
        for (argument, remapped) in [
            ("/old/ws/main.c", "/new/ws/main.c"),
            ("-I/old/ws/inc", "-I/new/ws/inc"),
            ("-isystem/old/ws/sys", "-isystem/new/ws/sys"),
            ("-ffile-prefix-map=/old/ws=.", "-ffile-prefix-map=/new/ws=."),
            ("--sysroot=/old/ws/root", "--sysroot=/new/ws/root"),
            // Whole components only, and nothing else touched.
            ("/old/wsx/main.c", "/old/wsx/main.c"),
            ("-I/usr/include", "-I/usr/include"),
            ("-DPATH=\"/old/ws\"", "-DPATH=\"/old/ws\""),
            ("-O2", "-O2"),
        ] {
            assert_eq!(remap_argument(argument, &prefixes), remapped, "{argument}");
        }
    }

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
    fn a_file_saved_through_a_symlinked_folder_has_the_database_spelling() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("src/a.c"), "int a;\n").expect("write a.c");
        std::fs::write(dir.path().join("src/b.c"), "int b;\n").expect("write b.c");
        std::os::unix::fs::symlink(dir.path().join("src"), dir.path().join("link"))
            .expect("symlink");
        let root = dir.path().display().to_string();
        let json = serde_json::json!([
            {"directory": root.clone(), "file": "src/a.c", "command": "cc -c src/a.c"},
        ]);
        let db = dir.path().join("compile_commands.json");
        std::fs::write(&db, json.to_string()).expect("write");
        let db = CompileDatabase::load(&db).expect("loads");
        let a = dir.path().join("src/a.c");
        // Rows: the path saved, the database's spelling of it.
        let rows = [
            (a.clone(), Some(a.clone())),
            (dir.path().join("link/a.c"), Some(a.clone())),
            (dir.path().join("link/../src/a.c"), Some(a.clone())),
            (dir.path().join("link/b.c"), None),
            (dir.path().join("link/missing.c"), None),
        ];
        for (saved, spelled) in rows {
            assert_eq!(db.spelling_of(&saved), spelled, "{}", saved.display());
        }
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
    fn a_rewritten_database_is_not_current_and_names_its_changed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("compile_commands.json");
        let root = dir.path().display().to_string();
        let write = |value: &str| {
            let json = serde_json::json!([
                {"directory": root.clone(), "file": "a.c",
                 "command": format!("cc -DVALUE={value} -c a.c")},
                {"directory": root.clone(), "file": "b.c", "command": "cc -c b.c"},
            ]);
            std::fs::write(&path, json.to_string()).expect("write");
        };
        write("1");
        let mut first = CompileDatabase::load(&path).expect("loads");
        assert!(first.is_current());
        // Same length, very likely the same timestamp tick: the text tells.
        write("2");
        assert!(!first.is_current());
        let mut second = CompileDatabase::load(&path).expect("loads again");
        assert!(second.is_current());
        assert_eq!(second.changed_files(&first), [dir.path().join("a.c")]);
        assert!(second.changed_files(&second).is_empty());
        std::fs::remove_file(&path).expect("remove");
        assert!(!second.is_current());
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
