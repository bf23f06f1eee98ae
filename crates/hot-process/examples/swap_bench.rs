//! Measures `apply()` for a one-entry plan on a program with 8 mostly-sleeping threads:
//! `cargo run --release --example swap_bench -p hot-process [swaps] [threads] [spin]`.
//! Prints the median and p90 of the stopped window and of the whole call.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hot_process::{Debuggee, LaunchSpec, ProcessEvent, Protection, Write, WritePlan};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let swaps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(500);
    let threads: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);
    let spin = args.next().as_deref() == Some("spin");

    let dir = tempfile::tempdir()?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spin.c");
    let program = dir.path().join("spin");
    let status = Command::new("cc")
        .args(["-O0", "-pthread", "-fPIE", "-pie"])
        .arg(&source)
        .arg("-o")
        .arg(&program)
        .status()?;
    if !status.success() {
        return Err(format!("cc failed on {}", source.display()).into());
    }
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
    let pct = |v: &[u64], p: usize| v[(v.len() * p / 100).min(v.len() - 1)];
    println!(
        "{swaps} swaps, {thread_count} threads ({}): stopped median {} us, p90 {} us, max {} us; apply() median {} us, p90 {} us",
        if spin { "spinning" } else { "sleeping" },
        pct(&stopped, 50),
        pct(&stopped, 90),
        stopped[stopped.len() - 1],
        pct(&total, 50),
        pct(&total, 90)
    );
    debuggee.stop();
    Ok(())
}
