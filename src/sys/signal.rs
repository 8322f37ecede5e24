//! Control signals (termination, reload, reopening logs): blocked in every thread, received by
//! one dedicated thread with sigwait.
//!
//! Owns the signal mask and the SIGPIPE disposition. It must never install handlers that run
//! code asynchronously, nor decide what a signal means for the server (the supervisor does).

use std::io;
use std::mem;
use std::ptr;

/// The signals that ask the server to stop (or, for SIGHUP, SIGUSR1 and SIGUSR2, that the
/// supervisor reinterprets: reload, reopen the access log, start a new binary).
const TERMINATION_SIGNALS: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Blocks SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 in the calling thread (threads spawned afterwards
/// inherit the mask) and ignores SIGPIPE process-wide, so a write to a closed socket is EPIPE.
pub fn block_termination_signals() -> io::Result<()> {
    let set = termination_set()?;
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: SIG_IGN is a valid disposition for SIGPIPE and runs no code.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits (sigwait) for one of the termination signals and returns its number. The signals must
/// be blocked in every thread first, or one may be delivered elsewhere with its default action.
pub fn wait_termination_signal() -> io::Result<i32> {
    let set = termination_set()?;
    let mut signo: libc::c_int = 0;
    loop {
        // SAFETY: `set` is an initialised sigset_t and `signo` a valid place for the result.
        let rc = unsafe { libc::sigwait(&set, &mut signo) };
        match rc {
            0 => return Ok(signo),
            libc::EINTR => continue,
            _ => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// The conventional name of a signal, or "unknown signal".
pub fn signal_name(signo: i32) -> &'static str {
    match signo {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "unknown signal",
    }
}

fn termination_set() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset below initialises it as the API requires.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t to write into.
    syscall!(sigemptyset(&mut set))?;
    for signo in TERMINATION_SIGNALS {
        // SAFETY: `set` is an initialised sigset_t and `signo` a valid signal number.
        syscall!(sigaddset(&mut set, signo))?;
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// In a thread of its own: block, raise `signo` at this very thread, and sigwait for it.
    /// The signal stays pending on that thread, so no other thread of the harness can see it.
    fn check(signo: i32, name: &str) {
        let received = thread::spawn(move || {
            block_termination_signals().expect("block");
            // SAFETY: raise sends to the calling thread, where the signal is blocked.
            let rc = unsafe { libc::raise(signo) };
            assert_eq!(rc, 0);
            wait_termination_signal().expect("sigwait")
        });
        let got = received.join().expect("thread");
        assert_eq!((got, signal_name(got)), (signo, name));
    }

    #[test]
    fn each_termination_signal_is_received() {
        check(libc::SIGTERM, "SIGTERM");
        check(libc::SIGINT, "SIGINT");
        check(libc::SIGHUP, "SIGHUP");
        check(libc::SIGQUIT, "SIGQUIT");
    }

    #[test]
    fn sigpipe_is_ignored() {
        // A thread of its own, so the harness's threads keep their signal mask.
        thread::spawn(block_termination_signals)
            .join()
            .expect("thread")
            .expect("block");
        // SAFETY: sigaction is plain data, for which all zeroes is a valid value.
        let mut old: libc::sigaction = unsafe { mem::zeroed() };
        // SAFETY: a null new action only reads the current disposition into `old`.
        syscall!(sigaction(libc::SIGPIPE, ptr::null(), &mut old)).expect("sigaction");
        assert_eq!(old.sa_sigaction, libc::SIG_IGN);
    }

    #[test]
    fn unknown_signals_have_a_name() {
        assert_eq!(signal_name(0), "unknown signal");
        assert_eq!(signal_name(-1), "unknown signal");
    }
}
