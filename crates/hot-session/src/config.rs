//! `hot-lsp.toml` and the client's configuration, merged key by key.
//!
//! The file is validated on its own first, so that a bad key is reported at its line in
//! `hot-lsp.toml`; then the client's explicit keys (JSON of the same shape) are laid over it.
//! A key the client leaves out keeps the file's value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const CONFIG_FILE: &str = "hot-lsp.toml";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMode {
    #[default]
    Auto,
    Manual,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgramConfig {
    /// The executable, relative to the workspace root.
    pub path: Option<PathBuf>,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// A shell command run in the root before launching.
    pub build: Option<String>,
    pub launch: LaunchMode,
    pub disable_aslr: bool,
}

impl Default for ProgramConfig {
    fn default() -> Self {
        ProgramConfig {
            path: None,
            args: Vec::new(),
            cwd: PathBuf::from("."),
            env: BTreeMap::new(),
            build: None,
            launch: LaunchMode::Auto,
            disable_aslr: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompileConfig {
    /// `compile_commands.json`, relative to the root; default: the root, then `build/`.
    pub database: Option<PathBuf>,
    /// Fallback command with `{file}` and `{output}` placeholders.
    pub command: Option<String>,
    /// Build-time path prefix -> workspace path prefix, for the DWARF paths of a build made
    /// elsewhere (a container, `-ffile-prefix-map`, Bazel's `/proc/self/cwd`). A relative
    /// workspace prefix is relative to the workspace root.
    pub path_map: BTreeMap<PathPrefix, PathPrefix>,
    /// Compile an edited buffer's text (sent by the editor as it changes) in the background
    /// once typing pauses, and link it against the running image without writing anything:
    /// what the save would be refused for shows while typing, and a save of that very text
    /// swaps without compiling.
    pub ahead: bool,
    /// How long typing must pause before a compile ahead starts, in milliseconds.
    pub ahead_delay_ms: u64,
    /// How many compiles run at once: a header's includers, and the background baselines
    /// (at a lowered priority). Default: one per core, at most 16.
    pub jobs: Option<std::num::NonZeroUsize>,
}

/// The default pause before a compile ahead: a little longer than a burst of keystrokes.
pub const DEFAULT_AHEAD_DELAY_MS: u64 = 300;

impl Default for CompileConfig {
    fn default() -> Self {
        CompileConfig {
            database: None,
            command: None,
            path_map: BTreeMap::new(),
            ahead: true,
            ahead_delay_ms: DEFAULT_AHEAD_DELAY_MS,
            jobs: None,
        }
    }
}

/// One side of a `path_map` entry: a non-empty path without NUL characters. Checked while
/// deserialising, so a bad one is reported at its own line in `hot-lsp.toml`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PathPrefix(pub PathBuf);

impl<'de> Deserialize<'de> for PathPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() {
            return Err(serde::de::Error::custom(
                "a path_map prefix must not be empty (use \".\" for the workspace root)",
            ));
        }
        if text.contains('\0') {
            return Err(serde::de::Error::custom(format!(
                "the path_map prefix {text:?} contains a NUL character"
            )));
        }
        Ok(PathPrefix(PathBuf::from(text)))
    }
}

/// The effective configuration of a workspace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub program: ProgramConfig,
    pub compile: CompileConfig,
}

/// A configuration problem, located in `hot-lsp.toml` where possible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// `hot-lsp.toml`, or `None` when the client's configuration is at fault.
    pub file: Option<PathBuf>,
    /// 1-based line and byte column in the file.
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// What loading found.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    /// The workspace opted in: it has a `hot-lsp.toml` or the client configured it.
    pub opted_in: bool,
    /// The file exists (even if invalid).
    pub has_file: bool,
}

/// Read `root/hot-lsp.toml` and lay `client` over it.
///
/// Every problem of the file is returned, each at its own line (a user fixing the file
/// should not find the next one only after the next save); the client's configuration, which
/// has no lines, fails as a whole.
pub fn load(root: &Path, client: Option<&serde_json::Value>) -> Result<Loaded, Vec<ConfigError>> {
    let path = root.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(vec![ConfigError {
                file: Some(path),
                line: 1,
                column: 1,
                message: format!("cannot read {CONFIG_FILE}: {e}"),
            }])
        }
    };
    let client = client.filter(|c| c.as_object().is_some_and(|o| !o.is_empty()));
    let has_file = text.is_some();
    let mut merged = serde_json::Value::Object(Default::default());
    if let Some(text) = &text {
        merged = parse_file(&path, text)?;
    }
    if let Some(client) = client {
        merge(&mut merged, client);
    }
    let config: Config = serde_json::from_value(merged).map_err(|e| {
        vec![ConfigError {
            file: None,
            line: 1,
            column: 1,
            message: format!("invalid hot-lsp configuration from the client: {e}"),
        }]
    })?;
    Ok(Loaded {
        config,
        opted_in: has_file || client.is_some(),
        has_file,
    })
}

/// Validate the file against the typed schema (so errors carry the key's span) and return
/// it as JSON for merging.
///
/// serde stops at the first bad key, so the whole file's error (exact to the character) is
/// followed by a check of every other key on its own, each reported at its key's line.
fn parse_file(path: &Path, text: &str) -> Result<serde_json::Value, Vec<ConfigError>> {
    let located = |span: Option<std::ops::Range<usize>>, message: String| {
        let (line, column) = span.map_or((1, 1), |s| line_column(text, s.start));
        ConfigError {
            file: Some(path.to_owned()),
            line,
            column,
            message,
        }
    };
    let (spanned, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(syntax
            .iter()
            .map(|e| located(e.span(), format!("{CONFIG_FILE}: {}", e.message())))
            .collect());
    }
    let table: toml::Table =
        toml::from_str(text).map_err(|e| vec![located(e.span(), e.message().to_string())])?;
    if let Err(first) = toml::from_str::<Config>(text) {
        // Each key checked alone: (its name, its span, its problem).
        let mut bad_sections: Vec<String> = Vec::new();
        let failing: Vec<(String, std::ops::Range<usize>, String)> = key_spans(spanned.get_ref())
            .into_iter()
            .filter_map(|(keys, span)| {
                if bad_sections.contains(&keys[0]) {
                    return None;
                }
                let problem = only_key(&table, &keys)?.try_into::<Config>().err()?;
                if keys.len() == 1 {
                    bad_sections.push(keys[0].clone());
                }
                let name = match keys.as_slice() {
                    [section, key] => format!("[{section}] {key}"),
                    _ => keys.join("."),
                };
                Some((name, span, problem.message().to_string()))
            })
            .collect();
        // The whole-file error is exact to the character; it is one of the keys' problems
        // (the one whose span holds it, else the first with its text), reported once.
        let first_at = first.span().map(|s| s.start);
        let same = |(_, _, problem): &&(String, std::ops::Range<usize>, String)| {
            problem == first.message()
        };
        let first_key = failing
            .iter()
            .filter(same)
            .find(|(_, span, _)| first_at.is_some_and(|at| span.contains(&at)))
            .or_else(|| failing.iter().find(same))
            .map(|(name, span, _)| (name.clone(), span.clone()));
        let mut errors = vec![located(
            first.span(),
            match &first_key {
                Some((name, _)) => format!("{CONFIG_FILE}: `{name}`: {}", first.message()),
                None => format!("{CONFIG_FILE}: {}", first.message()),
            },
        )];
        for (name, span, problem) in &failing {
            if first_key.as_ref().is_some_and(|(_, s)| s == span) {
                continue;
            }
            errors.push(located(
                Some(span.clone()),
                format!("{CONFIG_FILE}: `{name}`: {problem}"),
            ));
        }
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(errors);
    }
    serde_json::to_value(table).map_err(|e| vec![located(None, e.to_string())])
}

/// Every key the schema checks on its own, with the span from the key to the end of its
/// value: each top-level key (a section's name alone), then each `[section] key`.
fn key_spans(table: &toml::de::DeTable<'_>) -> Vec<(Vec<String>, std::ops::Range<usize>)> {
    let mut keys = Vec::new();
    for (section, value) in table {
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => {
                // The section's own name first: a misspelt one is one problem, not one per key.
                keys.push((vec![section.get_ref().to_string()], section.span()));
                for (key, value) in inner {
                    keys.push((
                        vec![section.get_ref().to_string(), key.get_ref().to_string()],
                        key.span().start..value.span().end.max(key.span().end),
                    ));
                }
            }
            _ => keys.push((
                vec![section.get_ref().to_string()],
                section.span().start..value.span().end.max(section.span().end),
            )),
        }
    }
    keys
}

/// A table holding only `keys`' value of `table` (`[section] key`, or a top-level key).
fn only_key(table: &toml::Table, keys: &[String]) -> Option<toml::Table> {
    let mut alone = toml::Table::new();
    match keys {
        [top] => {
            let value = match table.get(top)? {
                toml::Value::Table(_) => toml::Value::Table(toml::Table::new()),
                value => value.clone(),
            };
            alone.insert(top.clone(), value);
        }
        [section, key] => {
            let value = table.get(section)?.as_table()?.get(key)?.clone();
            let mut inner = toml::Table::new();
            inner.insert(key.clone(), value);
            alone.insert(section.clone(), toml::Value::Table(inner));
        }
        _ => return None,
    }
    Some(alone)
}

/// 1-based line and byte column of a byte offset.
fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line as u32, (offset - line_start) as u32 + 1)
}

/// Lay `over` onto `base`, object key by object key; other values replace.
fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                if value.is_null() {
                    continue;
                }
                match base.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_error(toml_text: &str, line: u32, needle: &str) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CONFIG_FILE), toml_text).expect("write");
        let errors = load(dir.path(), None).expect_err("config must be rejected");
        let err = &errors[0];
        assert_eq!(err.line, line, "{errors:?}");
        assert!(err.message.contains(needle), "{errors:?}");
    }

    /// Every bad key of the file, at its line, in line order: (line, text in the message).
    fn check_errors(toml_text: &str, expected: &[(u32, &str)]) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CONFIG_FILE), toml_text).expect("write");
        let errors = load(dir.path(), None).expect_err("config must be rejected");
        let found: Vec<u32> = errors.iter().map(|e| e.line).collect();
        let lines: Vec<u32> = expected.iter().map(|&(line, _)| line).collect();
        assert_eq!(found, lines, "{errors:?}");
        for (err, (_, needle)) in errors.iter().zip(expected) {
            assert!(err.message.contains(needle), "{needle:?} in {errors:?}");
        }
    }

    #[test]
    fn every_bad_key_is_reported() {
        check_errors(
            "[program]\npath = \"build/driver\"\nargs = \"oops\"\npth = 3\n[compile]\nahead_delay_ms = \"fast\"\n",
            &[(3, "invalid type"), (4, "`[program] pth`: unknown field"), (6, "`[compile] ahead_delay_ms`")],
        );
        check_errors(
            "[progam]\npath = \"a\"\n[compile]\njobs = 0\n",
            &[(1, "progam"), (4, "nonzero")],
        );
    }

    #[test]
    fn bad_keys_are_reported_at_their_line() {
        check_error("[program]\npath = \"a\"\nargs = 5\n", 3, "invalid type");
        check_error("[program]\npath = \"a\"\n\nlanch = \"auto\"\n", 4, "lanch");
        check_error("[program]\nlaunch = \"sometimes\"\n", 2, "sometimes");
        check_error("[program\n", 1, "");
    }

    #[test]
    fn client_keys_win_key_by_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[program]\npath = \"build/app\"\nargs = [\"-v\"]\n[compile]\ncommand = \"cc -c {file} -o {output}\"\n",
        )
        .expect("write");
        let client = serde_json::json!({"program": {"args": ["--fast"], "disable_aslr": true}});
        let loaded = load(dir.path(), Some(&client)).expect("valid");
        assert!(loaded.opted_in);
        assert_eq!(loaded.config.program.path, Some(PathBuf::from("build/app")));
        assert_eq!(loaded.config.program.args, vec!["--fast".to_string()]);
        assert!(loaded.config.program.disable_aslr);
        assert_eq!(
            loaded.config.compile.command.as_deref(),
            Some("cc -c {file} -o {output}")
        );
    }

    #[test]
    fn path_map_from_the_file_and_the_client() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[compile]\npath_map = { \"/build/src\" = \".\", \"/proc/self/cwd\" = \"src\" }\n",
        )
        .expect("write");
        let prefix = |p: &str| PathPrefix(PathBuf::from(p));
        let loaded = load(dir.path(), None).expect("valid");
        assert_eq!(
            loaded.config.compile.path_map,
            BTreeMap::from([
                (prefix("/build/src"), prefix(".")),
                (prefix("/proc/self/cwd"), prefix("src")),
            ])
        );
        // The client's entries are laid over the file's, entry by entry.
        let client =
            serde_json::json!({"compile": {"path_map": {"/proc/self/cwd": "lib", "/ci": "."}}});
        let loaded = load(dir.path(), Some(&client)).expect("valid");
        assert_eq!(
            loaded.config.compile.path_map,
            BTreeMap::from([
                (prefix("/build/src"), prefix(".")),
                (prefix("/ci"), prefix(".")),
                (prefix("/proc/self/cwd"), prefix("lib")),
            ])
        );
        // The client alone, in initializationOptions' shape.
        let empty = tempfile::tempdir().expect("tempdir");
        let client = serde_json::json!({"compile": {"path_map": {"/src": "."}}});
        let loaded = load(empty.path(), Some(&client)).expect("valid");
        assert!(loaded.opted_in);
        assert_eq!(
            loaded.config.compile.path_map,
            BTreeMap::from([(prefix("/src"), prefix("."))])
        );
        let bad = serde_json::json!({"compile": {"path_map": {"/src": ""}}});
        let errors = load(empty.path(), Some(&bad)).expect_err("rejected");
        assert!(
            errors[0].message.contains("must not be empty"),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_path_map_values_are_reported_at_their_line() {
        check_error(
            "[compile]\ncommand = \"cc\"\npath_map = { \"/build\" = 3 }\n",
            3,
            "invalid type",
        );
        check_error(
            "[compile]\n\npath_map = { \"/build\" = \"\" }\n",
            3,
            "must not be empty",
        );
        check_error("[compile]\npath_map = \"/build=.\"\n", 2, "invalid type");
        check_error(
            "[compile.path_map]\n\"/a\" = \".\"\n\"\" = \"src\"\n",
            3,
            "must not be empty",
        );
    }

    #[test]
    fn compile_ahead_is_on_by_default_and_configurable() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CONFIG_FILE), "[program]\npath = \"app\"\n").expect("write");
        let loaded = load(dir.path(), None).expect("valid");
        assert!(loaded.config.compile.ahead);
        assert_eq!(loaded.config.compile.ahead_delay_ms, DEFAULT_AHEAD_DELAY_MS);
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[compile]\nahead = false\nahead_delay_ms = 50\n",
        )
        .expect("write");
        let loaded = load(dir.path(), None).expect("valid");
        assert!(!loaded.config.compile.ahead);
        assert_eq!(loaded.config.compile.ahead_delay_ms, 50);
        let client = serde_json::json!({"compile": {"ahead": true}});
        let loaded = load(dir.path(), Some(&client)).expect("valid");
        assert!(loaded.config.compile.ahead);
        assert_eq!(loaded.config.compile.ahead_delay_ms, 50);
        check_error("[compile]\nahead = \"soon\"\n", 2, "invalid type");
        check_error("[compile]\nahead_delay_ms = -1\n", 2, "invalid value");
    }

    /// `[compile] jobs`: unset by default (one per core), a positive count, never 0.
    #[test]
    fn compile_jobs_are_a_positive_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CONFIG_FILE), "[program]\npath = \"app\"\n").expect("write");
        let loaded = load(dir.path(), None).expect("valid");
        assert_eq!(loaded.config.compile.jobs, None);
        std::fs::write(dir.path().join(CONFIG_FILE), "[compile]\njobs = 2\n").expect("write");
        let loaded = load(dir.path(), None).expect("valid");
        assert_eq!(loaded.config.compile.jobs.map(|j| j.get()), Some(2));
        let client = serde_json::json!({"compile": {"jobs": 3}});
        let loaded = load(dir.path(), Some(&client)).expect("valid");
        assert_eq!(loaded.config.compile.jobs.map(|j| j.get()), Some(3));
        check_error("[compile]\njobs = 0\n", 2, "nonzero");
        check_error("[compile]\njobs = \"many\"\n", 2, "invalid type");
    }

    #[test]
    fn no_file_and_no_client_is_not_opted_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loaded = load(dir.path(), None).expect("valid");
        assert!(!loaded.opted_in);
        let loaded = load(dir.path(), Some(&serde_json::json!({}))).expect("valid");
        assert!(!loaded.opted_in);
    }
}
