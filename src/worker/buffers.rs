//! Connection byte buffers and the per-worker pool they are borrowed from.
//!
//! Owns memory only: an idle connection holds no buffer at all; a connection takes one from the
//! pool when bytes are in flight and gives it back as soon as it has none. Knows nothing of
//! protocols; the only I/O here is `read`/`write` on a socket handed in by the caller.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Size of a pooled buffer: a default request head (8 KiB) plus pipelined followers fit, and a
/// WebSocket stream of large messages is read 64 KiB per call (measured with compare.sh ws16k:
/// 4.49 µs of server CPU per 16 KiB echo with 64 KiB reads, 6.45 µs with 16 KiB reads).
/// Only connections with bytes in flight hold one.
pub const BUFFER_SIZE: usize = 64 * 1024;
/// Buffers of each kind kept for reuse per worker (so at most 10 MiB idle in the pool); beyond
/// that they are freed. Only connections with bytes in flight across turns hold buffers, so a
/// worker rarely has more out at once.
const POOL_LIMIT: usize = 32;
/// A write buffer that grew past this is freed, not pooled. A connection's answers accumulate up
/// to 128 KiB before a write (connection.rs FLUSH_AT), plus one more answer (a 64 KiB cached
/// file, a WebSocket frame), so a busy connection's buffer of 256 KiB is kept.
const POOLED_CAPACITY_MAX: usize = 4 * BUFFER_SIZE;

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
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE))
    }

    /// Read and write buffers held for reuse.
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize) {
        (self.read.len(), self.write.len())
    }

    fn give_write(&mut self, mut buf: Vec<u8>) {
        if self.write.len() < POOL_LIMIT && buf.capacity() <= POOLED_CAPACITY_MAX {
            buf.clear();
            self.write.push(buf);
        }
    }
}

/// What one [`InputBuffer::fill`] call saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filled {
    /// Bytes appended.
    pub bytes: usize,
    /// The socket has nothing more for now (WouldBlock, or a short read, which on TCP means the
    /// receive queue was emptied; new data brings a new edge).
    pub drained: bool,
    /// The peer closed its sending side.
    pub eof: bool,
}

/// Received bytes not yet consumed by a protocol: `data[start..end]`.
#[derive(Default)]
pub struct InputBuffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl InputBuffer {
    /// The unconsumed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The unconsumed bytes, writable (the WebSocket layer unmasks in place).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
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

    /// Reads until the socket is drained, the peer closes, or `max` unconsumed bytes are held.
    /// The caller stops asking once it holds `max` bytes: the protocol decides what that means.
    pub fn fill(&mut self, stream: &TcpStream, pool: &mut Pool, max: usize) -> io::Result<Filled> {
        let mut filled = Filled::default();
        if self.data.is_empty() {
            self.data = pool.take_read();
        }
        loop {
            if self.end == self.data.len() {
                if self.start > 0 {
                    self.data.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else if self.data.len() < max {
                    let grown = (self.data.len() * 2).clamp(BUFFER_SIZE, max);
                    self.data.resize(grown, 0);
                } else {
                    return Ok(filled);
                }
            }
            let space = self.data.len() - self.end;
            match (&*stream).read(&mut self.data[self.end..]) {
                Ok(0) => {
                    filled.eof = true;
                    filled.drained = true;
                    return Ok(filled);
                }
                Ok(n) => {
                    self.end += n;
                    filled.bytes += n;
                    if n < space {
                        filled.drained = true;
                        return Ok(filled);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    filled.drained = true;
                    return Ok(filled);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Returns the buffer to the pool if nothing is left in it.
    pub fn release_if_empty(&mut self, pool: &mut Pool) {
        if self.is_empty() && !self.data.is_empty() {
            pool.give_read(std::mem::take(&mut self.data));
        }
    }
}

/// A region of an open file still to be sent with sendfile after the buffered bytes.
pub struct FileTail {
    /// Shared with the file cache: sendfile is given its own offset, never the file position.
    pub file: std::rc::Rc<std::fs::File>,
    pub offset: u64,
    pub end: u64,
}

/// Bytes and at most one file region waiting to be written, in that order.
#[derive(Default)]
pub struct Output {
    buf: Vec<u8>,
    pos: usize,
    file: Option<FileTail>,
}

/// What one [`Output::flush`] call achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was handed to the kernel.
    All,
    /// The socket is full; wait for the write edge.
    Blocked,
}

impl Output {
    /// The buffer to append a response to (taken from the pool when none is held).
    pub fn buf(&mut self, pool: &mut Pool) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            self.buf = pool.take_write();
        }
        &mut self.buf
    }

    /// Queues a file region to follow the buffered bytes. Only one may be queued at a time;
    /// the caller stops producing responses while one is pending.
    pub fn set_file(&mut self, tail: FileTail) {
        self.file = Some(tail);
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

    /// Writes buffered bytes, then the file region, until done or the socket is full.
    /// `sent` grows by the bytes handed to the kernel.
    ///
    /// Bytes followed by a file region are written with MSG_MORE, so a head and the start of
    /// its sendfile body share segments (nginx's tcp_nopush, without its two TCP_CORK calls);
    /// the client's stack then handles fewer packets per byte.
    ///
    /// `last` promises that the caller closes or shuts down the socket as soon as this returns
    /// [`Flushed::All`]: the final write then carries MSG_MORE too, so the kernel holds the
    /// bytes back for the instant until the FIN is added and both leave in one segment (one
    /// packet less per closed connection for both TCP stacks; `compare.sh close`).
    pub fn flush(&mut self, stream: &TcpStream, sent: &mut u64, last: bool) -> io::Result<Flushed> {
        while self.pos < self.buf.len() {
            let pending = &self.buf[self.pos..];
            let written = if last || self.file.is_some() {
                crate::sys::send_more(stream, pending)
            } else {
                (&*stream).write(pending)
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pos += n;
                    *sent += n as u64;
                    if n < pending.len() {
                        return Ok(Flushed::Blocked);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.pos = 0;
        if let Some(tail) = &mut self.file {
            use std::os::fd::AsFd;
            while tail.offset < tail.end {
                // sendfile moves at most 0x7ffff000 bytes per call.
                let count = (tail.end - tail.offset).min(0x7fff_f000) as usize;
                match crate::sys::sendfile(
                    stream.as_fd(),
                    tail.file.as_fd(),
                    &mut tail.offset,
                    count,
                ) {
                    // The file shrank under us: the promised length cannot be kept.
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => *sent += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                    Err(e) => return Err(e),
                }
            }
            self.file = None;
        }
        Ok(Flushed::All)
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
}
