//! Response-head writing: status line, fields and the small nginx-style error pages.
//!
//! This file owns the bytes of every response: [`Response`] is a response as a value (a
//! status, head fields and a body source), and writing it appends its head and in-memory body
//! to the caller's buffer. It never allocates, never decides which status to send, and never
//! touches the file a [`FileRegion`] names: the caller sends that region.

use std::borrow::Cow;
use std::fs::File;
use std::rc::Rc;

use super::{Status, Version};

/// Builds one response head at the end of the caller's buffer.
pub struct HeadWriter<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> HeadWriter<'o> {
    /// Starts a head: `HTTP/1.1 <code> <reason>`, `Server` and `Date` (an IMF-fixdate).
    pub fn new(out: &'o mut Vec<u8>, status: Status, date: &[u8]) -> Self {
        match status.status_line() {
            Some(line) => out.extend_from_slice(line.as_bytes()),
            None => {
                out.extend_from_slice(b"HTTP/1.1 ");
                out.extend_from_slice(itoa::Buffer::new().format(status.code()).as_bytes());
                out.push(b' ');
                out.extend_from_slice(status.reason().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"Server: percore\r\nDate: ");
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
        // Digits need no line-break check.
        self.out.extend_from_slice(b"Content-Length: ");
        self.out
            .extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self
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

const PAGE_START: &[u8] = b"<html><head><title>";
const PAGE_MIDDLE: &[u8] = b"</title></head><body><center><h1>";
const PAGE_END: &[u8] = b"</h1></center><hr><center>percore</center></body></html>";

/// A region of an open file, sent after the head (with sendfile on a plain socket).
#[derive(Clone, Debug)]
pub struct FileRegion {
    /// Shared with the file cache: the region is sent from its own offset, never the file's
    /// position, so one descriptor serves any number of responses at once.
    pub file: Rc<File>,
    /// The next byte to send.
    pub offset: u64,
    /// One past the last byte to send.
    pub end: u64,
}

/// What follows a response head.
#[derive(Debug)]
pub enum Body<'a> {
    /// Nothing, and no Content-Length (1xx, 204, 304, or a 204-like answer such as OPTIONS).
    None,
    /// The small nginx-style HTML page naming the status (errors and redirects).
    Page,
    /// These bytes: a cached file or part of it, a custom error page, a multipart body.
    Bytes(Cow<'a, [u8]>),
    /// A region of an open file.
    File(FileRegion),
}

/// A response as a value: what a responder decided, written by the connection.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: Status,
    /// Field lines prepared by the responder, each ending in CRLF (a cached file's
    /// Content-Type, validators and Accept-Ranges); written as they are.
    pub lines: &'a [u8],
    /// One field made for this response: Location, Allow, Content-Range, the Content-Type of
    /// a multipart body.
    pub field: Option<(&'static str, Cow<'a, [u8]>)>,
    /// Field lines the connection adds for this request (CORS), each ending in CRLF.
    pub extra_lines: &'a [u8],
    pub body: Body<'a>,
}

impl<'a> Response<'a> {
    /// The status with its small HTML page (or nothing, for a status without content).
    pub fn page(status: Status) -> Response<'a> {
        Response {
            status,
            lines: b"",
            extra_lines: b"",
            field: None,
            body: Body::Page,
        }
    }

    /// Adds the one extra field.
    pub fn with_field(mut self, name: &'static str, value: impl Into<Cow<'a, [u8]>>) -> Self {
        self.field = Some((name, value.into()));
        self
    }

    /// The length Content-Length announces, or None when the response has no content.
    pub fn content_length(&self) -> Option<u64> {
        if !self.status.has_content() {
            return None;
        }
        match &self.body {
            Body::None => None,
            Body::Page => Some(page_len(self.status)),
            Body::Bytes(bytes) => Some(bytes.len() as u64),
            Body::File(region) => Some(region.end.saturating_sub(region.offset)),
        }
    }

    /// Appends the head and, unless `head_only` (HEAD keeps Content-Length but sends no
    /// content), the body's bytes to `out`. A file body is returned, to be sent after them.
    pub fn write(
        self,
        out: &mut Vec<u8>,
        date: &[u8],
        version: Version,
        keep_alive: bool,
        head_only: bool,
    ) -> Option<FileRegion> {
        let length = self.content_length();
        let mut head = HeadWriter::new(out, self.status, date);
        head.raw(self.lines);
        if let Some((name, value)) = &self.field {
            head.header(name, value);
        }
        if !self.extra_lines.is_empty() {
            head.raw(self.extra_lines);
        }
        if let (Body::Page, Some(_)) = (&self.body, length) {
            head.header("Content-Type", b"text/html; charset=utf-8");
        }
        if let Some(length) = length {
            head.content_length(length);
        }
        head.finish(version, keep_alive);
        if head_only || matches!(length, None | Some(0)) {
            return None;
        }
        match self.body {
            Body::None => None,
            Body::Page => {
                write_page(out, self.status);
                None
            }
            Body::Bytes(bytes) => {
                out.extend_from_slice(&bytes);
                None
            }
            Body::File(region) => Some(region),
        }
    }
}

/// The length of the HTML page of `status`: its title appears twice.
fn page_len(status: Status) -> u64 {
    let title_len = 4 + status.reason().len();
    (PAGE_START.len() + PAGE_MIDDLE.len() + PAGE_END.len() + 2 * title_len) as u64
}

fn write_page(out: &mut Vec<u8>, status: Status) {
    let mut code = itoa::Buffer::new();
    let code = code.format(status.code()).as_bytes();
    let reason = status.reason().as_bytes();
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

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";
    const START: &str = "Server: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

    fn check(out: &[u8], expected: &str) {
        assert_eq!(String::from_utf8_lossy(out), expected);
    }

    fn written(
        response: Response<'_>,
        version: Version,
        keep_alive: bool,
        head_only: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let file = response.write(&mut out, DATE, version, keep_alive, head_only);
        assert!(file.is_none());
        out
    }

    fn page(status: Status, version: Version, keep_alive: bool, head_only: bool) -> Vec<u8> {
        written(Response::page(status), version, keep_alive, head_only)
    }

    #[test]
    fn head_writer_exact_bytes() {
        let mut out = b"previous response|".to_vec();
        let mut head = HeadWriter::new(&mut out, Status::OK, DATE);
        head.header("Content-Type", b"text/css")
            .content_length(1234567890123)
            .raw(b"ETag: \"1-2\"\r\nAccept-Ranges: bytes\r\n");
        head.finish(Version::Http11, true);
        check(
            &out,
            &format!("previous response|HTTP/1.1 200 OK\r\n{START}\
             Content-Type: text/css\r\nContent-Length: 1234567890123\r\nETag: \"1-2\"\r\nAccept-Ranges: bytes\r\n\r\n"),
        );
    }

    #[test]
    fn a_code_without_a_status_line_is_written_too() {
        let mut out = Vec::new();
        HeadWriter::new(&mut out, Status::from_code(299), DATE).finish(Version::Http11, true);
        check(&out, &format!("HTTP/1.1 299 Unknown\r\n{START}\r\n"));
    }

    #[test]
    fn head_writer_connection_fields() {
        let finished = |version, keep_alive| {
            let mut out = Vec::new();
            HeadWriter::new(&mut out, Status::NOT_MODIFIED, DATE).finish(version, keep_alive);
            out
        };
        let start = format!("HTTP/1.1 304 Not Modified\r\n{START}");
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
        let mut head = HeadWriter::new(&mut out, Status::MOVED_PERMANENTLY, DATE);
        head.header("Location", b"/a\r\nSet-Cookie: x\n/");
        head.finish(Version::Http11, true);
        check(
            &out,
            &format!(
                "HTTP/1.1 301 Moved Permanently\r\n{START}Location: /a  Set-Cookie: x /\r\n\r\n"
            ),
        );
    }

    #[test]
    fn error_page_keep_alive() {
        let body = "<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center><hr><center>percore</center></body></html>";
        assert_eq!(body.len(), 134);
        check(
            &page(Status::NOT_FOUND, Version::Http11, true, false),
            &format!(
                "HTTP/1.1 404 Not Found\r\n{START}\
                 Content-Type: text/html; charset=utf-8\r\nContent-Length: 134\r\n\r\n{body}"
            ),
        );
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        check(
            &page(Status::NOT_FOUND, Version::Http11, true, true),
            &format!(
                "HTTP/1.1 404 Not Found\r\n{START}\
                 Content-Type: text/html; charset=utf-8\r\nContent-Length: 134\r\n\r\n"
            ),
        );
        let bytes = Response {
            status: Status::OK,
            lines: b"Content-Type: text/plain\r\n",
            extra_lines: b"",
            field: None,
            body: Body::Bytes(Cow::Borrowed(b"hello")),
        };
        check(
            &written(bytes, Version::Http11, true, true),
            &format!(
                "HTTP/1.1 200 OK\r\n{START}Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
            ),
        );
    }

    #[test]
    fn error_close_and_http10() {
        let body = "<html><head><title>400 Bad Request</title></head><body><center><h1>400 Bad Request</h1></center><hr><center>percore</center></body></html>";
        check(
            &page(Status::BAD_REQUEST, Version::Http11, false, false),
            &format!(
                "HTTP/1.1 400 Bad Request\r\n{START}\
                 Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        check(
            &page(Status::BAD_REQUEST, Version::Http10, true, true),
            &format!(
                "HTTP/1.1 400 Bad Request\r\n{START}\
                 Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
                body.len()
            ),
        );
    }

    #[test]
    fn a_redirect_with_its_field() {
        let body = "<html><head><title>301 Moved Permanently</title></head><body><center><h1>301 Moved Permanently</h1></center><hr><center>percore</center></body></html>";
        let redirect =
            Response::page(Status::MOVED_PERMANENTLY).with_field("Location", b"/dir/".to_vec());
        check(
            &written(redirect, Version::Http11, true, false),
            &format!(
                "HTTP/1.1 301 Moved Permanently\r\n{START}\
                 Location: /dir/\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
    }

    #[test]
    fn statuses_without_content_send_no_length() {
        for (status, line) in [
            (Status::NOT_MODIFIED, "304 Not Modified"),
            (Status::NO_CONTENT, "204 No Content"),
            (Status::SWITCHING_PROTOCOLS, "101 Switching Protocols"),
        ] {
            check(
                &page(status, Version::Http11, true, false),
                &format!("HTTP/1.1 {line}\r\n{START}\r\n"),
            );
        }
        let options = Response {
            status: Status::NO_CONTENT,
            lines: b"",
            extra_lines: b"",
            field: Some(("Allow", Cow::Borrowed(b"GET, HEAD"))),
            body: Body::None,
        };
        check(
            &written(options, Version::Http11, true, false),
            &format!("HTTP/1.1 204 No Content\r\n{START}Allow: GET, HEAD\r\n\r\n"),
        );
    }

    #[test]
    fn a_file_body_is_returned_not_written() {
        let Ok(file) = File::open("/dev/null") else {
            panic!("/dev/null");
        };
        let response = Response {
            status: Status::PARTIAL_CONTENT,
            lines: b"",
            extra_lines: b"",
            field: Some(("Content-Range", Cow::Borrowed(b"bytes 10-19/100"))),
            body: Body::File(FileRegion {
                file: Rc::new(file),
                offset: 10,
                end: 20,
            }),
        };
        let mut out = Vec::new();
        let region = response.write(&mut out, DATE, Version::Http11, true, false);
        assert!(matches!(
            region,
            Some(FileRegion {
                offset: 10,
                end: 20,
                ..
            })
        ));
        check(
            &out,
            &format!("HTTP/1.1 206 Partial Content\r\n{START}Content-Range: bytes 10-19/100\r\nContent-Length: 10\r\n\r\n"),
        );
        // HEAD: the same head, and nothing to send after it.
        let Ok(file) = File::open("/dev/null") else {
            panic!("/dev/null");
        };
        let head = Response {
            status: Status::OK,
            lines: b"",
            extra_lines: b"",
            field: None,
            body: Body::File(FileRegion {
                file: Rc::new(file),
                offset: 0,
                end: 5,
            }),
        };
        assert!(head
            .write(&mut Vec::new(), DATE, Version::Http11, true, true)
            .is_none());
    }
}
