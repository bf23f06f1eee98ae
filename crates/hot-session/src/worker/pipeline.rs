//! The swap pipeline: compile the saved file, link it against the running image, apply the
//! patch, report; and undo.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hot_link::{LinkRequest, UnitRef};
use hot_process::{ProcessError, WritePlan};

use super::{has_extension, Baseline, Worker, HEADER_EXTENSIONS, SOURCE_EXTENSIONS};
use crate::compile;
use crate::compile_db::normalize;
use crate::config;
use crate::program::{unit_of, AppliedPatch, UnitMatch};
use crate::{Diagnostic, Micros, Phase, Progress, SessionEvent, Severity, State, SwapSummary};

impl Worker {
    pub(super) fn on_saved(&mut self, file: &Path) {
        if !self.opted_in {
            return;
        }
        let file = normalize(file);
        if file == self.options.root.join(config::CONFIG_FILE) {
            self.reload_config();
            return;
        }
        if has_extension(&file, HEADER_EXTENSIONS) {
            let includers = self.includers(&file);
            let mut names: Vec<String> = includers
                .iter()
                .take(5)
                .map(|f| f.display().to_string())
                .collect();
            if includers.len() > names.len() {
                names.push(format!("{} more", includers.len() - names.len()));
            }
            let which = if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            };
            self.message(
                Severity::Information,
                format!(
                    "{} is a header: recompiling the files that include it is not supported yet; \
                     save a source file that includes it{which} to swap its changes",
                    file.display()
                ),
            );
            return;
        }
        if !has_extension(&file, SOURCE_EXTENSIONS) {
            return;
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

    pub(super) fn progress(&self, phase: Phase, message: &str) {
        self.emit(SessionEvent::Progress(Progress::Report {
            phase,
            message: message.into(),
        }));
    }

    /// Compile, link and swap one saved file. `Ok(None)`: compiled, nothing was swapped.
    pub(super) fn compile_link_swap(&mut self, file: &Path) -> Result<Option<SwapSummary>, ()> {
        let entry = match self.entry_for(file) {
            Ok(e) => e,
            Err(e) => {
                self.fail(e);
                return Err(());
            }
        };
        // The translation unit of the image this file replaces. A source of the database
        // that the running program does not contain (a test or a tool built from the same
        // tree) is refused before compiling anything.
        let unit = match self.program.as_mut().map(|p| {
            p.image()
                .map(|i| (unit_of(&i.exe.image, file), i.exe.path.clone()))
        }) {
            None => None,
            Some(Ok((UnitMatch::Found(tu), _))) => Some(tu),
            Some(Ok((UnitMatch::NotLinked, exe))) => {
                let why = self
                    .program
                    .as_ref()
                    .and_then(|p| p.why_not_linked(file))
                    .map(|why| format!(". {why}"))
                    .unwrap_or_default();
                self.fail(format!(
                    "{} is not linked into the running program ({exe}); nothing was swapped{why}",
                    file.display()
                ));
                return Err(());
            }
            Some(Err(e)) => {
                self.fail(e);
                return Err(());
            }
        };
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
        // What runs, compiled with the same flags (now, if it is still in the queue).
        let baseline = self.baseline_for(file, job.flags());
        self.progress(Phase::Link, "linking");
        let Some(program) = self.program.as_mut() else {
            return Err(());
        };
        let link_start = Instant::now();
        // The compile unit tells which definition of a global name this file made (weak
        // defaults, hidden symbols).
        let compile_unit = program.image.as_ref().and_then(|i| {
            i.exe
                .image
                .compile_units
                .iter()
                .position(|cu| crate::program::cu_source(cu) == file)
        });
        let unit = UnitRef {
            tu: unit.flatten(),
            compile_unit,
            source: file.display().to_string(),
        };
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
        let mut result = match link_guarded(linker, &request) {
            Ok(result) => result,
            Err(text) => {
                self.publish(file, file, diagnostics);
                self.fail(text);
                return Err(());
            }
        };
        let undefined = |r: &Result<hot_link::Patch, Vec<hot_link::LinkError>>| {
            r.as_ref().is_err_and(|errors| {
                errors
                    .iter()
                    .any(|e| e.code == hot_link::LinkErrorCode::UndefinedSymbol)
            })
        };
        // A symbol may come from a library loaded since the linker last looked.
        if undefined(&result) && program.refresh_libraries() {
            if let Ok(linker) = program.linker() {
                match link_guarded(linker, &request) {
                    Ok(again) => result = again,
                    Err(text) => {
                        self.publish(file, file, diagnostics);
                        self.fail(text);
                        return Err(());
                    }
                }
            }
        }
        let patch = match result {
            Ok(p) => p,
            Err(errors) => {
                diagnostics.extend(grouped(
                    errors.iter().map(|e| Finding {
                        code: e.code.diagnostic_code(),
                        symbol: e.symbol.as_deref(),
                        line: e.line.as_ref(),
                        message: &e.message,
                        severity: Severity::Error,
                    }),
                    file,
                ));
                self.publish(file, file, diagnostics);
                self.set_state(
                    State::Running,
                    Some("the patch was refused; nothing was written".into()),
                );
                return Err(());
            }
        };
        let link_micros = link_start.elapsed().as_micros() as u64;
        diagnostics.extend(grouped(
            patch.notes.iter().map(|note| Finding {
                code: note.code,
                symbol: note.symbol.as_deref(),
                line: note.line.as_ref(),
                message: &note.message,
                severity: match note.severity {
                    hot_link::NoteSeverity::Warning => Severity::Warning,
                    hot_link::NoteSeverity::Information => Severity::Information,
                },
            }),
            file,
        ));
        self.publish(file, file, diagnostics.clone());

        // C++ code: a table the unwinder cannot take is worth a warning (`unwind.rs`).
        let unwinds_cxx_exceptions = object
            .symbols
            .iter()
            .any(|s| s.name == "__gxx_personality_v0");
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
            // Read-only objects the program can read now change with the entries, while
            // every thread is stopped, checked and rolled back like them.
            commit_data: patch.in_place.iter().map(data_write).collect(),
            commit: patch.entries.iter().map(entry_write).collect(),
            protected: patch.protected.iter().map(|r| r.start.0..r.end.0).collect(),
        };
        let swap_start = Instant::now();
        if let Err(e) = self.apply_with_unwind(&plan, &patch, unwinds_cxx_exceptions) {
            let text = process_error_text(&e);
            if let Some(code) = process_error_code(&e) {
                // The file's save did not reach the program: say so where the file is shown,
                // until a later save of it links again.
                diagnostics.push(located(None, file, Severity::Error, code, &text));
                self.publish(file, file, diagnostics);
            }
            self.fail(text);
            return Err(());
        }
        let Some(program) = self.program.as_mut() else {
            return Err(());
        };
        let swap_micros = swap_start.elapsed().as_micros() as u64;
        if let Some(linker) = program.linker.as_mut() {
            linker.commit(&patch);
        }
        let previous = self.baselines.insert(file.to_owned(), new_baseline);
        let build_id = program
            .image
            .as_ref()
            .and_then(|i| i.exe.image.build_id.clone());
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
        let (pid, children) = match self.program.as_ref() {
            Some(p) => (p.debuggee.pid(), p.debuggee.forked_children()),
            None => (0, Vec::new()),
        };
        if !children.is_empty() && children != self.warned_children {
            let pids: Vec<String> = children.iter().map(|c| c.to_string()).collect();
            self.message(
                Severity::Warning,
                format!(
                    "swapped in pid {pid} only: its {} child process{} running the same program \
                     (pid {}) {} forked before this swap and keep{} the old code; restart \
                     them (or the program) to run the new code there",
                    children.len(),
                    if children.len() == 1 { "" } else { "es" },
                    pids.join(", "),
                    if children.len() == 1 { "was" } else { "were" },
                    if children.len() == 1 { "s" } else { "" },
                ),
            );
        }
        self.warned_children = children;
        self.update_status(|s| {
            s.state = State::Running;
            s.last_swap = Some(summary.clone());
            s.message = None;
        });
        Ok(Some(summary))
    }

    pub(super) fn undo(&mut self) {
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
            commit_data: reverts.in_place.iter().map(data_write).collect(),
            commit: reverts.entries.iter().map(entry_write).collect(),
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
        let names: Vec<String> = reverts.writes().map(|e| e.function.clone()).collect();
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

/// `Linker::link`, with a panic (a bug of hot-link's, met on input it did not expect) turned
/// into a message: the link is pure and wrote nothing, so the session and the program go
/// on as they were.
fn link_guarded(
    linker: &hot_link::Linker,
    request: &LinkRequest<'_>,
) -> Result<Result<hot_link::Patch, Vec<hot_link::LinkError>>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| linker.link(request))).map_err(
        |panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            format!(
                "internal error of hot-link while linking {}: {what}; nothing was written and \
                 the program runs on unchanged — please report this with the file",
                request.unit.source
            )
        },
    )
}

fn process_error_text(e: &ProcessError) -> String {
    e.to_string()
}

/// The diagnostic code (DESIGN.md 3.3) of a swap the process refused, for the failures that
/// have one: the trace denied, memory that cannot be written, the program gone.
fn process_error_code(e: &ProcessError) -> Option<&'static str> {
    match e {
        ProcessError::PermissionDenied(_) => Some("permission-denied"),
        ProcessError::Protection { .. } => Some("protection-failure"),
        ProcessError::Exited => Some("process-exited"),
        ProcessError::Launch { .. }
        | ProcessError::Unexpected { .. }
        | ProcessError::Other(_)
        | ProcessError::CallStillRunning(_) => None,
    }
}

/// Per symbol and code, at most this many source lines get a diagnostic of their own; the
/// rest are summed up in one more. A missing symbol used all over a big file (Lua's lvm.c:
/// one macro, ~90 relocations) would otherwise bury the editor's problem list.
const LINES_PER_SYMBOL: usize = 5;

/// At most this many of the lines beyond [`LINES_PER_SYMBOL`] are named in the summary.
const SUMMARY_LINES: usize = 10;

/// A linker error or note, as far as turning it into a diagnostic goes.
struct Finding<'a> {
    code: &'a str,
    symbol: Option<&'a str>,
    line: Option<&'a hot_object::SourceLine>,
    message: &'a str,
    severity: Severity,
}

/// Where a finding is, as compared for grouping: the file and line (no column: the calls of
/// one line are one place to the user).
type Place = Option<(PathBuf, u32)>;

/// The findings of one code and symbol beyond [`LINES_PER_SYMBOL`] lines.
struct Overflow<'a> {
    /// Index of their summary among the diagnostics.
    at: usize,
    references: usize,
    lines: Vec<Option<&'a hot_object::SourceLine>>,
}

/// One diagnostic for findings of one code, symbol and line (the linker reports each
/// relocation: a line calling a missing function three times is three findings), and per
/// code and symbol at most [`LINES_PER_SYMBOL`] lines plus one summary of the others.
/// Findings without a symbol are grouped when their message is the same too. Diagnostics
/// come in source order (those without a line first), each group with its first finding's
/// message and column.
fn grouped<'a>(findings: impl Iterator<Item = Finding<'a>>, file: &Path) -> Vec<Diagnostic> {
    // (finding, references on its line), in the order of their first findings.
    let mut groups: Vec<(Finding<'a>, usize)> = Vec::new();
    let mut index: HashMap<(&'a str, &'a str, bool, Place), usize> = HashMap::new();
    for finding in findings {
        let place: Place = finding.line.map(|l| (l.file.clone(), l.line));
        let key = (
            finding.code,
            finding.symbol.unwrap_or(finding.message),
            finding.symbol.is_some(),
            place,
        );
        match index.get(&key) {
            Some(&i) => groups[i].1 += 1,
            None => {
                index.insert(key, groups.len());
                groups.push((finding, 1));
            }
        }
    }

    // Source order, not the linker's (relocation offsets: at -O2 the lines of a function
    // come in any order): the lines shown for a symbol are its first ones in the file.
    groups.sort_by_cached_key(|(f, _)| f.line.map(|l| (l.file.clone(), l.line)));
    // Per (code, symbol): the lines shown so far, and the summary of the others.
    let mut shown: HashMap<(&str, &str), usize> = HashMap::new();
    let mut overflows: HashMap<(&str, &str), Overflow> = HashMap::new();
    let mut diagnostics = Vec::new();
    for (finding, references) in &groups {
        if let Some(symbol) = finding.symbol {
            let key = (finding.code, symbol);
            let count = shown.entry(key).or_insert(0);
            if *count >= LINES_PER_SYMBOL {
                let overflow = overflows.entry(key).or_insert_with(|| {
                    // The summary sits on the first line it stands for.
                    diagnostics.push(located(
                        finding.line,
                        file,
                        finding.severity,
                        finding.code,
                        "",
                    ));
                    Overflow {
                        at: diagnostics.len() - 1,
                        references: 0,
                        lines: Vec::new(),
                    }
                });
                overflow.references += references;
                overflow.lines.push(finding.line);
                continue;
            }
            *count += 1;
        }
        let mut diagnostic = located(
            finding.line,
            file,
            finding.severity,
            finding.code,
            finding.message,
        );
        if *references > 1 {
            diagnostic.message.push_str(&format!(
                " (and {} more reference{} on this line)",
                references - 1,
                plural(references - 1)
            ));
        }
        diagnostics.push(diagnostic);
    }
    for ((_, symbol), overflow) in overflows {
        // Lines of the summary's own file by number, others (a header's) by file and line.
        let home = overflow.lines.first().copied().flatten().map(|l| &l.file);
        let mut lines: Vec<String> = overflow
            .lines
            .iter()
            .take(SUMMARY_LINES)
            .map(|line| match line {
                Some(l) if Some(&l.file) == home => l.line.to_string(),
                Some(l) => format!("{}:{}", l.file.display(), l.line),
                None => "unknown".to_owned(),
            })
            .collect();
        if overflow.lines.len() > lines.len() {
            lines.push("…".to_owned());
        }
        diagnostics[overflow.at].message = format!(
            "… and {} more reference{} to `{symbol}` on {} other line{} (line{} {})",
            overflow.references,
            plural(overflow.references),
            overflow.lines.len(),
            plural(overflow.lines.len()),
            plural(overflow.lines.len()),
            lines.join(", ")
        );
    }
    diagnostics
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
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

/// An in-place update of a read-only object (its `function` is the object's name).
fn data_write(update: &hot_link::EntryWrite) -> hot_process::Write {
    hot_process::Write {
        what: format!("in-place update of {}", update.function),
        ..entry_write(update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32) -> hot_object::SourceLine {
        hot_object::SourceLine {
            file: PathBuf::from("/w/main.c"),
            line,
            column: 5,
        }
    }

    fn undefined<'a>(symbol: &'a str, line: &'a hot_object::SourceLine) -> Finding<'a> {
        Finding {
            code: "undefined-symbol",
            symbol: Some(symbol),
            line: Some(line),
            message: "undefined symbol",
            severity: Severity::Error,
        }
    }

    #[test]
    fn references_of_one_line_are_one_diagnostic_and_lines_are_capped_per_symbol() {
        let lines: Vec<hot_object::SourceLine> = (10..20).map(at).collect();
        // `a`: three references on line 10, one on each of lines 11..=19; `b` on line 10.
        let mut findings = vec![
            undefined("a", &lines[0]),
            undefined("a", &lines[0]),
            undefined("b", &lines[0]),
            undefined("a", &lines[0]),
        ];
        // The linker's order is that of relocation offsets, not of lines.
        for line in lines[1..].iter().rev() {
            findings.push(undefined("a", line));
        }
        findings.push(undefined("a", &lines[9]));
        let diagnostics = grouped(findings.into_iter(), Path::new("/w/main.c"));
        let shown: Vec<(u32, &str)> = diagnostics
            .iter()
            .map(|d| (d.line, d.message.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (10, "undefined symbol (and 2 more references on this line)"),
                (10, "undefined symbol"),
                (11, "undefined symbol"),
                (12, "undefined symbol"),
                (13, "undefined symbol"),
                (14, "undefined symbol"),
                (
                    15,
                    "… and 6 more references to `a` on 5 other lines (lines 15, 16, 17, 18, 19)"
                ),
            ]
        );
    }

    #[test]
    fn findings_without_a_symbol_merge_only_when_their_message_is_the_same() {
        let line = at(3);
        let finding = |message| Finding {
            code: "unsupported-relocation",
            symbol: None,
            line: Some(&line),
            message,
            severity: Severity::Error,
        };
        let diagnostics = grouped(
            [finding("x"), finding("y"), finding("x")].into_iter(),
            Path::new("/w/main.c"),
        );
        let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages, ["x (and 1 more reference on this line)", "y"]);
    }
}
