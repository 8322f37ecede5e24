//! Static-file decisions, sans-IO: which file a request path names, its MIME type and validators,
//! what a conditional or range request gets (304, 412, 200, 206, 416, multipart/byteranges), and
//! which precompressed sibling an `Accept-Encoding` gets, and the extra header fields the
//! configuration's rules give a file.
//!
//! This module never opens a file, reads a clock or touches a socket, and it imports neither
//! `worker`, `sys` nor `http`: the worker opens the file beneath the document root, passes its
//! size and mtime in a [`FileStamp`], and performs the response this module describes.

pub mod compress;
mod conditional;
mod encoding;
mod glob;
pub mod listing;
mod mime;
mod multipart;
mod range;
mod rules;
mod syntax;
mod target;

pub use conditional::{etag, evaluate, last_modified, FileStamp, Outcome, Preconditions};
pub use encoding::{negotiate, Coding, Codings};
pub use glob::Glob;
pub use mime::{content_type, content_type_with};
pub use multipart::{
    content_range, multipart_boundary, multipart_content_type, multipart_len, multipart_tail,
    part_head, unsatisfied_range,
};
pub use range::ByteRange;
pub use rules::{header_lines, HeaderRule};
pub use target::{is_plain_segment, resolve_target, SafePath, TargetError, TargetOptions};
