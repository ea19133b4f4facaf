#!/usr/bin/env python3
"""Holds N idle connections (default 10,000) on a running gateway, half of
them with a partial request head, and checks that active requests stay fast.
Prints the gateway's RSS before/after and the memory per idle connection.

    scripts/idle_conns.py --proxy 127.0.0.1:8081 --pid $(pgrep -n ringgate) [--conns 10000]

The gateway needs --max-connections above N (per shard) and a header timeout
longer than the run (e.g. --header-timeout-ms 120000 --idle-timeout-ms 120000).
"""
import argparse, resource, socket, sys, time


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


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
    assert data.startswith(b"HTTP/1.1 200"), data[:40]
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    a = ap.parse_args()
    host, port = a.proxy.rsplit(":", 1)
    port = int(port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < a.conns + 100:
        sys.exit(f"fd limit {hard} is too low for {a.conns} connections")
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
    per = (after - before) * 1024 / a.conns
    print(f"{a.conns} idle connections opened in {opened:.1f}s")
    print(f"RSS {before} KiB -> {after} KiB: {per:.0f} bytes per idle connection")
    print(f"median /__/ping latency: {base_lat*1e3:.2f} ms idle-free, {lat*1e3:.2f} ms with {a.conns} idle")
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
