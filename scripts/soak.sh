#!/usr/bin/env bash
# Soak test: a bounded run (DURATION, default 10m) of mixed traffic through a
# local gateway — normal and streaming completions, upstream faults, malicious
# raw requests, slow clients — with admin config writes every 2 s. Samples the
# gateway's RSS and open fds every 10 s, counts outcomes by kind and fails
# (exit 1) when RSS grew more than 10% after warm-up, fds leaked, or an
# unexpected 5xx / error appeared. Loopback only; everything it starts is
# stopped on exit or Ctrl-C.
#
#   scripts/soak.sh                 # 10 minutes
#   DURATION=2m scripts/soak.sh     # shorter (s/m/h suffixes)
#   RINGGATE_BIN=target/debug/ringgate scripts/soak.sh
set -euo pipefail
RG_TAG=soak
. "$(dirname "$0")/lib.sh"
rg_install_traps
rg_need_cmds python3 curl

DURATION="${DURATION:-10m}"
case "$DURATION" in
  *h) SECS=$(( ${DURATION%h} * 3600 )) ;;
  *m) SECS=$(( ${DURATION%m} * 60 )) ;;
  *s) SECS=${DURATION%s} ;;
  *) SECS=$DURATION ;;
esac
rg_ensure_binary
rg_mktemp_dir WORK ringgate-soak
rg_start_mock "$WORK"

KEY="rg-soak-key-0001"
pport="$(rg_free_port)"; aport="$(rg_free_port)"
while [[ "$aport" == "$pport" ]]; do aport="$(rg_free_port)"; done
python3 - "$RG_MOCK_HOST" "$RG_MOCK_PORT" "$KEY" > "$WORK/config.json" <<'PY'
import json, sys
host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print(json.dumps({"gateways": [{
    "name": "soak", "subdomain": "soak",
    "upstreams": [{"name": "llm", "algorithm": "round-robin",
                   "targets": [{"host": host, "port": port, "protocol": "http", "weight": 1}]}],
    "services": [{"name": "svc", "type": "upstream", "upstream": "llm"}],
    "rules": [{"name": "all", "path": "/", "service": "svc"}],
    "keys": [{"name": "k", "key": key}],
}]}))
PY
rg_spawn "ringgate serve" "$WORK/ringgate.log" "$RINGGATE_BIN" serve \
  --proxy "127.0.0.1:$pport" --admin "127.0.0.1:$aport" --data-dir "$WORK/data" \
  --config "$WORK/config.json" --shards "${SHARDS:-2}" --max-connections 4096 \
  --upstream-timeout-ms 2000 --header-timeout-ms 2000 --body-timeout-ms 2000 \
  --send-timeout-ms 2000 --idle-timeout-ms 5000 --log-level error
rg_wait_line "$RG_LAST_PID" "$WORK/ringgate.log" '^ringgate ready' 20 "ringgate serve"
GW_PID="$RG_LAST_PID"
rg_log "gateway pid $GW_PID on 127.0.0.1:$pport (admin $aport); running for ${SECS}s"

python3 - "$GW_PID" "$pport" "$aport" "$KEY" "$SECS" "$WORK/config.json" <<'PY'
import collections, http.client, json, os, random, socket, sys, threading, time

pid, pport, aport, key, secs, config_path = sys.argv[1:7]
pid, pport, aport, secs = int(pid), int(pport), int(aport), int(secs)
config = json.load(open(config_path))
deadline = time.time() + secs
warm = max(20, secs // 6)
counts = collections.Counter()
lock = threading.Lock()
stop = threading.Event()

def count(kind, outcome):
    with lock:
        counts[(kind, outcome)] += 1

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))

CHAT = json.dumps({"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}]})
STREAM = json.dumps({"model": "gpt-3.5-turbo", "stream": True,
                     "messages": [{"role": "user", "content": "Hi"}]})

def worker(kind, body, extra, expect):
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", pport, timeout=10)
            hdrs = {"X-TG-API-Key": key, "Content-Type": "application/json"}
            hdrs.update(extra() if callable(extra) else extra)
            conn.request("POST", "/v1/chat/completions", body=body, headers=hdrs)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            count(kind, f"{status}" if status in expect else f"UNEXPECTED {status}")
            if resp.will_close:
                conn.close(); conn = None
        except Exception as e:
            # A fault may cut a response short: expected for the faulty kind only.
            count(kind, "truncated" if kind == "faulty" else f"UNEXPECTED {type(e).__name__}")
            if conn: conn.close()
            conn = None

FAULTS = ["close", "reset-mid-body", "garbage", "stall", "close-after", "slow-body"]

MALICIOUS = [
    (b"POST /v1/x HTTP/1.1\r\nHost: s\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
    (b"GET /v1/x HTTP/1.1\r\nHost : s\r\n\r\n", 400),
    (b"GET /v1/x HTTP/1.1\r\nHost: s\r\nX: a\r\n b\r\n\r\n", 400),
    (b"GET /v1/x HTTP/1.1\r\nHost: s\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"GET http://evil/ HTTP/1.1\r\nHost: s\r\n\r\n", 400),
    (b"GET /v1/x HTTP/1.1\r\nHost: s\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431),
    (b"GET /v1/x HTTP/1.1\r\nHost: s\r\nX-TG-API-Key: wrong\r\n\r\n", 401),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    (b"GET /v1/x HTTP/1.1\r\nHost: s\r\n", 408),  # never finished
]

def malicious():
    while not stop.is_set():
        raw, want = random.choice(MALICIOUS)
        try:
            s = socket.create_connection(("127.0.0.1", pport), timeout=5)
            s.sendall(raw)
            data = b""
            while not data.endswith(b"}") and len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk: break
                data += chunk
            s.close()
            got = int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.1 ") else 0
            count("malicious", str(got) if got == want else f"UNEXPECTED {got} (want {want})")
        except Exception as e:
            count("malicious", f"UNEXPECTED {type(e).__name__}")

def slow_reader():
    # Asks for a stream and reads it slowly, sometimes leaves mid-way.
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", pport), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: s\r\nX-TG-API-Key: {key}\r\n"
                   f"x-mock-chunks: 50\r\nx-mock-interval-ms: 5\r\nContent-Length: {len(STREAM)}\r\n\r\n{STREAM}")
            s.sendall(req.encode())
            for _ in range(random.randint(1, 20)):
                if not s.recv(512): break
                time.sleep(0.05)
            s.close()
            count("slow-reader", "done")
        except Exception as e:
            count("slow-reader", f"UNEXPECTED {type(e).__name__}")

def admin():
    n = 0
    while not stop.is_set():
        n += 1
        cfg = json.loads(json.dumps(config))
        cfg["gateways"][0]["rules"].append(
            {"name": f"extra{n % 5}", "path": f"/extra/{n % 5}", "service": "svc"})
        try:
            c = http.client.HTTPConnection("127.0.0.1", aport, timeout=10)
            c.request("PUT", "/api/v1/config", body=json.dumps(cfg),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse(); r.read(); c.close()
            count("admin", str(r.status) if r.status < 300 else f"UNEXPECTED {r.status}")
        except Exception as e:
            count("admin", f"UNEXPECTED {type(e).__name__}")
        stop.wait(2)

threads = [
    threading.Thread(target=worker, args=("normal", CHAT, {}, {200})) for _ in range(4)
] + [
    threading.Thread(target=worker, args=("streaming", STREAM, {"x-mock-chunks": "20", "x-mock-interval-ms": "2"}, {200}))
    for _ in range(2)
] + [
    threading.Thread(target=worker, args=("faulty", CHAT,
        lambda: {"x-mock-fault": random.choice(FAULTS)}, {200, 502, 504})),
    threading.Thread(target=malicious), threading.Thread(target=malicious),
    threading.Thread(target=slow_reader),
    threading.Thread(target=admin),
]
fd_base = fds()
start = time.time()
for t in threads: t.daemon = True; t.start()
samples = []
warm_rss = None
while time.time() < deadline:
    time.sleep(min(10, max(0, deadline - time.time())))
    t = int(time.time() - start)
    r, f = rss_kib(), fds()
    samples.append((t, r, f))
    if warm_rss is None and t >= warm:
        warm_rss = r
    with lock:
        total = sum(counts.values())
    print(f"[soak] t={t:4d}s rss={r} KiB fds={f} requests={total}", flush=True)
stop.set()
for t in threads: t.join(timeout=15)
# Idle connections close (idle timeout 5 s, pool idle timeout 30 s): wait for fds to settle.
settle = time.time() + 45
while fds() > fd_base and time.time() < settle:
    time.sleep(1)
fd_end = fds()
final_rss = rss_kib()
warm_rss = warm_rss or samples[0][1]

print("\n== soak summary ==")
print(f"duration {secs}s, warm-up {warm}s")
print("RSS samples (t, KiB): " + ", ".join(f"{t}:{r}" for t, r, _ in samples))
print(f"RSS after warm-up {warm_rss} KiB, final {final_rss} KiB (x{final_rss / warm_rss:.3f})")
print(f"open fds: baseline {fd_base}, end {fd_end}")
print("outcomes by kind:")
unexpected = 0
for (kind, outcome), n in sorted(counts.items()):
    print(f"  {kind:12s} {outcome:28s} {n}")
    if outcome.startswith("UNEXPECTED"):
        unexpected += n
ok = True
if final_rss > 1.1 * warm_rss:
    print("FAIL: RSS grew more than 10% after warm-up"); ok = False
if fd_end > fd_base:
    print("FAIL: file descriptors leaked"); ok = False
if unexpected:
    print(f"FAIL: {unexpected} unexpected outcomes"); ok = False
print("PASS" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
