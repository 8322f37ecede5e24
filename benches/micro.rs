//! Criterion micro-benchmarks of the sans-IO hot paths: request parsing, response heads,
//! WebSocket frames, masking, UTF-8 and permessage-deflate.
//!
//! This file owns only measurements: it calls the public `http` and `ws` APIs with fixed inputs
//! built once before timing. It must never open a socket or a file; where a call works in place,
//! copying its input back each iteration is part of the time, as a read into the buffer would be.
//! Run: `cargo bench --bench micro -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use percore::http::{self, HeadWriter, Limits, Parse, Response, Status, Version};
use percore::ws::{self, Codec, Data, DeflateParams, OpCode, Session, WsConfig};

/// The smallest request a client can send.
const SMALL_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// A Firefox 134 page load with a revalidation (571 bytes of head).
const BROWSER_GET: &[u8] = b"GET /docs/index.html HTTP/1.1\r\n\
Host: localhost:8080\r\n\
User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:134.0) Gecko/20100101 Firefox/134.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: none\r\n\
Sec-Fetch-User: ?1\r\n\
If-Modified-Since: Tue, 12 Nov 2024 09:41:07 GMT\r\n\
If-None-Match: \"6733227b-1f4a\"\r\n\
Priority: u=0, i\r\n\
Cache-Control: max-age=0\r\n\r\n";

/// One request of wrk's pipelined batch (`benches/pipeline.lua`), sent 16 times in one write.
const PIPELINED_GET: &[u8] = b"GET /small.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
const PIPELINE_DEPTH: usize = 16;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const FRAME_SIZES: [(&str, usize); 3] = [("64B", 64), ("16KiB", 16 << 10), ("1MiB", 1 << 20)];

fn date() -> [u8; 29] {
    http::http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_731_404_467))
}

/// Parses every head in `buf` the way the connection does: parse, consume `head_len`, repeat.
fn parse_all(buf: &mut [u8], limits: &Limits) -> usize {
    let mut pos = 0;
    let mut count = 0;
    while let Some(rest) = buf.get_mut(pos..).filter(|r| !r.is_empty()) {
        match http::parse_request(rest, limits) {
            Ok(Parse::Complete(req)) => {
                black_box(&req);
                pos += req.head_len;
                count += 1;
            }
            _ => break,
        }
    }
    count
}

fn bench_http(c: &mut Criterion) {
    let limits = Limits::default();
    let date = date();
    let mut group = c.benchmark_group("http");

    for (name, head) in [
        ("parse_small_get", SMALL_GET),
        ("parse_browser_get", BROWSER_GET),
    ] {
        let mut head = head.to_vec();
        assert_eq!(parse_all(&mut head, &limits), 1, "{name} must parse");
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let parsed = http::parse_request(black_box(&mut head), &limits);
                black_box(parsed.is_ok());
            })
        });
    }

    let mut pipeline = PIPELINED_GET.repeat(PIPELINE_DEPTH);
    assert_eq!(parse_all(&mut pipeline, &limits), PIPELINE_DEPTH);
    group.throughput(Throughput::Elements(PIPELINE_DEPTH as u64));
    group.bench_function("parse_pipelined_x16", |b| {
        b.iter(|| parse_all(black_box(&mut pipeline), &limits))
    });

    let mut out = Vec::with_capacity(4096);
    let write_200 = |out: &mut Vec<u8>| {
        out.clear();
        let mut head = HeadWriter::new(out, Status::OK, &date);
        head.header("Content-Type", b"text/html; charset=utf-8")
            .header("Last-Modified", b"Tue, 12 Nov 2024 09:41:07 GMT")
            .header("ETag", b"\"6733227b-1f4a\"")
            .header("Accept-Ranges", b"bytes")
            .content_length(8010);
        head.finish(Version::Http11, true);
    };
    write_200(&mut out);
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("write_200_head", |b| {
        b.iter(|| {
            write_200(&mut out);
            black_box(&out);
        })
    });

    let write_404 = |out: &mut Vec<u8>| {
        out.clear();
        Response::page(Status::NOT_FOUND).write(out, &date, Version::Http11, true, false);
    };
    write_404(&mut out);
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("write_error_404", |b| {
        b.iter(|| {
            write_404(&mut out);
            black_box(&out);
        })
    });
    group.finish();
}

/// Deterministic JSON-ish chat lines in printable ASCII, `len` bytes: words drawn by a small
/// LCG, so DEFLATE sees text that repeats like real messages rather than one line over and over.
fn ascii_text(len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "the", "server", "answers", "every", "request", "from", "one", "core", "without", "locks",
        "message", "echo", "frame", "buffer", "client", "latency",
    ];
    let mut text = Vec::with_capacity(len + 64);
    let mut seed: u32 = 12345;
    let mut id = 0;
    while text.len() < len {
        id += 1;
        text.extend_from_slice(format!("{{\"id\":{id},\"text\":\"").as_bytes());
        for _ in 0..8 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            text.extend_from_slice(WORDS[(seed >> 16) as usize % WORDS.len()].as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(b"\"}\n");
    }
    text.truncate(len);
    text
}

/// Two-, three- and four-byte UTF-8 with some ASCII, cut to at most `len` bytes on a char boundary.
fn multibyte_text(len: usize) -> Vec<u8> {
    let piece = "Привет, мир! こんにちは世界 🦀🚀 Ελληνικά ";
    let mut text = String::new();
    for ch in piece.chars().cycle() {
        if text.len() + ch.len_utf8() > len {
            break;
        }
        text.push(ch);
    }
    text.into_bytes()
}

/// A client frame: FIN, `opcode`, RSV1 (compressed) as given, masked with [`KEY`].
fn masked_frame(opcode: OpCode, compressed: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + ws::MAX_HEADER_LEN);
    ws::write_frame_header(&mut frame, true, compressed, opcode, payload.len() as u64);
    // The client sets the MASK bit and appends the key after the length.
    if let Some(second) = frame.get_mut(1) {
        *second |= 0x80;
    }
    frame.extend_from_slice(&KEY);
    let start = frame.len();
    frame.extend_from_slice(payload);
    ws::apply_mask(frame.get_mut(start..).unwrap_or_default(), KEY, 0);
    frame
}

/// Parses the header at the front of `buf` and unmasks its payload in place.
fn decode_frame(buf: &mut [u8]) -> usize {
    let Ok(Some((header, header_len))) = ws::parse_header(buf) else {
        return 0;
    };
    let end = header_len + header.payload_len as usize;
    let payload = buf.get_mut(header_len..end).unwrap_or_default();
    ws::apply_mask(payload, header.mask.unwrap_or_default(), 0);
    payload.len()
}

fn bench_ws_frames(c: &mut Criterion) {
    let binary = OpCode::Data(Data::Binary);
    let mut group = c.benchmark_group("ws_frame");
    for (name, size) in FRAME_SIZES {
        let payload = ascii_text(size);
        let frame = masked_frame(binary, false, &payload);
        let mut buf = frame.clone();
        assert_eq!(decode_frame(&mut buf), size);
        assert_eq!(buf.get(buf.len() - size..), Some(&payload[..]));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("decode_unmask", name), |b| {
            b.iter(|| {
                buf.copy_from_slice(&frame);
                decode_frame(black_box(&mut buf))
            })
        });
        let mut out = Vec::with_capacity(size + ws::MAX_HEADER_LEN);
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                out.clear();
                ws::write_frame_header(&mut out, true, false, binary, payload.len() as u64);
                out.extend_from_slice(black_box(&payload));
                black_box(&out);
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("ws_mask_16KiB");
    let mut buf = ascii_text(16 << 10);
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("apply_mask", |b| {
        b.iter(|| ws::apply_mask(black_box(&mut buf), KEY, 1))
    });
    group.bench_function("apply_mask_naive", |b| {
        b.iter(|| ws::apply_mask_naive(black_box(&mut buf), KEY, 1))
    });
    group.finish();
}

fn bench_ws_session(c: &mut Criterion) {
    let cfg = WsConfig::default();
    let params = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let text = OpCode::Data(Data::Text);
    let mut group = c.benchmark_group("ws_session_echo");
    for (name, size, deflate) in [
        ("64B", 64, false),
        ("16KiB", 16 << 10, false),
        ("16KiB_deflate", 16 << 10, true),
    ] {
        let plain = ascii_text(size);
        let mut codec = Codec::new();
        let frame = if deflate {
            let mut compressed = Vec::new();
            codec.compress(&plain, &mut compressed);
            masked_frame(text, true, &compressed)
        } else {
            masked_frame(text, false, &plain)
        };
        let mut session = Session::new(&cfg, deflate.then_some(params));
        let mut input = frame.clone();
        let mut out = Vec::with_capacity(size + 64);
        let got = session.receive(&mut input, &mut out, &mut codec);
        assert_eq!(got.consumed, frame.len());
        // The echo is the client's frame without the 4-byte masking key, compressed the same.
        assert_eq!(out.len(), frame.len() - 4);
        assert_eq!(out.first(), frame.first());
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                input.copy_from_slice(&frame);
                out.clear();
                session.receive(black_box(&mut input), &mut out, &mut codec)
            })
        });
    }
    group.finish();
}

fn bench_utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8_16KiB");
    for (name, text) in [
        ("ascii", ascii_text(16 << 10)),
        ("multibyte", multibyte_text(16 << 10)),
    ] {
        assert!(std::str::from_utf8(&text).is_ok());
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(BenchmarkId::new("validator", name), |b| {
            b.iter(|| {
                let mut v = ws::Utf8Validator::new();
                v.feed(black_box(&text)).and_then(|()| v.finish())
            })
        });
        // TCP-segment-sized pieces split code points and exercise the pending bytes.
        group.bench_function(BenchmarkId::new("validator_1460B_pieces", name), |b| {
            b.iter(|| {
                let mut v = ws::Utf8Validator::new();
                for piece in black_box(&text).chunks(1460) {
                    v.feed(piece)?;
                }
                v.finish()
            })
        });
        group.bench_function(BenchmarkId::new("std_from_utf8", name), |b| {
            b.iter(|| std::str::from_utf8(black_box(&text)).is_ok())
        });
    }
    group.finish();
}

fn bench_deflate(c: &mut Criterion) {
    let text = ascii_text(16 << 10);
    let mut codec = Codec::new();
    let mut compressed = Vec::new();
    codec.compress(&text, &mut compressed);
    let mut round_trip = Vec::new();
    assert_eq!(
        codec.decompress(&compressed, 16 << 20, &mut round_trip),
        Ok(())
    );
    assert_eq!(round_trip, text);

    let mut group = c.benchmark_group("deflate_16KiB_text");
    group.throughput(Throughput::Bytes(text.len() as u64));
    let mut out = Vec::with_capacity(text.len() * 2);
    group.bench_function("compress", |b| {
        b.iter(|| {
            out.clear();
            codec.compress(black_box(&text), &mut out);
        })
    });
    group.bench_function("decompress", |b| {
        b.iter(|| {
            out.clear();
            codec.decompress(black_box(&compressed), 16 << 20, &mut out)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_http,
    bench_ws_frames,
    bench_ws_session,
    bench_utf8,
    bench_deflate
);
criterion_main!(benches);
