//! fork and exec in the program, at session level (issue 12): a program that re-executes
//! itself is reported, its new image read and this session's changes re-applied to it, and
//! later saves swap into the new image; a pre-fork server is swapped in the process the
//! session tracks, and the session says the forked workers keep the old code.

mod common;

use common::{field, stopped_or_traced, Fixture};
use hot_session::{Command, SessionEvent, Severity};

#[test]
fn a_program_that_calls_exec_is_read_again_and_swapped_as_its_new_image() {
    let mut f = Fixture::launch("exec");
    let pid = f.pid.expect("pid");
    f.wait_output("gen=0 compute=10");
    f.edit("main.c", "return x * 1;", "return x * 2;");
    f.save("main.c");
    f.wait_swap();
    f.wait_output("gen=0 compute=20");

    f.write("exec-now", "");
    let said = f.wait("the exec notice", |e| match e {
        SessionEvent::Message { severity, text } if text.contains("called exec") => {
            Some((*severity, text.clone()))
        }
        _ => None,
    });
    assert_eq!(said.0, Severity::Warning, "{said:?}");
    assert!(said.1.contains(&pid.to_string()), "{said:?}");
    // Adopted again: same pid, and the change made in this session is re-applied to the
    // fresh image (same executable, same build-id), as after a relaunch.
    let launched = f.wait("the re-adoption", |e| match e {
        SessionEvent::Launched { pid } => Some(*pid),
        _ => None,
    });
    assert_eq!(launched, pid, "exec keeps the pid");
    // This notice itself, not the first information message.
    f.wait_replayed();
    f.fresh_output.clear();
    f.wait_output("gen=1 compute=20");
    // A save now links against the new image and swaps into it.
    f.edit("main.c", "return x * 2;", "return x * 3;");
    f.save("main.c");
    f.wait_swap();
    f.wait_output("gen=1 compute=30");
    f.assert_same_process();
    // The journal is the new image's: undo reverts the last swap there.
    f.send(Command::Undo);
    let text = f.wait("the undo", |e| match e {
        SessionEvent::Message { text, .. } if text.contains("revert") || text.contains("undo") => {
            Some(text.clone())
        }
        _ => None,
    });
    assert!(text.contains("reverted"), "{text}");
    f.fresh_output.clear();
    f.wait_output("gen=1 compute=20");
    assert!(
        stopped_or_traced(pid).is_empty(),
        "{:?}",
        stopped_or_traced(pid)
    );
}

#[test]
fn a_pre_fork_server_is_swapped_in_the_parent_and_the_workers_are_named() {
    let mut f = Fixture::launch("prefork");
    let pid = f.pid.expect("pid");
    f.wait_output("parent=");
    let mut workers = std::collections::BTreeSet::new();
    while workers.len() < 2 {
        let line = f.wait_output("worker=");
        workers.insert(field(&line, "worker").parse::<i32>().expect("pid"));
        f.fresh_output.clear();
    }
    f.edit("main.c", "return x * 1;", "return x * 2;");
    f.save("main.c");
    f.wait_swap();
    let warning = f.wait_message(Severity::Warning);
    for worker in &workers {
        assert!(warning.contains(&worker.to_string()), "{warning}");
    }
    assert!(
        warning.contains("keep the old code") && warning.contains(&format!("pid {pid} only")),
        "{warning}"
    );
    // The parent runs the new code, each worker the old, and none is traced or stopped.
    f.wait_output(&format!("parent={pid} compute=20"));
    f.fresh_output.clear();
    let lines = f.next_lines(12);
    for line in lines.iter().filter(|l| l.contains("worker=")) {
        assert!(line.ends_with("compute=10"), "a worker changed: {line}");
    }
    for line in lines.iter().filter(|l| l.contains("parent=")) {
        assert!(
            line.ends_with("compute=20"),
            "the parent did not change: {line}"
        );
    }
    for p in std::iter::once(pid).chain(workers.iter().copied()) {
        assert!(
            stopped_or_traced(p).is_empty(),
            "{:?}",
            stopped_or_traced(p)
        );
    }
    // A second swap with the same workers does not repeat the notice.
    let warnings = |f: &Fixture| {
        f.log
            .iter()
            .filter(|e| matches!(e, SessionEvent::Message { text, .. } if text.contains("keep the old code")))
            .count()
    };
    f.edit("main.c", "return x * 2;", "return x * 3;");
    f.save("main.c");
    f.wait_swap();
    f.wait_output(&format!("parent={pid} compute=30"));
    assert_eq!(warnings(&f), 1);
    f.assert_same_process();
}
