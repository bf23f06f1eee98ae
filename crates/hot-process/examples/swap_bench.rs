//! Measures `apply()` for a one-entry plan on a program with 8 mostly-sleeping threads:
//! `cargo run --release --example swap_bench -p hot-process [swaps] [threads] [spin|churn]`.
//! Prints the median and p90 of the stopped window and of the whole call.
//!
//! `churn`: the stress program of issue 12 instead (tests/fixtures/churn.c): `threads` busy
//! threads calling `compute` (which calls `helper`) next to a pool of short-lived threads that
//! grows and shrinks; each swap writes both entries and the swap generation in one commit,
//! alternating between two versions, and the program checks every call. Prints the stopped
//! window's p50/p90/max, the thread counts, and the program's bad-result count (must be 0).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hot_process::{Debuggee, LaunchSpec, ProcessEvent, Protection, Write, WritePlan};

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let swaps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(500);
    let threads: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);
    let mode = args.next();
    if mode.as_deref() == Some("churn") {
        return churn(swaps, threads);
    }
    let spin = mode.as_deref() == Some("spin");

    let dir = tempfile::tempdir()?;
    let program = compile(dir.path(), "spin")?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut spec_args = vec![threads.to_string().into()];
    if !spin {
        spec_args.push("sleep".into());
    }
    let debuggee = Debuggee::launch(
        &LaunchSpec {
            path: program.clone(),
            args: spec_args,
            cwd: dir.path().into(),
            ..Default::default()
        },
        tx,
    )?;
    let entry = loop {
        match rx.recv_timeout(Duration::from_secs(30))? {
            ProcessEvent::Output { text, .. } if text.starts_with("value=") => {
                break u64::from_str_radix(text.trim_start_matches("value=0x"), 16)?;
            }
            ProcessEvent::Exited { code, signal } => {
                return Err(format!("program exited: {code:?} {signal:?}").into())
            }
            _ => {}
        }
    };
    let image = debuggee.image_range()?;
    let arena = debuggee.map_arena(image, 4096, Protection::ReadExecute)?;
    // Two bodies, written once: `mov eax, 2; ret` and `mov eax, 3; ret`.
    let bodies = [arena, arena + 16];
    debuggee.apply(&WritePlan {
        prepare: vec![
            Write {
                addr: bodies[0],
                bytes: vec![0xb8, 2, 0, 0, 0, 0xc3],
                expected: None,
                what: "body 2".into(),
            },
            Write {
                addr: bodies[1],
                bytes: vec![0xb8, 3, 0, 0, 0, 0xc3],
                expected: None,
                what: "body 3".into(),
            },
        ],
        ..Default::default()
    })?;
    let mut previous = debuggee.read_memory(entry, 5)?;
    let mut stopped = Vec::with_capacity(swaps);
    let mut total = Vec::with_capacity(swaps);
    let mut thread_count = 0;
    for i in 0..swaps {
        let target = bodies[i % 2];
        let rel = (target.wrapping_sub(entry + 5) as i64) as i32;
        let mut jmp = vec![0xe9];
        jmp.extend_from_slice(&rel.to_le_bytes());
        let plan = WritePlan {
            commit: vec![Write {
                addr: entry,
                bytes: jmp.clone(),
                expected: Some(previous.clone()),
                what: "entry of value".into(),
            }],
            protected: std::iter::once(entry..entry + 5).collect(),
            ..Default::default()
        };
        let started = Instant::now();
        let report = debuggee.apply(&plan)?;
        total.push(started.elapsed().as_micros() as u64);
        stopped.push(report.stopped_micros);
        thread_count = report.threads;
        previous = jmp;
    }
    stopped.sort_unstable();
    total.sort_unstable();
    println!(
        "{swaps} swaps, {thread_count} threads ({}): stopped median {} us, p90 {} us, max {} us; apply() median {} us, p90 {} us",
        if spin { "spinning" } else { "sleeping" },
        percentile(&stopped, 50),
        percentile(&stopped, 90),
        stopped[stopped.len() - 1],
        percentile(&total, 50),
        percentile(&total, 90)
    );
    debuggee.stop();
    Ok(())
}

type Error = Box<dyn std::error::Error>;

fn percentile(sorted: &[u64], p: usize) -> u64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Compiles `tests/fixtures/<name>.c` as a PIE into `dir`.
fn compile(dir: &Path, name: &str) -> Result<std::path::PathBuf, Error> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.c"));
    let program = dir.join(name);
    let status = Command::new("cc")
        .args(["-O0", "-pthread", "-fPIE", "-pie"])
        .arg(&source)
        .arg("-o")
        .arg(&program)
        .status()?;
    if !status.success() {
        return Err(format!("cc failed on {}", source.display()).into());
    }
    Ok(program)
}

/// The next stdout line starting with `prefix`.
fn next_line(
    rx: &crossbeam_channel::Receiver<ProcessEvent>,
    prefix: &str,
) -> Result<String, Error> {
    loop {
        match rx.recv_timeout(Duration::from_secs(60))? {
            ProcessEvent::Output { text, .. } if text.starts_with(prefix) => return Ok(text),
            ProcessEvent::Exited { code, signal } => {
                return Err(format!("program exited: {code:?} {signal:?}").into())
            }
            _ => {}
        }
    }
}

/// `key=value` from a line, the value parsed as hex with `0x` or as decimal.
fn value(line: &str, key: &str) -> Result<u64, Error> {
    let text = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .ok_or_else(|| format!("no {key} in {line:?}"))?;
    Ok(match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16)?,
        None => text.parse()?,
    })
}

fn jump(from: u64, to: u64) -> Vec<u8> {
    let rel = (to.wrapping_sub(from + 5) as i64) as i32;
    let mut jmp = vec![0xe9];
    jmp.extend_from_slice(&rel.to_le_bytes());
    jmp
}

fn churn(swaps: usize, threads: usize) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let program = compile(dir.path(), "churn")?;
    let (tx, rx) = crossbeam_channel::unbounded();
    // A pool thread every 500 us, 20,000 calls each, at most 8 alive at once.
    let args = [
        threads.to_string(),
        "500".into(),
        "20000".into(),
        "8".into(),
    ];
    let debuggee = Debuggee::launch(
        &LaunchSpec {
            path: program,
            args: args.iter().map(Into::into).collect(),
            cwd: dir.path().into(),
            ..Default::default()
        },
        tx,
    )?;
    let line = next_line(&rx, "compute=")?;
    let [compute, helper, compute_b, helper_b, gen] =
        ["compute=", "helper=", "compute_b=", "helper_b=", "gen="].map(|k| value(&line, k));
    let (compute, helper, compute_b, helper_b, gen) =
        (compute?, helper?, compute_b?, helper_b?, gen?);
    let originals = [
        debuggee.read_memory(compute, 5)?,
        debuggee.read_memory(helper, 5)?,
    ];
    let jumps = [jump(compute, compute_b), jump(helper, helper_b)];
    let mut stopped = Vec::with_capacity(swaps);
    let mut total = Vec::with_capacity(swaps);
    let (mut least, mut most) = (usize::MAX, 0);
    for i in 0..swaps as u64 {
        let (new, old) = if i % 2 == 0 {
            (&jumps, &originals)
        } else {
            (&originals, &jumps)
        };
        let entry = |addr: u64, k: usize, what: &str| Write {
            addr,
            bytes: new[k].clone(),
            expected: Some(old[k].clone()),
            what: what.into(),
        };
        let plan = WritePlan {
            commit_data: vec![Write {
                addr: gen,
                bytes: (i + 1).to_le_bytes().to_vec(),
                expected: Some(i.to_le_bytes().to_vec()),
                what: "gen".into(),
            }],
            commit: vec![
                entry(compute, 0, "entry of compute"),
                entry(helper, 1, "entry of helper"),
            ],
            protected: vec![compute..compute + 5, helper..helper + 5],
            ..Default::default()
        };
        let started = Instant::now();
        let report = debuggee.apply(&plan)?;
        total.push(started.elapsed().as_micros() as u64);
        stopped.push(report.stopped_micros);
        least = least.min(report.threads);
        most = most.max(report.threads);
    }
    // Lines printed after the swaps: skip what was queued meanwhile, then two ticks.
    while rx.try_recv().is_ok() {}
    next_line(&rx, "tick=")?;
    let line = next_line(&rx, "tick=")?;
    stopped.sort_unstable();
    total.sort_unstable();
    println!(
        "{swaps} swaps of compute+helper, {threads} busy threads and a pool ({least} to {most} threads stopped): \
         stopped p50 {} us, p90 {} us, max {} us; apply() p50 {} us, p90 {} us; bad results {}",
        percentile(&stopped, 50),
        percentile(&stopped, 90),
        stopped[stopped.len() - 1],
        percentile(&total, 50),
        percentile(&total, 90),
        value(&line, "bad=")?
    );
    debuggee.stop();
    if value(&line, "bad=")? != 0 {
        return Err(format!("calls returned mixed or torn results: {line}").into());
    }
    Ok(())
}
