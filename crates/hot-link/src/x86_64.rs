//! x86-64 relocation application, TLS relaxations and the jump/stub encodings.
//!
//! # The x86-64 psABI relocations hot-link applies
//!
//! A relocation asks the linker to compute a value from `S` (the symbol's address), `A` (the
//! addend stored in the relocation, since x86-64 uses RELA), `P` (the address of the field
//! being patched), `G + GOT` (the address of the symbol's GOT slot), `Z` (the symbol's size)
//! and, for TLS, the thread pointer offset, and store it in a field of 8, 16, 32 or 64 bits.
//!
//! - `R_X86_64_64` stores `S + A` in 64 bits (pointers in data: vtables, `static` pointer
//!   tables, function pointer arrays). No overflow is possible.
//! - `R_X86_64_32` stores `S + A` zero-extended: it must fit in `0..2^32`. `R_X86_64_32S`
//!   stores it sign-extended (`mov $sym, %rax`, `movl $0, sym(,%rax,4)` in `-mcmodel=small`
//!   non-PIC code): it must fit in `-2^31..2^31`. Both only work for addresses below 2 GiB,
//!   which is why arenas for a non-PIE executable built with them must lie there.
//! - `R_X86_64_PC32` and `R_X86_64_PLT32` store `S + A - P` in a signed 32-bit field. In code
//!   the field is the displacement of the instruction and the CPU adds the address of the
//!   *next* instruction, so the assembler writes `A = -4` (or `-5`, `-8` when an immediate
//!   follows the displacement): the value designates the byte `S + A + (end of instruction -
//!   P)`, which is `S` for `call f` (`PLT32 f - 4`) and for `lea f(%rip)`. GNU as replaces a
//!   local symbol by its section symbol plus offset, so `&static_fn` is
//!   `R_X86_64_PC32 .text.static_fn - 4`; hot-link decodes the designated byte to decide
//!   whether a reference means a function's entry or a place inside its body.
//!   `PLT32` may go through a PLT entry; hot-link gives a call to a library function a stub
//!   `jmp *slot(%rip)` (`ff 25 rel32`) in the code arena, which is what a PLT entry does.
//! - `R_X86_64_GOTPCREL`, `R_X86_64_GOTPCRELX` and `R_X86_64_REX_GOTPCRELX` store
//!   `G + GOT + A - P`: the PC-relative address of an 8-byte slot holding `S`. The `X` forms
//!   allow the linker to rewrite the instruction (`mov` to `lea`, `call *` to `addr32 call`)
//!   when `S` is in reach; hot-link keeps the GOT load (it is always correct), like
//!   `ld --no-relax`. Slots are the executable's own when it has one for the symbol
//!   (`GLOB_DAT`), else new 8-byte slots in the data arena.
//! - TLS: the executable's thread-locals live at fixed offsets from the thread pointer `%fs:0`
//!   (variant II: the TLS block ends at the thread pointer, so `tpoff = S - tls_start -
//!   round_up(tls_memsz, tls_align)` is negative). `R_X86_64_TPOFF32` stores it (local-exec).
//!   `R_X86_64_GOTTPOFF` (initial-exec: `mov x@gottpoff(%rip), %reg`) is relaxed like ld does
//!   for an executable to `mov $tpoff, %reg` (or `lea`/`add` for the `add` form).
//!   `R_X86_64_TLSGD` sequences (`.byte 0x66; lea x@tlsgd(%rip), %rdi; .word 0x6666; rex64
//!   call __tls_get_addr@PLT`) become `mov %fs:0, %rax; lea tpoff(%rax), %rax` (16 bytes),
//!   `R_X86_64_TLSLD` sequences become `data16 data16 data16 mov %fs:0, %rax` (12 or 13
//!   bytes) and the `R_X86_64_DTPOFF32` offsets after them become tp offsets;
//!   `R_X86_64_GOTPC32_TLSDESC` (`lea x@tlsdesc(%rip), %rax`) becomes `mov $tpoff, %rax` and
//!   `R_X86_64_TLSDESC_CALL` (`call *(%rax)`) becomes `xchg %ax, %ax`. These are the byte
//!   sequences of binutils' `elf_x86_64_relocate_section`, so the output matches ld.
//! - `R_X86_64_SIZE32`/`SIZE64` store `Z + A`.
//!
//! Every store checks that the value fits its field the way ld does (`R_X86_64_32`:
//! unsigned, `32S`/`PC32`/`PLT32`/`GOTPCREL*`/`TPOFF32`: signed, 8 and 16 bits: either);
//! a value that does not fit is a `relocation-overflow` diagnostic, never a truncation.

/// The shape of a relocated field and the range its value must fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// 64 bits, any value (wraps).
    Word64,
    /// 32 bits, signed.
    Signed32,
    /// 32 bits, zero-extended.
    Unsigned32,
    /// 32 bits, signed or unsigned (aarch64's `ABS32`/`PREL32`: `-2^31 <= X < 2^32`).
    Either32,
    /// 16 bits, signed or unsigned (ld's "bitfield" check).
    Either16,
    /// 8 bits, signed or unsigned.
    Either8,
    /// 16 / 8 bits signed (PC-relative).
    Signed16,
    Signed8,
}

/// Why bytes could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ApplyError {
    /// The value does not fit the field.
    Overflow { value: i128, field: Field },
    /// The field lies outside the atom.
    OutOfBounds,
    /// A TLS sequence or instruction is not one of the forms the relaxation knows.
    UnexpectedCode(String),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Overflow { value, field } => {
                let range = match field {
                    Field::Word64 => "64 bits",
                    Field::Signed32 => "a signed 32-bit field (±2 GiB)",
                    Field::Unsigned32 => "an unsigned 32-bit field (below 4 GiB)",
                    Field::Either32 => "a 32-bit field",
                    Field::Either16 | Field::Signed16 => "a 16-bit field",
                    Field::Either8 | Field::Signed8 => "an 8-bit field",
                };
                if *value < 0 {
                    write!(f, "value -{:#x} does not fit {range}", value.unsigned_abs())
                } else {
                    write!(f, "value {value:#x} does not fit {range}")
                }
            }
            ApplyError::OutOfBounds => write!(f, "the relocated field lies outside its section"),
            ApplyError::UnexpectedCode(what) => write!(f, "{what}"),
        }
    }
}

/// Store `value` into `bytes[offset..]` as `field`, checking its range.
pub(crate) fn store(
    bytes: &mut [u8],
    offset: usize,
    field: Field,
    value: i128,
) -> Result<(), ApplyError> {
    let (len, fits) = match field {
        Field::Word64 => (8, true),
        Field::Signed32 => (4, (i32::MIN as i128..=i32::MAX as i128).contains(&value)),
        Field::Unsigned32 => (4, (0..=u32::MAX as i128).contains(&value)),
        Field::Either32 => (4, (i32::MIN as i128..=u32::MAX as i128).contains(&value)),
        Field::Either16 => (2, (i16::MIN as i128..=u16::MAX as i128).contains(&value)),
        Field::Either8 => (1, (i8::MIN as i128..=u8::MAX as i128).contains(&value)),
        Field::Signed16 => (2, (i16::MIN as i128..=i16::MAX as i128).contains(&value)),
        Field::Signed8 => (1, (i8::MIN as i128..=i8::MAX as i128).contains(&value)),
    };
    if !fits {
        return Err(ApplyError::Overflow { value, field });
    }
    let dst = offset
        .checked_add(len)
        .and_then(|end| bytes.get_mut(offset..end))
        .ok_or(ApplyError::OutOfBounds)?;
    let le = (value as u64).to_le_bytes();
    dst.copy_from_slice(&le[..len]);
    Ok(())
}

fn window(bytes: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    bytes.get(start..start.checked_add(len)?)
}

fn unexpected(what: &str, bytes: &[u8], start: usize, len: usize) -> ApplyError {
    let found: Vec<String> = bytes
        .get(start..(start + len).min(bytes.len()))
        .unwrap_or(&[])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ApplyError::UnexpectedCode(format!("{what} (found bytes {})", found.join(" ")))
}

/// IE -> LE for `R_X86_64_GOTTPOFF` at `roff`: `movq x@gottpoff(%rip), %reg` becomes
/// `movq $tpoff, %reg`; `addq x@gottpoff(%rip), %reg` becomes `leaq tpoff(%reg), %reg`
/// (`addq $tpoff, %reg` for `%rsp`/`%r12`). Byte for byte what ld writes.
pub(crate) fn relax_gottpoff(bytes: &mut [u8], roff: usize, tpoff: i64) -> Result<(), ApplyError> {
    if roff < 3 || roff + 4 > bytes.len() {
        return Err(unexpected(
            "R_X86_64_GOTTPOFF too close to the section start to be `mov`/`add` from the GOT",
            bytes,
            roff.saturating_sub(3),
            7,
        ));
    }
    let rex = bytes[roff - 3];
    let opcode = bytes[roff - 2];
    let modrm = bytes[roff - 1];
    // The displacement must be RIP-relative (mod 00, r/m 101) and the prefix a REX.W.
    if modrm & 0xc7 != 0x05 || (rex != 0x48 && rex != 0x4c) || (opcode != 0x8b && opcode != 0x03) {
        return Err(unexpected(
            "R_X86_64_GOTTPOFF is not on `movq`/`addq x@gottpoff(%rip), %reg`",
            bytes,
            roff - 3,
            7,
        ));
    }
    let reg = (modrm >> 3) & 7;
    if opcode == 0x8b {
        if rex == 0x4c {
            bytes[roff - 3] = 0x49;
        }
        bytes[roff - 2] = 0xc7;
        bytes[roff - 1] = 0xc0 | reg;
    } else if reg == 4 {
        if rex == 0x4c {
            bytes[roff - 3] = 0x49;
        }
        bytes[roff - 2] = 0x81;
        bytes[roff - 1] = 0xc0 | reg;
    } else {
        if rex == 0x4c {
            bytes[roff - 3] = 0x4d;
        }
        bytes[roff - 2] = 0x8d;
        bytes[roff - 1] = 0x80 | reg | (reg << 3);
    }
    store(bytes, roff, Field::Signed32, tpoff as i128)
}

/// GD -> LE for `R_X86_64_TLSGD` at `roff`: the 16-byte `lea x@tlsgd(%rip), %rdi; call
/// __tls_get_addr` sequence becomes `mov %fs:0, %rax; lea tpoff(%rax), %rax`. The relocation
/// on the call that follows is consumed.
pub(crate) fn relax_tlsgd(bytes: &mut [u8], roff: usize, tpoff: i64) -> Result<(), ApplyError> {
    let start = roff.checked_sub(4).ok_or(ApplyError::OutOfBounds)?;
    let lea = window(bytes, start, 4);
    let call = window(bytes, roff + 4, 4);
    let lea_ok = lea == Some(&[0x66, 0x48, 0x8d, 0x3d][..]);
    let call_ok = matches!(
        call,
        Some([0x66, 0x66, 0x48, 0xe8]) | Some([0x66, 0x48, 0xff, 0x15])
    );
    if !lea_ok || !call_ok || bytes.len() < start + 16 {
        return Err(unexpected(
            "R_X86_64_TLSGD is not the `data16 lea x@tlsgd(%rip), %rdi; data16 data16 rex64 call \
             __tls_get_addr` sequence (large-model TLS is not supported)",
            bytes,
            start,
            16,
        ));
    }
    bytes[start..start + 16].copy_from_slice(&[
        0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0x48, 0x8d, 0x80, 0, 0, 0, 0,
    ]);
    store(bytes, roff + 8, Field::Signed32, tpoff as i128)
}

/// LD -> LE for `R_X86_64_TLSLD` at `roff`: `lea x@tlsld(%rip), %rdi; call __tls_get_addr`
/// becomes `data16 data16 data16 mov %fs:0, %rax` (one more `data16` for the 13-byte
/// `call *__tls_get_addr@GOTPCREL(%rip)` form). The relocation on the call is consumed.
pub(crate) fn relax_tlsld(bytes: &mut [u8], roff: usize) -> Result<(), ApplyError> {
    let start = roff.checked_sub(3).ok_or(ApplyError::OutOfBounds)?;
    let lea_ok = window(bytes, start, 3) == Some(&[0x48, 0x8d, 0x3d][..]);
    let next = window(bytes, roff + 4, 2);
    let replacement: &[u8] = match next {
        Some([0xe8, _]) => &[0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0],
        Some([0xff, 0x15]) | Some([0x67, 0xe8]) => &[
            0x66, 0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0,
        ],
        _ => &[],
    };
    if !lea_ok || replacement.is_empty() || bytes.len() < start + replacement.len() {
        return Err(unexpected(
            "R_X86_64_TLSLD is not the `lea x@tlsld(%rip), %rdi; call __tls_get_addr` sequence",
            bytes,
            start,
            13,
        ));
    }
    bytes[start..start + replacement.len()].copy_from_slice(replacement);
    Ok(())
}

/// TLSDESC -> LE for `R_X86_64_GOTPC32_TLSDESC` at `roff`: `lea x@tlsdesc(%rip), %reg`
/// becomes `mov $tpoff, %reg`.
pub(crate) fn relax_tlsdesc(bytes: &mut [u8], roff: usize, tpoff: i64) -> Result<(), ApplyError> {
    if roff < 3 || roff + 4 > bytes.len() || bytes[roff - 2] != 0x8d || bytes[roff - 1] & 0xc7 != 5
    {
        return Err(unexpected(
            "R_X86_64_GOTPC32_TLSDESC is not on `lea x@tlsdesc(%rip), %reg`",
            bytes,
            roff.saturating_sub(3),
            7,
        ));
    }
    let prefix = bytes[roff - 3];
    let modrm = bytes[roff - 1];
    bytes[roff - 3] = (prefix & 0x48) | ((prefix >> 2) & 1);
    bytes[roff - 2] = 0xc7;
    bytes[roff - 1] = 0xc0 | ((modrm >> 3) & 7);
    store(bytes, roff, Field::Signed32, tpoff as i128)
}

/// TLSDESC -> LE for `R_X86_64_TLSDESC_CALL` at `roff`: `call *(%rax)` becomes
/// `xchg %ax, %ax`.
pub(crate) fn relax_tlsdesc_call(bytes: &mut [u8], roff: usize) -> Result<(), ApplyError> {
    match window(bytes, roff, 2) {
        Some([0xff, 0x10]) => {
            bytes[roff] = 0x66;
            bytes[roff + 1] = 0x90;
            Ok(())
        }
        _ => Err(unexpected(
            "R_X86_64_TLSDESC_CALL is not on `call *(%rax)`",
            bytes,
            roff,
            2,
        )),
    }
}

/// Length of `jmp rel32`.
pub(crate) const JMP_REL32_LEN: u64 = 5;
/// Length of `jmp rel8`.
pub(crate) const JMP_REL8_LEN: u64 = 2;
/// Length of the `jmp *slot(%rip)` stub.
pub(crate) const JMP_INDIRECT_LEN: u64 = 6;

/// `jmp rel32` at `from` to `to`; `None` when `to` is beyond ±2 GiB.
pub(crate) fn jmp_rel32(from: u64, to: u64) -> Option<Vec<u8>> {
    let rel = to as i128 - (from as i128 + JMP_REL32_LEN as i128);
    let rel = i32::try_from(rel).ok()?;
    let mut bytes = vec![0xe9];
    bytes.extend_from_slice(&rel.to_le_bytes());
    Some(bytes)
}

/// `jmp rel8` at `from` to `to`; `None` when out of reach.
pub(crate) fn jmp_rel8(from: u64, to: u64) -> Option<Vec<u8>> {
    let rel = to as i128 - (from as i128 + JMP_REL8_LEN as i128);
    let rel = i8::try_from(rel).ok()?;
    Some(vec![0xeb, rel as u8])
}

/// `jmp *slot(%rip)` at `from` (`ff 25 rel32`), the body of a PLT-like stub; padded with
/// `int3` to `len` bytes.
pub(crate) fn jmp_indirect(from: u64, slot: u64, len: usize) -> Option<Vec<u8>> {
    let rel = slot as i128 - (from as i128 + JMP_INDIRECT_LEN as i128);
    let rel = i32::try_from(rel).ok()?;
    let mut bytes = vec![0xff, 0x25];
    bytes.extend_from_slice(&rel.to_le_bytes());
    bytes.resize(len.max(bytes.len()), 0xcc);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_check_ranges_like_ld() {
        let mut b = [0u8; 8];
        assert!(store(&mut b, 0, Field::Signed32, -1).is_ok());
        assert_eq!(&b[..4], &[0xff; 4]);
        assert!(store(&mut b, 0, Field::Signed32, 0x8000_0000).is_err());
        assert!(store(&mut b, 0, Field::Unsigned32, 0xffff_ffff).is_ok());
        assert!(store(&mut b, 0, Field::Unsigned32, -1).is_err());
        assert!(store(&mut b, 6, Field::Unsigned32, 0).is_err());
        assert!(store(&mut b, 0, Field::Word64, -1).is_ok());
        assert_eq!(b, [0xff; 8]);
    }

    #[test]
    fn jumps_encode_their_displacements() {
        assert_eq!(jmp_rel32(0x1000, 0x1005), Some(vec![0xe9, 0, 0, 0, 0]));
        assert_eq!(
            jmp_rel32(0x1000, 0x1000),
            Some(vec![0xe9, 0xfb, 0xff, 0xff, 0xff])
        );
        assert_eq!(jmp_rel32(0, 0x1_0000_0000), None);
        assert_eq!(jmp_rel8(0x1000, 0x1000 - 3), Some(vec![0xeb, 0xfb]));
        assert_eq!(jmp_rel8(0x1000, 0x1000 + 200), None);
        assert_eq!(
            jmp_indirect(0x1000, 0x2000, 8),
            Some(vec![0xff, 0x25, 0xfa, 0x0f, 0, 0, 0xcc, 0xcc])
        );
    }

    #[test]
    fn initial_exec_add_becomes_lea_or_add_immediate() {
        // add 0x0(%rip), %rax ; add 0x0(%rip), %r12 (r/m %r12 needs the add-immediate form)
        let mut b = vec![0x48, 0x03, 0x05, 0, 0, 0, 0, 0x4c, 0x03, 0x25, 0, 0, 0, 0];
        relax_gottpoff(&mut b, 3, -8).unwrap();
        relax_gottpoff(&mut b, 10, -16).unwrap();
        assert_eq!(
            b,
            vec![
                0x48, 0x8d, 0x80, 0xf8, 0xff, 0xff, 0xff, 0x49, 0x81, 0xc4, 0xf0, 0xff, 0xff, 0xff
            ]
        );
        // Anything else is left alone and reported.
        let mut b = vec![0x48, 0x8d, 0x05, 0, 0, 0, 0];
        assert!(matches!(
            relax_gottpoff(&mut b, 3, 0),
            Err(ApplyError::UnexpectedCode(_))
        ));
        assert_eq!(b, vec![0x48, 0x8d, 0x05, 0, 0, 0, 0]);
    }

    #[test]
    fn initial_exec_mov_becomes_mov_immediate() {
        // mov 0x0(%rip), %rax ; mov 0x0(%rip), %r12
        let mut b = vec![0x48, 0x8b, 0x05, 0, 0, 0, 0, 0x4c, 0x8b, 0x25, 0, 0, 0, 0];
        relax_gottpoff(&mut b, 3, -8).unwrap();
        relax_gottpoff(&mut b, 10, -16).unwrap();
        assert_eq!(
            b,
            vec![
                0x48, 0xc7, 0xc0, 0xf8, 0xff, 0xff, 0xff, 0x49, 0xc7, 0xc4, 0xf0, 0xff, 0xff, 0xff
            ]
        );
    }
}
