//! What a hostile-input run does with a parsed object or image: calls every accessor the
//! session and the linker use, so that lazily wrong data (an index out of range, an offset
//! past the end) shows up here and not in a later phase. Shared by the stable mutation run
//! (`tests/hostile.rs`) and the `cargo fuzz` targets (`fuzz/fuzz_targets/common`).

use std::path::Path;

use hot_object::{AtomId, AtomOffset, LinkedImage, Object, SymbolId};

/// Use everything the session reads from a parsed object, so that lazily wrong data (an
/// index out of range, an offset past the end) shows up here and not in a later phase.
pub fn exercise_object(object: &Object) {
    for i in 0..object.symbols.len() {
        let id = SymbolId(i as u32);
        let _ = object.symbol_name(id);
        let _ = object.match_name(id);
        let _ = object.decl_line(id);
        let _ = object.symbol_location(id);
    }
    for (i, atom) in object.atoms.iter().enumerate() {
        let id = AtomId(i as u32);
        let _ = object.primary_symbol(id);
        let _ = hot_object::atom_identity(object, id);
        let _ = object.atom_by_section_index(atom.section_index);
        for reloc in &atom.relocs {
            let _ = object.line_of(id, reloc.offset);
            let _ = object.symbol(reloc.symbol);
        }
        let _ = object.line_of(id, AtomOffset(atom.size));
    }
}

/// Use everything the linker reads from a parsed image.
pub fn exercise_image(image: &LinkedImage) {
    let _ = image.require_symtab(Path::new("mutated"));
    for symbol in &image.symbols {
        let _ = image.match_name(symbol);
        let _ = image.section_at(symbol.vaddr);
        let _ = image.bytes_at(symbol.vaddr, symbol.size.min(1 << 16) as usize);
        let _ = image.compile_unit_at(symbol.vaddr);
    }
    for slot in &image.got_slots {
        let _ = image.bytes_at(slot.vaddr, 8);
    }
}
