//! Request-body skipping: finds where a request body ends so the next pipelined request can be read.
//!
//! This file owns the Content-Length and chunked (RFC 9112 §7.1) body grammars as a resumable
//! state machine. It never keeps body bytes, never allocates, and accepts any split of the input.

use super::{BodyFraming, RequestError};

/// The longest chunk-size line (with extensions), and the longest trailer section.
const MAX_LINE: u32 = 4096;

/// Reads and discards one request body, a buffer at a time.
#[derive(Debug)]
pub struct BodySkipper {
    state: State,
    /// How much more chunk data the body may carry: `max_body` less what was announced.
    allowance: u64,
    /// Bytes of the current chunk-size line, or of the whole trailer section.
    line: u32,
}

/// What [`BodySkipper::skip`] did with a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Skip {
    /// The body goes on; `consumed` bytes (all of the buffer) belonged to it.
    NeedMore { consumed: usize },
    /// The body ended after `consumed` bytes; the rest of the buffer is the next request.
    Done { consumed: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Fixed { remaining: u64 },
    SizeStart,
    Size { size: u64 },
    Extension { size: u64 },
    SizeLf { size: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

impl BodySkipper {
    /// A skipper for a body framed as `framing`; None when there is no body to skip.
    pub fn new(framing: BodyFraming, max_body: u64) -> Option<BodySkipper> {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => return None,
            BodyFraming::Length(length) => State::Fixed { remaining: length },
            BodyFraming::Chunked => State::SizeStart,
        };
        Some(BodySkipper {
            state,
            allowance: max_body,
            line: 0,
        })
    }

    /// Consumes the bytes of `buf` that belong to the body.
    pub fn skip(&mut self, buf: &[u8]) -> Result<Skip, RequestError> {
        let mut pos = 0;
        while self.state != State::Done {
            let rest = buf.get(pos..).unwrap_or_default();
            let Some(&byte) = rest.first() else {
                return Ok(Skip::NeedMore { consumed: pos });
            };
            match self.state {
                State::Fixed { remaining } | State::Data { remaining } => {
                    let taken = remaining.min(rest.len() as u64);
                    pos += taken as usize;
                    self.state = match (self.state, remaining - taken) {
                        (State::Fixed { .. }, 0) => State::Done,
                        (State::Fixed { .. }, left) => State::Fixed { remaining: left },
                        (_, 0) => State::DataCr,
                        (_, left) => State::Data { remaining: left },
                    };
                }
                _ => {
                    self.step(byte)?;
                    pos += 1;
                }
            }
        }
        Ok(Skip::Done { consumed: pos })
    }

    /// Advances over one byte of a chunk-size line, a data terminator or the trailer section.
    fn step(&mut self, byte: u8) -> Result<(), RequestError> {
        let bad = RequestError::BadRequest;
        if self.state != State::DataCr && self.state != State::DataLf {
            self.line += 1;
            if self.line > MAX_LINE {
                return Err(bad("chunk line or trailer too long"));
            }
        }
        self.state = match (self.state, byte) {
            // chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; chunk-size = 1*HEXDIG
            (State::SizeStart, _) => State::Size {
                size: self.push_digit(0, byte)?,
            },
            (State::Size { size }, _) if byte.is_ascii_hexdigit() => State::Size {
                size: self.push_digit(size, byte)?,
            },
            // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
            (State::Size { size }, b';' | b' ' | b'\t') => State::Extension { size },
            (State::Size { size } | State::Extension { size }, b'\r') => State::SizeLf { size },
            (State::Size { .. }, _) => return Err(bad("invalid chunk size")),
            (State::Extension { size }, _) if is_field_byte(byte) => State::Extension { size },
            (State::SizeLf { size: 0 }, b'\n') => {
                self.line = 0;
                State::TrailerStart
            }
            (State::SizeLf { size }, b'\n') => {
                self.allowance = self.allowance.saturating_sub(size);
                State::Data { remaining: size }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.line = 0;
                State::SizeStart
            }
            // trailer-section = *( field-line CRLF ), then the final CRLF.
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart, _) if is_token_byte(byte) => State::TrailerLine,
            (State::TrailerLine, b'\r') => State::TrailerLf,
            (State::TrailerLine, _) if is_field_byte(byte) => State::TrailerLine,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            (State::DataCr | State::DataLf, _) => {
                return Err(bad("chunk data not followed by CRLF"))
            }
            _ => return Err(bad("malformed chunked body")),
        };
        Ok(())
    }

    /// Appends one hex digit to a chunk size, refusing sizes beyond what `max_body` leaves.
    fn push_digit(&self, size: u64, byte: u8) -> Result<u64, RequestError> {
        let digit = (byte as char)
            .to_digit(16)
            .ok_or(RequestError::BadRequest("invalid chunk size"))?;
        let size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)))
            .ok_or(RequestError::BadRequest("chunk size overflows"))?;
        if size > self.allowance {
            return Err(RequestError::PayloadTooLarge);
        }
        Ok(size)
    }
}

/// RFC 9110 §5.5: field-vchar, SP and HTAB (obs-text included).
fn is_field_byte(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || (0x21..=0x7e).contains(&byte) || byte >= 0x80
}

/// RFC 9110 §5.6.2: tchar.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNKED: &[u8] =
        b"4\r\nWiki\r\n5;name=\"v a\"\r\npedia\r\nE \r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX: y\r\n\r\n";

    fn skipper(framing: BodyFraming) -> BodySkipper {
        match BodySkipper::new(framing, 1 << 20) {
            Some(skipper) => skipper,
            None => panic!("no skipper for {framing:?}"),
        }
    }

    /// Feeds `input` in one piece and then split at every byte; the body must end at `body_len`.
    fn check(framing: BodyFraming, input: &[u8], body_len: usize) {
        assert_eq!(
            skipper(framing).skip(input),
            Ok(Skip::Done { consumed: body_len })
        );
        for split in 0..=body_len {
            let mut s = skipper(framing);
            let expected_first = if split == body_len {
                Skip::Done { consumed: split }
            } else {
                Skip::NeedMore { consumed: split }
            };
            assert_eq!(s.skip(&input[..split]), Ok(expected_first), "split {split}");
            if split < body_len {
                assert_eq!(
                    s.skip(&input[split..]),
                    Ok(Skip::Done {
                        consumed: body_len - split
                    }),
                    "split {split}"
                );
            }
        }
        // One byte at a time.
        let mut s = skipper(framing);
        for (i, byte) in input[..body_len].iter().enumerate() {
            let expected = if i + 1 == body_len {
                Skip::Done { consumed: 1 }
            } else {
                Skip::NeedMore { consumed: 1 }
            };
            assert_eq!(s.skip(std::slice::from_ref(byte)), Ok(expected), "byte {i}");
        }
    }

    fn check_err(input: &[u8], max_body: u64, expected: RequestError) {
        let Some(mut s) = BodySkipper::new(BodyFraming::Chunked, max_body) else {
            panic!("no skipper");
        };
        assert_eq!(
            s.skip(input),
            Err(expected),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn no_body_no_skipper() {
        assert!(BodySkipper::new(BodyFraming::None, 10).is_none());
        assert!(BodySkipper::new(BodyFraming::Length(0), 10).is_none());
    }

    #[test]
    fn fixed_length() {
        check(BodyFraming::Length(5), b"helloGET / HTTP/1.1\r\n", 5);
        check(BodyFraming::Length(1), b"x", 1);
        let mut s = skipper(BodyFraming::Length(5));
        assert_eq!(s.skip(b""), Ok(Skip::NeedMore { consumed: 0 }));
        assert_eq!(s.skip(b"ab"), Ok(Skip::NeedMore { consumed: 2 }));
        assert_eq!(s.skip(b"cdef"), Ok(Skip::Done { consumed: 3 }));
        assert_eq!(s.skip(b"more"), Ok(Skip::Done { consumed: 0 }));
    }

    #[test]
    fn chunked_at_every_split() {
        let mut input = CHUNKED.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        check(BodyFraming::Chunked, &input, CHUNKED.len());
        check(BodyFraming::Chunked, b"0\r\n\r\n", 5);
        check(
            BodyFraming::Chunked,
            b"00a\r\n0123456789\r\n000\r\n\r\n",
            24,
        );
        check(BodyFraming::Chunked, b"1;a;b=c\r\nx\r\n0;last\r\n\r\n", 22);
    }

    #[test]
    fn chunked_malformed() {
        let bad = RequestError::BadRequest;
        check_err(b"g\r\n", 100, bad("invalid chunk size"));
        check_err(b"\r\n", 100, bad("invalid chunk size"));
        check_err(b"-1\r\n", 100, bad("invalid chunk size"));
        check_err(b"1x\r\n", 100, bad("invalid chunk size"));
        check_err(b"1\n", 100, bad("invalid chunk size"));
        check_err(b"1\rx", 100, bad("malformed chunked body"));
        check_err(b"1;a\nx", 100, bad("malformed chunked body"));
        check_err(b"1;\x00\r\n", 100, bad("malformed chunked body"));
        check_err(b"1\r\nxy\r\n", 100, bad("chunk data not followed by CRLF"));
        check_err(
            b"1\r\nx\n0\r\n\r\n",
            100,
            bad("chunk data not followed by CRLF"),
        );
        check_err(
            b"1\r\nx\r0\r\n\r\n",
            100,
            bad("chunk data not followed by CRLF"),
        );
        check_err(b"0\r\n\n", 100, bad("malformed chunked body"));
        check_err(b"0\r\n\rx", 100, bad("malformed chunked body"));
        check_err(b"0\r\n folded\r\n\r\n", 100, bad("malformed chunked body"));
        check_err(b"0\r\nX: \x01\r\n\r\n", 100, bad("malformed chunked body"));
        check_err(b"0\r\nX: y\n\r\n", 100, bad("malformed chunked body"));
        check_err(
            b"10000000000000000\r\n",
            u64::MAX,
            bad("chunk size overflows"),
        );
        let mut long_extension = b"1;".to_vec();
        long_extension.extend_from_slice(&vec![b'a'; MAX_LINE as usize]);
        check_err(&long_extension, 100, bad("chunk line or trailer too long"));
        let mut long_trailer = b"0\r\n".to_vec();
        for _ in 0..1000 {
            long_trailer.extend_from_slice(b"X: y\r\n");
        }
        check_err(&long_trailer, 100, bad("chunk line or trailer too long"));
    }

    #[test]
    fn chunked_size_limit() {
        // Exactly max_body is fine; one more byte, in the same chunk or a later one, is 413.
        let mut s = BodySkipper::new(BodyFraming::Chunked, 5);
        assert_eq!(
            s.as_mut().map(|s| s.skip(b"5\r\nhello\r\n0\r\n\r\n")),
            Some(Ok(Skip::Done { consumed: 15 }))
        );
        check_err(b"6\r\n", 5, RequestError::PayloadTooLarge);
        check_err(b"3\r\nabc\r\n3\r\n", 5, RequestError::PayloadTooLarge);
        check_err(
            b"ffffffffffffffffffff\r\n",
            1 << 20,
            RequestError::PayloadTooLarge,
        );
        // Leading zeros do not count as data.
        let mut s = BodySkipper::new(BodyFraming::Chunked, 5);
        assert_eq!(
            s.as_mut().map(|s| s.skip(b"00005\r\nhello\r\n0\r\n\r\n")),
            Some(Ok(Skip::Done { consumed: 19 }))
        );
    }
}
