//! Nothing fails silently: every variant of the error enums the session turns into user
//! messages — the process backend's `ProcessError`, the compiler runner's `CompileError`,
//! the linker's `LinkErrorCode` — has a stable code of DESIGN.md 3.3 and a non-empty text,
//! and the ones a real program can be made to produce here reach the user as an error
//! message and a status carrying that code. The walks are exhaustive matches: a new variant
//! does not compile until this test covers it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use common::Fixture;
use hot_link::LinkErrorCode;
use hot_process::ProcessError;
use hot_session::compile::CompileError;
use hot_session::{Command, SessionEvent, Severity, State, Status};

/// DESIGN.md 3.3's diagnostic codes, and the two the process backend adds for failures the
/// list has no code for.
const CODES: &[&str] = &[
    "compile-error",
    "compile-warning",
    "undefined-symbol",
    "relocation-overflow",
    "unsupported-relocation",
    "protection-failure",
    "permission-denied",
    "layout-changed",
    "signature-changed",
    "initializer-not-applied",
    "function-too-small",
    "process-exited",
    "config-error",
    "launch-failed",
    "process-error",
];

/// Which variant `e` is; exhaustive, so that a new variant must be added to the walk.
fn process_variant(e: &ProcessError) -> usize {
    match e {
        ProcessError::Launch { .. } => 0,
        ProcessError::PermissionDenied(_) => 1,
        ProcessError::Exited => 2,
        ProcessError::Protection { .. } => 3,
        ProcessError::Unexpected { .. } => 4,
        ProcessError::Other(_) => 5,
        ProcessError::CallStillRunning(_) => 6,
        ProcessError::HeldByDebugger { .. } => 7,
        ProcessError::FrameRefused(_) => 8,
    }
}

fn every_process_error() -> Vec<ProcessError> {
    vec![
        ProcessError::Launch {
            path: PathBuf::from("/w/app"),
            message: "No such file or directory".into(),
        },
        ProcessError::PermissionDenied("ptrace attach to 42: Operation not permitted".into()),
        ProcessError::Exited,
        ProcessError::Protection {
            addr: 0x1000,
            what: "entry of compute".into(),
            message: "Bad address".into(),
        },
        ProcessError::Unexpected {
            addr: 0x1000,
            what: "entry of compute".into(),
        },
        ProcessError::Other("no process 42".into()),
        ProcessError::CallStillRunning(
            "__register_frame_info in thread 42 did not return within 60 s; it is left running"
                .into(),
        ),
        ProcessError::HeldByDebugger {
            pid: 42,
            tracer: 43,
            name: "gdb".into(),
        },
        ProcessError::FrameRefused(vec![hot_process::LiveFrame {
            function: "main".into(),
            tid: 42,
        }]),
    ]
}

fn compile_variant(e: &CompileError) -> usize {
    match e {
        CompileError::CompilerMissing { .. } => 0,
        CompileError::Spawn { .. } => 1,
    }
}

fn every_compile_error() -> Vec<CompileError> {
    vec![
        CompileError::CompilerMissing {
            compiler: "cc".into(),
            source_file: PathBuf::from("/w/main.c"),
        },
        CompileError::Spawn {
            compiler: "cc".into(),
            source_file: PathBuf::from("/w/main.c"),
            message: "Resource temporarily unavailable".into(),
        },
    ]
}

fn link_variant(code: LinkErrorCode) -> usize {
    match code {
        LinkErrorCode::UndefinedSymbol => 0,
        LinkErrorCode::RelocationOverflow => 1,
        LinkErrorCode::UnsupportedRelocation => 2,
        LinkErrorCode::LayoutChanged => 3,
        LinkErrorCode::FunctionTooSmall => 4,
        LinkErrorCode::NewThreadLocal => 5,
        LinkErrorCode::ArenaExhausted => 6,
        LinkErrorCode::MultipleDefinition => 7,
        LinkErrorCode::SignatureChanged => 8,
    }
}

const EVERY_LINK_ERROR: [LinkErrorCode; 9] = [
    LinkErrorCode::UndefinedSymbol,
    LinkErrorCode::RelocationOverflow,
    LinkErrorCode::UnsupportedRelocation,
    LinkErrorCode::LayoutChanged,
    LinkErrorCode::FunctionTooSmall,
    LinkErrorCode::NewThreadLocal,
    LinkErrorCode::ArenaExhausted,
    LinkErrorCode::MultipleDefinition,
    LinkErrorCode::SignatureChanged,
];

/// `variant` numbers each sample; every number below the count must appear exactly once.
fn assert_walk_is_complete<T>(samples: &[T], variant: impl Fn(&T) -> usize, count: usize) {
    let mut seen: Vec<usize> = samples.iter().map(variant).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..count).collect::<Vec<_>>(),
        "one sample per variant"
    );
}

#[test]
fn every_error_variant_has_a_stable_code_and_a_text() {
    let process = every_process_error();
    assert_walk_is_complete(&process, process_variant, 9);
    for e in &process {
        assert!(CODES.contains(&e.code()), "{e:?}: {}", e.code());
        assert!(!e.to_string().trim().is_empty(), "{e:?}");
    }
    let compile = every_compile_error();
    assert_walk_is_complete(&compile, compile_variant, 2);
    for e in &compile {
        assert!(CODES.contains(&e.code()), "{e:?}: {}", e.code());
        assert!(!e.to_string().trim().is_empty(), "{e:?}");
    }
    assert_walk_is_complete(&EVERY_LINK_ERROR, |c| link_variant(*c), 9);
    for code in EVERY_LINK_ERROR {
        assert!(
            CODES.contains(&code.diagnostic_code()),
            "{code:?}: {}",
            code.diagnostic_code()
        );
    }
}

/// Wait for an error message and a status that carries `code` with a non-empty message.
fn wait_reported(f: &mut Fixture, code: &str) -> (String, Status) {
    let status = f.wait(&format!("a status with code {code}"), |e| match e {
        SessionEvent::Status(s) if s.code.as_deref() == Some(code) => Some(s.clone()),
        _ => None,
    });
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| !m.trim().is_empty()),
        "{status:?}"
    );
    let text = f.wait_message(Severity::Error);
    assert!(!text.trim().is_empty());
    (text, status)
}

/// A workspace of basic's sources that launches nothing by itself.
fn manual(config: &str) -> Fixture {
    let mut f = Fixture::copy("basic");
    f.write("hot-lsp.toml", config);
    f.start();
    f
}

#[test]
fn a_program_that_cannot_start_is_launch_failed() {
    let mut f = manual("[program]\npath = \"no-such-app\"\n");
    let (text, status) = wait_reported(&mut f, "launch-failed");
    assert!(text.contains("no-such-app"), "{text}");
    assert_eq!(status.state, State::Failed, "{status:?}");
}

#[test]
fn a_missing_compiler_is_a_compile_error() {
    let mut f = manual(
        "[program]\npath = \"app\"\nlaunch = \"manual\"\n\n[compile]\n\
         command = \"no-such-compiler -c {file} -o {output}\"\n",
    );
    f.save("main.c");
    let (text, _) = wait_reported(&mut f, "compile-error");
    assert!(text.contains("no-such-compiler"), "{text}");
}

#[test]
fn attaching_to_no_process_is_a_process_error() {
    let mut f = manual("[program]\npath = \"app\"\nlaunch = \"manual\"\n");
    // A pid that was just freed.
    let mut gone = Process::new("true").spawn().expect("run true");
    let pid = gone.id() as i32;
    gone.wait().expect("reap true");
    f.send(Command::Attach { pid });
    let (text, _) = wait_reported(&mut f, "process-error");
    assert!(text.contains(&pid.to_string()), "{text}");
}

/// Kills and reaps the helper whatever the test's outcome.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn attaching_to_a_process_traced_by_another_is_permission_denied() {
    let mut f = manual("[program]\npath = \"app\"\nlaunch = \"manual\"\n");
    // A program traced by this test (PTRACE_TRACEME): a second tracer gets EPERM, as under
    // a debugger.
    let source = f.path("traced.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <sys/ptrace.h>\n#include <unistd.h>\n\
         int main(void) { ptrace(PTRACE_TRACEME, 0, 0, 0); puts(\"traced\"); fflush(stdout);\n\
         for (;;) pause(); }\n",
    )
    .expect("write traced.c");
    let binary = f.path("traced");
    let built = Process::new("cc")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(built.success());
    let mut child = Process::new(&binary)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start traced");
    let stdout = child.stdout.take().expect("stdout");
    let child = Reaped(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the helper's line");
    assert_eq!(line.trim(), "traced");
    f.send(Command::Attach {
        pid: child.0.id() as i32,
    });
    let (text, _) = wait_reported(&mut f, "permission-denied");
    assert!(text.contains("permission denied"), "{text}");
}
