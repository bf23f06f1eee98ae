//! The benchmark (`scripts/bench`) at a tiny size, so it keeps working: it generates and
//! builds a program, relinks it, drives the real `hot-lsp --stdio` through plain saves and
//! saves compiled ahead and saves of a header with several includers, and writes its
//! Markdown and JSON. No timing is asserted.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_benchmark_runs_at_a_small_size_and_writes_its_report() {
    let out = tempfile::tempdir().expect("tempdir");
    let markdown = out.path().join("benchmarks.md");
    let json = out.path().join("benchmarks.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/bench");
    let run = Command::new("python3")
        .arg(script)
        .arg("--smoke")
        .arg("--server")
        .arg(env!("CARGO_BIN_EXE_hot-lsp"))
        .arg("--work")
        .arg(out.path())
        .arg("--out")
        .arg(&markdown)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run python3 scripts/bench");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "scripts/bench failed:\n{log}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    let result = &report["results"][0];
    assert_eq!(result["functions"], 60, "{result}");
    assert_eq!(result["edits"], 4, "{result}");
    // Every other edit was typed first and saved once compiled ahead: those skipped the
    // compile.
    assert_eq!(result["compiled_ahead"], 2, "{result}");
    assert_eq!(result["ms"]["ahead"]["compile"]["median"], 0.0, "{result}");
    for mode in ["save", "ahead"] {
        assert_eq!(result["save_to_running_ms"][mode]["n"], 2, "{result}");
    }
    assert!(
        result["peak_memory_mib"].as_f64().is_some_and(|m| m > 0.0),
        "{result}"
    );
    // Launch-to-ready and every baseline compiled were both seen (not timed here).
    for phase in ["running", "ready", "baselines"] {
        assert!(
            result["launch_ms"][phase]
                .as_f64()
                .is_some_and(|ms| ms > 0.0),
            "{phase}: {result}"
        );
    }
    // The header benchmark: every save of the header swapped its 3 includers together
    // (the script refuses any other count), and one includer was saved alone in between.
    let header = &report["header"];
    assert_eq!(header["includers"], 3, "{header}");
    assert_eq!(header["header_compile_ms"]["n"], 2, "{header}");
    assert_eq!(header["one_file_compile_ms"]["n"], 2, "{header}");
    let text = std::fs::read_to_string(&markdown).expect("the Markdown report");
    assert!(text.contains("| 60 |"), "{text}");
    assert!(
        text.contains("## A header included by many files"),
        "{text}"
    );
}
