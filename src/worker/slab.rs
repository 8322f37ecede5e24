//! The per-worker connection slab: O(1) insert/lookup/remove with generation-tagged keys.
//!
//! Owns slot reuse only. A key names one occupancy of one slot; once that slot is freed and reused,
//! the old key no longer resolves, so a stale epoll event or timer for a closed connection is dropped
//! instead of reaching the connection that reused the slot. Knows nothing of sockets.

/// A slot index plus the generation it was issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    /// Packs the key into an epoll token. Tokens at or above [`Key::RESERVED`] are never keys.
    pub fn to_token(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The inverse of [`Key::to_token`].
    pub fn from_token(token: u64) -> Key {
        Key {
            index: token as u32,
            generation: (token >> 32) as u32,
        }
    }

    /// Tokens from here up belong to the worker's own fds (listeners, the shutdown eventfd).
    /// Generations stay below `u32::MAX / 2` (they wrap there), so no key reaches this range.
    pub const RESERVED: u64 = 1 << 63;
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// A vector of slots with a free list.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` and returns its key.
    pub fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(value);
            return Key {
                index,
                generation: slot.generation,
            };
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: 0,
            value: Some(value),
        });
        Key {
            index,
            generation: 0,
        }
    }

    /// The value for `key`, if that occupancy is still alive.
    pub fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_ref()
    }

    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_mut()
    }

    /// Removes and returns the value; the slot's generation moves on so `key` goes stale.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = (slot.generation + 1) % (u32::MAX / 2);
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// Number of live values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys of every live value (for shutdown sweeps; allocates).
    pub fn keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| Key {
                index: i as u32,
                generation: s.generation,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_key_does_not_reach_the_reused_slot() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b");
        assert_eq!(Key::from_token(b.to_token()), b);
        assert_eq!(a.index, b.index, "the slot is reused");
        assert_eq!(slab.get_mut(a), None);
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.get_mut(b).copied(), Some("b"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn tokens_stay_below_the_reserved_range() {
        let key = Key {
            index: u32::MAX,
            generation: u32::MAX / 2 - 1,
        };
        assert!(key.to_token() < Key::RESERVED);
    }

    #[test]
    fn keys_lists_live_values() {
        let mut slab = Slab::default();
        let a = slab.insert(1);
        let b = slab.insert(2);
        slab.remove(a);
        assert_eq!(slab.keys(), vec![b]);
        assert!(!slab.is_empty());
    }
}
