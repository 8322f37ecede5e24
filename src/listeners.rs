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

use std::net::{SocketAddr, TcpListener};

use crate::config::Config;
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
}

/// Every listening socket of the process.
#[derive(Debug, Default)]
pub struct Listeners {
    groups: Vec<Group>,
}

impl Listeners {
    /// Binds every address:port of `config`, `workers` sockets each.
    pub fn bind(config: &Config, workers: usize) -> Result<Listeners, String> {
        let mut listeners = Listeners::default();
        listeners.reconcile(config, workers)?;
        Ok(listeners)
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
            let count = have.map_or(0, |i| self.groups[i].sockets.len());
            let mut sockets = Vec::new();
            for _ in count..workers {
                sockets.push(bind_one(addr, backlog)?);
            }
            match have {
                Some(i) if !sockets.is_empty() => grown.push((i, sockets)),
                Some(_) => {}
                None => added.push(Group { addr, sockets }),
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
                if j % workers.max(1) != index {
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
    fn groups_grow_with_workers_and_follow_the_ports() {
        let (a, b) = (free_port(), free_port());
        let mut listeners = Listeners::bind(&config(vec![a]), 2).unwrap_or_else(|e| panic!("{e}"));
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
        let mut listeners = Listeners::bind(&config(vec![a]), 1).unwrap_or_else(|e| panic!("{e}"));
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
