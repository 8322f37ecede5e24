//! Rate limiting for warnings that a fault can trigger per request or per accept.
//!
//! Owns only counts and the second of the latest line: the first occurrence is told at once,
//! later ones are counted and told together at most once per interval, so a flood of the same
//! fault costs one log line per interval instead of one per request (the log must never be on
//! a hot path). It never logs itself: the caller words the line with the count it gets.

/// Counts occurrences of one kind of fault and says when a line about them is due.
#[derive(Debug)]
pub struct Throttle {
    /// Seconds between two lines.
    interval: u64,
    /// The second of the latest line, if any.
    last_line: Option<u64>,
    /// Occurrences since the latest line.
    pending: u64,
}

impl Throttle {
    /// A throttle allowing one line per `interval_secs` seconds.
    pub const fn new(interval_secs: u64) -> Throttle {
        Throttle {
            interval: interval_secs,
            last_line: None,
            pending: 0,
        }
    }

    /// Counts one occurrence at `now_secs` (wall-clock seconds) and returns how many
    /// occurrences a line logged now must tell, or `None` while the interval since the
    /// previous line lasts.
    pub fn hit(&mut self, now_secs: u64) -> Option<u64> {
        self.pending = self.pending.saturating_add(1);
        self.take(now_secs)
    }

    /// The occurrences not told yet, once the interval since the previous line has passed:
    /// for a periodic call, so the last ones of a burst are told too. A clock that went back
    /// counts as the interval having passed, so it cannot silence the warning.
    pub fn take(&mut self, now_secs: u64) -> Option<u64> {
        if self.pending == 0 {
            return None;
        }
        if let Some(last) = self.last_line {
            if now_secs >= last && now_secs < last.saturating_add(self.interval) {
                return None;
            }
        }
        self.last_line = Some(now_secs);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `(second, hit or take)` steps and checks what each returns.
    fn check(interval: u64, steps: &[(u64, bool)], expected: &[Option<u64>]) {
        let mut throttle = Throttle::new(interval);
        let got: Vec<Option<u64>> = steps
            .iter()
            .map(|&(now, hit)| {
                if hit {
                    throttle.hit(now)
                } else {
                    throttle.take(now)
                }
            })
            .collect();
        assert_eq!(got, expected, "{steps:?}");
    }

    #[test]
    fn the_first_occurrence_is_told_at_once_and_a_burst_once_per_interval() {
        let (hit, take) = (true, false);
        check(
            1,
            &[
                (100, hit),
                (100, hit),
                (100, hit),
                (100, take),
                (101, take),
                (101, take),
                (101, hit),
                (102, hit),
                (102, take),
            ],
            &[
                Some(1),
                None,
                None,
                None,
                Some(2),
                None,
                None,
                Some(2),
                None,
            ],
        );
    }

    #[test]
    fn nothing_pending_tells_nothing() {
        check(1, &[(5, false), (6, false)], &[None, None]);
    }

    #[test]
    fn a_longer_interval_holds_lines_back_longer() {
        let (hit, take) = (true, false);
        check(
            60,
            &[(0, hit), (1, hit), (59, take), (60, take), (61, hit)],
            &[Some(1), None, None, Some(1), None],
        );
    }

    #[test]
    fn a_clock_that_went_back_does_not_silence_the_warning() {
        check(60, &[(1000, true), (10, true)], &[Some(1), Some(1)]);
    }
}
