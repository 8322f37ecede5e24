//! The opening handshake (RFC 6455 §4.2): deciding on an upgrade request and writing the answer.
//!
//! This file owns the validation of the client's handshake fields, the `Sec-WebSocket-Accept`
//! computation and the 101/4xx response heads. It reads a parsed [`Request`] and never touches
//! the connection; the caller switches the connection to [`super::Session`] after a 101.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

use super::deflate::{negotiate, response_value, DeflateParams, Negotiated};
use super::WsConfig;
use crate::http::{HeadWriter, Method, Request, Status, Version};

/// The GUID of RFC 6455 §1.3.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether the request asks for a WebSocket upgrade (its `Upgrade` lists "websocket").
pub fn is_upgrade_request(req: &Request<'_>) -> bool {
    req.has_upgrade && req.has_token("upgrade", "websocket")
}

/// The decision on an upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upgrade {
    Accept(Accepted),
    Reject(Refused),
}

/// Why an upgrade request is refused (`conn::Refusal::status` gives the status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a valid handshake: method, version, Upgrade/Connection tokens, key.
    Malformed,
    /// The WebSocket paths are restricted and the path is not one of them.
    Path,
    /// A `Sec-WebSocket-Version` other than 13.
    Version,
    /// The `Origin` is not allowed.
    Origin,
}

impl Refused {
    /// The field the refusal carries: §4.2.2 asks a version refusal to name the version the
    /// server speaks.
    pub fn field(self) -> Option<(&'static str, &'static [u8])> {
        match self {
            Refused::Version => Some(("Sec-WebSocket-Version", b"13")),
            _ => None,
        }
    }
}

/// An acceptable upgrade: what the 101 response needs and what the session runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub deflate: Option<DeflateParams>,
    negotiated: Option<Negotiated>,
    accept: [u8; 28],
}

/// Validates an upgrade request per RFC 6455 §4.2.1 and negotiates permessage-deflate.
pub fn evaluate(req: &Request<'_>, cfg: &WsConfig) -> Upgrade {
    let reject = Upgrade::Reject;
    // §4.2.1: "An HTTP/1.1 or higher GET request", "An |Upgrade| header field containing the
    // value "websocket"", "A |Connection| header field that includes the token "Upgrade"".
    if req.method != Method::Get
        || req.version != Version::Http11
        || !is_upgrade_request(req)
        || !req.has_token("connection", "upgrade")
    {
        return reject(Refused::Malformed);
    }
    if let Some(paths) = &cfg.paths {
        if !paths.iter().any(|path| path.as_slice() == req.path) {
            return reject(Refused::Path);
        }
    }
    // §4.2.2: "If this version does not match a version understood by the server, the server
    // MUST abort the WebSocket handshake ... and instead send an appropriate HTTP error code
    // (such as 426 Upgrade Required) and a |Sec-WebSocket-Version| header field".
    if req.header("sec-websocket-version") != Some(b"13") {
        return reject(Refused::Version);
    }
    // §4.2.1: "A |Sec-WebSocket-Key| header field with a base64-encoded value that, when
    // decoded, is 16 bytes in length." §11.3.1: it "MUST NOT appear more than once".
    let mut keys = fields(req, "sec-websocket-key");
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return reject(Refused::Malformed);
    };
    if !matches!(STANDARD.decode(key), Ok(bytes) if bytes.len() == 16) {
        return reject(Refused::Malformed);
    }
    if let Some(allowed) = &cfg.origins {
        let origin = req.header("origin");
        let known = origin.is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !known {
            return reject(Refused::Origin);
        }
    }
    let negotiated = if cfg.deflate {
        negotiate(fields(req, "sec-websocket-extensions"))
    } else {
        None
    };
    Upgrade::Accept(Accepted {
        deflate: negotiated.map(|n| n.params),
        negotiated,
        accept: accept_key(key),
    })
}

/// Every value of the field `name`, in order.
fn fields<'b>(req: &Request<'b>, name: &'static str) -> impl Iterator<Item = &'b [u8]> {
    req.headers()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v)
}

/// Appends the 101 response (§4.2.2 step 5).
pub fn write_accept(out: &mut Vec<u8>, accepted: &Accepted, date: &[u8]) {
    let mut extensions = Vec::new();
    let mut head = HeadWriter::new(out, Status::SWITCHING_PROTOCOLS, date);
    head.header("Upgrade", b"websocket")
        .header("Connection", b"Upgrade")
        .header("Sec-WebSocket-Accept", &accepted.accept);
    if let Some(negotiated) = &accepted.negotiated {
        response_value(negotiated, &mut extensions);
        head.header("Sec-WebSocket-Extensions", &extensions);
    }
    head.finish(Version::Http11, true);
}

/// `base64(SHA-1(key ++ GUID))` over exactly the 20 digest bytes (§4.2.2 step 5.4).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let digest = Sha1::new().chain_update(key).chain_update(GUID).finalize();
    let mut accept = [0u8; 28];
    // 20 bytes always encode to exactly 28 characters with padding.
    let _ = STANDARD.encode_slice(digest, &mut accept);
    accept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Limits, Parse};

    const FIREFOX: &[u8] = b"GET /ws HTTP/1.1\r\n\
Host: localhost:8001\r\n\
User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:134.0) Gecko/20100101 Firefox/134.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: null\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Sec-WebSocket-Key: 7MOhe0nRW4N3W1wJ8FrF+A==\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-Fetch-Dest: empty\r\n\
Sec-Fetch-Mode: websocket\r\n\
Sec-Fetch-Site: cross-site\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Upgrade: websocket\r\n\r\n";

    const MINIMAL: &str =
        "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    fn evaluate_with(head: &[u8], cfg: &WsConfig) -> Upgrade {
        match parse_request(&mut head.to_vec(), &Limits::default()) {
            Ok(Parse::Complete(req)) => evaluate(&req, cfg),
            other => panic!("test head does not parse: {other:?}"),
        }
    }

    /// `extra` are field lines appended to [`MINIMAL`]; `replace` substitutes text in it.
    fn check(replace: (&str, &str), extra: &str, cfg: &WsConfig, expected: Result<(), Refused>) {
        let head = format!("{}{extra}\r\n", MINIMAL.replace(replace.0, replace.1));
        let got = match evaluate_with(head.as_bytes(), cfg) {
            Upgrade::Accept(_) => Ok(()),
            Upgrade::Reject(refused) => Err(refused),
        };
        assert_eq!(got, expected, "{head}");
    }

    #[test]
    fn rfc_6455_accept_key() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn firefox_handshake_is_accepted_with_deflate() {
        let cfg = WsConfig::default();
        let Upgrade::Accept(accepted) = evaluate_with(FIREFOX, &cfg) else {
            panic!("rejected");
        };
        let mut out = Vec::new();
        write_accept(&mut out, &accepted, b"Sun, 06 Nov 1994 08:49:37 GMT");
        let expected_accept = accept_key(b"7MOhe0nRW4N3W1wJ8FrF+A==");
        let expected = format!(
            "HTTP/1.1 101 Switching Protocols\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\
Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n",
            std::str::from_utf8(&expected_accept).unwrap()
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        assert_eq!(accepted.deflate.map(|d| d.server_max_window_bits), Some(15));
        // Without deflate configured, no extension is answered.
        let cfg = WsConfig {
            deflate: false,
            ..WsConfig::default()
        };
        let Upgrade::Accept(accepted) = evaluate_with(FIREFOX, &cfg) else {
            panic!("rejected");
        };
        let mut out = Vec::new();
        write_accept(&mut out, &accepted, b"d");
        assert!(!String::from_utf8(out).unwrap().contains("Extensions"));
    }

    #[test]
    fn rejections() {
        let cfg = WsConfig::default();
        let none = ("", "");
        check(none, "", &cfg, Ok(()));
        check(
            ("GET", "POST"),
            "Content-Length: 0\r\n",
            &cfg,
            Err(Refused::Malformed),
        );
        check(("HTTP/1.1", "HTTP/1.0"), "", &cfg, Err(Refused::Malformed));
        check(
            ("Upgrade: websocket", "Upgrade: h2c"),
            "",
            &cfg,
            Err(Refused::Malformed),
        );
        check(
            ("Connection: Upgrade", "Connection: keep-alive"),
            "",
            &cfg,
            Err(Refused::Malformed),
        );
        check(
            ("Version: 13", "Version: 8"),
            "",
            &cfg,
            Err(Refused::Version),
        );
        check(
            ("Sec-WebSocket-Version: 13\r\n", ""),
            "",
            &cfg,
            Err(Refused::Version),
        );
        check(
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"),
            "",
            &cfg,
            Err(Refused::Malformed),
        );
        check(
            ("dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAAA="),
            "",
            &cfg,
            Err(Refused::Malformed),
        );
        check(
            ("dGhlIHNhbXBsZSBub25jZQ==", "!!!"),
            "",
            &cfg,
            Err(Refused::Malformed),
        );
        check(
            none,
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            &cfg,
            Err(Refused::Malformed),
        );
        check(
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            "",
            &cfg,
            Err(Refused::Malformed),
        );
        // Tokens are case-insensitive and may sit in lists.
        check(
            ("Upgrade: websocket", "Upgrade: WebSocket"),
            "",
            &cfg,
            Ok(()),
        );
        check(
            ("Connection: Upgrade", "Connection: keep-alive, UPGRADE"),
            "",
            &cfg,
            Ok(()),
        );
    }

    #[test]
    fn any_path_is_accepted_by_default() {
        let cfg = WsConfig::default();
        for path in ["/ws", "/", "/other", "/a/b.html", "/ws?x=1", "/?"] {
            check(("GET /ws", &format!("GET {path}")), "", &cfg, Ok(()));
        }
    }

    #[test]
    fn restricted_paths_refuse_the_others() {
        let cfg = WsConfig {
            paths: Some(vec![b"/ws".to_vec(), b"/echo".to_vec()]),
            ..WsConfig::default()
        };
        for path in ["/ws", "/echo", "/ws?x=1", "/echo?"] {
            check(("GET /ws", &format!("GET {path}")), "", &cfg, Ok(()));
        }
        for path in ["/", "/other", "/ws/", "/WS", "/echo/x", "/ws.html"] {
            check(
                ("GET /ws", &format!("GET {path}")),
                "",
                &cfg,
                Err(Refused::Path),
            );
        }
        // A malformed handshake is refused as such whatever its path.
        check(
            ("GET /ws HTTP/1.1", "GET /other HTTP/1.0"),
            "",
            &cfg,
            Err(Refused::Malformed),
        );
    }

    #[test]
    fn origins() {
        let cfg = WsConfig {
            origins: Some(vec![b"https://example.com".to_vec()]),
            ..WsConfig::default()
        };
        check(("", ""), "Origin: https://example.com\r\n", &cfg, Ok(()));
        check(("", ""), "Origin: https://EXAMPLE.com\r\n", &cfg, Ok(()));
        check(
            ("", ""),
            "Origin: https://evil.com\r\n",
            &cfg,
            Err(Refused::Origin),
        );
        check(("", ""), "", &cfg, Err(Refused::Origin));
        check(("", ""), "Origin: null\r\n", &WsConfig::default(), Ok(()));
    }

    #[test]
    fn extensions_are_read_from_every_line() {
        let head = format!(
            "{MINIMAL}Sec-WebSocket-Extensions: x-foo\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n\r\n"
        );
        let Upgrade::Accept(accepted) = evaluate_with(head.as_bytes(), &WsConfig::default()) else {
            panic!("rejected");
        };
        assert_eq!(accepted.deflate.map(|d| d.server_max_window_bits), Some(10));
        let mut out = Vec::new();
        write_accept(&mut out, &accepted, b"d");
        assert!(String::from_utf8(out).unwrap().contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10\r\n"
        ));
    }

    #[test]
    fn only_a_version_refusal_carries_a_field() {
        assert_eq!(
            Refused::Version.field(),
            Some(("Sec-WebSocket-Version", &b"13"[..]))
        );
        for other in [Refused::Malformed, Refused::Path, Refused::Origin] {
            assert_eq!(other.field(), None);
        }
    }
}
