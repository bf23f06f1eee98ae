//! The macOS backend's Mach calls (Apple targets only; see `task_apply.rs` for the logic it
//! runs, which is tested on Linux).
//!
//! Not type-checked on these machines: they have no Apple standard library
//! (`rustup target add aarch64-apple-darwin` gives one, but linking and running need a Mac).
//! So far this is the task port and its [`crate::task_apply::Task`] operations; launching with
//! `posix_spawn`, the process's events and mappings, arenas (`mach_vm_allocate` near the
//! image) and the [`crate::Debuggee`] wiring are not written yet: `Debuggee` on macOS is
//! still the `unsupported` backend.

pub(crate) mod task;
