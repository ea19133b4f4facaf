# shellcheck shell=bash
# shellcheck disable=SC2034  # globals set here are read by the scripts that source this file
# Shared helpers for scripts/benchmark.sh and scripts/compare-nginx.sh.
# Source it (it defines functions and a few globals, runs nothing by itself):
#
#   . "$(dirname "$0")/lib.sh"
#   rg_install_traps
#
# Everything a script starts goes through rg_spawn (so the EXIT/INT/TERM trap
# stops it), every temp dir through rg_mktemp_dir (so the trap removes it).
# Readiness is always "poll for a line / a port, with a deadline", never a
# fixed sleep.

RG_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RG_ROOT="$(cd "$RG_LIB_DIR/.." && pwd)"
RG_TAG="${RG_TAG:-bench}"

# The request TrustGate's benchmark page sends, and its streaming twin.
RG_CHAT_BODY='{"model":"gpt-3.5-turbo","messages":[{"role":"user","content":"Hi"}]}'
RG_STREAM_BODY='{"model":"gpt-3.5-turbo","stream":true,"messages":[{"role":"user","content":"Hi"}]}'

RG_PIDS=()          # processes we started, in start order
RG_PID_NAMES=()     # a readable name for each
RG_TMPDIRS=()       # temp dirs we created
RG_CREATED=()       # admin paths we created on an external gateway (deleted on exit)
RG_CLEANED=0
RG_EXTERNAL_GATEWAY=0

# ---------------------------------------------------------------- messages

rg_log()  { printf '[%s %s] %s\n' "$RG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
rg_warn() { printf '[%s %s] WARNING: %s\n' "$RG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
rg_die()  { printf '[%s %s] ERROR: %s\n' "$RG_TAG" "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# Microseconds since the epoch (bash 5 EPOCHREALTIME; falls back to date).
rg_now_us() {
  if [[ -n "${EPOCHREALTIME:-}" ]]; then
    local t="${EPOCHREALTIME/[.,]/}"
    printf '%s\n' "$t"
  else
    printf '%s\n' "$(( $(date +%s%N) / 1000 ))"
  fi
}

# ---------------------------------------------------------------- dependencies

# rg_need_cmds CMD... : exits with one clear install line when any is missing.
rg_need_cmds() {
  local missing=() pkgs=() c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 && continue
    missing+=("$c")
    case "$c" in
      cargo) ;;  # not an apt package: see below
      perf) pkgs+=(linux-perf) ;;
      taskset | pgrep) pkgs+=("$([[ $c == taskset ]] && echo util-linux || echo procps)") ;;
      *) pkgs+=("$c") ;;
    esac
  done
  ((${#missing[@]} == 0)) && return 0
  rg_warn "missing tools: ${missing[*]}"
  if ((${#pkgs[@]} > 0)); then
    rg_warn "install them with:  sudo apt-get install ${pkgs[*]}"
    rg_warn "(Debian/Ubuntu; on other systems use your package manager, or 'go install github.com/rakyll/hey@latest' for hey)"
  fi
  if [[ " ${missing[*]} " == *" cargo "* ]]; then
    rg_warn "cargo is needed to build ringgate: curl https://sh.rustup.rs -sSf | sh   (or set RINGGATE_BIN to a built binary)"
  fi
  rg_die "dependencies missing; nothing was started"
}

# rg_tool_version CMD : one-line version of a load tool, for the results metadata.
rg_tool_version() {
  case "$1" in
    wrk) wrk --version 2>&1 | head -n1 | awk '{print $1, $2}' ;;
    nginx) nginx -v 2>&1 | head -n1 | sed 's/^nginx version: //' ;;
    hey) if command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W -f='${Version}' hey >/dev/null 2>&1; then
           printf 'hey %s\n' "$(dpkg-query -W -f='${Version}' hey)"
         else printf 'hey\n'; fi ;;
    *) printf '%s\n' "$1" ;;
  esac
}

# ---------------------------------------------------------------- processes and cleanup

# rg_mktemp_dir VAR PREFIX : creates a temp dir, registers it for removal, stores its path in VAR.
rg_mktemp_dir() {
  local __var="$1" __d
  __d="$(mktemp -d "${TMPDIR:-/tmp}/$2.XXXXXX")"
  RG_TMPDIRS+=("$__d")
  printf -v "$__var" '%s' "$__d"
}

# rg_spawn NAME LOGFILE CMD [ARGS...] : starts CMD in the background, output to LOGFILE.
# Sets RG_LAST_PID.
rg_spawn() {
  local name="$1" log="$2"
  shift 2
  "$@" </dev/null >"$log" 2>&1 &
  RG_LAST_PID=$!
  RG_PIDS+=("$RG_LAST_PID")
  RG_PID_NAMES+=("$name")
  rg_log "started $name (pid $RG_LAST_PID): $*"
}

# rg_run_fg OUTFILE CMD [ARGS...] : runs a load tool to completion, output to OUTFILE.
# It runs as a tracked background job we wait for, so Ctrl-C / TERM reach the
# trap at once (bash would otherwise hold a trap until a foreground child ends).
# Returns the tool's exit status.
rg_run_fg() {
  local out="$1" pid rc=0
  shift
  "$@" </dev/null >"$out" 2>&1 &
  pid=$!
  RG_PIDS+=("$pid")
  RG_PID_NAMES+=("$1")
  wait "$pid" || rc=$?
  rg_forget_pid "$pid"
  return "$rc"
}

# rg_on_cpus CPUS CMD [ARGS...] : execs CMD pinned to CPUS (a taskset list such as 1 or
# 0,1), or unpinned when CPUS is empty. Only as the command of rg_spawn or rg_run_fg,
# which run it in a child: it replaces the shell it runs in, so the pid stays CMD's.
rg_on_cpus() {
  local cpus="$1"
  shift
  ((BASH_SUBSHELL > 0)) || rg_die "rg_on_cpus runs only inside rg_spawn / rg_run_fg"
  if [[ -n "$cpus" ]]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

# rg_stop PID... : stops processes started with rg_spawn (as rg_stop_pid) and forgets them.
rg_stop() {
  local pid i
  for pid in "$@"; do
    for i in "${!RG_PIDS[@]}"; do
      if [[ "${RG_PIDS[$i]}" == "$pid" ]]; then
        rg_stop_pid "$pid" "${RG_PID_NAMES[$i]}"
        rg_forget_pid "$pid"
      fi
    done
  done
}

rg_forget_pid() {
  local i
  for i in "${!RG_PIDS[@]}"; do
    if [[ "${RG_PIDS[$i]}" == "$1" ]]; then
      unset 'RG_PIDS[i]' 'RG_PID_NAMES[i]'
    fi
  done
}

# rg_stop_pid PID NAME : TERM, up to 5 s of grace, then KILL.
rg_stop_pid() {
  local pid="$1" name="${2:-process}" deadline
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(rg_now_us) + 5000000 ))
  while kill -0 "$pid" 2>/dev/null && (( $(rg_now_us) < deadline )); do
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    rg_warn "$name (pid $pid) ignored SIGTERM for 5 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  rg_log "stopped $name (pid $pid)"
}

rg_cleanup() {
  ((RG_CLEANED)) && return 0
  RG_CLEANED=1
  local i
  # Entities we created on somebody else's gateway: delete, newest first.
  if ((RG_EXTERNAL_GATEWAY)) && ((${#RG_CREATED[@]} > 0)); then
    rg_log "deleting the benchmark entities created on $RG_ADMIN_URL"
    for ((i = ${#RG_CREATED[@]} - 1; i >= 0; i--)); do
      rg_admin DELETE "${RG_CREATED[$i]}" >/dev/null 2>&1 || true
    done
  fi
  # Processes: newest first (load tool, nginx, gateway, then the mock).
  local idx=("${!RG_PIDS[@]}")
  for ((i = ${#idx[@]} - 1; i >= 0; i--)); do
    rg_stop_pid "${RG_PIDS[${idx[$i]}]}" "${RG_PID_NAMES[${idx[$i]}]}"
  done
  for i in "${RG_TMPDIRS[@]}"; do
    [[ -n "$i" && -d "$i" ]] && rm -rf -- "$i"
  done
  return 0
}

rg_on_signal() {
  trap - INT TERM
  rg_warn "interrupted by SIG$1; cleaning up"
  # The EXIT trap does the cleanup.
  if [[ "$1" == INT ]]; then exit 130; else exit 143; fi
}

rg_install_traps() {
  trap 'rg_cleanup' EXIT
  trap 'rg_on_signal INT' INT
  trap 'rg_on_signal TERM' TERM
}

# ---------------------------------------------------------------- readiness

# rg_free_port : prints a port that was free a moment ago on 127.0.0.1.
rg_free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# rg_wait_line PID LOG REGEX TIMEOUT_S NAME : polls LOG for an extended-regex line.
# Fails at once, with the log's tail, if PID exits; fails after TIMEOUT_S.
rg_wait_line() {
  local pid="$1" log="$2" re="$3" timeout="$4" name="$5" deadline
  deadline=$(( $(rg_now_us) + timeout * 1000000 ))
  while ! grep -Eq -- "$re" "$log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rg_warn "$name exited before it was ready; last lines of $log:"
      tail -n 20 "$log" >&2 || true
      rg_die "$name failed to start"
    fi
    if (( $(rg_now_us) > deadline )); then
      rg_warn "$name printed no line matching /$re/ within ${timeout}s; last lines of $log:"
      tail -n 20 "$log" >&2 || true
      rg_die "$name did not become ready"
    fi
    sleep 0.02
  done
}

# rg_port_open HOST PORT : true when something accepts TCP connections there.
rg_port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# rg_wait_port HOST PORT TIMEOUT_S NAME [PID] : polls until the port accepts connections.
rg_wait_port() {
  local host="$1" port="$2" timeout="$3" name="$4" pid="${5:-}" deadline
  deadline=$(( $(rg_now_us) + timeout * 1000000 ))
  until rg_port_open "$host" "$port"; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      rg_die "$name exited before listening on $host:$port"
    fi
    (( $(rg_now_us) > deadline )) && rg_die "$name is not listening on $host:$port after ${timeout}s"
    sleep 0.02
  done
}

# rg_url_hostport URL : prints "host port" of an http:// URL.
rg_url_hostport() {
  local rest="${1#*://}"
  rest="${rest%%/*}"
  printf '%s %s\n' "${rest%:*}" "${rest##*:}"
}

# ---------------------------------------------------------------- ringgate processes

# rg_ensure_binary : sets RINGGATE_BIN; builds target/release/ringgate when it is
# missing or older than the sources (unless RINGGATE_BIN is given).
rg_ensure_binary() {
  if [[ -n "${RINGGATE_BIN:-}" ]]; then
    [[ -x "$RINGGATE_BIN" ]] || rg_die "RINGGATE_BIN=$RINGGATE_BIN is not an executable"
    return 0
  fi
  RINGGATE_BIN="$RG_ROOT/target/release/ringgate"
  if [[ ! -x "$RINGGATE_BIN" ]] \
    || [[ -n "$(find "$RG_ROOT/src" "$RG_ROOT/Cargo.toml" "$RG_ROOT/Cargo.lock" -newer "$RINGGATE_BIN" -print -quit 2>/dev/null)" ]]; then
    rg_need_cmds cargo
    rg_log "building the release binary: cargo build --release (in $RG_ROOT)"
    (cd "$RG_ROOT" && cargo build --release) || rg_die "cargo build --release failed"
  fi
  [[ -x "$RINGGATE_BIN" ]] || rg_die "no binary at $RINGGATE_BIN after the build"
}

# rg_start_mock LOGDIR : starts `ringgate mock-upstream` on a free port.
# Sets RG_MOCK_URL, RG_MOCK_HOST, RG_MOCK_PORT, RG_MOCK_PID(S). Honours MOCK_SHARDS,
# RG_UPSTREAM_CPUS (pins it, a taskset list) and STREAM_CHUNKS / STREAM_INTERVAL_MS
# (passed only when set).
rg_start_mock() {
  local logdir="$1" port line args=()
  port="$(rg_free_port)"
  args=(mock-upstream --listen "127.0.0.1:$port" --shards "${MOCK_SHARDS:-1}")
  [[ -n "${STREAM_CHUNKS:-}" ]] && args+=(--stream-chunks "$STREAM_CHUNKS")
  [[ -n "${STREAM_INTERVAL_MS:-}" ]] && args+=(--stream-interval-ms "$STREAM_INTERVAL_MS")
  rg_spawn mock-upstream "$logdir/mock-upstream.log" rg_on_cpus "${RG_UPSTREAM_CPUS:-}" "$RINGGATE_BIN" "${args[@]}"
  rg_wait_line "$RG_LAST_PID" "$logdir/mock-upstream.log" \
    '^ringgate mock-upstream listening on http://' "${READY_TIMEOUT:-20}" mock-upstream
  line="$(grep -Em1 '^ringgate mock-upstream listening on http://' "$logdir/mock-upstream.log")"
  RG_MOCK_URL="${line##* }"
  RG_MOCK_PID="$RG_LAST_PID"
  RG_MOCK_PIDS="$RG_LAST_PID"
  read -r RG_MOCK_HOST RG_MOCK_PORT < <(rg_url_hostport "$RG_MOCK_URL")
  rg_log "mock upstream ready at $RG_MOCK_URL"
}

# rg_cpu_ticks PID... : "user system" CPU ticks of the processes (all their threads).
rg_cpu_ticks() {
  local u=0 s=0 a b p
  for p in "$@"; do
    # Fields 14 and 15 of /proc/PID/stat; the name field (2) has no spaces here.
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo "0 0")
    u=$((u + a)) s=$((s + b))
  done
  echo "$u $s"
}

# rg_cpu_per_request "U0 S0" "U1 S1" REQUESTS : prints "user_us sys_us" per request.
rg_cpu_per_request() {
  local tk
  tk="$(getconf CLK_TCK)"
  awk -v a="$1" -v b="$2" -v n="$3" -v tk="$tk" 'BEGIN {
    split(a, x, " "); split(b, y, " ");
    if (n + 0 <= 0) { print "", ""; exit }
    printf "%.1f %.1f\n", (y[1] - x[1]) / tk * 1e6 / n, (y[2] - x[2]) / tk * 1e6 / n }'
}

# rg_cores_used "U0 S0" "U1 S1" WALL_US : CPU seconds over wall seconds ("1.93": almost
# two cores busy), from rg_cpu_ticks before and after.
rg_cores_used() {
  awk -v a="$1" -v b="$2" -v w="$3" -v tk="$(getconf CLK_TCK)" 'BEGIN {
    split(a, x, " "); split(b, y, " ");
    if (w + 0 <= 0) { print ""; exit }
    printf "%.3f\n", (y[1] + y[2] - x[1] - x[2]) / tk / (w / 1e6) }'
}

# rg_status_kb FIELD PID... : the sum of a /proc/PID/status field in KiB (VmRSS, VmHWM).
rg_status_kb() {
  local field="$1" p sum=0 v
  shift
  for p in "$@"; do
    v="$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null)"
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# rg_reset_peak_rss PID... : resets VmHWM to the current RSS (writes 5 to clear_refs,
# Linux 4.0+). Returns 1 when the kernel or the permissions refuse it for any of them.
rg_reset_peak_rss() {
  local p ok=0
  for p in "$@"; do
    { echo 5 >"/proc/$p/clear_refs"; } 2>/dev/null || ok=1
  done
  return "$ok"
}

# rg_res_irqs CPU : reschedule interrupts (the RES line of /proc/interrupts) taken so far
# by CPU; empty when the line or the CPU's column is missing.
rg_res_irqs() {
  awk -v cpu="CPU$1" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == cpu) col = i + 1 }
    $1 == "RES:" && col { print $col; exit }' /proc/interrupts 2>/dev/null
}

# rg_syscalls_supported : true when `perf stat` can count the raw_syscalls:sys_enter
# tracepoint here (perf installed, tracefs present, enough privilege).
rg_syscalls_supported() {
  command -v perf >/dev/null 2>&1 || return 1
  perf stat -e raw_syscalls:sys_enter -x, -o /dev/null -- true >/dev/null 2>&1
}

# rg_syscalls_start OUTFILE PID... : counts the system calls of the processes (all their
# threads) until rg_syscalls_stop. Returns once perf has attached its counters.
# Sets RG_PERF_PID.
rg_syscalls_start() {
  local out="$1" pids deadline
  shift
  pids="$(tr ' ' ',' <<<"$*")"
  rg_spawn "perf stat" "$out.log" perf stat -e raw_syscalls:sys_enter -x, -o "$out" -p "$pids"
  RG_PERF_PID="$RG_LAST_PID"
  deadline=$(( $(rg_now_us) + 10000000 ))
  until find "/proc/$RG_PERF_PID/fd" -lname '*perf_event*' 2>/dev/null | grep -q .; do
    kill -0 "$RG_PERF_PID" 2>/dev/null || { rg_warn "perf stat exited: $(tail -n 3 "$out.log")"; return 1; }
    (( $(rg_now_us) > deadline )) && { rg_warn "perf stat did not attach within 10 s"; return 1; }
    sleep 0.02
  done
}

# rg_syscalls_stop OUTFILE : stops the perf started by rg_syscalls_start (SIGINT, on
# which it writes its count) and sets RG_SYSCALLS to the count (empty when there is
# none). Not in $(...): only this shell can wait for perf.
rg_syscalls_stop() {
  kill -INT "$RG_PERF_PID" 2>/dev/null || true
  wait "$RG_PERF_PID" 2>/dev/null || true
  rg_forget_pid "$RG_PERF_PID"
  RG_SYSCALLS="$(awk -F, '$3 ~ /raw_syscalls:sys_enter/ && $1 ~ /^[0-9]+$/ {print $1}' "$1" 2>/dev/null)"
}

# rg_use_mock URL : use a mock (or any OpenAI-compatible upstream) already running.
rg_use_mock() {
  RG_MOCK_URL="${1%/}"
  read -r RG_MOCK_HOST RG_MOCK_PORT < <(rg_url_hostport "$RG_MOCK_URL")
  rg_port_open "$RG_MOCK_HOST" "$RG_MOCK_PORT" || rg_die "MOCK_URL=$RG_MOCK_URL does not accept connections"
  rg_log "using the running upstream at $RG_MOCK_URL"
}

# rg_start_gateway LOGDIR [ARG...] : starts `ringgate serve` on free ports with a temp
# data dir, ARGs added to its command line. Sets RG_ADMIN_URL (…/api/v1), RG_ADMIN_BASE,
# RG_PROXY_URL, RG_GATEWAY_PID. Honours SHARDS, ADMIN_TOKEN, GATEWAY_ARGS (more `serve`
# flags, split at spaces, e.g. GATEWAY_ARGS="--spin-us 0") and RG_GATEWAY_CPUS (pins
# it, a taskset list: its shards then run on those CPUs).
rg_start_gateway() {
  local logdir="$1" pport aport datadir args=() more=()
  shift
  read -r -a more <<<"${GATEWAY_ARGS:-}"
  pport="$(rg_free_port)"
  aport="$(rg_free_port)"
  while [[ "$aport" == "$pport" ]]; do aport="$(rg_free_port)"; done
  rg_mktemp_dir datadir ringgate-bench-data
  args=(serve --proxy "127.0.0.1:$pport" --admin "127.0.0.1:$aport" --data-dir "$datadir")
  [[ -n "${SHARDS:-}" ]] && args+=(--shards "$SHARDS")
  [[ -n "${ADMIN_TOKEN:-}" ]] && args+=(--admin-token "$ADMIN_TOKEN")
  args+=("$@" "${more[@]}")
  rg_spawn "ringgate serve" "$logdir/ringgate.log" rg_on_cpus "${RG_GATEWAY_CPUS:-}" "$RINGGATE_BIN" "${args[@]}"
  rg_wait_line "$RG_LAST_PID" "$logdir/ringgate.log" '^ringgate ready' "${READY_TIMEOUT:-20}" "ringgate serve"
  RG_GATEWAY_PID="$RG_LAST_PID"
  RG_ADMIN_BASE="http://127.0.0.1:$aport"
  RG_ADMIN_URL="$RG_ADMIN_BASE/api/v1"
  RG_PROXY_URL="http://127.0.0.1:$pport"
  rg_log "gateway ready: proxy $RG_PROXY_URL, admin $RG_ADMIN_URL, data dir $datadir"
}

# rg_use_gateway ADMIN_URL PROXY_URL : use a gateway already running (TrustGate's
# ADMIN_URL includes /api/v1; a bare http://host:port is accepted too).
rg_use_gateway() {
  local admin="${1%/}" proxy="${2%/}" host port
  [[ "$admin" == */api/v1 ]] || admin="$admin/api/v1"
  RG_ADMIN_URL="$admin"
  RG_ADMIN_BASE="${admin%/api/v1}"
  RG_PROXY_URL="$proxy"
  RG_EXTERNAL_GATEWAY=1
  read -r host port < <(rg_url_hostport "$RG_ADMIN_BASE")
  rg_port_open "$host" "$port" || rg_die "ADMIN_URL=$1: nothing listens on $host:$port"
  read -r host port < <(rg_url_hostport "$RG_PROXY_URL")
  rg_port_open "$host" "$port" || rg_die "PROXY_URL=$2: nothing listens on $host:$port"
  rg_log "using the running gateway: proxy $RG_PROXY_URL, admin $RG_ADMIN_URL"
}

# ---------------------------------------------------------------- JSON and the admin API

# rg_json_get JSON FIELD : prints a top-level field (empty when absent). jq if present, else python3.
rg_json_get() {
  if command -v jq >/dev/null 2>&1; then
    jq -r --arg f "$2" '.[$f] // empty' <<<"$1" 2>/dev/null || true
  else
    python3 -c 'import json, sys
try:
    v = json.loads(sys.argv[1]).get(sys.argv[2])
except Exception:
    v = None
if v is not None:
    print(v if isinstance(v, str) else json.dumps(v))' "$1" "$2"
  fi
}

# rg_admin METHOD PATH [BODY] : calls the admin API (PATH under /api/v1).
# Sets RG_HTTP_STATUS and RG_HTTP_BODY; returns 0 for 2xx, 1 otherwise.
rg_admin() {
  local method="$1" path="$2" body="${3:-}" tmp args
  tmp="$(mktemp)"
  args=(-sS -o "$tmp" -w '%{http_code}' -X "$method" --max-time 10
        -H 'Content-Type: application/json' -H 'Accept: application/json')
  [[ -n "${ADMIN_TOKEN:-}" ]] && args+=(-H "Authorization: Bearer $ADMIN_TOKEN")
  [[ -n "$body" ]] && args+=(--data-binary "$body")
  RG_HTTP_STATUS="$(curl "${args[@]}" "$RG_ADMIN_URL$path" 2>/dev/null)" || RG_HTTP_STATUS="${RG_HTTP_STATUS:-000}"
  RG_HTTP_BODY="$(cat "$tmp")"
  rm -f "$tmp"
  [[ "$RG_HTTP_STATUS" == 2?? ]]
}

# rg_admin_create PATH BODY WHAT : POSTs, dies with the server's answer unless 2xx.
# Sets RG_CREATED_ID and records the entity for deletion on external gateways.
rg_admin_create() {
  local path="$1" body="$2" what="$3"
  if ! rg_admin POST "$path" "$body"; then
    rg_die "admin API refused to create the $what: POST $RG_ADMIN_URL$path -> HTTP $RG_HTTP_STATUS ${RG_HTTP_BODY:-(no body)}"
  fi
  RG_CREATED_ID="$(rg_json_get "$RG_HTTP_BODY" id)"
  [[ -n "$RG_CREATED_ID" ]] || rg_die "created the $what but the answer has no id: $RG_HTTP_BODY"
  RG_CREATED+=("$path/$RG_CREATED_ID")
  rg_log "created $what $RG_CREATED_ID"
}

# rg_admin_setup UPSTREAM_HOST UPSTREAM_PORT : gateway, upstream, service, rule and key,
# through the admin API. No sleep afterwards: a 2xx admin answer means every shard serves it.
# Sets RG_GATEWAY_ID, RG_SERVICE_ID, RG_API_KEY.
rg_admin_setup() {
  local host="$1" port="$2" name gid
  rg_need_cmds curl
  name="bench-$(date +%Y%m%d%H%M%S)-$$"
  rg_log "configuring gateway '$name' through $RG_ADMIN_URL"
  rg_admin_create /gateways "{\"name\":\"$name\",\"subdomain\":\"$name\"}" gateway
  gid="$RG_CREATED_ID"
  RG_GATEWAY_ID="$gid"
  rg_admin_create "/gateways/$gid/upstreams" \
    "{\"name\":\"llm\",\"algorithm\":\"round-robin\",\"targets\":[{\"host\":\"$host\",\"port\":$port,\"protocol\":\"http\",\"weight\":1}]}" upstream
  local uid="$RG_CREATED_ID"
  rg_admin_create "/gateways/$gid/services" \
    "{\"name\":\"chat\",\"type\":\"upstream\",\"upstream_id\":\"$uid\"}" service
  RG_SERVICE_ID="$RG_CREATED_ID"
  rg_admin_create "/gateways/$gid/rules" \
    "{\"name\":\"openai\",\"path\":\"/v1\",\"methods\":[\"GET\",\"POST\"],\"service_id\":\"$RG_SERVICE_ID\"}" "forwarding rule"
  # Keys are created last so they are deleted first on an external gateway.
  if ! rg_admin POST "/gateways/$gid/keys" '{"name":"bench"}'; then
    rg_die "admin API refused to create the API key: HTTP $RG_HTTP_STATUS ${RG_HTTP_BODY:-(no body)}"
  fi
  RG_API_KEY="$(rg_json_get "$RG_HTTP_BODY" key)"
  [[ -n "$RG_API_KEY" ]] || rg_die "the key answer carries no plaintext 'key': $RG_HTTP_BODY"
  local kid
  kid="$(rg_json_get "$RG_HTTP_BODY" id)"
  [[ -n "$kid" ]] && RG_CREATED+=("/gateways/$gid/keys/$kid")
  rg_log "created API key ${RG_API_KEY:0:6}… (id ${kid:-?})"
}

# rg_admin_try_rule NAME PATH EXTRA_JSON : creates one more rule on the bench gateway
# (EXTRA_JSON is spliced into the object, e.g. '"strip_path":true,"plugin_chain":[...]').
# Returns 1 (no exit) when the gateway refuses it; RG_HTTP_* tell why.
rg_admin_try_rule() {
  local name="$1" path="$2" extra="$3"
  if rg_admin POST "/gateways/$RG_GATEWAY_ID/rules" \
    "{\"name\":\"$name\",\"path\":\"$path\",\"methods\":[\"POST\"],\"service_id\":\"$RG_SERVICE_ID\",$extra}"; then
    RG_CREATED+=("/gateways/$RG_GATEWAY_ID/rules/$(rg_json_get "$RG_HTTP_BODY" id)")
    return 0
  fi
  return 1
}

# rg_smoke NAME METHOD URL [BODY] : one request with the bench headers; dies unless 2xx.
rg_smoke() {
  local name="$1" method="$2" url="$3" body="${4:-}" tmp code args
  tmp="$(mktemp)"
  args=(-sS -o "$tmp" -w '%{http_code}' -X "$method" --max-time 10)
  [[ -n "${RG_API_KEY:-}" ]] && args+=(-H "Authorization: Bearer $RG_API_KEY")
  [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
  code="$(curl "${args[@]}" "$url" 2>&1)" || true
  if [[ "$code" != 2?? ]]; then
    rg_warn "smoke test '$name' failed: $method $url -> ${code:-no answer}: $(head -c 300 "$tmp")"
    rm -f "$tmp"
    rg_die "scenario '$name' does not work; not load-testing it"
  fi
  rm -f "$tmp"
  rg_log "smoke test '$name' OK ($method $url -> $code)"
}

# ---------------------------------------------------------------- nginx

# A fixed OpenAI chat-completion answer: what the nginx upstream returns.
RG_CHAT_RESPONSE='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-3.5-turbo","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}'

# rg_nginx_conf PREFIX WORKERS SERVER_BLOCKS : writes PREFIX/nginx.conf: the settings
# every nginx here shares (WORKERS workers, access_log off, keep-alive for a million
# requests, temp paths inside PREFIX) around SERVER_BLOCKS (server{} and upstream{}).
# Keep-alive lasts RG_NGINX_KEEPALIVE_S seconds [75]; RG_NGINX_WORKER_CONNECTIONS [16384].
rg_nginx_conf() {
  local prefix="$1" workers="$2" blocks="$3"
  cat >"$prefix/nginx.conf" <<EOF
# Generated by scripts/lib.sh: an nginx for ringgate's benchmarks.
worker_processes $workers;
worker_rlimit_nofile 65536;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;

events {
    worker_connections ${RG_NGINX_WORKER_CONNECTIONS:-16384};
    multi_accept on;
}

http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout ${RG_NGINX_KEEPALIVE_S:-75}s;
    keepalive_requests 1000000;
    client_body_buffer_size 64k;
    client_body_temp_path $prefix/client_body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
$blocks
}
EOF
}

# rg_nginx_run PREFIX PORT LOGDIR NAME CPUS : checks PREFIX/nginx.conf, runs nginx on it
# as a non-daemon (pinned to CPUS, a taskset list, unless empty), waits for PORT and for
# its workers. Saves the conf as LOGDIR/NAME.conf. Sets RG_LAST_PID (the master) and
# RG_NGINX_ALL_PIDS (master and workers, for CPU and memory accounting).
rg_nginx_run() {
  local prefix="$1" port="$2" logdir="$3" name="$4" cpus="$5" workers deadline master
  nginx -t -q -p "$prefix/" -e "$prefix/error.log" -c "$prefix/nginx.conf" >"$logdir/$name-test.log" 2>&1 \
    || { cat "$logdir/$name-test.log" >&2; rg_die "nginx rejected the generated configuration ($prefix/nginx.conf)"; }
  rg_spawn "$name" "$logdir/$name.log" rg_on_cpus "$cpus" \
    nginx -p "$prefix/" -e "$prefix/error.log" -c "$prefix/nginx.conf" -g 'daemon off;'
  master="$RG_LAST_PID"
  rg_wait_port 127.0.0.1 "$port" "${READY_TIMEOUT:-20}" "$name" "$master"
  workers="$(awk '$1 == "worker_processes" {sub(";", "", $2); print $2}' "$prefix/nginx.conf")"
  deadline=$(( $(rg_now_us) + ${READY_TIMEOUT:-20} * 1000000 ))
  while (( $(pgrep -c -P "$master" || true) < workers )); do
    (( $(rg_now_us) > deadline )) && rg_die "$name started fewer than $workers workers"
    sleep 0.02
  done
  RG_NGINX_ALL_PIDS="$master $(pgrep -P "$master" | tr '\n' ' ')"
  RG_NGINX_ALL_PIDS="${RG_NGINX_ALL_PIDS% }"
  RG_LAST_PID="$master"
  cp "$prefix/nginx.conf" "$logdir/$name.conf"
}

# rg_start_nginx UPSTREAM_HOST UPSTREAM_PORT LOGDIR : a tuned nginx reverse proxy
# (upstream keepalive 256, HTTP/1.1 to the upstream, access_log off) with its own temp
# prefix, conf, pid and logs, run as a non-daemon on a free 127.0.0.1 port.
# RG_NGINX_WORKERS sets worker_processes [one per CPU this script may use, what
# `auto` gives]; RG_NGINX_CPUS pins it (a taskset list) [unpinned];
# RG_NGINX_LOCATION adds directives to its location (e.g. "proxy_buffering off;").
# Sets RG_NGINX_URL, RG_NGINX_PID (the master), RG_NGINX_PIDS (master and workers).
rg_start_nginx() {
  local uhost="$1" uport="$2" logdir="$3" prefix port
  rg_mktemp_dir prefix ringgate-bench-nginx
  chmod 755 "$prefix"   # workers run as nobody when started as root
  port="$(rg_free_port)"
  rg_nginx_conf "$prefix" "${RG_NGINX_WORKERS:-$(nproc)}" "
    upstream mock {
        server $uhost:$uport;
        keepalive 256;
        keepalive_requests 1000000;
        keepalive_timeout 75s;
    }

    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host \$proxy_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
            ${RG_NGINX_LOCATION:-}
        }
    }"
  rg_nginx_run "$prefix" "$port" "$logdir" nginx "${RG_NGINX_CPUS:-}"
  RG_NGINX_PID="$RG_LAST_PID"
  RG_NGINX_PIDS="$RG_NGINX_ALL_PIDS"
  RG_NGINX_URL="http://127.0.0.1:$port"
  rg_log "nginx ready at $RG_NGINX_URL -> $uhost:$uport, pids $RG_NGINX_PIDS (conf saved as $logdir/nginx.conf)"
}

# rg_start_nginx_upstream LOGDIR : an nginx that answers every request with 200 and
# RG_CHAT_RESPONSE, a fixed chat completion: an upstream that costs less CPU than the
# proxies compared in front of it (ringgate's mock costs more). UPSTREAM_WORKERS
# workers [1]; RG_UPSTREAM_CPUS pins it (a taskset list) [unpinned]. Sets RG_MOCK_URL,
# RG_MOCK_HOST, RG_MOCK_PORT, RG_MOCK_PID and RG_MOCK_PIDS, as rg_start_mock does.
rg_start_nginx_upstream() {
  local logdir="$1" prefix port
  rg_mktemp_dir prefix ringgate-bench-upstream
  chmod 755 "$prefix"
  port="$(rg_free_port)"
  rg_nginx_conf "$prefix" "${UPSTREAM_WORKERS:-1}" "
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
            default_type application/json;
            return 200 '$RG_CHAT_RESPONSE';
        }
    }"
  rg_nginx_run "$prefix" "$port" "$logdir" nginx-upstream "${RG_UPSTREAM_CPUS:-}"
  RG_MOCK_PID="$RG_LAST_PID"
  RG_MOCK_PIDS="$RG_NGINX_ALL_PIDS"
  RG_MOCK_URL="http://127.0.0.1:$port"
  RG_MOCK_HOST=127.0.0.1
  RG_MOCK_PORT="$port"
  rg_log "nginx upstream (return 200, a fixed chat completion) ready at $RG_MOCK_URL, pids $RG_MOCK_PIDS"
}

# ---------------------------------------------------------------- load tools and parsing

# Both parsers print one line: "rps p50_ms p95_ms p99_ms errors requests"
# (nan where the tool reported nothing, e.g. when every request failed; for hey,
# p99 falls back to the slowest request when hey prints no 99% line).
# errors = non-2xx answers + transport errors (refused, reset, timeout).

# rg_parse_hey FILE
rg_parse_hey() {
  awk '
    function ms(s) { return sprintf("%.3f", s * 1000) }
    /^  Requests\/sec:/           { rps = $2 }
    /^  50% in /                  { p50 = ms($3) }
    /^  95% in /                  { p95 = ms($3) }
    /^  99% in /                  { p99 = ms($3) }
    /^  Slowest:/                 { slowest = $2 }
    /^Status code distribution:/  { sec = "status"; next }
    /^Error distribution:/        { sec = "error"; next }
    /^[A-Z]/                      { sec = "" }
    sec != "" && $1 ~ /^\[[0-9]+\]$/ {
      n = $1; gsub(/[\[\]]/, "", n)
      if (sec == "status") {
        code = n; cnt = $2 + 0; total += cnt
        if (code < 200 || code >= 300) errs += cnt
      } else { errs += n; total += n }
    }
    END {
      if (rps == "" || rps == "NaN") rps = "nan"
      # hey prints "0% in 0.0000 secs" instead of a 99% line when it has too few
      # samples (or some requests failed); the slowest request bounds p99 from above,
      # so use it rather than report nothing (never flatters the result).
      if (p99 == "" && slowest + 0 > 0) p99 = ms(slowest)
      if (p50 == "") p50 = "nan"; if (p95 == "") p95 = "nan"; if (p99 == "") p99 = "nan"
      if (total == 0) errs = (errs > 0 ? errs : 1)   # no answer at all is an error
      printf "%s %s %s %s %d %d\n", rps, p50, p95, p99, errs, total
    }' "$1"
}

# rg_parse_wrk FILE : prefers the "RGWRK ..." line printed by scripts/wrk/chat.lua's
# done(), which has exact percentiles; falls back to wrk's own text.
rg_parse_wrk() {
  if grep -q '^RGWRK ' "$1"; then
    awk '/^RGWRK / {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "%.2f %.3f %.3f %.3f %d %d\n", v["rps"], v["p50_us"] / 1000, v["p95_us"] / 1000, v["p99_us"] / 1000, v["errors"], v["requests"]
    }' "$1"
    return 0
  fi
  awk '
    function ms(s) {
      if (s ~ /us$/) return sprintf("%.3f", s / 1000)
      if (s ~ /ms$/) return sprintf("%.3f", s + 0)
      if (s ~ /m$/)  return sprintf("%.3f", s * 60000)
      if (s ~ /s$/)  return sprintf("%.3f", s * 1000)
      return "nan"
    }
    /^Requests\/sec:/                    { rps = $2 }
    /^ +50% /                            { p50 = ms($2) }
    /^ +99% /                            { p99 = ms($2) }
    / requests in /                      { total = $1 }
    /Non-2xx or 3xx responses:/          { errs += $NF }
    /Socket errors:/ {
      line = $0; gsub(/[^0-9 ]/, " ", line); n = split(line, a, " ")
      for (i = 1; i <= n; i++) errs += a[i]
    }
    /unable to connect/                  { errs += 1 }
    END {
      if (rps == "") rps = "nan"; if (p50 == "") p50 = "nan"; if (p99 == "") p99 = "nan"
      printf "%s %s nan %s %d %d\n", rps, p50, p99, errs, total
    }' "$1"
}

# rg_machine_info : "CPU model, N cores, Linux x.y" for titles and metadata.
rg_machine_info() {
  local cpu
  cpu="$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)"
  printf '%s, %s cores, %s %s\n' "${cpu:-unknown CPU}" "$(nproc 2>/dev/null || echo '?')" "$(uname -s)" "$(uname -r)"
}
