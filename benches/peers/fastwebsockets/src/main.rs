//! A WebSocket echo server on fastwebsockets (hyper 1 + tokio), a peer of percore's `/ws`
//! endpoint in `benches/compare.sh` (issue 15).
//!
//! The crate's own `examples/echo_server.rs`, with ports and threads as arguments: hyper's
//! HTTP/1.1 server answers the upgrade on any path (`fastwebsockets::upgrade`), and each
//! connection's task, `unconstrained` as in the example, reads whole messages through a
//! `FragmentCollector` and writes each one back with the opcode it came with. fastwebsockets
//! answers pings (auto-pong) and returns close frames (auto-close) itself; there is no
//! compression (fastwebsockets has no permessage-deflate), no timeout, no path check.
//!
//! fastwebsockets writes each message with a system call of its own. As in the example,
//! connections keep Nagle's algorithm, which gathers the small echoes of a batch into few
//! segments while earlier ones are unacknowledged; `--nodelay` sets TCP_NODELAY (as
//! benches/tokio-echo does, which writes a batch at once), and then every echo is a segment.
//!
//! Usage: `fastwebsockets-peer [--threads N] [--bind ADDR] [--nodelay] PORT...`; `--threads 1`
//! (the default) runs a current-thread runtime, as the example does, more a multi-thread
//! runtime with N workers (as benches/tokio-echo's `--threads`).

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    bind: String,
    ports: Vec<u16>,
    threads: usize,
    nodelay: bool,
}

const USAGE: &str = "usage: fastwebsockets-peer [--threads N] [--bind ADDR] [--nodelay] PORT...";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bind: "127.0.0.1".to_owned(),
        ports: Vec::new(),
        threads: 1,
        nodelay: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--bind" => args.bind = value()?,
            "--nodelay" => args.nodelay = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            port => args
                .ports
                .push(port.parse().map_err(|e| format!("port {port}: {e}"))?),
        }
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".to_owned());
    }
    if args.ports.is_empty() {
        return Err(format!("no port given ({USAGE})"));
    }
    Ok(args)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("fastwebsockets-peer: {e}");
        std::process::exit(2);
    });
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_io()
            .build()
    };
    let runtime = runtime.unwrap_or_else(|e| {
        eprintln!("fastwebsockets-peer: runtime: {e}");
        std::process::exit(1);
    });
    if let Err(e) = runtime.block_on(serve(&args)) {
        eprintln!("fastwebsockets-peer: {e}");
        std::process::exit(1);
    }
}

/// Binds every port, then accepts on all of them until one fails.
async fn serve(args: &Args) -> std::io::Result<()> {
    let mut listeners = Vec::new();
    for &port in &args.ports {
        let listener = TcpListener::bind((args.bind.as_str(), port))
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}:{port}: {e}", args.bind)))?;
        listeners.push(listener);
    }
    eprintln!(
        "fastwebsockets-peer: listening on {}:{} with {} thread(s){}",
        args.bind,
        args.ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.threads,
        if args.nodelay { ", TCP_NODELAY" } else { "" }
    );
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept_loop(listener, args.nodelay));
    }
    match accepting.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(std::io::Error::other(e)),
        None => Ok(()),
    }
}

async fn accept_loop(listener: TcpListener, nodelay: bool) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
        tokio::spawn(serve_connection(stream));
    }
}

/// hyper's HTTP/1.1 server on one connection, until the upgrade hands it to `handle_client`.
async fn serve_connection(stream: TcpStream) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = http1::Builder::new()
        .serve_connection(io, service_fn(server_upgrade))
        .with_upgrades()
        .await;
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        // A client that goes away mid-echo is no error worth a line in a benchmark's log.
        let _ = tokio::task::unconstrained(handle_client(fut)).await;
    });
    Ok(response)
}

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    // fastwebsockets' defaults, stated: answer pings, return close frames, no compression.
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}
