//! Label addresses kept in the program's state: a function that stores addresses of its own
//! code (`&&label`, GNU C's labels as values) in a writable variable cannot be swapped.
//!
//! Threaded-code interpreters (oniguruma's `match_at`, many bytecode VMs) keep a table of
//! label addresses in a function-local `static` array and copy entries of it into compiled
//! programs on the heap. The variable keeps its value across a swap (writable data is bound
//! to its existing address, see `data.rs`), so after the swap it still holds addresses
//! inside the *old* body, and so does every copy the program made: the new body would jump
//! into the old body's labels with its own frame layout and registers, and the program
//! dies. A read-only table (`static const void *const t[]`) is copied fresh with the body
//! and stays consistent with it, so it is fine; a writable one bound to running state is
//! refused, naming the variable and the function.
//!
//! A variable this link allocates for the first time is initialised from the object, with
//! the new body's labels: nothing refers to the old ones, so that is fine too.
//!
//! A body can also compute its labels' addresses itself (`p->addr = &&L_ADD;` is a
//! RIP-relative `lea` into its own bytes, which gas resolves without a relocation, or an
//! absolute `mov $label` in a non-PIE build) and store them anywhere, the heap included.
//! Where they go cannot be seen statically, so a body whose code takes an address inside a
//! copied body that is not a function entry (other than as a branch target) is refused too.

use hot_object::AtomId;
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess,
    OpKind, Register,
};

use crate::link::Link;
use crate::resolve::{AtomRole, TargetClass};
use crate::LinkErrorCode;

impl Link<'_> {
    /// Phase 4b (after lay-out, when the copied bodies are known): refuse bodies whose label
    /// addresses the running program holds in a kept writable variable.
    pub(crate) fn check_label_addresses(&mut self) {
        let obj = self.info.obj;
        let mut refusals: Vec<(AtomId, AtomId)> = Vec::new();
        for (i, atom) in obj.atoms.iter().enumerate() {
            let variable = AtomId(i as u32);
            if !matches!(self.info.role(variable), AtomRole::Variable { .. })
                || !self.bound.contains_key(&variable)
                || self.fresh_data.contains(&variable)
            {
                continue;
            }
            for reloc in &atom.relocs {
                let TargetClass::Placed { atom: body } = self.info.classify(variable, reloc) else {
                    continue;
                };
                let is_code = matches!(
                    self.info.role(body),
                    AtomRole::Function { .. } | AtomRole::Code
                );
                if is_code
                    && self.placed.contains_key(&body)
                    && !refusals.contains(&(variable, body))
                {
                    refusals.push((variable, body));
                }
            }
        }
        let mut computed: Vec<AtomId> = Vec::new();
        for &body in self.placed.keys() {
            if matches!(
                self.info.role(body),
                AtomRole::Function { .. } | AtomRole::Code
            ) && self.takes_label_addresses(body)
            {
                computed.push(body);
            }
        }
        computed.sort_unstable();
        for body in computed {
            let function = self.info.atom_name(body);
            self.error(
                LinkErrorCode::UnsupportedRelocation,
                format!(
                    "`{function}` takes addresses of its own labels (`&&label`) in code: the \
                     running program may keep the old body's label addresses in its data, and a \
                     new body of `{function}` would jump into the old one; it cannot be \
                     swapped — restart the program"
                ),
                Some(function.clone()),
                Some((body, hot_object::AtomOffset(0))),
            );
        }
        for (variable, body) in refusals {
            let name = self.info.atom_name(variable);
            let function = self.info.atom_name(body);
            self.variable_error(
                LinkErrorCode::UnsupportedRelocation,
                format!(
                    "`{function}` keeps addresses of its own labels (`&&label`) in the writable \
                     variable `{name}`: the running program holds the old body's label \
                     addresses there (and in any copies it made), so a new body of \
                     `{function}` would jump into the old one; it cannot be swapped — restart \
                     the program"
                ),
                name,
                self.atom_decl_line(variable),
            );
        }
    }

    /// Whether the code of `body` materialises an address inside a copied body that is not
    /// a function entry, other than as a branch target: a RIP-relative `lea` into its own
    /// bytes (no relocation), a relocated non-branch operand designating copied code, or a
    /// load from a read-only label table whose value does anything but feed an indirect jump.
    fn takes_label_addresses(&self, body: AtomId) -> bool {
        if self.info.obj.machine == hot_object::Machine::Aarch64 {
            return self.takes_label_addresses_aarch64(body);
        }
        let atom = self.info.obj.atom(body);
        let entry = match self.info.role(body) {
            AtomRole::Function { offset, .. } => Some(*offset),
            _ => None,
        };
        let mut decoder = Decoder::with_ip(64, &atom.bytes, 0, DecoderOptions::NONE);
        let mut code: Vec<Instruction> = Vec::new();
        while decoder.can_decode() {
            let instr = decoder.decode();
            if instr.is_invalid() {
                // Not code gcc or clang emit: nothing can be said, so assume the worst.
                return true;
            }
            code.push(instr);
        }
        for (at, instr) in code.iter().enumerate() {
            let start = instr.ip();
            let end = instr.next_ip();
            let relocated = atom
                .relocs
                .iter()
                .filter(|r| (start..end).contains(&r.offset.0))
                .collect::<Vec<_>>();
            let branch = matches!(
                instr.flow_control(),
                FlowControl::UnconditionalBranch
                    | FlowControl::ConditionalBranch
                    | FlowControl::Call
            );
            if relocated.is_empty() {
                // An own label: `lea label(%rip)` resolved by the assembler.
                let own = instr.mnemonic() == Mnemonic::Lea && instr.memory_base() == Register::RIP;
                let target = instr.memory_displacement64();
                if !branch && own && target < atom.size && Some(target) != entry {
                    return true;
                }
                continue;
            }
            for reloc in relocated {
                let TargetClass::Placed { atom: target } = self.info.classify(body, reloc) else {
                    continue;
                };
                match self.info.role(target) {
                    AtomRole::Function { .. } | AtomRole::Code
                        if !branch && self.placed.contains_key(&target) =>
                    {
                        return true;
                    }
                    AtomRole::AnonReadOnly
                        if self.is_label_table(target) && !only_dispatches(&code, at) =>
                    {
                        return true;
                    }
                    _ => {}
                }
            }
        }
        false
    }

    /// aarch64: an address of a non-entry byte of copied code, which is what `&&label`
    /// compiles to (`adrp x0, .L3; add x0, x0, :lo12:.L3` against the function's own
    /// section: the `add`, `adr` or `movz`/`movk` completes the address), or a label table
    /// reached from the body. Branches (`b`, `bl`, `b.cond`, `cbz`, `tbz`) are jumps, and
    /// `adrp` + `ldr` (or `ldr` literal) of the body's own bytes loads gcc's
    /// `-mcmodel=large` literal pool: neither takes an address. `adr` of a label in the same
    /// section has no relocation and is a switch's dispatch base (gcc's `adr x2, .Lrtx4`).
    /// Unlike on x86-64, a label table that only feeds `br` is not told apart: refused.
    fn takes_label_addresses_aarch64(&self, body: AtomId) -> bool {
        use hot_object::RelocKind::*;
        self.info.obj.atom(body).relocs.iter().any(|reloc| {
            let completes_address = matches!(
                reloc.kind,
                AddAbsLo12Nc
                    | AdrPrelLo21
                    | MovwUabsG0
                    | MovwUabsG0Nc
                    | MovwUabsG1
                    | MovwUabsG1Nc
                    | MovwUabsG2
                    | MovwUabsG2Nc
                    | MovwUabsG3
            );
            if !completes_address {
                return false;
            }
            let TargetClass::Placed { atom: target } = self.info.classify(body, reloc) else {
                return false;
            };
            match self.info.role(target) {
                AtomRole::Function { .. } | AtomRole::Code => self.placed.contains_key(&target),
                AtomRole::AnonReadOnly => self.is_label_table(target),
                _ => false,
            }
        })
    }

    /// Whether read-only `table` holds addresses of non-entry bytes of copied code: a label
    /// table (`static void *const t[] = {&&a, &&b}`), whose entries are 8-byte pointers.
    /// A PIE's `switch` table holds 4-byte offsets between labels (`.long .L5-.L4`), which
    /// only the switch's own code turns into an address; a non-PIE's holds pointers but is
    /// used by `jmp *t(,%r,8)`, which [`only_dispatches`] accepts.
    fn is_label_table(&self, table: AtomId) -> bool {
        self.info.obj.atom(table).relocs.iter().any(|reloc| {
            reloc.kind == hot_object::RelocKind::Abs64
                && matches!(
                    self.info.classify(table, reloc),
                    TargetClass::Placed { atom } if matches!(
                        self.info.role(atom),
                        AtomRole::Function { .. } | AtomRole::Code
                    ) && self.placed.contains_key(&atom)
                )
        })
    }
}

/// How far a loaded label address is followed to the indirect jump that consumes it.
const DISPATCH_WINDOW: usize = 32;

/// Whether the instruction `code[at]`, which refers to a label table, only ever feeds
/// indirect jumps: `jmp *t(,%r,8)`, a load `mov t(,%r,8),%rY` (or through a register set by
/// `lea t(%rip),%rB`, which gcc hoists out of an interpreter loop) whose value reaches
/// `jmp *%rY` before anything else reads it. Anything else (the address or an entry stored,
/// passed, returned: Ruby's VM copies its table into its bytecode) counts as taking labels.
fn only_dispatches(code: &[Instruction], at: usize) -> bool {
    let instr = &code[at];
    if instr.flow_control() == FlowControl::IndirectBranch {
        return true;
    }
    let is_load = instr.mnemonic() == Mnemonic::Mov
        && instr.op_count() == 2
        && instr.op0_kind() == OpKind::Register
        && instr.op1_kind() == OpKind::Memory;
    if is_load {
        return feeds_indirect_jump(code, at + 1, instr.op0_register().full_register());
    }
    let is_base = (instr.mnemonic() == Mnemonic::Lea
        || (instr.mnemonic() == Mnemonic::Mov && instr.op1_kind() != OpKind::Memory))
        && instr.op0_kind() == OpKind::Register;
    if !is_base {
        return false;
    }
    let base = instr.op0_register().full_register();
    let mut info = InstructionInfoFactory::new();
    for (i, next) in code.iter().enumerate().skip(at + 1) {
        // The table's address in an address (gcc -O0 makes it the index, with scale 1).
        let addresses_table = (0..next.op_count()).any(|op| next.op_kind(op) == OpKind::Memory)
            && (next.memory_base().full_register() == base
                || next.memory_index().full_register() == base);
        if addresses_table {
            if next.flow_control() == FlowControl::IndirectBranch {
                continue;
            }
            let is_load = next.mnemonic() == Mnemonic::Mov
                && next.op0_kind() == OpKind::Register
                && next.op1_kind() == OpKind::Memory;
            if !is_load {
                return false;
            }
            let loaded = next.op0_register().full_register();
            if !feeds_indirect_jump(code, i + 1, loaded) {
                return false;
            }
            if loaded == base {
                // The table's address is gone from the register.
                return true;
            }
            continue;
        }
        let (reads, writes) = access(&mut info, next, base);
        if reads {
            // Spilled, passed, compared: where the table's address goes is unknown.
            return false;
        }
        if writes {
            return true;
        }
    }
    true
}

/// Whether the label address in `reg`, loaded just before `code[from]`, reaches `jmp *reg`
/// before any other use (following direct jumps), or dies unread.
fn feeds_indirect_jump(code: &[Instruction], from: usize, reg: Register) -> bool {
    let mut info = InstructionInfoFactory::new();
    let mut i = from;
    for _ in 0..DISPATCH_WINDOW {
        let Some(next) = code.get(i) else {
            return false;
        };
        if next.flow_control() == FlowControl::IndirectBranch
            && next.op0_kind() == OpKind::Register
            && next.op0_register().full_register() == reg
        {
            return true;
        }
        let (reads, writes) = access(&mut info, next, reg);
        if reads {
            return false;
        }
        if writes {
            return true;
        }
        match next.flow_control() {
            FlowControl::Next => i += 1,
            FlowControl::UnconditionalBranch => {
                let target = next.near_branch_target();
                match code.binary_search_by_key(&target, Instruction::ip) {
                    Ok(t) => i = t,
                    Err(_) => return false,
                }
            }
            _ => return false,
        }
    }
    false
}

/// Whether `instr` reads `reg` (any part of it, as an operand or an address register), and
/// whether it writes it.
fn access(info: &mut InstructionInfoFactory, instr: &Instruction, reg: Register) -> (bool, bool) {
    let mut reads = false;
    let mut writes = false;
    for used in info.info(instr).used_registers() {
        if used.register().full_register() != reg {
            continue;
        }
        match used.access() {
            OpAccess::Write | OpAccess::CondWrite => writes = true,
            OpAccess::None | OpAccess::NoMemAccess => {}
            _ => reads = true,
        }
    }
    (reads, writes)
}
