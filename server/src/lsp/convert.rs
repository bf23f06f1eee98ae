//! Conversions at the LSP edge: engine diagnostics (1-based lines, 1-based byte columns, paths)
//! to LSP diagnostics (0-based lines, UTF-16 characters, URIs), and the status object of
//! DESIGN.md 3.3.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hot_session::{Severity, State, Status, SwapSummary};
use serde_json::{json, Value};
use tower_lsp_server::ls_types::{
    self as lsp, DiagnosticSeverity, MessageType, NumberOrString, Position, Range, Uri,
};

/// The `source` of every diagnostic hot-lsp publishes.
pub const DIAGNOSTIC_SOURCE: &str = "hot-lsp";

/// A file URI for a path; relative paths are taken relative to the workspace root.
pub fn path_to_uri(root: &Path, path: &Path) -> Option<Uri> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    };
    Uri::from_file_path(absolute)
}

/// The local path of a `file:` URI; other schemes have none.
pub fn uri_to_path(uri: &Uri) -> Option<PathBuf> {
    let is_file = uri.scheme().as_str().eq_ignore_ascii_case("file");
    if !is_file {
        return None;
    }
    uri.to_file_path().map(|path| path.into_owned())
}

/// The lines of source files, read once per batch of diagnostics to convert byte columns.
#[derive(Default)]
pub struct LineCache {
    files: HashMap<PathBuf, Option<Vec<String>>>,
}

impl LineCache {
    /// The text of 1-based `line` of `path`, if the file can be read and has that line.
    fn line(&mut self, path: &Path, line: u32) -> Option<&str> {
        let lines = self.files.entry(path.to_path_buf()).or_insert_with(|| {
            // A file that cannot be read (deleted since the compile) falls back to byte columns.
            let bytes = std::fs::read(path).ok()?;
            let text = String::from_utf8_lossy(&bytes);
            Some(text.split('\n').map(str::to_owned).collect())
        });
        let index = usize::try_from(line.checked_sub(1)?).ok()?;
        lines.as_ref()?.get(index).map(String::as_str)
    }
}

/// The UTF-16 offset of a 1-based byte column in `line_text`. Column 0 means "unknown" and maps
/// to the start of the line; a column past the end of the line maps to the end of the line.
pub fn byte_column_to_utf16(line_text: &str, column: u32) -> u32 {
    let line_text = line_text.strip_suffix('\r').unwrap_or(line_text);
    let mut byte_index = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
    byte_index = byte_index.min(line_text.len());
    // A column in the middle of a UTF-8 sequence belongs to the character that contains it.
    while !line_text.is_char_boundary(byte_index) {
        byte_index -= 1;
    }
    let units: usize = line_text[..byte_index].chars().map(char::len_utf16).sum();
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// The number of UTF-16 units in a line, without its line terminator.
fn utf16_len(line_text: &str) -> u32 {
    let line_text = line_text.strip_suffix('\r').unwrap_or(line_text);
    u32::try_from(line_text.encode_utf16().count()).unwrap_or(u32::MAX)
}

/// An LSP position for a 1-based line and 1-based byte column of `path`.
fn position(cache: &mut LineCache, path: &Path, line: u32, column: u32) -> Position {
    let lsp_line = line.saturating_sub(1);
    let character = match cache.line(path, line) {
        Some(text) => byte_column_to_utf16(text, column),
        // Without the text, a byte column is the best approximation there is.
        None => column.saturating_sub(1),
    };
    Position::new(lsp_line, character)
}

/// The LSP range of an engine diagnostic. An unknown column (0) covers the whole line, so that
/// the editor shows the problem somewhere visible.
fn range(cache: &mut LineCache, diagnostic: &hot_session::Diagnostic) -> Range {
    let path = diagnostic.file.as_path();
    let line = diagnostic.line.max(1);
    if diagnostic.column == 0 {
        let end = cache.line(path, line).map(utf16_len).unwrap_or(0);
        return Range::new(Position::new(line - 1, 0), Position::new(line - 1, end));
    }
    let start = position(cache, path, line, diagnostic.column);
    let end = match (diagnostic.end_line, diagnostic.end_column) {
        (Some(end_line), Some(end_column)) if end_line >= line => {
            position(cache, path, end_line, end_column)
        }
        _ => start,
    };
    Range::new(start, end)
}

pub fn diagnostic_severity(severity: Severity) -> DiagnosticSeverity {
    match severity {
        Severity::Error => DiagnosticSeverity::ERROR,
        Severity::Warning => DiagnosticSeverity::WARNING,
        Severity::Information => DiagnosticSeverity::INFORMATION,
    }
}

pub fn message_type(severity: Severity) -> MessageType {
    match severity {
        Severity::Error => MessageType::ERROR,
        Severity::Warning => MessageType::WARNING,
        Severity::Information => MessageType::INFO,
    }
}

/// Converts one engine diagnostic. `file` of the diagnostic must already be absolute.
pub fn diagnostic(cache: &mut LineCache, diagnostic: &hot_session::Diagnostic) -> lsp::Diagnostic {
    lsp::Diagnostic {
        range: range(cache, diagnostic),
        severity: Some(diagnostic_severity(diagnostic.severity)),
        code: Some(NumberOrString::String(diagnostic.code.clone())),
        source: Some(DIAGNOSTIC_SOURCE.to_owned()),
        message: diagnostic.message.clone(),
        ..lsp::Diagnostic::default()
    }
}

pub fn state_name(state: State) -> &'static str {
    match state {
        State::Idle => "idle",
        State::Building => "building",
        State::Running => "running",
        State::Swapping => "swapping",
        State::Exited => "exited",
        State::Failed => "failed",
    }
}

/// Symbol names as users read them (C++ demangled), for messages and the `*Display` fields
/// beside the mangled names tools match on.
pub fn shown_names(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|name| hot_session::display_name(name).into_owned())
        .collect()
}

fn swap_json(root: &Path, swap: &SwapSummary) -> Value {
    let file = path_to_uri(root, &swap.file)
        .map(|uri| Value::String(uri.as_str().to_owned()))
        .unwrap_or(Value::Null);
    // The files compiled together: the saved file, or every includer of a saved header.
    let files: Vec<Value> = swap
        .files
        .iter()
        .map(|f| {
            path_to_uri(root, f)
                .map(|uri| Value::String(uri.as_str().to_owned()))
                .unwrap_or(Value::Null)
        })
        .collect();
    json!({
        "seq": swap.seq,
        "file": file,
        "files": files,
        "swapped": swap.swapped,
        "added": swap.added,
        "swappedDisplay": shown_names(&swap.swapped),
        "addedDisplay": shown_names(&swap.added),
        "updated": swap.updated,
        "updatedDisplay": shown_names(&swap.updated),
        "skipped": swap.skipped,
        // The save's text was compiled ahead of the save (`micros.compile` is then 0).
        "compiledAhead": swap.micros.compiled_ahead,
        "micros": {
            "compile": swap.micros.compile,
            "compileTotal": swap.micros.compile_total,
            "link": swap.micros.link,
            "swap": swap.micros.swap,
        },
    })
}

/// The status object of DESIGN.md 3.3, shared by `hot-lsp/status` and `hot-lsp.status`.
pub fn status_json(workspace: &str, root: &Path, status: &Status) -> Value {
    json!({
        "workspace": workspace,
        "state": state_name(status.state),
        "pid": status.pid,
        "exitCode": status.exit_code,
        "signal": status.signal,
        "lastSwap": status.last_swap.as_ref().map(|swap| swap_json(root, swap)),
        "message": status.message,
        // The stable code of the failure `message` reports (DESIGN.md 3.3), else null.
        "code": status.code,
        // The background baselines: {"done": N, "total": N}, null when none were queued.
        "baselines": status.baselines.map(|b| json!({"done": b.done, "total": b.total})),
    })
}

/// A one-line description of how a program ended.
pub fn exit_description(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(signal)) => format!("the program was killed by signal {signal}"),
        (Some(code), None) => format!("the program exited with code {code}"),
        (None, None) => "the program exited".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_columns_map_to_the_same_offset_minus_one() {
        assert_eq!(byte_column_to_utf16("int x = y;", 9), 8);
        assert_eq!(byte_column_to_utf16("int x = y;", 1), 0);
    }

    #[test]
    fn multibyte_characters_count_as_utf16_units() {
        // "é" is 2 bytes and 1 UTF-16 unit; "😀" is 4 bytes and 2 UTF-16 units.
        let line = "s = \"é😀\"; y";
        let y_byte_column = u32::try_from(line.find('y').unwrap() + 1).unwrap();
        assert_eq!(byte_column_to_utf16(line, y_byte_column), 11);
    }

    #[test]
    fn columns_inside_a_character_or_past_the_end_are_clamped() {
        // Byte column 3 is the second byte of "é": it belongs to "é", which starts at 1.
        assert_eq!(byte_column_to_utf16("aé", 3), 1);
        assert_eq!(byte_column_to_utf16("ab\r", 40), 2);
        assert_eq!(byte_column_to_utf16("ab", 0), 0);
    }

    #[test]
    fn status_json_has_the_documented_shape() {
        let status = Status {
            state: State::Running,
            pid: Some(42),
            exit_code: None,
            signal: None,
            last_swap: Some(SwapSummary {
                seq: 3,
                file: PathBuf::from("/tmp/w/main.c"),
                files: vec![PathBuf::from("/tmp/w/main.c")],
                swapped: vec!["tick".to_owned(), "_ZNK5Shape4areaEv".to_owned()],
                added: vec![],
                updated: vec!["table".to_owned()],
                skipped: 2,
                micros: hot_session::Micros {
                    compile: 10,
                    compile_total: 10,
                    link: 20,
                    swap: 30,
                    compiled_ahead: false,
                },
            }),
            message: None,
            code: None,
            baselines: Some(hot_session::BaselineProgress { done: 1, total: 4 }),
        };
        let value = status_json("file:///tmp/w", Path::new("/tmp/w"), &status);
        assert_eq!(
            value,
            json!({
                "workspace": "file:///tmp/w",
                "state": "running",
                "pid": 42,
                "exitCode": null,
                "signal": null,
                "lastSwap": {
                    "seq": 3,
                    "file": "file:///tmp/w/main.c",
                    "files": ["file:///tmp/w/main.c"],
                    "swapped": ["tick", "_ZNK5Shape4areaEv"],
                    "added": [],
                    "swappedDisplay": ["tick", "Shape::area() const"],
                    "addedDisplay": [],
                    "updated": ["table"],
                    "updatedDisplay": ["table"],
                    "skipped": 2,
                    "compiledAhead": false,
                    "micros": {"compile": 10, "compileTotal": 10, "link": 20, "swap": 30},
                },
                "message": null,
                "code": null,
                "baselines": {"done": 1, "total": 4},
            })
        );
    }
}
