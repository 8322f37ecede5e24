//! may_minihttp serving the files of one directory from memory: a peer of percore in
//! `benches/compare.sh` (issue 15), shaped like TechEmpower's may-minihttp plaintext test.
//!
//! Every regular file under the root is read once at start; `/index.html` is also served at
//! `/`. A GET of a known path is answered 200 with what TechEmpower's plaintext response has
//! (may_minihttp writes `Server`, `Date` and `Content-Length`) plus `Content-Type`, and the
//! file's bytes; anything else is 404 with an empty body. There is nothing more: no
//! Last-Modified, ETag, ranges, conditional requests, HEAD or `Connection: close` (may_minihttp
//! keeps every connection open until the client closes it).
//!
//! Usage: `may-minihttp-peer [--root DIR] [--workers N] PORT...` listens on 127.0.0.1 at each
//! PORT; N worker threads (default: the CPUs this process may run on), which may pins to
//! those CPUs in order.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use may_minihttp::{HttpService, HttpServiceFactory, Request, Response};

struct File {
    /// "Content-Type: ..." as may_minihttp takes a header: a whole line without CRLF.
    content_type: &'static str,
    body: &'static str,
}

type Files = HashMap<String, File>;

#[derive(Clone)]
struct Service {
    files: &'static Files,
}

impl HttpService for Service {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        let path = req.path();
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        match self.files.get(path) {
            Some(file) if req.method() == "GET" => {
                rsp.header(file.content_type).body(file.body);
            }
            _ => {
                rsp.status_code(404, "Not Found");
            }
        }
        Ok(())
    }
}

struct Factory {
    files: &'static Files,
}

impl HttpServiceFactory for Factory {
    type Service = Service;
    fn new_service(&self, _id: usize) -> Service {
        Service { files: self.files }
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "Content-Type: text/html; charset=utf-8",
        "js" | "mjs" => "Content-Type: text/javascript; charset=utf-8",
        "css" => "Content-Type: text/css; charset=utf-8",
        "txt" => "Content-Type: text/plain; charset=utf-8",
        "json" => "Content-Type: application/json",
        "svg" => "Content-Type: image/svg+xml",
        "png" => "Content-Type: image/png",
        "gz" => "Content-Type: application/gzip",
        _ => "Content-Type: application/octet-stream",
    }
}

/// Reads every regular file under `dir` into `files`, keyed by its URL path.
fn load(root: &Path, dir: &Path, files: &mut Files) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            load(root, &path, files)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).expect("under the root");
            let url = format!("/{}", rel.to_string_lossy());
            let bytes: &'static [u8] = Box::leak(std::fs::read(&path)?.into_boxed_slice());
            // SAFETY: may_minihttp 0.1.11 (pinned in Cargo.toml) only takes a body as
            // `&'static str`, and uses it through `len()` and `as_bytes()` alone, never as text;
            // passing the bytes this way sends them with one copy, as a string literal's would
            // be. A binary file is not UTF-8, so this str must not be used for anything else.
            let body = unsafe { std::str::from_utf8_unchecked(bytes) };
            files.insert(
                url,
                File {
                    content_type: content_type(&path),
                    body,
                },
            );
        }
    }
    Ok(())
}

fn usage() -> ! {
    eprintln!("usage: may-minihttp-peer [--root DIR] [--workers N] PORT...");
    std::process::exit(2);
}

fn main() {
    let mut root = String::from(".");
    let mut workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut ports: Vec<u16> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => root = args.next().unwrap_or_else(|| usage()),
            "--workers" => {
                workers = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage())
            }
            "-h" | "--help" => usage(),
            port => ports.push(port.parse().unwrap_or_else(|_| usage())),
        }
    }
    if ports.is_empty() {
        usage();
    }

    let mut files = Files::new();
    let root_path = Path::new(&root);
    if let Err(e) = load(root_path, root_path, &mut files) {
        eprintln!("may-minihttp-peer: cannot read {root}: {e}");
        std::process::exit(1);
    }
    if let Some(index) = files.get("/index.html") {
        let (content_type, body) = (index.content_type, index.body);
        files.insert("/".to_owned(), File { content_type, body });
    }
    let files: &'static Files = Box::leak(Box::new(files));

    may::config().set_workers(workers);
    let servers: Vec<_> = ports
        .iter()
        .map(|&port| {
            Factory { files }
                .start(("127.0.0.1", port))
                .unwrap_or_else(|e| {
                    eprintln!("may-minihttp-peer: cannot listen on 127.0.0.1:{port}: {e}");
                    std::process::exit(1);
                })
        })
        .collect();
    eprintln!(
        "may-minihttp-peer: {} file(s) from {root} in memory, {workers} worker(s), 127.0.0.1 port(s) {ports:?}",
        files.len()
    );
    for server in servers {
        let _ = server.join();
    }
}
