//! The HTTP date format (IMF-fixdate) for the `Date` field.
//!
//! This file only formats a time the caller passes in; it never reads the clock itself.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last second httpdate can format: 9999-12-31 23:59:59 UTC.
const LATEST: Duration = Duration::from_secs(253_402_300_799);

/// Formats `t` as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
///
/// Times outside 1970..=9999 are clamped, so a strange clock never panics.
pub fn http_date(t: SystemTime) -> [u8; 29] {
    let t = t.clamp(UNIX_EPOCH, UNIX_EPOCH + LATEST);
    let mut out = [b' '; 29];
    // An IMF-fixdate between 1970 and 9999 is always exactly 29 bytes, so the write fits.
    let _ = write!(&mut out[..], "{}", httpdate::HttpDate::from(t));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(t: SystemTime, expected: &str) {
        assert_eq!(String::from_utf8_lossy(&http_date(t)), expected);
    }

    #[test]
    fn formats_imf_fixdate() {
        check(
            UNIX_EPOCH + Duration::from_secs(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT",
        );
        check(UNIX_EPOCH, "Thu, 01 Jan 1970 00:00:00 GMT");
        check(
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_999),
            "Tue, 14 Nov 2023 22:13:20 GMT",
        );
    }

    #[test]
    fn clamps_out_of_range_times() {
        check(
            UNIX_EPOCH - Duration::from_secs(1),
            "Thu, 01 Jan 1970 00:00:00 GMT",
        );
        check(
            UNIX_EPOCH + Duration::from_secs(300_000_000_000),
            "Fri, 31 Dec 9999 23:59:59 GMT",
        );
    }
}
