//! A linked ELF image (the debuggee's executable or one of its shared libraries) as plain
//! data: what the patch linker needs to resolve references against the running program.
//!
//! All addresses here are link-time virtual addresses (`vaddr`); a PIE or a shared library
//! adds its load bias at run time.

use std::path::Path;

use crate::ObjectError;

/// Index into [`LinkedImage::translation_units`]: the `STT_FILE` group a local symbol
/// belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TranslationUnitId(pub u32);

#[derive(Clone, Debug)]
pub struct ImageSymbol {
    /// The name with any version suffix removed (`stdout@GLIBC_2.2.5` -> `stdout`).
    pub name: String,
    pub vaddr: u64,
    pub size: u64,
    pub kind: crate::SymbolKind,
    pub binding: crate::Binding,
    /// For local symbols: the translation unit (`STT_FILE` group) they were defined in.
    pub tu: Option<TranslationUnitId>,
    /// The section the symbol is defined in (its output section name), `None` if undefined.
    pub section: Option<String>,
    /// Defined (not `SHN_UNDEF`).
    pub defined: bool,
    /// From `.dynsym` (exported / imported dynamically) rather than `.symtab`.
    pub dynamic: bool,
    /// For dynamic symbols: this is the default version (`@@`) or unversioned.
    pub default_version: bool,
    /// `st_other`'s visibility. A LOCAL symbol with [`Visibility::Hidden`] or
    /// [`Visibility::Internal`] was a global of its file that the linker made local (gold
    /// and lld list those so, wherever they put them in `.symtab`).
    pub visibility: Visibility,
}

/// ELF symbol visibility (`st_other & 3`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Visibility {
    #[default]
    Default,
    Protected,
    Hidden,
    Internal,
}

impl Visibility {
    /// `STV_HIDDEN` or `STV_INTERNAL`: not visible outside the linked module.
    pub fn is_hidden(self) -> bool {
        matches!(self, Visibility::Hidden | Visibility::Internal)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GotSlotKind {
    /// `R_X86_64_JUMP_SLOT`: lazily bound PLT slot; jumping through it is correct, reading it
    /// as the function's address is not.
    JumpSlot,
    /// `R_X86_64_GLOB_DAT`: holds the symbol's resolved address once relocated.
    GlobDat,
    /// `R_X86_64_COPY`: the executable owns a copy of a library variable at `vaddr`.
    Copy,
    /// `R_X86_64_64` in writable data: an absolute pointer resolved by the dynamic linker.
    Abs64,
    /// Added: a Mach-O thread-local variable pointer (`__thread_ptrs`): holds the address of
    /// the variable's descriptor, which a `TLV` load reads.
    ThreadLocalPointer,
}

/// A slot filled in by the dynamic linker for a named symbol.
#[derive(Clone, Debug)]
pub struct GotSlot {
    pub symbol: String,
    pub vaddr: u64,
    pub kind: GotSlotKind,
    /// The relocation's addend: an `R_X86_64_64` word of `&arr[2]` holds `arr + 8`.
    pub addend: i64,
}

/// `R_X86_64_IRELATIVE`: a slot at `vaddr` that holds the implementation chosen by the
/// resolver at `resolver_vaddr` (the addend). The chosen value lives only in the target's
/// memory.
#[derive(Clone, Copy, Debug)]
pub struct IrelativeSlot {
    pub vaddr: u64,
    pub resolver_vaddr: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct TlsSegment {
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

/// A DWARF compile unit of the image: which source files are linked into it.
#[derive(Clone, Debug)]
pub struct CompileUnit {
    pub name: String,
    pub comp_dir: Option<String>,
    pub producer: Option<String>,
    /// The unit's code, `[begin, end)` vaddrs (`DW_AT_low_pc`/`DW_AT_high_pc` or
    /// `DW_AT_ranges`): which file a global symbol of the image was defined by (a weak
    /// default and its strong override live in different units).
    pub ranges: Vec<(u64, u64)>,
    /// The vaddrs of its variables with static storage (`DW_OP_addr` locations), sorted.
    /// With `ranges` they tell which `STT_FILE` group holds the unit's local symbols.
    pub variables: Vec<u64>,
    /// Its external functions whose code lies in the image under no symbol, by linkage name
    /// (else name) and vaddr (`DW_AT_low_pc`): a weak default that a strong definition of
    /// another file overrode (ld keeps its bytes and drops its symbol). When that strong
    /// definition is deleted, this body is the definition in use again.
    pub unnamed_functions: Vec<(String, u64)>,
}

/// Contents of one allocated section, kept so the linker can decode old function bodies and
/// compare against the image without touching the process.
#[derive(Clone, Debug)]
pub struct SectionData {
    pub name: String,
    pub vaddr: u64,
    /// Section contents as in the file (empty for NOBITS).
    pub bytes: Vec<u8>,
    pub size: u64,
    pub executable: bool,
    pub writable: bool,
}

/// `LinkedImage::default()` is an empty image, handy for building test values.
#[derive(Clone, Debug, Default)]
pub struct LinkedImage {
    /// The architecture (`e_machine`).
    pub machine: crate::Machine,
    /// `NT_GNU_BUILD_ID`, if present.
    pub build_id: Option<Vec<u8>>,
    /// `ET_DYN` (PIE or shared library) rather than `ET_EXEC`.
    pub position_independent: bool,
    /// `DT_SONAME`, for shared libraries.
    pub soname: Option<String>,
    /// The `DT_NEEDED` names, in `.dynamic` order: the libraries the static linker linked
    /// this module against (a SONAME, or a file name), which ld.so loads at startup.
    pub needed: Vec<String>,
    /// The `.symtab` symbols (`dynamic == false`; none for a stripped file), then the
    /// `.dynsym` symbols (`dynamic == true`), each in table order. The null symbol,
    /// `STT_SECTION` and `STT_FILE` entries are not listed (the latter become
    /// [`LinkedImage::translation_units`]).
    pub symbols: Vec<ImageSymbol>,
    /// `STT_FILE` names, indexed by [`TranslationUnitId`].
    pub translation_units: Vec<String>,
    pub got_slots: Vec<GotSlot>,
    pub irelative_slots: Vec<IrelativeSlot>,
    /// PLT entries by symbol name (from `.plt`/`.plt.sec`/`.plt.got` and the relocations).
    pub plt_entries: Vec<(String, u64)>,
    pub tls: Option<TlsSegment>,
    pub compile_units: Vec<CompileUnit>,
    pub sections: Vec<SectionData>,
    /// Lowest and highest (exclusive) vaddr of the `PT_LOAD` segments.
    pub vaddr_range: (u64, u64),
    /// Whether the image had a `.symtab` at all.
    pub has_symtab: bool,
    /// Added: non-fatal problems met while reading, e.g. DWARF that could not be read to the
    /// end (then `compile_units` holds the units read before the problem).
    pub warnings: Vec<String>,
    /// Added: function-local static variables by vaddr, with the name of the function that
    /// declares them (from DWARF), sorted by vaddr. gcc's `calls.0` / `calls.1` are told
    /// apart by this, the same way [`crate::Object::match_name`] does for a new object; see
    /// [`LinkedImage::local_static_scope`] and [`LinkedImage::match_name`].
    pub local_static_scopes: Vec<(u64, String)>,
    /// `R_X86_64_RELATIVE` (and aarch64's) dynamic relocations: the word at `vaddr` holds
    /// `bias + addend` at run time. Sorted by vaddr. With these the linker knows what a named
    /// read-only object of a PIE holds in memory (its pointers moved by the load bias)
    /// before it updates that object in place.
    pub relative_relocs: Vec<(u64, i64)>,
    /// Added: the statement boundaries near function starts: the addresses of the DWARF
    /// line-table rows marked `is_stmt` that lie strictly after the start of a function
    /// symbol and less than [`STATEMENT_WINDOW`] bytes into it, sorted and deduplicated.
    /// A debugger puts its breakpoints there (`break f` after the prologue: entry+4 of an
    /// -O0 `push %rbp; mov %rsp,%rbp`), so a jump written over the first bytes must not
    /// cover one (see hot-link's `entry.rs`). Empty without DWARF.
    pub statement_starts: Vec<u64>,
}

/// What link-time optimization left in an image ([`LinkedImage::link_time_optimized`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkTimeOptimized {
    /// The compile units (indexes into [`LinkedImage::compile_units`]) of the source files
    /// that went through LTO; empty when the image cannot tell them apart (no DWARF), so
    /// every file of it did as far as anyone can know.
    pub units: Vec<usize>,
    /// What gave it away, for messages: "a `<artificial>` compile unit", ...
    pub evidence: String,
}

/// How far into a function [`LinkedImage::statement_starts`] are kept: enough for the entry
/// jump, a prologue before it and the jump's own 5 bytes after it.
pub const STATEMENT_WINDOW: u64 = 32;

impl LinkedImage {
    /// Parse a linked executable or shared library: ELF, or 64-bit Mach-O (`macho_image.rs`
    /// says how its GOT, stubs and binds fill this model). An executable without `.symtab` is
    /// accepted here (the caller decides whether that is fatal: it is for the debuggee's
    /// executable, not for libraries).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<LinkedImage, ObjectError> {
        if crate::macho::is_macho(bytes) {
            return crate::macho_image::parse_linked(path, bytes);
        }
        crate::elf::parse_linked(path, bytes)
    }

    /// The container format the image was read from. Mach-O sections are named
    /// `SEGMENT,section` by the reader (`__TEXT,__text`), which no ELF section name is.
    pub fn format(&self) -> crate::ObjectFormat {
        if self
            .sections
            .iter()
            .any(|s| s.name.starts_with("__") && s.name.contains(','))
        {
            crate::ObjectFormat::MachO
        } else {
            crate::ObjectFormat::Elf
        }
    }

    /// [`ObjectError::Stripped`] when the image has no `.symtab`: fatal for the debuggee's
    /// executable, whose local functions and variables are only named there.
    pub fn require_symtab(&self, path: &Path) -> Result<(), ObjectError> {
        if self.has_symtab {
            Ok(())
        } else {
            Err(ObjectError::Stripped {
                path: path.to_owned(),
            })
        }
    }

    /// The function declaring the function-local static variable at `vaddr`, if DWARF says.
    pub fn local_static_scope(&self, vaddr: u64) -> Option<&str> {
        let i = self
            .local_static_scopes
            .binary_search_by_key(&vaddr, |(v, _)| *v)
            .ok()?;
        Some(&self.local_static_scopes[i].1)
    }

    /// The name `symbol` is matched by, the same as [`crate::Object::match_name`] for the
    /// symbols of a new object: `tick/calls` for gcc's local static `calls.0` declared in
    /// `tick`, the name without numeric suffix for a local static of unknown scope, else the
    /// name itself.
    pub fn match_name(&self, symbol: &ImageSymbol) -> String {
        if symbol.binding != crate::Binding::Local {
            return symbol.name.clone();
        }
        let Some(base) = crate::diff::strip_numeric_suffix(&symbol.name) else {
            return symbol.name.clone();
        };
        match self.local_static_scope(symbol.vaddr) {
            Some(scope) if symbol.defined => format!("{scope}/{base}"),
            _ => base.to_string(),
        }
    }

    /// The section containing `vaddr`, if any. `.tbss` takes no address space and overlaps
    /// the section after it (`.init_array`, `.data.rel.ro`), so a section with contents or a
    /// non-TLS one is preferred when two match.
    pub fn section_at(&self, vaddr: u64) -> Option<&SectionData> {
        let mut found: Option<&SectionData> = None;
        for s in &self.sections {
            if vaddr >= s.vaddr && vaddr - s.vaddr < s.size {
                if !s.bytes.is_empty() || !s.name.starts_with(".tbss") {
                    return Some(s);
                }
                found = found.or(Some(s));
            }
        }
        found
    }

    /// The compile unit whose DWARF address ranges contain `vaddr`.
    pub fn compile_unit_at(&self, vaddr: u64) -> Option<usize> {
        self.compile_units
            .iter()
            .position(|cu| cu.ranges.iter().any(|&(lo, hi)| lo <= vaddr && vaddr < hi))
    }

    /// The statement boundaries strictly inside `(start, end)` (see
    /// [`LinkedImage::statement_starts`]).
    pub fn statements_in(&self, start: u64, end: u64) -> &[u64] {
        let from = self.statement_starts.partition_point(|&a| a <= start);
        let to = self.statement_starts.partition_point(|&a| a < end);
        self.statement_starts.get(from..to.max(from)).unwrap_or(&[])
    }

    /// Whether (part of) the image was made by link-time optimization, and from which
    /// files. LTO compiles the code of many files as one (gcc's `<artificial>` unit), inlines
    /// across them and renames their statics, so a function's code may live inside other
    /// files' functions: replacing its entry would not change what runs.
    ///
    /// Measured with gcc 12 and clang 14, GNU ld and lld: gcc's LTO output is a compile unit
    /// named `<artificial>` whose producer starts `GNU GIMPLE`; its files keep early-debug
    /// units of their own name with no code. The code LTO made sits in an `STT_FILE` group
    /// with no name (GNU ld, for plugin output; the nameless group GNU ld puts last is its
    /// own, for symbols it made local) or `ld-temp.o` (lld). Files compiled without LTO in
    /// the same program keep an `STT_FILE` group of their own name, so the files that went
    /// through LTO are the units with no group of their name. clang's ThinLTO with lld keeps
    /// every file's name: that build is not recognised here (the session also reads the
    /// compile commands).
    pub fn link_time_optimized(&self) -> Option<LinkTimeOptimized> {
        let gimple = |cu: &CompileUnit| {
            cu.name == "<artificial>"
                || cu
                    .producer
                    .as_deref()
                    .is_some_and(|p| p.starts_with("GNU GIMPLE"))
        };
        let last_group = self.translation_units.len().checked_sub(1);
        let merged_group = |tu: TranslationUnitId| {
            let i = tu.0 as usize;
            match self.translation_units.get(i).map(String::as_str) {
                Some("") => Some(i) != last_group,
                Some(name) => name == "ld-temp.o" || name.ends_with("/ld-temp.o"),
                None => false,
            }
        };
        let evidence = if self.compile_units.iter().any(gimple) {
            "a `<artificial>` compile unit (gcc's link-time optimization)"
        } else if self.symbols.iter().any(|s| {
            !s.dynamic
                && s.defined
                && s.kind == crate::SymbolKind::Function
                && s.visibility == Visibility::Default
                && s.tu.is_some_and(merged_group)
        }) {
            "functions in a file symbol of the linker's link-time optimization output"
        } else {
            return None;
        };
        let base = |name: &str| name.rsplit('/').next().unwrap_or(name).to_string();
        let groups: std::collections::HashSet<String> = self
            .translation_units
            .iter()
            .filter(|n| !n.is_empty())
            .map(|n| base(n))
            .collect();
        let units = self
            .compile_units
            .iter()
            .enumerate()
            .filter(|(_, cu)| !gimple(cu) && !groups.contains(&base(&cu.name)))
            .map(|(i, _)| i)
            .collect();
        Some(LinkTimeOptimized {
            units,
            evidence: evidence.to_string(),
        })
    }

    /// Bytes of the image at `vaddr`, as in the file.
    pub fn bytes_at(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        let s = self.section_at(vaddr)?;
        let start = (vaddr - s.vaddr) as usize;
        s.bytes.get(start..start.checked_add(len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image with `groups` as its `STT_FILE` names, one local function in each (at
    /// 0x1000 * (group + 1)), and compile units named `units` (`(name, producer)`).
    fn image(groups: &[&str], units: &[(&str, &str)]) -> LinkedImage {
        LinkedImage {
            translation_units: groups.iter().map(|g| g.to_string()).collect(),
            symbols: (0..groups.len())
                .map(|g| ImageSymbol {
                    name: format!("f{g}"),
                    vaddr: 0x1000 * (g as u64 + 1),
                    size: 16,
                    kind: crate::SymbolKind::Function,
                    binding: crate::Binding::Local,
                    tu: Some(TranslationUnitId(g as u32)),
                    section: Some(".text".into()),
                    defined: true,
                    dynamic: false,
                    default_version: true,
                    visibility: Visibility::Default,
                })
                .collect(),
            compile_units: units
                .iter()
                .map(|(name, producer)| CompileUnit {
                    name: name.to_string(),
                    comp_dir: Some("/src".into()),
                    producer: Some(producer.to_string()),
                    ranges: Vec::new(),
                    variables: Vec::new(),
                    unnamed_functions: Vec::new(),
                })
                .collect(),
            ..LinkedImage::default()
        }
    }

    /// `STT_FILE` names, compile units (name, producer), and the LTO'd units expected.
    type Row = (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        Option<&'static [usize]>,
    );

    /// Measured shapes (gcc 12, clang 14, GNU ld, lld): which units went through LTO, or
    /// `None` for an image LTO did not make.
    #[test]
    fn link_time_optimization_is_told_by_units_and_file_symbols() {
        const GCC: &str = "GNU C17 12.2.0 -O0 -flto";
        const GIMPLE: &str = "GNU GIMPLE 12.2.0 -O0 -fltrans";
        const CLANG: &str = "Debian clang version 14.0.6";
        let rows: &[Row] = &[
            // Not LTO: every file has its group; GNU ld's own nameless group comes last.
            (
                &["crtstuff.c", "a.c", "m.c", ""],
                &[("a.c", CLANG), ("m.c", CLANG)],
                None,
            ),
            // gcc: `<artificial>`, the LTO'd files' units have no group; b.c was not LTO'd.
            (
                &["crtstuff.c", "", "b.c", ""],
                &[
                    ("<artificial>", GIMPLE),
                    ("a.c", GCC),
                    ("b.c", "GNU C17"),
                    ("m.c", GCC),
                ],
                Some(&[1, 3]),
            ),
            // clang with GNU ld: a nameless group that is not the last one.
            (
                &["crtstuff.c", "", "crtstuff.c", ""],
                &[("a.c", CLANG), ("m.c", CLANG)],
                Some(&[0, 1]),
            ),
            // clang with lld.
            (&["crtstuff.c", "ld-temp.o"], &[("a.c", CLANG)], Some(&[0])),
            // Without DWARF the files cannot be told apart.
            (&["crtstuff.c", "ld-temp.o"], &[], Some(&[])),
        ];
        for (groups, units, expected) in rows {
            let found = image(groups, units).link_time_optimized().map(|l| l.units);
            assert_eq!(
                found.as_deref(),
                *expected,
                "groups {groups:?}, units {units:?}"
            );
        }
    }
}
