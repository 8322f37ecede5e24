#!/usr/bin/env python3
"""Idle-connection memory: open K keep-alive connections to a running server and measure it.

Usage: benches/idle_connections.py K --pid PID [--host 127.0.0.1] [--ports 8001-8030] [--ws]

Each connection completes one GET / (so it went through the whole request path and holds
whatever an idle keep-alive connection holds), then stays open and idle. With --ws, each
completes a WebSocket upgrade on /ws instead (offering permessage-deflate, as browsers do)
and stays open as an idle WebSocket. Connections are
spread round-robin over the ports. The script reports the server's resident memory (VmRSS of
PID) before and after, as bytes per idle connection, and the kernel's slab growth over the
same interval (shared by both ends of each loopback connection, so per connection it counts
one client socket and one server socket). It closes every connection before exiting.
"""

import argparse
import base64
import os
import resource
import socket
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
    args = ap.parse_args()
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
            if args.ws:
                status = upgrade(s, args.host, path)
            else:
                s.sendall(request)
                status = read_response(s)
            if status != expected:
                raise RuntimeError(f"connection {i}: status {status}")
            socks.append(s)
        opened = time.monotonic() - started
        time.sleep(1.0)  # let the server settle (pool trimming, metrics reports)
        rss1, slab1 = rss_bytes(args.pid), slab_bytes()
        n = len(socks)
        kind = "WebSocket" if args.ws else "HTTP keep-alive"
        print(f"idle {kind} connections: {n} (opened in {opened:.1f} s)")
        print(f"server RSS: {rss0 / 1048576:.1f} MiB -> {rss1 / 1048576:.1f} MiB, "
              f"{(rss1 - rss0) / n:.0f} bytes per idle connection")
        print(f"kernel slab: +{(slab1 - slab0) / 1048576:.1f} MiB, "
              f"{(slab1 - slab0) / n:.0f} bytes per connection (client + server socket)")
        if not args.ws:
            # Still alive and answering?
            socks[0].sendall(request)
            assert read_response(socks[0]) == 200
    finally:
        for s in socks:
            s.close()


if __name__ == "__main__":
    main()
