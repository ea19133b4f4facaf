#!/usr/bin/env python3
"""Holds N idle connections (default 10,000) on a running proxy and prints the
memory (RSS) each one costs it.

Two shapes of idle connection:

* default: half of them with a partial request head (slowloris-like), and a
  check that active requests (GET /__/ping) stay fast meanwhile;
* --path: every connection is served one keep-alive request (METHOD PATH with
  --header/--body; the answer must be 2xx) and is then left idle. This works on
  any HTTP/1.1 proxy (scripts/compare-nginx.sh runs it against nginx too).

    scripts/idle_conns.py --proxy 127.0.0.1:8081 --pid $(pgrep -n ringgate) [--conns 10000]
    scripts/idle_conns.py --proxy 127.0.0.1:8081 --pid PID [--pid PID2 ...] --conns 10000 \\
        --path /v1/chat/completions --method POST --header 'Authorization: Bearer KEY' --body '{...}'

RSS is summed over every --pid (nginx: master and workers). The last line is
machine-readable: "RGIDLE conns=N served=N rss_before_kib=N rss_after_kib=N
kb_per_conn=X". Exits 1 when a connection fails or an answer is not 2xx.

The proxy must allow N client connections (ringgate: --max-connections per
shard) and keep them longer than the run (ringgate: --idle-timeout-ms and, for
partial heads, --header-timeout-ms, e.g. 120000).
"""
import argparse
import resource
import socket
import sys
import time

BATCH = 100  # connections opened and sent to before their answers are read


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def ping(host, port):
    t = time.perf_counter()
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET /__/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        c = s.recv(4096)
        if not c:
            break
        data += c
    s.close()
    if not data.startswith(b"HTTP/1.1 200"):
        sys.exit(f"/__/ping answered {data[:40]!r}")
    return time.perf_counter() - t


def build_request(a, host):
    head = [f"{a.method} {a.path} HTTP/1.1", f"Host: {host}"]
    head += a.header
    body = a.body.encode()
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def read_answer(s):
    """Reads one HTTP/1.1 answer (Content-Length or chunked) and returns its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        c = s.recv(65536)
        if not c:
            raise ConnectionError(f"closed before the answer head ({data[:40]!r})")
        data += c
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if "content-length" in fields:
        need = int(fields["content-length"])
        while len(rest) < need:
            c = s.recv(65536)
            if not c:
                raise ConnectionError("closed inside the answer body")
            rest += c
    elif fields.get("transfer-encoding", "").lower() == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            c = s.recv(65536)
            if not c:
                raise ConnectionError("closed inside the chunked answer body")
            rest += c
    return status


def open_served(host, port, n, request):
    """n connections, each served one request and left open; fails on the first error."""
    conns = []
    try:
        while len(conns) < n:
            batch = [socket.create_connection((host, port), timeout=10) for _ in range(min(BATCH, n - len(conns)))]
            for s in batch:
                s.sendall(request)
            for s in batch:
                status = read_answer(s)
                if not 200 <= status < 300:
                    sys.exit(f"connection {len(conns) + 1} was answered {status}")
                conns.append(s)
    except (OSError, ValueError, IndexError) as e:
        sys.exit(f"connection {len(conns) + 1} of {n} failed: {e}")
    return conns


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", required=True, help="HOST:PORT")
    ap.add_argument("--pid", type=int, action="append", required=True, help="process whose RSS counts (repeatable)")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--path", help="serve each connection one request to this path first")
    ap.add_argument("--method", default="GET")
    ap.add_argument("--header", action="append", default=[], help="'Name: value' (repeatable)")
    ap.add_argument("--body", default="")
    a = ap.parse_args()
    if a.conns < 1:
        sys.exit("--conns must be at least 1")
    host, port = a.proxy.rsplit(":", 1)
    port = int(port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < a.conns + 100:
        sys.exit(f"fd limit {hard} is too low for {a.conns} connections (raise it: ulimit -Hn)")

    if a.path:
        request = build_request(a, host)
        # Warm-up: the proxy's pools and upstream connections exist before the baseline.
        for s in open_served(host, port, 10, request):
            s.close()
        time.sleep(0.2)
        before = rss_kib(a.pid)
        t = time.time()
        conns = open_served(host, port, a.conns, request)
        opened = time.time() - t
        time.sleep(1)  # let freed request buffers settle before measuring
        after = rss_kib(a.pid)
        per = (after - before) / a.conns
        print(f"{a.conns} connections served one {a.method} {a.path} each in {opened:.1f}s, then left idle")
        print(f"RSS {before} KiB -> {after} KiB: {per:.1f} KiB per idle connection")
        print(f"RGIDLE conns={a.conns} served={len(conns)} rss_before_kib={before} rss_after_kib={after} kb_per_conn={per:.2f}")
    else:
        base_lat = sorted(ping(host, port) for _ in range(50))[25]
        before = rss_kib(a.pid)
        conns = []
        t = time.time()
        for i in range(a.conns):
            s = socket.create_connection((host, port), timeout=10)
            if i % 2 == 0:
                s.sendall(b"GET /idle HTTP/1.1\r\nHost:")
            conns.append(s)
        opened = time.time() - t
        time.sleep(1)  # let the gateway accept the backlog before measuring
        after = rss_kib(a.pid)
        lat = sorted(ping(host, port) for _ in range(50))[25]
        per = (after - before) / a.conns
        print(f"{a.conns} idle connections opened in {opened:.1f}s")
        print(f"RSS {before} KiB -> {after} KiB: {per * 1024:.0f} bytes per idle connection")
        print(f"median /__/ping latency: {base_lat*1e3:.2f} ms idle-free, {lat*1e3:.2f} ms with {a.conns} idle")
        print(f"RGIDLE conns={a.conns} served=0 rss_before_kib={before} rss_after_kib={after} kb_per_conn={per:.2f}")
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
