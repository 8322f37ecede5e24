//! Every reason a request is refused, and the one function that maps each to its status.
//!
//! The layers name what went wrong in their own terms (`http::RequestError`,
//! `files::TargetError`, `ws::Refused`, an open that failed); this file alone decides which
//! [`Status`] that becomes, as hyper's `role.rs` and nginx's static module do for theirs.

use std::borrow::Cow;

use crate::files::TargetError;
use crate::http::{Body, RequestError, Response, Status};
use crate::ws;

/// Why a request gets an error answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request head (or, with no answer sent yet, its body) breaks the grammar or a limit.
    Request(RequestError),
    /// The request path is malformed, or names a file that is never served.
    Target(TargetError),
    /// An upgrade request that cannot be accepted.
    Handshake(ws::Refused),
    /// The request line's target is "*" outside OPTIONS.
    AsteriskTarget,
    /// A method the server does not serve files for.
    MethodNotAllowed,
    /// Nothing exists at the path (ENOENT, ENOTDIR, ELOOP, ...).
    NotFound,
    /// The file may not be read (EACCES, EPERM), or it is not a regular file.
    Forbidden,
    /// A directory without an index file (nginx without autoindex).
    NoIndex,
    /// If-Match or If-Unmodified-Since failed.
    PreconditionFailed,
    /// No requested range lies in the file.
    RangeNotSatisfiable,
    /// The request head did not arrive within the header timeout.
    HeaderTimeout,
    /// A plain HTTP request arrived on a port that speaks TLS (answered by the TLS
    /// transport, in plain text, before any TLS session exists).
    PlainHttpOnTlsPort,
    /// The server failed for a reason of its own (an unexpected errno).
    Internal,
    /// Out of descriptors or memory for now (EMFILE, ENFILE, ENOMEM): worth trying again.
    Unavailable,
}

/// Seconds a client is asked to wait after [`Refusal::Unavailable`]: descriptors come back as
/// connections close, and the accept path retries after 100 ms, so a second is long enough for
/// most and short enough not to lose anyone.
const RETRY_AFTER: &[u8] = b"1";

impl Refusal {
    /// The status the refusal is answered with: the one place that decides it.
    pub fn status(self) -> Status {
        match self {
            Refusal::Request(error) => match error {
                RequestError::BadRequest(_) => Status::BAD_REQUEST,
                RequestError::UriTooLong => Status::URI_TOO_LONG,
                RequestError::HeadersTooLarge => Status::HEADER_FIELDS_TOO_LARGE,
                RequestError::PayloadTooLarge => Status::CONTENT_TOO_LARGE,
                RequestError::VersionNotSupported => Status::VERSION_NOT_SUPPORTED,
                RequestError::NotImplemented => Status::NOT_IMPLEMENTED,
            },
            Refusal::Target(TargetError::Malformed) => Status::BAD_REQUEST,
            // A refused name looks exactly like a missing one.
            Refusal::Target(TargetError::Refused) => Status::NOT_FOUND,
            Refusal::Handshake(refused) => match refused {
                ws::Refused::Malformed => Status::BAD_REQUEST,
                ws::Refused::Path => Status::NOT_FOUND,
                ws::Refused::Origin => Status::FORBIDDEN,
                ws::Refused::Version => Status::UPGRADE_REQUIRED,
            },
            Refusal::AsteriskTarget => Status::BAD_REQUEST,
            Refusal::MethodNotAllowed => Status::METHOD_NOT_ALLOWED,
            Refusal::NotFound => Status::NOT_FOUND,
            Refusal::Forbidden | Refusal::NoIndex => Status::FORBIDDEN,
            Refusal::PreconditionFailed => Status::PRECONDITION_FAILED,
            Refusal::RangeNotSatisfiable => Status::RANGE_NOT_SATISFIABLE,
            Refusal::HeaderTimeout => Status::REQUEST_TIMEOUT,
            // nginx's answer (its internal 497 becomes a 400 on the wire).
            Refusal::PlainHttpOnTlsPort => Status::BAD_REQUEST,
            Refusal::Internal => Status::INTERNAL_SERVER_ERROR,
            Refusal::Unavailable => Status::SERVICE_UNAVAILABLE,
        }
    }
}

impl Refusal {
    /// The answer: the status's small page, with the field this refusal carries. A refusal
    /// whose field depends on the resource (Allow, Content-Range) gets it from its responder.
    pub fn response(self) -> Response<'static> {
        let response = Response::page(self.status());
        match self {
            // nginx's page says what went wrong, for whoever typed http:// by mistake.
            Refusal::PlainHttpOnTlsPort => Response {
                lines: b"Content-Type: text/html; charset=utf-8\r\n",
                body: Body::Bytes(Cow::Borrowed(PLAIN_HTTP_PAGE)),
                ..response
            },
            Refusal::Handshake(refused) => match refused.field() {
                Some((name, value)) => response.with_field(name, value),
                None => response,
            },
            Refusal::Unavailable => response.with_field("Retry-After", RETRY_AFTER),
            _ => response,
        }
    }
}

/// The page of [`Refusal::PlainHttpOnTlsPort`], worded as nginx's.
const PLAIN_HTTP_PAGE: &[u8] = b"<html><head><title>400 The plain HTTP request was sent to HTTPS \
port</title></head><body><center><h1>400 Bad Request</h1></center><center>The plain HTTP request \
was sent to HTTPS port</center><hr><center>percore</center></body></html>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_status() {
        let cases = [
            (Refusal::Request(RequestError::BadRequest("x")), 400),
            (Refusal::Request(RequestError::UriTooLong), 414),
            (Refusal::Request(RequestError::HeadersTooLarge), 431),
            (Refusal::Request(RequestError::PayloadTooLarge), 413),
            (Refusal::Request(RequestError::VersionNotSupported), 505),
            (Refusal::Request(RequestError::NotImplemented), 501),
            (Refusal::Target(TargetError::Malformed), 400),
            (Refusal::Target(TargetError::Refused), 404),
            (Refusal::Handshake(ws::Refused::Malformed), 400),
            (Refusal::Handshake(ws::Refused::Path), 404),
            (Refusal::Handshake(ws::Refused::Origin), 403),
            (Refusal::Handshake(ws::Refused::Version), 426),
            (Refusal::AsteriskTarget, 400),
            (Refusal::MethodNotAllowed, 405),
            (Refusal::NotFound, 404),
            (Refusal::Forbidden, 403),
            (Refusal::NoIndex, 403),
            (Refusal::PreconditionFailed, 412),
            (Refusal::RangeNotSatisfiable, 416),
            (Refusal::HeaderTimeout, 408),
            (Refusal::PlainHttpOnTlsPort, 400),
            (Refusal::Internal, 500),
            (Refusal::Unavailable, 503),
        ];
        for (refusal, code) in cases {
            assert_eq!(refusal.status().code(), code, "{refusal:?}");
            assert_eq!(refusal.response().status.code(), code, "{refusal:?}");
        }
    }

    #[test]
    fn a_version_refusal_names_the_version() {
        let response = Refusal::Handshake(ws::Refused::Version).response();
        assert!(matches!(
            response.field,
            Some(("Sec-WebSocket-Version", ref value)) if value.as_ref() == b"13"
        ));
        assert!(Refusal::Handshake(ws::Refused::Path)
            .response()
            .field
            .is_none());
    }
}
