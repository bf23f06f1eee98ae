//! The session's running program: the debuggee handle, the model of its image (executable,
//! libraries, biases) and the linker that patches it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hot_link::{Arenas, ImageModel, Linker, Module, RuntimeAddr};
use hot_object::{LinkedImage, TranslationUnitId};
use hot_process::{Debuggee, Mapping, Protection};

use crate::compile_db::normalize;

/// Size of the code arena (bodies, read-only data, stubs) and of the data arena (new
/// variables, GOT slots). Address space only: pages are committed when written.
const CODE_ARENA_SIZE: u64 = 64 << 20;
const DATA_ARENA_SIZE: u64 = 16 << 20;
/// The least an arena may be when less room is free.
const MIN_ARENA_SIZE: u64 = 1 << 20;

/// A patch that was applied, kept so `undo` can revert it.
pub(crate) struct AppliedPatch {
    pub file: PathBuf,
    /// The file's baseline before this patch (restored by undo).
    pub previous_baseline: Option<crate::worker::Baseline>,
}

pub(crate) struct Program {
    pub debuggee: Debuggee,
    /// The running image, read once per launch or attach.
    pub image: Option<ImageModel>,
    pub linker: Option<Linker>,
    pub journal: Vec<AppliedPatch>,
}

impl Program {
    pub fn new(debuggee: Debuggee) -> Program {
        Program {
            debuggee,
            image: None,
            linker: None,
            journal: Vec::new(),
        }
    }

    /// Read the executable of the running process (once); its libraries come with the
    /// linker, once the dynamic linker has loaded them.
    pub fn image(&mut self) -> Result<&ImageModel, String> {
        if self.image.is_none() {
            self.image = Some(read_image(&self.debuggee)?);
        }
        self.image
            .as_ref()
            .ok_or_else(|| "the program's image could not be read".to_string())
    }

    /// The linker, created with fresh arenas the first time a patch needs it.
    pub fn linker(&mut self) -> Result<&mut Linker, String> {
        if self.linker.is_none() {
            // The libraries are read with the linker, not with the executable: right after
            // exec the dynamic linker has not loaded them yet (see `libraries_ready`).
            let exe = self.image()?.exe.clone();
            let libs = read_libraries(&self.debuggee, &exe)?;
            let model = {
                let image = self
                    .image
                    .as_mut()
                    .ok_or("the program's image is not read")?;
                image.libs = libs;
                image.clone()
            };
            // Arenas must be within rel32 reach of the executable's mappings.
            let exe_range = self
                .debuggee
                .image_range()
                .map_err(|e| format!("cannot find the executable's mappings: {e}"))?;
            // Sized to the gap when less room is free (a non-PIE executable below 2 GiB).
            let code = self
                .debuggee
                .map_arena_up_to(
                    exe_range.clone(),
                    CODE_ARENA_SIZE,
                    MIN_ARENA_SIZE,
                    Protection::ReadExecute,
                )
                .map_err(|e| format!("cannot map the code arena: {e}"))?;
            let data = self
                .debuggee
                .map_arena_up_to(
                    exe_range,
                    DATA_ARENA_SIZE,
                    MIN_ARENA_SIZE,
                    Protection::ReadWrite,
                )
                .map_err(|e| format!("cannot map the data arena: {e}"))?;
            let arenas = Arenas {
                code: RuntimeAddr(code.start)..RuntimeAddr(code.end),
                data: RuntimeAddr(data.start)..RuntimeAddr(data.end),
            };
            let linker = Linker::new(model, arenas);
            linker.prepare();
            self.linker = Some(linker);
        }
        self.linker
            .as_mut()
            .ok_or_else(|| "the linker could not be created".to_string())
    }
}

impl Program {
    /// Read the library list again and hand it to the linker if it changed (a library
    /// loaded with `dlopen` since, or a list read while ld.so was still loading). Returns
    /// whether anything changed, i.e. whether a failed link is worth retrying.
    pub fn refresh_libraries(&mut self) -> bool {
        let Some(image) = self.image.as_mut() else {
            return false;
        };
        let Some(linker) = self.linker.as_mut() else {
            return false;
        };
        let Ok(libs) = read_libraries(&self.debuggee, &image.exe) else {
            return false;
        };
        let key = |libs: &[Module]| -> Vec<(String, u64)> {
            libs.iter().map(|m| (m.path.clone(), m.bias)).collect()
        };
        if key(&libs) == key(&linker.image().libs) {
            return false;
        }
        image.libs = libs.clone();
        linker.set_libraries(libs);
        true
    }

    /// Whether the dynamic linker has finished loading the program's libraries, so the linker
    /// can be prepared now instead of on the first save.
    pub fn libraries_ready(&mut self) -> bool {
        let Ok(image) = self.image() else {
            return false;
        };
        let exe = image.exe.clone();
        let dynamic = exe.image.sections.iter().any(|s| s.name == ".dynamic");
        !dynamic || link_map(&self.debuggee, &exe).is_some()
    }
}

/// The load bias of a file mapped in the process: the start of its mapping at file offset 0
/// minus the page-aligned lowest `PT_LOAD` address.
fn bias_of(maps: &[Mapping], path: &str, image: &LinkedImage) -> Option<u64> {
    let first = maps.iter().find(|m| m.path == path && m.offset == 0)?;
    Some(first.range.start.wrapping_sub(image.vaddr_range.0 & !0xfff))
}

fn read_image(debuggee: &Debuggee) -> Result<ImageModel, String> {
    let (exe_path, exe_bytes) = debuggee
        .read_executable()
        .map_err(|e| format!("cannot read the program's executable: {e}"))?;
    let exe = LinkedImage::parse(Path::new(&exe_path), &exe_bytes).map_err(|e| e.to_string())?;
    if !exe.has_symtab {
        return Err(format!(
            "{exe_path} is stripped (it has no .symtab): hot-lsp needs the executable's symbol \
             table — build it without `-s` and do not strip it"
        ));
    }
    let maps = debuggee
        .mappings()
        .map_err(|e| format!("cannot read the memory map: {e}"))?;
    let exe_bias = if exe.position_independent {
        bias_of(&maps, &exe_path, &exe)
            .ok_or_else(|| format!("{exe_path} is not mapped in process {}", debuggee.pid()))?
    } else {
        0
    };
    Ok(ImageModel {
        exe: Module {
            path: exe_path,
            bias: exe_bias,
            image: Arc::new(exe),
        },
        libs: Vec::new(),
    })
}

/// The source file a compile unit was compiled from (`DW_AT_comp_dir` + `DW_AT_name`).
pub(crate) fn cu_source(cu: &hot_object::CompileUnit) -> PathBuf {
    let dir = cu.comp_dir.as_deref().unwrap_or("/");
    normalize(&Path::new(dir).join(&cu.name))
}

/// Which `STT_FILE` group and compile unit of the image hold `source`.
pub(crate) enum UnitMatch {
    Found(Option<TranslationUnitId>),
    /// The image has DWARF and no compile unit for this file.
    NotLinked,
}

pub(crate) fn unit_of(image: &LinkedImage, source: &Path) -> UnitMatch {
    let base = source.file_name().map(|b| b.to_string_lossy().into_owned());
    let same_base = |name: &str| {
        Path::new(name)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            == base
    };
    // Compile units with the same base name appear in link order, like the STT_FILE groups:
    // the k-th such unit is the k-th such group.
    let units: Vec<&hot_object::CompileUnit> = image
        .compile_units
        .iter()
        .filter(|cu| same_base(&cu.name))
        .collect();
    let rank = units.iter().position(|cu| cu_source(cu) == source);
    if !image.compile_units.is_empty() && rank.is_none() {
        return UnitMatch::NotLinked;
    }
    let groups: Vec<usize> = image
        .translation_units
        .iter()
        .enumerate()
        .filter(|(_, name)| same_base(name))
        .map(|(i, _)| i)
        .collect();
    let group = groups.get(rank.unwrap_or(0)).copied();
    UnitMatch::Found(group.map(|g| TranslationUnitId(g as u32)))
}

/// The producer string of the compile unit for `source`, if the image has one.
pub(crate) fn producer_of<'a>(image: &'a LinkedImage, source: &Path) -> Option<&'a str> {
    image.compile_units.iter().find_map(|cu| {
        (cu_source(cu) == source)
            .then_some(cu.producer.as_deref())
            .flatten()
    })
}

/// `r_debug.r_state` once the dynamic linker's list is complete.
const RT_CONSISTENT: u32 = 0;
/// `DT_DEBUG`: the dynamic linker stores the address of its `r_debug` there.
const DT_DEBUG: u64 = 21;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// The libraries in load order — the order ELF interposition follows — with their load
/// bias, from the dynamic linker's own list: the executable's `DT_DEBUG` entry points to
/// `r_debug`, whose `r_map` chains the `link_map`s. `None` while that list is not there or
/// not complete (right after exec, or during a `dlopen`).
fn link_map(debuggee: &Debuggee, exe: &Module) -> Option<Vec<(String, u64)>> {
    let dynamic = exe.image.sections.iter().find(|s| s.name == ".dynamic")?;
    let bytes = debuggee
        .read_memory(dynamic.vaddr.wrapping_add(exe.bias), dynamic.size as usize)
        .ok()?;
    let entries: Vec<(u64, u64)> = bytes
        .chunks_exact(16)
        .filter_map(|entry| {
            let tag = u64::from_le_bytes(entry[..8].try_into().ok()?);
            let value = u64::from_le_bytes(entry[8..].try_into().ok()?);
            Some((tag, value))
        })
        .take_while(|&(tag, _)| tag != DT_NULL)
        .collect();
    let r_debug = entries.iter().find(|(tag, _)| *tag == DT_DEBUG)?.1;
    let needed = entries.iter().filter(|(tag, _)| *tag == DT_NEEDED).count();
    if r_debug == 0 {
        return None;
    }
    let header = debuggee.read_memory(r_debug, 40).ok()?;
    let word = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .and_then(|w| w.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let state = u32::from_le_bytes(header.get(24..28)?.try_into().ok()?);
    if state != RT_CONSISTENT {
        return None;
    }
    let mut libs = Vec::new();
    let mut next = word(&header, 8)?;
    // A corrupt list must not loop forever.
    for _ in 0..4096 {
        if next == 0 {
            break;
        }
        let entry = debuggee.read_memory(next, 40).ok()?;
        let (l_addr, l_name) = (word(&entry, 0)?, word(&entry, 8)?);
        let name = read_c_string(debuggee, l_name).unwrap_or_default();
        // The executable (empty name) and the vDSO (no file) have nothing to read.
        if name.starts_with('/') {
            libs.push((name, l_addr));
        }
        next = word(&entry, 24)?;
    }
    // ld.so publishes a consistent list holding only the executable before it starts
    // loading: until every direct dependency is in it, the list is not the program's.
    let loaded = libs
        .iter()
        .filter(|(name, _)| !name.contains("/ld-linux"))
        .count();
    (loaded >= needed).then_some(libs)
}

fn read_c_string(debuggee: &Debuggee, addr: u64) -> Option<String> {
    if addr == 0 {
        return None;
    }
    // Read up to the end of the page first: the next page may not be mapped.
    let to_page_end = (4096 - (addr % 4096)) as usize;
    let mut bytes = debuggee.read_memory(addr, to_page_end.min(4096)).ok()?;
    if !bytes.contains(&0) {
        bytes.extend(debuggee.read_memory(addr + to_page_end as u64, 4096).ok()?);
    }
    let end = bytes.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// The shared libraries of the process, each with its bias: in `link_map` order when the
/// dynamic linker's list is readable, otherwise every library file mapped at offset 0.
fn read_libraries(debuggee: &Debuggee, exe: &Module) -> Result<Vec<Module>, String> {
    let maps = debuggee
        .mappings()
        .map_err(|e| format!("cannot read the memory map: {e}"))?;
    if let Some(list) = link_map(debuggee, exe) {
        let mut libs = Vec::new();
        for (path, bias) in list {
            // A library upgraded on disk shows as "(deleted)": its file is not what runs.
            if maps.iter().any(|m| m.path == format!("{path} (deleted)")) {
                tracing::warn!("{path} was replaced on disk; its symbols are not used");
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(image) = LinkedImage::parse(Path::new(&path), &bytes) else {
                continue;
            };
            libs.push(Module {
                path,
                bias,
                image: Arc::new(image),
            });
        }
        return Ok(libs);
    }
    let exe_path = exe.path.as_str();
    // Every file mapped at offset 0 that is not the executable. The dynamic linker maps
    // libraries top-down, so descending address approximates load order.
    let mut libs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut lib_maps: Vec<&Mapping> = maps
        .iter()
        .filter(|m| m.offset == 0 && m.path.starts_with('/') && m.path != exe_path)
        .filter(|m| m.path.contains(".so"))
        .collect();
    lib_maps.sort_by_key(|m| std::cmp::Reverse(m.range.start));
    for mapping in lib_maps {
        if !seen.insert(mapping.path.clone()) {
            continue;
        }
        // A library upgraded on disk shows as "(deleted)": its file is not what runs.
        if mapping.path.ends_with(" (deleted)") {
            tracing::warn!(
                "{} was replaced on disk; its symbols are not used",
                mapping.path
            );
            continue;
        }
        let path = mapping.path.as_str();
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let Ok(image) = LinkedImage::parse(Path::new(path), &bytes) else {
            continue;
        };
        let Some(bias) = bias_of(&maps, path, &image) else {
            continue;
        };
        libs.push(Module {
            path: path.to_owned(),
            bias,
            image: Arc::new(image),
        });
    }
    Ok(libs)
}
