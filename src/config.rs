//! Configuration: one [`Config`] built from command-line flags over an optional TOML file,
//! validated once at start and immutable afterwards.
//!
//! Owns the option table (flag, file key, default, help), the parsers for ports, sizes and
//! durations, and the one-line error messages. Must never open sockets, start threads or
//! read anything but the config file, the document root's metadata and the TLS certificate
//! and key (loaded by [`crate::tls`], so a bad one stops the start like any bad value).
//!
//! Precedence: built-in defaults < config file (only with `--config`) < command-line flags.
//! Every option has a line in `config/percore.toml`; a test checks that the file yields
//! exactly the built-in defaults.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::access_log;
use crate::files::{Coding, Codings, Glob, HeaderRule};
use crate::http::CorsPolicy;
use crate::log::Level;
use crate::tls::{SniCertificate, TlsConfig};

/// The validated server configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `--bind`: the IP addresses to listen on (each on every port); never empty, no address
    /// twice, and no wildcard beside an address of its own family that it already covers.
    pub bind: Vec<IpAddr>,
    /// `--ports`: sorted, deduplicated, never empty.
    pub ports: Vec<u16>,
    /// `--workers`: reactor threads, at least 1.
    pub workers: usize,
    /// `--pin`: each worker runs on one CPU of those the process may use (round robin).
    pub pin: bool,
    /// `--root`: the canonical document root (an existing directory).
    pub root: PathBuf,
    /// `--config`: the file the settings were read from, if any.
    pub config_file: Option<PathBuf>,
    /// `--admin`: where `/metrics` is served; `None` when `off`.
    pub admin: Option<SocketAddr>,
    /// `--log-level`.
    pub log_level: Level,
    /// `--access-log`: off, stderr or a file appended to.
    pub access_log: access_log::Target,
    /// `--access-log-format`: combined or json.
    pub access_log_format: access_log::Format,
    /// `--max-request-line`: longest request line in bytes (414 beyond).
    pub max_request_line: usize,
    /// `--max-header-size`: largest header block in bytes (431 beyond).
    pub max_header_size: usize,
    /// `--max-headers`: most header fields per request.
    pub max_headers: usize,
    /// `--max-body-size`: largest request body in bytes (413 beyond).
    pub max_body_size: u64,
    /// `--header-timeout`: time allowed to receive a request head; never zero.
    pub header_timeout: Duration,
    /// `--keepalive-timeout`: idle time between requests; zero disables keep-alive.
    pub keepalive_timeout: Duration,
    /// `--send-timeout`: time a client may leave a response unread; never zero.
    pub send_timeout: Duration,
    /// `--drain-timeout`: time open connections get to finish at shutdown.
    pub drain_timeout: Duration,
    /// `--small-file-max`: files up to this size come from the per-worker cache.
    pub small_file_max: u64,
    /// `--file-cache-entries`: entries in each worker's file cache (0: none).
    pub file_cache_entries: usize,
    /// `--tcp-congestion`: the TCP congestion control of every listener, which the
    /// connections it accepts inherit; `None` keeps the system's default
    /// (net.ipv4.tcp_congestion_control).
    pub tcp_congestion: Option<String>,
    /// `--ktls`: finished TLS 1.3 sessions go to the kernel (kTLS) where it has TLS.
    pub ktls: bool,
    /// `--max-connections`: connections each worker holds at most (`None`: unlimited, so
    /// only the open-files limit caps them); beyond it the worker stops accepting until one
    /// closes, and new connections wait in the kernel's listen queue.
    pub max_connections: Option<usize>,
    /// `--index`: the file served for a directory; a plain file name.
    pub index: String,
    /// `--dotfiles`: serve names starting with a dot (otherwise they get 404).
    pub dotfiles: bool,
    /// `--precompressed`: the codings served from sibling files (`app.js.br` for `app.js`)
    /// when the client accepts them; none by default, as nginx's `gzip_static off`.
    pub precompressed: Codings,
    /// `--compress`: the codings small text files are compressed in, once, into the cache.
    pub compress: Codings,
    /// `--error-pages`: the page (a path below the root) each error status is answered with,
    /// when that file exists; `404=/404.html` by default.
    pub error_pages: Vec<(u16, String)>,
    /// `--spa-fallback`: the file a missing path without an extension gets with 200 (a
    /// single-page app's router takes it from there); `None`: off.
    pub spa_fallback: Option<String>,
    /// `--mime-types`: extension -> Content-Type, before the built-in table.
    pub mime_types: Vec<(String, String)>,
    /// `--cors-origins`: which other origins' scripts may read the files.
    pub cors: CorsPolicy,
    /// `--autoindex`: list a directory without an index file (otherwise 403).
    pub autoindex: bool,
    /// `[[headers]]` (config file only): extra response fields by path glob, in order.
    pub header_rules: Vec<HeaderRule>,
    /// `--ws-paths`: request paths that accept a WebSocket upgrade (404 elsewhere); `None`
    /// (`any`) accepts an upgrade on every path.
    pub ws_paths: Option<Vec<String>>,
    /// `--ws-origins`: allowed `Origin` values; `None` (`any`) accepts every origin.
    pub ws_origins: Option<Vec<String>>,
    /// `--ws-max-message`: largest WebSocket message in bytes, after decompression (1009 beyond).
    pub ws_max_message: usize,
    /// `--ws-deflate`: negotiate permessage-deflate when the client offers it.
    pub ws_deflate: bool,
    /// `--ws-ping-interval`: idle time after which the server pings; never zero.
    pub ws_ping_interval: Duration,
    /// `--ws-ping-timeout`: time a pinged connection may stay silent before it is closed; never zero.
    pub ws_ping_timeout: Duration,
    /// `--ws-close-timeout`: time the server waits for the client's close frame; never zero.
    pub ws_close_timeout: Duration,
    /// `--tls-cert`: the PEM certificate chain served on the TLS ports.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`: the PEM private key of the chain's first certificate.
    pub tls_key: Option<PathBuf>,
    /// `[[tls_certificates]]` (config file only): more certificates, chosen by SNI.
    pub tls_certificates: Vec<SniCertificate>,
    /// `--tls-ports`: the ports that speak TLS, sorted; each one is also in `ports`, and
    /// when there are any, `tls` holds the loaded certificate.
    pub tls_ports: Vec<u16>,
    /// The certificate and key, loaded and checked once: shared read-only by the workers.
    pub tls: Option<TlsConfig>,
}

/// What `main` should do after reading the command line.
// Built once per process, so the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum CliOutcome {
    /// Start the server.
    Run(Config),
    /// Print `message` (one line for errors; help and version text otherwise, without a
    /// trailing newline) to stderr or stdout and exit with `code`.
    Exit {
        code: i32,
        message: String,
        to_stderr: bool,
    },
}

impl Config {
    /// The built-in defaults. `root` is the unchecked relative path `www`.
    pub fn defaults() -> Config {
        Config {
            bind: vec![IpAddr::from([0, 0, 0, 0])],
            ports: (8001..=8030).collect(),
            workers: available_cpus(),
            pin: true,
            root: PathBuf::from("www"),
            config_file: None,
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 7391))),
            log_level: Level::Info,
            access_log: access_log::Target::Off,
            access_log_format: access_log::Format::Combined,
            max_request_line: 8 * KIB as usize,
            max_header_size: 8 * KIB as usize,
            max_headers: 100,
            max_body_size: MIB,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            small_file_max: 64 * KIB,
            file_cache_entries: 1024,
            tcp_congestion: None,
            ktls: false,
            max_connections: None,
            index: "index.html".to_owned(),
            dotfiles: false,
            precompressed: Codings::NONE,
            compress: Codings::NONE.with(Coding::Br).with(Coding::Gzip),
            header_rules: Vec::new(),
            error_pages: vec![(404, "/404.html".to_owned())],
            spa_fallback: None,
            mime_types: Vec::new(),
            cors: CorsPolicy::Off,
            autoindex: false,
            ws_paths: None,
            ws_origins: None,
            ws_max_message: 16 * MIB as usize,
            ws_deflate: true,
            ws_ping_interval: Duration::from_secs(30),
            ws_ping_timeout: Duration::from_secs(30),
            ws_close_timeout: Duration::from_secs(5),
            tls_cert: None,
            tls_key: None,
            tls_certificates: Vec::new(),
            tls_ports: Vec::new(),
            tls: None,
        }
    }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// One option: its flag (the file key is the same with `_` for `-`), the placeholder shown
/// in `--help`, its default as text (what `percore.toml` shows) and a one-line description.
struct Opt {
    flag: &'static str,
    value_name: &'static str,
    default: &'static str,
    help: &'static str,
}

impl Opt {
    fn file_key(&self) -> String {
        self.flag.replace('-', "_")
    }

    fn is_switch(&self) -> bool {
        matches!(self.flag, "dotfiles" | "autoindex")
    }
}

const OPTIONS: &[Opt] = &[
    Opt {
        flag: "bind",
        value_name: "ADDRS",
        default: "0.0.0.0",
        help: "IP addresses to listen on, each on every port: 127.0.0.1, [::] or 127.0.0.1,::1",
    },
    Opt {
        flag: "ports",
        value_name: "LIST",
        default: "8001-8030",
        help: "Ports to listen on: 8080, 8001-8030 or 80,8080,9000-9002; one another process listens on is refused",
    },
    Opt {
        flag: "workers",
        value_name: "N|auto",
        default: "auto",
        help: "Worker threads (one reactor each); auto = the CPUs this process may use",
    },
    Opt {
        flag: "pin",
        value_name: "BOOL",
        default: "true",
        help: "Pin each worker to its own CPU; false lets the kernel move them (a host whose \
               CPUs other busy processes share)",
    },
    Opt {
        flag: "root",
        value_name: "DIR",
        default: "www",
        help: "Document root; a relative path is relative to the current directory",
    },
    Opt {
        flag: "admin",
        value_name: "ADDR|off",
        default: "127.0.0.1:7391",
        help: "Address of the operators' endpoint (/metrics, /healthz, /readyz), or off",
    },
    Opt {
        flag: "log-level",
        value_name: "LEVEL",
        default: "info",
        help: "error, warn, info or debug; lines go to stderr, timestamped (UTC) unless it is journald",
    },
    Opt {
        flag: "access-log",
        value_name: "off|stderr|FILE",
        default: "off",
        help: "One line per response, to stderr or appended to FILE; buffered per worker, written at least once a second",
    },
    Opt {
        flag: "access-log-format",
        value_name: "combined|json",
        default: "combined",
        help: "Access log lines: nginx's combined format, or JSON with the duration and the worker",
    },
    Opt {
        flag: "max-request-line",
        value_name: "SIZE",
        default: "8KiB",
        help: "Longest request line (414 beyond)",
    },
    Opt {
        flag: "max-header-size",
        value_name: "SIZE",
        default: "8KiB",
        help: "Largest request header block (431 beyond)",
    },
    Opt {
        flag: "max-headers",
        value_name: "N",
        default: "100",
        help: "Most header fields in one request (431 beyond)",
    },
    Opt {
        flag: "max-body-size",
        value_name: "SIZE",
        default: "1MiB",
        help: "Largest request body (413 beyond)",
    },
    Opt {
        flag: "header-timeout",
        value_name: "DURATION",
        default: "10s",
        help: "Time allowed to receive a request head",
    },
    Opt {
        flag: "keepalive-timeout",
        value_name: "DURATION",
        default: "60s",
        help: "Idle time before a keep-alive connection is closed; 0 disables keep-alive",
    },
    Opt {
        flag: "send-timeout",
        value_name: "DURATION",
        default: "60s",
        help: "Time a client may leave a response unread before it is dropped",
    },
    Opt {
        flag: "drain-timeout",
        value_name: "DURATION",
        default: "10s",
        help: "Time open connections get to finish at shutdown; a second SIGTERM/SIGINT ends it at once",
    },
    Opt {
        flag: "small-file-max",
        value_name: "SIZE",
        default: "64KiB",
        help: "Files up to this size are cached in memory; larger ones are sent with sendfile",
    },
    Opt {
        flag: "file-cache-entries",
        value_name: "N",
        default: "1024",
        help: "Entries in each worker's file cache (a large file's holds its descriptor); 0 = off",
    },
    Opt {
        flag: "tcp-congestion",
        value_name: "NAME|system",
        default: "system",
        help: "TCP congestion control of the connections (reno, cubic, bbr…), or the system's \
               default (net.ipv4.tcp_congestion_control)",
    },
    Opt {
        flag: "max-connections",
        value_name: "N|unlimited",
        default: "unlimited",
        help: "Connections each worker holds at most; beyond, new ones wait in the listen queue \
               until one closes (unlimited: only the open-files limit caps them)",
    },
    Opt {
        flag: "index",
        value_name: "NAME",
        default: "index.html",
        help: "File served for a directory",
    },
    Opt {
        flag: "dotfiles",
        value_name: "",
        default: "false",
        help: "Serve names starting with a dot (otherwise they get 404)",
    },
    Opt {
        flag: "precompressed",
        value_name: "LIST|off",
        default: "off",
        help: "Serve FILE.br, FILE.zst or FILE.gz for FILE to clients that accept it: codings \
               from br, zstd, gzip, comma-separated, or off",
    },
    Opt {
        flag: "compress",
        value_name: "LIST|off",
        default: "br,gzip",
        help: "Compress text files of 1 KiB up to --small-file-max once, into the worker's \
               cache, for clients that accept it: br, gzip, comma-separated, or off",
    },
    Opt {
        flag: "error-pages",
        value_name: "LIST|off",
        default: "404=/404.html",
        help: "STATUS=PATH pairs, comma-separated: a file below the root answering that error \
               status when it exists (otherwise the built-in page)",
    },
    Opt {
        flag: "spa-fallback",
        value_name: "PATH|off",
        default: "off",
        help: "For a single-page app: a missing path without an extension gets this file \
               (e.g. /index.html) with 200",
    },
    Opt {
        flag: "mime-types",
        value_name: "LIST|none",
        default: "none",
        help: "EXT=TYPE pairs, comma-separated, taking precedence over the built-in types",
    },
    Opt {
        flag: "autoindex",
        value_name: "",
        default: "false",
        help: "List a directory that has no index file (HTML, or JSON for Accept: \
               application/json) instead of answering 403",
    },
    Opt {
        flag: "cors-origins",
        value_name: "LIST|*|off",
        default: "off",
        help: "Origins whose scripts may read the files (CORS): comma-separated such as \
               https://app.example, * for any, or off",
    },
    Opt {
        flag: "ws-paths",
        value_name: "LIST|any",
        default: "any",
        help: "Paths that accept a WebSocket upgrade (echo; 404 elsewhere), comma-separated, or any",
    },
    Opt {
        flag: "ws-origins",
        value_name: "LIST|any",
        default: "any",
        help: "Origin values allowed to open a WebSocket (403 otherwise), comma-separated, or any",
    },
    Opt {
        flag: "ws-max-message",
        value_name: "SIZE",
        default: "16MiB",
        help: "Largest WebSocket message, after decompression (close 1009 beyond)",
    },
    Opt {
        flag: "ws-deflate",
        value_name: "BOOL",
        default: "true",
        help: "Negotiate permessage-deflate when the client offers it",
    },
    Opt {
        flag: "ws-ping-interval",
        value_name: "DURATION",
        default: "30s",
        help: "Idle time after which the server pings a WebSocket client",
    },
    Opt {
        flag: "ws-ping-timeout",
        value_name: "DURATION",
        default: "30s",
        help: "Time a pinged WebSocket client may stay silent before it is closed",
    },
    Opt {
        flag: "ws-close-timeout",
        value_name: "DURATION",
        default: "5s",
        help: "Time the server waits for the client's close frame after sending its own",
    },
    Opt {
        flag: "tls-cert",
        value_name: "FILE",
        default: "",
        help: "PEM certificate chain for the TLS ports, the server's certificate first (e.g. an ACME client's fullchain.pem)",
    },
    Opt {
        flag: "tls-key",
        value_name: "FILE",
        default: "",
        help: "PEM private key of that certificate (PKCS#8, RSA or EC)",
    },
    Opt {
        flag: "tls-ports",
        value_name: "LIST",
        default: "",
        help: "Which of the --ports speak HTTPS/WSS (TLS 1.2 and 1.3), e.g. 8443; needs --tls-cert and --tls-key",
    },
    Opt {
        flag: "ktls",
        value_name: "BOOL",
        default: "false",
        help: "Hand each TLS 1.3 session to the kernel after its handshake (kTLS), so files go \
               by sendfile again; where the kernel has no TLS, sessions stay in user space",
    },
];

const EXAMPLES: &str = "\
Sizes take k/KiB, m/MiB or g/GiB (powers of 1024); durations take ms, s, m or h (bare numbers are seconds).

Examples:
  percore --ports 8080 --root ./public
  percore --config /etc/percore/percore.toml --workers 4
  percore --bind [::] --admin off
  percore --ports 8001-8030,8443 --tls-ports 8443 --tls-cert fullchain.pem --tls-key privkey.pem
  percore --config /etc/percore/percore.toml --check-config
  percore check --connections 1000000 --config /etc/percore/percore.toml   (what this host allows)

Signals: SIGTERM/SIGINT drain and exit 0 (a second one exits at once); SIGHUP reloads the config file
(new workers take over the same listening sockets; only admin needs a restart); SIGUSR1 reopens the
access log.";

/// Parses the command line (`args` starts with the program name, like `std::env::args_os()`),
/// reads the config file if `--config` is given, and validates everything once.
pub fn parse_args<I, T>(args: I) -> CliOutcome
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match command().try_get_matches_from(args) {
        Ok(matches) => match build(&matches) {
            Ok(config) if matches.get_flag("check-config") => CliOutcome::Exit {
                code: 0,
                message: format!("percore: {}", config.describe_valid()),
                to_stderr: false,
            },
            Ok(config) => CliOutcome::Run(config),
            Err(message) => fail(&message),
        },
        Err(error) => clap_outcome(&error),
    }
}

impl Config {
    /// Every (address, port) to listen on: each `--bind` address on each port.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.bind
            .iter()
            .flat_map(|&ip| {
                self.ports
                    .iter()
                    .map(move |&port| SocketAddr::new(ip, port))
            })
            .collect()
    }

    /// The one line `--check-config` prints for a valid configuration.
    fn describe_valid(&self) -> String {
        let file = match &self.config_file {
            Some(path) => format!("config file {}", path.display()),
            None => "no config file".to_owned(),
        };
        let admin = match self.admin {
            Some(addr) => format!("admin on {addr}"),
            None => "admin off".to_owned(),
        };
        let tls = match self.tls_ports.is_empty() {
            true => String::new(),
            false => format!("; TLS on {}", describe_ports(&self.tls_ports)),
        };
        format!(
            "configuration is valid ({file}; root {}; {} port(s) {}{tls}; {} worker(s); {admin})",
            self.root.display(),
            describe_addresses(&self.bind),
            describe_ports(&self.ports),
            self.workers,
        )
    }
}

/// "0.0.0.0" or "127.0.0.1,[::1]": the addresses as `--bind` takes them.
pub fn describe_addresses(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(|addr| match addr {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// "8001-8030" for a contiguous range, else a comma list.
pub fn describe_ports(ports: &[u16]) -> String {
    match (ports.first(), ports.last()) {
        (Some(first), Some(last))
            if usize::from(last - first) + 1 == ports.len() && ports.len() > 1 =>
        {
            format!("{first}-{last}")
        }
        _ => ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Reads the configuration again from the same command line (`args` as at start), for a
/// reload on SIGHUP: the config file is re-read, the flags still win. The error is the line
/// a start would print, without the `percore: ` prefix.
pub fn reload<I, T>(args: I) -> Result<Config, String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command()
        .try_get_matches_from(args)
        .map_err(|e| e.to_string().lines().next().unwrap_or("").to_owned())?;
    build(&matches)
}

/// The file keys (`ports`, `log_level`…) whose values differ between `old` and `new`.
pub fn differences(old: &Config, new: &Config) -> Vec<&'static str> {
    let changed = [
        ("bind", old.bind != new.bind),
        ("ports", old.ports != new.ports),
        ("workers", old.workers != new.workers),
        ("pin", old.pin != new.pin),
        ("tcp_congestion", old.tcp_congestion != new.tcp_congestion),
        ("root", old.root != new.root),
        ("admin", old.admin != new.admin),
        ("log_level", old.log_level != new.log_level),
        ("access_log", old.access_log != new.access_log),
        (
            "access_log_format",
            old.access_log_format != new.access_log_format,
        ),
        (
            "max_request_line",
            old.max_request_line != new.max_request_line,
        ),
        (
            "max_header_size",
            old.max_header_size != new.max_header_size,
        ),
        ("max_headers", old.max_headers != new.max_headers),
        ("max_body_size", old.max_body_size != new.max_body_size),
        ("header_timeout", old.header_timeout != new.header_timeout),
        (
            "keepalive_timeout",
            old.keepalive_timeout != new.keepalive_timeout,
        ),
        ("send_timeout", old.send_timeout != new.send_timeout),
        ("drain_timeout", old.drain_timeout != new.drain_timeout),
        ("small_file_max", old.small_file_max != new.small_file_max),
        (
            "file_cache_entries",
            old.file_cache_entries != new.file_cache_entries,
        ),
        (
            "max_connections",
            old.max_connections != new.max_connections,
        ),
        ("index", old.index != new.index),
        ("dotfiles", old.dotfiles != new.dotfiles),
        ("precompressed", old.precompressed != new.precompressed),
        ("compress", old.compress != new.compress),
        ("headers", old.header_rules != new.header_rules),
        ("error_pages", old.error_pages != new.error_pages),
        ("spa_fallback", old.spa_fallback != new.spa_fallback),
        ("mime_types", old.mime_types != new.mime_types),
        ("cors_origins", old.cors != new.cors),
        ("autoindex", old.autoindex != new.autoindex),
        ("ws_paths", old.ws_paths != new.ws_paths),
        ("ws_origins", old.ws_origins != new.ws_origins),
        ("ws_max_message", old.ws_max_message != new.ws_max_message),
        ("ws_deflate", old.ws_deflate != new.ws_deflate),
        (
            "ws_ping_interval",
            old.ws_ping_interval != new.ws_ping_interval,
        ),
        (
            "ws_ping_timeout",
            old.ws_ping_timeout != new.ws_ping_timeout,
        ),
        (
            "ws_close_timeout",
            old.ws_close_timeout != new.ws_close_timeout,
        ),
        // A renewed certificate at the same path counts as a change (a reload serves it).
        (
            "tls_cert",
            old.tls_cert != new.tls_cert || old.tls != new.tls,
        ),
        ("tls_key", old.tls_key != new.tls_key),
        (
            "tls_certificates",
            old.tls_certificates != new.tls_certificates,
        ),
        ("tls_ports", old.tls_ports != new.tls_ports),
        ("ktls", old.ktls != new.ktls),
    ];
    changed
        .into_iter()
        .filter(|&(_, differs)| differs)
        .map(|(key, _)| key)
        .collect()
}

fn command() -> Command {
    let options = OPTIONS.iter().map(|opt| {
        let default = match opt.default {
            "" => "none",
            text => text,
        };
        let help = format!("{} [default: {default}]", opt.help);
        let arg = Arg::new(opt.flag).long(opt.flag).help(help);
        if opt.is_switch() {
            arg.action(ArgAction::SetTrue)
        } else {
            arg.value_name(opt.value_name)
        }
    });
    Command::new("percore")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Static files over HTTP/1.1, one epoll reactor per CPU core")
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("TOML file read before the flags (flags win); see config/percore.toml"),
        )
        .arg(
            Arg::new("check-config")
                .long("check-config")
                .action(ArgAction::SetTrue)
                .help(
                    "Validate the flags and config file and check that the root is a readable \
                     directory, then exit (0: valid, 2: not); binds nothing",
                ),
        )
        .args(options)
        .args_override_self(true)
        .after_help(EXAMPLES)
}

fn build(matches: &ArgMatches) -> Result<Config, String> {
    let mut config = Config::defaults();
    if let Some(path) = matches.get_one::<String>("config") {
        apply_file(&mut config, Path::new(path))
            .map_err(|why| format!("config file '{path}': {why}"))?;
        config.config_file = Some(PathBuf::from(path));
    }
    for opt in OPTIONS {
        let raw = if opt.is_switch() {
            matches.get_flag(opt.flag).then(|| "true".to_owned())
        } else {
            matches.get_one::<String>(opt.flag).cloned()
        };
        if let Some(raw) = raw {
            set(&mut config, opt.flag, &raw)
                .map_err(|why| format!("invalid --{} '{raw}': {why}", opt.flag))?;
        }
    }
    config.root = check_root(&config.root)?;
    config.tls = check_tls(&config)?;
    Ok(config)
}

/// The TLS settings must come together: ports that speak TLS (each one also among the
/// ports), a certificate and a key; then the certificate and key are loaded and checked.
fn check_tls(config: &Config) -> Result<Option<TlsConfig>, String> {
    let (cert, key) = match (
        &config.tls_cert,
        &config.tls_key,
        config.tls_ports.is_empty(),
    ) {
        (None, None, true) if config.tls_certificates.is_empty() => return Ok(None),
        (Some(cert), Some(key), false) => (cert, key),
        (_, _, true) => {
            return Err("--tls-cert and --tls-key need --tls-ports (tls_ports): \
                        which ports speak TLS"
                .to_owned())
        }
        (None, _, false) | (_, None, false) => {
            return Err(format!(
                "--tls-ports {} needs both --tls-cert and --tls-key (tls_cert, tls_key)",
                describe_ports(&config.tls_ports)
            ))
        }
    };
    let stray: Vec<u16> = config
        .tls_ports
        .iter()
        .copied()
        .filter(|port| !config.ports.contains(port))
        .collect();
    if !stray.is_empty() {
        return Err(format!(
            "--tls-ports names {} which --ports ({}) does not listen on",
            describe_ports(&stray),
            describe_ports(&config.ports)
        ));
    }
    TlsConfig::load(cert, key, &config.tls_certificates)
        .map(|tls| Some(tls.with_kernel_tls(config.ktls)))
}

/// Applies every key of the TOML file at `path`; errors do not repeat the file name.
fn apply_file(config: &mut Config, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let table: toml::Table = text.parse().map_err(|e| toml_error(&text, &e))?;
    for (key, value) in &table {
        if key == HEADERS_KEY {
            config.header_rules =
                parse_header_rules(value).map_err(|why| format!("invalid [[headers]]: {why}"))?;
            continue;
        }
        if key == TLS_CERTIFICATES_KEY {
            config.tls_certificates = parse_tls_certificates(value)
                .map_err(|why| format!("invalid [[tls_certificates]]: {why}"))?;
            continue;
        }
        let opt = OPTIONS
            .iter()
            .find(|opt| opt.file_key() == *key)
            .ok_or_else(|| format!("unknown key '{key}'"))?;
        let raw = value_text(value).ok_or_else(|| {
            format!(
                "invalid {key}: expected a string or an integer, found {}",
                value.type_str()
            )
        })?;
        set(config, opt.flag, &raw).map_err(|why| format!("invalid {key} '{raw}': {why}"))?;
    }
    Ok(())
}

/// The config file's keys that are not flags: lists of tables.
const HEADERS_KEY: &str = "headers";
const TLS_CERTIFICATES_KEY: &str = "tls_certificates";

/// `[[tls_certificates]]` tables, each `names = [...]`, `cert = "FILE"`, `key = "FILE"`.
fn parse_tls_certificates(value: &toml::Value) -> Result<Vec<SniCertificate>, String> {
    let Some(tables) = value.as_array() else {
        return Err(format!(
            "expected [[tls_certificates]] tables, found {}",
            value.type_str()
        ));
    };
    let one = |table: &toml::Value| -> Result<SniCertificate, String> {
        let table = table.as_table().ok_or("expected a table")?;
        if let Some(other) = table
            .keys()
            .find(|k| !["names", "cert", "key"].contains(&k.as_str()))
        {
            return Err(format!(
                "unknown key '{other}' (a certificate has names, cert and key)"
            ));
        }
        let path = |key: &str| {
            table
                .get(key)
                .and_then(toml::Value::as_str)
                .map(PathBuf::from)
                .ok_or_else(|| format!("expected {key} = \"FILE\""))
        };
        let names = table
            .get("names")
            .and_then(toml::Value::as_array)
            .ok_or("expected names = [\"example.com\", …]")?
            .iter()
            .map(|name| {
                let name = name
                    .as_str()
                    .ok_or("a name must be a string")?
                    .to_ascii_lowercase();
                let host = name.strip_prefix("*.").unwrap_or(&name);
                let valid = !host.is_empty()
                    && host.split('.').all(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                match valid {
                    true => Ok(name),
                    false => Err(format!(
                        "'{name}' is not a host name such as example.com or *.example.com"
                    )),
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        if names.is_empty() {
            return Err("names is empty".to_owned());
        }
        Ok(SniCertificate {
            names,
            cert: path("cert")?,
            key: path("key")?,
        })
    };
    tables
        .iter()
        .enumerate()
        .map(|(i, table)| one(table).map_err(|why| format!("certificate {}: {why}", i + 1)))
        .collect()
}

/// `[[headers]]` tables, each `path = "GLOB"` and `set = { Name = "value", … }`.
fn parse_header_rules(value: &toml::Value) -> Result<Vec<HeaderRule>, String> {
    let Some(tables) = value.as_array() else {
        return Err(format!(
            "expected [[headers]] tables, found {}",
            value.type_str()
        ));
    };
    tables
        .iter()
        .enumerate()
        .map(|(i, table)| parse_header_rule(table).map_err(|why| format!("rule {}: {why}", i + 1)))
        .collect()
}

fn parse_header_rule(value: &toml::Value) -> Result<HeaderRule, String> {
    let table = value.as_table().ok_or("expected a table")?;
    if let Some(other) = table.keys().find(|k| *k != "path" && *k != "set") {
        return Err(format!("unknown key '{other}' (a rule has path and set)"));
    }
    let path = table
        .get("path")
        .and_then(toml::Value::as_str)
        .ok_or("expected path = \"GLOB\"")?;
    let glob = Glob::parse(path).map_err(|why| format!("path '{path}': {why}"))?;
    let set = table
        .get("set")
        .and_then(toml::Value::as_table)
        .ok_or("expected set = { Name = \"value\" }")?;
    let mut fields = Vec::with_capacity(set.len());
    for (name, value) in set {
        let value = value
            .as_str()
            .ok_or_else(|| format!("the value of {name} must be a string"))?;
        fields.push((name.clone(), value.to_owned()));
    }
    HeaderRule::new(glob, fields)
}

fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let lines: Vec<&str> = error.message().lines().map(str::trim).collect();
    let message = match lines.join("; ") {
        joined if joined.is_empty() => "invalid TOML".to_owned(),
        joined => joined,
    };
    let Some(before) = error.span().and_then(|span| text.get(..span.start)) else {
        return message;
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}: {message}")
}

/// The file's value as the text a flag would carry: arrays become comma lists.
fn value_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(i) => Some(i.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        _ => None,
    }
}

/// Sets the option named by `flag` from its text; the error says what was expected.
fn set(config: &mut Config, flag: &str, raw: &str) -> Result<(), String> {
    match flag {
        "bind" => config.bind = parse_addresses(raw)?,
        "ports" => config.ports = parse_ports(raw)?,
        "workers" => config.workers = parse_workers(raw)?,
        "pin" => config.pin = parse_bool(raw)?,
        "tcp-congestion" => config.tcp_congestion = parse_congestion(raw)?,
        "ktls" => config.ktls = parse_bool(raw)?,
        "root" => config.root = PathBuf::from(raw),
        "admin" => config.admin = parse_admin(raw)?,
        "log-level" => {
            config.log_level =
                Level::parse(raw.trim()).ok_or("expected error, warn, info or debug")?
        }
        "access-log" => config.access_log = parse_access_log(raw)?,
        "access-log-format" => config.access_log_format = parse_access_log_format(raw)?,
        "max-request-line" => config.max_request_line = at_least_one(parse_size_usize(raw)?)?,
        "max-header-size" => config.max_header_size = at_least_one(parse_size_usize(raw)?)?,
        "max-headers" => config.max_headers = headers_count(parse_count(raw)?)?,
        "max-body-size" => config.max_body_size = parse_size(raw)?,
        "header-timeout" => config.header_timeout = nonzero(parse_duration(raw)?)?,
        "keepalive-timeout" => config.keepalive_timeout = parse_duration(raw)?,
        "send-timeout" => config.send_timeout = nonzero(parse_duration(raw)?)?,
        "drain-timeout" => config.drain_timeout = parse_duration(raw)?,
        "small-file-max" => config.small_file_max = parse_size(raw)?,
        "file-cache-entries" => config.file_cache_entries = parse_count(raw)?,
        "max-connections" => config.max_connections = parse_max_connections(raw)?,
        "index" => config.index = parse_index(raw)?,
        "dotfiles" => config.dotfiles = parse_bool(raw)?,
        "precompressed" => config.precompressed = parse_codings(raw)?,
        "compress" => config.compress = parse_made_codings(raw)?,
        "error-pages" => config.error_pages = parse_error_pages(raw)?,
        "spa-fallback" => config.spa_fallback = parse_spa_fallback(raw)?,
        "mime-types" => config.mime_types = parse_mime_types(raw)?,
        "cors-origins" => config.cors = parse_cors(raw)?,
        "autoindex" => config.autoindex = parse_bool(raw)?,
        "ws-paths" => config.ws_paths = parse_ws_paths(raw)?,
        "ws-origins" => config.ws_origins = parse_origins(raw)?,
        "ws-max-message" => config.ws_max_message = at_least_one(parse_size_usize(raw)?)?,
        "ws-deflate" => config.ws_deflate = parse_bool(raw)?,
        "ws-ping-interval" => config.ws_ping_interval = nonzero(parse_duration(raw)?)?,
        "ws-ping-timeout" => config.ws_ping_timeout = nonzero(parse_duration(raw)?)?,
        "ws-close-timeout" => config.ws_close_timeout = nonzero(parse_duration(raw)?)?,
        "tls-cert" => config.tls_cert = parse_optional_path(raw),
        "tls-key" => config.tls_key = parse_optional_path(raw),
        "tls-ports" => config.tls_ports = parse_tls_ports(raw)?,
        _ => return Err(format!("unknown option '{flag}'")),
    }
    Ok(())
}

/// A comma list of IP addresses. A wildcard (0.0.0.0 or ::) beside another address of its
/// family is refused: the wildcard already listens there.
fn parse_addresses(raw: &str) -> Result<Vec<IpAddr>, String> {
    let mut addrs: Vec<IpAddr> = Vec::new();
    for item in raw.split(',') {
        let addr = parse_ip(item)?;
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    for wildcard in addrs.iter().filter(|a| a.is_unspecified()) {
        let covered = addrs
            .iter()
            .find(|a| !a.is_unspecified() && a.is_ipv4() == wildcard.is_ipv4());
        if let Some(covered) = covered {
            return Err(format!(
                "{} already listens on {}",
                describe_addresses(&[*wildcard]),
                describe_addresses(&[*covered])
            ));
        }
    }
    Ok(addrs)
}

fn parse_ip(raw: &str) -> Result<IpAddr, String> {
    let s = raw.trim();
    let unbracketed = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    unbracketed
        .parse()
        .map_err(|_| "expected an IP address such as 0.0.0.0, 127.0.0.1 or [::]".to_owned())
}

/// `--ports`: a range (`8001-8030`), a list (`80,8080,9000-9002`) or one port, sorted and
/// deduplicated; the error says what is wrong, without the option's name. wsload's `--ports`
/// takes the same forms through this function.
pub fn parse_ports(raw: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for item in raw.split(',').map(str::trim) {
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (parse_port(first)?, parse_port(last)?),
            None => (parse_port(item)?, parse_port(item)?),
        };
        if first > last {
            return Err(format!("range {first}-{last} is reversed"));
        }
        ports.extend(first..=last);
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

fn parse_port(raw: &str) -> Result<u16, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("a port number is missing".to_owned());
    }
    let n: u64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a port number"))?;
    match u16::try_from(n) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("port {n} is out of range 1-65535")),
    }
}

/// A file name; empty means none.
fn parse_optional_path(raw: &str) -> Option<PathBuf> {
    (!raw.is_empty()).then(|| PathBuf::from(raw))
}

/// Like `--ports`; empty (the default, or `[]` in the file) means no port speaks TLS.
fn parse_tls_ports(raw: &str) -> Result<Vec<u16>, String> {
    match raw.trim() {
        "" => Ok(Vec::new()),
        _ => parse_ports(raw),
    }
}

fn parse_workers(raw: &str) -> Result<usize, String> {
    if raw.trim().eq_ignore_ascii_case("auto") {
        return Ok(available_cpus());
    }
    parse_count(raw).and_then(at_least_one)
}

/// The CPUs this process may run on (`sched_getaffinity`, cgroup quotas), at least 1.
fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn parse_admin(raw: &str) -> Result<Option<SocketAddr>, String> {
    let s = raw.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        "expected ADDRESS:PORT such as 127.0.0.1:7391 or [::1]:7391, or off".to_owned()
    })
}

/// `off`, `stderr`, or a file path (relative to the current directory).
fn parse_access_log(raw: &str) -> Result<access_log::Target, String> {
    match raw.trim() {
        "" => Err("expected off, stderr or a file path".to_owned()),
        s if s.eq_ignore_ascii_case("off") => Ok(access_log::Target::Off),
        s if s.eq_ignore_ascii_case("stderr") => Ok(access_log::Target::Stderr),
        s => Ok(access_log::Target::File(PathBuf::from(s))),
    }
}

fn parse_access_log_format(raw: &str) -> Result<access_log::Format, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "combined" => Ok(access_log::Format::Combined),
        "json" => Ok(access_log::Format::Json),
        _ => Err("expected combined or json".to_owned()),
    }
}

/// `unlimited`, or a count of at least 1 (a worker that may hold no connection serves nothing).
fn parse_max_connections(raw: &str) -> Result<Option<usize>, String> {
    if raw.trim().eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    parse_count(raw)
        .and_then(at_least_one)
        .map(Some)
        .map_err(|_| "expected a whole number of at least 1, or unlimited".to_owned())
}

fn parse_count(raw: &str) -> Result<usize, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected a whole number".to_owned())
}

/// The parser keeps header slots in a fixed array of [`crate::http::MAX_HEADERS_CAP`].
fn headers_count(n: usize) -> Result<usize, String> {
    let cap = crate::http::MAX_HEADERS_CAP;
    if !(1..=cap).contains(&n) {
        return Err(format!("must be between 1 and {cap}"));
    }
    Ok(n)
}

fn at_least_one(n: usize) -> Result<usize, String> {
    if n == 0 {
        return Err("must be at least 1".to_owned());
    }
    Ok(n)
}

/// Splits `"500ms"` into `(500, "ms")`; the unit is lowercased and may be empty.
fn number_and_unit(raw: &str) -> Option<(u64, String)> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    Some((digits.parse().ok()?, unit.trim().to_ascii_lowercase()))
}

/// Sizes: an integer of bytes or a number with k/KiB, m/MiB or g/GiB (powers of 1024).
fn parse_size(raw: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected bytes or a number with k/KiB, m/MiB or g/GiB";
    let (n, unit) = number_and_unit(raw).ok_or(EXPECTED)?;
    let scale = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ => return Err(EXPECTED.to_owned()),
    };
    n.checked_mul(scale).ok_or_else(|| "too large".to_owned())
}

fn parse_size_usize(raw: &str) -> Result<usize, String> {
    usize::try_from(parse_size(raw)?).map_err(|_| "too large".to_owned())
}

/// Durations: an integer of seconds or a number with ms, s, m or h.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected seconds or a number with ms, s, m or h";
    let (n, unit) = number_and_unit(raw).ok_or(EXPECTED)?;
    let millis = match unit.as_str() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(EXPECTED.to_owned()),
    };
    n.checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| "too large".to_owned())
}

fn nonzero(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        return Err("must be greater than 0".to_owned());
    }
    Ok(d)
}

/// `system`, or the name of a congestion control algorithm: what TCP_CONGESTION takes (at
/// most 15 bytes of letters, digits and `_`). Whether the kernel has it is checked when the
/// listeners are configured.
fn parse_congestion(raw: &str) -> Result<Option<String>, String> {
    let name = raw.trim();
    if name == "system" {
        return Ok(None);
    }
    let valid = !name.is_empty()
        && name.len() < 16
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match valid {
        true => Ok(Some(name.to_owned())),
        false => Err("expected system or an algorithm's name such as reno, cubic or bbr".into()),
    }
}

fn parse_index(raw: &str) -> Result<String, String> {
    let plain = !raw.is_empty() && raw != "." && raw != ".." && !raw.contains(['/', '\0']);
    if !plain {
        return Err("expected a plain file name such as index.html".to_owned());
    }
    Ok(raw.to_owned())
}

/// `any`, or comma-separated absolute paths such as `/ws,/echo`.
/// A page path for the root: it starts with `/` and holds no control character.
fn parse_page_path(raw: &str) -> Result<String, String> {
    let path = raw.trim();
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!(
            "'{path}' is not a path below the root such as /404.html"
        ));
    }
    Ok(path.to_owned())
}

/// `off`, or a comma list of STATUS=PATH with 400 <= STATUS <= 599, each status once.
fn parse_error_pages(raw: &str) -> Result<Vec<(u16, String)>, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("off") || raw.is_empty() {
        return Ok(Vec::new());
    }
    let mut pages: Vec<(u16, String)> = Vec::new();
    for item in raw.split(',') {
        let (status, path) = item
            .split_once('=')
            .ok_or_else(|| format!("'{}' is not STATUS=PATH", item.trim()))?;
        let status: u16 = status
            .trim()
            .parse()
            .ok()
            .filter(|s| (400..=599).contains(s))
            .ok_or_else(|| format!("'{}' is not an error status (400-599)", status.trim()))?;
        if pages.iter().any(|(s, _)| *s == status) {
            return Err(format!("{status} is given twice"));
        }
        pages.push((status, parse_page_path(path)?));
    }
    Ok(pages)
}

fn parse_spa_fallback(raw: &str) -> Result<Option<String>, String> {
    match raw.trim() {
        "off" | "" => Ok(None),
        path => parse_page_path(path).map(Some),
    }
}

/// `none`, or a comma list of EXT=TYPE (the extension without its dot).
fn parse_mime_types(raw: &str) -> Result<Vec<(String, String)>, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("none") || raw.is_empty() {
        return Ok(Vec::new());
    }
    raw.split(',')
        .map(|item| {
            let (ext, mime) = item
                .split_once('=')
                .ok_or_else(|| format!("'{}' is not EXT=TYPE", item.trim()))?;
            let (ext, mime) = (ext.trim().trim_start_matches('.'), mime.trim());
            if ext.is_empty()
                || !ext
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_+".contains(&b))
            {
                return Err(format!("'{ext}' is not a file extension"));
            }
            let valid_type = mime
                .split_once('/')
                .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
                && mime.bytes().all(|b| (0x20..0x7f).contains(&b));
            if !valid_type {
                return Err(format!(
                    "'{mime}' is not a media type such as application/wasm"
                ));
            }
            Ok((ext.to_ascii_lowercase(), mime.to_owned()))
        })
        .collect()
}

/// `off`, `*`, or a comma list of origins: scheme://host[:port], kept lowercase.
fn parse_cors(raw: &str) -> Result<CorsPolicy, String> {
    match raw.trim() {
        "off" | "" => return Ok(CorsPolicy::Off),
        "*" | "any" => return Ok(CorsPolicy::AnyOrigin),
        _ => {}
    }
    raw.split(',')
        .map(|origin| {
            let origin = origin.trim().to_ascii_lowercase();
            let valid = ["http://", "https://"].iter().any(|scheme| {
                origin.strip_prefix(scheme).is_some_and(|host| {
                    !host.is_empty()
                        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
                })
            });
            match valid {
                true => Ok(origin),
                false => Err(format!(
                    "'{origin}' is not an origin such as https://app.example or http://localhost:3000"
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(CorsPolicy::Origins)
}

/// `off`, or a comma list of the codings percore can make (br, gzip).
fn parse_made_codings(raw: &str) -> Result<Codings, String> {
    let codings = parse_codings(raw)?;
    match codings.iter().find(|&c| !crate::files::compress::can_make(c)) {
        Some(c) => Err(format!(
            "{} is only served from precompressed files (--precompressed); compress makes br and gzip",
            c.token()
        )),
        None => Ok(codings),
    }
}

/// `off`, or a comma list of content codings (br, zstd, gzip).
fn parse_codings(raw: &str) -> Result<Codings, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("off") || raw.is_empty() {
        return Ok(Codings::NONE);
    }
    raw.split(',')
        .map(|item| {
            Coding::from_name(item.trim())
                .ok_or_else(|| format!("'{}' is not one of br, zstd, gzip", item.trim()))
        })
        .collect()
}

fn parse_ws_paths(raw: &str) -> Result<Option<Vec<String>>, String> {
    if raw.trim() == "any" {
        return Ok(None);
    }
    let paths: Vec<String> = raw.split(',').map(|p| p.trim().to_owned()).collect();
    if let Some(bad) = paths
        .iter()
        .find(|p| !p.starts_with('/') || p.contains(char::is_whitespace))
    {
        return Err(format!("'{bad}' is not an absolute path"));
    }
    Ok(Some(paths))
}

/// `any`, or comma-separated origins such as `https://example.com`.
fn parse_origins(raw: &str) -> Result<Option<Vec<String>>, String> {
    if raw.trim() == "any" {
        return Ok(None);
    }
    let origins: Vec<String> = raw.split(',').map(|o| o.trim().to_owned()).collect();
    if origins.iter().any(String::is_empty) {
        return Err("an origin is empty".to_owned());
    }
    Ok(Some(origins))
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// How to change the root, appended to every root error.
const ROOT_HINT: &str = "set it with --root DIR or root = \"...\" in the config file";

/// The canonical root, or an error naming the absolute path tried and how to set another.
fn check_root(root: &Path) -> Result<PathBuf, String> {
    // A relative root is resolved against the current directory, which an operator running an
    // installed binary may not have in mind: name both.
    let (tried, context) = match std::env::current_dir() {
        Ok(cwd) if root.is_relative() => (
            cwd.join(root),
            format!(
                "relative to the current directory {}; {ROOT_HINT}",
                cwd.display()
            ),
        ),
        _ => (root.to_path_buf(), ROOT_HINT.to_owned()),
    };
    let shown = tried.display();
    match std::fs::metadata(&tried) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("root directory {shown} does not exist ({context})"))
        }
        Err(e) => Err(format!("root directory {shown}: {e} ({context})")),
        Ok(meta) if !meta.is_dir() => Err(format!("root {shown} is not a directory ({context})")),
        Ok(_) => {
            // Workers list nothing, but they open files beneath the root: it must be readable
            // and searchable, which reading it and its "." entry show.
            let readable =
                std::fs::read_dir(&tried).and_then(|_| std::fs::metadata(tried.join(".")));
            if let Err(e) = readable {
                return Err(format!(
                    "root directory {shown} cannot be read: {e} ({context})"
                ));
            }
            std::fs::canonicalize(&tried)
                .map_err(|e| format!("root directory {shown}: {e} ({context})"))
        }
    }
}

/// An error outcome: one line, control characters escaped, exit code 2.
fn fail(message: &str) -> CliOutcome {
    let line: String = message
        .chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect();
    CliOutcome::Exit {
        code: 2,
        message: format!("percore: {line}"),
        to_stderr: true,
    }
}

/// Help and version go to stdout with code 0; clap's errors become one line.
fn clap_outcome(error: &clap::Error) -> CliOutcome {
    let text = error.to_string();
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => CliOutcome::Exit {
            code: 0,
            message: text.trim_end().to_owned(),
            to_stderr: false,
        },
        _ => {
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            fail(&format!("{first} (see 'percore --help')"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../config/percore.toml");

    /// Runs `percore ARGS --root <an existing directory>` and returns the outcome.
    fn run(args: &[&str]) -> (CliOutcome, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let root_arg = root.path().to_string_lossy().into_owned();
        let mut argv = vec!["percore", "--root", root_arg.as_str()];
        argv.extend_from_slice(args);
        (parse_args(argv), root)
    }

    /// Checks that `args` succeed and that `edit(defaults)` gives the result.
    fn check(args: &[&str], edit: impl FnOnce(&mut Config)) {
        let (outcome, root) = run(args);
        let mut expected = Config::defaults();
        expected.root = std::fs::canonicalize(root.path()).unwrap_or_default();
        edit(&mut expected);
        match outcome {
            CliOutcome::Run(config) => assert_eq!(config, expected, "args {args:?}"),
            other => panic!("args {args:?}: {other:?}"),
        }
    }

    /// Checks that `args` fail with exactly `message` on stderr and code 2.
    fn check_error(args: &[&str], message: &str) {
        check_error_argv(&[&["percore"], args].concat(), message);
    }

    fn check_error_argv(argv: &[&str], message: &str) {
        match parse_args(argv) {
            CliOutcome::Exit {
                code,
                message: got,
                to_stderr,
            } => {
                assert_eq!(
                    (code, got.as_str(), to_stderr),
                    (2, message, true),
                    "{argv:?}"
                )
            }
            other => panic!("{argv:?}: expected an error, got {other:?}"),
        }
    }

    fn write_file(dir: &Path, text: &str) -> String {
        let path = dir.join("percore.toml");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write: {e}"));
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn defaults_without_flags() {
        check(&[], |_| {});
    }

    #[test]
    fn bind_forms() {
        let ips = |list: &[&str]| -> Vec<IpAddr> {
            list.iter()
                .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
                .collect()
        };
        check(&["--bind", "::"], |c| c.bind = ips(&["::"]));
        check(&["--bind", "[::]"], |c| c.bind = ips(&["::"]));
        check(&["--bind", "::1"], |c| c.bind = ips(&["::1"]));
        check(&["--bind", "[::1]"], |c| c.bind = ips(&["::1"]));
        check(&["--bind", "127.0.0.1"], |c| c.bind = ips(&["127.0.0.1"]));
        check(&["--bind=10.1.2.3"], |c| c.bind = ips(&["10.1.2.3"]));
        check(&["--bind", "127.0.0.1,::1"], |c| {
            c.bind = ips(&["127.0.0.1", "::1"])
        });
        check(&["--bind", " [::1] , 127.0.0.1,::1"], |c| {
            c.bind = ips(&["::1", "127.0.0.1"])
        });
        // percore's :: is v6-only, so it does not cover 0.0.0.0.
        check(&["--bind", "0.0.0.0,[::]"], |c| {
            c.bind = ips(&["0.0.0.0", "::"])
        });
        check(&["--bind", "0.0.0.0,::1"], |c| {
            c.bind = ips(&["0.0.0.0", "::1"])
        });
        check_error(
            &["--bind", "0.0.0.0,127.0.0.1"],
            "percore: invalid --bind '0.0.0.0,127.0.0.1': 0.0.0.0 already listens on 127.0.0.1",
        );
        check_error(
            &["--bind", "::1,::"],
            "percore: invalid --bind '::1,::': [::] already listens on [::1]",
        );
        check_error(
            &["--bind", "127.0.0.1,"],
            "percore: invalid --bind '127.0.0.1,': expected an IP address such as 0.0.0.0, 127.0.0.1 or [::]",
        );
    }

    #[test]
    fn listen_addrs_are_every_address_on_every_port() {
        let mut config = Config::defaults();
        config.bind = vec![
            IpAddr::from([127, 0, 0, 1]),
            "::1".parse().unwrap_or(config.bind[0]),
        ];
        config.ports = vec![80, 8080];
        let addrs: Vec<String> = config
            .listen_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            addrs,
            ["127.0.0.1:80", "127.0.0.1:8080", "[::1]:80", "[::1]:8080"]
        );
        assert_eq!(describe_addresses(&config.bind), "127.0.0.1,[::1]");
    }

    #[test]
    fn ports_forms() {
        check(&["--ports", "8001"], |c| c.ports = vec![8001]);
        check(&["--ports", "8001-8003"], |c| {
            c.ports = vec![8001, 8002, 8003]
        });
        check(&["--ports", "9000-9002,80,8080"], |c| {
            c.ports = vec![80, 8080, 9000, 9001, 9002]
        });
        check(&["--ports", "81,80,81,80-81"], |c| c.ports = vec![80, 81]);
        check(&["--ports", " 1 - 1 , 65535"], |c| c.ports = vec![1, 65535]);
    }

    #[test]
    fn ports_errors() {
        let e = |raw: &str, why: &str| format!("percore: invalid --ports '{raw}': {why}");
        let cases = [
            ("0-5", "port 0 is out of range 1-65535"),
            ("0", "port 0 is out of range 1-65535"),
            ("65536", "port 65536 is out of range 1-65535"),
            ("80,99999999999", "port 99999999999 is out of range 1-65535"),
            ("9002-9000", "range 9002-9000 is reversed"),
            ("", "a port number is missing"),
            ("80,", "a port number is missing"),
            ("8001-", "a port number is missing"),
            ("http", "'http' is not a port number"),
            ("-5", "a port number is missing"),
            ("1-2-3", "'2-3' is not a port number"),
        ];
        for (raw, why) in cases {
            check_error(&["--root", ".", &format!("--ports={raw}")], &e(raw, why));
        }
    }

    #[test]
    fn workers_and_counts() {
        check(&["--workers", "1"], |c| c.workers = 1);
        check(&["--workers", "64"], |c| c.workers = 64);
        check(&["--workers", "auto"], |_| {});
        check(&["--max-headers", "7"], |c| c.max_headers = 7);
        check(&["--max-headers", "256"], |c| c.max_headers = 256);
        check(&["--file-cache-entries", "0"], |c| c.file_cache_entries = 0);
        check(&["--max-connections", "3"], |c| c.max_connections = Some(3));
        check(&["--max-connections", "unlimited"], |_| {});
        check(
            &["--max-connections", "3", "--max-connections", "Unlimited"],
            |_| {},
        );
        for raw in ["0", "-1", "many", ""] {
            check_error(
                &[&format!("--max-connections={raw}")],
                &format!(
                    "percore: invalid --max-connections '{raw}': expected a whole number of at \
                     least 1, or unlimited"
                ),
            );
        }
        check_error(
            &["--workers", "0"],
            "percore: invalid --workers '0': must be at least 1",
        );
        check_error(
            &["--workers", "many"],
            "percore: invalid --workers 'many': expected a whole number",
        );
        check_error(
            &["--max-headers", "0"],
            "percore: invalid --max-headers '0': must be between 1 and 256",
        );
        check_error(
            &["--max-headers", "257"],
            "percore: invalid --max-headers '257': must be between 1 and 256",
        );
    }

    #[test]
    fn pinning_and_congestion_control() {
        check(&["--pin", "false"], |c| c.pin = false);
        check(&["--ktls", "true"], |c| c.ktls = true);
        check(&["--pin", "true"], |_| {});
        check(&["--tcp-congestion", "reno"], |c| {
            c.tcp_congestion = Some("reno".into())
        });
        check(
            &["--tcp-congestion", "bbr", "--tcp-congestion", "system"],
            |_| {},
        );
        for raw in ["", "bb r", "cubic;", "fifteen_letters_"] {
            check_error(
                &[&format!("--tcp-congestion={raw}")],
                &format!(
                    "percore: invalid --tcp-congestion '{raw}': expected system or an \
                     algorithm's name such as reno, cubic or bbr"
                ),
            );
        }
        check_error(
            &["--pin", "yes"],
            "percore: invalid --pin 'yes': expected true or false",
        );
    }

    #[test]
    fn access_log_options() {
        check(&["--access-log", "stderr"], |c| {
            c.access_log = access_log::Target::Stderr
        });
        check(&["--access-log", "/var/log/percore/access.log"], |c| {
            c.access_log = access_log::Target::File("/var/log/percore/access.log".into())
        });
        check(
            &["--access-log", "OFF", "--access-log-format", "json"],
            |c| c.access_log_format = access_log::Format::Json,
        );
        check_error(
            &["--access-log-format", "xml"],
            "percore: invalid --access-log-format 'xml': expected combined or json",
        );
    }

    #[test]
    fn admin_and_log_level() {
        check(&["--admin", "off"], |c| c.admin = None);
        check(&["--admin", "[::1]:9100"], |c| {
            c.admin = "[::1]:9100".parse().ok()
        });
        check(&["--admin", "127.0.0.1:0"], |c| {
            c.admin = "127.0.0.1:0".parse().ok()
        });
        check(&["--log-level", "debug"], |c| c.log_level = Level::Debug);
        check(&["--log-level", "ERROR"], |c| c.log_level = Level::Error);
        check_error(
            &["--admin", "7391"],
            "percore: invalid --admin '7391': expected ADDRESS:PORT such as 127.0.0.1:7391 or [::1]:7391, or off",
        );
        check_error(
            &["--log-level", "loud"],
            "percore: invalid --log-level 'loud': expected error, warn, info or debug",
        );
        check_error(
            &["--bind", "localhost"],
            "percore: invalid --bind 'localhost': expected an IP address such as 0.0.0.0, 127.0.0.1 or [::]",
        );
    }

    #[test]
    fn sizes() {
        check(&["--max-request-line", "4096"], |c| {
            c.max_request_line = 4096
        });
        check(&["--max-header-size", "16k"], |c| c.max_header_size = 16384);
        check(&["--max-header-size", "16KiB"], |c| {
            c.max_header_size = 16384
        });
        check(&["--max-body-size", "2m"], |c| c.max_body_size = 2 << 20);
        check(&["--max-body-size", "2MiB"], |c| c.max_body_size = 2 << 20);
        check(&["--max-body-size", "0"], |c| c.max_body_size = 0);
        check(&["--small-file-max", "1g"], |c| c.small_file_max = 1 << 30);
        check(&["--small-file-max", "10 KB"], |c| c.small_file_max = 10240);
        let why = "expected bytes or a number with k/KiB, m/MiB or g/GiB";
        for raw in ["", "k", "8x", "1.5k", "-1", "8 k b"] {
            check_error(
                &[&format!("--max-body-size={raw}")],
                &format!("percore: invalid --max-body-size '{raw}': {why}"),
            );
        }
        check_error(
            &["--max-body-size", "99999999999999g"],
            "percore: invalid --max-body-size '99999999999999g': too large",
        );
        check_error(
            &["--max-request-line", "0"],
            "percore: invalid --max-request-line '0': must be at least 1",
        );
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        check(&["--header-timeout", "500ms"], |c| {
            c.header_timeout = ms(500)
        });
        check(&["--keepalive-timeout", "0"], |c| {
            c.keepalive_timeout = ms(0)
        });
        check(&["--keepalive-timeout", "2m"], |c| {
            c.keepalive_timeout = ms(120_000)
        });
        check(&["--send-timeout", "30"], |c| c.send_timeout = ms(30_000));
        check(&["--drain-timeout", "1h"], |c| {
            c.drain_timeout = ms(3_600_000)
        });
        check(&["--drain-timeout", "0s"], |c| c.drain_timeout = ms(0));
        let why = "expected seconds or a number with ms, s, m or h";
        for raw in ["", "s", "10 sec", "1.5s", "-1"] {
            check_error(
                &[&format!("--header-timeout={raw}")],
                &format!("percore: invalid --header-timeout '{raw}': {why}"),
            );
        }
        check_error(
            &["--header-timeout", "0ms"],
            "percore: invalid --header-timeout '0ms': must be greater than 0",
        );
        check_error(
            &["--send-timeout", "0"],
            "percore: invalid --send-timeout '0': must be greater than 0",
        );
        check_error(
            &["--drain-timeout", "18446744073709551615h"],
            "percore: invalid --drain-timeout '18446744073709551615h': too large",
        );
    }

    #[test]
    fn index_and_dotfiles() {
        check(&["--index", "default.htm"], |c| {
            c.index = "default.htm".into()
        });
        check(&["--dotfiles"], |c| c.dotfiles = true);
        for raw in ["", ".", "..", "a/index.html"] {
            check_error(
                &[&format!("--index={raw}")],
                &format!("percore: invalid --index '{raw}': expected a plain file name such as index.html"),
            );
        }
    }

    #[test]
    fn precompressed_codings() {
        check(&["--precompressed", "br,gzip"], |c| {
            c.precompressed = [Coding::Br, Coding::Gzip].into_iter().collect()
        });
        check(&["--precompressed", " zst "], |c| {
            c.precompressed = Codings::NONE.with(Coding::Zstd)
        });
        check(&["--precompressed", "br", "--precompressed", "off"], |_| {});
        check(&["--compress", "gzip"], |c| {
            c.compress = Codings::NONE.with(Coding::Gzip)
        });
        check(&["--compress", "off"], |c| c.compress = Codings::NONE);
        check_error(
            &["--compress", "zstd"],
            "percore: invalid --compress 'zstd': zstd is only served from precompressed files \
             (--precompressed); compress makes br and gzip",
        );
        check_error(
            &["--precompressed", "br,deflate"],
            "percore: invalid --precompressed 'br,deflate': 'deflate' is not one of br, zstd, gzip",
        );
    }

    #[test]
    fn error_pages_spa_fallback_and_mime_types() {
        check(
            &["--error-pages", "404=/missing.html, 503=/busy.html"],
            |c| c.error_pages = vec![(404, "/missing.html".into()), (503, "/busy.html".into())],
        );
        check(&["--error-pages", "off"], |c| c.error_pages = Vec::new());
        check(&["--cors-origins", "*"], |c| c.cors = CorsPolicy::AnyOrigin);
        check(&["--autoindex"], |c| c.autoindex = true);
        check(
            &[
                "--cors-origins",
                "https://App.example, http://localhost:3000",
            ],
            |c| {
                c.cors = CorsPolicy::Origins(vec![
                    "https://app.example".into(),
                    "http://localhost:3000".into(),
                ])
            },
        );
        check(&["--spa-fallback", "/index.html"], |c| {
            c.spa_fallback = Some("/index.html".into())
        });
        check(
            &[
                "--mime-types",
                ".WASM=application/wasm,md=text/plain; charset=utf-8",
            ],
            |c| {
                c.mime_types = vec![
                    ("wasm".into(), "application/wasm".into()),
                    ("md".into(), "text/plain; charset=utf-8".into()),
                ]
            },
        );
        for (flag, raw, why) in [
            ("--error-pages", "404", "is not STATUS=PATH"),
            ("--error-pages", "200=/a.html", "not an error status"),
            ("--error-pages", "404=a.html", "not a path below the root"),
            ("--error-pages", "404=/a,404=/b", "404 is given twice"),
            ("--spa-fallback", "index.html", "not a path below the root"),
            ("--mime-types", "wasm", "not EXT=TYPE"),
            ("--mime-types", "a/b=text/plain", "not a file extension"),
            ("--mime-types", "x=plain", "not a media type"),
            ("--cors-origins", "app.example", "not an origin"),
            ("--cors-origins", "https://a/b", "not an origin"),
        ] {
            let err = format!("percore: invalid {flag} '{raw}': ");
            match parse_args(["percore", flag, raw]) {
                CliOutcome::Exit { message, .. } => {
                    assert!(
                        message.starts_with(&err) && message.contains(why),
                        "{message}"
                    )
                }
                other => panic!("{flag} {raw}: {other:?}"),
            }
        }
    }

    #[test]
    fn header_rules_from_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let text = "[[headers]]\npath = '/assets/**'\nset = { Cache-Control = 'max-age=60', \
                    X-Frame-Options = 'DENY' }\n[[headers]]\npath = '*.html'\n\
                    set = { Cache-Control = '' }\n";
        let path = write_file(dir.path(), text);
        let root = dir.path().display().to_string();
        let CliOutcome::Run(config) = parse_args(["percore", "--config", &path, "--root", &root])
        else {
            panic!("the file is refused");
        };
        let rules = &config.header_rules;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].glob.as_str(), "/assets/**");
        assert_eq!(
            rules[0].fields,
            [
                ("Cache-Control".to_owned(), "max-age=60".to_owned()),
                ("X-Frame-Options".to_owned(), "DENY".to_owned())
            ]
        );
        for (text, why) in [
            ("headers = 'x'", "expected [[headers]] tables"),
            ("[[headers]]\nset = { A = 'b' }", "rule 1: expected path"),
            ("[[headers]]\npath = '*'", "rule 1: expected set"),
            (
                "[[headers]]\npath = '*'\nset = { A = 1 }",
                "the value of A must be a string",
            ),
            ("[[headers]]\npath = 'a/b'\nset = {}", "path 'a/b'"),
            (
                "[[headers]]\npath = '*'\nset = { ETag = 'x' }",
                "written by percore",
            ),
            (
                "[[headers]]\npath = '*'\nset = {}\nwhere = 1",
                "unknown key 'where'",
            ),
        ] {
            let path = write_file(dir.path(), text);
            match parse_args(["percore", "--config", &path, "--root", &root]) {
                CliOutcome::Exit { message, .. } => {
                    assert!(message.contains("invalid [[headers]]"), "{message}");
                    assert!(message.contains(why), "{text}: {message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn ws_paths_and_origins() {
        check(&["--ws-paths", "/ws"], |c| {
            c.ws_paths = Some(vec!["/ws".into()])
        });
        check(&["--ws-paths", "/ws, /echo"], |c| {
            c.ws_paths = Some(vec!["/ws".into(), "/echo".into()])
        });
        check(&["--ws-paths", "/ws", "--ws-paths", "any"], |c| {
            c.ws_paths = None
        });
        for (raw, bad) in [
            ("", ""),
            ("ws", "ws"),
            ("/ws,", ""),
            ("/a b", "/a b"),
            ("any,/ws", "any"),
        ] {
            check_error(
                &[&format!("--ws-paths={raw}")],
                &format!("percore: invalid --ws-paths '{raw}': '{bad}' is not an absolute path"),
            );
        }
        check(&["--ws-origins", "https://a.example"], |c| {
            c.ws_origins = Some(vec!["https://a.example".into()])
        });
        check(&["--ws-origins", "any"], |_| {});
    }

    #[test]
    fn root_is_canonicalized_and_checked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sub = dir.path().join("site");
        std::fs::create_dir(&sub).unwrap_or_else(|e| panic!("{e}"));
        let dotted = format!("{}/site/../site/.", dir.path().display());
        match parse_args(["percore", "--root", &dotted]) {
            CliOutcome::Run(c) => assert_eq!(Some(c.root), std::fs::canonicalize(&sub).ok()),
            other => panic!("{other:?}"),
        }
        let missing = format!("{}/nope", dir.path().display());
        check_error_argv(
            &["percore", "--root", &missing],
            &format!("percore: root directory {missing} does not exist ({ROOT_HINT})"),
        );
        let file = write_file(dir.path(), "");
        check_error_argv(
            &["percore", "--root", &file],
            &format!("percore: root {file} is not a directory ({ROOT_HINT})"),
        );
        let cwd = std::env::current_dir().unwrap_or_else(|e| panic!("{e}"));
        check_error_argv(
            &["percore", "--root", "nope-\n-x"],
            &format!(
                "percore: root directory {}/nope-\\n-x does not exist \
                 (relative to the current directory {}; {ROOT_HINT})",
                cwd.display(),
                cwd.display()
            ),
        );
    }

    #[test]
    fn file_under_flags() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().display().to_string();
        let path = write_file(
            dir.path(),
            &format!(
                "root = '{root}'\nports = [80, 8080]\nworkers = 3\nheader_timeout = 5\n\
                 keepalive_timeout = \"750ms\"\nmax_body_size = 2048\nadmin = \"off\"\n\
                 dotfiles = true\nbind = \"[::1]\"\n"
            ),
        );
        let outcome = parse_args([
            "percore",
            "--config",
            &path,
            "--workers",
            "2",
            "--ports",
            "9000",
        ]);
        let CliOutcome::Run(config) = outcome else {
            panic!("{outcome:?}");
        };
        let mut expected = Config::defaults();
        expected.root = std::fs::canonicalize(dir.path()).unwrap_or_default();
        expected.config_file = Some(PathBuf::from(&path));
        expected.ports = vec![9000];
        expected.workers = 2;
        expected.header_timeout = Duration::from_secs(5);
        expected.keepalive_timeout = Duration::from_millis(750);
        expected.max_body_size = 2048;
        expected.admin = None;
        expected.dotfiles = true;
        expected.bind = vec!["::1".parse().unwrap_or(expected.bind[0])];
        assert_eq!(config, expected);
    }

    #[test]
    fn file_forms() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().display().to_string();
        type Edit = fn(&mut Config);
        let cases: [(&str, Edit); 11] = [
            ("ports = 8001", |c| c.ports = vec![8001]),
            ("max_connections = 100", |c| c.max_connections = Some(100)),
            ("max_connections = 'unlimited'", |_| {}),
            ("bind = ['127.0.0.1', '::1']", |c| {
                c.bind = vec![
                    IpAddr::from([127, 0, 0, 1]),
                    IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
                ]
            }),
            ("bind = '0.0.0.0, ::'", |c| {
                c.bind = vec![IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])]
            }),
            ("ports = \"80,90-91\"", |c| c.ports = vec![80, 90, 91]),
            ("small_file_max = \"8KiB\"", |c| c.small_file_max = 8192),
            ("dotfiles = false", |_| {}),
            ("ws_paths = ['/ws', '/echo']", |c| {
                c.ws_paths = Some(vec!["/ws".into(), "/echo".into()])
            }),
            ("ws_paths = 'any'", |_| {}),
            ("precompressed = ['br', 'gzip']", |c| {
                c.precompressed = [Coding::Br, Coding::Gzip].into_iter().collect()
            }),
        ];
        for (line, edit) in cases {
            let path = write_file(dir.path(), line);
            let outcome = parse_args(["percore", "--config", &path, "--root", &root]);
            let mut expected = Config::defaults();
            expected.root = std::fs::canonicalize(dir.path()).unwrap_or_default();
            expected.config_file = Some(PathBuf::from(&path));
            edit(&mut expected);
            match outcome {
                CliOutcome::Run(config) => assert_eq!(config, expected, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn file_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cases = [
            ("foo = 1", "unknown key 'foo'"),
            ("max-headers = 1", "unknown key 'max-headers'"),
            ("config = 'x'", "unknown key 'config'"),
            (
                "ports = '0-5'",
                "invalid ports '0-5': port 0 is out of range 1-65535",
            ),
            ("ports = []", "invalid ports '': a port number is missing"),
            (
                "ports = [80, true]",
                "invalid ports: expected a string or an integer, found array",
            ),
            (
                "workers = 1.5",
                "invalid workers: expected a string or an integer, found float",
            ),
            (
                "workers = -2",
                "invalid workers '-2': expected a whole number",
            ),
            (
                "dotfiles = 'yes'",
                "invalid dotfiles 'yes': expected true or false",
            ),
            ("[server]\nports = 80", "unknown key 'server'"),
            (
                "bind = '0.0.0.0'\nports = ",
                "line 2, column 9: invalid TOML",
            ),
            (
                "a = 1\nb = [1,",
                "line 2, column 8: invalid array; expected `]`",
            ),
            (
                "a = 1\na = 2",
                "line 2, column 1: duplicate key `a` in document root",
            ),
        ];
        for (text, why) in cases {
            let path = write_file(dir.path(), text);
            check_error(
                &["--config", &path],
                &format!("percore: config file '{path}': {why}"),
            );
        }
        let missing = format!("{}/missing.toml", dir.path().display());
        check_error(
            &["--config", &missing],
            &format!("percore: config file '{missing}': No such file or directory (os error 2)"),
        );
    }

    #[test]
    fn clap_errors_are_one_line() {
        check_error(
            &["--foo"],
            "percore: unexpected argument '--foo' found (see 'percore --help')",
        );
        check_error(
            &["--ports"],
            "percore: a value is required for '--ports <LIST>' but none was supplied (see 'percore --help')",
        );
        check_error(
            &["extra"],
            "percore: unexpected argument 'extra' found (see 'percore --help')",
        );
    }

    #[test]
    fn check_config_reports_a_valid_configuration_on_stdout() {
        let (outcome, root) = run(&[
            "--check-config",
            "--ports",
            "80,8001-8002",
            "--workers",
            "3",
        ]);
        let root = std::fs::canonicalize(root.path()).unwrap_or_default();
        match outcome {
            CliOutcome::Exit {
                code: 0,
                message,
                to_stderr: false,
            } => assert_eq!(
                message,
                format!(
                    "percore: configuration is valid (no config file; root {}; 0.0.0.0 port(s) \
                     80,8001,8002; 3 worker(s); admin on 127.0.0.1:7391)",
                    root.display()
                )
            ),
            other => panic!("{other:?}"),
        }
        check_error(
            &["--check-config", "--workers", "0"],
            "percore: invalid --workers '0': must be at least 1",
        );
    }

    /// A certificate and key for localhost in `dir`, as the flags that name them.
    fn tls_files(dir: &Path) -> (String, String) {
        let made = crate::tls::testing::make(&rcgen::PKCS_ECDSA_P256_SHA256);
        let cert = crate::tls::testing::write(dir, "cert.pem", &made.cert);
        let key = crate::tls::testing::write(dir, "key.pem", &made.key);
        (cert.display().to_string(), key.display().to_string())
    }

    #[test]
    fn tls_ports_with_a_certificate_and_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (cert, key) = tls_files(dir.path());
        let (outcome, _root) = run(&[
            "--ports",
            "8001-8002,8443",
            "--tls-ports",
            "8443",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ]);
        let CliOutcome::Run(config) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(config.tls_ports, [8443]);
        assert_eq!(config.tls_cert, Some(PathBuf::from(&cert)));
        assert_eq!(config.tls_key, Some(PathBuf::from(&key)));
        assert!(config.tls.is_some());
        // The same from the config file, and --check-config names the TLS ports.
        let file = write_file(
            dir.path(),
            &format!(
                "ports = [8001, 8443]\ntls_ports = [8443]\ntls_cert = '{cert}'\n\
                 tls_key = '{key}'\n"
            ),
        );
        let (outcome, root) = run(&["--config", &file, "--check-config"]);
        let root = std::fs::canonicalize(root.path()).unwrap_or_default();
        match outcome {
            CliOutcome::Exit {
                code: 0,
                message,
                to_stderr: false,
            } => assert_eq!(
                message,
                format!(
                    "percore: configuration is valid (config file {file}; root {}; 0.0.0.0 \
                     port(s) 8001,8443; TLS on 8443; {} worker(s); admin on 127.0.0.1:7391)",
                    root.display(),
                    Config::defaults().workers
                )
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tls_settings_come_together() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (cert, key) = tls_files(dir.path());
        check_error(
            &["--ports", "8443", "--tls-ports", "8443"],
            "percore: --tls-ports 8443 needs both --tls-cert and --tls-key (tls_cert, tls_key)",
        );
        check_error(
            &[
                "--ports",
                "8443",
                "--tls-ports",
                "8443",
                "--tls-cert",
                &cert,
            ],
            "percore: --tls-ports 8443 needs both --tls-cert and --tls-key (tls_cert, tls_key)",
        );
        check_error(
            &["--tls-cert", &cert, "--tls-key", &key],
            "percore: --tls-cert and --tls-key need --tls-ports (tls_ports): which ports speak TLS",
        );
        check_error(
            &[
                "--ports",
                "8001-8003",
                "--tls-ports",
                "8003-8004,443",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ],
            "percore: --tls-ports names 443,8004 which --ports (8001-8003) does not listen on",
        );
        check_error(
            &["--tls-ports", "0"],
            "percore: invalid --tls-ports '0': port 0 is out of range 1-65535",
        );
        // An unusable key stops the start (and --check-config) with the line tls gives.
        let (_, root) = run(&[]);
        let root_arg = root.path().display().to_string();
        for check_only in [false, true] {
            let mut argv = vec![
                "percore",
                "--root",
                &root_arg,
                "--ports",
                "8443",
                "--tls-ports",
                "8443",
                "--tls-cert",
                &cert,
                "--tls-key",
                &cert,
            ];
            if check_only {
                argv.push("--check-config");
            }
            check_error_argv(
                &argv,
                &format!(
                    "percore: the TLS key {cert} holds no private key (expected a PEM block \
                     '-----BEGIN PRIVATE KEY-----', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY')"
                ),
            );
        }
    }

    #[test]
    fn help_shows_none_for_unset_tls_files() {
        match parse_args(["percore", "--help"]) {
            CliOutcome::Exit { message, .. } => {
                assert!(message.contains("--tls-cert <FILE>"), "{message}");
                assert!(
                    message.contains("e.g. 8443; needs --tls-cert and --tls-key [default: none]"),
                    "{message}"
                );
                assert!(
                    message.contains("--tls-ports 8443 --tls-cert fullchain.pem"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ports_are_described_as_a_range_when_contiguous() {
        assert_eq!(describe_ports(&[8001, 8002, 8003]), "8001-8003");
        assert_eq!(describe_ports(&[80, 8080]), "80,8080");
        assert_eq!(describe_ports(&[8001]), "8001");
    }

    #[test]
    fn reload_reads_the_file_again_under_the_same_flags() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().display().to_string();
        let path = write_file(dir.path(), "workers = 3\nlog_level = 'warn'\n");
        let args = [
            "percore",
            "--config",
            &path,
            "--root",
            &root,
            "--workers",
            "2",
        ];
        let CliOutcome::Run(first) = parse_args(args) else {
            panic!("the first parse failed");
        };
        assert_eq!(reload(args), Ok(first.clone()));
        std::fs::write(&path, "workers = 5\nlog_level = 'debug'\nports = 80\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let second = reload(args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((second.workers, second.log_level), (2, Level::Debug));
        assert_eq!(differences(&first, &second), ["ports", "log_level"]);
        std::fs::write(&path, "workers = 0\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            reload(args),
            Err(format!(
                "config file '{path}': invalid workers '0': must be at least 1"
            ))
        );
    }

    /// Every field of `Config` is named by `differences` (a new field must be added there).
    #[test]
    fn differences_name_every_key() {
        let defaults = Config::defaults();
        let pairs: Vec<_> = OPTIONS
            .iter()
            .map(|o| (o.flag.to_owned(), o.default.to_owned()))
            .collect();
        let mut scrambled = apply_to_scrambled(&[]);
        scrambled.ws_paths = Some(vec!["/other".into()]);
        scrambled.ws_origins = Some(vec!["https://a".into()]);
        scrambled.ws_max_message = 1;
        scrambled.ws_deflate = false;
        scrambled.ws_ping_interval = Duration::from_millis(1);
        scrambled.ws_ping_timeout = Duration::from_millis(1);
        scrambled.ws_close_timeout = Duration::from_millis(1);
        let glob = Glob::parse("*").unwrap_or_else(|e| panic!("{e}"));
        let rule = HeaderRule::new(glob, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        scrambled.header_rules = vec![rule];
        scrambled.tls_certificates = vec![SniCertificate {
            names: vec!["a.example".into()],
            cert: PathBuf::from("a.pem"),
            key: PathBuf::from("a.key"),
        }];
        let mut keys = differences(&defaults, &scrambled);
        let mut expected: Vec<String> = OPTIONS.iter().map(Opt::file_key).collect();
        expected.push(HEADERS_KEY.to_owned());
        expected.push(TLS_CERTIFICATES_KEY.to_owned());
        keys.sort_unstable();
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(
            differences(&defaults, &apply_to_scrambled(&pairs)),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn last_flag_wins() {
        check(&["--ports", "80", "--ports", "81"], |c| c.ports = vec![81]);
    }

    #[test]
    fn help_and_version() {
        for flag in ["--help", "-h"] {
            match parse_args(["percore", flag]) {
                CliOutcome::Exit {
                    code: 0,
                    message,
                    to_stderr: false,
                } => {
                    assert!(message.contains("--ports <LIST>"), "{message}");
                    assert!(message.contains("[default: 8001-8030]"), "{message}");
                    assert!(
                        message.contains("percore --bind [::] --admin off"),
                        "{message}"
                    );
                    assert!(!message.ends_with('\n'));
                }
                other => panic!("{other:?}"),
            }
        }
        match parse_args(["percore", "--version"]) {
            CliOutcome::Exit {
                code: 0,
                message,
                to_stderr: false,
            } => assert_eq!(message, format!("percore {}", env!("CARGO_PKG_VERSION"))),
            other => panic!("{other:?}"),
        }
    }

    /// Applies `text` as a config file to a config with every field changed.
    fn apply_to_scrambled(pairs: &[(String, String)]) -> Config {
        let mut config = Config::defaults();
        config.bind = vec![IpAddr::from([1, 2, 3, 4])];
        config.ports = vec![1];
        config.workers += 7;
        config.pin = false;
        config.root = PathBuf::from("elsewhere");
        config.admin = None;
        config.log_level = Level::Error;
        config.access_log = access_log::Target::Stderr;
        config.access_log_format = access_log::Format::Json;
        config.max_request_line = 1;
        config.max_header_size = 1;
        config.max_headers = 1;
        config.max_body_size = 1;
        config.header_timeout = Duration::from_millis(1);
        config.keepalive_timeout = Duration::from_millis(1);
        config.send_timeout = Duration::from_millis(1);
        config.drain_timeout = Duration::from_millis(1);
        config.small_file_max = 1;
        config.file_cache_entries = 1;
        config.max_connections = Some(1);
        config.tcp_congestion = Some("reno".into());
        config.ktls = true;
        config.index = "x".into();
        config.dotfiles = true;
        config.precompressed = Codings::NONE.with(Coding::Gzip);
        config.compress = Codings::NONE;
        config.error_pages = vec![(500, "/scrambled.html".into())];
        config.spa_fallback = Some("/scrambled.html".into());
        config.mime_types = vec![("x".into(), "a/b".into())];
        config.cors = CorsPolicy::AnyOrigin;
        config.autoindex = true;
        config.ws_paths = Some(vec!["/scrambled".into()]);
        config.tls_cert = Some(PathBuf::from("scrambled.pem"));
        config.tls_key = Some(PathBuf::from("scrambled.key"));
        config.tls_ports = vec![1];
        for (flag, raw) in pairs {
            if let Err(why) = set(&mut config, flag, raw) {
                panic!("{flag} = {raw}: {why}");
            }
        }
        config
    }

    #[test]
    fn option_table_defaults_match_code() {
        let pairs: Vec<_> = OPTIONS
            .iter()
            .map(|o| (o.flag.to_owned(), o.default.to_owned()))
            .collect();
        assert_eq!(apply_to_scrambled(&pairs), Config::defaults());
    }

    #[test]
    fn shipped_file_is_the_defaults() {
        let table: toml::Table = SHIPPED.parse().unwrap_or_else(|e| panic!("{e}"));
        let mut keys: Vec<_> = table.keys().cloned().collect();
        let mut expected: Vec<_> = OPTIONS.iter().map(Opt::file_key).collect();
        keys.sort();
        expected.sort();
        assert_eq!(keys, expected, "percore.toml must document every key");
        let mut pairs = Vec::new();
        for (key, value) in &table {
            let raw = value_text(value).unwrap_or_else(|| panic!("{key}"));
            pairs.push((key.replace('_', "-"), raw));
        }
        assert_eq!(apply_to_scrambled(&pairs), Config::defaults());
    }

    #[test]
    fn shipped_file_loads_through_parse_args() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write_file(dir.path(), SHIPPED);
        let root = dir.path().display().to_string();
        let mut expected = Config::defaults();
        expected.root = std::fs::canonicalize(dir.path()).unwrap_or_default();
        expected.config_file = Some(PathBuf::from(&path));
        match parse_args(["percore", "--config", &path, "--root", &root]) {
            CliOutcome::Run(config) => assert_eq!(config, expected),
            other => panic!("{other:?}"),
        }
    }
}
