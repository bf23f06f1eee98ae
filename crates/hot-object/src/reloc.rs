//! Decoded relocation kinds. The raw `r_type` always travels next to the decoded kind
//! (see [`crate::Reloc`]), so a diagnostic can name the exact ELF relocation.

/// What a relocation asks for, independent of the numbering of one ELF machine. Names follow
/// the x86-64 psABI; aarch64 kinds are added beside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelocKind {
    /// `R_X86_64_NONE`.
    None,
    /// `R_X86_64_64`: S + A, 64-bit absolute.
    Abs64,
    /// `R_X86_64_32`: S + A, zero-extended 32-bit.
    Abs32,
    /// `R_X86_64_32S`: S + A, sign-extended 32-bit.
    Abs32S,
    /// `R_X86_64_16` / `R_X86_64_8`.
    Abs16,
    Abs8,
    /// `R_X86_64_PC32`: S + A - P.
    Pc32,
    /// `R_X86_64_PC64`.
    Pc64,
    /// `R_X86_64_PC16` / `R_X86_64_PC8`.
    Pc16,
    Pc8,
    /// `R_X86_64_PLT32`: L + A - P (a call or jump to a function).
    Plt32,
    /// `R_X86_64_GOTPCREL`: G + GOT + A - P.
    GotPcRel,
    /// `R_X86_64_GOTPCRELX`: like GOTPCREL, relaxable (`call *`/`jmp *`/`mov`).
    GotPcRelX,
    /// `R_X86_64_REX_GOTPCRELX`: like GOTPCREL with a REX prefix, relaxable (`mov` -> `lea`).
    RexGotPcRelX,
    /// `R_X86_64_GOTPCREL64`.
    GotPcRel64,
    /// `R_X86_64_GOTPC32` / `R_X86_64_GOTPC64`: GOT + A - P.
    GotPc32,
    GotPc64,
    /// `R_X86_64_GOTOFF64`: S + A - GOT.
    GotOff64,
    /// `R_X86_64_GOT32` / `R_X86_64_GOT64`: G + A.
    Got32,
    Got64,
    /// `R_X86_64_TPOFF32` / `R_X86_64_TPOFF64`: local-exec TLS offset.
    TpOff32,
    TpOff64,
    /// `R_X86_64_GOTTPOFF`: initial-exec TLS (GOT slot holding the TP offset).
    GotTpOff,
    /// `R_X86_64_TLSGD`: general-dynamic TLS.
    TlsGd,
    /// `R_X86_64_TLSLD`: local-dynamic TLS.
    TlsLd,
    /// `R_X86_64_DTPOFF32` / `R_X86_64_DTPOFF64`: offset in the module's TLS block.
    DtpOff32,
    DtpOff64,
    /// `R_X86_64_GOTPC32_TLSDESC`: TLS descriptor address.
    GotPc32TlsDesc,
    /// `R_X86_64_TLSDESC_CALL`: marks the descriptor call.
    TlsDescCall,
    /// `R_X86_64_SIZE32` / `R_X86_64_SIZE64`: Z + A.
    Size32,
    Size64,
    // aarch64 instruction relocations (ELF for the Arm 64-bit Architecture, "AAELF64"). The
    // data relocations `ABS64/32/16` and `PREL64/32/16` decode to the x86-64 kinds of the
    // same meaning (`Abs64`, `Pc32`, ...). `Page(x)` is `x & !0xfff`.
    /// `R_AARCH64_CALL26` (`bl`) / `R_AARCH64_JUMP26` (`b`): S + A - P in imm26, ±128 MiB.
    Call26,
    Jump26,
    /// `R_AARCH64_CONDBR19`: S + A - P in the imm19 of `b.cond`, `cbz`, `cbnz`, ±1 MiB.
    CondBr19,
    /// `R_AARCH64_TSTBR14`: S + A - P in the imm14 of `tbz`, `tbnz`, ±32 KiB.
    TstBr14,
    /// `R_AARCH64_LD_PREL_LO19`: S + A - P in the imm19 of `ldr` (literal), ±1 MiB.
    LdPrelLo19,
    /// `R_AARCH64_ADR_PREL_LO21`: S + A - P in the immediate of `adr`, ±1 MiB.
    AdrPrelLo21,
    /// `R_AARCH64_ADR_PREL_PG_HI21`: Page(S + A) - Page(P) in `adrp`, checked to ±4 GiB.
    AdrPrelPgHi21,
    /// `R_AARCH64_ADR_PREL_PG_HI21_NC`: the same, unchecked.
    AdrPrelPgHi21Nc,
    /// `R_AARCH64_ADD_ABS_LO12_NC`: (S + A) & 0xfff in the imm12 of `add`.
    AddAbsLo12Nc,
    /// `R_AARCH64_LDST{8,16,32,64,128}_ABS_LO12_NC`: (S + A) & 0xfff in the imm12 of a
    /// load or store, scaled down by its access size (which the value must be aligned to).
    Ldst8AbsLo12Nc,
    Ldst16AbsLo12Nc,
    Ldst32AbsLo12Nc,
    Ldst64AbsLo12Nc,
    Ldst128AbsLo12Nc,
    /// `R_AARCH64_ADR_GOT_PAGE`: Page(G(S)) - Page(P) in `adrp`: the page of S's GOT slot.
    AdrGotPage,
    /// `R_AARCH64_LD64_GOT_LO12_NC`: G(S) & 0xff8 in the scaled imm12 of `ldr x`.
    Ld64GotLo12Nc,
    /// `R_AARCH64_MOVW_UABS_G0`..`G3` (and the `_NC` forms, unchecked): bits 16n..16n+15 of
    /// S + A in the imm16 of `movz`/`movk` (`-mcmodel=large`); the checked forms require
    /// S + A < 2^(16(n+1)).
    MovwUabsG0,
    MovwUabsG0Nc,
    MovwUabsG1,
    MovwUabsG1Nc,
    MovwUabsG2,
    MovwUabsG2Nc,
    MovwUabsG3,
    /// `R_AARCH64_TLSLE_ADD_TPREL_HI12`: bits 12..23 of TPREL(S + A) in `add ..., lsl #12`.
    TlsLeAddTprelHi12,
    /// `R_AARCH64_TLSLE_ADD_TPREL_LO12` (checked < 4096) / `_LO12_NC`: bits 0..11.
    TlsLeAddTprelLo12,
    TlsLeAddTprelLo12Nc,
    /// `R_AARCH64_TLSIE_ADR_GOTTPREL_PAGE21`: the page of the GOT slot holding TPREL(S).
    TlsIeAdrGottprelPage21,
    /// `R_AARCH64_TLSIE_LD64_GOTTPREL_LO12_NC`: its low 12 bits in `ldr x`.
    TlsIeLd64GottprelLo12Nc,
    /// `R_AARCH64_TLSDESC_ADR_PAGE21`, `_LD64_LO12`, `_ADD_LO12`: the first three
    /// instructions of a TLS descriptor call (`adrp`, `ldr`, `add`); `R_AARCH64_TLSDESC_CALL`
    /// on its `blr` is [`RelocKind::TlsDescCall`], as on x86-64.
    TlsDescAdrPage21,
    TlsDescLd64Lo12,
    TlsDescAddLo12,
    /// `R_AARCH64_TLSGD_ADR_PAGE21` / `_ADD_LO12_NC`: the traditional general-dynamic
    /// sequence (`-mtls-dialect=trad`) before `bl __tls_get_addr`.
    TlsGdAdrPage21,
    TlsGdAddLo12Nc,
    // Mach-O kinds with no ELF counterpart in this enum (decoded by `macho.rs`; the raw
    // `r_type` is the Mach-O one, named by [`RelocKind::macho_name`]). The Mach-O types
    // that mean what an ELF kind means decode to that kind: `X86_64_RELOC_SIGNED*` to
    // `Pc32`, `BRANCH` to `Plt32`, `GOT_LOAD` to `RexGotPcRelX`, `GOT` and
    // `ARM64_RELOC_POINTER_TO_GOT` to `GotPcRel`, `UNSIGNED` to `Abs64`/`Abs32`.
    /// The minus half of a Mach-O `SUBTRACTOR` pair: the next relocation, at the same
    /// offset, is the plus half (`Abs64`/`Abs32` of symbol `A` with addend `c`), and the
    /// field holds `A + c - S` of this relocation's symbol.
    Subtractor,
    /// `X86_64_RELOC_TLV` (`movq _x@TLVP(%rip), %rdi`): PC-relative (`S + A - P`) address of
    /// a pointer to the thread-local variable's descriptor; the linker may turn the `movq`
    /// into `leaq` of the descriptor itself.
    Tlvp,
    /// `ARM64_RELOC_BRANCH26`: `B`/`BL` imm26, `(S + A - P) >> 2`, ±128 MiB.
    Arm64Branch26,
    /// `ARM64_RELOC_PAGE21`: `ADRP` of the 4 KiB page of `S + A`.
    Arm64Page21,
    /// `ARM64_RELOC_PAGEOFF12`: the low 12 bits of `S + A` in an `ADD` or a load/store,
    /// scaled by the access size the instruction itself encodes (Mach-O has one type for
    /// all sizes; ELF has one per size).
    Arm64PageOff12,
    /// `ARM64_RELOC_GOT_LOAD_PAGE21` / `GOT_LOAD_PAGEOFF12`: `ADRP` + `LDR` of `S`'s GOT
    /// slot (the `LDR` may be relaxed to an `ADD` of `S` itself).
    Arm64GotPage21,
    Arm64GotPageOff12,
    /// `ARM64_RELOC_TLVP_LOAD_PAGE21` / `TLVP_LOAD_PAGEOFF12`: `ADRP` + `LDR` of the
    /// thread-local variable pointer of `S` (relaxable to `ADD` of the descriptor).
    Arm64TlvpPage21,
    Arm64TlvpPageOff12,
    /// A type hot-link does not handle; the raw type is in [`crate::Reloc::raw_type`].
    Unknown,
}

impl RelocKind {
    /// Decode an x86-64 `r_type`.
    pub fn from_x86_64(r_type: u32) -> RelocKind {
        use object::elf::*;
        match RelocationType(r_type) {
            R_X86_64_NONE => RelocKind::None,
            R_X86_64_64 => RelocKind::Abs64,
            R_X86_64_32 => RelocKind::Abs32,
            R_X86_64_32S => RelocKind::Abs32S,
            R_X86_64_16 => RelocKind::Abs16,
            R_X86_64_8 => RelocKind::Abs8,
            R_X86_64_PC32 => RelocKind::Pc32,
            R_X86_64_PC64 => RelocKind::Pc64,
            R_X86_64_PC16 => RelocKind::Pc16,
            R_X86_64_PC8 => RelocKind::Pc8,
            R_X86_64_PLT32 => RelocKind::Plt32,
            R_X86_64_GOTPCREL => RelocKind::GotPcRel,
            R_X86_64_GOTPCRELX => RelocKind::GotPcRelX,
            R_X86_64_REX_GOTPCRELX => RelocKind::RexGotPcRelX,
            R_X86_64_GOTPCREL64 => RelocKind::GotPcRel64,
            R_X86_64_GOTPC32 => RelocKind::GotPc32,
            R_X86_64_GOTPC64 => RelocKind::GotPc64,
            R_X86_64_GOTOFF64 => RelocKind::GotOff64,
            R_X86_64_GOT32 => RelocKind::Got32,
            R_X86_64_GOT64 => RelocKind::Got64,
            R_X86_64_TPOFF32 => RelocKind::TpOff32,
            R_X86_64_TPOFF64 => RelocKind::TpOff64,
            R_X86_64_GOTTPOFF => RelocKind::GotTpOff,
            R_X86_64_TLSGD => RelocKind::TlsGd,
            R_X86_64_TLSLD => RelocKind::TlsLd,
            R_X86_64_DTPOFF32 => RelocKind::DtpOff32,
            R_X86_64_DTPOFF64 => RelocKind::DtpOff64,
            R_X86_64_GOTPC32_TLSDESC => RelocKind::GotPc32TlsDesc,
            R_X86_64_TLSDESC_CALL => RelocKind::TlsDescCall,
            R_X86_64_SIZE32 => RelocKind::Size32,
            R_X86_64_SIZE64 => RelocKind::Size64,
            _ => RelocKind::Unknown,
        }
    }

    /// Decode an aarch64 `r_type`. The data relocations that share a meaning with an
    /// x86-64 kind decode to it (`R_AARCH64_ABS64` is [`RelocKind::Abs64`]); the rest the
    /// linker knows have kinds of their own; anything else is [`RelocKind::Unknown`] with
    /// the raw type kept in [`crate::Reloc::raw_type`].
    pub fn from_aarch64(r_type: u32) -> RelocKind {
        use object::elf::*;
        match RelocationType(r_type) {
            R_AARCH64_NONE => RelocKind::None,
            R_AARCH64_ABS64 => RelocKind::Abs64,
            R_AARCH64_ABS32 => RelocKind::Abs32,
            R_AARCH64_ABS16 => RelocKind::Abs16,
            R_AARCH64_PREL64 => RelocKind::Pc64,
            R_AARCH64_PREL32 => RelocKind::Pc32,
            R_AARCH64_PREL16 => RelocKind::Pc16,
            R_AARCH64_CALL26 => RelocKind::Call26,
            R_AARCH64_JUMP26 => RelocKind::Jump26,
            R_AARCH64_CONDBR19 => RelocKind::CondBr19,
            R_AARCH64_TSTBR14 => RelocKind::TstBr14,
            R_AARCH64_LD_PREL_LO19 => RelocKind::LdPrelLo19,
            R_AARCH64_ADR_PREL_LO21 => RelocKind::AdrPrelLo21,
            R_AARCH64_ADR_PREL_PG_HI21 => RelocKind::AdrPrelPgHi21,
            R_AARCH64_ADR_PREL_PG_HI21_NC => RelocKind::AdrPrelPgHi21Nc,
            R_AARCH64_ADD_ABS_LO12_NC => RelocKind::AddAbsLo12Nc,
            R_AARCH64_LDST8_ABS_LO12_NC => RelocKind::Ldst8AbsLo12Nc,
            R_AARCH64_LDST16_ABS_LO12_NC => RelocKind::Ldst16AbsLo12Nc,
            R_AARCH64_LDST32_ABS_LO12_NC => RelocKind::Ldst32AbsLo12Nc,
            R_AARCH64_LDST64_ABS_LO12_NC => RelocKind::Ldst64AbsLo12Nc,
            R_AARCH64_LDST128_ABS_LO12_NC => RelocKind::Ldst128AbsLo12Nc,
            R_AARCH64_ADR_GOT_PAGE => RelocKind::AdrGotPage,
            R_AARCH64_LD64_GOT_LO12_NC => RelocKind::Ld64GotLo12Nc,
            R_AARCH64_MOVW_UABS_G0 => RelocKind::MovwUabsG0,
            R_AARCH64_MOVW_UABS_G0_NC => RelocKind::MovwUabsG0Nc,
            R_AARCH64_MOVW_UABS_G1 => RelocKind::MovwUabsG1,
            R_AARCH64_MOVW_UABS_G1_NC => RelocKind::MovwUabsG1Nc,
            R_AARCH64_MOVW_UABS_G2 => RelocKind::MovwUabsG2,
            R_AARCH64_MOVW_UABS_G2_NC => RelocKind::MovwUabsG2Nc,
            R_AARCH64_MOVW_UABS_G3 => RelocKind::MovwUabsG3,
            R_AARCH64_TLSLE_ADD_TPREL_HI12 => RelocKind::TlsLeAddTprelHi12,
            R_AARCH64_TLSLE_ADD_TPREL_LO12 => RelocKind::TlsLeAddTprelLo12,
            R_AARCH64_TLSLE_ADD_TPREL_LO12_NC => RelocKind::TlsLeAddTprelLo12Nc,
            R_AARCH64_TLSIE_ADR_GOTTPREL_PAGE21 => RelocKind::TlsIeAdrGottprelPage21,
            R_AARCH64_TLSIE_LD64_GOTTPREL_LO12_NC => RelocKind::TlsIeLd64GottprelLo12Nc,
            R_AARCH64_TLSDESC_ADR_PAGE21 => RelocKind::TlsDescAdrPage21,
            R_AARCH64_TLSDESC_LD64_LO12 => RelocKind::TlsDescLd64Lo12,
            R_AARCH64_TLSDESC_ADD_LO12 => RelocKind::TlsDescAddLo12,
            R_AARCH64_TLSDESC_CALL => RelocKind::TlsDescCall,
            R_AARCH64_TLSGD_ADR_PAGE21 => RelocKind::TlsGdAdrPage21,
            R_AARCH64_TLSGD_ADD_LO12_NC => RelocKind::TlsGdAddLo12Nc,
            _ => RelocKind::Unknown,
        }
    }

    /// The ELF name of an aarch64 `r_type`, for diagnostics.
    pub fn aarch64_name(r_type: u32) -> String {
        match object::elf::NAMES_R_AARCH64.name(object::elf::RelocationType(r_type)) {
            Some(name) => name.to_string(),
            None => format!("R_AARCH64 type {r_type}"),
        }
    }

    /// The ELF name of a raw relocation type of `machine`, for diagnostics.
    pub fn raw_name(machine: crate::Machine, r_type: u32) -> String {
        match machine {
            crate::Machine::X86_64 => RelocKind::x86_64_name(r_type),
            crate::Machine::Aarch64 => RelocKind::aarch64_name(r_type),
        }
    }

    /// The Mach-O name of a raw relocation type of `machine` (`X86_64_RELOC_SIGNED_1`,
    /// `ARM64_RELOC_PAGE21`), for diagnostics about Mach-O objects.
    pub fn macho_name(machine: crate::Machine, r_type: u32) -> String {
        let Ok(raw) = u8::try_from(r_type) else {
            return format!("Mach-O relocation type {r_type}");
        };
        let names = match machine {
            crate::Machine::X86_64 => &object::macho::NAMES_X86_64_RELOC,
            crate::Machine::Aarch64 => &object::macho::NAMES_ARM64_RELOC,
        };
        match names.name(object::macho::RelocationType(raw)) {
            Some(name) => name.to_string(),
            None => format!("Mach-O relocation type {r_type}"),
        }
    }

    /// The ELF name of an x86-64 `r_type`, for diagnostics.
    pub fn x86_64_name(r_type: u32) -> String {
        match object::elf::NAMES_R_X86_64.name(object::elf::RelocationType(r_type)) {
            Some(name) => name.to_string(),
            None => format!("R_X86_64 type {r_type}"),
        }
    }
}
