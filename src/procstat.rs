//! The process's own figures for the standard `process_*` metric families (CPU time, memory,
//! descriptors, start time), read from /proc/self when /metrics is scraped.
//!
//! Owns the parsing of /proc/self/stat, /proc/self/limits, /proc/self/fd and /proc/stat's
//! boot time. It must never run on a worker: the admin thread asks, at scrape time. Where a
//! file cannot be read, the figure is left out rather than made up.

use std::fs;

/// What /proc says about this process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The open-files soft limit.
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// Reads the figures of the calling process.
pub fn read() -> ProcessStats {
    let ticks = crate::sys::clock_ticks_per_second() as f64;
    let stat = fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| parse_stat(&text));
    let boot = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| boot_time(&text));
    ProcessStats {
        cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / ticks),
        resident_bytes: stat.map(|s| s.rss_pages.saturating_mul(crate::sys::page_size())),
        virtual_bytes: stat.map(|s| s.vsize),
        open_fds: fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64),
        max_fds: fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| open_files_soft_limit(&text)),
        start_time_seconds: stat
            .zip(boot)
            .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / ticks),
    }
}

/// The fields of /proc/PID/stat that the metrics use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

/// proc(5): fields are counted from 1; the command name (field 2) is in parentheses and may
/// hold spaces, so counting starts after its closing parenthesis, at field 3.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        start_ticks: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

/// `btime <seconds since the epoch>` from /proc/stat.
fn boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The soft limit of `Max open files` from /proc/PID/limits.
fn open_files_soft_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parentheses() {
        let text = "4242 (percore (w 1)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 \
                    5 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                utime: 250,
                stime: 75,
                start_ticks: 98765,
                vsize: 123_456_789,
                rss_pages: 2048,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn boot_time_and_limits() {
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1764400000\nprocesses 9\n"),
            Some(1_764_400_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            20000                20000                files     \n";
        assert_eq!(open_files_soft_limit(limits), Some(20_000));
    }

    #[test]
    fn this_process_has_figures() {
        let stats = read();
        assert!(stats.resident_bytes.is_some_and(|b| b > 0), "{stats:?}");
        assert!(stats.open_fds.is_some_and(|n| n >= 3), "{stats:?}");
        assert!(stats.max_fds.is_some_and(|n| n > 0), "{stats:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        assert!(
            stats
                .start_time_seconds
                .is_some_and(|t| t > now - 86_400.0 && t <= now + 1.0),
            "{stats:?}"
        );
    }
}
