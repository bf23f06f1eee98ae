//! Unwind information for new bodies: an `.eh_frame` table of the FDEs describing the
//! functions a patch places (with the CIEs they use), relocated to the arena, and the LSDAs
//! (`.gcc_except_table.*`) those FDEs point at, copied like any anonymous read-only data.
//!
//! The unwinder only knows the `.eh_frame` of loaded objects (found through
//! `PT_GNU_EH_FRAME`); code in an arena has none, so an exception thrown in or through a new
//! body would find no frame description and terminate the program. The table built here
//! follows the layout `__register_frame` expects (LSB Core, "Exception Frames"): records one
//! after the other, each FDE's CIE pointer the distance back to a CIE of the same table,
//! ended by a zero length word. Which function registers it in the target is the session's
//! business ([`crate::UnwindRegistration`]); the linker only builds it and says where it is.
//!
//! The relocations of the records are applied like an atom's: `pc_begin` to the placed body
//! (not the stable entry: the FDE describes the copied bytes), the LSDA pointer to the copied
//! `.gcc_except_table` section, the personality pointer to `DW.ref.__gxx_personality_v0` as
//! data binding placed it (the executable's own slot, or a new one holding the personality's
//! address).

use hot_object::{AtomId, AtomKind, EhRecordKind, Reloc, RelocKind, SymbolDef};

use crate::layout::ArenaKind;
use crate::link::{Link, SymValue};
use crate::resolve::{AtomRole, TargetClass};
use crate::x86_64::{store, Field};
use crate::{LinkNote, NoteSeverity, PatchWrite, RuntimeAddr, UnwindRegistration};

/// Room for libgcc's `struct object` (7 words in GCC 12 to 14, with
/// `DWARF2_OBJECT_END_PTR_EXTENSION`); generous, it costs nothing.
const UNWIND_OBJECT_SIZE: u64 = 128;

impl Link<'_> {
    /// The atoms the unwind information of `atom` (a function body being placed) needs
    /// besides the body itself: its LSDAs, which only `.eh_frame` references, so the closure
    /// over the body's own relocations never reaches them.
    pub(crate) fn unwind_data_of(&self, atom: AtomId) -> Vec<AtomId> {
        let obj = self.info.obj;
        if obj.atom(atom).kind != AtomKind::Text {
            return Vec::new();
        }
        let mut needed = Vec::new();
        for fde in obj.fdes_of(atom) {
            for reloc in &obj.eh_frame[fde].relocs {
                if let SymbolDef::Atom { atom: target, .. } = obj.symbol(reloc.symbol).def {
                    if target != atom && matches!(self.info.role(target), AtomRole::AnonReadOnly) {
                        needed.push(target);
                    }
                }
            }
        }
        needed
    }

    /// Build the `.eh_frame` table of the placed bodies (after relocation, when every copied
    /// and bound atom has its address) and allocate it in the code arena. A table that cannot
    /// be built costs only the unwinding through the new bodies: a warning, not a refusal.
    pub(crate) fn build_unwind(&mut self) {
        let obj = self.info.obj;
        let mut fdes: Vec<usize> = Vec::new();
        for &atom in &self.place_order {
            if self.placed.contains_key(&atom) {
                fdes.extend(obj.fdes_of(atom));
            }
        }
        if fdes.is_empty() {
            return;
        }
        // CIEs in order of first use, each followed by its FDEs.
        let mut cies: Vec<usize> = Vec::new();
        for &fde in &fdes {
            if let EhRecordKind::Fde { cie, .. } = obj.eh_frame[fde].kind {
                if !cies.contains(&cie) {
                    cies.push(cie);
                }
            }
        }
        let mut order: Vec<usize> = Vec::new();
        for &cie in &cies {
            order.push(cie);
            order.extend(fdes.iter().copied().filter(
                |&f| matches!(obj.eh_frame[f].kind, EhRecordKind::Fde { cie: c, .. } if c == cie),
            ));
        }
        let len: u64 = order
            .iter()
            .map(|&r| obj.eh_frame[r].bytes.len() as u64)
            .sum::<u64>()
            + 4;
        // A full arena costs only the table: the swap goes ahead without it.
        let frame = match self.alloc.alloc(ArenaKind::Code, len, 8) {
            Ok(addr) => addr,
            Err(_) => {
                self.unwind_not_built(format!(
                    "the code arena is full: no room for the unwind table of the new bodies \
                     ({len} bytes; restart the program to start with fresh arenas)"
                ));
                return;
            }
        };
        // libgcc's `struct object` for `__register_frame_info(frame, object)`: the unwinder's
        // own bookkeeping for the table (written by it, so in the data arena). libgcc up to
        // 12 then needs no `malloc` to register; from 13 it also inserts into a B-tree that
        // allocates (see the session's `unwind.rs`).
        let object = match self.alloc.alloc(ArenaKind::Data, UNWIND_OBJECT_SIZE, 16) {
            Ok(addr) => addr,
            Err(_) => {
                self.unwind_not_built(format!(
                    "the data arena is full: no room for the unwinder's record of the new \
                     bodies ({UNWIND_OBJECT_SIZE} bytes; restart the program to start with \
                     fresh arenas)"
                ));
                return;
            }
        };
        let mut bytes: Vec<u8> = Vec::with_capacity(len as usize);
        let mut cie_at: Vec<(usize, usize)> = Vec::new();
        for &r in &order {
            let record = &obj.eh_frame[r];
            let at = bytes.len();
            bytes.extend_from_slice(&record.bytes);
            match record.kind {
                EhRecordKind::Cie => cie_at.push((r, at)),
                EhRecordKind::Fde { cie, .. } => {
                    // The CIE precedes its FDEs in `order`, so it has its offset already.
                    let Some(&(_, cie_offset)) = cie_at.iter().find(|(c, _)| *c == cie) else {
                        continue;
                    };
                    let pointer = (at + 4 - cie_offset) as u32;
                    bytes[at + 4..at + 8].copy_from_slice(&pointer.to_le_bytes());
                }
            }
            for reloc in &record.relocs {
                let place = at + reloc.offset.0 as usize;
                let p = frame.offset(place as u64);
                if let Err(why) = self.relocate_unwind(reloc, p, &mut bytes, place) {
                    let function = match record.kind {
                        EhRecordKind::Fde {
                            function: Some(f), ..
                        } => format!(" of `{}`", self.info.atom_name(f)),
                        _ => String::new(),
                    };
                    self.unwind_not_built(format!(
                        "the unwind information{function} cannot be relocated \
                         (.eh_frame+{:#x}, {}): {why}",
                        record.offset.saturating_add(reloc.offset.0),
                        reloc_name(reloc)
                    ));
                    return;
                }
            }
        }
        bytes.extend_from_slice(&0u32.to_le_bytes());
        self.patch.writes.push(PatchWrite {
            addr: frame,
            bytes,
            what: format!("unwind table (.eh_frame) of {} functions", fdes.len()),
        });
        self.patch.writes.push(PatchWrite {
            addr: object,
            bytes: vec![0; UNWIND_OBJECT_SIZE as usize],
            what: "unwinder record (struct object) of the unwind table".into(),
        });
        self.patch.unwind.push(UnwindRegistration {
            frame,
            len,
            object,
            fdes: fdes.len(),
        });
    }

    /// Apply one relocation of a copied `.eh_frame` record at `bytes[place..]`, whose runtime
    /// address is `p`.
    fn relocate_unwind(
        &mut self,
        reloc: &Reloc,
        p: RuntimeAddr,
        bytes: &mut [u8],
        place: usize,
    ) -> Result<(), String> {
        let obj = self.info.obj;
        let s = match obj.symbol(reloc.symbol).def {
            SymbolDef::Atom { atom, offset } => {
                let base = self
                    .placed
                    .get(&atom)
                    .or_else(|| self.bound.get(&atom))
                    .ok_or_else(|| {
                        format!(
                            "`{}` is not part of the patch",
                            obj.symbol_name(reloc.symbol)
                        )
                    })?;
                base.0.wrapping_add(offset.0)
            }
            SymbolDef::Undefined => self
                .symbol_address(TargetClass::External, reloc)
                .map_err(|(_, why)| why)?,
            _ => {
                return Err(format!(
                    "`{}` is defined in a section a patch cannot load",
                    obj.symbol_name(reloc.symbol)
                ))
            }
        };
        let value = s as i128 + reloc.addend as i128;
        let (field, value) = match reloc.kind {
            RelocKind::Pc32 => (Field::Signed32, value - p.0 as i128),
            RelocKind::Pc64 => (Field::Word64, value - p.0 as i128),
            RelocKind::Abs64 => (Field::Word64, value),
            RelocKind::Abs32 => (Field::Unsigned32, value),
            _ => return Err("a relocation type unwind tables do not use".into()),
        };
        store(bytes, place, field, value).map_err(|e| format!("{e:?}"))
    }

    /// The address a relocation's (undefined) symbol resolves to, for data that only holds
    /// pointers (a personality routine referenced directly).
    fn symbol_address(
        &mut self,
        class: TargetClass,
        reloc: &Reloc,
    ) -> Result<u64, (crate::LinkErrorCode, String)> {
        match self.symbol_value(class, reloc, false)? {
            SymValue::Addr(a) => Ok(a),
            SymValue::CopyInto(_) => Err((
                crate::LinkErrorCode::UnsupportedRelocation,
                "only the running program knows its address (an IFUNC)".into(),
            )),
        }
    }

    fn unwind_not_built(&mut self, why: String) {
        self.patch.notes.push(LinkNote {
            code: "unsupported-relocation",
            message: format!(
                "{why}; the new code runs, but an exception thrown in or through it terminates \
                 the program and backtraces stop at it"
            ),
            symbol: None,
            line: None,
            severity: NoteSeverity::Warning,
            unit: self.unit.source.clone(),
        });
    }
}

fn reloc_name(reloc: &Reloc) -> String {
    format!("{:?} (type {})", reloc.kind, reloc.raw_type)
}
