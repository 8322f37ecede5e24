//! The identity of an open descriptor: the device and inode fstat(2) reports for it.
//!
//! Owns the fstat call. Callers compare identities (is stderr journald's stream? which
//! socket is this listener in /proc?); this module never decides what a match means.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The device and inode number of the file, pipe or socket open on `fd`.
pub fn device_and_inode(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    // SAFETY: `stat` is plain data, for which all zeroes is a valid value; fstat overwrites it.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: `fd` is open for the call and `st` is a valid, writable stat buffer.
    syscall!(fstat(fd.as_raw_fd(), &mut st))?;
    // st_dev and st_ino are u64 on 64-bit Linux; the casts keep 32-bit targets compiling.
    #[allow(clippy::unnecessary_cast)]
    Ok((st.st_dev as u64, st.st_ino as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn matches_what_std_reports_and_tells_descriptors_apart() {
        let a = tempfile::tempfile().expect("tempfile");
        let b = tempfile::tempfile().expect("tempfile");
        let meta = a.metadata().expect("metadata");
        let id = device_and_inode(a.as_fd()).expect("fstat");
        assert_eq!(id, (meta.dev(), meta.ino()));
        assert_ne!(id, device_and_inode(b.as_fd()).expect("fstat"));
        let (one, other) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let one = device_and_inode(one.as_fd()).expect("fstat");
        assert_ne!(one, device_and_inode(other.as_fd()).expect("fstat"));
        assert_ne!(one, id);
    }
}
