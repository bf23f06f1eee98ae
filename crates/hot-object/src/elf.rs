//! ELF parsing with the `object` crate.

use std::path::Path;

use crate::{LinkedImage, Object, ObjectError};

pub(crate) fn parse_relocatable(path: &Path, _bytes: &[u8]) -> Result<Object, ObjectError> {
    Err(ObjectError::Malformed { path: path.to_owned(), message: "not implemented yet".into() })
}

pub(crate) fn parse_linked(path: &Path, _bytes: &[u8]) -> Result<LinkedImage, ObjectError> {
    Err(ObjectError::Malformed { path: path.to_owned(), message: "not implemented yet".into() })
}
