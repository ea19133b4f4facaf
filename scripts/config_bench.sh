#!/usr/bin/env bash
# What a gateway configuration costs: proxied throughput (wrk, POST /v1/chat/completions to the
# mock) in several configurations, each as a ratio to `off` (metrics, access log and plugins off):
#
#   off        --metrics off --access-log off                     (the baseline)
#   metrics    --metrics on  --access-log off
#   log1       --metrics on  --access-log FILE --access-log-sample 0.01
#   log100     --metrics on  --access-log FILE --access-log-sample 1
#   plugins    as off, through a rule with rate_limiter (per_key, exact across shards) +
#              request_size_limiter + cors (issue #6's chain)
#   masking    as off, through a rule with data_masking (all entities, request and response)
#
# Every request carries an allowed `Origin`, so cors does its work on every answer.
# Every configuration runs ROUNDS times, alternating (off, metrics, log1, log100, off, ...),
# each on a freshly started gateway, so drift on a shared machine hits all of them alike.
# Prints one line per run and a table of the mean req/s and the ratio to `off`, per round
# and overall.
#
# Examples:
#   scripts/config_bench.sh                                   # observability
#   CONFIGS="off plugins masking" ROUNDS=3 scripts/config_bench.sh
#
# Environment (defaults in brackets):
#   RINGGATE_BIN     binary [target/release/ringgate, built when missing or stale]
#   SHARDS [1], MOCK_SHARDS [1], CONNECTIONS [50], THREADS [1], DURATION [10s], WARMUP [2s], ROUNDS [2]
#   CONFIGS          which configurations, in order ["off metrics log1 log100"]
set -euo pipefail

RG_TAG=config-bench
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi

SHARDS="${SHARDS:-1}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-1}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
ROUNDS="${ROUNDS:-2}"
CONFIGS="${CONFIGS:-off metrics log1 log100}"
KEY="rg-config-bench-key"
ORIGIN="https://app.example.com"

rg_install_traps
rg_need_cmds wrk python3
rg_ensure_binary
rg_mktemp_dir WORK ringgate-config-bench
rg_start_mock "$WORK"

cat >"$WORK/config.json" <<JSON
{"gateways": [{"name": "bench",
  "upstreams": [{"name": "llm", "algorithm": "round-robin",
                 "targets": [{"host": "$RG_MOCK_HOST", "port": $RG_MOCK_PORT, "protocol": "http", "weight": 1}]},
                {"name": "llm-v1", "algorithm": "round-robin",
                 "targets": [{"host": "$RG_MOCK_HOST", "port": $RG_MOCK_PORT, "protocol": "http", "weight": 1, "path": "/v1"}]}],
  "services": [{"name": "chat", "type": "upstream", "upstream": "llm"},
               {"name": "chat-v1", "type": "upstream", "upstream": "llm-v1"}],
  "rules": [{"name": "openai", "path": "/v1", "methods": ["POST"], "service": "chat"},
            {"name": "plugins", "path": "/plugins/v1", "methods": ["POST"], "service": "chat-v1",
             "strip_path": true, "plugin_chain": [
               {"name": "rate_limiter", "priority": 0, "settings":
                 {"limits": {"per_key": {"limit": 1000000000, "window": "1m"}}}},
               {"name": "request_size_limiter", "priority": 1, "settings": {"max_bytes": 1048576}},
               {"name": "cors", "priority": 2, "settings":
                 {"allowed_origins": ["$ORIGIN"], "allowed_methods": ["POST"]}}]},
            {"name": "masking", "path": "/masking/v1", "methods": ["POST"], "service": "chat-v1",
             "strip_path": true, "plugin_chain": [{"name": "data_masking", "priority": 0, "settings": {"mask_response": true}}]}],
  "keys": [{"name": "bench", "key": "$KEY"}]}]}
JSON

flags_for() {
  case "$1" in
    off) echo "--metrics off --access-log off" ;;
    metrics) echo "--metrics on --access-log off" ;;
    log1) echo "--metrics on --access-log $WORK/access.log --access-log-sample 0.01" ;;
    log100) echo "--metrics on --access-log $WORK/access.log --access-log-sample 1" ;;
    plugins | masking) echo "--metrics off --access-log off" ;;
    *) rg_die "unknown configuration '$1'" ;;
  esac
}

# The request path: the plugin configurations go through their own rules.
path_for() {
  case "$1" in
    plugins | masking) echo "/$1/v1/chat/completions" ;;
    *) echo "/v1/chat/completions" ;;
  esac
}

# run_one CONFIG ROUND : appends "CONFIG ROUND RPS P99_MS ERRORS LOG_LINES DROPPED" to results.txt
run_one() {
  local cfg="$1" round="$2" pport aport flags pid out parsed rps p99 errors lines dropped metrics
  pport="$(rg_free_port)"
  aport="$(rg_free_port)"
  rm -f "$WORK/access.log"
  rm -rf "$WORK/data"
  # shellcheck disable=SC2046
  rg_spawn "ringgate serve ($cfg)" "$WORK/gateway-$cfg-$round.log" "$RINGGATE_BIN" serve \
    --proxy "127.0.0.1:$pport" --admin "127.0.0.1:$aport" --shards "$SHARDS" \
    --data-dir "$WORK/data" --config "$WORK/config.json" --log-level warn $(flags_for "$cfg")
  pid="$RG_LAST_PID"
  rg_wait_line "$pid" "$WORK/gateway-$cfg-$round.log" '^ringgate ready' "${READY_TIMEOUT:-20}" "ringgate serve"
  API_KEY="$KEY" ORIGIN="$ORIGIN" rg_run_fg "$WORK/warmup.txt" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" \
    -s "$RG_LIB_DIR/wrk/chat.lua" "http://127.0.0.1:$pport$(path_for "$cfg")" || true
  out="$WORK/wrk-$cfg-$round.txt"
  API_KEY="$KEY" ORIGIN="$ORIGIN" rg_run_fg "$out" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s "$RG_LIB_DIR/wrk/chat.lua" "http://127.0.0.1:$pport$(path_for "$cfg")" \
    || rg_die "wrk failed: $(tail -n 5 "$out")"
  read -r rps _ _ p99 errors _ < <(rg_parse_wrk "$out")
  metrics="$(curl -fsS "http://127.0.0.1:$aport/metrics" || true)"
  lines="$(awk '/^ringgate_access_log_lines_total /{print $2}' <<<"$metrics")"
  dropped="$(awk '/^ringgate_access_log_dropped_lines_total /{print $2}' <<<"$metrics")"
  rg_stop_pid "$pid" "ringgate serve ($cfg)"
  rg_forget_pid "$pid"
  rg_log "run: $cfg round $round: $rps req/s, p99 $p99 ms, $errors errors, ${lines:-0} log lines (${dropped:-0} dropped)"
  echo "$cfg $round $rps $p99 $errors ${lines:-0} ${dropped:-0}" >>"$WORK/results.txt"
}

rg_log "machine: $(rg_machine_info); gateway shards $SHARDS, wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS round(s)"
: >"$WORK/results.txt"
for ((round = 1; round <= ROUNDS; round++)); do
  for cfg in $CONFIGS; do
    run_one "$cfg" "$round"
  done
done

python3 - "$WORK/results.txt" "$CONFIGS" <<'PY'
import sys
from collections import defaultdict
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
order = sys.argv[2].split()
by = defaultdict(dict)
for cfg, rnd, rps, p99, errors, lines, dropped in rows:
    by[cfg][int(rnd)] = (float(rps), float(p99), int(errors), int(float(lines)), int(float(dropped)))
rounds = sorted({int(r[1]) for r in rows})
print(f"{'config':<8} " + " ".join(f"{'round ' + str(r) + ' req/s':>15} {'ratio':>6}" for r in rounds)
      + f" {'mean req/s':>11} {'ratio':>6} {'p99 ms':>7} {'log lines':>10} {'dropped':>8} {'errors':>6}")
for cfg in order:
    cells = []
    for r in rounds:
        rps = by[cfg][r][0]
        base = by.get("off", {}).get(r, (float("nan"),))[0]
        cells.append(f"{rps:>15.0f} {rps / base:>6.3f}")
    mean = sum(v[0] for v in by[cfg].values()) / len(by[cfg])
    base = sum(v[0] for v in by["off"].values()) / len(by["off"]) if "off" in by else float("nan")
    p99 = max(v[1] for v in by[cfg].values())
    lines = sum(v[3] for v in by[cfg].values())
    dropped = sum(v[4] for v in by[cfg].values())
    errors = sum(v[2] for v in by[cfg].values())
    print(f"{cfg:<8} " + " ".join(cells) + f" {mean:>11.0f} {mean / base:>6.3f} {p99:>7.2f} {lines:>10} {dropped:>8} {errors:>6}")
PY
