//! Precompressed representations: which content codings percore serves from sibling files
//! (`app.js.br`, `app.js.zst`, `app.js.gz`, as nginx's `gzip_static` and static-web-server do)
//! and which one a request's `Accept-Encoding` (RFC 9110 §12.5.3) gets.
//!
//! It never compresses anything and never looks at a file: the worker says which siblings
//! exist, this module picks one (or none: the file itself).

use super::syntax::trim;

/// A content coding served from a precompressed sibling file, best first: when a client
/// accepts several equally, the smallest usual output wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    /// Every coding, in the server's order of preference.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of the sibling file that holds this coding of a file.
    pub fn extension(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    /// The coding a configuration token names ("br", "zstd", "gzip"; "zst" and "gz" too).
    pub fn from_name(name: &str) -> Option<Coding> {
        match name.to_ascii_lowercase().as_str() {
            "br" | "brotli" => Some(Coding::Br),
            "zstd" | "zst" => Some(Coding::Zstd),
            "gzip" | "gz" => Some(Coding::Gzip),
            _ => None,
        }
    }

    /// Whether the `Accept-Encoding` element name `name` means this coding.
    fn is_named(self, name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(self.token().as_bytes())
            || (self == Coding::Gzip && name.eq_ignore_ascii_case(b"x-gzip"))
    }

    const fn bit(self) -> u8 {
        match self {
            Coding::Br => 1,
            Coding::Zstd => 2,
            Coding::Gzip => 4,
        }
    }
}

/// A set of codings: those configured, or the siblings one file has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Codings(u8);

impl Codings {
    pub const NONE: Codings = Codings(0);

    pub const fn with(self, coding: Coding) -> Codings {
        Codings(self.0 | coding.bit())
    }

    pub const fn without(self, coding: Coding) -> Codings {
        Codings(self.0 & !coding.bit())
    }

    /// The codings in either set.
    pub const fn union(self, other: Codings) -> Codings {
        Codings(self.0 | other.0)
    }

    pub fn contains(self, coding: Coding) -> bool {
        self.0 & coding.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The codings in the set, best first.
    pub fn iter(self) -> impl Iterator<Item = Coding> {
        Coding::ALL.into_iter().filter(move |&c| self.contains(c))
    }
}

impl FromIterator<Coding> for Codings {
    fn from_iter<I: IntoIterator<Item = Coding>>(iter: I) -> Codings {
        iter.into_iter().fold(Codings::NONE, Codings::with)
    }
}

/// The coding to send, given the values of every `Accept-Encoding` field of a request and the
/// codings `available` for the file; `None`: the file itself (identity).
///
/// The highest qvalue wins and the server's order breaks ties; a coding the client does not
/// name gets the qvalue of `*` if it sent one, else it is not acceptable; `q=0` refuses. With
/// no `Accept-Encoding` field at all, identity. When identity itself is refused
/// (`identity;q=0` or `*;q=0`) and no sibling is acceptable, the file is still sent as it is,
/// as nginx does, rather than 406.
pub fn negotiate<'a>(
    fields: impl IntoIterator<Item = &'a [u8]>,
    available: Codings,
) -> Option<Coding> {
    if available.is_empty() {
        return None;
    }
    // Per coding: the qvalue its own element gave (None: not named), and that of `*`.
    let mut named: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    for value in fields {
        for element in value.split(|&b| b == b',') {
            let mut parts = element.split(|&b| b == b';');
            let name = trim(parts.next().unwrap_or_default());
            if name.is_empty() {
                continue;
            }
            let Some(q) = qvalue(parts) else {
                continue; // a malformed weight: the element is ignored
            };
            if name == b"*" {
                star = Some(star.map_or(q, |s| s.max(q)));
                continue;
            }
            for (i, coding) in Coding::ALL.into_iter().enumerate() {
                if coding.is_named(name) {
                    named[i] = Some(named[i].map_or(q, |n| n.max(q)));
                }
            }
        }
    }
    let mut best: Option<(Coding, u16)> = None;
    for (i, coding) in Coding::ALL.into_iter().enumerate() {
        if !available.contains(coding) {
            continue;
        }
        let q = named[i].or(star).unwrap_or(0);
        if q > 0 && best.map_or(true, |(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(coding, _)| coding)
}

/// The weight among an element's parameters, in thousandths: 1000 without a `q` parameter;
/// `None` when the weight is not a qvalue (`0`, `0.5`, `1.000`; at most three decimals).
fn qvalue<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<u16> {
    for param in params {
        let param = trim(param);
        let Some(eq) = param.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (trim(&param[..eq]), trim(&param[eq + 1..]));
        if !key.eq_ignore_ascii_case(b"q") {
            continue;
        }
        let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
            Some(dot) => (&value[..dot], &value[dot + 1..]),
            None => (value, &b""[..]),
        };
        if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let thousandths = fraction
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(3)
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
        return match whole {
            b"0" => Some(thousandths),
            b"1" if thousandths == 0 => Some(1000),
            _ => None,
        };
    }
    Some(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Codings = Codings(7);

    fn pick(fields: &[&str], available: Codings) -> Option<&'static str> {
        negotiate(fields.iter().map(|f| f.as_bytes()), available).map(Coding::token)
    }

    fn set(codings: &[Coding]) -> Codings {
        codings.iter().copied().collect()
    }

    #[test]
    fn without_the_field_or_siblings_the_file_itself_is_sent() {
        assert_eq!(pick(&[], ALL), None);
        assert_eq!(pick(&["br, gzip"], Codings::NONE), None);
        assert_eq!(pick(&[""], ALL), None);
        assert_eq!(pick(&["identity"], ALL), None);
    }

    #[test]
    fn the_servers_order_breaks_ties() {
        assert_eq!(pick(&["gzip, deflate, br, zstd"], ALL), Some("br"));
        assert_eq!(pick(&["gzip, zstd"], ALL), Some("zstd"));
        assert_eq!(pick(&["gzip, br"], set(&[Coding::Gzip])), Some("gzip"));
        assert_eq!(pick(&["br"], set(&[Coding::Gzip])), None);
    }

    #[test]
    fn qvalues_are_honoured() {
        assert_eq!(pick(&["br;q=0.5, gzip"], ALL), Some("gzip"));
        assert_eq!(pick(&["br;q=0.9, gzip;q=0.899"], ALL), Some("br"));
        assert_eq!(pick(&["br;q=0, gzip;q=0.001"], ALL), Some("gzip"));
        assert_eq!(pick(&["gzip;q=0"], set(&[Coding::Gzip])), None);
        assert_eq!(pick(&["br ; Q = 0.5 , gzip ; q=1.0"], ALL), Some("gzip"));
        // The best weight a coding is given counts when it is named twice.
        assert_eq!(pick(&["gzip;q=0, br;q=0.5, gzip;q=0.8"], ALL), Some("gzip"));
    }

    #[test]
    fn the_star_stands_for_codings_not_named() {
        assert_eq!(pick(&["*"], ALL), Some("br"));
        assert_eq!(pick(&["*;q=0.5, br;q=0.1"], ALL), Some("zstd"));
        assert_eq!(pick(&["*;q=0, gzip"], ALL), Some("gzip"));
        assert_eq!(pick(&["*;q=0"], ALL), None);
        assert_eq!(pick(&["br;q=0, *"], set(&[Coding::Br])), None);
    }

    #[test]
    fn identity_refused_without_an_acceptable_sibling_still_gets_the_file() {
        assert_eq!(pick(&["identity;q=0"], set(&[Coding::Gzip])), None);
        assert_eq!(
            pick(&["identity;q=0, gzip"], set(&[Coding::Gzip])),
            Some("gzip")
        );
    }

    #[test]
    fn several_fields_combine_and_x_gzip_is_gzip() {
        assert_eq!(pick(&["deflate", "gzip"], ALL), Some("gzip"));
        assert_eq!(pick(&["x-gzip"], ALL), Some("gzip"));
        assert_eq!(pick(&["BR"], ALL), Some("br"));
    }

    #[test]
    fn malformed_weights_void_their_element_only() {
        for weight in ["2", "1.5", "0.1234", "-1", "x", "", ".5", "0.5x", "1.001"] {
            let field = format!("br;q={weight}, gzip;q=0.1");
            assert_eq!(pick(&[&field], ALL), Some("gzip"), "q={weight}");
        }
        assert_eq!(pick(&["br;level=5"], ALL), Some("br"));
        assert_eq!(pick(&[",,br;;,"], ALL), Some("br"));
    }

    #[test]
    fn qvalue_accepts_what_rfc_9110_allows() {
        let q = |s: &str| qvalue(std::iter::once(s.as_bytes()));
        assert_eq!(q("q=1"), Some(1000));
        assert_eq!(q("q=1."), Some(1000));
        assert_eq!(q("q=1.000"), Some(1000));
        assert_eq!(q("q=0.5"), Some(500));
        assert_eq!(q("q=0.05"), Some(50));
        assert_eq!(q("q=0"), Some(0));
        assert_eq!(q("q=0.999"), Some(999));
        assert_eq!(q("charset=x"), Some(1000));
    }

    #[test]
    fn configuration_names() {
        assert_eq!(Coding::from_name("GZ"), Some(Coding::Gzip));
        assert_eq!(Coding::from_name("zst"), Some(Coding::Zstd));
        assert_eq!(Coding::from_name("deflate"), None);
        let every: Vec<_> = ALL.iter().map(Coding::extension).collect();
        assert_eq!(every, [".br", ".zst", ".gz"]);
    }
}
