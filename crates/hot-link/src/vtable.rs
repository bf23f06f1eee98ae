//! C++ vtables and type information: a class whose virtual-function table or base classes
//! changed is refused (`layout-changed`, naming the class), never updated in place.
//!
//! Objects that already exist hold a pointer into their class's vtable (`_ZTV<class>`), and
//! code that was not recompiled (other files, frames still running) calls slot N of it
//! expecting the function that was declared Nth. A vtable of the same size whose slots now
//! mean other functions (two virtual functions swapped, one renamed), or one that grew or
//! shrank (a virtual function added or removed, a base class added), therefore cannot be
//! written over the running one, and a new vtable elsewhere would not reach existing
//! objects. A slot that now points at another class's function with the same name and
//! parameters (an override added in a derived class, or removed from it) keeps its meaning:
//! that is an ordinary in-place update of the vtable. Type information (`_ZTI<class>`) lists
//! the base classes; any difference in it means the bases changed (`dynamic_cast`, `catch`
//! and the layout of derived objects depend on them).
//!
//! The running program's words are read from the executable's file, as the dynamic linker
//! sets them: a `RELATIVE` relocation designates a vaddr of the executable (named by the
//! symbols defined there), an `R_X86_64_64` slot a symbol by name (`__cxa_pure_virtual`, a
//! library's typeinfo vtable), and any other word is a plain integer (offset-to-top, vbase
//! offsets, flags); in a non-PIE executable an absolute address is a word that equals a
//! symbol's address, lies inside a symbol (a copied library vtable + 16), or is a PLT entry
//! (the canonical address of a library function such as `__cxa_pure_virtual`). The new
//! object's words are its bytes and `R_X86_64_64` relocations.

use std::collections::HashMap;

use hot_object::{
    AtomId, AtomKind, GotSlotKind, ImageSymbol, Object, SourceLine, SymbolDef, SymbolKind,
};

use crate::link::Link;

impl Link<'_> {
    /// Where a refusal about the vtable or typeinfo in `atom` goes: the class's declaration
    /// (`DW_AT_decl_line` of its type, read through the signatures of its own virtual
    /// functions, whose `this` reaches it); without DWARF for it, the first line (within one
    /// file) of the class's own virtual functions that its vtable lists and this object
    /// defines, the closest to the class head (for a typeinfo, those of the class's vtable).
    /// (A function's first line-table row can be inlined header code of another class:
    /// tinyxml2's `XMLPrinter` was refused on a line of `XMLDocument`.)
    pub(crate) fn class_line(&self, atom: AtomId) -> Option<SourceLine> {
        let obj = self.info.obj;
        let name = &obj.symbol(obj.primary_symbol(atom)?).name;
        let (_, class) = kind_of(name)?;
        let shown_class = class_name(class);
        let member_prefix = format!("{shown_class}::");
        let vtable_name = format!("_ZTV{class}");
        let vtable = obj.symbols.iter().find_map(|s| match s.def {
            SymbolDef::Atom { atom, .. } if s.name == vtable_name => Some(atom),
            _ => None,
        })?;
        let mut members: Vec<AtomId> = Vec::new();
        for reloc in &obj.atom(vtable).relocs {
            let SymbolDef::Atom { atom: target, .. } = obj.symbol(reloc.symbol).def else {
                continue;
            };
            let own = obj.primary_symbol(target).is_some_and(|s| {
                hot_object::display_name(&obj.symbol(s).name).starts_with(&member_prefix)
            });
            if obj.atom(target).kind == AtomKind::Text && own && !members.contains(&target) {
                members.push(target);
            }
        }
        let names: std::collections::HashSet<&str> = members
            .iter()
            .filter_map(|&m| obj.primary_symbol(m))
            .map(|s| obj.symbol(s).name.as_str())
            .collect();
        let declared = obj.abi_facts(&names).ok().and_then(|facts| {
            facts
                .layouts
                .get(&shown_class)
                .and_then(|layout| layout.decl.clone())
        });
        if declared.is_some() {
            return declared;
        }
        let mut best: Option<SourceLine> = None;
        for target in members {
            let Some(line) = self.atom_line(target) else {
                continue;
            };
            best = match best {
                Some(b) if b.file != line.file || b.line <= line.line => Some(b),
                _ => Some(line),
            };
        }
        best
    }
}

/// What one 8-byte word of a vtable or a typeinfo object designates.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Word {
    /// A plain integer: offset-to-top, a virtual base offset, typeinfo flags.
    Value(u64),
    /// A symbol's address plus `addend`; `names` are all the symbols defined at that
    /// address (aliases such as a complete and a base destructor).
    Symbol { names: Vec<String>, addend: i64 },
}

/// What kind of C++ object a named read-only atom is, by its mangled name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Vtable,
    TypeInfo,
}

fn kind_of(name: &str) -> Option<(Kind, &str)> {
    if let Some(class) = name.strip_prefix("_ZTV") {
        Some((Kind::Vtable, class))
    } else {
        name.strip_prefix("_ZTI")
            .map(|class| (Kind::TypeInfo, class))
    }
}

/// The class a `_ZTV`/`_ZTI` name is about, demangled: `_ZTV5Shape` -> `Shape`,
/// `_ZTVN2ns3BoxIiEE` -> `ns::Box<int>`.
pub(crate) fn class_name(mangled_class: &str) -> String {
    let as_symbol = format!("_Z{mangled_class}");
    let shown = hot_object::display_name(&as_symbol);
    if shown == as_symbol {
        mangled_class.to_string()
    } else {
        shown.into_owned()
    }
}

/// Why the vtable or typeinfo `name` of the new object (atom `atom`) cannot replace the
/// running program's `image_sym`, as a complete sentence; `None` when it is no vtable or
/// typeinfo, or its layout is the same (its contents may still differ: an override added).
/// `new_size` is the new symbol's size.
pub(crate) fn layout_change(
    obj: &Object,
    atom: AtomId,
    (name, new_size): (&str, u64),
    image: &hot_object::LinkedImage,
    image_sym: &ImageSymbol,
) -> Option<String> {
    let (kind, class) = kind_of(name)?;
    let class = class_name(class);
    if image_sym.size != new_size {
        return Some(match kind {
            Kind::Vtable => format!(
                "the vtable of `{class}` changed from {} to {new_size} bytes (a virtual \
                 function was added or removed, or a base class changed): objects of `{class}` \
                 that already exist, and code not recompiled, use the running program's layout; \
                 restart the program",
                image_sym.size
            ),
            Kind::TypeInfo => format!(
                "the base classes of `{class}` changed (its type information changed from {} \
                 to {new_size} bytes): objects that already exist use the running program's \
                 layout; restart the program",
                image_sym.size
            ),
        });
    }
    let old = image_words(image, image_sym.vaddr, image_sym.size);
    let new = object_words(obj, atom, new_size);
    for (slot, (o, n)) in old.iter().zip(&new).enumerate() {
        let (Some(o), Some(n)) = (o, n) else {
            // A word neither side can interpret is left to the in-place comparison.
            continue;
        };
        if same_word(kind, o, n) {
            continue;
        }
        return Some(match kind {
            Kind::Vtable => format!(
                "the vtable of `{class}` changed its layout: word {slot} was {} in the running \
                 program and is {} in the new code (virtual functions reordered, renamed or \
                 changed their parameters, or a base class changed); objects of `{class}` that \
                 already exist, and code not recompiled, call through the old layout: restart \
                 the program",
                describe(o),
                describe(n)
            ),
            Kind::TypeInfo => format!(
                "the base classes of `{class}` changed (word {slot} of its type information was \
                 {} and is {}): objects that already exist use the running program's layout; \
                 restart the program",
                describe(o),
                describe(n)
            ),
        });
    }
    None
}

/// Whether an old and a new word mean the same. Integers must be equal; symbols equal by
/// name, or for vtable slots, functions with the same name and parameters in another class
/// (an override added or removed keeps the slot's meaning).
fn same_word(kind: Kind, old: &Word, new: &Word) -> bool {
    match (old, new) {
        (Word::Value(a), Word::Value(b)) => a == b,
        (
            Word::Symbol {
                names: old_names,
                addend: a,
            },
            Word::Symbol {
                names: new_names,
                addend: b,
            },
        ) => {
            if a != b {
                return false;
            }
            if new_names.iter().any(|n| old_names.contains(n)) {
                return true;
            }
            kind == Kind::Vtable
                && old_names.iter().any(|o| {
                    let key = slot_key(o);
                    key.is_some() && new_names.iter().any(|n| slot_key(n) == key)
                })
        }
        _ => false,
    }
}

/// What a virtual function means to a vtable slot: its demangled name without the class,
/// with its parameters and qualifiers (`Rect::area() const` -> `area() const`; a destructor
/// is `~()`, whatever its class; a thunk means the function it adjusts for). `None` for what
/// is no C++ function (`__cxa_pure_virtual`), which only matches itself.
fn slot_key(name: &str) -> Option<String> {
    if !name.starts_with("_Z") {
        return None;
    }
    let shown = hot_object::display_name(name);
    let mut text: &str = &shown;
    // A thunk, `{virtual override thunk({offset(-8)}, Rect::area() const)}` (or
    // "non-virtual thunk to ..." in other demanglers), stands for its target.
    if text.starts_with('{') && text.contains("thunk(") {
        let target = text.find("}, ").map(|i| &text[i + 3..]);
        text = target.and_then(|t| t.strip_suffix(")}")).unwrap_or(text);
    }
    for prefix in ["non-virtual thunk to ", "virtual thunk to "] {
        if let Some(rest) = text.strip_prefix(prefix) {
            text = rest;
        }
    }
    let bytes = text.as_bytes();
    // The parameter list is the last '(' at nesting depth 0 ('<' of `operator<` aside).
    let mut depth = 0i32;
    let mut params = None;
    let mut scope_end = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' if !text[..i].ends_with("operator") && !text[..i].ends_with("operator<") => {
                depth += 1
            }
            b'>' if depth > 0 && !text[..i].ends_with("operator") => depth -= 1,
            b'(' => {
                if depth == 0 && !text[..i].ends_with("operator") {
                    params = Some(i);
                }
                depth += 1;
            }
            b')' => depth -= 1,
            _ => {}
        }
    }
    let params = params?;
    let head = &text[..params];
    let mut d = 0i32;
    for (i, &b) in head.as_bytes().iter().enumerate() {
        match b {
            b'<' | b'(' => d += 1,
            b'>' | b')' => d -= 1,
            b':' if d == 0 && head[i..].starts_with("::") => scope_end = Some(i + 2),
            _ => {}
        }
    }
    let own = &text[scope_end.unwrap_or(0)..];
    if own.starts_with('~') {
        return Some(format!("~{}", &own[own.find('(').unwrap_or(own.len())..]));
    }
    Some(own.to_string())
}

fn describe(word: &Word) -> String {
    match word {
        Word::Value(v) => format!("the value {}", *v as i64),
        Word::Symbol { names, addend } => {
            let name = names.first().map(String::as_str).unwrap_or("?");
            let shown = if name == "__cxa_pure_virtual" {
                "a pure virtual function".to_string()
            } else {
                format!("`{}`", hot_object::display_name(name))
            };
            if *addend == 0 {
                shown
            } else {
                format!("{shown}{addend:+}")
            }
        }
    }
}

/// The words of the running program's object at link-time `vaddr` (`None`: not known).
fn image_words(image: &hot_object::LinkedImage, vaddr: u64, size: u64) -> Vec<Option<Word>> {
    // The size is the file's word: only bytes the file really has are read.
    let Some(bytes) = usize::try_from(size)
        .ok()
        .and_then(|len| image.bytes_at(vaddr, len))
    else {
        return Vec::new();
    };
    let end = vaddr.saturating_add(size);
    let mut words: Vec<Option<Word>> = bytes
        .chunks_exact(8)
        .map(|raw| Some(Word::Value(u64::from_le_bytes(raw.try_into().ok()?))))
        .collect();
    // What each word designates once the dynamic linker ran.
    let mut targets: Vec<(usize, u64)> = Vec::new();
    let relatives = &image.relative_relocs;
    let first = relatives.partition_point(|&(v, _)| v < vaddr);
    for &(v, addend) in relatives[first..].iter().take_while(|&&(v, _)| v < end) {
        if (v - vaddr).is_multiple_of(8) {
            targets.push((((v - vaddr) / 8) as usize, addend as u64));
        }
    }
    for slot in &image.got_slots {
        if matches!(slot.kind, GotSlotKind::Abs64 | GotSlotKind::GlobDat)
            && slot.vaddr >= vaddr
            && slot.vaddr < end
            && (slot.vaddr - vaddr).is_multiple_of(8)
        {
            if let Some(w) = words.get_mut(((slot.vaddr - vaddr) / 8) as usize) {
                *w = Some(Word::Symbol {
                    names: vec![slot.symbol.clone()],
                    addend: slot.addend,
                });
            }
        }
    }
    if !image.position_independent {
        // Absolute addresses are in the file itself.
        for (i, w) in words.iter().enumerate() {
            if let Some(Word::Value(v)) = w {
                let (lo, hi) = image.vaddr_range;
                if *v >= lo && *v < hi {
                    targets.push((i, *v));
                }
            }
        }
    }
    if targets.is_empty() {
        return words;
    }
    // One pass over the symbols for every designated address: the symbols defined right
    // there, else the object that contains it (`__vmi_class_type_info`'s vtable + 16 in a
    // typeinfo, copied into a non-PIE executable).
    let mut sorted: Vec<u64> = targets.iter().map(|&(_, t)| t).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut exact: HashMap<u64, Vec<String>> = HashMap::new();
    let mut inside: HashMap<u64, (String, i64)> = HashMap::new();
    for s in &image.symbols {
        if !s.defined || s.name.is_empty() {
            continue;
        }
        let from = sorted.partition_point(|&t| t < s.vaddr);
        let end = s.vaddr.saturating_add(s.size.max(1));
        for &t in sorted[from..].iter().take_while(|&&t| t < end) {
            if t == s.vaddr {
                let names = exact.entry(t).or_default();
                if !names.contains(&s.name) {
                    names.push(s.name.clone());
                }
            } else {
                inside
                    .entry(t)
                    .or_insert_with(|| (s.name.clone(), (t - s.vaddr) as i64));
            }
        }
    }
    for (i, target) in targets {
        words[i] = if let Some(names) = exact.get(&target) {
            Some(Word::Symbol {
                names: names.clone(),
                addend: 0,
            })
        } else if let Some((name, addend)) = inside.get(&target) {
            Some(Word::Symbol {
                names: vec![name.clone()],
                addend: *addend,
            })
        } else if image.position_independent {
            // A pointer to nothing named: cannot tell.
            None
        } else if let Some((name, _)) = image.plt_entries.iter().find(|(_, v)| *v == target) {
            // A non-PIE program's address of a library function is its PLT entry
            // (`__cxa_pure_virtual`, a library class's virtual function).
            Some(Word::Symbol {
                names: vec![name.clone()],
                addend: 0,
            })
        } else {
            // A non-PIE word in the address range that points at no symbol: an integer.
            words[i].take()
        };
    }
    words
}

/// The words of the new object's atom: its bytes, and what its 64-bit relocations designate
/// (`None`: a relocation of another kind).
fn object_words(obj: &Object, atom: AtomId, size: u64) -> Vec<Option<Word>> {
    let a = obj.atom(atom);
    // Only the bytes the atom has (a symbol's size is the file's word, not a bound).
    let len = usize::try_from(size).map_or(a.bytes.len(), |n| n.min(a.bytes.len()));
    let mut words: Vec<Option<Word>> = a.bytes[..len]
        .chunks_exact(8)
        .map(|raw| Some(Word::Value(u64::from_le_bytes(raw.try_into().ok()?))))
        .collect();
    for reloc in &a.relocs {
        if !reloc.offset.0.is_multiple_of(8) {
            continue;
        }
        let Some(w) = words.get_mut((reloc.offset.0 / 8) as usize) else {
            continue;
        };
        if reloc.kind != hot_object::RelocKind::Abs64 {
            *w = None;
            continue;
        }
        let sym = obj.symbol(reloc.symbol);
        *w = match (sym.kind, sym.def) {
            // `.text._ZN...` + 0 for a local function: named by what is defined there.
            (SymbolKind::Section, SymbolDef::Atom { atom: target, .. }) => {
                let names: Vec<String> = obj
                    .atom(target)
                    .symbols
                    .iter()
                    .map(|&s| obj.symbol(s))
                    .filter(|s| {
                        matches!(s.def, SymbolDef::Atom { offset, .. }
                            if offset.0 as i64 == reloc.addend)
                    })
                    .map(|s| s.name.to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                (!names.is_empty()).then_some(Word::Symbol { names, addend: 0 })
            }
            _ => {
                // Aliases defined at the same place (a complete and a base destructor).
                let mut names = vec![sym.name.to_string()];
                if let SymbolDef::Atom {
                    atom: target,
                    offset,
                } = sym.def
                {
                    for &s in &obj.atom(target).symbols {
                        let other = obj.symbol(s);
                        if matches!(other.def, SymbolDef::Atom { offset: o, .. } if o == offset)
                            && !other.name.is_empty()
                            && !names.iter().any(|n| *n == other.name)
                        {
                            names.push(other.name.to_string());
                        }
                    }
                }
                Some(Word::Symbol {
                    names,
                    addend: reloc.addend,
                })
            }
        };
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_keys_drop_the_class() {
        assert_eq!(
            slot_key("_ZNK4Rect4areaEv").as_deref(),
            Some("area() const")
        );
        assert_eq!(slot_key("_ZNK5Shape4areaEv"), slot_key("_ZNK4Rect4areaEv"));
        assert_eq!(slot_key("_ZN4RectD1Ev"), slot_key("_ZN5ShapeD1Ev"));
        assert_ne!(slot_key("_ZNK4Rect4areaEv"), slot_key("_ZNK4Rect5sidesEv"));
        assert_ne!(slot_key("_ZN4Rect1fEi"), slot_key("_ZN4Rect1fEl"));
        // A thunk stands for the function it adjusts `this` for.
        assert_eq!(
            slot_key("_ZThn8_NK4Rect4areaEv"),
            slot_key("_ZNK4Rect4areaEv")
        );
        assert_eq!(
            slot_key("_ZTv0_n24_NK4Rect4areaEv"),
            slot_key("_ZNK4Rect4areaEv")
        );
        assert_eq!(slot_key("__cxa_pure_virtual"), None);
        // Templates and operators in names.
        assert_eq!(
            slot_key("_ZNK3BoxIiE3getEv").as_deref(),
            Some("get() const")
        );
        assert_eq!(slot_key("_ZN4RectclEi").as_deref(), Some("operator()(int)"));
        assert_eq!(
            slot_key("_ZN4RectltERKS_").as_deref(),
            Some("operator<(Rect const&)")
        );
    }

    #[test]
    fn class_names_are_demangled() {
        assert_eq!(class_name("5Shape"), "Shape");
        assert_eq!(class_name("N2ns3BoxIiEE"), "ns::Box<int>");
    }
}
