//! CPU affinity: which CPUs this process may use, and pinning a thread to one of them.
//!
//! Owns sched_getaffinity/sched_setaffinity. It must never choose which worker goes where:
//! the supervisor decides, this only carries it out.

use std::io;
use std::mem;

/// How many CPUs a `cpu_set_t` can describe (1024 with glibc).
const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;

/// The CPUs the calling thread may run on (sched_getaffinity(0)), sorted ascending.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let mut set = empty_set();
    // SAFETY: `set` is a valid cpu_set_t of the size passed; the kernel writes into it.
    syscall!(sched_getaffinity(
        0,
        mem::size_of::<libc::cpu_set_t>(),
        &mut set
    ))?;
    // SAFETY: every index checked is below CPU_SETSIZE, inside the set.
    Ok((0..MAX_CPUS)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread (sched_setaffinity(0)) to the single CPU `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= MAX_CPUS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut set = empty_set();
    // SAFETY: `cpu` is below CPU_SETSIZE, so the bit lies inside the set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; the kernel only reads it.
    syscall!(sched_setaffinity(
        0,
        mem::size_of::<libc::cpu_set_t>(),
        &set
    ))?;
    Ok(())
}

fn empty_set() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set (what CPU_ZERO does).
    unsafe { mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn some_cpus_are_allowed_in_order() {
        let cpus = allowed_cpus().expect("affinity");
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn pinning_to_the_first_allowed_cpu_sticks() {
        let first = allowed_cpus().expect("affinity")[0];
        // A thread of its own, so the test harness's threads keep their affinity.
        let pinned = thread::spawn(move || {
            pin_current_thread(first).expect("pin");
            allowed_cpus().expect("affinity")
        });
        assert_eq!(pinned.join().expect("thread"), vec![first]);
    }

    #[test]
    fn pinning_out_of_range_is_refused() {
        let err = pin_current_thread(MAX_CPUS).expect_err("out of range");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }
}
