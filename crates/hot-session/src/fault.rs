//! Fault injection for tests: with the `fault-injection` feature (never enabled in the
//! shipped binary), [`panic_abi_checks_under`] makes the ABI checks of a save panic (inside
//! their `catch_unwind`, as a bug there would) when a file of the save is under a folder,
//! so that a test can show such a save is refused, never swapped with no frame guards.
//! Keyed by folder (each test's own temporary workspace), tests running at once in one
//! binary do not see each other's fault.

#[cfg(feature = "fault-injection")]
mod armed {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static UNDER: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    /// Make the ABI checks of every save with a file under `dir` panic (`false`: no more).
    pub fn panic_abi_checks_under(dir: &Path, on: bool) {
        let mut under = UNDER.lock().unwrap_or_else(|p| p.into_inner());
        under.retain(|d| d != dir);
        if on {
            under.push(dir.to_owned());
        }
    }

    /// The hook in the ABI checks: panics if one of `sources` is under an armed folder.
    pub(crate) fn abi_checks(sources: &[&str]) {
        let armed = UNDER
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|dir| sources.iter().any(|s| Path::new(s).starts_with(dir)));
        if armed {
            panic!("injected panic in the ABI checks (hot_session::fault)");
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use armed::panic_abi_checks_under;

#[cfg(feature = "fault-injection")]
pub(crate) use armed::abi_checks;

/// Without the feature the hook does nothing.
#[cfg(not(feature = "fault-injection"))]
pub(crate) fn abi_checks(_sources: &[&str]) {}
