//! Response status codes: the one type every status the server sends is written in.
//!
//! This file owns the codes and their reason phrases (RFC 9110 §15). It never decides which
//! status a request gets: `conn::Refusal::status` maps every refusal, and the static-file and
//! WebSocket layers name the success statuses they send.

use std::fmt;

/// An HTTP status code. Only the named constants are ever sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Status(u16);

impl Status {
    pub const SWITCHING_PROTOCOLS: Status = Status(101);
    pub const OK: Status = Status(200);
    pub const NO_CONTENT: Status = Status(204);
    pub const PARTIAL_CONTENT: Status = Status(206);
    pub const MOVED_PERMANENTLY: Status = Status(301);
    pub const NOT_MODIFIED: Status = Status(304);
    pub const BAD_REQUEST: Status = Status(400);
    pub const FORBIDDEN: Status = Status(403);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const REQUEST_TIMEOUT: Status = Status(408);
    pub const PRECONDITION_FAILED: Status = Status(412);
    pub const CONTENT_TOO_LARGE: Status = Status(413);
    pub const URI_TOO_LONG: Status = Status(414);
    pub const RANGE_NOT_SATISFIABLE: Status = Status(416);
    pub const UPGRADE_REQUIRED: Status = Status(426);
    pub const HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const VERSION_NOT_SUPPORTED: Status = Status(505);

    /// Every status percore sends, in code order: the metrics count responses per entry.
    pub const SENT: [Status; 21] = [
        Status::SWITCHING_PROTOCOLS,
        Status::OK,
        Status::NO_CONTENT,
        Status::PARTIAL_CONTENT,
        Status::MOVED_PERMANENTLY,
        Status::NOT_MODIFIED,
        Status::BAD_REQUEST,
        Status::FORBIDDEN,
        Status::NOT_FOUND,
        Status::METHOD_NOT_ALLOWED,
        Status::REQUEST_TIMEOUT,
        Status::PRECONDITION_FAILED,
        Status::CONTENT_TOO_LARGE,
        Status::URI_TOO_LONG,
        Status::RANGE_NOT_SATISFIABLE,
        Status::UPGRADE_REQUIRED,
        Status::HEADER_FIELDS_TOO_LARGE,
        Status::INTERNAL_SERVER_ERROR,
        Status::NOT_IMPLEMENTED,
        Status::SERVICE_UNAVAILABLE,
        Status::VERSION_NOT_SUPPORTED,
    ];

    /// This status's index in [`Status::SENT`], or `SENT.len()` for any other code.
    pub fn sent_index(self) -> usize {
        Status::SENT
            .binary_search(&self)
            .unwrap_or(Status::SENT.len())
    }

    /// Any code, for tests of code that must cope with every value.
    #[cfg(test)]
    pub(crate) fn from_code(code: u16) -> Status {
        Status(code)
    }

    /// The three-digit code.
    pub fn code(self) -> u16 {
        self.0
    }

    /// The reason phrase (RFC 9110 §15).
    pub fn reason(self) -> &'static str {
        match self.0 {
            101 => "Switching Protocols",
            200 => "OK",
            204 => "No Content",
            206 => "Partial Content",
            301 => "Moved Permanently",
            304 => "Not Modified",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            414 => "URI Too Long",
            416 => "Range Not Satisfiable",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "Unknown",
        }
    }

    /// Whether a response with this status carries content: 1xx, 204 and 304 never do
    /// (RFC 9110 §6.4.1), and send neither Content-Type nor Content-Length.
    pub fn has_content(self) -> bool {
        !(self.0 < 200 || self.0 == 204 || self.0 == 304)
    }

    /// Whether this is an error status (4xx or 5xx).
    pub fn is_error(self) -> bool {
        self.0 >= 400
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reasons() {
        assert_eq!(Status::OK.code(), 200);
        assert_eq!(Status::OK.to_string(), "200 OK");
        assert_eq!(
            Status::RANGE_NOT_SATISFIABLE.to_string(),
            "416 Range Not Satisfiable"
        );
        assert_eq!(
            Status::HEADER_FIELDS_TOO_LARGE.to_string(),
            "431 Request Header Fields Too Large"
        );
        assert_eq!(Status::CONTENT_TOO_LARGE.reason(), "Content Too Large");
    }

    #[test]
    fn every_named_status_is_in_sent_in_order() {
        assert!(Status::SENT.windows(2).all(|w| w[0] < w[1]));
        for (i, status) in Status::SENT.iter().enumerate() {
            assert_eq!(status.sent_index(), i);
            assert_ne!(status.reason(), "Unknown", "{status:?}");
        }
        assert_eq!(Status::from_code(299).sent_index(), Status::SENT.len());
    }

    #[test]
    fn which_statuses_carry_content() {
        for bodiless in [
            Status::SWITCHING_PROTOCOLS,
            Status::NO_CONTENT,
            Status::NOT_MODIFIED,
        ] {
            assert!(!bodiless.has_content(), "{bodiless}");
        }
        for with_content in [Status::OK, Status::PARTIAL_CONTENT, Status::NOT_FOUND] {
            assert!(with_content.has_content(), "{with_content}");
        }
        assert!(Status::BAD_REQUEST.is_error() && !Status::NOT_MODIFIED.is_error());
    }
}
