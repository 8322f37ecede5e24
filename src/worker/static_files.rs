//! Serving a parsed request from the document root: the worker's side of `files`.
//!
//! Owns the open root directory and the per-worker file cache (nginx's open_file_cache): prebuilt
//! header lines plus, for a small file, its body and, for a large one, an open descriptor, each
//! revalidated against inode, size and mtime at most once a second. It opens files and reads
//! small ones; `files` makes every decision (safe path, MIME type, validators, 304/412/206/416),
//! `http` encodes every head. It never writes to a socket: it appends bytes to an [`Output`] and
//! describes a large body as a file region for the connection to sendfile.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

use crate::config::Config;
use crate::files::{self, FileStamp, Outcome, Preconditions, TargetOptions};
use crate::http::{self, HeadWriter, Method, Request, Version};
use crate::sys::RootDir;

use super::buffers::{FileTail, Output, Pool};

/// Most ranges answered as multipart/byteranges; more fall back to the whole file (nginx's max_ranges idea).
const MAX_RANGES: usize = 16;

/// What a response needs to know about the exchange it answers.
pub struct Exchange<'a> {
    pub date: &'a [u8],
    pub keep_alive: bool,
    /// Whole seconds on the worker's clock, for cache revalidation.
    pub now_secs: u64,
}

/// A file found under the root, with its prebuilt header lines: kept in the cache or, when the
/// cache holds no entries, used for one response.
struct Cached {
    /// Path relative to the root, as opened (an index file's own path for a directory URL).
    open_path: CString,
    /// Device and inode: what the path named when the entry was made.
    identity: (u64, u64),
    head: PreparedHead,
    content: Content,
    checked_at: u64,
}

enum Content {
    /// A small file's bytes.
    Memory(Vec<u8>),
    /// A large file, open; every response sends its region with its own offset, so one
    /// descriptor serves any number of them at once.
    Open(Rc<File>),
}

impl Cached {
    fn body(&self) -> Body<'_> {
        match &self.content {
            Content::Memory(bytes) => Body::Memory(bytes),
            Content::Open(file) => Body::File(Rc::clone(file)),
        }
    }
}

/// Either a cached body or an open file to send a region of.
enum Body<'c> {
    Memory(&'c [u8]),
    File(Rc<File>),
}

/// The document root and its cache, one per worker.
pub struct StaticFiles {
    root: RootDir,
    index: Vec<u8>,
    target: TargetOptions,
    small_file_max: u64,
    cache: HashMap<Vec<u8>, Cached>,
    cache_entries: usize,
    boundary_seed: u64,
}

impl StaticFiles {
    pub fn new(config: &Config, worker: usize) -> io::Result<StaticFiles> {
        Ok(StaticFiles {
            root: RootDir::open(&config.root)?,
            index: config.index.clone().into_bytes(),
            target: TargetOptions {
                allow_dotfiles: config.dotfiles,
            },
            small_file_max: config.small_file_max,
            cache: HashMap::new(),
            cache_entries: config.file_cache_entries,
            boundary_seed: worker as u64,
        })
    }

    /// Appends the response to `req` to `out` and returns its status code.
    pub fn respond(
        &mut self,
        req: &Request<'_>,
        ex: &Exchange<'_>,
        out: &mut Output,
        pool: &mut Pool,
    ) -> u16 {
        let head_only = req.method == Method::Head;
        match req.method {
            Method::Get | Method::Head => {}
            Method::Options => {
                let buf = out.buf(pool);
                let mut w = HeadWriter::new(buf, 204, ex.date);
                w.header("Allow", b"GET, HEAD, OPTIONS");
                w.finish(req.version, ex.keep_alive);
                return 204;
            }
            Method::Other => {
                let allow: &[(&str, &[u8])] = &[("Allow", b"GET, HEAD, OPTIONS")];
                return error(out, pool, 405, req.version, ex, head_only, allow);
            }
        }
        if req.path == b"*" {
            return error(out, pool, 400, req.version, ex, head_only, &[]);
        }
        // The hot path: a cache entry already checked this second, found with one lookup.
        if let Some(entry) = self.cache.get(req.path) {
            if entry.checked_at == ex.now_secs {
                return file_response(req, ex, out, pool, entry, self.boundary_seed);
            }
        }
        let fresh;
        let entry = match self.lookup(req.path, req.query, ex.now_secs) {
            Ok(Found::Cached) => match self.cache.get(req.path) {
                Some(entry) => entry,
                None => return error(out, pool, 500, req.version, ex, head_only, &[]),
            },
            Ok(Found::Uncached(entry)) => {
                fresh = entry;
                &fresh
            }
            Ok(Found::Redirect(location)) => {
                let extra: &[(&str, &[u8])] = &[("Location", &location)];
                return error(out, pool, 301, req.version, ex, head_only, extra);
            }
            Err(status) => return self.error_page(status, req, ex, out, pool),
        };
        file_response(req, ex, out, pool, entry, self.boundary_seed)
    }

    /// An error response; a 404 uses `404.html` from the root when there is one.
    fn error_page(
        &mut self,
        status: u16,
        req: &Request<'_>,
        ex: &Exchange<'_>,
        out: &mut Output,
        pool: &mut Pool,
    ) -> u16 {
        let head_only = req.method == Method::Head;
        const NOT_FOUND_PAGE: &[u8] = b"/404.html";
        if status == 404 {
            let fresh;
            let page = match self.lookup(NOT_FOUND_PAGE, b"", ex.now_secs) {
                Ok(Found::Cached) => self.cache.get(NOT_FOUND_PAGE),
                Ok(Found::Uncached(entry)) => {
                    fresh = entry;
                    Some(&fresh)
                }
                _ => None,
            };
            // Only a small page is used: an error answer is written in one piece.
            if let Some(Cached {
                head: page_head,
                content: Content::Memory(body),
                ..
            }) = page
            {
                let buf = out.buf(pool);
                let mut head = HeadWriter::new(buf, 404, ex.date);
                head.raw(&page_head.type_line)
                    .content_length(body.len() as u64);
                head.finish(req.version, ex.keep_alive);
                if !head_only {
                    buf.extend_from_slice(body);
                }
                return 404;
            }
        }
        error(out, pool, status, req.version, ex, head_only, &[])
    }

    /// Finds what the request path `raw` names: a fresh cache entry (under the key `raw`), an
    /// entry the cache has no room for, or a redirect. The cache is keyed by the raw path
    /// because the same raw path always resolves to the same file, so a hit needs neither
    /// decoding nor allocation.
    fn lookup(&mut self, raw: &[u8], query: &[u8], now_secs: u64) -> Result<Found, u16> {
        if let Some(entry) = self.cache.get_mut(raw) {
            if entry.checked_at == now_secs {
                return Ok(Found::Cached);
            }
            // Revalidate at most once a second: the same inode, size and mtime (as nginx checks)
            // means the entry is still right. A file replaced by rename is a new inode even
            // when a copy kept the size and mtime.
            if let Ok(file) = self.root.open_file(&entry.open_path) {
                if let Ok(meta) = file.metadata() {
                    if meta.is_file()
                        && identity_of(&meta) == entry.identity
                        && stamp_of(&meta) == entry.head.stamp
                    {
                        entry.checked_at = now_secs;
                        return Ok(Found::Cached);
                    }
                }
            }
            self.cache.remove(raw);
        }

        let path = files::resolve_target(raw, &self.target).map_err(|e| e.status())?;
        let open_path = relative_cstring(path.as_bytes(), path.has_trailing_slash())?;
        let file = self
            .root
            .open_file(&open_path)
            .map_err(|e| open_error_status(&e))?;
        let meta = file.metadata().map_err(|e| open_error_status(&e))?;
        let (file, meta, open_path) = if meta.is_dir() {
            if !path.has_trailing_slash() {
                return Ok(Found::Redirect(path.redirect_location(query)));
            }
            let index_path = path.join(&self.index);
            let open_path = relative_cstring(index_path.as_bytes(), false)?;
            // A directory without an index is forbidden, as nginx answers without autoindex.
            let file =
                self.root
                    .open_file(&open_path)
                    .map_err(|e| match open_error_status(&e) {
                        404 => 403,
                        other => other,
                    })?;
            let meta = file.metadata().map_err(|e| open_error_status(&e))?;
            (file, meta, open_path)
        } else {
            (file, meta, open_path)
        };
        if !meta.is_file() {
            return Err(403);
        }
        let stamp = stamp_of(&meta);
        let content_type = files::content_type(open_path.as_bytes());
        let (stamp, content) = if stamp.len > self.small_file_max {
            (stamp, Content::Open(Rc::new(file)))
        } else {
            let body = read_small(file, stamp.len).map_err(|e| open_error_status(&e))?;
            // The file may have changed between fstat and read; describe what was read.
            let read = FileStamp {
                len: body.len() as u64,
                ..stamp
            };
            (read, Content::Memory(body))
        };
        let entry = Cached {
            open_path,
            identity: identity_of(&meta),
            head: PreparedHead::new(stamp, content_type),
            content,
            checked_at: now_secs,
        };
        if self.cache_entries == 0 {
            return Ok(Found::Uncached(entry));
        }
        if self.cache.len() >= self.cache_entries {
            // Evict an arbitrary entry: the cache is a bound on memory and descriptors, not an LRU.
            if let Some(victim) = self.cache.keys().next().cloned() {
                self.cache.remove(&victim);
            }
        }
        self.cache.insert(raw.to_vec(), entry);
        Ok(Found::Cached)
    }
}

enum Found {
    Cached,
    Uncached(Cached),
    Redirect(Vec<u8>),
}

/// A file's validators and header lines, prepared once per cache entry.
struct PreparedHead {
    stamp: FileStamp,
    etag: String,
    content_type: &'static str,
    /// "Content-Type: …\r\n".
    type_line: Vec<u8>,
    /// "Last-Modified: …\r\nETag: …\r\n".
    validator_lines: Vec<u8>,
}

impl PreparedHead {
    fn new(stamp: FileStamp, content_type: &'static str) -> PreparedHead {
        let etag = files::etag(&stamp);
        let type_line = format!("Content-Type: {content_type}\r\n").into_bytes();
        let validator_lines = format!(
            "Last-Modified: {}\r\nETag: {etag}\r\n",
            files::last_modified(&stamp)
        )
        .into_bytes();
        PreparedHead {
            stamp,
            etag,
            content_type,
            type_line,
            validator_lines,
        }
    }
}

/// Writes the response for a file after evaluating preconditions and ranges.
fn file_response(
    req: &Request<'_>,
    ex: &Exchange<'_>,
    out: &mut Output,
    pool: &mut Pool,
    entry: &Cached,
    seed: u64,
) -> u16 {
    let (head, body) = (&entry.head, entry.body());
    let head_only = req.method == Method::Head;
    let pre = Preconditions {
        head_or_get: true,
        if_match: req.if_match,
        if_none_match: req.if_none_match,
        if_modified_since: req.if_modified_since,
        if_unmodified_since: req.if_unmodified_since,
        range: req.range,
        if_range: req.if_range,
    };
    // Several ranges of a large file are answered with the whole file (one sendfile region).
    let max_ranges = match body {
        Body::Memory(_) => MAX_RANGES,
        Body::File(_) => 1,
    };
    let len = head.stamp.len;
    let outcome = files::evaluate(&pre, &head.stamp, &head.etag, max_ranges);
    let buf = out.buf(pool);
    let (status, range) = match outcome {
        Outcome::NotModified => {
            let mut w = HeadWriter::new(buf, 304, ex.date);
            w.raw(&head.validator_lines);
            w.finish(req.version, ex.keep_alive);
            return 304;
        }
        Outcome::PreconditionFailed => {
            return error(out, pool, 412, req.version, ex, head_only, &[])
        }
        Outcome::Unsatisfiable => {
            let range = files::unsatisfied_range(len);
            let extra: &[(&str, &[u8])] = &[("Content-Range", range.as_bytes())];
            return error(out, pool, 416, req.version, ex, head_only, extra);
        }
        Outcome::Multipart(ranges) => {
            let Body::Memory(bytes) = body else {
                return error(out, pool, 500, req.version, ex, head_only, &[]);
            };
            let boundary = files::multipart_boundary(seed ^ ex.now_secs ^ len);
            let content_type = files::multipart_content_type(&boundary);
            let total = files::multipart_len(&boundary, head.content_type, &ranges, len);
            let mut w = HeadWriter::new(buf, 206, ex.date);
            w.header("Content-Type", content_type.as_bytes())
                .raw(&head.validator_lines)
                .content_length(total);
            w.finish(req.version, ex.keep_alive);
            if !head_only {
                for range in &ranges {
                    buf.extend_from_slice(&files::part_head(
                        &boundary,
                        head.content_type,
                        *range,
                        len,
                    ));
                    buf.extend_from_slice(slice(bytes, range.start, range.end + 1));
                }
                buf.extend_from_slice(&files::multipart_tail(&boundary));
            }
            return 206;
        }
        Outcome::Full => (200, None),
        Outcome::Partial(range) => (206, Some(range)),
    };
    let (start, end) = match range {
        Some(r) => (r.start, r.end + 1),
        None => (0, len),
    };
    let mut w = HeadWriter::new(buf, status, ex.date);
    w.raw(&head.type_line).raw(&head.validator_lines);
    w.header("Accept-Ranges", b"bytes");
    if let Some(r) = range {
        w.header("Content-Range", files::content_range(r, len).as_bytes());
    }
    w.content_length(end - start);
    w.finish(req.version, ex.keep_alive);
    if head_only || start == end {
        return status;
    }
    match body {
        Body::Memory(bytes) => buf.extend_from_slice(slice(bytes, start, end)),
        Body::File(file) => out.set_file(FileTail {
            file,
            offset: start,
            end,
        }),
    }
    status
}

/// A complete error or redirect response.
fn error(
    out: &mut Output,
    pool: &mut Pool,
    status: u16,
    version: Version,
    ex: &Exchange<'_>,
    head_only: bool,
    extra: &[(&str, &[u8])],
) -> u16 {
    http::write_error(
        out.buf(pool),
        status,
        ex.date,
        version,
        ex.keep_alive,
        head_only,
        extra,
    );
    status
}

fn slice(bytes: &[u8], start: u64, end: u64) -> &[u8] {
    let end = (end as usize).min(bytes.len());
    let start = (start as usize).min(end);
    &bytes[start..end]
}

fn identity_of(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn stamp_of(meta: &std::fs::Metadata) -> FileStamp {
    FileStamp {
        len: meta.len(),
        mtime_secs: meta.mtime(),
        mtime_nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
    }
}

/// The path to hand to openat2: "." for the root, a trailing slash kept so a file named like a
/// directory fails with ENOTDIR.
fn relative_cstring(path: &[u8], trailing_slash: bool) -> Result<CString, u16> {
    let mut bytes = if path.is_empty() {
        b".".to_vec()
    } else {
        path.to_vec()
    };
    if trailing_slash && !path.is_empty() {
        bytes.push(b'/');
    }
    // SafePath guarantees no NUL; a failure here is a bug, answered as 500 rather than a panic.
    CString::new(bytes).map_err(|_| 500)
}

fn read_small(mut file: File, len: u64) -> io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(len as usize);
    file.by_ref().take(len).read_to_end(&mut body)?;
    Ok(body)
}

/// errno → status, in one place (as nginx's static module does).
fn open_error_status(e: &io::Error) -> u16 {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::EXDEV | libc::ELOOP) => 404,
        Some(libc::EACCES | libc::EPERM) => 403,
        _ => 500,
    }
}
