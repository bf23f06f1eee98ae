//! End-to-end benchmark: one-function edits of generated C programs of 1k / 10k / 100k
//! functions, swapped by a real [`Session`] into the running program, side by side with the
//! conventional loop "recompile the file, relink the program (GNU ld / mold / lld), restart it".
//!
//! Usage:
//!
//! ```text
//! cargo run --release --example swap_e2e -p hot-session -- [--sizes 1000,10000,100000]
//!     [--edits 20] [--keep]
//! ```
//!
//! For every size the program is generated into a temporary directory (files of at most 1000
//! functions, a `main.c` that calls three of them and prints a line every 50 ms), built with
//! `make -j2`, and run under a session. Each edit flips the constant of one function in one
//! file, saves, waits for the swap and for the program to print the new value; the same
//! edited file is then compiled with `cc -c` and the whole program relinked with each linker
//! and restarted until its first line of output. Compile, link and swap are timed
//! separately; the table at the end gives medians and 90th percentiles.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::Receiver;
use hot_session::{Command, Session, SessionEvent, SessionOptions, Severity, SwapSummary};

/// At most this many functions per generated file, so that gcc compiles each in about a
/// second and `make -j2` keeps both cores busy.
const FUNCTIONS_PER_FILE: usize = 1000;
/// The flags of the build, of hot-lsp's compile command and of the conventional recompile:
/// the same three, so that the comparison is of the same work.
const CFLAGS: &str = "-O0 -g";
/// Generous waits: the machine is a shared two-core box, and every wait ends as soon as what
/// it waits for arrives.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(900);
const SWAP_TIMEOUT: Duration = Duration::from_secs(180);
const OUTPUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Added to the edited function's constant on every other edit.
const EDIT_OFFSET: usize = 1_000_000;

struct Options {
    sizes: Vec<usize>,
    edits: usize,
    keep: bool,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        sizes: vec![1000, 10_000, 100_000],
        edits: 20,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                let value = args
                    .next()
                    .context("--sizes needs a value, e.g. 1000,10000")?;
                options.sizes = value
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .with_context(|| format!("--sizes: {s:?} is not a number"))
                    })
                    .collect::<Result<_>>()?;
                if options.sizes.contains(&0) {
                    bail!("--sizes: a program needs at least one function");
                }
            }
            "--edits" => {
                let value = args.next().context("--edits needs a value")?;
                options.edits = value
                    .parse()
                    .with_context(|| format!("--edits: {value:?} is not a number"))?;
                if options.edits == 0 {
                    bail!("--edits must be at least 1");
                }
            }
            "--keep" => options.keep = true,
            "-h" | "--help" => {
                println!(
                    "swap_e2e [--sizes 1000,10000,100000] [--edits 20] [--keep]\n\
                     --keep leaves the generated programs in place and prints where"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(options)
}

// ---- the generated program -------------------------------------------------------------

/// One generated program on disk and the function its edits change.
struct Program {
    dir: tempfile::TempDir,
    functions: usize,
    files: usize,
    /// The edited function `f_<target_file>_<target_index>`.
    target_file: usize,
    target_index: usize,
}

impl Program {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn file_range(&self, file: usize) -> std::ops::Range<usize> {
        let start = file * FUNCTIONS_PER_FILE;
        start..(start + FUNCTIONS_PER_FILE).min(self.functions)
    }

    fn source_rel(file: usize) -> String {
        format!("src/f_{file}.c")
    }

    fn target_source(&self) -> PathBuf {
        self.root().join(Self::source_rel(self.target_file))
    }

    fn target_name(&self) -> String {
        format!("f_{}_{}", self.target_file, self.target_index)
    }

    /// The objects of the program, in link order, as the Makefile names them.
    fn objects(&self) -> Vec<PathBuf> {
        let mut objects = vec![self.root().join("obj/main.o")];
        objects.extend((0..self.files).map(|k| self.root().join(format!("obj/f_{k}.o"))));
        objects
    }

    /// The text of source file `file`; `constant` overrides the edited function's constant.
    fn render_file(&self, file: usize, constant: Option<usize>) -> String {
        let mut text = String::with_capacity(64 * FUNCTIONS_PER_FILE);
        text.push_str("/* Generated by the swap_e2e benchmark. */\n");
        for i in self.file_range(file) {
            let value = match constant {
                Some(c) if file == self.target_file && i == self.target_index => c,
                _ => i,
            };
            text.push_str(&format!(
                "int f_{file}_{i}(int x) {{ return x + {value}; }}\n"
            ));
        }
        text
    }

    /// Write the edited function with `constant` and return the path of its file.
    fn write_target(&self, constant: usize) -> Result<PathBuf> {
        let path = self.target_source();
        std::fs::write(&path, self.render_file(self.target_file, Some(constant)))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Generate a program of `functions` functions into a fresh temporary directory.
fn generate(functions: usize) -> Result<Program> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("hot-lsp-bench-{functions}-"))
        .tempdir()
        .context("creating the benchmark's temporary directory")?;
    let files = functions.div_ceil(FUNCTIONS_PER_FILE);
    // The edited function sits in the middle file, in the middle of that file: neither the
    // first nor the last symbol of anything.
    let target_file = files / 2;
    let target_start = target_file * FUNCTIONS_PER_FILE;
    let target_len = (target_start + FUNCTIONS_PER_FILE).min(functions) - target_start;
    let program = Program {
        dir,
        functions,
        files,
        target_file,
        target_index: target_start + target_len / 2,
    };
    let root = program.root();
    for sub in ["src", "obj"] {
        std::fs::create_dir_all(root.join(sub))
            .with_context(|| format!("creating {}", root.join(sub).display()))?;
    }
    for file in 0..files {
        write(
            &root.join(Program::source_rel(file)),
            &program.render_file(file, None),
        )?;
    }

    let first = "f_0_0".to_string();
    let last = format!("f_{}_{}", files - 1, functions - 1);
    let target = program.target_name();
    let main = format!(
        "/* Generated by the swap_e2e benchmark: calls three functions and prints a line every\n \
         * 50 ms; v= is the edited function's value. */\n\
         #include <stdio.h>\n\
         #include <unistd.h>\n\n\
         int {first}(int x);\nint {target}(int x);\nint {last}(int x);\n\n\
         int main(void) {{\n\
         \x20   for (int tick = 1;; tick++) {{\n\
         \x20       printf(\"tick=%d a=%d v=%d z=%d\\n\", tick, {first}(0), {target}(0), {last}(0));\n\
         \x20       fflush(stdout);\n\
         \x20       usleep(50000);\n\
         \x20   }}\n\
         }}\n"
    );
    write(&root.join("src/main.c"), &main)?;

    let objects: Vec<String> = std::iter::once("obj/main.o".to_string())
        .chain((0..files).map(|k| format!("obj/f_{k}.o")))
        .collect();
    let makefile = format!(
        "# Generated by the swap_e2e benchmark: one cc per file, then one link.\n\
         CFLAGS = {CFLAGS}\n\
         OBJS = {objs}\n\n\
         app: $(OBJS)\n\
         \tcc -o app $(OBJS)\n\n\
         obj/%.o: src/%.c\n\
         \tcc $(CFLAGS) -c $< -o $@\n",
        objs = objects.join(" \\\n\t"),
    );
    write(&root.join("Makefile"), &makefile)?;
    write(
        &root.join("hot-lsp.toml"),
        &format!(
            "[program]\npath = \"app\"\nbuild = \"make -j2\"\n\n\
             [compile]\ncommand = \"cc {CFLAGS} -c {{file}} -o {{output}}\"\n"
        ),
    )?;
    Ok(program)
}

/// Run a command to completion; a failure carries its stderr.
fn run(command: &mut Process, what: &str) -> Result<Duration> {
    let start = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {what}"))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({}):\n{}", output.status, tail.join("\n"));
    }
    Ok(elapsed)
}

// ---- the session ------------------------------------------------------------------------

/// A session and the events it sent, with the recent ones kept for failure messages.
struct Driver {
    session: Option<Session>,
    events: Receiver<SessionEvent>,
    recent: VecDeque<SessionEvent>,
}

impl Driver {
    fn start(root: &Path) -> Driver {
        let (tx, events) = crossbeam_channel::unbounded();
        let session = Session::start(
            SessionOptions {
                root: root.to_owned(),
                client_config: None,
                auto_launch: true,
            },
            tx,
        );
        Driver {
            session: Some(session),
            events,
            recent: VecDeque::new(),
        }
    }

    fn record(&mut self, event: SessionEvent) {
        if self.recent.len() == 30 {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
    }

    fn recent_text(&self) -> String {
        self.recent
            .iter()
            .map(|e| format!("  {e:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Drop the events already received (program output, mostly).
    fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.record(event);
        }
    }

    /// Wait until `pick` accepts an event. An error message, an error diagnostic or the
    /// program's exit ends the wait with an error that shows the recent events.
    fn wait<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&SessionEvent) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.events.recv_timeout(left) {
                Ok(event) => event,
                Err(_) => bail!(
                    "timed out after {timeout:?} waiting for {what}; recent events:\n{}",
                    self.recent_text()
                ),
            };
            let failure = match &event {
                SessionEvent::Message {
                    severity: Severity::Error,
                    text,
                } => Some(text.clone()),
                SessionEvent::Diagnostics { diagnostics, .. }
                    if diagnostics.iter().any(|d| d.severity == Severity::Error) =>
                {
                    Some(format!("{diagnostics:#?}"))
                }
                SessionEvent::Exited { code, signal } => Some(format!(
                    "the program exited (code {code:?}, signal {signal:?})"
                )),
                _ => None,
            };
            let found = pick(&event);
            self.record(event);
            if let Some(found) = found {
                return Ok(found);
            }
            if let Some(failure) = failure {
                bail!(
                    "while waiting for {what}: {failure}\nrecent events:\n{}",
                    self.recent_text()
                );
            }
        }
    }

    /// Wait for a line of program output containing `needle`.
    fn wait_output(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait(
            &format!("output containing {needle:?}"),
            timeout,
            |e| match e {
                SessionEvent::Output { text, .. } if text.contains(needle) => Some(text.clone()),
                _ => None,
            },
        )
    }

    fn save(&mut self, path: &Path) -> Result<()> {
        self.drain();
        self.session
            .as_ref()
            .context("the session was already shut down")?
            .send(Command::Saved(path.to_owned()));
        Ok(())
    }

    fn wait_swap(&mut self) -> Result<SwapSummary> {
        self.wait("the swap", SWAP_TIMEOUT, |e| match e {
            SessionEvent::Swap(summary) => Some(summary.clone()),
            _ => None,
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.shutdown();
        }
    }
}

// ---- the conventional loop ---------------------------------------------------------------

/// A linker of the conventional loop, as `cc -fuse-ld=<name>` selects it.
struct Linker {
    name: &'static str,
    /// The program `cc -fuse-ld=<name>` runs, looked up on PATH.
    program: &'static str,
    package: &'static str,
    /// Why this linker is not measured, if it is not.
    skipped: Option<String>,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The three linkers; a missing one is installed (Debian 12 packages) or marked skipped.
fn linkers() -> Vec<Linker> {
    let mut linkers = vec![
        Linker {
            name: "bfd",
            program: "ld.bfd",
            package: "binutils",
            skipped: None,
        },
        Linker {
            name: "mold",
            program: "ld.mold",
            package: "mold",
            skipped: None,
        },
        Linker {
            name: "lld",
            program: "ld.lld",
            package: "lld",
            skipped: None,
        },
    ];
    let missing: Vec<&str> = linkers
        .iter()
        .filter(|l| !on_path(l.program))
        .map(|l| l.package)
        .collect();
    if !missing.is_empty() {
        println!("installing {} (apt-get install -y)...", missing.join(" "));
        let installed = run(
            Process::new("apt-get")
                .args(["install", "-y"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            &format!("apt-get install -y {}", missing.join(" ")),
        );
        if let Err(e) = installed {
            println!("installation failed: {e:#}");
        }
    }
    for linker in &mut linkers {
        if !on_path(linker.program) {
            linker.skipped = Some(format!(
                "{} is not on PATH and installing {} failed",
                linker.program, linker.package
            ));
        }
    }
    linkers
}

/// Start `exe` and return the time until its first complete line of output.
fn time_to_first_line(exe: &Path, cwd: &Path) -> Result<Duration> {
    let start = Instant::now();
    let mut child = Process::new(exe)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let line = match child.stdout.take() {
        Some(stdout) => {
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
                .with_context(|| format!("reading the output of {}", exe.display()))
        }
        None => Err(anyhow!("{} has no stdout pipe", exe.display())),
    };
    let elapsed = start.elapsed();
    // The program loops forever; it has served its purpose once it printed.
    let _ = child.kill();
    let _ = child.wait();
    let line = line?;
    if !line.starts_with("tick=") {
        bail!(
            "{} printed {line:?} first, not a tick line (or exited)",
            exe.display()
        );
    }
    Ok(elapsed)
}

/// Times of one conventional edit: `cc -c`, then per linker the link and the restart.
struct Conventional {
    compile: Duration,
    /// Per linker (same order as [`linkers`]): link and restart, or `None` if skipped.
    per_linker: Vec<Option<(Duration, Duration)>>,
}

/// Recompile the edited file, relink the whole program with every linker and restart it.
fn conventional_edit(program: &Program, linkers: &mut [Linker]) -> Result<Conventional> {
    let root = program.root();
    let source = Program::source_rel(program.target_file);
    let object = format!("obj/f_{}.o", program.target_file);
    let compile = run(
        Process::new("cc")
            .args(CFLAGS.split_whitespace())
            .args(["-c", &source, "-o", &object])
            .current_dir(root),
        &format!("cc {CFLAGS} -c {source}"),
    )?;
    let objects = program.objects();
    let mut per_linker = Vec::new();
    for linker in linkers.iter_mut() {
        if linker.skipped.is_some() {
            per_linker.push(None);
            continue;
        }
        let exe = root.join(format!("app-{}", linker.name));
        let linked = run(
            Process::new("cc")
                .arg(format!("-fuse-ld={}", linker.name))
                .arg("-o")
                .arg(&exe)
                .args(&objects)
                .current_dir(root),
            &format!(
                "cc -fuse-ld={} (link of {} objects)",
                linker.name,
                objects.len()
            ),
        );
        let link = match linked {
            Ok(d) => d,
            Err(e) => {
                println!("  {} skipped from now on: {e:#}", linker.name);
                linker.skipped = Some(format!("the link failed: {e:#}"));
                per_linker.push(None);
                continue;
            }
        };
        let restart = time_to_first_line(&exe, root)?;
        per_linker.push(Some((link, restart)));
    }
    Ok(Conventional {
        compile,
        per_linker,
    })
}

// ---- statistics and the report -----------------------------------------------------------

/// Median and 90th percentile (nearest rank) in milliseconds.
#[derive(Clone, Copy)]
struct Stats {
    median: f64,
    p90: f64,
}

fn stats(samples: &[f64]) -> Option<Stats> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index]
    };
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    Some(Stats {
        median,
        p90: rank(0.9),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn micros_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn fmt_ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.3}")
    } else if value < 1000.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn fmt_stats(s: Option<Stats>) -> String {
    match s {
        Some(s) => format!("{} / {}", fmt_ms(s.median), fmt_ms(s.p90)),
        None => "-".into(),
    }
}

fn fmt_median(s: Option<Stats>) -> String {
    s.map_or_else(|| "skipped".into(), |s| fmt_ms(s.median))
}

/// What one size measured.
struct SizeResult {
    functions: usize,
    files: usize,
    build: Duration,
    to_launched: Duration,
    to_first_output: Duration,
    hot_compile: Vec<f64>,
    hot_link: Vec<f64>,
    hot_swap: Vec<f64>,
    /// Save to the program printing the new value (includes up to one 50 ms tick).
    hot_visible: Vec<f64>,
    conv_compile: Vec<f64>,
    /// Per linker: link and restart samples.
    conv_link: Vec<Vec<f64>>,
    conv_restart: Vec<Vec<f64>>,
    load_after: String,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn first_line_of(program: &str, args: &[&str]) -> String {
    match Process::new(program).args(args).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned(),
        Err(e) => format!("unavailable ({e})"),
    }
}

fn print_machine(linkers: &[Linker]) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "machine: {cpus} CPUs ({model}), load average {}",
        load_average()
    );
    println!("compiler: {}", first_line_of("cc", &["--version"]));
    for linker in linkers {
        match &linker.skipped {
            None => println!(
                "linker {}: {}",
                linker.name,
                first_line_of(linker.program, &["--version"])
            ),
            Some(why) => println!("linker {}: skipped ({why})", linker.name),
        }
    }
}

// ---- one size -----------------------------------------------------------------------------

fn bench_size(
    functions: usize,
    edits: usize,
    keep: bool,
    linkers: &mut [Linker],
) -> Result<SizeResult> {
    let program = generate(functions)?;
    let root = program.root().to_owned();
    println!(
        "\n== {functions} functions in {} file(s), edited function {} in {} ({})",
        program.files,
        program.target_name(),
        Program::source_rel(program.target_file),
        root.display()
    );
    let build = run(
        Process::new("make").arg("-j2").current_dir(&root),
        &format!("make -j2 in {}", root.display()),
    )?;
    println!("initial build (make -j2): {:.1} s", build.as_secs_f64());

    // The session runs the (now up-to-date) build, launches the program, reads its image and
    // compiles the baseline of every source file; the program's output is only relayed once
    // that is done, so the first line means the session is ready for saves.
    let start = Instant::now();
    let mut driver = Driver::start(&root);
    let pid = driver.wait("the program to launch", LAUNCH_TIMEOUT, |e| match e {
        SessionEvent::Launched { pid } => Some(*pid),
        _ => None,
    })?;
    let to_launched = start.elapsed();
    driver.wait_output("tick=", LAUNCH_TIMEOUT)?;
    let to_first_output = start.elapsed();
    println!(
        "session: launched pid {pid} after {:.2} s, first output (baselines compiled) after {:.2} s",
        to_launched.as_secs_f64(),
        to_first_output.as_secs_f64()
    );

    let mut result = SizeResult {
        functions,
        files: program.files,
        build,
        to_launched,
        to_first_output,
        hot_compile: Vec::new(),
        hot_link: Vec::new(),
        hot_swap: Vec::new(),
        hot_visible: Vec::new(),
        conv_compile: Vec::new(),
        conv_link: vec![Vec::new(); linkers.len()],
        conv_restart: vec![Vec::new(); linkers.len()],
        load_after: String::new(),
    };
    let target = program.target_name();
    for edit in 0..edits {
        // Alternate between the edited and the original constant, so that every save
        // changes exactly one function relative to what runs.
        let constant = if edit % 2 == 0 {
            program.target_index + EDIT_OFFSET
        } else {
            program.target_index
        };
        let path = program.write_target(constant)?;
        let saved = Instant::now();
        driver.save(&path)?;
        let summary = driver
            .wait_swap()
            .with_context(|| format!("edit {edit} of {target} ({functions} functions)"))?;
        if summary.swapped != [target.clone()] || !summary.added.is_empty() {
            bail!(
                "edit {edit}: expected exactly {target} to be swapped, but the session swapped \
                 {:?} and added {:?} (skipped {})",
                summary.swapped,
                summary.added,
                summary.skipped
            );
        }
        driver
            .wait_output(&format!(" v={constant} "), OUTPUT_TIMEOUT)
            .with_context(|| {
                format!("edit {edit}: the program does not print {target}'s new value {constant}")
            })?;
        let visible = saved.elapsed();
        result.hot_compile.push(micros_ms(summary.micros.compile));
        result.hot_link.push(micros_ms(summary.micros.link));
        result.hot_swap.push(micros_ms(summary.micros.swap));
        result.hot_visible.push(ms(visible));

        let conventional = conventional_edit(&program, linkers)
            .with_context(|| format!("conventional loop of edit {edit}"))?;
        result.conv_compile.push(ms(conventional.compile));
        let mut line = format!(
            "edit {edit:>2}: hot compile {} link {} swap {} ms | cc -c {}",
            fmt_ms(micros_ms(summary.micros.compile)),
            fmt_ms(micros_ms(summary.micros.link)),
            fmt_ms(micros_ms(summary.micros.swap)),
            fmt_ms(ms(conventional.compile)),
        );
        for (index, times) in conventional.per_linker.iter().enumerate() {
            if let Some((link, restart)) = times {
                result.conv_link[index].push(ms(*link));
                result.conv_restart[index].push(ms(*restart));
                line.push_str(&format!(
                    " {} {}+{}",
                    linkers[index].name,
                    fmt_ms(ms(*link)),
                    fmt_ms(ms(*restart))
                ));
            }
        }
        println!("{line} ms");
    }
    result.load_after = load_average();
    drop(driver);
    if keep {
        let kept = program.dir.keep();
        println!("kept {}", kept.display());
    }
    Ok(result)
}

fn print_report(results: &[SizeResult], linkers: &[Linker], edits: usize) {
    println!("\n==== results ({edits} one-function edits per size; times in ms) ====");
    println!("\nhot-lsp (median / p90):");
    println!(
        "{:>8} {:>6} {:>9} {:>10} {:>10} | {:>17} {:>17} {:>17} {:>17}",
        "funcs", "files", "build s", "ready s", "load", "compile", "link", "swap", "save->visible"
    );
    for r in results {
        println!(
            "{:>8} {:>6} {:>9.1} {:>10.1} {:>10} | {:>17} {:>17} {:>17} {:>17}",
            r.functions,
            r.files,
            r.build.as_secs_f64(),
            r.to_first_output.as_secs_f64(),
            r.load_after.split_whitespace().next().unwrap_or("?"),
            fmt_stats(stats(&r.hot_compile)),
            fmt_stats(stats(&r.hot_link)),
            fmt_stats(stats(&r.hot_swap)),
            fmt_stats(stats(&r.hot_visible)),
        );
    }
    println!(
        "  ready = session start to the first relayed output line (launch + image + baselines; \
         launch alone: {})",
        results
            .iter()
            .map(|r| format!("{:.2} s", r.to_launched.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  save->visible includes waiting for the program's next 50 ms tick");

    println!("\nconventional recompile + relink + restart (medians):");
    let mut header = format!("{:>8} {:>9}", "funcs", "cc -c");
    for linker in linkers {
        header.push_str(&format!(
            " | {:>8} {:>8} {:>8}",
            format!("{} link", linker.name),
            "restart",
            "total"
        ));
    }
    header.push_str(&format!(" | {:>11}", "hot total"));
    println!("{header}");
    for r in results {
        let compile = stats(&r.conv_compile);
        let mut line = format!("{:>8} {:>9}", r.functions, fmt_median(compile));
        for index in 0..linkers.len() {
            let link = stats(&r.conv_link[index]);
            let restart = stats(&r.conv_restart[index]);
            let total = match (compile, link, restart) {
                (Some(c), Some(l), Some(s)) => fmt_ms(c.median + l.median + s.median),
                _ => "skipped".into(),
            };
            line.push_str(&format!(
                " | {:>8} {:>8} {:>8}",
                fmt_median(link),
                fmt_median(restart),
                total
            ));
        }
        let hot_total: Vec<f64> = (0..r.hot_compile.len())
            .map(|i| r.hot_compile[i] + r.hot_link[i] + r.hot_swap[i])
            .collect();
        line.push_str(&format!(" | {:>11}", fmt_median(stats(&hot_total))));
        println!("{line}");
    }
    println!(
        "  restart = process start until its first output line; total = cc -c + link + restart \
         medians; hot total = median of compile + link + swap"
    );
    for linker in linkers {
        if let Some(why) = &linker.skipped {
            println!("  {} skipped: {why}", linker.name);
        }
    }
}

fn main() -> Result<()> {
    let options = parse_options()?;
    let mut linkers = linkers();
    print_machine(&linkers);
    println!("sizes {:?}, {} edits each", options.sizes, options.edits);
    let mut results = Vec::new();
    for &size in &options.sizes {
        match bench_size(size, options.edits, options.keep, &mut linkers) {
            Ok(result) => results.push(result),
            Err(e) => {
                // What was measured so far is still worth printing before failing loudly.
                print_report(&results, &linkers, options.edits);
                return Err(e.context(format!("benchmark of {size} functions")));
            }
        }
    }
    print_report(&results, &linkers, options.edits);
    println!("\nload average at the end: {}", load_average());
    Ok(())
}
