#!/usr/bin/env python3
"""Slow clients: keep N slow-loris connections and M slow readers open against one server.

Usage: benches/slow_clients.py --port PORT [--loris 5000] [--readers 500] [--status-file FILE]
           [--verify-file FILE] [--expect-408-after SECONDS] [--min-reader-life SECONDS] ...

A slow-loris connection sends a request head one byte every --loris-interval seconds (2) and
never finishes it. A slow reader sends a whole GET for --reader-path (/1m.bin) and then reads
--read-size bytes (1024) every --read-interval seconds (1), with the kernel's default receive
buffer unless --reader-rcvbuf is given; after a whole response it asks again on the same
connection. Whenever the server closes a connection (a slow-loris gets 408 from percore after its
header timeout, nginx closes without an answer), the attacker opens another, so the counts stay
near their targets. New connections (the first ones and the reconnections) are opened at most
--connect-rate per second. One epoll loop in one process; it needs loris + readers + a few
descriptors.

It runs until SIGTERM or SIGINT (or --duration seconds), then closes every connection and prints
one JSON object with what it saw: connections opened, how the server closed them (status line
received, plain close, reset), how long they had lived, reader bytes, and its own CPU time.
With --status-file it also rewrites that file (JSON, atomically) every second with the counts
open at that moment, so a script can wait for the ramp and sample the attack.

Checks (for the soak; off by default, as the bench only measures): --expect-408-after S counts a
slow-loris that the server closes without a 408, or earlier than S - 1 s, or that is still
waiting S + 5 s after it opened, as unexpected; --verify-file FILE compares every body byte a
reader receives with FILE and expects status 200; --min-reader-life S counts a reader that the
server closes sooner than S seconds after its request as unexpected. The summary's "unexpected"
is the number of such events, with the first few described in "unexpected_examples"; the exit
status is 0 either way unless the script itself fails.
"""

import argparse
import collections
import errno
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import struct
import sys
import time

TCP_CLOSE_WAIT = 8  # tcpi_state once the peer's FIN has arrived (linux/tcp_states.h)
MAX_EXAMPLES = 10


class Conn:
    """One attacking connection: a slow-loris ("loris") or a slow reader ("reader")."""

    __slots__ = ("sock", "kind", "connected", "opened", "sent", "got", "alive", "body",
                 "length", "head_done", "requested")

    def __init__(self, sock, kind, now):
        self.sock = sock
        self.kind = kind
        self.connected = False
        self.opened = now  # when connect() was called
        self.requested = now  # when the current request's first byte went out
        self.sent = 0  # head bytes sent (loris)
        self.got = bytearray()  # response head bytes (both kinds)
        self.alive = True
        self.body = 0  # body bytes read of the current response (reader)
        self.length = None  # Content-Length of the current response (reader)
        self.head_done = False


class Stats:
    """Counters and lifetimes, reported at the end as JSON."""

    def __init__(self):
        self.opened = collections.Counter()
        self.outcomes = {"loris": collections.Counter(), "reader": collections.Counter()}
        self.lifetimes = {"loris": [], "reader": []}
        self.connect_errors = collections.Counter()
        self.reader_bytes = 0
        self.reader_responses = 0
        self.loris_bytes = 0
        self.unexpected = 0
        self.examples = []
        self.max_open = collections.Counter()

    def flag(self, what):
        self.unexpected += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(what)


class Attack:
    """The event loop: connects, trickles loris bytes, reads slowly, reconnects."""

    def __init__(self, args):
        self.args = args
        self.addr = (args.host, args.port)
        self.sel = selectors.EpollSelector()
        self.stats = Stats()
        self.open = collections.Counter()  # connected, by kind
        self.connecting = 0
        self.want = collections.deque(["loris"] * args.loris + ["reader"] * args.readers)
        # Every loris (every reader) waits the same interval, so due times come in order: a FIFO
        # per kind is a timer queue. Closed connections stay in it and are skipped.
        self.due = {"loris": collections.deque(), "reader": collections.deque()}
        self.pending = collections.deque()  # connecting sockets, oldest first (for timeouts)
        self.loris_head = (f"GET / HTTP/1.1\r\nHost: {args.host}\r\nUser-Agent: slow-loris\r\n"
                           "X-Padding: ").encode()
        self.reader_request = (f"GET {args.reader_path} HTTP/1.1\r\nHost: {args.host}\r\n"
                               "User-Agent: slow-reader\r\n\r\n").encode()
        self.expected = None
        if args.verify_file:
            with open(args.verify_file, "rb") as f:
                self.expected = f.read()
        self.tokens = 0.0
        self.last_refill = time.monotonic()
        self.stopping = False
        self.started = time.monotonic()
        self.last_status = 0.0

    # ------------------------------------------------------------ connecting

    def open_new(self, now):
        """Starts connections the targets are missing, within the connect rate."""
        self.tokens = min(self.args.connect_rate,
                          self.tokens + (now - self.last_refill) * self.args.connect_rate)
        self.last_refill = now
        while self.want and self.tokens >= 1:
            kind = self.want.popleft()
            self.tokens -= 1
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as e:
                self.stats.connect_errors[errno.errorcode.get(e.errno, str(e.errno))] += 1
                self.want.appendleft(kind)
                return
            sock.setblocking(False)
            if kind == "reader" and self.args.reader_rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.args.reader_rcvbuf)
            conn = Conn(sock, kind, now)
            err = sock.connect_ex(self.addr)
            if err not in (0, errno.EINPROGRESS):
                self.stats.connect_errors[errno.errorcode.get(err, str(err))] += 1
                sock.close()
                self.want.append(kind)
                continue
            self.sel.register(sock, selectors.EVENT_WRITE, conn)
            self.connecting += 1
            self.pending.append(conn)

    def expire_connects(self, now):
        """Gives up on connections that have not completed within --connect-timeout."""
        while self.pending and (not self.pending[0].alive or self.pending[0].connected):
            self.pending.popleft()
        while self.pending and now - self.pending[0].opened > self.args.connect_timeout:
            conn = self.pending.popleft()
            if conn.alive and not conn.connected:
                self.stats.connect_errors["timeout"] += 1
                self.connecting -= 1
                self.drop(conn, reconnect=True)

    def on_connected(self, conn, now):
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.connecting -= 1
        if err:
            self.stats.connect_errors[errno.errorcode.get(err, str(err))] += 1
            self.drop(conn, reconnect=True)
            return
        conn.connected = True
        conn.requested = now
        self.stats.opened[conn.kind] += 1
        self.open[conn.kind] += 1
        self.stats.max_open[conn.kind] = max(self.stats.max_open[conn.kind], self.open[conn.kind])
        if conn.kind == "loris":
            # The first byte goes at once: a server with deferred accept sees the connection.
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
            self.send_loris_byte(conn, now)
        else:
            # Readers are read on their own schedule, not on readiness.
            self.sel.unregister(conn.sock)
            try:
                conn.sock.sendall(self.reader_request)
            except OSError as e:
                self.closed_by_server(conn, now, f"send failed: {e.strerror}")
                return
            self.due["reader"].append((now + self.args.read_interval, conn))

    # ------------------------------------------------------------ slow-loris

    def send_loris_byte(self, conn, now):
        i = conn.sent
        byte = self.loris_head[i:i + 1] if i < len(self.loris_head) else b"a"
        try:
            conn.sock.send(byte)
        except BlockingIOError:
            pass
        except OSError:
            self.loris_read(conn, now)  # collect an answer already there, then the close
            if conn.alive:
                self.closed_by_server(conn, now, "reset")
            return
        conn.sent += 1
        self.stats.loris_bytes += 1
        self.due["loris"].append((now + self.args.loris_interval, conn))

    def loris_read(self, conn, now):
        """The server sent something (a 408) or closed: keep the answer, close on EOF."""
        try:
            while True:
                data = conn.sock.recv(4096)
                if not data:
                    self.closed_by_server(conn, now, "eof")
                    return
                if len(conn.got) < 4096:
                    conn.got += data
        except BlockingIOError:
            return
        except OSError:
            self.closed_by_server(conn, now, "reset")

    def check_loris(self, conn, now, outcome):
        """--expect-408-after: the server must answer 408 at its header timeout, not before."""
        limit = self.args.expect_408_after
        if not limit:
            return
        lived = now - conn.opened
        if outcome != "408":
            self.stats.flag(f"slow-loris closed after {lived:.1f} s with {outcome}, not 408")
        elif lived < limit - 1:
            self.stats.flag(f"slow-loris got 408 after {lived:.1f} s, before the {limit:g} s timeout")

    # ------------------------------------------------------------ slow reader

    def reader_tick(self, conn, now):
        """Reads one slice (if any arrived), verifies it, and notices the server's close."""
        try:
            data = conn.sock.recv(self.args.read_size)
        except BlockingIOError:
            data = None
        except OSError:
            self.closed_by_server(conn, now, "reset")
            return
        if data == b"":
            self.closed_by_server(conn, now, "eof")
            return
        if data:
            self.stats.reader_bytes += len(data)
            if not self.reader_consume(conn, data, now):
                return
        elif self.peer_closed(conn):
            # Everything the server sent has arrived and its FIN too: it has let go.
            self.closed_by_server(conn, now, "fin")
            return
        self.due["reader"].append((now + self.args.read_interval, conn))

    def peer_closed(self, conn):
        info = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return info[0] == TCP_CLOSE_WAIT

    def reader_consume(self, conn, data, now):
        """Tracks the response: head, then body; on its end asks again. False if closed."""
        if not conn.head_done:
            conn.got += data
            end = conn.got.find(b"\r\n\r\n")
            if end < 0:
                if len(conn.got) > 16384:
                    self.stats.flag("reader: no end of response head in 16 KiB")
                    self.drop(conn, reconnect=True)
                    return False
                return True
            head, data = bytes(conn.got[:end]), bytes(conn.got[end + 4:])
            conn.head_done = True
            status = head[9:12].decode("latin-1")
            conn.length = content_length(head)
            if self.expected is not None and status != "200":
                self.stats.flag(f"reader: status {status}")
        if data and self.expected is not None:
            if data != self.expected[conn.body:conn.body + len(data)]:
                self.stats.flag(f"reader: body bytes differ from the file at offset {conn.body}")
        conn.body += len(data)
        if conn.length is not None and conn.body >= conn.length:
            # A whole response read: ask again on the same connection.
            self.stats.reader_responses += 1
            conn.got = bytearray(data[len(data) - (conn.body - conn.length):]
                                 if conn.body > conn.length else b"")
            conn.head_done, conn.body, conn.length = False, 0, None
            conn.requested = now
            try:
                conn.sock.sendall(self.reader_request)
            except OSError:
                self.closed_by_server(conn, now, "reset")
                return False
        return True

    # ------------------------------------------------------------ closing

    def closed_by_server(self, conn, now, how):
        """Records how and when the server let go, and replaces the connection."""
        status = conn.got[9:12].decode("latin-1") if conn.got.startswith(b"HTTP/") else ""
        if conn.kind == "loris":
            outcome = status if status else f"no answer ({how})"
            self.check_loris(conn, now, outcome)
        else:
            outcome = f"closed ({how})"
            lived = now - conn.requested
            minimum = self.args.min_reader_life
            if minimum and lived < minimum:
                self.stats.flag(f"reader closed by the server {lived:.1f} s after its request ({how})")
        self.stats.outcomes[conn.kind][outcome] += 1
        self.stats.lifetimes[conn.kind].append(now - conn.opened)
        self.drop(conn, reconnect=True)

    def drop(self, conn, reconnect):
        if not conn.alive:
            return
        conn.alive = False
        if conn.connected:
            self.open[conn.kind] -= 1
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if reconnect and not self.stopping:
            self.want.append(conn.kind)

    # ------------------------------------------------------------ the loop

    def fire_due(self, now):
        """Runs the loris sends and reader reads whose time has come."""
        for kind, queue in self.due.items():
            while queue and queue[0][0] <= now:
                _, conn = queue.popleft()
                if not conn.alive:
                    continue
                if kind == "loris":
                    self.send_loris_byte(conn, now)
                    self.check_loris_overdue(conn, now)
                else:
                    self.reader_tick(conn, now)

    def check_loris_overdue(self, conn, now):
        limit = self.args.expect_408_after
        if limit and conn.alive and now - conn.opened > limit + 5:
            self.stats.flag(f"slow-loris still open {now - conn.opened:.1f} s after it connected")
            self.stats.outcomes["loris"]["dropped by us: overdue"] += 1
            self.drop(conn, reconnect=True)

    def next_timeout(self, now):
        heads = [q[0][0] for q in self.due.values() if q]
        soonest = min(heads) if heads else now + 0.1
        if self.want:
            soonest = min(soonest, now + 0.01)
        return max(0.0, min(soonest - now, 0.1))

    def run(self):
        end = self.started + self.args.duration if self.args.duration else None
        while not self.stopping:
            now = time.monotonic()
            if end is not None and now >= end:
                break
            self.open_new(now)
            self.fire_due(now)
            self.expire_connects(now)
            if self.args.status_file and now - self.last_status >= 1:
                self.write_status(now)
            for key, mask in self.sel.select(self.next_timeout(time.monotonic())):
                conn = key.data
                if not conn.alive:
                    continue
                if not conn.connected:
                    self.on_connected(conn, time.monotonic())
                elif conn.kind == "loris":
                    self.loris_read(conn, time.monotonic())
        self.stopping = True
        self.close_all()

    def close_all(self):
        for conn in [c for _, c in self.due["loris"]] + [c for _, c in self.due["reader"]] + list(
                self.pending):
            self.drop(conn, reconnect=False)

    def snapshot(self, now):
        return {
            "elapsed": round(now - self.started, 1),
            "loris_open": self.open["loris"],
            "readers_open": self.open["reader"],
            "connecting": self.connecting,
            "waiting_to_connect": len(self.want),
            "loris_opened": self.stats.opened["loris"],
            "readers_opened": self.stats.opened["reader"],
            "unexpected": self.stats.unexpected,
        }

    def write_status(self, now):
        self.last_status = now
        tmp = self.args.status_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.snapshot(now), f)
        os.replace(tmp, self.args.status_file)

    def summary(self):
        now = time.monotonic()
        times = os.times()
        out = self.snapshot(now)
        out.update({
            "loris_target": self.args.loris,
            "readers_target": self.args.readers,
            "max_open": dict(self.stats.max_open),
            "loris_outcomes": dict(self.stats.outcomes["loris"]),
            "reader_outcomes": dict(self.stats.outcomes["reader"]),
            "loris_lifetime_s": spread(self.stats.lifetimes["loris"]),
            "reader_lifetime_s": spread(self.stats.lifetimes["reader"]),
            "loris_bytes_sent": self.stats.loris_bytes,
            "reader_bytes": self.stats.reader_bytes,
            "reader_responses_completed": self.stats.reader_responses,
            "connect_errors": dict(self.stats.connect_errors),
            "cpu_s": round(times.user + times.system, 2),
            "unexpected_examples": self.stats.examples,
        })
        return out


def content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def spread(values):
    """min / median / max of a list of seconds, or None when empty."""
    if not values:
        return None
    return {"n": len(values), "min": round(min(values), 2),
            "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--loris", type=int, default=5000, help="slow-loris connections to keep open")
    ap.add_argument("--readers", type=int, default=500, help="slow readers to keep open")
    ap.add_argument("--loris-interval", type=float, default=2.0, help="seconds between head bytes")
    ap.add_argument("--reader-path", default="/1m.bin", help="what the readers request")
    ap.add_argument("--read-size", type=int, default=1024, help="bytes per read")
    ap.add_argument("--read-interval", type=float, default=1.0, help="seconds between reads")
    ap.add_argument("--reader-rcvbuf", type=int, default=0,
                    help="SO_RCVBUF of a reader's socket (0: the kernel's default)")
    ap.add_argument("--connect-rate", type=float, default=1000, help="new connections per second")
    ap.add_argument("--connect-timeout", type=float, default=10)
    ap.add_argument("--duration", type=float, default=0, help="stop after this long (0: on a signal)")
    ap.add_argument("--status-file", default=None, help="rewrite this JSON file every second")
    ap.add_argument("--expect-408-after", type=float, default=0,
                    help="check: a slow-loris gets 408 after this many seconds (0: no check)")
    ap.add_argument("--verify-file", default=None, help="check: readers' bodies equal this file")
    ap.add_argument("--min-reader-life", type=float, default=0,
                    help="check: the server keeps a reader at least this long (0: no check)")
    return ap.parse_args()


def main():
    args = parse_args()
    need = args.loris + args.readers + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and need > hard:
        sys.exit(f"slow_clients.py: {need} descriptors needed, the hard limit is {hard}: "
                 "split the attack over several processes")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    attack = Attack(args)

    def stop(_signum, _frame):
        attack.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    attack.run()
    print(json.dumps(attack.summary()), flush=True)


if __name__ == "__main__":
    main()
