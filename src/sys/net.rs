//! Sockets: SO_REUSEPORT listeners, non-blocking accept and sendfile.
//!
//! Owns the system calls that create and feed TCP sockets. It must never read or write
//! protocol bytes, classify accept errors or decide when to retry `WouldBlock`: that is the
//! worker's job.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::retry_interrupted;

/// What the kernel's listen backlog defaults to when /proc cannot be read (Linux ≥ 5.4).
const DEFAULT_SOMAXCONN: i32 = 4096;

/// A listening TCP socket with SO_REUSEADDR and SO_REUSEPORT, non-blocking, CLOEXEC,
/// IPV6_V6ONLY on for v6 (like nginx), bound and listening with `backlog`.
pub fn reuseport_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let kind = Type::STREAM.nonblocking().cloexec();
    let socket = Socket::new(Domain::for_address(addr), kind, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// The congestion control algorithm of `socket` (TCP_CONGESTION). A listener's passes to the
/// connections it accepts.
pub fn congestion_control(socket: &impl AsFd) -> io::Result<String> {
    let name = socket2::SockRef::from(socket).tcp_congestion()?;
    Ok(String::from_utf8_lossy(&name)
        .trim_end_matches('\0')
        .to_owned())
}

/// Sets the congestion control algorithm of `socket` (TCP_CONGESTION): ENOENT when the kernel
/// has no such algorithm, EPERM when it is not in net.ipv4.tcp_allowed_congestion_control
/// and the process lacks CAP_NET_ADMIN.
pub fn set_congestion_control(socket: &impl AsFd, name: &str) -> io::Result<()> {
    socket2::SockRef::from(socket).set_tcp_congestion(name.as_bytes())
}

/// net.ipv4.tcp_congestion_control: the algorithm new sockets get, if it can be read.
pub fn default_congestion_control() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").ok()?;
    Some(name.trim().to_owned()).filter(|name| !name.is_empty())
}

/// net.ipv4.tcp_`which`_congestion_control (`available` or `allowed`): the algorithms as
/// the kernel lists them, space-separated.
pub fn congestion_controls(which: &str) -> Option<String> {
    let path = format!("/proc/sys/net/ipv4/tcp_{which}_congestion_control");
    Some(fs::read_to_string(path).ok()?.trim().to_owned())
}

/// A listening socket handed over by a service manager (systemd's socket activation).
#[derive(Debug)]
pub struct InheritedListener {
    pub socket: TcpListener,
    pub addr: SocketAddr,
    /// It has SO_REUSEPORT (`ReusePort=yes`), so more sockets can join it on its address.
    pub reuse_port: bool,
}

/// The first descriptor systemd passes (sd_listen_fds(3): SD_LISTEN_FDS_START).
const LISTEN_FDS_START: i32 = 3;

/// The listening TCP sockets passed by `$LISTEN_FDS` when `$LISTEN_PID` is this process, as
/// sd_listen_fds(3) hands them (descriptors 3, 4, …), made non-blocking and close-on-exec.
/// Call it once, before anything else opens a descriptor: it takes ownership of them. A
/// passed descriptor that is not a listening TCP socket is an error naming it.
pub fn inherited_listeners() -> io::Result<Vec<InheritedListener>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<i32>().ok())
        .unwrap_or(0);
    if !for_us || count <= 0 {
        return Ok(Vec::new());
    }
    (LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(count))
        .map(adopt_listener)
        .collect()
}

/// The listening TCP socket open as descriptor `fd`, which this process was handed to own
/// (by a service manager, or by the percore it replaces), made non-blocking and
/// close-on-exec. An error names the descriptor.
pub fn adopt_listener(fd: i32) -> io::Result<InheritedListener> {
    // SAFETY: fcntl F_GETFD only reads the descriptor's flags; it fails with EBADF on a
    // number that is not open, and then nothing is taken.
    syscall!(fcntl(fd, libc::F_GETFD)).map_err(|e| passed_error(fd, &e.to_string()))?;
    // SAFETY: `fd` was passed to this process for it to own, it is open (checked above), and
    // the callers take each passed number once.
    let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let listening = socket.is_listener().unwrap_or(false);
    let addr = socket.local_addr().ok().and_then(|a| a.as_socket());
    let (true, Some(addr), Ok(Type::STREAM)) = (listening, addr, socket.r#type()) else {
        return Err(passed_error(fd, "not a listening TCP socket"));
    };
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    let reuse_port = socket.reuse_port().unwrap_or(false);
    Ok(InheritedListener {
        socket: socket.into(),
        addr,
        reuse_port,
    })
}

/// Whether `fd` survives an exec: cleared close-on-exec for the moment a process is started
/// that must inherit it, set again right after.
pub fn set_inheritable(fd: BorrowedFd<'_>, inheritable: bool) -> io::Result<()> {
    let flags = if inheritable { 0 } else { libc::FD_CLOEXEC };
    // SAFETY: F_SETFD on a borrowed, open descriptor only changes its close-on-exec flag.
    syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFD, flags)).map(|_| ())
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(fs::File, fs::File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a writable array of two c_ints, as pipe2 requires.
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    // SAFETY: pipe2 just returned two new descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((fs::File::from(read), fs::File::from(write)))
}

/// The file open as descriptor `fd`, which this process was handed to own (the write end of
/// the pipe the percore it replaces waits on), close-on-exec.
pub fn adopt_file(fd: i32) -> io::Result<fs::File> {
    // SAFETY: as in `adopt_listener`: F_GETFD only reads flags and fails on a closed number.
    syscall!(fcntl(fd, libc::F_GETFD)).map_err(|e| passed_error(fd, &e.to_string()))?;
    // SAFETY: `fd` is open (checked above) and was passed for this process to own, once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_inheritable(owned.as_fd(), false)?;
    Ok(fs::File::from(owned))
}

fn passed_error(fd: i32, why: &str) -> io::Error {
    io::Error::other(format!("passed descriptor {fd}: {why}"))
}

/// TCP_DEFER_ACCEPT (nginx's `listen … deferred`): accept returns a connection only once its
/// first bytes have arrived (or after about `secs` seconds of silence), so the caller can read
/// the request at once instead of waiting for another epoll round.
pub fn set_defer_accept(listener: &TcpListener, secs: u32) -> io::Result<()> {
    let secs = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the listener's fd is open; the option value points at a live c_int of `len` bytes.
    syscall!(setsockopt(
        listener.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        (&secs as *const libc::c_int).cast(),
        len
    ))?;
    Ok(())
}

/// Blocks until `fd` is readable (for a listener: a connection waits to be accepted), or it
/// has an error or hang-up for the next call to report, or `timeout` has passed (`None`: no
/// limit); true unless the time ran out. EINTR is retried. A thread that must block for
/// connections waits here rather than in a blocking accept, which takes its descriptor
/// number from the table for the whole wait: unseen in /proc/PID/fd, it still counts
/// against the open-files limit.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<std::time::Duration>) -> io::Result<bool> {
    let mut poll_fd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX)
    });
    retry_interrupted(|| {
        // SAFETY: `poll_fd` is one live, initialised pollfd for the length given; the
        // descriptor is borrowed and open for the call; -1 waits without a timeout.
        syscall!(poll(&mut poll_fd, 1, millis))
    })
    .map(|ready| ready > 0)
}

/// accept4(SOCK_NONBLOCK | SOCK_CLOEXEC): one system call, no extra fcntl. EINTR is retried;
/// WouldBlock, ECONNABORTED, EMFILE, ENFILE etc. are returned for the caller to classify.
pub fn accept_nonblocking(listener: &TcpListener) -> io::Result<TcpStream> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    let raw = retry_interrupted(|| {
        // SAFETY: the listener's fd is open for the call; null address and length pointers
        // tell the kernel that the peer address is not wanted.
        syscall!(accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags
        ))
    })?;
    // SAFETY: `raw` was just returned by accept4 and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok(TcpStream::from(fd))
}

/// sendfile(2) from `file` at `*offset` (advanced by what was sent) to `socket`, at most
/// `count` bytes. EINTR is retried; WouldBlock is returned. Ok(0) means the file ended early
/// (it was truncated since its size was read).
pub fn sendfile(
    socket: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let mut kernel_offset = libc::off_t::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "sendfile offset too large"))?;
    let sent = retry_interrupted(|| {
        // SAFETY: both descriptors are open for the call and `kernel_offset` is a valid off_t
        // that the kernel reads and advances.
        syscall!(sendfile(
            socket.as_raw_fd(),
            file.as_raw_fd(),
            &mut kernel_offset,
            count
        ))
    })?;
    let sent = usize::try_from(sent).unwrap_or(0);
    *offset = u64::try_from(kernel_offset).unwrap_or(*offset);
    Ok(sent)
}

/// send(2) with MSG_MORE: the kernel queues the bytes without pushing a partial segment, so
/// they share segments with what follows: a sendfile body (whose last chunk is sent without
/// the flag and pushes everything), or the FIN of a close or shutdown. This is TCP_CORK for one
/// write, without two setsockopt calls around it. Must be followed by one of those (or a plain
/// write), or the bytes wait.
pub fn send_more(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    socket2::SockRef::from(stream).send_with_flags(bytes, libc::MSG_MORE | libc::MSG_NOSIGNAL)
}

/// TCP_QUICKACK: sends an acknowledgement the kernel is holding back (delayed ACK, up to 40 ms
/// on Linux) now. Not sticky: the kernel returns to delaying ACKs on its own.
pub fn ack_now(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).set_quickack(true)
}

/// /proc/sys/net/core/somaxconn, or 4096 if it cannot be read.
pub fn somaxconn() -> i32 {
    fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| parse_positive(&text))
        .unwrap_or(DEFAULT_SOMAXCONN)
}

fn parse_positive(text: &str) -> Option<i32> {
    text.trim().parse().ok().filter(|&n: &i32| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::thread;

    fn loopback_listener() -> TcpListener {
        reuseport_listener("127.0.0.1:0".parse().expect("addr"), 128).expect("listen")
    }

    /// A (client, accepted server side) pair; the server side comes from accept_nonblocking.
    fn accepted_pair() -> (TcpStream, TcpStream) {
        let listener = loopback_listener();
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        // The connection is queued once connect returns, so one accept suffices.
        let server = accept_nonblocking(&listener).expect("accept");
        (client, server)
    }

    fn is_nonblocking(fd: BorrowedFd<'_>) -> bool {
        // SAFETY: F_GETFL takes no pointer and `fd` is open for the call.
        let flags = syscall!(fcntl(fd.as_raw_fd(), libc::F_GETFL)).expect("fcntl");
        flags & libc::O_NONBLOCK != 0
    }

    #[test]
    fn empty_listener_would_block() {
        let listener = loopback_listener();
        assert!(is_nonblocking(listener.as_fd()));
        let err = accept_nonblocking(&listener).expect_err("nothing to accept");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn accepted_stream_is_nonblocking() {
        let (_client, mut server) = accepted_pair();
        assert!(is_nonblocking(server.as_fd()));
        let mut buf = [0u8; 8];
        assert_eq!(
            server.read(&mut buf).expect_err("no data").kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn waiting_for_a_connection_returns_once_one_is_queued() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let client = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            TcpStream::connect(addr).expect("connect")
        });
        let ready = wait_readable(listener.as_fd(), Some(std::time::Duration::from_secs(10)));
        assert!(ready.expect("poll"), "no connection within 10 s");
        assert!(
            listener.accept().is_ok(),
            "readable means a connection is queued"
        );
        drop(client.join());
    }

    #[test]
    fn deferred_accept_waits_for_the_first_bytes() {
        let listener = reuseport_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        set_defer_accept(&listener, 5).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let silent = accept_nonblocking(&listener).map(|_| ());
        assert_eq!(silent.map_err(|e| e.kind()), Err(io::ErrorKind::WouldBlock));
        std::io::Write::write_all(&mut client, b"GET").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match accept_nonblocking(&listener) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "never accepted");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    #[test]
    fn bytes_sent_before_close_wait_for_the_fin_and_all_arrive() {
        let (mut client, server) = accepted_pair();
        let response = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".repeat(10);
        let sent = send_more(&server, &response).expect("send");
        assert_eq!(sent, response.len());
        // MSG_MORE: less than a segment is held back while the socket stays open (on loopback
        // a plain send has delivered its bytes to the peer's queue by the time it returns)...
        client.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 1];
        let held = client.read(&mut buf).map_err(|e| e.kind());
        assert_eq!(held, Err(io::ErrorKind::WouldBlock));
        // ...and leaves with the FIN when it closes.
        drop(server);
        client.set_nonblocking(false).expect("blocking");
        let mut received = Vec::new();
        client.read_to_end(&mut received).expect("read to EOF");
        assert_eq!(received, response);
    }

    /// Why the worker shuts the write side down before closing: a close with unread input
    /// resets the connection, and a reset discards bytes still held by MSG_MORE.
    #[test]
    fn held_bytes_survive_a_resetting_close_only_after_shutdown() {
        let response = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
        let late = b"more bytes the server never reads";
        let received = |shutdown_first: bool| {
            let (mut client, server) = accepted_pair();
            send_more(&server, response).expect("send");
            client.write_all(late).expect("client write");
            if shutdown_first {
                server
                    .shutdown(std::net::Shutdown::Write)
                    .expect("shutdown");
            }
            drop(server);
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            // Up to EOF or the reset, whichever the client meets.
            while let Ok(n @ 1..) = client.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            got
        };
        assert_eq!(received(false), b"", "a reset used to discard held bytes");
        assert_eq!(received(true), response);
    }

    #[test]
    fn a_head_sent_with_more_leaves_with_the_sendfile_body() {
        let (mut client, server) = accepted_pair();
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
        assert_eq!(send_more(&server, head).expect("send"), head.len());
        client.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        let held = client.read(&mut byte).map_err(|e| e.kind());
        assert_eq!(
            held,
            Err(io::ErrorKind::WouldBlock),
            "the head was pushed alone"
        );

        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let path = std::env::temp_dir().join(format!("percore-sendfile-{}", std::process::id()));
        fs::write(&path, &body).expect("write body file");
        let file = fs::File::open(&path).expect("open body file");
        let _ = fs::remove_file(&path);
        let mut offset = 0;
        while offset < body.len() as u64 {
            let left = body.len() - offset as usize;
            sendfile(server.as_fd(), file.as_fd(), &mut offset, left).expect("sendfile");
        }
        // Without a close: sendfile's last chunk pushed the head and the whole body.
        client.set_nonblocking(false).expect("blocking");
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let mut received = vec![0u8; head.len() + body.len()];
        client.read_exact(&mut received).expect("head and body");
        assert_eq!(&received[..head.len()], head);
        assert_eq!(&received[head.len()..], &body[..]);
    }

    #[test]
    fn two_listeners_share_a_port() {
        let first = loopback_listener();
        let addr = first.local_addr().expect("addr");
        let second = reuseport_listener(addr, 128).expect("second listener on the same port");
        assert_eq!(second.local_addr().expect("addr"), addr);
    }

    #[test]
    fn ipv6_listener_is_v6_only() {
        let Ok(listener) = reuseport_listener("[::1]:0".parse().expect("addr"), 16) else {
            return; // This machine has no IPv6 loopback.
        };
        let socket = socket2::SockRef::from(&listener);
        assert!(socket.only_v6().expect("only_v6"));
    }

    /// Sends `content[start..]` with sendfile in chunks of `chunk` bytes and checks what arrives.
    fn check_sendfile(content: &[u8], start: u64, chunk: usize) {
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(content).expect("write");
        let (mut client, server) = accepted_pair();
        let expected = content[usize::try_from(start).expect("start")..].to_vec();
        let reader = thread::spawn(move || {
            let mut received = Vec::new();
            client.read_to_end(&mut received).expect("read");
            received
        });
        let mut offset = start;
        let end = u64::try_from(content.len()).expect("len");
        while offset < end {
            let before = offset;
            match sendfile(server.as_fd(), file.as_fd(), &mut offset, chunk) {
                Ok(n) => assert_eq!(offset - before, u64::try_from(n).expect("n")),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::yield_now(),
                Err(e) => panic!("sendfile: {e}"),
            }
        }
        assert_eq!(
            sendfile(server.as_fd(), file.as_fd(), &mut offset, chunk).expect("eof"),
            0
        );
        drop(server);
        assert_eq!(reader.join().expect("reader"), expected);
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn sendfile_is_byte_exact() {
        check_sendfile(b"hello, sendfile", 0, 1024);
        check_sendfile(&pattern(3 * 1024 * 1024 + 17), 0, 1 << 20);
    }

    #[test]
    fn sendfile_resumes_at_an_offset() {
        check_sendfile(b"0123456789", 4, 3);
        check_sendfile(&pattern(100_000), 65_537, 4096);
    }

    #[test]
    fn connections_inherit_the_listeners_congestion_control() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Not the default (or the accepted socket would have it anyway): reno is built into
        // every kernel, cubic into Debian's.
        let name = match default_congestion_control().as_deref() {
            Some("reno") => "cubic",
            _ => "reno",
        };
        set_congestion_control(&listener, name).expect("set");
        assert_eq!(congestion_control(&listener).expect("get"), name);
        let _client = TcpStream::connect(addr).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        assert_eq!(congestion_control(&accepted).expect("get"), name);
        let missing = set_congestion_control(&listener, "percore_none").expect_err("no such");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn sendfile_rejects_an_offset_beyond_off_t() {
        let file = tempfile::tempfile().expect("tempfile");
        let (_client, server) = accepted_pair();
        let mut offset = u64::MAX;
        let err = sendfile(server.as_fd(), file.as_fd(), &mut offset, 1).expect_err("too large");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(offset, u64::MAX);
    }

    #[test]
    fn somaxconn_is_positive() {
        assert!(somaxconn() > 0);
        let cases = [
            ("4096\n", Some(4096)),
            ("0", None),
            ("-1", None),
            ("x", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_positive(text), expected, "{text:?}");
        }
    }
}
