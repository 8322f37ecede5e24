//! Integration tests: the real `percore` binary on free loopback ports, real sockets, real clients.
//!
//! One test binary (matklad's "one integration-test crate"); each file covers one capability.

mod harness;

mod bad_requests;
mod browser;
mod cli;
mod curl;
mod http_basics;
mod lifecycle;
mod logging;
mod static_files;
mod timeouts;
mod tls;
mod websocket;
mod ws_client;
mod wsload;
