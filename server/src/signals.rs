//! Waiting for the signals that ask hot-lsp to stop (SIGINT, SIGTERM), so that it can shut its
//! sessions down (kill launched programs, detach from attached ones) before exiting.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves with the signal's name when SIGINT or SIGTERM arrives. If the handlers cannot be
/// installed, it never resolves and the default signal actions stay in place.
pub async fn terminated() -> &'static str {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install SIGINT/SIGTERM handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
