//! percore: a static-file and WebSocket server with one epoll reactor per CPU core.
//!
//! The layers, lowest first (a lower layer never imports a higher one):
//! - [`sys`]: the only module that calls libc or holds `unsafe`.
//! - [`http`], [`ws`], [`files`]: sans-IO protocols and static-file decisions; no sockets, files or clocks.
//! - [`conn`]: one connection's state machine over them (sans-IO: a transport and "now" come in).
//! - [`worker`]: one reactor per core; moves bytes between sockets and the sans-IO layers.
//! - [`metrics`], [`config`], [`tls`], [`log`]: shared read-only configuration (the TLS
//!   certificate among it) and the worker → supervisor reports.
//! - [`supervisor`], [`admin`], [`portcheck`]: process-wide concerns (threads, signals, readiness,
//!   exit code, /metrics, refusing ports another process listens on).
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod config;
pub mod conn;
pub mod files;
pub mod hostcheck;
pub mod http;
pub mod listeners;
#[macro_use]
pub mod log;
pub mod access_log;
pub mod generation;
pub mod metrics;
#[cfg(test)]
mod mutation_tests;
pub mod portcheck;
pub mod procstat;
pub mod sdnotify;
pub mod supervisor;
pub mod sys;
pub mod tls;
pub mod upgrade;
pub mod worker;
pub mod ws;
