#!/usr/bin/env bash
# Smoke test of RabbitMQ's own rabbitmqadmin (v1, the Python script shipped with the management plugin)
# against a running broker's management API: declare, publish, get, list, export/import, delete, and
# its error paths. Passes against Warren and against RabbitMQ 3.10.
#
# usage: rabbitmqadmin_smoke.sh MGMT_PORT [HOST]
# env:   RABBITMQADMIN  the script (default: rabbitmqadmin on PATH)
set -uo pipefail

port=${1:?usage: rabbitmqadmin_smoke.sh MGMT_PORT [HOST]}
host=${2:-127.0.0.1}
admin=${RABBITMQADMIN:-$(command -v rabbitmqadmin)}
[ -n "$admin" ] || { echo "rabbitmqadmin_smoke: no rabbitmqadmin" >&2; exit 2; }
tag="ra-smoke-$$"; V="$tag-v"; X="$tag-x"; Q="$tag-q"; U="$tag-u"
out=$(mktemp -d "${TMPDIR:-/tmp}/ra-smoke.XXXXXX")
passed=0; failed=0
cleanup() { a delete vhost name="$V" >/dev/null 2>&1; a delete user name="$U" >/dev/null 2>&1; rm -rf "$out"; }
trap cleanup EXIT

a() { python3 "$admin" -H "$host" -P "$port" -u guest -p guest "$@"; }
# t NAME WANT_RC PATTERN... -- ARGS...: run rabbitmqadmin ARGS, check exit code and that every PATTERN
# (grep -F) is in its combined output.
t() {
  local name=$1 want=$2 rc=0; shift 2
  local pats=()
  while [ "$1" != "--" ]; do pats+=("$1"); shift; done
  shift
  a "$@" >"$out/o" 2>&1 </dev/null || rc=$?
  local p
  if [ "$rc" != "$want" ]; then
    failed=$((failed + 1)); echo "FAIL $name (exit $rc, want $want)"; sed 's/^/  /' "$out/o" | head -20; return
  fi
  for p in "${pats[@]}"; do
    if ! grep -qF -- "$p" "$out/o"; then
      failed=$((failed + 1)); echo "FAIL $name (output lacks: $p)"; sed 's/^/  /' "$out/o" | head -20; return
    fi
  done
  passed=$((passed + 1)); echo "ok   $name"
}

t overview 0 rabbitmq_version cluster_name -- show overview
t nodes 0 "name" "disc" -- list nodes name type
t declare-vhost 0 "vhost declared" -- declare vhost name="$V"
t declare-permission 0 "permission declared" -- declare permission vhost="$V" user=guest configure='.*' write='.*' read='.*'
t declare-exchange 0 "exchange declared" -- -V "$V" declare exchange name="$X" type=topic durable=true
t declare-queue 0 "queue declared" -- -V "$V" declare queue name="$Q" durable=true arguments='{"x-max-length":10}'
t declare-binding 0 "binding declared" -- -V "$V" declare binding source="$X" destination="$Q" routing_key='a.#'
t publish-routed 0 "Message published" -- -V "$V" publish exchange="$X" routing_key=a.b payload=hello
t publish-unrouted 0 "Message published but NOT routed" -- -V "$V" publish exchange="$X" routing_key=zzz payload=lost
t list-queues 0 "$Q" "True" -- -V "$V" list queues name durable
t list-bindings 0 "a.#" "$X" -- -V "$V" list bindings source destination routing_key
t get 0 "| hello " "| 0 " -- -V "$V" get queue="$Q" ackmode=ack_requeue_false
t get-empty 0 -- -V "$V" get queue="$Q" ackmode=ack_requeue_false
if grep -qF hello "$out/o"; then failed=$((failed + 1)); echo "FAIL get-empty (message still there)"; fi
t raw-json 0 "{\"name\":\"$X\",\"type\":\"topic\"}" -- -f raw_json -V "$V" list exchanges name type
t declare-user 0 "user declared" -- declare user name="$U" password=pw tags=monitoring
t list-users 0 "$U" "monitoring" -- list users name tags
t declare-policy 0 "policy declared" -- -V "$V" declare policy name=cap pattern="^$tag" apply-to=queues definition='{"max-length":5}'
t list-policies 0 "cap" "max-length" -- -V "$V" list policies name definition
t export 0 "Exported definitions" -- export "$out/defs.json"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert any(q['name']==sys.argv[2] for q in d['queues']), 'queue not exported'" "$out/defs.json" "$Q" \
  && { passed=$((passed + 1)); echo "ok   export-content"; } || { failed=$((failed + 1)); echo "FAIL export-content"; }
t delete-queue 0 "queue deleted" -- -V "$V" delete queue name="$Q"
t import 0 "Uploaded definitions" -- import "$out/defs.json"
t imported-queue 0 "$Q" -- -V "$V" list queues name
t purge 0 "queue purged" -- -V "$V" purge queue name="$Q"
t delete-binding 0 "binding deleted" -- -V "$V" delete binding source="$X" destination="$Q" destination_type=queue properties_key='a.%23'
t delete-exchange 0 "exchange deleted" -- -V "$V" delete exchange name="$X"
t bad-password 1 "*** Access refused" -- -p wrong show overview
t missing-vhost 1 "*** Not found: /api/queues/$tag-nope/x" -- -V "$tag-nope" declare queue name=x
t delete-user 0 "user deleted" -- delete user name="$U"
t delete-vhost 0 "vhost deleted" -- delete vhost name="$V"

echo "rabbitmqadmin_smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
