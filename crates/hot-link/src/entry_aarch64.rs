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
        note: None,
    })
}
