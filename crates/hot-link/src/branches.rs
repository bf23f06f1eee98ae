//! Direct branches from anywhere in the executable's code into the first bytes of its
//! functions.
//!
//! Redirecting an entry overwrites its first 5 bytes. A branch inside the function itself
//! is found when its old body is decoded ([`crate::entry`]), but code elsewhere can branch
//! there too: a function's `.cold` part jumps back into its hot part (a loop head right
//! behind `endbr64` is entry+4), and hand-written assembly may skip a function's first
//! instruction. Every function symbol of the executable is decoded once, per linker (on
//! [`crate::Linker::prepare`] or the first link), and each direct near branch whose target
//! lies strictly inside `(s, s + 32)` of a function start `s` is kept (the entry jump's 5
//! bytes, and those of a jump written inside the old body past a statement), keyed by `s` (about
//! 60 ms for 14 MB of text in a release build). Indirect
//! branches (jump tables, function pointers) are not visible here; they are not expected to
//! target the middle of a function's first instruction bytes.

use std::collections::HashMap;

use hot_object::SymbolKind;
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction};

use crate::ImageModel;

/// How far into a function branches are kept: the entry jump's 5 bytes, and a jump written
/// inside the old body past a statement boundary (`entry.rs`) with its own 5 bytes.
const LANDING_WINDOW: u64 = hot_object::STATEMENT_WINDOW;

/// A branch into a function's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Landing {
    /// Where it lands (link-time address, strictly inside the function's first
    /// [`LANDING_WINDOW`] bytes).
    pub target: u64,
    /// The branch instruction (link-time address).
    pub from: u64,
}

/// How far into an aarch64 function an entry jump can reach: a landing pad and the 16-byte
/// absolute jump.
pub(crate) const AARCH64_JUMP_REACH: u64 = 4 + crate::aarch64::ABSOLUTE_JUMP_LEN;

/// For each function start of the executable that some direct branch lands just behind,
/// those branches.
#[derive(Debug, Default)]
pub(crate) struct EntryLandings {
    into: HashMap<u64, Vec<Landing>>,
}

impl EntryLandings {
    pub(crate) fn build(model: &ImageModel) -> EntryLandings {
        let image = &model.exe.image;
        let mut functions: Vec<(u64, u64)> = image
            .symbols
            .iter()
            .filter(|s| s.defined && s.kind == SymbolKind::Function)
            .map(|s| (s.vaddr, s.size))
            .collect();
        functions.sort_unstable();
        functions.dedup();
        let mut starts: Vec<u64> = functions.iter().map(|&(start, _)| start).collect();
        starts.dedup();
        let mut landings = EntryLandings::default();
        let mut instr = Instruction::default();
        for &(start, size) in &functions {
            let Some(bytes) = (size > 0)
                .then(|| image.bytes_at(start, size as usize))
                .flatten()
            else {
                continue;
            };
            if image.machine == hot_object::Machine::Aarch64 {
                landings.add_aarch64(&starts, start, bytes);
                continue;
            }
            let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
            while decoder.can_decode() {
                decoder.decode_out(&mut instr);
                if !matches!(
                    instr.flow_control(),
                    FlowControl::UnconditionalBranch
                        | FlowControl::ConditionalBranch
                        | FlowControl::Call
                        | FlowControl::XbeginXabortXend
                ) {
                    continue;
                }
                let target = instr.near_branch_target();
                // The last function start before the target.
                let at = starts.partition_point(|&s| s < target);
                let Some(&entry) = at.checked_sub(1).and_then(|i| starts.get(i)) else {
                    continue;
                };
                if target - entry < LANDING_WINDOW {
                    landings.into.entry(entry).or_default().push(Landing {
                        target,
                        from: instr.ip(),
                    });
                }
            }
        }
        landings
    }

    /// aarch64: the direct branches (`b`, `bl`, `b.cond`, `cbz`, `tbz`, ...) of the function
    /// at `start` that land in the first [`AARCH64_JUMP_REACH`] bytes of a function.
    fn add_aarch64(&mut self, starts: &[u64], start: u64, bytes: &[u8]) {
        for (i, w) in bytes.chunks_exact(4).enumerate() {
            let from = start + 4 * i as u64;
            let insn = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let Some(target) = crate::aarch64::branch_target(insn, from) else {
                continue;
            };
            let at = starts.partition_point(|&s| s <= target);
            let Some(&entry) = at.checked_sub(1).and_then(|i| starts.get(i)) else {
                continue;
            };
            if target - entry < AARCH64_JUMP_REACH {
                self.into
                    .entry(entry)
                    .or_default()
                    .push(Landing { target, from });
            }
        }
    }

    /// The direct branches landing strictly inside the first [`LANDING_WINDOW`] bytes of
    /// the function that starts at `entry` (link-time address), from anywhere in the
    /// executable.
    pub(crate) fn branches_into(&self, entry: u64) -> &[Landing] {
        self.into.get(&entry).map_or(&[], Vec::as_slice)
    }
}
