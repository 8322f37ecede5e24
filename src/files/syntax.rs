//! Field-value syntax shared by the precondition and range parsers: optional whitespace.
//!
//! It owns nothing but these small byte-slice helpers and imports nothing of the crate.

/// RFC 9110 §5.6.3: OWS = *( SP / HTAB ).
pub(super) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(super) fn trim_start_matches(s: &[u8], pred: impl Fn(u8) -> bool) -> &[u8] {
    let start = s.iter().position(|&b| !pred(b)).unwrap_or(s.len());
    s.get(start..).unwrap_or_default()
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub(super) fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start_matches(s, is_ows);
    let end = s.iter().rposition(|&b| !is_ows(b)).map_or(0, |i| i + 1);
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ows_trimming() {
        assert_eq!(trim(b" \t a b \t"), b"a b");
        assert_eq!(trim(b" \t "), b"");
        assert_eq!(trim(b""), b"");
        assert_eq!(trim(b"\r\na\r\n"), b"\r\na\r\n");
        assert_eq!(
            trim_start_matches(b",, a", |b| b == b',' || is_ows(b)),
            b"a"
        );
    }
}
