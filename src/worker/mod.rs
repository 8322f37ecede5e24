//! The reactor: one per core, owning one epoll instance, its listeners, its connections and its timers.
//!
//! It moves bytes between sockets and the sans-IO layers and knows the protocols only through
//! their APIs ([`connection`] sequences them). It shares nothing mutable with other workers: it
//! reads `Arc<Config>`, reports counter deltas on the metrics channel with `try_send` (never
//! blocking), and learns that it should stop, or hand over to a new generation, through its
//! own [`Stop`]. Its listening sockets are duplicates of the supervisor's (`crate::listeners`):
//! dropping them never closes a socket another generation still accepts on.
//!
//! Invariants: every connection that outlives its first turn is registered with epoll exactly
//! once (read and write, edge triggered) and never modified afterwards; an event or timer entry
//! for a closed connection is recognised by its slab generation and dropped; a worker holds at
//! most `--max-connections` connections, and one that stopped accepting (at that cap, or out of
//! descriptors) tries its listeners again itself, since queued connections bring no new edge.

mod connection;
mod ktls;
pub mod slab;
mod socket;
mod static_files;
mod throttle;
pub mod timer;
mod tls;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rustls::ServerConfig;

use crate::access_log::Recorder;
use crate::config::Config;
use crate::conn::{self, Conn, Shared, Timeouts, Verdict};
use crate::http;
use crate::listeners::Listener;
use crate::metrics::WorkerReport;
use crate::sys::{self, Epoll, EventFd, Events, Interest};

use crate::ws::WsConfig;
use connection::{Connection, Service, Tls};
pub use ktls::KernelCiphers;
use slab::{Key, Slab};
use static_files::StaticFiles;
use throttle::Throttle;
use timer::{TimerWheel, TICK_MS};
use tls::TlsSession;

const SHUTDOWN_TOKEN: u64 = Key::RESERVED;
const LISTENER_TOKEN_BASE: u64 = Key::RESERVED + 1;
/// Connections that must have closed, below the most open at once, before the worker gives
/// free memory back to the kernel (at most once a second; it walks the allocator's free lists).
const MEMORY_RELEASE_AFTER_CLOSES: usize = 1024;
/// How long accepting pauses after EMFILE/ENFILE before it is tried again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Seconds between two warnings about accept pausing for lack of descriptors (it retries every
/// 100 ms, so without a limit that would be ten lines a second).
const ACCEPT_SHORTAGE_WARNING_INTERVAL: u64 = 1;
/// Seconds between two warnings about the connection cap: a server capped on purpose reaches it
/// often, and the metrics count every time.
const CAP_WARNING_INTERVAL: u64 = 60;
/// A report goes out at least this often while anything changed, and after this many accepts.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
const REPORT_EVERY_ACCEPTS: u64 = 1000;
/// Which worker: its index in its generation (its metrics label and CPU), and the generation
/// (0 at start, one more with every reload that starts new workers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerId {
    pub generation: u64,
    pub index: usize,
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.generation {
            0 => write!(f, "{}", self.index),
            generation => write!(f, "{} of generation {generation}", self.index),
        }
    }
}

/// What a worker tells the supervisor about its lifecycle.
#[derive(Debug)]
pub enum WorkerEvent {
    /// Its listeners are registered; waiting for the start signal.
    Ready { worker: WorkerId },
    /// Could not start (the root could not be opened…).
    Failed { worker: WorkerId, error: String },
    /// The thread is ending; `panicked` when by panic.
    Exited { worker: WorkerId, panicked: bool },
}

/// How a worker is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// The server stops: idle connections close now, WebSockets get close 1001 now, the rest
    /// finish within the drain timeout.
    Shutdown,
    /// A new generation has taken over the listeners: stop accepting, answer each open
    /// connection's next request with `Connection: close` (an idle keep-alive connection is
    /// not closed under a client that may be sending), let WebSockets run until the drain
    /// timeout, then close them with 1001.
    Handover,
}

/// The supervisor's way to stop one worker: an eventfd that wakes it, and what kind of stop.
pub struct Stop {
    fd: EventFd,
    handover: std::sync::atomic::AtomicBool,
}

impl Stop {
    pub fn new() -> io::Result<Stop> {
        Ok(Stop {
            fd: EventFd::new()?,
            handover: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Asks the worker to stop. A shutdown asked after a handover turns it into a shutdown.
    pub fn request(&self, kind: StopKind) -> io::Result<()> {
        let handover = kind == StopKind::Handover;
        self.handover
            .store(handover, std::sync::atomic::Ordering::Relaxed);
        self.fd.notify()
    }

    fn kind(&self) -> StopKind {
        match self.handover.load(std::sync::atomic::Ordering::Relaxed) {
            true => StopKind::Handover,
            false => StopKind::Shutdown,
        }
    }
}

/// Everything a worker thread is started with.
pub struct WorkerSetup {
    pub id: WorkerId,
    pub cpu: Option<usize>,
    pub config: Arc<Config>,
    /// Its share of the listening sockets (duplicates; see `crate::listeners`).
    pub listeners: Vec<Listener>,
    pub reports: Sender<WorkerReport>,
    pub events: Sender<WorkerEvent>,
    /// `true` to start serving, `false` to give up (another worker failed).
    pub start: Receiver<bool>,
    pub stop: Arc<Stop>,
    /// Where this worker's access-log lines go, when the log is on.
    pub access_log: Option<Sender<Vec<u8>>>,
    /// The ciphers the kernel takes when finished TLS 1.3 sessions go to it (`--ktls`), found
    /// once for the generation.
    pub kernel_tls: Option<KernelCiphers>,
}

/// Starts a worker on a thread named `percore-w<index>`.
pub fn spawn(setup: WorkerSetup) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("percore-w{}", setup.id.index))
        .spawn(move || run_thread(setup))
}

/// Sends `Exited` when the worker thread ends, including by panic.
struct ExitNotice {
    worker: WorkerId,
    events: Sender<WorkerEvent>,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.events.send(WorkerEvent::Exited {
            worker: self.worker,
            panicked: std::thread::panicking(),
        });
    }
}

fn run_thread(mut setup: WorkerSetup) {
    let _notice = ExitNotice {
        worker: setup.id,
        events: setup.events.clone(),
    };
    if let Some(cpu) = setup.cpu {
        if let Err(e) = sys::pin_current_thread(cpu) {
            warn!(
                "worker {} could not be pinned to CPU {cpu}: {e}",
                setup.id.index
            );
        }
    }
    let listeners = std::mem::take(&mut setup.listeners);
    let mut worker = match Worker::new(&setup, listeners) {
        Ok(worker) => worker,
        Err(error) => {
            let _ = setup.events.send(WorkerEvent::Failed {
                worker: setup.id,
                error,
            });
            return;
        }
    };
    let _ = setup.events.send(WorkerEvent::Ready { worker: setup.id });
    if setup.start.recv() != Ok(true) {
        return;
    }
    if let Err(e) = worker.run() {
        error!("worker {} stopped: {e}", setup.id.index);
    }
}

/// A worker that stopped accepting: why, and until when its connections may finish.
#[derive(Clone, Copy, Debug)]
struct Drain {
    kind: StopKind,
    until: Instant,
}

struct Worker {
    /// Its index in its generation: metrics label, log name.
    id: usize,
    config: Arc<Config>,
    epoll: Epoll,
    stop: Arc<Stop>,
    listeners: Vec<TcpListener>,
    /// For each listener: its port speaks TLS.
    listener_tls: Vec<bool>,
    /// The shared TLS configuration, when some port speaks TLS.
    tls: Option<Arc<ServerConfig>>,
    conns: Slab<Connection>,
    svc: Service,
    wheel: TimerWheel,
    started: Instant,
    now: Instant,
    accepts_since_report: u64,
    last_report: Instant,
    reports: Sender<WorkerReport>,
    accept_paused_until: Option<Instant>,
    /// Connections this worker holds at most (`usize::MAX`: no cap but the open-files limit).
    max_connections: usize,
    /// Accepting stopped because the worker holds `max_connections`.
    accept_capped: bool,
    /// The listener a resumed accept starts with, rotating, so that none is always last.
    next_listener: usize,
    /// Warnings about accept out of descriptors, with the latest errno.
    accept_shortages: (Throttle, i32),
    /// Warnings about reaching `max_connections`.
    cap_warnings: Throttle,
    drain: Option<Drain>,
    /// Most connections open at once since memory was last given back.
    conns_peak: usize,
    due: Vec<(Key, u64)>,
    /// Connections whose read budget ran out with input waiting; driven again each round, each
    /// once (`Connection::queued`).
    ready: Vec<Key>,
}

impl Worker {
    fn new(setup: &WorkerSetup, given: Vec<Listener>) -> Result<Worker, String> {
        let config = Arc::clone(&setup.config);
        let epoll = Epoll::new().map_err(|e| format!("epoll_create: {e}"))?;
        epoll
            .register(setup.stop.fd.as_fd(), SHUTDOWN_TOKEN, Interest::READABLE)
            .map_err(|e| format!("registering the shutdown eventfd: {e}"))?;
        let mut listeners = Vec::with_capacity(given.len());
        let mut listener_tls = Vec::with_capacity(given.len());
        for (i, listener) in given.into_iter().enumerate() {
            let socket = listener.socket;
            epoll
                .register(
                    socket.as_fd(),
                    LISTENER_TOKEN_BASE + i as u64,
                    Interest::READABLE,
                )
                .map_err(|e| format!("registering listener {}: {e}", listener.addr))?;
            listeners.push(socket);
            listener_tls.push(listener.tls);
        }
        let files = StaticFiles::new(&config, setup.id.index)
            .map_err(|e| format!("cannot open document root {}: {e}", config.root.display()))?;
        let limits = http::Limits {
            max_request_line: config.max_request_line,
            max_head: config.max_header_size,
            max_headers: config.max_headers,
            max_body: config.max_body_size,
        };
        let ws_config = WsConfig {
            max_message: config.ws_max_message,
            max_frame: config.ws_max_message,
            deflate: config.ws_deflate,
            paths: config
                .ws_paths
                .as_ref()
                .map(|list| list.iter().map(|p| p.as_bytes().to_vec()).collect()),
            origins: config
                .ws_origins
                .as_ref()
                .map(|list| list.iter().map(|o| o.as_bytes().to_vec()).collect()),
            // The connection sets it: it knows what its input holds.
            whole_frame_max: 0,
        };
        let timeouts = Timeouts {
            header: config.header_timeout,
            keep_alive: config.keepalive_timeout,
            send: config.send_timeout,
            linger: conn::LINGER_TIMEOUT,
            ws_ping_interval: config.ws_ping_interval,
            ws_ping_timeout: config.ws_ping_timeout,
            ws_close: config.ws_close_timeout,
        };
        let mut shared = Shared::new(limits, ws_config, timeouts);
        shared.cors = config.cors.clone();
        shared.access_log = setup
            .access_log
            .clone()
            .map(|sink| Recorder::new(config.access_log_format, setup.id.index, sink));
        let svc = Service {
            files,
            shared,
            tls_buffers: Default::default(),
            worker: setup.id.index,
            kernel_tls: setup.kernel_tls,
        };
        let max_connections = config.max_connections.unwrap_or(usize::MAX);
        let tls = config
            .tls
            .as_ref()
            .map(|tls| Arc::clone(tls.server_config()));
        let now = Instant::now();
        let mut worker = Worker {
            id: setup.id.index,
            config,
            epoll,
            stop: Arc::clone(&setup.stop),
            listeners,
            listener_tls,
            tls,
            conns: Slab::default(),
            svc,
            wheel: TimerWheel::new(0),
            started: now,
            now,
            accepts_since_report: 0,
            last_report: now,
            reports: setup.reports.clone(),
            accept_paused_until: None,
            max_connections,
            accept_capped: false,
            next_listener: 0,
            accept_shortages: (Throttle::new(ACCEPT_SHORTAGE_WARNING_INTERVAL), 0),
            cap_warnings: Throttle::new(CAP_WARNING_INTERVAL),
            drain: None,
            conns_peak: 0,
            due: Vec::new(),
            ready: Vec::new(),
        };
        worker.refresh_date();
        Ok(worker)
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while self.turn(&mut events)? {}
        Ok(())
    }

    /// One iteration: waits for events, handles them, drives the ready list once, runs the
    /// timers. False once a drain has finished.
    fn turn(&mut self, events: &mut Events) -> io::Result<bool> {
        // Connections with input still waiting must not wait for an edge that will not come.
        let timeout = if self.ready.is_empty() {
            Duration::from_millis(TICK_MS)
        } else {
            Duration::ZERO
        };
        self.epoll.wait(events, Some(timeout))?;
        self.now = Instant::now();
        self.refresh_date();
        // Before the turn's events, so that a request finds its file checked this second.
        self.svc.files.sweep(self.svc.shared.now_secs);
        for event in events.iter() {
            match event.token {
                SHUTDOWN_TOKEN => {
                    self.stop.fd.drain();
                    self.begin_drain(self.stop.kind());
                }
                token if token >= LISTENER_TOKEN_BASE => {
                    self.accept((token - LISTENER_TOKEN_BASE) as usize);
                }
                token => {
                    let key = Key::from_token(token);
                    let Some(conn) = self.conns.get_mut(key) else {
                        continue; // stale: the slot was closed (and maybe reused)
                    };
                    if event.error {
                        self.close(key);
                        continue;
                    }
                    if event.readable || event.hangup {
                        conn.conn.set_readable();
                    }
                    if !conn.queued {
                        self.drive(key);
                    }
                }
            }
        }
        for key in std::mem::take(&mut self.ready) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.queued = false;
                self.drive(key);
            }
        }
        self.expire_timers();
        self.resume_accepting();
        self.maybe_report(false);
        if let Some(drain) = self.drain {
            if self.conns.is_empty() {
                self.maybe_report(true);
                return Ok(false);
            }
            if self.now >= drain.until {
                // A handover's WebSockets ran until now: they get their close frame and the
                // close timeout to answer it, as at a shutdown.
                if drain.kind == StopKind::Handover {
                    self.begin_drain(StopKind::Shutdown);
                    if let Some(drain) = &mut self.drain {
                        drain.until = self.now + self.config.ws_close_timeout;
                    }
                    return Ok(true);
                }
                for key in self.conns.keys() {
                    self.close(key);
                }
                self.maybe_report(true);
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn refresh_date(&mut self) {
        let wall = SystemTime::now();
        let secs = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if secs != self.svc.shared.now_secs {
            self.svc.shared.date = http::http_date(wall);
            self.svc.shared.now_secs = secs;
            self.every_second(secs);
        }
    }

    /// Once a second: tells the warnings held back, and gives memory back once many
    /// connections have closed.
    fn every_second(&mut self, secs: u64) {
        // Thousands closed (an attack or a burst of clients that ended): what they held is
        // free but would stay in the process's RSS (about 4 KB per TLS connection).
        let open = self.conns.len();
        if self.conns_peak >= open + MEMORY_RELEASE_AFTER_CLOSES {
            sys::release_free_memory();
            self.conns_peak = open;
        }
        if let Some(count) = self.accept_shortages.0.take(secs) {
            self.warn_accept_shortage(count);
        }
        if let Some(count) = self.cap_warnings.take(secs) {
            self.warn_cap(count);
        }
    }

    fn tick_now(&self) -> u64 {
        (self.now - self.started).as_millis() as u64 / TICK_MS
    }

    /// The first tick at or after `at`, so a deadline never fires early.
    fn tick_of(&self, at: Instant) -> u64 {
        let millis = at.saturating_duration_since(self.started).as_millis();
        u64::try_from(millis).unwrap_or(u64::MAX).div_ceil(TICK_MS)
    }

    /// Accepts until the listen queue is empty or the worker holds `max_connections`.
    fn accept(&mut self, listener: usize) {
        if self.accept_paused_until.is_some() || self.accept_capped || self.drain.is_some() {
            return;
        }
        loop {
            if self.conns.len() >= self.max_connections {
                self.cap_accepting();
                return;
            }
            let Some(l) = self.listeners.get(listener) else {
                return;
            };
            match sys::accept_nonblocking(l) {
                Ok(stream) => {
                    let tls = self.listener_tls.get(listener).copied().unwrap_or(false);
                    self.add_connection(stream, tls);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted => continue,
                    _ => {
                        if let Some(
                            errno @ (libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM),
                        ) = e.raw_os_error()
                        {
                            self.accept_paused_until = Some(self.now + ACCEPT_PAUSE);
                            self.accept_shortages.1 = errno;
                            let now_secs = self.svc.shared.now_secs;
                            if let Some(count) = self.accept_shortages.0.hit(now_secs) {
                                self.warn_accept_shortage(count);
                            }
                        } else {
                            warn!("worker {}: accept: {e}", self.id);
                        }
                        return;
                    }
                },
            }
        }
    }

    /// Stops accepting at the connection cap: connections wait in the listen queue (the kernel
    /// completes their handshakes up to the backlog) until one of this worker's closes, as
    /// nginx does at worker_connections; accepting them only to close them would turn a wait
    /// into an error for the client.
    fn cap_accepting(&mut self) {
        self.accept_capped = true;
        self.svc.shared.counters.accept_cap_pauses += 1;
        if let Some(count) = self.cap_warnings.hit(self.svc.shared.now_secs) {
            self.warn_cap(count);
        }
    }

    /// Tries every listener again once accepting may resume: an EMFILE pause is over, or a
    /// connection closed below the cap. Edge-triggered epoll reports a listener again only when
    /// a new connection arrives, never for the ones already queued, so the worker must ask.
    fn resume_accepting(&mut self) {
        let mut resume = false;
        if let Some(until) = self.accept_paused_until {
            if self.now >= until {
                self.accept_paused_until = None;
                resume = true;
            }
        }
        if self.accept_capped && self.conns.len() < self.max_connections {
            self.accept_capped = false;
            self.svc.shared.counters.accept_cap_resumes += 1;
            resume = true;
        }
        if !resume || self.accept_paused_until.is_some() || self.accept_capped {
            return;
        }
        let count = self.listeners.len();
        let first = self.next_listener % count.max(1);
        self.next_listener = first + 1;
        for i in (first..count).chain(0..first) {
            self.accept(i);
        }
    }

    fn warn_accept_shortage(&self, count: u64) {
        warn!(
            "worker {}: accept paused {count} time(s) for {ACCEPT_PAUSE:?} since the last such \
             line: {} ({} connections open)",
            self.id,
            io::Error::from_raw_os_error(self.accept_shortages.1),
            self.conns.len()
        );
    }

    fn warn_cap(&self, count: u64) {
        warn!(
            "worker {}: holding max_connections ({}): accepting paused until a connection closes, \
             new ones wait in the listen queue ({count} time(s) since the last such line)",
            self.id, self.max_connections
        );
    }

    /// Takes a new connection; `tls` when it was accepted on a TLS port.
    fn add_connection(&mut self, stream: TcpStream, tls: bool) {
        let session = match (tls, &self.tls) {
            (true, Some(config)) => match TlsSession::new(Arc::clone(config)) {
                Ok(session) => Some(Box::new(Tls::User(Box::new(session)))),
                Err(e) => {
                    warn!("worker {}: cannot start a TLS session: {e}", self.id);
                    return;
                }
            },
            _ => None,
        };
        let mut conn = Conn::new(self.now, &self.svc.shared.timeouts);
        // Listeners defer accept until the first bytes arrive: read them now rather than after
        // another trip through epoll_wait.
        conn.set_readable();
        let key = self.conns.insert(Connection::new(stream, conn, session));
        self.conns_peak = self.conns_peak.max(self.conns.len());
        self.svc.shared.counters.accepted += 1;
        self.accepts_since_report += 1;
        self.drive(key);
        // A one-request connection (Connection: close) is often finished by now; only one that
        // stays open needs epoll, and Nagle matters only for its later responses (nginx also
        // sets TCP_NODELAY only on keep-alive connections). Registering after reading loses
        // nothing: EPOLL_CTL_ADD reports readiness that already exists.
        if let Some(conn) = self.conns.get_mut(key) {
            let _ = conn.stream.set_nodelay(true);
            if let Err(e) = self
                .epoll
                .register(conn.stream.as_fd(), key.to_token(), Interest::BOTH)
            {
                warn!("worker {}: epoll register: {e}", self.id);
                self.close(key);
            }
        }
        if self.accepts_since_report >= REPORT_EVERY_ACCEPTS {
            self.maybe_report(true);
        }
    }

    fn drive(&mut self, key: Key) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let done = conn.drive(&mut self.svc, self.now);
        let closing_idle = self
            .drain
            .is_some_and(|d| d.kind == StopKind::Shutdown && conn.conn.is_idle());
        if done.verdict == Verdict::Close || closing_idle {
            self.close(key);
            return;
        }
        if done.more && !conn.queued {
            conn.queued = true;
            self.ready.push(key);
        }
        self.arm(key);
    }

    /// Makes sure the timer wheel fires no later than the connection's deadline. A later
    /// deadline reuses the armed entry (it re-arms itself when it fires early).
    fn arm(&mut self, key: Key) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let tick = self.tick_of(conn.conn.deadline().at);
        if conn.armed > tick {
            let armed = self.wheel.arm(key, tick);
            if let Some(conn) = self.conns.get_mut(key) {
                conn.armed = armed;
            }
        }
    }

    fn expire_timers(&mut self) {
        let now = self.tick_now();
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(now, &mut due);
        for (key, tick) in due.drain(..) {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            if conn.armed != tick {
                continue; // superseded by an earlier entry
            }
            let deadline = self.tick_of(conn.conn.deadline().at);
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.armed = u64::MAX;
            if deadline <= now && conn.expire(&mut self.svc, self.now) == Verdict::Close {
                self.close(key);
            } else {
                self.arm(key);
            }
        }
        self.due = due;
    }

    fn close(&mut self, key: Key) {
        if let Some(mut conn) = self.conns.remove(key) {
            let counters = &mut self.svc.shared.counters;
            conn.closing(&mut counters.tls);
            if conn.conn.was_upgraded() {
                counters.ws.closed += 1;
            }
            counters.closed += 1;
            conn.conn.release_buffers(&mut self.svc.shared.pool);
            // Closing the fd removes it from the epoll set; no epoll_ctl needed.
        }
    }

    /// Stops accepting, closes idle connections, and lets the rest finish until the drain deadline.
    ///
    /// A handover ([`StopKind::Handover`]) closes nothing at once: every connection's next
    /// response says `Connection: close`, idle ones meet their keep-alive timeout, and
    /// WebSockets run on until the drain timeout. A shutdown asked during a handover drain
    /// closes what a shutdown closes, and keeps the earlier deadline.
    fn begin_drain(&mut self, kind: StopKind) {
        match self.drain {
            Some(drain) if drain.kind == StopKind::Shutdown || kind == StopKind::Handover => return,
            Some(drain) => {
                self.drain = Some(Drain { kind, ..drain });
            }
            None => {
                self.drain = Some(Drain {
                    kind,
                    until: self.now + self.config.drain_timeout,
                });
            }
        }
        self.svc.shared.keep_alive = false;
        for listener in self.listeners.drain(..) {
            let _ = self.epoll.deregister(listener.as_fd());
        }
        if kind == StopKind::Handover {
            info!(
                "worker {} handing over: {} connections finish here",
                self.id,
                self.conns.len()
            );
            return;
        }
        for key in self.conns.keys() {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.drain(&mut self.svc, self.now) == Verdict::Close {
                self.close(key);
            } else {
                self.arm(key);
            }
        }
        info!(
            "worker {} draining: {} connections in flight",
            self.id,
            self.conns.len()
        );
    }

    /// Sends counter deltas when a second has passed (or `force`), keeping them if the channel is full.
    fn maybe_report(&mut self, force: bool) {
        if !force && self.now.duration_since(self.last_report) < REPORT_INTERVAL {
            return;
        }
        self.last_report = self.now;
        self.accepts_since_report = 0;
        if let Some(log) = &mut self.svc.shared.access_log {
            log.flush();
            let dropped = log.take_dropped();
            if dropped > 0 {
                warn!(
                    "worker {}: access log: {dropped} line(s) dropped: the writer is behind",
                    self.id
                );
            }
        }
        self.svc.shared.counters.files_unavailable += self.svc.files.take_unavailable();
        let counters = &mut self.svc.shared.counters;
        if counters.is_zero() {
            return;
        }
        let report = WorkerReport {
            worker: self.id,
            delta: std::mem::take(counters),
        };
        match self.reports.try_send(report) {
            Ok(()) => {}
            Err(TrySendError::Full(report)) => self.svc.shared.counters.add(&report.delta),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A worker serving `www/` on a free loopback port, not yet turning.
    fn worker_on_free_port() -> (Worker, u16) {
        worker_with(|_| {})
    }

    /// The same, with the defaults changed by `edit`.
    fn worker_with(edit: impl FnOnce(&mut Config)) -> (Worker, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut config = Config::defaults();
        config.bind = vec![std::net::IpAddr::from([127, 0, 0, 1])];
        config.ports = vec![port];
        edit(&mut config);
        let (reports, _) = crossbeam_channel::unbounded();
        let (events, _) = crossbeam_channel::unbounded();
        let (_, start) = crossbeam_channel::unbounded();
        let listeners =
            crate::listeners::Listeners::bind(&config, 1, Vec::new()).expect("listeners");
        let mine = listeners.for_worker(0, 1, &config).expect("a share");
        // Accepted sockets inherit a receive buffer that holds several reads (128 KiB each),
        // so a connection can stay readable after its read budget runs out.
        for listener in &mine {
            socket2::SockRef::from(&listener.socket)
                .set_recv_buffer_size(1 << 20)
                .expect("SO_RCVBUF");
        }
        let setup = WorkerSetup {
            id: WorkerId {
                generation: 0,
                index: 0,
            },
            cpu: None,
            config: Arc::new(config),
            listeners: Vec::new(),
            reports,
            events,
            start,
            stop: Arc::new(Stop::new().expect("eventfd")),
            access_log: None,
            kernel_tls: None,
        };
        (Worker::new(&setup, mine).expect("worker"), port)
    }

    /// A connection whose read budget runs out is driven again after the others, once per
    /// turn: an epoll event for it meanwhile must not queue it a second time (duplicates
    /// multiplied, so a fast sender got several budgets per turn and its neighbours waited).
    #[test]
    fn a_connection_with_input_waiting_is_queued_once_per_turn() {
        let (mut worker, port) = worker_on_free_port();
        worker.svc.shared.read_budget = 1; // one read per drive
        let mut events = Events::with_capacity(64);
        let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        client.set_nonblocking(true).expect("nonblocking");
        // A request with a 1 MB body (read and discarded), then one without: the second answer
        // shows that the whole body was read.
        let mut input = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n".to_vec();
        input.resize(input.len() + 1_000_000, b'x');
        input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let (mut sent, mut answers, mut received) = (0, 0, Vec::new());
        let mut events_while_queued = 0;
        for _ in 0..1000 {
            match client.write(&input[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("client write: {e}"),
            }
            let queued = worker.ready.first().map(|key| key.to_token());
            worker.turn(&mut events).expect("turn");
            if events.iter().any(|event| Some(event.token) == queued) {
                events_while_queued += 1;
            }
            let mut keys: Vec<u64> = worker.ready.iter().map(|key| key.to_token()).collect();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), worker.ready.len(), "a connection queued twice");
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = client.read(&mut buf) {
                received.extend_from_slice(&buf[..n]);
            }
            answers = received
                .windows(12)
                .filter(|w| w == b"HTTP/1.1 200")
                .count();
            if answers == 2 {
                break;
            }
        }
        assert_eq!(answers, 2, "the body was not read to its end");
        assert!(
            events_while_queued > 0,
            "the test never had an event arrive for a queued connection"
        );
    }

    /// Turns `worker` until `client` has received something, at most `turns` times; returns
    /// what arrived (empty if nothing did).
    fn turn_until_answered(worker: &mut Worker, client: &mut TcpStream, turns: usize) -> Vec<u8> {
        let mut events = Events::with_capacity(64);
        let mut received = Vec::new();
        for _ in 0..turns {
            worker.turn(&mut events).expect("turn");
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = client.read(&mut buf) {
                received.extend_from_slice(&buf[..n]);
            }
            if !received.is_empty() {
                break;
            }
        }
        received
    }

    /// At `max_connections` the worker stops accepting; a connection that arrives meanwhile
    /// waits in the listen queue and is served once another closes, without a new edge from
    /// epoll (the closing connection's turn must try the listener itself).
    #[test]
    fn at_max_connections_a_new_connection_waits_until_one_closes() {
        let (mut worker, port) = worker_with(|c| c.max_connections = Some(1));
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut first = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        first.set_nonblocking(true).expect("nonblocking");
        first.write_all(request).expect("write");
        let answer = turn_until_answered(&mut worker, &mut first, 50);
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        assert!(worker.accept_capped, "one connection is the cap");

        let mut second = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        second.set_nonblocking(true).expect("nonblocking");
        second.write_all(request).expect("write");
        let early = turn_until_answered(&mut worker, &mut second, 5);
        assert_eq!(early, b"", "answered beyond the cap");
        assert_eq!(worker.conns.len(), 1);

        drop(first);
        let answer = turn_until_answered(&mut worker, &mut second, 50);
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        assert_eq!(worker.conns.len(), 1);
        assert!(worker.accept_capped);
    }

    #[test]
    fn a_panicking_worker_thread_reports_it() {
        let (events, received) = crossbeam_channel::unbounded();
        let thread = std::thread::spawn(move || {
            let _notice = ExitNotice {
                worker: WorkerId {
                    generation: 2,
                    index: 3,
                },
                events,
            };
            panic!("a worker bug (expected by this test)");
        });
        assert!(thread.join().is_err());
        match received.recv_timeout(Duration::from_secs(5)) {
            Ok(WorkerEvent::Exited { worker, panicked }) => {
                assert!(worker.index == 3 && worker.generation == 2 && panicked)
            }
            other => panic!("expected Exited, got {other:?}"),
        }
    }
}
