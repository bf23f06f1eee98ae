//! The parts of the macOS debuggee that make no Apple call, compiled and tested everywhere
//! (`macos/debuggee.rs` makes the calls): the `posix_spawn` flags, the command (program
//! path, `argv`, environment) as C strings, the decoding of a wait status into
//! [`ProcessEvent::Exited`], where an arena goes among the task's VM regions
//! ([`arena_address`]), and where the dyld shared cache is, from dyld's
//! `dyld_all_image_infos` ([`shared_cache_location`]).
//!
//! The launch (`macos/debuggee.rs`): `posix_spawn` with [`spawn_flags`] —
//! `POSIX_SPAWN_START_SUSPENDED` so that `task_for_pid` is taken before the program runs a
//! single instruction (a refused task port then kills a program that never ran, and the
//! swap machinery sees the whole process from its first instruction),
//! `POSIX_SPAWN_SETSID` for a session of its own (as Linux's `setsid`),
//! `POSIX_SPAWN_SETSIGDEF`/`SETSIGMASK` so it starts with default signal actions and an
//! empty mask whatever the server's are, `POSIX_SPAWN_CLOEXEC_DEFAULT` so it inherits only
//! the three descriptors given, and `_POSIX_SPAWN_DISABLE_ASLR` when
//! [`LaunchSpec::disable_aslr`] asks (the private flag `lldb` uses; the kernel honours it for
//! a process that may be debugged). The working directory is a file action
//! (`posix_spawn_file_actions_addchdir_np`), and a relative program path is joined to it
//! here, so the program runs the file the user means either way.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{LaunchSpec, ProcessError, ProcessEvent};

/// `posix_spawn` attribute flags (`spawn.h`, and `_POSIX_SPAWN_DISABLE_ASLR` from
/// `spawn_private.h`).
pub(crate) const POSIX_SPAWN_SETSIGDEF: i16 = 0x0004;
pub(crate) const POSIX_SPAWN_SETSIGMASK: i16 = 0x0008;
pub(crate) const POSIX_SPAWN_START_SUSPENDED: i16 = 0x0080;
pub(crate) const POSIX_SPAWN_DISABLE_ASLR: i16 = 0x0100;
pub(crate) const POSIX_SPAWN_SETSID: i16 = 0x0400;
pub(crate) const POSIX_SPAWN_CLOEXEC_DEFAULT: i16 = 0x4000;

/// The `posix_spawnattr_setflags` flags of a launch (see the module documentation).
pub(crate) fn spawn_flags(disable_aslr: bool) -> i16 {
    let mut flags = POSIX_SPAWN_START_SUSPENDED
        | POSIX_SPAWN_SETSID
        | POSIX_SPAWN_SETSIGDEF
        | POSIX_SPAWN_SETSIGMASK
        | POSIX_SPAWN_CLOEXEC_DEFAULT;
    if disable_aslr {
        flags |= POSIX_SPAWN_DISABLE_ASLR;
    }
    flags
}

/// What `posix_spawn` is given: the file to execute, `argv` and `envp`, and the directory
/// to change to first.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SpawnCommand {
    pub(crate) program: CString,
    pub(crate) argv: Vec<CString>,
    pub(crate) env: Vec<CString>,
    pub(crate) cwd: Option<CString>,
}

fn c_string(path: &Path, what: &str, s: &OsStr) -> Result<CString, ProcessError> {
    CString::new(s.as_bytes()).map_err(|_| ProcessError::Launch {
        path: path.to_path_buf(),
        message: format!("{what} contains a NUL byte: {}", s.to_string_lossy()),
    })
}

/// The command of `spec`, with `parent` the server's environment: `argv[0]` is the program
/// as given; the environment is the server's with `spec.env` over it (a key given again
/// replaces the value in place, a new one comes last).
pub(crate) fn spawn_command(
    spec: &LaunchSpec,
    parent: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<SpawnCommand, ProcessError> {
    let path = &spec.path;
    let program: PathBuf = if path.is_relative() && !spec.cwd.as_os_str().is_empty() {
        spec.cwd.join(path)
    } else {
        path.clone()
    };
    let mut argv = vec![c_string(path, "the program path", path.as_os_str())?];
    for arg in &spec.args {
        argv.push(c_string(path, "an argument", arg)?);
    }
    let mut env: Vec<(OsString, OsString)> = parent.into_iter().collect();
    for (key, value) in &spec.env {
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((key.clone(), value.clone())),
        }
    }
    let env = env
        .into_iter()
        .map(|(k, v)| {
            if k.as_bytes().contains(&b'=') || k.is_empty() {
                return Err(ProcessError::Launch {
                    path: path.clone(),
                    message: format!(
                        "environment variable name {:?} is empty or contains '='",
                        k.to_string_lossy()
                    ),
                });
            }
            let mut entry = k;
            entry.push("=");
            entry.push(v);
            c_string(path, "an environment variable", &entry)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = if spec.cwd.as_os_str().is_empty() {
        None
    } else {
        Some(c_string(
            path,
            "the working directory",
            spec.cwd.as_os_str(),
        )?)
    };
    Ok(SpawnCommand {
        program: c_string(path, "the program path", program.as_os_str())?,
        argv,
        env,
        cwd,
    })
}

/// A `posix_spawn` that failed with `errno`: the program could not be started, with the
/// system's reason (`ENOENT`, `EACCES`, `ENOEXEC`, `EBADARCH`...).
pub(crate) fn spawn_error(spec: &LaunchSpec, errno: i32) -> ProcessError {
    ProcessError::Launch {
        path: spec.path.clone(),
        message: std::io::Error::from_raw_os_error(errno).to_string(),
    }
}

/// The exit event of a `waitpid` status (the BSD encoding macOS and Linux share: the low 7
/// bits are the terminating signal, 0 for a normal exit, whose code is bits 8-15; 0x7f is a
/// stop). `None` for a stopped or continued process, which has not exited.
pub(crate) fn exit_event(status: i32) -> Option<ProcessEvent> {
    let low = status & 0x7f;
    match low {
        0 => Some(ProcessEvent::Exited {
            code: Some((status >> 8) & 0xff),
            signal: None,
        }),
        // Stopped, and continued (macOS: SIGCONT as the stop signal, 0x137f; Linux: 0xffff).
        0x7f => None,
        signal => Some(ProcessEvent::Exited {
            code: None,
            signal: Some(signal),
        }),
    }
}

/// The top of user space on macOS (47 bits on x86-64 and arm64).
const USER_TOP: u64 = 1 << 47;

/// Where to allocate an arena of `size` bytes (`mach_vm_allocate` with `VM_FLAGS_FIXED`) so
/// that every byte of it is within `reach` of every address of `near` (±2 GiB for x86-64's
/// rel32, which also keeps arm64's `adrp` in reach): the highest free page-aligned range
/// below `near.start`, else the lowest above `near.end`. `mapped` are the task's VM regions
/// (any order; `__PAGEZERO` among them keeps arenas out of the first 4 GiB of an x86-64
/// executable). `None` when no free range in reach is large enough.
pub(crate) fn arena_address(
    mapped: &[std::ops::Range<u64>],
    near: std::ops::Range<u64>,
    size: u64,
    page: u64,
    reach: u64,
) -> Option<u64> {
    let page = page.max(1);
    let size = size.checked_next_multiple_of(page)?;
    let mut regions: Vec<std::ops::Range<u64>> = mapped.to_vec();
    regions.sort_by_key(|r| r.start);
    // Free gaps between the regions, from the first page (never address 0) to the top.
    let mut gaps = Vec::new();
    let mut cursor = page;
    for r in &regions {
        if r.start > cursor {
            gaps.push(cursor..r.start);
        }
        cursor = cursor.max(r.end);
    }
    if cursor < USER_TOP {
        gaps.push(cursor..USER_TOP);
    }
    let below = gaps.iter().rev().find_map(|g| {
        let end = g.end.min(near.start) / page * page;
        let start = end.checked_sub(size)?;
        (start >= g.start && near.end.saturating_sub(start) <= reach).then_some(start)
    });
    below.or_else(|| {
        gaps.iter().find_map(|g| {
            let start = g.start.max(near.end).checked_next_multiple_of(page)?;
            let end = start.checked_add(size)?;
            (end <= g.end && end - near.start.min(start) <= reach).then_some(start)
        })
    })
}

/// Where the dyld shared cache is mapped in a process, from its `dyld_all_image_infos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SharedCacheLocation {
    /// The cache's first byte (its header) in the process.
    pub(crate) base: u64,
    /// Added to every address the cache's header lists.
    pub(crate) slide: u64,
    pub(crate) uuid: [u8; 16],
}

/// Offsets in the 64-bit `dyld_all_image_infos` (dyld's `mach-o/dyld_images.h`): `version`
/// at 0, `processDetachedFromSharedRegion` at 24, `sharedCacheSlide` at 152 (version 12+),
/// `sharedCacheUUID` at 160 (13+), `sharedCacheBaseAddress` at 176 (15+, macOS 10.12).
const INFOS_DETACHED: usize = 24;
const INFOS_CACHE_SLIDE: usize = 152;
const INFOS_CACHE_UUID: usize = 160;
const INFOS_CACHE_BASE: usize = 176;
/// Bytes of `dyld_all_image_infos` [`shared_cache_location`] reads.
pub(crate) const ALL_IMAGE_INFOS_PREFIX: usize = INFOS_CACHE_BASE + 8;

/// The shared cache of a process from the first [`ALL_IMAGE_INFOS_PREFIX`] bytes of its
/// `dyld_all_image_infos` (at `task_info(TASK_DYLD_INFO).all_image_info_addr`). A process
/// detached from the shared region, a structure older than version 15 or a cache at 0 is an
/// error saying which: then new library calls cannot be resolved through the cache.
pub(crate) fn shared_cache_location(infos: &[u8]) -> Result<SharedCacheLocation, String> {
    let bytes = infos.get(..ALL_IMAGE_INFOS_PREFIX).ok_or_else(|| {
        format!(
            "dyld_all_image_infos: {} bytes read, {ALL_IMAGE_INFOS_PREFIX} needed",
            infos.len()
        )
    })?;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let version = u32::from_le_bytes(bytes[..4].try_into().unwrap_or([0; 4]));
    if version < 15 {
        return Err(format!(
            "dyld_all_image_infos version {version} has no shared cache address (15+, macOS 10.12)"
        ));
    }
    if bytes[INFOS_DETACHED] != 0 {
        return Err("the process is detached from the shared region".into());
    }
    let base = u64_at(INFOS_CACHE_BASE);
    if base == 0 {
        return Err("the process maps no dyld shared cache".into());
    }
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&bytes[INFOS_CACHE_UUID..INFOS_CACHE_UUID + 16]);
    Ok(SharedCacheLocation {
        base,
        slide: u64_at(INFOS_CACHE_SLIDE),
        uuid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    #[test]
    fn macho_task_launch_spawn_flags_start_suspended_in_a_session_and_disable_aslr() {
        for (disable, want) in [
            (false, 0x4000 | 0x0400 | 0x0080 | 0x0008 | 0x0004),
            (true, 0x4000 | 0x0400 | 0x0100 | 0x0080 | 0x0008 | 0x0004),
        ] {
            assert_eq!(spawn_flags(disable), want as i16, "disable_aslr {disable}");
        }
    }

    fn c(s: &str) -> CString {
        CString::new(s).expect("no NUL")
    }

    #[test]
    fn macho_task_launch_spawn_command_argv_environment_and_paths() {
        let parent = || {
            vec![
                (OsString::from("PATH"), OsString::from("/usr/bin")),
                (OsString::from("HOME"), OsString::from("/Users/me")),
            ]
        };
        // (path, cwd, args, env, program, argv, env, cwd)
        type Row = (
            &'static str,
            &'static str,
            &'static [&'static str],
            &'static [(&'static str, &'static str)],
            &'static str,
            &'static [&'static str],
            &'static [&'static str],
            Option<&'static str>,
        );
        let rows: &[Row] = &[
            (
                "/bin/demo",
                "",
                &[],
                &[],
                "/bin/demo",
                &["/bin/demo"],
                &["PATH=/usr/bin", "HOME=/Users/me"],
                None,
            ),
            (
                "./demo",
                "/w",
                &["-v", "x y"],
                &[],
                "/w/./demo",
                &["./demo", "-v", "x y"],
                &["PATH=/usr/bin", "HOME=/Users/me"],
                Some("/w"),
            ),
            (
                "demo",
                "/w",
                &[],
                &[("HOME", "/tmp"), ("HOT", "1")],
                "/w/demo",
                &["demo"],
                &["PATH=/usr/bin", "HOME=/tmp", "HOT=1"],
                Some("/w"),
            ),
        ];
        for &(path, cwd, args, env, program, argv, want_env, want_cwd) in rows {
            let spec = LaunchSpec {
                path: path.into(),
                args: args.iter().map(OsString::from).collect(),
                cwd: cwd.into(),
                env: env
                    .iter()
                    .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                    .collect(),
                disable_aslr: false,
            };
            let got = spawn_command(&spec, parent()).expect(path);
            assert_eq!(got.program, c(program), "{path}");
            assert_eq!(
                got.argv,
                argv.iter().map(|a| c(a)).collect::<Vec<_>>(),
                "{path}"
            );
            assert_eq!(
                got.env,
                want_env.iter().map(|a| c(a)).collect::<Vec<_>>(),
                "{path}"
            );
            assert_eq!(got.cwd, want_cwd.map(c), "{path}");
        }
        // A NUL or a bad variable name is a launch error naming the program.
        let bad = [
            LaunchSpec {
                path: "/bin/demo".into(),
                args: vec![OsString::from("a\0b")],
                ..Default::default()
            },
            LaunchSpec {
                path: "/bin/demo".into(),
                env: vec![(OsString::from("A=B"), OsString::from("1"))],
                ..Default::default()
            },
        ];
        for spec in bad {
            match spawn_command(&spec, parent()) {
                Err(e @ ProcessError::Launch { .. }) => {
                    assert_eq!(e.code(), "launch-failed");
                    assert!(e.to_string().contains("/bin/demo"), "{e}");
                }
                other => panic!("{other:?}"),
            }
        }
        let e = spawn_error(
            &LaunchSpec {
                path: "/nope".into(),
                ..Default::default()
            },
            libc::ENOENT,
        );
        assert!(
            e.to_string().contains("/nope") && e.to_string().contains("No such file"),
            "{e}"
        );
    }

    #[test]
    fn macho_task_arena_address_in_reach_of_the_image() {
        const G: u64 = 1 << 30;
        const PAGE: u64 = 0x4000;
        // (mapped regions, near, size, expected start)
        type Row = (&'static [(u64, u64)], (u64, u64), u64, Option<u64>);
        let rows: &[Row] = &[
            // A PIE right above __PAGEZERO (x86-64): nothing below it but the zero page's
            // end, so the arena goes right after the image.
            (
                &[(0, 4 * G), (4 * G, 4 * G + 0x10_0000)],
                (4 * G, 4 * G + 0x10_0000),
                0x20_0000,
                Some(4 * G + 0x10_0000),
            ),
            // A slid image with free space below: the highest range below it.
            (
                &[(0, 4 * G), (6 * G, 6 * G + 0x8000)],
                (6 * G, 6 * G + 0x8000),
                0x10_0000,
                Some(6 * G - 0x10_0000),
            ),
            // A region right below the image: the gap below that one.
            (
                &[(0, 4 * G), (6 * G - 0x4000, 6 * G), (6 * G, 6 * G + 0x8000)],
                (6 * G, 6 * G + 0x8000),
                0x10_0000,
                Some(6 * G - 0x4000 - 0x10_0000),
            ),
            // Sizes round up to pages.
            (
                &[(0, 4 * G), (6 * G, 6 * G + 0x8000)],
                (6 * G, 6 * G + 0x8000),
                1,
                Some(6 * G - PAGE),
            ),
            // Everything within 2 GiB taken: none.
            (
                &[(0, 4 * G), (4 * G, 9 * G)],
                (6 * G, 6 * G + 0x8000),
                0x10_0000,
                None,
            ),
        ];
        for &(mapped, near, size, want) in rows {
            let mapped: Vec<_> = mapped.iter().map(|&(a, b)| a..b).collect();
            let got = arena_address(&mapped, near.0..near.1, size, PAGE, 2 * G);
            assert_eq!(got, want, "{mapped:x?} near {near:x?}");
            if let Some(start) = got {
                let end = start + size.next_multiple_of(PAGE);
                assert!(
                    mapped.iter().all(|r| r.end <= start || r.start >= end),
                    "overlap"
                );
                assert!(end.max(near.1) - start.min(near.0) <= 2 * G, "reach");
            }
        }
    }

    #[test]
    fn macho_task_shared_cache_location_from_all_image_infos() {
        let infos = |version: u32, detached: u8, slide: u64, base: u64| {
            let mut b = vec![0u8; ALL_IMAGE_INFOS_PREFIX + 64];
            b[..4].copy_from_slice(&version.to_le_bytes());
            b[INFOS_DETACHED] = detached;
            b[152..160].copy_from_slice(&slide.to_le_bytes());
            b[160..176].copy_from_slice(&[0x5a; 16]);
            b[176..184].copy_from_slice(&base.to_le_bytes());
            b
        };
        let got = shared_cache_location(&infos(17, 0, 0x0a00_0000, 0x1_8a00_0000)).expect("ok");
        assert_eq!(
            got,
            SharedCacheLocation {
                base: 0x1_8a00_0000,
                slide: 0x0a00_0000,
                uuid: [0x5a; 16]
            }
        );
        let rows: &[(Vec<u8>, &str)] = &[
            (infos(14, 0, 0, 0x1_8000_0000), "version 14"),
            (infos(17, 1, 0, 0x1_8000_0000), "detached"),
            (infos(17, 0, 0, 0), "no dyld shared cache"),
            (vec![0; 100], "100 bytes read"),
        ];
        for (bytes, needle) in rows {
            let e = shared_cache_location(bytes).expect_err(needle);
            assert!(e.contains(needle), "{e}");
        }
    }

    /// Real wait statuses of real processes (Linux encodes them as macOS does), decoded.
    #[test]
    fn macho_task_launch_exit_events_of_real_wait_statuses() {
        let rows: &[(&str, Option<i32>, Option<i32>)] = &[
            ("exit 0", Some(0), None),
            ("exit 3", Some(3), None),
            ("exit 255", Some(255), None),
            ("kill -KILL $$", None, Some(9)),
            ("kill -TERM $$", None, Some(15)),
            ("kill -SEGV $$", None, Some(11)),
        ];
        for &(script, code, signal) in rows {
            let status = Command::new("sh")
                .args(["-c", script])
                .status()
                .expect("running sh");
            assert_eq!(
                exit_event(status.into_raw()),
                Some(ProcessEvent::Exited { code, signal }),
                "{script}: raw {:#x}",
                status.into_raw()
            );
        }
        // Stopped (SIGSTOP) and continued are not exits.
        assert_eq!(exit_event(0x137f), None);
        assert_eq!(exit_event(0xffff), None);
    }
}
