#!/usr/bin/env bash
# Warren vs RabbitMQ 3.10 on this machine, measured with warren-perf; prints one markdown table.
#
#   bench/compare.sh                       # build, then 15 s per measured run
#   DURATION=5 ROUNDS=3 bench/compare.sh   # shorter runs, 3 alternating rounds (median shown)
#
# Environment (all optional):
#   DURATION     seconds measured per throughput/latency run (default 15), after WARMUP seconds (default 2)
#   ROUNDS       runs per broker and workload, alternating Warren, RabbitMQ, Warren, ... (default 1)
#   ONLY         space-separated workload ids to run (default all): autoack manual persistent fanout big
#                loopback latency connections queues start
#   CONNECTIONS  idle connections for the RSS-per-connection row (default 1000)
#   QUEUES       queues for the RSS-per-queue row (default 10000)
#   RABBIT_PORT  port of the private RabbitMQ node (default 5693); it is (re)started and stopped by this script
#   RABBITMQ_SH  the node script (default ../shared/tools/rabbitmq.sh beside the repo)
#   WARREN_ARGS  extra broker flags (default --ephemeral)
#   WARREN_BIN   the Warren binary to measure (default target/release/warren; bench/ab.sh A/Bs two of them)
#   BENCH_LOCK   flock file wrapped around every measurement (default /tmp/warren-bench.lock)
#   SKIP_BUILD=1 use the existing target/release binaries
#   QUIET=0      do not wait for running compilers (rustc) to finish before each run (on a shared 2-core
#                machine a build next to a benchmark halves the broker's CPU; the default waits up to 10 min)
#   RAW_DIR      keep every warren-perf JSON result there
#
# Every broker is started fresh before the RSS rows (allocator slack from earlier runs hides growth). Both
# brokers stay up during the throughput rows but only one is under load at a time. Tool and broker CPU are
# shown for each run so a reader can check the tool was never the bottleneck.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
rabbit_sh=${RABBITMQ_SH:-$root/../shared/tools/rabbitmq.sh}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-1}
ONLY=${ONLY:-"autoack manual persistent fanout big loopback latency connections queues start"}
CONNECTIONS=${CONNECTIONS:-1000}
QUEUES=${QUEUES:-10000}
RABBIT_PORT=${RABBIT_PORT:-5693}
WARREN_ARGS=${WARREN_ARGS:---ephemeral}
BENCH_LOCK=${BENCH_LOCK:-/tmp/warren-bench.lock}

cd "$root"
if [ -z "${SKIP_BUILD:-}" ]; then
  echo "building release binaries..." >&2
  CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release --bin warren --bin warren-perf >&2
fi
WARREN=${WARREN_BIN:-$root/target/release/warren}
PERF=$root/target/release/warren-perf
if [ ! -x "$WARREN" ] || [ ! -x "$PERF" ]; then echo "compare.sh: missing $WARREN or $PERF" >&2; exit 1; fi
[ -x "$rabbit_sh" ] || { echo "compare.sh: $rabbit_sh not found" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/warren-compare.XXXXXX")
results=$work/results.tsv    # id <tab> broker <tab> json-file
: >"$results"
wpid="" wport="" rpid="" rabbit_up=""

stop_warren() {
  if [ -n "$wpid" ] && kill -0 "$wpid" 2>/dev/null; then
    kill -TERM "$wpid" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
  fi
  wpid=""
  { exec 7<&-; } 2>/dev/null || true
}
stop_rabbit() {
  if [ -n "$rabbit_up" ]; then "$rabbit_sh" stop "$RABBIT_PORT" >/dev/null 2>&1 || true; fi
  rabbit_up=""
}
cleanup() {
  stop_warren
  stop_rabbit
  if [ -n "${RAW_DIR:-}" ]; then mkdir -p "$RAW_DIR"; cp "$work"/*.json "$RAW_DIR"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# start_warren: port 0, port read from its "LISTENING port=N" line; records start time (exec to accept).
start_warren() {
  stop_warren
  local t0 fifo=$work/warren.fifo line=""
  rm -f "$fifo"; mkfifo "$fifo"
  t0=$(now_ms)
  # shellcheck disable=SC2086
  "$WARREN" --port 0 --bind 127.0.0.1 $WARREN_ARGS --log-level warn >"$fifo" 2>>"$work/warren.err" &
  wpid=$!
  exec 7<"$fifo"   # held open until stop_warren, so a later stdout write cannot hit a closed pipe
  IFS= read -r -t 10 line <&7 || true
  wport=${line#LISTENING port=}
  case "$wport" in ''|*[!0-9]*) echo "compare.sh: warren did not print LISTENING (got '$line')" >&2; exit 1 ;; esac
  until (exec 3<>"/dev/tcp/127.0.0.1/$wport") 2>/dev/null; do :; done
  echo -e "start\twarren\t$(( $(now_ms) - t0 ))\t$(rss_kib "$wpid")" >>"$work/start.tsv"
}

# start_rabbit: via the shared script (it polls every 0.2 s, so its start time is rounded up by up to that).
start_rabbit() {
  stop_rabbit
  "$rabbit_sh" stop "$RABBIT_PORT" >/dev/null 2>&1 || true   # a node left over from an earlier run
  local t0; t0=$(now_ms)
  "$rabbit_sh" start "$RABBIT_PORT" >/dev/null
  local ms=$(( $(now_ms) - t0 ))
  rabbit_up=1
  rpid=$("$rabbit_sh" pid "$RABBIT_PORT")
  sleep 1   # let the node finish booting before its idle RSS is read
  echo -e "start\trabbitmq\t$ms\t$(rss_kib "$rpid")" >>"$work/start.tsv"
}

want() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# measure ID BROKER ARGS...: one warren-perf run (under the bench lock), JSON kept for the table.
n=0
measure() {
  local id=$1 broker=$2; shift 2
  local url pid out
  if [ "$broker" = warren ]; then url="amqp://guest:guest@127.0.0.1:$wport/%2f"; pid=$wpid
  else url="amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2f"; pid=$rpid; fi
  n=$((n + 1)); out=$work/$n-$id-$broker.json
  if [ "${QUIET:-1}" != 0 ]; then
    local waited=0
    while pgrep -x rustc >/dev/null && [ "$waited" -lt 300 ]; do sleep 2; waited=$((waited + 1)); done
  fi
  echo "  $id on $broker: warren-perf $*" >&2
  if ! flock "$BENCH_LOCK" "$PERF" --url "$url" --broker-pid "$pid" --json -q "$@" >"$out"; then
    echo "compare.sh: $id on $broker failed: $(cat "$out")" >&2
  fi
  echo -e "$id\t$broker\t$out" >>"$results"
  sleep 1   # let the broker settle (queue deletion, GC) before the next run
}

# alternate ID ARGS...: ROUNDS runs per broker, Warren first, then RabbitMQ, and again.
alternate() {
  local id=$1; shift
  want "$id" || return 0
  for _ in $(seq 1 "$ROUNDS"); do
    measure "$id" warren "$@"
    measure "$id" rabbitmq "$@"
  done
}

echo "Warren vs RabbitMQ: ${DURATION}s per run after ${WARMUP}s warm-up, $ROUNDS round(s)" >&2
run=(--duration "$DURATION" --warmup "$WARMUP")

# Idle-memory rows first, each on freshly started brokers.
start_warren; start_rabbit
alternate connections connections --count "$CONNECTIONS"
start_warren; start_rabbit
alternate queues queues --count "$QUEUES"
start_warren; start_rabbit
alternate autoack    throughput "${run[@]}" --size 16 --autoack
alternate manual     throughput "${run[@]}" --size 16 --prefetch 1000 --multiple-ack 100
alternate persistent throughput "${run[@]}" --size 1024 --persistent --durable --confirm 1000 --prefetch 1000 --multiple-ack 100
alternate fanout     fanout     "${run[@]}" --size 16 --queues 10 --autoack
alternate big        throughput "${run[@]}" --size 65536 --autoack
# The ceiling for the 64 KiB row: raw TCP on this machine, no broker (64 KiB and 1 MiB writes, best taken).
if want loopback; then
  for _ in $(seq 1 "$ROUNDS"); do
    for size in 65536 1048576; do
      n=$((n + 1)); out=$work/$n-loopback-$size.json
      echo "  loopback: warren-perf loopback -s $size" >&2
      flock "$BENCH_LOCK" "$PERF" --json -q loopback --size "$size" --duration "$DURATION" >"$out" || true
      echo -e "loopback\traw\t$out" >>"$results"
    done
  done
fi
alternate latency    latency    "${run[@]}" --size 16 --rate 10000
stop_warren; stop_rabbit

python3 - "$results" "$work/start.tsv" "$ONLY" <<'EOF'
import json, statistics, sys

results, start_file, only = sys.argv[1], sys.argv[2], sys.argv[3].split()
runs = {}
for line in open(results):
    ident, broker, path = line.rstrip("\n").split("\t")
    try:
        data = json.load(open(path))
    except (OSError, ValueError):
        data = {"error": "no output"}
    runs.setdefault((ident, broker), []).append(data)

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def get(ident, broker, key):
    out = []
    for d in runs.get((ident, broker), []):
        v = d
        for k in key.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        out.append(v)
    return med(out)

def rate(v):
    return "n/a" if v is None else f"{v:,.0f}"

# (id, title, metric key, unit, formatter, higher is better)
rows = [
    ("autoack", "16 B, 1 pub → 1 con, transient, autoack", "consumed_per_s", "msg/s", rate, True),
    ("manual", "16 B, 1 → 1, manual ack, prefetch 1000, multi-ack 100", "consumed_per_s", "msg/s", rate, True),
    ("persistent", "1 KiB persistent, durable queue, confirms (window 1000), manual ack", "consumed_per_s", "msg/s", rate, True),
    ("fanout", "fanout 1 → 10 queues, 16 B, autoack (deliveries)", "consumed_per_s", "msg/s", rate, True),
    ("big", "64 KiB transient, 1 → 1, autoack", "consumed_per_s", "msg/s", rate, True),
    ("latency", "latency p99 at 10k msg/s, 16 B", "latency.p99_us", "µs", lambda v: "n/a" if v is None else f"{v:,.0f}", False),
    ("connections", "broker RSS per idle connection", "broker_rss_per_connection_kib", "KiB", lambda v: "n/a" if v is None else f"{v:.1f}", False),
    ("queues", "broker RSS per queue", "broker_rss_per_queue_kib", "KiB", lambda v: "n/a" if v is None else f"{v:.2f}", False),
]

def ratio(w, r, higher):
    if w is None or r is None or w <= 0 or r <= 0:
        return "n/a"
    return f"{w / r:.2f}×" if higher else f"{r / w:.2f}× lower"

def cpu(ident, broker):
    t, b = get(ident, broker, "tool_cpu_pct"), get(ident, broker, "broker_cpu_pct")
    if t is None:
        return ""
    return f"{b:.0f}% / {t:.0f}%" if b is not None else f"n/a / {t:.0f}%"

print()
print("| workload | unit | Warren | RabbitMQ | Warren vs RabbitMQ | CPU broker/tool, Warren | CPU broker/tool, RabbitMQ |")
print("|---|---|---:|---:|---:|---:|---:|")
for ident, title, key, unit, fmt, higher in rows:
    if ident not in only:
        continue
    w, r = get(ident, "warren", key), get(ident, "rabbitmq", key)
    print(f"| {title} | {unit} | {fmt(w)} | {fmt(r)} | {ratio(w, r, higher)} | {cpu(ident, 'warren')} | {cpu(ident, 'rabbitmq')} |")
if "loopback" in only and "big" in only:
    # Best direct and relay rate over all write sizes and rounds: the most a broker could be held to.
    raw = runs.get(("loopback", "raw"), [])
    best = lambda k: max((d.get(k) or 0 for d in raw), default=0) or None
    direct, relay = best("direct_bytes_per_s"), best("relay_bytes_per_s")
    w = get("big", "warren", "consumed_per_s")
    r = get("big", "rabbitmq", "consumed_per_s")
    gb = lambda v: "n/a" if v is None else f"{v / 1e9:.2f}"
    wb = None if w is None else w * 65536
    rb = None if r is None else r * 65536
    print(f"| 64 KiB bytes/s | GB/s | {gb(wb)} | {gb(rb)} | {ratio(wb, rb, True)} | | |")
    print(f"| raw loopback TCP, no broker: writer → reader (best of 64 KiB / 1 MiB writes) | GB/s | {gb(direct)} | | Warren's 64 KiB row at {ratio(wb, direct, True)} of it | | |")
    print(f"| raw loopback TCP, no broker: writer → relay → reader (a broker that does nothing) | GB/s | {gb(relay)} | | Warren at {ratio(wb, relay, True)} of it; 3× RabbitMQ would need {gb(None if rb is None else 3 * rb)} | | |")
if "start" in only:
    starts = {}
    for line in open(start_file):
        _, broker, ms, rss = line.split("\t")
        starts.setdefault(broker, []).append((int(ms), int(rss)))
    w = med([s[0] for s in starts.get("warren", [])])
    r = med([s[0] for s in starts.get("rabbitmq", [])])
    print(f"| start, exec to accepting connections (median of {len(starts.get('warren', []))}) | ms | {w:.0f} | {r:.0f} | {ratio(w, r, False)} | | |")
    w = med([s[1] for s in starts.get("warren", [])])
    r = med([s[1] for s in starts.get("rabbitmq", [])])
    print(f"| idle RSS after start | MiB | {w / 1024:.1f} | {r / 1024:.1f} | {ratio(w, r, False)} | | |")
errors = [(k, d["error"]) for k, ds in runs.items() for d in ds if "error" in d]
for (ident, broker), e in errors:
    print(f"\n{ident} on {broker} failed: {e}")
print("\nCPU is percent of one core over the measured window (2 cores = 200%). RabbitMQ start time includes the "
      "shared script's 0.2 s polling. Throughput rows: consumed messages per second (the publishers run unthrottled).")
EOF
