//! Entry redirection on aarch64: `b body` (one aligned word, so no thread can see it half
//! written) when the new body is within ±128 MiB, else the 16-byte absolute jump
//! `ldr x16, #8; br x16; .quad body`; either goes after a BTI landing pad (`bti c`,
//! `paciasp`), which stays the first instruction an indirect call lands on (see the ABI
//! notes in `aarch64.rs`).
//!
//! A direct branch, from the old body or from elsewhere in the executable (found by
//! [`crate::branches`]), into the words the jump overwrites (other than the entry itself,
//! which is what every caller means) would run the jump from the middle of the function:
//! the typical case is a loop head right behind `bti c`. There is no short-jump-through-
//! padding form on aarch64, so such an entry is refused with `function-too-small` and the
//! `-fpatchable-function-entry` advice; return addresses inside the jump are the apply's
//! business, through [`EntryPlan::protected`], as on x86-64.
//!
//! Statement boundaries (where a debugger puts its `brk`): every instruction is one aligned
//! word, so the `b` form, one word at the entry (or after its landing pad), never has a
//! boundary in its middle — a breakpoint at its own word is one at the first byte of a jump,
//! which x86-64's invariant allows too. The 16-byte absolute form covers three more words;
//! a boundary on one of them (the executable's `is_stmt` rows, or without a line table
//! gdb's prologue-analysis stop after the frame setup, [`prologue_stop`]) would put a
//! `brk` into `br x16` or the literal. There is no int3-proof or in-body form on aarch64
//! (no byte is both an instruction and a trap, and a jump inside the old body past the
//! boundary needs a `b` into it that reaches the arena anyway), so such an entry gets the
//! `entry-covers-statement` note ([`covered_statement`]), and the session does not write it
//! while a debugger holds the program, as with x86-64's last-resort plain jump. An arena
//! within ±128 MiB of the image avoids the absolute form altogether.

use hot_object::ImageSymbol;

use crate::aarch64 as a64;
use crate::branches::EntryLandings;
use crate::entry::{EntryError, EntryPlan};
use crate::image::Vaddr;
use crate::layout::Redirect;
use crate::{EntryWrite, ImageModel, LinkErrorCode, RuntimeAddr};

/// The jump bytes for an entry whose jump lives at `jump_at`, reaching `body`.
fn jump(jump_at: RuntimeAddr, body: RuntimeAddr) -> Vec<u8> {
    match a64::b(jump_at.0, body.0) {
        Some(insn) => insn.to_le_bytes().to_vec(),
        None => a64::absolute_jump(body.0),
    }
}

/// A later swap of an entry redirected before: rewrite the jump where it lives. A `b` that
/// no longer reaches can only grow into the absolute form if the jump was absolute already
/// (the words after a `b` were never checked for branches into them).
pub(crate) fn reuse(
    previous: &Redirect,
    body: RuntimeAddr,
    function: &str,
) -> Result<EntryPlan, EntryError> {
    let bytes = jump(previous.jump_at, body);
    if bytes.len() > previous.current.len() {
        return Err((
            LinkErrorCode::RelocationOverflow,
            format!(
                "the new body of `{function}` at {body} is out of `b` reach (±128 MiB) of its \
                 entry jump at {}",
                previous.jump_at
            ),
        ));
    }
    let len = bytes.len() as u64;
    Ok(EntryPlan {
        writes: vec![EntryWrite {
            addr: previous.jump_at,
            expected: previous.current.clone(),
            bytes: bytes.clone(),
            function: function.to_string(),
        }],
        protected: vec![previous.jump_at..previous.jump_at.offset(len)],
        redirect: Redirect {
            current: bytes,
            ..previous.clone()
        },
        claimed_fill: None,
        arena: None,
        note: None,
    })
}

/// The first redirection of the image function `sym` (whose bytes are `old_body`, `size`
/// long) to `body`.
pub(crate) fn plan_image_entry(
    model: &ImageModel,
    elsewhere: &EntryLandings,
    sym: &ImageSymbol,
    old_body: &[u8],
    body: RuntimeAddr,
    function: &str,
) -> Result<EntryPlan, EntryError> {
    let exe = &model.exe;
    let vaddr = sym.vaddr;
    let entry = exe.runtime(Vaddr(vaddr));
    let too_small = |why: String| {
        (
            LinkErrorCode::FunctionTooSmall,
            format!(
                "cannot redirect `{function}`: {why}; rebuild with \
                 -fpatchable-function-entry=4,0 to make room"
            ),
        )
    };
    let first = a64::read(old_body, 0)
        .map_err(|_| too_small(format!("it is {} bytes long", old_body.len())))?;
    let pad = if a64::is_call_landing_pad(first) {
        a64::INSN_LEN
    } else {
        0
    };
    let jump_at = entry.offset(pad);
    let bytes = jump(jump_at, body);
    let len = bytes.len() as u64;
    let covered = vaddr + pad..vaddr + pad + len;
    if covered.end > vaddr + old_body.len() as u64 {
        return Err(too_small(format!(
            "it is {} bytes long, shorter than its {}{len}-byte entry jump",
            old_body.len(),
            if pad > 0 { "landing pad and " } else { "" }
        )));
    }
    let inside = (0..old_body.len() / 4).filter_map(|i| {
        let from = vaddr + 4 * i as u64;
        a64::branch_target(a64::read(old_body, 4 * i).ok()?, from).map(|t| (from, t))
    });
    let outside = elsewhere
        .branches_into(vaddr)
        .iter()
        .map(|l| (l.from, l.target));
    let mut conflicts: Vec<(u64, u64)> = inside
        .chain(outside)
        .filter(|&(_, t)| t != vaddr && covered.contains(&t))
        .collect();
    conflicts.sort_unstable();
    conflicts.dedup();
    if let Some(&(from, target)) = conflicts.first() {
        return Err(too_small(format!(
            "the branch at {:#x} targets entry+{}, which its entry jump would overwrite",
            exe.runtime(Vaddr(from)).0,
            target - vaddr
        )));
    }
    let original = old_body[pad as usize..(pad + len) as usize].to_vec();
    let without_lines = exe.image.compile_unit_at(vaddr).is_none();
    let note = covered_statement(&exe.image, vaddr, pad, len, old_body, without_lines).map(|at| {
        (
            format!(
                "the entry jump of `{function}` (the 16-byte absolute form: the new body is                  beyond `b` reach) covers the statement boundary at entry+{at}, where a                  debugger would put a breakpoint; it is not written while a debugger holds                  the program"
            ),
            at,
        )
    });
    Ok(EntryPlan {
        writes: vec![EntryWrite {
            addr: jump_at,
            expected: original.clone(),
            bytes: bytes.clone(),
            function: function.to_string(),
        }],
        protected: vec![jump_at..jump_at.offset(len)],
        redirect: Redirect {
            jump_at,
            current: bytes,
            original,
            short: None,
        },
        claimed_fill: None,
        arena: None,
        note,
    })
}

/// The first statement boundary strictly inside a `len`-byte jump written `pad` bytes into
/// the function at `vaddr` (whose code is `old_body`), as an offset from the entry: an
/// `is_stmt` row, or without a line table gdb's prologue-analysis stop ([`prologue_stop`]).
pub(crate) fn covered_statement(
    image: &hot_object::LinkedImage,
    vaddr: u64,
    pad: u64,
    len: u64,
    old_body: &[u8],
    without_lines: bool,
) -> Option<u64> {
    let start = vaddr + pad;
    let end = start + len;
    let row = image
        .statements_in(start, end)
        .first()
        .map(|&at| at - vaddr);
    let prologue = without_lines
        .then(|| prologue_stop(old_body, pad))
        .flatten();
    let prologue = prologue.filter(|&at| vaddr + at > start && vaddr + at < end);
    match (row, prologue) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Where a debugger without line rows stops for `break f`: after the frame setup that
/// starts at `pad`, as gdb's `aarch64_analyze_prologue` skips it — return-address signing,
/// `sub sp, sp, #N`, `stp`
/// of any pair based on `sp` (pre-indexed or at an offset), and `add x29, sp, #N` /
/// `mov x29, sp` — when that setup saved or set the frame pointer. `None` for a function
/// with no frame (a leaf, a tail call): gdb then breaks at the entry itself.
fn prologue_stop(body: &[u8], pad: u64) -> Option<u64> {
    let mut at = pad as usize;
    let mut frame = false;
    while let Ok(insn) = a64::read(body, at) {
        let sub_sp = insn & 0xff80_03ff == 0xd100_03ff;
        let stp_sp = matches!(insn & 0xffc0_03e0, 0xa980_03e0 | 0xa900_03e0);
        let set_fp = insn & 0xff80_03ff == 0x9100_03fd;
        // Signing the return address first: `paciasp`/`pacibsp`, `pacia`/`pacib x30, sp`.
        let sign = matches!(
            insn,
            a64::PACIASP | a64::PACIBSP | 0xdac1_03fe | 0xdac1_07fe
        );
        if !(sub_sp || stp_sp || set_fp || sign) {
            break;
        }
        // `stp x29, x30, ...` or `add x29, sp, ...`: a frame record.
        frame |= set_fp || (stp_sp && insn & 0x7fff == 0x7bfd);
        at += 4;
    }
    (frame && at as u64 > pad).then_some(at as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(insns: &[u32]) -> Vec<u8> {
        insns.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn aarch64_absolute_entry_jumps_report_covered_statements() {
        // stp x29, x30, [sp, #-16]!; mov x29, sp; bl ...; ldp; ret
        let frame = words(&[
            0xa9bf_7bfd,
            0x9100_03fd,
            0x9400_0000,
            0xa8c1_7bfd,
            0xd65f_03c0,
        ]);
        let bti_frame = words(&[
            a64::BTI_C,
            0xa9bf_7bfd,
            0x9100_03fd,
            0x9400_0000,
            0xd65f_03c0,
        ]);
        let leaf = words(&[0x1100_0400, 0xd65f_03c0, a64::NOP, a64::NOP, a64::NOP]);
        // clang -O0: sub sp, sp, #32; stp x29, x30, [sp, #16]; add x29, sp, #16; stur ...
        let o0 = words(&[
            0xd100_83ff,
            0xa901_7bfd,
            0x9100_43fd,
            0xb81f_c3a0,
            0xd65f_03c0,
        ]);
        // sub sp, sp, #16; str w0, [sp, #12]: a frame without a frame record.
        // bti c; pacia x30, sp; stp x29, x30, [sp, #-16]!; mov x29, sp (clang
        // -mbranch-protection=standard for an Apple target).
        let signed = words(&[
            a64::BTI_C,
            0xdac1_03fe,
            0xa9bf_7bfd,
            0x9100_03fd,
            0xd65f_03c0,
        ]);
        let no_record = words(&[0xd100_43ff, 0xb900_0fe0, 0x9100_43ff, 0xd65f_03c0, a64::NOP]);
        // (body, statement rows as entry offsets, line table?, pad, jump length, want)
        type Row<'a> = (&'a [u8], &'a [u64], bool, u64, u64, Option<u64>);
        let rows: &[Row] = &[
            // `b`: one word, never covers a boundary after its first byte.
            (&frame, &[4, 8], true, 0, 4, None),
            (&frame, &[], false, 0, 4, None),
            // The absolute form over the frame setup: gdb's stop at entry+8 without lines.
            (&frame, &[], false, 0, 16, Some(8)),
            // With a line table the rows decide (gdb moves on to the next row).
            (&frame, &[12], true, 0, 16, Some(12)),
            (&frame, &[16], true, 0, 16, None),
            // Behind `bti c`: the jump starts at entry+4; the stop after the frame is entry+12.
            (&bti_frame, &[], false, 4, 16, Some(12)),
            (&bti_frame, &[4], true, 4, 16, None),
            // A leaf with no frame and no rows: nothing to cover.
            (&leaf, &[], false, 0, 16, None),
            // clang -O0's frame: the stop after `add x29, sp, #16` is entry+12.
            (&o0, &[], false, 0, 16, Some(12)),
            (&no_record, &[], false, 0, 16, None),
            (&signed, &[], false, 4, 16, Some(16)),
        ];
        for &(body, rows_at, lines, pad, len, want) in rows {
            let image = hot_object::LinkedImage {
                statement_starts: rows_at.iter().map(|&o| 0x1000 + o).collect(),
                ..Default::default()
            };
            assert_eq!(
                covered_statement(&image, 0x1000, pad, len, body, !lines),
                want,
                "rows {rows_at:?} lines {lines} pad {pad} len {len}"
            );
        }
    }
}
