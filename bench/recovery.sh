#!/usr/bin/env bash
# A large persistent backlog: broker RSS with M queued persistent messages, the time to recover them after
# a SIGKILL, RSS after recovery, and the drain rate reading the bodies back from disk.
#
#   bench/recovery.sh                          # 10 million 16-byte messages
#   MESSAGES=1000000 SIZE=1024 bench/recovery.sh
#   BROKER=lavinmq LAVINMQ=/tmp/lavinmq-build/bin/lavinmq bench/recovery.sh   # the same run on LavinMQ
#   BROKER=rabbitmq MESSAGES=1000000 bench/recovery.sh   # on RabbitMQ 3.10 (../shared/tools/rabbitmq.sh)
#   QUEUES=1000 bench/recovery.sh              # the messages spread over 1,000 queues
#   QUEUES=1000 PREFETCH=100 bench/recovery.sh # ... drained with 100 unacked per consumer at most
#   DEEP=1000000 bench/recovery.sh             # also: the first million published into the empty queue
#                                              # against the last million, into the deep backlog
#
# Environment (all optional): MESSAGES (default 10000000, in all), QUEUES (default 1), SIZE body bytes
# (default 16), PREFETCH per consumer (default 1000; a consumer acks a tenth of it at a time), DEEP (default
# 0: one fill), PORT (default 5694),
# DATA_DIR (default a fresh temp dir, removed afterwards), SKIP_BUILD=1, BENCH_LOCK (default
# /tmp/warren-bench.lock).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
MESSAGES=${MESSAGES:-10000000}
QUEUES=${QUEUES:-1}
SIZE=${SIZE:-16}
PREFETCH=${PREFETCH:-1000}
MULTIPLE_ACK=$(( PREFETCH >= 10 ? PREFETCH / 10 : 1 ))
DEEP=${DEEP:-0}
if [ "$DEEP" -gt 0 ] && [ $((2 * DEEP)) -ge "$MESSAGES" ]; then
  echo "DEEP must be under half of MESSAGES" >&2; exit 2
fi
PORT=${PORT:-5694}
BENCH_LOCK=${BENCH_LOCK:-/tmp/warren-bench.lock}
cd "$root"
if [ -z "${SKIP_BUILD:-}" ] && [ "${BROKER:-warren}" = warren ]; then
  CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release --bin warren --bin warren-perf >&2
fi
WARREN=${WARREN:-$root/target/release/warren}
PERF=$root/target/release/warren-perf
work=$(mktemp -d "${TMPDIR:-/tmp}/warren-recovery.XXXXXX")
data=${DATA_DIR:-$work/data}
wpid=""
RABBITMQ_SH=${RABBITMQ_SH:-$root/../shared/tools/rabbitmq.sh}
cleanup() {
  [ -n "$wpid" ] && kill -KILL "$wpid" 2>/dev/null || true
  if [ "${BROKER:-warren}" = rabbitmq ]; then
    "$RABBITMQ_SH" stop "$PORT" >/dev/null 2>&1 || true
    rm -rf "/tmp/rabbitmq-ref-$PORT"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

BROKER=${BROKER:-warren}
start() {
  local t0 t1
  t0=$(date +%s%N)
  case "$BROKER" in
    warren)
      "$WARREN" --bind 127.0.0.1 --port "$PORT" --data-dir "$data" --log-level info >"$work/broker.log" 2>&1 &
      ;;
    lavinmq)
      "${LAVINMQ:?set LAVINMQ to the lavinmq binary}" -D "$data" -b 127.0.0.1 -p "$PORT" \
        --http-port $((PORT + 10000)) --mqtt-port $((PORT + 1000)) --metrics-http-port $((PORT + 11000)) \
        --control-unix-path "$work/ctl.sock" >"$work/broker.log" 2>&1 &
      ;;
    rabbitmq)
      # Its own data directory (/tmp/rabbitmq-ref-PORT), kept across the restart; the script returns once
      # the node is up, and its pid file names the Erlang VM.
      "$RABBITMQ_SH" start "$PORT" >"$work/broker.log" 2>&1
      data=/tmp/rabbitmq-ref-$PORT/mnesia
      ;;
    *) echo "BROKER must be warren, lavinmq or rabbitmq" >&2; exit 2 ;;
  esac
  if [ "$BROKER" = rabbitmq ]; then wpid=$("$RABBITMQ_SH" pid "$PORT"); else wpid=$!; fi
  # Accepting connections, whatever the broker logs.
  until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    kill -0 "$wpid" 2>/dev/null || { cat "$work/broker.log" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s%N)
  start_ms=$(((t1 - t0) / 1000000))
}

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$wpid/status"; }
# The most RSS the process has had (the kernel's high-water mark).
hwm_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$wpid/status"; }

url="amqp://guest:guest@127.0.0.1:$PORT/%2f"
common=(--url "$url" -s "$SIZE" --persistent --durable --confirm 1000 --queue-prefix recovery -q --settle 3 -Q "$QUEUES")
exec 9>"$BENCH_LOCK"
flock 9
if [ "$BROKER" = rabbitmq ]; then
  "$RABBITMQ_SH" stop "$PORT" >/dev/null 2>&1 || true
  rm -rf "/tmp/rabbitmq-ref-$PORT"
fi

start
rss_empty=$(rss_mib)
if [ "$DEEP" -gt 0 ]; then
  # The same publishers into an empty queue, then (after the bulk) into the deep backlog.
  "$PERF" backlog "${common[@]}" -m "$DEEP" --phase fill >"$work/first.txt"
  "$PERF" backlog "${common[@]}" -m $((MESSAGES - 2 * DEEP)) --phase fill >"$work/fill.txt"
  "$PERF" backlog "${common[@]}" -m "$DEEP" --phase fill >"$work/last.txt"
else
  "$PERF" backlog "${common[@]}" -m "$MESSAGES" --phase fill >"$work/fill.txt"
fi
rss_full=$(rss_mib)
hwm_fill=$(hwm_mib)
disk=$(du -sm "$data" | cut -f1)
kill -KILL "$wpid"
wait "$wpid" 2>/dev/null || true
t_restart=$(date +%s%N)
start
# Accepting TCP is not having the backlog back: both brokers listen before their queues are recovered.
python3 - "$PORT" "$MESSAGES" "$QUEUES" <<'PY'
import sys, time, pika
port, want, queues = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
while True:
    try:
        c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        ch = c.channel()
        n = sum(ch.queue_declare(f"recovery-{i}", passive=True).method.message_count for i in range(queues))
        c.close()
        if n >= want:
            break
    except Exception:
        pass
    time.sleep(0.01)
PY
ready_ms=$((($(date +%s%N) - t_restart) / 1000000))
recovered=$(grep -o 'messages recovered.*' "$work/broker.log" | head -1 || true)
store=$(grep -o 'message store: recovered.*' "$work/broker.log" | head -1 || true)
sleep 3
rss_recovered=$(rss_mib)
# One consumer per queue.
"$PERF" backlog "${common[@]}" -C "$QUEUES" -m "$MESSAGES" --phase drain --prefetch "$PREFETCH" --multiple-ack "$MULTIPLE_ACK" >"$work/drain.txt"
rss_drained=$(rss_mib)
hwm_drain=$(hwm_mib)

cat "$work/fill.txt"
if [ "$DEEP" -gt 0 ]; then
  echo "publishing ${DEEP} into the empty queue(s): $(grep -oE '[0-9,]+ msg/s' "$work/first.txt" | head -1)"
  echo "publishing ${DEEP} into a backlog of $((MESSAGES - DEEP)): $(grep -oE '[0-9,]+ msg/s' "$work/last.txt" | head -1)"
fi
echo "data dir after fill: ${disk} MiB"
echo "broker RSS: empty ${rss_empty} MiB, ${MESSAGES} queued ${rss_full} MiB, after kill -9 + recovery ${rss_recovered} MiB, drained ${rss_drained} MiB"
echo "broker peak RSS: ${hwm_fill} MiB while filling, ${hwm_drain} MiB from restart to drained"
echo "broker: $BROKER"
echo "restart after kill -9: ${start_ms} ms to accepting connections, ${ready_ms} ms until queue.declare reports all ${MESSAGES}"
echo "  store log: ${store}"
echo "  queue log: ${recovered}"
grep -E "drain" "$work/drain.txt"
