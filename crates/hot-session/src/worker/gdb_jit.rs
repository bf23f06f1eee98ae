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
//! swap it reverts. The list is only ever read by a debugger, and hot-lsp swaps only while no
//! debugger traces the program (its stop would fail otherwise), so the writes need no stop
//! and there is nobody to call `__jit_debug_register_code` for. A relaunch or an exec starts
//! with a new, empty interface. Whatever fails here is logged and never fails a swap: the
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
#[derive(Debug, Default)]
pub(crate) enum DebuggerInterface {
    /// Not loaded yet: the first swap with bodies loads it.
    #[default]
    NotLoaded,
    /// Cannot be provided in this process (said once in the log).
    Unavailable,
    Ready {
        descriptor: u64,
        /// Free bytes of the current data arena.
        free: Range<u64>,
    },
}

/// Where the helper library lives: the user's cache (it must outlive the session).
fn helper_path() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("hot-lsp-{}", unsafe_uid())));
    // FNV-1a of the source: a changed source gets a new file, never one a running program
    // has mapped rewritten under it.
    let hash = HELPER_SOURCE
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    cache
        .join("hot-lsp")
        .join(format!("hot-lsp-jit-{hash:016x}.so"))
}

fn unsafe_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The helper library on disk, compiled now if it is not there yet (written under a
/// temporary name and renamed: a concurrent session never sees half a file).
fn ensure_helper() -> Result<PathBuf, String> {
    let path = helper_path();
    if path.is_file() {
        return Ok(path);
    }
    let dir = path.parent().ok_or("no cache folder")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let source = dir.join(format!("hot-lsp-jit-{}.c", std::process::id()));
    let partial = dir.join(format!("hot-lsp-jit-{}.so.partial", std::process::id()));
    std::fs::write(&source, HELPER_SOURCE).map_err(|e| format!("{}: {e}", source.display()))?;
    let output = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&partial)
        .arg(&source)
        .output();
    let _ = std::fs::remove_file(&source);
    let output = output.map_err(|e| format!("running cc: {e}"))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(format!(
            "cc failed on the debugger interface library: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    std::fs::rename(&partial, &path).map_err(|e| format!("{}: {e}", path.display()))?;
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
        // The entry, whole, before anything points at it.
        write(entry, &record)?;
        if first != 0 {
            write(first + PREV_ENTRY, &entry.to_le_bytes())?;
        }
        write(descriptor + RELEVANT_ENTRY, &entry.to_le_bytes())?;
        write(descriptor + ACTION_FLAG, &JIT_REGISTER_FN.to_le_bytes())?;
        write(descriptor + FIRST_ENTRY, &entry.to_le_bytes())?;
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
        match program.debugger_interface {
            DebuggerInterface::Ready { descriptor, .. } => return Some(descriptor),
            DebuggerInterface::Unavailable => return None,
            DebuggerInterface::NotLoaded => {}
        }
        if program.debuggee.debugger().is_some() {
            // Loading needs a call in the program, impossible while a debugger traces it:
            // the first swap after it detaches loads the library. Code swapped before
            // stays unnamed to debuggers (the perf map names it).
            return None;
        }
        match self.load_debugger_interface() {
            Ok(ready) => {
                let descriptor = match ready {
                    DebuggerInterface::Ready { descriptor, .. } => Some(descriptor),
                    _ => None,
                };
                if let Some(program) = self.program.as_mut() {
                    program.debugger_interface = ready;
                }
                descriptor
            }
            Err(e) => {
                tracing::info!("debuggers will not see the swapped code by name: {e}");
                if let Some(program) = self.program.as_mut() {
                    program.debugger_interface = DebuggerInterface::Unavailable;
                }
                None
            }
        }
    }

    fn load_debugger_interface(&mut self) -> Result<DebuggerInterface, String> {
        let helper = ensure_helper()?;
        let program = self.program.as_mut().ok_or("no program")?;
        let linker = program.linker.as_ref().ok_or("not linked yet")?;
        let (Some(dlopen), Some(dlsym)) = (
            linker.function_address("dlopen"),
            linker.function_address("dlsym"),
        ) else {
            return Err("the program's libc has no dlopen (glibc before 2.34, or static)".into());
        };
        let near = program.debuggee.image_range().map_err(|e| e.to_string())?;
        let arena = program
            .debuggee
            .map_arena(near, ARENA_SIZE, Protection::ReadWrite)
            .map_err(|e| e.to_string())?;
        let debuggee = &program.debuggee;
        let path = c_string(&helper);
        let symbol = b"__jit_debug_descriptor\0";
        let what = "the debugger interface's library name";
        debuggee
            .write_memory(arena, &path, what)
            .map_err(|e| e.to_string())?;
        let symbol_at = arena + path.len() as u64;
        debuggee
            .write_memory(symbol_at, symbol, what)
            .map_err(|e| e.to_string())?;
        let handle = debuggee
            .call_function(dlopen.0, &[arena, RTLD_NOW], CALL_LIMITS, "dlopen")
            .map_err(|e| e.to_string())?;
        if handle == 0 {
            return Err(format!(
                "dlopen of {} failed in the program",
                helper.display()
            ));
        }
        let descriptor = debuggee
            .call_function(dlsym.0, &[handle, symbol_at], CALL_LIMITS, "dlsym")
            .map_err(|e| e.to_string())?;
        if descriptor == 0 {
            return Err("dlsym found no __jit_debug_descriptor".into());
        }
        let used = (path.len() + symbol.len()) as u64;
        let start = (arena + used + 15) & !15;
        tracing::debug!(helper = %helper.display(), descriptor, "debugger interface loaded");
        Ok(DebuggerInterface::Ready {
            descriptor,
            free: start..arena + ARENA_SIZE,
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
