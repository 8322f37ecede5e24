//! The sans-IO HTTP/1.1 layer: request heads in, framing decisions and response heads out.
//!
//! This module owns request-head parsing (with the size limits and their status codes),
//! request-body skipping, and response-head writing. It must never touch a socket, a file
//! or a clock, and it must never allocate per request: the caller owns every buffer and
//! passes "now" in as a preformatted date.

mod body;
mod cors;
mod date;
mod request;
mod response;
mod status;

pub use body::{BodySkipper, Skip};
pub use cors::CorsPolicy;
pub use date::http_date;
pub use request::{parse_request, Parse, Request, MAX_HEADERS_CAP};
pub use response::{Body, FileRegion, HeadWriter, Response};
pub use status::Status;

use std::fmt;

/// Size limits for one request; each one maps to a single status code (`conn::Refusal::status`).
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

/// A request the server refuses, from its head or its body. `conn::Refusal::status` says
/// which status each one gets; after it the connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    BadRequest(&'static str),
    UriTooLong,
    HeadersTooLarge,
    PayloadTooLarge,
    VersionNotSupported,
    NotImplemented,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::BadRequest(why) => write!(f, "bad request: {why}"),
            RequestError::UriTooLong => f.write_str("request line too long"),
            RequestError::HeadersTooLarge => f.write_str("header section too large"),
            RequestError::PayloadTooLarge => f.write_str("body too large"),
            RequestError::VersionNotSupported => f.write_str("HTTP version not supported"),
            RequestError::NotImplemented => f.write_str("transfer coding not implemented"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_was_wrong() {
        assert_eq!(
            RequestError::BadRequest("missing Host").to_string(),
            "bad request: missing Host"
        );
        assert_eq!(
            RequestError::UriTooLong.to_string(),
            "request line too long"
        );
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
