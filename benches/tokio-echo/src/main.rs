//! A minimal WebSocket echo server on tokio + tokio-tungstenite, the comparison for percore's
//! `/ws` endpoint in `benches/compare.sh`.
//!
//! It echoes every text and binary message, answers pings (tungstenite queues the pong and
//! writes it on its next read or write), and completes the close handshake. It does nothing else:
//! no compression (tungstenite has no permessage-deflate), no paths, no timeouts.
//!
//! Usage: `tokio-echo --port P [--threads N] [--bind ADDR]`; `--threads 1` runs a
//! current-thread runtime, more runs a multi-thread runtime with N workers.

use std::net::SocketAddr;

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    bind: String,
    port: u16,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bind: "127.0.0.1".to_owned(),
        port: 9001,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--bind" => args.bind = value()?,
            "-h" | "--help" => {
                println!("usage: tokio-echo --port P [--threads N] [--bind ADDR]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".to_owned());
    }
    Ok(args)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("tokio-echo: {e}");
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
        eprintln!("tokio-echo: runtime: {e}");
        std::process::exit(1);
    });
    if let Err(e) = runtime.block_on(serve(&args.bind, args.port)) {
        eprintln!("tokio-echo: {e}");
        std::process::exit(1);
    }
}

async fn serve(bind: &str, port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind((bind, port)).await?;
    eprintln!("tokio-echo: listening on {}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept().await?;
        tokio::spawn(echo(stream, peer));
    }
}

/// The echo loop of tokio-tungstenite's own `examples/echo-server.rs`: `forward` writes each
/// message without flushing while more are ready and flushes when the reader would wait, so a
/// batch of pipelined messages goes out in one write, as percore does.
async fn echo(stream: TcpStream, _peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws.split();
    // Pings are answered and close frames returned by tungstenite itself while reading.
    let _ = read
        .try_filter(|message| future::ready(message.is_text() || message.is_binary()))
        .forward(write)
        .await;
}
