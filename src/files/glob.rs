//! Path globs for the configuration's per-path rules (`[[headers]]`): which files a rule is for.
//!
//! A pattern that starts with `/` is matched against the whole path of the file below the root
//! (`/assets/**`); one without a slash against the file's name in any directory (`*.html`).
//! `*` is any run of bytes within one segment, `?` one byte, `**` as a whole segment any number
//! of segments (none included), `{a,b}` either alternative. Matching is on bytes, case-sensitive,
//! and costs at most the pattern's length times the path's per alternative: the worker matches
//! once per cache entry, never per request.

/// Most alternatives one pattern's braces may expand to.
const MAX_ALTERNATIVES: usize = 64;

/// A parsed glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    /// The text as configured, for messages.
    text: String,
    /// Whether it is matched against the whole path (it starts with `/`) or the file name.
    anchored: bool,
    /// Each alternative, split into segments.
    alternatives: Vec<Vec<Vec<u8>>>,
}

impl Glob {
    pub fn parse(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("an empty pattern".to_owned());
        }
        if text.bytes().any(|b| b.is_ascii_control()) {
            return Err("a control character in the pattern".to_owned());
        }
        let anchored = text.starts_with('/');
        if !anchored && text.contains('/') {
            return Err(
                "a pattern with a slash must start with one (/dir/*.js); without one it \
                 matches a file name in any directory (*.js)"
                    .to_owned(),
            );
        }
        let body = text.strip_prefix('/').unwrap_or(text);
        let alternatives = expand_braces(body.as_bytes())?
            .into_iter()
            .map(|alt| alt.split(|&b| b == b'/').map(<[u8]>::to_vec).collect())
            .collect();
        Ok(Glob {
            text: text.to_owned(),
            anchored,
            alternatives,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (below the root, with or without its leading `/`) matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        let path = path.strip_prefix(b"/").unwrap_or(path);
        let segments: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
        let subject = match self.anchored {
            true => &segments[..],
            false => segments
                .last()
                .map(std::slice::from_ref)
                .unwrap_or_default(),
        };
        self.alternatives.iter().any(|alt| {
            let pattern: Vec<&[u8]> = alt.iter().map(Vec::as_slice).collect();
            match_segments(&pattern, subject)
        })
    }
}

/// `{a,b}` groups expanded into plain alternatives (no nesting).
fn expand_braces(pattern: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut alternatives = vec![Vec::new()];
    let mut rest = pattern;
    while let Some(&b) = rest.first() {
        match b {
            b'{' => {
                let close = rest
                    .iter()
                    .position(|&c| c == b'}')
                    .ok_or("a '{' without its '}'")?;
                let inner = rest.get(1..close).unwrap_or_default();
                if inner.contains(&b'{') {
                    return Err("braces inside braces".to_owned());
                }
                let options: Vec<&[u8]> = inner.split(|&c| c == b',').collect();
                if options.len() * alternatives.len() > MAX_ALTERNATIVES {
                    return Err(format!(
                        "more than {MAX_ALTERNATIVES} alternatives from its braces"
                    ));
                }
                alternatives = alternatives
                    .iter()
                    .flat_map(|prefix| {
                        options.iter().map(move |option| {
                            let mut alt = prefix.clone();
                            alt.extend_from_slice(option);
                            alt
                        })
                    })
                    .collect();
                rest = rest.get(close + 1..).unwrap_or_default();
            }
            b'}' => return Err("a '}' without its '{'".to_owned()),
            _ => {
                for alt in &mut alternatives {
                    alt.push(b);
                }
                rest = rest.get(1..).unwrap_or_default();
            }
        }
    }
    Ok(alternatives)
}

/// Pattern segments against path segments; `**` takes any number of path segments.
fn match_segments(pattern: &[&[u8]], path: &[&[u8]]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&b"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                match_segment(first, segment) && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// One segment: `*` any run of bytes, `?` any one byte, others literally (the classic
/// backtrack-to-the-last-star walk, linear in practice).
fn match_segment(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> Glob {
        Glob::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn check(pattern: &str, yes: &[&str], no: &[&str]) {
        let g = glob(pattern);
        for path in yes {
            assert!(g.matches(path.as_bytes()), "{pattern} should match {path}");
        }
        for path in no {
            assert!(
                !g.matches(path.as_bytes()),
                "{pattern} should not match {path}"
            );
        }
    }

    #[test]
    fn a_name_pattern_matches_in_any_directory() {
        check(
            "*.html",
            &["/index.html", "/a/b/c.html", "/.html", "x.html"],
            &["/index.htm", "/a.html/b", "/index.html.br"],
        );
        check(
            "favicon.ico",
            &["/favicon.ico", "/x/favicon.ico"],
            &["/favicon.icon"],
        );
        check("?.js", &["/a.js"], &["/ab.js", "/.js"]);
    }

    #[test]
    fn an_anchored_pattern_matches_the_whole_path() {
        check(
            "/assets/*",
            &["/assets/app.js", "assets/app.js"],
            &["/assets/a/b.js", "/x/assets/app.js", "/assets"],
        );
        check(
            "/assets/**",
            &["/assets/app.js", "/assets/a/b/c.js", "/assets"],
            &["/asset/app.js", "/x/assets/a"],
        );
        check(
            "/**/*.woff2",
            &["/f.woff2", "/a/b/f.woff2"],
            &["/f.woff", "/a/f.woff2x"],
        );
        check("/**", &["/", "/a", "/a/b/c"], &[]);
        check("/index.html", &["/index.html"], &["/a/index.html"]);
    }

    #[test]
    fn braces_give_alternatives() {
        check(
            "*.{js,css,woff2}",
            &["/a.js", "/b/c.css", "/f.woff2"],
            &["/a.jsx", "/a.html"],
        );
        check(
            "/{img,fonts}/**",
            &["/img/a.png", "/fonts/x/y.woff"],
            &["/css/a.css"],
        );
        check("a{,b}c", &["/ac", "/abc"], &["/abbc"]);
    }

    #[test]
    fn stars_backtrack() {
        check(
            "*-*.min.js",
            &["/app-3f2a.min.js", "/a-b-c.min.js", "/-.min.js"],
            &["/app.min.js", "/app-1.js"],
        );
        check("***a", &["/a", "/bba"], &["/b"]);
        assert!(match_segment(b"*a*b*c*", b"xxaxxbxxcxx"));
        assert!(!match_segment(b"*a*b*c*d", b"xxaxxbxxcxx"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for (text, why) in [
            ("", "empty"),
            ("a/*.js", "must start with one"),
            ("*.{js", "without its '}'"),
            ("*.js}", "without its '{'"),
            ("{a,{b}}", "inside"),
            ("a\nb", "control"),
        ] {
            let err = Glob::parse(text).err().unwrap_or_default();
            assert!(err.contains(why), "{text:?}: {err}");
        }
        let many = "{a,b,c,d}{a,b,c,d}{a,b,c,d,e}";
        assert!(Glob::parse(many).is_err());
        assert_eq!(glob("*.js").as_str(), "*.js");
    }
}
