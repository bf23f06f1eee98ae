//! `Object::parse` of arbitrary bytes, then everything the session reads from the result
//! and the atom diff against itself.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = hot_object::Object::parse(std::path::Path::new("fuzzed.o"), data) {
        common::exercise_object(&object);
        let _ = hot_object::changed_functions(&object, &object);
    }
});
