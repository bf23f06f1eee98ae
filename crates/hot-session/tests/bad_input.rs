//! Bad input gets a clear error naming what is wrong, and nothing running is touched.

mod common;

use common::Fixture;
use hot_session::{Command, SessionEvent, Severity, State};

/// Start a copy of `basic` whose hot-lsp.toml is replaced, and return the first error.
fn first_error_with_config(toml: &str) -> (Fixture, String) {
    let mut f = Fixture::copy("basic");
    f.write("hot-lsp.toml", toml);
    f.start();
    let text = f.wait_message(Severity::Error);
    (f, text)
}

#[test]
fn missing_program() {
    let (f, text) = first_error_with_config("[program]\npath = \"build/not-there\"\n");
    assert!(text.contains("not-there"), "{text}");
    let status = f.session.as_ref().expect("session").status();
    assert_eq!(status.state, State::Failed, "{status:?}");
}

#[test]
fn stripped_executable() {
    let (_f, text) = first_error_with_config(
        "[program]\npath = \"app\"\nbuild = \"cc -O0 -g -s -o app main.c\"\n",
    );
    assert!(text.contains("stripped"), "{text}");
}

/// `[program] path` a wrapper script: one that `exec`s the program swaps into it, one that
/// runs it as a child is told why nothing can be swapped (not "/bin/sh is stripped").
#[test]
fn wrapper_scripts() {
    for (wrapper, swaps) in [("exec ./app\n", true), ("./app\necho app ended\n", false)] {
        let mut f = Fixture::copy("basic");
        f.write("run.sh", &format!("#!/bin/sh\n{wrapper}"));
        f.write(
            "hot-lsp.toml",
            "[program]\npath = \"run.sh\"\nbuild = \"cc -O0 -g -o app main.c && chmod +x run.sh\"\n[compile]\ncommand = \"cc -O0 -g -c {file} -o {output}\"\n",
        );
        f.start();
        f.wait_output("compute=10");
        f.edit("main.c", "return x * 1;", "return x * 2;");
        f.save("main.c");
        if swaps {
            f.wait_swap();
            f.wait_output("compute=20");
        } else {
            let text = f.wait_message(Severity::Error);
            assert!(
                text.contains("without `exec`") && text.contains("a shell"),
                "{wrapper:?}: {text}"
            );
            assert!(!text.contains("stripped"), "{text}");
        }
    }
}

/// A save while no program runs is compiled and answered: its compile errors as for any
/// save, and a clean compile with a message that nothing is swapped (not silence).
#[test]
fn a_save_with_no_program_running_is_answered() {
    let mut f = Fixture::launch("basic");
    f.send(Command::Stop);
    f.wait("the stop", |e| match e {
        SessionEvent::Status(s) if s.state == State::Exited => Some(()),
        _ => None,
    });
    f.edit("main.c", "return x * 1;", "return x * 2;");
    f.save("main.c");
    let text = f.wait("the answer", |e| match e {
        SessionEvent::Message { text, .. } if text.contains("no program is running") => {
            Some(text.clone())
        }
        _ => None,
    });
    assert!(text.contains("main.c compiled"), "{text}");
}

#[test]
fn invalid_config_is_located() {
    let mut f = Fixture::copy("basic");
    f.write("hot-lsp.toml", "[program]\npath = \"app\"\nargs = 3\n");
    f.start();
    let diagnostics = f.wait_diagnostics("hot-lsp.toml");
    assert_eq!(diagnostics[0].code, "config-error");
    assert_eq!(diagnostics[0].line, 3, "{diagnostics:?}");
}

/// Every problem of hot-lsp.toml at its line, nothing launched with the defaults instead (no
/// false "path is not set"), and the program launched once the file is fixed and saved.
#[test]
fn every_config_error_and_a_launch_once_fixed() {
    let mut f = Fixture::copy("basic");
    f.write(
        "hot-lsp.toml",
        "[program]\npath = \"app\"\nargs = \"oops\"\npth = 3\n[compile]\nahead_delay_ms = \"fast\"\n",
    );
    f.start();
    let diagnostics = f.wait_diagnostics("hot-lsp.toml");
    let lines: Vec<u32> = diagnostics.iter().map(|d| d.line).collect();
    assert_eq!(lines, [3, 4, 6], "{diagnostics:#?}");
    assert!(
        diagnostics.iter().all(|d| d.code == "config-error"),
        "{diagnostics:#?}"
    );
    let text = f.wait_message(Severity::Error);
    assert!(
        text.contains("3 errors") && text.contains("nothing is launched"),
        "{text}"
    );
    assert!(!text.contains("path is not set"), "{text}");
    let status = f.session.as_ref().expect("session").status();
    assert_eq!(status.state, State::Failed, "{status:?}");
    let fixed = std::fs::read_to_string(common::fixtures_dir().join("basic/hot-lsp.toml"))
        .expect("basic's hot-lsp.toml");
    f.write("hot-lsp.toml", &fixed);
    f.save("hot-lsp.toml");
    f.wait_output("tick=");
    let config = f.path("hot-lsp.toml");
    let cleared = f.log.iter().any(|e| {
        matches!(e, SessionEvent::Diagnostics { file, diagnostics }
            if *file == config && diagnostics.is_empty())
    });
    assert!(cleared, "the fixed file's errors are cleared");
}

/// A copy of `basic` built by its own command, with a compile database of one entry: `file`
/// compiled by `arguments` (JSON strings, comma-separated).
fn basic_with_database(file: &str, arguments: &str) -> Fixture {
    let f = Fixture::copy("basic");
    f.write(
        "hot-lsp.toml",
        "[program]\npath = \"app\"\nbuild = \"cc -O0 -g -o app main.c\"\n",
    );
    let dir = f.dir.path().display().to_string();
    f.write(
        "compile_commands.json",
        &format!(r#"[{{"directory": "{dir}", "file": "{file}", "arguments": [{arguments}]}}]"#),
    );
    f
}

#[test]
fn file_not_in_the_compile_database() {
    let mut f = basic_with_database("other.c", r#""cc", "-c", "other.c""#);
    f.start();
    f.wait_output("tick=");
    f.save("main.c");
    let text = f.wait_message(Severity::Error);
    assert!(
        text.contains("main.c") && text.contains("compile database"),
        "{text}"
    );
    f.assert_same_process_if_launched();
}

/// A source file that is neither in the compile database nor part of the running program (a
/// test or tool of the tree) gets one information diagnostic, not an error: a checkout that
/// writes many such files does not flood the editor with errors.
#[test]
fn a_file_outside_the_program_and_the_database_is_information() {
    let mut f = basic_with_database("main.c", r#""cc", "-O0", "-g", "-c", "main.c""#);
    f.start();
    f.wait_output("tick=");
    f.write("tool.c", "int tool_main(void) { return 0; }\n");
    f.save("tool.c");
    let diagnostics = f.wait_diagnostics("tool.c");
    assert!(
        matches!(diagnostics.as_slice(), [d] if d.severity == Severity::Information
            && d.code == "not-included" && d.message.contains("not part of the running program")),
        "{diagnostics:#?}"
    );
    let errors = f.errors_seen();
    assert!(errors.is_empty(), "{errors:#?}");
    f.assert_same_process_if_launched();
}

#[test]
fn source_not_linked_into_the_program() {
    let mut f = Fixture::copy("basic");
    f.write("tool.c", "int tool_main(void) { return 0; }\n");
    f.write(
        "hot-lsp.toml",
        "[program]\npath = \"app\"\nbuild = \"cc -O0 -g -o app main.c\"\n[compile]\ncommand = \"cc -O0 -g -c {file} -o {output}\"\n",
    );
    f.start();
    f.wait_output("tick=");
    f.save("tool.c");
    let text = f.wait_message(Severity::Error);
    assert!(
        text.contains("tool.c") && text.contains("not linked"),
        "{text}"
    );
}

#[test]
fn compiler_not_installed() {
    let mut f = Fixture::copy("basic");
    f.write(
        "hot-lsp.toml",
        "[program]\npath = \"app\"\nbuild = \"cc -O0 -g -o app main.c\"\n[compile]\ncommand = \"no-such-compiler-xyz -c {file} -o {output}\"\n",
    );
    f.start();
    f.wait_output("tick=");
    f.save("main.c");
    let text = f.wait_message(Severity::Error);
    assert!(
        text.contains("no-such-compiler-xyz") && text.contains("not installed"),
        "{text}"
    );
}

#[test]
fn saved_header_is_information() {
    let mut f = Fixture::launch("basic");
    f.write("util.h", "int util(void);\n");
    f.save("util.h");
    // No file of the program includes it: said on the header, as information.
    let diagnostics = f.wait_diagnostics("util.h");
    assert!(
        diagnostics
            .iter()
            .all(|d| d.severity == Severity::Information && d.message.contains("util.h")),
        "{diagnostics:#?}"
    );
    assert!(
        !f.log.iter().any(|e| matches!(
            e,
            SessionEvent::Message {
                severity: Severity::Error,
                ..
            }
        )),
        "a header save produced an error"
    );
}

#[test]
fn workspace_without_config_stays_idle() {
    let mut f = Fixture::copy("basic");
    std::fs::remove_file(f.path("hot-lsp.toml")).expect("remove config");
    f.start();
    f.save("main.c");
    let status = f.session.as_ref().expect("session").status();
    assert_eq!(status.state, State::Idle);
    assert!(status.pid.is_none());
    assert!(
        !f.path("app").exists(),
        "the build command ran in a workspace that did not opt in"
    );
}

trait LaunchedCheck {
    fn assert_same_process_if_launched(&self);
}

impl LaunchedCheck for Fixture {
    fn assert_same_process_if_launched(&self) {
        if let Some(status) = self.session.as_ref().map(|s| s.status()) {
            assert!(status.pid.is_some(), "the program was stopped: {status:?}");
        }
    }
}

#[test]
fn a_compiler_that_writes_no_elf_object() {
    let mut f = Fixture::copy("basic");
    // A "compiler" that succeeds but writes text where the object should be.
    f.write(
        "fakecc",
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = -o ]; then echo 'not an object' > \"$2\"; fi\n  shift\ndone\n",
    );
    let mut perms = std::fs::metadata(f.path("fakecc"))
        .expect("stat")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(f.path("fakecc"), perms).expect("chmod");
    f.write(
        "hot-lsp.toml",
        "[program]\npath = \"app\"\nbuild = \"cc -O0 -g -o app main.c\"\n[compile]\ncommand = \"./fakecc -c {file} -o {output}\"\n",
    );
    f.start();
    f.wait_output("tick=");
    f.edit("main.c", "return x * 1;", "return x * 2;");
    f.save("main.c");
    let text = f.wait_message(Severity::Error);
    assert!(text.contains("not an ELF"), "{text}");
    for l in f.next_lines(3) {
        assert!(l.contains("compute=10"), "the program changed: {l}");
    }
}

/// A compile database rewritten in place, as builds do: caught between the truncation and
/// the write (the session reads it whenever a save or a baseline needs it), it is not an
/// error, and the entries read before serve the save; one that stays invalid once written
/// is said to be, naming the file.
#[test]
fn a_compile_database_being_written_is_no_error_and_a_broken_one_is() {
    for (text, settled, error) in [("", false, false), ("[{\"directory\": ", true, true)] {
        let mut f = basic_with_database(
            "main.c",
            r#""cc", "-O0", "-g", "-c", "main.c", "-o", "main.o""#,
        );
        f.start();
        f.wait_launched();
        f.wait_output("compute=10");
        f.write("compile_commands.json", text);
        if settled {
            // Written a while ago: no build is in the middle of writing it.
            let ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
            std::fs::File::options()
                .write(true)
                .open(f.path("compile_commands.json"))
                .and_then(|file| file.set_modified(ago))
                .expect("age the database");
        }
        f.edit("main.c", "return x * 1;", "return x * 2;");
        f.save("main.c");
        if error {
            let said = f.wait_message(Severity::Error);
            assert!(
                said.contains("compile_commands.json") && said.contains("invalid compile database"),
                "{text:?}: {said}"
            );
        }
        // Either way the entries read before compile the save.
        let swap = f.wait_swap();
        assert_eq!(swap.swapped, ["compute"], "{text:?}: {swap:?}");
        f.wait_output("compute=20");
        let errors: Vec<&SessionEvent> = f
            .log
            .iter()
            .filter(|e| {
                matches!(e, SessionEvent::Message { severity: Severity::Error, text } if text.contains("compile database"))
            })
            .collect();
        assert_eq!(errors.is_empty(), !error, "{text:?}: {errors:?}");
        f.assert_same_process();
    }
}
