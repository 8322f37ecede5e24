//! Giving the allocator's free memory back to the kernel, and when.
//!
//! Owns the malloc_trim and mallopt calls. It never frees anything itself: it only asks the C
//! allocator (glibc) to return the pages of memory already freed, or to keep them.

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
}
