#!/bin/sh
# Runs a command (the busted suite) with the sanitizer runtime preloaded and
# fails on any sanitizer report, also one from a child process whose exit
# status the command might not pass on. Usage: tools/asan_run.sh PRELOAD CMD...
# The log is kept in build/asan/test.log.
set -u
preload=$1
shift
for lib in $(echo "$preload" | tr ':' ' '); do
  [ -f "$lib" ] || { echo "asan_run: sanitizer runtime $lib not found" >&2; exit 2; }
done
log=build/asan/test.log
mkdir -p build/asan
# detect_leaks=0: lua5.4 itself leaves memory behind at exit; leaks are checked by make test-valgrind
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
LD_PRELOAD="$preload" "$@" >"$log" 2>&1
rc=$?
cat "$log"
if grep -qE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer' "$log"; then
  echo "asan_run: sanitizer report found (see $log)" >&2
  [ "$rc" -eq 0 ] && rc=1
fi
if [ "$rc" -ne 0 ]; then
  echo "asan_run: FAILED (exit $rc)" >&2
else
  echo "asan_run: no sanitizer reports"
fi
exit "$rc"
