//! EventFd: a cross-thread wake-up for a worker's epoll (shutdown, drain requests).
//!
//! Owns one eventfd (EFD_NONBLOCK | EFD_CLOEXEC). It must never carry data: a wake-up only
//! says "look at your shared state"; what to look at is the caller's business.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use super::retry_interrupted;

/// A non-blocking eventfd. Shared through `Arc` between the supervisor and a worker.
#[derive(Debug)]
pub struct EventFd {
    file: File,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers.
        let raw = syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?;
        // SAFETY: `raw` was just returned by the kernel and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd {
            file: File::from(fd),
        })
    }

    /// Makes the eventfd readable (adds 1 to its counter). A counter so full that the add
    /// would block is already readable, so WouldBlock counts as success.
    pub fn notify(&self) -> io::Result<()> {
        match retry_interrupted(|| (&self.file).write(&1u64.to_ne_bytes())) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Resets the counter to zero, so the next notify gives a fresh edge. Nothing to read
    /// (WouldBlock) is the normal case after a spurious wake-up and is ignored.
    pub fn drain(&self) {
        let mut counter = [0u8; 8];
        // An eventfd read either takes the whole counter or fails: errors leave nothing behind.
        let _ = retry_interrupted(|| (&self.file).read(&mut counter));
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Epoll, Events, Interest};
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    const TOKEN: u64 = 42;

    /// Waits briefly and returns the tokens of readable events.
    fn readable_tokens(epoll: &Epoll) -> Vec<u64> {
        let mut events = Events::with_capacity(4);
        epoll
            .wait(&mut events, Some(Duration::from_millis(50)))
            .expect("wait");
        events
            .iter()
            .filter(|e| e.readable)
            .map(|e| e.token)
            .collect()
    }

    #[test]
    fn notify_wakes_epoll_and_drain_clears() {
        let epoll = Epoll::new().expect("epoll");
        let wake = Arc::new(EventFd::new().expect("eventfd"));
        epoll
            .register(wake.as_fd(), TOKEN, Interest::READABLE)
            .expect("register");
        assert_eq!(readable_tokens(&epoll), Vec::<u64>::new());

        let other = Arc::clone(&wake);
        thread::spawn(move || other.notify().expect("notify"))
            .join()
            .expect("thread");
        wake.notify().expect("notify twice");
        assert_eq!(readable_tokens(&epoll), vec![TOKEN]);

        wake.drain();
        let mut counter = [0u8; 8];
        let err = (&wake.file).read(&mut counter).expect_err("drained");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        wake.drain(); // Draining an empty eventfd is harmless.

        wake.notify().expect("notify after drain");
        assert_eq!(readable_tokens(&epoll), vec![TOKEN]);
    }

    #[test]
    fn can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<EventFd>();
    }
}
