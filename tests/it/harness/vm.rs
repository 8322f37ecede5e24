//! A small QEMU VM for tests that need kernel features this host may lack: Debian 12's cloud
//! kernel with its `tls.ko` module, which gives the kernel TLS ULP (`tcp_available_ulp` lists
//! `tls`), and the cipher modules kernel TLS encrypts with. Tests put the real percore binary and real clients (curl, openssl) into it and run a
//! shell script that drives them over the guest's loopback.
//!
//! This module owns the guest: its initramfs (busybox, the chosen binaries with every shared
//! library they load, the files a test adds), the `/init` that sets the guest up and frames the
//! script's output, and the QEMU process, which runs under TCG (no KVM: it boots in about
//! 2.5 s here) in a temporary directory of its own, so tests run in parallel; it is killed by
//! PID when a run times out.
//!
//! What it needs, and the panic that names how to get it when missing (never a silent skip):
//! the kernel, `vmlinuz` and its TLS and cipher modules, in `$PERCORE_VM_KERNEL` or
//! `target/vm-kernel` (made by
//! `tests/vm/fetch-kernel.sh`), and `qemu-system-x86_64` and a static `busybox`
//! (`apt-get install qemu-system-x86 busybox-static`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Guest RAM: the initramfs stays in it (the percore debug binary alone is some 60 MB) beside a
/// Rust server and its clients.
const MEMORY_MIB: u32 = 512;
/// Guest CPUs: two, so a worker and a client each have one (multi-threaded TCG runs them on
/// two host threads); measured here, the guest boots as fast with two as with one (2-3 s).
const CPUS: u32 = 2;
/// What to run when QEMU or busybox is missing (the kernel's is in `Guest::new`).
const INSTALL_HINT: &str = "run `apt-get install qemu-system-x86 busybox-static`";

/// What goes into the guest at one path.
enum Source {
    /// A host file, read when the initramfs is written (symbolic links followed).
    Host(PathBuf),
    Bytes(Vec<u8>),
}

struct Entry {
    source: Source,
    mode: u32,
}

/// A guest to build and then run once: see [`Guest::run`].
pub struct Guest {
    vmlinuz: PathBuf,
    qemu: PathBuf,
    /// Guest path → content. A `BTreeMap`, so parents come before their children when
    /// written and the initramfs is the same for the same guest.
    files: BTreeMap<String, Entry>,
}

impl Guest {
    /// A guest with busybox, the kernel TLS module and, where the host has it, OpenSSL's config
    /// file (`/usr/lib/ssl/openssl.cnf`, so `openssl s_client` runs without warnings). Panics,
    /// saying what to run, when the kernel, QEMU or busybox is missing.
    pub fn new() -> Guest {
        let (dir, from_env) = kernel_dir();
        let vmlinuz = dir.join("vmlinuz");
        let version = std::fs::read_to_string(dir.join("version")).unwrap_or_default();
        let modules = dir.join("lib/modules").join(version.trim());
        let tls_ko = modules.join("kernel/net/tls/tls.ko");
        for file in [&vmlinuz, &tls_ko] {
            assert!(
                file.is_file(),
                "the VM tests need {}, which is missing: run `tests/vm/fetch-kernel.sh{}` (as \
                 root on Debian 12, after `apt-get update`; `.ci/run` does it), or point \
                 PERCORE_VM_KERNEL at a directory that script filled",
                file.display(),
                if from_env {
                    format!(" {}", dir.display())
                } else {
                    String::new()
                }
            );
        }
        let qemu = find_program("qemu-system-x86_64").unwrap_or_else(|| {
            panic!("the VM tests need qemu-system-x86_64, which is not in PATH: {INSTALL_HINT}")
        });
        let busybox = find_program("busybox").unwrap_or_else(|| {
            panic!("the VM tests need busybox, which is not in PATH: {INSTALL_HINT}")
        });
        let mut guest = Guest {
            vmlinuz,
            qemu,
            files: BTreeMap::new(),
        };
        // /init runs as `#!/bin/busybox sh`; with busybox-static it has no libraries, but a
        // dynamic busybox gets its own like any binary.
        guest.add_host("/bin/busybox", &busybox, 0o755);
        guest.add_libraries(&busybox);
        guest.add_tree(&format!("/lib/modules/{}", version.trim()), &modules);
        let cnf = Path::new("/usr/lib/ssl/openssl.cnf");
        if cnf.is_file() {
            guest.add_host("/usr/lib/ssl/openssl.cnf", cnf, 0o644);
        }
        guest.add_bytes("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
        guest.add_bytes("/etc/group", b"root:x:0:\n", 0o644);
        guest.add_bytes(
            "/etc/hosts",
            b"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
            0o644,
        );
        guest.add_bytes("/etc/nsswitch.conf", b"hosts: files\n", 0o644);
        guest
    }

    /// The host executable at `host_path` (made absolute against the current directory, symbolic
    /// links kept as named), at the same path in the guest, with every shared library `ldd`
    /// lists for it, the ELF interpreter included, each at the path `ldd` names. Panics if
    /// `ldd` cannot resolve one of them.
    pub fn binary(mut self, host_path: &Path) -> Guest {
        let path = std::path::absolute(host_path)
            .unwrap_or_else(|e| panic!("the absolute path of {}: {e}", host_path.display()));
        let guest_path = path
            .to_str()
            .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
            .to_owned();
        self.add_host(&guest_path, &path, 0o755);
        self.add_libraries(&path);
        self
    }

    /// A file with these bytes at `guest_path` (absolute), mode 0644; its parent directories
    /// are made. Certificates, a web root's files, anything.
    pub fn file(mut self, guest_path: &str, bytes: &[u8]) -> Guest {
        self.add_bytes(guest_path, bytes, 0o644);
        self
    }

    /// Boots the guest and runs `script` under busybox `sh` (plain `sh`: begin it with `set -e`
    /// to stop at the first failing command), as root in `/root` (`HOME`), with stdin from
    /// /dev/null and `PATH` covering /usr/bin and busybox's applets in /bin.
    ///
    /// Before it, /init has mounted proc, sysfs, devtmpfs (/dev) and a tmpfs on /tmp (unless
    /// the guest has files under /tmp: it then stays the initramfs's, in memory and writable
    /// too), brought `lo` up and loaded the TLS and cipher modules, failing the run if any of
    /// that fails. After it the guest powers off, ending whatever the script left running.
    ///
    /// Returns what the script wrote, stdout and stderr in the order written, exactly (the
    /// console does no newline translation), framed by markers unique to this run so that no
    /// console noise mixes in (the kernel runs `quiet loglevel=0` anyway). Panics, with the
    /// whole console, if the script exits with a status other than 0, if the guest stops
    /// without reaching the end of the script, or if it has not powered off after `timeout`
    /// (QEMU is then killed).
    pub fn run(self, script: &str, timeout: Duration) -> String {
        let tmp = tempfile::Builder::new()
            .prefix("percore-vm-")
            .tempdir()
            .unwrap_or_else(|e| panic!("a temporary directory for the VM: {e}"));
        let marker = format!("percore-vm-{:016x}", fastrand::u64(..));
        let initramfs = tmp.path().join("initramfs.cpio");
        let console = tmp.path().join("console");
        let qemu_log = tmp.path().join("qemu.log");
        self.write_initramfs(&initramfs, &init_script(&marker), script);

        let stderr = File::create(&qemu_log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", qemu_log.display()));
        let started = Instant::now();
        let mut child = Command::new(&self.qemu)
            .args(["-accel", "tcg", "-cpu", "max", "-m"])
            .arg(MEMORY_MIB.to_string())
            .arg("-smp")
            .arg(CPUS.to_string())
            // No default devices (VGA, network card, drives), no monitor, no user config: the
            // serial console is the guest's only device besides the board's own.
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-monitor", "none", "-no-reboot", "-serial"])
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(&self.vmlinuz)
            .arg("-initrd")
            .arg(&initramfs)
            // panic=-1 reboots at once on a panic, which -no-reboot turns into QEMU's exit.
            .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.qemu.display()));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    // Child::kill sends SIGKILL to this PID, QEMU's own.
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Err(e) => panic!("waiting for QEMU: {e}"),
            }
        };
        let console_text =
            String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
        let qemu_text = std::fs::read_to_string(&qemu_log).unwrap_or_default();
        let Some(status) = status else {
            panic!(
                "the VM did not power off within {timeout:?}; its console:\n{console_text}\n\
                 QEMU's stderr:\n{qemu_text}"
            );
        };
        let begin = format!("{marker}-BEGIN\n");
        let end = format!("{marker}-END ");
        let framed = console_text
            .find(&begin)
            .map(|at| &console_text[at + begin.len()..])
            .and_then(|rest| {
                rest.find(&end)
                    .map(|at| (&rest[..at], &rest[at + end.len()..]))
            });
        let Some((output, after)) = framed else {
            panic!(
                "the VM stopped ({status}, after {:.1?}) without reaching the end of the \
                 script; its console:\n{console_text}\nQEMU's stderr:\n{qemu_text}",
                started.elapsed()
            );
        };
        let exit = after.lines().next().unwrap_or_default().trim();
        assert!(
            exit == "0",
            "the script in the VM exited with status {exit}; its output:\n{output}"
        );
        output.to_owned()
    }

    fn add_host(&mut self, guest_path: &str, host_path: &Path, mode: u32) {
        let source = Source::Host(host_path.to_owned());
        self.insert(guest_path, source, mode);
    }

    /// Every file under the host directory `host_dir`, at the same place under `guest_dir`.
    fn add_tree(&mut self, guest_dir: &str, host_dir: &Path) {
        let entries = std::fs::read_dir(host_dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", host_dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", host_dir.display()));
            let name = entry.file_name();
            let name = name
                .to_str()
                .unwrap_or_else(|| panic!("{name:?} is not UTF-8"));
            let guest_path = format!("{guest_dir}/{name}");
            if entry.path().is_dir() {
                self.add_tree(&guest_path, &entry.path());
            } else {
                self.add_host(&guest_path, &entry.path(), 0o644);
            }
        }
    }

    fn add_bytes(&mut self, guest_path: &str, bytes: &[u8], mode: u32) {
        self.insert(guest_path, Source::Bytes(bytes.to_vec()), mode);
    }

    fn insert(&mut self, guest_path: &str, source: Source, mode: u32) {
        assert!(
            guest_path.starts_with('/') && !guest_path.split('/').any(|c| c == ".."),
            "a guest path must be absolute, without `..`: {guest_path:?}"
        );
        self.files
            .insert(guest_path.to_owned(), Entry { source, mode });
    }

    /// Every library `ldd` lists for `binary`, the interpreter included, at the path it names.
    fn add_libraries(&mut self, binary: &Path) {
        for lib in shared_libraries(binary) {
            let guest_path = lib
                .to_str()
                .unwrap_or_else(|| panic!("{} is not UTF-8", lib.display()))
                .to_owned();
            self.add_host(&guest_path, &lib, 0o755);
        }
    }

    /// The initramfs: a newc cpio archive (what the kernel unpacks), uncompressed, since
    /// decompressing under TCG costs more than reading the larger file.
    fn write_initramfs(&self, path: &Path, init: &str, script: &str) {
        let file =
            File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let mut cpio = Cpio::new(BufWriter::new(file));
        for dir in [
            "/bin", "/dev", "/etc", "/lib", "/proc", "/root", "/sbin", "/sys", "/tmp", "/usr",
        ] {
            cpio.dir(dir);
        }
        // The console init's stdio opens, before devtmpfs is mounted over /dev.
        cpio.char_device("/dev/console", 0o600, 5, 1);
        cpio.file("/init", 0o755, init.as_bytes());
        cpio.file("/script", 0o644, script.as_bytes());
        for (guest_path, entry) in &self.files {
            match &entry.source {
                Source::Bytes(bytes) => cpio.file(guest_path, entry.mode, bytes),
                Source::Host(host) => {
                    let bytes = std::fs::read(host)
                        .unwrap_or_else(|e| panic!("reading {}: {e}", host.display()));
                    cpio.file(guest_path, entry.mode, &bytes);
                }
            }
        }
        cpio.finish()
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

impl Default for Guest {
    fn default() -> Self {
        Guest::new()
    }
}

/// The absolute path of `program` in `PATH`, or a panic naming the package that has it.
pub fn host_program(program: &str, package: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| {
        panic!("this test needs {program}, which is not in PATH: apt-get install {package}")
    })
}

/// The kernel directory, and whether `$PERCORE_VM_KERNEL` named it; otherwise it is
/// `target/vm-kernel` in the package whose tests these are (fetch-kernel.sh's default).
fn kernel_dir() -> (PathBuf, bool) {
    match std::env::var_os("PERCORE_VM_KERNEL") {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), true),
        _ => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vm-kernel"),
            false,
        ),
    }
}

fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The libraries `ldd` lists for `binary` (`name => /path (addr)`, and the interpreter as
/// `/path (addr)`); none for a static one. The vDSO, which has no file, is left out.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap_or_else(|e| panic!("running ldd {}: {e}", binary.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let text = format!("{stdout}{stderr}");
        assert!(
            text.contains("not a dynamic executable"),
            "ldd {} failed ({}): {text}",
            binary.display(),
            out.status
        );
        return Vec::new();
    }
    let mut libs = Vec::new();
    for line in stdout.lines().map(str::trim) {
        if line.contains("statically linked") {
            continue;
        }
        assert!(
            !line.contains("not found"),
            "ldd cannot find a library of {}: {line}",
            binary.display()
        );
        let target = line.split_once("=>").map_or(line, |(_, path)| path).trim();
        let file = target.split_once(" (").map_or(target, |(path, _)| path);
        if file.starts_with('/') {
            libs.push(PathBuf::from(file));
        }
    }
    libs
}

/// The guest's /init: sets the guest up, runs /script between the markers, prints its exit
/// status and powers off. A failing setup step prints its own line and powers off without
/// the begin marker, so `run` panics with the console.
fn init_script(marker: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
# The script's bytes exactly: no CR before each LF.
stty -onlcr 2>/dev/null
fail() {{ echo "{marker}-SETUP-FAILED: $*"; poweroff -f; }}
mount -t proc proc /proc || fail mount proc
mount -t sysfs sysfs /sys || fail mount sysfs
mount -t devtmpfs devtmpfs /dev || fail mount devtmpfs
# A tmpfs, unless the guest's files are there (a binary built under /tmp): rootfs is
# in memory and writable too.
if [ -z "$(ls -A /tmp)" ]; then mount -t tmpfs tmpfs /tmp || fail mount tmpfs; fi
ip link set lo up || fail ip link set lo up
# The TLS module and the ciphers' (AES-GCM, ChaCha20-Poly1305), as a Debian system's modprobe
# loads them on first use; busybox's modprobe needs the dependency list depmod makes.
depmod || fail depmod
for module in tls gcm ghash-generic aesni-intel chacha20poly1305 chacha_generic poly1305_generic; do
    modprobe $module || fail modprobe $module
done
cd /root || fail cd /root
echo "{marker}-BEGIN"
sh /script </dev/null 2>&1
echo "{marker}-END $?"
poweroff -f
"#
    )
}

/// A writer of newc cpio archives (`070701`), the format the kernel unpacks an initramfs from.
/// It makes each file's parent directories before the file, as the kernel does not.
struct Cpio<W: Write> {
    out: W,
    written: u64,
    ino: u32,
    mtime: u32,
    dirs: std::collections::BTreeSet<String>,
    error: Option<std::io::Error>,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Cpio<W> {
        let mtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        Cpio {
            out,
            written: 0,
            ino: 0,
            mtime,
            dirs: std::collections::BTreeSet::from(["/".to_owned()]),
            error: None,
        }
    }

    fn dir(&mut self, path: &str) {
        if self.dirs.contains(path) {
            return;
        }
        self.parents(path);
        self.dirs.insert(path.to_owned());
        self.entry(path, 0o040_755, 2, (0, 0), &[]);
    }

    fn file(&mut self, path: &str, mode: u32, bytes: &[u8]) {
        self.parents(path);
        self.entry(path, 0o100_000 | mode, 1, (0, 0), bytes);
    }

    fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.parents(path);
        self.entry(path, 0o020_000 | mode, 1, (major, minor), &[]);
    }

    fn parents(&mut self, path: &str) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !parent.is_empty() {
                self.dir(parent);
            }
        }
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        // Names in the archive are relative: "bin/busybox".
        let name = path.trim_start_matches('/');
        let size = u32::try_from(data.len())
            .unwrap_or_else(|_| panic!("{path} is too large for a cpio archive"));
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            self.mtime,
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() + 1,
            0, // check
        );
        self.write(header.as_bytes());
        self.write(name.as_bytes());
        self.write(&[0]);
        self.pad();
        self.write(data);
        self.pad();
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            match self.out.write_all(bytes) {
                Ok(()) => self.written += bytes.len() as u64,
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// Header plus name, and data, each end on a multiple of four bytes.
    fn pad(&mut self) {
        let pad = (4 - self.written % 4) % 4;
        self.write(&[0; 3][..pad as usize]);
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        match self.error.take() {
            Some(e) => Err(e),
            None => self.out.flush(),
        }
    }
}
