//! HTTPS and WSS against the real server: certificates made here (a test CA and a server
//! certificate for localhost and 127.0.0.1), real clients (curl, openssl s_client, rustls,
//! tungstenite over rustls), and clients that send what no TLS client should.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use tungstenite::Message;

use crate::harness::tls::{start, tls_port, TlsFiles};
use crate::harness::{
    bin, connect, get, parse_all, patterned, read_response, read_until_closed, Options, Root,
    Server,
};

/// Generous: the timeouts under test are 1 s, and the machine may be busy.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

fn curl(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["--max-time", "30"])
        .args(args)
        .output()
        .expect("running curl (it must be installed)");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn curl_fetches_small_and_large_files_over_tls_1_2_and_1_3() {
    let root = Root::new();
    // Above --small-file-max (64 KiB): read from the file in chunks and encrypted.
    let big = patterned(3 * 1024 * 1024 + 17);
    root.write("big.bin", &big);
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &[]);
    let ca = tls.path(&tls.ca);
    let out_dir = tempfile::tempdir().unwrap();
    let saved = out_dir.path().join("big.bin");
    let saved_arg = saved.to_str().unwrap();
    for (versions, protocol) in [
        (&["--tlsv1.2", "--tls-max", "1.2"][..], "TLSv1.2"),
        (&["--tlsv1.3"][..], "TLSv1.3"),
    ] {
        let small = format!("https://localhost:{}/hello.txt", tls_port(&server));
        let large = format!("https://127.0.0.1:{}/big.bin", tls_port(&server));
        let resolve = format!("localhost:{}:127.0.0.1", tls_port(&server));
        let mut args = vec!["-sSv", "--cacert", &ca, "--resolve", &resolve];
        args.extend_from_slice(versions);
        let out = curl(&[&args[..], &[small.as_str()]].concat());
        assert_eq!(out.stdout, b"hello, world\n");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains(&format!("SSL connection using {protocol}")),
            "{log}"
        );
        assert!(log.contains("ALPN: server accepted http/1.1"), "{log}");
        curl(&[&args[..], &["-o", saved_arg, large.as_str()]].concat());
        let got = std::fs::read(&saved).unwrap();
        assert_eq!(got.len(), big.len(), "{protocol}");
        assert!(got == big, "{protocol}: the downloaded file differs");
    }
    // The plain port of the same server still speaks plain HTTP.
    let resp = get(server.ports[0], "/hello.txt", "");
    assert_eq!((resp.status, &resp.body[..]), (200, &b"hello, world\n"[..]));
}

#[test]
fn curl_reuses_one_tls_connection_for_several_requests() {
    let root = Root::new();
    root.write("big.bin", &patterned(200 * 1024));
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &[]);
    let ca = tls.path(&tls.ca);
    let base = format!("https://127.0.0.1:{}", tls_port(&server));
    let (hello, big) = (format!("{base}/hello.txt"), format!("{base}/big.bin"));
    // curl gives the -o options to the URLs in order: one file each.
    let out_dir = tempfile::tempdir().unwrap();
    let saved: Vec<String> = (0..4)
        .map(|i| out_dir.path().join(i.to_string()).display().to_string())
        .collect();
    let mut args = vec!["-sSv", "--cacert", &ca];
    for (file, url) in saved.iter().zip([&hello, &hello, &big, &hello]) {
        args.extend(["-o", file, url]);
    }
    let out = curl(&args);
    for (i, file) in saved.iter().enumerate() {
        let got = std::fs::read(file).unwrap();
        let expected = match i {
            2 => patterned(200 * 1024),
            _ => b"hello, world\n".to_vec(),
        };
        assert!(got == expected, "response {i} differs");
    }
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("Connected to").count(), 1, "{log}");
    assert_eq!(log.matches("Re-using existing").count(), 3, "{log}");
}

#[test]
fn keep_alive_and_pipelining_over_one_tls_connection() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &[]);
    let mut stream = tls.connect(tls_port(&server));
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    for _ in 0..3 {
        stream
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut stream, false);
        assert_eq!((resp.status, &resp.body[..]), (200, &b"hello, world\n"[..]));
    }
    // Two requests in one record, then one that closes: three answers, then close_notify.
    stream
        .write_all(
            b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\nHEAD /index.html HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /missing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let first = read_response(&mut stream, false);
    assert_eq!(
        (first.status, &first.body[..]),
        (200, &b"hello, world\n"[..])
    );
    let head = read_response(&mut stream, true);
    assert_eq!(head.status, 200);
    assert!(head.header("Content-Length").is_some());
    let last = read_response(&mut stream, false);
    assert_eq!(last.status, 404);
    assert_eq!(last.header("Connection"), Some("close"));
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("the server ends the TLS stream with close_notify");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn openssl_s_client_negotiates_http_1_1_with_an_ip_address_as_sni() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &[]);
    let ca = tls.path(&tls.ca);
    for (version, name) in [("-tls1_3", "localhost"), ("-tls1_2", "127.0.0.1")] {
        // wrk sends an IP address as SNI: rustls accepts it from 0.23.5 on.
        let text = s_client(
            tls_port(&server),
            &ca,
            &[version, "-alpn", "http/1.1", "-servername", name],
        );
        assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
        assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
        let expected_version = if version == "-tls1_3" {
            "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"
        } else {
            "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"
        };
        assert!(text.contains(expected_version), "{text}");
        assert!(text.contains("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\n\r\nhello, world\n"), "{text}");
    }
}

#[test]
fn an_rsa_certificate_serves_too() {
    let root = Root::new();
    let tls = TlsFiles::with(&rcgen::PKCS_RSA_SHA256);
    let server = start(&root, &tls, &[]);
    let ca = tls.path(&tls.ca);
    let url = format!("https://127.0.0.1:{}/hello.txt", tls_port(&server));
    for versions in [&["--tlsv1.2", "--tls-max", "1.2"][..], &["--tlsv1.3"][..]] {
        let out = curl(&[&["-sSv", "--cacert", &ca][..], versions, &[&url]].concat());
        assert_eq!(out.stdout, b"hello, world\n");
    }
    let out = curl(&[
        "-sSv",
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "--cacert",
        &ca,
        &url,
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("ECDHE-RSA-AES128-GCM-SHA256"), "{log}");
}

#[test]
fn a_websocket_over_tls_echoes_small_and_large_messages() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &[]);
    let port = tls_port(&server);
    let url = format!("wss://localhost:{port}/ws");
    let (mut ws, response) = tungstenite::client(url, tls.connect(port)).expect("handshake");
    assert_eq!(response.status(), 101);
    ws.send(Message::Text("héllo over TLS".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("héllo over TLS".into()));
    // Larger than a TLS record and than the server's read and write chunks.
    let large = patterned(3 * 1024 * 1024 + 5);
    ws.send(Message::Binary(large.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(echo) => assert!(echo == large, "the large echo differs"),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Ok(other) => panic!("after close: {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("closing: {e}"),
        }
    }
}

#[test]
fn a_stalled_tls_reader_gets_its_whole_file_and_holds_up_nobody() {
    let root = Root::new();
    let body = patterned(10 * 1024 * 1024);
    root.write("big.bin", &body);
    let tls = TlsFiles::new();
    // One worker: the stalled connection and the others share one event loop.
    let server = start(&root, &tls, &[]);
    let port = tls_port(&server);
    let mut stalled = tls.connect(port);
    stalled
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Let the server fill the socket buffers and hit back-pressure.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let mut other = tls.connect(port);
        other
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut other, false);
        assert_eq!((resp.status, &resp.body[..]), (200, &b"hello, world\n"[..]));
    }
    let resp = read_response(&mut stalled, false);
    assert_eq!(resp.status, 200);
    assert!(resp.body == body, "10 MiB body differs");
    // The connection is still usable after the file.
    stalled
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stalled, false).body, b"hello, world\n");
}

#[test]
fn plain_http_to_the_tls_port_gets_400_and_a_close() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &[]);
    let mut stream = connect(tls_port(&server));
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let bytes = read_until_closed(&mut stream, CLOSE_LIMIT);
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 1, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(all[0].status, 400);
    assert_eq!(all[0].header("Connection"), Some("close"));
    let page = String::from_utf8_lossy(&all[0].body);
    assert!(
        page.contains("The plain HTTP request was sent to HTTPS port"),
        "{page}"
    );
    // curl says so too, and the TLS port keeps serving TLS.
    let url = format!("http://127.0.0.1:{}/hello.txt", tls_port(&server));
    let out = curl(&["-sS", "-w", "%{http_code}", "-o", "/dev/null", &url]);
    assert_eq!(out.stdout, b"400");
    let mut ok = tls.connect(tls_port(&server));
    ok.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut ok, false).status, 200);
}

#[test]
fn garbage_instead_of_a_client_hello_is_closed_and_the_server_serves_on() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &[]);
    let garbage: [&[u8]; 3] = [
        // Not a TLS record at all (nor a plausible HTTP method).
        &[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        // A handshake record header with a body that is no ClientHello.
        b"\x16\x03\x01\x00\x08\xff\xff\xff\xff\xff\xff\xff\xff",
        // A lowercase "request": not HTTP either.
        b"get / http/1.1\r\n\r\n",
    ];
    for bytes in garbage {
        let mut stream = connect(tls_port(&server));
        stream.write_all(bytes).unwrap();
        let started = Instant::now();
        let answer = read_until_closed(&mut stream, CLOSE_LIMIT);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed only after {:?}",
            started.elapsed()
        );
        // Nothing, or one TLS alert record saying why.
        assert!(
            answer.is_empty() || answer.starts_with(&[0x15, 0x03]),
            "{bytes:?} got {answer:?}"
        );
    }
    let mut ok = tls.connect(tls_port(&server));
    ok.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut ok, false).status, 200);
}

/// The first flight of a real TLS client (its ClientHello).
fn client_hello(tls: &TlsFiles) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(tls.client_config(), name).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    assert!(hello.len() > 100 && hello[0] == 0x16, "{hello:?}");
    hello
}

#[test]
fn a_handshake_that_stalls_is_closed_at_the_header_timeout() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &["--header-timeout", "1s"]);
    let hello = client_hello(&tls);
    // Half a ClientHello; then the whole of one and nothing after the server's answer.
    for sent in [&hello[..hello.len() / 2], &hello[..]] {
        let mut stream = connect(tls_port(&server));
        let started = Instant::now();
        stream.write_all(sent).unwrap();
        let answer = read_until_closed(&mut stream, CLOSE_LIMIT);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "closed after {waited:?}, before the header timeout"
        );
        if sent.len() == hello.len() {
            // The server answered the hello (ServerHello in a handshake record) and waited.
            assert!(answer.starts_with(&[0x16, 0x03]), "{answer:?}");
        } else {
            assert!(answer.is_empty(), "{answer:?}");
        }
    }
}

#[test]
fn a_bad_certificate_or_key_stops_the_start_with_one_line() {
    let tls = TlsFiles::new();
    let other = TlsFiles::new();
    let root = Root::new();
    let missing = tls.dir.path().join("missing.pem");
    let cases = [
        (
            tls.path(&missing),
            tls.path(&tls.key),
            format!("cannot read the TLS certificate {}", missing.display()),
        ),
        (
            tls.path(&tls.cert),
            tls.path(&other.key),
            format!(
                "the TLS key {} does not match the certificate {}",
                other.key.display(),
                tls.cert.display()
            ),
        ),
        (
            tls.path(&tls.cert),
            tls.path(&tls.cert),
            format!("the TLS key {} holds no private key", tls.cert.display()),
        ),
    ];
    for (cert, key, needle) in cases {
        for check in [false, true] {
            let mut cmd = Command::new(bin());
            cmd.args(["--bind", "127.0.0.1", "--ports", "1", "--tls-ports", "1"])
                .args(["--admin", "off", "--root"])
                .arg(root.path())
                .args(["--tls-cert", &cert, "--tls-key", &key]);
            if check {
                cmd.arg("--check-config");
            }
            let out = cmd.output().expect("running percore");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.starts_with("percore: "), "{err}");
            assert!(err.contains(&needle), "expected {needle:?} in {err}");
        }
    }
}

#[test]
fn keys_in_the_traditional_pem_forms_load() {
    let root = Root::new();
    for (tls, convert) in [
        (TlsFiles::new(), &["ec"][..]),
        (
            TlsFiles::with(&rcgen::PKCS_RSA_SHA256),
            &["rsa", "-traditional"][..],
        ),
    ] {
        let traditional = tls.dir.path().join("traditional.pem");
        let status = Command::new("openssl")
            .args(convert)
            .arg("-in")
            .arg(&tls.key)
            .arg("-out")
            .arg(&traditional)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running openssl");
        assert!(status.success());
        let pem = std::fs::read_to_string(&traditional).unwrap();
        assert!(
            pem.starts_with("-----BEGIN EC PRIVATE KEY-----")
                || pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
            "{pem}"
        );
        let out = Command::new(bin())
            .args([
                "--ports",
                "1",
                "--tls-ports",
                "1",
                "--check-config",
                "--root",
            ])
            .arg(root.path())
            .args(["--tls-cert", &tls.path(&tls.cert), "--tls-key"])
            .arg(&traditional)
            .output()
            .expect("running percore");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.contains("TLS on 1"), "{text}");
    }
}

/// The raw bytes a client sees when it connects to the plain port of a TLS server: plain HTTP.
#[test]
fn the_plain_port_beside_a_tls_port_never_speaks_tls() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &[]);
    let mut stream: TcpStream = connect(server.ports[0]);
    stream.write_all(&client_hello(&tls)).unwrap();
    // The plain port takes the hello for a malformed request: 400, in plain HTTP.
    let bytes = read_until_closed(&mut stream, CLOSE_LIMIT);
    assert!(bytes.starts_with(b"HTTP/1.1 400 "), "{bytes:?}");
}

/// A TLS 1.3 handshake ends with the client's Finished, which nothing of the server's answers
/// (no session tickets yet). A client with Nagle on (the default; Python's ssl, this rustls
/// client) holds its first request until that Finished is acknowledged, and Linux delays the
/// ACK by 40 ms unless the server asks for it at once: 40 ms more for every new connection.
#[test]
fn the_first_request_after_a_tls_1_3_handshake_does_not_wait_for_a_delayed_ack() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &[]);
    let mut waits: Vec<Duration> = (0..11)
        .map(|_| {
            let mut stream = tls.connect(tls_port(&server));
            assert!(
                !stream.sock.nodelay().unwrap(),
                "Nagle must be on for this test"
            );
            assert_eq!(
                stream.conn.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            let started = Instant::now();
            stream
                .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(&mut stream, false).status, 200);
            started.elapsed()
        })
        .collect();
    waits.sort();
    assert!(
        waits[5] < Duration::from_millis(25),
        "median {:?} (all: {waits:?})",
        waits[5]
    );
}

/// A renewed certificate (new files at the same paths, as an ACME client writes them) is served
/// to new connections after SIGHUP; a renewal that fails to load (a key that does not match)
/// is refused and the certificate before it goes on being served.
#[test]
fn sighup_serves_a_renewed_certificate_and_refuses_a_broken_one() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let server = start(&root, &tls, &[]);
    let port = tls_port(&server);
    let get_over = |files: &TlsFiles| {
        let mut stream = files.connect(port);
        stream
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send the request");
        let mut reply = Vec::new();
        // The server closes without close_notify only on error; a clean close ends in EOF.
        let _ = stream.read_to_end(&mut reply);
        parse_all(&reply)
    };
    assert_eq!(get_over(&tls)[0].status, 200);

    let renewed = TlsFiles::new();
    std::fs::copy(&renewed.cert, &tls.cert).expect("renew the chain");
    std::fs::copy(&renewed.key, &tls.key).expect("renew the key");
    server.signal("HUP");
    server.wait_for_log("SIGHUP: generation 1 serving", Duration::from_secs(10));
    assert_eq!(get_over(&renewed)[0].status, 200);
    // The old CA no longer verifies what the server presents.
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut old = ClientConnection::new(tls.client_config(), name).expect("a TLS client");
    let mut sock = connect(port);
    let mut verified = true;
    while old.is_handshaking() {
        if old.complete_io(&mut sock).is_err() {
            verified = false;
            break;
        }
    }
    assert!(
        !verified,
        "the client trusting only the old CA still verified the server"
    );

    // A key from elsewhere: the reload is refused and the renewed certificate stays.
    let stranger = TlsFiles::new();
    std::fs::copy(&stranger.key, &tls.key).expect("break the key");
    server.signal("HUP");
    server.wait_for_log(
        "SIGHUP: configuration not reloaded, still running as before",
        Duration::from_secs(10),
    );
    assert!(
        server.log().contains("does not match the certificate"),
        "{}",
        server.log()
    );
    assert_eq!(get_over(&renewed)[0].status, 200);
}

/// One `openssl s_client` exchange on `port`, verifying against `ca`, with `args` (version,
/// SNI, ALPN, session file…): a GET with Connection: close; its stdout once the server has
/// closed and s_client has exited.
fn s_client(port: u16, ca: &str, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-ign_eof",
            "-verify_return_error",
            "-CAfile",
            ca,
        ])
        .args(args)
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running openssl (it must be installed)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    // The server closes after its answer; s_client then exits.
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < CLOSE_LIMIT, "s_client still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sum over workers of the metric lines that start with `prefix` (name and labels but
/// the worker's).
fn summed(metrics: &str, name: &str, labels: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A session ticket from one connection resumes the next, over TLS 1.3 and 1.2, whichever
/// worker each lands on (the ticket keys are shared); /metrics counts full and resumed
/// handshakes by version, and failed ones by reason.
#[test]
fn openssl_resumes_a_session_by_ticket_and_metrics_count_handshakes() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let flags = tls.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_with(
        &root,
        Options {
            ports: 2,
            tls_ports: 1,
            workers: 2,
            admin: true,
            extra: &flags,
            ..Options::default()
        },
    );
    let port = tls_port(&server);
    let ca = tls.path(&tls.ca);
    let dir = tempfile::tempdir().unwrap();
    for (version, name) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let session = dir.path().join(format!("{name}.pem"));
        let session = session.to_str().expect("a UTF-8 temp path");
        let first = s_client(
            port,
            &ca,
            &[version, "-servername", "localhost", "-sess_out", session],
        );
        assert!(first.contains(&format!("New, {name}")), "{first}");
        assert!(first.contains("hello, world"), "{first}");
        // Several resumptions: with two workers, at least one lands on the other worker.
        for _ in 0..4 {
            let again = s_client(
                port,
                &ca,
                &[version, "-servername", "localhost", "-sess_in", session],
            );
            assert!(again.contains(&format!("Reused, {name}")), "{again}");
            assert!(again.contains("hello, world"), "{again}");
        }
    }
    // Two that fail: plain HTTP, and garbage.
    let mut plain = connect(port);
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_until_closed(&mut plain, CLOSE_LIMIT);
    let mut garbage = connect(port);
    garbage
        .write_all(b"\x16\x03\x01\x00\x08\xff\xff\xff\xff\xff\xff\xff\xff")
        .unwrap();
    read_until_closed(&mut garbage, CLOSE_LIMIT);

    let name = "percore_tls_handshakes_total";
    let expected = [
        ("version=\"1.3\",kind=\"full\"", 1),
        ("version=\"1.3\",kind=\"resumed\"", 4),
        ("version=\"1.2\",kind=\"full\"", 1),
        ("version=\"1.2\",kind=\"resumed\"", 4),
    ];
    let failures = "percore_tls_handshake_failures_total";
    let started = Instant::now();
    loop {
        let metrics = server.metrics();
        let counted: Vec<u64> = expected
            .iter()
            .map(|(labels, _)| summed(&metrics, name, labels))
            .collect();
        let failed = (
            summed(&metrics, failures, "reason=\"plain_http\""),
            summed(&metrics, failures, "reason=\"malformed\""),
        );
        if counted == [1, 4, 1, 4] && failed == (1, 1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "handshakes {counted:?}, failures {failed:?}:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server certificate `openssl s_client` was shown for SNI `name` (none: no SNI), as PEM.
fn presented(port: u16, name: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match name {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running openssl (it must be installed)");
    let text = String::from_utf8_lossy(&out.stdout);
    let begin = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate shown");
    let end = text.find("-----END CERTIFICATE-----").expect("its end") + 25;
    text[begin..end].to_owned()
}

/// `[[tls_certificates]]`: each name gets its own certificate by SNI (a wildcard name covers
/// one label), any other name or none the default one; a SIGHUP that swaps one certificate's
/// file serves the new one.
#[test]
fn sni_chooses_the_certificate_and_unknown_names_get_the_default() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let (a_cert, a_key, a_pem) = tls.another("a", &["a.test"]);
    let (b_cert, b_key, b_pem) = tls.another("b", &["*.b.test"]);
    let config = tls.dir.path().join("percore.toml");
    let table = |cert: &Path, key: &Path, names: &str| {
        format!(
            "[[tls_certificates]]\nnames = [{names}]\ncert = '{}'\nkey = '{}'\n",
            cert.display(),
            key.display()
        )
    };
    std::fs::write(
        &config,
        table(&a_cert, &a_key, "'a.test'") + &table(&b_cert, &b_key, "'*.b.test'"),
    )
    .unwrap();
    let config = tls.path(&config);
    let server = start(&root, &tls, &["--config", &config]);
    let port = tls_port(&server);
    let default_pem = std::fs::read_to_string(&tls.cert).unwrap();
    let default_leaf = &default_pem[..default_pem.find("-----END CERTIFICATE-----").unwrap() + 25];
    assert_eq!(presented(port, Some("a.test")), a_pem.trim());
    assert_eq!(presented(port, Some("A.TEST")), a_pem.trim());
    assert_eq!(presented(port, Some("www.b.test")), b_pem.trim());
    assert_eq!(presented(port, Some("x.www.b.test")), default_leaf);
    assert_eq!(presented(port, Some("localhost")), default_leaf);
    assert_eq!(presented(port, Some("unknown.test")), default_leaf);
    assert_eq!(presented(port, None), default_leaf);

    // Renewed in place: the next handshake after SIGHUP shows the new certificate.
    let (_, _, renewed) = tls.another("a", &["a.test"]);
    server.signal("HUP");
    let started = Instant::now();
    while presented(port, Some("a.test")) != renewed.trim() {
        assert!(
            started.elapsed() < CLOSE_LIMIT,
            "the renewed certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
