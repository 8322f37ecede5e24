//! Response header rules by path (`[[headers]]` in the config file): `Cache-Control` for hashed
//! assets, security headers, anything a site needs on its files.
//!
//! Owns which fields a file's responses carry beyond those percore writes itself, and the
//! default (`Cache-Control: no-cache` for HTML). It never sees a request: the worker asks once
//! per cache entry, with the file's path below the root, and keeps the lines it gets.

use super::glob::Glob;

/// Fields percore writes itself (framing, validators, negotiation): a rule may not set them.
const RESERVED: &[&str] = &[
    "accept-ranges",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "date",
    "etag",
    "keep-alive",
    "last-modified",
    "server",
    "transfer-encoding",
    "upgrade",
    "vary",
];

/// Files matching `glob` get `fields` (name, value) on their 200, 206 and 304 responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRule {
    pub glob: Glob,
    pub fields: Vec<(String, String)>,
}

impl HeaderRule {
    /// A rule whose fields are checked: a token name that percore does not write itself, and a
    /// value of visible characters, spaces and tabs (empty: the field is not sent, which
    /// undoes an earlier rule or the default).
    pub fn new(glob: Glob, fields: Vec<(String, String)>) -> Result<HeaderRule, String> {
        for (name, value) in &fields {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!("'{name}' is not a field name"));
            }
            if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(format!("{name} is written by percore itself"));
            }
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(format!("the value of {name} has a control character"));
            }
        }
        Ok(HeaderRule { glob, fields })
    }
}

/// The default when no rule names `Cache-Control` for an HTML file: browsers revalidate it on
/// every use (a cheap 304 with its ETag), so a changed page shows at once; other files get
/// none, so browsers cache them by heuristics from `Last-Modified`, as with nginx.
const HTML_DEFAULT: (&str, &str) = ("Cache-Control", "no-cache");

/// The field lines ("Name: value\r\n" each) for the file at `path` below the root: every
/// matching rule in order, a later value replacing an earlier one of the same name.
pub fn header_lines(rules: &[HeaderRule], path: &[u8]) -> Vec<u8> {
    let mut fields: Vec<(&str, &str)> = Vec::new();
    for rule in rules.iter().filter(|rule| rule.glob.matches(path)) {
        for (name, value) in &rule.fields {
            match fields
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                Some(field) => *field = (name, value),
                None => fields.push((name, value)),
            }
        }
    }
    let is_html = path.ends_with(b".html") || path.ends_with(b".htm");
    if is_html
        && !fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(HTML_DEFAULT.0))
    {
        fields.push(HTML_DEFAULT);
    }
    let mut lines = Vec::new();
    for (name, value) in fields.into_iter().filter(|(_, v)| !v.is_empty()) {
        lines.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    lines
}

/// RFC 9110 tchar.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(glob: &str, fields: &[(&str, &str)]) -> HeaderRule {
        let fields = fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let glob = Glob::parse(glob).unwrap_or_else(|e| panic!("{e}"));
        HeaderRule::new(glob, fields).unwrap_or_else(|e| panic!("{e}"))
    }

    fn lines(rules: &[HeaderRule], path: &str) -> String {
        String::from_utf8_lossy(&header_lines(rules, path.as_bytes())).into_owned()
    }

    #[test]
    fn html_revalidates_by_default_and_other_files_get_nothing() {
        assert_eq!(lines(&[], "/index.html"), "Cache-Control: no-cache\r\n");
        assert_eq!(lines(&[], "/old.htm"), "Cache-Control: no-cache\r\n");
        assert_eq!(lines(&[], "/app.js"), "");
    }

    #[test]
    fn matching_rules_apply_in_order_and_later_values_win() {
        let rules = [
            rule("/**", &[("X-Content-Type-Options", "nosniff")]),
            rule(
                "/assets/**",
                &[("Cache-Control", "public, max-age=31536000, immutable")],
            ),
            rule("*.map", &[("cache-control", "no-store")]),
        ];
        assert_eq!(
            lines(&rules, "/assets/app.3f2a.js"),
            "X-Content-Type-Options: nosniff\r\nCache-Control: public, max-age=31536000, immutable\r\n"
        );
        assert_eq!(
            lines(&rules, "/assets/app.js.map"),
            "X-Content-Type-Options: nosniff\r\ncache-control: no-store\r\n"
        );
        assert_eq!(
            lines(&rules, "/index.html"),
            "X-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\n"
        );
    }

    #[test]
    fn a_rule_replaces_or_removes_the_html_default() {
        let long = [rule("/docs/*.html", &[("Cache-Control", "max-age=60")])];
        assert_eq!(
            lines(&long, "/docs/a.html"),
            "Cache-Control: max-age=60\r\n"
        );
        assert_eq!(lines(&long, "/a.html"), "Cache-Control: no-cache\r\n");
        let none = [rule("*.html", &[("Cache-Control", "")])];
        assert_eq!(lines(&none, "/a.html"), "");
    }

    #[test]
    fn fields_percore_writes_or_that_cannot_be_sent_are_refused() {
        let glob = Glob::parse("*").unwrap_or_else(|e| panic!("{e}"));
        for (name, value, why) in [
            ("Content-Length", "5", "written by percore"),
            ("etag", "\"x\"", "written by percore"),
            ("Bad Name", "x", "not a field name"),
            ("", "x", "not a field name"),
            ("X-Split", "a\r\nInjected: yes", "control character"),
            ("X-Nul", "a\0b", "control character"),
        ] {
            let fields = vec![(name.to_owned(), value.to_owned())];
            let err = HeaderRule::new(glob.clone(), fields)
                .err()
                .unwrap_or_default();
            assert!(err.contains(why), "{name}: {value:?}: {err}");
        }
        let tab = vec![("X-Tab".to_owned(), "a\tb".to_owned())];
        assert!(HeaderRule::new(glob, tab).is_ok());
    }
}
