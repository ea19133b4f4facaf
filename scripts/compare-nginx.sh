#!/usr/bin/env bash
# ringgate vs a tuned nginx vs the upstream itself, in ONE run, on the same upstream.
#
# The upstream is an nginx that answers `return 200` with a fixed chat completion (one
# worker, pinned to LOAD_CPU), cheaper than ringgate's own mock (UPSTREAM=mock uses that).
# ringgate is configured through the admin API with a gateway, an upstream, a service, a
# /v1 rule and a key, so the full gateway path runs (key check, rule match, metrics); the
# nginx proxy is tuned (upstream keepalive 256, HTTP/1.1 upstream, access_log off). Every
# request is POST /v1/chat/completions with the gateway key. Four parts (PARTS):
#
#   percore  each proxy alone on PROXY_CPU (ringgate --shards 1, nginx one worker), wrk -t1
#            and the upstream on LOAD_CPU; wrk -c50 and -c256 (PERCORE_CONNECTIONS), ROUNDS
#            alternating rounds. Per run: req/s, p50/p99, the proxy's CPU per request (user
#            and kernel, /proc/PID/stat), reschedule interrupts on PROXY_CPU per request (RES
#            in /proc/interrupts) and system calls per request (perf stat, raw_syscalls;
#            "n/a" without perf or the privilege). Then the ratios ringgate/nginx.
#   both     both proxies on every CPU (ringgate one shard per CPU, nginx one worker per
#            CPU), load unpinned: wrk -t$THREADS -c$CONNECTIONS and hey -n $REQUESTS -c
#            $CONNECTIONS (TrustGate's command), ringgate, nginx and direct to the upstream.
#   c1       wrk -t1 -c1 on the same setup: the p50/p99 each proxy adds over going direct.
#   idle     IDLE_CONNS keep-alive connections, each served one request then left idle
#            (scripts/idle_conns.py): RSS growth per connection (KB), ringgate and nginx.
#
# Prints readable tables; every run is one CSV row in RESULTS_CSV (benches/results/), the
# tables' numbers go to RESULTS_DIR/compare.json, raw tool output to RESULTS_DIR/raw/.
# Exits non-zero when any run saw errors.
#
# Options:
#   --per-core            the same as PARTS=percore
#   --parts LIST          the same as PARTS=LIST
#   --gateway-args ARGS   the same as GATEWAY_ARGS=ARGS
#
# Environment (defaults in brackets):
#   PARTS="percore,both,c1,idle"  which parts to run (comma- or space-separated)
#   DURATION=10s        each wrk run;  ROUNDS=3  per-core rounds;  WARMUP=1s  per-core warm-up (0: none)
#   PERCORE_CONNECTIONS="50 256"      wrk -c of the per-core part
#   PROXY_CPU=1, LOAD_CPU=0           the per-core part's CPUs (the upstream is always on LOAD_CPU)
#   REQUESTS=100000     each hey run;  CONNECTIONS=50, THREADS=2  the both-cores wrk and hey
#   IDLE_CONNS=10000    connections of the idle part (the script raises `ulimit -n` to fit)
#   SYSCALLS=1          count system calls in the per-core part (0: skip; perf's tracepoint
#                       adds a little CPU to every system call, in both proxies alike)
#   GATEWAY_ARGS        more `ringgate serve` flags for every gateway started, e.g. "--spin-us 0"
#   UPSTREAM=nginx      or mock: `ringgate mock-upstream` (MOCK_SHARDS [1]) as the upstream
#   MOCK_URL            use a running upstream instead of starting one
#   ADMIN_URL, PROXY_URL  use a running gateway (parts both and c1 only; ADMIN_URL may end in /api/v1)
#   GATEWAY_PID         pid of that running gateway, for its CPU per request
#   ADMIN_TOKEN         admin bearer token
#   RINGGATE_BIN        binary (default target/release/ringgate, built when needed)
#   SHARDS              --shards of the both/c1/idle gateway [one per CPU]
#   RESULTS_CSV         [benches/results/compare-nginx-<timestamp>.csv]
#   RESULTS_DIR         [bench-results/<timestamp>]
#
# Quick run:  DURATION=2s ROUNDS=1 REQUESTS=20000 IDLE_CONNS=1000 scripts/compare-nginx.sh
# Per core:   ROUNDS=5 scripts/compare-nginx.sh --per-core
set -euo pipefail

RG_TAG=compare
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while (($# > 0)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --per-core) PARTS=percore ;;
    --parts) (($# > 1)) || rg_die "--parts needs a list, e.g. --parts percore,idle"; PARTS="$2"; shift ;;
    --parts=*) PARTS="${1#*=}" ;;
    --gateway-args) (($# > 1)) || rg_die "--gateway-args needs a value"; GATEWAY_ARGS="$2"; shift ;;
    --gateway-args=*) GATEWAY_ARGS="${1#*=}" ;;
    *) rg_die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

EXTERNAL=0
if [[ -n "${ADMIN_URL:-}" || -n "${PROXY_URL:-}" ]]; then
  [[ -n "${ADMIN_URL:-}" && -n "${PROXY_URL:-}" ]] \
    || rg_die "set both ADMIN_URL and PROXY_URL to use a running gateway, or neither to start one"
  EXTERNAL=1
  PARTS="${PARTS:-both,c1}"
  [[ -z "${GATEWAY_PID:-}" ]] || kill -0 "$GATEWAY_PID" 2>/dev/null || rg_die "GATEWAY_PID=$GATEWAY_PID is not a running process"
fi
PARTS="${PARTS:-percore,both,c1,idle}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-1s}"
PERCORE_CONNECTIONS="${PERCORE_CONNECTIONS:-50 256}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
REQUESTS="${REQUESTS:-100000}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
SYSCALLS="${SYSCALLS:-1}"
UPSTREAM="${UPSTREAM:-nginx}"

declare -A WANT=()
for p in ${PARTS//,/ }; do
  case "$p" in percore | both | c1 | idle) WANT[$p]=1 ;; *) rg_die "PARTS: unknown part '$p' (known: percore, both, c1, idle)" ;; esac
done
((${#WANT[@]} > 0)) || rg_die "PARTS is empty"
want() { [[ -n "${WANT[$1]:-}" ]]; }
if ((EXTERNAL)) && { want percore || want idle; }; then
  rg_die "the percore and idle parts start their own gateway (pinned, or with long timeouts): unset ADMIN_URL/PROXY_URL, or run PARTS=both,c1"
fi

[[ "$DURATION" =~ ^[0-9]+(s|m|h)$ ]] || rg_die "DURATION must look like 10s or 2m (wrk's units), got '$DURATION'"
[[ "$WARMUP" == 0 || "$WARMUP" =~ ^[0-9]+(s|m)$ ]] || rg_die "WARMUP must look like 1s, or 0 for none, got '$WARMUP'"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || rg_die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || rg_die "REQUESTS must be a positive integer, got '$REQUESTS'"
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || rg_die "CONNECTIONS must be a positive integer, got '$CONNECTIONS'"
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || rg_die "THREADS must be a positive integer, got '$THREADS'"
[[ "$IDLE_CONNS" =~ ^[1-9][0-9]*$ ]] || rg_die "IDLE_CONNS must be a positive integer, got '$IDLE_CONNS'"
for c in $PERCORE_CONNECTIONS; do
  [[ "$c" =~ ^[1-9][0-9]*$ ]] || rg_die "PERCORE_CONNECTIONS must be positive integers, got '$c'"
done
[[ "$SYSCALLS" == 0 || "$SYSCALLS" == 1 ]] || rg_die "SYSCALLS must be 0 or 1, got '$SYSCALLS'"
[[ "$UPSTREAM" == nginx || "$UPSTREAM" == mock ]] || rg_die "UPSTREAM must be nginx or mock, got '$UPSTREAM'"
((REQUESTS >= CONNECTIONS)) || rg_die "REQUESTS ($REQUESTS) must be at least CONNECTIONS ($CONNECTIONS) for hey"

deps=(curl python3 wrk nginx taskset pgrep)
want both && deps+=(hey)
rg_need_cmds "${deps[@]}"
LUA="$RG_LIB_DIR/wrk/chat.lua"
[[ -r "$LUA" ]] || rg_die "missing $LUA"

# The per-core part needs two CPUs this process may run on; the upstream sits on LOAD_CPU
# in every part when there are (the ringgate mock pins itself to one CPU anyway).
PINNED=0
if [[ "$PROXY_CPU" =~ ^[0-9]+$ && "$LOAD_CPU" =~ ^[0-9]+$ && "$PROXY_CPU" != "$LOAD_CPU" ]] \
  && taskset -c "$PROXY_CPU" true 2>/dev/null && taskset -c "$LOAD_CPU" true 2>/dev/null; then
  PINNED=1
fi
if want percore && ((!PINNED)); then
  rg_die "the percore part needs two distinct CPUs this process may use: PROXY_CPU=$PROXY_CPU LOAD_CPU=$LOAD_CPU" \
    "(allowed: $(taskset -pc $$ | sed 's/.*: //')); set them, or run PARTS=both,c1,idle"
fi
if ((PINNED)) && [[ -z "${MOCK_URL:-}" ]]; then RG_UPSTREAM_CPUS="$LOAD_CPU"; fi

SYSCALLS_NOTE=""
if want percore && ((SYSCALLS)) && ! rg_syscalls_supported; then
  SYSCALLS=0
  SYSCALLS_NOTE="perf stat cannot count raw_syscalls:sys_enter here (install linux-perf, and run as root or lower /proc/sys/kernel/perf_event_paranoid)"
  rg_warn "system calls per request: n/a: $SYSCALLS_NOTE"
elif want percore && ((!SYSCALLS)); then
  SYSCALLS_NOTE="not counted (SYSCALLS=0)"
fi
RES_NOTE=""
if want percore && [[ -z "$(rg_res_irqs "$PROXY_CPU")" ]]; then
  RES_NOTE="/proc/interrupts has no RES line for CPU$PROXY_CPU"
  rg_warn "reschedule interrupts per request: n/a: $RES_NOTE"
fi

# The idle part holds IDLE_CONNS sockets in the client and in each proxy.
if want idle; then
  need=$((IDLE_CONNS + 1024))
  hard="$(ulimit -Hn)"
  if [[ "$hard" != unlimited ]] && ((hard < need)); then
    ulimit -Hn "$need" 2>/dev/null \
      || rg_die "the idle part needs $need open files but the hard limit is $hard: raise it (e.g. as root, or in /etc/security/limits.conf) or lower IDLE_CONNS"
  fi
  soft="$(ulimit -Sn)"
  if [[ "$soft" != unlimited ]] && ((soft < need)); then ulimit -Sn "$need"; fi
fi

rg_install_traps

STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS_DIR="${RESULTS_DIR:-$RG_ROOT/bench-results/$STAMP}"
RESULTS_CSV="${RESULTS_CSV:-$RG_ROOT/benches/results/compare-nginx-$STAMP.csv}"
LOGDIR="$RESULTS_DIR/logs"
mkdir -p "$RESULTS_DIR/raw" "$LOGDIR" "$(dirname "$RESULTS_CSV")"
CSV="$RESULTS_CSV"
echo "part,round,target,tool,concurrency,requests,errors,rps,p50_ms,p95_ms,p99_ms,proxy_user_us,proxy_sys_us,proxy_cores,upstream_us,res_per_req,syscalls_per_req,rss_before_kb,rss_after_kb,kb_per_conn" >"$CSV"

rg_log "machine: $(rg_machine_info)"
rg_log "parts: ${PARTS//,/ }; wrk runs ${DURATION} each, $ROUNDS per-core round(s), hey $REQUESTS requests, $IDLE_CONNS idle connections"
rg_log "CSV: $CSV; raw output and logs: $RESULTS_DIR"

# ---------------------------------------------------------------- processes

# The binary runs the gateway, and the upstream when it is ringgate's mock.
if ((!EXTERNAL)) || [[ -z "${MOCK_URL:-}" && "$UPSTREAM" == mock ]]; then rg_ensure_binary; fi
if [[ -n "${MOCK_URL:-}" ]]; then
  rg_use_mock "$MOCK_URL"
  RG_MOCK_PIDS=""
elif [[ "$UPSTREAM" == mock ]]; then
  rg_start_mock "$LOGDIR"
else
  rg_start_nginx_upstream "$LOGDIR"
fi
UPSTREAM_PIDS="$RG_MOCK_PIDS"

declare -A URL=([direct]="$RG_MOCK_URL/v1/chat/completions")
declare -A PROC_PIDS=([direct]="")
STARTED=()

# start_proxies NAME CPUS SHARDS NGINX_WORKERS [SERVE_ARG...] : a configured gateway and an
# nginx proxy on the upstream, both pinned to CPUS (unpinned when empty), smoke-tested.
start_proxies() {
  local name="$1" cpus="$2" shards="$3" workers="$4"
  shift 4
  rg_log "starting the proxies for the $name part"
  mkdir -p "$LOGDIR/$name"
  if ((EXTERNAL)); then
    rg_use_gateway "$ADMIN_URL" "$PROXY_URL"
    PROC_PIDS[ringgate]="${GATEWAY_PID:-}"
  else
    SHARDS="$shards" RG_GATEWAY_CPUS="$cpus" rg_start_gateway "$LOGDIR/$name" "$@"
    PROC_PIDS[ringgate]="$RG_GATEWAY_PID"
    STARTED+=("$RG_GATEWAY_PID")
  fi
  rg_admin_setup "$RG_MOCK_HOST" "$RG_MOCK_PORT"
  RG_NGINX_WORKERS="$workers" RG_NGINX_CPUS="$cpus" rg_start_nginx "$RG_MOCK_HOST" "$RG_MOCK_PORT" "$LOGDIR/$name"
  PROC_PIDS[nginx]="$RG_NGINX_PIDS"
  STARTED+=("$RG_NGINX_PID")
  URL[ringgate]="$RG_PROXY_URL/v1/chat/completions"
  URL[nginx]="$RG_NGINX_URL/v1/chat/completions"
  local t
  for t in ringgate nginx direct; do
    rg_smoke "$t" POST "${URL[$t]}" "$RG_CHAT_BODY"
  done
}

stop_proxies() {
  rg_stop "${STARTED[@]}"
  STARTED=()
}

# ---------------------------------------------------------------- one measured run

FAILED=()
# measure PART ROUND TARGET TOOL CONCURRENCY RAW CMD... : runs a load tool (CMD) against
# TARGET and appends one CSV row. In the percore part it also counts RES interrupts on
# PROXY_CPU and, with SYSCALLS=1, the proxy's system calls.
measure() {
  local part="$1" round="$2" target="$3" tool="$4" conc="$5" raw="$6"
  shift 6
  local pids="${PROC_PIDS[$target]}" pt0="" ut0="" t0 t1 r0="" r1="" sc="" rc=0
  local rps p50 p95 p99 errs total pu="" ps="" cores="" uu="" us="" res="" scpr=""
  local perf_out="$raw.perf"
  if [[ "$part" == percore ]] && ((SYSCALLS)) && [[ -n "$pids" ]]; then
    # shellcheck disable=SC2086
    rg_syscalls_start "$perf_out" $pids || perf_out=""
  else
    perf_out=""
  fi
  # shellcheck disable=SC2086
  [[ -n "$pids" ]] && pt0="$(rg_cpu_ticks $pids)"
  # shellcheck disable=SC2086
  [[ -n "$UPSTREAM_PIDS" ]] && ut0="$(rg_cpu_ticks $UPSTREAM_PIDS)"
  [[ "$part" == percore ]] && r0="$(rg_res_irqs "$PROXY_CPU")"
  t0="$(rg_now_us)"
  API_KEY="$RG_API_KEY" rg_run_fg "$raw" "$@" || rc=$?
  t1="$(rg_now_us)"
  [[ -n "$r0" ]] && r1="$(rg_res_irqs "$PROXY_CPU")"
  local pt1="" ut1=""
  # shellcheck disable=SC2086
  [[ -n "$pids" ]] && pt1="$(rg_cpu_ticks $pids)"
  # shellcheck disable=SC2086
  [[ -n "$UPSTREAM_PIDS" ]] && ut1="$(rg_cpu_ticks $UPSTREAM_PIDS)"
  if [[ -n "$perf_out" ]]; then rg_syscalls_stop "$perf_out"; sc="$RG_SYSCALLS"; fi

  if [[ "$tool" == wrk ]]; then
    read -r rps p50 p95 p99 errs total < <(rg_parse_wrk "$raw")
  else
    read -r rps p50 p95 p99 errs total < <(rg_parse_hey "$raw")
  fi
  if ((rc != 0)); then
    rg_warn "$tool exited with status $rc (see $raw)"
    if ((errs == 0)); then errs=1; fi
  fi
  if [[ -n "$pt0" ]]; then
    read -r pu ps < <(rg_cpu_per_request "$pt0" "$pt1" "$total")
    cores="$(rg_cores_used "$pt0" "$pt1" $((t1 - t0)))"
  fi
  if [[ -n "$ut0" ]]; then
    read -r uu us < <(rg_cpu_per_request "$ut0" "$ut1" "$total")
    [[ -n "$uu" ]] && uu="$(awk -v a="$uu" -v b="$us" 'BEGIN {printf "%.1f", a + b}')"
  fi
  if [[ -n "$r1" ]] && ((total > 0)); then res="$(awk -v a="$r0" -v b="$r1" -v n="$total" 'BEGIN {printf "%.3f", (b - a) / n}')"; fi
  if [[ -n "$sc" ]] && ((total > 0)); then scpr="$(awk -v a="$sc" -v n="$total" 'BEGIN {printf "%.2f", a / n}')"; fi
  echo "$part,$round,$target,$tool,$conc,$total,$errs,$rps,$p50,$p95,$p99,$pu,$ps,$cores,$uu,$res,$scpr,,," >>"$CSV"
  rg_log "  $target: $rps req/s, p50 $p50 ms, p99 $p99 ms, $errs errors of $total${pu:+; CPU/request user $pu µs, kernel $ps µs ($cores cores)}${res:+; RES/request $res}${scpr:+; syscalls/request $scpr}"
  if ((errs > 0)); then FAILED+=("$part round $round $tool -c$conc $target: $errs errors of $total (raw output: $raw)"); fi
}

run_wrk() { # PART ROUND TARGET CPUS THREADS CONNECTIONS
  local part="$1" round="$2" t="$3" cpus="$4" threads="$5" conns="$6"
  measure "$part" "$round" "$t" wrk "$conns" "$RESULTS_DIR/raw/$part-r$round-wrk-c$conns-$t.txt" \
    rg_on_cpus "$cpus" wrk -t"$threads" -c"$conns" -d"$DURATION" --latency --timeout 10s -s "$LUA" "${URL[$t]}"
}

# ---------------------------------------------------------------- the parts

part_percore() {
  local round c t order
  start_proxies percore "$PROXY_CPU" 1 1
  rg_log "per-core part: proxies alone on CPU $PROXY_CPU, wrk -t1 and the upstream on CPU $LOAD_CPU"
  if [[ "$WARMUP" != 0 ]]; then
    for t in ringgate nginx; do
      API_KEY="$RG_API_KEY" rg_run_fg "$RESULTS_DIR/raw/percore-warmup-$t.txt" \
        rg_on_cpus "$LOAD_CPU" wrk -t1 -c50 -d"$WARMUP" -s "$LUA" "${URL[$t]}" \
        || rg_die "the warm-up of $t failed: $(tail -n 3 "$RESULTS_DIR/raw/percore-warmup-$t.txt")"
    done
  fi
  for ((round = 1; round <= ROUNDS; round++)); do
    # Alternate which proxy goes first, so neither always runs on a warmer machine.
    if ((round % 2)); then order=(ringgate nginx); else order=(nginx ringgate); fi
    for c in $PERCORE_CONNECTIONS; do
      rg_log "per-core round $round/$ROUNDS: wrk -t1 -c$c -d$DURATION"
      for t in "${order[@]}"; do
        run_wrk percore "$round" "$t" "$LOAD_CPU" 1 "$c"
      done
    done
  done
  stop_proxies
}

part_shared() { # both and/or c1, on one set of unpinned proxies
  local t raw
  start_proxies both "" "${SHARDS:-}" "$(nproc)"
  if want both; then
    rg_log "both-cores part: wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
    for t in ringgate nginx direct; do run_wrk both 1 "$t" "" "$THREADS" "$CONNECTIONS"; done
    rg_log "both-cores part: hey -n $REQUESTS -c $CONNECTIONS -m POST (TrustGate's command)"
    for t in ringgate nginx direct; do
      raw="$RESULTS_DIR/raw/both-r1-hey-c$CONNECTIONS-$t.txt"
      measure both 1 "$t" hey "$CONNECTIONS" "$raw" hey -n "$REQUESTS" -c "$CONNECTIONS" -m POST \
        -H "Authorization: Bearer $RG_API_KEY" -H "Content-Type: application/json" -d "$RG_CHAT_BODY" "${URL[$t]}"
    done
  fi
  if want c1; then
    rg_log "c1 part: wrk -t1 -c1 -d$DURATION (latency each proxy adds over going direct)"
    for t in ringgate nginx direct; do run_wrk c1 1 "$t" "" 1 1; done
  fi
  stop_proxies
}

part_idle() {
  local t p out maxc=16384 args=() pids hostport served before after per
  ((IDLE_CONNS + 1000 > maxc)) && maxc=$((IDLE_CONNS + 1000))
  # Long keep-alive in both proxies: the connections must outlive the run.
  RG_NGINX_KEEPALIVE_S=600 RG_NGINX_WORKER_CONNECTIONS="$maxc" \
    start_proxies idle "" "${SHARDS:-}" "$(nproc)" --max-connections "$maxc" --idle-timeout-ms 600000
  for t in ringgate nginx; do
    out="$RESULTS_DIR/raw/idle-$t.txt"
    pids="${PROC_PIDS[$t]}"
    hostport="${URL[$t]#http://}"
    hostport="${hostport%%/*}"
    args=(--proxy "$hostport" --conns "$IDLE_CONNS" --path /v1/chat/completions --method POST
          --header "Authorization: Bearer $RG_API_KEY" --header "Content-Type: application/json" --body "$RG_CHAT_BODY")
    for p in $pids; do args+=(--pid "$p"); done
    rg_log "idle part: $IDLE_CONNS keep-alive connections to $t, each served one request, then idle"
    if rg_run_fg "$out" python3 "$RG_LIB_DIR/idle_conns.py" "${args[@]}"; then
      # RGIDLE conns=N served=N rss_before_kib=N rss_after_kib=N kb_per_conn=X
      read -r _ served before after per < <(awk '/^RGIDLE / {for (i = 2; i <= NF; i++) {split($i, kv, "="); printf "%s ", kv[2]} print ""}' "$out")
      echo "idle,1,$t,idle_conns,$IDLE_CONNS,$served,0,,,,,,,,,,,$before,$after,$per" >>"$CSV"
      rg_log "  $t: RSS $before -> $after KiB, $per KB per idle connection"
    else
      echo "idle,1,$t,idle_conns,$IDLE_CONNS,0,$IDLE_CONNS,,,,,,,,,,,,," >>"$CSV"
      FAILED+=("idle $t: $(tail -n 1 "$out") (raw output: $out)")
      rg_warn "  $t: idle connections failed: $(tail -n 1 "$out")"
    fi
  done
  stop_proxies
}

want percore && part_percore
if want both || want c1; then part_shared; fi
want idle && part_idle

# ---------------------------------------------------------------- report

echo >&2
rg_log "summary ($(rg_machine_info)):"
python3 "$RG_LIB_DIR/compare_report.py" "$CSV" --json "$RESULTS_DIR/compare.json" \
  --meta "machine=$(rg_machine_info)" --meta "wrk=$(rg_tool_version wrk)" --meta "hey=$(rg_tool_version hey)" \
  --meta "nginx=$(rg_tool_version nginx)" --meta "duration=$DURATION" --meta "rounds=$ROUNDS" \
  --meta "requests=$REQUESTS" --meta "idle_conns=$IDLE_CONNS" --meta "proxy_cpu=$PROXY_CPU" --meta "load_cpu=$LOAD_CPU" \
  --meta "upstream=${MOCK_URL:-$UPSTREAM}" --meta "gateway_args=${GATEWAY_ARGS:-}" \
  --meta "syscalls_note=$SYSCALLS_NOTE" --meta "res_note=$RES_NOTE"
echo
rg_log "CSV:  $CSV"
rg_log "JSON: $RESULTS_DIR/compare.json"
rg_log "nginx configurations used: $LOGDIR/*/nginx.conf, $LOGDIR/nginx-upstream.conf"

if ((${#FAILED[@]} > 0)); then
  rg_warn "some runs saw errors (non-2xx answers or transport errors); these numbers are not clean:"
  for f in "${FAILED[@]}"; do rg_warn "  - $f"; done
  rg_die "comparison finished with errors (${#FAILED[@]} run(s)); see $RESULTS_DIR"
fi
rg_log "comparison finished: every run was error-free"
