//! The `Range` header (RFC 9110 §14.2, bytes unit only) resolved against a file length.
//!
//! A header we cannot parse is ignored, as RFC 9110 §14.2 allows: "An origin server MUST
//! ignore a Range header field that contains a range unit it does not understand", and a
//! server "MAY ignore the Range header field" otherwise.

use super::syntax::trim;

/// What a `Range` value selects of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selected {
    /// The whole file: no usable Range, or more ranges than allowed.
    Whole,
    /// One range.
    One(ByteRange),
    /// Several ranges, in request order, overlapping or adjacent ones merged.
    Several(Vec<ByteRange>),
    /// No range is satisfiable.
    Unsatisfiable,
}

/// An inclusive range of byte offsets, `start <= end < file length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range (0 only for a malformed `end < start`).
    pub fn len(&self) -> u64 {
        match self.end.checked_sub(self.start) {
            Some(span) => span.saturating_add(1),
            None => 0,
        }
    }

    /// Whether the range holds no byte (never true for a range [`select`] produced).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the two ranges overlap or are adjacent, so one part can carry both.
    fn touches(&self, other: &ByteRange) -> bool {
        self.start <= other.end.saturating_add(1) && other.start <= self.end.saturating_add(1)
    }

    fn union(&self, other: &ByteRange) -> ByteRange {
        ByteRange {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// One range-spec as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-last`
    Closed(u64, u64),
    /// `first-`
    From(u64),
    /// `-suffix`
    Suffix(u64),
}

impl Spec {
    /// The bytes this spec selects from a non-empty file, `None` when unsatisfiable.
    fn resolve(self, len: u64) -> Option<ByteRange> {
        let last = len.checked_sub(1)?;
        match self {
            Spec::Closed(first, end) => (first < len).then(|| ByteRange {
                start: first,
                end: end.min(last),
            }),
            Spec::From(first) => (first < len).then_some(ByteRange {
                start: first,
                end: last,
            }),
            // "If the selected representation is shorter than the specified suffix-length,
            // the entire representation is used."
            Spec::Suffix(suffix) => (suffix > 0).then(|| ByteRange {
                start: len - suffix.min(len),
                end: last,
            }),
        }
    }
}

/// Weighs a `Range` value against a file of `len` bytes.
///
/// An empty file, `max_ranges == 0`, an unknown unit or a syntax error serve the whole file;
/// so do more than `max_ranges` satisfiable range-specs (counted before merging, so the
/// work done is bounded by the limit).
pub fn select(value: &[u8], len: u64, max_ranges: usize) -> Selected {
    if len == 0 || max_ranges == 0 {
        return Selected::Whole;
    }
    let Some(specs) = parse(value) else {
        return Selected::Whole;
    };
    let satisfiable: Vec<ByteRange> = specs.iter().filter_map(|s| s.resolve(len)).collect();
    if satisfiable.is_empty() {
        return Selected::Unsatisfiable;
    }
    if satisfiable.len() > max_ranges {
        return Selected::Whole;
    }
    match coalesce(&satisfiable).as_slice() {
        [one] => Selected::One(*one),
        several => Selected::Several(several.to_vec()),
    }
}

/// Merges overlapping and adjacent ranges. Each merged range takes the place of the
/// earliest range it absorbed, so parts keep the order the client asked for.
fn coalesce(ranges: &[ByteRange]) -> Vec<ByteRange> {
    let mut kept: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        // Kept ranges never touch each other, so whatever touches the growing union
        // touches `range` itself.
        let mut merged = *range;
        let mut slot = None;
        let mut next = Vec::with_capacity(kept.len() + 1);
        for old in kept {
            if old.touches(range) {
                merged = merged.union(&old);
                if slot.is_none() {
                    slot = Some(next.len());
                    next.push(old);
                }
            } else {
                next.push(old);
            }
        }
        match slot.and_then(|i| next.get_mut(i)) {
            Some(place) => *place = merged,
            None => next.push(merged),
        }
        kept = next;
    }
    kept
}

/// `ranges-specifier = range-unit "=" range-set`; `None` means "ignore the header".
fn parse(value: &[u8]) -> Option<Vec<Spec>> {
    let value = trim(value);
    let equals = value.iter().position(|&b| b == b'=')?;
    let (unit, set) = value.split_at(equals);
    // "bytes" is compared case-insensitively, as RFC 9110 §14.1 says range units are.
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let set = set.strip_prefix(b"=")?;
    let mut specs = Vec::new();
    // "1#range-spec": empty list elements are accepted and skipped (RFC 9110 §5.6.1.2).
    for element in set.split(|&b| b == b',').map(trim) {
        if !element.is_empty() {
            specs.push(parse_spec(element)?);
        }
    }
    (!specs.is_empty()).then_some(specs)
}

/// `int-range = first-pos "-" [ last-pos ]` / `suffix-range = "-" suffix-length`.
/// Whitespace around '-' is tolerated, as nginx does.
fn parse_spec(element: &[u8]) -> Option<Spec> {
    let dash = element.iter().position(|&b| b == b'-')?;
    let (first, last) = element.split_at(dash);
    let last = last.strip_prefix(b"-")?;
    match (trim(first), trim(last)) {
        (b"", b"") => None,
        (b"", suffix) => Some(Spec::Suffix(number(suffix)?)),
        (first, b"") => Some(Spec::From(number(first)?)),
        (first, last) => {
            let (first, last) = (number(first)?, number(last)?);
            // "A range-spec is invalid if the last-pos value is present and less than the
            // first-pos."
            (last >= first).then_some(Spec::Closed(first, last))
        }
    }
}

/// `1*DIGIT`, saturating: a position past any file is as unsatisfiable as u64::MAX.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn partial(start: u64, end: u64) -> Selected {
        Selected::One(r(start, end))
    }

    fn multipart(ranges: &[(u64, u64)]) -> Selected {
        Selected::Several(ranges.iter().map(|&(s, e)| r(s, e)).collect())
    }

    /// Selects with a 1000-byte file and at most 4 ranges.
    fn check(value: &[u8], expected: Selected) {
        check_with(value, 1000, 4, expected);
    }

    fn check_with(value: &[u8], len: u64, max_ranges: usize, expected: Selected) {
        let got = select(value, len, max_ranges);
        assert_eq!(
            got,
            expected,
            "{:?} len {len}",
            String::from_utf8_lossy(value)
        );
    }

    #[test]
    fn single_range_forms() {
        check(b"bytes=0-99", partial(0, 99));
        check(b"bytes=0-0", partial(0, 0));
        check(b"bytes=999-999", partial(999, 999));
        check(b"bytes=999-", partial(999, 999));
        check(b"bytes=-1", partial(999, 999));
        check(b"bytes=100-", partial(100, 999));
        check(b"bytes=-100", partial(900, 999));
        check(b"bytes=0-", partial(0, 999));
        check(b"bytes=500-5000", partial(500, 999));
        check(b"bytes=500-99999999999999999999999", partial(500, 999));
    }

    #[test]
    fn suffix_larger_than_the_file_is_the_whole_file() {
        check(b"bytes=-1000", partial(0, 999));
        check(b"bytes=-1001", partial(0, 999));
        check(b"bytes=-99999999999999999999999", partial(0, 999));
    }

    #[test]
    fn unsatisfiable() {
        check(b"bytes=1000-", Selected::Unsatisfiable);
        check(b"bytes=1000-2000", Selected::Unsatisfiable);
        check(b"bytes=-0", Selected::Unsatisfiable);
        check(b"bytes=99999999999999999999999-", Selected::Unsatisfiable);
        check(b"bytes=1000-1000, -0", Selected::Unsatisfiable);
        check_with(b"bytes=1-", 1, 4, Selected::Unsatisfiable);
        // Unsatisfiable members are dropped when another one is satisfiable.
        check(b"bytes=2000-, 5-9", partial(5, 9));
        check(b"bytes=-0,0-0", partial(0, 0));
    }

    #[test]
    fn empty_file_serves_the_whole_file() {
        check_with(b"bytes=0-", 0, 4, Selected::Whole);
        check_with(b"bytes=-5", 0, 4, Selected::Whole);
        check_with(b"bytes=0-0", 0, 4, Selected::Whole);
    }

    #[test]
    fn one_byte_file() {
        check_with(b"bytes=0-0", 1, 4, partial(0, 0));
        check_with(b"bytes=-1", 1, 4, partial(0, 0));
        check_with(b"bytes=0-", 1, 4, partial(0, 0));
        check_with(b"bytes=-9", 1, 4, partial(0, 0));
    }

    #[test]
    fn whitespace() {
        check(b" bytes=0-9 ", partial(0, 9));
        check(b"bytes= 0-9", partial(0, 9));
        check(b"bytes=0 - 9", partial(0, 9));
        check(b"bytes=0-9 ,\t20-29", multipart(&[(0, 9), (20, 29)]));
        check(b"bytes=0-9,,20-29,", multipart(&[(0, 9), (20, 29)]));
        check(b"bytes =0-9", Selected::Whole);
        check(b"bytes=0-9 9", Selected::Whole);
    }

    #[test]
    fn unit_is_case_insensitive_and_must_be_bytes() {
        check(b"BYTES=0-9", partial(0, 9));
        check(b"Bytes=0-9", partial(0, 9));
        check(b"items=0-9", Selected::Whole);
        check(b"bits=0-9", Selected::Whole);
        check(b"byte=0-9", Selected::Whole);
        check(b"=0-9", Selected::Whole);
        check(b"0-9", Selected::Whole);
    }

    #[test]
    fn syntax_errors_ignore_the_header() {
        check(b"", Selected::Whole);
        check(b"bytes", Selected::Whole);
        check(b"bytes=", Selected::Whole);
        check(b"bytes=,", Selected::Whole);
        check(b"bytes=-", Selected::Whole);
        check(b"bytes=5", Selected::Whole);
        check(b"bytes=9-5", Selected::Whole);
        check(b"bytes=a-5", Selected::Whole);
        check(b"bytes=0-5x", Selected::Whole);
        check(b"bytes=+1-5", Selected::Whole);
        check(b"bytes=--5", Selected::Whole);
        check(b"bytes=-5-", Selected::Whole);
        check(b"bytes=1-2-3", Selected::Whole);
        check(b"bytes=0x10-", Selected::Whole);
        check(b"bytes=\xff-1", Selected::Whole);
        check(b"bytes==0-1", Selected::Whole);
        // One bad member spoils the whole header, even next to unsatisfiable ones.
        check(b"bytes=0-9,x", Selected::Whole);
        check(b"bytes=2000-,9-5", Selected::Whole);
    }

    #[test]
    fn several_ranges_keep_their_order() {
        check(b"bytes=0-9,20-29", multipart(&[(0, 9), (20, 29)]));
        check(b"bytes=500-599,0-99", multipart(&[(500, 599), (0, 99)]));
        check(b"bytes=-10,0-0", multipart(&[(990, 999), (0, 0)]));
        check(
            b"bytes=0-0,2-2,4-4,6-6",
            multipart(&[(0, 0), (2, 2), (4, 4), (6, 6)]),
        );
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        check(b"bytes=0-9,10-19", partial(0, 19));
        check(b"bytes=0-9,5-19", partial(0, 19));
        check(b"bytes=0-9,0-9", partial(0, 9));
        check(b"bytes=10-19,0-9", partial(0, 19));
        check(b"bytes=0-,-1", partial(0, 999));
        check(b"bytes=0-9,20-29,10-19", partial(0, 29));
        check(
            b"bytes=50-59,0-9,20-29,5-21",
            multipart(&[(50, 59), (0, 29)]),
        );
        check(b"bytes=0-9,30-39,20-29", multipart(&[(0, 9), (20, 39)]));
        check(
            b"bytes=0-9,12-19,30-39",
            multipart(&[(0, 9), (12, 19), (30, 39)]),
        );
    }

    #[test]
    fn too_many_ranges_serve_the_whole_file() {
        check(b"bytes=0-0,2-2,4-4,6-6,8-8", Selected::Whole);
        check(b"bytes=0-0,0-0,0-0,0-0,0-0", Selected::Whole);
        check(
            b"bytes=0-0,2-2,4-4,6-6,2000-,3000-",
            multipart(&[(0, 0), (2, 2), (4, 4), (6, 6)]),
        );
        check_with(b"bytes=0-9", 1000, 1, partial(0, 9));
        check_with(b"bytes=0-9,20-29", 1000, 1, Selected::Whole);
        check_with(b"bytes=0-9", 1000, 0, Selected::Whole);
        let many: Vec<u8> = (0..2000)
            .map(|i| format!("{}-{},", i * 3, i * 3))
            .collect::<String>()
            .into_bytes();
        let value = [b"bytes=".as_slice(), &many].concat();
        check(&value, Selected::Whole);
        check_with(
            &value,
            1000,
            usize::MAX,
            Selected::Several((0..334).map(|i| r(i * 3, i * 3)).collect()),
        );
    }

    #[test]
    fn byte_range_len() {
        assert_eq!(r(0, 0).len(), 1);
        assert_eq!(r(0, 99).len(), 100);
        assert_eq!(r(5, 4).len(), 0);
        assert!(r(5, 4).is_empty());
        assert!(!r(0, 0).is_empty());
        assert_eq!(r(0, u64::MAX).len(), u64::MAX);
    }

    #[test]
    fn coalesce_keeps_ranges_disjoint_and_ordered() {
        // Compared with a naive twin: sort, merge, and check every input byte is covered.
        let inputs = [
            vec![r(8, 9), r(0, 1), r(4, 5), r(2, 3)],
            vec![r(0, 0), r(9, 9), r(5, 5), r(1, 8)],
            vec![r(3, 4), r(6, 7), r(0, 1), r(5, 5)],
        ];
        for input in inputs {
            let got = coalesce(&input);
            for (i, a) in got.iter().enumerate() {
                for b in got.iter().skip(i + 1) {
                    assert!(!a.touches(b), "{got:?}");
                }
            }
            let mut sorted = input.clone();
            sorted.sort_by_key(|x| x.start);
            let mut naive: Vec<ByteRange> = Vec::new();
            for x in sorted {
                match naive.last_mut() {
                    Some(last) if last.touches(&x) => *last = last.union(&x),
                    _ => naive.push(x),
                }
            }
            let mut got_sorted = got.clone();
            got_sorted.sort_by_key(|x| x.start);
            assert_eq!(got_sorted, naive, "{input:?}");
        }
        assert_eq!(
            coalesce(&[r(8, 9), r(0, 1), r(4, 5), r(2, 3)]),
            [r(8, 9), r(0, 5)]
        );
    }
}
