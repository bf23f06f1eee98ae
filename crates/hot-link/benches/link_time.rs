//! Link time of a one-function edit in programs of 1k and 100k functions.
//!
//! The running image is synthetic (a `.text` of N small functions with their symbols, as
//! hot-object would parse them from a real executable), the edited translation unit is real:
//! 20 functions calling into the program, compiled with `cc`, once as the baseline and once
//! with one function edited. The link must cost time proportional to the edit: the image's
//! hash maps are built once (timed separately), never per link.
//!
//! Run with `cargo bench -p hot-link`; prints the median link time in microseconds.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use hot_link::{Arenas, ImageModel, LinkRequest, Linker, Module, RuntimeAddr, UnitRef};
use hot_object::{
    Binding, ImageSymbol, LinkedImage, Object, SectionData, SymbolKind, TranslationUnitId,
    Visibility,
};

const TEXT: u64 = 0x10000;
const FN_SIZE: u64 = 32;
const EDIT_FUNCTIONS: usize = 20;

fn image_with(n: usize) -> LinkedImage {
    // push %rbp; mov %rsp,%rbp; mov %edi,-4(%rbp); mov -4(%rbp),%eax; add $1,%eax; pop %rbp; ret
    let body: [u8; 15] = [
        0x55, 0x48, 0x89, 0xe5, 0x89, 0x7d, 0xfc, 0x8b, 0x45, 0xfc, 0x83, 0xc0, 0x01, 0x5d, 0xc3,
    ];
    let total = n + EDIT_FUNCTIONS;
    let mut text = Vec::with_capacity(total * FN_SIZE as usize);
    let mut symbols = Vec::with_capacity(total + 2);
    let sym = |name: String, vaddr: u64, size: u64, kind: SymbolKind, tu: u32| ImageSymbol {
        name,
        vaddr,
        size,
        kind,
        binding: Binding::Global,
        tu: Some(TranslationUnitId(tu)),
        section: Some(".text".into()),
        defined: true,
        dynamic: false,
        default_version: true,
        visibility: Visibility::Default,
    };
    for i in 0..total {
        let mut f = body.to_vec();
        f.resize(FN_SIZE as usize, 0xcc);
        text.extend_from_slice(&f);
        let (name, tu) = if i < n {
            (format!("fn_{i}"), (i / 100) as u32 + 1)
        } else {
            (format!("edit_{}", i - n), 0)
        };
        symbols.push(sym(
            name,
            TEXT + i as u64 * FN_SIZE,
            body.len() as u64,
            SymbolKind::Function,
            tu,
        ));
    }
    let data = TEXT + text.len() as u64 + 0x1000;
    let mut counter = sym("edit_counter".into(), data, 4, SymbolKind::Object, 0);
    counter.section = Some(".data".into());
    symbols.push(counter);
    let mut translation_units = vec!["edit.c".to_string()];
    translation_units.extend((0..n.div_ceil(100)).map(|i| format!("part{i}.c")));
    LinkedImage {
        machine: hot_object::Machine::X86_64,
        build_id: None,
        position_independent: true,
        soname: None,
        symbols,
        translation_units,
        got_slots: Vec::new(),
        irelative_slots: Vec::new(),
        plt_entries: Vec::new(),
        tls: None,
        compile_units: Vec::new(),
        sections: vec![
            SectionData {
                name: ".text".into(),
                vaddr: TEXT,
                size: text.len() as u64,
                bytes: text,
                executable: true,
                writable: false,
            },
            SectionData {
                name: ".data".into(),
                vaddr: data,
                size: 8,
                bytes: vec![0; 8],
                executable: false,
                writable: true,
            },
        ],
        vaddr_range: (TEXT, data + 8),
        has_symtab: true,
        ..LinkedImage::default()
    }
}

fn edit_source(n: usize, edited: bool) -> String {
    let mut s = String::from("int edit_counter;\n");
    for k in 0..EDIT_FUNCTIONS {
        let callee = (k * 7919) % n;
        s += &format!("extern int fn_{callee}(int);\n");
        let op = if edited && k == 7 { "-" } else { "+" };
        s += &format!(
            "int edit_{k}(int x) {{ edit_counter {op}= x; return fn_{callee}(x) {op} {k}; }}\n"
        );
    }
    s
}

fn compile(dir: &Path, name: &str, source: &str) -> Object {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).expect("write source");
    let obj = dir.join(format!("{name}.o"));
    let status = Command::new("cc")
        .args([
            "-c",
            "-O1",
            "-g",
            "-ffunction-sections",
            "-fdata-sections",
            "-mno-direct-extern-access",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("running cc");
    assert!(status.success(), "cc failed");
    let bytes = std::fs::read(&obj).expect("read object");
    Object::parse(&obj, &bytes).expect("parse object")
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut medians = Vec::new();
    for n in [1_000usize, 100_000] {
        let base = compile(dir.path(), &format!("base{n}"), &edit_source(n, false));
        let edited = compile(dir.path(), &format!("edit{n}"), &edit_source(n, true));
        let model = ImageModel {
            exe: Module {
                path: "synthetic".into(),
                bias: 0x5555_5555_0000,
                image: Arc::new(image_with(n)),
            },
            libs: Vec::new(),
            home: Default::default(),
        };
        let arenas = Arenas {
            code: RuntimeAddr(0x5555_0000_0000)..RuntimeAddr(0x5555_1000_0000),
            data: RuntimeAddr(0x5555_1000_0000)..RuntimeAddr(0x5555_2000_0000),
        };
        let linker = Linker::new(model, arenas);
        let t = Instant::now();
        linker.prepare();
        let index_ms = t.elapsed().as_secs_f64() * 1e3;
        let request = LinkRequest {
            object: &edited,
            baseline: Some(&base),
            unit: UnitRef {
                tu: Some(TranslationUnitId(0)),
                compile_unit: None,
                source: "edit.c".into(),
            },
            applied: &[],
        };
        let mut times = Vec::new();
        for _ in 0..301 {
            let t = Instant::now();
            let patch = linker.link(&request).expect("link");
            times.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(patch.swapped, vec!["edit_7".to_string()]);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "program of {n:>6} functions: symbol index built once in {index_ms:.1} ms; one-function edit \
             link median {median:.1} µs (min {:.1}, max {:.1})",
            times[0],
            times[times.len() - 1]
        );
        medians.push(median);
    }
    if medians.iter().any(|&m| m >= 1000.0) {
        println!("WARNING: a one-function link took 1 ms or more");
        std::process::exit(1);
    }
}
