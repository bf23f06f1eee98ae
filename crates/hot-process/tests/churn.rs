//! Swaps while threads are born and die: a thread created while the others are being stopped
//! (or single-stepped) is stopped and detached with them, never left in a ptrace stop; and a
//! stop that cannot complete times out, lets every thread go, and says so.
//!
//! The `churn` fixture checks every call of `compute` (which calls `helper`) against the
//! version the swap generation names; each swap here writes both entries and that generation
//! in one atomic commit, alternating between the original bodies and `compute_b`/`helper_b`.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use hot_process::{Debuggee, ProcessEvent, Write, WritePlan};

/// The `churn` program, launched, with the addresses it printed and its original entries.
struct Churn {
    _dir: tempfile::TempDir,
    debuggee: Arc<Debuggee>,
    rx: crossbeam_channel::Receiver<ProcessEvent>,
    compute: u64,
    helper: u64,
    compute_b: u64,
    helper_b: u64,
    gen: u64,
    compute_bytes: Vec<u8>,
    helper_bytes: Vec<u8>,
}

impl Churn {
    fn launch(args: &[&str]) -> Churn {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = compile(dir.path(), "churn", &["-fPIE", "-pie"]);
        let (debuggee, rx) = launch(&program, args);
        let line = wait_line(&rx, "addresses", |l| l.starts_with("compute="));
        let compute = hex_field(&line, "compute=");
        let helper = hex_field(&line, "helper=");
        let compute_bytes = debuggee.read_memory(compute, 5).expect("read compute");
        let helper_bytes = debuggee.read_memory(helper, 5).expect("read helper");
        Churn {
            _dir: dir,
            debuggee: Arc::new(debuggee),
            rx,
            compute,
            helper,
            compute_b: hex_field(&line, "compute_b="),
            helper_b: hex_field(&line, "helper_b="),
            gen: hex_field(&line, "gen="),
            compute_bytes,
            helper_bytes,
        }
    }

    /// Swap number `i` (from 0): even ones point both entries at the B versions, odd ones
    /// put the original bytes back; `gen` goes from `i` to `i + 1` in the same commit.
    fn plan(&self, i: u64) -> WritePlan {
        let to_b = [
            jump(self.compute, self.compute_b),
            jump(self.helper, self.helper_b),
        ];
        let to_a = [self.compute_bytes.clone(), self.helper_bytes.clone()];
        let (new, old) = if i.is_multiple_of(2) {
            (&to_b, &to_a)
        } else {
            (&to_a, &to_b)
        };
        let entry = |addr: u64, k: usize, name: &str| Write {
            addr,
            bytes: new[k].clone(),
            expected: Some(old[k].clone()),
            what: format!("entry of {name}"),
        };
        WritePlan {
            prepare: Vec::new(),
            copies: Vec::new(),
            commit_data: vec![Write {
                addr: self.gen,
                bytes: (i + 1).to_le_bytes().to_vec(),
                expected: Some(i.to_le_bytes().to_vec()),
                what: "gen".into(),
            }],
            commit: vec![
                entry(self.compute, 0, "compute"),
                entry(self.helper, 1, "helper"),
            ],
            protected: vec![self.compute..self.compute + 5, self.helper..self.helper + 5],
            watch: Vec::new(),
            refuse_frames: Vec::new(),
            verify: Vec::new(),
        }
    }

    /// `swaps` consecutive swaps, each checked to leave no thread stopped or traced; returns
    /// the stopped windows (microseconds) and the smallest and largest thread counts seen.
    fn swap_many(&self, swaps: u64) -> (Vec<u64>, usize, usize) {
        let pid = self.debuggee.pid();
        let mut stopped = Vec::with_capacity(swaps as usize);
        let (mut least_threads, mut most_threads) = (usize::MAX, 0);
        for i in 0..swaps {
            let what = format!("swap {i}");
            let report = apply_within(&self.debuggee, &self.plan(i), &what)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_not_left_stopped(pid, &what);
            stopped.push(report.stopped_micros);
            most_threads = most_threads.max(report.threads);
            least_threads = least_threads.min(report.threads);
        }
        (stopped, least_threads, most_threads)
    }

    /// Waits for a line printed after the swaps (a later tick than the first seen) and checks
    /// that no call ever returned a wrong result; returns it.
    fn check_results(&self) -> String {
        // Lines printed during the swaps are still queued: skip to those printed after.
        while let Ok(event) = self.rx.try_recv() {
            assert!(!matches!(event, ProcessEvent::Exited { .. }), "{event:?}");
        }
        let first = wait_line(&self.rx, "a tick", |l| l.starts_with("tick="));
        let tick = field(&first, "tick=");
        let line = wait_line(&self.rx, "a later tick", |l| {
            l.starts_with("tick=") && field(l, "tick=") > tick + 1
        });
        assert_eq!(
            field(&line, "bad="),
            0,
            "a call returned a mixed or torn result: {line}"
        );
        line
    }
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// The hang found as a new user would: a thread started every millisecond (200 calls, then
/// it exits) next to 3 steady callers. A thread born while the others were being stopped
/// used to stay in a ptrace stop for good, and the swap never finished.
#[test]
fn threads_born_every_millisecond_never_hang_a_swap() {
    let churn = Churn::launch(&["3", "1000", "200"]);
    let pid = churn.debuggee.pid();
    wait_line(&churn.rx, "short-lived threads", |l| {
        l.starts_with("tick=") && field(l, "born=") > 20
    });
    let started = Instant::now();
    let (mut stopped, least, most) = churn.swap_many(1000);
    stopped.sort_unstable();
    let line = churn.check_results();
    eprintln!(
        "1000 swaps with a thread born every ms in {:?}: {least} to {most} threads, stopped p50 {} us, \
         p90 {} us, max {} us; {line}",
        started.elapsed(),
        percentile(&stopped, 50),
        percentile(&stopped, 90),
        stopped[stopped.len() - 1]
    );
    assert!(field(&line, "a=") > 0 && field(&line, "b=") > 0, "{line}");
    assert!(field(&line, "born=") > 100, "{line}");
    assert_not_left_stopped(pid, "after the swaps");
}

/// A thread in `vfork` cannot be stopped until its child exits: the swap times out with an
/// error naming it, writes nothing, lets every other thread run on, keeps the owner thread
/// answering, and detaches the vforking thread the moment it returns.
#[test]
fn a_stop_that_cannot_complete_times_out_and_lets_every_thread_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = compile(dir.path(), "vforker", &[]);
    let done = dir.path().join("done");
    let (debuggee, rx) = launch(&program, &[done.to_str().expect("utf-8")]);
    let debuggee = Arc::new(debuggee);
    let pid = debuggee.pid();
    let entry = hex_field(
        &wait_line(&rx, "value=", |l| l.starts_with("value=")),
        "value=",
    );
    wait_line(&rx, "vforking", |l| l == "vforking");
    // Until the kernel holds the thread in the vfork (wait_for_vfork_done, inlined into
    // kernel_clone on some kernels).
    let deadline = Instant::now() + TIMEOUT;
    let vforking = loop {
        if let Some(task) = task_states(pid)
            .into_iter()
            .find(|t| t.state == 'D' && (t.wchan.contains("vfork") || t.wchan.contains("clone")))
        {
            break task.tid;
        }
        assert!(
            Instant::now() < deadline,
            "no thread in vfork: {:?}",
            task_states(pid)
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let image = debuggee.image_range().expect("image range");
    let arena = debuggee
        .map_arena(image.clone(), 4096, hot_process::Protection::ReadExecute)
        .expect("arena (one thread is enough for the injection)");
    let original = debuggee.read_memory(entry, 5).expect("read");
    let (plan, _) = swap_plan(entry, arena, 2, &original);

    let started = Instant::now();
    let err = apply_within(&debuggee, &plan, "the swap that cannot stop every thread")
        .expect_err("a thread in vfork cannot be stopped");
    let message = err.to_string();
    eprintln!("after {:?}: {message}", started.elapsed());
    assert!(
        message.contains(&format!("thread {vforking} "))
            && message.contains("did not stop within")
            && message.contains("nothing was written"),
        "{message}"
    );
    assert_eq!(debuggee.read_memory(entry, 5).expect("read"), original);
    // Every other thread runs on, untraced; the vforking one is still held by the kernel,
    // never in a ptrace stop.
    let left = stopped_or_traced(pid);
    assert!(
        left.iter().all(|t| t.tid == vforking && t.state != 't'),
        "{left:?}"
    );
    while rx.try_recv().is_ok() {}
    let line = wait_line(&rx, "a tick", |l| l.starts_with("tick="));
    let one = field(&line, "one=");
    let later = wait_line(&rx, "more calls", |l| {
        l.starts_with("tick=") && field(l, "one=") > one
    });
    assert_eq!(field(&later, "returned="), 0, "{later}");
    // The owner thread still answers: an injection stops one thread only.
    debuggee
        .map_arena(image, 4096, hot_process::Protection::ReadWrite)
        .expect("an arena while a thread is still in vfork");

    // The child exits, the vfork returns, and the thread is let go at once.
    std::fs::write(&done, "").expect("create done");
    wait_line(&rx, "the vfork returned", |l| {
        l.starts_with("tick=") && field(l, "returned=") == 1
    });
    wait_not_left_stopped(pid, "after the vfork returned");
    // And swaps work again.
    let report = apply_within(&debuggee, &plan, "the swap after the vfork").expect("swap");
    assert_eq!(report.threads, 3);
    assert_not_left_stopped(pid, "after the swap");
    let line = wait_line(&rx, "the new body", |l| {
        l.starts_with("tick=") && field(l, "two=") > 0
    });
    assert_eq!(field(&line, "bad="), 0, "{line}");
}

/// Issue 12's stress bar: 8 threads calling `compute` (and through it `helper`) in a tight
/// loop, a pool of short-lived threads growing and shrinking next to them, 1,000 consecutive
/// swaps of both functions alternating between two versions: every call returns a complete
/// version, no thread is ever left stopped or traced, and the program runs on.
#[test]
fn survives_1000_swaps_under_8_busy_threads_and_a_churning_pool() {
    // A pool thread every 500 us, each making 20,000 calls, at most 8 alive at once.
    let churn = Churn::launch(&["8", "500", "20000", "8"]);
    let pid = churn.debuggee.pid();
    let before = wait_line(&churn.rx, "the pool running", |l| {
        l.starts_with("tick=") && field(l, "born=") > 10
    });
    let started = Instant::now();
    let (mut stopped, least, most) = churn.swap_many(1000);
    let took = started.elapsed();
    stopped.sort_unstable();
    let line = churn.check_results();
    eprintln!(
        "1000 swaps under 8 busy threads and a pool in {took:?}: {least} to {most} threads \
         stopped; stop-the-world p50 {} us, p90 {} us, max {} us; {line}",
        percentile(&stopped, 50),
        percentile(&stopped, 90),
        stopped[stopped.len() - 1]
    );
    // Both versions ran, calls straddled swaps (old bodies calling the new callee), the pool
    // grew and shrank while the swaps ran: threads were born and exited between swaps.
    assert!(field(&line, "a=") > 0 && field(&line, "b=") > 0, "{line}");
    assert!(field(&line, "straddled=") > 0, "{line}");
    assert!(field(&line, "max_alive=") >= 2, "{line}");
    assert!(
        field(&line, "born=") > field(&before, "born=") + 100,
        "{before} / {line}"
    );
    assert!(
        least < most && most > 9,
        "the pool did not change size during the swaps: {least} to {most} threads"
    );
    assert_not_left_stopped(pid, "after 1000 swaps");
}

/// The check the stress tests rely on does see a mix: a swap of `compute` alone (its new body
/// calling the old `helper`) makes calls return neither version.
#[test]
fn the_result_check_detects_a_mixed_version() {
    let churn = Churn::launch(&["2", "0"]);
    let mut plan = churn.plan(0);
    plan.commit.retain(|w| w.what == "entry of compute");
    plan.protected.truncate(1);
    apply_within(&churn.debuggee, &plan, "the half swap").expect("swap");
    let line = wait_line(&churn.rx, "bad results", |l| {
        l.starts_with("tick=") && field(l, "bad=") > 0
    });
    assert_eq!(field(&line, "b="), 0, "{line}");
    assert_not_left_stopped(churn.debuggee.pid(), "after the half swap");
}
