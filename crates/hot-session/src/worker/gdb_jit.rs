//! Debuggers see the new code: each swap's bodies are announced through GDB's JIT interface,
//! which gdb (and lldb) read to name, break in and backtrace through code that no loaded
//! file describes.
//!
//! The interface is two symbols a debugger looks up in every loaded object:
//! `__jit_debug_descriptor` (a version, an action, and a doubly linked list of entries, each
//! pointing at an in-memory object file) and `__jit_debug_register_code` (an empty function a
//! debugger keeps a breakpoint on, called after each change). A debugger that attaches
//! walks the list and loads every entry's object; one already attached learns of a change
//! when the program calls the function.
//!
//! The user's program defines neither, and its build must not change: hot-lsp provides them
//! in a tiny shared library ([`HELPER_SOURCE`], compiled once with `cc` into the user's
//! cache, under a name that hashes its source) loaded into the target by an injected
//! `dlopen` (in libc since glibc 2.34; `dlsym` finds the descriptor). The library must stay
//! on disk: a debugger that attaches later reads its symbols from the path the dynamic
//! linker recorded.
//!
//! Each committed patch with placed bodies gets an entry: [`hot_object::jit::debug_object`]
//! (symbols, a line table at runtime addresses, the patch's unwind table) and the entry itself are written into a data
//! arena of their own, then linked at the head of the list; undo unlinks the entry of the
//! swap it reverts. The list is only ever read by a debugger, so the writes need no stop.
//! Nothing calls `__jit_debug_register_code`: without a debugger there is nobody to tell,
//! and a debugger that holds the program (hot-process then swaps through `/proc/PID/mem`,
//! `held.rs`) rules out a call, so such a debugger sees the swap only when it attaches again
//! (it walks the list then). The library is loaded from a thread blocked in a system call
//! only (`dlopen` takes the loader's and malloc's locks), retried on later swaps when none
//! is. A relaunch or an exec starts with a new, empty interface. Whatever fails here is logged and never fails a swap: the
//! program runs the new code either way.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hot_link::Patch;
use hot_process::{CallLimits, Protection};

use super::Worker;

/// The library that defines the interface's two symbols (version 1 of the protocol, the only
/// one gdb and lldb know).
const HELPER_SOURCE: &str = r#"/* hot-lsp's debugger interface: GDB's JIT protocol, version 1. */
#include <stdint.h>
struct jit_code_entry {
    struct jit_code_entry *next_entry, *prev_entry;
    const char *symfile_addr;
    uint64_t symfile_size;
};
struct jit_descriptor {
    uint32_t version, action_flag;
    struct jit_code_entry *relevant_entry, *first_entry;
};
__attribute__((noinline, used, visibility("default"))) void __jit_debug_register_code(void) {
    __asm__ __volatile__("" ::: "memory");
}
__attribute__((used, visibility("default"))) struct jit_descriptor __jit_debug_descriptor = {1, 0, 0, 0};
"#;

/// `jit_actions_t`.
const JIT_REGISTER_FN: u32 = 1;
const JIT_UNREGISTER_FN: u32 = 2;
/// Offsets in `struct jit_descriptor` and `struct jit_code_entry` (x86-64).
const ACTION_FLAG: u64 = 4;
const RELEVANT_ENTRY: u64 = 8;
const FIRST_ENTRY: u64 = 16;
const NEXT_ENTRY: u64 = 0;
const PREV_ENTRY: u64 = 8;
const ENTRY_SIZE: u64 = 32;
/// `RTLD_NOW`.
const RTLD_NOW: u64 = 2;
/// Data arenas for the objects are mapped this big (or as big as one object needs).
const ARENA_SIZE: u64 = 256 * 1024;
/// `dlopen` takes the loader's lock, which a stopped thread may hold: the others are let go
/// after `stopped`, as for the unwinder's registration (`unwind.rs`).
const CALL_LIMITS: CallLimits = CallLimits {
    stopped: Duration::from_secs(2),
    total: Duration::from_secs(60),
};

/// The interface in one process.
#[derive(Debug)]
pub(crate) enum DebuggerInterface {
    /// Not loaded yet: the next swap with bodies tries. `arena`: the data arena an earlier
    /// try mapped (reused, not mapped again); `tries`: how many failed for a reason that may
    /// pass (no thread blocked in a system call, a stop that failed).
    NotLoaded { arena: Option<u64>, tries: u32 },
    /// Cannot be provided in this process (said once in the log).
    Unavailable,
    Ready {
        descriptor: u64,
        /// Free bytes of the current data arena.
        free: Range<u64>,
    },
}

impl Default for DebuggerInterface {
    fn default() -> Self {
        DebuggerInterface::NotLoaded {
            arena: None,
            tries: 0,
        }
    }
}

/// Loading is given up after this many tries that failed for a passing reason.
const LOAD_TRIES: u32 = 8;

/// Why loading failed: for good (no `dlopen`, the library cannot be built or loaded), or
/// for now.
enum LoadError {
    Permanent(String),
    Transient(String),
}

/// Where the helper library lives: the user's cache (it must outlive the session), or a
/// private folder in the temporary directory when there is no home. Only absolute paths:
/// the program resolves the name `dlopen` gets against its own working directory.
fn helper_path() -> Option<PathBuf> {
    let absolute = |p: PathBuf| p.is_absolute().then_some(p);
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .and_then(|p| absolute(PathBuf::from(p)))
        .or_else(|| {
            std::env::var_os("HOME").and_then(|h| absolute(PathBuf::from(h).join(".cache")))
        })
        .or_else(|| absolute(std::env::temp_dir().join(format!("hot-lsp-{}", uid()))))?;
    // FNV-1a of the source: a changed source gets a new file, never one a running program
    // has mapped rewritten under it.
    let hash = HELPER_SOURCE
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    Some(
        cache
            .join("hot-lsp")
            .join(format!("hot-lsp-jit-{hash:016x}.so")),
    )
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// `path` belongs to this user and nobody else may write it: a library someone else could
/// replace must never be loaded into the user's program.
fn private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.uid() != uid() || meta.mode() & 0o022 != 0 || meta.file_type().is_symlink() {
        return Err(format!(
            "{} is not this user's alone (owner, mode {:o}): not loading the debugger \
             interface from there",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Sessions of one server build the helper one at a time.
static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The helper library on disk, compiled now if it is not there yet: built under a unique
/// temporary name in the same folder, checked, and renamed into place, so neither a
/// concurrent session nor another server ever sees half a file. The folder and the file must
/// be this user's alone.
fn ensure_helper() -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let path = helper_path().ok_or("no absolute cache folder (HOME is not set)")?;
    let dir = path.parent().ok_or("no cache folder")?;
    let _building = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    private(dir)?;
    if path.is_file() {
        private(&path)?;
        return Ok(path);
    }
    let work = tempfile::Builder::new()
        .prefix(".hot-lsp-jit-")
        .tempdir_in(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let source = work.path().join("jit.c");
    let built = work.path().join("jit.so");
    std::fs::write(&source, HELPER_SOURCE).map_err(|e| format!("{}: {e}", source.display()))?;
    let output = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&built)
        .arg(&source)
        .output()
        .map_err(|e| format!("running cc: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cc failed on the debugger interface library: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let bytes = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    if !bytes
        .windows(b"__jit_debug_descriptor".len())
        .any(|w| w == b"__jit_debug_descriptor")
    {
        return Err("the debugger interface library was built without its symbols".into());
    }
    std::fs::rename(&built, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn c_string(text: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = text.as_os_str().as_bytes().to_vec();
    bytes.push(0);
    bytes
}

fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(w)
}

impl Worker {
    /// Announce the bodies `patch` placed (just committed) to debuggers. Returns the entry
    /// to unlink when the swap is undone.
    pub(super) fn announce_to_debuggers(&mut self, patch: &Patch) -> Option<u64> {
        if patch.bodies.is_empty() {
            return None;
        }
        let functions: Vec<hot_object::jit::JitFunction<'_>> = patch
            .bodies
            .iter()
            .map(|b| hot_object::jit::JitFunction {
                name: &b.name,
                addr: b.addr.0,
                size: b.size,
                lines: &b.lines,
            })
            .collect();
        // The first unit's unwind table, as written into the arena (see `jit.rs`).
        let unwind = patch
            .unwind
            .first()
            .and_then(|table| patch.writes.iter().find(|w| w.addr == table.frame))
            .map(|w| hot_object::jit::JitUnwind {
                addr: w.addr.0,
                bytes: &w.bytes,
            });
        let object = match hot_object::jit::debug_object(&functions, unwind, Path::new("/")) {
            Ok(object) => object,
            Err(e) => {
                tracing::warn!("the debugger description of the new code was not made: {e}");
                return None;
            }
        };
        match self.register_jit_object(&object) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!("debuggers were not told about the new code: {e}");
                None
            }
        }
    }

    fn register_jit_object(&mut self, object: &[u8]) -> Result<Option<u64>, String> {
        let Some(descriptor) = self.debugger_interface() else {
            return Ok(None);
        };
        let need = ENTRY_SIZE + object.len() as u64;
        let entry = self.jit_alloc(need)?;
        let program = self.program.as_mut().ok_or("no program")?;
        let debuggee = &program.debuggee;
        let first = word(
            &debuggee
                .read_memory(descriptor + FIRST_ENTRY, 8)
                .map_err(|e| e.to_string())?,
        );
        let symfile = entry + ENTRY_SIZE;
        let mut record = Vec::with_capacity(need as usize);
        for value in [first, 0, symfile, object.len() as u64] {
            record.extend_from_slice(&value.to_le_bytes());
        }
        record.extend_from_slice(object);
        let write = |addr: u64, bytes: &[u8]| {
            debuggee
                .write_memory(addr, bytes, "the debugger interface's list")
                .map_err(|e| e.to_string())
        };
        // The entry, whole, before anything points at it; then the list's head (from here on
        // the entry is listed: a debugger walks the list by `next_entry` only); then the
        // back link and the action. A failure after the head is logged, and the entry is
        // still returned, so undo unlinks it.
        write(entry, &record)?;
        write(descriptor + FIRST_ENTRY, &entry.to_le_bytes())?;
        let rest = (|| {
            if first != 0 {
                write(first + PREV_ENTRY, &entry.to_le_bytes())?;
            }
            write(descriptor + RELEVANT_ENTRY, &entry.to_le_bytes())?;
            write(descriptor + ACTION_FLAG, &JIT_REGISTER_FN.to_le_bytes())
        })();
        if let Err(e) = rest {
            tracing::warn!("the debugger interface's list was left half updated: {e}");
        }
        Ok(Some(entry))
    }

    /// Unlink `entry` (an undone swap's) from the list.
    pub(super) fn withdraw_from_debuggers(&mut self, entry: u64) {
        let DebuggerInterface::Ready { descriptor, .. } = self
            .program
            .as_ref()
            .map_or(&DebuggerInterface::Unavailable, |p| &p.debugger_interface)
        else {
            return;
        };
        let descriptor = *descriptor;
        let Some(program) = self.program.as_ref() else {
            return;
        };
        let debuggee = &program.debuggee;
        let result = (|| -> Result<(), hot_process::ProcessError> {
            let links = debuggee.read_memory(entry, 16)?;
            let (next, prev) = (word(&links[0..8]), word(&links[8..16]));
            let what = "the debugger interface's list";
            if prev == 0 {
                debuggee.write_memory(descriptor + FIRST_ENTRY, &next.to_le_bytes(), what)?;
            } else {
                debuggee.write_memory(prev + NEXT_ENTRY, &next.to_le_bytes(), what)?;
            }
            if next != 0 {
                debuggee.write_memory(next + PREV_ENTRY, &prev.to_le_bytes(), what)?;
            }
            debuggee.write_memory(descriptor + RELEVANT_ENTRY, &entry.to_le_bytes(), what)?;
            debuggee.write_memory(
                descriptor + ACTION_FLAG,
                &JIT_UNREGISTER_FN.to_le_bytes(),
                what,
            )
        })();
        if let Err(e) = result {
            tracing::warn!("the undone code was not withdrawn from debuggers: {e}");
        }
    }

    /// The descriptor's address, loading the helper library into the program first if this
    /// is the first time; `None` if the interface cannot be provided here.
    fn debugger_interface(&mut self) -> Option<u64> {
        let program = self.program.as_mut()?;
        let (arena, tries) = match program.debugger_interface {
            DebuggerInterface::Ready { descriptor, .. } => return Some(descriptor),
            DebuggerInterface::Unavailable => return None,
            DebuggerInterface::NotLoaded { arena, tries } => (arena, tries),
        };
        if program.debuggee.debugger().is_some() {
            // Loading needs a call in the program, impossible while a debugger traces it:
            // the first swap after it detaches loads the library. Code swapped before
            // stays unnamed to debuggers (the perf map names it).
            return None;
        }
        let mut mapped = arena;
        let result = self.load_debugger_interface(&mut mapped);
        let program = self.program.as_mut()?;
        match result {
            Ok(ready) => {
                let descriptor = match ready {
                    DebuggerInterface::Ready { descriptor, .. } => Some(descriptor),
                    _ => None,
                };
                program.debugger_interface = ready;
                descriptor
            }
            Err(LoadError::Transient(e)) if tries + 1 < LOAD_TRIES => {
                tracing::debug!("the debugger interface is not loaded yet: {e}");
                program.debugger_interface = DebuggerInterface::NotLoaded {
                    arena: mapped,
                    tries: tries + 1,
                };
                None
            }
            Err(LoadError::Transient(e) | LoadError::Permanent(e)) => {
                tracing::info!("debuggers will not see the swapped code by name: {e}");
                program.debugger_interface = DebuggerInterface::Unavailable;
                None
            }
        }
    }

    /// Loads the helper library into the program (through `dlopen`, in a thread blocked in
    /// a system call: the call takes the loader's and malloc's locks) and finds its
    /// descriptor. `arena`: the data arena for the library's name and later the objects,
    /// mapped here if `None`.
    fn load_debugger_interface(
        &mut self,
        arena: &mut Option<u64>,
    ) -> Result<DebuggerInterface, LoadError> {
        use LoadError::{Permanent, Transient};
        let helper = ensure_helper().map_err(Permanent)?;
        let program = self
            .program
            .as_mut()
            .ok_or(Permanent("no program".into()))?;
        let linker = program
            .linker
            .as_ref()
            .ok_or(Transient("not linked yet".into()))?;
        let (Some(dlopen), Some(dlsym)) = (
            linker.function_address("dlopen"),
            linker.function_address("dlsym"),
        ) else {
            return Err(Permanent(
                "the program's libc has no dlopen (glibc before 2.34, or static)".into(),
            ));
        };
        let debuggee = &program.debuggee;
        let transient = |e: hot_process::ProcessError| Transient(e.to_string());
        let base = match *arena {
            Some(base) => base,
            None => {
                let near = debuggee.image_range().map_err(transient)?;
                let base = debuggee
                    .map_arena(near, ARENA_SIZE, Protection::ReadWrite)
                    .map_err(transient)?;
                *arena = Some(base);
                base
            }
        };
        let path = c_string(&helper);
        let symbol = b"__jit_debug_descriptor\0";
        let what = "the debugger interface's library name";
        let symbol_at = base + path.len() as u64;
        debuggee
            .write_memory(base, &path, what)
            .and_then(|()| debuggee.write_memory(symbol_at, symbol, what))
            .map_err(transient)?;
        let handle = debuggee
            .call_function_in_blocked_thread(dlopen.0, &[base, RTLD_NOW], CALL_LIMITS, "dlopen")
            .map_err(transient)?;
        if handle == 0 {
            return Err(Permanent(format!(
                "dlopen of {} failed in the program",
                helper.display()
            )));
        }
        let descriptor = debuggee
            .call_function_in_blocked_thread(dlsym.0, &[handle, symbol_at], CALL_LIMITS, "dlsym")
            .map_err(transient)?;
        if descriptor == 0 {
            return Err(Permanent("dlsym found no __jit_debug_descriptor".into()));
        }
        let used = (path.len() + symbol.len()) as u64;
        let start = (base + used + 15) & !15;
        tracing::debug!(helper = %helper.display(), descriptor, "debugger interface loaded");
        Ok(DebuggerInterface::Ready {
            descriptor,
            free: start..base + ARENA_SIZE,
        })
    }

    /// `len` bytes (16-aligned) of the interface's data arenas, mapping another when the
    /// current one is full.
    fn jit_alloc(&mut self, len: u64) -> Result<u64, String> {
        let program = self.program.as_mut().ok_or("no program")?;
        let DebuggerInterface::Ready { free, .. } = &mut program.debugger_interface else {
            return Err("no debugger interface".into());
        };
        if free.end - free.start < len {
            let size = len.max(ARENA_SIZE).next_multiple_of(4096);
            let near = program.debuggee.image_range().map_err(|e| e.to_string())?;
            let arena = program
                .debuggee
                .map_arena(near, size, Protection::ReadWrite)
                .map_err(|e| e.to_string())?;
            *free = arena..arena + size;
        }
        let at = free.start;
        free.start = (at + len + 15) & !15;
        free.start = free.start.min(free.end);
        Ok(at)
    }
}
