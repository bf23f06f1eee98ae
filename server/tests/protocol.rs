//! The LSP surface of the real `hot-lsp --stdio` binary: capabilities, protocol errors,
//! opt-in, and process lifetime (shutdown/exit, stdin closed).

mod common;

use common::{copy_fixture, file_uri, Client};
use serde_json::{json, Value};

#[test]
fn initialize_advertises_exactly_the_documented_capabilities() {
    let mut client = Client::start();
    let result = client.initialize(None, Value::Null);
    assert_eq!(
        result["capabilities"],
        json!({
            "textDocumentSync": {
                "openClose": true,
                "change": 1,
                "save": {"includeText": false},
            },
            "executeCommandProvider": {
                "commands": [
                    "hot-lsp.launch",
                    "hot-lsp.attach",
                    "hot-lsp.detach",
                    "hot-lsp.stop",
                    "hot-lsp.restart",
                    "hot-lsp.undo",
                    "hot-lsp.status",
                ],
            },
            "workspace": {
                "workspaceFolders": {"supported": true, "changeNotifications": true},
            },
        })
    );
    assert_eq!(result["serverInfo"]["name"], "hot-lsp");
}

fn error_code(response: &Value) -> i64 {
    response["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error response, got {response}"))
}

#[test]
fn malformed_messages_get_protocol_errors_and_the_server_keeps_serving() {
    let (_dir, root) = copy_fixture("counter");
    // Without hot-lsp.toml the workspace stays idle: this test is about the protocol only.
    std::fs::remove_file(root.join("hot-lsp.toml")).expect("remove hot-lsp.toml");
    let mut client = Client::start();
    client.initialize(Some(&root), Value::Null);

    // A body that is not JSON: a parse error, with a null id.
    client.send_raw(b"{this is not json");
    let parse_error = client.wait_response(&Value::Null);
    assert_eq!(error_code(&parse_error), -32700, "{parse_error}");

    // JSON that is not a JSON-RPC message: an invalid request, with a null id.
    client.send_raw(br#"{"hello": "world"}"#);
    let invalid = client.wait_response(&Value::Null);
    assert_eq!(error_code(&invalid), -32600, "{invalid}");

    // A request for a method nobody implements.
    let unknown = client.request("hot-lsp/noSuchMethod", json!({}));
    assert_eq!(error_code(&unknown), -32601, "{unknown}");

    // Notifications with garbage params get no answer (they have no id) and change nothing.
    client.notify("textDocument/didSave", json!(42));
    client.notify("textDocument/didOpen", json!({"textDocument": "nope"}));
    client.notify("workspace/didChangeWorkspaceFolders", json!([1, 2, 3]));

    // A request with params of the wrong shape.
    let bad_params = client.request("workspace/executeCommand", json!({"command": 7}));
    assert_eq!(error_code(&bad_params), -32602, "{bad_params}");

    // Commands: unknown names and bad arguments are invalid params.
    let unknown_command = client.execute("hot-lsp.frobnicate", json!([]));
    assert_eq!(error_code(&unknown_command), -32602, "{unknown_command}");
    let attach_without_pid = client.execute("hot-lsp.attach", json!([{}]));
    assert_eq!(
        error_code(&attach_without_pid),
        -32602,
        "{attach_without_pid}"
    );
    let unknown_workspace = client.execute(
        "hot-lsp.status",
        json!([{"workspace": "file:///no/such/folder"}]),
    );
    assert_eq!(
        error_code(&unknown_workspace),
        -32602,
        "{unknown_workspace}"
    );

    // The server still answers.
    let status = client.execute("hot-lsp.status", json!([]));
    assert_eq!(status["result"]["workspace"], file_uri(&root), "{status}");
    assert_eq!(status["result"]["state"], "idle", "{status}");
}

/// Hostile frames, each answered with a protocol error (null id: the server cannot know
/// which request it was), after which the server still serves. The framing's own seeded
/// mutation run is in `server/src/lsp/framing.rs`.
#[test]
fn hostile_frames_get_error_answers_and_the_server_keeps_serving() {
    let (_dir, root) = copy_fixture("counter");
    std::fs::remove_file(root.join("hot-lsp.toml")).expect("remove hot-lsp.toml");
    let mut client = Client::start();
    client.initialize(Some(&root), Value::Null);
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let rows: Vec<(&str, Vec<u8>, i64)> = vec![
        (
            "a header without Content-Length",
            b"Content-Type: application/vscode-jsonrpc\r\n\r\n{}".to_vec(),
            -32700,
        ),
        (
            "a Content-Length that is not a number",
            b"Content-Length: twelve\r\n\r\n{}".to_vec(),
            -32700,
        ),
        (
            // Over the 64 MiB limit: answered at once, its "body" skipped up to the next
            // header rather than waited for.
            "a Content-Length of 1 TB",
            b"Content-Length: 1000000000000\r\n\r\n{\"jsonrpc\":\"2.0\",".to_vec(),
            -32600,
        ),
        (
            "a Content-Length past u64",
            b"Content-Length: 99999999999999999999999\r\n\r\n".to_vec(),
            -32600,
        ),
        ("a body that is not UTF-8", frame(b"\xff\xfe\x00{}"), -32700),
        (
            "JSON nested past the parser's limit",
            frame(nested.as_bytes()),
            -32700,
        ),
        (
            "a truncated JSON body",
            frame(br#"{"jsonrpc":"2.0","id":5,"meth"#),
            -32700,
        ),
        (
            "a batch (LSP has none)",
            frame(br#"[{"jsonrpc":"2.0","id":5,"method":"shutdown"}]"#),
            -32600,
        ),
        (
            "an id that is an object",
            frame(br#"{"jsonrpc":"2.0","id":{},"method":"shutdown"}"#),
            -32600,
        ),
    ];
    for (what, bytes, code) in rows {
        client.send_bytes(&bytes);
        let answer = client.wait_response(&Value::Null);
        assert_eq!(error_code(&answer), code, "{what}: {answer}");
        let status = client.execute("hot-lsp.status", json!([]));
        assert_eq!(status["result"]["state"], "idle", "after {what}: {status}");
    }
    // A message that is not a request but has a usable id is answered under that id.
    client.send_raw(br#"{"jsonrpc":"2.0","id":6,"method":7}"#);
    let answer = client.wait_response(&json!(6));
    assert_eq!(error_code(&answer), -32600, "{answer}");
    // Found by the lsp_framing fuzz target: a key given twice is valid JSON (the last one
    // wins) but not a message tower-lsp can decode, and its decoder ends the input stream
    // after one error. It must be answered like any invalid request, and serving go on.
    client.send_raw(br#"{"jsonrpc":"2.0","id":7,"id":7,"method":"shutdown"}"#);
    let answer = client.wait_response(&json!(7));
    assert_eq!(error_code(&answer), -32600, "{answer}");
    let status = client.execute("hot-lsp.status", json!([]));
    assert_eq!(
        status["result"]["state"], "idle",
        "after a duplicate key: {status}"
    );
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

#[test]
fn a_workspace_without_hot_lsp_toml_stays_idle_and_runs_nothing() {
    let (_dir, root) = copy_fixture("counter");
    std::fs::remove_file(root.join("hot-lsp.toml")).expect("remove hot-lsp.toml");
    // A compile database whose command would leave a marker: a cloned repository must never
    // make hot-lsp run anything just by being opened and saved in.
    let marker = root.join("MARKER");
    let database = json!([{
        "directory": root,
        "file": root.join("main.c"),
        "command": format!("touch {}", marker.display()),
    }]);
    std::fs::write(root.join("compile_commands.json"), database.to_string())
        .expect("write compile_commands.json");
    std::fs::write(root.join("app"), "#!/bin/sh\ntouch MARKER\n").expect("write app");

    let mut client = Client::start();
    client.initialize(Some(&root), Value::Null);
    let main_c = root.join("main.c");
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": file_uri(&main_c), "languageId": "c", "version": 1, "text": ""}}),
    );
    client.did_save(&main_c);

    let status = client.execute("hot-lsp.status", json!([{"workspace": file_uri(&root)}]));
    assert_eq!(status["result"]["state"], "idle", "{status}");
    assert_eq!(status["result"]["pid"], Value::Null, "{status}");
    assert_eq!(status["result"]["lastSwap"], Value::Null, "{status}");

    // Shutdown waits for the session worker, which handles its queue in order: once the
    // server has exited, the save above has certainly been handled.
    let shutdown = client.request("shutdown", Value::Null);
    assert_eq!(shutdown["result"], Value::Null, "{shutdown}");
    client.notify("exit", Value::Null);
    assert!(client.wait_exit().success());
    assert!(
        !marker.exists(),
        "hot-lsp ran a command in a workspace that did not opt in"
    );
    let launched = client.notifications.iter().any(|notification| {
        notification["method"] == "hot-lsp/status" && !notification["params"]["pid"].is_null()
    });
    assert!(
        !launched,
        "a program was launched: {:#?}",
        client.notifications
    );
    // The open and the save each got the same "not enabled here" notice: one popup at most.
    let popups = client
        .notifications
        .iter()
        .filter(|notification| notification["method"] == "window/showMessage")
        .count();
    assert!(popups <= 1, "repeated popups: {:#?}", client.notifications);
}

#[test]
fn shutdown_then_exit_ends_the_process_with_code_0() {
    let mut client = Client::start();
    client.initialize(None, Value::Null);
    let shutdown = client.request("shutdown", Value::Null);
    assert_eq!(
        shutdown,
        json!({"jsonrpc": "2.0", "id": shutdown["id"], "result": null})
    );
    client.notify("exit", Value::Null);
    let status = client.wait_exit();
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn exit_without_shutdown_ends_the_process_with_code_1() {
    let mut client = Client::start();
    client.initialize(None, Value::Null);
    client.notify("exit", Value::Null);
    let status = client.wait_exit();
    assert_eq!(status.code(), Some(1), "{status}");
}

#[test]
fn closing_stdin_ends_the_process() {
    let (_dir, root) = copy_fixture("counter");
    std::fs::remove_file(root.join("hot-lsp.toml")).expect("remove hot-lsp.toml");
    let mut client = Client::start();
    client.initialize(Some(&root), Value::Null);
    // Make sure the session exists before the client goes away.
    let status = client.execute("hot-lsp.status", json!([]));
    assert_eq!(status["result"]["state"], "idle", "{status}");
    client.close_stdin();
    let status = client.wait_exit();
    assert!(status.code().is_some(), "killed by a signal: {status}");
}

#[test]
fn workspace_folders_can_be_added_and_removed_at_runtime() {
    let (_first_dir, first) = copy_fixture("counter");
    let (_second_dir, second) = copy_fixture("counter");
    for root in [&first, &second] {
        std::fs::remove_file(root.join("hot-lsp.toml")).expect("remove hot-lsp.toml");
    }
    let mut client = Client::start();
    client.initialize(Some(&first), Value::Null);
    client.notify(
        "workspace/didChangeWorkspaceFolders",
        json!({"event": {"added": [{"uri": file_uri(&second), "name": "second"}], "removed": []}}),
    );
    let status = client.execute("hot-lsp.status", json!([{"workspace": file_uri(&second)}]));
    assert_eq!(status["result"]["workspace"], file_uri(&second), "{status}");
    // Without a workspace argument, commands go to the first folder.
    let status = client.execute("hot-lsp.status", json!([]));
    assert_eq!(status["result"]["workspace"], file_uri(&first), "{status}");

    client.notify(
        "workspace/didChangeWorkspaceFolders",
        json!({"event": {"added": [], "removed": [{"uri": file_uri(&first), "name": "first"}]}}),
    );
    let gone = client.execute("hot-lsp.status", json!([{"workspace": file_uri(&first)}]));
    assert_eq!(error_code(&gone), -32602, "{gone}");
    let status = client.execute("hot-lsp.status", json!([]));
    assert_eq!(status["result"]["workspace"], file_uri(&second), "{status}");
}
