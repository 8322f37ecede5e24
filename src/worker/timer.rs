//! A coarse timer wheel for connection deadlines: O(1) to arm, O(expired) to advance.
//!
//! Owns only (key, tick) entries. It never cancels: a connection keeps its own current deadline and
//! the tick its live entry is armed for, and the worker treats any entry that no longer matches as
//! stale. Moving a deadline later therefore costs nothing; only moving it earlier arms a new entry.

use super::slab::Key;

/// Milliseconds per tick: deadlines are accurate to about this much.
pub const TICK_MS: u64 = 100;
const SLOTS: usize = 1024;

/// Entries bucketed by `tick % SLOTS`; a bucket may hold entries for later turns of the wheel.
pub struct TimerWheel {
    slots: Vec<Vec<(Key, u64)>>,
    current: u64,
}

impl TimerWheel {
    /// An empty wheel whose clock starts at `tick`.
    pub fn new(tick: u64) -> TimerWheel {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            current: tick,
        }
    }

    /// Arms an entry for `key` at `tick` (clamped to the next tick if already past).
    pub fn arm(&mut self, key: Key, tick: u64) -> u64 {
        let tick = tick.max(self.current + 1);
        self.slots[(tick % SLOTS as u64) as usize].push((key, tick));
        tick
    }

    /// Moves the clock to `now` and appends every entry due by then to `due`.
    pub fn advance(&mut self, now: u64, due: &mut Vec<(Key, u64)>) {
        if now <= self.current {
            return;
        }
        // After a long stall, one turn of the wheel visits every bucket.
        let first = if now - self.current > SLOTS as u64 {
            now - SLOTS as u64 + 1
        } else {
            self.current + 1
        };
        for tick in first..=now {
            let bucket = &mut self.slots[(tick % SLOTS as u64) as usize];
            let mut i = 0;
            while i < bucket.len() {
                if bucket[i].1 <= now {
                    due.push(bucket.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.current = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::slab::Slab;

    fn keys(n: usize) -> Vec<Key> {
        let mut slab = Slab::default();
        (0..n).map(|i| slab.insert(i)).collect()
    }

    #[test]
    fn entries_fire_at_their_tick_and_not_before() {
        let k = keys(3);
        let mut wheel = TimerWheel::new(0);
        wheel.arm(k[0], 5);
        wheel.arm(k[1], 5 + SLOTS as u64); // same bucket, next turn
        wheel.arm(k[2], 2);
        let mut due = Vec::new();
        wheel.advance(4, &mut due);
        assert_eq!(due, vec![(k[2], 2)]);
        due.clear();
        wheel.advance(5, &mut due);
        assert_eq!(due, vec![(k[0], 5)]);
        due.clear();
        wheel.advance(5 + SLOTS as u64, &mut due);
        assert_eq!(due, vec![(k[1], 5 + SLOTS as u64)]);
    }

    #[test]
    fn a_long_stall_still_fires_everything_due() {
        let k = keys(2);
        let mut wheel = TimerWheel::new(10);
        wheel.arm(k[0], 11);
        wheel.arm(k[1], 3000);
        let mut due = Vec::new();
        wheel.advance(5000, &mut due);
        due.sort_by_key(|e| e.1);
        assert_eq!(due, vec![(k[0], 11), (k[1], 3000)]);
    }

    #[test]
    fn arming_in_the_past_fires_on_the_next_tick() {
        let k = keys(1);
        let mut wheel = TimerWheel::new(100);
        assert_eq!(wheel.arm(k[0], 50), 101);
        let mut due = Vec::new();
        wheel.advance(101, &mut due);
        assert_eq!(due.len(), 1);
    }
}
