//! Symbol lookup over the running image: hash maps built once over the executable's and the
//! libraries' symbol tables, so that resolving one relocation never scans a symbol table.
//!
//! Lookup follows ELF interposition order: the executable's globals first, then each shared
//! library in load order (default versions only). Locals of the executable are found by
//! translation unit (`STT_FILE` group) and name; function-local statics (`calls.0`) by the
//! name with its numeric suffix stripped, because that suffix changes between compiles.
//!
//! Hidden and internal globals (`-fvisibility=hidden`, `__attribute__((visibility))`) are
//! still globals of their file, but the linker may turn them into LOCAL symbols of the
//! executable. Where they end up depends on the linker:
//! - GNU ld lists them after a nameless `STT_FILE` at the end of `.symtab`, with *default*
//!   `st_other` (gcc 12 + ld 2.40 does so in a PIE for hidden functions called from another
//!   file; hidden data and non-PIE executables keep them GLOBAL with hidden `st_other`);
//! - gold lists them as LOCAL HIDDEN in the group of the *last* input file;
//! - lld lists them as LOCAL HIDDEN in the group of the file that defined them.
//!
//! So every local of the nameless group, and every local with hidden or internal visibility
//! wherever it sits, is found by name like a global ([`ImageIndex::exe_hidden`]). The latter
//! are never taken for statics of the group they sit in (gcc ignores visibility on a
//! `static`), so they are not mixed up with a file's own static of the same name.

use rustc_hash::FxHashMap as HashMap;

use hot_object::{Binding, GotSlotKind, ImageSymbol, SymbolKind, TranslationUnitId};

use crate::{ImageModel, Module};

/// A link-time virtual address of a linked image. It becomes a [`crate::RuntimeAddr`] only
/// through [`Module::runtime`], which adds the module's load bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vaddr(pub u64);

/// The module a symbol was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ModuleId {
    Exe,
    /// Index into [`ImageModel::libs`].
    Lib(usize),
}

impl ModuleId {
    pub(crate) fn module(self, model: &ImageModel) -> &Module {
        match self {
            ModuleId::Exe => &model.exe,
            ModuleId::Lib(i) => &model.libs[i],
        }
    }
}

/// A symbol of the image: module plus index into that module's `symbols`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ImageSymRef {
    pub module: ModuleId,
    pub index: u32,
}

impl ImageSymRef {
    pub(crate) fn get(self, model: &ImageModel) -> &ImageSymbol {
        &self.module.module(model).image.symbols[self.index as usize]
    }
}

/// Per-library lookup tables.
#[derive(Debug, Default)]
struct LibIndex {
    /// Defined dynamic symbols of the default version, by name; a global definition wins
    /// over a weak one.
    symbols: HashMap<String, u32>,
    /// `R_X86_64_IRELATIVE` slots by resolver address (the addend).
    irelative_by_resolver: HashMap<u64, Vaddr>,
}

/// The extent of one defined symbol of the executable, for finding the padding around a
/// function.
#[derive(Clone, Copy, Debug)]
struct Extent {
    start: u64,
    end: u64,
}

/// Hash maps over the image model. Built once per [`crate::Linker`].
#[derive(Debug, Default)]
pub(crate) struct ImageIndex {
    exe_globals: HashMap<String, u32>,
    /// Hidden globals the linker made local: locals of the nameless `STT_FILE` group and
    /// locals with hidden or internal visibility, by name (several only when hidden
    /// definitions of one name came from different inputs).
    exe_hidden: HashMap<String, Vec<u32>>,
    exe_locals: HashMap<(TranslationUnitId, String), u32>,
    /// Locals by name with the numeric suffix stripped (`calls.0` -> `calls`), for
    /// function-local statics.
    exe_local_statics: HashMap<(TranslationUnitId, String), Vec<u32>>,
    /// Function-local statics by unit and scoped match name (`tick/calls`), where the
    /// image's DWARF names the declaring function.
    exe_scoped_statics: HashMap<(TranslationUnitId, String), Vec<u32>>,
    /// Unit and stripped name of every scoped static, to know that the image's scopes are
    /// authoritative for that name.
    exe_scoped_names: std::collections::HashSet<(TranslationUnitId, String)>,
    /// The executable's own GOT slots by symbol name.
    exe_got: HashMap<String, Vec<(Vaddr, GotSlotKind)>>,
    /// The executable's PLT entries by symbol name.
    exe_plt: HashMap<String, Vaddr>,
    /// Names of the executable's function symbols by address, for entries several symbols
    /// share (identical code folding).
    functions_at: HashMap<u64, Vec<u32>>,
    /// Defined symbols of the executable sorted by start, for padding searches.
    extents: Vec<Extent>,
    /// `prefix_max_end[i]` = the largest end of `extents[..i]`.
    prefix_max_end: Vec<u64>,
    libs: Vec<LibIndex>,
    /// For a library's model ([`crate::Home::Library`]): the names the library exports that
    /// a module before it in the global scope defines too, with that module's definition.
    /// The dynamic linker bound the library's own GOT and PLT to those.
    interposed: HashMap<String, ImageSymRef>,
}

/// `calls.0` -> `calls`: the name of a function-local static without the numbering the
/// compiler adds (it changes when statics are added elsewhere in the file).
pub(crate) fn strip_numeric_suffix(name: &str) -> &str {
    let mut cut = name;
    // Strip repeatedly: nested numbering such as `x.1.2` happens with inlined statics.
    while let Some(dot) = cut.rfind('.') {
        let tail = &cut[dot + 1..];
        if dot > 0 && !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
            cut = &cut[..dot];
        } else {
            break;
        }
    }
    cut
}

fn is_definition(sym: &ImageSymbol) -> bool {
    sym.defined && !matches!(sym.kind, SymbolKind::Section | SymbolKind::File)
}

impl ImageIndex {
    pub(crate) fn build(model: &ImageModel) -> ImageIndex {
        let mut index = ImageIndex::default();
        let exe = &model.exe.image;
        for (i, sym) in exe.symbols.iter().enumerate() {
            let i = i as u32;
            if !is_definition(sym) || sym.name.is_empty() {
                continue;
            }
            match sym.binding {
                Binding::Local => {
                    let nameless = sym.tu.is_some_and(|tu| {
                        exe.translation_units
                            .get(tu.0 as usize)
                            .is_some_and(|n| n.is_empty())
                    });
                    let hidden = sym.visibility.is_hidden();
                    if (nameless || hidden)
                        && matches!(
                            sym.kind,
                            SymbolKind::Function
                                | SymbolKind::Object
                                | SymbolKind::Tls
                                | SymbolKind::Ifunc
                        )
                    {
                        // The nameless group also holds ld's own `_DYNAMIC` and
                        // `_GLOBAL_OFFSET_TABLE_`, and crt files' hidden `__dso_handle`;
                        // harmless, as lookups are by name.
                        index
                            .exe_hidden
                            .entry(sym.name.clone())
                            .or_default()
                            .push(i);
                    }
                    // A hidden local is another file's global that gold put in the last
                    // file's group (or lld in its own file's group): never one of the group's
                    // statics (gcc ignores visibility on a `static`).
                    if let (Some(tu), false) = (sym.tu, hidden) {
                        index.exe_locals.entry((tu, sym.name.clone())).or_insert(i);
                        let stripped = strip_numeric_suffix(&sym.name);
                        if stripped.len() != sym.name.len() {
                            let matched = exe.match_name(sym);
                            if matched.contains('/') {
                                index
                                    .exe_scoped_statics
                                    .entry((tu, matched))
                                    .or_default()
                                    .push(i);
                                index.exe_scoped_names.insert((tu, stripped.to_string()));
                            }
                            index
                                .exe_local_statics
                                .entry((tu, stripped.to_string()))
                                .or_default()
                                .push(i);
                        }
                    }
                }
                Binding::Global | Binding::Weak => {
                    // `.symtab` comes first in `symbols`, so its entry wins over `.dynsym`'s.
                    // A global definition wins over a weak one.
                    match index.exe_globals.get(&sym.name) {
                        Some(&prev)
                            if !(exe.symbols[prev as usize].binding == Binding::Weak
                                && sym.binding == Binding::Global) => {}
                        _ => {
                            index.exe_globals.insert(sym.name.clone(), i);
                        }
                    }
                }
            }
            if sym.kind == SymbolKind::Function && !sym.dynamic {
                index.functions_at.entry(sym.vaddr).or_default().push(i);
            }
            if matches!(
                sym.kind,
                SymbolKind::Function | SymbolKind::Ifunc | SymbolKind::Object | SymbolKind::NoType
            ) && sym.vaddr != 0
            {
                index.extents.push(Extent {
                    start: sym.vaddr,
                    // Sizes come from the file: a huge one ends at the top of memory.
                    end: sym.vaddr.saturating_add(sym.size),
                });
            }
        }
        index.extents.sort_by_key(|e| (e.start, e.end));
        let mut max_end = 0;
        index.prefix_max_end.reserve(index.extents.len() + 1);
        for e in &index.extents {
            index.prefix_max_end.push(max_end);
            max_end = max_end.max(e.end);
        }
        index.prefix_max_end.push(max_end);
        for slot in &exe.got_slots {
            index
                .exe_got
                .entry(slot.symbol.clone())
                .or_default()
                .push((Vaddr(slot.vaddr), slot.kind));
        }
        for (name, vaddr) in &exe.plt_entries {
            index.exe_plt.entry(name.clone()).or_insert(Vaddr(*vaddr));
        }
        for lib in &model.libs {
            let mut li = LibIndex::default();
            for (i, sym) in lib.image.symbols.iter().enumerate() {
                if !is_definition(sym)
                    || sym.binding == Binding::Local
                    || !sym.dynamic
                    || !sym.default_version
                {
                    continue;
                }
                match li.symbols.get(&sym.name) {
                    Some(&prev)
                        if !(lib.image.symbols[prev as usize].binding == Binding::Weak
                            && sym.binding == Binding::Global) => {}
                    _ => {
                        li.symbols.insert(sym.name.clone(), i as u32);
                    }
                }
            }
            for slot in &lib.image.irelative_slots {
                li.irelative_by_resolver
                    .entry(slot.resolver_vaddr)
                    .or_insert(Vaddr(slot.vaddr));
            }
            index.libs.push(li);
        }
        if let crate::Home::Library { interposers } = model.home {
            index.interposed = interposed(model, &index.libs, interposers);
        }
        index
    }

    /// The definition that interposes the home library's exported `name`, if a module
    /// before the library in the global scope defines it (only for a library's model).
    pub(crate) fn interposer(&self, name: &str) -> Option<ImageSymRef> {
        self.interposed.get(name).copied()
    }

    /// A defined global (or weak) symbol of the executable.
    pub(crate) fn exe_global(&self, name: &str) -> Option<ImageSymRef> {
        self.exe_globals.get(name).map(|&index| ImageSymRef {
            module: ModuleId::Exe,
            index,
        })
    }

    /// A hidden global of the executable that the linker made local (see the module docs):
    /// with several of that name, the one `prefer` accepts (defined by the unit being
    /// replaced, by its DWARF) wins, else the first.
    pub(crate) fn exe_hidden(
        &self,
        model: &ImageModel,
        name: &str,
        prefer: Option<&dyn Fn(&ImageSymbol) -> bool>,
    ) -> Option<ImageSymRef> {
        let list = self.exe_hidden.get(name)?;
        let refs = list.iter().map(|&index| ImageSymRef {
            module: ModuleId::Exe,
            index,
        });
        if let (Some(prefer), true) = (prefer, list.len() > 1) {
            if let Some(r) = refs.clone().find(|r| prefer(r.get(model))) {
                return Some(r);
            }
        }
        refs.into_iter().next()
    }

    /// A local symbol of the executable's translation unit `tu`, by exact name.
    pub(crate) fn exe_local(&self, tu: TranslationUnitId, name: &str) -> Option<ImageSymRef> {
        self.exe_locals
            .get(&(tu, name.to_string()))
            .map(|&index| ImageSymRef {
                module: ModuleId::Exe,
                index,
            })
    }

    /// A function-local static of `tu`: the exact name if the image has it, else the only
    /// local whose name without numeric suffix is the same. `Err` lists the candidates when
    /// the stripped name is ambiguous (two functions each with a `static int calls`).
    pub(crate) fn exe_local_static(
        &self,
        model: &ImageModel,
        tu: TranslationUnitId,
        name: &str,
    ) -> Result<Option<ImageSymRef>, Vec<String>> {
        let stripped = strip_numeric_suffix(name);
        if stripped.len() == name.len() {
            return Ok(self.exe_local(tu, name));
        }
        let candidates = match self.exe_local_statics.get(&(tu, stripped.to_string())) {
            Some(c) => c,
            None => return Ok(None),
        };
        let refs = candidates.iter().map(|&index| ImageSymRef {
            module: ModuleId::Exe,
            index,
        });
        match candidates.len() {
            1 => Ok(refs.into_iter().next()),
            _ => {
                if let Some(exact) = self.exe_local(tu, name) {
                    return Ok(Some(exact));
                }
                Err(refs.map(|r| r.get(model).name.clone()).collect())
            }
        }
    }

    /// A function-local static of `tu` by scoped match name (`tick/calls`). `Err(())` when
    /// the image knows the scopes of statics named like this one and none matches: the
    /// static is new. `Ok(None)` when the image cannot tell.
    pub(crate) fn exe_scoped_static(
        &self,
        tu: TranslationUnitId,
        match_name: &str,
    ) -> Result<Option<ImageSymRef>, ()> {
        if let Some(list) = self.exe_scoped_statics.get(&(tu, match_name.to_string())) {
            if let [only] = list.as_slice() {
                return Ok(Some(ImageSymRef {
                    module: ModuleId::Exe,
                    index: *only,
                }));
            }
            return Ok(None);
        }
        let stripped = match_name.rsplit('/').next().unwrap_or(match_name);
        if self.exe_scoped_names.contains(&(tu, stripped.to_string())) {
            Err(())
        } else {
            Ok(None)
        }
    }

    /// The first library (in load order) defining `name` with its default version.
    pub(crate) fn lib_lookup(&self, name: &str) -> Option<ImageSymRef> {
        self.libs.iter().enumerate().find_map(|(lib, li)| {
            li.symbols.get(name).map(|&index| ImageSymRef {
                module: ModuleId::Lib(lib),
                index,
            })
        })
    }

    /// [`ImageIndex::lib_lookup`] for a definition a relink of the executable would bind
    /// `name` to: the first library in load order defining it, if that library is in the
    /// closure of the executable's `DT_NEEDED` entries (ld.so's startup list; the rest of
    /// the list is what the program loaded later, with `dlopen`, which a relink does not
    /// link against and which may be unloaded) and a direct dependency defines the name (ld
    /// resolves an executable's references only against the libraries on its command
    /// line). `None` otherwise, and for a library's model.
    pub(crate) fn startup_lib_lookup(
        &self,
        model: &crate::ImageModel,
        name: &str,
    ) -> Option<ImageSymRef> {
        if model.home != crate::Home::Executable {
            return None;
        }
        let found = self.lib_lookup(name)?;
        let ModuleId::Lib(first) = found.module else {
            return None;
        };
        // A library is known by its SONAME, or (none) by its file name, as DT_NEEDED
        // names it.
        let is_named = |lib: usize, needed: &str| {
            let module = &model.libs[lib];
            match &module.image.soname {
                Some(soname) => soname == needed,
                None => module.path.rsplit('/').next() == needed.rsplit('/').next(),
            }
        };
        let direct: Vec<usize> = (0..model.libs.len())
            .filter(|&lib| model.exe.image.needed.iter().any(|n| is_named(lib, n)))
            .collect();
        let mut startup = direct.clone();
        let mut next = 0;
        while let Some(&lib) = startup.get(next) {
            next += 1;
            for needed in &model.libs[lib].image.needed {
                for other in 0..model.libs.len() {
                    if !startup.contains(&other) && is_named(other, needed) {
                        startup.push(other);
                    }
                }
            }
        }
        let defined_directly = direct.iter().any(|&lib| {
            self.libs
                .get(lib)
                .is_some_and(|li| li.symbols.contains_key(name))
        });
        (startup.contains(&first) && defined_directly).then_some(found)
    }

    /// The executable's GOT slot for `name` of one of the given kinds.
    pub(crate) fn exe_got_slot(&self, name: &str, kinds: &[GotSlotKind]) -> Option<Vaddr> {
        self.exe_got
            .get(name)?
            .iter()
            .find(|(_, k)| kinds.contains(k))
            .map(|(v, _)| *v)
    }

    /// Names of the other `.symtab` functions of the executable at `vaddr` (aliases made by
    /// identical code folding), excluding `name` and its `.localalias`.
    pub(crate) fn other_functions_at(
        &self,
        model: &ImageModel,
        vaddr: Vaddr,
        name: &str,
    ) -> Vec<String> {
        let Some(list) = self.functions_at.get(&vaddr.0) else {
            return Vec::new();
        };
        let mut names: Vec<String> = list
            .iter()
            .map(|&i| model.exe.image.symbols[i as usize].name.clone())
            .filter(|n| n != name && n.strip_suffix(".localalias") != Some(name))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The executable's PLT entry for `name`.
    pub(crate) fn exe_plt(&self, name: &str) -> Option<Vaddr> {
        self.exe_plt.get(name).copied()
    }

    /// The `IRELATIVE` slot of library `lib` whose resolver is at `resolver`.
    pub(crate) fn lib_irelative(&self, lib: usize, resolver: Vaddr) -> Option<Vaddr> {
        self.libs
            .get(lib)?
            .irelative_by_resolver
            .get(&resolver.0)
            .copied()
    }

    /// Gaps between symbols (where padding lives) that overlap `range`: each gap runs from
    /// the furthest end of the symbols before it to the start of the next symbol.
    pub(crate) fn gaps_overlapping(
        &self,
        range: std::ops::Range<u64>,
    ) -> Vec<std::ops::Range<u64>> {
        let first = self.extents.partition_point(|e| e.start < range.start);
        let mut gaps = Vec::new();
        for idx in first..=self.extents.len() {
            let Some(extent) = self.extents.get(idx) else {
                break;
            };
            let gap = self.prefix_max_end[idx]..extent.start;
            if gap.start >= range.end {
                break;
            }
            if gap.start < gap.end && gap.end > range.start {
                gaps.push(gap);
            }
        }
        gaps
    }

    /// The start of the first symbol starting after `vaddr`, if any.
    pub(crate) fn next_symbol_start(&self, vaddr: Vaddr) -> Option<u64> {
        let idx = self.extents.partition_point(|e| e.start <= vaddr.0);
        self.extents.get(idx).map(|e| e.start)
    }
}

/// The library's (`model.exe`'s) exported definitions of default visibility that one of the
/// first `interposers` modules of `model.libs` defines too (its `.dynsym`, default version),
/// with the first such definition: ELF interposition, as the dynamic linker resolves every
/// reference of the library to an exported name (through its GOT and PLT), whether the
/// library referred to it at build time or not. A `R_X86_64_COPY` of a library variable in
/// the executable is such a definition: the copy is the variable. (Protected visibility
/// binds locally and is left out; so would `-Bsymbolic`, which is not read.)
fn interposed(
    model: &ImageModel,
    libs: &[LibIndex],
    interposers: usize,
) -> HashMap<String, ImageSymRef> {
    let mut out = HashMap::default();
    for sym in &model.exe.image.symbols {
        let exported = sym.dynamic
            && sym.defined
            && sym.default_version
            && sym.binding != Binding::Local
            && sym.visibility == hot_object::Visibility::Default
            && !matches!(sym.kind, SymbolKind::Section | SymbolKind::File);
        if !exported || out.contains_key(&sym.name) {
            continue;
        }
        let before = libs
            .iter()
            .take(interposers)
            .enumerate()
            .find_map(|(i, li)| {
                li.symbols.get(&sym.name).map(|&index| ImageSymRef {
                    module: ModuleId::Lib(i),
                    index,
                })
            });
        if let Some(r) = before {
            out.insert(sym.name.clone(), r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strip_numeric_suffix;

    #[test]
    fn numeric_suffixes_are_stripped() {
        assert_eq!(strip_numeric_suffix("calls.0"), "calls");
        assert_eq!(strip_numeric_suffix("calls.12.3"), "calls");
        assert_eq!(strip_numeric_suffix("calls"), "calls");
        assert_eq!(strip_numeric_suffix("foo.cold"), "foo.cold");
        assert_eq!(strip_numeric_suffix(".5"), ".5");
    }
}
