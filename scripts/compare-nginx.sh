#!/usr/bin/env bash
# ringgate vs a tuned nginx vs the upstream itself, in ONE run, on the same mock upstream.
#
# Starts `ringgate mock-upstream`, `ringgate serve` (configured through the admin API
# with a key and a /v1 rule) and a tuned nginx reverse proxy (worker_processes auto,
# upstream keepalive 256, HTTP/1.1 upstream, access_log off) on free 127.0.0.1 ports,
# then runs POST /v1/chat/completions (TrustGate's request, with the gateway key):
#
#   1. wrk -t2 -c50 -d$DURATION --latency -s scripts/wrk/chat.lua   ringgate, nginx, direct
#   2. hey -n $REQUESTS -c 50 (TrustGate's command)                  ringgate, nginx, direct
#   3. wrk -t1 -c1 -d$DURATION --latency -s scripts/wrk/chat.lua     ringgate, nginx, direct
#
# and prints req/s, p50, p99 and errors for each, the ratio ringgate/nginx in req/s,
# the p50 latency ringgate and nginx add over going direct (µs), and the CPU each
# proxy and the mock upstream spent per request (user and kernel µs, from /proc;
# blank for a gateway or mock this script did not start). Results go to
# bench-results/<timestamp>/compare.{csv,json}; raw tool output to raw/.
# Exits non-zero when any run saw errors.
#
# Environment (defaults in brackets):
#   DURATION=10s        each wrk run
#   REQUESTS=100000     each hey run
#   CONNECTIONS=50      connections of phases 1 and 2;  THREADS=2  wrk threads of phase 1
#   ADMIN_URL, PROXY_URL  use a running gateway instead of starting one (ADMIN_URL may end in /api/v1)
#   ADMIN_TOKEN         admin bearer token
#   MOCK_URL            use a running mock upstream instead of starting one
#   RINGGATE_BIN        binary (default target/release/ringgate, built when needed)
#   SHARDS, MOCK_SHARDS --shards for the gateway [one per CPU] and the mock [1]
#   RESULTS_DIR         [bench-results/<timestamp>]
#
# Quick run:  DURATION=3s REQUESTS=20000 scripts/compare-nginx.sh
set -euo pipefail

RG_TAG=compare
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
(($# == 0)) || rg_die "no arguments are taken (configure with environment variables; see --help)"

DURATION="${DURATION:-10s}"
REQUESTS="${REQUESTS:-100000}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
[[ "$DURATION" =~ ^[0-9]+(s|m|h)$ ]] || rg_die "DURATION must look like 10s or 2m (wrk's units), got '$DURATION'"
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || rg_die "REQUESTS must be a positive integer, got '$REQUESTS'"
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || rg_die "CONNECTIONS must be a positive integer"
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || rg_die "THREADS must be a positive integer"
((REQUESTS >= CONNECTIONS)) || rg_die "REQUESTS ($REQUESTS) must be at least CONNECTIONS ($CONNECTIONS) for hey"
if [[ -n "${ADMIN_URL:-}" && -z "${PROXY_URL:-}" ]] || [[ -z "${ADMIN_URL:-}" && -n "${PROXY_URL:-}" ]]; then
  rg_die "set both ADMIN_URL and PROXY_URL to use a running gateway, or neither to start one"
fi

rg_need_cmds curl python3 wrk hey nginx
LUA="$RG_LIB_DIR/wrk/chat.lua"
[[ -r "$LUA" ]] || rg_die "missing $LUA"

rg_install_traps

STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS_DIR="${RESULTS_DIR:-$RG_ROOT/bench-results/$STAMP}"
LOGDIR="$RESULTS_DIR/logs"
mkdir -p "$RESULTS_DIR/raw" "$LOGDIR"
CSV="$RESULTS_DIR/compare.csv"
echo "phase,target,tool,concurrency,requests,errors,rps,p50_ms,p95_ms,p99_ms,proxy_user_us,proxy_sys_us,mock_user_us,mock_sys_us" >"$CSV"

rg_log "machine: $(rg_machine_info)"
rg_log "wrk runs ${DURATION} each, hey runs $REQUESTS requests each; results in $RESULTS_DIR"

if [[ -z "${MOCK_URL:-}" || -z "${ADMIN_URL:-}" ]]; then
  rg_ensure_binary
fi
if [[ -n "${MOCK_URL:-}" ]]; then rg_use_mock "$MOCK_URL"; else rg_start_mock "$LOGDIR"; fi
if [[ -n "${ADMIN_URL:-}" ]]; then rg_use_gateway "$ADMIN_URL" "$PROXY_URL"; else rg_start_gateway "$LOGDIR"; fi
rg_admin_setup "$RG_MOCK_HOST" "$RG_MOCK_PORT"
rg_start_nginx "$RG_MOCK_HOST" "$RG_MOCK_PORT" "$LOGDIR"

TARGETS=(ringgate nginx direct)
declare -A URL=(
  [ringgate]="$RG_PROXY_URL/v1/chat/completions"
  [nginx]="$RG_NGINX_URL/v1/chat/completions"
  [direct]="$RG_MOCK_URL/v1/chat/completions"
)
for t in "${TARGETS[@]}"; do
  rg_smoke "$t" POST "${URL[$t]}" "$RG_CHAT_BODY"
done

# CPU accounting: the processes behind each target (nginx: master and workers).
declare -A PROC_PIDS=(
  [ringgate]="${RG_GATEWAY_PID:-}"
  [nginx]="$RG_NGINX_PID $(pgrep -P "$RG_NGINX_PID" | tr '\n' ' ')"
  [direct]=""
)
MOCK_PIDS="${RG_MOCK_PID:-}"

FAILED=()
# record PHASE TARGET TOOL CONCURRENCY RAWFILE RC PROXY_TICKS_BEFORE MOCK_TICKS_BEFORE
record() {
  local phase="$1" target="$2" tool="$3" conc="$4" raw="$5" rc="$6" pt0="$7" mt0="$8" rps p50 p95 p99 errs total
  local pu="" ps="" mu="" ms=""
  if [[ "$tool" == wrk ]]; then
    read -r rps p50 p95 p99 errs total < <(rg_parse_wrk "$raw")
  else
    read -r rps p50 p95 p99 errs total < <(rg_parse_hey "$raw")
  fi
  if ((rc != 0)); then
    rg_warn "$tool exited with status $rc (see $raw)"
    if ((errs == 0)); then errs=1; fi
  fi
  if [[ -n "$pt0" ]]; then read -r pu ps < <(rg_cpu_per_request "$pt0" "$(rg_cpu_ticks ${PROC_PIDS[$target]})" "$total"); fi
  if [[ -n "$mt0" ]]; then read -r mu ms < <(rg_cpu_per_request "$mt0" "$(rg_cpu_ticks $MOCK_PIDS)" "$total"); fi
  echo "$phase,$target,$tool,$conc,$total,$errs,$rps,$p50,$p95,$p99,$pu,$ps,$mu,$ms" >>"$CSV"
  rg_log "  $target: $rps req/s, p50 $p50 ms, p99 $p99 ms, $errs errors of $total${pu:+; proxy CPU/request user $pu µs, kernel $ps µs}${mu:+; mock $mu + $ms µs}"
  if ((errs > 0)); then FAILED+=("$phase $target: $errs errors of $total (raw output: $raw)"); fi
}

# ticks_before TARGET : CPU ticks of the target's proxy and of the mock, now (PT0, MT0).
ticks_before() {
  PT0="" MT0=""
  [[ -n "${PROC_PIDS[$1]// /}" ]] && PT0="$(rg_cpu_ticks ${PROC_PIDS[$1]})"
  [[ -n "$MOCK_PIDS" ]] && MT0="$(rg_cpu_ticks $MOCK_PIDS)"
  return 0
}

run_wrk() { # PHASE THREADS CONNECTIONS
  local phase="$1" threads="$2" conns="$3" t raw rc
  rg_log "phase $phase: wrk -t$threads -c$conns -d$DURATION --latency -s scripts/wrk/chat.lua (POST /v1/chat/completions)"
  for t in "${TARGETS[@]}"; do
    raw="$RESULTS_DIR/raw/$phase-$t.txt"
    rc=0
    ticks_before "$t"
    API_KEY="$RG_API_KEY" rg_run_fg "$raw" wrk -t"$threads" -c"$conns" -d"$DURATION" --latency --timeout 10s -s "$LUA" "${URL[$t]}" || rc=$?
    record "$phase" "$t" wrk "$conns" "$raw" "$rc" "$PT0" "$MT0"
  done
}

run_hey() { # PHASE CONNECTIONS
  local phase="$1" conns="$2" t raw rc
  rg_log "phase $phase: hey -n $REQUESTS -c $conns -m POST (TrustGate's command)"
  for t in "${TARGETS[@]}"; do
    raw="$RESULTS_DIR/raw/$phase-$t.txt"
    rc=0
    ticks_before "$t"
    rg_run_fg "$raw" hey -n "$REQUESTS" -c "$conns" -m POST \
      -H "Authorization: Bearer $RG_API_KEY" -H "Content-Type: application/json" \
      -d "$RG_CHAT_BODY" "${URL[$t]}" || rc=$?
    record "$phase" "$t" hey "$conns" "$raw" "$rc" "$PT0" "$MT0"
  done
}

run_wrk "wrk-c$CONNECTIONS" "$THREADS" "$CONNECTIONS"
run_hey "hey-c$CONNECTIONS" "$CONNECTIONS"
run_wrk wrk-c1 1 1

echo >&2
rg_log "summary ($(rg_machine_info); wrk ${DURATION}/run, hey $REQUESTS requests/run):"
python3 - "$CSV" "$RESULTS_DIR/compare.json" "$(rg_machine_info)" "$(rg_tool_version wrk)" "$(rg_tool_version hey)" "$(rg_tool_version nginx)" "$DURATION" "$REQUESTS" <<'PY'
import csv, json, math, sys, datetime
path, out, machine, wrk_v, hey_v, nginx_v, duration, requests = sys.argv[1:9]

def num(v):
    try:
        f = float(v)
        return None if math.isnan(f) else f
    except ValueError:
        return None

rows = list(csv.DictReader(open(path, newline="")))
for r in rows:
    for k in ("concurrency", "requests", "errors", "rps", "p50_ms", "p95_ms", "p99_ms",
              "proxy_user_us", "proxy_sys_us", "mock_user_us", "mock_sys_us"):
        r[k] = num(r[k])
        if r[k] is not None and k in ("concurrency", "requests", "errors"):
            r[k] = int(r[k])
phases = list(dict.fromkeys(r["phase"] for r in rows))
by = {(r["phase"], r["target"]): r for r in rows}

def f(v, d):
    return "-" if v is None else f"{v:.{d}f}"

hdr = f"{'phase':<9} {'target':<9} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}"
print(hdr)
print("-" * len(hdr))
summary = []
for p in phases:
    for t in ("ringgate", "nginx", "direct"):
        r = by.get((p, t))
        if r:
            print(f"{p:<9} {t:<9} {f(r['rps'], 0):>10} {f(r['p50_ms'], 3):>9} {f(r['p99_ms'], 3):>9} {r['errors'] or 0:>7}")
    rg, ng, d = by.get((p, "ringgate")), by.get((p, "nginx")), by.get((p, "direct"))
    s = {"phase": p}
    if rg and ng and rg["rps"] and ng["rps"]:
        s["ringgate_over_nginx_rps"] = round(rg["rps"] / ng["rps"], 3)
    for name, r in (("ringgate", rg), ("nginx", ng)):
        if r and d and r["p50_ms"] is not None and d["p50_ms"] is not None:
            s[f"{name}_added_p50_us"] = round((r["p50_ms"] - d["p50_ms"]) * 1000, 1)
        if r and d and r["p99_ms"] is not None and d["p99_ms"] is not None:
            s[f"{name}_added_p99_us"] = round((r["p99_ms"] - d["p99_ms"]) * 1000, 1)
    summary.append(s)
    print()

hdr = f"{'phase':<9} {'ringgate/nginx req/s':>21} {'ringgate +p50 µs':>17} {'nginx +p50 µs':>14}"
print(hdr)
print("-" * len(hdr))
for s in summary:
    ratio = s.get("ringgate_over_nginx_rps")
    rr = "-" if ratio is None else f"{ratio:.2f}x"
    a = s.get("ringgate_added_p50_us"); b = s.get("nginx_added_p50_us")
    print(f"{s['phase']:<9} {rr:>21} {'-' if a is None else f'{a:+.0f}':>17} {'-' if b is None else f'{b:+.0f}':>14}")
cpu = [r for r in rows if r["proxy_user_us"] is not None or r["mock_user_us"] is not None]
if cpu:
    print()
    hdr = f"{'phase':<9} {'target':<9} {'proxy user µs/req':>18} {'proxy kernel µs/req':>20} {'mock µs/req':>12}"
    print(hdr)
    print("-" * len(hdr))
    for r in cpu:
        m = None if r["mock_user_us"] is None else r["mock_user_us"] + r["mock_sys_us"]
        print(f"{r['phase']:<9} {r['target']:<9} {f(r['proxy_user_us'], 1):>18} {f(r['proxy_sys_us'], 1):>20} {f(m, 1):>12}")
    print("(CPU per request from /proc/PID/stat over each run; the mock is the same process for every target)")
if any(p.startswith("hey") for p in phases):
    print("(hey reports latency in 0.1 ms steps, so its added-latency column is coarse; the wrk phases are exact to 1 µs)")

json.dump({"meta": {"generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine, "wrk": wrk_v, "hey": hey_v, "nginx": nginx_v,
                    "duration": duration, "requests": int(requests)},
           "results": rows, "summary": summary}, open(out, "w"), indent=2)
PY
echo
rg_log "CSV:  $CSV"
rg_log "JSON: $RESULTS_DIR/compare.json"
rg_log "nginx configuration used: $LOGDIR/nginx.conf"

if ((${#FAILED[@]} > 0)); then
  rg_warn "some runs saw errors (non-2xx answers or transport errors); these numbers are not clean:"
  for f in "${FAILED[@]}"; do rg_warn "  - $f"; done
  rg_die "comparison finished with errors (${#FAILED[@]} run(s)); see $RESULTS_DIR"
fi
rg_log "comparison finished: every run was error-free"
