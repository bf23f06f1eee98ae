//! The launched program lives exactly as long as the server: still running after 30 s of an
//! idle server, gone once the server is killed (no orphans, even on SIGKILL). Asked to end
//! (LSP `shutdown` and `exit`, SIGTERM or SIGINT to `hot-lsp watch`) while a baseline compiles
//! in the background, the server kills that compile and ends at once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::watch::Watch;
use common::{copy_shared_fixture, process_alive};

/// Kills the server if the test fails half-way, so no `hot-lsp watch` outlives it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn program_outlives_an_idle_server_and_dies_with_it() {
    let (_dir, root) = copy_shared_fixture("basic");
    let mut server = Command::new(env!("CARGO_BIN_EXE_hot-lsp"))
        .arg("watch")
        .arg(&root)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start hot-lsp watch");
    let stdout = server.stdout.take().expect("stdout");
    let mut server = KillOnDrop(server);
    let mut lines = BufReader::new(stdout).lines();
    let mut pid = None;
    let launched_at = Instant::now();
    // Read events until 30 s have passed since the launch; the program prints all along.
    while let Some(Ok(line)) = lines.next() {
        let event: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON event: {line:?}: {e}"));
        if event["event"] == "launched" {
            pid = event["pid"].as_i64();
        }
        if event["event"] == "exited" || event["event"] == "error" {
            panic!("the program did not stay up: {line}");
        }
        if pid.is_some() && launched_at.elapsed() >= Duration::from_secs(30) {
            break;
        }
        assert!(
            launched_at.elapsed() < Duration::from_secs(120),
            "no launch event"
        );
    }
    let pid = pid.expect("a launched event");
    assert!(
        process_alive(pid),
        "the program died while the server idled"
    );

    server.0.kill().expect("kill the server");
    server.0.wait().expect("reap the server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the program {pid} outlived the killed server"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every thread of `pid`: (tid, state letter, tracer pid).
fn threads(pid: i64) -> Vec<(String, char, i64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let get = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            Some((
                entry.file_name().to_string_lossy().into_owned(),
                get("State:").chars().next().unwrap_or('?'),
                get("TracerPid:").parse().unwrap_or(-1),
            ))
        })
        .collect()
}

/// The processes whose parent is `pid`.
fn children(pid: i64) -> Vec<i64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let child: i64 = entry.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let parent: i64 = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))?
                .trim()
                .parse()
                .ok()?;
            (parent == pid).then_some(child)
        })
        .collect()
}

/// Polls `done` every millisecond until it holds, failing with `what` after a generous time.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A server on `root` with its program running: the client and the program's pid.
fn serve(root: &std::path::Path) -> (common::Client, i64) {
    let mut client = common::Client::start();
    client.initialize(Some(root), serde_json::Value::Null);
    let workspace = common::file_uri(root);
    let status = client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && params["state"] == "running" && params["pid"].is_i64()
    });
    (client, status["pid"].as_i64().expect("pid"))
}

fn edit_and_save(client: &common::Client, file: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("read source");
    std::fs::write(file, text.replacen(from, to, 1)).expect("write source");
    client.did_save(file);
}

/// Saves an edit of the stuck fixture while one of its threads sits in vfork, waits until
/// the swap holds the other threads stopped, and SIGKILLs the server there.
fn kill_the_server_mid_swap(client: &mut common::Client, root: &std::path::Path, pid: i64) {
    std::fs::write(root.join("hold"), "").expect("create hold");
    wait_until("a thread in vfork", || {
        threads(pid).iter().any(|t| t.1 == 'D') && !children(pid).is_empty()
    });
    edit_and_save(
        client,
        &root.join("main.c"),
        "return x * 1;",
        "return x * 2;",
    );
    wait_until("the swap to hold threads stopped", || {
        threads(pid).iter().any(|t| t.1 == 't')
    });
    // SAFETY: plain system call on the server we started.
    unsafe { libc::kill(client.pid() as i32, libc::SIGKILL) };
    client.wait_exit();
}

#[test]
fn a_launched_program_and_its_children_die_with_a_server_killed_mid_swap() {
    let (_dir, root) = copy_shared_fixture("stuck");
    let (mut client, pid) = serve(&root);
    let workspace = common::file_uri(&root);
    client.wait_notification("hot-lsp/output", |params| {
        params["workspace"] == workspace
            && params["text"].as_str().is_some_and(|t| t.contains("tick="))
    });
    kill_the_server_mid_swap(&mut client, &root, pid);
    let vforked = children(pid);
    // PR_SET_PDEATHSIG takes the program, the terminal's hangup its vfork child.
    wait_until("the program to die with the server", || !process_alive(pid));
    for child in vforked {
        wait_until(&format!("the program's child {child} to die"), || {
            !process_alive(child)
        });
    }
}

#[test]
fn an_attached_program_runs_on_untraced_when_the_server_dies_mid_swap() {
    let (_dir, root) = copy_shared_fixture("stuck");
    std::fs::write(
        root.join("hot-lsp.toml"),
        "[program]\npath = \"app\"\nlaunch = \"manual\"\n\n[compile]\ncommand = \"cc -O0 -g -pthread -c {file} -o {output}\"\n",
    )
    .expect("config");
    let built = Command::new("cc")
        .args(["-O0", "-g", "-pthread", "-o", "app", "main.c"])
        .current_dir(&root)
        .status()
        .expect("cc");
    assert!(built.success());
    let mut program = Command::new(root.join("app"))
        .current_dir(&root)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the program");
    let pid = program.id() as i64;
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = program.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut client = common::Client::start();
    client.initialize(Some(&root), serde_json::Value::Null);
    client.execute("hot-lsp.attach", serde_json::json!([{"pid": pid}]));
    let workspace = common::file_uri(&root);
    client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && params["state"] == "running" && params["pid"] == pid
    });
    kill_the_server_mid_swap(&mut client, &root, pid);
    // The kernel lets every thread go with its dead tracer: none stays stopped or traced.
    wait_until("every thread to run untraced", || {
        threads(pid)
            .iter()
            .all(|t| t.1 != 't' && t.1 != 'T' && t.2 == 0)
    });
    std::fs::remove_file(root.join("hold")).expect("remove hold");
    // It runs on, with the old code: the swap never got to write.
    while lines.try_recv().is_ok() {}
    for _ in 0..3 {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the program prints on");
        assert!(line.ends_with("compute=10"), "{line}");
    }
    assert!(process_alive(pid));
    program.kill().expect("kill");
    program.wait().expect("wait");
}

#[test]
fn a_server_killed_at_random_points_leaves_no_program_or_worker_behind() {
    // As under nohup or a job runner: the servers this test starts inherit SIGHUP ignored,
    // and the program's workers, which only the terminal's hangup kills, must die anyway.
    // SAFETY: plain system call; nothing in this test process expects SIGHUP.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    // Seeded (xorshift64*), so a failing round can be replayed.
    let mut state: u64 = std::env::var("HOT_SERVER_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0012);
    let mut below = |n: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    };
    let mut delays = Vec::new();
    for round in 0..6 {
        let (_dir, root) = copy_shared_fixture("prefork");
        let (mut client, pid) = serve(&root);
        wait_until("two workers", || children(pid).len() >= 2);
        let workers = children(pid);
        let k = 2 + round;
        edit_and_save(
            &client,
            &root.join("main.c"),
            "return x * 1;",
            &format!("return x * {k};"),
        );
        let delay = Duration::from_micros(below(200_000));
        delays.push(delay.as_millis());
        std::thread::sleep(delay);
        // SAFETY: plain system call on the server we started.
        unsafe { libc::kill(client.pid() as i32, libc::SIGKILL) };
        client.wait_exit();
        for process in std::iter::once(pid).chain(workers) {
            wait_until(
                &format!("round {round}: pid {process} to die with the server ({delay:?})"),
                || !process_alive(process),
            );
        }
    }
    eprintln!("the server was killed after {delays:?} ms; no program or worker outlived it");
}

/// How a front end is asked to end.
#[derive(Clone, Copy, Debug)]
enum End {
    /// `hot-lsp --stdio`: the `shutdown` request, then the `exit` notification.
    ShutdownAndExit,
    /// `hot-lsp watch`: this signal.
    WatchSignal(i32),
}

/// How long ending may take while the slowbaseline fixture's compiler holds a baseline
/// compile for 5 minutes: generous for a busy machine, and far below the hold.
const PROMPTLY: Duration = Duration::from_secs(30);

/// Every way of ending the server: a row each.
const ENDINGS: &[End] = &[
    End::ShutdownAndExit,
    End::WatchSignal(libc::SIGTERM),
    End::WatchSignal(libc::SIGINT),
];

/// Start a front end on the slowbaseline fixture, wait until its compiler holds the first
/// baseline compile, ask it to end in the way `end` says, and check that it exits within
/// [`PROMPTLY`], killing the compiler and the program.
fn check_ends_promptly_during_a_baseline_compile(end: End) {
    let (_dir, root) = copy_shared_fixture("slowbaseline");
    let started = root.join("baseline-started");
    let compiler_pid = || -> i64 {
        wait_until("the baseline compile to start", || started.exists());
        std::fs::read_to_string(root.join("baseline.pid"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .expect("gatedcc's pid")
    };
    // The front end's pid, the program's and the compiler's, and when the end was asked.
    let (front_end, program, compiler, asked, mut reap): (
        i64,
        i64,
        i64,
        Instant,
        Box<dyn FnMut()>,
    ) = match end {
        End::ShutdownAndExit => {
            let (mut client, program) = serve(&root);
            let compiler = compiler_pid();
            assert!(process_alive(compiler), "the compile ended early");
            let asked = Instant::now();
            client.request("shutdown", serde_json::Value::Null);
            client.notify("exit", serde_json::Value::Null);
            let front_end = i64::from(client.pid());
            (
                front_end,
                program,
                compiler,
                asked,
                Box::new(move || {
                    let status = client.wait_exit();
                    assert!(status.success(), "shutdown then exit: {status:?}");
                }),
            )
        }
        End::WatchSignal(signal) => {
            let mut watch = Watch::start(&root);
            let launched = watch.wait("the launch", |e| e["event"] == "launched");
            let program = launched["pid"].as_i64().expect("pid");
            let compiler = compiler_pid();
            assert!(process_alive(compiler), "the compile ended early");
            let front_end = i64::from(watch.pid());
            let asked = Instant::now();
            // SAFETY: plain system call on the server we started.
            unsafe { libc::kill(front_end as i32, signal) };
            (
                front_end,
                program,
                compiler,
                asked,
                Box::new(move || {
                    let status = watch.wait_exit();
                    assert!(status.success(), "signal {signal}: {status:?}");
                }),
            )
        }
    };
    // Exited (a zombie until reaped) within the bound: a wait for the compile takes 5 minutes.
    while process_alive(front_end) {
        assert!(
            asked.elapsed() < PROMPTLY,
            "{end:?}: the server still runs {:?} after it was asked to end (the baseline \
             compile holds for 5 minutes)",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = asked.elapsed();
    reap();
    eprintln!("{end:?}: the server ended {took:?} after it was asked to");
    wait_until(
        &format!("{end:?}: the compiler {compiler} to be killed"),
        || !process_alive(compiler),
    );
    wait_until(&format!("{end:?}: the program {program} to die"), || {
        !process_alive(program)
    });
}

#[test]
fn the_server_ends_promptly_while_a_baseline_compiles() {
    for &end in ENDINGS {
        check_ends_promptly_during_a_baseline_compile(end);
    }
}

/// `[compile] jobs = 2`: the parallelbaselines fixture's compiler holds the baselines of
/// b.c and c.c at once; LSP shutdown and exit end the server promptly and kill both.
#[test]
fn shutdown_kills_every_baseline_compile_in_flight() {
    let (_dir, root) = copy_shared_fixture("parallelbaselines");
    let (mut client, program) = serve(&root);
    let held = |file: &str| root.join("held").join(format!("{file}.pid"));
    wait_until("b.c's and c.c's baselines to be held", || {
        held("b.c").exists() && held("c.c").exists()
    });
    let compilers: Vec<i64> = ["b.c", "c.c"]
        .iter()
        .map(|file| {
            std::fs::read_to_string(held(file))
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .expect("gatedcc's pid")
        })
        .collect();
    assert!(
        compilers.iter().all(|&pid| process_alive(pid)),
        "a held compile ended early"
    );
    let asked = Instant::now();
    client.request("shutdown", serde_json::Value::Null);
    client.notify("exit", serde_json::Value::Null);
    let status = client.wait_exit();
    assert!(status.success(), "shutdown then exit: {status:?}");
    assert!(
        asked.elapsed() < PROMPTLY,
        "the server took {:?} to end",
        asked.elapsed()
    );
    for pid in compilers {
        wait_until(&format!("the baseline compiler {pid} to be killed"), || {
            !process_alive(pid)
        });
    }
    wait_until(&format!("the program {program} to die"), || {
        !process_alive(program)
    });
}
