//! Bytes from a WebSocket client, arriving in pieces, fed to a session the way the worker
//! feeds it (append, receive, drop what was consumed). Must never panic or consume more than
//! it was given, and everything it writes must be well-formed server frames: unmasked, each
//! length exactly the bytes that follow, close frames with a code allowed on the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::ws::{self, Codec, DeflateParams, OpCode, Session, State, WsConfig};

fuzz_target!(|data: &[u8]| {
    let [knobs, step, input @ ..] = data else {
        return;
    };
    // Small limits reach the 1009 paths with short inputs. The step's top bit holds frames of
    // up to 64 bytes whole in the input, as the worker does (half its read buffer).
    let cfg = WsConfig {
        max_message: if knobs & 1 != 0 { 40 } else { 1 << 16 },
        max_frame: if knobs & 2 != 0 { 20 } else { 1 << 16 },
        whole_frame_max: if step & 0x80 != 0 { 64 } else { 0 },
        ..WsConfig::default()
    };
    let deflate = (knobs & 4 != 0).then(|| DeflateParams {
        server_no_context_takeover: knobs & 8 != 0,
        client_no_context_takeover: knobs & 16 != 0,
        server_max_window_bits: 8 + (knobs >> 5).min(7),
        client_max_window_bits: 15,
    });
    let mut session = Session::new(&cfg, deflate);
    let mut codec = Codec::new();
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for piece in input.chunks(1 + usize::from(step & 0x7f)) {
        pending.extend_from_slice(piece);
        loop {
            let received = session.receive(&mut pending, &mut out, &mut codec);
            assert!(received.consumed <= pending.len());
            pending.drain(..received.consumed);
            if received.state == State::Closed {
                check_frames(&out);
                return;
            }
            if received.consumed == 0 || pending.is_empty() {
                break;
            }
        }
    }
    session.ping(b"fuzz", &mut out);
    session.close(1000, "", &mut out);
    check_frames(&out);
});

fn check_frames(mut out: &[u8]) {
    while !out.is_empty() {
        let (header, header_len) = match ws::parse_header(out) {
            Ok(Some(parsed)) => parsed,
            other => panic!("the server wrote a bad frame header: {other:?} in {out:?}"),
        };
        assert!(header.mask.is_none(), "a server frame must not be masked");
        let len = usize::try_from(header.payload_len).expect("length");
        let payload = out
            .get(header_len..header_len + len)
            .expect("frame longer than what was written");
        if header.opcode == OpCode::Control(ws::Control::Close) {
            assert!(payload.len() != 1, "one-byte close payload");
            if let [hi, lo, reason @ ..] = payload {
                let code = ws::CloseCode(u16::from_be_bytes([*hi, *lo]));
                assert!(code.is_valid_on_wire(), "close code {}", code.0);
                assert!(
                    std::str::from_utf8(reason).is_ok(),
                    "close reason not UTF-8"
                );
            }
        }
        out = &out[header_len + len..];
    }
}
