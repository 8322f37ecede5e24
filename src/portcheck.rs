//! Who else listens on our ports: refusing to join another process's SO_REUSEPORT group.
//!
//! SO_REUSEPORT lets any process of the same user bind a port that percore's workers listen
//! on, and the kernel then splits new connections between the two, silently. Before binding
//! (and once more after, to close the window between the check and the bind), the supervisor
//! asks this module whether a socket in LISTEN state that is not one of ours already covers an
//! (address, port) we listen on. It reads `/proc/net/tcp` and `/proc/net/tcp6` for listeners
//! and `/proc/<pid>/fd` for their owner.
//!
//! Owns the parsing of those files (pure functions, tested with their text) and the overlap
//! rule. Must never bind, connect or decide the exit status; it only reads /proc. Where /proc
//! cannot be read there is nothing to check, and the kernel's own bind rules still apply.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The `st` column of a socket in LISTEN state (`TCP_LISTEN` in the kernel).
const LISTEN: &str = "0A";

/// One listening socket from `/proc/net/tcp{,6}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub uid: u32,
    pub inode: u64,
}

/// Fails with one line (naming the port, the other listener and, where it can be found, its
/// process) if a listener whose inode is not in `own` overlaps one of `addrs`.
pub fn check_free(addrs: &[SocketAddr], own: &HashSet<u64>) -> Result<(), String> {
    let listeners = read_listeners();
    let Some((ours, theirs)) = find_conflict(addrs, &listeners, own) else {
        return Ok(());
    };
    Err(format!(
        "cannot listen on {ours}: port {} is already listened on at {}{} by {}; \
         percore refuses to share a port with another process (SO_REUSEPORT would split the \
         connections between the two)",
        ours.port(),
        theirs.addr,
        dual_stack_note(ours, theirs.addr),
        describe_owner(theirs.inode, theirs.uid)
    ))
}

/// The inodes of the sockets this process holds (from `/proc/self/fd`), so that a check after
/// binding does not find its own listeners.
pub fn own_socket_inodes() -> HashSet<u64> {
    socket_inodes_of("self").unwrap_or_default()
}

/// Every listener in `/proc/net/tcp` and `/proc/net/tcp6` that can be read. The files list
/// every socket of the host (a busy one has hundreds of thousands in TIME_WAIT, megabytes of
/// text), so they are read a line at a time, never whole.
fn read_listeners() -> Vec<Listener> {
    use std::io::BufRead;
    let mut all = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(file) = fs::File::open(path) else {
            continue;
        };
        let mut lines = std::io::BufReader::new(file);
        let mut line = String::new();
        while matches!(lines.read_line(&mut line), Ok(1..)) {
            all.extend(parse_line(&line, v6));
            line.clear();
        }
    }
    all
}

/// The listeners in the text of `/proc/net/tcp` (`v6` false) or `/proc/net/tcp6`. Lines that
/// do not parse are skipped.
pub fn parse_proc_net(text: &str, v6: bool) -> Vec<Listener> {
    text.lines()
        .filter_map(|line| parse_line(line, v6))
        .collect()
}

/// One line of `/proc/net/tcp{,6}` if it is a listener: `sl local_address rem_address st
/// tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`. The header line and
/// sockets in any other state give None.
fn parse_line(line: &str, v6: bool) -> Option<Listener> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    if fields.nth(1)? != LISTEN {
        return None;
    }
    let uid = fields.nth(3)?.parse().ok()?;
    let inode = fields.nth(1)?.parse().ok()?;
    let (ip, port) = local.split_once(':')?;
    let ip = if v6 { parse_ipv6(ip)? } else { parse_ipv4(ip)? };
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(Listener {
        addr: SocketAddr::new(ip, port),
        uid,
        inode,
    })
}

/// The kernel prints an IPv4 address as the `%08X` of its 32-bit word as it lies in memory
/// (network byte order), so the word's native bytes are the address's bytes.
fn parse_ipv4(hex: &str) -> Option<IpAddr> {
    if hex.len() != 8 {
        return None;
    }
    let word = u32::from_str_radix(hex, 16).ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes())))
}

/// An IPv6 address is four such words.
fn parse_ipv6(hex: &str) -> Option<IpAddr> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
        let word = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// The first of `addrs` that a listener not in `own` overlaps, with that listener.
fn find_conflict(
    addrs: &[SocketAddr],
    listeners: &[Listener],
    own: &HashSet<u64>,
) -> Option<(SocketAddr, Listener)> {
    addrs.iter().find_map(|&ours| {
        listeners
            .iter()
            .find(|l| !own.contains(&l.inode) && overlaps(ours, l.addr))
            .map(|l| (ours, *l))
    })
}

/// Whether a connection to `ours` could reach `theirs`. percore's own IPv6 listeners are
/// v6-only; another process's `::` may not be (/proc does not say), so it is taken to cover
/// IPv4 too: refusing a start wrongly is better than sharing silently.
pub fn overlaps(ours: SocketAddr, theirs: SocketAddr) -> bool {
    if ours.port() != theirs.port() {
        return false;
    }
    let theirs_ip = unmap(theirs.ip());
    match (ours.ip(), theirs_ip) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
        (IpAddr::V4(_), IpAddr::V6(b)) => b.is_unspecified(),
        (IpAddr::V6(_), IpAddr::V4(_)) => false,
    }
}

/// A v4-mapped IPv6 address (`::ffff:127.0.0.1`) is the IPv4 address it maps.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn dual_stack_note(ours: SocketAddr, theirs: SocketAddr) -> &'static str {
    match (ours.ip(), unmap(theirs.ip())) {
        (IpAddr::V4(_), IpAddr::V6(_)) => " (which takes IPv4 too unless it is v6-only)",
        _ => "",
    }
}

/// "process nginx (pid 812)", or why the process cannot be named.
fn describe_owner(inode: u64, uid: u32) -> String {
    match find_owner(inode) {
        Owner::Found { pid, name } => format!("process {name} (pid {pid})"),
        Owner::Hidden => format!(
            "another process of uid {uid} (which one is not visible to this user: \
             /proc/<pid>/fd of other users cannot be read)"
        ),
        Owner::Unknown => format!("another process of uid {uid} (not found in /proc)"),
    }
}

enum Owner {
    Found {
        pid: u32,
        name: String,
    },
    /// Some processes' descriptors could not be read: it may be one of them.
    Hidden,
    Unknown,
}

/// Scans `/proc/<pid>/fd` of every process for the socket `inode`.
fn find_owner(inode: u64) -> Owner {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Owner::Unknown;
    };
    let own_pid = std::process::id();
    let mut hidden = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        match socket_inodes_of(&pid.to_string()) {
            Some(inodes) if inodes.contains(&inode) => {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|s| s.trim_end().to_owned())
                    .unwrap_or_else(|_| "?".to_owned());
                return Owner::Found { pid, name: comm };
            }
            Some(_) => {}
            None => hidden = true,
        }
    }
    if hidden {
        Owner::Hidden
    } else {
        Owner::Unknown
    }
}

/// The socket inodes among `/proc/<pid>/fd`'s links (`socket:[12345]`); `None` when the
/// directory cannot be read (another user's process, or one that has exited).
fn socket_inodes_of(pid: &str) -> Option<HashSet<u64>> {
    let entries = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let inodes = entries
        .flatten()
        .filter_map(|entry| fs::read_link(entry.path()).ok())
        .filter_map(|target| socket_inode(&target.to_string_lossy()))
        .collect();
    Some(inodes)
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// The kernel's text for little-endian machines (this test's only kind of host).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 650 1 00000000f09989e5 100 0 0 10 0
   1: 0100007F:8271 0100007F:DF02 06 00000000:00000000 03:000009D8 00000000     0        0 0 3 000000008c0339e3
   2: 0100007F:1F42 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 651 1 00000000f09989e5 100 0 0 10 0
   3: garbage
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F43 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 700 1 0000000014d30693
   1: 00000000000000000000000000000000:1F44 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 701 1 0000000014d30693
   2: 0000000000000000FFFF00000100007F:1F45 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 702 1 0000000014d30693
";

    #[test]
    fn parses_listeners_of_both_families() {
        let v4 = parse_proc_net(TCP, false);
        assert_eq!(
            v4,
            [
                Listener {
                    addr: addr("0.0.0.0:8001"),
                    uid: 1000,
                    inode: 650
                },
                Listener {
                    addr: addr("127.0.0.1:8002"),
                    uid: 0,
                    inode: 651
                },
            ]
        );
        let v6: Vec<SocketAddr> = parse_proc_net(TCP6, true).iter().map(|l| l.addr).collect();
        assert_eq!(
            v6,
            [
                addr("[::1]:8003"),
                addr("[::]:8004"),
                addr("[::ffff:127.0.0.1]:8005")
            ]
        );
        assert_eq!(parse_proc_net("", false), []);
        assert_eq!(parse_proc_net(TCP6, false), [], "v6 text read as v4");
    }

    #[test]
    fn overlap_rules() {
        let yes = [
            ("127.0.0.1:80", "127.0.0.1:80"),
            ("127.0.0.1:80", "0.0.0.0:80"),
            ("0.0.0.0:80", "10.0.0.1:80"),
            ("[::1]:80", "[::1]:80"),
            ("[::1]:80", "[::]:80"),
            ("[::]:80", "[fe80::1]:80"),
            ("127.0.0.1:80", "[::ffff:127.0.0.1]:80"),
            ("0.0.0.0:80", "[::ffff:10.1.1.1]:80"),
            // Another process's :: may be dual-stack.
            ("127.0.0.1:80", "[::]:80"),
        ];
        let no = [
            ("127.0.0.1:80", "127.0.0.1:81"),
            ("127.0.0.1:80", "127.0.0.2:80"),
            ("[::1]:80", "[::2]:80"),
            ("[::1]:80", "0.0.0.0:80"),
            // percore's :: is v6-only.
            ("[::]:80", "0.0.0.0:80"),
            ("[::]:80", "127.0.0.1:80"),
            ("127.0.0.1:80", "[::1]:80"),
        ];
        for (ours, theirs) in yes {
            assert!(overlaps(addr(ours), addr(theirs)), "{ours} vs {theirs}");
        }
        for (ours, theirs) in no {
            assert!(!overlaps(addr(ours), addr(theirs)), "{ours} vs {theirs}");
        }
    }

    #[test]
    fn own_sockets_are_not_conflicts() {
        let listeners = parse_proc_net(TCP, false);
        let ours = [addr("127.0.0.1:8002")];
        let conflict = find_conflict(&ours, &listeners, &HashSet::new());
        assert_eq!(conflict.map(|(_, l)| l.inode), Some(651));
        let own: HashSet<u64> = [651].into();
        assert_eq!(find_conflict(&ours, &listeners, &own), None);
        assert_eq!(
            find_conflict(&[addr("127.0.0.1:8001")], &listeners, &own).map(|(_, l)| l.inode),
            Some(650),
            "0.0.0.0 covers 127.0.0.1"
        );
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    /// A real listener of this process is found in /proc, named, and excluded as our own.
    #[test]
    fn finds_a_real_listener_and_its_owner() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let wildcard = addr(&format!("0.0.0.0:{port}"));
        let own = own_socket_inodes();
        assert!(!own.is_empty());
        assert_eq!(check_free(&[wildcard], &own), Ok(()));
        let err = check_free(&[wildcard], &HashSet::new()).expect_err("a conflict");
        let expected = format!(
            "cannot listen on 0.0.0.0:{port}: port {port} is already listened on at \
             127.0.0.1:{port} by "
        );
        assert!(err.starts_with(&expected), "{err}");
    }
}
