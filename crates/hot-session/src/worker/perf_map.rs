//! The profiler's map of the code hot-lsp placed in the program: `/tmp/perf-PID.map`, which
//! `perf report` and `perf top` read to name code that no loaded object describes (JIT code).
//!
//! One line per arena body, `START SIZE name` with START and SIZE in hex (no `0x`), the
//! name demangled. Lines are only ever added: an arena body stays mapped after undo or a
//! later swap (its address is never reused, and a frame may still run in it), so every line
//! stays true for the life of the process. The file is perf's to read after the program
//! ended, so it is left in place, as JITs do; a relaunch (a new pid) starts a new one.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use hot_link::PlacedBody;

/// Where perf looks for the map of process `pid` (a fixed path: perf does not look elsewhere).
pub(crate) fn path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// Add `bodies` to the map of `pid`. `fresh`: the first write for this process, which
/// replaces a file a dead process of the same pid left.
///
/// `/tmp` is shared: the file is opened without following a symbolic link and used only if
/// it is a regular file of this user, so another user cannot make hot-lsp write elsewhere.
pub(crate) fn append(pid: i32, bodies: &[PlacedBody], fresh: bool) -> std::io::Result<()> {
    let path = path(pid);
    let mut options = std::fs::OpenOptions::new();
    options
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if fresh {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    let mut file = options.open(&path)?;
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.file_type().is_file() || meta.uid() != uid {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file of this user",
            path.display()
        )));
    }
    let mut text = String::new();
    for body in bodies {
        text.push_str(&format!(
            "{:x} {:x} {}\n",
            body.addr.0,
            body.size,
            hot_object::display_name(&body.name)
        ));
    }
    file.write_all(text.as_bytes())
}

impl super::Worker {
    /// Name the bodies a committed patch placed in the profiler's map of the program. A map
    /// that cannot be written is logged, never a reason to fail a swap that happened.
    pub(super) fn record_perf_map(&mut self, bodies: &[PlacedBody]) {
        let Some(program) = self.program.as_mut() else {
            return;
        };
        if bodies.is_empty() {
            return;
        }
        let pid = program.debuggee.pid();
        let fresh = !program.perf_map_started;
        match append(pid, bodies, fresh) {
            Ok(()) => program.perf_map_started = true,
            Err(e) => tracing::warn!(
                map = %path(pid).display(),
                error = %e,
                "the profiler's map of new code was not written"
            ),
        }
    }
}
