//! A hand-made WebSocket client for the integration tests: a raw opening handshake, masked
//! client frames built byte by byte, and server frames parsed without any library.
//!
//! It exists so tests can send what no well-behaved client would (unmasked frames, reserved
//! opcodes, broken UTF-8, bad close codes) and see exactly which bytes the server answers with.
//! It never hides a protocol error: every unexpected byte is a test failure.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use crate::harness::{connect, read_response, Response};

pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;
pub const FIN: u8 = 0x80;
pub const RSV1: u8 = 0x40;

/// The sample key of RFC 6455 §1.3.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A masking key with four different bytes, so a wrong key offset garbles the payload.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The handshake fields of a valid upgrade request, one per line.
pub fn upgrade_fields() -> String {
    format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n"
    )
}

/// A GET of `path` with a Host line and then `fields` (each ending in CRLF).
pub fn upgrade_request(path: &str, fields: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{fields}\r\n")
}

/// Sends `request` on a new connection and reads the response head (and body, if any).
/// A 101 is read byte by byte up to its blank line, so no frame byte is swallowed.
pub fn send_upgrade(port: u16, request: &str) -> (Response, TcpStream) {
    let mut stream = connect(port);
    stream.write_all(request.as_bytes()).unwrap();
    let response = read_response(&mut stream, false);
    (response, stream)
}

/// One frame as the server sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a close frame, `None` for an empty one.
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        match self.payload[..] {
            [] => None,
            [hi, lo, ..] => Some(u16::from_be_bytes([hi, lo])),
            [_] => panic!("a close payload of one byte: {self:?}"),
        }
    }

    /// The message payload, inflated when the server compressed it (RSV1).
    pub fn data(&self) -> Vec<u8> {
        if self.rsv1 {
            inflate(&self.payload)
        } else {
            self.payload.clone()
        }
    }
}

/// A WebSocket connection driven frame by frame.
pub struct RawWs {
    pub stream: TcpStream,
    /// Received bytes not yet parsed into frames.
    pending: Vec<u8>,
}

impl RawWs {
    /// Upgrades on `path` with extra handshake `fields`; panics unless the answer is 101.
    pub fn open_with(port: u16, path: &str, extra_fields: &str) -> (RawWs, Response) {
        let request = upgrade_request(path, &format!("{}{extra_fields}", upgrade_fields()));
        let (response, stream) = send_upgrade(port, &request);
        assert_eq!(response.status, 101, "upgrade refused: {response:?}");
        (RawWs::from_stream(stream), response)
    }

    /// Wraps a connection whose 101 was already read.
    pub fn from_stream(stream: TcpStream) -> RawWs {
        RawWs {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn open(port: u16) -> RawWs {
        RawWs::open_with(port, "/ws", "").0
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends one masked frame; `first` is the whole first byte (FIN, RSV, opcode).
    pub fn send(&mut self, first: u8, payload: &[u8]) {
        self.send_raw(&frame(first, payload));
    }

    /// The next frame, or `None` when the server closed the connection first.
    pub fn read_frame(&mut self) -> Option<Frame> {
        self.read_frame_within(Duration::from_secs(10))
    }

    /// The next frame; panics if none is complete after `limit`.
    pub fn read_frame_within(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((frame, len)) = parse_frame(&self.pending) {
                self.pending.drain(..len);
                return Some(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no complete frame within {limit:?}; have {:?}",
                self.pending
            );
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 64 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    assert!(
                        self.pending.is_empty(),
                        "closed inside a frame: {:?}",
                        self.pending
                    );
                    return None;
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    assert!(self.pending.is_empty(), "reset inside a frame");
                    return None;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading a frame: {e}"),
            }
        }
    }

    /// The next frame, which must exist.
    pub fn expect_frame(&mut self) -> Frame {
        self.read_frame()
            .expect("the server closed the connection instead of sending a frame")
    }

    /// Reads the server's close frame (the next frame) and then the end of the TCP stream;
    /// returns the close payload.
    pub fn expect_close(&mut self) -> Vec<u8> {
        let frame = self.expect_frame();
        assert_eq!(frame.opcode, CLOSE, "expected a close frame, got {frame:?}");
        assert!(frame.fin && !frame.rsv1, "{frame:?}");
        self.expect_eof();
        frame.payload
    }

    /// Asserts the server's close frame carries exactly `code` with no reason, then TCP closes.
    pub fn expect_close_code(&mut self, code: u16) {
        let payload = self.expect_close();
        assert_eq!(
            payload,
            code.to_be_bytes(),
            "expected close {code}, got payload {payload:?}"
        );
    }

    /// Asserts the server closes TCP (within 10 s) without sending anything more.
    pub fn expect_eof(&mut self) {
        if let Some(frame) = self.read_frame() {
            panic!("expected the TCP connection to close, got {frame:?}");
        }
    }

    /// Sends a text message and asserts the echo is the same, uncompressed.
    pub fn assert_echo(&mut self, text: &str) {
        self.send(FIN | TEXT, text.as_bytes());
        let echo = self.expect_frame();
        assert_eq!(
            echo,
            Frame {
                fin: true,
                rsv1: false,
                opcode: TEXT,
                payload: text.as_bytes().to_vec()
            }
        );
    }
}

/// A masked client frame; `first` is the whole first byte (FIN, RSV, opcode).
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64, Some(MASK));
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// An unmasked frame, which only servers may send.
pub fn unmasked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64, None);
    out.extend_from_slice(payload);
    out
}

/// A frame header declaring `len` payload bytes (RFC 6455 §5.2 length encodings).
pub fn header(first: u8, len: u64, key: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if let Some(key) = key {
        out.extend_from_slice(&key);
    }
    out
}

/// A close payload: the code in network order, then the reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason);
    out
}

/// Parses one server frame from the front of `bytes`: the frame and its length on the wire.
/// Server frames must be unmasked (RFC 6455 §5.1).
pub fn parse_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
    let [first, second, rest @ ..] = bytes else {
        return None;
    };
    assert_eq!(second & 0x80, 0, "the server masked a frame: {bytes:?}");
    assert_eq!(first & 0x30, 0, "the server set RSV2/RSV3: {bytes:?}");
    let (len, header_len) = match second & 0x7f {
        126 => (
            u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(rest.get(..8)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = bytes.get(header_len..header_len + len)?;
    let frame = Frame {
        fin: first & FIN != 0,
        rsv1: first & RSV1 != 0,
        opcode: first & 0x0f,
        payload: payload.to_vec(),
    };
    Some((frame, header_len + len))
}

/// The RFC 7692 §7.2.1 payload of `data`: raw DEFLATE, sync-flushed, without the final
/// `00 00 ff ff`.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let consumed = compress.total_in() as usize;
        compress
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if compress.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "no sync flush marker");
    out.truncate(out.len() - 4);
    out
}

/// Inflates an RFC 7692 message payload (appending the `00 00 ff ff` it lacks).
pub fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut decompress = Decompress::new(false);
    let mut out = Vec::with_capacity(input.len() * 4 + 64);
    loop {
        let consumed = decompress.total_in() as usize;
        let produced = decompress.total_out();
        decompress
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .expect("the server's compressed payload does not inflate");
        if decompress.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        let progressed =
            decompress.total_in() as usize != consumed || decompress.total_out() != produced;
        assert!(progressed || out.len() == out.capacity(), "inflate stalled");
        out.reserve(out.capacity());
    }
}
