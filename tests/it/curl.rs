//! The `curl` command-line client against the real server: what users will actually run.

use std::process::{Command, Output};

use crate::harness::{get, patterned, Root, Server};

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

fn url(server: &Server, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", server.port())
}

#[test]
fn a_large_download_is_byte_exact() {
    let root = Root::new();
    let body = patterned(3 * 1024 * 1024 + 17);
    root.write("big.bin", &body);
    let server = Server::start(&root);
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("big.bin");
    curl(&[
        "-sS",
        "-o",
        file.to_str().unwrap(),
        &url(&server, "/big.bin"),
    ]);
    let got = std::fs::read(&file).unwrap();
    assert_eq!(got.len(), body.len());
    assert!(got == body, "downloaded file differs");
}

#[test]
fn two_urls_reuse_one_connection() {
    let root = Root::new();
    let server = Server::start(&root);
    let hello = url(&server, "/hello.txt");
    let out = curl(&["-sSv", &hello, &hello]);
    assert_eq!(out.stdout, b"hello, world\nhello, world\n");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("left intact"), "{log}");
    assert!(log.contains("Re-using existing"), "{log}");
    assert_eq!(log.matches("Connected to").count(), 1, "{log}");
}

#[test]
fn a_byte_range_gives_ten_bytes() {
    let root = Root::new();
    root.write("digits.txt", b"0123456789abcdef");
    let server = Server::start(&root);
    let out = curl(&["-sS", "-r", "0-9", &url(&server, "/digits.txt")]);
    assert_eq!(out.stdout, b"0123456789");
}

#[test]
fn head_gives_the_headers_only() {
    let root = Root::new();
    let server = Server::start(&root);
    let out = curl(&["-sS", "-I", &url(&server, "/hello.txt")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nContent-Length: 13\r\n"), "{text}");
    assert!(
        text.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n"), "a body followed: {text}");
}

#[test]
fn a_time_condition_on_an_unchanged_file_gives_304_and_no_body() {
    let root = Root::new();
    let server = Server::start(&root);
    let first = get(server.port(), "/hello.txt", "");
    let date = first.header("Last-Modified").expect("Last-Modified");
    let out = curl(&[
        "-sS",
        "-z",
        date,
        "-w",
        "%{http_code}",
        &url(&server, "/hello.txt"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "304");
}

#[test]
fn http_1_0_works() {
    let root = Root::new();
    let server = Server::start(&root);
    let out = curl(&["-sSv", "--http1.0", &url(&server, "/hello.txt")]);
    assert_eq!(out.stdout, b"hello, world\n");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("> GET /hello.txt HTTP/1.0"), "{log}");
}

/// A site precompressed the way its owner would (`gzip -k`, `brotli -k`, `zstd -k`) and served
/// with `--precompressed br,zstd,gzip`: curl decodes each coding to the original bytes, and
/// every response names its coding, says `Vary: Accept-Encoding` and has an ETag of its own.
#[test]
fn precompressed_siblings_are_decoded_by_curl() {
    let root = Root::new();
    let script: Vec<u8> = (0..400)
        .flat_map(|i| format!("console.log('line {i} of a script');\n").into_bytes())
        .collect();
    let app = root.write("app.js", &script);
    for tool in [
        &["gzip", "-k", "-9"][..],
        &["brotli", "-k"],
        &["zstd", "-q", "-k"],
    ] {
        let status = Command::new(tool[0])
            .args(&tool[1..])
            .arg(&app)
            .status()
            .unwrap_or_else(|e| panic!("running {} (it must be installed): {e}", tool[0]));
        assert!(status.success(), "{tool:?}");
    }
    let server = Server::start_with_flags(&root, &["--precompressed", "br,zstd,gzip"]);
    let app_url = url(&server, "/app.js");
    let mut etags = Vec::new();
    for (accept, coding) in [
        ("br", Some("br")),
        ("gzip, zstd", Some("zstd")),
        ("gzip;q=1, br;q=0.5", Some("gzip")),
        ("identity", None),
    ] {
        let out = curl(&[
            "-sS",
            "-D",
            "/dev/stderr",
            "--compressed",
            "-H",
            &format!("Accept-Encoding: {accept}"),
            &app_url,
        ]);
        let head = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(out.stdout == script, "{accept}: the body differs\n{head}");
        let named = head
            .lines()
            .find_map(|l| l.strip_prefix("content-encoding: "))
            .map(str::trim);
        assert_eq!(named, coding, "{accept}\n{head}");
        assert!(head.contains("vary: accept-encoding"), "{head}");
        assert!(head.contains("content-type: text/javascript"), "{head}");
        let etag = head.lines().find_map(|l| l.strip_prefix("etag: "));
        etags.push(etag.map(|t| t.trim().to_owned()));
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), 4, "an ETag per representation: {etags:?}");

    // A range is a range of the gzip file, and a conditional GET matches the gzip ETag only.
    let gz = std::fs::read(root.path().join("app.js.gz")).expect("the .gz file");
    let out = curl(&["-sS", "-H", "Accept-Encoding: gzip", "-r", "0-9", &app_url]);
    assert_eq!(out.stdout, gz[..10]);
    let gzip_tag = etags
        .iter()
        .flatten()
        .find(|t| t.ends_with("-gzip\""))
        .expect("the gzip ETag");
    let status = |fields: &[&str]| {
        let mut args = vec!["-sS", "-o", "/dev/null", "-w", "%{http_code}"];
        for field in fields {
            args.extend(["-H", field]);
        }
        args.push(&app_url);
        String::from_utf8_lossy(&curl(&args).stdout).into_owned()
    };
    let if_none_match = format!("If-None-Match: {gzip_tag}");
    assert_eq!(status(&["Accept-Encoding: gzip", &if_none_match]), "304");
    assert_eq!(status(&["Accept-Encoding: br", &if_none_match]), "200");
}

/// `[[headers]]` in the config file: long caching for hashed assets, a security header
/// everywhere, and HTML's default `Cache-Control: no-cache` kept where no rule replaces it;
/// a 304 carries the same Cache-Control as the 200 it stands for.
#[test]
fn header_rules_from_the_config_file_reach_curl() {
    let root = Root::new();
    root.write("index.html", b"<p>home</p>");
    root.write("assets/app.3f2a.js", b"console.log(1);");
    root.write("robots.txt", b"User-agent: *\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("percore.toml");
    std::fs::write(
        &config,
        "[[headers]]\n\
         path = \"/**\"\n\
         set = { X-Content-Type-Options = \"nosniff\" }\n\
         [[headers]]\n\
         path = \"/assets/**\"\n\
         set = { Cache-Control = \"public, max-age=31536000, immutable\" }\n",
    )
    .unwrap();
    let server = Server::start_with_flags(&root, &["--config", config.to_str().unwrap()]);
    let head = |path: &str, fields: &[&str]| {
        let mut args = vec!["-sS", "-o", "/dev/null", "-D", "-"];
        for field in fields {
            args.extend(["-H", field]);
        }
        let url = url(&server, path);
        args.push(&url);
        String::from_utf8_lossy(&curl(&args).stdout).to_lowercase()
    };
    let asset = head("/assets/app.3f2a.js", &[]);
    assert!(
        asset.contains("cache-control: public, max-age=31536000, immutable\r\n"),
        "{asset}"
    );
    assert!(
        asset.contains("x-content-type-options: nosniff\r\n"),
        "{asset}"
    );
    let page = head("/", &[]);
    assert!(page.contains("cache-control: no-cache\r\n"), "{page}");
    assert!(
        page.contains("x-content-type-options: nosniff\r\n"),
        "{page}"
    );
    let text = head("/robots.txt", &[]);
    assert!(!text.contains("cache-control"), "{text}");
    let etag = asset
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an ETag")
        .trim()
        .to_owned();
    let revalidated = head("/assets/app.3f2a.js", &[&format!("If-None-Match: {etag}")]);
    assert!(revalidated.starts_with("http/1.1 304"), "{revalidated}");
    assert!(
        revalidated.contains("cache-control: public, max-age=31536000, immutable\r\n"),
        "{revalidated}"
    );
}

/// A single-page app as its users deploy it: client-side routes get the app shell with 200,
/// a missing asset gets the site's own 404 page, and a type the built-in table lacks is set
/// from the command line.
#[test]
fn a_single_page_app_with_its_own_error_page_and_types() {
    let root = Root::new();
    root.write("index.html", b"<div id=app></div>");
    root.write("errors/404.html", b"<h1>Lost?</h1>");
    root.write("scene.gltf", b"{\"asset\":{}}");
    let server = Server::start_with_flags(
        &root,
        &[
            "--spa-fallback",
            "/index.html",
            "--error-pages",
            "404=/errors/404.html",
            "--mime-types",
            "gltf=model/gltf+json",
        ],
    );
    let fetch = |path: &str| {
        let out = curl(&["-sS", "-D", "/dev/stderr", &url(&server, path)]);
        let head = String::from_utf8_lossy(&out.stderr).to_lowercase();
        (head, out.stdout)
    };
    let (head, body) = fetch("/account/settings");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"<div id=app></div>");
    let (head, body) = fetch("/static/missing.js");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert_eq!(body, b"<h1>Lost?</h1>");
    let (head, _) = fetch("/scene.gltf");
    assert!(head.contains("content-type: model/gltf+json\r\n"), "{head}");
}

/// `--autoindex` lists a directory without an index for curl (HTML) and for a program (JSON,
/// parsed by Python's json module), with hostile names escaped in both.
#[test]
fn autoindex_lists_hostile_names_as_html_and_json() {
    use std::os::unix::ffi::OsStrExt;
    let root = Root::new();
    let names: [&[u8]; 4] = [
        b"<b onclick=x>",
        b"a \"quoted\" name",
        b"tab\tand\nnewline",
        b"ok.txt",
    ];
    for name in names {
        let file = std::ffi::OsStr::from_bytes(name);
        root.write(&format!("shared/{}", file.to_string_lossy()), b"data");
    }
    root.write("shared/sub/inner.txt", b"inner");
    let server = Server::start_with_flags(&root, &["--autoindex"]);
    let html = curl(&["-sS", &url(&server, "/shared/")]).stdout;
    let html = String::from_utf8(html).expect("UTF-8");
    assert!(html.contains("&lt;b onclick=x&gt;"), "{html}");
    assert!(html.contains("a &quot;quoted&quot; name"), "{html}");
    assert!(html.contains("tab&#9;and&#10;newline"), "{html}");
    assert!(html.contains("<a href=\"./sub/\">sub/</a>"), "{html}");
    assert!(!html.contains("<b>"), "{html}");

    let json = curl(&[
        "-sS",
        "-H",
        "Accept: application/json",
        &url(&server, "/shared/"),
    ])
    .stdout;
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import json, sys; d = json.load(sys.stdin); \
             print(json.dumps([(e['name'], e['type'], e['href']) for e in d['entries']]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(&json)?;
            child.wait_with_output()
        })
        .expect("python3");
    assert!(
        parsed.status.success(),
        "not JSON: {}",
        String::from_utf8_lossy(&json)
    );
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout).trim(),
        r#"[["sub", "directory", "sub/"], ["<b onclick=x>", "file", "%3Cb%20onclick%3Dx%3E"], ["a \"quoted\" name", "file", "a%20%22quoted%22%20name"], ["ok.txt", "file", "ok.txt"], ["tab\tand\nnewline", "file", "tab%09and%0Anewline"]]"#
    );
}

/// Compression on the fly, once, with the defaults: curl --compressed gets a 6 KiB page as
/// Brotli (its first choice among what percore makes), decodes it to the original, and a plain
/// request gets the page as it is.
#[test]
fn text_is_compressed_for_curl_by_default() {
    let root = Root::new();
    let page: Vec<u8> = (0..150)
        .flat_map(|i| format!("<p>paragraph {i} of a page</p>\n").into_bytes())
        .collect();
    root.write("page.html", &page);
    let server = Server::start(&root);
    let page_url = url(&server, "/page.html");
    for (accept, coding) in [("br", "br"), ("gzip", "gzip")] {
        let out = curl(&[
            "-sS",
            "-D",
            "/dev/stderr",
            "--compressed",
            "-H",
            &format!("Accept-Encoding: {accept}"),
            &page_url,
        ]);
        let head = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            head.contains(&format!("content-encoding: {coding}\r\n")),
            "{head}"
        );
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|l| l.trim().parse().ok())
            .expect("a Content-Length");
        assert!(
            length < page.len() / 4,
            "{coding}: {length} bytes on the wire"
        );
        assert!(out.stdout == page, "{coding}: the decoded page differs");
    }
    let plain = curl(&["-sS", "-D", "/dev/stderr", &page_url]);
    let head = String::from_utf8_lossy(&plain.stderr).to_lowercase();
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    assert_eq!(plain.stdout, page);
}
