//! Process-wide leveled logging to stderr (journald picks it up under systemd).
//!
//! Owns the global level and whether lines start with an RFC 3339 UTC timestamp: they do,
//! unless stderr is journald's stream, which stamps every line itself. Must never be called
//! per request on a hot path: workers log lifecycle events and errors, the supervisor logs
//! progress and summaries.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How much to log; each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    /// Parses `error`, `warn`, `info` or `debug` (case-insensitive).
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    /// The level's name as `--log-level` takes it.
    pub fn label(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the process-wide level; called once by the supervisor after the config is read.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages at `level` are printed.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

static TIMESTAMPS: AtomicBool = AtomicBool::new(true);

/// Decides, once at start, whether lines carry a timestamp: not when stderr is journald's
/// stream. systemd sets `JOURNAL_STREAM=<device>:<inode>` for a service whose stderr it
/// connected to the journal; a child whose stderr was redirected inherits the variable, so
/// it counts only when fd 2 is still that very stream.
pub fn init_timestamps() {
    let journal = std::env::var("JOURNAL_STREAM").ok();
    let stderr = crate::sys::device_and_inode(std::io::stderr().as_fd()).ok();
    let to_journal = is_journal_stream(journal.as_deref(), stderr);
    TIMESTAMPS.store(!to_journal, Ordering::Relaxed);
}

/// Whether `JOURNAL_STREAM` (`"<device>:<inode>"`, decimal) names the `stderr` identity.
fn is_journal_stream(variable: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(variable), Some((device, inode))) = (variable, stderr) else {
        return false;
    };
    let Some((d, i)) = variable.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(device) && i.parse() == Ok(inode)
}

/// Writes one line; use the `error!`/`warn!`/`info!`/`debug!` macros instead.
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("percore");
    let stamp = match TIMESTAMPS.load(Ordering::Relaxed) {
        true => format!("{} ", rfc3339(SystemTime::now())),
        false => String::new(),
    };
    // One write per line so lines from different threads never interleave.
    let line = format!("{stamp}percore[{name}] {}: {args}\n", level.label());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `time` in UTC as RFC 3339 with milliseconds, e.g. `2026-11-29T20:31:05.123Z`; times before
/// 1970 (a clock set far back) show as the epoch.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: Howard Hinnant's `civil_from_days`
/// ("chrono-Compatible Low-Level Date Algorithms"), for days on or after the epoch. The year
/// is shifted to start on 1 March so that the leap day is the last day of a year.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097; // 400-year eras of 146,097 days
    let doe = z - era * 146_097; // day of the era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of the era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year, [0, 365]
    let mp = (5 * doy + 2) / 153; // March-based month, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[macro_export]
macro_rules! error { ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Error) { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) } } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Warn) { $crate::log::write($crate::log::Level::Warn, format_args!($($t)*)) } } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Info) { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) } } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Debug) { $crate::log::write($crate::log::Level::Debug, format_args!($($t)*)) } } }

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    }

    #[test]
    fn known_dates() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (86_399, 999, "1970-01-01T23:59:59.999Z"),
            (951_782_400, 1, "2000-02-29T00:00:00.001Z"),
            (978_307_199, 0, "2000-12-31T23:59:59.000Z"),
            (1_234_567_890, 120, "2009-02-13T23:31:30.120Z"),
            (1_709_164_800, 0, "2024-02-29T00:00:00.000Z"),
            (1_795_984_265, 123, "2026-11-29T20:31:05.123Z"),
            (4_107_369_600, 0, "2100-02-27T00:00:00.000Z"),
            (4_107_456_000, 0, "2100-02-28T00:00:00.000Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59.000Z"),
        ];
        for (secs, millis, want) in cases {
            assert_eq!(at(secs, millis), want, "{secs}");
        }
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    /// The slow twin: httpdate's IMF-fixdate ("Fri, 13 Feb 2009 23:31:30 GMT") of the same
    /// second, re-ordered, across every kind of year up to 9999.
    #[test]
    fn agrees_with_httpdate_from_1970_to_9999() {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mut secs = 0u64;
        while secs < 253_402_300_800 {
            let time = UNIX_EPOCH + Duration::from_secs(secs);
            let imf = httpdate::fmt_http_date(time);
            let parts: Vec<&str> = imf.split(' ').collect();
            let month = MONTHS.iter().position(|m| *m == parts[2]).unwrap_or(99) + 1;
            let want = format!("{}-{month:02}-{}T{}.000Z", parts[3], parts[1], parts[4]);
            assert_eq!(rfc3339(time), want, "{imf}");
            secs += 7_919 * 3_607; // a prime number of hours and seconds: every hour and month
        }
    }

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        let stderr = Some((64_769, 12_345));
        assert!(is_journal_stream(Some("64769:12345"), stderr));
        assert!(is_journal_stream(Some("64769:12345\n"), stderr));
        assert!(!is_journal_stream(Some("64769:12346"), stderr));
        assert!(!is_journal_stream(Some("64768:12345"), stderr));
        assert!(!is_journal_stream(Some("64769"), stderr));
        assert!(!is_journal_stream(Some(""), stderr));
        assert!(!is_journal_stream(Some("x:y"), stderr));
        assert!(!is_journal_stream(None, stderr));
        assert!(!is_journal_stream(Some("64769:12345"), None));
    }
}
