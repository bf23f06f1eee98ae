//! End to end through the real `hot-lsp --stdio` binary and a real C program: the program is
//! launched, a saved edit is swapped in while it runs, compile errors and undefined symbols
//! come back as diagnostics at the right position, undo reverts, and the program dies with the
//! server.

mod common;

use std::path::{Path, PathBuf};

use common::{build_program, copy_fixture, copy_shared_fixture, file_uri, process_alive, Client};
use serde_json::{json, Value};

/// A server running the counter fixture's program.
struct Running {
    client: Client,
    _dir: tempfile::TempDir,
    root: PathBuf,
    main_c: PathBuf,
    pid: i64,
}

fn output_contains(params: &Value, needle: &str) -> bool {
    params["stream"] == "stdout" && params["text"].as_str().is_some_and(|t| t.contains(needle))
}

fn start_counter() -> Running {
    let (dir, root) = copy_fixture("counter");
    build_program(&root);
    let mut client = Client::start();
    client.initialize(Some(&root), Value::Null);
    let workspace = file_uri(&root);
    let status = client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && params["state"] == "running" && params["pid"].is_i64()
    });
    let pid = status["pid"].as_i64().expect("pid");
    client.wait_notification("hot-lsp/output", |params| {
        params["workspace"] == workspace && output_contains(params, "value=10")
    });
    let main_c = root.join("main.c");
    Running {
        client,
        _dir: dir,
        root,
        main_c,
        pid,
    }
}

/// Rewrites `file` with `from` replaced by `to` and tells the server it was saved.
fn edit_and_save(client: &Client, file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("read source");
    assert!(text.contains(from), "{from:?} is not in {}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).expect("write source");
    client.did_save(file);
}

/// The 0-based line of the first line of `file` containing `needle`, and that line.
fn line_of(file: &Path, needle: &str) -> (u64, String) {
    let text = std::fs::read_to_string(file).expect("read source");
    text.lines()
        .enumerate()
        .find(|(_, line)| line.contains(needle))
        .map(|(index, line)| (index as u64, line.to_owned()))
        .unwrap_or_else(|| panic!("{needle:?} is not in {}", file.display()))
}

fn swapped(params: &Value, function: &str) -> bool {
    params["lastSwap"]["swapped"]
        .as_array()
        .is_some_and(|names| names.iter().any(|name| name == function))
}

#[test]
fn a_saved_edit_is_swapped_into_the_running_program() {
    let mut run = start_counter();
    let workspace = file_uri(&run.root);
    edit_and_save(&run.client, &run.main_c, "return x * 1;", "return x * 2;");
    let status = run.client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && swapped(params, "compute")
    });
    assert_eq!(
        status["pid"], run.pid,
        "the program was restarted: {status}"
    );
    assert_eq!(
        status["lastSwap"]["file"],
        file_uri(&run.main_c),
        "{status}"
    );
    for phase in ["compile", "link", "swap"] {
        assert!(status["lastSwap"]["micros"][phase].is_u64(), "{status}");
    }
    run.client.discard_backlog();
    run.client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "value=20")
    });
    assert!(process_alive(run.pid));

    // hot-lsp.status answers with the same object as the notification.
    let answer = run
        .client
        .execute("hot-lsp.status", json!([{"workspace": workspace}]));
    let answer = &answer["result"];
    assert_eq!(answer["workspace"], workspace, "{answer}");
    assert_eq!(answer["state"], "running", "{answer}");
    assert_eq!(answer["pid"], run.pid, "{answer}");
    assert!(swapped(answer, "compute"), "{answer}");
}

#[test]
fn status_reports_the_running_program() {
    let mut run = start_counter();
    let answer = run.client.execute("hot-lsp.status", json!([]));
    let answer = &answer["result"];
    assert_eq!(answer["workspace"], file_uri(&run.root), "{answer}");
    assert_eq!(answer["state"], "running", "{answer}");
    assert_eq!(answer["pid"], run.pid, "{answer}");
    assert_eq!(answer["exitCode"], Value::Null, "{answer}");
    assert_eq!(answer["signal"], Value::Null, "{answer}");
    assert!(process_alive(run.pid));
}

#[test]
fn a_compile_error_is_a_diagnostic_at_its_utf16_position_and_a_fix_clears_it() {
    let mut run = start_counter();
    let uri = file_uri(&run.main_c);
    // Multi-byte characters before the error make byte and UTF-16 columns differ: "é" is two
    // bytes and one UTF-16 unit, "😀" four bytes and two units.
    edit_and_save(
        &run.client,
        &run.main_c,
        "return x * 1;",
        "const char *s = \"é😀\"; return x * ;",
    );
    let published = run
        .client
        .wait_notification("textDocument/publishDiagnostics", |params| {
            params["uri"] == uri.as_str()
                && params["diagnostics"]
                    .as_array()
                    .is_some_and(|list| !list.is_empty())
        });
    let diagnostics = published["diagnostics"].as_array().expect("diagnostics");
    let (line, text) = line_of(&run.main_c, "return x * ;");
    let error_byte = text.find(" ;").expect("the error token") + 1;
    let expected_character = text[..error_byte].encode_utf16().count() as u64;
    let error = diagnostics
        .iter()
        .find(|d| d["code"] == "compile-error")
        .unwrap_or_else(|| panic!("no compile-error in {published}"));
    assert_eq!(error["source"], "hot-lsp", "{error}");
    assert_eq!(error["severity"], 1, "{error}");
    assert_eq!(error["range"]["start"]["line"], line, "{error}");
    assert_eq!(
        error["range"]["start"]["character"], expected_character,
        "{error} (line {text:?})"
    );
    assert!(
        process_alive(run.pid),
        "a compile error must not hurt the program"
    );

    std::fs::write(
        &run.main_c,
        std::fs::read_to_string(&run.main_c)
            .expect("read")
            .replace("const char *s = \"é😀\"; return x * ;", "return x * 3;"),
    )
    .expect("write the fix");
    run.client.did_save(&run.main_c);
    run.client
        .wait_notification("textDocument/publishDiagnostics", |params| {
            params["uri"] == uri.as_str()
                && params["diagnostics"].as_array().is_some_and(Vec::is_empty)
        });
    run.client.discard_backlog();
    run.client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "value=30")
    });
}

#[test]
fn an_undefined_symbol_is_a_diagnostic_on_the_line_that_uses_it() {
    let mut run = start_counter();
    let uri = file_uri(&run.main_c);
    edit_and_save(
        &run.client,
        &run.main_c,
        "int compute(int x) {\n    return x * 1;",
        "int hot_lsp_missing_function(int);\n\nint compute(int x) {\n    return hot_lsp_missing_function(x);",
    );
    let published = run
        .client
        .wait_notification("textDocument/publishDiagnostics", |params| {
            params["uri"] == uri.as_str()
                && params["diagnostics"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(|d| d["code"] == "undefined-symbol"))
        });
    let (line, _) = line_of(&run.main_c, "return hot_lsp_missing_function(x);");
    let diagnostic = published["diagnostics"]
        .as_array()
        .and_then(|list| list.iter().find(|d| d["code"] == "undefined-symbol"))
        .expect("undefined-symbol");
    assert_eq!(diagnostic["range"]["start"]["line"], line, "{diagnostic}");
    assert!(
        diagnostic["message"]
            .as_str()
            .is_some_and(|m| m.contains("hot_lsp_missing_function")),
        "{diagnostic}"
    );
    // Nothing was swapped: the program still prints the old value.
    run.client.discard_backlog();
    run.client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "value=10")
    });
    assert!(process_alive(run.pid));
}

#[test]
fn undo_reverts_the_last_swap() {
    let mut run = start_counter();
    let workspace = file_uri(&run.root);
    edit_and_save(&run.client, &run.main_c, "return x * 1;", "return x * 5;");
    run.client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && swapped(params, "compute")
    });
    run.client.discard_backlog();
    run.client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "value=50")
    });

    let answer = run
        .client
        .execute("hot-lsp.undo", json!([{"workspace": workspace}]));
    assert!(answer.get("error").is_none(), "{answer}");
    run.client.discard_backlog();
    run.client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "value=10")
    });
    assert!(process_alive(run.pid));
}

#[test]
fn the_program_dies_when_the_client_closes_stdin() {
    let mut run = start_counter();
    run.client.close_stdin();
    run.client.wait_exit();
    // The server has exited; its shutdown killed the program before that.
    assert!(
        !process_alive(run.pid),
        "the program {} outlived the server",
        run.pid
    );
}

#[test]
fn the_program_dies_on_shutdown_and_exit() {
    let mut run = start_counter();
    let shutdown = run.client.request("shutdown", Value::Null);
    assert_eq!(shutdown["result"], Value::Null, "{shutdown}");
    run.client.notify("exit", Value::Null);
    assert_eq!(run.client.wait_exit().code(), Some(0));
    assert!(
        !process_alive(run.pid),
        "the program {} outlived the server",
        run.pid
    );
}

/// The counter fixture without its hot-lsp.toml, built: only client configuration can enable it.
fn counter_without_config() -> (tempfile::TempDir, PathBuf) {
    let (dir, root) = copy_fixture("counter");
    std::fs::remove_file(root.join("hot-lsp.toml")).expect("remove hot-lsp.toml");
    build_program(&root);
    (dir, root)
}

fn client_settings() -> Value {
    json!({
        "program": {"path": "app"},
        "compile": {"command": "cc -O0 -g -c {file} -o {output}"},
    })
}

#[test]
fn initialization_options_enable_a_workspace_in_both_shapes() {
    for options in [json!({"hot-lsp": client_settings()}), client_settings()] {
        let (_dir, root) = counter_without_config();
        let mut client = Client::start();
        client.initialize(Some(&root), options.clone());
        let workspace = file_uri(&root);
        let status = client.wait_notification("hot-lsp/status", |params| {
            params["workspace"] == workspace && params["state"] == "running"
        });
        assert!(status["pid"].is_i64(), "{status} with {options}");
    }
}

#[test]
fn did_change_configuration_enables_an_idle_workspace() {
    let (_dir, root) = counter_without_config();
    let mut client = Client::start();
    client.initialize(Some(&root), Value::Null);
    let idle = client.execute("hot-lsp.status", json!([]));
    assert_eq!(idle["result"]["state"], "idle", "{idle}");
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"hot-lsp": client_settings()}}),
    );
    let workspace = file_uri(&root);
    let status = client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && params["state"] == "running"
    });
    assert!(status["pid"].is_i64(), "{status}");
}

#[test]
fn a_swap_is_reported_as_work_done_progress() {
    let mut run = start_counter();
    let workspace = file_uri(&run.root);
    edit_and_save(&run.client, &run.main_c, "return x * 1;", "return x * 7;");
    run.client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && swapped(params, "compute")
    });
    let begin = run
        .client
        .wait_notification("$/progress", |params| params["value"]["kind"] == "begin");
    let token = begin["token"].clone();
    assert!(begin["value"]["title"].is_string(), "{begin}");
    run.client.wait_notification("$/progress", |params| {
        params["token"] == token && params["value"]["kind"] == "end"
    });
}

#[test]
fn the_program_dies_when_the_server_gets_sigterm() {
    let mut run = start_counter();
    let server_pid = run.client.pid();
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server_pid.to_string())
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = run.client.wait_exit();
    assert!(
        status.code().is_some(),
        "died of the signal instead of exiting: {status}"
    );
    assert!(
        !process_alive(run.pid),
        "the program {} outlived the server",
        run.pid
    );
}

/// An assembly source of the program is not swapped: its save gets one `unsupported-source`
/// warning on its first line, the program runs on as built, and a save of the text it was
/// built from clears it.
#[test]
fn a_saved_assembly_source_gets_a_warning_and_is_not_swapped() {
    let (_dir, root) = copy_shared_fixture("assembly");
    let mut client = Client::start();
    client.initialize(Some(&root), Value::Null);
    let workspace = file_uri(&root);
    client.wait_notification("hot-lsp/output", |params| {
        params["workspace"] == workspace && output_contains(params, "asm=7 plain=3")
    });
    let plain_s = root.join("plain.s");
    let uri = file_uri(&plain_s);
    let original = std::fs::read_to_string(&plain_s).expect("read plain.s");
    edit_and_save(&client, &plain_s, "movl $3, %eax", "movl $30, %eax");
    let published = client.wait_notification("textDocument/publishDiagnostics", |params| {
        params["uri"] == uri.as_str()
            && params["diagnostics"]
                .as_array()
                .is_some_and(|list| !list.is_empty())
    });
    let list = published["diagnostics"].as_array().expect("diagnostics");
    assert_eq!(list.len(), 1, "{published}");
    let warning = &list[0];
    assert_eq!(warning["code"], "unsupported-source", "{warning}");
    assert_eq!(warning["source"], "hot-lsp", "{warning}");
    assert_eq!(warning["severity"], 2, "{warning}");
    assert_eq!(warning["range"]["start"]["line"], 0, "{warning}");
    assert!(
        warning["message"]
            .as_str()
            .is_some_and(|m| m.contains("plain.s") && m.contains("does not swap assembly yet")),
        "{warning}"
    );
    client.discard_backlog();
    client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "asm=7 plain=3")
    });

    std::fs::write(&plain_s, &original).expect("save plain.s back");
    client.did_save(&plain_s);
    client.wait_notification("textDocument/publishDiagnostics", |params| {
        params["uri"] == uri.as_str() && params["diagnostics"].as_array().is_some_and(Vec::is_empty)
    });
}
