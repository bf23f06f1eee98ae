//! What the fuzz targets share: the accessors the session uses on a parsed object or image
//! (so that lazily wrong data shows up here, not in a later phase), and the real program
//! the link planner links against, built once with the real `cc`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use hot_link::{Arenas, ImageModel, Linker, Module, RuntimeAddr, UnitRef};
use hot_object::{LinkedImage, Object};

#[path = "../../../crates/hot-link/tests/exercise/mod.rs"]
mod exercise;
// Each target uses some of these.
#[allow(unused_imports)]
pub use exercise::{exercise_image, exercise_object};

const PROG: &str = include_str!("../../../crates/hot-link/tests/fixtures/hostile_prog.c");
const LIB: &str = include_str!("../../../crates/hot-link/tests/fixtures/hostile_lib.c");

/// Load bias of the executable (a PIE with ASLR off) and of the library.
pub const BIAS: u64 = 0x5555_5555_4000;
const LIB_BIAS: u64 = 0x7fff_e000_0000;

/// The real program: linker over the executable + library, and its file's object.
pub struct Program {
    pub linker: Linker,
    pub model: ImageModel,
    pub v1: Object,
    pub unit: UnitRef,
    pub exe: Vec<u8>,
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed");
}

fn parse_image(path: &Path) -> LinkedImage {
    let bytes = std::fs::read(path).expect("read image");
    LinkedImage::parse(path, &bytes).unwrap_or_else(|e| panic!("{e}"))
}

pub fn arenas() -> Arenas {
    Arenas {
        code: RuntimeAddr(0x5555_0000_0000)..RuntimeAddr(0x5555_0010_0000),
        data: RuntimeAddr(0x5555_0010_0000)..RuntimeAddr(0x5555_0020_0000),
    }
}

pub fn program() -> &'static Program {
    static PROGRAM: OnceLock<Program> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("hot-lsp-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("fz.c"), LIB).expect("write");
        std::fs::write(dir.join("prog.c"), PROG).expect("write");
        run(Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-g", "fz.c", "-o", "libfz.so"])
            .current_dir(&dir));
        run(Command::new("cc")
            .args([
                "-O0",
                "-g",
                "-ffunction-sections",
                "-fdata-sections",
                "prog.c",
            ])
            .args(["-L.", "-lfz", "-o", "prog"])
            .current_dir(&dir));
        run(Command::new("cc")
            .args(["-c", "-O0", "-g", "-ffunction-sections", "-fdata-sections"])
            .args(["prog.c", "-o", "prog.o"])
            .current_dir(&dir));
        let exe_image = parse_image(&dir.join("prog"));
        let tu = exe_image
            .translation_units
            .iter()
            .position(|n| n == "prog.c")
            .map(|i| hot_object::TranslationUnitId(i as u32));
        let libc = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib64/libc.so.6",
            "/lib64/libc.so.6",
        ]
        .iter()
        .find(|p| Path::new(p).exists())
        .expect("libc.so.6");
        let model = ImageModel {
            exe: Module {
                path: "prog".into(),
                bias: BIAS,
                image: Arc::new(exe_image),
            },
            libs: vec![
                Module {
                    path: "libfz.so".into(),
                    bias: LIB_BIAS,
                    image: Arc::new(parse_image(&dir.join("libfz.so"))),
                },
                Module {
                    path: libc.to_string(),
                    bias: 0x7fff_f000_0000,
                    image: Arc::new(parse_image(Path::new(libc))),
                },
            ],
            home: Default::default(),
        };
        let linker = Linker::new(model.clone(), arenas());
        linker.prepare();
        let v1_bytes = std::fs::read(dir.join("prog.o")).expect("read");
        let v1 = Object::parse(Path::new("prog.o"), &v1_bytes).expect("parse prog.o");
        let exe = std::fs::read(dir.join("prog")).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        Program {
            linker,
            model,
            v1,
            unit: UnitRef {
                tu,
                compile_unit: None,
                source: "prog.c".into(),
            },
            exe,
        }
    })
}
