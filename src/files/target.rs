//! Request path → [`SafePath`] under the document root: percent-decoding, dot-segment removal,
//! and the refusals (NUL, encoded slash, `..` above the root, dotfiles).
//!
//! It never touches the file system: symlinks that leave the root are the worker's to refuse
//! (openat2 with `RESOLVE_BENEATH`). A [`SafePath`] only ever holds plain segments.

use std::fmt;

/// What [`resolve_target`] lets through besides plain names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetOptions {
    /// Serve names starting with '.' (".git", ".env"); refused with 404 when false.
    pub allow_dotfiles: bool,
}

/// A request path, percent-decoded and normalised, relative to the document root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafePath {
    /// INVARIANT: no NUL byte, no empty, "." or ".." segment, no leading '/', segments joined
    /// by single '/'; "" is the root itself.
    bytes: Vec<u8>,
    /// The request path named a directory syntactically (it ended in '/', "." or "..").
    trailing_slash: bool,
}

/// Why a request path names no file we may serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// Malformed: bad percent-escape, NUL, `..` above the root, not starting with '/'
    /// (answered 400).
    Malformed,
    /// Well-formed but refused: an encoded slash or a dotfile (answered 404, so that it
    /// cannot be told from a missing file).
    Refused,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Malformed => f.write_str("malformed request path"),
            TargetError::Refused => f.write_str("request path names a refused file"),
        }
    }
}

impl SafePath {
    /// The path relative to the document root, e.g. `b"css/site.css"`, `b""` for the root.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the request path ended in '/' (or in a "." or ".." segment).
    pub fn has_trailing_slash(&self) -> bool {
        self.trailing_slash
    }

    /// Appends one plain segment, e.g. "index.html". A `name` that is not a plain segment
    /// (see [`is_plain_segment`]) would break the invariant, so the path is returned unchanged.
    pub fn join(&self, name: &[u8]) -> SafePath {
        let mut bytes = self.bytes.clone();
        if is_plain_segment(name) {
            if !bytes.is_empty() {
                bytes.push(b'/');
            }
            bytes.extend_from_slice(name);
        }
        SafePath {
            bytes,
            trailing_slash: false,
        }
    }

    /// "/" + percent-encoded path + "/" (+ "?" + query when the query is non-empty): the
    /// Location of the 301 that sends a directory to its slash URL. It always starts with
    /// exactly one '/' followed by a segment or nothing, so it can never read as "//host".
    pub fn redirect_location(&self, query: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + query.len() + 8);
        out.push(b'/');
        for &b in &self.bytes {
            push_encoded(&mut out, b, b == b'/' || is_pchar(b));
        }
        if !self.bytes.is_empty() {
            out.push(b'/');
        }
        if !query.is_empty() {
            out.push(b'?');
            for &b in query {
                // The query is already encoded by the client; only bytes that could end the
                // header line or the URL are escaped.
                push_encoded(&mut out, b, b.is_ascii_graphic() && b != b'#');
            }
        }
        out
    }
}

/// Whether `name` can be one segment of a [`SafePath`]: non-empty, not "." or "..", no '/' or NUL.
pub fn is_plain_segment(name: &[u8]) -> bool {
    !matches!(name, b"" | b"." | b"..") && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// Resolves the path part of a request target (no query) to a path under the document root.
///
/// Malformed input is a 400, like nginx for ".." above the root; an encoded slash is a 404,
/// like Apache's `AllowEncodedSlashes Off`; a segment starting with '.' is a 404 unless
/// `opts.allow_dotfiles` (the root's `.well-known` excepted). When both apply, 400 wins.
pub fn resolve_target(path: &[u8], opts: &TargetOptions) -> Result<SafePath, TargetError> {
    let rest = path.strip_prefix(b"/").ok_or(TargetError::Malformed)?;
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut refused = false;
    let mut trailing_slash = true;
    for raw in rest.split(|&b| b == b'/') {
        let segment = percent_decode(raw)?;
        trailing_slash = matches!(segment.as_slice(), b"" | b"." | b"..");
        match segment.as_slice() {
            b"" | b"." => {}
            b".." => {
                segments.pop().ok_or(TargetError::Malformed)?;
            }
            name => {
                // RFC 8615's /.well-known/ (ACME challenges, security.txt) is not a dotfile.
                let well_known = segments.is_empty() && name == b".well-known";
                let hidden = name.starts_with(b".") && !opts.allow_dotfiles && !well_known;
                refused |= hidden || name.contains(&b'/');
                segments.push(segment);
            }
        }
    }
    if refused {
        return Err(TargetError::Refused);
    }
    Ok(SafePath {
        bytes: segments.join(b"/".as_slice()),
        trailing_slash,
    })
}

/// Decodes one segment's %xx escapes; a malformed escape or a NUL byte is a 400.
fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        let byte = if b == b'%' {
            let high = bytes.next().and_then(|&h| hex_value(h));
            let low = bytes.next().and_then(|&l| hex_value(l));
            match (high, low) {
                (Some(high), Some(low)) => high << 4 | low,
                _ => return Err(TargetError::Malformed),
            }
        } else {
            b
        };
        if byte == 0 {
            return Err(TargetError::Malformed);
        }
        out.push(byte);
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// RFC 3986 pchar minus pct-encoded: unreserved / sub-delims / ":" / "@".
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

fn push_encoded(out: &mut Vec<u8>, b: u8, verbatim: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if verbatim {
        out.push(b);
    } else {
        out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetOptions = TargetOptions {
        allow_dotfiles: false,
    };
    const DOTFILES: TargetOptions = TargetOptions {
        allow_dotfiles: true,
    };

    /// Resolves `path` and compares the resulting bytes and trailing-slash flag.
    fn check_with(opts: &TargetOptions, path: &[u8], expected: Result<(&[u8], bool), TargetError>) {
        let got = resolve_target(path, opts);
        let got = got
            .as_ref()
            .map(|p| (p.as_bytes(), p.has_trailing_slash()))
            .map_err(|e| *e);
        assert_eq!(got, expected, "path {:?}", String::from_utf8_lossy(path));
    }

    fn check(path: &[u8], expected: Result<(&[u8], bool), TargetError>) {
        check_with(&STRICT, path, expected);
    }

    use TargetError::{Malformed as BadRequest, Refused as NotFound};

    #[test]
    fn plain_paths() {
        check(b"/", Ok((b"", true)));
        check(b"/index.html", Ok((b"index.html", false)));
        check(b"/css/site.css", Ok((b"css/site.css", false)));
        check(b"/docs/", Ok((b"docs", true)));
        check(b"/a%20b.txt", Ok((b"a b.txt", false)));
        check(b"/%41%62c", Ok((b"Abc", false)));
        check(b"/caf%C3%A9", Ok(("café".as_bytes(), false)));
    }

    #[test]
    fn not_starting_with_slash() {
        check(b"", Err(BadRequest));
        check(b"*", Err(BadRequest));
        check(b"index.html", Err(BadRequest));
        check(b"http://host/x", Err(BadRequest));
        check(b"%2Fetc", Err(BadRequest));
    }

    #[test]
    fn dot_segments_and_merged_slashes() {
        check(b"/./a//b", Ok((b"a/b", false)));
        check(b"//a///b//", Ok((b"a/b", true)));
        check(b"/a/./b/.", Ok((b"a/b", true)));
        check(b"/a/b/..", Ok((b"a", true)));
        check(b"/a/b/../c", Ok((b"a/c", false)));
        check(b"/a/..", Ok((b"", true)));
        check(b"/a/%2e%2E/b", Ok((b"b", false)));
        check(b"/a/%2e/b", Ok((b"a/b", false)));
        check(b"/..a", Err(NotFound));
        check_with(&DOTFILES, b"/..a", Ok((b"..a", false)));
        check_with(&DOTFILES, b"/.../x", Ok((b".../x", false)));
    }

    #[test]
    fn traversal_above_the_root() {
        check(b"/..", Err(BadRequest));
        check(b"/../etc/passwd", Err(BadRequest));
        check(b"/a/../../x", Err(BadRequest));
        check(b"/%2e%2e", Err(BadRequest));
        check(b"/%2E%2e/", Err(BadRequest));
        check(b"/%2e%2e/etc/passwd", Err(BadRequest));
        check(b"/.%2e/x", Err(BadRequest));
        check(b"/a/./../../x", Err(BadRequest));
        check(b"//../x", Err(BadRequest));
        check_with(&DOTFILES, b"/../etc/passwd", Err(BadRequest));
    }

    #[test]
    fn encoded_slash_is_not_found() {
        check(b"/a%2fb", Err(NotFound));
        check(b"/a%2Fb", Err(NotFound));
        check(b"/%2f", Err(NotFound));
        check(b"/..%2fetc/passwd", Err(NotFound));
        check(b"/a/..%2F..%2Fetc", Err(NotFound));
        check_with(&DOTFILES, b"/%2e%2e%2fetc/passwd", Err(NotFound));
        check_with(&DOTFILES, b"/a%2f", Err(NotFound));
    }

    #[test]
    fn nul_and_malformed_escapes_are_bad_requests() {
        check(b"/%00", Err(BadRequest));
        check(b"/a%00.html", Err(BadRequest));
        check(b"/a\0b", Err(BadRequest));
        check(b"/%", Err(BadRequest));
        check(b"/%4", Err(BadRequest));
        check(b"/%4/x", Err(BadRequest));
        check(b"/%zz", Err(BadRequest));
        check(b"/%g0", Err(BadRequest));
        check(b"/%+1", Err(BadRequest));
        check(b"/a%", Err(BadRequest));
        // 400 wins over 404 whatever the order of the segments.
        check(b"/.git/%zz", Err(BadRequest));
        check(b"/a%2fb/../../..", Err(BadRequest));
    }

    #[test]
    fn overlong_utf8_and_backslashes_are_plain_bytes() {
        check(b"/%c0%ae%c0%ae/etc", Ok((b"\xc0\xae\xc0\xae/etc", false)));
        check(b"/%c0%af", Ok((b"\xc0\xaf", false)));
        check(
            b"/%e0%80%ae%e0%80%ae",
            Ok((b"\xe0\x80\xae\xe0\x80\xae", false)),
        );
        check(b"/..\\..\\etc", Err(NotFound));
        check_with(&DOTFILES, b"/..\\..\\etc", Ok((b"..\\..\\etc", false)));
        check(b"/a\\..", Ok((b"a\\..", false)));
        check(b"/%5c..%5cetc", Ok((b"\\..\\etc", false)));
    }

    #[test]
    fn dotfiles() {
        check(b"/.env", Err(NotFound));
        check(b"/.git/config", Err(NotFound));
        check(b"/a/.htaccess", Err(NotFound));
        check(b"/%2egit/config", Err(NotFound));
        check(b"/.well-known/x", Ok((b".well-known/x", false)));
        check(b"/.well-known/.x", Err(NotFound));
        check(b"/a/.well-known/x", Err(NotFound));
        check(b"/.git/../index.html", Err(NotFound));
        check(b"/a.b/c.d", Ok((b"a.b/c.d", false)));
        check_with(&DOTFILES, b"/.env", Ok((b".env", false)));
        check_with(&DOTFILES, b"/.git/", Ok((b".git", true)));
        check_with(&DOTFILES, b"/.git/../x", Ok((b"x", false)));
    }

    fn safe(path: &[u8]) -> SafePath {
        resolve_target(path, &DOTFILES).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn join_appends_one_plain_segment() {
        let check_join = |path: &[u8], name: &[u8], expected: &[u8]| {
            let joined = safe(path).join(name);
            assert_eq!(joined.as_bytes(), expected);
            assert!(!joined.has_trailing_slash());
        };
        check_join(b"/", b"index.html", b"index.html");
        check_join(b"/docs/", b"index.html", b"docs/index.html");
        check_join(b"/a/b/", b"index.html", b"a/b/index.html");
        check_join(b"/docs/", b"", b"docs");
        check_join(b"/docs/", b"..", b"docs");
        check_join(b"/docs/", b".", b"docs");
        check_join(b"/docs/", b"a/b", b"docs");
        check_join(b"/docs/", b"a\0", b"docs");
        check_join(b"/", b"", b"");
    }

    #[test]
    fn redirect_location_is_a_single_slash_url() {
        let check_location = |path: &[u8], query: &[u8], expected: &[u8]| {
            let got = safe(path).redirect_location(query);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(expected)
            );
        };
        check_location(b"/", b"", b"/");
        check_location(b"/", b"a=1", b"/?a=1");
        check_location(b"//", b"", b"/");
        check_location(b"/docs", b"", b"/docs/");
        check_location(b"/docs", b"page=2&x=%20", b"/docs/?page=2&x=%20");
        check_location(b"/a/b", b"", b"/a/b/");
        check_location(b"//evil.com", b"", b"/evil.com/");
        check_location(b"///evil.com//x", b"", b"/evil.com/x/");
        check_location(b"/a/%2e%2e//evil.com", b"", b"/evil.com/");
        check_location(b"/%5cevil.com", b"", b"/%5Cevil.com/");
        check_location(b"/\\\\evil.com", b"", b"/%5C%5Cevil.com/");
        check_location(b"/a%20b", b"", b"/a%20b/");
        check_location(b"/caf%c3%a9", b"", b"/caf%C3%A9/");
        check_location(b"/a%3fb%23c%25", b"", b"/a%3Fb%23c%25/");
        check_location(b"/a:b@c", b"", b"/a:b@c/");
        check_location(b"/%0d%0aSet-Cookie:x", b"", b"/%0D%0ASet-Cookie:x/");
        check_location(b"/d", b"a\r\nb #c", b"/d/?a%0D%0Ab%20%23c");
    }

    #[test]
    fn errors_say_why() {
        assert_eq!(BadRequest.to_string(), "malformed request path");
        assert_eq!(NotFound.to_string(), "request path names a refused file");
    }
}
