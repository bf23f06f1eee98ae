//! Knowing what changed: compare the new object with the baseline (the previous object of the
//! same file compiled with the same flags) atom by atom, by bytes and by relocation *targets*.
//!
//! Targets are compared by meaning, not by symbol index: a function or variable by name, a
//! string literal by its text (its offset in `.rodata.str1.1` moves when another string
//! changes), and anonymous atoms (jump tables, `.cold` parts, IPA clones, whose names are
//! renumbered freely) by their own contents, recursively. A function is changed when its atom
//! or one of its split parts is.
//!
//! This is hot-link's own comparison; it needs nothing beyond the [`hot_object::Object`]
//! data model.

use std::collections::{HashMap, HashSet};

use hot_object::{AtomId, AtomKind, Binding, Reloc, SymbolDef, SymbolKind};

use crate::image::strip_numeric_suffix;
use crate::resolve::{
    function_name, is_got_kind, is_pc_relative, AtomRole, FunctionName, ObjectInfo,
};

/// How deep anonymous atoms are compared before giving up (and calling them changed).
const MAX_DEPTH: u32 = 8;

struct Comparer<'a, 'o> {
    new: &'a ObjectInfo<'o>,
    old: &'a ObjectInfo<'o>,
    /// Pairs assumed equal while comparing them (co-inductively: a clone calling itself).
    assumed: HashSet<(AtomId, AtomId)>,
}

/// What a relocation designates, comparable across two objects.
#[derive(Debug, PartialEq, Eq)]
enum TargetId<'o> {
    Named(&'o str),
    /// A string literal (merge-strings section), by its bytes.
    String(&'o [u8]),
    /// An anonymous atom, compared by contents.
    Anonymous(AtomId, i64),
    Other,
}

fn string_at(bytes: &[u8], offset: i64) -> &[u8] {
    let Ok(start) = usize::try_from(offset) else {
        return &[];
    };
    let Some(rest) = bytes.get(start..) else {
        return &[];
    };
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    &rest[..end]
}

impl<'o> Comparer<'_, 'o> {
    fn target<'x>(info: &'x ObjectInfo<'o>, atom: AtomId, reloc: &Reloc) -> TargetId<'o> {
        let obj = info.obj;
        let sym = obj.symbol(reloc.symbol);
        let named = !sym.name.is_empty() && sym.kind != SymbolKind::Section;
        match sym.def {
            SymbolDef::Atom { atom: t, offset } => {
                let role = info.role(t);
                if let Some(name) = info.function_name(t) {
                    return TargetId::Named(name);
                }
                match role {
                    AtomRole::Variable { sym: Some(s) }
                    | AtomRole::ThreadLocal { sym: Some(s) }
                    | AtomRole::NamedReadOnly { sym: s } => {
                        let n = &obj.symbol(*s).name;
                        TargetId::Named(if obj.symbol(*s).binding == Binding::Local {
                            strip_numeric_suffix(n)
                        } else {
                            n
                        })
                    }
                    AtomRole::AnonReadOnly if obj.atom(t).merge_strings => {
                        let adjust = if is_got_kind(reloc.kind) {
                            0
                        } else if is_pc_relative(reloc.kind) {
                            reloc.addend + info.pc_adjust(atom, reloc.offset) as i64
                        } else {
                            reloc.addend
                        };
                        TargetId::String(string_at(&obj.atom(t).bytes, offset.0 as i64 + adjust))
                    }
                    _ => TargetId::Anonymous(t, offset.0 as i64),
                }
            }
            _ if named => TargetId::Named(&obj.symbols[reloc.symbol.0 as usize].name),
            SymbolDef::Absolute(_) => TargetId::Other,
            _ => TargetId::Other,
        }
    }

    fn atoms_equal(&mut self, a: AtomId, b: AtomId, depth: u32) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        if !self.assumed.insert((a, b)) {
            return true;
        }
        let (na, ob) = (self.new.obj.atom(a), self.old.obj.atom(b));
        let same_shape = na.kind == ob.kind
            && na.size == ob.size
            && na.align == ob.align
            && na.bytes == ob.bytes
            && na.relocs.len() == ob.relocs.len();
        if !same_shape {
            return false;
        }
        for (ra, rb) in na.relocs.iter().zip(&ob.relocs) {
            if ra.offset != rb.offset || ra.raw_type != rb.raw_type {
                return false;
            }
            let ta = Self::target(self.new, a, ra);
            let tb = Self::target(self.old, b, rb);
            let equal = match (ta, tb) {
                // String literals: the text decides, the offset inside the section does not.
                (TargetId::String(x), TargetId::String(y)) => x == y,
                (TargetId::Anonymous(x, ox), TargetId::Anonymous(y, oy)) => {
                    ra.addend == rb.addend && ox == oy && self.atoms_equal(x, y, depth + 1)
                }
                (TargetId::Other, TargetId::Other) => {
                    ra.addend == rb.addend
                        && self.new.obj.symbol(ra.symbol).def == self.old.obj.symbol(rb.symbol).def
                }
                (x, y) => ra.addend == rb.addend && x == y,
            };
            if !equal {
                return false;
            }
        }
        true
    }
}

/// Function atoms and their split parts, by plain function name.
fn groups<'o>(info: &ObjectInfo<'o>) -> HashMap<&'o str, (AtomId, Vec<AtomId>)> {
    let mut groups: HashMap<&'o str, (AtomId, Vec<AtomId>)> = HashMap::new();
    for i in 0..info.obj.atoms.len() {
        let id = AtomId(i as u32);
        if let Some(name) = info.function_name(id) {
            groups.entry(name).or_insert((id, Vec::new())).0 = id;
        }
    }
    for i in 0..info.obj.atoms.len() {
        let id = AtomId(i as u32);
        if info.obj.atom(id).kind != AtomKind::Text {
            continue;
        }
        for &s in &info.obj.atom(id).symbols {
            if let FunctionName::Split(parent) = function_name(&info.obj.symbol(s).name) {
                if let Some(g) = groups.get_mut(parent) {
                    if !g.1.contains(&id) {
                        g.1.push(id);
                    }
                }
            }
        }
    }
    groups
}

/// The function atoms of `new` whose function (with its split parts) differs from `old`.
pub(crate) fn changed_functions(new: &ObjectInfo<'_>, old: &ObjectInfo<'_>) -> HashSet<AtomId> {
    let old_groups = groups(old);
    let mut changed = HashSet::new();
    for (name, (atom, parts)) in groups(new) {
        let same = match old_groups.get(name) {
            Some((old_atom, old_parts)) => {
                let mut cmp = Comparer {
                    new,
                    old,
                    assumed: HashSet::new(),
                };
                parts.len() == old_parts.len()
                    && cmp.atoms_equal(atom, *old_atom, 0)
                    && parts
                        .iter()
                        .zip(old_parts)
                        .all(|(&p, &q)| cmp.atoms_equal(p, q, 0))
            }
            None => false,
        };
        if !same {
            changed.insert(atom);
        }
    }
    changed
}

/// Whether two data atoms have the same contents and relocation targets.
pub(crate) fn data_equal(new: &ObjectInfo<'_>, a: AtomId, old: &ObjectInfo<'_>, b: AtomId) -> bool {
    Comparer {
        new,
        old,
        assumed: HashSet::new(),
    }
    .atoms_equal(a, b, 0)
}

/// Index from names to data atoms of an object, so looking up every variable is linear.
pub(crate) fn data_atoms_by_name<'o>(info: &ObjectInfo<'o>) -> HashMap<(String, bool), AtomId> {
    let mut map = HashMap::new();
    for i in 0..info.obj.atoms.len() {
        let id = AtomId(i as u32);
        if let AtomRole::Variable { sym: Some(s) }
        | AtomRole::NamedReadOnly { sym: s }
        | AtomRole::ThreadLocal { sym: Some(s) } = info.role(id)
        {
            let sym = info.obj.symbol(*s);
            let local = sym.binding == Binding::Local;
            let name = if local {
                strip_numeric_suffix(&sym.name)
            } else {
                sym.name.as_str()
            };
            map.entry((name.to_string(), local)).or_insert(id);
        }
    }
    map
}
