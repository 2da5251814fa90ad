#!/usr/bin/env bash
# Run the test-helper packages' own tests against a built broker:
#   node/warren-testing (node --test, amqplib), go/warrentest (go test, amqp091-go), python/pytest-warren (pytest, pika).
# Installs what is missing first: npm ci; golang-go and golang-github-rabbitmq-amqp091-go-dev from Debian (the Go
# tests build offline in GOPATH mode against /usr/share/gocode — no module proxy); pika and pytest from PyPI, and
# pytest-warren itself from this checkout (so the plugin under test is this one, not a stale install).
#
# usage: integration/clients/test_helpers.sh BROKER_BIN
#   env SUITE_TIMEOUT=600 (seconds, per suite); ONLY="node go pytest" (a subset)
# Exits non-zero if any suite failed or could not run; the last line is `test-helpers: N passed, M failed`.
set -uo pipefail

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
  echo "usage: $0 BROKER_BIN   (BROKER_BIN: the warren executable)" >&2
  exit 2
fi
WARREN_BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export WARREN_BIN
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SUITE_TIMEOUT="${SUITE_TIMEOUT:-600}"
ONLY="${ONLY:-node go pytest}"
AMQP091_SRC=/usr/share/gocode/src/github.com/rabbitmq/amqp091-go
export DEBIAN_FRONTEND=noninteractive PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

work=$(mktemp -d "${TMPDIR:-/tmp}/warren-test-helpers.XXXXXX")
trap 'rm -rf "$work"' EXIT

passed=0; failed=0; failed_names=""
result() { # result NAME RC
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1)); echo "::: test-helpers: PASS $1"
  else
    failed=$((failed + 1)); failed_names="$failed_names $1"; echo "::: test-helpers: FAIL $1 (exit $2)"
  fi
}
wanted() { case " $ONLY " in *" $1 "*) return 0;; *) return 1;; esac; }
# quiet LOG CMD...: CMD's output to LOG, shown (its tail) only if it fails.
quiet() {
  local log=$1 rc=0; shift
  "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || tail -30 "$log" >&2
  return "$rc"
}
apt_updated=""
apt_install() {
  # Try the package lists as they are; refresh them once if that fails.
  quiet "$work/apt.log" apt-get install -y -q --no-install-recommends "$@" && return 0
  [ -n "$apt_updated" ] && return 1
  apt_updated=1
  quiet "$work/apt-update.log" apt-get update -q || return 1
  quiet "$work/apt.log" apt-get install -y -q --no-install-recommends "$@"
}
pip_install() {
  quiet "$work/pip.log" python3 -m pip install -q "$@" \
    || quiet "$work/pip.log" python3 -m pip install -q --break-system-packages "$@"
}

echo "::: test-helpers: broker $WARREN_BIN"

# --- Node.js: warren-testing with amqplib ---
node_suite() {
  local dir="$root/node/warren-testing"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs npm"; apt_install nodejs npm || return 1
  fi
  local major; major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || echo "warning: node $(node --version); warren-testing targets Node >= 20" >&2
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "npm ci in node/warren-testing"
    (cd "$dir" && quiet "$work/npm.log" npm ci --no-audit --no-fund) || return 1
  fi
  (cd "$dir" && timeout -k 5 "$SUITE_TIMEOUT" npm test --silent)
}

# --- Go: warrentest with amqp091-go, GOPATH mode over Debian's /usr/share/gocode ---
go_suite() {
  if ! command -v go >/dev/null 2>&1 || [ ! -f "$AMQP091_SRC/channel.go" ]; then
    echo "installing golang-go golang-github-rabbitmq-amqp091-go-dev"
    apt_install golang-go golang-github-rabbitmq-amqp091-go-dev || return 1
  fi
  local gopath="$work/gopath"
  mkdir -p "$gopath/src/warren"
  ln -s "$root/go/warrentest" "$gopath/src/warren/warrentest"
  local cache="${GOCACHE:-}"
  [ -n "$cache" ] || { [ -n "${HOME:-}" ] && cache="$HOME/.cache/warren-go-build"; } || cache="$work/gocache"
  (cd "$gopath/src/warren/warrentest" && GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOFLAGS= GOCACHE="$cache" \
    timeout -k 5 "$SUITE_TIMEOUT" go test -count=1 -v warren/warrentest) >"$work/go.log" 2>&1
  local rc=$?
  # Per-test verdicts and failure lines, not the noise of -v.
  grep -E '^(--- |ok |FAIL|PASS$|panic:)|_test\.go:[0-9]+:|\.go:[0-9]+:[0-9]+:' "$work/go.log" \
    || tail -30 "$work/go.log"
  return "$rc"
}

# --- pytest: pytest-warren with pika ---
pytest_suite() {
  if ! python3 -c 'import pika, pytest' >/dev/null 2>&1; then
    echo "installing pika pytest"; pip_install pika pytest || return 1
  fi
  pip_install --no-deps --force-reinstall "$root/python/pytest-warren" || return 1
  timeout -k 5 "$SUITE_TIMEOUT" python3 -m pytest -q -p no:cacheprovider "$root/python/pytest-warren/tests"
}

for suite in node go pytest; do
  wanted "$suite" || continue
  echo "::: test-helpers: $suite"
  "${suite}_suite"
  result "$suite" $?
done

[ -z "$failed_names" ] || echo "test-helpers: failed:$failed_names"
echo "test-helpers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
