//! The connection's [`Transport`] over a TCP socket: reads into the connection's input buffer,
//! writes its output with `send` and its file regions with `sendfile`.
//!
//! Knows nothing of protocols: it moves the bytes the connection asks it to move, and tells
//! the connection what the socket accepted.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;

use crate::conn::{Filled, InputBuffer, Output, Pool, Transport, Written};
use crate::http::FileRegion;

/// A connection's socket, borrowed for one drive.
pub struct Socket<'s>(pub &'s TcpStream);

impl Transport for Socket<'_> {
    /// Reads until the socket is drained, the peer closes, or `max` unconsumed bytes are held.
    fn read(&mut self, input: &mut InputBuffer, pool: &mut Pool, max: usize) -> io::Result<Filled> {
        let mut filled = Filled::default();
        loop {
            let space = input.space(pool, max);
            if space.is_empty() {
                return Ok(filled);
            }
            let room = space.len();
            match self.0.read(space) {
                Ok(0) => {
                    filled.eof = true;
                    filled.drained = true;
                    return Ok(filled);
                }
                Ok(n) => {
                    input.filled(n);
                    filled.bytes += n;
                    // A short read on TCP means the receive queue was emptied.
                    if n < room {
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

    /// Writes buffered bytes, then the file region, until done or the socket is full.
    ///
    /// Bytes followed by a file region are written with MSG_MORE, so a head and the start of
    /// its sendfile body share segments (nginx's tcp_nopush, without its two TCP_CORK calls);
    /// the client's stack then handles fewer packets per byte.
    ///
    /// With `last` the final write carries MSG_MORE too, so the kernel holds the bytes back for
    /// the instant until the FIN is added and both leave in one segment (one packet less per
    /// closed connection for both TCP stacks; `compare.sh close`).
    fn write(&mut self, output: &mut Output, last: bool) -> io::Result<Written> {
        write(self.0, output, last, &mut 0)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.0.shutdown(std::net::Shutdown::Write)
    }

    fn peer(&self) -> Option<std::net::SocketAddr> {
        self.0.peer_addr().ok()
    }
}

/// [`Socket::write`], also for a socket whose kernel does TLS: `hold_last` sends the last
/// bytes with MSG_MORE; `calls` counts the sends and sendfiles that moved bytes.
pub(super) fn write(
    stream: &TcpStream,
    output: &mut Output,
    hold_last: bool,
    calls: &mut u64,
) -> io::Result<Written> {
    let mut written = Written::default();
    while !output.pending().is_empty() {
        let pending = output.pending();
        let sent = if hold_last || output.has_file() {
            crate::sys::send_more(stream, pending)
        } else {
            (&*stream).write(pending)
        };
        match sent {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *calls += 1;
                let short = n < pending.len();
                output.advance(n);
                written.bytes += n as u64;
                if short {
                    return Ok(written);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    while let Some(FileRegion { file, offset, end }) = output.file_mut() {
        // sendfile moves at most 0x7ffff000 bytes per call.
        let count = (*end - *offset).min(0x7fff_f000) as usize;
        match crate::sys::sendfile(stream.as_fd(), file.as_fd(), offset, count) {
            // The file shrank under us: the promised length cannot be kept.
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                *calls += 1;
                written.bytes += n as u64;
                output.file_sent();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
            Err(e) => return Err(e),
        }
    }
    written.all = true;
    Ok(written)
}
