//! Slices of a buffer shared by the whole object: an atom's bytes, relocations and symbols,
//! an FDE's bytes and relocations. A 2,000-function object has some 4,000 atoms and 2,000
//! FDEs; an allocation (and a copy) for each of their bytes and tables was much of the cost
//! of reading an object and of dropping the one a save replaces. Here each kind of content
//! is one allocation for the whole object (the file's bytes, one table of every relocation,
//! one of every atom's symbols), and each piece is a range of it: making, cloning and
//! dropping one is a reference count.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// A range of a shared vector: reads as `[T]`. (`Arc<Vec<T>>`, not `Arc<[T]>`: a vector,
/// the file as read above all, becomes shared without a copy.)
pub struct Shared<T> {
    all: Arc<Vec<T>>,
    start: u32,
    end: u32,
}

impl<T> Shared<T> {
    /// The part `range` of `all`; an empty slice when the range is not inside it (callers
    /// check ranges from the file before they get here).
    pub fn new(all: &Arc<Vec<T>>, range: Range<usize>) -> Shared<T> {
        let (start, end) = match all.get(range.clone()) {
            Some(_) if range.end <= u32::MAX as usize => (range.start as u32, range.end as u32),
            _ => (0, 0),
        };
        Shared {
            all: Arc::clone(all),
            start,
            end,
        }
    }

    pub fn as_slice(&self) -> &[T] {
        self
    }

    /// The whole of `all`.
    pub fn whole(all: Arc<Vec<T>>) -> Shared<T> {
        let end = all.len().min(u32::MAX as usize) as u32;
        Shared { all, start: 0, end }
    }
}

impl<T> Deref for Shared<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.all[self.start as usize..self.end as usize]
    }
}

impl<'a, T> IntoIterator for &'a Shared<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> std::slice::Iter<'a, T> {
        self.iter()
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Shared<T> {
        Shared {
            all: Arc::clone(&self.all),
            start: self.start,
            end: self.end,
        }
    }
}

impl<T> Default for Shared<T> {
    fn default() -> Shared<T> {
        Shared::whole(Arc::new(Vec::new()))
    }
}

impl<T> From<Vec<T>> for Shared<T> {
    fn from(v: Vec<T>) -> Shared<T> {
        Shared::whole(Arc::new(v))
    }
}

impl<T: Clone> From<&[T]> for Shared<T> {
    fn from(v: &[T]) -> Shared<T> {
        Shared::whole(Arc::new(v.to_vec()))
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Shared<T>) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for Shared<T> {}

impl<T: PartialEq> PartialEq<[T]> for Shared<T> {
    fn eq(&self, other: &[T]) -> bool {
        **self == *other
    }
}

impl<T: PartialEq> PartialEq<&[T]> for Shared<T> {
    fn eq(&self, other: &&[T]) -> bool {
        **self == **other
    }
}

impl<T: PartialEq, const N: usize> PartialEq<[T; N]> for Shared<T> {
    fn eq(&self, other: &[T; N]) -> bool {
        **self == other[..]
    }
}

impl<T: PartialEq> PartialEq<Shared<T>> for Vec<T> {
    fn eq(&self, other: &Shared<T>) -> bool {
        self[..] == **other
    }
}

impl<T: PartialEq> PartialEq<Shared<T>> for &[T] {
    fn eq(&self, other: &Shared<T>) -> bool {
        **self == **other
    }
}

impl<T: PartialEq> PartialEq<Vec<T>> for Shared<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        **self == other[..]
    }
}

/// A symbol's or section's name: a range of one text shared by the whole object (its string
/// table, copied once), or a text of its own. A 2,000-function object has some 6,000 names;
/// one allocation each (and one free each when the object a save replaces is dropped) was a
/// quarter of reading it. Reads as `str`; compares, orders and hashes as its text.
#[derive(Clone)]
pub struct Name {
    all: Arc<str>,
    start: u32,
    end: u32,
}

impl Name {
    /// The part `range` of `all`, or `None` when it is not a range of `all` on character
    /// boundaries.
    pub fn in_text(all: &Arc<str>, range: Range<usize>) -> Option<Name> {
        all.get(range.clone())?;
        Some(Name {
            all: Arc::clone(all),
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok()?,
        })
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        self
    }
}

impl Deref for Name {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        // Read on every comparison and hash of a name (tens of thousands per save): the
        // range is not checked again.
        // SAFETY: `start..end` is a range of `all` on character boundaries (`in_text` checks
        // it, `From<&str>` takes all of it), and `all` is never changed.
        unsafe {
            self.all
                .get_unchecked(self.start as usize..self.end as usize)
        }
    }
}

impl Default for Name {
    fn default() -> Name {
        Name::from("")
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name {
            all: Arc::from(s),
            start: 0,
            end: s.len() as u32,
        }
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name::from(s.as_str())
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Name {
        Name::from(s.as_str())
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.as_str().to_owned()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl std::hash::Hash for Name {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq for Name {
    #[inline]
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialEq<str> for Name {
    #[inline]
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    #[inline]
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    #[inline]
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for str {
    #[inline]
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    #[inline]
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Name> for String {
    #[inline]
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_name_in_a_table_reads_compares_and_hashes_as_its_text() {
        let table: Arc<str> = Arc::from("\0main\0f0_1\0é\0");
        let main = Name::in_text(&table, 1..5).expect("a range of the table");
        assert_eq!(main, "main");
        assert_eq!(main, Name::from("main"));
        assert_eq!(main.len(), 4);
        // Looked up by `&str` in a map keyed by names, and the other way round.
        let mut map: HashMap<Name, u32> = HashMap::new();
        map.insert(main.clone(), 1);
        assert_eq!(map.get("main"), Some(&1));
        assert!(Name::in_text(&table, 6..10).is_some_and(|n| n == "f0_1"));
        // Not on character boundaries (inside `é`), or out of the table: no name.
        assert!(Name::in_text(&table, 12..13).is_none());
        assert!(Name::in_text(&table, 11..40).is_none());
        assert_eq!(Name::in_text(&table, 11..13).as_deref(), Some("é"));
        assert_eq!(Name::default(), "");
        let (a, b) = (Name::from("a"), Name::from("b"));
        assert!(a < b);
    }
}
