//! Giving the allocator's free memory back to the kernel, and when; appending to a buffer
//! without zero-filling it first.
//!
//! Owns the malloc_trim and mallopt calls, and the one write to a vector's spare capacity. It
//! never frees anything itself: it only asks the C allocator (glibc) to return the pages of
//! memory already freed, or to keep them.

/// Returns the whole free pages of every allocator arena to the kernel (glibc's
/// `malloc_trim(0)`; nothing where the C library is not glibc). Freed memory otherwise stays
/// in the process: after thousands of connections close at once, its RSS would stay at the
/// peak although the memory is reused by the next ones.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointer; it walks the allocator's own free lists under the
    // allocator's locks and only advises the kernel about pages no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Lets each allocator arena keep up to `bytes` of freed memory at its top rather than hand it
/// back to the kernel at the free that crosses glibc's default threshold (128 KiB,
/// `M_TRIM_THRESHOLD`): a worker whose connections give back a few MiB of buffers after one
/// batch would otherwise take them again, page by page in page faults, for the next.
/// [`release_free_memory`] still returns everything free, on demand. Nothing where the C
/// library is not glibc. False if glibc refused the value.
pub fn keep_freed_memory(bytes: usize) -> bool {
    #[cfg(target_env = "gnu")]
    {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes no pointer; it sets one of the allocator's parameters under
        // its lock.
        unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, bytes) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = bytes;
        true
    }
}

/// Appends `src` to `out` with byte `i` XORed with `pattern[i % 8]`, in one pass that writes
/// each new byte once. Safe code would have to zero the new bytes first (`resize`) and then
/// write them again, or copy and then XOR in place: either touches them twice, and for a
/// 16 KiB WebSocket echo that was 2–4 % of the server's CPU (`compare.sh ws16k`).
pub fn extend_xored(out: &mut Vec<u8>, src: &[u8], pattern: [u8; 8]) {
    let len = src.len();
    let start = out.len();
    out.reserve(len);
    let Some(spare) = out.spare_capacity_mut().get_mut(..len) else {
        return;
    };
    let word = u64::from_ne_bytes(pattern);
    let mut to = spare.chunks_exact_mut(8);
    let mut from = src.chunks_exact(8);
    for (to, from) in (&mut to).zip(&mut from) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(from);
        let xored = (u64::from_ne_bytes(bytes) ^ word).to_ne_bytes();
        for (to, byte) in to.iter_mut().zip(xored) {
            to.write(byte);
        }
    }
    for ((to, from), p) in to
        .into_remainder()
        .iter_mut()
        .zip(from.remainder())
        .zip(pattern)
    {
        to.write(from ^ p);
    }
    // The loops above initialised all `len` elements of `spare` (after `start`, within the
    // reserved capacity): the 8-byte chunks of two slices of length `len` pair up all but the
    // last `len % 8`, and the remainders, `len % 8` (< 8 pattern bytes) long, cover those.
    // SAFETY: every element up to `start + len` is initialised (above), within capacity.
    unsafe { out.set_len(start + len) }
}

#[cfg(test)]
mod tests {
    /// Memory freed by a burst of allocations leaves the resident set once released.
    #[test]
    fn released_memory_leaves_the_resident_set() {
        let resident = || -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        // 64 MiB in small pieces (below the mmap threshold), each touched, then freed but the
        // last one, which keeps the heap's top in use so nothing is trimmed on its own. Other
        // tests allocate meanwhile in the same process: three tries, one must show the drop.
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut pieces: Vec<Vec<u8>> = (0..16_384).map(|_| vec![1u8; 4096]).collect();
            let keep = pieces.pop();
            drop(pieces);
            let before = resident();
            super::release_free_memory();
            let after = resident();
            drop(keep);
            if after + 32 * 1024 < before {
                return;
            }
            seen.push((before, after));
        }
        panic!("RSS in KiB before and after each release: {seen:?}");
    }

    /// Every appended byte is the source byte XORed with its pattern byte, whatever the
    /// length and whatever the vector held before; nothing before it changes.
    #[test]
    fn extend_xored_writes_every_byte_once_xored() {
        let pattern = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
        for len in 0..40 {
            for held in [0usize, 3, 8] {
                let src: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
                let mut out = vec![0xEE; held];
                super::extend_xored(&mut out, &src, pattern);
                let mut expected = vec![0xEE; held];
                expected.extend(src.iter().enumerate().map(|(i, b)| b ^ pattern[i % 8]));
                assert_eq!(out, expected, "len {len} held {held}");
            }
        }
    }
}
