//! AArch64 instruction fields, branch forms, stubs and TLS relaxations, as pure functions.
//!
//! # The AArch64 ABI as it matters to a hot-patching linker
//!
//! Every instruction is 4 bytes, little-endian, 4-byte aligned, and a relocation patches an
//! immediate field *inside* an instruction, never a whole word (except data relocations:
//! `ABS64`, `ABS32`, `PREL32`, `PREL64`). So applying a relocation is "read the word, check
//! that it is the instruction the relocation belongs to, put the value in its field, check
//! the range". The addend is in the RELA entry (the field in the object is zero), and it
//! designates `S + A` exactly: unlike x86-64 there is no "end of instruction" bias.
//!
//! **Ranges.** `b`/`bl` (`CALL26`/`JUMP26`) reach ±128 MiB (imm26 words); `b.cond`, `cbz`,
//! `cbnz`, `ldr` literal and `adr` reach ±1 MiB (imm19 words, imm21 bytes); `tbz`/`tbnz`
//! (`TSTBR14`) only ±32 KiB. Arenas are placed within ±2 GiB of the image (the x86-64 rule),
//! which covers ADRP but not branches: a `bl` from a new body to a function of the image
//! more than 128 MiB away goes through a *veneer* in the code arena (what ld calls a
//! long-branch stub): `adrp x16, T; add x16, x16, :lo12:T; br x16` (ld's own
//! `aarch64_adrp_branch_stub`), or, beyond ±4 GiB, the absolute form below. Veneers may
//! clobber `x16`/`x17` (IP0/IP1): the procedure call standard reserves them for exactly
//! this. Conditional branches and `tbz` never leave their function in compiled C, so they
//! get no veneer; out of range they are a `relocation-overflow` like any other.
//!
//! **ADRP page arithmetic.** `adrp xd, sym` puts `Page(S + A) - Page(P)` (pages of 4 KiB,
//! `Page(x) = x & !0xfff`) in a signed 21-bit field: ±4 GiB. The low 12 bits come from the
//! next instruction: `add xd, xd, :lo12:sym` (`ADD_ABS_LO12_NC`, unscaled) or a load/store
//! `ldr wt, [xd, :lo12:sym]` (`LDSTn_ABS_LO12_NC`), whose imm12 is *scaled* by the access
//! size (1, 2, 4, 8, 16 bytes), so the low bits must be aligned to it — a misaligned target
//! cannot be encoded and is refused, never truncated. Because only pages are relative, a
//! body's bytes depend on where in its page it is placed: hot-link computes them for the
//! address it really writes to. GOT loads are the same pair against the slot:
//! `adrp x0, :got:sym; ldr x0, [x0, :got_lo12:sym]` (`ADR_GOT_PAGE`, `LD64_GOT_LO12_NC`);
//! GNU ld keeps them as loads, and hot-link does too (slot: the executable's `GLOB_DAT` slot,
//! or a new 8-byte arena slot).
//!
//! **Large code model.** `-mcmodel=large` builds addresses with `movz`/`movk` 16 bits at a
//! time (`MOVW_UABS_G0`..`G3`, the checked forms require the value to fit in the groups
//! used so far); `movk` keeps the other bits, so no opcode changes.
//!
//! **Stable entries.** A function's entry is redirected with one `b body` (4 bytes) when the
//! new body is within ±128 MiB, otherwise with the 16-byte absolute sequence
//! `ldr x16, #8; br x16; .quad body` ([`absolute_jump`]), which needs 16 bytes of function
//! and no branch into its last 12. Writing one aligned 4-byte `b` is also the only form a
//! thread can never observe half-written.
//!
//! **BTI landing pads.** With `-mbranch-protection=bti` (or `standard`) every function that
//! can be called indirectly starts with `bti c` (or `paciasp`, an implicit landing pad), and
//! in a process whose pages are mapped `PROT_BTI` an indirect call (`blr`) that lands on any
//! other instruction faults. So the pad must stay the first instruction an indirect call
//! lands on: the redirecting jump goes *after* it ([`entry_jump`]), and the new body keeps its
//! own pad (a direct `b` may land anywhere). Stubs of new functions and veneers are reached
//! by `blr`/`br` through function pointers, so a stub of a BTI-built function starts with
//! `bti c` too; `br x16`/`br x17` into a `bti c` is allowed (BTYPE 01), which is why PLT
//! entries, veneers and the absolute jump use x16.
//!
//! **TLS.** AArch64 uses TLS variant I: the thread pointer `tpidr_el0` points at a 16-byte
//! TCB, followed by the executable's TLS block aligned to its `p_align`, so
//! `tprel = align_up(16, p_align) + (S - tls_start)` is positive. Local-exec is
//! `add xd, xtp, :tprel_hi12:v, lsl #12; add xd, xd, :tprel_lo12_nc:v`
//! (`TLSLE_ADD_TPREL_HI12`, `_LO12_NC`). For an executable ld relaxes every other model to
//! it, and hot-link writes the same bytes: initial-exec `adrp xd, :gottprel:v;
//! ldr xd, [xd, :gottprel_lo12:v]` becomes `movz xd, #tprel_g1, lsl #16; movk xd, #tprel_g0`;
//! a TLS descriptor call `adrp x0, :tlsdesc:v; ldr x1, [x0, :tlsdesc_lo12:v];
//! add x0, x0, :tlsdesc_lo12:v; blr x1` becomes `movz x0, #g1, lsl #16; movk x0, #g0; nop;
//! nop`; the traditional general-dynamic `adrp x0, :tlsgd:v; add x0, x0, :tlsgd_lo12:v;
//! bl __tls_get_addr; nop` becomes `movz x0; movk x0; mrs x1, tpidr_el0; add x0, x1, x0`.
//! These are the sequences of binutils' `elfNN_aarch64_tls_relax`.
//!
//! **Instruction-cache coherence** is not the linker's business: AArch64 needs the data
//! cache cleaned and the instruction cache invalidated for every line written before it
//! runs. The kernel does it for writes through `/proc/PID/mem` / `PTRACE_POKEDATA`, macOS
//! with `vm_machine_attribute(MATTR_CACHE)`: the process backend's job, after the writes.

use std::fmt;

/// `nop`.
pub const NOP: u32 = 0xd503_201f;
/// `bti c`: landing pad for indirect calls.
pub const BTI_C: u32 = 0xd503_245f;
/// `bti jc`: landing pad for indirect calls and jumps.
pub const BTI_JC: u32 = 0xd503_24df;
/// `bti j`.
pub const BTI_J: u32 = 0xd503_249f;
/// `paciasp` / `pacibsp`: sign the return address; implicitly a `bti c` landing pad.
pub const PACIASP: u32 = 0xd503_233f;
pub const PACIBSP: u32 = 0xd503_237f;
/// `br x16`.
pub const BR_X16: u32 = 0xd61f_0200;
/// `br x17`.
pub const BR_X17: u32 = 0xd61f_0220;
/// `ldr x16, #8` (literal, 8 bytes ahead).
pub const LDR_X16_PC8: u32 = 0x5800_0050;
/// `mrs x1, tpidr_el0`.
pub const MRS_X1_TPIDR_EL0: u32 = 0xd53b_d041;
/// `add x0, x1, x0`.
pub const ADD_X0_X1_X0: u32 = 0x8b00_0020;
/// `brk #0x3e8`: the padding of stubs, never executed (traps if it is).
pub const BRK_PAD: u32 = 0xd420_7d00;

/// Length of one instruction.
pub const INSN_LEN: u64 = 4;
/// Length of the absolute jump `ldr x16, #8; br x16; .quad target`.
pub const ABSOLUTE_JUMP_LEN: u64 = 16;
/// Length of a veneer or a call stub (both padded to 16 bytes).
pub const STUB_LEN: u64 = 16;

/// Why a field could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The value does not fit: `field` says which field and its range.
    Overflow { value: i128, field: &'static str },
    /// The value is not a multiple of what the field counts in.
    Misaligned {
        value: i128,
        align: u64,
        field: &'static str,
    },
    /// The instruction at the relocated place is not one this relocation applies to.
    WrongInstruction { insn: u32, expected: &'static str },
    /// The relocated word lies outside its section.
    OutOfBounds,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &i128| {
            if *v < 0 {
                format!("-{:#x}", v.unsigned_abs())
            } else {
                format!("{v:#x}")
            }
        };
        match self {
            EncodeError::Overflow { value, field } => {
                write!(f, "value {} does not fit {field}", show(value))
            }
            EncodeError::Misaligned {
                value,
                align,
                field,
            } => write!(
                f,
                "value {} is not a multiple of {align}, which {field} requires",
                show(value)
            ),
            EncodeError::WrongInstruction { insn, expected } => {
                write!(f, "the instruction {insn:#010x} is not {expected}")
            }
            EncodeError::OutOfBounds => write!(f, "the relocated field lies outside its section"),
        }
    }
}

/// The instruction word at `bytes[off..off + 4]`.
pub fn read(bytes: &[u8], off: usize) -> Result<u32, EncodeError> {
    let word = bytes
        .get(off..off.checked_add(4).ok_or(EncodeError::OutOfBounds)?)
        .ok_or(EncodeError::OutOfBounds)?;
    Ok(u32::from_le_bytes([word[0], word[1], word[2], word[3]]))
}

/// Store `insn` at `bytes[off..off + 4]`.
pub fn write(bytes: &mut [u8], off: usize, insn: u32) -> Result<(), EncodeError> {
    let end = off.checked_add(4).ok_or(EncodeError::OutOfBounds)?;
    bytes
        .get_mut(off..end)
        .ok_or(EncodeError::OutOfBounds)?
        .copy_from_slice(&insn.to_le_bytes());
    Ok(())
}

/// The 4 KiB page of `addr`.
pub fn page(addr: u64) -> u64 {
    addr & !0xfff
}

/// `Page(target) - Page(p)`, in bytes.
pub fn page_delta(p: u64, target: u64) -> i128 {
    page(target) as i128 - page(p) as i128
}

/// Sign-extend the low `bits` bits of `v`.
fn sext(v: u64, bits: u32) -> i64 {
    ((v << (64 - bits)) as i64) >> (64 - bits)
}

/// Check that `value` (in bytes) is a multiple of `1 << shift` and that `value >> shift`
/// fits a signed `bits`-bit field; returns the field's bits.
fn signed_field(
    value: i128,
    shift: u32,
    bits: u32,
    field: &'static str,
) -> Result<u32, EncodeError> {
    if value & ((1 << shift) - 1) != 0 {
        return Err(EncodeError::Misaligned {
            value,
            align: 1 << shift,
            field,
        });
    }
    let v = value >> shift;
    let half = 1i128 << (bits - 1);
    if v < -half || v >= half {
        return Err(EncodeError::Overflow { value, field });
    }
    Ok((v as u32) & ((1u32 << bits) - 1))
}

fn expect(insn: u32, mask: u32, bits: u32, expected: &'static str) -> Result<(), EncodeError> {
    if insn & mask == bits {
        Ok(())
    } else {
        Err(EncodeError::WrongInstruction { insn, expected })
    }
}

const B_MASK: u32 = 0x7c00_0000;
const B_BITS: u32 = 0x1400_0000;

/// Whether `insn` is `b` or `bl` (imm26).
pub fn is_branch26(insn: u32) -> bool {
    insn & B_MASK == B_BITS
}

/// Whether `insn` is `bl`.
pub fn is_bl(insn: u32) -> bool {
    insn & 0xfc00_0000 == 0x9400_0000
}

/// Put the byte offset `delta` (±128 MiB, word-aligned) in the imm26 of `b`/`bl`.
pub fn set_imm26(insn: u32, delta: i128) -> Result<u32, EncodeError> {
    expect(insn, B_MASK, B_BITS, "`b` or `bl`")?;
    let imm = signed_field(delta, 2, 26, "the ±128 MiB range of `b`/`bl` (imm26)")?;
    Ok((insn & !0x03ff_ffff) | imm)
}

/// The byte offset in the imm26 of `b`/`bl`.
pub fn imm26(insn: u32) -> i64 {
    sext(u64::from(insn & 0x03ff_ffff), 26) << 2
}

/// `b to` at `from`; `None` beyond ±128 MiB.
pub fn b(from: u64, to: u64) -> Option<u32> {
    set_imm26(B_BITS, to as i128 - from as i128).ok()
}

/// `bl to` at `from`; `None` beyond ±128 MiB.
pub fn bl(from: u64, to: u64) -> Option<u32> {
    set_imm26(0x9400_0000, to as i128 - from as i128).ok()
}

/// Whether `insn` takes an imm19 at bits 5..24: `b.cond`, `cbz`/`cbnz` (32/64-bit),
/// `ldr` literal (w, x, s, d, q, `ldrsw`, `prfm`).
pub fn is_imm19(insn: u32) -> bool {
    insn & 0xff00_0010 == 0x5400_0000
        || insn & 0x7e00_0000 == 0x3400_0000
        || insn & 0x3b00_0000 == 0x1800_0000
}

/// Put the byte offset `delta` (±1 MiB, word-aligned) in the imm19 of `b.cond`, `cbz`,
/// `cbnz` or `ldr` literal (`CONDBR19`, `LD_PREL_LO19`).
pub fn set_imm19(insn: u32, delta: i128) -> Result<u32, EncodeError> {
    if !is_imm19(insn) {
        return Err(EncodeError::WrongInstruction {
            insn,
            expected: "`b.cond`, `cbz`, `cbnz` or `ldr` (literal)",
        });
    }
    let imm = signed_field(delta, 2, 19, "the ±1 MiB range of an imm19 branch or load")?;
    Ok((insn & !(0x7ffff << 5)) | (imm << 5))
}

/// The byte offset in an imm19 field.
pub fn imm19(insn: u32) -> i64 {
    sext(u64::from((insn >> 5) & 0x7ffff), 19) << 2
}

/// Whether `insn` is `tbz`/`tbnz`.
pub fn is_tbz(insn: u32) -> bool {
    insn & 0x7e00_0000 == 0x3600_0000
}

/// Put the byte offset `delta` (±32 KiB, word-aligned) in the imm14 of `tbz`/`tbnz`
/// (`TSTBR14`).
pub fn set_imm14(insn: u32, delta: i128) -> Result<u32, EncodeError> {
    expect(insn, 0x7e00_0000, 0x3600_0000, "`tbz` or `tbnz`")?;
    let imm = signed_field(delta, 2, 14, "the ±32 KiB range of `tbz`/`tbnz` (imm14)")?;
    Ok((insn & !(0x3fff << 5)) | (imm << 5))
}

/// The byte offset in the imm14 of `tbz`/`tbnz`.
pub fn imm14(insn: u32) -> i64 {
    sext(u64::from((insn >> 5) & 0x3fff), 14) << 2
}

/// Whether `insn` is `adrp`.
pub fn is_adrp(insn: u32) -> bool {
    insn & 0x9f00_0000 == 0x9000_0000
}

/// Whether `insn` is `adr`.
pub fn is_adr(insn: u32) -> bool {
    insn & 0x9f00_0000 == 0x1000_0000
}

fn with_adr_imm(insn: u32, imm21: u32) -> u32 {
    let immlo = imm21 & 3;
    let immhi = (imm21 >> 2) & 0x7ffff;
    (insn & !((3 << 29) | (0x7ffff << 5))) | (immlo << 29) | (immhi << 5)
}

/// The raw signed 21-bit immediate of `adr`/`adrp` (bytes for `adr`, pages for `adrp`).
pub fn adr_imm(insn: u32) -> i64 {
    let immlo = u64::from((insn >> 29) & 3);
    let immhi = u64::from((insn >> 5) & 0x7ffff);
    sext((immhi << 2) | immlo, 21)
}

/// `adrp` at `p` designating the page of `target` (`ADR_PREL_PG_HI21`, `ADR_GOT_PAGE`):
/// `checked` enforces ±4 GiB; the `_NC` form keeps the low 21 bits of the page count.
pub fn set_adrp(insn: u32, p: u64, target: u64, checked: bool) -> Result<u32, EncodeError> {
    expect(insn, 0x9f00_0000, 0x9000_0000, "`adrp`")?;
    let delta = page_delta(p, target);
    let imm = if checked {
        signed_field(delta, 12, 21, "the ±4 GiB range of `adrp`")?
    } else {
        ((delta >> 12) as u32) & 0x1f_ffff
    };
    Ok(with_adr_imm(insn, imm))
}

/// The page an `adrp` at `p` designates.
pub fn adrp_target(insn: u32, p: u64) -> u64 {
    page(p).wrapping_add((adr_imm(insn) << 12) as u64)
}

/// `adr` at `p` designating `target` (`ADR_PREL_LO21`, ±1 MiB).
pub fn set_adr(insn: u32, p: u64, target: u64) -> Result<u32, EncodeError> {
    expect(insn, 0x9f00_0000, 0x1000_0000, "`adr`")?;
    let imm = signed_field(
        target as i128 - p as i128,
        0,
        21,
        "the ±1 MiB range of `adr`",
    )?;
    Ok(with_adr_imm(insn, imm))
}

/// Whether `insn` is a load or store with an unsigned scaled imm12 (`ldr`/`str`/`ldrb`/...,
/// integer or SIMD&FP, and `prfm`).
pub fn is_ldst_uimm12(insn: u32) -> bool {
    insn & 0x3b00_0000 == 0x3900_0000
}

/// The access size of a load/store with unsigned imm12, as a shift: 0 (byte) ..
/// 4 (128-bit `ldr q`/`str q`).
pub fn ldst_scale(insn: u32) -> u32 {
    let size = insn >> 30;
    let vector = insn & (1 << 26) != 0;
    let opc = (insn >> 22) & 3;
    if vector && size == 0 && opc >= 2 {
        4
    } else {
        size
    }
}

/// Put the low 12 bits of `value` in the imm12 of an `add` (immediate): `ADD_ABS_LO12_NC`
/// and the TLS `:lo12:` adds. `shift` 12 takes bits 12..24 instead (`:hi12:`, the `lsl #12`
/// form).
pub fn set_add_imm12(insn: u32, value: u64, shift: u32) -> Result<u32, EncodeError> {
    expect(insn, 0x1f80_0000, 0x1100_0000, "`add` (immediate)")?;
    let imm = ((value >> shift) & 0xfff) as u32;
    Ok((insn & !(0xfff << 10)) | (imm << 10))
}

/// Put `value & 0xfff` in the imm12 of a load or store, scaled down by `1 << scale` (the
/// access size the relocation names: `LDST8`..`LDST128`, `LD64_GOT`): the low bits must be
/// aligned to it.
pub fn set_ldst_imm12(insn: u32, value: u64, scale: u32) -> Result<u32, EncodeError> {
    if !is_ldst_uimm12(insn) {
        return Err(EncodeError::WrongInstruction {
            insn,
            expected: "a load or store with an unsigned offset",
        });
    }
    let lo12 = value & 0xfff;
    if lo12 & ((1 << scale) - 1) != 0 {
        return Err(EncodeError::Misaligned {
            value: value as i128,
            align: 1 << scale,
            field: "the scaled offset of the load or store",
        });
    }
    let imm = (lo12 >> scale) as u32;
    Ok((insn & !(0xfff << 10)) | (imm << 10))
}

/// The (unscaled) imm12 field of an `add` or load/store.
pub fn imm12(insn: u32) -> u32 {
    (insn >> 10) & 0xfff
}

/// Whether `insn` is `movz`, `movk` or `movn` (32 or 64-bit).
pub fn is_movw(insn: u32) -> bool {
    insn & 0x1f80_0000 == 0x1280_0000
}

/// Put bits `16 * group .. 16 * group + 16` of `value` in the imm16 of `movz`/`movk`
/// (`MOVW_UABS_G0`..`G3`); `checked` requires `value < 2^(16 * (group + 1))` (the
/// non-`_NC` forms; `G3` takes the top bits, always in range).
pub fn set_movw(insn: u32, value: u64, group: u32, checked: bool) -> Result<u32, EncodeError> {
    if !is_movw(insn) {
        return Err(EncodeError::WrongInstruction {
            insn,
            expected: "`movz`, `movk` or `movn`",
        });
    }
    if checked && group < 3 && value >> (16 * (group + 1)) != 0 {
        return Err(EncodeError::Overflow {
            value: value as i128,
            field: match group {
                0 => "16 bits (MOVW G0)",
                1 => "32 bits (MOVW G1)",
                _ => "48 bits (MOVW G2)",
            },
        });
    }
    let imm = ((value >> (16 * group)) & 0xffff) as u32;
    Ok((insn & !(0xffff << 5)) | (imm << 5))
}

/// The imm16 of `movz`/`movk`/`movn`.
pub fn imm16(insn: u32) -> u32 {
    (insn >> 5) & 0xffff
}

/// `movz xd, #imm16, lsl #(16 * hw)`.
pub fn movz_x(rd: u32, imm16: u32, hw: u32) -> u32 {
    0xd280_0000 | ((hw & 3) << 21) | ((imm16 & 0xffff) << 5) | (rd & 0x1f)
}

/// `movk xd, #imm16, lsl #(16 * hw)`.
pub fn movk_x(rd: u32, imm16: u32, hw: u32) -> u32 {
    0xf280_0000 | ((hw & 3) << 21) | ((imm16 & 0xffff) << 5) | (rd & 0x1f)
}

/// Whether `insn` is a BTI landing pad for indirect calls: `bti c`, `bti jc`, or
/// `paciasp`/`pacibsp` (implicit landing pads).
pub fn is_call_landing_pad(insn: u32) -> bool {
    matches!(insn, BTI_C | BTI_JC | PACIASP | PACIBSP)
}

/// Where a direct branch at `at` goes: `b`, `bl`, `b.cond`, `cbz`/`cbnz`, `tbz`/`tbnz`.
/// `None` for anything else (`ldr` literal and `adr` are not branches).
pub fn branch_target(insn: u32, at: u64) -> Option<u64> {
    let delta = if is_branch26(insn) {
        imm26(insn)
    } else if insn & 0xff00_0010 == 0x5400_0000 || insn & 0x7e00_0000 == 0x3400_0000 {
        imm19(insn)
    } else if is_tbz(insn) {
        imm14(insn)
    } else {
        return None;
    };
    Some(at.wrapping_add(delta as u64))
}

/// The addresses the code `bytes` (at `vaddr`) refers to: direct branch and call targets,
/// `adr` targets, and the addresses `adrp` pages complete with a following `add` or
/// load/store of the same register (`adrp x0, f; add x0, x0, :lo12:f` takes `&f`;
/// `adrp x16, slot; ldr x17, [x16, :lo12:slot]` reads a GOT slot). The page of an `adrp` is
/// forgotten when its register is written otherwise or at the next branch; a pair split
/// across a branch (which compilers do not emit) is missed.
pub fn code_references(bytes: &[u8], vaddr: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut pages: [Option<u64>; 32] = [None; 32];
    for (i, w) in bytes.chunks_exact(4).enumerate() {
        let at = vaddr.wrapping_add(4 * i as u64);
        let insn = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let rd = (insn & 0x1f) as usize;
        let rn = ((insn >> 5) & 0x1f) as usize;
        if let Some(target) = branch_target(insn, at) {
            out.push(target);
            pages = [None; 32];
        } else if is_adrp(insn) {
            pages[rd] = Some(adrp_target(insn, at));
        } else if is_adr(insn) {
            out.push(at.wrapping_add(adr_imm(insn) as u64));
            pages[rd] = None;
        } else if insn & 0xff80_0000 == 0x9100_0000 {
            // `add xd, xn, #imm` (64-bit, unshifted).
            let page = pages[rn];
            if let Some(page) = page {
                out.push(page + u64::from(imm12(insn)));
            }
            pages[rd] = None;
        } else if is_ldst_uimm12(insn) {
            if let Some(page) = pages[rn] {
                out.push(page + (u64::from(imm12(insn)) << ldst_scale(insn)));
            }
            // A load writes its register (stores and prefetches leave it, but forgetting is
            // only less complete).
            pages[rd] = None;
        } else {
            pages[rd] = None;
        }
    }
    out
}

fn words(insns: &[u32]) -> Vec<u8> {
    insns.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The 16-byte absolute jump `ldr x16, #8; br x16; .quad target`: reaches anywhere, from
/// anywhere, through the intra-procedure-call register x16 (allowed into `bti c`).
pub fn absolute_jump(target: u64) -> Vec<u8> {
    let mut bytes = words(&[LDR_X16_PC8, BR_X16]);
    bytes.extend_from_slice(&target.to_le_bytes());
    bytes
}

/// A veneer at `from` for a `b`/`bl` to `to` that is out of imm26 reach: ld's
/// `adrp x16, to; add x16, x16, :lo12:to; br x16` within ±4 GiB, otherwise the absolute
/// jump; 16 bytes either way (the ADRP form padded with a trapping `brk`). `from` must be
/// 8-byte aligned for the absolute form's literal.
pub fn veneer(from: u64, to: u64) -> Vec<u8> {
    match set_adrp(0x9000_0010, from, to, true) {
        Ok(adrp) => words(&[
            adrp,
            0x9100_0210 | (((to & 0xfff) as u32) << 10),
            BR_X16,
            BRK_PAD,
        ]),
        Err(_) => absolute_jump(to),
    }
}

/// A call stub at `from` that jumps through the 8-byte slot at `slot`, as ld's PLT entry:
/// `adrp x16, slot; ldr x17, [x16, :lo12:slot]; add x16, x16, :lo12:slot; br x17`.
/// `None` when the slot is beyond ±4 GiB or not 8-byte aligned.
pub fn call_stub(from: u64, slot: u64) -> Option<Vec<u8>> {
    let adrp = set_adrp(0x9000_0010, from, slot, true).ok()?;
    let ldr = set_ldst_imm12(0xf940_0211, slot, 3).ok()?;
    let add = set_add_imm12(0x9100_0210, slot, 0).ok()?;
    Some(words(&[adrp, ldr, add, BR_X17]))
}

/// The slot a call stub (or ld PLT entry) at `at` jumps through: the first
/// `adrp x16; ldr x17, [x16, #imm]` pair of `bytes`.
pub fn call_stub_slot(bytes: &[u8], at: u64) -> Option<u64> {
    let n = bytes.len() / 4;
    (0..n.saturating_sub(1)).find_map(|i| {
        let adrp = read(bytes, 4 * i).ok()?;
        let ldr = read(bytes, 4 * i + 4).ok()?;
        if adrp & 0x9f00_001f != 0x9000_0010 || ldr & 0xffc0_03ff != 0xf940_0211 {
            return None;
        }
        let page = adrp_target(adrp, at + 4 * i as u64);
        Some(page + u64::from(imm12(ldr)) * 8)
    })
}

/// The final target of a veneer at `at` (either form), for comparing with ld's stubs: ld's
/// `adrp x16; add x16; br x16`, hot-link's absolute jump, or ld's long form
/// `ldr x16, 1f; adr x17, #0; add x16, x16, x17; br x16; 1: .xword target - .`.
pub fn veneer_target(bytes: &[u8], at: u64) -> Option<u64> {
    let w0 = read(bytes, 0).ok()?;
    let w1 = read(bytes, 4).ok()?;
    if w0 == LDR_X16_PC8 && w1 == BR_X16 {
        return Some(u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?));
    }
    if w0 & 0x9f00_001f == 0x9000_0010 && w1 & 0xffc0_03ff == 0x9100_0210 {
        return Some(adrp_target(w0, at) + u64::from(imm12(w1)));
    }
    if w0 == 0x5800_0090 && w1 == 0x1000_0011 {
        // `ldr x16, #16`, `adr x17, #0`: the literal is relative to the adr.
        let rel = i64::from_le_bytes(bytes.get(16..24)?.try_into().ok()?);
        return Some((at + 4).wrapping_add(rel as u64));
    }
    None
}

/// The redirecting jump of an entry at `entry` to `body`, given the entry's first
/// instruction: after a BTI landing pad (which stays the first instruction an indirect call
/// lands on), `b body` when in reach, else the 16-byte absolute jump. Returns the address
/// the jump is written at and its bytes. The absolute literal is read with a plain `ldr`,
/// which needs no alignment on normal memory.
pub fn entry_jump(entry: u64, first_insn: u32, body: u64) -> (u64, Vec<u8>) {
    let at = if is_call_landing_pad(first_insn) {
        entry + INSN_LEN
    } else {
        entry
    };
    match b(at, body) {
        Some(insn) => (at, insn.to_le_bytes().to_vec()),
        None => (at, absolute_jump(body)),
    }
}

/// The bytes of a new function's stub at `stub` (16 bytes, the stub's size): `bti c` first
/// when the body is BTI-built (function pointers to the new function point at the stub, and
/// indirect calls must land on a pad), then `b body`; `None` when the body is out of reach
/// (stubs and bodies share the code arena, which is far smaller than ±128 MiB).
pub fn stub_bytes(stub: u64, body: u64, bti: bool) -> Option<Vec<u8>> {
    let mut insns = Vec::new();
    if bti {
        insns.push(BTI_C);
    }
    let at = stub + 4 * insns.len() as u64;
    insns.push(b(at, body)?);
    while insns.len() < 4 {
        insns.push(BRK_PAD);
    }
    Some(words(&insns))
}

/// IE -> LE for `TLSIE_ADR_GOTTPREL_PAGE21`: `adrp xd, :gottprel:v` becomes
/// `movz xd, #:tprel_g1:v, lsl #16` (ld: `0xd2a00000 | rd`, then `TLSLE_MOVW_TPREL_G1`).
pub fn relax_ie_adrp(insn: u32, tprel: u64) -> Result<u32, EncodeError> {
    expect(insn, 0x9f00_0000, 0x9000_0000, "`adrp` (initial-exec TLS)")?;
    tprel_g1(movz_x(insn & 0x1f, 0, 1), tprel)
}

/// IE -> LE for `TLSIE_LD64_GOTTPREL_LO12_NC`: `ldr xd, [xn, :gottprel_lo12:v]` becomes
/// `movk xd, #:tprel_g0_nc:v`.
pub fn relax_ie_ldr(insn: u32, tprel: u64) -> Result<u32, EncodeError> {
    expect(insn, 0xffc0_0000, 0xf940_0000, "`ldr x` (initial-exec TLS)")?;
    Ok(movk_x(insn & 0x1f, (tprel & 0xffff) as u32, 0))
}

/// `TLSLE_MOVW_TPREL_G1` as ld checks it: the offset must fit in 32 bits.
fn tprel_g1(movz: u32, tprel: u64) -> Result<u32, EncodeError> {
    if tprel >> 32 != 0 {
        return Err(EncodeError::Overflow {
            value: tprel as i128,
            field: "32 bits (TLSLE_MOVW_TPREL_G1)",
        });
    }
    Ok(movz | ((((tprel >> 16) & 0xffff) as u32) << 5))
}

/// Desc/GD -> LE for the `adrp` of the sequence (`TLSDESC_ADR_PAGE21`,
/// `TLSGD_ADR_PAGE21`): `movz x0, #:tprel_g1:v, lsl #16` (the result register is x0).
pub fn relax_desc_adrp(insn: u32, tprel: u64) -> Result<u32, EncodeError> {
    expect(insn, 0x9f00_0000, 0x9000_0000, "`adrp` (TLS descriptor)")?;
    tprel_g1(movz_x(0, 0, 1), tprel)
}

/// Desc -> LE for `TLSDESC_LD64_LO12` (`ldr x1, [x0, :tlsdesc_lo12:v]`) and GD -> LE for
/// `TLSGD_ADD_LO12_NC` (`add x0, x0, :tlsgd_lo12:v`): `movk x0, #:tprel_g0_nc:v`.
pub fn relax_desc_lo12(tprel: u64) -> u32 {
    movk_x(0, (tprel & 0xffff) as u32, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words from `aarch64-linux-gnu-objdump -d` of ld's output (relocs.c, -O2 -fPIE).
    #[test]
    fn branches_encode_like_ld() {
        // 544: bl 440 <ext_fn@plt>
        assert_eq!(bl(0x544, 0x440), Some(0x97ff_ffbf));
        assert_eq!(imm26(0x97ff_ffbf), -0x104);
        assert_eq!(branch_target(0x97ff_ffbf, 0x544), Some(0x440));
        assert_eq!(b(0x1000, 0x1000), Some(0x1400_0000));
        // The edges of ±128 MiB.
        assert!(b(0x1000_0000, 0x1000_0000 + (128 << 20) - 4).is_some());
        assert!(b(0x1000_0000, 0x1000_0000 + (128 << 20)).is_none());
        assert!(b(0x1000_0000, 0x1000_0000 - (128 << 20)).is_some());
        assert!(b(0x1000_0000, 0x1000_0000 - (128 << 20) - 4).is_none());
        assert!(matches!(
            set_imm26(0x9400_0000, 2),
            Err(EncodeError::Misaligned { .. })
        ));
        assert!(matches!(
            set_imm26(NOP, 0),
            Err(EncodeError::WrongInstruction { .. })
        ));
        // 508: b.le 63c ; 554: b.ne 528
        assert_eq!(set_imm19(0x5400_000d, 0x63c - 0x508), Ok(0x5400_09ad));
        assert_eq!(set_imm19(0x5400_0001, 0x528 - 0x554), Ok(0x54ff_fea1));
        assert_eq!(branch_target(0x54ff_fea1, 0x554), Some(0x528));
        assert!(set_imm19(0x5400_0001, 1 << 20).is_err());
        assert!(set_imm19(0x5400_0001, -(1 << 20)).is_ok());
        // cbz w0, +8 ; tbnz w1, #3, -4
        assert_eq!(set_imm19(0x3400_0000, 8), Ok(0x3400_0040));
        assert_eq!(set_imm14(0x3718_0001, -4), Ok(0x371f_ffe1));
        assert_eq!(imm14(0x371f_ffe1), -4);
        assert!(set_imm14(0x3718_0001, 32 << 10).is_err());
        assert!(set_imm14(0x3718_0001, -(32 << 10)).is_ok());
    }

    #[test]
    fn adrp_pages_and_scaled_low_bits_encode_like_ld() {
        // 594: adrp x1, 1f000 ; 598: ldr x1, [x1, #4056]
        assert_eq!(
            set_adrp(0x9000_0001, 0x594, 0x1f000 + 4056, true),
            Ok(0xf000_00e1)
        );
        assert_eq!(adrp_target(0xf000_00e1, 0x594), 0x1f000);
        assert_eq!(
            set_ldst_imm12(0xf940_0021, 0x1f000 + 4056, 3),
            Ok(0xf947_ec21)
        );
        // 514: add x24, x24, #0x64
        assert_eq!(set_add_imm12(0x9100_0318, 0x20064, 0), Ok(0x9101_9318));
        // Backwards pages: the page count is negative.
        let insn = set_adrp(0x9000_0000, 0x5000, 0x1234, true).unwrap();
        assert_eq!(adrp_target(insn, 0x5000), 0x1000);
        assert_eq!(adr_imm(insn), -4);
        // ±4 GiB: checked refuses, _NC wraps.
        assert!(set_adrp(0x9000_0000, 0, 4 << 30, true).is_err());
        assert!(set_adrp(0x9000_0000, 0, (4 << 30) - 0x1000, true).is_ok());
        assert!(set_adrp(0x9000_0000, 0, 4 << 30, false).is_ok());
        // A 64-bit load of an address that is not 8-aligned cannot be encoded.
        assert!(matches!(
            set_ldst_imm12(0xf940_0000, 0x1004, 3),
            Err(EncodeError::Misaligned { align: 8, .. })
        ));
        assert_eq!(ldst_scale(0xf940_0000), 3); // ldr x
        assert_eq!(ldst_scale(0xb940_0000), 2); // ldr w
        assert_eq!(ldst_scale(0x3940_0000), 0); // ldrb
        assert_eq!(ldst_scale(0x7940_0000), 1); // ldrh
        assert_eq!(ldst_scale(0x3dc0_0000), 4); // ldr q
        assert_eq!(ldst_scale(0xfd40_0000), 3); // ldr d
        assert!(set_ldst_imm12(0x9100_0000, 0, 0).is_err());
        // adr: ±1 MiB in bytes.
        assert_eq!(
            set_adr(0x1000_0000, 0x1000, 0x1005),
            Ok(0x3000_0000 | (1 << 5))
        );
        assert!(set_adr(0x1000_0000, 0, 1 << 20).is_err());
    }

    #[test]
    fn movw_groups_check_their_range() {
        let v = 0x1234_5678_9abc_def0u64;
        assert_eq!(imm16(set_movw(0xd280_0000, v, 0, false).unwrap()), 0xdef0);
        assert_eq!(imm16(set_movw(0xf2a0_0000, v, 1, false).unwrap()), 0x9abc);
        assert_eq!(imm16(set_movw(0xf2c0_0000, v, 2, false).unwrap()), 0x5678);
        assert_eq!(imm16(set_movw(0xf2e0_0000, v, 3, true).unwrap()), 0x1234);
        assert!(set_movw(0xd280_0000, 0x1_0000, 0, true).is_err());
        assert!(set_movw(0xd280_0000, 0xffff, 0, true).is_ok());
        assert!(set_movw(0xf2a0_0000, 0x1_0000_0000, 1, true).is_err());
        assert!(set_movw(0xf2c0_0000, 1 << 48, 2, true).is_err());
        assert!(set_movw(0xf2c0_0000, 1 << 48, 2, false).is_ok());
        assert!(set_movw(NOP, 0, 0, false).is_err());
        assert_eq!(movz_x(3, 0x12, 1), 0xd2a0_0243);
        assert_eq!(movk_x(0, 0x10, 0), 0xf280_0200);
    }

    #[test]
    fn entries_keep_the_landing_pad_first() {
        // Plain entry: `b` at the entry itself.
        let (at, bytes) = entry_jump(0x40_0000, 0xa9bf_7bfd, 0x40_1000);
        assert_eq!(at, 0x40_0000);
        assert_eq!(bytes, 0x1400_0400u32.to_le_bytes());
        // `bti c` (or `paciasp`) stays: the jump goes after it.
        for pad in [BTI_C, PACIASP] {
            let (at, bytes) = entry_jump(0x40_0000, pad, 0x40_1004);
            assert_eq!(at, 0x40_0004);
            assert_eq!(bytes, 0x1400_0400u32.to_le_bytes());
        }
        // Out of ±128 MiB: the 16-byte absolute form.
        let far = 0x7f00_0000_0000;
        let (at, bytes) = entry_jump(0x40_0000, BTI_C, far);
        assert_eq!(at, 0x40_0004);
        assert_eq!(bytes.len(), ABSOLUTE_JUMP_LEN as usize);
        assert_eq!(read(&bytes, 0), Ok(LDR_X16_PC8));
        assert_eq!(read(&bytes, 4), Ok(BR_X16));
        assert_eq!(veneer_target(&bytes, at), Some(far));
        // A new function's stub: `bti c; b body` when the body is BTI-built.
        let stub = stub_bytes(0x1000_0000, 0x1000_0100, true).unwrap();
        assert_eq!(stub.len(), STUB_LEN as usize);
        assert_eq!(read(&stub, 0), Ok(BTI_C));
        assert_eq!(
            branch_target(read(&stub, 4).unwrap(), 0x1000_0004),
            Some(0x1000_0100)
        );
        let stub = stub_bytes(0x1000_0000, 0x1000_0100, false).unwrap();
        assert_eq!(
            branch_target(read(&stub, 0).unwrap(), 0x1000_0000),
            Some(0x1000_0100)
        );
        assert!(stub_bytes(0, 1 << 40, false).is_none());
    }

    #[test]
    fn veneers_and_call_stubs_reach_their_targets() {
        // ld's PLT entry for ext_fn: adrp x16, 0x1f000 ; ldr x17, [x16, #4024] ; add ; br x17
        let stub = call_stub(0x440, 0x1f000 + 4024).unwrap();
        assert_eq!(read(&stub, 0), Ok(0xf000_00f0));
        assert_eq!(read(&stub, 4), Ok(0xf947_de11));
        assert_eq!(read(&stub, 8), Ok(0x913e_e210));
        assert_eq!(read(&stub, 12), Ok(BR_X17));
        assert_eq!(call_stub_slot(&stub, 0x440), Some(0x1f000 + 4024));
        assert!(call_stub(0, 1 << 40).is_none());
        // A veneer within ±4 GiB is ld's ADRP form; beyond, the absolute jump.
        let v = veneer(0x40_0000, 0x2000_0123);
        assert_eq!(v.len(), STUB_LEN as usize);
        assert!(is_adrp(read(&v, 0).unwrap()));
        assert_eq!(veneer_target(&v, 0x40_0000), Some(0x2000_0123));
        let v = veneer(0x40_0000, 0x7f00_0000_0000);
        assert_eq!(read(&v, 0), Ok(LDR_X16_PC8));
        assert_eq!(veneer_target(&v, 0x40_0000), Some(0x7f00_0000_0000));
    }

    #[test]
    fn tls_relaxations_are_lds_instructions() {
        // adrp x1, :gottprel:v -> movz x1, #0, lsl #16 ; ldr x1, [x1, ...] -> movk x1, #0x18
        assert_eq!(relax_ie_adrp(0x9000_0001, 0x18), Ok(0xd2a0_0001));
        assert_eq!(relax_ie_ldr(0xf940_0021, 0x18), Ok(0xf280_0301));
        assert_eq!(relax_ie_adrp(0x9000_0001, 0x1_0018), Ok(0xd2a0_0021));
        assert!(relax_ie_adrp(NOP, 0).is_err());
        assert!(relax_ie_ldr(0xb940_0021, 0).is_err());
        assert_eq!(relax_desc_adrp(0x9000_0000, 0x10), Ok(0xd2a0_0000));
        assert_eq!(relax_desc_lo12(0x10), 0xf280_0200);
        assert!(relax_desc_adrp(0x9000_0000, 1 << 32).is_err());
    }

    #[test]
    fn code_references_complete_adrp_pairs() {
        let code = words(&[
            0x9400_0004,                                            // 0x1000: bl 0x1010
            set_adrp(0x9000_0000, 0x1004, 0x2_3456, true).unwrap(), // adrp x0, 0x23000
            set_add_imm12(0x9100_0000, 0x2_3456, 0).unwrap(),       // add x0, x0, #0x456
            set_adrp(0x9000_0010, 0x100c, 0x3_0ff8, true).unwrap(), // adrp x16, 0x30000
            set_ldst_imm12(0xf940_0211, 0x3_0ff8, 3).unwrap(),      // ldr x17, [x16, #0xff8]
            set_add_imm12(0x9100_0210, 0x3_0ff8, 0).unwrap(),       // add x16, x16 (x16 kept)
            0x1000_0041,                                            // adr x1, +8
            0x9100_0021,                                            // add x1, x1, #0 (no page)
        ]);
        assert_eq!(
            code_references(&code, 0x1000),
            vec![0x1010, 0x2_3456, 0x3_0ff8, 0x3_0ff8, 0x1020]
        );
    }

    #[test]
    fn landing_pads_are_recognised() {
        for pad in [BTI_C, BTI_JC, PACIASP, PACIBSP] {
            assert!(is_call_landing_pad(pad));
        }
        assert!(!is_call_landing_pad(BTI_J));
        assert!(!is_call_landing_pad(NOP));
    }
}
