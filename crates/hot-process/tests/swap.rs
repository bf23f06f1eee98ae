//! Arenas and swaps on launched programs: mapping near a PIE, injected system calls that
//! leave blocked calls alone, 200 swaps under 8 spinning threads, expected-bytes checks and
//! rollback. (Signals arriving while the threads are held: held_signals.rs.)

mod common;

use std::time::Instant;

use common::*;
use hot_process::{Debuggee, ProcessError, ProcessEvent, Protection, Stream, Write, WritePlan};

const GIB2: u64 = 1 << 31;

fn within_reach(arena: u64, size: u64, image: &std::ops::Range<u64>) -> bool {
    image.end - arena < GIB2 && (arena + size) <= image.start
}

#[test]
fn swaps_200_times_while_8_threads_spin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "spin", &["-fPIE", "-pie"]);
    let (debuggee, rx) = launch(&program, &["8"]);
    let pid = debuggee.pid();
    let entry = hex_field(
        &wait_line(&rx, "value=", |l| l.starts_with("value=")),
        "value=",
    );
    let image = debuggee.image_range().expect("image range");
    assert!(image.contains(&entry));
    let arena = debuggee
        .map_arena(image.clone(), 200 * 16, Protection::ReadExecute)
        .expect("arena");
    assert!(
        within_reach(arena, 200 * 16, &image),
        "arena {arena:#x} vs image {image:x?}"
    );

    let mut previous = debuggee.read_memory(entry, 5).expect("read entry");
    let mut stopped = Vec::new();
    for i in 0..200u64 {
        let returned = 2 + (i % 2) as u32;
        let (plan, jmp) = swap_plan(entry, arena + 16 * i, returned, &previous);
        let report = debuggee
            .apply(&plan)
            .unwrap_or_else(|e| panic!("apply {i}: {e}"));
        assert_eq!(report.threads, 9, "8 workers and the main thread");
        stopped.push(report.stopped_micros);
        previous = jmp;
    }
    assert_eq!(debuggee.read_memory(entry, 5).expect("read"), previous);
    stopped.sort_unstable();
    eprintln!(
        "stopped window over 200 swaps, 9 spinning threads: median {} us, p90 {} us",
        stopped[100], stopped[180]
    );
    // Both bodies ran, nothing else came back, and the program keeps going.
    let line = wait_line(&rx, "a tick after the swaps", |l| {
        l.starts_with("tick=") && field(l, "two=") > 0 && field(l, "three=") > 0
    });
    assert_eq!(field(&line, "bad="), 0, "{line}");
    let tick = field(&line, "tick=");
    let later = wait_line(&rx, "a later tick", |l| {
        l.starts_with("tick=") && field(l, "tick=") > tick + 1
    });
    assert_eq!(field(&later, "bad="), 0, "{later}");
    assert_eq!(debuggee.pid(), pid);
    assert!(!is_dead(pid));
    assert_not_left_stopped(debuggee.pid(), "after the swaps");
}

#[test]
fn unexpected_bytes_abort_and_a_failed_write_rolls_back() {
    let (_dir, debuggee, rx, entry, arena) = sleeping_spin_with_arena();
    let original = debuggee.read_memory(entry, 5).expect("read");

    // A breakpoint-like difference: nothing is written.
    let mut wrong = original.clone();
    wrong[0] ^= 0xff;
    let (plan, _) = swap_plan(entry, arena, 2, &wrong);
    match debuggee.apply(&plan) {
        Err(ProcessError::Unexpected { addr, what }) => {
            assert_eq!(addr, entry);
            assert_eq!(what, "entry of value");
        }
        other => panic!("expected Unexpected, got {other:?}"),
    }
    assert_eq!(debuggee.read_memory(entry, 5).expect("read"), original);
    // A check refuses the same plan the same way.
    match debuggee.check(&plan) {
        Err(ProcessError::Unexpected { addr, .. }) => assert_eq!(addr, entry),
        other => panic!("expected Unexpected from the check, got {other:?}"),
    }
    // A check of a plan the apply would take passes and writes nothing, not even the arena.
    let (good, _) = swap_plan(entry, arena, 2, &original);
    let body = good.prepare[0].bytes.len();
    let arena_before = debuggee.read_memory(arena, body).expect("read arena");
    let report = debuggee.check(&good).expect("the plan passes its checks");
    assert!(report.threads > 0, "{report:?}");
    assert_eq!(debuggee.read_memory(entry, 5).expect("read"), original);
    assert_eq!(
        debuggee.read_memory(arena, body).expect("read arena"),
        arena_before
    );

    // The second commit write cannot be done (unmapped): the first is restored.
    let (mut plan, _) = swap_plan(entry, arena, 2, &original);
    plan.commit.push(Write {
        addr: 0x1000,
        bytes: vec![0x90; 4],
        expected: None,
        what: "a write to nowhere".into(),
    });
    let err = debuggee.apply(&plan).expect_err("must fail");
    assert!(
        matches!(err, ProcessError::Protection { addr: 0x1000, .. }),
        "{err:?}"
    );
    assert_eq!(debuggee.read_memory(entry, 5).expect("read"), original);

    // Still running, still only the original body.
    let line = wait_line(&rx, "a tick", |l| {
        l.starts_with("tick=") && field(l, "one=") > 0
    });
    assert_eq!(field(&line, "two="), 0, "{line}");
    assert_eq!(field(&line, "bad="), 0, "{line}");
    assert_not_left_stopped(debuggee.pid(), "after the swaps");
}

#[test]
fn arenas_land_near_a_pie_and_are_listed_with_their_protection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "spin", &["-fPIE", "-pie"]);
    // Spinning workers: the injected thread (main) is not in a system call, so the
    // `syscall` instruction comes from libc's text.
    let (debuggee, rx) = launch(&program, &["2"]);
    let entry = hex_field(
        &wait_line(&rx, "value=", |l| l.starts_with("value=")),
        "value=",
    );
    let image = debuggee.image_range().expect("image range");
    let code = debuggee
        .map_arena(image.clone(), 10000, Protection::ReadExecute)
        .expect("code arena");
    let data = debuggee
        .map_arena(image.clone(), 4096, Protection::ReadWrite)
        .expect("data arena");
    assert!(
        within_reach(code, 12288, &image),
        "code {code:#x} image {image:x?}"
    );
    assert!(
        within_reach(data, 4096, &image),
        "data {data:#x} image {image:x?}"
    );
    assert!(
        data + 4096 <= code || code + 12288 <= data,
        "arenas overlap"
    );

    let maps = debuggee.mappings().expect("maps");
    let find = |addr: u64| {
        maps.iter()
            .find(|m| m.range.start == addr)
            .expect("arena mapped")
    };
    let code_map = find(code);
    assert_eq!(code_map.range.end, code + 12288);
    assert!(code_map.readable && code_map.executable && !code_map.writable);
    let data_map = find(data);
    assert!(data_map.readable && data_map.writable && !data_map.executable);
    // Never directly above the heap.
    if let Some(heap) = maps.iter().find(|m| m.path == "[heap]") {
        assert!(code < heap.range.start && data < heap.range.start);
    }
    // The executable's mapping is listed under its path.
    let exe = std::fs::canonicalize(&program).expect("canonical");
    assert!(maps
        .iter()
        .any(|m| m.path == exe.to_string_lossy() && m.executable && m.range.contains(&entry)));

    // Memory in both arenas is usable: read back what a plan wrote there (the r-x arena
    // too: /proc/PID/mem forces the write).
    let plan = WritePlan {
        prepare: vec![
            Write {
                addr: code + 8,
                bytes: vec![0xc3; 3],
                expected: None,
                what: "code".into(),
            },
            Write {
                addr: data,
                bytes: b"data".to_vec(),
                expected: None,
                what: "data".into(),
            },
        ],
        copies: vec![hot_process::SlotCopy {
            src: data,
            dst: data + 64,
        }],
        ..Default::default()
    };
    debuggee.apply(&plan).expect("apply");
    assert_eq!(
        debuggee.read_memory(code + 8, 3).expect("read"),
        vec![0xc3; 3]
    );
    assert_eq!(
        &debuggee.read_memory(data + 64, 4).expect("read")[..],
        b"data"
    );

    // The program runs on correctly.
    let line = wait_line(&rx, "a tick", |l| {
        l.starts_with("tick=") && field(l, "one=") > 0
    });
    let tick = field(&line, "tick=");
    let later = wait_line(&rx, "a later tick", |l| {
        l.starts_with("tick=") && field(l, "tick=") > tick + 2
    });
    assert_eq!(field(&later, "bad="), 0);
}

/// Injects mmap into a thread blocked in nanosleep() or read(): the program must see neither
/// EINTR nor errno 516.
fn injection_leaves_a_blocked_call_alone(mode: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "sleeper", &[]);
    let fifo = dir.path().join("fifo");
    let fifo_c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("cstring");
    // SAFETY: plain libc call with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0);
    let (debuggee, rx) = launch(&program, &[fifo.to_str().expect("utf-8"), mode]);
    let mut lines = Vec::new();
    let record = |lines: &mut Vec<String>, what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(ProcessEvent::Output {
                    stream: Stream::Stdout,
                    text,
                }) => {
                    let done = pred(&text);
                    lines.push(text);
                    if done {
                        return;
                    }
                }
                Ok(other) => panic!("{other:?} while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}; saw {lines:?}"),
            }
        }
    };
    record(&mut lines, "slept 1", &|l| l == "slept 1");
    let image = debuggee.image_range().expect("image");
    for _ in 0..5 {
        let arena = debuggee
            .map_arena(image.clone(), 4096, Protection::ReadWrite)
            .expect("arena");
        assert!(within_reach(arena, 4096, &image));
    }
    // The reader is still blocked in read(): feed it.
    std::fs::write(&fifo, "ping\n").expect("write fifo");
    record(&mut lines, "read=ping", &|l| l == "read=ping");
    let last_sleep: i64 = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("slept ").and_then(|n| n.parse().ok()))
        .expect("a sleep line");
    record(&mut lines, "more sleeps", &|l| {
        l == format!("slept {}", last_sleep + 2)
    });
    let failures: Vec<_> = lines.iter().filter(|l| l.contains("failed")).collect();
    assert!(failures.is_empty(), "system calls failed: {failures:?}");
}

#[test]
fn injection_into_a_thread_in_nanosleep() {
    injection_leaves_a_blocked_call_alone("sleep-main");
}

#[test]
fn injection_into_a_thread_in_read() {
    injection_leaves_a_blocked_call_alone("read-main");
}

#[test]
fn read_memory_and_auxv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "spin", &["-fPIE", "-pie"]);
    let (debuggee, rx) = launch(&program, &["1", "sleep"]);
    let entry = hex_field(
        &wait_line(&rx, "value=", |l| l.starts_with("value=")),
        "value=",
    );
    // The function's bytes as cc produced them: endbr64 or push %rbp first.
    let bytes = debuggee.read_memory(entry, 4).expect("read");
    assert!(
        bytes[0] == 0x55 || bytes[..4] == [0xf3, 0x0f, 0x1e, 0xfa],
        "{bytes:x?}"
    );
    assert!(
        debuggee.read_memory(0x1000, 4).is_err(),
        "unmapped memory reads fail"
    );
    let image = debuggee.image_range().expect("image");
    let at_entry = debuggee
        .auxv_entry(hot_process::AT_ENTRY)
        .expect("auxv")
        .expect("AT_ENTRY");
    assert!(image.contains(&at_entry));
    // The ELF header is at the start of the image.
    assert_eq!(
        debuggee.read_memory(image.start, 4).expect("read"),
        b"\x7fELF"
    );
    let _: &Debuggee = &debuggee;
}

/// Signals that reach a thread while every thread is being stopped are recorded and sent
/// again after the swap, with their details (`sigqueue` values), none lost.
#[test]
fn signals_arriving_during_swaps_are_redelivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "signals", &[]);
    let (debuggee, rx) = launch(&program, &[]);
    wait_line(&rx, "signals flowing", |l| {
        l.starts_with("tick=") && !l.contains("queued=0/")
    });
    for i in 0..500 {
        let report = debuggee
            .apply(&WritePlan::default())
            .unwrap_or_else(|e| panic!("apply {i}: {e}"));
        assert_eq!(report.threads, 3);
    }
    let count = |l: &str, key: &str| -> (i64, i64) {
        let value = l
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .expect(key);
        let (sent, received) = value.split_once('/').expect("sent/received");
        (
            sent.parse().expect("number"),
            received.parse().expect("number"),
        )
    };
    let after = wait_line(&rx, "a tick", |l| l.starts_with("tick="));
    let (sent_after, _) = count(&after, "queued=");
    // A lost signal would stop the sender for good.
    let later = wait_line(&rx, "signals still flowing", |l| {
        l.starts_with("tick=")
            && count(l, "queued=").0 > sent_after + 100
            && count(l, "tkill=").0 > sent_after + 100
    });
    assert_eq!(
        field(&later, "bad="),
        0,
        "a queued signal lost its details: {later}"
    );
    assert_not_left_stopped(debuggee.pid(), "after the swaps");
}

/// A program stopped by SIGSTOP can be swapped; it stays stopped until SIGCONT.
#[test]
fn a_stopped_program_is_swapped_and_stays_stopped() {
    let (_dir, debuggee, rx, entry, arena) = sleeping_spin_with_arena();
    let pid = debuggee.pid();
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        stat.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
            .to_string()
    };
    // SAFETY: plain system call on our own test program.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let deadline = Instant::now() + TIMEOUT;
    while state() != "T" {
        assert!(Instant::now() < deadline, "program did not stop");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let original = debuggee.read_memory(entry, 5).expect("read");
    let (plan, _) = swap_plan(entry, arena, 2, &original);
    let report = debuggee.apply(&plan).expect("apply while stopped");
    assert_eq!(report.threads, 3);
    // Detaching wakes each thread, which goes back into the group stop at once.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let states: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("tasks")
            .flatten()
            .map(|task| {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                stat.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next())
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        if states.iter().all(|s| s == "T") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not stopped again after the swap: {states:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let line = wait_line(&rx, "the new body", |l| {
        l.starts_with("tick=") && field(l, "two=") > 0
    });
    assert_eq!(field(&line, "bad="), 0);
}

/// Threads stopped strictly inside the bytes a swap overwrites are single-stepped out first:
/// the entry alternates between its original nops (where threads stop mid-range) and a jump.
#[test]
fn threads_inside_the_overwritten_bytes_are_stepped_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "stepper", &["-fPIE", "-pie"]);
    let (debuggee, rx) = launch(&program, &["4"]);
    let stepper = StepperSwap::new(&debuggee, &rx);
    for i in 0..100 {
        let plan = stepper.plan(i);
        debuggee
            .apply(&plan)
            .unwrap_or_else(|e| panic!("apply {i}: {e}"));
    }
    let line = wait_line(&rx, "a tick", |l| l.starts_with("tick="));
    let calls = field(&line, "calls=");
    wait_line(&rx, "more calls", |l| {
        l.starts_with("tick=") && field(l, "calls=") > calls
    });
    assert_not_left_stopped(debuggee.pid(), "after the swaps");
}

/// A thread that cannot be stepped out (a loop inside the range) fails the apply after a
/// bounded number of steps, with nothing written.
#[test]
fn a_thread_looping_inside_the_range_fails_the_apply_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "stepper", &["-fPIE", "-pie"]);
    let (debuggee, rx) = launch(&program, &["1", "stuck"]);
    let line = wait_line(&rx, "stuck=", |l| l.starts_with("stepper="));
    let stuck = hex_field(&line, "stuck=");
    // The looping thread entered stuck() before "stepper=" was printed; a tick later it is
    // surely inside the loop.
    wait_line(&rx, "a first tick", |l| l.starts_with("tick="));
    let image = debuggee.image_range().expect("image range");
    let arena = debuggee
        .map_arena(image, 4096, Protection::ReadExecute)
        .expect("arena");
    let original = debuggee.read_memory(stuck, 5).expect("read");
    let (mut plan, _) = swap_plan(stuck, arena, 2, &original);
    // The loop covers stuck-1..stuck+2 at most: every stop of that thread is inside.
    plan.protected = std::iter::once(stuck - 1..stuck + 5).collect();
    match debuggee.apply(&plan) {
        Err(ProcessError::Other(message)) => assert!(message.contains("single steps"), "{message}"),
        other => panic!("expected a stepping failure, got {other:?}"),
    }
    assert_eq!(debuggee.read_memory(stuck, 5).expect("read"), original);
    let tick = field(
        &wait_line(&rx, "a tick", |l| l.starts_with("tick=")),
        "tick=",
    );
    wait_line(&rx, "a later tick", |l| {
        l.starts_with("tick=") && field(l, "tick=") > tick
    });
    assert_not_left_stopped(debuggee.pid(), "after the swaps");
}

/// A non-PIE executable sits at 0x400000: its arenas go below it, so they also lie below
/// 2 GiB (reachable by absolute 32-bit relocations), and swaps work there.
#[test]
fn arenas_of_a_non_pie_executable_lie_below_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "spin", &["-fno-pie", "-no-pie"]);
    let (debuggee, rx) = launch(&program, &["2", "sleep"]);
    let entry = hex_field(
        &wait_line(&rx, "value=", |l| l.starts_with("value=")),
        "value=",
    );
    let image = debuggee.image_range().expect("image range");
    assert_eq!(image.start, 0x400000);
    let arena = debuggee
        .map_arena(image.clone(), 4096, Protection::ReadExecute)
        .expect("arena");
    assert!(
        arena >= 0x10000 && arena + 4096 <= image.start,
        "arena {arena:#x}"
    );
    let original = debuggee.read_memory(entry, 5).expect("read");
    let (plan, _) = swap_plan(entry, arena, 3, &original);
    debuggee.apply(&plan).expect("apply");
    let line = wait_line(&rx, "the new body", |l| {
        l.starts_with("tick=") && field(l, "three=") > 0
    });
    assert_eq!(field(&line, "bad="), 0);
    assert_not_left_stopped(debuggee.pid(), "after the swaps");
}

/// A thread parked in a signal handler would return into the middle of the new jump (the
/// resume address in its signal frame): the apply refuses, names the function, the thread
/// and where in the entry the frame returns, and writes nothing.
#[test]
fn a_signal_frame_returning_into_the_overwritten_bytes_refuses_the_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "sighandler", &[]);
    let (debuggee, rx) = launch(&program, &[]);
    let entry = hex_field(&wait_line(&rx, "parked", |l| l.contains("parked")), "spot=");
    let image = debuggee.image_range().expect("image range");
    let arena = debuggee
        .map_arena(image, 4096, Protection::ReadExecute)
        .expect("arena");
    let original = debuggee.read_memory(entry, 5).expect("read");
    let plan = WritePlan {
        prepare: Vec::new(),
        copies: Vec::new(),
        commit_data: Vec::new(),
        commit: vec![Write {
            addr: entry,
            bytes: jump(entry, arena),
            expected: Some(original.clone()),
            what: "entry of spot".into(),
        }],
        protected: std::iter::once(entry..entry + 5).collect(),
        watch: Vec::new(),
        refuse_frames: Vec::new(),
        verify: Vec::new(),
    };
    let err = debuggee.apply(&plan).expect_err("the swap must be refused");
    let message = err.to_string();
    assert!(
        message.contains("`spot`")
            && message.contains("thread ")
            && (message.contains("returns into entry+1 ")
                || message.contains("returns into entry+3 "))
            && message.contains("nothing was written"),
        "{message}"
    );
    assert_eq!(debuggee.read_memory(entry, 5).expect("read"), original);
    assert_not_left_stopped(debuggee.pid(), "after the swaps");
}

/// The `spin` fixture as a PIE with two sleeping threads, the address of the function its
/// threads call, and a 4 KiB code arena mapped near it.
fn sleeping_spin_with_arena() -> (
    tempfile::TempDir,
    Debuggee,
    crossbeam_channel::Receiver<ProcessEvent>,
    u64,
    u64,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "spin", &["-fPIE", "-pie"]);
    let (debuggee, rx) = launch(&program, &["2", "sleep"]);
    let entry = hex_field(
        &wait_line(&rx, "value=", |l| l.starts_with("value=")),
        "value=",
    );
    let image = debuggee.image_range().expect("image range");
    let arena = debuggee
        .map_arena(image, 4096, Protection::ReadExecute)
        .expect("arena");
    (dir, debuggee, rx, entry, arena)
}
