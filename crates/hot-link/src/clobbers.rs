//! Which call-clobbered registers a function may really clobber, as gcc's `-fipa-ra` sees it.
//!
//! With `-fipa-ra` (gcc -O2 and up) a caller knows which call-clobbered registers a callee of
//! its own file writes (through the callee's direct calls too) and keeps values live in the
//! others across the call. A frame still running the old body of such a caller after a swap
//! keeps that assumption; if the new callee writes one more of those registers, the caller's
//! value is silently corrupted. The session asks, for the direct calls of the old bodies a
//! frame may still run, whether the callee's set grows ([`growing_calls`]).
//!
//! The set is read off the code with iced-x86: every register an instruction writes, mapped
//! to its full register (`ecx` is `rcx`, `ymm3` is `xmm3`), kept only if the psABI makes it
//! call-clobbered (`rbx`, `rbp`, `r12`–`r15` and `rsp` are preserved by any conforming body);
//! `syscall` writes rax, rcx and r11. A direct call or a branch out of the body adds the
//! target's set, transitively, to a fixed point (cycles of mutually recursive functions are
//! fine); a branch into the middle of a body (a `.cold` part jumping back into its function)
//! adds that whole body; a target the code view does not know (a PLT stub, another module)
//! and an indirect call add every call-clobbered register, which is also what gcc assumes
//! there. An indirect jump that is a switch's jump table (`notrack`, `jmp *table(,%reg,8)`
//! whose entry lands inside the body, or the PIC table of offsets) stays inside the body; a
//! table whose entry is a function's start is a tail call through a function pointer: every
//! register. In the code that will run, a PIC table is only the whole sequence gcc and clang
//! emit (`lea T(%rip),%b; movslq (%b,%i,4),%r; add %b,%r; jmp *%r`) with T's first entry read
//! and landing inside the body; any other `jmp *%r` is a tail call, since `add %rdx,%rax;
//! jmp *%rax` is also a call through a pointer plus an offset. In the code callers were
//! compiled against, `jmp *%r` right after `add %reg,%r` is taken for a table without more:
//! that can only make its set smaller than gcc's, the safe direction there.
//!
//! The two sides of a growth are wrong in opposite directions ([`Estimate`]): the set of the
//! code callers were compiled against must never come out larger than gcc's (a growth would
//! hide under it), the set of the code that will run never smaller than what it writes. So an
//! indirect jump the analysis cannot tell (a computed `goto`, a table it cannot read) is
//! every register in the new code and [`Undecided`] in the old.
//! Pure: the caller supplies the code ([`CodeView`]).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic,
    OpAccess, OpKind, Register,
};

/// A set of registers: bits 0–15 the general-purpose registers by number (`rax` = 0 …
/// `r15` = 15), bits 16–47 `xmm0`–`xmm31` (with their `ymm`/`zmm` widths).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegSet(u64);

/// rax, rcx, rdx, rsi, rdi, r8–r11.
const CLOBBERED_GPRS: u64 = 0b0000_1111_1100_0111;
const XMM_SHIFT: u32 = 16;
const XMM_BITS: u64 = 0xffff_ffff << XMM_SHIFT;

const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

impl RegSet {
    pub const EMPTY: RegSet = RegSet(0);
    /// Every register the psABI lets a call clobber: what a call to unknown code does.
    pub const CALL_CLOBBERED: RegSet = RegSet(CLOBBERED_GPRS | XMM_BITS);

    /// The call-clobbered register `reg` is part of (any width), if it is one.
    pub fn of(reg: Register) -> RegSet {
        let full = reg.full_register();
        let bits = if full.is_gpr64() {
            1u64 << full.number()
        } else if full.is_zmm() {
            1u64 << (XMM_SHIFT as usize + full.number())
        } else {
            0
        };
        RegSet(bits & RegSet::CALL_CLOBBERED.0)
    }

    pub fn union(self, other: RegSet) -> RegSet {
        RegSet(self.0 | other.0)
    }

    /// The registers of `self` that `other` lacks.
    pub fn minus(self, other: RegSet) -> RegSet {
        RegSet(self.0 & !other.0)
    }

    pub fn is_subset(self, other: RegSet) -> bool {
        self.minus(other).is_empty()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The registers by name ("rcx", "xmm3"), general-purpose ones first.
    pub fn names(self) -> Vec<String> {
        let mut out: Vec<String> = (0..16)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| GPR_NAMES[i].to_string())
            .collect();
        out.extend(
            (0..32)
                .filter(|i| self.0 & (1u64 << (XMM_SHIFT + i)) != 0)
                .map(|i| format!("xmm{i}")),
        );
        out
    }
}

/// The code of the program at one moment (before a swap, or as it will be after it).
pub trait CodeView {
    /// The body that runs when control reaches `addr`: a function starting exactly there,
    /// or the body a redirected entry at `addr` jumps to now (its start and its bytes,
    /// runtime addresses). `None`: no code the view knows (a PLT stub, another module).
    fn body_at(&self, addr: u64) -> Option<(u64, Cow<'_, [u8]>)>;

    /// The body `addr` lies inside of (not at its start, and no redirect followed): where a
    /// `.cold` part jumps back into its function. `None`: no body the view knows.
    fn body_containing(&self, _addr: u64) -> Option<(u64, Cow<'_, [u8]>)> {
        None
    }

    /// `len` bytes of data at `addr` as the code will read them (a jump table's entries).
    /// `None`: not readable.
    fn data(&self, _addr: u64, _len: usize) -> Option<Cow<'_, [u8]>> {
        None
    }
}

/// Why a set could not be computed: code that does not decode, or (for the code before a
/// swap) code whose set the analysis can only over-estimate. A caller must then assume the
/// worst.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecided {
    /// The runtime address of the bytes.
    pub at: u64,
    /// The call target whose set this is, when [`growing_calls`] was asking about one.
    pub callee: Option<u64>,
    pub reason: String,
}

/// Which way a set may be wrong. The code before a swap is what gcc compiled its callers
/// against: an estimate larger than gcc's own would hide a growth, so it must never be larger
/// ([`Estimate::AtMost`]). The code after it is what will run: its estimate must never be
/// smaller than what it really writes ([`Estimate::AtLeast`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Estimate {
    /// Code that will run: where the analysis cannot tell, every register.
    #[default]
    AtLeast,
    /// Code callers were compiled against: where the analysis cannot tell what gcc knew,
    /// [`Undecided`].
    AtMost,
}

/// What one body does by itself: the registers it writes and where it branches out to.
struct Node {
    own: RegSet,
    out: Vec<u64>,
    /// Where the body was taken to write every register although gcc may have known less
    /// (an indirect jump that is neither a jump table nor a tail call through a function
    /// pointer): fine for code that will run, [`Undecided`] for code callers assumed.
    unsure: Option<Undecided>,
}

/// rax, rcx and r11: what `syscall` writes (the kernel's result; the return address and
/// flags the instruction saves). Every other register survives it.
const SYSCALL_WRITES: RegSet = RegSet(1 | 1 << 1 | 1 << 11);

/// Decodes one body at `start`: its own writes and the targets of its direct calls and
/// branches out of it. An indirect call (or indirect tail call) writes every register.
/// `estimate` says which way an indirect `jmp` the analysis cannot fully tell may be wrong.
fn decode_body(
    view: &dyn CodeView,
    start: u64,
    bytes: &[u8],
    estimate: Estimate,
) -> Result<Node, Undecided> {
    let end = start.saturating_add(bytes.len() as u64);
    let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
    let mut info = InstructionInfoFactory::new();
    let mut instr = Instruction::default();
    // The instructions before `instr`, the latest last: a PIC jump table's sequence.
    let mut recent: VecDeque<Instruction> = VecDeque::with_capacity(WINDOW + 1);
    let mut node = Node {
        own: RegSet::EMPTY,
        out: Vec::new(),
        unsure: None,
    };
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if instr.code() == Code::INVALID {
            return Err(Undecided {
                at: instr.ip(),
                callee: None,
                reason: format!(
                    "the bytes at {:#x} (offset {:#x} of the body at {start:#x}) do not decode as \
                     an instruction",
                    instr.ip(),
                    instr.ip() - start
                ),
            });
        }
        for used in info.info(&instr).used_registers() {
            if matches!(
                used.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            ) {
                node.own = node.own.union(RegSet::of(used.register()));
            }
        }
        // iced counts `syscall` as a call; it enters the kernel, which writes rax (and the
        // instruction rcx and r11) and returns right behind it (an inline `asm("syscall")`).
        if instr.mnemonic() == Mnemonic::Syscall {
            node.own = node.own.union(SYSCALL_WRITES);
            remember(&mut recent, instr);
            continue;
        }
        let direct = matches!(
            instr.op0_kind(),
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
        );
        match instr.flow_control() {
            FlowControl::Call
            | FlowControl::UnconditionalBranch
            | FlowControl::ConditionalBranch
                if direct =>
            {
                let target = instr.near_branch_target();
                // A branch inside the body is decoded with it (`call .+5` too).
                if !(start..end).contains(&target) {
                    node.out.push(target);
                }
            }
            FlowControl::IndirectBranch => {
                match indirect_jump(view, &instr, recent.make_contiguous(), start..end, estimate) {
                    IndirectJump::Table => {}
                    IndirectJump::TailCall => node.own = RegSet::CALL_CLOBBERED,
                    IndirectJump::Unknown(why) => {
                        node.own = RegSet::CALL_CLOBBERED;
                        node.unsure.get_or_insert(Undecided {
                            at: instr.ip(),
                            callee: None,
                            reason: format!(
                                "the indirect jump at {:#x} (offset {:#x} of the body at \
                             {start:#x}) {why}",
                                instr.ip(),
                                instr.ip() - start
                            ),
                        });
                    }
                }
            }
            FlowControl::Call
            | FlowControl::UnconditionalBranch
            | FlowControl::ConditionalBranch
            | FlowControl::IndirectCall => node.own = RegSet::CALL_CLOBBERED,
            _ => {}
        }
        remember(&mut recent, instr);
    }
    Ok(node)
}

/// How many instructions before an indirect `jmp` are kept: gcc may put the bound check's
/// branch and a zero-extension of the index between a PIC table's `lea` and its load.
const WINDOW: usize = 8;

fn remember(recent: &mut VecDeque<Instruction>, instr: Instruction) {
    if recent.len() == WINDOW {
        recent.pop_front();
    }
    recent.push_back(instr);
}

/// What an indirect `jmp` is.
enum IndirectJump {
    /// A switch's jump table: its targets inside the body.
    Table,
    /// A tail call through a function pointer: a callee nobody knows, as gcc sees it too.
    TailCall,
    /// Either, or a computed `goto`: the reason it cannot be told.
    Unknown(&'static str),
}

/// Tells a switch's jump table, as gcc and clang emit them, from a tail call: `notrack jmp`
/// (-fcf-protection: only jump tables skip the `endbr64` check), `jmp *table(,%reg,8)`
/// (non-PIC) whose first entry lands inside the body (an entry that is a function's start
/// makes it a table of function pointers: a tail call), or `jmp *%reg` after `add` (PIC: a
/// table of offsets; see [`pic_table`] for what each [`Estimate`] requires of it).
fn indirect_jump(
    view: &dyn CodeView,
    instr: &Instruction,
    recent: &[Instruction],
    body: std::ops::Range<u64>,
    estimate: Estimate,
) -> IndirectJump {
    if instr.mnemonic() != Mnemonic::Jmp {
        return IndirectJump::Unknown("is no `jmp`");
    }
    if instr.segment_prefix() == Register::DS {
        return IndirectJump::Table;
    }
    match instr.op0_kind() {
        OpKind::Memory
            if instr.memory_base() == Register::None
                && instr.memory_index() != Register::None
                && instr.memory_index_scale() == 8 =>
        {
            let table = instr.memory_displacement64();
            let Some(entry) = view
                .data(table, 8)
                .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                .map(u64::from_le_bytes)
            else {
                return IndirectJump::Unknown("reads a table that cannot be read");
            };
            if body.contains(&entry) {
                IndirectJump::Table
            } else if view.body_containing(entry).is_none() {
                // A function's start (its entry, redirected or not), or code no body of the
                // view holds (another module).
                IndirectJump::TailCall
            } else {
                IndirectJump::Unknown("reads a table whose first entry lies inside another body")
            }
        }
        OpKind::Register
            if recent.last().is_some_and(|add| {
                add.mnemonic() == Mnemonic::Add
                    && add.op0_kind() == OpKind::Register
                    && add.op1_kind() == OpKind::Register
                    && add.op0_register() == instr.op0_register()
            }) =>
        {
            match estimate {
                // Taking a tail call for a table only leaves registers out of the set gcc
                // assumed: never larger than gcc's.
                Estimate::AtMost => IndirectJump::Table,
                // `add %rdx,%rax; jmp *%rax` is as much a call through `fp + off`: only a
                // table that is read and whose entry lands inside the body stays inside.
                Estimate::AtLeast if pic_table(view, recent, instr.op0_register(), &body) => {
                    IndirectJump::Table
                }
                Estimate::AtLeast => IndirectJump::TailCall,
            }
        }
        _ => IndirectJump::Unknown(
            "is neither a jump table nor a tail call through a function pointer the analysis \
             can tell (a computed `goto` looks the same)",
        ),
    }
}

/// Whether `jmp *%reg` behind `recent` (the latest last, an `add` of two registers into
/// `reg`) is a PIC switch as gcc and clang emit it: `lea T(%rip),%b`, `movslq (%b,%i,4),%r`,
/// `add %b,%r` (either way round), `jmp *%r`, with only non-branching instructions (or the
/// bound check's conditional branch) in between, none writing `%b` after the `lea` nor
/// either register after the load, and T's first entry (T plus the offset it holds) inside
/// `body`. A table of offsets to functions, or one the view cannot read, is not one.
fn pic_table(
    view: &dyn CodeView,
    recent: &[Instruction],
    reg: Register,
    body: &std::ops::Range<u64>,
) -> bool {
    let Some((add, before)) = recent.split_last() else {
        return false;
    };
    let pair = [add.op0_register(), add.op1_register()].map(Register::full_register);
    if reg.full_register() != reg || pair[0] == pair[1] {
        return false;
    }
    let mut info = InstructionInfoFactory::new();
    let writes = |info: &mut InstructionInfoFactory, i: &Instruction, r: Register| {
        info.info(i).used_registers().iter().any(|u| {
            u.register().full_register() == r
                && matches!(
                    u.access(),
                    OpAccess::Write
                        | OpAccess::CondWrite
                        | OpAccess::ReadWrite
                        | OpAccess::ReadCondWrite
                )
        })
    };
    // The table's base register, once the load of the entry is found.
    let mut base = None;
    for i in before.iter().rev() {
        if !matches!(
            i.flow_control(),
            FlowControl::Next | FlowControl::ConditionalBranch
        ) {
            return false;
        }
        match base {
            None => {
                let Some(loaded) = pair.iter().position(|r| writes(&mut info, i, *r)) else {
                    continue;
                };
                let b = pair[1 - loaded];
                if i.code() != Code::Movsxd_r64_rm32
                    || i.op0_register() != pair[loaded]
                    || i.op1_kind() != OpKind::Memory
                    || i.memory_base() != b
                    || i.memory_index() == Register::None
                    || i.memory_index_scale() != 4
                    || i.memory_displacement64() != 0
                    || i.segment_prefix() != Register::None
                {
                    return false;
                }
                base = Some(b);
            }
            Some(b) => {
                // `%r` may be anything before its load; `%b` must be the table's address.
                if !writes(&mut info, i, b) {
                    continue;
                }
                if i.mnemonic() != Mnemonic::Lea
                    || i.op0_register() != b
                    || !i.is_ip_rel_memory_operand()
                {
                    return false;
                }
                let table = i.ip_rel_memory_address();
                let Some(offset) = view
                    .data(table, 4)
                    .and_then(|bytes| <[u8; 4]>::try_from(bytes.as_ref()).ok())
                    .map(i32::from_le_bytes)
                else {
                    return false;
                };
                return body.contains(&table.wrapping_add(offset as i64 as u64));
            }
        }
    }
    false
}

/// Sets already computed in one view, by the address branched to.
#[derive(Debug, Default)]
pub struct ClobberMemo {
    estimate: Estimate,
    done: HashMap<u64, Result<RegSet, Undecided>>,
}

impl ClobberMemo {
    /// A memo for a view whose sets are estimated as `estimate` says.
    pub fn new(estimate: Estimate) -> ClobberMemo {
        ClobberMemo {
            estimate,
            done: HashMap::new(),
        }
    }
}

/// The call-clobbered registers a call to `target` may write in `view`, through every
/// direct call and branch it makes (a fixed point over the functions it reaches, so
/// recursion is fine), estimated as the memo's [`Estimate`] says. A branch into the middle of
/// a body (a `.cold` part jumping back into its function) counts that whole body. Code that
/// does not decode anywhere on the way, or for [`Estimate::AtMost`] code the analysis can only
/// over-estimate: [`Undecided`].
pub fn clobbered_by(
    view: &dyn CodeView,
    target: u64,
    memo: &mut ClobberMemo,
) -> Result<RegSet, Undecided> {
    if let Some(done) = memo.done.get(&target) {
        return done.clone();
    }
    // The functions reached, each decoded once; one that clobbers everything needs no more.
    let mut nodes: HashMap<u64, Node> = HashMap::new();
    let mut pending = vec![target];
    while let Some(addr) = pending.pop() {
        if nodes.contains_key(&addr) {
            continue;
        }
        let node = if let Some(done) = memo.done.get(&addr) {
            match done {
                Ok(set) => Node {
                    own: *set,
                    out: Vec::new(),
                    unsure: None,
                },
                Err(e) => {
                    let e = e.clone();
                    memo.done.insert(target, Err(e.clone()));
                    return Err(e);
                }
            }
        } else {
            let body = view.body_at(addr).or_else(|| view.body_containing(addr));
            match body {
                None => Node {
                    own: RegSet::CALL_CLOBBERED,
                    out: Vec::new(),
                    unsure: None,
                },
                Some((start, bytes)) => match decode_body(view, start, &bytes, memo.estimate) {
                    Ok(Node {
                        unsure: Some(e), ..
                    }) if memo.estimate == Estimate::AtMost => {
                        memo.done.insert(target, Err(e.clone()));
                        return Err(e);
                    }
                    Ok(node) if node.own == RegSet::CALL_CLOBBERED => Node {
                        own: node.own,
                        out: Vec::new(),
                        unsure: None,
                    },
                    Ok(node) => node,
                    Err(e) => {
                        memo.done.insert(target, Err(e.clone()));
                        return Err(e);
                    }
                },
            }
        };
        pending.extend(node.out.iter().copied());
        nodes.insert(addr, node);
    }
    let mut sets: HashMap<u64, RegSet> = nodes.iter().map(|(a, n)| (*a, n.own)).collect();
    loop {
        let mut changed = false;
        for (addr, node) in &nodes {
            let mut set = sets[addr];
            for callee in &node.out {
                set = set.union(sets[callee]);
            }
            if set != sets[addr] {
                sets.insert(*addr, set);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Each function's set is final: everything it reaches was in this walk.
    for (addr, set) in &sets {
        memo.done.insert(*addr, Ok(*set));
    }
    Ok(sets[&target])
}

/// A direct call (or tail call) of a caller's body whose callee clobbers more registers
/// in the new view than in the old.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClobberGrowth {
    /// The address the caller's code branches to (the callee's stable entry).
    pub callee: u64,
    /// The call-clobbered registers only the new callee writes.
    pub added: RegSet,
}

/// For the body `caller` (its runtime start and bytes, code a frame may still run after a
/// swap): each direct call target (`relevant` among them; e.g. functions of the caller's own
/// file, the only ones `-fipa-ra` knows) whose set in `new` is not a subset of its set in
/// `old`. `old`'s memo should be [`Estimate::AtMost`], `new`'s [`Estimate::AtLeast`]. `Err`:
/// some code could not be decoded or estimated (with the callee it was asked for), so the
/// answer is unknown.
pub fn growing_calls(
    caller: (u64, &[u8]),
    old: (&dyn CodeView, &mut ClobberMemo),
    new: (&dyn CodeView, &mut ClobberMemo),
    relevant: &dyn Fn(u64) -> bool,
) -> Result<Vec<ClobberGrowth>, Undecided> {
    let (start, bytes) = caller;
    let (old_view, old_memo) = old;
    let (new_view, new_memo) = new;
    // The caller's own indirect jumps do not matter: only its direct calls are asked.
    let node = decode_body(old_view, start, bytes, Estimate::AtMost)?;
    let mut targets = node.out;
    targets.sort_unstable();
    targets.dedup();
    let mut out = Vec::new();
    let of = |target: u64| {
        move |mut e: Undecided| {
            e.callee = Some(target);
            e
        }
    };
    for target in targets.into_iter().filter(|t| relevant(*t)) {
        let before = clobbered_by(old_view, target, old_memo).map_err(of(target))?;
        let after = clobbered_by(new_view, target, new_memo).map_err(of(target))?;
        let added = after.minus(before);
        if !added.is_empty() {
            out.push(ClobberGrowth {
                callee: target,
                added,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies by start; an entry in `redirect` runs another body; data words by address.
    #[derive(Default)]
    struct View {
        bodies: HashMap<u64, Vec<u8>>,
        redirect: HashMap<u64, u64>,
        data: HashMap<u64, u64>,
    }

    impl CodeView for View {
        fn body_at(&self, addr: u64) -> Option<(u64, Cow<'_, [u8]>)> {
            let start = self.redirect.get(&addr).copied().unwrap_or(addr);
            self.bodies
                .get(&start)
                .map(|b| (start, Cow::Borrowed(b.as_slice())))
        }

        fn body_containing(&self, addr: u64) -> Option<(u64, Cow<'_, [u8]>)> {
            self.bodies
                .iter()
                .find(|(start, b)| (**start + 1..**start + b.len() as u64).contains(&addr))
                .map(|(start, b)| (*start, Cow::Borrowed(b.as_slice())))
        }

        fn data(&self, addr: u64, len: usize) -> Option<Cow<'_, [u8]>> {
            let word = self.data.get(&addr)?.to_le_bytes();
            Some(Cow::Owned(word.get(..len)?.to_vec()))
        }
    }

    /// `jmp rel32` (`0xe9`) or `jne rel32` (`0x0f 0x85`) at `at` to `target`.
    fn branch(opcode: &[u8], at: u64, target: u64) -> Vec<u8> {
        let len = opcode.len() as i64 + 4;
        let rel = (target as i64 - (at as i64 + len)) as i32;
        let mut out = opcode.to_vec();
        out.extend(rel.to_le_bytes());
        out
    }

    /// `call rel32` at `at` to `target`.
    fn call(at: u64, target: u64) -> Vec<u8> {
        let rel = (target as i64 - (at as i64 + 5)) as i32;
        let mut out = vec![0xe8];
        out.extend(rel.to_le_bytes());
        out
    }

    const LEA_EAX_RDI_1: [u8; 3] = [0x8d, 0x47, 0x01]; // lea 0x1(%rdi),%eax
    const MOV_ECX_EDI: [u8; 2] = [0x89, 0xf9]; // mov %edi,%ecx
    const PUSH_RBX_POP_RBX: [u8; 2] = [0x53, 0x5b];
    const XOR_XMM1: [u8; 4] = [0x66, 0x0f, 0xef, 0xc9]; // pxor %xmm1,%xmm1
    const RET: u8 = 0xc3;

    fn body(parts: &[&[u8]]) -> Vec<u8> {
        let mut out: Vec<u8> = parts.concat();
        out.push(RET);
        out
    }

    #[test]
    fn own_writes_are_full_call_clobbered_registers() {
        let mut v = View::default();
        v.bodies.insert(
            0x1000,
            body(&[&LEA_EAX_RDI_1, &MOV_ECX_EDI, &PUSH_RBX_POP_RBX, &XOR_XMM1]),
        );
        let set = clobbered_by(&v, 0x1000, &mut ClobberMemo::default()).expect("decodes");
        // rbx is callee-saved, rsp (push/pop) is not counted.
        assert_eq!(set.names(), ["rax", "rcx", "xmm1"]);
    }

    #[test]
    fn calls_are_transitive_cycle_safe_and_unknown_code_clobbers_everything() {
        let mut v = View::default();
        // a (0x1000) calls b (0x2000), b calls a and sets rcx; c (0x3000) calls a PLT stub.
        let mut a = LEA_EAX_RDI_1.to_vec();
        a.extend(call(0x1003, 0x2000));
        v.bodies.insert(0x1000, body(&[&a]));
        let mut b = MOV_ECX_EDI.to_vec();
        b.extend(call(0x2002, 0x1000));
        v.bodies.insert(0x2000, body(&[&b]));
        v.bodies.insert(0x3000, body(&[&call(0x3000, 0x9000)]));
        let mut memo = ClobberMemo::default();
        let a_set = clobbered_by(&v, 0x1000, &mut memo).expect("decodes");
        assert_eq!(a_set.names(), ["rax", "rcx"]);
        assert_eq!(clobbered_by(&v, 0x2000, &mut memo), Ok(a_set));
        assert_eq!(
            clobbered_by(&v, 0x3000, &mut memo),
            Ok(RegSet::CALL_CLOBBERED)
        );
        // An indirect call: `call *%rax`.
        v.bodies.insert(0x4000, body(&[&[0xff, 0xd0]]));
        assert_eq!(
            clobbered_by(&v, 0x4000, &mut ClobberMemo::default()),
            Ok(RegSet::CALL_CLOBBERED)
        );
    }

    #[test]
    fn a_callee_that_clobbers_more_is_a_growth_of_the_running_caller() {
        // main (0x5000) calls step's entry 0x1000 and, through `helper` (0x6000, unchanged),
        // leaf 0x7000 (swapped).
        let mut caller = call(0x5000, 0x1000);
        caller.extend(call(0x5005, 0x6000));
        let caller = body(&[&caller]);
        let mut old = View::default();
        old.bodies.insert(0x1000, body(&[&LEA_EAX_RDI_1]));
        old.bodies.insert(0x6000, body(&[&call(0x6000, 0x7000)]));
        old.bodies.insert(0x7000, body(&[&LEA_EAX_RDI_1]));
        // The new step (in the arena, 0x10000) and the new leaf (0x11000) set rcx too.
        let mut new = View {
            bodies: old.bodies.clone(),
            redirect: HashMap::from([(0x1000, 0x10000), (0x7000, 0x11000)]),
            data: HashMap::new(),
        };
        new.bodies
            .insert(0x10000, body(&[&LEA_EAX_RDI_1, &MOV_ECX_EDI]));
        new.bodies.insert(0x11000, body(&[&XOR_XMM1]));
        let growth = growing_calls(
            (0x5000, &caller),
            (&old, &mut ClobberMemo::new(Estimate::AtMost)),
            (&new, &mut ClobberMemo::default()),
            &|_| true,
        )
        .expect("decodes");
        let named: Vec<(u64, Vec<String>)> =
            growth.iter().map(|g| (g.callee, g.added.names())).collect();
        assert_eq!(
            named,
            [
                (0x1000, vec!["rcx".to_string()]),
                (0x6000, vec!["xmm1".to_string()])
            ]
        );
        // The same edit within the old set is no growth; calls the filter drops are not asked.
        new.bodies.insert(0x10000, body(&[&LEA_EAX_RDI_1]));
        new.bodies.insert(0x11000, body(&[&LEA_EAX_RDI_1]));
        let none = growing_calls(
            (0x5000, &caller),
            (&old, &mut ClobberMemo::new(Estimate::AtMost)),
            (&new, &mut ClobberMemo::default()),
            &|t| t != 0x6000,
        );
        assert_eq!(none, Ok(Vec::new()));
    }

    #[test]
    fn undecodable_code_is_undecided_and_jump_tables_stay_inside() {
        let mut v = View::default();
        // A truncated `mov $imm32,%eax`.
        v.bodies.insert(0x1000, vec![0xb8, 0x01]);
        let err = clobbered_by(&v, 0x1000, &mut ClobberMemo::default()).expect_err("truncated");
        assert_eq!(err.at, 0x1000);
        // add %rdx,%rax; jmp *%rax: a PIC jump table in code callers were compiled against
        // (see `a_pic_table_is_read_in_new_code`). mov (%rdi),%rax; jmp *%rax: a tail call
        // through a pointer.
        v.bodies
            .insert(0x2000, body(&[&[0x48, 0x01, 0xd0], &[0xff, 0xe0]]));
        v.bodies
            .insert(0x3000, body(&[&[0x48, 0x8b, 0x07], &[0xff, 0xe0]]));
        assert_eq!(
            clobbered_by(&v, 0x2000, &mut ClobberMemo::new(Estimate::AtMost)).map(RegSet::names),
            Ok(vec!["rax".to_string()])
        );
        let mut memo = ClobberMemo::default();
        assert_eq!(
            clobbered_by(&v, 0x3000, &mut memo),
            Ok(RegSet::CALL_CLOBBERED)
        );
    }

    #[test]
    fn a_cold_part_jumping_back_is_part_of_its_function() {
        // step (0x1000): jne to its cold part (0x2000); lea; ret. The cold part sets rcx and
        // jumps back to step's lea (0x1006), the middle of step.
        let step = |extra: &[u8]| {
            let mut b = branch(&[0x0f, 0x85], 0x1000, 0x2000);
            b.extend(LEA_EAX_RDI_1);
            b.extend(extra);
            body(&[&b])
        };
        let mut cold = MOV_ECX_EDI.to_vec();
        cold.extend(branch(&[0xe9], 0x2002, 0x1006));
        let mut old = View::default();
        old.bodies.insert(0x1000, step(&[]));
        old.bodies.insert(0x2000, cold.clone());
        let mut memo = ClobberMemo::new(Estimate::AtMost);
        assert_eq!(
            clobbered_by(&old, 0x1000, &mut memo).map(RegSet::names),
            Ok(vec!["rax".to_string(), "rcx".to_string()])
        );
        // The new step also sets rdx (mov %edi,%edx): a growth the old set must not hide.
        let mut new = View::default();
        new.bodies.insert(0x1000, step(&[0x89, 0xfa]));
        new.bodies.insert(0x2000, cold);
        let main = body(&[&call(0x5000, 0x1000)]);
        let growth = growing_calls(
            (0x5000, &main),
            (&old, &mut ClobberMemo::new(Estimate::AtMost)),
            (&new, &mut ClobberMemo::default()),
            &|_| true,
        )
        .expect("decodes");
        assert_eq!(growth.len(), 1, "{growth:?}");
        assert_eq!(growth[0].added.names(), ["rdx"]);
    }

    #[test]
    fn syscall_writes_rax_rcx_and_r11() {
        let mut v = View::default();
        // mov $39,%eax; syscall
        v.bodies.insert(
            0x1000,
            body(&[&[0xb8, 0x27, 0x00, 0x00, 0x00], &[0x0f, 0x05]]),
        );
        for estimate in [Estimate::AtMost, Estimate::AtLeast] {
            assert_eq!(
                clobbered_by(&v, 0x1000, &mut ClobberMemo::new(estimate)).map(RegSet::names),
                Ok(vec![
                    "rax".to_string(),
                    "rcx".to_string(),
                    "r11".to_string()
                ]),
                "{estimate:?}"
            );
        }
    }

    #[test]
    fn a_table_of_function_pointers_is_a_tail_call_and_a_switch_table_is_not() {
        // and $1,%eax; jmp *0x8000(,%rax,8)
        let jump = body(&[
            &[0x83, 0xe0, 0x01],
            &[0xff, 0x24, 0xc5, 0x00, 0x80, 0x00, 0x00],
        ]);
        let mut v = View::default();
        v.bodies.insert(0x1000, jump.clone());
        v.bodies.insert(0x3000, body(&[&MOV_ECX_EDI]));
        // The table holds a function's start: a tail call, every register on both sides.
        v.data.insert(0x8000, 0x3000);
        for estimate in [Estimate::AtMost, Estimate::AtLeast] {
            assert_eq!(
                clobbered_by(&v, 0x1000, &mut ClobberMemo::new(estimate)),
                Ok(RegSet::CALL_CLOBBERED),
                "{estimate:?}"
            );
        }
        // The table's entry lands inside the body: a switch, rax only.
        v.data.insert(0x8000, 0x1003);
        assert_eq!(
            clobbered_by(&v, 0x1000, &mut ClobberMemo::new(Estimate::AtMost)).map(RegSet::names),
            Ok(vec!["rax".to_string()])
        );
        // An unreadable table: every register in code that will run, undecided in code
        // callers were compiled against.
        v.data.clear();
        assert_eq!(
            clobbered_by(&v, 0x1000, &mut ClobberMemo::default()),
            Ok(RegSet::CALL_CLOBBERED)
        );
        let err = clobbered_by(&v, 0x1000, &mut ClobberMemo::new(Estimate::AtMost))
            .expect_err("unreadable table");
        assert_eq!(err.at, 0x1003, "{err:?}");
        // A tail call through a register: the same.
        v.bodies
            .insert(0x4000, body(&[&[0x48, 0x8b, 0x07], &[0xff, 0xe0]]));
        assert!(clobbered_by(&v, 0x4000, &mut ClobberMemo::new(Estimate::AtMost)).is_err());
    }

    #[test]
    fn a_pic_table_is_read_in_new_code() {
        // lea 0x8000(%rip),%rdx; mov %edi,%edi; movslq (%rdx,%rdi,4),%rax; add %rdx,%rax;
        // jmp *%rax; then a case at 0x1012: mov %edi,%ecx; ret. gcc's PIC switch.
        let mut lea = vec![0x48, 0x8d, 0x15];
        lea.extend((0x8000i32 - 0x1007).to_le_bytes());
        let switch = body(&[
            &lea,
            &[0x89, 0xff],
            &[0x48, 0x63, 0x04, 0xba],
            &[0x48, 0x01, 0xd0],
            &[0xff, 0xe0],
            &MOV_ECX_EDI,
        ]);
        // mov 0x10(%rip),%rax; mov 0x18(%rip),%rdx; add %rdx,%rax; jmp *%rax: a tail call to
        // `fp + off`, the same last two instructions.
        let computed = body(&[
            &[0x48, 0x8b, 0x05, 0x10, 0, 0, 0],
            &[0x48, 0x8b, 0x15, 0x18, 0, 0, 0],
            &[0x48, 0x01, 0xd0],
            &[0xff, 0xe0],
        ]);
        let own = |names: &[&str]| -> Result<Vec<String>, Undecided> {
            Ok(names.iter().map(|n| n.to_string()).collect())
        };
        let every: Result<Vec<String>, Undecided> = Ok(RegSet::CALL_CLOBBERED.names());
        // (the body, the table's first offset, the set in new code, in old code)
        let rows = [
            // A real switch: its entry lands on the case inside the body, on both sides.
            (
                &switch,
                Some(0x1012 - 0x8000),
                own(&["rax", "rcx", "rdx", "rdi"]),
                own(&["rax", "rcx", "rdx", "rdi"]),
            ),
            // A table of offsets to a function's start, or one that cannot be read: a tail
            // call in new code; old code may under-count.
            (
                &switch,
                Some(0x3000 - 0x8000),
                every.clone(),
                own(&["rax", "rcx", "rdx", "rdi"]),
            ),
            (
                &switch,
                None,
                every.clone(),
                own(&["rax", "rcx", "rdx", "rdi"]),
            ),
            // add+jmp of a computed pointer, no table: a tail call in new code.
            (
                &computed,
                Some(0x1012 - 0x8000),
                every,
                own(&["rax", "rdx"]),
            ),
        ];
        for (i, (code, offset, new, old)) in rows.into_iter().enumerate() {
            let mut v = View::default();
            v.bodies.insert(0x1000, code.clone());
            v.bodies.insert(0x3000, body(&[&MOV_ECX_EDI]));
            if let Some(offset) = offset {
                v.data.insert(0x8000, offset as i64 as u64);
            }
            for (estimate, want) in [(Estimate::AtLeast, new), (Estimate::AtMost, old)] {
                assert_eq!(
                    clobbered_by(&v, 0x1000, &mut ClobberMemo::new(estimate)).map(RegSet::names),
                    want,
                    "row {i}, {estimate:?}"
                );
            }
        }
    }
}
