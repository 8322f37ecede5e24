//! Frame headers (RFC 6455 §5.2): parsing a client's header and writing the server's.
//!
//! This file owns the bit layout of a header and nothing else: it never looks at a payload,
//! never decides what a frame means in a message, and never allocates. A short input is
//! `Ok(None)` and consumes nothing.

/// The opcode of a frame, typed by its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Data(Data),
    Control(Control),
    /// %x3-7 and %xB-F: "reserved for further non-control/control frames".
    Reserved(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    Continue,
    Text,
    Binary,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Close,
    Ping,
    Pong,
}

impl OpCode {
    pub fn from_u8(bits: u8) -> OpCode {
        match bits {
            0x0 => OpCode::Data(Data::Continue),
            0x1 => OpCode::Data(Data::Text),
            0x2 => OpCode::Data(Data::Binary),
            0x8 => OpCode::Control(Control::Close),
            0x9 => OpCode::Control(Control::Ping),
            0xA => OpCode::Control(Control::Pong),
            other => OpCode::Reserved(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            OpCode::Data(Data::Continue) => 0x0,
            OpCode::Data(Data::Text) => 0x1,
            OpCode::Data(Data::Binary) => 0x2,
            OpCode::Control(Control::Close) => 0x8,
            OpCode::Control(Control::Ping) => 0x9,
            OpCode::Control(Control::Pong) => 0xA,
            OpCode::Reserved(bits) => bits & 0x0F,
        }
    }
}

/// One parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    pub opcode: OpCode,
    /// The masking key, present when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV2: u8 = 0x20;
const RSV3: u8 = 0x10;
const OPCODE: u8 = 0x0F;
const MASK: u8 = 0x80;
const LEN7: u8 = 0x7F;

/// The longest header: 2 + 8 (64-bit length) + 4 (masking key).
pub const MAX_HEADER_LEN: usize = 14;

/// A header no frame may have: the 64-bit payload length with its most significant bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedLength;

/// Parses the frame header at the front of `buf`: `Ok(None)` when more bytes are needed,
/// otherwise the header and its length in bytes.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, MalformedLength> {
    let [first, second, rest @ ..] = buf else {
        return Ok(None);
    };
    let (payload_len, rest, len_bytes) = match second & LEN7 {
        126 => match rest {
            [a, b, rest @ ..] => (u64::from(u16::from_be_bytes([*a, *b])), rest, 2),
            _ => return Ok(None),
        },
        127 => match rest.split_first_chunk::<8>() {
            Some((bytes, rest)) => (u64::from_be_bytes(*bytes), rest, 8),
            None => return Ok(None),
        },
        short => (u64::from(short), rest, 0),
    };
    // RFC 6455 §5.2: "the most significant bit MUST be 0" in the 64-bit length.
    if payload_len >> 63 != 0 {
        return Err(MalformedLength);
    }
    let mask = if second & MASK != 0 {
        match rest.first_chunk::<4>() {
            Some(key) => Some(*key),
            None => return Ok(None),
        }
    } else {
        None
    };
    let header = FrameHeader {
        fin: first & FIN != 0,
        rsv1: first & RSV1 != 0,
        rsv2: first & RSV2 != 0,
        rsv3: first & RSV3 != 0,
        opcode: OpCode::from_u8(first & OPCODE),
        mask,
        payload_len,
    };
    let header_len = 2 + len_bytes + if mask.is_some() { 4 } else { 0 };
    Ok(Some((header, header_len)))
}

/// Appends an unmasked (server) frame header with the shortest length encoding.
///
/// RFC 6455 §5.1: "A server MUST NOT mask any frames that it sends to the client."
pub fn write_frame_header(out: &mut Vec<u8>, fin: bool, rsv1: bool, opcode: OpCode, len: u64) {
    let first = (if fin { FIN } else { 0 }) | (if rsv1 { RSV1 } else { 0 }) | opcode.to_u8();
    // RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length".
    if len < 126 {
        out.extend_from_slice(&[first, len as u8]);
    } else if let Ok(len16) = u16::try_from(len) {
        out.extend_from_slice(&[first, 126]);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.extend_from_slice(&[first, 127]);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: Result<Option<(FrameHeader, usize)>, MalformedLength>) {
        assert_eq!(parse_header(input), expected, "{input:02x?}");
    }

    fn header(opcode: OpCode, fin: bool, mask: Option<[u8; 4]>, len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len: len,
        }
    }

    const TEXT: OpCode = OpCode::Data(Data::Text);
    const BINARY: OpCode = OpCode::Data(Data::Binary);

    #[test]
    fn rfc_6455_examples() {
        // §5.7: a single-frame masked text message "Hello".
        check(
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
            Ok(Some((
                header(TEXT, true, Some([0x37, 0xfa, 0x21, 0x3d]), 5),
                6,
            ))),
        );
        // §5.7: the unmasked "Hel" + "lo" fragments.
        check(
            &[0x01, 0x03, b'H'],
            Ok(Some((header(TEXT, false, None, 3), 2))),
        );
        check(
            &[0x80, 0x02, b'l', b'o'],
            Ok(Some((
                header(OpCode::Data(Data::Continue), true, None, 2),
                2,
            ))),
        );
        // §5.7: unmasked ping and masked pong with "Hello".
        check(
            &[0x89, 0x05, b'H'],
            Ok(Some((
                header(OpCode::Control(Control::Ping), true, None, 5),
                2,
            ))),
        );
        check(
            &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f],
            Ok(Some((
                header(
                    OpCode::Control(Control::Pong),
                    true,
                    Some([0x37, 0xfa, 0x21, 0x3d]),
                    5,
                ),
                6,
            ))),
        );
        // §5.7: 256 bytes binary in a single unmasked frame; 64 KiB likewise.
        check(
            &[0x82, 0x7E, 0x01, 0x00],
            Ok(Some((header(BINARY, true, None, 256), 4))),
        );
        check(
            &[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00],
            Ok(Some((header(BINARY, true, None, 65536), 10))),
        );
    }

    #[test]
    fn bits_are_read_with_masks() {
        let (h, len) = parse_header(&[0x7B, 0x80, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!(len, 6);
        assert!(!h.fin && h.rsv1 && h.rsv2 && h.rsv3);
        assert_eq!(h.opcode, OpCode::Reserved(0xB));
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        assert_eq!(h.payload_len, 0);
        for bits in 0..16u8 {
            assert_eq!(OpCode::from_u8(bits).to_u8(), bits);
        }
    }

    #[test]
    fn length_encodings_at_their_edges() {
        check(
            &[0x82, 0xFD, 9, 9, 9, 9],
            Ok(Some((header(BINARY, true, Some([9; 4]), 125), 6))),
        );
        check(
            &[0x82, 0xFE, 0xFF, 0xFF, 9, 9, 9, 9],
            Ok(Some((header(BINARY, true, Some([9; 4]), 65535), 8))),
        );
        let max = [
            0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
        ];
        check(
            &max,
            Ok(Some((
                header(BINARY, true, Some([1, 2, 3, 4]), u64::MAX >> 1),
                14,
            ))),
        );
        // RFC 6455 §5.2: the most significant bit of the 64-bit length MUST be 0.
        check(
            &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            Err(MalformedLength),
        );
    }

    #[test]
    fn every_truncation_is_none() {
        let frames: [&[u8]; 3] = [
            &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d],
            &[0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4],
            &[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4],
        ];
        for frame in frames {
            for cut in 0..frame.len() {
                check(&frame[..cut], Ok(None));
            }
            assert!(matches!(parse_header(frame), Ok(Some((_, len))) if len == frame.len()));
        }
    }

    #[test]
    fn written_headers_use_the_shortest_encoding() {
        let cases: [(u64, &[u8]); 6] = [
            (0, &[0x81, 0x00]),
            (125, &[0x81, 125]),
            (126, &[0x81, 126, 0, 126]),
            (65535, &[0x81, 126, 0xFF, 0xFF]),
            (65536, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            (1 << 40, &[0x81, 127, 0, 0, 1, 0, 0, 0, 0, 0]),
        ];
        for (len, expected) in cases {
            let mut out = Vec::new();
            write_frame_header(&mut out, true, false, TEXT, len);
            assert_eq!(out, expected, "len {len}");
            let parsed = parse_header(&out).unwrap().unwrap();
            assert_eq!(parsed, (header(TEXT, true, None, len), expected.len()));
        }
        let mut out = Vec::new();
        write_frame_header(&mut out, true, true, BINARY, 7);
        assert_eq!(out, [0xC2, 0x07]);
        out.clear();
        write_frame_header(&mut out, false, false, OpCode::Control(Control::Pong), 0);
        assert_eq!(out, [0x0A, 0x00]);
    }
}
