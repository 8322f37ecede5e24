#!/usr/bin/env python3
"""The checking clients of the soak (benches/soak.sh): every answer is verified, not just counted.

Usage: benches/soak.py --port PORT --root DIR --duration SECONDS [--new-rate 100] [--range-rate 100]
           [--conditional-rate 100] [--ws 4] [--ws-rate 20] [--ws-idle 7] [--ws-idle-every 30]

Four kinds of client run side by side for --duration seconds against one server whose document
root is DIR (the files are read from DIR to check the bodies):

- new connections: GET of a file with "Connection: close", a new TCP connection each, at
  --new-rate per second; expects 200, the file's bytes, and the server's close after them.
- ranges: one keep-alive connection, --range-rate requests per second, each a random case:
  bytes=a-b, bytes=a-, bytes=-n (206 with the exact Content-Range and bytes), a range past the
  end (416, Content-Range: bytes */size), two ranges of a small file (206 multipart/byteranges,
  each part checked), If-Range with the current ETag (206) or another one (200, whole file).
- conditional GETs: one keep-alive connection, --conditional-rate per second: If-None-Match with
  the file's ETag (304, no body), with another ETag (200), If-Modified-Since its Last-Modified
  (304), If-Match another ETag (412), and HEAD (200, Content-Length, no body).
- WebSockets: --ws connections to /ws, each sending --ws-rate messages per second (text of
  random length, and pings with random payloads), checking every echo and pong; every
  --ws-idle-every seconds each goes quiet for --ws-idle seconds, longer than the server's ping
  interval, and must get a ping (answered with a pong) and stay open. At the end each closes
  with 1000 and expects 1000 back.

What counts as an error: a status, header or body byte other than expected, a connection
closed or reset by the server where the protocol says it stays open, no answer within
--timeout seconds, an echo or pong that differs or does not come, a WebSocket that got no
server ping while idle, a close code other than 1000. It prints one JSON object: requests and
checks by kind, errors by kind, the first few errors described. Exit status 0 either way
(soak.sh decides); 2 if the script itself could not run.
"""

import argparse
import asyncio
import base64
import collections
import hashlib
import json
import os
import random
import struct
import sys
import time

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FILES = {"/small.html": "small.html", "/4k.bin": "4k.bin", "/64k.bin": "64k.bin",
         "/1m.bin": "1m.bin", "/": "index.html"}
MAX_EXAMPLES = 20


class Failure(Exception):
    """An answer other than the expected one (a soak error)."""


class Report:
    """Counts checks and errors by kind; keeps the first errors' descriptions."""

    def __init__(self):
        self.ok = collections.Counter()
        self.errors = collections.Counter()
        self.examples = []
        self.server_pings = 0

    def error(self, kind, what):
        self.errors[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{time.strftime('%H:%M:%S')} {kind}: {what}")

    def as_json(self):
        return {"checked": dict(self.ok), "errors": dict(self.errors),
                "error_total": sum(self.errors.values()), "ws_server_pings": self.server_pings,
                "examples": self.examples}


class Http:
    """One HTTP/1.1 connection: send a request, read and parse one response."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, args):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(args.host, args.port), args.timeout)
        return cls(reader, writer)

    async def request(self, args, path, headers=(), method="GET"):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {args.host}", *headers, "", ""]
        self.writer.write("\r\n".join(lines).encode())
        return await asyncio.wait_for(self.response(method), args.timeout)

    async def response(self, method):
        """(status, headers with lower-case names, body)."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            raise Failure(f"connection closed before a response head ({len(e.partial)} bytes)")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304):
            return status, headers, b""
        if "content-length" not in headers:
            raise Failure(f"status {status} without Content-Length")
        try:
            body = await self.reader.readexactly(int(headers["content-length"]))
        except asyncio.IncompleteReadError as e:
            raise Failure(f"body cut after {len(e.partial)} of {headers['content-length']} bytes")
        return status, headers, body

    async def expect_close(self, args):
        try:
            extra = await asyncio.wait_for(self.reader.read(1), args.timeout)
        except ConnectionResetError:
            return
        if extra:
            raise Failure("bytes after the response of a Connection: close request")

    def close(self):
        self.writer.close()


def expect(cond, what):
    if not cond:
        raise Failure(what)


class Site:
    """The document root's files and their validators, as the server reports them."""

    def __init__(self, root):
        self.body = {}
        for path, name in FILES.items():
            with open(os.path.join(root, name), "rb") as f:
                self.body[path] = f.read()
        self.etag = {}
        self.last_modified = {}

    async def learn_validators(self, args):
        conn = await Http.open(args)
        try:
            for path in FILES:
                status, headers, _ = await conn.request(args, path, method="HEAD")
                expect(status == 200, f"HEAD {path}: status {status}")
                self.etag[path] = headers["etag"]
                self.last_modified[path] = headers["last-modified"]
        finally:
            conn.close()


async def paced(args, rate, report, kind, once):
    """Calls `once()` `rate` times a second until the deadline. An error is counted and raised:
    the connection's state is unknown after it, so the caller reconnects."""
    interval = 1.0 / rate
    next_at = time.monotonic()
    while time.monotonic() < args.deadline:
        try:
            await once()
        except (Failure, OSError, asyncio.TimeoutError) as e:
            report.error(kind, f"{type(e).__name__}: {e}")
            await asyncio.sleep(0.1)
            raise
        report.ok[kind] += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def new_connection_gets(args, site, report):
    """A new connection per GET, several in flight: --new-rate per second."""
    paths = list(FILES)
    limit = asyncio.Semaphore(32)

    async def one(path):
        async with limit:
            try:
                conn = await Http.open(args)
            except (OSError, asyncio.TimeoutError) as e:
                report.error("new-connection", f"connect: {e}")
                return
            try:
                status, _, body = await conn.request(args, path, ["Connection: close"])
                expect(status == 200, f"GET {path}: status {status}")
                expect(body == site.body[path], f"GET {path}: body differs from the file")
                await conn.expect_close(args)
                report.ok["new-connection"] += 1
            except (Failure, OSError, asyncio.TimeoutError) as e:
                report.error("new-connection", f"GET {path}: {type(e).__name__}: {e}")
            finally:
                conn.close()

    tasks = set()
    interval = 1.0 / args.new_rate
    next_at = time.monotonic()
    i = 0
    while time.monotonic() < args.deadline:
        task = asyncio.ensure_future(one(paths[i % len(paths)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if tasks:
        await asyncio.gather(*tasks)


async def keep_alive_client(args, report, kind, rate, case):
    """One keep-alive connection running `case(conn)` at `rate`; reconnects after an error."""
    while time.monotonic() < args.deadline:
        try:
            conn = await Http.open(args)
        except (OSError, asyncio.TimeoutError) as e:
            report.error(kind, f"connect: {e}")
            await asyncio.sleep(1)
            continue
        try:
            await paced(args, rate, report, kind, lambda: case(conn))
        except (Failure, OSError, asyncio.TimeoutError):
            pass
        finally:
            conn.close()


async def range_case(args, site, conn):
    """One random range request, checked byte for byte."""
    path = random.choice(["/small.html", "/4k.bin", "/64k.bin", "/1m.bin"])
    body = site.body[path]
    size = len(body)
    pick = random.randrange(7)
    if pick == 0:
        a = random.randrange(size)
        b = random.randrange(a, size)
        await check_range(args, conn, path, f"bytes={a}-{b}", body, a, b)
    elif pick == 1:
        a = random.randrange(size)
        await check_range(args, conn, path, f"bytes={a}-", body, a, size - 1)
    elif pick == 2:
        n = random.randrange(1, size + 1)
        await check_range(args, conn, path, f"bytes=-{n}", body, size - n, size - 1)
    elif pick == 3:
        status, headers, _ = await conn.request(args, path, [f"Range: bytes={size}-"])
        expect(status == 416, f"{path} bytes={size}-: status {status}, not 416")
        expect(headers.get("content-range") == f"bytes */{size}",
               f"{path} 416: Content-Range {headers.get('content-range')!r}")
    elif pick == 4:
        await check_multipart(args, conn, "/small.html", site.body["/small.html"])
    elif pick == 5:
        a = random.randrange(size)
        await check_range(args, conn, path, f"bytes={a}-", body, a, size - 1,
                          [f"If-Range: {site.etag[path]}"])
    else:
        status, _, got = await conn.request(
            args, path, ["Range: bytes=0-0", 'If-Range: "not-the-etag"'])
        expect(status == 200 and got == body, f"{path} If-Range mismatch: status {status}, "
               f"{len(got)} bytes, not 200 and the whole file")


async def check_range(args, conn, path, spec, body, a, b, extra=()):
    status, headers, got = await conn.request(args, path, [f"Range: {spec}", *extra])
    expect(status == 206, f"{path} {spec}: status {status}, not 206")
    want = f"bytes {a}-{b}/{len(body)}"
    expect(headers.get("content-range") == want,
           f"{path} {spec}: Content-Range {headers.get('content-range')!r}, not {want!r}")
    expect(got == body[a:b + 1], f"{path} {spec}: bytes differ from the file")


async def check_multipart(args, conn, path, body):
    """Two ranges of a small file: multipart/byteranges with both parts, in order."""
    spans = [(0, 9), (20, 49)]
    spec = "bytes=" + ",".join(f"{a}-{b}" for a, b in spans)
    status, headers, got = await conn.request(args, path, [f"Range: {spec}"])
    expect(status == 206, f"{path} {spec}: status {status}, not 206")
    ctype = headers.get("content-type", "")
    expect(ctype.startswith("multipart/byteranges; boundary="), f"{path} {spec}: {ctype!r}")
    boundary = ctype.split("boundary=", 1)[1].encode()
    parts = [p for p in got.split(b"--" + boundary) if p.strip(b"\r\n") not in (b"", b"--")]
    expect(len(parts) == len(spans), f"{path} {spec}: {len(parts)} parts, not {len(spans)}")
    for part, (a, b) in zip(parts, spans):
        head, _, data = part.partition(b"\r\n\r\n")
        want = f"Content-Range: bytes {a}-{b}/{len(body)}".encode().lower()
        expect(want in head.lower(), f"{path} {spec}: part without {want!r}")
        expect(data[:b - a + 1] == body[a:b + 1], f"{path} {spec}: part {a}-{b} differs")


async def conditional_case(args, site, conn):
    """One random conditional request (or HEAD), checked."""
    path = random.choice(list(FILES))
    pick = random.randrange(5)
    if pick == 0:
        status, _, got = await conn.request(args, path, [f"If-None-Match: {site.etag[path]}"])
        expect(status == 304 and got == b"", f"{path} If-None-Match (its ETag): status {status}, not 304")
    elif pick == 1:
        status, _, got = await conn.request(args, path, ['If-None-Match: "other"'])
        expect(status == 200 and got == site.body[path],
               f"{path} If-None-Match (another ETag): status {status}, not 200 and the file")
    elif pick == 2:
        status, _, _ = await conn.request(args, path, [f"If-Modified-Since: {site.last_modified[path]}"])
        expect(status == 304, f"{path} If-Modified-Since (its Last-Modified): status {status}, not 304")
    elif pick == 3:
        status, _, _ = await conn.request(args, path, ['If-Match: "other"'])
        expect(status == 412, f"{path} If-Match (another ETag): status {status}, not 412")
    else:
        status, headers, _ = await conn.request(args, path, method="HEAD")
        expect(status == 200 and headers.get("content-length") == str(len(site.body[path])),
               f"HEAD {path}: status {status}, Content-Length {headers.get('content-length')}")


class WebSocket:
    """A minimal RFC 6455 client: masked frames out, pings answered, echoes and pongs queued."""

    def __init__(self, reader, writer, report):
        self.reader, self.writer, self.report = reader, writer, report
        self.inbox = asyncio.Queue()  # ("message", opcode, payload) | ("pong", payload) | ("close", code)
        self.pinged = 0  # server pings received

    @classmethod
    async def open(cls, args, report):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(args.host, args.port), args.timeout)
        key = base64.b64encode(os.urandom(16))
        writer.write(b"GET /ws HTTP/1.1\r\nHost: " + args.host.encode() +
                     b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                     b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), args.timeout)
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        expect(head.startswith(b"HTTP/1.1 101 "), f"upgrade: {head[:40]!r}")
        fields = {name.strip().lower(): value.strip() for name, _, value in
                  (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)}
        expect(fields.get(b"sec-websocket-accept") == accept, "upgrade: wrong Sec-WebSocket-Accept")
        return cls(reader, writer, report)

    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)

    async def read_frames(self):
        """Runs until the connection ends: answers pings, queues everything else."""
        message, first_opcode = b"", None
        try:
            while True:
                b0, b1 = await self.reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await self.reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
                if b1 & 0x80:
                    raise Failure("the server masked a frame")
                payload = await self.reader.readexactly(n)
                opcode = b0 & 0x0F
                if opcode == 9:
                    self.pinged += 1
                    self.send(10, payload)
                elif opcode == 10:
                    await self.inbox.put(("pong", payload))
                elif opcode == 8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    await self.inbox.put(("close", code))
                    return
                else:
                    if opcode != 0:
                        first_opcode = opcode
                    message += payload
                    if b0 & 0x80:
                        await self.inbox.put(("message", first_opcode, message))
                        message = b""
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            await self.inbox.put(("gone", str(e) or type(e).__name__))

    async def next(self, args):
        return await asyncio.wait_for(self.inbox.get(), args.timeout)


async def ws_client(args, report):
    """Messages and pings, checked; quiet spells that the server must fill with a ping."""
    kind = "websocket"
    while time.monotonic() < args.deadline:
        try:
            ws = await WebSocket.open(args, report)
        except (Failure, OSError, asyncio.TimeoutError) as e:
            report.error(kind, f"open: {type(e).__name__}: {e}")
            await asyncio.sleep(1)
            continue
        frames = asyncio.ensure_future(ws.read_frames())
        try:
            await ws_session(args, ws, report)
        except (Failure, OSError, asyncio.TimeoutError) as e:
            report.error(kind, f"{type(e).__name__}: {e}")
        finally:
            report.server_pings += ws.pinged
            ws.writer.close()
            frames.cancel()


async def ws_session(args, ws, report):
    quiet_at = time.monotonic() + random.uniform(0, args.ws_idle_every)
    while time.monotonic() < args.deadline:
        if time.monotonic() >= quiet_at and time.monotonic() + args.ws_idle < args.deadline:
            pings_before = ws.pinged
            await asyncio.sleep(args.ws_idle)
            if not ws.inbox.empty():
                raise Failure(f"unexpected while quiet: {str(ws.inbox.get_nowait())[:60]}")
            expect(ws.pinged > pings_before, f"no server ping in {args.ws_idle:g} s of quiet")
            report.ok["websocket-quiet"] += 1
            quiet_at = time.monotonic() + args.ws_idle_every
        if random.random() < 0.25:
            payload = os.urandom(random.randrange(0, 126))
            ws.send(9, payload)
            got = await ws.next(args)
            expect(got == ("pong", payload), f"ping: got {str(got)[:60]}, not its pong")
            report.ok["websocket-ping"] += 1
        else:
            text = "".join(random.choice("abcdefgh ij€ü") for _ in range(random.randrange(1, 2000)))
            ws.send(1, text.encode())
            got = await ws.next(args)
            expect(got == ("message", 1, text.encode()), f"echo: got {str(got)[:60]}, not the text")
            report.ok["websocket-echo"] += 1
        await asyncio.sleep(1.0 / args.ws_rate)
    ws.send(8, struct.pack("!H", 1000))
    got = await ws.next(args)
    expect(got == ("close", 1000), f"close: got {got!r}, not close 1000")
    report.ok["websocket-close"] += 1


async def run(args):
    report = Report()
    site = Site(args.root)
    await site.learn_validators(args)
    args.deadline = time.monotonic() + args.duration
    tasks = [new_connection_gets(args, site, report)]
    for _ in range(args.ws):
        tasks.append(ws_client(args, report))
    tasks.append(keep_alive_client(args, report, "range", args.range_rate,
                                   lambda conn: range_case(args, site, conn)))
    tasks.append(keep_alive_client(args, report, "conditional", args.conditional_rate,
                                   lambda conn: conditional_case(args, site, conn)))
    await asyncio.gather(*tasks)
    if args.ws and report.server_pings == 0:
        report.error("websocket", "no WebSocket got a server ping during the whole run")
    return report


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--root", required=True, help="the server's document root (bodies are checked)")
    ap.add_argument("--duration", type=float, required=True, help="seconds")
    ap.add_argument("--new-rate", type=float, default=100, help="new-connection GETs per second")
    ap.add_argument("--range-rate", type=float, default=100, help="range requests per second")
    ap.add_argument("--conditional-rate", type=float, default=100, help="conditional requests per second")
    ap.add_argument("--ws", type=int, default=4, help="WebSocket connections")
    ap.add_argument("--ws-rate", type=float, default=20, help="messages per second per WebSocket")
    ap.add_argument("--ws-idle", type=float, default=7, help="seconds of quiet (> server ping interval)")
    ap.add_argument("--ws-idle-every", type=float, default=30, help="seconds between quiet spells")
    ap.add_argument("--timeout", type=float, default=10, help="seconds to wait for any answer")
    return ap.parse_args()


def main():
    args = parse_args()
    try:
        report = asyncio.run(run(args))
    except (Failure, OSError, asyncio.TimeoutError) as e:
        print(f"soak.py: cannot start: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(report.as_json()), flush=True)


if __name__ == "__main__":
    main()
