#!/usr/bin/env bash
# Fuzzes every input parser with libFuzzer (cargo-fuzz, stable toolchain, no sanitizer) and
# prints executions, time and crashes per target. See docs/contributing.md, "Fuzzing".
#
#   scripts/fuzz.sh [SECONDS | RUNSx] [TARGET ...]
#
# SECONDS (default 60) of fuzzing per target, or RUNSx executions per target (1000000x). Each
# target starts from its committed corpus (fuzz/corpus/TARGET) in a working copy
# (fuzz/work/TARGET, not committed). A crash is saved under fuzz/artifacts/TARGET/ and makes the
# script fail: turn it into a named file under fuzz/regressions/TARGET/ (replayed by `cargo
# test`) and a named test at the right crate, then fix it.
#
# FUZZ_MERGE=1 merges what the run found into the committed corpus (only inputs that add
# coverage, at most FUZZ_MAX_LEN bytes). FUZZ_JOBS=N runs N targets at a time (default 1).
# FUZZ_MAX_SECONDS=S caps each target at S seconds when fuzzing by executions.
# FUZZ_CODEGEN_UNITS=N is passed to `cargo fuzz` (default 1; CI uses 16 to build faster).
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-60}
shift || true
all=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^edgevl-fuzz-harness$')
targets=${*:-$all}
case "$budget" in
  *x) limit="-runs=${budget%x}"
      # FUZZ_MAX_SECONDS caps each target's time in this mode too (whichever ends first).
      [ -n "${FUZZ_MAX_SECONDS:-}" ] && limit="$limit -max_total_time=$FUZZ_MAX_SECONDS" ;;
  *[!0-9]*|'') echo "usage: scripts/fuzz.sh [SECONDS | RUNSx] [TARGET ...]" >&2; exit 2 ;;
  *) limit="-max_total_time=$budget" ;;
esac
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target/fuzz}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
# cargo-fuzz's default sanitizer (address) needs a nightly compiler; `-s none` builds libFuzzer
# with coverage instrumentation only, which stable rustc supports.
fz=(cargo fuzz)
# FUZZ_CODEGEN_UNITS=16 builds faster (CI) and fuzzes slightly slower than the default 1.
opts=(-s none --fuzz-dir fuzz --codegen-units "${FUZZ_CODEGEN_UNITS:-1}")
echo "== building the fuzz targets"
start=$(date +%s)
"${fz[@]}" build "${opts[@]}" >/dev/null
echo "built in $(( $(date +%s) - start )) s"
max_len=${FUZZ_MAX_LEN:-262144}
mkdir -p fuzz/work fuzz/artifacts
printf '%-14s %12s %8s %10s %8s\n' target executions seconds exec/s crashes > fuzz/work/summary.txt
failed=0
run_one() {
  local t=$1 log=fuzz/work/$1.log
  rm -rf "fuzz/work/$t" && mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  cp fuzz/corpus/"$t"/* "fuzz/work/$t/" 2>/dev/null || true
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086 # $limit holds one or two options
  "${fz[@]}" run "${opts[@]}" "$t" "fuzz/work/$t" -- $limit -max_len="$max_len" -timeout=20 \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  local execs secs crashes
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}')
  crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
  printf '%-14s %12s %8s %10s %8s\n' "$t" "${execs:-?}" "$secs" \
    "$(awk -v e="${execs:-0}" -v s="$secs" 'BEGIN{printf "%.0f", (s>0)?e/s:0}')" "$crashes" >> fuzz/work/summary.txt
  if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
    echo "!! $t failed (exit $rc); its log: $log" >&2
    grep -E "panicked|ERROR|SUMMARY|artifact" "$log" | head -20 >&2 || true
    return 1
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "${fz[@]}" run "${opts[@]}" "$t" "fuzz/corpus/$t" "fuzz/work/$t" -- -merge=1 -max_len="$max_len" \
      >>"$log" 2>&1
  fi
}
jobs_max=${FUZZ_JOBS:-1}
for t in $targets; do
  echo "== fuzzing $t ($budget)"
  if [ "$jobs_max" -gt 1 ]; then
    run_one "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || failed=1; done
  else
    run_one "$t" || failed=1
  fi
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
cat fuzz/work/summary.txt
exit "$failed"
