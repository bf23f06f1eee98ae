//! The open workspace folders: one `hot_session::Session` per folder, keyed by the folder's URI,
//! and the routing of files and commands to the session they belong to.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

use dashmap::DashMap;
use hot_session::{Command, Session, SessionOptions, Status};
use serde_json::Value;
use tower_lsp_server::ls_types::Uri;
use tower_lsp_server::Client;

use super::bridge;
use super::convert::uri_to_path;

/// One workspace folder and its session.
pub struct Workspace {
    /// The folder's URI exactly as the client sent it: notifications echo it back.
    pub uri: String,
    pub root: PathBuf,
    pub session: Session,
}

/// Everything the LSP handlers share. Handlers only look things up and enqueue commands.
pub struct Workspaces {
    client: Client,
    runtime: tokio::runtime::Handle,
    by_uri: DashMap<String, Workspace>,
    /// Folder URIs in the order the client listed them: a command without a `workspace`
    /// argument goes to the first.
    order: Mutex<Vec<String>>,
    /// The configuration the client set explicitly (initializationOptions, then the latest
    /// didChangeConfiguration); folders added later start with it.
    client_config: Mutex<Option<Value>>,
    /// Whether the client advertised `window.workDoneProgress`.
    progress_supported: AtomicBool,
    /// Sessions being shut down; joined before the process exits so that no launched program
    /// outlives the server.
    retiring: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding one of these locks leaves plain data behind, still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The key of the innermost folder among `roots` (key, root path) that contains `path`.
fn innermost_folder(path: &Path, roots: &[(String, PathBuf)]) -> Option<String> {
    roots
        .iter()
        .filter(|(_, root)| path.starts_with(root))
        .max_by_key(|(_, root)| root.components().count())
        .map(|(key, _)| key.clone())
}

/// Why a command could not be routed to a workspace.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("no workspace folder is open")]
    NoWorkspace,
    #[error("{0} is not an open workspace folder")]
    UnknownWorkspace(String),
}

impl Workspaces {
    pub fn new(client: Client, runtime: tokio::runtime::Handle) -> Workspaces {
        Workspaces {
            client,
            runtime,
            by_uri: DashMap::new(),
            order: Mutex::new(Vec::new()),
            client_config: Mutex::new(None),
            progress_supported: AtomicBool::new(false),
            retiring: Mutex::new(Vec::new()),
        }
    }

    pub fn set_progress_supported(&self, supported: bool) {
        self.progress_supported.store(supported, Ordering::Relaxed);
    }

    pub fn set_client_config(&self, config: Option<Value>) {
        *lock(&self.client_config) = config;
    }

    /// Opens a folder and starts its session (which stays idle unless the folder opted in).
    pub fn add(&self, uri: &Uri) {
        let key = uri.as_str().to_owned();
        if self.by_uri.contains_key(&key) {
            return;
        }
        let Some(root) = uri_to_path(uri) else {
            tracing::warn!(%key, "ignoring a workspace folder that is not a local file: URI");
            return;
        };
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let options = SessionOptions {
            root: root.clone(),
            client_config: lock(&self.client_config).clone(),
            auto_launch: true,
        };
        tracing::info!(root = %root.display(), "starting session");
        let session = Session::start(options, events_tx);
        bridge::spawn(
            &self.runtime,
            self.client.clone(),
            key.clone(),
            root.clone(),
            events_rx,
            self.progress_supported.load(Ordering::Relaxed),
        );
        self.by_uri.insert(
            key.clone(),
            Workspace {
                uri: key.clone(),
                root,
                session,
            },
        );
        lock(&self.order).push(key);
    }

    /// Closes a folder: its session shuts down in the background (killing a launched program).
    pub fn remove(&self, uri: &Uri) {
        let key = uri.as_str();
        lock(&self.order).retain(|open| open != key);
        if let Some((_, workspace)) = self.by_uri.remove(key) {
            tracing::info!(root = %workspace.root.display(), "closing session");
            self.retire(workspace.session);
        }
    }

    fn retire(&self, session: Session) {
        let shutdown = std::thread::Builder::new()
            .name("hot-lsp session shutdown".to_owned())
            .spawn(move || session.shutdown());
        match shutdown {
            Ok(handle) => lock(&self.retiring).push(handle),
            // Without a thread, shut down right here: slower, but the program still dies.
            Err(error) => tracing::error!(%error, "cannot spawn a shutdown thread"),
        }
    }

    /// Shuts every session down in the background; `join_retired` waits for them.
    pub fn shutdown_all(&self) {
        lock(&self.order).clear();
        let keys: Vec<String> = self
            .by_uri
            .iter()
            .map(|entry| entry.key().clone())
            .collect();
        for key in keys {
            if let Some((_, workspace)) = self.by_uri.remove(&key) {
                self.retire(workspace.session);
            }
        }
    }

    /// Waits until every retired session has shut down (blocking: call it off the runtime).
    pub fn join_retired(&self) {
        let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.retiring));
        for handle in handles {
            if handle.join().is_err() {
                tracing::error!("a session panicked while shutting down");
            }
        }
    }

    /// Sends `command` to the session whose folder contains `path` (the innermost folder when
    /// folders are nested). Returns whether some session took it.
    pub fn send_for_path(&self, path: &Path, command: Command) -> bool {
        let roots: Vec<(String, PathBuf)> = self
            .by_uri
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().root.clone()))
            .collect();
        let Some(key) = innermost_folder(path, &roots) else {
            return false;
        };
        match self.by_uri.get(&key) {
            Some(workspace) => {
                workspace.session.send(command);
                true
            }
            None => false,
        }
    }

    /// Sends `command` to every session.
    pub fn send_all(&self, command: &Command) {
        for entry in self.by_uri.iter() {
            entry.value().session.send(command.clone());
        }
    }

    /// The key of the workspace a command addresses: the given URI, or the first folder.
    fn route(&self, workspace: Option<&str>) -> Result<String, RouteError> {
        let Some(requested) = workspace else {
            return lock(&self.order)
                .first()
                .cloned()
                .ok_or(RouteError::NoWorkspace);
        };
        if self.by_uri.contains_key(requested) {
            return Ok(requested.to_owned());
        }
        // Clients spell the same folder differently (percent-encoding, trailing slash): compare
        // the paths the URIs name.
        let requested_path = requested
            .parse::<Uri>()
            .ok()
            .and_then(|uri| uri_to_path(&uri));
        if let Some(requested_path) = requested_path {
            for entry in self.by_uri.iter() {
                if entry.value().root == requested_path {
                    return Ok(entry.key().clone());
                }
            }
        }
        Err(RouteError::UnknownWorkspace(requested.to_owned()))
    }

    /// Enqueues `command` for the addressed workspace.
    pub fn send_to(&self, workspace: Option<&str>, command: Command) -> Result<(), RouteError> {
        let key = self.route(workspace)?;
        let target = self
            .by_uri
            .get(&key)
            .ok_or_else(|| RouteError::UnknownWorkspace(key.clone()))?;
        target.session.send(command);
        Ok(())
    }

    /// The status snapshot of the addressed workspace, with its URI and root.
    pub fn status_of(
        &self,
        workspace: Option<&str>,
    ) -> Result<(String, PathBuf, Status), RouteError> {
        let key = self.route(workspace)?;
        let target = self
            .by_uri
            .get(&key)
            .ok_or_else(|| RouteError::UnknownWorkspace(key.clone()))?;
        Ok((
            target.uri.clone(),
            target.root.clone(),
            target.session.status(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_belongs_to_the_innermost_folder_that_contains_it() {
        let roots = vec![
            ("outer".to_owned(), PathBuf::from("/w")),
            ("inner".to_owned(), PathBuf::from("/w/lib")),
            ("sibling".to_owned(), PathBuf::from("/w/lib2")),
        ];
        let owner = |path: &str| innermost_folder(Path::new(path), &roots);
        assert_eq!(owner("/w/lib/a.c").as_deref(), Some("inner"));
        assert_eq!(owner("/w/lib2/a.c").as_deref(), Some("sibling"));
        assert_eq!(owner("/w/main.c").as_deref(), Some("outer"));
        // Path prefixes count by component: /w/library is not inside /w/lib.
        assert_eq!(owner("/w/library/a.c").as_deref(), Some("outer"));
        assert_eq!(owner("/elsewhere/a.c"), None);
    }
}
