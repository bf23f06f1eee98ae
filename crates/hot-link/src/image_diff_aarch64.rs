//! Knowing what changed without a baseline, on aarch64: a function of the new object equals
//! the image's code at its stable entry when every word is equal outside relocated fields
//! and every relocated field designates, in the image, what hot-link would bind the
//! relocation to (see `image_diff.rs` for x86-64, where gas's variable-length jumps make
//! the pairing of instructions the hard part; here word `i` pairs with word `i`).
//!
//! What a field designates is read back from the image's instruction: a branch target (or
//! the target of ld's veneer or PLT entry there), an `adrp` page completed by the `add` or
//! load/store of the same register, a GOT slot (of the symbol, or holding its address), a
//! `movz`/`movk` group. Strings and constants the object copies fresh (anonymous read-only
//! data without relocations) are compared by contents at the address the image uses, since
//! ld merges them. TLS fields must hold ld's relaxation with the executable's offsets.
//! Anything else (a `.cold` part, a literal pool, anonymous data with relocations, a
//! library IFUNC) counts as changed: the worst case is that every function of the file is
//! swapped, which is what happens without this comparison.

use hot_object::{AtomId, AtomKind, Binding, Reloc, RelocKind};

use crate::aarch64 as a64;
use crate::image::Vaddr;
use crate::link::Link;
use crate::resolve::{lookup_external, AtomRole, External, StableEntry, TargetClass};
use crate::RuntimeAddr;

/// What a relocation should designate in the running image.
enum Want {
    /// This runtime address.
    Addr(u64),
    /// A library function: its PLT entry in the executable (for a call), else its address.
    Lib { plt: Option<u64>, addr: u64 },
    /// A call to an undefined weak function: ld writes `nop`.
    WeakNop,
    /// Bytes the object copies fresh (`len` bytes of anonymous read-only `atom` from
    /// `start`): equal contents at the image's address, pointers in them designating the
    /// same things.
    Placed {
        atom: AtomId,
        start: usize,
        len: usize,
    },
}

/// How many ranges of copied read-only data one comparison follows pointers into.
const MAX_PLACED: usize = 256;

const IMM26: u32 = 0x03ff_ffff;
const IMM19: u32 = 0x7ffff << 5;
const IMM14: u32 = 0x3fff << 5;
const ADR_IMM: u32 = (3 << 29) | (0x7ffff << 5);
const IMM12: u32 = 0xfff << 10;
const IMM16: u32 = 0xffff << 5;

impl Link<'_> {
    /// Whether function `atom`, whose stable entry is the image's `entry` (`size` bytes), is
    /// what the image runs there.
    pub(crate) fn unchanged_in_image_aarch64(
        &self,
        atom: AtomId,
        entry: RuntimeAddr,
        size: u64,
    ) -> bool {
        if self.alloc.redirect(entry).is_some() {
            return false;
        }
        let AtomRole::Function { offset: 0, .. } = *self.info.role(atom) else {
            return false;
        };
        let a = self.info.obj.atom(atom);
        if a.size != size || a.bytes.len() as u64 != size || !size.is_multiple_of(4) {
            return false;
        }
        let exe = &self.model.exe;
        let Some(img) = exe
            .image
            .bytes_at(entry.0.wrapping_sub(exe.bias), size as usize)
        else {
            return false;
        };
        // The page each register holds after an `adrp` of the image's code.
        let mut pages: [Option<u64>; 32] = [None; 32];
        let mut consumed_until = 0u64;
        for i in 0..(size / 4) as usize {
            let off = 4 * i as u64;
            let (Ok(new), Ok(old)) = (a64::read(&a.bytes, 4 * i), a64::read(img, 4 * i)) else {
                return false;
            };
            if off < consumed_until {
                // Rewritten by the TLS relaxation before it, and compared there.
                continue;
            }
            let p = entry.0 + off;
            let mut relocs = a.relocs.iter().filter(|r| r.offset.0 == off);
            let Some(reloc) = relocs.next() else {
                if new != old {
                    return false;
                }
                // An unrelocated instruction that writes a register ends its `adrp` page.
                pages[(old & 0x1f) as usize] = None;
                continue;
            };
            if relocs.next().is_some() {
                return false;
            }
            match self.word_matches(atom, reloc, new, old, p, img, off, &mut pages) {
                Some(until) => consumed_until = until,
                None => return false,
            }
        }
        true
    }

    /// Whether the image's word `old` at `p` is what `reloc` on the new word `new` becomes;
    /// `Some(end of the bytes it covers beyond its word, or 0)` when it is.
    #[allow(clippy::too_many_arguments)]
    fn word_matches(
        &self,
        atom: AtomId,
        reloc: &Reloc,
        new: u32,
        old: u32,
        p: u64,
        img: &[u8],
        off: u64,
        pages: &mut [Option<u64>; 32],
    ) -> Option<u64> {
        use RelocKind::*;
        let same_outside = |mask: u32| (new & !mask) == (old & !mask);
        let class = self.info.classify(atom, reloc);
        let rd = (old & 0x1f) as usize;
        let rn = ((old >> 5) & 0x1f) as usize;
        let a = reloc.addend;
        match reloc.kind {
            Call26 | Jump26 => {
                let want = self.want(class, reloc)?;
                if let Want::WeakNop = want {
                    return (old == a64::NOP).then_some(0);
                }
                if !same_outside(IMM26) {
                    return Option::None;
                }
                let target = p.wrapping_add(a64::imm26(old) as u64);
                let reaches = |want: u64| {
                    target == want
                        || self
                            .image_bytes(target, 24)
                            .is_some_and(|stub| a64::veneer_target(stub, target) == Some(want))
                };
                let ok = match want {
                    Want::Addr(w) => reaches(w.wrapping_add_signed(a)),
                    Want::Lib { plt, .. } => plt.is_some_and(reaches),
                    _ => false,
                };
                ok.then_some(0)
            }
            CondBr19 | TstBr14 | AdrPrelLo21 | LdPrelLo19 => {
                let (mask, target) = match reloc.kind {
                    TstBr14 => (IMM14, p.wrapping_add(a64::imm14(old) as u64)),
                    AdrPrelLo21 => (ADR_IMM, p.wrapping_add(a64::adr_imm(old) as u64)),
                    _ => (IMM19, p.wrapping_add(a64::imm19(old) as u64)),
                };
                if !same_outside(mask) {
                    return Option::None;
                }
                pages[rd] = Option::None;
                self.designates(class, reloc, target).then_some(0)
            }
            AdrPrelPgHi21 | AdrPrelPgHi21Nc | AdrGotPage => {
                if !same_outside(ADR_IMM) {
                    return Option::None;
                }
                let page = a64::adrp_target(old, p);
                pages[rd] = Some(page);
                if reloc.kind != AdrGotPage {
                    // The full address is checked with the `add` or load/store that
                    // completes it; a page of a known address must already agree.
                    if let Some(Want::Addr(w)) = self.want(class, reloc) {
                        if a64::page(w.wrapping_add_signed(a)) != page {
                            return Option::None;
                        }
                    }
                }
                Some(0)
            }
            AddAbsLo12Nc | Ldst8AbsLo12Nc | Ldst16AbsLo12Nc | Ldst32AbsLo12Nc | Ldst64AbsLo12Nc
            | Ldst128AbsLo12Nc => {
                if !same_outside(IMM12) {
                    return Option::None;
                }
                let scale = match reloc.kind {
                    AddAbsLo12Nc => 0,
                    Ldst8AbsLo12Nc => 0,
                    Ldst16AbsLo12Nc => 1,
                    Ldst32AbsLo12Nc => 2,
                    Ldst64AbsLo12Nc => 3,
                    _ => 4,
                };
                let addr = pages[rn]? + (u64::from(a64::imm12(old)) << scale);
                pages[rd] = Option::None;
                self.designates(class, reloc, addr).then_some(0)
            }
            Ld64GotLo12Nc => {
                if !same_outside(IMM12) || a != 0 {
                    return Option::None;
                }
                let slot = pages[rn]? + u64::from(a64::imm12(old)) * 8;
                pages[rd] = Option::None;
                self.got_slot_designates(class, reloc, slot).then_some(0)
            }
            MovwUabsG0 | MovwUabsG0Nc | MovwUabsG1 | MovwUabsG1Nc | MovwUabsG2 | MovwUabsG2Nc
            | MovwUabsG3 => {
                if !same_outside(IMM16) {
                    return Option::None;
                }
                let group = match reloc.kind {
                    MovwUabsG0 | MovwUabsG0Nc => 0,
                    MovwUabsG1 | MovwUabsG1Nc => 1,
                    MovwUabsG2 | MovwUabsG2Nc => 2,
                    _ => 3,
                };
                let Want::Addr(w) = self.want(class, reloc)? else {
                    return Option::None;
                };
                let v = w.wrapping_add_signed(a);
                (u64::from(a64::imm16(old)) == (v >> (16 * group)) & 0xffff).then_some(0)
            }
            TlsLeAddTprelHi12 | TlsLeAddTprelLo12 | TlsLeAddTprelLo12Nc => {
                let t = self.tprel(class, reloc).ok()?.wrapping_add_signed(a);
                let shift = if reloc.kind == TlsLeAddTprelHi12 {
                    12
                } else {
                    0
                };
                (a64::set_add_imm12(new, t, shift).ok()? == old).then_some(0)
            }
            TlsIeAdrGottprelPage21
            | TlsIeLd64GottprelLo12Nc
            | TlsDescAdrPage21
            | TlsGdAdrPage21
            | TlsDescLd64Lo12 => {
                let t = self.tprel(class, reloc).ok()?.wrapping_add_signed(a);
                let expected = match reloc.kind {
                    TlsIeAdrGottprelPage21 => a64::relax_ie_adrp(new, t).ok()?,
                    TlsIeLd64GottprelLo12Nc => a64::relax_ie_ldr(new, t).ok()?,
                    TlsDescLd64Lo12 => a64::relax_desc_lo12(t),
                    _ => a64::relax_desc_adrp(new, t).ok()?,
                };
                pages[rd] = Option::None;
                (expected == old).then_some(0)
            }
            TlsDescAddLo12 | TlsDescCall => (old == a64::NOP).then_some(0),
            TlsGdAddLo12Nc => {
                let t = self.tprel(class, reloc).ok()?.wrapping_add_signed(a);
                let next = |k: usize| a64::read(img, off as usize + 4 * k).ok();
                let ok = old == a64::relax_desc_lo12(t)
                    && next(1) == Some(a64::MRS_X1_TPIDR_EL0)
                    && next(2) == Some(a64::ADD_X0_X1_X0);
                ok.then_some(off + 12)
            }
            // Data relocations in code (a literal pool), and anything else.
            _ => Option::None,
        }
    }

    /// What `reloc` should designate (without its addend), or `None` when that cannot be
    /// told without linking (a `.cold` part, a library IFUNC, an undefined symbol).
    fn want(&self, class: TargetClass, reloc: &Reloc) -> Option<Want> {
        let sym_offset = self.info.symbol_offset(reloc.symbol);
        match class {
            TargetClass::Entry { atom, delta } => match self.entries.get(&atom)? {
                StableEntry::Image(r) => {
                    let e = self.model.exe.runtime(Vaddr(r.get(self.model).vaddr));
                    Some(Want::Addr(e.0.wrapping_add_signed(-delta)))
                }
                StableEntry::Stub(s) => Some(Want::Addr(s.0.wrapping_add_signed(-delta))),
            },
            TargetClass::Bound { atom } => self
                .bound
                .get(&atom)
                .map(|b| Want::Addr(b.0.wrapping_add(sym_offset))),
            TargetClass::Placed { atom } => {
                let target = self.info.obj.atom(atom);
                if !matches!(self.info.role(atom), AtomRole::AnonReadOnly)
                    || target.kind == AtomKind::Text
                {
                    return None;
                }
                let start = sym_offset.checked_add_signed(reloc.addend)? as usize;
                let rest = target.bytes.get(start..)?;
                // ld merges strings and constants: compare what the reference means.
                let name = &target.section_name;
                let len = if name.starts_with(".rodata.str") {
                    rest.iter().position(|&b| b == 0)? + 1
                } else if let Some(n) = name
                    .strip_prefix(".rodata.cst")
                    .and_then(|n| n.split('.').next())
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    n
                } else {
                    rest.len()
                };
                (len <= rest.len()).then_some(Want::Placed { atom, start, len })
            }
            TargetClass::Absolute(v) => Some(Want::Addr(v)),
            TargetClass::Unsupported => None,
            TargetClass::External => {
                let name = self.info.symbol_name(reloc.symbol);
                let weak = self.info.obj.symbol(reloc.symbol).binding == Binding::Weak;
                match lookup_external(self.model, self.index, &self.alloc, &name, weak) {
                    External::ExeFunction(a)
                    | External::ExeData(a)
                    | External::NewFunction(a)
                    | External::NewVariable(a)
                    | External::LibData(a) => Some(Want::Addr(a.0)),
                    External::LibFunction { addr, .. } => Some(Want::Lib {
                        plt: self
                            .index
                            .exe_plt(&name)
                            .map(|v| self.model.exe.runtime(v).0),
                        addr: addr.0,
                    }),
                    External::WeakZero => Some(Want::WeakNop),
                    _ => None,
                }
            }
        }
    }

    /// Whether the image address `addr` (which the image's code computes) is what `reloc`
    /// designates.
    fn designates(&self, class: TargetClass, reloc: &Reloc, addr: u64) -> bool {
        match self.want(class, reloc) {
            Some(Want::Addr(w)) => addr == w.wrapping_add_signed(reloc.addend),
            Some(Want::Lib { plt, addr: a }) => {
                // `&lib_fn`: its PLT entry in a non-PIE (the canonical address), else itself.
                Some(addr) == plt.map(|p| p.wrapping_add_signed(reloc.addend))
                    || addr == a.wrapping_add_signed(reloc.addend)
            }
            Some(Want::Placed { atom, start, len }) => {
                self.placed_matches(atom, start, len, addr, &mut Vec::new())
            }
            _ => false,
        }
    }

    /// Whether the image holds at `addr` what `len` bytes of anonymous read-only `atom`
    /// from `start` mean: equal bytes outside relocated fields, and each pointer
    /// (`ABS64`, or a `PREL32` offset of clang's relative lookup tables) designating what
    /// hot-link would bind it to, following pointers into other copied data.
    fn placed_matches(
        &self,
        atom: AtomId,
        start: usize,
        len: usize,
        addr: u64,
        seen: &mut Vec<(AtomId, usize, u64)>,
    ) -> bool {
        // A table and the strings it points to may share one section (gcc's `.rodata`): a
        // range under comparison already counts as equal while its pointers are followed.
        if seen.contains(&(atom, start, addr)) {
            return true;
        }
        if seen.len() >= MAX_PLACED {
            return false;
        }
        seen.push((atom, start, addr));
        let obj = self.info.obj.atom(atom);
        let (Some(ours), Some(theirs)) = (
            obj.bytes.get(start..start + len),
            self.image_bytes(addr, len),
        ) else {
            return false;
        };
        let mut ours = ours.to_vec();
        let mut theirs = theirs.to_vec();
        let exe = &self.model.exe;
        for reloc in &obj.relocs {
            let o = reloc.offset.0 as usize;
            let (width, known) = match reloc.kind {
                RelocKind::Abs64 | RelocKind::Pc64 => (8, true),
                RelocKind::Pc32 | RelocKind::Abs32 => (4, true),
                // Any other field: at most 8 bytes; refused if it may overlap the range.
                _ => (8, false),
            };
            if o + width <= start || o >= start + len {
                continue;
            }
            if o < start || o + width > start + len || !known {
                return false;
            }
            let at = o - start;
            let field = addr + at as u64;
            let word = |n: usize| -> u64 {
                let mut b = [0u8; 8];
                b[..n].copy_from_slice(&theirs[at..at + n]);
                u64::from_le_bytes(b)
            };
            let value = if reloc.kind == RelocKind::Pc64 {
                field.wrapping_add(word(8))
            } else if reloc.kind == RelocKind::Abs32 {
                word(4)
            } else if width == 8 {
                let relative = exe
                    .image
                    .relative_relocs
                    .iter()
                    .find(|&&(v, _)| v == field.wrapping_sub(exe.bias))
                    .map(|&(_, addend)| exe.bias.wrapping_add(addend as u64));
                match relative {
                    Some(v) => v,
                    None => u64::from_le_bytes(theirs[at..at + 8].try_into().expect("8 bytes")),
                }
            } else {
                let rel = i32::from_le_bytes(theirs[at..at + 4].try_into().expect("4 bytes"));
                // `S + A - P` in the field: the designated `S + A` is the field's place plus it.
                field.wrapping_add_signed(i64::from(rel))
            };
            // clang's relative lookup tables store `S - table` as `PREL32 S + o` at offset
            // `o`: the entry means `S` itself, which ld may have merged anywhere.
            let mut reloc = *reloc;
            let mut value = value;
            if reloc.kind == RelocKind::Pc32 && reloc.addend == o as i64 {
                value = value.wrapping_sub(o as u64);
                reloc.addend = 0;
            }
            let reloc = &reloc;
            let class = self.info.classify(atom, reloc);
            let ok = match self.want(class, reloc) {
                Some(Want::Addr(w)) => value == w.wrapping_add_signed(reloc.addend),
                Some(Want::Lib { plt, addr: a }) => {
                    value == a.wrapping_add_signed(reloc.addend)
                        || Some(value) == plt.map(|p| p.wrapping_add_signed(reloc.addend))
                }
                Some(Want::Placed {
                    atom: t,
                    start: s,
                    len: l,
                }) => self.placed_matches(t, s, l, value, seen),
                _ => false,
            };
            if !ok {
                return false;
            }
            ours[at..at + width].fill(0);
            theirs[at..at + width].fill(0);
        }
        ours == theirs
    }

    /// Whether the image's GOT slot `slot` is the one a GOT load of `reloc`'s symbol uses:
    /// the executable's slot for that symbol, or a slot holding its address.
    fn got_slot_designates(&self, class: TargetClass, reloc: &Reloc, slot: u64) -> bool {
        let exe = &self.model.exe;
        let vaddr = slot.wrapping_sub(exe.bias);
        if class == TargetClass::External {
            let name = self.info.symbol_name(reloc.symbol);
            if exe
                .image
                .got_slots
                .iter()
                .any(|s| s.vaddr == vaddr && s.symbol == name)
            {
                return true;
            }
        }
        let w = match self.want(class, reloc) {
            Some(Want::Addr(w)) => w,
            // An undefined weak symbol's slot holds 0.
            Some(Want::WeakNop) => 0,
            _ => return false,
        };
        let relative = exe
            .image
            .relative_relocs
            .iter()
            .find(|&&(v, _)| v == vaddr)
            .map(|&(_, addend)| exe.bias.wrapping_add(addend as u64));
        let value = relative.or_else(|| {
            let b = exe.image.bytes_at(vaddr, 8)?;
            Some(u64::from_le_bytes(b.try_into().ok()?))
        });
        value == Some(w)
    }

    /// `len` bytes of the executable at runtime address `addr`.
    fn image_bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let exe = &self.model.exe;
        exe.image.bytes_at(addr.wrapping_sub(exe.bias), len)
    }
}
