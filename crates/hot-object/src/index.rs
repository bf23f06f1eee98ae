//! Tables over one object that every save asks about and that never change once the object
//! is read: each atom's identity (the name it is matched by across compiles), the atoms of
//! each identity, and each atom's FDEs. Built on the first query ([`Object::index`]) and
//! kept with the object, so the object of one save, which is the baseline of the next, is
//! indexed once: a save's diff indexes only its new object.
//!
//! Everything is dense (`u32` ids in `Vec`s) and names are not copied: an identity is the
//! symbol whose name it is, read from the object when asked.

use std::sync::OnceLock;

use rustc_hash::FxHashMap;

use crate::diff::{is_compiler_table, is_compiler_table_name, is_ipa_clone, strip_numeric_suffix};
use crate::{AtomId, AtomKind, Binding, EhRecordKind, Object, SymbolId};

/// No atom (end of a chain).
const NONE: u32 = u32::MAX;

/// How an atom's identity reads, without copying the name (see [`crate::atom_identity`]).
#[derive(Clone, Debug)]
enum Identity {
    /// Anonymous: never matched by name.
    Anonymous,
    /// The symbol's whole name.
    Name(SymbolId),
    /// The symbol's name without its numeric suffix (`calls.0` → `calls`).
    Base(SymbolId),
    /// A function-local static: `function/base` (`tick/calls`).
    Scoped(Box<str>),
}

/// The tables (see the module documentation).
#[derive(Debug)]
pub(crate) struct ObjectIndex {
    identities: Vec<Identity>,
    /// The primary symbol of each atom ([`Object::primary_symbol`]), `NONE` without one.
    primary: Vec<u32>,
    /// Hash of an identity → its first atom; `next_same[atom]` is the next atom, in atom
    /// order, whose identity has the same hash (the same identity, or a collision).
    by_hash: FxHashMap<u64, u32>,
    next_same: Vec<u32>,
    /// The FDEs of atom `a` are `fdes[fde_start[a]..fde_start[a + 1]]`, in section order.
    fde_start: Vec<u32>,
    fdes: Vec<u32>,
    /// Whether an FDE has a relocation besides its `pc_begin` (an LSDA pointer): C objects
    /// have none, and then no function needs its FDEs looked at for exception tables.
    has_lsdas: bool,
}

fn hash_name(name: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(name)
}

impl ObjectIndex {
    pub(crate) fn build(object: &Object) -> ObjectIndex {
        let atoms = object.atoms.len();
        let mut primary = Vec::with_capacity(atoms);
        let mut identities = Vec::with_capacity(atoms);
        for a in 0..atoms as u32 {
            let p = object.primary_symbol(AtomId(a));
            primary.push(p.map_or(NONE, |s| s.0));
            identities.push(p.map_or(Identity::Anonymous, |p| identity(object, AtomId(a), p)));
        }
        let mut index = ObjectIndex {
            identities,
            primary,
            by_hash: FxHashMap::default(),
            next_same: vec![NONE; atoms],
            fde_start: Vec::new(),
            fdes: Vec::new(),
            has_lsdas: false,
        };
        // Chains in atom order: walk backwards, each atom becoming the head of its chain.
        index.by_hash.reserve(atoms);
        for a in (0..atoms as u32).rev() {
            let Some(name) = index.identity(object, AtomId(a)) else {
                continue;
            };
            if let Some(head) = index.by_hash.insert(hash_name(name), a) {
                index.next_same[a as usize] = head;
            }
        }
        // FDEs per atom: count, prefix sums, fill (a counting sort keeps section order).
        let mut start = vec![0u32; atoms + 1];
        let fde_of = |kind: &EhRecordKind| match *kind {
            EhRecordKind::Fde {
                function: Some(f), ..
            } if (f.0 as usize) < atoms => Some(f.0 as usize),
            _ => None,
        };
        for record in &object.eh_frame {
            if let Some(f) = fde_of(&record.kind) {
                start[f + 1] += 1;
            }
        }
        for a in 0..atoms {
            start[a + 1] += start[a];
        }
        let mut fill = start.clone();
        index.fdes = vec![0; start[atoms] as usize];
        for (i, record) in object.eh_frame.iter().enumerate() {
            if let Some(f) = fde_of(&record.kind) {
                index.fdes[fill[f] as usize] = i as u32;
                fill[f] += 1;
                index.has_lsdas |= record.relocs.iter().any(|r| r.offset.0 != 8);
            }
        }
        index.fde_start = start;
        index
    }

    /// The identity of `atom` ([`crate::atom_identity`]), borrowed from `object` (the object
    /// this index was built from).
    pub(crate) fn identity<'o>(&'o self, object: &'o Object, atom: AtomId) -> Option<&'o str> {
        match self.identities.get(atom.0 as usize)? {
            Identity::Anonymous => None,
            Identity::Name(s) => Some(&object.symbols.get(s.0 as usize)?.name),
            Identity::Base(s) => strip_numeric_suffix(&object.symbols.get(s.0 as usize)?.name),
            Identity::Scoped(name) => Some(name),
        }
    }

    /// Whether `symbol` is the primary symbol of `atom`.
    pub(crate) fn is_primary(&self, atom: AtomId, symbol: SymbolId) -> bool {
        self.primary.get(atom.0 as usize) == Some(&symbol.0)
    }

    /// The atoms whose identity is `name`, in atom order.
    pub(crate) fn atoms_named<'s>(
        &'s self,
        object: &'s Object,
        name: &'s str,
    ) -> impl Iterator<Item = AtomId> + 's {
        let mut at = self.by_hash.get(&hash_name(name)).copied().unwrap_or(NONE);
        std::iter::from_fn(move || loop {
            if at == NONE {
                return None;
            }
            let atom = AtomId(at);
            at = self.next_same.get(at as usize).copied().unwrap_or(NONE);
            if self.identity(object, atom) == Some(name) {
                return Some(atom);
            }
        })
    }

    /// Whether some FDE of the object points at an LSDA: without one, no function of it has
    /// an exception table.
    pub(crate) fn has_lsdas(&self) -> bool {
        self.has_lsdas
    }

    /// The FDEs (indexes into [`Object::eh_frame`]) of `atom`, in section order.
    pub(crate) fn fdes_of(&self, atom: AtomId) -> impl Iterator<Item = usize> + '_ {
        let a = atom.0 as usize;
        let range = match (self.fde_start.get(a), self.fde_start.get(a + 1)) {
            (Some(&s), Some(&e)) => s as usize..e as usize,
            _ => 0..0,
        };
        self.fdes[range].iter().map(|&i| i as usize)
    }
}

/// The identity of `atom` whose primary symbol is `primary` (the rules of
/// [`crate::atom_identity`]).
fn identity(object: &Object, atom: AtomId, primary: SymbolId) -> Identity {
    let sym = object.symbol(primary);
    // Most names have no dot: then they are no IPA clone and have no numeric suffix, which
    // one pass over their few bytes tells (the searches for each were half the cost here).
    let dotted = sym.name.as_bytes().contains(&b'.');
    // `is_compiler_table(object, atom)`, with the primary symbol known already.
    let compiler_table = matches!(
        object.atom(atom).kind,
        AtomKind::Data | AtomKind::Bss | AtomKind::ReadOnly
    ) && sym.binding == Binding::Local
        && is_compiler_table_name(&sym.name);
    debug_assert_eq!(compiler_table, is_compiler_table(object, atom));
    if (dotted && is_ipa_clone(&sym.name)) || compiler_table {
        return Identity::Anonymous;
    }
    let base = if dotted {
        strip_numeric_suffix(&sym.name)
    } else {
        None
    };
    let scope = object.local_static_scope(primary);
    if sym.binding != Binding::Local {
        return Identity::Name(primary);
    }
    if object.atom(atom).kind == AtomKind::ReadOnly && (base.is_some() || scope.is_some()) {
        return Identity::Anonymous;
    }
    match (base, scope) {
        (None, _) => Identity::Name(primary),
        (Some(base), Some(scope)) => Identity::Scoped(format!("{scope}/{base}").into()),
        (Some(_), None) => Identity::Base(primary),
    }
}

/// Where an object keeps its [`ObjectIndex`]. A clone starts without one: clones are made
/// to be changed (the hostile tests mutate copies), and an index of the original would
/// then describe another object.
#[derive(Default)]
pub struct IndexCell(OnceLock<ObjectIndex>);

impl IndexCell {
    pub(crate) fn get_or_build(&self, object: &Object) -> &ObjectIndex {
        self.0.get_or_init(|| ObjectIndex::build(object))
    }
}

impl Clone for IndexCell {
    fn clone(&self) -> IndexCell {
        IndexCell::default()
    }
}

impl std::fmt::Debug for IndexCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "IndexCell(built)"
        } else {
            "IndexCell(empty)"
        })
    }
}
