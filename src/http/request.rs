//! Request-head parsing: one head from the front of a buffer, with its limits and framing rules.
//!
//! This file owns the decision whether a head is complete, acceptable and how its body is
//! framed. It never reads past the first head (the caller slices `&buf[head_len..]` for the
//! next pipelined request) and never allocates: httparse writes into uninitialised stack slots.

use std::mem::MaybeUninit;

use super::{BodyFraming, Limits, Method, RequestError, Version};

/// The most header fields [`parse_request`] can hold; a larger `Limits::max_headers` is capped here.
pub const MAX_HEADERS_CAP: usize = 256;

/// The outcome of looking at the front of a buffer.
// Boxing the request would allocate once per request; the enum lives on the stack only briefly.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parse<'b> {
    /// A whole, acceptable head; its bytes are `buf[..request.head_len]`.
    Complete(Request<'b>),
    /// More bytes are needed; nothing is consumed.
    Partial,
}

/// One parsed request head, borrowing the caller's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Request<'b> {
    pub method: Method,
    /// The method token as sent ("GET", "PROPFIND").
    pub method_name: &'b [u8],
    pub version: Version,
    /// The raw request-target as sent.
    pub target: &'b [u8],
    /// The path without the query; "/" for an absolute-form target without one; "*" stays "*".
    pub path: &'b [u8],
    /// The bytes after the first '?', empty if none.
    pub query: &'b [u8],
    /// The Host field, or the authority of an absolute-form target.
    pub host: Option<&'b [u8]>,
    pub keep_alive: bool,
    /// An `Upgrade` field is present (whatever it lists): a request without one is answered
    /// without looking for the WebSocket token again.
    pub has_upgrade: bool,
    pub body: BodyFraming,
    pub if_match: Option<&'b [u8]>,
    pub if_none_match: Option<&'b [u8]>,
    pub if_modified_since: Option<&'b [u8]>,
    pub if_unmodified_since: Option<&'b [u8]>,
    pub range: Option<&'b [u8]>,
    pub if_range: Option<&'b [u8]>,
    /// The bytes to consume: leading empty lines, request line, fields and the blank line.
    pub head_len: usize,
    /// The field lines, validated by httparse, ending with the blank line.
    field_block: &'b [u8],
}

impl<'b> Request<'b> {
    /// Every (name, value) in the order sent; values without surrounding whitespace.
    pub fn headers(&self) -> impl Iterator<Item = (&'b [u8], &'b [u8])> {
        FieldLines {
            rest: self.field_block,
        }
    }

    /// The first value of the field `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Whether any `name` field lists `token` in its comma-separated value (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .any(|(_, v)| list_has(v, token.as_bytes()))
    }
}

/// Parses the request head at the front of `buf`.
///
/// Incomplete input is `Ok(Parse::Partial)` unless it already breaks a limit. The only change
/// ever made to `buf` is in a complete request line naming a higher HTTP/1 minor version
/// ("HTTP/1.9"), which becomes "HTTP/1.1": RFC 9110 §6.2 asks a server to "process the request
/// as if it were the highest minor version it supports", and the head parser knows only 1.0
/// and 1.1. A request parsed again after that change parses the same.
pub fn parse_request<'b>(buf: &'b mut [u8], limits: &Limits) -> Result<Parse<'b>, RequestError> {
    let line_start = leading_empty_lines(buf);
    let line_end = buf
        .get(line_start..)
        .and_then(|rest| memchr::memchr(b'\n', rest))
        .map(|lf| line_start + lf);
    if let Some(line) = line_end.and_then(|end| buf.get_mut(line_start..end)) {
        accept_higher_minor(line);
    }
    let buf: &'b [u8] = buf;
    let after_blank = buf.get(line_start..).unwrap_or_default();
    let line_len = match line_end {
        Some(end) => Some(end - line_start + 1),
        None if after_blank.len() > limits.max_request_line => {
            return Err(RequestError::UriTooLong)
        }
        None => None,
    };
    if line_len.is_some_and(|len| len > limits.max_request_line) {
        return Err(RequestError::UriTooLong);
    }

    // Parsing at most max_head bytes bounds the work on a head that never ends.
    let window = buf.get(..limits.max_head).unwrap_or(buf);
    let mut slots = [const { MaybeUninit::<httparse::Header<'b>>::uninit() }; MAX_HEADERS_CAP];
    let slots = slots
        .get_mut(..limits.max_headers.min(MAX_HEADERS_CAP))
        .unwrap_or_default();
    let mut head = httparse::Request::new(&mut []);
    let head_len = match head.parse_with_uninit_headers(window, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head => {
            return Err(RequestError::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Parse::Partial),
        // The version is judged once the line is complete ("HTTP/2." may become "HTTP/2.0",
        // 505; "HTTP/1.9" is served as 1.1), so the answer does not depend on how the line
        // was split; the request-line limit bounds the wait.
        Err(httparse::Error::Version) if line_len.is_none() => return Ok(Parse::Partial),
        Err(error) => return Err(map_httparse_error(error, after_blank)),
    };
    let (Some(method), Some(target), Some(minor), Some(line_len)) =
        (head.method, head.path, head.version, line_len)
    else {
        return Err(RequestError::BadRequest("invalid request line"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let target = target.as_bytes();
    let (path, query, authority) = split_target(target)?;
    let fields = Fields::scan(head.headers)?;

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message
    // that contains more than one Host header field line or a Host header field with an
    // invalid field value."
    if fields.host_count > 1 {
        return Err(RequestError::BadRequest("more than one Host"));
    }
    if version == Version::Http11 && fields.host_count == 0 {
        return Err(RequestError::BadRequest("missing Host"));
    }
    if fields.host.is_some_and(|host| !is_valid_host(host)) {
        return Err(RequestError::BadRequest("invalid Host"));
    }
    // RFC 9112 §3.2.2: "the origin server MUST ignore the received Host header field (if any)
    // and instead use the host information of the request-target."
    let host = authority.or(fields.host);

    Ok(Parse::Complete(Request {
        method: method_of(method),
        method_name: method.as_bytes(),
        version,
        target,
        path,
        query,
        host,
        keep_alive: match version {
            Version::Http11 => !fields.close,
            Version::Http10 => fields.keep_alive && !fields.close,
        },
        has_upgrade: fields.has_upgrade,
        body: fields.framing(version, limits.max_body)?,
        if_match: fields.if_match,
        if_none_match: fields.if_none_match,
        if_modified_since: fields.if_modified_since,
        if_unmodified_since: fields.if_unmodified_since,
        range: fields.range,
        if_range: fields.if_range,
        head_len,
        field_block: buf.get(line_start + line_len..head_len).unwrap_or_default(),
    }))
}

/// The number of bytes of empty lines before the request line.
///
/// RFC 9112 §2.2: "a server that is expecting to receive and parse a request-line SHOULD
/// ignore at least one empty line (CRLF) received prior to the request-line."
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        match buf.get(pos..) {
            Some([b'\r', b'\n', ..]) => pos += 2,
            Some([b'\n', ..]) => pos += 1,
            _ => return pos,
        }
    }
}

/// The version at the end of a request line (without its LF) if it is HTTP/1.2 to HTTP/1.9.
fn higher_minor_digit(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digit = line.len().checked_sub(1)?;
    let version = line.get(digit.checked_sub(8)?..digit)?;
    let minor = *line.get(digit)?;
    (version == b" HTTP/1." && (b'2'..=b'9').contains(&minor)).then_some(digit)
}

/// Rewrites a request line's "HTTP/1.2" to "HTTP/1.9" as "HTTP/1.1" (RFC 9110 §6.2).
fn accept_higher_minor(line: &mut [u8]) {
    if let Some(minor) = higher_minor_digit(line).and_then(|digit| line.get_mut(digit)) {
        *minor = b'1';
    }
}

fn map_httparse_error(error: httparse::Error, request_line: &[u8]) -> RequestError {
    match error {
        httparse::Error::Version if names_other_http_version(request_line) => {
            RequestError::VersionNotSupported
        }
        httparse::Error::Version => RequestError::BadRequest("invalid HTTP version"),
        httparse::Error::TooManyHeaders => RequestError::HeadersTooLarge,
        httparse::Error::HeaderName => RequestError::BadRequest("invalid header name"),
        httparse::Error::HeaderValue => RequestError::BadRequest("invalid header value"),
        httparse::Error::NewLine => RequestError::BadRequest("invalid line ending"),
        httparse::Error::Token | httparse::Error::Status => {
            RequestError::BadRequest("invalid request line")
        }
    }
}

/// Whether the request line ends in a well-formed version other than HTTP/1.x ("HTTP/2.0",
/// "HTTP/3", "HTTP/0.9"), which deserves 505 rather than 400.
fn names_other_http_version(request_line: &[u8]) -> bool {
    let line_end = request_line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(request_line.len());
    let line = request_line.get(..line_end).unwrap_or_default();
    // request-line = method SP request-target SP HTTP-version
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if method.is_empty() || target.is_empty() || version == b"HTTP/1.0" || version == b"HTTP/1.1" {
        return false;
    }
    match version.strip_prefix(b"HTTP/") {
        Some([major]) => major.is_ascii_digit(),
        Some([major, b'.', minor]) => major.is_ascii_digit() && minor.is_ascii_digit(),
        _ => false,
    }
}

fn method_of(token: &str) -> Method {
    match token {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    }
}

type TargetParts<'b> = (&'b [u8], &'b [u8], Option<&'b [u8]>);

/// Splits a request-target into (path, query, authority of an absolute-form target).
fn split_target(target: &[u8]) -> Result<TargetParts<'_>, RequestError> {
    if target.first() == Some(&b'/') {
        let (path, query) = split_query(target);
        return Ok((path, query, None));
    }
    if target == b"*" {
        return Ok((target, b"", None));
    }
    let after_scheme =
        strip_scheme(target).ok_or(RequestError::BadRequest("invalid request target"))?;
    let authority_end = after_scheme
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(after_scheme.len());
    let (authority, path_and_query) = after_scheme.split_at(authority_end);
    if authority.is_empty() || !is_valid_host(authority) {
        return Err(RequestError::BadRequest("invalid request target"));
    }
    let (path, query) = split_query(path_and_query);
    let path = if path.is_empty() { b"/" } else { path };
    Ok((path, query, Some(authority)))
}

fn split_query(path_and_query: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'?', path_and_query) {
        Some(q) => (
            path_and_query.get(..q).unwrap_or_default(),
            path_and_query.get(q + 1..).unwrap_or_default(),
        ),
        None => (path_and_query, b""),
    }
}

/// The rest of an absolute-form target after `scheme "://"`.
/// RFC 3986 §3.1: `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    let colon = target.iter().position(|&b| b == b':')?;
    let (scheme, rest) = target.split_at(colon);
    let valid = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if valid {
        rest.strip_prefix(b"://")
    } else {
        None
    }
}

/// RFC 3986 `host [ ":" port ]`: unreserved, pct-encoded, sub-delims, ':' and IP-literal brackets.
fn is_valid_host(host: &[u8]) -> bool {
    host.iter().all(|&b| HOST_BYTES[usize::from(b)])
}

/// The bytes a Host value may hold: reg-name, IP-literal and port characters (unreserved,
/// pct-encoded, sub-delims, ':' and brackets), as a table: one load per byte.
const HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            );
        b += 1;
    }
    table
};

/// What one pass over the header fields learns.
#[derive(Default)]
struct Fields<'b> {
    host: Option<&'b [u8]>,
    host_count: usize,
    content_length: Option<u64>,
    /// The number of transfer codings listed across all Transfer-Encoding fields.
    codings: usize,
    has_transfer_encoding: bool,
    last_coding_is_chunked: bool,
    close: bool,
    keep_alive: bool,
    has_upgrade: bool,
    if_match: Option<&'b [u8]>,
    if_none_match: Option<&'b [u8]>,
    if_modified_since: Option<&'b [u8]>,
    if_unmodified_since: Option<&'b [u8]>,
    range: Option<&'b [u8]>,
    if_range: Option<&'b [u8]>,
}

impl<'b> Fields<'b> {
    fn scan(headers: &[httparse::Header<'b>]) -> Result<Self, RequestError> {
        let mut fields = Fields::default();
        for header in headers {
            fields.take(header.name.as_bytes(), header.value)?;
        }
        Ok(fields)
    }

    /// Records one field; dispatching on the name's length keeps the comparisons few.
    fn take(&mut self, name: &[u8], value: &'b [u8]) -> Result<(), RequestError> {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        match name.len() {
            4 if is(b"host") => {
                self.host_count += 1;
                self.host.get_or_insert(value);
            }
            5 if is(b"range") => first(&mut self.range, value),
            8 if is(b"if-match") => first(&mut self.if_match, value),
            8 if is(b"if-range") => first(&mut self.if_range, value),
            7 if is(b"upgrade") => self.has_upgrade = true,
            10 if is(b"connection") => {
                for token in list_elements(value) {
                    self.close |= token.eq_ignore_ascii_case(b"close");
                    self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            13 if is(b"if-none-match") => first(&mut self.if_none_match, value),
            14 if is(b"content-length") => {
                let length = parse_content_length(value)?;
                // RFC 9112 §6.3: "If a message is received without Transfer-Encoding and with
                // an invalid Content-Length header field, then the message framing is invalid
                // and the recipient MUST treat it as an unrecoverable error."
                if self.content_length.is_some_and(|seen| seen != length) {
                    return Err(RequestError::BadRequest("conflicting Content-Length"));
                }
                self.content_length = Some(length);
            }
            17 if is(b"if-modified-since") => first(&mut self.if_modified_since, value),
            17 if is(b"transfer-encoding") => {
                self.has_transfer_encoding = true;
                for coding in list_elements(value) {
                    self.codings += 1;
                    self.last_coding_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
                }
            }
            19 if is(b"if-unmodified-since") => first(&mut self.if_unmodified_since, value),
            _ => {}
        }
        Ok(())
    }

    /// Decides the body framing (RFC 9112 §6.1 and §6.3).
    fn framing(&self, version: Version, max_body: u64) -> Result<BodyFraming, RequestError> {
        if self.has_transfer_encoding {
            // §6.1: "A server or client that receives an HTTP/1.0 message containing a
            // Transfer-Encoding header field MUST treat the message as if the framing is faulty".
            if version == Version::Http10 {
                return Err(RequestError::BadRequest("Transfer-Encoding in HTTP/1.0"));
            }
            // §6.3: a message with both "ought to be handled as an error".
            if self.content_length.is_some() {
                return Err(RequestError::BadRequest(
                    "Transfer-Encoding with Content-Length",
                ));
            }
            // §6.3: "If a Transfer-Encoding header field is present in a request and the
            // chunked transfer coding is not the final encoding, ... the server MUST respond
            // with the 400 (Bad Request) status code and then close the connection."
            if !self.last_coding_is_chunked {
                return Err(RequestError::BadRequest("chunked is not the final coding"));
            }
            // §6.1: "A server that receives a request message with a transfer coding it does
            // not understand SHOULD respond with 501 (Not Implemented)."
            if self.codings > 1 {
                return Err(RequestError::NotImplemented);
            }
            return Ok(BodyFraming::Chunked);
        }
        match self.content_length {
            Some(length) if length > max_body => Err(RequestError::PayloadTooLarge),
            Some(length) => Ok(BodyFraming::Length(length)),
            None => Ok(BodyFraming::None),
        }
    }
}

fn first<'b>(slot: &mut Option<&'b [u8]>, value: &'b [u8]) {
    slot.get_or_insert(value);
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`.
fn parse_content_length(value: &[u8]) -> Result<u64, RequestError> {
    if value.is_empty() {
        return Err(RequestError::BadRequest("invalid Content-Length"));
    }
    value.iter().try_fold(0u64, |length, &b| {
        if !b.is_ascii_digit() {
            return Err(RequestError::BadRequest("invalid Content-Length"));
        }
        length
            .checked_mul(10)
            .and_then(|l| l.checked_add(u64::from(b - b'0')))
            .ok_or(RequestError::BadRequest("Content-Length overflows"))
    })
}

/// The non-empty elements of a comma-separated list, without surrounding whitespace.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|element| element.trim_ascii())
        .filter(|element| !element.is_empty())
}

fn list_has(value: &[u8], token: &[u8]) -> bool {
    list_elements(value).any(|element| element.eq_ignore_ascii_case(token))
}

/// Iterates a field block that httparse has already validated: `name ":" OWS value OWS` lines
/// ended by CRLF or LF, then an empty line.
struct FieldLines<'b> {
    rest: &'b [u8],
}

impl<'b> Iterator for FieldLines<'b> {
    type Item = (&'b [u8], &'b [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let line_end = self.rest.iter().position(|&b| b == b'\n')?;
        let line = self.rest.get(..line_end)?;
        self.rest = self.rest.get(line_end + 1..)?;
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line.get(..colon)?;
        let value = line.get(colon + 1..)?.trim_ascii();
        Some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    const FIREFOX: &[u8] = b"GET /static/app.js?v=3 HTTP/1.1\r\n\
Host: example.com:8001\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: http://example.com:8001/index.html\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
Sec-Fetch-Dest: script\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\
If-None-Match: \"5f3c-1a2b\"\r\n\
If-Modified-Since: Tue, 15 Oct 2024 08:12:31 GMT\r\n\
Priority: u=2\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\r\n";

    /// A copy of `input` that outlives the test (the parser may rewrite a version digit).
    fn copy(input: &[u8]) -> &'static mut [u8] {
        Box::leak(input.to_vec().into_boxed_slice())
    }

    fn parse(input: &[u8]) -> Result<Parse<'static>, RequestError> {
        parse_request(copy(input), &Limits::default())
    }

    fn complete(input: &[u8]) -> Request<'static> {
        match parse(input) {
            Ok(Parse::Complete(request)) => request,
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn check_err(input: &[u8], expected: RequestError) {
        check_err_with(input, &Limits::default(), expected);
    }

    fn check_err_with(input: &[u8], limits: &Limits, expected: RequestError) {
        match parse_request(copy(input), limits) {
            Err(error) => assert_eq!(
                error,
                expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            ),
            Ok(other) => panic!(
                "expected {expected:?} for {:?}, got {other:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    /// `input` is refused as a bad request (400), whatever the reason.
    fn check_bad(input: &[u8]) {
        match parse(input) {
            Err(RequestError::BadRequest(_)) => {}
            other => panic!(
                "expected a bad request for {:?}, got {other:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    fn check_framing(input: &[u8], expected: BodyFraming) {
        assert_eq!(complete(input).body, expected);
    }

    /// Every proper prefix of `input` must be Partial, and the whole must be complete.
    fn check_every_prefix_partial(input: &[u8]) {
        for end in 0..input.len() {
            match parse(&input[..end]) {
                Ok(Parse::Partial) => {}
                other => panic!(
                    "prefix {end} of {:?} gave {other:?}",
                    String::from_utf8_lossy(input)
                ),
            }
        }
        assert_eq!(complete(input).head_len, input.len());
    }

    #[test]
    fn minimal_get() {
        let r = complete(MINIMAL_GET);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.target, b"/");
        assert_eq!(r.path, b"/");
        assert_eq!(r.query, b"");
        assert_eq!(r.host, Some(&b"a"[..]));
        assert!(r.keep_alive);
        assert_eq!(r.body, BodyFraming::None);
        assert_eq!(r.head_len, MINIMAL_GET.len());
        assert_eq!(r.if_none_match, None);
        assert_eq!(
            r.headers().collect::<Vec<_>>(),
            vec![(&b"Host"[..], &b"a"[..])]
        );
    }

    #[test]
    fn firefox_request() {
        assert!(FIREFOX.len() > 450 && FIREFOX.len() < 700);
        let r = complete(FIREFOX);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, b"/static/app.js");
        assert_eq!(r.query, b"v=3");
        assert_eq!(r.host, Some(&b"example.com:8001"[..]));
        assert!(r.keep_alive);
        assert_eq!(r.if_none_match, Some(&b"\"5f3c-1a2b\""[..]));
        assert_eq!(
            r.if_modified_since,
            Some(&b"Tue, 15 Oct 2024 08:12:31 GMT"[..])
        );
        assert_eq!(r.if_match, None);
        assert_eq!(r.range, None);
        assert_eq!(r.headers().count(), 16);
        assert_eq!(
            r.header("accept-encoding"),
            Some(&b"gzip, deflate, br, zstd"[..])
        );
        assert_eq!(
            r.header("COOKIE"),
            Some(&b"session=0123456789abcdef0123456789abcdef; theme=dark"[..])
        );
        assert_eq!(r.header("Missing"), None);
        assert!(r.has_token("Accept-Encoding", "BR"));
        assert!(!r.has_token("Accept-Encoding", "compress"));
        assert_eq!(r.head_len, FIREFOX.len());
        check_every_prefix_partial(FIREFOX);
    }

    #[test]
    fn methods() {
        let check = |input: &[u8], expected: Method| assert_eq!(complete(input).method, expected);
        check(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", Method::Head);
        check(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Method::Options);
        check(b"DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n", Method::Other);
        check(b"PROPFIND /x HTTP/1.1\r\nHost: a\r\n\r\n", Method::Other);
        // Methods are case-sensitive (RFC 9110 §9.1).
        check(b"get /x HTTP/1.1\r\nHost: a\r\n\r\n", Method::Other);
        assert_eq!(
            complete(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").path,
            b"*"
        );
    }

    #[test]
    fn targets() {
        let check = |input: &[u8], path: &[u8], query: &[u8], host: &[u8]| {
            let r = complete(input);
            assert_eq!(
                (r.path, r.query, r.host),
                (path, query, Some(host)),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        };
        check(
            b"GET /a/b?x=1&y HTTP/1.1\r\nHost: h\r\n\r\n",
            b"/a/b",
            b"x=1&y",
            b"h",
        );
        check(b"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", b"/a", b"", b"h");
        check(
            b"GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n",
            b"/a",
            b"b?c",
            b"h",
        );
        // Absolute form: the target's authority wins over Host (RFC 9112 §3.2.2).
        check(
            b"GET http://h:1/a?q HTTP/1.1\r\nHost: other\r\n\r\n",
            b"/a",
            b"q",
            b"h:1",
        );
        check(
            b"GET http://h:1 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"/",
            b"",
            b"h:1",
        );
        check(
            b"GET https://h?q=2 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"/",
            b"q=2",
            b"h",
        );
        check(
            b"GET http://[::1]:8001/x HTTP/1.0\r\n\r\n",
            b"/x",
            b"",
            b"[::1]:8001",
        );
        assert_eq!(
            complete(b"GET http://h:1/a?q HTTP/1.1\r\nHost: h\r\n\r\n").target,
            b"http://h:1/a?q"
        );
    }

    #[test]
    fn invalid_targets() {
        check_bad(b"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n");
        check_bad(b"GET http:/x HTTP/1.1\r\nHost: h\r\n\r\n");
        check_bad(b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n");
        check_bad(b"GET 1http://h/ HTTP/1.1\r\nHost: h\r\n\r\n");
        check_bad(b"GET ** HTTP/1.1\r\nHost: h\r\n\r\n");
        check_bad(b"GET http://h\"/ HTTP/1.1\r\nHost: h\r\n\r\n");
        // Not UTF-8 in the target.
        check_bad(b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n");
    }

    #[test]
    fn head_and_http10() {
        let r = complete(b"HEAD /index.html HTTP/1.0\r\n\r\n");
        assert_eq!(
            (r.method, r.version, r.keep_alive, r.host),
            (Method::Head, Version::Http10, false, None)
        );
        let r = complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!((r.version, r.keep_alive), (Version::Http10, true));
        let r = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
        assert!(!r.keep_alive);
        let r = complete(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n");
        assert_eq!(r.host, Some(&b"a"[..]));
    }

    #[test]
    fn connection_tokens() {
        let keep_alive = |input: &[u8]| complete(input).keep_alive;
        assert!(!keep_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(keep_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"
        ));
        let r = complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(r.has_token("connection", "upgrade"));
        assert!(r.has_token("Upgrade", "WebSocket"));
        assert!(!r.has_token("Connection", "close"));
        assert!(!r.has_token("Connection", "Upgrade, keep-alive"));
    }

    #[test]
    fn header_values_are_trimmed_and_repeated_fields_kept() {
        let r = complete(b"GET / HTTP/1.1\r\nHost:a\r\nX: \t v 1 \t\r\nX: 2\r\nEmpty:\r\nRange: bytes=0-1\r\nIf-Range: \"e\"\r\nIf-Match: *\r\nIf-Unmodified-Since: d\r\n\r\n");
        let all: Vec<_> = r.headers().collect();
        assert_eq!(
            all,
            vec![
                (&b"Host"[..], &b"a"[..]),
                (b"X", b"v 1"),
                (b"X", b"2"),
                (b"Empty", b""),
                (b"Range", b"bytes=0-1"),
                (b"If-Range", b"\"e\""),
                (b"If-Match", b"*"),
                (b"If-Unmodified-Since", b"d"),
            ]
        );
        assert_eq!(r.header("x"), Some(&b"v 1"[..]));
        assert_eq!(r.range, Some(&b"bytes=0-1"[..]));
        assert_eq!(r.if_range, Some(&b"\"e\""[..]));
        assert_eq!(r.if_match, Some(&b"*"[..]));
        assert_eq!(r.if_unmodified_since, Some(&b"d"[..]));
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let input = b"GET /x HTTP/1.1\nHost: a\nAccept: */*\n\n";
        let r = complete(input);
        assert_eq!(r.head_len, input.len());
        assert_eq!(r.header("accept"), Some(&b"*/*"[..]));
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let input = b"\r\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let r = complete(input);
        assert_eq!(r.head_len, input.len());
        assert_eq!(r.host, Some(&b"a"[..]));
        check_every_prefix_partial(input);
        check_bad(b"\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    #[test]
    fn every_prefix_is_partial() {
        check_every_prefix_partial(MINIMAL_GET);
        check_every_prefix_partial(b"HEAD / HTTP/1.0\r\n\r\n");
        check_every_prefix_partial(
            b"POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        check_every_prefix_partial(
            b"GET http://h/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
    }

    #[test]
    fn versions() {
        check_err(
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            RequestError::VersionNotSupported,
        );
        check_err(
            b"GET / HTTP/3\r\nHost: a\r\n\r\n",
            RequestError::VersionNotSupported,
        );
        check_err(b"GET / HTTP/0.9\r\n\r\n", RequestError::VersionNotSupported);
        check_bad(b"GET / HTTP/1.10\r\nHost: a\r\n\r\n");
        check_bad(b"GET / http/1.1\r\nHost: a\r\n\r\n");
        check_bad(b"GET / HTTP/x.y\r\nHost: a\r\n\r\n");
        check_bad(b"GET / FTP/1.1\r\nHost: a\r\n\r\n");
        check_bad(b"GET /\r\n\r\n");
    }

    #[test]
    fn host_rules() {
        check_err(
            b"GET / HTTP/1.1\r\n\r\n",
            RequestError::BadRequest("missing Host"),
        );
        check_err(
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            RequestError::BadRequest("more than one Host"),
        );
        check_err(
            b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
            RequestError::BadRequest("more than one Host"),
        );
        check_err(
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            RequestError::BadRequest("invalid Host"),
        );
        check_err(
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            RequestError::BadRequest("invalid Host"),
        );
        // The absolute form does not excuse a missing Host in HTTP/1.1 (RFC 9112 §3.2).
        check_err(
            b"GET http://h/ HTTP/1.1\r\n\r\n",
            RequestError::BadRequest("missing Host"),
        );
        assert_eq!(
            complete(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").host,
            Some(&b""[..])
        );
    }

    #[test]
    fn body_framing() {
        check_framing(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            BodyFraming::Length(0),
        );
        check_framing(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n",
            BodyFraming::Length(42),
        );
        check_framing(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
            BodyFraming::Length(7),
        );
        check_framing(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n",
            BodyFraming::Length(1 << 20),
        );
        check_framing(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            BodyFraming::Chunked,
        );
        check_framing(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD \r\n\r\n",
            BodyFraming::Chunked,
        );
        check_framing(
            b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
            BodyFraming::Length(3),
        );
    }

    #[test]
    fn body_framing_errors() {
        let bad = RequestError::BadRequest;
        check_err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", bad("Transfer-Encoding with Content-Length"));
        check_err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", bad("Transfer-Encoding with Content-Length"));
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            bad("conflicting Content-Length"),
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
            bad("invalid Content-Length"),
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n",
            bad("invalid Content-Length"),
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\n",
            bad("invalid Content-Length"),
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
            bad("invalid Content-Length"),
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
            bad("Content-Length overflows"),
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n",
            RequestError::PayloadTooLarge,
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
            RequestError::PayloadTooLarge,
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            RequestError::NotImplemented,
        );
        check_err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", RequestError::NotImplemented);
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            RequestError::NotImplemented,
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            bad("chunked is not the final coding"),
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            bad("chunked is not the final coding"),
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
            bad("chunked is not the final coding"),
        );
        check_err(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
            bad("chunked is not the final coding"),
        );
        check_err(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            bad("Transfer-Encoding in HTTP/1.0"),
        );
    }

    #[test]
    fn malformed_heads() {
        // Malformed request lines.
        check_bad(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n");
        check_bad(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n");
        check_bad(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n");
        check_bad(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        check_bad(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n");
        check_bad(b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n");
        // Bare CR in the request line, in a field line, and as the blank line.
        check_bad(b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\rHost: a\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\nHost: a\r\n\rX");
        // obs-fold (RFC 9112 §5.2: reject with 400).
        check_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\tz\r\n\r\n");
        // Whitespace between name and colon (RFC 9112 §5.1: MUST reject with 400).
        check_bad(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n");
        // Invalid name and value bytes.
        check_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\nHost: a\r\n: z\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n");
        check_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n");
        // A space before the first field name.
        check_bad(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n");
    }

    #[test]
    fn obs_text_in_values_is_kept() {
        let r = complete(b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n");
        assert_eq!(r.header("x"), Some(&b"caf\xc3\xa9"[..]));
    }

    #[test]
    fn request_line_limit() {
        let limits = Limits {
            max_request_line: 32,
            ..Limits::default()
        };
        let line = |target_len: usize| {
            let mut v = b"GET /".to_vec();
            v.extend_from_slice(&vec![b'a'; target_len - 1]);
            v.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
            v
        };
        // "GET " + target + " HTTP/1.1\r\n" is 4 + n + 11 bytes.
        let at_limit = line(17);
        assert!(matches!(
            parse_request(copy(&at_limit), &limits),
            Ok(Parse::Complete(_))
        ));
        check_err_with(&line(18), &limits, RequestError::UriTooLong);
        // No line end yet: Partial up to the limit, 414 beyond it.
        let unterminated = &line(40)[..33];
        assert!(matches!(
            parse_request(copy(&unterminated[..32]), &limits),
            Ok(Parse::Partial)
        ));
        check_err_with(unterminated, &limits, RequestError::UriTooLong);
        // The default limit: an 8 KiB target.
        check_err(&line(8192), RequestError::UriTooLong);
        check_err(&line(9000)[..8193], RequestError::UriTooLong);
    }

    #[test]
    fn head_limit() {
        let limits = Limits {
            max_head: 64,
            ..Limits::default()
        };
        let head = |filler: usize| {
            let mut v = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
            v.extend_from_slice(&vec![b'x'; filler]);
            v.extend_from_slice(b"\r\n\r\n");
            v
        };
        // 16 + 9 + 3 + n + 4 bytes.
        let at_limit = head(32);
        assert_eq!(at_limit.len(), 64);
        assert!(matches!(
            parse_request(copy(&at_limit), &limits),
            Ok(Parse::Complete(_))
        ));
        check_err_with(&head(33), &limits, RequestError::HeadersTooLarge);
        // Unfinished: Partial within the limit, 431 beyond it.
        let long = head(100);
        assert!(matches!(
            parse_request(copy(&long[..64]), &limits),
            Ok(Parse::Partial)
        ));
        check_err_with(&long[..65], &limits, RequestError::HeadersTooLarge);
        // Endless empty lines count against the head too.
        check_err_with(&[b'\n'; 65], &limits, RequestError::HeadersTooLarge);
        // A complete head followed by more bytes is judged by its own length.
        let mut pipelined = at_limit.clone();
        pipelined.extend_from_slice(MINIMAL_GET);
        assert!(
            matches!(parse_request(copy(&pipelined), &limits), Ok(Parse::Complete(r)) if r.head_len == 64)
        );
    }

    #[test]
    fn header_count_limit() {
        let limits = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let three = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(matches!(
            parse_request(copy(three), &limits),
            Ok(Parse::Complete(_))
        ));
        let four = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        check_err_with(four, &limits, RequestError::HeadersTooLarge);
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for _ in 0..100 {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        check_err(&many, RequestError::HeadersTooLarge);
    }

    #[test]
    fn pipelined_stream_split_at_every_byte() {
        let requests: [&[u8]; 3] = [
            b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HEAD /two?x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
            b"\r\nGET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        ];
        let stream = requests.concat();
        let expected = [
            (&b"/one"[..], Method::Get, true),
            (&b"/two"[..], Method::Head, true),
            (&b"/three"[..], Method::Get, false),
        ];
        for split in 0..=stream.len() {
            let mut buffer = stream[..split].to_vec();
            let mut pending = &stream[split..];
            let mut seen = Vec::new();
            loop {
                match parse(&buffer) {
                    Ok(Parse::Complete(r)) => {
                        seen.push((r.path.to_vec(), r.method, r.keep_alive));
                        let head_len = r.head_len;
                        buffer.drain(..head_len);
                    }
                    Ok(Parse::Partial) if !pending.is_empty() => {
                        buffer.extend_from_slice(pending);
                        pending = &[];
                    }
                    Ok(Parse::Partial) => break,
                    Err(error) => panic!("split {split}: {error}"),
                }
            }
            assert!(buffer.is_empty(), "split {split}");
            let seen: Vec<_> = seen.iter().map(|(p, m, k)| (&p[..], *m, *k)).collect();
            assert_eq!(seen, expected, "split {split}");
        }
    }

    #[test]
    fn an_upgrade_field_is_noted_whatever_it_lists() {
        assert!(!complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").has_upgrade);
        for field in ["Upgrade: websocket", "UPGRADE: h2c", "upgrade:"] {
            let head = format!("GET / HTTP/1.1\r\nHost: a\r\n{field}\r\n\r\n");
            assert!(complete(head.as_bytes()).has_upgrade, "{field}");
        }
    }

    /// RFC 9110 §6.2: a higher minor version is served as the highest one supported.
    #[test]
    fn higher_minor_versions_are_served_as_1_1() {
        for version in ["1.2", "1.9"] {
            let input = format!("GET /x HTTP/{version}\r\nHost: a\r\n\r\n");
            let r = complete(input.as_bytes());
            assert_eq!(
                (r.version, r.path, r.keep_alive),
                (Version::Http11, &b"/x"[..], true)
            );
            check_every_prefix_partial(input.as_bytes());
        }
        // Bare LF, leading empty lines and pipelined followers keep their meaning.
        let r = complete(b"\r\nGET / HTTP/1.5\nHost: a\n\nGET / HTTP/1.1\r\n");
        assert_eq!((r.version, r.head_len), (Version::Http11, 26));
        // The rewrite is of the version only: a target that looks like one is left alone.
        let mut partial = b"GET /HTTP/1.9".to_vec();
        assert!(matches!(
            parse_request(&mut partial, &Limits::default()),
            Ok(Parse::Partial)
        ));
        assert_eq!(partial, b"GET /HTTP/1.9");
        let r = complete(b"GET /a%20HTTP/1.9 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.target, b"/a%20HTTP/1.9");
        // Not a single-digit HTTP/1 minor version: refused as before.
        check_bad(b"GET / HTTP/1.10\r\nHost: a\r\n\r\n");
        check_bad(b"GET / HTTP/1.9 \r\nHost: a\r\n\r\n");
        check_err(
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            RequestError::VersionNotSupported,
        );
        // An unfinished line waits for its end whatever version it names so far: the answer
        // must not depend on where the line was split.
        for partial in [
            &b"GET / HTTP/1.9"[..],
            b"GET / HTTP/1.9\r",
            b"GET / HTTP/2.",
            b"GET / HTTP/2.0",
        ] {
            assert!(matches!(parse(partial), Ok(Parse::Partial)), "{partial:?}");
        }
        check_err(
            b"GET / HTTP/2.\r\n",
            RequestError::BadRequest("invalid HTTP version"),
        );
    }

    #[test]
    fn names_other_http_version_reads_the_last_word() {
        assert!(names_other_http_version(b"GET / HTTP/2.0\r\n"));
        assert!(names_other_http_version(b"GET / HTTP/3"));
        assert!(!names_other_http_version(b"GET / HTTP/2.x\r\n"));
        assert!(!names_other_http_version(b"GET /  HTTP/2.0\r\n"));
        assert!(!names_other_http_version(b"GET / HTTP/1.1 \r\n"));
        assert!(!names_other_http_version(b"GET / HTTP/1.1\r\n"));
        assert!(!names_other_http_version(b"GET / HTTP/\r\n"));
        assert!(!names_other_http_version(b""));
    }
}
