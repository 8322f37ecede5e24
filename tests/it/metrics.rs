//! /metrics as Prometheus reads it: the scrape goes through the official Python client's
//! parser (`prometheus_client`, `pip install prometheus-client`; `.ci/run` installs it), and the
//! families follow Prometheus's conventions. /status.json as a JSON parser reads it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{exchange, get, parse_all, Options, Response, Root, Server};
use crate::websocket::open;

/// Parses a scrape with prometheus_client's parser and prints `name type` for each family and
/// `sample name {labels as JSON} value` for each sample.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print("family", family.name, family.type)
    for s in family.samples:
        print("sample", s.name, json.dumps(s.labels, sort_keys=True), s.value)
"#;

fn parse(scrape: &str) -> String {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (needed to parse the scrape)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("write the scrape");
    let output = child.wait_with_output().expect("python3");
    assert!(
        output.status.success(),
        "prometheus_client could not parse the scrape (is it installed? \
         `python3 -m pip install prometheus-client`, which .ci/run does): {}\n{scrape}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_scrape_parses_and_follows_prometheus_conventions() {
    let root = Root::new();
    let server = Server::start_with(
        &root,
        Options {
            admin: true,
            ..Options::default()
        },
    );
    assert_eq!(get(server.port(), "/hello.txt", "").status, 200);
    assert_eq!(get(server.port(), "/missing", "").status, 404);
    // A close frame without a status code: counted, but not as code 1005.
    let mut ws = open(&server, "/");
    ws.close(None).expect("close");
    while ws.read().is_ok() {}
    server.wait_for_metrics(
        &[
            "percore_ws_closed_total{worker=\"0\"} 1".to_owned(),
            "percore_requests_total{worker=\"0\",code=\"404\",class=\"4xx\"} 1".to_owned(),
        ],
        Duration::from_secs(10),
    );
    let (status, scrape) = server.admin_get("/metrics");
    assert_eq!(status, 200);
    let parsed = parse(&scrape);
    for family in [
        "family percore_build_info gauge",
        "family percore_requests counter",
        "family percore_request_duration_seconds histogram",
        "family percore_connections_active gauge",
        "family process_cpu_seconds counter",
        "family process_resident_memory_bytes gauge",
        "family process_open_fds gauge",
        "family process_max_fds gauge",
        "family process_start_time_seconds gauge",
    ] {
        assert!(
            parsed.lines().any(|l| l == family),
            "no {family:?} in:\n{parsed}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    for sample in [
        format!("sample percore_build_info {{\"version\": \"{version}\"}} 1"),
        "sample percore_requests_total {\"class\": \"2xx\", \"code\": \"200\", \"worker\": \"0\"} 1"
            .to_owned(),
        "sample percore_requests_total {\"class\": \"4xx\", \"code\": \"404\", \"worker\": \"0\"} 1"
            .to_owned(),
    ] {
        assert!(
            parsed.lines().any(|l| l == sample),
            "no {sample:?} in:\n{parsed}"
        );
    }
    // The upgrade's 101 is a response too.
    assert!(parsed.contains("\"code\": \"101\""), "{parsed}");
    assert!(parsed.contains("\"code\": \"none\""), "{parsed}");
    // As a label value: the number can turn up by chance in a sample's value.
    assert!(!parsed.contains("\"1005\""), "{parsed}");
}

/// GET `/status.json` on the admin port: the response and its body as JSON.
fn status_json(server: &Server) -> (Response, serde_json::Value) {
    let port = server.admin.expect("server started with --admin");
    let request = "GET /status.json HTTP/1.1\r\nHost: x\r\nOrigin: http://127.0.0.1:8001\r\n\
                   Connection: close\r\n\r\n";
    let mut all = parse_all(&exchange(port, request.as_bytes()));
    assert_eq!(all.len(), 1, "one response to /status.json");
    let response = all.remove(0);
    let json = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "/status.json is not JSON ({e}): {}",
            String::from_utf8_lossy(&response.body)
        )
    });
    (response, json)
}

/// The sum of `key` over the workers of a `/status.json` body.
fn sum(json: &serde_json::Value, key: &str) -> u64 {
    let workers = json["workers"].as_array().expect("a workers array");
    workers.iter().filter_map(|w| w[key].as_u64()).sum()
}

#[test]
fn status_json_counts_per_worker_and_is_readable_cross_origin() {
    let root = Root::new();
    let server = Server::start_with(
        &root,
        Options {
            admin: true,
            workers: 2,
            ..Options::default()
        },
    );
    let (response, json) = status_json(&server);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert_eq!(response.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(response.header("Cache-Control"), Some("no-store"));
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["workers"].as_array().map(Vec::len), Some(2));
    let bounds = json["latency_bounds_us"].as_array().map_or(0, Vec::len);
    let before = sum(&json, "requests");

    for _ in 0..10 {
        assert_eq!(get(server.port(), "/hello.txt", "").status, 200);
    }
    let started = Instant::now();
    let json = loop {
        let (_, json) = status_json(&server);
        if sum(&json, "requests") >= before + 10 {
            break json;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the 10 requests never showed: {json}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sum(&json, "requests"), before + 10, "{json}");
    assert_eq!(sum(&json, "connections_accepted"), 10, "{json}");
    assert!(sum(&json, "bytes_sent") > 10 * 13, "{json}");
    let uptime = json["uptime_ms"].as_u64().expect("uptime_ms");
    for worker in json["workers"].as_array().into_iter().flatten() {
        let requests = worker["requests"].as_u64().expect("requests");
        let buckets = worker["latency_buckets"].as_array().expect("buckets");
        assert_eq!(buckets.len(), bounds + 1, "{worker}");
        let samples: u64 = buckets.iter().filter_map(serde_json::Value::as_u64).sum();
        assert_eq!(
            samples, requests,
            "one latency sample per response: {worker}"
        );
        let reported = worker["reported_ms"].as_u64().expect("reported_ms");
        assert!(reported <= uptime, "{worker}");
        assert_eq!(requests > 0, reported > 0, "{worker}");
    }
}
