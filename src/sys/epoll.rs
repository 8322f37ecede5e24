//! Edge-triggered epoll: one `Epoll` per worker, `Events` as the reusable batch buffer.
//!
//! Owns the epoll descriptor and the translation between kernel event bits and [`Event`].
//! It must never decide what a token means or keep per-connection state.
//!
//! Edge-triggered contract (as in mio's `Poll`): an event says readiness *changed*; the caller
//! must read, write or accept until `WouldBlock` before it may expect another event for that fd.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Owns an epoll instance (created with `EPOLL_CLOEXEC`).
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

/// The readiness a registration asks for.
#[derive(Clone, Copy, Debug)]
pub struct Interest {
    pub readable: bool,
    pub writable: bool,
}

impl Interest {
    /// Read and write readiness: what a connection registers once for its whole life.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };
    /// Read readiness only: what a listener or an eventfd registers.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
}

/// One readiness report, copied out of the kernel's (packed) `epoll_event`.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub token: u64,
    /// `EPOLLIN`.
    pub readable: bool,
    /// `EPOLLOUT`.
    pub writable: bool,
    /// `EPOLLERR`.
    pub error: bool,
    /// `EPOLLHUP` or `EPOLLRDHUP`: the peer closed at least its writing half.
    pub hangup: bool,
}

/// A reusable buffer for the events of one `Epoll::wait`.
pub struct Events {
    list: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers.
        let raw = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: `raw` was just returned by the kernel and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Epoll { fd })
    }

    /// Registers edge-triggered (EPOLLET) with EPOLLRDHUP, plus EPOLLIN/EPOLLOUT per interest.
    /// Registered once per fd.
    pub fn register(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: interest_bits(interest),
            u64: token,
        };
        // SAFETY: both descriptors are open (one owned, one borrowed for the call) and `event`
        // is a valid epoll_event that the kernel only reads.
        syscall!(epoll_ctl(
            self.fd.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut event
        ))?;
        Ok(())
    }

    pub fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: both descriptors are open; EPOLL_CTL_DEL ignores the event pointer, which
        // may be null since Linux 2.6.9.
        syscall!(epoll_ctl(
            self.fd.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd.as_raw_fd(),
            std::ptr::null_mut()
        ))?;
        Ok(())
    }

    /// Waits for events; None = forever. EINTR is not an error: returns Ok with zero events.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.list.clear();
        let capacity = i32::try_from(events.list.capacity()).unwrap_or(i32::MAX);
        // SAFETY: the buffer has room for `capacity` events, all of which the kernel may write.
        let result = syscall!(epoll_wait(
            self.fd.as_raw_fd(),
            events.list.as_mut_ptr(),
            capacity,
            timeout_millis(timeout)
        ));
        match result {
            Ok(n) => {
                let n = usize::try_from(n).unwrap_or(0);
                // SAFETY: the kernel initialised the first `n` entries, and n <= capacity.
                unsafe { events.list.set_len(n) };
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Events {
    /// A buffer for up to `n` events per wait (at least one: epoll rejects zero).
    pub fn with_capacity(n: usize) -> Events {
        Events {
            list: Vec::with_capacity(n.max(1)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.list.iter().map(|raw| to_event(*raw))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

fn interest_bits(interest: Interest) -> u32 {
    let mut bits = (libc::EPOLLET | libc::EPOLLRDHUP) as u32;
    if interest.readable {
        bits |= libc::EPOLLIN as u32;
    }
    if interest.writable {
        bits |= libc::EPOLLOUT as u32;
    }
    bits
}

/// `epoll_event` is packed on x86_64: its fields are copied out by value, never borrowed.
fn to_event(raw: libc::epoll_event) -> Event {
    let bits = raw.events;
    let token = raw.u64;
    let has = |flag: i32| bits & flag as u32 != 0;
    Event {
        token,
        readable: has(libc::EPOLLIN),
        writable: has(libc::EPOLLOUT),
        error: has(libc::EPOLLERR),
        hangup: has(libc::EPOLLHUP) || has(libc::EPOLLRDHUP),
    }
}

/// Milliseconds for epoll_wait: -1 waits forever; a partial millisecond is rounded up so that
/// a short timeout does not turn into a busy loop of zero-timeout waits.
fn timeout_millis(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(d) => {
            let millis = d.as_nanos().div_ceil(1_000_000);
            i32::try_from(millis).unwrap_or(i32::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::time::Instant;

    const SHORT: Option<Duration> = Some(Duration::from_millis(200));

    fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (client, server)
    }

    /// Waits once and returns the events, sorted by token.
    fn wait_events(epoll: &Epoll, timeout: Option<Duration>) -> Vec<Event> {
        let mut events = Events::with_capacity(16);
        epoll.wait(&mut events, timeout).expect("wait");
        let mut list: Vec<Event> = events.iter().collect();
        list.sort_by_key(|e| e.token);
        list
    }

    /// Compares (token, readable, writable, hangup) of every event.
    fn check(events: &[Event], expected: &[(u64, bool, bool, bool)]) {
        let got: Vec<_> = events
            .iter()
            .map(|e| (e.token, e.readable, e.writable, e.hangup))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn timeout_returns_no_events() {
        let epoll = Epoll::new().expect("epoll");
        let mut events = Events::with_capacity(4);
        let start = Instant::now();
        epoll
            .wait(&mut events, Some(Duration::from_millis(30)))
            .expect("wait");
        assert!(events.is_empty());
        assert_eq!(events.len(), 0);
        assert!(start.elapsed() >= Duration::from_millis(29));
    }

    #[test]
    fn reports_writable_readable_and_hangup_with_tokens() {
        let epoll = Epoll::new().expect("epoll");
        let (mut client, server) = connected_pair();
        epoll
            .register(client.as_fd(), 7, Interest::BOTH)
            .expect("register client");
        epoll
            .register(server.as_fd(), 9, Interest::READABLE)
            .expect("register server");
        // A fresh connection is writable; nothing has been sent yet.
        check(&wait_events(&epoll, SHORT), &[(7, false, true, false)]);
        // Edge-triggered: the same readiness is not reported twice.
        check(&wait_events(&epoll, Some(Duration::ZERO)), &[]);
        // From here on only the server side is watched: the client's own write-space
        // wake-ups (ACKs arriving) would add events that depend on timing.
        epoll.deregister(client.as_fd()).expect("deregister client");

        client.write_all(b"ping").expect("write");
        check(&wait_events(&epoll, SHORT), &[(9, true, false, false)]);

        client.shutdown(Shutdown::Write).expect("shutdown");
        check(&wait_events(&epoll, SHORT), &[(9, true, false, true)]);
    }

    #[test]
    fn deregistered_fd_reports_nothing() {
        let epoll = Epoll::new().expect("epoll");
        let (mut client, server) = connected_pair();
        epoll
            .register(server.as_fd(), 1, Interest::READABLE)
            .expect("register");
        epoll.deregister(server.as_fd()).expect("deregister");
        client.write_all(b"x").expect("write");
        check(&wait_events(&epoll, Some(Duration::from_millis(20))), &[]);
        // Registering twice is an error (EEXIST): registration happens once per fd.
        epoll
            .register(server.as_fd(), 1, Interest::READABLE)
            .expect("register again");
        let twice = epoll
            .register(server.as_fd(), 1, Interest::READABLE)
            .expect_err("twice");
        assert_eq!(twice.raw_os_error(), Some(libc::EEXIST));
    }

    #[test]
    fn bits_translate_both_ways() {
        let all = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLRDHUP) as u32;
        let event = to_event(libc::epoll_event {
            events: all,
            u64: u64::MAX,
        });
        assert_eq!(
            (
                event.token,
                event.readable,
                event.writable,
                event.error,
                event.hangup
            ),
            (u64::MAX, true, true, true, true)
        );
        let none = Interest {
            readable: false,
            writable: false,
        };
        assert_eq!(
            interest_bits(none),
            (libc::EPOLLET | libc::EPOLLRDHUP) as u32
        );
    }

    #[test]
    fn timeouts_round_up_to_milliseconds() {
        let cases = [
            (None, -1),
            (Some(Duration::ZERO), 0),
            (Some(Duration::from_micros(1)), 1),
            (Some(Duration::from_millis(1500)), 1500),
            (Some(Duration::from_secs(u64::MAX)), i32::MAX),
        ];
        for (timeout, millis) in cases {
            assert_eq!(timeout_millis(timeout), millis, "{timeout:?}");
        }
    }

    #[test]
    fn types_can_live_in_a_worker_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Epoll>();
        send_sync::<Events>();
    }
}
