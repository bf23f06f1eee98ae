//! Compiling one translation unit into a patch object, and compiler output into diagnostics.
//!
//! The project's own command is reused with the changes DESIGN.md 4 ("Knowing what changed")
//! lists: dependency outputs, LTO, `-save-temps` and split DWARF are dropped (they would write
//! next to the user's build or produce no usable object), and the patch flags are added:
//! one section per function and variable (so each is an atom), indirect access to extern data
//! (so a new reference to `stderr` goes through a GOT slot instead of a copy relocation the
//! executable does not have), and `-g` last (line tables for diagnostics; `-g` never changes
//! generated code).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use crate::compile_db::{normalize, CompileEntry};
use crate::{Diagnostic, Severity};

/// The compiler family, which decides flag spellings and the diagnostics format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// gcc, with its major version.
    Gcc(u32),
    Clang,
    Unknown,
}

/// One compile to run.
#[derive(Clone, Debug)]
pub struct CompileJob {
    pub argv: Vec<String>,
    pub directory: PathBuf,
    pub source: PathBuf,
    pub output: PathBuf,
    pub family: Family,
}

/// What a compile produced.
#[derive(Clone, Debug)]
pub struct CompileOutcome {
    pub success: bool,
    /// Diagnostics of every file the compiler mentioned (the source and its headers).
    pub diagnostics: Vec<Diagnostic>,
    /// Raw compiler output when it could not be parsed into diagnostics.
    pub unparsed: String,
    pub micros: u64,
}

/// Why a compile could not even run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("the compiler `{compiler}` is not installed (needed to compile {source_file})")]
    CompilerMissing {
        compiler: String,
        source_file: PathBuf,
    },
    #[error("cannot run `{compiler}` for {source_file}: {message}")]
    Spawn {
        compiler: String,
        source_file: PathBuf,
        message: String,
    },
}

impl CompileError {
    /// The stable code the user sees with the message: the file did not compile.
    pub fn code(&self) -> &'static str {
        match self {
            CompileError::CompilerMissing { .. } | CompileError::Spawn { .. } => "compile-error",
        }
    }
}

/// Identify a compiler by its `--version` banner, once per compiler path.
pub fn family_of(compiler: &str, directory: &Path) -> Family {
    static CACHE: Mutex<Option<HashMap<String, Family>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(family) = cache.get_or_insert_with(HashMap::new).get(compiler) {
        return *family;
    }
    let family = Command::new(compiler)
        .arg("--version")
        .current_dir(directory)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|out| parse_family(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or(Family::Unknown);
    cache
        .get_or_insert_with(HashMap::new)
        .insert(compiler.to_owned(), family);
    family
}

fn parse_family(banner: &str) -> Family {
    if banner.contains("clang") {
        return Family::Clang;
    }
    if banner.contains("Free Software Foundation") {
        // "gcc (Debian 12.2.0-14) 12.2.0": the version is the last word of the first line.
        let major = banner
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        return Family::Gcc(major);
    }
    Family::Unknown
}

impl CompileJob {
    /// The command without the private output path: two compiles with equal flags produce
    /// comparable objects.
    pub fn flags(&self) -> &[String] {
        let end = self
            .argv
            .iter()
            .rposition(|a| a == "-o")
            .unwrap_or(self.argv.len());
        &self.argv[..end]
    }

    /// [`CompileJob::flags`] without its trailing `-c <file>`, for a run of the same command
    /// on another input (a snapshot's copy) or in another mode (`-M`).
    pub fn flags_without_input(&self) -> Vec<String> {
        let flags = self.flags();
        flags[..flags.len().saturating_sub(2)].to_vec()
    }
}

/// The `-flto` option of a compile command that makes bitcode only (the last of `-flto*` and
/// `-fno-lto` wins), which only a link-time-optimizing link can use: its file's code in the
/// program came out of LTO. `None` with `-ffat-lto-objects` (the object has real code too,
/// and whether the link optimized is for the image to say).
pub(crate) fn lto_only_flag(arguments: &[String]) -> Option<&str> {
    if arguments.iter().any(|a| a == "-ffat-lto-objects") {
        return None;
    }
    arguments
        .iter()
        .rev()
        .find(|a| a.starts_with("-flto") || *a == "-fno-lto")
        .filter(|a| a.starts_with("-flto"))
        .map(String::as_str)
}

/// Turn a database entry into the patch compile writing `output`.
pub fn job_for(entry: &CompileEntry, output: &Path) -> CompileJob {
    let compiler = entry
        .arguments
        .first()
        .cloned()
        .unwrap_or_else(|| "cc".into());
    let family = family_of(&compiler, &entry.directory);
    let mut argv = vec![compiler];
    let mut args = entry.arguments.iter().skip(1);
    while let Some(arg) = args.next() {
        let a = arg.as_str();
        // Options that take the next argument as their value.
        if matches!(a, "-o" | "-MF" | "-MT" | "-MQ") {
            args.next();
            continue;
        }
        let dropped = matches!(
            a,
            "-c" | "-MD" | "-MMD" | "-MP" | "-M" | "-MM" | "-gsplit-dwarf"
        ) || a.starts_with("-flto")
            || a.starts_with("-save-temps")
            || a.starts_with("-fdiagnostics-format")
            || a.starts_with("-fdiagnostics-color")
            || a.starts_with("-fcolor-diagnostics")
            || (a.starts_with("-MF") || a.starts_with("-MT") || a.starts_with("-MQ"))
            || (a.starts_with("-o") && a.len() > 2)
            || is_same_file(a, &entry.directory, &entry.file);
        if !dropped {
            argv.push(arg.clone());
        }
    }
    argv.extend(["-ffunction-sections".into(), "-fdata-sections".into()]);
    match family {
        Family::Gcc(major) if major >= 12 => argv.push("-mno-direct-extern-access".into()),
        Family::Clang => argv.push("-fno-direct-access-external-data".into()),
        _ => {}
    }
    argv.push("-g".into());
    match family {
        Family::Gcc(_) => argv.extend([
            "-fdiagnostics-format=json".into(),
            "-fdiagnostics-column-unit=byte".into(),
        ]),
        Family::Clang => argv.push("-fno-color-diagnostics".into()),
        Family::Unknown => {}
    }
    argv.extend([
        "-c".into(),
        entry.file.display().to_string(),
        "-o".into(),
        output.display().to_string(),
    ]);
    CompileJob {
        argv,
        directory: entry.directory.clone(),
        source: entry.file.clone(),
        output: output.to_owned(),
        family,
    }
}

fn is_same_file(arg: &str, directory: &Path, file: &Path) -> bool {
    !arg.starts_with('-') && normalize(&directory.join(arg)) == *file
}

/// Build a database entry from the `[compile] command` template.
pub fn entry_from_template(template: &str, root: &Path, file: &Path) -> Option<CompileEntry> {
    // The placeholders are filled after splitting, so paths with spaces stay one argument.
    let words = shlex::split(template)?;
    let arguments = words
        .into_iter()
        .map(|w| w.replace("{file}", &file.display().to_string()))
        .collect();
    Some(CompileEntry {
        directory: root.to_owned(),
        file: file.to_owned(),
        arguments,
        output: None,
    })
}

/// Run a compile and collect its diagnostics.
pub fn run(job: &CompileJob) -> Result<CompileOutcome, CompileError> {
    let start = Instant::now();
    let out = command(job).output().map_err(|e| spawn_error(job, &e))?;
    Ok(outcome(job, out.status, &out.stderr, start))
}

/// The compiler's command line of `job`, run in its directory.
fn command(job: &CompileJob) -> Command {
    // `{output}` in a template becomes the private object path.
    let argv: Vec<String> = job
        .argv
        .iter()
        .map(|a| a.replace("{output}", &job.output.display().to_string()))
        .collect();
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(&job.directory)
        .stdin(Stdio::null())
        .env("LC_ALL", "C");
    command
}

fn spawn_error(job: &CompileJob, e: &std::io::Error) -> CompileError {
    let compiler = job.argv[0].clone();
    if e.kind() == std::io::ErrorKind::NotFound {
        CompileError::CompilerMissing {
            compiler,
            source_file: job.source.clone(),
        }
    } else {
        CompileError::Spawn {
            compiler,
            source_file: job.source.clone(),
            message: e.to_string(),
        }
    }
}

/// A handle that stops the compiles run by [`run_cancellable`] with it from another
/// thread: each compiler's whole process group (the driver, `cc1`, `as`) is killed. One
/// handle may stop several compiles at once (a header's includers, compiled in parallel).
#[derive(Clone, Debug, Default)]
pub struct Cancel(std::sync::Arc<Mutex<CancelState>>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: bool,
    /// The compilers' pids (and process groups) while they are not reaped: one cannot be
    /// reused by another process before its compile's thread waits for it, under the same
    /// lock.
    groups: Vec<i32>,
    /// A save waits for this compile now ([`Cancel::hurry`]): it runs at the server's
    /// priority, however it was started.
    hurried: bool,
}

impl Cancel {
    /// Stop the compile now (or before it starts). Never waits for the compiler.
    pub fn cancel(&self) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.cancelled = true;
        for &group in &state.groups {
            // SAFETY: kill(2) with a negative pid signals that process group; the group's
            // leader is our unreaped child, so the id names no one else.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
    }

    /// Something the user waits for needs this compile now (a save of its file): a
    /// compiler started at [`Priority::Background`] is set back to the server's priority, and
    /// one not started yet starts at it. Lowering a niceness needs `CAP_SYS_NICE` (or a
    /// `RLIMIT_NICE` that allows it); without, the compiler stays where it was.
    pub fn hurry(&self) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.hurried = true;
        // SAFETY: getpriority/setpriority are plain system calls; each group's leader is our
        // unreaped child (see `groups`), so the id names no other process group.
        unsafe {
            let server = libc::getpriority(libc::PRIO_PROCESS, 0);
            for &group in &state.groups {
                if libc::setpriority(libc::PRIO_PGRP, group as libc::id_t, server) != 0 {
                    tracing::debug!(
                        group,
                        "the compile's priority cannot be raised: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).cancelled
    }
}

/// How a cancellable compile competes for the processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// What the user waits for (a compile ahead of a save).
    Normal,
    /// Work for later (the baselines of a large program): its compilers run
    /// [`BACKGROUND_NICENESS`] steps nicer than the server, so a save's compile, the editor
    /// and the program itself go first on a loaded machine.
    Background,
}

/// How much nicer than the server a [`Priority::Background`] compiler runs.
pub const BACKGROUND_NICENESS: i32 = 10;

/// [`run`], in a process group of its own that `cancel` can kill: `Ok(None)` when it was
/// cancelled (before it started or while it ran).
pub fn run_cancellable(
    job: &CompileJob,
    cancel: &Cancel,
    priority: Priority,
) -> Result<Option<CompileOutcome>, CompileError> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let start = Instant::now();
    let mut child = {
        let mut state = cancel.0.lock().unwrap_or_else(|p| p.into_inner());
        if state.cancelled {
            return Ok(None);
        }
        let mut command = command(job);
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        if priority == Priority::Background && !state.hurried {
            // SAFETY: the closure runs in the forked child before exec and only makes the
            // nice(2) system call, which is async-signal-safe; its failure (a limit that
            // forbids it) leaves the compiler at the server's priority, which is harmless.
            unsafe {
                command.pre_exec(|| {
                    libc::nice(BACKGROUND_NICENESS);
                    Ok(())
                });
            }
        }
        let child = command.spawn().map_err(|e| spawn_error(job, &e))?;
        state.groups.extend(i32::try_from(child.id()));
        child
    };
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        // Ends when every process of the group closed it: exited, or killed by `cancel`.
        let _ = pipe.read_to_end(&mut stderr);
    }
    let status = {
        let mut state = cancel.0.lock().unwrap_or_else(|p| p.into_inner());
        let status = child.wait();
        let group = i32::try_from(child.id()).ok();
        state.groups.retain(|g| Some(*g) != group);
        if state.cancelled {
            return Ok(None);
        }
        status
    };
    let status = status.map_err(|e| spawn_error(job, &e))?;
    Ok(Some(outcome(job, status, &stderr, start)))
}

/// The outcome of a finished compiler run: its diagnostics from `stderr`.
fn outcome(
    job: &CompileJob,
    status: std::process::ExitStatus,
    stderr: &[u8],
    start: Instant,
) -> CompileOutcome {
    let compiler = &job.argv[0];
    let stderr = String::from_utf8_lossy(stderr).into_owned();
    let mut diagnostics = parse_gcc_json(&stderr, &job.directory)
        .unwrap_or_else(|| parse_text(&stderr, &job.directory));
    let success = status.success() && job.output.exists();
    let unparsed = if diagnostics.is_empty() {
        stderr.trim().to_owned()
    } else {
        String::new()
    };
    if !success && diagnostics.iter().all(|d| d.severity != Severity::Error) {
        // The compiler failed without a located error (a bad flag, a missing include path
        // reported without position): put its words on the first line of the source.
        diagnostics.push(Diagnostic {
            file: job.source.clone(),
            line: 1,
            column: 1,
            end_line: None,
            end_column: None,
            severity: Severity::Error,
            code: "compile-error".into(),
            message: if stderr.trim().is_empty() {
                format!("`{compiler}` failed with {status}")
            } else {
                stderr.trim().to_owned()
            },
        });
    }
    CompileOutcome {
        success,
        diagnostics,
        unparsed,
        micros: start.elapsed().as_micros() as u64,
    }
}

/// The prerequisites of a Make rule as gcc and clang write it for `-MD -MF file`:
/// `target: dep dep \<newline> dep`, with spaces escaped as `\ `, `#` as `\#` and `$` as
/// `$$`. Relative paths are taken from `directory` (where the compiler ran). Only the first
/// rule counts (`-MP` adds empty rules for the headers after it).
pub fn parse_depfile(text: &str, directory: &Path) -> Vec<PathBuf> {
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    let rule = joined.lines().next().unwrap_or_default();
    // The target ends at the first unescaped ':' followed by whitespace or the end.
    let bytes = rule.as_bytes();
    let colon = (0..bytes.len()).find(|&i| {
        bytes[i] == b':'
            && (i == 0 || bytes[i - 1] != b'\\')
            && bytes.get(i + 1).is_none_or(|c| c.is_ascii_whitespace())
    });
    let Some(colon) = colon else {
        return Vec::new();
    };
    let mut deps = Vec::new();
    let mut word = String::new();
    let mut chars = rule[colon + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(' ' | '#' | '\t')) => {
                word.extend(chars.next());
            }
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                word.push('$');
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    deps.push(normalize(&directory.join(std::mem::take(&mut word))));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        deps.push(normalize(&directory.join(word)));
    }
    deps
}

fn severity_code(kind: &str) -> Option<(Severity, &'static str)> {
    match kind {
        "error" | "fatal error" => Some((Severity::Error, "compile-error")),
        "warning" => Some((Severity::Warning, "compile-warning")),
        _ => None,
    }
}

/// gcc's `-fdiagnostics-format=json`: an array of diagnostics with `locations[].caret` and
/// `finish`, each with `byte-column`.
fn parse_gcc_json(stderr: &str, directory: &Path) -> Option<Vec<Diagnostic>> {
    let start = stderr.find('[')?;
    let value: serde_json::Value = serde_json::from_str(stderr[start..].trim()).ok()?;
    let mut diagnostics = Vec::new();
    for item in value.as_array()? {
        let Some((severity, code)) = item["kind"].as_str().and_then(severity_code) else {
            continue;
        };
        let message = item["message"].as_str().unwrap_or_default().to_owned();
        let location = &item["locations"][0];
        let caret = &location["caret"];
        let file = caret["file"].as_str().unwrap_or_default();
        let column = |v: &serde_json::Value| {
            v["byte-column"]
                .as_u64()
                .or_else(|| v["column"].as_u64())
                .map(|c| c as u32)
        };
        let finish = &location["finish"];
        diagnostics.push(Diagnostic {
            file: normalize(&directory.join(file)),
            line: caret["line"].as_u64().unwrap_or(1) as u32,
            column: column(caret).unwrap_or(0),
            end_line: finish["line"].as_u64().map(|l| l as u32),
            // gcc's finish is inclusive; ranges here are exclusive.
            end_column: column(finish).map(|c| c + 1),
            severity,
            code: code.into(),
            message,
        });
    }
    Some(diagnostics)
}

/// `file:line:col: severity: message` (clang, older gcc).
fn parse_text(stderr: &str, directory: &Path) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for line in stderr.lines() {
        let mut parts = line.splitn(5, ':');
        let (Some(file), Some(l), Some(c), Some(kind), Some(message)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        let (Ok(l), Ok(c)) = (l.trim().parse::<u32>(), c.trim().parse::<u32>()) else {
            continue;
        };
        let Some((severity, code)) = severity_code(kind.trim()) else {
            continue;
        };
        diagnostics.push(Diagnostic {
            file: normalize(&directory.join(file)),
            line: l,
            column: c,
            end_line: None,
            end_column: None,
            severity,
            code: code.into(),
            message: message.trim().to_owned(),
        });
    }
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The niceness of a running process, from `/proc/PID/stat` (field 19).
    fn niceness(pid: i32) -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        after_name.split_whitespace().nth(16)?.parse().ok()
    }

    /// A background compile runs [`BACKGROUND_NICENESS`] nicer than the server; hurried, it
    /// runs at the server's niceness (root, as here and in CI, may lower it; anyone else
    /// keeps the background niceness, which `hurry` documents), and the compile still ends.
    #[test]
    fn a_hurried_background_compile_runs_at_the_servers_priority() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stop = dir.path().join("stop");
        let job = CompileJob {
            // A "compiler" that waits for the test, then writes its object.
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "while [ ! -e {stop} ]; do sleep 0.01; done; : > {{output}}",
                    stop = stop.display()
                ),
            ],
            directory: dir.path().to_owned(),
            source: dir.path().join("a.c"),
            output: dir.path().join("a.o"),
            family: Family::Unknown,
        };
        let cancel = Cancel::default();
        let thread_cancel = cancel.clone();
        let compile =
            std::thread::spawn(move || run_cancellable(&job, &thread_cancel, Priority::Background));
        let server = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        let group = loop {
            let groups = cancel.0.lock().expect("lock").groups.clone();
            if let Some(&group) = groups.first() {
                if niceness(group) == Some(server + BACKGROUND_NICENESS) {
                    break group;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the compiler never started nicer"
            );
            std::thread::yield_now();
        };
        cancel.hurry();
        let expected = if unsafe { libc::geteuid() } == 0 {
            server
        } else {
            server + BACKGROUND_NICENESS
        };
        assert_eq!(niceness(group), Some(expected));
        std::fs::write(&stop, "").expect("let the compiler finish");
        let outcome = compile.join().expect("compile thread").expect("ran");
        assert!(outcome.is_some_and(|o| o.success));
    }

    fn entry(args: &[&str]) -> CompileEntry {
        CompileEntry {
            directory: PathBuf::from("/w/build"),
            file: PathBuf::from("/w/src/a.c"),
            arguments: args.iter().map(|s| s.to_string()).collect(),
            output: None,
        }
    }

    #[test]
    fn patch_flags_replace_build_outputs() {
        let job = job_for(
            &entry(&[
                "cc",
                "-O1",
                "-g0",
                "-MD",
                "-MF",
                "a.d",
                "-flto=auto",
                "-c",
                "../src/a.c",
                "-o",
                "a.o",
                "-save-temps",
                "-DX=1",
            ]),
            Path::new("/tmp/p.o"),
        );
        let argv = job.argv.join(" ");
        for gone in ["-MD", "a.d", "-flto", "a.o ", "-save-temps", "../src/a.c"] {
            assert!(!argv.contains(gone), "{gone} in {argv}");
        }
        for kept in [
            "-O1",
            "-g0",
            "-DX=1",
            "-ffunction-sections",
            "-fdata-sections",
        ] {
            assert!(argv.contains(kept), "{kept} missing in {argv}");
        }
        assert!(argv.ends_with("-c /w/src/a.c -o /tmp/p.o"), "{argv}");
        let g0 = job.argv.iter().position(|a| a == "-g0");
        let g = job.argv.iter().position(|a| a == "-g");
        assert!(g > g0, "-g must come after -g0: {argv}");
    }

    #[test]
    fn gcc_json_and_text_diagnostics() {
        let json = r#"[{"kind": "error", "message": "expected ';' before '}' token",
            "locations": [{"caret": {"file": "../src/a.c", "line": 7, "byte-column": 14, "display-column": 12, "column": 12}}]},
            {"kind": "note", "message": "n", "locations": []}]"#;
        let d = parse_gcc_json(json, Path::new("/w/build")).expect("json");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].file, PathBuf::from("/w/src/a.c"));
        assert_eq!((d[0].line, d[0].column), (7, 14));
        assert_eq!(d[0].code, "compile-error");
        let text = "../src/a.c:3:5: warning: unused variable 'x' [-Wunused-variable]\nIn file included from x\n";
        let d = parse_text(text, Path::new("/w/build"));
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].line, d[0].column, d[0].severity),
            (3, 5, Severity::Warning)
        );
    }

    #[test]
    fn real_compiler_error_is_located() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("bad.c");
        std::fs::write(&src, "int f(void) {\n  return 1\n}\n").expect("write");
        let e = CompileEntry {
            directory: dir.path().to_owned(),
            file: src.clone(),
            arguments: vec!["cc".into(), "-O0".into(), "-c".into(), "bad.c".into()],
            output: None,
        };
        let out = run(&job_for(&e, &dir.path().join("bad.o"))).expect("runs");
        assert!(!out.success);
        let err = out
            .diagnostics
            .iter()
            .find(|d| d.severity == Severity::Error)
            .expect("an error");
        assert_eq!(err.file, src);
        assert!(err.line == 2 || err.line == 3, "{err:?}");
    }

    #[test]
    fn dependency_files_with_escapes_and_continuations() {
        let text = "obj/a\\ b.o: ../src/a\\ b.c /usr/include/stdio.h \\\n  inc/x\\#1.h \\\r\n cost$$.h\n\ninc/x\\#1.h:\n";
        let deps = parse_depfile(text, Path::new("/w/build"));
        assert_eq!(
            deps,
            vec![
                PathBuf::from("/w/src/a b.c"),
                PathBuf::from("/usr/include/stdio.h"),
                PathBuf::from("/w/build/inc/x#1.h"),
                PathBuf::from("/w/build/cost$.h"),
            ]
        );
        assert!(parse_depfile("no rule here", Path::new("/")).is_empty());
    }

    #[test]
    fn missing_compiler_is_named() {
        let e = entry(&["no-such-cc-1234", "-c", "../src/a.c"]);
        let err = run(&job_for(&e, Path::new("/tmp/x.o"))).expect_err("missing");
        assert!(err.to_string().contains("no-such-cc-1234"), "{err}");
    }

    /// Which compile commands make bitcode only (the file's code in the program came out of
    /// an LTO link): the last `-flto*`/`-fno-lto` decides, fat objects never do.
    #[test]
    fn lto_only_commands() {
        let rows: &[(&[&str], Option<&str>)] = &[
            (&["cc", "-O2", "-c", "a.c"], None),
            (&["cc", "-flto", "-c", "a.c"], Some("-flto")),
            (&["clang", "-flto=thin", "-c", "a.c"], Some("-flto=thin")),
            (
                &["cc", "-flto=auto", "-ffat-lto-objects", "-c", "a.c"],
                None,
            ),
            (&["cc", "-flto", "-fno-lto", "-c", "a.c"], None),
            (&["cc", "-fno-lto", "-flto=4", "-c", "a.c"], Some("-flto=4")),
        ];
        for (argv, expected) in rows {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            assert_eq!(lto_only_flag(&argv), *expected, "{argv:?}");
        }
    }
}
