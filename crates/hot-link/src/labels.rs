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
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, Register};

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
    /// bytes (no relocation), or a relocated non-branch operand designating copied code.
    fn takes_label_addresses(&self, body: AtomId) -> bool {
        let atom = self.info.obj.atom(body);
        let entry = match self.info.role(body) {
            AtomRole::Function { offset, .. } => Some(*offset),
            _ => None,
        };
        let mut decoder = Decoder::with_ip(64, &atom.bytes, 0, DecoderOptions::NONE);
        let mut instr = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut instr);
            if instr.is_invalid() {
                return false;
            }
            if matches!(
                instr.flow_control(),
                FlowControl::UnconditionalBranch
                    | FlowControl::ConditionalBranch
                    | FlowControl::Call
            ) {
                continue;
            }
            let start = instr.ip();
            let end = instr.next_ip();
            let relocated = atom
                .relocs
                .iter()
                .filter(|r| (start..end).contains(&r.offset.0))
                .collect::<Vec<_>>();
            if relocated.is_empty() {
                // An own label: `lea label(%rip)` resolved by the assembler.
                let own = instr.mnemonic() == Mnemonic::Lea && instr.memory_base() == Register::RIP;
                let target = instr.memory_displacement64();
                if own && target < atom.size && Some(target) != entry {
                    return true;
                }
                continue;
            }
            for reloc in relocated {
                if let TargetClass::Placed { atom: target } = self.info.classify(body, reloc) {
                    if matches!(
                        self.info.role(target),
                        AtomRole::Function { .. } | AtomRole::Code
                    ) && self.placed.contains_key(&target)
                    {
                        return true;
                    }
                }
            }
        }
        false
    }
}
