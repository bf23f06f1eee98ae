//! Helpers shared by the integration tests: compiling the C fixtures with `cc`, launching
//! them, and waiting for their output with generous timeouts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hot_process::{Debuggee, LaunchSpec, ProcessEvent, Stream, Write, WritePlan};

/// Long enough for a busy 2-core CI box.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Compiles `tests/fixtures/<name>.c` into `dir` with extra flags; returns the executable.
pub fn compile(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.c"));
    let out = dir.join(name);
    let status = Command::new("cc")
        .args(["-O0", "-g", "-pthread"])
        .args(flags)
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed on {}", source.display());
    out
}

pub fn spec(path: &Path, args: &[&str]) -> LaunchSpec {
    LaunchSpec {
        path: path.to_path_buf(),
        args: args.iter().map(Into::into).collect(),
        cwd: path.parent().expect("parent").to_path_buf(),
        env: Vec::new(),
        disable_aslr: false,
    }
}

pub fn launch(path: &Path, args: &[&str]) -> (Debuggee, Receiver<ProcessEvent>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let debuggee = Debuggee::launch(&spec(path, args), tx).expect("launch");
    (debuggee, rx)
}

/// Forwards the stdout lines of a child started with `Stdio::piped()` (not through
/// hot-process) to a channel; it disconnects when the child's output ends.
pub fn lines_of(child: &mut std::process::Child) -> Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Starts the spin fixture (compiled into `dir`) outside hot-process with `args`, and waits
/// for its `value=` line: the child and its output lines.
pub fn spawn_spin(dir: &Path, args: &[&str]) -> (std::process::Child, Receiver<String>, String) {
    let program = compile(dir, "spin", &[]);
    let mut child = Command::new(&program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn spin");
    let lines = lines_of(&mut child);
    let deadline = Instant::now() + TIMEOUT;
    let value = loop {
        match lines.recv_deadline(deadline) {
            Ok(line) if line.starts_with("value=") => break line,
            Ok(_) => {}
            Err(e) => panic!("no value= line from spin: {e}"),
        }
    };
    (child, lines, value)
}

/// Waits for a stdout line satisfying `pred`, failing on exit or timeout.
pub fn wait_line(rx: &Receiver<ProcessEvent>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ProcessEvent::Output {
                stream: Stream::Stdout,
                text,
            }) if pred(&text) => return text,
            Ok(ProcessEvent::Output { .. } | ProcessEvent::Exec { .. }) => {}
            Ok(ProcessEvent::Exited { code, signal }) => {
                panic!("program exited (code {code:?}, signal {signal:?}) while waiting for {what}")
            }
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Waits for the exit event, skipping output.
pub fn wait_exit(rx: &Receiver<ProcessEvent>) -> (Option<i32>, Option<i32>) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ProcessEvent::Exited { code, signal }) => return (code, signal),
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for the exit"),
        }
    }
}

pub fn hex_field(line: &str, key: &str) -> u64 {
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"));
    u64::from_str_radix(value.trim_start_matches("0x"), 16).expect("hex")
}

pub fn field(line: &str, key: &str) -> i64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .expect("number")
}

/// `mov eax, imm32; ret`.
pub fn body_returning(value: u32) -> Vec<u8> {
    let mut bytes = vec![0xb8];
    bytes.extend_from_slice(&value.to_le_bytes());
    bytes.push(0xc3);
    bytes
}

/// `jmp rel32` from `from` to `to`.
pub fn jump(from: u64, to: u64) -> Vec<u8> {
    let rel = to.wrapping_sub(from + 5) as i64;
    assert!(
        i32::try_from(rel).is_ok(),
        "jump {from:#x} -> {to:#x} out of rel32 reach"
    );
    let mut bytes = vec![0xe9];
    bytes.extend_from_slice(&(rel as i32).to_le_bytes());
    bytes
}

/// A plan that writes a body returning `returned` at `slot` in the arena and points the
/// entry at `entry` to it, expecting `previous` there.
pub fn swap_plan(entry: u64, slot: u64, returned: u32, previous: &[u8]) -> (WritePlan, Vec<u8>) {
    let jmp = jump(entry, slot);
    let plan = WritePlan {
        prepare: vec![Write {
            addr: slot,
            bytes: body_returning(returned),
            expected: None,
            what: format!("body returning {returned}"),
        }],
        copies: Vec::new(),
        commit_data: Vec::new(),
        commit: vec![Write {
            addr: entry,
            bytes: jmp.clone(),
            expected: Some(previous.to_vec()),
            what: "entry of value".into(),
        }],
        protected: std::iter::once(entry..entry + 5).collect(),
        watch: Vec::new(),
        refuse_frames: Vec::new(),
        verify: Vec::new(),
    };
    (plan, jmp)
}

/// Whether `pid` is gone or a zombie (a zombie no longer runs).
pub fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            matches!(state, Some("Z" | "X"))
        }
    }
}

/// Polls until `pid` is dead, with a generous deadline.
pub fn wait_dead(pid: i32) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if is_dead(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One thread of a program as `/proc/PID/task/TID/status` shows it.
#[derive(Debug)]
pub struct TaskState {
    pub tid: i32,
    /// The state letter: `t` (ptrace stop), `T` (job-control stop), `R`, `S`, `D`, `Z`...
    pub state: char,
    pub tracer: i32,
    /// `/proc/PID/task/TID/wchan`: where in the kernel it waits, for failure messages.
    pub wchan: String,
}

/// Every thread of `pid` (those gone while listing are skipped).
pub fn task_states(pid: i32) -> Vec<TaskState> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut tasks = Vec::new();
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let value = |key: &str| status_field(&status, key);
        tasks.push(TaskState {
            tid,
            state: value("State:").chars().next().unwrap_or('?'),
            tracer: value("TracerPid:").parse().unwrap_or(-1),
            wchan: std::fs::read_to_string(entry.path().join("wchan")).unwrap_or_default(),
        });
    }
    tasks
}

/// The threads of `pid` that are stopped (`t`/`T`) or traced, if any.
pub fn stopped_or_traced(pid: i32) -> Vec<TaskState> {
    task_states(pid)
        .into_iter()
        .filter(|t| matches!(t.state, 't' | 'T') || t.tracer != 0)
        .collect()
}

/// Asserts that no thread of `pid` is left in a ptrace or job-control stop or traced.
pub fn assert_not_left_stopped(pid: i32, when: &str) {
    let left = stopped_or_traced(pid);
    assert!(
        left.is_empty(),
        "{when}: threads of pid {pid} left stopped or traced: {left:?}"
    );
}

/// Polls until no thread of `pid` is stopped or traced (a thread that could not be stopped in
/// time is detached once it can be), failing after [`TIMEOUT`].
pub fn wait_not_left_stopped(pid: i32, when: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !stopped_or_traced(pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_not_left_stopped(pid, when);
}

/// `debuggee.apply(plan)` on another thread, failing with every thread's state (and where
/// the kernel holds it) if it does not answer within [`TIMEOUT`]: a hung swap fails the test
/// instead of hanging it.
pub fn apply_within(
    debuggee: &std::sync::Arc<Debuggee>,
    plan: &WritePlan,
    what: &str,
) -> Result<hot_process::ApplyReport, hot_process::ProcessError> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let worker = debuggee.clone();
    let plan = plan.clone();
    std::thread::spawn(move || {
        let _ = tx.send(worker.apply(&plan));
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(result) => result,
        Err(_) => panic!(
            "{what}: apply did not return within {TIMEOUT:?}; threads: {:?}",
            task_states(debuggee.pid())
        ),
    }
}

/// The value of `key` (e.g. `"State:"`) in a `/proc/.../status` text, trimmed; empty if absent.
#[allow(dead_code)]
pub fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// What a test that swaps the stepper fixture's entry back and forth needs: the entry, its
/// original bytes (`pause; pause; nop`), a `ret` written into a new arena, and the jump to
/// it. `rx` must not have shown the `stepper=` line yet.
pub struct StepperSwap {
    pub entry: u64,
    pub nops: Vec<u8>,
    pub ret: Write,
    pub jmp: Vec<u8>,
}

impl StepperSwap {
    pub fn new(debuggee: &Debuggee, rx: &Receiver<ProcessEvent>) -> StepperSwap {
        let entry = hex_field(
            &wait_line(rx, "stepper=", |l| l.starts_with("stepper=")),
            "stepper=",
        );
        let image = debuggee.image_range().expect("image range");
        let arena = debuggee
            .map_arena(image, 4096, hot_process::Protection::ReadExecute)
            .expect("arena");
        let nops = debuggee.read_memory(entry, 5).expect("read");
        assert_eq!(
            nops,
            vec![0xf3, 0x90, 0xf3, 0x90, 0x90],
            "pause; pause; nop"
        );
        StepperSwap {
            entry,
            nops,
            ret: Write {
                addr: arena,
                bytes: vec![0xc3],
                expected: None,
                what: "ret".into(),
            },
            jmp: jump(entry, arena),
        }
    }

    /// The `i`th plan: see [`toggle_entry_plan`].
    pub fn plan(&self, i: usize) -> WritePlan {
        toggle_entry_plan(self.entry, &self.ret, &self.jmp, &self.nops, i)
    }
}

/// The `i`th plan of a test that swaps the entry of `stepper` (fixtures stepper.c,
/// stepsig.c) back and forth: even `i` writes `jmp` over the original `nops`, odd `i` puts
/// them back; `ret` (the arena body) is written each time, and the entry's 5 bytes are
/// protected.
pub fn toggle_entry_plan(entry: u64, ret: &Write, jmp: &[u8], nops: &[u8], i: usize) -> WritePlan {
    let (bytes, expected) = if i.is_multiple_of(2) {
        (jmp, nops)
    } else {
        (nops, jmp)
    };
    WritePlan {
        prepare: vec![ret.clone()],
        copies: Vec::new(),
        commit_data: Vec::new(),
        commit: vec![Write {
            addr: entry,
            bytes: bytes.to_vec(),
            expected: Some(expected.to_vec()),
            what: "entry of stepper".into(),
        }],
        protected: std::iter::once(entry..entry + 5).collect(),
        watch: Vec::new(),
        refuse_frames: Vec::new(),
        verify: Vec::new(),
    }
}
