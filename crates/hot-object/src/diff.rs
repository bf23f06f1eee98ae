//! Which atoms changed between two compiles of the same file.
use crate::{AtomId, Object};

/// A pair of matched atoms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtomMatch {
    pub name: String,
    pub old: AtomId,
    pub new: AtomId,
}

/// The result of [`changed_functions`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AtomDiff {
    pub changed: Vec<AtomMatch>,
    pub unchanged: Vec<AtomMatch>,
    pub added: Vec<AtomId>,
    pub removed: Vec<AtomId>,
}

/// `calls.0` -> `calls`; `None` when the name has no numeric suffix.
pub(crate) fn strip_numeric_suffix(name: &str) -> Option<&str> {
    let (base, suffix) = name.rsplit_once('.')?;
    if base.is_empty() || suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(base)
}

pub fn changed_functions(_old: &Object, _new: &Object) -> AtomDiff {
    AtomDiff::default()
}
