//! Mach-O relocation application (x86-64 and arm64): the bytes of a Mach-O object's atoms at
//! given addresses, with the GOT, stubs and thread-local variable pointers the caller chose.
//!
//! This is the relocation engine of Mach-O linking, pure like the rest of the crate; the
//! caller ([`MachOPlacement`]) decides where every atom goes and which image slots and stubs
//! a reference uses. The formulas and relaxations are those of `ld64.lld` (LLVM 14), and the
//! differential tests (`tests/macho_differential.rs`) compare the output byte for byte with
//! it.
//!
//! Relocations arrive in hot-object's ELF-like model (`value = S + A - P`; see
//! `hot_object`'s `macho.rs` for the decoding), so the x86-64 formulas are the ELF ones:
//! - `UNSIGNED` (`Abs64`/`Abs32`): `S + A`; after a [`RelocKind::Subtractor`] at the same
//!   offset, `S + A - S_minus` (a signed 32-bit difference in an `Abs32` field). In
//!   `__thread_vars` (a descriptor's third word), a reference to thread-local initial data
//!   stores its offset from the start of the thread-local template instead, as dyld expects.
//! - `SIGNED*` (`Pc32`): `S + A - P`. `BRANCH` (`Plt32`): the same through the symbol's stub
//!   when it has one (an import).
//! - `GOT_LOAD` (`RexGotPcRelX`): `GOT(S) + A - P` when the symbol has a slot, else the
//!   `movq` is relaxed to `leaq` of `S` (lld relaxes every GOT load of a symbol it does not
//!   bind); `GOT` (`GotPcRel`): always the slot.
//! - `TLV` (`Tlvp`): the symbol's thread-local variable pointer (`__thread_ptrs`) when it
//!   has one, else `movq` relaxed to `leaq` of the descriptor itself.
//!
//! arm64 (`BRANCH26`, `PAGE21`, `PAGEOFF12`, their `GOT_LOAD`/`TLVP_LOAD` forms,
//! `POINTER_TO_GOT`): `ADRP` gets the page delta `page(S + A) - page(P)` (±4 GiB), a
//! `PAGEOFF12` the low 12 bits scaled by the access size its instruction encodes (`ADD`: 1;
//! loads/stores: their size, 16 for a 128-bit `LDR q`), `B`/`BL` the word delta (±128 MiB),
//! and a `GOT_LOAD_PAGEOFF12`/`TLVP_LOAD_PAGEOFF12` `LDR` of a symbol with no slot is relaxed
//! to `ADD` (its `ADRP` then takes the symbol's page). The encoders are private to this
//! module for now; the ELF aarch64 linker has its own in `aarch64.rs`.

use hot_object::{AtomId, AtomKind, Object, RelocKind, SymbolDef, SymbolId};
use rustc_hash::FxHashMap;

use crate::x86_64::{store, Field};

/// Where the atoms of a Mach-O object go and what their references resolve to. Names are
/// Mach-O symbol names (`_foo`), as in the object.
#[derive(Clone, Debug, Default)]
pub struct MachOPlacement {
    /// The address of each atom to relocate (only these are written).
    pub atoms: FxHashMap<AtomId, u64>,
    /// Addresses of symbols not defined by a placed atom: the image's definitions and
    /// imports (a library function's own address, not its stub).
    pub symbols: FxHashMap<String, u64>,
    /// The GOT slot (an 8-byte pointer holding the symbol's address) of each symbol that has
    /// one. A `GOT_LOAD` of a symbol without a slot is relaxed to an address computation.
    pub got: FxHashMap<String, u64>,
    /// The stub calls go through, for symbols that have one (imports).
    pub stubs: FxHashMap<String, u64>,
    /// The thread-local variable pointer (`__thread_ptrs` slot) of each thread-local
    /// variable that has one; without it a TLV load is relaxed to the descriptor's address.
    pub tlv_pointers: FxHashMap<String, u64>,
    /// Start of the thread-local template (the first `__thread_data`/`__thread_bss`
    /// byte): descriptors store their variable's offset from it.
    pub tlv_template: Option<u64>,
    /// Stable entries of the object's functions: a reference that designates a function's
    /// first byte (a call, `&f`, a GOT load of `f`) resolves here rather than to the atom,
    /// so function pointers stay comparable and later swaps redirect every caller. A
    /// reference into the middle of the function (`f + 8`) still reaches its atom.
    pub entries: FxHashMap<SymbolId, u64>,
    /// Addresses of object symbols whose atoms are not placed but bound elsewhere: a
    /// variable that already exists in the image, an unchanged function's old body. Checked
    /// after [`MachOPlacement::entries`] and before the atoms.
    pub fixed: FxHashMap<SymbolId, u64>,
}

impl MachOPlacement {
    /// The image's own slots and symbols, for a module loaded `slide` bytes from its link-time
    /// addresses: its defined symbols (a global before a local of the same name), its `__got`
    /// slots, stubs and `__thread_ptrs`, and the start of its thread-local template. A
    /// reference to a symbol the image already imports then goes through the image's stub
    /// and GOT slot, as the image's own code does. Atoms are left to the caller.
    pub fn with_image(image: &hot_object::LinkedImage, slide: u64) -> MachOPlacement {
        let mut placement = MachOPlacement::default();
        let mut symbols: Vec<&hot_object::ImageSymbol> =
            image.symbols.iter().filter(|s| s.defined).collect();
        // Globals last, so that they win over a local of the same name.
        symbols.sort_by_key(|s| s.binding != hot_object::Binding::Local);
        for s in symbols {
            placement.symbols.insert(s.name.clone(), s.vaddr + slide);
        }
        for slot in &image.got_slots {
            let map = match slot.kind {
                hot_object::GotSlotKind::GlobDat => &mut placement.got,
                hot_object::GotSlotKind::ThreadLocalPointer => &mut placement.tlv_pointers,
                _ => continue,
            };
            map.entry(slot.symbol.clone()).or_insert(slot.vaddr + slide);
        }
        for (name, addr) in &image.plt_entries {
            placement.stubs.entry(name.clone()).or_insert(addr + slide);
        }
        placement.tlv_template = image.tls.map(|t| t.vaddr + slide);
        placement
    }
}

/// A relocation hot-link could not apply, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{section} {symbol}+{offset:#x}: {reloc} against {target}: {message}")]
pub struct MachOError {
    /// The atom's section, e.g. `__TEXT,__text`.
    pub section: String,
    /// The atom's primary symbol (or `?`).
    pub symbol: String,
    pub offset: u64,
    /// The Mach-O relocation type, e.g. `X86_64_RELOC_GOT`.
    pub reloc: String,
    pub target: String,
    pub message: String,
}

/// One relocated atom: (atom, address, bytes).
pub type RelocatedAtom = (AtomId, u64, Vec<u8>);

/// The bytes of every placed atom, relocated: (atom, address, bytes), in atom order. Zero-fill
/// atoms are skipped (nothing to write). All errors are returned, not just the first.
pub fn relocate(
    object: &Object,
    placement: &MachOPlacement,
) -> Result<Vec<RelocatedAtom>, Vec<MachOError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut ids: Vec<AtomId> = placement.atoms.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let Some(atom) = object.atoms.get(id.0 as usize) else {
            continue;
        };
        if matches!(atom.kind, AtomKind::Bss | AtomKind::TlsBss) {
            continue;
        }
        let base = placement.atoms[&id];
        let mut bytes = atom.bytes.to_vec();
        let mut minus: Option<(u64, u64)> = None;
        for reloc in &atom.relocs {
            let err = |message: String| MachOError {
                section: atom.section_name.to_string(),
                symbol: object
                    .primary_symbol(id)
                    .map_or("?".into(), |s| object.symbol(s).name.to_string()),
                offset: reloc.offset.0,
                reloc: object.reloc_type_name(reloc.raw_type),
                target: object.symbol_name(reloc.symbol).to_string(),
                message,
            };
            let pc = base + reloc.offset.0;
            let result = apply(object, placement, id, reloc, pc, &mut bytes, &mut minus);
            if let Err(message) = result {
                errors.push(err(message));
            }
        }
        out.push((id, base, bytes));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Whether a relocation designates the first byte of its symbol (not an interior address):
/// with hot-object's `value = S + A - P`, an x86-64 PC-relative field designates
/// `S + A + 4 + k` (`k` = 1, 2, 4 for `SIGNED_1/2/4`, the immediate bytes after it), any
/// other field `S + A`.
pub(crate) fn designates_start(object: &Object, reloc: &hot_object::Reloc) -> bool {
    use hot_object::Machine;
    match reloc.kind {
        RelocKind::Plt32 | RelocKind::Arm64Branch26 => true,
        RelocKind::Pc32 | RelocKind::RexGotPcRelX | RelocKind::GotPcRel | RelocKind::Tlvp
            if object.machine == Machine::X86_64 =>
        {
            // X86_64_RELOC_SIGNED_1 = 6, SIGNED_2 = 7, SIGNED_4 = 8.
            let k = match reloc.raw_type {
                6 => 1,
                7 => 2,
                8 => 4,
                _ => 0,
            };
            reloc.addend == -4 - k
        }
        _ => reloc.addend == 0,
    }
}

/// The address `S` a relocation uses for its symbol: the symbol's stable entry when the
/// relocation designates its first byte, else its bound or placed address.
pub(crate) fn target_of(
    object: &Object,
    placement: &MachOPlacement,
    reloc: &hot_object::Reloc,
) -> Option<u64> {
    if let Some(&entry) = placement.entries.get(&reloc.symbol) {
        if designates_start(object, reloc) {
            return Some(entry);
        }
    }
    address_of(object, placement, reloc.symbol)
}

/// The address `S` of a symbol: its bound address, its placed atom plus offset, or the
/// caller's address for its name.
fn address_of(object: &Object, placement: &MachOPlacement, symbol: SymbolId) -> Option<u64> {
    let sym = object.symbols.get(symbol.0 as usize)?;
    if let Some(&addr) = placement.fixed.get(&symbol) {
        return Some(addr);
    }
    if let SymbolDef::Atom { atom, offset } = sym.def {
        if let Some(&base) = placement.atoms.get(&atom) {
            return base.checked_add(offset.0);
        }
    }
    if let SymbolDef::Absolute(v) = sym.def {
        return Some(v);
    }
    placement.symbols.get(sym.name.as_str()).copied()
}

fn apply(
    object: &Object,
    placement: &MachOPlacement,
    atom: AtomId,
    reloc: &hot_object::Reloc,
    pc: u64,
    bytes: &mut [u8],
    minus: &mut Option<(u64, u64)>,
) -> Result<(), String> {
    let name = &object.symbol(reloc.symbol).name;
    let off = reloc.offset.0 as usize;
    let s = || {
        target_of(object, placement, reloc)
            .map(|v| v as i128)
            .ok_or_else(|| "undefined symbol (no address for it)".to_string())
    };
    let slot = |map: &FxHashMap<String, u64>, what: &str| {
        map.get(name.as_str())
            .map(|&v| v as i128)
            .ok_or_else(|| format!("no {what} for the symbol"))
    };
    let a = reloc.addend as i128;
    let p = pc as i128;
    let put = |bytes: &mut [u8], field: Field, value: i128| {
        store(bytes, off, field, value).map_err(|e| e.to_string())
    };
    match reloc.kind {
        RelocKind::Subtractor => {
            let b = address_of(object, placement, reloc.symbol)
                .ok_or_else(|| "undefined symbol (no address for it)".to_string())?;
            *minus = Some((reloc.offset.0, b));
            Ok(())
        }
        RelocKind::Abs64 | RelocKind::Abs32 => {
            let pair = minus.take().filter(|&(o, _)| o == reloc.offset.0);
            let mut value = a + match pair {
                // A difference of two addresses: both are where the bytes are, never an
                // entry (`_f - _g` measures code).
                Some(_) => address_of(object, placement, reloc.symbol)
                    .map(|v| v as i128)
                    .ok_or_else(|| "undefined symbol (no address for it)".to_string())?,
                None => s()?,
            };
            if let Some((_, b)) = pair {
                value -= b as i128;
            } else if object.atom(atom).section_name.ends_with(",__thread_vars")
                && is_tls_template(object, reloc.symbol)
            {
                let start = placement
                    .tlv_template
                    .ok_or("no thread-local template start for a descriptor")?;
                value -= start as i128;
            }
            let field = match (reloc.kind, pair.is_some()) {
                (RelocKind::Abs64, _) => Field::Word64,
                (_, true) => Field::Signed32,
                _ => Field::Unsigned32,
            };
            put(bytes, field, value)
        }
        RelocKind::Pc32 => put(bytes, Field::Signed32, s()? + a - p),
        RelocKind::Plt32 => {
            let target = match placement.stubs.get(name.as_str()) {
                Some(&stub) => stub as i128,
                None => s()?,
            };
            put(bytes, Field::Signed32, target + a - p)
        }
        // x86-64 `GOT` (its -4 is in A) and arm64 `POINTER_TO_GOT` (no PC bias).
        RelocKind::GotPcRel => put(
            bytes,
            Field::Signed32,
            slot(&placement.got, "GOT slot")? + a - p,
        ),
        RelocKind::RexGotPcRelX | RelocKind::Tlvp => {
            let map = if reloc.kind == RelocKind::Tlvp {
                &placement.tlv_pointers
            } else {
                &placement.got
            };
            match map.get(name.as_str()) {
                Some(&slot) => put(bytes, Field::Signed32, slot as i128 + a - p),
                None => {
                    // lld's relaxGotLoad: `movq sym@GOTPCREL(%rip)` -> `leaq sym(%rip)`.
                    match off.checked_sub(2).and_then(|i| bytes.get_mut(i)) {
                        Some(op) if *op == 0x8b => *op = 0x8d,
                        _ => return Err("a GOT/TLV load to relax is not `movq`".into()),
                    }
                    put(bytes, Field::Signed32, s()? + a - p)
                }
            }
        }
        RelocKind::Arm64Branch26 => {
            let target = match placement.stubs.get(name.as_str()) {
                Some(&stub) => stub as i128,
                None => s()?,
            };
            let delta = target + a - p;
            if delta % 4 != 0 || !(-(1i128 << 27)..(1i128 << 27)).contains(&delta) {
                return Err(format!(
                    "branch displacement {delta:#x} is not a multiple of 4 within ±128 MiB"
                ));
            }
            patch32(bytes, off, |insn| {
                (insn & 0xfc00_0000) | ((delta >> 2) as u32 & 0x03ff_ffff)
            })
        }
        RelocKind::Arm64Page21 | RelocKind::Arm64GotPage21 | RelocKind::Arm64TlvpPage21 => {
            let target = match arm64_slot(placement, reloc.kind, name) {
                Some(slot) => slot as i128,
                None => s()? + a,
            };
            let delta = (target >> 12) - (p >> 12);
            if !(-(1i128 << 20)..(1i128 << 20)).contains(&delta) {
                return Err(format!("page delta {delta:#x} beyond ±4 GiB"));
            }
            let d = delta as u32;
            patch32(bytes, off, |insn| {
                (insn & 0x9f00_001f) | ((d & 3) << 29) | (((d >> 2) & 0x7ffff) << 5)
            })
        }
        RelocKind::Arm64PageOff12
        | RelocKind::Arm64GotPageOff12
        | RelocKind::Arm64TlvpPageOff12 => {
            let target = match arm64_slot(placement, reloc.kind, name) {
                Some(slot) => slot as i128,
                None => {
                    if reloc.kind != RelocKind::Arm64PageOff12 {
                        relax_ldr_to_add(bytes, off)?;
                    }
                    s()? + a
                }
            };
            let value = target as u64;
            let insn = read32(bytes, off)?;
            let scale = pageoff_scale(insn);
            if value & ((1 << scale) - 1) & 0xfff != 0 {
                return Err(format!(
                    "address {value:#x} is not aligned to the {}-byte access of its instruction",
                    1u32 << scale
                ));
            }
            let imm = ((value & 0xfff) >> scale) as u32;
            patch32(bytes, off, |insn| insn | (imm << 10))
        }
        other => Err(format!(
            "{other:?} is not a Mach-O relocation hot-link applies"
        )),
    }
}

/// Whether `symbol` is thread-local initial data (`_x$tlv$init` in `__thread_data` /
/// `__thread_bss`), which a descriptor refers to by offset.
fn is_tls_template(object: &Object, symbol: SymbolId) -> bool {
    match object.symbol(symbol).def {
        SymbolDef::Atom { atom, .. } => object.atom(atom).kind.is_tls(),
        _ => false,
    }
}

fn arm64_slot(placement: &MachOPlacement, kind: RelocKind, name: &str) -> Option<u64> {
    match kind {
        RelocKind::Arm64GotPage21 | RelocKind::Arm64GotPageOff12 => placement.got.get(name),
        RelocKind::Arm64TlvpPage21 | RelocKind::Arm64TlvpPageOff12 => {
            placement.tlv_pointers.get(name)
        }
        _ => None,
    }
    .copied()
}

fn read32(bytes: &[u8], off: usize) -> Result<u32, String> {
    bytes
        .get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "the relocated instruction lies outside its atom".to_string())
}

fn patch32(bytes: &mut [u8], off: usize, f: impl FnOnce(u32) -> u32) -> Result<(), String> {
    let insn = read32(bytes, off)?;
    bytes[off..off + 4].copy_from_slice(&f(insn).to_le_bytes());
    Ok(())
}

/// log2 of the access size a `PAGEOFF12` instruction scales its immediate by (lld's
/// `encodePageOff12`): loads and stores by their size (`size` bits 30-31; 128-bit `q` forms
/// by 16), `ADD` by 1.
fn pageoff_scale(insn: u32) -> u32 {
    if insn & 0x3b00_0000 == 0x3900_0000 {
        let scale = insn >> 30;
        if scale == 0 && insn & 0x0480_0000 == 0x0480_0000 {
            return 4;
        }
        return scale;
    }
    0
}

/// lld's arm64 `relaxGotLoad`: `LDR Xt, [Xn, #0]` becomes `ADD Xt, Xn, #0`.
fn relax_ldr_to_add(bytes: &mut [u8], off: usize) -> Result<(), String> {
    let insn = read32(bytes, off)?;
    if insn & 0xbfc0_0000 != 0xb940_0000 || (insn >> 10) & 0xfff != 0 {
        return Err(format!(
            "a GOT/TLV load to relax is not `ldr` with a zero offset (found {insn:#010x})"
        ));
    }
    patch32(bytes, off, |insn| (insn & 0x001f_ffff) | 0x9100_0000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macho_arm64_pageoff_scales_by_access_size() {
        assert_eq!(pageoff_scale(0x9100_0000), 0); // add x0, x0, #0
        assert_eq!(pageoff_scale(0xb940_0000), 2); // ldr w0, [x0]
        assert_eq!(pageoff_scale(0xf940_0000), 3); // ldr x0, [x0]
        assert_eq!(pageoff_scale(0x3900_0000), 0); // strb
        assert_eq!(pageoff_scale(0x7900_0000), 1); // strh
        assert_eq!(pageoff_scale(0x3dc0_0000), 4); // ldr q0, [x0]
        let mut b = 0xf940_0108u32.to_le_bytes(); // ldr x8, [x8]
        relax_ldr_to_add(&mut b, 0).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0x9100_0108); // add x8, x8, #0
        let mut b = 0x9100_0108u32.to_le_bytes();
        assert!(relax_ldr_to_add(&mut b, 0).is_err());
    }
}
