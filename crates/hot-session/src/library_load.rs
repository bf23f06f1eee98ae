//! Which load of a shared library the process maps: a library `dlclose`d and `dlopen`ed
//! again — at another address, or at the very same one (the usual case: ld.so reuses the
//! range it freed) — is another load, whose code may differ (a plugin rebuilt in between)
//! and which holds none of the entry jumps hot-lsp wrote into the old one.
//!
//! A load is known by a [`LoadKey`]: the file the kernel maps and the bias, that file's
//! device and inode (a rebuilt file renamed over the old one is a new inode), and what
//! tells its contents apart (modification and change times, size: a file rewritten in
//! place keeps its inode). A key is made from the memory map and one `stat`, so it is
//! cheap enough to compare often, before any library file is read; and a load the keys
//! cannot tell apart (the same file loaded again where it was) is caught by the bytes
//! hot-lsp wrote into it ([`LibraryWrites`]): they are gone from the new load. Those bytes
//! also keep a file merely touched or rewritten under a live mapping (its times change, its
//! inode and address do not) from being taken for a reload while they are all still there
//! (`Program::is_reload`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use hot_process::{Debuggee, Mapping, Verify};

/// One load of a library, as [`key_of`] tells it from the memory map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoadKey {
    /// The file the kernel maps (`mapped_path`).
    pub path: String,
    pub bias: u64,
    /// Of the mapping at file offset 0 nearest the bias.
    pub device: (u32, u32),
    pub inode: u64,
    /// The file's modification and change times (seconds, nanoseconds) and size, while
    /// `path` names the inode mapped; `None` once it names another file (the one mapped
    /// was replaced on disk).
    pub contents: Option<[i64; 5]>,
}

/// The key of the load of `path` at `bias` in `maps`.
pub(crate) fn key_of(maps: &[Mapping], path: &str, bias: u64) -> LoadKey {
    let mapping = maps
        .iter()
        .filter(|m| m.path == path && m.offset == 0)
        .min_by_key(|m| m.range.start.abs_diff(bias));
    let (device, inode) = mapping.map_or(((0, 0), 0), |m| (m.device, m.inode));
    LoadKey {
        path: path.to_owned(),
        bias,
        device,
        inode,
        contents: contents_of(path, device, inode),
    }
}

/// The times and size of the file at `path` if it is the inode `(device, inode)`.
fn contents_of(path: &str, device: (u32, u32), inode: u64) -> Option<[i64; 5]> {
    let meta = std::fs::metadata(path).ok()?;
    ((crate::program::dev_major_minor(meta.dev()), meta.ino()) == (device, inode)).then(|| {
        [
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
            meta.size() as i64,
        ]
    })
}

/// Whether the load `key` describes is still the one mapped: same bias, same inode, same
/// contents (the memory map and one `stat`).
pub(crate) fn still_mapped(maps: &[Mapping], key: &LoadKey) -> bool {
    key_of(maps, &key.path, key.bias) == *key
}

/// The entry bytes hot-lsp wrote into each library (by path), as they are there now: the
/// latest write at each address. A load that lacks them is not the one they were written
/// into.
#[derive(Debug, Default)]
pub(crate) struct LibraryWrites {
    by_library: HashMap<String, Vec<(u64, Vec<u8>)>>,
}

impl LibraryWrites {
    /// `writes` (address, bytes) went into `library`.
    pub(crate) fn record(&mut self, library: &str, writes: impl Iterator<Item = (u64, Vec<u8>)>) {
        let list = self.by_library.entry(library.to_owned()).or_default();
        for (addr, bytes) in writes {
            list.retain(|(at, _)| *at != addr);
            list.push((addr, bytes));
        }
    }

    /// The library is another load now: what was written into the old one is gone.
    pub(crate) fn forget(&mut self, library: &str) {
        self.by_library.remove(library);
    }

    /// Whether a write into `library` is recorded.
    pub(crate) fn has(&self, library: &str) -> bool {
        self.by_library.get(library).is_some_and(|l| !l.is_empty())
    }

    /// Whether a write recorded for `library` is no longer there (or cannot be read): the
    /// library was unloaded, or loaded again over the same range.
    pub(crate) fn gone(&self, debuggee: &Debuggee, library: &str) -> bool {
        self.by_library.get(library).is_some_and(|list| {
            list.iter().any(|(addr, bytes)| {
                debuggee
                    .read_memory(*addr, bytes.len())
                    .map_or(true, |now| now != *bytes)
            })
        })
    }

    /// The recorded writes of `library`, as checks of a commit into it
    /// ([`hot_process::WritePlan::verify`]).
    pub(crate) fn verify(&self, library: &str) -> Vec<Verify> {
        self.by_library
            .get(library)
            .into_iter()
            .flatten()
            .map(|(addr, bytes)| Verify {
                addr: *addr,
                bytes: bytes.clone(),
                what: format!("an entry jump hot-lsp wrote into {library}"),
            })
            .collect()
    }
}
