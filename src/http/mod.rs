//! The sans-IO HTTP/1.1 layer: request heads in, framing decisions and response heads out.
//!
//! This module owns request-head parsing (with the size limits and their status codes),
//! request-body skipping, and response-head writing. It must never touch a socket, a file
//! or a clock, and it must never allocate per request: the caller owns every buffer and
//! passes "now" in as a preformatted date.

mod body;
mod date;
mod request;
mod response;

pub use body::{BodySkipper, Skip};
pub use date::http_date;
pub use request::{parse_request, Parse, Request, MAX_HEADERS_CAP};
pub use response::{reason, write_error, HeadWriter};

use std::fmt;

/// Size limits for one request; each one maps to a single status code in [`RequestError::status`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The longest request line, counted with its line terminator (414 beyond).
    pub max_request_line: usize,
    /// The longest head: leading empty lines, request line, fields and the blank line (431 beyond).
    pub max_head: usize,
    /// The most header fields in one head (431 beyond); capped at [`MAX_HEADERS_CAP`].
    pub max_headers: usize,
    /// The largest request body, declared or chunked (413 beyond).
    pub max_body: u64,
}

impl Default for Limits {
    /// nginx's defaults: an 8 KiB head buffer and `client_max_body_size 1m`.
    fn default() -> Self {
        Limits {
            max_request_line: 8192,
            max_head: 8192,
            max_headers: 100,
            max_body: 1024 * 1024,
        }
    }
}

/// The request methods the server tells apart; every other valid token is `Other` (answer 405).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    Other,
}

/// The HTTP versions the server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A request the server refuses. Every variant means: answer with [`RequestError::status`]
/// and close the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    BadRequest(&'static str),
    UriTooLong,
    HeadersTooLarge,
    PayloadTooLarge,
    VersionNotSupported,
    NotImplemented,
}

impl RequestError {
    /// The status code to answer with; the one place where limits map to status codes.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::UriTooLong => 414,
            RequestError::HeadersTooLarge => 431,
            RequestError::PayloadTooLarge => 413,
            RequestError::VersionNotSupported => 505,
            RequestError::NotImplemented => 501,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status();
        write!(f, "{} {}", status, reason(status))?;
        if let RequestError::BadRequest(why) = self {
            write!(f, ": {why}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: RequestError, status: u16, text: &str) {
        assert_eq!(error.status(), status);
        assert_eq!(error.to_string(), text);
    }

    #[test]
    fn errors_map_to_statuses_and_texts() {
        check(
            RequestError::BadRequest("missing Host"),
            400,
            "400 Bad Request: missing Host",
        );
        check(RequestError::UriTooLong, 414, "414 URI Too Long");
        check(
            RequestError::HeadersTooLarge,
            431,
            "431 Request Header Fields Too Large",
        );
        check(RequestError::PayloadTooLarge, 413, "413 Content Too Large");
        check(
            RequestError::VersionNotSupported,
            505,
            "505 HTTP Version Not Supported",
        );
        check(RequestError::NotImplemented, 501, "501 Not Implemented");
    }

    #[test]
    fn default_limits_follow_nginx() {
        let limits = Limits::default();
        assert_eq!(limits.max_request_line, 8192);
        assert_eq!(limits.max_head, 8192);
        assert_eq!(limits.max_headers, 100);
        assert_eq!(limits.max_body, 1 << 20);
    }
}
