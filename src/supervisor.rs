//! The supervisor: the one owner of process-wide concerns.
//!
//! It raises the open-files limit, spawns and pins one worker per core, waits for every worker
//! to bind its listeners before reporting ready (to the log and to systemd), aggregates the
//! workers' metric reports, serves them to operators, turns SIGINT/SIGTERM into a graceful drain,
//! and decides the exit code. It never touches a client connection.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};

use crate::access_log::Writer;
use crate::config::{describe_addresses, describe_ports, Config};
use crate::generation::{Generation, Spawner};
use crate::listeners::Listeners;
use crate::metrics::{ProgressLog, Summary, Totals, WorkerReport};
use crate::portcheck;
use crate::sdnotify::Watchdog;
use crate::sys;
use crate::worker::{StopKind, WorkerEvent};

/// Exit status when a worker could not start or died.
const EXIT_FAILURE: i32 = 1;
/// Extra time past the drain deadline for workers to close their sockets and exit.
const EXIT_GRACE: Duration = Duration::from_secs(2);
const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Freed memory each allocator arena (one per worker) may keep rather than hand back at once.
/// With glibc's default, 128 KiB, a worker echoing 16 KiB WebSocket messages to 50 clients
/// gave buffers back and took them again in page faults: 16,000 a second, 2 % of its CPU
/// (`compare.sh ws16k`); with this, none. Workers still return everything free once a
/// thousand connections have closed.
const ALLOCATOR_KEEPS: usize = 16 * 1024 * 1024;

/// What `/readyz` reports, as the supervisor moves through its life.
const STARTING: u8 = 0;
const SERVING: u8 = 1;
const DRAINING: u8 = 2;
const WORKER_DOWN: u8 = 3;

/// `/readyz`: ready only while every worker serves and no drain has begun.
fn readiness(state: u8) -> Result<(), &'static str> {
    match state {
        SERVING => Ok(()),
        STARTING => Err("starting"),
        DRAINING => Err("draining"),
        _ => Err("a worker stopped; shutting down"),
    }
}

/// Reads the configuration again for SIGHUP: the same command line, the config file re-read.
pub type Reload = Box<dyn Fn() -> Result<Config, String>>;

/// Runs percore with `config` until a termination signal or a worker failure; returns the exit
/// code. SIGHUP calls `reload`, and a new generation of workers takes over when the
/// configuration changed; the server never stops for it.
pub fn run(config: Config, reload: Reload) -> i32 {
    // The origin of the times in /status.json.
    let started = Instant::now();
    crate::log::set_level(config.log_level);
    crate::log::init_timestamps();
    if let Err(e) = sys::block_termination_signals() {
        error!("cannot block termination signals: {e}");
        return EXIT_FAILURE;
    }
    // Socket activation, or a binary upgrade: take the descriptors passed to this process
    // before anything else.
    let mut upgrade_from = match crate::upgrade::Inherited::take() {
        Ok(inherited) => inherited,
        Err(e) => {
            error!("binary upgrade: {e}");
            return EXIT_FAILURE;
        }
    };
    let mut inherited = match sys::inherited_listeners() {
        Ok(inherited) => inherited,
        Err(e) => {
            error!("{e}");
            return EXIT_FAILURE;
        }
    };
    inherited.append(&mut upgrade_from.listeners);
    let inherited_admin = upgrade_from.admin.take();
    report_open_files_limit(config.workers, config.file_cache_entries);
    if !sys::keep_freed_memory(ALLOCATOR_KEEPS) {
        warn!(
            "the allocator refused M_TRIM_THRESHOLD; freed memory goes back to the kernel at once"
        );
    }
    // Before binding: SO_REUSEPORT would let the workers join another process's listeners.
    // Sockets passed to this process are its own.
    let passed = match inherited.is_empty() {
        true => HashSet::new(),
        false => portcheck::own_socket_inodes(),
    };
    if let Err(line) = portcheck::check_free(&config.listen_addrs(), &passed) {
        error!("{line}");
        return EXIT_FAILURE;
    }
    let config = Arc::new(config);
    let access_log = match AccessLog::open(&config) {
        Ok(log) => log,
        Err(e) => {
            error!("cannot open the access log {}: {e}", config.access_log);
            return EXIT_FAILURE;
        }
    };
    let listeners = match Listeners::bind(&config, config.workers, inherited) {
        Ok(listeners) => listeners,
        Err(line) => {
            error!("{line}");
            return EXIT_FAILURE;
        }
    };
    for (addr, shared) in listeners.passed() {
        match shared {
            false => info!("{addr}: listening on the passed socket(s) (LISTEN_FDS, or an upgrade)"),
            true => info!(
                "{addr}: listening on the passed socket (LISTEN_FDS), shared by the workers \
                 (it has no SO_REUSEPORT: ReusePort=yes gives each worker its own)"
            ),
        }
    }
    let cpus = match sys::allowed_cpus() {
        Ok(cpus) if !cpus.is_empty() => cpus,
        Ok(_) | Err(_) => {
            warn!("cannot read the CPU affinity mask; workers will not be pinned");
            Vec::new()
        }
    };
    let (report_tx, report_rx) = bounded::<WorkerReport>(4 * config.workers.max(16));
    let (event_tx, event_rx) = unbounded::<WorkerEvent>();
    let spawner = Spawner {
        cpus,
        reports: report_tx,
        events: event_tx,
    };
    let mut deferred = Vec::new();
    let first = Generation::spawn(
        0,
        Arc::clone(&config),
        &listeners,
        &spawner,
        access_log.sink(),
        &event_rx,
        &mut deferred,
    );
    let mut first = match first {
        Ok(generation) => generation,
        Err(line) => {
            error!("{line}");
            return EXIT_FAILURE;
        }
    };
    // Once more now that our listeners exist: another process that checked and bound in the
    // meantime would share the ports (it finds ours too and gives up as well).
    if let Err(line) =
        portcheck::check_free(&config.listen_addrs(), &portcheck::own_socket_inodes())
    {
        error!("{line}");
        first.abandon();
        return EXIT_FAILURE;
    }

    let totals = Arc::new(Mutex::new(Totals::new(config.workers)));
    let state = Arc::new(AtomicU8::new(STARTING));
    let mut admin_listener = None;
    if let Some(addr) = config.admin {
        let bound = match inherited_admin {
            Some(listener) => Ok(listener),
            None => std::net::TcpListener::bind(addr),
        };
        let served = bound.and_then(|listener| {
            // A copy stays here, for a binary upgrade to hand over.
            admin_listener = Some(listener.try_clone()?);
            spawn_admin(listener, &totals, &state, started)
        });
        if let Err(e) = served {
            error!("cannot serve metrics on {addr}: {e}");
            first.abandon();
            return EXIT_FAILURE;
        }
    }

    first.start();
    // Ready before saying so: whoever reads the line (a test, an operator) finds /readyz 200.
    state.store(SERVING, Ordering::Relaxed);
    info!("ready: {}", serving_line(&config));
    if upgrade_from.is_upgrade() {
        // systemd follows this process from now on (the unit has NotifyAccess=all).
        crate::sdnotify::send(&format!("MAINPID={}\nREADY=1", std::process::id()));
        info!(
            "binary upgrade: PID {} serves; the previous process finishes",
            std::process::id()
        );
        upgrade_from.say_ready();
    } else {
        crate::sdnotify::send("READY=1");
    }

    let signals = spawn_signal_thread();
    let channels = Channels {
        reports: &report_rx,
        events: &event_rx,
        signals: &signals,
        readiness: &state,
    };
    let mut supervisor = Supervisor {
        running: config,
        current: first,
        retiring: Vec::new(),
        listeners,
        spawner,
        access_log,
        totals: Arc::clone(&totals),
        reload,
        deferred,
        admin_listener,
        upgrade: None,
        handed_over: false,
    };
    let code = supervisor.serve(&channels);
    if code != 0 {
        state.store(WORKER_DOWN, Ordering::Relaxed);
    }

    // After a binary upgrade the new process is the service: this one finishes its
    // connections as at a reload (nothing refused or reset) and says nothing to systemd.
    let kind = match supervisor.handed_over {
        true => StopKind::Handover,
        false => {
            crate::sdnotify::send("STOPPING=1");
            StopKind::Shutdown
        }
    };
    supervisor.current.stop(kind);
    for generation in &supervisor.retiring {
        generation.stop(StopKind::Shutdown);
    }
    let drain = supervisor.running.drain_timeout + supervisor.running.ws_close_timeout;
    let stopping = Stopping {
        events: &event_rx,
        reports: &report_rx,
        signals: &signals,
        totals: &totals,
        deadline: Instant::now() + drain + EXIT_GRACE,
    };
    let mut generations = std::mem::take(&mut supervisor.retiring);
    generations.push(supervisor.current);
    let code = wait_for_exit(&mut generations, &stopping, code);
    if generations.iter().all(Generation::is_finished) {
        // Every worker has ended and handed over its last lines; the writers end with them.
        supervisor.access_log.join();
    }
    info!("bye (exit status {code})");
    code
}

/// "serving ROOT on ADDRS port(s) PORTS (TLS on …) with N worker(s)".
fn serving_line(config: &Config) -> String {
    let tls = match config.tls_ports.is_empty() {
        true => String::new(),
        false => format!(" (TLS on {})", describe_ports(&config.tls_ports)),
    };
    format!(
        "serving {} on {} port(s) {}{tls} with {} worker(s)",
        config.root.display(),
        describe_addresses(&config.bind),
        describe_ports(&config.ports),
        config.workers
    )
}

/// Serves /metrics, /status.json and the probes on `addr` from the totals and the state.
fn spawn_admin(
    listener: std::net::TcpListener,
    totals: &Arc<Mutex<Totals>>,
    state: &Arc<AtomicU8>,
    started: Instant,
) -> std::io::Result<()> {
    let shared = Arc::clone(totals);
    let render = move || {
        let mut text = shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .render_prometheus();
        crate::metrics::render_process(&mut text, &crate::procstat::read());
        text
    };
    let shared = Arc::clone(totals);
    let status = move || {
        let totals = shared.lock().unwrap_or_else(PoisonError::into_inner);
        totals.render_json(started, Instant::now())
    };
    let seen = Arc::clone(state);
    let ready = move || readiness(seen.load(Ordering::Relaxed));
    let addr = listener.local_addr()?;
    crate::admin::spawn_on(
        listener,
        crate::admin::Endpoints::new(render, status, ready),
    )?;
    info!("metrics on http://{addr}/metrics and /status.json, probes on /healthz and /readyz");
    Ok(())
}

/// The access log's writer threads: the current one, and those still writing for a
/// generation that drains after the log's settings changed.
struct AccessLog {
    current: Option<Writer>,
    /// Writers of earlier settings, joined at exit (each ends once its workers are gone).
    earlier: Vec<std::thread::JoinHandle<()>>,
}

impl AccessLog {
    fn open(config: &Config) -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            current: crate::access_log::spawn_writer(&config.access_log)?,
            earlier: Vec::new(),
        })
    }

    fn sink(&self) -> Option<&Sender<Vec<u8>>> {
        self.current.as_ref().map(|w| &w.sink)
    }

    /// Starts a writer for `config`'s settings; the old one keeps writing for the workers that
    /// still hold its sender.
    fn replace(&mut self, config: &Config) -> std::io::Result<()> {
        let next = crate::access_log::spawn_writer(&config.access_log)?;
        if let Some(old) = std::mem::replace(&mut self.current, next) {
            self.earlier.push(old.thread);
        }
        Ok(())
    }

    /// SIGUSR1: the current writer opens its file again before its next write.
    fn reopen(&self) -> bool {
        match &self.current {
            Some(writer) => {
                writer.reopen.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Waits for every writer, once no worker holds a sender any more.
    fn join(self) {
        let AccessLog { current, earlier } = self;
        if let Some(writer) = current {
            drop(writer.sink);
            let _ = writer.thread.join();
        }
        for thread in earlier {
            let _ = thread.join();
        }
    }
}

/// What the supervisor hears from the workers and the signal thread while serving.
struct Channels<'a> {
    reports: &'a Receiver<WorkerReport>,
    events: &'a Receiver<WorkerEvent>,
    signals: &'a Receiver<i32>,
    /// What /readyz reports; set to draining before the drain is logged.
    readiness: &'a AtomicU8,
}

/// The serving state: the configuration in force, the generation that serves it, the ones
/// still finishing their connections after a reload, and what a new generation needs.
struct Supervisor {
    running: Arc<Config>,
    current: Generation,
    retiring: Vec<Generation>,
    listeners: Listeners,
    spawner: Spawner,
    access_log: AccessLog,
    totals: Arc<Mutex<Totals>>,
    reload: Reload,
    /// Worker events that arrived while a generation was starting, handled after it.
    deferred: Vec<WorkerEvent>,
    /// A copy of the admin endpoint's listener, for a binary upgrade to hand over.
    admin_listener: Option<std::net::TcpListener>,
    /// The new process a SIGUSR2 started, until it serves or fails.
    upgrade: Option<crate::upgrade::Upgrade>,
    /// The new process serves: this one stops by handing over.
    handed_over: bool,
}

impl Supervisor {
    /// The steady state: aggregate reports, log progress, reload on SIGHUP, until a
    /// termination signal (0) or a worker of the serving generation dies (1).
    fn serve(&mut self, channels: &Channels<'_>) -> i32 {
        let Channels {
            reports,
            events,
            signals,
            readiness,
        } = *channels;
        let now = Instant::now();
        let mut progress = ProgressLog::new(1000, now);
        let mut summary = Summary::new(SUMMARY_EVERY, now);
        let mut watchdog = Watchdog::from_env();
        let tick = watchdog.map_or(Duration::from_secs(1), |w| {
            w.interval().min(Duration::from_secs(1))
        });
        let mut status = StatusLine::new(now);
        loop {
            if let Some(watchdog) = &mut watchdog {
                watchdog.tick(Instant::now());
            }
            for event in std::mem::take(&mut self.deferred) {
                if let Err(code) = self.on_event(event) {
                    return code;
                }
            }
            let upgraded = match &self.upgrade {
                Some(upgrade) => upgrade.outcome.clone(),
                None => crossbeam_channel::never(),
            };
            select! {
                recv(reports) -> report => {
                    let Ok(report) = report else { return EXIT_FAILURE };
                    let active = {
                        let mut t = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
                        t.apply(&report, Instant::now());
                        t.active()
                    };
                    if let Some(line) = progress.observe(active, Instant::now()) {
                        info!("{line}");
                    }
                }
                recv(events) -> event => match event {
                    Ok(event) => {
                        if let Err(code) = self.on_event(event) {
                            return code;
                        }
                    }
                    Err(_) => return EXIT_FAILURE,
                },
                recv(signals) -> signal => match signal {
                    Ok(libc::SIGHUP) => {
                        crate::sdnotify::reloading();
                        let reloaded = (self.reload)();
                        self.apply_reload(reloaded, events);
                        crate::sdnotify::send("READY=1");
                    }
                    Ok(libc::SIGUSR2) => self.start_upgrade(),
                    Ok(libc::SIGUSR1) => match self.access_log.reopen() {
                        true => info!("SIGUSR1: reopening the access log"),
                        false => info!("SIGUSR1 ignored: the access log is off or not a file"),
                    },
                    signal => {
                        let name = signal.map(sys::signal_name).unwrap_or("signal");
                        // Not ready before saying so: whoever reads the line finds /readyz 503.
                        readiness.store(DRAINING, Ordering::Relaxed);
                        info!("{name}: draining for up to {:?}", self.running.drain_timeout);
                        return 0;
                    }
                },
                recv(upgraded) -> outcome => {
                    if let Some(done) = self.upgrade_done(outcome.unwrap_or(false), readiness) {
                        return done;
                    }
                }
                default(tick) => {}
            }
            let (sum, active) = {
                let t = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
                (t.sum(), t.active())
            };
            let now = Instant::now();
            if let Some(line) = summary.tick(&sum, active, now) {
                info!("{line}");
            }
            status.tick(&sum, active, now);
        }
    }

    /// SIGUSR2: starts this binary again with the listening sockets; this process serves on
    /// until the new one does.
    fn start_upgrade(&mut self) {
        if let Some(upgrade) = &self.upgrade {
            info!(
                "SIGUSR2 ignored: the new process {} is still starting",
                upgrade.child.id()
            );
            return;
        }
        let fds = self.listeners.fds();
        let admin = self.admin_listener.as_ref().map(std::os::fd::AsFd::as_fd);
        match crate::upgrade::start(&fds, admin) {
            Ok(upgrade) => {
                info!(
                    "SIGUSR2: started PID {} with the listening sockets",
                    upgrade.child.id()
                );
                self.upgrade = Some(upgrade);
            }
            Err(e) => error!("SIGUSR2: cannot start the new binary, still serving: {e}"),
        }
    }

    /// The new process serves (this one hands over: `Some(0)`), or it ended before it did
    /// (this one goes on: `None`).
    fn upgrade_done(&mut self, serving: bool, readiness: &AtomicU8) -> Option<i32> {
        let mut upgrade = self.upgrade.take()?;
        let pid = upgrade.child.id();
        if serving {
            readiness.store(DRAINING, Ordering::Relaxed);
            info!("binary upgrade: PID {pid} serves; finishing this process's connections");
            self.handed_over = true;
            return Some(0);
        }
        let status = upgrade
            .child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_default();
        error!("binary upgrade: PID {pid} ended before it served ({status}); still serving");
        None
    }

    /// A worker's event while serving: a retiring worker's exit is its drain done; any other
    /// exit means the serving generation lost a worker, and the process stops (`Err`).
    fn on_event(&mut self, event: WorkerEvent) -> Result<(), i32> {
        match event {
            WorkerEvent::Exited { worker, panicked } => {
                if let Some(i) = self.retiring.iter_mut().position(|g| g.joined(worker)) {
                    if panicked {
                        error!("worker {worker} panicked while finishing its connections");
                    }
                    if self.retiring[i].is_finished() {
                        let done = self.retiring.remove(i);
                        info!("generation {} finished its connections", done.number);
                    }
                    return Ok(());
                }
                let how = if panicked { "panicked" } else { "exited" };
                error!("worker {worker} {how}; shutting down the other workers");
                Err(EXIT_FAILURE)
            }
            other => {
                debug!("unexpected worker event {other:?}");
                Ok(())
            }
        }
    }

    /// SIGHUP: an invalid configuration is logged and changes nothing; the log level applies
    /// at once; any other change starts a new generation of workers on the same listening
    /// sockets (plus any new address:port, bound first) and, once it serves, the old
    /// generation stops accepting and finishes its connections ([`StopKind::Handover`]). If
    /// the new generation cannot start, the old one goes on serving unchanged.
    fn apply_reload(&mut self, reloaded: Result<Config, String>, events: &Receiver<WorkerEvent>) {
        let mut new = match reloaded {
            Ok(new) => new,
            Err(why) => {
                error!("SIGHUP: configuration not reloaded, still running as before: {why}");
                return;
            }
        };
        if new.admin != self.running.admin {
            warn!("SIGHUP: admin changed; the admin endpoint stays where it is until a restart");
            new.admin = self.running.admin;
        }
        let changed = crate::config::differences(&self.running, &new);
        if changed.is_empty() {
            info!("SIGHUP: configuration reloaded; nothing changed");
            return;
        }
        if new.log_level != self.running.log_level {
            // Said under the old level, so that a quieter new one still shows the change.
            info!("SIGHUP: log_level is now {}", new.log_level.label());
            crate::log::set_level(new.log_level);
        }
        if changed == ["log_level"] {
            self.running = Arc::new(new);
            return;
        }
        match self.start_generation(new, events) {
            Ok(()) => info!(
                "SIGHUP: generation {} {} ({} changed); the previous generation finishes its \
                 connections",
                self.current.number,
                serving_line(&self.running),
                changed.join(", ")
            ),
            Err(why) => error!("SIGHUP: not reloaded, still running as before: {why}"),
        }
    }

    /// Binds what `new` adds, starts a generation for it, and hands over to it.
    fn start_generation(
        &mut self,
        new: Config,
        events: &Receiver<WorkerEvent>,
    ) -> Result<(), String> {
        let before = self.listeners.shape();
        let added: Vec<_> = new
            .listen_addrs()
            .into_iter()
            .filter(|addr| !self.listeners.addrs().contains(addr))
            .collect();
        portcheck::check_free(&added, &portcheck::own_socket_inodes())?;
        self.listeners.reconcile(&new, new.workers)?;
        let log_changed = new.access_log != self.running.access_log;
        if log_changed {
            if let Err(e) = self.access_log.replace(&new) {
                self.listeners.restore(&before);
                return Err(format!(
                    "cannot open the access log {}: {e}",
                    new.access_log
                ));
            }
        }
        let config = Arc::new(new);
        let spawned = Generation::spawn(
            self.current.number + 1,
            Arc::clone(&config),
            &self.listeners,
            &self.spawner,
            self.access_log.sink(),
            events,
            &mut self.deferred,
        );
        let mut next = match spawned {
            Ok(next) => next,
            Err(why) => {
                self.listeners.restore(&before);
                return Err(why);
            }
        };
        {
            let mut totals = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
            totals.resize(config.workers);
        }
        next.start();
        let previous = std::mem::replace(&mut self.current, next);
        previous.stop(StopKind::Handover);
        self.retiring.push(previous);
        // The workers of the previous generation drop their copies as they stop accepting;
        // an address:port no longer configured closes with them.
        self.listeners.retain_configured(&config);
        self.running = config;
        Ok(())
    }
}

/// STATUS= for `systemctl status`, every [`crate::sdnotify::STATUS_EVERY`]: open connections
/// and the requests per second since the previous one.
struct StatusLine {
    since: Instant,
    requests: u64,
}

impl StatusLine {
    fn new(now: Instant) -> StatusLine {
        StatusLine {
            since: now,
            requests: 0,
        }
    }

    fn tick(&mut self, sum: &crate::metrics::Counters, active: u64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < crate::sdnotify::STATUS_EVERY {
            return;
        }
        let requests = sum.total_requests();
        let rate = requests.saturating_sub(self.requests) as f64 / elapsed.as_secs_f64();
        crate::sdnotify::send(&crate::sdnotify::status_line(active, rate, false));
        self.since = now;
        self.requests = requests;
    }
}

/// What the supervisor watches while the workers stop.
struct Stopping<'a> {
    events: &'a Receiver<WorkerEvent>,
    reports: &'a Receiver<WorkerReport>,
    signals: &'a Receiver<i32>,
    totals: &'a Mutex<Totals>,
    deadline: Instant,
}

/// Waits for every worker of every generation to exit (or the deadline); a panic on the way
/// makes the exit code non-zero. A second SIGINT or SIGTERM ends the wait at once with `code`
/// (0 after a drain asked for by a signal): the operator asked twice, so the process exits
/// without waiting for the connections still in flight, and systemd must not read that as a
/// failure.
fn wait_for_exit(generations: &mut [Generation], stopping: &Stopping<'_>, mut code: i32) -> i32 {
    let mut watchdog = Watchdog::from_env();
    let active = stopping
        .totals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .active();
    crate::sdnotify::send(&crate::sdnotify::status_line(active, 0.0, true));
    while !generations.iter().all(Generation::is_finished) {
        if let Some(watchdog) = &mut watchdog {
            watchdog.tick(Instant::now());
        }
        let left = stopping.deadline.saturating_duration_since(Instant::now());
        // Wake for the watchdog too: systemd would kill a drain that goes quiet.
        let wait = watchdog.map_or(left, |w| left.min(w.interval()));
        select! {
            recv(stopping.events) -> event => match event {
                Ok(WorkerEvent::Exited { worker, panicked }) => {
                    for generation in generations.iter_mut() {
                        if generation.joined(worker) {
                            break;
                        }
                    }
                    if panicked {
                        error!("worker {worker} panicked during shutdown");
                        code = EXIT_FAILURE;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            },
            recv(stopping.reports) -> report => {
                if let Ok(report) = report {
                    stopping.totals.lock().unwrap_or_else(PoisonError::into_inner).apply(&report, Instant::now());
                }
            }
            recv(stopping.signals) -> signal => match signal {
                Ok(signo @ (libc::SIGINT | libc::SIGTERM)) => {
                    let active = stopping.totals.lock().unwrap_or_else(PoisonError::into_inner).active();
                    info!(
                        "{} again: exiting now, without waiting for {active} open connection(s)",
                        sys::signal_name(signo)
                    );
                    return code;
                }
                Ok(signo) => info!("{} ignored: already stopping", sys::signal_name(signo)),
                // The signal thread is gone; keep waiting for the workers.
                Err(_) => {}
            },
            default(wait) => {
                if Instant::now() >= stopping.deadline {
                    error!("workers did not stop in time; exiting anyway");
                    return EXIT_FAILURE;
                }
            }
        }
    }
    code
}

fn spawn_signal_thread() -> Receiver<i32> {
    let (tx, rx) = bounded(4);
    let spawned = std::thread::Builder::new()
        .name("percore-signals".into())
        .spawn(move || loop {
            match sys::wait_termination_signal() {
                Ok(signo) => {
                    if tx.send(signo).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    error!("sigwait: {e}");
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        error!("cannot start the signal thread: {e}");
    }
    rx
}

fn report_open_files_limit(workers: usize, file_cache_entries: usize) {
    match sys::raise_open_files_limit() {
        Ok(limit) => {
            info!(
                "open files limit: {} (was {}, hard {})",
                limit.now, limit.before, limit.hard
            );
            if limit.now < 1_000_000 {
                // Each worker also holds an epoll fd, an eventfd and its listeners, and its file
                // cache up to one descriptor per entry (when every entry is a large file).
                let fixed = 64 + workers as u64 * 40;
                let cache = (workers as u64).saturating_mul(file_cache_entries as u64);
                info!(
                    "the open files limit caps this process at about {} concurrent connections \
                     ({} while the file caches hold {} large files)",
                    limit.now.saturating_sub(fixed),
                    limit.now.saturating_sub(fixed.saturating_add(cache)),
                    cache
                );
            }
        }
        Err(e) => warn!("cannot raise the open files limit: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::WorkerHandle;
    use crate::worker::{Stop, WorkerId};

    /// A supervisor whose serving generation has no workers, with `reload` for SIGHUP.
    fn supervisor(reload: Reload) -> Supervisor {
        let (reports, _) = bounded(1);
        let (events, _) = unbounded();
        let config = Arc::new(Config::defaults());
        Supervisor {
            current: Generation::empty(0, Arc::clone(&config)),
            running: config,
            retiring: Vec::new(),
            listeners: Listeners::default(),
            spawner: Spawner {
                cpus: Vec::new(),
                reports,
                events,
            },
            access_log: AccessLog {
                current: None,
                earlier: Vec::new(),
            },
            totals: Arc::new(Mutex::new(Totals::new(1))),
            reload,
            deferred: Vec::new(),
            admin_listener: None,
            upgrade: None,
            handed_over: false,
        }
    }

    /// Runs `serve` with one event and one signal already queued and returns its exit code.
    fn serve_after(event: Option<WorkerEvent>, signal: Option<i32>) -> i32 {
        let (_report_tx, reports) = bounded::<WorkerReport>(1);
        let (event_tx, events) = unbounded();
        let (signal_tx, signals) = bounded(1);
        if let Some(event) = event {
            event_tx.send(event).unwrap();
        }
        if let Some(signo) = signal {
            signal_tx.send(signo).unwrap();
        }
        let channels = Channels {
            reports: &reports,
            events: &events,
            signals: &signals,
            readiness: &AtomicU8::new(SERVING),
        };
        supervisor(Box::new(|| Err("no reload here".to_owned()))).serve(&channels)
    }

    const WORKER_0: WorkerId = WorkerId {
        generation: 0,
        index: 0,
    };

    #[test]
    fn a_worker_that_panics_stops_the_process_with_failure() {
        let died = WorkerEvent::Exited {
            worker: WORKER_0,
            panicked: true,
        };
        assert_eq!(serve_after(Some(died), None), EXIT_FAILURE);
    }

    #[test]
    fn a_worker_that_exits_unasked_also_means_failure() {
        let exited = WorkerEvent::Exited {
            worker: WORKER_0,
            panicked: false,
        };
        assert_eq!(serve_after(Some(exited), None), EXIT_FAILURE);
    }

    /// SIGHUP re-reads the configuration and serving goes on; only the SIGTERM after it ends
    /// `serve`. An invalid configuration and an unchanged one start no generation.
    #[test]
    fn sighup_reloads_and_keeps_serving() {
        let (_report_tx, reports) = bounded::<WorkerReport>(1);
        let (_event_tx, events) = unbounded::<WorkerEvent>();
        let (signal_tx, signals) = bounded(4);
        for signo in [libc::SIGHUP, libc::SIGHUP, libc::SIGTERM] {
            signal_tx.send(signo).unwrap();
        }
        let reloads = Arc::new(AtomicU8::new(0));
        let count = Arc::clone(&reloads);
        let reload: Reload = Box::new(move || match count.fetch_add(1, Ordering::Relaxed) {
            0 => Err("invalid".to_owned()),
            _ => Ok(Config::defaults()),
        });
        let channels = Channels {
            reports: &reports,
            events: &events,
            signals: &signals,
            readiness: &AtomicU8::new(SERVING),
        };
        let mut supervisor = supervisor(reload);
        assert_eq!(supervisor.serve(&channels), 0);
        assert_eq!(reloads.load(Ordering::Relaxed), 2);
        assert_eq!(supervisor.current.number, 0);
    }

    #[test]
    fn ready_only_while_serving() {
        assert_eq!(readiness(SERVING), Ok(()));
        assert_eq!(readiness(STARTING), Err("starting"));
        assert_eq!(readiness(DRAINING), Err("draining"));
        assert!(readiness(WORKER_DOWN).is_err());
    }

    #[test]
    fn a_termination_signal_ends_serving_with_success() {
        assert_eq!(serve_after(None, Some(libc::SIGTERM)), 0);
    }

    /// Waits on one worker that does not exit in time, with `signal` queued; returns the exit
    /// code and how long the wait took.
    fn stop_with_signal(signal: i32, code: i32) -> (i32, Duration) {
        let (_event_tx, events) = unbounded();
        let (_report_tx, reports) = bounded::<WorkerReport>(1);
        let (signal_tx, signals) = bounded(1);
        signal_tx.send(signal).unwrap();
        let totals = Mutex::new(Totals::new(1));
        let stopping = Stopping {
            events: &events,
            reports: &reports,
            signals: &signals,
            totals: &totals,
            deadline: Instant::now() + Duration::from_millis(500),
        };
        let mut generation = Generation::empty(0, Arc::new(Config::defaults()));
        generation.workers.push(WorkerHandle {
            id: WORKER_0,
            stop: Arc::new(Stop::new().unwrap()),
            thread: Some(std::thread::spawn(|| {
                std::thread::sleep(Duration::from_secs(1))
            })),
        });
        let started = Instant::now();
        let code = wait_for_exit(&mut [generation], &stopping, code);
        (code, started.elapsed())
    }

    #[test]
    fn a_second_sigterm_or_sigint_stops_at_once_with_the_same_code() {
        for signal in [libc::SIGTERM, libc::SIGINT] {
            let (code, took) = stop_with_signal(signal, 0);
            assert_eq!(code, 0);
            assert!(took < Duration::from_millis(400), "{took:?}");
        }
        assert_eq!(
            stop_with_signal(libc::SIGTERM, EXIT_FAILURE).0,
            EXIT_FAILURE
        );
    }

    #[test]
    fn sighup_or_sigquit_during_the_drain_changes_nothing() {
        for signal in [libc::SIGHUP, libc::SIGQUIT] {
            let (code, took) = stop_with_signal(signal, 0);
            assert_eq!(
                code, EXIT_FAILURE,
                "the worker never exited: the deadline ends the wait"
            );
            assert!(took >= Duration::from_millis(450), "{took:?}");
        }
    }
}
