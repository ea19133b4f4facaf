#!/usr/bin/env bash
# Oversubscribes the CPUs and runs the tests whose requests wait across
# executors, in rounds, to catch lost wake-ups (a request or admin call that
# gets no answer for 10 s fails its test).
#
# Each round runs three modules of the `alone` test binary (tests/alone/main.rs)
# at once, each in its own process (rate_limit_exact: answers from
# another shard; admin_replication: acknowledgements from every shard;
# sharding: 64 connections over two shards) while BURNERS busy loops keep
# every CPU full. Before the executors' wake-up bell (src/runtime/bell.rs)
# about half the rounds stalled on this 2-vCPU VM; compare with
# RINGGATE_BELL_MS=0 scripts/stall_stress.sh.
#
# Environment: ROUNDS [10], BURNERS [4], LOGS [target/stall-stress].
# Exits non-zero when any round failed; failed rounds keep their logs.
set -euo pipefail

ROUNDS="${ROUNDS:-10}"
BURNERS="${BURNERS:-4}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOGS="${LOGS:-target/stall-stress}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 1; }
[[ "$BURNERS" =~ ^[0-9]+$ ]] || { echo "BURNERS must be a number" >&2; exit 1; }
mkdir -p "$LOGS"

echo "building the test binary..." >&2
BUILD="$(cargo test --test alone --no-run 2>&1)" || { echo "$BUILD" >&2; exit 1; }
ALONE="$(grep -o "Executable tests/alone/main.rs ([^)]*)" <<<"$BUILD" | sed 's/.*(\(.*\))/\1/')"
[[ -x "$ALONE" ]] || { echo "no test binary for tests/alone/main.rs" >&2; exit 1; }
TESTS=(rate_limit_exact admin_replication sharding)

BURNER_PIDS=()
stop_burners() { ((${#BURNER_PIDS[@]})) && kill "${BURNER_PIDS[@]}" 2>/dev/null; BURNER_PIDS=(); }
trap stop_burners EXIT
for ((i = 0; i < BURNERS; i++)); do
  (while :; do :; done) &
  BURNER_PIDS+=($!)
done

failed=0
for ((n = 1; n <= ROUNDS; n++)); do
  started=$SECONDS
  declare -A PID=()
  for t in "${TESTS[@]}"; do
    "$ALONE" "$t::" >"$LOGS/$t.$n.log" 2>&1 &
    PID[$t]=$!
  done
  bad=()
  for t in "${TESTS[@]}"; do
    wait "${PID[$t]}" || bad+=("$t")
  done
  if ((${#bad[@]})); then
    failed=$((failed + 1))
    echo "round $n/$ROUNDS: FAILED ${bad[*]} ($((SECONDS - started)) s; logs $LOGS/*.$n.log)"
  else
    rm -f "$LOGS"/*."$n".log
    echo "round $n/$ROUNDS: ok ($((SECONDS - started)) s)"
  fi
done
echo "$failed of $ROUNDS rounds failed (${BURNERS} busy loops, RINGGATE_BELL_MS=${RINGGATE_BELL_MS:-default})"
((failed == 0))
