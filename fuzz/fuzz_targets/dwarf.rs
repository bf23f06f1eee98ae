//! The DWARF reader: fuzzed debug sections wrapped into a well-formed relocatable ELF object
//! (a function in `.text`, a variable in `.data`), so that every input reaches the DWARF
//! code instead of stopping at the ELF headers.
//!
//! Input: records `[section selector: u8][length: u32 LE][bytes]`. Selectors 0-7 name the
//! debug sections below; selector 8 lists 4-byte offsets of `.debug_info` that get an
//! `R_X86_64_64` relocation against `.text` (the synthetic section addresses the reader
//! maps line rows and variables by). `fuzz/seeds.sh` writes real sections in this format.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use object::write::{Object, Relocation, Symbol, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind,
    SymbolScope,
};

const SECTIONS: [&str; 8] = [
    ".debug_abbrev",
    ".debug_info",
    ".debug_line",
    ".debug_str",
    ".debug_line_str",
    ".debug_rnglists",
    ".debug_addr",
    ".debug_str_offsets",
];

fn records(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 5 {
        let selector = data[0];
        let len = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let rest = &data[5..];
        let len = len.min(rest.len());
        out.push((selector % 9, &rest[..len]));
        data = &rest[len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.add_section(Vec::new(), b".text.f".to_vec(), SectionKind::Text);
    obj.append_section_data(text, &[0xc3; 32], 16);
    obj.add_symbol(Symbol {
        name: b"f".to_vec(),
        value: 0,
        size: 32,
        kind: SymbolKind::Text,
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Section(text),
        flags: SymbolFlags::None,
    });
    let data_section = obj.add_section(Vec::new(), b".data.v".to_vec(), SectionKind::Data);
    obj.append_section_data(data_section, &[1, 0, 0, 0], 4);
    obj.add_symbol(Symbol {
        name: b"v".to_vec(),
        value: 0,
        size: 4,
        kind: SymbolKind::Data,
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Section(data_section),
        flags: SymbolFlags::None,
    });
    let mut contents: Vec<Vec<u8>> = vec![Vec::new(); SECTIONS.len()];
    let mut relocations = Vec::new();
    for (selector, bytes) in records(data) {
        match SECTIONS.get(selector as usize) {
            Some(_) => contents[selector as usize].extend_from_slice(bytes),
            None => relocations.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64),
            ),
        }
    }
    let mut info = None;
    for (name, bytes) in SECTIONS.iter().zip(&contents) {
        if bytes.is_empty() {
            continue;
        }
        let id = obj.add_section(Vec::new(), name.as_bytes().to_vec(), SectionKind::Debug);
        obj.append_section_data(id, bytes, 1);
        if *name == ".debug_info" {
            info = Some((id, bytes.len() as u64));
        }
    }
    if let Some((info, len)) = info {
        let text_symbol = obj.section_symbol(text);
        for offset in relocations {
            if offset + 8 <= len {
                let _ = obj.add_relocation(
                    info,
                    Relocation {
                        offset,
                        symbol: text_symbol,
                        addend: (offset % 32) as i64,
                        flags: RelocationFlags::Elf {
                            r_type: object::elf::R_X86_64_64,
                        },
                    },
                );
            }
        }
    }
    let Ok(bytes) = obj.write() else {
        return;
    };
    if let Ok(object) = hot_object::Object::parse(std::path::Path::new("fuzzed.o"), &bytes) {
        common::exercise_object(&object);
    }
});
