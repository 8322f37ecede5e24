//! WebSocket over real sockets: a real client (tungstenite) and hand-made frames.

use std::time::Duration;

use tungstenite::{Message, WebSocket};

use crate::harness::{connect, Root, Server};

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
