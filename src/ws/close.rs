//! Close frames (RFC 6455 §5.5.1, §7.4): status codes, validation of a client's close payload,
//! and the server's close frame.
//!
//! This file owns which status codes may appear on the wire. It never decides when to close.

use super::frame::{write_frame_header, Control, OpCode};
use super::utf8::Utf8Validator;

/// A close status code (RFC 6455 §7.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseCode(pub u16);

impl CloseCode {
    pub const NORMAL: CloseCode = CloseCode(1000);
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// "data within a message that was not consistent with the type of the message (e.g.,
    /// non-UTF-8 [RFC3629] data within a text message)".
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// "a message that is too big for it to process".
    pub const TOO_BIG: CloseCode = CloseCode(1009);

    /// Whether a peer may send this code in a close frame: 1000-1003, 1007-1011 and the
    /// registered/private ranges 3000-4999. 1004-1006 and 1015 are reserved ("MUST NOT be set
    /// as a status code in a Close control frame by an endpoint"), 0-999 are unused.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }
}

/// What a client's close payload says, or why it is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientClose {
    /// No payload: answer with an empty close.
    Empty,
    /// A valid code (and a valid UTF-8 reason): answer with the same code.
    Code(CloseCode),
    /// Fail the connection with this code.
    Invalid(CloseCode),
}

/// Validates a client's (unmasked) close payload.
pub fn parse_close_payload(payload: &[u8]) -> ClientClose {
    match payload {
        [] => ClientClose::Empty,
        // §5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte
        // unsigned integer"; one byte cannot be.
        [_] => ClientClose::Invalid(CloseCode::PROTOCOL_ERROR),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return ClientClose::Invalid(CloseCode::PROTOCOL_ERROR);
            }
            // §5.5.1: the reason is "not guaranteed to be human readable" but "the data is
            // UTF-8-encoded"; §8.1 makes invalid UTF-8 a failure (1007).
            let mut utf8 = Utf8Validator::new();
            if utf8.feed(reason).and_then(|()| utf8.finish()).is_err() {
                return ClientClose::Invalid(CloseCode::INVALID_DATA);
            }
            ClientClose::Code(code)
        }
    }
}

/// The longest close reason: a control frame payload is at most 125 bytes, 2 go to the code.
pub const MAX_REASON: usize = 123;

/// Appends a server close frame; `code` None sends an empty body. The reason is cut at a
/// character boundary to fit the control-frame limit.
pub fn write_close(out: &mut Vec<u8>, code: Option<CloseCode>, reason: &str) {
    let close = OpCode::Control(Control::Close);
    let Some(code) = code else {
        write_frame_header(out, true, false, close, 0);
        return;
    };
    let mut cut = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = reason.get(..cut).unwrap_or_default().as_bytes();
    write_frame_header(out, true, false, close, 2 + reason.len() as u64);
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(payload: &[u8], expected: ClientClose) {
        assert_eq!(parse_close_payload(payload), expected, "{payload:02x?}");
    }

    #[test]
    fn client_close_payloads() {
        check(b"", ClientClose::Empty);
        check(&[0x03], ClientClose::Invalid(CloseCode::PROTOCOL_ERROR));
        check(&[0x03, 0xe8], ClientClose::Code(CloseCode::NORMAL));
        check(
            b"\x03\xe8bye \xce\xba",
            ClientClose::Code(CloseCode::NORMAL),
        );
        check(
            b"\x03\xe8\xce",
            ClientClose::Invalid(CloseCode::INVALID_DATA),
        );
        check(
            b"\x03\xe8\xff",
            ClientClose::Invalid(CloseCode::INVALID_DATA),
        );
    }

    #[test]
    fn valid_and_invalid_codes() {
        // Autobahn 7.7.x (valid) and 7.9.x (invalid).
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            check(&u16::to_be_bytes(code), ClientClose::Code(CloseCode(code)));
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            check(
                &u16::to_be_bytes(code),
                ClientClose::Invalid(CloseCode::PROTOCOL_ERROR),
            );
        }
    }

    #[test]
    fn server_close_frames() {
        let mut out = Vec::new();
        write_close(&mut out, None, "ignored");
        assert_eq!(out, [0x88, 0x00]);
        out.clear();
        write_close(&mut out, Some(CloseCode::GOING_AWAY), "");
        assert_eq!(out, [0x88, 0x02, 0x03, 0xe9]);
        out.clear();
        write_close(&mut out, Some(CloseCode::NORMAL), "ok");
        assert_eq!(out, [0x88, 0x04, 0x03, 0xe8, b'o', b'k']);
        // A long reason is cut to 123 bytes, never inside a character.
        out.clear();
        let long = "é".repeat(100);
        write_close(&mut out, Some(CloseCode::NORMAL), &long);
        assert_eq!(out[1], 2 + 122);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
