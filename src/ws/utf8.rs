//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! This file owns the decision whether a byte stream is UTF-8 (RFC 3629: no overlong forms, no
//! surrogates, nothing above U+10FFFF), failing at the first byte that cannot start or continue
//! a valid sequence. It keeps at most three bytes of an unfinished code point and never allocates.

/// A validator fed with consecutive pieces of one message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    /// The first bytes of a code point split across pieces (a valid prefix).
    pending: [u8; 4],
    pending_len: u8,
}

/// The byte sequence is not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece; fails as soon as the bytes seen so far cannot be a prefix of
    /// valid UTF-8 (std's `error_len()` is `Some` exactly then).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            bytes = self.complete_pending(bytes)?;
            if self.pending_len > 0 {
                return Ok(());
            }
        }
        // simdutf8's compat errors mean what std's do: error_len() is Some for an invalid
        // sequence, None for a code point cut off at the end.
        match simdutf8::compat::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(error) if error.error_len().is_some() => Err(InvalidUtf8),
            Err(error) => {
                let tail = bytes.get(error.valid_up_to()..).unwrap_or_default();
                self.keep(tail);
                Ok(())
            }
        }
    }

    /// Ends the message: an unfinished code point at the end is invalid.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        *self = Self::default();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Appends bytes to the pending code point until it is complete; returns the rest.
    fn complete_pending<'a>(&mut self, bytes: &'a [u8]) -> Result<&'a [u8], InvalidUtf8> {
        let have = usize::from(self.pending_len);
        let width = sequence_width(self.pending[0]);
        let take = width.saturating_sub(have).min(bytes.len());
        let (head, rest) = bytes.split_at(take);
        let mut joined = self.pending;
        joined[have..have + take].copy_from_slice(head);
        match std::str::from_utf8(&joined[..have + take]) {
            Ok(_) => {
                self.pending_len = 0;
                Ok(rest)
            }
            Err(error) if error.error_len().is_some() => Err(InvalidUtf8),
            Err(_) => {
                self.keep(&joined[..have + take]);
                Ok(rest)
            }
        }
    }

    fn keep(&mut self, prefix: &[u8]) {
        let len = prefix.len().min(4);
        self.pending[..len].copy_from_slice(&prefix[..len]);
        self.pending_len = len as u8;
    }
}

/// The length of the sequence a valid lead byte starts.
fn sequence_width(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` in order; `expected` is the index of the piece that must fail (None: valid).
    fn check(pieces: &[&[u8]], expected_failure: Option<usize>) {
        let mut v = Utf8Validator::new();
        for (i, piece) in pieces.iter().enumerate() {
            if v.feed(piece).is_err() {
                assert_eq!(Some(i), expected_failure, "failed early at piece {i}");
                return;
            }
        }
        let finished = v.finish();
        assert_eq!(
            finished.is_err().then_some(pieces.len()),
            expected_failure,
            "{pieces:x?}"
        );
    }

    /// Feeds a byte at a time; `fail_at` is the index of the first byte that must be rejected,
    /// `len` meaning "only at finish".
    fn check_fail_fast(bytes: &[u8], fail_at: Option<usize>) {
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        check(&pieces, fail_at);
        // The whole at once must agree with std.
        let mut v = Utf8Validator::new();
        let whole = v.feed(bytes).and_then(|()| v.finish());
        assert_eq!(whole.is_ok(), std::str::from_utf8(bytes).is_ok());
    }

    #[test]
    fn valid_text_in_every_split() {
        let text = "κόσμε Hello-µ@ßöäüàá-UTF-8!! 𝄞 \u{10FFFF}".as_bytes();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                check(&[&text[..a], &text[a..b], &text[b..]], None);
            }
        }
    }

    #[test]
    fn fail_fast_positions() {
        // Autobahn 6.3.1 / 6.4.1: "κόσμε" then 0xf4 0x90 (U+110000 and up) fails at the 0x90.
        check_fail_fast(
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited",
            Some(12),
        );
        // Overlong encodings fail at the first byte that makes them overlong.
        check_fail_fast(b"\xc0\xaf", Some(0));
        check_fail_fast(b"\xc1\xbf", Some(0));
        check_fail_fast(b"\xe0\x80\xaf", Some(1));
        check_fail_fast(b"\xf0\x80\x80\xaf", Some(1));
        // Surrogates U+D800..U+DFFF.
        check_fail_fast(b"a\xed\xa0\x80", Some(2));
        check_fail_fast(b"\xed\xbf\xbf", Some(1));
        // Above U+10FFFF and bytes that never occur.
        check_fail_fast(b"\xf4\x90\x80\x80", Some(1));
        check_fail_fast(b"\xf5", Some(0));
        check_fail_fast(b"\xfe", Some(0));
        check_fail_fast(b"\xff", Some(0));
        // A lone continuation byte, and a lead followed by a non-continuation.
        check_fail_fast(b"ab\x80", Some(2));
        check_fail_fast(b"\xe2\x82a", Some(2));
        // Truncated sequences fail only at the end of the message.
        check_fail_fast(b"\xe2\x82", Some(2));
        check_fail_fast(b"\xf0\x9d\x84", Some(3));
        // Boundaries that are valid.
        check_fail_fast(
            b"\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\x7f\xc2\x80",
            None,
        );
        check_fail_fast(b"", None);
    }

    #[test]
    fn code_point_split_across_pieces() {
        check(&[b"\xf0", b"\x9d", b"\x84", b"\x9e"], None);
        check(&[b"\xf0\x9d", b"", b"\x84\x9e!"], None);
        check(&[b"a\xe2", b"\x82\xacb\xce", b"\xba"], None);
        check(&[b"\xf0", b"\x9d", b"\x84"], Some(3));
        check(&[b"\xf0", b"\x9d", b"\x41"], Some(2));
        check(&[b"\xe0", b"\x80"], Some(1));
        check(&[b"\xc3", b"\xa9\xff"], Some(1));
    }

    #[test]
    fn finish_resets_for_the_next_message() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xe2\x82"), Ok(()));
        assert_eq!(v.finish(), Err(InvalidUtf8));
        assert_eq!(v.feed(b"ok"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }
}
