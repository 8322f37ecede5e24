//! percore's pages in a real browser: headless Chromium, driven over the Chrome DevTools
//! Protocol (CDP) with the tungstenite client, against percore serving the real `www/` directory.
//! The pages are percore's own (`www/ws.html`, `www/status.html`) and the C tutorial's echo
//! client, unchanged.
//!
//! Chromium is required, never skipped: without it the test fails and says how to install it
//! (`.ci/run` does). Every wait is bounded, and Chromium's whole process group is killed when
//! the test ends, however it ends.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use tungstenite::{Message, WebSocket};

use crate::harness::tls::TlsFiles;
use crate::harness::{get, Options, Root, Server};

/// The longest any one step may take: Chromium starting, a CDP reply, a page condition.
const LIMIT: Duration = Duration::from_secs(20);
/// Where the screenshot of the page after the exchange goes, for people to look at.
const SCREENSHOT: &str = "/tmp/ws-page.png";
/// Typed into the page: non-ASCII, so the UTF-8 path is exercised both ways.
const MESSAGE: &str = "héllo from Chromium ✓";

#[test]
fn echo_page_round_trips_text_and_binary_in_chromium() {
    let root = www_root();
    let server = Server::start(&root);
    let chromium = Chromium::launch(&[]);
    let mut page = chromium.open_page();
    let port = server.port();

    page.call(
        "Emulation.setDeviceMetricsOverride",
        r#"{"width":900,"height":900,"deviceScaleFactor":1,"mobile":false}"#,
    );
    page.navigate(&format!("http://127.0.0.1:{port}/ws.html"), "/ws.html");
    assert_eq!(
        page.eval("document.getElementById('url').value"),
        Json::Str(format!("ws://127.0.0.1:{port}/ws")),
        "the socket URL comes from the page's own location"
    );
    assert_eq!(page.state(), "closed");

    page.eval("document.getElementById('connect').click()");
    page.wait_for(
        "the socket to open",
        "document.getElementById('state').textContent === 'open'",
    );

    // Type into the message box and press Enter, as a user would.
    page.eval("document.getElementById('message').focus()");
    page.call(
        "Input.insertText",
        &format!(r#"{{"text":{}}}"#, json_str(MESSAGE)),
    );
    page.press_enter();
    page.wait_for(
        "the text echo",
        "document.querySelector('#log .received') !== null",
    );

    // The same text as binary, with the Send button this time.
    page.eval("document.getElementById('binary').click(); document.getElementById('send').click()");
    page.wait_for(
        "the binary echo",
        "document.querySelectorAll('#log .received').length === 2",
    );

    page.eval("document.getElementById('disconnect').click()");
    page.wait_for(
        "the socket to close",
        "document.getElementById('state').textContent === 'closed'",
    );

    let entries = page.log_entries();
    let kinds: Vec<&str> = entries.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "connecting",
            "open",
            "sent",
            "received",
            "sent binary",
            "received binary",
            "closing",
            "closed"
        ],
        "the page's log: {entries:?}"
    );
    assert_eq!(entries[2].1, MESSAGE, "what the page sent");
    assert_eq!(entries[3].1, MESSAGE, "what came back");
    assert!(
        entries[4].1.ends_with(&format!("({MESSAGE})")) && entries[5].1 == entries[4].1,
        "the binary message and its echo: {entries:?}"
    );
    assert!(
        entries[7].1.starts_with("code 1000 (normal closure)"),
        "the close: {entries:?}"
    );

    // The site's icon, which browsers ask for by default, decodes as an image.
    page.eval("window.icon = new Image(); icon.src = '/favicon.ico'; true");
    page.wait_for("the favicon to load or fail", "icon.complete");
    assert_eq!(
        page.eval("[icon.naturalWidth, icon.naturalHeight]"),
        Json::Arr(vec![Json::Num(32.0), Json::Num(32.0)]),
        "the favicon as Chromium decodes it (its largest image)"
    );

    page.screenshot(Path::new(SCREENSHOT));
    assert_eq!(
        page.exceptions,
        Vec::<String>::new(),
        "script errors on the page"
    );
}

/// The same page over HTTPS, its socket over `wss://`: Chromium's TLS stack (BoringSSL, which
/// offers post-quantum key shares, GREASE values and h2) against the server's. Chromium is told
/// to accept the test certificate (`--ignore-certificate-errors`).
#[test]
fn the_echo_page_works_over_https_and_wss() {
    let root = www_root();
    let tls = TlsFiles::new();
    let flags = tls.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_with(
        &root,
        Options {
            tls_ports: 1,
            extra: &flags,
            ..Options::default()
        },
    );
    let port = server.port();
    let chromium = Chromium::launch(&["--ignore-certificate-errors"]);
    let mut page = chromium.open_page();
    page.navigate(&format!("https://127.0.0.1:{port}/ws.html"), "/ws.html");
    assert_eq!(
        page.eval("document.getElementById('url').value"),
        Json::Str(format!("wss://127.0.0.1:{port}/ws")),
        "an https: page makes a wss: URL"
    );
    page.eval("document.getElementById('connect').click()");
    page.wait_for(
        "the socket to open",
        "document.getElementById('state').textContent === 'open'",
    );
    page.eval("document.getElementById('message').focus()");
    page.call(
        "Input.insertText",
        &format!(r#"{{"text":{}}}"#, json_str(MESSAGE)),
    );
    page.press_enter();
    page.wait_for(
        "the text echo",
        "document.querySelector('#log .received') !== null",
    );
    page.eval("document.getElementById('disconnect').click()");
    page.wait_for(
        "the socket to close",
        "document.getElementById('state').textContent === 'closed'",
    );
    let entries = page.log_entries();
    let kinds: Vec<&str> = entries.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "connecting",
            "open",
            "sent",
            "received",
            "closing",
            "closed"
        ],
        "the page's log: {entries:?}"
    );
    assert_eq!(entries[3].1, MESSAGE, "what came back");
    assert_eq!(
        page.exceptions,
        Vec::<String>::new(),
        "script errors on the page"
    );
}

/// The browser echo client at the end of the C tutorial percore descends from (the project's
/// seed text, `/work/shared/seed/000_bbf3bbf5243fd53d.txt` where this was written: the page that
/// follows "And a minimal WebSocket test client:"), copied byte for byte. It hard-codes
/// `ws://localhost:8001`, path `/`, and reports only on the console.
const TUTORIAL_PAGE: &[u8] = include_bytes!("fixtures/tutorial-echo.html");

#[test]
fn the_c_tutorials_echo_page_works_unchanged_against_the_defaults() {
    let text = std::str::from_utf8(TUTORIAL_PAGE).expect("the page is UTF-8");
    assert!(text.contains(r#"new WebSocket("ws://localhost:8001")"#));
    let root = www_root();
    root.write("tutorial-echo.html", TUTORIAL_PAGE);
    // Default settings but for the harness's own (a free port, one worker, an admin port).
    let server = Server::start_with(
        &root,
        Options {
            admin: true,
            ..Options::default()
        },
    );
    // The page must reach this server at `localhost:8001` without being edited, and port 8001
    // may belong to a developer's percore or to another test. Chromium's resolver rules map the
    // host and port for this browser alone, for the page load and its WebSocket alike, and
    // nothing listens on 8001 for it. (Binding 8001 when free would race with other servers;
    // CDP's `Fetch` interception does not see WebSocket handshakes.) The metrics below prove
    // that the page talked to this server and not to whatever else listens on 8001.
    let rule = format!(
        "--host-resolver-rules=MAP localhost:8001 127.0.0.1:{}",
        server.port()
    );
    let chromium = Chromium::launch(&[&rule]);
    let mut page = chromium.open_page();
    page.navigate(
        "http://localhost:8001/tutorial-echo.html",
        "/tutorial-echo.html",
    );

    // Used as a person would: Connect, click the text box and type, Send, Disconnect.
    page.click("#btn-connect");
    page.wait_for_console("the socket to open", "ws connection opened");
    page.click("#ws-msg");
    page.call(
        "Input.insertText",
        &format!(r#"{{"text":{}}}"#, json_str(MESSAGE)),
    );
    page.click("#btn-send");
    // The page logs the whole MessageEvent; its data is the echo.
    let received = page.wait_for_console("the echo", "ws received:");
    let Some(event) = received.args.at(1).get("objectId").as_str() else {
        panic!("the logged event is no object: {received:?}");
    };
    assert_eq!(
        page.call_on(
            event,
            "function () { return [this.constructor.name, this.origin, this.data]; }"
        ),
        Json::Arr(vec![
            Json::Str("MessageEvent".into()),
            Json::Str("ws://localhost:8001".into()),
            Json::Str(MESSAGE.into()),
        ]),
        "the event the page logged"
    );
    page.click("#btn-close");
    page.wait_for_console("the socket to close", "ws connection closed");

    let console: Vec<String> = page.console.iter().map(ConsoleCall::line).collect();
    assert_eq!(
        console,
        [
            "log: ws connection opened".to_string(),
            format!("log: ws send: {MESSAGE}"),
            "log: ws received: MessageEvent".to_string(),
            "log: ws connection closed".to_string(),
        ],
        "the page's console"
    );
    server.wait_for_metrics(
        &[
            "percore_ws_upgrades_total{worker=\"0\"} 1".to_string(),
            "percore_ws_messages_received_total{worker=\"0\"} 1".to_string(),
            "percore_ws_messages_sent_total{worker=\"0\"} 1".to_string(),
        ],
        LIMIT,
    );
    // Nothing the browser loaded for the page failed (a missing favicon.ico was logged here).
    let errors: Vec<&String> = page
        .browser_log
        .iter()
        .filter(|entry| entry.starts_with("error:"))
        .collect();
    assert_eq!(errors, Vec::<&String>::new(), "errors in the browser's log");
    assert_eq!(
        page.exceptions,
        Vec::<String>::new(),
        "script errors on the page"
    );
}

/// Where the screenshot of the status page goes, for people to look at.
const STATUS_SCREENSHOT: &str = "/tmp/status-page.png";

/// The live status page against two workers: it shows the worker count, and its request
/// counter rises by the requests made while it watches, to the server's own total.
#[test]
fn status_page_shows_the_workers_and_counts_requests_live() {
    let root = www_root();
    let server = Server::start_with(
        &root,
        Options {
            admin: true,
            workers: 2,
            ..Options::default()
        },
    );
    let port = server.port();
    let admin = server.admin.expect("the admin port");
    let chromium = Chromium::launch(&[]);
    let mut page = chromium.open_page();
    page.call(
        "Emulation.setDeviceMetricsOverride",
        r#"{"width":1100,"height":1300,"deviceScaleFactor":1,"mobile":false}"#,
    );
    page.navigate(
        &format!("http://127.0.0.1:{port}/status.html?admin=127.0.0.1:{admin}"),
        "/status.html",
    );
    page.wait_for(
        "the worker count",
        "document.getElementById('workers').textContent === '2'",
    );
    assert_eq!(page.state(), "live");
    assert_eq!(
        page.text("#source"),
        format!("http://127.0.0.1:{admin}/status.json")
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#charts canvas').length"),
        Json::Num(6.0),
        "one chart per metric"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#legend li').length"),
        Json::Num(2.0),
        "one line per worker"
    );

    let before = page.count("#requests");
    for _ in 0..50 {
        assert_eq!(get(port, "/hello.txt", "").status, 200);
    }
    page.wait_for(
        "the request counter to rise by 50",
        &format!(
            "Number(document.getElementById('requests').textContent.replaceAll(',', '')) >= {}",
            before + 50
        ),
    );
    // Then to the server's own total: the page's loads (and Chromium's request for the icon)
    // count too, so only that shows nothing was counted twice or lost.
    let deadline = Instant::now() + LIMIT;
    loop {
        let shown = page.count("#requests");
        let total = requests_total(&server);
        if shown == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page shows {shown} requests, the server counted {total}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    page.wait_for(
        "a request rate above 0 in the requests/s chart",
        "parseFloat(document.querySelector('#chart-requests .max').textContent) > 0",
    );
    page.wait_for(
        "a latency in the p99 chart",
        "/^[0-9.]+ (µs|ms|s)$/.test(document.querySelector('#chart-p99 .max').textContent)",
    );
    assert_eq!(page.state(), "live");
    assert_eq!(
        page.eval("document.getElementById('problem').hidden"),
        Json::Bool(true)
    );

    page.screenshot(Path::new(STATUS_SCREENSHOT));
    let errors: Vec<String> = page
        .console
        .iter()
        .filter(|call| call.kind == "error")
        .map(ConsoleCall::line)
        .chain(
            page.browser_log
                .iter()
                .filter(|e| e.starts_with("error:"))
                .cloned(),
        )
        .collect();
    assert_eq!(errors, Vec::<String>::new(), "errors in the console");
    assert_eq!(
        page.exceptions,
        Vec::<String>::new(),
        "script errors on the page"
    );
}

/// The requests the server has counted, summed over its workers, from `/status.json`.
fn requests_total(server: &Server) -> u64 {
    let (status, body) = server.admin_get("/status.json");
    assert_eq!(status, 200, "{body}");
    let Json::Arr(workers) = Json::parse(&body).get("workers").clone() else {
        panic!("no workers in {body}");
    };
    workers
        .iter()
        .map(|w| match w.get("requests") {
            Json::Num(n) => *n as u64,
            other => panic!("requests is {other:?} in {body}"),
        })
        .sum()
}

/// Without an admin endpoint to read, the status page says so and why it may be, and its
/// arithmetic (rates between reports, percentiles from buckets) checks out.
#[test]
fn status_page_says_when_the_admin_endpoint_cannot_be_reached() {
    let root = www_root();
    let server = Server::start(&root);
    // Bound but not listening: connecting is refused, and no other test's server can take the
    // port while this one looks.
    let refusing =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let any_port: std::net::SocketAddr = "127.0.0.1:0".parse().expect("an address");
    refusing
        .bind(&any_port.into())
        .expect("binding 127.0.0.1:0");
    let closed = refusing
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("the bound port")
        .port();
    let chromium = Chromium::launch(&[]);
    let mut page = chromium.open_page();
    let port = server.port();
    page.navigate(
        &format!("http://127.0.0.1:{port}/status.html?admin=127.0.0.1:{closed}"),
        "/status.html",
    );
    page.wait_for(
        "the page to give up on the admin endpoint",
        "document.getElementById('state').textContent === 'unreachable'",
    );
    let problem = page.text("#problem");
    assert!(
        problem.starts_with(&format!(
            "Cannot reach percore's admin endpoint at http://127.0.0.1:{closed}/status.json"
        )) && problem.contains("(--admin, not off)"),
        "{problem}"
    );
    assert_eq!(
        page.eval("document.getElementById('problem').hidden"),
        Json::Bool(false)
    );
    assert_eq!(page.text("#workers"), "–");

    // The page's arithmetic, through its own functions. Latency quantiles interpolate within
    // power-of-two buckets: 1 sample up to 1 µs, 2 up to 2 µs, 1 up to 4 µs.
    let bounds = "[1, 2, 4]";
    for (buckets, q, expected) in [
        ("[1, 2, 1, 0]", 0.5, 1.5),
        ("[1, 2, 1, 0]", 1.0, 4.0),
        ("[0, 0, 0, 3]", 0.5, 4.0),
        ("[4, 0, 0, 0]", 0.25, 0.25),
    ] {
        assert_eq!(
            page.eval(&format!("quantile({buckets}, {bounds}, {q})")),
            Json::Num(expected),
            "quantile({buckets}, {bounds}, {q})"
        );
    }
    assert_eq!(
        page.eval("quantile([0, 0, 0, 0], [1, 2, 4], 0.5)"),
        Json::Null
    );
    // Rates divide by the time between reports, hold while the next is due, drop to 0 once
    // the worker is silent, and after a silence cover one report interval at most.
    let rates = page.eval(
        "(() => {
            const at = (ms, requests) => ({ reported_ms: ms, requests, bytes_sent: 10 * requests,
                latency_buckets: [0, requests, 0, 0] });
            const seen = [];
            let s = follow(undefined, at(1000, 0), 1200, [1, 2, 4]);
            for (const [sample, uptime] of [[at(2000, 50), 2100], [at(2000, 50), 3100],
                    [at(2000, 50), 4500], [at(9000, 60), 9100], [at(10500, 120), 10600]]) {
                s = follow(s, sample, uptime, [1, 2, 4]);
                seen.push(s.rates.requests, s.rates.bytes);
            }
            return seen;
        })()",
    );
    let expected = [50.0, 500.0, 50.0, 500.0, 0.0, 0.0, 10.0, 100.0, 40.0, 400.0];
    assert_eq!(
        rates,
        Json::Arr(expected.into_iter().map(Json::Num).collect()),
        "requests/s and bytes/s after each poll"
    );
    assert_eq!(
        page.eval(
            "[formatCount(0), formatCount(12.345), formatCount(4567), formatBytes(2.5e6), \
             formatMicros(150), formatMicros(2500), formatMicros(3.2e6), niceCeil(0), niceCeil(3), niceCeil(101)]"
        ),
        Json::Arr(
            ["0", "12.3", "4.57k", "2.5 MB/s", "150 µs", "2.5 ms", "3.2 s"]
                .into_iter()
                .map(|s| Json::Str(s.into()))
                .chain([Json::Num(1.0), Json::Num(5.0), Json::Num(200.0)])
                .collect()
        )
    );
    assert_eq!(
        page.exceptions,
        Vec::<String>::new(),
        "script errors on the page"
    );
}

/// A page on one percore reads files of another across origins: with `--cors-origins` naming
/// the page's origin, Chromium's preflight (a custom header asks for one) passes and the script
/// reads the body, the ETag and a range's Content-Range; from a server without CORS, the same
/// fetch fails in the browser although the server answered.
#[test]
fn a_page_reads_another_servers_files_across_origins_with_cors() {
    let site = Root::new();
    site.write(
        "page.html",
        b"<!doctype html><title>cors</title><p>reader</p>",
    );
    let site_server = Server::start(&site);
    let origin = format!("http://127.0.0.1:{}", site_server.port());
    let data = Root::new();
    data.write("data.json", b"{\"answer\":42}");
    let open = Server::start_with_flags(&data, &["--cors-origins", &origin]);
    let closed = Server::start(&data);

    let chromium = Chromium::launch(&[]);
    let mut page = chromium.open_page();
    page.navigate(&format!("{origin}/page.html"), "/page.html");
    let script = format!(
        "window.results = null;
        (async () => {{
            const r = {{}};
            const full = await fetch('http://127.0.0.1:{open}/data.json', {{ headers: {{ 'X-Trace': '1' }} }});
            r.body = await full.text();
            r.etag = full.headers.get('ETag');
            const part = await fetch('http://127.0.0.1:{open}/data.json', {{ headers: {{ Range: 'bytes=0-8' }} }});
            r.partStatus = part.status;
            r.partBody = await part.text();
            r.contentRange = part.headers.get('Content-Range');
            try {{
                await fetch('http://127.0.0.1:{closed}/data.json');
                r.closed = 'read';
            }} catch (e) {{
                r.closed = e.name;
            }}
            window.results = JSON.stringify(r);
        }})();
        true",
        open = open.port(),
        closed = closed.port(),
    );
    assert_eq!(page.eval(&script), Json::Bool(true));
    page.wait_for("the fetches to finish", "window.results !== null");
    let Json::Str(results) = page.eval("window.results") else {
        panic!("no results");
    };
    let etag = get(open.port(), "/data.json", "")
        .header("ETag")
        .map(str::to_owned);
    let expected = format!(
        r#"{{"body":"{{\"answer\":42}}","etag":{},"partStatus":206,"partBody":"{{\"answer\"","contentRange":"bytes 0-8/13","closed":"TypeError"}}"#,
        json_str(&etag.unwrap_or_default())
    );
    assert_eq!(results, expected);
}

/// A document root holding a copy of the repository's `www/`.
fn www_root() -> Root {
    let root = Root::new();
    let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
    copy_tree(&www, root.path());
    root
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("reading www/") {
        let entry = entry.expect("reading www/");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying www/");
        }
    }
}

/// A headless Chromium with a fresh profile; dropping it kills its process group.
struct Chromium {
    child: Child,
    devtools_url: String,
    log: Arc<Mutex<String>>,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts Chromium with the test's usual flags and `extra` ones.
    fn launch(extra: &[&str]) -> Chromium {
        let profile = tempfile::tempdir().expect("temp dir for the Chromium profile");
        let spawned = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg("about:blank")
            // Its own process group, so the guard can kill the renderers and helpers too.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "chromium is not installed, and the browser test needs it: \
                 run `apt-get install -y chromium` (.ci/run does) ({e})"
            ),
            Err(e) => panic!("cannot start chromium: {e}"),
        };
        let stderr = child.stderr.take().expect("stderr pipe");
        let mut chromium = Chromium {
            child,
            devtools_url: String::new(),
            log: Arc::new(Mutex::new(String::new())),
            _profile: profile,
        };
        // Read stderr to its end, or Chromium blocks on a full pipe; pass on the DevTools URL.
        let (url_tx, url_rx) = mpsc::channel();
        let sink = Arc::clone(&chromium.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = url_tx.send(url.trim().to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        match url_rx.recv_timeout(LIMIT) {
            Ok(url) => chromium.devtools_url = url,
            Err(_) => panic!(
                "chromium printed no DevTools URL within {LIMIT:?}; its stderr:\n{}",
                chromium.log()
            ),
        }
        chromium
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A new tab, attached as a flat CDP session.
    fn open_page(&self) -> Cdp {
        let mut cdp = Cdp::connect(&self.devtools_url);
        let target = cdp.call("Target.createTarget", r#"{"url":"about:blank"}"#);
        let target_id = target.get("targetId").as_str().expect("targetId");
        let attached = cdp.call(
            "Target.attachToTarget",
            &format!(r#"{{"targetId":{},"flatten":true}}"#, json_str(target_id)),
        );
        let session = attached.get("sessionId").as_str().expect("sessionId");
        cdp.session = Some(session.to_string());
        cdp.call("Runtime.enable", "{}");
        cdp.call("Log.enable", "{}");
        cdp
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Negative PID: the whole process group, whose id is Chromium's own PID.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One CDP connection, optionally speaking to one page session.
struct Cdp {
    socket: WebSocket<TcpStream>,
    next_id: u64,
    session: Option<String>,
    /// Uncaught script exceptions reported by the page (`Runtime.exceptionThrown`).
    exceptions: Vec<String>,
    /// The page's `console` calls, oldest first (`Runtime.consoleAPICalled`).
    console: Vec<ConsoleCall>,
    /// What the browser itself logged for the page, such as a failed WebSocket handshake
    /// (`Log.entryAdded`), as "level: text (url)".
    browser_log: Vec<String>,
}

/// One call of `console.log`, `console.error`…: its kind (`log`, `error`…) and its arguments
/// as CDP remote objects (a string's text is in `value`; an object has an `objectId`).
#[derive(Clone, Debug)]
struct ConsoleCall {
    kind: String,
    args: Json,
}

impl ConsoleCall {
    /// "kind: arguments", each argument as its value or, for an object, its description.
    fn line(&self) -> String {
        let Json::Arr(args) = &self.args else {
            return format!("{}: {:?}", self.kind, self.args);
        };
        let args: Vec<&str> = args
            .iter()
            .map(|arg| {
                let text = arg.get("value").as_str();
                text.or(arg.get("description").as_str()).unwrap_or("?")
            })
            .collect();
        format!("{}: {}", self.kind, args.join(" "))
    }
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let address = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("unexpected DevTools URL {url:?}"));
        let stream = TcpStream::connect(address).expect("connecting to DevTools");
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_write_timeout(Some(LIMIT)).unwrap();
        let (socket, _) = tungstenite::client(url, stream).expect("DevTools handshake");
        Cdp {
            socket,
            next_id: 0,
            session: None,
            exceptions: Vec::new(),
            console: Vec::new(),
            browser_log: Vec::new(),
        }
    }

    /// Sends one command and returns its `result`, collecting the events that arrive meanwhile.
    fn call(&mut self, method: &str, params: &str) -> Json {
        self.next_id += 1;
        let id = self.next_id;
        let session = self.session.as_deref().map_or(String::new(), |s| {
            format!(r#","sessionId":{}"#, json_str(s))
        });
        let command = format!(r#"{{"id":{id},"method":"{method}","params":{params}{session}}}"#);
        self.socket
            .send(Message::text(command))
            .unwrap_or_else(|e| panic!("sending {method}: {e}"));
        loop {
            let text = match self.socket.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(e) => panic!("waiting for the reply to {method}: {e}"),
            };
            let reply = Json::parse(&text);
            if reply.get("method") == &Json::Str("Runtime.exceptionThrown".into()) {
                let details = reply.get("params").get("exceptionDetails");
                self.exceptions.push(format!("{details:?}"));
            }
            if reply.get("method") == &Json::Str("Runtime.consoleAPICalled".into()) {
                let params = reply.get("params");
                self.console.push(ConsoleCall {
                    kind: params.get("type").as_str().unwrap_or_default().to_string(),
                    args: params.get("args").clone(),
                });
            }
            if reply.get("method") == &Json::Str("Log.entryAdded".into()) {
                let entry = reply.get("params").get("entry");
                let level = entry.get("level").as_str().unwrap_or_default();
                let text = entry.get("text").as_str().unwrap_or_default();
                let line = match entry.get("url").as_str() {
                    Some(url) => format!("{level}: {text} ({url})"),
                    None => format!("{level}: {text}"),
                };
                self.browser_log.push(line);
            }
            if reply.get("id") == &Json::Num(id as f64) {
                let error = reply.get("error");
                assert_eq!(error, &Json::Null, "{method} failed");
                return reply.get("result").clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Json {
        let params = format!(
            r#"{{"expression":{},"returnByValue":true}}"#,
            json_str(expression)
        );
        let result = self.call("Runtime.evaluate", &params);
        let exception = result.get("exceptionDetails");
        assert_eq!(exception, &Json::Null, "evaluating {expression}");
        result.get("result").get("value").clone()
    }

    /// Calls `function` with `this` bound to the remote object `object_id`; returns its value.
    fn call_on(&mut self, object_id: &str, function: &str) -> Json {
        let params = format!(
            r#"{{"objectId":{},"functionDeclaration":{},"returnByValue":true}}"#,
            json_str(object_id),
            json_str(function)
        );
        let result = self.call("Runtime.callFunctionOn", &params);
        let exception = result.get("exceptionDetails");
        assert_eq!(exception, &Json::Null, "calling {function}");
        result.get("result").get("value").clone()
    }

    /// Loads `url` and waits until the document at `path` is complete.
    fn navigate(&mut self, url: &str, path: &str) {
        let navigation = self.call("Page.navigate", &format!(r#"{{"url":{}}}"#, json_str(url)));
        assert_eq!(
            navigation.get("errorText"),
            &Json::Null,
            "navigating to {url}"
        );
        self.wait_for(
            "the page to load",
            &format!(
                "document.readyState === 'complete' && location.pathname === {}",
                json_str(path)
            ),
        );
    }

    /// A real left click (mouse down and up) in the middle of the element `selector`.
    fn click(&mut self, selector: &str) {
        let centre = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); e.scrollIntoView({{block: 'center'}});
                const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json_str(selector)
        ));
        let (Json::Num(x), Json::Num(y)) = (centre.at(0), centre.at(1)) else {
            panic!("no position for {selector}: {centre:?}");
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                &format!(r#"{{"type":"{kind}","x":{x},"y":{y},"button":"left","clickCount":1}}"#),
            );
        }
    }

    /// Waits until the page has logged a console call whose first argument is `first`, at most
    /// `LIMIT`, and returns the first such call.
    fn wait_for_console(&mut self, what: &str, first: &str) -> ConsoleCall {
        let deadline = Instant::now() + LIMIT;
        loop {
            let found = self
                .console
                .iter()
                .find(|call| call.args.at(0).get("value").as_str() == Some(first));
            if let Some(call) = found {
                return call.clone();
            }
            let error = self.console.iter().any(|call| call.kind == "error");
            if error || Instant::now() > deadline {
                let failure = match error {
                    true => "the page logged an error".to_string(),
                    false => format!("timed out after {LIMIT:?}"),
                };
                let console: Vec<String> = self.console.iter().map(ConsoleCall::line).collect();
                panic!(
                    "{failure} while waiting for {what} (console {first:?}); the console: {console:#?}; \
                     the browser's log: {:#?}",
                    self.browser_log
                );
            }
            std::thread::sleep(Duration::from_millis(50));
            // Any command reads the events that arrived meanwhile.
            self.eval("0");
        }
    }

    /// Polls `expression` until it is true, for at most `LIMIT`.
    fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + LIMIT;
        while self.eval(expression) != Json::Bool(true) {
            if Instant::now() > deadline {
                let log = self.eval(
                    "(document.getElementById('log') ?? document.getElementById('problem'))?.innerText ?? ''",
                );
                panic!("timed out after {LIMIT:?} waiting for {what} ({expression}); the page's log: {log:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn state(&mut self) -> String {
        self.text("#state")
    }

    /// The text of the element `selector`; empty when there is none.
    fn text(&mut self, selector: &str) -> String {
        let text = self.eval(&format!(
            "document.querySelector({})?.textContent ?? ''",
            json_str(selector)
        ));
        text.as_str().unwrap_or_default().to_string()
    }

    /// The number the element `selector` shows, digits grouped with commas ("1,234").
    fn count(&mut self, selector: &str) -> u64 {
        let text = self.text(selector);
        text.replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("{selector} shows {text:?}, not a number"))
    }

    /// The page's log as (label, text) pairs, oldest first.
    fn log_entries(&mut self) -> Vec<(String, String)> {
        let entries = self.eval(
            "[...document.querySelectorAll('#log .entry')]
                .map(e => [e.querySelector('.kind').textContent, e.querySelector('.text').textContent])",
        );
        let Json::Arr(entries) = entries else {
            panic!("the log is not a list: {entries:?}");
        };
        entries
            .iter()
            .map(|pair| {
                let text = |i| pair.at(i).as_str().unwrap_or_default().to_string();
                (text(0), text(1))
            })
            .collect()
    }

    /// A real key press, so the form's implicit submission is what sends.
    fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            let text = if kind == "keyDown" {
                r#","text":"\r""#
            } else {
                ""
            };
            self.call(
                "Input.dispatchKeyEvent",
                &format!(
                    r#"{{"type":"{kind}","key":"Enter","code":"Enter","windowsVirtualKeyCode":13{text}}}"#
                ),
            );
        }
    }

    fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", r#"{"format":"png"}"#);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.get("data").as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// A JSON string literal (also a valid JavaScript string literal).
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Just enough JSON to read CDP replies (the test crate has no JSON library).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

impl Json {
    fn parse(text: &str) -> Json {
        let mut parser = JsonParser {
            bytes: text.as_bytes(),
            pos: 0,
        };
        let value = parser.value();
        parser.skip_space();
        assert_eq!(parser.pos, text.len(), "trailing bytes after JSON: {text}");
        value
    }

    /// The member `key` of an object; `Null` when absent.
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(members) => members
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }

    /// The element `i` of an array; `Null` when absent.
    fn at(&self, i: usize) -> &Json {
        match self {
            Json::Arr(items) => items.get(i).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl JsonParser<'_> {
    fn value(&mut self) -> Json {
        self.skip_space();
        match self.peek() {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => Json::Str(self.string()),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'n' => self.literal("null", Json::Null),
            _ => self.number(),
        }
    }

    fn object(&mut self) -> Json {
        let mut members = Vec::new();
        self.expect(b'{');
        self.skip_space();
        if self.peek() == b'}' {
            self.pos += 1;
            return Json::Obj(members);
        }
        loop {
            self.skip_space();
            let key = self.string();
            self.skip_space();
            self.expect(b':');
            members.push((key, self.value()));
            self.skip_space();
            match self.next() {
                b',' => {}
                b'}' => return Json::Obj(members),
                other => panic!("expected ',' or '}}' in JSON, found {:?}", other as char),
            }
        }
    }

    fn array(&mut self) -> Json {
        let mut items = Vec::new();
        self.expect(b'[');
        self.skip_space();
        if self.peek() == b']' {
            self.pos += 1;
            return Json::Arr(items);
        }
        loop {
            items.push(self.value());
            self.skip_space();
            match self.next() {
                b',' => {}
                b']' => return Json::Arr(items),
                other => panic!("expected ',' or ']' in JSON, found {:?}", other as char),
            }
        }
    }

    fn string(&mut self) -> String {
        self.expect(b'"');
        let mut out = Vec::new();
        loop {
            match self.next() {
                b'"' => return String::from_utf8(out).expect("UTF-8 in a JSON string"),
                b'\\' => {
                    let c = match self.next() {
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => self.unicode_escape(),
                        other => char::from(other),
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                byte => out.push(byte),
            }
        }
    }

    /// The character of a `\uXXXX` escape, joining a surrogate pair.
    fn unicode_escape(&mut self) -> char {
        let high = self.hex4();
        let code = if (0xD800..0xDC00).contains(&high) {
            self.expect(b'\\');
            self.expect(b'u');
            let low = self.hex4();
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    fn hex4(&mut self) -> u32 {
        let digits = std::str::from_utf8(&self.bytes[self.pos..self.pos + 4]).expect("hex digits");
        self.pos += 4;
        u32::from_str_radix(digits, 16).expect("hex digits")
    }

    fn number(&mut self) -> Json {
        let start = self.pos;
        while self.pos < self.bytes.len() && b"+-0123456789.eE".contains(&self.bytes[self.pos]) {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap();
        Json::Num(
            text.parse()
                .unwrap_or_else(|_| panic!("bad JSON number at byte {start}")),
        )
    }

    fn literal(&mut self, word: &str, value: Json) -> Json {
        assert!(
            self.bytes[self.pos..].starts_with(word.as_bytes()),
            "bad JSON at byte {}",
            self.pos
        );
        self.pos += word.len();
        value
    }

    fn skip_space(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> u8 {
        *self.bytes.get(self.pos).expect("JSON ended early")
    }

    fn next(&mut self) -> u8 {
        let byte = self.peek();
        self.pos += 1;
        byte
    }

    fn expect(&mut self, byte: u8) {
        let found = self.next();
        assert_eq!(
            found,
            byte,
            "expected {:?} at byte {} of JSON",
            byte as char,
            self.pos - 1
        );
    }
}

#[test]
fn json_reads_what_cdp_sends() {
    fn check(text: &str, expected: Json) {
        assert_eq!(Json::parse(text), expected, "{text}");
    }
    let s = |v: &str| Json::Str(v.to_string());
    check(" null ", Json::Null);
    check(
        "[true,false,-1.5e2]",
        Json::Arr(vec![Json::Bool(true), Json::Bool(false), Json::Num(-150.0)]),
    );
    check(r#""a\"\\\n\u00e9\ud83d\ude00✓""#, s("a\"\\\né😀✓"));
    check(
        r#"{"id":3,"result":{"value":[]},"x":{}}"#,
        Json::Obj(vec![
            ("id".into(), Json::Num(3.0)),
            (
                "result".into(),
                Json::Obj(vec![("value".into(), Json::Arr(vec![]))]),
            ),
            ("x".into(), Json::Obj(vec![])),
        ]),
    );
    assert_eq!(Json::parse(r#"{"a":{"b":"c"}}"#).get("a").get("b"), &s("c"));
    assert_eq!(Json::parse(r#"{"a":1}"#).get("missing"), &Json::Null);
    assert_eq!(json_str("q\"\\\n✓"), r#""q\"\\\u000a✓""#);
}
