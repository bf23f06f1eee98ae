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
