//! Starting the program: fork and exec from the owner thread, with the program's stdout on
//! a pseudo-terminal (so C stdio line-buffers it) and stderr on a pipe.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::threads::{errno, errno_text};
use crate::{LaunchSpec, ProcessError, Stream};

pub(crate) struct Launched {
    pub(crate) pid: i32,
    /// Read ends of the program's output, non-blocking.
    pub(crate) outputs: Vec<(OwnedFd, Stream)>,
}

/// Forks and execs the program from the calling thread, which must be the owner thread:
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits.
pub(crate) fn spawn(spec: &LaunchSpec) -> Result<Launched, ProcessError> {
    let launch_error = |message: String| ProcessError::Launch {
        path: spec.path.clone(),
        message,
    };
    if spec.path.as_os_str().is_empty() {
        return Err(launch_error("no program path given".into()));
    }
    if !spec.cwd.as_os_str().is_empty() && !spec.cwd.is_dir() {
        return Err(launch_error(format!(
            "working directory {} does not exist or is not a directory",
            spec.cwd.display()
        )));
    }
    let (stdout_read, stdout_write) = match open_pty() {
        Ok(pair) => pair,
        // No pseudo-terminals (a minimal container): a pipe still works, block-buffered.
        Err(err) => {
            tracing::warn!("no pseudo-terminal for the program's output ({err}); using a pipe");
            pipe().map_err(|err| launch_error(format!("cannot create a pipe: {err}")))?
        }
    };
    let (stderr_read, stderr_write) =
        pipe().map_err(|err| launch_error(format!("cannot create a pipe: {err}")))?;
    set_nonblocking(&stdout_read).map_err(|err| launch_error(err.to_string()))?;
    set_nonblocking(&stderr_read).map_err(|err| launch_error(err.to_string()))?;

    let mut command = Command::new(&spec.path);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_write))
        .stderr(Stdio::from(stderr_write));
    if !spec.cwd.as_os_str().is_empty() {
        command.current_dir(&spec.cwd);
    }
    let parent = std::process::id() as libc::pid_t;
    let disable_aslr = spec.disable_aslr;
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe system
    // calls; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Its own session: a Ctrl-C meant for the server's terminal does not reach it.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The pseudo-terminal becomes its controlling terminal, as a shell's would be:
            // when the program (the session leader) dies, or the server and with it the
            // terminal's other end, the kernel hangs the terminal up and sends SIGHUP to the
            // processes it started (a pre-fork server's workers, a vfork child), which
            // PR_SET_PDEATHSIG does not reach. On a pipe (no terminal) this does nothing.
            if libc::isatty(1) == 1 {
                libc::ioctl(1, libc::TIOCSCTTY, 0);
            }
            // That SIGHUP must be able to kill them: an ignored disposition survives fork
            // and exec, so a server started with SIGHUP ignored (nohup, some job runners)
            // would hand it to the program and its workers, and they would outlive it.
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The owner thread may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != parent {
                libc::_exit(127);
            }
            if disable_aslr {
                let current = libc::personality(0xffff_ffff);
                if current == -1
                    || libc::personality((current | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong) == -1
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // std reports exec (and chdir, pre_exec) failures through its own close-on-exec pipe,
    // and reaps the failed child.
    let child = command
        .spawn()
        .map_err(|err| launch_error(err.to_string()))?;
    let pid = child.id() as i32;
    // Our copies of the write ends live in `command`; drop them so EOF is seen.
    drop(command);
    // Dropping a std Child neither kills nor waits: the owner thread reaps it by pid.
    drop(child);
    Ok(Launched {
        pid,
        outputs: vec![(stdout_read, Stream::Stdout), (stderr_read, Stream::Stderr)],
    })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pseudo-terminal pair, both ends close-on-exec (so compilers the server runs meanwhile do
/// not inherit them), the terminal in raw mode so "\n" stays "\n".
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: plain libc calls on descriptors we own; ptsname_r writes into our buffer.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if master < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let master = OwnedFd::from_raw_fd(master);
        if libc::grantpt(master.as_raw_fd()) != 0 || libc::unlockpt(master.as_raw_fd()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut name = [0 as libc::c_char; 128];
        let code = libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len());
        if code != 0 {
            return Err(std::io::Error::from_raw_os_error(code));
        }
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let slave = OwnedFd::from_raw_fd(slave);
        let mut termios: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut termios) == 0 {
            libc::cfmakeraw(&mut termios);
            libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &termios);
        }
        let size = libc::winsize {
            ws_row: 50,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size);
        Ok((master, slave))
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), String> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(format!("fcntl(O_NONBLOCK): {}", errno_text(errno())));
        }
    }
    Ok(())
}
