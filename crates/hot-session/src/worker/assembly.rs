//! Assembly sources (`.S`, `.s`, `.sx`, `.asm`) are not swapped yet: hand-written code has
//! no compiler's guarantees about sections, symbol sizes and unwind tables that the linker
//! relies on. A save of one the program was built from (a file of the compile database, or
//! one the running program's debug info names) is answered all the same, with one
//! `unsupported-source` warning on its first line saying that the running program keeps the
//! code it was built with; nothing is compiled or written. The warning goes when the file's
//! text is again the one the program was built from (its snapshot at launch). An assembly
//! file that is not the program's gets nothing, like any other file hot-lsp does not compile.
//! A header (or source file) that an assembly source includes is saved without it: its other
//! includers are swapped, and the assembly source gets the same warning, naming the header
//! (swapping it there would run the assembly that a save of its own refuses).

use std::path::{Path, PathBuf};

use super::Worker;
use crate::{Diagnostic, Severity};

/// The extensions of assembly sources (gcc's `.S` and `.sx` go through the preprocessor,
/// `.s` does not; `.asm` is nasm's and yasm's).
pub(super) const ASSEMBLY_EXTENSIONS: &[&str] = &["S", "s", "sx", "asm"];

/// The diagnostic code of a saved source file of a kind hot-lsp does not swap.
pub(crate) const UNSUPPORTED_SOURCE: &str = "unsupported-source";

impl Worker {
    /// Answer the save of the assembly source `file` (see the module documentation).
    pub(super) fn on_assembly_saved(&mut self, file: &Path) {
        let in_database = self
            .database()
            .is_some_and(|db| !db.entries_for(file).is_empty());
        let running = self.program.is_some();
        let the_programs = in_database || (running && self.is_linked(file));
        if !the_programs {
            return;
        }
        let name = file_name(file);
        // Saved back to the text the program was built from: nothing to say any more.
        let as_built = self
            .snapshots
            .get(file)
            .is_some_and(|built| std::fs::read(file).is_ok_and(|now| now == *built));
        if as_built {
            self.publish(file, file, Vec::new());
            return;
        }
        let message = if running {
            format!(
                "{name} is an assembly source, and hot-lsp does not swap assembly yet: this save \
                 changed nothing in the running program, which keeps running the code {name} was \
                 built with; rebuild and restart the program to run it"
            )
        } else {
            format!(
                "{name} is an assembly source, and hot-lsp does not swap assembly yet: nothing \
                 was compiled or swapped"
            )
        };
        self.warn_not_swapped(file, message);
        self.update_status(|s| {
            s.message = Some(format!(
                "{name}: assembly is not swapped, nothing was written"
            ));
        });
    }

    /// Take the assembly sources out of `units`, the files a save of `saved` (a header, or
    /// a source file others include) recompiles, and warn on each that the change does not
    /// reach it.
    pub(super) fn leave_out_assembly(&mut self, saved: &Path, units: &mut Vec<PathBuf>) {
        let (assembly, rest): (Vec<PathBuf>, Vec<PathBuf>) = std::mem::take(units)
            .into_iter()
            .partition(|u| super::has_extension(u, ASSEMBLY_EXTENSIONS));
        *units = rest;
        let header = file_name(saved);
        for unit in assembly {
            let name = file_name(&unit);
            self.warn_not_swapped(
                &unit,
                format!(
                    "{name} includes {header}, which this save changed, but {name} is an \
                     assembly source and hot-lsp does not swap assembly yet: the running \
                     program keeps running the code {name} was built with; rebuild and \
                     restart the program to run it"
                ),
            );
        }
    }

    fn warn_not_swapped(&mut self, file: &Path, message: String) {
        let diagnostic = Diagnostic {
            file: file.to_owned(),
            line: 1,
            column: 1,
            end_line: None,
            end_column: None,
            severity: Severity::Warning,
            code: UNSUPPORTED_SOURCE.into(),
            message,
        };
        self.publish(file, file, vec![diagnostic]);
    }
}

fn file_name(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
