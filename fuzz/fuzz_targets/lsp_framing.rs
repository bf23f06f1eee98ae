//! The LSP framing (server/src/lsp/framing.rs, compiled in as it is): arbitrary bytes fed
//! in arbitrary chunks. It must never panic, never hold more than its limits, and pass on
//! only well-formed JSON-RPC messages.
#![no_main]

#[allow(dead_code)]
#[path = "../../server/src/lsp/framing.rs"]
mod framing;

use libfuzzer_sys::fuzz_target;
use tower_lsp_server::jsonrpc;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so that splits anywhere are explored.
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let chunk = split as usize + 1;
    let mut framer = framing::Framer::default();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        framer.push(piece, &mut out);
        assert!(framer.buffered() <= framing::MAX_BODY_BYTES + 16 * 1024 + chunk);
    }
    for body in &out {
        let ok = serde_json::from_slice::<Message>(body).is_ok();
        assert!(ok, "passed on {:?}", String::from_utf8_lossy(body));
    }
});

/// What tower-lsp-server decodes a body as (its private `jsonrpc::Message`): a body it
/// cannot decode ends its input stream, so none may pass.
#[derive(serde::Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Message {
    Response(jsonrpc::Response),
    Request(jsonrpc::Request),
}
