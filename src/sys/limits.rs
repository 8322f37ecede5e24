//! Resource limits: the open-files limit that caps how many connections a process can hold.
//!
//! Owns getrlimit/setrlimit for RLIMIT_NOFILE. It must never decide what to do when the limit
//! is low; it reports the numbers and the supervisor says so.

use std::fs;
use std::io;

/// RLIMIT_NOFILE before and after raising it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFilesLimit {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

/// What fs.nr_open defaults to: the kernel's own ceiling on descriptors per process.
const DEFAULT_NR_OPEN: u64 = 1 << 20;

/// Raises RLIMIT_NOFILE's soft limit to its hard limit. An unlimited hard limit cannot be
/// reached (the kernel caps descriptors at fs.nr_open), so then the soft limit goes to
/// fs.nr_open and `now` says so.
pub fn raise_open_files_limit() -> io::Result<OpenFilesLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill.
    syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut limit))?;
    let before = limit.rlim_cur;
    let hard = limit.rlim_max;
    let target = if hard == libc::RLIM_INFINITY {
        nr_open().min(hard)
    } else {
        hard
    };
    if before != target {
        limit.rlim_cur = target;
        // SAFETY: `limit` is a valid rlimit that the kernel only reads.
        syscall!(setrlimit(libc::RLIMIT_NOFILE, &limit))?;
    }
    Ok(OpenFilesLimit {
        before,
        now: target,
        hard,
    })
}

fn nr_open() -> u64 {
    fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(DEFAULT_NR_OPEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid rlimit for the kernel to fill.
        syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut limit)).expect("getrlimit");
        limit
    }

    #[test]
    fn soft_limit_reaches_the_hard_limit() {
        let raised = raise_open_files_limit().expect("raise");
        assert!(raised.now >= raised.before);
        if raised.hard != libc::RLIM_INFINITY {
            assert_eq!(raised.now, raised.hard);
        }
        let limit = current();
        assert_eq!((limit.rlim_cur, limit.rlim_max), (raised.now, raised.hard));
        // Raising again changes nothing.
        let again = raise_open_files_limit().expect("raise again");
        assert_eq!(
            again,
            OpenFilesLimit {
                before: raised.now,
                ..raised
            }
        );
    }
}
