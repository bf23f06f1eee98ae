//! The `hot-lsp` binary: command line, logging, and the choice of front end (LSP over stdio,
//! `watch`, `demo`).

mod demo;
mod lsp;
mod signals;
mod stdio;
mod watch;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Hot-reload language server for native C/C++ programs: save a source file and the changed
/// functions are swapped into the running program.
#[derive(Parser, Debug)]
#[command(name = "hot-lsp", version, about, long_about = None)]
struct Cli {
    /// Speak the Language Server Protocol over stdin/stdout (logs go to stderr).
    #[arg(long)]
    stdio: bool,

    /// Also write logs to this file.
    #[arg(long, value_name = "PATH", global = true)]
    log_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<CliCommand>,
}

#[derive(Subcommand, Debug)]
enum CliCommand {
    /// Launch the workspace's program, watch its sources and hot-swap every change.
    Watch {
        /// The workspace folder (with a hot-lsp.toml); defaults to the current directory.
        dir: Option<PathBuf>,
        /// Print one JSON event per line instead of human-readable lines.
        #[arg(long)]
        json: bool,
    },
    /// A self-contained demonstration on an embedded example program.
    Demo {
        /// Keep the demonstration's temporary directory.
        #[arg(long)]
        keep: bool,
    },
}

/// Logs go to stderr and, with `--log-file`, to that file. `HOT_LSP_LOG` (or `RUST_LOG`) sets
/// the filter.
fn init_logging(log_file: Option<&Path>, default_filter: &str) -> anyhow::Result<()> {
    let filter = std::env::var("HOT_LSP_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_filter.to_owned());
    let file_layer = match log_file {
        Some(path) => {
            let file = File::options()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(Mutex::new(file)),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .with(
            tracing_subscriber::fmt::layer()
                // Colour only for a person at a terminal: editors show stderr in log views.
                .with_ansi(
                    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                )
                .with_writer(std::io::stderr),
        )
        .with(file_layer)
        .try_init()
        .context("cannot initialise logging")?;
    Ok(())
}

fn run_lsp() -> anyhow::Result<i32> {
    // Before any thread exists: later children must not inherit the protocol streams.
    let streams = stdio::take_protocol_streams().context("cannot set up the stdio transport")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hot-lsp")
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(async move {
        let input = tokio::fs::File::from_std(streams.input);
        let output = tokio::fs::File::from_std(streams.output);
        lsp::serve(input, output).await
    });
    // A blocking read of the protocol input may still be pending (the client sent `exit` but
    // kept its end open); do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(200));
    Ok(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = if cli.command.is_some() {
        "warn"
    } else {
        "info"
    };
    if let Err(error) = init_logging(cli.log_file.as_deref(), default_filter) {
        eprintln!("hot-lsp: {error:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Some(_) if cli.stdio => {
            eprintln!("hot-lsp: --stdio cannot be combined with a subcommand");
            return ExitCode::from(2);
        }
        Some(CliCommand::Watch { dir, json }) => watch::run(dir, json),
        Some(CliCommand::Demo { keep }) => demo::run(keep).map(|()| 0),
        None if cli.stdio => run_lsp(),
        None => {
            eprintln!(
                "hot-lsp: nothing to do. Run `hot-lsp --stdio` from an editor, `hot-lsp watch` \
                 in a workspace, or see `hot-lsp --help`."
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("hot-lsp: {error:#}");
            ExitCode::FAILURE
        }
    }
}
