//! An in-memory peer for a [`Conn`](super::Conn): the transport of unit tests and fuzzing.
//!
//! It plays a client's socket: bytes queued for the server arrive in reads of a chosen size,
//! what the server writes is collected (a file region as a `<file start-end>` marker, since
//! nothing here opens or reads a file), and it can refuse writes to play a client that does not
//! read. No I/O happens here.

use std::io;
use std::net::SocketAddr;

use super::{Filled, InputBuffer, Output, Pool, Transport, Written};

/// A client's end of a connection, in memory.
#[derive(Debug, Default)]
pub struct Peer {
    /// Bytes sent by the client and not yet read by the server.
    pub inbox: Vec<u8>,
    /// Most bytes one read hands over (0: all that is there).
    pub read_size: usize,
    /// The client has closed its sending side (seen once the inbox is empty).
    pub closed: bool,
    /// Everything the server wrote, in order.
    pub received: Vec<u8>,
    /// Bytes the server may still write before the client's window is full (None: no limit).
    pub window: Option<usize>,
    /// The server shut its write side.
    pub shut: bool,
}

impl Peer {
    /// A peer whose reads hand over at most `read_size` bytes each (0: everything).
    pub fn new(read_size: usize) -> Peer {
        Peer {
            read_size,
            ..Peer::default()
        }
    }

    /// The client sends `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.inbox.extend_from_slice(bytes);
    }

    /// Takes what the server wrote so far.
    pub fn take_received(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.received)
    }

    fn take_window(&mut self, want: usize) -> usize {
        match &mut self.window {
            None => want,
            Some(left) => {
                let n = want.min(*left);
                *left -= n;
                n
            }
        }
    }
}

impl Transport for Peer {
    fn read(&mut self, input: &mut InputBuffer, pool: &mut Pool, max: usize) -> io::Result<Filled> {
        let mut filled = Filled::default();
        let chunk = match self.read_size {
            0 => self.inbox.len(),
            size => size.min(self.inbox.len()),
        };
        let taken = input.push(&self.inbox[..chunk], pool, max);
        self.inbox.drain(..taken);
        filled.bytes = taken;
        filled.drained = self.inbox.is_empty();
        filled.eof = self.closed && self.inbox.is_empty() && taken == 0;
        Ok(filled)
    }

    fn write(&mut self, output: &mut Output, _last: bool) -> io::Result<Written> {
        let pending = output.pending().len();
        let n = self.take_window(pending);
        self.received.extend_from_slice(&output.pending()[..n]);
        output.advance(n);
        let mut written = Written {
            bytes: n as u64,
            all: false,
        };
        if n < pending {
            return Ok(written);
        }
        if let Some(region) = output.file_mut() {
            let len = region.end - region.offset;
            let n = self.take_window(usize::try_from(len).unwrap_or(usize::MAX)) as u64;
            let marker = format!("<file {}-{}>", region.offset, region.offset + n);
            self.received.extend_from_slice(marker.as_bytes());
            region.offset += n;
            written.bytes += n;
            output.file_sent();
            if n < len {
                return Ok(written);
            }
        }
        written.all = true;
        Ok(written)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shut = true;
        Ok(())
    }

    fn peer(&self) -> Option<SocketAddr> {
        Some(SocketAddr::from(([192, 0, 2, 1], 40000)))
    }
}
