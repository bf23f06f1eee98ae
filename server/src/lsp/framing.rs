//! Reads the client's Content-Length framed stream and hands tower-lsp only well-formed
//! JSON-RPC messages.
//!
//! tower-lsp-server reads through a tokio-util `FramedRead`, which ends the stream after the
//! first decoding error: one malformed message from a client would stop the whole server. So
//! this layer frames the input itself. A well-formed message passes through unchanged; a body
//! that is not JSON, or JSON that is not a JSON-RPC message, is replaced by a request for
//! `INVALID_MESSAGE_METHOD`, whose handler answers with the JSON-RPC error the client should
//! get (-32700 parse error, -32600 invalid request), and serving goes on.

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tower_lsp_server::jsonrpc;

/// The internal method that stands in for a malformed message.
pub const INVALID_MESSAGE_METHOD: &str = "hot-lsp/internal/invalidMessage";

/// Parameters of the stand-in request.
#[derive(serde::Deserialize)]
pub struct InvalidMessage {
    pub code: i64,
    pub message: String,
}

/// Headers longer than this without their terminating blank line are garbage.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The stand-in request for a malformed message: answered with error `code` and `id`.
fn stand_in(id: Value, code: i64, message: String) -> Vec<u8> {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": INVALID_MESSAGE_METHOD,
        "params": {"code": code, "message": message},
    })
    .to_string()
    .into_bytes()
}

/// The body to pass on for one received body: itself if it is a JSON-RPC message, a stand-in
/// otherwise; None for an empty body, which carries nothing to answer.
fn checked_body(body: &[u8]) -> Option<Vec<u8>> {
    if body.is_empty() {
        return None;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Some(stand_in(
            Value::Null,
            -32700,
            "parse error: the message body is not UTF-8".to_owned(),
        ));
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            return Some(stand_in(
                Value::Null,
                -32700,
                format!("parse error: the message body is not JSON: {error}"),
            ))
        }
    };
    let is_request = serde_json::from_value::<jsonrpc::Request>(value.clone()).is_ok();
    let is_response = serde_json::from_value::<jsonrpc::Response>(value.clone()).is_ok();
    if is_request || is_response {
        return Some(body.to_vec());
    }
    // Answer with the message's id when it has a usable one, so that the client can match the
    // error to what it sent.
    let id = match value.get("id") {
        Some(id @ (Value::Number(_) | Value::String(_))) if id.is_string() || id.is_i64() => {
            id.clone()
        }
        _ => Value::Null,
    };
    Some(stand_in(
        id,
        -32600,
        "invalid request: not a JSON-RPC 2.0 request, notification or response".to_owned(),
    ))
}

/// The position right after the blank line that ends the headers, if it is in `buffer`.
fn header_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|position| position + 4)
}

/// The Content-Length of a header block, if it has exactly one valid one.
fn content_length(headers: &[u8]) -> Option<usize> {
    let headers = std::str::from_utf8(headers).ok()?;
    let mut length = None;
    for line in headers.split("\r\n") {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>().ok()?);
            }
        }
    }
    length
}

/// Where the next plausible header starts after garbage: the next "Content-Length", or the
/// end of the buffer.
fn resync_point(buffer: &[u8]) -> usize {
    let needle = b"Content-Length";
    buffer
        .windows(needle.len())
        .skip(1)
        .position(|window| window == needle)
        .map(|position| position + 1)
        .unwrap_or(buffer.len())
}

/// Starts the framing task on `input`; tower-lsp reads the returned stream.
pub fn sanitized<R>(input: R) -> DuplexStream
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (reader, writer) = tokio::io::duplex(64 * 1024);
    tokio::spawn(pump(input, writer));
    reader
}

async fn pump<R>(mut input: R, mut output: DuplexStream)
where
    R: AsyncRead + Unpin,
{
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // The body length of the frame whose headers were already consumed.
    let mut pending_body: Option<usize> = None;
    loop {
        // Take every complete frame out of the buffer.
        loop {
            if let Some(length) = pending_body {
                if buffer.len() < length {
                    break;
                }
                let body: Vec<u8> = buffer.drain(..length).collect();
                pending_body = None;
                if let Some(body) = checked_body(&body) {
                    let header = format!("Content-Length: {}\r\n\r\n", body.len());
                    if output.write_all(header.as_bytes()).await.is_err()
                        || output.write_all(&body).await.is_err()
                    {
                        // tower-lsp stopped reading: the server is exiting.
                        return;
                    }
                }
                continue;
            }
            match header_end(&buffer) {
                Some(end) => match content_length(&buffer[..end]) {
                    Some(length) => {
                        buffer.drain(..end);
                        pending_body = Some(length);
                    }
                    None => {
                        tracing::warn!("a message header without a valid Content-Length");
                        let skip = resync_point(&buffer);
                        buffer.drain(..skip);
                        let body = stand_in(
                            Value::Null,
                            -32700,
                            "parse error: a message header without a valid Content-Length"
                                .to_owned(),
                        );
                        let header = format!("Content-Length: {}\r\n\r\n", body.len());
                        if output.write_all(header.as_bytes()).await.is_err()
                            || output.write_all(&body).await.is_err()
                        {
                            return;
                        }
                    }
                },
                None if buffer.len() > MAX_HEADER_BYTES => {
                    tracing::warn!("discarding input that is not a message header");
                    let skip = resync_point(&buffer);
                    buffer.drain(..skip);
                }
                None => break,
            }
        }
        match input.read(&mut chunk).await {
            Ok(0) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(error) => {
                tracing::error!(%error, "reading the client's messages failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_messages_pass_unchanged() {
        let request = br#"{"jsonrpc":"2.0","id":1,"method":"shutdown"}"#;
        assert_eq!(checked_body(request), Some(request.to_vec()));
        let response = br#"{"jsonrpc":"2.0","id":1,"result":null}"#;
        assert_eq!(checked_body(response), Some(response.to_vec()));
    }

    #[test]
    fn malformed_bodies_become_stand_ins_with_the_right_code() {
        let parse: Value = serde_json::from_slice(&checked_body(b"{oops").unwrap()).unwrap();
        assert_eq!(parse["method"], INVALID_MESSAGE_METHOD);
        assert_eq!(parse["params"]["code"], -32700);
        assert_eq!(parse["id"], Value::Null);
        let invalid: Value =
            serde_json::from_slice(&checked_body(br#"{"id": 7, "x": 1}"#).unwrap()).unwrap();
        assert_eq!(invalid["params"]["code"], -32600);
        assert_eq!(invalid["id"], 7);
        assert_eq!(checked_body(b""), None);
    }

    #[test]
    fn headers_are_parsed_leniently() {
        assert_eq!(content_length(b"Content-Length: 12\r\n\r\n"), Some(12));
        assert_eq!(
            content_length(b"content-length:3\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n"),
            Some(3)
        );
        assert_eq!(content_length(b"Content-Type: x\r\n\r\n"), None);
        assert_eq!(content_length(b"Content-Length: many\r\n\r\n"), None);
    }
}
