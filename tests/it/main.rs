//! Integration tests: the real `percore` binary on free loopback ports, real sockets, real clients.
//!
//! One test binary (matklad's "one integration-test crate"); each file covers one capability.

mod harness;

mod access_log;
mod bad_requests;
mod browser;
mod cli;
mod curl;
mod faults;
mod http_basics;
mod ktls;
mod lifecycle;
mod logging;
mod memory_caps;
mod metrics;
mod reload;
mod static_files;
mod systemd;
mod timeouts;
mod tls;
mod websocket;
mod ws_client;
