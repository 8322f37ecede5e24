//! The supervisor: the one owner of process-wide concerns.
//!
//! It raises the open-files limit, spawns and pins one worker per core, waits for every worker
//! to bind its listeners before reporting ready (to the log and to systemd), aggregates the
//! workers' metric reports, serves them to operators, turns SIGINT/SIGTERM into a graceful drain,
//! and decides the exit code. It never touches a client connection.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};

use crate::config::{describe_addresses, describe_ports, Config};
use crate::metrics::{ProgressLog, Summary, Totals, WorkerReport};
use crate::portcheck;
use crate::sdnotify::Watchdog;
use crate::sys::{self, EventFd};
use crate::worker::{self, WorkerEvent, WorkerSetup};

/// Exit status when a worker could not start or died.
const EXIT_FAILURE: i32 = 1;
/// Extra time past the drain deadline for workers to close their sockets and exit.
const EXIT_GRACE: Duration = Duration::from_secs(2);
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

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

struct WorkerHandle {
    shutdown: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

/// Reads the configuration again for SIGHUP: the same command line, the config file re-read.
pub type Reload = Box<dyn Fn() -> Result<Config, String>>;

/// Runs percore with `config` until a termination signal or a worker failure; returns the exit
/// code. SIGHUP calls `reload` and never stops the server.
pub fn run(config: Config, reload: Reload) -> i32 {
    // The origin of the times in /status.json.
    let started = Instant::now();
    crate::log::set_level(config.log_level);
    crate::log::init_timestamps();
    if let Err(e) = sys::block_termination_signals() {
        error!("cannot block termination signals: {e}");
        return EXIT_FAILURE;
    }
    report_open_files_limit(config.workers, config.file_cache_entries);
    // Before binding: SO_REUSEPORT would let the workers join another process's listeners.
    if let Err(line) = portcheck::check_free(&config.listen_addrs(), &HashSet::new()) {
        error!("{line}");
        return EXIT_FAILURE;
    }
    let config = Arc::new(config);
    // The access log's writer runs until every worker, holding its sender, has ended.
    let (log_sink, log_writer, log_reopen) =
        match crate::access_log::spawn_writer(&config.access_log) {
            Ok(Some(writer)) => (Some(writer.sink), Some(writer.thread), Some(writer.reopen)),
            Ok(None) => (None, None, None),
            Err(e) => {
                error!("cannot open the access log {}: {e}", config.access_log);
                return EXIT_FAILURE;
            }
        };

    let cpus = match sys::allowed_cpus() {
        Ok(cpus) if !cpus.is_empty() => cpus,
        Ok(_) | Err(_) => {
            warn!("cannot read the CPU affinity mask; workers will not be pinned");
            Vec::new()
        }
    };
    let (report_tx, report_rx) = bounded::<WorkerReport>(4 * config.workers.max(16));
    let (event_tx, event_rx) = unbounded::<WorkerEvent>();
    let mut workers = Vec::with_capacity(config.workers);
    let mut starts = Vec::with_capacity(config.workers);
    for id in 0..config.workers {
        let shutdown = match EventFd::new() {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                error!("eventfd: {e}");
                return abort(&starts, &mut workers, &event_rx);
            }
        };
        let cpu = (!cpus.is_empty()).then(|| cpus[id % cpus.len()]);
        let (start_tx, start_rx) = bounded(1);
        let setup = WorkerSetup {
            id,
            cpu,
            config: Arc::clone(&config),
            reports: report_tx.clone(),
            events: event_tx.clone(),
            start: start_rx,
            shutdown: Arc::clone(&shutdown),
            access_log: log_sink.clone(),
        };
        match worker::spawn(setup) {
            Ok(thread) => {
                match cpu {
                    Some(cpu) => info!("worker {id} -> CPU {cpu}"),
                    None => info!("worker {id} unpinned"),
                }
                starts.push(start_tx);
                workers.push(WorkerHandle {
                    shutdown,
                    thread: Some(thread),
                });
            }
            Err(e) => {
                error!("cannot spawn worker {id}: {e}");
                return abort(&starts, &mut workers, &event_rx);
            }
        }
    }
    drop(event_tx);
    drop(log_sink);

    // The latch: nobody serves until every worker has bound every port.
    let mut ready = 0;
    while ready < workers.len() {
        match event_rx.recv() {
            Ok(WorkerEvent::Ready { .. }) => ready += 1,
            Ok(WorkerEvent::Failed { worker, error }) => {
                error!("worker {worker} failed to start: {error}");
                return abort(&starts, &mut workers, &event_rx);
            }
            Ok(WorkerEvent::Exited { worker, .. }) => {
                error!("worker {worker} exited during start-up");
                return abort(&starts, &mut workers, &event_rx);
            }
            Err(_) => return abort(&starts, &mut workers, &event_rx),
        }
    }

    // Once more now that our listeners exist: another process that checked and bound in the
    // meantime would share the ports (it finds ours too and gives up as well).
    if let Err(line) =
        portcheck::check_free(&config.listen_addrs(), &portcheck::own_socket_inodes())
    {
        error!("{line}");
        return abort(&starts, &mut workers, &event_rx);
    }

    let totals = Arc::new(Mutex::new(Totals::new(workers.len())));
    let state = Arc::new(AtomicU8::new(STARTING));
    if let Some(addr) = config.admin {
        let shared = Arc::clone(&totals);
        let render = move || {
            let mut text = shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .render_prometheus();
            crate::metrics::render_process(&mut text, &crate::procstat::read());
            text
        };
        let shared = Arc::clone(&totals);
        let status = move || {
            let totals = shared.lock().unwrap_or_else(PoisonError::into_inner);
            totals.render_json(started, Instant::now())
        };
        let seen = Arc::clone(&state);
        let ready = move || readiness(seen.load(Ordering::Relaxed));
        match crate::admin::spawn(addr, crate::admin::Endpoints::new(render, status, ready)) {
            Ok(_) => info!(
                "metrics on http://{addr}/metrics and /status.json, probes on /healthz and /readyz"
            ),
            Err(e) => {
                error!("cannot serve metrics on {addr}: {e}");
                return abort(&starts, &mut workers, &event_rx);
            }
        }
    }

    for start in &starts {
        let _ = start.send(true);
    }
    // Ready before saying so: whoever reads the line (a test, an operator) finds /readyz 200.
    state.store(SERVING, Ordering::Relaxed);
    let tls = match config.tls_ports.is_empty() {
        true => String::new(),
        false => format!(" (TLS on {})", describe_ports(&config.tls_ports)),
    };
    info!(
        "ready: serving {} on {} port(s) {}{tls} with {} worker(s)",
        config.root.display(),
        describe_addresses(&config.bind),
        describe_ports(&config.ports),
        workers.len()
    );
    crate::sdnotify::send("READY=1");

    let signals = spawn_signal_thread();
    let channels = Channels {
        reports: &report_rx,
        events: &event_rx,
        signals: &signals,
        log_reopen: log_reopen.as_deref(),
        readiness: &state,
    };
    let code = serve(&config, &*reload, &channels, &totals);
    if code != 0 {
        state.store(WORKER_DOWN, Ordering::Relaxed);
    }

    crate::sdnotify::send("STOPPING=1");
    for w in &workers {
        let _ = w.shutdown.notify();
    }
    let deadline = Instant::now() + config.drain_timeout + EXIT_GRACE;
    let stopping = Stopping {
        events: &event_rx,
        reports: &report_rx,
        signals: &signals,
        totals: &totals,
        deadline,
    };
    let code = wait_for_exit(&mut workers, &stopping, code);
    if let Some(writer) = log_writer {
        // Every worker has ended and handed over its last lines; the writer ends with them.
        if workers.iter().all(|w| w.thread.is_none()) {
            let _ = writer.join();
        }
    }
    info!("bye (exit status {code})");
    code
}

/// What the supervisor hears from the workers and the signal thread while serving.
struct Channels<'a> {
    reports: &'a Receiver<WorkerReport>,
    events: &'a Receiver<WorkerEvent>,
    signals: &'a Receiver<i32>,
    /// Set on SIGUSR1: the access log's writer opens its file again before its next write.
    log_reopen: Option<&'a AtomicBool>,
    /// What /readyz reports; set to draining before the drain is logged.
    readiness: &'a AtomicU8,
}

/// The steady state: aggregate reports, log progress, re-read the configuration on SIGHUP,
/// until a termination signal or a worker dies.
fn serve(
    config: &Config,
    reload: &dyn Fn() -> Result<Config, String>,
    channels: &Channels<'_>,
    totals: &Mutex<Totals>,
) -> i32 {
    let Channels {
        reports,
        events,
        signals,
        log_reopen,
        readiness,
    } = *channels;
    // What runs: the start-up configuration, with what a reload could apply in place.
    let mut running = config.clone();
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
        select! {
            recv(reports) -> report => {
                let Ok(report) = report else { return EXIT_FAILURE };
                let active = {
                    let mut t = totals.lock().unwrap_or_else(PoisonError::into_inner);
                    t.apply(&report, Instant::now());
                    t.active()
                };
                if let Some(line) = progress.observe(active, Instant::now()) {
                    info!("{line}");
                }
            }
            recv(events) -> event => match event {
                Ok(WorkerEvent::Exited { worker, panicked }) => {
                    let how = if panicked { "panicked" } else { "exited" };
                    error!("worker {worker} {how}; shutting down the other workers");
                    return EXIT_FAILURE;
                }
                Ok(other) => debug!("unexpected worker event {other:?}"),
                Err(_) => return EXIT_FAILURE,
            },
            recv(signals) -> signal => {
                if signal == Ok(libc::SIGHUP) {
                    crate::sdnotify::reloading();
                    apply_reload(&mut running, reload());
                    crate::sdnotify::send("READY=1");
                    continue;
                }
                if signal == Ok(libc::SIGUSR1) {
                    match log_reopen {
                        Some(flag) => {
                            flag.store(true, Ordering::Relaxed);
                            info!("SIGUSR1: reopening the access log");
                        }
                        None => info!("SIGUSR1 ignored: the access log is off or not a file"),
                    }
                    continue;
                }
                let name = signal.map(sys::signal_name).unwrap_or("signal");
                // Not ready before saying so: whoever reads the line finds /readyz 503.
                readiness.store(DRAINING, Ordering::Relaxed);
                info!("{name}: draining for up to {:?}", config.drain_timeout);
                return 0;
            }
            default(tick) => {}
        }
        let (sum, active) = {
            let t = totals.lock().unwrap_or_else(PoisonError::into_inner);
            (t.sum(), t.active())
        };
        let now = Instant::now();
        if let Some(line) = summary.tick(&sum, active, now) {
            info!("{line}");
        }
        status.tick(&sum, active, now);
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

/// SIGHUP: keeps running whatever the new configuration says. An invalid one is logged and
/// changes nothing; `log_level` takes effect at once; any other change is logged as needing a
/// restart, since the workers would need a new generation to apply it.
fn apply_reload(running: &mut Config, reloaded: Result<Config, String>) {
    let new = match reloaded {
        Ok(new) => new,
        Err(why) => {
            error!("SIGHUP: configuration not reloaded, still running as before: {why}");
            return;
        }
    };
    let changed = crate::config::differences(running, &new);
    if changed.is_empty() {
        info!("SIGHUP: configuration reloaded; nothing changed");
        return;
    }
    if new.log_level != running.log_level {
        // Said under the old level, so that a quieter new one still shows the change.
        info!("SIGHUP: log_level is now {}", new.log_level.label());
        crate::log::set_level(new.log_level);
        running.log_level = new.log_level;
    }
    let pending: Vec<&str> = changed.into_iter().filter(|&k| k != "log_level").collect();
    if !pending.is_empty() {
        warn!(
            "SIGHUP: {} changed; restart percore to apply (a reload applies only log_level)",
            pending.join(", ")
        );
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

/// Waits for every worker to exit (or the deadline); a panic on the way makes the exit code
/// non-zero. A second SIGINT or SIGTERM ends the wait at once with `code` (0 after a drain
/// asked for by a signal): the operator asked twice, so the process exits without waiting for
/// the connections still in flight, and systemd must not read that as a failure.
fn wait_for_exit(workers: &mut [WorkerHandle], stopping: &Stopping<'_>, mut code: i32) -> i32 {
    let mut exited = vec![false; workers.len()];
    let mut watchdog = Watchdog::from_env();
    let active = stopping
        .totals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .active();
    crate::sdnotify::send(&crate::sdnotify::status_line(active, 0.0, true));
    while exited.iter().any(|e| !e) {
        if let Some(watchdog) = &mut watchdog {
            watchdog.tick(Instant::now());
        }
        let left = stopping.deadline.saturating_duration_since(Instant::now());
        // Wake for the watchdog too: systemd would kill a drain that goes quiet.
        let wait = watchdog.map_or(left, |w| left.min(w.interval()));
        select! {
            recv(stopping.events) -> event => match event {
                Ok(WorkerEvent::Exited { worker, panicked }) => {
                    if let Some(flag) = exited.get_mut(worker) {
                        *flag = true;
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
    for w in workers.iter_mut() {
        if let Some(thread) = w.thread.take() {
            let _ = thread.join();
        }
    }
    code
}

/// Start-up failed: release the workers that did start and exit non-zero.
fn abort(
    starts: &[Sender<bool>],
    workers: &mut [WorkerHandle],
    events: &Receiver<WorkerEvent>,
) -> i32 {
    for start in starts {
        let _ = start.send(false);
    }
    for w in workers.iter_mut() {
        let _ = w.shutdown.notify();
        if let Some(thread) = w.thread.take() {
            let _ = thread.join();
        }
    }
    while events.try_recv().is_ok() {}
    EXIT_FAILURE
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

    /// Runs `serve` with one event already queued and returns its exit code.
    fn serve_after(event: Option<WorkerEvent>, signal: Option<i32>) -> i32 {
        let config = Config::defaults();
        let (_report_tx, reports) = bounded::<WorkerReport>(1);
        let (event_tx, events) = unbounded();
        let (signal_tx, signals) = bounded(1);
        if let Some(event) = event {
            event_tx.send(event).unwrap();
        }
        if let Some(signo) = signal {
            signal_tx.send(signo).unwrap();
        }
        let totals = Mutex::new(Totals::new(1));
        let channels = Channels {
            reports: &reports,
            events: &events,
            signals: &signals,
            log_reopen: None,
            readiness: &AtomicU8::new(SERVING),
        };
        serve(
            &config,
            &|| Err("no reload here".to_owned()),
            &channels,
            &totals,
        )
    }

    #[test]
    fn a_worker_that_panics_stops_the_process_with_failure() {
        let died = WorkerEvent::Exited {
            worker: 0,
            panicked: true,
        };
        assert_eq!(serve_after(Some(died), None), EXIT_FAILURE);
    }

    #[test]
    fn a_worker_that_exits_unasked_also_means_failure() {
        let exited = WorkerEvent::Exited {
            worker: 0,
            panicked: false,
        };
        assert_eq!(serve_after(Some(exited), None), EXIT_FAILURE);
    }

    /// SIGHUP re-reads the configuration and serving goes on; only the SIGTERM after it ends
    /// `serve`.
    #[test]
    fn sighup_reloads_and_keeps_serving() {
        let config = Config::defaults();
        let (_report_tx, reports) = bounded::<WorkerReport>(1);
        let (_event_tx, events) = unbounded::<WorkerEvent>();
        let (signal_tx, signals) = bounded(4);
        for signo in [libc::SIGHUP, libc::SIGHUP, libc::SIGTERM] {
            signal_tx.send(signo).unwrap();
        }
        let reloads = std::cell::Cell::new(0);
        let reload = || {
            reloads.set(reloads.get() + 1);
            match reloads.get() {
                1 => Err("invalid".to_owned()),
                _ => Ok(Config::defaults()),
            }
        };
        let totals = Mutex::new(Totals::new(1));
        let channels = Channels {
            reports: &reports,
            events: &events,
            signals: &signals,
            log_reopen: None,
            readiness: &AtomicU8::new(SERVING),
        };
        assert_eq!(serve(&config, &reload, &channels, &totals), 0);
        assert_eq!(reloads.get(), 2);
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

    /// Waits on one worker that never exits, with `signal` queued; returns the exit code and
    /// how long the wait took.
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
        let mut workers = [WorkerHandle {
            shutdown: Arc::new(EventFd::new().unwrap()),
            thread: None,
        }];
        let started = Instant::now();
        let code = wait_for_exit(&mut workers, &stopping, code);
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
