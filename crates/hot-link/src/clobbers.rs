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
//! call-clobbered (`rbx`, `rbp`, `r12`–`r15` and `rsp` are preserved by any conforming body).
//! A direct call or a branch out of the body adds the target's set, transitively, to a fixed
//! point (cycles of mutually recursive functions are fine); a target the code view does not
//! know (a PLT stub, another module) and an indirect call add every call-clobbered register,
//! which is also what gcc assumes there. An indirect jump that looks like a switch's jump
//! table (`notrack`, `jmp *table(,%reg,8)`, or `jmp *%reg` right after `add %reg2,%reg`)
//! stays inside the body; any other is an indirect tail call: every register.
//! Pure: the caller supplies the code ([`CodeView`]).

use std::borrow::Cow;
use std::collections::HashMap;

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
}

/// Why a set could not be computed: code that does not decode. A caller must then assume
/// the worst.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecided {
    /// The runtime address of the bytes.
    pub at: u64,
    pub reason: String,
}

/// What one body does by itself: the registers it writes and where it branches out to.
struct Node {
    own: RegSet,
    out: Vec<u64>,
}

/// Decodes one body at `start`: its own writes and the targets of its direct calls and
/// branches out of it. An indirect call (or indirect tail call) writes every register.
fn decode_body(start: u64, bytes: &[u8]) -> Result<Node, Undecided> {
    let end = start.saturating_add(bytes.len() as u64);
    let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
    let mut info = InstructionInfoFactory::new();
    let mut instr = Instruction::default();
    let mut previous = Instruction::default();
    let mut node = Node {
        own: RegSet::EMPTY,
        out: Vec::new(),
    };
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if instr.code() == Code::INVALID {
            return Err(Undecided {
                at: instr.ip(),
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
            FlowControl::IndirectBranch if is_jump_table(&instr, &previous) => {}
            FlowControl::Call
            | FlowControl::UnconditionalBranch
            | FlowControl::ConditionalBranch
            | FlowControl::IndirectCall
            | FlowControl::IndirectBranch => node.own = RegSet::CALL_CLOBBERED,
            _ => {}
        }
        previous = instr;
    }
    Ok(node)
}

/// Whether an indirect `jmp` is a switch's jump table (its targets inside the body), as gcc
/// and clang emit them: `notrack jmp` (-fcf-protection), `jmp *table(,%reg,8)` (non-PIC), or
/// `jmp *%reg` right after `add %base,%reg` (PIC: a table of offsets).
fn is_jump_table(instr: &Instruction, previous: &Instruction) -> bool {
    if instr.mnemonic() != Mnemonic::Jmp {
        return false;
    }
    if instr.segment_prefix() == Register::DS {
        return true;
    }
    match instr.op0_kind() {
        OpKind::Memory => {
            instr.memory_base() == Register::None
                && instr.memory_index() != Register::None
                && instr.memory_index_scale() == 8
        }
        OpKind::Register => {
            previous.mnemonic() == Mnemonic::Add
                && previous.op0_kind() == OpKind::Register
                && previous.op1_kind() == OpKind::Register
                && previous.op0_register() == instr.op0_register()
        }
        _ => false,
    }
}

/// Sets already computed in one view, by the address branched to.
#[derive(Debug, Default)]
pub struct ClobberMemo {
    done: HashMap<u64, Result<RegSet, Undecided>>,
}

/// The call-clobbered registers a call to `target` may write in `view`, through every
/// direct call and branch it makes (a fixed point over the functions it reaches, so
/// recursion is fine). Code that does not decode anywhere on the way: [`Undecided`].
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
                },
                Err(e) => {
                    let e = e.clone();
                    memo.done.insert(target, Err(e.clone()));
                    return Err(e);
                }
            }
        } else {
            match view.body_at(addr) {
                None => Node {
                    own: RegSet::CALL_CLOBBERED,
                    out: Vec::new(),
                },
                Some((start, bytes)) => match decode_body(start, &bytes) {
                    Ok(node) if node.own == RegSet::CALL_CLOBBERED => Node {
                        own: node.own,
                        out: Vec::new(),
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
/// `old`. `Err`: some code could not be decoded, so the answer is unknown.
pub fn growing_calls(
    caller: (u64, &[u8]),
    old: (&dyn CodeView, &mut ClobberMemo),
    new: (&dyn CodeView, &mut ClobberMemo),
    relevant: &dyn Fn(u64) -> bool,
) -> Result<Vec<ClobberGrowth>, Undecided> {
    let (start, bytes) = caller;
    let node = decode_body(start, bytes)?;
    let (old_view, old_memo) = old;
    let (new_view, new_memo) = new;
    let mut targets = node.out;
    targets.sort_unstable();
    targets.dedup();
    let mut out = Vec::new();
    for target in targets.into_iter().filter(|t| relevant(*t)) {
        let before = clobbered_by(old_view, target, old_memo)?;
        let after = clobbered_by(new_view, target, new_memo)?;
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

    /// Bodies by start; an entry in `redirect` runs another body.
    #[derive(Default)]
    struct View {
        bodies: HashMap<u64, Vec<u8>>,
        redirect: HashMap<u64, u64>,
    }

    impl CodeView for View {
        fn body_at(&self, addr: u64) -> Option<(u64, Cow<'_, [u8]>)> {
            let start = self.redirect.get(&addr).copied().unwrap_or(addr);
            self.bodies
                .get(&start)
                .map(|b| (start, Cow::Borrowed(b.as_slice())))
        }
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
        };
        new.bodies
            .insert(0x10000, body(&[&LEA_EAX_RDI_1, &MOV_ECX_EDI]));
        new.bodies.insert(0x11000, body(&[&XOR_XMM1]));
        let growth = growing_calls(
            (0x5000, &caller),
            (&old, &mut ClobberMemo::default()),
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
            (&old, &mut ClobberMemo::default()),
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
        // add %rdx,%rax; jmp *%rax: a PIC jump table. mov (%rdi),%rax; jmp *%rax: a tail call
        // through a pointer.
        v.bodies
            .insert(0x2000, body(&[&[0x48, 0x01, 0xd0], &[0xff, 0xe0]]));
        v.bodies
            .insert(0x3000, body(&[&[0x48, 0x8b, 0x07], &[0xff, 0xe0]]));
        let mut memo = ClobberMemo::default();
        assert_eq!(
            clobbered_by(&v, 0x2000, &mut memo).map(RegSet::names),
            Ok(vec!["rax".to_string()])
        );
        assert_eq!(
            clobbered_by(&v, 0x3000, &mut memo),
            Ok(RegSet::CALL_CLOBBERED)
        );
    }
}
