//! The operating-system layer: the only module of percore that calls libc or holds `unsafe`.
//!
//! It owns thin, safe wrappers over Linux system calls: epoll, listening and accepting sockets,
//! sendfile, opening files beneath the document root, CPU affinity, termination signals,
//! the open-files limit, kernel TLS (kTLS) keys and records, eventfd wake-ups and the identity
//! (device, inode) of a descriptor; and the one append to a vector that skips its zero fill.
//! Every file descriptor is wrapped in an `OwnedFd` (or a std type built from one) the moment
//! the kernel returns it, and every `unsafe` block carries a `// SAFETY:` comment directly
//! above it.
//!
//! It must never know anything of HTTP, WebSocket, connections or configuration: it speaks only
//! in file descriptors, byte counts and `io::Result`.
//!
//! Only epoll is public outside the crate: wsload (benches/wsload) drives its client connections
//! with it, rather than carry `unsafe` code or a second event-loop crate of its own. The rest
//! serves the server alone.

use std::io;

/// Calls `libc::$fn(args..)` and turns the C convention "-1 and `errno`" into `io::Error`.
///
/// Every use must be preceded by a `// SAFETY:` comment explaining why that particular call
/// is sound (valid pointers, buffer lengths, descriptors), exactly as for an `unsafe` block.
macro_rules! syscall {
    ($fn: ident ( $($arg: expr),* $(,)? ) ) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller justifies this call with its own `// SAFETY:` comment at the use site.
        let res = unsafe { libc::$fn($($arg, )*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

mod affinity;
mod epoll;
mod eventfd;
mod file;
mod ktls;
mod limits;
mod memory;
mod net;
mod signal;
mod stat;
mod sysconf;

pub(crate) use affinity::{allowed_cpus, pin_current_thread};
pub use epoll::{Epoll, Event, Events, Interest};
pub(crate) use eventfd::EventFd;
pub(crate) use file::{read_dir_entries, EntryKind, RootDir};
pub(crate) use ktls::{
    attach_tls, kernel_tls_takes, recv_tls, send_tls_record, set_tls_keys, Direction, Tls13Keys,
    RECORD_APPLICATION_DATA,
};
pub(crate) use limits::raise_open_files_limit;
pub(crate) use memory::{extend_xored, keep_freed_memory, release_free_memory};
pub(crate) use net::{
    accept_nonblocking, ack_now, adopt_file, adopt_listener, congestion_control,
    congestion_controls, default_congestion_control, inherited_listeners, pipe, reuseport_listener,
    send_more, sendfile, set_congestion_control, set_defer_accept, set_inheritable, somaxconn,
    wait_readable, InheritedListener,
};
pub(crate) use signal::{block_termination_signals, signal_name, wait_termination_signal};
pub(crate) use stat::device_and_inode;
pub(crate) use sysconf::{clock_ticks_per_second, monotonic_micros, page_size};

/// Runs `op` again for as long as it fails with `EINTR`: an interrupted call did nothing.
fn retry_interrupted<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every source file of this module, for the lint below.
    const SOURCES: [(&str, &str); 9] = [
        ("mod.rs", include_str!("mod.rs")),
        ("affinity.rs", include_str!("affinity.rs")),
        ("epoll.rs", include_str!("epoll.rs")),
        ("eventfd.rs", include_str!("eventfd.rs")),
        ("file.rs", include_str!("file.rs")),
        ("limits.rs", include_str!("limits.rs")),
        ("net.rs", include_str!("net.rs")),
        ("signal.rs", include_str!("signal.rs")),
        ("stat.rs", include_str!("stat.rs")),
    ];

    /// Lines `syscall!` is used on whose comment block just above has no `// SAFETY:`.
    /// Clippy's `undocumented_unsafe_blocks` cannot see through the macro, so this test does.
    fn undocumented_syscalls(source: &str) -> Vec<usize> {
        let needle = needle();
        let lines: Vec<&str> = source.lines().map(str::trim).collect();
        let documented = |index: usize| {
            let above = lines[..index]
                .iter()
                .rev()
                .take_while(|line| line.starts_with("//"));
            above.into_iter().any(|line| line.starts_with("// SAFETY:"))
        };
        (0..lines.len())
            .filter(|&i| lines[i].contains(&needle) && !documented(i))
            .map(|i| i + 1)
            .collect()
    }

    /// The macro call, spelt so that this file's own test data does not contain it.
    fn needle() -> String {
        ["sys", "call!("].concat()
    }

    #[test]
    fn every_syscall_has_a_safety_comment() {
        for (name, source) in SOURCES {
            assert_eq!(undocumented_syscalls(source), Vec::<usize>::new(), "{name}");
        }
        let call = format!("let fd = {}eventfd(0, 0));", needle());
        let bad = format!("// A comment.\n{call}\n// SAFETY: too late.");
        assert_eq!(undocumented_syscalls(&bad), vec![2]);
        let good = format!("// SAFETY: no pointers.\n// More words.\n{call}");
        assert_eq!(undocumented_syscalls(&good), Vec::<usize>::new());
    }

    #[test]
    fn interrupted_calls_are_retried() {
        let mut attempts = 0;
        let result = super::retry_interrupted(|| {
            attempts += 1;
            match attempts {
                1 | 2 => Err(std::io::Error::from_raw_os_error(libc::EINTR)),
                _ => Ok(attempts),
            }
        });
        assert_eq!(result.ok(), Some(3));
        let other = super::retry_interrupted(|| -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(libc::EAGAIN))
        });
        assert_eq!(
            other.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock)
        );
    }
}
