//! The incremental patch linker: given a model of the running image and a freshly compiled
//! object, compute a [`Patch`] — bytes and the runtime addresses to write them to.
//!
//! This crate is pure: it performs no I/O and never touches a process, so every relocation
//! can be tested byte-for-byte against GNU ld. Values that only exist in the target's memory
//! (an IFUNC's chosen implementation) travel in the patch as [`SlotCopy`] requests that
//! `hot-process` resolves at apply time.
//!
//! Addresses: [`RuntimeAddr`] is an address in the debuggee; link-time addresses of an image
//! (`vaddr`) become runtime addresses by adding the module's load bias; offsets inside atoms
//! are [`hot_object::AtomOffset`]. The three never mix ([`Vaddr`] wraps link-time addresses
//! inside the crate; [`Module::runtime`] is the one conversion).
//!
//! # Structure
//!
//! One module per phase, in the order [`Linker::link`] runs them (see `link.rs`):
//! - `image.rs`: hash maps over the image's symbols (executable globals, locals per
//!   translation unit, libraries in load order with default versions, the executable's GOT
//!   slots and PLT entries, libraries' `IRELATIVE` slots), built once per [`Linker`];
//! - `data.rs`: binding of variables, read-only objects and thread-locals;
//! - `resolve.rs`: what each relocation designates (stable entry, copied atom, bound data,
//!   image symbol);
//! - `labels.rs`: bodies whose label addresses (`&&label`) the program keeps in writable
//!   data are refused;
//! - `layout.rs`: arena bump allocation and the state kept across links;
//! - `x86_64.rs`: relocation formulas, overflow checks, TLS relaxations, jump encodings;
//! - `aarch64.rs` (public: the Mach-O arm64 linking reuses it): AArch64 instruction fields
//!   (imm26, imm19, imm14, ADRP pages, scaled lo12, MOVW), veneers, call stubs, entry jumps
//!   behind BTI landing pads, and ld's TLS relaxations, as pure functions;
//! - `macho.rs` (public): Mach-O relocation application, x86-64 and arm64, at addresses and
//!   with GOT slots, stubs and entries the caller chooses; `macho_link.rs`: the Mach-O link
//!   behind [`Linker`] (an object's format picks it), with the same entries, arenas and
//!   [`Patch`] as ELF;
//! - `image_diff.rs`: without a baseline, which functions equal the running image's code
//!   (instruction-level comparison accepting ld's relaxations);
//! - `entry.rs`: how an entry is redirected (5-byte jump, or a short jump through padding);
//! - `abi.rs`: after the link, the ABI checks of a swap (changed struct layouts, changed
//!   signatures, removed functions still called) against code the swap does not recompile;
//! - `lambdas.rs`: an edit that renumbered C++ lambdas (their names are positions) is
//!   refused;
//! - `vtable.rs`: C++ vtables and typeinfo whose layout changed are refused, naming the
//!   class (an override added is an in-place update);
//! - `unwind.rs`: the `.eh_frame` table of the placed bodies and the LSDAs it points at, for
//!   the session to register with the target's unwinder ([`Patch::unwind`]).
//!
//! # State across links
//!
//! [`Linker::link`] is pure: it returns a [`Patch`] that carries, privately, everything it
//! allocated (arena cursors, stubs of new functions, new variables, GOT slots, call stubs,
//! entry jumps). The session applies the patch to the process and then calls
//! [`Linker::commit`], which makes that state the base of the next link; a patch that was not
//! applied is simply dropped. [`Linker::revert_last`] points the entries back and restores
//! read-only objects updated in place (undo).
//!
//! # Which definition a name binds to
//!
//! A global name of the object binds to the executable's global of that name, else to a
//! hidden global the linker turned into a local (GNU ld's nameless `STT_FILE` group, or a
//! LOCAL with hidden/internal `st_other` wherever gold or lld put it), preferring the one the
//! replaced unit defined. A weak definition of the object (function or data) is used only if
//! it is the definition the running program uses (a function's address lies in the unit's
//! DWARF ranges; a variable's is listed by that unit's DWARF alone, else the image's binding
//! decides); a weak default overridden by a strong definition in another file binds its
//! references to the override, is never redirected or written, and gets a
//! `weak-overridden` note instead. A global, non-weak definition (function or variable,
//! outside a COMDAT group) of a name that another file defines non-weakly in the running
//! program is refused ([`LinkErrorCode::MultipleDefinition`]: a relink would fail);
//! replacing another file's *weak* function with a new strong one redirects it, as a relink
//! would.

pub mod aarch64;
mod abi;
mod branches;
pub mod clobbers;
mod data;
mod entry;
mod entry_aarch64;
mod image;
mod image_diff;
mod image_diff_aarch64;
mod labels;
mod lambdas;
mod layout;
mod link;
pub mod macho;
mod macho_link;
mod reloc_aarch64;
mod resolve;
mod units;
mod unwind;
mod vtable;
mod x86_64;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use hot_object::{LinkedImage, Object, SourceLine, TranslationUnitId};

pub use abi::{AbiChanges, ChangedLayout};
pub use image::Vaddr;
pub use layout::Placement;

/// An address in the debuggee's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuntimeAddr(pub u64);

/// One loaded ELF module of the running program.
#[derive(Clone, Debug)]
pub struct Module {
    /// Path of the file it was loaded from (for messages).
    pub path: String,
    /// Runtime address minus link-time address.
    pub bias: u64,
    /// The parsed file: symbols, GOT slots, TLS layout, section contents.
    pub image: Arc<LinkedImage>,
}

/// Everything the linker knows about the running program, gathered by the session from
/// `hot-process` (biases, memory map) and `hot-object` (the files).
///
/// `exe` is the module patches go into (its symbols, bias, GOT, entries): the executable,
/// or one of the program's shared libraries ([`Home::Library`]) when the saved files are
/// linked into that library. Everything else is looked up in `libs`.
#[derive(Clone, Debug)]
pub struct ImageModel {
    /// The module patched (must have a `.symtab`): the executable, or a library (`home`).
    pub exe: Module,
    /// The other modules in the dynamic linker's global scope order, for ELF interposition:
    /// the shared libraries in load order (the `link_map` order); for a library's model, the
    /// executable first, then every other library.
    pub libs: Vec<Module>,
    /// Which module `exe` is.
    pub home: Home,
}

/// Which module of the program an [`ImageModel`] patches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Home {
    /// The executable.
    #[default]
    Executable,
    /// A shared library of the program: `exe` is the library, and the first `interposers`
    /// modules of `libs` come before it in the global scope (the executable, then the
    /// libraries loaded before it). Their default-visibility definitions interpose the
    /// library's own, as the dynamic linker bound the library's GOT and PLT: new code binds
    /// a name the library exports to the first of them that defines it, else to the
    /// library's definition (hidden, internal and static ones are always the library's).
    Library { interposers: usize },
}

/// Memory the process side has mapped for new code and data, within rel32 reach of the
/// executable. The linker allocates from these ranges with bump cursors kept in [`Linker`].
#[derive(Clone, Debug)]
pub struct Arenas {
    /// Mapped read + execute; also holds read-only data and jump stubs.
    pub code: Range<RuntimeAddr>,
    /// Mapped read + write: new variables and GOT slots.
    pub data: Range<RuntimeAddr>,
}

/// Which translation unit of the image a new object replaces: locals of the object bind to
/// locals of this unit.
#[derive(Clone, Debug)]
pub struct UnitRef {
    /// The `STT_FILE` group of the image, if the unit was found there.
    pub tu: Option<TranslationUnitId>,
    /// The DWARF compile unit of the image for this file (index into the executable's
    /// `compile_units`), if known: its code ranges tell which definition of a global name
    /// this file made (a weak default overridden elsewhere is not the one in use; of two
    /// hidden definitions of one name, this file's is preferred).
    pub compile_unit: Option<usize>,
    /// The source file, for messages.
    pub source: String,
}

/// The inputs of one link.
pub struct LinkRequest<'a> {
    /// The freshly compiled object (`-ffunction-sections -fdata-sections`, and
    /// `-mno-direct-extern-access`).
    pub object: &'a Object,
    /// The previous object of the same file compiled with the same flags, if any: only atoms
    /// that differ from it (by bytes or relocation targets) are swapped. Without it each
    /// function is compared with the running image at instruction level, and only those that
    /// do not provably do the same are swapped.
    pub baseline: Option<&'a Object>,
    /// The translation unit of the image the object replaces.
    pub unit: UnitRef,
    /// The variables of the file whose running initializer is not the baseline's: an
    /// earlier save changed it (`initializer-not-applied`) and the program kept the value it
    /// was given. Each one's initializer is compared with the one the program has, not with
    /// the baseline's, so the warning stays as long as the source differs from what runs.
    /// Empty for a file with none (and in every link that has no session behind it).
    pub applied: &'a [AppliedInitializer<'a>],
}

/// What initializer the running program gave a variable ([`LinkRequest::applied`]).
#[derive(Clone, Copy, Debug)]
pub struct AppliedInitializer<'a> {
    /// The variable's identity in the file's objects ([`hot_object::atom_identity`]:
    /// `counter`, `tick/calls` for a function-local static), as in
    /// [`UnappliedInitializer::identity`].
    pub identity: &'a str,
    /// An earlier object of the file whose atom of that identity holds the initializer the
    /// program was given; `None`: the executable's own bytes (the program as built, when the
    /// difference was found without a baseline).
    pub object: Option<&'a Object>,
}

/// A variable whose initializer in the linked object differs from the one the running
/// program was given (an `initializer-not-applied` note): what a session remembers until
/// the source gives it that initializer again, the variable goes, or the program restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnappliedInitializer {
    /// The source file of the unit ([`UnitRef::source`]).
    pub unit: String,
    /// The variable's identity in the object ([`hot_object::atom_identity`]).
    pub identity: String,
}

/// A write of bytes that are not reachable yet (arena contents, GOT slots, new variables);
/// see [`Patch::in_place`] for updates of what the program can already read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchWrite {
    /// Where the bytes go.
    pub addr: RuntimeAddr,
    /// The relocated bytes.
    pub bytes: Vec<u8>,
    /// What the write is, for messages ("body of foo", "GOT slot for strlen").
    pub what: String,
}

/// The jump written over a function's stable entry: the one write that makes the new body
/// live. Written last, while every thread is stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryWrite {
    /// The entry (or the padding before it, for the short-jump form; see [`Patch::entries`]).
    pub addr: RuntimeAddr,
    /// The bytes expected at `addr` right now (the original code, or the jump hot-lsp wrote
    /// last). A mismatch means someone else (a debugger's `int3`) changed them: refuse.
    pub expected: Vec<u8>,
    /// The jump to write.
    pub bytes: Vec<u8>,
    /// The function whose entry this is; for an in-place update of read-only data
    /// ([`Patch::in_place`]), the object's name.
    pub function: String,
}

/// "Copy the 8 bytes at `src` in the target to `dst`": an IFUNC's chosen implementation,
/// read from libc's own `IRELATIVE` slot, or another value only the target knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotCopy {
    /// The new GOT slot (or pointer field) to fill.
    pub dst: RuntimeAddr,
    /// The slot whose current 8 bytes are copied (a library's `IRELATIVE` slot).
    pub src: RuntimeAddr,
    /// What is copied, for messages.
    pub what: String,
}

/// A note the link produced without failing: an initializer that was not applied, a
/// recommendation about build flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkNote {
    /// A diagnostic code of DESIGN.md 3.3, e.g. `initializer-not-applied`.
    pub code: &'static str,
    /// A complete sentence for the user.
    pub message: String,
    /// The symbol the note is about.
    pub symbol: Option<String>,
    /// Where in the new object's source, when known.
    pub line: Option<SourceLine>,
    /// How the session presents it.
    pub severity: NoteSeverity,
    /// The source file of the unit whose link made it ([`UnitRef::source`]).
    pub unit: String,
}

/// How serious a [`LinkNote`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteSeverity {
    /// Something did not take effect as the user may expect (an initializer not applied).
    Warning,
    /// How the program binds an edit, for information (an overridden weak default).
    Information,
}

/// A computed patch. Nothing of it has been written yet.
#[derive(Clone, Debug, Default)]
pub struct Patch {
    /// Arena contents and new data, written before the entries (unreachable until then).
    pub writes: Vec<PatchWrite>,
    /// Resolved in the target before the entries are written.
    pub slot_copies: Vec<SlotCopy>,
    /// The entry jumps; written last, atomically with rollback, in this order (for the
    /// short-jump form, the 5-byte jump into the padding comes before the 2-byte jump at the
    /// entry that reaches it).
    pub entries: Vec<EntryWrite>,
    /// In-place updates of named read-only objects the program can already read (a `const`
    /// global or vtable of the image, or one an earlier patch added): part of the atomic
    /// commit like the entries — written while every thread is stopped, each checked against
    /// `expected` (the bytes the image or the last patch left there), restored if a later
    /// write fails, and reverted by undo ([`Linker::revert_plan`]).
    pub in_place: Vec<EntryWrite>,
    /// Ranges no thread may be stopped strictly inside while the entries are written.
    pub protected: Vec<Range<RuntimeAddr>>,
    /// Functions whose body changed and whose entry is redirected.
    pub swapped: Vec<String>,
    /// Functions and variables that did not exist in the image before.
    pub added: Vec<String>,
    /// Functions of the object that were unchanged and not written.
    pub skipped: usize,
    /// Things the user should know that do not stop the swap.
    pub notes: Vec<LinkNote>,
    /// The variables with an `initializer-not-applied` note in [`Patch::notes`], by
    /// identity: each one's initializer differs from the one the running program has.
    pub unapplied_initializers: Vec<UnappliedInitializer>,
    /// Entry jumps that cover a statement boundary after all (function, entry+N): safe only
    /// while no debugger has a breakpoint there, so the session refuses them while one
    /// holds the program (it would put its breakpoints back over the jump on `continue`).
    pub entries_over_statements: Vec<(String, u64)>,
    /// The unwind tables of the new bodies (one per linked object), written with
    /// [`Patch::writes`]: register them with the target's unwinder (libgcc's
    /// `__register_frame_info`) before the entries go live, so exceptions and backtraces pass
    /// through the new code. Empty when the placed bodies have no FDEs. A patch combined from
    /// several objects concatenates its parts' tables.
    pub unwind: Vec<UnwindRegistration>,
    /// Every code atom the patch places in the arena (new bodies, their `.cold` parts, the
    /// unchanged functions copied with them), for tools that name code by address: a
    /// profiler's map of JIT code (`/tmp/perf-PID.map`), a debugger.
    pub bodies: Vec<PlacedBody>,
    /// The static constructors (`.init_array` entries, [`hot_object::Object::constructors`])
    /// of the linked objects whose functions this patch places, in each object's startup
    /// order, objects in link order. Nothing runs them by itself: a unit of the image ran
    /// its own at launch, and the session calls those of a unit it links in new, once,
    /// after the arena contents are written and before the entries go live.
    pub constructors: Vec<ConstructorCall>,
    /// Allocations and entry states this patch introduces; [`Linker::commit`] makes them the
    /// linker's state. Private so that a patch can only be committed as computed.
    delta: layout::StateDelta,
    /// The entry each name of [`Patch::swapped`] redirected, for [`Linker::link_units`].
    redirected_names: Vec<(RuntimeAddr, String)>,
}

/// A static constructor of a linked object, placed in the arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstructorCall {
    /// The source file of the unit it belongs to ([`UnitRef::source`]).
    pub unit: String,
    /// The function's symbol name (mangled for C++), for messages.
    pub function: String,
    /// Where its new body starts.
    pub addr: RuntimeAddr,
}

/// A code atom placed in the arena: its symbol name as linked (mangled for C++), where it
/// starts, how many bytes it takes, and its line rows from the object's DWARF (offsets
/// from its start; empty without `-g`), for a debugger's description of the new code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedBody {
    pub name: String,
    pub addr: RuntimeAddr,
    pub size: u64,
    pub lines: Vec<(hot_object::AtomOffset, hot_object::SourceLine)>,
}

/// An `.eh_frame` table in the arena (CIEs, FDEs, a zero terminator), as libgcc's
/// `__register_frame_info(frame, object)` (or `__register_frame(frame)`) takes it. Once
/// registered it stays registered for good: an undone body may still be running (or be
/// returned into) and must stay unwindable, and arena space is never handed out twice
/// (undo keeps it allocated; [`Linker::retire`] for a patch whose commit failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnwindRegistration {
    /// The table's first byte.
    pub frame: RuntimeAddr,
    /// Its size in bytes, terminator included.
    pub len: u64,
    /// Zeroed writable room for libgcc's `struct object`, the second argument of
    /// `__register_frame_info(frame, object)` (libgcc up to 12 then needs no `malloc` in the
    /// target; from 13 it also inserts the range into a B-tree, which allocates); libgcc
    /// owns it from then on.
    pub object: RuntimeAddr,
    /// How many FDEs (function descriptions) it holds.
    pub fdes: usize,
}

impl Patch {
    /// The stable entries this patch redirects (image functions' entries and new functions'
    /// stubs). Not the same as the addresses of [`Patch::entries`]: a redirection may write
    /// into padding before the entry, or inside the old body past a statement boundary.
    pub fn redirected_entries(&self) -> impl Iterator<Item = RuntimeAddr> + '_ {
        self.redirected_names.iter().map(|(entry, _)| *entry)
    }

    /// Nothing to write: the object did not change anything the process runs.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.entries.is_empty()
            && self.in_place.is_empty()
            && self.slot_copies.is_empty()
    }

    /// Add the patch of a unit linked after this one (against the state this one leaves):
    /// its writes, entries and names follow this patch's, and one commit adopts both deltas.
    fn append(&mut self, later: Patch) {
        // Every field named: one added to `Patch` must be merged here too.
        let Patch {
            writes,
            slot_copies,
            entries,
            in_place,
            protected,
            swapped,
            added,
            skipped,
            notes,
            unapplied_initializers,
            entries_over_statements,
            unwind,
            bodies,
            constructors,
            delta,
            redirected_names,
        } = later;
        self.writes.extend(writes);
        self.slot_copies.extend(slot_copies);
        self.entries.extend(entries);
        self.in_place.extend(in_place);
        self.protected.extend(protected);
        self.swapped.extend(swapped);
        self.added.extend(added);
        self.skipped += skipped;
        self.notes.extend(notes);
        self.unapplied_initializers.extend(unapplied_initializers);
        self.entries_over_statements.extend(entries_over_statements);
        self.unwind.extend(unwind);
        self.bodies.extend(bodies);
        self.constructors.extend(constructors);
        self.delta.append(delta);
        self.redirected_names.extend(redirected_names);
    }
}

impl Module {
    /// The runtime address of a link-time address of this module.
    pub fn runtime(&self, vaddr: Vaddr) -> RuntimeAddr {
        RuntimeAddr(vaddr.0.wrapping_add(self.bias))
    }
}

impl RuntimeAddr {
    /// `self + offset`, for offsets inside arenas and atoms.
    pub fn offset(self, offset: u64) -> RuntimeAddr {
        RuntimeAddr(self.0.wrapping_add(offset))
    }
}

impl std::fmt::Display for RuntimeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The writes that undo a committed patch in the process, each with its `expected` bytes;
/// applied like a patch's: the in-place data and the entries in one atomic commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revert {
    /// Entry jumps back to the previous bodies (or the original bytes), in write order.
    pub entries: Vec<EntryWrite>,
    /// Read-only objects updated in place, back to the bytes they held before.
    pub in_place: Vec<EntryWrite>,
}

impl Revert {
    /// Every write, data first.
    pub fn writes(&self) -> impl Iterator<Item = &EntryWrite> {
        self.in_place.iter().chain(&self.entries)
    }
}

/// Why a link failed; callers branch on the code to pick a diagnostic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkErrorCode {
    /// A symbol is defined neither by the object nor by the running image.
    UndefinedSymbol,
    /// A relocated value does not fit its field (e.g. rel32 beyond ±2 GiB).
    RelocationOverflow,
    /// A relocation type or target a patch cannot express (library TLS, an IFUNC without
    /// `IRELATIVE` slot, an unknown TLS code sequence).
    UnsupportedRelocation,
    /// A variable changed size, alignment or storage class: the program must restart.
    LayoutChanged,
    /// An entry cannot hold the redirecting jump.
    FunctionTooSmall,
    /// New thread-local variables cannot be added to a running program.
    NewThreadLocal,
    /// The arenas are full.
    ArenaExhausted,
    /// A global definition of a name another file of the running program already defines
    /// (not weakly): a relink would fail with "multiple definition".
    MultipleDefinition,
    /// A swapped function's parameter or return types changed while callers in files this
    /// swap does not recompile still call it the old way (`abi.rs`).
    SignatureChanged,
}

impl LinkErrorCode {
    /// The stable diagnostic code of DESIGN.md 3.3.
    pub fn diagnostic_code(self) -> &'static str {
        match self {
            LinkErrorCode::UndefinedSymbol => "undefined-symbol",
            LinkErrorCode::RelocationOverflow => "relocation-overflow",
            LinkErrorCode::UnsupportedRelocation => "unsupported-relocation",
            // Which file defines a global name is part of the program's layout: the running
            // program cannot take a second definition, the user must remove one (or relink
            // and restart when the definition moved).
            LinkErrorCode::LayoutChanged
            | LinkErrorCode::NewThreadLocal
            | LinkErrorCode::MultipleDefinition => "layout-changed",
            LinkErrorCode::FunctionTooSmall => "function-too-small",
            LinkErrorCode::SignatureChanged => "signature-changed",
            LinkErrorCode::ArenaExhausted => "relocation-overflow",
        }
    }
}

/// One reason a link failed, with the context a user needs to find it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LinkError {
    /// What kind of failure; picks the diagnostic code.
    pub code: LinkErrorCode,
    /// The source file of the unit whose link found it ([`UnitRef::source`]): with
    /// [`Linker::link_units`], which of the objects the error is about.
    pub unit: String,
    /// A complete sentence naming the symbol, the relocation type and the referencing
    /// function, e.g. "undefined symbol `frobnicate` (R_X86_64_PLT32 in `tick`)".
    pub message: String,
    /// The symbol the error is about (the relocation's target, or the variable/function).
    pub symbol: Option<String>,
    /// The function (or variable) whose bytes hold the failing reference.
    pub function: Option<String>,
    /// The source line of the reference, from the new object's DWARF.
    pub line: Option<SourceLine>,
}

/// The linker's state across swaps: stable entries of new functions, addresses of new
/// variables, GOT slots and stubs already allocated, arena cursors.
///
/// [`Linker::link`] never changes it; [`Linker::commit`] adopts the state delta a [`Patch`]
/// carries once the session has applied that patch to the process.
#[derive(Debug)]
pub struct Linker {
    image: ImageModel,
    arenas: Arenas,
    /// Hash maps over the image's symbols, built on first use (one pass over the symbol
    /// tables), so that each link costs time proportional to the object, not to the program.
    index: OnceLock<image::ImageIndex>,
    /// Direct branches into functions' first bytes from anywhere in the executable, decoded
    /// on first use (once per linker).
    landings: OnceLock<branches::EntryLandings>,
    /// A Mach-O executable's local symbols by name, built on the first Mach-O link.
    macho: OnceLock<macho_link::MachOIndex>,
    state: layout::LinkState,
    /// Entry states replaced by each committed patch, newest last, for [`Linker::revert_last`].
    history: Vec<layout::RevertRecord>,
    /// How many times the state links build on changed ([`Linker::changes`]), counted from
    /// this linker's own base.
    changes: u64,
}

/// The next linker's base for [`Linker::changes`]: each linker of the process counts in a
/// range of its own, so a value read from one linker is never what another one reads (a
/// library's linker made again after the library moved starts where no old one was).
static NEXT_CHANGES_BASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
const CHANGES_PER_LINKER: u64 = 1 << 32;

impl Linker {
    /// A linker for a running image. Cheap: the symbol hash maps are built on the first link
    /// (or by [`Linker::prepare`]).
    pub fn new(image: ImageModel, arenas: Arenas) -> Linker {
        let state = layout::LinkState::new(&arenas);
        Linker {
            image,
            arenas,
            index: OnceLock::new(),
            landings: OnceLock::new(),
            macho: OnceLock::new(),
            state,
            history: Vec::new(),
            changes: NEXT_CHANGES_BASE
                .fetch_add(CHANGES_PER_LINKER, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// A counter that grows with every change of what links resolve against (libraries,
    /// commits, retired space, reverts): a patch linked when it read `n` is still exactly
    /// what a new link would give while it still reads `n` (the session's compile-ahead
    /// keeps such a patch for the save). No other linker of the process ever reads the same
    /// value, so a patch linked by one linker is never taken for another's.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Replace the shared libraries (loaded by `dlopen`, or read before the dynamic linker
    /// had finished): later links resolve against the new list. What earlier patches
    /// resolved stays as it is; the symbol index is rebuilt on the next link.
    pub fn set_libraries(&mut self, libs: Vec<Module>) {
        self.image.libs = libs;
        self.index = OnceLock::new();
        self.changes += 1;
    }

    /// [`Linker::set_libraries`] for a library's linker: the other modules of the global
    /// scope and where the library stands in it.
    pub fn set_scope(&mut self, libs: Vec<Module>, home: Home) {
        self.image.home = home;
        self.set_libraries(libs);
    }

    /// Where each entry this linker redirected jumps now, and, with `patch`, once that patch
    /// is committed too: stable entry → body, for a [`clobbers::CodeView`] of the code before
    /// and after a swap. x86-64 only (an entry jump is a `jmp rel32`).
    pub fn entry_targets(&self, patch: Option<&Patch>) -> HashMap<u64, u64> {
        let mut out: HashMap<u64, u64> = self
            .state
            .redirect_targets()
            .map(|(entry, body)| (entry.0, body.0))
            .collect();
        if let Some(patch) = patch {
            // An entry given back its original code runs the image's code at it.
            for entry in patch.delta.restored() {
                out.remove(&entry.0);
            }
            out.extend(patch.delta.redirect_targets().map(|(e, b)| (e.0, b.0)));
        }
        out
    }

    /// [`Linker::entry_targets`] as they will be once the last committed patch is reverted
    /// ([`Linker::revert_last`]), without changing the linker: the code an undo leaves
    /// running. `None`: nothing to revert.
    pub fn entry_targets_after_revert(&self) -> Option<HashMap<u64, u64>> {
        let record = self.history.last()?.clone();
        let mut state = self.state.clone();
        state.revert(record);
        Some(
            state
                .redirect_targets()
                .map(|(entry, body)| (entry.0, body.0))
                .collect(),
        )
    }

    /// The image model the linker resolves against.
    pub fn image(&self) -> &ImageModel {
        &self.image
    }

    /// The runtime address of the function `name` as the running program would bind it:
    /// the executable's global definition, else the first library's (load order, default
    /// version). For calls the session injects (libgcc's `__register_frame_info`), not for
    /// IFUNCs, whose symbol is the resolver.
    pub fn function_address(&self, name: &str) -> Option<RuntimeAddr> {
        let index = self.index();
        let found = index
            .exe_global(name)
            .filter(|r| r.get(&self.image).defined)
            .or_else(|| index.lib_lookup(name))?;
        let sym = found.get(&self.image);
        if sym.kind != hot_object::SymbolKind::Function || !sym.defined {
            return None;
        }
        Some(found.module.module(&self.image).runtime(Vaddr(sym.vaddr)))
    }

    /// The source file ([`UnitRef::source`]) of the global function `name` that a committed
    /// patch added to this linker's image, if one did: for messages about a name only new
    /// code defines.
    pub fn added_function_source(&self, name: &str) -> Option<String> {
        layout::Allocator::new(&self.state)
            .added_function_source(name)
            .map(str::to_string)
    }

    /// The arenas the linker allocates from.
    pub fn arenas(&self) -> &Arenas {
        &self.arenas
    }

    /// Build the symbol hash maps now rather than on the first link (the session may call
    /// this right after launch, so the first save does not pay for it).
    pub fn prepare(&self) {
        self.index();
        entry::warm_up_decoder();
        self.landings();
    }

    fn index(&self) -> &image::ImageIndex {
        self.index
            .get_or_init(|| image::ImageIndex::build(&self.image))
    }

    fn macho_index(&self) -> &macho_link::MachOIndex {
        self.macho
            .get_or_init(|| macho_link::MachOIndex::build(&self.image.exe.image))
    }

    fn landings(&self) -> &branches::EntryLandings {
        self.landings
            .get_or_init(|| branches::EntryLandings::build(&self.image))
    }

    /// Compute the patch for one object. Pure: `self` is not changed, so a failed link or a
    /// failed apply leaves the linker as it was. Every error found is returned, not only the
    /// first, so each failing line gets its diagnostic.
    pub fn link(&self, request: &LinkRequest<'_>) -> Result<Patch, Vec<LinkError>> {
        self.link_units(std::slice::from_ref(request))
    }

    /// Compute one patch for several objects swapped together (every translation unit that
    /// includes a saved header): applied in one atomic commit and committed as one history
    /// record, so [`Linker::revert_last`] undoes all of them at once. Pure, like
    /// [`Linker::link`], which is the one-unit case.
    ///
    /// Unit k is linked against the committed state plus the deltas of units 0..k-1: arena
    /// space never overlaps, and a new function or variable one unit adds (or a GOT slot it
    /// allocates) is what the next unit binds to. An entry (or read-only object) an earlier
    /// unit already redirects (updates) keeps that unit's write: the copies of one inline
    /// function that several units carry are one definition (ODR), redirected once, named
    /// once in [`Patch::swapped`]. The units are linked in the given order, except that a
    /// unit defining a new name another unit refers to goes first (so no reference is
    /// undefined, and no weak one bound to 0, when the batch defines the name), and a strong
    /// definition goes before a weak one of the same name (the strong one takes the entry,
    /// as in a relink). New functions that files call across each other get their stubs
    /// before any unit is linked; new variables read across each other are refused, naming
    /// the symbol and both files. Every error of every unit is returned; each names its
    /// unit in [`LinkError::unit`].
    pub fn link_units(&self, requests: &[LinkRequest<'_>]) -> Result<Patch, Vec<LinkError>> {
        // Definers of new names first, strong definitions before weak ones: unit k sees only
        // what units 0..k-1 add and redirect.
        let plan = units::link_order(requests, |name| {
            resolve::exe_definition(&self.image, self.index(), None, name).is_none()
                && !self.state.has_new_global(name)
        })?;
        // The committed state with the deltas of the units linked so far; cloned only when a
        // second unit follows.
        let mut chained: Option<layout::LinkState> = None;
        let mut combined: Option<Patch> = None;
        if !plan.reserve.is_empty() {
            // Files that call each other's new functions: every stub exists before the
            // first unit links, and the combined patch holds their space.
            let state = chained.get_or_insert_with(|| self.state.clone());
            match state.reserve_stubs(&plan.reserve, link::STUB_SIZE) {
                Ok(delta) => {
                    combined = Some(Patch {
                        delta,
                        ..Patch::default()
                    })
                }
                Err(name) => {
                    return Err(vec![LinkError {
                        code: LinkErrorCode::ArenaExhausted,
                        unit: requests[plan.order[0]].unit.source.clone(),
                        message: format!(
                            "the code arena has no room left for the stub of the new function \
                             `{}`",
                            hot_object::display_name(&name)
                        ),
                        symbol: Some(name),
                        function: None,
                        line: None,
                    }])
                }
            }
        }
        // What each file may call in another one (a function the image lacks included).
        let wanted: rustc_hash::FxHashSet<String> = requests
            .iter()
            .flat_map(|r| r.object.symbols.iter())
            .filter(|s| matches!(s.def, hot_object::SymbolDef::Undefined))
            .map(|s| s.name.to_string())
            .collect();
        let order = plan.order;
        let mut errors = Vec::new();
        let mut redirected: HashSet<RuntimeAddr> = HashSet::new();
        let mut updated: HashSet<RuntimeAddr> = HashSet::new();
        // Names whose entry an earlier unit redirects to a weak definition (the same weak
        // default, carried by several includers of a header).
        let mut weak_redirected: HashSet<String> = HashSet::new();
        for (k, &i) in order.iter().enumerate() {
            let request = &requests[i];
            let state = chained.as_ref().unwrap_or(&self.state);
            let mut patch = match link::link(self, state, request, None, &wanted) {
                Ok(patch) => patch,
                Err(e) => {
                    errors.extend(e);
                    continue;
                }
            };
            let jumps = patch.delta.drop_taken(&redirected, &updated);
            patch.entries.retain(|e| !jumps.contains(&e.addr));
            patch.in_place.retain(|w| !updated.contains(&w.addr));
            // A dropped redirect swaps nothing: its name is the earlier unit's.
            for (entry, name) in std::mem::take(&mut patch.redirected_names) {
                if redirected.contains(&entry) {
                    if let Some(at) = patch.swapped.iter().position(|n| *n == name) {
                        patch.swapped.remove(at);
                    }
                } else {
                    patch.redirected_names.push((entry, name));
                }
            }
            // The earlier unit swapped in this very weak default: "not swapped in" is false.
            patch.notes.retain(|n| {
                n.code != "weak-overridden"
                    || n.symbol
                        .as_ref()
                        .is_none_or(|s| !weak_redirected.contains(s))
            });
            let weak: HashSet<RuntimeAddr> = patch.delta.weak_owned().collect();
            weak_redirected.extend(
                patch
                    .redirected_names
                    .iter()
                    .filter(|(entry, _)| weak.contains(entry))
                    .map(|(_, name)| name.clone()),
            );
            redirected.extend(patch.delta.redirected());
            updated.extend(patch.delta.updated_in_place());
            if k + 1 < requests.len() {
                chained
                    .get_or_insert_with(|| self.state.clone())
                    .apply(&patch.delta);
            }
            match combined.as_mut() {
                None => combined = Some(patch),
                Some(c) => c.append(patch),
            }
        }
        if let (Some(patch), Some(state), true) = (&combined, &chained, errors.is_empty()) {
            // A reserved stub no unit wrote would be a call into nothing: refuse.
            for (name, stub) in state.reserved() {
                if !patch.writes.iter().any(|w| w.addr == stub) {
                    errors.push(LinkError {
                        code: LinkErrorCode::UndefinedSymbol,
                        unit: requests[order[0]].unit.source.clone(),
                        message: format!(
                            "the stub reserved for the new function `{}` (called across \
                             files of this swap) was not written by the file that defines \
                             it: nothing was swapped",
                            hot_object::display_name(name)
                        ),
                        symbol: Some(name.to_string()),
                        function: None,
                        line: None,
                    });
                }
            }
        }
        match combined {
            Some(patch) if errors.is_empty() => Ok(patch),
            _ if !errors.is_empty() => Err(errors),
            _ => Ok(Patch::default()),
        }
    }

    /// Test hook for the differential tests against GNU ld: like [`Linker::link`], but the
    /// atoms named in `placement` go to the given addresses instead of fresh arena space, and
    /// entry redirection can be switched off (ld's output has no entries to redirect).
    #[doc(hidden)]
    pub fn link_with_placement(
        &self,
        request: &LinkRequest<'_>,
        placement: &Placement,
    ) -> Result<Patch, Vec<LinkError>> {
        link::link(
            self,
            &self.state,
            request,
            Some(placement),
            &Default::default(),
        )
    }

    /// Record that `patch` was applied to the process: its allocations and entries become
    /// the state later links build on.
    pub fn commit(&mut self, patch: &Patch) {
        let record = self.state.apply(&patch.delta);
        self.history.push(record);
        self.changes += 1;
    }

    /// Record that `patch` was *not* applied but its arena space may be in use anyway (its
    /// unwind table was registered with the target's unwinder before the commit failed, and
    /// libgcc keeps a pointer into it): later links never hand out those addresses again.
    /// Nothing else of the patch is adopted: no entry, slot, stub or variable.
    pub fn retire(&mut self, patch: &Patch) {
        self.state.retire(&patch.delta);
        self.changes += 1;
    }

    /// Undo the effect of the last committed patch on the linker's view (entries point back
    /// to the previous bodies, read-only objects updated in place get their previous bytes).
    /// Returns the writes that revert it in the process (each with its `expected` bytes).
    ///
    /// Arena space, GOT slots, stubs and new variables stay allocated: an old body may still
    /// be running, and a new variable keeps its address (and value) for the next swap.
    pub fn revert_last(&mut self) -> Option<Revert> {
        let record = self.history.pop()?;
        self.changes += 1;
        Some(self.state.revert(record))
    }

    /// The entry writes [`Linker::revert_last`] would return, without changing the linker:
    /// apply them to the process first, and call `revert_last` only once that succeeded.
    pub fn revert_plan(&self) -> Option<Revert> {
        self.history.last().map(layout::revert_writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linker_and_patch_can_move_between_threads() {
        // The session keeps the linker in its worker and hands patches to the process thread.
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Linker>();
        send_sync::<Patch>();
    }
}
