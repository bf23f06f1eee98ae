//! Phase 5 for aarch64 objects: each relocation's value from the link's state, put in its
//! instruction field by the pure encoders of `aarch64.rs` (the ABI notes are there).
//!
//! Values come from the same places as on x86-64 (`Link::symbol_value`, GOT slots, TLS
//! offsets); what differs is the field, the range check and three things only aarch64
//! needs: a veneer in the code arena for a `b`/`bl` out of ±128 MiB, call stubs in the form
//! of ld's PLT entries, and variant I thread-pointer offsets.

use hot_object::{Reloc, RelocKind};

use crate::aarch64::{self as a64, EncodeError};
use crate::layout::ArenaKind;
use crate::link::{Link, SymValue};
use crate::resolve::TargetClass;
use crate::x86_64::{store, Field};
use crate::{LinkErrorCode, PatchWrite, RuntimeAddr};

/// Why one relocation failed (see `link.rs`).
type Failure = (LinkErrorCode, String);

fn encode_failure(e: EncodeError) -> Failure {
    let code = match e {
        EncodeError::Overflow { .. } => LinkErrorCode::RelocationOverflow,
        _ => LinkErrorCode::UnsupportedRelocation,
    };
    (code, e.to_string())
}

/// Whether `kind` is one of the aarch64 kinds this module applies (the data kinds shared
/// with x86-64 go through the common path of `link.rs`).
pub(crate) fn is_aarch64_kind(kind: RelocKind) -> bool {
    use RelocKind::*;
    matches!(
        kind,
        Call26
            | Jump26
            | CondBr19
            | TstBr14
            | LdPrelLo19
            | AdrPrelLo21
            | AdrPrelPgHi21
            | AdrPrelPgHi21Nc
            | AddAbsLo12Nc
            | Ldst8AbsLo12Nc
            | Ldst16AbsLo12Nc
            | Ldst32AbsLo12Nc
            | Ldst64AbsLo12Nc
            | Ldst128AbsLo12Nc
            | AdrGotPage
            | Ld64GotLo12Nc
            | MovwUabsG0
            | MovwUabsG0Nc
            | MovwUabsG1
            | MovwUabsG1Nc
            | MovwUabsG2
            | MovwUabsG2Nc
            | MovwUabsG3
            | TlsLeAddTprelHi12
            | TlsLeAddTprelLo12
            | TlsLeAddTprelLo12Nc
            | TlsIeAdrGottprelPage21
            | TlsIeLd64GottprelLo12Nc
            | TlsDescAdrPage21
            | TlsDescLd64Lo12
            | TlsDescAddLo12
            | TlsDescCall
            | TlsGdAdrPage21
            | TlsGdAddLo12Nc
    )
}

/// The field of an aarch64 data relocation: `ABS32`/`PREL32` accept `-2^31 <= X < 2^32`,
/// `ABS16`/`PREL16` `-2^15 <= X < 2^16` (AAELF64's checks, as ld applies them).
pub(crate) fn data_field(kind: RelocKind) -> Option<Field> {
    match kind {
        RelocKind::Abs64 | RelocKind::Pc64 => Some(Field::Word64),
        RelocKind::Abs32 | RelocKind::Pc32 => Some(Field::Either32),
        RelocKind::Abs16 | RelocKind::Pc16 => Some(Field::Either16),
        _ => None,
    }
}

impl Link<'_> {
    /// Apply one aarch64 instruction relocation at `base + reloc.offset`; returns the end of
    /// the bytes it consumed beyond its own instruction (the `bl __tls_get_addr; nop` of a
    /// relaxed general-dynamic sequence), or 0.
    pub(crate) fn apply_aarch64(
        &mut self,
        base: RuntimeAddr,
        reloc: &Reloc,
        class: TargetClass,
        bytes: &mut [u8],
    ) -> Result<u64, Failure> {
        use RelocKind::*;
        let p = base.0.wrapping_add(reloc.offset.0);
        let off = reloc.offset.0 as usize;
        let insn = a64::read(bytes, off).map_err(encode_failure)?;
        let a = reloc.addend;
        let put = |bytes: &mut [u8], insn: Result<u32, EncodeError>| -> Result<u64, Failure> {
            let insn = insn.map_err(encode_failure)?;
            a64::write(bytes, off, insn).map_err(encode_failure)?;
            Ok(0)
        };
        match reloc.kind {
            Call26 | Jump26 => {
                let s = self.address(class, reloc, true)?;
                let weak_undefined = class == TargetClass::External
                    && s == 0
                    && self.info.obj.symbol(reloc.symbol).binding == hot_object::Binding::Weak;
                if weak_undefined {
                    // As ld: a call to an undefined weak function (which code guards with
                    // `if (fn)`) becomes a branch to the next instruction, written as `nop`,
                    // rather than a veneer to address 0.
                    return put(bytes, Ok(a64::NOP));
                }
                let target = s.wrapping_add_signed(a);
                let delta = target as i128 - p as i128;
                match a64::set_imm26(insn, delta) {
                    Err(EncodeError::Overflow { .. }) => {
                        let veneer = self.veneer_to(RuntimeAddr(target))?;
                        put(bytes, a64::set_imm26(insn, veneer.0 as i128 - p as i128))
                    }
                    other => put(bytes, other),
                }
            }
            CondBr19 | LdPrelLo19 | TstBr14 | AdrPrelLo21 => {
                let target = self.address(class, reloc, false)?.wrapping_add_signed(a);
                let delta = target as i128 - p as i128;
                let insn = match reloc.kind {
                    TstBr14 => a64::set_imm14(insn, delta),
                    AdrPrelLo21 => a64::set_adr(insn, p, target),
                    _ => a64::set_imm19(insn, delta),
                };
                put(bytes, insn)
            }
            AdrPrelPgHi21 | AdrPrelPgHi21Nc => {
                let target = self.address(class, reloc, false)?.wrapping_add_signed(a);
                put(
                    bytes,
                    a64::set_adrp(insn, p, target, reloc.kind == AdrPrelPgHi21),
                )
            }
            AddAbsLo12Nc => {
                let target = self.address(class, reloc, false)?.wrapping_add_signed(a);
                put(bytes, a64::set_add_imm12(insn, target, 0))
            }
            Ldst8AbsLo12Nc | Ldst16AbsLo12Nc | Ldst32AbsLo12Nc | Ldst64AbsLo12Nc
            | Ldst128AbsLo12Nc => {
                let scale = match reloc.kind {
                    Ldst8AbsLo12Nc => 0,
                    Ldst16AbsLo12Nc => 1,
                    Ldst32AbsLo12Nc => 2,
                    Ldst64AbsLo12Nc => 3,
                    _ => 4,
                };
                let target = self.address(class, reloc, false)?.wrapping_add_signed(a);
                put(bytes, a64::set_ldst_imm12(insn, target, scale))
            }
            AdrGotPage | Ld64GotLo12Nc => {
                if a != 0 {
                    return Err((
                        LinkErrorCode::UnsupportedRelocation,
                        format!("a GOT slot for a symbol plus an addend ({a:#x})"),
                    ));
                }
                let slot = self.got_slot_for(class, reloc)?.0;
                let insn = if reloc.kind == AdrGotPage {
                    a64::set_adrp(insn, p, slot, true)
                } else {
                    a64::set_ldst_imm12(insn, slot, 3)
                };
                put(bytes, insn)
            }
            MovwUabsG0 | MovwUabsG0Nc | MovwUabsG1 | MovwUabsG1Nc | MovwUabsG2 | MovwUabsG2Nc
            | MovwUabsG3 => {
                let value = self.address(class, reloc, false)?.wrapping_add_signed(a);
                let (group, checked) = match reloc.kind {
                    MovwUabsG0 => (0, true),
                    MovwUabsG0Nc => (0, false),
                    MovwUabsG1 => (1, true),
                    MovwUabsG1Nc => (1, false),
                    MovwUabsG2 => (2, true),
                    MovwUabsG2Nc => (2, false),
                    _ => (3, true),
                };
                put(bytes, a64::set_movw(insn, value, group, checked))
            }
            TlsLeAddTprelHi12 | TlsLeAddTprelLo12 | TlsLeAddTprelLo12Nc => {
                let t = self.tprel(class, reloc)?.wrapping_add_signed(a);
                let (limit, shift, what) = match reloc.kind {
                    TlsLeAddTprelHi12 => (1u64 << 24, 12, "24 bits (TLSLE_ADD_TPREL_HI12)"),
                    TlsLeAddTprelLo12 => (1 << 12, 0, "12 bits (TLSLE_ADD_TPREL_LO12)"),
                    _ => (u64::MAX, 0, ""),
                };
                if t >= limit {
                    return Err(encode_failure(EncodeError::Overflow {
                        value: t as i128,
                        field: what,
                    }));
                }
                put(bytes, a64::set_add_imm12(insn, t, shift))
            }
            TlsIeAdrGottprelPage21 => {
                let t = self.tprel(class, reloc)?.wrapping_add_signed(a);
                put(bytes, a64::relax_ie_adrp(insn, t))
            }
            TlsIeLd64GottprelLo12Nc => {
                let t = self.tprel(class, reloc)?.wrapping_add_signed(a);
                put(bytes, a64::relax_ie_ldr(insn, t))
            }
            TlsDescAdrPage21 | TlsGdAdrPage21 => {
                let t = self.tprel(class, reloc)?.wrapping_add_signed(a);
                put(bytes, a64::relax_desc_adrp(insn, t))
            }
            TlsDescLd64Lo12 => {
                let t = self.tprel(class, reloc)?.wrapping_add_signed(a);
                if !a64::is_ldst_uimm12(insn) {
                    return Err(unexpected("TLSDESC_LD64_LO12 is not on `ldr`", insn));
                }
                put(bytes, Ok(a64::relax_desc_lo12(t)))
            }
            TlsDescAddLo12 => {
                if insn & 0x1f80_0000 != 0x1100_0000 {
                    return Err(unexpected("TLSDESC_ADD_LO12 is not on `add`", insn));
                }
                put(bytes, Ok(a64::NOP))
            }
            TlsDescCall => {
                // `blr xn`.
                if insn & 0xffff_fc1f != 0xd63f_0000 {
                    return Err(unexpected("TLSDESC_CALL is not on `blr`", insn));
                }
                put(bytes, Ok(a64::NOP))
            }
            TlsGdAddLo12Nc => {
                // `add x0, x0, :tlsgd_lo12:v; bl __tls_get_addr; nop` becomes
                // `movk x0, #tprel_g0; mrs x1, tpidr_el0; add x0, x1, x0`; the CALL26 on
                // the `bl` is consumed.
                let t = self.tprel(class, reloc)?.wrapping_add_signed(a);
                let call = a64::read(bytes, off + 4).map_err(encode_failure)?;
                let after = a64::read(bytes, off + 8).map_err(encode_failure)?;
                if insn & 0x1f80_0000 != 0x1100_0000 || !a64::is_bl(call) || after != a64::NOP {
                    return Err(unexpected(
                        "TLSGD_ADD_LO12_NC is not followed by `bl __tls_get_addr; nop`",
                        insn,
                    ));
                }
                a64::write(bytes, off, a64::relax_desc_lo12(t)).map_err(encode_failure)?;
                a64::write(bytes, off + 4, a64::MRS_X1_TPIDR_EL0).map_err(encode_failure)?;
                a64::write(bytes, off + 8, a64::ADD_X0_X1_X0).map_err(encode_failure)?;
                Ok(reloc.offset.0 + 12)
            }
            _ => Err((
                LinkErrorCode::UnsupportedRelocation,
                "hot-link does not support this relocation type".into(),
            )),
        }
    }

    /// An aarch64 data relocation (`ABS64/32/16`, `PREL64/32/16`) once `S` is known.
    pub(crate) fn store_aarch64_data(
        reloc: &Reloc,
        p: u64,
        s: u64,
        bytes: &mut [u8],
    ) -> Result<u64, Failure> {
        let field = data_field(reloc.kind).ok_or((
            LinkErrorCode::UnsupportedRelocation,
            "hot-link does not support this relocation type".to_string(),
        ))?;
        let value = s as i128 + reloc.addend as i128;
        let value = match reloc.kind {
            RelocKind::Pc64 | RelocKind::Pc32 | RelocKind::Pc16 => value - p as i128,
            _ => value,
        };
        store(bytes, reloc.offset.0 as usize, field, value)
            .map(|_| 0)
            .map_err(|e| (LinkErrorCode::RelocationOverflow, e.to_string()))
    }

    /// `S` as a plain address (a library IFUNC, known only in the target, is not one).
    fn address(&mut self, class: TargetClass, reloc: &Reloc, call: bool) -> Result<u64, Failure> {
        match self.symbol_value(class, reloc, call)? {
            SymValue::Addr(s) => Ok(s),
            SymValue::CopyInto(_) => Err((
                LinkErrorCode::UnsupportedRelocation,
                "the address of a library IFUNC can only be stored as a plain 64-bit pointer"
                    .into(),
            )),
        }
    }

    /// TLS variant I: `tprel = align_up(16, p_align) + offset in the TLS template` (ld's
    /// `tpoff_base`: the TCB is 16 bytes, the block follows at the segment's alignment).
    pub(crate) fn tprel(&self, class: TargetClass, reloc: &Reloc) -> Result<u64, Failure> {
        let offset = self.tls_offset(class, reloc)?;
        let tls = self.tls_segment()?;
        16u64
            .checked_next_multiple_of(tls.align.max(1))
            .and_then(|tcb| tcb.checked_add(offset))
            .ok_or_else(|| {
                (
                    LinkErrorCode::UnsupportedRelocation,
                    format!(
                        "the executable's TLS segment ({}-byte aligned) puts thread-locals \
                         beyond 64-bit offsets",
                        tls.align
                    ),
                )
            })
    }

    /// A veneer in the code arena that jumps to `target`, allocated once per target.
    fn veneer_to(&mut self, target: RuntimeAddr) -> Result<RuntimeAddr, Failure> {
        if let Some(v) = self.alloc.veneer(target) {
            return Ok(v);
        }
        let v = self
            .alloc
            .alloc(ArenaKind::Code, a64::STUB_LEN, a64::STUB_LEN)
            .map_err(|_| {
                (
                    LinkErrorCode::ArenaExhausted,
                    "the code arena is full".to_string(),
                )
            })?;
        self.patch.writes.push(PatchWrite {
            addr: v,
            bytes: a64::veneer(v.0, target.0),
            what: format!("veneer to {target}"),
        });
        self.alloc.add_veneer(target, v);
        Ok(v)
    }
}

fn unexpected(what: &str, insn: u32) -> Failure {
    (
        LinkErrorCode::UnsupportedRelocation,
        format!("{what} (found {insn:#010x})"),
    )
}
