//! The LSP front end over stdio: capabilities, notification handlers that enqueue commands to
//! the workspace sessions, and `workspace/executeCommand`.
//!
//! Handlers never wait: each one looks up the session it concerns and enqueues a
//! `hot_session::Command` before its first `.await` (there is none). The sessions' events come
//! back through `bridge`.

mod bridge;
mod commands;
pub mod convert;
mod framing;
mod workspaces;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hot_session::Command;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::{
    DidChangeConfigurationParams, DidChangeTextDocumentParams, DidChangeWorkspaceFoldersParams,
    DidCloseTextDocumentParams, DidOpenTextDocumentParams, DidSaveTextDocumentParams,
    ExecuteCommandOptions, ExecuteCommandParams, InitializeParams, InitializeResult,
    InitializedParams, LSPAny, OneOf, SaveOptions, ServerCapabilities, ServerInfo,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextDocumentSyncOptions,
    TextDocumentSyncSaveOptions, Uri, WorkspaceFolder, WorkspaceFoldersServerCapabilities,
    WorkspaceServerCapabilities,
};
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

pub use commands::COMMANDS;
use convert::uri_to_path;
use workspaces::Workspaces;

/// The LSP server: shared state behind every handler.
struct Backend {
    workspaces: Arc<Workspaces>,
    /// Folders named in `initialize`; their sessions start on `initialized`, once the client
    /// is ready to receive notifications.
    initial_folders: std::sync::Mutex<Vec<Uri>>,
    shutdown_requested: Arc<AtomicBool>,
}

/// The configuration the client passes in `initializationOptions` or `didChangeConfiguration`:
/// either `{"hot-lsp": {...}}` or directly `{"program": ..., "compile": ...}`.
fn client_config(value: &Value) -> Option<Value> {
    let object = value.as_object()?;
    if let Some(section) = object.get("hot-lsp") {
        return section.is_object().then(|| section.clone());
    }
    (object.contains_key("program") || object.contains_key("compile")).then(|| value.clone())
}

/// The capabilities of DESIGN.md 3.3, and nothing else: hot-lsp runs beside clangd. Buffers
/// are synchronised whole (each change sends the full text), for the compile ahead of the
/// save (`[compile] ahead`).
pub fn server_capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::FULL),
                save: Some(TextDocumentSyncSaveOptions::SaveOptions(SaveOptions {
                    include_text: Some(false),
                })),
                ..TextDocumentSyncOptions::default()
            },
        )),
        execute_command_provider: Some(ExecuteCommandOptions {
            commands: COMMANDS.iter().map(|name| (*name).to_owned()).collect(),
            ..ExecuteCommandOptions::default()
        }),
        workspace: Some(WorkspaceServerCapabilities {
            workspace_folders: Some(WorkspaceFoldersServerCapabilities {
                supported: Some(true),
                change_notifications: Some(OneOf::Left(true)),
            }),
            file_operations: None,
        }),
        ..ServerCapabilities::default()
    }
}

/// The folders a client opened: its workspace folders, else its root URI, else its root path.
fn folders_of(params: &InitializeParams) -> Vec<Uri> {
    if let Some(folders) = params.workspace_folders.as_ref().filter(|f| !f.is_empty()) {
        return folders.iter().map(|folder| folder.uri.clone()).collect();
    }
    #[allow(deprecated)]
    let root_uri = params.root_uri.clone();
    if let Some(uri) = root_uri {
        return vec![uri];
    }
    #[allow(deprecated)]
    let root_path = params.root_path.clone();
    root_path
        .and_then(Uri::from_file_path)
        .into_iter()
        .collect()
}

impl Backend {
    /// Answers the stand-in for a malformed message (see `framing`) with its protocol error.
    async fn invalid_message(&self, params: framing::InvalidMessage) -> Result<Value> {
        Err(tower_lsp_server::jsonrpc::Error {
            code: params.code.into(),
            message: params.message.into(),
            data: None,
        })
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let progress = params
            .capabilities
            .window
            .as_ref()
            .and_then(|window| window.work_done_progress)
            .unwrap_or(false);
        self.workspaces.set_progress_supported(progress);
        let config = params
            .initialization_options
            .as_ref()
            .and_then(client_config);
        self.workspaces.set_client_config(config);
        *self
            .initial_folders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = folders_of(&params);
        Ok(InitializeResult {
            capabilities: server_capabilities(),
            server_info: Some(ServerInfo {
                name: "hot-lsp".to_owned(),
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            }),
            ..InitializeResult::default()
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        let folders = std::mem::take(
            &mut *self
                .initial_folders
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for folder in &folders {
            self.workspaces.add(folder);
        }
    }

    async fn shutdown(&self) -> Result<()> {
        self.shutdown_requested.store(true, Ordering::SeqCst);
        // The sessions stop in the background; the process waits for them before it exits.
        self.workspaces.shutdown_all();
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        if let Some(path) = uri_to_path(&params.text_document.uri) {
            self.workspaces
                .send_for_path(&path, Command::Opened(path.clone()));
        }
    }

    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        match uri_to_path(&params.text_document.uri) {
            Some(path) => {
                if !self
                    .workspaces
                    .send_for_path(&path, Command::Saved(path.clone()))
                {
                    tracing::debug!(file = %path.display(), "saved file is in no workspace");
                }
            }
            None => tracing::debug!(uri = params.text_document.uri.as_str(), "not a file"),
        }
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let Some(path) = uri_to_path(&params.text_document.uri) else {
            return;
        };
        // Full sync: the last change without a range is the whole text. A client that sent
        // ranges anyway (it ignored the capability) gets no compile ahead for this change.
        let Some(last) = params.content_changes.last() else {
            return;
        };
        if last.range.is_some() {
            tracing::debug!(file = %path.display(), "an incremental change under full sync");
            self.workspaces
                .send_for_path(&path, Command::Closed(path.clone()));
            return;
        }
        let text = last.text.clone();
        self.workspaces.send_for_path(
            &path,
            Command::Changed {
                file: path.clone(),
                text,
            },
        );
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        // hot-lsp compiles files on disk: only the unsaved text is forgotten.
        if let Some(path) = uri_to_path(&params.text_document.uri) {
            self.workspaces
                .send_for_path(&path, Command::Closed(path.clone()));
        }
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        let Some(config) = client_config(&params.settings) else {
            tracing::debug!("didChangeConfiguration without a hot-lsp section");
            return;
        };
        self.workspaces.set_client_config(Some(config.clone()));
        self.workspaces.send_all(&Command::Configure(config));
    }

    async fn did_change_workspace_folders(&self, params: DidChangeWorkspaceFoldersParams) {
        for WorkspaceFolder { uri, .. } in &params.event.removed {
            self.workspaces.remove(uri);
        }
        for WorkspaceFolder { uri, .. } in &params.event.added {
            self.workspaces.add(uri);
        }
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        commands::execute(&self.workspaces, &params.command, &params.arguments)
    }
}

/// Serves LSP on `input`/`output` until the client exits or closes `input`, then shuts every
/// session down. Returns the process exit code: 0 when the client asked for shutdown first, 1
/// otherwise (LSP `exit` semantics).
pub async fn serve<I, O>(input: I, output: O) -> i32
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite,
{
    let runtime = tokio::runtime::Handle::current();
    let shutdown_requested = Arc::new(AtomicBool::new(false));
    let mut shared: Option<Arc<Workspaces>> = None;
    let (service, socket) = LspService::build(|client: Client| {
        let workspaces = Arc::new(Workspaces::new(client, runtime.clone()));
        shared = Some(Arc::clone(&workspaces));
        Backend {
            workspaces,
            initial_folders: std::sync::Mutex::new(Vec::new()),
            shutdown_requested: Arc::clone(&shutdown_requested),
        }
    })
    .custom_method(framing::INVALID_MESSAGE_METHOD, Backend::invalid_message)
    .finish();
    let input = framing::sanitized(input);
    let server = Server::new(input, output, socket).serve(service);
    tokio::select! {
        () = server => tracing::info!("the client is gone"),
        signal = crate::signals::terminated() => tracing::info!(signal, "terminated by signal"),
    }
    if let Some(workspaces) = shared {
        workspaces.shutdown_all();
        // Joining waits for the session workers (which kill launched programs); do it off the
        // async threads.
        let joined = tokio::task::spawn_blocking(move || workspaces.join_retired()).await;
        if joined.is_err() {
            tracing::error!("shutting the sessions down panicked");
        }
    }
    if shutdown_requested.load(Ordering::SeqCst) {
        0
    } else {
        1
    }
}
