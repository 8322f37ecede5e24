//! A generation of workers: the workers started together from one configuration, one per
//! CPU, each pinned and handed its share of the listening sockets.
//!
//! The supervisor starts generation 0 at start-up and a new one on every reload that changes
//! more than the log level; the old one then drains ([`StopKind::Handover`]) while the new one
//! serves. This module owns spawning, the start latch (no worker of a generation serves until
//! all of them are ready), stopping and joining. It never decides when a generation starts or
//! stops: the supervisor does.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::config::Config;
use crate::listeners::Listeners;
use crate::metrics::WorkerReport;
use crate::worker::{self, KernelCiphers, Stop, StopKind, WorkerEvent, WorkerId, WorkerSetup};

/// Longest a new generation may take to get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// One worker as the supervisor holds it.
pub struct WorkerHandle {
    pub id: WorkerId,
    pub stop: Arc<Stop>,
    pub thread: Option<JoinHandle<()>>,
}

/// What every generation is started with: the CPUs to pin to and the channels to the
/// supervisor.
pub struct Spawner {
    pub cpus: Vec<usize>,
    pub reports: Sender<WorkerReport>,
    pub events: Sender<WorkerEvent>,
}

/// The workers of one generation.
pub struct Generation {
    pub number: u64,
    pub config: Arc<Config>,
    pub workers: Vec<WorkerHandle>,
    /// The start latch of each worker, until [`Generation::start`].
    starts: Vec<Sender<bool>>,
}

impl Generation {
    /// Spawns `config.workers` workers with their shares of `listeners`, then waits until every
    /// one is ready (its listeners registered, its document root open). Events of other
    /// generations that arrive meanwhile go to `deferred`. On failure every worker spawned is
    /// stopped and joined, and the error says why.
    pub fn spawn(
        number: u64,
        config: Arc<Config>,
        listeners: &Listeners,
        spawner: &Spawner,
        access_log: Option<&Sender<Vec<u8>>>,
        events: &Receiver<WorkerEvent>,
        deferred: &mut Vec<WorkerEvent>,
    ) -> Result<Generation, String> {
        let mut generation = Generation {
            number,
            config: Arc::clone(&config),
            workers: Vec::with_capacity(config.workers),
            starts: Vec::with_capacity(config.workers),
        };
        if let Err(why) = generation.spawn_workers(listeners, spawner, access_log) {
            generation.abandon();
            return Err(why);
        }
        if let Err(why) = generation.wait_ready(events, deferred) {
            generation.abandon();
            return Err(why);
        }
        Ok(generation)
    }

    fn spawn_workers(
        &mut self,
        listeners: &Listeners,
        spawner: &Spawner,
        access_log: Option<&Sender<Vec<u8>>>,
    ) -> Result<(), String> {
        let count = self.config.workers;
        let kernel_tls = self.kernel_tls();
        for index in 0..count {
            let id = WorkerId {
                generation: self.number,
                index,
            };
            let stop = Arc::new(Stop::new().map_err(|e| format!("eventfd: {e}"))?);
            let cpu = match self.config.pin {
                true => spawner.cpus.get(index % spawner.cpus.len().max(1)).copied(),
                false => None,
            };
            let (start_tx, start_rx) = bounded(1);
            let setup = WorkerSetup {
                id,
                cpu,
                config: Arc::clone(&self.config),
                listeners: listeners.for_worker(index, count, &self.config)?,
                reports: spawner.reports.clone(),
                events: spawner.events.clone(),
                start: start_rx,
                stop: Arc::clone(&stop),
                access_log: access_log.cloned(),
                kernel_tls,
            };
            let thread =
                worker::spawn(setup).map_err(|e| format!("cannot spawn worker {id}: {e}"))?;
            match cpu {
                Some(cpu) => info!("worker {id} -> CPU {cpu}"),
                None => info!("worker {id} unpinned"),
            }
            self.starts.push(start_tx);
            self.workers.push(WorkerHandle {
                id,
                stop,
                thread: Some(thread),
            });
        }
        Ok(())
    }

    /// With `--ktls` and TLS ports: the ciphers the kernel takes, found once for all the
    /// generation's workers (a reload finds out again: modules may have been loaded since), and
    /// said in the log.
    fn kernel_tls(&self) -> Option<KernelCiphers> {
        if !self.config.ktls || self.config.tls.is_none() {
            return None;
        }
        match KernelCiphers::probe() {
            Ok(ciphers) => {
                info!(
                    "--ktls: the kernel encrypts TLS 1.3 with {}; \
                     finished sessions with those ciphers go to it",
                    ciphers.describe()
                );
                Some(ciphers)
            }
            Err(e) => {
                warn!("--ktls: the kernel has no TLS ({e}); TLS is encrypted in user space");
                None
            }
        }
    }

    /// The latch: returns once every worker of this generation is ready.
    fn wait_ready(
        &self,
        events: &Receiver<WorkerEvent>,
        deferred: &mut Vec<WorkerEvent>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut ready = 0;
        while ready < self.workers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match events.recv_timeout(left) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("workers not ready within {READY_TIMEOUT:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => return Err("workers gone".to_owned()),
            };
            let mine = |worker: &WorkerId| worker.generation == self.number;
            match event {
                WorkerEvent::Ready { worker } if mine(&worker) => ready += 1,
                WorkerEvent::Failed { worker, error } if mine(&worker) => {
                    return Err(format!("worker {worker} failed to start: {error}"))
                }
                WorkerEvent::Exited { worker, .. } if mine(&worker) => {
                    return Err(format!("worker {worker} exited during start-up"))
                }
                other => deferred.push(other),
            }
        }
        Ok(())
    }

    /// A generation without workers, for tests of the supervisor.
    #[cfg(test)]
    pub fn empty(number: u64, config: Arc<Config>) -> Generation {
        Generation {
            number,
            config,
            workers: Vec::new(),
            starts: Vec::new(),
        }
    }

    /// Lets every worker serve.
    pub fn start(&mut self) {
        for start in self.starts.drain(..) {
            let _ = start.send(true);
        }
    }

    /// Asks every worker to stop.
    pub fn stop(&self, kind: StopKind) {
        for worker in &self.workers {
            let _ = worker.stop.request(kind);
        }
    }

    /// Gives up on a generation that never served: its workers are told not to start, stopped
    /// and joined.
    pub fn abandon(mut self) {
        for start in self.starts.drain(..) {
            let _ = start.send(false);
        }
        self.stop(StopKind::Shutdown);
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Joins the worker `id` once it said it exited; whether this generation has one.
    pub fn joined(&mut self, id: WorkerId) -> bool {
        let Some(worker) = self.workers.iter_mut().find(|w| w.id == id) else {
            return false;
        };
        if let Some(thread) = worker.thread.take() {
            let _ = thread.join();
        }
        true
    }

    /// Whether every worker has exited and been joined.
    pub fn is_finished(&self) -> bool {
        self.workers.iter().all(|w| w.thread.is_none())
    }
}
