//! Symbol names as users read them: C++ names demangled (`_ZNK5Shape4areaEv` becomes
//! `Shape::area() const`), C names as they are.
//!
//! Every message that names a symbol goes through [`display_name`] (one name) or
//! [`display_names`] (a sentence that quotes names), so that one function decides how names
//! look everywhere; the mangled names stay in the data (`Patch::swapped`, `LinkError::symbol`)
//! for tools and for matching.

use std::borrow::Cow;

/// The demangled form of an Itanium C++ ABI name (`_Z...`, also with a clone suffix such as
/// `.cold` or `.isra.0`); any other name, or one that does not demangle, as it is.
pub fn display_name(name: &str) -> Cow<'_, str> {
    if !name.starts_with("_Z") {
        return Cow::Borrowed(name);
    }
    if let Some(text) = demangle(name) {
        return Cow::Owned(text);
    }
    // gcc names a lambda in a variable's initializer by the variable and `M`
    // (`_ZNK6storedMUliE_clEi`, the ABI's <closure-prefix>), which cpp_demangle does not
    // take; without the `M` it reads as binutils shows it:
    // `stored::{lambda(int)#1}::operator()(int) const`.
    match without_closure_marks(name).and_then(|plain| demangle(&plain)) {
        Some(text) => Cow::Owned(text),
        None => Cow::Borrowed(name),
    }
}

/// cpp_demangle's reading of `name`, if it has one of readable length.
fn demangle(name: &str) -> Option<String> {
    let symbol = cpp_demangle::Symbol::new(name.as_bytes()).ok()?;
    // Hostile or huge input must not make a message unbounded: the demangler caps recursion
    // itself; a demangling longer than this is less readable than the mangled name.
    const LONGEST: usize = 4096;
    symbol
        .demangle(&cpp_demangle::DemangleOptions::default())
        .ok()
        .filter(|text| !text.is_empty() && text.len() <= LONGEST)
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'$')
}

/// `text` with every mangled C++ name in it demangled: a word that starts with `_Z` (not in
/// the middle of an identifier) and demangles, without the full stops a sentence ends with.
pub fn display_names(text: &str) -> Cow<'_, str> {
    if !text.contains("_Z") {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        let starts_word = i == 0 || !is_name_byte(bytes[i - 1]);
        if !(starts_word && bytes[i] == b'_' && bytes[i + 1] == b'Z') {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < bytes.len() && is_name_byte(bytes[end]) {
            end += 1;
        }
        // Name bytes are ASCII, so `i..end` is on character boundaries.
        let word = text[i..end].trim_end_matches('.');
        let shown = display_name(word);
        if let Cow::Owned(demangled) = shown {
            out.push_str(&text[copied..i]);
            out.push_str(&demangled);
            copied = i + word.len();
        }
        i = end;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// `name` without the `M` of each <closure-prefix> (an `M` right after a <source-name> and
/// before an unnamed type, `Ul`/`Ut`), or `None` when it has none.
fn without_closure_marks(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut copied = 0;
    for m in 1..bytes.len().saturating_sub(2) {
        if bytes[m] != b'M' || bytes[m + 1] != b'U' || !matches!(bytes[m + 2], b'l' | b't') {
            continue;
        }
        // Some length k whose decimal digits stand right before the k bytes before `M`
        // (identifiers longer than 4 KiB are not worth the search).
        let after_source_name = (1..m.min(4096)).any(|k| {
            let digits = k.to_string();
            m - k >= digits.len() && &bytes[m - k - digits.len()..m - k] == digits.as_bytes()
        });
        if after_source_name {
            out.push_str(&name[copied..m]);
            copied = m + 1;
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&name[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cxx_names_are_demangled_and_c_names_kept() {
        assert_eq!(display_name("_ZNK5Shape4areaEv"), "Shape::area() const");
        assert_eq!(display_name("_Z7computei"), "compute(int)");
        assert_eq!(display_name("compute"), "compute");
        assert_eq!(display_name("_Zbogus"), "_Zbogus");
        assert!(display_name("_Z7computei.cold").starts_with("compute(int)"));
    }

    #[test]
    fn lambdas_in_variable_initializers_are_demangled() {
        // gcc's <closure-prefix>: a lambda initialising the variable `stored`.
        assert_eq!(
            display_name("_ZNK6storedMUliE_clEi"),
            "stored::{lambda(int)#1}::operator()(int) const"
        );
        assert!(display_name(
            "_ZNSt17_Function_handlerIFiiEN6storedMUliE_EE9_M_invokeERKSt9_Any_dataOi"
        )
        .contains("stored::{lambda(int)#1}"));
        // An `M` that is part of a name stays.
        assert_eq!(display_name("_Z4MUltv"), "MUlt()");
        assert_eq!(display_name("_ZbogusMUl"), "_ZbogusMUl");
    }

    #[test]
    fn names_in_sentences_are_demangled_where_they_stand() {
        assert_eq!(
            display_names("undefined symbol `_Z6helperv` (R_X86_64_PLT32 in `_Z4tickv`)."),
            "undefined symbol `helper()` (R_X86_64_PLT32 in `tick()`)."
        );
        assert_eq!(
            display_names("entry of _ZNK5Shape4areaEv."),
            "entry of Shape::area() const."
        );
        assert_eq!(
            display_names("a_Z3foov and _Zbogus"),
            "a_Z3foov and _Zbogus"
        );
        assert_eq!(display_names("no names here"), "no names here");
        assert_eq!(display_names("_Z"), "_Z");
    }
}
