//! The relocation planner: a fuzzed object linked against the real program (an executable
//! built by `cc`, its shared library and libc), with the real object as baseline, without a
//! baseline (compared with the running image), and as the baseline of the real object.
#![no_main]

mod common;

use hot_link::LinkRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let program = common::program();
    let Ok(object) = hot_object::Object::parse(std::path::Path::new("fuzzed.o"), data) else {
        return;
    };
    let _ = hot_object::changed_functions(&program.v1, &object);
    for (object, baseline) in [
        (&object, Some(&program.v1)),
        (&object, None),
        (&program.v1, Some(&object)),
    ] {
        let _ = program.linker.link(&LinkRequest {
            object,
            baseline,
            unit: program.unit.clone(),
            applied: &[],
        });
    }
});
