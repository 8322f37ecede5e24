//! Directory listings (`--autoindex`, nginx's `autoindex`): a directory without an index file
//! shown as an HTML page, or as JSON for `Accept: application/json`.
//!
//! Owns the order of the entries, the pages, and the escaping: a file name is bytes the
//! client must never be able to turn into markup, script or a broken link, whatever it holds
//! (`<script>`, quotes, newlines, `%`, invalid UTF-8). It never reads a directory: the worker
//! passes the entries it found beneath the root.

use std::cmp::Ordering;
use std::fmt::Write as _;

/// Entries shown on one page; `?page=N` shows the others.
pub const PAGE_SIZE: usize = 1000;

/// One name in the directory, already found to be a file or a directory beneath the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub is_dir: bool,
    pub len: u64,
    pub mtime_secs: i64,
}

/// The format a listing request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

impl Format {
    /// JSON when the `Accept` field prefers `application/json` to `text/html` (a browser's
    /// `text/html,…,*/*` gets HTML); HTML otherwise.
    pub fn from_accept(accept: Option<&[u8]>) -> Format {
        let Some(accept) = accept else {
            return Format::Html;
        };
        let position = |needle: &[u8]| {
            accept
                .windows(needle.len())
                .position(|w| w.eq_ignore_ascii_case(needle))
        };
        match (position(b"application/json"), position(b"text/html")) {
            (Some(json), Some(html)) if json < html => Format::Json,
            (Some(_), None) => Format::Json,
            _ => Format::Html,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// The page number `?page=N` asks for (1 when absent or not a number).
pub fn page_number(query: &[u8]) -> usize {
    query
        .split(|&b| b == b'&')
        .find_map(|pair| pair.strip_prefix(b"page="))
        .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// Directories first, then files, each by name (bytewise).
pub fn sort(entries: &mut [Entry]) {
    entries.sort_by(|a, b| match (a.is_dir, b.is_dir) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.name.cmp(&b.name),
    });
}

/// The listing of the directory at `url_path` (the decoded request path, ending in `/`):
/// page `page` of the sorted `entries`; `truncated` when the directory held more entries than
/// were read.
pub fn render(
    format: Format,
    url_path: &[u8],
    entries: &[Entry],
    page: usize,
    truncated: bool,
) -> Vec<u8> {
    let pages = entries.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages);
    let shown = entries
        .get((page - 1) * PAGE_SIZE..)
        .unwrap_or_default()
        .iter()
        .take(PAGE_SIZE);
    match format {
        Format::Html => html(url_path, shown, page, pages, truncated),
        Format::Json => json(url_path, shown, page, pages, truncated),
    }
}

fn html<'e>(
    url_path: &[u8],
    shown: impl Iterator<Item = &'e Entry>,
    page: usize,
    pages: usize,
    truncated: bool,
) -> Vec<u8> {
    let title = escape_html(&String::from_utf8_lossy(url_path));
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\n\
         <style>body{{font-family:sans-serif}}td{{padding:0 1em}}td.n{{text-align:right}}</style>\n\
         </head><body>\n<h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>\n"
    );
    if url_path != b"/" {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for entry in shown {
        let mut href = percent_encode(&entry.name);
        let mut label = escape_html(&String::from_utf8_lossy(&entry.name));
        let size = match entry.is_dir {
            true => {
                href.push('/');
                label.push('/');
                String::from("-")
            }
            false => entry.len.to_string(),
        };
        let _ = writeln!(
            out,
            "<tr><td><a href=\"./{href}\">{label}</a></td><td class=\"n\">{size}</td><td>{}</td></tr>",
            modified(entry.mtime_secs)
        );
    }
    out.push_str("</table>\n");
    if pages > 1 {
        out.push_str("<p>");
        if page > 1 {
            let _ = write!(out, "<a href=\"?page={}\">previous</a> ", page - 1);
        }
        let _ = write!(out, "page {page} of {pages}");
        if page < pages {
            let _ = write!(out, " <a href=\"?page={}\">next</a>", page + 1);
        }
        out.push_str("</p>\n");
    }
    if truncated {
        out.push_str("<p>This directory holds more entries than a listing shows.</p>\n");
    }
    out.push_str("</body></html>\n");
    out.into_bytes()
}

fn json<'e>(
    url_path: &[u8],
    shown: impl Iterator<Item = &'e Entry>,
    page: usize,
    pages: usize,
    truncated: bool,
) -> Vec<u8> {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "{{\"path\":{},\"page\":{page},\"pages\":{pages},\"truncated\":{truncated},\"entries\":[",
        json_string(&String::from_utf8_lossy(url_path))
    );
    for (i, entry) in shown.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut href = percent_encode(&entry.name);
        if entry.is_dir {
            href.push('/');
        }
        let _ = write!(
            out,
            "{{\"name\":{},\"href\":{},\"type\":\"{}\",\"size\":{},\"mtime\":{}}}",
            json_string(&String::from_utf8_lossy(&entry.name)),
            json_string(&href),
            if entry.is_dir { "directory" } else { "file" },
            if entry.is_dir { 0 } else { entry.len },
            json_string(&modified(entry.mtime_secs)),
        );
    }
    out.push_str("]}\n");
    out.into_bytes()
}

/// "2026-11-30 00:33" (UTC); the epoch for a time before it.
fn modified(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0);
    let (year, month, day) = crate::log::civil_from_days(secs / 86_400);
    let minutes = secs % 86_400 / 60;
    format!(
        "{year}-{month:02}-{day:02} {:02}:{:02}",
        minutes / 60,
        minutes % 60
    )
}

/// A name as a relative URL path segment: everything but unreserved bytes percent-encoded,
/// so `?`, `#`, `%`, `/`-free names, quotes, spaces and invalid UTF-8 all link to themselves.
fn percent_encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // '<' too, so that the JSON is safe even if some client puts it into a page.
            c if c.is_control() || c == '<' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8], is_dir: bool) -> Entry {
        Entry {
            name: name.to_vec(),
            is_dir,
            len: 1234,
            mtime_secs: 1_764_463_230,
        }
    }

    fn html_of(entries: &[Entry]) -> String {
        String::from_utf8(render(Format::Html, b"/files/", entries, 1, false)).expect("UTF-8")
    }

    #[test]
    fn directories_come_first_then_names_in_byte_order() {
        let mut entries = vec![
            entry(b"b.txt", false),
            entry(b"zdir", true),
            entry(b"A.txt", false),
            entry(b"adir", true),
        ];
        sort(&mut entries);
        let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, [&b"adir"[..], b"zdir", b"A.txt", b"b.txt"]);
    }

    #[test]
    fn the_html_page_links_each_entry_with_size_and_time() {
        let page = html_of(&[entry(b"docs", true), entry(b"a b.txt", false)]);
        assert!(page.contains("<title>Index of /files/</title>"), "{page}");
        assert!(page.contains("<a href=\"../\">../</a>"), "{page}");
        assert!(
            page.contains("<a href=\"./docs/\">docs/</a></td><td class=\"n\">-</td>"),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"./a%20b.txt\">a b.txt</a></td><td class=\"n\">1234</td><td>2025-11-30 00:40</td>"),
            "{page}"
        );
        let root = String::from_utf8_lossy(&render(Format::Html, b"/", &[], 1, false)).into_owned();
        assert!(!root.contains("../"), "{root}");
    }

    #[test]
    fn hostile_names_stay_text_and_link_to_themselves() {
        let hostile: [&[u8]; 7] = [
            b"<script>alert(1)</script>",
            b"\"onmouseover=\"x",
            b"it's",
            b"line\nbreak",
            b"100%25done",
            b"bad\xff\xfeutf8",
            b"q?x=1#frag",
        ];
        let entries: Vec<Entry> = hostile.iter().map(|n| entry(n, false)).collect();
        let page = html_of(&entries);
        for forbidden in ["<script>", "\"onmouseover", "it's", "line\nbreak"] {
            assert!(!page.contains(forbidden), "{forbidden:?} in {page}");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("href=\"./%3Cscript%3Ealert%281%29%3C%2Fscript%3E\""));
        assert!(page.contains("href=\"./100%2525done\""));
        assert!(page.contains("href=\"./bad%FF%FEutf8\">bad\u{fffd}\u{fffd}utf8<"));
        assert!(page.contains("href=\"./q%3Fx%3D1%23frag\""));
        assert!(page.contains("line&#10;break"));

        let json =
            String::from_utf8(render(Format::Json, b"/<x>/", &entries, 1, false)).expect("UTF-8");
        let body = json.strip_suffix('\n').expect("a final newline");
        assert!(!body.contains('<') && !body.contains('\n'), "{json}");
        assert!(
            json.contains("\"name\":\"\\u003cscript>alert(1)\\u003c/script>\""),
            "{json}"
        );
        assert!(json.contains("\"name\":\"line\\u000abreak\""), "{json}");
        assert!(json.contains("\"href\":\"bad%FF%FEutf8\""), "{json}");
        assert!(json.contains("\"path\":\"/\\u003cx>/\""), "{json}");
    }

    #[test]
    fn json_describes_every_entry() {
        let json = render(
            Format::Json,
            b"/d/",
            &[entry(b"sub", true), entry(b"f", false)],
            1,
            true,
        );
        assert_eq!(
            String::from_utf8_lossy(&json),
            "{\"path\":\"/d/\",\"page\":1,\"pages\":1,\"truncated\":true,\"entries\":[\
             {\"name\":\"sub\",\"href\":\"sub/\",\"type\":\"directory\",\"size\":0,\"mtime\":\"2025-11-30 00:40\"},\
             {\"name\":\"f\",\"href\":\"f\",\"type\":\"file\",\"size\":1234,\"mtime\":\"2025-11-30 00:40\"}]}\n"
        );
    }

    #[test]
    fn long_directories_are_paged() {
        let entries: Vec<Entry> = (0..2500)
            .map(|i| entry(format!("f{i:05}").as_bytes(), false))
            .collect();
        let page = |n| {
            String::from_utf8_lossy(&render(Format::Html, b"/", &entries, n, false)).into_owned()
        };
        let first = page(1);
        assert_eq!(first.matches("<tr><td><a").count(), PAGE_SIZE);
        assert!(first.contains("f00000") && !first.contains("f01000"));
        assert!(first.contains("page 1 of 3 <a href=\"?page=2\">next</a>"));
        let last = page(3);
        assert_eq!(last.matches("<tr><td><a").count(), 500);
        assert!(last.contains("<a href=\"?page=2\">previous</a> page 3 of 3"));
        assert_eq!(page(99), last, "past the end: the last page");
    }

    #[test]
    fn page_numbers_and_formats_from_the_request() {
        assert_eq!(page_number(b""), 1);
        assert_eq!(page_number(b"page=3"), 3);
        assert_eq!(page_number(b"x=1&page=2"), 2);
        assert_eq!(page_number(b"page=0"), 1);
        assert_eq!(page_number(b"page=-1"), 1);
        assert_eq!(page_number(b"page=99999999999999999999999"), 1);
        assert_eq!(Format::from_accept(None), Format::Html);
        assert_eq!(Format::from_accept(Some(b"application/json")), Format::Json);
        assert_eq!(
            Format::from_accept(Some(b"text/html,application/xhtml+xml,*/*;q=0.8")),
            Format::Html
        );
        assert_eq!(
            Format::from_accept(Some(b"application/json, text/html;q=0.5")),
            Format::Json
        );
    }
}
