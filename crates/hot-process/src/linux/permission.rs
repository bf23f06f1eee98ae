//! Why the kernel refuses to let hot-lsp trace a process (`EPERM` from `PTRACE_SEIZE`,
//! `EACCES` opening `/proc/PID/mem`), and what the user can do about it: another user's
//! process, Yama's `kernel.yama.ptrace_scope` 1 to 3, a missing `CAP_SYS_PTRACE`, or a
//! security module or container policy.

use crate::ProcessError;

/// What decides whether we may trace a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The target's real user id, if it can be read.
    pub(crate) target_uid: Option<u32>,
    /// Our effective user id.
    pub(crate) our_uid: u32,
    /// `/proc/sys/kernel/yama/ptrace_scope`, if Yama is there.
    pub(crate) yama_scope: Option<u32>,
    /// Whether we hold `CAP_SYS_PTRACE` (bit 19 of `CapEff`).
    pub(crate) cap_sys_ptrace: bool,
}

const CAP_SYS_PTRACE: u32 = 19;

pub(crate) fn facts(pid: i32) -> Facts {
    let status_field = |path: &str, key: &str| -> Option<String> {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    let target_uid = status_field(&format!("/proc/{pid}/status"), "Uid:")
        .and_then(|v| v.split_whitespace().next()?.parse().ok());
    let cap_sys_ptrace = status_field("/proc/self/status", "CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0);
    let yama_scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|v| v.trim().parse().ok());
    Facts {
        target_uid,
        // SAFETY: geteuid has no preconditions.
        our_uid: unsafe { libc::geteuid() },
        yama_scope,
        cap_sys_ptrace,
    }
}

/// The message for a denied trace of `pid`: what failed (`what`), why, and the fix.
pub(crate) fn explain(pid: i32, what: &str, facts: &Facts) -> String {
    let owner = match facts.target_uid {
        Some(uid) => format!(" (uid {uid})"),
        None => String::new(),
    };
    let mut text = format!(
        "{what}: the kernel does not let hot-lsp (uid {}) trace pid {pid}{owner}.",
        facts.our_uid
    );
    let setcap = "`sudo setcap cap_sys_ptrace+ep \"$(command -v hot-lsp)\"`";
    let mut explained = false;
    if let Some(uid) = facts.target_uid {
        if uid != facts.our_uid && !facts.cap_sys_ptrace {
            explained = true;
            text.push_str(&format!(
                " It belongs to another user: run hot-lsp as uid {uid}, the program's user, \
                 or give hot-lsp CAP_SYS_PTRACE ({setcap})."
            ));
        }
    }
    match facts.yama_scope {
        Some(1) if !facts.cap_sys_ptrace => {
            explained = true;
            text.push_str(&format!(
                " kernel.yama.ptrace_scope is 1: a process may only be traced by its \
                 ancestors. Launch the program from hot-lsp (hot-lsp.launch) instead of \
                 attaching, or allow attaching until reboot with `sudo sysctl -w \
                 kernel.yama.ptrace_scope=0`, or give hot-lsp CAP_SYS_PTRACE ({setcap})."
            ));
        }
        Some(2) if !facts.cap_sys_ptrace => {
            explained = true;
            text.push_str(&format!(
                " kernel.yama.ptrace_scope is 2: only processes with CAP_SYS_PTRACE may \
                 trace. Give hot-lsp that capability ({setcap}), or lower the setting with \
                 `sudo sysctl -w kernel.yama.ptrace_scope=1` and launch the program from \
                 hot-lsp."
            ));
        }
        Some(3) => {
            explained = true;
            text.push_str(
                " kernel.yama.ptrace_scope is 3: ptrace is disabled on this system until the \
                 next reboot, so hot-lsp cannot swap code in any program here. Set \
                 kernel.yama.ptrace_scope to 1 or lower at boot (/etc/sysctl.d).",
            );
        }
        _ => {}
    }
    if !explained {
        text.push_str(
            " Same user and no Yama restriction: a security module (SELinux, AppArmor) or a \
             container's seccomp policy forbids ptrace, or the program is not dumpable (a \
             setuid program); in a container, run it with --cap-add=SYS_PTRACE.",
        );
    }
    text
}

/// [`ProcessError::PermissionDenied`] for `pid`, explained.
pub(crate) fn denied(pid: i32, what: &str) -> ProcessError {
    ProcessError::PermissionDenied(explain(pid, what, &facts(pid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_names_its_fix() {
        let facts = |target_uid, yama_scope, cap_sys_ptrace| Facts {
            target_uid,
            our_uid: 1000,
            yama_scope,
            cap_sys_ptrace,
        };
        // (facts, what the message must say, what it must not)
        let rows: &[(Facts, &[&str], &[&str])] = &[
            (
                facts(Some(0), None, false),
                &[
                    "uid 1000",
                    "pid 42 (uid 0)",
                    "another user",
                    "run hot-lsp as uid 0",
                    "CAP_SYS_PTRACE",
                    "setcap",
                ],
                &["ptrace_scope", "seccomp"],
            ),
            (
                facts(Some(1000), Some(1), false),
                &[
                    "ptrace_scope is 1",
                    "ancestors",
                    "hot-lsp.launch",
                    "kernel.yama.ptrace_scope=0",
                    "CAP_SYS_PTRACE",
                ],
                &["another user"],
            ),
            (
                facts(Some(1000), Some(2), false),
                &[
                    "ptrace_scope is 2",
                    "only processes with CAP_SYS_PTRACE",
                    "setcap",
                    "ptrace_scope=1",
                ],
                &["another user"],
            ),
            (
                facts(Some(1000), Some(3), true),
                &["ptrace_scope is 3", "until the next reboot"],
                &["another user"],
            ),
            (
                facts(Some(0), Some(1), true),
                &["seccomp", "SYS_PTRACE"],
                &["another user", "ptrace_scope is"],
            ),
            (
                facts(Some(1000), Some(0), false),
                &["security module", "not dumpable"],
                &["another user", "ptrace_scope is"],
            ),
        ];
        for (facts, must, must_not) in rows {
            let text = explain(42, "cannot attach", facts);
            assert!(text.starts_with("cannot attach: "), "{text}");
            for needle in *must {
                assert!(text.contains(needle), "{facts:?}: no {needle:?} in {text}");
            }
            for needle in *must_not {
                assert!(!text.contains(needle), "{facts:?}: {needle:?} in {text}");
            }
        }
    }

    #[test]
    fn facts_of_this_process() {
        let f = facts(std::process::id() as i32);
        assert_eq!(f.target_uid, Some(f.our_uid));
    }
}
