#!/usr/bin/env python3
"""Admin write latency and proxied throughput with and without concurrent admin writes.

Starts the release binary (RINGGATE_BIN, else $CARGO_TARGET_DIR/release/ringgate, else
target/release/ringgate) with a mock upstream and a temporary data dir, then:
  1. 1,000 admin writes (a rule PUT, alternating its name) on one keep-alive connection:
     p50 / p99 / max time to the 2xx (validated, fsync'd, acknowledged by every shard);
  2. wrk -t1 -c32 -d10s on a proxied chat completion, without admin writes, then with
     100 admin writes per second running concurrently: both req/s and their ratio.
python3 stdlib only.
"""
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

SHARDS = os.environ.get("SHARDS", "2")
DURATION = os.environ.get("DURATION", "10s")


def binary():
    if os.environ.get("RINGGATE_BIN"):
        return os.environ["RINGGATE_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    return os.path.join(target, "release", "ringgate")


def wait_line(proc, prefix, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            # Keep draining stdout so the child never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return line
    sys.exit(f"never saw {prefix!r}")


class Admin:
    def __init__(self, addr):
        host, port = addr.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)

    def expect(self, method, path, body, status):
        got, value = self.call(method, path, body)
        if got != status:
            sys.exit(f"{method} {path}: {got} {value}")
        return value


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def wrk(proxy, key, script_dir):
    script = os.path.join(script_dir, "chat.lua")
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n')
        f.write(f"wrk.body = {json.dumps(body)}\n")
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
        f.write(f'wrk.headers["Authorization"] = "Bearer {key}"\n')
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{DURATION}", "-s", script, f"http://{proxy}/v1/chat/completions"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return rps, int(errors.group(1)) if errors else 0, socket_errors.group(1) if socket_errors else "none"


def main():
    exe = binary()
    tmp = tempfile.mkdtemp(prefix="ringgate-admin-bench-")
    procs = []
    try:
        mock = subprocess.Popen([exe, "mock-upstream", "--listen", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, text=True)
        procs.append(mock)
        mock_addr = wait_line(mock, "ringgate mock-upstream listening on http://").strip().rsplit("http://", 1)[1]
        gw = subprocess.Popen([exe, "serve", "--proxy", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                               "--data-dir", os.path.join(tmp, "data"), "--shards", SHARDS,
                               "--log-level", "error"], stdout=subprocess.PIPE, text=True)
        procs.append(gw)
        ready = wait_line(gw, "ringgate ready:")
        proxy = re.search(r"proxy http://(\S+)", ready).group(1)
        admin_addr = re.search(r"admin http://(\S+)", ready).group(1)

        a = Admin(admin_addr)
        g = a.expect("POST", "/api/v1/gateways", {"name": "bench"}, 201)["id"]
        base = f"/api/v1/gateways/{g}"
        host, port = mock_addr.split(":")
        up = a.expect("POST", f"{base}/upstreams",
                      {"name": "llm", "targets": [{"host": host, "port": int(port)}]}, 201)["id"]
        svc = a.expect("POST", f"{base}/services", {"name": "chat", "type": "upstream", "upstream_id": up}, 201)["id"]
        rule_body = lambda n: {"name": n, "path": "/v1", "methods": ["GET", "POST"], "service_id": svc}
        rule = a.expect("POST", f"{base}/rules", rule_body("openai"), 201)["id"]
        key = a.expect("POST", f"{base}/keys", {"name": "bench"}, 201)["key"]

        # 1. Admin write latency.
        times = []
        for i in range(1000):
            t = time.perf_counter()
            a.expect("PUT", f"{base}/rules/{rule}", rule_body(f"openai-{i % 2}"), 200)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        print(f"admin writes: 1000 rule PUTs, ack (validated + fsync'd + every shard applied): "
              f"p50 {percentile(times, 0.50):.3f} ms, p99 {percentile(times, 0.99):.3f} ms, max {times[-1]:.3f} ms")

        # 2. Proxied throughput, quiet and under 100 admin writes per second.
        quiet, quiet_err, quiet_sock = wrk(proxy, key, tmp)
        stop = threading.Event()
        written = []

        def writer():
            w = Admin(admin_addr)
            i = 0
            next_at = time.perf_counter()
            while not stop.is_set():
                t = time.perf_counter()
                w.expect("PUT", f"{base}/rules/{rule}", rule_body(f"busy-{i % 2}"), 200)
                written.append((time.perf_counter() - t) * 1000)
                i += 1
                next_at += 0.01
                time.sleep(max(0.0, next_at - time.perf_counter()))

        th = threading.Thread(target=writer)
        th.start()
        busy, busy_err, busy_sock = wrk(proxy, key, tmp)
        stop.set()
        th.join()
        written.sort()
        print(f"proxied chat completions, wrk -t1 -c32 -d{DURATION}, {SHARDS} shards:")
        print(f"  no admin writes:           {quiet:10.0f} req/s (non-2xx {quiet_err}, socket errors {quiet_sock})")
        print(f"  100 admin writes/s ({len(written)} done, ack p50 {percentile(written, 0.5):.2f} ms, "
              f"p99 {percentile(written, 0.99):.2f} ms): {busy:10.0f} req/s (non-2xx {busy_err}, socket errors {busy_sock})")
        print(f"  ratio with/without writes: {busy / quiet:.3f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
