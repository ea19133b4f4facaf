#!/usr/bin/env bash
# ringgate benchmark: TrustGate's scripts/benchmark.sh, done completely.
#
# Starts a mock upstream and the gateway (unless ADMIN_URL / PROXY_URL point at a
# running one), configures a gateway, upstream, service, rule and API key through
# the admin API, then runs hey at increasing concurrency for each scenario:
#
#   ping     GET  /__/ping on the proxy (gateway built-in, no upstream)
#   chat     POST /v1/chat/completions through the proxy, with the key
#   plugins  the same behind a realistic plugin chain (skipped, with a notice,
#            while the gateway refuses plugin chains)
#   stream   POST /v1/chat/completions with "stream": true (SSE) through the proxy
#   direct   POST /v1/chat/completions straight to the mock (the baseline)
#   cache-hit   POST the same chat request to a rule with the `cache` plugin: after the
#               smoke request stored it, every request is a hit (checked: X-Cache: HIT)
#   cache-miss  the same rule, every request's message different (scripts/wrk/chat.lua's
#               VARY): every request a lookup, a miss, the proxied answer and its insert
#               (LRU eviction once the cache is full)
#   cache-lookup  the same varying requests to the cache rule with `Cache-Control: no-store`:
#               every request a lookup and a miss, nothing stored (the lookup alone)
#   cache-off   the same varying requests through the rule without a cache: the baseline
#               cache-lookup (the lookup's cost on a miss; target: at most 2% req/s) and
#               cache-miss (a miss with its insert) are compared with
#   nginx    (COMPARE=nginx) the same through a tuned nginx on the same mock
#
# and prints a table, writes results.csv / results.json / chart.svg to
# bench-results/<timestamp>/, and exits non-zero if any run saw errors. Beside req/s and
# latency, every run records the CPU the proxy under test used (cores = CPU seconds of all
# its threads / wall seconds, from /proc/PID/stat) and its peak RSS in MB (VmHWM, reset
# before each run): ringgate in its scenarios, nginx (all processes) in `nginx`, blank for
# `direct` and for a running gateway whose pid is not given (GATEWAY_PID).
#
# Environment (defaults in brackets):
#   CONCURRENCY="10 50 100 250 500 1000"  concurrency levels (hey -c)
#   CONCURRENT_USERS=N     TrustGate's knob: a single concurrency level (overrides CONCURRENCY)
#   DURATION=10s           length of each run (hey -z); ignored when REQUESTS is set
#   REQUESTS=N             requests per run instead of a duration (hey -n, at least the concurrency)
#   SCENARIOS="ping chat plugins stream direct"   which scenarios, in order (cache-hit,
#                          cache-miss, cache-lookup and cache-off run only when named)
#   COMPARE=nginx          add the tuned-nginx scenario (needs nginx)
#   ADMIN_URL, PROXY_URL   use a running gateway (ADMIN_URL as in TrustGate: http://host:8080/api/v1)
#   ADMIN_TOKEN            admin bearer token (passed to the started gateway as --admin-token too)
#   GATEWAY_PID            pid of the running gateway (with ADMIN_URL), for its CPU and peak RSS
#   GATEWAY_ARGS           more `ringgate serve` flags for the started gateway, e.g. "--spin-us 0"
#   MOCK_URL               use a running mock upstream instead of starting one
#   RINGGATE_BIN           binary to run (default target/release/ringgate, built when needed)
#   SHARDS, MOCK_SHARDS    --shards for the gateway [one per CPU] and the mock [1]
#   STREAM_CHUNKS, STREAM_INTERVAL_MS   mock streaming shape (passed to the mock when set)
#   PLUGIN_CHAIN_JSON      plugin_chain for the plugins scenario (a JSON array)
#   HEY_TIMEOUT=20         per-request timeout in seconds (hey -t, wrk --timeout)
#   CACHE_SETTINGS_JSON    the cache plugin's settings for the cache-* scenarios
#                          [{"ttl":"10m","max_entries":10000}]; the cache-* scenarios run
#                          wrk -d DURATION (5s when REQUESTS is set), wrk -t min(c, 2)
#   RESULTS_DIR            where results go [bench-results/<timestamp>]
#   OPEN=1                 open the chart in a browser at the end (xdg-open)
#   READY_TIMEOUT=20       seconds to wait for each process to become ready
#
# Examples:
#   scripts/benchmark.sh
#   CONCURRENCY="10 100" DURATION=3s COMPARE=nginx scripts/benchmark.sh
#   ADMIN_URL=http://127.0.0.1:8080/api/v1 PROXY_URL=http://127.0.0.1:8081 CONCURRENT_USERS=50 DURATION=30s scripts/benchmark.sh
set -euo pipefail

RG_TAG=benchmark
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
(($# == 0)) || rg_die "no arguments are taken (configure with environment variables; see --help)"

# ---------------------------------------------------------------- configuration

CONCURRENCY="${CONCURRENCY:-10 50 100 250 500 1000}"
[[ -n "${CONCURRENT_USERS:-}" ]] && CONCURRENCY="$CONCURRENT_USERS"
DURATION="${DURATION:-10s}"
REQUESTS="${REQUESTS:-}"
SCENARIOS="${SCENARIOS:-ping chat plugins stream direct}"
COMPARE="${COMPARE:-}"
HEY_TIMEOUT="${HEY_TIMEOUT:-20}"
# A realistic pre-request chain with limits that never trigger (names and settings follow
# TrustGate's plugins; override with PLUGIN_CHAIN_JSON to match what the gateway implements).
DEFAULT_PLUGIN_CHAIN='[
  {"name":"request_size_limiter","enabled":true,"stage":"pre_request","priority":1,"settings":{"max_bytes":1048576}},
  {"name":"rate_limiter","enabled":true,"stage":"pre_request","priority":2,"settings":{"limits":{"global":{"limit":100000000,"window":"1m"}}}},
  {"name":"injection_protection","enabled":true,"stage":"pre_request","priority":3,"settings":{}},
  {"name":"data_masking","enabled":true,"stage":"pre_request","priority":4,"settings":{}}
]'
PLUGIN_CHAIN_JSON="${PLUGIN_CHAIN_JSON:-$DEFAULT_PLUGIN_CHAIN}"

for c in $CONCURRENCY; do
  [[ "$c" =~ ^[1-9][0-9]*$ ]] || rg_die "CONCURRENCY must be positive integers, got '$c'"
done
[[ -z "$REQUESTS" || "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || rg_die "REQUESTS must be a positive integer, got '$REQUESTS'"
[[ -n "$REQUESTS" || "$DURATION" =~ ^[0-9]+(ms|s|m|h)$ ]] || rg_die "DURATION must look like 10s, 500ms or 2m, got '$DURATION'"
case "$COMPARE" in
  "") ;;
  nginx) [[ " $SCENARIOS " == *" nginx "* ]] || SCENARIOS="$SCENARIOS nginx" ;;
  *) rg_die "COMPARE supports only 'nginx', got '$COMPARE'" ;;
esac
for s in $SCENARIOS; do
  case "$s" in ping | chat | plugins | stream | direct | nginx | cache-hit | cache-miss | cache-lookup | cache-off) ;; *) rg_die "unknown scenario '$s'" ;; esac
done
DEFAULT_CACHE_SETTINGS='{"ttl":"10m","max_entries":10000}'
CACHE_SETTINGS_JSON="${CACHE_SETTINGS_JSON:-$DEFAULT_CACHE_SETTINGS}"
# is_wrk SCENARIO : the cache scenarios run wrk (its Lua script varies the requests of
# cache-miss and cache-off), so their req/s compare without a tool's difference.
is_wrk() { [[ "$1" == cache-* ]]; }
# varies SCENARIO : every request different.
varies() { [[ "$1" == cache-miss || "$1" == cache-lookup || "$1" == cache-off ]]; }
# cache_counts : "HITS MISSES" from the gateway's /metrics ("? ?" when it has none).
cache_counts() {
  local args=(-sS --max-time 10)
  [[ -n "${ADMIN_TOKEN:-}" ]] && args+=(-H "Authorization: Bearer $ADMIN_TOKEN")
  curl "${args[@]}" "$RG_ADMIN_BASE/metrics" 2>/dev/null |
    awk '$1 == "ringgate_cache_hits_total" {h = $2} $1 == "ringgate_cache_misses_total" {m = $2}
      END {print (h == "" ? "?" : h), (m == "" ? "?" : m)}'
}
if [[ -n "${ADMIN_URL:-}" && -z "${PROXY_URL:-}" ]] || [[ -z "${ADMIN_URL:-}" && -n "${PROXY_URL:-}" ]]; then
  rg_die "set both ADMIN_URL and PROXY_URL to use a running gateway, or neither to start one"
fi

deps=(curl python3 hey)
[[ " $SCENARIOS " == *" nginx "* ]] && deps+=(nginx)
[[ " $SCENARIOS " == *" cache-"* ]] && deps+=(wrk)
rg_need_cmds "${deps[@]}"
python3 -c 'import json, sys; assert isinstance(json.loads(sys.argv[1]), list)' "$PLUGIN_CHAIN_JSON" 2>/dev/null \
  || rg_die "PLUGIN_CHAIN_JSON must be a JSON array of plugins"

rg_install_traps

STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS_DIR="${RESULTS_DIR:-$RG_ROOT/bench-results/$STAMP}"
mkdir -p "$RESULTS_DIR/raw"
LOGDIR="$RESULTS_DIR/logs"
mkdir -p "$LOGDIR"
CSV="$RESULTS_DIR/results.csv"
echo "scenario,tool,concurrency,requests,errors,rps,p50_ms,p95_ms,p99_ms,cores,peak_rss_mb" >"$CSV"

if [[ -n "$REQUESTS" ]]; then load_desc="$REQUESTS requests per run"; else load_desc="$DURATION per run"; fi
rg_log "machine: $(rg_machine_info)"
rg_log "scenarios: $SCENARIOS; concurrency: $CONCURRENCY; $load_desc"
rg_log "results: $RESULTS_DIR"

# ---------------------------------------------------------------- processes and configuration

if [[ -z "${MOCK_URL:-}" || -z "${ADMIN_URL:-}" ]]; then
  rg_ensure_binary
fi
if [[ -n "${MOCK_URL:-}" ]]; then rg_use_mock "$MOCK_URL"; else rg_start_mock "$LOGDIR"; fi
if [[ -n "${ADMIN_URL:-}" ]]; then
  rg_use_gateway "$ADMIN_URL" "$PROXY_URL"
  [[ -z "${GATEWAY_PID:-}" ]] || kill -0 "$GATEWAY_PID" 2>/dev/null || rg_die "GATEWAY_PID=$GATEWAY_PID is not a running process"
  RG_GATEWAY_PID="${GATEWAY_PID:-}"
else
  rg_start_gateway "$LOGDIR"
fi

rg_admin_setup "$RG_MOCK_HOST" "$RG_MOCK_PORT"

PLUGINS_OK=0
if [[ " $SCENARIOS " == *" plugins "* ]]; then
  if rg_admin_try_rule openai-plugins /bench-plugins "\"strip_path\":true,\"plugin_chain\":$PLUGIN_CHAIN_JSON"; then
    PLUGINS_OK=1
    rg_log "created the plugin-chain rule /bench-plugins (strip_path) for the plugins scenario"
  else
    rg_warn "NOTICE: skipping the 'plugins' scenario: the gateway refused a rule with a plugin chain" \
      "(HTTP $RG_HTTP_STATUS ${RG_HTTP_BODY:-no body}); it runs once plugins exist"
  fi
fi

if [[ " $SCENARIOS " == *" cache-"* ]]; then
  rg_admin_try_rule bench-cache /bench-cache \
    "\"strip_path\":true,\"plugin_chain\":[{\"name\":\"cache\",\"settings\":$CACHE_SETTINGS_JSON}]" \
    || rg_die "the gateway refused the cache rule: HTTP $RG_HTTP_STATUS ${RG_HTTP_BODY:-no body}"
  rg_log "created the cache rule /bench-cache (strip_path) for the cache-* scenarios"
fi

if [[ " $SCENARIOS " == *" nginx "* ]]; then
  rg_start_nginx "$RG_MOCK_HOST" "$RG_MOCK_PORT" "$LOGDIR"
fi

# scenario -> method, url, body, whether the key is sent
scenario_request() {
  case "$1" in
    ping)    echo "GET  $RG_PROXY_URL/__/ping" ;;
    chat)    echo "POST $RG_PROXY_URL/v1/chat/completions" ;;
    plugins) echo "POST $RG_PROXY_URL/bench-plugins/v1/chat/completions" ;;
    stream)  echo "POST $RG_PROXY_URL/v1/chat/completions" ;;
    direct)  echo "POST $RG_MOCK_URL/v1/chat/completions" ;;
    cache-hit | cache-miss | cache-lookup) echo "POST $RG_PROXY_URL/bench-cache/v1/chat/completions" ;;
    cache-off) echo "POST $RG_PROXY_URL/v1/chat/completions" ;;
    nginx)   echo "POST $RG_NGINX_URL/v1/chat/completions" ;;
  esac
}
scenario_body() {
  case "$1" in
    ping) echo "" ;;
    stream) echo "$RG_STREAM_BODY" ;;
    *) echo "$RG_CHAT_BODY" ;;
  esac
}

# scenario_pids SCENARIO : the processes of the proxy under test (empty: none to measure).
scenario_pids() {
  case "$1" in
    direct) echo "" ;;
    nginx) echo "$RG_NGINX_PIDS" ;;
    *) echo "${RG_GATEWAY_PID:-}" ;;
  esac
}

# Every scenario answers once before it is loaded, so a misconfiguration is one clear
# message rather than a table of errors.
RUN_SCENARIOS=()
for s in $SCENARIOS; do
  if [[ "$s" == plugins ]] && ((!PLUGINS_OK)); then continue; fi
  read -r method url < <(scenario_request "$s")
  rg_smoke "$s" "$method" "$url" "$(scenario_body "$s")"
  if [[ "$s" == cache-hit ]]; then
    # The smoke request stored the answer: the next one must be a hit.
    xcache="$(curl -sS -o /dev/null -D - --max-time 10 -H "Authorization: Bearer $RG_API_KEY" \
      -H 'Content-Type: application/json' --data-binary "$(scenario_body "$s")" "$url" |
      tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache" {print $2}')"
    [[ "$xcache" == HIT ]] || rg_die "scenario 'cache-hit' does not hit the cache (X-Cache: ${xcache:-none})"
  fi
  RUN_SCENARIOS+=("$s")
done

# ---------------------------------------------------------------- load

printf '\n%-8s %6s %11s %9s %9s %9s %8s %6s %8s\n' scenario conc "req/s" "p50 ms" "p95 ms" "p99 ms" errors cores "peak MB" >&2
FAILED=()
HWM_NOTE=""
for s in "${RUN_SCENARIOS[@]}"; do
  read -r method url < <(scenario_request "$s")
  body="$(scenario_body "$s")"
  for c in $CONCURRENCY; do
    args=(-c "$c" -t "$HEY_TIMEOUT" -m "$method")
    if [[ -n "$REQUESTS" ]]; then
      n="$REQUESTS"; ((n < c)) && n="$c"
      args+=(-n "$n")
    else
      args+=(-z "$DURATION")
    fi
    [[ "$s" != ping && "$s" != direct ]] && args+=(-H "Authorization: Bearer $RG_API_KEY")
    [[ -n "$body" ]] && args+=(-T application/json -d "$body")
    raw="$RESULTS_DIR/raw/$s-c$c.txt"
    if is_wrk "$s"; then
      rg_log "run: $s at concurrency $c: wrk -c $c with scripts/wrk/chat.lua$(varies "$s" && echo ", every request different (VARY)") $url"
    else
      rg_log "run: $s at concurrency $c ($load_desc): hey ${args[*]//Bearer */Bearer ***} $url"
    fi
    hey_rc=0
    pids="$(scenario_pids "$s")" cores="" peak_mb=""
    if [[ -n "$pids" ]]; then
      # shellcheck disable=SC2086
      if ! rg_reset_peak_rss $pids && [[ -z "$HWM_NOTE" ]]; then
        HWM_NOTE="peak RSS is since the process started (this kernel or user cannot reset VmHWM)"
        rg_warn "$HWM_NOTE"
      fi
      # shellcheck disable=SC2086
      ticks0="$(rg_cpu_ticks $pids)"
    fi
    [[ "$s" == cache-* ]] && read -r hits0 misses0 < <(cache_counts)
    t0="$(rg_now_us)"
    tool=hey
    if is_wrk "$s"; then
      tool=wrk threads=$((c < 2 ? c : 2)) wrk_d="$DURATION"
      [[ -n "$REQUESTS" ]] && wrk_d=5s
      vary=""
      varies "$s" && vary="$s-c$c-$t0"
      cache_control=""
      [[ "$s" == cache-lookup ]] && cache_control=no-store
      API_KEY="$RG_API_KEY" VARY="$vary" CACHE_CONTROL="$cache_control" rg_run_fg "$raw" wrk -t "$threads" -c "$c" -d "$wrk_d" \
        --timeout "${HEY_TIMEOUT}s" -s "$RG_LIB_DIR/wrk/chat.lua" "$url" || hey_rc=$?
    else
      rg_run_fg "$raw" hey "${args[@]}" "$url" || hey_rc=$?
    fi
    t1="$(rg_now_us)"
    if [[ -n "$pids" ]]; then
      # shellcheck disable=SC2086
      cores="$(rg_cores_used "$ticks0" "$(rg_cpu_ticks $pids)" $((t1 - t0)))"
      # shellcheck disable=SC2086
      peak_mb="$(awk -v k="$(rg_status_kb VmHWM $pids)" 'BEGIN {printf "%.1f", k / 1024}')"
    fi
    if [[ "$tool" == wrk ]]; then
      read -r rps p50 p95 p99 errs total < <(rg_parse_wrk "$raw")
    else
      read -r rps p50 p95 p99 errs total < <(rg_parse_hey "$raw")
    fi
    if [[ "$s" == cache-* ]]; then
      # What the gateway's cache counted during the run: hits and misses as intended?
      read -r hits1 misses1 < <(cache_counts)
      if [[ "$hits0$hits1$misses0$misses1" == *"?"* ]]; then
        echo "$s c$c requests=$total hits=? misses=? (no cache counters in /metrics)" >>"$RESULTS_DIR/cache-counters.txt"
      else
        echo "$s c$c requests=$total hits=$((hits1 - hits0)) misses=$((misses1 - misses0))" >>"$RESULTS_DIR/cache-counters.txt"
      fi
    fi
    if ((hey_rc != 0)); then
      rg_warn "hey exited with status $hey_rc (see $raw)"
      ((errs == 0)) && errs=1
    fi
    echo "$s,$tool,$c,$total,$errs,$rps,$p50,$p95,$p99,$cores,$peak_mb" >>"$CSV"
    printf '%-8s %6s %11s %9s %9s %9s %8s %6s %8s\n' "$s" "$c" "$rps" "$p50" "$p95" "$p99" "$errs" "${cores:--}" "${peak_mb:--}" >&2
    if ((errs > 0)); then FAILED+=("$s at concurrency $c: $errs errors of $total requests (raw output: $raw)"); fi
  done
done

# ---------------------------------------------------------------- report

SVG="$RESULTS_DIR/chart.svg"
meta=(--meta "tool=$(rg_tool_version hey)" --meta "scenarios=${RUN_SCENARIOS[*]}" --meta "concurrency=$CONCURRENCY"
      --meta "proxy_url=$RG_PROXY_URL" --meta "upstream_url=$RG_MOCK_URL" --meta "external_gateway=$RG_EXTERNAL_GATEWAY")
if [[ -n "$REQUESTS" ]]; then meta+=(--meta "requests=$REQUESTS"); else meta+=(--meta "duration=$DURATION"); fi
[[ -n "${RG_NGINX_URL:-}" ]] && meta+=(--meta "nginx=$(rg_tool_version nginx)")
[[ -n "${RINGGATE_BIN:-}" ]] && meta+=(--meta "ringgate_bin=$RINGGATE_BIN")
[[ -n "${GATEWAY_ARGS:-}" ]] && meta+=(--meta "gateway_args=$GATEWAY_ARGS")
[[ -n "$HWM_NOTE" ]] && meta+=(--meta "peak_rss_note=$HWM_NOTE")
((PLUGINS_OK)) || [[ " $SCENARIOS " != *" plugins "* ]] || meta+=(--meta "skipped=plugins (the gateway refused a plugin chain)")

echo >&2
rg_log "results ($load_desc, $(rg_machine_info)):"
python3 "$RG_LIB_DIR/chart.py" "$CSV" --table --json "$RESULTS_DIR/results.json" --svg "$SVG" \
  --title "ringgate benchmark: req/s, p99, CPU and peak RSS by concurrency" "${meta[@]}"
echo
if [[ " ${RUN_SCENARIOS[*]} " == *" cache-"* ]]; then
  # The cache in numbers: a hit against a proxied miss; the lookup's cost on a miss
  # (cache-lookup against cache-off, the same varying requests; target: at most 2% req/s);
  # and what a miss costs with its insert (cache-miss against cache-off).
  awk -F, 'NR > 1 && $1 ~ /^cache-/ {rps[$1, $3] = $6; p50[$1, $3] = $7; c[$3] = 1}
    END {
      for (k in c) {
        line = sprintf("cache at concurrency %s:", k)
        if ((("cache-hit", k) in rps) && (("cache-miss", k) in rps) && rps["cache-miss", k] > 0)
          line = line sprintf(" hit %.0f req/s p50 %s ms vs miss %.0f req/s p50 %s ms (%.2fx);", rps["cache-hit", k], p50["cache-hit", k], rps["cache-miss", k], p50["cache-miss", k], rps["cache-hit", k] / rps["cache-miss", k])
        if ((("cache-lookup", k) in rps) && (("cache-off", k) in rps) && rps["cache-off", k] > 0) {
          loss = 100 * (1 - rps["cache-lookup", k] / rps["cache-off", k])
          line = line sprintf(" lookup cost on a miss %.1f%% of req/s (%s);", loss, loss <= 2 ? "within 2%" : "above the 2% target")
        }
        if ((("cache-miss", k) in rps) && (("cache-off", k) in rps) && rps["cache-off", k] > 0)
          line = line sprintf(" a miss with its insert %.1f%% of req/s", 100 * (1 - rps["cache-miss", k] / rps["cache-off", k]))
        print line
      }
    }' "$CSV" | sort | tee "$RESULTS_DIR/cache.txt" >&2
  tee -a "$RESULTS_DIR/cache.txt" <"$RESULTS_DIR/cache-counters.txt" >&2
fi
rg_log "CSV:   $CSV"
rg_log "JSON:  $RESULTS_DIR/results.json"
rg_log "chart: $SVG  (open file://$SVG in a browser)"
if [[ "${OPEN:-0}" == 1 ]] && command -v xdg-open >/dev/null 2>&1; then
  xdg-open "$SVG" >/dev/null 2>&1 || rg_warn "xdg-open failed; open $SVG yourself"
fi

if ((${#FAILED[@]} > 0)); then
  rg_warn "some runs saw errors (non-2xx answers or transport errors); these numbers are not clean:"
  for f in "${FAILED[@]}"; do rg_warn "  - $f"; done
  rg_die "benchmark finished with errors (${#FAILED[@]} run(s)); see $RESULTS_DIR"
fi
rg_log "benchmark finished: every run was error-free"
