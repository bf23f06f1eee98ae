//! Reads the client's Content-Length framed stream and hands tower-lsp only well-formed
//! JSON-RPC messages.
//!
//! tower-lsp-server reads through a tokio-util `FramedRead`, which ends the stream after the
//! first decoding error: one malformed message from a client would stop the whole server. So
//! this layer frames the input itself. A well-formed message passes through unchanged; a body
//! that is not JSON, or JSON that is not a JSON-RPC message, is replaced by a request for
//! `INVALID_MESSAGE_METHOD`, whose handler answers with the JSON-RPC error the client should
//! get (-32700 parse error, -32600 invalid request), and serving goes on. A header without a
//! usable Content-Length, or one over [`MAX_BODY_BYTES`], is answered the same way and the
//! input skipped up to the next header, so no client can make the server buffer or wait for
//! more than the limit.

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

/// The largest message body accepted. A `didOpen` carries a whole file, so this is generous;
/// a larger Content-Length (a broken or hostile client) is answered with an error and its
/// body skipped, never buffered.
pub const MAX_BODY_BYTES: usize = 64 << 20;

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

/// A JSON-RPC message as tower-lsp-server decodes one (its private `jsonrpc::Message`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Message {
    // Never read: only whether a body decodes matters.
    #[allow(dead_code)]
    Response(jsonrpc::Response),
    #[allow(dead_code)]
    Request(jsonrpc::Request),
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
    // Decided on the text, exactly as tower-lsp will decode it: a `Value` forgives what the
    // derived decoders do not (a key given twice), and one body tower-lsp fails to decode
    // ends its input stream.
    if serde_json::from_str::<Message>(text).is_ok() {
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

/// What a header block says about the body that follows.
#[derive(Debug, PartialEq, Eq)]
enum Length {
    /// Exactly one valid Content-Length.
    Valid(usize),
    /// No Content-Length, or one that is not a number.
    Invalid,
    /// A Content-Length over [`MAX_BODY_BYTES`] (or over `usize`).
    TooLarge(String),
}

/// The Content-Length of a header block.
fn content_length(headers: &[u8]) -> Length {
    let Ok(headers) = std::str::from_utf8(headers) else {
        return Length::Invalid;
    };
    let mut length = Length::Invalid;
    for line in headers.split("\r\n") {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                let value = value.trim();
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Length::Invalid;
                }
                length = match value.parse::<usize>() {
                    Ok(n) if n <= MAX_BODY_BYTES => Length::Valid(n),
                    _ => Length::TooLarge(value.to_owned()),
                };
            }
        }
    }
    length
}

/// The header name a resynchronisation looks for.
const NEEDLE: &[u8] = b"Content-Length";

/// How many bytes at the start of `buffer` are garbage before the next plausible header: up
/// to the next "Content-Length" after the first byte, or, when there is none, all but the
/// tail that could be the start of one split across reads.
fn resync_point(buffer: &[u8]) -> usize {
    buffer
        .windows(NEEDLE.len())
        .skip(1)
        .position(|window| window == NEEDLE)
        .map(|position| position + 1)
        .unwrap_or_else(|| buffer.len().saturating_sub(NEEDLE.len() - 1).max(1))
        .min(buffer.len())
}

/// The framing as a state machine over the bytes received, independent of any I/O: bytes
/// go in with [`Framer::push`], complete bodies for tower-lsp (each a well-formed JSON-RPC
/// message or a stand-in) come out. Memory stays bounded whatever arrives: a header block
/// is at most [`MAX_HEADER_BYTES`] and a body at most [`MAX_BODY_BYTES`].
#[derive(Default)]
pub struct Framer {
    buffer: Vec<u8>,
    /// The body length of the frame whose headers were already consumed.
    pending_body: Option<usize>,
    /// Garbage is being skipped: no header is parsed until a "Content-Length" shows up.
    resyncing: bool,
    /// How much of the buffer's start is known to hold no header end: a header arriving a
    /// byte at a time is then scanned once, not once per byte.
    scanned: usize,
}

impl Framer {
    /// Take in `input`; append to `out` every body that is now complete, in order.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<Vec<u8>>) {
        self.buffer.extend_from_slice(input);
        loop {
            if let Some(length) = self.pending_body {
                if self.buffer.len() < length {
                    return;
                }
                let body: Vec<u8> = self.consume(length);
                self.pending_body = None;
                out.extend(checked_body(&body));
                continue;
            }
            if self.resyncing {
                let skip = match self.buffer.windows(NEEDLE.len()).position(|w| w == NEEDLE) {
                    Some(at) => {
                        self.resyncing = false;
                        at
                    }
                    None => self.buffer.len().saturating_sub(NEEDLE.len() - 1),
                };
                self.consume(skip);
                if self.resyncing {
                    return;
                }
            }
            // Headers are searched for only in their bounded prefix: a stream without a blank
            // line costs no more than MAX_HEADER_BYTES per look.
            let window = &self.buffer[..self.buffer.len().min(MAX_HEADER_BYTES + 4)];
            let from = self.scanned.saturating_sub(3);
            let found = header_end(&window[from..]).map(|end| end + from);
            if found.is_none() {
                self.scanned = window.len();
            }
            match found {
                Some(end) => match content_length(&self.buffer[..end]) {
                    Length::Valid(length) => {
                        self.consume(end);
                        self.pending_body = Some(length);
                    }
                    Length::Invalid => {
                        // Without a length the body cannot be found: skip to the next header.
                        tracing::warn!("a message header without a valid Content-Length");
                        self.consume(end);
                        self.resyncing = true;
                        out.push(stand_in(
                            Value::Null,
                            -32700,
                            "parse error: a message header without a valid Content-Length"
                                .to_owned(),
                        ));
                    }
                    Length::TooLarge(value) => {
                        // The body is not buffered: it is skipped as garbage up to the next
                        // header, so a bogus length cannot make the server wait for (or hold)
                        // gigabytes, and the messages after it are served.
                        tracing::warn!(%value, "a message over the size limit");
                        self.consume(end);
                        self.resyncing = true;
                        out.push(stand_in(
                            Value::Null,
                            -32600,
                            format!(
                                "invalid request: a message of Content-Length {value} is over \
                                 the limit of {MAX_BODY_BYTES} bytes; it was skipped"
                            ),
                        ));
                    }
                },
                None if self.buffer.len() > MAX_HEADER_BYTES => {
                    tracing::warn!("discarding input that is not a message header");
                    let skip = resync_point(&self.buffer);
                    self.consume(skip);
                }
                None => return,
            }
        }
    }

    /// Take `n` bytes off the front of the buffer.
    fn consume(&mut self, n: usize) -> Vec<u8> {
        self.scanned = 0;
        self.buffer.drain(..n).collect()
    }

    /// Bytes held for an incomplete header or body (bounded by the limits above plus the
    /// last read). For the tests and the fuzz target (fuzz/fuzz_targets/lsp_framing.rs).
    #[allow(dead_code)]
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
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
    let mut framer = Framer::default();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut bodies = Vec::new();
    loop {
        let read = match input.read(&mut chunk).await {
            Ok(0) => return,
            Ok(read) => read,
            Err(error) => {
                tracing::error!(%error, "reading the client's messages failed");
                return;
            }
        };
        framer.push(&chunk[..read], &mut bodies);
        for body in bodies.drain(..) {
            let header = format!("Content-Length: {}\r\n\r\n", body.len());
            if output.write_all(header.as_bytes()).await.is_err()
                || output.write_all(&body).await.is_err()
            {
                // tower-lsp stopped reading: the server is exiting.
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
        // Found by the lsp_framing fuzz target: valid JSON, but tower-lsp rejects the
        // duplicate key and would then stop reading.
        let duplicate: Value = serde_json::from_slice(
            &checked_body(br#"{"jsonrpc":"2.0","id":1,"result":"a","id":2}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(duplicate["params"]["code"], -32600);
        assert_eq!(duplicate["id"], 2);
    }

    #[test]
    fn headers_are_parsed_leniently() {
        assert_eq!(
            content_length(b"Content-Length: 12\r\n\r\n"),
            Length::Valid(12)
        );
        assert_eq!(
            content_length(b"content-length:3\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n"),
            Length::Valid(3)
        );
        assert_eq!(content_length(b"Content-Type: x\r\n\r\n"), Length::Invalid);
        assert_eq!(
            content_length(b"Content-Length: many\r\n\r\n"),
            Length::Invalid
        );
        assert_eq!(
            content_length(b"Content-Length: -1\r\n\r\n"),
            Length::Invalid
        );
        assert_eq!(
            content_length(b"Content-Length: 99999999999999999999999\r\n\r\n"),
            Length::TooLarge("99999999999999999999999".into())
        );
        assert_eq!(
            content_length(b"Content-Length: 67108865\r\n\r\n"),
            Length::TooLarge("67108865".into())
        );
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Feed `stream` to a framer in chunks of the given sizes (cycled).
    fn feed(stream: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, usize) {
        let mut framer = Framer::default();
        let mut out = Vec::new();
        let mut most = 0;
        let mut at = 0;
        for &size in chunks.iter().cycle() {
            if at >= stream.len() {
                break;
            }
            let end = (at + size.max(1)).min(stream.len());
            framer.push(&stream[at..end], &mut out);
            most = most.max(framer.buffered());
            at = end;
        }
        (out, most)
    }

    fn is_json_rpc(body: &[u8]) -> bool {
        serde_json::from_slice::<Message>(body).is_ok()
    }

    const MESSAGES: [&[u8]; 4] = [
        br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}}"#,
        br#"{"jsonrpc":"2.0","method":"textDocument/didSave","params":{"textDocument":{"uri":"file:///w/a.c"}}}"#,
        br#"{"jsonrpc":"2.0","id":"s","result":null}"#,
        br#"{"jsonrpc":"2.0","id":2,"method":"workspace/executeCommand","params":{"command":"hot-lsp.status","arguments":[]}}"#,
    ];

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let stream: Vec<u8> = MESSAGES.iter().flat_map(|m| frame(m)).collect();
        for chunks in [&[1usize][..], &[2, 3], &[7, 1, 13], &[4096]] {
            let (out, _) = feed(&stream, chunks);
            let expected: Vec<Vec<u8>> = MESSAGES.iter().map(|m| m.to_vec()).collect();
            assert_eq!(out, expected, "chunks {chunks:?}");
        }
    }

    #[test]
    fn an_oversized_content_length_is_answered_and_skipped_without_buffering() {
        for length in ["1000000000000", "67108865", "99999999999999999999999999"] {
            let mut stream = format!("Content-Length: {length}\r\n\r\n{{\"jsonrpc\"").into_bytes();
            // Whatever the client sends as that "body" is skipped up to the next header.
            stream.extend(std::iter::repeat_n(b'x', 100_000));
            stream.extend(frame(MESSAGES[0]));
            let (out, most) = feed(&stream, &[4096]);
            assert_eq!(out.len(), 2, "{length}: {out:?}");
            let error: Value = serde_json::from_slice(&out[0]).unwrap();
            assert_eq!(error["params"]["code"], -32600, "{error}");
            assert!(
                error["params"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(length),
                "{error}"
            );
            assert_eq!(out[1], MESSAGES[0]);
            assert!(most < 2 * 4096 + MAX_HEADER_BYTES, "held {most} bytes");
        }
    }

    #[test]
    fn a_header_without_length_is_answered_and_the_next_message_served() {
        let mut stream = b"Content-Type: text/plain\r\n\r\n{\"jsonrpc\":\"2.0\"}".to_vec();
        stream.extend(frame(MESSAGES[3]));
        let (out, _) = feed(&stream, &[5]);
        assert_eq!(out.len(), 2, "{out:?}");
        let error: Value = serde_json::from_slice(&out[0]).unwrap();
        assert_eq!(error["params"]["code"], -32700);
        assert_eq!(out[1], MESSAGES[3]);
    }

    /// xorshift64*: deterministic mutations.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// A bounded, seeded mutation run of the framing: streams of real messages, truncated,
    /// bit-flipped, with overwritten or absurd Content-Length values, garbage between
    /// frames, bodies that are not JSON, not UTF-8 or nested past serde's recursion limit,
    /// fed in random chunk sizes. Every run must end without a panic, hold no more than
    /// the limits allow, and pass on only well-formed JSON-RPC messages.
    #[test]
    fn seeded_mutations_of_frames_never_panic_or_pass_garbage_on() {
        let started = std::time::Instant::now();
        let mut rng = Rng(0x5eed_f00d_cafe_babe);
        let base: Vec<u8> = MESSAGES.iter().flat_map(|m| frame(m)).collect();
        let nested = frame(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes());
        let executions = 4_000;
        let mut passed_on = 0;
        let mut answered = 0;
        for _ in 0..executions {
            let mut stream = base.clone();
            match rng.below(8) {
                0 => stream.truncate(rng.below(stream.len())),
                1 => {
                    for _ in 0..1 + rng.below(6) {
                        let at = rng.below(stream.len());
                        stream[at] ^= 1 << rng.below(8);
                    }
                }
                2 => {
                    // Overwrite a length digit, or the whole value, with something absurd.
                    let values = [
                        "0",
                        "-5",
                        "18446744073709551616",
                        "4294967296",
                        " 7 ",
                        "1e3",
                        "",
                        "+3",
                    ];
                    let value = values[rng.below(values.len())];
                    let text = String::from_utf8(stream).unwrap();
                    let nth = rng.below(MESSAGES.len());
                    let mut seen = 0;
                    let mut rewritten = String::new();
                    for (i, part) in text.split("Content-Length: ").enumerate() {
                        if i > 0 {
                            rewritten.push_str("Content-Length: ");
                            if seen == nth {
                                let digits = part.bytes().take_while(u8::is_ascii_digit).count();
                                rewritten.push_str(value);
                                rewritten.push_str(&part[digits..]);
                            } else {
                                rewritten.push_str(part);
                            }
                            seen += 1;
                        } else {
                            rewritten.push_str(part);
                        }
                    }
                    stream = rewritten.into_bytes();
                }
                3 => {
                    let at = rng.below(stream.len());
                    let garbage: Vec<u8> =
                        (0..rng.below(20_000)).map(|_| rng.next() as u8).collect();
                    stream.splice(at..at, garbage);
                }
                4 => {
                    let bodies: [&[u8]; 7] = [
                        b"{oops",
                        b"\xff\xfe{}",
                        b"[]",
                        b"null",
                        br#"{"jsonrpc":"2.0","id":{},"method":7}"#,
                        br#"{"jsonrpc":"2.0","id":1,"id":1,"method":"shutdown"}"#,
                        b"{\"a\":",
                    ];
                    let body = bodies[rng.below(bodies.len())];
                    let at = [0, frame(MESSAGES[0]).len()][rng.below(2)];
                    stream.splice(at..at, frame(body));
                }
                5 => stream.splice(0..0, nested.iter().copied()).for_each(drop),
                6 => {
                    let header = format!(
                        "Content-Length: {}\r\n\r\n",
                        [u64::MAX, 1 << 40, (MAX_BODY_BYTES + 1) as u64][rng.below(3)]
                    );
                    let at = [0, frame(MESSAGES[0]).len()][rng.below(2)];
                    stream.splice(at..at, header.into_bytes());
                }
                _ => {
                    // Headers without their blank line, longer than the header limit.
                    let junk =
                        "X-Junk: ".to_string() + &"y".repeat(rng.below(3 * MAX_HEADER_BYTES));
                    stream.splice(0..0, junk.into_bytes());
                }
            }
            let chunk = 1 + rng.below(9000);
            let before = std::time::Instant::now();
            let (out, most) = feed(&stream, &[chunk, 1 + rng.below(50)]);
            assert!(
                before.elapsed() < std::time::Duration::from_secs(5),
                "framing took {:?}",
                before.elapsed()
            );
            assert!(
                most <= MAX_BODY_BYTES + MAX_HEADER_BYTES + chunk,
                "held {most} bytes"
            );
            for body in &out {
                assert!(
                    is_json_rpc(body),
                    "passed on {:?}",
                    String::from_utf8_lossy(body)
                );
                let value: Value = serde_json::from_slice(body).unwrap();
                if value["method"] == INVALID_MESSAGE_METHOD {
                    answered += 1;
                } else {
                    passed_on += 1;
                }
            }
        }
        eprintln!(
            "framing: {executions} executions, {passed_on} messages passed on, {answered} \
             answered with an error, in {:.1?}",
            started.elapsed()
        );
        assert!(passed_on > 0 && answered > 0);
    }
}
