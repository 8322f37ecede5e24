//! Response-head writing: status line, fields and the small nginx-style error pages.
//!
//! This file owns the bytes of every response head. It appends to the caller's buffer and
//! never allocates anything else; it never decides which status to send.

use super::Version;

/// Builds one response head at the end of the caller's buffer.
pub struct HeadWriter<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> HeadWriter<'o> {
    /// Starts a head: `HTTP/1.1 <code> <reason>`, `Server` and `Date` (an IMF-fixdate).
    pub fn new(out: &'o mut Vec<u8>, status: u16, date: &[u8]) -> Self {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(status).as_bytes());
        out.extend_from_slice(b"\r\nServer: percore\r\nDate: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
        HeadWriter { out }
    }

    /// Appends `name: value`; CR and LF in the value become spaces so a field never splits.
    pub fn header(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        if value.iter().any(|&b| b == b'\r' || b == b'\n') {
            let start = self.out.len();
            self.out.extend_from_slice(value);
            for b in self.out.get_mut(start..).unwrap_or_default() {
                if *b == b'\r' || *b == b'\n' {
                    *b = b' ';
                }
            }
        } else {
            self.out.extend_from_slice(value);
        }
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Appends `Content-Length: len`.
    pub fn content_length(&mut self, len: u64) -> &mut Self {
        self.header("Content-Length", itoa::Buffer::new().format(len).as_bytes())
    }

    /// Appends prebuilt field lines, each already ending in CRLF.
    pub fn raw(&mut self, lines: &[u8]) -> &mut Self {
        self.out.extend_from_slice(lines);
        self
    }

    /// Ends the head with the connection field the client needs and the blank line.
    ///
    /// HTTP/1.1 persists unless told otherwise; HTTP/1.0 closes unless told otherwise.
    pub fn finish(self, version: Version, keep_alive: bool) {
        match (keep_alive, version) {
            (false, _) => self.out.extend_from_slice(b"Connection: close\r\n"),
            (true, Version::Http10) => self.out.extend_from_slice(b"Connection: keep-alive\r\n"),
            (true, Version::Http11) => {}
        }
        self.out.extend_from_slice(b"\r\n");
    }
}

/// The reason phrase of a status code (RFC 9110 §15).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

const PAGE_START: &[u8] = b"<html><head><title>";
const PAGE_MIDDLE: &[u8] = b"</title></head><body><center><h1>";
const PAGE_END: &[u8] = b"</h1></center><hr><center>percore</center></body></html>";

/// A complete error or redirect response with a small nginx-style HTML body.
///
/// The body is omitted for HEAD (`head_only`) while Content-Length stays; 1xx, 204 and 304
/// responses get neither a body nor Content-Type and Content-Length (RFC 9110 §8.6, §15.4.5).
/// `extra` fields (Location, Allow, ...) follow the content fields.
pub fn write_error(
    out: &mut Vec<u8>,
    status: u16,
    date: &[u8],
    version: Version,
    keep_alive: bool,
    head_only: bool,
    extra: &[(&str, &[u8])],
) {
    let mut code = itoa::Buffer::new();
    let code = code.format(status).as_bytes();
    let reason = reason(status).as_bytes();
    let title_len = (code.len() + 1 + reason.len()) as u64;
    let has_body = !(status < 200 || status == 204 || status == 304);

    let mut head = HeadWriter::new(out, status, date);
    if has_body {
        let page_len = (PAGE_START.len() + PAGE_MIDDLE.len() + PAGE_END.len()) as u64;
        head.header("Content-Type", b"text/html; charset=utf-8")
            .content_length(page_len + 2 * title_len);
    }
    for (name, value) in extra {
        head.header(name, value);
    }
    head.finish(version, keep_alive);

    if has_body && !head_only {
        for part in [
            PAGE_START,
            code,
            b" ",
            reason,
            PAGE_MIDDLE,
            code,
            b" ",
            reason,
            PAGE_END,
        ] {
            out.extend_from_slice(part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn check(out: &[u8], expected: &str) {
        assert_eq!(String::from_utf8_lossy(out), expected);
    }

    fn error(
        status: u16,
        version: Version,
        keep_alive: bool,
        head_only: bool,
        extra: &[(&str, &[u8])],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        write_error(
            &mut out, status, DATE, version, keep_alive, head_only, extra,
        );
        out
    }

    #[test]
    fn head_writer_exact_bytes() {
        let mut out = b"previous response|".to_vec();
        let mut head = HeadWriter::new(&mut out, 200, DATE);
        head.header("Content-Type", b"text/css")
            .content_length(1234567890123)
            .raw(b"ETag: \"1-2\"\r\nAccept-Ranges: bytes\r\n");
        head.finish(Version::Http11, true);
        check(
            &out,
            "previous response|HTTP/1.1 200 OK\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/css\r\nContent-Length: 1234567890123\r\nETag: \"1-2\"\r\nAccept-Ranges: bytes\r\n\r\n",
        );
    }

    #[test]
    fn head_writer_connection_fields() {
        let finished = |version, keep_alive| {
            let mut out = Vec::new();
            HeadWriter::new(&mut out, 304, DATE).finish(version, keep_alive);
            out
        };
        let start = "HTTP/1.1 304 Not Modified\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
        check(&finished(Version::Http11, true), &format!("{start}\r\n"));
        check(
            &finished(Version::Http11, false),
            &format!("{start}Connection: close\r\n\r\n"),
        );
        check(
            &finished(Version::Http10, true),
            &format!("{start}Connection: keep-alive\r\n\r\n"),
        );
        check(
            &finished(Version::Http10, false),
            &format!("{start}Connection: close\r\n\r\n"),
        );
    }

    #[test]
    fn head_writer_neutralises_line_breaks() {
        let mut out = Vec::new();
        let mut head = HeadWriter::new(&mut out, 301, DATE);
        head.header("Location", b"/a\r\nSet-Cookie: x\n/");
        head.finish(Version::Http11, true);
        check(
            &out,
            "HTTP/1.1 301 Moved Permanently\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Location: /a  Set-Cookie: x /\r\n\r\n",
        );
    }

    #[test]
    fn error_get_keep_alive() {
        let body = "<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center><hr><center>percore</center></body></html>";
        assert_eq!(body.len(), 134);
        check(
            &error(404, Version::Http11, true, false, &[]),
            &format!(
                "HTTP/1.1 404 Not Found\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                 Content-Type: text/html; charset=utf-8\r\nContent-Length: 134\r\n\r\n{body}"
            ),
        );
    }

    #[test]
    fn error_head_keeps_length_drops_body() {
        check(
            &error(404, Version::Http11, true, true, &[]),
            "HTTP/1.1 404 Not Found\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/html; charset=utf-8\r\nContent-Length: 134\r\n\r\n",
        );
    }

    #[test]
    fn error_close_and_http10() {
        let body = "<html><head><title>400 Bad Request</title></head><body><center><h1>400 Bad Request</h1></center><hr><center>percore</center></body></html>";
        check(
            &error(400, Version::Http11, false, false, &[]),
            &format!(
                "HTTP/1.1 400 Bad Request\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                 Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        check(
            &error(400, Version::Http10, true, true, &[]),
            &format!(
                "HTTP/1.1 400 Bad Request\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                 Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
                body.len()
            ),
        );
    }

    #[test]
    fn error_redirect_with_extra_fields() {
        let body = "<html><head><title>301 Moved Permanently</title></head><body><center><h1>301 Moved Permanently</h1></center><hr><center>percore</center></body></html>";
        check(
            &error(301, Version::Http11, true, false, &[("Location", b"/dir/")]),
            &format!(
                "HTTP/1.1 301 Moved Permanently\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                 Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nLocation: /dir/\r\n\r\n{body}",
                body.len()
            ),
        );
        let allowed = error(
            405,
            Version::Http11,
            true,
            true,
            &[("Allow", b"GET, HEAD, OPTIONS")],
        );
        assert!(allowed.ends_with(b"Allow: GET, HEAD, OPTIONS\r\n\r\n"));
    }

    #[test]
    fn bodiless_statuses() {
        let head = |code: &str| {
            format!(
                "HTTP/1.1 {code}\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
            )
        };
        check(
            &error(304, Version::Http11, true, false, &[]),
            &head("304 Not Modified"),
        );
        check(
            &error(204, Version::Http11, true, false, &[]),
            &head("204 No Content"),
        );
        check(
            &error(100, Version::Http11, true, false, &[]),
            &head("100 Continue"),
        );
    }

    #[test]
    fn reasons() {
        assert_eq!(reason(200), "OK");
        assert_eq!(reason(416), "Range Not Satisfiable");
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(599), "Unknown");
    }
}
