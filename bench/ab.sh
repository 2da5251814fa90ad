#!/usr/bin/env bash
# A/B two Warren binaries on the compare.sh workloads, alternating A, B, A, B ... on freshly started brokers,
# to tell a change's cost apart from run-to-run noise (compare.sh's RabbitMQ ratio moves more than 3% between
# runs on a shared machine). Prints one markdown row per workload: median msg/s of A and of B, and B/A.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY
#   ROUNDS=5 DURATION=8 ONLY="autoack persistent" bench/ab.sh ...
#
# Environment: DURATION (default 8), WARMUP (2), ROUNDS (3), ONLY (autoack manual persistent fanout),
# PERF (warren-perf binary, default this repo's target/release/warren-perf).
set -euo pipefail
a=${1:?usage: ab.sh OLD_BINARY NEW_BINARY}; b=${2:?usage: ab.sh OLD_BINARY NEW_BINARY}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PERF=${PERF:-$here/../target/release/warren-perf}
DURATION=${DURATION:-8}; WARMUP=${WARMUP:-2}; ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-"autoack manual persistent fanout"}
work=$(mktemp -d "${TMPDIR:-/tmp}/warren-ab.XXXXXX")
pid=""
stop() { if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
trap 'stop; rm -rf "$work"' EXIT

# run BIN WORKLOAD: start BIN fresh on a fresh data dir, run one measurement, print msg/s.
run() {
  local bin=$1 id=$2 port="" args=()
  rm -rf "$work/data"
  "$bin" --port 0 --bind 127.0.0.1 --data-dir "$work/data" --log-level warn >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 1 100); do
    port=$(sed -nE 's/^LISTENING port=([0-9]+)$/\1/p' "$work/out" | head -n1)
    [ -n "$port" ] && break; sleep 0.05
  done
  [ -n "$port" ] || { echo "ab.sh: $bin did not start" >&2; cat "$work/err" >&2; exit 1; }
  local common=(--duration "$DURATION" --warmup "$WARMUP")
  case $id in
    autoack) args=(throughput "${common[@]}" --size 16 --autoack) ;;
    manual) args=(throughput "${common[@]}" --size 16 --prefetch 1000 --multiple-ack 100) ;;
    persistent) args=(throughput "${common[@]}" --size 1024 --persistent --durable --confirm 1000 --prefetch 1000 --multiple-ack 100) ;;
    fanout) args=(fanout "${common[@]}" --size 16 --queues 10 --autoack) ;;
    *) echo "ab.sh: unknown workload $id" >&2; exit 1 ;;
  esac
  "$PERF" --url "amqp://guest:guest@127.0.0.1:$port/%2f" --broker-pid "$pid" --json -q "${args[@]}" \
    | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["consumed_per_s"]))'
  stop
}

median() { sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : int((v[NR/2]+v[NR/2+1])/2)}'; }

echo "| workload | A msg/s | B msg/s | B/A |"
echo "|---|---:|---:|---:|"
for id in $ONLY; do
  : >"$work/a"; : >"$work/b"
  for _ in $(seq 1 "$ROUNDS"); do
    run "$a" "$id" >>"$work/a"
    run "$b" "$id" >>"$work/b"
  done
  ma=$(median <"$work/a"); mb=$(median <"$work/b")
  echo "| $id | $ma | $mb | $(python3 -c "print(f'{$mb/$ma:.3f}')") |"
  echo "  $id A: $(tr '\n' ' ' <"$work/a")  B: $(tr '\n' ' ' <"$work/b")" >&2
done
