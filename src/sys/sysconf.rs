//! System constants a process needs to read /proc (clock ticks per second, the page size) and
//! the monotonic clock as systemd counts it.
//!
//! Owns the sysconf and clock_gettime calls; it never reads /proc itself.

/// The unit of the CPU times in /proc (USER_HZ; 100 on every common Linux).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The size of a memory page in bytes (the unit of the RSS in /proc/PID/stat).
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// CLOCK_MONOTONIC in microseconds: what systemd's MONOTONIC_USEC= means.
pub fn monotonic_micros() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the kernel to fill; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_plausible() {
        assert!((10..=10_000).contains(&clock_ticks_per_second()));
        assert!(page_size().is_power_of_two() && page_size() >= 4096);
        let (a, b) = (monotonic_micros(), monotonic_micros());
        assert!(a > 0 && b >= a);
    }
}
