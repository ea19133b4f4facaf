#!/usr/bin/env bash
# Streaming benchmark (SSE chat completions, loopback only), in two parts:
#
#   (a) latency: streams one at a time, alternating in rounds between the mock directly and
#       ringgate in front of the same mock: time to first token and the gaps between events,
#       p50/p90/p99/max each way, and what ringgate adds.
#   (b) concurrent: STREAMS streams at once (all connected first, then started together),
#       paced at INTERVAL_MS per event by the mock, straight to the mock (the machine's own
#       baseline) and then through ringgate: completed, stalled (a gap between events above
#       STALL_FACTOR x the pace) and failed streams, gap and first-token percentiles.
#
# The load client is examples/stream_load.rs (raw HTTP/1.1; part (b) on one glommio
# executor). Every run is bounded (per-read timeouts, DEADLINE per part); everything
# started is stopped on exit.
# RLIMIT_NOFILE is raised to the hard limit for every process (the client needs STREAMS fds,
# the mock as many, ringgate twice as many).
#
# Environment (defaults in brackets):
#   RINGGATE_BIN, STREAM_LOAD_BIN  binaries [built: cargo build --release --bin ringgate --example stream_load]
#   SHARDS [2] (ringgate), MOCK_SHARDS [2], GATEWAY_ARGS [] more `ringgate serve` flags
#   LAT_STREAMS [100] per side, LAT_CHUNKS [10] content events per stream, INTERVAL_MS [20]
#   LAT_CLIENT [blocking]: how part (a)'s client waits: blocking std sockets (it sleeps in recv
#       as soon as the request is sent, like curl or an SDK) or glommio (through an executor,
#       whose own turn after each send competes for the same two vCPUs)
#   LAT_FRESH [0]: 1 opens a new connection for every stream of part (a) (not timed)
#   STREAMS [2000], CHUNKS [50] content events per stream, STALL_FACTOR [10], DEADLINE [90] s
#   RAMP_MS [0]: spread the concurrent streams' starts over this long (0: all at once)
#   BASELINE [1]: 0 skips part (b) straight to the mock
#   COMPARE [none]: nginx adds part (a) again through nginx in front of the same mock
#       (as many workers as SHARDS, upstream keep-alive, proxy_buffering off so each event
#       goes out as it comes): what a plain reverse proxy adds to the first event here
set -euo pipefail

# shellcheck disable=SC2034  # read by lib.sh
RG_TAG=stream-bench
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi

SHARDS="${SHARDS:-2}"
MOCK_SHARDS="${MOCK_SHARDS:-2}"
LAT_STREAMS="${LAT_STREAMS:-100}"
LAT_CHUNKS="${LAT_CHUNKS:-10}"
LAT_CLIENT="${LAT_CLIENT:-blocking}"
LAT_FRESH="${LAT_FRESH:-0}"
LAT_ARGS=(--client "$LAT_CLIENT")
if ((LAT_FRESH)); then LAT_ARGS+=(--fresh); fi
[[ "$LAT_CLIENT" == blocking || "$LAT_CLIENT" == glommio ]] \
  || rg_die "LAT_CLIENT must be blocking or glommio, got '$LAT_CLIENT'"
GATEWAY_ARGS="${GATEWAY_ARGS:-}"
INTERVAL_MS="${INTERVAL_MS:-20}"
STREAMS="${STREAMS:-2000}"
CHUNKS="${CHUNKS:-50}"
STALL_FACTOR="${STALL_FACTOR:-10}"
DEADLINE="${DEADLINE:-90}"
BASELINE="${BASELINE:-1}"
RAMP_MS="${RAMP_MS:-0}"
COMPARE="${COMPARE:-}"
[[ -z "$COMPARE" || "$COMPARE" == nginx ]] || rg_die "COMPARE must be nginx or empty, got '$COMPARE'"
[[ "$COMPARE" == nginx ]] && rg_need_cmds nginx
KEY="rg-stream-bench-key"
export MOCK_SHARDS

rg_install_traps

# File descriptors: the client holds STREAMS sockets, the mock as many, ringgate both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
if ((NOFILE < 2 * STREAMS + 256)); then
  rg_die "RLIMIT_NOFILE is $NOFILE (hard limit); ${STREAMS} streams need $((2 * STREAMS + 256)): raise it (ulimit -Hn, tuning/limits.conf) or lower STREAMS"
fi

if [[ -z "${RINGGATE_BIN:-}" || -z "${STREAM_LOAD_BIN:-}" ]]; then
  rg_need_cmds cargo
  TARGET_DIR="${CARGO_TARGET_DIR:-$RG_ROOT/target}"
  rg_log "building: cargo build --release --bin ringgate --example stream_load"
  (cd "$RG_ROOT" && cargo build --release --bin ringgate --example stream_load) \
    || rg_die "cargo build --release failed"
  RINGGATE_BIN="${RINGGATE_BIN:-$TARGET_DIR/release/ringgate}"
  STREAM_LOAD_BIN="${STREAM_LOAD_BIN:-$TARGET_DIR/release/examples/stream_load}"
fi
[[ -x "$RINGGATE_BIN" ]] || rg_die "no ringgate binary at $RINGGATE_BIN"
[[ -x "$STREAM_LOAD_BIN" ]] || rg_die "no stream_load binary at $STREAM_LOAD_BIN"

rg_mktemp_dir WORK ringgate-stream-bench
rg_start_mock "$WORK"

cat >"$WORK/config.json" <<JSON
{"gateways": [{"name": "bench",
  "upstreams": [{"name": "llm", "targets": [{"host": "$RG_MOCK_HOST", "port": $RG_MOCK_PORT}]}],
  "services": [{"name": "chat", "type": "upstream", "upstream": "llm"}],
  "rules": [{"name": "openai", "path": "/v1", "methods": ["POST"], "service": "chat"}],
  "keys": [{"name": "bench", "key": "$KEY"}]}]}
JSON
PPORT="$(rg_free_port)"
APORT="$(rg_free_port)"
while [[ "$APORT" == "$PPORT" ]]; do APORT="$(rg_free_port)"; done
# shellcheck disable=SC2086  # GATEWAY_ARGS is a list of flags
rg_spawn "ringgate serve" "$WORK/ringgate.log" "$RINGGATE_BIN" serve \
  --proxy "127.0.0.1:$PPORT" --admin "127.0.0.1:$APORT" --data-dir "$WORK/data" \
  --config "$WORK/config.json" --shards "$SHARDS" --log-level warn $GATEWAY_ARGS # word-split on purpose
rg_wait_line "$RG_LAST_PID" "$WORK/ringgate.log" '^ringgate ready' "${READY_TIMEOUT:-20}" "ringgate serve"
GATEWAY="127.0.0.1:$PPORT"
DIRECT="$RG_MOCK_HOST:$RG_MOCK_PORT"
rg_log "ringgate ready on $GATEWAY (shards $SHARDS), mock on $DIRECT (shards $MOCK_SHARDS)"

status=0
run_part() { # name, output file, stream_load args...
  local name="$1" out="$2"
  shift 2
  rg_log "$name: $STREAM_LOAD_BIN $*"
  if ! timeout --kill-after=10 "$((DEADLINE + 30))" "$STREAM_LOAD_BIN" "$@" >"$out" 2>"$out.err"; then
    status=1
    rg_warn "$name: the load client reported a failure (or stalls); see below"
  fi
  cat "$out" >&2
}

run_part latency "$WORK/latency.txt" latency --direct "$DIRECT" --gateway "$GATEWAY" --key "$KEY" \
  --streams "$LAT_STREAMS" --chunks "$LAT_CHUNKS" --interval-ms "$INTERVAL_MS" --deadline-secs "$DEADLINE" \
  "${LAT_ARGS[@]}"
if [[ "$COMPARE" == nginx ]]; then
  RG_NGINX_WORKERS="$SHARDS" RG_NGINX_LOCATION="proxy_buffering off;" \
    rg_start_nginx "$RG_MOCK_HOST" "$RG_MOCK_PORT" "$WORK"
  run_part "latency, nginx" "$WORK/latency-nginx.txt" latency --direct "$DIRECT" \
    --gateway "${RG_NGINX_URL#http://}" --key "$KEY" --label nginx \
    --streams "$LAT_STREAMS" --chunks "$LAT_CHUNKS" --interval-ms "$INTERVAL_MS" --deadline-secs "$DEADLINE" \
    "${LAT_ARGS[@]}"
  rg_stop_pid "$RG_NGINX_PID" nginx
fi
if ((BASELINE)); then
  run_part "concurrent, direct" "$WORK/direct.txt" concurrent --target "$DIRECT" \
    --streams "$STREAMS" --chunks "$CHUNKS" --interval-ms "$INTERVAL_MS" \
    --stall-factor "$STALL_FACTOR" --deadline-secs "$DEADLINE" --ramp-ms "$RAMP_MS"
fi
run_part "concurrent, ringgate" "$WORK/gateway.txt" concurrent --target "$GATEWAY" --key "$KEY" \
  --streams "$STREAMS" --chunks "$CHUNKS" --interval-ms "$INTERVAL_MS" \
  --stall-factor "$STALL_FACTOR" --deadline-secs "$DEADLINE" --ramp-ms "$RAMP_MS"

echo
echo "== stream benchmark: $(rg_machine_info)"
echo "   ringgate $RINGGATE_BIN, $SHARDS shards ${GATEWAY_ARGS:+($GATEWAY_ARGS)}; mock $MOCK_SHARDS shards; nofile $NOFILE; $(date -u +%FT%TZ)"
echo
echo "-- (a) one stream at a time, $LAT_STREAMS per side"
grep -v '^RESULT' "$WORK/latency.txt"
if [[ "$COMPARE" == nginx ]]; then
  echo
  echo "-- (a) the same through nginx ($SHARDS workers, proxy_buffering off), $LAT_STREAMS per side"
  grep -v '^RESULT' "$WORK/latency-nginx.txt"
fi
if ((BASELINE)); then
  echo
  echo "-- (b) $STREAMS concurrent streams straight to the mock (the machine's baseline)"
  grep -v '^RESULT' "$WORK/direct.txt"
fi
echo
echo "-- (b) $STREAMS concurrent streams through ringgate"
grep -v '^RESULT' "$WORK/gateway.txt"
echo
cat "$WORK"/*.txt | grep '^RESULT' || true
exit "$status"
