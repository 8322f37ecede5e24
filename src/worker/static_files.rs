//! Serving a parsed request from the document root: the worker's side of `files`.
//!
//! Owns the open root directory and the per-worker file cache (nginx's open_file_cache): prebuilt
//! header lines plus, for a small file, its body and, for a large one, an open descriptor, each
//! revalidated against inode, size and mtime at most once a second with a stat by path that
//! needs no descriptor: a small file's entry when it is requested, a large one's also by
//! [`StaticFiles::sweep`], so that its descriptor is closed soon after the file is deleted even
//! if nobody asks for it again. It opens files and reads small ones; `files` makes
//! every decision (safe path, MIME type, validators, 304/412/206/416), `conn::Refusal` maps
//! every refusal to its status. It never writes anything: it describes each response as a
//! [`Response`] value (a status, prepared head lines, a body of cached bytes or a file region),
//! which the connection writes and sends.
//!
//! Out of descriptors or memory (EMFILE, ENFILE, ENOMEM), cached files are still served and
//! a file that cannot be opened gets 503 with Retry-After instead of 500: the shortage passes
//! as connections close. The warning is logged at most once a second, with a count.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

use crate::config::Config;
use crate::conn::{Refusal, Respond};
use crate::files::listing::{self, Format};
use crate::files::{
    self, Coding, Codings, FileStamp, HeaderRule, Outcome, Preconditions, TargetOptions,
};
use crate::http::{Body, FileRegion, Method, Request, Response, Status};
use crate::sys::{self, EntryKind, RootDir};

use super::throttle::Throttle;

/// Most ranges answered as multipart/byteranges; more fall back to the whole file (nginx's max_ranges idea).
const MAX_RANGES: usize = 16;
/// The methods files are served for.
const ALLOW: &[u8] = b"GET, HEAD, OPTIONS";
/// Seconds between two warnings about a shortage of descriptors or memory (with a count).
const SHORTAGE_WARNING_INTERVAL: u64 = 1;
/// Most bytes of a request path quoted in a warning.
const LOGGED_PATH_MAX: usize = 200;
/// Most large-file entries one [`StaticFiles::sweep`] call revalidates. A once-a-second stat
/// meets cold caches: on the shared 2-core test machine a pass over 1,024 entries in one call
/// took 2-18 ms of CPU (a stall for every connection of the worker), 128 per call 0.2-3 ms. An
/// idle worker turns every 100 ms, so a cache full of large files (1,024 by default) is swept
/// within 800 ms; a busy one turns far more often.
const SWEEP_BATCH: usize = 128;

/// A file found under the root, with its prebuilt header lines: kept in the cache or, when the
/// cache holds no entries, used for one response.
struct Cached {
    /// The request path the entry is cached under.
    key: Vec<u8>,
    /// Path relative to the root, as opened (an index file's own path for a directory URL).
    open_path: CString,
    /// Device and inode: what the path named when the entry was made.
    identity: (u64, u64),
    head: PreparedHead,
    content: Content,
    checked_at: u64,
    /// The coding of this representation (`None`: the file itself).
    coding: Option<Coding>,
    /// For the file itself: the precompressed siblings found beside it (among those
    /// configured) when the entry was made or last checked.
    siblings: Codings,
    /// For the file itself: every coding it can be sent in, its siblings and those made here
    /// from its bytes (`--compress`).
    variants: Codings,
    /// What the file on disk was when read: revalidation compares its path's stat with this
    /// (for an entry compressed here, the original's, not the compressed bytes').
    source: FileStamp,
}

enum Content {
    /// A small file's bytes.
    Memory(Vec<u8>),
    /// A large file, open; every response sends its region with its own offset, so one
    /// descriptor serves any number of them at once.
    Open(Rc<File>),
}

impl Cached {
    /// Bytes `start..end` of the file as a response body.
    fn body(&self, start: u64, end: u64) -> Body<'_> {
        match &self.content {
            Content::Memory(bytes) => Body::Bytes(Cow::Borrowed(slice(bytes, start, end))),
            Content::Open(file) => Body::File(FileRegion {
                file: Rc::clone(file),
                offset: start,
                end,
            }),
        }
    }
}

/// Where the entry for a request is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// `entries[i]`.
    Cached(usize),
    /// `uncached`: the cache holds no entries.
    Uncached,
}

/// What a request path names.
enum Found {
    File(Slot),
    /// A directory named without its trailing slash: 301 to this location.
    Redirect(Vec<u8>),
    /// A directory without an index file, to be listed (`--autoindex`).
    Listing(Listing),
}

/// A directory to list: its descriptor (opened beneath the root) and its path below the root.
struct Listing {
    dir: File,
    path: Vec<u8>,
}

/// Most entries of one directory a listing reads (and sorts); it says when there are more.
const LISTING_MAX_ENTRIES: usize = 20 * listing::PAGE_SIZE;
/// The head lines of a listing: it changes whenever the directory does, and depends on Accept.
const LISTING_HTML_LINES: &[u8] =
    b"Content-Type: text/html; charset=utf-8\r\nCache-Control: no-cache\r\nVary: Accept\r\n";
const LISTING_JSON_LINES: &[u8] =
    b"Content-Type: application/json\r\nCache-Control: no-cache\r\nVary: Accept\r\n";

/// Why a request path is not served.
enum Miss {
    /// A refusal, answered with the status `Refusal::status` gives it.
    Refused(Refusal),
    /// The file could not be opened or read for lack of descriptors or memory (the errno):
    /// answered as `Refusal::Unavailable` (503 with Retry-After), since the shortage passes.
    Unavailable(i32),
}

impl From<Refusal> for Miss {
    fn from(refusal: Refusal) -> Miss {
        Miss::Refused(refusal)
    }
}

/// The document root and its cache, one per worker.
pub struct StaticFiles {
    root: RootDir,
    index: Vec<u8>,
    target: TargetOptions,
    small_file_max: u64,
    /// The codings served from sibling files (`--precompressed`).
    precompressed: Codings,
    /// The codings made here from small text files (`--compress`).
    compress: Codings,
    /// `[[headers]]`: extra fields by path, looked up once per entry.
    header_rules: Vec<HeaderRule>,
    /// `--mime-types`: extension -> type, before the built-in table.
    mime_types: Vec<(String, String)>,
    /// `--error-pages`: status -> page path.
    error_pages: Vec<(u16, Vec<u8>)>,
    /// `--spa-fallback`: the page a missing extensionless path gets.
    spa_fallback: Option<Vec<u8>>,
    /// `--autoindex`: list a directory without an index file.
    autoindex: bool,
    /// Scratch for the cache key of a precompressed sibling: the request path, a NUL (which no
    /// request path holds) and the coding's token.
    variant_key: Vec<u8>,
    /// Request path -> its entry in `entries`: a hit hashes the path once, and the index it
    /// gives borrows nothing, so an entry found stale can be replaced.
    paths: HashMap<Vec<u8>, usize, foldhash::fast::RandomState>,
    entries: Vec<Cached>,
    cache_entries: usize,
    /// The entry of the latest response while the cache holds none (`--file-cache-entries 0`).
    uncached: Option<Cached>,
    boundary_seed: u64,
    /// The second of the latest sweep call.
    swept_at: u64,
    /// The next entry the current sweep pass looks at; `None` between passes.
    sweep_cursor: Option<usize>,
    shortages: Shortages,
    /// Requests answered 503 for a shortage since the worker last took the count.
    unavailable: u64,
}

/// Shortages of descriptors or memory met by one worker, for the rate-limited warning.
struct Shortages {
    worker: usize,
    throttle: Throttle,
    /// The latest one: the request path it was met at, and the errno.
    path: Vec<u8>,
    errno: i32,
}

impl Shortages {
    /// Notes a shortage met at request path `what`; warns at once unless a warning went out
    /// less than [`SHORTAGE_WARNING_INTERVAL`] ago.
    fn note(&mut self, what: &[u8], errno: i32, now_secs: u64) {
        self.path.clear();
        self.path
            .extend_from_slice(what.get(..LOGGED_PATH_MAX).unwrap_or(what));
        self.errno = errno;
        if let Some(count) = self.throttle.hit(now_secs) {
            self.warn(count);
        }
    }

    /// Warns about the shortages not told yet, once the interval has passed.
    fn flush(&mut self, now_secs: u64) {
        if let Some(count) = self.throttle.take(now_secs) {
            self.warn(count);
        }
    }

    fn warn(&self, count: u64) {
        warn!(
            "worker {}: short of file descriptors or memory {count} time(s) since the last such \
             line (latest at {}: {}); files not cached get 503 with Retry-After, cached files \
             are still served",
            self.worker,
            self.path.escape_ascii(),
            io::Error::from_raw_os_error(self.errno)
        );
    }
}

impl Respond for StaticFiles {
    fn respond(&mut self, req: &Request<'_>, now_secs: u64) -> Response<'_> {
        match req.method {
            Method::Get | Method::Head => {}
            Method::Options => {
                return Response {
                    status: Status::NO_CONTENT,
                    lines: b"",
                    extra_lines: b"",
                    field: Some(("Allow", Cow::Borrowed(ALLOW))),
                    body: Body::None,
                }
            }
            Method::Other => {
                return self
                    .error_page(Refusal::MethodNotAllowed, now_secs)
                    .with_field("Allow", ALLOW)
            }
        }
        if req.path == b"*" {
            return self.error_page(Refusal::AsteriskTarget, now_secs);
        }
        // The hot path: an entry already checked this second, found with one hash.
        if let Some(&slot) = self.paths.get(req.path) {
            if self
                .entries
                .get(slot)
                .is_some_and(|e| e.checked_at == now_secs)
            {
                let slot = self.representation(Slot::Cached(slot), req, now_secs);
                return self.file_response(slot, req, now_secs);
            }
        }
        match self.lookup(req.path, req.query, now_secs) {
            Ok(Found::File(slot)) => {
                let slot = self.representation(slot, req, now_secs);
                self.file_response(slot, req, now_secs)
            }
            Ok(Found::Redirect(location)) => {
                Response::page(Status::MOVED_PERMANENTLY).with_field("Location", location)
            }
            Ok(Found::Listing(directory)) => self.listing(req, &directory, now_secs),
            Err(Miss::Refused(Refusal::NotFound)) if self.is_spa_route(req.path) => {
                self.spa_page(req, now_secs)
            }
            Err(Miss::Refused(refusal)) => self.error_page(refusal, now_secs),
            Err(Miss::Unavailable(errno)) => {
                self.unavailable += 1;
                self.shortages.note(req.path, errno, now_secs);
                self.error_page(Refusal::Unavailable, now_secs)
            }
        }
    }
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
            precompressed: config.precompressed,
            compress: config.compress,
            header_rules: config.header_rules.clone(),
            mime_types: config.mime_types.clone(),
            error_pages: config
                .error_pages
                .iter()
                .map(|(status, path)| (*status, path.clone().into_bytes()))
                .collect(),
            spa_fallback: config.spa_fallback.clone().map(String::into_bytes),
            autoindex: config.autoindex,
            variant_key: Vec::new(),
            paths: HashMap::default(),
            entries: Vec::new(),
            cache_entries: config.file_cache_entries,
            uncached: None,
            boundary_seed: worker as u64,
            swept_at: 0,
            sweep_cursor: None,
            shortages: Shortages {
                worker,
                throttle: Throttle::new(SHORTAGE_WARNING_INTERVAL),
                path: Vec::new(),
                errno: 0,
            },
            unavailable: 0,
        })
    }

    /// Revalidates the large files of the cache in passes, one started each second (unless the
    /// previous one is still under way), and drops those that changed or vanished, closing
    /// their descriptors (once no response still sends from them): so a deleted file is let go
    /// within about a second even if nobody asks for it again (nginx's open_file_cache
    /// `inactive`, but checked rather than aged out). A small file's entry holds no descriptor
    /// and is checked when it is next requested.
    ///
    /// Called by the worker every turn; each call revalidates at most [`SWEEP_BATCH`] entries,
    /// so a pass costs one stat per large file, no descriptor, spread over a few turns instead
    /// of one stall. An entry a request revalidated this second is skipped, so no entry is
    /// checked twice a second, and a hit still costs one hash and one comparison. (An entry
    /// that a removal moves behind the cursor waits for the next pass.)
    pub fn sweep(&mut self, now_secs: u64) {
        if self.swept_at != now_secs {
            self.swept_at = now_secs;
            if self.sweep_cursor.is_none() {
                self.sweep_cursor = Some(0);
            }
            // Without a cache the latest response's entry is only kept for that response,
            // which holds its own reference to a large file: let the descriptor go.
            self.uncached = None;
            self.shortages.flush(now_secs);
        }
        let mut budget = SWEEP_BATCH;
        while let Some(slot) = self.sweep_cursor {
            let Some(entry) = self.entries.get(slot) else {
                self.sweep_cursor = None;
                return;
            };
            if !matches!(entry.content, Content::Open(_)) {
                self.sweep_cursor = Some(slot + 1);
                continue;
            }
            if budget == 0 {
                return;
            }
            budget -= 1;
            if self.revalidate(slot, now_secs) {
                self.sweep_cursor = Some(slot + 1);
            } else {
                // The last entry moves into the cursor's slot: look at it next.
                self.remove(slot);
            }
        }
    }

    /// Requests answered 503 for a shortage since the previous call.
    pub fn take_unavailable(&mut self) -> u64 {
        std::mem::take(&mut self.unavailable)
    }

    fn entry(&self, slot: Slot) -> Option<&Cached> {
        match slot {
            Slot::Cached(i) => self.entries.get(i),
            Slot::Uncached => self.uncached.as_ref(),
        }
    }

    /// The representation a request gets of the file at `slot`: the file itself, or the
    /// precompressed sibling its `Accept-Encoding` prefers, when there is one (its own cache
    /// entry, with its own validators). A sibling that cannot be opened leaves the file itself.
    #[inline]
    fn representation(&mut self, slot: Slot, req: &Request<'_>, now_secs: u64) -> Slot {
        let Some(entry) = self.entry(slot) else {
            return slot;
        };
        if entry.variants.is_empty() {
            return slot;
        }
        let accepted = req
            .headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"accept-encoding"))
            .map(|(_, value)| value);
        let Some(coding) = files::negotiate(accepted, entry.variants) else {
            return slot;
        };
        let mut key = Vec::new();
        std::mem::swap(&mut key, &mut self.variant_key);
        key.clear();
        if let Some(entry) = self.entry(slot) {
            key.extend_from_slice(&entry.key);
        }
        key.push(0);
        key.extend_from_slice(coding.token().as_bytes());
        let found = self.variant(slot, &key, coding, now_secs);
        self.variant_key = key;
        found.unwrap_or(slot)
    }

    /// The entry of the `coding` sibling of the file at `file`, cached under `key`.
    fn variant(&mut self, file: Slot, key: &[u8], coding: Coding, now_secs: u64) -> Option<Slot> {
        let mut file = file;
        if let Some(&slot) = self.paths.get(key) {
            if self.revalidate(slot, now_secs) {
                return Some(Slot::Cached(slot));
            }
            // Removing moves the last entry into `slot`: the file's own may be that one.
            let last = self.entries.len().saturating_sub(1);
            self.remove(slot);
            if file == Slot::Cached(last) {
                file = Slot::Cached(slot);
            }
        }
        let entry = self.entry(file)?;
        if !entry.siblings.contains(coding) {
            return self.compressed(file, key, coding, now_secs);
        }
        let mut open_path = entry.open_path.as_bytes().to_vec();
        open_path.extend_from_slice(coding.extension().as_bytes());
        let open_path = CString::new(open_path).ok()?;
        let content_type = entry.head.content_type.clone();
        let opened = self.root.open_file(&open_path);
        let file = opened.ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let admitted = Admit {
            key,
            open_path,
            content_type,
            coding: Some(coding),
            siblings: Codings::NONE,
        };
        self.admit(admitted, file, &meta, now_secs).ok()
    }

    /// The entry of the file at `file` compressed here with `coding`, cached under `key`
    /// (`--compress`): made once from the bytes the cache holds, kept until the file changes
    /// (it is revalidated against the file itself). When the output is not smaller, the file
    /// stops offering that coding and is sent as it is.
    fn compressed(
        &mut self,
        file: Slot,
        key: &[u8],
        coding: Coding,
        now_secs: u64,
    ) -> Option<Slot> {
        let entry = self.entry(file)?;
        let Content::Memory(bytes) = &entry.content else {
            return None;
        };
        let Some(compressed) = files::compress::compress(coding, bytes) else {
            match file {
                Slot::Cached(i) => {
                    if let Some(entry) = self.entries.get_mut(i) {
                        entry.variants = entry.variants.without(coding);
                    }
                }
                Slot::Uncached => {}
            }
            return None;
        };
        let stamp = FileStamp {
            len: compressed.len() as u64,
            ..entry.source
        };
        let extra = files::header_lines(&self.header_rules, &rule_path(&entry.open_path, None));
        let made = Cached {
            key: key.to_vec(),
            open_path: entry.open_path.clone(),
            identity: entry.identity,
            head: PreparedHead::new(
                stamp,
                entry.head.content_type.clone(),
                Some(coding),
                true,
                &extra,
            ),
            content: Content::Memory(compressed),
            checked_at: now_secs,
            coding: Some(coding),
            siblings: Codings::NONE,
            variants: Codings::NONE,
            source: entry.source,
        };
        Some(self.keep(made))
    }

    /// The precompressed siblings of the file at `open_path` that exist, among those configured.
    fn siblings(&self, open_path: &CString) -> Codings {
        self.precompressed
            .iter()
            .filter(|coding| {
                let mut path = open_path.as_bytes().to_vec();
                path.extend_from_slice(coding.extension().as_bytes());
                CString::new(path)
                    .ok()
                    .and_then(|path| self.root.stat(&path).ok())
                    .is_some_and(|st| st.is_file)
            })
            .collect()
    }

    fn file_response(&self, slot: Slot, req: &Request<'_>, now_secs: u64) -> Response<'_> {
        match self.entry(slot) {
            Some(entry) => file_response(req, entry, self.boundary_seed ^ now_secs),
            None => Refusal::Internal.response(),
        }
    }

    /// The answer to `refusal`: its configured page (`--error-pages`) when that is a small
    /// file below the root, with the refusal's status and field (Retry-After…); otherwise
    /// the built-in page. A page that is missing, large or itself refused falls back too, so
    /// an error never leads to another.
    fn error_page(&mut self, refusal: Refusal, now_secs: u64) -> Response<'_> {
        let response = refusal.response();
        let code = response.status.code();
        let pages = std::mem::take(&mut self.error_pages);
        let found = pages
            .iter()
            .find(|(status, _)| *status == code)
            .map(|(_, page)| self.lookup(page, b"", now_secs));
        self.error_pages = pages;
        let Some(Ok(Found::File(slot))) = found else {
            return response;
        };
        match self.entry(slot) {
            Some(Cached {
                head,
                content: Content::Memory(body),
                ..
            }) => Response {
                lines: head.type_line(),
                body: Body::Bytes(Cow::Borrowed(body)),
                ..response
            },
            _ => response,
        }
    }

    /// The listing of a directory without an index: its files and subdirectories beneath the
    /// root (a symlink is listed as what it leads to, and left out when that is outside the
    /// root or neither file nor directory; hidden names unless `--dotfiles`). Built for each
    /// request, never cached: a directory changes without its mtime telling about its files.
    fn listing(&mut self, req: &Request<'_>, directory: &Listing, now_secs: u64) -> Response<'_> {
        let (found, truncated) = match sys::read_dir_entries(&directory.dir, LISTING_MAX_ENTRIES) {
            Ok(read) => read,
            Err(e) => {
                return match open_error(&e) {
                    Miss::Refused(refusal) => self.error_page(refusal, now_secs),
                    Miss::Unavailable(_) => self.error_page(Refusal::Unavailable, now_secs),
                }
            }
        };
        let mut entries = Vec::with_capacity(found.len());
        for entry in found {
            if entry.name.first() == Some(&b'.') && !self.target.allow_dotfiles {
                continue;
            }
            let (is_dir, len, mtime_secs) = match entry.kind {
                EntryKind::File => (false, entry.len, entry.mtime_secs),
                EntryKind::Directory => (true, 0, entry.mtime_secs),
                EntryKind::Other => continue,
                EntryKind::Symlink => {
                    let mut rel = directory.path.clone();
                    if !rel.is_empty() {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(&entry.name);
                    let Ok(rel) = CString::new(rel) else {
                        continue;
                    };
                    let Some(meta) = self
                        .root
                        .open_file(&rel)
                        .ok()
                        .and_then(|f| f.metadata().ok())
                    else {
                        continue;
                    };
                    if !meta.is_file() && !meta.is_dir() {
                        continue;
                    }
                    (meta.is_dir(), meta.len(), meta.mtime())
                }
            };
            entries.push(listing::Entry {
                name: entry.name,
                is_dir,
                len,
                mtime_secs,
            });
        }
        listing::sort(&mut entries);
        let format = Format::from_accept(req.header("accept"));
        let mut url_path = b"/".to_vec();
        url_path.extend_from_slice(&directory.path);
        if !directory.path.is_empty() {
            url_path.push(b'/');
        }
        let page = listing::page_number(req.query);
        let body = listing::render(format, &url_path, &entries, page, truncated);
        Response {
            status: Status::OK,
            lines: match format {
                Format::Html => LISTING_HTML_LINES,
                Format::Json => LISTING_JSON_LINES,
            },
            field: None,
            extra_lines: b"",
            body: Body::Bytes(Cow::Owned(body)),
        }
    }

    /// Whether a missing `path` is a single-page app's route: `--spa-fallback` is on and its
    /// last segment has no extension (`/users/42`, not `/app.js`, which stays 404).
    fn is_spa_route(&self, path: &[u8]) -> bool {
        let last = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        self.spa_fallback.is_some() && !last.contains(&b'.')
    }

    /// The `--spa-fallback` file for a route, as if it had been asked for (200, its own
    /// validators, ranges and conditionals); 404 when the fallback itself is missing.
    fn spa_page(&mut self, req: &Request<'_>, now_secs: u64) -> Response<'_> {
        let fallback = self.spa_fallback.take();
        let found = fallback
            .as_deref()
            .map(|page| self.lookup(page, b"", now_secs));
        self.spa_fallback = fallback;
        match found {
            Some(Ok(Found::File(slot))) => {
                let slot = self.representation(slot, req, now_secs);
                self.file_response(slot, req, now_secs)
            }
            _ => self.error_page(Refusal::NotFound, now_secs),
        }
    }

    /// Finds what the request path `raw` names: a fresh cache entry (under the key `raw`), an
    /// entry the cache has no room for, or a redirect. The cache is keyed by the raw path
    /// because the same raw path always resolves to the same file, so a hit needs neither
    /// decoding nor allocation.
    fn lookup(&mut self, raw: &[u8], query: &[u8], now_secs: u64) -> Result<Found, Miss> {
        if let Some(&slot) = self.paths.get(raw) {
            if self.revalidate(slot, now_secs) {
                return Ok(Found::File(Slot::Cached(slot)));
            }
            self.remove(slot);
        }

        let path = files::resolve_target(raw, &self.target).map_err(Refusal::Target)?;
        let open_path = relative_cstring(path.as_bytes(), path.has_trailing_slash())?;
        let file = self
            .root
            .open_file(&open_path)
            .map_err(|e| open_error(&e))?;
        let meta = file.metadata().map_err(|e| open_error(&e))?;
        let (file, meta, open_path) = if meta.is_dir() {
            if !path.has_trailing_slash() {
                return Ok(Found::Redirect(path.redirect_location(query)));
            }
            let index_path = path.join(&self.index);
            let index_open_path = relative_cstring(index_path.as_bytes(), false)?;
            // A directory without an index is listed with --autoindex, else forbidden, as nginx.
            let index = match self.root.open_file(&index_open_path) {
                Ok(index) => index,
                Err(e) => match open_error(&e) {
                    Miss::Refused(Refusal::NotFound) if self.autoindex => {
                        return Ok(Found::Listing(Listing {
                            dir: file,
                            path: path.as_bytes().to_vec(),
                        }))
                    }
                    Miss::Refused(Refusal::NotFound) => return Err(Refusal::NoIndex.into()),
                    other => return Err(other),
                },
            };
            let (file, open_path) = (index, index_open_path);
            let meta = file.metadata().map_err(|e| open_error(&e))?;
            (file, meta, open_path)
        } else {
            (file, meta, open_path)
        };
        if !meta.is_file() {
            return Err(Refusal::Forbidden.into());
        }
        let admitted = Admit {
            key: raw,
            content_type: files::content_type_with(&self.mime_types, open_path.as_bytes()),
            coding: None,
            siblings: self.siblings(&open_path),
            open_path,
        };
        self.admit(admitted, file, &meta, now_secs).map(Found::File)
    }

    /// Makes the entry for an open file and caches it (or keeps it for this one response).
    fn admit(
        &mut self,
        admitted: Admit<'_>,
        file: File,
        meta: &std::fs::Metadata,
        now_secs: u64,
    ) -> Result<Slot, Miss> {
        let stamp = stamp_of(meta);
        let (stamp, content) = if stamp.len > self.small_file_max {
            (stamp, Content::Open(Rc::new(file)))
        } else {
            let body = read_small(file, stamp.len).map_err(|e| open_error(&e))?;
            // The file may have changed between fstat and read; describe what was read.
            let read = FileStamp {
                len: body.len() as u64,
                ..stamp
            };
            (read, Content::Memory(body))
        };
        // Small text of the file itself is also offered compressed here (made on demand).
        let made_here = match &content {
            Content::Memory(bytes)
                if admitted.coding.is_none()
                    && bytes.len() >= files::compress::MIN_LEN
                    && files::compress::is_compressible(&admitted.content_type) =>
            {
                self.compress
            }
            _ => Codings::NONE,
        };
        let variants = admitted.siblings.union(made_here);
        let vary = admitted.coding.is_some() || !variants.is_empty();
        let extra = files::header_lines(
            &self.header_rules,
            &rule_path(&admitted.open_path, admitted.coding),
        );
        let entry = Cached {
            key: admitted.key.to_vec(),
            open_path: admitted.open_path,
            identity: identity_of(meta),
            head: PreparedHead::new(stamp, admitted.content_type, admitted.coding, vary, &extra),
            content,
            checked_at: now_secs,
            coding: admitted.coding,
            siblings: admitted.siblings,
            variants,
            source: stamp,
        };
        Ok(self.keep(entry))
    }

    /// Puts `entry` in the cache (evicting one when full), or keeps it for this one response
    /// when the cache holds no entries.
    fn keep(&mut self, entry: Cached) -> Slot {
        if self.cache_entries == 0 {
            self.uncached = Some(entry);
            return Slot::Uncached;
        }
        if self.entries.len() >= self.cache_entries {
            // Evict an arbitrary entry: the cache is a bound on memory and descriptors, not an LRU.
            self.remove(self.entries.len() - 1);
        }
        self.paths.insert(entry.key.clone(), self.entries.len());
        self.entries.push(entry);
        Slot::Cached(self.entries.len() - 1)
    }

    /// Whether the entry still describes its path: checked at most once a second against the
    /// same inode, size and mtime (as nginx checks). A file replaced by rename is a new inode
    /// even when a copy kept the size and mtime.
    ///
    /// The check is a stat of the path relative to the root's descriptor: it needs no
    /// descriptor, so it works at the open-files limit, and it can only confirm what the entry
    /// holds, never reach anything new (a path that now leads elsewhere, even out of the root,
    /// names another inode and drops the entry; the next request opens it beneath the root). A
    /// stat that fails for lack of memory keeps the entry, unchecked until the next second.
    fn revalidate(&mut self, slot: usize, now_secs: u64) -> bool {
        let Some(entry) = self.entries.get_mut(slot) else {
            return false;
        };
        if entry.checked_at == now_secs {
            return true;
        }
        let unchanged = match self.root.stat(&entry.open_path) {
            Ok(st) => {
                st.is_file
                    && (st.dev, st.ino) == entry.identity
                    && FileStamp {
                        len: st.len,
                        mtime_secs: st.mtime_secs,
                        mtime_nanos: st.mtime_nanos,
                    } == entry.source
            }
            Err(e) if is_shortage(&e) => {
                entry.checked_at = now_secs;
                let errno = e.raw_os_error().unwrap_or(0);
                self.shortages.note(&entry.key, errno, now_secs);
                return true;
            }
            Err(_) => false,
        };
        // A sibling added or removed since: the entry is made again with the new set.
        let (coding, siblings) = (entry.coding, entry.siblings);
        let unchanged = unchanged
            && (coding.is_some()
                || self.precompressed.is_empty()
                || self
                    .entries
                    .get(slot)
                    .is_some_and(|e| self.siblings(&e.open_path) == siblings));
        if unchanged {
            if let Some(entry) = self.entries.get_mut(slot) {
                entry.checked_at = now_secs;
            }
        }
        unchanged
    }

    /// Drops `entries[slot]` (closing a large file's descriptor once no response uses it).
    fn remove(&mut self, slot: usize) {
        if slot >= self.entries.len() {
            return;
        }
        let removed = self.entries.swap_remove(slot);
        self.paths.remove(&removed.key);
        if let Some(moved) = self.entries.get(slot) {
            if let Some(index) = self.paths.get_mut(&moved.key) {
                *index = slot;
            }
        }
    }
}

/// What an entry is made of besides its open file.
struct Admit<'k> {
    /// The cache key: the request path (for a sibling: with a NUL and the coding).
    key: &'k [u8],
    open_path: CString,
    /// The type of the file itself, for a sibling too.
    content_type: Cow<'static, str>,
    coding: Option<Coding>,
    siblings: Codings,
}

/// The path the `[[headers]]` rules see for an entry opened at `open_path`: the file's own,
/// with a leading slash, also for its precompressed sibling (`coding`).
fn rule_path(open_path: &CString, coding: Option<Coding>) -> Vec<u8> {
    let mut path = b"/".to_vec();
    path.extend_from_slice(open_path.as_bytes());
    if let Some(coding) = coding {
        path.truncate(path.len().saturating_sub(coding.extension().len()));
    }
    path
}

/// A file's validators and header lines, prepared once per cache entry.
struct PreparedHead {
    stamp: FileStamp,
    etag: String,
    content_type: Cow<'static, str>,
    /// "Content-Type: …\r\n" ["Content-Encoding: …\r\n"] "Last-Modified: …\r\nETag: …\r\n"
    /// ["Vary: Accept-Encoding\r\n"] [configured fields] "Accept-Ranges: bytes\r\n".
    lines: Vec<u8>,
    /// Where the Content-Type line ends.
    type_end: usize,
    /// Where the Content-Encoding line (if any) ends and the validator lines begin.
    validators_start: usize,
    /// Where the validator lines (with Vary and the configured fields) end.
    validators_end: usize,
}

impl PreparedHead {
    /// `coding`: the entry is that precompressed sibling; `vary`: the path has several
    /// representations, so every response of it says that `Accept-Encoding` chose; `extra`:
    /// the configured fields (`[[headers]]`), sent with 304s too (RFC 9110 §15.4.5 wants
    /// Cache-Control there).
    fn new(
        stamp: FileStamp,
        content_type: Cow<'static, str>,
        coding: Option<Coding>,
        vary: bool,
        extra: &[u8],
    ) -> PreparedHead {
        let etag = files::etag(&stamp, coding);
        let mut lines = format!("Content-Type: {content_type}\r\n").into_bytes();
        let type_end = lines.len();
        if let Some(coding) = coding {
            lines.extend_from_slice(format!("Content-Encoding: {}\r\n", coding.token()).as_bytes());
        }
        let validators_start = lines.len();
        lines.extend_from_slice(
            format!(
                "Last-Modified: {}\r\nETag: {etag}\r\n",
                files::last_modified(&stamp)
            )
            .as_bytes(),
        );
        if vary {
            lines.extend_from_slice(b"Vary: Accept-Encoding\r\n");
        }
        lines.extend_from_slice(extra);
        let validators_end = lines.len();
        lines.extend_from_slice(b"Accept-Ranges: bytes\r\n");
        PreparedHead {
            stamp,
            etag,
            content_type,
            lines,
            type_end,
            validators_start,
            validators_end,
        }
    }

    /// Every line, for a 200 or 206.
    fn all_lines(&self) -> &[u8] {
        &self.lines
    }

    /// "Content-Type: …\r\n".
    fn type_line(&self) -> &[u8] {
        self.lines.get(..self.type_end).unwrap_or_default()
    }

    /// "Last-Modified: …\r\nETag: …\r\n" and Vary, for a 304.
    fn validator_lines(&self) -> &[u8] {
        self.lines
            .get(self.validators_start..self.validators_end)
            .unwrap_or_default()
    }

    /// Content-Encoding, the validators and Vary: a multipart/byteranges 206, whose own
    /// Content-Type the response adds.
    fn multipart_lines(&self) -> &[u8] {
        self.lines
            .get(self.type_end..self.validators_end)
            .unwrap_or_default()
    }
}

/// The response for a file once preconditions and ranges are weighed.
fn file_response<'e>(req: &Request<'_>, entry: &'e Cached, seed: u64) -> Response<'e> {
    let head = &entry.head;
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
    let max_ranges = match entry.content {
        Content::Memory(_) => MAX_RANGES,
        Content::Open(_) => 1,
    };
    let len = head.stamp.len;
    match files::evaluate(&pre, &head.stamp, &head.etag, max_ranges) {
        Outcome::NotModified => Response {
            status: Status::NOT_MODIFIED,
            lines: head.validator_lines(),
            extra_lines: b"",
            field: None,
            body: Body::None,
        },
        Outcome::PreconditionFailed => Refusal::PreconditionFailed.response(),
        Outcome::Unsatisfiable => Refusal::RangeNotSatisfiable
            .response()
            .with_field("Content-Range", files::unsatisfied_range(len).into_bytes()),
        Outcome::Multipart(ranges) => {
            let Content::Memory(bytes) = &entry.content else {
                return Refusal::Internal.response();
            };
            let boundary = files::multipart_boundary(seed ^ len);
            let total = files::multipart_len(&boundary, &head.content_type, &ranges, len);
            let mut body = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
            for range in &ranges {
                body.extend_from_slice(&files::part_head(
                    &boundary,
                    &head.content_type,
                    *range,
                    len,
                ));
                body.extend_from_slice(slice(bytes, range.start, range.end + 1));
            }
            body.extend_from_slice(&files::multipart_tail(&boundary));
            Response {
                status: Status::PARTIAL_CONTENT,
                lines: head.multipart_lines(),
                extra_lines: b"",
                field: Some((
                    "Content-Type",
                    files::multipart_content_type(&boundary).into_bytes().into(),
                )),
                body: Body::Bytes(Cow::Owned(body)),
            }
        }
        Outcome::Full => Response {
            status: Status::OK,
            lines: head.all_lines(),
            extra_lines: b"",
            field: None,
            body: entry.body(0, len),
        },
        Outcome::Partial(range) => Response {
            status: Status::PARTIAL_CONTENT,
            lines: head.all_lines(),
            extra_lines: b"",
            field: Some((
                "Content-Range",
                files::content_range(range, len).into_bytes().into(),
            )),
            body: entry.body(range.start, range.end + 1),
        },
    }
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
fn relative_cstring(path: &[u8], trailing_slash: bool) -> Result<CString, Refusal> {
    let mut bytes = if path.is_empty() {
        b".".to_vec()
    } else {
        path.to_vec()
    };
    if trailing_slash && !path.is_empty() {
        bytes.push(b'/');
    }
    // SafePath guarantees no NUL; a failure here is a bug, answered as 500 rather than a panic.
    CString::new(bytes).map_err(|_| Refusal::Internal)
}

fn read_small(mut file: File, len: u64) -> io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(len as usize);
    file.by_ref().take(len).read_to_end(&mut body)?;
    Ok(body)
}

/// What a failed open, stat or read means for the request, in one place (as nginx's static
/// module does); `Refusal::status` turns a refusal into a status.
fn open_error(e: &io::Error) -> Miss {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::EXDEV | libc::ELOOP) => {
            Refusal::NotFound.into()
        }
        Some(libc::EACCES | libc::EPERM) => Refusal::Forbidden.into(),
        Some(errno) if is_shortage(e) => Miss::Unavailable(errno),
        _ => Refusal::Internal.into(),
    }
}

/// Whether `e` says the process or the system is out of descriptors or memory: a state that
/// passes (connections close), not a fault of the file.
fn is_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Limits, Parse};
    use std::rc::Weak;

    /// Seconds of a clock the tests move by hand.
    const NOW: u64 = 1_000_000;

    /// A root holding `small.txt` (8 bytes), `index.html` and `big.bin` (above a 16-byte
    /// small-file limit), and a cache over it with room for `entries`.
    fn files(entries: usize) -> (tempfile::TempDir, StaticFiles) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("small.txt"), b"8 bytes.").expect("write");
        std::fs::write(dir.path().join("big.bin"), [7u8; 100]).expect("write");
        std::fs::write(dir.path().join("index.html"), b"<p>i</p>").expect("write");
        let mut config = Config::defaults();
        config.root = dir.path().to_path_buf();
        config.small_file_max = 16;
        config.file_cache_entries = entries;
        let files = StaticFiles::new(&config, 0).expect("static files");
        (dir, files)
    }

    /// GET `path` at second `now`: the status and, for a large file, a weak reference to the
    /// descriptor it is sent from (dead once the file is closed).
    fn get(files: &mut StaticFiles, path: &str, now: u64) -> (u16, Option<Weak<File>>) {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes();
        let Ok(Parse::Complete(req)) = parse_request(&mut head, &Limits::default()) else {
            panic!("the request does not parse");
        };
        let response = files.respond(&req, now);
        let file = match &response.body {
            Body::File(region) => Some(Rc::downgrade(&region.file)),
            _ => None,
        };
        (response.status.code(), file)
    }

    /// What a response says: status, its head lines (prepared and made), its body.
    struct Seen {
        status: u16,
        lines: String,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.lines.lines().find_map(|line| {
                let (n, v) = line.split_once(": ")?;
                n.eq_ignore_ascii_case(name).then_some(v)
            })
        }
    }

    /// GET `path` with the extra field lines `fields` ("Name: value\r\n" each) at `now`.
    fn fetch(files: &mut StaticFiles, path: &str, fields: &str, now: u64) -> Seen {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes();
        let Ok(Parse::Complete(req)) = parse_request(&mut head, &Limits::default()) else {
            panic!("the request does not parse");
        };
        let response = files.respond(&req, now);
        let mut lines = String::from_utf8_lossy(response.lines).into_owned();
        if let Some((name, value)) = &response.field {
            lines.push_str(&format!("{name}: {}\r\n", String::from_utf8_lossy(value)));
        }
        let body = match &response.body {
            Body::Bytes(bytes) => bytes.to_vec(),
            Body::File(region) => {
                use std::os::unix::fs::FileExt;
                let mut bytes = vec![0; (region.end - region.offset) as usize];
                region
                    .file
                    .read_exact_at(&mut bytes, region.offset)
                    .expect("read the region");
                bytes
            }
            _ => Vec::new(),
        };
        Seen {
            status: response.status.code(),
            lines,
            body,
        }
    }

    /// `app.js` with a Brotli and a gzip sibling (fake contents: nothing here decompresses),
    /// served with `--precompressed` set to `codings`.
    fn with_siblings(codings: Codings, entries: usize) -> (tempfile::TempDir, StaticFiles) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("app.js"),
            b"console.log('the file itself');",
        )
        .expect("write");
        std::fs::write(dir.path().join("app.js.br"), b"brotli bytes").expect("write");
        std::fs::write(dir.path().join("app.js.gz"), [9u8; 40]).expect("write");
        let mut config = Config::defaults();
        config.root = dir.path().to_path_buf();
        config.small_file_max = 16;
        config.file_cache_entries = entries;
        config.precompressed = codings;
        let files = StaticFiles::new(&config, 0).expect("static files");
        (dir, files)
    }

    const BR_GZIP: Codings = Codings::NONE.with(Coding::Br).with(Coding::Gzip);

    #[test]
    fn accept_encoding_chooses_a_precompressed_sibling() {
        for entries in [8, 0] {
            let (_dir, mut files) = with_siblings(BR_GZIP, entries);
            let plain = fetch(&mut files, "/app.js", "", NOW);
            assert_eq!(plain.status, 200);
            assert_eq!(plain.body, b"console.log('the file itself');");
            assert_eq!(plain.header("Content-Encoding"), None);
            assert_eq!(plain.header("Vary"), Some("Accept-Encoding"));

            let br = fetch(&mut files, "/app.js", "Accept-Encoding: gzip, br\r\n", NOW);
            assert_eq!(br.body, b"brotli bytes");
            assert_eq!(br.header("Content-Encoding"), Some("br"));
            assert_eq!(br.header("Vary"), Some("Accept-Encoding"));
            assert_eq!(br.header("Content-Type"), plain.header("Content-Type"));
            let br_tag = br.header("ETag").expect("an ETag");
            assert!(br_tag.ends_with("-br\""), "{br_tag}");
            assert_ne!(Some(br_tag), plain.header("ETag"));

            // The large sibling, sent from its descriptor.
            let gz = fetch(&mut files, "/app.js", "Accept-Encoding: gzip\r\n", NOW);
            assert_eq!(
                (gz.body.as_slice(), gz.header("Content-Encoding")),
                (&[9u8; 40][..], Some("gzip"))
            );

            // Conditionals and ranges apply to the representation sent.
            let fields = format!("Accept-Encoding: br\r\nIf-None-Match: {br_tag}\r\n");
            let not_modified = fetch(&mut files, "/app.js", &fields, NOW);
            assert_eq!(not_modified.status, 304);
            assert_eq!(not_modified.header("Vary"), Some("Accept-Encoding"));
            let fields = format!("If-None-Match: {br_tag}\r\n");
            assert_eq!(fetch(&mut files, "/app.js", &fields, NOW).status, 200);
            let range = fetch(
                &mut files,
                "/app.js",
                "Accept-Encoding: br\r\nRange: bytes=0-5\r\n",
                NOW,
            );
            assert_eq!((range.status, range.body.as_slice()), (206, &b"brotli"[..]));
            assert_eq!(range.header("Content-Range"), Some("bytes 0-5/12"));
            let parts = fetch(
                &mut files,
                "/app.js",
                "Accept-Encoding: br\r\nRange: bytes=0-0,2-2\r\n",
                NOW,
            );
            assert_eq!(parts.status, 206);
            assert_eq!(parts.header("Content-Encoding"), Some("br"));

            // Not accepted, or not configured: the file itself.
            let refused = fetch(
                &mut files,
                "/app.js",
                "Accept-Encoding: br;q=0, zstd\r\n",
                NOW,
            );
            assert_eq!(refused.header("Content-Encoding"), None);
        }
    }

    #[test]
    fn header_rules_reach_every_representation_and_304s() {
        let (dir, _) = with_siblings(BR_GZIP, 8);
        std::fs::create_dir(dir.path().join("docs")).expect("mkdir");
        std::fs::write(dir.path().join("docs/index.html"), b"<p>docs</p>").expect("write");
        let mut config = Config::defaults();
        config.root = dir.path().to_path_buf();
        config.precompressed = BR_GZIP;
        let rule = |glob: &str, name: &str, value: &str| {
            let glob = files::Glob::parse(glob).expect("glob");
            HeaderRule::new(glob, vec![(name.to_owned(), value.to_owned())]).expect("rule")
        };
        config.header_rules = vec![
            rule("*.js", "Cache-Control", "max-age=31536000, immutable"),
            rule("/docs/**", "X-Frame-Options", "DENY"),
        ];
        let mut files = StaticFiles::new(&config, 0).expect("static files");
        let immutable = Some("max-age=31536000, immutable");
        for accept in ["", "Accept-Encoding: br\r\n", "Accept-Encoding: gzip\r\n"] {
            let seen = fetch(&mut files, "/app.js", accept, NOW);
            assert_eq!(seen.header("Cache-Control"), immutable, "{accept}");
            let fields = format!(
                "{accept}If-None-Match: {}\r\n",
                seen.header("ETag").unwrap_or("")
            );
            let revalidated = fetch(&mut files, "/app.js", &fields, NOW);
            assert_eq!(revalidated.status, 304);
            assert_eq!(revalidated.header("Cache-Control"), immutable, "{accept}");
        }
        let range = fetch(&mut files, "/app.js", "Range: bytes=0-0,2-2\r\n", NOW);
        assert_eq!(
            (range.status, range.header("Cache-Control")),
            (206, immutable)
        );
        // A directory's index: the rules see the index file's path.
        let docs = fetch(&mut files, "/docs/", "", NOW);
        assert_eq!(docs.header("X-Frame-Options"), Some("DENY"));
        assert_eq!(docs.header("Cache-Control"), Some("no-cache"));
        assert_eq!(
            fetch(&mut files, "/app.js", "", NOW).header("X-Frame-Options"),
            None
        );
    }

    /// A root with `index.html`, `404.html`, `403.html`, `app.js`, `private/` (no index) and a
    /// `notes.md`, served with `edit` applied to the defaults.
    fn site(edit: impl FnOnce(&mut Config)) -> (tempfile::TempDir, StaticFiles) {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, body) in [
            ("index.html", &b"<p>app shell</p>"[..]),
            ("404.html", b"<p>not here</p>"),
            ("403.html", b"<p>not for you</p>"),
            ("app.js", b"boot();"),
            ("notes.md", b"# notes"),
        ] {
            std::fs::write(dir.path().join(name), body).expect("write");
        }
        std::fs::create_dir(dir.path().join("private")).expect("mkdir");
        let mut config = Config::defaults();
        config.root = dir.path().to_path_buf();
        edit(&mut config);
        let files = StaticFiles::new(&config, 0).expect("static files");
        (dir, files)
    }

    #[test]
    fn error_pages_answer_their_statuses_with_the_refusals_fields() {
        let (_dir, mut files) = site(|c| {
            c.error_pages = vec![
                (404, "/404.html".into()),
                (403, "/403.html".into()),
                (405, "/404.html".into()),
                (400, "/missing.html".into()),
            ];
        });
        let missing = fetch(&mut files, "/nope", "", NOW);
        assert_eq!(
            (missing.status, missing.body.as_slice()),
            (404, &b"<p>not here</p>"[..])
        );
        assert_eq!(
            missing.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        let forbidden = fetch(&mut files, "/private/", "", NOW);
        assert_eq!(
            (forbidden.status, forbidden.body.as_slice()),
            (403, &b"<p>not for you</p>"[..])
        );
        let mut head = b"DELETE /app.js HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        let Ok(Parse::Complete(req)) = parse_request(&mut head, &Limits::default()) else {
            panic!("the request does not parse");
        };
        let refused = files.respond(&req, NOW);
        assert_eq!(refused.status.code(), 405);
        assert!(matches!(&refused.body, Body::Bytes(b) if b.as_ref() == b"<p>not here</p>"));
        assert_eq!(refused.field.as_ref().map(|f| f.0), Some("Allow"));
        // A page that does not exist leaves the built-in one.
        let bad = fetch(&mut files, "/a/../../x", "", NOW);
        assert_eq!(bad.status, 400);
        assert!(bad.header("Content-Type").is_none(), "{}", bad.lines);
        // Without pages, the built-in 404.
        let (_dir, mut files) = site(|c| c.error_pages = Vec::new());
        let plain = fetch(&mut files, "/nope", "", NOW);
        assert_eq!(plain.status, 404);
        assert_ne!(plain.body, b"<p>not here</p>");
    }

    #[test]
    fn a_spa_route_gets_the_fallback_and_a_missing_asset_stays_404() {
        let (dir, mut files) = site(|c| c.spa_fallback = Some("/index.html".into()));
        for route in ["/users/42", "/settings", "/deep/link/"] {
            let seen = fetch(&mut files, route, "", NOW);
            assert_eq!(
                (seen.status, seen.body.as_slice()),
                (200, &b"<p>app shell</p>"[..]),
                "{route}"
            );
        }
        let asset = fetch(&mut files, "/missing.js", "", NOW);
        assert_eq!(
            (asset.status, asset.body.as_slice()),
            (404, &b"<p>not here</p>"[..])
        );
        assert_eq!(fetch(&mut files, "/app.js", "", NOW).body, b"boot();");
        let forbidden = fetch(&mut files, "/private/", "", NOW);
        assert_eq!(
            forbidden.status, 403,
            "a directory without index is not a route"
        );
        let tag = fetch(&mut files, "/users/1", "", NOW)
            .header("ETag")
            .map(str::to_owned);
        let fields = format!("If-None-Match: {}\r\n", tag.unwrap_or_default());
        assert_eq!(fetch(&mut files, "/users/2", &fields, NOW).status, 304);
        std::fs::remove_file(dir.path().join("index.html")).expect("remove");
        let gone = fetch(&mut files, "/users/3", "", NOW + 1);
        assert_eq!(gone.status, 404);
    }

    #[test]
    fn configured_types_replace_the_built_in_ones() {
        let (_dir, mut files) = site(|c| {
            c.mime_types = vec![("md".into(), "text/plain; charset=utf-8".into())];
        });
        let notes = fetch(&mut files, "/notes.md", "", NOW);
        assert_eq!(
            notes.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        let parts = fetch(&mut files, "/notes.md", "Range: bytes=0-0,2-2\r\n", NOW);
        assert!(parts
            .body
            .windows(25)
            .any(|w| w == b"Content-Type: text/plain;"));
        let script = fetch(&mut files, "/app.js", "", NOW);
        assert_eq!(
            script.header("Content-Type"),
            Some("text/javascript; charset=utf-8")
        );
    }

    #[test]
    fn a_directory_without_index_is_listed_with_autoindex_and_hostile_names_stay_text() {
        use std::os::unix::ffi::OsStrExt;
        let outside = tempfile::tempdir().expect("temp dir");
        std::fs::write(outside.path().join("secret.txt"), b"outside").expect("write");
        let (dir, mut files) = site(|c| c.autoindex = true);
        let pub_dir = dir.path().join("pub");
        std::fs::create_dir_all(pub_dir.join("sub")).expect("mkdir");
        let hostile: [&[u8]; 5] = [
            b"<img src=x onerror=alert(1)>.txt",
            b"quote\"d'.txt",
            b"new\nline.txt",
            b"100%.txt",
            b"latin1-\xe9.txt",
        ];
        for name in hostile {
            let path = pub_dir.join(std::ffi::OsStr::from_bytes(name));
            std::fs::write(path, b"x").expect("write");
        }
        std::fs::write(pub_dir.join(".hidden"), b"h").expect("write");
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            pub_dir.join("escape.txt"),
        )
        .expect("symlink");
        std::os::unix::fs::symlink("../app.js", pub_dir.join("inside.js")).expect("symlink");
        let made = std::process::Command::new("mkfifo")
            .arg(pub_dir.join("fifo"))
            .status()
            .expect("mkfifo");
        assert!(made.success());

        let page = fetch(&mut files, "/pub/", "", NOW);
        assert_eq!(page.status, 200);
        assert_eq!(
            page.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        let html = String::from_utf8(page.body).expect("UTF-8");
        assert!(html.contains("<title>Index of /pub/</title>"), "{html}");
        assert!(html.contains("href=\"./sub/\">sub/</a>"), "{html}");
        assert!(
            html.contains("href=\"./inside.js\">inside.js</a></td><td class=\"n\">7<"),
            "{html}"
        );
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;.txt"),
            "{html}"
        );
        assert!(html.contains("quote&quot;d&#39;.txt") && html.contains("new&#10;line.txt"));
        assert!(
            html.contains("href=\"./100%25.txt\"") && html.contains("href=\"./latin1-%E9.txt\"")
        );
        for absent in ["<img", ".hidden", "escape.txt", "fifo", "secret"] {
            assert!(!html.contains(absent), "{absent} listed:\n{html}");
        }
        // Every link leads to the file it names.
        for name in hostile {
            let encoded: String = name.iter().map(|b| format!("%{b:02X}")).collect();
            let served = fetch(&mut files, &format!("/pub/{encoded}"), "", NOW);
            assert_eq!((served.status, served.body.as_slice()), (200, &b"x"[..]));
        }

        let json = fetch(&mut files, "/pub/", "Accept: application/json\r\n", NOW);
        assert_eq!(json.header("Content-Type"), Some("application/json"));
        assert_eq!(json.header("Vary"), Some("Accept"));
        let text = String::from_utf8(json.body).expect("UTF-8");
        assert!(
            text.starts_with("{\"path\":\"/pub/\",\"page\":1,\"pages\":1"),
            "{text}"
        );
        assert_eq!(text.matches("\"name\"").count(), 7, "{text}");

        // Without --autoindex: 403, as before.
        let (_dir, mut files) = site(|_| {});
        assert_eq!(fetch(&mut files, "/private/", "", NOW).status, 403);
    }

    /// Two kilobytes of HTML that compress well.
    fn page_text(tag: &str) -> Vec<u8> {
        (0..60)
            .flat_map(|i| format!("<li>{tag} line {i} of the page</li>\n").into_bytes())
            .collect()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
            .expect("gunzip");
        out
    }

    #[test]
    fn small_text_is_compressed_once_and_again_when_it_changes() {
        let (dir, mut files) = site(|_| {});
        std::fs::write(dir.path().join("list.html"), page_text("first")).expect("write");
        let plain = fetch(&mut files, "/list.html", "", NOW);
        assert_eq!(
            (plain.header("Content-Encoding"), plain.header("Vary")),
            (None, Some("Accept-Encoding"))
        );
        let gz = fetch(&mut files, "/list.html", "Accept-Encoding: gzip\r\n", NOW);
        assert_eq!(gz.header("Content-Encoding"), Some("gzip"));
        assert!(
            gz.body.len() < plain.body.len() / 3,
            "{} bytes",
            gz.body.len()
        );
        assert_eq!(gunzip(&gz.body), plain.body);
        assert!(gz.header("ETag").is_some_and(|t| t.ends_with("-gzip\"")));
        assert_eq!(gz.header("Last-Modified"), plain.header("Last-Modified"));
        let br = fetch(
            &mut files,
            "/list.html",
            "Accept-Encoding: gzip, br\r\n",
            NOW,
        );
        assert_eq!(br.header("Content-Encoding"), Some("br"));
        let mut unbrotli = Vec::new();
        std::io::Read::read_to_end(
            &mut brotli::Decompressor::new(&br.body[..], 4096),
            &mut unbrotli,
        )
        .expect("unbrotli");
        assert_eq!(unbrotli, plain.body);
        // Kept: the same entry answers, conditionals and ranges apply to the compressed bytes.
        let entries = files.entries.len();
        let again = fetch(&mut files, "/list.html", "Accept-Encoding: gzip\r\n", NOW);
        assert_eq!(
            (again.body == gz.body, files.entries.len()),
            (true, entries)
        );
        let fields = format!(
            "Accept-Encoding: gzip\r\nIf-None-Match: {}\r\n",
            gz.header("ETag").unwrap_or("")
        );
        assert_eq!(fetch(&mut files, "/list.html", &fields, NOW).status, 304);
        let head = fetch(
            &mut files,
            "/list.html",
            "Accept-Encoding: gzip\r\nRange: bytes=0-1\r\n",
            NOW,
        );
        assert_eq!(
            (head.status, head.body.as_slice()),
            (206, &[0x1f, 0x8b][..])
        );
        // A changed file is compressed again (a second later, when it is revalidated).
        std::fs::write(dir.path().join("list.html"), page_text("second")).expect("write");
        let changed = fetch(
            &mut files,
            "/list.html",
            "Accept-Encoding: gzip\r\n",
            NOW + 1,
        );
        assert_eq!(gunzip(&changed.body), page_text("second"));
        assert_ne!(changed.header("ETag"), gz.header("ETag"));
    }

    #[test]
    fn only_small_compressible_files_are_compressed() {
        let (dir, mut files) = site(|c| c.small_file_max = 4096);
        std::fs::write(dir.path().join("tiny.css"), b"a{b:c}").expect("write");
        std::fs::write(dir.path().join("pic.png"), page_text("png")).expect("write");
        std::fs::write(
            dir.path().join("big.html"),
            [page_text("a"), page_text("b"), page_text("c")].concat(),
        )
        .expect("write");
        // Text without redundancy: not smaller compressed, so sent as it is from then on.
        let noise = files::compress::noise(3000);
        std::fs::write(dir.path().join("noise.txt"), &noise).expect("write");
        for path in ["/tiny.css", "/pic.png", "/big.html"] {
            let seen = fetch(&mut files, path, "Accept-Encoding: gzip, br\r\n", NOW);
            assert_eq!(
                (
                    seen.status,
                    seen.header("Content-Encoding"),
                    seen.header("Vary")
                ),
                (200, None, None),
                "{path}"
            );
        }
        let noisy = fetch(&mut files, "/noise.txt", "Accept-Encoding: gzip\r\n", NOW);
        assert_eq!(noisy.header("Content-Encoding"), None);
        assert_eq!(noisy.body, noise);
        let slot = files
            .paths
            .get(&b"/noise.txt"[..])
            .copied()
            .expect("cached");
        assert_eq!(files.entries[slot].variants, Codings::NONE.with(Coding::Br));
        // Off: nothing is compressed.
        let (dir, mut files) = site(|c| c.compress = Codings::NONE);
        std::fs::write(dir.path().join("list.html"), page_text("x")).expect("write");
        let seen = fetch(
            &mut files,
            "/list.html",
            "Accept-Encoding: gzip, br\r\n",
            NOW,
        );
        assert_eq!(
            (seen.header("Content-Encoding"), seen.header("Vary")),
            (None, None)
        );
    }

    #[test]
    fn a_precompressed_sibling_is_used_where_it_exists() {
        let (dir, mut files) = site(|c| c.precompressed = Codings::NONE.with(Coding::Gzip));
        std::fs::write(dir.path().join("list.html"), page_text("x")).expect("write");
        std::fs::write(dir.path().join("list.html.gz"), b"made at build time").expect("write");
        let gz = fetch(&mut files, "/list.html", "Accept-Encoding: gzip\r\n", NOW);
        assert_eq!(gz.body, b"made at build time");
        let br = fetch(
            &mut files,
            "/list.html",
            "Accept-Encoding: br, gzip\r\n",
            NOW,
        );
        assert_eq!(
            br.header("Content-Encoding"),
            Some("br"),
            "made here, and preferred"
        );
    }

    #[test]
    fn siblings_are_ignored_unless_configured() {
        let (_dir, mut files) = with_siblings(Codings::NONE.with(Coding::Zstd), 8);
        let seen = fetch(
            &mut files,
            "/app.js",
            "Accept-Encoding: br, gzip, zstd\r\n",
            NOW,
        );
        assert_eq!(seen.body, b"console.log('the file itself');");
        assert_eq!(
            (seen.header("Vary"), seen.header("Content-Encoding")),
            (None, None)
        );
        let (_dir, mut files) = with_siblings(Codings::NONE, 8);
        let seen = fetch(&mut files, "/app.js", "Accept-Encoding: br\r\n", NOW);
        assert_eq!(
            (seen.header("Vary"), seen.header("Content-Encoding")),
            (None, None)
        );
    }

    #[test]
    fn a_sibling_added_or_removed_is_seen_a_second_later() {
        let (dir, mut files) = with_siblings(BR_GZIP, 8);
        std::fs::remove_file(dir.path().join("app.js.br")).expect("remove");
        let gzip = fetch(&mut files, "/app.js", "Accept-Encoding: br, gzip\r\n", NOW);
        assert_eq!(gzip.header("Content-Encoding"), Some("gzip"));
        std::fs::write(dir.path().join("app.js.br"), b"brotli bytes").expect("write");
        let same_second = fetch(&mut files, "/app.js", "Accept-Encoding: br, gzip\r\n", NOW);
        assert_eq!(same_second.header("Content-Encoding"), Some("gzip"));
        let later = fetch(
            &mut files,
            "/app.js",
            "Accept-Encoding: br, gzip\r\n",
            NOW + 1,
        );
        assert_eq!(later.header("Content-Encoding"), Some("br"));
        std::fs::remove_file(dir.path().join("app.js.br")).expect("remove");
        std::fs::remove_file(dir.path().join("app.js.gz")).expect("remove");
        let none = fetch(
            &mut files,
            "/app.js",
            "Accept-Encoding: br, gzip\r\n",
            NOW + 2,
        );
        assert_eq!((none.status, none.header("Content-Encoding")), (200, None));
        assert_eq!(none.header("Vary"), None);
    }

    #[test]
    fn a_sibling_that_is_not_a_file_leaves_the_file_itself() {
        let (dir, mut files) = with_siblings(BR_GZIP, 8);
        std::fs::remove_file(dir.path().join("app.js.br")).expect("remove");
        std::fs::create_dir(dir.path().join("app.js.br")).expect("mkdir");
        let seen = fetch(&mut files, "/app.js", "Accept-Encoding: br\r\n", NOW);
        assert_eq!((seen.status, seen.header("Content-Encoding")), (200, None));
        assert_eq!(seen.body, b"console.log('the file itself');");
    }

    #[test]
    fn the_sweep_closes_a_deleted_large_file_nobody_asks_for() {
        let (dir, mut files) = files(8);
        let (status, descriptor) = get(&mut files, "/big.bin", NOW);
        assert_eq!(status, 200);
        let descriptor = descriptor.expect("a large file is sent from its descriptor");
        assert!(descriptor.upgrade().is_some(), "the cache holds it open");
        files.sweep(NOW + 1);
        assert!(
            descriptor.upgrade().is_some(),
            "an unchanged file stays open"
        );
        std::fs::remove_file(dir.path().join("big.bin")).expect("remove");
        files.sweep(NOW + 1);
        assert!(descriptor.upgrade().is_some(), "one sweep a second");
        files.sweep(NOW + 2);
        assert!(
            descriptor.upgrade().is_none(),
            "the descriptor was not closed"
        );
        assert!(files.entries.is_empty() && files.paths.is_empty());
    }

    #[test]
    fn the_sweep_drops_changed_large_files_and_leaves_small_ones_to_requests() {
        let (dir, mut files) = files(8);
        for path in ["/small.txt", "/big.bin", "/"] {
            assert_eq!(get(&mut files, path, NOW).0, 200, "{path}");
        }
        assert_eq!(files.entries.len(), 3);
        std::fs::write(dir.path().join("small.txt"), b"now 9 bytes").expect("write");
        std::fs::write(dir.path().join("big.bin"), [8u8; 90]).expect("write");
        files.sweep(NOW + 1);
        let mut kept: Vec<&[u8]> = files.entries.iter().map(|e| e.key.as_slice()).collect();
        kept.sort_unstable();
        assert_eq!(kept, [b"/".as_slice(), b"/small.txt"]);
        for (key, &slot) in &files.paths {
            assert_eq!(files.entries.get(slot).map(|e| &e.key), Some(key));
        }
        // The small file's entry is checked by the request, which then gets the new bytes.
        assert_eq!(get(&mut files, "/small.txt", NOW + 1).0, 200);
        let lengths: Vec<u64> = files.entries.iter().map(|e| e.head.stamp.len).collect();
        assert!(lengths.contains(&11), "{lengths:?}");
        assert!(files
            .entries
            .iter()
            .all(|e| e.checked_at == NOW + 1 || e.key == b"/"));
    }

    #[test]
    fn a_pass_is_spread_over_calls_and_the_next_starts_from_the_first_entry() {
        let many = SWEEP_BATCH + 44;
        let (dir, mut files) = files(2 * many);
        let large = |name: &str| {
            std::fs::write(dir.path().join(name), [1u8; 100]).expect("write");
        };
        for i in 0..many {
            let name = format!("f{i}.bin");
            large(&name);
            assert_eq!(get(&mut files, &format!("/{name}"), NOW).0, 200);
            std::fs::remove_file(dir.path().join(&name)).expect("remove");
        }
        // A small file's entry costs the sweep no stat.
        assert_eq!(get(&mut files, "/small.txt", NOW).0, 200);
        // The pass of this second finds every entry checked already.
        files.sweep(NOW);
        files.sweep(NOW);
        assert_eq!(files.sweep_cursor, None);
        assert_eq!(files.entries.len(), many + 1);
        files.sweep(NOW + 1);
        assert_eq!(files.entries.len(), 45, "one batch per call");
        files.sweep(NOW + 1);
        assert_eq!(files.entries.len(), 1);
        assert_eq!(files.sweep_cursor, None);

        // An entry made before others are added is still checked by the next pass.
        assert_eq!(get(&mut files, "/big.bin", NOW + 1).0, 200);
        for i in 0..SWEEP_BATCH {
            let name = format!("g{i}.bin");
            large(&name);
            assert_eq!(get(&mut files, &format!("/{name}"), NOW + 2).0, 200);
        }
        std::fs::remove_file(dir.path().join("big.bin")).expect("remove");
        files.sweep(NOW + 3);
        assert!(!files.paths.contains_key(b"/big.bin".as_slice()));
        assert!(files.sweep_cursor.is_some(), "a batch's worth left");
        // A pass under way when the second changes goes on where it was.
        files.sweep(NOW + 4);
        assert_eq!(files.sweep_cursor, None, "the pass started again");
        let large_entries: Vec<&Cached> = files
            .entries
            .iter()
            .filter(|e| matches!(e.content, Content::Open(_)))
            .collect();
        assert_eq!(large_entries.len(), SWEEP_BATCH);
        assert!(large_entries.iter().all(|e| e.checked_at >= NOW + 3));
    }

    #[test]
    fn without_a_cache_the_sweep_lets_the_last_large_file_go() {
        let (_dir, mut files) = files(0);
        let (status, descriptor) = get(&mut files, "/big.bin", NOW);
        assert_eq!(status, 200);
        let descriptor = descriptor.expect("a large file is sent from its descriptor");
        assert!(descriptor.upgrade().is_some());
        files.sweep(NOW + 1);
        assert!(
            descriptor.upgrade().is_none(),
            "the descriptor was not closed"
        );
    }

    #[test]
    fn a_shortage_of_descriptors_or_memory_is_503_with_retry_after_not_500() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM] {
            let error = io::Error::from_raw_os_error(errno);
            assert!(is_shortage(&error), "{error}");
            assert!(matches!(open_error(&error), Miss::Unavailable(e) if e == errno));
        }
        for (errno, refusal) in [
            (libc::ENOENT, Refusal::NotFound),
            (libc::EACCES, Refusal::Forbidden),
            (libc::EIO, Refusal::Internal),
        ] {
            let error = io::Error::from_raw_os_error(errno);
            assert!(!is_shortage(&error), "{error}");
            assert!(matches!(open_error(&error), Miss::Refused(r) if r == refusal));
        }
        let response = Refusal::Unavailable.response();
        assert_eq!(response.status, Status::SERVICE_UNAVAILABLE);
        assert!(matches!(
            response.field,
            Some(("Retry-After", ref value)) if value.as_ref() == b"1"
        ));
        assert!(matches!(response.body, Body::Page));
    }
}
