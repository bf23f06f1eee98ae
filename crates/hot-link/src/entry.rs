//! Entry redirection: how a function's stable entry is made to jump to its new body.
//!
//! The usual form is a 5-byte `jmp rel32` over the first bytes of the old body. Before
//! choosing it, the whole old body is decoded (iced-x86, from the image's section bytes): a
//! branch inside the body that targets one of the bytes the jump overwrites (a loop head at
//! entry+4 behind `endbr64`, with `-fcf-protection`) would land in the middle of the jump.
//! Then a 2-byte `jmp rel8` at the entry goes to fill bytes within its reach (the
//! `int3`/`nop` padding between the previous symbol's end and this entry, or another gap
//! between nearby symbols), which hold the `jmp rel32`. A function shorter than 5 bytes may
//! extend the jump over fill after it, up to the next symbol. Otherwise the function is too
//! small to redirect.
//!
//! A `call` whose return address lies inside the jump bytes counts the same way (gcc -O2
//! begins functions with `push %rbx; call *%rdi`, whose callee returns to entry+3): the
//! short jump leaves entry+2.. intact, so a frame still inside that callee returns into the
//! old instructions. Branches from outside the body (the function's `.cold` part, other
//! code) into those bytes are found by [`crate::branches`] and count like the body's own.
//! When no padding is in reach, the 5-byte jump is planned anyway: the
//! callee may not be running at all, and the apply refuses if a stack holds that return
//! address. Zero bytes are never fill: an unnamed constant in text may be zero.
//!
//! Statement boundaries count too: a debugger puts its breakpoints on the executable's
//! `is_stmt` line rows (`break f` at entry+4 of an -O0 `push %rbp; mov %rsp,%rbp`, entry+1
//! of an -O1 `push %rbx`, line breakpoints anywhere), and its `int3` in the middle of the
//! 5-byte jump would corrupt it — gdb takes its breakpoints out while the program is stopped
//! and puts them back, reading the bytes under them again, when it resumes it, so one set
//! before a swap made while gdb holds the program lands in the new jump as surely as one set
//! after. With a boundary inside the first 5 bytes ([`hot_object::LinkedImage::statements_in`]),
//! in this order: the short jump into padding, if no boundary lies in its 2 bytes; else a
//! short jump to a 5-byte jump inside the old body past the boundary
//! (`plan_landing_in_body`); else the plain jump at the entry, to a jump in the code arena
//! placed so that the entry jump's bytes at the boundaries are `int3` themselves
//! (`plan_int3_proof`: a debugger's breakpoint there changes nothing); else the plain jump
//! with a note, which the session refuses to write while a debugger holds the program (it
//! would put its breakpoints back into the jump on `continue`). The old body's first
//! instructions are never re-run before the new body: a stub that undid a prologue would
//! repeat its loads, and a debugger stepping into it would find no unwind information.
//!
//! Later swaps of the same entry only rewrite the 5-byte jump (wherever it lives), expecting
//! the bytes the last committed patch wrote there.

use std::ops::Range;

use hot_object::ImageSymbol;
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};

use crate::branches::EntryLandings;
use crate::image::{ImageIndex, Vaddr};
use crate::layout::{Allocator, Redirect};
use crate::x86_64::{jmp_rel32, jmp_rel8, JMP_REL32_LEN, JMP_REL8_LEN};
use crate::{EntryWrite, ImageModel, LinkErrorCode, Module, PatchWrite, RuntimeAddr};

/// The writes and state of one entry redirection.
#[derive(Debug)]
pub(crate) struct EntryPlan {
    /// In the order they must be written (fill before the short jump that reaches it).
    pub writes: Vec<EntryWrite>,
    pub protected: Vec<Range<RuntimeAddr>>,
    pub redirect: Redirect,
    /// Image fill bytes this redirection uses for the first time.
    pub claimed_fill: Option<Range<u64>>,
    /// Arena contents the redirection needs (the arena jump of an int3-proof entry),
    /// unreachable until `writes` are committed.
    pub arena: Option<PatchWrite>,
    /// For the user: the jump covers a statement boundary after all (no other form fit),
    /// at entry+N.
    pub note: Option<(String, u64)>,
}

/// Why an entry cannot be redirected: the error code and a sentence for the user.
pub(crate) type EntryError = (LinkErrorCode, String);

fn is_fill_byte(b: u8) -> bool {
    matches!(b, 0xcc | 0x90)
}

/// Whether `bytes` (at `vaddr`) are padding nobody executes: `int3` or `nop` bytes, or a
/// sequence of (multi-byte) `nop` instructions. Not zero bytes: ld pads code with nops, and
/// zeros in text may be data (an unnamed constant) that the program reads.
fn is_fill(bytes: &[u8], vaddr: u64) -> bool {
    if bytes.iter().all(|&b| is_fill_byte(b)) {
        return true;
    }
    let mut decoder = Decoder::with_ip(64, bytes, vaddr, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if instr.is_invalid() || !matches!(instr.mnemonic(), Mnemonic::Nop | Mnemonic::Int3) {
            return false;
        }
    }
    true
}

/// Where the fill after the last real instruction of `bytes` starts, if that instruction
/// never falls through (`ret`, `jmp`, `ud2`, `hlt`): only then is the fill unreachable.
fn trailing_fill_start(bytes: &[u8], vaddr: u64) -> Option<u64> {
    let mut decoder = Decoder::with_ip(64, bytes, vaddr, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    let mut fill_start = None;
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            return None;
        }
        let is_padding = matches!(instr.mnemonic(), Mnemonic::Nop | Mnemonic::Int3);
        if is_padding {
            fill_start.get_or_insert(instr.ip());
        } else {
            let stops = matches!(
                instr.flow_control(),
                FlowControl::Return | FlowControl::UnconditionalBranch | FlowControl::Exception
            ) || matches!(instr.mnemonic(), Mnemonic::Hlt | Mnemonic::Ud2);
            fill_start = if stops { None } else { Some(u64::MAX) };
        }
    }
    fill_start.filter(|&s| s != u64::MAX)
}

/// Decode one instruction so that iced-x86 builds its decoder tables (it does so on first
/// use, which costs about a millisecond) before the first save needs them.
pub(crate) fn warm_up_decoder() {
    let mut decoder = Decoder::with_ip(64, &[0xc3], 0, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    decoder.decode_out(&mut instr);
}

/// Where control can come back into `(start, start + len)` without passing `start`: the
/// targets of the body's near branches, and the return addresses of its calls.
#[derive(Debug, Default, PartialEq, Eq)]
struct Landings {
    /// Targets of jumps (and direct calls) strictly inside the range.
    branches: Vec<u64>,
    /// Return addresses (the end of a `call`) strictly inside the range.
    returns: Vec<u64>,
}

impl Landings {
    fn is_empty(&self) -> bool {
        self.branches.is_empty() && self.returns.is_empty()
    }
}

fn landings_into(body: &[u8], vaddr: u64, start: u64, len: u64) -> Landings {
    let mut decoder = Decoder::with_ip(64, body, vaddr, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    let mut hits = Landings::default();
    let inside = |addr: u64| addr > start && addr < start + len;
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        let flow = instr.flow_control();
        if matches!(
            flow,
            FlowControl::UnconditionalBranch
                | FlowControl::ConditionalBranch
                | FlowControl::Call
                | FlowControl::XbeginXabortXend
        ) {
            let target = instr.near_branch_target();
            if inside(target) {
                hits.branches.push(target);
            }
        }
        if matches!(flow, FlowControl::Call | FlowControl::IndirectCall) && inside(instr.next_ip())
        {
            hits.returns.push(instr.next_ip());
        }
    }
    hits
}

/// Targets of the body's near branches that fall strictly inside `(start, start + len)`.
#[cfg(test)]
fn branch_targets_into(body: &[u8], vaddr: u64, start: u64, len: u64) -> Vec<u64> {
    landings_into(body, vaddr, start, len).branches
}

/// Redirect an entry that was redirected before: rewrite its 5-byte jump.
fn reuse(previous: &Redirect, body: RuntimeAddr, function: &str) -> Result<EntryPlan, EntryError> {
    let bytes = jmp_rel32(previous.jump_at.0, body.0).ok_or_else(|| {
        (
            LinkErrorCode::RelocationOverflow,
            format!(
                "the new body of `{function}` at {body} is out of `jmp rel32` reach of its entry \
                 jump at {}",
                previous.jump_at
            ),
        )
    })?;
    let redirect = Redirect {
        current: bytes.clone(),
        ..previous.clone()
    };
    Ok(EntryPlan {
        writes: vec![EntryWrite {
            addr: previous.jump_at,
            expected: previous.current.clone(),
            bytes,
            function: function.to_string(),
        }],
        protected: vec![previous.jump_at..previous.jump_at.offset(JMP_REL32_LEN)],
        redirect,
        claimed_fill: None,
        arena: None,
        note: None,
    })
}

/// Where gdb's own prologue analysis (`amd64_analyze_prologue`) puts `break f`, as an offset
/// inside the entry jump's bytes: after `push %rbp; mov %rsp,%rbp` (entry+4). gdb breaks
/// there in code without line rows (a build without `-g`); in gcc's code with a line table
/// it moves on to the start of the next row. A lone `push %rbp` is "frameless" to gdb
/// (`break f` at the entry), and behind `endbr64` the stop is at entry+8, past the jump.
fn gdb_prologue_stop(body: &[u8]) -> Option<u64> {
    match body {
        [0x55, 0x48, 0x89, 0xe5, ..] | [0x55, 0x48, 0x8b, 0xec, ..] => Some(4),
        _ => None,
    }
}

/// The smallest `jmp rel32` displacement in `range` whose bytes at `offsets` (1..=4: the
/// jump's byte at entry+N is the displacement's byte N-1) are all `int3` (0xcc).
fn displacement_with_int3_at(range: Range<i64>, offsets: &[u64]) -> Option<i64> {
    let (mut mask, mut want) = (0u32, 0u32);
    for &at in offsets {
        let shift = 8 * (u32::try_from(at).ok()?.checked_sub(1)?);
        if shift > 24 {
            return None;
        }
        mask |= 0xff << shift;
        want |= 0xcc << shift;
    }
    let lowest = mask.trailing_zeros();
    let start = range.start.max(i64::from(i32::MIN));
    let end = range.end.min(i64::from(i32::MAX) + 1);
    // The first displacement at or after `start` with the lowest constrained byte right;
    // the next ones are a step of the byte above apart.
    let unit = 1i64 << lowest;
    let step = unit << 8;
    let byte = |d: i64| (d >> lowest) & 0xff;
    let mut d = match byte(start) {
        0xcc => start,
        // Lower bits cleared: the byte went up, so this is past `start`.
        b => start - start.rem_euclid(unit) + (0xcc - b).rem_euclid(256) * unit,
    };
    while d < end {
        if (d as i32 as u32) & mask == want {
            return Some(d);
        }
        d += step;
    }
    None
}

/// How much code arena an int3-proof entry may skip to place its arena jump.
const INT3_PROOF_MAX_SKIP: u64 = 64 * 1024;

/// The redirection of an entry with statement boundaries at `offsets` (entry+1..=entry+4)
/// and no other way around them: the plain 5-byte jump at the entry, to a 5-byte jump in the
/// code arena placed so that the entry jump holds `int3` (0xcc) at each boundary. A debugger
/// that puts a breakpoint there writes 0xcc over 0xcc and, on removing it, the 0xcc it read:
/// the jump stays intact whatever the debugger does, before or after the swap, and the old
/// body's first statement is simply no longer reached. Later swaps rewrite the arena jump.
/// `None` if the code arena has no such address within [`INT3_PROOF_MAX_SKIP`] of its free
/// space (so boundaries at entry+1 and entry+2 only: entry+3 could need 16 MiB, entry+4 the
/// arena about 820 MiB below the entry).
fn plan_int3_proof(
    exe: &Module,
    alloc: &mut Allocator<'_>,
    (vaddr, old_body): (u64, &[u8]),
    offsets: &[u64],
    body: RuntimeAddr,
    function: &str,
) -> Result<Option<EntryPlan>, EntryError> {
    let len = JMP_REL32_LEN;
    let Some(original) = old_body.get(..len as usize).map(<[u8]>::to_vec) else {
        return Ok(None);
    };
    let entry = exe.runtime(Vaddr(vaddr));
    let after = entry.0 as i64 + len as i64;
    let Some(thunk) = alloc.alloc_code_where(len, |free| {
        // The bytes skipped before the jump are lost to the session: at most 64 KiB (a
        // boundary at entry+3 would skip up to 16 MiB of a 64 MiB arena).
        let end = free.end.min(free.start.saturating_add(INT3_PROOF_MAX_SKIP));
        let range = free.start as i64 - after..end as i64 + 1 - after;
        displacement_with_int3_at(range, offsets).map(|d| (after + d) as u64)
    }) else {
        return Ok(None);
    };
    let overflow = |from: RuntimeAddr| {
        (
            LinkErrorCode::RelocationOverflow,
            format!("the new body of `{function}` at {body} is out of `jmp rel32` reach of {from}"),
        )
    };
    let long = jmp_rel32(thunk.0, body.0).ok_or_else(|| overflow(thunk))?;
    let first = jmp_rel32(entry.0, thunk.0).ok_or_else(|| overflow(entry))?;
    debug_assert!(offsets.iter().all(|&at| first[at as usize] == 0xcc));
    Ok(Some(EntryPlan {
        writes: vec![EntryWrite {
            addr: entry,
            expected: original.clone(),
            bytes: first.clone(),
            function: function.to_string(),
        }],
        protected: vec![entry..entry.offset(len)],
        redirect: Redirect {
            jump_at: thunk,
            current: long.clone(),
            original: Vec::new(),
            short: Some((entry, first, original)),
        },
        claimed_fill: None,
        arena: Some(PatchWrite {
            addr: thunk,
            bytes: long,
            what: format!("entry jump of {function}"),
        }),
        note: None,
    }))
}

/// The redirection of an entry that has a statement boundary inside its first 5 bytes, no
/// padding for the short jump and a prologue the stub cannot undo: a 2-byte `jmp rel8` at
/// the entry to a 5-byte `jmp rel32` written inside the old body, at the first instruction
/// boundary `P` (entry+2 or later) whose 5 bytes hold no statement boundary strictly inside.
/// A breakpoint at `P` sits on the jump's first byte; the bytes between the two jumps are
/// left as they are, so a breakpoint there is never reached again. Control must come into
/// `(entry, P + 5)` only through the entry: no branch (from the body or elsewhere) and no
/// return address may land there, and the whole range is protected (a thread inside it,
/// one a debugger holds at `P` included, is stepped out or the swap refused: it has run
/// part of the old body and cannot start the new one).
fn plan_landing_in_body(
    exe: &Module,
    elsewhere: &EntryLandings,
    (vaddr, old_body): (u64, &[u8]),
    statements: &[u64],
    body: RuntimeAddr,
    function: &str,
) -> Result<Option<EntryPlan>, EntryError> {
    let len = JMP_REL32_LEN;
    let earliest = vaddr + JMP_REL8_LEN;
    // The branches from elsewhere are known up to this far into the function.
    let latest = vaddr + hot_object::STATEMENT_WINDOW - len;
    let mut decoder = Decoder::with_ip(64, old_body, vaddr, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    let mut at = None;
    while decoder.can_decode() {
        let ip = decoder.ip();
        if ip > latest || ip + len > vaddr + old_body.len() as u64 {
            break;
        }
        if ip >= earliest && !statements.iter().any(|&s| s > ip && s < ip + len) {
            at = Some(ip);
            break;
        }
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            return Ok(None);
        }
    }
    let Some(at) = at else {
        return Ok(None);
    };
    let end = at + len;
    if !landings_into(old_body, vaddr, vaddr, end - vaddr).is_empty()
        || elsewhere
            .branches_into(vaddr)
            .iter()
            .any(|landing| landing.target < end)
    {
        return Ok(None);
    }
    let entry = exe.runtime(Vaddr(vaddr));
    let at_rt = exe.runtime(Vaddr(at));
    let overflow = |from: RuntimeAddr| {
        (
            LinkErrorCode::RelocationOverflow,
            format!("the new body of `{function}` at {body} is out of `jmp rel32` reach of {from}"),
        )
    };
    let long = jmp_rel32(at_rt.0, body.0).ok_or_else(|| overflow(at_rt))?;
    let short = jmp_rel8(entry.0, at_rt.0).ok_or_else(|| overflow(entry))?;
    let offset = (at - vaddr) as usize;
    let at_original = old_body[offset..offset + len as usize].to_vec();
    let entry_original = old_body[..JMP_REL8_LEN as usize].to_vec();
    Ok(Some(two_jumps(
        (entry, short, entry_original),
        (at_rt, long, at_original),
        vec![entry..at_rt.offset(len)],
        at..end,
        function,
    )))
}

/// The plan of a two-jump form: a first jump written at the entry (`(addr, bytes,
/// original)`) to the 5-byte jump written at `long.0` (the one later swaps rewrite), which
/// takes the image's bytes `claimed` (never fill for another entry).
fn two_jumps(
    (entry, short, entry_original): (RuntimeAddr, Vec<u8>, Vec<u8>),
    (jump_at, long, long_original): (RuntimeAddr, Vec<u8>, Vec<u8>),
    protected: Vec<Range<RuntimeAddr>>,
    claimed: Range<u64>,
    function: &str,
) -> EntryPlan {
    EntryPlan {
        writes: vec![
            EntryWrite {
                addr: jump_at,
                expected: long_original.clone(),
                bytes: long.clone(),
                function: function.to_string(),
            },
            EntryWrite {
                addr: entry,
                expected: entry_original.clone(),
                bytes: short.clone(),
                function: function.to_string(),
            },
        ],
        protected,
        redirect: Redirect {
            jump_at,
            current: long,
            original: long_original,
            short: Some((entry, short, entry_original)),
        },
        claimed_fill: Some(claimed),
        arena: None,
        note: None,
    }
}

/// Plan the redirection of a function of the original image, whose symbol is `sym`.
pub(crate) fn plan_image_entry(
    model: &ImageModel,
    index: &ImageIndex,
    elsewhere: &EntryLandings,
    alloc: &mut Allocator<'_>,
    sym: &ImageSymbol,
    body: RuntimeAddr,
    function: &str,
) -> Result<EntryPlan, EntryError> {
    let exe = &model.exe;
    let entry = exe.runtime(Vaddr(sym.vaddr));
    let aarch64 = exe.image.machine == hot_object::Machine::Aarch64;
    if let Some(previous) = alloc.redirect(entry) {
        if aarch64 {
            return crate::entry_aarch64::reuse(previous, body, function);
        }
        return reuse(previous, body, function);
    }
    let overflow = |at: RuntimeAddr| {
        (
            LinkErrorCode::RelocationOverflow,
            format!("the new body of `{function}` at {body} is out of `jmp rel32` reach of {at}"),
        )
    };
    let vaddr = sym.vaddr;
    // A symbol without a size (hand-written assembly) extends to the next symbol.
    let size = match sym.size {
        0 => index
            .next_symbol_start(Vaddr(vaddr))
            .map_or(0, |next| next - vaddr),
        n => n,
    };
    let old_body = exe.image.bytes_at(vaddr, size as usize).ok_or_else(|| {
        (
            LinkErrorCode::FunctionTooSmall,
            format!(
                "cannot redirect `{function}`: the executable's bytes at {vaddr:#x} ({size} bytes) \
                 are not available to check them"
            ),
        )
    })?;
    if aarch64 {
        return crate::entry_aarch64::plan_image_entry(
            model, elsewhere, sym, old_body, body, function,
        );
    }
    let mut landings = landings_into(old_body, vaddr, vaddr, JMP_REL32_LEN);
    let mut short_conflicts = landings_into(old_body, vaddr, vaddr, JMP_REL8_LEN);
    let branch_inside = !landings.branches.is_empty();
    // Branches from other code (the function's `.cold` part, other functions) count alike.
    let mut from_elsewhere: Vec<u64> = Vec::new();
    for landing in elsewhere.branches_into(vaddr) {
        if (vaddr..vaddr.saturating_add(size)).contains(&landing.from)
            || landing.target >= vaddr.saturating_add(JMP_REL32_LEN)
        {
            continue;
        }
        landings.branches.push(landing.target);
        from_elsewhere.push(landing.from);
        if landing.target < vaddr.saturating_add(JMP_REL8_LEN) {
            short_conflicts.branches.push(landing.target);
        }
    }
    landings.branches.sort_unstable();
    landings.branches.dedup();
    let conflicts = &landings.branches;
    // Statement boundaries (where a debugger puts `break f` and `break file:line`) inside
    // the jump bytes: its `int3` there would corrupt the jump, and gdb, which takes its
    // breakpoints out while the program is stopped and puts them back on `continue`, would
    // write it over the jump hot-lsp wrote while it held the program.
    let mut statements = exe
        .image
        .statements_in(vaddr, vaddr.saturating_add(size))
        .to_vec();
    // With a line table gdb moves its prologue stop on to the next line row (one of
    // `statements`); without one it breaks right there.
    let without_lines = exe.image.compile_unit_at(vaddr).is_none();
    if let Some(at) = gdb_prologue_stop(old_body).filter(|_| without_lines) {
        // Sorted, as the line rows are.
        if let Err(i) = statements.binary_search(&(vaddr + at)) {
            statements.insert(i, vaddr + at);
        }
    }
    let statements = statements.as_slice();
    let statement_inside = |len: u64| statements.iter().any(|&at| at < vaddr + len);
    let statement_conflict = statement_inside(JMP_REL32_LEN);
    let direct = |claimed_fill: Option<Range<u64>>| -> Result<EntryPlan, EntryError> {
        let original = exe
            .image
            .bytes_at(vaddr, JMP_REL32_LEN as usize)
            .ok_or_else(|| {
                (
                    LinkErrorCode::FunctionTooSmall,
                    format!("cannot read the first 5 bytes of `{function}` at {vaddr:#x}"),
                )
            })?
            .to_vec();
        let bytes = jmp_rel32(entry.0, body.0).ok_or_else(|| overflow(entry))?;
        Ok(EntryPlan {
            writes: vec![EntryWrite {
                addr: entry,
                expected: original.clone(),
                bytes: bytes.clone(),
                function: function.to_string(),
            }],
            protected: vec![entry..entry.offset(JMP_REL32_LEN)],
            redirect: Redirect {
                jump_at: entry,
                current: bytes,
                original,
                short: None,
            },
            claimed_fill,
            arena: None,
            note: None,
        })
    };
    // Without padding for the short jump, a return address inside the jump bytes is left to
    // the apply (it refuses while a frame returns there); a branch target is refused here.
    let direct_or_tiny = |alloc: &Allocator<'_>| -> Result<EntryPlan, EntryError> {
        if size >= JMP_REL32_LEN {
            return direct(None);
        }
        // A tiny function (`ret`, `xor %eax,%eax; ret`): the jump may run over the fill
        // after it, up to the next symbol. The whole gap is decoded from its start, so that
        // multi-byte nops are recognised.
        // Addresses and sizes come from the file: saturate rather than wrap at the top.
        let end = vaddr.saturating_add(JMP_REL32_LEN);
        let gap_start = vaddr.saturating_add(size);
        let gap_end = index.next_symbol_start(Vaddr(vaddr)).unwrap_or(end);
        let fill = gap_start..end;
        let fill_ok = gap_end >= end
            && exe
                .image
                .bytes_at(gap_start, (gap_end - gap_start) as usize)
                .is_some_and(|b| is_fill(b, gap_start));
        if fill_ok && alloc.fill_is_free(&fill) {
            return direct(Some(fill));
        }
        Err((
            LinkErrorCode::FunctionTooSmall,
            format!(
                "`{function}` is {size} bytes long, shorter than the 5-byte jump that redirects it, \
                 and is not followed by enough padding; rebuild with \
                 -fpatchable-function-entry=5,5 to make room"
            ),
        ))
    };
    if landings.is_empty() && !statement_conflict {
        return direct_or_tiny(alloc);
    }
    // A branch targets bytes 1..5, or a call returns there: try a 2-byte short jump at the
    // entry to 5 bytes of fill within its reach (-128..+127 from the end of the short jump):
    // the padding right before the function first, then any other gap between nearby
    // symbols.
    let describe_conflicts = conflicts
        .iter()
        .map(|t| format!("entry+{}", t - vaddr))
        .collect::<Vec<_>>()
        .join(", ");
    let describe_sources = {
        let sources = from_elsewhere
            .iter()
            .map(|from| format!("{:#x}", exe.runtime(Vaddr(*from)).0))
            .collect::<Vec<_>>()
            .join(", ");
        match (branch_inside, from_elsewhere.is_empty()) {
            (_, true) => "a branch inside it".to_string(),
            (false, false) => {
                format!("a branch outside its body (at {sources}: its .cold part or other code)")
            }
            (true, false) => format!(
                "a branch inside it and one outside its body (at {sources}: its .cold part \
                 or other code)"
            ),
        }
    };
    let after_short = vaddr.saturating_add(JMP_REL8_LEN);
    let reach = after_short.saturating_sub(128)..after_short.saturating_add(127 + JMP_REL32_LEN);
    let mut candidates: Vec<u64> = Vec::new();
    if short_conflicts.is_empty() && !statement_inside(JMP_REL8_LEN) {
        for gap in index.gaps_overlapping(reach.clone()) {
            let Some(gap_bytes) = exe
                .image
                .bytes_at(gap.start, (gap.end - gap.start) as usize)
            else {
                continue;
            };
            // Either the whole gap is fill, or (after a symbol without a size, as crt's
            // functions have) the fill that trails its last instruction.
            let fill_start = if is_fill(gap_bytes, gap.start) {
                gap.start
            } else {
                match trailing_fill_start(gap_bytes, gap.start) {
                    Some(start) => start,
                    None => continue,
                }
            };
            if gap.end - fill_start < JMP_REL32_LEN {
                continue;
            }
            // The window nearest the entry inside this fill.
            let at = if gap.end <= vaddr {
                gap.end - JMP_REL32_LEN
            } else {
                fill_start
            };
            let rel = at as i64 - after_short as i64;
            if (-128..=127).contains(&rel) && alloc.fill_is_free(&(at..at + JMP_REL32_LEN)) {
                candidates.push(at);
            }
        }
    }
    candidates.sort_by_key(|&at| (at as i64 - vaddr as i64).unsigned_abs());
    if let Some(&pad_at) = candidates.first() {
        let pad = pad_at..pad_at + JMP_REL32_LEN;
        let pad_rt = exe.runtime(Vaddr(pad_at));
        let long = jmp_rel32(pad_rt.0, body.0).ok_or_else(|| overflow(pad_rt))?;
        let short = jmp_rel8(entry.0, pad_rt.0).ok_or_else(|| overflow(entry))?;
        let pad_original = exe
            .image
            .bytes_at(pad_at, JMP_REL32_LEN as usize)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let entry_original = exe
            .image
            .bytes_at(vaddr, JMP_REL8_LEN as usize)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        return Ok(two_jumps(
            (entry, short, entry_original),
            (pad_rt, long, pad_original),
            vec![
                entry..entry.offset(JMP_REL8_LEN),
                pad_rt..pad_rt.offset(JMP_REL32_LEN),
            ],
            pad,
            function,
        ));
    }
    if conflicts.is_empty() && statement_conflict {
        // No padding: a short jump to a jump written inside the old body, past the boundary.
        if !statement_inside(JMP_REL8_LEN) {
            if let Some(plan) = plan_landing_in_body(
                exe,
                elsewhere,
                (vaddr, old_body),
                statements,
                body,
                function,
            )? {
                return Ok(plan);
            }
        }
    }
    if conflicts.is_empty() && statement_conflict {
        let covered: Vec<u64> = statements
            .iter()
            .filter(|&&at| at < vaddr + JMP_REL32_LEN)
            .map(|&at| at - vaddr)
            .collect();
        if let Some(plan) =
            plan_int3_proof(exe, alloc, (vaddr, old_body), &covered, body, function)?
        {
            return Ok(plan);
        }
    }
    if conflicts.is_empty() {
        // Only return addresses (whether a frame is there is known only at apply time), or
        // a statement boundary no other form avoids: the apply refuses to write over a
        // breakpoint that is in memory, and the user is told about one set later.
        let mut plan = direct_or_tiny(alloc)?;
        if let Some(&at) = statements.iter().find(|&&at| at < vaddr + JMP_REL32_LEN) {
            plan.note = Some((
                format!(
                    "the jump that redirects `{function}` covers its statement at entry+{}, \
                     where a debugger puts a breakpoint on it (`break {function}`, or one on \
                     its first line): such a breakpoint set while the new code is in place \
                     would corrupt the jump, so set none there (and no swap of it is made \
                     while a debugger holds the program); rebuild with \
                     -fpatchable-function-entry=5,5 to leave room",
                    at - vaddr
                ),
                at - vaddr,
            ));
        }
        return Ok(plan);
    }
    Err((
        LinkErrorCode::FunctionTooSmall,
        format!(
            "cannot redirect `{function}`: {describe_sources} targets {describe_conflicts}, \
             which the 5-byte entry jump would overwrite, and there are no 5 bytes of padding \
             within reach of a short jump; rebuild with -fpatchable-function-entry=5,5"
        ),
    ))
}

/// Plan the redirection of a new function's stub. The first time, the stub is unreachable
/// and written as plain arena contents (`None` here: the caller emits a `PatchWrite`).
pub(crate) fn plan_stub(
    alloc: &Allocator<'_>,
    stub: RuntimeAddr,
    body: RuntimeAddr,
    function: &str,
) -> Result<Option<EntryPlan>, EntryError> {
    match alloc.redirect(stub) {
        // A stub's jump is a `b` at the stub (or after its `bti c`).
        Some(previous) if previous.current.len() == 4 => {
            crate::entry_aarch64::reuse(previous, body, function).map(Some)
        }
        Some(previous) => reuse(previous, body, function).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_recognises_int3_nops_and_multibyte_nops() {
        assert!(is_fill(&[0xcc, 0xcc, 0x90], 0));
        // nopw %cs:0x0(%rax,%rax,1)
        assert!(is_fill(&[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], 0));
        assert!(!is_fill(&[0xc3], 0));
        // Zero bytes in text may be a constant the program reads.
        assert!(!is_fill(&[0, 0, 0, 0, 0], 0));
    }

    #[test]
    fn a_call_returning_inside_the_jump_bytes_is_a_landing() {
        // push %rbx; call *%rdi; mov %eax,%ebx; call base (rel32); add %ebx,%eax; pop; ret
        let body = [
            0x53, 0xff, 0xd7, 0x89, 0xc3, 0xe8, 0, 0, 0, 0, 0x01, 0xd8, 0x5b, 0xc3,
        ];
        let landings = landings_into(&body, 0x1000, 0x1000, 5);
        assert_eq!(landings.returns, vec![0x1003]);
        assert!(landings.branches.is_empty());
        // The short jump's two bytes are clear of it.
        assert!(landings_into(&body, 0x1000, 0x1000, 2).is_empty());
        // sub $8,%rsp; call *%rdi: returns to entry+6, past the jump.
        let sub_first = [0x48, 0x83, 0xec, 0x08, 0xff, 0xd7, 0xc3];
        assert!(landings_into(&sub_first, 0x1000, 0x1000, 5).is_empty());
    }

    #[test]
    fn trailing_fill_needs_a_stop_before_it() {
        // ret; nopl 0(%rax): the 7 bytes after `ret` are unreachable fill.
        let after_ret = [0xc3, 0x0f, 0x1f, 0x80, 0, 0, 0, 0];
        assert_eq!(trailing_fill_start(&after_ret, 0x1000), Some(0x1001));
        // add %eax,%eax; nop: execution falls into the nop, so it is not fill.
        let after_add = [0x01, 0xc0, 0x90, 0x90, 0x90, 0x90, 0x90];
        assert_eq!(trailing_fill_start(&after_add, 0x1000), None);
        // ret; nop; xor %eax,%eax; ret: no fill at the end.
        let no_tail = [0xc3, 0x90, 0x31, 0xc0, 0xc3];
        assert_eq!(trailing_fill_start(&no_tail, 0x1000), None);
    }

    #[test]
    fn entry_jumps_hold_int3_where_a_debugger_would_put_one() {
        // (the displacements allowed, the statement offsets, the displacement expected)
        let rows: &[(Range<i64>, &[u64], Option<i64>)] = &[
            (0..1 << 20, &[1], Some(0xcc)),
            (0xcd..1 << 20, &[1], Some(0x1cc)),
            (0x1cc..1 << 20, &[1], Some(0x1cc)),
            (0x1234_5601..0x1234_5700, &[1], Some(0x1234_56cc)),
            (-(1 << 20)..0, &[1], Some(-(1 << 20) + 0xcc)),
            (0..1 << 20, &[2], Some(0xcc00)),
            (0..1 << 20, &[1, 2], Some(0xcccc)),
            (0..0xcccc, &[1, 2], None),
            (0..1 << 30, &[3], Some(0xcc_0000)),
            // entry+4 is the top byte: about -820 MiB.
            (0..i64::from(i32::MAX), &[4], None),
            (-0x3400_0000..0, &[4], Some(-0x3400_0000)),
            (0..0xcb, &[1], None),
        ];
        for (range, offsets, want) in rows {
            let got = displacement_with_int3_at(range.clone(), offsets);
            assert_eq!(got, *want, "{range:x?} {offsets:?}");
            if let Some(d) = got {
                assert!(range.contains(&d));
                let bytes = (d as i32).to_le_bytes();
                for &at in *offsets {
                    assert_eq!(bytes[at as usize - 1], 0xcc, "{d:#x} {offsets:?}");
                }
            }
        }
    }

    #[test]
    fn loop_heads_inside_the_jump_are_found() {
        // endbr64; nop; jmp back to entry+4 (eb f9 at offset 5 targets 5+2-7 = 0? use -3)
        let body = [0xf3, 0x0f, 0x1e, 0xfa, 0x90, 0xeb, 0xfd];
        assert_eq!(branch_targets_into(&body, 0x1000, 0x1000, 5), vec![0x1004]);
        assert!(branch_targets_into(&body, 0x1000, 0x1000, 2).is_empty());
    }
}
