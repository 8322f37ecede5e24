//! permessage-deflate (RFC 7692): negotiating the extension and compressing whole messages.
//!
//! This file owns the offer/response rules of §7 and the per-message codec of §7.2. It never
//! keeps compression state between messages: percore always answers with
//! `server_no_context_takeover` and `client_no_context_takeover`, so one [`Codec`] per worker,
//! reset after every message, serves every connection of that worker.
//!
//! Why that answer is valid for every offer:
//! - §7.1.1.1: "A server MAY include the "server_no_context_takeover" extension parameter in an
//!   extension negotiation response even if the extension negotiation offer being accepted by
//!   the response didn't include" it.
//! - §7.1.1.2: "A server MAY include the "client_no_context_takeover" extension parameter in an
//!   extension negotiation response." Then the client must not refer to earlier messages, and
//!   the server "MAY decompress each new message with an empty LZ77 sliding window".
//! - The decompressor always uses a 15-bit window, which reads data compressed with any
//!   smaller window, so `client_max_window_bits` (with or without a value) is never answered:
//!   §7.1.2.2 "the server MAY include" it; its absence means the server takes up to 32,768 bytes.
//! - `server_max_window_bits=N` is answered with the same N (§7.1.2.1: "A server accepts an
//!   extension negotiation offer with this parameter by including the "server_max_window_bits"
//!   extension parameter in the extension negotiation response ... with the same or smaller
//!   value"). zlib cannot compress raw deflate with an 8-bit window (it silently uses 9, whose
//!   back-references a 256-byte window cannot resolve), so with N = 8 the server accepts and
//!   sends every message uncompressed (RSV1 clear), which §6 allows per message.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The agreed parameters of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// The window the server compresses with (8 means: never compress).
    pub server_max_window_bits: u8,
    /// The largest window the client may use (informational: the server inflates with 15).
    pub client_max_window_bits: u8,
}

/// The outcome of negotiation: the agreed parameters and whether the response must name
/// `server_max_window_bits` (exactly when the accepted offer did).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub params: DeflateParams,
    pub answer_server_bits: bool,
}

const EXTENSION: &[u8] = b"permessage-deflate";

/// Walks every offer of every `Sec-WebSocket-Extensions` value in order and accepts the first
/// valid permessage-deflate offer.
///
/// §7: "A server MUST decline an extension negotiation offer for this extension if any of the
/// following conditions are met: The negotiation offer contains an extension parameter not
/// defined for use in an offer. The negotiation offer contains an extension parameter with an
/// invalid value. The negotiation offer contains multiple extension parameters with the same
/// name. The server doesn't support the offered configuration."
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a [u8]>) -> Option<Negotiated> {
    header_values
        .into_iter()
        .flat_map(|value| split_unquoted(value, b','))
        .find_map(parse_offer)
}

/// One list element: `Some` for a valid permessage-deflate offer, `None` for anything else
/// (another extension, an empty element, or a declined offer).
fn parse_offer(element: &[u8]) -> Option<Negotiated> {
    let mut parts = split_unquoted(element, b';');
    let name = parts.next().map(trim)?;
    if !name.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen = [false; 4];
    let mut server_bits = None;
    let mut client_bits = None;
    for param in parts {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => {
                let (name, value) = param.split_at(eq);
                (trim(name), Some(trim(value.get(1..).unwrap_or_default())))
            }
            None => (trim(param), None),
        };
        let index = PARAMS
            .iter()
            .position(|known| name.eq_ignore_ascii_case(known))?;
        if std::mem::replace(seen.get_mut(index)?, true) {
            return None;
        }
        match (index, value) {
            (SERVER_NO_CONTEXT_TAKEOVER | CLIENT_NO_CONTEXT_TAKEOVER, None) => {}
            (SERVER_MAX_WINDOW_BITS, Some(value)) => server_bits = Some(window_bits(value)?),
            (CLIENT_MAX_WINDOW_BITS, None) => {}
            (CLIENT_MAX_WINDOW_BITS, Some(value)) => client_bits = Some(window_bits(value)?),
            _ => return None,
        }
    }
    Some(Negotiated {
        params: DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: server_bits.unwrap_or(15),
            client_max_window_bits: client_bits.unwrap_or(15),
        },
        answer_server_bits: server_bits.is_some(),
    })
}

const PARAMS: [&[u8]; 4] = [
    b"server_no_context_takeover",
    b"client_no_context_takeover",
    b"server_max_window_bits",
    b"client_max_window_bits",
];
const SERVER_NO_CONTEXT_TAKEOVER: usize = 0;
const CLIENT_NO_CONTEXT_TAKEOVER: usize = 1;
const SERVER_MAX_WINDOW_BITS: usize = 2;
const CLIENT_MAX_WINDOW_BITS: usize = 3;

/// §7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15, inclusive".
/// RFC 6455 §9.1: a quoted value "after quoted-string unescaping MUST conform to the 'token'
/// ABNF", so `"10"` means 10.
fn window_bits(value: &[u8]) -> Option<u8> {
    let mut unquoted = [0u8; 2];
    let digits: &[u8] = match value {
        [b'"', inner @ .., b'"'] => {
            let mut len = 0;
            let mut escaped = false;
            for &b in inner {
                if b == b'\\' && !escaped {
                    escaped = true;
                    continue;
                }
                escaped = false;
                *unquoted.get_mut(len)? = b;
                len += 1;
            }
            unquoted.get(..len)?
        }
        _ => value,
    };
    match digits {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// The `Sec-WebSocket-Extensions` value answering an accepted offer (§7.1).
pub fn response_value(negotiated: &Negotiated, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    );
    if negotiated.answer_server_bits {
        out.extend_from_slice(b"; server_max_window_bits=");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(negotiated.params.server_max_window_bits)
                .as_bytes(),
        );
    }
}

/// Splits on `sep` outside double-quoted strings.
fn split_unquoted(s: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in s.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                _ if b == sep && !quoted => {
                    let (element, after) = s.split_at(i);
                    rest = after.get(1..);
                    return Some(element);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// §7.2.1: "Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail end."
/// §7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of the payload".
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Level 1: the echo path favours speed over ratio.
const LEVEL: u32 = 1;

/// Scratch buffers above this capacity are released after a message.
const SCRATCH_KEEP: usize = 256 * 1024;

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message would exceed the limit (a zip bomb): close 1009.
    TooBig,
    /// The data is not a valid DEFLATE stream: close 1007. RFC 7692 names no code; the payload
    /// is "not consistent with the type of the message" (RFC 6455 §7.4.1), and Autobahn has no
    /// case for it.
    Invalid,
}

/// The per-worker compressor and decompressor (raw deflate), reset after every message.
pub struct Codec {
    /// Index `bits - 9`: one compressor per window size, created on first use.
    compressors: [Option<Compress>; 7],
    decompressor: Option<Decompress>,
    /// Scratch for the inflated message; lent to the session while a message is echoed.
    pub(super) inflated: Vec<u8>,
    /// Scratch for the compressed echo.
    pub(super) deflated: Vec<u8>,
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Codec {
    pub fn new() -> Codec {
        Codec {
            compressors: Default::default(),
            decompressor: None,
            inflated: Vec::new(),
            deflated: Vec::new(),
        }
    }

    /// Compresses one whole message with a 15-bit window (§7.2.1), appending to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.compress_with_window(15, payload, out);
    }

    /// Compresses one whole message with `window_bits` (clamped to zlib's 9..=15): raw
    /// deflate, sync flush, the trailing 00 00 ff ff removed. Returns false (leaving `out` as
    /// it was) if zlib fails, which it does not on valid input.
    pub fn compress_with_window(
        &mut self,
        window_bits: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let bits = window_bits.clamp(9, 15);
        let slot = usize::from(bits - 9);
        let Some(compressor) = self.compressors.get_mut(slot) else {
            return false;
        };
        let compressor = compressor.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(LEVEL), false, bits)
        });
        let start = out.len();
        let done = deflate_all(compressor, payload, out);
        compressor.reset();
        if done && out.get(start..).is_some_and(|c| c.ends_with(&TAIL)) {
            out.truncate(out.len() - TAIL.len());
            true
        } else {
            out.truncate(start);
            false
        }
    }

    /// Inflates one whole message (§7.2.2), appending at most `limit` bytes to `out`.
    /// On error `out` is left as it was.
    pub fn decompress(
        &mut self,
        payload: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let decompressor = self
            .decompressor
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
        let start = out.len();
        let result = inflate_all(decompressor, [payload, &TAIL], start, limit, out);
        decompressor.reset(false);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Releases scratch buffers that grew for a large message.
    pub(super) fn trim_scratch(&mut self) {
        for buf in [&mut self.inflated, &mut self.deflated] {
            buf.clear();
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
        }
    }

    /// An estimate of the heap this codec holds: zlib's deflate state for memLevel 8 is about
    /// 2^(w+2) (window and chain) + 128 KiB (hash heads and pending buffer) per compressor,
    /// inflate about 32 KiB of window plus 10 KiB of tables, plus the scratch buffers.
    #[cfg(test)]
    pub fn heap_estimate(&self) -> usize {
        let compressors: usize = (9..=15usize)
            .zip(&self.compressors)
            .filter(|(_, c)| c.is_some())
            .map(|(bits, _)| (1 << (bits + 2)) + 128 * 1024)
            .sum();
        let decompressor = if self.decompressor.is_some() {
            42 * 1024
        } else {
            0
        };
        compressors + decompressor + self.inflated.capacity() + self.deflated.capacity()
    }
}

fn deflate_all(compressor: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> bool {
    let mut consumed = 0;
    loop {
        let rest = payload.get(consumed..).unwrap_or_default();
        out.reserve(rest.len() + rest.len() / 8 + 64);
        let (before_in, before_out) = (compressor.total_in(), out.len());
        if compressor
            .compress_vec(rest, out, FlushCompress::Sync)
            .is_err()
        {
            return false;
        }
        let progressed = compressor.total_in() - before_in;
        if progressed == 0 && out.len() == before_out {
            return false;
        }
        consumed += progressed as usize;
        // Spare room left after a sync flush means zlib has written everything.
        if consumed >= payload.len() && out.len() < out.capacity() {
            return true;
        }
    }
}

fn inflate_all(
    decompressor: &mut Decompress,
    inputs: [&[u8]; 2],
    start: usize,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    for input in inputs {
        let mut consumed = 0;
        loop {
            let produced = out.len() - start;
            if produced > limit {
                return Err(InflateError::TooBig);
            }
            // Room for one byte past the limit is enough to detect a bomb; growth is gradual.
            let rest = input.get(consumed..).unwrap_or_default();
            let want = (rest.len() * 4).max(4096);
            out.reserve(want.min((limit - produced).saturating_add(1)));
            let (before_in, before_out) = (decompressor.total_in(), out.len());
            let status = decompressor
                .decompress_vec(rest, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Invalid)?;
            let progressed = decompressor.total_in() - before_in;
            consumed += progressed as usize;
            let stalled = progressed == 0 && out.len() == before_out;
            if out.len() - start > limit {
                return Err(InflateError::TooBig);
            }
            match status {
                // A final block ends the stream; the appended tail is then not needed.
                Status::StreamEnd => return Ok(()),
                _ if consumed >= input.len() && out.len() < out.capacity() => break,
                // No progress with input left and room to write: the data cannot go on.
                _ if stalled => return Err(InflateError::Invalid),
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::testing::noise;

    fn offer(values: &[&str]) -> Option<Negotiated> {
        negotiate(values.iter().map(|v| v.as_bytes()))
    }

    fn check(values: &[&str], expected: Option<(u8, u8, bool)>) {
        let got = offer(values).map(|n| {
            assert!(n.params.server_no_context_takeover && n.params.client_no_context_takeover);
            (
                n.params.server_max_window_bits,
                n.params.client_max_window_bits,
                n.answer_server_bits,
            )
        });
        assert_eq!(got, expected, "{values:?}");
    }

    fn response(values: &[&str]) -> String {
        let mut out = Vec::new();
        response_value(&offer(values).unwrap(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn browser_offers_are_accepted() {
        // Firefox.
        check(&["permessage-deflate"], Some((15, 15, false)));
        // Chrome.
        check(
            &["permessage-deflate; client_max_window_bits"],
            Some((15, 15, false)),
        );
        assert_eq!(
            response(&["permessage-deflate; client_max_window_bits"]),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        // Safari and others.
        check(
            &["permessage-deflate; client_no_context_takeover; server_no_context_takeover"],
            Some((15, 15, false)),
        );
    }

    #[test]
    fn window_bits_offers() {
        check(
            &["permessage-deflate; server_max_window_bits=10"],
            Some((10, 15, true)),
        );
        assert_eq!(
            response(&["permessage-deflate; server_max_window_bits=8"]),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8"
        );
        check(
            &["permessage-deflate; client_max_window_bits=9"],
            Some((15, 9, false)),
        );
        check(
            &["permessage-deflate; server_max_window_bits=\"12\""],
            Some((12, 15, true)),
        );
        check(
            &["permessage-deflate;server_max_window_bits = 15 ; client_max_window_bits=8"],
            Some((15, 8, true)),
        );
    }

    #[test]
    fn invalid_offers_are_declined() {
        let declined = [
            "permessage-deflate; foo",
            "permessage-deflate; foo=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=\"1\\0\"0",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate;",
            "x-webkit-deflate-frame",
            "",
        ];
        for value in declined {
            check(&[value], None);
        }
    }

    #[test]
    fn first_valid_offer_wins_across_lines() {
        // Autobahn 13.7.x style: several offers in one value.
        check(
            &["permessage-deflate; server_max_window_bits=99, permessage-deflate; server_max_window_bits=9, permessage-deflate"],
            Some((9, 15, true)),
        );
        check(
            &[
                "foo, bar; x=\"a,b\"",
                "permessage-deflate; foo",
                "permessage-deflate",
            ],
            Some((15, 15, false)),
        );
        check(
            &[
                "foo",
                "permessage-deflate; client_max_window_bits=10, permessage-deflate",
            ],
            Some((15, 10, false)),
        );
    }

    fn round_trip(codec: &mut Codec, payload: &[u8], bits: u8) {
        let mut compressed = Vec::new();
        assert!(codec.compress_with_window(bits, payload, &mut compressed));
        assert!(!compressed.ends_with(&TAIL) || payload.is_empty());
        let mut inflated = b"prefix".to_vec();
        assert_eq!(
            codec.decompress(&compressed, payload.len(), &mut inflated),
            Ok(())
        );
        assert_eq!(
            &inflated[6..],
            payload,
            "bits {bits}, len {}",
            payload.len()
        );
    }

    #[test]
    fn compress_round_trips() {
        let mut codec = Codec::new();
        let text: Vec<u8> = b"Hello, percore! "
            .iter()
            .cycle()
            .take(100_000)
            .copied()
            .collect();
        let noise = noise(70_000);
        for bits in 9..=15 {
            for payload in [&b""[..], b"a", b"Hello", &text[..], &noise[..]] {
                round_trip(&mut codec, payload, bits);
            }
        }
        assert!(codec.heap_estimate() > 7 * 128 * 1024);
    }

    #[test]
    fn rfc_7692_hello_examples() {
        let mut codec = Codec::new();
        // §7.2.3.1: "Hello" compressed is 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00.
        let mut out = Vec::new();
        assert_eq!(
            codec.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, &mut out),
            Ok(())
        );
        assert_eq!(out, b"Hello");
        // §7.2.3.3: uncompressed (stored) DEFLATE block.
        out.clear();
        assert_eq!(
            codec.decompress(
                &[0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00],
                100,
                &mut out
            ),
            Ok(())
        );
        assert_eq!(out, b"Hello");
        // §7.2.3.4: a block with BFINAL set.
        out.clear();
        assert_eq!(
            codec.decompress(
                &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
                100,
                &mut out
            ),
            Ok(())
        );
        assert_eq!(out, b"Hello");
        // Our own compressor at the default level produces a valid stream for "Hello".
        out.clear();
        codec.compress(b"Hello", &mut out);
        let mut back = Vec::new();
        assert_eq!(codec.decompress(&out, 5, &mut back), Ok(()));
        assert_eq!(back, b"Hello");
        // The codec was reset: the same message decodes the same way again (no shared window).
        back.clear();
        assert_eq!(
            codec.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 5, &mut back),
            Ok(())
        );
        assert_eq!(back, b"Hello");
    }

    #[test]
    fn zip_bomb_and_corrupt_data() {
        let mut codec = Codec::new();
        let zeros = vec![0u8; 10 << 20];
        let mut bomb = Vec::new();
        codec.compress(&zeros, &mut bomb);
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        let mut out = b"keep".to_vec();
        assert_eq!(
            codec.decompress(&bomb, 1 << 20, &mut out),
            Err(InflateError::TooBig)
        );
        assert_eq!(out, b"keep");
        assert!(out.capacity() < 4 << 20, "{}", out.capacity());
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        assert_eq!(codec.decompress(&bomb, 10 << 20, &mut out), Ok(()));
        assert_eq!(out.len(), 10 << 20);
        // 0xff is an invalid block type (BTYPE=11).
        let mut out = Vec::new();
        assert_eq!(
            codec.decompress(&[0xff, 0xff, 0xff], 100, &mut out),
            Err(InflateError::Invalid)
        );
        assert!(out.is_empty());
        // The codec recovers for the next message.
        assert_eq!(
            codec.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 5, &mut out),
            Ok(())
        );
        assert_eq!(out, b"Hello");
    }
}
