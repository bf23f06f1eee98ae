//! Programs built with link-time optimization (`-flto`): LTO compiles many files as one,
//! inlines functions across them and renames their statics, so the code of an edited
//! function may sit inside other files' functions, and swapping its entry would not change
//! what runs. Such a file is refused before it is compiled, with one `lto-build` error on
//! the first line of the saved file; the launch or attach says it once as a warning.
//!
//! Which files went through LTO comes from the image (`hot_object`'s
//! `LinkedImage::link_time_optimized`, through `Program::lto_of`) and, for what the image
//! cannot show (clang's ThinLTO linked by lld keeps every file's name), from the file's
//! compile command: `-flto` without `-ffat-lto-objects` makes bitcode only, which only an
//! LTO link can use.

use std::path::{Path, PathBuf};

use super::Worker;
use crate::compile;
use crate::{Diagnostic, Severity, State};

/// The diagnostic code of a save refused because its file went through LTO.
pub(crate) const LTO_BUILD: &str = "lto-build";

impl Worker {
    /// Why `file` went through LTO in the running program (`None`: it did not, as far as
    /// the image and its compile command tell, or no program runs).
    pub(super) fn lto_evidence(&mut self, file: &Path) -> Option<(String, String)> {
        let program = self.program.as_mut()?;
        if let Some(found) = program.lto_of(file) {
            return Some(found);
        }
        let exe = program.image().ok()?.exe.path.clone();
        let entry = self.entry_for(file).ok()?;
        let flag = compile::lto_only_flag(&entry.arguments)?;
        Some((exe, format!("its compile command has `{flag}`")))
    }

    /// Refuse the save of `saved` (`files`: it, or the includers of a saved header) when one
    /// of the files went through LTO: one error on the saved file's first line, nothing
    /// compiled or written. Returns whether it refused.
    pub(super) fn refuse_lto(&mut self, saved: &Path, files: &[PathBuf]) -> bool {
        let mut lto: Vec<&PathBuf> = Vec::new();
        let mut found = None;
        for file in files {
            if let Some(evidence) = self.lto_evidence(file) {
                found.get_or_insert(evidence);
                lto.push(file);
            }
        }
        let Some((exe, evidence)) = found else {
            return false;
        };
        let names: Vec<String> = lto.iter().map(|f| short(f)).collect();
        let which = match names.as_slice() {
            [one] if Path::new(one) == Path::new(&short(saved)) => one.clone(),
            _ => names.join(", "),
        };
        let message = format!(
            "{exe} was built with -flto (link-time optimization: {evidence}), and {which} went \
             through it: its functions may be inlined into other files' code and renamed, so a \
             swap would not change what runs. Nothing was written — hot reload needs a build \
             without -flto"
        );
        let diagnostic = Diagnostic {
            file: saved.to_owned(),
            line: 1,
            column: 1,
            end_line: None,
            end_column: None,
            severity: Severity::Error,
            code: LTO_BUILD.into(),
            message,
        };
        self.publish(saved, saved, vec![diagnostic]);
        self.set_state(
            State::Running,
            Some(format!("{which}: built with -flto, nothing was swapped")),
        );
        true
    }

    /// At launch or attach: say once that the program was built with -flto, naming the
    /// executable, if its image or its files' compile commands show it.
    pub(super) fn warn_about_lto(&mut self) {
        let Some(program) = self.program.as_mut() else {
            return;
        };
        let Ok(image) = program.image() else {
            return;
        };
        let exe = image.exe.path.clone();
        let lto = image.exe.image.link_time_optimized();
        let sources: Vec<PathBuf> = image
            .exe
            .image
            .compile_units
            .iter()
            .map(crate::program::cu_source)
            .collect();
        let evidence = match lto {
            Some(lto) => Some(lto.evidence),
            None => sources.iter().find_map(|file| {
                let entry = self.entry_for(file).ok()?;
                let flag = compile::lto_only_flag(&entry.arguments)?;
                Some(format!(
                    "the compile command of {} has `{flag}`",
                    short(file)
                ))
            }),
        };
        if let Some(evidence) = evidence {
            self.message(
                Severity::Warning,
                format!(
                    "{exe} was built with -flto (link-time optimization: {evidence}): its \
                     functions may be inlined across files, so saves of the files that went \
                     through it are refused — hot reload needs a build without -flto"
                ),
            );
        }
    }
}

/// A file's name for messages.
fn short(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
