//! The ABI checks end to end through the real `hot-lsp --stdio` binary (fixture `abi`): a
//! changed signature whose callers were not recompiled comes back as a `signature-changed`
//! error diagnostic on the function's line, naming the callers, and the program runs on
//! with the old code.

mod common;

use common::{copy_shared_fixture, file_uri, process_alive, Client};
use serde_json::Value;

fn stdout_contains(params: &Value, needle: &str) -> bool {
    params["stream"] == "stdout" && params["text"].as_str().is_some_and(|t| t.contains(needle))
}

#[test]
fn a_changed_signature_is_a_signature_changed_diagnostic_naming_its_callers() {
    let (_dir, root) = copy_shared_fixture("abi");
    let mut client = Client::start();
    client.initialize(Some(&root), Value::Null);
    let workspace = file_uri(&root);
    let status = client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && params["state"] == "running" && params["pid"].is_i64()
    });
    let pid = status["pid"].as_i64().expect("pid");
    client.wait_notification("hot-lsp/output", |params| {
        stdout_contains(params, "scaled=20")
    });

    let geom = root.join("geom.c");
    let text = std::fs::read_to_string(&geom).expect("read geom.c");
    let edited = text.replacen("long scaled(int v) {", "long scaled(long v) {", 1);
    assert_ne!(text, edited, "geom.c has no `long scaled(int v)`");
    std::fs::write(&geom, &edited).expect("write geom.c");
    let line = edited
        .lines()
        .position(|l| l.contains("long scaled(long v)"))
        .expect("the edited line") as u64;
    client.did_save(&geom);
    let uri = file_uri(&geom);
    let published = client.wait_notification("textDocument/publishDiagnostics", |params| {
        params["uri"] == uri.as_str()
            && params["diagnostics"]
                .as_array()
                .is_some_and(|list| list.iter().any(|d| d["code"] == "signature-changed"))
    });
    let diagnostic = published["diagnostics"]
        .as_array()
        .and_then(|list| list.iter().find(|d| d["code"] == "signature-changed"))
        .expect("signature-changed");
    assert_eq!(diagnostic["range"]["start"]["line"], line, "{diagnostic}");
    assert_eq!(diagnostic["severity"], 1, "an error: {diagnostic}");
    assert_eq!(diagnostic["source"], "hot-lsp", "{diagnostic}");
    let message = diagnostic["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`scaled`") && message.contains("`run_round` (main.c)"),
        "{diagnostic}"
    );
    // Nothing was swapped: the program still prints what the old code computes.
    client.discard_backlog();
    client.wait_notification("hot-lsp/output", |params| {
        stdout_contains(params, "scaled=20")
    });
    assert!(process_alive(pid));
}
