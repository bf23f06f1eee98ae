//! Reserves stdin and stdout for the LSP protocol.
//!
//! Anything else that writes to file descriptor 1 (a stray print, a build command or a compiler
//! that inherits stdout) would corrupt the JSON-RPC stream, and anything that reads fd 0 would
//! steal the client's messages. So the protocol moves to private close-on-exec duplicates, fd 0
//! becomes `/dev/null` and fd 1 becomes a copy of stderr.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};

/// The private protocol streams.
pub struct ProtocolStreams {
    pub input: File,
    pub output: File,
}

fn check(result: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if result < 0 {
        let error = io::Error::last_os_error();
        Err(io::Error::new(error.kind(), format!("{what}: {error}")))
    } else {
        Ok(result)
    }
}

/// A close-on-exec duplicate of `fd`, so that child processes never inherit it.
fn duplicate(fd: RawFd, what: &str) -> io::Result<File> {
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor; the result is owned by the File.
    let copy = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) }, what)?;
    // SAFETY: `copy` is a fresh descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(copy) })
}

/// Moves the protocol off fds 0 and 1. Call it before any thread starts.
pub fn take_protocol_streams() -> io::Result<ProtocolStreams> {
    let input = duplicate(libc::STDIN_FILENO, "duplicating stdin")?;
    let output = duplicate(libc::STDOUT_FILENO, "duplicating stdout")?;
    let dev_null = File::open("/dev/null")
        .map_err(|error| io::Error::new(error.kind(), format!("opening /dev/null: {error}")))?;
    // SAFETY: dup2 onto the standard descriptors; the protocol now lives on the duplicates, and
    // `dev_null` stays open until after the call.
    unsafe {
        check(
            libc::dup2(
                std::os::fd::AsRawFd::as_raw_fd(&dev_null),
                libc::STDIN_FILENO,
            ),
            "replacing stdin with /dev/null",
        )?;
        check(
            libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO),
            "replacing stdout with stderr",
        )?;
    }
    Ok(ProtocolStreams { input, output })
}
