//! The document root: a directory descriptor that files are opened beneath, never outside.
//!
//! Owns the openat2(RESOLVE_BENEATH) call and its fallback for kernels or sandboxes without it.
//! It must never decide which request path maps to which file name (that is `files`), nor read
//! or send file contents.

use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::retry_interrupted;

/// Set once openat2 has failed with ENOSYS or EPERM (an old kernel or a seccomp filter):
/// from then on every open takes the fallback path without trying openat2 first.
static OPENAT2_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// Flags of every file opened for serving. O_NONBLOCK does nothing to a regular file, but
/// keeps a FIFO planted in the root from blocking the worker in open(2).
const OPEN_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;

/// The document root, opened once per worker. Files are opened relative to it so that nothing
/// outside it can be reached.
#[derive(Debug)]
pub struct RootDir {
    dir: OwnedFd,
    canonical: PathBuf,
}

/// What fstatat reports about a path: identity, size, mtime, and whether it is a regular file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathStat {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    pub is_file: bool,
}

impl RootDir {
    /// Opens the canonical form of `path` with O_PATH | O_DIRECTORY | O_CLOEXEC.
    pub fn open(path: &Path) -> io::Result<RootDir> {
        let canonical = fs::canonicalize(path)?;
        let c_path = CString::new(canonical.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
        // SAFETY: `c_path` is a NUL-terminated string that lives across the call.
        let raw = retry_interrupted(|| syscall!(open(c_path.as_ptr(), flags)))?;
        // SAFETY: `raw` was just returned by open and nothing else owns it.
        let dir = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(RootDir { dir, canonical })
    }

    /// The canonical path the root was opened at.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Opens `rel` (relative, no leading '/'; empty means the root itself) read-only.
    ///
    /// "..", absolute paths, absolute symlinks, symlinks that lead outside the root, /proc magic
    /// links and symlink loops all fail with `ErrorKind::NotFound` (ENOENT), so that they answer
    /// like a missing file. Symlinks that stay inside the root work.
    /// The caller must still check `metadata()`: the result may be a directory, a FIFO or a device.
    pub fn open_file(&self, rel: &CStr) -> io::Result<File> {
        let rel = if rel.is_empty() { c"." } else { rel };
        let result = if OPENAT2_UNAVAILABLE.load(Ordering::Relaxed) {
            self.open_and_verify(rel)
        } else {
            match self.open_beneath(rel) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                    OPENAT2_UNAVAILABLE.store(true, Ordering::Relaxed);
                    self.open_and_verify(rel)
                }
                result => result,
            }
        };
        // EXDEV: the path would leave the root; ELOOP: a magic link or a symlink loop.
        result.map_err(|e| match e.raw_os_error() {
            Some(libc::EXDEV | libc::ELOOP) => escape_error(),
            _ => e,
        })
    }

    /// fstatat of `rel` relative to the root's descriptor, following symlinks as an open would.
    /// It holds no descriptor (so it works at the open-files limit) and does not confine the
    /// lookup to the root: use it only to confirm that a path still names a file already open,
    /// by comparing identities, never to find something to serve.
    pub fn stat(&self, rel: &CStr) -> io::Result<PathStat> {
        let rel = if rel.is_empty() { c"." } else { rel };
        // SAFETY: `stat` is plain data, for which all zeroes is a valid value; fstatat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        retry_interrupted(|| {
            // SAFETY: the root fd is open, `rel` is NUL-terminated and `st` is a valid, writable
            // stat buffer for the call.
            syscall!(fstatat(self.dir.as_raw_fd(), rel.as_ptr(), &mut st, 0))
        })?;
        // The field types differ between targets; on 64-bit Linux these casts change nothing.
        #[allow(clippy::unnecessary_cast)]
        Ok(PathStat {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            len: u64::try_from(st.st_size).unwrap_or(0),
            mtime_secs: st.st_mtime as i64,
            mtime_nanos: u32::try_from(st.st_mtime_nsec.clamp(0, 999_999_999)).unwrap_or(0),
            is_file: st.st_mode & libc::S_IFMT == libc::S_IFREG,
        })
    }

    /// openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: the kernel refuses to leave the root.
    fn open_beneath(&self, rel: &CStr) -> io::Result<File> {
        // SAFETY: open_how is a struct of plain integers, for which all zeroes is valid
        // (and the documented way to ask for no options).
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = OPEN_FLAGS as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        let raw = retry_interrupted(|| {
            // SAFETY: the root fd is open, `rel` is NUL-terminated, and `how` is a valid
            // open_how whose exact size is passed; the kernel only reads both.
            syscall!(syscall(
                libc::SYS_openat2,
                self.dir.as_raw_fd(),
                rel.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>()
            ))
        })?;
        let raw = RawFd::try_from(raw).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        Ok(owned_file(raw))
    }

    /// Without openat2: openat, then ask /proc where the descriptor really points. Anything
    /// not under the canonical root is closed and reported as missing.
    fn open_and_verify(&self, rel: &CStr) -> io::Result<File> {
        let raw = retry_interrupted(|| {
            // SAFETY: the root fd is open and `rel` is NUL-terminated for the call.
            syscall!(openat(self.dir.as_raw_fd(), rel.as_ptr(), OPEN_FLAGS))
        })?;
        let file = owned_file(raw);
        match fs::read_link(format!("/proc/self/fd/{raw}")) {
            Ok(target) if target.starts_with(&self.canonical) => Ok(file),
            _ => Err(escape_error()),
        }
    }
}

/// What lstat says a directory entry is (a symlink is not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// One name in a directory, as lstat describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub kind: EntryKind,
    pub len: u64,
    pub mtime_secs: i64,
}

/// Up to `max` entries of the directory open as `dir` ("." and ".." left out), and whether it
/// held more. The directory is read through its descriptor's /proc/self/fd link, so exactly the
/// directory that was opened beneath the root is listed, whatever its path names meanwhile; an
/// entry that vanishes between being read and being stat'ed is left out.
pub fn read_dir_entries(dir: &File, max: usize) -> io::Result<(Vec<DirEntry>, bool)> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let Ok(entry) = entry else {
            continue;
        };
        if entries.len() == max {
            return Ok((entries, true));
        }
        // DirEntry::metadata is fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW) on the directory read.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let kind = match meta.file_type() {
            t if t.is_file() => EntryKind::File,
            t if t.is_dir() => EntryKind::Directory,
            t if t.is_symlink() => EntryKind::Symlink,
            _ => EntryKind::Other,
        };
        entries.push(DirEntry {
            name: entry.file_name().as_bytes().to_vec(),
            kind,
            len: meta.len(),
            mtime_secs: std::os::unix::fs::MetadataExt::mtime(&meta),
        });
    }
    Ok((entries, false))
}

impl AsFd for RootDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

fn owned_file(raw: RawFd) -> File {
    // SAFETY: `raw` was just returned by the kernel and nothing else owns it.
    File::from(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// An attempt to leave the root looks exactly like a missing file.
fn escape_error() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    /// A temporary tree: outside/secret, outside/root/{index.html, sub/page.txt} and links.
    struct Tree {
        _dir: tempfile::TempDir,
        root: RootDir,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path();
        let root = outside.join("root");
        fs::create_dir_all(root.join("sub")).expect("mkdir");
        fs::write(outside.join("secret"), b"secret").expect("write");
        fs::write(root.join("index.html"), b"<h1>hi</h1>").expect("write");
        fs::write(root.join("sub/page.txt"), b"page").expect("write");
        symlink("/etc/passwd", root.join("passwd")).expect("symlink");
        symlink("../secret", root.join("escape")).expect("symlink");
        symlink("sub/page.txt", root.join("inside")).expect("symlink");
        symlink("../index.html", root.join("sub/up")).expect("symlink");
        symlink(outside, root.join("outdir")).expect("symlink");
        symlink("loop", root.join("loop")).expect("symlink");
        let root = RootDir::open(&root).expect("open root");
        Tree { _dir: dir, root }
    }

    fn read(file: io::Result<File>) -> io::Result<Vec<u8>> {
        let mut content = Vec::new();
        file?.read_to_end(&mut content)?;
        Ok(content)
    }

    /// Opens `rel` both ways (openat2 and the /proc fallback) and expects the same outcome.
    fn check(tree: &Tree, rel: &CStr, expected: Result<&[u8], io::ErrorKind>) {
        let public = read(tree.root.open_file(rel)).map_err(|e| e.kind());
        let fallback = read(tree.root.open_and_verify(rel)).map_err(|e| e.kind());
        let expected = expected.map(<[u8]>::to_vec);
        assert_eq!(public, expected, "open_file({rel:?})");
        assert_eq!(fallback, expected, "open_and_verify({rel:?})");
    }

    #[test]
    fn files_inside_the_root_open() {
        let tree = tree();
        check(&tree, c"index.html", Ok(b"<h1>hi</h1>"));
        check(&tree, c"sub/page.txt", Ok(b"page"));
        check(&tree, c"sub/../index.html", Ok(b"<h1>hi</h1>"));
        check(&tree, c"missing", Err(io::ErrorKind::NotFound));
        check(&tree, c"index.html/", Err(io::ErrorKind::NotADirectory));
    }

    #[test]
    fn symlinks_staying_inside_work() {
        let tree = tree();
        check(&tree, c"inside", Ok(b"page"));
        check(&tree, c"sub/up", Ok(b"<h1>hi</h1>"));
    }

    #[test]
    fn escapes_fail_as_not_found() {
        let tree = tree();
        for rel in [
            c"../secret",
            c"sub/../../secret",
            c"/etc/passwd",
            c"passwd",
            c"escape",
            c"outdir/secret",
        ] {
            check(&tree, rel, Err(io::ErrorKind::NotFound));
        }
        let looped = tree.root.open_file(c"loop").map(drop).map_err(|e| e.kind());
        assert_eq!(looped, Err(io::ErrorKind::NotFound));
    }

    #[test]
    fn the_root_itself_opens_as_a_directory() {
        let tree = tree();
        let root = tree.root.open_file(c"").expect("root");
        assert!(root.metadata().expect("metadata").is_dir());
        let fallback = tree
            .root
            .open_and_verify(c".")
            .expect("root by the fallback");
        assert!(fallback.metadata().expect("metadata").is_dir());
        assert!(tree
            .root
            .open_file(c"sub")
            .expect("sub")
            .metadata()
            .expect("meta")
            .is_dir());
    }

    #[test]
    fn root_path_is_canonical() {
        let tree = tree();
        assert!(tree.root.path().is_absolute());
        assert!(tree.root.path().ends_with("root"));
        assert!(RootDir::open(Path::new("/nonexistent/percore")).is_err());
    }

    #[test]
    fn root_can_move_to_a_worker_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RootDir>();
    }
}
