//! `LinkedImage::parse` of arbitrary bytes (executables and shared libraries), then the
//! accessors the linker uses.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = hot_object::LinkedImage::parse(std::path::Path::new("fuzzed"), data) {
        common::exercise_image(&image);
    }
});
