//! `.eh_frame` of a relocatable object split into its records (LSB Core, "Exception Frames"):
//! each CIE and FDE with its own bytes and the relocations that fall inside it, and for an
//! FDE the CIE it uses and the atom its `pc_begin` designates.
//!
//! A linker keeps only the FDEs of the functions it places; the records are handed out whole
//! (length word included) so that `hot-link` can copy the ones it needs, fix the CIE pointers
//! of the copies and relocate them like any other bytes. Nothing here interprets the call
//! frame instructions or the augmentation data: their pointers are exactly the relocated
//! fields.

use std::ops::Range;
use std::sync::Arc;

use crate::shared::Shared;
use crate::{AtomOffset, EhRecord, EhRecordKind, Reloc, Symbol, SymbolDef};

/// Split `section` (the range of `.eh_frame` in `file`) into records. `relocs` are the
/// section's relocations with section offsets, in any order (sorted here). A zero length word ends the
/// table (GNU as emits none in objects, but a hand-written one may). Records with a 64-bit
/// length (`0xffffffff` escape) are not produced by compilers for x86-64 objects and are
/// refused, like any record that runs past the section or names a CIE that is not one.
/// Each record's bytes are a range of `file`, its relocations a range of one table.
pub(crate) fn split(
    file: &Arc<Vec<u8>>,
    section: Range<usize>,
    mut relocs: Vec<Reloc>,
    symbols: &[Symbol],
) -> Result<Vec<EhRecord>, String> {
    let bytes = file.get(section.clone()).unwrap_or_default();
    if !relocs.windows(2).all(|w| w[0].offset <= w[1].offset) {
        relocs.sort_by_key(|r| r.offset);
    }
    // (offset, length, relocation run, kind) of each record; the relocations are rewritten
    // to offsets from their record's start in place.
    // Sized for one record per relocation (an object's FDEs have one `pc_begin` each):
    // growing it by doubling copied it over and over.
    let mut found: Vec<(usize, usize, Range<usize>, EhRecordKind)> =
        Vec::with_capacity((relocs.len() + 1).min(bytes.len() / 8));
    // The CIEs so far: (offset, record index).
    let mut cies: Vec<(usize, usize)> = Vec::new();
    let mut at = 0usize;
    let mut first = 0usize;
    while at + 4 <= bytes.len() {
        let length = u32::from_le_bytes(word(bytes, at)) as usize;
        if length == 0 {
            break;
        }
        if length == 0xffff_ffff {
            return Err(format!(
                ".eh_frame+{at:#x}: a record with a 64-bit length is not supported"
            ));
        }
        let end = at
            .checked_add(4 + length)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                format!(".eh_frame+{at:#x}: record of {length} bytes runs past the section")
            })?;
        if length < 4 {
            return Err(format!(
                ".eh_frame+{at:#x}: record of {length} bytes has no CIE id"
            ));
        }
        let id = u32::from_le_bytes(word(bytes, at + 4)) as usize;
        // Relocations before this record (between records) belong to none. Records and
        // relocations are both in section order: one step forward each.
        while relocs
            .get(first)
            .is_some_and(|r| (r.offset.0 as usize) < at)
        {
            first += 1;
        }
        let mut last = first;
        while relocs
            .get(last)
            .is_some_and(|r| (r.offset.0 as usize) < end)
        {
            last += 1;
        }
        for r in &mut relocs[first..last] {
            r.offset = AtomOffset(r.offset.0 - at as u64);
        }
        let own = &relocs[first..last];
        let kind = if id == 0 {
            cies.push((at, found.len()));
            EhRecordKind::Cie
        } else {
            // The CIE pointer is the distance back from the pointer field itself.
            let cie_at = (at + 4).checked_sub(id).ok_or_else(|| {
                format!(".eh_frame+{at:#x}: CIE pointer {id:#x} points before the section")
            })?;
            let cie = cies
                .iter()
                .find(|&&(offset, _)| offset == cie_at)
                .map(|&(_, index)| index)
                .ok_or_else(|| format!(".eh_frame+{at:#x}: CIE pointer {id:#x} names no CIE"))?;
            // pc_begin follows the CIE pointer; in an object it is always relocated.
            let function = own.iter().find(|r| r.offset.0 == 8).and_then(|r| {
                match symbols.get(r.symbol.0 as usize)?.def {
                    SymbolDef::Atom { atom, .. } => Some(atom),
                    _ => None,
                }
            });
            EhRecordKind::Fde { cie, function }
        };
        found.push((at, end, first..last, kind));
        first = last;
        at = end;
    }
    let relocs = Arc::new(relocs);
    Ok(found
        .into_iter()
        .map(|(at, end, own, kind)| EhRecord {
            offset: at as u64,
            bytes: Shared::new(file, section.start + at..section.start + end),
            relocs: Shared::new(&relocs, own),
            kind,
        })
        .collect())
}

/// The four bytes at `at` (callers checked that they are inside `bytes`).
fn word(bytes: &[u8], at: usize) -> [u8; 4] {
    match bytes.get(at..at + 4) {
        Some(&[a, b, c, d]) => [a, b, c, d],
        _ => [0; 4],
    }
}
