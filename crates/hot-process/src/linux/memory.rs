//! Target memory through `/proc/PID/mem`, and the `/proc/PID/maps` and `/proc/PID/auxv` views.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::{Mapping, ProcessError};

/// An open `/proc/PID/mem`. Opened once per address space (after `exec`, since the file
/// refers to one) and shared between the caller's thread (reads) and the owner thread
/// (writes): `pread`/`pwrite` carry their own offsets, so the lock is only taken for
/// writing when the program has called `exec` and the file is opened again.
pub(crate) struct ProcMem {
    pid: i32,
    file: std::sync::RwLock<File>,
}

impl ProcMem {
    pub(crate) fn open(pid: i32) -> Result<ProcMem, ProcessError> {
        Ok(ProcMem {
            pid,
            file: std::sync::RwLock::new(open_mem(pid)?),
        })
    }

    fn file(&self) -> std::sync::RwLockReadGuard<'_, File> {
        self.file.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the program has called `exec` since the file was opened, and if so opens it
    /// again for the new address space. The old file then refers to an address space that
    /// is gone: a read of any address gives 0 bytes, where an unmapped address of a live one
    /// (such as 0) gives EIO. A process that is exiting has no address space at all: a fresh
    /// file reads 0 bytes too, and that is no exec.
    pub(crate) fn reopen_after_exec(&self) -> bool {
        let mut byte = [0u8; 1];
        if !matches!(self.file().read_at(&mut byte, 0), Ok(0)) {
            return false;
        }
        let Ok(file) = open_mem(self.pid) else {
            return false;
        };
        if matches!(file.read_at(&mut byte, 0), Ok(0)) {
            return false;
        }
        *self.file.write().unwrap_or_else(|p| p.into_inner()) = file;
        true
    }

    /// Fills `buf` from `addr`; a short read (unmapped memory) is an error.
    pub(crate) fn read_exact(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file().read_exact_at(buf, addr)
    }

    /// Writes all of `bytes` at `addr`. The kernel forces the write into read-only private
    /// pages (copy on write), which `process_vm_writev` would refuse.
    pub(crate) fn write_all(&self, addr: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.file().write_all_at(bytes, addr)
    }

    pub(crate) fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, ProcessError> {
        let mut buf = vec![0u8; len];
        self.read_exact(addr, &mut buf).map_err(|err| {
            if std::fs::metadata(format!("/proc/{}/stat", self.pid)).is_err() {
                return ProcessError::Exited;
            }
            ProcessError::Other(format!(
                "cannot read {len} bytes at {addr:#x} in pid {}: {err}",
                self.pid
            ))
        })?;
        Ok(buf)
    }
}

fn open_mem(pid: i32) -> Result<File, ProcessError> {
    let path = format!("/proc/{pid}/mem");
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(file) => Ok(file),
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => Err(
            super::permission::denied(pid, &format!("cannot open {path}: {err}")),
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(ProcessError::Exited),
        Err(err) => Err(ProcessError::Other(format!("cannot open {path}: {err}"))),
    }
}

/// Parses `/proc/PID/maps`.
pub(crate) fn read_mappings(pid: i32) -> Result<Vec<Mapping>, ProcessError> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|err| proc_error(&path, err))?;
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            parse_maps_line(line)
                .ok_or_else(|| ProcessError::Other(format!("cannot parse {path} line {line:?}")))
        })
        .collect()
}

/// Maps an error reading a `/proc` file to "the program has exited" when the process is
/// gone, so callers see one consistent error.
pub(crate) fn proc_error(path: &str, err: std::io::Error) -> ProcessError {
    match err.kind() {
        std::io::ErrorKind::NotFound => ProcessError::Exited,
        std::io::ErrorKind::PermissionDenied => {
            ProcessError::PermissionDenied(format!("cannot read {path}: {err}"))
        }
        _ => ProcessError::Other(format!("cannot read {path}: {err}")),
    }
}

/// One line: `start-end perms offset dev inode   path`. The path may contain spaces and
/// keeps its " (deleted)" suffix.
pub(crate) fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let mut field = || -> Option<&str> {
        let trimmed = rest.trim_start_matches(' ');
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (word, tail) = trimmed.split_at(end);
        rest = tail;
        if word.is_empty() {
            None
        } else {
            Some(word)
        }
    };
    let range = field()?;
    let perms = field()?;
    let offset = field()?;
    let device = field()?;
    let inode = field()?;
    let (start, end) = range.split_once('-')?;
    let (major, minor) = device.split_once(':')?;
    let perms = perms.as_bytes();
    if perms.len() < 3 {
        return None;
    }
    let path = rest.trim_start_matches(' ').to_string();
    Some(Mapping {
        range: u64::from_str_radix(start, 16).ok()?..u64::from_str_radix(end, 16).ok()?,
        readable: perms[0] == b'r',
        writable: perms[1] == b'w',
        executable: perms[2] == b'x',
        offset: u64::from_str_radix(offset, 16).ok()?,
        path,
        device: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
    })
}

/// The `(key, value)` pairs of `/proc/PID/auxv`, up to `AT_NULL`.
pub(crate) fn read_auxv(pid: i32) -> Result<Vec<(u64, u64)>, ProcessError> {
    let path = format!("/proc/{pid}/auxv");
    let bytes = std::fs::read(&path).map_err(|err| proc_error(&path, err))?;
    let mut entries = Vec::new();
    for pair in bytes.chunks_exact(16) {
        let key = u64::from_ne_bytes(pair[..8].try_into().unwrap_or_default());
        let value = u64::from_ne_bytes(pair[8..].try_into().unwrap_or_default());
        if key == 0 {
            break;
        }
        entries.push((key, value));
    }
    Ok(entries)
}

/// The target of `/proc/PID/exe`, as `/proc/PID/maps` spells it (with " (deleted)" when the
/// file was replaced on disk), to recognise the executable's own mappings.
pub(crate) fn exe_link(pid: i32) -> Result<PathBuf, ProcessError> {
    let path = format!("/proc/{pid}/exe");
    std::fs::read_link(&path).map_err(|err| proc_error(&path, err))
}

/// The address range covered by the executable's own mappings.
pub(crate) fn image_range(
    pid: i32,
    maps: &[Mapping],
) -> Result<std::ops::Range<u64>, ProcessError> {
    let exe = exe_link(pid)?;
    let exe = exe.to_string_lossy();
    let mut image: Option<std::ops::Range<u64>> = None;
    for mapping in maps.iter().filter(|m| m.path == exe) {
        image = Some(match image {
            None => mapping.range.clone(),
            Some(r) => r.start.min(mapping.range.start)..r.end.max(mapping.range.end),
        });
    }
    image.ok_or_else(|| {
        ProcessError::Other(format!(
            "no mapping of the executable {exe} in /proc/{pid}/maps"
        ))
    })
}

/// Where the program's `brk` heap starts (`start_brk`, field 47 of `/proc/PID/stat`), known
/// even before the first allocation maps `[heap]`. `None` when the kernel hides it.
pub(crate) fn start_brk(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_brk(&stat)
}

fn parse_start_brk(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts with field 3 (state): field 47 is the 45th word.
    let value: u64 = rest.split_whitespace().nth(44)?.parse().ok()?;
    (value != 0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines_with_spaces_and_deleted_suffix() {
        let m = parse_maps_line(
            "555555554000-555555555000 r-xp 00001000 fd:01 1234                       /tmp/a b/prog (deleted)",
        )
        .expect("parse");
        assert_eq!(m.range, 0x555555554000..0x555555555000);
        assert!(m.readable && !m.writable && m.executable);
        assert_eq!(m.offset, 0x1000);
        assert_eq!(m.device, (0xfd, 1));
        assert_eq!(m.inode, 1234);
        assert_eq!(m.path, "/tmp/a b/prog (deleted)");
        let anon = parse_maps_line("7ffd1000-7ffd2000 rw-p 00000000 00:00 0").expect("anon");
        assert_eq!(anon.path, "");
        assert!(anon.writable && !anon.executable);
    }

    #[test]
    fn start_brk_of_this_process_and_of_a_stat_line() {
        let line = "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 \
                    5 1000 50 18446744073709551615 4194304 4198400 140737488346112 0 0 0 0 \
                    0 0 0 0 0 17 0 0 0 0 0 0 4210688 4211200 4214784 140737488347000 \
                    140737488347010 140737488347010 140737488351000 0";
        assert_eq!(parse_start_brk(line), Some(4214784));
        assert!(start_brk(std::process::id() as i32).is_some());
    }
}
