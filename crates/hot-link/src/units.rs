//! The order in which [`crate::Linker::link_units`] links the objects of one swap: unit k
//! sees only what units 0..k-1 add and redirect, so a unit that defines a new global name
//! another unit of the batch refers to goes first (else the reference would be undefined,
//! or a weak one bound to 0), and a unit with a strong definition goes before one with a
//! weak definition of the same name (else the weak default would keep the entry, as no
//! relink would). Mutual references between new functions cannot be ordered: their stubs
//! are reserved before any unit is linked, so every unit binds to them and the definer
//! writes them. Mutual references between new variables are refused.

use std::collections::{HashMap, HashSet};

use hot_object::{Binding, Object, SymbolDef, SymbolKind};

use crate::{LinkError, LinkErrorCode, LinkRequest};

#[derive(Clone, Copy, Default)]
struct Defined {
    strong: bool,
    function: bool,
}

/// What one object defines and refers to by global name.
struct Names<'a> {
    /// Defined names: strong (global, outside a COMDAT group), and whether a function.
    defined: HashMap<&'a str, Defined>,
    /// Names referred to but not defined here.
    referred: HashSet<&'a str>,
}

fn names(obj: &Object) -> Names<'_> {
    let mut defined = HashMap::new();
    let mut referred = HashSet::new();
    for sym in &obj.symbols {
        if sym.binding == Binding::Local
            || sym.name.is_empty()
            || matches!(sym.kind, SymbolKind::Section | SymbolKind::File)
        {
            continue;
        }
        match sym.def {
            SymbolDef::Atom { atom, .. } => {
                let e: &mut Defined = defined.entry(sym.name.as_str()).or_default();
                e.strong |= sym.binding == Binding::Global && !obj.atom(atom).comdat;
                e.function |= sym.kind == SymbolKind::Function;
            }
            SymbolDef::Common { .. } => {
                defined.entry(sym.name.as_str()).or_default();
            }
            SymbolDef::Undefined => {
                referred.insert(sym.name.as_str());
            }
            SymbolDef::Absolute(_) | SymbolDef::Other => {}
        }
    }
    referred.retain(|n| !defined.contains_key(n));
    Names { defined, referred }
}

/// How [`crate::Linker::link_units`] links a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnitPlan {
    /// Indices into the requests, in link order.
    pub order: Vec<usize>,
    /// New global functions whose stubs are allocated before the first unit is linked
    /// (references in both directions between files of the batch).
    pub reserve: Vec<String>,
}

/// The link order of `requests` (indices): the given order, except that definers of new
/// names go before the units that refer to them and strong definitions before weak ones.
/// `is_new` says whether a name is new to the running program (neither the executable nor
/// an earlier patch defines it). When references between new functions go both ways, their
/// stubs are reserved instead. Errors for references between new variables that no order
/// satisfies, naming the symbol and both files.
pub(crate) fn link_order(
    requests: &[LinkRequest<'_>],
    is_new: impl Fn(&str) -> bool,
) -> Result<UnitPlan, Vec<LinkError>> {
    let n = requests.len();
    let given = |order| UnitPlan {
        order,
        reserve: Vec::new(),
    };
    if n < 2 {
        return Ok(given((0..n).collect()));
    }
    let all: Vec<Names<'_>> = requests.iter().map(|r| names(r.object)).collect();
    // Edges j -> k (j first), with the name that needs it: a reference to a new name
    // (`needed`), and a strong over a weak definition (`preferred`).
    let mut needed: Vec<(usize, usize, &str)> = Vec::new();
    // The names of `needed` that are functions (a stub can stand for them).
    let mut functions: HashSet<&str> = HashSet::new();
    let mut preferred: Vec<(usize, usize, &str)> = Vec::new();
    for (k, unit) in all.iter().enumerate() {
        for &name in &unit.referred {
            if !is_new(name) {
                continue;
            }
            for (j, other) in all.iter().enumerate() {
                if let Some(d) = other.defined.get(name).filter(|_| j != k) {
                    needed.push((j, k, name));
                    if d.function {
                        functions.insert(name);
                    }
                }
            }
        }
        for (&name, d) in &unit.defined {
            if d.strong {
                continue;
            }
            for (j, other) in all.iter().enumerate() {
                if j != k && other.defined.get(name).is_some_and(|d| d.strong) {
                    preferred.push((j, k, name));
                }
            }
        }
    }
    if needed.is_empty() && preferred.is_empty() {
        return Ok(given((0..n).collect()));
    }
    // Strong-over-weak pairs that contradict each other (each file strong for one name and
    // weak for the other) keep the given order among them; references cannot.
    let ordered = |needed: &[(usize, usize, &str)]| {
        let both: Vec<_> = needed.iter().chain(&preferred).copied().collect();
        topological(n, &both).or_else(|| topological(n, needed))
    };
    if let Some(order) = ordered(&needed) {
        return Ok(given(order));
    }
    // References that go both ways: reserve the stubs of the new functions; what is left to
    // order are the references to new variables.
    let mut reserve: Vec<String> = functions.iter().map(|f| f.to_string()).collect();
    reserve.sort();
    needed.retain(|(_, _, name)| !functions.contains(name));
    if let Some(order) = ordered(&needed) {
        return Ok(UnitPlan { order, reserve });
    }
    let order_free = cycle_members(n, &needed);
    let mut errors = Vec::new();
    for &(j, k, name) in &needed {
        if !(order_free.contains(&j) && order_free.contains(&k)) {
            continue;
        }
        let shown = hot_object::display_name(name);
        let (user, definer) = (&requests[k].unit.source, &requests[j].unit.source);
        errors.push(LinkError {
            code: LinkErrorCode::UndefinedSymbol,
            unit: user.clone(),
            message: format!(
                "`{shown}`, which {user} refers to, is a new variable defined by {definer} in \
                 the same swap, and {definer} in turn needs a name new in {user} (or in \
                 another file of this swap): one file of a swap is linked after the other, so \
                 new variables of two files that refer to each other cannot be swapped in \
                 together; add them one file at a time (save them separately), or restart the \
                 program"
            ),
            symbol: Some(name.to_string()),
            function: None,
            line: None,
        });
    }
    errors.sort_by(|a, b| (&a.unit, &a.symbol).cmp(&(&b.unit, &b.symbol)));
    errors.dedup_by(|a, b| a.unit == b.unit && a.symbol == b.symbol);
    Err(errors)
}

/// Kahn's algorithm, always taking the lowest ready index (the given order where the edges
/// leave it free); `None` on a cycle.
fn topological(n: usize, edges: &[(usize, usize, &str)]) -> Option<Vec<usize>> {
    let mut indegree = vec![0usize; n];
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(j, k, _) in edges {
        if !after[j].contains(&k) {
            after[j].push(k);
            indegree[k] += 1;
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &k in &after[i] {
            indegree[k] -= 1;
            if indegree[k] == 0 {
                ready.insert(k);
            }
        }
    }
    (order.len() == n).then_some(order)
}

/// The units left when every unit that can be ordered is removed: those on (or after) a
/// cycle of `edges`. Peels units with no remaining incoming edge, then with no remaining
/// outgoing edge, so only the cycles' members stay.
fn cycle_members(n: usize, edges: &[(usize, usize, &str)]) -> HashSet<usize> {
    let mut left: HashSet<usize> = (0..n).collect();
    loop {
        let before = left.len();
        let inner: Vec<_> = edges
            .iter()
            .filter(|(j, k, _)| left.contains(j) && left.contains(k) && j != k)
            .collect();
        left.retain(|u| {
            inner.iter().any(|(_, k, _)| k == u) && inner.iter().any(|(j, _, _)| j == u)
        });
        if left.len() == before {
            return left;
        }
    }
}
