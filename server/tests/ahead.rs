//! Compile ahead of the save, through the real `hot-lsp --stdio` binary and the counter
//! fixture: an unsaved buffer is compiled and linked while the user pauses, what its save
//! would be refused for is published while typing (marked "on save: "), a save of exactly
//! that text swaps without compiling, a save of other text compiles as before, and a newer
//! keystroke or a save kills a compile ahead of older text. The ABI checks of a save (fixture
//! `abi`: a changed signature, a function removed but still called) show while typing too.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{
    build_program, copy_fixture, copy_shared_fixture, file_uri, process_alive, Client, TIMEOUT,
};
use serde_json::{json, Value};

struct Running {
    client: Client,
    _dir: tempfile::TempDir,
    root: PathBuf,
    main_c: PathBuf,
    original: String,
}

fn output_contains(params: &Value, needle: &str) -> bool {
    params["stream"] == "stdout" && params["text"].as_str().is_some_and(|t| t.contains(needle))
}

/// The counter fixture running under the server; `slow` compiles through a wrapper that
/// sleeps (its pid in `slow.pid`) when the source contains `SLOW_COMPILE`.
fn start(slow: bool) -> Running {
    let (dir, root) = copy_fixture("counter");
    build_program(&root);
    if slow {
        std::fs::write(
            root.join("slow.sh"),
            "# cc, but a source containing SLOW_COMPILE first sleeps (the sleep's pid in slow.pid)\n\
             prev=\n\
             for a in \"$@\"; do\n\
               if [ \"$prev\" = -c ] && grep -q SLOW_COMPILE \"$a\"; then\n\
                 sleep 600 & echo $! > slow.pid.tmp; mv slow.pid.tmp slow.pid; wait $!\n\
               fi\n\
               prev=$a\n\
             done\n\
             exec cc -O0 \"$@\"\n",
        )
        .expect("write slow.sh");
        std::fs::write(
            root.join("hot-lsp.toml"),
            "[program]\npath = \"app\"\n[compile]\ncommand = \"sh slow.sh -g -c {file}\"\nahead_delay_ms = 0\n",
        )
        .expect("write hot-lsp.toml");
    }
    let mut client = Client::start();
    client.initialize(Some(&root), json!({"compile": {"ahead_delay_ms": 0}}));
    let workspace = file_uri(&root);
    client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && params["state"] == "running" && params["pid"].is_i64()
    });
    client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "value=10")
    });
    let main_c = root.join("main.c");
    let original = std::fs::read_to_string(&main_c).expect("read main.c");
    Running {
        client,
        _dir: dir,
        root,
        main_c,
        original,
    }
}

impl Running {
    /// The fixture's text with `compute`'s body replaced.
    fn with_body(&self, body: &str) -> String {
        assert!(self.original.contains("return x * 1;"));
        self.original.replacen("return x * 1;", body, 1)
    }

    /// The next diagnostics of main.c that `matches`.
    fn wait_diagnostics(&mut self, matches: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let uri = file_uri(&self.main_c);
        let published =
            self.client
                .wait_notification("textDocument/publishDiagnostics", |params| {
                    params["uri"] == uri.as_str()
                        && params["diagnostics"]
                            .as_array()
                            .is_some_and(|list| matches(list))
                });
        published["diagnostics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Write `text` to main.c, save it and wait for the swap of `compute`.
    fn save_and_wait_swap(&mut self, text: &str) -> Value {
        std::fs::write(&self.main_c, text).expect("write main.c");
        self.client.did_save(&self.main_c);
        let workspace = file_uri(&self.root);
        self.client.wait_notification("hot-lsp/status", |params| {
            params["workspace"] == workspace
                && params["lastSwap"]["swapped"]
                    .as_array()
                    .is_some_and(|names| names.iter().any(|n| n == "compute"))
        })
    }
}

fn on_save(diagnostic: &Value, code: &str, needle: &str) -> bool {
    diagnostic["code"] == code
        && diagnostic["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("on save: ") && m.contains(needle))
}

/// Waits until `path` holds a pid (written by slow.sh once its sleep started).
fn wait_pid_file(path: &Path) -> i64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn wait_dead(pid: i64) {
    let deadline = Instant::now() + TIMEOUT;
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the compile ahead's process {pid} was not killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_refusal_shows_while_typing_and_a_save_of_the_compiled_text_skips_the_compile() {
    let mut run = start(false);
    // An unsaved call of a function that exists nowhere: the save would be refused.
    let missing = run.with_body("return hot_lsp_not_defined_anywhere(x);");
    let missing = missing.replacen(
        "int compute(int x) {",
        "int hot_lsp_not_defined_anywhere(int);\n\nint compute(int x) {",
        1,
    );
    run.client.did_change(&run.main_c, 2, &missing);
    let diagnostics = run.wait_diagnostics(|list| {
        list.iter()
            .any(|d| on_save(d, "undefined-symbol", "hot_lsp_not_defined_anywhere"))
    });
    let line = missing
        .lines()
        .position(|l| l.contains("return hot_lsp_not_defined_anywhere(x);"))
        .expect("the call's line");
    let diagnostic = diagnostics
        .iter()
        .find(|d| d["code"] == "undefined-symbol")
        .expect("undefined-symbol");
    assert_eq!(diagnostic["range"]["start"]["line"], line, "{diagnostic}");
    assert_eq!(diagnostic["severity"], 1, "{diagnostic}");
    // Nothing was written: the program still computes the old value.
    run.client.discard_backlog();
    run.client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "value=10")
    });

    // Fixed in the buffer: the pre-flight diagnostics clear once it linked.
    let fixed = run.with_body("return x * 7;");
    run.client.did_change(&run.main_c, 3, &fixed);
    run.wait_diagnostics(<[Value]>::is_empty);
    let status = run.save_and_wait_swap(&fixed);
    let swap = &status["lastSwap"];
    assert_eq!(swap["compiledAhead"], true, "{status}");
    assert_eq!(swap["micros"]["compile"], 0, "{status}");
    run.client.discard_backlog();
    run.client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "value=70")
    });
}

#[test]
fn a_save_of_other_text_than_compiled_ahead_compiles_it() {
    let mut run = start(false);
    // A changed initializer: the save would keep the running value, and says so.
    let typed =
        run.with_body("return x * 3;")
            .replacen("static int rounds;", "static int rounds = 5;", 1);
    run.client.did_change(&run.main_c, 2, &typed);
    run.wait_diagnostics(|list| {
        list.iter()
            .any(|d| on_save(d, "initializer-not-applied", "rounds"))
    });
    // The file saved is not what was typed (another tool wrote it, or the buffer moved on).
    let status = run.save_and_wait_swap(&run.with_body("return x * 4;"));
    let swap = &status["lastSwap"];
    assert_eq!(swap["compiledAhead"], false, "{status}");
    assert!(
        swap["micros"]["compile"].as_u64().is_some_and(|c| c > 0),
        "{status}"
    );
    run.client.discard_backlog();
    run.client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "value=40")
    });
}

#[test]
fn a_newer_keystroke_kills_a_compile_ahead_of_older_text() {
    let mut run = start(true);
    let slow = run
        .with_body("/* SLOW_COMPILE */ return hot_lsp_old_text(x);")
        .replacen(
            "int compute(int x) {",
            "int hot_lsp_old_text(int);\nint compute(int x) {",
            1,
        );
    run.client.did_change(&run.main_c, 2, &slow);
    let sleeping = wait_pid_file(&run.root.join("slow.pid"));
    let newer = run.with_body("return hot_lsp_new_text(x);").replacen(
        "int compute(int x) {",
        "int hot_lsp_new_text(int);\nint compute(int x) {",
        1,
    );
    run.client.did_change(&run.main_c, 3, &newer);
    // The newer text is compiled and linked while the old compile would still sleep.
    run.wait_diagnostics(|list| {
        list.iter()
            .any(|d| on_save(d, "undefined-symbol", "hot_lsp_new_text"))
    });
    wait_dead(sleeping);
    let stale = run
        .client
        .notifications
        .iter()
        .find(|n| n.to_string().contains("hot_lsp_old_text"));
    assert!(stale.is_none(), "the older text was reported: {stale:?}");
}

#[test]
fn a_save_never_waits_behind_a_compile_ahead_of_older_text() {
    let mut run = start(true);
    let slow = run.with_body("/* SLOW_COMPILE */ return x * 8;");
    run.client.did_change(&run.main_c, 2, &slow);
    let sleeping = wait_pid_file(&run.root.join("slow.pid"));
    // The user saves other text (the buffer changed and was saved at once).
    let status = run.save_and_wait_swap(&run.with_body("return x * 6;"));
    assert_eq!(status["lastSwap"]["compiledAhead"], false, "{status}");
    wait_dead(sleeping);
    run.client.discard_backlog();
    run.client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "value=60")
    });
}

/// An edit of the abi fixture's geom.c that the save's ABI checks refuse, typed and not saved.
struct PreFlight {
    from: &'static str,
    to: &'static str,
    code: &'static str,
    /// The diagnostic's line: the first line of the edited text containing this.
    at: &'static str,
    says: &'static [&'static str],
}

/// Every ABI refusal a compile ahead must show: a row each.
const ABI_PRE_FLIGHT: &[PreFlight] = &[
    // main.c declares `long scaled(int)` itself and calls it from run_round.
    PreFlight {
        from: "long scaled(int v) {",
        to: "long scaled(long v) {",
        code: "signature-changed",
        at: "long scaled(long v) {",
        says: &["`scaled`", "`run_round` (main.c)"],
    },
    // main.c calls helper: the link of geom.c alone succeeds, the check refuses.
    PreFlight {
        from: "int helper(int v) {\n    return bump(v);\n}\n",
        to: "/* helper is gone */\n",
        code: "undefined-symbol",
        at: "/* helper is gone */",
        says: &[
            "`helper` was removed from geom.c",
            "still called from `run_round` (main.c)",
        ],
    },
];

#[test]
fn abi_refusals_show_while_typing_as_what_the_save_will_do() {
    let (_dir, root) = copy_shared_fixture("abi");
    let mut client = Client::start();
    client.initialize(Some(&root), json!({"compile": {"ahead_delay_ms": 0}}));
    let workspace = file_uri(&root);
    let status = client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && params["state"] == "running" && params["pid"].is_i64()
    });
    let pid = status["pid"].as_i64().expect("pid");
    client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "scaled=20 cell=3 helper=2")
    });
    let geom = root.join("geom.c");
    let uri = file_uri(&geom);
    let original = std::fs::read_to_string(&geom).expect("read geom.c");
    let mut version = 1;
    for case in ABI_PRE_FLIGHT {
        let edited = original.replacen(case.from, case.to, 1);
        assert_ne!(edited, original, "geom.c has no {:?}", case.from);
        let line = edited
            .lines()
            .position(|l| l.contains(case.at))
            .expect("the diagnostic's line");
        version += 1;
        client.did_change(&geom, version, &edited);
        let published = client.wait_notification("textDocument/publishDiagnostics", |params| {
            params["uri"] == uri.as_str()
                && params["diagnostics"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(|d| on_save(d, case.code, case.says[0])))
        });
        let diagnostic = published["diagnostics"]
            .as_array()
            .and_then(|list| list.iter().find(|d| d["code"] == case.code))
            .expect("the refusal");
        assert_eq!(diagnostic["range"]["start"]["line"], line, "{diagnostic}");
        assert_eq!(diagnostic["severity"], 1, "an error: {diagnostic}");
        for needle in case.says {
            assert!(
                on_save(diagnostic, case.code, needle),
                "{needle:?} missing: {diagnostic}"
            );
        }
        // Typed back to what runs: the pre-flight findings clear.
        version += 1;
        client.did_change(&geom, version, &original);
        client.wait_notification("textDocument/publishDiagnostics", |params| {
            params["uri"] == uri.as_str()
                && params["diagnostics"].as_array().is_some_and(Vec::is_empty)
        });
    }
    // Nothing was saved, so nothing was swapped: the program computes what it did.
    client.discard_backlog();
    client.wait_notification("hot-lsp/output", |params| {
        output_contains(params, "scaled=20 cell=3 helper=2")
    });
    assert!(process_alive(pid));
    let swapped = client
        .notifications
        .iter()
        .find(|n| n["method"] == "hot-lsp/status" && n["params"]["lastSwap"].is_object());
    assert!(swapped.is_none(), "a swap while typing: {swapped:?}");
}
