//! A connection's byte buffers and the per-worker pool they are borrowed from.
//!
//! Owns memory only: an idle connection holds no buffer at all; a connection takes one from the
//! pool when bytes are in flight and gives it back as soon as it has none. No I/O happens here:
//! a [`super::Transport`] reads into the space [`InputBuffer::space`] offers and writes what
//! [`Output::pending`] and [`Output::file_mut`] hold.

use crate::http::FileRegion;

/// Size of a pooled read buffer: a default request head (8 KiB) plus pipelined followers fit,
/// and a WebSocket stream of large messages is read 128 KiB per call. Measured with
/// `compare.sh ws16k` (server CPU per 16 KiB echo): 16 KiB reads cost 6.45 µs against 4.49 at
/// 64 KiB. Frames wait whole in the input, so the partial one at the end of a full buffer moves
/// to its front; at 64 KiB that was 16,360 of its 16,392 bytes every 3 messages, and 128 KiB
/// makes it every 7 (−8 % CPU); 256 KiB cost 20 % more. Only connections with bytes in flight
/// hold one.
pub const BUFFER_SIZE: usize = 128 * 1024;
/// Capacity a write buffer starts with.
const WRITE_BUFFER_SIZE: usize = 64 * 1024;
/// Buffers of each kind kept for reuse per worker (so at most 12 MiB idle in the pool); beyond
/// that they are freed. Only connections with bytes in flight across turns hold buffers, so a
/// worker rarely has more out at once.
const POOL_LIMIT: usize = 32;
/// Unconsumed input up to this size is kept in a buffer of its own size between reads, not in
/// a pooled one: a client that stops mid-head (a slow-loris) or mid-frame then holds a few
/// hundred bytes, not a 128 KiB buffer. The next read moves them back into a pooled one.
const SMALL_INPUT_MAX: usize = 4096;
/// The same, for a rest the client has stopped sending in the middle of (the socket was
/// drained): up to a quarter of a buffer moves out, so a stalled client never holds more than
/// four times what it sent. Not while more input waits: the next read would move it back.
const PAUSED_INPUT_MAX: usize = BUFFER_SIZE / 4;
/// A write buffer that grew past this is freed, not pooled. A connection's answers accumulate up
/// to 128 KiB before a write (`FLUSH_AT`), plus one more answer (a 64 KiB cached file, a
/// WebSocket frame), so a busy connection's buffer of 256 KiB is kept.
const POOLED_CAPACITY_MAX: usize = 4 * WRITE_BUFFER_SIZE;

/// Free buffers of one worker. Read buffers are kept zero-initialised to their full length so
/// that `read` can be handed a plain slice; write buffers are kept empty with their capacity.
#[derive(Default)]
pub struct Pool {
    read: Vec<Vec<u8>>,
    write: Vec<Vec<u8>>,
}

impl Pool {
    fn take_read(&mut self) -> Vec<u8> {
        self.read.pop().unwrap_or_else(|| vec![0; BUFFER_SIZE])
    }

    fn give_read(&mut self, buf: Vec<u8>) {
        if self.read.len() < POOL_LIMIT && buf.len() == BUFFER_SIZE {
            self.read.push(buf);
        }
    }

    fn take_write(&mut self) -> Vec<u8> {
        self.write
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(WRITE_BUFFER_SIZE))
    }

    fn give_write(&mut self, mut buf: Vec<u8>) {
        if self.write.len() < POOL_LIMIT && buf.capacity() <= POOLED_CAPACITY_MAX {
            buf.clear();
            self.write.push(buf);
        }
    }

    /// Read and write buffers held for reuse.
    pub fn held(&self) -> (usize, usize) {
        (self.read.len(), self.write.len())
    }
}

/// What one read from the peer saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filled {
    /// Bytes appended.
    pub bytes: usize,
    /// The peer has nothing more for now (on a socket: WouldBlock, or a short read, which on
    /// TCP means the receive queue was emptied; new data brings a new edge).
    pub drained: bool,
    /// The peer closed its sending side.
    pub eof: bool,
}

/// Received bytes not yet consumed by a protocol: `data[start..end]`. While bytes arrive,
/// `data` is a pooled buffer of at least [`BUFFER_SIZE`]; between reads it is empty, or a
/// buffer just the size of a small unconsumed rest (see [`InputBuffer::settle`]).
#[derive(Default)]
pub struct InputBuffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl InputBuffer {
    /// The unconsumed bytes.
    pub fn bytes(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or_default()
    }

    /// The unconsumed bytes, writable (the WebSocket layer unmasks in place).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.data.get_mut(self.start..self.end).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops everything unconsumed.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Free space to read into, taking a buffer from the pool if none is held, moving the
    /// unconsumed bytes to the front or growing the buffer (up to `max` bytes) when it is
    /// full. Empty when `max` unconsumed bytes are held: the protocol decides what that means.
    pub fn space(&mut self, pool: &mut Pool, max: usize) -> &mut [u8] {
        if self.data.len() < BUFFER_SIZE {
            let small = std::mem::replace(&mut self.data, pool.take_read());
            let rest = small.get(self.start..self.end).unwrap_or_default();
            self.data[..rest.len()].copy_from_slice(rest);
            self.start = 0;
            self.end = rest.len();
        }
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < max {
                let grown = (self.data.len() * 2).clamp(BUFFER_SIZE, max);
                self.data.resize(grown, 0);
            }
        }
        self.data.get_mut(self.end..).unwrap_or_default()
    }

    /// Records that `n` bytes were written into the start of [`InputBuffer::space`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Appends `bytes` (as much as fits under `max`); returns how many were taken.
    pub fn push(&mut self, bytes: &[u8], pool: &mut Pool, max: usize) -> usize {
        let mut taken = 0;
        while taken < bytes.len() {
            let space = self.space(pool, max);
            let n = space.len().min(bytes.len() - taken);
            if n == 0 {
                break;
            }
            space[..n].copy_from_slice(&bytes[taken..taken + n]);
            self.filled(n);
            taken += n;
        }
        taken
    }

    /// Between reads: returns the pooled buffer when nothing is left in it, and moves a small
    /// rest into a buffer of its own size (so a stalled client holds little more than what it
    /// sent). `paused`: the peer has nothing more for now (the socket was drained).
    pub fn settle(&mut self, pool: &mut Pool, paused: bool) {
        let rest = self.end - self.start;
        if rest == 0 {
            self.clear();
            pool.give_read(std::mem::take(&mut self.data));
            return;
        }
        let small = if paused {
            PAUSED_INPUT_MAX
        } else {
            SMALL_INPUT_MAX
        };
        if self.data.len() < BUFFER_SIZE || rest > small {
            return;
        }
        let kept = self.bytes().to_vec();
        pool.give_read(std::mem::replace(&mut self.data, kept));
        self.start = 0;
        self.end = rest;
    }

    /// Gives the buffer back (the connection is closing): what it holds is dropped.
    pub fn release(&mut self, pool: &mut Pool) {
        self.clear();
        self.settle(pool, true);
        self.data = Vec::new();
    }

    /// Whether a buffer is held.
    pub fn holds_buffer(&self) -> bool {
        !self.data.is_empty()
    }

    /// Bytes of memory held.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }
}

/// Bytes and at most one file region waiting to be written, in that order.
#[derive(Default)]
pub struct Output {
    buf: Vec<u8>,
    pos: usize,
    file: Option<FileRegion>,
}

impl Output {
    /// The buffer to append to (taken from the pool when none is held).
    pub fn buf(&mut self, pool: &mut Pool) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            self.buf = pool.take_write();
        }
        &mut self.buf
    }

    /// Queues a file region to follow the buffered bytes. Only one may be queued at a time;
    /// the connection stops producing responses while one is pending.
    pub fn set_file(&mut self, region: FileRegion) {
        self.file = Some(region);
    }

    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// Bytes still buffered (not counting a file region).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.buffered() == 0 && self.file.is_none()
    }

    /// The buffered bytes not yet written.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Records that the first `n` pending bytes were written. Written bytes are dropped from
    /// the front once they outweigh the pending ones, so a client that keeps reading a little
    /// while it pipelines a lot holds at most about twice the pending bytes, not everything
    /// it was ever sent (each byte is moved at most once per doubling: amortised O(1)).
    pub fn advance(&mut self, n: usize) {
        self.pos += n.min(self.buffered());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= self.buffered() {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
            self.pos = 0;
        }
    }

    /// The file region to send once no bytes are pending.
    pub fn file_mut(&mut self) -> Option<&mut FileRegion> {
        if self.buffered() > 0 {
            return None;
        }
        self.file.as_mut()
    }

    /// Drops the file region once its offset has reached its end.
    pub fn file_sent(&mut self) {
        if self.file.as_ref().is_some_and(|f| f.offset >= f.end) {
            self.file = None;
        }
    }

    /// Drops everything not yet written (the connection is being closed).
    pub fn discard(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.file = None;
    }

    /// Returns the buffer to the pool if nothing is left in it.
    pub fn release_if_empty(&mut self, pool: &mut Pool) {
        if self.buffered() == 0 && self.buf.capacity() > 0 {
            self.pos = 0;
            pool.give_write(std::mem::take(&mut self.buf));
        }
    }

    /// Whether a buffer is held.
    pub fn holds_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_compacts_then_grows_up_to_its_maximum() {
        let mut pool = Pool::default();
        let mut input = InputBuffer::default();
        assert_eq!(input.space(&mut pool, BUFFER_SIZE).len(), BUFFER_SIZE);
        input.filled(BUFFER_SIZE);
        input.consume(10);
        // Full with a consumed front: the rest moves to the front, 10 bytes are free.
        assert_eq!(input.space(&mut pool, BUFFER_SIZE).len(), 10);
        input.filled(10);
        // Full and nothing consumed: it grows only while under the maximum.
        assert!(input.space(&mut pool, BUFFER_SIZE).is_empty());
        assert_eq!(input.space(&mut pool, BUFFER_SIZE + 5).len(), 5);
        assert_eq!(input.bytes().len(), BUFFER_SIZE);
    }

    #[test]
    fn push_takes_what_fits() {
        let mut pool = Pool::default();
        let mut input = InputBuffer::default();
        let bytes = vec![7u8; BUFFER_SIZE + 100];
        assert_eq!(
            input.push(&bytes, &mut pool, BUFFER_SIZE + 50),
            BUFFER_SIZE + 50
        );
        assert_eq!(input.bytes(), &bytes[..BUFFER_SIZE + 50]);
    }

    #[test]
    fn buffers_go_back_to_the_pool_when_empty() {
        let mut pool = Pool::default();
        let mut input = InputBuffer::default();
        let mut output = Output::default();
        input.push(b"abc", &mut pool, BUFFER_SIZE);
        output.buf(&mut pool).extend_from_slice(b"xyz");
        output.release_if_empty(&mut pool);
        assert_eq!(pool.held(), (0, 0));
        input.consume(3);
        output.advance(3);
        input.settle(&mut pool, false);
        output.release_if_empty(&mut pool);
        assert_eq!(pool.held(), (1, 1));
        assert!(!input.holds_buffer() && !output.holds_buffer());
    }

    #[test]
    fn written_bytes_do_not_accumulate_while_the_output_is_never_drained() {
        let mut pool = Pool::default();
        let mut output = Output::default();
        // A peer that takes 3 of every 4 KiB appended: the buffer is never empty.
        let mut sent = Vec::new();
        for round in 0..1000u32 {
            let bytes = [round as u8; 4096];
            output.buf(&mut pool).extend_from_slice(&bytes);
            sent.extend_from_slice(&bytes);
            output.advance(3072);
        }
        let pending = output.buffered();
        assert_eq!(pending, 1000 * 1024);
        assert!(
            output.buf.len() <= 2 * pending,
            "{} bytes held",
            output.buf.len()
        );
        // What is pending is intact and in order.
        assert!(output.pending() == &sent[sent.len() - pending..]);
        let mut small = Output::default();
        for _ in 0..1000 {
            small.buf(&mut pool).extend_from_slice(&[1; 100]);
            small.advance(99);
        }
        assert_eq!(small.buffered(), 1000);
        assert!(small.buf.len() <= 2000, "{} bytes held", small.buf.len());
    }

    #[test]
    fn a_small_rest_is_kept_in_a_buffer_of_its_own_size() {
        let mut pool = Pool::default();
        let mut input = InputBuffer::default();
        input.push(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HT",
            &mut pool,
            BUFFER_SIZE,
        );
        input.consume(27);
        input.settle(&mut pool, false);
        // The pooled buffer went back; the rest sits in a small one.
        assert_eq!(pool.held(), (1, 0));
        assert_eq!(input.bytes(), b"GET /next HT");
        assert!(input.holds_buffer() && input.data.capacity() < 64);
        // The next read moves it back into a pooled buffer, in front of the new bytes.
        assert_eq!(input.push(b"TP/1.1\r\n", &mut pool, BUFFER_SIZE), 8);
        assert_eq!(pool.held(), (0, 0));
        assert_eq!(input.bytes(), b"GET /next HTTP/1.1\r\n");
        // A larger rest stays where it is while more input waits...
        input.push(&[b'x'; SMALL_INPUT_MAX], &mut pool, BUFFER_SIZE);
        input.settle(&mut pool, false);
        assert_eq!(input.data.len(), BUFFER_SIZE);
        // ...and moves out once the peer has paused, up to a quarter of a buffer.
        input.settle(&mut pool, true);
        assert_eq!(pool.held(), (1, 0));
        assert_eq!(input.data.len(), SMALL_INPUT_MAX + 20);
        input.push(&vec![b'y'; PAUSED_INPUT_MAX], &mut pool, BUFFER_SIZE);
        input.settle(&mut pool, true);
        assert_eq!(input.data.len(), BUFFER_SIZE);
        input.release(&mut pool);
        assert_eq!(pool.held(), (1, 0));
        assert!(!input.holds_buffer());
    }
}
