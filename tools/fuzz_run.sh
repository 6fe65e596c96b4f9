#!/bin/sh
# Runs built libFuzzer targets (make fuzz-build) for a while each and reports
# the executions. Usage: tools/fuzz_run.sh SECONDS "EXTRA_FLAGS" TARGET...
# Each target works on build/fuzz/corpus/<target>, a copy of fuzz/corpus/<target>
# (new inputs stay in build/, never in the repo); crashes are written to
# build/fuzz/artifacts/; the full libFuzzer log is build/fuzz/<target>.log.
# Exits non-zero if any target found a crash, a leak or a failed property.
set -u
seconds=$1
extra=$2
shift 2

status=0
summary=""
for t in "$@"; do
  bin=build/fuzz/fuzz_$t
  corpus=build/fuzz/corpus/$t
  log=build/fuzz/$t.log
  mkdir -p "$corpus" build/fuzz/artifacts
  cp -p fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz_$t: running ${seconds}s on $(ls "$corpus" | wc -l) corpus files"
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix=build/fuzz/artifacts/"$t"- $extra "$corpus" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "fuzz_$t: FAILED (exit $rc) -- see $log" >&2
    grep -E 'ERROR|property violated|runtime error|Test unit written' "$log" | head -n 20 >&2
    line="fuzz_$t: FAILED after ${execs:-?} executions"
  else
    line="fuzz_$t: ${execs:-?} executions in ${seconds}s (${rate:-?}/s, ${cov:-cov ?}, corpus $(ls "$corpus" | wc -l))"
  fi
  echo "$line"
  summary="$summary$line
"
done
echo "---- fuzz summary ----"
printf '%s' "$summary"
exit $status
