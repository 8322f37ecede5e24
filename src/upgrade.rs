//! Binary upgrade (SIGUSR2, beyond nginx's USR2): start the binary again, as a child that
//! inherits every listening socket, and hand over to it once it serves.
//!
//! Owns the hand-over protocol between the two processes: which descriptors the new one
//! inherits (named in `PERCORE_UPGRADE_LISTENERS`, `PERCORE_UPGRADE_ADMIN`), and the pipe
//! (`PERCORE_UPGRADE_READY`) on which the new process says it serves. The old process keeps
//! serving until then; if the new one exits first, nothing changes. It never decides how the
//! old process drains: the supervisor does (as at a reload, without refusing a connection).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::{Child, Command};

use crossbeam_channel::{bounded, Receiver};

use crate::sys::{self, InheritedListener};

const LISTENERS: &str = "PERCORE_UPGRADE_LISTENERS";
const ADMIN: &str = "PERCORE_UPGRADE_ADMIN";
const READY: &str = "PERCORE_UPGRADE_READY";
/// What the new process writes on the pipe once it serves.
const READY_WORD: &[u8] = b"ready\n";

/// What a process started by an upgrade inherited from the one it replaces.
#[derive(Debug, Default)]
pub struct Inherited {
    pub listeners: Vec<InheritedListener>,
    pub admin: Option<TcpListener>,
    /// Where to say "serving": the old process waits on the other end.
    ready: Option<File>,
}

impl Inherited {
    /// The descriptors named by the upgrade's environment, taken over (none when this process
    /// was not started by an upgrade). Call it once, before anything opens a descriptor.
    pub fn take() -> io::Result<Inherited> {
        let numbers = |name: &str| -> Vec<i32> {
            std::env::var(name)
                .unwrap_or_default()
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        };
        let listeners = numbers(LISTENERS)
            .into_iter()
            .map(sys::adopt_listener)
            .collect::<io::Result<Vec<_>>>()?;
        let admin = match numbers(ADMIN).first() {
            Some(&fd) => Some(sys::adopt_listener(fd)?.socket),
            None => None,
        };
        let ready = match numbers(READY).first() {
            Some(&fd) => Some(sys::adopt_file(fd)?),
            None => None,
        };
        Ok(Inherited {
            listeners,
            admin,
            ready,
        })
    }

    /// Whether this process replaces another.
    pub fn is_upgrade(&self) -> bool {
        self.ready.is_some()
    }

    /// Tells the old process that this one serves (it then finishes and exits).
    pub fn say_ready(&mut self) {
        if let Some(mut pipe) = self.ready.take() {
            let _ = pipe.write_all(READY_WORD);
        }
    }
}

/// A new process started by SIGUSR2, not yet serving.
pub struct Upgrade {
    pub child: Child,
    /// `true` once it serves; `false` if it exited (or closed the pipe) before.
    pub outcome: Receiver<bool>,
}

/// Starts this binary again (`argv[0]`, which names the new binary when it was replaced on
/// disk, with the same arguments), inheriting `listeners` and `admin`, and returns it with
/// a channel that says whether it came to serve.
pub fn start(listeners: &[BorrowedFd<'_>], admin: Option<BorrowedFd<'_>>) -> io::Result<Upgrade> {
    let mut args = std::env::args_os();
    let program: OsString = args.next().ok_or_else(|| io::Error::other("no argv[0]"))?;
    let (mut read, write) = sys::pipe()?;
    let passed: Vec<BorrowedFd<'_>> = listeners
        .iter()
        .copied()
        .chain(admin)
        .chain(std::iter::once(write.as_fd()))
        .collect();
    let list = |fds: &[BorrowedFd<'_>]| {
        fds.iter()
            .map(|fd| fd.as_raw_fd().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut command = Command::new(&program);
    command
        .args(args)
        .env(LISTENERS, list(listeners))
        .env(
            ADMIN,
            admin
                .map(|fd| fd.as_raw_fd().to_string())
                .unwrap_or_default(),
        )
        .env(READY, write.as_raw_fd().to_string())
        // Socket activation's variables were for this process, not the new one.
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    // The descriptors are inheritable only while the child starts: the supervisor is the only
    // thread that starts processes.
    for fd in &passed {
        sys::set_inheritable(*fd, true)?;
    }
    let spawned = command.spawn();
    for fd in &passed {
        let _ = sys::set_inheritable(*fd, false);
    }
    let child = spawned?;
    // Only the child holds the write end now: its exit is the pipe's end.
    drop(write);
    let (tx, outcome) = bounded(1);
    std::thread::Builder::new()
        .name("percore-upgrade".into())
        .spawn(move || {
            let mut said = Vec::new();
            let _ = read.read_to_end(&mut said);
            let _ = tx.send(said.starts_with(READY_WORD));
        })?;
    Ok(Upgrade { child, outcome })
}
