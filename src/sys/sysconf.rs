//! System constants a process needs to read /proc: clock ticks per second and the page size.
//!
//! Owns the sysconf calls; it never reads /proc itself.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_plausible() {
        assert!((10..=10_000).contains(&clock_ticks_per_second()));
        assert!(page_size().is_power_of_two() && page_size() >= 4096);
    }
}
