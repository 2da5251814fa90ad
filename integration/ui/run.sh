#!/usr/bin/env bash
# Browser tests of the web management UI: starts BROKER_BIN on free ports (ephemeral store), runs
# pytest with Playwright driving Debian's chromium, stops the broker.
#   integration/ui/run.sh target/release/warren [pytest args...]
# Env: UI_SCREENSHOTS (default integration/ui/screenshots), CHROMIUM (default /usr/bin/chromium),
#      WARREN_UI_DIR (optional: serve the UI files from disk instead of the embedded copy).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${1:?usage: run.sh BROKER_BIN [pytest args...]}
shift
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
export UI_SCREENSHOTS=${UI_SCREENSHOTS:-$here/screenshots}
mkdir -p "$UI_SCREENSHOTS"
work=$(mktemp -d "${TMPDIR:-/tmp}/warren-ui.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$bin" --port 0 --ephemeral >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 100); do
  grep -q '^LISTENING prometheus port=' "$work/out" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
WARREN_AMQP_PORT=$(sed -nE 's/^LISTENING port=([0-9]+).*$/\1/p' "$work/out" | head -n1)
WARREN_MGMT_PORT=$(sed -nE 's/^LISTENING management port=([0-9]+)$/\1/p' "$work/out" | head -n1)
if [ -z "$WARREN_AMQP_PORT" ] || [ -z "$WARREN_MGMT_PORT" ]; then
  echo "broker did not start" >&2; cat "$work/out" "$work/err" >&2; exit 1
fi
export WARREN_AMQP_PORT WARREN_MGMT_PORT
echo "broker pid $pid: amqp :$WARREN_AMQP_PORT, management http://127.0.0.1:$WARREN_MGMT_PORT/"
cd "$here"
rc=0
python3 -m pytest -p no:cacheprovider -q "$@" test_ui.py || rc=$?
kill -0 "$pid" 2>/dev/null || { echo "broker died during the tests" >&2; tail -20 "$work/err" >&2; rc=1; }
exit "$rc"
