//! C++ lambdas are named by their position: gcc numbers the closures of one function (and
//! call signature) `{lambda(int)#1}`, `#2`, ...; clang numbers every closure of the file
//! `$_0`, `$_1`, ... An edit that adds or removes a lambda before others renumbers them, and
//! the name of a running lambda then belongs to another one: redirecting its entry would
//! make the closures the program already holds (in a `std::function`, a registered
//! callback, made by the old code) run another lambda's body with their own captures. Such
//! an edit is refused (`layout-changed`), naming the scope.
//!
//! With a baseline, per scope (the demangled operator() name with the number left out):
//! the same numbers on both sides is no renumbering; otherwise a number both sides have
//! must designate an unchanged body (a lambda appended after the others, or the last one
//! removed), or the edit is refused. Without a baseline nothing is checked (the image's
//! code is not compared lambda by lambda).

use std::collections::{BTreeMap, HashMap};

use hot_object::{AtomId, AtomKind, Object};

use crate::link::Link;
use crate::LinkErrorCode;

impl Link<'_> {
    /// Refuse an edit that renumbered the lambdas of a scope (see the module documentation).
    pub(crate) fn check_lambda_numbering(&mut self) {
        let (Some(baseline), Some(matches)) = (self.baseline, self.baseline_match.as_ref()) else {
            return;
        };
        let obj = self.info.obj;
        let old = lambda_numbers(baseline);
        if old.is_empty() {
            return;
        }
        let mut refused = Vec::new();
        for (key, numbers) in lambda_numbers(obj) {
            let Some(old_numbers) = old.get(&key) else {
                continue;
            };
            if old_numbers.keys().eq(numbers.keys()) {
                continue;
            }
            let moved = numbers.iter().find(|(n, atom)| {
                old_numbers.contains_key(n) && matches.get(atom).is_none_or(|&(_, changed)| changed)
            });
            if let Some((_, &atom)) = moved {
                refused.push((key, atom));
            }
        }
        for (key, atom) in refused {
            let name = self.info.atom_name(atom);
            let shown = hot_object::display_name(&name).into_owned();
            let scope = key
                .split_once("::{lambda")
                .or_else(|| key.split_once("::$_"))
                .map(|(scope, _)| format!("`{scope}`"))
                .unwrap_or_else(|| "this file".to_string());
            self.error(
                LinkErrorCode::LayoutChanged,
                format!(
                    "the lambdas of {scope} were renumbered by this edit: `{shown}` is now \
                     another lambda than in the running program (one was added or removed \
                     before it); closures the program already holds (in a std::function, a \
                     registered callback) would run the other lambda's body: restart the \
                     program, or add the new lambda after the existing ones"
                ),
                Some(name),
                Some((atom, hot_object::AtomOffset(0))),
            );
        }
    }
}

/// The call operators of the object's closures, by scope key and number.
fn lambda_numbers(obj: &Object) -> HashMap<String, BTreeMap<u32, AtomId>> {
    let mut found: HashMap<String, BTreeMap<u32, AtomId>> = HashMap::new();
    // Closures are C++: a C object (no mangled name) has none, asked in one pass over the
    // symbols instead of a primary-symbol search per function.
    if !obj.symbols.iter().any(|s| s.name.starts_with("_Z")) {
        return found;
    }
    for (index, atom) in obj.atoms.iter().enumerate() {
        if atom.kind != AtomKind::Text {
            continue;
        }
        let id = AtomId(index as u32);
        let Some(sym) = obj.primary_symbol(id) else {
            continue;
        };
        let name = &obj.symbol(sym).name;
        if !name.starts_with("_Z") {
            continue;
        }
        if let Some((key, number)) = lambda_key(&hot_object::display_name(name)) {
            found.entry(key).or_default().insert(number, id);
        }
    }
    found
}

/// A closure's call operator, as (scope key, number): `f(int)::{lambda(int)#2}::operator()
/// (int) const` -> (`f(int)::{lambda(int)#?}::operator()(int) const`, 2); clang's
/// `f(int)::$_3::operator()(int) const` -> (`f(int)::$_?::operator()(int) const`, 3).
fn lambda_key(shown: &str) -> Option<(String, u32)> {
    let at = shown.rfind("::operator()")?;
    let (closure, rest) = shown.split_at(at);
    if let Some(open) = closure.strip_suffix('}') {
        let hash = open.rfind('#')?;
        let number = open[hash + 1..].parse().ok()?;
        if !open[..hash].contains("{lambda(") {
            return None;
        }
        return Some((format!("{}#?}}{rest}", &open[..hash]), number));
    }
    let dollar = closure.rfind("$_")?;
    let number = closure[dollar + 2..].parse().ok()?;
    Some((format!("{}$_?{rest}", &closure[..dollar]), number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_keys() {
        assert_eq!(
            lambda_key("f(int)::{lambda(int)#2}::operator()(int) const"),
            Some(("f(int)::{lambda(int)#?}::operator()(int) const".into(), 2))
        );
        assert_eq!(
            lambda_key("f(int)::$_3::operator()(int) const"),
            Some(("f(int)::$_?::operator()(int) const".into(), 3))
        );
        assert_eq!(
            lambda_key("$_1::operator()(int) const"),
            Some(("$_?::operator()(int) const".into(), 1))
        );
        assert_eq!(lambda_key("Rect::operator()(int)"), None);
        assert_eq!(lambda_key("f(int)"), None);
    }
}
