//! `hot-lsp demo`: an embedded example program, built, launched and edited three times while
//! it runs, so a newcomer sees a swap within seconds of cloning.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hot_session::{Command, Session, SessionEvent, SessionOptions, Severity, SwapSummary};

const PROGRAM: &str = include_str!("demo/demo.c");
const CONFIG: &str = "[program]\npath = \"demo\"\nbuild = \"cc -O0 -g -o demo main.c\"\n\n\
[compile]\ncommand = \"cc -O0 -g -c {file} -o {output}\"\n";

/// How long the demo waits for any one thing before it gives up with an error.
const PATIENCE: Duration = Duration::from_secs(60);

struct Demo {
    dir: std::path::PathBuf,
    session: Session,
    events: crossbeam_channel::Receiver<SessionEvent>,
}

impl Demo {
    fn edit(&self, from: &str, to: &str) -> Result<()> {
        let path = self.dir.join("main.c");
        let text = std::fs::read_to_string(&path).context("reading the demo program")?;
        if !text.contains(from) {
            bail!("the demo program does not contain {from:?}");
        }
        std::fs::write(&path, text.replacen(from, to, 1)).context("editing the demo program")?;
        self.session.send(Command::Saved(path));
        Ok(())
    }

    /// Print events as they come until `done` says stop; returns what `done` returned.
    fn run_until<T>(&self, mut done: impl FnMut(&SessionEvent) -> Option<T>) -> Result<T> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .events
                .recv_timeout(left)
                .context("the demo waited too long for the program")?;
            show(&event, &self.dir);
            if let Some(value) = done(&event) {
                return Ok(value);
            }
        }
    }

    fn lines(&self, n: usize) -> Result<()> {
        let mut seen = 0;
        self.run_until(|e| {
            if let SessionEvent::Output { text, .. } = e {
                seen += text.matches('\n').count();
            }
            (seen >= n).then_some(())
        })
    }

    fn swap(&self) -> Result<SwapSummary> {
        self.run_until(|e| match e {
            SessionEvent::Swap(s) => Some(Ok(s.clone())),
            SessionEvent::Message {
                severity: Severity::Error,
                text,
            } => Some(Err(text.clone())),
            _ => None,
        })?
        .map_err(|e| anyhow::anyhow!("the swap failed: {e}"))
    }
}

fn show(event: &SessionEvent, dir: &Path) {
    match event {
        SessionEvent::Output { text, .. } => {
            for line in text.lines() {
                println!("    program │ {line}");
            }
        }
        SessionEvent::Swap(s) => {
            let mut what: Vec<String> = crate::lsp::convert::shown_names(&s.swapped);
            what.extend(
                crate::lsp::convert::shown_names(&s.added)
                    .iter()
                    .map(|a| format!("{a} (new)")),
            );
            println!(
                "    hot-lsp │ swapped {} in {:.2} ms (compile {:.1} ms, link {:.2} ms); {} unchanged",
                what.join(", "),
                s.micros.swap as f64 / 1000.0,
                s.micros.compile as f64 / 1000.0,
                s.micros.link as f64 / 1000.0,
                s.skipped
            );
        }
        SessionEvent::Diagnostics { file, diagnostics } => {
            for d in diagnostics {
                let name = file.strip_prefix(dir).unwrap_or(file);
                println!(
                    "    hot-lsp │ {}:{}:{}: {} [{}] {}",
                    name.display(),
                    d.line,
                    d.column,
                    match d.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                        Severity::Information => "info",
                    },
                    d.code,
                    d.message
                );
            }
        }
        SessionEvent::Unchanged { micros, .. } => println!(
            "    hot-lsp │ no function changed (compile {:.1} ms, link {:.2} ms)",
            micros.compile as f64 / 1000.0,
            micros.link as f64 / 1000.0
        ),
        SessionEvent::Launched { pid } => println!("    hot-lsp │ launched the program, pid {pid}"),
        SessionEvent::Message { text, .. } => println!("    hot-lsp │ {text}"),
        SessionEvent::Exited { code, signal } => {
            println!("    hot-lsp │ the program exited (code {code:?}, signal {signal:?})")
        }
        SessionEvent::Status(_) | SessionEvent::Progress(_) => {}
    }
}

fn step(title: &str) {
    println!("\n==> {title}");
}

pub fn run(keep: bool) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("hot-lsp-demo-")
        .tempdir()
        .context("creating the demo folder")?;
    std::fs::write(dir.path().join("main.c"), PROGRAM).context("writing the demo program")?;
    std::fs::write(dir.path().join("hot-lsp.toml"), CONFIG).context("writing hot-lsp.toml")?;
    println!("hot-lsp demo: a C program keeps running while its functions change.");
    println!("folder: {}", dir.path().display());

    let (tx, events) = crossbeam_channel::unbounded();
    let session = Session::start(
        SessionOptions {
            root: dir.path().to_owned(),
            client_config: None,
            auto_launch: true,
        },
        tx,
    );
    let demo = Demo {
        dir: dir.path().to_owned(),
        session,
        events,
    };

    step("building main.c with cc and launching it");
    demo.run_until(|e| match e {
        SessionEvent::Launched { .. } => Some(Ok(())),
        SessionEvent::Message {
            severity: Severity::Error,
            text,
        } => Some(Err(text.clone())),
        _ => None,
    })?
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    demo.lines(3)?;

    step("edit 1: greeting() returns another string, score() doubles — the frame count goes on");
    demo.edit("return \"hello\";", "return \"hello, hot-swapped world\";")?;
    demo.edit("return frame * 1;", "return frame * 2;")?;
    demo.swap()?;
    demo.lines(3)?;

    step("edit 2: a new function, stars(), called by greeting()");
    demo.edit(
        "const char *greeting(void) {\n    return \"hello, hot-swapped world\";\n}",
        "const char *stars(void) {\n    return \"*** new function ***\";\n}\n\n\
         const char *greeting(void) {\n    return stars();\n}",
    )?;
    demo.swap()?;
    demo.lines(3)?;

    step("edit 3: a compile error — reported on its line, the program keeps running");
    demo.edit("return frame * 2;", "return frame * 2 +;")?;
    demo.run_until(|e| match e {
        SessionEvent::Diagnostics { diagnostics, .. } if !diagnostics.is_empty() => Some(()),
        _ => None,
    })?;
    demo.lines(2)?;
    step("fixing it");
    demo.edit("return frame * 2 +;", "return frame * 3;")?;
    demo.swap()?;
    demo.lines(3)?;

    let pid = demo.session.status().pid;
    demo.session.shutdown();
    println!(
        "\ndone: one process (pid {}) from start to end, state kept across 4 swaps.",
        pid.map_or("?".into(), |p| p.to_string())
    );
    if keep {
        let kept = dir.keep();
        println!(
            "the folder stays: {}\ntry your own edits with:  hot-lsp watch {}",
            kept.display(),
            kept.display()
        );
    }
    Ok(())
}
