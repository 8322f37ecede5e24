//! The listening sockets, owned by the supervisor for the life of the process, so that a
//! reload never closes one that stays configured.
//!
//! Every configured address:port has a group of SO_REUSEPORT sockets, at least one per worker
//! (the kernel spreads new connections over the group). Each worker of a generation gets its
//! own duplicate descriptors of its share of every group; when a generation drains, its
//! workers drop their duplicates, and the sockets, still held here and by the next
//! generation, keep their accept queues: closing a SO_REUSEPORT listener would reset the
//! connections waiting in its queue (nginx ticket #1300). A group whose address:port is no
//! longer configured is dropped once the generation that used it has been told to drain.
//!
//! Owns binding (with the options every listener gets), growing a group when a reload adds
//! workers, and handing out duplicates. It never accepts a connection.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd};

use crate::config::Config;
use crate::info;
use crate::sys;

/// A connection that sends nothing is handed to accept after about this long anyway (and then
/// meets the header timeout); one that sends its request is accepted with the request in hand.
const DEFER_ACCEPT_SECS: u32 = 1;

/// One worker's listening socket: a duplicate descriptor of a socket in a group.
#[derive(Debug)]
pub struct Listener {
    pub socket: TcpListener,
    pub addr: SocketAddr,
    /// Connections accepted here speak TLS.
    pub tls: bool,
}

/// The sockets of one address:port.
#[derive(Debug)]
struct Group {
    addr: SocketAddr,
    sockets: Vec<TcpListener>,
    /// The first socket was passed by a service manager.
    passed: bool,
    /// One socket a service manager passed without SO_REUSEPORT: no other can join its
    /// address, so every worker accepts on it (each takes what it wins).
    shared: bool,
}

/// Every listening socket of the process.
#[derive(Debug, Default)]
pub struct Listeners {
    groups: Vec<Group>,
}

impl Listeners {
    /// Binds every address:port of `config`, `workers` sockets each, starting from the sockets
    /// a service manager passed (socket activation), which must be on addresses `config`
    /// names. A passed socket with SO_REUSEPORT (systemd's `ReusePort=yes`) is the first of
    /// its group and percore binds the rest beside it; one without is shared by every worker.
    pub fn bind(
        config: &Config,
        workers: usize,
        inherited: Vec<sys::InheritedListener>,
    ) -> Result<Listeners, String> {
        let mut listeners = Listeners::default();
        let wanted = config.listen_addrs();
        for passed in inherited {
            let addr = passed.addr;
            if !wanted.contains(&addr) {
                return Err(format!(
                    "the socket on {addr} passed by the service manager (LISTEN_FDS) is not \
                     one --bind and --ports name; add port {} to --ports (and its address to \
                     --bind)",
                    addr.port()
                ));
            }
            sys::set_defer_accept(&passed.socket, DEFER_ACCEPT_SECS)
                .map_err(|e| format!("TCP_DEFER_ACCEPT on {addr}: {e}"))?;
            // A binary upgrade passes every socket of a group.
            match listeners.groups.iter_mut().find(|g| g.addr == addr) {
                Some(group) => group.sockets.push(passed.socket),
                None => listeners.groups.push(Group {
                    addr,
                    sockets: vec![passed.socket],
                    passed: true,
                    shared: !passed.reuse_port,
                }),
            }
        }
        listeners.reconcile(config, workers)?;
        Ok(listeners)
    }

    /// Address:ports listened on with a socket a service manager passed, and whether its
    /// workers share it (it has no SO_REUSEPORT).
    pub fn passed(&self) -> Vec<(SocketAddr, bool)> {
        self.groups
            .iter()
            .filter(|g| g.passed)
            .map(|g| (g.addr, g.shared))
            .collect()
    }

    /// Binds the address:ports `config` adds and the sockets a larger worker count needs. Nothing
    /// changes unless everything new could be bound. Groups no longer listed stay until
    /// [`Listeners::retain_configured`]: the generation that used them may still be starting
    /// its successor.
    pub fn reconcile(&mut self, config: &Config, workers: usize) -> Result<(), String> {
        let wanted = config.listen_addrs();
        let backlog = sys::somaxconn();
        let mut added: Vec<Group> = Vec::new();
        let mut grown: Vec<(usize, Vec<TcpListener>)> = Vec::new();
        for &addr in &wanted {
            let have = self.groups.iter().position(|g| g.addr == addr);
            let count = match have.and_then(|i| self.groups.get(i)) {
                Some(group) if group.shared => workers,
                Some(group) => group.sockets.len(),
                None => 0,
            };
            let mut sockets = Vec::new();
            for _ in count..workers {
                match bind_one(addr, backlog) {
                    Ok(socket) => sockets.push(socket),
                    // Beside a passed socket, binding takes the right to the port (below
                    // 1024) and the same user as the one who made it (SO_REUSEPORT): without
                    // them, the workers share the passed socket.
                    Err(why)
                        if have.is_some_and(|i| self.groups.get(i).is_some_and(|g| g.passed)) =>
                    {
                        info!(
                            "{addr}: the workers share the socket the service manager passed \
                             ({why})"
                        );
                        sockets.clear();
                        if let Some(group) = have.and_then(|i| self.groups.get_mut(i)) {
                            group.shared = true;
                        }
                        break;
                    }
                    Err(why) => return Err(why),
                }
            }
            match have {
                Some(i) if !sockets.is_empty() => grown.push((i, sockets)),
                Some(_) => {}
                None => added.push(Group {
                    addr,
                    sockets,
                    passed: false,
                    shared: false,
                }),
            }
        }
        if let Some(name) = config
            .tcp_congestion
            .clone()
            .or_else(sys::default_congestion_control)
        {
            let old = self.groups.iter().map(|g| (g.addr, &g.sockets));
            let new = added.iter().map(|g| (g.addr, &g.sockets));
            let grown_sockets = grown
                .iter()
                .filter_map(|(i, sockets)| self.groups.get(*i).map(|g| (g.addr, sockets)));
            for (addr, sockets) in old.chain(new).chain(grown_sockets) {
                for socket in sockets {
                    set_congestion(socket, addr, &name)?;
                }
            }
        }
        for (i, sockets) in grown {
            if let Some(group) = self.groups.get_mut(i) {
                group.sockets.extend(sockets);
            }
        }
        self.groups.extend(added);
        Ok(())
    }

    /// Worker `index` of `workers`: duplicates of the sockets `j` with `j % workers == index`
    /// of every group `config` lists (so every socket has a worker, and a group with more
    /// sockets than workers, after a reload to fewer workers, gives some workers two).
    pub fn for_worker(
        &self,
        index: usize,
        workers: usize,
        config: &Config,
    ) -> Result<Vec<Listener>, String> {
        let mut mine = Vec::new();
        let wanted = config.listen_addrs();
        // A group `config` no longer lists is still here while its old generation hands over.
        for group in self.groups.iter().filter(|g| wanted.contains(&g.addr)) {
            for (j, socket) in group.sockets.iter().enumerate() {
                if j % workers.max(1) != index && !group.shared {
                    continue;
                }
                let socket = socket
                    .try_clone()
                    .map_err(|e| format!("cannot share the listener on {}: {e}", group.addr))?;
                mine.push(Listener {
                    socket,
                    addr: group.addr,
                    tls: config.tls_ports.contains(&group.addr.port()),
                });
            }
        }
        Ok(mine)
    }

    /// Every listening socket, for a binary upgrade to hand over.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.groups
            .iter()
            .flat_map(|g| g.sockets.iter().map(AsFd::as_fd))
            .collect()
    }

    /// The addresses listened on.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.groups.iter().map(|g| g.addr).collect()
    }

    /// How many sockets each address:port has, to [`Listeners::restore`] after a reload that
    /// could not start its workers.
    pub fn shape(&self) -> Vec<(SocketAddr, usize)> {
        self.groups
            .iter()
            .map(|g| (g.addr, g.sockets.len()))
            .collect()
    }

    /// Closes what was bound since `shape` was taken: sockets no worker accepts on would hold
    /// the connections the kernel hands them.
    pub fn restore(&mut self, shape: &[(SocketAddr, usize)]) {
        self.groups.retain_mut(
            |group| match shape.iter().find(|(addr, _)| *addr == group.addr) {
                Some(&(_, count)) => {
                    group.sockets.truncate(count);
                    true
                }
                None => false,
            },
        );
    }

    /// Drops the groups of address:ports that `config` no longer lists.
    pub fn retain_configured(&mut self, config: &Config) {
        let wanted = config.listen_addrs();
        self.groups.retain(|g| wanted.contains(&g.addr));
    }
}

/// Gives `socket` (and so the connections it accepts) the congestion control `name`, unless it
/// has it already. The error names what the kernel offers.
fn set_congestion(socket: &TcpListener, addr: SocketAddr, name: &str) -> Result<(), String> {
    if sys::congestion_control(socket).is_ok_and(|current| current == name) {
        return Ok(());
    }
    sys::set_congestion_control(socket, name).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::NotFound => format!(
                "; this kernel has {} (`modprobe tcp_{name}` loads another)",
                sys::congestion_controls("available").unwrap_or_default()
            ),
            io::ErrorKind::PermissionDenied => format!(
                "; without CAP_NET_ADMIN only {} (net.ipv4.tcp_allowed_congestion_control)",
                sys::congestion_controls("allowed").unwrap_or_default()
            ),
            _ => String::new(),
        };
        format!("TCP congestion control '{name}' on {addr}: {e}{hint}")
    })
}

fn bind_one(addr: SocketAddr, backlog: i32) -> Result<TcpListener, String> {
    let port = addr.port();
    let socket = sys::reuseport_listener(addr, backlog)
        .map_err(|e| format!("cannot listen on {addr} (port {port}): {e}"))?;
    sys::set_defer_accept(&socket, DEFER_ACCEPT_SECS)
        .map_err(|e| format!("TCP_DEFER_ACCEPT on {addr}: {e}"))?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("a free port: {e}"))
    }

    fn config(ports: Vec<u16>) -> Config {
        Config {
            bind: vec![IpAddr::from([127, 0, 0, 1])],
            ports,
            ..Config::defaults()
        }
    }

    fn sockets(listeners: &Listeners) -> Vec<(u16, usize)> {
        listeners
            .groups
            .iter()
            .map(|g| (g.addr.port(), g.sockets.len()))
            .collect()
    }

    #[test]
    fn passed_sockets_are_shared_when_no_socket_may_join_them() {
        // Made like systemd's socket without ReusePort=yes, but said to have it: binding
        // beside it fails, and the workers share it.
        let passed = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = passed.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let inherited = vec![sys::InheritedListener {
            socket: passed,
            addr,
            reuse_port: true,
        }];
        let config = config(vec![addr.port()]);
        let listeners = Listeners::bind(&config, 3, inherited).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sockets(&listeners), [(addr.port(), 1)]);
        assert_eq!(listeners.passed(), [(addr, true)]);
        for worker in 0..3 {
            let mine = listeners
                .for_worker(worker, 3, &config)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(mine.len(), 1, "worker {worker}");
        }
        // A passed socket on an address the configuration does not name is refused.
        let stray = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let stray_addr = stray.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let refused = Listeners::bind(
            &config,
            1,
            vec![sys::InheritedListener {
                socket: stray,
                addr: stray_addr,
                reuse_port: false,
            }],
        );
        assert!(refused.is_err_and(|e| e.contains("is not one --bind and --ports name")));
    }

    #[test]
    fn groups_grow_with_workers_and_follow_the_ports() {
        let (a, b) = (free_port(), free_port());
        let mut listeners =
            Listeners::bind(&config(vec![a]), 2, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sockets(&listeners), [(a, 2)]);
        // More workers: more sockets; fewer: the sockets stay (a worker takes two).
        listeners
            .reconcile(&config(vec![a, b]), 3)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sockets(&listeners), [(a, 3), (b, 3)]);
        listeners
            .reconcile(&config(vec![b]), 1)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sockets(&listeners), [(a, 3), (b, 3)]);
        // Until then the dropped port's group is not handed out.
        assert_eq!(
            listeners
                .for_worker(0, 1, &config(vec![b]))
                .map_or(0, |l| l.len()),
            3
        );
        listeners.retain_configured(&config(vec![b]));
        assert_eq!(sockets(&listeners), [(b, 3)]);
        let shares: Vec<usize> = (0..2)
            .map(|i| {
                listeners
                    .for_worker(i, 2, &config(vec![b]))
                    .map_or(0, |l| l.len())
            })
            .collect();
        assert_eq!(shares, [2, 1]);
        // The dropped port is closed; the kept one still accepts.
        assert!(std::net::TcpStream::connect(("127.0.0.1", a)).is_err());
        assert!(std::net::TcpStream::connect(("127.0.0.1", b)).is_ok());
    }

    #[test]
    fn a_port_that_cannot_be_bound_changes_nothing() {
        let a = free_port();
        let mut listeners =
            Listeners::bind(&config(vec![a]), 1, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        // A plain listener without SO_REUSEPORT on b: percore cannot join it.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let b = taken.local_addr().map(|a| a.port()).unwrap_or(0);
        let error = listeners
            .reconcile(&config(vec![b]), 1)
            .err()
            .unwrap_or_default();
        assert!(error.contains(&format!("port {b}")), "{error}");
        assert_eq!(sockets(&listeners), [(a, 1)]);
        // What a failed reload bound is closed again.
        let shape = listeners.shape();
        let c = free_port();
        listeners
            .reconcile(&config(vec![a, c]), 2)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sockets(&listeners), [(a, 2), (c, 2)]);
        listeners.restore(&shape);
        assert_eq!(sockets(&listeners), [(a, 1)]);
    }
}
