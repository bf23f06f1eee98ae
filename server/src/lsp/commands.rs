//! `workspace/executeCommand`: the `hot-lsp.*` commands of DESIGN.md 3.3.

use hot_session::Command;
use serde_json::Value;
use tower_lsp_server::jsonrpc::{Error, Result};

use super::convert::status_json;
use super::workspaces::Workspaces;

/// Every command the server advertises, in the order of DESIGN.md 3.3.
pub const COMMANDS: [&str; 7] = [
    "hot-lsp.launch",
    "hot-lsp.attach",
    "hot-lsp.detach",
    "hot-lsp.stop",
    "hot-lsp.restart",
    "hot-lsp.undo",
    "hot-lsp.status",
];

/// Runs one command. Everything but `hot-lsp.status` is enqueued and answered with `null`;
/// the outcome arrives as status notifications and diagnostics.
pub fn execute(
    workspaces: &Workspaces,
    command: &str,
    arguments: &[Value],
) -> Result<Option<Value>> {
    let first = arguments.first().filter(|value| !value.is_null());
    if let Some(first) = first {
        if !first.is_object() {
            return Err(Error::invalid_params(format!(
                "{command}: the first argument must be an object like {{\"workspace\": uri}}, got {first}"
            )));
        }
    }
    let workspace = match first.and_then(|value| value.get("workspace")) {
        None | Some(Value::Null) => None,
        Some(Value::String(uri)) => Some(uri.as_str()),
        Some(other) => {
            return Err(Error::invalid_params(format!(
                "{command}: \"workspace\" must be a URI string, got {other}"
            )))
        }
    };
    let session_command = match command {
        "hot-lsp.launch" => Command::Launch,
        "hot-lsp.attach" => {
            let pid = first
                .and_then(|value| value.get("pid"))
                .and_then(Value::as_i64)
                .and_then(|pid| i32::try_from(pid).ok())
                .filter(|pid| *pid > 0)
                .ok_or_else(|| {
                    Error::invalid_params("hot-lsp.attach: expected arguments [{\"pid\": N}]")
                })?;
            Command::Attach { pid }
        }
        "hot-lsp.detach" => Command::Detach,
        "hot-lsp.stop" => Command::Stop,
        "hot-lsp.restart" => Command::Restart,
        "hot-lsp.undo" => Command::Undo,
        "hot-lsp.status" => {
            let (uri, root, status) = workspaces
                .status_of(workspace)
                .map_err(|error| Error::invalid_params(format!("{command}: {error}")))?;
            return Ok(Some(status_json(&uri, &root, &status)));
        }
        unknown => {
            return Err(Error::invalid_params(format!(
                "unknown command {unknown:?}; hot-lsp knows {}",
                COMMANDS.join(", ")
            )))
        }
    };
    workspaces
        .send_to(workspace, session_command)
        .map_err(|error| Error::invalid_params(format!("{command}: {error}")))?;
    Ok(None)
}
