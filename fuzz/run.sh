#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 30) with AFL++ (cargo-afl), starting from the corpus in
# fuzz/corpus/<target>; fail if any target found a crash or a hang. Prints executions and paths per target.
# Needs: cargo install cargo-afl (it builds AFL++ once, on the stable toolchain).
set -u
secs="${1:-30}"
here="$(cd "$(dirname "$0")" && pwd)"
out="${FUZZ_OUT:-$(mktemp -d /tmp/warren-fuzz.XXXXXX)}"
mkdir -p "$out"
targets="${FUZZ_TARGETS:-frames publish content_header lifecycle connection store_recovery definitions_replay}"
cd "$here" || exit 1
cargo afl build --release --quiet || exit 1
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
export AFL_SKIP_CRASHES=0 AFL_QUIET=1
status=0
for t in $targets; do
  timeout_ms=1000
  [ "$t" = connection ] && timeout_ms=5000
  cargo afl fuzz -i "corpus/$t" -o "$out/$t" -V "$secs" -t "$timeout_ms" "target/release/$t" \
    >"$out/$t.log" 2>&1
  stats="$out/$t/default/fuzzer_stats"
  if [ ! -f "$stats" ]; then
    echo "fuzz $t: afl-fuzz did not run"; tail -20 "$out/$t.log"; status=1; continue
  fi
  val() { awk -F' *: *' -v k="$1" '$1==k {print $2}' "$stats"; }
  crashes=$(find "$out/$t/default/crashes" -type f ! -name README.txt 2>/dev/null | wc -l)
  hangs=$(find "$out/$t/default/hangs" -type f 2>/dev/null | wc -l)
  echo "fuzz $t: ${secs}s, $(val execs_done) execs ($(val execs_per_sec)/s), corpus $(val corpus_count), crashes $crashes, hangs $hangs"
  if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then
    status=1
    for f in $(find "$out/$t/default/crashes" "$out/$t/default/hangs" -type f ! -name README.txt | head -3); do
      echo "  $f:"; xxd "$f" | head -8
    done
  fi
done
exit $status
