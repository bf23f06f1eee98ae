//! `hot-lsp.toml` and the client's configuration, merged key by key.

/// The effective configuration of a workspace.
#[derive(Clone, Debug, Default)]
pub struct Config {}
