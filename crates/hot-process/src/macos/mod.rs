//! The macOS backend's Mach calls (Apple targets only): the task port and its
//! [`crate::task_apply::Task`] operations (`task.rs`), and the [`crate::Debuggee`] backend
//! (`debuggee.rs`: `posix_spawn`, events, memory, arenas, the apply). The logic that needs
//! no Apple call is in `task_apply.rs` and `task_launch.rs`, tested on Linux.
//!
//! **Never compiled**: these machines have no Apple standard library
//! (`cargo check --target aarch64-apple-darwin -p hot-process` stops at "can't find crate
//! for `std`"), and there is no Mac to run it on.

mod debuggee;
pub(crate) mod task;

pub(crate) use debuggee::Debuggee;
