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
