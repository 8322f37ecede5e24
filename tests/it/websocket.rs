//! WebSocket over real sockets: a real client (tungstenite) and hand-made frames.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

use crate::harness::{connect, get, patterned, Options, Root, Server};
use crate::ws_client::{
    close_payload, deflate, frame, header, send_upgrade, unmasked_frame, upgrade_fields,
    upgrade_request, Frame, RawWs, BINARY, CLOSE, CONT, FIN, MASK, PING, PONG, RSV1, SAMPLE_KEY,
    TEXT,
};

/// Opens a WebSocket to `path` with the tungstenite client.
pub fn open(server: &Server, path: &str) -> WebSocket<std::net::TcpStream> {
    let stream = connect(server.port());
    let url = format!("ws://127.0.0.1:{}{path}", server.port());
    let (socket, response) = tungstenite::client(url, stream).expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    socket
}

#[test]
fn echoes_text_and_binary_at_boundary_sizes() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut ws = open(&server, "/ws");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for size in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
        let text: String = (0..size)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(
            ws.read().unwrap(),
            Message::text(text),
            "text of {size} bytes"
        );
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
        ws.send(Message::binary(bytes.clone())).unwrap();
        assert_eq!(
            ws.read().unwrap(),
            Message::binary(bytes),
            "binary of {size} bytes"
        );
    }
    ws.close(None).unwrap();
}

/// Asserts plain HTTP still works on the server after WebSocket traffic.
fn assert_http_serves(server: &Server) {
    let resp = get(server.port(), "/hello.txt", "");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello, world\n");
}

/// Reads the next data message with tungstenite, answering (and skipping) pings.
fn read_data(ws: &mut WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read().expect("reading a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            message => return message,
        }
    }
}

/// Sends `frames` on a fresh connection and asserts the server fails it with close `code`.
fn check_failed(server: &Server, frames: &[Vec<u8>], code: u16) {
    let mut ws = RawWs::open(server.port());
    for frame in frames {
        ws.send_raw(frame);
    }
    ws.expect_close_code(code);
}

// ---- tungstenite: echo at volume ----

#[test]
fn many_messages_in_a_row_on_one_connection_are_echoed_in_order() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut ws = open(&server, "/ws");
    // One by one.
    for i in 0..500 {
        let text = format!("message {i} {}", "x".repeat(i % 300));
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(read_data(&mut ws), Message::text(text));
    }
    // A burst written before anything is read.
    for i in 0..500u32 {
        ws.write(Message::binary(i.to_be_bytes().repeat(1 + i as usize % 50)))
            .unwrap();
    }
    ws.flush().unwrap();
    for i in 0..500u32 {
        assert_eq!(
            read_data(&mut ws),
            Message::binary(i.to_be_bytes().repeat(1 + i as usize % 50)),
            "burst message {i}"
        );
    }
    ws.close(None).unwrap();
}

#[test]
fn twenty_concurrent_connections_each_echo_a_hundred_messages() {
    let root = Root::new();
    let server = Server::start_with(
        &root,
        Options {
            workers: 2,
            ..Options::default()
        },
    );
    let port = server.port();
    let clients: Vec<_> = (0..20)
        .map(|c| {
            std::thread::spawn(move || {
                let url = format!("ws://127.0.0.1:{port}/ws");
                let (mut ws, _) = tungstenite::client(url, connect(port)).expect("handshake");
                for m in 0..100 {
                    let text = format!("client {c} message {m} {}", "y".repeat((c * m) % 200));
                    ws.send(Message::text(text.clone())).unwrap();
                    assert_eq!(read_data(&mut ws), Message::text(text));
                }
                ws.close(None).unwrap();
                c
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread failed");
    }
    assert_http_serves(&server);
}

// ---- raw frames: fragmentation and control frames ----

#[test]
fn a_ping_between_fragments_is_answered_before_the_reassembled_echo() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut ws = RawWs::open(server.port());
    ws.send(TEXT, b"Hello");
    ws.send(FIN | PING, b"are you there?");
    ws.send(CONT, b", frag");
    ws.send(FIN | CONT, b"mented world");
    let pong = ws.expect_frame();
    assert_eq!(
        pong,
        Frame {
            fin: true,
            rsv1: false,
            opcode: PONG,
            payload: b"are you there?".to_vec()
        }
    );
    let echo = ws.expect_frame();
    assert_eq!(
        echo,
        Frame {
            fin: true,
            rsv1: false,
            opcode: TEXT,
            payload: b"Hello, fragmented world".to_vec()
        }
    );
    ws.assert_echo("and the connection goes on");
}

#[test]
fn a_code_point_split_across_fragments_is_accepted() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut ws = RawWs::open(server.port());
    // "café €": é = C3 A9 split after C3, € = E2 82 AC split after E2 82.
    ws.send(TEXT, b"caf\xC3");
    ws.send(CONT, b"\xA9 \xE2\x82");
    ws.send(FIN | CONT, b"\xAC");
    let echo = ws.expect_frame();
    assert_eq!((echo.opcode, echo.fin), (TEXT, true));
    assert_eq!(echo.data(), "café €".as_bytes());
}

#[test]
fn invalid_utf8_in_a_text_message_closes_1007() {
    let root = Root::new();
    let server = Server::start(&root);
    let cases: [&[u8]; 5] = [
        b"Hello \xFF world",    // a byte that never appears in UTF-8
        b"\xC0\x80",            // an overlong encoding of U+0000
        b"\xED\xA0\x80",        // a UTF-16 surrogate
        b"\xF4\x90\x80\x80",    // above U+10FFFF
        b"ends inside caf\xC3", // a truncated code point at the end of the message
    ];
    for payload in cases {
        check_failed(&server, &[frame(FIN | TEXT, payload)], 1007);
    }
    // The same truncated code point, ended by a final empty continuation.
    check_failed(
        &server,
        &[frame(TEXT, b"caf\xC3"), frame(FIN | CONT, b"")],
        1007,
    );
    // Binary messages are not UTF-8 checked.
    let mut ws = RawWs::open(server.port());
    ws.send(FIN | BINARY, b"\xFF\xC0\x80");
    assert_eq!(ws.expect_frame().payload, b"\xFF\xC0\x80");
}

#[test]
fn invalid_utf8_in_a_middle_fragment_fails_before_the_message_ends() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut ws = RawWs::open(server.port());
    ws.send(TEXT, b"valid start, ");
    ws.send(CONT, b"then \xFF garbage");
    // No final fragment is sent: the server must fail the connection now.
    ws.expect_close_code(1007);
}

#[test]
fn an_unmasked_client_frame_closes_1002() {
    let root = Root::new();
    let server = Server::start(&root);
    check_failed(&server, &[unmasked_frame(FIN | TEXT, b"Hello")], 1002);
}

#[test]
fn rsv_bits_without_an_extension_close_1002() {
    let root = Root::new();
    let server = Server::start(&root);
    for rsv in [0x40, 0x20, 0x10] {
        check_failed(&server, &[frame(FIN | rsv | TEXT, b"Hello")], 1002);
    }
}

#[test]
fn reserved_opcodes_close_1002() {
    let root = Root::new();
    let server = Server::start(&root);
    for opcode in [3, 11] {
        check_failed(&server, &[frame(FIN | opcode, b"what is this")], 1002);
    }
}

#[test]
fn a_control_frame_with_126_bytes_closes_1002() {
    let root = Root::new();
    let server = Server::start(&root);
    check_failed(&server, &[frame(FIN | PING, &[b'p'; 126])], 1002);
    // 125 bytes is the limit and is answered.
    let mut ws = RawWs::open(server.port());
    ws.send(FIN | PING, &[b'p'; 125]);
    let pong = ws.expect_frame();
    assert_eq!((pong.opcode, pong.payload), (PONG, vec![b'p'; 125]));
}

#[test]
fn a_fragmented_ping_closes_1002() {
    let root = Root::new();
    let server = Server::start(&root);
    check_failed(&server, &[frame(PING, b"half a ping")], 1002);
}

/// A client still sending when its connection fails (Autobahn 4.2.5 sends byte by byte) must
/// get the close frame: the server shuts its side and drains, it does not reset.
#[test]
fn a_failed_connection_drains_what_the_client_still_sends() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut ws = RawWs::open(server.port());
    ws.send(FIN | TEXT, b"Hello, world!");
    ws.send_raw(&header(FIN | 0x0F, 13, Some([1, 2, 3, 4])));
    let echo = ws.expect_frame();
    assert_eq!(
        (echo.opcode, echo.payload.as_slice()),
        (TEXT, &b"Hello, world!"[..])
    );
    ws.expect_close_code(1002);
    // The server's side is closed; the client's is still open and read by the server.
    for round in 0..10 {
        if let Err(e) = ws.stream.write_all(&[0x55; 4096]) {
            panic!("write {round} after the close frame: {e} (the server reset the connection)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_continuation_without_a_start_closes_1002() {
    let root = Root::new();
    let server = Server::start(&root);
    check_failed(&server, &[frame(FIN | CONT, b"orphan")], 1002);
}

#[test]
fn a_new_data_frame_inside_a_fragmented_message_closes_1002() {
    let root = Root::new();
    let server = Server::start(&root);
    check_failed(
        &server,
        &[frame(TEXT, b"first half"), frame(FIN | TEXT, b"intruder")],
        1002,
    );
    check_failed(
        &server,
        &[frame(BINARY, b"first half"), frame(BINARY, b"intruder")],
        1002,
    );
}

// ---- raw frames: limits ----

#[test]
fn a_message_above_ws_max_message_closes_1009() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--ws-max-message", "1k"]);
    // Exactly the limit is echoed.
    let mut ws = RawWs::open(server.port());
    let fits = patterned(1024);
    ws.send(FIN | BINARY, &fits);
    assert_eq!(ws.expect_frame().payload, fits);
    // One byte more in one frame.
    check_failed(&server, &[frame(FIN | BINARY, &patterned(1025))], 1009);
    // Two frames that each fit but together do not.
    check_failed(
        &server,
        &[
            frame(BINARY, &patterned(600)),
            frame(FIN | CONT, &patterned(600)),
        ],
        1009,
    );
}

#[test]
fn a_declared_length_above_ws_max_message_closes_1009_before_the_payload() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--ws-max-message", "1k"]);
    // Only the headers are sent: 2000 bytes (16-bit length) and 2^62 bytes (64-bit length).
    for len in [2000u64, 1 << 62] {
        check_failed(&server, &[header(FIN | BINARY, len, Some(MASK))], 1009);
    }
}

// ---- raw frames: the closing handshake ----

#[test]
fn a_close_1000_with_a_reason_is_echoed_and_the_server_closes_tcp() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut ws = RawWs::open(server.port());
    ws.send(FIN | CLOSE, &close_payload(1000, b"goodbye"));
    let close = ws.expect_frame();
    assert_eq!(close.close_code(), Some(1000), "{close:?}");
    assert!(
        std::str::from_utf8(&close.payload[2..]).is_ok(),
        "{close:?}"
    );
    ws.expect_eof();
    assert_http_serves(&server);
}

#[test]
fn an_empty_close_gets_an_empty_close() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut ws = RawWs::open(server.port());
    ws.send(FIN | CLOSE, b"");
    assert_eq!(ws.expect_close(), b"");
}

#[test]
fn a_one_byte_close_payload_closes_1002() {
    let root = Root::new();
    let server = Server::start(&root);
    check_failed(&server, &[frame(FIN | CLOSE, &[0x03])], 1002);
}

#[test]
fn close_codes_not_allowed_on_the_wire_close_1002() {
    let root = Root::new();
    let server = Server::start(&root);
    for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535] {
        let mut ws = RawWs::open(server.port());
        ws.send(FIN | CLOSE, &close_payload(code, b""));
        let payload = ws.expect_close();
        assert_eq!(payload, 1002u16.to_be_bytes(), "client close code {code}");
    }
}

#[test]
fn private_close_codes_are_echoed() {
    let root = Root::new();
    let server = Server::start(&root);
    for code in [3000, 4999] {
        let mut ws = RawWs::open(server.port());
        ws.send(FIN | CLOSE, &close_payload(code, b"private"));
        let close = ws.expect_frame();
        assert_eq!(close.close_code(), Some(code), "{close:?}");
        ws.expect_eof();
    }
}

#[test]
fn a_close_reason_with_invalid_utf8_closes_1007() {
    let root = Root::new();
    let server = Server::start(&root);
    check_failed(
        &server,
        &[frame(FIN | CLOSE, &close_payload(1000, b"bad \xFF reason"))],
        1007,
    );
}

#[test]
fn an_unsolicited_pong_is_ignored() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut ws = RawWs::open(server.port());
    ws.send(FIN | PONG, b"heartbeat");
    ws.send(FIN | PONG, b"");
    ws.assert_echo("still here");
}

// ---- the opening handshake ----

#[test]
fn the_rfc_sample_key_gets_the_rfc_accept_value() {
    let root = Root::new();
    let server = Server::start(&root);
    let (mut ws, resp) = RawWs::open_with(server.port(), "/ws", "");
    assert_eq!(
        resp.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(
        resp.header("Upgrade")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket")
    );
    assert_eq!(
        resp.header("Connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("upgrade")
    );
    assert_eq!(resp.header("Sec-WebSocket-Extensions"), None);
    ws.assert_echo("accepted");
}

#[test]
fn version_8_gets_426_naming_version_13() {
    let root = Root::new();
    let server = Server::start(&root);
    let fields = upgrade_fields().replace("Version: 13", "Version: 8");
    let (resp, _) = send_upgrade(server.port(), &upgrade_request("/ws", &fields));
    assert_eq!(resp.status, 426);
    assert_eq!(resp.header("Sec-WebSocket-Version"), Some("13"));
    assert_http_serves(&server);
}

#[test]
fn a_missing_or_malformed_key_gets_400() {
    let root = Root::new();
    let server = Server::start(&root);
    let without_key = upgrade_fields().replace(&format!("Sec-WebSocket-Key: {SAMPLE_KEY}\r\n"), "");
    let keys = [
        "AAAA",                     // 3 bytes
        "AAAAAAAAAAAAAAAAAAAAAAA=", // 17 bytes
        "AAAAAAAAAAAAAAAAAAAA",     // 15 bytes
        "!!not base64 at all!!!==", // not base64
    ];
    let mut requests = vec![without_key];
    requests.extend(keys.iter().map(|k| upgrade_fields().replace(SAMPLE_KEY, k)));
    for fields in requests {
        let (resp, _) = send_upgrade(server.port(), &upgrade_request("/ws", &fields));
        assert_eq!(resp.status, 400, "{fields}");
    }
    assert_http_serves(&server);
}

#[test]
fn by_default_an_upgrade_is_accepted_on_any_path() {
    let root = Root::new();
    let server = Server::start(&root);
    // The C tutorial's echo page connects to `ws://localhost:8001`, path `/`, which is also a
    // directory with an index here; the others are a file, nothing, and a query.
    for path in ["/", "/hello.txt", "/no/such/file", "/ws?x=1"] {
        let (mut ws, _) = RawWs::open_with(server.port(), path, "");
        ws.assert_echo(path);
    }
    // Without `Upgrade`, `/` is still the index page.
    let resp = get(server.port(), "/", "");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.body,
        b"<!doctype html><title>percore test</title><p>hello</p>\n"
    );
    assert_http_serves(&server);
}

#[test]
fn ws_paths_restricts_the_upgrade_and_other_paths_get_404() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--ws-paths", "/ws,/echo"]);
    for path in ["/", "/other", "/ws/", "/hello.txt"] {
        let (resp, _) = send_upgrade(server.port(), &upgrade_request(path, &upgrade_fields()));
        assert_eq!(resp.status, 404, "{path}");
    }
    for path in ["/ws", "/echo?x=1"] {
        let (mut ws, _) = RawWs::open_with(server.port(), path, "");
        ws.assert_echo(path);
    }
    assert_http_serves(&server);
}

#[test]
fn a_connection_token_list_with_upgrade_is_accepted() {
    let root = Root::new();
    let server = Server::start(&root);
    let fields = upgrade_fields().replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
    let (resp, stream) = send_upgrade(server.port(), &upgrade_request("/ws", &fields));
    assert_eq!(resp.status, 101);
    let mut ws = RawWs::from_stream(stream);
    ws.assert_echo("token list");
}

#[test]
fn ws_origins_refuses_other_origins_with_403() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--ws-origins", "https://good.example"]);
    let fields = format!("{}Origin: https://evil.example\r\n", upgrade_fields());
    let (resp, _) = send_upgrade(server.port(), &upgrade_request("/ws", &fields));
    assert_eq!(resp.status, 403);
    let (mut ws, _) = RawWs::open_with(server.port(), "/ws", "Origin: https://good.example\r\n");
    ws.assert_echo("from a good origin");
    assert_http_serves(&server);
}

// ---- permessage-deflate ----

const DEFLATE_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

#[test]
fn a_deflate_offer_is_accepted_without_context_takeover() {
    let root = Root::new();
    let server = Server::start(&root);
    let (mut ws, resp) = RawWs::open_with(server.port(), "/ws", DEFLATE_OFFER);
    assert_eq!(
        resp.header("Sec-WebSocket-Extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    ws.assert_echo("uncompressed messages still work");
}

#[test]
fn the_rfc_7692_compressed_hello_is_echoed_as_hello() {
    let root = Root::new();
    let server = Server::start(&root);
    let (mut ws, _) = RawWs::open_with(server.port(), "/ws", DEFLATE_OFFER);
    // RFC 7692 §7.2.3.1: 0xc1 0x07 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00, here masked.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(deflate(b"Hello").len(), hello.len());
    ws.send(FIN | RSV1 | TEXT, &hello);
    let echo = ws.expect_frame();
    assert_eq!((echo.opcode, echo.fin), (TEXT, true));
    assert_eq!(echo.data(), b"Hello");
}

#[test]
fn a_large_compressed_text_round_trips() {
    let root = Root::new();
    let server = Server::start(&root);
    let (mut ws, _) = RawWs::open_with(server.port(), "/ws", DEFLATE_OFFER);
    let text: String = (0..)
        .map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog\n"))
        .take_while({
            let mut len = 0;
            move |line| {
                len += line.len();
                len <= 100 * 1024
            }
        })
        .collect();
    let compressed = deflate(text.as_bytes());
    assert!(compressed.len() < text.len() / 4, "{}", compressed.len());
    ws.send(FIN | RSV1 | TEXT, &compressed);
    let echo = ws.expect_frame();
    assert_eq!((echo.opcode, echo.fin), (TEXT, true));
    assert!(echo.data() == text.as_bytes(), "the echo differs");
    // A fragmented compressed message: RSV1 on the first frame only.
    let (first, rest) = compressed.split_at(compressed.len() / 3);
    ws.send(RSV1 | TEXT, first);
    ws.send(FIN | CONT, rest);
    assert!(
        ws.expect_frame().data() == text.as_bytes(),
        "the echo differs"
    );
}

#[test]
fn a_compressed_bomb_above_ws_max_message_closes_1009() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--ws-max-message", "64k"]);
    let bomb = deflate(&vec![0u8; 4 << 20]);
    assert!(bomb.len() < 8 * 1024, "bomb is {} bytes", bomb.len());
    let (mut ws, _) = RawWs::open_with(server.port(), "/ws", DEFLATE_OFFER);
    ws.send(FIN | RSV1 | BINARY, &bomb);
    ws.expect_close_code(1009);
}

#[test]
fn with_deflate_off_the_offer_is_declined_and_rsv1_closes_1002() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--ws-deflate", "false"]);
    let (mut ws, resp) = RawWs::open_with(server.port(), "/ws", DEFLATE_OFFER);
    assert_eq!(resp.header("Sec-WebSocket-Extensions"), None);
    ws.send(FIN | RSV1 | TEXT, &deflate(b"Hello"));
    ws.expect_close_code(1002);
}

// ---- liveness ----

const PING_FLAGS: &[&str] = &["--ws-ping-interval", "1s", "--ws-ping-timeout", "1s"];

#[test]
fn a_silent_client_is_pinged_then_closed() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, PING_FLAGS);
    let mut ws = RawWs::open(server.port());
    let started = Instant::now();
    let ping = ws
        .read_frame_within(Duration::from_secs(5))
        .expect("closed before any ping");
    assert_eq!((ping.opcode, ping.fin), (PING, true), "{ping:?}");
    println!("ping after {:?}", started.elapsed());
    // Staying silent, the client gets a close frame saying 1001 and the connection ends.
    let close = ws
        .read_frame_within(Duration::from_secs(10))
        .expect("dropped without a close frame");
    assert!(close.fin, "{close:?}");
    assert_eq!(close.close_code(), Some(1001));
    assert!(
        ws.read_frame_within(Duration::from_secs(10)).is_none(),
        "more after the close frame"
    );
    println!("closed after {:?}", started.elapsed());
}

#[test]
fn a_client_answering_pings_stays_open() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, PING_FLAGS);
    let mut ws = open(&server, "/ws");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(4500) {
        match ws.read() {
            Ok(Message::Ping(payload)) => {
                assert!(payload.is_empty());
                pings += 1;
            }
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("unexpected while idle: {other:?}"),
        }
    }
    assert!(pings >= 1, "no ping in 4.5 s with a 1 s interval");
    println!("{pings} pings answered");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    ws.send(Message::text("alive")).unwrap();
    assert_eq!(read_data(&mut ws), Message::text("alive"));
}

// ---- shutdown ----

#[test]
fn sigterm_sends_close_1001_and_exits_0_once_the_client_answers() {
    let root = Root::new();
    let mut server = Server::start_with_flags(&root, &["--drain-timeout", "60s"]);
    let mut ws = RawWs::open(server.port());
    ws.assert_echo("before shutdown");
    server.terminate();
    let close = ws.expect_frame();
    assert_eq!((close.opcode, close.fin), (CLOSE, true));
    assert_eq!(close.payload, 1001u16.to_be_bytes());
    ws.send(FIN | CLOSE, &close_payload(1001, b""));
    ws.expect_eof();
    // Well before the 60 s drain deadline.
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("percore did not exit after the close handshake");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
}

// ---- backpressure ----

#[test]
fn an_unread_client_stops_the_server_reading_and_then_resumes() {
    const MESSAGE: usize = 1 << 20;
    let message = |i: usize| {
        let mut payload = patterned(MESSAGE);
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        payload
    };
    let root = Root::new();
    let server = Server::start(&root);
    let ws = RawWs::open(server.port());
    let mut stream = ws.stream;
    stream.set_nonblocking(true).unwrap();
    // Write 1 MiB messages without reading until the kernel refuses more.
    let mut total = 0usize;
    let mut sent = 0usize;
    let partial: Vec<u8>;
    'writing: loop {
        let bytes = frame(FIN | BINARY, &message(sent));
        sent += 1;
        let mut at = 0;
        while at < bytes.len() {
            match stream.write(&bytes[at..]) {
                Ok(n) => {
                    at += n;
                    total += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Give the server a moment; refusal must persist.
                    std::thread::sleep(Duration::from_millis(300));
                    match stream.write(&bytes[at..]) {
                        Ok(n) => {
                            at += n;
                            total += n;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            partial = bytes[at..].to_vec();
                            break 'writing;
                        }
                        Err(e) => panic!("writing: {e}"),
                    }
                }
                Err(e) => panic!("writing: {e}"),
            }
            assert!(
                total < 64 << 20,
                "the server kept reading: {total} bytes accepted without any read"
            );
        }
    }
    println!("blocked after {total} bytes ({sent} messages started)");
    assert!(total < 64 << 20);
    // Now read: finish the partial message and send a close from another thread.
    stream.set_nonblocking(false).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let finisher = std::thread::spawn(move || {
        writer.write_all(&partial).unwrap();
        writer
            .write_all(&frame(FIN | CLOSE, &close_payload(1000, b"")))
            .unwrap();
    });
    let mut ws = RawWs::from_stream(stream);
    for i in 0..sent {
        let echo = ws.expect_frame();
        assert_eq!((echo.opcode, echo.fin), (BINARY, true));
        assert!(echo.payload == message(i), "echo {i} differs");
    }
    assert_eq!(ws.expect_close(), 1000u16.to_be_bytes());
    finisher.join().unwrap();
}

// ---- metrics ----

#[test]
fn metrics_count_upgrades_messages_and_close_codes() {
    let root = Root::new();
    let server = Server::start_with(
        &root,
        Options {
            admin: true,
            ..Options::default()
        },
    );
    let mut ws = RawWs::open(server.port());
    let mut bytes = 0;
    for i in 0..7 {
        let text = format!("metric message {i}");
        bytes += text.len();
        ws.assert_echo(&text);
    }
    ws.send(FIN | CLOSE, &close_payload(1000, b"done"));
    ws.expect_close();
    let expected = [
        "percore_ws_upgrades_total{worker=\"0\"} 1".to_string(),
        "percore_ws_messages_received_total{worker=\"0\"} 7".to_string(),
        "percore_ws_messages_sent_total{worker=\"0\"} 7".to_string(),
        format!("percore_ws_received_bytes_total{{worker=\"0\"}} {bytes}"),
        format!("percore_ws_sent_bytes_total{{worker=\"0\"}} {bytes}"),
        "percore_ws_close_frames_total{worker=\"0\",direction=\"received\",code=\"1000\"} 1"
            .to_string(),
        "percore_ws_close_frames_total{worker=\"0\",direction=\"sent\",code=\"1000\"} 1"
            .to_string(),
    ];
    server.wait_for_metrics(&expected, Duration::from_secs(5));
}
