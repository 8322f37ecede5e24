//! The framing of a `multipart/byteranges` body (RFC 9110 §14.6) and the `Content-Range`
//! values; the worker interleaves these heads with the file's bytes.
//!
//! Body layout, as nginx writes it: for each range `part_head` then the range's bytes, then
//! `multipart_tail`. The leading CRLF of the first part is an empty preamble's line break.

use super::range::ByteRange;

/// A boundary of 20 hex digits spread from `seed` (splitmix64), so that consecutive seeds
/// give unrelated boundaries. Hex digits are valid `bchars` and need no quoting.
pub fn multipart_boundary(seed: u64) -> String {
    let first = splitmix64(seed);
    let second = splitmix64(first);
    format!("{first:016x}{:04x}", second >> 48)
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The response's `Content-Type` for a multipart body with `boundary`.
pub fn multipart_content_type(boundary: &str) -> String {
    format!("multipart/byteranges; boundary={boundary}")
}

/// What precedes one part's bytes: delimiter line, the part's Content-Type and Content-Range.
pub fn part_head(boundary: &str, content_type: &str, range: ByteRange, total_len: u64) -> Vec<u8> {
    format!(
        "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
        content_range(range, total_len)
    )
    .into_bytes()
}

/// The close-delimiter that ends the body.
pub fn multipart_tail(boundary: &str) -> Vec<u8> {
    format!("\r\n--{boundary}--\r\n").into_bytes()
}

/// The exact length of the body (`Content-Length`): every part head, every range, the tail.
pub fn multipart_len(
    boundary: &str,
    content_type: &str,
    ranges: &[ByteRange],
    total_len: u64,
) -> u64 {
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let parts = ranges.iter().fold(0u64, |sum, &range| {
        let head = as_u64(part_head(boundary, content_type, range, total_len).len());
        sum.saturating_add(head).saturating_add(range.len())
    });
    parts.saturating_add(as_u64(multipart_tail(boundary).len()))
}

/// `Content-Range` of a 206: "bytes 0-99/1000".
pub fn content_range(range: ByteRange, total_len: u64) -> String {
    format!("bytes {}-{}/{total_len}", range.start, range.end)
}

/// `Content-Range` of a 416: "bytes */1000".
pub fn unsatisfied_range(total_len: u64) -> String {
    format!("bytes */{total_len}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    /// Assembles a body the way the worker does, from a file's bytes.
    fn assemble(boundary: &str, content_type: &str, ranges: &[ByteRange], file: &[u8]) -> Vec<u8> {
        let total = u64::try_from(file.len()).unwrap_or(u64::MAX);
        let mut body = Vec::new();
        for &range in ranges {
            body.extend(part_head(boundary, content_type, range, total));
            let start = usize::try_from(range.start).unwrap_or(usize::MAX);
            let end = usize::try_from(range.end).unwrap_or(usize::MAX);
            body.extend_from_slice(file.get(start..=end).unwrap_or_default());
        }
        body.extend(multipart_tail(boundary));
        body
    }

    fn check(ranges: &[ByteRange], file: &[u8], expected: &[u8]) {
        let body = assemble("B", "text/plain", ranges, file);
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(expected)
        );
        let total = u64::try_from(file.len()).unwrap_or(u64::MAX);
        let len = multipart_len("B", "text/plain", ranges, total);
        assert_eq!(Some(len), u64::try_from(body.len()).ok());
    }

    #[test]
    fn assembled_body_matches_its_length() {
        check(
            &[r(0, 2), r(7, 9)],
            b"abcdefghij",
            b"\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-2/10\r\n\r\nabc\
              \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 7-9/10\r\n\r\nhij\
              \r\n--B--\r\n",
        );
        check(&[], b"abc", b"\r\n--B--\r\n");
        check(
            &[r(9, 9)],
            b"abcdefghij",
            b"\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 9-9/10\r\n\r\nj\r\n--B--\r\n",
        );
    }

    #[test]
    fn length_with_a_real_boundary_and_wide_numbers() {
        let boundary = multipart_boundary(42);
        let file: Vec<u8> = (0..=255u8).cycle().take(123_457).collect();
        let ranges = [r(0, 0), r(99_999, 123_456), r(10, 9_999)];
        let ct = "application/octet-stream";
        let body = assemble(&boundary, ct, &ranges, &file);
        let len = multipart_len(&boundary, ct, &ranges, 123_457);
        assert_eq!(Some(len), u64::try_from(body.len()).ok());
    }

    #[test]
    fn boundaries_are_20_hex_digits_and_vary_with_the_seed() {
        let a = multipart_boundary(0);
        let b = multipart_boundary(1);
        assert_eq!(a.len(), 20);
        assert_eq!(b.len(), 20);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_eq!(multipart_boundary(7), multipart_boundary(7));
        assert_eq!(multipart_boundary(u64::MAX).len(), 20);
    }

    #[test]
    fn header_values() {
        assert_eq!(
            multipart_content_type("abc"),
            "multipart/byteranges; boundary=abc"
        );
        assert_eq!(content_range(r(0, 99), 1000), "bytes 0-99/1000");
        assert_eq!(content_range(r(999, 999), 1000), "bytes 999-999/1000");
        assert_eq!(unsatisfied_range(1000), "bytes */1000");
        assert_eq!(unsatisfied_range(0), "bytes */0");
        assert_eq!(multipart_tail("x"), b"\r\n--x--\r\n");
    }
}
