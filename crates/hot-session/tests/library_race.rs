//! A library unloaded, or loaded again, between a save's link and its write
//! (tests/fixtures/sharedlib's `unload-plug` and `reload-here`, made to happen then by a
//! fault-injection action at the save's first arena write, while the program still runs):
//! the commit is refused with the threads stopped — the entry jump hot-lsp wrote into the
//! old load cannot be read or is not in the new one, a rebuilt library's build-id differs —
//! and nothing is written; the change then goes into the library as loaded now.
//! Its own test binary: the fault-injection state is global to the process.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Fixture;
use hot_process::fault::{self, Step};
use hot_session::{SessionEvent, Severity};

/// A row: libplug.so's source as built and what it prints; edits made before the save
/// that races (an earlier swap, or a rebuilt library to reload); the save's edit; what the
/// program prints once the change is in the new load, and what it must never print.
struct Race<'a> {
    what: &'a str,
    source: &'a str,
    built: &'a str,
    /// Swapped before the racing save (its entry jump is what the new load lacks).
    swapped_first: Option<((&'a str, &'a str), &'a str)>,
    /// Added to the source and built into lib/libplug.so.new, which the reload renames
    /// over libplug.so: another build-id where the old one was.
    rebuilt: Option<(&'a str, &'a str)>,
    edit: (&'a str, &'a str),
    /// What the program is made to do at the save's first arena write: `reload-here`
    /// (load libplug.so again where it was) or `unload-plug` (unload it and leave it
    /// unloaded until `load-plug` is written again, which the test then does).
    trigger: &'a str,
    /// What the refusal names: the range checked and what it holds now.
    said: &'a str,
    /// Whether the session re-links the change into the new load by itself (it had swaps
    /// there); else the test saves again.
    relinks: bool,
    after: &'a str,
    never: &'a str,
}

fn check_race(row: &Race<'_>) {
    for compiler in ["cc", "clang"] {
        let what = format!("{} ({compiler})", row.what);
        let mut f = Fixture::copy("sharedlib");
        f.write("lib/plug.c", row.source);
        f.write(
            "hot-lsp.toml",
            &format!("[program]\npath = \"app\"\nbuild = \"CC={compiler} sh build.sh\"\n"),
        );
        f.write("load-plug", "");
        f.start();
        f.wait_launched();
        f.wait_output(row.built);
        if let Some(((from, to), printed)) = row.swapped_first {
            f.edit("lib/plug.c", from, to);
            f.save("lib/plug.c");
            f.wait_swap();
            f.wait_output(printed);
        }
        if let Some((from, to)) = row.rebuilt {
            f.edit("lib/plug.c", from, to);
            f.build_plug(compiler, "libplug.so.new");
        }
        // At the next save's first arena write (linked, not yet written), the program
        // reloads libplug.so where it was; the action returns once it has.
        let dir = f.dir.path().to_owned();
        let trigger = row.trigger.to_owned();
        let done = Arc::new(AtomicBool::new(false));
        let once = done.clone();
        fault::arm_action(Step::ArenaWrite, move || {
            if once.swap(true, Ordering::SeqCst) {
                return;
            }
            std::fs::write(dir.join(&trigger), "").expect("write the trigger");
            let deadline = Instant::now() + Duration::from_secs(60);
            while !dir.join("plug-reloaded").exists() {
                assert!(
                    Instant::now() < deadline,
                    "the program did not reload libplug.so"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        f.edit("lib/plug.c", row.edit.0, row.edit.1);
        f.save("lib/plug.c");
        let refusal = f.wait("the refusal", |e| match e {
            SessionEvent::Message {
                severity: Severity::Error,
                text,
            } => Some(text.clone()),
            SessionEvent::Swap(s) => panic!("swapped into the old load: {s:?}"),
            _ => None,
        });
        fault::disarm();
        assert!(done.load(Ordering::SeqCst), "{what}: the action never ran");
        assert!(
            refusal.contains("libplug.so")
                && refusal.contains(row.said)
                && refusal.contains("loaded again since the link")
                && refusal.contains("nothing was written"),
            "{what}: {refusal}"
        );
        if row.trigger == "unload-plug" {
            f.wait_output("plug unloaded");
            f.fresh_output.clear();
            f.wait_output("hidden=5900 plug=0");
            f.write("load-plug", "");
        } else {
            let line = f.wait_output("plug reloaded");
            assert!(line.contains("here"), "{what}: {line}");
        }
        if !row.relinks {
            f.save("lib/plug.c");
        }
        let again = f.wait_swap();
        assert!(
            again.swapped.iter().any(|s| s == "plug_value"),
            "{what}: {again:?}"
        );
        f.fresh_output.clear();
        f.wait_output(row.after);
        f.next_lines(3);
        assert_eq!(
            f.printed(row.never),
            0,
            "{what}: code linked against the old load ran"
        );
        f.assert_same_process();
    }
}

#[test]
fn a_library_unloaded_or_loaded_again_between_the_link_and_the_write_is_refused_with_nothing_written(
) {
    let rows = [
        Race {
            what: "the same file, where this session swapped before (its entry jump is gone)",
            source: "int plug_value(void) {\n    return 1;\n}\n",
            built: "plug=1",
            swapped_first: Some((("return 1;", "return 2;"), "hidden=5900 plug=2")),
            rebuilt: None,
            edit: ("return 2;", "return 3;"),
            trigger: "reload-here",
            said: "an entry jump hot-lsp wrote into",
            relinks: true,
            after: "hidden=5900 plug=3",
            never: "plug=1012",
        },
        Race {
            what: "a rebuilt file renamed over it, the first swap into it (another build-id)",
            source: "int scale(int x);\n\nint plug_value(void) {\n    return scale(10) + 1;\n}\n\nint scale(int x) {\n    return x * 2;\n}\n",
            built: "plug=21",
            swapped_first: None,
            rebuilt: Some((
                "int scale(int x) {\n    return x * 2;",
                "int pad_fn(int x) {\n    return x + 1000;\n}\n\nint scale(int x) {\n    return x * 2;",
            )),
            edit: ("return scale(10) + 1;", "return scale(10) + 2;"),
            trigger: "reload-here",
            said: "the build-id of",
            relinks: false,
            after: "hidden=5900 plug=22",
            never: "plug=1012",
        },
        Race {
            what: "unloaded (dlclose), its range unmapped when the write comes",
            source: "int plug_value(void) {\n    return 1;\n}\n",
            built: "plug=1",
            swapped_first: Some((("return 1;", "return 2;"), "hidden=5900 plug=2")),
            rebuilt: None,
            edit: ("return 2;", "return 3;"),
            trigger: "unload-plug",
            said: "cannot be read any more",
            relinks: true,
            after: "hidden=5900 plug=3",
            never: "plug=1012",
        },
    ];
    for row in &rows {
        check_race(row);
    }
}
