//! A byte stream from a client, handled as the worker handles it: every complete request head
//! (pipelining), its body skipped, then everything the static-file and WebSocket layers decide
//! from the head. Must never panic, loop or consume more than it was given, and the decisions
//! must keep their promises: a resolved path stays under the root, a range stays in the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::files::{self, FileStamp, Outcome, Preconditions, TargetOptions};
use percore::http::{parse_request, BodySkipper, Limits, Parse, Request, Skip};
use percore::ws::{self, WsConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, mut buf)) = data.split_first() else {
        return;
    };
    // Small limits reach the 414/431/413 paths with short inputs.
    let limits = Limits {
        max_request_line: 32 + usize::from(knobs & 0x0f) * 32,
        max_head: 64 + usize::from(knobs & 0x0f) * 64,
        max_headers: 1 + usize::from(knobs >> 4),
        max_body: 256,
    };
    loop {
        let req = match parse_request(buf, &limits) {
            Ok(Parse::Complete(req)) => req,
            Ok(Parse::Partial) | Err(_) => return,
        };
        assert!(
            req.head_len > 0 && req.head_len <= buf.len(),
            "head_len {}",
            req.head_len
        );
        check_decisions(&req, knobs);
        let mut rest = &buf[req.head_len..];
        if let Some(mut body) = BodySkipper::new(req.body, limits.max_body) {
            match body.skip(rest) {
                Ok(Skip::Done { consumed }) => {
                    assert!(consumed <= rest.len());
                    rest = &rest[consumed..];
                }
                Ok(Skip::NeedMore { consumed }) => {
                    assert_eq!(
                        consumed,
                        rest.len(),
                        "a body that needs more takes everything"
                    );
                    return;
                }
                Err(_) => return,
            }
        }
        buf = rest;
    }
});

fn check_decisions(req: &Request<'_>, knobs: u8) {
    let _ = req.headers().count();
    let _ = req.has_token("connection", "upgrade");
    if ws::is_upgrade_request(req) {
        let any_origin = WsConfig::default();
        let _ = ws::evaluate(req, &any_origin);
        let listed = WsConfig {
            origins: Some(vec![b"https://example.com".to_vec()]),
            ..WsConfig::default()
        };
        let _ = ws::evaluate(req, &listed);
        let offers = req
            .headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"sec-websocket-extensions"))
            .map(|(_, value)| value);
        let _ = ws::negotiate(offers);
    }

    let opts = TargetOptions {
        allow_dotfiles: knobs & 1 != 0,
    };
    if let Ok(path) = files::resolve_target(req.path, &opts) {
        check_under_root(path.as_bytes());
        let _ = path.redirect_location(req.query);
        check_under_root(path.join(b"index.html").as_bytes());
    }

    let stamp = FileStamp {
        len: [0, 1, 100, 1 << 40][usize::from(knobs >> 6)],
        mtime_secs: 1_700_000_000,
        mtime_nanos: 0,
    };
    let etag = files::etag(&stamp);
    let pre = Preconditions {
        head_or_get: true,
        if_match: req.if_match,
        if_none_match: req.if_none_match,
        if_modified_since: req.if_modified_since,
        if_unmodified_since: req.if_unmodified_since,
        range: req.range,
        if_range: req.if_range,
    };
    let max_ranges = usize::from(knobs >> 1 & 0x1f);
    match files::evaluate(&pre, &stamp, &etag, max_ranges) {
        Outcome::Partial(range) => check_range(range, stamp.len),
        Outcome::Multipart(ranges) => {
            assert!(
                !ranges.is_empty() && ranges.len() <= max_ranges,
                "{ranges:?}"
            );
            for range in ranges {
                check_range(range, stamp.len);
            }
        }
        _ => {}
    }
}

/// SafePath's promise: relative, no NUL, no empty, "." or ".." segment.
fn check_under_root(path: &[u8]) {
    assert!(!path.contains(&0), "NUL in {path:?}");
    if path.is_empty() {
        return;
    }
    for segment in path.split(|&b| b == b'/') {
        assert!(
            !segment.is_empty() && segment != b"." && segment != b"..",
            "unsafe segment in {:?}",
            String::from_utf8_lossy(path)
        );
    }
}

fn check_range(range: files::ByteRange, len: u64) {
    assert!(
        range.start <= range.end && range.end < len,
        "{range:?} of {len}"
    );
}
