//! Conditional requests, ranges, path safety, dotfiles, MIME types and cache freshness.

use std::time::{Duration, Instant};

use crate::harness::{exchange, get, parse_all, patterned, Options, Response, Root, Server};

/// Sixteen bytes whose every slice is easy to read in a failure message.
const DIGITS: &[u8] = b"0123456789abcdef";

fn digits_server() -> (Root, Server) {
    let root = Root::new();
    root.write("digits.txt", DIGITS);
    let server = Server::start(&root);
    (root, server)
}

fn etag_of(server: &Server, path: &str) -> String {
    let resp = get(server.port(), path, "");
    assert_eq!(resp.status, 200);
    resp.header("ETag").expect("ETag").to_string()
}

fn last_modified_of(server: &Server, path: &str) -> String {
    let resp = get(server.port(), path, "");
    assert_eq!(resp.status, 200);
    resp.header("Last-Modified")
        .expect("Last-Modified")
        .to_string()
}

fn assert_not_modified(resp: &Response, etag: &str) {
    assert_eq!(resp.status, 304, "{resp:?}");
    assert!(resp.body.is_empty());
    assert_eq!(resp.header("ETag"), Some(etag));
}

#[test]
fn if_none_match_with_the_exact_etag_gives_304() {
    let (_root, server) = digits_server();
    let etag = etag_of(&server, "/digits.txt");
    let resp = get(
        server.port(),
        "/digits.txt",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_not_modified(&resp, &etag);
}

#[test]
fn if_none_match_with_a_list_containing_the_etag_gives_304() {
    let (_root, server) = digits_server();
    let etag = etag_of(&server, "/digits.txt");
    let resp = get(
        server.port(),
        "/digits.txt",
        &format!("If-None-Match: \"nope\", {etag}, \"other\"\r\n"),
    );
    assert_not_modified(&resp, &etag);
}

#[test]
fn if_none_match_with_the_weak_form_gives_304() {
    let (_root, server) = digits_server();
    let etag = etag_of(&server, "/digits.txt");
    let resp = get(
        server.port(),
        "/digits.txt",
        &format!("If-None-Match: W/{etag}\r\n"),
    );
    assert_not_modified(&resp, &etag);
}

#[test]
fn if_none_match_star_gives_304() {
    let (_root, server) = digits_server();
    let etag = etag_of(&server, "/digits.txt");
    let resp = get(server.port(), "/digits.txt", "If-None-Match: *\r\n");
    assert_not_modified(&resp, &etag);
}

#[test]
fn if_none_match_with_another_etag_gives_200() {
    let (_root, server) = digits_server();
    let resp = get(server.port(), "/digits.txt", "If-None-Match: \"nope\"\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, DIGITS);
}

#[test]
fn if_modified_since_equal_to_last_modified_gives_304() {
    let (_root, server) = digits_server();
    let etag = etag_of(&server, "/digits.txt");
    let date = last_modified_of(&server, "/digits.txt");
    let resp = get(
        server.port(),
        "/digits.txt",
        &format!("If-Modified-Since: {date}\r\n"),
    );
    assert_not_modified(&resp, &etag);
}

#[test]
fn a_non_matching_if_none_match_wins_over_a_matching_if_modified_since() {
    let (_root, server) = digits_server();
    let date = last_modified_of(&server, "/digits.txt");
    let resp = get(
        server.port(),
        "/digits.txt",
        &format!("If-None-Match: \"nope\"\r\nIf-Modified-Since: {date}\r\n"),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, DIGITS);
}

#[test]
fn if_match_with_another_etag_gives_412_and_with_the_etag_200() {
    let (_root, server) = digits_server();
    let resp = get(server.port(), "/digits.txt", "If-Match: \"nope\"\r\n");
    assert_eq!(resp.status, 412);
    let etag = etag_of(&server, "/digits.txt");
    let resp = get(
        server.port(),
        "/digits.txt",
        &format!("If-Match: {etag}\r\n"),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, DIGITS);
}

/// One range on the 16-byte file: 206, its Content-Range and exactly its bytes.
fn check_range(spec: &str, content_range: &str, bytes: &[u8]) {
    let (_root, server) = digits_server();
    let resp = get(
        server.port(),
        "/digits.txt",
        &format!("Range: bytes={spec}\r\n"),
    );
    assert_eq!(resp.status, 206, "Range: bytes={spec}");
    assert_eq!(resp.header("Content-Range"), Some(content_range));
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        resp.header("Content-Length"),
        Some(&*bytes.len().to_string())
    );
    assert_eq!(resp.body, bytes);
}

#[test]
fn range_of_the_first_five_bytes() {
    check_range("0-4", "bytes 0-4/16", b"01234");
}

#[test]
fn range_from_an_offset_to_the_end() {
    check_range("5-", "bytes 5-15/16", b"56789abcdef");
}

#[test]
fn range_of_the_last_three_bytes() {
    check_range("-3", "bytes 13-15/16", b"def");
}

#[test]
fn unsatisfiable_range_gives_416_with_the_length() {
    let (_root, server) = digits_server();
    let resp = get(server.port(), "/digits.txt", "Range: bytes=100-200\r\n");
    assert_eq!(resp.status, 416);
    assert_eq!(resp.header("Content-Range"), Some("bytes */16"));
}

#[test]
fn two_ranges_on_a_small_file_give_multipart_byteranges() {
    let (_root, server) = digits_server();
    let resp = get(server.port(), "/digits.txt", "Range: bytes=0-1,10-12\r\n");
    assert_eq!(resp.status, 206);
    let content_type = resp.header("Content-Type").expect("Content-Type");
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {content_type}"));
    let expected = format!(
        "\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/16\r\n\r\n01\
         \r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 10-12/16\r\n\r\nabc\
         \r\n--{boundary}--\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&resp.body),
        expected,
        "multipart body"
    );
}

#[test]
fn two_ranges_on_a_file_above_the_cache_limit_give_the_whole_file() {
    let root = Root::new();
    let body = patterned(100 * 1024);
    root.write("medium.bin", &body);
    let server = Server::start(&root);
    let resp = get(server.port(), "/medium.bin", "Range: bytes=0-1,10-12\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Range"), None);
    assert!(resp.body == body, "whole file expected");
}

#[test]
fn a_range_deep_inside_a_1_mib_file_is_exact() {
    let root = Root::new();
    let body = patterned(1024 * 1024);
    root.write("large.bin", &body);
    let server = Server::start(&root);
    let resp = get(
        server.port(),
        "/large.bin",
        "Range: bytes=500000-600099\r\n",
    );
    assert_eq!(resp.status, 206);
    assert_eq!(
        resp.header("Content-Range"),
        Some("bytes 500000-600099/1048576")
    );
    assert!(resp.body == body[500_000..600_100], "range bytes differ");
}

#[test]
fn if_range_with_the_current_etag_gives_206() {
    let (_root, server) = digits_server();
    let etag = etag_of(&server, "/digits.txt");
    let resp = get(
        server.port(),
        "/digits.txt",
        &format!("Range: bytes=0-4\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!(resp.status, 206);
    assert_eq!(resp.header("Content-Range"), Some("bytes 0-4/16"));
    assert_eq!(resp.body, b"01234");
}

#[test]
fn if_range_with_a_stale_etag_gives_the_whole_file() {
    let (_root, server) = digits_server();
    let resp = get(
        server.port(),
        "/digits.txt",
        "Range: bytes=0-4\r\nIf-Range: \"1-10\"\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Range"), None);
    assert_eq!(resp.body, DIGITS);
}

/// A raw request target that tries to leave the root: 400 or 404, never /etc/passwd.
fn check_traversal(target: &str) {
    let root = Root::new();
    let server = Server::start(&root);
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let bytes = exchange(server.port(), request.as_bytes());
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 1, "one response to {target}");
    assert!(
        all[0].status == 400 || all[0].status == 404,
        "{target} got {}",
        all[0].status
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("root:"), "{target} leaked /etc/passwd");
}

#[test]
fn traversal_with_a_leading_dot_dot() {
    check_traversal("/../etc/passwd");
}

#[test]
fn traversal_climbing_out_of_a_subdirectory() {
    check_traversal("/a/../../etc/passwd");
}

#[test]
fn traversal_with_encoded_dots() {
    check_traversal("/%2e%2e/%2e%2e/etc/passwd");
}

#[test]
fn traversal_with_encoded_dots_and_slashes() {
    check_traversal("/%2e%2e%2fetc%2fpasswd");
}

#[test]
fn traversal_with_encoded_slashes() {
    check_traversal("/..%2f..%2fetc/passwd");
}

#[test]
fn an_encoded_nul_is_refused() {
    check_traversal("/hello.txt%00.html");
}

#[test]
fn a_symlink_to_etc_passwd_is_404() {
    let root = Root::new();
    std::os::unix::fs::symlink("/etc/passwd", root.path().join("passwd")).unwrap();
    let server = Server::start(&root);
    let resp = get(server.port(), "/passwd", "");
    assert_eq!(resp.status, 404);
    assert!(!String::from_utf8_lossy(&resp.body).contains("root:"));
}

#[test]
fn a_symlink_to_a_directory_outside_the_root_is_404() {
    let root = Root::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"outside secret").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
    let server = Server::start(&root);
    let resp = get(server.port(), "/out/secret.txt", "");
    assert_eq!(resp.status, 404);
    assert!(!String::from_utf8_lossy(&resp.body).contains("outside secret"));
}

#[test]
fn a_symlink_to_a_file_inside_the_root_is_served() {
    let root = Root::new();
    std::os::unix::fs::symlink("hello.txt", root.path().join("alias.txt")).unwrap();
    let server = Server::start(&root);
    let resp = get(server.port(), "/alias.txt", "");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello, world\n");
}

fn dotfile_root() -> Root {
    let root = Root::new();
    root.write(".secret", b"dot secret");
    root.write(".git/config", b"[core]\n");
    root
}

#[test]
fn dotfiles_are_404_by_default() {
    let root = dotfile_root();
    let server = Server::start(&root);
    for path in ["/.secret", "/.git/config"] {
        let resp = get(server.port(), path, "");
        assert_eq!(resp.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&resp.body).contains("secret"));
    }
}

#[test]
fn dotfiles_are_served_with_the_dotfiles_flag() {
    let root = dotfile_root();
    let server = Server::start_with_flags(&root, &["--dotfiles"]);
    let resp = get(server.port(), "/.secret", "");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"dot secret");
    let resp = get(server.port(), "/.git/config", "");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"[core]\n");
}

#[test]
fn a_directory_without_an_index_is_403() {
    let root = Root::new();
    root.write("plain/a.txt", b"a");
    let server = Server::start(&root);
    assert_eq!(get(server.port(), "/plain/", "").status, 403);
}

#[test]
fn content_types_follow_the_extension() {
    let root = Root::new();
    let cases = [
        ("style.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("data.json", "application/json; charset=utf-8"),
        ("logo.svg", "image/svg+xml; charset=utf-8"),
        ("logo.png", "image/png"),
        ("module.wasm", "application/wasm"),
        ("archive.unknownext", "application/octet-stream"),
    ];
    for (name, _) in cases {
        root.write(name, name.as_bytes());
    }
    let server = Server::start(&root);
    for (name, mime) in cases {
        let resp = get(server.port(), &format!("/{name}"), "");
        assert_eq!(resp.status, 200, "{name}");
        assert_eq!(resp.header("Content-Type"), Some(mime), "{name}");
        assert_eq!(resp.body, name.as_bytes());
    }
}

/// The site's icon, `www/favicon.ico`: browsers ask for `/favicon.ico` on every page load.
#[test]
fn the_favicon_is_served_as_an_icon() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("www/favicon.ico");
    let icon = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    check_ico(&icon);
    let root = Root::new();
    root.write("favicon.ico", &icon);
    let server = Server::start(&root);
    let resp = get(server.port(), "/favicon.ico", "");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Type"), Some("image/x-icon"));
    assert_eq!(resp.body, icon);
}

/// Checks an ICO file's structure: its header, and for each directory entry an image inside
/// the file that is a PNG or a 32-bit BMP of the entry's size (whose height counts the AND mask
/// below the colours, so it is twice the icon's).
fn check_ico(icon: &[u8]) {
    let u16_at = |at: usize| {
        icon.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        icon.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    assert_eq!((u16_at(0), u16_at(2)), (Some(0), Some(1)), "ICO header");
    let count = usize::from(u16_at(4).unwrap_or(0));
    assert!(count > 0, "an icon without images");
    for i in 0..count {
        let entry = 6 + 16 * i;
        let side = |at: usize| match icon.get(at) {
            Some(0) => 256,
            Some(&n) => u32::from(n),
            None => panic!("entry {i} is cut short"),
        };
        let (width, height) = (side(entry), side(entry + 1));
        let (Some(len), Some(offset)) = (u32_at(entry + 8), u32_at(entry + 12)) else {
            panic!("entry {i} is cut short");
        };
        let image = icon
            .get(offset as usize..(offset as usize).saturating_add(len as usize))
            .unwrap_or_else(|| panic!("image {i} lies outside the file"));
        if image.starts_with(b"\x89PNG\r\n\x1a\n") {
            continue;
        }
        let field = |at: usize| {
            image
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let bits = image.get(14..16).map(|b| u16::from_le_bytes([b[0], b[1]]));
        assert_eq!(
            (field(0), field(4), field(8), bits),
            (Some(40), Some(width), Some(2 * height), Some(32)),
            "image {i}: BITMAPINFOHEADER size, width, height and bits per pixel"
        );
        let mask_row = width.div_ceil(32) * 4;
        assert_eq!(
            image.len() as u32,
            40 + width * height * 4 + mask_row * height,
            "image {i}: header, colours and mask"
        );
    }
}

#[test]
fn a_file_changed_on_disk_is_served_fresh_within_seconds() {
    let root = Root::new();
    root.write("changing.txt", b"first");
    let server = Server::start(&root);
    // Twice, so the second answer surely comes from the small-file cache.
    for _ in 0..2 {
        assert_eq!(get(server.port(), "/changing.txt", "").body, b"first");
    }
    root.write("changing.txt", b"second, longer version");
    let changed = Instant::now();
    // The cache revalidates once per second; allow a loaded machine plenty more.
    let limit = Duration::from_secs(5);
    loop {
        let resp = get(server.port(), "/changing.txt", "");
        assert_eq!(resp.status, 200);
        if resp.body == b"second, longer version" {
            assert_eq!(resp.header("Content-Length"), Some("22"));
            return;
        }
        assert_eq!(resp.body, b"first", "neither version");
        assert!(changed.elapsed() < limit, "stale after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server's open descriptors whose target path ends with `name` (deleted ones included).
fn open_files_named(server: &Server, name: &str) -> usize {
    let dir = format!("/proc/{}/fd", server.pid());
    std::fs::read_dir(&dir)
        .expect("server fd directory")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| {
            let target = target.to_string_lossy();
            target.trim_end_matches(" (deleted)").ends_with(name)
        })
        .count()
}

/// Polls `path` until its body is `want` (or it answers `want_status`), for at most 5 s.
fn wait_for(server: &Server, path: &str, want_status: u16, want: &[u8]) {
    let start = Instant::now();
    loop {
        let resp = get(server.port(), path, "");
        if resp.status == want_status && (want_status != 200 || resp.body == want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{path} still answers {} with a stale body after 5 s",
            resp.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_large_file_stays_open_between_requests_and_is_closed_once_deleted() {
    let root = Root::new();
    let big = patterned(200 * 1024);
    let path = root.write("big.bin", &big);
    let server = Server::start(&root);
    for _ in 0..3 {
        assert_eq!(get(server.port(), "/big.bin", "").body, big);
    }
    // One descriptor however many requests were served (nginx's open_file_cache).
    assert_eq!(open_files_named(&server, "/big.bin"), 1);
    std::fs::remove_file(&path).expect("remove");
    wait_for(&server, "/big.bin", 404, b"");
    assert_eq!(
        open_files_named(&server, "/big.bin"),
        0,
        "descriptor leaked"
    );
}

/// The README promises that a deleted file's descriptor is closed within a second: each worker
/// sweeps its cache once a second, so this holds even when nobody asks for the file again (it
/// used to wait for the next request, and both workers kept the deleted file open).
#[test]
fn a_deleted_large_file_is_closed_by_every_worker_without_another_request() {
    let root = Root::new();
    let big = patterned(200 * 1024);
    let path = root.write("big.bin", &big);
    let server = Server::start_with(
        &root,
        Options {
            workers: 2,
            ..Options::default()
        },
    );
    // New connections spread over both workers (SO_REUSEPORT hashes each connection): the
    // chance that 16 all land on one worker is 2^-15.
    for _ in 0..16 {
        assert_eq!(get(server.port(), "/big.bin", "").body, big);
    }
    assert_eq!(
        open_files_named(&server, "/big.bin"),
        2,
        "each worker holds the file open once"
    );
    std::fs::remove_file(&path).expect("remove");
    let removed = Instant::now();
    // A second as promised, plus one for a loaded machine; no request is made meanwhile.
    let limit = Duration::from_secs(2);
    while open_files_named(&server, "/big.bin") > 0 {
        assert!(
            removed.elapsed() < limit,
            "a descriptor of the deleted file is still open {limit:?} after the deletion"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replaces `name` by rename with a file of the same size and mtime but other bytes: only the
/// inode tells them apart, so the cache must compare it, not just size and mtime.
fn check_replaced_by_an_identical_looking_file(len: usize) {
    let root = Root::new();
    let old = vec![b'o'; len];
    let new = vec![b'n'; len];
    let path = root.write("swap.bin", &old);
    let server = Server::start(&root);
    for _ in 0..2 {
        assert_eq!(get(server.port(), "/swap.bin", "").body, old);
    }
    let mtime = std::fs::metadata(&path)
        .expect("stat")
        .modified()
        .expect("mtime");
    let staged = root.write("staged.tmp", &new);
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
    std::fs::rename(&staged, &path).expect("rename");
    wait_for(&server, "/swap.bin", 200, &new);
}

#[test]
fn a_small_file_replaced_with_the_same_size_and_mtime_is_served_fresh_within_seconds() {
    check_replaced_by_an_identical_looking_file(100);
}

#[test]
fn a_large_file_replaced_with_the_same_size_and_mtime_is_served_fresh_within_seconds() {
    check_replaced_by_an_identical_looking_file(100 * 1024);
}

#[test]
fn with_no_cache_entries_files_are_served_and_none_stays_open() {
    let root = Root::new();
    let big = patterned(100 * 1024);
    root.write("big.bin", &big);
    root.write("small.txt", b"small");
    let server = Server::start_with_flags(&root, &["--file-cache-entries", "0"]);
    for _ in 0..2 {
        assert_eq!(get(server.port(), "/big.bin", "").body, big);
        assert_eq!(get(server.port(), "/small.txt", "").body, b"small");
    }
    assert_eq!(open_files_named(&server, "/big.bin"), 0);
}
