//! `hot-lsp demo`: a self-contained demonstration on an embedded example program.

/// Runs the demonstration; with `keep`, leaves its temporary directory behind.
pub fn run(keep: bool) -> anyhow::Result<()> {
    let _ = keep;
    anyhow::bail!("demo not implemented yet")
}
