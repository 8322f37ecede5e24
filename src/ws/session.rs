//! One WebSocket connection's protocol state machine, with the echo application built in.
//!
//! This file owns the frame-sequence rules of RFC 6455 §5 (masking, RSV bits, opcodes,
//! fragmentation, control frames), message limits, UTF-8 checks of text, the close handshake
//! (§7) and when to (de)compress. It never holds a buffer between messages: payload bytes are
//! unmasked in place in the caller's input, a whole unfragmented message is echoed straight
//! from there, and only a message that spans frames or reads borrows a buffer until it ends.

use std::mem;

use super::close::{parse_close_payload, write_close, ClientClose, CloseCode};
use super::deflate::{Codec, DeflateParams, InflateError};
use super::frame::{
    parse_header, write_frame_header, Control, Data, FrameHeader, MalformedLength, OpCode,
    MAX_HEADER_LEN,
};
use super::mask::{apply_mask, extend_unmasked};
use super::utf8::{InvalidUtf8, Utf8Validator};
use super::WsConfig;

/// The largest control frame (header with mask + 125 bytes): the input buffer must hold it.
pub const MIN_INPUT_BUFFER: usize = MAX_HEADER_LEN + 125;

/// `receive` stops taking frames once `out` holds this much; the caller flushes and calls again.
pub const OUT_SOFT_LIMIT: usize = 256 * 1024;

/// Echoes shorter than this are sent uncompressed: DEFLATE rarely shrinks them.
const COMPRESS_MIN: usize = 64;

/// RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
const MAX_CONTROL_PAYLOAD: u64 = 125;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    /// The server sent a close frame and waits for the client's.
    Closing,
    /// The close handshake is complete or the connection failed: flush `out`, then close TCP.
    Closed,
}

/// Counters since the last [`Session::stats`] call; payload bytes are message bytes as the
/// application sees them (after inflating).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WsStats {
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The status code of the close frame the server sent (`Some(1005)` for an empty one).
    pub close_sent: Option<u16>,
    /// The status code of the client's close frame (`Some(1005)` for an empty one).
    pub close_received: Option<u16>,
}

/// RFC 6455 §7.1.5: 1005 stands for a close frame "that contains no status code".
const NO_STATUS: u16 = 1005;

/// What one `receive` call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes to drop from the front of the input.
    pub consumed: usize,
    pub state: State,
    /// Complete frames were left unread because `out` reached [`OUT_SOFT_LIMIT`].
    pub more: bool,
}

/// The data message whose frames are being received.
#[derive(Clone, Copy, Debug)]
struct Message {
    text: bool,
    compressed: bool,
}

/// A data frame whose payload has not all arrived yet.
#[derive(Clone, Copy, Debug)]
struct PartialFrame {
    remaining: u64,
    key: [u8; 4],
    /// Payload bytes already unmasked, modulo 4.
    offset: u8,
    fin: bool,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    max_message: usize,
    max_frame: usize,
    whole_frame_max: usize,
    deflate: Option<DeflateParams>,
    state: State,
    message: Option<Message>,
    frame: Option<PartialFrame>,
    /// The payload of `message` so far; empty (unallocated) between messages.
    buffer: Vec<u8>,
    /// The incremental check of the message being assembled, or of the text frame that
    /// waits whole in the input.
    utf8: Utf8Validator,
    /// Payload bytes of the text frame waiting whole in the input that `utf8` has checked, so
    /// that invalid UTF-8 fails at the bad byte while the rest is on its way; 0 when no frame
    /// waits (or none of it is checked yet).
    held_checked: usize,
    stats: WsStats,
    /// The client's close frame arrived: it will send nothing more.
    client_closed: bool,
}

enum Step {
    Consumed(usize),
    NeedMore,
}

impl Session {
    pub fn new(cfg: &WsConfig, deflate: Option<DeflateParams>) -> Session {
        Session {
            max_message: cfg.max_message,
            max_frame: cfg.max_frame.min(cfg.max_message),
            whole_frame_max: cfg.whole_frame_max,
            deflate,
            state: State::Open,
            message: None,
            frame: None,
            buffer: Vec::new(),
            utf8: Utf8Validator::new(),
            held_checked: 0,
            stats: WsStats::default(),
            client_closed: false,
        }
    }

    /// Consumes the frames at the front of `input` (unmasking payloads in place) and appends
    /// every server frame to `out`: echoes, pongs and close frames.
    pub fn receive(&mut self, input: &mut [u8], out: &mut Vec<u8>, codec: &mut Codec) -> Received {
        let mut pos = 0;
        let mut more = false;
        while self.state != State::Closed {
            if out.len() >= OUT_SOFT_LIMIT {
                more = pos < input.len();
                break;
            }
            let rest = input.get_mut(pos..).unwrap_or_default();
            let step = if self.frame.is_some() {
                self.continue_frame(rest, out, codec)
            } else {
                self.next_frame(rest, out, codec)
            };
            match step {
                Step::Consumed(n) => pos += n,
                Step::NeedMore => break,
            }
        }
        if self.state == State::Closed {
            pos = input.len();
        }
        Received {
            consumed: pos,
            state: self.state,
            more,
        }
    }

    /// Starts the closing handshake (1000 normal, 1001 going away); afterwards `receive` only
    /// waits for the client's close frame.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut Vec<u8>) {
        if self.state == State::Open {
            write_close(out, Some(CloseCode(code)), reason);
            self.stats.close_sent = Some(code);
            self.state = State::Closing;
            self.drop_message();
        }
    }

    /// Appends a ping (payload cut to 125 bytes) while the connection is open.
    pub fn ping(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if self.state == State::Open {
            let payload = payload.get(..125).unwrap_or(payload);
            write_frame_header(
                out,
                true,
                false,
                OpCode::Control(Control::Ping),
                payload.len() as u64,
            );
            out.extend_from_slice(payload);
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the client sent its close frame (§5.5.1: it then sends nothing more). A session
    /// that is Closed without it failed, and the client may still be sending.
    pub fn client_closed(&self) -> bool {
        self.client_closed
    }

    /// Takes the counters and resets them.
    pub fn stats(&mut self) -> WsStats {
        mem::take(&mut self.stats)
    }

    /// Whether a message is being assembled (its buffer is held).
    #[cfg(test)]
    pub fn is_assembling(&self) -> bool {
        self.message.is_some() || self.frame.is_some()
    }

    fn next_frame(&mut self, rest: &mut [u8], out: &mut Vec<u8>, codec: &mut Codec) -> Step {
        let (header, header_len) = match parse_header(rest) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Step::NeedMore,
            // §5.2: "the most significant bit MUST be 0" in a 64-bit length.
            Err(MalformedLength) => return self.fail(CloseCode::PROTOCOL_ERROR, out),
        };
        if self.state == State::Closing {
            return self.skim_frame(&header, header_len, rest);
        }
        let key = match self.check_header(&header) {
            Ok(key) => key,
            Err(code) => return self.fail(code, out),
        };
        match header.opcode {
            OpCode::Control(control) => {
                let total = header_len + header.payload_len as usize;
                let Some(frame) = rest.get_mut(..total) else {
                    return Step::NeedMore;
                };
                let payload = frame.get_mut(header_len..).unwrap_or_default();
                apply_mask(payload, key, 0);
                self.control(control, payload, out);
                Step::Consumed(total)
            }
            OpCode::Data(data) => self.start_data(data, &header, header_len, key, rest, out, codec),
            OpCode::Reserved(_) => self.fail(CloseCode::PROTOCOL_ERROR, out),
        }
    }

    /// Applies the per-frame rules of RFC 6455 §5 and returns the masking key.
    fn check_header(&self, header: &FrameHeader) -> Result<[u8; 4], CloseCode> {
        // §5.1: "The server MUST close the connection upon receiving a frame that is not
        // masked. In this case, a server MAY send a Close frame with a status code of 1002".
        let key = header.mask.ok_or(CloseCode::PROTOCOL_ERROR)?;
        // §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings for
        // non-zero values". RFC 7692 §6: RSV1 marks the first frame of a compressed message;
        // "An endpoint MUST NOT set the "Per-Message Compressed" bit of control frames and
        // non-first fragments of a data message."
        let starts_message = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
        if header.rsv2
            || header.rsv3
            || (header.rsv1 && !(self.deflate.is_some() && starts_message))
        {
            return Err(CloseCode::PROTOCOL_ERROR);
        }
        match header.opcode {
            // §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the
            // WebSocket Connection_."
            OpCode::Reserved(_) => Err(CloseCode::PROTOCOL_ERROR),
            // §5.5: control frames "MUST have a payload length of 125 bytes or less and MUST
            // NOT be fragmented."
            OpCode::Control(_) if !header.fin || header.payload_len > MAX_CONTROL_PAYLOAD => {
                Err(CloseCode::PROTOCOL_ERROR)
            }
            OpCode::Control(_) => Ok(key),
            OpCode::Data(data) => {
                // §5.4: a fragmented message is one first frame, then only continuations;
                // "Control frames MAY be injected in the middle of a fragmented message", data
                // frames may not.
                if (data == Data::Continue) != self.message.is_some() {
                    return Err(CloseCode::PROTOCOL_ERROR);
                }
                // Limits are checked on the declared length, before any memory is taken.
                let so_far = self.buffer.len() as u64;
                if header.payload_len > self.max_frame as u64
                    || so_far + header.payload_len > self.max_message as u64
                {
                    return Err(CloseCode::TOO_BIG);
                }
                Ok(key)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_data(
        &mut self,
        data: Data,
        header: &FrameHeader,
        header_len: usize,
        key: [u8; 4],
        rest: &mut [u8],
        out: &mut Vec<u8>,
        codec: &mut Codec,
    ) -> Step {
        // check_header bounded the length by max_frame, a usize.
        let len = header.payload_len as usize;
        let total = header_len.saturating_add(len);
        let message = match (data, self.message) {
            (Data::Continue, Some(message)) => message,
            (data, _) => Message {
                text: data == Data::Text,
                compressed: header.rsv1,
            },
        };
        // The fast path: a whole unfragmented message, echoed straight from the input. One
        // that is not all there yet but fits the input waits for the rest there: taken piece
        // by piece it would be copied into the message buffer first, in a growing allocation
        // (under a 16 KiB echo load, read 64 KiB at a time, a quarter of the messages).
        if data != Data::Continue && header.fin {
            if let Some(payload) = rest.get_mut(header_len..total) {
                self.held_checked = 0;
                if message.compressed || self.compress_window(len).is_some() {
                    apply_mask(payload, key, 0);
                    let check_utf8 = message.text && !message.compressed;
                    self.deliver(message, payload, check_utf8, out, codec);
                } else {
                    self.echo_unmasking(message.text, payload, key, out);
                }
                return Step::Consumed(total);
            }
            if total <= self.whole_frame_max {
                // Uncompressed text is checked as it arrives all the same, so that invalid
                // UTF-8 fails the connection at the bad byte (Autobahn's 6.4 cases).
                let arrived = rest.get(header_len..).unwrap_or_default();
                if message.text && !message.compressed {
                    if let Err(InvalidUtf8) = self.check_arrived_text(arrived, key) {
                        return self.fail(CloseCode::INVALID_DATA, out);
                    }
                }
                return Step::NeedMore;
            }
        }
        if data != Data::Continue {
            self.message = Some(message);
            self.utf8 = Utf8Validator::new();
        }
        self.frame = Some(PartialFrame {
            remaining: header.payload_len,
            key,
            offset: 0,
            fin: header.fin,
        });
        Step::Consumed(header_len)
    }

    /// Checks the payload bytes of the text frame waiting whole in the input that arrived
    /// since the last look, unmasked into a copy: the input keeps them masked for the
    /// one-pass echo. The frame stays at the front of the input until it is whole, and
    /// `held_checked` goes back to 0 then (or when the message is dropped), so the count
    /// always belongs to this frame.
    fn check_arrived_text(&mut self, arrived: &[u8], key: [u8; 4]) -> Result<(), InvalidUtf8> {
        if self.held_checked == 0 {
            self.utf8 = Utf8Validator::new();
        }
        let mut scratch = [0u8; 1024];
        let new = arrived.get(self.held_checked..).unwrap_or_default();
        for piece in new.chunks(scratch.len()) {
            let unmasked = scratch.get_mut(..piece.len()).unwrap_or_default();
            unmasked.copy_from_slice(piece);
            apply_mask(unmasked, key, self.held_checked % 4);
            self.utf8.feed(unmasked)?;
            self.held_checked += piece.len();
        }
        Ok(())
    }

    /// Takes the next piece of the current data frame's payload.
    fn continue_frame(&mut self, rest: &mut [u8], out: &mut Vec<u8>, codec: &mut Codec) -> Step {
        let Some(mut frame) = self.frame else {
            return Step::NeedMore;
        };
        let take = usize::try_from(frame.remaining)
            .unwrap_or(usize::MAX)
            .min(rest.len());
        if take == 0 && frame.remaining > 0 {
            return Step::NeedMore;
        }
        let chunk = rest.get_mut(..take).unwrap_or_default();
        frame.remaining -= take as u64;
        self.frame = (frame.remaining > 0).then_some(PartialFrame {
            offset: ((usize::from(frame.offset) + take) % 4) as u8,
            ..frame
        });
        // While closing, data is skipped unread.
        let Some(message) = self.message.filter(|_| self.state == State::Open) else {
            return Step::Consumed(take);
        };
        apply_mask(chunk, frame.key, usize::from(frame.offset));
        // Uncompressed text is checked piece by piece, so invalid UTF-8 fails fast.
        if message.text && !message.compressed && self.utf8.feed(chunk).is_err() {
            return self.fail(CloseCode::INVALID_DATA, out);
        }
        self.buffer.extend_from_slice(chunk);
        if frame.remaining == 0 && frame.fin {
            self.finish_message(message, out, codec);
        }
        Step::Consumed(take)
    }

    fn finish_message(&mut self, message: Message, out: &mut Vec<u8>, codec: &mut Codec) {
        self.message = None;
        let buffer = mem::take(&mut self.buffer);
        if message.text && !message.compressed && self.utf8.finish().is_err() {
            self.fail(CloseCode::INVALID_DATA, out);
            return;
        }
        self.deliver(message, &buffer, false, out, codec);
    }

    /// Handles one whole message: inflates it if compressed, checks text, echoes it.
    fn deliver(
        &mut self,
        message: Message,
        payload: &[u8],
        check_utf8: bool,
        out: &mut Vec<u8>,
        codec: &mut Codec,
    ) {
        if !message.compressed {
            if check_utf8 && simdutf8::basic::from_utf8(payload).is_err() {
                self.fail(CloseCode::INVALID_DATA, out);
                return;
            }
            self.count_in(payload.len());
            self.echo(message.text, payload, out, codec);
            return;
        }
        let mut inflated = mem::take(&mut codec.inflated);
        inflated.clear();
        match codec.decompress(payload, self.max_message, &mut inflated) {
            Err(InflateError::TooBig) => {
                self.fail(CloseCode::TOO_BIG, out);
            }
            Err(InflateError::Invalid) => {
                self.fail(CloseCode::INVALID_DATA, out);
            }
            Ok(()) if message.text && simdutf8::basic::from_utf8(&inflated).is_err() => {
                self.fail(CloseCode::INVALID_DATA, out);
            }
            Ok(()) => {
                self.count_in(inflated.len());
                self.echo(message.text, &inflated, out, codec);
            }
        }
        codec.inflated = inflated;
        codec.trim_scratch();
    }

    fn count_in(&mut self, len: usize) {
        self.stats.messages_in += 1;
        self.stats.bytes_in += len as u64;
    }

    /// [`Session::deliver`] of a whole uncompressed message whose echo is not compressed
    /// either, in one pass: the payload is unmasked straight into its echo frame. Unmasking it
    /// in place and then copying it read and wrote every byte twice, and a zero fill before
    /// a masked copy wrote it twice (`compare.sh ws16k`: −4 % server CPU per message against
    /// the first, −2 % against the second). Text is checked where it landed.
    fn echo_unmasking(&mut self, text: bool, masked: &[u8], key: [u8; 4], out: &mut Vec<u8>) {
        let start = out.len();
        let opcode = OpCode::Data(if text { Data::Text } else { Data::Binary });
        write_frame_header(out, true, false, opcode, masked.len() as u64);
        let body = out.len();
        extend_unmasked(out, masked, key);
        let payload = out.get(body..).unwrap_or_default();
        if text && simdutf8::basic::from_utf8(payload).is_err() {
            out.truncate(start);
            self.fail(CloseCode::INVALID_DATA, out);
            return;
        }
        self.count_in(masked.len());
        self.count_out(masked.len());
    }

    fn count_out(&mut self, len: usize) {
        self.stats.messages_out += 1;
        self.stats.bytes_out += len as u64;
    }

    /// The window an echo of `len` bytes is compressed with, if it is offered to the
    /// compressor: compression was negotiated with a window it can use (at least 9 bits) and
    /// the message is long enough to gain.
    fn compress_window(&self, len: usize) -> Option<u8> {
        let window = self.deflate.map_or(0, |d| d.server_max_window_bits);
        (window >= 9 && len >= COMPRESS_MIN).then_some(window)
    }

    /// Sends `payload` back as one frame, compressed when negotiated, possible (window of at
    /// least 9 bits) and smaller; RFC 7692 leaves compression a per-message choice.
    fn echo(&mut self, text: bool, payload: &[u8], out: &mut Vec<u8>, codec: &mut Codec) {
        let opcode = OpCode::Data(if text { Data::Text } else { Data::Binary });
        self.count_out(payload.len());
        if let Some(window) = self.compress_window(payload.len()) {
            let mut deflated = mem::take(&mut codec.deflated);
            deflated.clear();
            let shrank = codec.compress_with_window(window, payload, &mut deflated)
                && deflated.len() < payload.len();
            if shrank {
                write_frame_header(out, true, true, opcode, deflated.len() as u64);
                out.extend_from_slice(&deflated);
            }
            codec.deflated = deflated;
            codec.trim_scratch();
            if shrank {
                return;
            }
        }
        write_frame_header(out, true, false, opcode, payload.len() as u64);
        out.extend_from_slice(payload);
    }

    fn control(&mut self, control: Control, payload: &[u8], out: &mut Vec<u8>) {
        match control {
            // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
            // response ... The Pong frame MUST have identical "Application data"".
            Control::Ping => {
                write_frame_header(
                    out,
                    true,
                    false,
                    OpCode::Control(Control::Pong),
                    payload.len() as u64,
                );
                out.extend_from_slice(payload);
            }
            // §5.5.3: "A response to an unsolicited Pong frame is not expected."
            Control::Pong => {}
            // §5.5.1: "If an endpoint receives a Close frame and did not previously send a
            // Close frame, the endpoint MUST send a Close frame in response. (When sending a
            // Close frame in response, the endpoint typically echos the status code it
            // received.)"
            Control::Close => match parse_close_payload(payload) {
                ClientClose::Empty => {
                    self.client_closed = true;
                    self.stats.close_received = Some(NO_STATUS);
                    self.stats.close_sent = Some(NO_STATUS);
                    write_close(out, None, "");
                    self.closed();
                }
                ClientClose::Code(code) => {
                    self.client_closed = true;
                    self.stats.close_received = Some(code.0);
                    self.stats.close_sent = Some(code.0);
                    write_close(out, Some(code), "");
                    self.closed();
                }
                ClientClose::Invalid(code) => {
                    self.fail(code, out);
                }
            },
        }
    }

    /// While closing: find the client's close frame, skip everything else (§5.5.1: "After
    /// sending a Close frame, the endpoint MUST NOT send any further data frames").
    fn skim_frame(&mut self, header: &FrameHeader, header_len: usize, rest: &mut [u8]) -> Step {
        match header.opcode {
            OpCode::Data(_) => {
                self.frame = Some(PartialFrame {
                    remaining: header.payload_len,
                    key: [0; 4],
                    offset: 0,
                    fin: header.fin,
                });
                Step::Consumed(header_len)
            }
            OpCode::Control(control) if header.payload_len <= MAX_CONTROL_PAYLOAD => {
                let total = header_len + header.payload_len as usize;
                let Some(frame) = rest.get_mut(..total) else {
                    return Step::NeedMore;
                };
                if control == Control::Close {
                    let payload = frame.get_mut(header_len..).unwrap_or_default();
                    apply_mask(payload, header.mask.unwrap_or_default(), 0);
                    self.stats.close_received = Some(match payload {
                        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                        _ => NO_STATUS,
                    });
                    self.client_closed = true;
                    self.closed();
                }
                Step::Consumed(total)
            }
            _ => {
                self.closed();
                Step::Consumed(0)
            }
        }
    }

    /// _Fail the WebSocket Connection_ (§7.1.7): send a close frame with `code`, stop reading.
    fn fail(&mut self, code: CloseCode, out: &mut Vec<u8>) -> Step {
        if self.state == State::Open {
            write_close(out, Some(code), "");
            self.stats.close_sent = Some(code.0);
        }
        self.closed();
        Step::Consumed(0)
    }

    fn closed(&mut self) {
        self.state = State::Closed;
        self.frame = None;
        self.drop_message();
    }

    fn drop_message(&mut self) {
        self.message = None;
        self.buffer = Vec::new();
        self.utf8 = Utf8Validator::new();
        self.held_checked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::testing::noise;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const TEXT: u8 = 0x1;
    const BINARY: u8 = 0x2;
    const CONT: u8 = 0x0;
    const CLOSE: u8 = 0x8;
    const PING: u8 = 0x9;
    const PONG: u8 = 0xA;

    /// A masked client frame; `first` is the whole first byte (FIN, RSV, opcode).
    fn raw(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame_header(
            &mut out,
            false,
            false,
            OpCode::Data(Data::Continue),
            payload.len() as u64,
        );
        out[0] = first;
        out[1] |= 0x80;
        out.extend_from_slice(&KEY);
        let mut masked = payload.to_vec();
        apply_mask(&mut masked, KEY, 0);
        out.extend_from_slice(&masked);
        out
    }

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        raw(if fin { 0x80 } else { 0 } | opcode, payload)
    }

    fn server(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame_header(
            &mut out,
            fin,
            false,
            OpCode::from_u8(opcode),
            payload.len() as u64,
        );
        out.extend_from_slice(payload);
        out
    }

    fn close_frame(code: u16) -> Vec<u8> {
        server(true, CLOSE, &code.to_be_bytes())
    }

    struct Peer {
        session: Session,
        codec: Codec,
        input: Vec<u8>,
        out: Vec<u8>,
    }

    impl Peer {
        fn new(cfg: &WsConfig, deflate: Option<DeflateParams>) -> Peer {
            Peer {
                session: Session::new(cfg, deflate),
                codec: Codec::new(),
                input: Vec::new(),
                out: Vec::new(),
            }
        }

        /// Appends `bytes` to the input like a read would, lets the session run, drops what it
        /// consumed, and returns what it wrote.
        fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
            self.input.extend_from_slice(bytes);
            let received = self
                .session
                .receive(&mut self.input, &mut self.out, &mut self.codec);
            assert!(received.consumed <= self.input.len());
            assert_eq!(received.state, self.session.state());
            self.input.drain(..received.consumed);
            mem::take(&mut self.out)
        }
    }

    fn plain() -> Peer {
        Peer::new(&WsConfig::default(), None)
    }

    /// Feeds `input` in one piece and compares the output and the final state.
    fn check(input: &[u8], expected: &[u8], state: State) {
        let mut peer = plain();
        assert_eq!(peer.feed(input), expected, "{input:02x?}");
        assert_eq!(peer.session.state(), state);
    }

    fn check_fails(input: &[u8], code: u16) {
        check(input, &close_frame(code), State::Closed);
    }

    #[test]
    fn client_closed_tells_a_close_handshake_from_a_failure() {
        let mut closed = plain();
        closed.feed(&frame(true, CLOSE, &1000u16.to_be_bytes()));
        assert_eq!(closed.session.state(), State::Closed);
        assert!(closed.session.client_closed());

        let mut answered = plain();
        answered.session.close(1001, "", &mut Vec::new());
        answered.feed(&frame(true, CLOSE, b""));
        assert_eq!(answered.session.state(), State::Closed);
        assert!(answered.session.client_closed());

        let mut failed = plain();
        failed.feed(&frame(true, 0x0F, b"reserved opcode"));
        assert_eq!(failed.session.state(), State::Closed);
        assert!(!failed.session.client_closed());
    }

    #[test]
    fn rfc_6455_examples_echo() {
        // §5.7: a single-frame masked text message.
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(hello.to_vec(), frame(true, TEXT, b"Hello"));
        check(
            &hello,
            &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            State::Open,
        );
        // §5.7: a fragmented text message "Hel" + "lo" is echoed as one message.
        check(
            &[frame(false, TEXT, b"Hel"), frame(true, CONT, b"lo")].concat(),
            &server(true, TEXT, b"Hello"),
            State::Open,
        );
        // §5.7: ping "Hello" is answered with pong "Hello" (unmasked, 0x8a 0x05 ...).
        check(
            &frame(true, PING, b"Hello"),
            &[0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            State::Open,
        );
        // §5.7: 256 bytes and 64 KiB binary messages and their length encodings.
        let b256 = vec![7u8; 256];
        let mut expected = vec![0x82, 0x7E, 0x01, 0x00];
        expected.extend_from_slice(&b256);
        check(&frame(true, BINARY, &b256), &expected, State::Open);
        let b64k = vec![9u8; 65536];
        let mut expected = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        expected.extend_from_slice(&b64k);
        check(&frame(true, BINARY, &b64k), &expected, State::Open);
    }

    #[test]
    fn every_truncation_point() {
        let frames = [
            frame(true, TEXT, b"Hello"),
            frame(true, PING, b"p"),
            frame(true, BINARY, &[1; 300]),
        ];
        for whole in frames {
            let expected = plain().feed(&whole);
            assert!(!expected.is_empty());
            for cut in 0..whole.len() {
                let mut peer = plain();
                assert_eq!(peer.feed(&whole[..cut]), b"", "cut {cut}");
                // A partial control frame or header consumes nothing; partial payload streams.
                assert_eq!(peer.feed(&whole[cut..]), expected, "cut {cut}");
                assert!(peer.input.is_empty());
                assert!(!peer.session.is_assembling());
            }
        }
        // A partial header is never consumed.
        let whole = frame(true, BINARY, &[1; 300]);
        for cut in 0..8 {
            let mut peer = plain();
            let received =
                peer.session
                    .receive(&mut whole[..cut].to_vec(), &mut peer.out, &mut peer.codec);
            assert_eq!(received.consumed, 0, "cut {cut}");
        }
    }

    #[test]
    fn every_split_of_a_stream() {
        let stream = [
            frame(false, TEXT, "κό".as_bytes()),
            frame(true, PING, b"ping"),
            frame(true, CONT, "σμε".as_bytes()),
            frame(true, BINARY, &[0xAB; 200]),
            frame(true, CLOSE, &[0x03, 0xe8, b'o', b'k']),
        ]
        .concat();
        let expected = [
            server(true, PONG, b"ping"),
            server(true, TEXT, "κόσμε".as_bytes()),
            server(true, BINARY, &[0xAB; 200]),
            close_frame(1000),
        ]
        .concat();
        for split in 0..=stream.len() {
            let mut peer = plain();
            let mut got = peer.feed(&stream[..split]);
            got.extend(peer.feed(&stream[split..]));
            assert_eq!(got, expected, "split {split}");
            assert_eq!(peer.session.state(), State::Closed);
        }
        // Byte by byte.
        let mut peer = plain();
        let got: Vec<u8> = stream.iter().flat_map(|b| peer.feed(&[*b])).collect();
        assert_eq!(got, expected);
    }

    /// With `whole_frame_max`, a binary frame that fits waits in the input until it is whole,
    /// at every cut, and is then echoed from there; a larger one is taken piece by piece.
    #[test]
    fn frames_that_fit_wait_whole_in_the_input() {
        let cfg = WsConfig {
            whole_frame_max: 512,
            ..WsConfig::default()
        };
        let fits = frame(true, BINARY, &[7; 300]);
        for cut in 0..fits.len() {
            let mut peer = Peer::new(&cfg, None);
            assert_eq!(peer.feed(&fits[..cut]), b"", "cut {cut}");
            assert_eq!(peer.input.len(), cut, "cut {cut}: bytes were taken");
            assert!(!peer.session.is_assembling());
            assert_eq!(peer.feed(&fits[cut..]), server(true, BINARY, &[7; 300]));
            assert!(peer.input.is_empty());
        }
        let large = frame(true, BINARY, &[9; 600]);
        let mut peer = Peer::new(&cfg, None);
        assert_eq!(peer.feed(&large[..100]), b"");
        assert!(peer.input.is_empty() && peer.session.is_assembling());
        assert_eq!(peer.feed(&large[100..]), server(true, BINARY, &[9; 600]));
        // Autobahn 6.4.3 with frames held: the failure still comes with the invalid chop.
        let text = frame(true, TEXT, b"\xce\xba\xe1\xbd\xb9\xf4\x90\x80\x80 and more");
        let mut peer = Peer::new(&cfg, None);
        assert_eq!(peer.feed(&text[..8]), b"");
        assert_eq!(peer.feed(&text[8..17]), close_frame(1007));
    }

    /// A text frame that fits waits whole in the input too, at every cut, one byte at a time
    /// and in three pieces; what has arrived is checked meanwhile, so invalid UTF-8 fails with
    /// the piece that brings the bad byte, and a code point cut in two waits for its end.
    #[test]
    fn text_frames_that_fit_wait_whole_and_fail_at_the_bad_byte() {
        let cfg = WsConfig {
            whole_frame_max: 512,
            ..WsConfig::default()
        };
        let text = "κόσμε, held whole; ".repeat(14);
        let fits = frame(true, TEXT, text.as_bytes());
        assert!(fits.len() > 300 && fits.len() <= 512);
        let echo = server(true, TEXT, text.as_bytes());
        for cut in 0..fits.len() {
            let mut peer = Peer::new(&cfg, None);
            assert_eq!(peer.feed(&fits[..cut]), b"", "cut {cut}");
            assert_eq!(peer.input.len(), cut, "cut {cut}: bytes were taken");
            assert!(!peer.session.is_assembling());
            let second = (cut + 37).min(fits.len());
            assert_eq!(
                peer.feed(&fits[cut..second]).is_empty(),
                second < fits.len()
            );
            if second < fits.len() {
                assert_eq!(peer.feed(&fits[second..]), echo, "cut {cut}");
            }
            assert!(peer.input.is_empty() && peer.session.state() == State::Open);
        }
        let mut peer = Peer::new(&cfg, None);
        let got: Vec<u8> = fits.iter().flat_map(|b| peer.feed(&[*b])).collect();
        assert_eq!(got, echo);

        let mut invalid = text.as_bytes().to_vec();
        let bad = 150;
        invalid[bad] = 0xff;
        let invalid = frame(true, TEXT, &invalid);
        let bad_at = invalid.len() - text.len() + bad;
        for cut in 0..invalid.len() {
            let mut peer = Peer::new(&cfg, None);
            let first = peer.feed(&invalid[..cut]);
            if cut > bad_at {
                assert_eq!(first, close_frame(1007), "cut {cut}");
            } else {
                assert_eq!(first, b"", "cut {cut}");
                assert_eq!(peer.feed(&invalid[cut..]), close_frame(1007), "cut {cut}");
            }
            assert_eq!(peer.session.state(), State::Closed);
        }
        // A code point cut at the end of what had arrived of one frame is not carried into
        // the next.
        let mut peer = Peer::new(&cfg, None);
        let in_kappa = fits.len() - text.len() + 1;
        assert_eq!(peer.feed(&fits[..in_kappa]), b"");
        assert_eq!(peer.feed(&fits[in_kappa..]), echo);
        let ascii = "plain ascii ".repeat(20);
        let next = frame(true, TEXT, ascii.as_bytes());
        assert_eq!(peer.feed(&next[..50]), b"");
        assert_eq!(peer.feed(&next[50..]), server(true, TEXT, ascii.as_bytes()));
        // What was checked of one frame is not taken for the next.
        let mut peer = Peer::new(&cfg, None);
        let cut = bad_at + 50;
        assert_eq!(peer.feed(&fits[..cut]), b"");
        assert_eq!(peer.feed(&fits[cut..]), echo);
        assert_eq!(peer.feed(&invalid[..cut]), close_frame(1007));
    }

    /// A whole text frame is unmasked straight into its echo and checked there: when it is
    /// invalid, the echo is taken back and only the close frame follows the earlier echoes.
    #[test]
    fn invalid_text_leaves_no_partial_echo() {
        let input = [
            frame(true, BINARY, b"first"),
            frame(true, TEXT, b"valid until \xff here"),
            frame(true, TEXT, b"never read"),
        ]
        .concat();
        let expected = [server(true, BINARY, b"first"), close_frame(1007)].concat();
        check(&input, &expected, State::Closed);
    }

    #[test]
    fn protocol_errors_are_1002() {
        // §5.1: client frames must be masked.
        check_fails(&server(true, TEXT, b"Hello"), 1002);
        // §5.2: RSV bits without an extension.
        check_fails(&raw(0x80 | 0x40 | TEXT, b"x"), 1002);
        check_fails(&raw(0x80 | 0x20 | TEXT, b"x"), 1002);
        check_fails(&raw(0x80 | 0x10 | BINARY, b"x"), 1002);
        // §5.2: reserved opcodes.
        for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            check_fails(&frame(true, opcode, b""), 1002);
        }
        // §5.5: control frames are short and unfragmented.
        check_fails(&frame(true, PING, &[0; 126]), 1002);
        check_fails(&frame(false, PING, b""), 1002);
        check_fails(&frame(false, PONG, b""), 1002);
        check_fails(&frame(false, CLOSE, b""), 1002);
        // 125 bytes is fine.
        check(
            &frame(true, PING, &[5; 125]),
            &server(true, PONG, &[5; 125]),
            State::Open,
        );
        // §5.4: continuation without a message, and a new message inside one.
        check_fails(&frame(true, CONT, b"x"), 1002);
        check_fails(
            &[frame(false, TEXT, b"a"), frame(true, TEXT, b"b")].concat(),
            1002,
        );
        check_fails(
            &[frame(false, BINARY, b"a"), frame(false, BINARY, b"b")].concat(),
            1002,
        );
        // §5.2: the 64-bit length's most significant bit.
        check_fails(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], 1002);
        // Frames after the failure are not read.
        check_fails(
            &[server(true, TEXT, b"x"), frame(true, PING, b"")].concat(),
            1002,
        );
    }

    #[test]
    fn control_frames_between_fragments() {
        let input = [
            frame(false, TEXT, b"Hel"),
            frame(true, PING, b"1"),
            frame(true, PONG, b"unsolicited"),
            frame(false, CONT, b"l"),
            frame(true, PING, b"2"),
            frame(true, CONT, b"o"),
        ]
        .concat();
        let expected = [
            server(true, PONG, b"1"),
            server(true, PONG, b"2"),
            server(true, TEXT, b"Hello"),
        ]
        .concat();
        check(&input, &expected, State::Open);
        // An unsolicited pong alone produces nothing.
        check(&frame(true, PONG, b"x"), b"", State::Open);
    }

    #[test]
    fn utf8_fails_fast_and_accepts_split_code_points() {
        // A code point split across fragments (and across reads) is fine.
        let euro = "€".as_bytes();
        let input = [
            frame(false, TEXT, &euro[..1]),
            frame(false, CONT, &euro[1..2]),
            frame(true, CONT, &euro[2..]),
        ]
        .concat();
        check(&input, &server(true, TEXT, euro), State::Open);
        // Autobahn 6.4.1: the second fragment makes the text invalid; the failure comes before
        // the third fragment arrives.
        let mut peer = plain();
        assert_eq!(peer.feed(&frame(false, TEXT, "κόσμε".as_bytes())), b"");
        assert_eq!(
            peer.feed(&frame(false, CONT, b"\xf4\x90\x80\x80")),
            close_frame(1007)
        );
        assert_eq!(peer.session.state(), State::Closed);
        // Autobahn 6.4.3: one frame in chops: the failure comes with the invalid chop.
        let whole = frame(
            true,
            TEXT,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited",
        );
        let mut peer = plain();
        assert_eq!(peer.feed(&whole[..10]), b"");
        assert_eq!(peer.feed(&whole[10..19]), close_frame(1007));
        // Invalid in a single frame, and truncated at the end of the message.
        check_fails(&frame(true, TEXT, b"\xff"), 1007);
        check_fails(
            &[frame(false, TEXT, b"a\xe2"), frame(true, CONT, b"\x82")].concat(),
            1007,
        );
        // Binary messages are not checked.
        check(
            &frame(true, BINARY, b"\xff"),
            &server(true, BINARY, b"\xff"),
            State::Open,
        );
    }

    #[test]
    fn size_limits_are_1009_before_the_payload_arrives() {
        let cfg = WsConfig {
            max_message: 100,
            max_frame: 60,
            ..WsConfig::default()
        };
        let mut peer = Peer::new(&cfg, None);
        let big = frame(true, BINARY, &[0; 61]);
        assert_eq!(peer.feed(&big[..8]), close_frame(1009));
        // The message limit counts across fragments.
        let mut peer = Peer::new(&cfg, None);
        let input = [frame(false, BINARY, &[0; 60]), frame(false, CONT, &[0; 40])].concat();
        assert_eq!(peer.feed(&input), b"");
        assert_eq!(
            peer.feed(&frame(true, CONT, &[0; 1])[..6]),
            close_frame(1009)
        );
        // A declared 2^62-byte frame is refused without allocating.
        let mut peer = plain();
        assert_eq!(
            peer.feed(&[0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            close_frame(1009)
        );
        // Exactly at the limits is fine.
        let mut peer = Peer::new(&cfg, None);
        let input = [frame(false, BINARY, &[1; 60]), frame(true, CONT, &[2; 40])].concat();
        let expected = [vec![1; 60], vec![2; 40]].concat();
        assert_eq!(peer.feed(&input), server(true, BINARY, &expected));
    }

    #[test]
    fn client_close_frames() {
        check(&frame(true, CLOSE, b""), &[0x88, 0x00], State::Closed);
        check(
            &frame(true, CLOSE, &[0x03, 0xe8]),
            &[0x88, 0x02, 0x03, 0xe8],
            State::Closed,
        );
        check(
            &frame(true, CLOSE, b"\x0b\xb8reason"),
            &close_frame(3000),
            State::Closed,
        );
        check_fails(&frame(true, CLOSE, &[0x03]), 1002);
        check_fails(&frame(true, CLOSE, &[0x03, 0xed]), 1002);
        check_fails(&frame(true, CLOSE, &[0x00, 0x00]), 1002);
        check_fails(&frame(true, CLOSE, b"\x03\xe8\xff"), 1007);
        // Nothing after the close is read.
        check(
            &[frame(true, CLOSE, b""), frame(true, PING, b"")].concat(),
            &[0x88, 0x00],
            State::Closed,
        );
        let mut peer = plain();
        peer.feed(&frame(true, CLOSE, &[0x03, 0xe9]));
        let stats = peer.session.stats();
        assert_eq!(
            (stats.close_received, stats.close_sent),
            (Some(1001), Some(1001))
        );
    }

    #[test]
    fn server_close_waits_for_the_client() {
        let mut peer = plain();
        // A message is half received when the server closes.
        assert_eq!(peer.feed(&frame(false, TEXT, b"abc")), b"");
        let half = frame(true, BINARY, &[3; 50]);
        let mut out = Vec::new();
        peer.session.close(1001, "bye", &mut out);
        assert_eq!(out, [0x88, 0x05, 0x03, 0xe9, b'b', b'y', b'e']);
        assert_eq!(peer.session.state(), State::Closing);
        // Data, pings and even invalid frames are ignored until the client's close.
        assert_eq!(peer.feed(&frame(true, CONT, b"\xff")), b"");
        assert_eq!(peer.feed(&half[..20]), b"");
        assert_eq!(peer.feed(&half[20..]), b"");
        assert_eq!(peer.feed(&frame(true, PING, b"x")), b"");
        let mut out = Vec::new();
        peer.session.ping(b"late", &mut out);
        peer.session.close(1000, "", &mut out);
        assert!(out.is_empty());
        assert_eq!(peer.feed(&frame(true, CLOSE, &[0x03, 0xe8])), b"");
        assert_eq!(peer.session.state(), State::Closed);
        let stats = peer.session.stats();
        assert_eq!(
            (stats.close_sent, stats.close_received),
            (Some(1001), Some(1000))
        );
    }

    #[test]
    fn server_ping() {
        let mut peer = plain();
        let mut out = Vec::new();
        peer.session.ping(b"hi", &mut out);
        assert_eq!(out, [0x89, 0x02, b'h', b'i']);
        out.clear();
        peer.session.ping(&[0; 200], &mut out);
        assert_eq!(out.len(), 2 + 125);
    }

    fn deflate(bits: u8) -> Option<DeflateParams> {
        Some(DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: bits,
            client_max_window_bits: 15,
        })
    }

    fn compressed(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Codec::new().compress(payload, &mut out);
        out
    }

    /// Decodes the server's single-frame answer into (opcode, rsv1, payload).
    fn decode(out: &[u8]) -> (u8, bool, Vec<u8>) {
        let (h, len) = parse_header(out).unwrap().unwrap();
        let payload = &out[len..];
        assert_eq!(payload.len() as u64, h.payload_len);
        if h.rsv1 {
            let mut inflated = Vec::new();
            Codec::new()
                .decompress(payload, usize::MAX, &mut inflated)
                .unwrap();
            (h.opcode.to_u8(), true, inflated)
        } else {
            (h.opcode.to_u8(), false, payload.to_vec())
        }
    }

    #[test]
    fn rfc_7692_compressed_hello() {
        // §7.2.3.1: 0xc1 0x07 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00, here masked by a client.
        let input = raw(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let mut peer = Peer::new(&WsConfig::default(), deflate(15));
        // Five bytes are not worth compressing: the echo is plain.
        assert_eq!(peer.feed(&input), server(true, TEXT, b"Hello"));
        // §7.2.3.2: the same message in two fragments, RSV1 on the first only.
        let fragments = [
            raw(0x41, &[0xf2, 0x48, 0xcd]),
            raw(0x80, &[0xc9, 0xc9, 0x07, 0x00]),
        ]
        .concat();
        assert_eq!(peer.feed(&fragments), server(true, TEXT, b"Hello"));
        // Without deflate negotiated RSV1 is a protocol error.
        check_fails(&input, 1002);
    }

    #[test]
    fn compressed_echo_round_trips() {
        let text = "percore echoes κόσμε ".repeat(200);
        for bits in [9, 12, 15] {
            let mut peer = Peer::new(&WsConfig::default(), deflate(bits));
            // A plain message is echoed compressed.
            let (opcode, rsv1, payload) = decode(&peer.feed(&frame(true, TEXT, text.as_bytes())));
            assert_eq!(
                (opcode, rsv1, payload),
                (TEXT, true, text.as_bytes().to_vec())
            );
            // A compressed one in fragments, split across reads, too.
            let z = compressed(text.as_bytes());
            let input = [
                raw(0x40 | BINARY, &z[..10]),
                frame(true, PING, b""),
                raw(0x80, &z[10..]),
            ]
            .concat();
            let mut out = Vec::new();
            for piece in input.chunks(7) {
                out.extend(peer.feed(piece));
            }
            assert_eq!(&out[..2], [0x8a, 0x00]);
            assert_eq!(decode(&out[2..]), (BINARY, true, text.as_bytes().to_vec()));
        }
        // A window of 8 bits is never used for compression: echoes are plain.
        let mut peer = Peer::new(&WsConfig::default(), deflate(8));
        assert_eq!(
            peer.feed(&frame(true, TEXT, text.as_bytes())),
            server(true, TEXT, text.as_bytes())
        );
        // Incompressible data is sent plain.
        let noise = noise(1000);
        let mut peer = Peer::new(&WsConfig::default(), deflate(15));
        assert_eq!(
            peer.feed(&frame(true, BINARY, &noise)),
            server(true, BINARY, &noise)
        );
    }

    #[test]
    fn compressed_errors() {
        let cfg = WsConfig {
            max_message: 1 << 20,
            ..WsConfig::default()
        };
        // A zip bomb: 2 MiB of zeros in a few KiB.
        let bomb = compressed(&vec![0; 2 << 20]);
        let mut peer = Peer::new(&cfg, deflate(15));
        assert_eq!(peer.feed(&raw(0xC2, &bomb)), close_frame(1009));
        // Corrupt DEFLATE data.
        let mut peer = Peer::new(&cfg, deflate(15));
        assert_eq!(peer.feed(&raw(0xC2, &[0xff, 0xff])), close_frame(1007));
        // Invalid UTF-8 inside a compressed text message.
        let mut peer = Peer::new(&cfg, deflate(15));
        assert_eq!(
            peer.feed(&raw(0xC1, &compressed(b"ab\xff"))),
            close_frame(1007)
        );
        // Invalid UTF-8 in an uncompressed text message on a compressing session, short and
        // long enough to be compressed on the way back, whole or in pieces.
        for len in [10, 3 * COMPRESS_MIN] {
            let mut text = vec![b'a'; len];
            text[len / 2] = 0xff;
            let whole = frame(true, TEXT, &text);
            for cut in [0, whole.len() / 2] {
                let mut peer = Peer::new(&cfg, deflate(15));
                let mut got = peer.feed(&whole[..cut]);
                got.extend(peer.feed(&whole[cut..]));
                assert_eq!(got, close_frame(1007), "{len} bytes, cut at {cut}");
            }
        }
        // RSV1 on a continuation or a control frame.
        let mut peer = Peer::new(&cfg, deflate(15));
        assert_eq!(
            peer.feed(&[raw(0x41, b"x"), raw(0xC0, b"y")].concat()),
            close_frame(1002)
        );
        let mut peer = Peer::new(&cfg, deflate(15));
        assert_eq!(peer.feed(&raw(0xC9, b"")), close_frame(1002));
    }

    #[test]
    fn output_soft_limit_pauses_reading() {
        let mut peer = plain();
        let message = frame(true, BINARY, &[1; 100 * 1024]);
        let input = [message.clone(), message.clone(), message.clone(), message].concat();
        let mut buffer = input.clone();
        let mut out = Vec::new();
        let received = peer.session.receive(&mut buffer, &mut out, &mut peer.codec);
        assert!(received.more);
        assert_eq!(received.consumed, 3 * input.len() / 4);
        let received =
            peer.session
                .receive(&mut buffer[received.consumed..], &mut out, &mut peer.codec);
        assert_eq!(received.consumed, 0);
        out.clear();
        let rest = &mut buffer[3 * input.len() / 4..];
        let received = peer.session.receive(rest, &mut out, &mut peer.codec);
        assert!(!received.more);
        assert_eq!(received.consumed, rest.len());
    }

    #[test]
    fn stats_are_taken_and_reset() {
        let mut peer = Peer::new(&WsConfig::default(), deflate(15));
        peer.feed(
            &[
                frame(true, TEXT, b"abc"),
                raw(0xC1, &compressed(&[b'z'; 1000])),
            ]
            .concat(),
        );
        let stats = peer.session.stats();
        assert_eq!(
            (
                stats.messages_in,
                stats.messages_out,
                stats.bytes_in,
                stats.bytes_out
            ),
            (2, 2, 1003, 1003)
        );
        assert_eq!(peer.session.stats(), WsStats::default());
    }

    #[test]
    fn random_input_never_panics() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2000 {
            let cfg = WsConfig {
                max_message: 4096,
                max_frame: 1024,
                ..WsConfig::default()
            };
            let deflate = if round % 2 == 0 { deflate(15) } else { None };
            let mut peer = Peer::new(&cfg, deflate);
            // A twin that holds frames of up to 128 bytes whole must answer exactly the same.
            let holding = WsConfig {
                whole_frame_max: 128,
                ..cfg
            };
            let mut twin = Peer::new(&holding, deflate);
            // Mostly well-formed masked frames with random bits, payloads and cuts.
            let mut stream = Vec::new();
            for _ in 0..(next() % 6) {
                let r = next();
                let payload: Vec<u8> = (0..(r >> 8) % 200).map(|_| next() as u8).collect();
                stream.extend(raw(r as u8, &payload));
            }
            if round % 3 == 0 {
                stream.extend((0..next() % 40).map(|_| next() as u8));
            }
            let mut rest = &stream[..];
            while !rest.is_empty() && peer.session.state() != State::Closed {
                let cut = (next() as usize % rest.len()) + 1;
                let answer = peer.feed(&rest[..cut]);
                assert_eq!(twin.feed(&rest[..cut]), answer, "round {round}");
                assert_eq!(twin.session.state(), peer.session.state(), "round {round}");
                rest = &rest[cut..];
            }
        }
    }

    #[test]
    fn idle_session_is_small_and_holds_no_buffer() {
        let size = mem::size_of::<Session>();
        println!("size_of::<Session>() = {size}");
        assert!(size <= 160, "{size}");
        let mut peer = plain();
        peer.feed(&[frame(false, TEXT, b"a"), frame(true, CONT, b"b")].concat());
        assert_eq!(peer.session.buffer.capacity(), 0);
        peer.feed(&frame(true, BINARY, &[0; 1000])[..500]);
        assert!(peer.session.is_assembling());
        peer.feed(&frame(true, BINARY, &[0; 1000])[500..]);
        assert_eq!(peer.session.buffer.capacity(), 0);
    }
}
