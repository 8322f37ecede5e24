//! The `Content-Type` of a file, chosen from its extension alone (never by sniffing its bytes).

use std::borrow::Cow;

/// Types for the extensions a static site serves; text types carry "; charset=utf-8".
const TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    // RFC 9239: "text/javascript" is the one JavaScript type to use.
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json; charset=utf-8"),
    ("map", "application/json; charset=utf-8"),
    ("webmanifest", "application/manifest+json; charset=utf-8"),
    ("xml", "application/xml; charset=utf-8"),
    ("rss", "application/rss+xml; charset=utf-8"),
    ("atom", "application/atom+xml; charset=utf-8"),
    ("xhtml", "application/xhtml+xml; charset=utf-8"),
    ("svg", "image/svg+xml; charset=utf-8"),
    ("txt", "text/plain; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("ics", "text/calendar; charset=utf-8"),
    ("png", "image/png"),
    ("apng", "image/apng"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("ico", "image/x-icon"),
    ("bmp", "image/bmp"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("eot", "application/vnd.ms-fontobject"),
    ("wasm", "application/wasm"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tgz", "application/gzip"),
    ("bz2", "application/x-bzip2"),
    ("xz", "application/x-xz"),
    ("zst", "application/zstd"),
    ("7z", "application/x-7z-compressed"),
    ("tar", "application/x-tar"),
    ("mp3", "audio/mpeg"),
    ("m4a", "audio/mp4"),
    ("ogg", "audio/ogg"),
    ("oga", "audio/ogg"),
    ("opus", "audio/ogg"),
    ("flac", "audio/flac"),
    ("wav", "audio/wav"),
    ("mp4", "video/mp4"),
    ("m4v", "video/mp4"),
    ("webm", "video/webm"),
    ("ogv", "video/ogg"),
    ("mpeg", "video/mpeg"),
    ("mpg", "video/mpeg"),
    ("mov", "video/quicktime"),
];

/// What an unknown or missing extension gets (nginx's `default_type`).
const DEFAULT_TYPE: &str = "application/octet-stream";

/// The `Content-Type` for `path`, from the extension of its last segment, case-insensitively.
pub fn content_type(path: &[u8]) -> &'static str {
    let Some(extension) = extension(path) else {
        return DEFAULT_TYPE;
    };
    TYPES
        .iter()
        .find(|(known, _)| known.as_bytes().eq_ignore_ascii_case(extension))
        .map_or(DEFAULT_TYPE, |&(_, mime)| mime)
}

/// The `Content-Type` for `path` with the configured `overrides` (extension, type) first.
pub fn content_type_with(overrides: &[(String, String)], path: &[u8]) -> Cow<'static, str> {
    let configured = extension(path).and_then(|extension| {
        overrides
            .iter()
            .find(|(known, _)| known.as_bytes().eq_ignore_ascii_case(extension))
    });
    match configured {
        Some((_, mime)) => Cow::Owned(mime.clone()),
        None => Cow::Borrowed(content_type(path)),
    }
}

/// The bytes after the last dot of the last segment, if it has one.
fn extension(path: &[u8]) -> Option<&[u8]> {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let dot = name.iter().rposition(|&b| b == b'.')?;
    name.get(dot + 1..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &[u8], expected: &str) {
        assert_eq!(
            content_type(path),
            expected,
            "{:?}",
            String::from_utf8_lossy(path)
        );
    }

    #[test]
    fn configured_types_come_first() {
        let overrides = [
            ("md".to_owned(), "text/plain; charset=utf-8".to_owned()),
            ("gltf".to_owned(), "model/gltf+json".to_owned()),
        ];
        assert_eq!(
            content_type_with(&overrides, b"/README.MD"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type_with(&overrides, b"/m.gltf"), "model/gltf+json");
        assert_eq!(
            content_type_with(&overrides, b"/a.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type_with(&overrides, b"/md"), DEFAULT_TYPE);
    }

    #[test]
    fn known_extensions() {
        check(b"index.html", "text/html; charset=utf-8");
        check(b"a/b.htm", "text/html; charset=utf-8");
        check(b"css/site.css", "text/css; charset=utf-8");
        check(b"app.js", "text/javascript; charset=utf-8");
        check(b"mod.mjs", "text/javascript; charset=utf-8");
        check(b"data.json", "application/json; charset=utf-8");
        check(b"app.js.map", "application/json; charset=utf-8");
        check(b"feed.xml", "application/xml; charset=utf-8");
        check(b"notes.txt", "text/plain; charset=utf-8");
        check(b"README.md", "text/markdown; charset=utf-8");
        check(b"t.csv", "text/csv; charset=utf-8");
        check(b"logo.svg", "image/svg+xml; charset=utf-8");
        check(
            b"site.webmanifest",
            "application/manifest+json; charset=utf-8",
        );
        check(b"a.png", "image/png");
        check(b"a.jpg", "image/jpeg");
        check(b"a.jpeg", "image/jpeg");
        check(b"a.gif", "image/gif");
        check(b"a.webp", "image/webp");
        check(b"a.avif", "image/avif");
        check(b"favicon.ico", "image/x-icon");
        check(b"a.bmp", "image/bmp");
        check(b"f.woff", "font/woff");
        check(b"f.woff2", "font/woff2");
        check(b"f.ttf", "font/ttf");
        check(b"f.otf", "font/otf");
        check(b"m.wasm", "application/wasm");
        check(b"d.pdf", "application/pdf");
        check(b"a.zip", "application/zip");
        check(b"a.tar.gz", "application/gzip");
        check(b"a.tar", "application/x-tar");
        check(b"s.mp3", "audio/mpeg");
        check(b"v.mp4", "video/mp4");
        check(b"v.webm", "video/webm");
        check(b"s.ogg", "audio/ogg");
        check(b"s.wav", "audio/wav");
        check(b"v.mpeg", "video/mpeg");
    }

    #[test]
    fn case_insensitive() {
        check(b"INDEX.HTML", "text/html; charset=utf-8");
        check(b"Photo.JpG", "image/jpeg");
        check(b"x.WOFF2", "font/woff2");
    }

    #[test]
    fn unknown_or_missing_extension_is_octet_stream() {
        check(b"", DEFAULT_TYPE);
        check(b"Makefile", DEFAULT_TYPE);
        check(b"file.", DEFAULT_TYPE);
        check(b"a.exe", DEFAULT_TYPE);
        check(b"a.html.bak", DEFAULT_TYPE);
        check(b"dir.html/file", DEFAULT_TYPE);
        check(b"a.htmlx", DEFAULT_TYPE);
        check(b"a.htm\0", DEFAULT_TYPE);
        check(b"a.\xff", DEFAULT_TYPE);
    }

    #[test]
    fn every_text_type_names_its_charset() {
        for (extension, mime) in TYPES {
            let textual = mime.starts_with("text/")
                || mime.contains("json")
                || mime.contains("xml")
                || *extension == "js";
            assert_eq!(mime.ends_with("; charset=utf-8"), textual, "{extension}");
        }
    }
}
