#!/usr/bin/env bash
# Smoke test of warrenctl against a running broker's management HTTP API: every verb once, outputs
# checked with grep/diff. Works against Warren and against RabbitMQ 3.10 with the management plugin.
#
# usage: warrenctl_smoke.sh MGMT_URL [AMQP_URL]
#   e.g. warrenctl_smoke.sh http://127.0.0.1:15672 amqp://guest:guest@127.0.0.1:5672/
# env:   WARRENCTL   the binary (default: target/release/warrenctl of this repo, built if missing)
#        WARREN_USER / WARREN_PASS   credentials (default guest/guest)
#
# Connection, channel and consumer listings and close_connection need an AMQP client holding a
# connection: that part runs when python3 has pika (AMQP_URL defaults to the management host, port
# 5672), and is reported as skipped otherwise. Objects are named warrenctl-smoke-<pid>-* and removed
# at the end. Prints "warrenctl_smoke: N passed, M failed" last; exits non-zero on any failure.
set -uo pipefail

mgmt=${1:?usage: warrenctl_smoke.sh MGMT_URL [AMQP_URL]}
mgmt=${mgmt%/}
host=$(printf '%s' "$mgmt" | sed -E 's#^[a-z]+://([^@/]*@)?##; s#[:/].*$##')
amqp=${2:-amqp://${WARREN_USER:-guest}:${WARREN_PASS:-guest}@${host}:5672/}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ctl=${WARRENCTL:-$root/target/release/warrenctl}
if [ ! -x "$ctl" ]; then
  (cd "$root" && cargo build --release --bin warrenctl -q) || { echo "warrenctl_smoke: cannot build warrenctl" >&2; exit 2; }
fi
user=${WARREN_USER:-guest}; pass=${WARREN_PASS:-guest}

tag="warrenctl-smoke-$$"
V="$tag-vh"; V2="$tag-imported"; U="$tag-user"; Q="$tag-q1"; QC="$tag-q2"; X="$tag-x"
out=$(mktemp -d "${TMPDIR:-/tmp}/warrenctl-smoke.XXXXXX")
client_pid=""
passed=0; failed=0; skipped=0

cleanup() {
  if [ -n "$client_pid" ] && kill -0 "$client_pid" 2>/dev/null; then kill "$client_pid" 2>/dev/null; wait "$client_pid" 2>/dev/null; fi
  "$ctl" --url "$mgmt" -q delete_vhost "$V" >/dev/null 2>&1
  "$ctl" --url "$mgmt" -q delete_vhost "$V2" >/dev/null 2>&1
  "$ctl" --url "$mgmt" -q delete_user "$U" >/dev/null 2>&1
  "$ctl" --url "$mgmt" -q clear_operator_policy "$tag-op" >/dev/null 2>&1
  rm -rf "$out"
}
trap cleanup EXIT

# w ARGS...: run warrenctl; stdout in $out/o, stderr in $out/e, exit code in $rc.
w() { "$ctl" --url "$mgmt" "$@" >"$out/o" 2>"$out/e" </dev/null; rc=$?; }
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() {
  failed=$((failed + 1)); echo "FAIL $1"
  echo "  rc=$rc"; sed 's/^/  stdout: /' "$out/o" | head -20; sed 's/^/  stderr: /' "$out/e" | head -10
}
skip() { skipped=$((skipped + 1)); echo "skip $1"; }
# check NAME EXPECTED_RC [grep -F pattern on stdout]...
check() {
  local name=$1 want=$2; shift 2
  if [ "$rc" != "$want" ]; then bad "$name (exit $rc, want $want)"; return; fi
  local p
  for p in "$@"; do
    if ! grep -qF -- "$p" "$out/o"; then bad "$name (stdout lacks: $p)"; return; fi
  done
  ok "$name"
}
# check_err NAME EXPECTED_RC PATTERN: exit code and a fixed string on stderr.
check_err() {
  if [ "$rc" = "$2" ] && grep -qF -- "$3" "$out/e"; then ok "$1"; else bad "$1 (want exit $2 and stderr: $3)"; fi
}
# same NAME EXPECTED_TEXT: stdout must be exactly this (printf-style escapes interpreted).
same() {
  if [ "$rc" = 0 ] && diff <(printf "$2") "$out/o" >"$out/d"; then ok "$1"; else bad "$1"; sed 's/^/  diff: /' "$out/d" | head -10; fi
}
# eventually SECONDS ARGS... -- PATTERN: retry a warrenctl call until stdout has PATTERN (stats lag ~5 s).
eventually() {
  local secs=$1; shift; local args=() pat
  while [ "$1" != "--" ]; do args+=("$1"); shift; done; pat=$2
  local end=$((SECONDS + secs))
  while :; do
    w "${args[@]}"
    if [ "$rc" = 0 ] && grep -qF -- "$pat" "$out/o"; then return 0; fi
    [ $SECONDS -ge $end ] && return 1
    sleep 0.5
  done
}
# api METHOD PATH [JSON]: a raw management API call (topology the CLI has no verb for).
api() {
  curl -sS -o /dev/null -w '%{http_code}' -u "$user:$pass" -X "$1" -H 'content-type: application/json' \
    ${3:+--data "$3"} "$mgmt/api/$2"
}
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

echo "warrenctl_smoke: $ctl against $mgmt"

# --- node ---------------------------------------------------------------------------------------
w -t 30 await_startup; same await_startup ""
w ping; check ping 0 "Ping succeeded"
w -q ping; same "ping -q" 'Ping succeeded\n'
w check_running; check check_running 0 "is fully booted and running"
w check_local_alarms; check check_local_alarms 0 "reported no local alarms"
w check_port_connectivity; check check_port_connectivity 0 "Successfully connected to ports"
w check_virtual_hosts; check check_virtual_hosts 0 "reported all vhosts as running"
w --formatter json check_virtual_hosts; same "check_virtual_hosts json" '{"result":"ok"}\n'
w status; check status 0 "Status of node" "Runtime" "Listeners" "Virtual host count:"
w --formatter json status
if [ "$rc" = 0 ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "listeners" in d' "$out/o" 2>/dev/null; then ok "status json"; else bad "status json"; fi

# --- usage errors and an unreachable node ------------------------------------------------------
w list_vhosts nope; check_err "unknown column" 64 "Info key(s) nope are not supported"
w add_vhost; check_err "missing argument" 64 "not enough arguments."
w ping extra; check_err "extra argument" 64 "too many arguments."
w frobnicate; check_err "unknown command" 64 "Command 'frobnicate' not found."
"$ctl" --url http://127.0.0.1:1 list_queues >"$out/o" 2>"$out/e"; rc=$?
check_err "unreachable node" 69 "unable to perform an operation on node"
"$ctl" --url "$mgmt" --password "wrong-$tag" list_users >"$out/o" 2>"$out/e"; rc=$?
check_err "rejected credentials" 69 "refused the credentials"

# --- vhosts -------------------------------------------------------------------------------------
w add_vhost "$V" --description "smoke vhost" --tags "a,b"; check add_vhost 0 "Adding vhost \"$V\" ..."
w add_vhost "$V"; check "add_vhost existing" 0 "Adding vhost \"$V\" ..."
w list_vhosts name description tags; check list_vhosts 0 "Listing vhosts ..." "$(printf 'name\tdescription\ttags')" "$(printf '%s\tsmoke vhost\t[a, b]' "$V")"
w list_vhosts --formatter json name tags
if [ "$rc" = 0 ] && python3 -c 'import json,sys; rows=json.load(open(sys.argv[1])); assert {"name": sys.argv[2], "tags": ["a","b"]} in rows' "$out/o" "$V" 2>/dev/null; then ok "list_vhosts json"; else bad "list_vhosts json"; fi

# --- users and permissions ----------------------------------------------------------------------
w add_user "$U" "pw-1"; check add_user 0 "Adding user \"$U\" ..." "Don't forget to grant the user permissions"
w add_user "$U" "pw-1"; check_err "add_user existing" 70 "User \"$U\" already exists"
w set_user_tags "$U" management policymaker; check set_user_tags 0 "Setting tags for user \"$U\" to [management, policymaker] ..."
w list_users; check list_users 0 "Listing users ..." "$(printf 'user\ttags')" "$(printf '%s\t[management, policymaker]' "$U")"
w change_password "$U" "pw-2"; check change_password 0 "Changing password for user \"$U\" ..."
code=$(curl -sS -o /dev/null -w '%{http_code}' -u "$U:pw-2" "$mgmt/api/whoami")
if [ "$code" = 200 ]; then ok "new password logs in"; else rc=$code; bad "new password logs in (HTTP $code)"; fi
w change_password "$tag-nobody" x; check_err "change_password unknown user" 67 "does not exist"
w set_permissions -p "$V" "$U" '^c' '^w' '^r'; check set_permissions 0 "Setting permissions for user \"$U\" in vhost \"$V\" ..."
w list_permissions -p "$V"; check list_permissions 0 "Listing permissions for vhost \"$V\" ..." "$(printf '%s\t^c\t^w\t^r' "$U")"
w list_permissions -p "$tag-novhost"; check_err "list_permissions missing vhost" 65 "Virtual host '$tag-novhost' does not exist"
w clear_permissions -p "$V" "$U"; check clear_permissions 0 "Clearing permissions for user \"$U\" in vhost \"$V\" ..."
w list_permissions -q -p "$V"
if [ "$rc" = 0 ] && ! grep -qF -- "$U" "$out/o"; then ok "permissions cleared"; else bad "permissions cleared"; fi

# --- policies -----------------------------------------------------------------------------------
w set_policy -p "$V" "$tag-pol" '^nothing-matches$' '{"max-length":10}' --priority 2 --apply-to queues
check set_policy 0 "Setting policy \"$tag-pol\" for pattern \"^nothing-matches\$\" to \"{\"max-length\":10}\" with priority \"2\" for vhost \"$V\" ..."
w list_policies -p "$V"; check list_policies 0 "$(printf 'vhost\tname\tpattern\tapply-to\tdefinition\tpriority')" "$(printf '%s\t%s\t^nothing-matches$\tqueues\t{"max-length":10}\t2' "$V" "$tag-pol")"
w list_policies -p "$V" --formatter json
if [ "$rc" = 0 ] && python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))[0]; assert json.loads(r["definition"]) == {"max-length":10} and r["priority"] == 2' "$out/o" 2>/dev/null; then ok "list_policies json"; else bad "list_policies json"; fi
w set_policy -p "$V" "$tag-bad" '^x' 'not json'; check_err "set_policy bad JSON" 69 "JSON decoding error"
w clear_policy -p "$V" "$tag-pol"; check clear_policy 0 "Clearing policy \"$tag-pol\" on vhost \"$V\" ..."
w clear_policy -p "$V" "$tag-pol"; check_err "clear_policy again" 69 "Parameter does not exist"
w set_operator_policy "$tag-op" '^nothing-matches$' '{"max-length":5}' --apply-to queues
check set_operator_policy 0 "Setting operator policy override \"$tag-op\""
w clear_operator_policy "$tag-op"; check clear_operator_policy 0 "Clearing operator policy \"$tag-op\" on vhost \"/\" ..."

# --- queues, exchanges, bindings ----------------------------------------------------------------
ev=$(enc "$V")
api PUT "queues/$ev/$(enc "$Q")" '{"durable":true,"arguments":{"x-max-length":100}}' >/dev/null
api PUT "queues/$ev/$(enc "$QC")" '{"durable":false}' >/dev/null
api PUT "exchanges/$ev/$(enc "$X")" '{"type":"topic","durable":true}' >/dev/null
api POST "bindings/$ev/e/$(enc "$X")/q/$(enc "$Q")" '{"routing_key":"a.#","arguments":{}}' >/dev/null
for i in 1 2 3; do
  api POST "exchanges/$ev/$(enc "$X")/publish" '{"properties":{},"routing_key":"a.b","payload":"m","payload_encoding":"string"}' >/dev/null
done
if eventually 20 list_queues -p "$V" -q name messages -- "$(printf '%s\t3' "$Q")"; then ok "list_queues messages"; else bad "list_queues messages"; fi
w list_queues -p "$V"; check "list_queues banner" 0 "Timeout: 60.0 seconds ..." "Listing queues for vhost $V ..." "$(printf 'name\tmessages')"
w list_queues -p "$V" --no-table-headers -q name durable arguments
same "list_queues columns" "$Q\ttrue\t[{\"x-max-length\",100}]\n$QC\tfalse\t[]\n"
w list_queues -p "$V" -s name,messages
if [ "$rc" = 0 ] && ! grep -q "Listing\|^name" "$out/o" && grep -qF "$Q" "$out/o"; then ok "list_queues -s"; else bad "list_queues -s"; fi
w list_queues -p "$V" --formatter json name arguments
if [ "$rc" = 0 ] && python3 -c 'import json,sys; rows=json.load(open(sys.argv[1])); assert {"name": sys.argv[2], "arguments": [["x-max-length","signedint",100]]} in rows' "$out/o" "$Q" 2>/dev/null; then ok "list_queues json"; else bad "list_queues json"; fi
w list_queues -p "$tag-novhost"; same "list_queues missing vhost" "Timeout: 60.0 seconds ...\nListing queues for vhost $tag-novhost ...\n"
w list_exchanges -p "$V"; check list_exchanges 0 "Listing exchanges for vhost $V ..." "$(printf 'name\ttype')" "$(printf '%s\ttopic' "$X")" "$(printf 'amq.topic\ttopic')"
w list_exchanges -p "$V" -q name durable auto_delete internal arguments; check "list_exchanges columns" 0 "$(printf '%s\ttrue\tfalse\tfalse\t[]' "$X")"
w list_bindings -p "$V"; check list_bindings 0 "Listing bindings for vhost $V..." \
  "$(printf 'source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments')" \
  "$(printf '%s\texchange\t%s\tqueue\ta.#\t[]' "$X" "$Q")" "$(printf '\texchange\t%s\tqueue\t%s\t[]' "$Q" "$Q")"

# --- connections, channels, consumers (needs pika) ----------------------------------------------
if python3 -c 'import pika' 2>/dev/null; then
  python3 - "$amqp" "$V" "$QC" "$out/client.log" <<'PY' &
import sys, urllib.parse, pika
url, vhost, queue, log = sys.argv[1:5]
params = pika.URLParameters(url)
params.virtual_host = vhost
params.client_properties = {"connection_name": "warrenctl-smoke"}
conn = pika.BlockingConnection(params)
ch = conn.channel()
ch.basic_qos(prefetch_count=7)
ch.basic_consume(queue, lambda *a: None, consumer_tag="smoke-ctag", arguments={"x-priority": 3})
with open(log, "w") as f:
    f.write("connected\n")
try:
    conn.process_data_events(time_limit=60)
    with open(log, "a") as f:
        f.write("still open\n")
except Exception as e:
    with open(log, "a") as f:
        f.write("closed: %r\n" % (e,))
PY
  client_pid=$!
  if eventually 20 list_consumers -p "$V" -q -- "smoke-ctag"; then
    check list_consumers 0 "$(printf '%s\t' "$QC")" "$(printf 'smoke-ctag\ttrue\t7\ttrue\t[{"x-priority",3}]')"
  else bad "list_consumers"; fi
  w list_consumers -p "$V"; check "list_consumers banner" 0 "Listing consumers in vhost $V ..." \
    "$(printf 'queue_name\tchannel_pid\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments')"
  if eventually 20 list_connections -q name vhost user -- "$(printf '\t%s\t' "$V")"; then ok "list_connections"; else bad "list_connections"; fi
  conn=$(awk -F'\t' -v v="$V" '$2 == v { print $1; exit }' "$out/o")
  w list_connections; check "list_connections defaults" 0 "Listing connections ..." "$(printf 'user\tpeer_host\tpeer_port\tstate')"
  w list_connections --formatter json name protocol
  if [ "$rc" = 0 ] && python3 -c 'import json,sys; rows=json.load(open(sys.argv[1])); assert {"name": sys.argv[2], "protocol": [0,9,1]} in rows' "$out/o" "$conn" 2>/dev/null; then ok "list_connections json"; else bad "list_connections json"; fi
  if eventually 20 list_channels -q name vhost prefetch_count consumer_count -- "$(printf '\t%s\t7\t1' "$V")"; then ok "list_channels"; else bad "list_channels"; fi
  w list_channels; check "list_channels defaults" 0 "Listing channels ..." "$(printf 'pid\tuser\tconsumer_count\tmessages_unacknowledged')" "$conn ("
  w close_connection "$conn" "warrenctl smoke"; check close_connection 0 "Closing connection $conn, reason: warrenctl smoke..."
  for _ in $(seq 1 40); do grep -q "closed" "$out/client.log" 2>/dev/null && break; sleep 0.25; done
  if grep -q "CONNECTION_FORCED - warrenctl smoke" "$out/client.log" 2>/dev/null; then ok "client saw the close reason"
  else rc=0; bad "client saw the close reason ($(cat "$out/client.log" 2>/dev/null))"; fi
  wait "$client_pid" 2>/dev/null; client_pid=""
  w close_connection "$tag-no-such-connection" x; check_err "close_connection unknown" 69 "not found"
else
  skip "list_connections / list_channels / list_consumers / close_connection (python3 has no pika)"
fi

# --- purge and delete ---------------------------------------------------------------------------
w purge_queue -p "$V" "$Q"; check purge_queue 0 "Purging queue '$Q' in vhost '$V' ..."
if eventually 20 list_queues -p "$V" -q name messages -- "$(printf '%s\t0' "$Q")"; then ok "purged queue is empty"; else bad "purged queue is empty"; fi
w purge_queue -p "$V" "$tag-nope"; check_err "purge_queue unknown" 69 "not_found"
w delete_queue -p "$V" "$Q" --if-unused; check delete_queue 0 "Deleting queue '$Q' on vhost '$V' if queue is unused ..." "Queue was successfully deleted with 0 ready messages"
w delete_queue -p "$V" "$Q"; check_err "delete_queue again" 64 "Queue not found"

# --- definitions --------------------------------------------------------------------------------
w export_definitions "$out/defs.json"; check export_definitions 0 "Exporting definitions in JSON to a file at \"$out/defs.json\" ..."
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert any(v["name"] == sys.argv[2] for v in d["vhosts"]); assert list(d) == sorted(d)' "$out/defs.json" "$V" 2>/dev/null; then ok "exported definitions"; else bad "exported definitions"; fi
w export_definitions -
if [ "$rc" = 0 ] && python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$out/o" 2>/dev/null; then ok "export_definitions -"; else bad "export_definitions -"; fi
w export_definitions "$out/no/such/dir/defs.json"; check_err "export_definitions bad dir" 65 "does not exist"
printf '{"vhosts":[{"name":"%s"}],"queues":[{"name":"iq","vhost":"%s","durable":true,"auto_delete":false,"arguments":{}}]}' "$V2" "$V2" >"$out/imp.json"
w import_definitions "$out/imp.json"; check import_definitions 0 "Importing definitions in JSON from a file at \"$out/imp.json\" ..." "Successfully started definition import."
w list_vhosts -q; check "imported vhost listed" 0 "$V2"
"$ctl" --url "$mgmt" import_definitions <"$out/imp.json" >"$out/o" 2>"$out/e"; rc=$?
check "import_definitions stdin" 0 "Importing definitions in JSON from standard input ..."
printf 'garbage' >"$out/bad.json"
w import_definitions "$out/bad.json"; check_err "import_definitions bad JSON" 65 "Failed to deserialise input (format: JSON)"

# --- teardown verbs -----------------------------------------------------------------------------
w delete_user "$U"; check delete_user 0 "Deleting user \"$U\" ..."
w delete_user "$U"; check_err "delete_user again" 67 "User \"$U\" does not exist"
w delete_vhost "$V2"; check "delete_vhost imported" 0 "Deleting vhost \"$V2\" ..."
w delete_vhost "$V"; check delete_vhost 0 "Deleting vhost \"$V\" ..."
w delete_vhost "$V"; check_err "delete_vhost again" 65 "Virtual host '$V' does not exist"

if [ "$skipped" -gt 0 ]; then
  echo "warrenctl_smoke: $passed passed, $failed failed, $skipped skipped"
else
  echo "warrenctl_smoke: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
