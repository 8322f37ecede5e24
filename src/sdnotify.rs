//! systemd's notification protocol (sd_notify(3)) without libsystemd: READY, STOPPING,
//! RELOADING, STATUS and the watchdog, as datagrams to `$NOTIFY_SOCKET`.
//!
//! Owns the message texts and when the watchdog is due. It never decides the server's state:
//! the supervisor says when it is ready, reloading or stopping. Outside systemd (no
//! `$NOTIFY_SOCKET`) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// How often STATUS= is sent while serving.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Sends one message (several `KEY=value` lines) to `$NOTIFY_SOCKET`, if set.
pub fn send(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&path.to_string_lossy(), message) {
        warn!("sd_notify {}: {e}", message.lines().next().unwrap_or(""));
    }
}

/// One datagram to the socket at `path` (`@name`: an abstract one). Non-blocking: a manager
/// that stopped reading must not stall the supervisor (and keep a descriptor) for as long as
/// it does; a lost STATUS= or WATCHDOG=1 is only logged.
fn send_to(path: &str, message: &str) -> std::io::Result<()> {
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else {
        SocketAddr::from_pathname(path)?
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    socket.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

/// A reload begins: systemd waits for the READY=1 that ends it (`Type=notify-reload` and
/// `ExecReload=` both understand it); MONOTONIC_USEC ties the message to this reload.
pub fn reloading() {
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}",
        crate::sys::monotonic_micros()
    ));
}

/// The one-line status `systemctl status` shows.
pub fn status_line(active: u64, requests_per_second: f64, draining: bool) -> String {
    let state = if draining { "draining" } else { "serving" };
    format!("STATUS={state}: {active} connections open, {requests_per_second:.0} requests/s")
}

/// The watchdog's schedule: WATCHDOG=1 every half of `$WATCHDOG_USEC`, when systemd asked
/// for it (and `$WATCHDOG_PID`, if set, is this process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchdog {
    every: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    /// From the environment systemd gives a service with `WatchdogSec=`.
    pub fn from_env() -> Option<Watchdog> {
        let usec = std::env::var("WATCHDOG_USEC").ok()?;
        let pid = std::env::var("WATCHDOG_PID").ok();
        Watchdog::new(&usec, pid.as_deref(), std::process::id())
    }

    fn new(usec: &str, pid: Option<&str>, me: u32) -> Option<Watchdog> {
        if pid.is_some_and(|pid| pid.trim().parse() != Ok(me)) {
            return None;
        }
        let usec: u64 = usec.trim().parse().ok().filter(|&u| u > 0)?;
        Some(Watchdog {
            every: Duration::from_micros(usec / 2),
            last: None,
        })
    }

    /// How long the supervisor may wait before it must call [`Watchdog::tick`] again.
    pub fn interval(&self) -> Duration {
        self.every
    }

    /// Sends WATCHDOG=1 when it is due.
    pub fn tick(&mut self, now: Instant) {
        if self.is_due(now) {
            self.last = Some(now);
            send("WATCHDOG=1");
        }
    }

    fn is_due(&self, now: Instant) -> bool {
        match self.last {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.every,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_follows_watchdog_usec_and_pid() {
        assert_eq!(Watchdog::new("0", None, 7), None);
        assert_eq!(Watchdog::new("x", None, 7), None);
        assert_eq!(Watchdog::new("2000000", Some("8"), 7), None);
        let dog = Watchdog::new("2000000", Some("7"), 7);
        assert_eq!(dog.map(|d| d.interval()), Some(Duration::from_secs(1)));
        let mut dog = Watchdog::new("2000000", None, 7).unwrap_or_else(|| panic!("a watchdog"));
        let start = Instant::now();
        assert!(dog.is_due(start));
        dog.tick(start);
        assert!(!dog.is_due(start + Duration::from_millis(999)));
        assert!(dog.is_due(start + Duration::from_secs(1)));
    }

    #[test]
    fn a_manager_that_stops_reading_does_not_block_a_send() {
        let dir = std::env::temp_dir().join(format!("percore-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let Ok(manager) = UnixDatagram::bind(&dir) else {
            panic!("binding {}", dir.display());
        };
        let path = dir.to_string_lossy().into_owned();
        assert!(send_to(&path, "READY=1").is_ok());
        let mut message = [0u8; 16];
        assert_eq!(manager.recv(&mut message).ok(), Some(7));
        // The queue fills up (unix datagram sockets hold a few hundred): then an error, at once.
        let refused = (0..10_000).find_map(|_| send_to(&path, "WATCHDOG=1").err());
        assert_eq!(
            refused.map(|e| e.kind()),
            Some(std::io::ErrorKind::WouldBlock)
        );
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(12, 3456.4, false),
            "STATUS=serving: 12 connections open, 3456 requests/s"
        );
        assert!(status_line(0, 0.0, true).starts_with("STATUS=draining: "));
    }
}
