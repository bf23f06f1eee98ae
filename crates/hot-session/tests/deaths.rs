//! The program dies at any moment (issue 12): SIGKILLed at each step of a swap in turn (the
//! test-only fault hook kills it there and lets the step go on), then at seeded random
//! times while saves compile, link and swap. Each time the session reports `exited` with
//! the signal, the process is reaped (no zombie, nothing traced), `launch` starts the
//! program again and a save swaps into it; nothing blocks (every wait has a deadline).
//! One test: the fault state is global to the process.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{status_field, Fixture};
use hot_process::fault::{self, Step};
use hot_session::{Command, Progress, SessionEvent, State};

/// util.c at version `k` (as in tests/faults.rs): first() k, second() 10 k, table[1] 100 k.
fn util(k: i64) -> String {
    format!(
        "const int table[4] = {{0, {}, 0, 0}};\n\nint first(void) {{\n    return {k};\n}}\n\n\
         int second(void) {{\n    return {};\n}}\n",
        100 * k,
        10 * k
    )
}

fn line_of(k: i64) -> String {
    format!("first={k} second={} table={} ", 10 * k, 100 * k)
}

/// A small seeded generator (xorshift64*), so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// After the program was killed: the session says so, with the signal, the process is
/// reaped, and the state is `exited`.
/// The exit may come before the save starts (the session takes the exit first when both
/// wait), and the save then only compiles: events from `from` on count.
fn check_exited(f: &mut Fixture, pid: i32, from: usize, what: &str) {
    // Should the exit not come, say where every thread of this process and of the
    // program is, before the wait times out.
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(common::TIMEOUT / 2).is_err() {
            eprintln!(
                "no exit yet; this process: {:?}\nthe program: {:?}",
                threads_of(std::process::id() as i32),
                threads_of(pid)
            );
            // Where each thread of the session is, if gdb is there to say.
            if let Ok(out) = std::process::Command::new("gdb")
                .args(["-p", &std::process::id().to_string(), "-batch", "-ex"])
                .arg("thread apply all bt 25")
                .output()
            {
                eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
    });
    let exited = |e: &SessionEvent| match e {
        SessionEvent::Exited { code, signal } => Some((*code, *signal)),
        _ => None,
    };
    let seen = f.log[from..].iter().position(|e| exited(e).is_some());
    let (code, signal) = match seen {
        Some(at) => exited(&f.log[from + at]).expect("an exit"),
        None => f.wait(&format!("{what}: the exit"), exited),
    };
    let from = from + seen.unwrap_or(f.log.len() - from);
    let _ = done_tx.send(());
    let _ = watchdog.join();
    assert_eq!((code, signal), (None, Some(9)), "{what}");
    // The status follows the exit event.
    let exited_status = |e: &SessionEvent| match e {
        SessionEvent::Status(s) if s.state == State::Exited => Some(s.clone()),
        _ => None,
    };
    let status = match f.log[from..].iter().find_map(exited_status) {
        Some(status) => status,
        None => f.wait(&format!("{what}: the exited status"), exited_status),
    };
    assert_eq!(status.state, State::Exited, "{what}: {status:?}");
    assert_eq!(status.signal, Some(9), "{what}: {status:?}");
    assert_eq!(status.pid, None, "{what}: {status:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "{what}: pid {pid} was not reaped"
    );
}

/// Every thread of `pid`: name, state, tracer and where the kernel holds it.
fn threads_of(pid: i32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec!["gone".into()];
    };
    dir.flatten()
        .map(|entry| {
            let read =
                |name: &str| std::fs::read_to_string(entry.path().join(name)).unwrap_or_default();
            let status = read("status");
            let get = |key: &str| status_field(&status, key);
            format!(
                "{:?} {} {} tracer {} in {}",
                entry.file_name(),
                read("comm").trim(),
                get("State:"),
                get("TracerPid:"),
                read("wchan")
            )
        })
        .collect()
}

/// Launches again and waits for version `k` to run.
fn relaunch(f: &mut Fixture, k: i64) -> i32 {
    f.send(Command::Launch);
    let pid = f.wait_launched();
    f.fresh_output.clear();
    f.wait_output(&line_of(k));
    pid
}

/// Saves util.c at version `k`; returns whether it swapped (the save's end was seen).
fn save(f: &mut Fixture, k: i64) -> bool {
    f.write("util.c", &util(k));
    f.save("util.c");
    let from = f.log.len();
    f.wait("the save to end", |e| {
        matches!(e, SessionEvent::Progress(Progress::End { .. })).then_some(())
    });
    f.log[from..]
        .iter()
        .any(|e| matches!(e, SessionEvent::Swap(_)))
}

#[test]
fn the_program_killed_at_every_step_and_at_random_times_is_reported_and_relaunched() {
    let mut f = Fixture::launch("faults");
    let mut pid = f.pid.expect("pid");
    let mut version = 1;
    f.wait_output(&line_of(version));
    let mut kills: BTreeMap<Step, u64> = BTreeMap::new();
    let mut swapped_before_death = 0;

    // Killed at the Nth step of a save's swap, N = 1, 2, ... until a swap has fewer steps.
    let mut nth = 0;
    loop {
        nth += 1;
        version = if version == 2 { 3 } else { 2 };
        fault::arm_kill(nth, pid);
        let from = f.log.len();
        let swapped = save(&mut f, version);
        let report = fault::disarm();
        let Some(step) = report.fired else {
            assert!(
                swapped,
                "a save with no kill did not swap: {:?}",
                report.seen
            );
            f.wait_output(&line_of(version));
            break;
        };
        *kills.entry(step).or_default() += 1;
        swapped_before_death += usize::from(swapped);
        check_exited(
            &mut f,
            pid,
            from,
            &format!("killed at step {nth} ({step:?})"),
        );
        // The launch builds from the sources on disk: version `version` runs.
        pid = relaunch(&mut f, version);
    }
    eprintln!(
        "killed at each of {} steps of a swap ({kills:?}); {swapped_before_death} swaps had \
         committed before the kill",
        nth - 1
    );
    assert!(kills.contains_key(&Step::Seize) && kills.contains_key(&Step::EntryWrite));

    // Killed at random times from the save on: while compiling, linking or swapping.
    let seed = std::env::var("HOT_DEATHS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0012_u64);
    let mut rng = Rng(seed);
    let rounds = std::env::var("HOT_DEATHS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut delays = Vec::new();
    for round in 0..rounds {
        version = if version == 2 { 3 } else { 2 };
        let delay = Duration::from_micros(rng.below(400_000));
        delays.push(delay.as_millis());
        let victim = pid;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            // SAFETY: plain system call on the program's pid (not reused: the session
            // reaps it only after this thread has run, as the test waits for the exit).
            unsafe { libc::kill(victim, libc::SIGKILL) };
        });
        let from = f.log.len();
        save(&mut f, version);
        killer.join().expect("killer");
        check_exited(
            &mut f,
            victim,
            from,
            &format!("round {round} (seed {seed:#x}), killed after {delay:?}"),
        );
        pid = relaunch(&mut f, version);
    }
    eprintln!("killed {rounds} times at random (seed {seed:#x}) after {delays:?} ms");
    // Still serving: a save swaps into the last launch.
    version = if version == 2 { 3 } else { 2 };
    assert!(save(&mut f, version), "the last save did not swap");
    f.wait_output(&line_of(version));
    f.assert_same_process();
    // No owner thread of a dead program is left waiting: one remains, the live program's.
    let owners = || {
        threads_of(std::process::id() as i32)
            .into_iter()
            .filter(|t| t.contains("hot-process"))
            .count()
    };
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while owners() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(owners(), 1, "{:?}", threads_of(std::process::id() as i32));
}
