#!/usr/bin/env python3
"""Per-connection memory: open K connections to a running server, leave each in one state, and
measure the server.

Usage: benches/idle_connections.py K --pid PID [--host 127.0.0.1] [--ports 8001-8030] [--ws]
           [--state idle|mid-head|mid-body] [--after SECONDS] [--tls [--cafile CA.pem]]

Each connection completes one GET / (so it went through the whole request path and holds
whatever an idle keep-alive connection holds), then stays open and idle. With --ws, each
completes a WebSocket upgrade on /ws instead (offering permessage-deflate, as browsers do)
and stays open as an idle WebSocket. --state leaves each connection as a slow or hostile client
would instead: mid-head (a slow-loris: part of a second request head sent, the rest never
comes), mid-body (a request whose body stops after 10 of 1000 bytes); with --ws, mid-head and
mid-body both mean a frame that stops after its header and 10 of 1000 payload bytes.
Connections are spread round-robin over the ports. The script reports the server's resident
memory (VmRSS of PID) before and after, as bytes per connection, and the kernel's slab growth
over the same interval (shared by both ends of each loopback connection, so per connection it
counts one client socket and one server socket). It closes every connection before exiting,
and with --after N reports the server's memory N seconds after that, against before.

With --tls, every connection first completes a TLS handshake (Python's ssl module: TLS 1.3
unless the server offers only 1.2, ALPN http/1.1), so --ports must name TLS ports; --cafile
verifies the server's certificate against that CA (without it nothing is verified: the figure
is the same either way).
"""

import argparse
import base64
import os
import resource
import socket
import ssl
import sys
import time


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def slab_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1]) * 1024
    return 0


def parse_ports(spec):
    ports = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            ports.extend(range(int(a), int(b) + 1))
        else:
            ports.append(int(part))
    return ports


def read_head(sock):
    """Reads until the end of a response head; returns everything read so far."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("server closed the connection")
        data += chunk
    return data


def read_response(sock):
    """Reads one Content-Length framed response; returns the status code."""
    head, _, body = read_head(sock).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("short body")
        body += chunk
    return int(head.split(b" ")[1])


def upgrade(sock, host, path):
    """Completes a WebSocket handshake; returns the status code."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n").encode())
    return int(read_head(sock).split(b" ")[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("count", type=int)
    ap.add_argument("--pid", type=int, required=True, help="server process to measure")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ports", default="8001-8030")
    ap.add_argument("--path", default=None, help="default: / (HTTP) or /ws (--ws)")
    ap.add_argument("--ws", action="store_true", help="idle WebSockets instead of keep-alive")
    ap.add_argument("--state", choices=["idle", "mid-head", "mid-body"], default="idle")
    ap.add_argument("--after", type=float, default=0, help="report RSS this long after closing")
    ap.add_argument("--tls", action="store_true", help="speak TLS (the ports are TLS ports)")
    ap.add_argument("--cafile", default=None, help="with --tls: verify against this CA")
    args = ap.parse_args()
    tls = tls_context(args) if args.tls else None
    path = args.path or ("/ws" if args.ws else "/")
    expected = 101 if args.ws else 200

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.count + 16 > hard:
        sys.exit(f"need {args.count + 16} open files, the hard limit is {hard}")

    ports = parse_ports(args.ports)
    request = f"GET {path} HTTP/1.1\r\nHost: {args.host}\r\n\r\n".encode()
    time.sleep(0.5)
    rss0, slab0 = rss_bytes(args.pid), slab_bytes()
    socks = []
    started = time.monotonic()
    try:
        for i in range(args.count):
            s = socket.create_connection((args.host, ports[i % len(ports)]), timeout=10)
            if tls is not None:
                s = tls.wrap_socket(s, server_hostname=args.host)
            if args.ws:
                status = upgrade(s, args.host, path)
            else:
                s.sendall(request)
                status = read_response(s)
            if status != expected:
                raise RuntimeError(f"connection {i}: status {status}")
            if args.state != "idle":
                s.sendall(stall(args))
            socks.append(s)
        opened = time.monotonic() - started
        time.sleep(1.0)  # let the server settle (pool trimming, metrics reports)
        rss1, slab1 = rss_bytes(args.pid), slab_bytes()
        n = len(socks)
        kind = ("WebSocket" if args.ws else "HTTP keep-alive") + (" over TLS" if tls else "")
        print(f"{args.state} {kind} connections: {n} (opened in {opened:.1f} s)")
        print(f"server RSS: {rss0 / 1048576:.1f} MiB -> {rss1 / 1048576:.1f} MiB, "
              f"{(rss1 - rss0) / n:.0f} bytes per {args.state} connection")
        print(f"kernel slab: +{(slab1 - slab0) / 1048576:.1f} MiB, "
              f"{(slab1 - slab0) / n:.0f} bytes per connection (client + server socket)")
        if not args.ws and args.state == "idle":
            # Still alive and answering?
            socks[0].sendall(request)
            assert read_response(socks[0]) == 200
    finally:
        for s in socks:
            s.close()
    if args.after > 0:
        time.sleep(args.after)
        rss2 = rss_bytes(args.pid)
        print(f"server RSS {args.after:g} s after closing: {rss2 / 1048576:.1f} MiB "
              f"({(rss2 - rss0) / 1048576:+.1f} MiB against before)")


def tls_context(args):
    """A client context offering ALPN http/1.1, verifying against --cafile if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if args.cafile:
        ctx.load_verify_locations(args.cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def stall(args):
    """The bytes that leave a connection in the chosen state, waiting for more."""
    if args.ws:
        # A masked binary frame announcing 1000 bytes, of which 10 arrive.
        return bytes([0x82, 0x80 | 126]) + (1000).to_bytes(2, "big") + b"\x01\x02\x03\x04" + b"x" * 10
    if args.state == "mid-head":
        return f"GET / HTTP/1.1\r\nHost: {args.host}\r\nUser-Agent: slow".encode()
    return (f"POST / HTTP/1.1\r\nHost: {args.host}\r\nContent-Length: 1000\r\n\r\n").encode() + b"x" * 10


if __name__ == "__main__":
    main()
