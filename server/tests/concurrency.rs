//! Two workspaces swapping into two programs at once, through the real `hot-lsp --stdio`:
//! one server, two workspace folders, each running its own copy of the counter program;
//! both files are edited and saved back to back, repeatedly, and each program ends up
//! running its own last edit (no save of one folder reaches the other's program, none is
//! lost, neither session waits for the other).

mod common;

use common::{build_program, copy_fixture, file_uri, Client};
use serde_json::{json, Value};

fn output_of(params: &Value, workspace: &str, needle: &str) -> bool {
    params["workspace"] == workspace
        && params["stream"] == "stdout"
        && params["text"].as_str().is_some_and(|t| t.contains(needle))
}

#[test]
fn two_workspaces_swap_into_two_programs_at_once() {
    let folders: Vec<_> = (0..2).map(|_| copy_fixture("counter")).collect();
    for (_, root) in &folders {
        build_program(root);
    }
    let uris: Vec<String> = folders.iter().map(|(_, root)| file_uri(root)).collect();
    let mut client = Client::start();
    let response = client.request(
        "initialize",
        json!({
            "processId": std::process::id(),
            "rootUri": uris[0],
            "capabilities": {"window": {"workDoneProgress": true}},
            "workspaceFolders": [
                {"uri": uris[0], "name": "first"},
                {"uri": uris[1], "name": "second"},
            ],
        }),
    );
    assert!(response.get("result").is_some(), "{response}");
    client.notify("initialized", json!({}));
    let mut pids = Vec::new();
    for uri in &uris {
        let status = client.wait_notification("hot-lsp/status", |params| {
            params["workspace"] == *uri && params["state"] == "running" && params["pid"].is_i64()
        });
        pids.push(status["pid"].as_i64().expect("pid"));
        client.wait_notification("hot-lsp/output", |params| {
            output_of(params, uri, "value=10")
        });
    }
    assert_ne!(pids[0], pids[1], "one program per folder");

    // Each round: both folders saved back to back, with factors no other round or folder
    // uses, so that a save reaching the wrong program or an old save running last shows.
    let mut factors = [1u32, 1];
    for round in 0..4u32 {
        for (index, (_, root)) in folders.iter().enumerate() {
            let main_c = root.join("main.c");
            let text = std::fs::read_to_string(&main_c).expect("read main.c");
            let next = 2 + round * 2 + index as u32;
            let edited = text.replacen(
                &format!("return x * {};", factors[index]),
                &format!("return x * {next};"),
                1,
            );
            assert_ne!(edited, text, "the factor of folder {index}");
            std::fs::write(&main_c, edited).expect("write main.c");
            factors[index] = next;
            client.did_save(&main_c);
        }
        for (index, uri) in uris.iter().enumerate() {
            let seq = u64::from(round) + 1;
            let status = client.wait_notification("hot-lsp/status", |params| {
                params["workspace"] == *uri && params["lastSwap"]["seq"] == seq
            });
            assert_eq!(status["pid"], pids[index], "{status}");
            let value = format!("value={}", 10 * factors[index]);
            client.wait_notification("hot-lsp/output", |params| output_of(params, uri, &value));
        }
    }
    // Neither folder ever printed the other's values.
    for (index, uri) in uris.iter().enumerate() {
        let other = 1 - index;
        for round in 0..4u32 {
            let foreign = format!("value={}", 10 * (2 + round * 2 + other as u32));
            assert!(
                !client
                    .notifications
                    .iter()
                    .any(|n| n["method"] == "hot-lsp/output"
                        && output_of(&n["params"], uri, &foreign)),
                "folder {index} ran folder {other}'s edit ({foreign})"
            );
        }
    }
}

/// Through the real server: a save sent while the program is being launched, then 50 saves
/// of one file in about a second. Each time the last content saved is what runs.
#[test]
fn a_save_during_launch_and_fifty_saves_in_a_second_through_the_server() {
    let (_dir, root) = copy_fixture("counter");
    build_program(&root);
    let main_c = root.join("main.c");
    let original = std::fs::read_to_string(&main_c).expect("read main.c");
    let write_factor = |factor: u32| {
        let text = original.replacen("return x * 1;", &format!("return x * {factor};"), 1);
        std::fs::write(&main_c, text).expect("write main.c");
    };
    let workspace = file_uri(&root);
    let mut client = Client::start();
    client.initialize(Some(&root), Value::Null);
    // The session launches as the folder opens: this save is queued behind the launch.
    write_factor(3);
    client.did_save(&main_c);
    client.wait_notification("hot-lsp/output", |params| {
        output_of(params, &workspace, "value=30")
    });

    let started = std::time::Instant::now();
    for factor in 4..54u32 {
        write_factor(factor);
        client.did_save(&main_c);
        // An editor's pace (a load, not a wait).
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("50 saves sent in {:?}", started.elapsed());
    client.wait_notification("hot-lsp/output", |params| {
        output_of(params, &workspace, "value=530")
    });
    // And it stays: no older save runs after the last one. (Output from before the last
    // swap waits unconsumed in the backlog: dropped first.)
    client.discard_backlog();
    for _ in 0..5 {
        let params = client.wait_notification("hot-lsp/output", |params| {
            params["workspace"] == workspace && params["stream"] == "stdout"
        });
        let text = params["text"].as_str().unwrap_or_default();
        assert!(
            text.lines().all(|line| line.contains("value=530")),
            "an older save ran after the last: {text}"
        );
    }
    let status = client.execute("hot-lsp.status", json!([]));
    assert_eq!(status["result"]["state"], "running", "{status}");
}
