//! Validators (`ETag`, `Last-Modified`) and the RFC 9110 §13.2.2 evaluation of a request's
//! preconditions and range into one [`Outcome`].
//!
//! It reads no clock: every date compared is one the client sent or the file's mtime.

use std::time::{Duration, UNIX_EPOCH};

use super::encoding::Coding;
use super::range::{self, ByteRange, Selected};
use super::syntax::{is_ows, trim, trim_start_matches};

/// What the worker learnt from `fstat` on the opened file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub len: u64,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
}

/// The last second an IMF-fixdate can name (9999-12-31T23:59:59Z); `httpdate` panics beyond it.
const LAST_HTTP_DATE_SECS: i64 = 253_402_300_799;

/// The mtime in whole seconds as `Last-Modified` states it: clamped to 1970..=9999, because
/// the file system can hold any mtime and an HTTP-date cannot.
fn validator_secs(stamp: &FileStamp) -> i64 {
    stamp.mtime_secs.clamp(0, LAST_HTTP_DATE_SECS)
}

/// nginx-style strong entity-tag: `"<mtime seconds hex>-<length hex>"`, quotes included; a
/// precompressed sibling's tag ends in its coding (`"…-br"`), so that no two representations
/// of a path share one even when their files share size and mtime.
pub fn etag(stamp: &FileStamp, coding: Option<Coding>) -> String {
    match coding {
        None => format!("\"{:x}-{:x}\"", stamp.mtime_secs, stamp.len),
        Some(c) => format!("\"{:x}-{:x}-{}\"", stamp.mtime_secs, stamp.len, c.token()),
    }
}

/// The `Last-Modified` value: an IMF-fixdate with seconds precision.
pub fn last_modified(stamp: &FileStamp) -> String {
    let secs = Duration::from_secs(validator_secs(stamp).unsigned_abs());
    httpdate::fmt_http_date(UNIX_EPOCH + secs)
}

/// The request facts the decision depends on: raw header values (combined field lines
/// joined with ", " by the caller) and whether the method is GET or HEAD.
#[derive(Clone, Copy, Debug, Default)]
pub struct Preconditions<'a> {
    pub head_or_get: bool,
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
}

/// The response a file request gets once preconditions and range are weighed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
    /// 200 with the whole file.
    Full,
    /// 206 with one range.
    Partial(ByteRange),
    /// 206 multipart/byteranges, parts in request order, overlapping or adjacent ones merged.
    Multipart(Vec<ByteRange>),
    /// 416 Range Not Satisfiable, with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Decides the response for an existing file, in the order of RFC 9110 §13.2.2.
///
/// The caller evaluates only requests whose response would otherwise be 2xx (RFC 9110
/// §13.2.1: "A server MUST ignore all received preconditions if its response to the same
/// request without those conditions ... would have been a status code other than a 2xx").
///
/// Range is honoured for GET and HEAD alike, as nginx does, on non-empty files only; more
/// than `max_ranges` satisfiable ranges (or `max_ranges == 0`) serve the whole file.
pub fn evaluate(pre: &Preconditions, stamp: &FileStamp, etag: &str, max_ranges: usize) -> Outcome {
    if let Some(refusal) = failed_precondition(pre, stamp, etag) {
        return refusal;
    }
    // "When the method is GET and both Range and If-Range are present, evaluate the If-Range
    // precondition: if true and the Range is applicable to the selected representation,
    // respond 206 (Partial Content); otherwise, ignore the Range header field and respond 200."
    match pre.range {
        Some(value) if pre.head_or_get => {
            if pre
                .if_range
                .is_some_and(|v| !if_range_holds(v, stamp, etag))
            {
                return Outcome::Full;
            }
            match range::select(value, stamp.len, max_ranges) {
                Selected::Whole => Outcome::Full,
                Selected::One(range) => Outcome::Partial(range),
                Selected::Several(ranges) => Outcome::Multipart(ranges),
                Selected::Unsatisfiable => Outcome::Unsatisfiable,
            }
        }
        _ => Outcome::Full,
    }
}

/// Steps 1 to 4 of RFC 9110 §13.2.2; `None` when the request may proceed.
fn failed_precondition(pre: &Preconditions, stamp: &FileStamp, etag: &str) -> Option<Outcome> {
    let mtime = validator_secs(stamp);
    // Parsed only when a request names entity-tags: most name none.
    let ours = || single_tag(etag.as_bytes());
    // Step 1: "If-Match is present, evaluate ... if false, respond 412".
    if let Some(value) = pre.if_match {
        if !is_star(value) && !any_tag(value, |tag| ours().is_some_and(|o| strong_eq(tag, o))) {
            return Some(Outcome::PreconditionFailed);
        }
    } else if let Some(date) = pre.if_unmodified_since.and_then(parse_date) {
        // Step 2: "If-Match is not present, and If-Unmodified-Since is present".
        if mtime > date {
            return Some(Outcome::PreconditionFailed);
        }
    }
    // Step 3: "if false [the If-None-Match condition], respond 304 (Not Modified) if the
    // request method is GET or HEAD; respond 412 (Precondition Failed) otherwise".
    let not_modified = if pre.head_or_get {
        Outcome::NotModified
    } else {
        Outcome::PreconditionFailed
    };
    if let Some(value) = pre.if_none_match {
        if is_star(value) || any_tag(value, |tag| ours().is_some_and(|o| tag.opaque == o.opaque)) {
            return Some(not_modified);
        }
    } else if pre.head_or_get {
        // Step 4: "the method is GET or HEAD, If-None-Match is not present, and
        // If-Modified-Since is present"; an invalid date is ignored.
        let date = pre.if_modified_since.and_then(parse_date);
        if date.is_some_and(|date| mtime <= date) {
            return Some(not_modified);
        }
    }
    None
}

/// If-Range (RFC 9110 §13.1.5): an entity-tag must match strongly, a date must equal the
/// Last-Modified date exactly; anything else, invalid values included, is false.
fn if_range_holds(value: &[u8], stamp: &FileStamp, etag: &str) -> bool {
    if let Some(theirs) = single_tag(value) {
        return single_tag(etag.as_bytes()).is_some_and(|ours| strong_eq(theirs, ours));
    }
    parse_date(value) == Some(validator_secs(stamp))
}

/// An entity-tag: `[ "W/" ] DQUOTE *etagc DQUOTE`; `opaque` excludes the quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

/// "Strong comparison: two entity tags are equivalent if both are not weak and their
/// opaque-tags match character-by-character."
fn strong_eq(a: EntityTag, b: EntityTag) -> bool {
    !a.weak && !b.weak && a.opaque == b.opaque
}

/// etagc = %x21 / %x23-7E / obs-text
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

/// Parses one entity-tag at the start of `s`, returning it and what follows.
fn parse_tag(s: &[u8]) -> Option<(EntityTag<'_>, &[u8])> {
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let s = s.strip_prefix(b"\"")?;
    let close = s.iter().position(|&b| !is_etagc(b))?;
    let (opaque, rest) = s.split_at(close);
    let rest = rest.strip_prefix(b"\"")?;
    Some((EntityTag { weak, opaque }, rest))
}

/// A value that is exactly one entity-tag, surrounding whitespace aside.
fn single_tag(value: &[u8]) -> Option<EntityTag<'_>> {
    match parse_tag(trim(value))? {
        (tag, b"") => Some(tag),
        _ => None,
    }
}

/// Whether any entity-tag of the list `#entity-tag` satisfies `pred`. Empty list elements
/// are skipped; parsing stops at the first malformed element (later tags never match).
fn any_tag<'a>(list: &'a [u8], mut pred: impl FnMut(EntityTag<'a>) -> bool) -> bool {
    let mut rest = list;
    loop {
        rest = trim_start_matches(rest, |b| b == b',' || is_ows(b));
        if rest.is_empty() {
            return false;
        }
        let Some((tag, after)) = parse_tag(rest) else {
            return false;
        };
        if pred(tag) {
            return true;
        }
        rest = trim_start_matches(after, is_ows);
        if !rest.is_empty() && !rest.starts_with(b",") {
            return false;
        }
    }
}

/// Whether the field value is "*" ("If-Match = "*" / #entity-tag").
fn is_star(value: &[u8]) -> bool {
    trim(value) == b"*"
}

/// An HTTP-date (IMF-fixdate, RFC 850 or asctime) as seconds since the epoch.
fn parse_date(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(trim(value)).ok()?;
    let time = httpdate::parse_http_date(text).ok()?;
    let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2020-07-13T14:35:54Z, 420 bytes.
    const STAMP: FileStamp = FileStamp {
        len: 420,
        mtime_secs: 0x5f0c_714a,
        mtime_nanos: 123,
    };
    const ETAG: &str = "\"5f0c714a-1a4\"";
    const LAST_MODIFIED: &[u8] = b"Mon, 13 Jul 2020 14:35:54 GMT";
    const EARLIER: &[u8] = b"Mon, 13 Jul 2020 14:35:53 GMT";
    const LATER: &[u8] = b"Mon, 13 Jul 2020 14:35:55 GMT";
    const GET: Preconditions = Preconditions {
        head_or_get: true,
        if_match: None,
        if_none_match: None,
        if_modified_since: None,
        if_unmodified_since: None,
        range: None,
        if_range: None,
    };
    const PUT: Preconditions = Preconditions {
        head_or_get: false,
        ..GET
    };

    fn check(pre: Preconditions, expected: Outcome) {
        assert_eq!(evaluate(&pre, &STAMP, ETAG, 16), expected, "{pre:?}");
    }

    fn partial(start: u64, end: u64) -> Outcome {
        Outcome::Partial(ByteRange { start, end })
    }

    #[test]
    fn validators() {
        assert_eq!(etag(&STAMP, None), ETAG);
        assert_eq!(last_modified(&STAMP).as_bytes(), LAST_MODIFIED);
        let empty = FileStamp {
            len: 0,
            mtime_secs: 0,
            mtime_nanos: 0,
        };
        assert_eq!(etag(&empty, None), "\"0-0\"");
        assert_eq!(etag(&empty, Some(Coding::Gzip)), "\"0-0-gzip\"");
        assert_eq!(last_modified(&empty), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn last_modified_clamps_mtimes_no_http_date_can_name() {
        let at = |mtime_secs| {
            last_modified(&FileStamp {
                mtime_secs,
                ..STAMP
            })
        };
        assert_eq!(at(-1), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(i64::MIN), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(LAST_HTTP_DATE_SECS), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(at(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn no_conditions_serve_the_file() {
        check(GET, Outcome::Full);
        check(PUT, Outcome::Full);
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        let if_match = |value: &'static [u8], expected| {
            check(
                Preconditions {
                    if_match: Some(value),
                    ..GET
                },
                expected,
            );
        };
        if_match(b"\"5f0c714a-1a4\"", Outcome::Full);
        if_match(b"*", Outcome::Full);
        if_match(b" * ", Outcome::Full);
        if_match(b"\"x\", \"5f0c714a-1a4\"", Outcome::Full);
        if_match(b"\"x\",\t\"5f0c714a-1a4\" ,", Outcome::Full);
        if_match(b",, \"5f0c714a-1a4\"", Outcome::Full);
        if_match(b"W/\"5f0c714a-1a4\"", Outcome::PreconditionFailed);
        if_match(b"\"5f0c714a-1a5\"", Outcome::PreconditionFailed);
        if_match(b"5f0c714a-1a4", Outcome::PreconditionFailed);
        if_match(b"\"5f0c714a-1a4", Outcome::PreconditionFailed);
        if_match(b"", Outcome::PreconditionFailed);
        if_match(b"*, \"x\"", Outcome::PreconditionFailed);
        if_match(b"\"x\" \"5f0c714a-1a4\"", Outcome::PreconditionFailed);
        check(
            Preconditions {
                if_match: Some(b"\"nope\""),
                ..PUT
            },
            Outcome::PreconditionFailed,
        );
    }

    #[test]
    fn if_unmodified_since() {
        let ius = |value: &'static [u8], expected| {
            check(
                Preconditions {
                    if_unmodified_since: Some(value),
                    ..PUT
                },
                expected,
            );
        };
        ius(LAST_MODIFIED, Outcome::Full);
        ius(LATER, Outcome::Full);
        ius(EARLIER, Outcome::PreconditionFailed);
        ius(
            b"Monday, 13-Jul-20 14:35:53 GMT",
            Outcome::PreconditionFailed,
        );
        ius(b"Mon Jul 13 14:35:53 2020", Outcome::PreconditionFailed);
        ius(b"yesterday", Outcome::Full);
        ius(b"", Outcome::Full);
        ius(
            b"Mon, 13 Jul 2020 14:35:53 GMT, Mon, 13 Jul 2020 14:35:53 GMT",
            Outcome::Full,
        );
        ius(b"\xff", Outcome::Full);
    }

    #[test]
    fn if_match_takes_precedence_over_if_unmodified_since() {
        let pre = Preconditions {
            if_match: Some(ETAG.as_bytes()),
            if_unmodified_since: Some(EARLIER),
            ..GET
        };
        check(pre, Outcome::Full);
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let inm = |pre: Preconditions, value: &'static [u8], expected| {
            check(
                Preconditions {
                    if_none_match: Some(value),
                    ..pre
                },
                expected,
            );
        };
        inm(GET, ETAG.as_bytes(), Outcome::NotModified);
        inm(GET, b"W/\"5f0c714a-1a4\"", Outcome::NotModified);
        inm(GET, b"\"a\", W/\"5f0c714a-1a4\"", Outcome::NotModified);
        inm(GET, b"*", Outcome::NotModified);
        inm(GET, b"\"a\", \"b\"", Outcome::Full);
        inm(GET, b"w/\"5f0c714a-1a4\"", Outcome::Full);
        inm(GET, b"\"5F0C714A-1A4\"", Outcome::Full);
        inm(GET, b"", Outcome::Full);
        inm(GET, b"garbage", Outcome::Full);
        inm(PUT, ETAG.as_bytes(), Outcome::PreconditionFailed);
        inm(PUT, b"*", Outcome::PreconditionFailed);
        inm(PUT, b"\"a\"", Outcome::Full);
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let pre = Preconditions {
            if_none_match: Some(b"\"other\""),
            if_modified_since: Some(LATER),
            ..GET
        };
        check(pre, Outcome::Full);
    }

    #[test]
    fn if_modified_since() {
        let ims = |pre: Preconditions, value: &'static [u8], expected| {
            check(
                Preconditions {
                    if_modified_since: Some(value),
                    ..pre
                },
                expected,
            );
        };
        ims(GET, LAST_MODIFIED, Outcome::NotModified);
        ims(GET, LATER, Outcome::NotModified);
        ims(
            GET,
            b"  Mon, 13 Jul 2020 14:35:54 GMT\t",
            Outcome::NotModified,
        );
        ims(GET, EARLIER, Outcome::Full);
        ims(GET, b"Mon, 13 Jul 2020 14:35:99 GMT", Outcome::Full);
        ims(GET, b"0", Outcome::Full);
        ims(PUT, LATER, Outcome::Full);
    }

    #[test]
    fn if_match_failure_precedes_not_modified() {
        let pre = Preconditions {
            if_match: Some(b"\"other\""),
            if_none_match: Some(ETAG.as_bytes()),
            ..GET
        };
        check(pre, Outcome::PreconditionFailed);
        let pre = Preconditions {
            if_unmodified_since: Some(EARLIER),
            if_modified_since: Some(LATER),
            ..GET
        };
        check(pre, Outcome::PreconditionFailed);
    }

    #[test]
    fn not_modified_precedes_range() {
        let pre = Preconditions {
            if_none_match: Some(ETAG.as_bytes()),
            range: Some(b"bytes=0-9"),
            ..GET
        };
        check(pre, Outcome::NotModified);
    }

    #[test]
    fn range_only_for_get_and_head() {
        check(
            Preconditions {
                range: Some(b"bytes=0-9"),
                ..GET
            },
            partial(0, 9),
        );
        check(
            Preconditions {
                range: Some(b"bytes=0-9"),
                ..PUT
            },
            Outcome::Full,
        );
    }

    #[test]
    fn if_range_with_an_entity_tag() {
        let if_range = |value: &'static [u8], expected| {
            let pre = Preconditions {
                range: Some(b"bytes=10-19"),
                if_range: Some(value),
                ..GET
            };
            check(pre, expected);
        };
        if_range(ETAG.as_bytes(), partial(10, 19));
        if_range(b" \"5f0c714a-1a4\" ", partial(10, 19));
        if_range(b"W/\"5f0c714a-1a4\"", Outcome::Full);
        if_range(b"\"5f0c714a-1a5\"", Outcome::Full);
        if_range(b"\"5f0c714a-1a4\", \"x\"", Outcome::Full);
        if_range(b"*", Outcome::Full);
        if_range(b"", Outcome::Full);
    }

    #[test]
    fn if_range_with_a_date() {
        let if_range = |value: &'static [u8], expected| {
            let pre = Preconditions {
                range: Some(b"bytes=-5"),
                if_range: Some(value),
                ..GET
            };
            check(pre, expected);
        };
        if_range(LAST_MODIFIED, partial(415, 419));
        if_range(b"Monday, 13-Jul-20 14:35:54 GMT", partial(415, 419));
        if_range(EARLIER, Outcome::Full);
        if_range(LATER, Outcome::Full);
        if_range(b"Mon, 13 Jul 2020", Outcome::Full);
    }

    #[test]
    fn if_range_without_range_is_ignored() {
        check(
            Preconditions {
                if_range: Some(b"\"x\""),
                ..GET
            },
            Outcome::Full,
        );
    }

    #[test]
    fn if_range_true_still_needs_a_valid_range() {
        let pre = Preconditions {
            range: Some(b"bytes=500-"),
            if_range: Some(ETAG.as_bytes()),
            ..GET
        };
        check(pre, Outcome::Unsatisfiable);
    }

    #[test]
    fn entity_tag_parsing() {
        let tag = |weak, opaque: &'static [u8]| EntityTag { weak, opaque };
        assert_eq!(single_tag(b"\"\""), Some(tag(false, b"")));
        assert_eq!(single_tag(b"W/\"a,b\""), Some(tag(true, b"a,b")));
        assert_eq!(
            single_tag(b"\"caf\xc3\xa9\""),
            Some(tag(false, b"caf\xc3\xa9"))
        );
        assert_eq!(single_tag(b"\"a b\""), None);
        assert_eq!(single_tag(b"\"a\"b"), None);
        assert_eq!(single_tag(b"W/"), None);
        assert_eq!(single_tag(b"W/a"), None);
        assert_eq!(single_tag(b"\""), None);
        assert_eq!(single_tag(b""), None);
        let mut seen = Vec::new();
        assert!(!any_tag(b" \"a\" ,W/\"b\",, \"c,d\" , ", |t| {
            seen.push(t);
            false
        }));
        assert_eq!(
            seen,
            [tag(false, b"a"), tag(true, b"b"), tag(false, b"c,d")]
        );
    }
}
