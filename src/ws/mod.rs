//! The sans-IO WebSocket layer (RFC 6455, RFC 7692 permessage-deflate): handshake decisions,
//! frames, messages, the close handshake and compression, with the echo application built in.
//!
//! This module owns every WebSocket protocol rule. It must never touch a socket, a file or a
//! clock: the reactor hands it bytes (and its own buffers) and writes out what it appends.
//! It imports nothing of the crate but `crate::http` (the parsed request and head writers).
//!
//! The reactor's loop, per readable connection in the WebSocket state:
//! 1. read into the input buffer; call [`Session::receive`] with the unconsumed bytes;
//! 2. drop `consumed` bytes from the front of the input buffer;
//! 3. flush `out`; if [`Received::more`] was set, call `receive` again once `out` drained;
//! 4. when the state is [`State::Closed`], flush `out` and close the TCP connection.
//!
//! A partial control frame (at most 139 bytes) is never consumed, so the input buffer must
//! hold at least [`MIN_INPUT_BUFFER`] bytes; data frame payloads are consumed as they arrive.
//!
//! Where the rules live: frame header layout in `frame`, masking in `mask`, the frame-sequence
//! rules, limits and the close handshake in `session`, UTF-8 in `utf8` (uncompressed text is
//! checked piece by piece as it arrives, compressed text once inflated), close codes in
//! `close`, the opening handshake in `handshake`, permessage-deflate in `deflate`.

mod close;
mod deflate;
mod frame;
mod handshake;
mod mask;
mod session;
mod utf8;

pub use close::{parse_close_payload, write_close, ClientClose, CloseCode};
pub use deflate::{negotiate, Codec, DeflateParams, InflateError, Negotiated};
pub use frame::{
    parse_header, write_frame_header, Control, Data, FrameHeader, MalformedLength, OpCode,
    MAX_HEADER_LEN,
};
pub use handshake::{
    accept_key, evaluate, is_upgrade_request, write_accept, Accepted, Refused, Upgrade,
};
pub use mask::{apply_mask, apply_mask_naive, copy_masked, extend_unmasked};
pub use session::{Received, Session, State, WsStats, MIN_INPUT_BUFFER, OUT_SOFT_LIMIT};
pub use utf8::{InvalidUtf8, Utf8Validator};

/// Helpers shared by the unit tests of this module's files.
#[cfg(test)]
mod testing {
    /// Incompressible bytes from xorshift64.
    pub fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }
}

/// WebSocket settings, shared read-only by every connection of a worker.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// The largest message, after decompression (1009 beyond).
    pub max_message: usize,
    /// The largest single frame payload (1009 beyond).
    pub max_frame: usize,
    /// Whether permessage-deflate is negotiated when offered.
    pub deflate: bool,
    /// The request paths that accept an upgrade (404 on others); `None` accepts any path, since
    /// a request carrying `Upgrade: websocket` never asks for a file.
    pub paths: Option<Vec<Vec<u8>>>,
    /// The allowed `Origin` values (ASCII case-insensitive); `None` accepts any.
    pub origins: Option<Vec<Vec<u8>>>,
    /// Unfragmented data frames up to this many bytes (head included) are taken only once
    /// whole, so they are unmasked and echoed straight from the input (uncompressed text is
    /// checked as it arrives meanwhile, and fails at the bad byte); larger ones are taken
    /// piece by piece into the message buffer as they arrive. The caller's input must be able
    /// to hold this much; 0 takes every frame piece by piece.
    pub whole_frame_max: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message: 16 << 20,
            max_frame: 16 << 20,
            deflate: true,
            paths: None,
            origins: None,
            whole_frame_max: 0,
        }
    }
}
