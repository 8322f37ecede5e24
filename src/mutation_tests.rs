//! Mutation tests: a deterministic stand-in for fuzzing (cargo-fuzz needs a nightly toolchain).
//!
//! Valid requests, bodies and paths are mutated at random (bytes flipped, inserted, deleted,
//! spliced, truncated) and fed to everything that parses client bytes: the request parser, the
//! body skipper, and the path resolver. Whatever comes in, they must not panic, must consume
//! no more than they were given, and a resolved path must never leave the document root.

use crate::files::{resolve_target, TargetOptions};
use crate::http::*;
// Seeded (`Rng::with_seed`): every run tries the same cases, so a failing one comes back.
use fastrand::Rng;

const SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HEAD /x/y.txt?q=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET http://h:1/p HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1,5-\r\nIf-None-Match: W/\"a\", \"b\"\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close, upgrade\r\nUpgrade: websocket\r\n\r\n",
];

const NOISE: &[u8] = b"\r\n :;,\t\0\x7f\xff%/.-0123456789aAzZ\"";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..=rng.usize(..4) {
        let at = rng.usize(..bytes.len() + 1);
        match rng.usize(..6) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.usize(..8),
            1 => bytes.insert(at, NOISE[rng.usize(..NOISE.len())]),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 => {
                let other = SEEDS[rng.usize(..SEEDS.len())];
                let from = rng.usize(..other.len());
                let chunk = &other[from..(from + rng.usize(..16)).min(other.len())];
                bytes.splice(at..at, chunk.iter().copied());
            }
            4 => bytes.truncate(at),
            _ => {
                let repeat = vec![NOISE[rng.usize(..NOISE.len())]; rng.usize(..300)];
                bytes.splice(at..at, repeat);
            }
        }
    }
    bytes
}

/// Whether `inner` lies within the bytes at `outer` (start address, length).
fn within(outer: (usize, usize), inner: &[u8]) -> bool {
    let ((o, len), i) = (outer, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + len)
}

#[test]
fn mutated_requests_never_panic_or_overrun() {
    let mut rng = Rng::with_seed(0x9E37_79B9_7F4A_7C15);
    let limits = Limits {
        max_request_line: 256,
        max_head: 512,
        max_headers: 16,
        max_body: 64,
    };
    for _ in 0..200_000 {
        let seed = SEEDS[rng.usize(..SEEDS.len())];
        let mut input = mutate(&mut rng, seed);
        let span = (input.as_ptr() as usize, input.len());
        let Ok(Parse::Complete(req)) = parse_request(&mut input, &limits) else {
            continue;
        };
        assert!(req.head_len <= span.1);
        for field in [req.target, req.path, req.query] {
            // An absolute-form target with an empty path gets the static "/".
            assert!(
                within(span, field) || field == b"/",
                "{field:?} not in the input"
            );
        }
        let _ = req.headers().count();
        let _ = req.has_token("connection", "close");
        let (head_len, framing) = (req.head_len, req.body);
        if let Some(mut skipper) = BodySkipper::new(framing, limits.max_body) {
            let mut rest = &input[head_len..];
            // Feed the body in random pieces; consumed never exceeds what was offered.
            while !rest.is_empty() {
                let piece = &rest[..1 + rng.usize(..rest.len())];
                match skipper.skip(piece) {
                    Ok(Skip::NeedMore { consumed }) | Ok(Skip::Done { consumed }) => {
                        assert!(consumed <= piece.len());
                        if consumed == 0 {
                            break;
                        }
                        rest = &rest[consumed..];
                    }
                    Err(e) => {
                        let _ = e.to_string();
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::with_seed(42);
    let limits = Limits::default();
    for _ in 0..100_000 {
        let len = rng.usize(..200);
        let mut input: Vec<u8> = (0..len).map(|_| NOISE[rng.usize(..NOISE.len())]).collect();
        if let Ok(Parse::Complete(req)) = parse_request(&mut input, &limits) {
            assert!(req.head_len <= len);
        }
    }
}

const PATHS: &[&[u8]] = &[
    b"/",
    b"/a/b/../c.txt",
    b"/%2e%2e/%2E%2e%2fetc/passwd",
    b"/./x//y/.hidden/%00/%zz/",
    b"/.well-known/acme-challenge/t",
];

#[test]
fn mutated_paths_never_leave_the_root() {
    let mut rng = Rng::with_seed(7);
    for allow_dotfiles in [false, true] {
        let opts = TargetOptions { allow_dotfiles };
        for _ in 0..100_000 {
            let seed = PATHS[rng.usize(..PATHS.len())];
            let input = mutate(&mut rng, seed);
            let Ok(path) = resolve_target(&input, &opts) else {
                continue;
            };
            let bytes = path.as_bytes();
            assert!(
                !bytes.starts_with(b"/") && !bytes.contains(&0),
                "{input:?} -> {bytes:?}"
            );
            let segments: Vec<&[u8]> = if bytes.is_empty() {
                Vec::new()
            } else {
                bytes.split(|&b| b == b'/').collect()
            };
            for (i, segment) in segments.iter().enumerate() {
                assert!(
                    !matches!(*segment, b"" | b"." | b".."),
                    "{input:?} -> {bytes:?}"
                );
                let hidden = segment.starts_with(b".") && !(i == 0 && *segment == b".well-known");
                assert!(allow_dotfiles || !hidden, "{input:?} -> {bytes:?}");
            }
            let location = path.redirect_location(b"");
            assert!(
                location.starts_with(b"/") && !location.starts_with(b"//"),
                "{location:?}"
            );
        }
    }
}

/// Bytes that form, break and split multi-byte UTF-8 sequences.
const UTF8_NOISE: &[&[u8]] = &[
    b"a",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"\xf0\x9f\x98\x80",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xf4\x90\x80\x80",
    b"\xff",
    b"\x80",
    b"\xe2\x82",
    b"\xf0\x9f",
];

#[test]
fn utf8_validator_agrees_with_std_whatever_the_split() {
    let mut rng = Rng::with_seed(99);
    for _ in 0..20_000 {
        let mut text = Vec::new();
        for _ in 0..rng.usize(..40) {
            text.extend_from_slice(UTF8_NOISE[rng.usize(..UTF8_NOISE.len())]);
        }
        let expected = std::str::from_utf8(&text).is_ok();
        let mut validator = crate::ws::Utf8Validator::new();
        let mut rest = &text[..];
        let mut ok = true;
        while !rest.is_empty() && ok {
            let piece = 1 + rng.usize(..rest.len());
            ok = validator.feed(&rest[..piece]).is_ok();
            rest = &rest[piece..];
        }
        let ok = ok && validator.finish().is_ok();
        assert_eq!(ok, expected, "{text:?}");
    }
}
