//! `hot-lsp watch` end to end: the real binary watches a fixture workspace, launches its
//! program, swaps saved edits, reports compile errors as JSON events and warnings and
//! information as `message` events (and as lines in human mode), and kills the program when
//! it is terminated.

mod common;

use std::process::{Command, Stdio};

use common::watch::Watch;
use common::{build_program, copy_fixture, copy_shared_fixture, process_alive};

#[test]
fn watch_refuses_a_folder_without_hot_lsp_toml() {
    let (_dir, root) = copy_fixture("counter");
    std::fs::remove_file(root.join("hot-lsp.toml")).expect("remove hot-lsp.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_hot-lsp"))
        .arg("watch")
        .arg(&root)
        .stdin(Stdio::null())
        .output()
        .expect("run hot-lsp watch");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("hot-lsp.toml"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn watch_swaps_saved_edits_reports_errors_and_kills_the_program_on_sigterm() {
    let (_dir, root) = copy_fixture("counter");
    build_program(&root);
    let main_c = root.join("main.c");
    let original = std::fs::read_to_string(&main_c).expect("read main.c");
    let mut watch = Watch::start(&root);
    let launched = watch.wait("launched", |event| event["event"] == "launched");
    let pid = launched["pid"].as_i64().expect("pid");
    watch.output("value=10");

    // Truncate, then write in two parts: the debounced save sees the final content.
    let edited = original.replacen("return x * 1;", "return x * 2;", 1);
    let (head, tail) = edited.split_at(edited.len() / 2);
    std::fs::write(&main_c, head).expect("write the first half");
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&main_c)
            .expect("reopen main.c");
        file.write_all(tail.as_bytes())
            .expect("write the second half");
    }
    let swap = watch.wait("swap", |event| event["event"] == "swap");
    assert_eq!(swap["file"], main_c.to_string_lossy().as_ref(), "{swap}");
    assert!(
        swap["swapped"]
            .as_array()
            .is_some_and(|names| names.iter().any(|n| n == "compute")),
        "{swap}"
    );
    for phase in ["compile", "link", "swap"] {
        assert!(swap["micros"][phase].is_u64(), "{swap}");
    }
    watch.output("value=20");

    // A compile error: one diagnostic event, 1-based line and byte column.
    let broken = edited.replacen("return x * 2;", "return x * ;", 1);
    std::fs::write(&main_c, &broken).expect("write the error");
    let diagnostic = watch.wait("diagnostic", |event| event["event"] == "diagnostic");
    let (line_index, line) = broken
        .lines()
        .enumerate()
        .find(|(_, line)| line.contains("return x * ;"))
        .expect("the broken line");
    assert_eq!(
        diagnostic["file"],
        main_c.to_string_lossy().as_ref(),
        "{diagnostic}"
    );
    assert_eq!(diagnostic["line"], line_index as u64 + 1, "{diagnostic}");
    assert_eq!(
        diagnostic["column"],
        line.find(" ;").expect("the token") as u64 + 2,
        "{diagnostic}"
    );
    assert_eq!(diagnostic["severity"], "error", "{diagnostic}");
    assert_eq!(diagnostic["code"], "compile-error", "{diagnostic}");
    assert!(diagnostic["message"].is_string(), "{diagnostic}");
    assert!(process_alive(pid));

    // The error fixed: the file is said to be fixed, and no diagnostic comes back with it.
    let fixed_text = edited.replacen("return x * 2;", "return x * 3;", 1);
    std::fs::write(&main_c, &fixed_text).expect("write the fix");
    let fixed = watch.wait("fixed", |event| {
        assert_ne!(
            event["event"], "diagnostic",
            "a diagnostic after the fix: {event}"
        );
        event["event"] == "fixed"
    });
    assert_eq!(fixed["file"], main_c.to_string_lossy().as_ref(), "{fixed}");
    watch.output("value=30");

    let terminated = Command::new("kill")
        .arg("-TERM")
        .arg(watch.pid().to_string())
        .status()
        .expect("run kill");
    assert!(terminated.success());
    let status = watch.wait_exit();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        !process_alive(pid),
        "the program {pid} outlived hot-lsp watch"
    );
}

/// A file its writer holds open, written in parts with pauses longer than the quiet period,
/// is compiled once, when the writer closes it: never its empty or half-written text (no
/// compile error, no second swap).
#[test]
fn watch_waits_for_a_writer_that_holds_the_file_open() {
    use std::io::Write;
    let (_dir, root) = copy_fixture("counter");
    build_program(&root);
    let main_c = root.join("main.c");
    let original = std::fs::read_to_string(&main_c).expect("read main.c");
    let mut watch = Watch::start(&root);
    watch.output("value=10");
    let edited = original.replacen("return x * 1;", "return x * 2;", 1);
    let (head, tail) = edited.split_at(edited.len() / 2);
    // The writer's own pace (the input of this test, not a wait for hot-lsp): each pause is
    // several quiet periods long, so a save would have been taken at each before.
    let pause = std::time::Duration::from_millis(700);
    let mut file = std::fs::File::create(&main_c).expect("truncate main.c");
    std::thread::sleep(pause);
    file.write_all(head.as_bytes())
        .expect("write the first half");
    file.flush().expect("flush");
    std::thread::sleep(pause);
    file.write_all(tail.as_bytes())
        .expect("write the second half");
    drop(file);
    let swap = watch.wait("swap", |event| event["event"] == "swap");
    assert!(
        swap["swapped"]
            .as_array()
            .is_some_and(|names| names.iter().any(|n| n == "compute")),
        "{swap}"
    );
    watch.output("value=20");
    let compiles: Vec<&serde_json::Value> = watch
        .seen
        .iter()
        .filter(|e| {
            matches!(
                e["event"].as_str(),
                Some("swap" | "unchanged" | "diagnostic" | "error")
            )
        })
        .collect();
    assert_eq!(
        compiles.len(),
        1,
        "one save, of the whole text: {compiles:#?}"
    );
}

#[test]
fn watch_prints_warnings_as_message_events_and_header_information_as_a_diagnostic() {
    // -O2 without -fno-ipa-ra: the session warns when it reads the program (before or after
    // the launched event). The printer prints only once the watcher is installed.
    let (_dir, root) = copy_shared_fixture("optimized");
    let mut watch = Watch::start(&root);
    let warning = watch.wait("warning message", |event| {
        event["event"] == "message" && event["severity"] == "warning"
    });
    assert!(
        warning["text"]
            .as_str()
            .is_some_and(|text| text.contains("-fno-ipa-ra")),
        "{warning}"
    );
    assert_eq!(warning.as_object().map(|o| o.len()), Some(3), "{warning}");

    // A saved header no file of the program includes: said on the header, as information.
    let header = root.join("extra.h");
    std::fs::write(&header, "int extra(void);\n").expect("write extra.h");
    let information = watch.wait("information diagnostic", |event| {
        event["event"] == "diagnostic" && event["severity"] == "information"
    });
    assert!(
        information["message"]
            .as_str()
            .is_some_and(|text| text.contains(header.to_string_lossy().as_ref())
                && text.contains("includes"))
            && information["file"] == header.to_string_lossy().as_ref()
            && information["code"] == "not-included",
        "{information}"
    );
    assert_eq!(
        information.as_object().map(|o| o.len()),
        Some(7),
        "{information}"
    );
}

#[test]
fn watch_prints_warnings_as_lines_in_human_mode() {
    let (_dir, root) = copy_shared_fixture("optimized");
    let mut watch = Watch::start_in(&root, false);
    watch.wait("a warning line", |event| {
        event["text"].as_str().is_some_and(|text| {
            text.starts_with("[hot-lsp] warning: ") && text.contains("-fno-ipa-ra")
        })
    });
}

/// Every save is answered: a save that compiles and changes no function is an `unchanged`
/// event with the compile and link times (a human line without `--json`), and the program
/// runs on as it was.
#[test]
fn watch_answers_a_save_that_changes_nothing() {
    for json in [true, false] {
        let (_dir, root) = copy_fixture("counter");
        build_program(&root);
        let main_c = root.join("main.c");
        let original = std::fs::read_to_string(&main_c).expect("read main.c");
        let mut watch = Watch::start_in(&root, json);
        let steady = |watch: &mut Watch| {
            if json {
                watch.output("value=10");
            } else {
                watch.wait("a value=10 line", |event| {
                    event["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("value=10"))
                });
            }
        };
        steady(&mut watch);
        // The same text again, with a comment: the code is the same.
        std::fs::write(&main_c, format!("{original}/* saved again */\n")).expect("save main.c");
        if json {
            let unchanged = watch.wait("unchanged", |event| event["event"] == "unchanged");
            assert_eq!(
                unchanged["file"],
                main_c.to_string_lossy().as_ref(),
                "{unchanged}"
            );
            for phase in ["compile", "link"] {
                assert!(unchanged["micros"][phase].is_u64(), "{unchanged}");
            }
            assert_eq!(
                unchanged.as_object().map(|o| o.len()),
                Some(3),
                "{unchanged}"
            );
            assert!(
                !watch.seen.iter().any(|event| event["event"] == "swap"),
                "{:#?}",
                watch.seen
            );
        } else {
            let line = watch.wait("an unchanged line", |event| {
                event["text"].as_str().is_some_and(|text| {
                    text.starts_with("[hot-lsp] main.c: no function changed (compile ")
                })
            });
            assert!(
                line["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(" ms, link ")),
                "{line}"
            );
        }
        steady(&mut watch);
    }
}

/// The compile database is read again when it changes while the program runs: a new flag
/// (`-DSCALE=2`, which changes code the text does not) reaches the next save, although the
/// text of the file is what the program was built from and its baseline was compiled with
/// the old command.
#[test]
fn watch_reads_a_rewritten_compile_database_on_the_next_save() {
    let (_dir, root) = copy_fixture("counter");
    let main_c = root.join("main.c");
    let original = std::fs::read_to_string(&main_c).expect("read main.c");
    let scaled = original.replacen(
        "int compute(int x) {\n    return x * 1;",
        "#ifndef SCALE\n#define SCALE 1\n#endif\nint compute(int x) {\n    return x * SCALE;",
        1,
    );
    assert_ne!(scaled, original, "the fixture's compute changed");
    std::fs::write(&main_c, &scaled).expect("write main.c");
    let database = root.join("compile_commands.json");
    let write_database = |scale: u32| {
        let command = format!("cc -O0 -g -DSCALE={scale} -c main.c -o main.o");
        let entries = serde_json::json!([
            {"directory": root.to_string_lossy(), "file": "main.c", "command": command}
        ]);
        std::fs::write(&database, entries.to_string()).expect("write compile_commands.json");
    };
    write_database(1);
    let built = Command::new("cc")
        .args(["-O0", "-g", "-DSCALE=1", "-o", "app", "main.c"])
        .current_dir(&root)
        .status()
        .expect("run cc");
    assert!(built.success());

    let mut watch = Watch::start(&root);
    watch.output("value=10");
    // A save with the old command changes nothing, and compiled the baseline with it.
    std::fs::write(&main_c, format!("{scaled}/* saved */\n")).expect("save main.c");
    watch.wait("unchanged", |event| event["event"] == "unchanged");

    write_database(2);
    std::fs::write(&main_c, format!("{scaled}/* saved again */\n")).expect("save main.c");
    let swap = watch.wait("swap", |event| event["event"] == "swap");
    assert!(
        swap["swapped"]
            .as_array()
            .is_some_and(|names| names.iter().any(|n| n == "compute")),
        "{swap}"
    );
    watch.output("value=20");
}

/// A C++ swap: `swapped` keeps the mangled names tools match on, `swapped_display` and the
/// human line read as C++.
#[test]
fn watch_shows_cxx_names_demangled_beside_the_mangled_ones() {
    for json in [true, false] {
        let (_dir, root) = copy_shared_fixture("cpp");
        let main_cpp = root.join("main.cpp");
        let original = std::fs::read_to_string(&main_cpp).expect("read main.cpp");
        let mut watch = Watch::start_in(&root, json);
        watch.wait("area=9", |event| {
            event["text"]
                .as_str()
                .is_some_and(|t| t.contains("area=9 "))
        });
        let edited = original.replacen("return side * side;", "return side * side * 10;", 1);
        std::fs::write(&main_cpp, edited).expect("save main.cpp");
        if json {
            let swap = watch.wait("swap", |event| event["event"] == "swap");
            assert_eq!(
                swap["swapped"],
                serde_json::json!(["_ZNK6Square4areaEv"]),
                "{swap}"
            );
            assert_eq!(
                swap["swapped_display"],
                serde_json::json!(["Square::area() const"]),
                "{swap}"
            );
            assert_eq!(swap["added_display"], serde_json::json!([]), "{swap}");
        } else {
            watch.wait("a swap line", |event| {
                event["text"].as_str().is_some_and(|text| {
                    text.starts_with("[hot-lsp] swap #1 main.cpp: swapped [Square::area() const]")
                })
            });
        }
    }
}

/// A failure without a source line is an `error` event with its stable code: a program that
/// cannot start is `launch-failed`.
#[test]
fn watch_error_events_carry_the_failure_code() {
    let (_dir, root) = copy_fixture("counter");
    std::fs::write(
        root.join("hot-lsp.toml"),
        "[program]\npath = \"no-such-app\"\n",
    )
    .expect("write hot-lsp.toml");
    let mut watch = Watch::start(&root);
    let error = watch.wait("error", |event| event["event"] == "error");
    assert_eq!(error["code"], "launch-failed", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-app")),
        "{error}"
    );
}

/// `hot-lsp watch` prints the program's output while a save compiles, not after the swap:
/// the slowsave fixture's compiler holds the save's compile until `go` exists, and the
/// program marks its lines `compiling=1` once the compiler said it holds it.
#[test]
fn watch_prints_the_output_of_the_program_while_a_save_compiles() {
    let (_dir, root) = copy_shared_fixture("slowsave");
    let mut watch = Watch::start(&root);
    watch.output("compute=10");
    let main_c = root.join("main.c");
    let text = std::fs::read_to_string(&main_c).expect("read main.c");
    assert!(text.contains("return x * 1;"));
    std::fs::write(&main_c, text.replacen("return x * 1;", "return x * 2;", 1))
        .expect("save main.c");
    watch.output("compiling=1");
    assert!(
        !watch.seen.iter().any(|e| e["event"] == "swap"),
        "swapped before the compile was let go: {:#?}",
        watch.seen
    );
    std::fs::write(root.join("go"), "").expect("write go");
    let swap = watch.wait("the swap", |e| e["event"] == "swap");
    assert_eq!(swap["swapped"], serde_json::json!(["compute"]), "{swap}");
    watch.output("compute=20");
}

/// A saved assembly source the program was built from is answered, not silently dropped:
/// one `unsupported-source` warning on its first line while the program runs on as built,
/// and `fixed` once it is saved back to the text the program was built from.
#[test]
fn watch_answers_a_saved_assembly_source_without_swapping_it() {
    let (_dir, root) = copy_shared_fixture("assembly");
    let mut watch = Watch::start(&root);
    watch.output("asm=7 plain=3");
    let value_s = root.join("value.S");
    let file = value_s.to_string_lossy().into_owned();
    let original = std::fs::read_to_string(&value_s).expect("read value.S");
    std::fs::write(
        &value_s,
        original.replacen("#define VALUE 7", "#define VALUE 70", 1),
    )
    .expect("save value.S");
    let diagnostic = watch.wait("the assembly warning", |event| {
        event["event"] == "diagnostic" && event["file"] == file.as_str()
    });
    assert_eq!(diagnostic["code"], "unsupported-source", "{diagnostic}");
    assert_eq!(diagnostic["severity"], "warning", "{diagnostic}");
    assert_eq!(
        (&diagnostic["line"], &diagnostic["column"]),
        (&1.into(), &1.into()),
        "{diagnostic}"
    );
    assert!(
        diagnostic["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not swap assembly yet")
                && m.contains("changed nothing in the running program")),
        "{diagnostic}"
    );
    watch.output("asm=7 plain=3");
    std::fs::write(&value_s, &original).expect("save value.S back");
    watch.wait("value.S fixed", |event| {
        event["event"] == "fixed" && event["file"] == file.as_str()
    });
    watch.output("asm=7 plain=3");
    assert!(
        !watch.seen.iter().any(|event| event["event"] == "swap"),
        "{:#?}",
        watch.seen
    );
}
