//! Response status codes: the one type every status the server sends is written in.
//!
//! This file owns the codes and their reason phrases (RFC 9110 §15). It never decides which
//! status a request gets: `conn::Refusal::status` maps every refusal, and the static-file and
//! WebSocket layers name the success statuses they send.

use std::fmt;

/// An HTTP status code. Only the named constants are ever sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Status(u16);

/// Defines the named statuses, [`Status::SENT`], the reason phrases and the status lines
/// from one table, so that no status is listed twice.
macro_rules! statuses {
    ($(($name:ident, $code:literal, $reason:literal)),* $(,)?) => {
        impl Status {
            $(pub const $name: Status = Status($code);)*

            /// Every status percore sends, in code order: the metrics count responses per entry.
            pub const SENT: [Status; [$($code),*].len()] = [$(Status::$name),*];

            /// The reason phrase (RFC 9110 §15).
            pub fn reason(self) -> &'static str {
                match self.0 {
                    $($code => $reason,)*
                    _ => "Unknown",
                }
            }

            /// `HTTP/1.1 <code> <reason>` and its CRLF, for a status percore sends.
            pub fn status_line(self) -> Option<&'static str> {
                match self.0 {
                    $($code => Some(concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n")),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    (SWITCHING_PROTOCOLS, 101, "Switching Protocols"),
    (OK, 200, "OK"),
    (NO_CONTENT, 204, "No Content"),
    (PARTIAL_CONTENT, 206, "Partial Content"),
    (MOVED_PERMANENTLY, 301, "Moved Permanently"),
    (NOT_MODIFIED, 304, "Not Modified"),
    (BAD_REQUEST, 400, "Bad Request"),
    (FORBIDDEN, 403, "Forbidden"),
    (NOT_FOUND, 404, "Not Found"),
    (METHOD_NOT_ALLOWED, 405, "Method Not Allowed"),
    (REQUEST_TIMEOUT, 408, "Request Timeout"),
    (PRECONDITION_FAILED, 412, "Precondition Failed"),
    (CONTENT_TOO_LARGE, 413, "Content Too Large"),
    (URI_TOO_LONG, 414, "URI Too Long"),
    (RANGE_NOT_SATISFIABLE, 416, "Range Not Satisfiable"),
    (UPGRADE_REQUIRED, 426, "Upgrade Required"),
    (HEADER_FIELDS_TOO_LARGE, 431, "Request Header Fields Too Large"),
    (INTERNAL_SERVER_ERROR, 500, "Internal Server Error"),
    (NOT_IMPLEMENTED, 501, "Not Implemented"),
    (SERVICE_UNAVAILABLE, 503, "Service Unavailable"),
    (VERSION_NOT_SUPPORTED, 505, "HTTP Version Not Supported"),
}

impl Status {
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
    fn status_lines_are_code_and_reason() {
        for status in Status::SENT {
            assert_eq!(
                status.status_line(),
                Some(format!("HTTP/1.1 {status}\r\n").as_str())
            );
        }
        assert_eq!(Status::OK.status_line(), Some("HTTP/1.1 200 OK\r\n"));
        assert_eq!(Status::from_code(299).status_line(), None);
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
